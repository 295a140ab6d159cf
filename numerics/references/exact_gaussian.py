r"""Exact laws of every sampler on a Gaussian target with affine (guided) score.

Scope (when the guided score is affine in ``x``)
-----------------------------------------------
For a single Gaussian :math:`X_0\sim N(\mu, \Sigma)` (a :class:`GaussianMixture` with ``K = 1``) the
OU marginal is :math:`N(\alpha_t\mu, C_t)`, :math:`C_t = \alpha_t^2\Sigma + \sigma_t^2 I`, so

.. math::  s(x,t) = -C_t^{-1}(x - \alpha_t\mu),\qquad D(x,t) = \mu + \alpha_t\Sigma C_t^{-1}(x-\alpha_t\mu).

A mixture with ``K >= 2`` has a non-affine score in general (its class posterior is a softmax), even when
every class shares one covariance, so it is not covered.  Guidance is supported as a user-given affine
guidance vector :math:`g(x,t) = A_t x + b_t` (``affine_guidance(t) -> (A_t, b_t)``), with
:math:`s_w = s + w g` and :math:`D_w = D + w(\sigma_t^2/\alpha_t) g`; ``guidance_form="cg_mean"``
(ddpm only) adds :math:`w\,\mathrm{mean\_form}(t,s)\,g` to the unguided posterior mean.

Every step is then :math:`x_s = M x_t + c + c_z z` (DPM-Solver-2 also involves :math:`x_{t'}`: the pair
:math:`(x_t, x_{t'})` is propagated jointly), so the mean and covariance are propagated exactly:
:math:`m \leftarrow M m + c`, :math:`S \leftarrow M S M^\top + c_z^2 I`.

:func:`pf_map` is the exact probability-flow map of :math:`N(\mu,\Sigma)`:
:math:`x_s = \alpha_s\mu + C_s^{1/2}C_t^{-1/2}(x_t - \alpha_t\mu)` (all :math:`C` commute).  Check: in an
eigen-coordinate with :math:`c(t) = 1 + \alpha_t^2(\lambda - 1)`, :math:`y = x - \alpha_t\mu` obeys the
PF-ODE :math:`\dot x = -x - s` as :math:`\dot y = (1/c - 1)\,y`, and :math:`\tfrac{d}{dt}\log\sqrt{c}
= -\alpha_t^2(\lambda-1)/c = 1/c - 1`.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from numerics.divergences import gaussian_kl  # one definition, re-exported here
from numerics.grids import check_grid
from numerics.methods import check_eta, check_form, get_method
from numerics.mixture import GaussianMixture
from numerics.schedule import alpha_sigma2
from numerics.validate import check_nonneg_scalar

__all__ = ["gaussian_params", "affine_score", "affine_q", "exact_law", "pf_map", "gaussian_kl", "cov_t"]

AffineGuidance = Callable[[float], "tuple[np.ndarray, np.ndarray]"]


def gaussian_params(target: GaussianMixture) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, Sigma)`` of a single-component target; ValueError (``target``) otherwise."""
    if not isinstance(target, GaussianMixture) or target.K != 1:
        raise ValueError("target: exact laws need a GaussianMixture with K = 1 (affine score)")
    return target.means[0].copy(), target.covs[0].copy()


def cov_t(Sigma: np.ndarray, t: float) -> np.ndarray:
    r""":math:`C_t = \alpha_t^2\Sigma + \sigma_t^2 I`."""
    return math.exp(-2.0 * t) * Sigma - math.expm1(-2.0 * t) * np.eye(Sigma.shape[0])


def affine_score(mu: np.ndarray, Sigma: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    r"""``(Q, r)`` with :math:`s(x,t) = Qx + r = -C_t^{-1}x + C_t^{-1}\alpha_t\mu`."""
    Ci = np.linalg.inv(cov_t(Sigma, t))
    return -Ci, Ci @ (math.exp(-t) * mu)


def affine_q(kind: str, mu, Sigma, t: float, w: float = 0.0, guid: AffineGuidance | None = None):
    r"""``(Q, r)`` with :math:`q(x) = Qx + r` for ``kind`` in {score, denoiser, eps} (guided if ``guid``).

    denoiser: :math:`\alpha_t\Sigma C_t^{-1}x + \mu - \alpha_t^2\Sigma C_t^{-1}\mu + w\frac{\sigma_t^2}{\alpha_t}(A_t x + b_t)`.
    """
    a, s2 = alpha_sigma2(t)
    A, b = guid(t) if guid is not None else (np.zeros_like(Sigma), np.zeros_like(mu))
    A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if kind == "denoiser":
        G = a * Sigma @ np.linalg.inv(cov_t(Sigma, t))
        return G + (w * s2 / a) * A, mu - a * G @ mu + (w * s2 / a) * b
    Q, r = affine_score(mu, Sigma, t)
    Q, r = Q + w * A, r + w * b
    if kind == "eps":
        return -math.sqrt(s2) * Q, -math.sqrt(s2) * r
    return Q, r


def exact_law(target: GaussianMixture, method: str, grid, m0=None, S0=None, eta: float | None = None,
              guidance: float = 1.0, affine_guidance: AffineGuidance | None = None,
              guidance_form: str = "cg") -> tuple[np.ndarray, np.ndarray]:
    r"""Exact mean and covariance of ``sample(...)``'s output on a Gaussian target.

    Parameters
    ----------
    target : GaussianMixture with K = 1
    method, grid, eta, guidance_form
        As in :func:`numerics.samplers.sample` (``cfg`` is not supported: pass the affine guidance).
    m0, S0 : array_like, optional
        Law of ``x_init``; default :math:`N(0, I)`.
    guidance : float
        :math:`w`; used only with ``affine_guidance``.
    affine_guidance : callable, optional
        ``t -> (A_t, b_t)``, the guidance vector :math:`g(x,t) = A_t x + b_t`.

    Returns
    -------
    (mean (d,), cov (d, d))
    """
    mu, Sigma = gaussian_params(target)
    rec = get_method(method)
    form = check_form(guidance_form, rec.name)
    if form == "cfg":
        raise ValueError("guidance_form: exact_law supports 'cg' and 'cg_mean' (give affine_guidance)")
    eta = check_eta(eta, rec.name)
    grid = check_grid(grid)
    w = check_nonneg_scalar(guidance, "guidance") if affine_guidance is not None else 0.0
    d = mu.size
    m = np.zeros(d) if m0 is None else np.asarray(m0, dtype=np.float64).copy()
    S = np.eye(d) if S0 is None else np.asarray(S0, dtype=np.float64).copy()
    # joint state (x_t, x_{t_prev}): mean (2d,), cov (2d, 2d); the second block is used by dpm_solver_2
    mj, Sj = np.concatenate([m, m]), np.block([[S, S], [S, S]])
    kind = rec.q
    t_prev = None
    I = np.eye(d)
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        c = rec.coefficients(t, s, eta, t_prev)
        q_w = 0.0 if form == "cg_mean" else w
        Q, r = affine_q(kind, mu, Sigma, t, q_w, affine_guidance)
        Mx, cst = c[0] * I + c[1] * Q, c[1] * r
        Mp = np.zeros((d, d))
        if rec.multistep and t_prev is not None:
            Qp, rp = affine_q(kind, mu, Sigma, t_prev, w, affine_guidance)
            Mp, cst = c[2] * Qp, cst + c[2] * rp
        if form == "cg_mean" and affine_guidance is not None:
            A, b = affine_guidance(t)
            shift = w * rec.guidance_shifts(t, s)[1]
            Mx, cst = Mx + shift * np.asarray(A), cst + shift * np.asarray(b)
        M = np.block([[Mx, Mp], [I, np.zeros((d, d))]])
        noise = np.zeros((2 * d, 2 * d))
        if rec.stochastic:
            noise[:d, :d] = c[-1] ** 2 * I
        mj = M @ mj + np.concatenate([cst, np.zeros(d)])
        Sj = M @ Sj @ M.T + noise
        Sj = 0.5 * (Sj + Sj.T)
        t_prev = t
    return mj[:d], Sj[:d, :d]


def pf_map(target: GaussianMixture, x, t: float, s: float) -> np.ndarray:
    r"""Exact probability-flow map :math:`x_t\mapsto x_s = \alpha_s\mu + C_s^{1/2}C_t^{-1/2}(x_t-\alpha_t\mu)`.

    Computed in the eigenbasis of :math:`\Sigma`, per eigenvalue :math:`\lambda`:
    :math:`\sqrt{(\alpha_s^2\lambda + \sigma_s^2)/(\alpha_t^2\lambda + \sigma_t^2)}`.
    """
    mu, _ = gaussian_params(target)
    U, lam = target.evecs[0], target.evals[0]
    ct = math.exp(-2 * t) * lam - math.expm1(-2 * t)
    cs = math.exp(-2 * s) * lam - math.expm1(-2 * s)
    x = np.asarray(x, dtype=np.float64)
    y = (x - math.exp(-t) * mu) @ U
    return math.exp(-s) * mu + (y * np.sqrt(cs / ct)) @ U.T

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
from numerics.methods import QUANTITIES, check_eta, check_form, get_method, grid_coefficients
from numerics.mixture import GaussianMixture, spectral_decomposition
from numerics.schedule import alpha_sigma2
from numerics.validate import as_float_array, check_array, check_choice, check_nonneg_scalar

__all__ = ["gaussian_params", "affine_score", "affine_q", "exact_law", "pf_map", "gaussian_kl", "cov_t"]

AffineGuidance = Callable[[float], "tuple[np.ndarray, np.ndarray]"]


def gaussian_params(target: GaussianMixture) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, Sigma)`` of a single-component target; ValueError (``target``) otherwise."""
    if not isinstance(target, GaussianMixture) or target.K != 1:
        raise ValueError("target: exact laws need a GaussianMixture with K = 1 (affine score)")
    return target.means[0].copy(), target.covs[0].copy()


def cov_t(Sigma: np.ndarray, t: float) -> np.ndarray:
    r""":math:`C_t = \alpha_t^2\Sigma + \sigma_t^2 I` for a time ``t >= 0`` (ValueError naming ``t`` otherwise)."""
    t = check_nonneg_scalar(t, "t")
    return math.exp(-2.0 * t) * Sigma - math.expm1(-2.0 * t) * np.eye(Sigma.shape[0])


def _inv_cov_t(Sigma: np.ndarray, t: float) -> np.ndarray:
    """:math:`C_t^{-1}`; a singular :math:`C_t` (``t = 0`` with a singular ``Sigma``) raises a ValueError naming ``t``."""
    try:
        return np.linalg.inv(cov_t(Sigma, t))
    except np.linalg.LinAlgError:
        raise ValueError(f"t: C_t = alpha_t^2 Sigma + sigma_t^2 I is singular at t={t!r} (Sigma is singular); "
                         "use t > 0") from None


def affine_score(mu: np.ndarray, Sigma: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    r"""``(Q, r)`` with :math:`s(x,t) = Qx + r = -C_t^{-1}x + C_t^{-1}\alpha_t\mu`."""
    Ci = _inv_cov_t(Sigma, t)
    return -Ci, Ci @ (math.exp(-t) * mu)


def _guidance_factor(w: float, a: float, s2: float, t: float, names: tuple[str, str] = ("t", "w")) -> float:
    r""":math:`w\sigma_t^2/\alpha_t` (0 for ``w = 0``).  If it overflows, a ValueError names ``names[0]`` (the time:
    :math:`\sigma_t^2/\alpha_t` alone overflows, ``alpha_t`` underflows) or ``names[1]`` (the strength ``w``)."""
    if w == 0.0:
        return 0.0
    f = w * s2 / a if a > 0.0 else math.inf
    if not math.isfinite(f):
        who = names[0] if not (a > 0.0 and math.isfinite(s2 / a)) else names[1]
        raise ValueError(f"{who}: the guided denoiser's factor w sigma_t^2 / alpha_t overflows float64 at t={t!r} "
                         f"(w={w!r}); use {'smaller times' if who == names[0] else 'a smaller guidance strength'}")
    return f


def _guidance_at(guid: AffineGuidance, t: float, d: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``guid(t) = (A_t, b_t)`` checked: a finite ``(d, d)`` matrix and a finite ``(d,)`` vector (float64 copies).
    Whatever goes wrong (the call raises, returns something else) raises a ValueError naming ``name``, with the
    original exception as ``__cause__``."""
    if not callable(guid):
        raise ValueError(f"{name}: must be a callable t -> (A_t, b_t), got {type(guid).__name__}")
    try:
        A, b = guid(t)
    except Exception as exc:  # the user's function: any failure is reported as a bad argument
        raise ValueError(f"{name}: calling it at t={t!r} failed ({type(exc).__name__}: {exc}); it must return "
                         f"(A_t (d, d), b_t (d,))") from exc
    return check_array(A, f"{name}(t={t!r}) A_t", (d, d)), check_array(b, f"{name}(t={t!r}) b_t", (d,))


def affine_q(kind: str, mu, Sigma, t: float, w: float = 0.0, guid: AffineGuidance | None = None, *,
             guid_name: str = "guid"):
    r"""``(Q, r)`` with :math:`q(x) = Qx + r` for ``kind`` in {score, denoiser, eps} (guided if ``guid``).

    denoiser: :math:`\alpha_t\Sigma C_t^{-1}x + \mu - \alpha_t^2\Sigma C_t^{-1}\mu + w\frac{\sigma_t^2}{\alpha_t}(A_t x + b_t)`.
    ``t >= 0``; ``guid(t)`` must return a finite ``(d, d)`` matrix and a finite ``(d,)`` vector.  Bad arguments
    raise a ValueError naming ``kind``, ``t``, ``w`` or ``guid`` (``guid_name``: the name used for ``guid``).
    """
    kind = check_choice(kind, "kind", QUANTITIES)
    t = check_nonneg_scalar(t, "t")
    w = check_nonneg_scalar(w, "w")
    a, s2 = alpha_sigma2(t)
    A, b = _guidance_at(guid, t, mu.size, guid_name) if guid is not None else (np.zeros_like(Sigma), np.zeros_like(mu))
    if kind == "denoiser":
        G = a * Sigma @ _inv_cov_t(Sigma, t)
        f = _guidance_factor(w, a, s2, t)
        return G + f * A, mu - a * G @ mu + f * b
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
    m, S = _initial_law(m0, S0, d)
    large_start = max(float(np.abs(m).max(initial=0.0)), float(np.abs(S).max())) > LARGE_START
    coefs, shifts = grid_coefficients(rec, grid, eta, form)
    kind = rec.q
    if kind == "denoiser" and form != "cg_mean":
        _check_guided_denoisers(grid, w)
    # joint state (x_t, x_{t_prev}): mean (2d,), cov (2d, 2d); the second block is used by dpm_solver_2
    mj, Sj = np.concatenate([m, m]), np.block([[S, S], [S, S]])
    t_prev = None
    I = np.eye(d)
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        c = coefs[k]
        q_w = 0.0 if form == "cg_mean" else w
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected below and named
            Q, r = affine_q(kind, mu, Sigma, t, q_w, affine_guidance, guid_name="affine_guidance")
            Mx, cst = c[0] * I + c[1] * Q, c[1] * r
            Mp = np.zeros((d, d))
            if rec.multistep and t_prev is not None:
                Qp, rp = affine_q(kind, mu, Sigma, t_prev, w, affine_guidance, guid_name="affine_guidance")
                Mp, cst = c[2] * Qp, cst + c[2] * rp
            if form == "cg_mean" and affine_guidance is not None:
                A, b = _guidance_at(affine_guidance, t, d, "affine_guidance")
                shift = w * shifts[k][1]
                Mx, cst = Mx + shift * A, cst + shift * b
            M = np.block([[Mx, Mp], [I, np.zeros((d, d))]])
            noise = np.zeros((2 * d, 2 * d))
            if rec.stochastic:
                noise[:d, :d] = c[-1] ** 2 * I
            _check_step(M, cst, w, k, t, s)
            mj = M @ mj + np.concatenate([cst, np.zeros(d)])
            Sj = M @ Sj @ M.T + noise
            Sj = 0.5 * (Sj + Sj.T)
        _check_law(mj, Sj, w, k, t, s, large_start)
        t_prev = t
    return mj[:d], Sj[:d, :d]


def _initial_law(m0, S0, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(m0, S0)`` as float64 copies: the default :math:`N(0, I)`, or a finite ``(d,)`` mean and a finite symmetric
    positive semi-definite ``(d, d)`` covariance (ValueError naming ``m0`` / ``S0`` otherwise)."""
    m = np.zeros(d) if m0 is None else check_array(m0, "m0", (d,))
    if S0 is None:
        return m, np.eye(d)
    S = check_array(S0, "S0", (d, d))
    spectral_decomposition(S[None], "S0")
    return m, S


def _check_guided_denoisers(grid: np.ndarray, w: float) -> None:
    r"""Every guided denoiser factor :math:`w\sigma_t^2/\alpha_t` of the run must be finite (refused up front,
    naming ``grid``)."""
    for t in grid[:-1]:
        _guidance_factor(w, *alpha_sigma2(float(t)), float(t), names=("grid", "guidance"))


def _check_step(M: np.ndarray, cst: np.ndarray, w: float, k: int, t: float, s: float) -> None:
    """The affine map of step ``k`` must be finite: with guidance, ``w`` times the guidance overflowed."""
    if not (np.isfinite(M).all() and np.isfinite(cst).all()):
        who = "guidance" if w > 0.0 else "grid"
        raise ValueError(f"{who}: the affine map of step {k} (t={t!r} -> s={s!r}) overflows float64"
                         + (f" (w={w!r} times the affine guidance); use a smaller guidance" if w > 0.0 else ""))


#: Initial laws with an entry beyond this (about sqrt(DBL_MAX)) are "large": an overflow is blamed on them.
LARGE_START = 1e154


def _check_law(mj: np.ndarray, Sj: np.ndarray, w: float, k: int, t: float, s: float, large_start: bool) -> None:
    """The propagated law must stay finite.  The step maps are finite (:func:`_check_step`), so a law of moderate
    size (entries below :data:`LARGE_START`) overflows only through a huge map: the guidance if ``w > 0``, else the
    grid; a large initial law is blamed itself (``m0`` for the mean, ``S0`` for the covariance)."""
    mean_ok = bool(np.isfinite(mj).all())
    if mean_ok and np.isfinite(Sj).all():
        return
    what = "mean" if not mean_ok else "covariance"
    who = ("m0" if not mean_ok else "S0") if large_start else ("guidance" if w > 0.0 else "grid")
    raise ValueError(f"{who}: the propagated {what} overflows float64 at step {k} (t={t!r} -> s={s!r}); "
                     + ("rescale the initial law" if large_start else
                        f"the guidance w={w!r} is too strong" if w > 0.0 else "use smaller steps"))


def pf_map(target: GaussianMixture, x, t: float, s: float) -> np.ndarray:
    r"""Exact probability-flow map :math:`x_t\mapsto x_s = \alpha_s\mu + C_s^{1/2}C_t^{-1/2}(x_t-\alpha_t\mu)`.

    Computed in the eigenbasis of :math:`\Sigma`, per eigenvalue :math:`\lambda`:
    :math:`\sqrt{(\alpha_s^2\lambda + \sigma_s^2)/(\alpha_t^2\lambda + \sigma_t^2)}`.  ``x``: ``(d,)`` or ``(N, d)``,
    finite; ``t, s >= 0``.  Bad input, a singular :math:`C_t` or an overflowing result raise a ValueError naming
    ``target``, ``x``, ``t`` or ``s``.
    """
    mu, _ = gaussian_params(target)
    t, s = check_nonneg_scalar(t, "t"), check_nonneg_scalar(s, "s")
    x = as_float_array(x, "x", (1, 2))
    if x.shape[-1] != mu.size:
        raise ValueError(f"x: last dimension must be d={mu.size}, got shape {x.shape}")
    U, lam = target.evecs[0], target.evals[0]
    ct = math.exp(-2 * t) * lam - math.expm1(-2 * t)
    cs = math.exp(-2 * s) * lam - math.expm1(-2 * s)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        ratio = np.sqrt(cs / ct)
        if not np.isfinite(ratio).all():
            raise ValueError(f"t: C_t is singular at t={t!r} (the target's covariance is singular); use t > 0")
        y = (x - math.exp(-t) * mu) @ U
        out = math.exp(-s) * mu + (y * ratio) @ U.T
    if not np.isfinite(out).all():
        raise ValueError(f"x: the mapped points overflow float64 (max |x| = {np.abs(x).max():.3g}); rescale x")
    return out

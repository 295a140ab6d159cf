r"""Theorem 1 (per class: Corollary 2) composed with the chain rule of KL: a bound on a guided chain's output KL
from the classifier's conditional KL alone (``proofs_notes/ce_guidance.md#composed-bound``).

Setting G in ``d = 2``, :math:`\mu = (\mu, 0)`, class :math:`y = +1` (prior :math:`\pi_y = 1/2`), a logit ripple
:math:`h = \delta\sin(\omega x_2)` along :math:`e_2\perp\mu`.  The guided chain of C8 steps from
:math:`t_k = T - kh` (:math:`k = 0..N-1`, :math:`h = T/N`) with the learned guidance frozen over the step; by the
chain rule of KL on paths and data processing,

.. math::  \mathrm{KL}(p_0(\cdot\mid y)\,\|\,\text{out}) \le \mathrm{KL}(p_T(\cdot\mid y)\,\|\,N(0,I))
           + \sum_{k<N} 2\tanh(h/2)\,\mathbb E_{p_{t_k}(\cdot\mid y)}\|\hat g_y - g_y\|^2 ,

and Corollary 2 bounds each per-class MSE by the measured conditional KL :math:`\varepsilon_{t_k}^2` and the
certified Hessian bound :math:`L_{t_k}` of the log-probability error:

.. math::  \mathbb E_{p_t(\cdot\mid y)}\|\hat g_y - g_y\|^2 \le \frac{\varepsilon_t}{\sqrt{\pi_y c_M}}
           \big(2dL_t + M S_{4,y}\big),\qquad S_{4,y} = (\mathbb E_{\rho_y}\|\nabla\log\rho_y\|^4)^{1/2} = \sqrt{d^2+2d}.

The composed bound is :math:`B = e^{-2T}\|\mu\|^2/2 + \sum_k 2\tanh(h/2)\,\mathrm{MSE}^{\rm bound}_{t_k}`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from numerics.papers.ce_guidance.classifier_error import (ErrorEstimate, Ripple, SettingG, errors_quadrature,
                                                          theorem_bound)
from numerics.validate import check_int, check_positive

__all__ = ["E2", "ComposedBound", "corollary2_bound", "composed_bound", "chain_times"]

#: The ripple direction e_2, orthogonal to mu = (mu, 0).
E2 = np.array([0.0, 1.0])
#: Weights of the chain-rule sum: ``"tanh"`` the exact 2 tanh(h/2); ``"h2"`` h^2 (a wrong discretisation weight,
#: for comparison only).
WEIGHTS = ("tanh", "h2")


def corollary2_bound(eps: float, d: int, L: float, M: float, S4y: float, pi_y: float) -> float:
    r"""Corollary 2 (one class): :math:`\mathbb E_{\rho_y}\|\nabla r_y\|^2\le\frac{\varepsilon}{\sqrt{\pi_yc_M}}(2dL+MS_{4,y})`.

    Parameters
    ----------
    eps : float
        :math:`\varepsilon\ge0`, the square root of the conditional KL over the marginal :math:`p_t`.
    d : int
        Dimension.
    L, M : float
        Certified :math:`\sup\|\nabla^2r_y\|_{op}` and :math:`\sup|r_y|`.
    S4y : float
        :math:`(\mathbb E_{\rho_y}\|\nabla\log\rho_y\|^4)^{1/2}`.
    pi_y : float
        The class prior, in (0, 1].

    Returns
    -------
    float
        Theorem 1's expression divided by :math:`\sqrt{\pi_y}` (Hölder against :math:`\pi_y`).
    """
    pi_y = check_positive(pi_y, "pi_y")
    if pi_y > 1.0:
        raise ValueError(f"pi_y: a class prior must lie in (0, 1], got {pi_y!r}")
    return theorem_bound(eps, d, L, M, S4y) / math.sqrt(pi_y)


def chain_times(T: float, N: int) -> np.ndarray:
    """The ``N`` step-start times :math:`t_k = T - kh`, :math:`h = T/N`, of the C8 chain (``k = 0..N-1``)."""
    T = check_positive(T, "T")
    N = check_int(N, "N", 1, 10**6)
    return T - (T / N) * np.arange(N)


@dataclass(frozen=True)
class ComposedBound:
    r"""The pieces of :math:`B` (:func:`composed_bound`); arrays are per step :math:`k = 0..N-1`.

    ``times`` the step-start times, ``eps2``/``eps2_err`` the measured conditional KL and its quadrature error
    (at the time the bound was evaluated), ``mse``/``mse_err`` the measured per-class MSE (reported, not used in
    :math:`B`), ``L``, ``M`` the certificates, ``mse_bound`` Corollary 2 per step, ``weight`` the chain-rule weight,
    ``init`` :math:`e^{-2T}\|\mu\|^2/2`, ``bound`` :math:`B`, ``bound_err`` the change of :math:`B` when every
    :math:`\varepsilon_{t_k}^2` moves by its quadrature error.
    """

    times: np.ndarray
    eps2: np.ndarray
    eps2_err: np.ndarray
    mse: np.ndarray
    mse_err: np.ndarray
    L: np.ndarray
    M: float
    mse_bound: np.ndarray
    weight: float
    init: float
    bound: float
    bound_err: float

    @property
    def eps_chain(self) -> float:
        r"""The chain's :math:`\varepsilon = (\frac1N\sum_k\varepsilon_{t_k}^2)^{1/2}`."""
        return math.sqrt(float(np.mean(self.eps2)))


@functools.lru_cache(maxsize=1024)
def _quad(mu: float, t: float, delta: float, omega: float) -> ErrorEstimate:
    """Conditional KL (marginal) and per-class (y = +1) MSE at OU time t by the package quadrature."""
    return errors_quadrature(SettingG([mu, 0.0], t), Ripple(delta, omega, E2), y=1)


def composed_bound(mu: float, T: float, N: int, delta: float, omega: float, *, hessian_power: int = 2,
                   eps_shift: int = 0, weight: str = "tanh", quad=None) -> ComposedBound:
    r"""The composed bound :math:`B` for the C8 chain in ``d = 2`` (module docstring).

    At each :math:`t_k`: :math:`\varepsilon_{t_k}^2` from :func:`errors_quadrature` (ripple along :math:`e_2`), the
    certificates :math:`(L_{t_k}, M)` of :meth:`SettingG.certificates` (:math:`L_t = \delta\omega^2 +
    \sup|\sigma''|\,\delta\,(2\alpha_t\mu)^2 + \tfrac14(2(2\alpha_t\mu)\delta\omega + \delta^2\omega^2)`,
    :math:`M = \delta`), Corollary 2 with :math:`\pi_y = 1/2`, :math:`S_{4,y} = \sqrt 8`; then
    :math:`B = e^{-2T}\mu^2/2 + \sum_k w\,\mathrm{MSE}^{\rm bound}_{t_k}`, :math:`w = 2\tanh(h/2)`.

    ``hessian_power``, ``eps_shift`` and ``weight`` exist to evaluate mistaken compositions (the ripple's Hessian
    taken as :math:`\delta\omega^{p}`; :math:`\varepsilon` read at :math:`t_{k+\text{shift}}`; the weight
    :math:`h^2`); the defaults are the statement.  ``quad(mu, t, delta, omega)`` replaces the quadrature (tests).
    """
    mu = check_positive(mu, "mu")
    times = chain_times(T, N)
    delta = check_positive(delta, "delta")
    omega = check_positive(omega, "omega")
    hessian_power = check_int(hessian_power, "hessian_power", 1, 2)
    eps_shift = check_int(eps_shift, "eps_shift", 0, 1)
    if weight not in WEIGHTS:
        raise ValueError(f"weight: must be one of {WEIGHTS}, got {weight!r}")
    quad = _quad if quad is None else quad
    h = T / N
    w = 2.0 * math.tanh(h / 2.0) if weight == "tanh" else h * h
    d, pi_y = 2, 0.5
    S4y = math.sqrt(d * d + 2 * d)
    eps2, eps2_err, mse, mse_err, Ls, bnd, bnd_hi = ([] for _ in range(7))
    for t in times:
        S = SettingG([mu, 0.0], float(t))
        rip = Ripple(delta, omega, E2)
        L, M = S.certificates(rip)
        if hessian_power != 2:  # the ripple's Hessian written delta * omega**p
            L += delta * omega**hessian_power - rip.sup_hess
        q = quad(mu, float(t), delta, omega)
        qe = quad(mu, max(float(t) - h, 1e-12), delta, omega) if eps_shift else q
        eps2.append(qe.kl)
        eps2_err.append(qe.kl_err)
        mse.append(q.mse)
        mse_err.append(q.mse_err)
        Ls.append(L)
        e = math.sqrt(max(qe.kl, 0.0))
        bnd.append(corollary2_bound(e, d, L, M, S4y, pi_y))
        bnd_hi.append(corollary2_bound(math.sqrt(max(qe.kl, 0.0) + qe.kl_err), d, L, M, S4y, pi_y))
    init = 0.5 * math.exp(-2.0 * T) * mu * mu
    bound = init + w * float(np.sum(bnd))
    return ComposedBound(times=times, eps2=np.array(eps2), eps2_err=np.array(eps2_err), mse=np.array(mse),
                         mse_err=np.array(mse_err), L=np.array(Ls), M=float(delta), mse_bound=np.array(bnd),
                         weight=w, init=init, bound=bound, bound_err=w * float(np.sum(np.array(bnd_hi) - bnd)))

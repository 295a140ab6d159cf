r"""High-frequency logit ripples on random labelled Gaussian mixtures ("almost all distributions").

Time convention: OU forward time ``t > 0``, :math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`.

Two classes; :math:`p = p_t(1\mid x)`, :math:`q = 1 - p`, :math:`f = \log(p/q)` the true logit.  The learned
classifier adds a ripple to the class-1 logit,

.. math::  \hat f = f + h,\qquad h(x) = \delta\sin(\omega\langle u, x\rangle + \phi),\qquad \|u\| = 1,

i.e. :math:`\hat p_t(\cdot\mid x) = \mathrm{softmax}(\log p_t(\cdot\mid x) + h\,e_1)` (log-sum-exp,
:func:`~numerics.papers.ce_guidance.classifier_error.perturbed_log_posterior`).  Per sample
:math:`x\sim p_t` the module returns the conditional KL :math:`\sum_y p_y\log(p_y/\hat p_y)` and the
label-averaged squared guidance error :math:`\sum_y p_y\|\hat g_y - g_y\|^2`, and the per-sample quantities
that bound the next-order terms of

.. math::  \mathrm{KL} = \tfrac14\delta^2\,\mathbb E[pq]\,(1 + O(\cdot)),\qquad
           \mathrm{MSE} = \tfrac12\delta^2\omega^2\,\mathbb E[pq]\,(1 + O(\cdot))

(``proofs_notes/ce_guidance.md#almost-all``; :func:`relative_remainders`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from numerics.mixture import GaussianMixture
from numerics.papers.ce_guidance.classifier_error import perturbed_guidance, perturbed_log_posterior
from numerics.references.grid_density import run_concurrently
from numerics.schedule import alpha_sigma2
from numerics.stats import MeanCI, mean_ci
from numerics.validate import (as_float_array, check_choice, check_int, check_positive, check_real, check_rng,
                               check_time)

__all__ = ["PhasedRipple", "random_mixture", "random_direction", "noised_sample", "ClassifierAt", "classifier_at",
           "ripple_errors", "oscillation_moments", "OscillationMoments", "relative_remainders",
           "SweepResult", "ripple_sweep"]


class PhasedRipple:
    r"""Logit ripple :math:`h(x) = \delta\sin(\omega\langle u, x\rangle + \phi)` along a unit vector ``u``.

    :math:`\nabla h = \delta\omega\cos(\omega\langle u, x\rangle + \phi)\,u`.
    """

    def __init__(self, delta: float, omega: float, direction, phase: float = 0.0) -> None:
        self.delta = check_positive(delta, "delta", allow_zero=True)
        self.omega = check_positive(omega, "omega")
        u = as_float_array(direction, "direction", 1)
        if u.size == 0 or abs(float(np.linalg.norm(u)) - 1.0) > 1e-12:
            raise ValueError(f"direction: must be a unit vector, got norm {float(np.linalg.norm(u)) if u.size else 0.0!r}")
        self.u, self.d = u, u.size
        self.phase = check_real(phase, "phase")

    def _theta(self, x) -> np.ndarray:
        X = as_float_array(x, "x", 2)
        if X.shape[1] != self.d:
            raise ValueError(f"x: last dimension must be d={self.d}, got shape {X.shape}")
        th = self.omega * (X @ self.u) + self.phase
        if not np.all(np.isfinite(th)):
            raise ValueError(f"x: omega * <u, x> overflows float64 (omega={self.omega!r})")
        return th

    def value(self, x) -> np.ndarray:
        """:math:`h(x)`, shape ``(N,)``."""
        return self.delta * np.sin(self._theta(x))

    def grad(self, x) -> np.ndarray:
        r""":math:`\nabla h(x)`, shape ``(N, d)``."""
        return (self.delta * self.omega * np.cos(self._theta(x)))[:, None] * self.u[None, :]


def random_mixture(rng: np.random.Generator, K: int, d: int, covariance: str = "isotropic") -> GaussianMixture:
    r"""A random two-class Gaussian mixture :math:`\sum_k w_k N(\mu_k, S_k)`.

    :math:`w\sim\mathrm{Dirichlet}(2,\dots,2)`, :math:`\mu_k\sim N(0, 1.5^2 I_d)`, :math:`S_k = v_k I_d`
    (``"isotropic"``, :math:`v_k\sim U[0.2, 1.5]`) or :math:`\mathrm{diag}(v_{k1},\dots,v_{kd})`
    (``"diagonal"``, each :math:`\sim U[0.2, 1.5]`); labels: component 0 in class 0, component 1 in class 1,
    the others uniform on {0, 1}.  Every draw has :math:`\mathbb E[pq] > 0` at every ``t > 0`` (both classes
    have positive Gaussian densities everywhere).
    """
    rng = check_rng(rng)
    K = check_int(K, "K", 2, 64)
    d = check_int(d, "d", 1, 64)
    kind = check_choice(covariance, "covariance", ("isotropic", "diagonal"))
    w = rng.dirichlet(np.full(K, 2.0))
    means = rng.normal(0.0, 1.5, (K, d))
    v = rng.uniform(0.2, 1.5, (K, 1)) * np.ones((1, d)) if kind == "isotropic" else rng.uniform(0.2, 1.5, (K, d))
    labels = np.concatenate([[0, 1], rng.integers(0, 2, K - 2)]).astype(np.int64)
    return GaussianMixture(w, means, v[:, :, None] * np.eye(d)[None], labels=labels)


def random_direction(rng: np.random.Generator, d: int) -> np.ndarray:
    """A uniform unit vector in R^d."""
    rng = check_rng(rng)
    d = check_int(d, "d", 1)
    z = rng.standard_normal(d)
    while not np.linalg.norm(z) > 0:  # pragma: no cover - probability 0
        z = rng.standard_normal(d)
    return z / np.linalg.norm(z)


def noised_sample(gm: GaussianMixture, t: float, n: int, rng: np.random.Generator) -> np.ndarray:
    r""":math:`n` draws of :math:`X_t = \alpha_t X_0 + \sigma_t Z\sim p_t`; ``(n, d)``."""
    if not isinstance(gm, GaussianMixture):
        raise ValueError("gm: must be a GaussianMixture")
    t = check_time(t)
    n = check_int(n, "n", 2)
    rng = check_rng(rng)
    a, s2 = alpha_sigma2(t)
    return a * gm.sample_data(n, rng) + math.sqrt(s2) * rng.standard_normal((n, gm.d))


@dataclass(frozen=True)
class ClassifierAt:
    """Class log-posteriors ``log_p (N, 2)`` and guidance vectors ``g (N, 2, d)`` of a mixture at points."""

    log_p: np.ndarray
    g: np.ndarray


def classifier_at(gm: GaussianMixture, x, t: float) -> ClassifierAt:
    r""":math:`\log p_t(y\mid x)` (log-sum-exp) and :math:`g_y = \nabla_x\log p_t(y\mid x)` for both classes."""
    if not isinstance(gm, GaussianMixture) or gm.n_classes != 2:
        raise ValueError("gm: must be a two-class GaussianMixture")
    t = check_time(t)
    X = as_float_array(x, "x", 2)
    return ClassifierAt(gm.class_log_posterior(X, t), np.stack([gm.guidance_vector(X, t, c) for c in (0, 1)], axis=1))


def ripple_errors(true: ClassifierAt, base: ClassifierAt, x, ripple: PhasedRipple, cls: int = 1):
    r"""Per-sample conditional KL and label-averaged squared guidance error of a rippled classifier.

    The learned classifier is :math:`\hat p = \mathrm{softmax}(\log p^{\rm base} + h\,e_{\rm cls})` (``base`` is
    the true classifier in the stated setting; a different one serves the controls), and

    .. math::  \mathrm{kl}_i = \sum_y p_y\log\frac{p_y}{\hat p_y},\qquad
               \mathrm{err}_i = \sum_y p_y\,\|\hat g_y - g_y\|^2,

    with :math:`p, g` from ``true``, all at the points ``x``.  Returns ``(kl, err)``, each ``(N,)``.
    """
    X = as_float_array(x, "x", 2)
    if not isinstance(ripple, PhasedRipple):
        raise ValueError("ripple: must be a PhasedRipple")
    cls = check_int(cls, "cls", 0, 1)
    n = X.shape[0]
    for obj, name in ((true, "true"), (base, "base")):
        if not isinstance(obj, ClassifierAt) or obj.log_p.shape != (n, 2) or obj.g.shape != (n, 2, X.shape[1]):
            raise ValueError(f"{name}: need a ClassifierAt at the {n} points x (log_p (N, 2), g (N, 2, d))")
    kl, err = np.empty(n), np.empty(n)

    def block(sl: slice) -> None:
        kl[sl], err[sl] = _ripple_errors_rows(true.log_p[sl], true.g[sl], base.log_p[sl], base.g[sl], X[sl], ripple,
                                              cls)
    step = max(1, RIPPLE_ROWS // X.shape[1])
    run_concurrently({s: functools.partial(block, slice(s, s + step)) for s in range(0, n, step)})
    return kl, err


#: Entries of ``x`` per block of :func:`ripple_errors` (a few MB of temporaries per block, in cache).
RIPPLE_ROWS = 2**16


def _ripple_errors_rows(lp, g, base_lp, base_g, X, ripple: PhasedRipple, cls: int):
    """:func:`ripple_errors` on a block of rows (every operation is row by row: the blocks' results are those of
    the whole arrays bit for bit, tested)."""
    n = X.shape[0]
    dl = np.zeros((n, 2))
    gd = np.zeros((n, 2, X.shape[1]))
    dl[:, cls] = ripple.value(X)
    gd[:, cls] = ripple.grad(X)
    lph = perturbed_log_posterior(base_lp, dl)
    gh = perturbed_guidance(base_g, gd, lph)
    p = np.exp(lp)
    kl = np.sum(p * (lp - lph), axis=1)
    err = np.sum(p * np.sum((gh - g) ** 2, axis=2), axis=1)
    return kl, err


@dataclass(frozen=True)
class OscillationMoments:
    r"""Per-sample integrands (each ``(N,)``) of the expectations that bound the next-order terms:

    * ``pq`` -- :math:`pq` (its mean is the leading constant :math:`\mathbb E[pq]`);
    * ``c`` -- :math:`pq\,(|\partial_u f| + |\partial_u\log p_t|)`, whose mean bounds both
      :math:`\mathbb E|\partial_u(pq\,p_t)|/p_t` and :math:`\mathbb E|\partial_u(pq(q-p)\,p_t)|/p_t`;
    * ``a2`` -- :math:`(pq)^2\|\nabla f\|^2`.

    (:math:`\mathbb E[(pq)^2]` is bounded by :math:`\mathbb E[pq]/4`, as :math:`pq\le 1/4`.)
    """

    pq: np.ndarray
    c: np.ndarray
    a2: np.ndarray


def oscillation_moments(true: ClassifierAt, score, direction) -> OscillationMoments:
    r"""Integrands of :class:`OscillationMoments` from the true classifier and the score
    :math:`\nabla\log p_t` at the sample points; :math:`\nabla f = g_1 - g_0`."""
    if not isinstance(true, ClassifierAt):
        raise ValueError("true: must be a ClassifierAt")
    n, _, d = true.g.shape
    s = as_float_array(score, "score", 2)
    if s.shape != (n, d):
        raise ValueError(f"score: expected shape {(n, d)}, got {s.shape}")
    u = as_float_array(direction, "direction", 1)
    if u.shape != (d,):
        raise ValueError(f"direction: expected shape {(d,)}, got {u.shape}")
    p, q = np.exp(true.log_p[:, 1]), np.exp(true.log_p[:, 0])
    pq = p * q
    gf = true.g[:, 1] - true.g[:, 0]
    c = pq * (np.abs(gf @ u) + np.abs(s @ u))
    return OscillationMoments(pq, c, pq * pq * np.sum(gf * gf, axis=1))


def relative_remainders(delta: float, omega: float, epq_lo: float, c_hi: float, a2_hi: float,
                        epq_hi: float | None = None) -> tuple[float, float, float]:
    r"""Relative bounds on the next-order terms (``proofs_notes/ce_guidance.md#almost-all``).

    With :math:`\mathbb E[pq]\in[` ``epq_lo``, ``epq_hi`` :math:`]` (default ``epq_hi = epq_lo``; ``E`` below is
    ``epq_lo``), the upper ends ``c_hi`` (:math:`C`) and ``a2_hi`` (:math:`A_2`) of the means of
    :class:`OscillationMoments`, and :math:`A_0 = \mathbb E[(pq)^2]\le` ``epq_hi``/4:

    .. math::
        \Big|\frac{\mathrm{KL}}{\delta^2E/4} - 1\Big| \le \frac{C}{2\omega E} + \frac{5\,\delta\,C}{9\,\omega E}
            + \frac{\delta^2}{48E} =: k,\qquad
        -\frac{C}{2\omega E}\le\frac{\mathrm{MSE}}{\delta^2\omega^2E/2} - 1
            \le \frac{C}{2\omega E} + \frac{2e^{2\delta}(\sqrt{A_2}+\delta\omega\sqrt{A_0})^2}{\omega^2E}.

    Returns ``(k, m_lo, m_hi)``: the KL bound and the MSE's lower and upper relative deviations (``m_lo >= 0``
    is subtracted).
    """
    dl = check_positive(delta, "delta")
    om = check_positive(omega, "omega")
    E = check_positive(epq_lo, "epq_lo")
    C = check_positive(c_hi, "c_hi", allow_zero=True)
    A0 = 0.25 * (E if epq_hi is None else check_positive(epq_hi, "epq_hi"))
    A2 = check_positive(a2_hi, "a2_hi", allow_zero=True)
    osc = C / (2 * om * E)
    k = osc + 5 * dl * C / (9 * om * E) + dl * dl / (48 * E)
    rm = 2 * math.exp(2 * dl) * (math.sqrt(A2) + dl * om * math.sqrt(A0)) ** 2 / (om * om * E)
    return k, osc, osc + rm


@dataclass(frozen=True)
class SweepResult:
    """Monte-Carlo means with intervals: ``kl[i]``, ``mse[i]`` per delta; ``epq``, ``c``, ``a2`` (see
    :class:`OscillationMoments`); the ripple's direction ``u`` and ``phase``."""

    kl: list[MeanCI]
    mse: list[MeanCI]
    epq: MeanCI
    c: MeanCI
    a2: MeanCI
    u: np.ndarray
    phase: float


#: Draws of :func:`ripple_sweep` kept (the stated run and the controls of one claim draw the same ones).
_DRAWS: dict = {}
#: Largest number of draws kept (a draw at n = 3e5, d = 8 holds about 80 MB).
DRAWS_SIZE = 8


def _shared_draws(gm: GaussianMixture, t: float, n: int, rng: np.random.Generator):
    """``(u, phase, x, true classifier at t, oscillation moments)`` of :func:`ripple_sweep`, drawn from ``rng`` in
    that order, memoised on the exact inputs: the mixture's arrays, ``t``, ``n`` and the generator's state before
    the draws.  A hit sets the generator to the state the draws left, so the stream continues exactly as if drawn
    again (the claim's controls start from the same seed, so they share the stated run's draws bit for bit)."""
    state = rng.bit_generator.state
    key = (gm.key(), float(t).hex(), n, type(rng.bit_generator).__name__, repr(state))
    hit = _DRAWS.get(key)
    if hit is not None:
        rng.bit_generator.state = hit[1]
        return hit[0]
    u = random_direction(rng, gm.d)
    phase = float(rng.uniform(0.0, 2 * math.pi))
    x = noised_sample(gm, t, n, rng)
    true = classifier_at(gm, x, t)
    out = (u, phase, x, true, oscillation_moments(true, gm.score(x, t), u))
    for a in (u, x, true.log_p, true.g, *vars(out[4]).values()):
        a.setflags(write=False)
    if len(_DRAWS) >= DRAWS_SIZE:
        _DRAWS.pop(next(iter(_DRAWS)))
    _DRAWS[key] = (out, rng.bit_generator.state)
    return out


def ripple_sweep(gm: GaussianMixture, t: float, deltas, omega_power: float, n: int, rng: np.random.Generator,
                 level: float, base_time: float | None = None, prior_dropped: bool = False) -> SweepResult:
    r"""KL and MSE of the ripple :math:`\delta\sin(\omega\langle u,x\rangle+\phi)`, :math:`\omega=\delta^{-\gamma}`
    (``omega_power`` :math:`\gamma`), over ``deltas`` on one sample of ``n`` points of :math:`p_t` (common to every
    delta), with ``u`` uniform on the sphere and :math:`\phi\sim U[0, 2\pi)` drawn from ``rng`` first.

    Intervals: :func:`~numerics.stats.mean_ci` at ``level``.  ``base_time`` (default ``t``) is the time at which the
    learned classifier's base logit is evaluated; ``prior_dropped`` removes :math:`\log\pi_y` from it (both serve
    negative controls).
    """
    if not isinstance(gm, GaussianMixture) or gm.n_classes != 2:
        raise ValueError("gm: must be a two-class GaussianMixture")
    t = check_time(t)
    dls = as_float_array(deltas, "deltas", 1)
    if dls.size == 0 or np.any(dls <= 0):
        raise ValueError(f"deltas: need positive values, got {dls.tolist()!r}")
    gamma = check_real(omega_power, "omega_power")
    tb = t if base_time is None else check_time(base_time, "base_time")
    rng = check_rng(rng)
    u, phase, x, true, mom = _shared_draws(gm, t, check_int(n, "n", 2), rng)
    base = true if tb == t else classifier_at(gm, x, tb)
    if prior_dropped:
        base = ClassifierAt(base.log_p - np.log(gm.class_prior())[None, :], base.g)
    kl, mse = [], []
    for dl in dls:
        k_, m_ = ripple_errors(true, base, x, PhasedRipple(dl, dl ** -gamma, u, phase))
        kl.append(mean_ci(k_, level))
        mse.append(mean_ci(m_, level))
    return SweepResult(kl, mse, mean_ci(mom.pq, level), mean_ci(mom.c, level), mean_ci(mom.a2, level), u, phase)

r"""The Gaussian channel in SNR time: MMSE, mutual information, posteriors, path KL of the discrete sampler.

Time convention (SNR time, *not* the package's OU time)
-------------------------------------------------------
The observation process is :math:`Y_t = tX + W_t` with :math:`W` a standard Brownian motion independent of
:math:`X`, i.e. :math:`Y_t \sim tX + \sqrt t\,N`, :math:`N\sim N(0, I_d)`.  ``t >= 0`` is the signal-to-noise
ratio: :math:`Y_t/\sqrt t = \sqrt t X + N` is the textbook channel.  The map to OU time ``tau``
(:math:`\alpha = e^{-\tau}`, :math:`\sigma^2 = 1-e^{-2\tau}`) is :math:`t = \alpha^2/\sigma^2` and
:math:`Y_t = (\alpha/\sigma^2) X_\tau` (derived in :mod:`theory.gaussian_channel`), see :func:`snr_of_ou`.

Targets
-------
Every target is a finite Gaussian mixture :math:`\sum_j \pi_j N(\mu_j, \Sigma_j)` with PSD (possibly zero)
covariances, so a finite discrete law (atoms), the symmetric binary law, a Gaussian and a Gaussian mixture
are one class, :class:`ChannelTarget` (constructors :func:`gaussian`, :func:`binary`, :func:`discrete`,
:func:`gaussian_mixture`).  Given component ``j``, :math:`Y_t\sim N(t\mu_j, t^2\Sigma_j + tI)`,
:math:`E[X\mid y, j] = \mu_j + S_j(y - t\mu_j)` and :math:`\mathrm{Cov}(X\mid y,j) = S_j` with
:math:`S_j = \Sigma_j(I+t\Sigma_j)^{-1}`.

Quadrature and its error
------------------------
Expectations over :math:`Y_t` are sums over components of tensor Gauss-Hermite rules (probabilists'
weight) in :math:`Y = t\mu_j + L_j\zeta`, :math:`L_jL_j^\top = t^2\Sigma_j + tI`.  Every integrand used here
(posterior weights, means, variances, log-densities of Gaussian mixtures) is analytic in a strip around the
real axis, so the Gauss-Hermite error decays geometrically in the number of nodes; the functions that take
``err=True`` return the a-posteriori estimate :math:`|Q_{n} - Q_{n'}|` with :math:`n' = \lceil 3n/2\rceil`
and the value of the finer rule.  This is an *estimate*, not a rigorous bound: it bounds the error of the
finer rule whenever the error contracts by at least a factor 2 from ``n`` to ``n'`` nodes.  The estimate is
cross-checked against the mpmath references :func:`mp_mmse` and :func:`mp_mutual_info` (adaptive
tanh-sinh quadrature at ``dps`` digits) in the tests and in the claim ``discrete_kl.immse``.

For a single Gaussian (``K = 1``) the closed forms :math:`M(t) = \mathrm{tr}\,\Sigma(I+t\Sigma)^{-1}` and
:math:`I(t) = \tfrac12\log\det(I+t\Sigma)` are used (exact up to rounding).

Discrete sampler and path KL
----------------------------
Schedule :math:`0 = t_0 < t_1 < \dots < t_n`, :math:`\delta_k = t_k - t_{k-1}`.  Comparison chain
:math:`Y_k = Y_{k-1} + \delta_k X + \sqrt{\delta_k}N_k`; sampler
:math:`\hat Y_k = \hat Y_{k-1} + \delta_k f_k(\hat Y_{k-1}) + \sqrt{\delta_k}N_k` (``moment=1``), or with extra
randomness matching 2 (Gaussian with covariance :math:`\delta I + \delta^2\mathrm{Cov}(X\mid y)`) or
3 moments (two-point law, 1-D).  :func:`path_kl_chain` computes
:math:`\Delta_n = \sum_k E\,D(P_{U_k\mid Y_{k-1}}\,\|\,Q_{U_k\mid Y_{k-1}})` (the KL of the comparison path
from the sampler path) by nested quadrature; :func:`riemann_gap` the left-Riemann-gap formula of Lemma 2;
:func:`gaussian_path_kl` (Gaussian targets) the same KL directly from the Gaussian laws of the two whole paths
in :math:`\mathbb R^{nd}` (the comparison's from :math:`\mu,\Sigma` alone, the sampler's from its affine transition
with the package's posterior mean; no chain rule, no Lemma 2), and the KL of the two terminal laws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from numba import njit

from numerics.quadrature import gauss_hermite_normal, gauss_hermite_normal_nd
from numerics.references.grid_density import gauss_transform
from numerics.validate import (WEIGHT_SUM_TOL, as_float_array, check_array, check_int, check_points, check_positive,
                               check_real_values, check_time_values)

__all__ = [
    "ChannelTarget",
    "Posterior",
    "QuadraturePoints",
    "TwoPointLaw",
    "ConditionalMoments",
    "gaussian",
    "binary",
    "discrete",
    "gaussian_mixture",
    "product",
    "snr_of_ou",
    "ou_of_snr",
    "validate_schedule",
    "schedule",
    "mmse",
    "mutual_info",
    "posterior_mean",
    "posterior_cov",
    "conditional_moments_1d",
    "mmse_derivative",
    "expected_estimation_error",
    "riemann_gap",
    "riemann_terms",
    "step_kl",
    "nested_step_kl",
    "IncrementLaw",
    "path_kl_chain",
    "gaussian_kl",
    "gaussian_path_kl",
    "two_point",
    "terminal_kl_grid",
    "snr_sample",
    "mp_mmse",
    "mp_mutual_info",
    "DEFAULT_NODES",
]

#: Default number of Gauss-Hermite nodes per dimension.
DEFAULT_NODES = 160
#: Largest number of steps of :func:`schedule`.
MAX_SCHEDULE_STEPS = 10**7
#: Largest dimension for tensor Gauss-Hermite rules (``nodes**d`` points per component).
MAX_QUAD_DIM = 3


def _check_snr(t, name: str = "t", allow_zero: bool = True) -> float:
    return check_positive(t, name, allow_zero)


def _check_nodes(n) -> int:
    return check_int(n, "nodes", low=4, high=4000)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


class Posterior(NamedTuple):
    r"""Posterior of :math:`X` given :math:`Y_t = y` at ``N`` points, for a target with ``K`` components in ``d`` dimensions.

    ``log_weights`` (N, K): :math:`\log P(J = j\mid y)`; ``component_means`` (N, K, d): :math:`E[X\mid y, j]`;
    ``gains`` (K, d, d): :math:`S_j = \mathrm{Cov}(X\mid y, j)`; ``mean`` (N, d): :math:`E[X\mid y]`;
    ``cov`` (N, d, d): :math:`\mathrm{Cov}(X\mid y)`.
    """

    log_weights: np.ndarray
    component_means: np.ndarray
    gains: np.ndarray
    mean: np.ndarray
    cov: np.ndarray


class QuadraturePoints(NamedTuple):
    r"""Points of :math:`Y_t` with ``weights @ g(points) ~ E g(Y_t)``; ``component`` the mixture component of each point."""

    points: np.ndarray
    weights: np.ndarray
    component: np.ndarray


class TwoPointLaw(NamedTuple):
    """The law taking the value ``a`` with probability ``p`` and ``b`` with probability ``1 - p`` (arrays)."""

    a: np.ndarray
    b: np.ndarray
    p: np.ndarray


class ConditionalMoments(NamedTuple):
    """1-D posterior mean, variance and third central moment at each point."""

    mean: np.ndarray
    var: np.ndarray
    mu3: np.ndarray


@dataclass(frozen=True)
class ChannelTarget:
    r"""A law :math:`\sum_j\pi_j N(\mu_j,\Sigma_j)` on :math:`\mathbb R^d` observed through the SNR-time channel.

    Build with :func:`gaussian`, :func:`binary`, :func:`discrete` or :func:`gaussian_mixture`, which validate
    their arguments (``ValueError`` naming the argument).
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    name: str = "target"

    @property
    def d(self) -> int:
        return int(self.means.shape[1])

    @property
    def K(self) -> int:
        return int(self.weights.size)

    @property
    def mean(self) -> np.ndarray:
        return self.weights @ self.means

    @property
    def cov(self) -> np.ndarray:
        m = self.mean
        dev = self.means - m
        return np.einsum("k,kij->ij", self.weights, self.covs) + np.einsum("k,ki,kj->ij", self.weights, dev, dev)

    @property
    def tr_cov(self) -> float:
        r""":math:`\mathrm{tr}\,\mathrm{Cov}(X) = M(0)`."""
        return float(np.trace(self.cov))

    @property
    def is_gaussian(self) -> bool:
        return self.K == 1

    @property
    def entropy(self) -> float:
        """Shannon entropy (nats) of the component label; equals H(X) for a discrete law with distinct atoms."""
        p = self.weights[self.weights > 0]
        return float(-np.sum(p * np.log(p)))

    def moments_1d(self, r: int) -> float:
        """Raw moment :math:`E X^r` of a 1-D target (exact, from Gaussian component moments)."""
        if self.d != 1:
            raise ValueError("target: moments_1d needs a 1-D target")
        out = 0.0
        for w, mu, v in zip(self.weights, self.means[:, 0], self.covs[:, 0, 0]):
            # E (mu + sqrt(v) Z)^r = sum_k C(r,k) mu^(r-k) v^(k/2) E Z^k, E Z^k = (k-1)!! for even k
            s = 0.0
            for k in range(0, r + 1, 2):
                s += math.comb(r, k) * mu ** (r - k) * v ** (k // 2) * _double_factorial(k - 1)
            out += w * s
        return out

    # -- per-time component quantities -------------------------------------------------------
    def gains(self, t: float) -> np.ndarray:
        r""":math:`S_j = \Sigma_j(I+t\Sigma_j)^{-1}` (posterior covariance given component ``j``), shape (K,d,d)."""
        eye = np.eye(self.d)
        return np.stack([np.linalg.solve(eye + t * S, S).T for S in self.covs])

    def predictive(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        r"""Means :math:`t\mu_j` and covariances :math:`t^2\Sigma_j + tI` of :math:`Y_t` given component ``j``."""
        return t * self.means, t * t * self.covs + t * np.eye(self.d)[None]

    def log_component_density(self, y: np.ndarray, t: float) -> np.ndarray:
        r""":math:`\log N(y; t\mu_j, t^2\Sigma_j + tI)` for every point and component, shape (N, K); ``t > 0``."""
        mu, C = self.predictive(t)
        L = np.linalg.cholesky(C)
        out = np.empty((y.shape[0], self.K))
        for j in range(self.K):
            r = np.linalg.solve(L[j], (y - mu[j]).T)
            logdet = 2.0 * np.sum(np.log(np.diag(L[j])))
            out[:, j] = -0.5 * np.sum(r * r, axis=0) - 0.5 * logdet - 0.5 * self.d * math.log(2 * math.pi)
        return out

    def posterior(self, y: np.ndarray, t: float) -> Posterior:
        r"""Posterior of :math:`X` given :math:`Y_t = y` (``y`` (N, d)): a :class:`Posterior`.

        ``t = 0`` returns the prior (the observation carries no information).
        """
        S, logw, mj, w, m = self._posterior_mean_parts(y, t)
        dev = mj - m[:, None, :]
        cov = np.einsum("nk,kab->nab", w, S) + np.einsum("nk,nka,nkb->nab", w, dev, dev)
        return Posterior(logw, mj, S, m, cov)

    def posterior_mean(self, y: np.ndarray, t: float) -> np.ndarray:
        r""":math:`E[X\mid Y_t = y] = \sum_j P(J=j\mid y)\,(\mu_j + S_j(y - t\mu_j))`, shape (N, d): the ``mean``
        of :meth:`posterior` (the same operations, bit for bit) without the posterior covariance."""
        return self._posterior_mean_parts(y, t)[4]

    def _posterior_mean_parts(self, y: np.ndarray, t: float):
        """(gains S, log weights, component means, weights, mean) of :meth:`posterior`."""
        S = self.gains(t)
        N = y.shape[0]
        if t == 0.0:
            logw = np.broadcast_to(np.log(np.where(self.weights > 0, self.weights, 1e-300)), (N, self.K)).copy()
            mj = np.broadcast_to(self.means, (N, self.K, self.d)).copy()
        else:
            with np.errstate(divide="ignore"):
                logw = np.log(self.weights)[None] + self.log_component_density(y, t)
            logw = logw - _logsumexp(logw, axis=1)[:, None]
            mj = self.means[None] + np.einsum("kab,nkb->nka", S, y[:, None, :] - t * self.means[None])
        w = np.exp(logw)
        return S, logw, mj, w, np.einsum("nk,nka->na", w, mj)

    def nodes(self, t: float, n: int) -> QuadraturePoints:
        r"""Quadrature points of :math:`Y_t`: ``(y (P,d), weights (P,), component (P,))`` with ``sum w g(y) ~ E g(Y_t)``."""
        if self.d > MAX_QUAD_DIM:
            raise ValueError(f"target: quadrature supports d <= {MAX_QUAD_DIM}, got d={self.d}")
        if t == 0.0:
            return QuadraturePoints(np.zeros((1, self.d)), np.ones(1), np.zeros(1, dtype=np.int64))
        if self.d == 1:
            return self._trapezoid_nodes(t, n)
        z, w = gauss_hermite_normal_nd(n, self.d)
        mu, C = self.predictive(t)
        L = np.linalg.cholesky(C)
        ys, ws, cs = [], [], []
        for j in range(self.K):
            if self.weights[j] == 0:
                continue
            ys.append(mu[j] + z @ L[j].T)
            ws.append(self.weights[j] * w)
            cs.append(np.full(w.size, j))
        return QuadraturePoints(np.concatenate(ys), np.concatenate(ws), np.concatenate(cs))

    def _trapezoid_nodes(self, t: float, n: int) -> QuadraturePoints:
        r"""1-D rule: the trapezoid rule in ``y`` (not in the standardised variable) on one grid for all components.

        The posterior quantities are analytic in a strip :math:`|\mathrm{Im}\,y| < \pi/s` with ``s`` the spread
        of the atoms (logit differences :math:`(\mu_i-\mu_j)y`), *independently of t*; Gauss-Hermite in the
        standardised variable sees that strip shrink like :math:`1/\sqrt t`.  The trapezoid rule on
        :math:`\mathbb R` has error :math:`O(e^{-2\pi a/h})` for a strip of half-width ``a``, and the Gaussian
        factors add :math:`O(e^{-2\pi^2 s_Y^2/h^2})`, so the spacing is
        :math:`h = \min(s_Y/2,\ \pi/(6\,\mathrm{spread}),\ 1/4)\cdot 160/n` and the range is 13 standard
        deviations beyond the extreme component means (tail mass below :math:`10^{-37}`).
        """
        mu, C = self.predictive(t)
        sd = np.sqrt(C[:, 0, 0])
        spread = float(np.ptp(self.means[:, 0])) if self.K > 1 else 0.0
        h = min(float(sd.min()) / 2, math.pi / (6 * spread) if spread > 0 else 1.0, 0.25) * DEFAULT_NODES / n
        lo = float(np.min(mu[:, 0] - 13 * sd))
        hi = float(np.max(mu[:, 0] + 13 * sd))
        if not (hi - lo) / h <= MAX_SCHEDULE_STEPS:
            raise ValueError(f"t: {t!r} is too large for the quadrature of Y_t (range {lo:.3g}..{hi:.3g}, step {h:.3g})")
        m = int(math.ceil((hi - lo) / h))
        y = np.linspace(lo, hi, m + 1)
        hh = y[1] - y[0]
        ys, ws, cs = [], [], []
        for j in range(self.K):
            if self.weights[j] == 0:
                continue
            dens = np.exp(-0.5 * (y - mu[j, 0]) ** 2 / C[j, 0, 0]) / math.sqrt(2 * math.pi * C[j, 0, 0])
            keep = dens > 0
            ys.append(y[keep])
            ws.append(self.weights[j] * hh * dens[keep])
            cs.append(np.full(int(keep.sum()), j))
        return QuadraturePoints(np.concatenate(ys)[:, None], np.concatenate(ws), np.concatenate(cs))

    def expect(self, g: Callable[[np.ndarray], np.ndarray], t: float, n: int = DEFAULT_NODES) -> float:
        """:math:`E\\,g(Y_t)` by the tensor Gauss-Hermite rule (``g`` maps (P, d) points to (P,) values)."""
        y, w, _ = self.nodes(t, n)
        return float(np.dot(w, g(y)))


def _double_factorial(k: int) -> int:
    return 1 if k <= 0 else k * _double_factorial(k - 2)


# ---------------------------------------------------------------------------------------------- builders
def gaussian_mixture(weights, means, covs, name: str = "gaussian mixture") -> ChannelTarget:
    """A Gaussian mixture; ``covs`` (K,d,d) symmetric PSD (zero allowed: atoms)."""
    w = as_float_array(weights, "weights", 1)
    mu = as_float_array(means, "means", 2)
    S = as_float_array(covs, "covs", 3)
    if w.size == 0:
        raise ValueError("weights: needs at least one component")
    if np.any(w < 0) or abs(w.sum() - 1.0) > WEIGHT_SUM_TOL:
        raise ValueError(f"weights: must be >= 0 and sum to 1, got sum {w.sum()!r}")
    if mu.shape[0] != w.size:
        raise ValueError(f"means: expected {w.size} rows (one per weight), got shape {mu.shape}")
    d = mu.shape[1]
    if d == 0:
        raise ValueError("means: dimension d must be >= 1")
    if S.shape != (w.size, d, d):
        raise ValueError(f"covs: expected shape {(w.size, d, d)}, got {S.shape}")
    for j in range(w.size):
        if np.max(np.abs(S[j] - S[j].T)) > 1e-10 * max(1.0, float(np.abs(S[j]).max())):
            raise ValueError(f"covs: component {j} is not symmetric")
        lam = np.linalg.eigvalsh(S[j])
        if lam.min() < -1e-12 * max(1.0, float(np.abs(lam).max())):
            raise ValueError(f"covs: component {j} is not positive semi-definite (eigenvalue {lam.min():.3g})")
    Ssym = 0.5 * (S + S.transpose(0, 2, 1))
    if not np.all(np.isfinite(Ssym)):
        raise ValueError("covs: entries too large (their sum overflows float64)")
    return ChannelTarget(w / w.sum(), mu, Ssym, name)


def _ndim(value) -> int:
    """``np.ndim(value)``, or -1 for what is no array (ragged lists: left to :func:`as_float_array` to report)."""
    try:
        return np.ndim(value)
    except ValueError:
        return -1


def gaussian(mean, cov, name: str = "gaussian") -> ChannelTarget:
    """:math:`N(m_0, \\Sigma)`; ``mean`` (d,), ``cov`` (d,d) or a scalar variance in 1-D."""
    m = as_float_array(np.atleast_1d(mean) if _ndim(mean) == 0 and not isinstance(mean, (bool, str)) else mean,
                       "mean", 1)
    if _ndim(cov) == 0:
        cov = [[cov]] if not isinstance(cov, (bool, str)) else cov
        if m.size != 1:
            raise ValueError("cov: a scalar variance needs a 1-D mean")
    c = as_float_array(cov, "cov", 2)
    if c.ndim == 0:
        if m.size != 1:
            raise ValueError("cov: a scalar variance needs a 1-D mean")
        c = c.reshape(1, 1)
    if c.shape != (m.size, m.size):
        raise ValueError(f"cov: expected shape {(m.size, m.size)}, got {c.shape}")
    return gaussian_mixture([1.0], m[None], c[None], name)


def discrete(points, probs, name: str = "discrete") -> ChannelTarget:
    """A finite law: atoms ``points`` (J,) or (J,d) with probabilities ``probs`` (J,)."""
    x = as_float_array(points, "points", (1, 2))
    if x.ndim == 1:
        x = x[:, None]
    p = as_float_array(probs, "probs", 1)
    if p.size != x.shape[0]:
        raise ValueError(f"probs: expected {x.shape[0]} entries (one per point), got {p.size}")
    if np.any(p < 0) or abs(p.sum() - 1.0) > WEIGHT_SUM_TOL:
        raise ValueError(f"probs: must be >= 0 and sum to 1, got sum {p.sum()!r}")
    return gaussian_mixture(p, x, np.zeros((p.size, x.shape[1], x.shape[1])), name)


def binary(d: int = 1) -> ChannelTarget:
    r"""Symmetric binary :math:`X\in\{\pm1\}^d` with iid uniform coordinates (``2**d`` atoms)."""
    d = check_int(d, "d", low=1, high=8)
    pts = np.array(np.meshgrid(*([[-1.0, 1.0]] * d), indexing="ij")).reshape(d, -1).T
    return discrete(pts, np.full(pts.shape[0], 1.0 / pts.shape[0]), name=f"binary^{d}" if d > 1 else "binary")


def product(a: ChannelTarget, b: ChannelTarget) -> ChannelTarget:
    """The law of ``(X_a, X_b)`` with independent coordinates blocks."""
    if not isinstance(a, ChannelTarget) or not isinstance(b, ChannelTarget):
        raise ValueError("a, b: must be ChannelTarget")
    w, mu, S = [], [], []
    da, db = a.d, b.d
    for i in range(a.K):
        for j in range(b.K):
            w.append(a.weights[i] * b.weights[j])
            mu.append(np.concatenate([a.means[i], b.means[j]]))
            C = np.zeros((da + db, da + db))
            C[:da, :da], C[da:, da:] = a.covs[i], b.covs[j]
            S.append(C)
    return gaussian_mixture(w, mu, S, name=f"{a.name} x {b.name}")


def _check_target(target) -> ChannelTarget:
    if not isinstance(target, ChannelTarget):
        raise ValueError(f"target: must be a ChannelTarget (see numerics.papers.discrete_kl.channel.gaussian/binary/...), "
                         f"got {type(target).__name__}")
    return target


# ---------------------------------------------------------------------------------------------- time maps
def snr_of_ou(tau):
    r"""SNR time of OU time ``tau``: :math:`t = \alpha^2/\sigma^2 = 1/\mathrm{expm1}(2\tau)`."""
    out = 1.0 / np.expm1(2.0 * check_time_values(tau, "tau", allow_zero=False))
    if not np.all(np.isfinite(out)):
        raise ValueError("tau: too small, the SNR time overflows float64")
    return out


def ou_of_snr(t):
    r"""Inverse of :func:`snr_of_ou`: :math:`\tau = \tfrac12\,\mathrm{log1p}(1/t)`."""
    out = 0.5 * np.log1p(1.0 / check_time_values(t, "t", allow_zero=False))
    if not np.all(np.isfinite(out)):
        raise ValueError("t: too small, the OU time overflows float64")
    return out


def validate_schedule(ts, name: str = "ts") -> np.ndarray:
    """A schedule ``0 = t_0 < t_1 < ... < t_n`` (the leading 0 is prepended if missing); finite."""
    t = as_float_array(ts, name, 1)
    if t.size == 0:
        raise ValueError(f"{name}: needs at least one time")
    if t[0] != 0.0:
        t = np.concatenate([[0.0], t])
    if t.size < 2:
        raise ValueError(f"{name}: needs at least one step")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"{name}: must be strictly increasing and start at 0 (or > 0)")
    return t


def schedule(kind: str, T: float | None = None, n: int | None = None, t1: float | None = None,
             c: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    r"""SNR schedules ``[0, t_1, ..., t_n]``.

    ``uniform``: :math:`t_k = kT/n`; ``geometric``: :math:`t_k = t_1(1+c)^{k-1}` for ``k = 1..n``;
    ``random``: ``n - 1`` sorted uniform points in ``(0, T)`` plus ``T``.
    """
    n = check_int(n, "n", low=1, high=MAX_SCHEDULE_STEPS)
    if kind == "uniform":
        T = _check_snr(T, "T", allow_zero=False)
        return np.linspace(0.0, T, n + 1)
    if kind == "geometric":
        t1 = _check_snr(t1, "t1", allow_zero=False)
        c = _check_snr(c, "c", allow_zero=False)
        with np.errstate(over="ignore"):
            out = np.concatenate([[0.0], t1 * (1.0 + c) ** np.arange(n)])
        if not np.all(np.isfinite(out)):
            raise ValueError(f"c: t1 * (1 + c)**(n - 1) overflows float64 (t1={t1!r}, c={c!r}, n={n})")
        return out
    if kind == "random":
        T = _check_snr(T, "T", allow_zero=False)
        if rng is None:
            raise ValueError("rng: a numpy Generator is required for kind='random'")
        inner = np.sort(rng.uniform(0.0, T, n - 1))
        return np.concatenate([[0.0], inner, [T]])
    raise ValueError(f"kind: must be 'uniform', 'geometric' or 'random', got {kind!r}")


# ---------------------------------------------------------------------------------------------- M and I
def _mmse_q(target: ChannelTarget, t: float, n: int) -> float:
    y, w, _ = target.nodes(t, n)
    cov = target.posterior(y, t).cov
    return float(np.dot(w, np.trace(cov, axis1=1, axis2=2)))


def _logdet_eye_plus(t: float, S: np.ndarray) -> float:
    """:math:`\\log\\det(I + tS)`; where ``I + tS`` overflows, :math:`d\\log t + \\log\\det(I/t + S)`."""
    eye = np.eye(S.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):
        ld = np.linalg.slogdet(eye + t * S)[1]
    if not np.isfinite(ld):
        ld = S.shape[0] * math.log(t) + np.linalg.slogdet(eye / t + S)[1]
    return ld


def _mi_q(target: ChannelTarget, t: float, n: int) -> float:
    cond = sum(0.5 * target.weights[j] * _logdet_eye_plus(t, target.covs[j]) for j in range(target.K))
    if target.K == 1:
        return float(cond)
    y, w, comp = target.nodes(t, n)
    logw = target.posterior(y, t).log_weights
    lab = float(np.dot(w, logw[np.arange(y.shape[0]), comp])) + target.entropy
    return float(cond + lab)


def _with_err(fun, target, t, n, err):
    if target.K == 1 or t == 0.0:
        v = fun(target, t, n)
        return (v, 0.0) if err else v
    n2 = int(math.ceil(1.5 * n))
    v1, v2 = fun(target, t, n), fun(target, t, n2)
    return (v2, abs(v2 - v1)) if err else v2


def mmse(target: ChannelTarget, t, nodes: int = DEFAULT_NODES, err: bool = False):
    r"""MMSE function :math:`M(t) = E\|X - E[X\mid Y_t]\|^2` (SNR time ``t >= 0``).

    Gaussian: closed form :math:`\mathrm{tr}\,\Sigma(I+t\Sigma)^{-1}`; otherwise Gauss-Hermite
    (``err=True`` also returns the a-posteriori error estimate, see the module docstring).
    ``t`` may be an array (returns an array; ``err`` then returns arrays).
    """
    target = _check_target(target)
    nodes = _check_nodes(nodes)
    if isinstance(t, (list, tuple)) or (isinstance(t, np.ndarray) and t.ndim > 0):
        ts = check_time_values(t, "t")
        if ts.ndim != 1:
            raise ValueError(f"t: must be a number or a 1-D array of times, got shape {ts.shape}")
        res = [mmse(target, float(tt), nodes, err) for tt in ts]
        return (np.array([r[0] for r in res]), np.array([r[1] for r in res])) if err else np.array(res)
    t = _check_snr(t)
    if t == 0.0:
        return (target.tr_cov, 0.0) if err else target.tr_cov
    if target.K == 1:
        v = float(np.trace(target.gains(t)[0]))
        return (v, 0.0) if err else v
    return _with_err(_mmse_q, target, t, nodes, err)


def mutual_info(target: ChannelTarget, t, nodes: int = DEFAULT_NODES, err: bool = False):
    r"""Mutual information :math:`I(X; Y_t)` in nats (SNR time).

    Computed as :math:`I(X;Y\mid J) + I(J;Y)` with ``J`` the component label:
    :math:`\sum_j\pi_j\tfrac12\log\det(I+t\Sigma_j) + H(J) + E\log w_J(Y_t)`.  Gaussian: closed form.
    """
    target = _check_target(target)
    nodes = _check_nodes(nodes)
    t = _check_snr(t)
    if t == 0.0:
        return (0.0, 0.0) if err else 0.0
    return _with_err(_mi_q, target, t, nodes, err)


def _posterior_field(target, y, t, field: str) -> np.ndarray:
    """One field of the validated posterior at ``y`` (N, d) or (d,) (then the field of that one point)."""
    target = _check_target(target)
    t = _check_snr(t)
    arr, single = check_points(y, target.d, "y")
    v = target.posterior_mean(arr, t) if field == "mean" else getattr(target.posterior(arr, t), field)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"y: the posterior {field} is not finite at t={t!r} (y or t too large)")
    return v[0] if single else v


def posterior_mean(target: ChannelTarget, y, t) -> np.ndarray:
    r""":math:`E[X\mid Y_t = y]`, ``y`` (N, d) or (d,) in SNR time."""
    return _posterior_field(target, y, t, "mean")


def posterior_cov(target: ChannelTarget, y, t) -> np.ndarray:
    r""":math:`\mathrm{Cov}(X\mid Y_t = y)`, shape (N, d, d) (or (d, d) for one point)."""
    return _posterior_field(target, y, t, "cov")


def conditional_moments_1d(target: ChannelTarget, y: np.ndarray, t: float) -> ConditionalMoments:
    """1-D posterior mean, variance and third central moment at points ``y`` (N,)."""
    target = _check_target(target)
    if target.d != 1:
        raise ValueError("target: conditional_moments_1d needs a 1-D target")
    y = check_array(y, "y", (None,))
    logw, mj, S, m, cov = target.posterior(y.reshape(-1, 1), _check_snr(t))
    if not np.all(np.isfinite(cov)):
        raise ValueError(f"y: the posterior is not finite at t={t!r} (y or t too large)")
    w = np.exp(logw)
    e = mj[:, :, 0] - m
    s = S[:, 0, 0][None]
    var = cov[:, 0, 0]
    mu3 = np.sum(w * (e**3 + 3 * e * s), axis=1)
    return ConditionalMoments(m[:, 0], var, mu3)


def mmse_derivative(target: ChannelTarget, t: float, nodes: int = DEFAULT_NODES) -> float:
    r""":math:`-E\,\mathrm{tr}\big(\mathrm{Cov}(X\mid Y_t)^2\big)`, which equals :math:`M'(t)`."""
    target = _check_target(target)
    t = _check_snr(t)
    y, w, _ = target.nodes(t, _check_nodes(nodes))
    cov = target.posterior(y, t).cov
    return -float(np.dot(w, np.einsum("nab,nba->n", cov, cov)))


# ---------------------------------------------------------------------------------------------- Lemma 2
def riemann_terms(target: ChannelTarget, ts, nodes: int = DEFAULT_NODES, rule: str = "left"):
    r"""Per-step Riemann gaps :math:`\tfrac12[\delta_k M(t_{k-1}) - \int_{t_{k-1}}^{t_k} M]` and their error estimates.

    The integral is :math:`2(I(t_k) - I(t_{k-1}))` (I-MMSE).  ``rule="right"`` / ``"mid"`` replace
    :math:`M(t_{k-1})` by :math:`M(t_k)` / :math:`M((t_{k-1}+t_k)/2)` (used by negative controls).
    """
    target = _check_target(target)
    ts = validate_schedule(ts)
    if rule not in ("left", "right", "mid"):
        raise ValueError(f"rule: must be 'left', 'right' or 'mid', got {rule!r}")
    pts = {"left": ts[:-1], "right": ts[1:], "mid": 0.5 * (ts[:-1] + ts[1:])}[rule]
    with _times_from("ts"):
        M, eM = mmse(target, pts, nodes, err=True)
        Iv = [mutual_info(target, float(tt), nodes, err=True) for tt in ts]
    I = np.array([v[0] for v in Iv])
    eI = np.array([v[1] for v in Iv])
    d = np.diff(ts)
    with np.errstate(over="ignore", invalid="ignore"):
        gaps = 0.5 * d * M - np.diff(I)
        errs = 0.5 * d * eM + eI[1:] + eI[:-1]
    _check_gap_finite(gaps, errs, ts)
    return gaps, errs


def _check_gap_finite(value, err, ts) -> None:
    if not (np.all(np.isfinite(value)) and np.all(np.isfinite(err))):
        raise ValueError(f"ts: the Riemann gap overflows float64 (steps up to {float(np.max(np.diff(ts))):.3g} "
                         "too large)")


def riemann_gap(target: ChannelTarget, ts, nodes: int = DEFAULT_NODES, err: bool = False, rule: str = "left"):
    r"""Lemma 2: :math:`\Delta_n = \tfrac12\sum_k\delta_k M(t_{k-1}) - I(X;Y_{t_n})`.

    ``err=True`` returns ``(value, estimate)``, the estimate being the summed Gauss-Hermite estimates of
    the :math:`M(t_{k-1})` times :math:`\delta_k/2` plus that of :math:`I(t_n)` (which is not telescoped
    away, so this sum is conservative).
    """
    target = _check_target(target)
    ts = validate_schedule(ts)
    pts = {"left": ts[:-1], "right": ts[1:], "mid": 0.5 * (ts[:-1] + ts[1:])}.get(rule)
    if pts is None:
        raise ValueError(f"rule: must be 'left', 'right' or 'mid', got {rule!r}")
    d = np.diff(ts)
    with _times_from("ts"):
        if not err:
            with np.errstate(over="ignore", invalid="ignore"):
                out = float(0.5 * np.dot(d, mmse(target, pts, nodes)) - mutual_info(target, float(ts[-1]), nodes))
            _check_gap_finite(out, 0.0, ts)
            return out
        M, eM = mmse(target, pts, nodes, err=True)
        I, eI = mutual_info(target, float(ts[-1]), nodes, err=True)
    with np.errstate(over="ignore", invalid="ignore"):
        out = float(0.5 * np.dot(d, M) - I), float(0.5 * np.dot(d, eM) + eI)
    _check_gap_finite(out[0], out[1], ts)
    return out


def expected_estimation_error(target: ChannelTarget, ts, f: Callable, nodes: int = DEFAULT_NODES) -> np.ndarray:
    r"""Per step :math:`\tfrac12\delta_k E\|f(Y_{k-1}, t_{k-1}) - E[X\mid Y_{k-1}]\|^2` under the comparison law."""
    target = _check_target(target)
    ts = validate_schedule(ts)
    nodes = _check_nodes(nodes)
    out = np.empty(ts.size - 1)
    for k in range(1, ts.size):
        tp = float(ts[k - 1])
        y, w, _ = target.nodes(tp, nodes)
        m = target.posterior_mean(y, tp)
        fy = np.asarray(f(y, tp), dtype=float).reshape(m.shape)
        out[k - 1] = 0.5 * (ts[k] - tp) * float(np.dot(w, np.sum((fy - m) ** 2, axis=1)))
    return out


def two_point(mean: np.ndarray, var: np.ndarray, mu3: np.ndarray) -> TwoPointLaw:
    r"""Two-point law matching mean, variance and third central moment: ``(a, b, p)``, value ``a`` w.p. ``p``.

    Standardised values :math:`\sqrt{(1-p)/p}` (prob ``p``) and :math:`-\sqrt{p/(1-p)}` have skewness
    :math:`(1-2p)/\sqrt{p(1-p)}`; solving for skewness :math:`\gamma` gives
    :math:`p = \tfrac12(1-\gamma/\sqrt{\gamma^2+4})`.  The returned ``a`` is the rare point: its probability is
    :math:`p = \tfrac12(1-|\gamma|/r) = 2/(r(r + |\gamma|)) \le \tfrac12`, :math:`r = \sqrt{\gamma^2+4}` (no
    cancellation at large :math:`|\gamma|`), and it lies on the side of the skewness's sign (the mirror image of
    the law above when :math:`\gamma < 0`).  Where the variance vanishes, both points are the mean.
    """
    mean, var, mu3 = (check_real_values(v, name) for v, name in ((mean, "mean"), (var, "var"), (mu3, "mu3")))
    try:
        mean, var, mu3 = np.broadcast_arrays(mean, var, mu3)
    except ValueError:
        raise ValueError(f"var, mu3: shapes {var.shape}, {mu3.shape} do not broadcast with mean {mean.shape}") from None
    var = np.maximum(var, 0.0)
    sd = np.sqrt(var)
    tiny = sd <= 1e-150
    sd1 = np.where(tiny, 1.0, sd)
    with np.errstate(over="ignore", under="ignore"):
        sd3 = sd1**3
        # sd**3 underflows below sd ~ 1e-100: divide by sd three times there; a skewness beyond float64 is
        # inf here and clipped below
        gamma = np.where(tiny, 0.0, np.where(sd3 < 1e-300, mu3 / sd1 / sd1 / sd1, mu3 / sd3))
    # |gamma| > 1e150 gives p < 1e-300 (or 1 - p < 1e-300), clipped below anyway; clipping gamma keeps gamma**2 finite
    gamma = np.clip(gamma, -1e150, 1e150)
    # the smaller of p, 1 - p without cancellation: 1/2 (1 - |g|/r) = 2 / (r (r + |g|)), r = sqrt(g^2 + 4)
    # (>= 1e-300 for |g| <= 1e150); the one-pass 1/2 (1 - g/r) loses every digit once |g| > 1e8
    # ``a`` is the rare point (p <= 1/2), on the side of the skewness: p stays exact where 1 - p would round to 1
    r = np.sqrt(gamma * gamma + 4.0)
    p = 2.0 / (r * (r + np.abs(gamma)))
    side = np.where(gamma < 0, -1.0, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        a = mean + side * sd * np.sqrt((1.0 - p) / p)
        b = mean - side * sd * np.sqrt(p / (1.0 - p))
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("mean: a point of the two-point law, mean + sd * sqrt((1 - p) / p) or "
                         "mean - sd * sqrt(p / (1 - p)), overflows float64 (|mean| too close to the float64 limit)")
    return TwoPointLaw(a, b, p)


class IncrementLaw(NamedTuple):
    r"""A sampler's increment law at the outer nodes of :func:`nested_step_kl`: :math:`N(c_n, v_n)` (``b = None``), or
    the two-point mixture :math:`e^{\ell^a_n} N(c_n, v_n) + e^{\ell^b_n} N(b_n, v_n)`; ``half_log`` is
    :math:`\tfrac12\log(2\pi v_n)`."""

    c: np.ndarray
    v: np.ndarray
    half_log: np.ndarray
    b: np.ndarray | None = None
    log_pa: np.ndarray | None = None
    log_pb: np.ndarray | None = None

    def arrays(self) -> tuple:
        """Arguments of :func:`_step_kl_inner` (a Gaussian law passes zeros for the unused second point)."""
        two = self.b is not None
        zero = np.zeros_like(self.c)
        return (self.c, self.v, self.half_log, self.b if two else zero, self.log_pa if two else zero,
                self.log_pb if two else zero, two)


@njit(cache=True)
def _step_kl_inner(logw, dm, sd, s2, lc, z, wz, qc, qv, qhl, qb, qla, qlb, two, inner):
    r"""``inner[n, j]`` :math:`= \sum_q w_q\,[\log p(U_{njq}) - \log q_n(U_{njq})]` at the nodes
    :math:`U_{njq} = \delta m_{nj} + s_j z_q` of component ``j`` of :math:`P_{U\mid y_n}` (``dm``
    :math:`=\delta m_{nj}`, ``sd`` :math:`= s_j`), with

    .. math:: \log p(u) = \operatorname{LSE}_k\bigl[\log w_{nk} - \tfrac12 (u - \delta m_{nk})^2/s_k^2 - \ell_k\bigr],
       \qquad \ell_k = \tfrac12\log(2\pi s_k^2)\ (\text{``lc''}),

    max-shifted, and :math:`\log q_n` the sampler's Gaussian :math:`N(c_n, v_n)` or, with ``two``, the two-point
    mixture :math:`\operatorname{logaddexp}(\ell^a_n - \tfrac12 (u - c_n)^2/v_n, \ell^b_n - \tfrac12 (u - b_n)^2/v_n)`
    (both less :math:`\tfrac12\log(2\pi v_n)`). The same arithmetic, term by term, as the NumPy broadcast it
    replaced, without its ``(N, K, Q, K)`` arrays."""
    N, K = logw.shape
    Q = z.shape[0]
    a = np.empty(K)
    for n in range(N):
        for j in range(K):
            acc = 0.0
            for iq in range(Q):
                u = dm[n, j] + sd[j] * z[iq]
                mx = -np.inf
                for k in range(K):
                    e = u - dm[n, k]
                    a[k] = logw[n, k] + (-0.5 * e * e / s2[k] - lc[k])
                    if a[k] > mx:
                        mx = a[k]
                if not np.isfinite(mx):
                    mx = 0.0
                ssum = 0.0
                for k in range(K):
                    ssum += math.exp(a[k] - mx)
                logp = mx + math.log(ssum)
                e = u - qc[n]
                la = -0.5 * e * e / qv[n]
                if two:
                    eb = u - qb[n]
                    la = qla[n] + la
                    lb = qlb[n] - 0.5 * eb * eb / qv[n]
                    hi, lo = (la, lb) if la >= lb else (lb, la)
                    if hi > -np.inf:  # numpy's logaddexp: -inf for two -inf
                        la = hi + math.log1p(math.exp(lo - hi))
                acc += (logp - (la - qhl[n])) * wz[iq]
            inner[n, j] = acc


def step_kl(target: ChannelTarget, t_prev: float, delta: float, f: Callable | None = None, moment: int = 1,
            nodes: int = DEFAULT_NODES, inner_nodes: int | None = None, closed_form: bool = True,
            match_skew: bool = True, noise_var: float | None = None) -> float:
    r"""One term of the chain rule: :math:`E_{Y\sim P_{Y_{t_{k-1}}}} D(P_{U\mid Y}\,\|\,Q_{U\mid Y})`.

    Comparison increment :math:`P_{U\mid y} = \sum_j w_j(y) N(\delta m_j(y), \delta^2 S_j + \delta I)`;
    sampler increment :math:`Q_{U\mid y}`: ``moment=1`` :math:`N(\delta f(y), \delta I)` (``f`` defaults to the
    posterior mean), ``moment=2`` :math:`N(\delta m, \delta I + \delta^2\mathrm{Cov}(X\mid y))`, ``moment=3``
    (1-D) :math:`p N(\delta a,\delta) + (1-p)N(\delta b,\delta)` from :func:`two_point` (``match_skew=False``:
    the third moment ignored, ``p = 1/2``; a negative control).
    ``noise_var`` (``moment=1``): the sampler's noise variance in place of :math:`\delta` (negative controls).
    Gaussian target, ``moment=1``, exact ``f`` (and ``closed_form``): closed form :math:`\tfrac12[\delta\,\mathrm{tr}S - \log\det(I+\delta S)]`.
    Nested quadrature (outer over ``Y``, inner over ``U`` given each component) for d = 1 otherwise.
    """
    target = _check_target(target)
    t_prev = _check_snr(t_prev, "t_prev")
    delta = _check_snr(delta, "delta", allow_zero=False)
    moment = check_int(moment, "moment", 1, 3)
    nodes = _check_nodes(nodes)
    inner_nodes = nodes if inner_nodes is None else _check_nodes(inner_nodes)
    if target.K == 1 and f is None and moment == 1 and noise_var is None and (target.d > 1 or closed_form):
        S = target.gains(t_prev)[0]
        with np.errstate(over="ignore", invalid="ignore"):
            out = 0.5 * float(delta * np.trace(S) - _logdet_eye_plus(delta, S))
        if not math.isfinite(out):
            raise ValueError(f"delta: the step KL overflows float64 (t_prev={t_prev!r}, delta={delta!r}): step too large")
        return out
    if target.d != 1:
        raise ValueError("target: the nested-quadrature path KL supports d = 1 (Gaussian targets any d)")

    def law(y: np.ndarray, post: Posterior) -> IncrementLaw:
        Nn = y.shape[0]
        if moment == 1:
            fy = post.mean[:, 0] if f is None else np.asarray(f(y, t_prev), dtype=float).reshape(Nn)
            vq = delta if noise_var is None else check_positive(noise_var, "noise_var", False)
            return IncrementLaw(delta * fy, np.full(Nn, float(vq)), np.full(Nn, 0.5 * math.log(2 * math.pi * vq)))
        if moment == 2:
            v = delta + delta * delta * post.cov[:, 0, 0]
            return IncrementLaw(delta * post.mean[:, 0], v, 0.5 * np.log(2 * np.pi * v))
        mean, var, mu3 = conditional_moments_1d(target, y[:, 0], t_prev)
        a, b, p = two_point(mean, var, mu3 if match_skew else np.zeros_like(mu3))
        return IncrementLaw(delta * a, np.full(Nn, float(delta)), np.full(Nn, 0.5 * math.log(2 * math.pi * delta)),
                            delta * b, np.log(p), np.log1p(-p))

    return nested_step_kl(target, t_prev, delta, law, nodes, inner_nodes)


def nested_step_kl(target: ChannelTarget, t_prev: float, delta: float,
                   sampler_law: Callable[[np.ndarray, Posterior], IncrementLaw], nodes: int = DEFAULT_NODES,
                   inner_nodes: int | None = None) -> float:
    r""":math:`E_{Y}\,D(P_{U\mid Y}\,\|\,Q_{U\mid Y})` (d = 1) by nested quadrature, for any sampler law.

    The outer rule is ``target.nodes(t_prev, nodes)`` over :math:`Y_{t_{k-1}}`; the inner one is the
    ``inner_nodes``-point Gauss-Hermite rule of each component :math:`N(\delta m_j(y), \delta^2 S_j + \delta)` of
    :math:`P_{U\mid y}` (the comparison increment of :func:`step_kl`):

    .. math:: \sum_n w_n \sum_j w_j(y_n) \sum_q w_q\,[\log p(U_{njq}\mid y_n) - \log q(U_{njq}\mid y_n)],

    compiled (:func:`_step_kl_inner`). ``sampler_law(y, posterior)`` returns the sampler's increment law
    :math:`Q_{U\mid y}` at the outer nodes ``y`` (``(N, 1)``) as an :class:`IncrementLaw`, given the target's
    :class:`Posterior` there.
    """
    target = _check_target(target)
    t_prev = _check_snr(t_prev, "t_prev")
    delta = _check_snr(delta, "delta", allow_zero=False)
    nodes = _check_nodes(nodes)
    inner_nodes = nodes if inner_nodes is None else _check_nodes(inner_nodes)
    if target.d != 1:
        raise ValueError("target: the nested-quadrature path KL supports d = 1 (Gaussian targets any d)")
    y, wy, _ = target.nodes(t_prev, nodes)
    post = target.posterior(y, t_prev)
    logw, mj, S = post.log_weights, post.component_means, post.gains
    Nn, K = logw.shape
    s2 = delta * delta * S[:, 0, 0] + delta  # (K,) component increment variances
    z, wz = gauss_hermite_normal(inner_nodes)
    q = sampler_law(y, post)
    if not isinstance(q, IncrementLaw) or any(np.shape(v) != (Nn,) for v in q if v is not None) \
            or (q.b is not None and (q.log_pa is None or q.log_pb is None)):
        raise ValueError(f"sampler_law: must return an IncrementLaw of arrays of shape ({Nn},) (b, log_pa and "
                         "log_pb given together)")
    c64 = np.ascontiguousarray
    inner = np.empty((Nn, K))
    _step_kl_inner(c64(logw), c64(delta * mj[:, :, 0]), np.sqrt(s2), c64(s2), 0.5 * np.log(2 * np.pi * s2), z, wz,
                   *(c64(v, dtype=np.float64) if isinstance(v, np.ndarray) else v for v in q.arrays()), inner)
    out = float(np.dot(wy, np.sum(np.exp(logw) * inner, axis=1)))
    if not math.isfinite(out):
        raise ValueError(f"delta: the step KL is not finite (t_prev={t_prev!r}, delta={delta!r}): step too large")
    return out


def path_kl_chain(target: ChannelTarget, ts, f: Callable | None = None, moment: int = 1,
                  nodes: int = DEFAULT_NODES, inner_nodes: int | None = None, per_step: bool = False,
                  closed_form: bool = True, match_skew: bool = True,
                  noise_var: Callable[[float], float] | None = None):
    r""":math:`\Delta_n = \sum_k E\,D(P_{U_k\mid Y_{k-1}}\|Q_{U_k\mid Y_{k-1}})`, the chain rule of KL (see :func:`step_kl`).

    ``noise_var(delta)``, if given, is the sampler's noise variance of a step of size ``delta``.
    """
    ts = validate_schedule(ts)
    nv = (lambda dd: None) if noise_var is None else noise_var
    with _times_from("ts", ("t", "t_prev", "delta")):
        terms = np.array([step_kl(target, float(ts[k - 1]), float(ts[k] - ts[k - 1]), f, moment, nodes, inner_nodes,
                                  closed_form, match_skew, nv(float(ts[k] - ts[k - 1]))) for k in range(1, ts.size)])
    return terms if per_step else float(terms.sum())


class _times_from:
    """Context: a ValueError naming a time (``t``, or the ``names`` given) of a schedule is re-raised naming the
    schedule argument ``arg`` (the times are derived from it), the original message kept."""

    def __init__(self, arg: str, names: tuple[str, ...] = ("t",)):
        self.arg, self.names = arg, names

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is ValueError and str(exc).split(":", 1)[0] in self.names:
            raise ValueError(f"{self.arg}: {exc}") from None
        return False


# ---------------------------------------------------------------------------------------------- Gaussian paths
def _cholesky(C: np.ndarray, name: str) -> np.ndarray:
    """The Cholesky factor of ``C``, or a ValueError naming it if ``C`` is not positive definite."""
    try:
        return np.linalg.cholesky(C)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name}: must be symmetric positive definite") from None


def gaussian_kl(m0: np.ndarray, C0: np.ndarray, m1: np.ndarray, C1: np.ndarray) -> float:
    r""":math:`D(N(m_0,C_0)\,\|\,N(m_1,C_1))` by Cholesky factors (``C1`` positive definite)."""
    from scipy.linalg import solve_triangular
    m0 = check_array(m0, "m0", (None,))
    d = m0.size
    m1, C0, C1 = check_array(m1, "m1", (d,)), check_array(C0, "C0", (d, d)), check_array(C1, "C1", (d, d))
    L0, L1 = _cholesky(C0, "C0"), _cholesky(C1, "C1")
    A = solve_triangular(L1, L0, lower=True)
    r = solve_triangular(L1, m1 - m0, lower=True)
    logdet = 2.0 * (np.sum(np.log(np.diag(L1))) - np.sum(np.log(np.diag(L0))))
    out = 0.5 * float(np.sum(A * A) - m0.size + logdet + r @ r)
    if not math.isfinite(out):
        raise ValueError(f"m1: the KL overflows float64 (means or covariances too far apart), got {out!r}")
    return out


def gaussian_path_kl(target: ChannelTarget, ts, f: Callable | None = None,
                     noise_var: Callable[[float], float] | None = None) -> dict:
    r"""Gaussian target: the KL of the comparison path from the sampler path, computed *directly* from the two
    Gaussian laws of :math:`(Y_1,\dots,Y_n)` in :math:`\mathbb R^{nd}` (no chain rule, no Lemma 2).

    Comparison (the oracle, from :math:`\mu,\Sigma` only): mean :math:`t_k\mu`, covariance
    :math:`t_jt_k\Sigma + \min(t_j,t_k)I`.  Sampler (the package's code): :math:`\hat Y_k = \hat Y_{k-1} +
    \delta_kf(\hat Y_{k-1}, t_{k-1}) + \sqrt{v_k}z_k` with the denoiser ``f(y (N,d), t_prev) -> (N,d)``, by
    default the package's posterior mean :meth:`ChannelTarget.posterior`, and :math:`v_k = \delta_k` unless
    ``noise_var(delta)`` says otherwise (negative controls).  ``f`` must be affine (it is, for a Gaussian
    target); its map :math:`f(y) = c + Gy` is read off at :math:`y = 0` and the unit vectors, so the recursion
    is :math:`\hat Y_k = B_k\hat Y_{k-1} + \delta_kc_k + \sqrt{v_k}z_k`, :math:`B_k = I + \delta_kG_k`, whose path law
    has the block lower-triangular factor :math:`L_{kj} = B_k\cdots B_{j+1}\sqrt{v_j}`.
    Returns ``{"path": D(P_{Y_{1:n}} || P_{hat Y_{1:n}}), "terminal": D(P_{Y_n} || P_{hat Y_n}), "dim": n d}``.
    """
    target = _check_target(target)
    if target.K != 1:
        raise ValueError("target: gaussian_path_kl needs a Gaussian target (one component)")
    ts = validate_schedule(ts)
    d, n = target.d, ts.size - 1
    mu, Sig = target.means[0], target.covs[0]
    eye = np.eye(d)
    probe = np.vstack([np.zeros((1, d)), eye])
    if f is None:
        def f(yy, tt):  # noqa: E306
            return target.posterior_mean(yy, tt)
    t = ts[1:]
    Pc = np.kron(np.outer(t, t), Sig) + np.kron(np.minimum.outer(t, t), eye)
    Pm = (t[:, None] * mu[None]).reshape(-1)
    L = np.zeros((n * d, n * d))
    m = np.zeros(d)
    ms = np.empty((n, d))
    for k in range(n):
        tp, dk = float(ts[k]), float(ts[k + 1] - ts[k])
        fp = np.asarray(f(probe, tp), dtype=float).reshape(d + 1, d)
        c, G = fp[0], (fp[1:] - fp[0]).T
        B = eye + dk * G
        v = dk if noise_var is None else float(noise_var(dk))
        if k > 0:
            L[k * d:(k + 1) * d, :k * d] = B @ L[(k - 1) * d:k * d, :k * d]
        L[k * d:(k + 1) * d, k * d:(k + 1) * d] = math.sqrt(v) * eye
        m = B @ m + dk * c
        ms[k] = m
    from scipy.linalg import solve_triangular
    if not (np.all(np.isfinite(Pc)) and np.all(np.isfinite(L)) and np.all(np.isfinite(ms))):
        raise ValueError(f"ts: the path laws overflow float64 (times up to {float(ts[-1]):.3g} too large)")
    try:
        Lp = np.linalg.cholesky(Pc)
    except np.linalg.LinAlgError:
        raise ValueError("ts: the covariance of the comparison path is not numerically positive definite "
                         "(times too close together or too large)") from None
    A = solve_triangular(L, Lp, lower=True)
    r = solve_triangular(L, ms.reshape(-1) - Pm, lower=True)
    logdet = 2.0 * float(np.sum(np.log(np.diag(L))) - np.sum(np.log(np.diag(Lp))))
    path = 0.5 * float(np.sum(A * A) - n * d + logdet + r @ r)
    Ln = L[(n - 1) * d:, :]
    term = gaussian_kl(Pm[(n - 1) * d:], Pc[(n - 1) * d:, (n - 1) * d:], ms[-1], Ln @ Ln.T)
    return {"path": path, "terminal": term, "dim": n * d}


# ---------------------------------------------------------------------------------------------- terminal law
def terminal_kl_grid(target: ChannelTarget, ts, f: Callable | None = None, points: int = 1501,
                     width: float = 12.0, noise_var: Callable[[float], float] | None = None) -> dict:
    r"""1-D: :math:`D(P_{Y_{t_n}}\,\|\,\mathrm{Law}(\hat Y_n))` with the sampler law propagated on a grid.

    Grid :math:`\pm(t_n\max_j|\mu_j| + \mathrm{width}\sqrt{t_n\,(1 + t_n\max\Sigma)})`, trapezoid rule; the
    sampler kernel is :math:`N(y + \delta_k f(y), \delta_k)` and :math:`\hat Y_1\sim N(\delta_1 f(0), \delta_1)`
    exactly (``noise_var(delta)`` replaces the kernel variance ``delta`` if given: negative controls).  Returns the KL, the sampler's mass on the grid (should be ~1) and the grid spacing.
    The KL is ``inf`` if the sampler's grid law underflows to 0 where :math:`P_{Y_{t_n}}` does not (no floor).
    """
    target = _check_target(target)
    if target.d != 1:
        raise ValueError("target: terminal_kl_grid supports d = 1")
    ts = validate_schedule(ts)
    points = check_int(points, "points", low=101, high=20001)
    width = check_positive(width, "width")
    T = float(ts[-1])
    if f is None:
        def f(yy, tt):  # noqa: E306
            return target.posterior_mean(yy.reshape(-1, 1), tt)[:, 0]
    R = T * float(np.abs(target.means).max()) + width * math.sqrt(T * (1 + T * float(target.covs.max())))
    y = np.linspace(-R, R, points)
    h = y[1] - y[0]
    wq = np.full(points, h)
    wq[0] = wq[-1] = h / 2
    nv = (lambda dd: dd) if noise_var is None else noise_var
    d1 = float(ts[1])
    f0 = float(np.asarray(f(np.zeros(1), 0.0)).reshape(-1)[0])
    v1 = float(nv(d1))
    q = np.exp(-0.5 * (y - d1 * f0) ** 2 / v1) / math.sqrt(2 * math.pi * v1)
    if not math.isfinite(R):
        raise ValueError(f"ts: the grid law of Y_t is NaN (grid half-width {R:.3g}): times or width too large")
    for k in range(2, ts.size):
        dk, tp = float(ts[k] - ts[k - 1]), float(ts[k - 1])
        mu = y + dk * np.asarray(f(y, tp), dtype=float).reshape(-1)
        vk = float(nv(dk))
        if not (np.all(np.isfinite(mu)) and math.isfinite(vk)):
            raise ValueError(f"ts: the grid law of Y_t is NaN (kernel means or variance not finite at step {k})")
        # the kernel summed by the compiled recurrence of grid_density (was a dense exp matrix and its product)
        q = gauss_transform(y, mu, wq * q, math.sqrt(vk))
    logp = _logsumexp(np.log(target.weights)[None] + target.log_component_density(y[:, None], T), axis=1)
    p = np.exp(logp)
    # the q = 0 rule of numerics.divergences: +inf where the sampler's grid law vanishes and P_{Y_n} does not
    with np.errstate(divide="ignore", invalid="ignore"):
        integrand = np.where(p > 0, p * (logp - np.log(q)), 0.0)
    if np.isnan(np.dot(wq, integrand)) or not math.isfinite(R):
        raise ValueError(f"ts: the grid law of Y_t is NaN (grid half-width {R:.3g}): times or width too large")
    return {"kl": float(np.dot(wq, integrand)), "mass": float(np.dot(wq, q)), "h": float(h)}


# ---------------------------------------------------------------------------------------------- Monte Carlo
def snr_sample(target: ChannelTarget, ts, y0: np.ndarray, noises: np.ndarray, f: Callable | None = None,
               trajectory: bool = False):
    r"""The sampler :math:`\hat Y_k = \hat Y_{k-1} + \delta_k f(\hat Y_{k-1}, t_{k-1}) + \sqrt{\delta_k}\,z_k`.

    ``ts`` strictly increasing SNR times (``ts[0]`` may be > 0: the start time of ``y0``), ``noises``
    (n_steps, N, d) the standard normals; ``f`` defaults to the posterior mean.
    """
    target = _check_target(target)
    ts = as_float_array(ts, "ts", 1)
    if ts.size < 2 or np.any(np.diff(ts) <= 0) or ts[0] < 0:
        raise ValueError("ts: must be strictly increasing, >= 0, with at least one step")
    y = as_float_array(y0, "y0", 2).copy()
    z = as_float_array(noises, "noises", 3)
    if z.shape != (ts.size - 1,) + y.shape:
        raise ValueError(f"noises: expected shape {(ts.size - 1,) + y.shape}, got {z.shape}")
    traj = [y.copy()]
    for k in range(1, ts.size):
        tp, dk = float(ts[k - 1]), float(ts[k] - ts[k - 1])
        fy = target.posterior_mean(y, tp) if f is None else np.asarray(f(y, tp), dtype=float)
        y = y + dk * fy + math.sqrt(dk) * z[k - 1]
        if not np.all(np.isfinite(y)):
            raise ValueError(f"y0: the sampler state is NaN or infinite after step {k} (t={float(ts[k])!r}); "
                             "start values or steps too large")
        traj.append(y.copy())
    return np.stack(traj) if trajectory else y


# ---------------------------------------------------------------------------------------------- mpmath
def _mp_setup(target: ChannelTarget):
    target = _check_target(target)
    if target.d != 1:
        raise ValueError("target: mpmath references support d = 1")
    import mpmath as mp
    return mp


def _check_mp_time(t, mp):
    """An SNR time ``t >= 0``: an mpmath ``mpf`` (kept at its precision) or a real number (as a float)."""
    if isinstance(t, mp.mpf):
        if not (mp.isfinite(t) and t >= 0):
            raise ValueError(f"t: must be finite and >= 0, got {t!r}")
        return t
    return _check_snr(t)


def _mp_parts(target: ChannelTarget, t, mp):
    """Per component: (pi_j, mean of Y, var of Y, posterior mean coefficients, posterior var) in mpmath."""
    out = []
    for w, mu, S in zip(target.weights, target.means[:, 0], target.covs[:, 0, 0]):
        w, mu, S = mp.mpf(float(w)), mp.mpf(float(mu)), mp.mpf(float(S))
        g = S / (1 + t * S)
        out.append((w, t * mu, t * t * S + t, mu, g))
    return out


def _mp_integral(target: ChannelTarget, t, integrand, mp):
    parts = _mp_parts(target, t, mp)
    sd = max(mp.sqrt(c[2]) for c in parts)
    centers = sorted(set(float(c[1]) for c in parts))
    brk = [-mp.inf] + [mp.mpf(c) + k * sd for c in centers for k in (-4, 0, 4)] + [mp.inf]
    brk = sorted(set(brk[1:-1]))
    return mp.quad(lambda y: integrand(y, parts), [-mp.inf] + brk + [mp.inf])


# mp_mmse and mp_mutual_info share their prologue (validate, precision, the t = 0 case) by shape only: the
# value at t = 0 and the integrand differ, so each stays written out
def mp_mmse(target: ChannelTarget, t, dps: int = 30):
    r""":math:`M(t)` of a 1-D target by mpmath (tanh-sinh quadrature at ``dps`` digits); returns an ``mpf``."""
    target = _check_target(target)
    mp = _mp_setup(target)
    t, dps = _check_mp_time(t, mp), check_int(dps, "dps", 1, 1000)
    with mp.workdps(dps):
        t = mp.mpf(t)
        if t == 0:
            return mp.mpf(target.tr_cov)

        def integrand(y, parts):
            dens = [w * mp.npdf(y, my, mp.sqrt(vy)) for w, my, vy, mu, g in parts]
            p = mp.fsum(dens)
            if p == 0:
                return mp.mpf(0)
            mj = [mu + g * (y - t * mu) for w, my, vy, mu, g in parts]
            m = mp.fsum(d_ * a for d_, a in zip(dens, mj)) / p
            var = mp.fsum(d_ * (c[4] + (a - m) ** 2) for d_, a, c in zip(dens, mj, parts)) / p
            return p * var
        return +_mp_integral(target, t, integrand, mp)


def mp_mutual_info(target: ChannelTarget, t, dps: int = 30):
    r""":math:`I(X;Y_t)` of a 1-D target by mpmath: :math:`h(Y_t) - \tfrac12\log(2\pi e t)` integrated directly."""
    target = _check_target(target)
    mp = _mp_setup(target)
    t, dps = _check_mp_time(t, mp), check_int(dps, "dps", 1, 1000)
    with mp.workdps(dps):
        t = mp.mpf(t)
        if t == 0:
            return mp.mpf(0)

        def integrand(y, parts):
            p = mp.fsum(w * mp.npdf(y, my, mp.sqrt(vy)) for w, my, vy, mu, g in parts)
            return -p * mp.log(p) if p > 0 else mp.mpf(0)
        h = _mp_integral(target, t, integrand, mp)
        return +(h - mp.log(2 * mp.pi * mp.e * t) / 2)

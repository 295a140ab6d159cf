r"""End-to-end read-out of the discrete sampler on a correlated 2-D Gaussian-mixture target (SNR time).

Time convention: SNR time, as in :mod:`numerics.papers.discrete_kl.channel`: :math:`Y_t = tX + W_t`, comparison
chain :math:`Y_k = Y_{k-1} + \delta_kX + \sqrt{\delta_k}N_k`, sampler
:math:`\hat Y_k = \hat Y_{k-1} + \delta_k f_k(\hat Y_{k-1}) + \sqrt{\delta_k}Z_k`, both from :math:`Y_0 = \hat Y_0 = 0`,
:math:`f_k = m_{t_{k-1}}`, :math:`m_t(y) = E[X\mid Y_t = y]`; :math:`\Delta_n = D(P_{Y_{1:n}}\,\|\,Q_{\hat Y_{1:n}})`.

Target
------
:func:`readout_target` is a three-component Gaussian mixture on :math:`\mathbb R^2` with full-rank, correlated
component covariances and means off any product grid, so :math:`X_1, X_2` are dependent and the law is not a
product (nor a rotation of one).  Its posterior, MMSE and mutual information are the channel's
(:meth:`channel.ChannelTarget.posterior`, :func:`channel.mmse`, :func:`channel.mutual_info`).

Read-out and the bound
----------------------
The read-out of :math:`X` from the sampler's last state is the state scaled back to data scale with the
channel's own noise level re-added,

.. math:: \hat X = \hat Y_n/t_n + \sqrt{\tau}\,G,\qquad \tau = 1/t_n,\quad G\sim N(0, I_d)\ \text{independent}.

Augment both chains with one more coordinate: the comparison with :math:`X` itself, the sampler with
:math:`\hat X`.  Given the path, :math:`X` depends on it only through :math:`Y_n` (sufficiency), and
:math:`\hat X\mid \hat Y_{1:n} = y \sim N(y_n/t_n, \tau I)`, so the chain rule of KL gives the *identity*

.. math:: D(P_{Y_{1:n},X}\,\|\,Q_{\hat Y_{1:n},\hat X}) = \Delta_n + T_\tau(t_n),\qquad
   T_\tau(t) = E_{Y_t}\,D\big(P_{X\mid Y_t}\,\big\|\,N(Y_t/t, \tau I)\big),

and data processing (marginalise to the last coordinate) gives :math:`D(\mu\,\|\,\mathrm{Law}\,\hat X)\le\Delta_n+T_\tau(t_n)`.
Since :math:`D(P\|N(a,\tau I)) = -h(P) + \tfrac d2\log(2\pi\tau) + E_P\|U-a\|^2/(2\tau)`,
:math:`E\|X - Y_t/t\|^2 = E\|W_t\|^2/t^2 = d/t` and :math:`E\,h(P_{X\mid Y_t}) = h(X\mid Y_t) = h(X) - I(t)`,

.. math:: T_\tau(t) = I(t) - h(X) + \tfrac d2\log(2\pi\tau) + \frac{d}{2t\tau},\qquad
   T(t) := T_{1/t}(t) = I(t) - h(X) + \tfrac d2\log\frac{2\pi e}{t}

(:math:`\tau = 1/t` minimises :math:`T_\tau`).  :math:`T\ge0` and :math:`T'(t) = \tfrac12(M(t) - d/t)\le0` (I-MMSE;
:math:`M(t)\le d/t`, the error of the estimator :math:`y/t`).  For a Gaussian :math:`N(m,\Sigma)`,
:math:`T(t)=\tfrac12\sum_i\log(1 + 1/(t\lambda_i))`.  With Theorem 1 (reconstructed, exact denoiser),
:math:`\Delta_n\le\tfrac12\delta_{\max}(\mathrm{tr\,Cov}X - M(t_n))`, hence for uniform steps :math:`\delta = t/n`

.. math:: D(\mu\,\|\,\mathrm{Law}\,\hat X)\le B_n(t) := \frac{t}{2n}\big(\mathrm{tr\,Cov}X - M(t)\big) + T(t),\qquad
   B_n'(t) = \frac{\mathrm{tr\,Cov}X - M(t) - tM'(t)}{2n} + \frac{M(t) - d/t}{2},

with :math:`M'(t) = -E\,\mathrm{tr}\,\mathrm{Cov}(X\mid Y_t)^2`.  :math:`B_n'\to-\infty` as :math:`t\to0` and
:math:`B_n'\to\mathrm{tr\,Cov}X/(2n) > 0` as :math:`t\to\infty`, so :math:`B_n` has an interior minimiser
(:func:`bound_minimiser`, the root of :math:`B_n'`); with :math:`M(t) = d/t - J/t^2 + o(t^{-2})` (:math:`J` the
Fisher information of :math:`\mu`) it grows like :math:`\sqrt{nJ/\mathrm{tr\,Cov}X}`.

The deterministic read-out :math:`\hat Y_n/t_n` (:math:`\tau = 0`) has :math:`T_0 = \infty`: its KL from
:math:`\mu` is finite for this target, but no chain-rule bound of this form covers it (it is reported, not judged).

The sampler's law on a grid
---------------------------
:math:`\hat Y_1\sim N(\delta_1 f_1(0), \delta_1 I)` exactly; then, on tensor grids :math:`\mathcal G_k` of spacing
:math:`h_k = c_h\sqrt{\delta_{k+1}}` covering :math:`t_k\mu_j \pm w\,\sigma_k` (:math:`\sigma_k^2 = t_k^2\max_j\Sigma_{j,ii} + t_k`,
the comparison law's widest component, :math:`w = 7`; the mass left off is measured and enters the error),

.. math:: q_k(y') = \sum_{a\in\mathcal G_{k-1}} h_{k-1}^2\,q_{k-1}(a)\,\phi_{\delta_k}\big(y'_1 - F_1(a)\big)\,
   \phi_{\delta_k}\big(y'_2 - F_2(a)\big),\qquad F(a) = a + \delta_k f_k(a),

the trapezoid rule of the Chapman-Kolmogorov integral (the Gaussian kernel factorises, so each step is one
matrix product :math:`\Phi_1^\top\mathrm{diag}(c)\Phi_2`).  The read-out density on a data-scale grid (the means
:math:`\pm w` sd, sd² = :math:`\max_j\Sigma_{j,ii} + 2/t_n`, the variance of the comparison read-out :math:`X + N(0, 2I/t_n)`) is
:math:`\hat q(x) = \sum_a h_n^2 q_n(a) N(x; a/t_n, \tau I)`, and
:math:`D(\mu\|\hat q) = \sum_x h_x^2\,\mu(x)\log(\mu(x)/\hat q(x))`.  Every integrand is analytic and Gaussian-decaying,
so the trapezoid error decays like :math:`e^{-2\pi^2\sigma^2/h^2}` for the narrowest scale :math:`\sigma`; the error
estimate (:func:`readout_kl` with ``err=True``) is the change of the KL when every spacing shrinks by 1.5x plus the
sampler mass missing from the grid (the same a-posteriori convention as the channel module: it bounds the error
of the finer value whenever the error contracts by at least 2x).

Gaussian oracle
---------------
For a Gaussian target the sampler is affine, so its read-out law is Gaussian: :func:`affine_readout_law`
propagates the mean and covariance of the *sampler as implemented* (its step map read off at :math:`y=0` and the
unit vectors), and :func:`gaussian_readout_kl_oracle` computes the same KL from :math:`\mu,\Sigma` alone, in the
eigenbasis of :math:`\Sigma` (:math:`V_k = (1+\delta_ka_{k-1})^2V_{k-1}+\delta_k`, :math:`a_j = \lambda/(1+t_j\lambda)`, mean
:math:`t_k\mu`; see ``proofs_notes/discrete_kl.md#terminal-rate``).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from numerics.papers.discrete_kl import channel as C
from numerics.quadrature import gauss_hermite_normal_nd
from numerics.references.grid_density import gauss_kernel_matrix
from numerics.validate import check_int, check_positive

__all__ = [
    "SamplerSpec",
    "readout_target",
    "log_density",
    "entropy",
    "terminal_term",
    "gap_bound",
    "theorem1_readout_bound",
    "bound_derivative",
    "bound_minimiser",
    "marginal_posterior_mean",
    "denoiser",
    "readout_kl",
    "readout_density",
    "affine_readout_law",
    "gaussian_readout_kl",
    "gaussian_readout_kl_oracle",
]

#: Half-width of the grids in standard deviations of the widest component (tail mass ~1e-12 per axis, estimated).
GRID_WIDTH = 7.0
#: Default grid spacing factor: h_k = GRID_FACTOR sqrt(delta_{k+1}).
GRID_FACTOR = 0.7
#: Source grid points whose mass is below this fraction of the largest are skipped (mass added to the error).
PRUNE = 1e-22


class SamplerSpec(NamedTuple):
    r"""How the sampler is implemented (the stated sampler is the default; the others are negative controls).

    ``denoiser``: ``"posterior"`` (:math:`E[X\mid Y_t=y]`) or ``"product"`` (each coordinate's 1-D posterior
    mean given its own coordinate, :func:`marginal_posterior_mean`); ``time_offset``: 0 uses
    :math:`m_{t_{k-1}}` at step ``k``, 1 uses :math:`m_{t_k}`; ``dtype``: precision of the step coefficients
    :math:`\delta_k,\sqrt{\delta_k}, 1/t_n`; ``scale_back``: divide the last state by :math:`t_n`.
    """

    denoiser: str = "posterior"
    time_offset: int = 0
    dtype: type = np.float64
    scale_back: bool = True


STATED = SamplerSpec()


def readout_target() -> C.ChannelTarget:
    r"""The 2-D target: four equally weighted Gaussians with means near the diagonal :math:`x_2 = x_1` and
    correlated covariances (correlations :math:`\pm0.33..0.47`): :math:`X_1, X_2` strongly dependent, not a product."""
    return C.gaussian_mixture(
        [0.25, 0.25, 0.25, 0.25],
        [[-1.9, -1.7], [-0.6, -0.5], [0.6, 0.7], [1.8, 1.9]],
        [[[0.15, 0.07], [0.07, 0.15]], [[0.15, -0.06], [-0.06, 0.15]], [[0.15, 0.07], [0.07, 0.15]],
         [[0.15, -0.05], [-0.05, 0.15]]],
        name="2-D correlated mixture")


def _check_target(target) -> C.ChannelTarget:
    if not isinstance(target, C.ChannelTarget):
        raise ValueError(f"target: must be a ChannelTarget, got {type(target).__name__}")
    if target.d != 2:
        raise ValueError(f"target: must be 2-D, got d={target.d}")
    for j in range(target.K):
        if np.linalg.eigvalsh(target.covs[j]).min() <= 0:
            raise ValueError(f"target: component {j} has a singular covariance (h(X) = -inf; the read-out bound "
                             "is infinite)")
    return target


def _check_spec(spec) -> SamplerSpec:
    if not isinstance(spec, SamplerSpec):
        raise ValueError(f"spec: must be a SamplerSpec, got {type(spec).__name__}")
    if spec.denoiser not in ("posterior", "product"):
        raise ValueError(f"spec: denoiser must be 'posterior' or 'product', got {spec.denoiser!r}")
    if spec.time_offset not in (0, 1):
        raise ValueError(f"spec: time_offset must be 0 or 1, got {spec.time_offset!r}")
    return spec


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def log_density(target: C.ChannelTarget, x: ArrayLike) -> np.ndarray:
    r""":math:`\log\mu(x) = \mathrm{lse}_j[\log\pi_j + \log N(x;\mu_j,\Sigma_j)]` at points ``x`` (N, d) (log-sum-exp)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != target.d:
        raise ValueError(f"x: expected shape (N, {target.d}), got {x.shape}")
    out = np.empty((x.shape[0], target.K))
    for j in range(target.K):
        L = np.linalg.cholesky(target.covs[j])
        r = np.linalg.solve(L, (x - target.means[j]).T)
        out[:, j] = (math.log(target.weights[j]) - 0.5 * np.sum(r * r, axis=0) - np.sum(np.log(np.diag(L)))
                     - 0.5 * target.d * math.log(2 * math.pi))
    return _logsumexp(out, axis=1)


def _entropy_q(target: C.ChannelTarget, n: int) -> float:
    z, w = gauss_hermite_normal_nd(n, target.d)
    h = 0.0
    for j in range(target.K):
        x = target.means[j] + z @ np.linalg.cholesky(target.covs[j]).T
        h -= target.weights[j] * float(np.dot(w, log_density(target, x)))
    return h


def entropy(target: C.ChannelTarget, nodes: int = 64, err: bool = False):
    r"""Differential entropy :math:`h(X) = -\sum_j\pi_jE_{N(\mu_j,\Sigma_j)}\log\mu(X)` (nats), tensor Gauss-Hermite.

    ``err=True`` returns ``(value, |Q_n - Q_{1.5n}|)`` (value of the finer rule).
    """
    target = _check_target(target)
    nodes = check_int(nodes, "nodes", low=4, high=400)
    if target.K == 1:
        v = 0.5 * float(np.linalg.slogdet(2 * math.pi * math.e * target.covs[0])[1])
        return (v, 0.0) if err else v
    a, b = _entropy_q(target, nodes), _entropy_q(target, int(math.ceil(1.5 * nodes)))
    return (b, abs(a - b)) if err else b


def terminal_term(target: C.ChannelTarget, t: float, nodes: int = 96, err: bool = False):
    r""":math:`T(t) = I(X;Y_t) - h(X) + \tfrac d2\log(2\pi e/t)`, the read-out term of the bound (``t > 0``, SNR time).

    ``err=True`` returns ``(value, estimate)``: the sum of the 1.5x-node estimates of :math:`I` and :math:`h`.
    """
    target = _check_target(target)
    t = check_positive(t, "t")
    I, eI = C.mutual_info(target, t, nodes=nodes, err=True)
    h, eh = entropy(target, err=True)
    v = I - h + 0.5 * target.d * math.log(2 * math.pi * math.e / t)
    return (v, eI + eh) if err else v


def gap_bound(target: C.ChannelTarget, t: float, n: int, nodes: int = 96, err: bool = False):
    r""":math:`\Delta_n + T(t)` for uniform steps :math:`t_k = kt/n`: the exact value of the augmented path KL
    (Lemma 2's gap for :math:`\Delta_n`, the chain rule evaluated); ``err=True`` adds the quadrature estimate."""
    target = _check_target(target)
    n = check_int(n, "n", low=1, high=10**5)
    ts = C.schedule("uniform", T=check_positive(t, "t"), n=n)
    D, eD = C.riemann_gap(target, ts, nodes=nodes, err=True)
    T, eT = terminal_term(target, t, nodes, err=True)
    return (D + T, eD + eT) if err else D + T


def theorem1_readout_bound(target: C.ChannelTarget, t: float, n: int, nodes: int = 96, err: bool = False):
    r""":math:`B_n(t) = \tfrac{t}{2n}(\mathrm{tr\,Cov}X - M(t)) + T(t)` (uniform steps; Theorem 1 + read-out term)."""
    target = _check_target(target)
    n = check_int(n, "n", low=1, high=10**5)
    t = check_positive(t, "t")
    M, eM = C.mmse(target, t, nodes=nodes, err=True)
    T, eT = terminal_term(target, t, nodes, err=True)
    v = t / (2 * n) * (target.tr_cov - M) + T
    return (v, t / (2 * n) * eM + eT) if err else v


def bound_derivative(target: C.ChannelTarget, t: float, n: int, nodes: int = 96) -> float:
    r""":math:`B_n'(t) = (\mathrm{tr\,Cov}X - M - tM')/(2n) + (M - d/t)/2` with :math:`M' = -E\,\mathrm{tr\,Cov}(X\mid Y_t)^2`."""
    target = _check_target(target)
    t = check_positive(t, "t")
    n = check_int(n, "n", low=1, high=10**5)
    M = C.mmse(target, t, nodes=nodes)
    dM = C.mmse_derivative(target, t, nodes=nodes)
    return (target.tr_cov - M - t * dM) / (2 * n) + 0.5 * (M - target.d / t)


def bound_minimiser(target: C.ChannelTarget, n: int, lo: float = 0.05, hi: float = 400.0, nodes: int = 48,
                    xtol: float = 1e-5) -> float:
    r"""The root of :math:`B_n'` in ``[lo, hi]`` (bisection in :math:`\log t`): the minimiser of the bound over ``t``.

    Raises ``ValueError`` naming ``lo``/``hi`` if :math:`B_n'` does not change sign from negative to positive there.
    """
    target = _check_target(target)
    lo, hi = check_positive(lo, "lo"), check_positive(hi, "hi")
    if not lo < hi:
        raise ValueError(f"hi: must exceed lo, got lo={lo!r}, hi={hi!r}")
    if bound_derivative(target, lo, n, nodes) >= 0:
        raise ValueError(f"lo: B_n' is not negative at lo={lo!r}")
    if bound_derivative(target, hi, n, nodes) <= 0:
        raise ValueError(f"hi: B_n' is not positive at hi={hi!r}")
    a, b = math.log(lo), math.log(hi)
    while b - a > xtol:
        c = 0.5 * (a + b)
        if bound_derivative(target, math.exp(c), n, nodes) < 0:
            a = c
        else:
            b = c
    return math.exp(0.5 * (a + b))


# ---------------------------------------------------------------------------------------------- sampler
def marginal_posterior_mean(target: C.ChannelTarget, y: ArrayLike, t: float) -> np.ndarray:
    r"""Control: :math:`(E[X_1\mid Y_{t,1}=y_1],\ E[X_2\mid Y_{t,2}=y_2])`, each from the 1-D marginal mixture
    :math:`\sum_j\pi_jN(\mu_{j,i},\Sigma_{j,ii})` (the correlation ignored: the 2-D posterior taken as the
    product of the 1-D ones)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1, target.d)
    out = np.empty_like(y)
    for i in range(target.d):
        mi = C.gaussian_mixture(target.weights, target.means[:, i:i + 1], target.covs[:, i:i + 1, i:i + 1])
        out[:, i] = mi.posterior_mean(y[:, i:i + 1], float(t))[:, 0]
    return out


def denoiser(target: C.ChannelTarget, spec: SamplerSpec = STATED) -> Callable[[np.ndarray, float], np.ndarray]:
    """The sampler's denoiser ``f(y (N,d), t) -> (N,d)`` as ``spec`` implements it (time index handled by the caller)."""
    spec = _check_spec(spec)
    if spec.denoiser == "product":
        return lambda y, t: marginal_posterior_mean(target, y, t)
    return lambda y, t: target.posterior_mean(np.asarray(y, dtype=np.float64).reshape(-1, target.d), float(t))


def _coefficients(ts: np.ndarray, spec: SamplerSpec):
    """Per step (t used by the denoiser, delta, noise variance) and the read-out scale 1/s, in ``spec.dtype``."""
    c = lambda v: float(spec.dtype(v))  # noqa: E731
    steps = []
    for k in range(1, ts.size):
        dk = float(ts[k] - ts[k - 1])
        t_f = float(ts[k - 1 + spec.time_offset])
        steps.append((t_f, c(dk), c(math.sqrt(dk)) ** 2))
    inv_s = c(1.0 / float(ts[-1])) if spec.scale_back else 1.0
    return steps, inv_s, c(1.0 / float(ts[-1]))


def _axis_grid(center_lo: float, center_hi: float, sd: float, h: float, width: float) -> np.ndarray:
    lo, hi = center_lo - width * sd, center_hi + width * sd
    m = int(math.ceil((hi - lo) / h))
    return lo + h * np.arange(m + 1) - 0.5 * (m * h - (hi - lo))


def _state_grid(target: C.ChannelTarget, t: float, h: float, width: float):
    axes = []
    for i in range(target.d):
        sd = math.sqrt(t * t * float(target.covs[:, i, i].max()) + t)
        axes.append(_axis_grid(t * float(target.means[:, i].min()), t * float(target.means[:, i].max()), sd, h, width))
    return axes


def _phi(x: np.ndarray, centers: np.ndarray, v: float) -> np.ndarray:
    """(P, G) matrix of N(x_g; centers_p, v) on the uniform grid ``x``: the compiled recurrence
    :func:`numerics.references.grid_density.gauss_kernel_matrix` with sd = sqrt(v)."""
    if not np.all(np.isfinite(centers)):
        raise ValueError("ts: the sampler's kernel centres are not finite (times too large)")
    return gauss_kernel_matrix(x, centers, math.sqrt(v))


def _push(c: np.ndarray, centers: np.ndarray, v: float, axes) -> np.ndarray:
    """sum_a c_a N(x1; centers_a1, v) N(x2; centers_a2, v) on the tensor grid axes[0] x axes[1]."""
    P1 = _phi(axes[0], centers[:, 0], v)
    P2 = _phi(axes[1], centers[:, 1], v)
    return P1.T @ (c[:, None] * P2)


_STATE_CACHE: dict = {}
#: Largest number of propagated state laws kept (each a few hundred kB).
STATE_CACHE_SIZE = 64


def _state_law(target, ts, spec, factor, width):
    """Law of hat Y_n on its grid: (axes, density, pruned mass).  The read-out (``spec.scale_back``) does not enter,
    so the law is memoised on everything else (the target's arrays, the schedule, the spec, the grid)."""
    key = (target.weights.tobytes(), target.means.tobytes(), target.covs.tobytes(), np.asarray(ts).tobytes(),
           spec.denoiser, spec.time_offset, np.dtype(spec.dtype).str, factor, width)
    if key in _STATE_CACHE:
        return _STATE_CACHE[key]
    f = denoiser(target, spec)
    steps, _, _ = _coefficients(ts, spec)
    n = len(steps)
    t_f, d1, v1 = steps[0]
    m1 = d1 * f(np.zeros((1, target.d)), t_f)[0]
    nxt = float(np.sqrt(steps[1][2])) if n > 1 else math.sqrt(v1)
    axes = _state_grid(target, float(ts[1]), factor * nxt, width)
    Y1, Y2 = np.meshgrid(axes[0], axes[1], indexing="ij")
    q = np.exp(-0.5 * ((Y1 - m1[0]) ** 2 + (Y2 - m1[1]) ** 2) / v1) / (2 * math.pi * v1)
    pruned = 0.0
    for k in range(1, n):
        t_f, dk, vk = steps[k]
        h2 = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
        pts = np.stack([Y1.ravel(), Y2.ravel()], axis=1)
        c = h2 * q.ravel()
        keep = c > PRUNE * c.max()
        pruned += float(c[~keep].sum())
        pts, c = pts[keep], c[keep]
        F = pts + dk * f(pts, t_f)
        vn = steps[k + 1][2] if k + 1 < n else vk
        axes = _state_grid(target, float(ts[k + 1]), factor * math.sqrt(vn), width)
        q = _push(c, F, vk, axes)
        Y1, Y2 = np.meshgrid(axes[0], axes[1], indexing="ij")
    if len(_STATE_CACHE) >= STATE_CACHE_SIZE:
        _STATE_CACHE.pop(next(iter(_STATE_CACHE)))
    _STATE_CACHE[key] = (axes, q, pruned)
    return axes, q, pruned


def _propagate(target, ts, spec, factor, width, xgrid):
    """Law of the read-out hat X on the tensor grid ``xgrid``; returns (density, mass on the state grid, pruned mass)."""
    _, inv_s, tau = _coefficients(ts, spec)
    axes, q, pruned = _state_law(target, ts, spec, factor, width)
    Y1, Y2 = np.meshgrid(axes[0], axes[1], indexing="ij")
    h2 = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
    mass = float(h2 * q.sum())
    pts = np.stack([Y1.ravel(), Y2.ravel()], axis=1)
    c = h2 * q.ravel()
    keep = c > PRUNE * c.max()
    pruned += float(c[~keep].sum())
    dens = _push(c[keep], inv_s * pts[keep], tau, xgrid)
    return dens, mass, pruned


def _data_grid(target: C.ChannelTarget, h: float, width: float, t: float):
    """Data-scale grid: the means +- width sd, sd^2 = max_j Sigma_j,ii + 2/t (the comparison read-out
    Y_t/t + sqrt(1/t) G = X + N(0, 2I/t)), so that it carries both mu and the read-out law."""
    return [_axis_grid(float(target.means[:, i].min()), float(target.means[:, i].max()),
                       math.sqrt(float(target.covs[:, i, i].max()) + 2.0 / t), h, width) for i in range(target.d)]


def _kl_on_grid(target, xgrid, q):
    X1, X2 = np.meshgrid(xgrid[0], xgrid[1], indexing="ij")
    lp = log_density(target, np.stack([X1.ravel(), X2.ravel()], axis=1)).reshape(X1.shape)
    h2 = (xgrid[0][1] - xgrid[0][0]) * (xgrid[1][1] - xgrid[1][0])
    p = np.exp(lp)
    with np.errstate(divide="ignore"):
        lq = np.log(q)
    integrand = np.where(p > 0, p * (lp - lq), 0.0)
    return float(h2 * integrand.sum())


def _readout_law(target, ts, spec, factor, width, h_data):
    xg = _data_grid(target, h_data, width, float(ts[-1]))
    dens, mass, pruned = _propagate(target, ts, spec, factor, width, xg)
    return xg, dens, mass, pruned


def readout_density(target: C.ChannelTarget, ts: ArrayLike, spec: SamplerSpec = STATED, factor: float = GRID_FACTOR,
                    width: float = GRID_WIDTH, h_data: float = 0.12):
    r"""The density of the read-out :math:`\hat X = \hat Y_n/t_n + \sqrt{1/t_n}G` on the data-scale tensor grid.

    Returns ``(axes, density)`` with ``axes`` the two 1-D grids and ``density[i, j]`` the value at
    ``(axes[0][i], axes[1][j])`` (see :func:`readout_kl` for the arguments).
    """
    target = _check_target(target)
    spec = _check_spec(spec)
    ts = C.validate_schedule(ts)
    if ts.size < 3:
        raise ValueError("ts: needs at least two steps")
    xg, dens, _, _ = _readout_law(target, ts, spec, check_positive(factor, "factor"), check_positive(width, "width"),
                                  check_positive(h_data, "h_data"))
    return xg, dens


def readout_kl(target: C.ChannelTarget, ts: ArrayLike, spec: SamplerSpec = STATED, factor: float = GRID_FACTOR,
               width: float = GRID_WIDTH, h_data: float = 0.12, err: bool = False):
    r""":math:`D(\mu\,\|\,\mathrm{Law}(\hat Y_n/t_n + \sqrt{1/t_n}\,G))`, the sampler's law propagated on grids.

    Parameters
    ----------
    target : ChannelTarget
        2-D target with full-rank component covariances.
    ts : array_like
        SNR schedule ``[0, t_1, ..., t_n]`` (the leading 0 may be omitted), at least two steps.
    spec : SamplerSpec
        The sampler as implemented (default: the stated one).
    factor : float
        State-grid spacing in units of :math:`\sqrt{\delta}`.
    width : float
        Grid half-width in standard deviations.
    h_data : float
        Spacing of the data-scale grid.
    err : bool
        Also return the error estimate.

    Returns
    -------
    float or (float, float, dict)
        The KL (nats); with ``err=True`` the value with every spacing divided by 1.5, the estimate
        :math:`|\mathrm{KL}_h - \mathrm{KL}_{h/1.5}| + |1 - \text{mass}| + \text{pruned mass}`, and diagnostics.
        The KL is ``inf`` where the read-out density underflows (a read-out far from the data scale).

    Raises
    ------
    ValueError
        Naming ``target``, ``ts``, ``spec``, ``factor``, ``width`` or ``h_data``.
    """
    target = _check_target(target)
    spec = _check_spec(spec)
    ts = C.validate_schedule(ts)
    if ts.size < 3:
        raise ValueError("ts: needs at least two steps")
    factor = check_positive(factor, "factor")
    width = check_positive(width, "width")
    h_data = check_positive(h_data, "h_data")

    def one(fac, hd):
        xg, dens, mass, pruned = _readout_law(target, ts, spec, fac, width, hd)
        return _kl_on_grid(target, xg, dens), mass, pruned
    if not err:
        return one(factor, h_data)[0]
    a, _, _ = one(factor, h_data)
    b, mass, pruned = one(factor / 1.5, h_data / 1.5)
    e = abs(a - b) + abs(1.0 - mass) + pruned
    return b, e, {"coarse": a, "mass": mass, "pruned": pruned}


# ---------------------------------------------------------------------------------------------- Gaussian oracle
def affine_readout_law(target: C.ChannelTarget, ts: ArrayLike,
                       spec: SamplerSpec = STATED) -> tuple[np.ndarray, np.ndarray]:
    r"""Gaussian target: mean and covariance of the read-out :math:`\hat X` of the sampler as ``spec`` implements
    it, the step map :math:`y\mapsto y+\delta_kf(y)` read off at :math:`y=0` and the unit vectors (it is affine)."""
    spec = _check_spec(spec)
    if not isinstance(target, C.ChannelTarget) or target.K != 1:
        raise ValueError("target: affine_readout_law needs a Gaussian target (one component)")
    ts = C.validate_schedule(ts)
    d = target.d
    f = denoiser(target, spec)
    steps, inv_s, tau = _coefficients(ts, spec)
    probe = np.vstack([np.zeros((1, d)), np.eye(d)])
    m, V = np.zeros(d), np.zeros((d, d))
    for t_f, dk, vk in steps:
        fp = f(probe, t_f)
        c, G = fp[0], (fp[1:] - fp[0]).T
        B = np.eye(d) + dk * G
        m = B @ m + dk * c
        V = B @ V @ B.T + vk * np.eye(d)
    return inv_s * m, inv_s * inv_s * V + tau * np.eye(d)


def gaussian_readout_kl(target: C.ChannelTarget, ts: ArrayLike, spec: SamplerSpec = STATED) -> float:
    r""":math:`D(N(\mu,\Sigma)\,\|\,\mathrm{Law}\,\hat X)` from :func:`affine_readout_law` (the sampler as implemented)."""
    mean, cov = affine_readout_law(target, ts, spec)
    return C.gaussian_kl(target.means[0], target.covs[0], mean, cov)


def gaussian_readout_kl_oracle(mean: ArrayLike, cov: ArrayLike, ts: ArrayLike) -> float:
    r"""The same KL from :math:`\mu,\Sigma` alone: in the eigenbasis, :math:`V_k = (1+\delta_ka_{k-1})^2V_{k-1}+\delta_k`,
    :math:`a_j=\lambda/(1+t_j\lambda)`, read-out variance :math:`s = V_n/t_n^2 + 1/t_n`, mean exact, and
    :math:`D = \tfrac12\sum_\lambda[\lambda/s - 1 + \log(s/\lambda)]`."""
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (mean.size, mean.size):
        raise ValueError(f"cov: expected shape {(mean.size, mean.size)}, got {cov.shape}")
    lam = np.linalg.eigvalsh(cov)
    if lam.min() <= 0:
        raise ValueError("cov: must be positive definite")
    ts = C.validate_schedule(ts)
    V = np.zeros_like(lam)
    for k in range(1, ts.size):
        dk = ts[k] - ts[k - 1]
        a = lam / (1 + ts[k - 1] * lam)
        V = (1 + dk * a) ** 2 * V + dk
    T = ts[-1]
    s = V / T**2 + 1 / T
    return float(0.5 * np.sum(lam / s - 1 + np.log(s / lam)))

r"""Trained discriminators in 2-D: feature logits fitted by cross-entropy or gradient matching, and the exact
endpoint law of the refined reverse-SDE chain on a grid (Verine et al., arXiv 2503.16117; issue item 5).

Time convention: OU forward time ``t``, :math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}` (``g^2 = 2``).

* Setting **G2** (:func:`setting_g2`): data ``p`` a three-component 2-D mixture; the pre-trained model
  :math:`p_\theta` under-weights the top mode (0.10 instead of 1/3), shifts it by 0.6 to the right and
  inflates every covariance.  Both are :class:`numerics.mixture.GaussianMixture`; the model score is exact.
* Logit family (:class:`FeatureLogit2D`): :math:`d_\phi(x,t) = \sum_{j,k}\phi_{jk}\,h_k(t)\,f_j(x)` with
  piecewise-linear time hats :math:`h_k` and ``kind="fourier"`` (:math:`f_0 = 1`,
  :math:`f_j = \cos(\omega_j\cdot x + b_j)`, :math:`\omega_j\sim N(0,\text{scale}^2 I_2)`) or
  ``kind="quadratic"`` (:math:`1, x_1, x_2, x_1^2, x_1x_2, x_2^2`).  The norm bound is the ridge penalty ``lam``.
* Fits on ``n`` clean samples, each noised ``repeats`` times at ``t ~ U[t_min, T]``:
  :func:`fit_logit_gm_2d` (gradient matching, :math:`E\|\nabla\log p(x_t|x_0) - s_\theta - \nabla d_\phi\|^2`,
  a linear least-squares problem) and :func:`fit_logit_ce_2d` (logistic regression of real against model
  samples, convex, by damped Newton).
* Sampler (:func:`refined_chain_2d`): the score-frozen exponential-integrator SDE step
  (:func:`numerics.generated.integrator_coeffs.ei_sde_coeffs`),
  :math:`x_s = c_x x + c_q (s_\theta + w\nabla d)(x, t) + c_z z`, from :math:`p_{\theta,T}` down to ``t = 0``,
  its exact law pushed through :func:`numerics.references.grid_density.propagate_2d` (isotropic kernels
  :math:`N(\cdot, c_z^2 I_2)`); :func:`endpoint_kl_2d` returns :math:`\mathrm{KL}(p_0\|\text{endpoint})` on the
  grid and on the grid with both spacings halved, and the escaped mass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from numerics.generated.integrator_coeffs import ei_sde_coeffs
from numerics.mixture import GaussianMixture
from numerics.papers.discriminator.refined_1d import (MAX_SIZE, _feature_arg, _hat_interval_design, _hat_times,
                                                      _hats, _newton_logistic)
from numerics.references.grid_density import gaussian_on_grid_2d, kl_grid_2d, propagate_2d, uniform_grid
from numerics.schedule import alpha_sigma2
from numerics.validate import check_array, check_choice, check_int, check_positive, check_real, check_sorted

__all__ = ["setting_g2", "FeatureLogit2D", "fit_logit_gm_2d", "fit_logit_ce_2d",
           "gm_solve_2d", "time_grid", "mixture_density_grid", "refined_chain_2d", "endpoint_kl_2d",
           "bayes_correction", "feature_correction", "EndpointKL"]

#: Setting G2: data (weights, means, covs) and model; the model misses most of the top mode and shifts it.
G2_DATA = ([1 / 3, 1 / 3, 1 / 3], [[-2.0, -1.0], [2.0, -1.0], [0.0, 2.0]],
           [[[0.30, 0.0], [0.0, 0.30]], [[0.30, 0.0], [0.0, 0.30]], [[0.5, 0.2], [0.2, 0.3]]])
G2_MODEL = ([0.45, 0.45, 0.10], [[-2.0, -1.0], [2.0, -1.0], [0.6, 2.0]],
            [[[0.40, 0.0], [0.0, 0.40]], [[0.40, 0.0], [0.0, 0.40]], [[0.5, 0.2], [0.2, 0.4]]])


def setting_g2() -> tuple[GaussianMixture, GaussianMixture]:
    """``(data, model)`` of setting G2."""
    return GaussianMixture(*G2_DATA), GaussianMixture(*G2_MODEL)


def _points(X, name: str = "X") -> np.ndarray:
    """At least one finite point of the plane, ``(N, 2)``."""
    return check_array(X, name, (None, 2))


# ----------------------------------------------------------------------------------------------
# logit family
# ----------------------------------------------------------------------------------------------
class FeatureLogit2D:
    r"""Logit family :math:`d_\phi(x,t) = \sum_{j,k}\phi_{jk}h_k(t)f_j(x)` on :math:`\mathbb R^2`.

    Parameters
    ----------
    kind : {"fourier", "quadratic"}
    n_freq : int
        Number of random Fourier features (``kind="fourier"``; a constant feature is added).
    scale : float
        Standard deviation of the frequencies.
    knots : increasing sequence of >= 2 OU times
        Nodes of the piecewise-linear time hats (constant beyond the ends).
    seed : int
        Seed of the frequencies and phases.
    """

    def __init__(self, kind: str = "fourier", n_freq: int = 48, scale: float = 1.0,
                 knots=(0.0, 0.05, 0.2, 0.6, 1.5, 4.0), seed: int = 0):
        self.kind = check_choice(kind, "kind", ("fourier", "quadratic"))
        n_freq = check_int(n_freq, "n_freq", 1, MAX_SIZE)
        scale = check_positive(scale, "scale")
        rng = np.random.default_rng(seed)
        self.omega = scale * rng.standard_normal((n_freq, 2))
        self.phase = rng.uniform(0, 2 * np.pi, n_freq)
        kn = check_sorted(knots, "knots")
        self.knots = kn
        self.n_basis = n_freq + 1 if kind == "fourier" else 6
        self.coef = np.zeros((self.n_basis, kn.size))

    @property
    def n_params(self) -> int:
        return self.coef.size

    def hats(self, t) -> np.ndarray:
        """Time hats, shape ``(N, K)`` (``N = 1`` for a scalar ``t``)."""
        return _hats(_hat_times(t), self.knots)

    def basis(self, X) -> np.ndarray:
        """Spatial features :math:`f_j(x)`, shape ``(N, J)``."""
        X = _points(X)
        if self.kind == "quadratic":
            x1, x2 = X[:, 0], X[:, 1]
            return np.stack([np.ones_like(x1), x1, x2, x1 * x1, x1 * x2, x2 * x2], axis=1)
        return np.hstack([np.ones((X.shape[0], 1)), np.cos(_feature_arg(X, self.omega, self.phase, "X"))])

    def basis_grad(self, X) -> np.ndarray:
        r"""Gradients :math:`\nabla f_j(x)`, shape ``(N, 2, J)``."""
        X = _points(X)
        n = X.shape[0]
        if self.kind == "quadratic":
            x1, x2 = X[:, 0], X[:, 1]
            z, o = np.zeros(n), np.ones(n)
            g1 = np.stack([z, o, z, 2 * x1, x2, z], axis=1)
            g2 = np.stack([z, z, o, z, x1, 2 * x2], axis=1)
            return np.stack([g1, g2], axis=1)
        S = -np.sin(_feature_arg(X, self.omega, self.phase, "X"))  # (N, J-1)
        out = np.zeros((n, 2, self.n_basis))
        out[:, 0, 1:] = S * self.omega[:, 0]
        out[:, 1, 1:] = S * self.omega[:, 1]
        return out

    def _hats_for(self, X, t) -> np.ndarray:
        H = self.hats(t)
        if H.shape[0] == 1 and X.shape[0] > 1:
            H = np.broadcast_to(H, (X.shape[0], H.shape[1]))
        if H.shape[0] != X.shape[0]:
            raise ValueError(f"t: expected a scalar or {X.shape[0]} times, got {H.shape[0]}")
        return H

    # features/grad_features and logit/grad: a value and its x-gradient, written in parallel on purpose
    def features(self, X, t) -> np.ndarray:
        """Features of :math:`d_\\phi`, shape ``(N, J*K)`` (column ``j*K + k``)."""
        X = _points(X)
        F, H = self.basis(X), self._hats_for(X, t)
        return (F[:, :, None] * H[:, None, :]).reshape(X.shape[0], -1)

    def grad_features(self, X, t) -> np.ndarray:
        r"""Features of :math:`\nabla_x d_\phi`, shape ``(N, 2, J*K)``."""
        X = _points(X)
        G, H = self.basis_grad(X), self._hats_for(X, t)
        return (G[:, :, :, None] * H[:, None, None, :]).reshape(X.shape[0], 2, -1)

    def logit(self, X, t) -> np.ndarray:
        r""":math:`d_\phi(x, t)`, shape ``(N,)``."""
        X, t = _points(X), _hat_times(t)
        if t.ndim == 0:
            return self.basis(X) @ (self.coef @ _hats(t, self.knots)[0])
        return self.features(X, t) @ self.coef.ravel()

    def grad(self, X, t) -> np.ndarray:
        r""":math:`\nabla_x d_\phi(x, t)`, shape ``(N, 2)``."""
        X, t = _points(X), _hat_times(t)
        if t.ndim == 0:
            return self.basis_grad(X) @ (self.coef @ _hats(t, self.knots)[0])
        return self.grad_features(X, t) @ self.coef.ravel()


# ----------------------------------------------------------------------------------------------
# fits
# ----------------------------------------------------------------------------------------------
def _noisy(x0: np.ndarray, rng: np.random.Generator, T: float, t_min: float):
    t = rng.uniform(t_min, T, x0.shape[0])
    a, s = np.exp(-t), np.sqrt(-np.expm1(-2 * t))
    z = rng.standard_normal(x0.shape)
    return a[:, None] * x0 + s[:, None] * z, t, -z / s[:, None]


def _check_fit_args(T, lam, t_min, repeats):
    T = check_positive(T, "T")
    lam = check_positive(lam, "lam", True)
    t_min = check_positive(t_min, "t_min")
    if t_min > T:
        raise ValueError(f"t_min: must be <= T={T}, got {t_min}")
    return T, lam, t_min, check_int(repeats, "repeats", 1, MAX_SIZE)


def gm_solve_2d(fam: FeatureLogit2D, X, t, target, lam: float = 0.0) -> FeatureLogit2D:
    r"""Ridge least squares :math:`\min_\phi \frac1N\sum_i\|r_i - \nabla d_\phi(x_i,t_i)\|^2 + \lambda\|\phi\|^2`
    for residual targets ``target`` (shape ``(N, 2)``); sets and returns ``fam``."""
    X = _points(X)
    target = check_array(target, "target", X.shape)
    lam = check_positive(lam, "lam", True)
    p = fam.n_params
    A, r = np.zeros((p, p)), np.zeros(p)
    t = _hat_times(t)
    if t.ndim == 1 and t.shape != (X.shape[0],):
        raise ValueError(f"t: expected a scalar or {X.shape[0]} times (one per point), got shape {t.shape}")
    t = np.broadcast_to(t, (X.shape[0],))
    for ch in np.array_split(np.arange(X.shape[0]), max(1, X.shape[0] // 20000)):
        G = fam.grad_features(X[ch], t[ch]).reshape(-1, p)  # rows (i, coordinate)
        A += G.T @ G
        r += G.T @ target[ch].ravel()
    n = X.shape[0]
    try:
        coef = np.linalg.solve(A / n + lam * np.eye(p), r / n)
    except np.linalg.LinAlgError:
        raise ValueError(f"lam: the ridge system is singular (lam={lam!r} too small for {n} points and {p} "
                         "parameters)") from None
    if not np.all(np.isfinite(coef)):
        raise ValueError(f"target: the fitted coefficients are not finite (target or lam={lam!r} out of range)")
    fam.coef = coef.reshape(fam.coef.shape)
    return fam


def fit_logit_gm_2d(fam: FeatureLogit2D, real, model: GaussianMixture, rng: np.random.Generator,
                    T: float = 4.0, lam: float = 1e-4, t_min: float = 1e-2, repeats: int = 2) -> FeatureLogit2D:
    r"""Gradient matching (:math:`\lambda(t) = g^2/2 = 1`): least squares of
    :math:`\nabla\log p(x_t|x_0) - s_\theta(x_t)` on :math:`\nabla d_\phi(x_t,t)`, ``t ~ U[t_min, T]``."""
    T, lam, t_min, repeats = _check_fit_args(T, lam, t_min, repeats)
    real = _points(real, "real")
    xt, t, target = _noisy(np.repeat(real, repeats, axis=0), rng, T, t_min)
    with _points_from("real"):
        return gm_solve_2d(fam, xt, t, target - model.score(xt, t), lam)  # the model score at per-sample times


class _points_from:
    """Context: a ValueError naming the noised points (``x`` or ``X``) is re-raised naming the argument they come
    from, the original message kept."""

    def __init__(self, arg: str):
        self.arg = arg

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is ValueError and str(exc).split(":", 1)[0] in ("x", "X"):
            raise ValueError(f"{self.arg}: {exc}") from None
        return False


def fit_logit_ce_2d(fam: FeatureLogit2D, real, fake, rng: np.random.Generator, T: float = 4.0,
                    lam: float = 1e-4, t_min: float = 1e-2, repeats: int = 2, maxiter: int = 100) -> FeatureLogit2D:
    r"""Cross-entropy (DG's objective): logistic regression of noised real (label 1) against noised model samples
    (label 0) at ``t ~ U[t_min, T]``, classes weighted equally, ridge ``lam``; convex, solved by damped Newton on
    the design stored by hat interval (:func:`numerics.papers.discriminator.refined_1d._newton_logistic`, at most
    ``maxiter`` iterations)."""
    T, lam, t_min, repeats = _check_fit_args(T, lam, t_min, repeats)
    maxiter = check_int(maxiter, "maxiter", 1, MAX_SIZE)
    real, fake = _points(real, "real"), _points(fake, "fake")
    xr, tr, _ = _noisy(np.repeat(real, repeats, axis=0), rng, T, t_min)
    xf, tf, _ = _noisy(np.repeat(fake, repeats, axis=0), rng, T, t_min)
    with _points_from("real"):
        Br = fam.basis(xr)
    with _points_from("fake"):
        Bf = fam.basis(xf)
    t = np.concatenate([tr, tf])
    blocks = _hat_interval_design(np.vstack([Br, Bf]), fam.hats(t), fam.knots, t)
    y = np.concatenate([np.ones(xr.shape[0]), np.zeros(xf.shape[0])])
    wts = np.concatenate([np.full(xr.shape[0], 0.5 / xr.shape[0]), np.full(xf.shape[0], 0.5 / xf.shape[0])])
    fam.coef = _newton_logistic(blocks, y, wts, lam, fam.n_params, maxiter).reshape(fam.coef.shape)
    return fam


# ----------------------------------------------------------------------------------------------
# refined EI-SDE chain on a 2-D grid
# ----------------------------------------------------------------------------------------------
Correction = Callable[[np.ndarray, float], np.ndarray]  # (X (N, 2), t) -> grad d (N, 2)


def bayes_correction(data: GaussianMixture, model: GaussianMixture) -> Correction:
    r""":math:`\nabla d^* = \nabla\log p_t - \nabla\log p_{\theta,t}`."""
    return lambda X, t: data.score(X, t) - model.score(X, t)


def feature_correction(fam: FeatureLogit2D) -> Correction:
    r""":math:`\nabla d_\phi` of a fitted family."""
    return lambda X, t: fam.grad(X, t)


def time_grid(T: float, steps: int, power: float = 1.5) -> np.ndarray:
    r"""OU times :math:`t_k = T(1 - k/N)^{\text{power}}`, ``k = 0..N`` (last one 0), refined near ``t = 0``."""
    T = check_positive(T, "T")
    steps = check_int(steps, "steps", 1, MAX_SIZE)
    power = check_positive(power, "power")
    return T * (1.0 - np.arange(steps + 1) / steps) ** power


def mixture_density_grid(mix: GaussianMixture, grid1, grid2, t: float) -> np.ndarray:
    """Density of the OU marginal at ``t >= 0`` on the tensor grid (positive-definite covariances at ``t = 0``)."""
    t = check_positive(t, "t", True)
    a, s2 = alpha_sigma2(t)
    S = mix.covs
    try:
        return sum(mix.weights[k] * gaussian_on_grid_2d(grid1, grid2, a * mix.means[k], a * a * S[k] + s2 * np.eye(2))
                   for k in range(mix.K))
    except ValueError as exc:  # the grids are what the caller gives: name them, not the mixture's mean
        raise ValueError(f"grid1, grid2: {exc}") from None


def refined_chain_2d(model: GaussianMixture, correction: Correction | None, w: float, grid1, grid2, times):
    r"""Exact law on ``grid1 x grid2`` of the EI-SDE chain with score :math:`s_\theta + w\,\nabla d`, started from
    :math:`p_{\theta,T}` (``T = times[0]``) and run through the decreasing OU ``times`` to ``times[-1] >= 0``.

    Returns the :class:`numerics.references.grid_density.GridResult` (``density``, ``escaped``).
    """
    w = check_real(w, "w")
    ts = check_sorted(times, "times", decreasing=True)
    if ts[-1] < 0:
        raise ValueError(f"times: must end at an OU time >= 0, got {ts[-1]!r}")
    g1, g2 = check_array(grid1, "grid1", (None,)), check_array(grid2, "grid2", (None,))
    coefs = [ei_sde_coeffs(float(ts[k]), float(ts[k + 1])) for k in range(ts.size - 1)]

    def mean(X1, X2, k):
        X = np.column_stack([X1.ravel(), X2.ravel()])
        q = model.score(X, float(ts[k]))
        if correction is not None and w != 0.0:
            q = q + w * np.asarray(correction(X, float(ts[k])))
        cx, cq, _ = coefs[k]
        M = cx * X + cq * q
        return M[:, 0].reshape(X1.shape), M[:, 1].reshape(X1.shape)

    p0 = mixture_density_grid(model, g1, g2, float(ts[0]))
    return propagate_2d(p0, g1, g2, mean, lambda k: coefs[k][2] ** 2, ts.size - 1)


@dataclass(frozen=True)
class EndpointKL:
    """KL(p_0 || endpoint) on the grid (``kl``) and with both spacings halved (``kl_fine``, or None), and the
    escaped mass of the coarse run; ``err = |kl - kl_fine| + escaped`` (``escaped`` alone without a fine run)."""

    kl: float
    kl_fine: float | None
    escaped: float
    density: np.ndarray

    @property
    def err(self) -> float:
        return (abs(self.kl - self.kl_fine) if self.kl_fine is not None else 0.0) + self.escaped


def endpoint_kl_2d(data: GaussianMixture, model: GaussianMixture, correction: Correction | None, w: float,
                   box, n: int, times, refine: bool = True) -> EndpointKL:
    """KL(data_0 || refined EI-SDE endpoint) on an ``n x n`` grid over ``box = [[lo1, hi1], [lo2, hi2]]``, and on the
    grid with halved spacings when ``refine``."""
    n = check_int(n, "n", 3)
    try:
        (lo1, hi1), (lo2, hi2) = box
    except (TypeError, ValueError):
        raise ValueError("box: must be [[lo1, hi1], [lo2, hi2]]") from None

    def run(m):
        g1, g2 = uniform_grid(lo1, hi1, m), uniform_grid(lo2, hi2, m)
        res = refined_chain_2d(model, correction, w, g1, g2, times)
        return kl_grid_2d(mixture_density_grid(data, g1, g2, 0.0), res.density, g1, g2), res

    kl, res = run(n)
    kl_fine = run(2 * n - 1)[0] if refine else None
    return EndpointKL(kl, kl_fine, res.escaped, res.density)

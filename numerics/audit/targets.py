r"""Exact model outputs of a Gaussian target, in diffusers' discrete convention.

diffusers writes a noisy sample at noise level :math:`\bar\alpha` (``alphas_cumprod[t]``) as
:math:`x = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,\varepsilon` (variance preserving, "VP").  In the
package's OU time (:mod:`numerics.schedule`: :math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`) this
is the level :math:`t = -\tfrac12\log\bar\alpha` (:func:`ou_time`), so :math:`\alpha_t = \sqrt{\bar\alpha}` and
:math:`\sigma_t = \sqrt{1-\bar\alpha}` exactly; a sigma-parametrised scheduler's :math:`\sigma_{\rm VE}` is
:math:`\sqrt{(1-\bar\alpha)/\bar\alpha}`, i.e. :math:`t = \tfrac12\log(1+\sigma_{\rm VE}^2)`.

For :math:`X_0 \sim N(m, s^2 I)` the exact denoiser is affine (Tweedie; the same formula as
:func:`numerics.references.exact_gaussian.affine_q` with :math:`\Sigma = s^2 I`):

.. math::  D(x) = m + \frac{a s^2}{a^2 s^2 + \sigma^2}(x - a m),\qquad
           \hat\varepsilon = \frac{x - a D}{\sigma},\qquad \hat v = a\hat\varepsilon - \sigma D,

with :math:`a = \sqrt{\bar\alpha}`, :math:`\sigma = \sqrt{1-\bar\alpha}`; ``prediction_type`` selects which of
:math:`\hat\varepsilon` (``epsilon``), :math:`D` (``sample``) and :math:`\hat v` (``v_prediction``) the model
returns.  Every quantity is float64.

:class:`MixtureTarget` is a labelled Gaussian mixture in 1-D or 2-D (one isotropic component per class) whose exact unconditional,
class-conditional and classifier-guided outputs come from :class:`numerics.mixture.GaussianMixture` (the
mixture formulas are not repeated here).  Guidance conventions, written once:

* the package (:mod:`numerics.samplers`, :meth:`numerics.mixture.GaussianMixture.guided_denoiser`): classifier
  guidance (CG) with weight :math:`w` is the score :math:`s_w = s + w\,g_y`, :math:`g_y = \nabla_x\log p_t(y\mid x)`,
  i.e. :math:`D_w = D + w(\sigma_t^2/\alpha_t)g_y` and :math:`\hat\varepsilon_w = \hat\varepsilon - w\,\sigma_t g_y`;
  its CFG form is :math:`s_w = w\,s_y + (1-w)\,s`;
* diffusers' pipelines: ``noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)``,
  i.e. :math:`\hat\varepsilon_{\rm cfg} = \hat\varepsilon_u + g(\hat\varepsilon_c - \hat\varepsilon_u)`
  with :math:`g` = ``guidance_scale``.  With exact scores, :math:`s_y = s + g_y` (Bayes) and
  :math:`\hat\varepsilon = -\sigma_t s`, so :math:`\hat\varepsilon_{\rm cfg} = -\sigma_t(s + g\,g_y)`:

  .. math::  w_{\rm package} = g,\qquad w_{\rm Ho\text{-}Salimans} = g - 1\quad(\hat\varepsilon = (1+w)\hat\varepsilon_c - w\hat\varepsilon_u).

  ``guidance_scale = 1`` is the conditional model, ``0`` the unconditional one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numerics.mixture import GaussianMixture
from numerics.validate import check_positive, check_real, check_real_values, check_weights

__all__ = ["PREDICTION_TYPES", "GaussianTarget", "MixtureTarget", "ou_time", "ou_time_of_sigma"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def ou_time(abar: float) -> float:
    r"""OU time of a noise level :math:`\bar\alpha \in (0, 1]`: :math:`t = -\tfrac12\log\bar\alpha` (0 at 1)."""
    abar = float(abar)
    if not (0.0 < abar <= 1.0):
        raise ValueError(f"abar: must be in (0, 1], got {abar!r}")
    return -0.5 * math.log(abar)


def ou_time_of_sigma(sigma: float) -> float:
    r"""OU time of a VE noise level :math:`\sigma \ge 0`: :math:`t = \tfrac12\,\mathrm{log1p}(\sigma^2)`."""
    sigma = float(sigma)
    if not (sigma >= 0.0 and math.isfinite(sigma)):
        raise ValueError(f"sigma: must be finite and >= 0, got {sigma!r}")
    return 0.5 * math.log1p(sigma * sigma)


@dataclass(frozen=True)
class GaussianTarget:
    """:math:`N(m, s^2 I)` in ``d = len(mean)`` dimensions (each coordinate an independent 1-D chain)."""

    mean: tuple
    std: float

    def __post_init__(self):
        m = check_real_values(np.atleast_1d(np.asarray(self.mean, dtype=np.float64)), "mean")
        if m.ndim != 1 or m.size == 0:
            raise ValueError(f"mean: must be a non-empty 1-D vector, got shape {m.shape}")
        object.__setattr__(self, "mean", tuple(float(v) for v in m))
        object.__setattr__(self, "std", check_positive(self.std, "std"))
        object.__setattr__(self, "_m", np.array(self.mean, dtype=np.float64))   # read-only copy, built once
        self._m.flags.writeable = False

    @property
    def d(self) -> int:
        return len(self.mean)

    @property
    def m(self) -> np.ndarray:
        return self._m

    def gain(self, t: float) -> float:
        r""":math:`k_t = \alpha_t s^2/(\alpha_t^2 s^2 + \sigma_t^2)`: the denoiser is :math:`m + k_t(x - \alpha_t m)`."""
        a2, s2 = math.exp(-2.0 * t), -math.expm1(-2.0 * t)
        return math.exp(-t) * self.std**2 / (a2 * self.std**2 + s2)

    def denoiser(self, x: np.ndarray, t: float) -> np.ndarray:
        """:math:`E[X_0 \\mid X_t = x]` at OU time ``t`` (``x``: ``(..., d)`` float64)."""
        return self.m + self.gain(t) * (x - math.exp(-t) * self.m)

    def model_output(self, x: np.ndarray, t: float, prediction_type: str) -> np.ndarray:
        """The exact model output of ``prediction_type`` at OU time ``t > 0`` (see the module docstring)."""
        a, sig = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
        D = self.denoiser(x, t)
        if prediction_type == "sample":
            return D
        eps = (x - a * D) / sig
        if prediction_type == "epsilon":
            return eps
        if prediction_type == "v_prediction":
            return a * eps - sig * D
        raise ValueError(f"prediction_type: must be one of {PREDICTION_TYPES}, got {prediction_type!r}")

    def marginal(self, t: float) -> tuple[np.ndarray, float]:
        r"""Mean ``(d,)`` and per-coordinate variance of :math:`X_t`: :math:`N(\alpha_t m, \alpha_t^2 s^2 + \sigma_t^2)`."""
        return math.exp(-t) * self.m, math.exp(-2.0 * t) * self.std**2 - math.expm1(-2.0 * t)

    def flow_map(self, t: float, s: float) -> tuple[float, np.ndarray]:
        r"""Exact probability-flow map :math:`x_s = r x_t + c` (``(r, c)``), :math:`r = \sqrt{C_s/C_t}`,
        :math:`c = \alpha_s m - r\alpha_t m` (:func:`numerics.references.exact_gaussian.pf_map`, isotropic)."""
        Ct, Cs = self.marginal(t)[1], self.marginal(s)[1]
        r = math.sqrt(Cs / Ct)
        return r, math.exp(-s) * self.m - r * math.exp(-t) * self.m


def _check_pred(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type: must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return prediction_type


def _check_t(t: float) -> float:
    t = check_real(t, "t")
    if not t > 0.0:
        raise ValueError(f"t: the model is called at OU time t > 0, got {t!r}")
    return t


class MixtureTarget:
    r"""A labelled Gaussian mixture :math:`X_0 \sim \sum_k w_k N(\mu_k, s_k^2 I_d)` in ``d`` = 1 or 2 dimensions,
    component :math:`k` = class :math:`k`, and its exact model outputs in diffusers' convention.

    Parameters
    ----------
    weights : sequence of float, shape (K,)
        Class priors (non-negative, summing to 1; :func:`numerics.validate.check_weights`).
    means : sequence, shape (K,) (d = 1) or (K, d)
        Component means.
    stds : sequence of float, shape (K,)
        Component standard deviations (``stds`` > 0; each component isotropic).

    For ``d = 1`` every method takes points ``x`` as a float64 array of any shape (each element an independent 1-D
    state) and returns the same shape; for ``d = 2`` the last axis of ``x`` is the coordinate (``(..., d)``, each
    row an independent 2-D state).  ``t`` is the OU time of the call (:func:`ou_time` of diffusers' alpha-bar).
    The outputs are those of :class:`numerics.mixture.GaussianMixture` (``mixture``) and its class conditionals:
    :math:`\hat\varepsilon = (x - \alpha_t D)/\sigma_t`, :math:`\hat v = \alpha_t\hat\varepsilon - \sigma_t D`.
    """

    def __init__(self, weights, means, stds):
        w = check_weights(weights, "weights")
        mu = check_real_values(np.atleast_1d(np.asarray(means, dtype=np.float64)), "means")
        sd = check_real_values(np.atleast_1d(np.asarray(stds, dtype=np.float64)), "stds")
        if mu.ndim == 2 and mu.shape[1] == 1:
            mu = mu[:, 0]
        if mu.ndim > 2 or mu.shape[0] != w.shape[0] or (mu.ndim == 2 and mu.shape[1] not in (1, 2)):
            raise ValueError(f"means: expected {w.shape[0]} values (one per weight), or {w.shape[0]} rows of d = 2 "
                             f"coordinates, got shape {mu.shape}")
        if sd.shape != w.shape:
            raise ValueError(f"stds: expected {w.shape[0]} values (one per weight), got shape {sd.shape}")
        if not np.all(sd > 0.0):
            raise ValueError(f"stds: must be > 0, got {sd.tolist()!r}")
        self.weights, self.means, self.stds = w, mu, sd
        self.d = 1 if mu.ndim == 1 else int(mu.shape[1])
        #: the means as rows, ``(K, d)``
        self.means_d = mu.reshape(w.shape[0], self.d)
        self.mixture = GaussianMixture(w, self.means_d, (sd ** 2)[:, None, None] * np.eye(self.d))
        self._cond = tuple(self.mixture.conditional(y) for y in range(self.n_classes))
        self._log_z: dict = {}   # tilted_log_density's normalisers

    @property
    def n_classes(self) -> int:
        return int(self.weights.shape[0])

    def __repr__(self) -> str:
        return (f"MixtureTarget(weights={self.weights.tolist()}, means={self.means.tolist()}, "
                f"stds={self.stds.tolist()})")

    def _label(self, y) -> int:
        if isinstance(y, (bool, np.bool_)) or not isinstance(y, (int, np.integer)) or not 0 <= int(y) < self.n_classes:
            raise ValueError(f"y: must be a class label in 0..{self.n_classes - 1}, got {y!r}")
        return int(y)

    def _col(self, x) -> tuple[np.ndarray, tuple]:
        """The points as rows ``(N, d)`` and the shape to return."""
        X = check_real_values(np.asarray(x, dtype=np.float64), "x")
        if self.d > 1 and (X.ndim == 0 or X.shape[-1] != self.d):
            raise ValueError(f"x: points of a {self.d}-D mixture have {self.d} coordinates on the last axis, got shape "
                             f"{X.shape}")
        return X.reshape(-1, self.d), X.shape

    def denoiser(self, x, t: float, y: int | None = None) -> np.ndarray:
        r""":math:`D(x) = E[X_0\mid X_t = x]`, or :math:`D_y(x) = E[X_0\mid X_t = x, Y = y]` if ``y`` is given."""
        t = _check_t(t)
        X, shape = self._col(x)
        gm = self.mixture if y is None else self._cond[self._label(y)]
        return gm.denoiser(X, t).reshape(shape)

    def model_output(self, x, t: float, prediction_type: str, y: int | None = None) -> np.ndarray:
        r"""The exact unconditional (``y=None``) or class-``y`` model output at OU time ``t``:
        :math:`D` (``sample``), :math:`\hat\varepsilon = (x - \alpha_t D)/\sigma_t` (``epsilon``) or
        :math:`\hat v = \alpha_t\hat\varepsilon - \sigma_t D` (``v_prediction``)."""
        _check_pred(prediction_type)
        D = self.denoiser(x, t, y)
        if prediction_type == "sample":
            return D
        a, sig = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
        eps = (np.asarray(x, dtype=np.float64) - a * D) / sig
        return eps if prediction_type == "epsilon" else a * eps - sig * D

    def model_output_abar(self, x, abar: float, prediction_type: str, y: int | None = None) -> np.ndarray:
        r""":meth:`model_output` at diffusers' noise level :math:`\bar\alpha \in (0, 1)`
        (:math:`t = -\tfrac12\log\bar\alpha`)."""
        abar = check_real(abar, "abar")
        if not 0.0 < abar < 1.0:
            raise ValueError(f"abar: the model is called at a noise level in (0, 1), got {abar!r}")
        return self.model_output(x, ou_time(abar), prediction_type, y)

    def guided_denoiser(self, x, t: float, y: int, w: float) -> np.ndarray:
        r"""The package's classifier-guided denoiser :math:`D_w = D + w\,(\sigma_t^2/\alpha_t)\,g_y`
        (:meth:`numerics.mixture.GaussianMixture.guided_denoiser`); ``w`` = diffusers' ``guidance_scale``."""
        t = _check_t(t)
        X, shape = self._col(x)
        return self.mixture.guided_denoiser(X, t, self._label(y), check_real(w, "w")).reshape(shape)

    def cg_eps(self, x, t: float, y: int, w: float) -> np.ndarray:
        r"""Classifier-guided noise prediction from the exact class posterior:
        :math:`\hat\varepsilon_w = \hat\varepsilon - w\,\sigma_t\,g_y`, :math:`g_y = \nabla_x\log p_t(y\mid x)`
        (:meth:`numerics.mixture.GaussianMixture.guidance_vector`; score form :math:`s_w = s + w g_y`)."""
        t = _check_t(t)
        w = check_real(w, "w")
        X, shape = self._col(x)
        sig = math.sqrt(-math.expm1(-2.0 * t))
        eps = self.model_output(X, t, "epsilon")
        return (eps - (w * sig) * self.mixture.guidance_vector(X, t, self._label(y))).reshape(shape)

    def guided_gain(self, x, t: float, y: int, w: float) -> np.ndarray:
        r""":math:`\partial D_w/\partial x = (\alpha_t/\sigma_t^2)\big((1-w)\,\mathrm{Cov}[X_0\mid x] + w\,
        \mathrm{Cov}[X_0\mid x, y]\big)` (Tweedie: :math:`\partial_x D = (\alpha_t/\sigma_t^2)\mathrm{Cov}[X_0\mid x]`,
        and :math:`D_w = (1-w)D + w D_y`): the shape of ``x`` for d = 1, ``(..., d, d)`` (the Jacobian
        :math:`\partial D_{w,i}/\partial x_j`) for d = 2."""
        t = _check_t(t)
        w = check_real(w, "w")
        X, shape = self._col(x)
        a, s2 = math.exp(-t), -math.expm1(-2.0 * t)
        v = self.mixture.posterior_cov(X, t)
        vy = self.mixture.posterior_cov(X, t, self._label(y))
        G = (a / s2) * ((1.0 - w) * v + w * vy)
        return G[:, 0, 0].reshape(shape) if self.d == 1 else G.reshape(shape[:-1] + (self.d, self.d))

    def tilted_log_density(self, x, y: int, w: float, lo: float = -12.0, hi: float = 12.0,
                           points: int | None = None) -> np.ndarray:
        r""":math:`\log q(x)` of the tilted law :math:`q(x) = p(x)\,p(y\mid x)^w / Z
        \propto p(x)^{1-w} p_y(x)^w` (:math:`p_y` the class-``y`` density), the law whose score is the guided
        score :math:`\nabla\log p + w\nabla\log p(y\mid x)` at :math:`t = 0`.  :math:`Z` by the trapezoid
        rule on ``points`` uniform points of ``[lo, hi]`` per coordinate (default 24001 for d = 1, 801 for d = 2:
        a smooth integrand with Gaussian tails, spectrally accurate once the spacing resolves the narrowest
        component)."""
        w = check_real(w, "w")
        y = self._label(y)
        X, shape = self._col(x)
        points = (24001 if self.d == 1 else 801) if points is None else points
        if not (isinstance(points, (int, np.integer)) and not isinstance(points, bool) and points >= 3):
            raise ValueError(f"points: must be an integer >= 3, got {points!r}")

        from scipy.special import logsumexp

        lw = np.log(self.weights)
        s2 = self.stds ** 2

        def log_unnorm(u):   # t = 0: the components' own laws N(mu_k, s_k^2 I); u: (M, d)
            lk = -0.5 * np.sum((u[:, None, :] - self.means_d) ** 2, axis=2) / s2 - (0.5 * self.d) * np.log(2.0 * math.pi * s2)
            return (1.0 - w) * logsumexp(lk + lw, axis=1) + w * lk[:, y]

        key = (y, w, float(lo), float(hi), int(points))
        log_z = self._log_z.get(key)
        if log_z is None:   # memoised per (y, w, grid): in 2-D the 801 x 801 grid is most of the cost
            g = np.linspace(lo, hi, points)
            tw = np.full(points, g[1] - g[0])   # trapezoid weights of one coordinate
            tw[[0, -1]] *= 0.5
            mesh = np.stack(np.meshgrid(*([g] * self.d), indexing="ij"), axis=-1).reshape(-1, self.d)
            wts = np.prod(np.stack(np.meshgrid(*([tw] * self.d), indexing="ij"), axis=-1).reshape(-1, self.d), axis=1)
            lg = log_unnorm(mesh)
            top = float(lg.max())
            log_z = self._log_z[key] = top + math.log(float(np.sum(wts * np.exp(lg - top))))
        return (log_unnorm(X) - log_z).reshape(shape[:-1] if self.d > 1 else shape)

    def components(self, x, t: float) -> dict:
        r"""Per-point, per-component terms the rounding bounds of :mod:`numerics.audit.oracle` need (``(N, K)``
        each, ``N`` the number of points; for d = 2 ``q`` and ``S`` are ``(N, K, d)``, per coordinate): the posterior
        ``pi`` (:meth:`numerics.mixture.GaussianMixture.class_posterior`), the component denoisers ``q``
        :math:`= \mu_k + \alpha s_k^2 (x - \alpha\mu_k)/C_k`, the magnitude bound ``logit``
        :math:`= |\log w_k| + d\,|\log(2\pi C_k)| + \sum_l S_{kl}^2/C_k` of the logit and ``S``
        :math:`= |x_l| + \alpha|\mu_{kl}|`, with :math:`C_k = \alpha^2 s_k^2 + \sigma^2`."""
        t = _check_t(t)
        X, _ = self._col(x)
        a, s2 = math.exp(-t), -math.expm1(-2.0 * t)
        C = a * a * self.stds ** 2 + s2
        Xk = X[:, None, :]
        S = np.abs(Xk) + a * np.abs(self.means_d)
        with np.errstate(divide="ignore"):
            lw = np.abs(np.log(self.weights))
        q = self.means_d + (a * self.stds ** 2 / C)[:, None] * (Xk - a * self.means_d)
        logit = lw + self.d * np.abs(np.log(2.0 * math.pi * C)) + np.sum(S ** 2, axis=2) / C
        if self.d == 1:
            S, q = S[:, :, 0], q[:, :, 0]
        return {"pi": self.mixture.class_posterior(X, t), "q": q, "S": S, "logit": logit}

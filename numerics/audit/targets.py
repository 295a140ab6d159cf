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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numerics.validate import check_positive, check_real_values

__all__ = ["PREDICTION_TYPES", "GaussianTarget", "ou_time", "ou_time_of_sigma"]

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

    @property
    def d(self) -> int:
        return len(self.mean)

    @property
    def m(self) -> np.ndarray:
        return np.asarray(self.mean, dtype=np.float64)

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

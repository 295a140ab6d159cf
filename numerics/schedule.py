r"""OU-time coefficients in float64, accurate near ``t = 0``.

:math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t} = -\mathrm{expm1}(-2t)`, log-SNR
:math:`\lambda_t = \log(\alpha_t^2/\sigma_t^2) = -2t - \log(-\mathrm{expm1}(-2t))`.
These are the lambdified forms of :mod:`theory.forward` (``OU``) rewritten with ``expm1``; a test
compares them with the SymPy expressions evaluated by mpmath.

Times are validated: real, finite and ``>= 0`` (``> 0`` for the log-SNR, which is infinite at 0, and
at most ``MAX_LOGSNR_TIME`` so that ``-2t`` does not overflow); otherwise a ``ValueError`` names ``t``.
"""
from __future__ import annotations

import math

import numpy as np

from numerics.validate import check_real, check_real_values, check_time_values

#: Largest t whose log-SNR -2t - log(sigma_t^2) is finite in float64 (-2t overflows beyond it).
MAX_LOGSNR_TIME = float(np.finfo(np.float64).max) / 2.0

__all__ = ["alpha_t", "sigma2_t", "alpha_sigma2", "logsnr_t", "t_of_logsnr"]


def alpha_t(t):
    r""":math:`\alpha_t = e^{-t}`."""
    return np.exp(-check_time_values(t))


def sigma2_t(t):
    r""":math:`\sigma_t^2 = -\mathrm{expm1}(-2t)` (relative error O(u) for every t > 0)."""
    return -np.expm1(-2.0 * check_time_values(t))


def alpha_sigma2(t: float) -> tuple[float, float]:
    """``(alpha_t, sigma_t^2)`` for a scalar OU time ``t >= 0``."""
    t = check_real(t, "t")
    if t < 0.0:
        raise ValueError(f"t: must be >= 0, got {t!r}")
    return math.exp(-t), -math.expm1(-2.0 * t)


def logsnr_t(t):
    r"""Log-SNR :math:`\lambda_t = -2t - \log(-\mathrm{expm1}(-2t))`."""
    t = check_time_values(t, allow_zero=False, upper=MAX_LOGSNR_TIME)
    return -2.0 * t - np.log(-np.expm1(-2.0 * t))


def t_of_logsnr(lam):
    r"""Inverse of :func:`logsnr_t`: :math:`t = \tfrac12\log(1 + e^{-\lambda})` (``logaddexp`` form, no overflow)."""
    lam = check_real_values(lam, "lam")
    return 0.5 * np.logaddexp(0.0, -lam)

r"""OU-time coefficients in float64, accurate near ``t = 0``.

:math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t} = -\mathrm{expm1}(-2t)`, log-SNR
:math:`\lambda_t = \log(\alpha_t^2/\sigma_t^2) = -2t - \log(-\mathrm{expm1}(-2t))`.
These are the lambdified forms of :mod:`theory.forward` (``OU``) rewritten with ``expm1``; a test
compares them with the SymPy expressions evaluated by mpmath.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["alpha_t", "sigma2_t", "alpha_sigma2", "logsnr_t", "t_of_logsnr"]


def alpha_t(t):
    r""":math:`\alpha_t = e^{-t}`."""
    return np.exp(-np.asarray(t, dtype=np.float64))


def sigma2_t(t):
    r""":math:`\sigma_t^2 = -\mathrm{expm1}(-2t)` (relative error O(u) for every t > 0)."""
    return -np.expm1(-2.0 * np.asarray(t, dtype=np.float64))


def alpha_sigma2(t: float) -> tuple[float, float]:
    """``(alpha_t, sigma_t^2)`` for a scalar OU time."""
    return math.exp(-t), -math.expm1(-2.0 * t)


def logsnr_t(t):
    r"""Log-SNR :math:`\lambda_t = -2t - \log(-\mathrm{expm1}(-2t))`."""
    t = np.asarray(t, dtype=np.float64)
    return -2.0 * t - np.log(-np.expm1(-2.0 * t))


def t_of_logsnr(lam):
    r"""Inverse of :func:`logsnr_t`: :math:`t = \tfrac12\log(1 + e^{-\lambda})` (``logaddexp`` form, no overflow)."""
    lam = np.asarray(lam, dtype=np.float64)
    return 0.5 * np.logaddexp(0.0, -lam)

r"""The forward (noising) process, symbolically.

Every schedule here is a variance-preserving (VP) diffusion

.. math::  dX_t = -\tfrac12 \beta(t) X_t\,dt + \sqrt{\beta(t)}\,dB_t ,

whose transition from time :math:`s` to :math:`t > s` is Gaussian,
:math:`X_t \mid X_s \sim N(\alpha_{t|s} X_s, \sigma^2_{t|s} I)` with

.. math::
    \alpha_t = \exp\Big(-\tfrac12\int_0^t \beta(u)\,du\Big),\qquad
    \sigma_t^2 = 1 - \alpha_t^2,\qquad
    \alpha_{t|s} = \alpha_t/\alpha_s,\qquad
    \sigma^2_{t|s} = \sigma_t^2 - \alpha_{t|s}^2\sigma_s^2 .

The package's default time convention is the unit-rate Ornstein-Uhlenbeck process
(:data:`OU`, :math:`\beta \equiv 2`): :math:`dX = -X\,dt + \sqrt2\,dB`,
:math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`.  All "OU time" in the
package means this ``t``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from theory._validate import as_scalar, check_schedule, is_negative, reject_text

t, s, u = sp.symbols("t s u", positive=True)
x = sp.Symbol("x", real=True)
beta_min, beta_max = sp.symbols("beta_min beta_max", positive=True)
cosine_offset = sp.Symbol("epsilon_c", positive=True)
horizon = sp.Symbol("T", positive=True)

__all__ = [
    "VPSchedule",
    "OU",
    "GENERAL",
    "gaussian_marginal_density",
    "linear_schedule",
    "cosine_schedule",
    "fokker_planck_residual",
    "t",
    "s",
    "x",
]


@dataclass(frozen=True)
class VPSchedule:
    r"""A variance-preserving schedule given by :math:`\log\alpha_t` as a SymPy expression in ``t``.

    Parameters
    ----------
    name : str
        Short name used in printed derivations.
    log_alpha : sympy.Expr
        :math:`\log\alpha_t`, an expression in the symbol :data:`t` with value 0 at ``t = 0``.
    """

    name: str
    log_alpha: sp.Expr
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"name: must be a str, got {type(self.name).__name__}")
        reject_text(self.log_alpha, "log_alpha")
        if not isinstance(self.log_alpha, sp.Expr) or isinstance(self.log_alpha, sp.MatrixBase):
            raise TypeError(f"log_alpha: must be a SymPy expression in t, got {type(self.log_alpha).__name__}")
        if not isinstance(self.params, dict):
            raise TypeError(f"params: must be a dict, got {type(self.params).__name__}")

    # -- marginal coefficients -------------------------------------------------------
    def alpha(self, tt: sp.Expr = t) -> sp.Expr:
        r""":math:`\alpha_t = \exp(\log\alpha_t)`."""
        tt = as_scalar(tt, "tt")
        return sp.exp(self.log_alpha.subs(t, tt))

    def sigma2(self, tt: sp.Expr = t) -> sp.Expr:
        r""":math:`\sigma_t^2 = 1-\alpha_t^2` (numerically: ``-expm1(2 log alpha_t)``)."""
        tt = as_scalar(tt, "tt")
        return 1 - sp.exp(2 * self.log_alpha.subs(t, tt))

    def beta(self, tt: sp.Expr = t) -> sp.Expr:
        r""":math:`\beta(t) = -2\,\frac{d}{dt}\log\alpha_t`."""
        tt = as_scalar(tt, "tt")
        return sp.simplify(-2 * sp.diff(self.log_alpha, t)).subs(t, tt)

    def snr(self, tt: sp.Expr = t) -> sp.Expr:
        r"""Signal-to-noise ratio :math:`\alpha_t^2/\sigma_t^2`."""
        tt = as_scalar(tt, "tt")
        return self.alpha(tt) ** 2 / self.sigma2(tt)

    def logsnr(self, tt: sp.Expr = t) -> sp.Expr:
        r"""Log-SNR :math:`\lambda_t = \log(\alpha_t^2/\sigma_t^2) = 2\log\alpha_t - \log\sigma_t^2`."""
        tt = as_scalar(tt, "tt")
        return 2 * self.log_alpha.subs(t, tt) - sp.log(self.sigma2(tt))

    # -- transitions -----------------------------------------------------------------
    def alpha_ts(self, tt: sp.Expr = t, ss: sp.Expr = s) -> sp.Expr:
        r""":math:`\alpha_{t|s} = \alpha_t/\alpha_s` (forward from ``s`` to ``t > s``)."""
        tt, ss = as_scalar(tt, "tt"), as_scalar(ss, "ss")
        return sp.exp(self.log_alpha.subs(t, tt) - self.log_alpha.subs(t, ss))

    def sigma2_ts(self, tt: sp.Expr = t, ss: sp.Expr = s) -> sp.Expr:
        r""":math:`\sigma^2_{t|s} = \sigma_t^2 - \alpha_{t|s}^2\sigma_s^2 = 1 - \alpha_{t|s}^2`."""
        tt, ss = as_scalar(tt, "tt"), as_scalar(ss, "ss")
        return self.sigma2(tt) - self.alpha_ts(tt, ss) ** 2 * self.sigma2(ss)

    # -- SDE coefficients -----------------------------------------------------------
    def drift_coefficient(self, tt: sp.Expr = t) -> sp.Expr:
        r"""Linear drift coefficient :math:`f(t) = \frac{d}{dt}\log\alpha_t = -\beta(t)/2`."""
        tt = as_scalar(tt, "tt")
        return sp.diff(self.log_alpha, t).subs(t, tt)

    def diffusion2(self, tt: sp.Expr = t) -> sp.Expr:
        r"""Squared diffusion :math:`g(t)^2 = \beta(t)`."""
        tt = as_scalar(tt, "tt")
        return self.beta(tt)


#: The unit-rate OU process, the package's time convention: :math:`\alpha_t=e^{-t}`.
OU = VPSchedule("ou", -t)

#: An arbitrary VP schedule, :math:`\log\alpha_t = L(t)` with ``L`` an undefined function.  An
#: identity proved for it holds for every VP schedule at once.
log_alpha_fn = sp.Function("L")
GENERAL = VPSchedule("general", log_alpha_fn(t))


def _check_positive(value: sp.Expr, name: str) -> None:
    if is_negative(value) or value.is_zero:
        raise ValueError(f"{name}: must be > 0, got {value}")


def linear_schedule(b_min: sp.Expr = beta_min, b_max: sp.Expr = beta_max, T: sp.Expr = 1) -> VPSchedule:
    r"""Linear :math:`\beta(t) = \beta_{min} + (\beta_{max}-\beta_{min})\,t/T` on :math:`[0, T]`.

    :math:`\log\alpha_t = -\tfrac12\big(\beta_{min} t + (\beta_{max}-\beta_{min}) t^2/(2T)\big)`.
    """
    b_min, b_max, T = as_scalar(b_min, "b_min"), as_scalar(b_max, "b_max"), as_scalar(T, "T")
    for name, val in (("b_min", b_min), ("b_max", b_max)):
        if is_negative(val):
            raise ValueError(f"{name}: must be >= 0, got {val}")
    _check_positive(T, "T")
    la = -sp.Rational(1, 2) * sp.integrate(b_min + (b_max - b_min) * u / T, (u, 0, t))
    return VPSchedule("linear", sp.expand(la), {"beta_min": b_min, "beta_max": b_max, "T": T})


def cosine_schedule(offset: sp.Expr = cosine_offset, T: sp.Expr = 1) -> VPSchedule:
    r"""Cosine schedule (Nichol & Dhariwal):
    :math:`\alpha_t = \cos\!\big(\tfrac{\pi}{2}\tfrac{t/T+\epsilon}{1+\epsilon}\big) / \cos\!\big(\tfrac{\pi}{2}\tfrac{\epsilon}{1+\epsilon}\big)`.

    Defined for :math:`0 \le t < T`; :math:`\alpha_T = 0`.
    """
    offset, T = as_scalar(offset, "offset"), as_scalar(T, "T")
    if is_negative(offset):
        raise ValueError(f"offset: must be >= 0, got {offset}")
    _check_positive(T, "T")
    ang = lambda tt: sp.pi / 2 * (tt / T + offset) / (1 + offset)  # noqa: E731
    la = sp.log(sp.cos(ang(t))) - sp.log(sp.cos(ang(0)))
    return VPSchedule("cosine", la, {"offset": offset, "T": T})


def gaussian_marginal_density(schedule: VPSchedule, mean0: sp.Expr, var0: sp.Expr, xx: sp.Expr = x) -> sp.Expr:
    r"""1-D marginal :math:`p_t = N(x;\ \alpha_t m_0,\ \alpha_t^2 v_0 + \sigma_t^2)` of :math:`X_0\sim N(m_0, v_0)`."""
    check_schedule(schedule)
    mean0, var0, xx = as_scalar(mean0, "mean0"), as_scalar(var0, "var0"), as_scalar(xx, "xx")
    if is_negative(var0):
        raise ValueError(f"var0: must be >= 0, got {var0}")
    a = schedule.alpha()
    var = a**2 * var0 + schedule.sigma2()
    return sp.exp(-((xx - a * mean0) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)


def fokker_planck_residual(schedule: VPSchedule, density: sp.Expr, xx: sp.Expr = x) -> sp.Expr:
    r"""Residual of the forward Fokker-Planck equation in one dimension, divided by the density:

    .. math::  \frac{1}{p}\Big(\partial_t p + \partial_x\big(f(t)\,x\,p\big) - \tfrac12 g(t)^2\,\partial_x^2 p\Big),

    which is identically zero when ``density`` is the law of the VP process.  Dividing by
    :math:`p` turns a Gaussian residual into a polynomial in ``x`` that ``simplify`` closes.
    """
    check_schedule(schedule)
    density, xx = as_scalar(density, "density"), as_scalar(xx, "xx")
    f = schedule.drift_coefficient()
    g2 = schedule.diffusion2()
    res = sp.diff(density, t) + sp.diff(f * xx * density, xx) - g2 / 2 * sp.diff(density, xx, 2)
    return res / density

r"""Exact output law of the guided Euler-Maruyama chain with a constant guidance bias
(``proofs_notes/ce_guidance.md#discretisation-exact``; claim ``ce_guidance.discretisation_exact``).

[reconstructed] The paper (arXiv 2601.21200) bounds the KL between the guided process and its discretisation by a
score-error, a guidance-error, a step-size and an initialisation term, of the generic form
:math:`\mathrm{KL}\le\mathrm{KL}_{\rm init}+C(\varepsilon_{\rm score}^2+\varepsilon_{\rm guid}^2)T+Chd\,T`.  Here the
output KL is computed exactly, in closed form, in a setting where every term can be isolated.

Setting (OU time, :math:`\alpha_t=e^{-t}`)
---------------------------------------
Setting G, class :math:`y=+1`: :math:`X_0\mid y\sim N(\mu,I_d)`, so :math:`p_t(\cdot\mid y)=N(\alpha_t\mu,I_d)` and the
exact guided score is :math:`-(x-\alpha_t\mu)`.  The guided score used by the chain carries a constant guidance error
:math:`b\in\mathbb R^d`: :math:`\hat s(x,t)=-(x-\alpha_t\mu)+b`.  (In the package this is ``exact_law`` on the class
conditional target with ``affine_guidance = t -> (0, b)`` and ``guidance = 1``; ``exact_law`` adds :math:`w\,b` to
the score, so a strength :math:`w` multiplies the bias: the error is :math:`wb`.)  Euler-Maruyama on the reverse SDE
:math:`dY=(Y+2\hat s)\,d\tau+\sqrt2\,dB` from :math:`t_0=T` to :math:`t_N=t_{\min}`, :math:`h=(T-t_{\min})/N`,
:math:`t_k=T-kh`, :math:`r=1-h`:

.. math::  x_{k+1}=r\,x_k+2h\alpha_{t_k}\mu+2h\,b+\sqrt{2h}\,\xi_k,\qquad x_0\sim p_T(\cdot\mid y)=N(e^{-T}\mu,I_d).

The bias enters the drift with the factor 2 of the score.

Closed form (geometric sums)
----------------------------
*Variance.* Every coordinate obeys :math:`v_{k+1}=r^2v_k+2h`, fixed point :math:`v^*=2h/(1-r^2)=1/(1-h/2)`, so

.. math::  e:=v_N-1=\frac{h/2}{1-h/2}\,\big(1-r^{2N}\big)=\frac{h/2}{1-h/2}\,\big(-\mathrm{expm1}(2N\,\mathrm{log1p}(-h))\big)\ \ge0 .

*Mean.* :math:`m_N=a_N\mu+\beta_Nb` with :math:`\sum_{k<N}r^{N-1-k}e^{kh}=\frac{e^{Nh}-r^N}{e^h-r}` and
:math:`\sum_{k<N}r^{N-1-k}=\frac{1-r^N}h`:
:math:`a_N=e^{-T}\big(r^N+2h\frac{e^{Nh}-r^N}{e^h-1+h}\big)`, :math:`\beta_N=2(1-r^N)=-2\,\mathrm{expm1}(N\,\mathrm{log1p}(-h))`.
The error along :math:`\mu` against :math:`e^{-t_{\min}}=e^{-T}e^{Nh}` needs no subtraction of nearly equal numbers:

.. math::  \Delta_a:=a_N-e^{-t_{\min}}=e^{-T}(e^{Nh}-r^N)\Big(\frac{2h}{e^h-r}-1\Big)
           =-e^{-t_{\min}}\big(-\mathrm{expm1}(N(\mathrm{log1p}(-h)-h))\big)\,\frac{E_2(h)}{\mathrm{expm1}(h)+h},

:math:`E_2(h)=e^h-1-h` (summed as a series for small :math:`h`).  So the mean error is :math:`\Delta=\Delta_a\mu+\beta_Nb`.

*KL.*  With :math:`\varphi(e)=\log(1+e)-\frac e{1+e}=\sum_{n\ge2}z^n/n`, :math:`z=e/(1+e)` (series, no cancellation),

.. math::  \mathrm{KL}\big(p_{t_{\min}}(\cdot\mid y)\,\|\,N(m_N,v_NI)\big)=\frac d2\,\varphi(e)+\frac{\|\Delta\|^2}{2(1+e)},\qquad
           \|\Delta\|^2=\Delta_a^2\|\mu\|^2+2\Delta_a\beta_N\langle\mu,b\rangle+\beta_N^2\|b\|^2 .

Consequences (proved in the note)
---------------------------------
* :math:`\mathrm{KL}(b)-\mathrm{KL}(0)=\frac{\Delta_a\beta_N\langle\mu,b\rangle}{1+e}+\frac{\beta_N^2}{2(1+e)}\|b\|^2`: exactly
  quadratic in :math:`b`, with no linear term for :math:`b\perp\mu`.
* :math:`\mu=m\mathbf 1`, :math:`b=0`: the chain is a product of :math:`d` identical scalar chains, so
  :math:`\mathrm{KL}=d\,\mathrm{KL}_{d=1}` exactly.
* :math:`b=0`, fixed :math:`\tau=T-t_{\min}`, :math:`h\to0`: :math:`\mathrm{KL}=K_2(\tau)h^2(1+O(h))`,
  :math:`K_2=(1-e^{-2\tau})^2\big(\frac d{16}+\frac{e^{-2t_{\min}}\|\mu\|^2}{32}\big)` (order 2, saturating in :math:`\tau`).
* :math:`b\perp\mu`: :math:`\mathrm{KL}\to c(\tau)\|b\|^2`, :math:`c(\tau)=2(1-e^{-\tau})^2` (the continuous process's
  mean error :math:`2b(1-e^{-\tau})`), bounded in :math:`\tau`, while the Girsanov form grows like :math:`\|b\|^2\tau`.

All functions are float64; bad input raises a ``ValueError`` naming the argument.
"""
from __future__ import annotations

import math

import numpy as np

from numerics.constants import UNIT_ROUNDOFF
from numerics.validate import as_float_array, check_int, check_positive, check_real

__all__ = ["EMBiasLaw", "em_bias_law", "em_bias_kl", "bias_excess", "bias_quadratic_coefficient", "leading_h2_coefficient",
           "plateau_coefficient", "paper_form_bound", "law_rounding_bound", "closed_form_rounding", "CLOSED_FORM_REL", "phi",
           "expm1_minus_x"]

_SERIES_CUT = 0.5


def phi(e: float) -> float:
    r""":math:`\varphi(e)=\log(1+e)-\frac{e}{1+e}` for :math:`e>-1`, without cancellation.

    With :math:`z=e/(1+e)`, :math:`\log(1+e)=-\log(1-z)`, so :math:`\varphi=\sum_{n\ge2}z^n/n` (summed while
    :math:`|z|\le1/2`: terms below :math:`u` after 53 terms); otherwise :math:`-\mathrm{log1p}(-z)-z`, whose
    cancellation loses at most a factor :math:`|z|/\varphi\le 4` there.

    Parameters
    ----------
    e : float
        Relative variance excess, :math:`> -1`.

    Returns
    -------
    float
        :math:`\varphi(e)\ge0`.
    """
    e = check_real(e, "e")
    if e <= -1.0:
        raise ValueError(f"e: must be > -1, got {e!r}")
    z = e / (1.0 + e)
    if abs(z) > _SERIES_CUT:
        return -math.log1p(-z) - z
    total, term, n = 0.0, z * z, 2
    while True:
        add = term / n
        total += add
        if abs(add) <= UNIT_ROUNDOFF * abs(total) * 0.5:
            return total
        n += 1
        term *= z


def expm1_minus_x(x: float) -> float:
    r""":math:`E_2(x)=e^x-1-x=\sum_{n\ge2}x^n/n!` without cancellation (series for :math:`|x|\le1/2`).

    Parameters
    ----------
    x : float
        Finite real number.

    Returns
    -------
    float
    """
    x = check_real(x, "x")
    if abs(x) > _SERIES_CUT:
        return math.expm1(x) - x
    total, term, n = 0.0, x * x / 2.0, 2
    while True:
        total += term
        if abs(term) <= UNIT_ROUNDOFF * abs(total) * 0.5:
            return total
        n += 1
        term *= x / n


def _step(T: float, t_min: float, N: int) -> tuple[float, float, float, int]:
    T = check_positive(T, "T")
    t_min = check_positive(t_min, "t_min", allow_zero=True)
    N = check_int(N, "N", low=1)
    if not T > t_min:
        raise ValueError(f"T: must exceed t_min={t_min!r}, got {T!r}")
    h = (T - t_min) / N
    if not h < 1.0:
        raise ValueError(f"N: the step h = (T - t_min)/N = {h!r} must be < 1 (Euler-Maruyama factor 1 - h > 0); "
                         "use more steps")
    return T, t_min, h, N


def _vectors(mu, b) -> tuple[np.ndarray, np.ndarray]:
    mu = as_float_array(mu, "mu", 1)
    if mu.size < 1:
        raise ValueError("mu: must have at least one coordinate")
    if b is None:
        return mu, np.zeros_like(mu)
    b = as_float_array(b, "b", 1)
    if b.shape != mu.shape:
        raise ValueError(f"b: must have the shape of mu {mu.shape}, got {b.shape}")
    return mu, b


class EMBiasLaw:
    r"""The output law :math:`N(e^{-t_{\min}}\mu+\Delta,(1+e)I_d)` of the biased guided Euler-Maruyama chain.

    Attributes
    ----------
    h : float
        Step :math:`(T-t_{\min})/N`.
    e : float
        Variance excess :math:`v_N-1`.
    delta_a : float
        Mean error along :math:`\mu`, :math:`\Delta_a=a_N-e^{-t_{\min}}` (negative).
    beta : float
        Bias gain :math:`\beta_N=2(1-(1-h)^N)`.
    delta : numpy.ndarray
        Mean error :math:`\Delta=\Delta_a\mu+\beta_Nb`.
    mean : numpy.ndarray
        :math:`e^{-t_{\min}}\mu+\Delta`.
    var : float
        :math:`1+e` (the covariance is :math:`(1+e)I_d`).
    kl : float
        :math:`\frac d2\varphi(e)+\|\Delta\|^2/(2(1+e))`.
    """

    __slots__ = ("h", "e", "delta_a", "beta", "delta", "mean", "var", "kl", "d")

    def __init__(self, h: float, e: float, delta_a: float, beta: float, delta: np.ndarray, mean: np.ndarray,
                 kl: float, d: int) -> None:
        self.h, self.e, self.delta_a, self.beta = h, e, delta_a, beta
        self.delta, self.mean, self.var, self.kl, self.d = delta, mean, 1.0 + e, kl, d


def em_bias_law(T: float, t_min: float, N: int, mu, b=None) -> EMBiasLaw:
    r"""Closed-form output law of :math:`x_{k+1}=(1-h)x_k+2h\alpha_{t_k}\mu+2hb+\sqrt{2h}\xi_k`, :math:`x_0\sim N(e^{-T}\mu,I)`.

    .. math::  e=\frac{h/2}{1-h/2}\big(1-(1-h)^{2N}\big),\quad
               \Delta_a=-e^{-t_{\min}}\big(1-(1-h)^Ne^{-Nh}\big)\frac{e^h-1-h}{e^h-1+h},\quad
               \beta_N=2\big(1-(1-h)^N\big),

    mean :math:`e^{-t_{\min}}\mu+\Delta_a\mu+\beta_Nb`, covariance :math:`(1+e)I_d`; KL to
    :math:`p_{t_{\min}}(\cdot\mid y)=N(e^{-t_{\min}}\mu,I_d)` is :math:`\frac d2\varphi(e)+\frac{\|\Delta\|^2}{2(1+e)}`.

    Parameters
    ----------
    T : float
        Start time (OU), :math:`> t_{\min}`.
    t_min : float
        End time, :math:`\ge0`.
    N : int
        Number of steps, :math:`\ge1`, with :math:`h=(T-t_{\min})/N<1`.
    mu : array_like, shape (d,)
        Class mean (class :math:`y=+1`).
    b : array_like, shape (d,), optional
        Constant guidance (score) error; default 0.

    Returns
    -------
    EMBiasLaw
    """
    T, t_min, h, N = _step(T, t_min, N)
    mu, b = _vectors(mu, b)
    lr = math.log1p(-h)
    e = (h / 2.0) / (1.0 - h / 2.0) * (-math.expm1(2.0 * N * lr))
    delta_a = -math.exp(-t_min) * (-math.expm1(N * (lr - h))) * expm1_minus_x(h) / (math.expm1(h) + h)
    beta = -2.0 * math.expm1(N * lr)
    delta = delta_a * mu + beta * b
    kl = 0.5 * mu.size * phi(e) + float(delta @ delta) / (2.0 * (1.0 + e))
    return EMBiasLaw(h, e, delta_a, beta, delta, math.exp(-t_min) * mu + delta, kl, mu.size)


def em_bias_kl(T: float, t_min: float, N: int, mu, b=None) -> float:
    r""":math:`\mathrm{KL}(p_{t_{\min}}(\cdot\mid y)\,\|\,\text{chain})=\frac d2\varphi(e)+\frac{\|\Delta_a\mu+\beta_Nb\|^2}{2(1+e)}`
    (see :func:`em_bias_law`; same arguments)."""
    return em_bias_law(T, t_min, N, mu, b).kl


def bias_quadratic_coefficient(T: float, t_min: float, N: int) -> float:
    r"""Coefficient of :math:`\|b\|^2` in :math:`\mathrm{KL}(b)-\mathrm{KL}(0)`: :math:`q_N=\frac{\beta_N^2}{2(1+e)}`.

    Parameters as in :func:`em_bias_law` (no vectors needed).
    """
    law = em_bias_law(T, t_min, N, [0.0])
    return law.beta**2 / (2.0 * law.var)


def bias_excess(T: float, t_min: float, N: int, mu, b) -> float:
    r""":math:`\mathrm{KL}(b)-\mathrm{KL}(0)=\frac{\Delta_a\beta_N\langle\mu,b\rangle}{1+e}+\frac{\beta_N^2\|b\|^2}{2(1+e)}`,
    computed from its two terms (no difference of KLs).  Parameters as in :func:`em_bias_law` (``b`` required)."""
    law = em_bias_law(T, t_min, N, mu, b)
    mu, b = _vectors(mu, b)
    return (law.delta_a * law.beta * float(mu @ b) + 0.5 * law.beta**2 * float(b @ b)) / law.var


def leading_h2_coefficient(tau: float, t_min: float, d: int, mu_norm2: float) -> float:
    r""":math:`K_2(\tau)=(1-e^{-2\tau})^2\big(\frac d{16}+\frac{e^{-2t_{\min}}\|\mu\|^2}{32}\big)`, the limit of
    :math:`\mathrm{KL}/h^2` at :math:`b=0` as :math:`h\to0` with :math:`\tau=T-t_{\min}` fixed.

    Parameters
    ----------
    tau : float
        Horizon :math:`T-t_{\min}>0`.
    t_min : float
        End time :math:`\ge0`.
    d : int
        Dimension :math:`\ge1`.
    mu_norm2 : float
        :math:`\|\mu\|^2\ge0`.
    """
    tau = check_positive(tau, "tau")
    t_min = check_positive(t_min, "t_min", allow_zero=True)
    d = check_int(d, "d", low=1)
    mu_norm2 = check_positive(mu_norm2, "mu_norm2", allow_zero=True)
    return math.expm1(-2.0 * tau) ** 2 * (d / 16.0 + math.exp(-2.0 * t_min) * mu_norm2 / 32.0)


def plateau_coefficient(tau: float) -> float:
    r""":math:`c(\tau)=2(1-e^{-\tau})^2`: :math:`\lim_{h\to0}\mathrm{KL}=c(\tau)\|b\|^2` for :math:`b\perp\mu`.

    Parameters
    ----------
    tau : float
        Horizon :math:`T-t_{\min}>0`.
    """
    tau = check_positive(tau, "tau")
    return 2.0 * math.expm1(-tau) ** 2


def paper_form_bound(d: int, h: float, tau: float, b_norm: float, kl_init: float = 0.0, C: float = 1.0) -> float:
    r"""Our reconstruction of the paper's generic form,
    :math:`B=\mathrm{KL}_{\rm init}+C\big(\tfrac14\|2b\|^2\tau+h\,d\,\tau\big)=\mathrm{KL}_{\rm init}+C(\|b\|^2+hd)\tau`
    (the guidance term is the Girsanov path KL :math:`\tfrac14\int\|\text{drift error}\|^2` of the SDE with diffusion
    :math:`\sqrt2`; the discretisation term :math:`hd\tau` has Lipschitz constant 1 here).

    Parameters
    ----------
    d : int
        Dimension.
    h, tau : float
        Step and horizon (``> 0``).
    b_norm : float
        :math:`\|b\|\ge0`.
    kl_init : float
        Initial KL (0: the chain starts at :math:`p_T(\cdot\mid y)`).
    C : float
        The constant (1).
    """
    d = check_int(d, "d", low=1)
    h, tau = check_positive(h, "h"), check_positive(tau, "tau")
    b_norm = check_positive(b_norm, "b_norm", allow_zero=True)
    kl_init = check_positive(kl_init, "kl_init", allow_zero=True)
    C = check_positive(C, "C")
    return kl_init + C * (b_norm**2 + h * d) * tau


def law_rounding_bound(T: float, t_min: float, N: int, mu, b=None, w: float = 1.0) -> float:
    r"""Bound on :math:`|\mathrm{KL}_{\rm exact\_law}-\mathrm{KL}|` from float64 rounding, where
    :math:`\mathrm{KL}_{\rm exact\_law}` is ``gaussian_kl`` of ``exact_law``'s moments (``euler_maruyama`` on
    ``np.linspace(T, t_min, N + 1)``, diagonal maps) and :math:`\mathrm{KL}` the exact value.

    First-order forward error, :math:`u=2^{-53}`, libm functions within 1 ulp (:math:`2u`), :math:`\tau\le T`:

    * mean, per step: the coefficients :math:`1+h`, :math:`-C_t^{-1}` (exp, expm1, sum, inverse), their combination
      and the product with :math:`m_k` carry :math:`\le10u` relative error on each of the two parts
      :math:`(1-h)m_k` and :math:`2h(\alpha_{t_k}\mu+wb)`; the grid points of ``linspace`` are within :math:`2uT` of
      :math:`t_k`, so :math:`h_k` is within :math:`5uT` of :math:`h`, moving the step by
      :math:`\le5uT(|m_k|+2|\alpha\mu|+2w|b|)`.  The map contracts (:math:`0<1-h\le1`), so the errors add:
      :math:`\varepsilon_m=Nu(10+9T)(3\|\mu\|+4w\|b\|)` (as :math:`|m_k|\le|\mu|+2w|b|` coordinatewise);
    * variance, per step :math:`\le6u` relative on both terms and :math:`|\partial v'/\partial h|\le2`:
      :math:`\varepsilon_v=Nu(8+10T)`;
    * their effect on the KL: :math:`\|\Delta\|\varepsilon_m+\tfrac12\varepsilon_v(d\,e+\|\Delta\|^2)`
      (:math:`|\partial_v\mathrm{KL}|\le\frac12(d\,e+\|\Delta\|^2)` per coordinate for :math:`v\ge1`);
    * ``gaussian_kl``: sums of :math:`d` terms of size :math:`\le1` (:math:`\mathrm{tr}`), :math:`\|\Delta\|^2` and the
      log-determinant, recursive-summation bound :math:`(d+4)u` per sum, then a cancellation against :math:`d`:
      :math:`\varepsilon_{\rm eval}=u[(d+4)(d+\|\Delta\|^2)+9d+4\|\Delta\|(\|\mu\|+w\|b\|)]`.

    Returns :math:`\varepsilon_{\rm eval}+\|\Delta\|\varepsilon_m+\tfrac12\varepsilon_v(d\,e+\|\Delta\|^2)`.

    Parameters
    ----------
    T, t_min, N, mu, b
        As in :func:`em_bias_law`.
    w : float
        Guidance strength multiplying ``b`` in ``exact_law`` (1).
    """
    w = check_positive(w, "w", allow_zero=True)
    law = em_bias_law(T, t_min, N, mu, None if b is None else w * np.asarray(b, dtype=float))
    mu, b = _vectors(mu, b)
    u, d = UNIT_ROUNDOFF, mu.size
    nm, nb, nD = float(np.linalg.norm(mu)), w * float(np.linalg.norm(b)), float(np.linalg.norm(law.delta))
    eps_m = N * u * (10.0 + 9.0 * T) * (3.0 * nm + 4.0 * nb)
    eps_v = N * u * (8.0 + 10.0 * T)
    eps_eval = u * ((d + 4) * (d + nD**2) + 9 * d + 4 * nD * (nm + nb))
    return eps_eval + nD * eps_m + 0.5 * eps_v * (d * law.e + nD**2)


#: Relative rounding of the closed form itself (log1p, expm1, exp within 1 ulp, series to u, a few products):
#: every one of e, Delta_a, beta_N carries <= 12 u; the KL (positive terms) <= 30 u of its value plus the
#: cancellation of Delta = Delta_a mu + beta_N b, 12 u (|Delta_a| |mu| + beta_N |b|) per unit |Delta| / (1 + e).
CLOSED_FORM_REL = 30.0 * UNIT_ROUNDOFF


def closed_form_rounding(law: EMBiasLaw, mu, b=None) -> float:
    r"""Absolute rounding bound of :attr:`EMBiasLaw.kl`: :math:`30u\,\mathrm{KL}+12u\,\|\Delta\|(|\Delta_a|\|\mu\|+\beta_N\|b\|)/(1+e)`."""
    mu, b = _vectors(mu, b)
    nD = float(np.linalg.norm(law.delta))
    return CLOSED_FORM_REL * law.kl + 12.0 * UNIT_ROUNDOFF * nD * (abs(law.delta_a) * float(np.linalg.norm(mu))
                                                                   + law.beta * float(np.linalg.norm(b))) / law.var

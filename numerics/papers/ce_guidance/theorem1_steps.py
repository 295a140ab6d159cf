r"""The three steps of Theorem 1 (``proofs_notes/ce_guidance.md``) as near-equalities, by quadrature.

Time convention: OU forward time ``t > 0``, :math:`\alpha_t=e^{-t}`.  Setting G (:class:`SettingG`):
:math:`Y=\pm1` with :math:`\pi_\pm=\tfrac12`, :math:`X_t\mid Y\sim N(Y\alpha_t\mu,I_d)`, ``d >= 2``; true logit
:math:`f=g\,s`, :math:`s=\langle\hat\mu,x\rangle`, :math:`g=\|\nabla f\|=2\alpha_t\|\mu\|`; learned logit :math:`f+h` with the ripple
:math:`h=\delta\sin(\omega v)`, :math:`v=\langle u,x\rangle`, :math:`u\perp\mu`.  Under every class law
:math:`\rho_y=N(y\alpha_t\mu,I)` and under :math:`p_t`, :math:`v\sim N(0,1)` is independent of :math:`s`.

Log-probability errors, with :math:`p=\sigma(f)`, :math:`q=1-p`, :math:`p_h=\sigma(f+h)`, :math:`q_h=1-p_h`:

.. math::
    r_+ = \log\frac{p_h}{p} = -\log\!\big(1+q\,(e^{-h}-1)\big),\qquad
    r_- = \log\frac{q_h}{q} = -\log\!\big(1+p\,(e^{h}-1)\big)

(``log1p``/``expm1``: relative accuracy at every :math:`h`), and

.. math::
    \nabla r_+ = (q_h-q)\,g\,e_s + q_h\,\partial_vh\,e_v,\quad
    \nabla r_- = -(p_h-p)\,g\,e_s - p_h\,\partial_vh\,e_v,\quad
    \Delta r_\pm = -p_hq_h(g^2+(\partial_vh)^2) + pq\,g^2 \pm(q_h\text{ resp. }p_h)\,\Delta h,

with :math:`q_h-q=q\,p_h\,(e^{-h}-1)`, :math:`p_h-p=p\,q_h\,(e^{h}-1)`, :math:`\partial_vh=\delta\omega\cos\omega v`,
:math:`\Delta h=-\delta\omega^2\sin\omega v`.

**Step 1.** :math:`\varphi(r)=e^r-1-r`; since :math:`\sum_yp_ye^{r_y}=1`,
:math:`\sum_yp_y\varphi(r_y)=-\sum_yp_yr_y=\mathrm{KL}(p\|\hat p)` at every ``x``.  The ratio
:math:`R=c_0\,\mathbb E\sum_yp_yr_y^2/\varepsilon^2` (:math:`c_0=\varphi''(0)/2=\tfrac12`) tends to 1; here
(:func:`step1_expansion`)

.. math::  R = 1 + \frac{S_4}{S_2}\Big(\frac34\frac{\mathbb E[(pq)^2]}{\mathbb E[pq]}-\frac1{12}\Big)\delta^2 + O(\delta^4),

the :math:`O(\delta)` term vanishing exactly (``v -> -v`` flips ``h``), with an explicit bound on the :math:`O(\delta^4)`
remainder (:math:`S_{2j}=\mathbb E\sin^{2j}(\omega v)`).

**Step 2.** Per class, :math:`A_y=\mathbb E_{\rho_y}\|\nabla r_y\|^2=-\mathbb E_{\rho_y}[r_y\Delta r_y]-\mathbb E_{\rho_y}[r_y\,s_y\cdot\nabla r_y]`,
:math:`s_y=\nabla\log\rho_y=-(x-y\alpha_t\mu)`; the three terms are integrated separately (:func:`ibp_terms`).

**Quadrature.** Each expectation over :math:`\rho_c` is a tensor rule: Gauss-Hermite in :math:`s-c` (``n_s`` nodes) times
the trapezoid rule for :math:`v\sim N(0,1)` on :math:`[-12,12]` (``n_v`` points; the dropped tail is
:math:`<10^{-31}`).  The default ``n_v`` makes the *coarsest* rule used in the error estimate resolve the harmonics
:math:`j\omega` of the integrand up to :math:`j=J` with an aliasing margin 12 (aliasing term :math:`e^{-72}`), where
:math:`J=\lceil 36/\operatorname{asinh}(\pi/\delta)\rceil` (harmonic ``j`` of :math:`\sigma(f+\delta\sin\theta)` decays like
:math:`e^{-j\operatorname{asinh}(\pi/\delta)}`: the poles of :math:`\sigma` sit at imaginary part :math:`\pi`).  The error estimate
is :math:`\max(|I_n-I_{n/2}|,|I_n-I_{3n/4}|)` (both sizes scaled together; two coarser rules, because one can agree by
coincidence) plus a rounding bound :math:`(32+n_s+n_v)\,u\,\mathbb E[\text{mag}]`: each node value is a sum of
at most 8 products of at most 6 factors each accurate to :math:`4u` (per node :math:`\le32u\cdot\text{mag}`, ``mag``
the sum of the absolute values of the summands), and the two dot products add :math:`\le(n_s+n_v)u\cdot\text{mag}`
(recursive summation, Higham Lemma 3.1).  Smooth integrands converge spectrally; :math:`|r_y|` has kinks where
:math:`h=0`, so the :math:`\mathbb E|r_y|` terms (used only in informational tightness ratios) converge algebraically,
and their estimate (the same three-rule difference) is correspondingly larger (about :math:`10^{-3}` relative).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import expit

from numerics.constants import UNIT_ROUNDOFF
from numerics.papers.ce_guidance.classifier_error import SettingG
from numerics.quadrature import gauss_hermite_normal
from numerics.validate import check_choice, check_int, check_positive, check_real_values

__all__ = ["PHI_C0", "V_MAX", "logistic_derivative_sups", "phi", "log_errors", "sine_moments", "default_n_v",
           "Estimate", "Step1Terms", "Step1Expansion", "IBPTerms", "step1_terms", "step1_expansion", "ibp_terms",
           "log_error_derivatives", "tightness_limits"]

#: :math:`c_0=\lim_{M\to0}c_M=\varphi''(0)/2`: the Taylor constant of :math:`\varphi(r)=e^r-1-r=r^2/2+\dots`.
PHI_C0 = 0.5
#: Half-width of the trapezoid interval of the ripple coordinate ``v ~ N(0, 1)``.
V_MAX = 12.0
_ROUND_EVAL = 32  # per-node rounding constant (see the module docstring)


def logistic_derivative_sups(kmax: int = 5) -> tuple[float, ...]:
    r""":math:`(\sup_u|\sigma^{(1)}(u)|,\dots,\sup_u|\sigma^{(k_{\max})}(u)|)` for the logistic function.

    Each derivative is a polynomial in :math:`s=\sigma(u)\in[0,1]` (:math:`d/du=s(1-s)\,d/ds`); its sup is attained at
    an endpoint or a real critical point in :math:`[0,1]`, found as polynomial roots (exact up to rounding).
    :math:`\sup|\sigma'|=\tfrac14`, :math:`\sup|\sigma''|=1/(6\sqrt3)`, :math:`\sup|\sigma'''|=\tfrac18`.

    Parameters
    ----------
    kmax : int
        Highest derivative, ``1 <= kmax <= 12``.

    Returns
    -------
    tuple of float
    """
    from numpy.polynomial import Polynomial as Poly
    kmax = check_int(kmax, "kmax", 1, 12)
    s1 = Poly([0.0, 1.0, -1.0])
    out, P = [], s1
    for _ in range(kmax):
        crit = [float(z.real) for z in P.deriv().roots() if abs(z.imag) < 1e-9 and 0.0 <= z.real <= 1.0]
        out.append(float(max(abs(P(x)) for x in [0.0, 1.0] + crit)))
        P = P.deriv() * s1
    return tuple(out)


def phi(r) -> np.ndarray:
    r""":math:`\varphi(r)=e^r-1-r\ge0`, to a few units of relative rounding at every ``r``.

    For :math:`|r|<\tfrac12` the series :math:`\sum_{k=2}^{24}r^k/k!` (truncation :math:`<2^{-25}/25!`, far below
    :math:`u\,r^2/2`); otherwise ``expm1(r) - r`` (no cancellation there: :math:`\varphi(r)\ge 0.1|r|`).

    Parameters
    ----------
    r : array_like
        Finite reals.

    Returns
    -------
    numpy.ndarray
    """
    r = np.asarray(r, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError("r: contains NaN or infinite values")
    small = np.abs(r) < 0.5
    rs = np.where(small, r, 0.0)
    acc = np.zeros_like(rs)
    for k in range(24, 1, -1):  # Horner: r^2 (1/2! + r (1/3! + ...))
        acc = acc * rs + 1.0 / math.factorial(k)
    with np.errstate(over="ignore"):
        big = np.expm1(np.where(small, 0.0, r)) - np.where(small, 0.0, r)
    return np.where(small, acc * rs * rs, big)


def log_errors(f, h) -> tuple[np.ndarray, np.ndarray]:
    r"""The log-probability errors :math:`(r_+,r_-)` of the binary classifier :math:`\hat p_+=\sigma(f+h)`.

    .. math::  r_+=\log\sigma(f+h)-\log\sigma(f)=-\operatorname{log1p}\big(\sigma(-f)\operatorname{expm1}(-h)\big),\quad
               r_-=\log\sigma(-f-h)-\log\sigma(-f)=-\operatorname{log1p}\big(\sigma(f)\operatorname{expm1}(h)\big).

    Parameters
    ----------
    f, h : array_like
        True logit and logit perturbation (broadcast together), finite.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
    """
    f = check_real_values(f, "f")
    h = check_real_values(h, "h")
    with np.errstate(over="ignore"):
        rp = -np.log1p(expit(-f) * np.expm1(-h))
        rm = -np.log1p(expit(f) * np.expm1(h))
    if not (np.all(np.isfinite(rp)) and np.all(np.isfinite(rm))):
        raise ValueError("h: |h| too large, exp(|h|) overflows float64")
    return rp, rm


def sine_moments(omega: float) -> tuple[float, float, float]:
    r""":math:`(S_2,S_4,S_6)=\mathbb E\sin^{2j}(\omega v)`, :math:`v\sim N(0,1)`, from :math:`\mathbb E\cos(k\omega v)=e^{-k^2\omega^2/2}`:

    .. math::  S_2=\tfrac{1-e^{-2\omega^2}}2,\quad S_4=\tfrac38-\tfrac{e^{-2\omega^2}}2+\tfrac{e^{-8\omega^2}}8,\quad
               S_6=\tfrac{10-15e^{-2\omega^2}+6e^{-8\omega^2}-e^{-18\omega^2}}{32}.

    Parameters
    ----------
    omega : float
        Ripple frequency, > 0.

    Returns
    -------
    (float, float, float)
    """
    om = check_positive(omega, "omega")
    e2, e8, e18 = math.exp(-2 * om * om), math.exp(-8 * om * om), math.exp(-18 * om * om)
    return (-math.expm1(-2 * om * om) / 2, 3 / 8 - e2 / 2 + e8 / 8, (10 - 15 * e2 + 6 * e8 - e18) / 32)


def default_n_v(delta: float, omega: float) -> int:
    r"""Trapezoid points on :math:`[-12,12]` for the ripple coordinate (see the module docstring).

    :math:`n_v=\lceil 24\,(J\omega+12)/\pi\rceil`, made odd and :math:`\ge 401`, so that the half rule (spacing
    :math:`2\Delta`) has Nyquist frequency :math:`\pi/\Delta\ge J\omega+12`.

    Parameters
    ----------
    delta, omega : float
        Ripple amplitude and frequency, > 0.

    Returns
    -------
    int
    """
    dl = check_positive(delta, "delta")
    om = check_positive(omega, "omega")
    J = max(4, math.ceil(36.0 / math.asinh(math.pi / dl)))
    n = math.ceil(2 * V_MAX * (J * om + 12.0) / math.pi)
    if n > 400_000:
        raise ValueError(f"omega: {om:g} needs {n} trapezoid points in v; too many (at most 400000)")
    return max(401, n | 1)


@dataclass(frozen=True)
class Estimate:
    """A quadrature value with an absolute error bound (``err``: rule difference + rounding)."""

    value: float
    err: float


Integrand = Callable[[dict], "dict[str, tuple[np.ndarray, np.ndarray]]"]


def _check_setting(setting) -> SettingG:
    if not isinstance(setting, SettingG):
        raise ValueError("setting: need a SettingG")
    if setting.d < 2:
        raise ValueError(f"setting: the ripple direction must be orthogonal to mu, need d >= 2, got d={setting.d}")
    return setting


def _nodes(S: SettingG, centre: float, delta: float, omega: float, n_s: int, n_v: int) -> dict:
    """Tensor nodes (n_s, n_v) under N(centre e_s, I): coordinates, logit, ripple and its derivatives."""
    z, ws = gauss_hermite_normal(n_s)
    v = np.linspace(-V_MAX, V_MAX, n_v)
    wv = np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi) * (v[1] - v[0])
    wv[0] *= 0.5
    wv[-1] *= 0.5
    g = S.grad_f_norm
    s = (centre + z)[:, None]
    th = omega * v[None, :]
    f = g * s
    h = delta * np.sin(th)
    rp, rm = log_errors(f, h)
    with np.errstate(over="ignore"):
        em, ep = np.expm1(-h), np.expm1(h)
    p, q, ph, qh = expit(f), expit(-f), expit(f + h), expit(-f - h)
    return {"z": z[:, None], "s": s, "v": v[None, :], "f": f, "h": h, "hv": delta * omega * np.cos(th),
            "lap_h": -delta * omega * omega * np.sin(th), "p": p, "q": q, "ph": ph, "qh": qh,
            "dq": q * ph * em, "dp": p * qh * ep, "rp": rp, "rm": rm, "g": g, "ws": ws, "wv": wv,
            "alpha_m": S.alpha * S.m}


def _expect(S: SettingG, centres, delta, omega, n_s, n_v, integrand: Integrand) -> dict:
    """{name: Estimate} of sum_c w_c E_{N(c e_s, I)}[F_name] with the three-rule error estimate and rounding."""
    def run(ns: int, nv: int):
        tot: dict[str, list[float]] = {}
        for wc, c in centres:
            nd = _nodes(S, c, delta, omega, ns, nv)
            for k, (F, mag) in integrand(nd).items():
                val = wc * float(nd["ws"] @ F @ nd["wv"])
                m = wc * float(nd["ws"] @ np.abs(mag) @ nd["wv"])
                a = tot.setdefault(k, [0.0, 0.0])
                a[0] += val
                a[1] += m
        return tot

    fine = run(n_s, n_v)
    half = run(max(4, n_s // 2), max(33, (n_v // 2) | 1))
    tq = run(max(6, (3 * n_s) // 4), max(49, ((3 * n_v) // 4) | 1))
    out = {}
    for k, (val, mag) in fine.items():
        err = max(abs(val - half[k][0]), abs(val - tq[k][0])) + (_ROUND_EVAL + n_s + n_v) * UNIT_ROUNDOFF * mag
        if not (math.isfinite(val) and math.isfinite(err)):
            raise ValueError(f"delta: the quadrature of {k} overflows float64 (delta={delta!r}, omega={omega!r})")
        out[k] = Estimate(val, err)
    return out


def _args(setting, delta, omega, n_s, n_v):
    S = _check_setting(setting)
    dl = check_positive(delta, "delta")
    om = check_positive(omega, "omega")
    if dl > 5.0:
        raise ValueError(f"delta: must be <= 5 (the ripple amplitude), got {dl!r}")
    n_s = check_int(n_s, "n_s", 8, 2000)
    n_v = default_n_v(dl, om) if n_v is None else check_int(n_v, "n_v", 65, 400_001)
    return S, dl, om, n_s, n_v


@dataclass(frozen=True)
class Step1Terms:
    r"""Step-1 expectations over the joint law (each an :class:`Estimate`).

    ``r2`` :math:`\mathbb E_X\sum_yp_yr_y^2`; ``phi`` :math:`\mathbb E_X\sum_yp_y\varphi(r_y)`; ``kl`` the conditional KL
    (:math:`-\mathbb E_X\sum_yp_yr_y`, or the reverse :math:`\mathbb E_X\sum_y\hat p_yr_y` if asked); ``r2_class``
    :math:`\sum_y\pi_y\mathbb E_{\rho_y}r_y^2` (the same number by the change of measure :math:`\pi_y\rho_y=p_t\,p_y`);
    ``abs_r`` :math:`\mathbb E_X\sum_yp_y|r_y|`; ``r3`` :math:`\mathbb E_X\sum_yp_yr_y^3`.
    """

    r2: Estimate
    phi: Estimate
    kl: Estimate
    r2_class: Estimate
    abs_r: Estimate
    r3: Estimate


def step1_terms(setting: SettingG, delta: float, omega: float, *, n_s: int = 96, n_v: int | None = None,
                kl_direction: str = "forward", class_weights: tuple[float, float] = (0.5, 0.5)) -> Step1Terms:
    r"""The Step-1 expectations of Theorem 1 for the ripple :math:`h=\delta\sin(\omega v)` in setting G.

    .. math::
        \mathbb E_X\sum_yp_yF_y=\tfrac12\mathbb E_{\rho_+}[pF_++qF_-]+\tfrac12\mathbb E_{\rho_-}[pF_++qF_-],\qquad
        \sum_y\pi_y\mathbb E_{\rho_y}F_y .

    Parameters
    ----------
    setting : SettingG
        ``d >= 2``.
    delta, omega : float
        Ripple amplitude (``0 < delta <= 5``) and frequency (> 0).
    n_s : int
        Gauss-Hermite nodes per component along :math:`\mu`.
    n_v : int, optional
        Trapezoid points for ``v``; default :func:`default_n_v`.
    kl_direction : {"forward", "reverse"}
        ``"forward"``: :math:`\mathrm{KL}(p\|\hat p)=-\sum_yp_yr_y`; ``"reverse"``: :math:`\mathrm{KL}(\hat p\|p)=\sum_y\hat p_yr_y`
        (a negative control).
    class_weights : (float, float)
        The weights :math:`(\pi_+,\pi_-)` of the per-class sum ``r2_class`` (the joint law has :math:`\tfrac12,\tfrac12`;
        other weights serve a negative control).

    Returns
    -------
    Step1Terms
    """
    S, dl, om, n_s, n_v = _args(setting, delta, omega, n_s, n_v)
    kl_direction = check_choice(kl_direction, "kl_direction", ("forward", "reverse"))
    try:
        cw = tuple(float(c) for c in class_weights)
    except (TypeError, ValueError):
        raise ValueError(f"class_weights: need two non-negative reals, got {class_weights!r}") from None
    if len(cw) != 2 or not all(math.isfinite(c) and c >= 0 for c in cw):
        raise ValueError(f"class_weights: need two non-negative reals, got {class_weights!r}")
    am = S.alpha * S.m

    def joint(nd):
        p, q, rp, rm = nd["p"], nd["q"], nd["rp"], nd["rm"]
        r2 = p * rp**2 + q * rm**2
        ph_ = p * phi(rp) + q * phi(rm)
        ab = p * np.abs(rp) + q * np.abs(rm)
        if kl_direction == "forward":
            kl, klm = -(p * rp + q * rm), ab
        else:  # sum_y p_hat_y r_y = sum_y p_y e^{r_y} r_y
            kl = nd["ph"] * rp + nd["qh"] * rm
            klm = nd["ph"] * np.abs(rp) + nd["qh"] * np.abs(rm)
        return {"r2": (r2, r2), "phi": (ph_, ph_), "kl": (kl, klm), "abs_r": (ab, ab),
                "r3": (p * rp**3 + q * rm**3, p * np.abs(rp) ** 3 + q * np.abs(rm) ** 3)}

    J = _expect(S, [(0.5, am), (0.5, -am)], dl, om, n_s, n_v, joint)
    cp = _expect(S, [(cw[0], am)], dl, om, n_s, n_v, lambda nd: {"r2": (nd["rp"] ** 2, nd["rp"] ** 2)})["r2"]
    cm = _expect(S, [(cw[1], -am)], dl, om, n_s, n_v, lambda nd: {"r2": (nd["rm"] ** 2, nd["rm"] ** 2)})["r2"]
    return Step1Terms(r2=J["r2"], phi=J["phi"], kl=J["kl"], r2_class=Estimate(cp.value + cm.value, cp.err + cm.err),
                      abs_r=J["abs_r"], r3=J["r3"])


@dataclass(frozen=True)
class Step1Expansion:
    r"""The Step-1 ratio :math:`R=c_0\mathbb E\sum p r^2/\varepsilon^2` to second order with an explicit remainder.

    ``predicted`` :math:`=1+c_2\delta^2`; ``c1`` the :math:`O(\delta)` coefficient (0 by symmetry); ``c2``; ``rem``
    bounds :math:`|R-\text{predicted}|` (next order, constants from :func:`logistic_derivative_sups`);
    ``moment_err`` bounds the error of ``predicted`` from the Gauss-Hermite moments :math:`\mathbb E[pq]`,
    :math:`\mathbb E[(pq)^2]`; ``epq``, ``epq2`` those moments.
    """

    predicted: float
    c1: float
    c2: float
    rem: float
    moment_err: float
    epq: float
    epq2: float


def _pq_moments(S: SettingG, n: int) -> tuple[float, float]:
    z, w = gauss_hermite_normal(n)
    f = S.grad_f_norm * (z + S.alpha * S.m)  # both components give the same (f -> -f swaps p and q)
    pq = expit(f) * expit(-f)
    return float(w @ pq), float(w @ pq**2)


def step1_expansion(setting: SettingG, delta: float, omega: float, n: int = 96) -> Step1Expansion:
    r"""Second-order expansion of the Step-1 ratio with a bound on the remainder (``proofs_notes/ce_guidance.md#theorem1-steps``).

    Pointwise, :math:`N(h)=\sum_yp_yr_y^2=pq\,h^2+\tfrac14(pq)^2h^4+n_5h^5+R_N`, :math:`|R_N|\le C_6h^6/720`, and
    :math:`D(h)=2\mathrm{KL}=pq\,h^2+k_3h^3+\tfrac1{12}pq(1-6pq)h^4+k_5h^5+R_D`, :math:`|R_D|\le2s_5h^6/720`, with
    :math:`s_k=\sup|\sigma^{(k)}|` and :math:`C_6=\sum_{j=0}^6\binom6jb_jb_{6-j}`, :math:`b_0=\delta`, :math:`b_1=1`,
    :math:`b_j=s_{j-1}` (:math:`|r_\pm|\le|h|`, :math:`|r_\pm'|\le1`, :math:`|r_\pm^{(j)}|\le s_{j-1}`).  Odd powers of ``h`` have
    mean 0 (``v -> -v``) and are independent of ``f``; with :math:`D_2=\mathbb E[pq]\,\delta^2S_2`,
    :math:`N_4=\tfrac14\mathbb E[(pq)^2]\delta^4S_4`, :math:`D_4=\tfrac1{12}\mathbb E[pq(1-6pq)]\delta^4S_4`,
    :math:`\rho_N=C_6\delta^6S_6/720`, :math:`\rho_D=2s_5\delta^6S_6/720`:

    .. math::
        R=\frac{D_2+N_4+R_N}{D_2+D_4+R_D},\quad
        \Big|R-1-\frac{N_4-D_4}{D_2}\Big|\le\frac{(\rho_N+\rho_D)D_2+|N_4-D_4|(|D_4|+\rho_D)}{D_2(D_2+D_4-\rho_D)} .

    So :math:`c_1=0` and :math:`c_2=\frac{S_4}{S_2}\big(\frac34\frac{\mathbb E[(pq)^2]}{\mathbb E[pq]}-\frac1{12}\big)`.

    Parameters
    ----------
    setting : SettingG
    delta, omega : float
        Ripple amplitude and frequency, > 0.
    n : int
        Gauss-Hermite nodes for the moments (error: difference with ``n // 2`` nodes).

    Returns
    -------
    Step1Expansion
    """
    S = _check_setting(setting)
    dl = check_positive(delta, "delta")
    om = check_positive(omega, "omega")
    n = check_int(n, "n", 8, 2000)
    epq, epq2 = _pq_moments(S, n)
    e1, e2 = _pq_moments(S, n // 2)
    S2, S4, S6 = sine_moments(om)
    s1, s2, s3, s4, s5 = logistic_derivative_sups(5)
    b = [dl, 1.0, s1, s2, s3, s4, s5]
    C6 = sum(math.comb(6, j) * b[j] * b[6 - j] for j in range(7))
    D2 = epq * dl**2 * S2
    N4 = 0.25 * epq2 * dl**4 * S4
    D4 = (epq - 6 * epq2) / 12 * dl**4 * S4
    rN, rD = C6 * dl**6 * S6 / 720, 2 * s5 * dl**6 * S6 / 720
    den = D2 * (D2 + D4 - rD)
    if not den > 0:
        raise ValueError(f"delta: too large for the expansion (the denominator bound is not positive), delta={dl!r}")
    rem = ((rN + rD) * D2 + abs(N4 - D4) * (abs(D4) + rD)) / den
    c2 = S4 / S2 * (0.75 * epq2 / epq - 1.0 / 12.0)
    # d c2 / d(epq2/epq) = 0.75 S4/S2; |d(epq2/epq)| <= (|de2| + (epq2/epq)|de1|)/epq
    m_err = 0.75 * S4 / S2 * (abs(epq2 - e2) + epq2 / epq * abs(epq - e1)) / epq * dl**2 + 4 * UNIT_ROUNDOFF
    return Step1Expansion(predicted=1.0 + c2 * dl**2, c1=0.0, c2=c2, rem=rem, moment_err=m_err, epq=epq, epq2=epq2)


def _derivs(nd: dict, y: int):
    """(r_y, d_s r_y, d_v r_y, Lap r_y, |terms| of Lap r_y) at tensor nodes (see the module docstring)."""
    g, hv, lap_h = nd["g"], nd["hv"], nd["lap_h"]
    p, q, ph, qh = nd["p"], nd["q"], nd["ph"], nd["qh"]
    if y == 1:
        r, d1, d2, lap_lin = nd["rp"], nd["dq"] * g, qh * hv, qh * lap_h
    else:
        r, d1, d2, lap_lin = nd["rm"], -nd["dp"] * g, -ph * hv, -ph * lap_h
    hq = ph * qh
    lap = -hq * (g * g + hv * hv) + p * q * g * g + lap_lin
    lap_mag = hq * (g * g + hv * hv) + p * q * g * g + np.abs(lap_lin)
    return r, d1, d2, lap, lap_mag


def log_error_derivatives(setting: SettingG, delta: float, omega: float, y: int, s, v) -> tuple[np.ndarray, ...]:
    r"""Pointwise :math:`(r_y,\ \partial_sr_y,\ \partial_vr_y,\ \Delta r_y)` in setting G with the ripple :math:`\delta\sin(\omega v)`.

    ``s`` :math:`=\langle\hat\mu,x
angle` and ``v`` :math:`=\langle u,x
angle` (broadcast together); the formulas are those of
    the module docstring (:math:`r_y` does not depend on the other :math:`d-2` coordinates).

    Parameters
    ----------
    setting : SettingG
    delta, omega : float
        Ripple amplitude and frequency, > 0.
    y : {+1, -1}
    s, v : array_like
        Finite coordinates.

    Returns
    -------
    tuple of numpy.ndarray
    """
    S = _check_setting(setting)
    dl = check_positive(delta, "delta")
    om = check_positive(omega, "omega")
    if y not in (1, -1) or isinstance(y, bool):
        raise ValueError(f"y: must be +1 or -1, got {y!r}")
    s = check_real_values(s, "s")
    v = check_real_values(v, "v")
    s, v = np.broadcast_arrays(s, v)
    g = S.grad_f_norm
    f, th = g * s, om * v
    h = dl * np.sin(th)
    rp, rm = log_errors(f, h)
    p, q, ph, qh = expit(f), expit(-f), expit(f + h), expit(-f - h)
    nd = {"g": g, "hv": dl * om * np.cos(th), "lap_h": -dl * om * om * np.sin(th), "p": p, "q": q, "ph": ph, "qh": qh,
          "dq": q * ph * np.expm1(-h), "dp": p * qh * np.expm1(h), "rp": rp, "rm": rm}
    r, d1, d2, lap, _ = _derivs(nd, y)
    return r, d1, d2, lap


@dataclass(frozen=True)
class IBPTerms:
    r"""Step-2 terms of one class ``y`` (each an :class:`Estimate`):

    ``A`` :math:`\mathbb E_{\rho_y}\|\nabla r_y\|^2`; ``r_lap`` :math:`\mathbb E_{\rho_y}[r_y\Delta r_y]`; ``r_score``
    :math:`\mathbb E_{\rho_y}[r_y\,s\cdot\nabla r_y]` (``s`` the class score, or the marginal one if asked); ``abs_r``
    :math:`\mathbb E_{\rho_y}|r_y|`; ``r2_s2`` :math:`\mathbb E_{\rho_y}[r_y^2\|s_y\|^2]`. (``r_y`` does not depend on the :math:`d-2` coordinates
    off the :math:`(\mu,u)` plane, whose squared scores average to 1 each).  The identity is
    ``A = -r_lap - r_score``.
    """

    A: Estimate
    r_lap: Estimate
    r_score: Estimate
    abs_r: Estimate
    r2_s2: Estimate


def ibp_terms(setting: SettingG, delta: float, omega: float, y: int, *, n_s: int = 96, n_v: int | None = None,
              score: str = "class") -> IBPTerms:
    r"""The three terms of Step 2 (integration by parts) for class ``y`` and the ripple :math:`\delta\sin(\omega v)`.

    .. math::
        A_y=\mathbb E_{\rho_y}\|\nabla r_y\|^2,\qquad \mathbb E_{\rho_y}[r_y\Delta r_y],\qquad
        \mathbb E_{\rho_y}[r_y\,s\cdot\nabla r_y],\quad s_y=-(x-y\alpha_t\mu)
        \ \big(\text{or }\nabla\log p_t=-x+\alpha_t\mu\tanh(\alpha_t\langle\mu,x\rangle)\big).

    Parameters
    ----------
    setting : SettingG
        ``d >= 2``.
    delta, omega : float
        Ripple amplitude (``0 < delta <= 5``) and frequency.
    y : {+1, -1}
        The class.
    n_s, n_v : int
        Rule sizes (``n_v`` default :func:`default_n_v`).
    score : {"class", "marginal"}
        The score in the last term: the class-conditional :math:`s_y` (correct) or the marginal score of :math:`p_t`
        (a negative control).

    Returns
    -------
    IBPTerms
    """
    S, dl, om, n_s, n_v = _args(setting, delta, omega, n_s, n_v)
    if y not in (1, -1) or isinstance(y, bool):
        raise ValueError(f"y: must be +1 or -1, got {y!r}")
    score = check_choice(score, "score", ("class", "marginal"))
    am = S.alpha * S.m

    def terms(nd):
        r, d1, d2, lap, lap_mag = _derivs(nd, y)
        z, v = nd["z"], nd["v"]
        if score == "class":
            s1 = -z * np.ones_like(r)
        else:
            s_ = nd["s"]
            s1 = (-s_ + am * np.tanh(am * s_)) * np.ones_like(r)
        s2 = -v * np.ones_like(r)
        sg = s1 * d1 + s2 * d2
        sg_mag = np.abs(s1 * d1) + np.abs(s2 * d2)
        A = d1 * d1 + d2 * d2
        s_sq = z * z + v * v + (S.d - 2)  # ||s_y||^2: the d - 2 coordinates off the (mu, u) plane average to 1 each
        return {"A": (A, A), "r_lap": (r * lap, np.abs(r) * lap_mag), "r_score": (r * sg, np.abs(r) * sg_mag),
                "abs_r": (np.abs(r), np.abs(r)), "r2_s2": (r * r * s_sq, r * r * s_sq)}

    E = _expect(S, [(1.0, y * am)], dl, om, n_s, n_v, terms)
    return IBPTerms(A=E["A"], r_lap=E["r_lap"], r_score=E["r_score"], abs_r=E["abs_r"], r2_s2=E["r2_s2"])


def tightness_limits(setting: SettingG, n: int = 96) -> dict[str, float]:
    r"""Limits of the tightness ratios of Theorem 1's chain as :math:`\delta\to0` and then :math:`\omega\to\infty`.

    To leading order :math:`r_+\approx q\,h`, :math:`\nabla r_+\approx q\,\partial_vh\,e_v`, :math:`\Delta r_+\approx q\,\Delta h`,
    :math:`L\approx\delta\omega^2`, :math:`M=\delta`, :math:`\varepsilon^2\approx\tfrac14\mathbb E[pq]\delta^2`, and for
    :math:`\omega\to\infty` the phase :math:`\omega v` decouples from ``v`` (:math:`\mathbb E\sin^2=\mathbb E\cos^2=\tfrac12`,
    :math:`\mathbb E|\sin|=2/\pi`).  With :math:`\mathbb E_+` over :math:`\rho_+` and ``d`` the dimension:

    * Step 1 Cauchy-Schwarz, :math:`\mathbb E\sum p|r|\sqrt{c_M}/\varepsilon\to 2\sqrt{\mathbb E[pq]}\,(2/\pi)/\sqrt{1/2}`;
    * Step 2, :math:`B/a\to\mathbb E_+[q^2]\,\tfrac12/(d\,\mathbb E_+[q]\,\tfrac2\pi)` and :math:`A/(b^2+2a)\to` half of it
      (:math:`b^2=O(\delta^2)` while :math:`A,a=O(\delta^2\omega^2)`); :math:`|C|/(b\sqrt A)\to0`;
    * Step 3, :math:`\sum_y\pi_yb_y^2/(M\varepsilon S_4/\sqrt{c_M})\to\mathbb E_+[q^2(z^2+d-1)]/(4\sqrt{\mathbb E[pq]}\,S_4/\sqrt8)`
      (:math:`z=s-\alpha_t\|\mu\|`);
    * the whole chain, :math:`\mathrm{MSE}/\text{bound}\to\sqrt{\mathbb E[pq]}/(2\sqrt2\,d)`.

    Parameters
    ----------
    setting : SettingG
        ``d >= 2``.
    n : int
        Gauss-Hermite nodes.

    Returns
    -------
    dict
        Keys ``"step1_cs"``, ``"step2_lap"``, ``"step2_quad"``, ``"step2_cs"``, ``"step3_b2"``, ``"chain"``.
    """
    S = _check_setting(setting)
    n = check_int(n, "n", 8, 2000)
    z, w = gauss_hermite_normal(n)
    epq = _pq_moments(S, n)[0]
    q = expit(-S.grad_f_norm * (z + S.alpha * S.m))
    eq, eq2, eq2z2 = float(w @ q), float(w @ q**2), float(w @ (q**2 * z**2))
    d = S.d
    S4 = S.score_fourth_moment()
    lap = eq2 * 0.5 / (d * eq * 2 / math.pi)
    return {"step1_cs": 2 * math.sqrt(epq) * (2 / math.pi) / math.sqrt(0.5), "step2_lap": lap, "step2_quad": lap / 2,
            "step2_cs": 0.0, "step3_b2": 0.5 * (eq2z2 + (d - 1) * eq2) / (2 * math.sqrt(epq) * S4 / math.sqrt(8.0) * 1.0),
            "chain": math.sqrt(epq) / (2 * math.sqrt(2.0) * d)}

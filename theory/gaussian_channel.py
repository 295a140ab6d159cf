r"""The Gaussian channel in SNR time, symbolically: MMSE, mutual information, I-MMSE, Lemma 2 (Gaussian case).

Time convention (SNR time, *not* the package's OU time)
-------------------------------------------------------
:math:`Y_t = tX + W_t`, :math:`W` a standard Brownian motion independent of :math:`X`, so
:math:`Y_t \sim tX + \sqrt t\,N` and :math:`Y_t/\sqrt t = \sqrt t\,X + N` is the Gaussian channel at SNR ``t``.
:math:`M(t) = E\|X - E[X\mid Y_t]\|^2`, :math:`I(t) = I(X;Y_t)` (nats).

What is derived here (each function returns SymPy expressions; the tests check the identities):

* :func:`scalar_gaussian_channel` -- posterior of :math:`X\sim N(m_0, v)` given :math:`Y_t` by completing the
  square, :math:`M(t) = v/(1+tv)`, :math:`I(t) = \tfrac12\log(1+tv)` from :math:`h(Y_t) - h(Y_t\mid X)`, and
  the I-MMSE residual :math:`dI/dt - M/2` (simplifies to 0).
* :func:`matrix_immse` -- :math:`\tfrac{d}{dt}\tfrac12\log\det(I+t\Sigma) = \tfrac12\mathrm{tr}\,\Sigma(I+t\Sigma)^{-1}` for
  a symbolic symmetric 2x2 :math:`\Sigma` (Jacobi's formula, checked entry by entry).
* :func:`binary_channel` -- the posterior mean :math:`\tanh(y)` of the symmetric binary input (any ``t``).
* :func:`ou_map` -- the map from OU time :math:`\tau` (:math:`\alpha = e^{-\tau}`, :math:`\sigma^2 = 1-e^{-2\tau}`):
  :math:`t = \alpha^2/\sigma^2` and :math:`Y_t = (\alpha/\sigma^2)X_\tau` have the channel's law.
* :func:`ddpm_in_snr_time` -- the package's derived DDPM step (:func:`theory.integrators.ddpm`), rewritten in
  :math:`Y = (\alpha/\sigma^2)X`: it is :math:`Y_s = Y_t + \delta D + \sqrt\delta\,z` with
  :math:`\delta = \alpha_s^2/\sigma_s^2 - \alpha_t^2/\sigma_t^2`, i.e. the mean-only discrete sampler.
* :func:`gaussian_kl_1d`, :func:`per_step_kl_gaussian` -- the per-step KL
  :math:`D(N(a, \delta^2 s + \delta)\,\|\,N(a,\delta)) = \tfrac12[\delta s - \log(1+\delta s)]` and its series
  :math:`\delta^2 s^2/4 + O(\delta^3)`.
* :func:`lemma2_gaussian` -- Lemma 2 for a scalar Gaussian target: the per-step log terms telescope,
  :math:`1 + \delta_k v_{t_{k-1}} = (1+t_kv)/(1+t_{k-1}v)`, and
  :math:`\int_{t_{k-1}}^{t_k}M = \log\frac{1+t_kv}{1+t_{k-1}v}`, so the chain-rule sum equals the
  left-Riemann gap exactly.
* :func:`mixture_kl_shift` -- :math:`D(P\|N(a,\delta)) = D(P\|N(\bar m,\delta)) + (a-\bar m)^2/(2\delta)` for any
  ``P`` with mean :math:`\bar m` (the estimation-error decomposition), as an identity in ``a``.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

from theory._validate import as_scalar, is_negative, reject_text
from theory.forward import OU

__all__ = [
    "t", "v", "delta", "y", "tau_t", "tau_s",
    "scalar_gaussian_channel",
    "matrix_immse",
    "binary_channel",
    "ou_map",
    "ddpm_in_snr_time",
    "gaussian_kl_1d",
    "per_step_kl_gaussian",
    "lemma2_gaussian",
    "riemann_gap_gaussian",
    "mixture_kl_shift",
    "lambdified",
]

t = sp.Symbol("t", nonnegative=True)  # SNR time
v = sp.Symbol("v", positive=True)  # prior variance
m0 = sp.Symbol("m_0", real=True)
delta = sp.Symbol("delta", positive=True)
y = sp.Symbol("y", real=True)
x = sp.Symbol("x", real=True)
u = sp.Symbol("u", real=True)
a = sp.Symbol("a", real=True)
tau_t, tau_s = sp.symbols("tau_t tau_s", positive=True)  # OU times, tau_s < tau_t
_r = sp.Symbol("r", nonnegative=True)


def _gauss(z, mean, var):
    return sp.exp(-(z - mean) ** 2 / (2 * var)) / sp.sqrt(2 * sp.pi * var)


@lru_cache(maxsize=None)
def scalar_gaussian_channel() -> dict:
    r"""Posterior, MMSE and mutual information of :math:`X\sim N(m_0, v)` through :math:`Y_t = tX + \sqrt t N`.

    Derivation: :math:`\log p(x\mid y) = -\frac{(x-m_0)^2}{2v} - \frac{(y - tx)^2}{2t} + c(y)` is quadratic in
    ``x``; its precision is :math:`1/v + t` and its mean is read off.  :math:`Y_t\sim N(tm_0, t^2v + t)` and
    :math:`Y_t\mid X\sim N(tX, t)`, so :math:`I = \tfrac12\log(t^2v+t) - \tfrac12\log t`.
    """
    tt = sp.Symbol("t", positive=True)
    logpost = -(x - m0) ** 2 / (2 * v) - (y - tt * x) ** 2 / (2 * tt)
    poly = sp.Poly(sp.expand(logpost), x)
    prec = sp.simplify(-2 * poly.coeff_monomial(x**2))
    post_mean = sp.simplify(poly.coeff_monomial(x) / prec)
    post_var = sp.simplify(1 / prec)
    mmse = sp.simplify(post_var)  # deterministic posterior variance
    h_y = sp.log(2 * sp.pi * sp.E * (tt**2 * v + tt)) / 2
    h_y_x = sp.log(2 * sp.pi * sp.E * tt) / 2
    mi = sp.simplify(sp.expand_log(h_y - h_y_x, force=True))
    out = {
        "posterior_mean": post_mean.subs(tt, t),
        "posterior_var": post_var.subs(tt, t),
        "M": mmse.subs(tt, t),
        "I": mi.subs(tt, t),
        "immse_residual": sp.simplify(sp.diff(mi, tt) - mmse / 2).subs(tt, t),
        "closed_form_residual_M": sp.simplify(mmse - v / (1 + tt * v)),
        "closed_form_residual_I": sp.simplify(sp.expand_log(mi - sp.log(1 + tt * v) / 2, force=True)),
        "M0": sp.limit(mmse, tt, 0),
    }
    return out


@lru_cache(maxsize=None)
def matrix_immse() -> dict:
    r"""Jacobi: :math:`\tfrac{d}{dt}\tfrac12\log\det(I+t\Sigma) - \tfrac12\mathrm{tr}\,\Sigma(I+t\Sigma)^{-1}` for symbolic 2x2 :math:`\Sigma`."""
    s11, s22 = sp.symbols("s11 s22", positive=True)
    s12 = sp.Symbol("s12", real=True)
    S = sp.Matrix([[s11, s12], [s12, s22]])
    A = sp.eye(2) + t * S
    I_expr = sp.log(A.det()) / 2
    M_expr = (S * A.inv()).trace()
    return {"Sigma": S, "I": I_expr, "M": sp.simplify(M_expr),
            "residual": sp.simplify(sp.diff(I_expr, t) - M_expr / 2)}


@lru_cache(maxsize=None)
def binary_channel() -> dict:
    r"""Symmetric binary input: :math:`E[X\mid Y_t=y] = \tanh y` for every ``t`` (the ``t`` terms cancel)."""
    tt = sp.Symbol("t", positive=True)
    lik = {xx: _gauss(y, tt * xx, tt) for xx in (1, -1)}
    mean = (lik[1] - lik[-1]) / (lik[1] + lik[-1])
    return {"posterior_mean": mean, "residual": sp.simplify((mean - sp.tanh(y)).rewrite(sp.exp))}


@lru_cache(maxsize=None)
def ou_map() -> dict:
    r"""OU time :math:`\tau` to SNR time: :math:`t(\tau) = \alpha_\tau^2/\sigma_\tau^2` and the scale :math:`c = \alpha/\sigma^2`.

    With :math:`X_\tau = \alpha X + \sigma Z`, :math:`cX_\tau = c\alpha X + c\sigma Z`; matching the channel
    :math:`tX + \sqrt t N` needs :math:`c\alpha = t` and :math:`c^2\sigma^2 = t`, whose positive solution is
    derived below.
    """
    al, s2 = OU.alpha(), OU.sigma2()  # expressions in theory.forward.t (OU time)
    c, snr = sp.symbols("c snr", positive=True)
    sol = sp.solve([sp.Eq(c * al, snr), sp.Eq(c**2 * s2, snr)], [c, snr], dict=True)
    sol = [d for d in sol if d[c] != 0]
    c_expr, snr_expr = sp.simplify(sol[0][c]), sp.simplify(sol[0][snr])
    from theory.forward import t as ou_t
    return {
        "scale": c_expr.subs(ou_t, tau_t),
        "snr": snr_expr.subs(ou_t, tau_t),
        "snr_residual": sp.simplify(snr_expr - OU.snr()),
        "scale_residual": sp.simplify((c_expr - OU.alpha() / OU.sigma2()).rewrite(sp.exp)),
        "snr_closed": sp.simplify(snr_expr - 1 / (sp.exp(2 * ou_t) - 1)),
    }


@lru_cache(maxsize=None)
def ddpm_in_snr_time() -> dict:
    r"""The package's DDPM step :math:`x_s = c_xx_t + c_qD + c_zz` (OU times :math:`s<t`) in :math:`Y = (\alpha/\sigma^2)X`.

    Returns the three coefficients of :math:`Y_s = k_Y Y_t + k_D D + k_z z` and their residuals against
    :math:`1`, :math:`\delta = \mathrm{snr}(s) - \mathrm{snr}(t)` and :math:`\sqrt\delta`.
    """
    from theory.forward import s as ou_s
    from theory.forward import t as ou_t
    from theory.integrators import ddpm

    upd = ddpm(OU)
    scale = OU.alpha() / OU.sigma2()
    scale_s = scale.subs(ou_t, ou_s)
    kY = scale_s * upd.c_x / scale
    kD = scale_s * upd.c_q
    kz = scale_s * upd.c_z
    dlt = OU.snr().subs(ou_t, ou_s) - OU.snr()
    # numerically friendly: substitute E_t = exp(-2t), E_s = exp(-2s) and simplify rationally
    Et, Es = sp.symbols("E_t E_s", positive=True)

    def rat(e):
        e = sp.simplify(e).subs({sp.exp(-2 * ou_t): Et, sp.exp(-2 * ou_s): Es})
        e = e.subs({sp.exp(ou_t): 1 / sp.sqrt(Et), sp.exp(ou_s): 1 / sp.sqrt(Es),
                    sp.exp(-ou_t): sp.sqrt(Et), sp.exp(-ou_s): sp.sqrt(Es),
                    sp.exp(2 * ou_t): 1 / Et, sp.exp(2 * ou_s): 1 / Es})
        return sp.simplify(e)

    return {
        "k_Y": kY, "k_D": kD, "k_z": kz, "delta": dlt,
        "residual_Y": sp.simplify(rat(kY) - 1),
        "residual_D": sp.simplify(rat(kD) - rat(dlt)),
        "residual_z": sp.simplify(rat(kz) ** 2 - rat(dlt)),
        "args": (ou_t, ou_s),
    }


def gaussian_kl_1d(m1, v1, m2, v2) -> sp.Expr:
    r""":math:`D(N(m_1,v_1)\|N(m_2,v_2))`: the log-ratio is a quadratic in ``u``, averaged with the moments of ``p``."""
    m1, v1, m2, v2 = (as_scalar(val, name) for val, name in ((m1, "m1"), (v1, "v1"), (m2, "m2"), (v2, "v2")))
    for val, name in ((v1, "v1"), (v2, "v2")):
        if is_negative(val) or val.is_zero:
            raise ValueError(f"{name}: must be > 0, got {val}")
    logratio = sp.expand(sp.log(_gauss(u, m1, v1)).expand(force=True) - sp.log(_gauss(u, m2, v2)).expand(force=True))
    # E_p of a quadratic in u: use the first two moments of p
    poly = sp.Poly(logratio, u)
    c2, c1, c0 = (poly.coeff_monomial(u**2), poly.coeff_monomial(u), poly.coeff_monomial(1))
    return sp.simplify(c2 * (v1 + m1**2) + c1 * m1 + c0)


@lru_cache(maxsize=None)
def per_step_kl_gaussian() -> dict:
    r"""Per-step KL of the mean-only sampler when :math:`\mathrm{Cov}(X\mid y) = s` is deterministic (Gaussian target).

    :math:`P_{U\mid y} = N(\delta m, \delta^2 s + \delta)`, :math:`Q_{U\mid y} = N(\delta m, \delta)`.
    """
    s_ = sp.Symbol("s", positive=True)
    mm = sp.Symbol("m", real=True)
    kl = gaussian_kl_1d(delta * mm, delta**2 * s_ + delta, delta * mm, delta)
    closed = (delta * s_ - sp.log(1 + delta * s_)) / 2
    return {"kl": kl, "residual": sp.simplify(sp.expand_log(kl - closed, force=True)),
            "series": sp.series(closed, delta, 0, 4).removeO(), "s": s_}


@lru_cache(maxsize=None)
def lemma2_gaussian() -> dict:
    r"""Lemma 2 for :math:`X\sim N(m_0, v)`: telescoping of the per-step log terms and the Riemann-gap form.

    With :math:`v_\tau = v/(1+\tau v)` and :math:`t_k = t_{k-1} + \delta`, the factor :math:`1 + \delta v_{t_{k-1}}`
    equals :math:`(1+t_kv)/(1+t_{k-1}v)`, so :math:`\sum_k\log(1+\delta_kv_{t_{k-1}}) = \log(1+t_nv) = 2I(t_n)`;
    and :math:`\int_{t_{k-1}}^{t_k}M = 2(I(t_k) - I(t_{k-1}))` is checked by ``sympy.integrate``.
    """
    tp = sp.Symbol("t_p", nonnegative=True)  # t_{k-1}
    ch = scalar_gaussian_channel()
    M = ch["M"]
    I = ch["I"]
    vt = M.subs(t, tp)
    telescope = sp.simplify(1 + delta * vt - (1 + (tp + delta) * v) / (1 + tp * v))
    integral = sp.integrate(M.subs(t, _r), (_r, tp, tp + delta))
    int_res = sp.simplify(sp.expand_log(integral - 2 * (I.subs(t, tp + delta) - I.subs(t, tp)), force=True))
    step = per_step_kl_gaussian()
    kl_k = step["kl"].subs(step["s"], vt)
    gap_k = (delta * vt - integral) / 2
    return {"telescope_residual": telescope, "integral_residual": int_res,
            "step_kl": kl_k, "step_gap": gap_k,
            "step_residual": sp.simplify(sp.expand_log(sp.logcombine(kl_k - gap_k, force=True), force=True)),
            "t_prev": tp}


def riemann_gap_gaussian(ts: list) -> tuple[sp.Expr, sp.Expr]:
    r"""Both sides of Lemma 2 for :math:`N(m_0,v)` on an explicit schedule ``ts`` (SymPy numbers or symbols).

    Returns ``(chain_rule_sum, riemann_gap)``; their difference simplifies to zero.
    """
    reject_text(ts, "ts")
    if not hasattr(ts, "__iter__") or isinstance(ts, (dict, set, frozenset, sp.Basic)):
        raise TypeError(f"ts: must be a sequence of times, got {type(ts).__name__}")
    ts = [as_scalar(tk, f"ts[{k}]") for k, tk in enumerate(ts)]
    if not ts:
        raise ValueError("ts: need at least one time")
    for k, tk in enumerate(ts):
        if is_negative(tk):
            raise ValueError(f"ts[{k}]: SNR times must be >= 0, got {tk}")
        if k and is_negative(tk - ts[k - 1]):
            raise ValueError(f"ts: must be non-decreasing, ts[{k}] = {tk} < ts[{k - 1}] = {ts[k - 1]}")
    ch = scalar_gaussian_channel()
    M, I = ch["M"], ch["I"]
    step = per_step_kl_gaussian()
    chain = sum(step["kl"].subs({delta: ts[k] - ts[k - 1], step["s"]: M.subs(t, ts[k - 1])}) for k in range(1, len(ts)))
    gap = sum((ts[k] - ts[k - 1]) * M.subs(t, ts[k - 1]) for k in range(1, len(ts))) / 2 - I.subs(t, ts[-1])
    return chain, gap


@lru_cache(maxsize=None)
def mixture_kl_shift() -> dict:
    r""":math:`D(P\|N(a,\delta)) - D(P\|N(\bar m,\delta)) = (a-\bar m)^2/(2\delta)` for any ``P`` with mean :math:`\bar m`.

    :math:`\log N(u;\bar m,\delta) - \log N(u;a,\delta)` is affine in ``u``; its ``P``-expectation only needs
    :math:`E_Pu = \bar m`.
    """
    mbar = sp.Symbol("mbar", real=True)
    diff = sp.expand(sp.log(_gauss(u, mbar, delta)).expand(force=True) - sp.log(_gauss(u, a, delta)).expand(force=True))
    poly = sp.Poly(diff, u)
    assert poly.degree() <= 1
    expect = poly.coeff_monomial(u) * mbar + poly.coeff_monomial(1)
    return {"shift": sp.simplify(expect), "residual": sp.simplify(expect - (a - mbar) ** 2 / (2 * delta)),
            "mbar": mbar}


@lru_cache(maxsize=None)
def lambdified() -> dict:
    """NumPy functions of the closed forms: ``M(t, v)``, ``I(t, v)``, ``step_kl(delta, s)``, ``snr(tau)``."""
    ch = scalar_gaussian_channel()
    step = per_step_kl_gaussian()
    om = ou_map()
    return {
        "M": sp.lambdify((t, v), ch["M"], "numpy"),
        "I": sp.lambdify((t, v), ch["I"], "numpy"),
        "step_kl": sp.lambdify((delta, step["s"]), (delta * step["s"] - sp.log(1 + delta * step["s"])) / 2, "numpy"),
        "snr": sp.lambdify(tau_t, om["snr"], "numpy"),
        "scale": sp.lambdify(tau_t, om["scale"], "numpy"),
    }

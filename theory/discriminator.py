r"""Discriminator guidance, symbolically (Verine et al., arXiv 2503.16117; Kim et al., arXiv 2211.17091).

Time convention: OU forward time (:data:`theory.forward.OU`, :math:`g^2 = 2`).  Notation: data marginals
:math:`p_t`, model marginals :math:`\hat p_t` with exact score :math:`s_\theta = \nabla\log\hat p_t`, logit
:math:`d`, refined score :math:`s_\theta + \nabla d`.

What is derived here (each function returns SymPy expressions; the tests check they simplify to 0):

* :func:`bayes_logit`, :func:`refined_score_residual` -- the Bayes logit :math:`d^* = \log p_t - \log\hat p_t`
  makes the refined score exact (DG's Theorem 1 logic).
* :func:`conditional_target_residual`, :func:`dsm_constant` -- the DSM/ESM identity: the conditional
  score target averages to the marginal score, so the gradient-matching loss equals the Fisher form plus
  :math:`C_t = 1/\sigma_t^2 - J(p_t)` whatever the correction; :func:`dsm_minus_esm_polynomial` proves it for
  a polynomial correction with symbolic coefficients by exact Gaussian moments.
* :func:`kl_rate_residual`, :func:`girsanov_weight` -- the KL identity
  :math:`\frac{d}{dt}\mathrm{KL}(p_t\|\hat p_t) = -\frac{g^2}{2}E_{p_t}|\nabla\log p_t - \nabla\log\hat p_t|^2`
  (Gaussian case in closed form) and the Girsanov weight :math:`g^2/2 = 1`.
* :func:`ce_pointwise`, :func:`ce_gap_bound` -- the two-class pointwise CE is stationary at :math:`d^*` with
  curvature :math:`(p+\hat p)\sigma(d)\sigma(-d) \le (p+\hat p)/4`, hence CE gap :math:`\le\varepsilon^2/4`
  for :math:`|d - d^*|\le\varepsilon`.
* Gaussian case: :func:`gaussian_log_ratio` (quadratic in x), :func:`mse_linear_optimum`
  (:math:`\beta = (\mu_t-\hat\mu_t)/\hat v_t`), :func:`mse_refined_is_forward_marginal`,
  :func:`ce_stationarity_linear` (no closed form; equal variances reduce to the MSE optimum),
  :func:`quadratic_family_ce_stationary` (the quadratic family contains :math:`d^*`, where CE is stationary).
"""
from __future__ import annotations

import sympy as sp

from theory._validate import as_scalar, check_int, check_schedule, is_negative
from theory.forward import OU, VPSchedule, t

__all__ = [
    "x", "bayes_logit", "refined_score_residual", "conditional_target_residual", "dsm_constant",
    "dsm_minus_esm_polynomial", "kl_rate_residual", "girsanov_weight", "ce_pointwise", "ce_gap_bound",
    "gaussian_log_ratio", "mse_linear_optimum", "mse_refined_is_forward_marginal",
    "ce_stationarity_linear", "quadratic_family_ce_stationary", "gaussian_marginal", "gaussian_fisher_gap",
]

x = sp.Symbol("x", real=True)
mu, muh = sp.symbols("mu mu_hat", real=True)
v, vh = sp.symbols("v v_hat", positive=True)


def gaussian_marginal(mean0, var0, schedule: VPSchedule = OU):
    r"""``(mean_t, var_t)`` of :math:`N(m_0, v_0)` under the schedule: :math:`(\alpha_t m_0, \alpha_t^2 v_0 + \sigma_t^2)`."""
    check_schedule(schedule)
    mean0, var0 = as_scalar(mean0, "mean0"), as_scalar(var0, "var0")
    if is_negative(var0):
        raise ValueError(f"var0: must be >= 0, got {var0}")
    a = schedule.alpha()
    return a * mean0, a**2 * var0 + schedule.sigma2()


def _log_normal(xx, m, var):
    return -(xx - m) ** 2 / (2 * var) - sp.log(2 * sp.pi * var) / 2


def _check_pair(data, model) -> None:
    from theory.targets import SymbolicMixture

    for name, m in (("data", data), ("model", model)):
        if not isinstance(m, SymbolicMixture):
            raise TypeError(f"{name}: must be a SymbolicMixture, got {type(m).__name__}")


# -- Bayes logit ---------------------------------------------------------------------------------
def bayes_logit(data, model, xx=None) -> sp.Expr:
    r""":math:`d^* = \log p_t - \log\hat p_t` for two :class:`~theory.targets.SymbolicMixture` in d = 1."""
    _check_pair(data, model)
    if xx is not None:
        xx = as_scalar(xx, "xx")
    if data.d != 1 or model.d != 1:
        raise ValueError("data, model: one-dimensional mixtures required")
    d = data.log_density() - model.log_density().subs(model.x[0], data.x[0])
    return d if xx is None else d.subs(data.x[0], xx)


def refined_score_residual(data, model) -> sp.Expr:
    r""":math:`s_\theta + \partial_x d^* - \nabla\log p_t` (identically 0)."""
    _check_pair(data, model)
    xs = data.x[0]
    s_model = model.score()[0].subs(model.x[0], xs)
    return s_model + sp.diff(bayes_logit(data, model), xs) - data.score()[0]


# -- DSM / ESM -----------------------------------------------------------------------------------
def conditional_target_residual(schedule: VPSchedule = OU) -> sp.Expr:
    r""":math:`E[\nabla\log p(x_t|x_0)\mid x_t = x] - \nabla\log p_t(x)` for :math:`X_0\sim N(\mu, v)`:
    the target :math:`-(x-\alpha_t x_0)/\sigma_t^2` averaged with the Gaussian posterior mean of :math:`x_0`.
    Identically 0, which is what makes the DSM constant independent of the correction."""
    a, s2 = schedule.alpha(), schedule.sigma2()
    mt, vt = gaussian_marginal(mu, v, schedule)
    post_mean = mu + a * v / vt * (x - mt)
    return -(x - a * post_mean) / s2 - (-(x - mt) / vt)


def dsm_constant(schedule: VPSchedule = OU) -> sp.Expr:
    r""":math:`C_t = E|\nabla\log p(x_t|x_0)|^2 - E_{p_t}|\nabla\log p_t|^2 = 1/\sigma_t^2 - 1/v_t` for Gaussian data."""
    _, vt = gaussian_marginal(mu, v, schedule)
    return 1 / schedule.sigma2() - 1 / vt


def _gauss_expect(expr: sp.Expr, zs) -> sp.Expr:
    """E[expr] for a polynomial in independent standard normals ``zs`` (exact moments)."""
    poly = sp.Poly(sp.expand(expr), *zs)
    total = sp.Integer(0)
    for monom, coeff in poly.terms():
        m = sp.Integer(1)
        for k in monom:
            m *= 0 if k % 2 else sp.factorial2(k - 1)
        total += coeff * m
    return total


def dsm_minus_esm_polynomial(degree: int = 2, schedule: VPSchedule = OU) -> tuple[sp.Expr, list]:
    r"""DSM form minus Fisher (ESM) form for the correction :math:`c(x) = \sum_{k\le\text{degree}} c_k x^k`
    with symbolic :math:`c_k`, Gaussian data :math:`N(\mu, v)`, by exact Gaussian moments (the model score
    is absorbed in :math:`c`).  Returns ``(difference, coefficients)``; the difference is free of the
    :math:`c_k` and equals :func:`dsm_constant`."""
    if isinstance(degree, float):  # as before: a float is refused with a ValueError
        raise ValueError(f"degree: must be a non-negative integer, got {degree!r}")
    degree = check_int(degree, "degree", low=0)
    check_schedule(schedule)
    cs = list(sp.symbols(f"c0:{degree + 1}", real=True))
    z1, z2 = sp.symbols("z1 z2", real=True)
    a, s2 = schedule.alpha(), schedule.sigma2()
    sig = sp.sqrt(s2)
    x0 = mu + sp.sqrt(v) * z1
    xt = a * x0 + sig * z2
    corr = lambda xx: sum(c * xx**k for k, c in enumerate(cs))  # noqa: E731
    target = -z2 / sig                                             # -(x_t - alpha x_0)/sigma^2
    mt, vt = gaussian_marginal(mu, v, schedule)
    # x_t ~ N(mt, vt): write x_t = mt + sqrt(vt) z for the Fisher form
    zz = sp.Symbol("zz", real=True)
    xs = mt + sp.sqrt(vt) * zz
    dsm = _gauss_expect((target - corr(xt)) ** 2, [z1, z2])
    esm = _gauss_expect((-(xs - mt) / vt - corr(xs)) ** 2, [zz])
    return sp.simplify(dsm - esm), cs


# -- KL identity and Girsanov ---------------------------------------------------------------------
def girsanov_weight(schedule: VPSchedule = OU) -> sp.Expr:
    r""":math:`g(t)^2/2`, the weight of the score error in the path KL (1 for OU)."""
    check_schedule(schedule)
    return sp.simplify(schedule.diffusion2() / 2)


def kl_rate_residual(schedule: VPSchedule = OU) -> sp.Expr:
    r""":math:`\frac{d}{dt}\mathrm{KL}(p_t\|\hat p_t) + \frac{g^2}{2}E_{p_t}|\nabla\log p_t-\nabla\log\hat p_t|^2`
    for Gaussian :math:`p_0 = N(\mu, v)`, :math:`\hat p_0 = N(\hat\mu,\hat v)` (identically 0).  Integrating
    over [0, T] gives the base-model identity
    :math:`\mathrm{KL}(p_0\|\hat p_0) = \mathrm{KL}(p_T\|\hat p_T) + \int_0^T\frac{g^2}{2}E_{p_t}|\cdot|^2dt`."""
    m1, v1 = gaussian_marginal(mu, v, schedule)
    m2, v2 = gaussian_marginal(muh, vh, schedule)
    kl = (v1 / v2 + (m2 - m1) ** 2 / v2 - 1 + sp.log(v2 / v1)) / 2
    A = 1 / v2 - 1 / v1                 # s_p - s_q = A x + B
    B = m1 / v1 - m2 / v2
    fisher = A**2 * (v1 + m1**2) + 2 * A * B * m1 + B**2
    return sp.diff(kl, t) + girsanov_weight(schedule) * fisher


# -- cross-entropy ------------------------------------------------------------------------------
pp, qq = sp.symbols("p q", positive=True)
dd, ee = sp.symbols("d e", real=True)


def _softplus(z):
    return sp.log(1 + sp.exp(z))


def ce_pointwise(d=dd, p=pp, q=qq) -> sp.Expr:
    r"""Two-class pointwise cross-entropy :math:`\varphi(d) = p\,\mathrm{softplus}(-d) + q\,\mathrm{softplus}(d)`."""
    d, p, q = as_scalar(d, "d"), as_scalar(p, "p"), as_scalar(q, "q")
    return p * _softplus(-d) + q * _softplus(d)


def ce_gap_bound() -> dict:
    r"""The pieces of the bound CE gap :math:`\le\varepsilon^2/4`:

    ``stationary``: :math:`\varphi'(\log(p/q))` (= 0); ``curvature_residual``:
    :math:`\varphi''(d) - (p+q)\sigma(d)\sigma(-d)` (= 0); ``sigma_product_max``: :math:`\max_d\sigma(d)\sigma(-d)`
    (= 1/4); ``bound``: :math:`\tfrac12\cdot\tfrac14\cdot\int(p+\hat p)\,\varepsilon^2 = \varepsilon^2/4`."""
    phi = ce_pointwise()
    sig = lambda z: 1 / (1 + sp.exp(-z))  # noqa: E731
    stationary = sp.simplify(sp.diff(phi, dd).subs(dd, sp.log(pp / qq)))
    curvature_residual = sp.simplify(sp.diff(phi, dd, 2) - (pp + qq) * sig(dd) * sig(-dd))
    prod = sp.simplify(sig(dd) * sig(-dd))
    crit = sp.solve(sp.diff(prod, dd), dd)
    pmax = sp.simplify(max(prod.subs(dd, c) for c in crit))
    eps = sp.Symbol("epsilon", positive=True)
    total_mass = 2  # int p + int q over x
    return {"stationary": stationary, "curvature_residual": curvature_residual, "sigma_product_max": pmax,
            "bound": sp.Rational(1, 2) * pmax * total_mass * eps**2}


# -- Gaussian case -------------------------------------------------------------------------------
def gaussian_log_ratio(schedule: VPSchedule = OU) -> sp.Poly:
    r""":math:`d^* = \log N(x;\mu_t,v_t) - \log N(x;\hat\mu_t,\hat v_t)` as a polynomial in x (degree 2,
    degree 1 when :math:`v = \hat v`)."""
    m1, v1 = gaussian_marginal(mu, v, schedule)
    m2, v2 = gaussian_marginal(muh, vh, schedule)
    return sp.Poly(sp.expand(_log_normal(x, m1, v1) - _log_normal(x, m2, v2)), x)


def gaussian_fisher_gap(beta: sp.Expr | None = None, schedule: VPSchedule = OU) -> sp.Expr:
    r"""Refined-model path-KL integrand :math:`\frac{g^2}{2}E_{p_t}(\nabla\log p_t - s_\theta - \beta)^2` for
    Gaussian data/model and a linear-logit correction :math:`\beta` (default: a symbol), by exact Gaussian
    moments.  Its time integral plus :math:`\mathrm{KL}(p_T\|\hat p_T)` is the Girsanov path KL that bounds the
    refined SDE's endpoint KL (data processing)."""
    check_schedule(schedule)
    b = sp.Symbol("beta", real=True) if beta is None else as_scalar(beta, "beta")
    m1, v1 = gaussian_marginal(mu, v, schedule)
    m2, v2 = gaussian_marginal(muh, vh, schedule)
    z = sp.Symbol("z", real=True)
    xs = m1 + sp.sqrt(v1) * z
    r = -(xs - m1) / v1 + (xs - m2) / v2 - b
    return girsanov_weight(schedule) * _gauss_expect(r**2, [z])


def mse_linear_optimum(schedule: VPSchedule = OU) -> sp.Expr:
    r"""Minimiser over :math:`\beta` of :math:`E_{p_t}(\nabla\log p_t - s_\theta - \beta)^2`, solved symbolically:
    :math:`\beta^{MSE}(t) = (\mu_t - \hat\mu_t)/\hat v_t`."""
    m1, v1 = gaussian_marginal(mu, v, schedule)
    m2, v2 = gaussian_marginal(muh, vh, schedule)
    b = sp.Symbol("beta", real=True)
    A = 1 / v2 - 1 / v1
    B = m1 / v1 - m2 / v2
    loss = A**2 * (v1 + m1**2) + 2 * A * (B - b) * m1 + (B - b) ** 2
    sol = sp.solve(sp.diff(loss, b), b)
    return sp.simplify(sol[0])


def mse_refined_is_forward_marginal(schedule: VPSchedule = OU) -> sp.Expr:
    r"""Refined score :math:`-(x-\hat\mu_t)/\hat v_t + \beta^{MSE}` minus the score of the forward marginal of
    :math:`N(\mu,\hat v)` (identically 0): the MSE-optimal linear refinement is an exact score, so its
    endpoint is :math:`N(\mu,\hat v)` and the endpoint KL equals the path KL up to the terminal term."""
    m1, _ = gaussian_marginal(mu, v, schedule)
    m2, v2 = gaussian_marginal(muh, vh, schedule)
    mf, vf = gaussian_marginal(mu, vh, schedule)
    refined = -(x - m2) / v2 + mse_linear_optimum(schedule)
    return sp.simplify(refined - (-(x - mf) / vf))


def ce_stationarity_linear(schedule: VPSchedule = OU):
    r"""Stationarity equations of the CE over linear logits :math:`d = \beta x + c`:
    :math:`E_{p_t}[\sigma(-d)(x, 1)] = E_{\hat p_t}[\sigma(d)(x, 1)]` (integrands returned as expressions in x;
    there is no closed form unless :math:`v = \hat v`, where :math:`d^*` is itself linear)."""
    b, c = sp.symbols("beta c", real=True)
    d = b * x + c
    sig = lambda z: 1 / (1 + sp.exp(-z))  # noqa: E731
    m1, v1 = gaussian_marginal(mu, v, schedule)
    m2, v2 = gaussian_marginal(muh, vh, schedule)
    p = sp.exp(_log_normal(x, m1, v1))
    q = sp.exp(_log_normal(x, m2, v2))
    return [(-p * sig(-d) + q * sig(d)) * f for f in (x, sp.Integer(1))], (b, c)


def quadratic_family_ce_stationary(schedule: VPSchedule = OU) -> sp.Expr:
    r"""Pointwise CE derivative :math:`-p\,\sigma(-d^*) + \hat p\,\sigma(d^*)` at the quadratic Bayes logit
    (identically 0), so every feature's CE gradient vanishes at :math:`d^*`: the quadratic family contains the
    CE optimum, and its gradient is exact (both objectives give KL = 0 up to the terminal term)."""
    m1, v1 = gaussian_marginal(mu, v, schedule)
    m2, v2 = gaussian_marginal(muh, vh, schedule)
    lp, lq = _log_normal(x, m1, v1), _log_normal(x, m2, v2)
    dstar = lp - lq
    # p sigma(-d*) = p q/(p+q) = q sigma(d*); compare in log space to let simplify close it
    lhs = lp - sp.log(1 + sp.exp(dstar))
    rhs = lq - sp.log(1 + sp.exp(-dstar))
    return sp.simplify(sp.expand_log(sp.exp(lhs - rhs), force=True) - 1)

"""Symbolic identities of the derived one-step samplers (theory/integrators.py).

Equality is proved with ``simplify`` after writing every exponential through positive parameters
(:func:`positive_params`: ``exp(2s) = 1 + A``, ``exp(2h) = 1 + B``, ``exp(2 h_p) = 1 + C`` with
``A, B, C > 0``), so that SymPy knows every square-root argument is positive.  Where ``simplify``
is not enough, :func:`same` falls back to random rational points at 40 digits, and says so.
"""
from __future__ import annotations

import random

import pytest
import sympy as sp

import theory.integrators as I
from theory.forward import GENERAL, OU, s, t
from theory.integrators import (
    UPDATE_NAMES,
    Update,
    all_updates,
    ddim,
    ddim_eta,
    ddpm,
    derivation_steps,
    dpm_solver_1,
    dpm_solver_2,
    dpm_solver_2_exact_linear,
    ei_ode,
    ei_sde,
    ei_sde_code,
    ei_sde_code_noise_gap,
    eta,
    euler,
    euler_maruyama,
    get_update,
    guidance_gap,
    h,
    posterior_gaussian,
    t_prev,
)

A, B, C = sp.symbols("A B C", positive=True)
hp = sp.Symbol("hp", positive=True)
x_t, q, z = I.x_t, I.q, I.z


def positive_params(e: sp.Expr) -> sp.Expr:
    """t = s + h, t_prev = t + hp; exp(a s + b h + c hp) = (1+A)^(a/2) (1+B)^(b/2) (1+C)^(c/2)."""
    e = sp.sympify(e).rewrite(sp.exp).subs(t_prev, s + h + hp).subs(t, s + h)  # sinh -> exp

    def mono(arg: sp.Expr) -> sp.Expr:
        arg = sp.expand(arg)
        a, b, c = arg.coeff(s), arg.coeff(h), arg.coeff(hp)
        rest = sp.expand(arg - a * s - b * h - c * hp)
        assert not rest.free_symbols, arg
        return sp.exp(rest) * (1 + A) ** (a / 2) * (1 + B) ** (b / 2) * (1 + C) ** (c / 2)

    e = e.replace(sp.exp, mono)
    # factor radicands so that sqrt of a product of positive factors splits
    return e.replace(
        lambda x: x.is_Pow and x.exp.is_Rational and not x.exp.is_integer,
        lambda x: sp.factor(x.base) ** x.exp,
    )


def symbolic_zero(e: sp.Expr) -> bool:
    return sp.simplify(positive_params(e)) == 0


def numeric_zero(e: sp.Expr, n: int = 6, digits: int = 40) -> bool:
    """|e| < 1e-30 at random rational points with 0 < s < t < t_prev, eta in [0, 1]."""
    rng = random.Random(7)
    for _ in range(n):
        ss = sp.Rational(rng.randint(1, 2000), 1000)
        tt = ss + sp.Rational(rng.randint(1, 2000), 1000)
        pt = {s: ss, t: tt, t_prev: tt + sp.Rational(rng.randint(1, 2000), 1000),
              eta: sp.Rational(rng.randint(0, 100), 100)}
        # any other symbol (state, frozen quantity, w, g, ...) gets a random rational value
        others = sorted(e.free_symbols - set(pt), key=lambda x: x.name)
        pt.update({x: sp.Rational(rng.randint(-1000, 1000), 500) for x in others})
        if abs(sp.N(e.subs(pt), digits)) > sp.Float("1e-30"):
            return False
    return True


def same(a: sp.Expr, b: sp.Expr) -> str:
    """'symbolic' if a - b simplifies to 0, 'numeric' if only the 40-digit check passes, else ''."""
    d = a - b
    if symbolic_zero(d):
        return "symbolic"
    if numeric_zero(d):
        return "numeric"
    return ""


# ------------------------------------------------------------------------------------------
# negative controls: the comparison helpers can fail
# ------------------------------------------------------------------------------------------
def test_helpers_detect_a_dropped_alpha():
    u = ddim()
    wrong = u.c_q.subs(sp.exp(-s), 1)  # alpha_s dropped
    assert wrong != u.c_q
    assert same(u.c_q, wrong) == ""
    assert not numeric_zero(u.c_q - wrong)
    # and a dropped alpha_t (the second occurrence)
    wrong_t = sp.exp(-s) - sp.sqrt(OU.sigma2(s)) / sp.sqrt(OU.sigma2(t))
    assert same(u.c_q, wrong_t) == ""


# ------------------------------------------------------------------------------------------
# DDIM
# ------------------------------------------------------------------------------------------
sig = lambda tt: sp.sqrt(OU.sigma2(tt))  # noqa: E731
alp = OU.alpha


def test_ddim_closed_form():
    u = ddim()
    assert same(u.c_x, sig(s) / sig(t)) == "symbolic"
    assert same(u.c_q, alp(s) - alp(t) * sig(s) / sig(t)) == "symbolic"
    assert not u.stochastic and u.frozen == "denoiser"


def test_ddim_general_schedule_closed_form():
    u = ddim(GENERAL)
    a, sg = GENERAL.alpha, lambda tt: sp.sqrt(GENERAL.sigma2(tt))
    assert sp.simplify(u.c_x - sg(s) / sg(t)) == 0
    assert sp.simplify(u.c_q - (a(s) - a(t) * sg(s) / sg(t))) == 0


def test_ddim_direct_forward_time_integral_agrees():
    # independent route: variation of constants in t (integrating factor from sympy.integrate)
    assert same(I._ddim_direct_t_integral(), ddim().c_q) == "symbolic"


def test_log_snr_step_refuses_a_wrong_factor_or_rate():
    # negative controls of the step shared by DDIM and DPM-Solver-1
    xf = sp.Function("x")(t)
    ddim_score = (GENERAL.alpha(t) * I.q - xf) / GENERAL.sigma2(t)
    with pytest.raises(AssertionError, match="integrating factor"):
        I._log_snr_step(ddim_score, xf, "alpha", sp.exp(I.lam))  # 1/alpha leaves x in the ODE
    with pytest.raises(AssertionError, match="d ell"):
        I._log_snr_step(ddim_score, xf, "sigma", -sp.exp(-I.lam))  # DPM-Solver-1's rate


def test_ddim_is_exact_for_constant_denoiser():
    # with D constant the data-prediction ODE is linear: the DDIM map must solve the PF-ODE
    # dx/dt = -x - (alpha_t D - x)/sigma_t^2 exactly, as a function of s (the endpoint).
    u = ddim()
    xs = u.step(x_t, q)
    pf_rhs = -xs - (alp(s) * q - xs) / OU.sigma2(s)  # forward PF-ODE at time s
    # simplify does not close this one (nested radicals after differentiation): 40-digit check
    assert same(sp.diff(xs, s), pf_rhs) in ("symbolic", "numeric")
    assert sp.simplify(sp.limit(xs.subs(s, t - h), h, 0) - x_t) == 0


# ------------------------------------------------------------------------------------------
# DDPM and the eta family
# ------------------------------------------------------------------------------------------
def test_posterior_by_covariance_formula():
    # independent derivation: Gaussian conditioning with the joint covariance of (X_s, X_t) | x_0
    cov = alp(t) / alp(s) * OU.sigma2(s)
    mean = alp(s) * I.x_0 + cov / OU.sigma2(t) * (x_t - alp(t) * I.x_0)
    var = OU.sigma2(s) - cov**2 / OU.sigma2(t)
    u = ddpm()
    assert same(u.c_x, sp.expand(mean).coeff(x_t)) == "symbolic"
    assert same(u.c_q, sp.expand(mean).coeff(I.x_0)) == "symbolic"
    assert same(u.c_z**2, var) == "symbolic"


def test_posterior_abstract_form():
    p = posterior_gaussian()
    a_s, a_t, a_ts, sg_s, sg_t, sg_ts = I.a_s, I.a_t, I.a_ts, I.sg_s, I.sg_t, I.sg_ts
    assert sp.simplify(p["mean_cx"] - a_ts * sg_s**2 / sg_t**2) == 0
    assert sp.simplify(p["mean_cq"] - a_s * sg_ts**2 / sg_t**2) == 0
    assert sp.simplify(p["variance_vp"] - sg_s**2 * sg_ts**2 / sg_t**2) == 0


def test_ddpm_closed_form():
    u = ddpm()
    s2ts = 1 - sp.exp(-2 * (t - s))
    assert same(u.c_x, sp.exp(-(t - s)) * OU.sigma2(s) / OU.sigma2(t)) == "symbolic"
    assert same(u.c_q, alp(s) * s2ts / OU.sigma2(t)) == "symbolic"
    assert same(u.c_z, sig(s) * sp.sqrt(s2ts) / sig(t)) == "symbolic"


@pytest.mark.parametrize("schedule", [OU, GENERAL], ids=["ou", "general"])
def test_eta_one_is_ddpm(schedule):
    e, d = ddim_eta(schedule), ddpm(schedule)
    if schedule is OU:
        assert same(e.c_x.subs(eta, 1), d.c_x) == "symbolic"
        assert same(e.c_q.subs(eta, 1), d.c_q) == "symbolic"
        assert same(e.c_z.subs(eta, 1) ** 2, d.c_z**2) == "symbolic"
    else:  # any VP schedule: variance identically; means at random points of L = -t - t^2
        assert sp.simplify(e.c_z.subs(eta, 1) ** 2 - d.c_z**2) == 0
        L = GENERAL.log_alpha.func
        for c in ("c_x", "c_q"):
            diff = (getattr(e, c).subs(eta, 1) - getattr(d, c)).replace(L, lambda a: -a - a**2).doit()
            assert numeric_zero(diff)


@pytest.mark.parametrize("schedule", [OU, GENERAL], ids=["ou", "general"])
def test_eta_zero_is_ddim(schedule):
    e, d = ddim_eta(schedule), ddim(schedule)
    assert e.c_z.subs(eta, 0) == 0
    assert sp.simplify(positive_params(e.c_x.subs(eta, 0) - d.c_x)) == 0
    assert sp.simplify(positive_params(e.c_q.subs(eta, 0) - d.c_q)) == 0


def test_eta_family_marginal_variance_is_preserved():
    # x_s = alpha_s D + sqrt(sigma_s^2 - c^2) eps_hat + c z: with eps_hat, z independent N(0,1),
    # the noise variance is sigma_s^2 for every eta (the DDIM construction).
    e = I._eta_abstract()
    upd = e["update"]
    noise_var = (sp.expand(upd).coeff(x_t) * I.sg_t) ** 2 + sp.expand(upd).coeff(z) ** 2
    assert sp.simplify(noise_var - I.sg_s**2) == 0


# ------------------------------------------------------------------------------------------
# DPM-Solver
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", [OU, GENERAL], ids=["ou", "general"])
def test_dpm_solver_1_equals_ddim(schedule):
    u, d = dpm_solver_1(schedule), ddim(schedule)
    eps = (x_t - schedule.alpha(t) * q) / sp.sqrt(schedule.sigma2(t))
    step = sp.expand(u.step(x_t, eps))
    if schedule is OU:
        assert same(step.coeff(x_t), d.c_x) == "symbolic"
        assert same(step.coeff(q), d.c_q) == "symbolic"
    else:
        assert sp.simplify(step.coeff(x_t) - d.c_x) == 0
        assert sp.simplify(step.coeff(q) - d.c_q) == 0


def test_dpm_solver_2_reduces_to_ddim():
    u, d = dpm_solver_2(), ddim()
    assert same(u.c_x, d.c_x) == "symbolic"
    # consistency: a constant denoiser (q = q_prev) is integrated exactly, as by DDIM
    assert same(u.c_q + u.c_q_prev, d.c_q) == "symbolic"
    # first step / t_prev -> infinity: the slope weight vanishes
    dd = I._dpm2_derivation()
    assert sp.limit(dd["coef_q_prev"], I.h_ell_prev, sp.oo) == 0
    assert sp.simplify(sp.limit(dd["coef_q"], I.h_ell_prev, sp.oo) - (1 - sp.exp(-I.h_ell))) == 0


def test_dpm_solver_2_approximation_is_third_order():
    dd = I._dpm2_derivation()
    assert sp.simplify(dd["approx_gap_series"] - I.h_ell**3 / 12) == 0
    cq, cqp = dpm_solver_2_exact_linear()
    u = dpm_solver_2()
    assert same(cq + cqp, u.c_q + u.c_q_prev) == "symbolic"  # same constant part


def test_heun_step_is_ddim_plus_half_phi0_correction_and_second_order():
    """Heun's step in the VE variables (§4e): its predictor is DDIM, its weights psi_0 and phi_0/2 (asserted inside
    the derivation), the last step to sigma = 0 is Euler (D_t), and on a Gaussian its gain differs from the exact
    flow's by S_0 v k^3/(2 (S_0^2 + v)^3) + O(k^4) (order 2), the Euler predictor's by -v k^2/(2 (S_0^2 + v)^2)."""
    d = I._heun_derivation()
    assert d["ve_ode"] == 0 and d["final_step"] == I.q
    k, v = sp.Symbol("k", positive=True), sp.Symbol("v", positive=True)
    S0 = sp.Symbol("S_0", real=True)
    loc = d["local_error_series"]
    assert sp.simplify(loc["heun"] - S0 * v * k**3 / (2 * (S0**2 + v) ** 3)) == 0
    for name, sign in (("euler", -1), ("endpoint", 1)):
        assert sp.simplify(loc[name].coeff(k, 2) - sign * v / (2 * (S0**2 + v) ** 2)) == 0
        assert loc[name].coeff(k, 1) == 0 and loc[name].coeff(k, 0) == 0
    assert sp.simplify(I.heun_weights()[1] - (sp.exp(I.h_ell) - 1) / 2) == 0

def test_dpm_solver_2_exact_for_linear_denoiser():
    # D(ell) = a + b ell: the exact-linear coefficients reproduce the exact flow
    a0, b0 = sp.symbols("a0 b0", real=True)
    lam_t, lam_s, lam_p = sp.symbols("l_t l_s l_p", real=True)
    exact = sp.integrate(sp.exp(I.lam) * (a0 + b0 * I.lam), (I.lam, lam_t, lam_s)) * sp.exp(-lam_s)
    ex = I._dpm2_derivation()["exact"]
    Dt, Dp = a0 + b0 * lam_t, a0 + b0 * lam_p
    approx = (ex["c_D"] * Dt + ex["c_slope"] * (Dt - Dp) / I.h_ell_prev).subs(
        {I.h_ell: lam_s - lam_t, I.h_ell_prev: lam_t - lam_p}
    )
    assert sp.simplify(sp.expand(exact - approx, power_exp=True)) == 0


# ------------------------------------------------------------------------------------------
# score-frozen exponential integrators and Euler
# ------------------------------------------------------------------------------------------
def test_ei_ode_solves_frozen_ode():
    u = ei_ode()
    y = u.step(x_t, q).subs(s, t - I.tau)
    assert sp.simplify(sp.diff(y, I.tau) - (y + q)) == 0
    assert sp.simplify(y.subs(I.tau, 0) - x_t) == 0
    assert sp.simplify(u.c_x - sp.exp(t - s)) == 0
    assert sp.simplify(u.c_q - (sp.exp(t - s) - 1)) == 0


def test_ei_sde_mean_and_variance():
    u = ei_sde()
    m = (u.c_x * x_t + u.c_q * q).subs(s, t - I.tau)
    assert sp.simplify(sp.diff(m, I.tau) - (m + 2 * q)) == 0
    v = (u.c_z**2).subs(s, t - I.tau)
    assert sp.simplify(sp.diff(v, I.tau) - (2 * v + 2)) == 0  # d Var = 2 Var + g^2, g^2 = 2
    assert sp.simplify(v.subs(I.tau, 0)) == 0
    assert sp.simplify(u.c_z**2 - (sp.exp(2 * (t - s)) - 1)) == 0


def test_ei_sde_code_noise_gap():
    gap = ei_sde_code_noise_gap()
    assert sp.simplify(gap["variance_gap"] - (sp.exp(h) - 1) ** 2) == 0
    assert gap["variance_gap_series"].removeO() == h**2 + h**3
    lead = gap["std_gap_series"].removeO().as_ordered_terms()
    assert sp.sqrt(2) * h ** sp.Rational(3, 2) / 4 in lead
    # first-order agreement of the variances, disagreement at second order
    ex, co = gap["variance_exact_series"].removeO(), gap["variance_code_series"].removeO()
    assert ex.coeff(h, 1) == co.coeff(h, 1) == 2
    assert ex.coeff(h, 2) != co.coeff(h, 2)
    assert ei_sde_code().c_q == ei_sde().c_q and ei_sde_code().c_x == ei_sde().c_x


def test_euler_is_first_order_taylor_of_ei():
    for ex, eu in ((ei_ode(), euler()), (ei_sde(), euler_maruyama())):
        for c in ("c_x", "c_q"):
            ser = sp.series(getattr(ex, c).subs(t, s + h), h, 0, 2).removeO()
            assert sp.simplify(ser - getattr(eu, c).subs(t, s + h)) == 0
        assert not eu.exponential and ex.exponential
    assert sp.simplify(euler_maruyama().c_z ** 2 - 2 * (t - s)) == 0


def test_score_frozen_differs_from_data_frozen():
    # Rewrite DDIM through the score, D = (x + sigma_t^2 score)/alpha_t: the x_t coefficient
    # becomes alpha_s/alpha_t = e^h, the same as EI, but the score coefficient differs.
    d, ei = ddim(), ei_ode()
    sc = sp.Symbol("score", real=True)
    step = sp.expand(d.step(x_t, (x_t + OU.sigma2(t) * sc) / alp(t)))
    assert same(step.coeff(x_t), ei.c_x) == "symbolic"
    ddim_score = step.coeff(sc)  # = sigma_t (e^h sigma_t - sigma_s)
    assert same(ddim_score, sig(t) * (sp.exp(t - s) * sig(t) - sig(s))) == "symbolic"
    assert same(ddim_score, ei.c_q) == ""
    # ... they agree to first order in h (both h + O(h^2)) and differ at second order
    ser_d = sp.series(ddim_score.subs(t, s + h), h, 0, 3).removeO()
    ser_e = sp.series(ei.c_q.subs(t, s + h), h, 0, 3).removeO()
    assert sp.simplify(ser_d.coeff(h, 1) - 1) == 0 and ser_e.coeff(h, 1) == 1
    assert sp.simplify(ser_d.coeff(h, 2) - ser_e.coeff(h, 2)) != 0


# ------------------------------------------------------------------------------------------
# guidance: mean form vs score form
# ------------------------------------------------------------------------------------------
def test_guidance_gap_shifts_and_difference():
    gg = guidance_gap()
    w, g = I.w, I.g
    s2ts = 1 - sp.exp(-2 * (t - s))
    assert same(gg["score_shift"], sp.exp(t - s) * s2ts * w * g) == "symbolic"
    assert same(gg["mean_shift"], OU.sigma2(s) * s2ts / OU.sigma2(t) * w * g) == "symbolic"
    want = s2ts * (sp.exp(t - s) - OU.sigma2(s) / OU.sigma2(t)) * w * g
    assert same(gg["difference"], want) == "symbolic"
    a = gg["difference_abstract"]
    assert sp.simplify(a - I.sg_ts**2 * (I.a_s / I.a_t - I.sg_s**2 / I.sg_t**2) * w * g) == 0


def test_guidance_gap_series():
    gg = guidance_gap()
    w, g = I.w, I.g
    # t -> s: O(h^2) with coefficient 2 coth(s) (blows up like 2 h^2 / s as s -> 0)
    assert sp.simplify(gg["series_h_leading"] - 2 * h**2 * w * g * sp.cosh(s) / sp.sinh(s)) == 0
    # t -> 0 with s = theta t: relative gap does not vanish: 2 (1 - theta)^2 t w g
    assert sp.simplify(gg["series_t0"] - 2 * (1 - I.theta) ** 2 * t * w * g) == 0
    # the difference is positive (score form moves further) at sample points
    for tt, ss in ((1.0, 0.5), (0.01, 0.001), (5.0, 4.9)):
        assert gg["difference"].subs({t: tt, s: ss, w: 1, g: 1}).evalf() > 0


# ------------------------------------------------------------------------------------------
# registry and derivation steps
# ------------------------------------------------------------------------------------------
def test_registry():
    ups = all_updates()
    assert UPDATE_NAMES == ("ddim", "ddpm", "ddim_eta", "dpm_solver_1", "dpm_solver_2", "ei_ode", "ei_sde",
                            "ei_sde_code", "euler", "euler_maruyama")  # the order of the generated module
    assert [u.name for u in ups] == list(UPDATE_NAMES)
    assert all(isinstance(u, Update) for u in ups)
    for u in ups:
        assert {x for l, e in u.coefficients() for x in e.free_symbols} <= set(u.args)
        labels = [l for l, _ in u.coefficients()]
        assert labels[:2] == ["c_x", "c_q"]
        assert ("c_z" in labels) == u.stochastic
    assert get_update("ddpm").stochastic and not get_update("ddim").stochastic
    with pytest.raises(ValueError, match="name"):
        get_update("rk4")


@pytest.mark.parametrize("name", list(UPDATE_NAMES) + ["posterior", "guidance_gap"])
def test_derivation_steps_print_latex(name):
    steps = derivation_steps(name)
    assert len(steps) >= 3
    for label, expr in steps:
        assert isinstance(label, str) and label
        assert sp.latex(expr)


def test_derivation_steps_unknown_name():
    with pytest.raises(ValueError, match="name"):
        derivation_steps("heun")


def test_lms_coefficients_are_lagrange_integrals_of_order_p():
    """diffusers' linear multistep step (§4f): order p's coefficients are the exact integrals of the Lagrange basis
    on the last p sigmas (asserted inside the derivation: equal to the signed positive form, exact on tau^q for
    q < p, first missed power of degree p + 1); order 1 is Euler (-k), order 2 the variable-step Adams-Bashforth
    weights, and every order's weights sum to -k."""
    d = I._lms_derivation()
    k, g1 = I.lms_k, I.lms_g1
    assert d["coeffs"][1] == (-k,)
    assert sp.simplify(d["coeffs"][2][0] + k + k**2 / (2 * g1)) == 0 and sp.simplify(d["coeffs"][2][1] - k**2 / (2 * g1)) == 0
    for p in range(1, I.LMS_MAX_ORDER + 1):
        assert sp.simplify(sum(d["coeffs"][p]) + k) == 0
        assert all(d["exactness"].values()) and d["local_error_series"][p] != 0
    assert len(I.lms_weights()) == 10


def test_deis_weights_are_log_rho_lagrange_integrals_of_order_p():
    """diffusers' DEIS step (§4g): the weights are the exact integrals over rho of the Lagrange basis in log(rho)
    (asserted inside the derivation: equal to -rho_s W, to their sign-definite phi combinations, exact on
    e^{h-r} r^q for q < p, local error from h^(p+1)); order 1 is DPM-Solver-1 and order 2 DPM-Solver-2M (heun);
    every order's weights sum to phi_0 (a constant noise prediction is integrated exactly)."""
    d = I._deis_derivation()
    h, hp, hp2 = I.h_ell, I.h_ell_prev, I.h_ell_prev2
    assert all(d["rho_form"].values()) and all(d["exactness"].values())
    for p in range(1, I.DEIS_MAX_ORDER + 1):
        assert sp.simplify(sum(d["weights"][p]) - I.phi(0)) == 0
        series = d["local_error_series"][p]
        assert all(series.coeff(h, k) == 0 for k in range(p + 1)) and series.coeff(h, p + 1) != 0
    assert sp.simplify(d["weights"][2][1] + I.phi(1) / hp) == 0
    assert d["phi_coeffs"][3][2] == (0, hp / (hp2 * (hp + hp2)), 2 / (hp2 * (hp + hp2)))
    assert len(I.deis_weights()) == 6


def test_unipc_corrector_is_the_quadratic_integral_and_predictor_2m():
    """UniPC (§4h, bh2): the order-2 corrector's solved order conditions equal the exact integral of the quadratic
    through D_1, D_0, D_t (asserted inside the derivation, with UniP-2 = DPM-Solver++(2M)); the order-1 corrector's
    psi_0/2 differs from the exact psi_1/h by h^2/12; local errors from h^3 (order 1) and h^4 (order 2); the
    corrector-2 weights sum to psi_0 (a constant D is integrated exactly)."""
    d = I._unipc_derivation()
    h = I.h_ell
    assert sp.simplify(sum(d["corrector2"]) - I.psi(0)) == 0
    assert sp.simplify(d["gap_c1_series"] - (h**2 / 12 - h**3 / 24)) == 0
    for order, first in ((1, 3), (2, 4)):
        series = d["local_error_series"][order]
        assert all(sp.simplify(series.coeff(h, k)) == 0 for k in range(first)) and series.coeff(h, first) != 0
    assert len(I.unipc_corrector_weights()) == 4


def test_dpm3s_is_the_quadratic_through_the_three_calls_and_midpoint_needs_r0_two_thirds():
    """DPM-Solver++(3S) (§4i): heun's weights are psi_0, psi_1, 2 psi_2 on D_{s2}, a, b of the quadratic through the
    three calls (asserted inside the derivation, with the sign-definite node weights), its quadrature error from h^4
    for a cubic D; the midpoint's (the line through s2 and s0) from h^3 with the factor c_2 (r_0/2 - 1/3),
    r_0 = rho_1 + gamma, which vanishes at r_0 = 2/3 and leaves h^4; heun's weight of the first intermediate call is
    h (r_0/2 - 1/3)/(rho_1 gamma) + O(h^2), so its DDIM state's O(h^2) error costs O(h^3) unless r_0 = 2/3."""
    d = I._dpm3s_derivation()
    h = I.h_ell
    c2 = sp.Symbol("c2", real=True)
    rho1, gam = sp.symbols("rho_1 gamma", positive=True)
    heun, mid = d["local_error_series"]["heun"], d["local_error_series"]["midpoint"]
    assert all(sp.simplify(heun.coeff(h, k)) == 0 for k in range(4)) and heun.coeff(h, 4) != 0
    assert all(sp.simplify(mid.coeff(h, k)) == 0 for k in range(3))
    assert sp.simplify(mid.coeff(h, 3) - c2 * (rho1 + gam - sp.Rational(2, 3)) / 2) == 0
    assert sp.simplify(mid.coeff(h, 3).subs(gam, sp.Rational(2, 3) - rho1)) == 0
    w1 = d["s1_weight_series"]
    assert sp.simplify(w1.coeff(h, 0)) == 0
    assert sp.simplify(w1.coeff(h, 1) - (rho1 + gam - sp.Rational(2, 3)) / (2 * rho1 * gam)) == 0
    assert len(I.dpm_solver_3s_weights()) == 8


def test_dpm3_eps_is_the_quadratic_noise_interpolant_and_the_halved_weight_second_order():
    """DPM-Solver-3M in the noise form (§4j): the weights of eps_t, delta_1, delta_2 are phi_0, phi_1,
    2 phi_2 + h_p phi_1 (asserted inside the derivation against sympy.integrate of e^{h-u} times the Newton
    interpolant), its local error for a cubic eps starts at h^4 with the coefficient
    -c_3 (30 rho_1^2 + 30 rho_1 rho_2 + 40 rho_1 + 20 rho_2 + 15)/60; with the phi_2 part of the delta_2 weight
    halved (diffusers' pairing) it starts at -c_2 h^3/6: exact only for linear eps, global order 2."""
    d = I._dpm3_eps_derivation()
    h = I.h_ell
    c2, c3 = sp.symbols("c2 c3", real=True)
    r1, r2 = sp.symbols("rho_1 rho_2", positive=True)
    der, hal = d["local_error_series"]["derived"], d["local_error_series"]["halved"]
    assert all(sp.simplify(der.coeff(h, k)) == 0 for k in range(4))
    assert sp.simplify(der.coeff(h, 4) + c3 * (30 * r1**2 + 30 * r1 * r2 + 40 * r1 + 20 * r2 + 15) / 60) == 0
    assert all(sp.simplify(hal.coeff(h, k)) == 0 for k in range(3))
    assert sp.simplify(hal.coeff(h, 3) + c2 / 6) == 0
    assert sp.simplify(d["weights_phi"][2] - d["halved_weight"] - I.phi(2)) == 0
    assert sp.simplify(d["rate"] + sp.exp(-sp.Symbol("ell", real=True))) == 0
    assert len(I.dpm_solver_3_eps_weights()) == 3

"""The forward process: symbolic identities and the float64 coefficients."""
import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from numerics import schedule as nsch
from theory import forward as fw


def test_fokker_planck_any_schedule():
    """The Gaussian marginal solves Fokker-Planck for log alpha_t = L(t), an arbitrary function."""
    m0, v0 = sp.symbols("m0 v0", positive=True)
    r = fw.fokker_planck_residual(fw.GENERAL, fw.gaussian_marginal_density(fw.GENERAL, m0, v0))
    assert sp.simplify(sp.together(sp.expand(r))) == 0


def test_fokker_planck_detects_wrong_variance():
    """Negative control: sigma_t^2 replaced by 1 - alpha_t (a dropped square) leaves a non-zero residual."""
    m0, v0 = sp.symbols("m0 v0", positive=True)
    a = fw.OU.alpha()
    wrong_var = a**2 * v0 + 1 - a
    p = sp.exp(-((fw.x - a * m0) ** 2) / (2 * wrong_var)) / sp.sqrt(2 * sp.pi * wrong_var)
    assert sp.simplify(fw.fokker_planck_residual(fw.OU, p)) != 0


@pytest.mark.parametrize("sched", [fw.linear_schedule(sp.Rational(1, 10), 20), fw.cosine_schedule(sp.Rational(8, 1000))],
                         ids=["linear", "cosine"])
def test_concrete_schedules_are_instances_of_general(sched):
    """beta = -2 d/dt log alpha and the FP residual vanishes at random points (40 digits)."""
    m0, v0 = sp.Rational(3, 7), sp.Rational(5, 4)
    r = fw.fokker_planck_residual(sched, fw.gaussian_marginal_density(sched, m0, v0))
    rng = np.random.default_rng(0)
    for _ in range(5):
        pt = {fw.t: sp.Rational(int(rng.integers(1, 90)), 100), fw.x: sp.Rational(int(rng.integers(-300, 300)), 100)}
        assert abs(sp.N(r.subs(pt), 40)) < sp.Float(10) ** -30


def test_transition_variance_identity():
    """sigma^2_{t|s} = 1 - alpha_{t|s}^2 for every VP schedule."""
    L = fw.GENERAL
    assert sp.simplify(L.sigma2_ts() - (1 - L.alpha_ts() ** 2)) == 0


def test_ou_closed_forms():
    ou = fw.OU
    assert sp.simplify(ou.alpha() - sp.exp(-fw.t)) == 0
    assert sp.simplify(ou.beta() - 2) == 0
    assert sp.simplify(ou.sigma2_ts() - (1 - sp.exp(-2 * (fw.t - fw.s)))) == 0


@pytest.mark.parametrize("t", [1e-300, 1e-12, 1e-8, 1e-3, 0.5, 3.0, 50.0])
def test_numeric_coefficients_match_sympy(t):
    """The float64 alpha_t, sigma_t^2, log-SNR equal the SymPy OU expressions (mpmath, 50 digits) to 4u."""
    f_alpha = sp.lambdify(fw.t, fw.OU.alpha(), "mpmath")
    f_sig = sp.lambdify(fw.t, fw.OU.sigma2(), "mpmath")
    f_lam = sp.lambdify(fw.t, fw.OU.logsnr(), "mpmath")
    # the SymPy form 1 - exp(-2t) cancels ~log10(1/t) digits, so the reference needs that many extra
    with mp.workdps(60 + int(max(0.0, -np.log10(t)))):
        T = mp.mpf(t)
        for num, ref in [(nsch.alpha_t(t), f_alpha(T)), (nsch.sigma2_t(t), f_sig(T)), (nsch.logsnr_t(t), f_lam(T))]:
            # tolerance: each is one or two correctly-rounded libm calls -> a few ulps
            assert abs(mp.mpf(float(num)) - ref) <= 4 * 2.0**-53 * abs(ref)


def test_naive_sigma2_fails_near_zero():
    """Negative control for the expm1 form: 1 - exp(-2t) at t = 1e-12 is off by far more than 4u."""
    t = 1e-12
    naive = 1 - np.exp(-2 * t)
    assert abs(naive - nsch.sigma2_t(t)) / nsch.sigma2_t(t) > 1e-6


def test_logsnr_inverse():
    lam = np.linspace(-20, 30, 101)
    assert np.allclose(nsch.logsnr_t(nsch.t_of_logsnr(lam)), lam, rtol=0, atol=1e-12)

"""Closed form of the biased guided Euler-Maruyama chain (numerics/papers/ce_guidance/discretisation_exact.py)
against the package's exact_law and an independent 30-digit mpmath recursion."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from numerics.constants import UNIT_ROUNDOFF as U
from numerics.divergences import gaussian_kl
from numerics.mixture import GaussianMixture
from numerics.papers.ce_guidance.discretisation_exact import (bias_excess, bias_quadratic_coefficient,
                                                              closed_form_rounding, em_bias_kl, em_bias_law,
                                                              expm1_minus_x, law_rounding_bound,
                                                              leading_h2_coefficient, paper_form_bound, phi,
                                                              plateau_coefficient)
from numerics.references.exact_gaussian import exact_law


def _mp_chain(T, t_min, N, mu, b, dps=30):
    """Independent reference: the scalar recursions m' = (1-h) m + 2h e^{-t_k} mu_i + 2h b_i, v' = (1-h)^2 v + 2h,
    stepped N times in mpmath, then the Gaussian KL of N(e^{-t_min} mu, I) to N(m, v I)."""
    with mpmath.workdps(dps):
        T, t_min = mpmath.mpf(T), mpmath.mpf(t_min)
        h = (T - t_min) / N
        mu = [mpmath.mpf(float(x)) for x in mu]
        b = [mpmath.mpf(float(x)) for x in b]
        m = [mpmath.exp(-T) * x for x in mu]
        v = mpmath.mpf(1)
        for k in range(N):
            a = mpmath.exp(-(T - k * h))
            m = [(1 - h) * mi + 2 * h * a * x + 2 * h * bi for mi, x, bi in zip(m, mu, b)]
            v = (1 - h) ** 2 * v + 2 * h
        d = len(mu)
        D2 = sum((mi - mpmath.exp(-t_min) * x) ** 2 for mi, x in zip(m, mu))
        kl = (d * (1 / v - 1 + mpmath.log(v)) + D2 / v) / 2
        return m, v, kl


def _law(mu, b, T, t_min, N, w=1.0):
    d = len(mu)
    mu, b = np.asarray(mu, float), np.asarray(b, float)
    target = GaussianMixture([1.0], [mu], [np.eye(d)])
    m, S = exact_law(target, "euler_maruyama", np.linspace(T, t_min, N + 1), m0=math.exp(-T) * mu, S0=np.eye(d),
                     guidance=w, affine_guidance=lambda t: (np.zeros((d, d)), b))
    return m, S, gaussian_kl(math.exp(-t_min) * mu, np.eye(d), m, S)


CASES = [([0.7], [0.0], 2.0, 0.1, 5), ([0.7], [0.3], 2.0, 0.1, 40), ([1.0, -0.4, 0.2], [0.2, 0.5, -0.1], 3.0, 0.05, 17),
         ([0.3, 0.3], [0.0, 0.0], 1.0, 0.001, 200), ([2.0, 1.0], [-1.0, 0.5], 6.0, 0.01, 9)]


@pytest.mark.parametrize("mu,b,T,tm,N", CASES)
def test_closed_form_matches_mpmath_recursion(mu, b, T, tm, N):
    m, v, kl = _mp_chain(T, tm, N, mu, b)
    law = em_bias_law(T, tm, N, mu, b)
    assert np.allclose(law.mean, [float(x) for x in m], rtol=0, atol=20 * U)
    assert abs(law.var - float(v)) <= 20 * U
    # the closed form's own rounding bound (30u of the KL + the cancellation of Delta)
    assert abs(law.kl - float(kl)) <= closed_form_rounding(law, mu, b) + 2 * U * float(kl)


@pytest.mark.parametrize("mu,b,T,tm,N", CASES)
def test_closed_form_matches_exact_law(mu, b, T, tm, N):
    m, S, kl = _law(mu, b, T, tm, N)
    law = em_bias_law(T, tm, N, mu, b)
    tol = law_rounding_bound(T, tm, N, mu, b) + closed_form_rounding(law, mu, b)
    assert abs(kl - law.kl) <= tol
    assert np.allclose(m, law.mean, rtol=0, atol=1e-13)
    assert np.allclose(S, law.var * np.eye(len(mu)), rtol=0, atol=1e-13)


def test_guidance_strength_multiplies_the_bias():
    """exact_law adds w b to the score: the law with (w, b) is the closed form with bias w b."""
    mu, b = [0.5, -0.2], np.array([0.4, 0.1])
    _, _, kl = _law(mu, b, 2.0, 0.05, 30, w=0.5)
    assert abs(kl - em_bias_kl(2.0, 0.05, 30, mu, 0.5 * b)) <= 1e-13
    assert abs(kl - em_bias_kl(2.0, 0.05, 30, mu, b)) > 1e-3


def test_small_step_keeps_relative_accuracy():
    """Delta_a and e are O(h): the closed form has no cancellation (1e-12 relative at h = 1e-6 against mpmath)."""
    mu, b, T, tm, N = [1.0], [0.0], 1.0, 0.0, 1_000_000
    law = em_bias_law(T, tm, N, mu, b)
    with mpmath.workdps(40):
        h = mpmath.mpf(1) / N
        r = 1 - h
        e = (h / 2) / (1 - h / 2) * (1 - r ** (2 * N))
        da = -(1 - r**N * mpmath.exp(-N * h)) * (mpmath.exp(h) - 1 - h) / (mpmath.exp(h) - 1 + h)
        kl = (mpmath.log(1 + e) - e / (1 + e)) / 2 + da**2 / (2 * (1 + e))
    assert abs(law.e / float(e) - 1) < 1e-12
    assert abs(law.delta_a / float(da) - 1) < 1e-12
    assert abs(law.kl / float(kl) - 1) < 1e-12


@pytest.mark.parametrize("x", [1e-150, 1e-9, 1e-4, 0.3, 0.49, 0.51, 2.0, -0.2, -1e-7])
def test_phi_and_expm1_minus_x(x):
    with mpmath.workdps(400):  # enough digits that e^x - 1 - x survives the cancellation at x = 1e-150
        X = mpmath.mpf(x)
        ref_e2 = mpmath.expm1(X) - X
        ref_phi = mpmath.log1p(X) - X / (1 + X)
    assert abs(expm1_minus_x(x) / float(ref_e2) - 1) <= 8 * U
    if x > -1:
        assert abs(phi(x) / float(ref_phi) - 1) <= 16 * U


def test_kl_is_linear_in_d_for_iid_coordinates():
    one = em_bias_kl(3.0, 0.05, 50, [0.8])
    for d in (2, 7, 64):
        assert abs(em_bias_kl(3.0, 0.05, 50, np.full(d, 0.8)) / (d * one) - 1) <= 100 * U
    # unit-norm mean (m 1 / sqrt d) is not linear in d
    assert abs(em_bias_kl(3.0, 0.05, 50, np.full(64, 0.8 / 8)) / (64 * one) - 1) > 1e-2


def test_excess_is_quadratic_in_b():
    T, tm, N, mu = 3.0, 0.05, 40, np.array([1.0, 1.0, 1.0])
    b_perp = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
    q = bias_quadratic_coefficient(T, tm, N)
    k0 = em_bias_kl(T, tm, N, mu)
    for s in (0.01, 0.3, 2.0):
        ex = em_bias_kl(T, tm, N, mu, s * b_perp) - k0
        assert abs(ex / (q * s * s) - 1) < 1e-10
        assert abs(bias_excess(T, tm, N, mu, s * b_perp) / (q * s * s) - 1) < 1e-14
    # with a component along mu the linear term is there and bias_excess has it
    b = np.array([0.3, 0.1, 0.0])
    assert abs(bias_excess(T, tm, N, mu, b) - (em_bias_kl(T, tm, N, mu, b) - k0)) < 1e-13
    assert abs(bias_excess(T, tm, N, mu, b) - q * (b @ b)) > 1e-4
    # q_N is beta_N^2 / (2(1+e)) with beta_N = 2(1 - (1-h)^N): the bias enters the drift with factor 2
    h = (T - tm) / N
    beta = 2 * (1 - (1 - h) ** N)
    assert abs(q / (beta**2 / (2 * em_bias_law(T, tm, N, [0.0]).var)) - 1) < 1e-14


@pytest.mark.parametrize("tau", [0.5, 2.0, 8.0])
def test_asymptotics_in_h(tau):
    tm, d, mu = 0.05, 3, np.full(3, 1.0)
    K2 = leading_h2_coefficient(tau, tm, d, 3.0)
    c = plateau_coefficient(tau)
    b = np.array([1.0, -1.0, 0.0]) * 0.5 / math.sqrt(2)
    rho, plat = [], []
    for j in (10, 11, 12):
        h = 2.0**-j
        N = int(round(tau / h))
        rho.append(em_bias_kl(tm + tau, tm, N, mu) / (K2 * h * h))
        plat.append(em_bias_kl(tm + tau, tm, N, mu, b) / (c * 0.25))
    for r in (rho, plat):
        # f(h) = 1 + k h + O(h^2): the deviation halves with h and is the Richardson difference
        assert abs(r[2] - 1) <= 2 * abs(r[2] - r[1])
        assert abs(r[1] - 1) / abs(r[2] - 1) == pytest.approx(2.0, rel=0.05)


def test_paper_form_and_coefficients():
    assert paper_form_bound(4, 0.1, 2.0, 0.5) == pytest.approx((0.25 + 0.4) * 2.0)
    assert plateau_coefficient(1.0) == pytest.approx(2 * (1 - math.exp(-1)) ** 2, rel=1e-15)
    assert leading_h2_coefficient(1.0, 0.0, 16, 0.0) == pytest.approx((1 - math.exp(-2)) ** 2, rel=1e-15)
    # the Girsanov form tau |b|^2 exceeds the plateau c(tau) |b|^2 at every tau (max of c/tau ~ 0.81)
    assert max(plateau_coefficient(t) / t for t in np.linspace(0.01, 20, 400)) < 0.82


@pytest.mark.parametrize("call,name", [
    (lambda: em_bias_law(1.0, 1.0, 4, [1.0]), "T"),
    (lambda: em_bias_law(-1.0, 0.0, 4, [1.0]), "T"),
    (lambda: em_bias_law(1.0, -0.1, 4, [1.0]), "t_min"),
    (lambda: em_bias_law(1.0, 0.0, 0, [1.0]), "N"),
    (lambda: em_bias_law(1.0, 0.0, 2.5, [1.0]), "N"),
    (lambda: em_bias_law(5.0, 0.0, 3, [1.0]), "N"),
    (lambda: em_bias_law(1.0, 0.0, 4, [[1.0]]), "mu"),
    (lambda: em_bias_law(1.0, 0.0, 4, [np.nan]), "mu"),
    (lambda: em_bias_law(1.0, 0.0, 4, [1.0], [1.0, 2.0]), "b"),
    (lambda: em_bias_kl(1.0, 0.0, 4, [1.0], [np.inf]), "b"),
    (lambda: phi(-1.0), "e"),
    (lambda: expm1_minus_x(math.nan), "x"),
    (lambda: leading_h2_coefficient(0.0, 0.0, 1, 1.0), "tau"),
    (lambda: leading_h2_coefficient(1.0, 0.0, 0, 1.0), "d"),
    (lambda: leading_h2_coefficient(1.0, 0.0, 1, -1.0), "mu_norm2"),
    (lambda: plateau_coefficient(-1.0), "tau"),
    (lambda: paper_form_bound(2, 0.0, 1.0, 0.1), "h"),
    (lambda: paper_form_bound(2, 0.1, 1.0, -0.1), "b_norm"),
    (lambda: law_rounding_bound(1.0, 0.0, 4, [1.0], [0.1], w=-1.0), "w"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()


def test_claim_quick_holds_and_noise_control_restores_the_table():
    from numerics.methods import TABLE
    from numerics.papers.ce_guidance import claims as S
    c = S.discretisation_exact.claim
    before = TABLE["euler_maruyama"]
    ms = S.discretisation_exact(c.context("quick", 0, control=S.C_NOISE_H))
    assert TABLE["euler_maruyama"] is before
    assert ms[0].measured > 1e6  # variance h: far off the closed form
    ms = S.discretisation_exact(c.context("quick", 0))
    assert all(m.measured <= m.predicted for m in ms if m.counted)

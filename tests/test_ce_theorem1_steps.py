"""Theorem 1's steps as near-equalities (numerics/papers/ce_guidance/theorem1_steps.py,
proofs_notes/ce_guidance.md#theorem1-steps): pointwise formulas against mpmath, expectations against an independent
scipy quadrature, the derived c2 against a finite difference in delta, the remainder bound, bad input."""
from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit

from numerics.papers.ce_guidance.classifier_error import Ripple, SettingG, errors_quadrature
from numerics.papers.ce_guidance.theorem1_steps import (PHI_C0, ibp_terms, log_error_derivatives, log_errors,
                                                        logistic_derivative_sups, phi, sine_moments, step1_expansion,
                                                        step1_terms, tightness_limits)

S = SettingG([1.0, 0.0], 0.5)


def _sig(u):
    return 1 / (1 + mp.exp(-u))


def test_logistic_derivative_sups_against_mpmath_derivatives():
    sups = logistic_derivative_sups(5)
    assert sups[:3] == pytest.approx([0.25, 1 / (6 * math.sqrt(3)), 0.125], rel=1e-13)
    grid = np.linspace(-8, 8, 641)
    for k, sup in enumerate(sups, start=1):
        vals = [abs(float(mp.diff(_sig, mp.mpf(u), k))) for u in grid[::8]]
        assert max(vals) <= sup * (1 + 1e-12)
        assert max(vals) >= 0.98 * sup  # a coarse grid comes close to the sup


@pytest.mark.parametrize("r", [1e-12, -3e-9, 1e-4, -0.2, 0.49, 0.5, -0.7, 3.0, -30.0])
def test_phi_relative_accuracy(r):
    mp.mp.dps = 40
    exact = mp.expm1(mp.mpf(r)) - mp.mpf(r)
    assert float(phi(r)) == pytest.approx(float(exact), rel=8e-16)


@pytest.mark.parametrize("f,h", [(0.3, 1e-9), (-25.0, 0.4), (30.0, -0.7), (2.0, 1.5), (-1.0, -1e-5)])
def test_log_errors_against_mpmath(f, h):
    mp.mp.dps = 50
    rp, rm = log_errors(f, h)
    F, H = mp.mpf(f), mp.mpf(h)
    ep = mp.log(_sig(F + H)) - mp.log(_sig(F))
    em = mp.log(_sig(-F - H)) - mp.log(_sig(-F))
    assert float(rp) == pytest.approx(float(ep), rel=1e-14)
    assert float(rm) == pytest.approx(float(em), rel=1e-14)


@pytest.mark.parametrize("y", [1, -1])
def test_gradient_and_laplacian_against_mpmath_derivatives(y):
    """grad r_y and Lap r_y of the module against mpmath differentiation of r_y(s, v) = log p_hat_y - log p_y."""
    mp.mp.dps = 40
    delta, omega = 0.3, 2.5
    g = S.grad_f_norm

    def r_of(s, v):
        F = g * s
        H = delta * mp.sin(omega * v)
        return (mp.log(_sig(F + H)) - mp.log(_sig(F))) if y == 1 else (mp.log(_sig(-F - H)) - mp.log(_sig(-F)))

    for s0, v0 in [(0.2, -0.4), (-1.3, 0.9), (2.1, 0.05)]:
        r, d1, d2, lap = log_error_derivatives(S, delta, omega, y, s0, v0)
        s_, v_ = mp.mpf(s0), mp.mpf(v0)
        assert float(r) == pytest.approx(float(r_of(s_, v_)), rel=1e-13)
        assert float(d1) == pytest.approx(float(mp.diff(r_of, (s_, v_), (1, 0))), rel=1e-12, abs=1e-15)
        assert float(d2) == pytest.approx(float(mp.diff(r_of, (s_, v_), (0, 1))), rel=1e-12, abs=1e-15)
        lap_mp = mp.diff(r_of, (s_, v_), (2, 0)) + mp.diff(r_of, (s_, v_), (0, 2))
        assert float(lap) == pytest.approx(float(lap_mp), rel=1e-11, abs=1e-14)


def _scipy_joint(delta, omega, fn):
    """E_X sum_y p_y F_y by nested adaptive scipy quad (independent of the tensor rule)."""
    am, g = S.alpha * S.m, S.grad_f_norm

    def inner(s):
        f = g * s
        dens_s = 0.5 * (math.exp(-0.5 * (s - am) ** 2) + math.exp(-0.5 * (s + am) ** 2)) / math.sqrt(2 * math.pi)

        def fv(v):
            h = delta * math.sin(omega * v)
            rp, rm = log_errors(f, h)
            p = expit(f)
            return fn(p, 1 - p, float(rp), float(rm)) * math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)

        return dens_s * integrate.quad(fv, -12, 12, limit=400, epsabs=1e-15, epsrel=1e-13)[0]

    return integrate.quad(inner, -14, 14, limit=400, epsabs=1e-15, epsrel=1e-13)[0]


def test_step1_expectations_against_scipy_quad():
    delta, omega = 0.3, 1.0
    T = step1_terms(S, delta, omega)
    r2 = _scipy_joint(delta, omega, lambda p, q, rp, rm: p * rp**2 + q * rm**2)
    kl = _scipy_joint(delta, omega, lambda p, q, rp, rm: -(p * rp + q * rm))
    assert T.r2.value == pytest.approx(r2, rel=1e-9)
    assert T.kl.value == pytest.approx(kl, rel=1e-9)
    assert T.r2.err < 1e-9 * T.r2.value and T.kl.err < 1e-9 * T.kl.value
    # pointwise identity and the change of measure
    assert abs(T.phi.value - T.kl.value) <= T.phi.err + T.kl.err
    assert abs(T.r2.value - T.r2_class.value) <= T.r2.err + T.r2_class.err
    # the package's KL is the same number
    q = errors_quadrature(S, Ripple(delta, omega, [0.0, 1.0]))
    assert T.kl.value == pytest.approx(q.kl, rel=1e-10)
    # a reversed KL is not
    Tr = step1_terms(S, delta, omega, kl_direction="reverse")
    assert abs(Tr.phi.value - Tr.kl.value) > 1e3 * (Tr.phi.err + Tr.kl.err)


def test_c2_against_finite_difference_in_delta():
    """(R(delta) - 1)/delta^2 -> c2; the O(delta^2) term of that difference is removed by Richardson extrapolation."""
    omega = 1.0
    R = {}
    for dl in (0.04, 0.02):
        T = step1_terms(S, dl, omega)
        R[dl] = PHI_C0 * T.r2.value / T.kl.value
    fd = {dl: (R[dl] - 1) / dl**2 for dl in R}
    rich = (4 * fd[0.02] - fd[0.04]) / 3
    c2 = step1_expansion(S, 0.02, omega).c2
    assert rich == pytest.approx(c2, rel=1e-4)
    # c2 by its formula, recomputed here
    S2, S4, _ = sine_moments(omega)
    ex = step1_expansion(S, 0.02, omega)
    assert c2 == pytest.approx(S4 / S2 * (0.75 * ex.epq2 / ex.epq - 1 / 12), rel=1e-14)
    assert ex.c1 == 0.0
    # a wrong coefficient (the cubic-term form -E sum p r^3 / (3 E sum p r^2), or c2 without the -1/12) is off by far more
    assert abs(fd[0.02] - S4 / S2 * 0.75 * ex.epq2 / ex.epq) > 0.1 * abs(c2)


@pytest.mark.parametrize("delta", [0.8, 0.4, 0.1])
@pytest.mark.parametrize("omega", [0.5, 7.0])
def test_remainder_bound_holds_and_is_not_vacuous(delta, omega):
    T = step1_terms(S, delta, omega)
    ex = step1_expansion(S, delta, omega)
    R = PHI_C0 * T.r2.value / T.kl.value
    assert abs(R - ex.predicted) <= ex.rem + ex.moment_err
    assert ex.rem < 0.3 * abs(ex.predicted - 1)  # the bound resolves the c2 delta^2 term


def test_ibp_identity_and_its_wrong_sign():
    for dl, om in [(0.25, 0.7), (0.05, 25.0)]:
        for y in (1, -1):
            I = ibp_terms(S, dl, om, y, n_s=64)
            tol = I.A.err + I.r_lap.err + I.r_score.err
            assert abs(I.A.value + I.r_lap.value + I.r_score.value) <= tol
            assert tol < 1e-7 * I.A.value  # GH halving at n_s = 64: ~1e-8 relative
            assert abs(I.A.value - I.r_lap.value + I.r_score.value) > 1e6 * tol  # Laplacian with the wrong sign
            Im = ibp_terms(S, dl, om, y, n_s=64, score="marginal")
            assert abs(I.A.value + I.r_lap.value + Im.r_score.value) > 1e3 * tol  # marginal score
        Ip, Imn = ibp_terms(S, dl, om, 1, n_s=64), ibp_terms(S, dl, om, -1, n_s=64)
        q = errors_quadrature(S, Ripple(dl, om, [0.0, 1.0]))
        assert 0.5 * (Ip.A.value + Imn.A.value) == pytest.approx(q.mse, rel=1e-9)


def test_ibp_in_higher_dimension_adds_the_off_plane_score():
    S3 = SettingG([1.0, 0.0, 0.0, 0.0], 0.5)
    I2, I4 = ibp_terms(S, 0.2, 1.0, 1, n_s=48), ibp_terms(S3, 0.2, 1.0, 1, n_s=48)
    assert I4.A.value == pytest.approx(I2.A.value, rel=1e-13)
    T = step1_terms(S, 0.2, 1.0, n_s=48, class_weights=(1.0, 0.0))  # E_rho_+ r_+^2
    assert I4.r2_s2.value - I2.r2_s2.value == pytest.approx(2 * T.r2_class.value, rel=1e-10)


def test_tightness_limits_are_approached():
    lims = tightness_limits(S)
    assert lims["chain"] == pytest.approx(math.sqrt(S.pq_moments()[0]) / (4 * math.sqrt(2)), rel=1e-12)
    dl, om = 0.01, 80.0
    I = ibp_terms(S, dl, om, 1, n_s=48)
    L, M = S.certificates(Ripple(dl, om, [0.0, 1.0]))
    B = -I.r_lap.value
    assert B / (2 * L * I.abs_r.value) == pytest.approx(lims["step2_lap"], rel=0.02)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="^delta"):
        step1_terms(S, -0.1, 1.0)
    with pytest.raises(ValueError, match="^delta"):
        ibp_terms(S, 6.0, 1.0, 1)
    with pytest.raises(ValueError, match="^omega"):
        step1_expansion(S, 0.1, 0.0)
    with pytest.raises(ValueError, match="^omega"):
        ibp_terms(S, 0.1, 1e9, 1)
    with pytest.raises(ValueError, match="^y"):
        ibp_terms(S, 0.1, 1.0, 0)
    with pytest.raises(ValueError, match="^y"):
        ibp_terms(S, 0.1, 1.0, True)
    with pytest.raises(ValueError, match="^score"):
        ibp_terms(S, 0.1, 1.0, 1, score="joint")
    with pytest.raises(ValueError, match="^kl_direction"):
        step1_terms(S, 0.1, 1.0, kl_direction="both")
    with pytest.raises(ValueError, match="^class_weights"):
        step1_terms(S, 0.1, 1.0, class_weights=(0.5, -1.0))
    with pytest.raises(ValueError, match="^setting"):
        step1_terms(SettingG([1.0], 0.5), 0.1, 1.0)
    with pytest.raises(ValueError, match="^setting"):
        ibp_terms("G", 0.1, 1.0, 1)
    with pytest.raises(ValueError, match="^n_s"):
        step1_terms(S, 0.1, 1.0, n_s=2)
    with pytest.raises(ValueError, match="^r"):
        phi([0.1, float("nan")])
    with pytest.raises(ValueError, match="^h"):
        log_errors(0.0, float("inf"))
    with pytest.raises(ValueError, match="^delta"):
        step1_expansion(S, 50.0, 1.0)
    with pytest.raises(ValueError, match="^kmax"):
        logistic_derivative_sups(0)
    with pytest.raises(ValueError, match="^v"):
        log_error_derivatives(S, 0.1, 1.0, 1, 0.0, float("nan"))

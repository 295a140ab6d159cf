"""The composed bound of ce_guidance.composed_bound (proofs_notes/ce_guidance.md#composed-bound) recomputed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from numerics.papers.ce_guidance.classifier_error import Ripple, SettingG, errors_quadrature
from numerics.papers.ce_guidance.composed_bound import composed_bound, corollary2_bound


def _hand_bound(mu: float, T: float, N: int, delta: float, omega: float) -> float:
    """B written out from the note: init e^{-2T} mu^2 / 2 plus sum_k 2 tanh(h/2) times Corollary 2 with the certified
    L_t = delta w^2 + delta (2 a mu)^2 / (6 sqrt 3) + (2 (2 a mu) delta w + delta^2 w^2) / 4, M = delta, d = 2,
    pi_y = 1/2, S_4 = sqrt(8), c_M = (e^{-M} - 1 + M) / M^2."""
    h = T / N
    M = delta
    cM = (math.exp(-M) - 1.0 + M) / M**2
    total = 0.0
    for k in range(N):
        t = T - k * h
        gf = 2.0 * math.exp(-t) * mu
        L = delta * omega**2 + delta * gf**2 / (6.0 * math.sqrt(3.0)) + (2.0 * gf * delta * omega + (delta * omega) ** 2) / 4.0
        eps = math.sqrt(errors_quadrature(SettingG([mu, 0.0], t), Ripple(delta, omega, [0.0, 1.0]), y=1).kl)
        total += 2.0 * math.tanh(h / 2.0) * eps / math.sqrt(0.5 * cM) * (2 * 2 * L + M * math.sqrt(8.0))
    return 0.5 * math.exp(-2.0 * T) * mu**2 + total


def test_composed_bound_matches_a_hand_computation():
    mu, T, N, delta = 1.0, 2.0, 4, 0.01
    omega = math.sqrt(1.0 / delta)
    cb = composed_bound(mu, T, N, delta, omega)
    assert cb.bound == pytest.approx(_hand_bound(mu, T, N, delta, omega), rel=1e-12)
    assert cb.init == pytest.approx(0.5 * math.exp(-4.0), rel=1e-15)
    np.testing.assert_allclose(cb.times, [2.0, 1.5, 1.0, 0.5], rtol=0, atol=1e-15)
    # at fixed Hessian delta omega^2 = 1 the certified L_t stays near 1 and Corollary 2 bounds the measured MSE
    assert np.all((cb.L > 1.0) & (cb.L < 1.2))
    assert np.all(cb.mse < cb.mse_bound)
    # the mistaken compositions change B in the direction the note states (they stay above the chain's KL)
    assert composed_bound(mu, T, N, delta, omega, hessian_power=1).bound < cb.bound
    assert composed_bound(mu, T, N, delta, omega, weight="h2").bound < cb.bound


def test_corollary2_is_theorem1_over_sqrt_prior():
    got = corollary2_bound(0.01, 2, 1.0, 0.1, math.sqrt(8.0), 0.25)
    cM = (math.exp(-0.1) - 1.0 + 0.1) / 0.01
    assert got == pytest.approx(0.01 / math.sqrt(0.25 * cM) * (4.0 + 0.1 * math.sqrt(8.0)), rel=1e-13)


@pytest.mark.parametrize("kwargs, name", [({"N": 0}, "N"), ({"delta": -0.01}, "delta"), ({"weight": "h"}, "weight"),
                                          ({"hessian_power": 3}, "hessian_power")])
def test_bad_input_names_the_argument(kwargs, name):
    args = {"mu": 1.0, "T": 2.0, "N": 4, "delta": 0.01, "omega": 10.0, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        composed_bound(**args)


def test_bad_prior_names_the_argument():
    with pytest.raises(ValueError, match=r"^pi_y\b"):
        corollary2_bound(0.01, 2, 1.0, 0.1, 1.0, 1.5)

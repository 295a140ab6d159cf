"""Tests of numerics.quadrature: the Gauss-Hermite rule for E f(Z), Z ~ N(0, 1), and its tensor product."""
import math

import mpmath as mp
import numpy as np
import pytest
from scipy.special import roots_hermitenorm

from numerics.constants import UNIT_ROUNDOFF as U
from numerics.quadrature import MAX_NODES, gauss_hermite_normal, gauss_hermite_normal_nd


def _mp_rule(n: int, z0: np.ndarray, dps: int = 50):
    """Nodes and weights of the n-point rule to ``dps`` digits: Newton on He_n from the float64 nodes, then
    w_i = n! / (n^2 He_{n-1}(z_i)^2)."""
    with mp.workdps(dps):
        zs, ws = [], []
        for x in z0:
            x = mp.mpf(float(x))
            for _ in range(5):
                p0, p1 = mp.mpf(1), x
                for k in range(1, n):
                    p0, p1 = p1, x * p1 - k * p0  # He_{k+1} = x He_k - k He_{k-1}
                x = x - p1 / (n * p0)  # He_n' = n He_{n-1}
            p0, p1 = mp.mpf(1), x
            for k in range(1, n):
                p0, p1 = p1, x * p1 - k * p0
            zs.append(x)
            ws.append(mp.factorial(n) / (n * n * p0 * p0))
        return zs, ws


@pytest.mark.parametrize("n", [1, 2, 5, 16, 40, 80, 160])
def test_nodes_and_weights_match_50_digit_values(n):
    """The weights come from numpy's Golub-Welsch eigenvectors: their relative error grows about linearly in n
    (observed <= 4.6 n u for n <= 160), so 8 n u; the nodes get one Newton step: 8 u max(1, |z|)."""
    z, w = gauss_hermite_normal(n)
    zs, ws = _mp_rule(n, z)
    with mp.workdps(50):
        dz = max(float(abs(mp.mpf(float(a)) - b)) / max(1.0, abs(float(b))) for a, b in zip(z, zs))
        dw = max(float(abs(mp.mpf(float(a)) - b) / b) for a, b in zip(w, ws))
    assert dz <= 8 * U, dz
    assert dw <= 8 * n * U, (dw, 8 * n * U)
    assert np.all(np.diff(z) > 0) and np.array_equal(z, -z[::-1]) and np.array_equal(w, w[::-1])


@pytest.mark.parametrize("n", [3, 10, 64])
def test_agrees_with_scipy(n):
    """SciPy's roots_hermitenorm (weights for exp(-z^2/2), total sqrt(2 pi)).  SciPy's far-tail weights are less
    accurate relatively (4.8e-13 at n = 64, on weights ~1e-49), so the weights are compared absolutely, on the
    scale of the largest weight (what an expectation of a bounded integrand sees)."""
    z, w = gauss_hermite_normal(n)
    zs, ws = roots_hermitenorm(n)
    assert np.max(np.abs(z - zs) / np.maximum(1.0, np.abs(zs))) <= 16 * U
    assert np.max(np.abs(w - ws / math.sqrt(2 * math.pi))) <= 16 * n * U * w.max()


def _moment(k: int) -> int:
    """E Z^k = (k-1)!! for even k, 0 for odd k."""
    return 0 if k % 2 else math.prod(range(k - 1, 0, -2))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
def test_exact_for_degree_2n_minus_1(n):
    """sum w z^k = E Z^k for k <= 2n-1.  Tolerance per degree: weights (8 n u relative) and nodes (8 u relative,
    times k in z^k) of the rule, plus the summation (n u), on the sum of |terms| (every term is >= 0 for even k)."""
    z, w = gauss_hermite_normal(n)
    for k in range(2 * n):
        terms = w * z**k
        tol = (8 * n + 8 * k + n + 2) * U * float(np.sum(np.abs(terms)))
        assert abs(float(np.sum(terms)) - _moment(k)) <= tol, (n, k)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 12])
def test_degree_2n_is_not_integrated_exactly(n):
    """The Gauss error for z^(2n) is f^(2n)/(2n)! E He_n(Z)^2 = n!: the rule gives E Z^(2n) - n!, so the
    exactness degree 2n - 1 is sharp."""
    z, w = gauss_hermite_normal(n)
    got = float(np.sum(w * z ** (2 * n)))
    expected = _moment(2 * n) - math.factorial(n)
    assert abs(got - expected) <= (16 * n + 8) * U * _moment(2 * n)


def test_smooth_expectations_and_unit_mass():
    """E cos(Z) = e^-1/2, E e^Z = e^1/2 (entire integrands: the 80-point rule is converged to rounding)."""
    z, w = gauss_hermite_normal(80)
    assert abs(float(np.sum(w)) - 1.0) <= 80 * U
    assert abs(float(w @ np.cos(z)) - math.exp(-0.5)) <= 8 * 80 * U
    assert abs(float(w @ np.exp(z)) - math.exp(0.5)) <= 8 * 80 * U * math.exp(0.5)


def test_cached_arrays_are_read_only():
    a = gauss_hermite_normal(12)
    assert a is gauss_hermite_normal(12)
    with pytest.raises(ValueError):
        a.weights[0] = 1.0
    with pytest.raises(ValueError):
        a.nodes[0] = 1.0


def test_tensor_rule():
    """(n^d, d) nodes, first coordinate slowest; weights are products; E Z1^2 Z2^4 = 3, E Z1 Z2 = 0."""
    z, w = gauss_hermite_normal(6)
    Z, W = gauss_hermite_normal_nd(6, 2)
    assert Z.shape == (36, 2) and W.shape == (36,)
    assert np.array_equal(Z[:6, 0], np.full(6, z[0])) and np.array_equal(Z[:6, 1], z)
    assert np.array_equal(W, np.outer(w, w).ravel())
    assert abs(float(W @ (Z[:, 0] ** 2 * Z[:, 1] ** 4)) - 3.0) <= 200 * U * 3.0
    assert abs(float(W @ (Z[:, 0] * Z[:, 1]))) <= 200 * U
    Z1, W1 = gauss_hermite_normal_nd(6, 1)
    assert np.array_equal(Z1[:, 0], z) and np.array_equal(W1, w)
    Z3, W3 = gauss_hermite_normal_nd(4, 3)
    assert Z3.shape == (64, 3) and abs(float(np.sum(W3)) - 1.0) <= 64 * U


@pytest.mark.parametrize("bad, name", [
    (lambda: gauss_hermite_normal(0), "n"),
    (lambda: gauss_hermite_normal(MAX_NODES + 1), "n"),
    (lambda: gauss_hermite_normal(2.5), "n"),
    (lambda: gauss_hermite_normal(True), "n"),
    (lambda: gauss_hermite_normal_nd(4, 0), "d"),
])
def test_bad_input_names_the_argument(bad, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        bad()

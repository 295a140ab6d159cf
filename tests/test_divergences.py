"""Tests of numerics.divergences: the KL on grid cells and the Gaussian KL (closed forms in mpmath)."""
import math

import mpmath as mp
import numpy as np
import pytest
from scipy.stats import norm

from numerics.constants import UNIT_ROUNDOFF as U
from numerics.divergences import gaussian_kl, gaussian_kl_1d, kl_cells


def _mp_gaussian_kl(m0, S0, m1, S1, dps: int = 50):
    """KL(N(m0,S0) || N(m1,S1)) = (tr(S1^-1 S0) + dm^T S1^-1 dm - d + log det S1 - log det S0) / 2 at dps digits."""
    with mp.workdps(dps):
        d = len(m0)
        A0, A1 = mp.matrix(np.asarray(S0).tolist()), mp.matrix(np.asarray(S1).tolist())
        X = mp.inverse(A1) * A0
        dm = mp.matrix([mp.mpf(float(m1[i])) - mp.mpf(float(m0[i])) for i in range(d)])
        y = mp.lu_solve(A1, dm)
        tr = mp.fsum(X[i, i] for i in range(d))
        quad = mp.fsum(dm[i] * y[i] for i in range(d))
        return (tr + quad - d + mp.log(mp.det(A1)) - mp.log(mp.det(A0))) / 2


# ------------------------------------------------------------------------------------------ kl_cells
def test_kl_cells_gaussians_on_a_fine_grid_match_the_closed_form():
    r"""KL(N(0,1) || N(1,2)) = (1/2) log 2 from the rectangle rule on [-12, 12], h = 0.05.

    Error budget of the grid value:
      * discretisation: the integrand p log(p/q) and the normalising sums are Gaussians times polynomials whose
        narrowest factor has variance 1, so the rule's aliasing error is ~ exp(-2 pi^2 / h^2) ~ 1e-3400: nil;
      * truncation: normalising on the grid rescales q by its mass inside, 1 - eps_q, which shifts the KL by
        -log(1 - eps_q) ~ eps_q; p's outside mass eps_p changes the KL by ~ eps_p (1 + max|log p/q| on the tails);
      * rounding: n terms, each with relative error a few u: 8 n u sum|p log(p/q)| h.
    """
    h = 0.05
    x = np.arange(-240, 241) * h
    p, q = norm.pdf(x, 0, 1), norm.pdf(x, 1, math.sqrt(2))
    eps_q = norm.sf(12.0 + h / 2, 1, math.sqrt(2)) + norm.cdf(-12.0 - h / 2, 1, math.sqrt(2))
    eps_p = 2 * norm.sf(12.0 + h / 2)
    rounding = 8 * x.size * U * float(np.sum(np.abs(p * np.log(p / q))) * h)
    tol = 2 * eps_q + eps_p * (1 + 12.0**2) + rounding
    exact = float(mp.log(2) / 2)
    got = kl_cells(p, q, h)
    assert abs(got - exact) <= tol, (got - exact, tol)
    assert tol < 1e-12  # the bound is informative
    # the same densities as a 2-D product against a product: the KL adds up (cell area h^2)
    P, Q = np.outer(p, p), np.outer(q, p)
    assert abs(kl_cells(P, Q, h * h) - exact) <= 2 * tol + 8 * P.size * U * exact


def test_kl_cells_2d_gaussian_against_gaussian_kl():
    """Correlated 2-D Gaussians on a tensor grid vs the closed form (same error budget as the 1-D test)."""
    h = 0.05
    g = np.arange(-200, 201) * h
    X1, X2 = np.meshgrid(g, g, indexing="ij")
    m0, S0 = np.array([0.2, -0.1]), np.array([[1.0, 0.3], [0.3, 0.8]])
    m1, S1 = np.array([-0.3, 0.4]), np.array([[1.5, -0.2], [-0.2, 1.2]])

    def dens(m, S):
        P = np.linalg.inv(S)
        d1, d2 = X1 - m[0], X2 - m[1]
        return np.exp(-0.5 * (P[0, 0] * d1 * d1 + 2 * P[0, 1] * d1 * d2 + P[1, 1] * d2 * d2)) / (
            2 * math.pi * math.sqrt(np.linalg.det(S)))

    got = kl_cells(dens(m0, S0), dens(m1, S1), h * h)
    exact = float(_mp_gaussian_kl(m0, S0, m1, S1))
    assert abs(got - exact) <= 1e-12, got - exact  # tails beyond 10 of variance <= 1.5: ~1e-16; rounding 8 n u
    assert abs(gaussian_kl(m0, S0, m1, S1) - exact) <= 64 * U * (1 + exact)


def test_kl_cells_of_equal_densities_is_zero_and_shape_free():
    p = norm.pdf(np.linspace(-5, 5, 101))
    assert kl_cells(p, p, 0.1) == 0.0
    assert abs(kl_cells(3 * p, p, 0.1)) <= 4 * U  # both are normalised on the grid (to rounding)
    P = np.outer(p, p[::2])
    assert kl_cells(P, P[::-1], 0.01) == kl_cells(P.ravel(), P[::-1].ravel(), 0.01)


def test_kl_cells_q_zero_rule():
    """+inf where q vanishes on the support of p; cells with p = 0 contribute nothing (0 log 0 = 0)."""
    p = np.array([0.0, 1.0, 2.0, 1.0, 0.0])
    assert kl_cells(p, np.array([1.0, 1.0, 0.0, 1.0, 1.0]), 1.0) == math.inf
    q = np.array([0.0, 1.0, 2.0, 1.0, 5.0])
    # p/Z = (0, .25, .5, .25, 0), q/Z = (0, 1/9, 2/9, 1/9, 5/9): KL = log(9/4)
    assert abs(kl_cells(p, q, 1.0) - math.log(9 / 4)) <= 8 * U


def test_kl_cells_far_tails_do_not_overflow():
    """A q that is subnormal where p is not: p/q overflows, so the log-ratio falls back to log p - log q."""
    p = np.array([1.0, 1.0])
    q = np.array([1.0, 1e-320])
    with mp.workdps(30):
        zq = 1 + mp.mpf(1e-320)
        exact = (mp.log(mp.mpf(1) / 2 / (1 / zq)) + mp.log(mp.mpf(1) / 2 / (mp.mpf(1e-320) / zq))) / 2
    got = kl_cells(p, q, 1.0)
    assert math.isfinite(got) and abs(got - float(exact)) <= 8 * U * float(exact)


@pytest.mark.parametrize("bad, name", [
    (lambda: kl_cells([1.0, -1.0], [1.0, 1.0], 1.0), "p"),
    (lambda: kl_cells([1.0, 1.0], [1.0, np.nan], 1.0), "q"),
    (lambda: kl_cells([1.0, 1.0], [1.0, 1.0, 1.0], 1.0), "q"),
    (lambda: kl_cells([0.0, 0.0], [1.0, 1.0], 1.0), "p"),
    (lambda: kl_cells([1.0, 1.0], [0.0, 0.0], 1.0), "q"),
    (lambda: kl_cells([1.0, 1.0], [1.0, 1.0], 0.0), "cell"),
    (lambda: kl_cells([1.0, 1.0], [1.0, 1.0], math.inf), "cell"),
    (lambda: kl_cells("ab", [1.0, 1.0], 1.0), "p"),
    (lambda: gaussian_kl([0.0], [[1.0]], [0.0, 0.0], [[1.0]]), "m1"),
    (lambda: gaussian_kl([0.0], [[-1.0]], [0.0], [[1.0]]), "S0"),
    (lambda: gaussian_kl([0.0], [[1.0]], [0.0], [[0.0]]), "S1"),
])
def test_bad_input_names_the_argument(bad, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        bad()


# ------------------------------------------------------------------------------------------ Gaussian KL
def test_gaussian_kl_against_mpmath():
    """d = 3, random SPD covariances: Cholesky-based KL within c d^2 u kappa of the 50-digit closed form
    (backward-stable triangular solves: relative perturbations d u kappa(S1) of each term)."""
    rng = np.random.default_rng(7)
    for _ in range(5):
        d = 3
        A, B = rng.standard_normal((d, d)), rng.standard_normal((d, d))
        S0, S1 = A @ A.T + 0.5 * np.eye(d), B @ B.T + 0.5 * np.eye(d)
        m0, m1 = rng.standard_normal(d), rng.standard_normal(d)
        exact = float(_mp_gaussian_kl(m0, S0, m1, S1))
        kappa = np.linalg.cond(S1) * np.linalg.cond(S0)
        scale = np.trace(np.linalg.solve(S1, S0)) + (m1 - m0) @ np.linalg.solve(S1, m1 - m0) + d
        assert abs(gaussian_kl(m0, S0, m1, S1) - exact) <= 16 * d * d * U * kappa * scale
    assert gaussian_kl(m0, np.eye(3), m0, np.eye(3)) == 0.0


@pytest.mark.parametrize("m0, v0, m1, v1", [(0.0, 1.0, 0.5, 2.25), (0.0, 1.0, 1.0, 0.25), (1.3, 0.1, -0.2, 3.0),
                                            (0.0, 4.0, 0.0, 1.0), (2.0, 1e-3, 2.0, 1e-3)])
def test_gaussian_kl_1d_against_mpmath_and_the_d_dimensional_form(m0, v0, m1, v1):
    """Closed form at 50 digits; absolute error a few u (1 + v0/v1 + (m1-m0)^2/v1 + |log(v1/v0)|)."""
    with mp.workdps(50):
        a0, b0, a1, b1 = map(mp.mpf, (m0, v0, m1, v1))
        exact = float((b0 / b1 + (a1 - a0) ** 2 / b1 - 1 + mp.log(b1 / b0)) / 2)
    scale = 1 + v0 / v1 + (m1 - m0) ** 2 / v1 + abs(math.log(v1 / v0))
    assert abs(gaussian_kl_1d(m0, v0, m1, v1) - exact) <= 8 * U * scale
    assert abs(gaussian_kl([m0], [[v0]], [m1], [[v1]]) - exact) <= 16 * U * scale

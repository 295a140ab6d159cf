"""Tests of the 2-D grid propagation (numerics.references.grid_density.propagate_2d and its companions)."""
import math

import numpy as np
import pytest
from scipy.special import ndtr

from numerics.constants import UNIT_ROUNDOFF as U
from numerics.references.grid_density import (gaussian_on_grid, gaussian_on_grid_2d, kl_grid_2d, propagate, propagate_2d,
                                              refinement_error_2d, tv_grid_2d, uniform_grid)


def _outside_mass(m, S, g1, g2):
    """Union bound on the mass of N(m, S) outside [g1[0], g1[-1]] x [g2[0], g2[-1]]."""
    out = 0.0
    for i, g in ((0, g1), (1, g2)):
        sd = math.sqrt(S[i, i])
        out += ndtr((g[0] - m[i]) / sd) + ndtr((m[i] - g[-1]) / sd)
    return out


def test_linear_gaussian_chain_matches_closed_form():
    """x' = A x + b + N(0, v I), A a contracting rotation (couples the coordinates): N(m, S) -> N(Am + b, ASA^T + vI).

    Tolerance, derived per step for the sup-norm error e_k of the grid density:
      * the new error is the old one pushed through the kernel: sup_z sum_x K(z, x) dx = 1/|det A|, so e_k/|det A|;
      * aliasing of the trapezoid rule (Poisson summation) for the Gaussian integrand x -> p_k(x) N(z; Ax+b, vI),
        whose covariance is C = (S^-1 + A^T A / v)^-1: relative error <= 4 sum_i exp(-2 pi^2 C_ii / dx_i^2);
      * the lattice points outside the box: <= peak kernel 1/(2 pi v) x 2 x (mass of p_k outside the box) (the
        factor 2 covers the Riemann sum of a monotone tail against its integral, one extra cell per side);
      * rounding of the nonnegative sums: (n1 n2 + 8) u x the largest density value.
    """
    g1, g2 = uniform_grid(-7, 6, 101), uniform_grid(-6.5, 6.5, 101)
    dx1, dx2 = g1[1] - g1[0], g2[1] - g2[0]
    th, a, v, steps = 0.4, 0.8, 0.2, 5
    A = a * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    b = np.array([0.3, -0.2])
    m, S = np.array([-1.0, 0.5]), np.array([[0.5, 0.1], [0.1, 0.4]])
    res = propagate_2d(gaussian_on_grid_2d(g1, g2, m, S), g1, g2,
                       lambda X1, X2, k: (A[0, 0] * X1 + A[0, 1] * X2 + b[0], A[1, 0] * X1 + A[1, 1] * X2 + b[1]),
                       v, steps)
    tol, detA = 0.0, abs(np.linalg.det(A))
    for _ in range(steps):
        C = np.linalg.inv(np.linalg.inv(S) + A.T @ A / v)
        alias = 4 * sum(math.exp(-2 * math.pi**2 * C[i, i] / d**2) for i, d in ((0, dx1), (1, dx2)))
        trunc = 2 * _outside_mass(m, S, g1, g2) / (2 * math.pi * v)
        m, S = A @ m + b, A @ S @ A.T + v * np.eye(2)
        peak = 1 / (2 * math.pi * math.sqrt(np.linalg.det(S)))
        tol = tol / detA + alias * peak + trunc + (g1.size * g2.size + 8) * U * peak
    exact = gaussian_on_grid_2d(g1, g2, m, S)
    err = float(np.max(np.abs(res.density - exact)))
    assert err <= tol, (err, tol)
    assert tol < 1e-9  # the bound is informative: the grid resolves the chain
    assert res.escaped < 1e-9
    assert kl_grid_2d(exact, res.density, g1, g2) < 1e-12
    assert tv_grid_2d(exact, res.density, g1, g2) < 1e-9
    # moments of the grid density against the closed form
    X1, X2 = np.meshgrid(g1, g2, indexing="ij")
    w = res.density * dx1 * dx2
    mean = np.array([np.sum(w * X1), np.sum(w * X2)])
    assert np.max(np.abs(mean - m)) < 1e-9
    assert abs(np.sum(w * (X1 - m[0]) * (X2 - m[1])) - S[0, 1]) < 1e-9
    # refinement estimate agrees that the quadrature is converged
    err_ref = refinement_error_2d(
        lambda a1, a2: propagate_2d(gaussian_on_grid_2d(a1, a2, [-1.0, 0.5], [[0.5, 0.1], [0.1, 0.4]]), a1, a2,
                                    lambda X1, X2, k: (A[0, 0] * X1 + A[0, 1] * X2 + b[0],
                                                       A[1, 0] * X1 + A[1, 1] * X2 + b[1]), v, 2).density,
        uniform_grid(-7, 6, 41), uniform_grid(-6.5, 6.5, 41))
    assert err_ref < 1e-8


def test_product_separable_case_is_outer_product_of_1d():
    """m(x) = (m1(x1), m2(x2)) and p0 = p1 (x) p2: the 2-D chain is the outer product of two 1-D chains.

    Both sides are sums of the same nonnegative terms in another order, so they agree to
    steps x (n1 n2 + n1 + n2 + 8) u relatively (gamma_n bounds of the summations).  The 2-D escaped mass is
    sum_k (e1_k M2_k + M1_k e2_k), with e_k the 1-D escaped mass of step k and M_k the grid mass before it.
    """
    g1, g2 = uniform_grid(-5, 5, 61), uniform_grid(-4, 6, 51)
    dx1, dx2 = g1[1] - g1[0], g2[1] - g2[0]
    p1 = gaussian_on_grid(g1, 0.5, 0.6)
    p2 = 0.3 * gaussian_on_grid(g2, -1.0, 0.3) + 0.7 * gaussian_on_grid(g2, 1.5, 0.5)
    f1 = lambda x: x + 0.3 * np.sin(2 * x)  # noqa: E731
    f2 = lambda x: 0.7 * x - 0.2  # noqa: E731
    var = lambda k: 0.3 + 0.1 * k  # noqa: E731
    steps = 4
    res = propagate_2d(np.outer(p1, p2), g1, g2, lambda X1, X2, k: (f1(X1), f2(X2)), var, steps)
    r1 = propagate(p1, g1, lambda x, k: f1(x), var, steps)
    r2 = propagate(p2, g2, lambda x, k: f2(x), var, steps)
    outer = np.outer(r1.density, r2.density)
    tol = steps * (g1.size * g2.size + g1.size + g2.size + 8) * U * outer.max()
    assert np.max(np.abs(res.density - outer)) <= tol
    esc = 0.0
    for k in range(steps):
        a1 = propagate(p1, g1, lambda x, j: f1(x), var, k)
        a2 = propagate(p2, g2, lambda x, j: f2(x), var, k)
        e1 = propagate(a1.density, g1, lambda x, j: f1(x), lambda j: var(k), 1).escaped
        e2 = propagate(a2.density, g2, lambda x, j: f2(x), lambda j: var(k), 1).escaped
        esc += e1 * a2.density.sum() * dx2 + a1.density.sum() * dx1 * e2
    assert res.escaped > 1e-6  # the narrow box makes the escape visible
    assert abs(res.escaped - esc) <= 1e-12 + 64 * U * esc


def test_steps_zero_is_identity():
    g = uniform_grid(-4, 4, 21)
    p0 = gaussian_on_grid_2d(g, g, [0.0, 0.0], 1.0)
    res = propagate_2d(p0, g, g, lambda X1, X2, k: (X1, X2), 1.0, 0)
    assert np.array_equal(res.density, p0) and res.escaped == 0.0


@pytest.mark.parametrize("bad, name", [
    (lambda g: propagate_2d(np.ones((5, 4)), g, g, lambda X1, X2, k: (X1, X2), 1.0, 1), "density0"),
    (lambda g: propagate_2d(-np.ones((5, 5)), g, g, lambda X1, X2, k: (X1, X2), 1.0, 1), "density0"),
    (lambda g: propagate_2d(np.ones(25), g, g, lambda X1, X2, k: (X1, X2), 1.0, 1), "density0"),
    (lambda g: propagate_2d(np.ones((5, 5)), np.array([0, 1, 3, 4, 5.0]), g, lambda X1, X2, k: (X1, X2), 1.0, 1), "grid1"),
    (lambda g: propagate_2d(np.ones((5, 5)), g, g[::-1], lambda X1, X2, k: (X1, X2), 1.0, 1), "grid2"),
    (lambda g: propagate_2d(np.ones((5, 5)), g, g, lambda X1, X2, k: (X1, X2), 0.0, 1), "transition_var"),
    (lambda g: propagate_2d(np.ones((5, 5)), g, g, lambda X1, X2, k: (X1, X2), lambda k: -1.0, 1), "transition_var"),
    (lambda g: propagate_2d(np.ones((5, 5)), g, g, lambda X1, X2, k: (X1 * np.nan, X2), 1.0, 1), "transition_mean_fn"),
    (lambda g: propagate_2d(np.ones((5, 5)), g, g, lambda X1, X2, k: (X1[0], X2), 1.0, 1), "transition_mean_fn"),
    (lambda g: propagate_2d(np.ones((5, 5)), g, g, lambda X1, X2, k: X1, 1.0, 1), "transition_mean_fn"),
    (lambda g: propagate_2d(np.ones((5, 5)), g, g, lambda X1, X2, k: (X1, X2), 1.0, -1), "steps"),
    (lambda g: kl_grid_2d(np.ones((5, 4)), np.ones((5, 5)), g, g), "p"),
    (lambda g: gaussian_on_grid_2d(g, g, [0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]), "cov"),
    (lambda g: gaussian_on_grid_2d(g, g, [0.0], 1.0), "mean"),
    (lambda g: refinement_error_2d(lambda a, b: np.ones(3), g, g), "run"),
])
def test_bad_input_names_the_argument(bad, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        bad(np.linspace(0, 1, 5))


def test_kl_grid_2d_q_zero_rule():
    """KL is +inf where q vanishes on the support of p; cells where both vanish contribute nothing."""
    g = np.linspace(0.0, 1.0, 5)
    q = np.pad(np.ones((4, 5)), ((1, 0), (0, 0)))
    assert kl_grid_2d(np.ones((5, 5)), q, g, g) == math.inf
    assert kl_grid_2d(q, q, g, g) == 0.0


@pytest.mark.parametrize("n, sd_over_dx, spread, seed", [
    (301, 4.0, 0.5, 0), (301, 40.0, 2.0, 1), (97, 1.0, 0.0, 2), (512, 0.3, 1.0, 3), (64, 200.0, 5.0, 4),
])
def test_1d_gauss_transform_matches_the_dense_kernel(n, sd_over_dx, spread, seed):
    """The exponential-free recurrence of the 1-D propagation against the dense kernel (exp of every entry, BLAS
    sum), sources inside, at and beyond the grid's ends. Bound per entry, relative, in units of u = 2^-53: the
    difference g - m carries u (|g| + |m|), so the exponent z^2/2 of the dense entry and of each restart carries
    z^2 u (kappa + 2) with kappa = (|g| + |m|)/|g - m|, i.e. |z| (|g| + |m|)/sd + 2 z^2, and exp passes it on;
    the ratio r (exponent |z| dx/sd + dx^2/2sd^2, the same kappa) and one product enter at most R = RESTART
    times, the factor q (exponent dx^2/sd^2) and one product at most R^2/2 times; the recurrence steps by dx where
    the grid holds linspace's points (|dg| <= 4 u |g|: |z| 4|g|/sd). Summed with the same nonnegative weights;
    both sums add n terms (n u each). Far-tail entries (z ~ 30) carry ~1e-12 relative in both forms."""
    import math

    from numerics.references.grid_density import _gauss_transform

    rng = np.random.default_rng(seed)
    g = np.linspace(-6.0, 5.0, n)
    dx = g[1] - g[0]
    sd = sd_over_dx * dx
    m = 0.8 * g + spread * rng.standard_normal(n) + np.where(rng.random(n) < 0.05, 30.0, 0.0)
    w = rng.random(n)
    out = np.empty(n)
    _gauss_transform(g, dx, m, w, sd, out)
    z = (g[:, None] - m[None, :]) / sd
    with np.errstate(under="ignore"):
        K = np.exp(-0.5 * z**2) / (sd * math.sqrt(2 * math.pi))
    from numerics.references.grid_density import RESTART

    u = 2.0**-53
    a = np.abs(z)
    h2 = (dx / sd) ** 2
    gm = (np.abs(g)[:, None] + np.abs(m)[None, :]) / sd
    per_entry = u * (2 * (a * gm + 2 * z**2) + RESTART * (gm * dx / sd + 2 * a * dx / sd + h2 / 2 + 2)
                     + RESTART**2 / 2 * (h2 + 1) + a * 4 * np.abs(g)[:, None] / sd)
    bound = (K * per_entry) @ w + 2 * n * u * (K @ w)
    assert np.all(np.abs(out - K @ w) <= bound + 1e-300)


def test_gauss_kernel_matrix_rows_are_what_gauss_transform_sums():
    """The stored rows of the shared recurrence: each against the dense exp row (relative 1e-12 where the entry is
    above 1e-200), and their weighted sum equals gauss_transform's (same walk, summed in the same order: equal to
    rounding of the final sums); a wrong sd is far outside; bad sd names the argument."""
    from numerics.references.grid_density import gauss_kernel_matrix, gauss_transform

    rng = np.random.default_rng(5)
    g = np.linspace(-4.0, 4.0, 161)
    m = rng.uniform(-5.0, 5.0, 40)
    w = rng.uniform(0.0, 1.0, 40)
    for sd in (0.07, 0.5, 2.0):
        dense = np.exp(-0.5 * ((g[None, :] - m[:, None]) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        rows = gauss_kernel_matrix(g, m, sd)
        big = dense > 1e-200
        assert np.max(np.abs(rows[big] / dense[big] - 1)) < 1e-12
        assert np.all(rows[dense == 0.0] == 0.0)
        np.testing.assert_allclose(w @ rows, gauss_transform(g, m, w, sd), rtol=1e-13, atol=1e-300)
        assert np.max(np.abs(gauss_kernel_matrix(g, m, 1.01 * sd) - dense)) > 1e-3 * dense.max()
    with pytest.raises(ValueError, match="sd"):
        gauss_kernel_matrix(g, m, -1.0)


def test_run_concurrently_uses_the_threads_and_keeps_the_results():
    """With two Numba threads two jobs run at the same time (each waits at a two-party barrier: run one after the
    other they would time out); the results come back under their keys, a job's exception is raised, and one
    thread runs the jobs inline; bad jobs are refused."""
    import threading
    import time

    import numba

    from numerics.references.grid_density import run_concurrently

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        barrier = threading.Barrier(2, timeout=20)
        out = run_concurrently({k: (lambda k=k: (barrier.wait(), k * k, threading.get_ident())[1:]) for k in (3, 4)})
        assert [v[0] for v in out.values()] == [9, 16] and list(out) == [3, 4]
        assert out[3][1] != out[4][1] != threading.get_ident()
        started = []

        def fail():
            time.sleep(0.2)
            return 1 / 0
        later = {k: (lambda k=k: (started.append(k), time.sleep(0.5))) for k in range(2, 7)}
        with pytest.raises(ZeroDivisionError):
            run_concurrently({0: fail, 1: lambda: time.sleep(1.0), **later})
        assert len(started) <= 1  # at most the job the failed thread took next; the others were dropped
        numba.set_num_threads(1)
        assert run_concurrently({"a": threading.get_ident}) == {"a": threading.get_ident()}
    finally:
        numba.set_num_threads(old)
    with pytest.raises(ValueError, match="jobs"):
        run_concurrently({"a": 1})


def test_c8_chains_do_not_depend_on_threads():
    """C8's chains (d = 1 and d = 2, each grid and its halved spacing) run side by side: every output law is bit
    for bit the one of the chain run alone, for 1 and 2 threads."""
    import numba

    from numerics.papers.ce_guidance import claims as ce

    p = {"mu": 1.0, "T": 1.5, "N": 4, "n": 151, "lo": -7.0, "hi": 8.0, "perturbations": [[0.01, 10.0]],
         "loose_perturbations": [[0.2, 25.0]],
         "d2": {"mu": 1.0, "T": 1.5, "N": 3, "n": 25, "box": [[-6.5, 7.5], [-7.0, 7.0]], "perturbations": [[0.2, 5.0]]}}
    old = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            runs.append(ce._c8_chains(p, ce.C_EMVAR))
    finally:
        numba.set_num_threads(old)
    assert len(runs[0]) == 8 and runs[0].keys() == runs[1].keys()
    g = uniform_grid(-7.0, 8.0, 301)
    alone = ce.c8_chain(1.0, 1, 1.5, 4, 0.2, 25.0, g, ce.C_EMVAR)[0]
    g1, g2 = uniform_grid(-6.5, 7.5, 49), uniform_grid(-7.0, 7.0, 49)
    alone_2d = ce.c8_chain_2d(1.0, 1, 1.5, 3, 0.2, 5.0, g1, g2, ce.C_EMVAR)[0]
    for one, two in ((runs[0], runs[1]), (runs[0], {(1, 0.2, 25.0, True): (g, alone, None),
                                                    (2, 0.2, 5.0, True): (g1, g2, alone_2d, None)})):
        for key in two:
            a, b = one[key][-2], two[key][-2]
            assert np.array_equal(a.density, b.density) and a.escaped == b.escaped

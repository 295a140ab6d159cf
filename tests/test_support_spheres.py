"""The sphere target of the support claims (numerics.papers.support.spheres): the Bessel ratio and the score
against independent 30-digit mpmath oracles, the denoiser's limits, the radial recursion, and bad input."""
import math

import mpmath as mp
import numpy as np
import pytest

from numerics.constants import UNIT_ROUNDOFF as U
from numerics.grids import time_grid
from numerics.papers.support.spheres import (SphereTarget, _asy_start, bessel_ratio, bessel_ratio_over_z, log_bessel_scaled,
                                             median_lower_quantile, radial_recursion)
from numerics.papers.support.sweeps import point_mass_law
from numerics.samplers import sample

mp.mp.dps = 30
NUS = [0.0, 0.5, 1.0, 1.5, 7.5, 30.0, 63.5]


def _mp_ratio(nu, z):
    z = mp.mpf(z)
    return mp.besseli(nu + 1, z) / mp.besseli(nu, z)


@pytest.mark.parametrize("nu", NUS)
def test_bessel_ratio_against_mpmath(nu):
    """Relative error <= 32 u (RATIO_REL_ERR) over z in [1e-300, 1e12], across the three branches' borders (the
    asymptotic branch from _asy_start(nu): 20 to 1e7, here 20 to 8.4e4; dense just above it, where its
    truncation is largest)."""
    za = _asy_start(nu)
    zs = np.concatenate([[1e-300, 1e-20, 1e-8], np.geomspace(1e-3, 1e12, 45), [nu + 1, nu + 1 + 1e-9, 1e7 * (1 - 1e-12), 1e7],
                         [za * (1 - 1e-12)], za * np.geomspace(1.0, 4.0, 12)])
    r = bessel_ratio(nu, zs)
    for z, ri in zip(zs, r):
        ref = _mp_ratio(nu, z)
        assert abs(ri - ref) <= 32 * U * abs(ref), (nu, z, ri, float(ref))


def test_half_order_closed_form_against_mpmath():
    """nu = 1/2 (the 2-sphere): the closed form (coth z - 1/z)/z of the middle branch within 27 u of 30-digit
    mpmath on 400 points of (3/2, 20), densest at 3/2 where the difference cancels most."""
    zs = 1.5 + np.geomspace(1e-9, 18.5, 400)
    s = bessel_ratio_over_z(0.5, zs)
    for z, si in zip(zs, s):
        ref = _mp_ratio(0.5, z) / mp.mpf(z)
        assert abs(si - ref) <= 27 * U * abs(ref), (z, si, float(ref))


def test_asymptotic_branch_starts_where_its_truncation_is_below_u():
    """_asy_start: 20 for half-integer orders (terminating series), about 194 for nu = 0, 1e7 at most; and below
    it the series would be measurably worse (at Z/3 twice the first omitted term exceeds u)."""
    assert _asy_start(0.5) == 20.0 and _asy_start(1.5) == 20.0
    assert 190 < _asy_start(0.0) < 200 and 200 < _asy_start(1.0) < 210
    assert _asy_start(128.0) <= 1e7
    a8 = math.prod((4.0 - (2 * j - 1) ** 2) / (8.0 * j) for j in range(1, 9))  # a_8(mu = 1)
    assert 2 * abs(a8) / _asy_start(0.0) ** 8 <= U / 16 < 2 * abs(a8) / (_asy_start(0.0) / 3) ** 8


@pytest.mark.parametrize("nu", [0.0, 0.5, 2.0, 63.5])
def test_bessel_ratio_limits(nu):
    """r(0) = 0, r(z)/z -> 1/(2 nu + 2) at 0; 1 - r(z) ~ (2 nu + 1)/(2z) at infinity (to O(nu^2/z^2))."""
    assert bessel_ratio(nu, 0.0) == 0.0
    assert bessel_ratio_over_z(nu, 0.0) == pytest.approx(1 / (2 * nu + 2), rel=4 * U)
    assert bessel_ratio_over_z(nu, 1e-12) == pytest.approx(1 / (2 * nu + 2), rel=1e-20 + 4 * U)
    for z in (1e8, 1e10, 1e14, 1e300):
        one_minus = 1.0 - float(bessel_ratio(nu, z))
        pred = (2 * nu + 1) / (2 * z)
        assert abs(one_minus - pred) <= (nu * nu + 1) / z / z + 2 * U, (nu, z)
    r = bessel_ratio(nu, np.geomspace(1e-5, 1e9, 200))
    assert np.all(np.diff(r) >= 0) and np.all((r >= 0) & (r < 1))


@pytest.mark.parametrize("nu", [0.0, 0.5, 7.5, 63.5])
def test_log_bessel_scaled_against_mpmath(nu):
    for z in [1e-200, 1e-6, 0.3, nu + 1, nu + 2, 40.0, 1e4, 1e8]:
        zz = mp.mpf(z)
        ref = mp.loggamma(nu + 1) + nu * mp.log(2 / zz) + mp.log(mp.besseli(nu, zz)) - zz
        got = float(log_bessel_scaled(nu, z))
        assert abs(got - ref) <= 64 * U * max(1.0, abs(float(ref))), (nu, z, got, float(ref))


def _mp_score(tg: SphereTarget, y: np.ndarray, t: float):
    """Independent 30-digit score: (lambda R I_{nu+1}(z)/I_nu(z) y_par/|y_par| - y)/sigma^2, all in mpmath, and
    the radial derivative of the mpmath log-density by mpmath's numerical differentiation."""
    lam = mp.e ** (-mp.mpf(t))
    s2 = 1 - mp.e ** (-2 * mp.mpf(t))
    R, nu, k = mp.mpf(tg.R), mp.mpf(tg.k - 1) / 2, tg.k
    yp = [mp.mpf(float(v)) for v in y]
    rho = mp.sqrt(sum(v * v for v in yp[: k + 1]))
    z = lam * R * rho / s2
    ratio = mp.besseli(nu + 1, z) / mp.besseli(nu, z)
    score = [(lam * R * ratio * v / rho - v) / s2 for v in yp[: k + 1]] + [-v / s2 for v in yp[k + 1:]]

    def logp_radial(r):  # the rho-dependent part of log p_t, written from the vMF integral
        zr = lam * R * r / s2
        return -r * r / (2 * s2) + nu * mp.log(2 / zr) + mp.log(mp.besseli(nu, zr))
    dlog = mp.diff(logp_radial, rho)
    return score, dlog, rho, s2, lam


CASES = [(1, 2, 0.3), (1, 16, 1e-6), (2, 3, 5.0), (2, 256, 1e-6), (2, 256, 5.0), (1, 256, 0.05), (7, 64, 1e-3),
         (2, 16, 1e-4)]


@pytest.mark.parametrize("k,d,t", CASES)
def test_score_against_mpmath(k, d, t):
    """Score and denoiser against the 30-digit oracle; tolerance from the conditioning of (lambda D - y)/sigma^2:
    |err| <= ((2(k+1) + 16) u (|y| + lambda R) + 32 u lambda R)/sigma^2 (the norm of y_par, sigma^2, lambda, one
    rounding per operation, and the ratio's 32 u)."""
    rng = np.random.default_rng(hash((k, d)) % 2**32)
    tg = SphereTarget(k, d, R=1.3)
    lam, s2 = math.exp(-t), -math.expm1(-2 * t)
    u = rng.standard_normal((4, k + 1))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    y = math.sqrt(s2) * rng.standard_normal((4, d))
    y[:, : k + 1] += lam * tg.R * u
    y[3] *= 0.01  # a point near the centre (small z)
    s = tg.score(y, t)
    for i in range(y.shape[0]):
        ref, dlog, rho, s2m, lamm = _mp_score(tg, y[i], t)
        tol = ((2 * (k + 1) + 16) * U * (np.linalg.norm(y[i]) + lam * tg.R) + 32 * U * lam * tg.R) / s2
        err = max(abs(float(a - b)) for a, b in zip(s[i], ref))
        assert err <= tol, (k, d, t, i, err, tol)
        # the radial component against the derivative of the independent log-density (mpmath diff, 30 digits)
        radial = float(np.dot(s[i, : k + 1], y[i, : k + 1]) / np.linalg.norm(y[i, : k + 1]))
        assert abs(radial - float(dlog)) <= tol * math.sqrt(k + 1) + 1e-20 * abs(float(dlog)), (k, d, t, i)


def test_score_is_gradient_of_log_density():
    """Central differences of the package's own log-density (h = 1e-6 sigma) agree with its score to the
    truncation h^2 |d^3 log p|/6 <~ 1e-12/sigma plus rounding u |log p|/h."""
    tg = SphereTarget(2, 8)
    rng = np.random.default_rng(3)
    for t in (0.01, 0.5, 3.0):
        lam, s2 = math.exp(-t), -math.expm1(-2 * t)
        sig = math.sqrt(s2)
        y = sig * rng.standard_normal((3, 8))
        y[:, 0] += lam
        h = 1e-6 * sig
        for i in range(3):
            lp = float(np.abs(tg.log_density(y[i:i + 1], t))[0])
            for j in range(8):
                e = np.zeros(8)
                e[j] = h
                fd = (tg.log_density(y[i:i + 1] + e, t)[0] - tg.log_density(y[i:i + 1] - e, t)[0]) / (2 * h)
                tol = 1e-10 / sig + 4 * U * (lp + 10) / h
                assert abs(fd - tg.score(y[i:i + 1], t)[0, j]) <= tol


def test_denoiser_norm_and_small_t_limit():
    rng = np.random.default_rng(1)
    for k, d in [(1, 5), (2, 256)]:
        tg = SphereTarget(k, d, R=2.0)
        y = 3 * rng.standard_normal((200, d))
        for t in (1e-8, 1e-3, 0.5, 5.0, 40.0):
            D = tg.denoiser(y, t)
            assert np.all(np.linalg.norm(D, axis=1) < tg.R)
            assert np.all(D[:, k + 1:] == 0.0)
        # t -> 0: |D - R y_par/|y_par|| = R (1 - r(z)) <= R (2 nu + 1)/(2 z) (1 + 1e-6) once z >= 1e6
        t = 1e-10
        lam, s2 = math.exp(-t), -math.expm1(-2 * t)
        yp = y[:, : k + 1]
        rho = np.linalg.norm(yp, axis=1)
        keep = rho > 1e-3
        z = lam * tg.R * rho / s2
        D = tg.denoiser(y, t)[:, : k + 1]
        gap = np.linalg.norm(D - tg.R * yp / rho[:, None], axis=1)
        assert np.all(gap[keep] <= tg.R * k / (2 * z[keep]) * (1 + 1e-6) + 8 * U * tg.R)
    # y_par = 0: D = 0 and the score is -y/sigma^2 exactly
    tg = SphereTarget(2, 6)
    y = np.zeros((1, 6))
    y[0, 4] = 0.7
    assert np.all(tg.denoiser(y, 0.3) == 0.0)
    assert np.array_equal(tg.score(y, 0.3), -y / -math.expm1(-0.6))


def test_distance_and_normal_parts():
    tg = SphereTarget(1, 4, R=2.0)
    x = np.array([[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 4.0], [1.2, 1.6, 0.0, 0.0]])
    assert np.allclose(tg.distance(x), [1.0, math.hypot(2.0, 5.0), 0.0], rtol=0, atol=4 * U * 5)
    e, p = tg.normal_parts(x)
    assert np.allclose(e, [1.0, -2.0, 0.0], atol=8 * U) and np.allclose(p, [0.0, 5.0, 0.0])


def test_sampler_runs_and_ends_near_sphere():
    """DDIM on S^2 in R^256: the perpendicular block is A z_perp exactly (rounding), the radius follows the
    radial recursion within its propagated bound."""
    tg = SphereTarget(2, 256)
    grid = time_grid("geometric", T=5.0, delta=1e-4, kappa=0.1)
    z = np.random.default_rng(0).standard_normal((50, 256))
    y = sample(tg, "ddim", grid=grid, n=50, x_init=z)
    rho0 = np.linalg.norm(z[:, :3], axis=1)
    rho, err = radial_recursion("ddim", grid, rho0, 1.0, 0.5, 2)
    dev = np.linalg.norm(y[:, :3] - (rho / rho0)[:, None] * z[:, :3], axis=1)
    assert np.all(dev <= err)
    A = point_mass_law("ddim", grid).A
    N = grid.size - 1
    tau = 8 * N * U * (np.max(np.abs(y[:, 3:])) + np.max(np.abs(z[:, 3:]))) * (1 + A)
    assert np.max(np.abs(y[:, 3:] - A * z[:, 3:])) <= tau
    # hence the distance is sqrt((rho_N - R)^2 + A^2 |z_perp|^2): about sigma_delta sqrt(d - k), not sigma_delta
    law = np.hypot(rho - 1.0, A * np.linalg.norm(z[:, 3:], axis=1))
    assert np.all(np.abs(tg.distance(y) - law) <= err + tau * math.sqrt(253))


def test_median_lower_quantile():
    from scipy.stats import binom
    beta = median_lower_quantile(401, 1e-6)
    assert binom.sf(200, 401, beta) <= 1e-6 < binom.sf(200, 401, beta * (1 + 1e-6))


@pytest.mark.parametrize("kwargs,name", [({"k": 0, "d": 3}, "k"), ({"k": 1.5, "d": 3}, "k"), ({"k": 2, "d": 2}, "d"),
                                         ({"k": 1, "d": 257}, "d"), ({"k": 1, "d": 3, "R": 0.0}, "R"),
                                         ({"k": 1, "d": 3, "R": float("nan")}, "R"), ({"k": 1, "d": 3, "R": "1"}, "R")])
def test_bad_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        SphereTarget(**kwargs)


def test_bad_call_arguments():
    tg = SphereTarget(1, 3)
    with pytest.raises(ValueError, match="^x:"):
        tg.score(np.zeros((2, 4)), 0.5)
    with pytest.raises(ValueError, match="^x:"):
        tg.denoiser(np.full((1, 3), np.nan), 0.5)
    for t in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="^t:"):
            tg.score(np.zeros((1, 3)), t)
    with pytest.raises(ValueError, match="^y:"):
        tg.guidance_vector(np.zeros((1, 3)), 0.5, 1)
    with pytest.raises(ValueError, match="^nu:"):
        bessel_ratio(-0.5, 1.0)
    with pytest.raises(ValueError, match="^nu:"):
        bessel_ratio(200.0, 1.0)
    with pytest.raises(ValueError, match="^z:"):
        bessel_ratio(0.5, -1.0)
    with pytest.raises(ValueError, match="^z:"):
        bessel_ratio(0.5, [1.0, float("nan")])
    with pytest.raises(ValueError, match="^method:"):
        radial_recursion("ddpm", np.array([1.0, 0.5]), np.ones(2), 1.0, 0.0, 1)


# ------------------------------------------------------------------ compiled kernels against their NumPy forms
@pytest.mark.parametrize("nu", [0.0, 0.5, 1.0, 7.5, 63.5, 128.0])
def test_recurrence_kernel_is_the_numpy_recurrence(nu):
    """The compiled backward recurrence of bessel_ratio_over_z equals the former NumPy loop bit for bit."""
    from numerics.papers.support.spheres import _ratio_over_z_small, _ratio_over_z_small_numpy

    z = np.concatenate([[0.0, 1e-300, 1e-20, 1e-8, nu + 1.0],
                        np.random.default_rng(int(2 * nu)).uniform(0.0, nu + 1.0, 2000)])
    got, ref = _ratio_over_z_small(nu, z), _ratio_over_z_small_numpy(nu, z)
    assert got.dtype == np.float64 and np.array_equal(got, ref)
    assert got[0] == pytest.approx(1 / (2 * nu + 2), rel=4 * U)  # and it is the ratio, not just a copy


def test_score_is_the_former_numpy_form():
    """The score's x / -s2 is the former (-x) / s2 bit for bit, off the span and on it."""
    tg = SphereTarget(2, 64)
    x = np.random.default_rng(4).standard_normal((80, 64)) * np.geomspace(1e-3, 1e3, 80)[:, None]
    x[0] = 0.0
    for t in (1e-6, 0.01, 0.7, 5.0):
        x_, rho, lam, s2, z = tg._z(x, t)
        ref = -x / s2
        ref[:, :3] += (lam / s2) * tg._factor(rho, lam, s2, z)[:, None] * x[:, :3]
        assert np.array_equal(tg.score(x, t), ref)
        assert np.array_equal(np.signbit(tg.score(x, t)), np.signbit(ref))


def _old_control(tg, grid, bug):
    """The controls as the claim built them before: ScoreModel lambdas around the stated target."""
    from numerics.target import ScoreModel

    if bug == "alpha_dropped":
        return ScoreModel(lambda x, t: (tg.denoiser(x, t) - x) / -math.expm1(-2 * t), tg.d, n_classes=1)
    if bug == "score_step_late":
        nxt = {float(t): float(s) for t, s in zip(grid[:-1], grid[1:])}
        return ScoreModel(lambda x, t: tg.score(x, nxt.get(t, t)), tg.d, n_classes=1)
    return ScoreModel(lambda x, t: tg.score(x, t).astype(np.float32).astype(np.float64), tg.d, n_classes=1)


@pytest.mark.parametrize("bug", ["alpha_dropped", "score_step_late", "float32_score"])
def test_control_targets_are_the_score_model_controls(bug):
    """The SphereTarget subclass of a score control gives the ScoreModel lambda's score and Tweedie denoiser bit for
    bit, and so the same samples, for a score and a denoiser method; and it differs from the stated target."""
    from numerics.papers.support.spheres import _buggy

    tg = SphereTarget(2, 16)
    grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=0.1)
    new, old = _buggy(tg, grid, bug), _old_control(tg, grid, bug)
    x = np.random.default_rng(3).standard_normal((40, 16))
    for t in map(float, grid[[0, 20, -2]]):
        assert np.array_equal(new.score(x, t), old.score(x, t))
        assert np.array_equal(new.denoiser(x, t), old.denoiser(x, t))
        assert not np.array_equal(new.score(x, t), tg.score(x, t))
    for method in ("ddim", "ei_ode", "ddpm"):
        a = sample(new, method, grid=grid, n=40, x_init=x, seed=5)
        assert np.array_equal(a, sample(old, method, grid=grid, n=40, x_init=x, seed=5))


def test_radial_recursion_memo_is_exact():
    """The memoised radial recursion returns the loop's result for exactly its inputs (a changed start or order is
    recomputed), and copies: changing a result does not change the next one."""
    from numerics.papers.support.spheres import _radial_recursion

    grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=0.1)
    rho0 = np.linalg.norm(np.random.default_rng(1).standard_normal((30, 2)), axis=1)
    first = radial_recursion("ei_ode", grid, rho0, 1.0, 0.0, 1)
    first[0][:] = -1.0
    again = radial_recursion("ei_ode", grid, rho0, 1.0, 0.0, 1)
    ref = _radial_recursion("ei_ode", grid, rho0.copy(), 1.0, 0.0, 1)
    assert all(np.array_equal(a, b) for a, b in zip(again, ref)) and np.all(again[0] > 0)
    rho1 = rho0.copy()
    rho1[3] = np.nextafter(rho1[3], 10.0)
    moved = radial_recursion("ei_ode", grid, rho1, 1.0, 0.0, 1)
    assert np.array_equal(moved[0], _radial_recursion("ei_ode", grid, rho1.copy(), 1.0, 0.0, 1)[0])
    assert not np.array_equal(radial_recursion("ei_ode", grid, rho0, 1.0, 0.5, 1)[0], again[0])


def test_radial_ends_are_the_separate_recursions():
    """One radial pass along the smallest delta's grid, branched one step to each larger delta, gives each grid's
    (rho_N, E_N) of the loop run on that grid alone, bit for bit, for both methods and two orders; the memo then
    serves radial_recursion; a grid that is not a prefix is refused."""
    from numerics.papers.support import spheres as S

    deltas = [1e-2, 1e-3, 1e-4]
    grids = {d: time_grid("geometric", T=5.0, delta=d, kappa=0.1) for d in deltas}
    rho0 = np.linalg.norm(np.random.default_rng(2).standard_normal((50, 3)), axis=1)
    for method in ("ddim", "ei_ode"):
        for nu in (0.0, 0.5):
            S._RADIAL_MEMO.clear()
            ends = S.radial_ends(method, grids, deltas, rho0, 1.0, nu, 2)
            for d in deltas:
                ref = S._radial_recursion(method, grids[d], rho0.copy(), 1.0, nu, 2)
                assert all(np.array_equal(a, b) for a, b in zip(ends[d], ref))
                assert len(S._RADIAL_MEMO) == 3 and all(np.array_equal(a, b) for a, b in zip(
                    S.radial_recursion(method, grids[d], rho0, 1.0, nu, 2), ref))
            assert not np.array_equal(ends[1e-2][0], ends[1e-3][0])
    bad = dict(grids)
    bad[1e-3] = time_grid("geometric", T=5.0, delta=1e-3, kappa=0.2)
    S._RADIAL_MEMO.clear()
    with pytest.raises(ValueError, match="grids:"):
        S.radial_ends("ddim", bad, deltas, rho0, 1.0, 0.0, 2)


@pytest.mark.parametrize("bug", [None, "bessel_order", "alpha_dropped", "score_step_late", "float32_score"])
def test_branched_ends_are_the_separate_runs(bug):
    """One run along the smallest delta's geometric grid, branched one step to each larger delta, gives every
    delta's end point of a separate run bit for bit, for both deterministic methods and both stochastic ones (with
    the block stream and one seed), the stated target and each control (score_step_late's last step depends on its
    grid); a grid that is not a prefix, or a stochastic method on the sequential stream, is refused."""
    from numerics.papers.support.spheres import _buggy
    from numerics.papers.support.sweeps import branched_ends

    tg = SphereTarget(1, 8)
    deltas = [1e-2, 1e-3, 1e-4]
    grids = {d: time_grid("geometric", T=5.0, delta=d, kappa=0.1) for d in deltas}
    z = np.random.default_rng(4).standard_normal((30, 8))
    for method in ("ddim", "ei_ode", "ddpm", "ei_sde_code"):
        kw = {"seed": 17, "noise": "blocks"} if method in ("ddpm", "ei_sde_code") else {}
        ends = branched_ends(lambda g: _buggy(tg, g, bug), method, grids, deltas, z, **kw)
        for d in deltas:
            assert np.array_equal(ends[d], sample(_buggy(tg, grids[d], bug), method, grid=grids[d], n=30, x_init=z,
                                                  **kw))
        assert not np.array_equal(ends[1e-2], ends[1e-3])
    bad = dict(grids)
    bad[1e-3] = time_grid("geometric", T=5.0, delta=1e-3, kappa=0.2)
    with pytest.raises(ValueError, match="grids:"):
        branched_ends(lambda g: _buggy(tg, g, bug), "ddim", bad, deltas, z)
    with pytest.raises(ValueError, match="method:"):
        branched_ends(lambda g: _buggy(tg, g, bug), "dpm_solver_2", grids, deltas, z)
    with pytest.raises(ValueError, match="method:"):  # a stochastic method needs the block stream
        branched_ends(lambda g: _buggy(tg, g, bug), "ddpm", grids, deltas, z, seed=17)

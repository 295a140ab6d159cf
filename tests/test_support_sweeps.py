"""The support claims' exact point-mass laws (numerics.papers.support.sweeps) and the late wrong-class
2-cycle: the hand-derived coefficients against the SymPy-generated ones the samplers use, and the laws'
closed-form consequences."""
import math

import numpy as np
import pytest

from numerics.methods import TABLE
from numerics.papers.support.claims import (OnePass, _buggy_line_target, _shared_sample, atoms_c4, cycle_radius,
                                            cycle_tolerance, line_atoms, step_coefficients, wrong_class_recursion)
from numerics.papers.support.sweeps import (GRID_KINDS, SWEEP_ETA, SWEEP_METHODS, ks_ratio, ks_statistic_normal,
                                            point_mass_law, point_mass_step, sweep_grid)
from numerics.samplers import sample
from numerics.target import ScoreModel


def _ks_samples():
    """Samples the sweeps test and ones that probe the statistic's edge cases: N(0, 1) of many sizes, shifted and
    scaled laws (D+ and D- each the larger), ties, values beyond the normal CDF's saturation."""
    rng = np.random.default_rng(20261206)
    out = [rng.standard_normal(m) for m in (1, 2, 3, 17, 100, 1000, 2048, 4097)]
    out += [rng.standard_normal(500) + 0.2, rng.standard_normal(500) - 0.2, 1.5 * rng.standard_normal(300),
            np.round(rng.standard_normal(400), 1), np.array([-40.0, -9.0, 0.0, 9.0, 40.0]), np.zeros(7)]
    return out


@pytest.mark.parametrize("z", _ks_samples(), ids=lambda z: f"m{z.size}")
def test_ks_statistic_is_scipys_bit_for_bit(z):
    """The direct statistic is scipy's kstest statistic, the same float (a sort, the ndtr CDF or the two one-sided
    maxima done differently would move it), and ks_ratio divides it by the exact law's critical value."""
    from scipy.stats import kstest, kstwo

    want = kstest(z, "norm").statistic
    assert ks_statistic_normal(z) == want
    assert ks_statistic_normal(z.reshape(1, -1)) == want  # ks_ratio's callers pass raveled samples; any shape works
    assert ks_ratio(z, 1e-3) == float(want / kstwo.isf(1e-3, z.size))
    assert ks_ratio(z, 0.25) == float(want / kstwo.isf(0.25, z.size))


def test_ks_ratio_rejects_a_wrong_law():
    """A sample of N(0.3, 1) is rejected at level 1e-6 and one of N(0, 1) is not: a statistic that lost D- or D+, or
    a critical value of the asymptotic law at the wrong scale, would not separate them at m = 4000."""
    rng = np.random.default_rng(7)
    assert ks_ratio(rng.standard_normal(4000) + 0.3, 1e-6) > 1.0
    assert ks_ratio(-(rng.standard_normal(4000) + 0.3), 1e-6) > 1.0
    assert ks_ratio(rng.standard_normal(4000), 1e-6) < 1.0


STEPS = [(5.0, 4.9), (1.0, 0.9), (0.1, 0.05), (1e-3, 1e-3 / 1.1), (1e-7, 5e-8)]


def _generated_point_mass(method, t, s):
    """(a, b, nu) from the generated coefficients: x_s = c_x x + c_q q + c_z z with q = D = a (denoiser
    methods) or q = S = (lambda_t a - x)/sigma_t^2 (score methods)."""
    rec = TABLE[method]
    if rec.takes_eta:
        co = rec.coeffs(t, s, SWEEP_ETA)
    elif rec.first_step is not None:
        co = rec.coeffs(t, s, t + 0.3 * (t - s))  # the multistep term multiplies D_t - D_prev = 0
        co = (co[0], co[1] + co[2])
    else:
        co = rec.coeffs(t, s)
    cx, cq = float(co[0]), float(co[1])
    nu = float(co[2]) ** 2 if rec.stochastic else 0.0
    if rec.q == "denoiser":
        return cx, cq, nu
    s2t = -math.expm1(-2 * t)
    return cx - cq / s2t, cq * math.exp(-t) / s2t, nu


@pytest.mark.parametrize("method", SWEEP_METHODS)
@pytest.mark.parametrize("t,s", STEPS)
def test_hand_derived_step_equals_generated_coefficients(method, t, s):
    """The support note's table (written by hand) against the SymPy-generated tables: a wrong row (a dropped
    lambda, e^h for e^{-h}, a variance for a std) differs far beyond rounding."""
    got = point_mass_step(method, t, s, SWEEP_ETA)
    ref = _generated_point_mass(method, t, s)
    for g, r in zip(got, ref):
        assert g == pytest.approx(r, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("method", ["ddim", "ddpm", "ddim_eta", "ei_ode", "ei_sde", "ei_sde_code"])
def test_exponential_rows_keep_the_mean_on_lambda_a(method):
    """a_k lambda_t + b_k = lambda_s for the exponential-integrator rows, so B = lambda_delta - A lambda_T."""
    grid = sweep_grid("geometric", 1e-5, 0.1, 0)
    law = point_mass_law(method, grid)
    assert law.B == pytest.approx(math.exp(-1e-5) - law.A * math.exp(-5.0), rel=1e-12)


def test_euler_rows_miss_the_mean_by_their_local_error():
    grid = sweep_grid("uniform", 1e-3, 0.1, 20)
    law = point_mass_law("euler", grid)
    assert abs(law.B - (math.exp(-1e-3) - law.A * math.exp(-5.0))) > 1e-3


@pytest.mark.parametrize("method,eta", [("ddpm", None), ("ddim_eta", 0.3), ("ddim_eta", 1.0), ("ddim", None)])
@pytest.mark.parametrize("kind", GRID_KINDS)
def test_denoiser_steps_preserve_the_forward_marginal(method, eta, kind):
    """From N(lambda_T a, sigma_T^2 I) the denoiser-frozen steps on a point mass give N(lambda_delta a,
    sigma_delta^2 I) exactly on every grid (the DDIM-eta family samples the forward posterior)."""
    grid = sweep_grid(kind, 1e-4, 0.1, 30)
    law = point_mass_law(method, grid, eta)
    var = law.A ** 2 * -math.expm1(-10.0) + law.V
    assert var == pytest.approx(-math.expm1(-2e-4), rel=1e-10)


def test_score_frozen_steps_do_not_converge_on_a_uniform_grid():
    """The finding recorded by support.sampler_laws: with n fixed the uniform grid's last step has a fixed
    length, so r_delta tends to a positive constant for ei_ode, Euler and the SDE steps, to 0 for DDIM."""
    r = {m: [point_mass_law(m, sweep_grid("uniform", d, 0.1, 50)).radius for d in (1e-4, 1e-8)]
         for m in ("ei_ode", "euler", "ei_sde", "ddim")}
    for m in ("ei_ode", "euler", "ei_sde"):
        assert r[m][1] > 0.2 and r[m][1] == pytest.approx(r[m][0], rel=1e-2)
    assert r["ddim"][1] < 1e-3


@pytest.mark.parametrize("method", ["ddim", "ei_ode", "euler", "dpm_solver_2"])
def test_deterministic_sampler_follows_the_law_per_sample(method):
    gm = line_atoms()
    grid = sweep_grid("logsnr", 1e-4, 0.1, 25)
    z = np.random.default_rng(3).standard_normal((50, 3))
    y = sample(gm, method, grid=grid, n=50, x_init=z, label=1, guidance=4.0)
    law = point_mass_law(method, grid)
    assert np.max(np.abs(y[:, 1:] - (law.A * z[:, 1:] + law.B * gm.means[0, 1:]))) < 1e-12


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="method"):
        point_mass_step("heun", 1.0, 0.5)
    with pytest.raises(ValueError, match="kind"):
        sweep_grid("cosine", 1e-3, 0.1, 10)


@pytest.mark.parametrize("method,kappa", [("ei_ode", 0.1), ("ddim", 0.1), ("ei_ode", 0.5), ("ddim", 0.5)])
def test_cycle_radius_is_a_two_cycle_of_the_tail_map(method, kappa):
    c = kappa / (2 * (1 + kappa)) if method == "ei_ode" else 1 - (1 + kappa) ** -0.5
    gamma = 1.8 / c
    ys = cycle_radius(method, kappa, gamma)
    assert (1 - c) * ys - c * (gamma - 1) == pytest.approx(-ys, rel=1e-14)
    # the tail limit of the hand-derived coefficients is the c used
    a_k, c_k = step_coefficients(method, 1e-9, 1e-9 / (1 + kappa))
    assert c_k == pytest.approx(c, rel=1e-6) and a_k == pytest.approx(1 - c, rel=1e-6)


def test_wrong_class_recursion_converges_to_the_cycle_within_its_bound():
    kappa, method = 0.1, "ei_ode"
    c = kappa / (2 * (1 + kappa))
    full = np.array([1e-3 / 1.1 ** k for k in range(0, 200)])
    y = wrong_class_recursion(method, full, np.array([math.exp(-1e-3)]), 1.8 / c)[:, 0]
    ys = cycle_radius(method, kappa, 1.8 / c)
    assert np.all(np.sign(y[1:]) == -np.sign(y[:-1]))  # alternates between the wrong basins
    bound = cycle_tolerance(method, full, kappa, 1.8 / c, float(y[0]))
    assert abs(abs(y[-1]) - ys) <= bound < 1e-3
    # below the recovery threshold the first step lands in the guided basin and the sample contracts
    y_lo = wrong_class_recursion(method, full, np.array([math.exp(-1e-3)]), 0.8 / c)[:, 0]
    assert abs(y_lo[1]) < 0.5 and abs(y_lo[-1]) < 1e-3


@pytest.mark.parametrize("method", ["ei_ode", "ddim"])
@pytest.mark.parametrize("control", [None, "score_step_late", "clip_denoiser"])
def test_threshold_runs_branch_equals_separate_runs(method, control):
    """support.above_threshold's runs to several deltas, branched from one run to the smallest, equal the separate
    run to each delta bit for bit (stated and with controls that step through ScoreModel wrappers); a branch
    from a wrong node would move them."""
    from numerics.checks.claim import Context
    from numerics.grids import time_grid
    from numerics.papers.support.claims import _threshold_run, _threshold_runs, three_atoms_line

    ctx = Context("support.test_threshold", {}, "quick", 0, control,
                  ("w_minus_1", "guidance_sign", "score_step_late", "clip_denoiser"))
    gm, x0, deltas = three_atoms_line(), np.linspace(-2.5, 2.5, 41), [1e-4, 1e-6, 1e-5]
    runs = _threshold_runs(ctx, gm, method, 0.1, deltas, x0, 90.0)
    assert list(runs) == deltas
    for d in deltas:
        grid = time_grid("geometric", T=5.0, delta=d, kappa=0.1)
        g, y = runs[d]
        assert np.array_equal(g, grid)
        assert np.array_equal(y, _threshold_run(ctx, gm, method, grid, x0, 90.0))


# ----------------------------------------------------------------------------- shared work of the controls
def _two_pass_target(gm, grid, bug):
    """The sampler-laws control targets as they were: the mixture's own score, denoiser and guidance methods
    (two reference kernel passes per step)."""
    nxt = {float(t): float(s) for t, s in zip(grid[:-1], grid[1:])}
    if bug == "score_step_late":
        return ScoreModel(lambda x, t: gm.score(x, nxt.get(t, t)), 3,
                          guidance=lambda x, t, y: gm.guidance_vector(x, nxt.get(t, t), y), n_classes=2)
    assert bug == "alpha_dropped"
    return ScoreModel(lambda x, t: (gm.denoiser(x, t) - x) / -math.expm1(-2 * t), 3,
                      guidance=gm.guidance_vector, n_classes=2)


@pytest.mark.parametrize("bug", ["score_step_late", "alpha_dropped"])
@pytest.mark.parametrize("method", ["ddim", "ei_ode", "ei_sde"])
def test_one_pass_controls_equal_two_pass(bug, method, monkeypatch):
    """The controls' targets on OnePass take one kernel pass per step (two before) and give the two-pass run's
    samples to rounding: the Tweedie scores differ from the kernel's by a few u of (|x| + |alpha mu|)/sigma^2, and
    the run's own rounding bound is 8 N u (max|y| + max|z|)(1 + A) (the law check's unit), about 1e-13 of the
    scale here; measured 0 to 2.7e-16 of it.  1e-9 of the scale sits far above both and far below the O(1) move
    of another bug (asserted)."""
    gm = line_atoms()
    grid = sweep_grid("geometric", 1e-4, 0.5, 50)
    z = np.random.default_rng(3).standard_normal((64, 3))
    calls = []
    orig = type(gm)._average
    monkeypatch.setattr(type(gm), "_average", lambda self, *a, **k: calls.append(1) or orig(self, *a, **k))
    kw = dict(grid=grid, n=64, x_init=z, label=1, guidance=5.0, seed=7)
    one = sample(_buggy_line_target(gm, grid, bug), method, **kw)
    n_one = len(calls)
    two = sample(_two_pass_target(gm, grid, bug), method, **kw)
    assert n_one == grid.size - 1 + 2  # one pass per step (+ the ScoreModel's two test calls)
    assert len(calls) - n_one == 2 * (grid.size - 1) + 2
    scale = np.abs(two).max()
    assert np.abs(one - two).max() <= 1e-9 * scale
    late = sample(_buggy_line_target(gm, grid, "score_step_late" if bug == "alpha_dropped" else "alpha_dropped"),
                  method, **kw)
    assert np.abs(late - two).max() > 1e-3 * scale


def test_one_pass_memo_is_keyed_on_values():
    """OnePass recomputes when the points change in place or the time changes, and agrees with the mixture."""
    gm = atoms_c4()
    ex = OnePass(gm, 0)
    x = np.random.default_rng(1).standard_normal((32, 2))
    s1 = ex.score(x, 0.3).copy()
    assert np.array_equal(ex.guidance_vector(x, 0.3, 0), gm.guidance_vector(x, 0.3, 0))
    x[0] += 1.0
    assert not np.array_equal(ex.score(x, 0.3)[0], s1[0])
    assert np.allclose(ex.score(x, 0.3), gm.score(x, 0.3), rtol=0, atol=1e-13)
    assert np.allclose(ex.score(x, 0.2), gm.score(x, 0.2), rtol=0, atol=1e-13)
    assert np.array_equal(ex.guidance_vector(x, 0.2, 1), gm.guidance_vector(x, 0.2, 1))  # another label: afresh


def test_shared_sample_equals_sample():
    """The memoised deterministic run is sample's bit for bit, a copy, keyed on the starts' values; noisy
    methods are refused."""
    gm = atoms_c4()
    grid = sweep_grid("geometric", 1e-3, 0.5, 50)
    x0 = np.random.default_rng(2).standard_normal((16, 2))
    kw = dict(label=0, guidance=2.0, guidance_form="cfg")
    ref = sample(gm, "ei_ode", grid=grid, n=16, x_init=x0, **kw)
    a = _shared_sample(gm, "ei_ode", grid, x0, **kw)
    assert np.array_equal(a, ref)
    a[:] = 0.0
    assert np.array_equal(_shared_sample(gm, "ei_ode", grid, x0, **kw), ref)
    x1 = x0.copy()
    x1[0, 0] += 1e-3
    assert not np.array_equal(_shared_sample(gm, "ei_ode", grid, x1, **kw), ref)
    with pytest.raises(ValueError, match="method"):
        _shared_sample(gm, "ei_sde", grid, x0, **kw)


@pytest.mark.parametrize("bug", [None, "score_step_late", "alpha_dropped"])
def test_branched_ends_on_the_line_atoms(bug):
    """support.sampler_laws's deterministic one-step methods on the geometric grids: the branched run gives each
    delta's guided end point of a separate run bit for bit, on the fast path (stated target) and on a control's
    ScoreModel (score_step_late: its last step depends on the grid)."""
    from numerics.papers.support.claims import _buggy_line_target, line_atoms
    from numerics.papers.support.sweeps import branched_ends, sweep_grid
    from numerics.samplers import sample

    gm = line_atoms()
    deltas = [1e-2, 1e-4, 1e-6]
    grids = {d: sweep_grid("geometric", d, 0.5, 50) for d in deltas}
    z = np.random.default_rng(2).standard_normal((300, 3))
    for method in ("ddim", "ei_ode", "euler"):
        ends = branched_ends(lambda g: _buggy_line_target(gm, g, bug), method, grids, deltas, z, label=1, guidance=5.0)
        for d in deltas:
            one = sample(_buggy_line_target(gm, grids[d], bug), method, grid=grids[d], n=300, x_init=z, label=1,
                         guidance=5.0)
            assert np.array_equal(ends[d], one)
        assert not np.array_equal(ends[1e-2], ends[1e-4])


@pytest.mark.parametrize("bug", ["score_step_late", "alpha_dropped", "eps_as_score"])
@pytest.mark.parametrize("kind", ["geometric", "uniform"])
def test_fast_line_controls_equal_the_reference_controls(bug, kind):
    """support.sampler_laws's controls on the fast kernel (_fast_line_bug: the buggy guided score in one fast call,
    sampled unguided) give the reference-pass control's guided runs (_buggy_line_target sampled at guidance 5) to
    within a small part of the law check's rounding unit 8 N u (max|y| + max|z| + |c|) (measured at n = 2000, every
    method, delta = 1e-7: at most 0.25 of it on the uniform grid, 0.007 on the geometric); another bug moves the
    same run by O(1) (asserted), so the two implementations are of the same bug."""
    from numerics.constants import UNIT_ROUNDOFF as U
    from numerics.fast import FastMixture
    from numerics.papers.support.claims import _fast_line_bug

    gm = line_atoms()
    fm = FastMixture(gm)
    grid = sweep_grid(kind, 1e-7, 0.1, 50)
    z = np.random.default_rng(5).standard_normal((400, 3))
    other = "alpha_dropped" if bug != "alpha_dropped" else "score_step_late"
    for method in ("ddim", "dpm_solver_2", "ei_ode", "ddpm", "ddim_eta"):
        kw = dict(grid=grid, n=400, x_init=z, seed=11, eta=SWEEP_ETA if method == "ddim_eta" else None)
        ref = sample(_buggy_line_target(gm, grid, bug), method, label=1, guidance=5.0, **kw)
        new = sample(_fast_line_bug(fm, grid, bug, 5.0), method, label=None, guidance=1.0, **kw)
        unit = 8 * (grid.size - 1) * U * (np.abs(ref).max() + np.abs(z).max() + np.abs(gm.means[0, 1:]).max())
        assert np.abs(new - ref).max() <= 0.5 * unit
        far = sample(_fast_line_bug(fm, grid, other, 5.0), method, label=None, guidance=1.0, **kw)
        assert np.abs(far - ref).max() > 1e-3 * np.abs(ref).max()
    with pytest.raises(ValueError, match="bug"):
        _fast_line_bug(fm, grid, "no_such_bug", 5.0)


@pytest.mark.parametrize("kind", ["geometric", "logsnr", "uniform"])
def test_fast_float32_control_equals_the_reference_control(kind):
    """support.sampler_laws's float32_score control on the fast kernel (FastPass: s and s_y from two fast calls,
    g = s_y - s, each of s and g rounded to float32) against the reference pass's (OnePass): a float64 difference
    between the two can move a value across a float32 rounding boundary, so the runs agree to the float32 unit
    8 N 2^-24 (max|y| + max|z| + |c|) of the law check (measured at n = 400, delta = 1e-7: at most 157 float64
    units, 3e-7 of the float32 one), while both leave the stated run by more than 2 float64 units (the law check
    flags them; measured at least 9).  The model's score and guidance vector are each float32 values within one
    float32 rounding (2^-23 relative) of the reference control's, plus 1e-12 of the largest, which covers the fast
    calls' difference (test_fast_pass_agrees_with_one_pass: within their agreement bounds, measured <= 5 u of the
    scale), so a control that rounds only one of them fails."""
    from numerics.constants import UNIT_ROUNDOFF as U
    from numerics.fast import FastMixture
    from numerics.papers.support.claims import _fast_line_bug

    gm = line_atoms()
    fm = FastMixture(gm)
    grid = sweep_grid(kind, 1e-7, 0.1, 50)
    z = np.random.default_rng(5).standard_normal((400, 3))
    for method in ("ddim", "dpm_solver_2", "ei_ode", "euler", "ddpm", "ddim_eta", "ei_sde"):
        kw = dict(grid=grid, n=400, x_init=z, seed=11, eta=SWEEP_ETA if method == "ddim_eta" else None, label=1,
                  guidance=5.0)
        ref = sample(_buggy_line_target(gm, grid, "float32_score"), method, **kw)
        new = sample(_fast_line_bug(fm, grid, "float32_score", 5.0), method, **kw)
        stated = sample(gm, method, **kw)
        scale = np.abs(ref).max() + np.abs(z).max() + np.abs(gm.means[0, 1:]).max()
        unit = 8 * (grid.size - 1) * U * scale
        assert np.abs(new - ref).max() <= unit * 2.0**29  # 2^-24 / u = 2^29
        assert np.abs(new - stated).max() > 2 * unit
    # both quantities rounded to float32, each within one float32 rounding (plus the fast calls' error) of the
    # reference control's
    model, ref_model = _fast_line_bug(fm, grid, "float32_score", 5.0), _buggy_line_target(gm, grid, "float32_score")
    for t in (grid[0], grid[grid.size // 2], grid[-2]):
        x = math.exp(-t) * gm.means[np.arange(400) % gm.K] + math.sqrt(-math.expm1(-2 * t)) * z
        for q, q_ref in ((model.score(x, t), ref_model.score(x, t)),
                         (model.guidance_vector(x, t, 1), ref_model.guidance_vector(x, t, 1))):
            assert np.array_equal(q, q.astype(np.float32).astype(np.float64))
            assert np.all(np.abs(q - q_ref) <= 2.0**-23 * np.abs(q_ref) + 1e-12 * np.abs(q_ref).max())


def test_fast_pass_agrees_with_one_pass():
    """FastPass's score and guidance vector (s_y - s from two fast calls) against OnePass's (posterior_pass) within
    the fast kernel's agreement bounds of s and of the class score s_y (each point; the guidance vector carries
    both), from t = 5 down to 1e-6, points around the atoms; the memo recomputes when the points change."""
    from numerics.fast import FastMixture, agreement_bound
    from numerics.papers.support.claims import FastPass

    gm = line_atoms()
    fm, cond = FastMixture(gm), gm.conditional(1)
    rng = np.random.default_rng(1)
    for t in (5.0, 1.0, 0.1, 1e-3, 1e-6):
        a, b = FastPass(fm, 1), OnePass(gm, 1)
        x = math.exp(-t) * gm.means[rng.integers(0, gm.K, 300)] + math.sqrt(-math.expm1(-2 * t)) * rng.standard_normal((300, 3))
        b_s = agreement_bound(fm, gm, x, t, "score")
        b_y = agreement_bound(FastMixture(cond), cond, x, t, "score")
        assert np.all(np.abs(a.score(x, t) - b.score(x, t)) <= b_s)
        assert np.all(np.abs(a.guidance_vector(x, t, 1) - b.guidance_vector(x, t, 1)) <= b_s + b_y)
        s0 = a.score(x, t).copy()
        x[0] += 0.5
        assert not np.array_equal(a.score(x, t)[0], s0[0])
    with pytest.raises(NotImplementedError):
        a.denoiser(x, 1.0)

"""The authors' three experiments (numerics.papers.support.experiments): definitions, reproducibility, bad input."""
import numpy as np
import pytest

from numerics.papers.support.region_targets import Crescent, Disk, Lens
from numerics.papers.support.experiments import (EXPERIMENTS, FIVE_REGIONS_SEED, experiment, run_deltas,
                                          run_experiment, sigma_delta)


def test_three_disks_definition():
    e = experiment("three_disks")
    rm = e.mixture
    assert [type(r) for r in rm.regions] == [Disk, Disk, Disk]
    np.testing.assert_array_equal([r.c for r in rm.regions], [[-1.5, 0.5], [0.2, 3.0], [2.5, -0.5]])
    np.testing.assert_array_equal([r.R for r in rm.regions], [0.7, 1.2, 1.5])
    np.testing.assert_allclose(rm.weights, [1 / 3] * 3)
    assert e.eta == 1
    np.testing.assert_array_equal(e.starts, [[-3, 3], [-1, -3], [0, 0], [2, -4], [5, -2]])


def test_two_crescents_definition():
    e = experiment("two_crescents")
    rm = e.mixture
    assert all(isinstance(r, Crescent) for r in rm.regions)
    np.testing.assert_array_equal([r.c for r in rm.regions], [[2, 2], [-2, 3]])
    assert [(r.R, r.r) for r in rm.regions] == [(1.5, 1.0), (1.5, 1.0)]
    # hole offset +0.8 (opening to the right) for the target, -0.8 for the other
    np.testing.assert_allclose([r.c2[0] - r.c[0] for r in rm.regions], [0.8, -0.8])
    np.testing.assert_allclose(rm.weights, [0.5, 0.5])
    assert e.eta == 0
    np.testing.assert_array_equal(e.starts, [[-2, 2], [-1.5, -2], [1.5, 2], [2, -1.6]])
    # the concavity of the target is not in it; the rim is
    assert not rm.regions[0].contains([[2.5, 2.0]])[0] and rm.regions[0].contains([[0.8, 2.0]])[0]


def test_crescent_breaks_at_the_circles_crossing():
    """The slice length of a crescent has a kink where its two circles cross (x = c_x + (R^2 - r^2 + o^2)/(2o),
    3.18125 for the crescent at (2, 2)): it must be a panel edge of the quadrature.  Without it the log density
    in the bite at t = 0.01 was 7.6e-4 off; with it the default rule agrees with a rule of four times the
    panels and nodes (the pieces are smooth, so the finer rule is far more accurate) to 1e-7."""
    from numerics.papers.support.region_targets import RegionMixture
    from numerics.schedule import alpha_sigma2

    c = Crescent((2.0, 2.0))
    assert any(abs(b - (2.0 + (1.5 ** 2 - 1.0 ** 2 + 0.8 ** 2) / 1.6)) < 1e-12 for b in c.breaks)
    assert c.breaks == sorted(c.breaks) and all(c.xa < b < c.xb for b in c.breaks)
    rm = RegionMixture([c])
    lam, _ = alpha_sigma2(0.01)
    v = lam * np.array([[3.0, 2.0], [3.2, 2.9], [2.6, 1.1]])
    coarse, _ = rm.component_moments(v, 0.01)
    fine, _ = rm.component_moments(v, 0.01, 4 * rm.panels, 4 * rm.order)
    np.testing.assert_allclose(coarse, fine, rtol=0, atol=1e-7)


def test_five_regions_definition():
    e = experiment("five_regions")
    rm = e.mixture
    assert isinstance(rm.regions[0], Lens)
    assert rm.regions[0].contains([[-2.0, 0.4]])[0] and not rm.regions[0].contains([[-2.0, 0.6]])[0]
    np.testing.assert_array_equal([r.c for r in rm.regions[1:]], [[2, 2], [2, -2], [-3, 3], [-1, -3]])
    np.testing.assert_allclose([r.c2[0] - r.c[0] for r in rm.regions[1:3]], [0.8, -0.8])
    assert [r.R for r in rm.regions[3:]] == [0.8, 0.8]
    np.testing.assert_allclose(rm.weights, [0.2] * 5)
    assert e.etas == (0, 1, 2, 3, 4)
    assert e.starts.shape == (100, 2)
    np.testing.assert_array_equal(e.starts, np.random.default_rng(FIVE_REGIONS_SEED).standard_normal((100, 2)))


@pytest.mark.parametrize("method", ["ei_ode", "ei_sde_code"])
def test_run_reproducible(method):
    a = run_experiment("three_disks", 2.0, method, 0.5, 1e-2, seed=3)
    b = run_experiment("three_disks", 2.0, method, 0.5, 1e-2, seed=3)
    np.testing.assert_array_equal(a.endpoints, b.endpoints)
    np.testing.assert_array_equal(a.trajectory, b.trajectory)
    assert a.trajectory.shape == (a.grid.size, 5, 2)
    np.testing.assert_array_equal(a.trajectory[-1], a.endpoints)
    assert a.sigma == sigma_delta(1e-2)
    np.testing.assert_allclose(a.distances, experiment("three_disks").mixture.distance(a.endpoints, 1))
    if method == "ei_sde_code":
        c = run_experiment("three_disks", 2.0, method, 0.5, 1e-2, seed=4)
        assert not np.array_equal(a.endpoints, c.endpoints)


def test_run_deltas_equals_direct_for_ode():
    rs = run_deltas("two_crescents", 1.5, "ddim", 0.5, [1e-2, 1e-3])
    for r in rs:
        d = run_experiment("two_crescents", 1.5, "ddim", 0.5, r.delta)
        np.testing.assert_array_equal(r.endpoints, d.endpoints)


def test_close_to_target_and_wrong_class_far():
    r = run_experiment("three_disks", 1.0, "ei_ode", 0.5, 1e-3)
    assert r.max_over_sigma < 10
    w = run_experiment("three_disks", 1.0, "ei_ode", 0.5, 1e-3, guide_eta=0)
    assert np.min(w.distances) > 0.5


@pytest.mark.parametrize("kw,match", [
    (dict(exp="nope"), "name"), (dict(gamma=0.5), "gamma"), (dict(gamma=float("nan")), "gamma"),
    (dict(method="euler"), "method"), (dict(kappa=0.0), "kappa"), (dict(kappa=2.0), "kappa"),
    (dict(delta=1.5), "delta"), (dict(delta=-1e-3), "delta"), (dict(eta=3), "^eta:"),
    (dict(guide_eta=[0, 1, 2, 1, 5]), "^guide_eta:"), (dict(method="nope"), "^method:"),
    (dict(x_init=np.zeros((3, 3))), "x_init"), (dict(x_init=[[np.nan, 0.0]]), "x_init"),
    (dict(bias=[1.0]), "bias"), (dict(gamma=True), "gamma"),
])
def test_bad_input(kw, match):
    args = dict(exp="three_disks", gamma=1.0, method="ei_ode", kappa=0.5, delta=1e-2)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        run_experiment(**args)


def test_bad_deltas():
    with pytest.raises(ValueError, match="deltas"):
        run_deltas("three_disks", 1.0, "ei_ode", 0.5, [])
    with pytest.raises(ValueError, match="delta"):
        run_deltas("three_disks", 1.0, "ei_ode", 0.5, [1e-2, 2.0])


def test_names():
    assert EXPERIMENTS == ("three_disks", "two_crescents", "five_regions")


def test_region_mixture_is_a_target_without_private_fields():
    """The region mixtures are numerics.target.Target objects in their own right (sample() accepts them); they do
    not subclass ScoreModel or set its private fields."""
    from numerics.target import ScoreModel, Target

    rm = experiment("three_disks").mixture
    assert isinstance(rm, Target) and not isinstance(rm, ScoreModel)
    assert not {"_score", "_guidance", "_cond"} & set(vars(rm))


def test_lemma_check_reused_distances_equal_recomputed():
    """``lemma_check`` takes each step's dist(y_k / lam_t, C) from the step before (its dist(y_{k+1} / lam_s, C));
    the excess equals the step-by-step formula with both distances recomputed, bit for bit."""
    import math

    from numerics.constants import UNIT_ROUNDOFF as U
    from numerics.papers.support.claims import guided_denoiser_rows, hulls_of, lemma_check, step_coefficients
    from numerics.papers.support.experiments import experiment, run_experiment
    exp = experiment("five_regions")
    etas = np.arange(10) % 5
    r = run_experiment(exp, 2.0, "ei_ode", 0.5, 1e-3, eta=etas, x_init=exp.starts[:10])
    hulls = hulls_of(exp.mixture)
    got = lemma_check(r.trajectory, r.grid, "ei_ode", exp.mixture, etas, 2.0, hulls)["excess"]
    worst = -np.inf
    for k in range(r.grid.size - 1):
        t, s = float(r.grid[k]), float(r.grid[k + 1])
        a, c = step_coefficients("ei_ode", t, s)
        lam_t, lam_s = math.exp(-t), math.exp(-s)
        y, ys = r.trajectory[k], r.trajectory[k + 1]
        D = guided_denoiser_rows(exp.mixture, y, t, etas, 2.0)
        for cl in range(5):
            sel, H = etas == cl, hulls[cl]
            tau = 64 * U * (1 + np.linalg.norm(ys[sel], axis=1) + a * np.linalg.norm(y[sel], axis=1)
                            + c * np.linalg.norm(D[sel], axis=1))
            ex = (lam_s * H.distance(ys[sel] / lam_s) - a * lam_t * H.distance(y[sel] / lam_t)
                  - c * H.distance(D[sel]) - lam_s * H.h - tau)
            worst = max(worst, float(np.max(ex)))
    assert got == worst

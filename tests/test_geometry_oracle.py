"""The independent geometry oracle (numerics.papers.support.geometry_oracle) against closed forms and the C12
disk reference, and its bad input."""
import math
import re

import numpy as np
import pytest

from numerics.papers.support import geometry_oracle as G
from numerics.papers.support.claims import oracle_log_components
from numerics.papers.support.experiments import experiment
from numerics.papers.support.region_targets import Disk, RegionMixture

U = 2.0 ** -53


def _two_circle_area(R, r, d):
    """Area of the intersection of two disks (radii R, r, centres d apart), closed form."""
    if d >= R + r:
        return 0.0
    if d <= abs(R - r):
        return math.pi * min(R, r) ** 2
    a1 = r * r * math.acos((d * d + r * r - R * R) / (2 * d * r))
    a2 = R * R * math.acos((d * d + R * R - r * r) / (2 * d * R))
    return a1 + a2 - 0.5 * math.sqrt((-d + r + R) * (d + r - R) * (d - r + R) * (d + r + R))


@pytest.mark.parametrize("spec, exact", [
    (("disk", 0.3, -1.0, 0.8), math.pi * 0.64),
    (("crescent", 2.0, 2.0, 1.5, 1.0, 0.8), math.pi * 2.25 - _two_circle_area(1.5, 1.0, 0.8)),   # hole sticks out
    (("crescent", -2.0, 3.0, 1.5, 1.0, -0.8), math.pi * 2.25 - _two_circle_area(1.5, 1.0, 0.8)),
    (("crescent", 0.0, 0.0, 2.0, 0.5, 1.0), math.pi * (4.0 - 0.25)),                             # hole inside
    (("crescent", 0.0, 0.0, 1.0, 0.5, 3.0), math.pi),                                            # hole outside
    (("lens",), 2 * 0.5 * 16 / 15),
    (("lens", 4.0, -1.0), 16 / 15),
])
def test_area_closed_forms(spec, exact):
    a, err = G.oracle_area(spec)
    assert err < 1e-18 * max(1.0, a)
    assert abs(a - exact) <= 4 * U * exact + err


def test_disk_matches_the_polar_reference_of_c12():
    """The slice oracle against C12's polar integral (scipy quad, relative 1e-13) for two disks with unequal
    weights, at small and large t, inside, on the edge and far."""
    regs = [Disk((-1.5, 0.5), 0.7), Disk((0.2, 3.0), 1.2)]
    w = [0.3, 0.7]
    rm = RegionMixture(regs, weights=w)
    specs = [("disk", -1.5, 0.5, 0.7), ("disk", 0.2, 3.0, 1.2)]
    y0 = np.array([[-1.5, 0.5], [-0.8, 0.5], [0.2, 1.7], [2.0, -1.0]])
    for t in (0.02, 0.5, 2.0):
        lam = math.exp(-t)
        o = G.oracle_values(specs, w, lam * y0, t)
        ref = oracle_log_components(rm, lam * y0, t)
        # scipy's quad at relative 1e-13 (a few times that in the log) plus the oracle's bound
        assert np.max(np.abs(o.log_components - ref) - o.err_log_components) < 1e-12


def test_score_and_guidance_are_gradients_of_the_oracle_log_density():
    """The analytic gradients against central differences of the oracle's own log density (h = 1e-5:
    truncation h^2 |d^3 log p|/6 < 1e-8 here, rounding u |log p| / h < 1e-10)."""
    specs, w = (("lens",), ("crescent", 2.0, 2.0, 1.5, 1.0, 0.8)), (0.3, 0.7)
    v = np.array([[-2.0, 0.35], [2.9, 2.1]]) * math.exp(-0.3)
    t, h = 0.3, 1e-5
    o = G.oracle_values(specs, w, v, t)
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        op, om = G.oracle_values(specs, w, v + e, t), G.oracle_values(specs, w, v - e, t)
        fd = (op.log_density - om.log_density) / (2 * h)
        assert np.max(np.abs(fd - o.score[:, j])) < 1e-7
        for c in (0, 1):
            fdc = (op.class_log_posterior[:, c] - om.class_log_posterior[:, c]) / (2 * h)
            assert np.max(np.abs(fdc - o.guidance[c][:, j])) < 1e-7


def test_noised_density_integrates_to_one():
    """Coarse mass check: the 6 x 6 Gauss-Hermite rule of p_t(v | crescent) at t = 2 against the weight
    N(lambda c, sigma^2 I) equals 1 within 1e-9 (the ratio of the density to that Gaussian is an entire function
    of small growth, exp(lambda (v - lambda c).(x - c)/sigma^2) averaged over the crescent, with
    lambda R / sigma^2 ~ 0.2: the rule's error is far below 1e-9)."""
    t = 2.0
    lam, s = math.exp(-t), math.sqrt(-math.expm1(-2 * t))
    z, w = np.polynomial.hermite_e.hermegauss(6)
    Z1, Z2 = (a.ravel() for a in np.meshgrid(z, z))
    m = lam * np.array([2.0, 2.0])
    V = np.stack([m[0] + s * Z1, m[1] + s * Z2], axis=1)
    ld, _ = G.oracle_log_density([("crescent", 2.0, 2.0, 1.5, 1.0, 0.8)], [1.0], V, t, dps=16)
    mass = float(np.sum(np.outer(w, w).ravel() * np.exp(ld[:, 0] + (Z1 ** 2 + Z2 ** 2) / 2))) * s * s
    assert abs(mass - 1.0) < 1e-9


def test_slices_and_inside_test():
    cres = ("crescent", 2.0, 2.0, 1.5, 1.0, 0.8)
    assert G.region_breaks(cres) == pytest.approx([0.5, 1.8, 2.0 + (2.25 - 1 + 0.64) / 1.6, 3.5])
    assert len(G.region_slices(cres, 1.0)) == 1 and len(G.region_slices(cres, 2.0)) == 2
    assert G.region_slices(cres, 3.3) == [] and G.region_slices(cres, 3.6) == []
    inside = G.oracle_contains(cres, [[0.9, 2.0], [3.0, 2.0], [2.0, 3.4], [3.6, 2.0]])
    assert inside.tolist() == [True, False, True, False]
    assert G.oracle_contains(("lens",), [[-2.0, 0.49], [-2.0, 0.51], [-2.9, 0.0], [-0.99, 0.0]]).tolist() == \
        [True, False, True, False]


def test_brute_force_distance_closed_forms():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-5, 5, (60, 2)), [[-4.0, 0.0], [-2.0, 2.0], [-0.5, 2.0]]])
    d, b = G.brute_force_distance(("disk", 0.5, -0.3, 1.2), x)
    exact = np.maximum(np.linalg.norm(x - [0.5, -0.3], axis=1) - 1.2, 0.0)
    assert np.all(np.abs(d - exact) <= b + 16 * U * (np.linalg.norm(x, axis=1) + 1.2))
    d, b = G.brute_force_distance(("lens",), x[-3:-1])
    assert np.abs(d - [1.0, 1.5]).max() <= b.max() + 1e-14      # the tip (-3, 0); the top (-2, 0.5)
    d, b = G.brute_force_distance(("crescent", 2.0, 2.0, 1.5, 1.0, 0.8), x[-1:])
    assert abs(d[0] - 1.0) <= b[0] + 1e-14                         # the outer circle's leftmost point
    # the union is the minimum over its regions
    du, _ = G.brute_force_distance([("disk", 0.5, -0.3, 1.2), ("lens",)], x)
    assert np.array_equal(du, np.minimum(G.brute_force_distance(("disk", 0.5, -0.3, 1.2), x)[0],
                                         G.brute_force_distance(("lens",), x)[0]))


def test_package_mixtures_have_the_authors_numbers():
    """The package's experiment mixtures, read through their public parameters, are the authors' specs."""
    for name, (specs, w) in G.AUTHORS_SPECS.items():
        rm = experiment(name).mixture
        got = [G.spec_of_region(r) for r in rm.regions]
        want = [G.check_region(s) for s in specs]
        assert [g[0] for g in got] == [s[0] for s in want]
        for g, s in zip(got, want):     # the offset is read back as c2 - c: within a few ulps of the centres
            assert np.allclose(g[1:], s[1:], rtol=0, atol=8 * U * 4.0)
        assert np.allclose(rm.weights, w, rtol=0, atol=1e-15)


@pytest.mark.parametrize("call, name", [
    (lambda: G.check_region(("square", 0, 0, 1)), "spec"),
    (lambda: G.check_region(("disk", 0, 0, -1.0)), "spec"),
    (lambda: G.check_region(("disk", 0, 0)), "spec"),
    (lambda: G.check_region(("crescent", 0, 0, 1.0, 3.0, 0.5)), "spec"),
    (lambda: G.check_region(("crescent", 0, 0, 1.0, 0.5, 0.0)), "spec"),
    (lambda: G.check_region(("disk", 0, float("nan"), 1.0)), "spec"),
    (lambda: G.oracle_area(("disk", 0, 0, 1.0), dps=3), "dps"),
    (lambda: G.oracle_values([("disk", 0, 0, 1.0)], [0.5], [[0.0, 0.0]], 0.1), "weights"),
    (lambda: G.oracle_values([("disk", 0, 0, 1.0)], [1.0], [[0.0, 0.0]], 0.0), "t"),
    (lambda: G.oracle_values([("disk", 0, 0, 1.0)], [1.0], [0.0, 0.0, 0.0], 0.1), "v"),
    (lambda: G.oracle_values([], [], [[0.0, 0.0]], 0.1), "regions"),
    (lambda: G.oracle_values([("disk", 0, 0, 1.0), ("lens",)], [0.5, 0.5], [[0.0, 0.0]], 0.1, labels=[0, 2]),
     "labels"),
    (lambda: G.oracle_guidance([("disk", 0, 0, 1.0)], [1.0], [[0.0, 0.0]], 0.1, 1), "label"),
    (lambda: G.region_slices(("disk", 0, 0, 1.0), "a"), "x"),
    (lambda: G.brute_force_distance(("disk", 0, 0, 1.0), [[0.0, np.inf]]), "x"),
    (lambda: G.brute_force_distance(("disk", 0, 0, 1.0), [[0.0, 0.0]], n=1), "n"),
    (lambda: G.brute_force_distance([("disk", 0, 0, 1.0), "lens"], [[0.0, 0.0]]), "spec[1]"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match="^" + re.escape(name) + ":"):
        call()


def test_claim_body_runs_and_a_control_flags():
    """The claim body on a tiny profile: the stated run passes, the bite_flipped control fails its
    measurements of the crescents (each measurement is a ratio to its tolerance, <= 1).

    The stated run passes only since the crescents carry the abscissa where their two circles cross as a
    quadrature break (without it the slice length has an unresolved kink and the log density misses its
    refinement tolerance by a few per cent: this is the bug the oracle found)."""
    from numerics.checks.claim import Context
    from numerics.checks.verdict import passes

    params = {"mixtures": ["two_crescents"], "ts": [1.0], "dps": 20, "grid_step": 2.0, "boundary_n": 200}
    ctl = tuple(G.GEOMETRY_CONTROLS)
    stated = G.geometry_measurements(Context("support.test_geometry", dict(params), "quick", 0, None, ctl))
    assert len(stated) == 11 and all(passes(m) for m in stated)
    bug = G.geometry_measurements(Context("support.test_geometry", dict(params), "quick", 0, "bite_flipped", ctl))
    flagged = {m.name for m in bug if not passes(m)}
    assert {m.name for m in bug if "density" in m.name or "distance to the union" in m.name} <= flagged


def test_joint_tanh_sinh_is_mp_quad_bit_for_bit():
    """The shared-node quadrature of the oracle returns, for each main component, exactly mp.quad's value and
    error estimate (same nodes, level sums and stopping rule), on pieces with square-root endpoints and a
    component that converges later than the others; the extra component is close to its own mp.quad."""
    import mpmath as mp

    comps = (lambda x: mp.sqrt(1 - x * x) * mp.exp(-3 * x),
             lambda x: x * mp.erfc(x) * mp.sqrt(mp.mpf(2) - x),
             lambda x: mp.cos(40 * x) ** 2,
             lambda x: mp.exp(x))
    with mp.workdps(24):
        pts = [mp.mpf(-1), mp.mpf(0.25), mp.mpf(1)]
        got = G._joint_tanh_sinh(lambda x: tuple(c(x) for c in comps), pts, 3)
        for (val, err), c in zip(got[:3], comps):
            ref, ref_err = mp.quad(c, pts, error=True)
            assert val == ref and err == ref_err
        ref, _ = mp.quad(comps[3], pts, error=True)
        assert abs(got[3][0] - ref) <= got[3][1] + mp.mpf(10) ** -20
        with pytest.raises(ValueError, match="^pts:"):
            G._joint_tanh_sinh(lambda x: (x,), [mp.mpf(1), mp.mpf(1)], 1)


_CASES = [(("crescent", 2.0, 2.0, 1.5, 1.0, 0.8), (3.0, 2.0), 0.01),     # in the bite, small t
          (("crescent", -2.0, 3.0, 1.5, 1.0, -0.8), (-0.5, 2.5), 0.1),
          (("lens", 0.0, 0.0), (-0.95, 0.0), 0.1),                       # near the lens tip
          (("disk", -1.0, -3.0, 0.8), (2.0, 1.0), 1.0)]                   # far from the disk


@pytest.mark.parametrize("spec, p, t", _CASES)
def test_region_integrals_within_their_bound_of_a_45_digit_run(spec, p, t):
    """The three x-integrals at the default 24 digits agree with a 45-digit run within their stated error
    bound (the 45-digit run's own bound is at least 1000 times smaller), and the bound is not vacuous: below 1e-18
    relative to the integral's magnitude scale."""
    lam = math.exp(-t)
    v = (lam * p[0], lam * p[1])
    lo = G._region_integrals(spec, *v, t, 24)
    hi = G._region_integrals(spec, *v, t, 45)
    for i in range(3):
        assert abs(lo[i] - hi[i]) <= lo[3 + i] + hi[3 + i]
        assert hi[3 + i] < 1e-3 * lo[3 + i]
    assert lo[3] < 1e-18 * abs(lo[0])


def test_a_wrong_integrand_is_caught_by_the_45_digit_comparison(monkeypatch):
    """The comparison above has power far below float64 resolution: an integrand off by one part in 1e15
    (Phi(beta) - Phi(alpha) scaled by 1 + 1e-15) misses the 45-digit value by far more than the bound."""
    import mpmath as mp

    spec, p, t = _CASES[0]
    lam = math.exp(-t)
    v = (lam * p[0], lam * p[1])
    hi = G._region_integrals(spec, *v, t, 45)
    right = G._dPhi
    monkeypatch.setattr(G, "_dPhi", lambda a, b: right(a, b) * (1 + mp.mpf(10) ** -15))
    bad = G._region_integrals.__wrapped__(spec, *v, t, 24)
    assert abs(bad[0] - hi[0]) > 1e3 * (bad[3] + hi[3])


@pytest.mark.parametrize("bug", sorted(G.GEOMETRY_CONTROLS))
def test_every_mixture_control_changes_the_package_mixture(bug):
    """Each control of geometry_oracle that plants its bug in the package's mixture does change it, through the
    code the quadrature actually calls (a control that patches a helper the package no longer uses would flag
    nothing: the lens control did so after the slice intervals were compiled). Compared on the slice
    intervals, areas and weights of five_regions; the controls that act elsewhere (alpha_dropped: in the
    package's values; distance_to_union, no_inside_test: in the distances) leave the mixture equal."""
    from numerics.checks.claim import Context

    ctl = tuple(G.GEOMETRY_CONTROLS)

    def mixture(control):
        return G._package_mixture("five_regions", Context("support.test_geometry", {}, "quick", 0, control, ctl))

    a, b = mixture(None), mixture(bug)
    x = np.linspace(-4.0, 4.0, 801)
    same = (np.array_equal(a.weights, b.weights)
            and all(ra.area == rb.area for ra, rb in zip(a.regions, b.regions))
            and all(np.array_equal(u, v) for ra, rb in zip(a.regions, b.regions)
                    for u, v in zip(ra.intervals(x), rb.intervals(x))))
    assert same == (bug in ("alpha_dropped", "distance_to_union", "no_inside_test"))

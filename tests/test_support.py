"""Region targets (numerics.papers.support.region_targets) and the support claims' helpers."""
import math

import numpy as np
import pytest
from scipy.stats import ncx2

from numerics.papers.support.region_targets import (Annulus, Box, Crescent, Disk, Lens, RegionMixture, Sphere, three_disks,
                                     two_crescents)
from numerics.papers.support.experiments import experiment
from numerics.samplers import sample
from numerics.grids import time_grid


def _fd(f, x, h):
    g = np.zeros_like(x)
    for j in range(x.shape[1]):
        e = np.zeros(x.shape[1]); e[j] = h
        g[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("rm", [RegionMixture([Box([-1, 0], [0, 2]), Box([1, -1], [3, 0])]),
                                RegionMixture([Sphere([0, 0, 0], 1.0), Sphere([2, 1, 0], 0.5)]),
                                three_disks()])
def test_score_is_gradient_of_log_density(rm):
    rng = np.random.default_rng(0)
    for t in (0.05, 0.7):
        x = rng.normal(size=(6, rm.d))
        s = math.sqrt(-math.expm1(-2 * t))
        fd = _fd(lambda z: rm.log_density(z, t), x, 1e-4 * s)
        assert np.max(np.abs(rm.score(x, t) - fd)) * s < 1e-5
        fdc = _fd(lambda z: rm.class_log_posterior(z, t)[:, 1], x, 1e-4 * s)
        assert np.max(np.abs(rm.guidance_vector(x, t, 1) - fdc)) * s < 1e-5


def test_box_closed_form_vs_slice_quadrature():
    # a rectangle as a "lens-like" planar region is not available; compare the box with a Monte-Carlo mean
    box = Box([0.0, -1.0], [1.0, 0.5])
    rng = np.random.default_rng(1)
    mu, tau = np.array([[0.3, 0.2], [2.0, -3.0]]), 0.4
    lm, m = box.kernel_moments(mu, tau)
    u = rng.uniform(size=(400000, 2)) * (box.hi - box.lo) + box.lo
    for i in range(2):
        w = np.exp(-np.sum((u - mu[i]) ** 2, axis=1) / (2 * tau ** 2)) / (2 * math.pi * tau ** 2)
        M = w.mean() * 1.5
        assert abs(math.log(M) - lm[i]) < 0.02
        assert np.max(np.abs((w[:, None] * u).sum(0) / w.sum() - m[i])) < 0.01


def test_box_far_tail_is_finite():
    box = Box([0.0], [1.0])
    lm, m = box.kernel_moments(np.array([[40.0], [-40.0]]), 0.01)
    assert np.all(np.isfinite(lm)) and np.all(np.abs(m - np.array([[1.0], [0.0]])) < 1e-3)


@pytest.mark.parametrize("d", [2, 3])
def test_sphere_vs_quadrature(d):
    sp = Sphere(np.zeros(d), 1.3)
    t = 0.3
    lam, s2 = math.exp(-t), -math.expm1(-2 * t)
    y = np.array([[0.4, -0.2] + [0.1] * (d - 2)])
    ll, m = sp.log_likelihood_and_mean(y, lam, s2)
    rng = np.random.default_rng(2)
    if d == 2:
        th = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
        u = np.stack([np.cos(th), np.sin(th)], 1)
    else:
        u = rng.normal(size=(400000, 3)); u /= np.linalg.norm(u, axis=1, keepdims=True)
    x = 1.3 * u
    k = np.exp(-np.sum((y - lam * x) ** 2, axis=1) / (2 * s2)) / (2 * np.pi * s2) ** (d / 2)
    tol = 1e-10 if d == 2 else 0.01
    assert abs(math.log(k.mean()) - ll[0]) < tol
    assert np.max(np.abs((k[:, None] * x).sum(0) / k.sum() - m[0])) < tol


@pytest.mark.parametrize("reg", [Disk((0.2, 3.0), 1.2), Annulus((0.0, 0.0), 1.5, 1.0)])
def test_planar_quadrature_vs_ncx2_and_refinement_bound(reg):
    rng = np.random.default_rng(3)
    for tau in (0.3, 0.05, 0.005):
        mu = reg.c + rng.normal(size=(60, 2)) * 1.5
        lm, m = reg.kernel_moments(mu, tau)
        lm2, m2 = reg.kernel_moments(mu, tau, 48, 16)
        r = np.linalg.norm(mu - reg.c, axis=1)
        ref = ncx2.cdf(reg.R ** 2 / tau ** 2, 2, r ** 2 / tau ** 2)
        if reg.r > 0:
            ref = ref - ncx2.cdf(reg.r ** 2 / tau ** 2, 2, r ** 2 / tau ** 2)
        ok = ref > 1e-6
        est = np.abs(lm - lm2)  # the refinement estimate
        err = np.abs(lm[ok] - np.log(ref[ok]))
        # reference accurate to ~1e-9 relative where ref > 1e-6; the estimate bounds the error up to that
        assert np.all(err <= 10 * est[ok] + 1e-6)
        assert np.max(err) < 1e-4


def test_distance_functions_vs_brute_force():
    rng = np.random.default_rng(4)
    for reg in [Disk((0, 0), 1.0), Annulus((0, 0), 1.5, 1.0), Crescent((2, 2)), Crescent((-2, 3), offset=-0.8)]:
        p = rng.normal(size=(300, 2)) * 2 + reg.c
        # brute force: dense grid of the region
        g = np.linspace(-1, 1, 801) * reg.R
        X, Y = np.meshgrid(g + reg.c[0], g + reg.c[1])
        pts = np.stack([X.ravel(), Y.ravel()], 1)
        pts = pts[reg.contains(pts)]
        d = reg.distance(p)
        for i in range(0, 300, 15):
            bf = np.min(np.linalg.norm(pts - p[i], axis=1))
            assert abs(bf - d[i]) < 2 * reg.R / 800 * 1.5
    lens = Lens()
    assert lens.distance([[-2.0, 0.0]])[0] == 0 and abs(lens.distance([[-2.0, 1.5]])[0] - 1.0) < 1e-3
    assert abs(Box([0, 0], [1, 1]).distance([[2.0, 2.0]])[0] - math.sqrt(2)) < 1e-15
    assert abs(Sphere([0, 0, 0], 2.0).distance([[0, 0, 0.5]])[0] - 1.5) < 1e-15


def test_areas():
    assert abs(Crescent((0, 0)).area - (math.pi * 2.25 - 0.0) + 0) > 0  # hole removed
    rng = np.random.default_rng(5)
    for reg in [Crescent((0, 0)), Annulus((0, 0), 1.5, 1.0), Lens((2.0, 0.0))]:
        xa, xb, ya, yb = reg.bbox()
        u = rng.uniform(size=(400000, 2)) * [xb - xa, yb - ya] + [xa, ya]
        mc = reg.contains(u).mean() * (xb - xa) * (yb - ya)
        assert abs(mc - reg.area) < 0.01 * (xb - xa) * (yb - ya)


def test_sampler_accepts_region_mixture_and_lands_on_target():
    rm = three_disks()
    x = sample(rm, "ei_ode", grid=time_grid("geometric", T=5.0, delta=1e-3, kappa=0.5), n=8, seed=0, label=1,
               guidance=2.0)
    assert np.all(rm.distance(x, 1) < 10 * math.sqrt(2e-3))


def test_authors_kernel_differs_from_exact_and_agrees_as_t_to_0():
    rm, ap = three_disks(), three_disks(kernel="authors")
    x = np.array([[0.2, 3.0], [0.5, 2.5]])
    far = np.abs(rm.denoiser(x, 0.3) - ap.denoiser(x, 0.3)).max()
    assert far > 0.2  # no lambda: the kernel is centred at y, not y/lambda
    y = np.array([[0.2, 3.0]])  # deep inside: both near the disk's centre at small t
    assert np.abs(rm.denoiser(y, 1e-3) - ap.denoiser(y, 1e-3)).max() < 0.05


@pytest.mark.parametrize("bad, match", [
    (lambda: Disk((0, 0), -1.0), "radius"),
    (lambda: Disk((0, 0, 0), 1.0), "center"),
    (lambda: Box([0, 0], [1, -1]), "hi"),
    (lambda: Annulus((0, 0), 1.0, 2.0), "r_in"),
    (lambda: Crescent((0, 0), offset=0.0), "offset"),
    (lambda: Sphere([0.0], 1.0), "center"),
    (lambda: RegionMixture([Disk((0, 0), 1.0), Box([0, 0, 0], [1, 1, 1])]), "regions"),
    (lambda: RegionMixture([Disk((0, 0), 1.0)], weights=[0.5, 0.5]), "weights"),
    (lambda: RegionMixture([Disk((0, 0), 1.0)], kernel="nope"), "kernel"),
    (lambda: RegionMixture([Box([0], [1])], kernel="authors"), "kernel"),
    (lambda: three_disks().score(np.array([[np.nan, 0.0]]), 0.5), "x"),
    (lambda: three_disks().score(np.zeros((1, 2)), -1.0), "t"),
    (lambda: three_disks().guidance_vector(np.zeros((1, 2)), 0.5, 7), "y"),
])
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_support_claims_registered():
    from numerics.checks import load_all
    claims = load_all(["numerics.papers.support.claims"])
    assert {"support.rate_exponent", "support.three_disks", "support.score_identity"} <= set(claims)


# ----------------------------------------------------------------- the claims' helpers (issue 18)
@pytest.mark.parametrize("method", ["ei_ode", "ei_sde", "ei_sde_code", "ddim", "ddpm"])
def test_step_coefficients_match_generated_and_are_consistent(method):
    from numerics.generated import integrator_coeffs as IC
    from numerics.papers.support.claims import step_coefficients
    for t, s in [(5.0, 4.9), (1.0, 0.9), (1e-3, 1e-3 / 1.1)]:
        a, c = step_coefficients(method, t, s)
        assert a >= 0 and c >= 0
        assert a * math.exp(-t) + c == pytest.approx(math.exp(-s), rel=1e-12)
        co = getattr(IC, f"{method}_coeffs")(t, s)
        if method.startswith("ei"):  # q = score = (lam D - y)/sigma^2
            s2 = -math.expm1(-2 * t)
            a_gen, c_gen = co[0] - co[1] / s2, co[1] * math.exp(-t) / s2
        else:
            a_gen, c_gen = co[0], co[1]
        assert (a, c) == pytest.approx((a_gen, c_gen), rel=1e-12)


def test_class_hull_distance_matches_brute_force():
    from scipy.spatial import ConvexHull
    from matplotlib.path import Path
    from numerics.papers.support.claims import ClassHull
    for reg in (Crescent((2.0, 2.0), 1.5, 1.0, 0.8), Annulus((0.0, 0.0), 1.5, 1.0), Disk((1.0, 0.0), 0.7), Lens()):
        H = ClassHull([reg])
        th = np.linspace(0, 2 * np.pi, 40000, endpoint=False)
        if isinstance(reg, Lens):
            pts = reg.boundary(40001)
        else:
            pts = reg.c + reg.R * np.stack([np.cos(th), np.sin(th)], 1)
            pts = np.concatenate([pts[reg.distance(pts) <= 1e-12], np.asarray(reg._isect).reshape(-1, 2)])
        hv = pts[ConvexHull(pts).vertices]
        x = np.random.default_rng(1).uniform(-4, 4, (500, 2)) + hv.mean(axis=0)
        A, B = hv, np.roll(hv, -1, 0)
        AB = B - A
        AQ = x[:, None] - A[None]
        tt = np.clip((AQ * AB).sum(2) / (AB * AB).sum(1), 0, 1)
        d = AQ - tt[..., None] * AB
        bd = np.where(Path(hv).contains_points(x), 0.0, np.sqrt((d * d).sum(2)).min(1))
        assert np.max(np.abs(bd - H.distance(x))) < 1e-4


def test_noise_variance_is_the_c3_recursion_without_memory():
    from numerics.papers.support.claims import noise_variance, variance_recursion, _rho
    grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=0.1)
    h = grid[:-1] - grid[1:]
    a = np.exp(h) - 2 * np.expm1(h) / -np.expm1(-2 * grid[:-1])
    assert noise_variance("ei_sde_code", grid) == pytest.approx(variance_recursion(grid, "code") - np.prod(a) ** 2,
                                                                 rel=1e-12)


def test_oracle_guidance_matches_package():
    from numerics.papers.support.claims import oracle_guidance
    rng = np.random.default_rng(0)
    for rm in (three_disks(), RegionMixture([Box([-1, -1, 0], [0, 1, 1]), Box([0.5, -0.5, -1], [2, 0.5, 0])]),
               RegionMixture([Sphere([0, 0, 0], 1.0), Sphere([2.5, 0, 0], 0.5)])):
        y = rng.standard_normal((4, rm.d))
        t = 0.3
        s = math.sqrt(-math.expm1(-2 * t))
        g = oracle_guidance(rm, y, t, 1, 1e-4 * s)
        assert np.max(np.abs(g - rm.guidance_vector(y, t, 1))) * s < 1e-5


def _trunc_normal_ref(alpha, beta):
    """``trunc_normal`` with the compiled one-interval mass's two branches (erfc where ``hi > -37``,
    scipy's ``log_ndtr`` formula elsewhere), elementwise through libm's ``erfc`` (``math.erfc``, the function the
    compiled code calls), so that the two differ by the rounding of ``log``, ``exp`` and the sums only."""
    from scipy.special import log_ndtr

    from numerics.papers.support import region_targets as rt
    alpha, beta = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(beta, float))
    flip = alpha > 0
    lo, hi = np.where(flip, -beta, alpha), np.where(flip, -alpha, beta)
    erfc = np.vectorize(math.erfc, otypes=[float])
    r = math.sqrt(0.5)
    direct = hi > rt._DIRECT_HI
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d_neg = np.log(0.5 * (erfc(-hi * r) - erfc(-lo * r)))
        d_pos = np.log1p(-0.5 * (erfc(-lo * r) + erfc(hi * r)))
        lh, ll = log_ndtr(hi), log_ndtr(lo)
        logz = np.where(direct, np.where(hi > 0, d_pos, d_neg), lh + np.log(-np.expm1(ll - lh)))
    logz = np.where(hi > lo, logz, -np.inf)
    ok = np.isfinite(logz)
    lz = np.where(ok, logz, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        a2 = np.where(np.isfinite(alpha), alpha, 0.0)
        b2 = np.where(np.isfinite(beta), beta, 0.0)
        pa = np.where(np.isfinite(alpha), np.exp(-0.5 * a2 * a2 - 0.5 * math.log(2 * math.pi) - lz), 0.0)
        pb = np.where(np.isfinite(beta), np.exp(-0.5 * b2 * b2 - 0.5 * math.log(2 * math.pi) - lz), 0.0)
    return logz, np.where(ok, pa - pb, 0.0)


def _slice_moments_numpy(reg, mu, tau, panels=24, order=8):
    """The planar slice rule as NumPy broadcasting (the reference the compiled ``_slice_moments`` replaced; its
    interval masses by :func:`_trunc_normal_ref`)."""
    from scipy.special import logsumexp
    N = mu.shape[0]
    dmin = reg.distance(mu)
    xs = np.clip(reg.nearest_x(mu), reg.xa, reg.xb)
    half = np.sqrt(dmin ** 2 + 2 * 40.0 * tau * tau)
    lo, hi = np.maximum(reg.xa, mu[:, 0] - half), np.minimum(reg.xb, mu[:, 0] + half)
    lo, hi = np.minimum(lo, xs), np.maximum(hi, xs)
    va, vb = np.arcsinh((lo - xs) / tau), np.arcsinh((hi - xs) / tau)
    edges = xs[:, None] + tau * np.sinh(va[:, None] + (vb - va)[:, None] * np.linspace(0, 1, panels + 1)[None, :])
    br = np.clip(np.asarray(reg.breaks, float)[None, :], lo[:, None], hi[:, None])
    edges = np.sort(np.concatenate([edges, br], axis=1), axis=1)
    edges[:, 0], edges[:, -1] = lo, hi
    a, b = edges[:, :-1], edges[:, 1:]
    u, wu = np.polynomial.legendre.leggauss(order)
    u, wu = 0.5 * (u + 1), 0.5 * wu
    x = (a[:, :, None] + (b - a)[:, :, None] * np.sin(0.5 * np.pi * u) ** 2).reshape(N, -1)
    wx = ((b - a)[:, :, None] * 0.5 * np.pi * np.sin(np.pi * u) * wu).reshape(N, -1)
    ylo, yhi = reg.intervals(x)
    muy = mu[:, 1][:, None, None]
    logZ, m = _trunc_normal_ref((ylo - muy) / tau, (yhi - muy) / tau)
    lslice = logsumexp(logZ, axis=2)
    with np.errstate(invalid="ignore"):
        ymean = muy[:, :, 0] + tau * np.sum(np.exp(logZ - lslice[:, :, None]) * m, axis=2)
    z = (x - mu[:, 0:1]) / tau
    with np.errstate(divide="ignore"):
        lw = lslice - 0.5 * z * z - 0.5 * math.log(2 * math.pi) - np.log(tau) + np.log(np.maximum(wx, 0.0))
    lmax = np.max(lw, axis=1, keepdims=True)
    w = np.exp(lw - lmax)
    w = np.where(np.isfinite(w), w, 0.0)
    sw = w.sum(axis=1)
    ymean = np.where(w > 0, ymean, 0.0)
    return lmax[:, 0] + np.log(sw), np.stack([np.sum(w * x, axis=1) / sw, np.sum(w * ymean, axis=1) / sw], axis=1)


@pytest.mark.parametrize("reg", [Lens(), Crescent((2.0, 2.0)), Crescent((2.0, -2.0), 1.5, 1.0, -0.8), Disk((-3.0, 3.0), 0.8),
                                 Annulus((0.0, 0.0), 2.0, 1.0)])
def test_compiled_slice_rule_equals_numpy_reference(reg):
    """The compiled slice sums (scipy's own log_ndtr) against the NumPy broadcasting they replaced, near and far
    (log masses down to -4e6): they differ by the rounding of the log weights, u |log M| per weight, so by
    16 u (1 + |log M|) in log M and that times the region's width in the mean (the far tail's mean is
    ill-conditioned in just this way); a slice interval dropped or a node weight off moves them far more."""
    rng = np.random.default_rng(7)
    xa, xb, ya, yb = reg.bbox()
    width = max(xb - xa, yb - ya)
    for tau in (3.0, 0.3, 0.05, 0.01, 0.003, 1e-4):
        mu = rng.normal(size=(120, 2)) * 3
        lm, m = reg.kernel_moments(mu, tau)
        lr, mr = _slice_moments_numpy(reg, mu, tau)
        tol = 16 * np.finfo(float).eps * (1 + np.abs(lr))
        assert np.all(np.abs(lm - lr) <= tol)
        assert np.all(np.abs(m - mr) <= width * tol[:, None])
        assert np.all(np.abs(m - mr) < 1e-6)


def _intervals_numpy(reg, x):
    """``_DiskMinusDisk.intervals`` as the NumPy broadcasting the compiled slice intervals replaced."""
    def _circle_interval(x, cx, cy, R):
        h2 = R * R - (x - cx) ** 2
        h = np.sqrt(np.maximum(h2, 0.0))
        empty = h2 <= 0
        return np.where(empty, 0.0, cy - h), np.where(empty, 0.0, cy + h)

    l0, u0 = _circle_interval(x, reg.c[0], reg.c[1], reg.R)
    if reg.r == 0:
        return l0[..., None], u0[..., None]
    l1, u1 = _circle_interval(x, reg.c2[0], reg.c2[1], reg.r)
    hole = u1 > l1
    lo = np.stack([l0, np.where(hole, np.maximum(l0, u1), u0)], axis=-1)
    hi = np.stack([np.where(hole, np.minimum(u0, l1), u0), u0], axis=-1)
    return lo, hi


@pytest.mark.parametrize("reg", [Crescent((2.0, 2.0)), Crescent((-2.0, 3.0), 1.5, 1.0, -0.8), Disk((-3.0, 3.0), 0.8),
                                 Annulus((0.0, 0.0), 1.5, 1.0), Crescent((0.0, 0.0), 1.0, 1.2, 0.5)])
def test_compiled_slice_intervals_equal_numpy_bit_for_bit(reg):
    """The compiled slice intervals of a disk minus a disk equal the NumPy lines they replaced bit for bit, at
    random abscissae, at the regions' ends and breaks (where a slice or the hole's slice is empty), and outside;
    a non-finite abscissa takes the NumPy lines.  A swapped piece, a hole test off by an ulp, or a missing empty
    slice differs."""
    rng = np.random.default_rng(11)
    special = np.array([reg.xa, reg.xb, *reg.breaks, reg.c2[0] - reg.r, reg.c2[0] + reg.r, reg.xa - 1.0, reg.xb + 1.0])
    x = np.concatenate([rng.uniform(reg.xa - 0.5, reg.xb + 0.5, 3000), special,
                        np.nextafter(special, np.inf), np.nextafter(special, -np.inf)])
    for shape in [(x.size,), (3, x.size // 3)]:
        xs = x[: math.prod(shape)].reshape(shape)
        lo, hi = reg.intervals(xs)
        lr, hr = _intervals_numpy(reg, xs)
        assert lo.shape == lr.shape and hi.shape == hr.shape
        assert np.array_equal(lo, lr) and np.array_equal(hi, hr)
    assert (hi > lo).any() and (hi <= lo).any()  # both kinds of slice piece are exercised
    bad = np.array([0.3, np.nan, np.inf])
    for got, want in zip(reg.intervals(bad), _intervals_numpy(reg, bad)):
        assert np.array_equal(got, want, equal_nan=True)


def _interval_ends():
    """Interval ends from 1e-3 to 80 of both signs and 0, denser beyond 36 (every branch of the one-interval mass)."""
    mag = np.concatenate([np.geomspace(1e-3, 60.0, 120), np.linspace(36.0, 80.0, 45)])
    return np.concatenate([-mag, [0.0], mag])


def _direct_interval_mass(lo: float, hi: float) -> float:
    """The erfc branch of the compiled one-interval mass, in Python (the same libm ``erfc``, ``log``, ``log1p``)."""
    r = math.sqrt(0.5)
    if hi <= 0.0:
        return math.log(0.5 * (math.erfc(-hi * r) - math.erfc(-lo * r)))
    return math.log1p(-0.5 * (math.erfc(-lo * r) + math.erfc(hi * r)))


def test_interval_mass_is_its_two_formulas_bit_for_bit():
    """The compiled one-interval mass takes ``erfc`` directly where ``hi > _DIRECT_HI`` and the
    log-space formula through scipy's ``log_ndtr`` elsewhere; where the lower end lies so deep in the tail that
    ``expm1(log_ndtr(lo) - lh)`` is -1.0 it returns ``lh + 0.0`` without ``log_ndtr(lo)``.  Over a sweep of
    intervals (hundreds in each branch, dozens in the deep-tail one) each equals its formula bit for bit (a
    threshold too low, ``lh`` alone without the formula's rounding, or a branch on the wrong side, would differ)."""
    from scipy.special import log_ndtr

    from numerics.papers.support import region_targets as rt

    ends = _interval_ends()
    deep = direct = logspace = 0
    for a in ends:
        for b in ends[ends > a]:
            lo, hi = (-b, -a) if a > 0 else (a, b)
            if hi > rt._DIRECT_HI:
                want = _direct_interval_mass(lo, hi)
                direct += 1
            else:
                want = log_ndtr(hi) + math.log(-math.expm1(log_ndtr(lo) - log_ndtr(hi)))
                logspace += 1
                deep += lo < -1.0 and log_ndtr(hi) + 0.5 * lo * lo > rt._DEEP_TAIL
            assert rt._log_gauss_interval_1(a, b) == want
    assert deep >= 20 and logspace > 300 and direct > 10000


def test_interval_mass_erfc_branch_within_its_derived_rounding():
    r"""The erfc branch against mpmath (50 digits), over the sweep: the error is within its bound
    :math:`(\sum_e \Phi_e (e_f + 2(e^2 + 1)u))/Z + u(1 + 2|\log Z|)`, summed over the two tails :math:`\Phi_e` the
    branch subtracts (:math:`\Phi(hi), \Phi(lo)` for :math:`hi \le 0`; :math:`\Phi(lo), \Phi(-hi)` for
    :math:`hi > 0`): each ``erfc`` within :math:`e_f = 10u` (glibc's published 5 ulp for double ``erfc``; 2.7u
    measured); its argument :math:`e\,\mathrm{fl}(\sqrt{1/2})`, rounded twice, is off by at most 2u relative,
    which moves :math:`\operatorname{erfc}(x)` by :math:`(2x^2 + 1) = (e^2 + 1)` times that (Mills' ratio); the
    difference rounded once, the log and the reference's conversion to float once each.  A dropped factor 1/2 (an
    error of log 2), ``erfc(hi)`` for ``erfc(-hi)``, or float32 arguments break it."""
    import mpmath as mp

    from numerics.papers.support import region_targets as rt

    u = 2.0 ** -53
    ef = 10 * u
    ends = _interval_ends()[::3]
    checked = 0
    with mp.workdps(50):
        for a in ends:
            for b in ends[ends > a]:
                lo, hi = (-b, -a) if a > 0 else (a, b)
                if not hi > rt._DIRECT_HI:
                    continue
                Z = mp.ncdf(mp.mpf(hi)) - mp.ncdf(mp.mpf(lo))
                tails = [(mp.ncdf(mp.mpf(hi)), hi), (mp.ncdf(mp.mpf(lo)), lo)] if hi <= 0 else \
                    [(mp.ncdf(mp.mpf(lo)), lo), (mp.ncdf(mp.mpf(-hi)), hi)]
                # a subnormal Phi(lo) (lo < -37.5) is off by at most 2^-1074 absolute, not relatively
                bound = (float(sum(ph * (ef + 2 * (e * e + 1) * u) + 2.0 ** -1074 for ph, e in tails) / Z)
                         + u * (1 + 2 * abs(float(mp.log(Z)))))
                err = abs(rt._log_gauss_interval_1(a, b) - float(mp.log(Z)))
                assert err <= bound, (a, b, err, bound)
                checked += 1
    assert checked > 1000


def test_bound_log_ndtr_is_scipys_double_log_ndtr():
    """The compiled slice rule calls scipy's C ``log_ndtr`` bound by symbol: the one-interval mass equals the
    same formula through the ufunc bit for bit (fails if the complex-typed capsule or another function were
    bound), and a capsule of the wrong signature is refused with ImportError, not bound."""
    import math

    from scipy.special import log_ndtr

    from numerics.papers.support import region_targets as rt

    for a, b in [(-40.0, -39.5), (-60.0, -38.0), (38.0, 45.0), (5.0, 40.0)]:  # the log-space branch
        lo, hi = (-b, -a) if a > 0 else (a, b)
        want = log_ndtr(hi) + math.log(-math.expm1(log_ndtr(lo) - log_ndtr(hi)))
        assert rt._log_gauss_interval_1(a, b) == want
    with pytest.raises(ImportError, match="log_ndtr"):
        rt._cython_special_address("log_ndtr", b"float (float)")


def _five_region_points(rng, n=150):
    """Points near and far from the five-region experiment's regions (a sampler's states at small and large t)."""
    return np.concatenate([rng.normal(size=(n, 2)) * 3, rng.normal(size=(n, 2)) * 0.05 + [-2.0, 0.0],
                           rng.normal(size=(n, 2)) * 0.05 + [2.0, 2.0], rng.normal(size=(n, 2)) * 40])


@pytest.mark.parametrize("reg", [Lens(), Crescent((2.0, 2.0)), Crescent((2.0, -2.0), 1.5, 1.0, -0.8), Disk((-3.0, 3.0), 0.8),
                                 Annulus((0.0, 0.0), 2.0, 1.0)])
def test_compiled_nodes_and_pruning_are_bit_for_bit(reg):
    """The compiled node construction and slice intervals equal the NumPy broadcasting they replaced bit for bit,
    and the pruned slice sums (nodes whose weight provably underflows skipped) equal the unpruned ones bit for
    bit, near the region and far from it, at large and small tau (where pruning skips most nodes); a bound that
    were not an upper bound would drop a contributing node and move the sums."""
    from numerics.papers.support import region_targets as rt
    rng = np.random.default_rng(11)
    s, jac = rt._sin2_rule(8)
    pruned = 0
    for tau in (3.0, 0.3, 0.05, 0.01, 1e-3, 1e-4):
        mu = _five_region_points(rng)
        dmin = reg.distance(mu)
        xs = np.clip(reg.nearest_x(mu, dmin), reg.xa, reg.xb)
        half = np.sqrt(dmin ** 2 + 2 * 40.0 * tau * tau)
        lo, hi = np.maximum(reg.xa, mu[:, 0] - half), np.minimum(reg.xb, mu[:, 0] + half)
        lo, hi = np.minimum(lo, xs), np.maximum(hi, xs)
        va, vb = np.arcsinh((lo - xs) / tau), np.arcsinh((hi - xs) / tau)
        e0 = xs[:, None] + tau * np.sinh(va[:, None] + (vb - va)[:, None] * np.linspace(0, 1, 25)[None, :])
        br = np.clip(np.asarray(reg.breaks, float)[None, :], lo[:, None], hi[:, None])
        edges = np.sort(np.concatenate([e0, br], axis=1), axis=1)
        edges[:, 0], edges[:, -1] = lo, hi
        a, b = edges[:, :-1], edges[:, 1:]
        x = (a[:, :, None] + (b - a)[:, :, None] * s).reshape(mu.shape[0], -1)
        wx = ((b - a)[:, :, None] * jac).reshape(mu.shape[0], -1)
        x2, wx2 = rt._slice_nodes(e0, lo, hi, reg._breaks_array(), s, jac)
        assert np.array_equal(x, x2) and np.array_equal(wx, wx2)
        ylo, yhi = reg.intervals(x)
        if isinstance(reg, Lens):
            u = x - reg.shift[0]
            g = np.where((u >= -3) & (u <= -1), 0.5 * (u + 3) ** 2 * (u + 1) ** 2, 0.0)
            assert np.array_equal(ylo[..., 0], reg.shift[1] - g) and np.array_equal(yhi[..., 0], reg.shift[1] + g)
        full = rt._slice_moments(x, wx, ylo, yhi, mu, tau, False)
        fast = rt._slice_moments(x, wx, ylo, yhi, mu, tau, True)
        assert np.array_equal(full[0], fast[0]) and np.array_equal(full[1], fast[1])
        with np.errstate(divide="ignore"):
            lwx = np.log(np.maximum(wx, 0.0))
        ub = np.array([[rt._log_weight_bound(x[n, q], lwx[n, q], ylo[n], yhi[n], q, mu[n, 0], mu[n, 1], tau,
                                             math.log(tau)) for q in range(x.shape[1])] for n in range(0, 600, 7)])
        pruned += int(np.sum(ub < np.max(ub, axis=1, keepdims=True) - 2 * rt._PRUNE_GAP))
    assert pruned > 0  # the test reaches the pruned branch


def _reference_mean(rm, x, t, y=None):
    """The posterior mean from every component's moments (what ``RegionMixture._mean`` computed before it left out
    the components whose weight underflows)."""
    from scipy.special import logsumexp
    ll, mean = rm.component_moments(x, t)
    if y is not None:
        ll = np.where(rm.labels == np.asarray(y)[:, None], ll, -np.inf)
    return np.einsum("nk,nkd->nd", np.exp(ll - logsumexp(ll, axis=1, keepdims=True)), mean)


def _fresh(rm):
    return RegionMixture(rm.regions, rm.weights, rm.labels)


@pytest.mark.parametrize("make", [lambda: experiment("five_regions").mixture, two_crescents,
                                  lambda: RegionMixture([Annulus((0.0, 0.0), 1.5, 1.0), Disk((3.0, 0.0), 0.5)])])
def test_pruned_components_give_the_full_means(make):
    """The posterior means (unconditional and per-row class) that leave out the components whose softmax weight is
    provably below e^-50 (``_SOFTMAX_GAP``) equal the means from every component to within the derived
    2 (K - 1) e^-50 max|m_k| plus the rounding of the softmax sum (4 K u max|m_k|), and bit for bit in all but a few
    entries, in either call order, near and far, from t = 5 to 3e-6; the test reaches the pruning (entries left out,
    more than the exact-underflow gap of 800 would leave out), and a full ``component_moments`` after the pruned calls
    fills the missing entries with the full call's floats.  A bound below a component's log weight would drop a
    contributing component and move the means far beyond that."""
    from numerics.papers.support import region_targets as rt
    rm = make()
    rng = np.random.default_rng(5)
    left_out = beyond_underflow = differ = total = 0
    for t in (5.0, 0.5, 0.05, 0.01, 1e-3, 1e-4, 3e-6):
        lam = math.exp(-t)
        x = lam * _five_region_points(rng, 12)
        etas = rng.integers(0, rm.n_classes, x.shape[0])
        ref = _fresh(rm)
        want, want_y = _reference_mean(ref, x, t), _reference_mean(ref, x, t, etas)
        ll_all, m_all = ref.component_moments(x, t)
        scale = np.max(np.linalg.norm(m_all, axis=2), axis=1)[:, None]
        tol = (2 * (rm.K - 1) * math.exp(-rt._SOFTMAX_GAP) + 4 * rm.K * np.finfo(float).eps) * scale
        a = _fresh(rm)
        got, got_y = a._mean(x, t), a.conditional_denoiser_rows(x, t, etas)
        done = next(iter(a._cache.values()))[2]
        left_out += int(np.sum(~done))
        beyond_underflow += int(np.sum(~done & (ll_all >= np.max(ll_all, axis=1, keepdims=True) - rt._PRUNE_GAP)))
        b = _fresh(rm)
        got_y2, got2 = b.conditional_denoiser_rows(x, t, etas), b.denoiser(x, t)
        for u, v in ((want, got), (want_y, got_y), (want, got2), (want_y, got_y2)):
            assert np.all(np.abs(u - v) <= tol)
            differ += int(np.sum(u != v))
            total += u.size
        for u, v in zip(ref.component_moments(x, t), b.component_moments(x, t)):
            assert np.array_equal(u, v)
    assert left_out > 0 and beyond_underflow > 0
    assert differ <= 0.02 * total


def test_log_mass_bound_bounds_the_computed_log_mass():
    """:meth:`_Planar.log_mass_bound` is above the slice rule's computed log mass at every point and tau, and at
    small tau, far from the region, within 5% of the log mass plus log(Q (x_b - x_a) / tau) + 10 of it (a bound that
    ignores the distance, or overstates it, fails one side)."""
    rng = np.random.default_rng(7)
    for reg in (Lens(), Crescent((2.0, 2.0)), Crescent((2.0, -2.0), 1.5, 1.0, -0.8), Disk((-3.0, 3.0), 0.8),
                Annulus((0.0, 0.0), 2.0, 1.0)):
        for tau in (3.0, 0.3, 0.05, 1e-3, 3e-5):
            mu = _five_region_points(rng, 20)
            lm, _ = reg.kernel_moments(mu, tau)
            ub = reg.log_mass_bound(reg.distance(mu), tau)
            assert np.all(lm <= ub)
            if tau <= 0.05:  # far from the region the bound follows the log mass's -d^2/2tau^2
                far = reg.distance(mu) > 0.5
                Q = (24 + len(reg.breaks)) * 8
                assert np.all((ub - lm)[far] <= 10 + math.log(Q * (reg.xb - reg.xa) / tau) + 0.05 * np.abs(lm[far]))


def test_grouped_slice_sums_equal_each_regions_own_call():
    """``component_moments`` takes the slice sums of regions of one shape in one call (points stacked): each
    component's log weight and mean equal its region's own ``kernel_moments`` bit for bit."""
    from numerics.schedule import alpha_sigma2
    rng = np.random.default_rng(9)
    rm = experiment("five_regions").mixture
    for t in (3.0, 0.1, 1e-3, 1e-5):
        x = rng.standard_normal((37, 2)) * 2
        ll, m = _fresh(rm).component_moments(x, t)
        lam, s2 = alpha_sigma2(t)
        for k, reg in enumerate(rm.regions):
            lm, mk = reg.kernel_moments(x / lam, math.sqrt(s2) / lam)
            assert np.array_equal(lm - reg.log_volume - 2 * math.log(lam) + math.log(rm.weights[k]), ll[:, k])
            assert np.array_equal(mk, m[:, k])


@pytest.mark.parametrize("reg", [Lens(), Crescent((2.0, 2.0)), Annulus((0.0, 0.0), 2.0, 1.0)])
def test_slice_sums_do_not_depend_on_threads(reg, monkeypatch):
    """The slice sums are the same floats on the calling thread and spread over 1 or 2 Numba threads (each point
    writes its own row, using the work rows of the thread that runs it; the wrapper's dynamic schedule included), near
    and far, at large and small tau; the wrapper takes the thread team for large calls and the calling thread for calls
    below ``_SERIAL_NODES`` node evaluations (so a small call does not start the team)."""
    import numba

    from numerics.papers.support import region_targets as rt
    rng = np.random.default_rng(3)
    two = min(2, numba.config.NUMBA_NUM_THREADS)
    calls = {"serial": [], "threads": []}
    kernels = {"serial": rt._region_sums_serial, "threads": rt._region_sums_threads}
    for name in kernels:
        monkeypatch.setattr(rt, f"_region_sums_{name}",
                            lambda *a, name=name: calls[name].append(a) or kernels[name](*a))
    old = numba.get_num_threads()
    try:
        for tau in (3.0, 0.05, 1e-3):
            mu = _five_region_points(rng, 40)
            numba.set_num_threads(1)
            one = reg.kernel_moments(mu, tau)
            args = calls["serial"][-1]
            assert not calls["threads"] and args[0].shape[0] == mu.shape[0]  # one thread: the calling thread
            for k in (1, two):  # the threaded kernel itself, on 1 and 2 threads
                numba.set_num_threads(k)
                out = np.empty_like(args[-1])
                kernels["threads"](*args[:-1], out, numba.config.NUMBA_NUM_THREADS)
                assert np.array_equal(out, args[-1])
            if two > 1:  # the wrapper on two threads
                numba.set_num_threads(two)
                got = reg.kernel_moments(mu, tau)
                assert calls["threads"] and calls["threads"][-1][0].shape[0] == mu.shape[0]
                assert np.array_equal(got[0], one[0]) and np.array_equal(got[1], one[1])
                calls["threads"].clear()
                small = reg.kernel_moments(mu[:2], tau)  # 2 points x about 200 nodes < _SERIAL_NODES
                assert not calls["threads"]
                assert np.array_equal(small[0], one[0][:2]) and np.array_equal(small[1], one[1][:2])
    finally:
        numba.set_num_threads(old)


def test_fused_slice_sums_equal_the_stored_inputs_sums():
    """``_region_sums`` (nodes, slices and sums built point by point in one compiled loop, every region of a call
    stacked) equals the sums over the stored nodes and slices (``slice_inputs``, then ``_slice_moments``, the
    computation it replaced) bit for bit, per region, for the lens, crescents, disk and annulus stacked in one call,
    near and far, at large and small tau."""
    from numerics.papers.support import region_targets as rt
    regs = [Lens(), Crescent((2.0, 2.0)), Crescent((2.0, -2.0), 1.5, 1.0, -0.8), Disk((-3.0, 3.0), 0.8),
            Annulus((0.0, 0.0), 2.0, 1.0)]
    rng = np.random.default_rng(13)
    for tau in (30.0, 3.0, 0.3, 0.05, 1e-3, 1e-4):
        mus = [_five_region_points(rng, 17 + 3 * i) for i in range(len(regs))]
        got = rt._region_sums(regs, [r.slice_window(m, tau) for r, m in zip(regs, mus)], mus, tau, 8)
        for reg, m, (lm, mean) in zip(regs, mus, got):
            want = rt._slice_moments(*reg.slice_inputs(m, tau), m, tau)
            assert np.array_equal(lm, want[0]) and np.array_equal(mean, want[1])


def test_disk_minus_disk_intervals_equal_the_circle_formula():
    """The compiled slices of a crescent: the outer disk's slice minus the hole's, by the closed form."""
    reg = Crescent((2.0, 2.0), 1.5, 1.0, 0.8)
    x = np.linspace(0.0, 4.0, 4001)
    lo, hi = reg.intervals(x)
    h0 = np.sqrt(np.maximum(1.5 ** 2 - (x - 2.0) ** 2, 0.0))
    h1 = np.sqrt(np.maximum(1.0 - (x - 2.8) ** 2, 0.0))
    l0, u0 = np.where(h0 > 0, 2.0 - h0, 0.0), np.where(h0 > 0, 2.0 + h0, 0.0)
    hole = h1 > 0
    assert np.array_equal(lo[:, 0], l0) and np.array_equal(hi[:, 1], u0)
    assert np.array_equal(hi[:, 0], np.where(hole, np.minimum(u0, 2.0 - h1), u0))
    assert np.array_equal(lo[:, 1], np.where(hole, np.maximum(l0, 2.0 + h1), u0))


def test_lens_distance_is_the_brute_force_minimum():
    """The block-pruned compiled search (superblocks, then blocks) returns the brute-force least sample distance bit
    for bit (near the lens, inside its bounding box, far away), and a scipy k-d tree agrees."""
    from scipy.spatial import cKDTree

    from numerics.papers.support import region_targets as rt
    lens = Lens()
    bp = lens.boundary(20001)
    p = _five_region_points(np.random.default_rng(5), 200)
    d2 = (p[:, None, 0] - bp[None, :, 0]) ** 2 + (p[:, None, 1] - bp[None, :, 1]) ** 2
    brute = np.sqrt(d2.min(axis=1))
    assert np.array_equal(rt._min_sample_distance(p, bp, *rt._sample_boxes(bp)), brute)
    assert np.array_equal(lens.distance(p), np.where(lens.contains(p), 0.0, brute))
    assert np.allclose(cKDTree(bp).query(p)[0], brute, rtol=1e-15, atol=0)


def test_nearest_abscissa_is_argmins_first_minimiser():
    """The block-pruned nearest boundary sample is ``np.argmin``'s (the first of equal squared distances): the
    lens's samples come in upper/lower pairs of one abscissa and a few points are equidistant from two samples of
    different abscissae (a pruned search that kept the last minimiser, or compared bounds with >= in the second
    pass, returns another abscissa there); a NaN point gives ``bp[0]``, as argmin does."""
    from numerics.papers.support import region_targets as rt
    lens = Lens()
    bp = lens._boundary_points()
    rng = np.random.default_rng(6)
    ties = 0.5 * (bp[100:110] + bp[103:113])                  # midpoints of samples of different abscissae
    p = np.concatenate([_five_region_points(rng, 300), ties, [[np.nan, 0.0]]])
    d2 = (p[:, None, 0] - bp[None, :, 0]) ** 2 + (p[:, None, 1] - bp[None, :, 1]) ** 2
    got = rt._nearest_abscissa(p, bp, *rt._sample_boxes(bp))
    assert np.array_equal(got, bp[np.argmin(d2, axis=1), 0])
    assert np.sum(np.sum(d2 == np.min(d2, axis=1, keepdims=True), axis=1) > 1) >= 1  # the sweep has ties


def test_guidance_vector_rows_equals_per_class_rows():
    """Row i of ``guidance_vector_rows`` is ``guidance_vector(x, t, etas[i])[i]`` bit for bit; bad etas name it."""
    from numerics.papers.support.experiments import experiment
    rm = experiment("five_regions").mixture
    x = np.random.default_rng(2).normal(size=(40, 2)) * 2
    etas = np.arange(40) % 5
    for t in (2.0, 0.05, 1e-3):
        g = rm.guidance_vector_rows(x, t, etas)
        for c in range(5):
            assert np.array_equal(g[etas == c], rm.guidance_vector(x, t, c)[etas == c])
    with pytest.raises(ValueError, match="etas"):
        rm.guidance_vector_rows(x, 0.5, etas[:-1])
    with pytest.raises(ValueError, match="y"):
        rm.guidance_vector_rows(x, 0.5, etas + 1)


def test_polygon_hull_distance_equals_numpy_broadcasting():
    """The lens hull's compiled edge distance equals the NumPy broadcasting it replaced, bit for bit."""
    from numerics.papers.support.claims import ClassHull
    H = ClassHull([Lens()])
    x = _five_region_points(np.random.default_rng(3), 100)
    A, B = H.V, np.roll(H.V, -1, axis=0)
    AB = B - A
    AQ = x[:, None, :] - A[None]
    tt = np.clip(np.sum(AQ * AB[None], axis=2) / np.sum(AB * AB, axis=1)[None], 0.0, 1.0)
    d = AQ - tt[..., None] * AB[None]
    ref = np.sqrt(np.min(np.sum(d * d, axis=2), axis=1))
    inside = np.max(x @ H.eq[:, :2].T + H.eq[:, 2], axis=1) <= 0
    assert np.array_equal(H.distance(x), np.where(inside, 0.0, ref))
    assert np.isnan(H.distance(np.array([[np.nan, 0.0], [0.0, 0.0]]))[0])


def test_sort_small_is_numpy_sort() -> None:
    """The panel ends' insertion sort gives np.sort's order, duplicates, infinities and NaN (last) included."""
    from numerics.papers.support import region_targets as rt

    rng = np.random.default_rng(5)
    cases = [rng.normal(size=m) for m in (1, 2, 7, 20)]
    cases += [np.array([3.0, 1.0, 3.0, -np.inf, np.inf, 1.0, np.nan, 0.0, -0.0, np.nan, 2.0]),
              np.round(rng.normal(size=30), 1), np.arange(12.0)[::-1].copy()]
    for e in cases:
        got = e.copy()
        rt._sort_small(got)
        np.testing.assert_array_equal(got, np.sort(e))


def test_row_logsumexp_is_scipys_bit_for_bit():
    """``_logsumexp_rows`` (scipy's logsumexp formula by the same NumPy operations) equals
    ``scipy.special.logsumexp(a, axis=1, keepdims=True)`` bit for bit on rows of 1 to 16 entries of every scale,
    with ties, -inf, +inf, NaN and all -inf rows (a plain max-shifted formula differs in the last bits)."""
    from scipy.special import logsumexp

    from numerics.papers.support.region_targets import _logsumexp_rows
    rng = np.random.default_rng(0)
    for K in (1, 2, 3, 5, 7, 8, 9, 16):
        for scale in (1e-3, 1.0, 30.0, 1e3, 1e6):
            a = rng.standard_normal((200, K)) * scale
            r = rng.random(a.shape)
            a[r < 0.1] = -np.inf
            a[(r > 0.1) & (r < 0.13)] = np.inf
            a[(r > 0.13) & (r < 0.15)] = np.nan
            a[0] = -np.inf
            if K > 1:
                a[1, :2] = a[1, 0]
            assert np.array_equal(_logsumexp_rows(a), logsumexp(a, axis=1, keepdims=True), equal_nan=True)


def _dmd_numpy(reg, p):
    """``_DiskMinusDisk.distance`` and ``nearest_x`` as the NumPy broadcasting the compiled ones replaced."""
    def project(p, c, R):
        v = p - c
        n = np.linalg.norm(v, axis=1, keepdims=True)
        u = np.where(n > 0, v / np.where(n > 0, n, 1.0), np.array([1.0, 0.0]))
        return c + R * u

    nrm = lambda v: np.linalg.norm(v, axis=1)  # noqa: E731
    inA, inB = nrm(p - reg.c) <= reg.R, nrm(p - reg.c2) < reg.r
    pa = project(p, reg.c, reg.R)
    cand = [np.where(inA & ~inB, 0.0, np.inf), np.where(nrm(pa - reg.c2) >= reg.r, nrm(p - pa), np.inf)]
    if reg.r > 0:
        pb = project(p, reg.c2, reg.r)
        cand.append(np.where(nrm(pb - reg.c) <= reg.R, nrm(p - pb), np.inf))
        cand += [nrm(p - q) for q in reg._isect]
    dist = np.min(np.stack(cand), axis=0)
    tol = 1e-12 * (1 + dist)
    best = np.where(np.abs(nrm(p - pa) - dist) <= tol, pa[:, 0], np.nan)
    if reg.r > 0:
        hit = (nrm(pb - reg.c) <= reg.R) & (np.abs(nrm(p - pb) - dist) <= tol)
        best = np.where(np.isnan(best) & hit, pb[:, 0], best)
        for q in reg._isect:
            best = np.where(np.isnan(best) & (np.abs(nrm(p - q) - dist) <= tol), q[0], best)
    best = np.where(dist == 0, p[:, 0], best)
    return dist, np.where(np.isnan(best), np.clip(p[:, 0], reg.xa, reg.xb), best)


@pytest.mark.parametrize("reg", [Crescent((2.0, 2.0)), Crescent((2.0, -2.0), 1.5, 1.0, -0.8), Disk((-3.0, 3.0), 0.8),
                                 Annulus((0.0, 0.0), 2.0, 1.0)])
def test_disk_minus_disk_distance_and_nearest_x_equal_the_numpy_formula(reg):
    """The compiled distance and nearest abscissa of a disk minus a disk equal the NumPy formula they replaced bit for
    bit: points everywhere, inside, on both circles, at both centres and at the crossings (where the candidates
    tie), far away; a candidate left out or taken in another order moves some of them."""
    rng = np.random.default_rng(17)
    th = rng.uniform(0, 2 * np.pi, 300)
    ring = np.stack([np.cos(th), np.sin(th)], axis=1)
    p = np.concatenate([_five_region_points(rng, 400), rng.normal(size=(300, 2)) * 20, reg.c + reg.R * ring,
                        reg.c2 + reg.r * ring, reg.c[None], reg.c2[None], reg._isect,
                        reg.c + rng.uniform(0, reg.R, (300, 1)) * ring])
    want_d, want_x = _dmd_numpy(reg, p)
    got_d = reg.distance(p)
    assert np.array_equal(got_d, want_d)
    assert np.array_equal(reg.nearest_x(p, got_d), want_x) and np.array_equal(reg.nearest_x(p), want_x)


def test_a_region_with_its_own_intervals_is_summed_through_them():
    """A region subclass that overrides ``intervals`` (as the geometry oracle's lens control does) is summed through
    its own slices, not the fused kernel's built-in ones: its moments equal the stored-input sums of its intervals and
    differ from the plain lens's; the plain regions in the same call keep the fused kernel's floats."""
    from numerics.papers.support import region_targets as rt

    class _WideLens(Lens):
        def intervals(self, x):
            lo, hi = Lens.intervals(self, x)
            return 2 * lo, 2 * hi

    wide, lens, disk = _WideLens(), Lens(), Disk((-3.0, 3.0), 0.8)
    assert lens._fused() and disk._fused() and not wide._fused()
    mu = _five_region_points(np.random.default_rng(19), 30)
    got = rt._joint_slice_moments([wide, lens, disk], [np.arange(mu.shape[0])] * 3, mu, 0.3, 24, 8, None)
    want = rt._slice_moments(*wide.slice_inputs(mu, 0.3), mu, 0.3)
    assert np.array_equal(got[0][0], want[0]) and np.array_equal(got[0][1], want[1])
    assert not np.allclose(got[0][0], got[1][0])
    for reg, g in zip((lens, disk), got[1:]):
        plain = reg.kernel_moments(mu, 0.3)
        assert np.array_equal(g[0], plain[0]) and np.array_equal(g[1], plain[1])

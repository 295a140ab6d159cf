"""High-frequency ripples on random mixtures (``ce_guidance.counterexample_random_mixtures``): the Monte-Carlo
kernel against an independent d = 1 quadrature (scipy.integrate.quad on hand-written densities), the derived
remainder bounds against the quadrature values, E[pq] against independent estimates, the MSE identity, and bad
input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit, logsumexp
from scipy.stats import multivariate_normal

from numerics import GaussianMixture
from numerics.papers.ce_guidance.random_ripples import (ClassifierAt, PhasedRipple, classifier_at, noised_sample,
                                                        oscillation_moments, random_direction, random_mixture,
                                                        relative_remainders, ripple_errors, ripple_sweep)
from numerics.schedule import alpha_sigma2
from numerics.stats import ENSEMBLE_LEVEL, mean_ci

T = 0.5


class Line:
    """A two-class 1-D mixture at OU time T written out by hand, independent of the package's kernels."""

    def __init__(self, gm: GaussianMixture):
        a, s2 = alpha_sigma2(T)
        self.w, self.lab = gm.weights, gm.labels
        self.m = a * gm.means[:, 0]
        self.s = np.sqrt(a * a * gm.covs[:, 0, 0] + s2)
        self.c0, self.c1 = self.lab == 0, self.lab == 1

    def _dens(self, x: float):
        """w_k N(x; m_k, s_k^2) and their x-derivatives (the normal density written out)."""
        z = (x - self.m) / self.s
        dens = self.w * np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * self.s)
        return dens, dens * (-z / self.s)

    def integrands(self, x, dl, om, u, ph):
        """p_t(x), then: KL, label-averaged squared guidance error (from g_1 = q f', g_0 = -p f'), pq, the C
        integrand pq(|f' u| + |score u|), and (pq f')^2."""
        dens, ddens = self._dens(x)
        A0, A1 = dens[self.c0].sum(), dens[self.c1].sum()
        pt, p, q = A0 + A1, A1 / (A0 + A1), A0 / (A0 + A1)
        fp = ddens[self.c1].sum() / A1 - ddens[self.c0].sum() / A0
        score = ddens.sum() / pt
        h, hp = dl * math.sin(om * u * x + ph), dl * om * u * math.cos(om * u * x + ph)
        f = math.log(A1 / A0)
        ph_, qh = expit(f + h), expit(-f - h)
        kl = p * math.log(p / ph_) + q * math.log(q / qh)
        err = p * (qh * (fp + hp) - q * fp) ** 2 + q * (-ph_ * (fp + hp) + p * fp) ** 2
        return pt, kl, err, p * q, p * q * (abs(fp * u) + abs(score * u)), (p * q * fp) ** 2

    def expect(self, j, dl, om, u, ph):
        """E_{p_t}[integrand j] by adaptive quadrature over +-12 standard deviations, in 64 pieces."""
        lo, hi = float(np.min(self.m - 12 * self.s)), float(np.max(self.m + 12 * self.s))
        cuts = np.linspace(lo, hi, 65)

        def g(x):
            v = self.integrands(x, dl, om, u, ph)
            return v[0] * v[j]
        return sum(integrate.quad(g, a_, b_, limit=400, epsabs=1e-13, epsrel=1e-11)[0] for a_, b_ in zip(cuts, cuts[1:]))


@pytest.fixture(scope="module")
def line():
    rng = np.random.default_rng(7)
    gm = random_mixture(rng, 3, 1, "isotropic")
    return gm, Line(gm)


def test_monte_carlo_matches_quadrature(line):
    gm, L = line
    u, ph = np.array([-1.0]), 1.3
    rng = np.random.default_rng(11)
    x = noised_sample(gm, T, 200_000, rng)
    tr = classifier_at(gm, x, T)
    for dl in (0.2, 0.1, 0.05):
        om = dl**-2
        kl, err = ripple_errors(tr, tr, x, PhasedRipple(dl, om, u, ph))
        for vals, j in ((kl, 1), (err, 2)):
            ci = mean_ci(vals, ENSEMBLE_LEVEL)
            exact = L.expect(j, dl, om, -1.0, ph)
            assert ci.lo <= exact <= ci.hi, (dl, j, exact, ci)


def test_remainder_bounds_hold_at_quadrature_accuracy(line):
    """The derived relative remainders of the note contain the quadrature ratios, at delta where they matter."""
    gm, L = line
    u, ph = 1.0, 0.4
    E, C, A2 = (L.expect(j, 1.0, 1.0, u, ph) for j in (3, 4, 5))
    for dl in (0.5, 0.3, 0.2):
        om = dl**-2
        k, mlo, mhi = relative_remainders(dl, om, E, C, A2, E)
        rk = L.expect(1, dl, om, u, ph) / (dl**2 * E / 4)
        rm = L.expect(2, dl, om, u, ph) / (dl**2 * om**2 * E / 2)
        assert abs(rk - 1) <= k, (dl, rk, k)
        assert 1 - mlo <= rm <= 1 + mhi, (dl, rm, mlo, mhi)
        assert k < 1 and mhi < 1  # and the bounds are informative there


def test_epq_against_independent_estimates(line):
    gm, L = line
    rng = np.random.default_rng(3)
    x = noised_sample(gm, T, 100_000, rng)
    mom = oscillation_moments(classifier_at(gm, x, T), gm.score(x, T), np.array([1.0]))
    ci = mean_ci(mom.pq, ENSEMBLE_LEVEL)
    assert ci.lo <= L.expect(3, 1.0, 1.0, 1.0, 0.0) <= ci.hi
    # d = 2, diagonal covariances: the posterior from scipy.stats densities on an independent sample
    gm2 = random_mixture(np.random.default_rng(5), 3, 2, "diagonal")
    a, s2 = alpha_sigma2(T)
    x2 = noised_sample(gm2, T, 100_000, np.random.default_rng(6))
    y2 = noised_sample(gm2, T, 100_000, np.random.default_rng(8))
    pq_pkg = mean_ci(oscillation_moments(classifier_at(gm2, x2, T), gm2.score(x2, T), np.array([1.0, 0.0])).pq,
                     ENSEMBLE_LEVEL)
    logd = np.stack([np.log(w) + multivariate_normal(a * m, a * a * S + s2 * np.eye(2)).logpdf(y2)
                     for w, m, S in zip(gm2.weights, gm2.means, gm2.covs)], axis=1)
    l1 = logsumexp(logd[:, gm2.labels == 1], axis=1) - logsumexp(logd, axis=1)
    p = np.exp(l1)
    pq_ref = mean_ci(p * (1 - p), ENSEMBLE_LEVEL)
    assert pq_pkg.lo <= pq_ref.hi and pq_ref.lo <= pq_pkg.hi


def test_mse_identity_pointwise():
    r"""m = pq |grad h|^2 + a^2 |grad f + grad h|^2, a = sigma(-f-h) - sigma(-f) (the note's exact form)."""
    rng = np.random.default_rng(2)
    gm = random_mixture(rng, 5, 2, "isotropic")
    u = random_direction(rng, 2)
    x = noised_sample(gm, T, 2000, rng)
    tr = classifier_at(gm, x, T)
    r = PhasedRipple(0.3, 7.0, u, 0.2)
    kl, err = ripple_errors(tr, tr, x, r)
    f = tr.log_p[:, 1] - tr.log_p[:, 0]
    h, gh = r.value(x), r.grad(x)
    gf = tr.g[:, 1] - tr.g[:, 0]
    p = np.exp(tr.log_p[:, 1])
    aa = expit(-f - h) - expit(-f)
    want = p * (1 - p) * np.sum(gh**2, 1) + aa**2 * np.sum((gf + gh) ** 2, 1)
    np.testing.assert_allclose(err, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kl, np.log(1 - p + p * np.exp(h)) - p * h, rtol=1e-7, atol=1e-14)


def test_sweep_runs_and_is_reproducible():
    gm = random_mixture(np.random.default_rng(1), 2, 1)
    a = ripple_sweep(gm, T, [0.1, 0.05], 2.0, 1000, np.random.default_rng(4), 0.95)
    b = ripple_sweep(gm, T, [0.1, 0.05], 2.0, 1000, np.random.default_rng(4), 0.95)
    assert a.kl[0].mean == b.kl[0].mean and len(a.mse) == 2 and a.epq.mean > 0


def test_sweep_draws_are_shared_bit_for_bit_and_leave_the_stream_where_drawing_would():
    """The memoised draws of ripple_sweep (shared by the stated run and the controls): a second sweep from the same
    generator state equals a sweep with the memo cleared bit for bit, in every interval, for the stated sweep and
    the controls' variants (other omega power, base time, prior dropped), and leaves the generator where the draws
    would have; another state, mixture, t or n draws afresh."""
    import numerics.papers.ce_guidance.random_ripples as R

    gm = random_mixture(np.random.default_rng(1), 3, 2, "diagonal")

    def run(**kw):
        rng = np.random.default_rng(4)
        rng.standard_normal(3)                         # a generator part-way through its stream
        args = dict(gm=gm, t=T, deltas=[0.1, 0.05], omega_power=2.0, n=2000, rng=rng, level=0.95) | kw
        r = ripple_sweep(**args)
        return r, rng.standard_normal(4)

    def flat(r):
        return [(c.mean, c.lo, c.hi) for c in (*r.kl, *r.mse, r.epq, r.c, r.a2)] + [r.u.tobytes(), r.phase]

    for kw in ({}, {"omega_power": 1.0}, {"base_time": T + 0.02}, {"prior_dropped": True}):
        R._DRAWS.clear()
        fresh, after_fresh = run(**kw)
        assert len(R._DRAWS) == 1
        memo, after_memo = run(**kw)
        assert len(R._DRAWS) == 1 and flat(memo) == flat(fresh)
        assert after_memo.tobytes() == after_fresh.tobytes()
    run(n=2001)
    run(t=T * 1.5)
    run(gm=random_mixture(np.random.default_rng(2), 3, 2, "diagonal"))
    assert len(R._DRAWS) == 4
    rng = np.random.default_rng(5)
    ripple_sweep(gm, T, [0.1], 2.0, 2000, rng, 0.95)
    assert len(R._DRAWS) == 5


def _zeros(n: int) -> ClassifierAt:
    """A ClassifierAt of zeros at n points in d = 1."""
    return ClassifierAt(np.zeros((n, 2)), np.zeros((n, 2, 1)))


@pytest.mark.parametrize("call, name", [
    (lambda: PhasedRipple(-0.1, 1.0, [1.0]), "delta"),
    (lambda: PhasedRipple(0.1, 0.0, [1.0]), "omega"),
    (lambda: PhasedRipple(0.1, 1.0, [1.0, 1.0]), "direction"),
    (lambda: PhasedRipple(0.1, 1.0, [1.0], phase=float("nan")), "phase"),
    (lambda: PhasedRipple(0.1, 1.0, [1.0]).value(np.zeros((3, 2))), "x"),
    (lambda: random_mixture(np.random.default_rng(0), 1, 2), "K"),
    (lambda: random_mixture(np.random.default_rng(0), 2, 0), "d"),
    (lambda: random_mixture(np.random.default_rng(0), 2, 2, "full"), "covariance"),
    (lambda: random_mixture("seed", 2, 2), "rng"),
    (lambda: noised_sample(random_mixture(np.random.default_rng(0), 2, 1), T, 1, np.random.default_rng(0)), "n"),
    (lambda: noised_sample("gm", T, 10, np.random.default_rng(0)), "gm"),
    (lambda: classifier_at(GaussianMixture([0.5, 0.5], [[0.0], [1.0]], np.ones((2, 1, 1)), labels=[0, 0]), np.zeros((2, 1)), T),
     "gm"),
    (lambda: classifier_at(GaussianMixture([0.3, 0.3, 0.4], [[0.0], [1.0], [2.0]], np.ones((3, 1, 1))),
                           np.zeros((2, 1)), T), "gm"),
    (lambda: ripple_errors(_zeros(2), _zeros(3), np.zeros((2, 1)), PhasedRipple(0.1, 1.0, [1.0])), "base"),
    (lambda: ripple_errors(_zeros(2), _zeros(2), np.zeros((2, 1)), "ripple"), "ripple"),
    (lambda: oscillation_moments(_zeros(2), np.zeros((3, 1)), [1.0]), "score"),
    (lambda: relative_remainders(0.1, 100.0, 0.0, 1.0, 1.0), "epq_lo"),
    (lambda: relative_remainders(-0.1, 100.0, 0.1, 1.0, 1.0), "delta"),
    (lambda: relative_remainders(0.1, 100.0, 0.1, -1.0, 1.0), "c_hi"),
    (lambda: ripple_sweep(random_mixture(np.random.default_rng(0), 2, 1), T, [0.1, -0.1], 2.0, 10,
                          np.random.default_rng(0), 0.95), "deltas"),
    (lambda: ripple_sweep(random_mixture(np.random.default_rng(0), 2, 1), T, [0.1], 2.0, 10,
                          np.random.default_rng(0), 0.95, base_time=-1.0), "base_time"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_ripple_errors_in_blocks_are_the_whole_arrays_bit_for_bit(monkeypatch):
    """``ripple_errors`` in row blocks (a block size that does not divide N), on 1 and 2 threads, equals the
    row-wise computation on the whole arrays bit for bit."""
    import numba

    from numerics.papers.ce_guidance import random_ripples as R

    rng = np.random.default_rng(11)
    gm = random_mixture(rng, 5, 3, "diagonal")
    x = noised_sample(gm, 0.3, 1001, rng)
    true, base = classifier_at(gm, x, 0.3), classifier_at(gm, x, 0.4)
    rip = PhasedRipple(0.05, 400.0, R.random_direction(rng, 3), 0.7)
    ref = R._ripple_errors_rows(true.log_p, true.g, base.log_p, base.g, x, rip, 1)
    monkeypatch.setattr(R, "RIPPLE_ROWS", 3 * 37)
    old = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            out = ripple_errors(true, base, x, rip)
            assert np.array_equal(out[0], ref[0]) and np.array_equal(out[1], ref[1])
    finally:
        numba.set_num_threads(old)

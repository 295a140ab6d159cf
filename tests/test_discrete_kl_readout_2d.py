"""Tests of numerics.papers.discrete_kl.readout_2d against independent oracles (brute-force Bayes on a grid, Monte
Carlo of the sampler with confidence intervals, closed forms for Gaussian targets)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from numerics.papers.discrete_kl import channel as C
from numerics.papers.discrete_kl import readout_2d as RO

TG = RO.readout_target()
G2 = C.gaussian([0.5, -0.3], [[1.0, 0.8], [0.8, 1.0]])


def _grid_posterior_mean(target, y, t, h=0.01, half=6.0):
    """E[X | Y_t = y] by brute-force Bayes: prior density times the likelihood N(y; t x, t I) on a fine x-grid."""
    ax = np.arange(-half, half + h / 2, h)
    X1, X2 = np.meshgrid(ax, ax, indexing="ij")
    x = np.stack([X1.ravel(), X2.ravel()], axis=1)
    logw = RO.log_density(target, x) - 0.5 * np.sum((y[None] - t * x) ** 2, axis=1) / t
    w = np.exp(logw - logw.max())
    return (w @ x) / w.sum()


def test_target_is_correlated_and_not_a_product():
    cov = TG.cov
    assert abs(cov[0, 1]) / math.sqrt(cov[0, 0] * cov[1, 1]) > 0.5
    # not a product: the density differs from the product of its marginals at a point off the diagonal
    h = 0.02
    ax = np.arange(-5, 5 + h / 2, h)
    X1, X2 = np.meshgrid(ax, ax, indexing="ij")
    p = np.exp(RO.log_density(TG, np.stack([X1.ravel(), X2.ravel()], 1))).reshape(X1.shape)
    p1, p2 = p.sum(1) * h, p.sum(0) * h
    i, j = np.searchsorted(ax, -1.8), np.searchsorted(ax, 1.8)
    assert p1[i] * p2[j] > 20 * p[i, j]


@pytest.mark.parametrize("t", [0.3, 2.0, 7.0])
def test_posterior_mean_matches_brute_force_bayes(t):
    f = RO.denoiser(TG)
    fp = RO.denoiser(TG, RO.SamplerSpec(denoiser="product"))
    for y in (np.array([0.4, -0.9]) * t, np.array([-1.0, 1.2]) * t, np.array([0.3, 0.2])):
        ref = _grid_posterior_mean(TG, y, t)
        assert np.allclose(f(y[None], t)[0], ref, atol=1e-6)
    # the product-of-marginals control is wrong somewhere (it ignores the correlation)
    y = np.array([-1.0, 1.2]) * t
    assert np.max(np.abs(fp(y[None], t)[0] - _grid_posterior_mean(TG, y, t))) > 1e-2


def test_entropy_against_grid_quadrature():
    h = 0.01
    ax = np.arange(-5.5, 5.5 + h / 2, h)
    X1, X2 = np.meshgrid(ax, ax, indexing="ij")
    lp = RO.log_density(TG, np.stack([X1.ravel(), X2.ravel()], 1))
    ref = -float(np.sum(np.exp(lp) * lp)) * h * h
    v, e = RO.entropy(TG, err=True)
    assert abs(v - ref) < 1e-6 + e


def test_terminal_term_gaussian_closed_form_and_immse():
    lam = np.linalg.eigvalsh(G2.covs[0])
    for t in (0.5, 3.0):
        assert RO.terminal_term(G2, t) == pytest.approx(0.5 * np.sum(np.log1p(1 / (t * lam))), rel=1e-12)
    # T'(t) = (M(t) - d/t)/2 for the mixture (I-MMSE), central difference
    t, hh = 2.0, 1e-3
    dT = (RO.terminal_term(TG, t + hh) - RO.terminal_term(TG, t - hh)) / (2 * hh)
    assert dT == pytest.approx(0.5 * (C.mmse(TG, t) - 2 / t), abs=1e-5)
    assert RO.terminal_term(TG, t) > 0


@pytest.mark.parametrize("t,n", [(2.0, 4), (6.0, 8)])
def test_affine_gaussian_readout_matches_oracle(t, n):
    ts = C.schedule("uniform", T=t, n=n)
    ref = RO.gaussian_readout_kl_oracle(G2.means[0], G2.covs[0], ts)
    assert RO.gaussian_readout_kl(G2, ts) == pytest.approx(ref, abs=1e-12)
    for spec in (RO.SamplerSpec(time_offset=1), RO.SamplerSpec(denoiser="product"), RO.SamplerSpec(scale_back=False)):
        assert abs(RO.gaussian_readout_kl(G2, ts, spec) - ref) > 1e-3
    assert abs(RO.gaussian_readout_kl(G2, ts, RO.SamplerSpec(dtype=np.float32)) - ref) > 1e-11


def test_grid_readout_kl_equals_gaussian_closed_form():
    """The 2-D grid propagation (used for the mixture) on a correlated Gaussian: its KL equals the closed form."""
    ts = C.schedule("uniform", T=3.0, n=4)
    v, e, info = RO.readout_kl(G2, ts, err=True)
    ref = RO.gaussian_readout_kl_oracle(G2.means[0], G2.covs[0], ts)
    assert abs(v - ref) <= max(10 * e, 1e-9)
    assert abs(info["mass"] - 1) < 1e-9


def test_readout_law_against_monte_carlo():
    """Means, E[X1 X2] and an off-diagonal bump of the grid read-out law inside 5-sigma Monte-Carlo intervals."""
    t, n, N = 2.5, 4, 200_000
    ts = C.schedule("uniform", T=t, n=n)
    rng = np.random.default_rng(12345)
    y = C.snr_sample(TG, ts, np.zeros((N, 2)), rng.standard_normal((n, N, 2)))
    xs = y / t + rng.standard_normal((N, 2)) / math.sqrt(t)
    axes, dens = RO.readout_density(TG, ts)
    h2 = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
    X1, X2 = np.meshgrid(axes[0], axes[1], indexing="ij")
    w = dens * h2
    assert abs(w.sum() - 1) < 1e-6
    pairs = [(X1, xs[:, 0]), (X2, xs[:, 1]), (X1 * X2, xs[:, 0] * xs[:, 1]),
             # a smooth bump off the diagonal (where a product-of-marginals sampler would put mass)
             (np.exp(-(X1 + 1) ** 2 - (X2 - 1) ** 2), np.exp(-(xs[:, 0] + 1) ** 2 - (xs[:, 1] - 1) ** 2))]
    for g, s in pairs:
        assert abs(float(np.sum(w * g)) - s.mean()) < 5 * s.std() / math.sqrt(N)


def test_readout_bound_holds_and_minimiser():
    n = 4
    tstar = RO.bound_minimiser(TG, n)
    assert RO.theorem1_readout_bound(TG, tstar, n) < min(RO.theorem1_readout_bound(TG, tstar * 0.9, n),
                                                         RO.theorem1_readout_bound(TG, tstar * 1.1, n))
    ts = C.schedule("uniform", T=tstar, n=n)
    kl = RO.readout_kl(TG, ts)
    assert 0 < kl <= RO.gap_bound(TG, tstar, n) <= RO.theorem1_readout_bound(TG, tstar, n) + 1e-9
    # the not-scaled read-out breaks it once t_n is well above 1 (and the bound's path term t/(2n) tr Cov is small)
    ts4 = C.schedule("uniform", T=4.0, n=8)
    assert RO.readout_kl(TG, ts4, RO.SamplerSpec(scale_back=False)) > RO.theorem1_readout_bound(TG, 4.0, 8)


@pytest.mark.parametrize("call,name", [
    (lambda: RO.readout_kl(C.binary(), [0, 1, 2]), "target"),
    (lambda: RO.readout_kl(TG, [0, 1.0]), "ts"),
    (lambda: RO.readout_kl(TG, [0, 1.0, 2.0], factor=-1.0), "factor"),
    (lambda: RO.readout_kl(TG, [0, 1.0, 2.0], spec="stated"), "spec"),
    (lambda: RO.readout_kl(TG, [0, 1.0, 2.0], spec=RO.SamplerSpec(time_offset=2)), "spec"),
    (lambda: RO.bound_minimiser(TG, 4, lo=5.0, hi=1.0), "hi"),
    (lambda: RO.bound_minimiser(TG, 4, lo=50.0, hi=60.0), "lo"),
    (lambda: RO.log_density(TG, np.zeros(3)), "x"),
    (lambda: RO.terminal_term(TG, -1.0), "t"),
    (lambda: RO.gaussian_readout_kl_oracle([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]], [0, 1, 2]), "cov"),
    (lambda: RO.entropy(C.discrete([[0.0, 0.0], [1.0, 1.0]], [0.5, 0.5])), "target"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_phi_kernel_matches_the_dense_exponentials():
    """The compiled kernel matrix (two-product recurrence, exact exp every grid_density.RESTART entries) against exp of every
    entry: relative error below 1e-10 where the entry is normal (the recurrence's rounding grows with the exponent,
    about 1e-11 at exp(-700)), exactly 0 where the dense entry is; a wrong variance or centre is far outside."""
    rng = np.random.default_rng(2)
    x = RO._axis_grid(-3.0, 3.0, 2.0, 0.05, 7.0)
    cen = rng.uniform(x[0] - 1.0, x[-1] + 1.0, 500)
    for v in (0.0025, 0.1, 1.0):
        dense = np.exp(-0.5 * (x[None, :] - cen[:, None]) ** 2 / v) / math.sqrt(2 * math.pi * v)
        got = RO._phi(x, cen, v)
        normal = dense > 1e-300
        assert np.max(np.abs(got[normal] - dense[normal]) / dense[normal]) < 1e-10
        assert np.max(np.abs(got - dense)) < 1e-12 * dense.max()
        assert np.all(got[dense == 0.0] == 0.0)
        assert np.max(np.abs(RO._phi(x, cen, 1.001 * v) - dense)) > 1e-4 * dense.max()
        assert np.max(np.abs(RO._phi(x, cen + 1e-3, v) - dense)) > 1e-4 * dense.max()
    with pytest.raises(ValueError, match="ts"):
        RO._phi(x, np.array([0.0, np.nan]), 1.0)


def test_prefetched_readout_kls_do_not_depend_on_threads():
    """The claim's read-out KLs and bounds, computed side by side (``_ro_prefetch``), are bit for bit the functions
    called alone, for 1 and 2 threads (the state-law memo emptied before each run)."""
    import numba

    from numerics.papers.discrete_kl import claims as dk

    tg, spec, nodes = RO.readout_target(), RO.SamplerSpec(denoiser="product"), 8
    sweeps = [[2, [0.5, 1.0]], [3, [1.0]]]
    old, saved = numba.get_num_threads(), dict(dk._RO_CACHE)
    runs = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            dk._RO_CACHE.clear()
            RO._STATE_CACHE.clear()
            dk._RO_CACHE.update({(nodes, "tstar", n, nodes): 1.5 for n, _ in sweeps})
            dk._ro_prefetch(tg, sweeps, nodes, spec)
            runs.append(dict(dk._RO_CACHE))
    finally:
        numba.set_num_threads(old)
        dk._RO_CACHE.clear()
        dk._RO_CACHE.update(saved)
    assert len(runs[0]) == 2 + 3 * 3 and runs[0].keys() == runs[1].keys()
    alone = RO.readout_kl(tg, C.schedule("uniform", T=0.75, n=2), spec=spec, err=True)
    for run in runs:
        assert run[(nodes, "kl", 2, 0.5, spec)][:2] == alone[:2]
        assert run[(nodes, "gap", 3, 1.0)] == RO.gap_bound(tg, 1.5, 3, nodes=nodes, err=True)
        assert run[(nodes, "thm", 2, 0.5)] == RO.theorem1_readout_bound(tg, 0.75, 2, nodes=nodes, err=True)
        for k in run:
            assert run[k] == runs[0][k] if k[1] != "kl" else run[k][:2] == runs[0][k][:2] and run[k][2] == runs[0][k][2]

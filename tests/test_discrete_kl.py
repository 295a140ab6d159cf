"""Tests of the Gaussian channel (theory + numerics), the discrete-sampler path KL and the discrete_kl claims."""
import math

import numpy as np
import pytest
import sympy as sp

import theory.gaussian_channel as G
from numerics.papers.discrete_kl import channel as C


# ----------------------------------------------------------------------------------------------- theory
def test_scalar_channel_identities():
    ch = G.scalar_gaussian_channel()
    assert ch["immse_residual"] == 0
    assert ch["closed_form_residual_M"] == 0 and ch["closed_form_residual_I"] == 0
    assert sp.simplify(ch["M0"] - G.v) == 0


def test_matrix_immse_and_binary_and_shift():
    assert G.matrix_immse()["residual"] == 0
    assert G.binary_channel()["residual"] == 0
    assert G.mixture_kl_shift()["residual"] == 0


def test_ou_map_and_ddpm_is_snr_sampler():
    om = G.ou_map()
    assert om["snr_residual"] == 0 and om["snr_closed"] == 0 and om["scale_residual"] == 0
    d = G.ddpm_in_snr_time()
    assert d["residual_Y"] == 0 and d["residual_D"] == 0 and d["residual_z"] == 0


def test_lemma2_gaussian_symbolic():
    l2 = G.lemma2_gaussian()
    assert l2["telescope_residual"] == 0 and l2["integral_residual"] == 0 and l2["step_residual"] == 0
    chain, gap = G.riemann_gap_gaussian([0, sp.Rational(1, 3), 1, sp.Rational(7, 2)])
    diff = sp.simplify(sp.exp(2 * (chain - gap)))  # the log terms combine to 1
    assert diff == 1 or all(abs(sp.N((chain - gap).subs(G.v, vv), 50)) < 1e-40 for vv in (sp.Rational(7, 10), 3))
    st = G.per_step_kl_gaussian()
    assert st["residual"] == 0
    assert sp.simplify(st["series"] - (G.delta**2 * st["s"] ** 2 / 4 - G.delta**3 * st["s"] ** 3 / 6)) == 0


def test_numerics_match_lambdified_closed_forms():
    f = G.lambdified()
    g = C.gaussian([0.3], 2.0)
    for t in (0.0, 0.5, 3.0, 40.0):
        assert C.mmse(g, t) == pytest.approx(f["M"](t, 2.0), rel=1e-14)
        assert C.mutual_info(g, t) == pytest.approx(f["I"](t, 2.0), rel=1e-14, abs=1e-300)
    tau = np.array([1e-3, 0.1, 1.0, 4.0])
    np.testing.assert_allclose(C.snr_of_ou(tau), f["snr"](tau), rtol=1e-13)
    np.testing.assert_allclose(C.ou_of_snr(C.snr_of_ou(tau)), tau, rtol=1e-12)
    assert C.step_kl(g, 1.0, 0.25) == pytest.approx(f["step_kl"](0.25, 2.0 / 3.0), rel=1e-13)


# ----------------------------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("t", [0.05, 1.0, 6.0])
def test_mmse_mi_vs_mpmath(t):
    for target in (C.binary(), C.discrete([-1, 0, 2], [0.3, 0.4, 0.3]),
                   C.gaussian_mixture([0.4, 0.6], [[-1.0], [1.5]], [[[0.5]], [[0.2]]])):
        M, eM = C.mmse(target, t, err=True)
        I, eI = C.mutual_info(target, t, err=True)
        assert abs(M - float(C.mp_mmse(target, t, dps=20))) <= 1e-10 * max(M, 1e-3) + 10 * eM
        assert abs(I - float(C.mp_mutual_info(target, t, dps=20))) <= 1e-10 + 10 * eI


def test_mmse_derivative_and_monotone():
    b = C.binary()
    h = 1e-4
    fd = (C.mmse(b, 1.0 + h) - C.mmse(b, 1.0 - h)) / (2 * h)
    assert C.mmse_derivative(b, 1.0) == pytest.approx(fd, rel=1e-6)
    M = C.mmse(b, np.linspace(0, 10, 41))
    assert np.all(np.diff(M) < 0) and M[0] == 1.0


def test_gaussian_2d_closed_form_vs_quadrature_mixture():
    S = np.array([[1.0, 0.3], [0.3, 0.5]])
    g = C.gaussian([0.2, -0.1], S)
    # the same law as a 2-component mixture of identical components: forces the quadrature path
    gm = C.gaussian_mixture([0.5, 0.5], [[0.2, -0.1]] * 2, [S, S])
    for t in (0.3, 2.0):
        assert C.mmse(gm, t, nodes=40) == pytest.approx(C.mmse(g, t), rel=1e-10)
        assert C.mutual_info(gm, t, nodes=40) == pytest.approx(C.mutual_info(g, t), abs=1e-10)
        assert C.mmse(g, t) == pytest.approx(np.trace(S @ np.linalg.inv(np.eye(2) + t * S)), rel=1e-14)


def test_posterior_binary_is_tanh():
    y = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(C.posterior_mean(C.binary(), y[:, None], 2.5)[:, 0], np.tanh(y), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(C.posterior_cov(C.binary(), y[:, None], 2.5)[:, 0, 0], 1 - np.tanh(y) ** 2,
                               rtol=1e-12, atol=1e-15)


def test_lemma2_two_ways_and_note_numbers():
    b = C.binary()
    ts = C.schedule("uniform", T=8.0, n=8)
    a, g = C.path_kl_chain(b, ts, inner_nodes=128), C.riemann_gap(b, ts)
    assert abs(a - g) < 1e-11  # inner Gauss-Hermite at delta = 1 converges geometrically: 48 nodes 3e-10
    assert round(g, 7) == 0.2866020  # the note's C2 value
    g3 = C.discrete([-1, 0, 2], [0.3, 0.4, 0.3])
    assert C.riemann_gap(g3, C.schedule("uniform", T=6.0, n=6)) == pytest.approx(0.4088, abs=5e-5)


def test_two_point_moments():
    m, v, mu3 = np.array([0.3, -1.0]), np.array([0.5, 2.0]), np.array([0.2, -1.5])
    a, b, p = C.two_point(m, v, mu3)
    np.testing.assert_allclose(p * a + (1 - p) * b, m, rtol=1e-14)
    np.testing.assert_allclose(p * (a - m) ** 2 + (1 - p) * (b - m) ** 2, v, rtol=1e-13)
    np.testing.assert_allclose(p * (a - m) ** 3 + (1 - p) * (b - m) ** 3, mu3, rtol=1e-12)


@pytest.mark.parametrize("skew", [1e8, -1e8, 3e10, -3e12, 1e15])
def test_two_point_moments_at_extreme_skewness(skew):
    """The rare point's probability from 2/(r(r + |g|)): the one-pass 1/2 (1 - g/r) cancels for |g| > 1e8
    (p rounds to 0, or 1 - p to 0) and the third moment came out wrong.  Moments in mpmath (40 digits)."""
    import mpmath as mp

    m, v = 0.25, 2.0
    a, b, p = C.two_point(np.array([m]), np.array([v]), np.array([skew * v ** 1.5]))
    assert 0 < p[0] <= 0.5
    with mp.workdps(40):
        a_, b_, p_, m_ = mp.mpf(a[0]), mp.mpf(b[0]), mp.mpf(p[0]), mp.mpf(m)
        mean = p_ * a_ + (1 - p_) * b_
        var = p_ * (a_ - mean) ** 2 + (1 - p_) * (b_ - mean) ** 2
        mu3 = p_ * (a_ - mean) ** 3 + (1 - p_) * (b_ - mean) ** 3
        assert abs(mean - m_) <= 1e-13 * (1 + abs(m_) + mp.sqrt(v))
        assert abs(var / v - 1) <= 1e-10
        assert abs(mu3 / (skew * v ** 1.5) - 1) <= 1e-10


def test_snr_sampler_gaussian_covariance_recursion():
    """The mean-only sampler on N(0, v): Monte Carlo variance vs the exact recursion V_k."""
    v = 2.0
    g = C.gaussian([0.0], v)
    ts = C.schedule("uniform", T=4.0, n=4)
    rng = np.random.default_rng(3)
    N = 200_000
    y = C.snr_sample(g, ts, np.zeros((N, 1)), rng.standard_normal((4, N, 1)))
    V = 0.0
    for k in range(1, 5):
        d, tp = ts[k] - ts[k - 1], ts[k - 1]
        A = v / (1 + tp * v)
        V = (1 + d * A) ** 2 * V + d
    assert abs(y.var() - V) < 5 * V * math.sqrt(2 / N)


def test_ddpm_sampler_equals_snr_sampler():
    """The package's DDPM sampler on OU time is this sampler in Y = (alpha/sigma^2) X, path by path."""
    samplers = pytest.importorskip("numerics.samplers")
    from numerics.mixture import GaussianMixture
    gm = GaussianMixture([0.3, 0.7], [[-1.0], [1.2]], [[[0.3]], [[0.0]]])
    ct = C.gaussian_mixture([0.3, 0.7], [[-1.0], [1.2]], [[[0.3]], [[0.0]]])
    grid = np.array([3.0, 2.0, 1.2, 0.7, 0.4, 0.2, 0.1, 0.05])
    n, seed = 64, 11
    x0 = np.random.default_rng(5).standard_normal((n, 1))
    _, traj = samplers.sample(gm, method="ddpm", grid=grid, n=n, seed=seed, x_init=x0, return_trajectory=True)
    rng = np.random.default_rng(seed)  # the sampler draws one (n, d) block per step from this generator
    z = np.stack([rng.standard_normal((n, 1)) for _ in range(grid.size - 1)])
    ts = C.snr_of_ou(grid)
    scale = np.exp(-grid) / -np.expm1(-2 * grid)
    ys = C.snr_sample(ct, ts, scale[0] * x0, z, trajectory=True)
    for k in range(grid.size):
        np.testing.assert_allclose(ys[k], scale[k] * traj[k], rtol=1e-9, atol=1e-9 * scale[k])


@pytest.mark.parametrize("call, arg", [
    (lambda: C.gaussian([0.0], -1.0), "cov"),
    (lambda: C.discrete([1.0, 2.0], [0.5, 0.6]), "probs"),
    (lambda: C.discrete([1.0, 2.0], [1.0]), "probs"),
    (lambda: C.gaussian_mixture([1.0], [[np.nan]], [[[1.0]]]), "means"),
    (lambda: C.mmse(C.binary(), -1.0), "t"),
    (lambda: C.mmse("binary", 1.0), "target"),
    (lambda: C.mmse(C.binary(), 1.0, nodes=2), "nodes"),
    (lambda: C.riemann_gap(C.binary(), [0.0, 2.0, 1.0]), "ts"),
    (lambda: C.schedule("weird", T=1.0, n=3), "kind"),
    (lambda: C.step_kl(C.binary(), 0.0, 0.1, moment=4), "moment"),
    (lambda: C.posterior_mean(C.binary(), np.zeros((3, 2)), 1.0), "y"),
])
def test_bad_input_names_argument(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


def test_gaussian_path_kl_is_the_chain_rule_and_lemma2():
    """The direct KL of the two Gaussian path laws equals the closed-form chain rule and Lemma 2's gap."""
    for g in (C.gaussian([0.0], 2.0), C.gaussian([0.5, -0.3], [[1.0, 0.8], [0.8, 1.0]])):
        for ts in (C.schedule("uniform", T=10.0, n=16), C.schedule("geometric", t1=0.05, c=0.5, n=9)):
            r = C.gaussian_path_kl(g, ts)
            assert r["path"] == pytest.approx(C.path_kl_chain(g, ts), rel=1e-11)
            assert r["path"] == pytest.approx(C.riemann_gap(g, ts), rel=1e-11)
            assert 0 < r["terminal"] < r["path"]


def test_gaussian_terminal_kl_matches_variance_recursion_and_grid():
    g = C.gaussian([0.0], 2.0)
    ts = C.schedule("uniform", T=10.0, n=8)
    V = 0.0
    for k in range(1, ts.size):
        d, tp = ts[k] - ts[k - 1], ts[k - 1]
        V = (1 + d * 2.0 / (1 + 2.0 * tp)) ** 2 * V + d
    P = 10.0 * (1 + 20.0)
    kl = 0.5 * (P / V - 1 - math.log(P / V))
    assert C.gaussian_path_kl(g, ts)["terminal"] == pytest.approx(kl, rel=1e-12)
    assert C.terminal_kl_grid(g, ts, points=1201)["kl"] == pytest.approx(kl, rel=1e-9)


def _dense_terminal_kl(target, ts, points, noise_var=None):
    """The dense form terminal_kl_grid had (an exp for every kernel entry, then K @ (w q)): the reference."""
    T = float(ts[-1])
    R = T * float(np.abs(target.means).max()) + 12.0 * math.sqrt(T * (1 + T * float(target.covs.max())))
    y = np.linspace(-R, R, points)
    h = y[1] - y[0]
    wq = np.full(points, h)
    wq[0] = wq[-1] = h / 2
    nv = (lambda dd: dd) if noise_var is None else noise_var
    mean = lambda yy, tt: target.posterior(yy.reshape(-1, 1), tt).mean[:, 0]  # noqa: E731
    v1 = nv(float(ts[1]))
    q = np.exp(-0.5 * (y - ts[1] * mean(np.zeros(1), 0.0)[0]) ** 2 / v1) / math.sqrt(2 * math.pi * v1)
    for k in range(2, ts.size):
        dk = float(ts[k] - ts[k - 1])
        mu, vk = y + dk * mean(y, float(ts[k - 1])), nv(dk)
        q = (np.exp(-0.5 * (y[:, None] - mu[None, :]) ** 2 / vk) / math.sqrt(2 * math.pi * vk)) @ (wq * q)
    logp = np.log(np.exp(target.log_component_density(y[:, None], T)) @ target.weights)
    return float(wq @ (np.exp(logp) * (logp - np.log(q)))), float(wq @ q)


def test_gauss_transform_matches_the_dense_kernel():
    """One grid step of terminal_kl_grid (grid_density.gauss_transform, compiled recurrence) against exp of every
    entry and the matrix product; a wrong variance moves the result by far more."""
    from numerics.references.grid_density import gauss_transform
    rng = np.random.default_rng(3)
    y = np.linspace(-20.0, 20.0, 801)
    mu = y + 0.3 * np.tanh(y) + 0.05 * rng.standard_normal(y.size)
    c = rng.random(y.size)
    for v in (0.01, 0.5, 4.0):
        dense = (np.exp(-0.5 * (y[:, None] - mu[None, :]) ** 2 / v) / math.sqrt(2 * math.pi * v)) @ c
        got = gauss_transform(y, mu, c, math.sqrt(v))
        assert np.max(np.abs(got - dense) / dense) < 1e-13
        assert np.max(np.abs(gauss_transform(y, mu, c, math.sqrt(1.01 * v)) - dense) / dense) > 1e-4


@pytest.mark.parametrize("n, noise", [(8, False), (32, False), (16, True)])
def test_terminal_kl_grid_matches_the_dense_propagation(n, noise):
    """terminal_kl_grid (kernel by recurrence) against the dense propagation it replaced (binary target): the KL to
    1e-12 absolute and the mass to 1e-13 (the recurrence's rounding over n steps; the grid error is ~1e-13 and up)."""
    b, ts = C.binary(), C.schedule("uniform", T=8.0, n=n)
    nv = (lambda dd: dd * dd) if noise else None
    kl, mass = _dense_terminal_kl(b, ts, 1201, nv)
    r = C.terminal_kl_grid(b, ts, points=1201, noise_var=nv)
    assert abs(r["kl"] - kl) < 1e-12 and abs(r["mass"] - mass) < 1e-13


def test_noise_var_option_matches_gaussian_kl():
    """step_kl with the sampler's noise variance changed: nested quadrature vs the Gaussian closed form."""
    g = C.gaussian([0.0], 2.0)
    tp, d, v = 1.0, 0.5, 0.3
    s = 2.0 / (1 + 2.0 * tp)
    P = d * d * s + d  # comparison increment variance given y; means equal
    closed = 0.5 * (P / v - 1 - math.log(P / v))
    assert C.step_kl(g, tp, d, noise_var=v, inner_nodes=64) == pytest.approx(closed, rel=1e-10)


def test_heat_sup_and_binary_derivatives():
    from numerics.papers.discrete_kl import claims as DK
    assert DK.heat_sup(1) == pytest.approx(32 / 27, rel=1e-9)
    b = C.binary()
    h = 1e-3
    for t in (0.05, 0.5, 3.0):
        d2 = (C.mmse_derivative(b, t + h) - C.mmse_derivative(b, t - h)) / (2 * h)
        assert abs(d2) <= DK.heat_sup(2)
    # M'(0) = -(L tanh)(0) = -1
    assert C.mmse_derivative(b, 1e-9) == pytest.approx(-1.0, abs=1e-6)


def test_terminal_interval_and_em_expansion():
    from numerics.papers.discrete_kl import claims as DK
    g = C.gaussian([0.0], 2.0)
    for n in (64, 256):
        lo, hi, lim = DK.terminal_interval(g, 10.0, n)
        val = n * n * C.gaussian_path_kl(g, C.schedule("uniform", T=10.0, n=n))["terminal"]
        assert lo <= lim <= hi and lo <= val <= hi
        L0, L1, R, e = DK.em_expansion(g, 10.0, n)
        nD = n * C.gaussian_path_kl(g, C.schedule("uniform", T=10.0, n=n))["path"]
        assert abs(nD - L0 - L1) <= R + e + 1e-9
        assert abs(nD - L0) > R  # the next-order term L1 is resolved
    assert lim == pytest.approx((21**2 - 1) ** 2 / (16 * 21**2), rel=1e-14)


# ----------------------------------------------------------------------------------------------- claims
def test_claims_registered_and_cheap_ones_hold_with_controls_flagged():
    from numerics.papers.discrete_kl import claims as DK
    from numerics.checks.verdict import passes
    ids = [c for c in DK.__dict__.values() if hasattr(c, "claim")]
    assert len(ids) == 10  # nine claims and the 2-D read-out (tests/test_discrete_kl_readout_2d.py)
    assert all(fn.claim.controls and "legacy_broken" not in fn.claim.controls for fn in ids)
    for fn in (DK.theorem1, DK.decomposition, DK.geometric):
        c = fn.claim
        assert all(passes(m) for m in fn(c.context("quick", 0)) if m.counted)
        for ctl in c.controls:
            assert not all(passes(m) for m in fn(c.context("quick", 0, ctl)) if m.counted), ctl


def test_posterior_mean_is_the_posterior_s_mean_bit_for_bit():
    """The covariance-free posterior mean (the samplers' denoiser) equals Posterior.mean exactly, at t = 0 too."""
    from numerics.papers.discrete_kl import readout_2d as RO
    rng = np.random.default_rng(5)
    for tg in (C.binary(), RO.readout_target(), C.gaussian([0.5, -0.3], [[1.0, 0.8], [0.8, 1.0]])):
        y = 3.0 * rng.standard_normal((200, tg.d))
        for t in (0.0, 0.3, 5.0):
            assert np.array_equal(tg.posterior_mean(y, t), tg.posterior(y, t).mean)


def _step_kl_broadcast(target, t_prev, delta, moment=1, nodes=C.DEFAULT_NODES, inner_nodes=None, f=None,
                       noise_var=None, match_skew=True):
    """The nested quadrature of step_kl as it was written before the compiled kernel: NumPy broadcasting over
    (N, K, Q, K) arrays (the reference of the test below)."""
    from numerics.quadrature import gauss_hermite_normal

    inner_nodes = nodes if inner_nodes is None else inner_nodes
    y, wy, _ = target.nodes(t_prev, nodes)
    logw, mj, S, m, cov = target.posterior(y, t_prev)
    s2 = delta * delta * S[:, 0, 0] + delta
    z, wz = gauss_hermite_normal(inner_nodes)
    U = delta * mj[:, :, 0][:, :, None] + np.sqrt(s2)[None, :, None] * z[None, None, :]
    lpc = -0.5 * (U[..., None] - delta * mj[:, None, None, :, 0]) ** 2 / s2[None, None, None, :] \
        - 0.5 * np.log(2 * np.pi * s2)[None, None, None, :]
    a = logw[:, None, None, :] + lpc
    mx = a.max(axis=3, keepdims=True)
    logp = mx[..., 0] + np.log(np.sum(np.exp(a - mx), axis=3))
    if moment == 1:
        fy = m[:, 0] if f is None else f(y, t_prev).reshape(-1)
        vq = delta if noise_var is None else noise_var
        logq = -0.5 * (U - delta * fy[:, None, None]) ** 2 / vq - 0.5 * math.log(2 * math.pi * vq)
    elif moment == 2:
        v = delta + delta * delta * cov[:, 0, 0]
        logq = -0.5 * (U - delta * m[:, 0][:, None, None]) ** 2 / v[:, None, None] \
            - 0.5 * np.log(2 * np.pi * v)[:, None, None]
    else:
        mean, var, mu3 = C.conditional_moments_1d(target, y[:, 0], t_prev)
        pa, pb, p = C.two_point(mean, var, mu3 if match_skew else np.zeros_like(mu3))
        la = np.log(p)[:, None, None] - 0.5 * (U - delta * pa[:, None, None]) ** 2 / delta
        lb = np.log1p(-p)[:, None, None] - 0.5 * (U - delta * pb[:, None, None]) ** 2 / delta
        logq = np.logaddexp(la, lb) - 0.5 * math.log(2 * math.pi * delta)
    inner = np.einsum("njq,q->nj", logp - logq, wz)
    terms = np.exp(logw) * np.abs(np.einsum("njq,q->nj", np.abs(logp) + np.abs(logq), wz))
    return float(np.dot(wy, np.sum(np.exp(logw) * inner, axis=1))), float(np.dot(wy, terms.sum(axis=1)))


@pytest.mark.parametrize("kw", [dict(moment=1), dict(moment=2), dict(moment=3), dict(moment=3, match_skew=False),
                                dict(moment=1, noise_var=0.01), dict(moment=1, f=lambda y, t: 0.9 * y[:, 0])])
@pytest.mark.parametrize("t_prev,delta", [(0.05, 0.1), (2.0, 0.5), (20.0, 2.0)])
def test_step_kl_kernel_matches_the_broadcast_quadrature(kw, t_prev, delta):
    """The compiled nested quadrature against the NumPy broadcast it replaced (the binary target and a mixture of
    three components of unequal weights and variances; every sampler law; small and large steps): equal up to the rounding of the sums, |difference| <= 64 u times the sum of
    |log p| + |log q| over the nodes (measured: at most 5e-16 against bounds of 6e-15 to 7e-13). A kernel that
    drops a component, the max shift or a node weight is off by far more: the KL is 1e-6 to 1e2 here, except the
    skew-matched two-point law, which is the binary target's own law (KL ~ 1e-17)."""
    from numerics.constants import UNIT_ROUNDOFF as U

    mix = C.gaussian_mixture([0.5, 0.3, 0.2], [[-1.0], [0.5], [2.0]], [[[0.3]], [[0.05]], [[1.0]]])
    for tg in (C.binary(), mix):
        ref, scale = _step_kl_broadcast(tg, t_prev, delta, nodes=120, inner_nodes=40, **kw)
        got = C.step_kl(tg, t_prev, delta, nodes=120, inner_nodes=40, **kw)
        assert abs(got - ref) <= 64 * U * scale, (got, ref, scale)
        assert ref > 1e-6 or (kw == dict(moment=3) and tg.name == "binary")


def test_nested_step_kl_takes_any_gaussian_sampler_law():
    """nested_step_kl with the r = 2 law written by hand is step_kl(moment=2) bit for bit (the moment-matching
    control's covariance scaling at factor 1); a factor 1/delta (the control) changes it; a law of the wrong
    shape names the argument."""
    from numerics.papers.discrete_kl.claims import _step_kl_moment2

    tg = C.gaussian_mixture([0.5, 0.3, 0.2], [[-1.0], [0.5], [2.0]], [[[0.3]], [[0.05]], [[1.0]]])
    ref = C.step_kl(tg, 1.0, 0.2, moment=2, closed_form=False, nodes=80, inner_nodes=30)
    assert _step_kl_moment2(tg, 1.0, 0.2, 80, 30, cov_factor=1.0) == ref
    assert abs(_step_kl_moment2(tg, 1.0, 0.2, 80, 30, cov_factor=5.0) - ref) > 0.1 * ref
    def law(**change):  # the r = 1 law N(0, 1) at the N outer nodes, with entries changed (sizes relative to N)
        def make(y, post):
            N = y.shape[0]
            kw = dict(c=np.zeros(N), v=np.ones(N), half_log=np.full(N, 0.5 * math.log(2 * math.pi)))
            kw.update({k: np.zeros(N + dn) for k, dn in change.items()})
            return C.IncrementLaw(**kw)
        return make

    # every array of the law is checked (the compiled kernel does not check its indices)
    for bad in (law(c=-1), law(v=1), law(half_log=-1), law(b=0), law(b=0, log_pa=0, log_pb=2)):
        with pytest.raises(ValueError, match="sampler_law"):
            C.nested_step_kl(tg, 1.0, 0.2, bad, nodes=80, inner_nodes=30)
    assert C.nested_step_kl(tg, 1.0, 0.2, law(), nodes=80, inner_nodes=30) > 0

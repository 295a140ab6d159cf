"""Tests of numerics.samplers and numerics.references.exact_gaussian."""
from __future__ import annotations

import math

import mpmath as mp
import numba
import numpy as np
import pytest

from numerics import sample, time_grid
from numerics.generated import integrator_coeffs as IC
from numerics.papers.samplers.claims import gaussian_target, two_class_mixture
from numerics.references.exact_gaussian import exact_law, gaussian_kl, pf_map
from numerics.mixture import GaussianMixture
from numerics.samplers import METHODS, STOCHASTIC_METHODS, ScoreModel

GRID = time_grid("uniform", T=2.0, delta=0.05, n=8)
DETERMINISTIC = [m for m in METHODS if m not in STOCHASTIC_METHODS]


def _kw(method):
    return {"eta": 0.5} if method == "ddim_eta" else {}


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def gm():
    return two_class_mixture()


@pytest.mark.parametrize("kwargs, arg", [
    ({"method": "heun"}, "method"),
    ({"method": 3}, "method"),
    ({"grid": [1.0, 2.0]}, "grid"),
    ({"grid": [1.0, np.nan, 0.1]}, "grid"),
    ({"grid": [1.0, 0.5, 0.0]}, "grid"),
    ({"grid": "uniform"}, "grid"),
    ({"n": 0}, "n"),
    ({"n": 2.5}, "n"),
    ({"x_init": np.full((4, 2), np.nan), "n": 4}, "x_init"),
    ({"x_init": np.zeros((4, 3)), "n": 4}, "x_init"),
    ({"x_init": np.zeros((5, 2)), "n": 4}, "x_init"),
    ({"guidance": -1.0, "label": 0}, "guidance"),
    ({"guidance": np.inf, "label": 0}, "guidance"),
    ({"guidance": np.nan, "label": 0}, "guidance"),
    ({"label": 2}, "label"),
    ({"label": -1}, "label"),
    ({"label": 0.5}, "label"),
    ({"guidance": 3.0}, "label"),
    ({"method": "ddim_eta"}, "eta"),
    ({"method": "ddim_eta", "eta": 1.5}, "eta"),
    ({"method": "ddim_eta", "eta": -0.1}, "eta"),
    ({"method": "ddim", "eta": 0.5}, "eta"),
    ({"guidance_form": "xyz"}, "guidance_form"),
    ({"guidance_form": "cg_mean", "method": "ddim"}, "guidance_form"),
])
def test_bad_input(gm, kwargs, arg):
    kw = {"grid": GRID, "n": 4, **kwargs}
    with pytest.raises(ValueError, match=arg):
        sample(gm, **kw)


def test_bad_target():
    with pytest.raises(ValueError, match="target"):
        sample(object(), grid=GRID, n=2)


@pytest.mark.parametrize("score, msg", [
    (lambda x, t: x[:1], "shape"),
    (lambda x, t: np.full_like(x, np.nan), "non-finite"),
    (lambda x: x, "failed"),
])
def test_score_model_validation(score, msg):
    with pytest.raises(ValueError, match=msg):
        ScoreModel(score, 2)


def test_score_model_runs_and_matches_mixture():
    g = gaussian_target()
    sm = ScoreModel(g.score, 2)
    x0 = np.random.default_rng(0).standard_normal((16, 2))
    for m in ("ddim", "ei_ode"):
        a = sample(sm, m, grid=GRID, n=16, x_init=x0)
        b = sample(g, m, grid=GRID, n=16, x_init=x0)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_any_target_protocol_object_is_sampled():
    """sample() takes any numerics.target.Target (duck-typed), not just the package's classes: a plain class
    wrapping an exact mixture gives the output of the mixture's own methods (``fast=False``: the default evaluates
    a GaussianMixture with the fast kernel) bit for bit."""
    from numerics import target as TG

    g = gaussian_target()

    class Wrapped:
        d, n_classes = g.d, g.n_classes

        def score(self, x, t):
            return g.score(x, t)

        def denoiser(self, x, t):
            return g.denoiser(x, t)

        def guidance_vector(self, x, t, y):
            return g.guidance_vector(x, t, y)

        def conditional_score(self, x, t, y):
            return g.conditional_score(x, t, y)

    w = Wrapped()
    assert isinstance(w, TG.Target) and isinstance(g, TG.Target) and isinstance(ScoreModel(g.score, 2), TG.Target)
    assert ScoreModel is TG.ScoreModel  # numerics.samplers.ScoreModel is the one in numerics.target
    x0 = np.random.default_rng(0).standard_normal((16, 2))
    for m in ("ddim", "ei_ode", "dpm_solver_1"):
        np.testing.assert_array_equal(sample(w, m, grid=GRID, n=16, x_init=x0),
                                      sample(g, m, grid=GRID, n=16, x_init=x0, fast=False))


def test_score_model_reports_its_callables():
    g = gaussian_target()
    sm = ScoreModel(g.score, 2, guidance=g.guidance_vector)
    assert sm.has_guidance and not sm.has_conditional_score
    with pytest.raises(ValueError, match="guidance_form: 'cfg'"):
        sample(sm, "ddim", grid=GRID, n=4, label=0, guidance=2.0, guidance_form="cfg")
    for bad, needle in [(dict(d=0), "^d:"), (dict(d=2.0), "^d:"), (dict(d=2, n_classes=0), "^n_classes:")]:
        with pytest.raises(ValueError, match=needle):
            ScoreModel(g.score, **bad)


# ------------------------------------------------------------------------------------------ runs
@pytest.mark.parametrize("method", METHODS)
def test_every_method_guided_finite(gm, method):
    x = sample(gm, method, grid=time_grid("geometric", T=5.0, delta=1e-3, kappa=0.2), n=200, seed=1,
               label=1, guidance=3.0, **_kw(method))
    assert x.shape == (200, 2) and x.dtype == np.float64 and np.all(np.isfinite(x))


def test_forms_and_trajectory(gm):
    x, traj = sample(gm, "ddpm", grid=GRID, n=50, label=0, guidance=2.0, guidance_form="cg_mean",
                     return_trajectory=True)
    assert traj.shape == (GRID.size, 50, 2) and np.array_equal(traj[-1], x)
    # CG = CFG for exact scores: the guided DDIM outputs agree to rounding
    a = sample(gm, "ddim", grid=GRID, n=50, label=0, guidance=2.0, guidance_form="cg")
    b = sample(gm, "ddim", grid=GRID, n=50, label=0, guidance=2.0, guidance_form="cfg")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", ["ddpm", "ei_sde", "dpm_solver_2"])
def test_bit_identical_across_threads(gm, method):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a = sample(gm, method, grid=GRID, n=3000, seed=7, label=1, guidance=3.0)
        numba.set_num_threads(2)
        b = sample(gm, method, grid=GRID, n=3000, seed=7, label=1, guidance=3.0)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(a, b)


def _sequential_run(target, method, grid, x, seed, rng=None, **kw):
    """The former step loop, written out: ``c_x x + c_q q`` then ``+ c_z z`` with a fresh draw per step (no
    helper thread, no in-place update) from ``rng`` (default ``np.random.default_rng(seed)``)."""
    from numerics.methods import get_method, grid_coefficients
    from numerics.samplers import GuidedQuantities

    rec = get_method(method)
    coefs, _ = grid_coefficients(rec, grid, None, "cg")
    rng = np.random.default_rng(seed) if rng is None else rng
    guided = GuidedQuantities(target, kw.get("label"), kw.get("guidance", 1.0), "cg")
    for k in range(grid.size - 1):
        c = coefs[k]
        out = c[0] * x + c[1] * guided.q(rec.q, x, float(grid[k]))
        x = out + c[-1] * rng.standard_normal(x.shape)
    return x


@pytest.mark.parametrize("method", ["ddpm", "ei_sde_code"])
@pytest.mark.parametrize("threads", [1, 2])
def test_noise_drawn_ahead_is_the_sequential_stream(gm, monkeypatch, method, threads):
    """With every block drawn ahead on the helper thread (AHEAD_ELEMENTS = 1) the run equals the former
    sequential loop bit for bit, at 1 and 2 Numba threads; the helper is used exactly when more than one thread
    is allowed and the generator is the run's own (a Generator passed as the seed is never drawn ahead)."""
    import numerics.samplers as S

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 Numba threads")
    monkeypatch.setattr(S, "AHEAD_ELEMENTS", 1)
    used = []
    init = S._Noise.__init__

    def spy(self, *args):
        init(self, *args)
        used.append(self._pool is not None)

    monkeypatch.setattr(S._Noise, "__init__", spy)
    x0 = np.random.default_rng(1).standard_normal((300, gm.d))
    ref = _sequential_run(gm, method, GRID, x0, 11, label=1, guidance=3.0)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(threads)
        got = sample(gm, method, grid=GRID, n=300, seed=11, x_init=x0, label=1, guidance=3.0)
        rng = np.random.default_rng(11)
        again = sample(gm, method, grid=GRID, n=300, seed=rng, x_init=x0, label=1, guidance=3.0)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(got, ref) and np.array_equal(again, ref)
    assert used == [threads > 1, False]
    after = np.random.default_rng(11)
    for _ in range(GRID.size - 1):
        after.standard_normal(x0.shape)
    assert rng.bit_generator.state == after.bit_generator.state  # no block drawn beyond the run's own


def _block_oracle(seed: int, shape: tuple[int, int], steps: int, rows: int) -> list[np.ndarray]:
    """The "blocks" stream written from its definition: step k's rows [b rows, (b + 1) rows) from
    SFC64(SeedSequence(seed).spawn(k + 1)[k].spawn(b + 1)[b])."""
    out = []
    for k, child in enumerate(np.random.SeedSequence(seed).spawn(steps)):
        z = np.empty(shape)
        for b, grand in enumerate(child.spawn(-(-shape[0] // rows))):
            z[b * rows:(b + 1) * rows] = np.random.Generator(np.random.SFC64(grand)).standard_normal(
                (min(rows, shape[0] - b * rows), shape[1]))
        out.append(z)
    return out


@pytest.mark.parametrize("method", ["ddpm", "ei_sde_code"])
def test_block_noise_is_its_definition_for_any_thread_count(gm, monkeypatch, method):
    """noise="blocks" equals the sequential loop fed with the stream built from its definition (block (k, b) from
    its own spawned SeedSequence, 7 rows a block here: 300 rows = 42 full blocks and one of 6), bit for bit at 1
    and 2 Numba threads, with and without the pool (AHEAD_ELEMENTS = 1 forces it); the default stream is not it."""
    import numerics.samplers as S

    monkeypatch.setattr(S, "BLOCK_VALUES", 7 * gm.d)
    monkeypatch.setattr(S, "AHEAD_ELEMENTS", 1)
    x0 = np.random.default_rng(1).standard_normal((300, gm.d))
    blocks = iter(_block_oracle(11, x0.shape, GRID.size - 1, 7))

    class Fed:  # a Generator stand-in handing out the oracle's blocks in order
        def standard_normal(self, shape):
            z = next(blocks)
            assert z.shape == shape
            return z

    ref = _sequential_run(gm, method, GRID, x0, 11, label=1, guidance=3.0, rng=Fed())
    got = {}
    old = numba.get_num_threads()
    try:
        for threads in range(1, min(2, numba.config.NUMBA_NUM_THREADS) + 1):
            numba.set_num_threads(threads)
            got[threads] = sample(gm, method, grid=GRID, n=300, seed=11, x_init=x0, label=1, guidance=3.0,
                                  noise="blocks")
    finally:
        numba.set_num_threads(old)
    for y in got.values():
        assert np.array_equal(y, ref)
    plain = sample(gm, method, grid=GRID, n=300, seed=11, x_init=x0, label=1, guidance=3.0)
    assert not np.array_equal(plain, ref)


def test_block_noise_seeds_and_arguments(gm):
    """Same seed, same run (an int and its SeedSequence agree); another seed, another run; the blocks are
    standard normal (KS at 1e-3); a Generator seed, an unknown stream and a first step on the sequential stream
    are refused naming their argument."""
    from scipy.stats import kstest

    a = sample(gm, "ddpm", grid=GRID, n=500, seed=3, noise="blocks")
    assert np.array_equal(a, sample(gm, "ddpm", grid=GRID, n=500, seed=np.random.SeedSequence(3), noise="blocks"))
    assert not np.array_equal(a, sample(gm, "ddpm", grid=GRID, n=500, seed=4, noise="blocks"))
    z = np.concatenate([b.ravel() for b in _block_oracle(3, (5000, 4), 3, 100)])
    assert kstest(z, "norm").pvalue > 1e-3
    with pytest.raises(ValueError, match="^seed"):
        sample(gm, "ddpm", grid=GRID, n=5, seed=np.random.default_rng(3), noise="blocks")
    with pytest.raises(ValueError, match="^noise"):
        sample(gm, "ddpm", grid=GRID, n=5, seed=3, noise="philox")
    with pytest.raises(ValueError, match="^first_step"):
        sample(gm, "ddpm", grid=GRID, n=5, seed=3, first_step=2)


def test_seed_reproducible(gm):
    a = sample(gm, "ddpm", grid=GRID, n=10, seed=3)
    assert np.array_equal(a, sample(gm, "ddpm", grid=GRID, n=10, seed=3))
    assert not np.array_equal(a, sample(gm, "ddpm", grid=GRID, n=10, seed=4))


# ------------------------------------------------------------------------------------------ CG forms
def test_cg_score_vs_mean_form_gap(gm):
    """One DDPM step from the same x_t and noise: the two forms differ by w (score - mean form) g(x_t)."""
    t, s, w = 0.7, 0.5, 3.0
    x0 = np.random.default_rng(2).standard_normal((100, 2))
    a = sample(gm, "ddpm", grid=[t, s], n=100, x_init=x0, seed=5, label=1, guidance=w, guidance_form="cg")
    b = sample(gm, "ddpm", grid=[t, s], n=100, x_init=x0, seed=5, label=1, guidance=w, guidance_form="cg_mean")
    sf, mf = IC.ddpm_guidance_shifts(t, s)
    gap = w * (sf - mf) * gm.guidance_vector(x0, t, 1)
    assert sf > mf
    np.testing.assert_allclose(a - b, gap, rtol=0, atol=64 * np.finfo(float).eps * (1 + np.abs(a).max()))


# ------------------------------------------------------------------------------------------ exact law
def _affine_guidance(t):
    """g(x, t) = A_t x + b_t, a smooth made-up affine guidance vector."""
    a = math.exp(-t)
    return np.array([[-0.3 * a, 0.1], [0.0, -0.2]]), np.array([0.5 * a, -0.25])


def _guided_model(g):
    A = _affine_guidance
    return ScoreModel(g.score, 2, guidance=lambda x, t, y: x @ A(t)[0].T + A(t)[1], n_classes=1)


Z_FAMILY = 4.5  # two-sided normal quantile: 5 statistics x ~16 cases x P(|Z| > 4.5) = 6.8e-6 each -> < 1e-3


CASES = [(m, "cg", False) for m in METHODS] + [("ddpm", "cg", True), ("ddpm", "cg_mean", True),
                                               ("ddim", "cg", True), ("ei_sde", "cg", True),
                                               ("dpm_solver_2", "cg", True), ("euler_maruyama", "cg", True)]


@pytest.mark.parametrize("method, form, guided", CASES)
def test_sampler_matches_exact_law_mc(method, form, guided):
    r"""Sample mean and covariance (n = 20000) vs the exact law.

    Mean: each coordinate of the sample mean is N(m_i, S_ii/n).  Covariance (np.cov, Gaussian data):
    Var(S^_ij) = (S_ij^2 + S_ii S_jj)/(n - 1).  Each statistic must lie within Z_FAMILY standard errors.
    """
    g = gaussian_target()
    n, w = 20000, 2.0
    eta = _kw(method).get("eta")
    target = _guided_model(g) if guided else g
    kw = dict(label=0, guidance=w) if guided else {}
    x = sample(target, method, grid=GRID, n=n, seed=11, eta=eta, guidance_form=form, **kw)
    m, S = exact_law(g, method, GRID, eta=eta, guidance=w, guidance_form=form,
                     affine_guidance=_affine_guidance if guided else None)
    se_m = np.sqrt(np.diag(S) / n)
    assert np.all(np.abs(x.mean(0) - m) <= Z_FAMILY * se_m), (x.mean(0), m)
    se_S = np.sqrt((S**2 + np.outer(np.diag(S), np.diag(S))) / (n - 1))
    assert np.all(np.abs(np.cov(x.T) - S) <= Z_FAMILY * se_S), (np.cov(x.T), S)


@pytest.mark.parametrize("method", DETERMINISTIC)
@pytest.mark.parametrize("guided", [False, True])
def test_exact_law_vs_probed_affine_map(method, guided):
    """Brute force: the deterministic sampler is affine, x -> M x + c; probe it at 0 and the unit vectors
    (the sampler's own arithmetic, not exact_gaussian's matrices) and push N(m0, S0) through it."""
    g = gaussian_target()
    target = _guided_model(g) if guided else g
    kw = dict(label=0, guidance=2.0) if guided else {}
    probes = np.vstack([np.zeros(2), np.eye(2)])
    y = sample(target, method, grid=GRID, n=3, x_init=probes, **kw)
    c, M = y[0], (y[1:] - y[0]).T
    m0, S0 = np.array([0.3, -1.0]), np.array([[1.0, 0.4], [0.4, 0.5]])
    m, S = exact_law(g, method, GRID, m0=m0, S0=S0, guidance=2.0, affine_guidance=_affine_guidance if guided else None)
    np.testing.assert_allclose(m, M @ m0 + c, rtol=0, atol=1e-11)
    np.testing.assert_allclose(S, M @ S0 @ M.T, rtol=0, atol=1e-11)


def test_exact_law_one_ddpm_step_mpmath():
    """One DDPM step on N(mu, lam) in 1-D, x_t ~ N(m0, v0), from the Gaussian posterior q(x_s | x_t, x_0 = D(x_t))
    evaluated in 40-digit mpmath."""
    mp.mp.dps = 40
    mu, lam, t, s, m0, v0 = 0.7, 0.4, 0.9, 0.35, 0.2, 1.3
    g = GaussianMixture([1.0], [[mu]], [[[lam]]])
    T, S_ = mp.mpf(t), mp.mpf(s)
    a_t, a_s, a_h = mp.e**-T, mp.e**-S_, mp.e**-(T - S_)
    s2t, s2s, s2h = 1 - a_t**2, 1 - a_s**2, 1 - a_h**2
    k = a_t * lam / (a_t**2 * lam + s2t)  # D(x) = mu + k (x - a_t mu)
    cx, cq = a_h * s2s / s2t, a_s * s2h / s2t
    slope = cx + cq * k
    mean = slope * m0 + cq * (mu - k * a_t * mu)
    var = slope**2 * v0 + s2h * s2s / s2t
    m, S = exact_law(g, "ddpm", [t, s], m0=[m0], S0=[[v0]])
    assert abs(m[0] - float(mean)) <= 1e-15 and abs(S[0, 0] - float(var)) <= 1e-15


def test_pf_map_solves_the_ode():
    """pf_map vs scipy's DOP853 on the PF-ODE dx/dt = -x - s(x, t) (forward time, integrated backward)."""
    from scipy.integrate import solve_ivp

    g = gaussian_target()
    x0 = np.array([0.8, -1.7])
    sol = solve_ivp(lambda t, x: -x - g.score(x, t), (2.0, 0.05), x0, method="DOP853", rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pf_map(g, x0, 2.0, 0.05), sol.y[:, -1], rtol=0, atol=1e-9)
    # and it transports the marginal N(alpha_t mu, C_t) to N(alpha_s mu, C_s): check on 3 samples' linearity
    e = pf_map(g, np.eye(2), 2.0, 0.05) - pf_map(g, np.zeros((1, 2)), 2.0, 0.05)
    C = lambda t: math.exp(-2 * t) * g.covs[0] + (-math.expm1(-2 * t)) * np.eye(2)  # noqa: E731
    np.testing.assert_allclose(e.T @ C(2.0) @ e, C(0.05), atol=1e-12)


def test_gaussian_kl():
    rng = np.random.default_rng(0)
    R, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    d0, d1 = np.array([0.5, 1.0, 2.0]), np.array([1.5, 0.7, 1.1])
    m0, m1 = rng.standard_normal(3), rng.standard_normal(3)
    # rotation-invariant: a sum of 1-D KLs in the common eigenbasis
    dm = R.T @ (m1 - m0)
    ref = 0.5 * np.sum(d0 / d1 + dm**2 / d1 - 1 + np.log(d1 / d0))
    kl = gaussian_kl(m0, R @ np.diag(d0) @ R.T, m1, R @ np.diag(d1) @ R.T)
    assert abs(kl - ref) <= 1e-13 * max(1, ref)
    assert gaussian_kl(m0, np.eye(3), m0, np.eye(3)) == 0.0


def test_exact_law_rejects_mixture(gm):
    with pytest.raises(ValueError, match="target"):
        exact_law(gm, "ddim", GRID)


# ------------------------------------------------------------------------------- the samplers claims' helpers
@pytest.mark.parametrize("method, kw", [("ddpm", {}), ("ddim_eta", {"eta": 1.0}), ("ddim_eta", {"eta": 0.3}),
                                        ("dpm_solver_1", {}), ("dpm_solver_2", {}), ("ei_sde", {}), ("euler", {})])
def test_chain_without_bug_is_sample(gm, method, kw):
    """The claims' control runs inject bugs into `chain`, a transcription of `sample`'s loop: without a bug it
    must reproduce `sample` bit for bit (same coefficients, kernel calls and random stream)."""
    from numerics.papers.samplers.claims import chain

    grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=0.5)
    a = sample(gm, method, grid=grid, n=50, seed=7, label=1, guidance=3.0, **kw)
    b = chain(gm, method, grid, 50, 7, label=1, w=3.0, eta=kw.get("eta"))
    assert np.array_equal(a, b)
    x0 = np.random.default_rng(1).standard_normal((20, 2))
    assert np.array_equal(sample(gm, method, grid=grid, n=20, seed=3, x_init=x0, **kw),
                          chain(gm, method, grid, 20, 3, eta=kw.get("eta"), x_init=x0))


def test_chain_bugs_change_the_output(gm):
    """Each injected bug changes the output (a control that changes nothing would be idle)."""
    from numerics.papers.samplers.claims import chain, float32_coeffs

    grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=0.5)
    ref = chain(gm, "dpm_solver_1", grid, 30, 0, label=1, w=2.0)
    for kw in ({"coef_bug": float32_coeffs}, {"q_at_end": True}, {"eps_variance": True}, {"w_q": 1.0}):
        assert not np.array_equal(ref, chain(gm, "dpm_solver_1", grid, 30, 0, label=1, w=2.0, **kw))


def test_independent_posterior_coefficients_match_generated():
    """The DDPM law oracle's coefficients (mpmath, from the schedule) agree with the generated ones to the
    latter's documented accuracy (two independent routes)."""
    from numerics.papers.samplers.claims import posterior_coeffs_mp

    for t, s in [(3.0, 2.88), (0.5, 0.02), (0.1, 0.099), (5.0, 1e-3), (1e-3, 1e-6)]:
        a = np.array(posterior_coeffs_mp(t, s))
        b = np.array(IC.ddpm_coeffs(t, s))
        assert np.all(np.abs(a - b) <= 1e-13 * np.abs(a)), (t, s, a, b)


@pytest.mark.parametrize("method", ["ddim", "dpm_solver_1", "dpm_solver_2", "ei_ode", "euler"])
def test_order_oracle_is_the_method(method):
    """`oracle_endpoint` (the method from the note's formulas, used to size the order window) agrees with the
    sampler on the Gaussian target to rounding."""
    from numerics.papers.samplers.claims import oracle_endpoint

    g = gaussian_target()
    grid = time_grid("logsnr", T=2.0, delta=0.05, n=40)
    x0 = np.random.default_rng(2).standard_normal((16, 2))
    ref = sample(g, method, grid=grid, n=16, x_init=x0)
    np.testing.assert_allclose(oracle_endpoint(method, grid, x0, g.means[0], g.covs[0]), ref, rtol=0, atol=1e-12)


def test_order_windows_are_in_the_derivation_range():
    """For both profiles the fitted range has max|W|/(n_1 max|U|) < 1/2 (order_window raises otherwise) and the
    window is narrower than the gap to the next integer order."""
    from numerics.checks import load_all
    from numerics.papers.samplers.claims import order_methods, order_window

    claim = load_all(["numerics.papers.samplers.claims"])["samplers.convergence_orders"]
    g = gaussian_target()
    x0 = np.random.default_rng(0).standard_normal((16, 2))
    for prof in (claim.quick, claim.full):
        for delta in prof["deltas"]:
            for method, order in order_methods(prof).items():
                w = order_window(method, order, prof["ns"], {**prof, "delta": delta}, x0, g)
                assert w["ratio"] < 0.5 and 0 < w["half"] < 0.25, (method, delta, w)


@pytest.mark.parametrize("method", ["ddpm", "ddim_eta", "ei_sde", "ei_sde_code", "euler_maruyama"])
def test_weak_order_helpers(method):
    """The weak-order claim's routes agree: exact_law, its transcription (used for the control runs) and the
    independent per-coordinate oracle (used for the window)."""
    from numerics.papers.samplers.claims import law_kl, weak_oracle_kl, weak_target

    gm = weak_target(4)
    eta = 0.5 if method == "ddim_eta" else None
    grid = time_grid("logsnr", T=2.0, delta=0.05, n=24)
    a = law_kl(method, grid, gm, eta)
    b = law_kl(method, grid, gm, eta, coef_bug=lambda k, t, s, c: c)
    c = weak_oracle_kl(method, grid, gm, 0.5)
    assert a > 0 and abs(a - b) <= 1e-10 * a and abs(a - c) <= 1e-9 * a, (a, b, c)


def _oracle_per_step(method, grid, x0, mu, Sigma):
    """The order oracle as first written: the affine denoiser / score solved at every step (the reference of the
    precomputed ``oracle_endpoint``)."""
    I = np.eye(mu.size)
    sig = lambda t: math.sqrt(-math.expm1(-2.0 * t))  # noqa: E731
    ell = lambda t: -t - 0.5 * math.log(-math.expm1(-2 * t))  # noqa: E731

    def D(x, t):
        a, s2 = math.exp(-t), -math.expm1(-2 * t)
        return mu + (x - a * mu) @ np.linalg.solve(a * a * Sigma + s2 * I, a * Sigma).T

    def score(x, t):
        a, s2 = math.exp(-t), -math.expm1(-2 * t)
        return -(x - a * mu) @ np.linalg.inv(a * a * Sigma + s2 * I).T

    x, d_prev, t_prev = np.array(x0, dtype=np.float64), None, None
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        a_t, a_s, sg_t, sg_s, h = math.exp(-t), math.exp(-s), sig(t), sig(s), t - s
        if method in ("ddim", "dpm_solver_2"):
            Dt = D(x, t)
            if method == "dpm_solver_2" and t_prev is not None:
                hl, hp = ell(s) - ell(t), ell(t) - ell(t_prev)
                r = hl / (2 * hp)
                xn = sg_s / sg_t * x + a_s * (-math.expm1(-hl)) * ((1 + r) * Dt - r * d_prev)
            else:
                xn = sg_s / sg_t * x + (a_s - a_t * sg_s / sg_t) * Dt
            d_prev = Dt
        elif method == "dpm_solver_1":
            xn = a_s / a_t * x + (sg_s - a_s / a_t * sg_t) * (-sg_t * score(x, t))
        elif method == "ei_ode":
            xn = math.exp(h) * x + math.expm1(h) * score(x, t)
        else:
            xn = (1 + h) * x + h * score(x, t)
        x, t_prev = xn, t
    return x


@pytest.mark.parametrize("method", ["ddim", "dpm_solver_1", "dpm_solver_2", "ei_ode", "euler"])
def test_order_oracle_equals_per_step_solves(method):
    """`oracle_endpoint` with its matrices precomputed per grid (one batched solve / inv, shared by the methods)
    equals the per-step solves bit for bit, on two grids in turn (the memo keeps them apart)."""
    from numerics.papers.samplers.claims import oracle_endpoint

    g = gaussian_target()
    x0 = np.random.default_rng(3).standard_normal((32, 2))
    for delta, n in ((1e-3, 96), (0.05, 40), (1e-3, 96)):
        grid = time_grid("logsnr", T=2.0, delta=delta, n=n)
        ref = _oracle_per_step(method, grid, x0, g.means[0], g.covs[0])
        assert np.array_equal(oracle_endpoint(method, grid, x0, g.means[0], g.covs[0]), ref), (delta, n)


def test_order_endpoint_memo():
    """The order claim's endpoints are shared only between runs whose steps are the same: a bug that leaves the
    coefficients as generated gets the stated run's endpoint (= `chain` without a bug), a bug that changes them
    its own `chain` run."""
    from numerics.papers.samplers.claims import _bug_multistep_half, _bug_sde_drift, _order_endpoint, chain

    g = gaussian_target()
    x0 = np.random.default_rng(4).standard_normal((24, 2))
    grid = time_grid("logsnr", T=2.0, delta=0.01, n=20)
    for method in ("ddim", "dpm_solver_2", "euler"):
        stated = _order_endpoint(g, method, grid, x0, True, None, False)
        assert np.array_equal(stated, sample(g, method, grid=grid, n=24, x_init=x0))
        assert np.array_equal(stated, chain(g, method, grid, 24, 0, x_init=x0))
        # (bug, q_at_end, whether the steps are the stated run's)
        for bug, q_at_end, same in ((None, False, True), (_bug_multistep_half, False, method != "dpm_solver_2"),
                                    (_bug_sde_drift, False, False), (None, True, False)):
            got = _order_endpoint(g, method, grid, x0, False, bug, q_at_end)
            assert np.array_equal(got, chain(g, method, grid, 24, 0, x_init=x0, coef_bug=bug, q_at_end=q_at_end))
            assert np.array_equal(got, stated) == same and (got is stated) == same, (method, bug, q_at_end)


def test_exact_law_cached_equals_the_separate_propagations():
    """samplers.ddpm_exact_law_1d's grid law: the law on x and the refinement's finer grid, propagated side by side
    with the law on x once, give bit for bit the density and refinement error of the separate serial runs (the
    mpmath coefficients are memoised before the threads start), for 1 and 2 threads."""
    import numba

    from numerics.grids import time_grid
    from numerics.papers.samplers.claims import _ddpm_grid_law, _exact_law_cached, law_mixture
    from numerics.references.grid_density import refinement_error, uniform_grid

    T, delta, steps, w, space = 3.0, 0.02, 6, 3.0, 201
    gm, grid_t = law_mixture(), time_grid("uniform", T=T, delta=delta, n=steps)
    x = uniform_grid(-9.0, 9.0, space)
    dens, esc = _ddpm_grid_law(gm, grid_t, 1, w, x)
    ref = refinement_error(lambda g: _ddpm_grid_law(gm, grid_t, 1, w, g)[0], x)
    old = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            _exact_law_cached.cache_clear()
            x2, dens2, esc2, ref2 = _exact_law_cached(T, delta, steps, w, space)
            assert np.array_equal(x2, x) and np.array_equal(dens2, dens) and esc2 == esc and ref2 == ref
    finally:
        numba.set_num_threads(old)
        _exact_law_cached.cache_clear()
    assert ref > 0.0

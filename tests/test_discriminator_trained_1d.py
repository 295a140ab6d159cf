"""Tests of the 1-D trained-logit claim ``discriminator.trained_1d`` and its helpers (setting G, T = 8)."""
import math

import numpy as np
import pytest

from numerics.papers.discriminator import claims as C
from numerics.papers.discriminator import refined_1d as D

DATA, MODEL = D.setting_g()
T = 8.0


def test_paired_interval_is_built_from_paired_differences():
    """A large per-training-set effect shared by both objectives cancels in the paired design: the interval is that
    of the differences (constant -0.01 up to 1e-4 noise), not of two independent means (spread 1)."""
    rng = np.random.default_rng(0)
    common = rng.standard_normal(20)  # the training set's own difficulty, shared by GM and CE
    gm = 5.0 + common
    ce = gm + 0.01 + 1e-4 * rng.standard_normal(20)
    m = C._paired("d", gm.tolist(), ce.tolist(), [0.0], True, "test")
    assert abs(m.measured + 0.01) < 1e-4
    assert m.ci[1] < 0.0 and m.ci[1] - m.ci[0] < 2e-3  # unpaired: width of order t * sqrt(2/20) * 1 > 1
    assert m.predicted == 0.0 and m.counted
    # the pass line is minus the largest pair error, and the rule is the interval's upper end
    m2 = C._paired("d", gm.tolist(), ce.tolist(), [0.0, 0.02], True, "test")
    assert m2.predicted == -0.02 and m2.ci[1] > m2.predicted


def test_gm_target_hook_uses_the_same_noise_draws():
    """``target`` replaces only the regression target: the default conditional score passed explicitly reproduces
    the default fit (same random stream), and the alpha-dropped target (a control) changes it."""
    real = DATA.sample(400, np.random.default_rng(1))

    def fit(target=None):
        return D.fit_logit_gm(D.FourierLogit(n_freq=6, seed=3), real, MODEL, np.random.default_rng(2), T,
                              repeats=2, target=target).coef

    def conditional_score(xt, x0, t):
        return -(xt - np.exp(-t) * x0) / (-np.expm1(-2 * t))

    base = fit()
    assert np.allclose(fit(conditional_score), base, rtol=1e-8, atol=1e-10)
    assert np.max(np.abs(fit(C._alpha_dropped_target) - base)) > 1e-2


def test_small_deterministic_fit_endpoint_below_path_kl():
    """Girsanov + data processing for one GM fit on 10^4 samples: the reverse-SDE endpoint KL is at most the path
    KL (both with their own error estimates), while the PF-ODE endpoint is not covered by the bound."""
    fit = ("gm", 10000, 7, 0, 1e-3, 2, False)
    kl, err = C._sampler_kl_1d("sde", fit, 0.04, 0.032)
    path, perr = C._path_1d(fit)
    assert 0.0 < kl <= path + err + perr
    # a refined score with the sign flipped (the logit_sign control) is no longer bounded by this path KL
    bad, _ = C._sampler_kl_1d("sde", fit, 0.04, 0.032, sign=-1.0)
    assert bad > path + err + perr


def test_population_ce_gap_positive_and_reduced_by_ce_training():
    """The averaged population CE gap is >= 0 (the Bayes logit minimises CE at every t); the CE-trained logit has a
    smaller gap than the zero logit at n = 10^4 (at n = 2000 it need not: ridge + overfitting); a label swap or a
    sign error in the gap would reverse the order, and the logit of the other class is worse than the zero logit."""
    zero = D.FourierLogit(seed=3)
    fam = C._fit_1d("ce", 10000, 7, 0, 1e-3, 2)
    g0, g1 = C.population_ce_gap(zero), C.population_ce_gap(fam)
    assert 0.0 < g1 < g0
    swapped = D.FourierLogit(seed=3)
    swapped.coef = -fam.coef  # the logit of the other class
    assert C.population_ce_gap(swapped) > g0


# ----------------------------------------------------------------------------------------------
# compiled paths of a FeatureField against the NumPy field (the reference computation)
# ----------------------------------------------------------------------------------------------
def _random_fam(seed: int, size: float = 0.3) -> D.FourierLogit:
    fam = D.FourierLogit(seed=seed)
    fam.coef = size * np.random.default_rng(seed).standard_normal(fam.coef.shape)
    return fam


def test_sincos_within_one_ulp_of_libm():
    """The polynomial sin/cos of the compiled paths: within 1 ulp of NumPy's (libm) on random arguments, at and next
    to multiples of pi/2 (the reduction's cancellation) and up to the bound of the polynomial path; beyond it, and
    for inf and NaN, libm's values exactly. A wrong quadrant, sign or split of pi/2 is off by O(1) or far more ulp."""
    rng = np.random.default_rng(0)
    near = np.pi / 2 * np.arange(-40000, 40000)
    a = np.concatenate([rng.uniform(-100, 100, 200000), near, np.nextafter(near, np.inf), rng.uniform(-1e5, 1e5, 1000),
                        [0.0, -0.0, 1e-300, D._SINCOS_MAX]])
    sn, cs = np.empty_like(a), np.empty_like(a)
    for lo in range(0, a.size, 24):  # rows of the size the fields use
        D._sincos(a[lo:lo + 24], sn[lo:lo + 24], cs[lo:lo + 24])
    for got, ref in ((sn, np.sin(a)), (cs, np.cos(a))):
        assert np.all(np.abs(got - ref) <= np.spacing(np.abs(ref)))
    b = np.array([1.0, 2e5, -3e7, 1e300, np.inf, np.nan])
    sb, cb = np.empty_like(b), np.empty_like(b)
    D._sincos(b, sb, cb)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(sb, np.sin(b))
        np.testing.assert_array_equal(cb, np.cos(b))


def test_compiled_feature_rhs_matches_numpy_field():
    """The compiled PF-ODE right-hand side (every point, one table row) against the NumPy FeatureField, at random
    points and times, for both signs of w and a scaled field, on the polynomial sin/cos path and (points beyond
    |x| = 1e4) on libm's: -(x + s) and 1 + ds agree to rounding (1e-13 of the terms' scale). A missing w, scale,
    model score or derivative term is off by O(1)."""
    rng = np.random.default_rng(1)
    fam = _random_fam(5)
    times = np.concatenate([[0.0, 8.0], rng.uniform(0, 8, 30), D.FourierLogit().knots])
    for x in (rng.uniform(-8, 8, 40), np.concatenate([rng.uniform(-8, 8, 5), [3e4, -2e5]])):
        for w, scale in ((1.0, 1.0), (-1.0, 1.0), (0.7, 2.0), (1.0, 0.5)):
            field = D.FeatureField(MODEL, fam, w, scale)
            coef, logw, mt, vt = field.tables(times)
            lwt = logw - 0.5 * np.log(vt)
            n, K = x.size, logw.size
            out = [np.empty(n) for _ in range(4)]
            for row, t in enumerate(times):
                s, ds = field(x, float(t))
                D._feature_rhs(x, row, coef, lwt, mt, vt, -fam.omega, -fam.omega ** 2, fam.omega, fam.phase, w,
                               scale, np.empty((K, n)), np.empty((K, n)), np.empty((5, n)), *out)
                np.testing.assert_allclose(out[2], -(x + s), rtol=0, atol=1e-13 * (1 + np.max(np.abs(x + s))))
                np.testing.assert_allclose(out[3], 1.0 + ds, rtol=0, atol=1e-13 * (1 + np.max(np.abs(ds))))


def test_compiled_endpoints_match_the_numpy_loops():
    """ode_endpoint and sde_endpoint of a FeatureField (compiled transport, score table) against the same field hidden
    in a plain function (the NumPy RK4 loop and per-step field calls): endpoint log densities agree to 1e-12, for
    the stated field and the controls' scaled and sign-flipped ones."""
    fam = _random_fam(6)
    grid = D.Grid1D(-6.0, 6.0, 0.1)
    for w, scale in ((1.0, 1.0), (-1.0, 1.0), (1.0, 2.0), (1.0, 0.5)):
        field = D.feature_field(MODEL, fam, w).scaled(scale)
        plain = lambda x, t, f=field: f(x, t)  # noqa: E731
        a = D.ode_endpoint(field, MODEL, T, grid, 0.05).log_density
        b = D.ode_endpoint(plain, MODEL, T, grid, 0.05).log_density
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        p = D.sde_endpoint(field, MODEL, T, grid, 0.05)
        q = D.sde_endpoint(plain, MODEL, T, grid, 0.05)
        np.testing.assert_allclose(p, q, rtol=1e-11, atol=1e-14 * np.max(q))


def test_compiled_ode_reports_instability_like_the_numpy_loop():
    """An unstable step (a huge field) raises the NumPy loop's ValueError, at the same stage time, in the compiled
    transport too."""
    field = D.FeatureField(MODEL, _random_fam(7), 1.0, 1e160)
    msgs = []
    for f in (field, lambda x, t: field(x, t)):
        with pytest.raises(ValueError, match="dtau") as err:
            D.ode_endpoint(f, MODEL, T, D.Grid1D(-2.0, 2.0, 0.5), 0.5)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1] and "t=0.25" in msgs[0]


def test_compiled_fourier_eval_matches_numpy_features():
    """FourierLogit.logit, grad, grad2 at one time (compiled) against the feature rows at that time (NumPy) times
    the coefficients, to 1e-13; an argument overflowing float64 still raises the ValueError naming x."""
    fam = _random_fam(8)
    x = np.linspace(-12, 12, 2401)
    for t in (0.0, 0.03, 0.7, 8.0):
        for deriv, f in ((0, fam.logit), (1, fam.grad), (2, fam.grad2)):
            ref = fam.features(x, np.full(x.size, t), deriv) @ fam.coef.ravel()
            np.testing.assert_allclose(f(x, t), ref, rtol=0, atol=1e-13 * (1 + np.max(np.abs(ref))))
    with pytest.raises(ValueError, match="x"):
        fam.grad(np.array([0.0, 1e308]), 0.5)


def test_gradient_matching_fit_by_hat_interval_matches_the_dense_design():
    """fit_logit_gm accumulates F^T F and F^T (a - s_theta) by hat interval; the dense design of the same draws
    (``features(x_t, t, 1)``, every JK column) gives the same coefficients to rounding (1e-9 of their scale, the
    ridge system's condition number times the float64 epsilon); a dropped block or a wrong column is off by O(1)."""
    real = DATA.sample(3000, np.random.default_rng(4))
    fam = D.fit_logit_gm(D.FourierLogit(seed=3), real, MODEL, np.random.default_rng(5), T, lam=1e-3, repeats=2)
    ref = D.FourierLogit(seed=3)
    rng = np.random.default_rng(5)
    x0 = np.repeat(real, 2)
    xt, t, a = D._noisy(x0, rng, T, 1e-2)  # one chunk (6000 < 20000 draws), as fit_logit_gm draws them
    _, m, v = D._marg_arrays(MODEL, t)
    F = ref.features(xt, t, 1)
    A = F.T @ F / x0.size + 1e-3 * np.eye(ref.n_params)
    coef = np.linalg.solve(A, F.T @ (a - D._mixture_score_vec(xt, MODEL.w, m, v)) / x0.size)
    np.testing.assert_allclose(fam.coef.ravel(), coef, rtol=0, atol=1e-9 * np.max(np.abs(coef)))


def test_hat_interval_design_blocks_equal_the_dense_design_bit_for_bit():
    """The compiled blocks (_hat_blocks) are the dense design ``features(x, t)`` (every JK column) restricted to each
    hat interval's rows and its 2J columns, bit for bit (the same products), every row in exactly one block, and the
    dense design is zero off those columns; a wrong hat column or row index is off by O(1).  The fused cosine pass
    (cos_of) gives the same blocks bit for bit and refuses an overflowing argument.  A third nonzero hat on an
    interval (a changed _hats) is refused."""
    fam = D.FourierLogit(seed=3)
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 2.0, 5000)
    t = np.concatenate([rng.uniform(1e-2, T, 4991), fam.knots[:-1], [T, 9.0, 1e-3]])
    F = fam.features(x, t)
    blocks = D._hat_interval_design(np.cos(D._feature_arg(x, fam.omega, fam.phase)), fam.hats(t), fam.knots, t)
    seen = np.zeros(x.size, dtype=int)
    for b in blocks:
        seen[b.rows] += 1
        assert np.array_equal(b.G, F[b.rows][:, b.cols])
        assert not np.any(np.delete(F[b.rows], b.cols, axis=1))
    assert np.all(seen == 1)
    fused = D._hat_interval_design(None, fam.hats(t), fam.knots, t, cos_of=(x, fam.omega, fam.phase))
    assert len(fused) == len(blocks)  # the cosine basis computed in the pass: the same blocks bit for bit
    for a, b in zip(fused, blocks):
        assert np.array_equal(a.rows, b.rows) and np.array_equal(a.G, b.G) and np.array_equal(a.cols, b.cols)
    interval = np.clip(np.searchsorted(fam.knots, t, side="right") - 1, 0, fam.knots.size - 2)
    order = np.argsort(interval, kind="stable")
    H = fam.hats(t)  # the calling thread's kernels (designs below _SERIAL_ROWS rows): the same numbers
    basis = np.cos(D._feature_arg(x, fam.omega, fam.phase))
    assert all(np.array_equal(a, b) for a, b in zip(D._hat_blocks(basis, H, order, interval),
                                                    D._hat_blocks_serial(basis, H, order, interval)))
    par = D._cos_hat_blocks(x, fam.omega, fam.phase, H, order, interval)
    assert all(np.array_equal(a, b) for a, b in zip(par, D._cos_hat_blocks_serial(x, fam.omega, fam.phase, H, order,
                                                                                   interval)))
    with pytest.raises(ValueError, match="x: the feature argument"):
        D._hat_interval_design(None, fam.hats(t), fam.knots, t, cos_of=(np.where(x > 3, 1e308, x), fam.omega,
                                                                          fam.phase))
    H = fam.hats(t)
    H[0, -1] = 0.5 if H[0, -1] == 0.0 else H[0, -1]
    H[0, 0] = 0.5 if H[0, 0] == 0.0 else H[0, 0]
    with pytest.raises(AssertionError, match="two nonzero hats"):
        D._hat_interval_design(np.cos(D._feature_arg(x, fam.omega, fam.phase)), H, fam.knots, t)


def test_compiled_feature_ode_does_not_depend_on_threads_or_chunks():
    """The FeatureField PF-ODE transport (fixed chunks of points over the threads) is bit-identical for 1 and 2
    Numba threads and equal to one chunk holding every point (the serial loop) bit for bit, on a grid spanning
    several chunks; an unstable field reports the same first stage either way."""
    import numba

    fam = _random_fam(6)
    field = D.feature_field(MODEL, fam, 1.0)
    g = D.Grid1D(-6.0, 6.0, 0.05)
    assert g.x.size > 3 * D._ODE_CHUNK
    old = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            runs.append(D.ode_endpoint(field, MODEL, T, g, 0.05).log_density)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(runs[0], runs[1])
    n_steps = D._n_steps(T, 0.05)
    dt = T / n_steps
    times = D._rk4_stage_times(T, n_steps, dt)
    for scale in (1.0, 1e160):  # 1e160: unstable
        coef, logw, mt, vt = field.scaled(scale).tables(times)
        args = (coef, logw, mt, vt, -fam.omega, -fam.omega ** 2, fam.omega, fam.phase, 1.0, scale, D._ODE_STATE_MAX)
        xx, A, bad = D._ode_feature_kernel(g.x, dt, n_steps, *args)
        x1, A1 = g.x.copy(), np.zeros(g.x.size)
        n, K = x1.size, vt.shape[1]
        work = (np.empty((K, n)), np.empty((K, n)), np.empty((5, n)), np.empty(n), np.empty(n), np.empty((4, n)),
                np.empty((4, n)), np.empty(n))
        bad1 = D._ode_feature_chunk(x1, A1, dt, n_steps, coef, logw - 0.5 * np.log(vt), *args[2:], *work)
        assert bad == bad1
        if bad < 0:
            assert np.array_equal(xx, x1) and np.array_equal(A, A1)
        else:
            assert scale == 1e160 and bad == 1  # stage 1: the first state off the grid


def test_mix_score_rows_equal_the_per_row_kernel_for_any_thread_count():
    """The SDE score table's model scores (every row at once, rows over the threads) equal the per-row kernel
    :func:`_mix_score_kernel` (the loop they replace) bit for bit, with 1 and 2 Numba threads."""
    import numba

    times = np.linspace(0.0, T, 37)
    x = np.linspace(-7.0, 7.0, 301)
    _, logw, m, v = D.FeatureField(MODEL, _random_fam(3)).tables(times)
    ref = np.array([D._mix_score_kernel(x, logw, m[i], v[i])[0] for i in range(times.size)])
    old = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            assert np.array_equal(D._dynamic(D._mix_score_rows, x, logw, m, v), ref)
    finally:
        numba.set_num_threads(old)


def _design_problem(n=20000, seed=11):
    """A cross-entropy problem on the hat-interval design: blocks, labels, class weights, a point c and the dense
    design ``F`` (every JK column) of the same rows."""
    fam = D.FourierLogit(seed=3)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, n)
    t = rng.uniform(1e-2, T, n)
    blocks = D._hat_interval_design(np.cos(D._feature_arg(x, fam.omega, fam.phase)), fam.hats(t), fam.knots, t)
    y = (rng.random(n) < 0.5).astype(np.float64)
    wts = np.where(y > 0, 0.5 / max(y.sum(), 1), 0.5 / max(n - y.sum(), 1))
    return fam, blocks, y, wts, 0.3 * rng.standard_normal(fam.n_params), fam.features(x, t)


def test_newton_pass_matches_the_dense_products_within_the_rounding_bound():
    """The compiled pass of the Newton fit (logits, loss, block gradients and curvatures over fixed chunks of rows)
    against the dense design's NumPy products: equal within the derived summation bound
    gamma_m' sum |terms| (m' = chunk + number of chunks, u = 2^-53, doubled for NumPy's own rounding), which is
    about 1e-12 of the sums here; a wrong weight, label, column or row is off by O(1) of them.  The stacked design is
    passed without a copy."""
    _, blocks, y, wts, c, F = _design_problem()
    G = D._stacked_design(blocks)
    assert all(np.shares_memory(G, b.G) for b in blocks)
    rows = np.concatenate([b.rows for b in blocks])
    chunks = D._newton_chunks([b.rows.size for b in blocks])
    assert chunks.shape[0] > 2 * len(blocks)  # several chunks per block
    cols = np.array([b.cols for b in blocks])
    d, loss, grad, hess = D._newton_pass(G, chunks, c[cols], y[rows], wts[rows], len(blocks))
    gam = 2 * (D._NEWTON_CHUNK + chunks.shape[0]) * 2.0 ** -53
    dd = F @ c
    assert np.all(np.abs(d - dd[rows]) <= gam * (np.abs(F) @ np.abs(c))[rows])
    sp = np.where(y > 0, np.logaddexp(0, -dd), np.logaddexp(0, dd))
    assert abs(loss - np.sum(wts * sp)) <= gam * np.sum(wts * sp) + 1e-15
    e = np.exp(-np.abs(dd))
    curv = wts * e / (1 + e) ** 2
    r = wts * (np.where(dd >= 0, 1 / (1 + e), e / (1 + e)) - y)
    for k, b in enumerate(blocks):
        Fb = F[b.rows][:, b.cols]
        assert np.all(np.abs(grad[k] - Fb.T @ r[b.rows]) <= gam * (np.abs(Fb).T @ np.abs(r[b.rows])) + 1e-18)
        bound = gam * (np.abs(Fb).T @ (curv[b.rows, None] * np.abs(Fb))) + 1e-18
        assert np.all(np.abs(hess[k] - Fb.T @ (curv[b.rows, None] * Fb)) <= bound)


def test_newton_fit_does_not_depend_on_threads_and_matches_the_blas_newton():
    """The Newton pass and the whole cross-entropy fit are bit-identical for 1 and 2 Numba threads (fixed chunks,
    partial sums added in chunk order); the fit equals the same damped Newton with every product by BLAS on the
    blocks (the stop-40 implementation, kept here as the reference) to 1e-10 of its largest coefficient (rounding
    of the sums: observed ~1e-12); concatenated blocks (not views of one array) give the same fit."""
    import numba

    fam, blocks, y, wts, c, _ = _design_problem()
    old = numba.get_num_threads()
    fits, passes = [], []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            fits.append(D._newton_logistic(blocks, y, wts, 1e-3, fam.n_params, 100))
            G = D._stacked_design(blocks)
            rows = np.concatenate([b.rows for b in blocks])
            passes.append(D._newton_pass(G, D._newton_chunks([b.rows.size for b in blocks]),
                                         c[np.array([b.cols for b in blocks])], y[rows], wts[rows], len(blocks)))
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(fits[0], fits[1])
    assert all(np.array_equal(a, b) for a, b in zip(passes[0], passes[1]))
    G = D._stacked_design(blocks)  # the calling thread's pass (small designs): the same numbers
    rows = np.concatenate([b.rows for b in blocks])
    serial = D._newton_pass_serial(G, D._newton_chunks([b.rows.size for b in blocks]),
                                   c[np.array([b.cols for b in blocks])], y[rows], wts[rows], len(blocks))
    assert all(np.array_equal(a, b) for a, b in zip(passes[0], serial))
    copied = [D._DesignBlock(b.rows, b.G.copy(), b.cols) for b in blocks]
    assert not np.shares_memory(D._stacked_design(copied), blocks[0].G)
    assert np.array_equal(D._newton_logistic(copied, y, wts, 1e-3, fam.n_params, 100), fits[0])
    ref = _blas_newton(blocks, y, wts, 1e-3, fam.n_params)
    assert np.max(np.abs(fits[0] - ref)) <= 1e-10 * np.max(np.abs(ref))


def test_newton_loss_is_compensated_and_the_line_search_does_not_stall():
    """The Newton pass's loss is a compensated sum: within 4u of the exact sum (math.fsum of the same rounded
    terms, plus the terms' own rounding, a few u each) where a plain running sum over a chunk of 2048 rows errs by up
    to about 1e-12.  Near the minimum the Armijo test compares losses that differ by far less than that, so with a
    plain sum the line search wandered at the rounding floor for all 100 iterations (the full profile's n = 3000
    fit of ``discriminator.overfitting`` took 2989 passes and 14 s instead of 6 passes): the fit at n = 3000 (the
    threaded pass) takes at most 60 passes here."""
    import math
    n = 3000
    r2 = np.random.default_rng([5, n])
    real, fake = C.DATA.sample(n, r2), C.MODEL.sample(n, r2)
    calls = []
    orig = D._dynamic

    def counting(kernel, *args):
        calls.append(kernel)
        return orig(kernel, *args)
    D._dynamic = counting
    try:
        D.fit_logit_ce(D.FourierLogit(seed=3), real, fake, r2, C.T, lam=1e-3, repeats=2)
    finally:
        D._dynamic = orig
    assert D._newton_pass in calls and len(calls) <= 60
    _, blocks, y, wts, c, F = _design_problem()
    G = D._stacked_design(blocks)
    rows = np.concatenate([b.rows for b in blocks])
    chunks = D._newton_chunks([b.rows.size for b in blocks])
    _, loss, _, _ = D._newton_pass(G, chunks, c[np.array([b.cols for b in blocks])], y[rows], wts[rows],
                                   len(blocks))
    dd = F @ c
    terms = wts * np.where(y > 0, np.logaddexp(0, -dd), np.logaddexp(0, dd))
    exact = math.fsum(terms)
    # the logits' own rounding (chunk-order dot products) moves each term by at most |w| * gam * sum|F||c|
    gam = 2 * (D._NEWTON_CHUNK + chunks.shape[0]) * 2.0 ** -53
    term_err = float(np.sum(wts * gam * (np.abs(F) @ np.abs(c)))) + 4 * 2.0 ** -53 * float(np.sum(np.abs(terms)))
    assert abs(loss - exact) <= 4 * 2.0 ** -53 * abs(exact) + term_err


def _blas_newton(blocks, y, wts, lam, n_params, maxiter=100):
    """The damped Newton of ``_newton_logistic`` with its products by BLAS per block (stop 40's code)."""
    def logits(c):
        d = np.empty(y.size)
        for b in blocks:
            d[b.rows] = b.G @ c[b.cols]
        return d

    def loss(d, c):
        return float(np.sum(wts * np.where(y > 0, np.logaddexp(0, -d), np.logaddexp(0, d))) + 0.5 * lam * (c @ c))

    c = np.zeros(n_params)
    d = logits(c)
    f = loss(d, c)
    for _ in range(maxiter):
        e = np.exp(-np.abs(d))
        sig = np.where(d >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        curv, r = wts * e / (1.0 + e) ** 2, wts * (sig - y)
        grad, hess = lam * c, lam * np.eye(n_params)
        for b in blocks:
            grad[b.cols] += b.G.T @ r[b.rows]
            hess[np.ix_(b.cols, b.cols)] += (b.G.T * curv[b.rows]) @ b.G
        step = -np.linalg.solve(hess, grad)
        slope = float(grad @ step)
        if -slope / 2.0 <= 1e-20:
            break
        for _ in range(60):
            c_new = c + step
            d_new = logits(c_new)
            f_new = loss(d_new, c_new)
            if f_new <= f + 1e-4 * slope:
                break
            step, slope = step / 2.0, slope / 2.0
        else:
            break
        c, d, f = c_new, d_new, f_new
    return c


def test_model_score_rows_memo_is_keyed_on_the_exact_inputs():
    """The memoised model-score table equals the kernel's bit for bit, is returned again for equal inputs (a new
    array with the same bytes), is read-only, and any changed input (one variance in the last place) gives a new
    table; at most _MODEL_ROWS.size tables are kept."""
    D._MODEL_ROWS.items.clear()
    x = np.linspace(-7.0, 7.0, 101)
    _, logw, m, v = D.FeatureField(MODEL, _random_fam(3)).tables(np.linspace(0.0, T, 9))
    a = D._model_score_rows(x, logw, m, v)
    assert np.array_equal(a, D._mix_score_rows(x, logw, m, v)) and not a.flags.writeable
    assert D._model_score_rows(x.copy(), logw, m, v) is a
    v2 = v.copy()
    v2[3, 1] = np.nextafter(v2[3, 1], 1.0)
    b = D._model_score_rows(x, logw, m, v2)
    assert b is not a and not np.array_equal(a[3], b[3]) and np.array_equal(a[4], b[4])
    for k in range(D._MODEL_ROWS.size + 2):
        D._model_score_rows(x + k, logw, m, v)
    assert len(D._MODEL_ROWS.items) == D._MODEL_ROWS.size


def test_path_kl_from_terms_is_the_sum_of_fisher_gaps():
    """path_kl (from its memoisable terms) equals KL_T + sum_i w_i fisher_gap(t_i) computed directly, bit for bit,
    and the terms of one grid serve two corrections."""
    fam = _random_fam(5)
    x = np.linspace(-12, 12, 801)
    terms = D.path_terms(DATA, MODEL, T, n=4, x=x, pieces=C._HAT_PIECES)
    ts, ws = D.time_nodes(T, pieces=C._HAT_PIECES, n=4)
    for corr in (lambda z, t: fam.grad(z, t), lambda z, t: 0.0 * z):
        direct = sum(wi * D.fisher_gap(DATA, corr, float(ti), MODEL, x) for ti, wi in zip(ts, ws))
        kl_T = D.kl_cells(DATA.density(x, T), MODEL.density(x, T), x[1] - x[0])
        assert D.path_kl_from(terms, corr) == float(kl_T + direct)


def _newton_chunk_one_row(G, lo, hi, cb, y, wts):
    """The Newton pass's chunk one row at a time (the loop before the rows went in groups), in plain Python floats:
    ``(d, loss, gp, hp)``."""
    P = G.shape[1]
    d, gp, hp = np.empty(hi - lo), [0.0] * P, [[0.0] * P for _ in range(P)]
    loss, comp = 0.0, 0.0
    for i in range(lo, hi):
        acc = 0.0
        for a in range(P):
            acc += float(G[i, a]) * float(cb[a])
        d[i - lo] = acc
        loss, comp = D._neumaier.py_func(loss, comp, float(wts[i]) * (D._softplus1.py_func(-acc) if y[i] > 0
                                                                       else D._softplus1.py_func(acc)))
        e = math.exp(-abs(acc))
        sig = 1.0 / (1.0 + e) if acc >= 0 else e / (1.0 + e)
        curv = float(wts[i]) * e / (1.0 + e) ** 2
        r = float(wts[i]) * (sig - float(y[i]))
        for a in range(P):
            gp[a] += float(G[i, a]) * r
        for a in range(P):
            sc = float(G[i, a]) * curv
            for b in range(P):
                hp[a][b] += sc * float(G[i, b])
    return d, loss + comp, np.array(gp), np.array(hp)


def test_newton_chunk_in_row_groups_equals_the_one_row_loop():
    """The Newton chunk (rows in groups of eight, each sum entry read and written once per group) equals the one-row
    loop bit for bit, for chunks of a whole number of groups and with a remainder (2051 rows: 256 groups and 3 rows);
    a group whose terms were added in another order, or a dropped remainder row, would differ."""
    rng = np.random.default_rng(4)
    P = 6
    for n in (8, 2051, 3):
        G = rng.normal(size=(n, P)) * rng.uniform(0.1, 3.0, size=(n, 1))
        y = (rng.uniform(size=n) < 0.5).astype(np.float64)
        wts = rng.uniform(0.1, 1.0, n) / n
        cb = rng.normal(size=P) * 2.0
        d, gp, hp = np.full(n, np.nan), np.empty(P), np.empty((P, P))
        loss = D._newton_chunk(G, 0, n, cb, y, wts, d, gp, hp)
        rd, rloss, rgp, rhp = _newton_chunk_one_row(G, 0, n, cb, y, wts)
        assert np.array_equal(d, rd) and loss == rloss and np.array_equal(gp, rgp) and np.array_equal(hp, rhp)


def test_gm_targets_share_one_design_and_equal_the_single_fits_bit_for_bit():
    """fit_logit_gm_targets (one design and Gram matrix, a right-hand side per target) gives each target's fit
    exactly as fit_logit_gm fits it alone on the same random stream (two chunks of draws); the claim's memoised GM
    fits (_fit_1d -> _fit_1d_gm) are those of the right targets: a swapped target, a right-hand side summed over the
    wrong target or a second draw of the noise is off by far more than rounding."""
    real = DATA.sample(20000, np.random.default_rng(3))  # 40000 draws: two chunks of fit_logit_gm

    def single(target):
        return D.fit_logit_gm(D.FourierLogit(seed=3), real, MODEL, np.random.default_rng(8), T, lam=1e-3, repeats=2,
                              target=target).coef

    fam = D.FourierLogit(seed=3)
    fits = D.fit_logit_gm_targets(fam, real, MODEL, np.random.default_rng(8), T, lam=1e-3, repeats=2,
                                  targets=(None, C._alpha_dropped_target))
    assert fits[0] is fam and fits[1] is not fam and fits[1].omega is fam.omega
    assert np.array_equal(fits[0].coef, single(None))
    assert np.array_equal(fits[1].coef, single(C._alpha_dropped_target))
    assert np.max(np.abs(fits[0].coef - fits[1].coef)) > 1e-2
    fit = (2000, 7, 0, 1e-3, 2)
    real2, _ = C._samples_1d(2000, 7, 0)
    for alpha in (False, True):
        ref = D.fit_logit_gm(D.FourierLogit(seed=3), real2, MODEL, np.random.default_rng([7, 2000, 1, 0, 0]), T,
                             lam=1e-3, repeats=2, target=C._alpha_dropped_target if alpha else None)
        assert np.array_equal(C._fit_1d("gm", *fit, alpha).coef, ref.coef)


def test_fourier_eval_from_memoised_tables_equals_the_rowwise_sums_bit_for_bit():
    """FourierLogit.logit, grad, grad2 at one time (the memoised sin/cos tables, then the contraction) equal the
    per-point sums in j order of the rows of _sincos (the loop they replace, written in NumPy with the same operations)
    bit for bit; the tables are memoised on the exact grid (read-only; another grid, or a family with other
    frequencies, gets its own), a grid above _SINCOS_TABLE_MAX entries is not kept."""
    fam = _random_fam(8)
    for x in (np.linspace(-12, 12, 2401), np.linspace(-12, 12, 2401) + 0.5, np.linspace(-1e5, 1e5, 301)):
        sn, cs = np.empty((x.size, fam.omega.size)), np.empty((x.size, fam.omega.size))
        for i in range(x.size):
            D._sincos(x[i] * fam.omega + fam.phase, sn[i], cs[i])
        for t in (0.0, 0.03, 0.7, 8.0):
            c = fam.coef @ fam.hats(t)[0]
            refs = [np.zeros(x.size) for _ in range(3)]
            for j in range(fam.omega.size):
                refs[0] += cs[:, j] * c[j]
                refs[1] += (-fam.omega[j]) * sn[:, j] * c[j]
                refs[2] += cs[:, j] * -(fam.omega[j] ** 2) * c[j]
            for ref, f in zip(refs, (fam.logit, fam.grad, fam.grad2)):
                assert np.array_equal(f(x, t), ref)
        tab = D._sincos_tables(x, fam.omega, fam.phase)
        assert tab[0] is D._sincos_tables(x.copy(), fam.omega, fam.phase)[0] and not tab[0].flags.writeable
    other = _random_fam(9)
    assert not np.array_equal(D._sincos_tables(x, other.omega, other.phase)[0], tab[0])
    big = np.linspace(-3.0, 3.0, D._SINCOS_TABLE_MAX // fam.omega.size + 1)
    np.testing.assert_array_equal(D._sincos_tables(big, fam.omega, fam.phase)[0][:, ::997],
                                  D._sincos_table(big[::997], fam.omega, fam.phase)[0])
    assert all(key[0][1] != big.shape for key in D._SINCOS_TABLES.items)


def test_bernoulli_whole_array_quotient_equals_the_masked_one_bit_for_bit():
    """_bern without entries below 1e-6 in size (the whole-array quotient) equals the masked computation it skips
    (z / expm1(z) on the gathered entries) bit for bit, in 1-D and on a block of SDE rows; with such entries, 1 - z/2
    there and the same quotient elsewhere; B(0) = 1 and B(z) - B(-z) = -z (a wrong sign is off by O(1))."""
    rng = np.random.default_rng(12)
    for z in (rng.normal(0.0, 0.05, 701), rng.normal(0.0, 3.0, (23, 700)), np.array([-800.0, -1.0, 5e-6, 700.0])):
        keep = np.abs(z) >= 1e-6
        assert keep.all()
        ref = np.empty_like(z)
        ref[keep] = z[keep] / np.expm1(z[keep])
        assert np.array_equal(D._bern(z), ref)
        zz = z.copy()
        zz.flat[::7] = 3e-7
        got = D._bern(zz)
        assert np.array_equal(got.flat[::7], 1.0 - 0.5 * zz.flat[::7])
        mask = np.ones(z.size, dtype=bool)
        mask[::7] = False
        assert np.array_equal(got.ravel()[mask], ref.ravel()[mask])
    z = rng.normal(0.0, 1.0, 1000)
    np.testing.assert_allclose(D._bern(z) - D._bern(-z), -z, rtol=0, atol=1e-14)
    assert D._bern(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_sin_basis_in_place_equals_the_numpy_expression_bit_for_bit():
    """_sin_basis (argument, sine and product in one array) equals -omega * sin(x omega + phase) of fresh NumPy
    temporaries bit for bit, and _feature_arg (phase added in place) still refuses an overflowing argument; the fused
    design pass of the GM fit (cos_of with deriv 1: Numba's libm sin) equals the design of that basis bit for bit."""
    fam = _random_fam(4)
    x = np.random.default_rng(4).normal(0.0, 3.0, 5000)
    ref = -fam.omega * np.sin(x[:, None] * fam.omega + fam.phase)
    assert np.array_equal(D._sin_basis(x, fam.omega, fam.phase), ref)
    assert np.array_equal(D._feature_arg(x, fam.omega, fam.phase), x[:, None] * fam.omega + fam.phase)
    with pytest.raises(ValueError, match="x: the feature argument"):
        D._sin_basis(np.array([0.0, 1e308]), fam.omega, fam.phase)
    t = np.random.default_rng(5).uniform(1e-2, T, x.size)
    for n in (x.size, 300):  # threaded and (below _SERIAL_ROWS) serial passes
        ref = D._hat_interval_design(D._sin_basis(x[:n], fam.omega, fam.phase), fam.hats(t[:n]), fam.knots, t[:n])
        fused = D._hat_interval_design(None, fam.hats(t[:n]), fam.knots, t[:n], cos_of=(x[:n], fam.omega, fam.phase),
                                       deriv=1)
        assert len(fused) == len(ref)
        for a, b in zip(fused, ref):
            assert np.array_equal(a.rows, b.rows) and np.array_equal(a.G, b.G) and np.array_equal(a.cols, b.cols)

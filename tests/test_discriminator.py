"""Tests of theory.discriminator, numerics.papers.discriminator.refined_1d and the note's key numbers (setting G, T = 8)."""
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from numerics.divergences import gaussian_kl_1d, kl_cells
from numerics.mixture import GaussianMixture
from numerics.papers.discriminator import refined_1d as D
from theory import discriminator as TD
from theory.forward import t as t_sym
from theory.targets import SymbolicMixture

DATA, MODEL = D.setting_g()
T = 8.0
COARSE = D.Grid1D(dx=0.02)


# -- SymPy identities -------------------------------------------------------------------------------
def test_bayes_logit_makes_refined_score_exact_gaussian():
    data = SymbolicMixture.gaussian_1d()
    model = SymbolicMixture.gaussian_1d(sp.Symbol("mu_hat", real=True), sp.Symbol("v_hat", positive=True))
    assert sp.simplify(TD.refined_score_residual(data, model)) == 0


def test_bayes_logit_refined_score_setting_g_numeric():
    half, q = sp.Rational(1, 2), sp.Rational(1, 4)
    data = SymbolicMixture([half, half], [[-2], [2]], [[[q]], [[q]]])
    model = SymbolicMixture([sp.Rational(7, 10), sp.Rational(3, 10)], [[-2], [2]], [[[sp.Rational(9, 25)]]] * 2)
    r = TD.refined_score_residual(data, model)
    for xv, tv in [(0.3, 0.5), (-1.0, 0.01), (2.5, 3.0)]:
        assert abs(float(r.subs({data.x[0]: xv, t_sym: tv}))) < 1e-12


def test_dsm_identity_constant_free_of_correction():
    assert sp.simplify(TD.conditional_target_residual()) == 0
    diff, cs = TD.dsm_minus_esm_polynomial(2)
    assert not (diff.free_symbols & set(cs))
    assert sp.simplify(diff - TD.dsm_constant()) == 0


def test_kl_rate_and_girsanov_weight():
    assert sp.simplify(TD.kl_rate_residual()) == 0
    assert TD.girsanov_weight() == 1


def test_ce_gap_bound_pieces():
    b = TD.ce_gap_bound()
    assert b["stationary"] == 0 and b["curvature_residual"] == 0
    assert b["sigma_product_max"] == sp.Rational(1, 4)
    assert sp.simplify(b["bound"] - sp.Symbol("epsilon", positive=True) ** 2 / 4) == 0


def test_gaussian_case():
    assert TD.gaussian_log_ratio().degree() == 2
    beta = TD.mse_linear_optimum()
    mu, muh, vh = sp.symbols("mu mu_hat v_hat", real=True)
    a = sp.exp(-t_sym)
    expect = (a * sp.Symbol("mu", real=True) - a * sp.Symbol("mu_hat", real=True)) / (
        a**2 * sp.Symbol("v_hat", positive=True) + 1 - a**2)
    assert sp.simplify(beta - expect) == 0
    assert TD.mse_refined_is_forward_marginal() == 0
    assert TD.quadratic_family_ce_stationary() == 0


def test_ce_stationarity_linear_equal_variances_gives_mse_optimum():
    """With v = v_hat, d* is linear: at beta = beta_MSE, c = c*, the CE integrands vanish pointwise."""
    (f1, f0), (b, c) = TD.ce_stationarity_linear()
    v = sp.Symbol("v", positive=True)
    vh = sp.Symbol("v_hat", positive=True)
    poly = TD.gaussian_log_ratio().as_expr().subs(vh, v)
    coeffs = sp.Poly(sp.expand(poly), TD.x).all_coeffs()
    assert len(coeffs) == 2 or sp.simplify(coeffs[0]) == 0
    slope, icpt = sp.Poly(sp.simplify(poly), TD.x).all_coeffs()[-2:]
    assert sp.simplify(slope - TD.mse_linear_optimum().subs(vh, v)) == 0
    val = f0.subs(vh, v).subs({b: slope, c: icpt})
    num = val.subs({TD.x: 0.7, t_sym: 0.4, sp.Symbol("mu", real=True): 0.3,
                    sp.Symbol("mu_hat", real=True): -0.2, v: 1.3})
    assert abs(float(num)) < 1e-14


# -- numerics vs closed form -----------------------------------------------------------------------------
def test_mixture1d_matches_package_mixture():
    gm = GaussianMixture(DATA.w, DATA.m[:, None], DATA.v[:, None, None])
    x = np.linspace(-4, 4, 9)
    for t in (0.01, 0.5, 3.0):
        np.testing.assert_allclose(DATA.score(x, t), gm.score(x[:, None], t)[:, 0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(DATA.log_density(x, t), gm.log_density(x[:, None], t), rtol=1e-12, atol=1e-12)
    # derivative of the score by central differences
    h = 1e-5
    s, ds = DATA.score_and_derivative(x, 0.3)
    fd = (DATA.score(x + h, 0.3) - DATA.score(x - h, 0.3)) / (2 * h)
    np.testing.assert_allclose(ds, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("x", [3.0, -40.0, 1e8, -1e9, 3e12])
def test_mixture1d_score_derivative_far_out_against_mpmath(x):
    """s' = sum_k pi_k ((s_k - s)^2 - 1/v_k) about the mean: the one-pass E[s_k^2] - s^2 cancelled for
    |x| >= 1e8 sqrt(v) (both terms ~ x^2/v^2) and gave s' wrong in every digit.  Reference: the same sums in
    mpmath at 60 digits with exact posterior weights."""
    import mpmath as mp

    mix = D.Mixture1D([0.3, 0.7], [-1.0, 2.0], [0.5, 0.8])
    s, ds = mix.score_and_derivative(np.array([x]), 0.0)
    with mp.workdps(60):
        X = mp.mpf(x)
        comps = [(mp.mpf(w), mp.mpf(m), mp.mpf(v)) for w, m, v in ((0.3, -1.0, 0.5), (0.7, 2.0, 0.8))]
        lc = [mp.log(w) - mp.log(v) / 2 - (X - m) ** 2 / (2 * v) for w, m, v in comps]
        top = max(lc)
        pis = [mp.exp(c - top) for c in lc]
        Z = sum(pis)
        sk = [-(X - m) / v for _, m, v in comps]
        S = sum(p * q for p, q in zip(pis, sk)) / Z
        dS = sum(p * ((q - S) ** 2 - 1 / v) for p, q, (_, _, v) in zip(pis, sk, comps)) / Z
        assert abs(s[0] - S) <= 1e-14 * abs(S)
        assert abs(ds[0] - dS) <= 1e-12 * abs(dS)


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_grid_endpoint_matches_gaussian_moments(sampler):
    """Linear refinement of a Gaussian model: grid density vs RK4 moment equations (closed-form Gaussian)."""
    data, model = D.Mixture1D([1], [0.0], [1.0]), D.Mixture1D([1], [0.5], [2.25])
    beta = lambda t: 0.3 * math.exp(-t)  # noqa: E731
    m, v = D.gaussian_refined_endpoint(model, beta, sampler, T, 2000)
    field = D.linear_field(model, beta)
    g = D.Grid1D(-9, 9, 0.02)
    if sampler == "sde":
        dens = D.sde_endpoint(field, model, T, g, 8e-3)
    else:
        dens = D.ode_endpoint(field, model, T, g, 8e-3).density
    exact = np.exp(-(g.x - m) ** 2 / (2 * v)) / math.sqrt(2 * math.pi * v)
    assert np.max(np.abs(dens - exact)) < 2e-4
    assert abs(D.endpoint_kl(data.density(g.x, 0), dens, g.dx) - gaussian_kl_1d(0, 1, m, v)) < 2e-4


def test_sde_mass_conservation_and_model_reproduction():
    g = D.Grid1D(dx=0.02)
    q = D.sde_endpoint(D.bayes_field(DATA, MODEL, w=0.0), MODEL, T, g, 8e-3)
    assert abs(q.sum() * g.dx - 1) < 1e-12
    assert D.endpoint_kl(MODEL.density(g.x, 0), q, g.dx) < 1e-6


def test_ode_exact_correction_preserves_terminal_kl():
    """PF-ODE with the exact refined score is an invertible map p_T -> p_0, so the endpoint KL equals KL_T."""
    res = D.ode_endpoint(D.bayes_field(DATA, MODEL, w=1.0), MODEL, T, COARSE, 8e-3)
    kl_T = kl_cells(DATA.density(COARSE.x, T), MODEL.density(COARSE.x, T), COARSE.dx)
    assert abs(res.kl_from(DATA) - kl_T) < 5e-8  # RK4 at dtau=8e-3 on a dx=0.02 grid
    assert abs(res.mass - 1) < 1e-6


def test_linear_beta_spline_resolution():
    data, model = D.Mixture1D([1], [0.0], [1.0]), D.Mixture1D([1], [1.0], [0.25])
    b1 = D.linear_beta_spline(data, model, "ce", T, 101)
    b2 = D.linear_beta_spline(data, model, "ce", T, 201)
    ts = np.linspace(0, T, 37)
    assert max(abs(b1(t) - b2(t)) for t in ts) < 1e-4
    bm = D.linear_beta_spline(data, model, "mse", T, 101)
    for t, tol in ((0.0, 1e-10), (0.72, 1e-10), (3.2, 1e-10), (0.7, 1e-5)):
        # closed form (mu_t - mu_hat_t)/v_hat_t; exact (GH quadrature) at the spline knots (multiples of 0.08),
        # cubic-spline interpolation error O(h^4) ~ 2e-6 between them
        a = math.exp(-t)
        assert abs(bm(t) - (0 - a) / (0.25 * a * a + 1 - a * a)) < tol


@settings(max_examples=15)
@given(eps=st.floats(0.0, 0.5), omega=st.floats(0.0, 30.0), t=st.floats(0.01, 3.0))
def test_ce_gap_bound_numeric(eps, omega, t):
    gap = D.ce_gap(DATA, MODEL, t, lambda z: eps * np.sin(omega * z))
    assert -1e-10 <= gap <= eps**2 / 4 + 1e-9


def test_trained_logits_fit():
    rng = np.random.default_rng(0)
    real, fake = DATA.sample(1000, rng), MODEL.sample(1000, rng)
    fg = D.fit_logit_gm(D.FourierLogit(seed=1), real, MODEL, rng, T, lam=1e-3, repeats=1)
    fc = D.fit_logit_ce(D.FourierLogit(seed=1), real, fake, rng, T, lam=1e-3, repeats=1, maxiter=60)
    x = np.linspace(-3, 3, 13)
    for fam in (fg, fc):
        assert np.all(np.isfinite(fam.grad(x, 0.5)))
        # scalar-time fast path agrees with the feature matrix
        np.testing.assert_allclose(fam.grad(x, 0.5), fam.features(x, np.full(13, 0.5), 1) @ fam.coef.ravel(),
                                   rtol=1e-10, atol=1e-12)
    # the gradient-matched correction points the right way at the under-weighted right mode (t = 0.5)
    target = DATA.score(np.array([1.2]), 0.5) - MODEL.score(np.array([1.2]), 0.5)
    assert np.sign(fg.grad(np.array([1.2]), 0.5)[0]) == np.sign(target[0])


def test_ce_fit_is_the_minimiser_of_the_dense_problem():
    """The structured Newton fit of the cross-entropy logit against an independent solver of the same problem: the
    dense design ``fam.features`` (not the per-interval blocks) and SciPy's BFGS driven to a tight gradient. A block
    on the wrong columns, a dropped class weight or a wrong Hessian moves the minimiser far more than 1e-6."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    real, fake = DATA.sample(300, rng), MODEL.sample(300, rng)
    fam = D.FourierLogit(n_freq=4, seed=1)
    lam = 1e-2
    fc = D.fit_logit_ce(fam, real, fake, np.random.default_rng(5), T, lam=lam, repeats=1)
    r = np.random.default_rng(5)  # the same noise draws as the fit
    xr, tr, _ = D._noisy(real, r, T, 1e-2)
    xf, tf, _ = D._noisy(fake, r, T, 1e-2)
    F = np.vstack([fam.features(xr, tr), fam.features(xf, tf)])
    y = np.r_[np.ones(300), np.zeros(300)]

    def loss_grad(c):
        d = F @ c
        p = 0.5 * (1 + np.tanh(0.5 * d))
        loss = np.mean(y * np.logaddexp(0, -d) + (1 - y) * np.logaddexp(0, d)) + 0.5 * lam * c @ c
        return loss, F.T @ (p - y) / y.size + lam * c

    ref = minimize(loss_grad, np.zeros(fam.n_params), jac=True, method="BFGS", options={"gtol": 1e-12})
    g_fit, g_ref = loss_grad(fc.coef.ravel())[1], loss_grad(ref.x)[1]
    # strongly convex with curvature >= lam: |c - c*| <= |grad(c)| / lam for both solutions
    bound = (np.linalg.norm(g_fit) + np.linalg.norm(g_ref)) / lam
    assert np.linalg.norm(fc.coef.ravel() - ref.x) <= bound < 1e-4
    assert np.max(np.abs(g_fit)) < 1e-12


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    ({"weights": [0.5, 0.6], "means": [0, 1], "variances": [1, 1]}, "weights"),
    ({"weights": [1.0], "means": [np.nan], "variances": [1]}, "means"),
    ({"weights": [1.0], "means": [0.0], "variances": [0.0]}, "variances"),
    ({"weights": [0.5, 0.5], "means": [0.0], "variances": [1, 1]}, "means"),
])
def test_mixture_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        D.Mixture1D(**kwargs)


def test_solver_bad_input():
    f = D.bayes_field(DATA, MODEL)
    with pytest.raises(ValueError, match="dtau"):
        D.sde_endpoint(f, MODEL, T, COARSE, dtau=0.0)
    with pytest.raises(ValueError, match="T"):
        D.ode_endpoint(f, MODEL, T=-1.0)
    with pytest.raises(ValueError, match="dx"):
        D.Grid1D(dx=-0.1)
    with pytest.raises(ValueError, match="sampler"):
        D.kl_with_error(DATA, f, MODEL, "heun")
    with pytest.raises(ValueError, match="objective"):
        D.linear_beta_spline(DATA, MODEL, "hinge")
    with pytest.raises(ValueError, match="w"):
        D.bayes_field(DATA, MODEL, w=float("nan"))
    with pytest.raises(ValueError, match="degree"):
        TD.dsm_minus_esm_polynomial(-1)


# -- the note's key numbers ------------------------------------------------------------------------------
def test_note_base_numbers():
    g = D.Grid1D(dx=0.005)
    assert abs(kl_cells(DATA.density(g.x, 0), MODEL.density(g.x, 0), g.dx) - 0.11668) < 5e-6
    assert abs(kl_cells(DATA.density(g.x, T), MODEL.density(g.x, T), g.dx) - 3.6e-8) < 5e-10


def test_note_ripple_and_weight_numbers():
    g = D.Grid1D(dx=0.01)
    kl, err = D.kl_with_error(DATA, D.bayes_field(DATA, MODEL, 1.0, 0.1, 1.0), MODEL, "ode", T, g, 4e-3)
    assert abs(kl - 0.279) < 5e-4 + err and kl > 0.11668          # PF-ODE worse than the unrefined model
    kl, err = D.kl_with_error(DATA, D.bayes_field(DATA, MODEL, 2.0), MODEL, "sde", T, g, 4e-3)
    assert abs(kl - 0.1064) < 5e-5 + err


def test_note_misspecified_gaussian_numbers():
    data, model = D.Mixture1D([1], [0.0], [1.0]), D.Mixture1D([1], [1.0], [0.25])
    bm = D.linear_beta_spline(data, model, "mse", T, 101)
    bc = D.linear_beta_spline(data, model, "ce", T, 101)
    km = gaussian_kl_1d(0, 1, *D.gaussian_refined_endpoint(model, bm, "sde", T, 1600))
    kc = gaussian_kl_1d(0, 1, *D.gaussian_refined_endpoint(model, bc, "sde", T, 1600))
    assert abs(km - 0.806) < 2e-3 and abs(kc - 1.086) < 2e-3 and km < kc


def test_empirical_field_matches_atom_mixture():
    """The memorising refined score is the score of n atoms' OU marginal (package mixture with zero covariances)."""
    pts = np.array([-1.5, 0.2, 2.0])
    gm = GaussianMixture(np.full(3, 1 / 3), pts[:, None], np.zeros((3, 1, 1)))
    x = np.linspace(-3, 3, 7)
    s, _ = D.empirical_field(pts)(x, 0.05)
    np.testing.assert_allclose(s, gm.score(x[:, None], 0.05)[:, 0], rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="t"):
        D.empirical_field(pts)(x, 0.0)


def test_gaussian_path_kl_matches_sympy_integrand():
    """numerics.gaussian_path_kl (hand-coded moments) vs the SymPy-derived integrand, lambdified, by scipy quad."""
    from scipy.integrate import quad
    b = sp.Symbol("beta", real=True)
    expr = TD.gaussian_fisher_gap(b)
    syms = [t_sym, sp.Symbol("mu", real=True), sp.Symbol("v", positive=True), sp.Symbol("mu_hat", real=True),
            sp.Symbol("v_hat", positive=True), b]
    f = sp.lambdify(syms, expr, "math")
    data, model = D.Mixture1D([1], [0.0], [1.0]), D.Mixture1D([1], [1.0], [0.25])
    beta = lambda t: 0.2 * math.exp(-t)  # noqa: E731
    integral = quad(lambda tt: f(tt, 0.0, 1.0, 1.0, 0.25, beta(tt)), 0, T, limit=200, epsabs=1e-13)[0]
    kl_T = gaussian_kl_1d(0.0, 1.0, math.exp(-T), 0.25 * math.exp(-2 * T) - math.expm1(-2 * T))
    assert abs(D.gaussian_path_kl(data, model, beta, T) - (kl_T + integral)) < 1e-10


def test_claims_mse_slope_closed_form_matches_quadrature():
    """The Gaussian-case MSE slope the claim uses in closed form, (mu_t - mu_theta,t)/v_theta,t, is
    E_{p_t}[grad log p_t - s_theta] (Gauss-Hermite quadrature, exact for linear scores)."""
    from numerics.papers.discriminator import claims as C
    for name in C.GAUSS_CASES:
        data, model = C._pair(name)
        for t in (0.0, 0.01, 0.5, 3.0):
            assert abs(C._beta_mse_gauss(name, t) - D.mse_optimal_linear(data, model, t)) < 1e-12


@pytest.mark.parametrize("swapped", [False, True])
def test_claims_ce_gap_second_order(swapped):
    """|CE gap - (eps^2/2) int pq/(p+q) sin^2| <= eps^3/(18 sqrt 3) for the Bayes logit; the logit of the other
    class adds a first-order term that breaks it (the classes_swapped control)."""
    from numerics.papers.discriminator import claims as C
    eps, om, t = 0.1, 1.0, 0.5
    dev = abs(C._ce_gap_ripple(eps, om, t, swapped) - C._ce_gap_second_order(eps, om, t))
    assert (dev > eps ** 3 / (18 * 3 ** 0.5)) == swapped


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_claims_memoised_endpoint_equals_kl_with_error(sampler):
    """The claims' _endpoint, built from the memoised one-resolution solves, is D.kl_with_error bit for bit (same
    grids, steps and field); a ripple-free field is one solve whatever omega; the memoised density is read-only;
    another weight gives another solve."""
    from numerics.papers.discriminator import claims as C
    dx, dtau = 0.08, 0.064
    for w, eps, om in ((1.0, 0.1, 1.0), (0.5, 0.0, 0.0)):
        ref = D.kl_with_error(DATA, D.bayes_field(DATA, MODEL, w=w, eps=eps, omega=om), MODEL, sampler, T,
                              D.Grid1D(dx=dx), dtau)
        assert C._endpoint(sampler, w, eps, om, dx, dtau) == ref
    assert C._endpoint(sampler, 0.5, 0.0, 3.0, dx, dtau) == C._endpoint(sampler, 0.5, 0.0, 0.0, dx, dtau)
    assert C._endpoint(sampler, 1.5, 0.0, 0.0, dx, dtau)[0] != C._endpoint(sampler, 0.5, 0.0, 0.0, dx, dtau)[0]
    if sampler == "sde":
        q = C._bayes_sde(0.5, 0.0, 2.0, dx, dtau)
        assert q is C._bayes_sde(0.5, 0.0, 0.0, dx, dtau) and not q.flags.writeable


def test_claims_gmm_linear_reuses_the_coarse_solve():
    """_gmm_linear's (KL, err, spline err) equal the formula with D.kl_with_error and the separate coarse solve."""
    from numerics.papers.discriminator import claims as C
    dx, dtau = 0.08, 0.064
    beta = C._beta("G", "mse", 21)
    half = C._beta("G", "mse", C._half_spline(21))
    kl, err = D.kl_with_error(DATA, D.linear_field(MODEL, beta), MODEL, "sde", T, D.Grid1D(dx=dx), dtau)
    a = C._sde_kl(D.linear_field(MODEL, beta), MODEL, 2 * dx, 2 * dtau)
    b = C._sde_kl(D.linear_field(MODEL, half), MODEL, 2 * dx, 2 * dtau)
    assert C._gmm_linear("mse", 21, dx, dtau, 1.0) == (kl, err, abs(a - b))


def _score_reference(x: float, w, m, v) -> tuple[float, float]:
    """The mixture score and its derivative at one point in plain Python (every weight by math.exp, every s_k
    computed where it is used): the arithmetic of the compiled kernel before its exp-free largest weight."""
    lw = [math.log(wk) - 0.5 * math.log(vk) for wk, vk in zip(w, v)]
    lc = [lw[k] - 0.5 * (x - m[k]) * (x - m[k]) / v[k] for k in range(len(m))]
    mx = max(lc)
    pk = [math.exp(c - mx) for c in lc]
    z = sum(pk)
    a = 0.0
    for k in range(len(m)):
        a += pk[k] * (-(x - m[k]) / v[k])
    s = a / z
    b = 0.0
    for k in range(len(m)):
        d = -(x - m[k]) / v[k] - s
        b += pk[k] * (d * d - 1.0 / v[k])
    return s, b / z


@pytest.mark.parametrize("mix", [MODEL, DATA, D.Mixture1D([0.2, 0.5, 0.3], [-1.0, 0.5, 3.0], [0.04, 1.0, 0.25])])
def test_mix_score_kernel_equals_plain_reference(mix):
    """The compiled score (largest weight written 1, s_k computed once) is the plain two-pass formula bit for bit,
    from the components' overlap to the far tails where one weight underflows."""
    x = np.concatenate([np.linspace(-7, 7, 401), [-300.0, -40.0, 25.0, 1e3]])
    for t in (0.0, 1e-3, 0.5, 8.0):
        w, m, v = mix.marginal(t)
        s, ds = mix.score_and_derivative(x, t)
        ref = np.array([_score_reference(float(xi), w.tolist(), m.tolist(), v.tolist()) for xi in x])
        assert np.array_equal(s, ref[:, 0]) and np.array_equal(ds, ref[:, 1])


@pytest.mark.parametrize("w, eps, om", [(1.0, 0.0, 0.0), (-0.5, 0.0, 0.0), (1.0, 0.1, 20.0), (3.0, 0.3, 2.0)])
def test_bayes_field_compiled_paths_equal_numpy_calls(w, eps, om):
    """sde_endpoint (score table) and ode_endpoint (compiled RK4) of a BayesField equal the same field hidden in a
    plain callable (the NumPy step loops) bit for bit; a non-finite score raises the call's ValueError on both."""
    f = D.bayes_field(DATA, MODEL, w, eps, om)
    plain = lambda x, t: f(x, t)  # noqa: E731
    g = D.Grid1D(dx=0.08)
    assert np.array_equal(D.sde_endpoint(f, MODEL, T, g, 0.064), D.sde_endpoint(plain, MODEL, T, g, 0.064))
    a, b = D.ode_endpoint(f, MODEL, T, g, 0.064), D.ode_endpoint(plain, MODEL, T, g, 0.064)
    assert np.array_equal(a.log_density, b.log_density) and a.mass == b.mass
    huge = D.bayes_field(DATA, MODEL, 1e308 * (1 + eps), eps, om)
    for run in (lambda fl: D.sde_endpoint(fl, MODEL, T, g, 0.064), lambda fl: D.ode_endpoint(fl, MODEL, T, g, 0.064)):
        with pytest.raises(ValueError, match="^w: the refined score is not finite at t=") as compiled:
            run(huge)
        with pytest.raises(ValueError) as reference:
            run(lambda x, t: huge(x, t))
        assert str(compiled.value) == str(reference.value)


def _old_control_field(eps, om, form):
    """The NumPy closures the ce_gradient_counterexample controls ran before their compiled BayesField forms."""
    def swapped(z, t):
        sp_, dsp = DATA.score_and_derivative(z, t)
        sq, dsq = MODEL.score_and_derivative(z, t)
        return (sq - (sp_ - sq) + eps * om * np.cos(om * z),
                dsq - (dsp - dsq) - eps * om * om * np.sin(om * z))

    def dropped(z, t):
        sp_, dsp = DATA.score_and_derivative(z, t)
        return sp_ + eps * np.cos(om * z), dsp - eps * om * np.sin(om * z)

    return swapped if form == "classes_swapped" else dropped


@pytest.mark.parametrize("form", ["classes_swapped", "chain_rule_omega_dropped"])
@pytest.mark.parametrize("eps, om", [(0.1, 1.0), (0.3, 20.0)])
def test_bayes_field_control_forms_equal_the_numpy_closures(form, eps, om):
    """The controls' miswritten fields as compiled BayesField forms: the call, the SDE score table and the PF-ODE
    endpoint equal the NumPy closures the claim used before (per-step calls, the NumPy RK4 loop) bit for bit; the
    forms differ from each other and from the refined field (a form code mixed up is caught)."""
    f = D.bayes_field(DATA, MODEL, 1.0, eps, om, form=form)
    old = _old_control_field(eps, om, form)
    g = D.Grid1D(dx=0.08)
    x = np.linspace(-7, 7, 41)
    for t in (0.0, 0.3, 8.0):
        assert all(np.array_equal(a, b) for a, b in zip(f(x, t), old(x, t)))
    assert np.array_equal(D.sde_endpoint(f, MODEL, T, g, 0.064), D.sde_endpoint(old, MODEL, T, g, 0.064))
    a, b = D.ode_endpoint(f, MODEL, T, g, 0.064), D.ode_endpoint(old, MODEL, T, g, 0.064)
    assert np.array_equal(a.log_density, b.log_density) and a.mass == b.mass
    others = [D.bayes_field(DATA, MODEL, 1.0, eps, 20.0, form=o) for o in D.BAYES_FORMS if o != form]
    mine = D.bayes_field(DATA, MODEL, 1.0, eps, 20.0, form=form)(x, 0.3)[0]  # omega != 1: the forms all differ
    assert all(np.max(np.abs(o(x, 0.3)[0] - mine)) > 1e-3 for o in others)
    with pytest.raises(ValueError, match="^form: must be one of"):
        D.bayes_field(DATA, MODEL, 1.0, eps, om, form="swapped")


def test_bayes_compiled_paths_do_not_depend_on_threads():
    """The PF-ODE transport (fixed chunks of points over the threads) and the SDE score table (rows over the
    threads) of a BayesField are bit-identical for 1 and 2 Numba threads, and the chunked transport equals one
    chunk holding every point (the serial loop) bit for bit; the grid (351 points) spans several chunks."""
    import numba

    f = D.bayes_field(DATA, MODEL, 1.0, 0.1, 2.0)
    g = D.Grid1D(dx=0.04)
    assert g.x.size > 3 * D._ODE_CHUNK
    old = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            runs.append((D.ode_endpoint(f, MODEL, T, g, 0.064).log_density,
                         f.score_table(g.x, np.linspace(0.0, T, 17))))
    finally:
        numba.set_num_threads(old)
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    n_steps = D._n_steps(T, 0.064)
    dt = T / n_steps
    times = D._rk4_stage_times(T, n_steps, dt)
    lwp, mp, vp, lwq, mq, vq = f.tables(times)
    lwp_rows, lwq_rows = lwp - 0.5 * np.log(vp), lwq - 0.5 * np.log(vq)
    x, A = g.x.copy(), np.zeros(g.x.size)
    n, K = x.size, max(mp.shape[1], mq.shape[1])
    work = (np.empty((K, n)), np.empty((K, n)), np.empty((7, n)), np.empty((4, n)), np.empty((4, n)), np.empty(n))
    assert not D._ode_bayes_chunk(x, A, dt, n_steps, lwp_rows, mp, vp, lwq_rows, mq, vq, 1.0, 0.1, 2.0, 0,
                                  D._ODE_STATE_MAX, *work)
    xx, AA, bad = D._ode_bayes_kernel(g.x, dt, n_steps, lwp, mp, vp, lwq, mq, vq, 1.0, 0.1, 2.0, 0, D._ODE_STATE_MAX)
    assert not bad and np.array_equal(xx, x) and np.array_equal(AA, A)


def test_bayes_score_table_from_memoised_pair_rows_equals_the_full_kernel():
    """BayesField.score_table (the data's and the model's score rows memoised, combined per field) equals the full
    kernel _bayes_score_rows bit for bit for every form, with and without a ripple, for 1 and 2 Numba threads; the
    fields on one grid share one memoised pair; a field whose derivative bound is not below 1e300 (w = 1e300, 1e308) takes
    the full kernel and raises its ValueError, as a non-finite score does."""
    import numba

    x = np.linspace(-7.0, 7.0, 203)
    times = np.linspace(0.0, T, 41)
    old = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            D._PAIR_ROWS.items.clear()
            for form in D.BAYES_FORMS:
                for w, eps, om in ((1.0, 0.0, 0.0), (0.7, 0.1, 2.0), (2.5, 0.3, 20.0)):
                    f = D.bayes_field(DATA, MODEL, w, eps, om, form=form)
                    ref, bad = D._bayes_score_rows(x, *f.tables(times), w, eps, om, f.code)
                    assert bad == -1 and np.array_equal(f.score_table(x, times), ref)
            assert len(D._PAIR_ROWS.items) == 1
    finally:
        numba.set_num_threads(old)
    tabs = D.bayes_field(DATA, MODEL).tables(times)
    sp_, sq, dmax = D._mix_pair_rows(x, *tabs)
    assert D._bayes_combine_rows(x, sp_, sq, dmax, 1e300, 0.0, 0.0, 0)[1] == -2
    big = D.bayes_field(DATA, MODEL, w=1e300)
    assert np.array_equal(big.score_table(x, times), D._bayes_score_rows(x, *tabs, 1e300, 0.0, 0.0, 0)[0])
    with pytest.raises(ValueError, match="^w: the refined score is not finite"):
        D.bayes_field(DATA, MODEL, w=1e308).score_table(x, times)


@pytest.mark.parametrize("mix", [MODEL, DATA, D.Mixture1D([0.2, 0.5, 0.3], [-1.0, 0.5, 3.0], [0.04, 1.0, 0.25])])
def test_mix_score_block_equals_the_point_kernel(mix):
    """The PF-ODE chunks' block score (components' loops outside the points') equals _mix_score_point point by point
    bit for bit, from the overlap to the far tails where a weight underflows, on work arrays wider than the points
    and with stale values in them; a block that skipped the variance's second pass or took the wrong component's
    max would differ."""
    x = np.concatenate([np.linspace(-7, 7, 61), [-300.0, -40.0, 25.0, 1e3]])
    K, n = mix.m.size, x.size
    for t in (0.0, 1e-3, 0.5, 8.0):
        w, m, v = mix.marginal(t)
        lw = np.log(w) - 0.5 * np.log(v)
        lc, pk, acc = np.full((K, n + 3), 7.0), np.full((K, n + 3), 7.0), np.full((3, n + 3), 7.0)
        s, ds = np.empty(n), np.empty(n)
        D._mix_score_block(x, lw, m, v, lc, pk, acc, s, ds)
        ref = np.array([D._mix_score_point(xi, lw, m, v, np.empty(K), np.empty(K)) for xi in x])
        assert np.array_equal(s, ref[:, 0]) and np.array_equal(ds, ref[:, 1])


def test_bayes_field_tables_equal_the_marginal_calls():
    """BayesField.tables (compiled rows) equal Mixture1D.marginal time by time bit for bit, at the RK4 stage times and
    at times from 0 to far past T; a bad time raises marginal's ValueError naming t."""
    f = D.bayes_field(DATA, MODEL, 1.0, 0.1, 2.0)
    n_steps = D._n_steps(T, 0.064)
    times = np.concatenate([D._rk4_stage_times(T, n_steps, T / n_steps), [0.0, 1e-300, 1e-9, 40.0, 800.0]])
    lwp, mp, vp, lwq, mq, vq = f.tables(times)
    for mix, lw, m, v in ((DATA, lwp, mp, vp), (MODEL, lwq, mq, vq)):
        assert np.array_equal(lw, np.log(mix.w))
        for r, t in enumerate(times):
            _, mm, vv = mix.marginal(float(t))
            assert np.array_equal(m[r], mm) and np.array_equal(v[r], vv)
    for bad in (-1e-3, np.nan, np.inf):
        with pytest.raises(ValueError, match="^t: "):
            f.tables(np.array([0.5, bad]))


def _gaussian_endpoint_reference(model, beta, sampler, T, n_steps):
    """The NumPy RK4 loop that gaussian_refined_endpoint compiled (marginal and beta called at every stage)."""
    def rhs(y, t):
        _, mu, v = model.marginal(t)
        a = -1.0 / v[0]
        b = mu[0] / v[0] + beta(t)
        m, V = y
        if sampler == "sde":
            return np.array([(1 + 2 * a) * m + 2 * b, 2 * (1 + 2 * a) * V + 2.0])
        return np.array([(1 + a) * m + b, 2 * (1 + a) * V])

    _, mu, v = model.marginal(T)
    y = np.array([mu[0], v[0]])
    dt = T / n_steps
    for k in range(n_steps):
        t0 = T - k * dt
        k1 = rhs(y, t0)
        k2 = rhs(y + 0.5 * dt * k1, t0 - 0.5 * dt)
        k3 = rhs(y + 0.5 * dt * k2, t0 - 0.5 * dt)
        k4 = rhs(y + dt * k3, max(t0 - dt, 0.0))
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return float(y[0]), float(y[1])


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_gaussian_refined_endpoint_equals_the_numpy_loop(sampler):
    """The compiled moment RK4 (stage marginals and slopes first; a BetaSpline's in one call, signed or not, any
    other slope per time) equals the NumPy loop calling marginal and beta at every stage bit for bit; a spline's
    many() equals its calls; a slope that is not finite raises naming beta."""
    data, model = D.Mixture1D([1], [0.0], [1.0]), D.Mixture1D([1], [0.5], [2.25])
    spl = D.linear_beta_spline(data, model, "ce", T, 41)
    ts = np.linspace(0.0, T, 37)
    assert np.array_equal(spl.many(ts), [spl(float(t)) for t in ts])
    for beta in (spl, spl.signed(-1.0), lambda t: 0.3 * math.exp(-t), lambda t: -0.2 * math.sin(3 * t)):
        for n_steps in (1, 7, 400):
            assert D.gaussian_refined_endpoint(model, beta, sampler, T, n_steps) == \
                _gaussian_endpoint_reference(model, beta, sampler, T, n_steps)
    with pytest.raises(ValueError, match="^beta"):
        D.gaussian_refined_endpoint(model, lambda t: math.nan, sampler, T, 10)


def test_linear_field_score_table_equals_the_per_step_calls():
    """sde_endpoint of a linear field (score table: compiled marginals and model score rows, the slope's values
    in one call for a BetaSpline) equals the same field hidden in a plain callable (a NumPy call per step) bit for
    bit, for a spline slope, a signed one and a plain function; a slope that is not finite raises naming beta."""
    g = D.Grid1D(dx=0.08)
    spl = D.linear_beta_spline(DATA, MODEL, "mse", T, 41)
    for beta in (spl, spl.signed(-1.0), lambda t: 0.3 * math.exp(-t)):
        f = D.linear_field(MODEL, beta)
        plain = lambda x, t: f(x, t)  # noqa: E731
        assert np.array_equal(D.sde_endpoint(f, MODEL, T, g, 0.064), D.sde_endpoint(plain, MODEL, T, g, 0.064))
    with pytest.raises(ValueError, match="^beta"):
        D.sde_endpoint(D.linear_field(MODEL, lambda t: math.nan if t < 1 else 0.0), MODEL, T, g, 0.064)


def test_mse_slope_many_equals_its_calls():
    """The closed-form MSE slope of every Gaussian case at many times in one pass equals its calls bit for bit,
    signed or not (the sign kept with many())."""
    from numerics.papers.discriminator import claims as C
    ts = np.concatenate([np.linspace(0.0, T, 53), [1e-9, 0.123456789]])
    for name in C.GAUSS_CASES:
        for sign in (1.0, -1.0):
            beta = C._signed(C._MseSlopeGauss(name), sign)
            assert np.array_equal(beta.many(ts), [beta(float(t)) for t in ts])
            assert beta(0.7) == sign * C._beta_mse_gauss(name, 0.7)

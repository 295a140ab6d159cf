"""Tests of numerics.papers.discriminator.refined_2d (2-D trained logits, EI-SDE chain on a grid)."""
import numpy as np
import pytest

from numerics.papers.discriminator import refined_2d as D2
from numerics.mixture import GaussianMixture


@pytest.mark.parametrize("kind", ["fourier", "quadratic"])
def test_feature_gradients_match_finite_differences(kind):
    fam = D2.FeatureLogit2D(kind=kind, n_freq=8, seed=1)
    fam.coef = np.random.default_rng(0).standard_normal(fam.coef.shape)
    X = np.random.default_rng(1).standard_normal((20, 2))
    t = np.random.default_rng(2).uniform(0.01, 3.0, 20)
    h = 1e-5
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        fd = (fam.logit(X + e, t) - fam.logit(X - e, t)) / (2 * h)
        assert np.allclose(fam.grad(X, t)[:, i], fd, atol=1e-7 * (1 + np.abs(fd).max()))
    # scalar-time fast path agrees with per-sample features
    assert np.allclose(fam.grad(X, 0.7), fam.grad(X, np.full(20, 0.7)), atol=1e-12)
    assert np.allclose(fam.logit(X, 0.7), fam.features(X, np.full(20, 0.7)) @ fam.coef.ravel(), atol=1e-12)


def test_model_score_at_per_sample_times():
    """The gradient-matching target uses the G2 model score at per-sample times (GaussianMixture.score with a
    time per point): row i is the score at (x_i, t_i), as a scalar-time call gives it, to rounding."""
    _, model = D2.setting_g2()
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 2)) * 2
    t = rng.uniform(0.01, 3.0, 50)
    rows = np.vstack([model.score(X[i:i + 1], float(t[i])) for i in range(50)])
    np.testing.assert_allclose(model.score(X, t), rows, rtol=1e-14, atol=1e-14)


GAUSS_P = GaussianMixture([1.0], [[0.5, -0.3]], [[[0.6, 0.2], [0.2, 0.4]]])
GAUSS_Q = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]])


def test_gm_recovers_dstar_in_family_exact_target():
    """Gaussian data and model: d* is quadratic in x at each t; at a single training time (a knot) it is in the
    family, and least squares on the exact residual score recovers it to rounding."""
    t0 = 0.5
    fam = D2.FeatureLogit2D(kind="quadratic", knots=(0.5, 1.0))
    X = np.random.default_rng(4).standard_normal((2000, 2)) * 1.5
    target = GAUSS_P.score(X, t0) - GAUSS_Q.score(X, t0)
    D2.gm_solve_2d(fam, X, t0, target, lam=1e-12)  # tiny ridge: the constant and the unused hat
    Y = np.random.default_rng(5).standard_normal((200, 2))
    assert np.allclose(fam.grad(Y, t0), GAUSS_P.score(Y, t0) - GAUSS_Q.score(Y, t0), atol=1e-9)


def test_gm_fit_recovers_dstar_from_samples():
    """The same through the conditional (denoising) target on 1e5 noised samples: Monte Carlo accuracy."""
    t0 = 0.5
    rng = np.random.default_rng(6)
    fam = D2.FeatureLogit2D(kind="quadratic", knots=(0.5, 1.0))
    real = GAUSS_P.sample_data(100_000, rng)
    D2.fit_logit_gm_2d(fam, real, GAUSS_Q, rng, T=t0, lam=1e-10, t_min=t0, repeats=1)
    Y = GAUSS_P.sample_data(500, np.random.default_rng(7)) * np.exp(-t0)
    err = fam.grad(Y, t0) - (GAUSS_P.score(Y, t0) - GAUSS_Q.score(Y, t0))
    assert np.sqrt(np.mean(err ** 2)) < 0.03  # ~ sqrt(6 params * 1/sigma^2 / n) ~ 0.01


def test_exact_dstar_chain_beats_unrefined_and_flip_does_not():
    data, model = D2.setting_g2()
    g1, g2 = np.linspace(-5.5, 5.5, 25), np.linspace(-5.0, 5.5, 25)
    base = D2.kl_grid_2d(D2.mixture_density_grid(data, g1, g2, 0.0), D2.mixture_density_grid(model, g1, g2, 0.0), g1, g2)
    times = D2.time_grid(3.0, 8)
    corr = D2.bayes_correction(data, model)
    good = D2.endpoint_kl_2d(data, model, corr, 1.0, [[-5.5, 5.5], [-5.0, 5.5]], 25, times, refine=False)
    bad = D2.endpoint_kl_2d(data, model, corr, -1.0, [[-5.5, 5.5], [-5.0, 5.5]], 25, times, refine=False)
    assert good.kl < base < bad.kl


@pytest.mark.parametrize("call, name", [
    (lambda: D2.FeatureLogit2D(kind="cubic"), "kind"),
    (lambda: D2.FeatureLogit2D(n_freq=0), "n_freq"),
    (lambda: D2.FeatureLogit2D(scale=-1.0), "scale"),
    (lambda: D2.FeatureLogit2D(knots=(1.0, 0.5)), "knots"),
    (lambda: D2.FeatureLogit2D().grad(np.zeros((3, 3)), 0.5), "X"),
    (lambda: D2.fit_logit_gm_2d(D2.FeatureLogit2D(), np.zeros((4, 2)), GAUSS_Q, np.random.default_rng(0), lam=-1.0), "lam"),
    (lambda: D2.fit_logit_gm_2d(D2.FeatureLogit2D(), np.zeros((4, 3)), GAUSS_Q, np.random.default_rng(0)), "real"),
    (lambda: D2.fit_logit_ce_2d(D2.FeatureLogit2D(), np.zeros((4, 2)), np.zeros((4, 1)), np.random.default_rng(0)), "fake"),
    (lambda: D2.fit_logit_ce_2d(D2.FeatureLogit2D(), np.zeros((4, 2)), np.zeros((4, 2)), np.random.default_rng(0),
                                repeats=0), "repeats"),
    (lambda: D2.time_grid(3.0, 0), "steps"),
    (lambda: D2.refined_chain_2d(GAUSS_Q, None, float("nan"), np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), [1.0, 0.0]), "w"),
    (lambda: D2.refined_chain_2d(GAUSS_Q, None, 1.0, np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), [0.0, 1.0]), "times"),
    (lambda: D2.endpoint_kl_2d(GAUSS_P, GAUSS_Q, None, 1.0, [1.0, 2.0], 9, [1.0, 0.0]), "box"),
])
def test_bad_input_names_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()

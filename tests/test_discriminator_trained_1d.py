"""Tests of the 1-D trained-logit claim ``discriminator.trained_1d`` and its helpers (setting G, T = 8)."""
import numpy as np

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

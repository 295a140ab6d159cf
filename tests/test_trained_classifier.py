"""Tests of numerics.papers.ce_guidance.trained_classifier and the ce_guidance.trained_classifiers claim."""
import math

import numpy as np
import pytest
from scipy.stats import chi2

from numerics.papers.ce_guidance.claims import SETTING_B, setting_q
from numerics.papers.ce_guidance.trained_classifier import (LabelNoiseSetting, LogisticClassifier, QuadraticFeatures,
                                         RandomFourierFeatures, bayes_quadratic_coefficients,
                                         certify_label_noise, errors_quadrature_2d, sample_noised)


def test_bayes_coefficients_match_posterior():
    gm = setting_q()
    x = np.random.default_rng(1).standard_normal((50, 2)) * 2
    for t in (0.05, 0.5, 2.0):
        lp = gm.class_log_posterior(x, t)
        f = QuadraticFeatures(2)(x) @ bayes_quadratic_coefficients(gm, t)
        assert np.max(np.abs(f - (lp[:, 0] - lp[:, 1]))) < 1e-10


def test_fit_recovers_bayes_coefficients():
    """Well-specified MLE: (theta_hat - theta*)^T Cov^{-1} (theta_hat - theta*) ~ chi2_6; reject above the 0.999 quantile."""
    gm, t = setting_q(), 0.5
    x, y = sample_noised(gm, t, 200_000, np.random.default_rng(2))
    clf = LogisticClassifier(QuadraticFeatures(2)).fit(x, y)
    dlt = clf.theta - bayes_quadratic_coefficients(gm, t)
    stat = float(dlt @ np.linalg.solve(clf.covariance(), dlt))
    assert stat < chi2.ppf(0.999, 6)
    # and the quadrature eps^2 is of the parametric size p/(2n) (within a factor 20 either way)
    e = errors_quadrature_2d(gm, t, clf, 48)
    assert 6 / (2 * 200_000) / 20 < e.kl < 20 * 6 / (2 * 200_000)


@pytest.mark.parametrize("kind", ["quad", "rff"])
def test_guidance_matches_finite_differences(kind):
    rng = np.random.default_rng(3)
    gm = setting_q() if kind == "quad" else SETTING_B.mixture()
    x, y = sample_noised(gm, 0.3, 2000, rng)
    feats = QuadraticFeatures(2) if kind == "quad" else RandomFourierFeatures(2, 16, 1.0, rng)
    clf = LogisticClassifier(feats, 1e-3).fit(x, y)
    pts = rng.standard_normal((20, 2))
    g = clf.guidance(pts)
    h = 1e-5
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        fd = (clf.log_posterior(pts + e) - clf.log_posterior(pts - e)) / (2 * h)
        # central difference: O(h^2) truncation plus ~u/h rounding of log p values of size <= 10
        assert np.max(np.abs(fd - g[:, :, j])) < 1e-6


def test_certificates_rff_vs_quadratic():
    rng = np.random.default_rng(4)
    gm = SETTING_B.mixture()
    x, y = sample_noised(gm, 0.5, 1000, rng)
    rff = LogisticClassifier(RandomFourierFeatures(2, 8, 1.0, rng), 1e-2).fit(x, y)
    cert = certify_label_noise(SETTING_B, 0.5, rff)
    assert cert.ok and math.isfinite(cert.L) and cert.M > 0
    # the certified M really bounds |r| at sampled points
    lp, lph = gm.class_log_posterior(x, 0.5), rff.log_posterior(x)
    assert np.max(np.abs(lph - lp)) <= cert.M
    quad = LogisticClassifier(QuadraticFeatures(2)).fit(x, y)
    assert not certify_label_noise(SETTING_B, 0.5, quad).ok


def test_wrong_sign_guidance_has_larger_mse():
    gm, t = setting_q(), 0.5
    x, y = sample_noised(gm, t, 5000, np.random.default_rng(5))
    clf = LogisticClassifier(QuadraticFeatures(2)).fit(x, y)
    good = errors_quadrature_2d(gm, t, clf, 40)
    bad = errors_quadrature_2d(gm, t, clf, 40, guidance_sign=-1.0)
    assert bad.mse > 10 * good.mse


@pytest.mark.parametrize("call, arg", [
    (lambda: LogisticClassifier(QuadraticFeatures(2), lam=-1.0), "lam"),
    (lambda: LogisticClassifier(object()), "features"),
    (lambda: LogisticClassifier(QuadraticFeatures(2)).fit(np.zeros((5, 3)), np.zeros(5)), "x"),
    (lambda: LogisticClassifier(QuadraticFeatures(2)).fit(np.zeros((5, 2)), np.full(5, 2)), "y"),
    (lambda: LogisticClassifier(QuadraticFeatures(2)).fit(np.zeros((5, 2)), np.zeros(4)), "y"),
    (lambda: LogisticClassifier(QuadraticFeatures(2)).fit(np.full((5, 2), np.nan), np.zeros(5)), "x"),
    (lambda: LogisticClassifier(QuadraticFeatures(2)).logit(np.zeros((2, 2))), "classifier"),
    (lambda: RandomFourierFeatures(2, 0, 1.0, np.random.default_rng()), "n_features"),
    (lambda: RandomFourierFeatures(2, 4, -1.0, np.random.default_rng()), "scale"),
    (lambda: LabelNoiseSetting((1.0, 0.0), ((1.0, 0.0), (0.0, 1.0)), 0.7), "rho"),
    (lambda: sample_noised(setting_q(), -1.0, 10, np.random.default_rng()), "t"),
    (lambda: QuadraticFeatures(2).unpack(np.zeros(3)), "theta"),
])
def test_bad_input_names_argument(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


def test_claim_quick_holds_and_control_flagged():
    from numerics.checks.claim import REGISTRY
    from numerics.checks.runner import run_claim
    import numerics.papers.ce_guidance.claims  # noqa: F401
    r = run_claim(REGISTRY["ce_guidance.trained_classifiers"], profile="quick", seed=0)
    assert r.verdict == "holds", r.error
    assert r.control == "flagged"


@pytest.mark.parametrize("kind", ["quadratic", "fourier"])
def test_feature_laplacian_matches_finite_differences(kind):
    from numerics.papers.ce_guidance.trained_classifier import RandomFourierFeatures
    rng = np.random.default_rng(3)
    gm, t = setting_q(), 0.5
    x, y = sample_noised(gm, t, 2000, rng)
    feats = QuadraticFeatures(2) if kind == "quadratic" else RandomFourierFeatures(2, 8, 1.0, rng)
    clf = LogisticClassifier(feats, 1e-3).fit(x, y)
    pts = rng.standard_normal((5, 2))
    e = 1e-4
    lap_fd = sum((clf.log_posterior(pts + e * v) - 2 * clf.log_posterior(pts) + clf.log_posterior(pts - e * v)) / e**2
                 for v in np.eye(2))
    assert np.allclose(clf.log_posterior_laplacian(pts), lap_fd, atol=1e-5)


def test_ibp_identity_holds_and_wrong_sign_breaks_it():
    from numerics.papers.ce_guidance.trained_classifier import ibp_identity_2d
    gm, t = setting_q(), 0.5
    x, y = sample_noised(gm, t, 3000, np.random.default_rng(7))
    clf = LogisticClassifier(QuadraticFeatures(2)).fit(x, y)
    good = ibp_identity_2d(gm, t, clf, 40)
    assert abs(good.mse - good.rhs) <= good.err + 1e-12 and good.err < 1e-4 * good.mse
    bad = ibp_identity_2d(gm, t, clf, 40, guidance_sign=-1.0)
    assert abs(bad.mse - bad.rhs) > 100 * bad.err


def test_claims_fit_memo_returns_the_fresh_fit_and_keys_on_every_input():
    """trained_classifiers' memoised fit (the wrong-sign control reuses the stated run's fits): the same
    coefficients and Hessian as a fresh fit, bit for bit; other labels, another feature draw or another penalty is a
    different fit; changing a returned classifier does not change the cache."""
    from numerics.papers.ce_guidance import claims as CL
    from numerics.papers.ce_guidance.trained_classifier import (LogisticClassifier, RandomFourierFeatures,
                                                                sample_noised)

    CL._FITS.clear()
    gm = CL.SETTING_B.mixture()
    rng = np.random.default_rng(3)
    x, y = sample_noised(gm, 0.5, 400, rng)
    feats = RandomFourierFeatures(2, 8, 1.0, rng)
    fresh = LogisticClassifier(feats, 1e-3).fit(x, y)
    a = CL._fit(feats, 1e-3, x, y)
    a.theta[:] = 0.0
    b = CL._fit(feats, 1e-3, x, y)
    assert len(CL._FITS) == 1
    assert np.array_equal(b.theta, fresh.theta) and np.array_equal(b.hessian, fresh.hessian)
    assert not np.array_equal(CL._fit(feats, 1e-3, x, 1 - y).theta, fresh.theta)
    assert not np.array_equal(CL._fit(feats, 1e-2, x, y).theta, fresh.theta)
    other = RandomFourierFeatures(2, 8, 1.0, np.random.default_rng(4))
    assert not np.array_equal(CL._fit(other, 1e-3, x, y).theta, fresh.theta)
    assert len(CL._FITS) == 4
    CL._FITS.clear()


def test_mixture_at_nodes_memo_is_the_direct_computation_and_keys_on_every_input():
    """The memoised mixture side of the 2-D quadratures equals the mixture's own calls at the nodes bit for bit, on
    a miss and on a hit; another mixture, time or rule size is another entry (a key that dropped one would return
    the wrong mixture's values); the entries are read-only."""
    from numerics.papers.ce_guidance import trained_classifier as TC

    TC._AT_NODES.clear()
    cases = [(setting_q(), 0.5, 12), (setting_q(), 0.25, 12), (setting_q(), 0.5, 10), (SETTING_B.mixture(), 0.5, 12)]
    for gm, t, m in cases + cases:
        got = TC._mixture_at_nodes(gm, t, m, True)
        x, w, ks = TC._nodes(gm, t, m)
        assert np.array_equal(got.x, x) and np.array_equal(got.w, w) and np.array_equal(got.ks, ks)
        assert np.array_equal(got.lp, gm.class_log_posterior(x, t))
        for y in (0, 1):
            assert np.array_equal(got.g[:, y], gm.guidance_vector(x, t, y))
            assert np.array_equal(got.lap[:, y], np.trace(gm.guidance_hessian(x, t, y), axis1=1, axis2=2))
            assert np.array_equal(got.s[y], gm.conditional(y).score(x, t))
        assert not got.lp.flags.writeable
    assert len(TC._AT_NODES) == len(cases)
    assert TC._mixture_at_nodes(setting_q(), 0.5, 12, False).lap is None


def test_fourier_phase_tables_are_memoised_on_values():
    """RandomFourierFeatures' cos/sin tables (_phase_table) equal the direct formulas bit for bit, are shared by
    the features, Jacobian and Laplacian of the same points and another instance with the same W and b (the
    stated run and its controls), are read-only, and are recomputed for other points or frequencies."""
    from numerics.papers.ce_guidance import trained_classifier as tc

    rng = np.random.default_rng(8)
    f = tc.RandomFourierFeatures(2, 8, 1.0, rng)
    x = rng.standard_normal((50, 2))
    Z = x @ f.W.T + f.b
    assert np.array_equal(f(x)[:, 1:], np.cos(Z))
    assert np.array_equal(f.jacobian(x)[:, 1:, :], -np.sin(Z)[:, :, None] * f.W[None])
    assert np.array_equal(f.laplacian(x)[:, 1:], -np.cos(Z) * np.sum(f.W**2, axis=1))
    table = tc._phase_table(x, f.W, f.b, np.cos)
    assert table is tc._phase_table(x.copy(), f.W.copy(), f.b.copy(), np.cos)
    assert not table.flags.writeable
    g = tc.RandomFourierFeatures(2, 8, 1.0, np.random.default_rng(9))
    assert not np.array_equal(g(x), f(x))
    y = x.copy()
    y[0, 0] += 1e-9
    assert not np.array_equal(f(y)[0], f(x)[0]) and np.array_equal(f(y)[1:], f(x)[1:])

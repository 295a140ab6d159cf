"""Statistics helpers of numerics.stats, checked against SciPy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from numerics.stats import (
    half_width,
    loglog_slope,
    lower_end_ge,
    mean_ci,
    proportion_ci,
    upper_end_le,
)


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_mean_ci_t_matches_scipy(level: float) -> None:
    x = np.random.default_rng(1).normal(2.0, 3.0, size=37)
    got = mean_ci(x, level=level, method="t")
    lo, hi = sps.t.interval(level, df=x.size - 1, loc=x.mean(), scale=sps.sem(x))
    assert got.mean == pytest.approx(x.mean(), rel=1e-14)
    assert got.se == pytest.approx(sps.sem(x), rel=1e-13)
    assert (got.lo, got.hi) == pytest.approx((lo, hi), rel=1e-12)
    assert got.ci == (got.lo, got.hi)


def test_mean_ci_normal_matches_scipy_and_is_narrower_than_t() -> None:
    x = np.random.default_rng(2).exponential(size=20)
    got = mean_ci(x, level=0.95, method="normal")
    lo, hi = sps.norm.interval(0.95, loc=x.mean(), scale=sps.sem(x))
    assert (got.lo, got.hi) == pytest.approx((lo, hi), rel=1e-12)
    t = mean_ci(x, level=0.95, method="t")
    assert t.hi - t.lo > got.hi - got.lo


def test_mean_ci_coverage_is_near_nominal() -> None:
    # 2000 replications of n=10 Gaussian samples: t-interval coverage is exactly 0.95, so the
    # count of covering intervals is Binomial(2000, 0.95); 4.5 sd ~ 44 leaves a 1e-5 false alarm.
    rng = np.random.default_rng(3)
    hits = sum(lo <= 0.0 <= hi for lo, hi in
               (mean_ci(rng.normal(size=10)).ci for _ in range(2000)))
    assert abs(hits - 1900) <= 4.5 * math.sqrt(2000 * 0.95 * 0.05)


@pytest.mark.parametrize("bad", [[1.0], [1.0, float("nan")], [[1.0, 2.0]]])
def test_mean_ci_rejects_bad_input(bad: list) -> None:
    with pytest.raises(ValueError):
        mean_ci(bad)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (1, 1), (57, 400), (399, 400)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.999])
def test_proportion_ci_matches_scipy_binomtest(k: int, n: int, level: float) -> None:
    res = sps.binomtest(k, n)
    wilson = res.proportion_ci(confidence_level=level, method="wilson")
    exact = res.proportion_ci(confidence_level=level, method="exact")
    w = proportion_ci(k, n, level=level, method="wilson")
    cp = proportion_ci(k, n, level=level, method="clopper-pearson")
    assert (w.lo, w.hi) == pytest.approx((wilson.low, wilson.high), rel=1e-10, abs=1e-14)
    assert (cp.lo, cp.hi) == pytest.approx((exact.low, exact.high), rel=1e-10, abs=1e-14)
    assert w.p == cp.p == k / n


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), frac=st.floats(0, 1), level=st.floats(0.5, 0.999))
def test_proportion_ci_contains_estimate_and_stays_in_unit_interval(n: int, frac: float,
                                                                     level: float) -> None:
    k = round(frac * n)
    for method in ("wilson", "clopper-pearson"):
        ci = proportion_ci(k, n, level=level, method=method)
        assert 0.0 <= ci.lo <= ci.p <= ci.hi <= 1.0


@pytest.mark.parametrize("k,n", [(-1, 5), (6, 5), (1, 0), (1.5, 3)])
def test_proportion_ci_rejects_bad_counts(k: float, n: int) -> None:
    with pytest.raises(ValueError):
        proportion_ci(k, n)


def test_proportion_ci_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="method"):
        proportion_ci(1, 2, method="agresti")


def test_loglog_slope_matches_linregress() -> None:
    rng = np.random.default_rng(4)
    x = np.geomspace(1e-3, 1.0, 12)
    y = 3.0 * x**1.5 * np.exp(rng.normal(scale=0.05, size=x.size))
    fit = loglog_slope(x, y, level=0.95)
    ref = sps.linregress(np.log(x), np.log(y))
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.se == pytest.approx(ref.stderr, rel=1e-10)
    assert fit.intercept_se == pytest.approx(ref.intercept_stderr, rel=1e-10)
    assert fit.r2 == pytest.approx(ref.rvalue**2, rel=1e-12)
    q = sps.t.ppf(0.975, x.size - 2)
    assert fit.ci == pytest.approx((ref.slope - q * ref.stderr, ref.slope + q * ref.stderr),
                                   rel=1e-10)
    assert fit.lo < 1.5 < fit.hi


def test_loglog_slope_exact_power_law_has_zero_error() -> None:
    x = np.array([1.0, 2.0, 4.0, 8.0])
    fit = loglog_slope(x, 5.0 / x**2)
    assert fit.slope == pytest.approx(-2.0, abs=1e-14)
    assert fit.se == pytest.approx(0.0, abs=1e-13)


@pytest.mark.parametrize("x,y", [([1, 2], [1, 2]), ([1, 2, -3], [1, 2, 3]),
                                 ([1, 1, 1], [1, 2, 3]), ([1, 2, 3], [1, 2])])
def test_loglog_slope_rejects_bad_input(x: list, y: list) -> None:
    with pytest.raises(ValueError):
        loglog_slope(x, y)


def test_upper_end_le_uses_the_upper_end() -> None:
    assert upper_end_le((0.1, 0.9), 1.0)
    assert not upper_end_le((0.1, 1.1), 1.0)  # the point estimate 0.6 would pass; the CI does not
    assert upper_end_le((0.1, 1.1), 1.0, tol=0.1)
    assert not upper_end_le((0.1, float("nan")), 1.0)
    ci = mean_ci([0.0, 1.0, 2.0])
    assert upper_end_le(ci, ci.hi) and not upper_end_le(ci, ci.hi - 1e-9)


def test_lower_end_ge_and_half_width() -> None:
    assert lower_end_ge((1.0, 2.0), 1.0) and not lower_end_ge((0.9, 2.0), 1.0)
    assert lower_end_ge((0.9, 2.0), 1.0, tol=0.1)
    assert half_width((1.0, 2.0)) == 0.5


@pytest.mark.parametrize("call, needle", [
    (lambda: upper_end_le(("0.1", 0.9), 1.0), r"^measured_ci \(lo\): must be a real number"),
    (lambda: upper_end_le((0.1, True), 1.0), r"^measured_ci \(hi\): must be a real number"),
    (lambda: upper_end_le((0.1, 0.9), "1.0"), "^bound: must be a real number"),
    (lambda: upper_end_le((0.1, 0.9), 1.0, None), "^tol: must be a real number"),
    (lambda: upper_end_le((0.1, 0.9), 1.0, -0.1), "^tol: must be >= 0"),
    (lambda: lower_end_ge("ab", 1.0), "^measured_ci: must be a \\(lo, hi\\) pair"),
    (lambda: lower_end_ge(None, 1.0), "^measured_ci: must be a \\(lo, hi\\) pair"),
    (lambda: lower_end_ge((0.1, 0.2, 0.3), 1.0), "^measured_ci: must be a \\(lo, hi\\) pair"),
    (lambda: lower_end_ge((0.1, 1 + 2j), 1.0), r"^measured_ci \(hi\): must be a real number"),
    (lambda: half_width((2.0, 1.0)), "^ci: is reversed"),
    (lambda: half_width(1.0), "^ci: must be a \\(lo, hi\\) pair"),
    (lambda: half_width(("1", "2")), r"^ci \(lo\): must be a real number"),
])
def test_ci_rules_reject_what_float_would_convert(call, needle) -> None:
    """Issue 24: strings, bools, complex numbers and None are refused, naming the argument (float() took them)."""
    with pytest.raises(ValueError, match=needle):
        call()


def test_ci_rules_documented_values() -> None:
    """NaN makes a rule False and half_width NaN; an infinite end gives inf; a finite interval wider than the largest
    float still has a finite half-width (it was inf)."""
    nan = float("nan")
    assert not upper_end_le((0.0, 1.0), nan) and not lower_end_ge((0.0, 1.0), 0.0, nan)
    assert upper_end_le((0.0, 1.0), math.inf) and upper_end_le(np.array([0.0, 1.0]), np.float32(1.0))
    assert math.isnan(half_width((nan, 1.0))) and half_width((0.0, math.inf)) == math.inf
    assert half_width((-1e308, 1e308)) == 1e308
    ci = mean_ci([0.0, 1.0, 2.0])
    assert half_width(ci) == pytest.approx(ci.hi - ci.mean, rel=1e-14)

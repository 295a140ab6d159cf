"""Statistics helpers for claims: confidence intervals and log-log slope fits.

Every interval is two-sided at confidence ``level`` (default 0.95). SciPy is imported lazily (only
the t and beta quantiles need it), so importing this module is cheap.

Functions
---------
mean_ci          mean of a sample with a Student-t or normal confidence interval
proportion_ci    binomial proportion with a Wilson score or Clopper-Pearson (exact) interval
loglog_slope     ordinary least squares of log y on log x: slope, standard error, t interval
upper_end_le     the rule "an upper bound holds": the CI's upper end is <= the bound
lower_end_ge     the mirror rule "a lower bound holds"
half_width       half the width of a (lo, hi) interval

Seed ensembles: :data:`ENSEMBLE_LEVEL` is the level every counted Monte-Carlo interval uses, so that
a whole ensemble (:data:`DESIGN_INTERVALS` intervals x :data:`DESIGN_SEEDS` seeds) fails by chance
with probability at most :data:`FAMILY_ERROR` (Bonferroni).
"""
from __future__ import annotations

import math
import reprlib
from statistics import NormalDist
from typing import Any, NamedTuple, Sequence

import numpy as np

from numerics.validate import check_real

__all__ = [
    "DESIGN_INTERVALS",
    "DESIGN_SEEDS",
    "ENSEMBLE_LEVEL",
    "FAMILY_ERROR",
    "MeanCI",
    "ProportionCI",
    "SlopeFit",
    "half_width",
    "loglog_slope",
    "lower_end_ge",
    "mean_ci",
    "proportion_ci",
    "upper_end_le",
]


#: Chance of a false failure allowed anywhere in one seed ensemble (all claims, all seeds).
FAMILY_ERROR = 0.01
#: Design size of an ensemble: at most this many Monte-Carlo intervals in one run of all claims ...
DESIGN_INTERVALS = 200
#: ... times this many seeds (``run --seeds 20`` of the quick profile; the full profile uses 5).
DESIGN_SEEDS = 20
#: Two-sided level of every Monte-Carlo interval a claim counts (Bonferroni over the design):
#: ``1 - FAMILY_ERROR / (DESIGN_INTERVALS * DESIGN_SEEDS) = 1 - 2.5e-6`` (z = 4.71). A run of
#: 200 intervals x 20 seeds then fails by chance alone with probability at most 1%.
ENSEMBLE_LEVEL = 1.0 - FAMILY_ERROR / (DESIGN_INTERVALS * DESIGN_SEEDS)


def _interval(self) -> tuple[float, float]:
    """``(lo, hi)``: the confidence interval (the ``ci`` property of the result tuples below)."""
    return (self.lo, self.hi)


class MeanCI(NamedTuple):
    """Sample mean with a confidence interval.

    ``se`` is the standard error s / sqrt(n) (s with ddof=1); ``ci`` is ``(lo, hi)``.
    """

    mean: float
    lo: float
    hi: float
    se: float
    n: int
    level: float
    method: str

    ci = property(_interval)


class ProportionCI(NamedTuple):
    """Binomial proportion ``k / n`` with a confidence interval ``(lo, hi)`` in [0, 1]."""

    p: float
    lo: float
    hi: float
    k: int
    n: int
    level: float
    method: str

    ci = property(_interval)


class SlopeFit(NamedTuple):
    """OLS fit ``log y = intercept + slope * log x`` (natural logs).

    ``se`` is the usual OLS standard error of the slope, sqrt(SSR / (n - 2) / Sxx);
    ``(lo, hi)`` is the t interval with n - 2 degrees of freedom; ``r2`` the coefficient of
    determination; ``intercept_se`` the standard error of the intercept.
    """

    slope: float
    intercept: float
    se: float
    lo: float
    hi: float
    intercept_se: float
    r2: float
    n: int
    level: float

    ci = property(_interval)


def _check_level(level: float) -> float:
    if isinstance(level, (str, bytes)):
        raise ValueError(f"level must be a real number in (0, 1), got {level!r}")
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a real number in (0, 1), got {level!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not 0.5 + level / 2.0 < 1.0:  # the two-sided quantile of probability 1.0 is infinite
        raise ValueError(f"level must be in (0, 1) with 0.5 + level/2 < 1 in float64, got {level!r}")
    return level


def _z(level: float) -> float:
    """Two-sided standard normal quantile for confidence ``level``."""
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _t(level: float, df: int) -> float:
    """Two-sided Student-t quantile for confidence ``level`` with ``df`` degrees of freedom."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.5 + level / 2.0, df))


def _finite_1d(x: Any, name: str) -> np.ndarray:
    try:
        if isinstance(x, (str, bytes)) or np.iscomplexobj(np.asarray(x)):
            raise TypeError("strings and complex numbers are not converted")
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a one-dimensional array of real numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def mean_ci(x: Sequence[float] | np.ndarray, level: float = 0.95, method: str = "t") -> MeanCI:
    """Mean of a sample with a two-sided confidence interval.

    Parameters
    ----------
    x : array_like, shape (n,)
        Independent draws, n >= 2, all finite.
    level : float
        Confidence level in (0, 1).
    method : {"t", "normal"}
        ``"t"``: mean +- t_{n-1} * s / sqrt(n) (exact for Gaussian data); ``"normal"``: with the
        normal quantile (the CLT approximation, for large n).

    Returns
    -------
    MeanCI
    """
    level = _check_level(level)
    arr = _finite_1d(x, "x")
    n = arr.size
    if n < 2:
        raise ValueError(f"mean_ci needs at least 2 samples, got {n}")
    if method not in ("t", "normal"):
        raise ValueError(f"method must be 't' or 'normal', got {method!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(arr.mean())
        se = float(arr.std(ddof=1) / math.sqrt(n))
    if not (math.isfinite(mean) and math.isfinite(se)):
        raise ValueError("x: its mean or standard deviation overflows float64; rescale the sample")
    q = _t(level, n - 1) if method == "t" else _z(level)
    return MeanCI(mean, mean - q * se, mean + q * se, se, n, level, method)


def _check_counts(k: int, n: int) -> tuple[int, int]:
    try:
        bad = isinstance(k, (str, bytes)) or isinstance(n, (str, bytes)) or int(k) != k or int(n) != n
    except (TypeError, ValueError, OverflowError):
        bad = True
    if bad:
        raise ValueError(f"k and n must be integers, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"k, n: need n >= 1 and 0 <= k <= n, got k={k}, n={n}")
    return k, n


def _wilson(k: int, n: int, level: float) -> tuple[float, float]:
    z = _z(level)
    p = k / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # exact ends at k = 0 and k = n, and never exclude p (both hold in exact arithmetic)
    lo = 0.0 if k == 0 else min(p, max(0.0, center - half))
    hi = 1.0 if k == n else max(p, min(1.0, center + half))
    return lo, hi


def _clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    from scipy.stats import beta

    alpha = 1.0 - level
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2.0, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return lo, hi


def proportion_ci(k: int, n: int, level: float = 0.95, method: str = "wilson") -> ProportionCI:
    """Binomial proportion ``k / n`` with a two-sided confidence interval.

    Parameters
    ----------
    k, n : int
        Successes and trials, ``0 <= k <= n``, ``n >= 1``.
    level : float
        Confidence level in (0, 1).
    method : {"wilson", "clopper-pearson"}
        ``"wilson"``: the Wilson score interval without continuity correction (as
        ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``);
        ``"clopper-pearson"``: the exact interval from beta quantiles (coverage >= level;
        scipy's ``method="exact"``).

    Returns
    -------
    ProportionCI
    """
    level = _check_level(level)
    k, n = _check_counts(k, n)
    if method == "wilson":
        lo, hi = _wilson(k, n, level)
    elif method in ("clopper-pearson", "exact"):
        lo, hi = _clopper_pearson(k, n, level)
        method = "clopper-pearson"
    else:
        raise ValueError(f"method must be 'wilson' or 'clopper-pearson', got {method!r}")
    return ProportionCI(k / n, lo, hi, k, n, level, method)


def loglog_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                 level: float = 0.95) -> SlopeFit:
    """Fit ``log y = a + b log x`` by ordinary least squares; slope ``b`` with a t interval.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Positive, finite values; n >= 3 and at least two distinct x.
    level : float
        Confidence level of the slope interval (t with n - 2 degrees of freedom).

    Returns
    -------
    SlopeFit
        Natural logs; the slope does not depend on the base.

    Notes
    -----
    The interval treats the residuals on the log scale as independent with equal variance; for a
    rate measured from a deterministic sequence it describes the scatter about a straight line,
    not a sampling error.
    """
    level = _check_level(level)
    xa, ya = _finite_1d(x, "x"), _finite_1d(y, "y")
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    if np.any(xa <= 0) or np.any(ya <= 0):
        raise ValueError("x and y must be positive for a log-log fit")
    n = xa.size
    if n < 3:
        raise ValueError(f"loglog_slope needs at least 3 points for a standard error, got {n}")
    lx, ly = np.log(xa), np.log(ya)
    mx, my = lx.mean(), ly.mean()
    sxx = float(np.sum((lx - mx) ** 2))
    if sxx == 0.0:
        raise ValueError("x values are all equal; the slope is undefined")
    slope = float(np.sum((lx - mx) * (ly - my)) / sxx)
    intercept = float(my - slope * mx)
    ssr = float(np.sum((ly - intercept - slope * lx) ** 2))
    syy = float(np.sum((ly - my) ** 2))
    s2 = ssr / (n - 2)
    se = math.sqrt(s2 / sxx)
    intercept_se = math.sqrt(s2 * (1.0 / n + mx * mx / sxx))
    q = _t(level, n - 2)
    r2 = 1.0 - ssr / syy if syy > 0 else 1.0
    return SlopeFit(slope, intercept, se, slope - q * se, slope + q * se, intercept_se, r2, n,
                    level)


def _ends(interval: Any, name: str) -> tuple[float, float]:
    """``(lo, hi)`` of a pair, or of an object with ``lo``/``hi`` attributes, as floats (NaN and infinities
    kept); anything else (a string, a bool, a complex number, not a pair) raises a ValueError naming ``name``."""
    if hasattr(interval, "lo") and hasattr(interval, "hi"):
        lo, hi = interval.lo, interval.hi
    else:
        try:
            if isinstance(interval, (str, bytes)):
                raise TypeError("a string")
            lo, hi = interval
        except (TypeError, ValueError):
            raise ValueError(f"{name}: must be a (lo, hi) pair of real numbers or have lo/hi attributes, "
                             f"got {reprlib.repr(interval)}") from None
    return check_real(lo, f"{name} (lo)", finite=False), check_real(hi, f"{name} (hi)", finite=False)


def _rule_args(measured_ci: Any, bound: float, tol: float) -> tuple[float, float, float, float]:
    """``(lo, hi, bound, tol)`` of a CI rule as floats; NaN passes through (the rule is then False), a
    negative ``tol`` is refused."""
    lo, hi = _ends(measured_ci, "measured_ci")
    bound, tol = check_real(bound, "bound", finite=False), check_real(tol, "tol", finite=False)
    if tol < 0.0:
        raise ValueError(f"tol: must be >= 0, got {tol!r}")
    return lo, hi, bound, tol


def upper_end_le(measured_ci: Any, bound: float, tol: float = 0.0) -> bool:
    """The rule "the upper bound holds": the CI's upper end is <= ``bound + tol``.

    Parameters
    ----------
    measured_ci : (lo, hi) pair, or MeanCI / ProportionCI / SlopeFit
    bound : float
    tol : float
        Non-negative slack (e.g. quadrature error), default 0.

    Returns
    -------
    bool
        False if any value is NaN.

    Raises
    ------
    ValueError
        If a value is not a real number (a string, a bool, a complex number, None), ``measured_ci`` is
        not a pair, or ``tol < 0``; the message starts with the argument's name.
    """
    _, hi, bound, tol = _rule_args(measured_ci, bound, tol)
    return bool(hi <= bound + tol)


def lower_end_ge(measured_ci: Any, bound: float, tol: float = 0.0) -> bool:
    """The rule "the lower bound holds": the CI's lower end is >= ``bound - tol``.

    False if any value is NaN; raises as :func:`upper_end_le`.
    """
    lo, _, bound, tol = _rule_args(measured_ci, bound, tol)
    return bool(lo >= bound - tol)


def half_width(ci: Any) -> float:
    """Half the width of a ``(lo, hi)`` interval (or of an object with ``lo``/``hi``).

    NaN if an end is NaN, ``inf`` if an end is infinite; a finite interval wider than the largest float
    still gives its finite half-width.

    Raises
    ------
    ValueError
        If an end is not a real number, ``ci`` is not a pair, or ``lo > hi``; the message starts with ``ci``.
    """
    lo, hi = _ends(ci, "ci")
    if lo > hi:
        raise ValueError(f"ci: is reversed, lo={lo!r} > hi={hi!r}")
    width = hi - lo
    if math.isinf(width) and math.isfinite(lo) and math.isfinite(hi):
        return hi / 2.0 - lo / 2.0  # the width overflows float64, the half-width does not
    return width / 2.0

"""Verdict logic: when a measurement passes, what a claim run concludes, and baseline drift.

Pass rules (``m`` a :class:`~numerics.checks.claim.Measurement`; any NaN involved -> fail):

=========  ==================================================================================
kind       passes when
=========  ==================================================================================
equal      ``|measured - predicted| <= tol`` (a ``ci``, if given, is only recorded: fold the
           Monte-Carlo half-width into ``tol`` and say so in ``reason``)
le         ``U <= predicted + tol`` with ``U = ci[1]`` if a ci is given, else ``measured``
ge         ``L >= predicted - tol`` with ``L = ci[0]`` if a ci is given, else ``measured``
interval   ``lo - tol <= measured <= hi + tol``, and with a ci the *whole* ci lies inside
           ``[lo - tol, hi + tol]`` (conservative, like le/ge: the statement must hold at the
           stated confidence, not merely be compatible with it)
true       ``measured == 1.0`` (the predicted qualitative event happened; tol is ignored)
=========  ==================================================================================

Only *counted* measurements (``Measurement.counted``, the default) decide anything; informational
ones are recorded and shown.

Claim verdicts: :data:`HOLDS`, :data:`FAILS_AS_PREDICTED`, :data:`VIOLATED`, :data:`ERROR`,
:data:`UNFALSIFIABLE`, :data:`INTERRUPTED`, and over a seed ensemble :data:`UNSTABLE`.

Controls: a claim names its controls (realistic bugs). A control *flags* a counted measurement
when the measurement passes in the stated run and fails in the control's run (:func:`control_flags`).
The claim is UNFALSIFIABLE when some counted measurement is flagged by no control (it cannot fail
on any of the bugs the claim models) or some control flags no counted measurement (the claim misses
a bug it says it catches). Control statuses: :data:`CONTROL_FLAGGED` (good),
:data:`CONTROL_NOT_FLAGGED`, :data:`CONTROL_ERROR`, :data:`CONTROL_NONE`,
:data:`CONTROL_SKIPPED` (``--no-control``), :data:`CONTROL_NOT_RUN` (the stated run already failed).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from numerics.checks.claim import Measurement
from numerics.constants import UNIT_ROUNDOFF
from numerics.stats import half_width, lower_end_ge, upper_end_le

__all__ = [
    "CONTROL_ERROR",
    "CONTROL_FLAGGED",
    "CONTROL_NONE",
    "CONTROL_NOT_FLAGGED",
    "CONTROL_NOT_RUN",
    "CONTROL_SKIPPED",
    "ERROR",
    "FAILS_AS_PREDICTED",
    "FAILURES",
    "HOLDS",
    "INTERRUPTED",
    "REPRODUCIBILITY_REL",
    "UNFALSIFIABLE",
    "UNSTABLE",
    "VERDICTS",
    "VIOLATED",
    "all_pass",
    "drift",
    "control_flags",
    "drift_allowance",
    "ensemble_verdict",
    "final_verdict",
    "is_failure",
    "passes",
    "rule_text",
    "stated_verdict",
]

HOLDS = "holds"
FAILS_AS_PREDICTED = "fails-as-predicted"
VIOLATED = "VIOLATED"
ERROR = "ERROR"
UNFALSIFIABLE = "UNFALSIFIABLE"
INTERRUPTED = "INTERRUPTED"
UNSTABLE = "UNSTABLE"
#: Every verdict, in display order (UNSTABLE only describes a claim over a seed ensemble).
VERDICTS: tuple[str, ...] = (HOLDS, FAILS_AS_PREDICTED, VIOLATED, UNFALSIFIABLE, ERROR, INTERRUPTED,
                             UNSTABLE)
#: Verdicts that make a run fail (exit status 1).
FAILURES: frozenset[str] = frozenset({VIOLATED, ERROR, UNFALSIFIABLE, INTERRUPTED, UNSTABLE})

CONTROL_FLAGGED = "flagged"
CONTROL_NOT_FLAGGED = "NOT FLAGGED"
CONTROL_ERROR = "ERROR"
CONTROL_NONE = "none"
CONTROL_SKIPPED = "skipped"
CONTROL_NOT_RUN = "not run"


def _nan(*values: float | None) -> bool:
    return any(v is not None and math.isnan(v) for v in values)


def passes(m: Measurement) -> bool:
    """Whether measurement ``m`` passes its rule (see the module docstring). NaN never passes."""
    ci = m.ci or (None, None)
    if _nan(m.measured, m.predicted, m.tol, m.lo, m.hi, *ci):
        return False
    if m.kind == "equal":
        return abs(m.measured - m.predicted) <= m.tol
    if m.kind == "le":
        return upper_end_le(m.ci if m.ci else (m.measured, m.measured), m.predicted, m.tol)
    if m.kind == "ge":
        return lower_end_ge(m.ci if m.ci else (m.measured, m.measured), m.predicted, m.tol)
    if m.kind == "interval":
        lo, hi = m.lo - m.tol, m.hi + m.tol
        inside = lo <= m.measured <= hi
        return inside and (m.ci is None or (lo <= m.ci[0] and m.ci[1] <= hi))
    if m.kind == "true":
        return m.measured == 1.0
    raise ValueError(f"unknown measurement kind {m.kind!r}")


def _g(x: float | None) -> str:
    return "None" if x is None else f"{x:.6g}"


def rule_text(m: Measurement) -> str:
    """The rule of ``m`` with its numbers filled in, e.g. ``"U=0.0012 <= 0.002 + tol 1e-06"``."""
    if m.kind == "equal":
        return f"|{_g(m.measured)} - {_g(m.predicted)}| <= tol {_g(m.tol)}"
    if m.kind == "le":
        end = f"ci hi {_g(m.ci[1])}" if m.ci else _g(m.measured)
        return f"{end} <= {_g(m.predicted)} + tol {_g(m.tol)}"
    if m.kind == "ge":
        end = f"ci lo {_g(m.ci[0])}" if m.ci else _g(m.measured)
        return f"{end} >= {_g(m.predicted)} - tol {_g(m.tol)}"
    if m.kind == "interval":
        what = f"ci [{_g(m.ci[0])}, {_g(m.ci[1])}]" if m.ci else _g(m.measured)
        return f"{what} within [{_g(m.lo)}, {_g(m.hi)}] +- tol {_g(m.tol)}"
    return f"event happened: measured {_g(m.measured)} == 1"


def stated_verdict(expect: str, passed: bool) -> str:
    """Verdict of the stated (non-broken) run from whether all its measurements ``passed``."""
    if not passed:
        return VIOLATED
    return HOLDS if expect == "holds" else FAILS_AS_PREDICTED


def final_verdict(stated: str, control: str) -> str:
    """Combine the stated run's verdict with the negative control's status.

    A control that was not flagged makes a passing claim :data:`UNFALSIFIABLE`; a control that
    raised makes it :data:`ERROR`. A failed stated run keeps its own verdict.
    """
    if stated in FAILURES:
        return stated
    if control == CONTROL_NOT_FLAGGED:
        return UNFALSIFIABLE
    if control == CONTROL_ERROR:
        return ERROR
    return stated


def control_flags(stated: Iterable[Measurement], control: Iterable[Measurement]) -> list[str]:
    """Names of the counted measurements of ``stated`` that pass there and fail in ``control``.

    A measurement the control's run does not return is not flagged by it (the control must
    produce the measurement to show that it moves it).
    """
    moved = {m.name for m in control if not passes(m)}
    return [m.name for m in stated if m.counted and passes(m) and m.name in moved]


def ensemble_verdict(verdicts: Iterable[str]) -> str:
    """The verdict of a claim over seeds: the common one, or :data:`UNSTABLE` if they differ."""
    distinct = set(verdicts)
    if not distinct:
        raise ValueError("ensemble_verdict needs at least one verdict")
    return distinct.pop() if len(distinct) == 1 else UNSTABLE


def is_failure(verdict: str) -> bool:
    """Whether ``verdict`` makes the run fail."""
    return verdict in FAILURES


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


#: Relative reproducibility floor of baseline drift: sqrt(u) = 2^-26.5 ~ 1.05e-8 (see drift()).
REPRODUCIBILITY_REL = math.sqrt(UNIT_ROUNDOFF)


def _drift_tol(extra: Any) -> float:
    """``extra["drift_tol"]`` as a float >= 0; 0 when absent or not a usable number."""
    try:
        value = float(extra.get("drift_tol", 0.0)) if extra else 0.0
    except (TypeError, ValueError, OverflowError, AttributeError):
        return 0.0
    return value if value >= 0.0 else 0.0  # NaN and negatives count as absent


def drift_allowance(current: Measurement, base: float) -> float:
    """How far ``current.measured`` may move from the baseline value ``base`` (see drift())."""
    allowed = current.tol + (half_width(current.ci) if current.ci else 0.0)
    allowed = max(allowed, _drift_tol(current.extra))
    scale = max((abs(v) for v in (base, current.measured) if math.isfinite(v)), default=0.0)
    return max(allowed, REPRODUCIBILITY_REL * scale)


def drift(current: Measurement, baseline: Mapping[str, Any]) -> dict[str, float] | None:
    """Compare a measurement with its record in a baseline report.

    Parameters
    ----------
    current : Measurement
    baseline : mapping
        The baseline's measurement record (needs ``"measured"``, a float; NaN allowed).

    Returns
    -------
    dict or None
        ``None`` if ``|measured - baseline| <= allowed``, otherwise a record
        ``{"baseline", "measured", "delta", "allowed"}``. Two NaNs (or two equal infinities) agree;
        NaN against a number drifts. ``allowed`` is the largest of

        - ``tol + h``, ``h`` the current ci's half-width (0 without a ci): what the claim's own
          check already tolerates;
        - ``current.extra["drift_tol"]`` (0 if absent): a claim whose value is itself rounding noise
          (e.g. an error-to-bound ratio near 0) states how much it may move between platforms;
        - ``sqrt(u) * max(|baseline|, |measured|)`` (:data:`REPRODUCIBILITY_REL`, u = 2^-53, so
          about 1.05e-8 relative): the cross-platform reproducibility floor.

    Notes
    -----
    The floor is what makes a baseline stored on one machine usable on another. The values are
    float64 results of long reductions (sums over points and grid nodes, BLAS dot products and
    matrix products, Numba reductions), and the order of those sums depends on the BLAS kernel
    (block sizes, AVX2 or AVX-512 width), the CPU and the thread count. Two orders of a sum of n
    terms each lie within ``(n - 1) u sum|x_i|`` of the exact sum, so they differ by up to
    ``2 (n - 1) u kappa |value|`` with ``kappa = sum|x_i| / |sum x_i|``; later steps (a max over
    points, a ratio, a log-log slope) carry that over with their own condition numbers. The harness
    knows neither n nor kappa of a measurement, so no ``k u |value|`` with one k is an honest bound
    for all of them; measurements whose tol is 0 (bounds such as ``max (KL - bound) <= 0``) were
    seen to move by up to 4e-15 relative (about 35 ulp) between two machines. ``sqrt(u)`` relative
    covers every reordering with ``2 n kappa <= u^(-1/2) ~ 9.5e7`` (e.g. a million terms with kappa
    up to 47), and it is far below what the guard is for: a changed formula, parameter, grid, seed
    or sampler typically moves a value by its discretisation or Monte-Carlo error, many orders of
    magnitude more (a 1e-6 relative change is still reported).

    The baseline is a regression guard, not a verdict: every measurement is first judged against
    its own derived tolerance on the machine that runs it. The floor only stops the guard from
    reporting float64 reordering as a change; it never makes a failing measurement pass.
    """
    base = float(baseline["measured"])
    now = current.measured
    if _same(base, now):
        return None
    allowed = drift_allowance(current, base)
    delta = now - base
    if not math.isnan(delta) and abs(delta) <= allowed:
        return None
    return {"baseline": base, "measured": now, "delta": delta, "allowed": allowed}


def all_pass(flags: Iterable[bool]) -> bool:
    """``all`` that is explicit about an empty list being a failure for claims (never vacuous)."""
    flags = list(flags)
    return bool(flags) and all(flags)

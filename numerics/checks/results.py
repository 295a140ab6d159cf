"""What a run produces: checked measurements, claim results and the run report (plain data).

Both :mod:`numerics.checks.runner` (which fills them in) and :mod:`numerics.checks.report` (which
writes them out) import these classes from here, so the two modules do not import each other:
``runner -> report -> results``.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from numerics.checks import verdict as V
from numerics.checks.claim import Claim, Measurement

__all__ = ["CheckedMeasurement", "ClaimResult", "RunReport", "utc_now"]


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-01-01T00:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CheckedMeasurement:
    """A measurement with its pass flag and its rule with the numbers filled in."""

    measurement: Measurement
    passed: bool
    rule: str

    @classmethod
    def of(cls, m: Measurement) -> "CheckedMeasurement":
        return cls(m, V.passes(m), V.rule_text(m))


@dataclass
class ClaimResult:
    """The outcome of one claim: verdict, control status, measurements, errors, drift, figure."""

    claim: Claim
    profile: str
    seed: int
    verdict: str
    stated_verdict: str
    control: str
    measurements: list[CheckedMeasurement] = field(default_factory=list)
    control_measurements: list[CheckedMeasurement] = field(default_factory=list)
    error: str | None = None
    control_error: str | None = None
    interrupted_by: str | None = None
    wall_time: float = 0.0
    control_wall_time: float | None = None
    figure: str | None = None
    figure_error: str | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    figure_obj: Any = field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        """True for a failing verdict or any baseline drift."""
        return V.is_failure(self.verdict) or bool(self.drift)


@dataclass
class RunReport:
    """A run: settings, status, and the results of the claims that finished.

    ``status`` is ``"running"``, ``"complete"``, ``"interrupted"`` (Ctrl-C / SystemExit) or
    ``"failed"`` (the output directory could not be written; ``error`` says why).
    """

    profile: str
    seed: int
    control: bool
    planned: list[str]
    selection: list[str] | None = None
    out_dir: str | None = None
    baseline: dict[str, Any] | None = None
    status: str = "running"
    interrupted_by: str | None = None
    error: str | None = None
    started_utc: str = field(default_factory=utc_now)
    finished_utc: str | None = None
    wall_time: float = 0.0
    results: list[ClaimResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True exactly when the run completed and no claim failed or drifted."""
        return self.status == "complete" and not any(r.failed for r in self.results)

    def exit_code(self) -> int:
        """0 if :attr:`ok`; 130 after a KeyboardInterrupt; 1 otherwise."""
        if self.ok:
            return 0
        if self.status == "interrupted" and (self.interrupted_by or "").startswith("Keyboard"):
            return 130
        return 1

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

__all__ = ["CheckedMeasurement", "ClaimResult", "ControlRun", "RunReport", "utc_now"]


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
class ControlRun:
    """One control's run: its name, the bug it models, what it measured and what it flagged.

    ``flagged`` lists the counted measurements that passed in the stated run and fail here (or
    are NaN here): the ones this bug moves across their pass line. ``status`` is
    :data:`~numerics.checks.verdict.CONTROL_FLAGGED` when that list is not empty,
    ``CONTROL_NOT_FLAGGED`` when it is, ``CONTROL_ERROR`` when the run raised.
    """

    name: str
    description: str
    status: str
    measurements: list[CheckedMeasurement] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    error: str | None = None
    wall_time: float = 0.0
    plot: Any = field(default=None, repr=False, compare=False)
    #: the Numba compilations of this run (:class:`numerics.checks.compile_log.Compiled`)
    compiled: list[Any] = field(default_factory=list, repr=False, compare=False)


@dataclass
class ClaimResult:
    """The outcome of one claim at one seed: verdict, controls, measurements, errors, drift, figure.

    ``control`` summarises the controls: ``"flagged"`` when every control flagged a counted
    measurement and every counted measurement was flagged by some control (see :attr:`matrix`),
    ``"NOT FLAGGED"`` otherwise (the claim is UNFALSIFIABLE), ``"ERROR"`` if a control raised.
    ``used_seed`` is False when no run of the claim read the seed (seed-independent); a seed
    ensemble then reuses the result for every seed (``reused_from`` names the seed it ran at).
    """

    claim: Claim
    profile: str
    seed: int
    verdict: str
    stated_verdict: str
    control: str
    measurements: list[CheckedMeasurement] = field(default_factory=list)
    controls: list[ControlRun] = field(default_factory=list)
    error: str | None = None
    interrupted_by: str | None = None
    wall_time: float = 0.0
    figure: str | None = None
    figure_kind: str | None = None
    figure_error: str | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    used_seed: bool = True
    reused_from: int | None = None
    figure_obj: Any = field(default=None, repr=False, compare=False)
    plot: Any = field(default=None, repr=False, compare=False)
    #: the Numba compilations of the stated run (:class:`numerics.checks.compile_log.Compiled`)
    compiled: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def counted(self) -> list[str]:
        """Names of the stated run's counted measurements."""
        return [c.measurement.name for c in self.measurements if c.measurement.counted]

    @property
    def matrix(self) -> dict[str, dict[str, bool]]:
        """The control matrix: counted measurement -> {control name: flagged by it}."""
        return {name: {cr.name: name in cr.flagged for cr in self.controls}
                for name in self.counted}

    @property
    def unflagged(self) -> list[str]:
        """Counted measurements that no control flagged (empty when no control ran)."""
        if not self.controls:
            return []
        return [name for name, row in self.matrix.items() if not any(row.values())]

    @property
    def idle_controls(self) -> list[str]:
        """Controls that ran without error and flagged no counted measurement."""
        return [cr.name for cr in self.controls if cr.error is None and not cr.flagged]

    @property
    def control_wall_time(self) -> float | None:
        """Total wall time of the controls (None when none ran)."""
        return sum(cr.wall_time for cr in self.controls) if self.controls else None

    @property
    def compile_time(self) -> float:
        """Seconds spent compiling Numba functions in the stated run and the controls (0 from a warm cache)."""
        return sum(c.seconds for c in self.all_compiled)

    @property
    def all_compiled(self) -> list[Any]:
        """The compilations of the stated run followed by those of each control."""
        return [*self.compiled, *(c for cr in self.controls for c in cr.compiled)]

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
    seeds: list[int] | None = None
    #: The report writer's encoded claim entries (:func:`numerics.checks.report.report_json`), by result ``id``.
    json_cache: dict[int, tuple] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ensemble(self) -> dict[str, dict[str, Any]]:
        """Per claim id: ``{"verdicts": {seed: verdict}, "verdict": ...}`` over the seeds run.

        The claim's verdict is the common verdict when every seed gave the same one, and
        :data:`~numerics.checks.verdict.UNSTABLE` when the verdict changed with the seed.
        """
        out: dict[str, dict[str, Any]] = {}
        for r in self.results:
            entry = out.setdefault(r.claim.id, {"verdicts": {}, "seed_independent": not r.used_seed})
            entry["verdicts"][r.seed] = r.verdict
        for entry in out.values():
            entry["verdict"] = V.ensemble_verdict(entry["verdicts"].values())
        return out

    @property
    def ok(self) -> bool:
        """True exactly when the run completed, no claim failed or drifted, none is UNSTABLE."""
        return (self.status == "complete" and not any(r.failed for r in self.results)
                and not any(e["verdict"] == V.UNSTABLE for e in self.ensemble.values()))

    def exit_code(self) -> int:
        """0 if :attr:`ok`; 130 after a KeyboardInterrupt (Ctrl-C), 143 after SIGTERM; 1 otherwise."""
        if self.ok:
            return 0
        if self.status == "interrupted" and (self.interrupted_by or "").startswith("Keyboard"):
            return 130
        if self.status == "interrupted" and self.interrupted_by == "SIGTERM":
            return 143
        return 1

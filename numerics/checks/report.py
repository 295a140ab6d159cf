"""Reports: ``report.json``, ``report.md``, one PNG per claim, baselines.

Every file is written atomically (:func:`numerics.atomic.atomic_write_bytes`): to a temporary file
in the same directory, flushed and fsynced, then ``os.replace``-d over the target, so a reader never
sees a partial file and an interrupted write leaves the previous version.

``report.json`` schema (``"schema": "guidance-verify/report/2"``) is documented in
:func:`report_dict`. JSON has no NaN or infinity: non-finite floats are stored as the strings
``"nan"``, ``"inf"``, ``"-inf"`` (``float()`` reads them back), so the file is strict JSON.

matplotlib is imported lazily, with the Agg canvas and no pyplot state.
"""
from __future__ import annotations

import functools
import io
import json
import math
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from numerics.atomic import atomic_write_bytes, atomic_write_text
from numerics.checks import plots
from numerics.checks import verdict as V
from numerics.checks.compile_log import merge_compiled
from numerics.checks.results import CheckedMeasurement, ClaimResult, ControlRun, RunReport

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "SCHEMA",
    "Baseline",
    "BaselineError",
    "clear_outputs",
    "control_text",
    "default_figure",
    "figure_relpath",
    "jsonable",
    "flagged_by_text",
    "load_baseline",
    "matrix_size",
    "matrix_text",
    "measured_text",
    "predicted_text",
    "render_markdown",
    "report_dict",
    "claim_figure_png",
    "save_claim_figure",
    "store_claim_figure",
    "science_figure",
    "verdict_line",
    "write_report",
]

SCHEMA = "guidance-verify/report/2"


# --------------------------------------------------------------------------- JSON


#: Containers nested deeper than this are stored as a marker string (no RecursionError).
MAX_DEPTH = 100
#: Longest ``repr`` of an unknown object kept in a report (longer ones are cut, marked "...").
MAX_REPR = 10_000


def jsonable(obj: Any) -> Any:
    """Convert ``obj`` to strict-JSON-compatible values; never raises.

    Non-finite floats become ``"nan"`` / ``"inf"`` / ``"-inf"``; NumPy scalars and arrays become
    Python numbers and lists; tuples and sets become lists; mapping keys become strings; anything
    else unknown becomes its ``repr`` (cut at :data:`MAX_REPR` characters). What JSON cannot hold
    becomes a marker string in angle brackets, so that one odd value (a claim's ``extra``) can never
    make the whole report unwritable:

    - a container that contains itself: ``"<cycle: dict>"``;
    - containers nested deeper than :data:`MAX_DEPTH`: ``"<list nested deeper than 100 levels>"``;
    - an int beyond the float range (over about 308 digits, including ints too long for ``str``):
      ``"<int too large for float: ~1.234568e+4299>"``;
    - an object whose conversion or ``repr`` raises: ``"<unserialisable T: ExcType>"``.
    """
    return _jsonable(obj, 0, set())


def _big_int(value: int) -> str:
    exp10 = math.log10(abs(value))  # exact enough for any int size (no str conversion)
    exp = math.floor(exp10)
    sign = "-" if value < 0 else ""
    return f"<int too large for float: ~{sign}{10 ** (exp10 - exp):.6f}e+{exp}>"


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    try:
        return str(k) if not isinstance(k, int) or _fits_float(k) else _big_int(k)
    except Exception:  # noqa: BLE001 - a bad __str__ must not stop the report
        return f"<key {type(k).__name__}>"


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _repr(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _jsonable(obj: Any, depth: int, path: set[int]) -> Any:
    try:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return int(obj) if _fits_float(obj) else _big_int(obj)
        if isinstance(obj, float):
            obj = float(obj)
            return obj if math.isfinite(obj) else ("nan" if math.isnan(obj) else
                                                   ("inf" if obj > 0 else "-inf"))
        if depth >= MAX_DEPTH:
            return f"<{type(obj).__name__} nested deeper than {MAX_DEPTH} levels>"
        if isinstance(obj, (Mapping, list, tuple, set, frozenset)):
            if id(obj) in path:
                return f"<cycle: {type(obj).__name__}>"
            path.add(id(obj))
            try:
                if isinstance(obj, Mapping):
                    return {_key(k): _jsonable(v, depth + 1, path) for k, v in obj.items()}
                return [_jsonable(v, depth + 1, path) for v in obj]
            finally:
                path.discard(id(obj))
        if hasattr(obj, "tolist"):  # NumPy scalars and arrays
            return _jsonable(obj.tolist(), depth + 1, path)
        return _repr(obj)
    except Exception as exc:  # noqa: BLE001 - one odd value must not stop the report
        return f"<unserialisable {type(obj).__name__}: {type(exc).__name__}>"


def _measurement_dict(c: CheckedMeasurement) -> dict[str, Any]:
    m = c.measurement
    return {"name": m.name, "kind": m.kind, "measured": m.measured, "predicted": m.predicted,
            "tol": m.tol, "ci": list(m.ci) if m.ci else None, "lo": m.lo, "hi": m.hi,
            "reason": m.reason, "counted": m.counted, "passed": c.passed, "rule": c.rule,
            "extra": m.extra}


def _control_dict(cr: ControlRun) -> dict[str, Any]:
    return {"name": cr.name, "description": cr.description, "status": cr.status,
            "flagged": cr.flagged, "error": cr.error, "wall_time_s": cr.wall_time,
            "compile_s": sum(c.seconds for c in cr.compiled),
            "measurements": [_measurement_dict(m) for m in cr.measurements]}


def _params(r: ClaimResult) -> Any:
    try:
        return r.claim.params(r.profile)
    except Exception as exc:  # noqa: BLE001 - e.g. a parameter deepcopy cannot copy
        return f"<params not copyable: {type(exc).__name__}: {exc}>"


def _safe_claim_dict(r: ClaimResult) -> dict[str, Any]:
    """:func:`_claim_dict`, or a minimal entry if building it raises (one claim never stops the report)."""
    try:
        return _claim_dict(r)
    except Exception as exc:  # noqa: BLE001
        return {"id": str(r.claim.id), "seed": r.seed, "verdict": r.verdict, "failed": r.failed,
                "measurements": [], "controls": [], "matrix": {}, "drift": [],
                "report_error": f"{type(exc).__name__}: {exc}"}


def _claim_dict(r: ClaimResult) -> dict[str, Any]:
    c = r.claim
    return {
        "id": c.id, "paper": c.paper, "statement": c.statement, "note": c.note,
        "provenance": c.provenance, "expect": c.expect, "module": c.module,
        "params": _params(r), "seed": r.seed, "used_seed": r.used_seed,
        "reused_from": r.reused_from,
        "verdict": r.verdict, "stated_verdict": r.stated_verdict, "control": r.control,
        "control_reason": c.control_reason or None, "failed": r.failed,
        "measurements": [_measurement_dict(m) for m in r.measurements],
        "controls": [_control_dict(cr) for cr in r.controls],
        "matrix": r.matrix, "unflagged": r.unflagged, "idle_controls": r.idle_controls,
        "error": r.error, "interrupted_by": r.interrupted_by,
        "wall_time_s": r.wall_time, "control_wall_time_s": r.control_wall_time,
        "compile_s": r.compile_time, "compiled": merge_compiled(r.all_compiled),
        "figure": r.figure, "figure_kind": r.figure_kind, "figure_error": r.figure_error,
        "drift": r.drift,
    }


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    import numpy

    return {"python": sys.version.split()[0], "numpy": numpy.__version__,
            "platform": platform.platform()}


def _summary(run: RunReport) -> dict[str, Any]:
    counts = {v: 0 for v in V.VERDICTS}
    for r in run.results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    ensemble = run.ensemble
    return {"n_planned": len(run.planned), "n_finished": len(ensemble), "counts": counts,
            "n_runs": len(run.results), "n_drift": sum(len(r.drift) for r in run.results),
            "failed": sorted({r.claim.id for r in run.results if r.failed}
                             | {k for k, e in ensemble.items() if e["verdict"] == V.UNSTABLE}),
            "unstable": [k for k, e in ensemble.items() if e["verdict"] == V.UNSTABLE],
            "matrix": matrix_size(run), "ok": run.ok}


def matrix_size(run: RunReport) -> dict[str, int]:
    """Size of the control matrix at the first seed: measurements, controls, cells, flagged cells."""
    first = [r for r in run.results if r.reused_from is None and r.seed == run.seed]
    rows = sum(len(r.counted) for r in first if r.controls)
    controls = sum(len(r.controls) for r in first)
    cells = sum(len(r.counted) * len(r.controls) for r in first)
    flagged = sum(len(cr.flagged) for r in first for cr in r.controls)
    return {"counted_measurements": rows, "controls": controls, "cells": cells,
            "flagged_cells": flagged,
            "informational": sum(len(r.measurements) - len(r.counted) for r in first)}


def report_dict(run: RunReport, claims: bool = True) -> dict[str, Any]:
    """The JSON document of a run (before :func:`jsonable`); ``claims=False``: with an empty ``claims`` list (the
    writer encodes the entries apart, :func:`report_json`).

    Schema ``guidance-verify/report/2``::

        {
          "schema": "guidance-verify/report/2",
          "status": "running" | "complete" | "interrupted" | "failed",
          "interrupted_by": null | "KeyboardInterrupt" | "SystemExit(<code>)",
          "profile": "quick" | "full" | "reduced", "seed": int (the first seed),
          "seeds": null | [int, ...] (a seed ensemble, --seeds), "control": bool,
          "selection": null | [glob, ...],
          "started_utc": ISO-8601, "finished_utc": null | ISO-8601, "wall_time_s": float,
          "versions": {"python": str, "numpy": str, "platform": str},
          "baseline": null | {"path": str, "profile": str|null, "seed": int|null,
                              "started_utc": str|null},
          "planned": [claim id, ...],
          "summary": {"n_planned": int, "n_finished": int (claims), "n_runs": int (claim x seed),
                      "counts": {verdict: int, ...} (over runs), "n_drift": int,
                      "failed": [claim id, ...], "unstable": [claim id, ...],
                      "matrix": {"counted_measurements", "controls", "cells", "flagged_cells",
                                 "informational": int}, "ok": bool},
          "error": null | str (why the run failed: a report or figure could not be written),
          "ensemble": null | {claim id: {"verdicts": {seed: verdict}, "verdict": verdict or
                                         "UNSTABLE", "seed_independent": bool}},
          "claims": [   # one entry per claim and seed
            {"id", "paper", "statement", "note", "provenance", "expect", "module": str,
             "params": {...}, "seed": int, "used_seed": bool, "reused_from": null | int,
             "verdict": "holds" | "fails-as-predicted" | "VIOLATED" | "UNFALSIFIABLE"
                        | "ERROR" | "INTERRUPTED",
             "stated_verdict": verdict of the stated run before the controls,
             "control": "flagged" | "NOT FLAGGED" | "ERROR" | "none" | "skipped" | "not run",
             "control_reason": str | null, "failed": bool,
             "measurements": [M, ...],
             "controls": [{"name", "description", "status", "flagged": [name, ...],
                           "error": str | null, "wall_time_s": float,
                           "compile_s": float (Numba compilation inside this control run),
                           "measurements": [M, ...]}],
             "matrix": {counted measurement: {control: bool (flagged)}},
             "unflagged": [measurement, ...], "idle_controls": [control, ...],
             "error": traceback str | null, "interrupted_by": str | null,
             "wall_time_s": float, "control_wall_time_s": float | null,
             "compile_s": float (Numba compilation inside the stated run and the controls; 0 from a
                          warm cache), "compiled": [{"function": "module.qualname", "signatures": int,
                          "s": float (exclusive)}, ...] (costliest first; see compile_log),
             "figure": "figures/<id>.png" | null, "figure_error": str | null,
             "figure_kind": "science" | "own" | "default" | null (recorded panels with the
                            controls' curves, the claim's own drawing, or the default picture),
             "drift": [{"measurement": name, "baseline": float, "measured": float,
                        "delta": float, "allowed": float}, ...]}
          ]
        }
        M = {"name", "kind", "measured", "predicted", "tol", "ci": [lo, hi] | null,
             "lo", "hi", "reason", "counted": bool, "passed": bool, "rule": str, "extra": {...}}

    ``status`` is ``"running"`` while the run is in progress (a file left in that state was cut
    off hard, e.g. by SIGKILL, or the disk filled up and not even the failure could be written);
    ``"failed"`` means writing into the output directory failed (``error`` says why) and the
    remaining claims were not run. ``summary.ok`` is true exactly when the exit status is 0. A claim
    entry whose own conversion failed is cut down to ``id``, ``verdict``, ``failed`` and
    ``report_error``.
    """
    return {
        "schema": SCHEMA, "status": run.status, "interrupted_by": run.interrupted_by,
        "profile": run.profile, "seed": run.seed, "seeds": run.seeds, "control": run.control,
        "selection": run.selection, "started_utc": run.started_utc,
        "finished_utc": run.finished_utc, "wall_time_s": run.wall_time,
        "versions": _versions(), "baseline": run.baseline, "planned": run.planned,
        "summary": _summary(run), "error": run.error,
        "ensemble": run.ensemble if run.seeds else None,
        "claims": [_safe_claim_dict(r) for r in run.results] if claims else [],
    }


def write_report(run: RunReport, out_dir: str | os.PathLike[str]) -> None:
    """Write ``report.json`` and ``report.md`` of ``run`` into ``out_dir`` atomically."""
    out = Path(out_dir)
    atomic_write_text(out / "report.json", report_json(run) + "\n")
    atomic_write_text(out / "report.md", render_markdown(run))


def report_json(run: RunReport) -> str:
    """``json.dumps(jsonable(report_dict(run)), indent=2, allow_nan=False)``, the same text, with each claim entry's
    text kept between writes (:func:`_claim_json`): a run rewrites its report after each claim, and encoding every
    finished claim again made the writes grow quadratically (a full profile's last write: 0.25 s)."""
    doc = report_dict(run, claims=False)
    text = json.dumps(jsonable(doc), indent=2, allow_nan=False)
    if not run.results:
        return text
    tail = '"claims": []\n}'
    assert text.endswith(tail)  # report_dict puts "claims" last
    entries = ",\n".join(_claim_json(r, run.json_cache) for r in run.results)
    return text[:-len(tail)] + '"claims": [\n' + entries + "\n  ]\n}"


def _claim_json(r: ClaimResult, cache: dict[int, tuple]) -> str:
    """The indented JSON text of ``r``'s entry in ``report.json`` (its lines in the whole document's encoding: four
    spaces in, converted by :func:`jsonable` at the entry's depth), kept in ``cache`` (by ``id``: ``(r, state,
    text)``, ``r`` held so that its ``id`` is not reused) and encoded again only when a field that changes after the
    claim finished has changed: its figure (set by the figure pool when drawn), drift or verdict."""
    state = (r.verdict, r.failed, r.figure, r.figure_kind, r.figure_error, r.error, r.interrupted_by,
             len(r.drift), len(r.measurements), len(r.controls))
    hit = cache.get(id(r))
    if hit is not None and hit[0] is r and hit[1] == state:
        return hit[2]
    body = json.dumps(_jsonable(_safe_claim_dict(r), 2, set()), indent=2, allow_nan=False)
    text = "\n".join("    " + line for line in body.split("\n"))
    cache[id(r)] = (r, state, text)
    return text


# --------------------------------------------------------------------------- Markdown


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def predicted_text(m: Any) -> str:
    """The prediction of a measurement as shown in tables: ``"<= 0.1"``, ``"[0, 1]"``, ..."""
    # Same dispatch on kind as verdict.rule_text, kept apart: this is the short table cell (the
    # prediction only, 4 digits); rule_text is the whole inequality with measured value and tol.
    if m.kind == "le":
        return f"<= {_num(m.predicted)}"
    if m.kind == "ge":
        return f">= {_num(m.predicted)}"
    if m.kind == "interval":
        return f"[{_num(m.lo)}, {_num(m.hi)}]"
    if m.kind == "true":
        return "event"
    return _num(m.predicted)


def measured_text(m: Any) -> str:
    """The measured value as shown in tables, with its ci if any."""
    if m.ci:
        return f"{_num(m.measured)} [{_num(m.ci[0])}, {_num(m.ci[1])}]"
    return _num(m.measured)


def control_text(r: ClaimResult) -> str:
    """Control status for tables: ``flagged 3/3`` (controls that flag something / controls), what
    is not flagged, or ``none`` with its reason."""
    if r.control == V.CONTROL_NONE:
        return f"none ({r.claim.control_reason})"
    if not r.controls:
        return r.control
    n_ok = sum(cr.status == V.CONTROL_FLAGGED for cr in r.controls)
    text = f"{r.control} {n_ok}/{len(r.controls)}"
    if r.unflagged:
        text += "; no control flags: " + ", ".join(r.unflagged)
    if r.idle_controls:
        text += "; flags nothing: " + ", ".join(r.idle_controls)
    errors = [cr.name for cr in r.controls if cr.status == V.CONTROL_ERROR]
    if errors:
        text += "; raised: " + ", ".join(errors)
    return text


def flagged_by_text(r: ClaimResult, m: Any) -> str:
    """One row of the control matrix: the controls that flag measurement ``m`` of ``r``.

    ``"info"`` for an informational measurement, ``"NONE"`` when controls ran and none flags it,
    ``""`` when no control ran.
    """
    if not m.counted:
        return "info"
    if not r.controls:
        return ""
    names = [cr.name for cr in r.controls if m.name in cr.flagged]
    return ", ".join(names) if names else "NONE"


def matrix_text(r: ClaimResult) -> list[str]:
    """The control matrix of ``r`` as Markdown: counted measurement x control, X where flagged."""
    if not r.controls:
        return []
    names = [cr.name for cr in r.controls]
    lines = ["Control matrix (X: the control moves the measurement across its pass line):", "",
             "| measurement | " + " | ".join(_cell(n) for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for meas, row in r.matrix.items():
        cells = ["X" if row[n] else ("**-**" if not any(row.values()) else "-") for n in names]
        lines.append(f"| {_cell(meas)} | " + " | ".join(cells) + " |")
    lines += ["", "Controls (bugs modelled):", ""]
    lines += [f"- `{cr.name}`: {cr.description} ({cr.status}"
              + (f", {cr.wall_time:.2f} s)" if cr.wall_time else ")") for cr in r.controls]
    return lines + [""]


def _md_summary(run: RunReport) -> list[str]:
    s = _summary(run)
    counts = ", ".join(f"{n} {v}" for v, n in s["counts"].items() if n)
    base = f" · baseline `{run.baseline['path']}`" if run.baseline else ""
    return [
        "# guidance-verify report", "",
        f"status **{run.status}**"
        + (f" ({run.interrupted_by})" if run.interrupted_by else "")
        + f" · profile `{run.profile}` · "
        + (f"seeds {_seed_range(run.seeds)}" if run.seeds else f"seed {run.seed}") + " · control "
        + ("on" if run.control else "off") + base,
        f"started {run.started_utc} · wall time {run.wall_time:.1f} s · "
        f"{s['n_finished']}/{s['n_planned']} claims"
        + (f" ({s['n_runs']} claim x seed runs)" if run.seeds else "")
        + f": {counts or 'none finished'}"
        + (f" · **{len(s['unstable'])} UNSTABLE**" if s["unstable"] else "")
        + (f" · **{s['n_drift']} drifted**" if s["n_drift"] else ""),
        _matrix_line(s["matrix"]), "",
        "**OK**" if run.ok else "**NOT OK**", "",
    ]


def _matrix_line(size: Mapping[str, int]) -> str:
    return (f"control matrix: {size['counted_measurements']} counted measurements x their "
            f"claims' controls ({size['controls']} controls), {size['flagged_cells']} of "
            f"{size['cells']} cells flagged; {size['informational']} informational measurements")


def _md_table(run: RunReport) -> list[str]:
    lines = ["| claim | measurement | measured | predicted | tol | pass | flagged by | verdict | control |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in run.results:
        if r.reused_from is not None or r.seed != run.seed:
            continue  # the table shows the first seed; the ensemble table shows the others
        rows = r.measurements or [None]
        for i, c in enumerate(rows):
            head = (f"[{r.claim.id}](#{r.claim.id.replace('.', '')})", r.verdict,
                    control_text(r)) if i == 0 else ("", "", "")
            if c is None:
                cells = ["", "", "", "", "", ""]
            else:
                m = c.measurement
                cells = [m.name + ("" if m.counted else " (info)"), measured_text(m),
                         predicted_text(m), _num(m.tol), "yes" if c.passed else "**no**",
                         flagged_by_text(r, m)]
            lines.append("| " + " | ".join(_cell(x) for x in
                                           (head[0], *cells, head[1], head[2])) + " |")
    return lines + [""]


def _md_measurements(title: str, checked: list[CheckedMeasurement]) -> list[str]:
    if not checked:
        return []
    lines = [f"{title}:", "", "| measurement | rule | pass | tolerance reason |", "|---|---|---|---|"]
    for c in checked:
        info = "" if c.measurement.counted else " (informational)"
        lines.append(f"| {_cell(c.measurement.name)}{info} | {_cell(c.rule)} | "
                     f"{'yes' if c.passed else '**no**'} | {_cell(c.measurement.reason)} |")
    return lines + [""]


def _compile_text(r: ClaimResult, top: int = 3) -> str:
    """`` · compiled 4.1 s (f 2.0, g 1.5, ...)`` when the run compiled Numba functions, else ``""``."""
    if not r.all_compiled:
        return ""
    rows = merge_compiled(r.all_compiled)
    names = ", ".join(f"`{row['function']}` {row['s']:.2f}" for row in rows[:top])
    more = f", {len(rows) - top} more" if len(rows) > top else ""
    return f" · Numba compilation {r.compile_time:.2f} s of it ({names}{more})"


def _md_claim(r: ClaimResult) -> list[str]:
    c = r.claim
    lines = [f"## {c.id}", "", f"**{r.verdict}** (control: {control_text(r)})", "",
             f"- statement: {c.statement}", f"- paper: `{c.paper}` · provenance: {c.provenance} "
             f"· expect: {c.expect}", f"- precise statement: {c.note}",
             f"- params ({r.profile}): `{json.dumps(jsonable(_params(r)))}`",
             f"- wall time: {r.wall_time:.2f} s"
             + (f" (+ control {r.control_wall_time:.2f} s)" if r.control_wall_time else "")
             + _compile_text(r), ""]
    lines += _md_measurements("Measurements", r.measurements)
    lines += matrix_text(r)
    errors = [("Error", r.error)] + [(f"Control `{cr.name}` error", cr.error) for cr in r.controls]
    for label, text in errors:
        if text:
            lines += [f"{label}:", "", "```", text.rstrip(), "```", ""]
    if r.drift:
        lines += ["Drift against the baseline:", ""]
        lines += [f"- {d['measurement']}: {d['baseline']:.6g} -> {d['measured']:.6g} "
                  f"(|delta| {abs(d['delta']):.3g} > allowed {d['allowed']:.3g})" for d in r.drift]
        lines.append("")
    if r.figure:
        lines += [f"![{c.id}]({r.figure})", ""]
    return lines


def _md_ensemble(run: RunReport) -> list[str]:
    """The seed-ensemble table: one row per claim, its verdict at every seed."""
    if not run.seeds:
        return []
    lines = [f"Seed ensemble ({len(run.seeds)} seeds: {_seed_range(run.seeds)}); measurements of "
             "every seed are in report.json:", "",
             "| claim | verdict over seeds | verdicts by seed |", "|---|---|---|"]
    for cid, e in run.ensemble.items():
        by = ", ".join(f"{s}: {v}" for s, v in e["verdicts"].items())
        if e["seed_independent"]:
            by = "seed-independent (reads no seed): " + by.split(",")[0]
        verdict = e["verdict"] if e["verdict"] != V.UNSTABLE else "**UNSTABLE**"
        lines.append(f"| {_cell(cid)} | {verdict} | {_cell(by)} |")
    return lines + [""]


def _seed_range(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def render_markdown(run: RunReport) -> str:
    """``report.md``: summary, one table of all measurements, then a section per claim."""
    lines = _md_summary(run)
    if run.error:
        lines += [f"**error**: {run.error}", ""]
    lines += _md_table(run)
    lines += _md_ensemble(run)
    for r in run.results:
        if r.reused_from is not None or r.seed != run.seed:
            continue
        try:
            lines += _md_claim(r)
        except Exception as exc:  # noqa: BLE001 - one claim never stops the report
            lines += [f"## {r.claim.id}", "", f"**{r.verdict}** (section not rendered: "
                      f"{type(exc).__name__}: {exc})", ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- figures


def figure_relpath(claim_id: str) -> str:
    """Path of a claim's figure relative to the run directory: ``figures/<claim id>.png``."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in claim_id)
    return f"figures/{safe}.png"


def _new_figure(figsize: tuple[float, float]) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _draw_prediction(ax: Any, m: Any) -> None:
    band = dict(color="tab:blue", alpha=0.2, lw=0)
    if m.kind == "equal":
        ax.axvspan(m.predicted - m.tol, m.predicted + m.tol, **band)
        ax.axvline(m.predicted, color="tab:blue", lw=1, label="predicted")
    elif m.kind in ("le", "ge"):
        edge = m.predicted + m.tol if m.kind == "le" else m.predicted - m.tol
        ax.axvspan(min(m.predicted, edge), max(m.predicted, edge), **band)
        ax.axvline(m.predicted, color="tab:blue", lw=1,
                   label=("bound (<=)" if m.kind == "le" else "bound (>=)"))
    elif m.kind == "interval":
        ax.axvspan(m.lo - m.tol, m.hi + m.tol, **band)
        ax.axvspan(m.lo, m.hi, color="tab:blue", alpha=0.2, lw=0, label="predicted interval")


def _draw_measurement(ax: Any, c: CheckedMeasurement) -> None:
    m = c.measurement
    color = "tab:green" if c.passed else "tab:red"
    ax.set_yticks([])
    ax.set_title(f"{m.name} [{m.kind}]: {'pass' if c.passed else 'FAIL'}", fontsize=8, loc="left")
    if m.kind == "true":
        ax.text(0.5, 0.5, f"event happened: {m.measured == 1.0}", ha="center", va="center",
                color=color, transform=ax.transAxes)
        ax.set_xticks([])
        return
    if any(v is not None and not math.isfinite(v) for v in (m.predicted, m.lo, m.hi)):
        ax.text(0.5, 0.5, "non-finite prediction", ha="center", transform=ax.transAxes)
        return
    _draw_prediction(ax, m)
    if math.isfinite(m.measured):
        xerr = None
        if m.ci and all(math.isfinite(v) for v in m.ci):
            xerr = [[max(m.measured - m.ci[0], 0.0)], [max(m.ci[1] - m.measured, 0.0)]]
        ax.errorbar([m.measured], [0.0], xerr=xerr, fmt="o", color=color, capsize=4,
                    label="measured")
    else:
        ax.text(0.5, 0.5, f"measured = {m.measured}", ha="center", color=color,
                transform=ax.transAxes)
    ax.tick_params(labelsize=7)


def _draw_controls(ax: Any, values: list[tuple[str, float, bool]]) -> None:
    """The controls' values of one measurement: an ``x`` per control (red: it flags), near values
    in the picture, far ones (more than two view widths away) as a labelled arrow at the edge."""
    if not values:
        return
    lo, hi = ax.get_xlim()
    width = hi - lo
    for k, (name, value, flagged) in enumerate(values):
        color = "tab:red" if flagged else "0.4"
        y = 0.25 + 0.12 * (k % 4)
        if not math.isfinite(value):
            ax.text(1.0, y, f"{name}: {value} ", transform=ax.get_yaxis_transform(), ha="right",
                    va="center", fontsize=6, color=color)
        elif lo - 2 * width <= value <= hi + 2 * width:
            ax.plot([value], [y], marker="x", color=color, ls="none")
            ax.annotate(name, (value, y), xytext=(3, 2), textcoords="offset points", fontsize=6,
                        color=color)
        else:
            right = value > hi
            ax.text(1.0 if right else 0.0, y, f"{name}: {value:.3g} " + ("->" if right else "<-"),
                    transform=ax.get_yaxis_transform(), ha="right" if right else "left",
                    va="center", fontsize=6, color=color)
    ax.set_ylim(-0.5, 0.8)


def _control_values(result: ClaimResult, name: str) -> list[tuple[str, float, bool]]:
    out = []
    for cr in result.controls:
        for c in cr.measurements:
            if c.measurement.name == name and c.measurement.kind != "true":
                out.append((cr.name, c.measurement.measured, name in cr.flagged))
    return out


#: Fixed margins of :func:`default_figure` in inches (see :func:`numerics.checks.plots.inch_margins`): the row
#: titles (fontsize 8) above and the x tick labels (7) below each row; the figure title on top.
DEFAULT_FIGURE_MARGINS = (0.3, 0.3, 0.45, 0.6, 0.0, 0.55)


def default_figure(result: ClaimResult, max_rows: int = 12) -> "Figure":
    """Measured vs predicted, one row per measurement, with tolerance bands, ci bars and controls.

    The shaded band is the pass region's tolerance (``predicted +- tol``, the bound and its
    ``tol`` slack, or the interval widened by ``tol``); the dot is the measured value (green
    pass, red fail) with its ci; each control's value of the same measurement is an ``x`` (red
    when that control flags it) or, when far off, an arrow with its value at the panel's edge.
    A claim without measurements gets a text panel with its verdict.
    """
    rows = result.measurements[:max_rows]
    height = 1.0 + 1.1 * max(1, len(rows))
    fig = _new_figure((6.4, height))
    fig.subplots_adjust(**plots.inch_margins(6.4, height, 1, max(1, len(rows)), DEFAULT_FIGURE_MARGINS))
    fig.suptitle(f"{result.claim.id}: {result.verdict}", fontsize=10)
    if not rows:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        last = (result.error or "no measurements").strip().splitlines()[-1]
        ax.text(0.5, 0.5, last[:100], ha="center", va="center", fontsize=8, wrap=True)
        return fig
    for i, c in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, i + 1)
        _draw_measurement(ax, c)
        if c.measurement.kind != "true" and math.isfinite(c.measurement.measured):
            _draw_controls(ax, _control_values(result, c.measurement.name))
    if len(result.measurements) > max_rows:
        fig.text(0.5, 0.01, f"... {len(result.measurements) - max_rows} more in report.md",
                 ha="center", fontsize=7)
    return fig


def verdict_line(result: ClaimResult) -> str:
    """One line for a figure: verdict, counted measurements passed, and what each control flagged."""
    counted = [c for c in result.measurements if c.measurement.counted]
    n_pass = sum(c.passed for c in counted)
    parts = [f"{result.verdict}: {n_pass}/{len(counted)} counted measurements pass"]
    if result.controls:
        parts.append("controls: " + ", ".join(
            f"{cr.name} flags {len(cr.flagged)}" if cr.error is None else f"{cr.name} ERROR"
            for cr in result.controls))
    return "; ".join(parts)


def science_figure(result: ClaimResult) -> "Figure":
    """The claim's recorded panels (:mod:`numerics.checks.plots`) with every control's measured
    curves, titled with the claim id and verdict and the :func:`verdict_line` under it."""
    rec = result.plot
    controls = [(cr.name, cr.plot.curves, bool(cr.flagged)) for cr in result.controls
                if cr.plot is not None]
    return plots.draw(rec.panels, rec.curves, controls,
                      title=f"{result.claim.id}: {result.verdict}", subtitle=verdict_line(result))


def _png_bytes(fig: "Figure") -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def claim_figure_png(result: ClaimResult) -> tuple[str, bytes]:
    """The claim's figure as PNG bytes and its kind: the recorded science figure (:func:`science_figure`,
    ``"science"``), else the figure it drew itself (``"own"``), else :func:`default_figure` (``"default"``).
    Reads only the result's id, verdict, measurements, controls and recordings (the drawing process of
    :mod:`numerics.checks.figure_pool` gets a copy without the claim's function)."""
    if result.plot:
        kind, fig = "science", science_figure(result)
    elif result.figure_obj is not None:
        kind, fig = "own", result.figure_obj
    else:
        kind, fig = "default", default_figure(result)
    return kind, _png_bytes(fig)


def store_claim_figure(result: ClaimResult, out_dir: str | os.PathLike[str], kind: str, png: bytes) -> None:
    """Write ``png`` to ``figures/<id>.png`` atomically and record it in ``result`` (``figure``, ``figure_kind``);
    an OSError is recorded as ``figure_error`` (a figure failure never changes the verdict)."""
    rel = figure_relpath(result.claim.id)
    path = Path(out_dir) / rel
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, png)
        result.figure, result.figure_kind = rel, kind
    except OSError as exc:
        result.figure_error = f"{type(exc).__name__}: {exc}"


def save_claim_figure(result: ClaimResult, out_dir: str | os.PathLike[str]) -> None:
    """Draw the claim's figure here (:func:`claim_figure_png`) and save it to ``figures/<id>.png``
    (:func:`store_claim_figure`).

    Sets ``result.figure`` (relative path) or, if drawing fails, ``result.figure_error``;
    a figure failure never changes the verdict.
    """
    try:
        kind, png = claim_figure_png(result)
    except Exception as exc:  # noqa: BLE001 - a bad figure must not lose the result
        result.figure_error = f"{type(exc).__name__}: {exc}"
        return
    store_claim_figure(result, out_dir, kind, png)


# --------------------------------------------------------------------------- baselines


class BaselineError(ValueError):
    """The baseline file is missing, unreadable or not a guidance-verify report."""


@dataclass(frozen=True)
class Baseline:
    """Measurements of a stored report, keyed by (claim id, measurement name)."""

    path: str
    records: Mapping[tuple[str, str], Mapping[str, Any]]
    profile: str | None = None
    seed: int | None = None
    started_utc: str | None = None

    def info(self) -> dict[str, Any]:
        """What the report records about the baseline."""
        return {"path": self.path, "profile": self.profile, "seed": self.seed,
                "started_utc": self.started_utc}

    def drift_of(self, result: ClaimResult) -> list[dict[str, Any]]:
        """Drift records of ``result``'s stated measurements (see :func:`verdict.drift`).

        Measurements absent from the baseline are not compared.
        """
        out = []
        for c in result.measurements:
            rec = self.records.get((result.claim.id, c.measurement.name))
            if rec is None:
                continue
            d = V.drift(c.measurement, rec)
            if d is not None:
                out.append({"measurement": c.measurement.name, **d})
        return out


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read a ``report.json`` as a :class:`Baseline`.

    Raises
    ------
    BaselineError
        With a one-line message, if the file cannot be read or is not a report.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {str(path)!r}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # includes UnicodeDecodeError and ints over 4300 digits
        raise BaselineError(f"baseline {str(path)!r} is not valid JSON: {_one_line(exc)}") from exc
    except RecursionError:
        raise BaselineError(f"baseline {str(path)!r} is nested too deeply to be a report.json") from None
    except MemoryError:
        raise BaselineError(f"baseline {str(path)!r} is too large to read") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
        raise BaselineError(f"baseline {str(path)!r} is not a guidance-verify report.json")
    records: dict[tuple[str, str], Mapping[str, Any]] = {}
    try:
        for c in doc["claims"]:
            if c.get("seed", doc.get("seed")) != doc.get("seed"):
                continue  # a seed ensemble's baseline is its first seed
            for m in c.get("measurements", []):
                float(m["measured"])
                records[(c["id"], m["name"])] = m
    except OverflowError:
        raise BaselineError(f"baseline {str(path)!r} has a measured value beyond the float range "
                            f"(claim {_one_line(repr(c.get('id')))})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BaselineError(f"baseline {str(path)!r} has a malformed claim entry: "
                            f"{_one_line(repr(exc))}") from exc
    profile, seed, started = doc.get("profile"), doc.get("seed"), doc.get("started_utc")
    return Baseline(path=str(path), records=records,
                    profile=profile if isinstance(profile, str) else None,
                    seed=seed if isinstance(seed, int) and _fits_float(seed) else None,
                    started_utc=started if isinstance(started, str) else None)


def _one_line(text: Any, width: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 3] + "..."


#: What a run owns in its output directory (removed at the start of a run into that directory).
RUN_FILES = ("report.json", "report.md")


def clear_outputs(out_dir: str | os.PathLike[str]) -> list[str]:
    """Remove what an earlier run left in ``out_dir``; return the removed paths (relative).

    A run owns ``report.json``, ``report.md``, the figures its report lists (``figures/<claim id>.png``)
    and the temporary files of their atomic writes (``.report.json.*.tmp``, ...); removing them first
    means the directory never mixes the report of one run with the figures of another. Only what an
    earlier run's ``report.json`` proves to be a run's own is removed: without such a report (a folder
    that never held a run) only the report's own temporary files go, and a figure the old report does
    not list (the user's own ``figures/x.png``) is kept. Nothing else is touched.
    """
    out = Path(out_dir)
    doomed = sorted(out.glob(".report.*.tmp"))
    figures = out / "figures"
    old = _earlier_report(out / "report.json")
    if old is not None:
        doomed += [out / name for name in RUN_FILES]
        listed = {c.get("figure") for c in old.get("claims", []) if isinstance(c, dict)}
        doomed += [out / f for f in sorted(x for x in listed if isinstance(x, str))
                   if f.startswith("figures/") and f.endswith(".png") and "/" not in f[len("figures/"):]]
        if figures.is_dir():
            doomed += sorted(figures.glob(".*.png.*.tmp"))
    removed = []
    for path in doomed:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(str(path.relative_to(out)))
    return removed


def _earlier_report(path: Path) -> dict | None:
    """The parsed ``report.json`` at ``path`` if it is a report of this package, else ``None``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("claims"), list) and "summary" in data and "status" in data:
        return data
    return None

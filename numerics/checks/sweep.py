r"""``guidance-verify sweep``: one claim over a grid of its parameters.

A claim declares which scalar parameters may be swept (``@claim(..., sweepable={"d": int})``). A grid
``--grid d=1,2,4,8,16 [--grid NAME=...]`` is the Cartesian product of the value lists; at every grid
point the claim's stated run (no controls: the claim's own run, not its falsification) is made with
the profile's parameters and the point's values in their place (:meth:`Claim.with_params`), on a Dask
cluster when one is given (one task per point, :func:`numerics.checks.dask_runner.call`).

Outputs, written atomically into the output folder:

* ``sweep.json``: the claim, profile, seed, grid, and one row per point with its verdict (or error) and
  every measurement (measured, predicted, tolerance, rule, pass flag);
* ``sweep.csv``: the same rows, one column per (measurement, field);
* ``sweep.png``: one panel per measurement, measured (filled: passed, cross: failed) and predicted
  against the first swept parameter (one series per combination of the others); an axis is
  logarithmic when its values are positive and span a factor 8 or more (a rate).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from numerics.atomic import atomic_write_bytes, atomic_write_text
from numerics.checks import runner as R
from numerics.checks import verdict as V
from numerics.checks.claim import Claim
from numerics.checks.report import _measurement_dict, jsonable
from numerics.checks.results import CheckedMeasurement

__all__ = ["MAX_POINTS", "SweepRow", "grid_points", "parse_grid", "run_sweep", "write_sweep"]

#: Largest number of grid points a sweep accepts.
MAX_POINTS = 10_000

#: The fields of a measurement in the CSV, in order.
CSV_FIELDS = ("measured", "predicted", "tol", "lo", "hi", "kind", "passed")


@dataclass
class SweepRow:
    """One grid point: its parameter values, the verdict of the claim's stated run there, and what it measured."""

    point: dict[str, Any]
    verdict: str
    measurements: list[CheckedMeasurement] = field(default_factory=list)
    error: str | None = None
    wall_time: float = 0.0


def _value(text: str, kind: type, name: str) -> Any:
    text = text.strip()
    try:
        value = kind(text) if kind is float else int(text, 10)
    except ValueError:
        raise ValueError(f"--grid {name}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise ValueError(f"--grid {name}: {text!r} is not finite")
    return value


def parse_grid(claim: Claim, specs: Sequence[str]) -> dict[str, list[Any]]:
    """``{name: [values]}`` from ``["NAME=V1,V2,...", ...]``, typed by the claim's :attr:`Claim.sweepable`.

    Raises
    ------
    ValueError
        A spec without ``=``, a name the claim does not declare sweepable, a name given twice, an empty,
        repeated or badly typed value, or more than :data:`MAX_POINTS` points; the message starts with
        ``--grid``.
    """
    if not specs:
        raise ValueError("--grid: give at least one NAME=V1,V2,...")
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = str(spec).partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--grid {spec!r}: expected NAME=V1,V2,...")
        if name not in claim.sweepable:
            allowed = ", ".join(sorted(claim.sweepable)) or "none"
            raise ValueError(f"--grid {name}: not a sweepable parameter of {claim.id} (sweepable: {allowed})")
        if name in grid:
            raise ValueError(f"--grid {name}: given twice")
        items = values.split(",")
        if any(not v.strip() for v in items):
            raise ValueError(f"--grid {name}: an empty value in {values!r}")
        typed = [_value(v, claim.sweepable[name], name) for v in items]
        if len(set(typed)) != len(typed):
            raise ValueError(f"--grid {name}: a value is repeated in {values!r}")
        grid[name] = typed
    if math.prod(len(v) for v in grid.values()) > MAX_POINTS:
        raise ValueError(f"--grid: more than {MAX_POINTS} grid points")
    return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the value lists, the first name varying slowest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def _row(claim: Claim, point: dict[str, Any], out: R._Outcome) -> SweepRow:
    if out.interrupted_by:
        raise KeyboardInterrupt(out.interrupted_by)
    if out.error:
        return SweepRow(point, V.ERROR, [], out.error, out.wall_time)
    return SweepRow(point, V.stated_verdict(claim.expect, out.all_pass), out.checked, None, out.wall_time)


def run_sweep(claim: Claim, grid: Mapping[str, Sequence[Any]], *, profile: str = "quick", seed: int = 0,
              client: Any = None, task_timeout: float | None = None) -> list[SweepRow]:
    """The claim's stated run at every grid point, in grid order (on ``client`` when given)."""
    points = grid_points(grid)
    variants = [claim.with_params(**pt) for pt in points]
    if client is None:
        return [_row(claim, pt, R._call(c, profile, seed, None, task_timeout)) for pt, c in zip(points, variants)]
    from numerics.checks import dask_runner

    futures = [client.submit(dask_runner.call, c, profile, seed, None, task_timeout, pure=False) for c in variants]
    try:
        outs = client.gather(futures, errors="skip")
        done = {f.key for f in futures if f.status == "finished"}
        rows = []
        for pt, fut in zip(points, futures):
            out = outs.pop(0) if fut.key in done else dask_runner._task_failed(fut.exception())
            rows.append(_row(claim, pt, out))
        return rows
    finally:
        client.cancel(futures)


def _measurement_names(rows: Sequence[SweepRow]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for c in r.measurements:
            if c.measurement.name not in names:
                names.append(c.measurement.name)
    return names


def sweep_dict(claim: Claim, grid: Mapping[str, Sequence[Any]], rows: Sequence[SweepRow], profile: str,
               seed: int) -> dict[str, Any]:
    """The JSON document of a sweep."""
    return {"schema": "guidance-verify/sweep/1", "claim": claim.id, "statement": claim.statement,
            "expect": claim.expect, "profile": profile, "seed": seed, "grid": dict(grid),
            "rows": [{"point": r.point, "verdict": r.verdict, "error": r.error, "wall_time_s": r.wall_time,
                      "measurements": [_measurement_dict(c) for c in r.measurements]} for r in rows]}


def _csv(grid: Mapping[str, Sequence[Any]], rows: Sequence[SweepRow]) -> str:
    names = _measurement_names(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*grid, "verdict", "error", *(f"{n}: {f}" for n in names for f in CSV_FIELDS)])
    for r in rows:
        by_name = {c.measurement.name: c for c in r.measurements}
        cells: list[Any] = []
        for n in names:
            c = by_name.get(n)
            m = c.measurement if c is not None else None
            cells += ([m.measured, m.predicted, m.tol, m.lo, m.hi, m.kind, c.passed] if m is not None
                      else [""] * len(CSV_FIELDS))
        last = (r.error or "").strip().splitlines()
        w.writerow([*(r.point[k] for k in grid), r.verdict, last[-1] if last else "",
                    *("" if v is None else v for v in cells)])
    return buf.getvalue()


def _log_axis(values: Sequence[float]) -> bool:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 8


def sweep_figure(claim: Claim, grid: Mapping[str, Sequence[Any]], rows: Sequence[SweepRow]) -> Any:
    """One panel per measurement: measured and predicted against the first swept parameter."""
    from matplotlib.figure import Figure

    names = _measurement_names(rows)
    xname, others = list(grid)[0], list(grid)[1:]
    cols = min(3, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(5.0 * cols, 3.6 * nrows), layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, cols, i + 1)
        xs_all, ys_all = [], []
        series: dict[tuple, list[tuple[float, CheckedMeasurement]]] = {}
        for r in rows:
            c = next((c for c in r.measurements if c.measurement.name == name), None)
            if c is not None:
                series.setdefault(tuple(r.point[o] for o in others), []).append((r.point[xname], c))
        for j, (key, pts) in enumerate(series.items()):
            label = ", ".join(f"{o}={v}" for o, v in zip(others, key))
            xs = [float(x) for x, _ in pts]
            meas = [c.measurement.measured for _, c in pts]
            pred = [c.measurement.predicted for _, c in pts]
            colour = f"C{j % 10}"
            ax.plot(xs, meas, "-", color=colour, alpha=0.4)
            for x, (_, c) in zip(xs, pts):
                ax.plot([x], [c.measurement.measured], "o" if c.passed else "x", color=colour,
                        mfc=colour if c.passed else "none", ms=6)
            ax.plot([], [], "o", color=colour, label=f"measured {label}".strip())
            if all(p is not None for p in pred):
                ax.plot(xs, pred, "--", color=colour, label=f"predicted ({pts[0][1].measurement.kind}) {label}".strip())
                ys_all += pred
                if all(c.measurement.kind == "equal" for _, c in pts):
                    tol = [c.measurement.tol for _, c in pts]
                    ax.fill_between(xs, [p - t for p, t in zip(pred, tol)], [p + t for p, t in zip(pred, tol)],
                                    color=colour, alpha=0.12, label="predicted +- tol")
            for x, (_, c) in zip(xs, pts):
                if c.measurement.kind == "interval":
                    ax.vlines(x, c.measurement.lo, c.measurement.hi, color=colour, alpha=0.3)
            xs_all += xs
            ys_all += meas
        if _log_axis(xs_all):
            ax.set_xscale("log")
        if _log_axis(ys_all):
            ax.set_yscale("log")
        ax.set_title(name if len(name) <= 60 else name[:57] + "...", fontsize=8)
        ax.set_xlabel(xname)
        ax.legend(fontsize=6)
    verdicts = [r.verdict for r in rows]
    fig.suptitle(f"sweep of {claim.id} over {', '.join(grid)}: "
                 + ", ".join(f"{v} x{verdicts.count(v)}" for v in dict.fromkeys(verdicts)), fontsize=9)
    return fig


def write_sweep(claim: Claim, grid: Mapping[str, Sequence[Any]], rows: Sequence[SweepRow], out_dir: Path,
                profile: str, seed: int) -> None:
    """Write ``sweep.json``, ``sweep.csv`` and ``sweep.png`` into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = json.dumps(jsonable(sweep_dict(claim, grid, rows, profile, seed)), indent=2, allow_nan=False)
    atomic_write_text(out_dir / "sweep.json", doc + "\n")
    atomic_write_text(out_dir / "sweep.csv", _csv(grid, rows))
    fig = sweep_figure(claim, grid, rows)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(out_dir / "sweep.png", buf.getvalue())

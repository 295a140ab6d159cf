"""``guidance-verify sweep`` (issue 21 item 4): a claim over a grid of its sweepable parameters."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from numerics.checks import sweep as S
from numerics.checks.claim import Context, Measurement
from numerics.cli import main
from tests.test_harness import make_claim, meas


def _square(ctx: Context) -> list[Measurement]:
    """Measures d^2 (plus a at d = 3: a wrong point) against the prediction d^2."""
    d, a = ctx.params["d"], ctx.params["a"]
    return [meas(d * d + (a if d == 3 else 0.0) + (1.0 if ctx.broken else 0.0), predicted=d * d, tol=0.1,
                 name="d squared"),
            meas(1.0, predicted=1.0, tol=0.0, name="one", kind="le")]


def _claim(**kw: Any):
    return make_claim("t.square", _square, quick={"d": 1, "a": 0.0}, full={"d": 2, "a": 0.0},
                      sweepable={"d": int, "a": float}, **kw)


@pytest.mark.parametrize("specs,match", [
    ([], "at least one"),
    (["d"], "expected NAME=V1,V2"),
    (["=1,2"], "expected NAME=V1,V2"),
    (["n=1,2"], "not a sweepable parameter of t.square \\(sweepable: a, d\\)"),
    (["d=1,2", "d=3"], "given twice"),
    (["d=1,,2"], "an empty value"),
    (["d=1,1.5"], "'1.5' is not an integer"),
    (["a=0,abc"], "'abc' is not a number"),
    (["a=0,nan"], "not finite"),
    (["d=1,2,1"], "repeated"),
    (["d=" + ",".join(map(str, range(200))), "a=" + ",".join(map(str, range(100)))], "more than 10000"),
])
def test_bad_grids_name_the_flag(specs: list[str], match: str) -> None:
    with pytest.raises(ValueError, match="^--grid.*" + match):
        S.parse_grid(_claim(), specs)


def test_grid_is_the_product_typed() -> None:
    grid = S.parse_grid(_claim(), ["d=1,2", "a=0,0.5"])
    assert grid == {"d": [1, 2], "a": [0.0, 0.5]} and isinstance(grid["d"][0], int)
    assert S.grid_points(grid) == [{"d": 1, "a": 0.0}, {"d": 1, "a": 0.5}, {"d": 2, "a": 0.0}, {"d": 2, "a": 0.5}]


def test_sweepable_is_validated() -> None:
    with pytest.raises(ValueError, match="'n' is not a parameter of both"):
        make_claim("t.bad", _square, quick={"d": 1}, sweepable={"n": int})
    with pytest.raises(ValueError, match="must be int or float"):
        make_claim("t.bad2", _square, quick={"d": 1}, sweepable={"d": str})
    with pytest.raises(ValueError, match="not sweepable"):
        _claim().with_params(n=3)


def test_sweep_writes_table_and_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every grid point's measurements in JSON and CSV, the figure, and exit 1 for the one wrong point."""
    code = main(["sweep", "t.square", "--grid", "d=1,2,3,4,5", "--grid", "a=0.5", "--out", str(tmp_path)],
                registry=[_claim()])
    assert code == 1
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["verdict"] for r in doc["rows"]] == ["holds", "holds", "VIOLATED", "holds", "holds"]
    assert [r["measurements"][0]["measured"] for r in doc["rows"]] == [1, 4, 9.5, 16, 25]
    assert [r["measurements"][0]["predicted"] for r in doc["rows"]] == [1, 4, 9, 16, 25]
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [r["d"] for r in rows] == ["1", "2", "3", "4", "5"] and rows[2]["d squared: passed"] == "False"
    assert rows[0]["d squared: tol"] == "0.1" and rows[0]["one: kind"] == "le"
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "4/5 grid points holds" in capsys.readouterr().out


def test_sweep_all_pass_exits_0(tmp_path: Path) -> None:
    assert main(["sweep", "t.square", "--grid", "d=1,2,4", "--profile", "full", "--out", str(tmp_path)],
                registry=[_claim()]) == 0


@pytest.mark.parametrize("argv,match", [
    (["sweep", "t.nothing", "--grid", "d=1"], "no claim 't.nothing'"),
    (["sweep", "t.square", "--grid", "q=1"], "--grid q: not a sweepable parameter"),
    (["sweep", "t.square", "--grid", "d=x"], "--grid d: 'x' is not an integer"),
    (["sweep", "t.square"], "--grid"),
    (["sweep", "t.square", "--grid", "d=1", "--profile", "huge"], "unknown profile"),
])
def test_bad_sweep_arguments_are_one_line(argv: list[str], match: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--out", str(tmp_path)], registry=[_claim()]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_sweep_on_dask_equals_serial() -> None:
    distributed = pytest.importorskip("distributed")
    from numerics.checks import dask_runner

    claim = make_claim("t.square", lambda ctx: [meas(ctx.params["d"] ** 2, predicted=ctx.params["d"] ** 2)],
                       quick={"d": 1}, sweepable={"d": int})
    grid = {"d": [1, 2, 3, 4, 5]}
    serial = S.run_sweep(claim, grid)
    with dask_runner.local_cluster(2) as cluster, distributed.Client(cluster) as client:
        parallel = S.run_sweep(claim, grid, client=client)
    assert [(r.point, r.verdict, [c.measurement.measured for c in r.measurements]) for r in parallel] == \
        [(r.point, r.verdict, [c.measurement.measured for c in r.measurements]) for r in serial]

"""The quick profile against the stored baseline: the suite as a regression test.

Regenerate after a deliberate change with
``guidance-verify run --out /tmp/b && cp /tmp/b/report.json tests/data/baseline_quick.json``.
"""
import importlib.util
import json
import os
import pathlib

import pytest

from numerics.cli import main

BASELINE = pathlib.Path(__file__).resolve().parent / "data" / "baseline_quick.json"


def _workers() -> list[str]:
    """``--workers 2`` where two cores and the [distributed] extra are there (README's test command
    installs it), else a serial run. A Dask run writes the serial run's report, measurement for
    measurement (tests/test_dask.py), and on two cores takes about half its wall time: most of a
    claim is single-threaded Python and NumPy, so a serial run leaves a core idle."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return ["--workers", "2"] if cores >= 2 and importlib.util.find_spec("distributed") else []


@pytest.fixture(scope="module")
def rerun(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", "--baseline", str(BASELINE), "--out", str(out), *_workers()])
    return code, json.loads((out / "report.json").read_text())


def test_quick_profile_matches_baseline(rerun):
    code, report = rerun
    drifted = [(c["id"], d) for c in report["claims"] for d in c.get("drift", [])]
    assert not drifted, drifted
    assert code == 0, report["summary"]


#: Claims whose figure is not a science figure (recorded panels with the controls' curves), and why.
NO_SCIENCE_FIGURE: dict[str, str] = {}


def test_every_claim_draws_a_science_figure(rerun):
    """Issue 17 item 6: the measured quantity against the prediction on its natural axes, with the
    controls' curves, for every paper claim (not the default pass/fail dots)."""
    _, report = rerun
    kinds = {c["id"]: c["figure_kind"] for c in report["claims"]}
    missing = sorted(cid for cid, kind in kinds.items() if kind != "science" and cid not in NO_SCIENCE_FIGURE)
    assert not missing, missing
    assert set(NO_SCIENCE_FIGURE) <= set(kinds), "an exemption names no claim"


def test_baseline_detects_a_drift(tmp_path):
    """Negative control: the first claim's first value moved past its drift allowance must fail the run."""
    data = json.loads(BASELINE.read_text())
    first = data["claims"][0]
    m = first["measurements"][0]
    value = float(m["measured"])
    ci = m.get("ci") or (value, value)
    # past every allowance: tol + ci half-width, drift_tol, and the relative floor sqrt(u) |value|
    allowance = (float(m["tol"]) + (float(ci[1]) - float(ci[0])) / 2.0
                 + float(m.get("extra", {}).get("drift_tol", 0.0)) + abs(value))
    m["measured"] = value + 10.0 * (1.0 + allowance)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code = main(["run", "--only", first["id"], "--baseline", str(bad), "--out", str(tmp_path / "o")])
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert code != 0
    assert report["claims"][0]["drift"], report["claims"][0]


def test_baseline_is_quick_profile():
    data = json.loads(BASELINE.read_text())
    assert data["profile"] == "quick" and data["status"] == "complete" and data["summary"]["ok"]

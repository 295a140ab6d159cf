"""report.json's writer (numerics.checks.report.report_json) keeps each finished claim's encoded entry between the
writes of a run: its text must be the whole document's plain encoding, character for character, at every write,
and follow the fields that change after a claim finished (its figure, drift)."""
import json
import math

from numerics.checks import report
from numerics.checks.claim import Measurement, claim
from numerics.checks.results import RunReport
from numerics.checks.runner import run_claim


def _plain(run: RunReport) -> str:
    return json.dumps(report.jsonable(report.report_dict(run)), indent=2, allow_nan=False)


def _results():
    reg: dict = {}

    def body(ctx):
        bump = 5.0 if ctx.broken else 0.0
        return [Measurement(name="m", measured=1.0 + bump, predicted=1.0, kind="equal", tol=0.1, reason="r",
                            extra={"nan": math.nan, "inf": -math.inf, "nested": {"a": [1, (2, 3)], 4: "x\ny"},
                                   "text": "quote \" and\ttab"})]

    def empty(ctx):
        return [Measurement(name="only", measured=2.0, predicted=2.0, kind="equal", tol=0.0, reason="r")]

    claim(id="tmpjson.one", paper="tmpjson", statement="s", note="test", provenance="standard", registry=reg,
          controls={"bump": "adds 5 (test only)"})(body)
    claim(id="tmpjson.two", paper="tmpjson", statement="s", note="test", provenance="standard", registry=reg,
          control="none", control_reason="test: no control")(empty)
    return [run_claim(reg["tmpjson.one"]), run_claim(reg["tmpjson.two"]), run_claim(reg["tmpjson.one"], seed=3)]


def test_every_write_is_the_plain_encoding() -> None:
    run = RunReport(profile="quick", seed=0, control=True, planned=["tmpjson.one", "tmpjson.two"])
    assert report.report_json(run) == _plain(run)  # no claims yet
    for r in _results():
        run.results.append(r)
        assert report.report_json(run) == _plain(run)
        assert report.report_json(run) == _plain(run)  # the second write from the kept entries
    run.status, run.wall_time = "complete", 12.5
    assert report.report_json(run) == _plain(run)
    assert json.loads(report.report_json(run))["claims"][2]["seed"] == 3


def test_a_kept_entry_follows_its_figure_and_drift() -> None:
    """The figure pool records a claim's figure after its entry was first written, and a baseline's drift may be
    added: a writer that kept the stale text would disagree with the plain encoding here."""
    run = RunReport(profile="quick", seed=0, control=True, planned=["tmpjson.one"])
    run.results.extend(_results()[:1])
    first = report.report_json(run)
    r = run.results[0]
    r.figure, r.figure_kind = "figures/tmpjson.one.png", "default"
    assert report.report_json(run) == _plain(run) != first
    r.drift = [{"measurement": "m", "baseline": 1.0, "measured": 1.5, "delta": 0.5, "allowed": 0.1}]
    assert report.report_json(run) == _plain(run)
    assert json.loads(report.report_json(run))["claims"][0]["drift"][0]["delta"] == 0.5

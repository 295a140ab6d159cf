"""The claim harness: measurements, verdicts, negative controls, runner, reports, baselines.

Claims are injected as explicit lists of Claim objects (``run_claims(claims, ...)``), built with
the ``@claim`` decorator into a fresh dict, or taken from ``numerics.checks.examples.CLAIMS``.
"""
from __future__ import annotations

import json
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import numerics.atomic as atomic
import numerics.checks as checks
from numerics.checks import examples, report, verdict as V
from numerics.checks.claim import REGISTRY, Claim, Context, Measurement, claim
from numerics.checks.runner import NoMatchError, run_claim, run_claims, select

# --------------------------------------------------------------------------- helpers


def make_claim(cid: str, func: Callable[[Context], Any], expect: str = "holds",
               **kw: Any) -> Claim:
    """Register ``func`` as claim ``cid`` into a fresh dict and return the Claim."""
    reg: dict[str, Claim] = {}
    if kw.get("control", "broken") != "none":
        kw.setdefault("controls", {"bump": "adds 1 to the measured value (test only)"})
    claim(id=cid, paper=cid.split(".")[0], statement=f"statement of {cid}", note="test",
          provenance="standard", expect=expect, registry=reg, **kw)(func)
    return reg[cid]


def meas(value: float, predicted: float = 0.0, kind: str = "equal", tol: float = 0.1,
         name: str = "m", **kw: Any) -> Measurement:
    return Measurement(name=name, measured=value, predicted=predicted, kind=kind, tol=tol,
                       reason="test tolerance", **kw)


def sensitive(value: float = 0.0) -> Callable[[Context], list[Measurement]]:
    """A claim body whose broken variant moves the measurement far outside tol."""
    return lambda ctx: [meas(value + (1.0 if ctx.broken else 0.0))]


def load_strict(path: Path) -> dict[str, Any]:
    """Parse JSON, refusing NaN / Infinity tokens (not valid JSON)."""
    def refuse(token: str) -> Any:
        raise AssertionError(f"invalid JSON constant {token}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


GOOD = examples.CLAIMS["examples.gaussian_mean"]
COUNTER = examples.CLAIMS["examples.variance_identity_fails"]

# --------------------------------------------------------------------------- Measurement


@pytest.mark.parametrize("kwargs,match", [
    (dict(reason=""), "reason"),
    (dict(reason="   "), "reason"),
    (dict(kind="approx"), "kind"),
    (dict(tol=-1.0), "tol"),
    (dict(tol=float("inf")), "tol"),
    (dict(predicted=None), "predicted"),
    (dict(kind="interval", lo=1.0, hi=None), "lo and"),
    (dict(kind="interval", lo=2.0, hi=1.0), "lo"),
    (dict(ci=(1.0, 0.0)), "reversed"),
    (dict(name=""), "name"),
])
def test_measurement_rejects_bad_fields(kwargs: dict[str, Any], match: str) -> None:
    base = dict(name="m", measured=1.0, predicted=1.0, kind="equal", tol=0.0, reason="r")
    with pytest.raises(ValueError, match=match):
        Measurement(**{**base, **kwargs})


def test_measurement_converts_numbers_and_rejects_non_numbers() -> None:
    m = Measurement(name="e", measured=np.True_, kind="true", reason="event")
    assert m.measured == 1.0 and isinstance(m.measured, float)
    with pytest.raises(TypeError, match="measured"):
        Measurement(name="e", measured="big", predicted=0.0, reason="r")


# --------------------------------------------------------------------------- pass rules

NAN = float("nan")


@pytest.mark.parametrize("m,expected", [
    (meas(1.05, 1.0, tol=0.1), True),
    (meas(1.2, 1.0, tol=0.1), False),
    (meas(1.0, 1.0, tol=0.0), True),
    (meas(NAN, 1.0, tol=1e9), False),
    (meas(1.0, NAN, tol=1e9), False),
    (meas(0.5, 1.0, kind="le", tol=0.0), True),
    (meas(1.05, 1.0, kind="le", tol=0.1), True),
    (meas(1.2, 1.0, kind="le", tol=0.1), False),
    (meas(0.5, 1.0, kind="le", tol=0.0, ci=(0.4, 1.2)), False),  # CI upper end is used
    (meas(0.5, 1.0, kind="le", tol=0.0, ci=(0.4, 0.9)), True),
    (meas(0.5, 1.0, kind="le", tol=0.0, ci=(0.4, NAN)), False),
    (meas(0.5, 1.0, kind="le", tol=0.0, ci=(NAN, 0.9)), False),  # a NaN anywhere fails
    (meas(2.0, 1.0, kind="ge", tol=0.0), True),
    (meas(0.95, 1.0, kind="ge", tol=0.1), True),
    (meas(2.0, 1.0, kind="ge", tol=0.0, ci=(0.8, 3.0)), False),  # CI lower end is used
    (meas(2.0, 1.0, kind="ge", tol=0.0, ci=(1.1, 3.0)), True),
    (meas(NAN, 1.0, kind="ge", tol=0.0), False),
    (Measurement(name="i", measured=0.5, kind="interval", lo=0.0, hi=1.0, reason="r"), True),
    (Measurement(name="i", measured=1.05, kind="interval", lo=0.0, hi=1.0, tol=0.1,
                 reason="r"), True),
    (Measurement(name="i", measured=1.2, kind="interval", lo=0.0, hi=1.0, tol=0.1,
                 reason="r"), False),
    (Measurement(name="i", measured=0.5, kind="interval", lo=0.0, hi=1.0, ci=(0.2, 0.8),
                 reason="r"), True),
    (Measurement(name="i", measured=0.5, kind="interval", lo=0.0, hi=1.0, ci=(-0.1, 0.8),
                 reason="r"), False),  # the whole CI must lie inside
    (Measurement(name="i", measured=NAN, kind="interval", lo=0.0, hi=1.0, reason="r"), False),
    (Measurement(name="t", measured=1.0, kind="true", reason="r"), True),
    (Measurement(name="t", measured=True, kind="true", reason="r"), True),
    (Measurement(name="t", measured=0.0, kind="true", reason="r"), False),
    (Measurement(name="t", measured=NAN, kind="true", reason="r"), False),
])
def test_pass_rules(m: Measurement, expected: bool) -> None:
    assert V.passes(m) is expected


def test_rule_text_names_the_end_used() -> None:
    assert "ci hi 1.2" in V.rule_text(meas(0.5, 1.0, kind="le", ci=(0.4, 1.2)))
    assert "ci lo 0.4" in V.rule_text(meas(0.5, 0.0, kind="ge", ci=(0.4, 1.2)))


@pytest.mark.parametrize("stated,control,final", [
    ("holds", V.CONTROL_FLAGGED, "holds"),
    ("holds", V.CONTROL_NOT_FLAGGED, "UNFALSIFIABLE"),
    ("fails-as-predicted", V.CONTROL_NOT_FLAGGED, "UNFALSIFIABLE"),
    ("holds", V.CONTROL_ERROR, "ERROR"),
    ("holds", V.CONTROL_NONE, "holds"),
    ("VIOLATED", V.CONTROL_NOT_RUN, "VIOLATED"),
])
def test_final_verdict(stated: str, control: str, final: str) -> None:
    assert V.final_verdict(stated, control) == final


# --------------------------------------------------------------------------- claim + registry


def test_claim_metadata_is_validated() -> None:
    with pytest.raises(ValueError, match="control_reason"):
        make_claim("t.nocontrol", sensitive(), control="none")
    with pytest.raises(ValueError, match="must start with its paper"):
        claim(id="a.x", paper="b", statement="s", note="n", provenance="standard",
              controls={"bump": "adds 1"}, registry={})(sensitive())
    with pytest.raises(ValueError, match="provenance"):
        claim(id="a.x", paper="a", statement="s", note="n", provenance="folklore",
              controls={"bump": "adds 1"}, registry={})(sensitive())
    with pytest.raises(ValueError, match="expect"):
        make_claim("t.x", sensitive(), expect="maybe")


def test_duplicate_id_from_another_function_is_rejected() -> None:
    reg: dict[str, Claim] = {}
    kw = dict(id="t.dup", paper="t", statement="s", note="n", provenance="standard", registry=reg,
              controls={"bump": "adds 1"})

    def first(ctx: Context) -> list[Measurement]:
        return [meas(0.0)]

    def second(ctx: Context) -> list[Measurement]:
        return [meas(0.0)]

    returned = claim(**kw)(first)
    assert returned is first and first.claim is reg["t.dup"]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="duplicate"):
        claim(**kw)(second)


def test_examples_do_not_touch_the_default_registry() -> None:
    assert set(examples.CLAIMS) == {"examples.gaussian_mean", "examples.variance_identity_fails"}
    assert not any(cid.startswith("examples.") for cid in REGISTRY)


def test_context_rng_is_reproducible_and_per_claim() -> None:
    a1 = GOOD.context("quick", seed=5).rng.random(4)
    a2 = GOOD.context("quick", seed=5, control="shifted_mean").rng.random(4)
    b = COUNTER.context("quick", seed=5).rng.random(4)
    c = GOOD.context("quick", seed=6).rng.random(4)
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, b) and not np.array_equal(a1, c)
    assert GOOD.context("quick", 5).sub_seed == GOOD.context("quick", 5).sub_seed >= 0


def test_context_params_are_a_private_copy() -> None:
    def mutate(ctx: Context) -> list[Measurement]:
        ctx.params["xs"].append(99)
        return [meas(len(ctx.params["xs"]), 2.0, tol=0.0)]

    c = make_claim("t.mutate", mutate, quick={"xs": [1]}, control="none",
                   control_reason="test")
    assert run_claim(c).verdict == "holds"
    assert run_claim(c).verdict == "holds"  # a shared list would have grown to 3 entries
    assert c.quick == {"xs": [1]}


@pytest.fixture
def clean_registry() -> Any:
    saved = dict(REGISTRY)
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(saved)


def test_load_all_isolates_a_broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           clean_registry: dict[str, Claim]) -> None:
    (tmp_path / "gv_good_claims.py").write_text(textwrap.dedent("""
        from numerics.checks.claim import claim, Measurement

        @claim(id="tmpgood.one", paper="tmpgood", statement="s", note="n",
               provenance="standard", controls={"flip": "reports 1 instead of 0"})
        def one(ctx):
            return [Measurement(name="m", measured=float(ctx.broken), predicted=0.0,
                                tol=0.0, reason="exact")]
    """))
    (tmp_path / "gv_bad_claims.py").write_text("raise RuntimeError('bad module here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = checks.load_all(["gv_bad_claims", "gv_good_claims", "numerics.checks.examples"])
    assert list(loaded) == ["import.gv_bad_claims", "tmpgood.one", *examples.CLAIMS]
    run = run_claims(list(loaded.values()))
    verdicts = [r.verdict for r in run.results]
    assert verdicts == ["ERROR", "holds", "holds", "fails-as-predicted"]
    assert "bad module here" in run.results[0].error
    assert run.status == "complete" and run.exit_code() == 1


def test_load_all_finds_claims_built_by_a_helper_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        clean_registry: dict[str, Claim]) -> None:
    (tmp_path / "gv_helper.py").write_text(textwrap.dedent("""
        from numerics.checks.claim import claim, Measurement

        def make(cid):
            def body(ctx):
                return [Measurement(name="m", measured=float(ctx.broken), predicted=0.0,
                                    tol=0.0, reason="exact")]
            claim(id=cid, paper=cid.split(".")[0], statement="s", note="n",
                  provenance="standard", controls={"flip": "reports 1 instead of 0"})(body)
    """))
    (tmp_path / "gv_uses_helper.py").write_text("import gv_helper\ngv_helper.make('tmphelp.a')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert REGISTRY.get("tmphelp.a") is None
    assert list(checks.load_all(["gv_uses_helper"])) == ["tmphelp.a"]
    assert REGISTRY["tmphelp.a"].module == "gv_helper"
    assert list(checks.load_all(["gv_uses_helper"])) == ["tmphelp.a"]  # already imported


def test_load_all_reads_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(checks.CLAIM_MODULES_ENV, "numerics.checks.examples")
    assert list(checks.load_all()) == list(examples.CLAIMS)
    assert checks.claim_modules() == ["numerics.checks.examples"]
    monkeypatch.setenv(checks.CLAIM_MODULES_ENV, " numerics.checks.examples , gv_x ,")
    assert checks.claim_modules() == ["numerics.checks.examples", "gv_x"]
    monkeypatch.delenv(checks.CLAIM_MODULES_ENV)
    assert "numerics.checks.examples" not in checks.claim_modules()  # the entry points again


def test_select_globs_and_paper_prefix() -> None:
    claims = {c.id: c for c in (GOOD, COUNTER)}
    assert [c.id for c in select(claims, ["*variance*"])] == [COUNTER.id]
    assert [c.id for c in select(claims, ["examples"])] == [GOOD.id, COUNTER.id]
    assert len(select(claims, None)) == 2
    with pytest.raises(NoMatchError, match="nope"):
        select(claims, ["examples.*", "nope*"])


# --------------------------------------------------------------------------- verdicts of runs


def test_raising_claim_is_error_and_the_run_continues(tmp_path: Path) -> None:
    def boom(ctx: Context) -> list[Measurement]:
        raise ZeroDivisionError("boom in claim")

    run = run_claims([make_claim("t.boom", boom), GOOD], out_dir=tmp_path)
    assert [r.verdict for r in run.results] == ["ERROR", "holds"]
    assert "ZeroDivisionError: boom in claim" in run.results[0].error
    assert run.status == "complete" and not run.ok and run.exit_code() == 1
    doc = load_strict(tmp_path / "report.json")
    assert doc["summary"]["counts"]["ERROR"] == 1 and doc["summary"]["failed"] == ["t.boom"]


@pytest.mark.parametrize("bad_return", [[], None, [1.0], "m"])
def test_bad_return_value_is_error(bad_return: Any) -> None:
    r = run_claim(make_claim("t.bad", lambda ctx: bad_return))
    assert r.verdict == "ERROR" and r.error


def test_uncaught_control_is_unfalsifiable() -> None:
    r = run_claim(make_claim("t.blind", lambda ctx: [meas(0.0)]))
    assert (r.stated_verdict, r.control, r.verdict) == ("holds", "NOT FLAGGED", "UNFALSIFIABLE")
    assert len(r.controls) == 1 and len(r.controls[0].measurements) == 1 and r.failed
    assert r.unflagged == ["m"] and r.idle_controls == ["bump"]


def test_good_claim_with_flagged_control_holds(tmp_path: Path) -> None:
    run = run_claims([GOOD], out_dir=tmp_path)
    r = run.results[0]
    assert (r.verdict, r.control) == ("holds", "flagged")
    assert [c.passed for c in r.measurements] == [True]
    assert [c.passed for c in r.controls[0].measurements] == [False]
    assert r.matrix == {"sample mean": {"shifted_mean": True}}
    assert run.ok and run.exit_code() == 0


def test_fails_as_predicted_path() -> None:
    r = run_claim(COUNTER)
    assert (r.verdict, r.control) == ("fails-as-predicted", "flagged")
    # a counterexample whose predicted failure does not happen is VIOLATED
    def no_failure(ctx: Context) -> list[Measurement]:
        return [Measurement(name="failed", measured=0.0, kind="true", reason="event")]
    r2 = run_claim(make_claim("t.nofail", no_failure, expect="fails-as-predicted"))
    assert r2.verdict == "VIOLATED" and r2.control == "not run"


def test_failing_measurement_is_violated() -> None:
    r = run_claim(make_claim("t.viol", lambda ctx: [meas(0.0), meas(5.0, name="far")]))
    assert r.verdict == "VIOLATED" and [c.passed for c in r.measurements] == [True, False]


def test_raising_control_is_error() -> None:
    def body(ctx: Context) -> list[Measurement]:
        if ctx.broken:
            raise ValueError("control exploded")
        return [meas(0.0)]

    r = run_claim(make_claim("t.ctlerr", body))
    assert (r.stated_verdict, r.control, r.verdict) == ("holds", "ERROR", "ERROR")
    assert "control exploded" in r.controls[0].error and r.error is None


def test_control_none_and_no_control() -> None:
    c = make_claim("t.none", lambda ctx: [meas(0.0)], control="none",
                   control_reason="an identity with no parameter to break")
    r = run_claim(c)
    assert (r.verdict, r.control) == ("holds", "none")
    r2 = run_claim(make_claim("t.skip", lambda ctx: [meas(0.0)]), control=False)
    assert (r2.verdict, r2.control) == ("holds", "skipped")


def test_profiles_select_parameter_sets() -> None:
    seen: list[int] = []

    def body(ctx: Context) -> list[Measurement]:
        seen.append(ctx.params["n"])
        return [meas(0.0 if not ctx.broken else 1.0)]

    c = make_claim("t.prof", body, quick={"n": 1}, full={"n": 2})
    run_claim(c, profile="full", control=False)
    run_claim(c, profile="quick", control=False)
    assert seen == [2, 1]
    with pytest.raises(ValueError, match="profile"):
        run_claim(c, profile="medium")


# --------------------------------------------------------------------------- interrupts + files


def _wrapped_interrupt() -> SystemError:
    """A Ctrl-C inside a C callback, as Numba's unpickling of a cached kernel returns it: a SystemError
    whose cause is the KeyboardInterrupt (seen in a full-profile run; it was recorded as the claim's error
    and the run went on)."""
    err = SystemError("<function _numba_unpickle> returned a result with an exception set")
    err.__cause__ = KeyboardInterrupt()
    return err


@pytest.mark.parametrize("exc,code", [(SystemExit(3), 1), (SystemExit(0), 1),
                                      (KeyboardInterrupt(), 130), (_wrapped_interrupt(), 130)])
def test_interrupt_inside_a_claim_leaves_a_valid_interrupted_report(
        tmp_path: Path, exc: BaseException, code: int) -> None:
    ran_after: list[bool] = []

    def interrupt(ctx: Context) -> list[Measurement]:
        raise exc

    def after(ctx: Context) -> list[Measurement]:
        ran_after.append(True)
        return [meas(0.0)]

    claims = [GOOD, make_claim("t.stop", interrupt), make_claim("t.after", after)]
    run = run_claims(claims, out_dir=tmp_path)
    assert run.status == "interrupted" and not ran_after
    assert run.exit_code() == code
    doc = load_strict(tmp_path / "report.json")
    assert doc["status"] == "interrupted"
    assert [c["id"] for c in doc["claims"]] == ["examples.gaussian_mean", "t.stop"]
    assert [c["verdict"] for c in doc["claims"]] == ["holds", "INTERRUPTED"]
    assert doc["planned"] == [c.id for c in claims] and doc["summary"]["ok"] is False
    assert "t.stop" in (tmp_path / "report.md").read_text()
    assert no_temp_files(tmp_path)


def test_report_is_complete_json_after_each_claim(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def peek(ctx: Context) -> list[Measurement]:
        if not ctx.broken:
            seen.append(load_strict(tmp_path / "report.json"))
        return [meas(float(ctx.broken))]

    run_claims([GOOD, make_claim("t.peek", peek)], out_dir=tmp_path)
    assert seen[0]["status"] == "running"
    assert [c["id"] for c in seen[0]["claims"]] == ["examples.gaussian_mean"]
    final = load_strict(tmp_path / "report.json")
    assert final["status"] == "complete" and len(final["claims"]) == 2
    assert final["summary"]["ok"] is True


def test_slow_report_writes_are_deferred_and_the_last_one_is_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write slower than SAVE_DEFER_FLOOR is not repeated within SAVE_COST_RATIO times its duration (a large
    ensemble report would otherwise be rewritten after every result); the final write always happens."""
    import time

    import numerics.checks.runner as runner

    calls: list[int] = []
    real = report.write_report

    def slow(run: Any, out: Any) -> None:
        time.sleep(runner.SAVE_DEFER_FLOOR * 1.5)
        calls.append(len(run.results))
        real(run, out)

    monkeypatch.setattr(report, "write_report", slow)
    claims = [make_claim(f"t.c{i}", sensitive()) for i in range(5)]
    run_claims(claims, out_dir=tmp_path)
    # the start (no result yet) and the end; a write after every result would give [0, 1, 2, 3, 4, 5, 5]
    assert calls == [0, 5]
    final = load_strict(tmp_path / "report.json")
    assert final["status"] == "complete" and [c["id"] for c in final["claims"]] == [f"t.c{i}" for i in range(5)]


def test_serial_run_keeps_blas_to_one_thread() -> None:
    """Inside a serial run BLAS has one thread (its spinning threads slow a run on a busy machine 2.6x, see
    serial_blas_limit); after the run the caller's setting is back."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    seen: list[list[int]] = []

    def body(ctx: Context) -> list[Measurement]:
        seen.append(blas_threads())
        return [meas(float(ctx.broken))]

    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    with threadpool_limits(limits=2, user_api="blas"):
        run_claims([make_claim("t.blas", body)])
        after = blas_threads()
    assert seen and all(t == [1] * len(t) and t for t in seen)
    assert after == [2] * len(after)


def test_non_finite_values_are_strict_json(tmp_path: Path) -> None:
    body = lambda ctx: [meas(float("nan"), extra={"arr": np.arange(2), "inf": -np.inf})]  # noqa: E731
    run_claims([make_claim("t.nan", body)], out_dir=tmp_path)
    doc = load_strict(tmp_path / "report.json")
    m = doc["claims"][0]["measurements"][0]
    assert m["measured"] == "nan" and m["extra"] == {"arr": [0, 1], "inf": "-inf"}
    assert doc["claims"][0]["verdict"] == "VIOLATED"
    record = report.load_baseline(tmp_path / "report.json").records[("t.nan", "m")]
    assert math.isnan(float(record["measured"]))


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic.atomic_write_text(target, "one")
    atomic.atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_failure_keeps_old_content(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.txt"
    atomic.atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        atomic.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_write_does_not_follow_planted_links(tmp_path: Path) -> None:
    """Issue 24 (security): ``bench --json P`` once wrote through a fixed ``P.tmp`` and followed a symlink
    planted there.  The temporary file is now created exclusively with a random name (``mkstemp``): links
    planted at every name a fixed-name writer would use leave their targets untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "bench.json"
    for name in ("bench.json.tmp", ".bench.json.tmp", "bench.json~"):
        (tmp_path / name).symlink_to(victim)
    atomic.atomic_write_text(target, "{}")
    assert victim.read_text() == "precious" and target.read_text() == "{}"
    assert not target.is_symlink()
    # the target itself a planted link: it is replaced by a file, the link's target is untouched
    target.unlink()
    target.symlink_to(victim)
    atomic.atomic_write_text(target, "[]")
    assert victim.read_text() == "precious" and target.read_text() == "[]" and not target.is_symlink()


# --------------------------------------------------------------------------- figures


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_figures_own_and_default(tmp_path: Path) -> None:
    def drawing(ctx: Context) -> list[Measurement]:
        ax = ctx.figure(figsize=(2, 3)).add_subplot()
        ax.plot([0, 1], [0, 1])
        return [meas(float(ctx.broken))]

    def boom(ctx: Context) -> list[Measurement]:
        raise RuntimeError("no figure either")

    run = run_claims([make_claim("t.draw", drawing), GOOD, make_claim("t.boom", boom)],
                     out_dir=tmp_path)
    assert [r.figure for r in run.results] == [
        "figures/t.draw.png", "figures/examples.gaussian_mean.png", "figures/t.boom.png"]
    assert [r.figure_kind for r in run.results] == ["own", "default", "default"]
    assert _png_size(tmp_path / "figures/t.draw.png") == (200, 300)  # the claim's own figure
    assert _png_size(tmp_path / "figures/examples.gaussian_mean.png")[0] == 640  # default
    assert (tmp_path / "figures/t.boom.png").stat().st_size > 0
    assert no_temp_files(tmp_path)
    assert "![t.draw](figures/t.draw.png)" in (tmp_path / "report.md").read_text()


# --------------------------------------------------------------------------- baseline drift


def _value_claim(cid: str, box: dict[str, float], ci_half: float | None = None) -> Claim:
    def body(ctx: Context) -> list[Measurement]:
        v = box["v"] + (1000.0 if ctx.broken else 0.0)
        ci = (v - ci_half, v + ci_half) if ci_half is not None else None
        return [Measurement(name="value", measured=v, predicted=100.0, kind="le", tol=0.01,
                            ci=ci, reason="test"),
                meas(float(ctx.broken), name="sentinel")]
    return make_claim(cid, body)


@pytest.mark.parametrize("ci_half,shift,drifts", [
    (None, 0.009, False), (None, 0.011, True), (None, -0.02, True),
    (0.1, 0.105, False), (0.1, 0.115, True),
])
def test_baseline_drift(tmp_path: Path, ci_half: float | None, shift: float,
                        drifts: bool) -> None:
    box = {"v": 1.0}
    c = _value_claim("t.val", box, ci_half)
    run_claims([c], out_dir=tmp_path / "base")
    baseline = report.load_baseline(tmp_path / "base/report.json")
    box["v"] = 1.0 + shift
    run = run_claims([c], out_dir=tmp_path / "new", baseline=baseline)
    r = run.results[0]
    assert r.verdict == "holds"
    assert bool(r.drift) is drifts and run.ok is (not drifts)
    doc = load_strict(tmp_path / "new/report.json")
    assert doc["baseline"]["path"].endswith("report.json")
    if drifts:
        assert r.drift[0]["measurement"] == "value"
        assert r.drift[0]["allowed"] == pytest.approx(0.01 + (ci_half or 0.0))
        assert doc["summary"]["n_drift"] == 1 and doc["claims"][0]["failed"] is True


def test_last_bits_of_a_tol_zero_measurement_are_not_drift() -> None:
    """A bound measured with tol 0 (e.g. ``max (KL - bound) <= 0``) moves by a few ulp between
    machines (another BLAS kernel sums in another order): not drift. 1e-6 relative is."""
    for value in (-0.035707570937411566, 0.07361040836917797, 9225.222137543502, -1e-30):
        m = meas(value, 1e4, kind="le", tol=0.0)
        for ulps in (1, 2, 16, -3):
            assert V.drift(m, {"measured": value + ulps * np.spacing(value)}) is None
        d = V.drift(m, {"measured": value * (1.0 + 1e-6)})
        assert d is not None and d["allowed"] == pytest.approx(
            V.REPRODUCIBILITY_REL * abs(value), rel=1e-5)
    assert V.drift(meas(0.0, tol=0.0), {"measured": 1e-30}) is not None  # the floor is relative
    # the floor never shrinks what the claim allows on its own
    assert V.drift(meas(1.0, tol=0.5), {"measured": 1.4}) is None


def test_drift_of_nan() -> None:
    assert V.drift(meas(NAN), {"measured": "nan"}) is None
    assert V.drift(meas(NAN), {"measured": 0.0}) is not None
    assert V.drift(meas(0.0), {"measured": NAN}) is not None


def test_load_baseline_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(report.BaselineError, match="cannot read"):
        report.load_baseline(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(report.BaselineError, match="not valid JSON"):
        report.load_baseline(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(report.BaselineError, match="not a guidance-verify"):
        report.load_baseline(tmp_path / "other.json")


def test_import_of_checks_stays_light() -> None:
    # matplotlib and rich are loaded only when a figure or a table is made; numerics/__init__
    # (not the harness) may import its own dependencies, so only the difference is checked
    import subprocess

    code = ("import sys, numerics; before = set(sys.modules);"
            "import numerics.checks.runner, numerics.checks.report, numerics.stats;"
            "new = set(sys.modules) - before;"
            "print(sorted({m.split('.')[0] for m in new} & {'matplotlib', 'scipy', 'rich', "
            "'numba'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_report_does_not_import_the_runner() -> None:
    """runner -> report -> results, never back: the report module loads without the runner."""
    import subprocess

    code = ("import sys, numerics.checks.report;"
            "print('numerics.checks.runner' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- controls per measurement


def two_measurements(ctx: Context) -> list[Measurement]:
    """m1 moves under control a, m2 under control b; control c moves nothing."""
    return [meas(1.0 if ctx.control == "a" else 0.0, name="m1"),
            meas(1.0 if ctx.control == "b" else 0.0, name="m2")]


ABC = {"a": "moves m1", "b": "moves m2", "c": "moves nothing"}


def test_control_matrix_records_which_control_flags_which_measurement() -> None:
    r = run_claim(make_claim("t.matrix", two_measurements, controls={"a": "x", "b": "y"}))
    assert r.verdict == "holds" and r.control == "flagged"
    assert r.matrix == {"m1": {"a": True, "b": False}, "m2": {"a": False, "b": True}}
    assert [cr.flagged for cr in r.controls] == [["m1"], ["m2"]]


def test_a_measurement_no_control_flags_makes_the_claim_unfalsifiable() -> None:
    # control a flags m1, so the claim-level "some measurement failed" rule would pass; m2 is vacuous
    r = run_claim(make_claim("t.vacuous", two_measurements, controls={"a": "x"}))
    assert (r.verdict, r.unflagged, r.idle_controls) == ("UNFALSIFIABLE", ["m2"], [])


def test_a_control_that_flags_nothing_makes_the_claim_unfalsifiable() -> None:
    r = run_claim(make_claim("t.idle", two_measurements, controls=ABC))
    assert (r.verdict, r.unflagged, r.idle_controls) == ("UNFALSIFIABLE", [], ["c"])
    assert "flags nothing: c" in report.control_text(r)


def test_informational_measurements_are_shown_but_never_counted() -> None:
    def body(ctx: Context) -> list[Measurement]:
        return [meas(1.0 if ctx.bug("a") else 0.0, name="m1"),
                meas(5.0, name="info", counted=False)]  # fails, but is informational

    r = run_claim(make_claim("t.info", body, controls={"a": "x"}))
    assert r.verdict == "holds" and list(r.matrix) == ["m1"]
    assert [c.passed for c in r.measurements] == [True, False]
    only_info = run_claim(make_claim("t.onlyinfo", lambda ctx: [meas(0.0, counted=False)]))
    assert only_info.verdict == "ERROR" and "counted" in only_info.error


def test_a_control_missing_the_measurement_does_not_flag_it() -> None:
    def body(ctx: Context) -> list[Measurement]:
        if ctx.bug("a"):
            return [meas(9.0, name="other")]
        return [meas(0.0, name="m1")]

    r = run_claim(make_claim("t.missing", body, controls={"a": "x"}))
    assert r.verdict == "UNFALSIFIABLE" and r.unflagged == ["m1"]


def test_a_misspelt_control_name_raises_and_controls_must_be_named() -> None:
    r = run_claim(make_claim("t.typo", lambda ctx: [meas(float(ctx.bug("alpha_droped")))],
                             controls={"alpha_dropped": "x"}))
    assert r.verdict == "ERROR" and "declares no control 'alpha_droped'" in r.error
    with pytest.raises(ValueError, match="identifier"):
        make_claim("t.badname", sensitive(), controls={"not a name": "x"})
    with pytest.raises(ValueError, match="one-line"):
        make_claim("t.nodesc", sensitive(), controls={"a": "  "})
    with pytest.raises(ValueError, match="controls declared"):
        make_claim("t.both", sensitive(), controls={"a": "x"}, control="none", control_reason="r")


def test_control_matrix_in_json_and_markdown(tmp_path: Path) -> None:
    run_claims([make_claim("t.md", two_measurements, controls={"a": "bug A", "b": "bug B"})],
               out_dir=tmp_path)
    doc = load_strict(tmp_path / "report.json")
    entry = doc["claims"][0]
    assert entry["matrix"] == {"m1": {"a": True, "b": False}, "m2": {"a": False, "b": True}}
    assert [c["name"] for c in entry["controls"]] == ["a", "b"]
    assert doc["summary"]["matrix"] == {"counted_measurements": 2, "controls": 2, "cells": 4,
                                        "flagged_cells": 2, "informational": 0}
    md = (tmp_path / "report.md").read_text()
    assert "| measurement | a | b |" in md and "| m1 | X | - |" in md and "`b`: bug B" in md


# --------------------------------------------------------------------------- seed ensembles


def seed_dependent(threshold: float) -> Callable[[Context], list[Measurement]]:
    """Passes when the claim's first uniform draw is below ``threshold``."""
    def body(ctx: Context) -> list[Measurement]:
        u = ctx.rng.random()
        return [meas(1.0 if ctx.bug("bump") else float(u > threshold), tol=0.5)]
    return body


def test_seed_ensemble_flags_a_verdict_that_changes_with_the_seed(tmp_path: Path) -> None:
    c = make_claim("t.coin", seed_dependent(0.5))
    run = run_claims([c], seeds=range(10), out_dir=tmp_path)
    verdicts = {r.seed: r.verdict for r in run.results}
    assert set(verdicts.values()) == {"holds", "VIOLATED"}  # 10 seeds: both outcomes occur
    assert run.ensemble["t.coin"]["verdict"] == "UNSTABLE" and not run.ok
    doc = load_strict(tmp_path / "report.json")
    assert doc["summary"]["unstable"] == ["t.coin"] and len(doc["claims"]) == 10
    assert doc["seeds"] == list(range(10)) and "**UNSTABLE**" in (tmp_path / "report.md").read_text()


def test_seed_ensemble_of_stable_claims_is_ok_and_keeps_every_seed() -> None:
    run = run_claims([make_claim("t.always", seed_dependent(2.0))], seeds=[3, 4, 5])
    assert [r.seed for r in run.results] == [3, 4, 5] and run.ok
    assert all(r.reused_from is None and r.used_seed for r in run.results)
    assert run.ensemble["t.always"] == {"verdicts": {3: "holds", 4: "holds", 5: "holds"},
                                         "verdict": "holds", "seed_independent": False}


def test_a_claim_that_reads_no_seed_runs_once_in_an_ensemble() -> None:
    calls: list[int] = []

    def body(ctx: Context) -> list[Measurement]:
        calls.append(1)
        return [meas(1.0 if ctx.bug("bump") else 0.0)]

    run = run_claims([make_claim("t.fixed", body)], seeds=range(5))
    assert len(calls) == 2  # stated + control, at the first seed only
    assert [r.reused_from for r in run.results] == [None, 0, 0, 0, 0] and run.ok
    assert run.ensemble["t.fixed"]["seed_independent"]


def test_reading_the_seed_in_a_control_only_counts_as_seeded() -> None:
    def body(ctx: Context) -> list[Measurement]:
        return [meas(ctx.rng.random() + 1.0 if ctx.bug("bump") else 0.0)]

    r = run_claim(make_claim("t.ctlseed", body))
    assert r.used_seed and r.verdict == "holds"


def test_bad_seed_lists_are_rejected() -> None:
    with pytest.raises(ValueError, match="distinct"):
        run_claims([GOOD], seeds=[1, 1])
    with pytest.raises(ValueError, match="non-empty"):
        run_claims([GOOD], seeds=[])


def test_reduced_profile_is_full_with_the_documented_overrides() -> None:
    def body(ctx: Context) -> list[Measurement]:
        return [meas(1.0 if ctx.bug("bump") else 0.0, extra=dict(ctx.params))]

    c = make_claim("t.red", body, quick={"n": 1}, full={"n": 100, "d": 4}, reduced={"n": 10},
                   reduced_reason="n cut to 10: the check is a rounding bound, independent of n")
    assert c.params("reduced") == {"n": 10, "d": 4} and c.params("full") == {"n": 100, "d": 4}
    assert run_claim(c, profile="reduced").measurements[0].measurement.extra == {"n": 10, "d": 4}
    with pytest.raises(ValueError, match="unknown full parameters"):
        make_claim("t.red2", body, full={"n": 1}, reduced={"m": 2}, reduced_reason="r")
    with pytest.raises(ValueError, match="reduced_reason"):
        make_claim("t.red3", body, full={"n": 1}, reduced={"n": 2})

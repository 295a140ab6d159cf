"""Issue 24: bad input gives one line on stderr and a non-zero exit, never a traceback; a run
loses nothing (disk full, a second Ctrl-C, a claim with an unserialisable ``extra``), and output
folders are never silently overwritten or mixed.
"""
from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path
from typing import Any, Callable

import pytest

import numerics.atomic as atomic
import numerics.samplers as samplers
from numerics.checks import examples, report
from numerics.checks.claim import Claim, Context, Measurement, claim
from numerics.cli import MAX_SAMPLES, main

PREFIX = "guidance-verify: error:"


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def one_error_line(capsys: pytest.CaptureFixture[str], needle: str) -> str:
    lines = stderr_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith(PREFIX) and needle in lines[0], lines[0]
    assert "Traceback" not in lines[0]
    return lines[0]


def registry_with(*bodies: tuple[str, Callable[[Context], Any]]) -> dict[str, Claim]:
    reg: dict[str, Claim] = {}
    for cid, body in bodies:
        claim(id=cid, paper=cid.split(".")[0], statement=f"statement of {cid}", note="test",
              provenance="reconstructed", registry=reg,
              controls={"bump": "a bug that moves the measurement (test only)"})(body)
    return reg


def measure(value: float = 0.0, **extra: Any) -> list[Measurement]:
    return [Measurement(name="m", measured=value, predicted=0.0, kind="equal", tol=0.1,
                        reason="test tolerance", extra=extra)]


def sensitive(ctx: Context) -> list[Measurement]:
    return measure(1.0 if ctx.broken else 0.0)


def load(path: Path) -> dict[str, Any]:
    def refuse(token: str) -> Any:
        raise AssertionError(f"invalid JSON constant {token}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture
def no_sampling(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the sampler by a recorder: a check that should come first must not sample."""
    calls: list[Any] = []
    monkeypatch.setattr(samplers, "sample", lambda *a, **k: calls.append((a, k)))
    return calls


# --------------------------------------------------------------------------- command-line fuzz

HUGE = "9" * 5000
FUZZ: list[tuple[list[str], str]] = [
    ([], "<command>"),
    (["frobnicate"], "frobnicate"),
    (["run", "--seed", "-1"], "--seed"),
    (["run", "--seed", "abc"], "--seed"),
    (["run", "--seed", ""], "--seed"),
    (["run", "--seed", "1.5"], "--seed"),
    (["run", "--seed", "1e30"], "--seed"),
    (["run", "--seed", HUGE], "--seed"),
    (["run", "--seed", "nan"], "--seed"),
    (["run", "--seed"], "--seed"),
    (["run", "--profile", ""], "profile"),
    (["run", "--profile", "medium"], "medium"),
    (["run", "--only", ""], "--only"),
    (["run", "--only"], "--only"),
    (["run", "--out", ""], "--out"),
    (["run", "--out", " "], "--out"),
    (["run", "--out", "a\0b"], "--out"),
    (["run", "--baseline", ""], "--baseline"),
    (["run", "--baseline", "/nonexistent/report.json"], "--baseline"),
    (["run", "--no-control=1"], "--no-control"),
    (["run", "--frobnicate"], "--frobnicate"),
    (["list", "--only", "x"], "--only"),
    (["list", "extra"], "extra"),
    (["derive", "--out", ""], "--out"),
    (["derive", "--latex=yes"], "--latex"),
    (["sample", "--n", "1e13"], "--n"),
    (["sample", "--n", str(MAX_SAMPLES + 1)], "--n"),
    (["sample", "--n", "0"], "--n"),
    (["sample", "--n", "-5"], "--n"),
    (["sample", "--n", "abc"], "--n"),
    (["sample", "--n", ""], "--n"),
    (["sample", "--n", "1.5"], "--n"),
    (["sample", "--n", "inf"], "--n"),
    (["sample", "--n", HUGE], "--n"),
    (["sample", "--guidance", "nan"], "--guidance"),
    (["sample", "--guidance", "inf"], "--guidance"),
    (["sample", "--guidance", "1e400"], "--guidance"),
    (["sample", "--guidance", "abc"], "--guidance"),
    (["sample", "--guidance", ""], "--guidance"),
    (["sample", "--label", "-1"], "--label"),
    (["sample", "--label", "abc"], "--label"),
    (["sample", "--label", "1e20"], "--label"),
    (["sample", "--label", ""], "--label"),
    (["sample", "--seed", "-1"], "--seed"),
    (["sample", "--seed", ""], "--seed"),
    (["sample", "--target", ""], "--target"),
    (["sample", "--target", "moons"], "--target"),
    (["sample", "--method", ""], "--method"),
    (["sample", "--method", "rk4"], "--method"),
    (["sample", "--out", ""], "--out"),
    (["bench", "--json", ""], "--json"),
    (["bench", "--json", "/nonexistent-dir/x.json"], "--json"),
    (["bench", "--quick=yes"], "--quick"),
    (["bench", "--frobnicate", "3"], "--frobnicate"),
]


@pytest.mark.parametrize("argv,needle", FUZZ, ids=[" ".join(a)[:40] or "(empty)" for a, _ in FUZZ])
def test_command_line_fuzz(argv: list[str], needle: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch, no_sampling: list[Any],
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written anywhere, least of all the cwd
    assert main(argv, registry=examples.CLAIMS) == 2
    line = one_error_line(capsys, needle)
    assert len(line) < 300
    assert list(tmp_path.iterdir()) == [] and no_sampling == []


@pytest.mark.parametrize("argv,needle", [
    (["--guidance", "-1"], "--guidance"),
    (["--label", "7", "--guidance", "2"], "--label"),
])
def test_sample_values_the_api_rejects_are_one_line(argv: list[str], needle: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["sample", "--n", "8", "--out", str(out), *argv]) == 2
    one_error_line(capsys, needle)
    assert not out.exists()  # the folder made for it is removed again


def test_n_accepts_an_integral_float_literal(no_sampling: list[Any], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import numerics.cli_sample as cli_sample

    got: list[Any] = []
    monkeypatch.setattr(cli_sample, "run", lambda args: got.append(args.n) or 0)
    assert main(["sample", "--n", "1e3", "--out", str(tmp_path / "o")]) == 0
    assert got == [1000]


# --------------------------------------------------------------------------- sample --out


def test_sample_out_existing_file_is_refused_before_sampling(
        tmp_path: Path, no_sampling: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("keep")
    assert main(["sample", "--out", str(f)]) == 2
    one_error_line(capsys, "--out")
    assert f.read_text() == "keep" and no_sampling == []


def test_sample_out_read_only_place_is_refused_before_sampling(
        no_sampling: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "--out", "/proc/gv-no-such-dir/out"]) == 2  # read-only even for root
    one_error_line(capsys, "--out")
    assert no_sampling == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder anyway")
def test_sample_out_chmod_read_only_folder(tmp_path: Path, no_sampling: list[Any],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["sample", "--out", str(ro)]) == 2
    finally:
        ro.chmod(0o755)
    one_error_line(capsys, "--out")


def test_sample_out_immutable_folder_is_refused_before_sampling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_sampling: list[Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    import numerics.cli as cli

    def eperm(*a: Any, **k: Any) -> Any:  # what chattr +i gives, even to root
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(cli.tempfile, "mkstemp", eperm)
    assert main(["sample", "--out", str(tmp_path)]) == 2
    assert "Operation not permitted" in one_error_line(capsys, "--out")
    assert no_sampling == []


def test_sample_out_with_samples_needs_force(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    assert main(["sample", "--n", "16", "--out", str(out)]) == 0
    before = (out / "samples.npy").read_bytes()
    capsys.readouterr()
    assert main(["sample", "--n", "16", "--seed", "1", "--out", str(out)]) == 2
    assert "--force" in one_error_line(capsys, "--out")
    assert (out / "samples.npy").read_bytes() == before
    assert main(["sample", "--n", "16", "--seed", "1", "--out", str(out), "--force"]) == 0
    assert (out / "samples.npy").read_bytes() != before


def test_sample_write_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import numerics.cli_sample as cli_sample

    def full(path: Any, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(cli_sample, "atomic_write_bytes", full)
    assert main(["sample", "--n", "8", "--out", str(tmp_path / "s")]) == 1
    assert "No space left" in one_error_line(capsys, "samples.npy")


# --------------------------------------------------------------------------- run --baseline


@pytest.mark.parametrize("text,needle", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),                         # RecursionError
    ('{"claims": [{"id": "a.b", "measurements": [{"name": "m", "measured": 1' + "0" * 400
     + "}]}]}", "float range"),                                                   # OverflowError
    ('{"claims": [{"id": "a.b", "measurements": [{"name": "m", "measured": 1' + "0" * 5000
     + "}]}]}", "not valid JSON"),                                                # int digit limit
    ("\xff\xfe", "not valid JSON"),
    ('{"claims": [[1]]}', "malformed"),
    ('{"claims": "x"}', "not a guidance-verify report"),
])
def test_bad_baseline_is_one_line(text: str, needle: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base.json"
    base.write_text(text, encoding="latin-1")
    out = tmp_path / "out"
    assert main(["run", "--baseline", str(base), "--out", str(out)], registry=examples.CLAIMS) == 2
    assert "--baseline" in one_error_line(capsys, needle)
    assert not out.exists()


def test_baseline_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--baseline", str(tmp_path), "--out", str(tmp_path / "o")],
                registry=examples.CLAIMS) == 2
    one_error_line(capsys, "--baseline")


# --------------------------------------------------------------------------- disk full


def _enospc_after(monkeypatch: pytest.MonkeyPatch, good: int, bad: int | None = None) -> list[str]:
    """Let ``good`` atomic writes through, then fail ``bad`` of them (all if None) with ENOSPC."""
    real = atomic.atomic_write_bytes
    log: list[str] = []

    def write(path: Any, data: bytes) -> None:
        n = len(log)
        log.append(Path(path).name)
        if n >= good and (bad is None or n < good + bad):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(atomic, "atomic_write_bytes", write)  # atomic_write_text goes through it
    monkeypatch.setattr(report, "atomic_write_bytes", write)  # the figures
    return log


def test_disk_full_during_run_keeps_the_last_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[str] = []

    def body(cid: str) -> Callable[[Context], list[Measurement]]:
        return lambda ctx: ran.append(cid) or sensitive(ctx)

    reg = registry_with(("t.first", body("t.first")), ("t.second", body("t.second")))
    # the first report (json + md) is written, then the disk is full for good
    _enospc_after(monkeypatch, good=2)
    assert main(["run", "--out", str(tmp_path)], registry=reg) == 1
    line = one_error_line(capsys, "No space left on device")
    assert "--out" in line
    doc = load(tmp_path / "report.json")  # still the last valid one
    assert doc["status"] == "running" and doc["claims"] == []
    assert "t.second" not in ran  # the run stopped: nothing more could be recorded
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_transient_write_error_marks_the_run_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    reg = registry_with(("t.first", sensitive), ("t.second", sensitive))
    # json, md and one more write ok; then one write fails: the CLI draws figures in another process, so the
    # first claim's figure lands before or after its report.json, and the failing write is that report.json
    # or the report.md after it; either way a report write failed and the run must say so
    log = _enospc_after(monkeypatch, good=3, bad=1)
    assert main(["run", "--out", str(tmp_path)], registry=reg) == 1
    one_error_line(capsys, "No space left on device")
    doc = load(tmp_path / "report.json")
    assert doc["status"] == "failed" and "No space left on device" in doc["error"]
    assert [c["id"] for c in doc["claims"]] == ["t.first"] and doc["summary"]["ok"] is False
    assert "status **failed**" in (tmp_path / "report.md").read_text()
    assert log[3] in ("report.json", "report.md") and log[:2] == ["report.json", "report.md"]


# --------------------------------------------------------------------------- second Ctrl-C


def _stop(ctx: Context) -> list[Measurement]:
    raise KeyboardInterrupt


def test_second_ctrl_c_inside_the_final_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    real = report.write_report
    hits: list[str] = []

    def write(run: Any, out: Any) -> None:
        if run.status == "interrupted" and not hits:
            hits.append(run.status)
            raise KeyboardInterrupt  # the second Ctrl-C, during the clean-up write
        real(run, out)

    monkeypatch.setattr(report, "write_report", write)
    reg = registry_with(("t.ok", sensitive), ("t.stop", _stop), ("t.never", sensitive))
    assert main(["run", "--out", str(tmp_path)], registry=reg) == 130
    assert "Traceback" not in capsys.readouterr().err
    doc = load(tmp_path / "report.json")
    assert doc["status"] == "interrupted" and hits == ["interrupted"]
    assert [c["id"] for c in doc["claims"]] == ["t.ok", "t.stop"]


def test_ctrl_c_on_every_final_write_leaves_the_last_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    real = report.write_report

    def write(run: Any, out: Any) -> None:
        if run.status != "running":
            raise KeyboardInterrupt
        real(run, out)

    monkeypatch.setattr(report, "write_report", write)
    reg = registry_with(("t.ok", sensitive), ("t.stop", _stop))
    assert main(["run", "--out", str(tmp_path)], registry=reg) == 130
    assert "Traceback" not in capsys.readouterr().err
    doc = load(tmp_path / "report.json")  # the last complete write: after t.ok
    assert doc["status"] == "running" and [c["id"] for c in doc["claims"]] == ["t.ok"]


def test_sigint_is_held_back_during_the_final_write(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real = report.write_report

    def write(run: Any, out: Any) -> None:
        if run.status == "complete":
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C in the middle of the write
        real(run, out)

    monkeypatch.setattr(report, "write_report", write)
    assert main(["run", "--out", str(tmp_path)], registry=registry_with(("t.ok", sensitive))) == 0
    assert load(tmp_path / "report.json")["status"] == "complete"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


# --------------------------------------------------------------------------- faulty extras


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _cyclic(ctx: Context) -> list[Measurement]:
    d: dict[str, Any] = {"name": "loop"}
    d["self"] = d
    lst: list[Any] = [1]
    lst.append(lst)
    return measure(1.0 if ctx.broken else 0.0, cycle=d, lst=lst)


def _huge(ctx: Context) -> list[Measurement]:
    return measure(1.0 if ctx.broken else 0.0, big=10**4300, neg=-(10**400), fine=2**60,
                   drift_tol=10**4300, **{"k": {10**5000: 1}})


def _objects(ctx: Context) -> list[Measurement]:
    deep: list[Any] = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    return measure(1.0 if ctx.broken else 0.0, obj=object(), bad=_BadRepr(), deep=deep,
                   fn=lambda: None, s={1, 2})


def test_a_faulty_extra_never_stops_the_run(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[str] = []

    def normal(ctx: Context) -> list[Measurement]:
        ran.append("normal")
        return sensitive(ctx)

    reg = registry_with(("t.cyclic", _cyclic), ("t.huge", _huge), ("t.objects", _objects),
                        ("t.normal", normal))
    assert main(["run", "--out", str(tmp_path)], registry=reg) == 0
    assert ran == ["normal", "normal"]  # stated run and control
    doc = load(tmp_path / "report.json")
    assert doc["status"] == "complete" and [c["verdict"] for c in doc["claims"]] == ["holds"] * 4
    extra = {c["id"]: c["measurements"][0]["extra"] for c in doc["claims"]}
    assert extra["t.cyclic"]["cycle"]["self"] == "<cycle: dict>"
    assert extra["t.cyclic"]["lst"] == [1, "<cycle: list>"]
    assert extra["t.huge"]["big"].startswith("<int too large for float: ~1.000000e+4300")
    assert extra["t.huge"]["neg"].startswith("<int too large for float: ~-1.0")
    assert extra["t.huge"]["fine"] == 2**60
    assert list(extra["t.huge"]["k"]) == ["<int too large for float: ~1.000000e+5000>"]
    assert extra["t.objects"]["obj"].startswith("<object object at")
    assert extra["t.objects"]["bad"] == "<unserialisable _BadRepr: RuntimeError>"
    assert "nested deeper than" in json.dumps(extra["t.objects"]["deep"])
    assert sorted(extra["t.objects"]["s"]) == [1, 2]


def test_a_huge_drift_tol_with_a_baseline(tmp_path: Path) -> None:
    reg = registry_with(("t.huge", _huge))
    assert main(["run", "--out", str(tmp_path / "a")], registry=reg) == 0
    assert main(["run", "--out", str(tmp_path / "b"), "--baseline",
                 str(tmp_path / "a" / "report.json")], registry=reg) == 0


def test_report_of_a_claim_whose_params_cannot_be_copied(tmp_path: Path) -> None:
    import threading

    reg: dict[str, Claim] = {}
    claim(id="t.lock", paper="t", statement="s", note="n", provenance="standard",
          quick={"lock": threading.Lock()}, registry=reg, control="none",
          control_reason="test")(lambda ctx: measure())
    from numerics.checks.runner import run_claims

    run = run_claims(list(reg.values()) + list(registry_with(("t.ok", sensitive)).values()),
                     out_dir=tmp_path)
    doc = load(tmp_path / "report.json")
    assert run.status == "complete" and [c["id"] for c in doc["claims"]] == ["t.lock", "t.ok"]
    assert [c["verdict"] for c in doc["claims"]] == ["ERROR", "holds"]
    assert doc["claims"][0]["params"].startswith("<params not copyable: TypeError")


# --------------------------------------------------------------------------- run --out reuse


def test_rerun_into_the_same_out_clears_the_old_run(tmp_path: Path) -> None:
    assert main(["run", "--out", str(tmp_path)], registry=examples.CLAIMS) == 0
    first = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert len(first) == 2 and "examples.gaussian_mean.png" in first
    (tmp_path / "figures" / "mine.png").write_bytes(b"the user's own figure")
    (tmp_path / ".report.json.abc.tmp").write_text("torn")
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["run", "--out", str(tmp_path), "--only", "examples.gaussian_mean"],
                registry=examples.CLAIMS) == 0
    # the first run's other figure is gone; a figure its report did not list is kept
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["examples.gaussian_mean.png", "mine.png"]
    assert [c["id"] for c in load(tmp_path / "report.json")["claims"]] == ["examples.gaussian_mean"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / ".report.json.abc.tmp").exists()


def test_out_without_an_earlier_report_keeps_its_figures(tmp_path: Path) -> None:
    """A folder that never held a run (no report.json of ours) keeps its figures/*.png and report.md."""
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "plot.png").write_bytes(b"png")
    (tmp_path / "report.md").write_text("my notes")
    (tmp_path / "report.json").write_text('{"not": "ours"}')
    from numerics.checks.report import clear_outputs

    assert clear_outputs(tmp_path) == []
    assert (tmp_path / "figures" / "plot.png").exists() and (tmp_path / "report.md").read_text() == "my notes"


@pytest.mark.parametrize("make", ["file", "immutable"])
def test_run_out_unwritable_is_one_line(make: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import numerics.cli as cli

    out = tmp_path / "o"
    if make == "file":
        out.write_text("x")
    else:
        def eperm(*a: Any, **k: Any) -> Any:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(cli.tempfile, "mkstemp", eperm)
    assert main(["run", "--out", str(out)], registry=examples.CLAIMS) == 2
    one_error_line(capsys, "--out")


def test_derive_out_is_checked_before_the_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import sys
    import types

    calls: list[str] = []
    fake = types.ModuleType("theory.derive")
    fake.print_all = lambda latex: calls.append("print")  # type: ignore[attr-defined]
    fake.write_markdown = lambda out: calls.append("write")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "theory.derive", fake)
    f = tmp_path / "f"
    f.write_text("x")
    assert main(["derive", "--out", str(f)]) == 2
    one_error_line(capsys, "--out")
    assert calls == []


def test_bench_json_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--json", str(tmp_path)]) == 2
    one_error_line(capsys, "--json")


def test_an_unexpected_error_in_the_report_is_one_line(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    def broken(run: Any) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(report, "render_markdown", broken)
    assert main(["run", "--out", str(tmp_path)], registry=registry_with(("t.ok", sensitive))) == 1
    assert "renderer bug" in one_error_line(capsys, "internal error")
    assert load(tmp_path / "report.json")["status"] == "failed"

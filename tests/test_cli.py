"""The guidance-verify command line, driven through ``main(argv, registry=...)``.

Claims are injected with the ``registry=`` argument of ``main`` (a dict id -> Claim) or, for
``load_all``, with the environment variable GUIDANCE_VERIFY_CLAIM_MODULES.
"""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from numerics.checks import CLAIM_MODULES_ENV, examples
from numerics.checks.claim import Claim, Context, Measurement, claim
from numerics.cli import main

ROOT = Path(__file__).resolve().parents[1]


def registry_with(*bodies: tuple[str, Any], expect: str = "holds") -> dict[str, Claim]:
    reg: dict[str, Claim] = {}
    for cid, body in bodies:
        claim(id=cid, paper=cid.split(".")[0], statement=f"statement of {cid}", note="test",
              provenance="reconstructed", expect=expect, registry=reg,
              controls={"bump": "a bug that moves the measurement (test only)"})(body)
    return reg


def m(value: float) -> list[Measurement]:
    return [Measurement(name="m", measured=value, predicted=0.0, kind="equal", tol=0.1,
                        reason="test tolerance")]


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_run_examples_writes_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "--out", str(tmp_path), "--seed", "2"], registry=examples.CLAIMS)
    out = capsys.readouterr().out
    assert rc == 0
    for cid in examples.CLAIMS:
        assert cid in out
        assert (tmp_path / "figures" / f"{cid}.png").read_bytes()[:4] == b"\x89PNG"
    assert "holds" in out and "fails-as-predicted" in out and "wall time" in out
    doc = load(tmp_path / "report.json")
    assert doc["status"] == "complete" and doc["seed"] == 2 and doc["summary"]["ok"] is True
    assert "examples.gaussian_mean" in (tmp_path / "report.md").read_text()


def test_run_default_out_is_timestamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--only", "examples.gaussian_mean"], registry=examples.CLAIMS) == 0
    runs = list((tmp_path / "results").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("Z")
    assert load(runs[0] / "report.json")["planned"] == ["examples.gaussian_mean"]


def test_unfalsifiable_claim_exits_nonzero(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    reg = registry_with(("t.blind", lambda ctx: m(0.0)))
    assert main(["run", "--out", str(tmp_path)], registry=reg) == 1
    assert "UNFALSIFIABLE" in capsys.readouterr().out
    assert load(tmp_path / "report.json")["claims"][0]["control"] == "NOT FLAGGED"


def test_no_control_skips_it(tmp_path: Path) -> None:
    reg = registry_with(("t.blind", lambda ctx: m(0.0)))
    assert main(["run", "--out", str(tmp_path), "--no-control"], registry=reg) == 0
    assert load(tmp_path / "report.json")["claims"][0]["control"] == "skipped"


def test_error_claim_does_not_stop_the_others(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def boom(ctx: Context) -> list[Measurement]:
        raise KeyError("missing parameter [x]")

    reg = {**registry_with(("t.boom", boom)), **examples.CLAIMS}
    assert main(["run", "--out", str(tmp_path)], registry=reg) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "missing parameter" in out and "[x]" in out  # brackets survive markup
    assert [c["verdict"] for c in load(tmp_path / "report.json")["claims"]] == [
        "ERROR", "holds", "fails-as-predicted"]


@pytest.mark.parametrize("exc,code", [(SystemExit(0), 1), (SystemExit(4), 1),
                                      (KeyboardInterrupt(), 130)])
def test_interrupt_via_main(tmp_path: Path, exc: BaseException, code: int) -> None:
    def stop(ctx: Context) -> list[Measurement]:
        raise exc

    reg = {**examples.CLAIMS, **registry_with(("t.stop", stop), ("t.never", lambda c: m(0.0)))}
    assert main(["run", "--out", str(tmp_path)], registry=reg) == code
    doc = load(tmp_path / "report.json")
    assert doc["status"] == "interrupted"
    assert [c["id"] for c in doc["claims"]] == [*examples.CLAIMS, "t.stop"]


@pytest.mark.parametrize("argv,needle", [
    (["run", "--only", "nothing.*"], "nothing.*"),
    (["run", "--only", "examples.*", "nope"], "nope"),
    (["run", "--profile", "medium"], "medium"),
    (["run", "--baseline", "/nonexistent/report.json"], "/nonexistent/report.json"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)], registry=examples.CLAIMS) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("guidance-verify: error")
    assert not out.exists()  # nothing is created before the input is validated


def test_unwritable_out_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--out", str(blocker / "sub")], registry=examples.CLAIMS) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "cannot write to --out" in lines[0]


@pytest.mark.parametrize("argv", [["run", "--seed", "-1"], ["run", "--frobnicate"],
                                  ["sample", "--target", "moons"], []])
def test_argparse_errors_exit_2(argv: list[str]) -> None:
    assert main(argv, registry=examples.CLAIMS) == 2


def test_help_reads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for word in ("run", "list", "derive", "sample"):
        assert word in text
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--profile", "--only", "--out", "--seed", "--baseline", "--no-control"):
        assert option in text


def test_baseline_drift_via_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    assert main(["run", "--out", str(base)], registry=examples.CLAIMS) == 0
    assert main(["run", "--out", str(tmp_path / "same"), "--baseline",
                 str(base / "report.json")], registry=examples.CLAIMS) == 0
    doc = load(base / "report.json")
    doc["claims"][1]["measurements"][1]["measured"] += 1.0  # the exact "gap" of the counterexample
    (tmp_path / "moved.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["run", "--out", str(tmp_path / "drift"), "--baseline",
                 str(tmp_path / "moved.json")], registry=examples.CLAIMS) == 1
    assert "DRIFT" in capsys.readouterr().out
    new = load(tmp_path / "drift/report.json")
    assert new["claims"][1]["verdict"] == "fails-as-predicted"
    assert [d["measurement"] for d in new["claims"][1]["drift"]] == ["gap"]
    assert new["claims"][0]["drift"] == [] and new["summary"]["ok"] is False


def test_list_shows_claims(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"], registry=examples.CLAIMS) == 0
    out = capsys.readouterr().out
    assert "examples.gaussian_mean" in out and "fails-as-predicted" in out


def test_env_var_selects_claim_modules(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(CLAIM_MODULES_ENV, "numerics.checks.examples")
    assert main(["list"]) == 0
    assert "examples.variance_identity_fails" in capsys.readouterr().out
    monkeypatch.setenv(CLAIM_MODULES_ENV, "numerics.checks.examples,gv_no_such_module")
    assert main(["list"]) == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "gv_no_such_module" in lines[0]


def test_derive_calls_theory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, Any]] = []
    fake = types.ModuleType("theory.derive")
    fake.print_all = lambda latex: calls.append(("print_all", latex))  # type: ignore[attr-defined]
    fake.write_markdown = lambda out: calls.append(("write_markdown", out))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "theory.derive", fake)
    assert main(["derive", "--latex", "--out", str(tmp_path / "d")]) == 0
    assert calls == [("print_all", True), ("write_markdown", str(tmp_path / "d"))]
    calls.clear()
    assert main(["derive"]) == 0
    assert calls == [("print_all", False)]


def test_sample_delegates_to_cli_sample(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    got: list[Any] = []
    fake = types.ModuleType("numerics.cli_sample")
    fake.run = lambda args: got.append(args) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "numerics.cli_sample", fake)
    rc = main(["sample", "--target", "atoms", "--method", "ddpm", "--n", "5", "--guidance",
               "2.5", "--label", "1", "--seed", "3", "--out", str(tmp_path / "x")])
    assert rc == 7
    a = got[0]
    assert (a.target, a.method, a.n, a.guidance, a.label, a.seed, a.out) == (
        "atoms", "ddpm", 5, 2.5, 1, 3, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()  # the folder made for a failed sample is removed


def test_import_of_cli_is_cheap() -> None:
    code = ("import sys, numerics; before = set(sys.modules); import numerics.cli;"
            "new = {m.split('.')[0] for m in set(sys.modules) - before};"
            "print(sorted(new & {'numpy', 'matplotlib', 'rich', 'scipy', 'numba', 'sympy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_console_script_runs_as_a_module(tmp_path: Path) -> None:
    env = {**__import__("os").environ, CLAIM_MODULES_ENV: "numerics.checks.examples",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "numerics.cli", "run", "--out",
                           str(tmp_path), "--only", "examples"], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert load(tmp_path / "report.json")["summary"]["n_finished"] == 2


def test_sigterm_completes_the_report_as_interrupted(tmp_path: Path) -> None:
    """kill / timeout / a batch scheduler send SIGTERM: the run stops like after Ctrl-C, the report is
    complete JSON saying INTERRUPTED by SIGTERM, and the exit status is 143 (128 + 15)."""
    import os
    import signal
    import threading

    def slow(ctx: Context) -> list[Measurement]:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        import time
        time.sleep(10)
        return m(0.0)

    before = signal.getsignal(signal.SIGTERM)
    reg = {**examples.CLAIMS, **registry_with(("t.slow", slow), ("t.never", lambda c: m(0.0)))}
    assert main(["run", "--out", str(tmp_path)], registry=reg) == 143
    doc = load(tmp_path / "report.json")
    assert doc["status"] == "interrupted" and doc["interrupted_by"] == "SIGTERM"
    assert [c["id"] for c in doc["claims"]] == [*examples.CLAIMS, "t.slow"]
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is restored

"""Claim modules are found through the entry-point group ``guidance_verify.claims``.

A third-party claim package is faked without pip: the package (``tests/plugins/gv_demo_claims``) is
copied into ``tmp_path`` next to a ``<name>-<version>.dist-info`` folder with ``METADATA`` and
``entry_points.txt``, and ``tmp_path`` goes on ``sys.path`` (in-process) or ``PYTHONPATH`` (a
subprocess), which is all ``importlib.metadata`` needs to see an installed distribution.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

import numerics.checks as checks
from numerics.checks import CLAIM_MODULES_ENV, CLAIMS_GROUP, DISTRIBUTION
from numerics.checks.claim import REGISTRY
from numerics.checks.runner import run_claims
from numerics.cli import main

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"
DEMO_IDS = ["demo.posterior_is_logistic", "demo.posterior_averages_to_prior"]


def fake_distribution(site: Path, name: str, entry_points: str) -> None:
    """An installed distribution ``name`` 0.1 in ``site`` declaring ``entry_points`` (file text)."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def demo_site(site: Path) -> Path:
    """``site`` holding the demo claim package, installed as distribution gv-demo-claims."""
    shutil.copytree(PLUGINS / "gv_demo_claims", site / "gv_demo_claims",
                    ignore=shutil.ignore_patterns("__pycache__"))
    fake_distribution(site, "gv-demo-claims", f"[{CLAIMS_GROUP}]\ndemo = gv_demo_claims.claims\n")
    return site


def own_modules() -> list[str]:
    """The claim modules guidance-verify itself declares, in entry-point name order."""
    eps = importlib.metadata.distribution(DISTRIBUTION).entry_points.select(group=CLAIMS_GROUP)
    return [ep.value for ep in sorted(eps, key=lambda ep: ep.name)]


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No GUIDANCE_VERIFY_CLAIM_MODULES; afterwards the gv_* modules are forgotten, with their
    claims. (Claims of modules that stay imported stay registered: load_all finds the claims of
    an already imported module in REGISTRY.)"""
    monkeypatch.delenv(CLAIM_MODULES_ENV, raising=False)
    yield monkeypatch
    for cid in [k for k, c in REGISTRY.items() if c.module.startswith("gv_")]:
        del REGISTRY[cid]
    for name in [m for m in sys.modules if m.startswith("gv_")]:
        del sys.modules[name]
    importlib.invalidate_caches()


# --------------------------------------------------------------------------- our own papers


def test_own_entry_points_are_the_paper_folders() -> None:
    """Every folder of numerics/papers with a claims.py is declared, under its own name, and
    nothing else is: a new paper folder cannot be forgotten in pyproject.toml."""
    eps = importlib.metadata.distribution(DISTRIBUTION).entry_points.select(group=CLAIMS_GROUP)
    declared = {ep.name: ep.value for ep in eps}
    folders = sorted(p.name for p in (ROOT / "numerics" / "papers").iterdir()
                     if (p / "claims.py").is_file())
    assert folders, "no paper folder found"
    assert declared == {p: f"numerics.papers.{p}.claims" for p in folders}


def test_own_claims_belong_to_the_paper_their_entry_point_names(isolated: Any) -> None:
    eps = importlib.metadata.distribution(DISTRIBUTION).entry_points.select(group=CLAIMS_GROUP)
    for ep in eps:
        claims = checks.load_all([ep.value])
        assert claims and {c.paper for c in claims.values()} == {ep.name}, ep


# --------------------------------------------------------------------------- a third-party package


def test_third_party_claims_load_after_ours(tmp_path: Path, isolated: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    isolated.syspath_prepend(str(demo_site(tmp_path)))  # also invalidates the import caches
    sources = checks.claim_sources()
    modules = [s.module for s in sources]
    own = own_modules()
    assert modules[:len(own)] == own  # our own first, in entry-point name order
    assert [m for m in modules[len(own):] if m.startswith("gv_")] == ["gv_demo_claims.claims"]
    demo = sources[modules.index("gv_demo_claims.claims")]
    assert "entry point demo = gv_demo_claims.claims" in demo.origin
    assert "gv-demo-claims 0.1" in demo.origin
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for cid in DEMO_IDS:
        assert cid in out


def test_environment_variable_replaces_the_entry_points(tmp_path: Path,
                                                        isolated: pytest.MonkeyPatch) -> None:
    isolated.syspath_prepend(str(demo_site(tmp_path)))
    isolated.setenv(CLAIM_MODULES_ENV, "numerics.checks.examples")
    assert checks.claim_modules() == ["numerics.checks.examples"]
    assert list(checks.load_all()) == ["examples.gaussian_mean", "examples.variance_identity_fails"]


def _subprocess_env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CLAIM_MODULES_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return env


def test_cli_runs_third_party_claims(tmp_path: Path) -> None:
    """``guidance-verify list`` and ``run --only 'demo.*'`` in a fresh interpreter that sees the
    fake distribution only through PYTHONPATH."""
    site = demo_site(tmp_path / "site")
    env = _subprocess_env(site)
    listed = subprocess.run([sys.executable, "-m", "numerics.cli", "list"], capture_output=True,
                            text=True, cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    for cid in DEMO_IDS:
        assert cid in listed.stdout
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "numerics.cli", "run", "--only", "demo.*",
                           "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "report.json").read_text())
    assert [c["id"] for c in doc["claims"]] == DEMO_IDS
    assert [(c["verdict"], c["control"]) for c in doc["claims"]] == [("holds", "flagged")] * 2
    assert all(c["module"] == "gv_demo_claims.claims" for c in doc["claims"])


def test_broken_entry_points_do_not_stop_the_others(tmp_path: Path,
                                                    isolated: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    site = demo_site(tmp_path)
    fake_distribution(site, "gv-broken-claims",
                      f"[{CLAIMS_GROUP}]\nmissing = gv_missing_module.claims\n"
                      "typo = gv_demo_claims:claims\n")
    fake_distribution(site, "gv-unreadable", f"[{CLAIMS_GROUP}]\nthis line has no equals sign\n")
    fake_distribution(site, "gv-zzz-again", f"[{CLAIMS_GROUP}]\nagain = gv_demo_claims.claims\n")
    isolated.syspath_prepend(str(site))

    modules = checks.claim_modules()
    own = own_modules()
    assert modules[:len(own)] == own
    # other distributions by name, then entry-point name; the module declared twice loads once
    assert [m for m in modules[len(own):] if m.startswith("gv")] == [
        "gv_missing_module.claims", "gv_demo_claims:claims", "gv_demo_claims.claims",
        "gv-unreadable"]

    loaded = checks.load_all()
    pseudo = ["import.gv_missing_module.claims", "import.gv_demo_claims_claims",
              "import.gv-unreadable"]
    assert [k for k in loaded if k.startswith("import.")] == pseudo
    assert all(cid in loaded for cid in DEMO_IDS)
    assert sum(c.paper != "import" for c in loaded.values()) >= len(own) + len(DEMO_IDS)

    run = run_claims([loaded[k] for k in pseudo + DEMO_IDS])
    assert [r.verdict for r in run.results] == ["ERROR"] * 3 + ["holds"] * 2
    missing, typo, unreadable = (r.error for r in run.results[:3])
    assert "gv_missing_module" in missing and "entry point missing" in missing
    assert "gv-broken-claims 0.1" in missing
    assert "gv_demo_claims:claims" in typo
    assert "cannot be read" in unreadable and "gv-unreadable 0.1" in unreadable

    assert main(["list"]) == 1  # listed, with one line per broken module on stderr
    captured = capsys.readouterr()
    assert all(cid in captured.out for cid in DEMO_IDS)
    assert "gv_missing_module.claims" in captured.err and "gv-unreadable" in captured.err


def test_no_claims_at_all_is_a_usage_error(isolated: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Stale metadata (no entry points) must not look like a passing run of nothing."""
    isolated.setattr(checks, "claim_sources", lambda: [])
    assert main(["run", "--out", "/nonexistent/never-created"]) == 2
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert "no claims found" in err and "guidance_verify.claims" in err

"""`guidance-verify audit diffusers` (numerics.audit): DDIM's step against the derived update, a deliberately
wrong scheduler reported as a finding, the run-level check, the missing-extra message and bad input.

Tests that drive diffusers skip cleanly (pytest.importorskip) when the [audit] extra is not installed; the
missing-extra and bad-input tests run everywhere.
"""
from __future__ import annotations

import json
import sys

import pytest

from numerics.cli import main


@pytest.fixture
def audit():
    pytest.importorskip("diffusers")
    pytest.importorskip("torch")
    from numerics.audit import checks, diffusers_driver as dd

    return checks, dd


def _tiny(checks):
    return checks.Profile(steps_ns=(1, 8), order_ns=(10, 20, 40), finite_ns=(1, 2),
                          predictions=("epsilon", "v_prediction"), spacings=("leading", "trailing"),
                          betas=("linear",))


@pytest.mark.parametrize("tables", ["float64", "native"])
@pytest.mark.parametrize("pred", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_step_agrees_with_derived_update(audit, tables, pred, spacing):
    checks, dd = audit
    ratios = []
    for n in (1, 8, 50):   # n divides num_train_timesteps: the grid has no relabelling (next test)
        rec = dd.run(dd.SPECS["DDIM"], n, checks.TARGET, checks.Z_STEP, config={"timestep_spacing": spacing},
                     prediction_type=pred, tables=tables)
        sc = checks.step_check(rec)
        assert sc["ratio"] <= 1.0, (n, sc)
        assert checks.run_check(rec)["ratio"] <= 1.0
        ratios.append(sc["ratio"])
    assert max(ratios) > 0.0   # the comparison really ran (a one-step 'sample' run can agree bit for bit)


def test_ddim_float64_tables_agree_to_float64_rounding(audit):
    """With its tables cast to float64 DDIM's step is within a few dozen float64 ulps of the derived update."""
    checks, dd = audit
    rec = dd.run(dd.SPECS["DDIM"], 20, checks.TARGET, checks.Z_STEP, tables="float64")
    assert checks.step_check(rec)["abs"] < 1e-13
    native = dd.run(dd.SPECS["DDIM"], 20, checks.TARGET, checks.Z_STEP, tables="native")
    assert checks.step_check(native)["abs"] > 1e-10   # the shipped float32 coefficients show


def _off_by_one_ddim():
    from diffusers import DDIMScheduler

    class OffByOneDDIM(DDIMScheduler):
        """alpha_prod_t_prev taken one training step off (alphas_cumprod[prev - 1] for alphas_cumprod[prev])."""

        def step(self, model_output, timestep, sample, *args, **kwargs):
            prev = int(timestep) - self.config.num_train_timesteps // self.num_inference_steps
            saved = self.alphas_cumprod
            if prev >= 1:
                table = saved.clone()
                table[prev] = saved[prev - 1]
                self.alphas_cumprod = table
            try:
                return super().step(model_output, timestep, sample, *args, **kwargs)
            finally:
                self.alphas_cumprod = saved

    return OffByOneDDIM


def test_wrong_scheduler_is_reported(audit):
    checks, dd = audit
    prof = _tiny(checks)
    bad = _off_by_one_ddim()
    row = checks.audit_scheduler(dd.SPECS["DDIM"], prof, scheduler_factory=lambda cfg: bad(**cfg))
    kinds = {(f["check"], f["key"]) for f in row["findings"]}
    assert any(check == "step" and key.startswith("DDIM:step:step") for check, key in kinds), kinds
    assert row["step_float64"]["max_err_over_bound"] > 1e3
    # and the genuine scheduler on the same profile has no finding: the check can pass
    from diffusers import DDIMScheduler

    good = checks.audit_scheduler(dd.SPECS["DDIM"], prof, scheduler_factory=lambda cfg: DDIMScheduler(**cfg))
    assert good["findings"] == []
    assert 0.0 < good["step_float64"]["max_err_over_bound"] <= 1.0


@pytest.mark.parametrize("spacing, n", [("linspace", 2), ("trailing", 7)])
def test_ddim_relabelling_is_a_run_finding(audit, spacing, n):
    """DDIM steps to t - N // n, but with 'linspace' (any n > 1) or 'trailing' (n not dividing N) the next call
    assumes another timestep: each step is right for the level it lands at, the chain is relabelled."""
    checks, dd = audit
    rec = dd.run(dd.SPECS["DDIM"], n, checks.TARGET, checks.Z_STEP, config={"timestep_spacing": spacing})
    assert checks.step_check(rec)["ratio"] <= 1.0
    assert checks.run_check(rec)["ratio"] > 1e3


def test_gaussian_law_is_affine_and_converges(audit):
    checks, dd = audit
    law = checks.law_and_order(dd.SPECS["DDIM"], (10, 20, 40))
    assert all(r["non_affinity"] < 1e-12 for r in law["rows"])
    kls = [r["kl_to_target"] for r in law["rows"]]
    assert kls[0] > kls[1] > kls[2] > 0.0
    assert abs(law["observed_order"] - 1.0) < 0.2


def test_cli_audit_baseline(audit, tmp_path):
    out = tmp_path / "a"
    assert main(["audit", "diffusers", "--reduced", "--only", "DDIM", "--out", str(out)]) == 1  # linspace finding
    data = json.loads((out / "audit.json").read_text())
    assert data["schedulers"][0]["findings"] and (out / "audit.md").exists()
    for f in data["schedulers"][0]["findings"]:   # every reproduction runs as printed
        exec(compile(f["reproduction"], f["key"], "exec"), {})
    assert main(["audit", "diffusers", "--reduced", "--only", "DDIM", "--out", str(tmp_path / "b"),
                 "--baseline", str(out / "audit.json")]) == 0


def test_missing_extra_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "diffusers", None)   # import diffusers -> ImportError
    assert main(["audit", "diffusers", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "guidance-verify[audit]"' in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()   # nothing left behind


def test_unknown_library(capsys):
    assert main(["audit", "tensorflow"]) == 2
    err = capsys.readouterr().err
    assert "LIBRARY" in err and "tensorflow" in err


def test_bad_out(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["audit", "diffusers", "--out", str(f)]) == 2
    assert "--out" in capsys.readouterr().err


def test_bad_baseline(audit, tmp_path, capsys):
    b = tmp_path / "b.json"
    b.write_text("{not json")
    assert main(["audit", "diffusers", "--out", str(tmp_path / "o"), "--baseline", str(b)]) == 2
    assert "--baseline" in capsys.readouterr().err

"""`guidance-verify audit diffusers` (numerics.audit): DDIM's step against the derived update, a deliberately
wrong scheduler reported as a finding, the run-level check, the missing-extra message and bad input.

Tests that drive diffusers skip cleanly (pytest.importorskip) when the [audit] extra is not installed; the
missing-extra and bad-input tests run everywhere.
"""
from __future__ import annotations

import json
import sys

import numpy as np
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
                          betas=("linear",), guide_ns=(4,), guide_scales=(3.0,), guide_spacings=("leading",))


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
    # no finding but diffusers' own NaN at alpha_bar = 0 (rescale_betas_zero_snr, epsilon; tests/test_audit_sweep.py)
    assert [f["key"] for f in good["findings"]] == ["DDIM:finite:non-finite output:rescale_betas_zero_snr=True"]
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
    md = (out / "audit.md").read_text()   # the guided-law table: DDIM's 1-D and 2-D deterministic laws
    assert "| DDIM | guided-law-pf (1-D) | 10 / 20 / 50 |" in md and "| DDIM | guided-law-pf-2d (2-D) | 10 / 20 |" in md
    assert all(r["ratio"] <= 1.0 for r in data["schedulers"][0]["guided_law_pf_2d"]["runs"])
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


# ------------------------------------------------------------------ guidance (labelled 1-D mixture, CFG)
def _guide_prof(checks, spacing="leading"):
    return checks.Profile(steps_ns=(1,), order_ns=(10,), finite_ns=(1,), guide_ns=(10,), guide_scales=(3.0,),
                          guide_spacings=(spacing,), guide_rescales=(0.7,))


def test_mixture_target_outputs_and_bad_input():
    from numerics.audit.targets import GaussianTarget, MixtureTarget, ou_time

    one = MixtureTarget((1.0,), (0.5,), (0.7,))
    g = GaussianTarget((0.5,), 0.7)
    x = np.linspace(-2.0, 2.0, 9)[:, None]
    for pred in ("epsilon", "sample", "v_prediction"):
        a = one.model_output_abar(x, 0.3, pred)
        b = g.model_output(x, ou_time(0.3), pred)
        assert a.shape == x.shape and np.max(np.abs(a - b)) < 1e-13
    three = MixtureTarget((0.3, 0.45, 0.25), (-1.5, 0.8, 2.4), (0.35, 0.6, 0.2))
    # guidance_scale 1 is the conditional model, 0 the unconditional one (w_package = guidance_scale)
    t = ou_time(0.3)
    assert np.max(np.abs(three.cg_eps(x, t, 2, 1.0) - three.model_output(x, t, "epsilon", 2))) < 1e-12
    assert np.max(np.abs(three.cg_eps(x, t, 2, 0.0) - three.model_output(x, t, "epsilon"))) == 0.0
    for kwargs, name in [(dict(weights=(0.5, 0.5), means=(0.0,), stds=(1.0, 1.0)), "means"),
                         (dict(weights=(0.5, 0.5), means=(0.0, 1.0), stds=(1.0, 0.0)), "stds"),
                         (dict(weights=(0.7, 0.7), means=(0.0, 1.0), stds=(1.0, 1.0)), "weights")]:
        with pytest.raises(ValueError, match=name):
            MixtureTarget(**kwargs)
    with pytest.raises(ValueError, match="prediction_type"):
        three.model_output(x, t, "score")
    with pytest.raises(ValueError, match="abar"):
        three.model_output_abar(x, 1.0, "epsilon")
    with pytest.raises(ValueError, match="y"):
        three.cg_eps(x, t, 3, 1.0)
    with pytest.raises(ValueError, match="t"):
        three.denoiser(x, 0.0)


@pytest.mark.parametrize("name, spacing", [("DDIM", "leading"), ("DDIM", "trailing"), ("DPMSolverMultistep-2", "trailing")])
def test_diffusers_cfg_agrees_with_classifier_guidance(audit, name, spacing):
    """diffusers' CFG (u + g (c - u), g = guidance_scale) of the exact model is classifier guidance with weight
    g: no finding, per call and for the whole run (DPMSolverMultistep: at float32 accuracy, the known finding)."""
    checks, dd = audit
    row, found = checks.guidance_check(dd.SPECS[name], _guide_prof(checks, spacing))
    assert [f.key for f in found if f.check == "guidance"] == []
    assert 0.0 < row["cfg_identity"] <= 1.0
    if name == "DDIM":
        assert 0.0 < row["guided_run"] <= 1.0
        assert all(0.0 < r["max_err_over_bound"] <= 1.0 and r["output_shift"] > 0.0 for r in row["rescale"])
    else:
        assert {f.key for f in found} <= {f"{name}:step:precision:float64"}


@pytest.mark.parametrize("wrong", [lambda u, c, g: u + (g - 1.0) * (c - u),    # Ho-Salimans' w where g belongs
                                   lambda u, c, g: u - g * (c - u)],           # the sign flipped
                         ids=["g-1", "sign"])
def test_wrong_cfg_convention_is_a_finding(audit, wrong):
    checks, dd = audit
    row, found = checks.guidance_check(dd.SPECS["DDIM"], _guide_prof(checks), combine=wrong)
    keys = {f.key for f in found}
    assert {"DDIM:guidance:cfg:float64", "DDIM:guidance:guided-run:float64"} <= keys, keys
    assert row["cfg_identity"] > 1e6 and row["guided_run"] > 1e6


def test_wrong_rescale_is_a_finding(audit):
    """rescale_noise_cfg with the population std for one operand and the sample std for the other (a factor
    sqrt(N / (N - 1)) = 1.02 on 25 elements) is far beyond the formula's rounding bound."""
    checks, dd = audit

    def wrong(cfg, cond, guidance_rescale=0.0):
        r = cfg * (cond.std(dim=-1, keepdim=True) / cfg.std(dim=-1, keepdim=True, correction=0))
        return guidance_rescale * r + (1 - guidance_rescale) * cfg

    prof = checks.Profile(steps_ns=(1,), order_ns=(10,), finite_ns=(1,), guide_ns=(1,), guide_scales=(3.0,),
                          guide_spacings=("leading",), guide_rescales=(0.7,))
    row, found = checks.guidance_check(dd.SPECS["DDIM"], prof, rescale_fn=wrong)
    assert "DDIM:guidance:rescale:float64" in {f.key for f in found}
    with pytest.raises(ValueError, match="eps_cond"):
        checks.rescale_bound(np.ones(3), np.ones(4), 0.7)


def test_euler_ve_step_is_the_ddim_update():
    """The Euler step in diffusers' VE variables (EulerDiscreteScheduler) is the derived DDIM update."""
    from numerics.audit import oracle as O
    from numerics.audit.targets import GaussianTarget

    tg = GaussianTarget((0.5, -1.0), 0.7)
    x = np.array([[0.0, 0.0], [1.0, 1.0], [-0.3, 2.0]])
    for t, s in [(5.0, 2.0), (0.8, 0.7), (0.3, 1e-4), (0.05, 0.0)]:
        e, tol = O.euler_ve_step(tg, x, t, s)
        d, _ = O.step_prediction("ddim", tg, x, t, s)
        assert np.all(np.abs(e - d) <= tol)
    with pytest.raises(ValueError, match="s"):
        O.euler_ve_step(tg, x, 0.5, 0.6)


def test_jobs_rows_equal_the_serial_run(audit, tmp_path):
    """``--jobs 2`` (forked workers, as CI runs the reduced audit) writes the serial run's rows: same findings,
    same measured ratios and errors bit for bit (each worker audits whole schedulers), only the timings differ.
    Each run is a fresh ``guidance-verify`` process, as in CI: the command forks before any parallel kernel runs,
    and GNU OpenMP refuses a fork of a process whose thread pool has run ("fork() called from a process already
    using GNU OpenMP", as after this pytest worker's earlier tests)."""
    import subprocess

    rows = {}
    for jobs in ("2", "1"):
        out = tmp_path / jobs
        cmd = [sys.executable, "-m", "numerics.cli", "audit", "diffusers", "--reduced", "--only", "DDIM",
               "--only", "EulerDiscrete", "--jobs", jobs, "--out", str(out)]
        assert subprocess.run(cmd, capture_output=True).returncode in (0, 1)   # 1: DDIM's relabelling findings
        data = json.loads((out / "audit.json").read_text())
        rows[jobs] = [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in data["schedulers"]]
    assert [r["scheduler"] for r in rows["2"]] == ["DDIM", "EulerDiscrete"]
    assert rows["1"] == rows["2"]


def test_bad_jobs(audit, tmp_path, capsys):
    assert main(["audit", "diffusers", "--only", "DDIM", "--jobs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------- DPM-Solver++(3M)
def _dpm3_variants(tg, x, t, s, xp, tp, xp2, tp2):
    """The derived 3M step from the recorded states, and realistic wrong variants of it (VP outputs)."""
    from numerics.audit import oracle as O

    k = O.dpm3_coeffs(t, s, tp, tp2)
    (c0, c1, c2), h0, h1 = k["c"], k["h0"], k["h1"]
    m0, m1, m2 = (tg.denoiser(v, u) for v, u in ((x, t), (xp, tp), (xp2, tp2)))
    d1, _, d2 = O.divided_differences(m0, m1, m2, h0, h1)
    base = k["cx"] * x + c0 * m0 + c1 * d1
    swapped = O.divided_differences(m0, m1, m2, h1, h0)     # r0 and r1 exchanged
    stale = O.divided_differences(m0, m1, m1, h0, h1)       # the oldest call one index off (D_p reused)
    return {"derived": base + c2 * d2,
            "curvature_halved": base + 0.5 * (c2 + h0 * c1) * d2,   # the weight of delta_2 with psi_2 halved
            "order2_coefficients": base,                          # order 3 with the second-order update
            "r0_r1_swapped": base - c1 * d1 + c1 * swapped[0] + c2 * swapped[2],
            "index_off": base - c1 * d1 + c1 * stale[0] + c2 * stale[2]}


def _dpm3_run(dd, checks, n, tables="native", pred="epsilon"):
    rec = dd.run(dd.SPECS["DPMSolverMultistep-3"], n, checks.TARGET, checks.Z_STEP, prediction_type=pred,
                 tables=tables)
    return rec, [(k, st) for k, st in enumerate(rec.steps) if st.order == 3]


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_dpm3_lower_order_steps_agree_and_third_order_steps_halve_the_curvature(audit, pred):
    """diffusers' DPMSolverMultistep(solver_order=3): its order-1/2 steps agree with the derived DDIM / 2M updates
    within the rounding bound; its order-3 steps agree with the derived 3M update with the weight of the second
    divided difference's psi_2 part halved (the finding), and not with the derived one."""
    checks, dd = audit
    from numerics.audit import oracle as O

    for n in (7, 20):
        rec, third = _dpm3_run(dd, checks, n, pred=pred)
        lower = [st for st in rec.steps if st.order < 3]
        assert third and lower
        for k, st in enumerate(rec.steps):
            if st.order == 3:
                continue
            kind = checks._kind(rec.spec, st.order)
            prev = rec.steps[k - 1] if kind == "dpm2" else None
            p, tol = O.step_prediction(kind, checks.TARGET, st.x_in, st.t_in, st.t_out,
                                       None if prev is None else prev.x_in, None if prev is None else prev.t_in,
                                       float32_coeffs=True)
            assert np.max(np.abs(st.x_out - p) / tol) <= 1.0, (n, k, kind)
        for k, st in third:
            a, b = rec.steps[k - 1], rec.steps[k - 2]
            v = _dpm3_variants(checks.TARGET, st.x_in, st.t_in, st.t_out, a.x_in, a.t_in, b.x_in, b.t_in)
            _, tol = O.dpm3_prediction(checks.TARGET, st.x_in, st.t_in, st.t_out, a.x_in, a.t_in, b.x_in, b.t_in,
                                       float32_coeffs=True)
            assert np.max(np.abs(st.x_out - v["curvature_halved"]) / tol) <= 1.0, (n, k)
        assert checks.step_check(rec)["ratio"] > 1.0 and checks.step_check(rec)["ratio32"] > 1.0


def test_dpm3_wrong_variants_exceed_the_bound(audit):
    """Realistic bugs of a third-order multistep step (second-order coefficients at order 3, r0/r1 exchanged, the
    oldest call one index off, the curvature weight halved) exceed the derived update's rounding bound in a 10-step
    run (the step check's statistic: the largest ratio over its order-3 steps)."""
    checks, dd = audit
    from numerics.audit import oracle as O

    rec, third = _dpm3_run(dd, checks, 10)
    worst = {}
    for k, st in third:
        a, b = rec.steps[k - 1], rec.steps[k - 2]
        v = _dpm3_variants(checks.TARGET, st.x_in, st.t_in, st.t_out, a.x_in, a.t_in, b.x_in, b.t_in)
        ref, tol = O.dpm3_prediction(checks.TARGET, st.x_in, st.t_in, st.t_out, a.x_in, a.t_in, b.x_in, b.t_in,
                                     float32_coeffs=True)
        assert np.max(np.abs(v["derived"] - ref) / tol) <= 1e-6
        for name, out in v.items():
            if name != "derived":
                r = float(np.max(np.abs(out - ref) / tol))
                worst[name] = max(worst.get(name, 0.0), r)
    assert min(worst.values()) > 4.0, worst


def _lambda_grid(t_hi: float, t_lo: float, n: int) -> np.ndarray:
    """OU times of n uniform half log-SNR steps from t_hi down to t_lo (ell = log(alpha/sigma))."""
    ell = lambda t: -t - 0.5 * np.log(-np.expm1(-2.0 * t))  # noqa: E731
    lam = np.linspace(ell(t_hi), ell(t_lo), n + 1)
    return 0.5 * np.log1p(np.exp(-2.0 * lam))


def multistep3_global_errors(tg, x0: np.ndarray, variants, ns) -> dict:
    """Max |x_n - exact| per variant of a three-step multistep update on n = ``ns`` uniform log-SNR steps from OU
    time 1.5 to 0.02 on Gaussian target ``tg`` (exact flow from ``x0``; exact start values at the first three
    levels).  ``variants(tg, x, t, s, x_p, t_p, x_p2, t_p2)`` returns {name: next state}."""
    errs: dict = {}
    for n in ns:
        g = _lambda_grid(1.5, 0.02, n)
        exact = [x0]
        for k in range(n):
            r, c = tg.flow_map(g[k], g[k + 1])
            exact.append(r * exact[-1] + c)
        for name in variants(tg, exact[2], g[2], g[3], exact[1], g[1], exact[0], g[0]):
            xs = exact[:3]
            for k in range(2, n):
                xs.append(variants(tg, xs[k], g[k], g[k + 1], xs[k - 1], g[k - 1], xs[k - 2], g[k - 2])[name])
            errs.setdefault(name, []).append(float(np.max(np.abs(xs[-1] - exact[-1]))))
    return errs


def test_dpm3_derived_update_is_third_order_and_the_halved_one_second():
    """Global error on the Gaussian target against the exact flow (exact start values at the first three levels):
    the derived 3M update converges at order 3, the variant with the halved curvature weight at order 2."""
    from numerics.audit import checks

    errs = multistep3_global_errors(checks.TARGET, checks.Z_STEP, _dpm3_variants, (32, 64, 128, 256))
    slope = {k: float(np.log2(e[-2] / e[-1])) for k, e in errs.items()}   # the last doubling
    assert slope["derived"] > 2.8 and 1.8 < slope["curvature_halved"] < 2.2, (slope, errs)


# ------------------------------------------------------------------------- DPM-Solver-2M, noise form ("dpmsolver")
EPS_SPECS = {"dpm1e": "DPMSolverMultistep-1-dpmsolver", "dpm2e": "DPMSolverMultistep-2-dpmsolver",
             "dpm2eh": "DPMSolverMultistep-2-dpmsolver-heun"}


def _eps_variants(tg, kind, x, t, s, xp, tp):
    """The derived noise-form 2M step (``kind`` dpm2e or dpm2eh) and realistic wrong variants of it (VP outputs)."""
    import math

    from numerics.audit import oracle as O
    from numerics.generated import integrator_coeffs as IC

    k = O.eps_coeffs(kind, t, s, tp)
    e0, ep = tg.model_output(x, t, "epsilon"), tg.model_output(xp, tp, "epsilon")
    sig_s, h = math.sqrt(-math.expm1(-2.0 * s)), k["h"]
    p0, pm, ph = IC.dpm_solver_2_eps_weights(h)
    base = k["cx"] * x - k["w0"] * e0
    d1 = (e0 - ep) / k["hp"]
    other = ph if kind == "dpm2e" else pm
    return {"derived": base - k["w1"] * d1 * k["hp"],
            "other_solver_type": base - sig_s * other * d1,               # midpoint <-> heun weight
            "half_dropped": base - sig_s * h * p0 * d1,                    # the midpoint's r = 1/2 factor dropped
            "data_form_coefficient": k["cx"] * x + sig_s * math.expm1(-h) * e0 - k["w1"] * d1 * k["hp"],
            "order1_coefficients": base}                                    # order 2 with the first-order update


@pytest.mark.parametrize("kind", ["dpm1e", "dpm2e", "dpm2eh"])
@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
def test_dpmsolver_noise_form_steps_agree_with_derived_update(audit, kind, pred):
    """diffusers' DPMSolverMultistep(algorithm_type="dpmsolver") of order 1, 2 (midpoint) and 2 (heun): every step
    (order 1 and 2) agrees with the derived noise-form update within its rounding bound (tables as shipped; with
    tables cast to float64 the steps are at float32 accuracy, the known precision finding of DPMSolverMultistep)."""
    checks, dd = audit
    for n in (2, 7, 20):
        rec = dd.run(dd.SPECS[EPS_SPECS[kind]], n, checks.TARGET, checks.Z_STEP, prediction_type=pred,
                     tables="native")
        assert {st.order for st in rec.steps} == ({1} if kind == "dpm1e" or n < 3 else {1, 2})
        sc, rc = checks.step_check(rec), checks.run_check(rec)
        assert sc["ratio"] <= 1.0 and rc["ratio"] <= 1.0, (n, sc, rc)
        f64 = checks.step_check(dd.run(dd.SPECS[EPS_SPECS[kind]], n, checks.TARGET, checks.Z_STEP,
                                       prediction_type=pred, tables="float64"))
        assert f64["ratio32"] <= 1.0, (n, f64)


def _worst_variants(rec, target, kind, variants, prediction, check_diffusers: bool = False) -> dict:
    """Largest error / rounding bound of every wrong variant over the order-2 steps of the run ``rec``: ``variants``
    builds the derived update and its variants from (target, kind, x, t, s, x_prev, t_prev), ``prediction`` the
    oracle's (update, bound); the variants' "derived" entry must be the oracle's update (and, with
    ``check_diffusers``, diffusers' step within the bound)."""
    worst = {}
    for k, st in enumerate(rec.steps):
        if st.order != 2:
            continue
        a = rec.steps[k - 1]
        v = variants(target, kind, st.x_in, st.t_in, st.t_out, a.x_in, a.t_in)
        ref, tol = prediction(kind, target, st.x_in, st.t_in, st.t_out, a.x_in, a.t_in, float32_coeffs=True)
        assert np.max(np.abs(v["derived"] - ref) / tol) <= 1e-6
        if check_diffusers:
            assert np.max(np.abs(st.x_out - ref) / tol) <= 1.0
        for name, out in v.items():
            if name != "derived":
                worst[name] = max(worst.get(name, 0.0), float(np.max(np.abs(out - ref) / tol)))
    return worst


def test_dpmsolver_noise_form_wrong_variants_exceed_the_bound(audit):
    """Realistic bugs of a noise-form 2M step (the other solver_type's weight, the midpoint's 1/2 dropped, the
    data-form coefficient 1 - e^{-h} for e^h - 1, first-order coefficients at order 2) exceed the derived update's
    rounding bound on the order-2 steps of a 10-step run, for both solver types."""
    checks, dd = audit
    from numerics.audit import oracle as O

    for kind in ("dpm2e", "dpm2eh"):
        rec = dd.run(dd.SPECS[EPS_SPECS[kind]], 10, checks.TARGET, checks.Z_STEP, tables="native")
        worst = _worst_variants(rec, checks.TARGET, kind, _eps_variants, O.eps_prediction)
        assert min(worst.values()) > 4.0, (kind, worst)


def test_dpmsolver_noise_form_derived_updates_are_second_order():
    """Global error on the Gaussian target against the exact flow (exact start values at the first two levels,
    uniform log-SNR steps): the derived noise-form 2M updates (midpoint, heun) converge at order 2, the variant
    with the midpoint's 1/2 dropped at order 1."""
    from numerics.audit import checks

    tg, x0 = checks.TARGET, checks.Z_STEP
    errs = {("dpm2e", "derived"): [], ("dpm2eh", "derived"): [], ("dpm2e", "half_dropped"): []}
    for n in (32, 64, 128, 256):
        g = _lambda_grid(1.5, 0.02, n)
        exact = [x0]
        for k in range(n):
            r, c = tg.flow_map(g[k], g[k + 1])
            exact.append(r * exact[-1] + c)
        for kind, name in errs:
            xs = exact[:2]
            for k in range(1, n):
                xs.append(_eps_variants(tg, kind, xs[k], g[k], g[k + 1], xs[k - 1], g[k - 1])[name])
            errs[(kind, name)].append(float(np.max(np.abs(xs[-1] - exact[-1]))))
    slope = {k: float(np.log2(e[-2] / e[-1])) for k, e in errs.items()}
    assert all(1.8 < slope[(k, "derived")] < 2.3 for k in ("dpm2e", "dpm2eh")), (slope, errs)
    assert 0.8 < slope[("dpm2e", "half_dropped")] < 1.2, (slope, errs)


# ------------------------------------------------------------------ DPM-Solver++(2S) (DPMSolverSinglestep, order 2)
SINGLE_SPECS = {"dpm2s": "DPMSolverSinglestep", "dpm2sh": "DPMSolverSinglestep-heun"}


def _dpm2s_variants(tg, kind, x, t, s, xp, tp):
    """The derived 2S step (``kind`` dpm2s or dpm2sh) from the saved state ``xp`` at ``tp`` with the intermediate
    state ``x`` at ``t``, and realistic wrong variants of it (VP outputs)."""
    from numerics.audit import oracle as O
    from numerics.generated import integrator_coeffs as IC

    k = O.dpm2s_coeffs(kind, t, s, tp)
    m1, m0 = tg.denoiser(xp, tp), tg.denoiser(x, t)
    p0, pm, ph = IC.dpm_solver_2s_weights(k["h"])
    a_s = np.exp(-s)
    base = k["cx"] * xp + k["c0"] * m1
    delta = (m0 - m1) / k["h0"]
    cx0, cd0 = IC.ddim_coeffs(t, s)
    return {"derived": base + k["c1"] * delta,
            "other_solver_type": base + a_s * (ph if kind == "dpm2s" else pm) * delta,   # midpoint <-> heun
            "half_dropped": base + a_s * k["h"] * p0 * delta,           # the midpoint's 1/2 dropped
            # D1 = m0 - m1 for (m0 - m1)/r0; the same as the intermediate level one index off (sigmas[i + 1])
            "r0_dropped": base + k["c1"] * (m0 - m1) / k["h"],
            "sample_not_saved": k["cx"] * x + k["c0"] * m1 + k["c1"] * delta,   # the current sample as the base
            "order1_restart": cx0 * x + cd0 * m0}                          # a plain DDIM step from s0


@pytest.mark.parametrize("kind", ["dpm2s", "dpm2sh"])
@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
def test_dpmsolver_singlestep_steps_agree_with_derived_update(audit, kind, pred):
    """diffusers' DPMSolverSinglestep(solver_order=2, dpmsolver++), midpoint and heun: the order list is
    [1, 2, 1, 2, ...], and every step (order 1: DDIM to the intermediate level; order 2: the restart from the saved
    state) agrees with the derived update within its rounding bound, tables cast to float64 and as shipped."""
    checks, dd = audit
    for n, tables in ((7, "native"), (10, "float64"), (20, "native")):
        rec = dd.run(dd.SPECS[SINGLE_SPECS[kind]], n, checks.TARGET, checks.Z_STEP, prediction_type=pred,
                     tables=tables)
        orders = [st.order for st in rec.steps]
        assert orders[:-1] == [1 + k % 2 for k in range(n - 1)] and orders[-1] == 1, orders
        sc, rc = checks.step_check(rec), checks.run_check(rec)
        assert sc["ratio"] <= 1.0 and rc["ratio"] <= 1.0, (n, tables, sc, rc)


def test_dpmsolver_singlestep_wrong_variants_exceed_the_bound(audit):
    """Realistic bugs of a 2S step (the other solver_type's weight, the midpoint's 1/2 dropped, the 1/r0 dropped =
    the intermediate level one index off, the current sample for the saved one, a plain DDIM step from the
    intermediate state) exceed the derived update's rounding bound on the order-2 steps of a 10-step run."""
    checks, dd = audit
    from numerics.audit import oracle as O

    for kind in ("dpm2s", "dpm2sh"):
        rec = dd.run(dd.SPECS[SINGLE_SPECS[kind]], 10, checks.TARGET, checks.Z_STEP, tables="native")
        worst = _worst_variants(rec, checks.TARGET, kind, _dpm2s_variants, O.dpm2s_prediction, check_diffusers=True)
        assert min(worst.values()) > 4.0, (kind, worst)


def test_dpmsolver_singlestep_derived_update_is_second_order():
    """Global error on the Gaussian target against the exact flow (uniform log-SNR steps, pairs of an order-1 step
    to the intermediate level and the order-2 restart): the derived 2S updates (midpoint, heun) converge at order 2,
    the variants with the midpoint's 1/2 or the 1/r0 dropped at order 1."""
    from numerics.audit import checks
    from numerics.audit import oracle as O

    tg, x0 = checks.TARGET, checks.Z_STEP
    errs = {("dpm2s", "derived"): [], ("dpm2sh", "derived"): [], ("dpm2s", "half_dropped"): [],
            ("dpm2s", "r0_dropped"): []}
    for n in (16, 32, 64, 128):
        g = _lambda_grid(1.5, 0.02, 2 * n)
        r, c = tg.flow_map(g[0], g[-1])
        exact = r * x0 + c
        for kind, name in errs:
            x = x0
            for j in range(0, 2 * n, 2):
                mid, _ = O.step_prediction("ddim", tg, x, g[j], g[j + 1])
                x = _dpm2s_variants(tg, kind, mid, g[j + 1], g[j + 2], x, g[j])[name]
            errs[(kind, name)].append(float(np.max(np.abs(x - exact))))
    slope = {k: float(np.log2(e[-2] / e[-1])) for k, e in errs.items()}
    assert all(1.8 < slope[(k, "derived")] < 2.3 for k in ("dpm2s", "dpm2sh")), (slope, errs)
    assert all(0.8 < slope[("dpm2s", v)] < 1.2 for v in ("half_dropped", "r0_dropped")), (slope, errs)


def test_dpmsolver_singlestep_audit_row(audit):
    """The audit runs DPMSolverSinglestep (no ``timestep_spacing`` setting: its one grid) through the step and run
    checks: both tables, no step or run finding."""
    checks, dd = audit
    row = checks.audit_scheduler(dd.SPECS["DPMSolverSinglestep"], _tiny(checks))
    assert row["step_native"]["max_err_over_bound"] <= 1.0 and row["step_float64"]["max_err_over_bound"] <= 1.0
    assert not [f for f in row["findings"] if f["check"] in ("step", "run")], row["findings"]


# ------------------------------------------------------------------------------- Heun (HeunDiscreteScheduler)
def _heun_variants(tg, kind, x, t, s, xp, tp):
    """Heun's step written in diffusers' VE variables (y = x/alpha, S = sigma/alpha: predictor y_p = y + dS d0, then
    y + dS (d0 + d1)/2 with d1 = (y_p - D_p)/S_s) from the saved state ``xp`` at ``tp`` to ``s``, the second call at
    the (recorded) predictor ``x`` at ``t``, and realistic wrong variants of it (VP outputs; ``kind`` unused).  The
    slope takes y_p from ``xp`` (the exact predictor), so that the step depends on ``x`` through D_p only, as the
    oracle's does (diffusers' own y_p differs by its rounding, which the oracle's bound counts)."""
    ve = lambda u: float(np.sqrt(np.expm1(2.0 * u)))  # noqa: E731   sigma/alpha at OU time u
    a_p, a_t, a_s = np.exp(-tp), np.exp(-t), np.exp(-s)
    S0, S1, y0 = ve(tp), ve(s), xp / a_p
    dS = S1 - S0
    d0 = (y0 - tg.denoiser(xp, tp)) / S0
    yp = y0 + dS * d0
    dp = tg.denoiser(x, t)
    d1 = (yp - dp) / S1
    return {"derived": a_s * (y0 + dS * (d0 + d1) / 2),
            "no_corrector": a_s * (y0 + dS * d0),                    # the Euler predictor returned as the step
            "half_dropped": a_s * (y0 + dS * (d0 + d1)),             # the slopes summed, not averaged
            "endpoint_slope": a_s * (y0 + dS * d1),                  # prev_derivative dropped
            "second_slope_sigma_off": a_s * (y0 + dS * (d0 + (yp - dp) / S0) / 2),   # sigmas[i] for sigmas[i + 1]
            # the second call at the start level (its input scaled and its level taken one index off)
            "second_call_level_off": a_s * (y0 + dS * (d0 + (yp - tg.denoiser(a_p * yp, tp)) / S1) / 2),
            "current_sample_base": a_s * (yp + dS * (d0 + d1) / 2)}  # the predictor, not the saved sample, as base


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
def test_heun_steps_agree_with_derived_update(audit, pred):
    """diffusers' HeunDiscreteScheduler: the stages alternate [1, 2, 1, 2, ..., 1] over its 2n - 1 calls, and every
    record (order 1: the Euler = DDIM predictor, and the last step, Euler to sigma = 0; order 2: the whole Heun step
    from the saved sample) agrees with the derived update within its rounding bound, tables cast to float64 (to
    float64 rounding) and as shipped; so does the run."""
    checks, dd = audit
    for n, tables, spacing in ((2, "float64", "linspace"), (7, "native", "leading"), (10, "float64", "trailing"),
                               (20, "native", "linspace")):
        rec = dd.run(dd.SPECS["HeunDiscrete"], n, checks.TARGET, checks.Z_STEP, config={"timestep_spacing": spacing},
                     prediction_type=pred, tables=tables)
        orders = [st.order for st in rec.steps]
        assert orders == [1 + k % 2 for k in range(2 * n - 1)] and rec.t_end == 0.0, orders
        sc, rc = checks.step_check(rec), checks.run_check(rec)
        assert sc["ratio"] <= 1.0 and rc["ratio"] <= 1.0, (n, tables, sc, rc)
        if tables == "float64":
            assert sc["abs"] < 1e-11 and not sc["f32_rounded"], sc


def test_heun_wrong_variants_exceed_the_bound(audit):
    """Realistic bugs of a Heun step (the corrector skipped, the slopes summed or only the second one used, the
    second slope or the second call one sigma index off, the predictor instead of the saved sample as the base)
    exceed the derived update's rounding bound on the order-2 records of 10-step runs (float32 tables as shipped,
    the loosest bound); the VE-variable step above is the oracle's update and diffusers' within the bound."""
    checks, dd = audit
    from numerics.audit import oracle as O

    def prediction(kind, target, x, t, s, xp, tp, float32_coeffs):
        return O.heun_prediction(target, x, t, s, xp, tp, float32_coeffs)

    for spacing in ("linspace", "trailing"):
        rec = dd.run(dd.SPECS["HeunDiscrete"], 10, checks.TARGET, checks.Z_STEP, tables="native",
                     config={"timestep_spacing": spacing})
        worst = _worst_variants(rec, checks.TARGET, "heun", _heun_variants, prediction, check_diffusers=True)
        assert min(worst.values()) > 4.0, (spacing, worst)


def test_heun_derived_update_is_second_order():
    """Global error on the Gaussian target against the exact flow (uniform log-SNR steps, each a DDIM predictor and
    the Heun step at it): the derived update converges at order 2, the corrector skipped or only the second slope
    used at order 1, and the slopes summed (not averaged) not at all."""
    from numerics.audit import checks
    from numerics.audit import oracle as O

    tg, x0 = checks.TARGET, checks.Z_STEP
    errs = {"derived": [], "no_corrector": [], "endpoint_slope": [], "half_dropped": [], "oracle": []}
    for n in (16, 32, 64, 128):
        g = _lambda_grid(1.5, 0.02, n)
        r, c = tg.flow_map(g[0], g[-1])
        exact = r * x0 + c
        for name in errs:
            x = x0
            for j in range(n):
                mid, _ = O.step_prediction("ddim", tg, x, g[j], g[j + 1])
                x = O.heun_prediction(tg, mid, g[j + 1], g[j + 1], x, g[j])[0] if name == "oracle" \
                    else _heun_variants(tg, "heun", mid, g[j + 1], g[j + 1], x, g[j])[name]
            errs[name].append(float(np.max(np.abs(x - exact))))
    slope = {k: float(np.log2(e[-2] / e[-1])) for k, e in errs.items()}
    assert all(1.8 < slope[k] < 2.3 for k in ("derived", "oracle")), (slope, errs)
    assert all(0.8 < slope[k] < 1.2 for k in ("no_corrector", "endpoint_slope")), (slope, errs)
    assert abs(slope["half_dropped"]) < 0.2 and errs["half_dropped"][-1] > 0.1, (slope, errs)


def test_heun_audit_row(audit):
    """The audit checks HeunDiscrete's steps and runs (oracle kind heun): both tables, no step or run finding."""
    checks, dd = audit
    row = checks.audit_scheduler(dd.SPECS["HeunDiscrete"], _tiny(checks))
    assert row["oracle"] == "heun"
    assert row["step_native"]["max_err_over_bound"] <= 1.0 and row["step_float64"]["max_err_over_bound"] <= 1.0
    assert not [f for f in row["findings"] if f["check"] in ("step", "run")], row["findings"]


# ------------------------------------------------------------------------------- LMS (LMSDiscreteScheduler)
def _lag_int(nodes, a, b):
    """Integrals from ``a`` to ``b`` of the Lagrange basis polynomials on ``nodes`` (NumPy, independent of the
    generated coefficients)."""
    out = []
    for j, nj in enumerate(nodes):
        others = [m for i, m in enumerate(nodes) if i != j]
        P = np.polynomial.Polynomial.fromroots(others) / np.prod([nj - m for m in others]) if others \
            else np.polynomial.Polynomial([1.0])
        I_ = P.integ()
        out.append(float(I_(b) - I_(a)))
    return out


def _lms_variants(tg, x, t, s, xh, th):
    """diffusers' LMS step in its VE variables from the slopes at ``x`` (at ``t``) and at ``xh`` (at ``th``, latest
    last), with NumPy's Lagrange integrals, and realistic wrong variants (VP outputs)."""
    ve = lambda u: float(np.sqrt(np.expm1(2.0 * u))) if u > 0 else 0.0  # noqa: E731
    xs, ts = [x] + list(reversed(xh)), [t] + list(reversed(th))
    sig = [ve(u) for u in ts]
    d = [(xj / np.exp(-tj) - tg.denoiser(xj, tj)) / sj for xj, tj, sj in zip(xs, ts, sig)]
    y0, a_s, se = x / np.exp(-t), np.exp(-s), ve(s)
    step = lambda c, dd_: a_s * (y0 + sum(ci * di for ci, di in zip(c, dd_)))  # noqa: E731
    c = _lag_int(sig, sig[0], se)
    off = _lag_int([se] + sig[:-1], sig[0], se)            # the Lagrange nodes one sigma index off
    return {"derived": step(c, d), "nodes_one_off": step(off, d), "order_capped_1": step([se - sig[0]], d),
            "derivatives_reversed": step(c, list(reversed(d)))}


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
def test_lms_steps_agree_with_derived_update(audit, pred):
    """diffusers' LMSDiscreteScheduler: orders min(step + 1, 4), and every step and run agrees with the derived LMS
    update within its bound, tables float64 and as shipped."""
    checks, dd = audit
    for n, tables, spacing in ((2, "float64", "linspace"), (7, "native", "leading"), (10, "float64", "trailing")):
        rec = dd.run(dd.SPECS["LMSDiscrete"], n, checks.TARGET, checks.Z_STEP, config={"timestep_spacing": spacing},
                     prediction_type=pred, tables=tables)
        assert [st.order for st in rec.steps] == [min(k + 1, 4) for k in range(n)]
        sc, rc = checks.step_check(rec), checks.run_check(rec)
        assert sc["ratio"] <= 1.0 and rc["ratio"] <= 1.0, (n, tables, sc, rc)


def test_lms_wrong_variants_exceed_the_bound(audit):
    """Realistic bugs of an LMS step (Lagrange nodes one sigma index off, the order capped at 1, the derivatives in
    the wrong order) exceed the derived update's bound (quad's tolerance included, float32 tables) on the
    order >= 2 steps of a 10-step run; NumPy's Lagrange integrals are the oracle's update and diffusers' within it."""
    checks, dd = audit
    from numerics.audit import oracle as O

    rec = dd.run(dd.SPECS["LMSDiscrete"], 10, checks.TARGET, checks.Z_STEP, tables="native")
    worst = {}
    for k, st in enumerate(rec.steps):
        if st.order < 2:
            continue
        hist = rec.steps[k - st.order + 1:k]
        xh, th = [h.x_in for h in hist], [h.t_in for h in hist]
        v = _lms_variants(checks.TARGET, st.x_in, st.t_in, st.t_out, xh, th)
        ref, tol = O.lms_prediction(checks.TARGET, st.x_in, st.t_in, st.t_out, xh, th, float32_coeffs=True)
        assert np.max(np.abs(v["derived"] - ref) / tol) <= 1e-2
        assert np.max(np.abs(st.x_out - ref) / tol) <= 1.0
        for name, out in v.items():
            if name != "derived":
                worst[name] = max(worst.get(name, 0.0), float(np.max(np.abs(out - ref) / tol)))
    print("LMS wrong variants / bound:", worst)
    assert min(worst.values()) > 4.0, worst


def test_lms_quad_coefficients_within_quads_tolerance(audit):
    """diffusers' get_lms_coefficient (scipy quad, epsrel=1e-4) against the exact integrals (generated lms_weights)
    in float64 on 10- and 50-step grids: within quad's documented max(1.49e-8, 1e-4 |c|) (the measured
    difference is printed)."""
    checks, dd = audit
    from numerics.audit import oracle as O
    from numerics.generated import integrator_coeffs as IC

    worst_abs, worst_rel = 0.0, 0.0
    for n in (10, 50):
        sch = dd.build("LMSDiscreteScheduler", {})
        sch.set_timesteps(n)
        sch.sigmas = sch.sigmas.double()
        sig = [float(v) for v in sch.sigmas]
        for i in range(n):
            p = min(i + 1, 4)
            gaps = [sig[i - m] - sig[i - m + 1] for m in range(1, p)] + [1.0] * (4 - p)
            exact = IC.lms_weights(sig[i] - sig[i + 1], *gaps[:3])[p * (p - 1) // 2:p * (p + 1) // 2]
            for j in range(p):
                cq = float(sch.get_lms_coefficient(p, i, j))
                diff = abs(cq - exact[j])
                assert diff <= max(O.QUAD_EPSABS, O.QUAD_EPSREL * abs(exact[j])), (n, i, j, cq, exact[j])
                worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, diff / abs(exact[j]))
    print(f"LMS quad vs exact: max abs {worst_abs:.3e}, max rel {worst_rel:.3e}")

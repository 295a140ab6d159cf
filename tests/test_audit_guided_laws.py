"""The audit's guided-law check (numerics.audit.checks.guided_law_check): diffusers' DDPMScheduler run with the
pipelines' CFG of the exact outputs of the labelled mixture, its output's empirical CDF against the exact law of
the package's guided chain propagated on a 1-D grid.  The genuine scheduler passes at several seeds (the bound is
a DKW band at the ensemble level, so the verdict does not depend on the seed); realistic wrong variants (the CFG
weight of the other convention, the two outputs swapped, the posterior variance replaced by beta_t) are flagged
several times over."""
from __future__ import annotations

import math

import numpy as np
import pytest


@pytest.fixture(scope="module")
def audit():
    pytest.importorskip("diffusers")
    pytest.importorskip("torch")
    from numerics.audit import checks, diffusers_driver as dd

    return checks, dd


@pytest.mark.parametrize("seed", range(5))
def test_genuine_ddpm_guided_law_passes(audit, seed):
    checks, dd = audit
    row, found = checks.guided_law_check(dd.SPECS["DDPM"], checks.PROFILES["reduced"], seed=seed)
    assert found == [], [f.what for f in found]
    assert row["sup_cdf"] <= row["bound"]
    # the law's own error is a small part of the bound: the band is the sampling error's
    assert row["law_error"] < 0.1 * row["dkw"]
    assert row["start_sigma"] == 1.0   # DDPM's init_noise_sigma: the law starts from N(0, 1) at the first level


def _ho_salimans(u, c, g):
    """guidance_scale used as Ho-Salimans' w in gamma = 1 + w: weight g - 1."""
    return u + (g - 1.0) * (c - u)


def _swapped(u, c, g):
    """The unconditional and conditional outputs swapped."""
    return c + g * (u - c)


@pytest.mark.parametrize("combine", [_ho_salimans, _swapped], ids=["g_minus_1", "swapped"])
def test_wrong_cfg_is_flagged(audit, combine):
    checks, dd = audit
    row, found = checks.guided_law_check(dd.SPECS["DDPM"], checks.PROFILES["reduced"], combine=combine)
    assert [f.key for f in found] == ["DDPM:guidance:guided-law:float64"]
    assert row["ratio"] > 5.0, row


def test_wrong_variance_is_flagged(audit):
    """A DDPM whose noise is beta_t's std instead of the posterior's (diffusers' variance_type="fixed_large")."""
    checks, dd = audit
    import diffusers

    row, found = checks.guided_law_check(
        dd.SPECS["DDPM"], checks.PROFILES["reduced"],
        scheduler_factory=lambda cfg: diffusers.DDPMScheduler(**cfg, variance_type="fixed_large"))
    assert [f.key for f in found] == ["DDPM:guidance:guided-law:float64"]
    assert row["ratio"] > 5.0, row


def test_dkw_eps(audit):
    checks, _ = audit
    assert checks.dkw_eps(5000, 0.95) == pytest.approx(math.sqrt(math.log(40.0) / 10000.0))
    # at the ensemble level 1 - 2.5e-6
    assert checks.dkw_eps(5000) == pytest.approx(math.sqrt(math.log(2.0 / 2.5e-6) / 10000.0), rel=1e-9)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n"):
            checks.dkw_eps(bad)
    with pytest.raises(ValueError, match="level"):
        checks.dkw_eps(10, 1.0)


def test_law_is_a_cdf_from_the_start_law(audit):
    """The propagated law with no steps is the start law N(0, v); with the guided steps it is a CDF (increasing
    from ~0 to ~1) at increasing points."""
    checks, _ = audit
    from numerics.audit import oracle as O
    from numerics.references.grid_density import uniform_grid

    x = uniform_grid(-6.0, 6.0, 1201)
    law = O.ddpm_guided_law(checks.MIXTURE, [1.0], 0, 3.0, x, start_var=2.25)
    from scipy.special import ndtr

    assert np.max(np.abs(law["cdf"] - ndtr(x / 1.5))) < 1e-4
    law = O.ddpm_guided_law(checks.MIXTURE, [2.0, 1.0, 0.3, 0.01, 5e-5, 0.0], 2, 3.0, x)
    assert np.all(np.diff(law["points"]) > 0) and np.all(np.diff(law["cdf"]) >= 0)
    assert law["cdf"][0] < 1e-6 and abs(law["cdf"][-1] - 1.0) < 1e-3
    # a last deterministic step whose map D_w is not increasing (guided, from OU time 0.01) has no pushforward CDF
    with pytest.raises(ValueError, match="not increasing"):
        O.ddpm_guided_law(checks.MIXTURE, [2.0, 1.0, 0.3, 0.01, 0.0], 2, 3.0, x)


# ------------------------------------------------------------------ deterministic guided runs as laws (1-D)
def test_guided_run_jacobian_matches_differences(audit):
    """guided_run's propagated derivative dT/dx0 against central differences of the map (h = 1e-5: truncation
    ~h^2 |T'''| and rounding ~1e-16/h, both far below the 1e-6 tolerance)."""
    checks, dd = audit
    from numerics.audit import oracle as O

    rec = dd.run(dd.SPECS["DPMSolverMultistep-2"], 10, checks.MIXTURE, np.zeros((1, 1)), record_steps=False)
    orders = dd.dpm_orders(10, 2, rec.config)
    z = np.linspace(-3.0, 3.0, 41)[None, :]
    h = 1e-5
    _, _, J = O.guided_run("dpm2", checks.MIXTURE, rec.grid, z, 1, 1.5, orders, jacobian=True)
    hi = O.guided_run("dpm2", checks.MIXTURE, rec.grid, z + h, 1, 1.5, orders)[0]
    lo = O.guided_run("dpm2", checks.MIXTURE, rec.grid, z - h, 1, 1.5, orders)[0]
    assert np.max(np.abs(J - (hi - lo) / (2 * h))) < 1e-6


def test_deterministic_guided_laws(audit):
    """DDIM's guided output law equals the package's (CDF gap within the derived bound, every run increasing);
    DPM-Solver++(2M)'s differs only at float32 accuracy (its known step precision finding, no guidance finding);
    the KL to the tilted law p p(y|x)^w / Z decreases with the steps but not to 0 (informational)."""
    checks, dd = audit
    prof = checks.PROFILES["reduced"]
    row, found = checks.guided_law_pf(dd.SPECS["DDIM"], prof)
    assert found == []
    assert all(r["monotone"] and r["ratio"] <= 1.0 for r in row["runs"])
    kl = [r["kl_to_tilted"] for r in row["runs"]]
    assert kl[0] > kl[-1] > 0.05
    row, found = checks.guided_law_pf(dd.SPECS["DPMSolverMultistep-2"], prof)
    assert {f.key for f in found} <= {"DPMSolverMultistep-2:step:precision:float64"}
    assert all(r["ratio_f32"] <= 1.0 for r in row["runs"])


@pytest.mark.parametrize("combine", [_ho_salimans, _swapped], ids=["g_minus_1", "swapped"])
def test_deterministic_wrong_cfg_is_flagged(audit, combine):
    checks, dd = audit
    row, found = checks.guided_law_pf(dd.SPECS["DDIM"], checks.PROFILES["reduced"], combine=combine)
    assert {f.key for f in found} == {"DDIM:guidance:guided-law-pf:float64"}


def test_tilted_log_density_normalised(audit):
    checks, _ = audit
    x = np.linspace(-10.0, 10.0, 40001)
    q = np.exp(checks.MIXTURE.tilted_log_density(x, 2, 3.0))
    assert abs(np.sum(q) * (x[1] - x[0]) - 1.0) < 1e-9
    # w = 0 is the mixture itself, w = 1 the class-y component
    q1 = np.exp(checks.MIXTURE.tilted_log_density(x, 2, 1.0))
    assert np.max(np.abs(q1 - np.exp(-0.5 * ((x - 2.4) / 0.2) ** 2) / (0.2 * math.sqrt(2 * math.pi)))) < 1e-9


# ------------------------------------------------------------------ deterministic guided runs as laws (2-D)
def test_mixture2d_target(audit):
    """The 2-D labelled mixture: shapes (points on the last axis), the guided gain is the Jacobian of the guided
    denoiser (central differences), guidance_scale 1 is the conditional model, and bad input names its argument."""
    checks, _ = audit
    from numerics.audit.targets import MixtureTarget

    m = checks.MIXTURE2
    assert m.d == 2 and checks.MIXTURE.d == 1
    x = np.random.default_rng(0).normal(size=(7, 2))
    t, h = 0.4, 1e-5
    G = m.guided_gain(x, t, 1, 1.5)
    assert G.shape == (7, 2, 2) and m.guided_denoiser(x, t, 1, 1.5).shape == (7, 2)
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        fd = (m.guided_denoiser(x + e, t, 1, 1.5) - m.guided_denoiser(x - e, t, 1, 1.5)) / (2 * h)
        assert np.max(np.abs(G[:, :, j] - fd)) < 1e-7
    assert np.max(np.abs(m.cg_eps(x, t, 2, 1.0) - m.model_output(x, t, "epsilon", 2))) < 1e-12
    with pytest.raises(ValueError, match="x"):
        m.denoiser(np.zeros((4, 3)), t)
    with pytest.raises(ValueError, match="means"):
        MixtureTarget((0.5, 0.5), ((0.0, 1.0, 2.0), (1.0, 0.0, 0.0)), (1.0, 1.0))
    with pytest.raises(ValueError, match="points"):
        m.tilted_log_density(x, 1, 1.5, points=2)
    # the tilted law is normalised on its own 2-D grid (w = 1: the class-1 component)
    g = np.linspace(-9.0, 9.0, 721)
    mesh = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1)
    q1 = np.exp(m.tilted_log_density(mesh, 1, 1.0))
    dens = np.exp(-0.5 * np.sum((mesh - np.array([0.7, 0.5])) ** 2, axis=-1) / 0.36) / (2 * math.pi * 0.36)
    assert np.max(np.abs(q1 - dens)) < 1e-9


def test_guided_run_2d_jacobian_matches_differences(audit):
    """guided_run's 2 x 2 Jacobian (chain rule through the steps) against central differences of the map in each
    start coordinate (h = 1e-5: truncation ~h^2 and rounding ~1e-16/h, far below 1e-6), DDIM and DPM-Solver++(2M)."""
    checks, dd = audit
    from numerics.audit import oracle as O

    rec = dd.run(dd.SPECS["DPMSolverMultistep-2"], 10, checks.MIXTURE, np.zeros((1, 1)), record_steps=False)
    orders = dd.dpm_orders(10, 2, rec.config)
    z = np.random.default_rng(1).uniform(-3.0, 3.0, size=(30, 2))
    h = 1e-5
    for kind in ("ddim", "dpm2"):
        _, _, J = O.guided_run(kind, checks.MIXTURE2, rec.grid, z, 1, 1.5, orders, jacobian=True)
        assert J.shape == (30, 2, 2)
        for j in range(2):
            e = np.zeros(2)
            e[j] = h
            hi = O.guided_run(kind, checks.MIXTURE2, rec.grid, z + e, 1, 1.5, orders)[0]
            lo = O.guided_run(kind, checks.MIXTURE2, rec.grid, z - e, 1, 1.5, orders)[0]
            assert np.max(np.abs(J[:, :, j] - (hi - lo) / (2 * h))) < 1e-6


def test_guidance_bounds_2d_cover_the_cfg_identity(audit):
    """In 2-D the CFG line of the exact outputs agrees with classifier guidance within the derived bound at
    every call of a DDIM run; a wrong weight (g - 1) is beyond it by more than 1e6."""
    checks, dd = audit
    z = np.random.default_rng(2).normal(size=(200, 2))
    for combine, lo, hi in ((None, 0.0, 1.0), (_ho_salimans, 1e6, math.inf)):
        model = checks.CFGModel(checks.MIXTURE2, 1, 3.0, combine)
        dd.run(dd.SPECS["DDIM"], 10, model, z, tables="float64", record_steps=False)
        assert lo < model.identity_ratio <= hi, model.identity_ratio


def test_deterministic_guided_law_2d(audit):
    """DDIM's guided output law on the 2-D mixture equals the package's (density x displacement within the derived
    bound, the Jacobian determinant positive at every start point); the KL to the tilted law is positive and
    falls with the steps (informational)."""
    checks, dd = audit
    row, found = checks.guided_law_pf_2d(dd.SPECS["DDIM"], checks.PROFILES["reduced"])
    assert found == [], [f.what for f in found]
    assert all(r["monotone"] and 0.0 < r["ratio"] <= 1.0 and r["cfg_identity"] <= 1.0 for r in row["runs"])
    kl = [r["kl_to_tilted"] for r in row["runs"]]
    assert kl[0] > kl[-1] > 0.0


@pytest.mark.parametrize("combine", [_ho_salimans, _swapped], ids=["g_minus_1", "swapped"])
def test_deterministic_wrong_cfg_2d_is_flagged(audit, combine):
    checks, dd = audit
    row, found = checks.guided_law_pf_2d(dd.SPECS["DDIM"], checks.PROFILES["reduced"], combine=combine)
    assert {f.key for f in found} == {"DDIM:guidance:guided-law-pf-2d:float64"}
    assert min(r["ratio"] for r in row["runs"] if r["monotone"]) > 1e6, row


def test_folding_2d_map_is_not_counted(audit):
    """At guidance_scale 3 the 10-step guided DDIM map folds (its Jacobian determinant changes sign on the start
    grid): no density by change of variables, so nothing is counted, whatever diffusers returns."""
    checks, dd = audit
    import dataclasses

    prof = dataclasses.replace(checks.PROFILES["reduced"], law2_scale=3.0, law2_ns=(10,))
    row, found = checks.guided_law_pf_2d(dd.SPECS["DDIM"], prof, combine=_ho_salimans)
    assert found == [] and not row["runs"][0]["monotone"] and row["runs"][0]["min_jacobian"] < 0.0
    assert "ratio" not in row["runs"][0]


def test_guided_law_2d_needs_a_2d_target(audit):
    checks, dd = audit
    with pytest.raises(ValueError, match="target"):
        checks.guided_law_pf_2d(dd.SPECS["DDIM"], checks.PROFILES["reduced"], target=checks.MIXTURE)


# ------------------------------------------------------------------ EulerAncestralDiscrete's guided law (1-D)
def _ancestral(sigma_down_is_sigma_to: bool):
    """EulerAncestralDiscrete's step written out (diffusers' formulas, float64): the ancestral split
    sigma_up^2 = sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2, sigma_down = sqrt(sigma_to^2 - sigma_up^2);
    with ``sigma_down_is_sigma_to`` the plain Euler step to sigma_to with the ancestral noise added on top (a
    variance too large by sigma_up^2)."""
    import diffusers
    from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteSchedulerOutput
    from diffusers.utils.torch_utils import randn_tensor

    class Ancestral(diffusers.EulerAncestralDiscreteScheduler):
        def step(self, model_output, timestep, sample, generator=None, return_dict=True):
            if self.step_index is None:
                self._init_step_index(timestep)
            s_from, s_to = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
            up = (s_to ** 2 * (s_from ** 2 - s_to ** 2) / s_from ** 2) ** 0.5
            down = s_to if sigma_down_is_sigma_to else (s_to ** 2 - up ** 2) ** 0.5
            x0 = sample - s_from * model_output
            noise = randn_tensor(model_output.shape, dtype=model_output.dtype, generator=generator)
            prev = sample + model_output * (down - s_from) + noise * up
            self._step_index += 1
            return EulerAncestralDiscreteSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    return lambda cfg: Ancestral(**cfg)


@pytest.mark.parametrize("seed", range(3))
def test_genuine_euler_ancestral_guided_law_passes(audit, seed):
    checks, dd = audit
    row, found = checks.guided_law_check(dd.SPECS["EulerAncestralDiscrete"], checks.PROFILES["reduced"], seed=seed)
    assert found == [], [f.what for f in found]
    # the law's own error (with the float32 sample allowance) is a small part of the bound
    assert row["sup_cdf"] <= row["bound"] and row["law_error"] < 0.25 * row["dkw"]
    # init_noise_sigma z in VE is N(0, start_sigma^2) in VP at the first level, start_sigma = 1 to float32 accuracy
    # of the sigmas (the law starts from it, not from 1)
    assert abs(row["start_sigma"] - 1.0) < 1e-4


def test_euler_ancestral_written_out_passes(audit):
    """The control of the wrong variant below: the same step written out with diffusers' split passes."""
    checks, dd = audit
    row, found = checks.guided_law_check(dd.SPECS["EulerAncestralDiscrete"], checks.PROFILES["reduced"],
                                         scheduler_factory=_ancestral(False))
    assert found == [], [f.what for f in found]


@pytest.mark.parametrize("variant", ["g_minus_1", "swapped", "no_split"])
def test_wrong_euler_ancestral_is_flagged(audit, variant):
    checks, dd = audit
    kw = {"g_minus_1": {"combine": _ho_salimans}, "swapped": {"combine": _swapped},
          "no_split": {"scheduler_factory": _ancestral(True)}}[variant]
    row, found = checks.guided_law_check(dd.SPECS["EulerAncestralDiscrete"], checks.PROFILES["reduced"], **kw)
    assert [f.key for f in found] == ["EulerAncestralDiscrete:guidance:guided-law:float64"]
    assert row["ratio"] > 5.0, row

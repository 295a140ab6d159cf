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

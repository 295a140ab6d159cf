"""The audit on diffusers' alternative sigma grids: HeunDiscrete (oracle ``heun``) and EulerDiscrete (oracle
``ddim``) with ``use_karras_sigmas``, ``use_exponential_sigmas`` or ``use_beta_sigmas``
(numerics.audit.diffusers_driver.SIGMA_GRID_VARIANTS).

(a) Every step and run agrees with the derived update within its rounding bound, tables cast to float64 and as
shipped (EulerDiscrete with float64 tables within the float32 bound: it casts the sample to float32 in step(),
its known precision finding).  (b) The driver runs the option's grid, derived here in NumPy / SciPy from the
default grid's first and last sigma (diffusers converts between those two): a driver that dropped the option
would run the default grid, which fails the same comparison.  (c) A deliberately wrong Heun on the Karras grid
is a step finding, and the genuine one on the same profile is not.  (d) Heun stays second order on these grids
up to its last nonzero sigma; the final Euler jump from that fixed sigma to 0 is what the audit's order sweep sees.
"""
from __future__ import annotations

import numpy as np
import pytest

VARIANTS = ("HeunDiscrete-karras", "HeunDiscrete-exponential", "HeunDiscrete-beta", "EulerDiscrete-karras",
            "EulerDiscrete-exponential", "EulerDiscrete-beta")
PREDS = ("epsilon", "v_prediction", "sample")
#: float32 unit roundoff: diffusers computes each grid in float64 and stores it in float32
U32 = 2.0 ** -24


@pytest.fixture
def audit():
    pytest.importorskip("diffusers")
    pytest.importorskip("torch")
    from numerics.audit import checks, diffusers_driver as dd

    return checks, dd


def test_the_variants_and_their_oracles(audit):
    checks, dd = audit
    assert dd.SIGMA_GRID_VARIANTS == VARIANTS
    for name in VARIANTS:
        spec = dd.SPECS[name]
        heun = spec.cls == "HeunDiscreteScheduler"
        assert (spec.oracle, spec.order) == (("heun", 2) if heun else ("ddim", 1))
        assert [k for k, v in spec.config if v] == [k for k in dd.SIGMA_GRID_OPTIONS if name.endswith(k.split("_")[1])]


# ------------------------------------------------------------------------------------- (a) steps and runs
@pytest.mark.parametrize("name", VARIANTS)
def test_steps_and_runs_agree_with_the_derived_update(audit, name):
    """Three prediction types x (3 steps linspace, 8 trailing, 25 leading) x both tables.  (One and two steps are
    left out: there every option's grid is the default grid, its first and last sigma.)"""
    checks, dd = audit
    spec = dd.SPECS[name]
    heun = spec.oracle == "heun"
    worst = {"float64": 0.0, "native": 0.0}
    for pred in PREDS:
        for n, spacing in ((3, "linspace"), (8, "trailing"), (25, "leading")):
            for tables in ("float64", "native"):
                rec = dd.run(spec, n, checks.TARGET, checks.Z_STEP, config={"timestep_spacing": spacing},
                             prediction_type=pred, tables=tables)
                sc, rc = checks.step_check(rec), checks.run_check(rec)
                if heun:
                    assert [st.order for st in rec.steps] == [1 + k % 2 for k in range(2 * n - 1)]
                if tables == "float64" and not heun:   # float32 accuracy: the precision finding, nothing else
                    assert sc["f32_rounded"] and sc["ratio32"] <= 1.0 and rc["ratio32"] <= 1.0, (pred, n, sc, rc)
                    assert sc["ratio"] > 1.0
                else:
                    assert sc["ratio"] <= 1.0 and rc["ratio"] <= 1.0, (pred, n, tables, sc, rc)
                if heun:   # HeunDiscrete keeps float64 samples in float64
                    assert not sc["f32_rounded"]
                worst[tables] = max(worst[tables], sc["ratio"], rc["ratio"])
    assert worst["native"] > 0.0   # the comparison really ran


# ------------------------------------------------------------------------------------------- (b) the grids
def _option_grid(option: str, sigma_max: float, sigma_min: float, n: int) -> np.ndarray:
    """The ``n`` sigmas of ``option`` from ``sigma_max`` down to ``sigma_min`` (n >= 2), in float64: Karras et al.
    (rho = 7): sigma_i^(1/rho) linear in i; exponential: log sigma_i linear in i; beta: sigma_min + q_i
    (sigma_max - sigma_min), q_i the quantile of Beta(0.6, 0.6) at 1 - i / (n - 1)."""
    from scipy import stats

    r = np.arange(n) / (n - 1)
    if option == "use_karras_sigmas":
        rho = 7.0
        a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
        return (a + r * (b - a)) ** rho
    if option == "use_exponential_sigmas":
        return np.exp(np.log(sigma_max) + r * (np.log(sigma_min) - np.log(sigma_max)))
    assert option == "use_beta_sigmas"
    return sigma_min + stats.beta(0.6, 0.6).ppf(1.0 - r) * (sigma_max - sigma_min)


def _levels(sigmas: np.ndarray, heun: bool) -> np.ndarray:
    """The distinct call levels, in order, of a sigma list without its final entry: HeunDiscrete holds sigma_0,
    then every later sigma twice (its corrector's call at the predictor's level, then the next step's call)."""
    if heun:
        assert np.array_equal(sigmas[1::2], sigmas[2::2]), sigmas
        return sigmas[0::2]
    return sigmas


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("n, spacing, betas", [(3, "linspace", "linear"), (8, "trailing", "scaled_linear"),
                                               (25, "leading", "squaredcos_cap_v2")])
def test_the_driver_runs_the_options_grid(audit, name, n, spacing, betas):
    """The levels of the driver's model calls (its record's OU times, back to sigma = sqrt(e^(2t) - 1)) are the
    option's grid between the default grid's first and last sigma, then 0.  Tolerance 2 u32 sigma: diffusers'
    float64 value rounded to float32 (u32 sigma), plus at most as much again for the difference of two float64
    evaluations of the formula and of the OU-time round trip (each a few dozen float64 ulps, far below u32)."""
    checks, dd = audit
    spec = dd.SPECS[name]
    heun = spec.oracle == "heun"
    cfg = {"timestep_spacing": spacing, "beta_schedule": betas}
    option = next(k for k, v in spec.config if v)
    default = dd.build(spec.cls, cfg)   # the same class and settings, no grid option
    default.set_timesteps(n)
    d = default.sigmas.double().numpy()
    assert d[-1] == 0.0
    d_levels = _levels(d[:-1], heun)
    assert len(d_levels) == n
    want = _option_grid(option, float(d_levels[0]), float(d_levels[-1]), n)
    tol = 2.0 * U32 * want

    rec = dd.run(spec, n, checks.TARGET, checks.Z_STEP, config=cfg, record_steps=False)
    assert rec.t_end == 0.0
    got = _levels(np.sqrt(np.expm1(2.0 * np.asarray(rec.grid[:-1]))), heun)
    assert len(got) == n
    assert np.all(np.abs(got - want) <= tol), (got, want, np.abs(got - want) / tol)
    # the comparison can fail: the default grid (the option ignored) is not the option's grid
    assert np.max(np.abs(d_levels - want) / tol) > 1e3


# ------------------------------------------------------------------------------------ (c) a wrong Heun step
def _wrong_heun(kind: str):
    """HeunDiscreteScheduler with a wrong second stage on whatever grid it is given: ``"half_dropped"`` returns
    sample + (d0 + d1) dt (the trapezoid's 1/2 dropped); ``"sigma_off"`` forms the second slope with
    sigmas[i] (the step's start) where sigmas[i + 1] (the predictor's level) belongs."""
    from diffusers import HeunDiscreteScheduler

    class WrongHeun(HeunDiscreteScheduler):
        def step(self, model_output, timestep, sample, *args, **kwargs):
            if self.step_index is None:
                self._init_step_index(timestep)
            if self.state_in_first_order:
                return super().step(model_output, timestep, sample, *args, **kwargs)
            if kind == "half_dropped":
                self.dt = 2 * self.dt
                return super().step(model_output, timestep, sample, *args, **kwargs)
            saved = self.sigmas
            table = saved.clone()
            table[self.step_index] = saved[self.step_index - 1]
            self.sigmas = table
            try:
                return super().step(model_output, timestep, sample, *args, **kwargs)
            finally:
                self.sigmas = saved

    return WrongHeun


def _tiny(checks, name):
    return checks.Profile(steps_ns=(3, 8), order_ns=(10, 20, 40), finite_ns=(1,), predictions=PREDS,
                          spacings=("linspace", "trailing"), finite_skip=(name,))


@pytest.mark.parametrize("kind", ["half_dropped", "sigma_off"])
def test_a_wrong_heun_on_the_karras_grid_is_a_step_finding(audit, kind):
    checks, dd = audit
    from diffusers import HeunDiscreteScheduler

    name = "HeunDiscrete-karras"
    prof = _tiny(checks, name)
    bad = _wrong_heun(kind)
    row = checks.audit_scheduler(dd.SPECS[name], prof, scheduler_factory=lambda cfg: bad(**cfg))
    keys = {f["key"] for f in row["findings"]}
    assert {f"{name}:step:step:float64", f"{name}:step:step:native"} <= keys, keys
    assert row["step_native"]["max_err_over_bound"] > 1.0 and row["step_float64"]["max_err_over_bound"] > 1.0
    assert all(f["config"]["use_karras_sigmas"] is True for f in row["findings"])
    # the genuine scheduler on the same profile: no finding, and the check ran
    good = checks.audit_scheduler(dd.SPECS[name], prof, scheduler_factory=lambda cfg: HeunDiscreteScheduler(**cfg))
    assert good["findings"] == []
    assert 0.0 < good["step_native"]["max_err_over_bound"] <= 1.0
    assert 0.0 < good["step_float64"]["max_err_over_bound"] <= 1.0
    assert good["finite"]["skipped"] and good["finite"]["configurations"] == 0


# ---------------------------------------------------------------------------------------------- (d) order
def test_heun_is_second_order_on_these_grids_up_to_its_last_sigma(audit):
    """The audit's order at the last nonzero sigma (``law_and_order``'s ``observed_order_last``: the sample held at
    the last model call, the last whole Heun step's landing level, against the exact flow map from the start) is 2
    on each grid from 50 to 200 steps; Euler on the same grids, the harness's negative control, 1.  (The order at
    the output, sigma = 0, includes the final Euler jump from the last sigma, fixed with
    timestep_spacing="linspace": an error that does not fall with n.)"""
    checks, dd = audit
    tg = checks.TARGET
    slopes = {}
    for name in VARIANTS:
        spec = dd.SPECS[name]
        rec = dd.run(spec, 20, tg, checks.Z_STEP)
        st = rec.steps[-2]   # lands at the last nonzero sigma (Heun: the last order-2 record)
        assert st.t_out == rec.grid[-2] > 0.0 and rec.steps[-1].t_out == rec.t_end == 0.0
        # the recorded last-call state is that landing state, bit for bit (not the predictor's, not the output)
        np.testing.assert_array_equal(rec.last_call_state, st.x_out)
        law = checks.law_and_order(spec, (50, 100, 200))
        assert all(r["t_last"] > r["t_end"] == 0.0 for r in law["rows"])
        errs = [r["flow_map_error_last"] for r in law["rows"]]
        assert errs[0] > errs[1] > errs[2] > 1e-10, errs   # truncation errors, far above rounding
        slopes[name] = law["observed_order_last"]
    print("observed order at the last nonzero sigma, 50-200 steps:", {k: round(v, 3) for k, v in slopes.items()})
    assert all(1.8 < slopes[n] < 2.3 for n in VARIANTS[:3]), slopes
    assert all(0.8 < slopes[n] < 1.2 for n in VARIANTS[3:]), slopes


# ------------------------------------------------------------------------------ the reduced profile's skip
def test_the_reduced_profile_skips_only_their_finiteness_sweep(audit):
    checks, dd = audit
    assert checks.PROFILES["reduced"].finite_skip == dd.SIGMA_GRID_VARIANTS
    assert checks.PROFILES["full"].finite_skip == ()
    with pytest.raises(ValueError, match="finite_skip"):
        checks.Profile(steps_ns=(1,), order_ns=(10,), finite_ns=(1,), finite_skip=("HeunDiscrete-rho",))
    from numerics.audit import report as rp

    row = {"scheduler": "HeunDiscrete-karras", "oracle": "heun", "findings": [],
           "finite": {"configurations": 0, "non_finite": 0, "skipped": True}}
    md = rp.markdown({"versions": {}, "profile": "reduced", "seconds": 0.0, "schedulers": [row]})
    assert "| skipped | 0 |" in md


# ------------------------------------------------------------------------------ the grid conversions' memo
def _grid(sched, n):
    sched.set_timesteps(n)
    return sched.sigmas.numpy().copy(), sched.timesteps.numpy().copy()


def test_the_memoised_grid_conversions_are_diffusers_own_bit_for_bit(audit):
    """The driver memoises the grid conversions (diffusers_driver._memo_grid); each memoised ``set_timesteps``
    gives the fresh scheduler's sigmas and timesteps bit for bit, a second time from the memo too; a configuration
    that differs in a setting the conversions read (EulerDiscrete's sigma_min) and a subclass with its own
    conversion get their own grids, not the memoised ones."""
    checks, dd = audit
    import diffusers

    for name in VARIANTS:
        spec = dd.SPECS[name]
        klass = getattr(diffusers, spec.cls)
        for n, spacing, betas, pred in ((7, "linspace", "linear", "epsilon"), (7, "linspace", "linear", "sample"),
                                        (13, "trailing", "scaled_linear", "v_prediction"), (50, "leading", "linear",
                                                                                            "epsilon")):
            cfg = {**spec.kwargs, "timestep_spacing": spacing, "beta_schedule": betas, "prediction_type": pred}
            fresh = _grid(klass(**cfg), n)
            for _ in range(2):   # the first call fills the memo, the second reads it
                s = dd.build(spec.cls, cfg)
                dd._memo_grid(s)
                got = _grid(s, n)
                for a, b in zip(got, fresh):
                    np.testing.assert_array_equal(a, b)
    spec = dd.SPECS["EulerDiscrete-karras"]
    klass = diffusers.EulerDiscreteScheduler
    s = dd.build(spec.cls, spec.kwargs)
    dd._memo_grid(s)
    own = _grid(s, 10)   # memoised first: the two below share its conversions' arguments
    other = {**spec.kwargs, "sigma_min": 0.5}
    s = dd.build(spec.cls, other)
    dd._memo_grid(s)
    got, want = _grid(s, 10), _grid(klass(**other), 10)
    np.testing.assert_array_equal(got[0], want[0])
    assert not np.array_equal(got[0], own[0])   # the setting moves the grid

    class Rho3(klass):
        def _convert_to_karras(self, in_sigmas, num_inference_steps):
            ramp = np.linspace(0, 1, num_inference_steps)
            lo, hi = in_sigmas[-1].item() ** (1 / 3), in_sigmas[0].item() ** (1 / 3)
            return (hi + ramp * (lo - hi)) ** 3

    s = Rho3(**spec.kwargs)
    dd._memo_grid(s)
    got = _grid(s, 10)
    np.testing.assert_array_equal(got[0], _grid(Rho3(**spec.kwargs), 10)[0])
    assert not np.array_equal(got[0], own[0])

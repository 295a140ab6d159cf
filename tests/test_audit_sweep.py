"""The audit's finiteness sweep (numerics.audit.checks.finiteness): its design over the configuration axes users
set (counted against the Profile docstring's formula, so that an axis silently dropped fails), documented refusals
kept apart from crashes, deliberately broken schedulers reported with the axis value that breaks them, and the
zero-terminal-SNR finding of DDIM with its reproduction.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest


@pytest.fixture
def audit():
    pytest.importorskip("diffusers")
    pytest.importorskip("torch")
    from numerics.audit import checks, diffusers_driver as dd

    return checks, dd


def _prof(checks, **kw):
    base = dict(steps_ns=(1,), order_ns=(10,), finite_ns=(1, 2), predictions=("epsilon", "v_prediction"),
                spacings=("leading", "trailing"), betas=("linear",), axis_ns=(1, 3), axis_dtypes=("float32",))
    return checks.Profile(**{**base, **kw})


# what each scheduler class's __init__ takes among the swept keys (diffusers 0.42.1), written out by hand
TAKES = {
    "DDIM": {"timestep_spacing", "set_alpha_to_one", "steps_offset", "rescale_betas_zero_snr"},
    "EulerDiscrete": {"timestep_spacing", "steps_offset", "final_sigmas_type", "rescale_betas_zero_snr"},
    "HeunDiscrete": {"timestep_spacing", "steps_offset"},
    "DPMSolverSinglestep": {"final_sigmas_type"},
}
#: the non-default value each axis sweeps at the profile's values (every scheduler here has the default base)
AXIS_VALUE = {"steps_offset": "steps_offset=1", "final_sigmas_type": "final_sigmas_type=sigma_min",
              "rescale_betas_zero_snr": "rescale_betas_zero_snr=True"}
PREDS = ("epsilon", "sample", "v_prediction")


@pytest.mark.parametrize("name", sorted(TAKES))
def test_sweep_counts_follow_the_design(audit, name):
    """Base: betas x spacings x set_alpha_to_one x predictions x finite_ns x 2 dtypes (keys taken only); each
    axis value: betas x spacings x predictions x axis_ns x axis_dtypes.  DDIM: 32 + 2 x 8; Euler: 16 + 3 x 8."""
    checks, dd = audit
    prof = _prof(checks)
    takes = TAKES[name]
    n_sp = 2 if "timestep_spacing" in takes else 1
    base = 1 * n_sp * (2 if "set_alpha_to_one" in takes else 1) * 2 * 2 * 2
    per_value = 1 * n_sp * 2 * 2 * 1
    expect_axes = {AXIS_VALUE[k]: per_value for k in AXIS_VALUE if k in takes}
    count, found, unsupported, per_axis = checks.finiteness(dd.SPECS[name], prof)
    assert per_axis == expect_axes
    assert count == base + per_value * len(expect_axes)
    design = checks.finite_design(dd.SPECS[name], prof)
    assert len(design) == count
    for key, value in (("steps_offset", 1), ("final_sigmas_type", "sigma_min"), ("rescale_betas_zero_snr", True)):
        runs = [c for c in design if c.config.get(key) == value]
        assert len(runs) == (per_value if key in takes else 0), key
        assert all(c.axis == f"{key}={value}" for c in runs)   # one axis at a time
        assert all(set(c.config) - {key} <= {"beta_schedule", "timestep_spacing"} for c in runs)
    if name == "EulerDiscrete":   # no finding on this design (with rescale_betas_zero_snr it starts at 2^-24)
        assert found == [] and unsupported == []


def test_counts_of_the_profiles(audit):
    """The reduced and full designs' sizes for DDIM (3 betas, 3 spacings, 3 prediction types)."""
    checks, dd = audit
    red, full = checks.PROFILES["reduced"], checks.PROFILES["full"]
    assert len(checks.finite_design(dd.SPECS["DDIM"], red)) == 540 + 2 * 27 * 5
    assert len(checks.finite_design(dd.SPECS["DDIM"], full)) == 5400 + 2 * 27 * len(full.axis_ns) * 2
    assert len(checks.finite_design(dd.SPECS["EulerDiscrete"], red)) == 270 + 3 * 27 * 5
    assert set(checks.FULL_AXIS_NS) >= {1, 2, 3, 7, 13, 47, 50}


def test_refusal_at_construction_is_unsupported(audit):
    """DPMSolverMultistep with algorithm_type="dpmsolver" refuses final_sigmas_type="zero" with a ValueError in
    its __init__: unsupported, not a finding; the spec's own value (sigma_min) is the base."""
    checks, dd = audit
    prof = _prof(checks, steps_offsets=(0,), zero_snrs=(False,))
    count, found, unsupported, per_axis = checks.finiteness(dd.SPECS["DPMSolverMultistep-1-dpmsolver"], prof)
    assert per_axis == {"final_sigmas_type=zero": 8}
    assert found == []
    assert len(unsupported) == 1 and unsupported[0].startswith("final_sigmas_type=zero") \
        and "not supported" in unsupported[0]


def _euler_broken(when):
    """EulerDiscreteScheduler whose step returns NaN where ``when(config)`` is true."""
    from diffusers import EulerDiscreteScheduler

    class Broken(EulerDiscreteScheduler):
        def step(self, model_output, timestep, sample, *args, **kwargs):
            out = super().step(model_output, timestep, sample, *args, **kwargs)
            if when(self.config):
                out.prev_sample = out.prev_sample * float("nan")
            return out

    return Broken


@pytest.mark.parametrize("key, value", [("steps_offset", 1), ("rescale_betas_zero_snr", True),
                                        ("final_sigmas_type", "sigma_min")])
def test_broken_at_one_axis_value_is_a_finding_with_that_value(audit, key, value):
    checks, dd = audit
    prof = _prof(checks)
    bad = _euler_broken(lambda c: c[key] == value)
    count, found, unsupported, per_axis = checks.finiteness(dd.SPECS["EulerDiscrete"], prof,
                                                            scheduler_factory=lambda cfg: bad(**cfg))
    assert len(found) == per_axis[f"{key}={value}"]   # every run at that value, and none elsewhere
    assert {f.key for f in found} == {f"EulerDiscrete:finite:non-finite output:{key}={value}"}
    assert all(f.config[key] == value and f.check == "finite" for f in found)
    assert f"{key}={value!r}" in found[0].reproduction()
    assert "finite with" in found[0].what
    # the genuine scheduler on the same design: no finding (the check can pass)
    from diffusers import EulerDiscreteScheduler

    assert checks.finiteness(dd.SPECS["EulerDiscrete"], prof,
                             scheduler_factory=lambda cfg: EulerDiscreteScheduler(**cfg))[1] == []


def test_broken_everywhere_is_the_base_configurations_finding(audit):
    """A failure that the scheduler's own value of the axis shares is not attributed to the axis."""
    checks, dd = audit
    prof = _prof(checks)
    bad = _euler_broken(lambda c: c["timestep_spacing"] == "trailing")
    found = checks.finiteness(dd.SPECS["EulerDiscrete"], prof, scheduler_factory=lambda cfg: bad(**cfg))[1]
    assert found and {f.key for f in found} == {"EulerDiscrete:finite:non-finite output"}
    assert all(f.axis == "" and f.config["timestep_spacing"] == "trailing" for f in found)
    assert not any(k in f.config for f in found for k in AXIS_VALUE)


def test_crash_is_a_finding_and_refusal_is_not(audit):
    """A RuntimeError in step at steps_offset=1 is a finding ("exception"); a ValueError in __init__ at
    rescale_betas_zero_snr=True is a documented refusal (unsupported)."""
    checks, dd = audit
    from diffusers import EulerDiscreteScheduler

    class Crashing(EulerDiscreteScheduler):
        def __init__(self, **kw):
            if kw.get("rescale_betas_zero_snr"):
                raise ValueError("rescale_betas_zero_snr: not supported here")
            super().__init__(**kw)

        def step(self, *args, **kwargs):
            if self.config.steps_offset == 1:
                raise RuntimeError("boom")
            return super().step(*args, **kwargs)

    prof = _prof(checks, final_sigmas_types=("zero",))
    count, found, unsupported, _ = checks.finiteness(dd.SPECS["EulerDiscrete"], prof,
                                                     scheduler_factory=lambda cfg: Crashing(**cfg))
    assert {f.key for f in found} == {"EulerDiscrete:finite:exception:steps_offset=1"}
    assert "RuntimeError: boom" in found[0].what
    assert unsupported == ["rescale_betas_zero_snr=True, epsilon: rescale_betas_zero_snr: not supported here"]


def test_zero_terminal_snr_ddim_epsilon_is_nan(audit):
    """With rescale_betas_zero_snr=True DDIM keeps alpha_bar = 0 at timestep 999 (no 2^-24 floor), which a
    trailing grid calls first: epsilon prediction divides by sqrt(alpha_bar) = 0; v_prediction and sample do not."""
    checks, dd = audit
    prof = _prof(checks, spacings=("trailing",), predictions=PREDS, steps_offsets=(0,), axis_ns=(1, 2))
    count, found, unsupported, per_axis = checks.finiteness(dd.SPECS["DDIM"], prof)
    assert {f.key for f in found} == {"DDIM:finite:non-finite output:rescale_betas_zero_snr=True"}
    assert {f.config["prediction_type"] for f in found} == {"epsilon"} and len(found) == 2
    f = checks._minimal(found)[0]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(f.reproduction(), f.key, "exec"), {})
    assert "nan" in buf.getvalue() and "inf" in buf.getvalue()
    # the driver's level of the pure-noise call is OU time inf; the exact model is finite there
    rec = dd.run(dd.SPECS["DDIM"], 2, checks.TARGET, checks.Z_STEP, prediction_type="v_prediction",
                 config={"timestep_spacing": "trailing", "rescale_betas_zero_snr": True}, record_steps=False)
    assert rec.t_start == math.inf and np.isfinite(rec.out).all()


@pytest.mark.parametrize("field, value", [("axis_ns", (0,)), ("finite_ns", (2.5,)), ("axis_dtypes", ("float16",)),
                                          ("finite_dtypes", ("int8",))])
def test_profile_bad_input(audit, field, value):
    checks, _ = audit
    with pytest.raises(ValueError, match=field):
        _prof(checks, **{field: value})

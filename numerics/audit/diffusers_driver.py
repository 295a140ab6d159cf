r"""Build diffusers' schedulers and run them with exact model outputs, in float64.

diffusers and torch are imported lazily (:func:`load`); without them :class:`MissingExtra` says how to install
the ``[audit]`` extra.

Coordinates.  diffusers' DDIM, DDPM, DPM-Solver, UniPC and DEIS hold the sample in VP coordinates
(:math:`x = \sqrt{\bar\alpha}x_0 + \sqrt{1-\bar\alpha}\varepsilon`); Euler, Euler-ancestral, Heun and LMS hold it
in VE coordinates :math:`x/\sqrt{\bar\alpha}` and give the model ``scale_model_input(x) =`` :math:`x/\sqrt{1+\sigma^2}`.
The driver records every state in VP coordinates at the OU time of its noise level
(:mod:`numerics.audit.targets`): the level of a model call is ``alphas_cumprod[t]`` for the abar-indexed
schedulers (DDIM, DDPM) and ``sigmas[step_index]`` for the sigma-indexed ones; the level a step lands at is the
scheduler's own rule (DDIM: ``t - num_train_timesteps // num_inference_steps``, or ``final_alpha_cumprod``;
DDPM: ``previous_timestep(t)``, or 1; sigma-indexed: ``sigmas[step_index + 1]``).

Tables.  diffusers stores ``betas``, ``alphas_cumprod`` and ``sigmas`` in float32.  ``tables="native"`` runs
the scheduler as shipped (a 0-dim float32 table entry times a float64 sample gives float64, but coefficients
formed from table entries alone, e.g. ``(1 - alpha_prod_t) ** 0.5``, are computed in float32);
``tables="float64"`` casts every float32 table to float64 (the same values, exactly) after ``set_timesteps`` so
that every coefficient is computed in float64.  The levels the driver reports are always the stored values.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from numerics.audit.targets import GaussianTarget, ou_time, ou_time_of_sigma

__all__ = ["INSTALL_HINT", "MissingExtra", "load", "SchedulerSpec", "SPECS", "VE_SCHEDULERS", "build", "RunRecord",
           "StepRecord", "run", "TABLE_ATTRS", "exact_table_abar", "dpm_orders", "SIGMA_GRID_OPTIONS",
           "SIGMA_GRID_VARIANTS"]

INSTALL_HINT = 'pip install "guidance-verify[audit]"'
#: Schedulers that hold the sample in VE coordinates (``init_noise_sigma`` > 1, ``scale_model_input`` divides).
VE_SCHEDULERS = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                 "LMSDiscreteScheduler")
#: float32 tables a scheduler may hold (cast by ``tables="float64"``).
TABLE_ATTRS = ("betas", "alphas", "alphas_cumprod", "final_alpha_cumprod", "one", "sigmas", "alpha_t", "sigma_t",
               "lambda_t", "log_sigmas")


class MissingExtra(ImportError):
    """diffusers or torch is not installed."""


def load():
    """``(torch, diffusers)``, or :class:`MissingExtra` naming the extra to install."""
    try:
        import torch
        import diffusers
    except ImportError as exc:
        raise MissingExtra(f"the audit needs diffusers and torch ({exc}); install them with: {INSTALL_HINT}") from None
    return torch, diffusers


@dataclass(frozen=True)
class SchedulerSpec:
    r"""One audited scheduler configuration family.

    ``oracle``: the package method whose derived update the scheduler claims to implement on its own grid
    (``"ddim"``: DDIM = DPM-Solver-1 = Euler in VE coordinates with the noise frozen, proofs_notes/integrators.md
    §§1, 3; ``"ddpm"``; ``"dpm2"``: DPM-Solver++(2M), §4; ``"dpm3"``: DPM-Solver++(3M), §4b; ``"dpm1e"``,
    ``"dpm2e"``, ``"dpm2eh"``: DPM-Solver-1 and DPM-Solver-2M midpoint / heun in the noise form, §4c; ``"dpm3e"``:
    DPM-Solver-3M in the noise form, §4j; ``"dpm2s"``,
    ``"dpm2sh"``: DPM-Solver++(2S) midpoint / heun, §4d; ``"dpm3s"``, ``"dpm3sh"``: DPM-Solver++(3S) midpoint /
    heun, §4i; ``"heun"``: Heun's trapezoidal step in the VE variables,
    §4e; ``"lms"``: linear multistep, §4f; ``"deis"``: DEIS, the Lagrange interpolant of the noise prediction in
    :math:`\log\rho` integrated exactly over :math:`\rho = \sigma/\alpha`, §4g; ``"unipc"``: UniPC's bh2 corrector
    UniC and predictor UniP (DDIM, DPM-Solver++(2M)), §4h), or ``None`` (no derived update in the package yet:
    its law and order are reported informationally).  ``order``: the global order the theory predicts for the
    deterministic run (``None`` for stochastic samplers).  ``abar_indexed``: levels from ``alphas_cumprod[t]``.
    """

    name: str
    cls: str
    config: tuple = ()
    oracle: str | None = None
    order: int | None = None
    stochastic: bool = False
    abar_indexed: bool = False

    @property
    def kwargs(self) -> dict:
        return dict(self.config)


SPECS: dict[str, SchedulerSpec] = {s.name: s for s in (
    SchedulerSpec("DDIM", "DDIMScheduler", (("clip_sample", False),), "ddim", 1, abar_indexed=True),
    SchedulerSpec("DDPM", "DDPMScheduler", (("clip_sample", False),), "ddpm", None, stochastic=True,
                  abar_indexed=True),
    SchedulerSpec("DPMSolverMultistep-1", "DPMSolverMultistepScheduler",
                  (("solver_order", 1), ("algorithm_type", "dpmsolver++")), "ddim", 1),
    SchedulerSpec("DPMSolverMultistep-2", "DPMSolverMultistepScheduler",
                  (("solver_order", 2), ("algorithm_type", "dpmsolver++")), "dpm2", 2),
    SchedulerSpec("DPMSolverMultistep-3", "DPMSolverMultistepScheduler",
                  (("solver_order", 3), ("algorithm_type", "dpmsolver++")), "dpm3", 3),
    SchedulerSpec("DPMSolverMultistep-1-dpmsolver", "DPMSolverMultistepScheduler",
                  (("solver_order", 1), ("algorithm_type", "dpmsolver"), ("final_sigmas_type", "sigma_min")), "dpm1e", 1),
    SchedulerSpec("DPMSolverMultistep-2-dpmsolver", "DPMSolverMultistepScheduler",
                  (("solver_order", 2), ("algorithm_type", "dpmsolver"), ("final_sigmas_type", "sigma_min")), "dpm2e", 2),
    SchedulerSpec("DPMSolverMultistep-2-dpmsolver-heun", "DPMSolverMultistepScheduler",
                  (("solver_order", 2), ("algorithm_type", "dpmsolver"), ("solver_type", "heun"),
                   ("final_sigmas_type", "sigma_min")), "dpm2eh", 2),
    SchedulerSpec("DPMSolverMultistep-3-dpmsolver", "DPMSolverMultistepScheduler",
                  (("solver_order", 3), ("algorithm_type", "dpmsolver"), ("final_sigmas_type", "sigma_min")), "dpm3e", 3),
    SchedulerSpec("EulerDiscrete", "EulerDiscreteScheduler", (), "ddim", 1),
    SchedulerSpec("EulerAncestralDiscrete", "EulerAncestralDiscreteScheduler", (), None, None, stochastic=True),
    SchedulerSpec("HeunDiscrete", "HeunDiscreteScheduler", (), "heun", 2),
    # the sigma grid options (SIGMA_GRID_OPTIONS): the same oracles, on the grid the option builds
    SchedulerSpec("HeunDiscrete-karras", "HeunDiscreteScheduler", (("use_karras_sigmas", True),), "heun", 2),
    SchedulerSpec("HeunDiscrete-exponential", "HeunDiscreteScheduler", (("use_exponential_sigmas", True),), "heun", 2),
    SchedulerSpec("HeunDiscrete-beta", "HeunDiscreteScheduler", (("use_beta_sigmas", True),), "heun", 2),
    SchedulerSpec("EulerDiscrete-karras", "EulerDiscreteScheduler", (("use_karras_sigmas", True),), "ddim", 1),
    SchedulerSpec("EulerDiscrete-exponential", "EulerDiscreteScheduler", (("use_exponential_sigmas", True),),
                  "ddim", 1),
    SchedulerSpec("EulerDiscrete-beta", "EulerDiscreteScheduler", (("use_beta_sigmas", True),), "ddim", 1),
    SchedulerSpec("UniPCMultistep", "UniPCMultistepScheduler", (), "unipc", 3),
    SchedulerSpec("LMSDiscrete", "LMSDiscreteScheduler", (), "lms", 4),
    SchedulerSpec("DEISMultistep", "DEISMultistepScheduler", (), "deis", 2),
    SchedulerSpec("DPMSolverSinglestep", "DPMSolverSinglestepScheduler", (), "dpm2s", 2),
    SchedulerSpec("DPMSolverSinglestep-heun", "DPMSolverSinglestepScheduler", (("solver_type", "heun"),), "dpm2sh", 2),
    SchedulerSpec("DPMSolverSinglestep-1", "DPMSolverSinglestepScheduler", (("solver_order", 1),), "ddim", 1),
    SchedulerSpec("DPMSolverSinglestep-3", "DPMSolverSinglestepScheduler", (("solver_order", 3),), "dpm3s", 3),
    SchedulerSpec("DPMSolverSinglestep-3-heun", "DPMSolverSinglestepScheduler",
                  (("solver_order", 3), ("solver_type", "heun")), "dpm3sh", 3),
)}


#: The settings that replace a sigma-indexed scheduler's grid between its default grid's first and last sigma
#: (diffusers' ``_convert_to_karras``: rho = 7; ``_convert_to_exponential``; ``_convert_to_beta``: the quantiles of
#: Beta(0.6, 0.6), which needs SciPy, a dependency of this package: diffusers raises ImportError without it); at
#: most one may be set (else a ValueError in ``__init__``).
SIGMA_GRID_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
#: The configurations of :data:`SPECS` that set one of :data:`SIGMA_GRID_OPTIONS`.  The step and run checks apply
#: unchanged: they compare each step with the derived update between the levels the scheduler itself holds.
SIGMA_GRID_VARIANTS = tuple(name for name, s in SPECS.items()
                            if any(k in SIGMA_GRID_OPTIONS for k, v in s.config if v))

#: Prototype schedulers by (class, configuration): :func:`build` returns a deep copy (a fresh ``__init__`` costs
#: ~1.6 ms, mostly diffusers' config registration; a copy of the never-stepped prototype ~0.4 ms and is the same
#: object state).  Bounded: cleared when it holds ``_PROTO_MAX`` entries.
_PROTOS: dict = {}
_PROTO_MAX = 512
#: LMS coefficients by (scheduler class, sigmas' dtype and bytes, order, step index, current order): see :func:`_memo_lms`.
_LMS_MEMO: dict = {}
_LMS_MAX = 200_000
#: The sigma-grid conversions ``set_timesteps`` calls (diffusers' Euler, Heun, LMS, ... copies): see :func:`_memo_grid`.
GRID_METHODS = ("_convert_to_karras", "_convert_to_exponential", "_convert_to_beta", "_sigma_to_t")
#: Their values by (scheduler class, configuration but ``prediction_type``, method, arguments); bounded like the LMS memo.
_GRID_MEMO: dict = {}
_GRID_MAX = 200_000
#: Large array arguments (``log_sigmas``: 1000 levels) by their bytes -> a small id, so that a key does not hold them.
_ARRAY_IDS: dict = {}


def build(cls, config: dict | None = None):
    """A scheduler of class ``cls`` (a class or the name of one in ``diffusers``) with ``config`` (a deep copy of a
    cached, never-stepped prototype of the same class and configuration)."""
    _, diffusers = load()
    klass = getattr(diffusers, cls) if isinstance(cls, str) else cls
    try:
        key = (klass, tuple(sorted((k, repr(v)) for k, v in (config or {}).items())))
    except TypeError:
        return klass(**(config or {}))
    proto = _PROTOS.get(key)
    if proto is None:
        if len(_PROTOS) >= _PROTO_MAX:
            _PROTOS.clear()
        proto = _PROTOS[key] = klass(**(config or {}))
    return copy.deepcopy(proto)


def _memo_lms(sched) -> None:
    """Memoise ``sched.get_lms_coefficient`` (LMSDiscreteScheduler): diffusers integrates each coefficient with
    ``scipy.integrate.quad`` at every step, a pure function of the float32/float64 ``sigmas`` and three integers,
    and the audit steps the same grid many times (prediction types, sample dtypes): the memo returns the value
    diffusers' own function computed for the same arguments, bit for bit, once per distinct argument."""
    orig = getattr(sched, "get_lms_coefficient", None)
    if orig is None:
        return

    def memo(order, t, current_order):
        sig = sched.sigmas
        # the class is part of the key: a subclass with its own coefficient rule never gets the parent's values
        key = (type(sched), str(sig.dtype), sig.detach().cpu().numpy().tobytes(), int(order), int(t),
               int(current_order))
        v = _LMS_MEMO.get(key)
        if v is None:
            if len(_LMS_MEMO) >= _LMS_MAX:
                _LMS_MEMO.clear()
            v = _LMS_MEMO[key] = orig(order, t, current_order)
        return v

    sched.get_lms_coefficient = memo


def _arg_key(a):
    """An exact, hashable key of one argument of a grid conversion, or None (no memo: an argument of another kind).
    Arrays and tensors by type, dtype, shape and bytes (a long array by an id of its bytes), scalars by type and
    ``repr`` (round-trip exact for Python and NumPy floats)."""
    if isinstance(a, np.ndarray) or type(a).__name__ == "Tensor":
        arr = a if isinstance(a, np.ndarray) else a.detach().cpu().numpy()
        raw = arr.tobytes()
        if len(raw) > 256:
            raw = ("id", _ARRAY_IDS.setdefault(raw, len(_ARRAY_IDS)))
        return (type(a).__name__, str(arr.dtype), arr.shape, raw)
    if a is None or isinstance(a, (bool, int, float, str, np.generic)):
        return (type(a).__name__, repr(a))
    return None


def _call_key(args: tuple, kwargs: dict) -> tuple | None:
    """The key of a call's arguments (:func:`_arg_key` of each), or None if one has no exact key."""
    keys = [_arg_key(a) for a in args] + [(k, _arg_key(v)) for k, v in sorted(kwargs.items())]
    if any(k is None for k in keys[:len(args)]) or any(k[1] is None for k in keys[len(args):]):
        return None
    return tuple(keys)


def _memo_grid(sched) -> None:
    r"""Memoise the instance's sigma-grid conversions (:data:`GRID_METHODS`: the Karras, exponential and Beta grids
    between two sigmas, and ``_sigma_to_t``, a sigma's fractional timestep on the training levels).

    ``set_timesteps`` of a scheduler with ``use_beta_sigmas`` calls SciPy's Beta quantile once per level and
    ``_sigma_to_t`` once per level, each a pure function of its arguments and of ``sigma_min`` / ``sigma_max`` of
    the configuration; the audit sets the same grid many times (prediction types, sample dtypes, both tables).  The
    key holds the scheduler class (a subclass with its own conversion never gets the parent's values), every
    configuration entry but ``prediction_type`` (which these conversions do not read: it selects the model output's
    meaning in ``step``), the method and its arguments (:func:`_arg_key`); the memo returns a copy of the value
    diffusers' own method computed for them, bit for bit."""
    cfg = tuple(sorted((k, _arg_key(v) if isinstance(v, np.ndarray) else repr(v))   # repr summarises long arrays
                       for k, v in dict(sched.config).items() if k != "prediction_type"))
    for name in GRID_METHODS:
        orig = getattr(sched, name, None)
        if orig is None or getattr(orig, "_audit_memo", False):
            continue

        def memo(*args, _orig=orig, _name=name, **kwargs):
            keys = _call_key(args, kwargs)
            if keys is None:
                return _orig(*args, **kwargs)
            v = _GRID_MEMO.get((type(sched), cfg, _name, keys))
            if v is None:
                if len(_GRID_MEMO) >= _GRID_MAX or len(_ARRAY_IDS) >= _GRID_MAX:
                    _GRID_MEMO.clear()   # both at once: a key holds ids of _ARRAY_IDS
                    _ARRAY_IDS.clear()
                    keys = _call_key(args, kwargs)
                v = _GRID_MEMO[(type(sched), cfg, _name, keys)] = _orig(*args, **kwargs)
            return copy.deepcopy(v)

        memo._audit_memo = True
        setattr(sched, name, memo)


def _cast_tables(sched, torch) -> None:
    for name in TABLE_ATTRS:
        v = getattr(sched, name, None)
        if isinstance(v, torch.Tensor) and v.dtype == torch.float32:
            setattr(sched, name, v.to(torch.float64))


def exact_table_abar(config: dict) -> np.ndarray | None:
    r"""``alphas_cumprod`` recomputed in float64 from the configuration (linear / scaled_linear betas; the cosine
    schedule's :math:`\bar\alpha` from its closed form through the same clipped-beta product), or ``None``."""
    n = int(config.get("num_train_timesteps", 1000))
    b0, b1 = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None or config.get("rescale_betas_zero_snr"):
        return None
    if kind == "linear":
        betas = np.linspace(b0, b1, n, dtype=np.float64)
    elif kind == "scaled_linear":
        betas = np.linspace(math.sqrt(b0), math.sqrt(b1), n, dtype=np.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)])
    else:
        return None
    return np.cumprod(1.0 - betas)


@dataclass
class StepRecord:
    """One model call and the step after it, in VP coordinates at OU times."""

    t_in: float                       # OU time of the model call's level
    t_out: float | None               # OU time the step lands at (the scheduler's rule), None if not known
    x_in: np.ndarray                  # (B, d) state before the step (VP)
    x_out: np.ndarray | None          # (B, d) state after the step (VP at t_out), None if t_out is None
    z: np.ndarray | None = None       # the step's noise (stochastic schedulers), regenerated from its seed
    order: int = 1                    # the solver order used at this step (multistep schedulers)
    drops_f64: bool = False           # the output is bit-identical when the float64 input is first rounded to float32
    x_start: np.ndarray | None = None  # (B, d) the state the step's update starts from when the scheduler changes
    #                                   it after the model call (UniPC: its corrector's output), VP; else None


@dataclass
class RunRecord:
    spec: SchedulerSpec
    config: dict
    n_steps: int
    tables: str
    sample_dtype: str
    steps: list = field(default_factory=list)
    out: np.ndarray | None = None     # (B, d) final state, VP coordinates at t_end
    t_end: float | None = None
    t_start: float | None = None
    start_scale: float = 1.0          # VP start = start_scale * z
    grid: list = field(default_factory=list)   # claimed grid: OU times of the model calls, then t_end
    #: (B, d) the sample the scheduler holds at its last model call (VP coordinates at ``grid[-2]``, the last nonzero
    #: level before the final jump), recorded with or without ``record_steps``
    last_call_state: np.ndarray | None = None


def dpm_orders(n: int, order: int, config: dict) -> list[int]:
    """The order DPMSolverMultistep uses at each of ``n`` steps, as its docstring states: first order at the
    start, ramping up by one per step, and ``lower_order_final`` (first order at the last step when fewer than 15
    steps or ``final_sigmas_type == "zero"``; at most second order at the second last when fewer than 15)."""
    out = []
    for k in range(n):
        o = min(order, k + 1)
        last_low = k == n - 1 and (config.get("euler_at_final", False)
                                   or (config.get("lower_order_final", True) and n < 15)
                                   or config.get("final_sigmas_type", "zero") == "zero")
        if last_low:
            o = 1
        elif k == n - 2 and config.get("lower_order_final", True) and n < 15:
            o = min(o, 2)
        out.append(o)
    return out


def _orders(sched, spec: SchedulerSpec, cfg: dict) -> list[int] | None:
    """The order of each step: DPMSolverMultistep's by :func:`dpm_orders`; DPMSolverSinglestep's own
    ``order_list`` (after ``set_timesteps``: [1, 2, 1, 2, ...] at order 2, a restart from the saved state of each
    order-1 step), which its ``step`` lowers only while a needed model output is missing (never from the start);
    DEISMultistep's by the same rule (:func:`dpm_orders`; its last sigma is nonzero); HeunDiscrete's alternation of its two stages over its doubled timesteps (``state_in_first_order``): 1 (the Euler
    predictor from ``sigmas[i]`` to ``sigmas[i + 1]``), 2 (the corrector at the predictor, restarting from the saved
    sample), ..., ending with 1 (Euler to sigma = 0); LMSDiscrete's min(step index + 1, 4) (its ``step``'s default
    ``order=4``)."""
    if spec.cls == "DPMSolverMultistepScheduler":
        return dpm_orders(len(sched.timesteps), spec.kwargs.get("solver_order", 2), cfg)
    if spec.cls == "UniPCMultistepScheduler":   # its step's this_order: min(solver_order, n - k with
        # lower_order_final, k + 1 for the warm-up); the corrector of step k has the order of step k - 1
        p, n = cfg.get("solver_order", 2), len(sched.timesteps)
        return [min(p, n - k if cfg.get("lower_order_final", True) else p, k + 1) for k in range(n)]
    if spec.cls == "DEISMultistepScheduler":   # the same warm-up and lower_order_final rule; its last sigma is
        # sigma_min > 0 (it has no final_sigmas_type), so the "zero" rule of the last step never applies
        return dpm_orders(len(sched.timesteps), cfg.get("solver_order", 2),
                          {**cfg, "final_sigmas_type": "sigma_min", "euler_at_final": False})
    if spec.cls == "DPMSolverSinglestepScheduler":
        return [int(o) for o in sched.order_list]
    if spec.cls == "HeunDiscreteScheduler":
        return [1 + k % 2 for k in range(len(sched.timesteps))]
    if spec.cls == "LMSDiscreteScheduler":   # step's default order=4: min(step_index + 1, 4)
        return [min(k + 1, 4) for k in range(len(sched.timesteps))]
    return None


def _level_t(sched, spec: SchedulerSpec, timestep, idx: int) -> float:
    if spec.abar_indexed:
        abar = float(sched.alphas_cumprod[int(timestep)])
        # alpha_bar = 0 (DDIM, DDPM with rescale_betas_zero_snr=True: the last training level is pure noise) is
        # OU time inf, where the exact model's outputs are their finite limits (D = m, eps = x, v = -m)
        return math.inf if abar == 0.0 else ou_time(abar)
    return ou_time_of_sigma(float(sched.sigmas[idx]))


def _landing_t(sched, spec: SchedulerSpec, timestep, idx: int) -> float | None:
    if spec.cls == "DDIMScheduler" or (spec.abar_indexed and hasattr(sched, "final_alpha_cumprod")):
        prev = int(timestep) - sched.config.num_train_timesteps // sched.num_inference_steps
        return ou_time(float(sched.alphas_cumprod[prev]) if prev >= 0 else float(sched.final_alpha_cumprod))
    if spec.abar_indexed:  # DDPM
        prev = int(sched.previous_timestep(timestep))
        return ou_time(float(sched.alphas_cumprod[prev]) if prev >= 0 else 1.0)
    if spec.oracle is None:
        return None
    return ou_time_of_sigma(float(sched.sigmas[idx + 1]))


def run(spec: SchedulerSpec, n_steps: int, target: GaussianTarget, z: np.ndarray, *, config: dict | None = None,
        prediction_type: str = "epsilon", tables: str = "float64", sample_dtype: str = "float64", seed: int = 0,
        scheduler=None, record_steps: bool = True) -> RunRecord:
    """Run scheduler ``spec`` (or the given ``scheduler`` object) for ``n_steps`` from ``z * init_noise_sigma``.

    ``z``: ``(B, d)`` float64 start points.  The model output at each call is the target's exact
    ``prediction_type`` output at the call's level.  Stochastic schedulers get a ``torch.Generator`` seeded with
    ``seed + k`` at call ``k``; the noise a DDPM step drew is regenerated from the same seed
    (``diffusers.utils.torch_utils.randn_tensor``) and recorded.
    """
    torch, _ = load()
    from diffusers.utils.torch_utils import randn_tensor

    cfg = dict(spec.kwargs)
    cfg.update(config or {})
    cfg["prediction_type"] = prediction_type
    sched = scheduler if scheduler is not None else build(spec.cls, cfg)
    _memo_lms(sched)
    _memo_grid(sched)
    sched.set_timesteps(n_steps)
    if tables == "float64":
        _cast_tables(sched, torch)
    dt = {"float64": torch.float64, "float32": torch.float32}[sample_dtype]
    ve = type(sched).__name__ in VE_SCHEDULERS or any(c.__name__ in VE_SCHEDULERS for c in type(sched).__mro__)
    rec = RunRecord(spec, cfg, n_steps, tables, sample_dtype)
    init = float(sched.init_noise_sigma)
    x = torch.tensor(np.asarray(z, dtype=np.float64) * init, dtype=dt)
    orders = _orders(sched, spec, cfg)

    def vp_scale(t_ou: float) -> float:  # x_VP = x_VE * sqrt(abar) = x_VE * e^{-t}
        return math.exp(-t_ou) if ve else 1.0

    for k, ts in enumerate(sched.timesteps):
        x_in = sched.scale_model_input(x, ts)
        idx = sched.step_index if getattr(sched, "step_index", None) is not None else k
        t_in = _level_t(sched, spec, ts, idx)
        if k == 0:
            rec.t_start = t_in
            rec.start_scale = init * vp_scale(t_in)
        rec.grid.append(t_in)
        xin_np = x_in.detach().to(torch.float64).numpy()
        with np.errstate(all="ignore"):
            mo = target.model_output(xin_np, t_in, prediction_type)
        # a fresh contiguous array of the sample dtype (NumPy's float32 rounding is IEEE's, as torch's): no copy
        mo_t = torch.from_numpy(np.array(mo, dtype=np.float64 if dt == torch.float64 else np.float32, order="C"))
        gen = torch.Generator().manual_seed(seed + k) if spec.stochastic else None
        x_state = x.detach().to(torch.float64).numpy() * vp_scale(t_in) \
            if record_steps or k == len(sched.timesteps) - 1 else None
        if k == len(sched.timesteps) - 1:
            rec.last_call_state = x_state
        t_out = _landing_t(sched, spec, ts, idx) if record_steps else None
        kw = {"generator": gen} if gen is not None else {}
        drops = False
        if record_steps and k == 0 and sample_dtype == "float64":
            # does the scheduler discard the input's float64 digits?  Step two copies on x32 = float32(x) and on
            # x32 (1 + 2^-26), which rounds to x32 in float32 (less than half a float32 ulp away) but differs in
            # float64: bit-identical outputs mean the input was rounded to float32.
            x32 = x.to(torch.float32).to(torch.float64)
            xm = x32 + x32.abs() * 2.0 ** -26
            outs = []
            for xi in (x32, xm):
                kw2 = {"generator": torch.Generator().manual_seed(seed + k)} if gen is not None else {}
                outs.append(copy.deepcopy(sched).step(mo_t, ts, xi, **kw2).prev_sample)
            drops = (not torch.equal(x32, xm)) and torch.equal(outs[0], outs[1])
        x = sched.step(mo_t, ts, x, **kw).prev_sample
        if record_steps:
            znp = None
            if spec.cls == "DDPMScheduler" and int(ts) > 0:
                znp = randn_tensor(mo_t.shape, generator=torch.Generator().manual_seed(seed + k),
                                   device=mo_t.device, dtype=mo_t.dtype).to(torch.float64).numpy()
            x_out = None if t_out is None else x.detach().to(torch.float64).numpy() * vp_scale(t_out)
            # UniPC keeps its corrected state (the predictor's start) as last_sample (VP: it does not scale)
            x_start = (sched.last_sample.detach().to(torch.float64).numpy()
                       if spec.cls == "UniPCMultistepScheduler" else None)
            rec.steps.append(StepRecord(t_in, t_out, x_state, x_out, znp, 1 if orders is None else orders[k], drops,
                                        x_start))
    # final level
    if spec.abar_indexed:
        rec.t_end = _landing_t(sched, spec, sched.timesteps[-1], len(sched.timesteps) - 1)
    else:
        rec.t_end = ou_time_of_sigma(float(sched.sigmas[-1]))
    rec.grid.append(rec.t_end)
    rec.out = x.detach().to(torch.float64).numpy() * vp_scale(rec.t_end)
    return rec

r"""The audit's checks, per scheduler.  A *finding* is a measured disagreement with the mathematics beyond the
scheduler's own precision (the derived rounding bound of :mod:`numerics.audit.oracle`), or a non-finite value.

``step``        every step of a run against the package's derived update from the call's level to the level the
                scheduler's own rule lands at (same alpha-bar grid); counted: max over steps and elements of
                |error| / bound <= 1.  Run with the tables cast to float64 (bound: float64 rounding) and as shipped
                (bound: plus the float32 coefficient rounding, ``K32 u32``).
``run``         the whole deterministic run's output against the package's derived discretisation on the grid
                the scheduler claims (the levels of its model calls, then its final level): a step that lands on
                a level other than the next call's shows here; counted, bound :math:`E_n`.
``tables``      informational: the float32 tables' loss, max relative error of ``alphas_cumprod`` against a
                float64 recomputation, and how far it moves the run's output.
``law``         informational: the deterministic run's output is an affine map :math:`z \mapsto A z + b` of the
                start :math:`z \sim N(0, I)` (every step is affine in the state for an exact Gaussian model), so
                its law is :math:`N(b, A^2)` per coordinate; :math:`b` and :math:`A` come from two start points
                (z = 0 and z = 1 in every coordinate: the map is diagonal and identical across coordinates for
                N(m, s^2 I)), and a third point (z = -1/2) measures non-affinity.  Reported: the KL to the
                target's marginal at the final level, the map's error against the exact probability-flow map
                from the same start level, and the observed order against the theory's; the same error and
                order of the sample held at the last model call (the last nonzero level, before the final jump).
``finite``      counted: NaN or inf anywhere in the output (or a crash) over a sweep of the configurations users
                set (:class:`Profile`: a base product, then ``steps_offset``, ``final_sigmas_type`` and
                ``rescale_betas_zero_snr`` one value at a time); a failure only at an axis value is keyed by it.
                Not run for the configurations the profile's ``finite_skip`` names.
``guidance``    on a labelled 1-D mixture (:data:`MIXTURE`), for the schedulers of :data:`GUIDED`, with diffusers'
                CFG :math:`\hat\varepsilon_u + g(\hat\varepsilon_c - \hat\varepsilon_u)` of the exact outputs
                (``g = guidance_scale`` = the package's CG weight ``w``; Ho-Salimans' weight is ``g - 1``;
                :mod:`numerics.audit.targets`): counted (a) ``cfg`` per call against the classifier-guided output
                of the exact class posterior (:meth:`MixtureTarget.cg_eps`), bound
                :func:`numerics.audit.oracle.guidance_bounds` ``identity``; (b) ``guided-run``: the deterministic
                run's output (a map of each start point) against the package's guided discretisation on the same
                grid (:func:`numerics.audit.oracle.guided_run`); (c) ``rescale`` (DDIM): diffusers'
                ``rescale_noise_cfg`` per call against its formula
                :math:`\phi\,(\mathrm{std}(\hat\varepsilon_c)/\mathrm{std}(\hat\varepsilon_{\rm cfg}))\hat\varepsilon_{\rm cfg}
                + (1-\phi)\hat\varepsilon_{\rm cfg}` (std over the sample's elements, Bessel-corrected; the
                correction cancels in the ratio), bound :func:`rescale_bound`; the rescaled run is not a pointwise
                map of the start (the std couples the elements), so its output shift is informational.
``guided-law``  DDPM and EulerAncestralDiscrete (:data:`GUIDED_LAWS`; both steps are the DDPM posterior step between
                their own levels): the CFG-guided output's empirical CDF over independent 1-D chains against the
                exact law of the package's guided chain propagated on a 1-D grid from the start's own law; bound:
                DKW at ``ENSEMBLE_LEVEL`` plus the grid law's CDF error (:func:`guided_law_check`,
                :func:`numerics.audit.oracle.ddpm_guided_law`, where each term is derived; with a float32 sample
                allowance for EulerAncestralDiscrete, which rounds the sample to float32 in ``step``); counted.
``guided-law-pf`` DDIM, DPM-Solver++(2M) (:data:`GUIDED_PF_LAWS`): the guided run's output law as the pushforward
                of N(0, 1) through its increasing 1-D map; CDF gap to the package's, bound from the pointwise run
                bound (:func:`guided_law_pf`), counted; KL to the tilted law informational.
``guided-law-pf-2d`` DDIM (:data:`GUIDED_PF2_LAWS`) on the labelled 2-D mixture :data:`MIXTURE2`: the guided run
                maps N(0, I_2) with a Jacobian determinant > 0 at every point of a 61 x 61 start grid; the
                density-weighted displacement p_pkg |T_lib - T_pkg| (the first-order mass flux through a unit
                boundary) against the same form of the pointwise run bound (:func:`guided_law_pf_2d`), counted; the
                KL to the tilted law by 2-D quadrature, informational.
"""
from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from numerics.audit import diffusers_driver as dd
from numerics.audit import oracle as O
from numerics.audit.targets import PREDICTION_TYPES, GaussianTarget, MixtureTarget
from numerics.divergences import gaussian_kl_1d
from numerics.stats import ENSEMBLE_LEVEL

__all__ = ["Finding", "Profile", "PROFILES", "TARGET", "step_check", "run_check", "table_loss", "law_and_order",
           "flow_map_error", "observed_order", "finiteness", "finite_design", "FiniteConfig", "SWEEP_AXES",
           "audit_scheduler", "MIXTURE", "GUIDED",
           "CFGModel", "rescale_bound", "guidance_check", "GUIDED_LAWS", "LAW_GRID", "dkw_eps", "guided_law_check",
           "GUIDED_PF_LAWS", "Z_LAW", "guided_law_pf", "GUIDED_PF2_LAWS", "MIXTURE2", "Z2_AXIS", "guided_law_pf_2d"]

#: The audit's Gaussian target: N(m, s^2 I), d = 2, with a mean off the origin and s != 1 (every coefficient of
#: the update matters: s = 1, m = 0 would make the denoiser's gain alpha_t and hide the x-coefficient).
TARGET = GaussianTarget((0.5, -1.0), 0.7)
Z_STEP = np.array([[0.0, 0.0], [1.0, 1.0], [-0.3, 2.0]])


@dataclass
class Finding:
    scheduler: str
    check: str
    config: dict
    n_steps: int
    measured: float
    bound: float
    what: str
    cls: str = ""
    #: the sweep axis value the finding is attributed to (``"rescale_betas_zero_snr=True"``: the same configuration
    #: at the scheduler's own value of that axis is finite), or "" (:func:`finiteness`)
    axis: str = ""

    @property
    def key(self) -> str:
        """Identity against a baseline: scheduler, check, the kind of disagreement, and the sweep axis value it is
        attributed to (if any)."""
        kind = self.what.split(":")[0]
        tables = "native" if "tables native" in self.what else ("float64" if "tables float64" in self.what else "")
        spacing = self.config.get("timestep_spacing", "") if self.check == "run" else ""
        return ":".join(x for x in (self.scheduler, self.check, kind, tables, spacing, self.axis) if x)

    def reproduction(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in sorted(self.config.items()))
        return (f"import copy, torch, diffusers\n"
                f"s = diffusers.{self.cls}({cfg})\n"
                f"s.set_timesteps({self.n_steps})\n"
                + _repro_tail(self))

    def to_dict(self) -> dict:
        return {"key": self.key, "scheduler": self.scheduler, "check": self.check, "config": self.config,
                "n_steps": self.n_steps, "measured": self.measured, "bound": self.bound, "what": self.what,
                "reproduction": self.reproduction()}


def _repro_tail(f: "Finding") -> str:
    if f.what.startswith("precision"):
        head = ("x = torch.full((4,), 1 / 3, dtype=torch.float64); eps = torch.full_like(x, 0.1)\n"
                "t = s.timesteps[0]; sg = s.sigmas.double()\n"
                "out = s.step(eps, t, x).prev_sample  # float64 in, float64 out\n")
        if f.cls in dd.VE_SCHEDULERS:
            ref = "ref = x + (sg[1] - sg[0]) * eps  # the derived step (noise frozen), in float64\n"
        else:
            ref = ("a0, a1 = (1 + sg[0] ** 2) ** -0.5, (1 + sg[1] ** 2) ** -0.5; r = (sg[1] * a1) / (sg[0] * a0)\n"
                   "D = (x - sg[0] * a0 * eps) / a0\n"
                   "ref = r * x + (a1 - a0 * r) * D  # the derived first step (DDIM), in float64\n")
        return head + ref + "print((out - ref).abs().max())  # ~1e-8 (float32 accuracy), not ~1e-16\n"
    if f.check == "run":
        return ("# the level each step lands at vs the level the next step assumes:\n"
                "N = s.config.num_train_timesteps\n"
                "print([(int(t) - N // s.num_inference_steps, int(u)) for t, u in zip(s.timesteps[:-1], s.timesteps[1:])])\n")
    if f.check == "step" and f.cls == "DDPMScheduler":
        return ("x = torch.zeros(1, 3, dtype=torch.float64); t = s.timesteps[-1]  # the last step lands at alpha_bar = 1\n"
                "a = s.step(x, t, x, generator=torch.Generator().manual_seed(0)).prev_sample\n"
                "b = s.step(x, t, x, generator=torch.Generator().manual_seed(1)).prev_sample\n"
                "print(int(t), a - b)  # nonzero: noise on a step whose posterior variance is 0\n")
    if f.check == "guidance":
        return ("# exact model outputs eps_u, eps_c of the labelled mixture numerics.audit.checks.MIXTURE; diffusers'\n"
                "# pipelines combine them as noise_pred = eps_u + guidance_scale * (eps_c - eps_u) before s.step(...)\n"
                "print(s.timesteps)\n")
    if f.check == "finite":
        return ("x = torch.tensor([[0.0, 1.0, -1.0]]) * s.init_noise_sigma  # one sample of 3 elements\n"
                "g = torch.Generator().manual_seed(0)\n"
                "for t in s.timesteps:  # model output 0: a non-finite value here comes from the schedule\n"
                "    s.scale_model_input(x, t)\n"
                "    x = s.step(torch.zeros_like(x), t, x, generator=g).prev_sample\n"
                "print(x)\n")
    return ""


@dataclass(frozen=True)
class Profile:
    r"""The audit's sweep.

    Attributes
    ----------
    steps_ns, order_ns : tuple of int
        Step counts of the step and run checks (over ``predictions`` x ``spacings``) and of the law-and-order sweep.
    finite_ns, finite_dtypes : tuple
        Step counts and sample dtypes of the finiteness sweep's base product.
    predictions, spacings, betas : tuple of str
        ``prediction_type``, ``timestep_spacing`` and ``beta_schedule`` values.
    steps_offsets, final_sigmas_types, zero_snrs : tuple
        Values of the finiteness sweep's one-at-a-time axes ``steps_offset``, ``final_sigmas_type`` and
        ``rescale_betas_zero_snr`` (:data:`SWEEP_AXES`); a scheduler's own value is its base, not swept again.
    axis_ns, axis_dtypes : tuple
        Step counts and sample dtypes of the axis sweep.
    guide_ns, guide_scales, guide_spacings, guide_rescales : tuple
        The guidance check's step counts (dividing num_train_timesteps = 1000, so that DDIM's grid is not
        relabelled: that is the ``run`` check's finding), guidance scales, spacings, and ``guidance_rescale``
        values (DDIM, one run per class).
    law_n, law_scale, law_class, law_samples
        The guided-law check (:func:`guided_law_check`): step count, guidance scale, class and number of
        independent chains.
    law_pf_ns, law_pf_scale, law_pf_class
        Step counts, guidance scale and class of the deterministic guided-law check (:func:`guided_law_pf`;
        at scale 1.5 toward class 1 the guided maps of DDIM and DPM-Solver++(2M) are increasing from 10 steps on;
        at scale 3 toward class 2 they fold at 10 and 20 steps).
    law2_ns, law2_scale, law2_class
        Step counts, guidance scale and class of the 2-D deterministic guided-law check (:func:`guided_law_pf_2d`
        on :data:`MIXTURE2`).
    finite_skip : tuple of str
        Scheduler configurations (names in :data:`~numerics.audit.diffusers_driver.SPECS`) whose finiteness sweep
        this profile does not run; their row's ``finite`` entry is ``{"skipped": True, "configurations": 0, ...}``.
        The reduced profile skips the sigma grid variants
        (:data:`~numerics.audit.diffusers_driver.SIGMA_GRID_VARIANTS`), which the full profile sweeps: their
        sweep is most of their cost (each configuration is a new prototype, and HeunDiscrete's ``__init__``
        converts its 1000-level training grid: 1000 Beta quantiles for the beta grid, ~0.2 s).

    Notes
    -----
    The finiteness design (:func:`finite_design`; a key the scheduler's ``__init__`` does not take is not swept):

    * the base product ``betas`` x ``spacings`` x ``set_alpha_to_one`` (True, False) x ``predictions`` x
      ``finite_ns`` x ``finite_dtypes``, every other setting at the scheduler's own value (its
      :class:`~numerics.audit.diffusers_driver.SchedulerSpec` setting, else its ``__init__`` default);
    * then each axis value other than the scheduler's own, one axis at a time: value x ``betas`` x ``spacings`` x
      ``predictions`` x ``axis_ns`` x ``axis_dtypes``, ``set_alpha_to_one`` and the other axes at the scheduler's
      own values.

    Each axis value thus meets every pair of beta schedule, spacing and prediction type, and the axes add to the
    sweep's size instead of multiplying it.  Solver order and algorithm type are not axes here: they are the
    separate scheduler configurations of :data:`~numerics.audit.diffusers_driver.SPECS`.
    """
    steps_ns: tuple
    order_ns: tuple
    finite_ns: tuple
    predictions: tuple = PREDICTION_TYPES
    spacings: tuple = ("leading", "trailing", "linspace")
    betas: tuple = ("linear", "scaled_linear", "squaredcos_cap_v2")
    finite_dtypes: tuple = ("float32", "float64")
    steps_offsets: tuple = (0, 1)
    final_sigmas_types: tuple = ("zero", "sigma_min")
    zero_snrs: tuple = (False, True)
    axis_ns: tuple = (1, 2, 3, 7, 13)
    axis_dtypes: tuple = ("float32",)
    guide_ns: tuple = (2, 10)
    guide_scales: tuple = (1.0, 7.5)
    guide_spacings: tuple = ("leading", "trailing")
    guide_rescales: tuple = (0.7,)
    law_n: int = 10
    law_scale: float = 3.0
    law_class: int = 2
    law_samples: int = 5000
    law_pf_ns: tuple = (10, 20, 50)
    law_pf_scale: float = 1.5
    law_pf_class: int = 1
    law2_ns: tuple = (10, 20)
    law2_scale: float = 1.5
    law2_class: int = 1
    finite_skip: tuple = ()

    def __post_init__(self):
        unknown = [n for n in self.finite_skip if n not in dd.SPECS]
        if unknown:
            raise ValueError(f"finite_skip: unknown scheduler configuration {unknown[0]!r}")
        for name in ("finite_ns", "axis_ns"):
            ns = getattr(self, name)
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in ns):
                raise ValueError(f"{name}: step counts must be integers >= 1, got {ns!r}")
        for name in ("finite_dtypes", "axis_dtypes"):
            bad = [d for d in getattr(self, name) if d not in ("float32", "float64")]
            if bad:
                raise ValueError(f"{name}: sample dtypes are 'float32' or 'float64', got {bad[0]!r}")


#: The full profile's step counts of the axis sweep: 1 to 13, the primes to 47, 20 and 50 (about a third of the
#: cost of every count to 50: a run costs about its number of steps).
FULL_AXIS_NS = tuple(range(1, 14)) + (17, 19, 20, 23, 29, 31, 37, 41, 43, 47, 50)

PROFILES = {
    "reduced": Profile(steps_ns=(1, 2, 7, 10, 50), order_ns=(10, 20, 50, 100, 200), finite_ns=(1, 2, 3, 7, 13),
                       finite_skip=dd.SIGMA_GRID_VARIANTS),
    "full": Profile(steps_ns=(1, 2, 3, 5, 7, 10, 13, 20, 50, 100), order_ns=(10, 20, 50, 100, 200, 500, 999),
                    finite_ns=tuple(range(1, 51)), axis_ns=FULL_AXIS_NS, axis_dtypes=("float32", "float64"),
                    guide_ns=(1, 2, 5, 10, 20, 50),
                    guide_scales=(0.0, 1.0, 3.0, 7.5), guide_rescales=(0.7, 1.0), law_samples=20000,
                    law2_ns=(10, 20, 50)),
}


def _kind(spec: dd.SchedulerSpec, order_used: int) -> str:
    if spec.oracle == "ddpm":
        return "ddpm"
    return O.step_kind(spec.oracle, 0, [order_used], 2)


#: float32 sample arithmetic: diffusers' longest path per element (16 roundings, as in K(t) of the oracle).
K_SAMPLE32 = 16.0


def step_check(rec: dd.RunRecord, target: GaussianTarget = TARGET) -> dict:
    """Every step of ``rec`` against the derived update (its spec must have an oracle).

    Returns ``ratio`` (max |err| / bound), ``abs`` (max |err|), the worst step ``k``, ``t``, ``s``, and
    ``ratio32``: max |err| / the float32 bound (``K_SAMPLE32 + K32(t, s)``) u32 S, which tells a float64 run that
    was computed in float32 (ratio > 1 >= ratio32) from a wrong update (ratio32 > 1)."""
    spec = rec.spec
    res = {"ratio": 0.0, "abs": 0.0, "ratio32": 0.0, "k": None, "t": None, "s": None,
           "f32_rounded": bool(rec.steps) and rec.steps[0].drops_f64}
    for k, st in enumerate(rec.steps):
        if st.t_out is None:
            continue
        kind = _kind(spec, st.order)
        if kind == O.UNIPC_KIND:   # the corrector to this call's recorded start, then the predictor from it
            pairs = []
            if k > 0:
                a, pc = rec.steps[k - 1], rec.steps[k - 1].order
                b = rec.steps[k - 2] if pc == 2 else None
                x_from = a.x_start if a.x_start is not None else a.x_in
                pairs.append(O.unipc_corrector_prediction(
                    target, x_from, a.t_in, st.t_in, a.x_in, st.x_in, None if b is None else b.x_in,
                    None if b is None else b.t_in, float32_coeffs=rec.tables == "native")
                    + (st.x_start, O.bound_counts(kind, a.t_in, st.t_in)))
            prev = rec.steps[k - 1] if st.order == 2 else None
            pairs.append(O.unipc_predictor_prediction(
                target, st.x_start, st.x_in, st.t_in, st.t_out, None if prev is None else prev.x_in,
                None if prev is None else prev.t_in, float32_coeffs=rec.tables == "native")
                + (st.x_out, O.bound_counts("dpm2" if prev is not None else "ddim", st.t_in, st.t_out)))
            for pred, tol, got, counts in pairs:
                _fold_step(res, got, pred, tol, counts, rec.tables == "native", k, st)
            continue
        if kind in (O.LMS_KIND, O.DEIS_KIND):   # the slopes / noise predictions of the last order - 1 calls
            hist = rec.steps[max(0, k - st.order + 1):k]
            fn = O.lms_prediction if kind == O.LMS_KIND else O.deis_prediction
            pred, tol = fn(target, st.x_in, st.t_in, st.t_out, [h.x_in for h in hist], [h.t_in for h in hist],
                           float32_coeffs=rec.tables == "native")
            _fold_step(res, st.x_out, pred, tol, O.bound_counts(kind, st.t_in, st.t_out), rec.tables == "native", k,
                       st)
            continue
        prev = rec.steps[k - 1] if (k > 0 and kind in ("dpm2", "dpm3", "dpm2e", "dpm2eh", O.DPM3E_KIND)
                                    + O.SINGLESTEP_KINDS + O.SINGLESTEP3_KINDS + (O.HEUN_KIND,)) else None
        prev2 = rec.steps[k - 2] if (k > 1 and kind in ("dpm3", O.DPM3E_KIND) + O.SINGLESTEP3_KINDS) else None
        pred, tol = O.step_prediction(kind, target, st.x_in, st.t_in, st.t_out,
                                      None if prev is None else prev.x_in, None if prev is None else prev.t_in,
                                      st.z, float32_coeffs=rec.tables == "native",
                                      x_prev2=None if prev2 is None else prev2.x_in,
                                      t_prev2=None if prev2 is None else prev2.t_in)
        counts = O.bound_counts(kind, st.t_in, st.t_out, None if prev is None else prev.t_in,
                                None if prev2 is None else prev2.t_in)
        r, err = _fold_step(res, st.x_out, pred, tol, counts, rec.tables == "native", k, st)
        if kind == "ddpm" and st.t_out == 0.0 and r > 1.0 and st.z is not None:
            res["zero_variance_noise"] = float(np.max(err / np.maximum(np.abs(st.z), 1e-300)))
    return res


def _fold_step(res: dict, got: np.ndarray, pred: np.ndarray, tol: np.ndarray, counts: tuple, native: bool, k: int,
               st) -> tuple[float, np.ndarray]:
    r"""Fold one recorded step into ``res``: ``ratio`` = max :math:`|x^{\rm lib} - x^{\rm pkg}|/\mathrm{tol}` (with
    the step ``k`` and levels where it is largest), ``abs``, and ``ratio32`` against the float32 bound
    :math:`(K_{\rm sample32} + K_{32})u_{32}S` (``S`` recovered from ``tol`` and the step's ``counts`` = ``(K, K32)``;
    ``native``: the scheduler's tables are float32).  Returns the step's ratio and error."""
    k64, k32 = counts
    S = tol / (k64 * O.U64 + (k32 * O.U32 if native else 0.0))
    err = np.abs(got - pred)
    r = float(np.max(err / tol))
    res["ratio32"] = max(res["ratio32"], float(np.max(err / ((K_SAMPLE32 + k32) * O.U32 * S))))
    res["abs"] = max(res["abs"], float(np.max(err)))
    if r > res["ratio"]:
        res.update(ratio=r, k=k, t=st.t_in, s=st.t_out)
    return r, err


def run_check(rec: dd.RunRecord, target: GaussianTarget = TARGET, z: np.ndarray = Z_STEP) -> dict:
    """The run's output against the derived discretisation on its claimed grid: ``ratio`` (max |err| / E_n),
    ``abs``, and ``ratio32`` (against E_n computed with float32 coefficients and float32 sample arithmetic)."""
    kind = rec.spec.oracle if rec.spec.oracle in ("dpm2", "dpm3", O.DPM3E_KIND, O.HEUN_KIND, O.LMS_KIND,
                                                  O.DEIS_KIND, O.UNIPC_KIND) + O.EPS_KINDS \
        + O.SINGLESTEP_KINDS + O.SINGLESTEP3_KINDS \
        else "ddim"
    orders = [s.order for s in rec.steps] if rec.steps else None
    x0 = rec.start_scale * z
    o = O.run_oracle(kind, target, rec.grid, x0, orders)
    E = O.run_tolerance(kind, target, rec.grid, x0, orders, float32_coeffs=rec.tables == "native")
    E32 = O.run_tolerance(kind, target, rec.grid, x0, orders, float32_coeffs=True) * (1.0 + K_SAMPLE32 / O.K32)
    err = np.abs(rec.out - o)
    return {"ratio": float(np.max(err / E)), "abs": float(np.max(err)), "ratio32": float(np.max(err / E32))}


def table_loss(spec: dd.SchedulerSpec, target: GaussianTarget = TARGET, n: int = 50) -> dict:
    """Informational: the shipped float32 ``alphas_cumprod`` against a float64 recomputation from the scheduler's
    own configuration (max relative error), and, for the abar-indexed schedulers (DDIM, DDPM), how far the
    table's rounding alone moves a ``n``-step run's output (tables cast to float64 vs the float64 recomputation,
    same arithmetic; deterministic schedulers only)."""
    torch, _ = dd.load()
    sched = dd.build(spec.cls, spec.kwargs)
    exact = dd.exact_table_abar(dict(sched.config))  # the scheduler's own (default-filled) configuration
    if exact is None or not hasattr(sched, "alphas_cumprod"):
        return {}
    shipped = sched.alphas_cumprod.double().numpy()
    out = {"dtype": str(sched.alphas_cumprod.dtype).replace("torch.", ""),
           "abar_max_rel_err": float(np.max(np.abs(shipped - exact) / exact))}
    if spec.abar_indexed and not spec.stochastic:
        a = dd.run(spec, n, target, Z_STEP, tables="float64", record_steps=False)
        exact_sched = dd.build(spec.cls, spec.kwargs)
        exact_sched.alphas_cumprod = torch.tensor(exact, dtype=torch.float64)
        if hasattr(exact_sched, "final_alpha_cumprod") and sched.config.get("set_alpha_to_one", True):
            exact_sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
        elif hasattr(exact_sched, "final_alpha_cumprod"):
            exact_sched.final_alpha_cumprod = torch.tensor(exact[0], dtype=torch.float64)
        b = dd.run(spec, n, target, Z_STEP, tables="float64", record_steps=False, scheduler=exact_sched)
        out[f"run_{n}_output_shift"] = float(np.max(np.abs(a.out - b.out)))
    return out


def flow_map_error(target: GaussianTarget, t0: float, t1: float, start_scale: float, b: np.ndarray,
                   A: np.ndarray) -> float:
    r"""Error of a run's affine map :math:`z \mapsto A z + b` (VP state at OU time ``t1`` from the start
    ``start_scale`` z at ``t0``) against the exact probability-flow map :math:`x_{t_1} = r x_{t_0} + c`
    (:meth:`~numerics.audit.targets.GaussianTarget.flow_map`): :math:`\max(|A - r\,\mathrm{start\_scale}|,
    |b - c|)` over the coordinates (the map's error over all starts, per unit of z)."""
    r, c = target.flow_map(t0, t1)
    return float(max(np.max(np.abs(A - r * start_scale)), np.max(np.abs(b - c))))


def observed_order(ns, errs) -> float:
    r"""The observed order: minus the least-squares slope of :math:`\log e` against :math:`\log n` over the last
    three step counts (NaN with fewer than three; errors floored at 1e-300)."""
    if len(ns) < 3:
        return math.nan
    ln, le = np.log(np.asarray(ns[-3:], float)), np.log(np.maximum(errs[-3:], 1e-300))
    return float(-np.polyfit(ln, le, 1)[0])


def law_and_order(spec: dd.SchedulerSpec, ns, target: GaussianTarget = TARGET, config: dict | None = None) -> dict:
    """Informational law, KL and order of the deterministic run (module docstring).

    Also at the last nonzero level: the sample the scheduler holds at its last model call (OU time
    ``t_last``, the level before the final jump to ``t_end``) against the exact flow map from the start to that
    level (``flow_map_error_last``, ``observed_order_last``).  A final jump from a level that does not shrink with
    n (``timestep_spacing="linspace"``: timestep 0) has an error that does not fall with n, which caps the order at
    ``t_end``; the order up to ``t_last`` is the interior steps' (HeunDiscrete: 2)."""
    if spec.stochastic:
        return {}
    ones = np.ones((1, target.d))
    z = np.concatenate([0.0 * ones, ones, -0.5 * ones])
    rows, errs, errs_last = [], [], []
    for n in ns:
        rec = dd.run(spec, n, target, z, config=config, record_steps=False)
        b, A = rec.out[0], rec.out[1] - rec.out[0]
        nonaff = float(np.max(np.abs(rec.out[2] - (b - 0.5 * A))))
        m_t, v_t = target.marginal(rec.t_end)
        kl = sum(gaussian_kl_1d(b[i], A[i] ** 2, m_t[i], v_t) for i in range(target.d))
        e = flow_map_error(target, rec.t_start, rec.t_end, rec.start_scale, b, A)
        xl, t_last = rec.last_call_state, rec.grid[-2]
        e_last = flow_map_error(target, rec.t_start, t_last, rec.start_scale, xl[0], xl[1] - xl[0])
        rows.append({"n": n, "kl_to_target": kl, "flow_map_error": e, "non_affinity": nonaff,
                     "t_start": rec.t_start, "t_end": rec.t_end, "t_last": t_last, "flow_map_error_last": e_last})
        errs.append(e)
        errs_last.append(e_last)
    return {"rows": rows, "observed_order": observed_order(ns, errs), "expected_order": spec.order,
            "observed_order_last": observed_order(ns, errs_last)}


def _init_params(cls_name: str) -> dict:
    """The parameters of diffusers' ``<cls_name>.__init__`` (name -> :class:`inspect.Parameter`)."""
    _, diffusers = dd.load()
    return dict(inspect.signature(getattr(diffusers, cls_name).__init__).parameters)


def _accepts(cls_name: str, key: str) -> bool:
    return key in _init_params(cls_name)


#: The finiteness sweep's one-at-a-time axes: the scheduler setting and the :class:`Profile` field of its values.
SWEEP_AXES = (("steps_offset", "steps_offsets"), ("final_sigmas_type", "final_sigmas_types"),
              ("rescale_betas_zero_snr", "zero_snrs"))


class FiniteConfig(NamedTuple):
    """One configuration of the finiteness sweep (:func:`finite_design`)."""

    axis: str              # "" (the base product) or "<key>=<value>", e.g. "steps_offset=1"
    key: str               # the axis' setting, or ""
    own: object            # the scheduler's own value of ``key`` (its spec setting, else its __init__ default)
    config: dict           # the swept settings (the spec's settings are added by the driver)
    prediction_type: str
    n_steps: int
    sample_dtype: str


def finite_design(spec: dd.SchedulerSpec, prof: Profile) -> list[FiniteConfig]:
    """The configurations :func:`finiteness` runs for one scheduler.

    Parameters
    ----------
    spec : SchedulerSpec
        The scheduler configuration; its settings are the base of every axis it sets.
    prof : Profile
        The sweep (its Notes give the design).

    Returns
    -------
    list of FiniteConfig
        The base product, then each value of each :data:`SWEEP_AXES` axis other than the scheduler's own; keys the
        scheduler's ``__init__`` does not take are left out.
    """
    params = _init_params(spec.cls)
    base_axes = [(k, v) for k, v in (("beta_schedule", prof.betas), ("timestep_spacing", prof.spacings),
                                     ("set_alpha_to_one", (True, False))) if k in params]
    out = []
    for values in itertools.product(*[v for _, v in base_axes]):
        cfg = dict(zip([k for k, _ in base_axes], values))
        for pred, n, dtype in itertools.product(prof.predictions, prof.finite_ns, prof.finite_dtypes):
            out.append(FiniteConfig("", "", None, cfg, pred, n, dtype))
    grid = [(k, v) for k, v in base_axes if k != "set_alpha_to_one"]
    for key, field in SWEEP_AXES:
        if key not in params:
            continue
        own = spec.kwargs.get(key, params[key].default)
        for value in getattr(prof, field):
            if value == own:
                continue
            for values in itertools.product(*[v for _, v in grid]):
                cfg = {**dict(zip([k for k, _ in grid], values)), key: value}
                for pred, n, dtype in itertools.product(prof.predictions, prof.axis_ns, prof.axis_dtypes):
                    out.append(FiniteConfig(f"{key}={value}", key, own, cfg, pred, n, dtype))
    return out


def _finite_run(spec, c: FiniteConfig, cfg: dict, target, z, scheduler_factory) -> tuple[str | None, str]:
    """Run configuration ``c`` with the swept settings ``cfg``: ``(refusal, what)``.  ``refusal``: the message of
    a NotImplementedError or ValueError at construction or of a NotImplementedError in the run (a configuration
    the scheduler documents as unsupported), else None; ``what``: "" if the output is finite, else what went wrong
    (NaN/inf, or any other exception: a crash on a configuration the scheduler accepted)."""
    full = {**spec.kwargs, **cfg, "prediction_type": c.prediction_type}
    try:
        sched = scheduler_factory(full) if scheduler_factory is not None else dd.build(spec.cls, full)
    except (NotImplementedError, ValueError) as exc:   # refused at construction
        return str(exc), ""
    try:
        with np.errstate(all="ignore"):
            rec = dd.run(spec, c.n_steps, target, z, config=cfg, prediction_type=c.prediction_type,
                         tables="native", sample_dtype=c.sample_dtype, record_steps=False, scheduler=sched)
    except NotImplementedError as exc:  # a documented refusal (e.g. prediction_type not implemented)
        return str(exc), ""
    except Exception as exc:  # a crash on a valid configuration is reported, not raised
        return None, f"exception: {type(exc).__name__}: {exc}"[:300]
    return None, "" if np.isfinite(rec.out).all() else "non-finite output: NaN/inf in the final sample"


def finiteness(spec: dd.SchedulerSpec, prof: Profile, target: GaussianTarget = TARGET,
               scheduler_factory=None) -> tuple[int, list, list, dict]:
    """NaN/inf anywhere in the output over :func:`finite_design` (the exact model of ``target``, tables as shipped).

    A NotImplementedError or ValueError at construction, or a NotImplementedError in the run, is a documented
    refusal: unsupported, not a finding.  Any other exception is a finding (a crash on a configuration the
    scheduler accepted).  A failure at an axis value is attributed to it (:attr:`Finding.axis`, part of the key)
    only if the same configuration at the scheduler's own value of that axis passes; else it is the base
    configuration's finding.

    Parameters
    ----------
    spec : SchedulerSpec
        The scheduler configuration.
    prof : Profile
        The sweep.
    target : GaussianTarget
        The target whose exact model outputs drive the runs.
    scheduler_factory : callable, optional
        ``scheduler_factory(config)`` replaces ``diffusers.<cls>(**config)`` (tests feed a broken scheduler).

    Returns
    -------
    configurations : int
        Configurations run (refused ones included).
    findings : list of Finding
        One per failing configuration (the report keeps the smallest per key).
    unsupported : list of str
        Each refusal message once, prefixed by the first configuration that met it.
    per_axis : dict
        Configurations run per axis value, e.g. ``{"steps_offset=1": 135}``.
    """
    found, count, unsupported, per_axis = [], 0, {}, {}
    z = np.array([[0.0, 0.0], [1.0, -1.0]])
    for c in finite_design(spec, prof):
        count += 1
        if c.axis:
            per_axis[c.axis] = per_axis.get(c.axis, 0) + 1
        refusal, what = _finite_run(spec, c, c.config, target, z, scheduler_factory)
        if refusal is not None:
            unsupported.setdefault(refusal, f"{c.axis}, {c.prediction_type}" if c.axis else c.prediction_type)
            continue
        if not what:
            continue
        cfg, axis, what = c.config, c.axis, what + f" (samples {c.sample_dtype}"
        if axis:   # the same configuration at the scheduler's own value of the axis (the spec's, or the default)
            base = {k: v for k, v in cfg.items() if k != c.key}
            if _finite_run(spec, c, base, target, z, scheduler_factory)[1]:
                cfg, axis = base, ""
            else:
                what += f"; finite with {c.key}={c.own!r}"
        found.append(Finding(spec.name, "finite", {**spec.kwargs, **cfg, "prediction_type": c.prediction_type},
                             c.n_steps, math.nan, math.nan, what + ")", spec.cls, axis))
    return count, found, sorted(f"{label}: {msg}"[:200] for msg, label in unsupported.items()), per_axis


def _precision_what(tables: str, dropped: bool) -> str:
    how = (" (the output is bit-identical for two inputs equal in float32 and different in float64: the sample is "
           "rounded to float32 inside step())" if dropped else "")
    return ("precision: float64 samples are stepped at float32 accuracy: the error is beyond the float64 rounding "
            f"bound and within the float32 one{how}; tables {tables}")


def _step_finding(spec, full, n, tables, sc) -> Finding:
    if sc.get("zero_variance_noise"):
        what = (f"noise: the step to alpha_bar = 1 adds noise of std {sc['zero_variance_noise']:.3g} where the "
                f"derived posterior variance is 0 (max |err| {sc['abs']:.3g} = {sc['ratio']:.3g} x the rounding bound; "
                f"tables {tables})")
    elif tables == "float64" and sc["ratio32"] <= 1.0:
        what = _precision_what(tables, sc["f32_rounded"])
    else:
        what = (f"step: the update disagrees with the derived one (tables {tables}): max |err| {sc['abs']:.3g} = "
                f"{sc['ratio']:.3g} x the rounding bound, worst at step {sc['k']} (OU t={sc['t']:.6g} -> "
                f"s={sc['s']:.6g}){STEP_DIAGNOSIS.get(spec.oracle, '')}")
    return Finding(spec.name, "step", full, n, sc["abs"], sc["abs"] / sc["ratio"], what, spec.cls)


#: What a step finding of a scheduler means, where a test pins it (tests/test_audit_diffusers.py).
STEP_DIAGNOSIS = {
    "dpm3": "; its order-3 steps are the derived DPM-Solver++(3M) update with the psi_2 part of the second divided "
            "difference's weight halved (h_p psi_1 + psi_2 for 2 psi_2 + h_p psi_1): exact only for linear D in "
            "the log-SNR, global order 2",
    "dpm3e": "; its order-3 steps are the derived noise-form DPM-Solver-3M update with the phi_2 part of the second "
             "divided difference's weight halved (h_p phi_1 + phi_2 for 2 phi_2 + h_p phi_1): exact only for linear "
             "eps in the log-SNR, global order 2",
}


def _run_finding(spec, full, n, tables, rc, f32_rounded: bool, steps_wrong: bool = False) -> Finding:
    if tables == "float64" and rc["ratio32"] <= 1.0:
        return Finding(spec.name, "step", full, n, rc["abs"], rc["abs"] / rc["ratio"],
                       _precision_what(tables, f32_rounded), spec.cls)
    why = ("its steps disagree with the derived update (the step finding)" if steps_wrong
           else "a step lands on a level other than the one the next step assumes")
    return Finding(spec.name, "run", full, n, rc["abs"], rc["abs"] / rc["ratio"],
                   f"run: the output differs from the derived discretisation on the scheduler's own grid (tables "
                   f"{tables}): max |err| {rc['abs']:.3g} = {rc['ratio']:.3g} x the bound; {why}", spec.cls)


def _minimal(findings: list) -> list:
    """One finding per key: the smallest configuration (fewest non-default settings, then fewest steps)."""
    best = {}
    for f in findings:
        size = (len(f.config), f.n_steps)
        if f.key not in best or size < best[f.key][0]:
            best[f.key] = (size, f)
    return [f for _, f in best.values()]


def audit_scheduler(spec: dd.SchedulerSpec, prof: Profile, target: GaussianTarget = TARGET,
                    scheduler_factory=None) -> dict:
    """Every check of one scheduler; ``scheduler_factory(config)`` replaces ``diffusers.<cls>(**config)``
    (tests feed a deliberately wrong scheduler this way)."""
    findings, row = [], {"scheduler": spec.name, "class": spec.cls, "oracle": spec.oracle}
    if spec.oracle is not None:
        # a scheduler without the timestep_spacing setting (DPMSolverSinglestep) runs its one grid
        spacings = prof.spacings if _accepts(spec.cls, "timestep_spacing") else (None,)
        for tables in ("float64", "native"):
            worst_step = worst_run = 0.0
            abs_step = abs_run = 0.0
            for pred, spacing, n in itertools.product(prof.predictions, spacings, prof.steps_ns):
                cfg = {} if spacing is None else {"timestep_spacing": spacing}
                full = {**spec.kwargs, **cfg, "prediction_type": pred}
                sched = scheduler_factory(full) if scheduler_factory is not None else None
                rec = dd.run(spec, n, target, Z_STEP, config=cfg, prediction_type=pred, tables=tables,
                             scheduler=sched)
                sc = step_check(rec, target)
                worst_step, abs_step = max(worst_step, sc["ratio"]), max(abs_step, sc["abs"])
                if sc["ratio"] > 1.0:
                    findings.append(_step_finding(spec, full, n, tables, sc))
                if not spec.stochastic:
                    rc = run_check(rec, target)
                    worst_run, abs_run = max(worst_run, rc["ratio"]), max(abs_run, rc["abs"])
                    if rc["ratio"] > 1.0:
                        findings.append(_run_finding(spec, full, n, tables, rc, sc["f32_rounded"],
                                                     sc["ratio"] > 1.0 and sc["ratio32"] > 1.0))
            row[f"step_{tables}"] = {"max_err_over_bound": worst_step, "max_abs_err": abs_step}
            if not spec.stochastic:
                row[f"run_{tables}"] = {"max_err_over_bound": worst_run, "max_abs_err": abs_run}
    row["tables"] = table_loss(spec, target)
    row["law"] = law_and_order(spec, prof.order_ns, target)
    if spec.name in GUIDED:
        row["guidance"], gfound = guidance_check(spec, prof, scheduler_factory=scheduler_factory)
        findings += gfound
    if spec.name in GUIDED_LAWS:
        row["guided_law"], lfound = guided_law_check(spec, prof, scheduler_factory=scheduler_factory)
        findings += lfound
    if spec.name in GUIDED_PF_LAWS:
        row["guided_law_pf"], pfound = guided_law_pf(spec, prof, scheduler_factory=scheduler_factory)
        findings += pfound
    if spec.name in GUIDED_PF2_LAWS:
        row["guided_law_pf_2d"], pfound = guided_law_pf_2d(spec, prof, scheduler_factory=scheduler_factory)
        findings += pfound
    if spec.name in prof.finite_skip:
        row["finite"] = {"configurations": 0, "non_finite": 0, "unsupported": [], "axis_configurations": {},
                         "skipped": True}
    else:
        n_cfg, fin, unsupported, per_axis = finiteness(spec, prof, target, scheduler_factory=scheduler_factory)
        row["finite"] = {"configurations": n_cfg, "non_finite": len(fin), "unsupported": unsupported,
                         "axis_configurations": per_axis}
        findings += fin
    row["findings"] = [f.to_dict() for f in _minimal(findings)]
    return row


# ---------------------------------------------------------------------------------------------------- guidance
#: The guidance target: three classes in 1-D with distinct variances and means off the origin (class 2 narrow
#: and close to class 1, so that the class posterior is neither 0 nor 1 over much of the start range).
MIXTURE = MixtureTarget((0.3, 0.45, 0.25), (-1.5, 0.8, 2.4), (0.35, 0.6, 0.2))
#: Start points: ONE sample of 25 elements (shape (1, 25)): each element an independent 1-D chain, and
#: ``rescale_noise_cfg``'s std is taken over them (over one element torch's Bessel-corrected std is NaN).
Z_GUIDE = np.linspace(-3.0, 3.0, 25)[None, :]
#: Schedulers with a derived update in the package that the guided run is compared with.
GUIDED = ("DDIM", "DPMSolverMultistep-1", "DPMSolverMultistep-2", "EulerDiscrete")


def _diffusers_cfg(eps_uncond, eps_cond, guidance_scale):
    """The CFG line of diffusers' pipelines (torch tensors)."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def rescale_bound(eps_cond: np.ndarray, eps_cfg: np.ndarray, phi: float) -> np.ndarray:
    r"""Per-element float64 tolerance of two evaluations of :math:`\phi\,r\,e + (1-\phi)\,e`,
    :math:`r = \mathrm{std}(e_c)/\mathrm{std}(e)` (std over the last axis, ``N`` elements), from the same inputs.

    A computed sum of squared deviations has relative error at most :math:`4(N+4)\,u\,\kappa^2`,
    :math:`\kappa^2 = \sum a_i^2/\sum(a_i - \bar a)^2 \ge 1`, whichever standard algorithm torch or NumPy uses
    (first-order bounds, Chan, Golub & LeVeque 1983 / Higham, *Accuracy and Stability*, §1.9: textbook one-pass
    :math:`(N+3)u\kappa^2`, two-pass :math:`(N+3)u` plus a second-order term, updating (Welford)
    :math:`N u\kappa`; pairwise summation is smaller still), so a std carries :math:`2(N+4)u\kappa^2 + u` (sqrt), the
    ratio :math:`\rho_r = \rho_c + \rho_e + u`, and the output :math:`|\phi e r|(\rho_r + 2u) + 3u(|\phi e r| +
    |1-\phi||e|)`.  Both evaluations carry it (sum: factor 2), doubled for first order: factor 4.
    """
    ec = np.asarray(eps_cond, dtype=np.float64)
    e = np.asarray(eps_cfg, dtype=np.float64)
    if ec.shape != e.shape or ec.ndim < 1 or ec.shape[-1] < 2:
        raise ValueError(f"eps_cond: must have the shape of eps_cfg with >= 2 elements on the last axis, got "
                         f"{ec.shape} and {e.shape}")
    phi = float(phi)
    if not math.isfinite(phi):
        raise ValueError(f"phi: must be finite, got {phi!r}")
    N = ec.shape[-1]

    def rel_std(a):
        dev = np.sum((a - a.mean(axis=-1, keepdims=True)) ** 2, axis=-1, keepdims=True)
        kap2 = np.sum(a * a, axis=-1, keepdims=True) / dev
        return 2.0 * (N + 4) * O.U64 * kap2 + O.U64, np.sqrt(dev / (N - 1))

    rc, sc = rel_std(ec)
    re, se = rel_std(e)
    r = sc / se
    per = np.abs(phi * e * r) * (rc + re + 3.0 * O.U64) + 3.0 * O.U64 * (np.abs(phi * e * r) + abs(1.0 - phi) * np.abs(e))
    return 4.0 * per


class CFGModel:
    """The model a diffusers pipeline runs with classifier-free guidance, on the exact outputs of ``target``:
    at each call the exact unconditional and class-``y`` noise predictions are combined by ``combine`` (default:
    the pipelines' line ``u + g * (c - u)``, in torch float64), then, if ``rescale > 0``, passed through
    diffusers' ``rescale_noise_cfg``.  It records, per call, the largest ``|cfg - cg| / identity`` (check (a))
    and, with rescale, ``|rescaled - formula| / rescale_bound``.  ``prediction_type`` must be ``epsilon``."""

    def __init__(self, target: MixtureTarget, y: int, guidance_scale: float, combine=None, rescale: float = 0.0,
                 rescale_fn=None):
        self.target, self.y, self.g = target, y, float(guidance_scale)
        self.combine = combine or _diffusers_cfg
        self.rescale_fn = rescale_fn
        self.rescale = float(rescale)
        self.identity_ratio = 0.0
        self.identity_abs = 0.0
        self.identity_at = None
        self.rescale_ratio = 0.0

    def model_output(self, x: np.ndarray, t: float, prediction_type: str) -> np.ndarray:
        if prediction_type != "epsilon":
            raise ValueError(f"prediction_type: the CFG model is audited with 'epsilon', got {prediction_type!r}")
        torch, _ = dd.load()
        b = O.guidance_bounds(self.target, x, t, self.y, self.g)
        out = self.combine(torch.from_numpy(b["eps_u"]), torch.from_numpy(b["eps_c"]), self.g).numpy()
        err = np.abs(out - b["eps_cg"])
        r = float(np.max(err / b["identity"]))
        if r > self.identity_ratio:
            self.identity_ratio, self.identity_at = r, float(t)
        self.identity_abs = max(self.identity_abs, float(np.max(err)))
        if self.rescale > 0.0:
            from diffusers.guiders.guider_utils import rescale_noise_cfg

            rescale_noise_cfg = self.rescale_fn or rescale_noise_cfg
            e, ec = out, b["eps_c"]
            res = rescale_noise_cfg(torch.from_numpy(e), torch.from_numpy(ec), guidance_rescale=self.rescale).numpy()
            ratio = np.std(ec, axis=-1, ddof=1, keepdims=True) / np.std(e, axis=-1, ddof=1, keepdims=True)
            ref = self.rescale * (e * ratio) + (1.0 - self.rescale) * e
            self.rescale_ratio = max(self.rescale_ratio, float(np.max(np.abs(res - ref) / rescale_bound(ec, e, self.rescale))))
            out = res
        return out


def guidance_check(spec: dd.SchedulerSpec, prof: Profile, target: MixtureTarget = MIXTURE, combine=None,
                   scheduler_factory=None, rescale_fn=None) -> tuple[dict, list]:
    """Checks (a), (b) and (c) of the module docstring for one scheduler of :data:`GUIDED`: ``(row, findings)``.
    ``combine(eps_uncond, eps_cond, g)`` replaces the pipelines' CFG line and ``rescale_fn`` diffusers'
    ``rescale_noise_cfg`` (tests feed wrong ones this way)."""
    kind = "dpm2" if spec.oracle == "dpm2" else "ddim"
    row = {"cfg_identity": 0.0, "guided_run": 0.0, "guided_run_f32": 0.0, "guided_run_abs": 0.0, "runs": 0}
    found = []
    for spacing, n, g, y in itertools.product(prof.guide_spacings, prof.guide_ns, prof.guide_scales,
                                              range(target.n_classes)):
        cfg = {"timestep_spacing": spacing}
        full = {**spec.kwargs, **cfg, "prediction_type": "epsilon"}   # scheduler arguments (the reproduction's)
        how = f"guidance_scale={g:g}, class {y}"
        model = CFGModel(target, y, g, combine)
        sched = scheduler_factory({**spec.kwargs, **cfg, "prediction_type": "epsilon"}) \
            if scheduler_factory is not None else None
        rec = dd.run(spec, n, model, Z_GUIDE, config=cfg, prediction_type="epsilon", tables="float64",
                     scheduler=sched, record_steps=False)
        row["runs"] += 1
        row["cfg_identity"] = max(row["cfg_identity"], model.identity_ratio)
        if model.identity_ratio > 1.0:
            found.append(Finding(spec.name, "guidance", full, n, model.identity_abs,
                                 model.identity_abs / model.identity_ratio,
                                 f"cfg: diffusers' CFG output of the exact model differs from classifier guidance with "
                                 f"the exact class posterior (weight = guidance_scale): {model.identity_ratio:.3g} x "
                                 f"the rounding bound at OU t={model.identity_at:.6g} ({how}; tables float64)",
                                 spec.cls))
        orders = dd.dpm_orders(n, spec.kwargs.get("solver_order", 2), rec.config) \
            if spec.cls == "DPMSolverMultistepScheduler" else None
        x0 = rec.start_scale * Z_GUIDE
        ref, tol, tol32 = O.guided_run(kind, target, rec.grid, x0, y, g, orders, f32=K_SAMPLE32)
        err = np.abs(rec.out - ref)
        ratio, ratio32 = float(np.max(err / tol)), float(np.max(err / tol32))
        row["guided_run"] = max(row["guided_run"], ratio)
        row["guided_run_f32"] = max(row["guided_run_f32"], ratio32)
        row["guided_run_abs"] = max(row["guided_run_abs"], float(np.max(err)))
        if ratio > 1.0:
            if ratio32 <= 1.0:   # float32 accuracy: the step check's precision finding, not a guidance one
                found.append(Finding(spec.name, "step", full, n, float(np.max(err)), float(np.max(err)) / ratio,
                                     _precision_what("float64", False), spec.cls))
            else:
                found.append(Finding(spec.name, "guidance", full, n, float(np.max(err)), float(np.max(err)) / ratio,
                                     f"guided-run: the CFG-guided run's output differs from the package's guided "
                                     f"discretisation on the same grid: {ratio:.3g} x the bound ({how}; tables float64)",
                                     spec.cls))
    if spec.cls == "DDIMScheduler":
        row["rescale"] = []
        for phi in prof.guide_rescales:
            worst, shift = 0.0, 0.0
            g, n = max(prof.guide_scales), max(prof.guide_ns)
            fac = (lambda: scheduler_factory({**spec.kwargs, "prediction_type": "epsilon"})) \
                if scheduler_factory is not None else (lambda: None)
            for y in range(target.n_classes):
                m_r = CFGModel(target, y, g, combine, rescale=phi, rescale_fn=rescale_fn)
                a = dd.run(spec, n, m_r, Z_GUIDE, prediction_type="epsilon", tables="float64", record_steps=False,
                           scheduler=fac())
                b = dd.run(spec, n, CFGModel(target, y, g, combine), Z_GUIDE, prediction_type="epsilon",
                           tables="float64", record_steps=False, scheduler=fac())
                worst, shift = max(worst, m_r.rescale_ratio), max(shift, float(np.max(np.abs(a.out - b.out))))
            row["rescale"].append({"guidance_rescale": phi, "guidance_scale": g, "n": n,
                                   "max_err_over_bound": worst, "output_shift": shift})
            if worst > 1.0:
                found.append(Finding(spec.name, "guidance", {**spec.kwargs, "prediction_type": "epsilon"}, n, math.nan,
                                     math.nan, f"rescale: rescale_noise_cfg(guidance_rescale={phi:g}) differs from its "
                                     f"formula by {worst:.3g} x the rounding bound (guidance_scale={g:g}; tables "
                                     "float64)", spec.cls))
    return row, found



# ---------------------------------------------------------------------------------------------------- guided laws
#: Stochastic schedulers whose guided output law is checked (:func:`guided_law_check`), each with the float32
#: sample roundings its step allows (:func:`numerics.audit.oracle.ddpm_guided_law`'s ``f32``): ``None`` for DDPM
#: (float64 arithmetic); EulerAncestralDiscrete casts the sample to float32 in ``step`` (diffusers' "upcast" line,
#: as EulerDiscrete: its precision finding), ``K_SAMPLE32`` roundings.  Both steps are the DDPM posterior step
#: between their own levels, so one propagated chain is the reference of both.
GUIDED_LAWS = {"DDPM": None, "EulerAncestralDiscrete": K_SAMPLE32}
#: The space grid of the propagated law: ``(lo, hi, points)``.  It holds the mixture's guided laws at every level
#: (the start N(0, 1) loses 3e-7 outside it, counted in ``escaped``); spacing 0.005 against the narrowest kernel,
#: the DDPM step to the first training level (std 0.01 at 10 steps, EulerAncestralDiscrete's too): two spacings
#: per standard deviation, where the trapezoid rule's aliasing error of a Gaussian kernel is
#: :math:`\approx 2e^{-2\pi^2(0.01/0.005)^2} \approx 10^{-34}`.
LAW_GRID = (-5.0, 5.5, 2101)
#: Seeds of one law check ``s``: the start draws use ``LAW_SEED_STRIDE * s``, step ``k`` of the run
#: ``LAW_SEED_STRIDE * s + 1 + k`` (:func:`numerics.audit.diffusers_driver.run`): no two streams coincide.
LAW_SEED_STRIDE = 1000


def dkw_eps(n: int, level: float = ENSEMBLE_LEVEL) -> float:
    r"""The DKW band of ``n`` i.i.d. draws at confidence ``level``:
    :math:`P(\sup_x|F_n(x) - F(x)| > \varepsilon) \le 2e^{-2n\varepsilon^2}` (Massart's constant), so
    :math:`\varepsilon = \sqrt{\log(2/(1 - \mathrm{level}))/(2n)}`."""
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n: must be an integer >= 1, got {n!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")
    return math.sqrt(math.log(2.0 / (1.0 - level)) / (2.0 * n))


_LAW_CACHE: dict = {}


def _law(target: MixtureTarget, grid: tuple, y: int, g: float, start_var: float, f32: float | None = None) -> dict:
    key = (repr(target), grid, y, g, start_var, f32)
    if key not in _LAW_CACHE:
        if len(_LAW_CACHE) > 32:
            _LAW_CACHE.clear()
        from numerics.references.grid_density import uniform_grid

        _LAW_CACHE[key] = O.ddpm_guided_law(target, grid, y, g, uniform_grid(*LAW_GRID), start_var, f32=f32)
    return _LAW_CACHE[key]


def guided_law_check(spec: dd.SchedulerSpec, prof: Profile, target: MixtureTarget = MIXTURE, combine=None,
                     scheduler_factory=None, seed: int = 0) -> tuple[dict, list]:
    r"""Counted ``guided-law``: the output law of a stochastic scheduler (DDPM, EulerAncestralDiscrete:
    :data:`GUIDED_LAWS`) run with diffusers' CFG of the exact outputs against the exact law of the package's guided
    chain on the same grid: ``(row, findings)``.  Both schedulers' steps are the DDPM posterior step between their
    own levels (EulerAncestralDiscrete's ancestral split in its VE variables is that posterior,
    :func:`numerics.audit.oracle.ddpm_guided_law`), so the reference is the same propagated chain on each one's grid
    (EulerAncestralDiscrete's sigmas, ending at sigma = 0), with the float32 allowance of :data:`GUIDED_LAWS`.

    ``prof.law_samples`` independent 1-D chains (one sample of that many elements) start at
    :math:`z\cdot` ``init_noise_sigma``, :math:`z \sim N(0, 1)` drawn by a seeded ``torch.Generator`` as the
    pipelines do; the scheduler runs ``prof.law_n`` steps with guidance scale ``prof.law_scale`` toward class
    ``prof.law_class``.  The reference is :func:`numerics.audit.oracle.ddpm_guided_law` from the start's own law
    :math:`N(0, \mathrm{init\_noise\_sigma}^2)` at the first level (not the target's marginal there: at
    :math:`\bar\alpha_T > 0` they differ).  Measured: :math:`\sup|F_N - F|` over the points where :math:`F` is
    known (a lower bound of the sup over all :math:`x`, so the genuine verdict is not weakened by it).  Bound:
    :func:`dkw_eps` at :data:`numerics.stats.ENSEMBLE_LEVEL` (a false alarm with chance at most 2.5e-6 per check:
    the verdict does not depend on the seed) plus the law's own CDF error (``escaped + refinement + cdf_sum +
    rounding``, and ``n N P(|z| > 8)``, of :func:`~numerics.audit.oracle.ddpm_guided_law`).

    Power (exact laws, not samples: the sup distance between the propagated laws of the genuine and the wrong
    chain, reduced profile, 10 steps, class 2, scale 3): guidance weight ``g - 1`` (Ho-Salimans' ``w`` for
    :math:`\gamma = 1 + w`) 0.257; unconditional and conditional outputs swapped (weight :math:`-g`) 0.9999; no
    guidance 0.96; against a bound of 0.037 at 5000 chains, a wrong run measures at least the distance minus the
    DKW band, so it is flagged at more than 5 x the bound.
    """
    torch, _ = dd.load()
    n, g, y, N = prof.law_n, float(prof.law_scale), prof.law_class, prof.law_samples
    full = {**spec.kwargs, "prediction_type": "epsilon"}
    z = torch.randn(N, generator=torch.Generator().manual_seed(LAW_SEED_STRIDE * seed),
                    dtype=torch.float64).numpy()[None, :]
    model = CFGModel(target, y, g, combine)
    sched = scheduler_factory(dict(full)) if scheduler_factory is not None else None
    rec = dd.run(spec, n, model, z, prediction_type="epsilon", tables="float64", scheduler=sched,
                 record_steps=False, seed=LAW_SEED_STRIDE * seed + 1)
    law = _law(target, tuple(float(t) for t in rec.grid), y, g, float(rec.start_scale) ** 2, GUIDED_LAWS.get(spec.name))
    out = np.sort(rec.out.ravel())
    emp = np.searchsorted(out, law["points"], side="right") / N
    sup = float(np.max(np.abs(emp - law["cdf"])))
    eps = dkw_eps(N)
    grid_err = law["escaped"] + law["refinement"] + law["cdf_sum"] + law["rounding"] + n * N * law["z_tail"]
    bound = eps + grid_err
    row = {"n": n, "guidance_scale": g, "class": y, "samples": N, "seed": seed, "sup_cdf": sup, "bound": bound,
           "dkw": eps, "law_error": grid_err, "ratio": sup / bound, "start_sigma": float(rec.start_scale),
           "cfg_identity": model.identity_ratio}
    found = []
    if sup > bound:
        found.append(Finding(spec.name, "guidance", full, n, sup, bound,
                             f"guided-law: the CFG-guided output's empirical CDF ({N} chains, seed {seed}) differs "
                             f"from the exact law of the package's guided chain on the same grid by {sup:.3g} = "
                             f"{sup / bound:.3g} x the bound (DKW {eps:.3g} + law error {grid_err:.2g}; "
                             f"guidance_scale={g:g}, class {y}; tables float64)", spec.cls))
    return row, found



#: Deterministic schedulers whose guided output law is checked on a 1-D grid (:func:`guided_law_pf`).
GUIDED_PF_LAWS = ("DDIM", "DPMSolverMultistep-2")
#: Start points of :func:`guided_law_pf`: one sample of 801 elements, uniform on [-8, 8] (spacing 0.02; the start
#: law N(0, 1) has mass 1.2e-15 beyond).
Z_LAW = np.linspace(-8.0, 8.0, 801)[None, :]
#: Deterministic schedulers whose guided output law is checked on a 2-D grid (:func:`guided_law_pf_2d`).
GUIDED_PF2_LAWS = ("DDIM",)
#: The 2-D guidance target: three isotropic classes at the corners of a triangle, overlapping (the class posterior
#: is neither 0 nor 1 over much of the start range, so the guided map is not a product of 1-D maps), wide enough
#: that the guided map does not fold at the 2-D check's guidance scale (:attr:`Profile.law2_scale`; the check
#: verifies it: the Jacobian determinant is positive at every start point).
MIXTURE2 = MixtureTarget((0.3, 0.45, 0.25), ((-1.2, -0.4), (0.7, 0.5), (0.9, -1.3)), (0.5, 0.6, 0.45))
#: Start coordinates of :func:`guided_law_pf_2d` on each axis: the product grid of 61 x 61 points of [-6, 6]^2
#: (spacing 0.2; the start law N(0, I_2) has mass 4e-9 outside; the KL's trapezoid rule on a smooth integrand with
#: Gaussian tails is spectrally accurate at this spacing).
Z2_AXIS = np.linspace(-6.0, 6.0, 61)


def _start_grid(axis: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The start points of a deterministic guided-law check on the uniform ``axis`` in ``d`` = 1 or 2 dimensions:
    ``(z, phi, weights)``: in 1-D one sample of ``len(axis)`` elements ``(1, N)``, in 2-D the product grid as
    ``(N^2, 2)`` rows; the start density :math:`\varphi_d(z)` and the trapezoid rule's weights there (shape of
    ``phi``)."""
    h = float(axis[1] - axis[0])
    tw = np.full(axis.size, h)
    tw[[0, -1]] *= 0.5
    phi1 = np.exp(-0.5 * axis * axis) / math.sqrt(2.0 * math.pi)
    if d == 1:
        return axis[None, :], phi1, tw
    z = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    return z, np.outer(phi1, phi1).ravel(), np.outer(tw, tw).ravel()


def _pf_law(spec: dd.SchedulerSpec, target: MixtureTarget, axis: np.ndarray, ns, g: float, y: int, check: str,
            combine=None, scheduler_factory=None) -> tuple[dict, list]:
    """The deterministic guided-law check of :func:`guided_law_pf` (``target.d = 1``) and :func:`guided_law_pf_2d`
    (``d = 2``): ``(row, findings)``; ``check`` names the finding (``guided-law-pf``, ``guided-law-pf-2d``)."""
    kind = "dpm2" if spec.oracle == "dpm2" else "ddim"
    d = target.d
    full = {**spec.kwargs, "prediction_type": "epsilon"}
    z, phi, wts = _start_grid(axis, d)
    gap_key = "cdf_gap" if d == 1 else "flux_gap"
    runs, found = [], []
    for n in ns:
        model = CFGModel(target, y, g, combine)
        sched = scheduler_factory(dict(full)) if scheduler_factory is not None else None
        rec = dd.run(spec, n, model, z, prediction_type="epsilon", tables="float64", scheduler=sched,
                     record_steps=False)
        orders = dd.dpm_orders(n, spec.kwargs.get("solver_order", 2), rec.config) \
            if spec.cls == "DPMSolverMultistepScheduler" else None
        ref, tol, tol32, J = O.guided_run(kind, target, rec.grid, rec.start_scale * z, y, g, orders,
                                          f32=K_SAMPLE32, jacobian=True)
        if d == 1:
            dT = (rec.start_scale * J)[0]
            lib = rec.out[0]
            disp, E, E32 = np.abs(lib - ref[0]), tol[0], tol32[0]
        else:   # |det(dT/dz)|, the displacement's and the bound's Euclidean norms per start point
            dT = rec.start_scale ** d * np.linalg.det(J)
            lib = rec.out
            disp, E, E32 = (np.sqrt(np.sum(v * v, axis=-1)) for v in (rec.out - ref, tol, tol32))
        r = {"n": n, "monotone": bool(np.all(dT > 0.0)), "min_jacobian": float(np.min(dT)),
             "cfg_identity": model.identity_ratio}
        if r["monotone"]:
            dens = phi / dT
            gap = float(np.max(dens * disp))
            bound = float(np.max(2.0 * dens * E))
            bound32 = float(np.max(2.0 * dens * E32))
            f = phi * (np.log(phi) - np.log(dT) - target.tilted_log_density(lib, y, g))
            kl = float(np.sum(wts * f))
            r.update({gap_key: gap, "bound": bound, "ratio": gap / bound, "ratio_f32": gap / bound32,
                      "kl_to_tilted": kl})
            if gap > bound and gap <= bound32:   # float32 accuracy: the step check's precision finding
                found.append(Finding(spec.name, "step", full, n, gap, bound, _precision_what("float64", False),
                                     spec.cls))
            elif gap > bound:
                what = "CDF gap" if d == 1 else "density x displacement (mass flux through a unit boundary)"
                found.append(Finding(spec.name, "guidance", full, n, gap, bound,
                                     f"{check}: the CFG-guided run's output law differs from the package's "
                                     f"guided discretisation's on the same grid{'' if d == 1 else ' (2-D mixture)'}: "
                                     f"{what} {gap:.3g} = {gap / bound:.3g} x the bound (guidance_scale={g:g}, "
                                     f"class {y}; tables float64)", spec.cls))
        runs.append(r)
    return {"guidance_scale": g, "class": y, "runs": runs}, found


def guided_law_pf(spec: dd.SchedulerSpec, prof: Profile, target: MixtureTarget = MIXTURE, combine=None,
                  scheduler_factory=None) -> tuple[dict, list]:
    r"""Counted ``guided-law-pf``: the output law of a deterministic guided run (DDIM, DPM-Solver++(2M)) against the
    package's guided discretisation's, as CDFs; informational: the KL of the output law to the tilted target.
    Returns ``(row, findings)``.

    In 1-D the run is a map :math:`T` of the start :math:`z \sim N(0, 1)` (VP start ``init_noise_sigma`` z); the
    package's :math:`T_{\rm pkg}` and its derivative :math:`T'_{\rm pkg}` come from
    :func:`numerics.audit.oracle.guided_run` (``jacobian=True``: the chain rule through each step, exact, no finite
    differences).  Where :math:`T' > 0` (checked at every start point of :data:`Z_LAW`; else the row says
    ``monotone: false`` and nothing is counted) the output CDF is :math:`F(T(z)) = \Phi(z)` and the density
    :math:`p(T(z)) = \varphi(z)/T'(z)`.  At a diffusers output :math:`x = T_{\rm lib}(z)`, :math:`F_{\rm lib}(x) =
    \Phi(z)` and :math:`F_{\rm pkg}(x) = \Phi(z) + p_{\rm pkg}(\xi)(T_{\rm lib}(z) - T_{\rm pkg}(z))` for some
    :math:`\xi` between the two outputs, so

    .. math::  |F_{\rm lib}(x) - F_{\rm pkg}(x)| \le p_{\rm pkg}(T_{\rm pkg}(z))\,E(z)\,(1 + O(E))

    with :math:`E(z)` the pointwise bound of ``guided_run`` (about 1e-13 here: the first-order term, doubled as every
    first-order bound of :mod:`numerics.audit.oracle`).  Measured: :math:`\max_z p_{\rm pkg}(T_{\rm pkg}(z))
    |T_{\rm lib}(z) - T_{\rm pkg}(z)|` (the same first-order form) over the 801 start points; bound:
    :math:`2\max_z p_{\rm pkg} E`; a finding when a run's ratio exceeds 1 (within the bound with float32 sample
    arithmetic, ``guided_run``'s ``f32``, it is the step check's precision finding, as in :func:`guidance_check`).

    Informational, not counted: :math:`\mathrm{KL}(p_{\rm lib}\,\|\,q)` with :math:`q \propto p\,p(y\mid x)^w`
    (:meth:`~numerics.audit.targets.MixtureTarget.tilted_log_density`), as the expectation over the start,
    :math:`\int\varphi(z)[\log\varphi(z) - \log T'(z) - \log q(T_{\rm lib}(z))]dz` (trapezoid rule on the start
    points).  The guided probability-flow ODE does not transport the start to the tilted law in general (the
    guided scores at :math:`t > 0` are not the scores of the tilted law's diffusion), so this KL does not go to 0
    with the step count: it is reported at ``prof.law_pf_ns`` steps to show its limit.
    """
    return _pf_law(spec, target, Z_LAW[0], prof.law_pf_ns, float(prof.law_pf_scale), prof.law_pf_class,
                   "guided-law-pf", combine, scheduler_factory)


def guided_law_pf_2d(spec: dd.SchedulerSpec, prof: Profile, target: MixtureTarget = MIXTURE2, combine=None,
                     scheduler_factory=None) -> tuple[dict, list]:
    r"""Counted ``guided-law-pf-2d``: the output law of a deterministic guided run (DDIM) on the labelled 2-D mixture
    :data:`MIXTURE2` against the package's guided discretisation's; informational: the KL to the tilted target.
    Returns ``(row, findings)``.

    The run is a map :math:`T` of the start :math:`z \sim N(0, I_2)`, evaluated on the 61 x 61 product grid of
    :data:`Z2_AXIS` (3721 rows: a batch of 2-D states); :math:`T_{\rm pkg}` and its Jacobian :math:`J = \partial
    T_{\rm pkg}/\partial z` come from :func:`numerics.audit.oracle.guided_run` (the chain rule through each step,
    :math:`J_s = (c_x I + c_D G_t)J_t + c_p G_{t'}J_{t'}` with the guided denoiser's 2 x 2 gain, exact).  Where
    :math:`\det J > 0` at every start point (else ``monotone: false``, nothing counted: a fold makes it vanish) the
    output density is :math:`p_{\rm pkg}(T(z)) = \varphi_2(z)/\det J(z)`.  diffusers' map is :math:`T_{\rm lib} =
    T_{\rm pkg} + \delta`; pushing a law through :math:`x \mapsto x + \delta(x)` changes its density by
    :math:`-\nabla\cdot(p\,\delta) + O(\delta^2)`, so for every region :math:`A` with a boundary of length
    :math:`|\partial A|`

    .. math::  |P_{\rm lib}(A) - P_{\rm pkg}(A)| = \Big|\oint_{\partial A} p_{\rm pkg}\,\delta\cdot n\,d\ell\Big|
               (1 + O(E)) \le |\partial A|\,\max_x p_{\rm pkg}(x)\,|\delta(x)|\,(1 + O(E)),

    the 2-D form of :func:`guided_law_pf`'s CDF bound (in 1-D the boundary of :math:`(-\infty, x]` is one point).
    Measured: :math:`\max_z p_{\rm pkg}(T_{\rm pkg}(z))\,\|T_{\rm lib}(z) - T_{\rm pkg}(z)\|_2`; bound:
    :math:`2\max_z p_{\rm pkg}(T_{\rm pkg}(z))\,\|E(z)\|_2` with :math:`E` the per-coordinate run bound of
    ``guided_run`` (:math:`|\delta_l| \le E_l`, so :math:`\|\delta\|_2 \le \|E\|_2`); doubled for the first-order
    neglect.  A finding when a run's ratio exceeds 1 (the step check's precision finding when within the float32
    bound).  Informational: :math:`\mathrm{KL}(p_{\rm lib}\,\|\,q) = \int\varphi_2(z)[\log\varphi_2(z) -
    \log\det J(z) - \log q(T_{\rm lib}(z))]dz` by the 2-D trapezoid rule on the start grid, :math:`q \propto p\,
    p(y\mid x)^w` normalised on a 801 x 801 grid (:meth:`~numerics.audit.targets.MixtureTarget.tilted_log_density`).

    Step counts ``prof.law2_ns``, guidance scale ``prof.law2_scale`` toward class ``prof.law2_class``.
    """
    if target.d != 2:
        raise ValueError(f"target: the 2-D guided-law check needs a 2-D mixture, got d = {target.d}")
    return _pf_law(spec, target, Z2_AXIS, prof.law2_ns, float(prof.law2_scale), prof.law2_class,
                   "guided-law-pf-2d", combine, scheduler_factory)

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
                from the same start level, and the observed order against the theory's.
``finite``      counted: NaN or inf anywhere in the output over a sweep of the configurations users set.
"""
from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass

import numpy as np

from numerics.audit import diffusers_driver as dd
from numerics.audit import oracle as O
from numerics.audit.targets import PREDICTION_TYPES, GaussianTarget
from numerics.divergences import gaussian_kl_1d

__all__ = ["Finding", "Profile", "PROFILES", "TARGET", "step_check", "run_check", "table_loss", "law_and_order",
           "finiteness", "audit_scheduler"]

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

    @property
    def key(self) -> str:
        """Identity against a baseline: scheduler, check and the kind of disagreement."""
        kind = self.what.split(":")[0]
        tables = "native" if "tables native" in self.what else ("float64" if "tables float64" in self.what else "")
        spacing = self.config.get("timestep_spacing", "") if self.check == "run" else ""
        return ":".join(x for x in (self.scheduler, self.check, kind, tables, spacing) if x)

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
    if f.check == "finite":
        return ("x = torch.tensor([0.0, 1.0, -1.0]) * s.init_noise_sigma\n"
                "g = torch.Generator().manual_seed(0)\n"
                "for t in s.timesteps:  # model output 0: a non-finite value here comes from the schedule\n"
                "    s.scale_model_input(x, t)\n"
                "    x = s.step(torch.zeros_like(x), t, x, generator=g).prev_sample\n"
                "print(x)\n")
    return ""


@dataclass(frozen=True)
class Profile:
    steps_ns: tuple
    order_ns: tuple
    finite_ns: tuple
    predictions: tuple = PREDICTION_TYPES
    spacings: tuple = ("leading", "trailing", "linspace")
    betas: tuple = ("linear", "scaled_linear", "squaredcos_cap_v2")


PROFILES = {
    "reduced": Profile(steps_ns=(1, 2, 7, 10, 50), order_ns=(10, 20, 50, 100, 200), finite_ns=(1, 2, 3, 7, 13)),
    "full": Profile(steps_ns=(1, 2, 3, 5, 7, 10, 13, 20, 50, 100), order_ns=(10, 20, 50, 100, 200, 500, 999),
                    finite_ns=tuple(range(1, 51))),
}


def _kind(spec: dd.SchedulerSpec, order_used: int) -> str:
    if spec.oracle == "ddpm":
        return "ddpm"
    return "dpm2" if (spec.oracle == "dpm2" and order_used == 2) else "ddim"


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
        prev = rec.steps[k - 1] if (k > 0 and kind == "dpm2") else None
        pred, tol = O.step_prediction(kind, target, st.x_in, st.t_in, st.t_out,
                                      None if prev is None else prev.x_in, None if prev is None else prev.t_in,
                                      st.z, float32_coeffs=rec.tables == "native")
        S = tol / (O.k_step(st.t_in) * O.U64 + (O.k32(st.t_in, st.t_out) * O.U32 if rec.tables == "native" else 0.0))
        err = np.abs(st.x_out - pred)
        r = float(np.max(err / tol))
        if kind == "ddpm" and st.t_out == 0.0 and r > 1.0 and st.z is not None:
            res["zero_variance_noise"] = float(np.max(err / np.maximum(np.abs(st.z), 1e-300)))
        res["ratio32"] = max(res["ratio32"], float(np.max(err / ((K_SAMPLE32 + O.k32(st.t_in, st.t_out)) * O.U32 * S))))
        res["abs"] = max(res["abs"], float(np.max(err)))
        if r > res["ratio"]:
            res.update(ratio=r, k=k, t=st.t_in, s=st.t_out)
    return res


def run_check(rec: dd.RunRecord, target: GaussianTarget = TARGET, z: np.ndarray = Z_STEP) -> dict:
    """The run's output against the derived discretisation on its claimed grid: ``ratio`` (max |err| / E_n),
    ``abs``, and ``ratio32`` (against E_n computed with float32 coefficients and float32 sample arithmetic)."""
    kind = "dpm2" if rec.spec.oracle == "dpm2" else "ddim"
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


def law_and_order(spec: dd.SchedulerSpec, ns, target: GaussianTarget = TARGET, config: dict | None = None) -> dict:
    """Informational law, KL and order of the deterministic run (module docstring)."""
    if spec.stochastic:
        return {}
    ones = np.ones((1, target.d))
    z = np.concatenate([0.0 * ones, ones, -0.5 * ones])
    rows, errs = [], []
    for n in ns:
        rec = dd.run(spec, n, target, z, config=config, record_steps=False)
        b, A = rec.out[0], rec.out[1] - rec.out[0]
        nonaff = float(np.max(np.abs(rec.out[2] - (b - 0.5 * A))))
        m_t, v_t = target.marginal(rec.t_end)
        kl = sum(gaussian_kl_1d(b[i], A[i] ** 2, m_t[i], v_t) for i in range(target.d))
        r, c = target.flow_map(rec.t_start, rec.t_end)
        e = float(max(np.max(np.abs(A - r * rec.start_scale)), np.max(np.abs(b - c))))
        rows.append({"n": n, "kl_to_target": kl, "flow_map_error": e, "non_affinity": nonaff,
                     "t_start": rec.t_start, "t_end": rec.t_end})
        errs.append(e)
    ln, le = np.log(np.asarray(ns[-3:], float)), np.log(np.maximum(errs[-3:], 1e-300))
    slope = float(-np.polyfit(ln, le, 1)[0]) if len(ns) >= 3 else math.nan
    return {"rows": rows, "observed_order": slope, "expected_order": spec.order}


def _accepts(cls_name: str, key: str) -> bool:
    _, diffusers = dd.load()
    return key in inspect.signature(getattr(diffusers, cls_name).__init__).parameters


def finiteness(spec: dd.SchedulerSpec, prof: Profile, target: GaussianTarget = TARGET) -> tuple[int, list, list]:
    """``(configurations run, findings, unsupported)``: NaN/inf anywhere in the output over the sweep (an exception
    other than NotImplementedError counts too); configurations the scheduler refuses with NotImplementedError are
    listed as unsupported, not findings.  Keys the scheduler does not take are not swept."""
    found, count, unsupported = [], 0, set()
    extra = [("set_alpha_to_one", (True, False))] if _accepts(spec.cls, "set_alpha_to_one") else []
    axes = [(k, v) for k, v in (("beta_schedule", prof.betas), ("timestep_spacing", prof.spacings))
            if _accepts(spec.cls, k)] + extra
    z = np.array([[0.0, 0.0], [1.0, -1.0]])
    for values in itertools.product(*[v for _, v in axes]):
        cfg = dict(zip([k for k, _ in axes], values))
        for pred, n, dtype in itertools.product(prof.predictions, prof.finite_ns, ("float32", "float64")):
            count += 1
            try:
                with np.errstate(all="ignore"):
                    rec = dd.run(spec, n, target, z, config=cfg, prediction_type=pred, tables="native",
                                 sample_dtype=dtype, record_steps=False)
                bad = not np.isfinite(rec.out).all()
                what = "non-finite output: NaN/inf in the final sample" if bad else ""
            except NotImplementedError as exc:  # a documented refusal (e.g. prediction_type not implemented)
                unsupported.add(f"{pred}: {exc}"[:200])
                continue
            except Exception as exc:  # a crash on a valid configuration is reported, not raised
                bad, what = True, f"exception: {type(exc).__name__}: {exc}"[:300]
            if bad:
                full = {**spec.kwargs, **cfg, "prediction_type": pred}
                found.append(Finding(spec.name, "finite", full, n, math.nan, math.nan,
                                     what + f" (samples {dtype})", spec.cls))
    return count, found, sorted(unsupported)


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
                f"s={sc['s']:.6g})")
    return Finding(spec.name, "step", full, n, sc["abs"], sc["abs"] / sc["ratio"], what, spec.cls)


def _run_finding(spec, full, n, tables, rc, f32_rounded: bool) -> Finding:
    if tables == "float64" and rc["ratio32"] <= 1.0:
        return Finding(spec.name, "step", full, n, rc["abs"], rc["abs"] / rc["ratio"],
                       _precision_what(tables, f32_rounded), spec.cls)
    return Finding(spec.name, "run", full, n, rc["abs"], rc["abs"] / rc["ratio"],
                   f"run: the output differs from the derived discretisation on the scheduler's own grid (tables "
                   f"{tables}): max |err| {rc['abs']:.3g} = {rc['ratio']:.3g} x the bound; a step lands on a level "
                   "other than the one the next step assumes", spec.cls)


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
        for tables in ("float64", "native"):
            worst_step = worst_run = 0.0
            abs_step = abs_run = 0.0
            for pred, spacing, n in itertools.product(prof.predictions, prof.spacings, prof.steps_ns):
                cfg = {"timestep_spacing": spacing}
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
                        findings.append(_run_finding(spec, full, n, tables, rc, sc["f32_rounded"]))
            row[f"step_{tables}"] = {"max_err_over_bound": worst_step, "max_abs_err": abs_step}
            if not spec.stochastic:
                row[f"run_{tables}"] = {"max_err_over_bound": worst_run, "max_abs_err": abs_run}
    row["tables"] = table_loss(spec, target)
    row["law"] = law_and_order(spec, prof.order_ns, target)
    n_cfg, fin, unsupported = finiteness(spec, prof, target)
    row["finite"] = {"configurations": n_cfg, "non_finite": len(fin), "unsupported": unsupported}
    findings += fin
    row["findings"] = [f.to_dict() for f in _minimal(findings)]
    return row

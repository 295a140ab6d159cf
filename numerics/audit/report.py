"""The audit report: ``audit.json`` and ``audit.md`` (written atomically, :mod:`numerics.atomic`), and the
comparison of its findings with a stored baseline (a previous ``audit.json``)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from numerics.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["figure_png", "write_report", "load_baseline", "new_findings", "markdown"]


def _fmt(v, spec: str = ".2g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def _cpu(report: dict) -> str:
    """The CPU time summed over the configurations (rows with ``cpu_seconds``), or ""."""
    cpu = [r["cpu_seconds"] for r in report["schedulers"] if "cpu_seconds" in r]
    return f", CPU time summed over the configurations {sum(cpu):.1f} s" if cpu else ""


def markdown(report: dict) -> str:
    lines = ["# diffusers audit", "",
             f"diffusers {report['versions'].get('diffusers')}, torch {report['versions'].get('torch')}; profile "
             f"`{report['profile']}`; wall time {report['seconds']:.1f} s" + _cpu(report) + ".", "",
             "Step / run: max |error| / derived rounding bound (<= 1 agrees; tables cast to float64 | as shipped). "
             "Order: observed slope of the error against the exact probability-flow map vs the theory's; "
             "at t_last: the same for the sample held at the last model call (the last nonzero level). "
             "KL: KL(output law || target marginal at the final level) at 10 / 20 / 50 steps. Order and KL are "
             "informational: a run that ends with a jump from its last level t_last to sigma = 0 (the denoiser) "
             "has an error O(t_last) on a Gaussian (k_t - r_t = O(t): the denoiser's gain against the flow's), so "
             "the observed order is at most the order of t_last in 1/n, whatever the interior steps' order, and "
             "plateaus when t_last does not shrink with n (timestep_spacing='linspace' of the Karras-style "
             "schedulers ends at timestep 0).", "",
             "Tables: max relative error of the shipped float32 alphas_cumprod against float64 (and, DDIM, the shift "
             "of a 50-step run's output that this rounding alone causes). Finite: finite runs / configurations of "
             "the finiteness sweep (skipped: not swept by this profile).", "",
             "| scheduler | oracle | step f64 | step native | run f64 | run native | order (obs / exp) | order at t_last | "
             "KL 10 / 20 / 50 | tables | finite | findings |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["schedulers"]:
        g = lambda k: _fmt(row.get(k, {}).get("max_err_over_bound"))  # noqa: E731
        law = row.get("law") or {}
        kls = {r["n"]: r["kl_to_target"] for r in law.get("rows", [])}
        kl = " / ".join(_fmt(kls.get(n), ".2e") for n in (10, 20, 50))
        order = f"{_fmt(law.get('observed_order'), '.2f')} / {_fmt(law.get('expected_order'))}" if law else "-"
        order_last = _fmt(law.get("observed_order_last"), ".2f")
        fin = row.get("finite", {})
        tb = row.get("tables") or {}
        tables = _fmt(tb.get("abar_max_rel_err")) + (f" ({_fmt(tb['run_50_output_shift'])})"
                                                        if "run_50_output_shift" in tb else "")
        finite = "skipped" if fin.get("skipped") else \
            f"{fin.get('configurations', 0) - fin.get('non_finite', 0)}/{fin.get('configurations', 0)}"
        lines.append(f"| {row['scheduler']} | {row.get('oracle') or '-'} | {g('step_float64')} | {g('step_native')} | "
                     f"{g('run_float64')} | {g('run_native')} | {order} | {order_last} | {kl} | {tables} | {finite} | "
                     f"{len(row['findings'])} |")
    guided = [r for r in report["schedulers"] if r.get("guidance")]
    if guided:
        lines += ["", "Guidance (labelled 1-D mixture, diffusers' CFG u + g (c - u) of the exact outputs, g = "
                  "guidance_scale = the package's classifier-guidance weight; Ho-Salimans' w = g - 1): max |error| / "
                  "derived bound of the per-call CFG output against classifier guidance with the exact class "
                  "posterior, and of the guided run's output against the package's guided discretisation (tables "
                  "float64); rescale: diffusers' rescale_noise_cfg against its formula (counted) and the output shift "
                  "it causes (informational).", "",
                  "| scheduler | runs | cfg per call | guided run (against the float32 bound) | rescale formula (phi) | "
                  "rescale output shift |",
                  "|---|---|---|---|---|---|"]
        for row in guided:
            gd = row["guidance"]
            rs = gd.get("rescale") or []
            rf = ", ".join(f"{_fmt(r['max_err_over_bound'])} ({r['guidance_rescale']})" for r in rs) or "-"
            sh = ", ".join(_fmt(r["output_shift"]) for r in rs) or "-"
            lines.append(f"| {row['scheduler']} | {gd['runs']} | {_fmt(gd['cfg_identity'])} | {_fmt(gd['guided_run'])} "
                         f"({_fmt(gd.get('guided_run_f32'))}) | "
                         f"{rf} | {sh} |")
    lines += _guided_law_lines(report["schedulers"])
    lines += ["", "## Findings", ""]
    n = 0
    for row in report["schedulers"]:
        for f in row["findings"]:
            n += 1
            new = " **(new)**" if f["key"] in report.get("new_findings", []) else ""
            lines += [f"### {n}. {f['scheduler']}: {f['what']}{new}", "",
                      f"smallest configuration: `{json.dumps(f['config'], sort_keys=True)}`, {f['n_steps']} steps", "",
                      "```python", f["reproduction"].rstrip(), "```", ""]
    if n == 0:
        lines.append("None: every check agreed within its derived bound.")
    return "\n".join(lines) + "\n"


def _guided_law_lines(rows: list) -> list:
    """The guided-law table: per scheduler and check, the measured distance over its derived bound (counted) and
    the KL of a deterministic run's output law to the tilted law (informational)."""
    out = []
    for row in rows:
        gl = row.get("guided_law")
        if gl:
            out.append(f"| {row['scheduler']} | guided-law (1-D, {gl['samples']} chains, seed {gl['seed']}) | "
                       f"{gl['n']} | {_fmt(gl['ratio'])} | - |")
        for key, label in (("guided_law_pf", "guided-law-pf (1-D)"), ("guided_law_pf_2d", "guided-law-pf-2d (2-D)")):
            pf = row.get(key)
            if not pf:
                continue
            runs = pf["runs"]
            ns = " / ".join(str(r["n"]) for r in runs)
            ratio = " / ".join((_fmt(r.get("ratio")) + ("" if r.get("ratio", 0.0) <= 1.0 else
                                                         f" (f32 {_fmt(r.get('ratio_f32'))})"))
                               if r["monotone"] else "folds" for r in runs)
            kl = " / ".join(_fmt(r.get("kl_to_tilted"), ".3g") for r in runs)
            out.append(f"| {row['scheduler']} | {label} | {ns} | {ratio} | {kl} |")
    if not out:
        return []
    return ["", "Guided laws (CFG of the exact outputs of the labelled mixtures; tables float64): guided-law, the "
            "sup distance of the chains' empirical CDF to the exact law of the package's guided chain over the DKW "
            "band plus the law's own error; guided-law-pf, the density-weighted displacement of the deterministic "
            "run's output (the CDF gap in 1-D, the mass flux through a unit boundary in 2-D) over the same form of "
            "the derived run bound (counted; f32: against the float32 bound, for a scheduler that steps float64 samples "
            "at float32 accuracy, its precision finding); KL of the output law to the tilted law p p(y|x)^g / Z "
            "(informational).", "",
            "| scheduler | check | steps | measured / bound | KL to tilted |", "|---|---|---|---|---|"] + out


def figure_png(report: dict) -> bytes | None:
    """Error of the deterministic run's map against the exact probability-flow map, against the number of steps
    (log-log), one line per scheduler: left at the output (the final level), right at the last nonzero level (the
    sample held at the last model call; reports without it draw the left panel only)."""
    rows = [r for r in report["schedulers"] if (r.get("law") or {}).get("rows")]
    if not rows:
        return None
    import io

    from matplotlib.figure import Figure

    last = all("flow_map_error_last" in x for r in rows for x in r["law"]["rows"])
    panels = (("flow_map_error", "at the output (final level)"),) + \
        ((("flow_map_error_last", "at the last nonzero level t_last"),) if last else ())
    ncol = 2 * len(panels)
    legend_h = 0.17 * math.ceil(len(rows) / ncol) + 0.2   # inches: one legend line per ncol schedulers
    fig = Figure(figsize=(5.5 * len(panels), 4.2 + legend_h))
    axes = [fig.add_subplot(1, len(panels), i + 1) for i in range(len(panels))]
    styles, marks = ("-", "--", ":"), ("o", "s", "^")
    for ax, (key, where) in zip(axes, panels):
        for i, r in enumerate(rows):   # 10 colours x 3 line styles and markers: 30 distinguishable lines
            ns = [x["n"] for x in r["law"]["rows"]]
            es = [x[key] for x in r["law"]["rows"]]
            ax.loglog(ns, es, color=f"C{i % 10}", ls=styles[i // 10 % 3], marker=marks[i // 10 % 3], ms=3, lw=1.1,
                      label=f"{r['scheduler']} (exp. {r['law'].get('expected_order')})")
        ax.set_xlabel("steps n")
        ax.set_title(where, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("max |run map - exact flow map|")
    fig.suptitle("diffusers on N(m, s^2 I): error against the exact probability flow", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=(legend_h + 0.35) / (4.2 + legend_h), top=0.9, wspace=0.18)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def write_report(report: dict, out: Path) -> None:
    png = figure_png(report)
    if png is not None:
        atomic_write_bytes(out / "audit_orders.png", png)
        report["figure"] = "audit_orders.png"
    atomic_write_text(out / "audit.json", json.dumps(report, indent=1, sort_keys=True, default=float))
    md = markdown(report) + ("\n![error against steps](audit_orders.png)\n" if png is not None else "")
    atomic_write_text(out / "audit.md", md)


def load_baseline(path: Path) -> set:
    """The finding keys of a stored ``audit.json``; ValueError naming ``--baseline`` if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
        return {f["key"] for row in data["schedulers"] for f in row["findings"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--baseline {str(path)!r} is not a readable audit.json ({type(exc).__name__}: {exc})") from None


def new_findings(report: dict, baseline: set | None) -> list:
    keys = [f["key"] for row in report["schedulers"] for f in row["findings"]]
    return keys if baseline is None else [k for k in keys if k not in baseline]

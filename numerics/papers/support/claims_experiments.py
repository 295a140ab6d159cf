r"""The support paper's three experiments with exact scores (note ``/work/shared/papers/support.md`` section 4).

One claim per experiment: ``support.experiment_three_disks`` (Fig. 3/4), ``support.experiment_crescents``
(Fig. 5/6), ``support.experiment_five_regions`` (Fig. 7).  Each runs the experiment for every
(gamma, method, kappa, delta) of its profile (:func:`numerics.papers.support.experiments.run_deltas`), stores the
table of the largest / median distance to the guided class's support and of max distance / sigma_delta in
``Measurement.extra`` (also as Markdown, key ``table_md``), and measures:

* **window** (growth): the ratio R(delta) = max distance / sigma_delta, corrected by the known exponent
  of the scheme, :math:`\tilde R(\delta) = R(\delta)\,(\delta/\delta_{\max})^{1/2 - p}` with
  :math:`p = p(\kappa)` for the score-frozen EI schemes (C2) and :math:`p = 1/2` for DDIM/DDPM, stays in a
  constant window as delta decreases: :math:`\max_\delta \tilde R / \max(\tilde R(\delta_{\max}), 1) \le 2`.
  An O(1) plateau (a sample off the support) gives a growth of :math:`\sigma_{\delta_{\max}}/\sigma_{\delta}
  \ge \sqrt{10}` over one decade, so the factor 2 separates the two behaviours;
* **disks only, absolute window**: :math:`\max\tilde R \le 4.7 + 1.0` (the note's 4.0-4.7 from its
  lambda-correct 20 x 20 trapezoid re-implementation, +1.0 as in ``support.three_disks`` for our exact scores);
* **fraction near the support**: endpoints within :math:`r(\delta) = 6\sigma_\delta(\delta_{\max}/\delta)^{1/2-p}`
  of the guided class's support, Wilson 95% lower end >= 0.8 (P -> 1 in the statement; with k = n the
  lower end is >= 0.8 for n >= 16).

Stability restriction (a finding, see ``proofs_notes/support.md``): for a start committed to a wrong
class j when the guidance becomes stiff, one tail step moves y by about :math:`c\gamma|m_\eta - m_j|`
with :math:`c = (e^h - 1)/\sigma^2 \to \kappa/(2(1+\kappa))`; for :math:`c\gamma > 2` it overshoots the
target by more than it started from.  The predictions are therefore made for
:math:`\gamma < \gamma^*(\kappa) = 4(1+\kappa)/\kappa` (44 at kappa 0.1, 12 at kappa 0.5); larger gammas (the
authors' gamma = 50) are run and tabulated but not predicted.

Negative control: guidance towards the wrong class (eta changed), distances still measured to the
original class.
"""
from __future__ import annotations

import math

import numpy as np

from numerics.checks.claim import Context, Measurement, claim
from numerics.stats import proportion_ci
from numerics.papers.support.experiments import (AUTHORS_ODE, AUTHORS_SDE, METHODS, draw_regions, experiment,
                                          run_deltas)

NOTE = "proofs_notes/support.md"
GROWTH_MAX = 2.0
R_FACTOR = 6.0
FRACTION_MIN = 0.8


def p_kappa(kappa: float) -> float:
    r"""Rate exponent of the score-frozen EI (note, C2): :math:`-\ln(1-\kappa/(2(1+\kappa)))/\ln(1+\kappa)`."""
    return -math.log1p(-kappa / (2 * (1 + kappa))) / math.log1p(kappa)


def exponent(method: str, kappa: float) -> float:
    return p_kappa(kappa) if method in ("ei_ode", "ei_sde_code") else 0.5


def gamma_star(kappa: float) -> float:
    r"""Stability bound :math:`4(1+\kappa)/\kappa` of the frozen tail step under strong guidance."""
    return 4 * (1 + kappa) / kappa


def table_md(rows: list[dict]) -> str:
    """Markdown table: one line per (gamma, method, kappa), per delta the max, median and max/sigma."""
    deltas = sorted({r["delta"] for r in rows}, reverse=True)
    head = "| gamma | method | kappa | " + " | ".join(f"delta={d:g}: max / median / max/sigma" for d in deltas) + " |"
    lines = [head, "|" + "---|" * (3 + len(deltas))]
    keys = sorted({(r["gamma"], r["method"], r["kappa"]) for r in rows},
                  key=lambda k: (k[2], k[0], METHODS.index(k[1])))
    for g, m, k in keys:
        cells = []
        for d in deltas:
            r = next((r for r in rows if (r["gamma"], r["method"], r["kappa"], r["delta"]) == (g, m, k, d)), None)
            cells.append("" if r is None else f"{r['max']:.3g} / {r['median']:.3g} / {r['max_over_sigma']:.2f}")
        star = "" if g < gamma_star(k) else " (*)"
        lines.append(f"| {g:g}{star} | {m} | {k:g} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("(*) gamma >= 4(1+kappa)/kappa: outside the stability range, tabulated, not predicted.")
    return "\n".join(lines)


def _run_table(ctx: Context, name: str, wrong: dict):
    p = ctx.params
    exp = experiment(name)
    n = p.get("n")
    x0 = exp.starts if n is None else exp.starts[:n]
    if name == "five_regions":
        etas = np.arange(x0.shape[0]) % len(exp.etas)
    else:
        etas = np.full(x0.shape[0], exp.eta)
    guide = np.array([wrong[int(e)] for e in etas]) if ctx.broken else etas
    rows, runs = [], {}
    for kappa in p["kappas"]:
        for gamma in p["gammas"]:
            for method in p["methods"]:
                seed = int(ctx.rng.integers(2 ** 62))
                rs = run_deltas(exp, gamma, method, kappa, p["deltas"], eta=etas, guide_eta=guide, seed=seed,
                                x_init=x0, return_trajectory=True)
                for r in rs:
                    s = r.summary()
                    s["stable"] = bool(gamma < gamma_star(kappa))
                    rows.append(s)
                    runs[(gamma, method, kappa, r.delta)] = r
    return exp, rows, runs


def _measure(rows, runs, p, name: str, absolute: tuple[float, float] | None) -> list[Measurement]:
    dmax = max(p["deltas"])
    out = []
    table = table_md(rows)
    k_near = n_near = 0
    for method in p["methods"]:
        for kappa in p["kappas"]:
            pe = exponent(method, kappa)
            worst_growth, worst_rt, detail = 0.0, 0.0, {}
            for gamma in p["gammas"]:
                if gamma >= gamma_star(kappa):
                    continue
                rt = {}
                for d in p["deltas"]:
                    r = runs[(gamma, method, kappa, d)]
                    corr = (d / dmax) ** (0.5 - pe)
                    rt[d] = r.max_over_sigma * corr
                    near = r.distances <= R_FACTOR * r.sigma / corr
                    k_near += int(near.sum())
                    n_near += int(near.size)
                growth = max(rt.values()) / max(rt[dmax], 1.0)
                worst_growth = max(worst_growth, growth)
                worst_rt = max(worst_rt, max(rt.values()))
                detail[str(gamma)] = {f"{d:g}": v for d, v in rt.items()}
            if not detail:
                continue
            out.append(Measurement(
                name=f"window growth {method} kappa={kappa:g}", measured=worst_growth, predicted=GROWTH_MAX,
                kind="le", tol=0.0,
                reason="exponent-corrected max distance/sigma_delta is constant to first order as delta -> 0 (C2); "
                       "a plateau grows by >= sqrt(10) per decade, factor 2 separates the two",
                extra={"corrected_ratio": detail, "exponent": pe}))
            if absolute is not None:
                out.append(Measurement(
                    name=f"max corrected distance/sigma {method} kappa={kappa:g}", measured=worst_rt,
                    predicted=absolute[0], kind="le", tol=absolute[1],
                    reason="note's 4.0-4.7 (lambda-correct 20x20 trapezoid re-implementation), +1.0 for exact "
                           "scores vs the discrete node measure (as support.three_disks)"))
    if n_near:
        pc = proportion_ci(k_near, n_near)
        out.append(Measurement(
            name=f"fraction within {R_FACTOR:g} sigma_delta (corrected) of the target", measured=pc.p, ci=pc.ci,
            predicted=FRACTION_MIN, kind="ge", tol=0.0,
            reason="P(dist > r) -> 0 (statement); Wilson 95% lower end; k = n gives >= 0.8 for n >= 16",
            extra={"k": k_near, "n": n_near}))
    unstable = [r for r in rows if not r["stable"]]
    out.append(Measurement(
        name="table recorded", measured=1.0, kind="true", tol=0.0,
        reason="carrier of the full table (no prediction)",
        extra={"experiment": name, "table": rows, "table_md": table,
               "unstable_rows_max_over_sigma": {f"{r['gamma']:g}/{r['method']}/{r['kappa']:g}/{r['delta']:g}":
                                                r["max_over_sigma"] for r in unstable}}))
    return out


def _figure(ctx: Context, exp, runs, p, scatter: bool = False):
    if ctx.broken:
        return
    kappa = p["kappas"][0]
    d_fig = 1e-3 if 1e-3 in p["deltas"] else min(p["deltas"])
    methods = [m for m in (AUTHORS_ODE, AUTHORS_SDE) if m in p["methods"]] or list(p["methods"])[:2]
    gammas = p["gammas"]
    fig = ctx.figure(figsize=(2.8 * len(gammas), 2.9 * len(methods)))
    rm = exp.mixture
    lim = (-6.0, 6.0, -6.0, 6.0)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    for i, method in enumerate(methods):
        for j, gamma in enumerate(gammas):
            ax = fig.add_subplot(len(methods), len(gammas), i * len(gammas) + j + 1)
            r = runs[(gamma, method, kappa, d_fig)]
            if scatter:
                draw_regions(ax, rm, None, lim, colors=colors)
                for c in np.unique(r.eta):
                    sel = r.eta == c
                    ax.plot(r.endpoints[sel, 0], r.endpoints[sel, 1], ".", ms=3, color=colors[int(c)])
            else:
                draw_regions(ax, rm, exp.eta, lim)
                for k in range(r.endpoints.shape[0]):
                    ax.plot(r.trajectory[:, k, 0], r.trajectory[:, k, 1], lw=0.8, color="C0")
                    ax.plot(r.starts[k, 0], r.starts[k, 1], "o", ms=3, color="0.3")
                ax.plot(r.endpoints[:, 0], r.endpoints[:, 1], "k*", ms=6)
            ax.set_title(f"{'ODE' if method in ('ei_ode', 'ddim') else 'SDE'} ({method}) gamma={gamma:g}\n"
                         f"max d/sigma={r.max_over_sigma:.2f}", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"{exp.name} ({exp.figure}), exact scores, kappa={kappa:g}, delta={d_fig:g}"
                 + (" -- endpoints coloured by guided class" if scatter else " -- target red"), fontsize=8)
    fig.tight_layout()


QUICK = {"gammas": [1.0, 5.0], "kappas": [0.1], "deltas": [1e-2, 1e-3], "methods": [AUTHORS_ODE, AUTHORS_SDE]}
FULL = {"gammas": [1.0, 1.5, 2.0, 5.0, 50.0], "kappas": [0.1, 0.5], "deltas": [1e-2, 1e-3, 1e-4, 1e-5],
        "methods": list(METHODS)}


@claim(
    id="support.experiment_three_disks",
    paper="support",
    statement="the authors' three-disk experiment (Fig. 3/4) with exact scores: from their five starts the "
              "endpoints guided to eta = 1 stay within a constant multiple (<= 5.7, note: 4.0-4.7) of sigma_delta "
              "of the target disk as delta -> 0, for DDIM/DDPM-type schemes and gamma < 4(1+kappa)/kappa",
    note=f"{NOTE}#authors-experiments",
    provenance="reconstructed",
    quick=dict(QUICK),
    full=dict(FULL),
)
def experiment_three_disks(ctx: Context) -> list[Measurement]:
    """See the module docstring.  Control: guidance towards disk 0 (distances measured to disk 1)."""
    exp, rows, runs = _run_table(ctx, "three_disks", {1: 0, 0: 1, 2: 1})
    _figure(ctx, exp, runs, ctx.params)
    return _measure(rows, runs, ctx.params, exp.name, absolute=(4.7, 1.0))


@claim(
    id="support.experiment_crescents",
    paper="support",
    statement="the authors' two-crescent experiment (Fig. 5/6) with exact scores: from their four starts the "
              "endpoints guided to the crescent at (2, 2) stay within a constant window of sigma_delta of it as "
              "delta -> 0 (non-convex support), for gamma < 4(1+kappa)/kappa",
    note=f"{NOTE}#authors-experiments",
    provenance="reconstructed",
    quick=dict(QUICK),
    full=dict(FULL),
)
def experiment_crescents(ctx: Context) -> list[Measurement]:
    """See the module docstring.  Control: guidance towards the other crescent."""
    exp, rows, runs = _run_table(ctx, "two_crescents", {0: 1, 1: 0})
    _figure(ctx, exp, runs, ctx.params)
    return _measure(rows, runs, ctx.params, exp.name, absolute=None)


@claim(
    id="support.experiment_five_regions",
    paper="support",
    statement="the authors' five-region experiment (Fig. 7) with exact scores: N(0, I) starts guided to each "
              "class (lens, two crescents, two disks) end within a constant window of sigma_delta of that class's "
              "region as delta -> 0, for gamma < 4(1+kappa)/kappa",
    note=f"{NOTE}#authors-experiments",
    provenance="reconstructed",
    quick=dict(QUICK, n=20, kappas=[0.5]),
    full=dict(FULL, n=100),
)
def experiment_five_regions(ctx: Context) -> list[Measurement]:
    """Starts: the first ``n`` of the experiment's 100 N(0, I) draws, start i guided to class i mod 5.
    Quick uses kappa = 0.5 (26 steps) to stay within the time budget.  Control: start i guided to class
    (i + 1) mod 5, distances measured to class i mod 5."""
    exp, rows, runs = _run_table(ctx, "five_regions", {c: (c + 1) % 5 for c in range(5)})
    _figure(ctx, exp, runs, ctx.params, scatter=True)
    return _measure(rows, runs, ctx.params, exp.name, absolute=None)

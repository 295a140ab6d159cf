r"""Claims C1-C9 of the discriminator-guidance note (Verine et al., arXiv 2503.16117; Kim et al., 2211.17091).

Setting G (OU time, T = 8): data 0.5 N(-2, 0.25) + 0.5 N(2, 0.25), model 0.7 N(-2, 0.36) + 0.3 N(2, 0.36)
with its exact score; reverse samplers start from the model's terminal marginal.  The paper's body was
not available: every statement here is our reconstruction (provenance "reconstructed"; "secondary
source" in a statement means it rests on a third-party reading of the paper).

Tolerances.  Endpoint KLs come from second-order schemes (:func:`numerics.papers.discriminator.refined_1d.kl_with_error`);
their error estimate ``err`` is the change when dx and dtau are doubled (the fine value's error is about
err/3), and every KL comparison allows ``err``.  Comparisons with the note's printed numbers also allow
half a unit of the last printed digit ("rounding").  Expensive solves are memoised, so the negative
control (same parameters, ``ctx.broken``) reuses the unbroken parts and recomputes only what it breaks.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from numerics.checks.claim import Context, Measurement, claim
from numerics.constants import UNIT_ROUNDOFF
from numerics.divergences import gaussian_kl_1d, kl_cells
from numerics.papers.discriminator import refined_1d as D
from numerics.papers.discriminator import refined_2d as D2
from numerics.schedule import alpha_sigma2
from numerics.stats import mean_ci

NOTE = "proofs_notes/discriminator.md"
PAPER = "discriminator"
T = 8.0
Z999 = 3.2905  # two-sided 99.9 % normal quantile

DATA, MODEL = D.setting_g()
# printed values of the note (reference note on 2503.16117, section 5)
NOTE_BASE = 0.11668
NOTE_SDE_W = {0.5: 0.0290, 1.0: 0.0, 1.5: 0.0277, 2.0: 0.1064, 3.0: 0.3865}
NOTE_ODE_W = {0.5: 0.031, 2.0: 0.125, 3.0: 0.479}
NOTE_RIPPLE = {(0.05, 1.0): (0.0025, 0.072), (0.1, 1.0): (0.0099, 0.279), (0.1, 2.0): (0.0118, 2.05),
               (0.1, 5.0): (0.0073, None), (0.1, 20.0): (0.0098, None), (0.1, 40.0): (0.0101, None),
               (0.3, 20.0): (0.097, None)}


def _half_unit(value: float) -> float:
    """Half a unit of the last printed digit of a note value given as a Python float literal."""
    s = repr(float(value))
    if "e" in s:
        return 0.5 * 10 ** int(s.split("e")[1])
    dec = len(s.split(".")[1]) if "." in s else 0
    return 0.5 * 10 ** (-dec)


def _note_unit(value: float) -> float:
    """One unit of the last printed digit: half for the note's rounding, half for its own (unreported)
    discretisation error (dx = 0.005 Crank-Nicolson; forward-transport interpolation for the ODE)."""
    return 2 * _half_unit(value)


NOTE_WHY = ("refinement error estimate + one unit of the note's last printed digit (its rounding and its own "
            "unreported discretisation error)")


@functools.lru_cache(maxsize=64)
def _endpoint(sampler: str, w: float, eps: float, omega: float, dx: float, dtau: float):
    """(KL(p0 || endpoint), err) of setting G refined by w (grad d* + eps omega cos(omega x))."""
    if eps == 0.0 and omega != 0.0:
        return _endpoint(sampler, w, 0.0, 0.0, dx, dtau)
    field = D.bayes_field(DATA, MODEL, w=w, eps=eps, omega=omega)
    return D.kl_with_error(DATA, field, MODEL, sampler, T, D.Grid1D(dx=dx), dtau)


@functools.lru_cache(maxsize=8)
def _grid_quantities(dx: float):
    g = D.Grid1D(dx=dx)
    x = g.x
    base = kl_cells(DATA.density(x, 0.0), MODEL.density(x, 0.0), g.dx)
    kl_T = kl_cells(DATA.density(x, T), MODEL.density(x, T), g.dx)
    return base, kl_T


@functools.lru_cache(maxsize=4)
def _fisher_integral(n: int):
    r""":math:`\int_0^T E_{p_t}|s_p - s_q|^2 dt` with n and n/2 Gauss nodes per piece (value, error estimate)."""
    zero = lambda x, t: 0.0 * x  # noqa: E731
    a = D.path_kl(DATA, MODEL, zero, T, n=n)
    b = D.path_kl(DATA, MODEL, zero, T, n=n // 2)
    return a, abs(a - b)


def _kl_measure(name, value, err, predicted, extra=None, kind="equal", extra_tol=0.0, why=""):
    return Measurement(name=name, measured=value, predicted=predicted, kind=kind, tol=err + extra_tol,
                       reason=why or "discretisation error estimated by doubling dx and dtau", extra=extra or {})


# ----------------------------------------------------------------------------------------------
# C1
# ----------------------------------------------------------------------------------------------
@claim(
    id="discriminator.bayes_exact_correction",
    paper=PAPER,
    statement="C1: the Bayes logit d* = log p_t - log p_theta,t makes s_theta + grad d* the data score; refined "
              "SDE and PF-ODE from the model's terminal law end within KL(p_T||p_theta,T) of the data "
              "(DG Theorem 1 logic, secondary source)",
    note=f"{NOTE}#c1-bayes-discriminator",
    provenance="reconstructed",
    quick={"dx": 0.02, "dtau": 8e-3, "times": [0.0, 0.01, 0.5, 2.0]},
    full={"dx": 0.005, "dtau": 2e-3, "times": [0.0, 1e-3, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0]},
)
def bayes_exact_correction(ctx: Context) -> list[Measurement]:
    """Control: the refined score drops the model score (only grad d* is used)."""
    p = ctx.params
    x = np.linspace(-6, 6, 241)
    h = 1e-3
    worst = 0.0
    for t in p["times"]:
        dstar = lambda z: DATA.log_density(z, t) - MODEL.log_density(z, t)  # noqa: E731
        d1 = (dstar(x + h) - dstar(x - h)) / (2 * h)
        d2 = (dstar(x + h / 2) - dstar(x - h / 2)) / h
        grad = (4 * d2 - d1) / 3
        # rounding allowances, not derived bounds (Richardson rounding is 3 eps_d/h for an evaluation error eps_d of
        # d*): 8u(|d*| + 10)/h and 32u of the scores; with half of each this measurement rises from 0.57 to 0.84
        fd_err = np.abs(d2 - d1) + 8 * UNIT_ROUNDOFF * (np.abs(dstar(x)) + 10) / h
        base = 0.0 if ctx.broken else MODEL.score(x, t)
        resid = np.abs(base + grad - DATA.score(x, t))
        tol = fd_err + 32 * UNIT_ROUNDOFF * (np.abs(DATA.score(x, t)) + np.abs(MODEL.score(x, t)))
        worst = max(worst, float(np.max(resid / tol)))
    out = [Measurement(name="max |s_theta + grad d* - grad log p_t| / tol", measured=worst, predicted=1.0, kind="le",
                       reason="Richardson central difference of d* (h=1e-3): a-posteriori error |D_h - D_h/2| plus "
                              "8u(|d*|+10)/h rounding, plus 32u of the scores", extra={"drift_tol": 1.0})]
    _, kl_T = _grid_quantities(p["dx"])
    if ctx.broken:
        def field(z, t):
            sp_, dsp = DATA.score_and_derivative(z, t)
            sq, dsq = MODEL.score_and_derivative(z, t)
            return sp_ - sq, dsp - dsq
        # the broken field is far off (KL ~ 1): one resolution, no error estimate needed to flag it
        g = D.Grid1D(dx=p["dx"])
        sde = (D.endpoint_kl(DATA.density(g.x, 0.0), D.sde_endpoint(field, MODEL, T, g, p["dtau"]), g.dx), 0.0)
        ode = (D.ode_endpoint(field, MODEL, T, g, p["dtau"]).kl_from(DATA), 0.0)
    else:
        sde = _endpoint("sde", 1.0, 0.0, 0.0, p["dx"], p["dtau"])
        ode = _endpoint("ode", 1.0, 0.0, 0.0, p["dx"], p["dtau"])
    base0 = _endpoint("sde", 0.0, 0.0, 0.0, p["dx"], p["dtau"])
    out += [
        _kl_measure("SDE endpoint KL at w=1 (<= KL_T, data processing)", sde[0], sde[1] + 1e-9, kl_T, kind="le",
                    extra={"note": 0.0, "KL_T": kl_T},
                    why="refinement error estimate + 1e-9 for the grid KL's floor/renormalisation"),
        _kl_measure("PF-ODE endpoint KL at w=1 (= KL_T: invertible map)", ode[0], ode[1] + 1e-9, kl_T,
                    extra={"note": 1.1e-5, "KL_T": kl_T},
                    why="RK4 refinement error estimate + 1e-9 grid quadrature; the note's 1.1e-5 was interpolation error"),
    ]
    # sanity: without correction the SDE reproduces the model; KL(model || endpoint) ~ 0
    g = D.Grid1D(dx=p["dx"])
    q = D.sde_endpoint(D.bayes_field(DATA, MODEL, w=0.0), MODEL, T, g, p["dtau"])
    k0 = D.endpoint_kl(MODEL.density(g.x, 0.0), q, g.dx)
    out.append(Measurement(name="KL(model || uncorrected SDE endpoint)", measured=k0, predicted=0.0, kind="le",
                           tol=base0[1] + 1e-8, reason="same scheme's refinement error at w=0 + 1e-8",
                           extra={"note": 3.4e-10}))
    return out


# ----------------------------------------------------------------------------------------------
# C2
# ----------------------------------------------------------------------------------------------
@claim(
    id="discriminator.dsm_esm_constant",
    paper=PAPER,
    statement="C2: E|grad log p(x_t|x_0) - s_theta - c|^2 = E_{p_t}|grad log p_t - s_theta - c|^2 + C_t with C_t = "
              "1/sigma_t^2 - J(p_t) independent of the correction c (basis of the gradient-matching loss)",
    note=f"{NOTE}#c2-dsm-esm",
    provenance="standard",
    quick={"n": 400_000, "t": 0.5},
    full={"n": 4_000_000, "t": 0.5},
)
def dsm_esm_constant(ctx: Context) -> list[Measurement]:
    """Control: the conditional target drops alpha_t, -(x_t - x_0)/sigma^2, which no longer averages to the score."""
    p = ctx.params
    t = p["t"]
    a, s2 = alpha_sigma2(t)
    x0 = DATA.sample(p["n"], ctx.rng)
    z = ctx.rng.standard_normal(p["n"])
    xt = a * x0 + math.sqrt(s2) * z
    target = -(xt - (x0 if ctx.broken else a * x0)) / s2
    sp_, sq = DATA.score(xt, t), MODEL.score(xt, t)
    corrections = {"c=0": lambda z_: 0 * z_, "c=grad d*": lambda z_: DATA.score(z_, t) - MODEL.score(z_, t),
                   "c=grad d*+0.5cos5x": lambda z_: DATA.score(z_, t) - MODEL.score(z_, t) + 0.5 * np.cos(5 * z_)}
    xs = np.linspace(-12, 12, 24001)
    J = float(np.sum(DATA.density(xs, t) * DATA.score(xs, t) ** 2) * (xs[1] - xs[0]))
    C = 1 / s2 - J
    out, diffs = [], {}
    for name, c in corrections.items():
        v = sq + c(xt)
        dsm = (target - v) ** 2
        esm = (sp_ - v) ** 2
        diffs[name] = dsm - esm
        ci = mean_ci(diffs[name], level=0.999)
        out.append(Measurement(name=f"C_t estimate, {name}", measured=ci.mean, predicted=C, kind="equal",
                               tol=Z999 * ci.se, reason="99.9% Monte Carlo half-width (normal) of the paired mean",
                               extra={"note_C": [0.8350, 0.8347, 0.8348], "fisher_form": float(np.mean(esm))}))
    d = diffs["c=grad d*+0.5cos5x"] - diffs["c=0"]
    ci = mean_ci(d, level=0.999)
    out.append(Measurement(name="C_t(ripple) - C_t(0), paired", measured=ci.mean, predicted=0.0, kind="equal",
                           tol=Z999 * ci.se, reason="99.9% Monte Carlo half-width of the paired difference"))
    fisher = {"c=0": 0.0747, "c=grad d*": 0.0, "c=grad d*+0.5cos5x": 0.1250}
    for name, c in corrections.items():
        r = DATA.score(xs, t) - MODEL.score(xs, t) - c(xs)
        val = float(np.sum(DATA.density(xs, t) * r * r) * (xs[1] - xs[0]))
        out.append(Measurement(name=f"Fisher form {name} (quadrature) vs note", measured=val, predicted=fisher[name],
                               kind="equal", tol=_half_unit(fisher[name]) if fisher[name] else 1e-12,
                               reason="the note prints 4 decimals; trapezoid on dx=0.001 is exact to ~1e-12 here"))
    return out


# ----------------------------------------------------------------------------------------------
# C3
# ----------------------------------------------------------------------------------------------
@claim(
    id="discriminator.base_kl_identity",
    paper=PAPER,
    statement="C3: KL(p_0||p_theta,0) = KL(p_T||p_theta,T) + int_0^T (g^2/2) E_{p_t}|grad log p_t - s_theta|^2 dt "
              "for an exact model score (DG Theorem 2 equality; Verine Eq. 7 for the base, secondary source)",
    note=f"{NOTE}#c3-kl-identity",
    provenance="reconstructed",
    quick={"n": 24},
    full={"n": 48},
)
def base_kl_identity(ctx: Context) -> list[Measurement]:
    """Control: weight g^2 = 2 instead of g^2/2 = 1 on the Fisher integral."""
    base, _ = _grid_quantities(0.001)
    rhs, err = _fisher_integral(ctx.params["n"])
    if ctx.broken:
        _, kl_T = _grid_quantities(0.001)
        rhs = kl_T + 2 * (rhs - kl_T)
    return [
        Measurement(name="KL_0 - [KL_T + Fisher integral]", measured=base - rhs, predicted=0.0, kind="equal",
                    tol=2 * err + 1e-10, reason="twice the change of the composite Gauss-Legendre rule from n/2 to n "
                                                "nodes per piece, + 1e-10 for the x-trapezoid (dx=0.001, spectral)",
                    extra={"KL_0": base, "rhs": rhs}),
        Measurement(name="base KL vs note 0.11668", measured=base, predicted=NOTE_BASE, kind="equal",
                    tol=_half_unit(NOTE_BASE), reason="note prints 5 decimals"),
    ]


# ----------------------------------------------------------------------------------------------
# C4
# ----------------------------------------------------------------------------------------------
@claim(
    id="discriminator.guidance_weight",
    paper=PAPER,
    statement="C4: with the exact discriminator and weight w the path KL is KL_T + (1-w)^2 KL-integral, which "
              "bounds the SDE endpoint KL; the note's SDE endpoint values are reproduced",
    note=f"{NOTE}#c4-guidance-weight",
    provenance="reconstructed",
    quick={"dx": 0.01, "dtau": 4e-3, "weights": [0.5, 2.0, 3.0], "ode_weights": [0.5]},
    full={"dx": 0.005, "dtau": 2e-3, "weights": [0.5, 1.0, 1.5, 2.0, 3.0], "ode_weights": [0.5, 1.0, 2.0, 3.0]},
)
def guidance_weight(ctx: Context) -> list[Measurement]:
    """Control: the Girsanov weight g^2/2 = 1 replaced by 1/2 in the bound."""
    p = ctx.params
    I, I_err = _fisher_integral(24)
    _, kl_T = _grid_quantities(0.001)
    I -= kl_T
    factor = 0.5 if ctx.broken else 1.0
    out, rows = [], []
    for w in p["weights"]:
        kl, err = _endpoint("sde", w, 0.0, 0.0, p["dx"], p["dtau"])
        bound = kl_T + factor * (1 - w) ** 2 * I
        out.append(_kl_measure(f"SDE endpoint KL w={w} <= path KL", kl, err + I_err, bound, kind="le"))
        out.append(_kl_measure(f"SDE endpoint KL w={w} vs note", kl, err, NOTE_SDE_W[w], extra_tol=_note_unit(NOTE_SDE_W[w]),
                               why=NOTE_WHY))
        rows.append((w, kl, bound))
    ode_rows = []
    for w in p["ode_weights"]:
        kl, err = _endpoint("ode", w, 0.0, 0.0, p["dx"], p["dtau"])
        ode_rows.append((w, kl))
        if w == 0.5:
            out.append(_kl_measure("PF-ODE endpoint KL w=0.5 vs note", kl, err, NOTE_ODE_W[0.5],
                                   extra_tol=_note_unit(NOTE_ODE_W[0.5]), why=NOTE_WHY))
        else:
            out.append(Measurement(name=f"PF-ODE endpoint KL w={w} (recorded; no Girsanov bound for the ODE)",
                                   measured=kl, kind="ge", predicted=0.0, tol=err,
                                   reason="KL is non-negative up to the refinement error",
                                   extra={"note": NOTE_ODE_W.get(w), "path_bound": kl_T + (1 - w) ** 2 * I,
                                          "exceeds_path_bound": bool(kl > kl_T + (1 - w) ** 2 * I)}))
    fig = ctx.figure(figsize=(5, 3.5))
    ax = fig.add_subplot(111)
    ws = np.linspace(0, 3.2, 50)
    ax.plot(ws, kl_T + (1 - ws) ** 2 * I, "k--", label="path-KL bound")
    ax.plot([r[0] for r in rows], [r[1] for r in rows], "o", label="SDE endpoint")
    ax.plot([r[0] for r in ode_rows], [r[1] for r in ode_rows], "s", label="PF-ODE endpoint")
    ax.set_xlabel("guidance weight w")
    ax.set_ylabel("KL(data || refined)")
    ax.legend()
    fig.tight_layout()
    return out


# ----------------------------------------------------------------------------------------------
# C5
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _ripple_path_kl(eps: float, om: float) -> float:
    """Path KL of d* + eps sin(omega x) (12 Gauss nodes per time piece; x-trapezoid dx=0.001)."""
    xs = np.linspace(-12, 12, 24001)
    return D.path_kl(DATA, MODEL, lambda z, t: DATA.score(z, t) - MODEL.score(z, t) + eps * om * np.cos(om * z),
                     T, n=12, x=xs)


@claim(
    id="discriminator.ce_gradient_counterexample",
    paper=PAPER,
    statement="C5 (Theorem 4.1 type, secondary source): d = d* + eps sin(omega x) has CE gap <= eps^2/4 at every t "
              "while the path KL grows like eps^2 omega^2 T/2; the SDE endpoint stays O(eps^2) but the PF-ODE "
              "endpoint becomes worse than the unrefined model (eps=0.1, omega=1) and collapses at high omega",
    note=f"{NOTE}#c5-high-frequency",
    provenance="reconstructed",
    expect="fails-as-predicted",
    quick={"dx": 0.02, "dtau": 8e-3, "pairs": [[0.1, 1.0], [0.1, 20.0]], "ode_pairs": [[0.1, 1.0], [0.1, 20.0]],
           "times": [0.01, 0.5, 2.0]},
    full={"dx": 0.005, "dtau": 2e-3, "pairs": [[0.05, 1.0], [0.1, 1.0], [0.1, 2.0], [0.1, 5.0], [0.1, 20.0],
                                               [0.1, 40.0], [0.3, 20.0]],
          "ode_pairs": [[0.05, 1.0], [0.1, 1.0], [0.1, 2.0], [0.1, 5.0], [0.1, 20.0]], "times": [0.01, 0.5, 2.0]},
)
def ce_gradient_counterexample(ctx: Context) -> list[Measurement]:
    """Control: eps = 0 (no ripple): the path KL no longer grows and the PF-ODE beats the base model."""
    p = ctx.params
    base, kl_T = _grid_quantities(0.001)
    out = []
    kls = []
    for eps, om in p["pairs"]:
        eps_eff = 0.0 if ctx.broken else eps
        gaps = [D.ce_gap(DATA, MODEL, t, lambda z: eps_eff * np.sin(om * z)) for t in p["times"]]
        out.append(Measurement(name=f"max CE gap eps={eps} omega={om}", measured=max(gaps), predicted=eps ** 2 / 4,
                               kind="le", tol=1e-9, reason="trapezoid on dx=5e-4 of smooth decaying integrands: ~1e-12",
                               extra={"gaps": gaps}))
        path = _ripple_path_kl(eps_eff, om if eps_eff else 0.0)
        scale = eps ** 2 * om ** 2 * T / 2
        out.append(Measurement(name=f"path KL / (eps^2 omega^2 T/2), eps={eps} omega={om}", measured=path / scale,
                               kind="interval", lo=0.5, hi=2.0, tol=0.0,
                               reason="predicted growth like eps^2 omega^2 T/2: E_{p_t}cos^2(omega x) -> 1/2; the band "
                                      "[0.5, 2] is the order-one statement (exact margin, quadrature error ~1e-10)",
                               extra={"path_kl": path, "ce_bound": eps ** 2 / 4, "note_gaps": "1.6e-3/1.4e-3/1.1e-3 at eps=0.1, omega=1"}))
        kl, err = _endpoint("sde", 1.0, eps_eff, om, p["dx"], p["dtau"])
        kls.append((om, kl, path))
        out.append(_kl_measure(f"SDE endpoint eps={eps} omega={om} < base", kl, err, base, kind="le"))
        note = NOTE_RIPPLE.get((eps, om))
        if note and not ctx.broken:
            out.append(_kl_measure(f"SDE endpoint eps={eps} omega={om} vs note", kl, err, note[0],
                                   extra_tol=_note_unit(note[0]), why=NOTE_WHY))
    for eps, om in p["ode_pairs"]:
        eps_eff = 0.0 if ctx.broken else eps
        if om <= 2:
            kl, err = _endpoint("ode", 1.0, eps_eff, om, p["dx"], p["dtau"])
            note = NOTE_RIPPLE[(eps, om)][1]
            if eps >= 0.1:  # the note's predicted failure: worse than the unrefined model
                out.append(_kl_measure(f"PF-ODE endpoint eps={eps} omega={om} > base (predicted failure)", kl, err,
                                       base, kind="ge", extra={"note": note}))
            out.append(_kl_measure(f"PF-ODE endpoint eps={eps} omega={om} vs note", kl, err, note,
                                   extra_tol=_note_unit(note), why=NOTE_WHY))
        else:
            res = D.ode_endpoint(D.bayes_field(DATA, MODEL, 1.0, eps_eff, om), MODEL, T, D.Grid1D(dx=p["dx"]), p["dtau"])
            out.append(Measurement(name=f"PF-ODE collapse eps={eps} omega={om} (grid mass < 0.5)",
                                   measured=float(res.mass < 0.5), kind="true",
                                   reason="near-atomic endpoint: its atoms fall between grid points, so the grid "
                                          "mass of the exact density drops far below 1",
                                   extra={"mass": res.mass, "max_log_density": res.max_log_density}))
    fig = ctx.figure(figsize=(5, 3.5))
    ax = fig.add_subplot(111)
    oms = [k[0] for k in kls]
    ax.loglog(oms, [k[2] for k in kls], "o-", label="path KL")
    ax.loglog(oms, [max(k[1], 1e-6) for k in kls], "s-", label="SDE endpoint KL")
    ax.axhline(base, color="k", ls=":", label="unrefined model")
    ax.set_xlabel("omega")
    ax.set_ylabel("KL")
    ax.legend()
    fig.tight_layout()
    return out


# ----------------------------------------------------------------------------------------------
# C6
# ----------------------------------------------------------------------------------------------
GAUSS_CASES = {  # data (mu, v) -> model (mu, v): note's (base, MSE sde/ode/path, CE sde/ode/path)
    "N(0,1)->N(0.5,1)": ((0, 1), (0.5, 1), (0.1250, 0, 0, 0, 0, 0, 0)),
    "N(0,1)->N(0.5,2.25)": ((0, 1), (0.5, 2.25), (0.1832, 0.1277, 0.1277, 0.1277, 0.1293, 0.1284, 0.1300)),
    "N(0,1)->N(1,0.25)": ((0, 1), (1, 0.25), (2.807, 0.806, 0.806, 0.806, 1.086, 0.949, 1.134)),
    "N(0,0.1)->N(0.3,0.3)": ((0, 0.1), (0.3, 0.3), (0.3660, 0.2161, 0.2161, 0.2156, 0.2235, 0.2192, 0.2263)),
}


def _pair(name: str):
    if name == "G":
        return DATA, MODEL
    (m0, v0), (m1, v1), _ = GAUSS_CASES[name]
    return D.Mixture1D([1], [m0], [v0]), D.Mixture1D([1], [m1], [v1])


@functools.lru_cache(maxsize=32)
def _beta(name: str, obj: str, n_spline: int):
    """Optimal linear-logit slope beta(t) (spline) for case ``name`` ("G" = setting G), memoised."""
    data, model = _pair(name)
    return D.linear_beta_spline(data, model, obj, T, n_spline)


@functools.lru_cache(maxsize=32)
def _gauss_case(name: str, n_spline: int, n_steps: int, flip: bool):
    (m0, v0), _, _ = GAUSS_CASES[name]
    data, model = _pair(name)
    res = {}
    for obj in ("mse", "ce"):
        if obj == "ce" and flip:  # the control breaks only the MSE slope
            res[obj] = _gauss_case(name, n_spline, n_steps, False)["ce"]
            continue
        beta = _beta(name, obj, n_spline)
        if flip:
            b0 = beta
            beta = lambda t, b0=b0: -b0(t)  # noqa: E731
        vals = []
        for smp in ("sde", "ode"):
            fine = D.gaussian_refined_endpoint(model, beta, smp, T, n_steps)
            coarse = D.gaussian_refined_endpoint(model, beta, smp, T, n_steps // 2)
            kf, kc = gaussian_kl_1d(m0, v0, *fine), gaussian_kl_1d(m0, v0, *coarse)
            vals.append((kf, abs(kf - kc)))
        vals.append((D.gaussian_path_kl(data, model, beta, T), 0.0))
        res[obj] = vals
    return res


@functools.lru_cache(maxsize=16)
def _gmm_linear(obj: str, n_spline: int, dx: float, dtau: float, flip: bool):
    """(KL, err) of the SDE refined by the optimal linear logit in setting G (sign flipped for the control)."""
    b0 = _beta("G", obj, n_spline)
    beta = (lambda t: -b0(t)) if flip else b0
    return D.kl_with_error(DATA, D.linear_field(MODEL, beta), MODEL, "sde", T, D.Grid1D(dx=dx), dtau)


@claim(
    id="discriminator.misspecified_linear_family",
    paper=PAPER,
    statement="C6: in the linear-logit family (correction beta(t) constant in x) the gradient-matching optimum "
              "gives smaller endpoint KL than the CE optimum for SDE and PF-ODE; in the Gaussian case its endpoint "
              "KL equals its path KL; the note's table is reproduced",
    note=f"{NOTE}#c6-misspecified",
    provenance="reconstructed",
    quick={"cases": ["N(0,1)->N(1,0.25)", "N(0,1)->N(0.5,2.25)"], "n_spline": 101, "n_steps": 1600,
           "gmm": True, "dx": 0.01, "dtau": 4e-3},
    full={"cases": list(GAUSS_CASES), "n_spline": 401, "n_steps": 4000, "gmm": True, "dx": 0.005, "dtau": 2e-3},
)
def misspecified_linear_family(ctx: Context) -> list[Measurement]:
    """Control: the MSE-optimal slope with the wrong sign."""
    p = ctx.params
    out = []
    spline_tol = 1e-4  # cubic-spline interpolation of beta(t): checked against n=2x in tests (< 1e-5 observed)
    for name in p["cases"]:
        note = GAUSS_CASES[name][2]
        r = _gauss_case(name, p["n_spline"], p["n_steps"], ctx.broken)
        for i, smp in enumerate(("sde", "ode")):
            (km, em), (kc, ec) = r["mse"][i], r["ce"][i]
            out.append(Measurement(name=f"{name} {smp}: MSE-opt KL <= CE-opt KL", measured=km, predicted=kc, kind="le",
                                   tol=em + ec + 2 * spline_tol, reason="RK4 halving error of both + spline error",
                                   extra={"mse": km, "ce": kc}))
        path_m = r["mse"][2][0]
        out.append(Measurement(name=f"{name}: MSE-opt SDE endpoint KL = path KL (exact score of N(mu, v_hat))",
                               measured=r["mse"][0][0], predicted=path_m, kind="equal",
                               tol=r["mse"][0][1] + 2 * spline_tol + 1e-3,
                               reason="RK4 error + spline error + 1e-3: the terminal mismatch KL(p_T||q_T) is amplified "
                                      "by the backward flow (see note)"))
        got = [r["mse"][0][0], r["mse"][1][0], path_m, r["ce"][0][0], r["ce"][1][0], r["ce"][2][0]]
        dev = max(abs(a - b) for a, b in zip(got, note[1:]))
        out.append(Measurement(name=f"{name}: max |ours - note| over the six table entries", measured=dev,
                               predicted=0.0, kind="le", tol=2e-3,
                               reason="the note prints 3-4 significant digits (0.806 is a truncation of 0.80685); two "
                                      "units of the third decimal", extra={"ours": got, "note": list(note[1:])}))
    if p["gmm"]:
        res = {}
        for obj in ("mse", "ce"):
            res[obj] = _gmm_linear(obj, p["n_spline"], p["dx"], p["dtau"], ctx.broken and obj == "mse")
        (km, em), (kc, ec) = res["mse"], res["ce"]
        out.append(Measurement(name="setting G SDE: MSE-opt KL <= CE-opt KL", measured=km, predicted=kc, kind="le",
                               tol=em + ec, reason="refinement error estimates", extra={"note": [0.0485, 0.0657]}))
        out.append(_kl_measure("setting G SDE MSE-opt vs note 0.0485", km, em + 2 * spline_tol, 0.0485,
                               extra_tol=_note_unit(0.0485), why="spline error + " + NOTE_WHY))
        out.append(_kl_measure("setting G SDE CE-opt vs note 0.0657", kc, ec + 2 * spline_tol, 0.0657,
                               extra_tol=_note_unit(0.0657), why="spline error + " + NOTE_WHY))
    return out


# ----------------------------------------------------------------------------------------------
# C7
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _fits(n: int, seed: int, lam: float):
    """Gradient-matched and CE-trained FourierLogit fits on n real / n model samples (memoised)."""
    r2 = np.random.default_rng([seed, n])
    real, fake = DATA.sample(n, r2), MODEL.sample(n, r2)
    fg = D.fit_logit_gm(D.FourierLogit(seed=3), real, MODEL, r2, T, lam=lam, repeats=2)
    fc = D.fit_logit_ce(D.FourierLogit(seed=3), real, fake, r2, T, lam=lam, repeats=2)
    return fg, fc


@claim(
    id="discriminator.overfitting",
    paper=PAPER,
    statement="C7: the Bayes discriminator against a finite real set (n points) refines the model into the "
              "empirical marginal: population CE gap grows as t -> 0 and KL(data || endpoint at t=delta) blows up "
              "as delta -> 0 (memorisation); restricted, norm-bounded feature logits trained by either objective "
              "improve on the unrefined model at the largest sample size",
    note=f"{NOTE}#c7-overfitting",
    provenance="reconstructed",
    quick={"n_memo": 20, "deltas": [0.1, 0.01, 0.001], "ce_times": [1.0, 0.1, 0.01], "sizes": [100, 3000],
           "lam": 1e-3, "dx": 0.02, "dtau": 8e-3},
    full={"n_memo": 20, "deltas": [0.1, 0.01, 0.001, 1e-4], "ce_times": [2.0, 1.0, 0.1, 0.01, 0.001],
          "sizes": [100, 1000, 10000, 100000], "lam": 1e-3, "dx": 0.01, "dtau": 4e-3},
)
def overfitting(ctx: Context) -> list[Measurement]:
    """Control: the 'memorising' discriminator is replaced by the population Bayes logit (no blow-up), and the
    trained logits are used with the opposite sign."""
    p = ctx.params
    rng = np.random.default_rng(ctx.sub_seed)
    pts = DATA.sample(p["n_memo"], rng)
    out = []
    xs = np.linspace(-10, 10, 40001)
    dxs = xs[1] - xs[0]
    lp0 = DATA.log_density(xs, 0.0)

    def emp_log(t):
        if ctx.broken:
            return DATA.log_density(xs, t)
        a, s2 = alpha_sigma2(t)
        e = -0.5 * (xs[:, None] - a * pts) ** 2 / s2
        m = e.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(e - m).mean(axis=1, keepdims=True)))[:, 0] - 0.5 * math.log(2 * math.pi * s2)

    gaps = []
    for t in p["ce_times"]:
        dn = emp_log(t) - MODEL.log_density(xs, t)
        d0 = DATA.log_density(xs, t) - MODEL.log_density(xs, t)
        pt, qt = DATA.density(xs, t), MODEL.density(xs, t)
        ce = lambda d: np.sum(pt * np.logaddexp(0, -d) + qt * np.logaddexp(0, d)) * dxs  # noqa: E731
        gaps.append(float(ce(dn) - ce(d0)))
    out.append(Measurement(name="population CE gap of the memorising logit: small t / large t", measured=gaps[-1] / max(gaps[0], 1e-300),
                           predicted=10.0, kind="ge", tol=0.0,
                           reason="predicted growth as t -> 0 (CE gap -> KL-like divergence of atoms); a factor 10 "
                                  "is far inside the observed range", extra={"gaps": gaps, "times": p["ce_times"]}))
    kls = []
    for dl in p["deltas"]:
        lq = emp_log(dl)
        kls.append(float(np.sum(np.exp(lp0) * (lp0 - lq)) * dxs))
    base, _ = _grid_quantities(0.001)
    out.append(Measurement(name=f"KL(data || empirical marginal at delta={p['deltas'][-1]})", measured=kls[-1],
                           predicted=10 * base, kind="ge", tol=0.0,
                           reason="memorisation: the endpoint tends to n atoms, KL -> infinity like 1/sigma_delta^2; "
                                  "a factor 10 over the unrefined model", extra={"kls": kls, "deltas": p["deltas"]}))
    out.append(Measurement(name="KL increases as delta decreases", measured=float(np.all(np.diff(kls) > 0)),
                           kind="true", reason="monotone blow-up predicted"))
    # restricted trained logits
    g = D.Grid1D(dx=p["dx"])
    sign = -1.0 if ctx.broken else 1.0
    rows = []
    dens = {}
    for n in p["sizes"]:
        fg, fc = _fits(n, ctx.sub_seed, p["lam"])
        qg = D.sde_endpoint(D.feature_field(MODEL, fg, w=sign), MODEL, T, g, p["dtau"])
        qc = D.sde_endpoint(D.feature_field(MODEL, fc, w=sign), MODEL, T, g, p["dtau"])
        pg = DATA.density(g.x, 0.0)
        rows.append((n, D.endpoint_kl(pg, qg, g.dx), D.endpoint_kl(pg, qc, g.dx)))
        dens[n] = (qg, qc)
    n_max, kg, kc = rows[-1]
    coarse_err = 0.02  # coarse grid (dx=0.02, dtau=8e-3): C4's refinement error at this size is < 2e-3; 10x margin
    out.append(Measurement(name=f"gradient-matched logit n={n_max}: KL < unrefined", measured=kg, predicted=base,
                           kind="le", tol=coarse_err, reason="coarse-grid error allowance (C4 refinement x10)",
                           extra={"rows": rows}))
    out.append(Measurement(name=f"CE-trained logit n={n_max}: KL < unrefined", measured=kc, predicted=base,
                           kind="le", tol=coarse_err, reason="coarse-grid error allowance (C4 refinement x10)"))
    fig = ctx.figure(figsize=(9, 3.5))
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    ax1.plot(g.x, DATA.density(g.x, 0.0), "k", label="data")
    ax1.plot(g.x, MODEL.density(g.x, 0.0), "k:", label="model")
    ax1.plot(g.x, dens[n_max][1], label=f"CE-refined (n={n_max})")
    ax1.plot(g.x, dens[n_max][0], "--", label=f"gradient-matched (n={n_max})")
    ax1.set_xlim(-5, 5)
    ax1.legend(fontsize=7)
    ax2.loglog([r[0] for r in rows], [r[1] for r in rows], "o-", label="gradient matching")
    ax2.loglog([r[0] for r in rows], [r[2] for r in rows], "s-", label="cross-entropy")
    ax2.axhline(base, color="k", ls=":", label="unrefined")
    ax2.set_xlabel("training samples n")
    ax2.set_ylabel("SDE endpoint KL")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return out


# ----------------------------------------------------------------------------------------------
# C8
# ----------------------------------------------------------------------------------------------
MISSING_MODEL = D.Mixture1D([0.98, 0.02], [-2.0, 2.0], [0.36, 0.36])


@claim(
    id="discriminator.missing_mode",
    paper=PAPER,
    statement="C8: on a region R the model nearly misses, d = d* + A S(x) (S a smoothed indicator of R, applied "
              "for t <= t1) costs at most A E_{p_theta,t}[S] in CE, yet the refined SDE endpoint KL exceeds "
              "KL_T + the largest CE gap (bounded only by the gradient-error path KL)",
    note=f"{NOTE}#c8-missing-mode",
    provenance="reconstructed",
    expect="fails-as-predicted",
    quick={"A": 1.5, "t1": 0.3, "dx": 0.01, "dtau": 4e-3, "times": [0.01, 0.1, 0.3]},
    full={"A": 1.5, "t1": 0.3, "dx": 0.005, "dtau": 2e-3, "times": [0.001, 0.01, 0.05, 0.1, 0.2, 0.3]},
)
def missing_mode(ctx: Context) -> list[Measurement]:
    """Control: the perturbation placed where the model has mass (R around -2), which CE does not find cheap."""
    p = ctx.params
    A, t1 = p["A"], p["t1"]
    c = -2.0 if ctx.broken else 2.0
    S = lambda z: 1 / (1 + np.exp(-(z - (c - 1)) / 0.1)) / (1 + np.exp(-((c + 1) - z) / 0.1))  # noqa: E731
    dS = lambda z: S(z) * ((1 - 1 / (1 + np.exp(-(z - (c - 1)) / 0.1))) / 0.1  # noqa: E731
                           - (1 - 1 / (1 + np.exp(-((c + 1) - z) / 0.1))) / 0.1)
    out = []
    gaps = []
    for t in p["times"]:
        gap = D.ce_gap(DATA, MISSING_MODEL, t, lambda z: A * S(z))
        xs = np.linspace(-12, 12, 24001)
        bound = A * float(np.sum(MISSING_MODEL.density(xs, t) * S(xs)) * (xs[1] - xs[0]))
        gaps.append(gap)
        out.append(Measurement(name=f"CE gap <= A E_q[S] at t={t}", measured=gap, predicted=bound, kind="le", tol=1e-9,
                               reason="pointwise bound (phi' <= q on the way up); trapezoid error ~1e-12"))

    def field(z, t):
        sp_, dsp = DATA.score_and_derivative(z, t)
        sq, dsq = MISSING_MODEL.score_and_derivative(z, t)
        if t > t1:
            return sp_, dsp
        h = 1e-4
        d2 = (dS(z + h) - dS(z - h)) / (2 * h)
        return sp_ + A * dS(z), dsp + A * d2

    kl, err = D.kl_with_error(DATA, field, MISSING_MODEL, "sde", T, D.Grid1D(dx=p["dx"]), p["dtau"])
    xs = np.linspace(-12, 12, 24001)
    kl_T = kl_cells(DATA.density(xs, T), MISSING_MODEL.density(xs, T), xs[1] - xs[0])
    ts, ws = D.time_nodes(t1, pieces=(0.0, 0.05), n=24)
    path = kl_T + sum(wi * float(np.sum(DATA.density(xs, ti) * (A * dS(xs)) ** 2) * (xs[1] - xs[0]))
                      for ti, wi in zip(ts, ws))
    out.append(_kl_measure("refined SDE endpoint KL > KL_T + max CE gap (CE gap does not control the damage)",
                           kl, err, kl_T + max(gaps), kind="ge", extra={"max_ce_gap": max(gaps), "path_kl": path}))
    out.append(_kl_measure("refined SDE endpoint KL <= path KL (Girsanov)", kl, err, path, kind="le",
                           extra={"path_kl": path}))
    return out


# ----------------------------------------------------------------------------------------------
# C9
# ----------------------------------------------------------------------------------------------
@claim(
    id="discriminator.reference_marginal_mismatch",
    paper=PAPER,
    statement="C9 (secondary source): training against re-noised model endpoints q-bar_t instead of the sampler's "
              "marginals q_t can reverse the correction: moving q_t=N(0,4) along grad log(p/q) lowers KL(q||p) at "
              "rate -2.25, along grad log(p/q-bar) raises it at rate +3 (p_t=N(0,1), q-bar_t=N(0,0.5))",
    note=f"{NOTE}#c9-reference-mismatch",
    provenance="reconstructed",
    expect="fails-as-predicted",
    quick={"h": 1e-4},
    full={"h": 1e-5},
)
def reference_marginal_mismatch(ctx: Context) -> list[Measurement]:
    """Particles x -> x + h v(x) with v = k x keep N(0, 4(1+hk)^2); the KL rate is a central difference of the
    closed-form Gaussian KL.  Control: q-bar_t replaced by q_t (no mismatch)."""
    h = ctx.params["h"]
    vq, vp = 4.0, 1.0
    vbar = vq if ctx.broken else 0.5
    out = []
    for name, k, pred in (("grad log(p/q)", 1 / vq - 1 / vp, -2.25), ("grad log(p/q-bar)", 1 / vbar - 1 / vp, 3.0)):
        kl = lambda s: gaussian_kl_1d(0.0, vq * (1 + s * k) ** 2, 0.0, vp)  # noqa: E731
        rate = (kl(h) - kl(-h)) / (2 * h)
        out.append(Measurement(name=f"dKL(q||p)/dtau along {name}", measured=rate, predicted=pred, kind="equal",
                               tol=10 * h * h * abs(k) ** 3 * 64 + 1e-8,
                               reason="central difference O(h^2 |k|^3 v) truncation + rounding u/h"))
    return out


# ----------------------------------------------------------------------------------------------
# C7 in 2-D: trained discriminators, both objectives, endpoint KL vs sample size
# ----------------------------------------------------------------------------------------------

DATA2, MODEL2 = D2.setting_g2()
BOX2 = ((-5.5, 5.5), (-5.0, 5.5))


@functools.lru_cache(maxsize=32)
def _fits_2d(n: int, seed: int, lam: float, T2: float, n_freq: int):
    """GM- and CE-trained FeatureLogit2D on n real / n model samples of setting G2 (memoised: the control reuses them)."""
    r2 = np.random.default_rng([seed, n, 2])
    real, fake = DATA2.sample_data(n, r2), MODEL2.sample_data(n, r2)
    knots = (0.0, 0.05, 0.2, 0.6, 1.5, T2)
    fg = D2.fit_logit_gm_2d(D2.FeatureLogit2D(n_freq=n_freq, knots=knots, seed=5), real, MODEL2, r2, T2,
                            lam=lam, repeats=1)
    fc = D2.fit_logit_ce_2d(D2.FeatureLogit2D(n_freq=n_freq, knots=knots, seed=5), real, fake, r2, T2,
                            lam=lam, repeats=1)
    return {"gm": fg, "ce": fc}


@functools.lru_cache(maxsize=64)
def _chain_2d(which: str, n_train: int, w: float, seed: int, lam: float, T2: float, n_freq: int, steps: int,
              grid_n: int, refine: bool) -> D2.EndpointKL:
    """Endpoint KL of the refined EI-SDE chain in setting G2; ``which`` in {"exact", "gm", "ce"} (w < 0: flipped)."""
    if which == "exact":
        corr = D2.bayes_correction(DATA2, MODEL2)
    else:
        corr = D2.feature_correction(_fits_2d(n_train, seed, lam, T2, n_freq)[which])
    return D2.endpoint_kl_2d(DATA2, MODEL2, corr, w, BOX2, grid_n, D2.time_grid(T2, steps), refine=refine)


@claim(
    id="discriminator.trained_2d",
    paper=PAPER,
    statement="C7 in 2-D (setting G2, EI-SDE chain, exact grid law): the Bayes logit d* fixes the refined sampler up to "
              "discretisation (endpoint KL below the unrefined KL(p||p_theta)); random-Fourier x time-hat logits with a "
              "ridge bound trained by gradient matching on the largest sample also improve on the unrefined model; "
              "endpoint KL vs n recorded for both objectives and w in {1, 2}",
    note=f"{NOTE}#c7-overfitting",
    provenance="reconstructed",
    quick={"sizes": [100, 1000], "weights": [1.0, 2.0], "lam": 1e-3, "T": 3.0, "n_freq": 16, "steps": 10,
           "grid_n": 25},
    full={"sizes": [100, 1000, 10000, 100000], "weights": [1.0, 2.0], "lam": 1e-3, "T": 3.0, "n_freq": 16,
          "steps": 20, "grid_n": 37},
)
def trained_2d(ctx: Context) -> list[Measurement]:
    """Control: the logits used with the opposite sign (refined score s_theta - w grad d): the exact d* and the
    gradient-matched fit at the largest n (the table of the other fits is not recomputed)."""
    p = ctx.params
    sign = -1.0 if ctx.broken else 1.0
    key = (ctx.sub_seed, p["lam"], p["T"], p["n_freq"], p["steps"], p["grid_n"])
    g1, g2 = (np.linspace(lo, hi, p["grid_n"]) for lo, hi in BOX2)
    base = D2.kl_grid_2d(D2.mixture_density_grid(DATA2, g1, g2, 0.0), D2.mixture_density_grid(MODEL2, g1, g2, 0.0),
                         g1, g2)
    # the flipped chain is far off (KL ~ 1): one resolution suffices to flag it
    ex = _chain_2d("exact", 0, sign, *key[:5], key[5], not ctx.broken)
    rows = []
    for n in ([] if ctx.broken else p["sizes"]):  # the control flips only what its measurements use
        row = {"n": n}
        for obj in ("gm", "ce"):
            for w in p["weights"]:
                row[f"{obj} w={w:g}"] = _chain_2d(obj, n, sign * w, *key[:5], key[5], False).kl
        rows.append(row)
    n_max = p["sizes"][-1]
    gm_top = _chain_2d("gm", n_max, sign * 1.0, *key[:5], key[5], not ctx.broken)
    table = {"base_kl": base, "exact_w1": ex.kl, "rows": rows}
    out = [
        Measurement(name="exact d*, w=1: refined EI-SDE endpoint KL <= unrefined KL(p||p_theta)", measured=ex.kl,
                    predicted=base, kind="le", tol=ex.err,
                    reason="grid refinement |KL_n - KL_2n-1| (both spacings halved) + escaped mass; the time "
                           "discretisation of the chain is part of the sampler measured",
                    extra={"kl_fine": ex.kl_fine, "escaped": ex.escaped, "grid": p["grid_n"], "steps": p["steps"]}),
        Measurement(name=f"gradient-matched logit n={n_max}, w=1: endpoint KL <= unrefined", measured=gm_top.kl,
                    predicted=base, kind="le", tol=gm_top.err,
                    reason="grid refinement of this chain + escaped mass", extra=table),
    ]
    table["winner"] = {f"n={r['n']} w={w:g}": ("gm" if r[f"gm w={w:g}"] < r[f"ce w={w:g}"] else "ce")
                       for r in rows for w in p["weights"]}
    fig = ctx.figure(figsize=(6, 4))
    ax = fig.add_subplot(111)
    if not rows:
        return out
    ns = [r["n"] for r in rows]
    for obj, mk in (("gm", "o"), ("ce", "s")):
        for w, ls in zip(p["weights"], ("-", "--", ":")):
            ax.loglog(ns, [r[f"{obj} w={w:g}"] for r in rows], mk + ls,
                      label=f"{'gradient matching' if obj == 'gm' else 'cross-entropy'}, w={w:g}")
    ax.axhline(base, color="k", ls=":", label="unrefined KL(p||p_theta)")
    ax.axhline(ex.kl, color="grey", ls="-.", label="exact d*, w=1")
    ax.set_xlabel("training samples n")
    ax.set_ylabel("EI-SDE endpoint KL (2-D grid)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return out

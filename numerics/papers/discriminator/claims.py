r"""Claims C1-C9 of the discriminator-guidance note (Verine et al., arXiv 2503.16117; Kim et al., 2211.17091).

Setting G (OU time, T = 8): data 0.5 N(-2, 0.25) + 0.5 N(2, 0.25), model 0.7 N(-2, 0.36) + 0.3 N(2, 0.36)
with its exact score; reverse samplers start from the model's terminal marginal.  The paper's body was
not available: every statement here is our reconstruction (provenance "reconstructed"; "secondary
source" in a statement means it rests on a third-party reading of the paper).

Tolerances.  Endpoint KLs come from second-order schemes (:func:`numerics.papers.discriminator.refined_1d.kl_with_error`);
their error estimate ``err`` is the change when dx and dtau are doubled (the fine value's error is about
err/3), and every KL comparison allows ``err``.  Comparisons with the note's printed numbers also allow
one unit of the last printed digit.  Monte-Carlo intervals that count use
:data:`numerics.stats.ENSEMBLE_LEVEL`.  Expensive solves are memoised, so a control run reuses the
unbroken parts and recomputes only what its bug changes.

Controls (``ctx.bug(name)``) are realistic implementation bugs, one line each in ``controls=``; the
proofs behind every tolerance are in ``proofs_notes/discriminator.md`` (section named in ``reason``).
"""
from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np

from numerics.checks.claim import Context, Measurement, claim
from numerics.checks.plots import level
from numerics.constants import UNIT_ROUNDOFF
from numerics.divergences import gaussian_kl_1d, kl_cells
from numerics.papers.discriminator import _figures as F
from numerics.papers.discriminator import refined_1d as D
from numerics.papers.discriminator import refined_2d as D2
from numerics.schedule import alpha_sigma2
from numerics.stats import ENSEMBLE_LEVEL, mean_ci

NOTE = "proofs_notes/discriminator.md"
PAPER = "discriminator"
T = 8.0
#: two-sided normal quantile of the ensemble level (z = 4.71)
Z_ENS = NormalDist().inv_cdf(0.5 + ENSEMBLE_LEVEL / 2)

DATA, MODEL = D.setting_g()
# printed values of the note (reference note on 2503.16117, section 5)
NOTE_BASE = 0.11668
NOTE_SDE_W = {0.5: 0.0290, 1.0: 0.0, 1.5: 0.0277, 2.0: 0.1064, 3.0: 0.3865}
NOTE_ODE_W = {0.5: 0.031, 2.0: 0.125, 3.0: 0.479}
NOTE_RIPPLE = {(0.05, 1.0): (0.0025, 0.072), (0.1, 1.0): (0.0099, 0.279), (0.1, 2.0): (0.0118, 2.05),
               (0.1, 5.0): (0.0073, None), (0.1, 20.0): (0.0098, None), (0.1, 40.0): (0.0101, None),
               (0.3, 20.0): (0.097, None)}

#: control: the reverse SDE run with the PF-ODE's coefficient, drift x + s instead of x + 2 s (g^2/2 for g^2)
SDE_DRIFT_HALF = "reverse-SDE drift x + s instead of x + 2s (the PF-ODE's g^2/2 where g^2 belongs)"


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


def _drift_half(field):
    """The SDE_DRIFT_HALF bug: the score handed to the SDE solver (drift x + 2 s) halved, i.e. drift x + s."""
    if isinstance(field, D.FeatureField):
        return field.scaled(0.5)

    def f(z, t):
        s, ds = field(z, t)
        return 0.5 * s, 0.5 * ds
    return f


def _bayes_sde(w: float, eps: float, omega: float, dx: float, dtau: float) -> np.ndarray:
    """SDE endpoint density (on ``Grid1D(dx=dx)``, step ``dtau``) of setting G refined by w (grad d* + eps omega
    cos(omega x)), started from the model's terminal law; memoised on the exact inputs (read-only), so the stated
    run, its error estimate and the controls that keep the field share one Fokker-Planck solve (without a ripple,
    one for every omega: bayes_field ignores omega then)."""
    return _bayes_sde_solve(w, eps, omega if eps != 0.0 else 0.0, dx, dtau)


@functools.lru_cache(maxsize=64)
def _bayes_sde_solve(w: float, eps: float, omega: float, dx: float, dtau: float) -> np.ndarray:
    q = D.sde_endpoint(D.bayes_field(DATA, MODEL, w=w, eps=eps, omega=omega), MODEL, T, D.Grid1D(dx=dx), dtau)
    q.flags.writeable = False
    return q


def _bayes_sde_kl(w: float, eps: float, omega: float, dx: float, dtau: float) -> float:
    """KL(p_0 || :func:`_bayes_sde`) on its grid (as :func:`_sde_kl`)."""
    g = D.Grid1D(dx=dx)
    return D.endpoint_kl(DATA.density(g.x, 0.0), _bayes_sde(w, eps, omega, dx, dtau), g.dx)


def _bayes_ode(w: float, eps: float, omega: float, dx: float, dtau: float) -> D.OdeResult:
    """PF-ODE endpoint (:func:`D.ode_endpoint` on ``Grid1D(dx=dx)``, step ``dtau``) of the field of
    :func:`_bayes_sde`; memoised on the exact inputs like it."""
    return _bayes_ode_solve(w, eps, omega if eps != 0.0 else 0.0, dx, dtau)


@functools.lru_cache(maxsize=64)
def _bayes_ode_solve(w: float, eps: float, omega: float, dx: float, dtau: float) -> D.OdeResult:
    return D.ode_endpoint(D.bayes_field(DATA, MODEL, w=w, eps=eps, omega=omega), MODEL, T, D.Grid1D(dx=dx), dtau)


@functools.lru_cache(maxsize=64)
def _endpoint(sampler: str, w: float, eps: float, omega: float, dx: float, dtau: float):
    """(KL(p0 || endpoint), err) of setting G refined by w (grad d* + eps omega cos(omega x)): the KL at (dx, dtau)
    and err = its change at (2 dx, 2 dtau), as :func:`D.kl_with_error` (the same grids and steps), from the memoised
    one-resolution solves :func:`_bayes_sde`, :func:`_bayes_ode`."""
    if sampler == "sde":
        fine, coarse = (_bayes_sde_kl(w, eps, omega, f * dx, f * dtau) for f in (1, 2))
    else:
        fine, coarse = (_bayes_ode(w, eps, omega, f * dx, f * dtau).kl_from(DATA) for f in (1, 2))
    return fine, abs(fine - coarse)


def _sde_kl(field, start, dx: float, dtau: float, data=None) -> float:
    """One-resolution SDE endpoint KL (control runs: their bugs move the KL by O(1), far beyond any error)."""
    g = D.Grid1D(dx=dx)
    data = DATA if data is None else data
    return D.endpoint_kl(data.density(g.x, 0.0), D.sde_endpoint(field, start, T, g, dtau), g.dx)


@functools.lru_cache(maxsize=8)
def _grid_quantities(dx: float, reversed_kl: bool = False):
    """(KL(p_0||p_theta,0), KL(p_T||p_theta,T)) on a grid; ``reversed_kl``: the arguments swapped (a control)."""
    g = D.Grid1D(dx=dx)
    x = g.x
    a, b = (MODEL, DATA) if reversed_kl else (DATA, MODEL)
    base = kl_cells(a.density(x, 0.0), b.density(x, 0.0), g.dx)
    kl_T = kl_cells(a.density(x, T), b.density(x, T), g.dx)
    return base, kl_T


@functools.lru_cache(maxsize=4)
def _fisher_integral(n: int):
    r""":math:`\int_0^T E_{p_t}|s_p - s_q|^2 dt` with n and n/2 Gauss nodes per piece (value, error estimate)."""
    zero = lambda x, t: 0.0 * x  # noqa: E731
    a = D.path_kl(DATA, MODEL, zero, T, n=n)
    b = D.path_kl(DATA, MODEL, zero, T, n=n // 2)
    return a, abs(a - b)


def _kl_measure(name, value, err, predicted, extra=None, kind="equal", extra_tol=0.0, why="", counted=True):
    return Measurement(name=name, measured=value, predicted=predicted, kind=kind, tol=err + extra_tol,
                       reason=why or "discretisation error estimated by doubling dx and dtau", extra=extra or {},
                       counted=counted)


# ----------------------------------------------------------------------------------------------
# C1
# ----------------------------------------------------------------------------------------------
@claim(
    id="discriminator.bayes_exact_correction",
    paper=PAPER,
    statement="C1: the Bayes logit d* = log p_t - log p_theta,t makes s_theta + grad d* the data score; refined "
              "SDE and PF-ODE from the model's terminal law end within KL(p_T||p_theta,T) of the data "
              "(DG Theorem 1 logic, secondary source); the unrefined SDE reproduces the model",
    note=f"{NOTE}#c1-bayes-discriminator",
    provenance="reconstructed",
    quick={"dx": 0.02, "dtau": 8e-3, "times": [0.0, 0.01, 0.5, 2.0]},
    full={"dx": 0.005, "dtau": 2e-3, "times": [0.0, 1e-3, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0]},
    controls={"model_score_dropped": "the refined score is grad d* alone (s_theta + grad d* written as grad d*)",
              "sde_drift_half": SDE_DRIFT_HALF},
)
def bayes_exact_correction(ctx: Context) -> list[Measurement]:
    p = ctx.params
    dropped = ctx.bug("model_score_dropped")
    x = np.linspace(-6, 6, 241)
    h = 1e-3
    worst, ratios = 0.0, []
    for t in p["times"]:
        dstar = lambda z: DATA.log_density(z, t) - MODEL.log_density(z, t)  # noqa: E731
        d1 = (dstar(x + h) - dstar(x - h)) / (2 * h)
        d2 = (dstar(x + h / 2) - dstar(x - h / 2)) / h
        grad = (4 * d2 - d1) / 3
        # a-posteriori Richardson error |D_h/2 - D_h| plus rounding allowances (8u(|d*|+10)/h for the differences
        # of d*, 32u of the scores): see the note, section c1-bayes-discriminator
        fd_err = np.abs(d2 - d1) + 8 * UNIT_ROUNDOFF * (np.abs(dstar(x)) + 10) / h
        base = 0.0 if dropped else MODEL.score(x, t)
        resid = np.abs(base + grad - DATA.score(x, t))
        tol = fd_err + 32 * UNIT_ROUNDOFF * (np.abs(DATA.score(x, t)) + np.abs(MODEL.score(x, t)))
        ratios.append(float(np.max(resid / tol)))
        worst = max(worst, ratios[-1])
    out = [Measurement(name="max |s_theta + grad d* - grad log p_t| / tol", measured=worst, predicted=1.0, kind="le",
                       reason="Richardson central difference of d* (h=1e-3): a-posteriori error |D_h - D_h/2| plus "
                              "8u(|d*|+10)/h rounding, plus 32u of the scores", extra={"drift_tol": 1.0})]
    _, kl_T = _grid_quantities(p["dx"])
    if dropped:
        def field(z, t):
            sp_, dsp = DATA.score_and_derivative(z, t)
            sq, dsq = MODEL.score_and_derivative(z, t)
            return sp_ - sq, dsp - dsq
        g = D.Grid1D(dx=p["dx"])
        sde = (_sde_kl(field, MODEL, p["dx"], p["dtau"]), 0.0)
        ode = (D.ode_endpoint(field, MODEL, T, g, p["dtau"]).kl_from(DATA), 0.0)
    elif ctx.bug("sde_drift_half"):
        sde = (_sde_kl(_drift_half(D.bayes_field(DATA, MODEL, w=1.0)), MODEL, p["dx"], p["dtau"]), 0.0)
        ode = _endpoint("ode", 1.0, 0.0, 0.0, p["dx"], p["dtau"])
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
    # without correction the SDE reproduces the model: KL(model || uncorrected SDE endpoint) ~ 0
    g = D.Grid1D(dx=p["dx"])
    if ctx.bug("sde_drift_half"):
        q = D.sde_endpoint(_drift_half(D.bayes_field(DATA, MODEL, w=0.0)), MODEL, T, g, p["dtau"])
    else:  # the fine solve of base0 (memoised)
        q = _bayes_sde(0.0, 0.0, 0.0, p["dx"], p["dtau"])
    k0 = D.endpoint_kl(MODEL.density(g.x, 0.0), q, g.dx)
    out.append(Measurement(name="KL(model || uncorrected SDE endpoint)", measured=k0, predicted=0.0, kind="le",
                           tol=base0[1] + 1e-8, reason="same scheme's refinement error at w=0 + 1e-8",
                           extra={"note": 3.4e-10}))
    pl = ctx.plot
    pl.panel("identity", title="score identity: worst residual / tolerance over x", xlabel="t",
             ylabel=r"max$_x$ |s_theta + grad d* - grad log p_t| / tol", yscale="log")
    pl.measured("identity", p["times"], ratios)
    pl.bound("identity", *level(p["times"], 1.0), label="tolerance")
    pl.panel("kl", title=r"endpoint KLs vs KL$_T$", xlabel="0: refined SDE, 1: refined PF-ODE, 2: unrefined SDE",
             ylabel="KL (0, 1: from data; 2: from model)", yscale="log")
    pl.measured("kl", [0, 1, 2], [sde[0], ode[0], k0], lo=[sde[0] - sde[1], ode[0] - ode[1], k0],
                hi=[sde[0] + sde[1], ode[0] + ode[1], k0])
    pl.bound("kl", [-0.4, 0.4], [kl_T + out[1].tol] * 2, label=r"KL$_T$ (+ tol): SDE bound")
    pl.predicted("kl", [0.6, 1.4], [kl_T] * 2, label=r"KL$_T$: PF-ODE prediction")
    pl.bound("kl", [1.6, 2.4], [out[3].tol] * 2, label="tolerance of KL = 0")
    pl.panel("unrefined", title="unrefined SDE endpoint reproduces the model", xlabel="x", ylabel="density")
    k = F.thin(g.x.size)
    pl.reference("unrefined", g.x[k], DATA.density(g.x[k], 0.0), label="data p_0")
    pl.predicted("unrefined", g.x[k], MODEL.density(g.x[k], 0.0), label=r"model p_theta,0")
    pl.measured("unrefined", g.x[k], q[k], label="unrefined SDE endpoint", style="line")
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
    controls={"alpha_dropped": "the conditional target drops alpha_t: -(x_t - x_0)/sigma_t^2",
              "model_weighted": "the quadrature expectations E_{p_t}[.] taken under the model marginal p_theta,t"},
)
def dsm_esm_constant(ctx: Context) -> list[Measurement]:
    p = ctx.params
    t = p["t"]
    a, s2 = alpha_sigma2(t)
    x0 = DATA.sample(p["n"], ctx.rng)
    z = ctx.rng.standard_normal(p["n"])
    xt = a * x0 + math.sqrt(s2) * z
    target = -(xt - (x0 if ctx.bug("alpha_dropped") else a * x0)) / s2
    sp_, sq = DATA.score(xt, t), MODEL.score(xt, t)
    corrections = {"c=0": lambda z_: 0 * z_, "c=grad d*": lambda z_: DATA.score(z_, t) - MODEL.score(z_, t),
                   "c=grad d*+0.5cos5x": lambda z_: DATA.score(z_, t) - MODEL.score(z_, t) + 0.5 * np.cos(5 * z_)}
    xs = np.linspace(-12, 12, 24001)
    weight = (MODEL if ctx.bug("model_weighted") else DATA).density(xs, t) * (xs[1] - xs[0])
    J = float(np.sum(weight * DATA.score(xs, t) ** 2))
    C = 1 / s2 - J
    why_mc = f"Monte Carlo half-width z*se at the ensemble level (z={Z_ENS:.2f}) of the paired mean"
    out, diffs = [], {}
    for name, c in corrections.items():
        v = sq + c(xt)
        dsm = (target - v) ** 2
        esm = (sp_ - v) ** 2
        diffs[name] = dsm - esm
        ci = mean_ci(diffs[name], level=ENSEMBLE_LEVEL, method="normal")
        out.append(Measurement(name=f"C_t estimate, {name}", measured=ci.mean, predicted=C, kind="equal",
                               tol=Z_ENS * ci.se, reason=why_mc,
                               extra={"note_C": [0.8350, 0.8347, 0.8348], "fisher_form": float(np.mean(esm))}))
    d = diffs["c=grad d*+0.5cos5x"] - diffs["c=0"]
    ci = mean_ci(d, level=ENSEMBLE_LEVEL, method="normal")
    out.append(Measurement(name="C_t(ripple) - C_t(0), paired", measured=ci.mean, predicted=0.0, kind="equal",
                           tol=Z_ENS * ci.se, reason=why_mc))
    fisher = {"c=0": 0.0747, "c=grad d*": 0.0, "c=grad d*+0.5cos5x": 0.1250}
    for name, c in corrections.items():
        r = DATA.score(xs, t) - MODEL.score(xs, t) - c(xs)
        val = float(np.sum(weight * r * r))
        # c=grad d*: r = (a - b) - (a - b) is exactly 0 whatever the weight; the ripple: r = -0.5 cos 5x, and
        # 0.25 E cos^2(5x) = 1/8 - O(e^{-50 v_t}) under any law of variance v_t >= 0.25: neither can be moved by a bug
        trivial = name != "c=0"
        out.append(Measurement(name=f"Fisher form {name} (quadrature) vs note", measured=val, predicted=fisher[name],
                               kind="equal", tol=5e-5 if fisher[name] else 1e-12,
                               reason="the note prints 4 decimals (half a unit: 5e-5); trapezoid on dx=0.001 is exact "
                                      "to ~1e-12 here" + ("; informational: the value does not depend on the law "
                                                          "(see the code comment)" if trivial else ""),
                               counted=not trivial))
    m = out[:4]  # the three C_t estimates and the paired difference
    F.agreement(ctx.plot, "ct", [x.measured - x.predicted for x in m], [x.tol for x in m],
                title=r"$C_t$ = 1/sigma_t^2 - J(p_t) for every correction c",
                xlabel="0: c=0, 1: c=grad d*, 2: + ripple, 3: paired ripple - c=0",
                ylabel="|MC estimate - C_t|")
    f_ = out[4:]
    ctx.plot.panel("fisher", title="Fisher form E|grad log p_t - s_theta - c|^2 vs note", xlabel=
                   "0: c=0, 1: c=grad d*, 2: c=grad d*+0.5cos5x", ylabel="Fisher form")
    ctx.plot.measured("fisher", [0, 1, 2], [x.measured for x in f_], label="quadrature")
    ctx.plot.reference("fisher", [0, 1, 2], [x.predicted for x in f_], label="note values", style="points")
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
    controls={"girsanov_g2": "the Fisher integral weighted by g^2 = 2 instead of g^2/2 = 1",
              "kl_reversed": "the grid KLs with their arguments swapped: KL(p_theta,t || p_t)"},
)
def base_kl_identity(ctx: Context) -> list[Measurement]:
    base, kl_T = _grid_quantities(0.001, ctx.bug("kl_reversed"))
    rhs, err = _fisher_integral(ctx.params["n"])
    _, kl_T_true = _grid_quantities(0.001)
    fisher = rhs - kl_T_true
    rhs = kl_T + (2.0 if ctx.bug("girsanov_g2") else 1.0) * fisher
    pl = ctx.plot
    pl.panel("terms", title=r"KL$_0$ against KL$_T$ + Fisher integral", xlabel=r"0: KL$_0$, 1: KL$_T$ + int (g^2/2) "
             r"E|grad log p_t - s_theta|^2", ylabel="KL")
    pl.measured("terms", [0, 1], [base, rhs])
    pl.predicted("terms", [-0.2, 1.2], [NOTE_BASE] * 2, label=f"note {NOTE_BASE}")
    out = [
        Measurement(name="KL_0 - [KL_T + Fisher integral]", measured=base - rhs, predicted=0.0, kind="equal",
                    tol=2 * err + 1e-10, reason="twice the change of the composite Gauss-Legendre rule from n/2 to n "
                                                "nodes per piece, + 1e-10 for the x-trapezoid (dx=0.001, spectral)",
                    extra={"KL_0": base, "rhs": rhs}),
        Measurement(name="base KL vs note 0.11668", measured=base, predicted=NOTE_BASE, kind="equal",
                    tol=_half_unit(NOTE_BASE), reason="note prints 5 decimals"),
    ]
    F.agreement(pl, "agree", [m.measured - m.predicted for m in out], [m.tol for m in out],
                title="identity and note value", xlabel=r"0: KL$_0$ - rhs, 1: KL$_0$ - note")
    return out


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
    controls={"girsanov_weight_half": "the Girsanov weight g^2/2 = 1 of the path KL taken as 1/2 (g = 1 for sqrt 2)",
              "cfg_convention": "the refined score s_theta + (w - 1) grad d* (w - 1 where w belongs)"},
)
def guidance_weight(ctx: Context) -> list[Measurement]:
    p = ctx.params
    I, I_err = _fisher_integral(24)
    _, kl_T = _grid_quantities(0.001)
    I -= kl_T
    factor = 0.5 if ctx.bug("girsanov_weight_half") else 1.0
    shift = 1.0 if ctx.bug("cfg_convention") else 0.0
    out, rows, ratios, errs = [], [], [], []
    g = D.Grid1D(dx=p["dx"])
    for w in p["weights"]:
        if shift:  # control run: one resolution (the bug moves the KLs far beyond the refinement error)
            kl, err = _bayes_sde_kl(w - shift, 0.0, 0.0, p["dx"], p["dtau"]), 0.0
        else:
            kl, err = _endpoint("sde", w, 0.0, 0.0, p["dx"], p["dtau"])
        bound = kl_T + factor * (1 - w) ** 2 * I
        out.append(_kl_measure(f"SDE endpoint KL w={w} <= path KL", kl, err + I_err, bound, kind="le"))
        ratios.append(kl / (bound + out[-1].tol))
        errs.append(err)
        if w in NOTE_SDE_W and NOTE_SDE_W[w] > 0:
            out.append(_kl_measure(f"SDE endpoint KL w={w} vs note", kl, err, NOTE_SDE_W[w],
                                   extra_tol=_note_unit(NOTE_SDE_W[w]), why=NOTE_WHY))
        rows.append((w, kl, bound))
    ode_rows = []
    for w in p["ode_weights"]:
        if shift:
            kl, err = _bayes_ode(w - shift, 0.0, 0.0, p["dx"], p["dtau"]).kl_from(DATA), 0.0
        else:
            kl, err = _endpoint("ode", w, 0.0, 0.0, p["dx"], p["dtau"])
        ode_rows.append((w, kl, err))
        if w == 0.5:
            out.append(_kl_measure("PF-ODE endpoint KL w=0.5 vs note", kl, err, NOTE_ODE_W[0.5],
                                   extra_tol=_note_unit(NOTE_ODE_W[0.5]), why=NOTE_WHY))
        else:
            out.append(Measurement(name=f"PF-ODE endpoint KL w={w} (recorded; no Girsanov bound for the ODE)",
                                   measured=kl, kind="ge", predicted=0.0, tol=err, counted=False,
                                   reason="informational: the converged PF-ODE value (see the note's table); "
                                          "KL >= 0 cannot fail",
                                   extra={"note": NOTE_ODE_W.get(w), "path_bound": kl_T + (1 - w) ** 2 * I,
                                          "exceeds_path_bound": bool(kl > kl_T + (1 - w) ** 2 * I)}))
    pl = ctx.plot
    pl.panel("kl", title="endpoint KL vs guidance weight", xlabel="guidance weight w", ylabel="KL(data || refined)")
    ws = np.linspace(0, 3.2, 65)
    pl.bound("kl", ws, kl_T + factor * (1 - ws) ** 2 * I, label=r"path KL: KL$_T$ + (1-w)$^2$ int")
    sde_kl, ode_kl = np.array([r[1] for r in rows]), np.array([r[1] for r in ode_rows])
    pl.measured("kl", [r[0] for r in rows], sde_kl, lo=sde_kl - errs, hi=sde_kl + errs, label="SDE endpoint")
    pl.measured("kl", [r[0] for r in ode_rows], ode_kl, label="PF-ODE endpoint")
    notes = [(w, v) for w, v in NOTE_SDE_W.items() if w in p["weights"]]
    notes += [(w, v) for w, v in NOTE_ODE_W.items() if w in p["ode_weights"]]
    pl.reference("kl", [w for w, _ in notes], [v for _, v in notes], label="note values", style="points")
    pl.panel("ratio", title="SDE endpoint KL / (path KL + tol)", xlabel="guidance weight w", ylabel="ratio",
             yscale="log")
    pl.measured("ratio", [r[0] for r in rows], ratios, style="line")
    pl.bound("ratio", *level([0.0, 3.2], 1.0), label="Girsanov bound")
    return out


# ----------------------------------------------------------------------------------------------
# C5
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _ripple_path_kl(eps: float, om: float, n: int, dx: float, chain: float = 0.0, dsign: float = 1.0) -> float:
    """Path KL of d = dsign d* + eps sin(omega x) (n Gauss nodes per time piece; x-trapezoid with step dx).
    ``chain``: the factor written for the chain rule d/dx sin(omega x) = omega cos(omega x); 0 means omega (right),
    1 the chain_rule_omega_dropped control."""
    f = om if chain == 0.0 else chain
    return D.path_kl_from(_ripple_path_terms(n, dx), lambda z, t: dsign * (DATA.score(z, t) - MODEL.score(z, t))
                          + eps * f * np.cos(om * z))


@functools.lru_cache(maxsize=8)
def _ripple_path_terms(n: int, dx: float) -> D.PathTerms:
    """The correction-free parts of :func:`_ripple_path_kl`'s path KL (n Gauss nodes per time piece, x-grid of step
    dx on [-12, 12]), memoised: every (eps, omega) pair and every control shares them."""
    return D.path_terms(DATA, MODEL, T, n=n, x=np.arange(-12.0, 12.0 + dx / 2, dx))


def _ripple_path_prediction(eps: float, om: float, n: int) -> float:
    r"""KL_T + eps^2 omega^2 int_0^T E_{p_t} cos^2(omega x) dt in closed form per t (same time nodes as the path KL):
    :math:`E\cos^2 = \tfrac12 + \tfrac12\sum_k\pi_k\cos(2\omega m_k e^{-t})e^{-2\omega^2 v_k(t)}`."""
    ts, ws = D.time_nodes(T, n=n)
    total = 0.0
    for ti, wi in zip(ts, ws):
        pi, m, v = DATA.marginal(float(ti))
        total += wi * (0.5 + 0.5 * float(np.sum(pi * np.cos(2 * om * m) * np.exp(-2 * om * om * v))))
    _, kl_T = _grid_quantities(0.001)
    return kl_T + eps * eps * om * om * total


def _ce_gap_ripple(eps: float, om: float, t: float, swapped: bool) -> float:
    """CE gap of d0 + eps sin(omega x) against d0, d0 = d* (or -d*, the logit of the other class, in a control)."""
    sgn = -1.0 if swapped else 1.0
    d0 = lambda z: sgn * (DATA.log_density(z, t) - MODEL.log_density(z, t))  # noqa: E731
    return (D.ce_value(DATA, MODEL, t, lambda z: d0(z) + eps * np.sin(om * z))
            - D.ce_value(DATA, MODEL, t, d0))


def _ce_gap_second_order(eps: float, om: float, t: float) -> float:
    r""":math:`\tfrac{\varepsilon^2}{2}\int\frac{p_t\hat p_t}{p_t+\hat p_t}\sin^2\omega x\,dx` (phi''(d*) = p q/(p+q))."""
    xs = np.linspace(-12, 12, 24001)
    p_, q_ = DATA.density(xs, t), MODEL.density(xs, t)
    return 0.5 * eps * eps * float(np.sum(p_ * q_ / (p_ + q_) * np.sin(om * xs) ** 2) * (xs[1] - xs[0]))


def _swapped_field(eps: float, om: float) -> D.BayesField:
    """Refined score of d = -d* + eps sin(omega x) (the classes_swapped control): s_theta - (s_p - s_theta)
    + eps omega cos(omega x), a compiled :class:`D.BayesField` form."""
    return D.bayes_field(DATA, MODEL, 1.0, eps, om, form="classes_swapped")


def _omega_dropped_field(eps: float, om: float) -> D.BayesField:
    """Refined score of d* + eps sin(omega x) with the chain-rule factor omega lost (a control): s_p
    + eps cos(omega x), a compiled :class:`D.BayesField` form."""
    return D.bayes_field(DATA, MODEL, 1.0, eps, om, form="chain_rule_omega_dropped")


def _control_field(eps: float, om: float, swapped: bool, dropped: bool):
    """The guidance field a control's sampler uses (None in the stated run and in ripple_not_in_sampler: a Bayes
    field, solved by the memoised :func:`_bayes_sde`, :func:`_bayes_ode`)."""
    if swapped:
        return _swapped_field(eps, om)
    if dropped:
        return _omega_dropped_field(eps, om)
    return None


def _ripple_figure(pl, gap_rows, taylor, path_pts, sde, ode, collapse, base, pairs) -> None:
    """Science figure of C5: CE gap, path KL, endpoint KLs and PF-ODE collapse against omega.

    Parameters
    ----------
    pl : PlotRecorder
        The claim's ``ctx.plot``.
    gap_rows, taylor : list
        The CE-gap rows of the claim and each row's |gap - second order| / remainder bound.
    path_pts : list of (omega, path/scale, err/scale, closed form/scale)
        The path-KL checks.
    sde, ode : list
        (omega, KL, err) of the SDE endpoints; (omega, KL, err, note) of the PF-ODE endpoints (omega <= 2).
    collapse : list of (omega, grid mass)
        The high-omega PF-ODE endpoints.
    base : float
        The unrefined KL.
    pairs : list
        The (eps, omega) pairs of the SDE checks (for the note's values).
    """
    q = [r["eps"] ** 2 / 4 for r in gap_rows]
    pl.panel("gap", title="CE gap vs its second-order form, (eps, omega, t) rows", xlabel="(eps^2/2) int pq/(p+q) "
             "sin^2 / (eps^2/4)", ylabel="CE gap / (eps^2/4)")
    second = [r["second_order"] / b for r, b in zip(gap_rows, q)]
    pl.measured("gap", second, [r["gap"] / b for r, b in zip(gap_rows, q)])
    pl.predicted("gap", *[[min(second), max(second)]] * 2, label="second order: gap = form")
    pl.bound("gap", *level(second, 1.0), label="CE bound eps^2/4")
    F.agreement(pl, "taylor", taylor, [1.0] * len(taylor), x=[r["t"] for r in gap_rows], xscale="log",
                title="Taylor remainder: |CE gap - second order| / bound", xlabel="t (all (eps, omega) rows)",
                ylabel="|CE gap - second order| / (eps^3/(18 sqrt 3))")
    path_pts = sorted(path_pts)
    pl.panel("path", title="Gauss-Legendre path KL / (eps^2 omega^2 T/2)", xlabel="omega", ylabel="ratio",
             xscale="log")
    pl.measured("path", [r[0] for r in path_pts], [r[1] for r in path_pts], lo=[r[1] - r[2] for r in path_pts],
                hi=[r[1] + r[2] for r in path_pts])
    pl.predicted("path", [r[0] for r in path_pts], [r[3] for r in path_pts], label="closed form")
    pl.reference("path", *level([r[0] for r in path_pts], 1.0), label="omega -> infinity")
    notes = {"sde": [(om, NOTE_RIPPLE[(eps, om)][0]) for eps, om in pairs if (eps, om) in NOTE_RIPPLE],
             "ode": [(r[0], r[3]) for r in ode]}
    for key, rs, name, where in (("sde", sde, "SDE", "below"), ("ode", ode, "PF-ODE (omega <= 2)", "above")):
        pl.panel(key, title=f"{name} endpoint KL(data || refined)", xlabel="omega", ylabel="KL", xscale="log",
                 yscale="log")
        pl.measured(key, [r[0] for r in rs], [r[1] for r in rs], lo=[r[1] - r[2] for r in rs],
                    hi=[r[1] + r[2] for r in rs])
        pl.reference(key, [n[0] for n in notes[key]], [n[1] for n in notes[key]], label="note values",
                     style="points")
        pl.reference(key, *level([r[0] for r in rs] or [1.0], base), label=f"unrefined (predicted: {where})")
    pl.panel("collapse", title="PF-ODE endpoint at high omega: grid mass", xlabel="omega", ylabel="grid mass",
             xscale="log", yscale="log")
    pl.measured("collapse", [r[0] for r in collapse], [r[1] for r in collapse])
    pl.bound("collapse", *level([r[0] for r in collapse] or [1.0], 0.5), label="collapse: mass < 0.5")


@claim(
    id="discriminator.ce_gradient_counterexample",
    paper=PAPER,
    statement="C5 (Theorem 4.1 type, secondary source): d = d* + eps sin(omega x) has CE gap = (eps^2/2) int pq/(p+q) "
              "sin^2(omega x) + O(eps^3) <= eps^2/4 at every t while the path KL is KL_T + eps^2 omega^2 int E cos^2 "
              "-> eps^2 omega^2 T/2; the SDE endpoint stays O(eps^2) but the PF-ODE endpoint becomes worse than the "
              "unrefined model (eps=0.1, omega=1) and collapses at high omega",
    note=f"{NOTE}#c5-high-frequency",
    provenance="reconstructed",
    expect="fails-as-predicted",
    quick={"dx": 0.02, "dtau": 8e-3, "pairs": [[0.1, 1.0], [0.1, 20.0]], "ode_pairs": [[0.1, 1.0], [0.1, 20.0]],
           "times": [0.01, 0.5, 2.0]},
    full={"dx": 0.005, "dtau": 2e-3, "pairs": [[0.05, 1.0], [0.1, 1.0], [0.1, 2.0], [0.1, 5.0], [0.1, 20.0],
                                               [0.1, 40.0], [0.3, 20.0]],
          "ode_pairs": [[0.05, 1.0], [0.1, 1.0], [0.1, 2.0], [0.1, 5.0], [0.1, 20.0]], "times": [0.01, 0.5, 2.0]},
    reduced={"dx": 0.01, "dtau": 4e-3},
    reduced_reason="every (eps, omega) pair of the full profile on a 2x coarser x and tau grid (the quadrature "
                   "errors are estimated in the claim, so the checks stay derived)",
    controls={"classes_swapped": "the Bayes logit of the other class, d* = log p_theta,t - log p_t (sign convention)",
              "chain_rule_omega_dropped": "grad of eps sin(omega x) written eps cos(omega x) (chain-rule omega lost)",
              "ripple_not_in_sampler": "the samplers built from the clean d* while the CE sees d* + ripple"},
)
def ce_gradient_counterexample(ctx: Context) -> list[Measurement]:
    p = ctx.params
    swapped = ctx.bug("classes_swapped")
    dropped = ctx.bug("chain_rule_omega_dropped")
    no_ripple = ctx.bug("ripple_not_in_sampler")
    base, kl_T = _grid_quantities(0.001)
    out = []
    kls, path_pts, ode_pts, collapse = [], [], [], []
    worst_gap, gap_rows, taylor = -np.inf, [], []
    for eps, om in p["pairs"]:
        for t in p["times"]:
            gap = _ce_gap_ripple(eps, om, t, swapped)
            pred = _ce_gap_second_order(eps, om, t)
            tol = eps ** 3 / (18 * math.sqrt(3)) + 1e-9
            taylor.append(abs(gap - pred) / tol)
            worst_gap = max(worst_gap, taylor[-1])
            gap_rows.append({"eps": eps, "omega": om, "t": t, "gap": gap, "second_order": pred, "bound": eps ** 2 / 4})
    out.append(Measurement(
        name="max over (eps, omega, t) |CE gap - (eps^2/2) int pq/(p+q) sin^2| / (eps^3/(18 sqrt 3))",
        measured=worst_gap, predicted=1.0, kind="le", tol=0.0,
        reason="third-order Taylor remainder of phi(d) = p softplus(-d) + q softplus(d): |phi^(3)| <= (p+q)/(6 sqrt 3) "
               "and int (p+q) = 2 (note #c5-high-frequency); + 1e-9 for the trapezoid", extra={"rows": gap_rows}))
    out.append(Measurement(name="max CE gap / (eps^2/4) (the bound)", measured=max(r["gap"] / r["bound"] for r in gap_rows),
                           predicted=1.0, kind="le", tol=0.0, counted=False,
                           reason="informational: follows from the counted second-order form since pq/(p+q) <= (p+q)/4"))
    for eps, om in p["pairs"]:
        n_t, dxq = 12, 0.002
        cfg = (1.0 if dropped else 0.0, -1.0 if swapped else 1.0)
        path = _ripple_path_kl(eps, om, n_t, dxq, *cfg)
        # quadrature error of the stated configuration (a control run reuses it: its bug changes the integrand's
        # amplitude, not its smoothness)
        ok = _ripple_path_kl(eps, om, n_t, dxq)
        path_err = abs(ok - _ripple_path_kl(eps, om, n_t, 2 * dxq)) + 4 * 12001 * UNIT_ROUNDOFF * max(path, ok)
        scale = eps ** 2 * om ** 2 * T / 2
        pred = _ripple_path_prediction(eps, om, n_t)
        out.append(Measurement(
            name=f"path KL / (eps^2 omega^2 T/2), eps={eps} omega={om}", measured=path / scale, predicted=pred / scale,
            kind="equal", tol=path_err / scale,
            reason="closed form of E_{p_t} cos^2(omega x) for a Gaussian mixture on the same time nodes; tolerance = "
                   "x-trapezoid change from dx=0.004 to 0.002 + 4 n u rounding of the 12001-term sums",
            extra={"path_kl": path, "limit_omega_to_inf": 1.0, "ce_bound": eps ** 2 / 4}))
        path_pts.append((om, path / scale, path_err / scale, pred / scale))
        fld = _control_field(eps, om, swapped, dropped)
        if no_ripple:  # the clean d*: one solve shared by every pair
            kl, err = _bayes_sde_kl(1.0, 0.0, 0.0, p["dx"], p["dtau"]), 0.0
        elif fld is None:
            kl, err = _endpoint("sde", 1.0, eps, om, p["dx"], p["dtau"])
        else:  # control runs: one resolution (their bugs move the KL far beyond the refinement error)
            kl, err = _sde_kl(fld, MODEL, p["dx"], p["dtau"]), 0.0
        kls.append((om, kl, err))
        out.append(_kl_measure(f"SDE endpoint eps={eps} omega={om} < base", kl, err, base, kind="le"))
        note = NOTE_RIPPLE.get((eps, om))
        if note:
            out.append(_kl_measure(f"SDE endpoint eps={eps} omega={om} vs note", kl, err, note[0],
                                   extra_tol=_note_unit(note[0]), why=NOTE_WHY))
    for eps, om in p["ode_pairs"]:
        fld = _control_field(eps, om, swapped, dropped)
        if om <= 2:
            if no_ripple:
                kl, err = _bayes_ode(1.0, 0.0, 0.0, p["dx"], p["dtau"]).kl_from(DATA), 0.0
            elif fld is None:
                kl, err = _endpoint("ode", 1.0, eps, om, p["dx"], p["dtau"])
            else:
                kl, err = D.ode_endpoint(fld, MODEL, T, D.Grid1D(dx=p["dx"]), p["dtau"]).kl_from(DATA), 0.0
            note = NOTE_RIPPLE[(eps, om)][1]
            if eps >= 0.1:  # the note's predicted failure: worse than the unrefined model
                out.append(_kl_measure(f"PF-ODE endpoint eps={eps} omega={om} > base (predicted failure)", kl, err,
                                       base, kind="ge", extra={"note": note}))
            out.append(_kl_measure(f"PF-ODE endpoint eps={eps} omega={om} vs note", kl, err, note,
                                   extra_tol=_note_unit(note), why=NOTE_WHY))
            ode_pts.append((om, kl, err, note))
        else:
            if fld is None:  # the stated ripple, or the clean d* (ripple_not_in_sampler): memoised
                res = _bayes_ode(1.0, 0.0 if no_ripple else eps, om, p["dx"], p["dtau"])
            else:
                res = D.ode_endpoint(fld, MODEL, T, D.Grid1D(dx=p["dx"]), p["dtau"])
            out.append(Measurement(name=f"PF-ODE collapse eps={eps} omega={om} (grid mass < 0.5)",
                                   measured=float(res.mass < 0.5), kind="true",
                                   reason="near-atomic endpoint: its atoms fall between grid points, so the grid "
                                          "mass of the exact density drops far below 1",
                                   extra={"mass": res.mass, "max_log_density": res.max_log_density}))
            collapse.append((om, res.mass))
    _ripple_figure(ctx.plot, gap_rows, taylor, path_pts, kls, ode_pts, collapse, base, p["pairs"])
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


@functools.lru_cache(maxsize=16)
def _pair(name: str):
    if name == "G":
        return DATA, MODEL
    (m0, v0), (m1, v1), _ = GAUSS_CASES[name]
    return D.Mixture1D([1], [m0], [v0]), D.Mixture1D([1], [m1], [v1])


@functools.lru_cache(maxsize=32)
def _beta(name: str, obj: str, n_spline: int):
    """Optimal linear-logit slope beta(t) (cubic spline on n_spline times) for case ``name`` ("G" = setting G)."""
    data, model = _pair(name)
    return D.linear_beta_spline(data, model, obj, T, n_spline)


def _beta_mse_gauss(name: str, t: float) -> float:
    """MSE-optimal slope of a Gaussian case in closed form: E_{p_t}[-(x - mu_t)/v_t + (x - mu_theta,t)/v_theta,t]
    = (mu_t - mu_theta,t)/v_theta,t."""
    data, model = _pair(name)
    _, mu, _ = data.marginal(t)
    _, mh, vh = model.marginal(t)
    return float((mu[0] - mh[0]) / vh[0])


class _MseSlopeGauss:
    """:func:`_beta_mse_gauss` of case ``name`` as a slope: ``slope(t)``, and ``slope.many(ts)`` at many times in one
    pass (the marginals by ``D._marginal_rows``, ``marginal``'s floats: the same numbers as the calls, test)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, t) -> float:
        return _beta_mse_gauss(self.name, t)

    def many(self, ts: np.ndarray) -> np.ndarray:
        data, model = _pair(self.name)
        ts = np.asarray(ts, dtype=np.float64)
        mu, _ = D._marginal_rows(data.m, data.v, ts)
        mh, vh = D._marginal_rows(model.m, model.v, ts)
        return (mu[:, 0] - mh[:, 0]) / vh[:, 0]


class _SignedSlope:
    """A slope times ``sign`` (keeping ``many``)."""

    def __init__(self, beta, sign: float):
        self.beta, self.sign = beta, float(sign)

    def __call__(self, t) -> float:
        return self.sign * self.beta(t)

    def many(self, ts: np.ndarray) -> np.ndarray:
        return self.sign * self.beta.many(ts)


def _half_spline(n_spline: int) -> int:
    """Node count of the spline with every other node (the spline-error estimate compares the two)."""
    return (n_spline - 1) // 2 + 1


def _signed(beta, sign: float):
    """``beta`` times ``sign`` (a :class:`D.BetaSpline` stays one, so its stage values come in one call)."""
    if sign == 1.0:
        return beta
    if isinstance(beta, D.BetaSpline):
        return beta.signed(sign)
    if hasattr(beta, "many"):
        return _SignedSlope(beta, sign)
    return lambda t: sign * beta(t)


@functools.lru_cache(maxsize=32)
def _gauss_case(name: str, n_spline: int, n_steps: int, mse_sign: float, ce_sign: float, errors: bool = True):
    """{obj: [(sde KL, RK4 err), (ode KL, RK4 err), (path KL, 0)], "spline_err": ...} of Gaussian case ``name``.
    The MSE slope is the exact beta(t) = E_{p_t}[grad log p_t - s_theta] in closed form (no spline; the tests check
    it against :func:`numerics.papers.discriminator.refined_1d.mse_optimal_linear`); the CE slope is the spline, whose error is estimated by the KL change with every other node dropped."""
    (m0, v0), _, _ = GAUSS_CASES[name]
    data, model = _pair(name)
    betas = {"mse": _signed(_MseSlopeGauss(name), mse_sign),
             "ce": _signed(_beta(name, "ce", n_spline), ce_sign)}
    res = {}
    for obj, beta in betas.items():
        vals = []
        for smp in ("sde", "ode"):
            kf = gaussian_kl_1d(m0, v0, *D.gaussian_refined_endpoint(model, beta, smp, T, n_steps))
            kc = gaussian_kl_1d(m0, v0, *D.gaussian_refined_endpoint(model, beta, smp, T, n_steps // 2)) if errors else kf
            vals.append((kf, abs(kf - kc)))
        vals.append((D.gaussian_path_kl(data, model, beta, T), 0.0))
        res[obj] = vals
    res["spline_err"] = 0.0
    if errors:
        half = _signed(_beta(name, "ce", _half_spline(n_spline)), ce_sign)
        res["spline_err"] = max(abs(gaussian_kl_1d(m0, v0, *D.gaussian_refined_endpoint(model, half, smp, T, n_steps))
                                    - res["ce"][i][0]) for i, smp in enumerate(("sde", "ode")))
    return res


@functools.lru_cache(maxsize=16)
def _gmm_linear(obj: str, n_spline: int, dx: float, dtau: float, sign: float, errors: bool = True):
    """(KL, err, spline err) of the SDE refined by the optimal linear logit in setting G (slope times ``sign``).
    err: doubling dx and dtau; spline err: at the doubled resolution, the change with every other spline node dropped.
    ``errors=False`` (control runs): one solve, both errors 0."""
    beta = _signed(_beta("G", obj, n_spline), sign)
    if not errors:
        return _sde_kl(D.linear_field(MODEL, beta), MODEL, dx, dtau), 0.0, 0.0
    # D.kl_with_error's two solves, the coarse one also the spline error's first term
    kl = _sde_kl(D.linear_field(MODEL, beta), MODEL, dx, dtau)
    a = _sde_kl(D.linear_field(MODEL, beta), MODEL, 2 * dx, 2 * dtau)
    half = _signed(_beta("G", obj, _half_spline(n_spline)), sign)
    b = _sde_kl(D.linear_field(MODEL, half), MODEL, 2 * dx, 2 * dtau)
    return kl, abs(kl - a), abs(a - b)


@claim(
    id="discriminator.misspecified_linear_family",
    paper=PAPER,
    statement="C6: in the linear-logit family (correction beta(t) constant in x) the gradient-matching optimum "
              "gives smaller endpoint KL than the CE optimum for SDE and PF-ODE; in the Gaussian case its SDE endpoint "
              "is the forward-marginal law N(mu_0, v_theta,0) up to the terminal mismatch; the note's table is reproduced",
    note=f"{NOTE}#c6-misspecified",
    provenance="reconstructed",
    quick={"cases": ["N(0,1)->N(1,0.25)", "N(0,1)->N(0.5,2.25)"], "n_spline": 101, "n_steps": 1600,
           "gmm": True, "dx": 0.01, "dtau": 4e-3},
    full={"cases": list(GAUSS_CASES), "n_spline": 401, "n_steps": 4000, "gmm": True, "dx": 0.005, "dtau": 2e-3},
    controls={"mse_slope_sign": "the MSE-optimal slope written +E_{p_t}[s_theta] (sign of -E_{p_t}[s_theta] lost)",
              "ce_labels_swapped": "the logistic regression fitted with the real samples labelled 0 (beta_CE -> -beta_CE)"},
)
def misspecified_linear_family(ctx: Context) -> list[Measurement]:
    p = ctx.params
    ms = -1.0 if ctx.bug("mse_slope_sign") else 1.0
    cs = -1.0 if ctx.bug("ce_labels_swapped") else 1.0
    errors = ctx.control is None  # control runs: no error estimates (their bugs move the KLs by O(0.01-10))
    out, order, exacts, notes = [], [], [], []
    for name in p["cases"]:
        (m0, v0), (m1, v1), note = GAUSS_CASES[name]
        r = _gauss_case(name, p["n_spline"], p["n_steps"], 1.0, 1.0, True)
        if not errors:  # the bugged objective without error estimates, the other one as stated
            rb = _gauss_case(name, p["n_spline"], p["n_steps"], ms, cs, False)
            r = {"mse": rb["mse"] if ms < 0 else r["mse"], "ce": rb["ce"] if cs < 0 else r["ce"],
                 "spline_err": r["spline_err"]}
        for i, smp in enumerate(("sde", "ode")):
            (km, em), (kc, ec) = r["mse"][i], r["ce"][i]
            out.append(Measurement(name=f"{name} {smp}: MSE-opt KL <= CE-opt KL", measured=km, predicted=kc, kind="le",
                                   tol=em + ec + r["spline_err"],
                                   reason="RK4 halving error of both + the CE spline's error estimate (every other "
                                          "node dropped)", extra={"mse": km, "ce": kc}))
            order.append(out[-1])
        # forward-marginal identity: the MSE-refined score is the exact score of r_t = law of N(mu0, v_theta0) at t
        _, mh, vh = D.Mixture1D([1], [m1], [v1]).marginal(T)
        terminal = 0.5 * (m1 - m0) ** 2 * math.exp(-2 * T) / vh[0]  # KL(r_T || p_theta,T): equal variances
        exact = gaussian_kl_1d(m0, v0, m0, v1)
        out.append(Measurement(name=f"{name}: MSE-opt SDE endpoint KL = KL(p_0 || N(mu_0, v_theta,0))",
                               measured=r["mse"][0][0], predicted=exact, kind="equal",
                               tol=r["mse"][0][1] + terminal,
                               reason="RK4 halving error + KL(r_T || p_theta,T), which bounds the endpoint's change "
                                      "from starting at p_theta,T instead of r_T (data processing; "
                                      "note #c6-misspecified)",
                               extra={"path_kl": r["mse"][2][0], "terminal_bound": terminal}))
        exacts.append(out[-1])
        got = [r["mse"][0][0], r["mse"][1][0], r["mse"][2][0], r["ce"][0][0], r["ce"][1][0], r["ce"][2][0]]
        dev = max(abs(a - b) for a, b in zip(got, note[1:]))
        out.append(Measurement(name=f"{name}: max |ours - note| over the six table entries", measured=dev,
                               predicted=0.0, kind="le", tol=2e-3,
                               reason="two units of the note's third decimal: one for its truncation (0.806 for "
                                      "0.80685), one for its own unreported discretisation error",
                               extra={"ours": got, "note": list(note[1:])}))
        notes.append(out[-1])
    if p["gmm"]:
        km, em, sm = _gmm_linear("mse", p["n_spline"], p["dx"], p["dtau"], ms, errors or ms == 1.0)
        kc, ec, sc = _gmm_linear("ce", p["n_spline"], p["dx"], p["dtau"], cs, errors or cs == 1.0)
        out.append(Measurement(name="setting G SDE: MSE-opt KL <= CE-opt KL", measured=km, predicted=kc, kind="le",
                               tol=em + ec + sm + sc, reason="refinement and spline error estimates of both",
                               extra={"note": [0.0485, 0.0657]}))
        order.append(out[-1])
        out.append(_kl_measure("setting G SDE MSE-opt vs note 0.0485", km, em + sm, 0.0485,
                               extra_tol=_note_unit(0.0485), why="spline error estimate + " + NOTE_WHY))
        out.append(_kl_measure("setting G SDE CE-opt vs note 0.0657", kc, ec + sc, 0.0657,
                               extra_tol=_note_unit(0.0657), why="spline error estimate + " + NOTE_WHY))
        notes += out[-2:]
    cases = "\n".join(f"{i}: {name}" for i, name in enumerate(p["cases"]))
    pl = ctx.plot
    pl.panel("order", title="MSE-opt vs CE-opt (cases x {SDE, PF-ODE}" + (", setting G)" if p["gmm"] else ")"),
             xlabel="CE-opt endpoint KL", ylabel="MSE-opt endpoint KL", xscale="log", yscale="log")
    pl.measured("order", [m.predicted for m in order], [m.measured for m in order])
    ends = [min(m.predicted for m in order), max(m.predicted for m in order)]
    pl.bound("order", ends, ends, label="MSE-opt KL = CE-opt KL")
    F.agreement(pl, "exact", [m.measured - m.predicted for m in exacts], [m.tol for m in exacts],
                title="MSE-opt SDE endpoint vs KL(p_0 || N(mu_0, v_theta,0))", xlabel=cases)
    F.agreement(pl, "note", [m.measured - (m.predicted or 0.0) for m in notes], [m.tol for m in notes],
                title="note's table: max |ours - note| per case; setting G", ylabel="|ours - note|",
                xlabel=cases + ("\n" + f"{len(p['cases'])}, {len(p['cases']) + 1}: setting G MSE, CE" if p["gmm"]
                                else ""))
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


@functools.lru_cache(maxsize=32)
def _trained_row(n: int, seed: int, lam: float, dx: float, dtau: float):
    """Per objective: (SDE endpoint KL, its error, path KL, its error) of the trained logit, and the endpoint density.
    err: change when dx and dtau are doubled; path: Gauss-Legendre with the hat knots as breakpoints, n = 12 vs 6,
    x-trapezoid with step 0.01 (Gaussian-weighted analytic integrand of width >= 0.5, frequencies |omega| < 8:
    spectrally small error)."""
    g = D.Grid1D(dx=dx)
    xs = np.linspace(-12, 12, 2401)
    res = {}
    for obj, fam in zip(("gm", "ce"), _fits(n, seed, lam)):
        corr = lambda z, t, fam=fam: fam.grad(z, t)  # noqa: E731
        pieces = tuple(float(k) for k in fam.knots if k < T)
        path = D.path_kl(DATA, MODEL, corr, T, n=12, x=xs, pieces=pieces)
        path_half = D.path_kl(DATA, MODEL, corr, T, n=6, x=xs, pieces=pieces)
        q = D.sde_endpoint(D.feature_field(MODEL, fam), MODEL, T, g, dtau)
        kl = D.endpoint_kl(DATA.density(g.x, 0.0), q, g.dx)
        kl2 = _sde_kl(D.feature_field(MODEL, fam), MODEL, 2 * dx, 2 * dtau)
        res[obj] = (kl, abs(kl - kl2), path, abs(path - path_half), q)
    return res


def _emp_log_density(xs, pts, t: float, var_as_std: bool = False):
    r"""log of the empirical marginal :math:`p^n_t = \frac1n\sum_i N(x; \alpha_t x_i, \sigma_t^2)` on ``xs``
    (``var_as_std``: the kernel exponent divided by 2 sigma_t instead of 2 sigma_t^2, a control)."""
    a, s2 = alpha_sigma2(t)
    e = -0.5 * (xs[:, None] - a * pts) ** 2 / (math.sqrt(s2) if var_as_std else s2)
    m = e.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(e - m).mean(axis=1, keepdims=True)))[:, 0] - 0.5 * math.log(2 * math.pi * s2)


def _overfitting_figure(pl, xs, memo, pts, p, rows, gaps, tweedie, table, base) -> None:
    """Science figure of C7: memorised marginal, its KL sandwich, CE gaps, Tweedie target, trained fits.

    Parameters
    ----------
    pl : PlotRecorder
        The claim's ``ctx.plot``.
    xs, memo : ndarray
        The quadrature grid and the empirical marginal p^n_delta on it at ``delta = deltas[1]``.
    pts : ndarray
        The memorised real points.
    p : dict
        The claim's parameters.
    rows, gaps : list
        The sandwich rows (delta, kl, lb, ub) and the CE gaps at ``ce_times``.
    tweedie : (float, float, float)
        Mean of the target check and its tolerance-widened interval.
    table : list of dict
        The trained fits' rows (n, endpoint KL, its error, path KL per objective).
    base : float
        The unrefined KL.
    """
    keep = np.flatnonzero(np.abs(xs) <= 5)[::50]  # every 50th grid point (dx = 0.05) for the density picture
    pl.panel("memo", title=f"Bayes logit vs {p['n_memo']} real points: p^n at delta={p['deltas'][1]:g}",
             xlabel="x", ylabel="density")
    pl.predicted("memo", xs[keep], DATA.density(xs[keep], 0.0), label="data p_0")
    pl.measured("memo", xs[keep], memo[keep], label="empirical marginal p^n_delta", style="line")
    pl.reference("memo", pts, np.zeros_like(pts), label="training points", style="points")
    d = [r["delta"] for r in rows]
    pl.panel("sandwich", title="KL(data || p^n_delta) in [LB, LB + log n]", xlabel="delta", ylabel="KL",
             xscale="log", yscale="symlog")
    pl.measured("sandwich", d, [r["kl"] for r in rows], style="line")
    pl.bound("sandwich", d, [r["ub"] for r in rows], label="LB + log n")
    pl.bound("sandwich", d, [r["lb"] for r in rows], label="LB", side="lower")
    pl.reference("sandwich", *level(d, base), label="unrefined KL")
    pl.panel("cegap", title="population CE gap of the memorising logit", xlabel="t", ylabel="CE gap",
             xscale="log", yscale="log")
    pl.measured("cegap", p["ce_times"], gaps, style="line")
    pl.panel("tweedie", title="gradient-matching target: E[(a - grad log p_t) grad log p_t]",
             xlabel="(one Monte-Carlo mean)", ylabel="mean with ensemble-level interval")
    pl.measured("tweedie", [0.0], [tweedie[0]], lo=[tweedie[1]], hi=[tweedie[2]])
    pl.predicted("tweedie", [-0.5, 0.5], [0.0, 0.0], label="Tweedie: 0")
    ns = [r["n"] for r in table]
    for obj, name in (("gm", "gradient matching"), ("ce", "cross-entropy")):
        pl.panel(obj, title=f"{name} logits: endpoint KL <= path KL", xlabel="training samples n",
                 ylabel="KL", xscale="log", yscale="log")
        kl, err = np.array([r[f"{obj}_kl"] for r in table]), np.array([r[f"{obj}_err"] for r in table])
        pl.measured(obj, ns, kl, lo=kl - err, hi=kl + err, label="SDE endpoint", style="line")
        pl.bound(obj, ns, [r[f"{obj}_path"] for r in table], label="path KL (Girsanov)")
        pl.reference(obj, *level(ns, base), label="unrefined KL")


@claim(
    id="discriminator.overfitting",
    paper=PAPER,
    statement="C7: the Bayes discriminator against a finite real set (n points) refines the model into the "
              "empirical marginal p^n_delta: KL(data || p^n_delta) lies in [LB, LB + log n] with LB = -h(p) + "
              "log(2 pi sigma_delta^2)/2 + E min_i|x - alpha x_i|^2/(2 sigma_delta^2) -> infinity, so it exceeds the "
              "unrefined KL at small delta (memorisation; the population CE gap of that logit is recorded); "
              "the gradient-matching regression target is unbiased for the score (Tweedie); restricted, norm-bounded "
              "feature logits trained by either objective satisfy endpoint KL <= path KL (Girsanov); their endpoint "
              "KL against n is recorded, not asserted (no ordering holds at these n)",
    note=f"{NOTE}#c7-overfitting",
    provenance="reconstructed",
    quick={"n_memo": 20, "deltas": [0.1, 0.01, 0.001, 1e-4], "ce_times": [1.0, 0.1, 0.01], "sizes": [100, 3000],
           "lam": 1e-3, "dx": 0.02, "dtau": 8e-3, "n_target": 200_000},
    full={"n_memo": 20, "deltas": [0.1, 0.01, 0.001, 1e-4, 1e-5], "ce_times": [2.0, 1.0, 0.1, 0.01, 0.001],
          "sizes": [100, 1000, 10000, 100000], "lam": 1e-3, "dx": 0.01, "dtau": 4e-3, "n_target": 1_000_000},
    controls={"kernel_var_as_std": "the empirical marginal's Gaussian kernels divide by 2 sigma_t, not 2 sigma_t^2",
              "sde_drift_half": SDE_DRIFT_HALF,
              "dsm_target_alpha_dropped": "the gradient-matching target -(x_t - x_0)/sigma_t^2 without alpha_t"},
)
def overfitting(ctx: Context) -> list[Measurement]:
    p = ctx.params
    bug_std = ctx.bug("kernel_var_as_std")
    rng = np.random.default_rng(ctx.sub_seed)
    pts = DATA.sample(p["n_memo"], rng)
    out = []
    xs = np.linspace(-10, 10, 20001)
    dxs = xs[1] - xs[0]
    lp0 = DATA.log_density(xs, 0.0)
    w0 = np.exp(lp0) * dxs
    neg_h = float(np.sum(w0 * lp0))  # -h(p), same quadrature as the KLs

    gaps = []
    for t in p["ce_times"]:
        dn = _emp_log_density(xs, pts, t, bug_std) - MODEL.log_density(xs, t)
        d0 = DATA.log_density(xs, t) - MODEL.log_density(xs, t)
        pt, qt = DATA.density(xs, t), MODEL.density(xs, t)
        ce = lambda d: np.sum(pt * np.logaddexp(0, -d) + qt * np.logaddexp(0, d)) * dxs  # noqa: E731
        gaps.append(float(ce(dn) - ce(d0)))
    out.append(Measurement(name="population CE gap of the memorising logit increases as t decreases",
                           measured=float(np.all(np.diff(gaps) > 0)), kind="true", counted=False,
                           reason="informational: no realistic bug of ours reverses it (the kernel bug keeps it)",
                           extra={"gaps": gaps, "times": p["ce_times"]}))
    kls, rows, worst = [], [], -np.inf
    for dl in p["deltas"]:
        _, s2 = alpha_sigma2(dl)
        a = math.exp(-dl)
        lpn = _emp_log_density(xs, pts, dl, bug_std)
        kl = float(np.sum(w0 * (lp0 - lpn)))
        if dl == p["deltas"][1]:
            memo = np.exp(lpn)
        dmin2 = np.min((xs[:, None] - a * pts) ** 2, axis=1)
        lb = neg_h + 0.5 * math.log(2 * math.pi * s2) + float(np.sum(w0 * dmin2)) / (2 * s2)
        ub = lb + math.log(p["n_memo"])
        kls.append(kl)
        rows.append({"delta": dl, "kl": kl, "lb": lb, "ub": ub})
        worst = max(worst, lb - kl, kl - ub)
    out.append(Measurement(name="max over delta of the excursion of KL(data || p^n_delta) outside [LB, LB + log n]",
                           measured=worst, predicted=0.0, kind="le",
                           tol=4 * xs.size * UNIT_ROUNDOFF * (1 + max(abs(r["lb"]) + abs(r["kl"]) for r in rows)),
                           reason="the sandwich holds pointwise in the integrand (mean of kernels between max/n and max), "
                                  "so also for the grid sums: only their rounding, 4 n u of the magnitudes, n = 20001 "
                                  "(note #c7-overfitting)",
                           extra={"rows": rows}))
    base, _ = _grid_quantities(0.001)
    out.append(Measurement(name=f"KL(data || p^n_delta) at delta={p['deltas'][-1]} exceeds the unrefined KL",
                           measured=kls[-1], predicted=base, kind="ge", tol=0.0, counted=False,
                           reason="informational: implied by the counted sandwich (its lower end LB grows like "
                                  "1/sigma_delta^2); at the full profile's delta no realistic bug moves it below the "
                                  "unrefined KL; exact comparison of two grid sums",
                           extra={"lb": rows[-1]["lb"], "kls": kls}))
    out.append(Measurement(name="KL increases as delta decreases", measured=float(np.all(np.diff(kls) > 0)),
                           kind="true", counted=False, reason="informational: follows from the sandwich at small delta"))
    # the regression target of the gradient-matching fits (refined_1d._noisy) is unbiased for the score (Tweedie):
    # E[(a - s_p(x_t)) s_p(x_t)] = 0 over x_0 ~ p, t ~ U[0.01, T]; this is what makes the GM loss the Fisher form
    r3 = np.random.default_rng([ctx.sub_seed, 3])
    x0 = DATA.sample(p["n_target"], r3)
    xt, tt, a = D._noisy(x0, r3, T, 1e-2)
    if ctx.bug("dsm_target_alpha_dropped"):
        a = -(xt - x0) / (-np.expm1(-2 * tt))
    _, m_t, v_t = D._marg_arrays(DATA, tt)
    s_t = D._mixture_score_vec(xt, DATA.w, m_t, v_t)
    ci = mean_ci((a - s_t) * s_t, level=ENSEMBLE_LEVEL, method="normal")
    out.append(Measurement(name="gradient-matching target: E[(a - grad log p_t) grad log p_t] = 0 (Tweedie)",
                           measured=ci.mean, predicted=0.0, kind="equal", tol=Z_ENS * ci.se,
                           reason=f"Monte Carlo half-width z*se at the ensemble level (z={Z_ENS:.2f}), "
                                  f"{p['n_target']} draws (note #c7-overfitting)"))
    tweedie = (out[-1].measured, out[-1].measured - out[-1].tol, out[-1].measured + out[-1].tol)
    # restricted trained logits: Girsanov for every fit; the endpoint KLs are recorded
    drift_half = ctx.bug("sde_drift_half")
    table, worst_g = [], -np.inf
    for n in p["sizes"]:
        row = _trained_row(n, ctx.sub_seed, p["lam"], p["dx"], p["dtau"])
        entry = {"n": n}
        for obj, fam in zip(("gm", "ce"), _fits(n, ctx.sub_seed, p["lam"])):
            kl, err, path, perr, _ = row[obj]
            if drift_half:
                kl, err = _sde_kl(_drift_half(D.feature_field(MODEL, fam)), MODEL, p["dx"], p["dtau"]), 0.0
            worst_g = max(worst_g, kl - (path + err + perr))
            entry.update({f"{obj}_kl": kl, f"{obj}_err": err, f"{obj}_path": path})
        table.append(entry)
    out.append(Measurement(name="max over the trained fits of SDE endpoint KL - (path KL + errors)", measured=worst_g,
                           predicted=0.0, kind="le", tol=0.0,
                           reason="Girsanov + data processing; each fit's bound carries its own errors (dx, dtau "
                                  "doubling of the endpoint; n=12 vs 6 Gauss nodes per hat piece for the path)",
                           extra={"rows": table, "unrefined": base}))
    _overfitting_figure(ctx.plot, xs, memo, pts, p, rows, gaps, tweedie, table, base)
    return out


# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# C8
# ----------------------------------------------------------------------------------------------
MISSING_MODEL = D.Mixture1D([0.98, 0.02], [-2.0, 2.0], [0.36, 0.36])


def _ce_gap_bracket(p: np.ndarray, q: np.ndarray, a: np.ndarray, dx: float) -> tuple[float, float]:
    r"""Two-sided bracket of the CE gap of :math:`d^* + a` (densities ``p`` of the data, ``q`` of the model, on a
    uniform grid of step ``dx``): pointwise, with :math:`u = q/p`,

    .. math:: q\Big[a + \frac{(p + q)(e^{-a} - 1)}{p + q e^{-a}}\Big] \;\le\;
       p\log\frac{\sigma(d^*)}{\sigma(d^* + a)} + q\log\frac{\sigma(-d^*)}{\sigma(-d^* - a)} \;\le\;
       q\,(a - 1 + e^{-a}),

    from :math:`y/(1+y) \le \log(1+y) \le y` at :math:`y = u(e^{-a} - 1)/(1 + u)`; the two ends differ by
    :math:`O(u)` relative, so the upper end is the gap's limit where the model misses (note #c8-missing-mode)."""
    em1 = np.expm1(-a)
    upper = q * (a + em1)  # a - 1 + e^{-a} without cancellation at small a
    s = p + q
    lower = q * (a + np.divide(s * em1, p + q * np.exp(-a), out=np.zeros_like(s), where=s > 0))
    return float(np.sum(lower) * dx), float(np.sum(upper) * dx)



@claim(
    id="discriminator.missing_mode",
    paper=PAPER,
    statement="C8: on a region R the model nearly misses, d = d* + A S(x) (S a smoothed indicator of R, applied "
              "for t <= t1) has a CE gap inside the two-sided bracket E_{p_theta,t}[L] <= gap <= "
              "E_{p_theta,t}[A S - 1 + exp(-A S)] (pointwise, exact; tight to O(p_theta,t / p_t) on R), and the refined "
              "SDE endpoint KL stays below the Girsanov path KL of the gradient error A grad S; recorded: the "
              "endpoint KL above KL_T + the largest CE gap (the damage is not controlled by the CE gap)",
    note=f"{NOTE}#c8-missing-mode",
    provenance="reconstructed",
    quick={"A": 1.5, "t1": 0.3, "dx": 0.01, "dtau": 4e-3, "times": [0.01, 0.1, 0.3]},
    full={"A": 1.5, "t1": 0.3, "dx": 0.005, "dtau": 2e-3, "times": [0.001, 0.01, 0.05, 0.1, 0.2, 0.3]},
    controls={"perturbation_sign": "the tilt towards R applied with the wrong sign, d = d* - A S",
              "sde_drift_half": SDE_DRIFT_HALF},
)
def missing_mode(ctx: Context) -> list[Measurement]:
    p = ctx.params
    A, t1 = p["A"], p["t1"]
    sgn = -1.0 if ctx.bug("perturbation_sign") else 1.0
    c = 2.0
    S = lambda z: 1 / (1 + np.exp(-(z - (c - 1)) / 0.1)) / (1 + np.exp(-((c + 1) - z) / 0.1))  # noqa: E731
    width = 0.1
    dS = lambda z: S(z) * ((1 - 1 / (1 + np.exp(-(z - (c - 1)) / width))) / width  # noqa: E731
                           - (1 - 1 / (1 + np.exp(-((c + 1) - z) / width))) / width)
    out = []
    gaps, rows = [], []
    xs = np.linspace(-12, 12, 24001)  # the grid of D.ce_value: the bracket is summed over the same points
    for t in p["times"]:
        gap = D.ce_gap(DATA, MISSING_MODEL, t, lambda z: sgn * A * S(z))
        lo, hi = _ce_gap_bracket(DATA.density(xs, t), MISSING_MODEL.density(xs, t), A * S(xs), xs[1] - xs[0])
        gaps.append(gap)
        rows.append({"t": t, "gap": gap, "lower": lo, "upper": hi, "weak_bound": A * float(
            np.sum(MISSING_MODEL.density(xs, t) * S(xs)) * (xs[1] - xs[0]))})
    # rounding: each CE is a sum of n = 24001 terms, each within a few ulps; |sum| <= 2 log 2 (Bayes) + A (gap <= A)
    tol = 4 * xs.size * np.finfo(float).eps * (4 * math.log(2.0) + A)
    out.append(Measurement(
        name="max over t of the CE gap's distance outside [E_q L, E_q (A S - 1 + exp(-A S))]",
        measured=max(max(r["gap"] - r["upper"], r["lower"] - r["gap"]) for r in rows), predicted=0.0, kind="le",
        tol=tol,
        reason="pointwise bracket of the CE gap of d* + a (note #c8-missing-mode: log(1+y) <= y and >= y/(1+y)), "
               "summed over the points of the CE's own grid sum, so only rounding separates them: 4 n eps (4 log 2 + "
               "A), n = 24001 (recursive summation of two CEs, a few ulps per term)",
        extra={"rows": rows, "relative_width": [(r["upper"] - r["lower"]) / r["upper"] for r in rows]}))

    def field(z, t):
        sp_, dsp = DATA.score_and_derivative(z, t)
        if t > t1:
            return sp_, dsp
        h = 1e-4
        d2 = (dS(z + h) - dS(z - h)) / (2 * h)
        return sp_ + sgn * A * dS(z), dsp + sgn * A * d2

    if ctx.bug("sde_drift_half"):
        kl, err = _sde_kl(_drift_half(field), MISSING_MODEL, p["dx"], p["dtau"]), 0.0
    else:
        kl, err = D.kl_with_error(DATA, field, MISSING_MODEL, "sde", T, D.Grid1D(dx=p["dx"]), p["dtau"])
    kl_T = kl_cells(DATA.density(xs, T), MISSING_MODEL.density(xs, T), xs[1] - xs[0])
    ts, ws = D.time_nodes(t1, pieces=(0.0, 0.05), n=24)
    path = kl_T + sum(wi * float(np.sum(DATA.density(xs, ti) * (A * dS(xs)) ** 2) * (xs[1] - xs[0]))
                      for ti, wi in zip(ts, ws))
    out.append(_kl_measure("refined SDE endpoint KL > KL_T + max CE gap (CE gap does not control the damage)",
                           kl, err, kl_T + max(gaps), kind="ge", counted=False,
                           extra={"max_ce_gap": max(gaps), "path_kl": path, "damage_over_gap": (kl - kl_T) / max(gaps)},
                           why="informational: nobody claims a bound KL <= KL_T + CE gap; recorded to show how far "
                               "the damage exceeds the gap (refinement error by doubling dx and dtau)"))
    out.append(_kl_measure("refined SDE endpoint KL <= path KL (Girsanov)", kl, err, path, kind="le",
                           extra={"path_kl": path},
                           why="refinement error estimate (doubling dx and dtau); the path integral is exact to "
                               "Gauss-Legendre precision (smooth integrand, 24 nodes per piece)"))
    pl = ctx.plot
    pl.panel("gap", title="CE gap of d* + A S vs its bound", xlabel="t", ylabel="CE gap", xscale="log", yscale="log")
    pl.measured("gap", p["times"], gaps, style="line")
    pl.bound("gap", p["times"], [r["upper"] for r in rows], label="E_{p_theta,t}[A S - 1 + exp(-A S)]")
    pl.bound("gap", p["times"], [r["lower"] for r in rows], label="E_{p_theta,t}[L] (lower)", side="lower")
    pl.reference("gap", p["times"], [r["weak_bound"] for r in rows], label="A E_{p_theta,t}[S]")
    pl.panel("endpoint", title="SDE endpoint KL: above the CE-gap form, below Girsanov",
             xlabel=f"(one endpoint: A = {A:g}, t1 = {t1:g})", ylabel="KL(data || endpoint)", yscale="log")
    pl.measured("endpoint", [0.0], [kl], lo=[kl - err], hi=[kl + err])
    pl.bound("endpoint", [-0.5, 0.5], [path] * 2, label="path KL (Girsanov)")
    pl.bound("endpoint", [-0.5, 0.5], [kl_T + max(gaps)] * 2, label=r"KL$_T$ + max CE gap (would-be bound)",
             side="lower")
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
    controls={"no_mismatch": "the discriminator trained against q_t itself (q-bar_t = q_t)",
              "kl_reversed": "the rate of KL(p || q) computed instead of KL(q || p)"},
)
def reference_marginal_mismatch(ctx: Context) -> list[Measurement]:
    """Particles x -> x + h v(x) with v = k x keep N(0, 4(1+hk)^2); the KL rate is a central difference of the
    closed-form Gaussian KL."""
    h = ctx.params["h"]
    vq, vp = 4.0, 1.0
    vbar = vq if ctx.bug("no_mismatch") else 0.5
    out = []
    ss = np.linspace(-0.1, 0.1, 41)
    ctx.plot.panel("flow", title="KL(q_tau || p) along the two velocity fields", xlabel="flow time tau",
                   ylabel="KL(q || p)")
    for name, k, pred in (("grad log(p/q)", 1 / vq - 1 / vp, -2.25), ("grad log(p/q-bar)", 1 / vbar - 1 / vp, 3.0)):
        if ctx.bug("kl_reversed"):
            kl = lambda s: gaussian_kl_1d(0.0, vp, 0.0, vq * (1 + s * k) ** 2)  # noqa: E731
        else:
            kl = lambda s: gaussian_kl_1d(0.0, vq * (1 + s * k) ** 2, 0.0, vp)  # noqa: E731
        rate = (kl(h) - kl(-h)) / (2 * h)
        trunc = h * h * abs(k) ** 3 / (3 * (1 - h * abs(k)) ** 3)
        rounding = 4 * UNIT_ROUNDOFF * (1 + abs(kl(0.0))) / h
        out.append(Measurement(name=f"dKL(q||p)/dtau along {name}", measured=rate, predicted=pred, kind="equal",
                               tol=trunc + rounding,
                               reason="central difference: h^2/6 max|f'''| with |f'''| <= 2|k|^3/(1-h|k|)^3 (only the "
                                      "-log(1+sk) term has a third derivative) + rounding 4u(1+KL)/h "
                                      "(note #c9-reference-mismatch)"))
        ctx.plot.measured("flow", ss, [kl(s_) for s_ in ss], label=f"along {name}", style="line")
        ctx.plot.predicted("flow", ss, kl(0.0) + pred * ss, label=f"predicted slope {pred:g}")
    F.agreement(ctx.plot, "rate", [m.measured - m.predicted for m in out], [m.tol for m in out],
                title="central-difference rate vs predicted", xlabel="0: grad log(p/q), 1: grad log(p/q-bar)")
    return out


# ----------------------------------------------------------------------------------------------
# C7 in 2-D: trained discriminators, both objectives, endpoint KL vs sample size
# ----------------------------------------------------------------------------------------------

DATA2, MODEL2 = D2.setting_g2()
BOX2 = ((-5.5, 5.5), (-5.0, 5.5))


@functools.lru_cache(maxsize=128)
def _samples_2d(n: int, seed: int, rep: int):
    """n real and n model samples of setting G2 for replicate ``rep`` (shared by both objectives: paired design)."""
    r = np.random.default_rng([seed, n, 2, rep])
    return DATA2.sample_data(n, r), MODEL2.sample_data(n, r)


@functools.lru_cache(maxsize=128)
def _fit_2d(obj: str, n: int, seed: int, rep: int, lam: float, T2: float, n_freq: int, alpha_dropped: bool = False):
    """A FeatureLogit2D trained by ``obj`` ("gm" or "ce") on replicate ``rep`` (memoised: controls reuse it).
    ``alpha_dropped`` (a control): the gradient-matching target -(x_t - x_0)/sigma_t^2 without alpha_t."""
    real, fake = _samples_2d(n, seed, rep)
    r = np.random.default_rng([seed, n, 2, rep, 0 if obj == "gm" else 1])
    fam = D2.FeatureLogit2D(n_freq=n_freq, knots=(0.0, 0.05, 0.2, 0.6, 1.5, T2), seed=5)
    if obj == "ce":
        return D2.fit_logit_ce_2d(fam, real, fake, r, T2, lam=lam, repeats=1)
    xt, t, target = D2._noisy(real, r, T2, 1e-2)  # as fit_logit_gm_2d with repeats=1
    if alpha_dropped:
        target = -(xt - real) / (-np.expm1(-2 * t))[:, None]
    return D2.gm_solve_2d(fam, xt, t, target - MODEL2.score(xt, t), lam)


@functools.lru_cache(maxsize=256)
def _chain_2d(which: str, n_train: int, w: float, seed: int, rep: int, lam: float, T2: float, n_freq: int,
              steps: int, grid_n: int, refine: bool, alpha_dropped: bool = False) -> D2.EndpointKL:
    """Endpoint KL of the refined EI-SDE chain in setting G2; ``which`` in {"exact", "gm", "ce"} (w < 0: flipped)."""
    if which == "exact":
        corr = D2.bayes_correction(DATA2, MODEL2)
    else:
        corr = D2.feature_correction(_fit_2d(which, n_train, seed, rep, lam, T2, n_freq, alpha_dropped))
    return D2.endpoint_kl_2d(DATA2, MODEL2, corr, w, BOX2, grid_n, D2.time_grid(T2, steps), refine=refine)


def _t_interval(x: np.ndarray):
    """Mean of replicate values with its Student-t interval at the ensemble level."""
    return mean_ci(np.asarray(x, dtype=float), level=ENSEMBLE_LEVEL, method="t")


def _trained_2d_figure(pl, p, base, ex, out, kg, kc, grid_err, rows) -> None:
    """Science figure of C7 in 2-D: the counted checks, the paired KLs per training set, KL against n.

    Parameters
    ----------
    pl : PlotRecorder
        The claim's ``ctx.plot``.
    p : dict
        The claim's parameters.
    base : float
        The unrefined KL(p || p_theta) on the grid.
    ex : EndpointKL
        The exact-logit chain.
    out : list of Measurement
        The claim's three measurements (exact d*, mean GM KL, mean paired difference).
    kg, kc : list of float
        Endpoint KLs per training set, gradient matching and cross-entropy.
    grid_err : float
        The grid errors of both chains (the bound of the paired difference is minus this).
    rows : list of dict
        The informational table (empty in control runs).
    """
    pl.panel("checks", title="refined endpoint KL vs the unrefined model", xlabel=f"0: exact d*, 1: gradient "
             f"matching (mean over training sets of {p['rep_size']})", ylabel="endpoint KL", yscale="log")
    pl.measured("checks", [0.0, 1.0], [ex.kl, out[1].measured], lo=[ex.kl - ex.err, out[1].ci[0]],
                hi=[ex.kl + ex.err, out[1].ci[1]])
    pl.bound("checks", [-0.5, 1.5], [base, base], label="unrefined KL(p || p_theta)")
    pl.panel("pairs", title=f"one point per training set (n = {p['rep_size']}, w = 1)",
             xlabel="cross-entropy: endpoint KL", ylabel="gradient matching: endpoint KL")
    pl.measured("pairs", kc, kg, label="training sets")
    ends = [min(kg + kc), max(kg + kc)]
    pl.predicted("pairs", ends, ends, label="equal KL")
    d = np.subtract(kg, kc)
    pl.panel("diff", title="paired difference gradient matching - cross-entropy", xlabel="training set (-2: mean)",
             ylabel="endpoint-KL difference")
    pl.measured("diff", np.arange(d.size), d, label="per training set")
    pl.measured("diff", [-2.0], [out[2].measured], lo=[out[2].ci[0]], hi=[out[2].ci[1]], label="mean, t-interval")
    pl.bound("diff", [-3.0, float(d.size)], [-grid_err] * 2, label="- grid errors")
    ns = [r["n"] for r in rows]
    for w in p["weights"]:
        key = f"n{w:g}"
        pl.panel(key, title=f"w = {w:g}: endpoint KL vs training-set size (one set each)",
                 xlabel="training samples n", ylabel="endpoint KL", xscale="log", yscale="log")
        for obj, name, style in (("gm", "gradient matching", "line"), ("ce", "cross-entropy", "points")):
            pl.measured(key, ns, [r[f"{obj} w={w:g}"] for r in rows], style=style, label=name)
        pl.reference(key, *level(p["sizes"], base), label="unrefined")
        pl.predicted(key, *level(p["sizes"], ex.kl), label="exact d*, w=1")


@claim(
    id="discriminator.trained_2d",
    paper=PAPER,
    statement="C7 in 2-D (setting G2, EI-SDE chain, exact grid law): the Bayes logit d* fixes the refined sampler up to "
              "discretisation (endpoint KL below the unrefined KL(p||p_theta)); over independent training sets of size "
              "n_rep, random-Fourier x time-hat logits with a ridge bound trained by gradient matching improve on the "
              "unrefined model on average and beat cross-entropy training on average (paired difference of endpoint "
              "KLs < 0, t-interval at the ensemble level); endpoint KL vs n recorded for both objectives and w in {1, 2}",
    note=f"{NOTE}#c7-2d-trained",
    provenance="reconstructed",
    quick={"sizes": [100, 1000], "weights": [1.0, 2.0], "lam": 1e-3, "T": 3.0, "n_freq": 16, "steps": 10,
           "grid_n": 25, "n_rep": 24, "rep_size": 10000, "err_reps": 4, "control_reps": 12},
    full={"sizes": [100, 1000, 10000, 100000], "weights": [1.0, 2.0], "lam": 1e-3, "T": 3.0, "n_freq": 16,
          "steps": 20, "grid_n": 37, "n_rep": 20, "rep_size": 10000, "err_reps": 4, "control_reps": 12},
    reduced={"sizes": [100, 1000, 10000]},
    reduced_reason="the trained fit on 1e5 samples is left out (most of the claim's time); the ordering over the "
                   "20 training sets of 1e4 is the full profile's",
    controls={"logit_sign": "the logit of the other class: refined score s_theta - w grad d (sign convention)",
              "gm_alpha_dropped": "the gradient-matching target -(x_t - x_0)/sigma_t^2 without alpha_t"},
)
def trained_2d(ctx: Context) -> list[Measurement]:
    p = ctx.params
    sign = -1.0 if ctx.bug("logit_sign") else 1.0
    alpha = ctx.bug("gm_alpha_dropped")
    control = ctx.control is not None
    seed = ctx.sub_seed
    cfg = (p["lam"], p["T"], p["n_freq"], p["steps"], p["grid_n"])
    g1, g2 = (np.linspace(lo, hi, p["grid_n"]) for lo, hi in BOX2)
    base = D2.kl_grid_2d(D2.mixture_density_grid(DATA2, g1, g2, 0.0), D2.mixture_density_grid(MODEL2, g1, g2, 0.0),
                         g1, g2)
    ex = _chain_2d("exact", 0, sign, 0, 0, *cfg, not control)
    kg, kc, eg, ec = [], [], [0.0], [0.0]
    # control runs use the first control_reps training sets and one grid: their bugs move the KLs by O(1)
    for rep in range(min(p["n_rep"], p["control_reps"]) if control else p["n_rep"]):
        refine = rep < p["err_reps"] and not control  # grid error estimated on the first err_reps training sets
        a = _chain_2d("gm", p["rep_size"], sign, seed, rep, *cfg, refine, alpha)
        b = _chain_2d("ce", p["rep_size"], sign, seed, rep, *cfg, refine)
        kg.append(a.kl)
        kc.append(b.kl)
        if refine:
            eg.append(a.err)
            ec.append(b.err)
    gm_ci = _t_interval(kg)
    diff_ci = _t_interval(np.subtract(kg, kc))
    grid_err = max(eg) + max(ec)
    rows = []
    if not control:  # the table (one training set per n, rep 0) is informational
        for n in p["sizes"]:
            row = {"n": n}
            for obj in ("gm", "ce"):
                for w in p["weights"]:
                    row[f"{obj} w={w:g}"] = _chain_2d(obj, n, w, seed, 0, *cfg, False).kl
            rows.append(row)
    table = {"base_kl": base, "exact_w1": ex.kl, "rows": rows, "rep_gm": kg, "rep_ce": kc}
    out = [
        Measurement(name="exact d*, w=1: refined EI-SDE endpoint KL <= unrefined KL(p||p_theta)", measured=ex.kl,
                    predicted=base, kind="le", tol=ex.err,
                    reason="grid refinement |KL_n - KL_2n-1| (both spacings halved) + escaped mass; the time "
                           "discretisation of the chain is part of the sampler measured",
                    extra={"kl_fine": ex.kl_fine, "escaped": ex.escaped, "grid": p["grid_n"], "steps": p["steps"]}),
        Measurement(name=f"gradient matching, n={p['rep_size']}, w=1: mean endpoint KL over {p['n_rep']} training "
                         f"sets <= unrefined", measured=gm_ci.mean, ci=gm_ci.ci, predicted=base, kind="le",
                    tol=max(eg),
                    reason="upper end of the Student-t interval at the ensemble level <= the unrefined KL + the "
                           "largest grid error |KL_n - KL_2n-1| + escaped mass of the first err_reps chains",
                    extra=table),
        Measurement(name=f"gradient matching minus cross-entropy, n={p['rep_size']}, w=1: mean paired endpoint-KL "
                         f"difference < 0", measured=diff_ci.mean, ci=diff_ci.ci, predicted=-grid_err, kind="le",
                    tol=0.0,
                    reason="the paper's ordering, strictly: the upper end of the Student-t interval at the ensemble "
                           "level lies below minus the largest grid errors of both chains (first err_reps training "
                           "sets; note #c7-2d-trained)",
                    extra={"differences": list(np.subtract(kg, kc)), "grid_err": grid_err}),
    ]
    _trained_2d_figure(ctx.plot, p, base, ex, out, kg, kc, grid_err, rows)
    return out


# ----------------------------------------------------------------------------------------------
# C7 in 1-D: trained logits over independent training sets (setting G)
# ----------------------------------------------------------------------------------------------
#: Hat-knot breakpoints of the path-KL time quadrature (the hats of ``D.FourierLogit()``, below T).
_HAT_PIECES = tuple(float(k) for k in D.FourierLogit(n_freq=1).knots if k < T)
#: x-grid of the path KL and the population CE gap (step 0.01 on [-12, 12], as :func:`_trained_row`).
_PATH_X = np.linspace(-12, 12, 2401)


@functools.lru_cache(maxsize=128)
def _samples_1d(n: int, seed: int, rep: int) -> tuple[np.ndarray, np.ndarray]:
    """n real and n model samples of setting G for training set ``rep`` (shared by both objectives: paired)."""
    r = np.random.default_rng([seed, n, 1, rep])
    return DATA.sample(n, r), MODEL.sample(n, r)


def _alpha_dropped_target(xt: np.ndarray, x0: np.ndarray, t: np.ndarray) -> np.ndarray:
    r"""The ``gm_alpha_dropped`` bug: the target :math:`-(x_t - x_0)/\sigma_t^2` instead of
    :math:`-(x_t - \alpha_t x_0)/\sigma_t^2` (the conditional score :math:`\nabla\log p(x_t|x_0)`)."""
    return -(xt - x0) / (-np.expm1(-2.0 * t))


@functools.lru_cache(maxsize=256)
def _fit_1d(obj: str, n: int, seed: int, rep: int, lam: float, repeats: int,
            alpha_dropped: bool = False) -> D.FourierLogit:
    """The :class:`FourierLogit` (24 frequencies x 7 time hats, ridge ``lam``) trained by ``obj`` ("gm" or "ce")
    on training set ``rep`` of size ``n`` (memoised: a control run refits only what its bug changes; the GM fits
    of both targets come from one design, :func:`_fit_1d_gm`)."""
    if obj == "gm":
        return _fit_1d_gm(n, seed, rep, lam, repeats)[int(bool(alpha_dropped))]
    real, fake = _samples_1d(n, seed, rep)
    r = np.random.default_rng([seed, n, 1, rep, 1])
    return D.fit_logit_ce(D.FourierLogit(seed=3), real, fake, r, T, lam=lam, repeats=repeats)


@functools.lru_cache(maxsize=128)
def _fit_1d_gm(n: int, seed: int, rep: int, lam: float, repeats: int) -> tuple[D.FourierLogit, D.FourierLogit]:
    """The two gradient-matching fits of training set ``rep`` (:func:`_fit_1d`): the conditional-score target and
    ``gm_alpha_dropped``'s, on the same noise draws (:func:`fit_logit_gm_targets`: one design and Gram matrix, a
    right-hand side each; each fit the same floats as fitted alone).  The control's fit then costs the stated run
    one right-hand side and solve instead of the control run a whole fit (40 fits of 1e5 x 2 draws: about 6 s)."""
    real, _ = _samples_1d(n, seed, rep)
    r = np.random.default_rng([seed, n, 1, rep, 0])
    fits = D.fit_logit_gm_targets(D.FourierLogit(seed=3), real, MODEL, r, T, lam=lam, repeats=repeats,
                                  targets=(None, _alpha_dropped_target))
    return fits[0], fits[1]


@functools.lru_cache(maxsize=1024)  # the full profile's run and its controls use 564 (512 evicted 25 stated solves)
def _sampler_kl_1d(sampler: str, fit: tuple, dx: float, dtau: float, sign: float = 1.0,
                   wrong_coefficient: bool = False) -> tuple[float, float]:
    r"""(KL(p_0 || endpoint), err) of ``sampler`` ("sde": reverse SDE, exact Fokker-Planck law; "ode": PF-ODE)
    refined by the fit ``_fit_1d(*fit)`` with score :math:`s_\theta + \mathrm{sign}\,\nabla_x d_\phi`;
    err = |KL(dx, dtau) - KL(2dx, 2dtau)| (second-order schemes: about 3x the fine value's error).
    ``wrong_coefficient`` (controls): the SDE with the PF-ODE's drift x + s (SDE_DRIFT_HALF), or the PF-ODE with
    the SDE's drift x + 2 s."""
    field = D.feature_field(MODEL, _fit_1d(*fit), w=sign)
    if wrong_coefficient and sampler == "sde":
        field = _drift_half(field)
    elif wrong_coefficient:
        field = field.scaled(2.0)  # score and derivative doubled
    return D.kl_with_error(DATA, field, MODEL, sampler, T, D.Grid1D(dx=dx), dtau)


@functools.lru_cache(maxsize=256)
def _path_1d(fit: tuple) -> tuple[float, float]:
    r"""(path KL, err) of the fit ``_fit_1d(*fit)``: :math:`\mathrm{KL}(p_T\|\hat p_T) + \int_0^T
    E_{p_t}|\nabla\log p_t - s_\theta - \nabla d_\phi|^2dt`, Gauss-Legendre with the hat knots as breakpoints
    (the integrand is smooth on each piece), err = change from 12 to 6 nodes per piece; x-trapezoid step 0.01."""
    fam = _fit_1d(*fit)
    corr = lambda z, t: fam.grad(z, t)  # noqa: E731
    a = D.path_kl_from(_path_terms_1d(12), corr)
    b = D.path_kl_from(_path_terms_1d(6), corr)
    return a, abs(a - b)


@functools.lru_cache(maxsize=4)
def _path_terms_1d(n: int) -> D.PathTerms:
    """The correction-free parts of :func:`_path_1d`'s path KL with ``n`` Gauss nodes per hat piece (memoised: the
    same for every fit)."""
    return D.path_terms(DATA, MODEL, T, n=n, x=_PATH_X, pieces=_HAT_PIECES)


def population_ce_gap(fam: D.FourierLogit, t_min: float = 1e-2, n: int = 6) -> float:
    r"""Population cross-entropy gap of the trained logit, averaged over the training times:

    .. math:: \frac1{T - t_{min}}\int_{t_{min}}^T \big[\mathrm{CE}_t(d_\phi(\cdot,t)) - \mathrm{CE}_t(d^*_t)\big]\,dt,
       \qquad \mathrm{CE}_t(d) = \int p_t\,\mathrm{softplus}(-d) + \hat p_t\,\mathrm{softplus}(d)\,dx,

    :math:`d^*_t = \log p_t - \log\hat p_t` (so the gap is >= 0); Gauss-Legendre with ``n`` nodes per hat piece
    (breakpoints ``t_min`` and the hat knots), x-trapezoid with step 0.01 on [-12, 12]."""
    ts, ws = D.time_nodes(T, pieces=(t_min,) + tuple(k for k in _HAT_PIECES if k > t_min), n=n)
    gap = 0.0
    for ti, wi in zip(ts, ws):
        t = float(ti)
        gap += wi * (D.ce_value(DATA, MODEL, t, lambda x: fam.logit(x, t), _PATH_X)
                     - D.ce_value(DATA, MODEL, t, D.bayes_logit(DATA, MODEL, t), _PATH_X))
    return float(gap / (T - t_min))


def _paired(name: str, gm: list, ce: list, err: list, counted: bool, why: str, log: bool = False,
            info: str = "") -> Measurement:
    r"""Mean paired difference :math:`\Delta_r = \mathrm{KL}_{GM,r} - \mathrm{KL}_{CE,r}` (``log``:
    :math:`\log\mathrm{KL}_{GM,r} - \log\mathrm{KL}_{CE,r}`) with its Student-t interval at the ensemble level,
    :math:`\bar\Delta \pm t_{R-1}\,s_\Delta/\sqrt R`; pass line: the interval's upper end below minus the
    largest discretisation error of a pair (``err[r]`` bounds pair r's error, on the scale of :math:`\Delta`).
    ``counted=False``: recorded, with ``info`` saying why it is not asserted."""
    d = np.log(gm) - np.log(ce) if log else np.subtract(gm, ce)
    ci = _t_interval(d)
    q = (ci.hi - ci.mean) / ci.se if ci.se > 0 else math.nan  # t_{R-1} at the ensemble level
    return Measurement(
        name=name, measured=ci.mean, ci=ci.ci, predicted=-float(max(err)), kind="le", tol=0.0, counted=counted,
        reason=(f"the paper's ordering, strictly: upper end of the Student-t interval of the mean of {d.size} paired "
                f"differences (one per independent training set), two-sided level ENSEMBLE_LEVEL = 1 - 2.5e-6 "
                f"(t_{d.size - 1} = {q:.2f}: a chance failure anywhere in a 20-seed ensemble of <= 200 intervals has "
                f"probability < 1%), must lie below minus the largest discretisation error of a pair ({why}; "
                f"note #c7-1d-trained)" if counted else
                f"informational: {info}; interval and pass line as for the counted orderings ({why}; "
                f"note #c7-1d-trained)"),
        extra={"differences": d.tolist(), "gm": list(gm), "ce": list(ce), "t_quantile": q, "se": ci.se})


def _trained_1d_figure(pl, p: dict, cols: dict, out: list, small: dict, base: float) -> None:
    """Science figure of the 1-D trained claim: paired differences per sampler and for the path KL (mean with its
    interval against the pass line), and SDE endpoint KL against path KL for every fit (Girsanov: below y = x).

    Parameters
    ----------
    pl : PlotRecorder
        The claim's ``ctx.plot``.
    p : dict
        The claim's parameters.
    cols : dict
        Per-fit columns: ``"<obj> <quantity>"`` lists over training sets (quantity sde, ode, path).
    out : list of Measurement
        The claim's measurements: [SDE difference, ODE log ratio, path difference, endpoint - path, ...].
    small : dict
        The n = 100 table (empty in control runs).
    base : float
        The unrefined KL(p || p_theta) on the endpoint grid.
    """
    for key, m, q in (("sde", out[0], "sde"), ("ode", out[1], "ode"), ("path", out[2], "path")):
        gm, ce = cols[f"gm {q}"], cols[f"ce {q}"]
        d = np.log(gm) - np.log(ce) if key == "ode" else np.subtract(gm, ce)
        what = "log KL(GM) - log KL(CE)" if key == "ode" else "KL(GM) - KL(CE)"
        pl.panel(key, title=f"{key}: {what} per training set (n = {p['rep_size']:g})",
                 xlabel="training set (-2: mean, ensemble-level t-interval)", ylabel="paired difference")
        pl.measured(key, np.arange(d.size), d, label="per training set")
        pl.measured(key, [-2.0], [m.measured], lo=[m.ci[0]], hi=[m.ci[1]], label="mean")
        pl.bound(key, [-3.0, float(d.size)], [m.predicted] * 2, label="pass line")
    pl.panel("girsanov", title="SDE endpoint KL <= path KL for every fit", xlabel="path KL", ylabel="endpoint KL",
             xscale="log", yscale="log")
    for obj in ("gm", "ce"):
        pl.measured("girsanov", cols[f"{obj} path"], cols[f"{obj} sde"], label=f"{obj} fits")
    ends = [min(cols["gm path"] + cols["ce path"]), max(cols["gm path"] + cols["ce path"])]
    pl.bound("girsanov", ends, ends, label="endpoint = path")
    pl.reference("girsanov", ends, [base, base], label="unrefined KL")
    if small:
        pl.panel("small", title=f"n = {p['n_small']}, lam = {p['lam_small']:g}: endpoint KLs (one training set)",
                 xlabel="0: SDE, 1: PF-ODE", ylabel="endpoint KL", yscale="log")
        for obj in ("gm", "ce"):
            pl.measured("small", [0.0, 1.0], [small[f"{obj} sde"], small[f"{obj} ode"]], label=obj)
        pl.reference("small", [-0.5, 1.5], [base, base], label="unrefined KL")


@claim(
    id="discriminator.trained_1d",
    paper=PAPER,
    statement="C7 in 1-D (setting G): over independent training sets of size n, random-Fourier x time-hat logits with "
              "the same ridge trained by gradient matching (GM) and by cross-entropy (CE), paired by training set: "
              "the PF-ODE endpoint KL of GM is below CE's (mean paired log ratio < 0), and at n = 1e5 (full profile) "
              "also the reverse-SDE endpoint KL and the path KL (mean paired difference KL_GM - KL_CE < 0), each by "
              "a Student-t interval at the ensemble level; every fit's SDE endpoint KL <= its path KL (Girsanov + "
              "data processing); at n = 1e4 the SDE and path differences (CE wins on the SDE endpoint there) and, at "
              "n = 100 with a weak ridge, the population CE gaps and endpoint KLs are recorded, not asserted",
    note=f"{NOTE}#c7-1d-trained",
    provenance="reconstructed",
    quick={"rep_size": 10000, "n_rep": 10, "lam": 1e-3, "repeats": 2, "dx": 0.04, "dtau": 0.032,
           "ordered": ["ode"], "n_small": 100, "lam_small": 1e-4, "dx_small": 0.02, "dtau_small": 0.016},
    full={"rep_size": 100000, "n_rep": 40, "lam": 1e-3, "repeats": 2, "dx": 0.02, "dtau": 0.008,
          "ordered": ["sde", "ode", "path"], "n_small": 100, "lam_small": 1e-4, "dx_small": 0.01,
          "dtau_small": 0.004},
    reduced={"rep_size": 10000, "n_rep": 10, "dx": 0.04, "dtau": 0.032, "ordered": ["ode"], "dx_small": 0.02,
             "dtau_small": 0.016},
    reduced_reason="the quick profile's 10 sets of 1e4 on its grids: the full profile's 40 fits of 1e5 take about "
                   "1.5 min of CPU; the SDE and path orderings at 1e5 are the full profile's only (run it)",
    controls={"logit_sign": "the sampler uses the logit of the other class: refined score s_theta - w grad d",
              "gm_alpha_dropped": "the gradient-matching target -(x_t - x_0)/sigma_t^2 without alpha_t",
              "sde_drift_half": SDE_DRIFT_HALF,
              "ode_drift_double": "PF-ODE drift x + 2s instead of x + s (the reverse SDE's g^2 where g^2/2 belongs)"},
)
def trained_1d(ctx: Context) -> list[Measurement]:
    p = ctx.params
    sign = -1.0 if ctx.bug("logit_sign") else 1.0
    alpha = ctx.bug("gm_alpha_dropped")
    half, double = ctx.bug("sde_drift_half"), ctx.bug("ode_drift_double")
    seed = ctx.sub_seed
    n, lam, rp, dx, dtau = p["rep_size"], p["lam"], p["repeats"], p["dx"], p["dtau"]
    cols: dict[str, list[float]] = {f"{o} {q}": [] for o in ("gm", "ce") for q in
                                    ("sde", "sde_err", "ode", "ode_err", "path", "path_err")}
    girsanov = []
    for rep in range(p["n_rep"]):
        for obj in ("gm", "ce"):
            fit = (obj, n, seed, rep, lam, rp, alpha and obj == "gm")
            kl, err = _sampler_kl_1d("sde", fit, dx, dtau, sign, half)
            okl, oerr = _sampler_kl_1d("ode", fit, dx, dtau, sign, double)
            path, perr = _path_1d(fit)
            for q, v in (("sde", kl), ("sde_err", err), ("ode", okl), ("ode_err", oerr), ("path", path),
                         ("path_err", perr)):
                cols[f"{obj} {q}"].append(v)
            girsanov.append(kl - (path + err + perr))
    not_ordered = (f"at n = {n:g} this ordering is not asserted (the SDE endpoint ordering reverses at n = 1e4; "
                   "the path-KL ordering holds on average but with a spread no affordable number of training sets "
                   "resolves at the ensemble level); counted in the full profile (n = 1e5, 40 sets)")
    pair_err = {q: np.add(cols[f"gm {q}_err"], cols[f"ce {q}_err"]) for q in ("sde", "ode", "path")}
    log_err = np.add(np.divide(cols["gm ode_err"], cols["gm ode"]), np.divide(cols["ce ode_err"], cols["ce ode"]))
    out = [
        _paired(f"reverse SDE: mean paired endpoint-KL difference GM - CE over {p['n_rep']} training sets of "
                f"n={n:g} < 0", cols["gm sde"], cols["ce sde"], pair_err["sde"], "sde" in p["ordered"],
                "endpoint errors: dx, dtau doubling of both fits", info=not_ordered),
        _paired(f"PF-ODE: mean paired log endpoint-KL ratio log KL_GM - log KL_CE over {p['n_rep']} training sets "
                f"of n={n:g} < 0", cols["gm ode"], cols["ce ode"], log_err, "ode" in p["ordered"],
                "on the log scale: the CE endpoints spread over an order of magnitude, so the linear difference is "
                "dominated by CE's upper tail; the same ordering per pair; pair error err_GM/KL_GM + err_CE/KL_CE "
                "(first order), endpoint errors by dx, dtau doubling", log=True, info=not_ordered),
        _paired(f"path KL: mean paired difference GM - CE over {p['n_rep']} training sets of n={n:g} < 0",
                cols["gm path"], cols["ce path"], pair_err["path"], "path" in p["ordered"],
                "path-KL errors: 12 vs 6 Gauss nodes per hat piece of both fits", info=not_ordered),
        Measurement(name="max over every fit of SDE endpoint KL - (path KL + errors)", measured=max(girsanov),
                    predicted=0.0, kind="le", tol=0.0,
                    reason="Girsanov + data processing: KL(p_0 || endpoint) <= KL of the path laws for the reverse "
                           "SDE (not for the PF-ODE); each fit's bound carries its own quadrature errors (endpoint: "
                           "dx, dtau doubling; path: 12 vs 6 Gauss nodes per hat piece; note #c7-1d-trained)",
                    extra={"endpoint_over_path": {o: np.divide(cols[f"{o} sde"], cols[f"{o} path"]).tolist()
                                                  for o in ("gm", "ce")},
                           "max_endpoint_minus_path": float(max(np.max(np.subtract(cols[f"{o} sde"],
                                                                                 cols[f"{o} path"]))
                                                                for o in ("gm", "ce")))}),
    ]
    out.append(_paired(f"PF-ODE: mean paired endpoint-KL difference GM - CE (linear scale) over {p['n_rep']} "
                       f"training sets of n={n:g}", cols["gm ode"], cols["ce ode"], pair_err["ode"], False,
                       "endpoint errors: dx, dtau doubling of both fits",
                       info="the CE endpoints spread over an order of magnitude, so this difference is dominated by "
                            "CE's upper tail; the counted ODE ordering is the log ratio"))
    base, _ = _grid_quantities(dx)
    small: dict[str, float] = {}
    if ctx.control is None:  # informational: one training set of n_small with weak ridge (overfitting regime)
        for obj in ("gm", "ce"):
            fit = (obj, p["n_small"], seed, 0, p["lam_small"], rp, False)
            small[f"{obj} sde"], small[f"{obj} sde_err"] = _sampler_kl_1d("sde", fit, p["dx_small"], p["dtau_small"])
            small[f"{obj} ode"], small[f"{obj} ode_err"] = _sampler_kl_1d("ode", fit, p["dx_small"], p["dtau_small"])
            small[f"{obj} path"] = _path_1d(fit)[0]
            small[f"{obj} ce_gap"] = population_ce_gap(_fit_1d(*fit))
        out.append(Measurement(
            name=f"n={p['n_small']}, lam={p['lam_small']:g}: endpoint KLs of both objectives against the unrefined KL",
            measured=float(min(small["gm sde"], small["ce sde"]) > base), kind="true", counted=False,
            reason="informational (1.0: both SDE endpoints above the unrefined KL): one training set in the "
                   "overfitting regime; no ordering is claimed there (note #c7-1d-trained)",
            extra={"unrefined": base, **small}))
    out[3].extra["errors"] = {k: v for k, v in cols.items() if k.endswith("_err")}
    _trained_1d_figure(ctx.plot, p, cols, out, small, base)
    return out

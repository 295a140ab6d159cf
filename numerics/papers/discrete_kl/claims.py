r"""Claims of Reeves & Pfister, *Information-theoretic proofs for diffusion sampling* (arXiv 2502.02305).

Setting (SNR time, see :mod:`numerics.papers.discrete_kl.channel`): comparison chain :math:`Y_k = Y_{k-1} + \delta_kX + \sqrt{\delta_k}N_k`,
sampler :math:`\hat Y_k = \hat Y_{k-1} + \delta_kf_k(\hat Y_{k-1}) + \sqrt{\delta_k}N_k`, both from 0;
:math:`\Delta_n` is the KL of the comparison path from the sampler path.  Only the paper's abstract and the
caption of its Figure 1 were read: Lemma 2's content ("half the gap between the left Riemann sum of M and
its integral") and the mechanism of Theorem 1 ("the red areas sum to at most delta_max tr Cov") are quoted
in substance; every formula, constant and the other statements are our reconstruction
(``proofs_notes/discrete_kl.md``).

Where a claim tests the sampler, Delta_n is computed from the sampler's own transition laws: by the chain
rule of KL with nested quadrature (:func:`channel.path_kl_chain`), or, for Gaussian targets, directly from
the Gaussian laws of the two whole paths (:func:`channel.gaussian_path_kl`, no chain rule and no Lemma 2).
The Riemann-gap formula of Lemma 2 (:func:`channel.riemann_gap`) is used where the claim is about it.

Numbers: 1-D conditional expectations by the trapezoid rule in ``y`` (error ~1e-15, estimated a posteriori
by a 1.5x finer rule), inner KL integrals by Gauss-Hermite; the estimates enter the tolerances.  Every
tolerance is derived in ``proofs_notes/discrete_kl.md#tolerances`` (or the section its reason names).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import mpmath as mp
import numpy as np

from numerics.checks.claim import Context, Measurement, claim
from numerics.checks.plots import decades
from numerics.constants import UNIT_ROUNDOFF as U
from numerics.papers.discrete_kl import channel as C
from numerics.papers.discrete_kl import readout_2d as RO
from numerics.references.grid_density import run_concurrently
from numerics.stats import loglog_slope

NOTE = "proofs_notes/discrete_kl.md"
PAPER = "discrete_kl"
TOL = f"{NOTE}#tolerances"

#: 2 zeta(3) / (2 pi)^3: the Euler-Maclaurin remainder constant after the delta^2 term (note #rate).
EM3 = 2 * 1.2020569031595942 / (2 * math.pi) ** 3


def _targets():
    return {"binary": C.binary(), "gaussian": C.gaussian([0.0], 2.0),
            "three_point": C.discrete([-1.0, 0.0, 2.0], [0.3, 0.4, 0.3], name="three-point"),
            "gaussian2": C.gaussian([0.5, -0.3], [[1.0, 0.8], [0.8, 1.0]], name="gaussian 2-D rho=0.8")}


def _inexact(y, t):
    """The note's inexact denoiser for the binary target: tanh(y) + 0.3 sin(y)."""
    return np.tanh(y) + 0.3 * np.sin(y)


def _end_of_step_f(target, ts):
    """Control: the sampler's denoiser evaluated at the end t_k of the step instead of its start t_{k-1}."""
    nxt = dict(zip(ts[:-1].tolist(), ts[1:].tolist()))

    def f(y, tp):
        return target.posterior_mean(np.asarray(y, dtype=float).reshape(-1, target.d), nxt[float(tp)])
    return f


def _elementwise_f(target):
    """Control (Gaussian targets): the posterior mean mu + S_t (y - t mu) with the gain
    S_t = Sigma (I + t Sigma)^{-1} computed entrywise, Sigma / (1 + t Sigma)."""
    mu, S = target.means[0], target.covs[0]
    return lambda y, tp: mu + (y - tp * mu) @ (S / (1.0 + tp * S)).T


def _noise_std_delta(dk):
    """Control: the sampler's noise std delta instead of sqrt(delta), i.e. variance delta^2."""
    return dk * dk


_CACHE: dict = {}


def _memo(key, fn):
    """Memoise a deterministic value across the stated and control runs of a claim (same parameters)."""
    if key not in _CACHE:
        _CACHE[key] = fn()
    return _CACHE[key]


def _chain(target, ts, inner, nodes=C.DEFAULT_NODES, f=None, noise_var=None):
    """Chain-rule Delta of the sampler and its error estimate: the change when the outer and inner rules get
    1.5x the nodes (value of the finer pair).  Memoised for the stated sampler and the module-level denoiser
    (the control runs recompute only what their bug changes)."""
    key = None
    if f in (None, _inexact) and noise_var in (None, _noise_std_delta):
        key = (target.name, np.asarray(ts).tobytes(), inner, nodes, f, noise_var)
        if key in _CACHE:
            return _CACHE[key]
    a = C.path_kl_chain(target, ts, f=f, nodes=nodes, inner_nodes=inner, noise_var=noise_var)
    b = C.path_kl_chain(target, ts, f=f, nodes=int(1.5 * nodes), inner_nodes=int(1.5 * inner), noise_var=noise_var)
    out = (b, abs(a - b))
    if key is not None:
        _CACHE[key] = out
    return out


def _gauss_delta(target, ts, f=None, noise_var=None):
    """Direct Gaussian path KL of the sampler and its rounding allowance 2 N^2 u (note #tolerances)."""
    r = C.gaussian_path_kl(target, ts, f=f, noise_var=noise_var)
    return r, 2.0 * r["dim"] ** 2 * U


def _sampler_delta(target, ts, inner, nodes, end_of_step=False, noise=False):
    """Delta_n of the sampler with the exact denoiser from its own transition laws (chain rule, or the direct
    Gaussian path law for a Gaussian target), with an error estimate; the flags switch on controls."""
    nv = _noise_std_delta if noise else None
    if target.K == 1:
        r, e = _gauss_delta(target, ts, f=_end_of_step_f(target, ts) if end_of_step else None, noise_var=nv)
        return r["path"], e
    return _chain(target, ts, inner, nodes, f=_end_of_step_f(target, ts) if end_of_step else None, noise_var=nv)


_SUP: dict = {}


def heat_sup(k: int) -> float:
    r"""sup_y |(L^k tanh)(y)|, L = d/dy + (1/2) d^2/dy^2, so that |M^{(k)}(t)| <= heat_sup(k) for the binary
    target (note #binary-derivatives).  L^k tanh is a polynomial in u = tanh y (d/dy acts as
    p -> p'(u)(1 - u^2)); its sup over [-1, 1] is taken at the critical points and on a 2e5-point grid."""
    if k not in _SUP:
        from numpy.polynomial import Polynomial as Poly
        u = Poly([0.0, 1.0])
        p = u
        for _ in range(k):
            dp = p.deriv() * (1 - u * u)
            p = dp + 0.5 * dp.deriv() * (1 - u * u)
        crit = [r.real for r in p.deriv().roots() if abs(r.imag) < 1e-9 and -1 <= r.real <= 1]
        grid = np.linspace(-1.0, 1.0, 200001)
        _SUP[k] = float(max(np.abs(p(grid)).max(), *(abs(p(c)) for c in crit), abs(p(-1.0)), abs(p(1.0))))
    return _SUP[k]


# ------------------------------------------------------------------------------------------------ C1
# (each @claim(...) below declares a different claim: their shared keyword layout is declaration, not a repeated helper)
def _float64_prior_dropped(target, t, n):
    """Control: float64 M and I with the posterior weights computed without the prior log pi_j (as if the
    atoms were equally likely); same nodes and same 1.5x-node estimate as :func:`channel.mmse`."""
    flat = dataclasses.replace(target, weights=np.full(target.K, 1.0 / target.K))
    cond = sum(0.5 * target.weights[j] * math.log1p(t * target.covs[j, 0, 0]) for j in range(target.K))

    def one(nn):
        y, w, comp = target.nodes(t, nn)
        post = flat.posterior(y, t)
        M = float(np.dot(w, np.trace(post.cov, axis1=1, axis2=2)))
        I = cond + target.entropy + float(np.dot(w, post.log_weights[np.arange(y.shape[0]), comp]))
        return M, I
    (M1, I1), (M2, I2) = one(n), one(int(math.ceil(1.5 * n)))
    return (M2, abs(M2 - M1)), (I2, abs(I2 - I1))


@claim(
    id="discrete_kl.immse",
    paper=PAPER,
    statement="I-MMSE: d/dt I(X; Y_t) = M(t)/2 (binary input, 25-30-digit mpmath); float64 M and I agree with "
              "mpmath to their quadrature estimate plus a rounding bound (binary, asymmetric 3-point and "
              "2-component Gaussian-mixture inputs)",
    note=f"{NOTE}#i-mmse",
    provenance="standard",
    quick={"times": [0.1, 1.0, 5.0], "dps": 25},
    full={"times": [0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 8.0], "dps": 30},
    controls={"half_dropped": "the I-MMSE relation without its 1/2 (dI/dt compared with M)",
              "prior_dropped": "float64 posterior weights without the prior log pi_j (components taken equally likely)"},
)
def immse(ctx: Context) -> list[Measurement]:
    """The central difference has relative truncation error <= (h^2/6) sup|M''| / M(t) with sup|M''| <=
    heat_sup(2) (note #binary-derivatives); tanh-sinh at dps digits is taken good to 10^(3-dps) relative,
    which the difference amplifies by 1/h.  The float64 side: quadrature estimate + rounding bound (note
    #tolerances)."""
    p = ctx.params
    dps = p["dps"]
    half = 1.0 if ctx.bug("half_dropped") else 0.5
    h = 1e-7
    b = C.binary()
    worst_id, rows = 0.0, []
    for t in p["times"]:
        def ref():
            with mp.workdps(dps):
                hh = mp.mpf(h)
                dI = (C.mp_mutual_info(b, mp.mpf(t) + hh, dps=dps) - C.mp_mutual_info(b, mp.mpf(t) - hh, dps=dps)) / (2 * hh)
                return C.mp_mmse(b, t, dps=dps), dI
        M_mp, dI = _memo(("immse-dI", t, dps, h), ref)
        Mf = float(M_mp)
        tol_id = h * h / 6 * heat_sup(2) / Mf + 2 * 10.0 ** (3 - dps) / h / Mf
        with mp.workdps(dps):
            rel_id = float(abs(dI - half * M_mp) / (half * M_mp))
        worst_id = max(worst_id, rel_id / tol_id)
        rows.append({"t": t, "dI/dt": float(dI), "M/2": Mf / 2, "rel |dI/dt - M/2|": rel_id, "tol": tol_id})
    worst_f64, rows64 = 0.0, []
    mix = C.gaussian_mixture([0.4, 0.6], [[-1.0], [1.5]], [[[0.5]], [[0.2]]], name="gaussian mixture")
    for target in (b, _targets()["three_point"], mix):
        # size of the posterior means: |mu_j| + |S_j (y - t mu_j)| <= |mu_j| + 13 sqrt(Sigma_j) on the rule's span
        xmax2 = float(np.max((np.abs(target.means[:, 0]) + 13 * np.sqrt(target.covs[:, 0, 0])) ** 2))
        for t in p["times"]:
            M_mp, I_mp = _memo(("immse-MI", target.name, t),  # 20 digits: 1e-20 << the float64 tolerances
                               lambda: (float(C.mp_mmse(target, t, dps=20)), float(C.mp_mutual_info(target, t, dps=20))))
            if ctx.bug("prior_dropped"):
                (M64, eM), (I64, eI) = _float64_prior_dropped(target, t, C.DEFAULT_NODES)
            else:
                (M64, eM), (I64, eI) = C.mmse(target, t, err=True), C.mutual_info(target, t, err=True)
            P = target.nodes(t, int(math.ceil(1.5 * C.DEFAULT_NODES)))[1].size
            tol_M = eM + P * U * M_mp + 8 * U * 4 * xmax2
            tol_I = eI + P * U * target.entropy + 8 * U * (2 + abs(math.log(2 * math.pi * t))
                                                           - math.log(float(target.weights.min())))
            worst_f64 = max(worst_f64, abs(M64 - M_mp) / tol_M, abs(I64 - I_mp) / tol_I)
            rows64.append({"target": target.name, "t": t, "M_f64 - M_mp": M64 - M_mp, "tol_M": tol_M,
                           "I_f64 - I_mp": I64 - I_mp, "tol_I": tol_I})
    ctx.plot.agreement("immse", [r["t"] for r in rows], [r["rel |dI/dt - M/2|"] for r in rows],
                [r["tol"] for r in rows], title="I-MMSE, binary X (mpmath): rel |dI/dt - M/2|",
                xlabel="SNR time t", ylabel="relative error")
    case = np.arange(1, len(rows64) + 1)
    cases = ", ".join(dict.fromkeys(r["target"] for r in rows64))
    for q in ("M", "I"):
        ctx.plot.agreement(f"f64-{q}", case, [abs(r[f"{q}_f64 - {q}_mp"]) for r in rows64],
                    [r[f"tol_{q}"] for r in rows64], xscale="linear", xlabel=f"case ({cases}; t = {p['times']} each)",
                    ylabel=f"|{q} float64 - {q} mpmath|", title=f"float64 {q}(t) against mpmath")
    return [
        Measurement("max rel |dI/dt - M/2| / tol (mpmath)", worst_id, 1.0, "le", 0.0,
                    f"per time tol = (h^2/6) heat_sup(2)/M(t) + 2 10^(3-dps)/(h M(t)), h = 1e-7 ({NOTE}#i-mmse)",
                    extra={"rows": rows, "heat_sup(2)": heat_sup(2),
                           "note_values": {"0.1": 0.45432970, "1": 0.22479975, "5": 0.01923141}}),
        Measurement("max |float64 - mpmath| / tol (M and I)", worst_f64, 1.0, "le", 0.0,
                    f"per case tol = 1.5x-node quadrature estimate + summation (P u) and per-node rounding ({TOL})",
                    extra={"rows": rows64}),
    ]


# ------------------------------------------------------------------------------------------------ C2
def _lemma2_cases(p):
    tg = _targets()
    return [(tg[name], T, n) for name, T, n in p["cases"]]


@claim(
    id="discrete_kl.lemma2_riemann_gap",
    paper=PAPER,
    statement="Lemma 2: with exact conditional means, Delta_n = (1/2) sum_k [delta_k M(t_{k-1}) - int M] "
              "(chain rule of KL computed independently)",
    note=f"{NOTE}#lemma-2",
    provenance="quoted",
    quick={"cases": [["binary", 8.0, 8], ["binary", 8.0, 16], ["gaussian", 10.0, 4], ["three_point", 6.0, 6]],
           "inner": 48},
    full={"cases": [["binary", 8.0, 8], ["binary", 8.0, 256], ["gaussian", 10.0, 4], ["gaussian", 10.0, 256],
                    ["three_point", 6.0, 6], ["three_point", 6.0, 96]], "inner": 64},
    controls={"right_rule": "the gap formula with M(t_k) (right end of the step) in place of M(t_{k-1})",
              "denoiser_end_of_step": "the sampler's denoiser evaluated at t_k instead of t_{k-1}"},
)
def lemma2(ctx: Context) -> list[Measurement]:
    """(a) chain rule: per-step KL of the Gaussian-mixture increment law from the sampler's N(delta f, delta) by
    nested quadrature (Gaussian, exact f: closed-form per-step KL, whose log terms do not telescope by
    construction); (b) the left-Riemann gap with I(t_n) from the mutual-information quadrature."""
    rule = "right" if ctx.bug("right_rule") else "left"
    worst, rows = 0.0, []
    for target, T, n in _lemma2_cases(ctx.params):
        ts = C.schedule("uniform", T=T, n=n)
        # the symmetric binary target's denoiser tanh(y) does not depend on t: the bug is the identity there,
        # so its (memoised) stated value is reused
        eos = ctx.bug("denoiser_end_of_step") and target.name != "binary"
        f = _end_of_step_f(target, ts) if eos else None
        a, ea = _chain(target, ts, ctx.params["inner"], f=f)
        b, eb = C.riemann_gap(target, ts, err=True, rule=rule)
        case_tol = ea + eb + 64 * n * U * max(1.0, target.tr_cov * T)
        worst = max(worst, abs(a - b) / case_tol)
        rows.append({"target": target.name, "T": T, "n": n, "chain": a, "gap": b, "tol": case_tol})
    _lemma2_figure(ctx, rows)
    return [Measurement("max |chain - gap| / tol", worst, 1.0, "le", 0.0,
                        "per case tol = quadrature change (1.5x outer and inner nodes) + Riemann-gap quadrature "
                        f"estimate + 64 n u max(1, T tr Cov) summation rounding ({TOL})",
                        # |chain - gap| is quadrature and rounding noise of two routes: its ratio to tol moves
                        # with the platform's libm and summation order, and any value in [0, 1] passes alike
                        extra={"rows": rows, "rule": rule, "drift_tol": 1.0,
                               "note_values": {"binary n=8": 0.2866020, "binary n=256": 7.796958e-3,
                                               "gaussian n=4": 1.777928, "gaussian n=256": 1.885477e-2,
                                               "three_point n=6": 0.4088, "three_point n=96": 0.02125}})]


def _lemma2_figure(ctx: Context, rows: list) -> None:
    """Lemma 2's picture (M(t) of the binary target and its left-Riemann steps, n = 8, T = 8), then per case
    the chain-rule Delta_n against the gap formula and their difference against its tolerance."""
    ts = C.schedule("uniform", T=8.0, n=8)
    grid = np.linspace(0.0, 8.0, 161)
    M, Mk = _memo(("lemma2-M",), lambda: (C.mmse(C.binary(), grid), C.mmse(C.binary(), ts[:-1])))
    ctx.plot.panel("M", title="Lemma 2: Delta_n = half the area between the steps and M (n = 8)",
                   xlabel="SNR time t", ylabel="M(t), binary X")
    ctx.plot.reference("M", grid, M, label="M(t)")
    ctx.plot.predicted("M", np.repeat(ts, 2)[1:-1], np.repeat(Mk, 2), label="left-Riemann steps M(t_{k-1})")
    case = np.arange(1, len(rows) + 1)
    xl = "case (" + ", ".join(f"{r['target']} n={r['n']}" for r in rows) + ")"
    ctx.plot.panel("delta", title="Delta_n: chain rule (measured) vs gap formula", xlabel=xl, ylabel="Delta_n",
                   yscale="log")
    ctx.plot.measured("delta", case, [r["chain"] for r in rows], label="chain rule of KL")
    ctx.plot.predicted("delta", case, [r["gap"] for r in rows], label="(1/2) left-Riemann gap", style="points")
    ctx.plot.agreement("diff", case, [abs(r["chain"] - r["gap"]) for r in rows], [r["tol"] for r in rows],
                xscale="linear", title="|chain - gap| against its tolerance", xlabel=xl, ylabel="|chain - gap|")


# ------------------------------------------------------------------------------------------------ C3
def _front_loaded(T, m):
    """One step of T/4, then m equal steps to T: a schedule whose largest step is far above its mean."""
    return np.concatenate([[0.0], np.linspace(T / 4, T, m + 1)])


@claim(
    id="discrete_kl.theorem1_bound",
    paper=PAPER,
    statement="Theorem 1: Delta_n <= (1/2) delta_max tr Cov(X) + (1/2) sum_k delta_k E|f_k - E[X|Y_{k-1}]|^2 "
              "on uniform, geometric, front-loaded and random schedules (Delta_n of the sampler, from its "
              "transition laws)",
    note=f"{NOTE}#theorem-1",
    provenance="reconstructed",
    quick={"n_uniform": [8, 16], "geometric": [[0.05, 0.5, 10]], "front": 12, "n_random": 12, "n_inexact": 32,
           "inner": 40, "nodes": 80},
    full={"n_uniform": [8, 32, 128], "geometric": [[0.05, 0.5, 10], [0.01, 0.25, 30]], "front": 24,
          "n_random": 40, "n_inexact": 32, "inner": 48, "nodes": 96},
    controls={"mean_step": "the bound with the mean step t_n/n in place of the largest step delta_max",
              "estimation_omitted": "the bound for the inexact denoiser without its estimation term",
              "noise_std_delta": "the sampler's noise std delta instead of sqrt(delta) (variance delta^2)"},
)
def theorem1(ctx: Context) -> list[Measurement]:
    """Exact denoisers: Delta of the sampler by the chain rule (nested quadrature; binary, three-point) or from
    the Gaussian path laws (Gaussian); inexact denoiser (binary, tanh + 0.3 sin): chain-rule Delta."""
    p, tg = ctx.params, _targets()
    scheds = []
    for name, T in (("binary", 8.0), ("gaussian", 10.0), ("three_point", 6.0)):
        for n in p["n_uniform"]:
            scheds.append((name, "uniform", C.schedule("uniform", T=T, n=n)))
        for t1, c, n in p["geometric"]:
            scheds.append((name, "geometric", C.schedule("geometric", t1=t1, c=c, n=n)))
        scheds.append((name, "front-loaded", _front_loaded(T, p["front"])))
        scheds.append((name, "random", C.schedule("random", T=T, n=p["n_random"], rng=ctx.rng)))
    worst, rows = 0.0, []
    for name, kind, ts in scheds:
        target = tg[name]
        D, e = _sampler_delta(target, ts, p["inner"], p["nodes"], noise=ctx.bug("noise_std_delta"))
        step = ts[-1] / (ts.size - 1) if ctx.bug("mean_step") else np.diff(ts).max()
        bound = 0.5 * step * target.tr_cov
        worst = max(worst, (D - e) / bound)
        rows.append({"target": name, "schedule": kind, "n": ts.size - 1, "Delta": D, "err": e, "bound": bound})
    b = C.binary()
    ts = C.schedule("uniform", T=8.0, n=p["n_inexact"])
    Di, ei = _chain(b, ts, p["inner"], p["nodes"], f=_inexact)
    est1 = float(C.expected_estimation_error(b, ts, _inexact).sum())
    est2 = float(C.expected_estimation_error(b, ts, _inexact, nodes=int(1.5 * C.DEFAULT_NODES)).sum())
    bound_i = 0.5 * np.diff(ts).max() * b.tr_cov + (0.0 if ctx.bug("estimation_omitted") else est2)
    for name in ("binary", "gaussian", "three_point"):
        tr = tg[name].tr_cov
        sel = sorted((r["bound"] / (0.5 * tr), r["Delta"] - r["err"]) for r in rows if r["target"] == name)
        x = np.array([v[0] for v in sel])
        ctx.plot.panel(name, title=f"{tg[name].name}: Delta_n on {len(sel)} schedules",
                       xlabel="step in the bound (delta_max)", ylabel="Delta_n - err", xscale="log", yscale="log")
        ctx.plot.measured(name, x, [v[1] for v in sel])
        xb = decades(x.min() / 1.5, x.max() * 1.5)
        ctx.plot.bound(name, xb, 0.5 * tr * xb, label="Theorem 1: (1/2) delta_max tr Cov")
    ctx.plot.versus_bound("inexact", bound_i, Di, title=f"inexact denoiser (binary, n = {p['n_inexact']})",
                   xlabel="Theorem 1 bound incl. estimation term", ylabel="Delta_n (chain rule)")
    return [
        Measurement("max (Delta - err)/bound (exact denoisers)", worst, 1.0, "le", 0.0,
                    f"Delta lowered by its quadrature (or rounding) estimate before the ratio ({TOL})",
                    extra={"rows": rows, "note": "note: binary n=8 0.2866 <= 0.5; n=256 7.797e-3 <= 1.5625e-2"}),
        Measurement("Delta - bound (inexact denoiser)", Di - bound_i, 0.0, "le", ei + abs(est1 - est2),
                    f"quadrature change (1.5x nodes) of the chain-rule Delta and of the estimation term ({TOL})",
                    extra={"Delta": Di, "bound": bound_i, "estimation_term": est2}),
    ]


# ------------------------------------------------------------------------------------------------ C4
@claim(
    id="discrete_kl.estimation_decomposition",
    paper=PAPER,
    statement="Delta_n (inexact f) = Riemann gap + (1/2) sum_k delta_k E|f_k(Y_{k-1}) - E[X|Y_{k-1}]|^2 "
              "under the comparison law",
    note=f"{NOTE}#estimation-decomposition",
    provenance="reconstructed",
    quick={"n": 32, "T": 8.0, "inner": 40},
    full={"n": 64, "T": 8.0, "inner": 64},
    controls={"delta_squared": "the estimation term with delta_k^2 in place of delta_k "
                               "(the 1/delta of the Gaussian shift forgotten)"},
)
def decomposition(ctx: Context) -> list[Measurement]:
    b = C.binary()
    ts = C.schedule("uniform", T=ctx.params["T"], n=ctx.params["n"])
    D, e = _chain(b, ts, ctx.params["inner"], f=_inexact)
    gap, eg = C.riemann_gap(b, ts, err=True)
    est = C.expected_estimation_error(b, ts, _inexact, nodes=int(1.5 * C.DEFAULT_NODES))
    est_c = C.expected_estimation_error(b, ts, _inexact)
    if ctx.bug("delta_squared"):
        est, est_c = est * np.diff(ts), est_c * np.diff(ts)
    rhs = gap + float(est.sum())
    tol = e + eg + abs(float(est.sum() - est_c.sum())) + 64 * ts.size * U
    ctx.plot.panel("est", title="estimation term per step (binary, f = tanh y + 0.3 sin y)",
                   xlabel="step start t_{k-1}", ylabel="(1/2) delta_k E|f_k - E[X|Y_{k-1}]|^2", yscale="log")
    ctx.plot.measured("est", ts[:-1], est, style="line")
    ctx.plot.agreement("id", [ctx.params["n"]], [abs(D - rhs)], tol, title="|chain - (gap + estimation)|",
                xlabel="steps n", ylabel="|chain - (gap + estimation)|")
    return [Measurement("|chain - (gap + estimation)|", abs(D - rhs), 0.0, "le", tol,
                        "quadrature changes (1.5x nodes) of the chain rule, the gap and the estimation term "
                        f"+ 64 n u summation ({TOL})",
                        extra={"chain": D, "gap": gap, "estimation": float(est.sum()),
                               "note_value": 0.23594852 if ctx.params["n"] == 32 else None})]


# ------------------------------------------------------------------------------------------------ C5
def terminal_interval(target, T, n):
    """Rigorous interval for n^2 D(P_{Y_T} || Law(hat Y_n)), Gaussian target, uniform steps, exact gains
    (note #terminal-rate): sum over the eigenvalues lambda of Sigma of [(xi-eta)^2/4, (xi+eta)^2/4 +
    (xi+eta)^3/(2(n - xi - eta))], xi = (1+T lambda)(1 - (1+T lambda)^-2)/2, eta = (1+T lambda) lambda T/n."""
    lam = np.linalg.eigvalsh(target.covs[0])
    g = 1 + T * lam
    xi = g * 0.5 * (1 - g**-2.0)
    eta = g * lam * T / n
    hi_x = xi + eta
    if np.any(hi_x >= n):
        raise ValueError("n: too small for the terminal-rate interval (xi + eta >= n)")
    lo = float(np.sum(np.maximum(xi - eta, 0.0) ** 2 / 4))
    hi = float(np.sum(hi_x**2 / 4 + hi_x**3 / (2 * (n - hi_x))))
    return lo, hi, float(np.sum(xi**2 / 4))


@claim(
    id="discrete_kl.terminal_data_processing",
    paper=PAPER,
    statement="KL(P_{Y_n} || Law(hat Y_n)) <= Delta_n (data processing; binary, law propagated on a grid); "
              "Gaussian targets: n^2 KL(P_{Y_T} || Law(hat Y_n)) -> sum_lambda ((1+T lambda)^2-1)^2/(16 (1+T lambda)^2), "
              "inside a derived O(1/n) interval (so the terminal KL is O(n^-2) while Delta_n is Theta(1/n))",
    note=f"{NOTE}#data-processing",
    provenance="reconstructed",
    quick={"ns": [8, 16], "T": 8.0, "points": 801, "gauss_T": 10.0, "gauss_n": 256, "gauss2_n": 256},
    full={"ns": [8, 64, 128], "T": 8.0, "points": 3001, "gauss_T": 10.0, "gauss_n": 1024, "gauss2_n": 1024},
    controls={"noise_std_delta": "the sampler's noise std delta instead of sqrt(delta) (variance delta^2)",
              "denoiser_end_of_step": "Gaussian targets: the sampler's gain S_{t_k} (end of the step) in place of "
                                      "S_{t_{k-1}}"},
)
def data_processing(ctx: Context) -> list[Measurement]:
    p = ctx.params
    b = C.binary()
    noise = ctx.bug("noise_std_delta")
    nv = _noise_std_delta if noise else None
    worst, rows = -np.inf, []
    for n in p["ns"]:
        ts = C.schedule("uniform", T=p["T"], n=n)
        r1, r2 = _memo(("dp-grid", n, p["T"], p["points"], noise), lambda: (
            C.terminal_kl_grid(b, ts, points=p["points"], noise_var=nv),
            C.terminal_kl_grid(b, ts, points=int(1.5 * p["points"]), noise_var=nv)))
        D = C.riemann_gap(b, ts)
        err = abs(r1["kl"] - r2["kl"]) + abs(r2["mass"] - 1.0)
        worst = max(worst, r2["kl"] - err - D)
        rows.append({"n": n, "terminal_kl": r2["kl"], "Delta": D, "grid_err": err, "ratio": D / r2["kl"]})
    out = [Measurement("max (terminal KL - grid error - Delta_n) (binary)", worst, 0.0, "le", 0.0,
                       "grid error = change under 1.5x points + lost mass, subtracted before comparing "
                       f"({NOTE}#data-processing)",
                       extra={"rows": rows,
                              "note_values": {"n=8": [4.156e-2, 0.2866], "n=64": [6.42e-4, 3.17e-2]}})]
    ctx.plot.panel("binary", title=f"binary X, T = {p['T']:g}: terminal KL(P_Yn || Law(hat Y_n))", xlabel="steps n",
                   ylabel="KL", xscale="log" if p["ns"][-1] >= 10 * p["ns"][0] else "linear", yscale="log")
    ctx.plot.measured("binary", p["ns"], [r["terminal_kl"] for r in rows], label="terminal KL")
    ctx.plot.bound("binary", p["ns"], [r["Delta"] for r in rows], label="path KL Delta_n")
    tg = _targets()
    T = p["gauss_T"]
    for key, n in (("gaussian", p["gauss_n"]), ("gaussian2", p["gauss2_n"])):
        g = tg[key]
        ts = C.schedule("uniform", T=T, n=n)
        f = _end_of_step_f(g, ts) if ctx.bug("denoiser_end_of_step") else None
        r, _ = _gauss_delta(g, ts, f=f, noise_var=nv)
        lo, hi, lim = terminal_interval(g, T, n)
        seg = [n / 1.5, n * 1.5]
        ctx.plot.panel(key, title=f"{g.name}: n^2 terminal KL, T = {T:g}", xlabel="steps n",
                       ylabel="n^2 KL(P_YT || Law(hat Y_n))", xscale="log", yscale="log")
        ctx.plot.measured(key, [n], [n * n * r["terminal"]])
        ctx.plot.predicted(key, seg, [lim, lim], label="limit sum_lambda ((1+T lambda)^2-1)^2/(16(1+T lambda)^2)")
        ctx.plot.bound(key, seg, [hi, hi], label="derived O(1/n) interval")
        ctx.plot.bound(key, seg, [lo, lo], label="", side="lower")
        out.append(Measurement(f"n^2 terminal KL ({g.name}, n={n})", n * n * r["terminal"], None, "interval", 0.0,
                               f"rigorous interval: Riemann-sum sandwich and the series of D in x = e_n/P "
                               f"({NOTE}#terminal-rate); rounding of the 1-row KL ~1e-12 relative is far inside",
                               lo=lo, hi=hi, extra={"limit": lim, "terminal_kl": r["terminal"], "path_kl": r["path"],
                                                    "path/terminal": r["path"] / r["terminal"]}))
    # independent cross-check of the grid propagation against the Gaussian law (informational: both are the sampler)
    g = tg["gaussian"]
    ts = C.schedule("uniform", T=T, n=8)
    g1, g2 = _memo(("dp-ggrid", T, p["points"]), lambda: (C.terminal_kl_grid(g, ts, points=p["points"]),
                                                         C.terminal_kl_grid(g, ts, points=int(1.5 * p["points"]))))
    gerr = abs(g1["kl"] - g2["kl"]) + abs(g2["mass"] - 1.0)
    out.append(Measurement("|grid - direct| terminal KL (gaussian, n=8)",
                           abs(g2["kl"] - C.gaussian_path_kl(g, ts)["terminal"]), 0.0, "le", gerr,
                           "informational (both sides are the same sampler law: grid propagation vs the Gaussian "
                           "recursion); tol = the grid's change under 1.5x points + lost mass",
                           counted=False, extra={"grid": g2}))
    return out


# ------------------------------------------------------------------------------------------------ C6
def em_expansion(target, T, n, nodes=C.DEFAULT_NODES):
    r"""(L0, L1, R, e): n Delta_n = L0 + L1 + r with |r| <= R (Euler-Maclaurin, note #rate), e the quadrature
    error of L0 + L1; L0 = T/4 (tr Cov - M(T)), L1 = T^2/(24 n) (M'(T) - M'(0)), R = EM3/2 T^3/n^2 int|M^(3)|."""
    C0 = target.cov
    if target.K == 1:
        lam = np.linalg.eigvalsh(target.covs[0])
        MT = float(np.sum(lam / (1 + T * lam)))
        dMT = -float(np.sum((lam / (1 + T * lam)) ** 2))
        V3 = float(np.sum(2 * lam**3 * (1 - (1 + T * lam) ** -3.0)))
        e = 0.0
    elif target.name == "binary":
        MT, eM = C.mmse(target, T, nodes, err=True)
        dMT = C.mmse_derivative(target, T, int(1.5 * nodes))
        e_d = abs(dMT - C.mmse_derivative(target, T, nodes))
        V3 = T * heat_sup(3)
        e = T / 4 * eM + T * T / (24 * n) * e_d
    else:
        raise ValueError("target: em_expansion covers Gaussian targets and the binary one")
    L0 = T / 4 * (float(np.trace(C0)) - MT)
    L1 = T * T / (24 * n) * (dMT + float(np.trace(C0 @ C0)))
    return L0, L1, EM3 / 2 * T**3 / n**2 * V3, e


@claim(
    id="discrete_kl.rate_one_over_n",
    paper=PAPER,
    statement="uniform steps, fixed horizon: n Delta_n = (T/4)(tr Cov - M(T)) + T^2/(24n)(M'(T) - M'(0)) + O(n^-2) "
              "with the explicit Euler-Maclaurin remainder; Delta_n of the sampler's path law (Gaussian 1-D and "
              "correlated 2-D) and Lemma 2's gap (binary)",
    note=f"{NOTE}#rate",
    provenance="reconstructed",
    quick={"ns": [64, 128, 256], "ns2": [64, 256], "nodes": 80},
    full={"ns": [64, 128, 256, 512, 1024, 2048], "ns2": [64, 256, 1024], "nodes": 160},
    controls={"denoiser_end_of_step": "the sampler's gain S_{t_k} (end of the step) in place of S_{t_{k-1}}",
              "elementwise_gain": "the gain Sigma (I + t Sigma)^{-1} computed entrywise as Sigma / (1 + t Sigma)",
              "right_rule": "Lemma 2's gap with M(t_k) (right end of the step) in place of M(t_{k-1})"},
)
def rate(ctx: Context) -> list[Measurement]:
    """Gaussian: Delta_n from the two Gaussian path laws (C.gaussian_path_kl); binary: the Riemann gap (Lemma 2,
    checked against the chain rule in C2).  Per n, |n Delta_n - L0 - L1| <= R + n (Delta error) + (L0+L1 error)."""
    p, tg = ctx.params, _targets()
    out = []
    cases = [("gaussian", 10.0, p["ns"]), ("gaussian2", 10.0, p["ns2"]), ("binary", 8.0, p["ns"])]
    figs = []
    for key, T, ns in cases:
        target = tg[key]
        worst, rows, D = 0.0, [], []
        for n in ns:
            ts = C.schedule("uniform", T=T, n=n)
            if target.K == 1:
                bug = ("end" if ctx.bug("denoiser_end_of_step") else
                       "entrywise" if ctx.bug("elementwise_gain") and target.d > 1 else None)
                f = {"end": _end_of_step_f(target, ts), "entrywise": _elementwise_f(target), None: None}[bug]
                r, e = _memo(("rate-g", key, n, bug), lambda: _gauss_delta(target, ts, f=f))
                Dn = r["path"]
            else:
                rule = "right" if ctx.bug("right_rule") else "left"
                Dn, e = _memo(("rate-gap", key, n, p["nodes"], rule),
                              lambda: C.riemann_gap(target, ts, nodes=p["nodes"], err=True, rule=rule))
            L0, L1, R, eL = _memo(("rate-em", key, T, n, p["nodes"]), lambda: em_expansion(target, T, n, p["nodes"]))
            tol = R + n * e + eL
            worst = max(worst, abs(n * Dn - L0 - L1) / tol)
            D.append(Dn)
            rows.append({"n": n, "n Delta_n": n * Dn, "L0": L0, "L1": L1, "remainder bound": R, "tol": tol,
                         "n Delta_n - L0": n * Dn - L0})
        figs.append((key, target.name, ns, D, rows))
        slope = loglog_slope(ns, np.abs(D)).slope if len(ns) > 2 else math.log(D[-1] / D[0]) / math.log(ns[-1] / ns[0])
        out.append(Measurement(f"max |n Delta_n - L0 - L1| / tol ({target.name})", worst, 1.0, "le", 0.0,
                               f"tol = Euler-Maclaurin remainder 2 zeta(3)/(2 pi)^3 (n/2) delta^3 int|M^(3)| + "
                               f"numerical error ({NOTE}#rate)",
                               extra={"rows": rows, "limit L0": rows[-1]["L0"], "log-log slope (recorded)": slope}))
    _rate_figure(ctx, figs)
    return out


def _rate_figure(ctx: Context, figs: list) -> None:
    """Per target: Delta_n against n with the expansion (L0 + L1)/n (top row), and |n Delta_n - L0 - L1|
    against its tolerance, the Euler-Maclaurin remainder bound plus numerical error (bottom row)."""
    for key, name, ns, D, rows in figs:
        ctx.plot.panel(key, title=f"{name}: Delta_n, uniform steps", xlabel="steps n", ylabel="Delta_n",
                       xscale="log", yscale="log")
        ctx.plot.measured(key, ns, D)
        ctx.plot.predicted(key, ns, [(r["L0"] + r["L1"]) / r["n"] for r in rows], label="(L0 + L1)/n (slope -1)")
    for key, name, ns, D, rows in figs:
        ctx.plot.agreement(key + "-res", ns, [abs(r["n Delta_n"] - r["L0"] - r["L1"]) for r in rows],
                    [r["tol"] for r in rows], title=f"{name}: |n Delta_n - L0 - L1|", xlabel="steps n",
                    ylabel="|n Delta_n - L0 - L1|", tol_label="remainder bound + numerical error")


# ------------------------------------------------------------------------------------------------ C7
_MM_CACHE: dict = {}


def _mm_delta(target, ts, r, kw, variant="stated"):
    key = (target.name, np.asarray(ts).tobytes(), r, tuple(sorted(kw.items())), variant)
    if key not in _MM_CACHE:
        if variant == "skew_ignored":
            _MM_CACHE[key] = C.path_kl_chain(target, ts, moment=3, match_skew=False, **kw)
        elif variant == "cov_delta":
            _MM_CACHE[key] = _moment2_cov_delta(target, ts, **kw)
        else:
            _MM_CACHE[key] = C.path_kl_chain(target, ts, moment=r, closed_form=False, **kw)
    return _MM_CACHE[key]


def _moment2_cov_delta(target, ts, nodes, inner_nodes):
    """Control: the r = 2 sampler with covariance delta I + delta Cov(X|y) (delta where delta^2 belongs).

    A Gaussian sampler increment N(delta m, delta + delta Cov) is the r = 2 increment of the SNR grid with
    Cov scaled by 1/delta; computed through the chain rule with the target's covariance scaled."""
    total = 0.0
    for k in range(1, ts.size):
        tp, dk = float(ts[k - 1]), float(ts[k] - ts[k - 1])
        total += _step_kl_moment2(target, tp, dk, nodes, inner_nodes, cov_factor=1.0 / dk)
    return total


def _step_kl_moment2(target, tp, dk, nodes, inner_nodes, cov_factor):
    """The r = 2 step KL with the sampler's covariance term scaled by ``cov_factor``: the increment
    N(dk m, dk + dk^2 cov_factor Cov(X|y)) through :func:`channel.nested_step_kl`."""
    def law(y, post):
        v = dk + dk * dk * cov_factor * post.cov[:, 0, 0]
        return C.IncrementLaw(dk * post.mean[:, 0], v, 0.5 * np.log(2 * np.pi * v))

    return C.nested_step_kl(target, tp, dk, law, nodes, inner_nodes)


@claim(
    id="discrete_kl.moment_matching",
    paper=PAPER,
    statement="matching r = 2 posterior moments is exact for a Gaussian target and r = 3 for a two-point target "
              "(Delta = 0); on a 3-point target Delta(r=3) < Delta(r=2) < Delta(r=1) at every n "
              "(the O(n^-r) rates are recorded, heuristic)",
    note=f"{NOTE}#moment-matching",
    provenance="reconstructed",
    quick={"ns": [12, 24, 48], "nodes": 80, "inner": 40},
    full={"ns": [24, 48, 96], "nodes": 160, "inner": 64},
    controls={"skew_ignored": "the r = 3 two-point law built with zero skewness (p = 1/2): only 2 moments match",
              "cov_delta": "the r = 2 sampler covariance delta I + delta Cov(X|y) (delta where delta^2 belongs)"},
)
def moment_matching(ctx: Context) -> list[Measurement]:
    """3-point target, T = 6.  Recorded: the Richardson-extrapolated local slope 2 s(2n->4n) - s(n->2n)."""
    p = ctx.params
    tri = _targets()["three_point"]
    kw = {"nodes": p["nodes"], "inner_nodes": p["inner"]}
    out, vals, slopes = [], {}, {}
    for r in (1, 2, 3):
        variant = ("skew_ignored" if (r == 3 and ctx.bug("skew_ignored"))
                   else "cov_delta" if (r == 2 and ctx.bug("cov_delta")) else "stated")
        D = np.array([_mm_delta(tri, C.schedule("uniform", T=6.0, n=n), r, kw, variant) for n in p["ns"]])
        vals[r] = D
        s = np.log(D[1:] / D[:-1]) / np.log(np.asarray(p["ns"][1:]) / np.asarray(p["ns"][:-1]))
        slopes[f"r={r}"] = {"Delta": list(D), "local slopes": list(s), "extrapolated slope": 2 * s[-1] - s[-2]}
    order = bool(np.all(vals[3] < vals[2]) and np.all(vals[2] < vals[1]))
    for r in (1, 2, 3):
        ctx.plot.rates(f"r{r}", p["ns"], [(f"r = {r}, extrapolated slope {slopes[f'r={r}']['extrapolated slope']:.2f}",
                                             vals[r])], slope=-r, pred_label=f"slope -{r} (heuristic, not judged)",
               title=f"3-point target, T = 6: {r} moment(s) matched", xlabel="steps n", ylabel="Delta_n")
        if r > 1:
            ctx.plot.reference(f"r{r}", p["ns"], vals[r - 1], label=f"r = {r - 1} (must lie above)")
    out.append(Measurement("Delta(r=3) < Delta(r=2) < Delta(r=1) for every n", float(order), None, "true", 0.0,
                           "qualitative ordering; the values differ by factors >= 10 (extra), far above their "
                           f"quadrature error ({TOL}); the O(n^-r) slopes are recorded, not judged (heuristic, "
                           "no derived remainder)", extra=slopes))
    g = _targets()["gaussian"]
    ts = C.schedule("uniform", T=10.0, n=8)
    zg = (_moment2_cov_delta(g, ts, **kw) if ctx.bug("cov_delta")
          else C.path_kl_chain(g, ts, moment=2, closed_form=False, **kw))
    b = C.binary()
    tsb = C.schedule("uniform", T=8.0, n=8)
    zb = C.path_kl_chain(b, tsb, moment=3, match_skew=not ctx.bug("skew_ignored"), **kw)
    tol = 64 * 8 * U * (1 + abs(math.log(2 * math.pi * 1.0)) + 13**2 / 2)
    ctx.plot.agreement("exact", [1, 2], [abs(zg), abs(zb)], tol, xscale="linear",
                title="exact cases, n = 8 (a zero is not drawn)", xlabel="case (1: gaussian r = 2, 2: binary r = 3)",
                ylabel="|Delta_n|")
    out.append(Measurement("|Delta| exact cases (gaussian r=2, binary r=3)", max(abs(zg), abs(zb)), 0.0, "le", tol,
                           "both increment laws equal the comparison's exactly: rounding of log p - log q, "
                           f"<= 8u(1 + |log 2 pi delta| + z^2/2), z <= 13, per node, 8 steps, 8x margin ({TOL})",
                           extra={"gaussian_r2": zg, "binary_r3": zb,
                                  "note_values": {"n=6": [4.09e-1, 3.01e-2, 4.89e-3], "n=96": [2.13e-2, 2.30e-4, 2.83e-6]}}))
    return out


# ------------------------------------------------------------------------------------------------ C8
@claim(
    id="discrete_kl.structural_invariants",
    paper=PAPER,
    statement="with exact denoisers, refining the schedule never increases the sampler's Delta_n; for a Gaussian "
              "target Delta_n(N(mu, Sigma)) = sum over the eigenvalues lambda of Sigma of Delta_n(N(0, lambda))",
    note=f"{NOTE}#invariants",
    provenance="reconstructed",
    quick={"T": 8.0, "sizes": [11, 21, 31, 41], "sizes_chain": [5, 9, 13], "inner": 40, "nodes": 80,
           "T2": 4.0, "n2": 6, "nodes2": 96, "n_rot": 64},
    full={"T": 8.0, "sizes": [11, 21, 31, 41, 81, 161], "sizes_chain": [5, 9, 13, 25], "inner": 48, "nodes": 96,
          "T2": 6.0, "n2": 12, "nodes2": 160, "n_rot": 256},
    controls={"noise_std_delta": "the sampler's noise std delta instead of sqrt(delta) (variance delta^2)",
              "elementwise_gain": "the gain Sigma (I + t Sigma)^{-1} computed entrywise as Sigma / (1 + t Sigma)"},
)
def invariants(ctx: Context) -> list[Measurement]:
    """Refinement: nested random schedules (each adds points to the last); Delta of the sampler from its path
    law (Gaussian) or the chain rule (binary, fewer sizes: nested quadrature is costly).  Rotation/additivity:
    the 2-D correlated Gaussian's direct path KL against the 1-D values of its eigenvalues.
    Informational: binary^2 by a 2-D tensor gap formula vs 2 x the 1-D value."""
    p, tg = ctx.params, _targets()
    noise = ctx.bug("noise_std_delta")
    worst, rows = -np.inf, []
    for key, sizes in (("gaussian", p["sizes"]), ("binary", p["sizes_chain"])):
        target = tg[key]
        pts = np.array([p["T"]])
        prev = None
        for size in sizes:
            extra = ctx.rng.uniform(0.0, p["T"], size - pts.size)
            pts = np.sort(np.concatenate([pts, extra]))
            D, e = _sampler_delta(target, pts, p["inner"], p["nodes"], noise=noise)
            if prev is not None:
                worst = max(worst, D - prev[0] - e - prev[1])
            prev = (D, e)
            rows.append({"target": key, "steps": int(pts.size), "Delta": D})
    g2 = tg["gaussian2"]
    ts = C.schedule("uniform", T=10.0, n=p["n_rot"])
    r2, e2 = _gauss_delta(g2, ts, f=_elementwise_f(g2) if ctx.bug("elementwise_gain") else None)
    parts = _memo(("inv-parts", p["n_rot"]), lambda: [_gauss_delta(C.gaussian([0.0], float(lam)), ts)
                                                       for lam in np.linalg.eigvalsh(g2.covs[0])])
    D1 = sum(r["path"] for r, _ in parts)
    e1 = sum(e for _, e in parts)
    for key in ("gaussian", "binary"):
        st = np.array([r["steps"] for r in rows if r["target"] == key], dtype=float)
        Dk = np.array([r["Delta"] for r in rows if r["target"] == key])
        ctx.plot.panel(key, title=f"{tg[key].name}: nested refinements (T = {p['T']:g})", xlabel="steps",
                       ylabel="Delta_n", xscale="log", yscale="log")
        ctx.plot.measured(key, st, Dk, style="line")
        ctx.plot.bound(key, st[1:], Dk[:-1], label="Delta of the coarser schedule")
    ctx.plot.agreement("additivity", [p["n_rot"]], [abs(r2["path"] - D1)], e2 + e1,
                title="2-D correlated Gaussian vs sum over its eigenvalues", xlabel="steps n",
                ylabel="|Delta(2-D) - sum_lambda Delta(1-D)|", tol_label="rounding allowance")
    b = C.binary()
    tsb = C.schedule("uniform", T=p["T2"], n=p["n2"])
    (Db2, eb2), (Db1, eb1) = _memo(("inv-b2", p["T2"], p["n2"], p["nodes2"]), lambda: (
        C.riemann_gap(C.binary(2), tsb, nodes=p["nodes2"], err=True), C.riemann_gap(b, tsb, err=True)))
    return [
        Measurement("max (Delta_finer - Delta_coarser)", worst, 0.0, "le", 0.0,
                    f"error estimates of both values subtracted first ({TOL})",
                    extra={"rows": rows}),
        Measurement("|Delta(2-D correlated) - sum_lambda Delta(1-D)|", abs(r2["path"] - D1), 0.0, "le", e2 + e1,
                    f"rounding allowance 2 N^2 u of each direct path KL ({TOL})",
                    extra={"D2": r2["path"], "sum_1D": D1}),
        Measurement("|Delta(binary^2) - 2 Delta(binary)| (gap formula)", abs(Db2 - 2 * Db1), 0.0, "le",
                    eb2 + 2 * eb1,
                    "informational: a property of the gap formula's 2-D quadrature, not of the sampler; "
                    "quadrature estimates (1.5x nodes)", counted=False, extra={"D2": Db2, "D1": Db1}),
    ]


# ------------------------------------------------------------------------------------------------ C9
@claim(
    id="discrete_kl.geometric_entropy",
    paper=PAPER,
    statement="geometric schedule t_k = t_1 (1+c)^{k-1}: the sampler's Delta_n <= (t_1/2) tr Cov + c I(X;Y_n) "
              "(<= (t_1/2) tr Cov + c H(X) for discrete X)",
    note=f"{NOTE}#geometric-corollary",
    provenance="reconstructed",
    quick={"cases": [[0.01, 0.5, 20], [0.01, 0.25, 40], [0.001, 0.1, 120]], "chain_cases": [[0.01, 0.5, 20]],
           "inner": 40, "nodes": 80},
    full={"cases": [[0.01, 0.5, 20], [0.01, 0.25, 40], [0.001, 0.1, 120], [0.1, 1.0, 10], [0.001, 0.05, 200]],
          "chain_cases": [[0.01, 0.5, 20], [0.01, 0.25, 40], [0.1, 1.0, 10]], "inner": 48, "nodes": 96},
    controls={"denoiser_end_of_step": "the sampler's denoiser evaluated at t_k instead of t_{k-1}"},
)
def geometric(ctx: Context) -> list[Measurement]:
    """Gaussian target: Delta from the path laws on every case; binary and 3-point: chain rule on chain_cases."""
    p, tg = ctx.params, _targets()
    eos = ctx.bug("denoiser_end_of_step")
    worst, worst_H, rows, fig = -np.inf, -np.inf, [], []
    jobs = [(tg["gaussian"], c) for c in p["cases"]]
    jobs += [(tg[k], c) for k in ("binary", "three_point") for c in p["chain_cases"]]
    for target, (t1, c, n) in jobs:
        ts = C.schedule("geometric", t1=t1, c=c, n=n)
        D, e = _sampler_delta(target, ts, p["inner"], p["nodes"], end_of_step=eos)
        I, eI = C.mutual_info(target, float(ts[-1]), err=True)
        bound = t1 / 2 * target.tr_cov + c * I
        worst = max(worst, D - e - bound - c * eI)
        if target.K > 1:
            worst_H = max(worst_H, I - target.entropy)
        rows.append({"target": target.name, "t1": t1, "c": c, "n": n, "Delta": D, "bound": bound})
        fig.append((bound + c * eI, D - e))
    ctx.plot.versus_bound("bound", [b for b, _ in fig], [v for _, v in fig],
                   title="geometric schedules: Delta_n against its bound",
                   xlabel="bound (t_1/2) tr Cov + c I", ylabel="Delta_n - err")
    return [Measurement("max (Delta - err - t1/2 trCov - c I)", worst, 0.0, "le", 0.0,
                        f"error estimates of Delta and of I subtracted first ({TOL})",
                        extra={"rows": rows, "note_values": [[0.162, 0.352], [0.0834, 0.178], [0.0341, 0.0698]]}),
            Measurement("max (I(X;Y_n) - H(X)) (discrete targets)", worst_H, 0.0, "le", 0.0,
                        "informational: I = H(J) + E log w_J(Y) <= H(J) holds by construction of the quadrature "
                        "(log w <= 0), so no bug of the sampler can move it", counted=False)]


# ------------------------------------------------------------------------------------------------ read-out (2-D)
_RO_CACHE: dict = {}


def _ro_memo(key, fn):
    """Memoise deterministic values (bounds, and the read-out KL per sampler spec) across the stated and
    control runs; a control recomputes only what its bug changes.  ``key`` starts with every parameter the
    value depends on (the quadrature ``nodes``, then n and the factor; the target is fixed)."""
    if key not in _RO_CACHE:
        _RO_CACHE[key] = fn()
    return _RO_CACHE[key]


def _ro_prefetch(tg, sweeps, nodes: int, spec: RO.SamplerSpec) -> None:
    """Fill the memo with what :func:`readout_2d` reads from it and it does not hold yet, the independent cases run
    side by side (:func:`~numerics.references.grid_density.run_concurrently`): first each n's bound minimiser t*_n,
    then per (n, factor) the read-out KL of ``spec`` (the larger n first) and the two bounds.  Each value is the
    call the claim makes, under the claim's key, so bit for bit."""
    def missing(jobs: dict) -> dict:
        return {k: f for k, f in jobs.items() if k not in _RO_CACHE}
    _RO_CACHE.update(run_concurrently(missing({(nodes, "tstar", n, nodes): functools.partial(
        RO.bound_minimiser, tg, n, nodes=nodes) for n, _ in sweeps})))
    kls, bounds = {}, {}
    for n, factors in sorted(sweeps, key=lambda nf: -nf[0]):
        for fac in factors:
            t = _RO_CACHE[(nodes, "tstar", n, nodes)] * fac
            ts = C.schedule("uniform", T=t, n=n)
            kls[(nodes, "kl", n, fac, spec)] = functools.partial(RO.readout_kl, tg, ts, spec=spec, err=True)
            bounds[(nodes, "gap", n, fac)] = functools.partial(RO.gap_bound, tg, t, n, nodes=nodes, err=True)
            bounds[(nodes, "thm", n, fac)] = functools.partial(RO.theorem1_readout_bound, tg, t, n, nodes=nodes,
                                                               err=True)
    _RO_CACHE.update(run_concurrently(missing({**kls, **bounds})))


def _ro_spec(ctx: Context) -> RO.SamplerSpec:
    return RO.SamplerSpec(denoiser="product" if ctx.bug("product_posterior") else "posterior",
                          time_offset=1 if ctx.bug("posterior_time_ahead") else 0,
                          dtype=np.float32 if ctx.bug("float32_coefficients") else np.float64,
                          scale_back=not ctx.bug("readout_not_scaled"))


def _ro_gauss_tol(g, t, n):
    """Rounding allowance of |KL(sampler as implemented) - KL(oracle)| for the Gaussian target (note #readout-2d):
    relative error of the read-out variances <= 16 (n+1) u (1 + t lam_max)(2 + 2 t |mu|_inf) (n affine steps
    whose products grow to 1 + t lam, the probed gain and offset), times |dD/dlog s| <= (1 + t lam_max)/2 per
    eigen-direction."""
    lam = float(np.linalg.eigvalsh(g.covs[0]).max())
    mu = float(np.abs(g.means[0]).max())
    return g.d * 0.5 * (1 + t * lam) * 16 * (n + 1) * U * (1 + t * lam) * (2 + 2 * t * mu)


@claim(
    id="discrete_kl.readout_2d",
    paper=PAPER,
    statement="end-to-end read-out, 2-D correlated Gaussian mixture: the sampler's last state scaled back with the "
              "channel noise re-added, hat X = hat Y_n/t_n + N(0, I/t_n), has D(Law X || Law hat X) <= Delta_n + T(t_n) "
              "<= (t_n/2n)(tr Cov - M(t_n)) + T(t_n), T(t) = I(X;Y_t) - h(X) + (d/2) log(2 pi e/t); the bound's "
              "minimiser over t_n is the root of its derived derivative (the measured KL's minimiser is reported)",
    note=f"{NOTE}#readout-2d",
    provenance="reconstructed",
    quick={"sweeps": [[4, [0.5, 1.0, 2.0, 2.83, 4.0]], [8, [0.5, 1.0, 2.0]]], "nodes": 32},
    full={"sweeps": [[4, [0.35, 0.5, 0.71, 1.0, 1.41, 2.0, 2.83, 4.0]], [8, [0.35, 0.5, 0.71, 1.0, 1.41, 2.0, 2.83]],
                     [16, [0.5, 1.0, 2.0]]], "nodes": 48},
    controls={"readout_not_scaled": "the read-out hat Y_n + N(0, I/t_n): the last state not divided by t_n",
              "posterior_time_ahead": "the sampler's posterior mean at t_k instead of t_{k-1} (time index one step off)",
              "product_posterior": "the 2-D posterior mean computed coordinate-wise from the 1-D marginal posteriors "
                                   "(the correlation ignored)",
              "float32_coefficients": "the sampler's step coefficients delta_k, sqrt(delta_k), 1/t_n rounded to float32"},
)
def readout_2d(ctx: Context) -> list[Measurement]:
    """Per n of the profile: t_n = t*_n x factor, t*_n the root of B_n' (the bound's minimiser); the read-out KL of
    the mixture from its grid-propagated law (1.5x-spacing estimate + lost mass), the bounds from Lemma 2's gap,
    M, I and h(X) by Gauss-Hermite (1.5x-node estimates); the correlated Gaussian by closed forms."""
    p = ctx.params
    nodes = p["nodes"]
    spec = _ro_spec(ctx)
    tg, g = RO.readout_target(), C.gaussian([0.5, -0.3], [[1.0, 0.8], [0.8, 1.0]], name="gaussian 2-D rho=0.8")
    worst_gap, worst_thm, worst_opt, worst_or = -np.inf, -np.inf, -np.inf, 0.0
    rows, info, curves = [], [], []
    _ro_prefetch(tg, p["sweeps"], nodes, spec)
    for n, factors in p["sweeps"]:
        tstar = _ro_memo((nodes, "tstar", n, nodes), lambda: RO.bound_minimiser(tg, n, nodes=nodes))
        curve = []
        for fac in factors:
            t = tstar * fac
            ts = C.schedule("uniform", T=t, n=n)
            kl, e, diag = _ro_memo((nodes, "kl", n, fac, spec), lambda: RO.readout_kl(tg, ts, spec=spec, err=True))
            gb, egb = _ro_memo((nodes, "gap", n, fac), lambda: RO.gap_bound(tg, t, n, nodes=nodes, err=True))
            tb, etb = _ro_memo((nodes, "thm", n, fac), lambda: RO.theorem1_readout_bound(tg, t, n, nodes=nodes, err=True))
            # one-sided checks: the measured KL lowered by its grid estimate, the bound raised by its quadrature one
            worst_gap = max(worst_gap, (kl - e) - (gb + egb))
            worst_thm = max(worst_thm, (kl - e) - (tb + etb))
            if fac == 1.0:
                worst_opt = max(worst_opt, (kl - e) - (tb + etb))
            # Gaussian oracle: the sampler as implemented (affine propagation) against the closed form
            kg = RO.gaussian_readout_kl(g, ts, spec)
            ko = _ro_memo((nodes, "or", n, fac), lambda: RO.gaussian_readout_kl_oracle(g.means[0], g.covs[0], ts))
            worst_or = max(worst_or, abs(kg - ko) / _ro_gauss_tol(g, t, n))
            gbg = _ro_memo((nodes, "ggap", n, fac), lambda: RO.gap_bound(g, t, n, err=True))
            worst_gap = max(worst_gap, kg - gbg[0] - 64 * n * U * max(1.0, t * g.tr_cov))
            row = {"n": n, "t_n": t, "t/t*": fac, "readout KL": kl, "grid err": e, "Delta_n + T": gb,
                   "Thm1 + T": tb, "slack Thm1/KL": tb / kl if kl > 0 else math.inf,
                   "slack (Delta+T)/KL": gb / kl if kl > 0 else math.inf, "gaussian KL": kg,
                   "gaussian Delta_n + T": gbg[0], "gaussian oracle": ko}
            rows.append(row)
            curve.append(row)
        ks = np.array([r["readout KL"] for r in curve])
        bs = np.array([r["Thm1 + T"] for r in curve])
        ib, im = int(np.argmin(bs)), int(np.argmin(ks))
        tt = np.array([r["t_n"] for r in curve])
        bracket = (ib == 0 or tt[ib - 1] < tstar) and (ib == tt.size - 1 or tstar < tt[ib + 1])
        info.append({"n": n, "t*_n (root of B_n')": tstar, "B_n(t*)": float(bs[list(factors).index(1.0)]),
                     "sweep argmin of B_n": float(tt[ib]), "bracketed": bool(bracket),
                     "sweep argmin of measured KL": float(tt[im]), "measured argmin interior": 0 < im < tt.size - 1,
                     "measured argmin / t*": float(tt[im] / tstar)})
        curves.append((n, tstar, curve))
    _readout_figure(ctx, curves)
    tol_reason = ("grid estimate of the read-out KL (1.5x finer spacings + sampler mass off the grid + pruned mass) "
                  "subtracted, quadrature estimates of M, I, h(X) and Lemma 2's gap (1.5x nodes) added "
                  f"({NOTE}#readout-2d)")
    return [
        Measurement("max (readout KL - err) - (Delta_n + T + err)", worst_gap, 0.0, "le", 0.0,
                    tol_reason + "; Gaussian rows: closed forms, 64 n u max(1, t tr Cov) rounding", extra={"rows": rows}),
        Measurement("max (readout KL - err) - (Theorem-1 bound + T + err)", worst_thm, 0.0, "le", 0.0, tol_reason),
        Measurement("at t_n = t*_n: (readout KL - err) - (min_t B_n + err)", worst_opt, 0.0, "le", 0.0,
                    tol_reason + "; t*_n the bisection root of B_n' (relative width 1e-5)", extra={"trade-off": info}),
        Measurement("max |readout KL (sampler as implemented) - oracle| / tol (correlated Gaussian)", worst_or, 1.0,
                    "le", 0.0, "per case tol = d (1 + t lam)^2 8 (n+1) u (2 + 2 t |mu|): rounding of n affine steps "
                    f"and of the probed gain, times the KL's sensitivity ({NOTE}#readout-2d)"),
        Measurement("bound's minimiser t*_n bracketed by the sweep's argmin of B_n (every n)",
                    float(all(i["bracketed"] for i in info)), None, "true", 0.0,
                    "informational: B_n is evaluated from M and I, t*_n from M and M' (I-MMSE consistency of the "
                    "bound's ingredients, not of the sampler); the measured KL's argmin is recorded in extra, no "
                    "prediction for it is derived", counted=False, extra={"trade-off": info}),
    ]


def _readout_figure(ctx: Context, curves: list) -> None:
    """Per n: the measured read-out KL against t_n with the two bounds and the read-out term T(t_n)."""
    for n, tstar, curve in curves:
        key = f"n{n}"
        tt = [r["t_n"] for r in curve]
        ctx.plot.panel(key, title=f"2-D mixture, n = {n}: read-out KL vs t_n (t* = {tstar:.2f})", xlabel="end SNR t_n",
                       ylabel="nats", xscale="log", yscale="log")
        ctx.plot.measured(key, tt, [max(r["readout KL"], 1e-300) for r in curve], label="D(Law X || Law hat X)",
                          style="line")
        ctx.plot.bound(key, tt, [r["Thm1 + T"] for r in curve], label="Theorem 1 + T(t_n)")
        ctx.plot.bound(key, tt, [r["Delta_n + T"] for r in curve], label="Delta_n + T(t_n) (exact chain rule)")
        ctx.plot.predicted(key, [tstar], [next(r["Thm1 + T"] for r in curve if r["t/t*"] == 1.0)],
                           label="predicted minimiser of the bound", style="points")

r"""Claims of the support paper (Chandramoorthy, Cao, Wu, arXiv 2605.07220): checks C1-C12 of the note and the three experiments.

Only the abstract of the paper is known; every statement here is our reconstruction
(``proofs_notes/support.md``), checked with exact scores.  C1 (``support.subspace_contraction``) and C3
(``support.ddpm_orthogonal_variance``) check the samplers' laws on subspace data.
Setting: OU time, ``T = 5``, the geometric grid ``time_grid("geometric", T=5, delta, kappa)``; the note's
"EI" is ``ei_ode``, its "DDPM-EI" is ``ei_sde_code``, its DDIM is ``ddim``.  Guidance "cg" with weight
gamma equals CFG with weight gamma under exact scores (checked in C12).

The authors' three experiments with exact scores

The support paper's three experiments with exact scores (note ``/work/shared/papers/support.md`` section 4).

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
from scipy.stats import binom, chi

from numerics.checks.claim import Context, Measurement, claim
from numerics.constants import UNIT_ROUNDOFF as U
from numerics.generated import integrator_coeffs as IC
from numerics.grids import time_grid
from numerics.methods import TABLE
from numerics.mixture import GaussianMixture
from numerics.papers.support.experiments import (AUTHORS_ODE, AUTHORS_SDE, METHODS, draw_regions, experiment,
                                                 run_deltas)
from numerics.papers.support.region_targets import Box, Disk, RegionMixture, Sphere, three_disks, two_crescents
from numerics.samplers import sample
from numerics.schedule import alpha_sigma2
from numerics.stats import loglog_slope, proportion_ci
from numerics.target import ScoreModel

NOTE = "proofs_notes/support.md"


def p_kappa(kappa: float) -> float:
    r"""Rate exponent of the score-frozen EI on subspace data: :math:`-\ln(1-\kappa/(2(1+\kappa)))/\ln(1+\kappa)`."""
    return -math.log1p(-kappa / (2 * (1 + kappa))) / math.log1p(kappa)


def subspace_atoms() -> GaussianMixture:
    """C1's target: atoms on the x1 axis of R^3, class 0 at {-3,-2,-1}, class 1 at {1,2,3}, equal weights."""
    means = np.zeros((6, 3))
    means[:, 0] = [-3, -2, -1, 1, 2, 3]
    return GaussianMixture(np.full(6, 1 / 6), means, np.zeros((6, 3, 3)), labels=[0, 0, 0, 1, 1, 1])


# ------------------------------------------------------------------------------------------- support C1
def _rho(method: str, grid: np.ndarray) -> tuple[float, np.ndarray]:
    r"""The C1 contraction :math:`\rho` and the per-step condition numbers
    :math:`(|c_x| + |c_q|/\sigma_{t_k}^2)/|\rho_k|` (for the rounding tolerance)."""
    h = grid[:-1] - grid[1:]
    s2 = -np.expm1(-2 * grid[:-1])
    if method == "ei_ode":
        a, b = np.exp(h), np.expm1(h) / s2
    elif method == "euler":
        a, b = 1 + h, h / s2
    else:  # ddim: sigma_s/sigma_t per step, telescoping to sigma_delta/sigma_T
        r = np.sqrt(-np.expm1(-2 * grid[1:]) / s2)
        return math.sqrt(-math.expm1(-2 * grid[-1])) / math.sqrt(-math.expm1(-2 * grid[0])), np.ones_like(r)
    return float(np.prod(a - b)), (a + b) / np.abs(a - b)


NOTE_RHO = {(0.1, "ei_ode"): 4.862e-2, (0.5, "ei_ode"): 6.397e-2, (0.1, "ddim"): 4.470e-2, (0.5, "ddim"): 4.470e-2}


@claim(
    id="support.subspace_contraction",
    paper="support",
    statement="(support C1) with all classes on a shared subspace V, the V-orthogonal part of the ei_ode, euler "
              "and ddim outputs is rho times the initial one for every guidance gamma",
    note=f"{NOTE} (C1)",
    provenance="reconstructed",
    quick={"kappas": [0.1], "gammas": [1.0, 3.0, 10.0], "n": 64},
    full={"kappas": [0.1, 0.5], "gammas": [1.0, 3.0, 10.0], "n": 512},
)
def subspace_contraction(ctx: Context) -> list[Measurement]:
    """Relative deviation from the rho-law.  Control: the score biased by 1e-3 in the x2 direction."""
    p = ctx.params
    gm = subspace_atoms()
    out = []
    x0 = ctx.rng.standard_normal((p["n"], 3))
    target = gm
    if ctx.broken:
        bias = np.array([0.0, 1e-3, 0.0])
        target = ScoreModel(lambda x, t: gm.score(x, t) + bias, 3,
                            guidance=lambda x, t, y: gm.guidance_vector(x, t, y), n_classes=2)
    for kappa in p["kappas"]:
        grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=kappa)
        for method in ("ei_ode", "euler", "ddim"):
            rho, cond = _rho(method, grid)
            worst = 0.0
            for gamma in p["gammas"]:
                x = sample(target, method, grid=grid, n=p["n"], x_init=x0, label=1, guidance=gamma)
                worst = max(worst, float(np.max(np.abs(x[:, 1:] - rho * x0[:, 1:]) / np.abs(rho * x0[:, 1:]))))
            # per step: coefficients (4u) x condition, the posterior-weight sum (K u), the update (4u); and rho itself
            tol = U * float(np.sum(4 * cond + gm.K + 4)) + U * grid.size
            out.append(Measurement(
                name=f"rho-law rel. deviation {method} kappa={kappa}", measured=worst, predicted=0.0, kind="equal",
                tol=tol, reason="rounding: per step u(4 cond_k + K + 4), cond_k = (|c_x| + |c_q|/sigma^2)/|rho_k|, "
                                "summed over the steps, plus N u for the product rho",
                extra={"rho": rho, "steps": int(grid.size - 1), "gammas": list(p["gammas"]), "biased": ctx.broken}))
            if (kappa, method) in NOTE_RHO:
                out.append(Measurement(
                    name=f"rho {method} kappa={kappa}", measured=rho, predicted=NOTE_RHO[(kappa, method)],
                    kind="equal", tol=5e-6, reason="the note quotes 4 significant digits: half a unit of the last, 5e-6"))
    return out


# ------------------------------------------------------------------------------------------- support C3
def variance_recursion(grid: np.ndarray, noise: str = "code", drift: float = 2.0) -> float:
    r""":math:`v_{k+1} = (e^{h} - \mathrm{drift}\,(e^h-1)/\sigma_{t_k}^2)^2 v_k + \nu_k`, :math:`v_0 = 1`,
    :math:`\nu_k = 2(e^h - 1)` (``code``) or :math:`e^{2h} - 1` (``exact``)."""
    v = 1.0
    for t, s in zip(grid[:-1], grid[1:]):
        h = float(t - s)
        s2 = -math.expm1(-2 * float(t))
        nu = 2 * math.expm1(h) if noise == "code" else math.expm1(2 * h)
        v = (math.exp(h) - drift * math.expm1(h) / s2) ** 2 * v + nu
    return v


NOTE_VAR = {0.1: 2.192e-3, 0.5: 2.979e-3}


@claim(
    id="support.ddpm_orthogonal_variance",
    paper="support",
    statement="(support C3) for DDPM-EI (ei_sde_code) with classes on a shared subspace, the orthogonal "
              "variance per coordinate follows v_{k+1} = (e^h - 2(e^h-1)/sigma_k^2)^2 v_k + 2(e^h-1), for any gamma",
    note=f"{NOTE} (C3)",
    provenance="reconstructed",
    quick={"kappas": [0.1], "n": 4000, "gamma": 3.0, "safety": 1.5},
    full={"kappas": [0.1, 0.5], "n": 20000, "gamma": 3.0, "safety": 1.5},
)
def ddpm_orthogonal_variance(ctx: Context) -> list[Measurement]:
    r"""Monte-Carlo variance of the orthogonal coordinates vs the recursion.

    The orthogonal coordinates are exactly Gaussian with mean 0 (linear recursion from N(0, I)), so with
    ``m = 2n`` squared coordinates :math:`\hat v = \frac1m\sum z_i^2 \sim v\,\chi^2_m/m`; the 95% interval uses
    the normal approximation of :math:`\chi^2_m` (relative sd :math:`\sqrt{2/m}`; m >= 8000 so the skew
    is negligible).  Control: the drift coefficient halved to :math:`(e^h - 1)` (the PF-ODE drift with SDE
    noise), built by hand.  The spec's control (``ei_sde`` noise :math:`\sqrt{e^{2h}-1}`) changes v by only
    3.4e-4 (kappa 0.1) relative, far below MC resolution (would need ~3e8 samples), so it is only reported.
    """
    p = ctx.params
    gm = subspace_atoms()
    out = []
    for kappa in p["kappas"]:
        grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=kappa)
        v_code, v_exact = variance_recursion(grid, "code"), variance_recursion(grid, "exact")
        seed = int(ctx.rng.integers(2**62))
        if ctx.broken:
            x = _ei_sde_half_drift(gm, grid, p["n"], p["gamma"], seed)
        else:
            x = sample(gm, "ei_sde_code", grid=grid, n=p["n"], seed=seed, label=1, guidance=p["gamma"])
        z2 = x[:, 1:].ravel() ** 2
        m = z2.size
        v_hat = float(z2.mean())
        half = 1.96 * v_code * math.sqrt(2.0 / m)
        out.append(Measurement(
            name=f"orthogonal variance kappa={kappa}", measured=v_hat, predicted=v_code, kind="equal",
            tol=p["safety"] * half, ci=(v_hat - 1.96 * v_hat * math.sqrt(2 / m), v_hat + 1.96 * v_hat * math.sqrt(2 / m)),
            reason=f"95% chi-square (normal approx.) half-width 1.96 v sqrt(2/m), m = {m}, times safety {p['safety']}",
            extra={"ratio": v_hat / v_code, "note_value": NOTE_VAR.get(kappa), "v_ei_sde_exact_noise": v_exact,
                   "exact_over_code": v_exact / v_code, "half_drift_control": ctx.broken,
                   "v_half_drift": variance_recursion(grid, "code", drift=1.0)}))
        if kappa in NOTE_VAR:
            out.append(Measurement(name=f"recursion v_N kappa={kappa}", measured=v_code, predicted=NOTE_VAR[kappa],
                                   kind="equal", tol=5e-7,
                                   reason="the note quotes 4 significant digits: half a unit of the last, 5e-7"))
    return out


def _ei_sde_half_drift(gm, grid, n, gamma, seed):
    r"""Control: :math:`x_s = e^h x + (e^h - 1) s_w + \sqrt{2(e^h-1)}\,z` (drift halved), same RNG use as ``sample``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, gm.d))
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        cx, cq, cz = IC.ei_sde_code_coeffs(t, s)
        sw = gm.score(x, t) + gamma * gm.guidance_vector(x, t, 1)
        x = cx * x + 0.5 * cq * sw + cz * rng.standard_normal(x.shape)
    return x



def sigma(delta: float) -> float:
    return math.sqrt(-math.expm1(-2 * delta))


def atoms_c4(d: int = 2) -> GaussianMixture:
    """C4's target: 3 classes x 5 atoms from N((-2,0)), N((2,0)), N((0,3)) with sd 0.5 (rng seed 1),
    embedded in the first two coordinates of R^d; equal weights."""
    rng = np.random.default_rng(1)
    c = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    pts = np.concatenate([c[k] + 0.5 * rng.standard_normal((5, 2)) for k in range(3)])
    means = np.zeros((15, d))
    means[:, :2] = pts
    return GaussianMixture(np.full(15, 1 / 15), means, np.zeros((15, d, d)), labels=np.repeat([0, 1, 2], 5))


def atom_distance(gm: GaussianMixture, x: np.ndarray, label: int) -> np.ndarray:
    a = gm.means[gm.labels == label]
    return np.sqrt(np.min(np.sum((x[:, None, :] - a[None]) ** 2, axis=2), axis=1))


def biased(gm, b: np.ndarray, label: int) -> ScoreModel:
    r"""Exact unconditional score; class-``label`` score with the denoiser biased by ``b``
    (:math:`+\lambda b/\sigma^2`); use with ``guidance_form="cfg"``: the guided denoiser is biased by gamma b."""
    def cond(x, t, y):
        lam, s2 = alpha_sigma2(t)
        return gm.conditional_score(x, t, y) + (lam / s2) * b
    return ScoreModel(gm.score, gm.d, conditional_score=cond, guidance=gm.guidance_vector, n_classes=gm.n_classes)


def median_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Sample median with the distribution-free order-statistic interval (binomial(n, 1/2))."""
    xs = np.sort(np.asarray(x, float))
    n = xs.size
    lo = int(binom.ppf((1 - level) / 2, n, 0.5))
    hi = int(binom.isf((1 - level) / 2, n, 0.5))
    return float(np.median(xs)), float(xs[max(lo - 1, 0)]), float(xs[min(hi, n - 1)])


# ------------------------------------------------------------------------------------------- C2
@claim(
    id="support.rate_exponent",
    paper="support",
    statement="(C2) on subspace data the score-frozen EI (and Euler) contract the orthogonal part like delta^p(kappa), "
              "p = -ln(1 - kappa/(2(1+kappa)))/ln(1+kappa) < 1/2; DDIM like delta^(1/2)",
    note=f"{NOTE}#c2-rate-exponent",
    provenance="reconstructed",
    quick={"kappas": [0.1, 0.5], "methods": ["ei_ode", "ddim"], "n": 4, "points": 3},
    full={"kappas": [0.05, 0.1, 0.25, 0.5, 1.0], "methods": ["ei_ode", "euler", "ddim"], "n": 16, "points": 6},
)
def rate_exponent(ctx: Context) -> list[Measurement]:
    r"""Log-log slope of the orthogonal contraction over grid-aligned :math:`\delta = (1+\kappa)^{-m}` in
    :math:`[10^{-8}, 10^{-4}]` (no clipped last step).  Each extra tail step multiplies by
    :math:`1 - \kappa/(2(1+\kappa)) + O(t)`, so the fitted slope differs from :math:`p(\kappa)` by
    :math:`O(\delta_{\max}) \le 10^{-4}`: tolerance 5e-4 (three digits).  Control: the score evaluated at the
    step's end time t/(1+kappa) (a plausible off-by-one bug), which changes the tail factor to ~1 - kappa/2."""
    p = ctx.params
    gm = subspace_atoms()
    x0 = ctx.rng.standard_normal((p["n"], 3))
    out = []
    for kappa in p["kappas"]:
        target = gm
        if ctx.broken:
            target = ScoreModel(lambda x, t, k=kappa: gm.score(x, t / (1 + k)), 3,
                                guidance=lambda x, t, y, k=kappa: gm.guidance_vector(x, t / (1 + k), y), n_classes=2)
        m_lo, m_hi = math.ceil(4 * math.log(10) / math.log1p(kappa)), math.floor(8 * math.log(10) / math.log1p(kappa))
        ms = np.unique(np.linspace(m_lo, m_hi, p["points"]).round().astype(int))
        for method in p["methods"]:
            deltas, rhos = [], []
            for m in ms:
                delta = (1 + kappa) ** (-float(m))
                grid = time_grid("geometric", T=5.0, delta=delta, kappa=kappa)
                x = sample(target, method, grid=grid, n=p["n"], x_init=x0, label=1, guidance=3.0)
                rhos.append(float(np.median(np.abs(x[:, 1:] / x0[:, 1:]))))
                deltas.append(delta)
            fit = loglog_slope(deltas, rhos)
            pred = 0.5 if method == "ddim" else p_kappa(kappa)
            out.append(Measurement(
                name=f"slope {method} kappa={kappa}", measured=fit.slope, predicted=pred, kind="equal", tol=5e-4,
                reason="three digits; the per-step factor differs from its t -> 0 limit by O(t) <= O(1e-4)",
                extra={"p_kappa": p_kappa(kappa), "deltas": deltas, "rho": rhos}))
    return out


# ------------------------------------------------------------------------------------------- C4
def _distances_vs_delta(gm, method, kappa, deltas, x0, gamma, label, target=None, form="cg", seed=0):
    out = []
    for delta in deltas:
        grid = time_grid("geometric", T=5.0, delta=delta, kappa=kappa)
        x = sample(target or gm, method, grid=grid, n=x0.shape[0], x_init=x0, label=label, guidance=gamma,
                   guidance_form=form, seed=seed)
        out.append(atom_distance(gm, x, label))
    return out


@claim(
    id="support.distance_scales_with_sigma",
    paper="support",
    statement="(C4) with exact scores the guided EI output lies within O(sigma_delta) of the target class: "
              "the median distance has log-log slope in [0.45, 0.5] in delta and median/sigma_delta stays bounded",
    note=f"{NOTE}#c4-distance-sigma",
    provenance="reconstructed",
    quick={"n": 200, "gammas": [2.0], "deltas": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]},
    full={"n": 2000, "gammas": [1.0, 2.0, 5.0], "deltas": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7]},
)
def distance_scales_with_sigma(ctx: Context) -> list[Measurement]:
    r"""Slope interval [0.45, 0.5] from the note; tolerance 0.01 for the median's sampling noise (common
    random numbers across delta, so the noise on the slope is far below the median's own CI).  Bounded
    ratio: median/sigma at the smallest delta <= (delta_max/delta_min)^(1/2 - p(kappa)) x 1.25 times that at
    the largest (the EI exponent is p(kappa) < 1/2; 1.25 covers the two medians' CIs).  Control: the
    class-0 denoiser biased by b = (0, 0.02) (C9): the distance plateaus at ~ gamma|b|."""
    p = ctx.params
    gm = atoms_c4()
    x0 = ctx.rng.standard_normal((p["n"], 2))
    kappa = 0.1
    out = []
    for gamma in p["gammas"]:
        tg = biased(gm, np.array([0.0, 0.02]), 0) if ctx.broken else gm
        dists = _distances_vs_delta(gm, "ei_ode", kappa, p["deltas"], x0, gamma, 0, target=tg, form="cfg")
        med = np.array([np.median(d) for d in dists])
        fit = loglog_slope(p["deltas"], med)
        ratios = med / np.array([sigma(d) for d in p["deltas"]])
        growth = (p["deltas"][0] / p["deltas"][-1]) ** (0.5 - p_kappa(kappa))
        out.append(Measurement(name=f"slope of median distance gamma={gamma}", measured=fit.slope, kind="interval",
                               lo=0.45, hi=0.5, tol=0.01, reason="note's interval; 0.01 for Monte-Carlo noise of medians",
                               extra={"medians": med.tolist(), "ratio_median_over_sigma": ratios.tolist(),
                                      "note_ratio_at_1e-5": {1.0: 1.30, 2.0: 1.32, 5.0: 2.22}.get(gamma)}))
        out.append(Measurement(name=f"ratio growth gamma={gamma}", measured=ratios[-1] / ratios[0],
                               predicted=1.25 * growth, kind="le", tol=0.0,
                               reason="(delta ratio)^(1/2 - p(kappa)) from the EI exponent, x1.25 for the medians' CIs"))
    return out


# ------------------------------------------------------------------------------------------- C5
@claim(
    id="support.dimension_scaling",
    paper="support",
    statement="(C5) atoms in a 2-plane of R^d: the squared distance splits exactly into rho^2 |z_perp|^2 plus the "
              "d = 2 in-plane squared distance, so median distance ~ (rho/sigma_delta) sigma_delta sqrt(d)",
    note=f"{NOTE}#c5-dimension",
    provenance="reconstructed",
    quick={"dims": [2, 8, 32], "n": 200, "delta": 1e-3},
    full={"dims": [2, 8, 32, 128], "n": 2000, "delta": 1e-3},
)
def dimension_scaling(ctx: Context) -> list[Measurement]:
    r"""The posterior weights of atoms in a plane depend on :math:`y_\perp` only through a common factor, so
    the in-plane dynamics is that of d = 2 exactly and the orthogonal part is :math:`\rho\,z_\perp` (C1).
    Measurement 1: max relative deviation of :math:`|y|^2`-split identity, tol 1e3 u x steps (rounding of
    the softmax and the update, summed over steps).  Measurement 2: c_d = median/(sigma sqrt d) in the
    note's [1.0, 1.1] for d >= 8, widened by the median's CI and by the finite-d factor
    :math:`\sqrt{(d-2)/d}` -- we use the limit rho/sigma_delta +- 20% as the interval.  Control: a 1e-3
    bias of the score along the third axis."""
    p = ctx.params
    kappa, delta = 0.1, p["delta"]
    grid = time_grid("geometric", T=5.0, delta=delta, kappa=kappa)
    x2 = ctx.rng.standard_normal((p["n"], 2))
    ref = sample(atoms_c4(2), "ei_ode", grid=grid, n=p["n"], x_init=x2, label=0, guidance=2.0)
    dpl = atom_distance(atoms_c4(2), ref, 0)
    h = grid[:-1] - grid[1:]
    rho = float(np.prod(np.exp(h) - np.expm1(h) / -np.expm1(-2 * grid[:-1])))
    out = []
    for d in p["dims"]:
        if d == 2:
            continue
        gm = atoms_c4(d)
        zp = ctx.rng.standard_normal((p["n"], d - 2))
        x0 = np.concatenate([x2, zp], axis=1)
        tg = gm
        if ctx.broken:
            b = np.zeros(d)
            b[2] = 1e-3
            tg = ScoreModel(lambda x, t, gm=gm, b=b: gm.score(x, t) + b, d, guidance=gm.guidance_vector, n_classes=3)
        x = sample(tg, "ei_ode", grid=grid, n=p["n"], x_init=x0, label=0, guidance=2.0)
        dist = atom_distance(gm, x, 0)
        pred = np.sqrt(rho ** 2 * np.sum(zp ** 2, axis=1) + dpl ** 2)
        dev = float(np.max(np.abs(dist - pred) / pred))
        out.append(Measurement(name=f"split identity d={d}", measured=dev, predicted=0.0, kind="equal",
                               tol=1e3 * U * (grid.size - 1),
                               reason="rounding: ~1e3 u per step (softmax, update) summed over the steps"))
        med, lo, hi = median_ci(dist)
        s = sigma(delta) * math.sqrt(d)
        out.append(Measurement(name=f"c_d d={d}", measured=med / s, ci=(lo / s, hi / s), kind="interval",
                               lo=0.8 * rho / sigma(delta), hi=1.2 * rho / sigma(delta), tol=0.0,
                               reason="large-d limit rho/sigma_delta +-20% (finite-d chi factor and in-plane part)",
                               extra={"rho_over_sigma": rho / sigma(delta), "note": "c ~ 1.0-1.1 for d >= 8",
                                      "chi_median_factor": float(chi.median(d - 2) / math.sqrt(d))}))
    return out


# ------------------------------------------------------------------------------------------- C6
@claim(
    id="support.first_order_error",
    paper="support",
    statement="(C6) the EI endpoint error against a fine reference (kappa = 0.002) is first order in kappa",
    note=f"{NOTE}#c6-first-order",
    provenance="reconstructed",
    quick={"kappas": [0.05, 0.1, 0.2, 0.5], "n": 32, "kappa_ref": 0.005},
    full={"kappas": [0.05, 0.1, 0.2, 0.5, 1.0], "n": 500, "kappa_ref": 0.001},
)
def first_order_error(ctx: Context) -> list[Measurement]:
    r"""Slope of median :math:`|y_\kappa - y_{\rm ref}|` against kappa in [0.85, 1.15]: first order, with
    O(kappa^2) curvature over a 10x range and the reference's own error (kappa_ref/kappa <= 4%).
    Control: the reference run with the C9 bias (0, 0.02) on the class-0 denoiser, so the "error" contains
    a kappa-independent part and the slope collapses."""
    p = ctx.params
    gm = atoms_c4()
    x0 = ctx.rng.standard_normal((p["n"], 2))
    kw = dict(n=p["n"], x_init=x0, label=0, guidance=2.0, guidance_form="cfg")
    ref_target = biased(gm, np.array([0.0, 0.02]), 0) if ctx.broken else gm
    ref = sample(ref_target, "ei_ode", grid=time_grid("geometric", T=5.0, delta=1e-3, kappa=p["kappa_ref"]), **kw)
    errs, errs_ddim = [], []
    for kappa in p["kappas"]:
        grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=kappa)
        errs.append(float(np.median(np.linalg.norm(sample(gm, "ei_ode", grid=grid, **kw) - ref, axis=1))))
        errs_ddim.append(float(np.median(np.linalg.norm(sample(gm, "ddim", grid=grid, **kw) - ref, axis=1))))
    fit = loglog_slope(p["kappas"], errs)
    return [Measurement(name="slope of EI error in kappa", measured=fit.slope, kind="interval", lo=0.85, hi=1.15,
                        tol=0.0, reason="first order; O(kappa^2) curvature and <= 10% reference error",
                        extra={"errors_ei": errs, "errors_ddim": errs_ddim,
                               "note_ei": [2.8e-3, 5.8e-3, 11.8e-3, 30e-3, 62e-3]})]


# ------------------------------------------------------------------------------------------- C7
def c7_target() -> GaussianMixture:
    means = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])
    return GaussianMixture(np.full(3, 1 / 3), means, np.zeros((3, 2, 2)), labels=[0, 0, 1])


@claim(
    id="support.exceptional_set",
    paper="support",
    statement="(C7) the start (0, -0.7) on the symmetry line ends at distance ~1 from the target atoms (+-1, 0) for "
              "every delta and gamma, while N(0, I) starts end within r = 0.2 with probability -> 1",
    note=f"{NOTE}#c7-exceptional-set",
    provenance="reconstructed",
    quick={"deltas": [1e-3, 1e-5], "gammas": [1.0, 3.0], "n": 300, "r": 0.2},
    full={"deltas": [1e-3, 1e-5, 1e-7], "gammas": [1.0, 3.0, 10.0], "n": 4000, "r": 0.2},
)
def exceptional_set(ctx: Context) -> list[Measurement]:
    r"""Symmetric start: x1 stays exactly 0 (the two target atoms get equal posterior weight in float64),
    and the endpoint is (0, y2) with |y2| = O(sigma_delta), so the distance is sqrt(1 + y2^2) in
    [1, 1 + sigma_delta^2 * 50] (|y2| <= 10 sigma).  Random starts: the 95% Wilson upper end of
    P(distance > r) at the smallest delta <= 0.05.  Control: the class-0 score with a 1e-3 bias along x1,
    which breaks the symmetry (the start escapes)."""
    p = ctx.params
    gm = c7_target()
    tg = gm
    if ctx.broken:
        tg = ScoreModel(gm.score, 2, guidance=lambda x, t, y: gm.guidance_vector(x, t, y) + np.array([1e-3, 0.0]),
                        n_classes=2)
    out = []
    for delta in p["deltas"]:
        grid = time_grid("geometric", T=5.0, delta=delta, kappa=0.1)
        for gamma in p["gammas"]:
            x = sample(tg, "ei_ode", grid=grid, n=1, x_init=[[0.0, -0.7]], label=0, guidance=gamma)
            dist = float(atom_distance(gm, x, 0)[0])
            out.append(Measurement(name=f"symmetric start distance delta={delta:g} gamma={gamma}", measured=dist,
                                   kind="interval", lo=1.0, hi=1.0 + 50 * sigma(delta) ** 2, tol=4 * U,
                                   reason="sqrt(1 + y2^2) with |y2| <= 10 sigma_delta; 4u rounding",
                                   extra={"endpoint": x[0].tolist()}))
    x0 = ctx.rng.standard_normal((p["n"], 2))
    grid = time_grid("geometric", T=5.0, delta=min(p["deltas"]), kappa=0.1)
    x = sample(tg, "ei_ode", grid=grid, n=p["n"], x_init=x0, label=0, guidance=max(p["gammas"]))
    k = int(np.sum(atom_distance(gm, x, 0) > p["r"]))
    pc = proportion_ci(k, p["n"])
    out.append(Measurement(name=f"P(distance > {p['r']}) from N(0,I)", measured=pc.p, predicted=0.05, kind="le",
                           ci=pc.ci, tol=0.0, reason="escape with probability -> 1: Wilson 95% upper end <= 5%",
                           extra={"k": k, "n": p["n"]}))
    return out


# ------------------------------------------------------------------------------------------- C8
@claim(
    id="support.ddpm_close",
    paper="support",
    statement="(C8) guided DDPM-EI (code noise and exact noise) ends near an atom of the target class with "
              "median distance sqrt(2 ln 2 v_N) (v_N: the C3 variance recursion), i.e. O(sigma_delta)",
    note=f"{NOTE}#c8-ddpm",
    provenance="reconstructed",
    quick={"n": 200, "gammas": [1.0, 5.0], "delta": 1e-5},
    full={"n": 4000, "gammas": [1.0, 5.0, 10.0], "delta": 1e-5},
)
def ddpm_close(ctx: Context) -> list[Measurement]:
    r"""Once the posterior has committed to one atom, the late dynamics is the point-mass case of C3, so the
    endpoint is N(atom, v_N I_2) and the distance is Rayleigh: median sqrt(2 ln 2 v_N).  The measured median's
    order-statistic 95% CI half-width plus 5% is the tolerance (the early-time memory contributes rho^2 ~ 1e-6 of v_N).
    Control: the C9 bias b = (0, 0.02) on the class-0 denoiser."""
    p = ctx.params
    gm = atoms_c4()
    grid = time_grid("geometric", T=5.0, delta=p["delta"], kappa=0.1)
    out = []
    for method, noise in (("ei_sde_code", "code"), ("ei_sde", "exact")):
        pred = math.sqrt(2 * math.log(2) * variance_recursion(grid, noise))
        for gamma in p["gammas"]:
            tg = biased(gm, np.array([0.0, 0.02]), 0) if ctx.broken else gm
            x = sample(tg, method, grid=grid, n=p["n"], seed=int(ctx.rng.integers(2 ** 62)), label=0, guidance=gamma,
                       guidance_form="cfg")
            med, lo, hi = median_ci(atom_distance(gm, x, 0))
            out.append(Measurement(name=f"median distance {method} gamma={gamma}", measured=med, ci=(lo, hi),
                                   kind="equal", predicted=pred, tol=0.05 * pred + 0.5 * (hi - lo),
                                   reason="Rayleigh median of N(atom, v_N I); 5% for late-committing samples "
                                          "plus the half-width of the order-statistic 95% CI of the median",
                                   extra={"predicted_median": pred, "note_median": 5.4e-3,
                                          "median_over_sigma": med / sigma(p["delta"])}))
    return out


# ------------------------------------------------------------------------------------------- C9
@claim(
    id="support.biased_score_failure",
    paper="support",
    statement="(C9) a conditional denoiser biased by b gives a guided bias gamma b: the median distance to the "
              "target grows like gamma |b| (robustness fails under score error)",
    note=f"{NOTE}#c9-biased-score",
    provenance="reconstructed",
    expect="fails-as-predicted",
    quick={"gammas": [5.0, 10.0, 20.0, 50.0], "n": 100, "delta": 1e-5},
    full={"gammas": [1.0, 2.0, 5.0, 10.0, 20.0, 50.0], "n": 1000, "delta": 1e-5},
)
def biased_score_failure(ctx: Context) -> list[Measurement]:
    r"""b = (0, 0.02).  Predicted failure: for gamma >= 5 the median distance lies in
    [0.5, 1.5] gamma|b| (the exact-score part is O(gamma sigma_delta) ~ 0.1 gamma|b| at delta = 1e-5),
    and its log-log slope in gamma is in [0.8, 1.2].  Control: exact scores (no bias) -- the distance is
    then far below gamma|b| and the failure is not reproduced."""
    p = ctx.params
    gm = atoms_c4()
    b = np.array([0.0, 0.02])
    grid = time_grid("geometric", T=5.0, delta=p["delta"], kappa=0.1)
    x0 = ctx.rng.standard_normal((p["n"], 2))
    tg = gm if ctx.broken else biased(gm, b, 0)
    meds, out = [], []
    for gamma in p["gammas"]:
        x = sample(tg, "ei_ode", grid=grid, n=p["n"], x_init=x0, label=0, guidance=gamma, guidance_form="cfg")
        med = float(np.median(atom_distance(gm, x, 0)))
        meds.append(med)
        if gamma >= 5:
            g = gamma * float(np.linalg.norm(b))
            out.append(Measurement(name=f"median distance / (gamma|b|) gamma={gamma}", measured=med / g,
                                   kind="interval", lo=0.5, hi=1.5, tol=0.0,
                                   reason="distance ~ gamma|b| + O(gamma sigma_delta); sigma_delta/|b| ~ 0.22"))
    big = [g for g in p["gammas"] if g >= 5]
    fit = loglog_slope(big, [m for g, m in zip(p["gammas"], meds) if g >= 5])
    out.append(Measurement(name="slope in gamma", measured=fit.slope, kind="interval", lo=0.8, hi=1.2, tol=0.0,
                           reason="linear in gamma up to the O(sigma) exact-score part",
                           extra={"medians": meds, "note": {1: 0.021, 2: 0.038, 5: 0.096, 10: 0.19, 20: 0.39, 50: 0.98}}))
    return out


# ------------------------------------------------------------------------------------------- C10
C10_STARTS = np.array([[-3.0, 3.0], [-1.0, -3.0], [0.0, 0.0], [2.0, -4.0], [5.0, -2.0]])


def _draw_regions(ax, rm: RegionMixture, target: int):
    th = np.linspace(0, 2 * np.pi, 400)
    for reg, lab in zip(rm.regions, rm.labels):
        col = "red" if lab == target else "gray"
        ax.plot(reg.c[0] + reg.R * np.cos(th), reg.c[1] + reg.R * np.sin(th), color=col, lw=1)
        if reg.r > 0:
            ax.plot(reg.c2[0] + reg.r * np.cos(th), reg.c2[1] + reg.r * np.sin(th), color=col, lw=1, ls="--")


@claim(
    id="support.three_disks",
    paper="support",
    statement="(C10) the authors' three-disk example with exact scores: from their 5 starts, guided EI ends "
              "within ~4-4.7 sigma_delta of the target disk (eta = 1) for gamma in {1, 5}",
    note=f"{NOTE}#c10-three-disks",
    provenance="reconstructed",
    quick={"deltas": [1e-2, 1e-3], "gammas": [1.0, 5.0]},
    full={"deltas": [1e-2, 1e-3, 1e-4, 1e-5], "gammas": [1.0, 1.5, 2.0, 5.0]},
)
def three_disks_claim(ctx: Context) -> list[Measurement]:
    r"""Max over the five starts of distance / sigma_delta in the note's [4.0, 4.7], widened by 1.0 for
    the difference between our exact scores and the note's lambda-correct 20x20 trapezoid posterior (a
    discrete measure at small sigma), plus the quadrature error estimate / sigma.  Control: the authors'
    alpha-less 20x20 score run with the *wrong* target label (eta = 0): the endpoints land on another disk."""
    p = ctx.params
    rm = three_disks()
    label = 0 if ctx.broken else 1
    out = []
    fig = None if ctx.broken else ctx.figure(figsize=(6, 6))
    if fig is not None:
        ax = fig.add_subplot(1, 1, 1)
        _draw_regions(ax, rm, 1)
    for delta in p["deltas"]:
        grid = time_grid("geometric", T=5.0, delta=delta, kappa=0.1)
        for gamma in p["gammas"]:
            x, traj = sample(rm, "ei_ode", grid=grid, n=5, x_init=C10_STARTS, label=label, guidance=gamma,
                             return_trajectory=True)
            qerr = rm.quadrature_error(x, delta)
            ratio = float(np.max(rm.distance(x, 1))) / sigma(delta)
            out.append(Measurement(name=f"max dist/sigma delta={delta:g} gamma={gamma}", measured=ratio,
                                   kind="interval", lo=4.0, hi=4.7, tol=1.0 + qerr / sigma(delta),
                                   reason="note's range; +1 for exact vs 20x20-node scores; + quadrature error/sigma",
                                   extra={"max_distance": ratio * sigma(delta), "quadrature_error": qerr}))
            if fig is not None and delta == p["deltas"][-1]:
                for i in range(5):
                    ax.plot(traj[:, i, 0], traj[:, i, 1], lw=0.7, color="C0" if gamma == 1 else "C1")
                ax.plot(x[:, 0], x[:, 1], "k.", ms=4)
    if fig is not None:
        ax.set_aspect("equal")
        ax.set_title("C10: EI trajectories (gamma 1 blue, 5 orange), target disk red")
    return out


# ------------------------------------------------------------------------------------------- C11
@claim(
    id="support.nonconvex",
    paper="support",
    statement="(C11) non-convex supports (the authors' crescents, an annulus): N(0, I) starts and the authors' "
              "fixed starts end within r(delta) = 6 sigma_delta of the target region, with probability -> 1",
    note=f"{NOTE}#c11-non-convex",
    provenance="reconstructed",
    quick={"delta": 1e-3, "gammas": [1.0, 5.0], "n": 16},
    full={"delta": 1e-4, "gammas": [1.0, 1.5, 2.0, 5.0, 50.0], "n": 200},
)
def nonconvex(ctx: Context) -> list[Measurement]:
    r"""Fraction of endpoints farther than 6 sigma_delta from the target crescent (eta = 0) and from an
    annulus target; 95% Wilson upper end <= 0.25 (quick n is small).  6 sigma is the C10 scale with margin.
    Control: the guidance label swapped to the other crescent while distances are measured to eta = 0."""
    p = ctx.params
    delta = p["delta"]
    grid = time_grid("geometric", T=5.0, delta=delta, kappa=0.1)
    r = 6 * sigma(delta)
    starts = np.array([[-2.0, 2.0], [-1.5, -2.0], [1.5, 2.0], [2.0, -1.6]])
    cres = two_crescents()
    from numerics.papers.support.region_targets import Annulus
    ann = RegionMixture([Annulus((0.0, 0.0), 1.5, 1.0), Disk((3.0, 0.0), 0.5)])
    out = []
    fig = None if ctx.broken else ctx.figure(figsize=(10, 5))
    for j, (name, rm) in enumerate((("crescents", cres), ("annulus", ann))):
        x0 = np.concatenate([starts, ctx.rng.standard_normal((p["n"], 2))]) if name == "crescents" else \
            ctx.rng.standard_normal((p["n"] + 4, 2))
        label = 1 if ctx.broken else 0
        ax = None
        if fig is not None:
            ax = fig.add_subplot(1, 2, j + 1)
            _draw_regions(ax, rm, 0)
        far = 0
        worst = 0.0
        for gamma in p["gammas"]:
            x, traj = sample(rm, "ei_ode", grid=grid, n=x0.shape[0], x_init=x0, label=label, guidance=gamma,
                             return_trajectory=True)
            dist = rm.distance(x, 0)
            far += int(np.sum(dist > r))
            worst = max(worst, float(dist.max()) / sigma(delta))
            if ax is not None:
                for i in range(min(8, x0.shape[0])):
                    ax.plot(traj[:, i, 0], traj[:, i, 1], lw=0.5, color="C0")
                ax.plot(x[:, 0], x[:, 1], ".", ms=3, label=f"gamma={gamma}")
        ntot = x0.shape[0] * len(p["gammas"])
        pc = proportion_ci(far, ntot)
        out.append(Measurement(name=f"{name}: P(dist > 6 sigma)", measured=pc.p, ci=pc.ci, predicted=0.25,
                               kind="le", tol=0.0, reason="probability -> 1 of landing near; Wilson 95% upper <= 0.25",
                               extra={"max_dist_over_sigma": worst, "k": far, "n": ntot}))
        if ax is not None:
            ax.set_aspect("equal")
            ax.legend(fontsize=6)
            ax.set_title(f"C11 {name}, delta={delta:g}")
    return out


# ------------------------------------------------------------------------------------------- C12
def _fd_grad(f, x, h):
    g = np.zeros_like(x)
    for j in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[j] = h
        g[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@claim(
    id="support.score_identity",
    paper="support",
    statement="(C12) gamma grad log p(y|eta) + (1-gamma) grad log p = grad log p + gamma grad log p(eta|y) = "
              "(lambda D_gamma - y)/sigma^2, checked by finite differences of log p_t on boxes, spheres and disks",
    note=f"{NOTE}#c12-score-identity",
    provenance="reconstructed",
    quick={"ts": [0.05, 0.5], "n": 8, "gamma": 3.0},
    full={"ts": [0.01, 0.05, 0.2, 0.5, 1.0], "n": 64, "gamma": 3.0},
)
def score_identity(ctx: Context) -> list[Measurement]:
    r"""Central differences with step h = 1e-4 sigma: truncation ~ h^2 |grad^3 log p| / 6 <= h^2/sigma^3 * C,
    rounding ~ u |log p| / h; tolerance 1e-5 / sigma (relative to score scale 1/sigma) covers both
    (|log p| <= 50 on these points, C ~ 10).  For disks the quadrature error estimate / sigma^2 is added.
    Measured: max over points of |CFG form - (lambda D_gamma - y)/sigma^2| with both computed by FD
    of log p_t(y) and log p_t(y | eta).  Control: the authors' alpha-less 20x20 score in place of the exact
    one at t = 0.5 (the largest t in quick) -- it must be flagged as not the exact score."""
    p = ctx.params
    gamma = p["gamma"]
    targets = {
        "boxes": RegionMixture([Box([-1, -1, 0], [0, 1, 1]), Box([0.5, -0.5, -1], [2, 0.5, 0])]),
        "spheres": RegionMixture([Sphere([0, 0, 0], 1.0), Sphere([2.5, 0, 0], 0.5)]),
        "disks": three_disks(),
    }
    out = []
    for name, rm in targets.items():
        cond = RegionMixture([r for r, l in zip(rm.regions, rm.labels) if l == 1])
        worst = 0.0
        worst_alt = 0.0
        for t in p["ts"]:
            lam, s2 = alpha_sigma2(t)
            s = math.sqrt(s2)
            reg = rm.regions[1]
            anchor = reg.c if hasattr(reg, "c") else (reg.center if hasattr(reg, "center") else 0.5 * (reg.lo + reg.hi))
            y = lam * anchor + s * ctx.rng.standard_normal((p["n"], rm.d))
            h = 1e-4 * s
            g_all = _fd_grad(lambda z: rm.log_density(z, t), y, h)
            g_cond = _fd_grad(lambda z: cond.log_density(z, t), y, h)
            g_post = _fd_grad(lambda z: rm.class_log_posterior(z, t)[:, 1], y, h)
            cfg = gamma * g_cond + (1 - gamma) * g_all
            cg = g_all + gamma * g_post
            if ctx.broken and name == "disks" and t == max(p["ts"]):
                approx = three_disks(kernel="authors")
                formula = (lam * approx.guided_denoiser(y, t, 1, gamma) - y) / s2
            else:
                formula = (lam * rm.guided_denoiser(y, t, 1, gamma) - y) / s2
            worst = max(worst, float(np.max(np.abs(cfg - formula))) * s)
            worst_alt = max(worst_alt, float(np.max(np.abs(cg - cfg))) * s)
        out.append(Measurement(name=f"{name}: sigma |CFG(FD) - (lam D_gamma - y)/sigma^2|", measured=worst,
                               predicted=0.0, kind="equal", tol=1e-5,
                               reason="central FD h = 1e-4 sigma: truncation + rounding <= 1e-5 on the sigma-scaled score"))
        out.append(Measurement(name=f"{name}: sigma |CG(FD) - CFG(FD)|", measured=worst_alt, predicted=0.0,
                               kind="equal", tol=1e-5, reason="both FD, same error budget"))
    return out


# ====================================================================================================
# The authors' three experiments with exact scores
# ====================================================================================================
GROWTH_MAX = 2.0
R_FACTOR = 6.0
FRACTION_MIN = 0.8


def exponent(method: str, kappa: float) -> float:
    """The contraction exponent of a scheme: p(kappa) when the score is frozen over the step (C2), 1/2 when
    the denoiser is (DDIM/DDPM)."""
    return p_kappa(kappa) if TABLE[method].frozen == "score" else 0.5


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
            ax.set_title(f"{'SDE' if TABLE[method].stochastic else 'ODE'} ({method}) gamma={gamma:g}\n"
                         f"max d/sigma={r.max_over_sigma:.2f}", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"{exp.name} ({exp.figure}), exact scores, kappa={kappa:g}, delta={d_fig:g}"
                 + (" -- endpoints coloured by guided class" if scatter else " -- target red"), fontsize=8)
    fig.tight_layout()


def _experiment(ctx: Context, name: str, wrong: dict, absolute: tuple[float, float] | None = None,
                scatter: bool = False) -> list[Measurement]:
    """Run the experiment ``name`` over the profile (``wrong``: the control's class for each class), draw it
    and measure it (``absolute``: the absolute window, disks only)."""
    exp, rows, runs = _run_table(ctx, name, wrong)
    _figure(ctx, exp, runs, ctx.params, scatter=scatter)
    return _measure(rows, runs, ctx.params, exp.name, absolute=absolute)


QUICK = {"gammas": [1.0, 5.0], "kappas": [0.1], "deltas": [1e-2, 1e-3], "methods": [AUTHORS_ODE, AUTHORS_SDE]}
FULL = {"gammas": [1.0, 1.5, 2.0, 5.0, 50.0], "kappas": [0.1, 0.5], "deltas": [1e-2, 1e-3, 1e-4, 1e-5],
        "methods": list(METHODS)}


# one claim per experiment (own id, statement and profiles); the bodies are the one helper _experiment
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
    return _experiment(ctx, "three_disks", {1: 0, 0: 1, 2: 1}, absolute=(4.7, 1.0))


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
    return _experiment(ctx, "two_crescents", {0: 1, 1: 0})


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
    return _experiment(ctx, "five_regions", {c: (c + 1) % 5 for c in range(5)}, scatter=True)

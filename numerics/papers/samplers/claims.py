r"""Claims about the samplers: coefficient identities, convergence orders, the exact output law of guided DDPM.

Statements: ``proofs_notes/integrators.md`` (identities, orders). The support note's C1 and C3 (laws of
the samplers on subspace data) are claims of that paper: :mod:`numerics.papers.support.claims`.  Everything runs the package's
own float64 sampler (:func:`numerics.samplers.sample`) on exact mixture scores (Numba kernels).

Rounding tolerances are first-order: a step :math:`x_s = c_x x + c_q q + c_z z` computed from two routes
differs by at most :math:`\epsilon_k(|c_x||x| + |c_q||q| + |c_z||z|)` per step, with :math:`\epsilon_k`
the relative error of the generated coefficients (``(4 + t + s) u``, tested against mpmath in
``tests/test_codegen.py``) plus a few ulps for the arithmetic, summed over steps; the later steps are
assumed not to amplify a perturbation (they are contractions on these targets up to factors of order 1,
which the factor 4 in the per-step bound covers).
"""
from __future__ import annotations

import math

import numpy as np

from numerics.checks.claim import Context, Measurement, claim
from numerics.constants import UNIT_ROUNDOFF as U
from numerics.generated import integrator_coeffs as IC
from numerics.grids import time_grid
from numerics.methods import TABLE, check_method
from numerics.mixture import GaussianMixture
from numerics.references.exact_gaussian import pf_map
from numerics.samplers import sample
from numerics.schedule import alpha_sigma2
from numerics.stats import loglog_slope

NOTE_INT = "proofs_notes/integrators.md"


def two_class_mixture() -> GaussianMixture:
    """A 2-class, 4-component mixture in 2-D (full-rank, rank-one and an atom)."""
    covs = np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.0]], np.zeros((2, 2)), 0.25 * np.eye(2)])
    means = np.array([[-2.0, 0.0], [-1.0, 2.0], [2.0, 1.0], [1.5, -1.5]])
    return GaussianMixture([0.3, 0.2, 0.25, 0.25], means, covs, labels=[0, 0, 1, 1])


def _step_bound(grid: np.ndarray, traj: np.ndarray, qs: list[np.ndarray], coeffs: list[tuple], z_scale: float) -> float:
    r"""First-order rounding bound :math:`\sum_k 4(4 + t_k + s_k + 3)u\,\max(|c_x||x| + |c_q||q| + |c_z||z|)`."""
    tot = 0.0
    for k, c in enumerate(coeffs):
        t, s = grid[k], grid[k + 1]
        mag = abs(c[0]) * np.abs(traj[k]).max() + abs(c[1]) * np.abs(qs[k]).max()
        if len(c) > 2:
            mag += abs(c[2]) * z_scale
        tot += 4 * (7 + t + s) * U * mag
    return tot


def _guided_setup(ctx: Context) -> tuple[GaussianMixture, np.ndarray, dict]:
    """The identity claims' setting: the two-class mixture, the geometric grid of ``kappa`` and the ``sample``
    keywords (``n`` points, class 1 guided with weight ``w``)."""
    p = ctx.params
    grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=p["kappa"])
    return two_class_mixture(), grid, dict(grid=grid, n=p["n"], seed=ctx.sub_seed, label=1, guidance=p["w"])


def _denoisers(gm, grid, traj, label, w):
    """Guided denoisers along a trajectory (for the rounding bound)."""
    out = []
    for k in range(grid.size - 1):
        t = float(grid[k])
        a, s2 = alpha_sigma2(t)
        out.append(gm.denoiser(traj[k], t) + (w * s2 / a) * gm.guidance_vector(traj[k], t, label))
    return out


# ------------------------------------------------------------------------------------------- identities
@claim(
    id="samplers.ddpm_is_ddim_eta1",
    paper="samplers",
    statement="the DDPM ancestral sampler equals DDIM-eta at eta = 1 (same seed, same noise): outputs agree "
              "to float64 rounding",
    note=f"{NOTE_INT}#ddim-eta",
    provenance="standard",
    quick={"n": 1000, "kappa": 0.1, "w": 3.0},
    full={"n": 10000, "kappa": 0.05, "w": 3.0},
)
def ddpm_is_ddim_eta1(ctx: Context) -> list[Measurement]:
    """DDPM vs DDIM-eta(1) on a guided 2-class mixture.  Control: eta = 0 (DDIM)."""
    p = ctx.params
    gm, grid, kw = _guided_setup(ctx)
    eta = 0.0 if ctx.broken else 1.0
    x1, traj = sample(gm, "ddpm", return_trajectory=True, **kw)
    x2 = sample(gm, "ddim_eta", eta=eta, **kw)
    qs = _denoisers(gm, grid, traj, 1, p["w"])
    coeffs = [IC.ddpm_coeffs(float(grid[k]), float(grid[k + 1])) for k in range(grid.size - 1)]
    z_max = math.sqrt(2 * math.log(2 * p["n"] * gm.d * grid.size)) + 2  # max |z| over all draws, whp
    tol = _step_bound(grid, traj, qs, coeffs, z_max)
    diff = float(np.abs(x1 - x2).max())
    return [Measurement(name="max |ddpm - ddim_eta(1)|", measured=diff, predicted=0.0, kind="equal", tol=tol,
                        reason="sum over steps of 4(7 + t + s)u (|c_x||x| + |c_q||D_w| + |c_z| max|z|): "
                               "generated-coefficient error (4 + t + s)u plus arithmetic, no amplification",
                        extra={"eta": eta, "steps": int(grid.size - 1), "tol_over_u": tol / U})]


@claim(
    id="samplers.dpm_solver_1_is_ddim",
    paper="samplers",
    statement="DPM-Solver-1 (noise prediction frozen) gives the same outputs as DDIM (data prediction frozen)",
    note=f"{NOTE_INT}#dpm-solver-1",
    provenance="standard",
    quick={"n": 1000, "kappa": 0.1, "w": 3.0},
    full={"n": 10000, "kappa": 0.05, "w": 3.0},
)
def dpm_solver_1_is_ddim(ctx: Context) -> list[Measurement]:
    r"""DPM-Solver-1 vs DDIM.  Control: the DPM-Solver-1 update with :math:`\alpha` dropped, built by hand:
    :math:`x_s = x_t + c_q\varepsilon` (i.e. :math:`c_x = 1` instead of :math:`e^h = \alpha_s/\alpha_t`)."""
    p = ctx.params
    gm, grid, kw = _guided_setup(ctx)
    xd, traj = sample(gm, "ddim", return_trajectory=True, **kw)
    if ctx.broken:
        x = np.random.default_rng(ctx.sub_seed).standard_normal((p["n"], gm.d))
        for k in range(grid.size - 1):
            t, s = float(grid[k]), float(grid[k + 1])
            eps = -math.sqrt(-math.expm1(-2 * t)) * (gm.score(x, t) + p["w"] * gm.guidance_vector(x, t, 1))
            x = x + IC.dpm_solver_1_coeffs(t, s)[1] * eps
        x1 = x
    else:
        x1 = sample(gm, "dpm_solver_1", **kw)
    qs = _denoisers(gm, grid, traj, 1, p["w"])
    # the eps route recombines x and sigma^2 s, whose sizes are |x| and |x| + alpha|D| before cancelling
    tol = 0.0
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        cx, cq = IC.ddim_coeffs(t, s)
        a = math.exp(-t)
        xm, dm = np.abs(traj[k]).max(), np.abs(qs[k]).max()
        tol += 4 * (7 + t + s) * U * (abs(cx) * xm + abs(cq) * dm + abs(cq) * (2 * xm + a * dm) / a)
    diff = float(np.abs(x1 - xd).max())
    return [Measurement(name="max |dpm_solver_1 - ddim|", measured=diff, predicted=0.0, kind="equal", tol=tol,
                        reason="sum over steps of 4(7 + t + s)u (|c_x||x| + |c_q||D_w| + |c_q|(2|x| + alpha|D_w|)/alpha): "
                               "coefficient error and the cancellation of x + sigma^2 s in the eps route",
                        extra={"alpha_dropped": ctx.broken, "tol_over_u": tol / U})]


# ------------------------------------------------------------------------------------------- orders
def order_methods(params: dict) -> dict[str, int]:
    """``method -> order`` measured by :func:`convergence_orders`: every deterministic method of the table
    :data:`numerics.methods.TABLE` with an order, or the profile's ``methods`` (a subset, in its order)."""
    table = {m.name: m.order for m in TABLE.values() if not m.stochastic and m.order is not None}
    names = params.get("methods")
    if names is None:
        return table
    return {check_method(n, "methods", tuple(table)): table[n] for n in names}


def _orders_text() -> str:
    by_order: dict[int, list[str]] = {}
    for name, order in order_methods({}).items():
        by_order.setdefault(order, []).append(name)
    return " and ".join(f"p = {p} ({', '.join(names)})" for p, names in sorted(by_order.items()))



def gaussian_target() -> GaussianMixture:
    """A correlated 2-D Gaussian, N((1, -0.5), [[0.5, 0.2], [0.2, 0.3]])."""
    return GaussianMixture([1.0], [[1.0, -0.5]], [[[0.5, 0.2], [0.2, 0.3]]])


def _ddim_alpha_dropped(gm, grid, x):
    r"""DDIM with :math:`\alpha` dropped: :math:`x_s = \frac{\sigma_s}{\sigma_t}x + (1 - \frac{\sigma_s}{\sigma_t})D(x)`."""
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        r = math.sqrt(-math.expm1(-2 * s) / -math.expm1(-2 * t))
        x = r * x + (1 - r) * gm.denoiser(x, t)
    return x


@claim(
    id="samplers.convergence_orders",
    paper="samplers",
    statement="on a Gaussian target, the endpoint error vs the exact probability-flow map decays like h^p with "
              f"the orders of the method table: {_orders_text()}",
    note=f"{NOTE_INT}#orders",
    provenance="standard",
    quick={"ns": [16, 32, 64, 128], "T": 2.0, "delta": 0.05, "points": 64, "kind": "logsnr",
           "methods": ["ddim", "euler", "ei_ode", "dpm_solver_2"]},
    full={"ns": [32, 64, 128, 256, 512], "T": 2.0, "delta": 0.05, "points": 256, "kind": "logsnr"},
)
def convergence_orders(ctx: Context) -> list[Measurement]:
    """Log-log slope of max endpoint error vs n, for every method of :func:`order_methods` (the quick profile
    keeps to four of them).  Control: every row replaced by DDIM with alpha dropped (an inconsistent scheme:
    its error tends to a constant, slope ~ 0)."""
    p = ctx.params
    gm = gaussian_target()
    x0 = ctx.rng.standard_normal((p["points"], gm.d))
    exact = pf_map(gm, x0, p["T"], p["delta"])
    out = []
    for method, order in order_methods(p).items():
        errs = []
        for n in p["ns"]:
            grid = time_grid(p["kind"], T=p["T"], delta=p["delta"], n=n)
            x = (_ddim_alpha_dropped(gm, grid, x0) if ctx.broken
                 else sample(gm, method, grid=grid, n=x0.shape[0], x_init=x0))
            errs.append(float(np.abs(x - exact).max()))
        fit = loglog_slope(p["ns"], errs)
        out.append(Measurement(
            name=f"order {method}", measured=-fit.slope, kind="interval", lo=order - 0.15, hi=order + 0.15, tol=0.0,
            reason="order window +-0.15 as in diffrax-style order tests: the fit spans one decade of n and "
                   "pre-asymptotic terms O(h^{p+1}) shift the slope by up to ~0.1",
            extra={"errors": errs, "ns": list(p["ns"]), "grid": p["kind"], "slope_se": fit.se,
                   "alpha_dropped": ctx.broken}))
    return out


# ----------------------------------------------------------------------------- exact law on a grid (1-D)
#: Probability that the DKW band below is exceeded by chance.
DKW_FALSE_ALARM = 1e-6


def _ddpm_grid_law(gm: GaussianMixture, grid_t: np.ndarray, label: int, w: float, x: np.ndarray) -> tuple:
    r"""Exact output density of guided DDPM on the space grid ``x`` (1-D), by propagating its Gaussian kernels.

    Step ``k`` (forward time :math:`t_k \to t_{k+1}`) is :math:`x' \sim N(c_x x + c_q D_w(x),\ c_z^2)` with the
    generated :func:`ddpm_coeffs` and :math:`D_w = D + w\,\sigma_t^2/\alpha_t\,g_y` (classifier guidance in
    score form).  Returns ``(density, escaped mass)``.
    """
    from numerics.references.grid_density import gaussian_on_grid, propagate

    def mean(xx, k):
        t, s = float(grid_t[k]), float(grid_t[k + 1])
        cx, cq, _ = IC.ddpm_coeffs(t, s)
        pts = xx[:, None]
        D = gm.denoiser(pts, t)[:, 0]
        if label is not None and w != 0.0:
            D = D + w * (-math.expm1(-2 * t)) / math.exp(-t) * gm.guidance_vector(pts, t, label)[:, 0]
        return cx * xx + cq * D

    def var(k):
        return IC.ddpm_coeffs(float(grid_t[k]), float(grid_t[k + 1]))[2] ** 2

    res = propagate(gaussian_on_grid(x, 0.0, 1.0), x, mean, var, len(grid_t) - 1)
    return res.density, res.escaped


@claim(
    id="samplers.ddpm_exact_law_1d",
    paper="samplers",
    statement="the output law of guided DDPM on a 1-D two-class mixture equals the grid-propagated law of its "
              "Gaussian transition kernels (the sampler implements the chain it claims to); guidance w means s + w g_y",
    note=f"{NOTE_INT}",
    provenance="standard",
    quick={"n": 20000, "steps": 25, "w": 3.0, "T": 3.0, "delta": 0.02, "space": 801},
    full={"n": 200000, "steps": 60, "w": 3.0, "T": 5.0, "delta": 1e-3, "space": 4001},
)
def ddpm_exact_law_1d(ctx: Context) -> list[Measurement]:
    r"""Kolmogorov distance between the sampler's empirical CDF and the exact grid CDF.

    Tolerance: the DKW inequality :math:`P(\sup|F_n - F| > \varepsilon) \le 2e^{-2n\varepsilon^2}` with
    false-alarm probability ``DKW_FALSE_ALARM``, plus the grid law's own error (L1 refinement estimate
    and escaped mass, both bounding the CDF error).  Control: the exact law computed for w = 1 (no
    extra guidance: the class-conditional chain) against the guided sampler.
    """
    from numerics.references.grid_density import refinement_error, uniform_grid

    p = ctx.params
    gm = GaussianMixture([0.5, 0.5], [[-2.0], [1.5]], np.array([[[0.5]], [[0.3]]]), labels=[0, 1])
    grid_t = time_grid("uniform", T=p["T"], delta=p["delta"], n=p["steps"])
    xs = sample(gm, method="ddpm", grid=grid_t, n=p["n"], seed=int(ctx.rng.integers(2**31)), label=1,
                guidance=p["w"])[:, 0]
    w_law = 1.0 if ctx.broken else p["w"]
    x = uniform_grid(-9.0, 9.0, p["space"])
    dens, escaped = _ddpm_grid_law(gm, grid_t, 1, w_law, x)
    ref_err = refinement_error(lambda g: _ddpm_grid_law(gm, grid_t, 1, w_law, g)[0], x)
    dx = x[1] - x[0]
    # midpoint-corrected cumulative sum = the cumulative trapezoid rule: error <= (b - a) dx^2 max|p''| / 12
    cdf = (np.cumsum(dens) - 0.5 * dens) * dx
    cdf /= dens.sum() * dx
    emp = np.searchsorted(np.sort(xs), x, side="right") / len(xs)
    ks = float(np.max(np.abs(emp - cdf)))
    eps = math.sqrt(math.log(2.0 / DKW_FALSE_ALARM) / (2.0 * len(xs)))
    cdf_quad = float((x[-1] - x[0]) * dx**2 * np.abs(np.gradient(np.gradient(dens, dx), dx)).max() / 12)
    grid_cdf_err = ref_err + escaped + cdf_quad
    fig = ctx.figure()
    ax = fig.add_subplot()
    ax.hist(xs, bins=120, density=True, alpha=0.5, label=f"DDPM samples (n={len(xs)})")
    ax.plot(x, dens / (dens.sum() * dx), label=f"exact grid law (w={w_law:g})")
    ax.set_xlim(-5, 5)
    ax.legend(fontsize=8)
    ax.set_title("guided DDPM output law, 1-D two-class mixture")
    return [Measurement(
        name="sup |F_n - F_exact|", measured=ks, predicted=0.0, kind="le", tol=eps + grid_cdf_err,
        reason=f"DKW band at false alarm {DKW_FALSE_ALARM:g} (eps = {eps:.2e}) + grid error "
               f"(L1 refinement {ref_err:.1e}, escaped {escaped:.1e}, cumulative-sum error {cdf_quad:.1e})",
        extra={"w_sampler": p["w"], "w_law": w_law})]

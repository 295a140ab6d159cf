r"""Claims about the samplers: coefficient identities, convergence orders (deterministic and weak), the exact
output law of guided DDPM.

Statements: ``proofs_notes/integrators.md`` (identities, orders, the DDPM law). The support note's C1 and C3
(laws of the samplers on subspace data) are claims of that paper: :mod:`numerics.papers.support.claims`.
The stated runs use the package's own float64 sampler (:func:`numerics.samplers.sample`) on exact mixture
scores (Numba kernels).

Controls are realistic bugs of the sampler (a coefficient derived wrongly, float32 coefficients, the score
taken at the end of the step instead of its start, ...).  The sampler cannot be edited from a claim, so a
control run uses :func:`chain`, a transcription of ``sample``'s loop (the same generated coefficients, the
same kernel calls, the same random stream; without a bug it returns ``sample``'s output bit for bit,
``tests/test_samplers.py``) into which the bug is injected.

Rounding tolerances are first-order: a step :math:`x_s = c_x x + c_q q + c_z z` computed from two routes
differs by at most :math:`\epsilon_k(|c_x||x| + |c_q||q| + |c_z||z|)` per step, with :math:`\epsilon_k`
the relative error of the generated coefficients (``(4 + t + s) u``, tested against mpmath in
``tests/test_codegen.py``) plus a few ulps for the arithmetic, summed over steps; the later steps are
assumed not to amplify a perturbation (they are contractions on these targets up to factors of order 1,
which the factor 4 in the per-step bound covers).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import mpmath as mp
import numpy as np

from numerics.checks.claim import Context, Measurement, claim
from numerics.constants import UNIT_ROUNDOFF as U
from numerics.generated import integrator_coeffs as IC
from numerics.grids import time_grid
from numerics.methods import TABLE, check_method, get_method, grid_coefficients
from numerics.mixture import GaussianMixture
from numerics.references.exact_gaussian import pf_map
from numerics.samplers import GuidedQuantities, sample
from numerics.schedule import alpha_sigma2
from numerics.stats import ENSEMBLE_LEVEL, loglog_slope

NOTE_INT = "proofs_notes/integrators.md"


def two_class_mixture() -> GaussianMixture:
    """A 2-class, 4-component mixture in 2-D (full-rank, rank-one and an atom)."""
    covs = np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.0]], np.zeros((2, 2)), 0.25 * np.eye(2)])
    means = np.array([[-2.0, 0.0], [-1.0, 2.0], [2.0, 1.0], [1.5, -1.5]])
    return GaussianMixture([0.3, 0.2, 0.25, 0.25], means, covs, labels=[0, 0, 1, 1])


# ------------------------------------------------------------------------------- the sampler, with a bug
#: ``coef_bug(k, t, s, c) -> c'``: a wrong coefficient tuple for step ``k`` (``c``: the generated one).
CoefBug = Callable[[int, float, float, tuple], tuple]


def _sigma(t: float) -> float:
    return math.sqrt(-math.expm1(-2.0 * t))


def chain(gm: GaussianMixture, method: str, grid: np.ndarray, n: int, seed, label: int | None = None,
          w: float = 1.0, eta: float | None = None, x_init: np.ndarray | None = None,
          coef_bug: CoefBug | None = None, q_at_end: bool = False, eps_variance: bool = False,
          w_q: float | None = None, fast: bool = True) -> np.ndarray:
    r"""``sample(gm, method, grid, n, seed, label, w, x_init, eta=eta, fast=fast)`` (classifier guidance ``cg``; the
    guided quantities are :class:`numerics.samplers.GuidedQuantities`, as in ``sample``), its loop transcribed,
    with a bug injected:

    * ``coef_bug``: step ``k`` uses ``coef_bug(k, t, s, c)`` in place of its generated coefficients ``c``;
    * ``q_at_end``: ``q`` is evaluated at the step's end time ``s`` instead of its start ``t``;
    * ``eps_variance``: the noise prediction is :math:`-\sigma_t^2 s_w` instead of :math:`-\sigma_t s_w`;
    * ``w_q``: the guidance weight used inside ``q`` (default ``w``).

    Without a bug the output equals ``sample``'s bit for bit (``tests/test_samplers.py``).
    """
    rec = get_method(method)
    coefs = _grid_coefs(rec, grid, eta)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, gm.d)) if x_init is None else np.array(x_init, dtype=np.float64)
    guided = GuidedQuantities(gm, label, w if w_q is None else w_q, "cg", fast)

    def q(xx, tq):
        if rec.q == "eps" and eps_variance:
            return math.expm1(-2.0 * tq) * guided.score(xx, tq)  # -sigma^2 s_w
        return guided.q(rec.q, xx, tq)

    q_prev, t_prev = None, None
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        c = coefs[k] if coef_bug is None else coef_bug(k, t, s, coefs[k])
        qk = q(x, s if q_at_end else t)
        out = c[0] * x + c[1] * qk
        if rec.multistep and t_prev is not None:
            out = out + c[2] * q_prev
        if rec.stochastic:
            out = out + c[-1] * rng.standard_normal(x.shape)
        x, q_prev, t_prev = out, qk, t
    return x


def _grid_coefs(rec, grid: np.ndarray, eta: float | None) -> list[tuple]:
    """``grid_coefficients(rec, grid, eta, "cg")[0]`` (the steps' generated coefficients), memoised on the exact
    method, grid and ``eta``: the stated run and every control of a claim step the same grids (the list is
    shared: read it, do not modify it)."""
    key = (rec.name, grid.tobytes(), eta)
    hit = _GRID_COEFS.get(key)
    if hit is None:
        if len(_GRID_COEFS) >= 256:
            _GRID_COEFS.clear()
        hit = _GRID_COEFS[key] = grid_coefficients(rec, grid, eta, "cg")[0]
    return hit


#: :func:`_grid_coefs` of the (method, grid, eta) already seen in this process.
_GRID_COEFS: dict = {}


def float32_coeffs(k: int, t: float, s: float, c: tuple) -> tuple:
    """The generated coefficients rounded to float32 (a table stored or computed in single precision)."""
    return tuple(float(np.float32(v)) for v in c)


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


def _reference_side(gm: GaussianMixture, grid: np.ndarray, kw: dict, method: str) -> tuple[np.ndarray, float]:
    """The side of an identity claim that no control touches (``ddpm`` or ``ddim`` with ``kw``) and the rounding
    tolerance built along its trajectory; computed once per (method, seed, parameters) in a process, since the
    stated run and every control run share it."""
    key = (method, kw["seed"], kw["n"], kw["guidance"], grid.tobytes())
    if key in _REFERENCE_SIDES:
        return _REFERENCE_SIDES[key]
    x, traj = sample(gm, method, return_trajectory=True, **kw)
    w = kw["guidance"]
    qs = _denoisers(gm, grid, traj, 1, w)
    if method == "ddpm":
        coeffs = [IC.ddpm_coeffs(float(grid[k]), float(grid[k + 1])) for k in range(grid.size - 1)]
        z_max = math.sqrt(2 * math.log(2 * kw["n"] * gm.d * grid.size)) + 2  # max |z| over all draws, whp
        tol = _step_bound(grid, traj, qs, coeffs, z_max)
    else:
        # the eps route recombines x and sigma^2 s, whose sizes are |x| and |x| + alpha|D| before cancelling
        tol = 0.0
        for k in range(grid.size - 1):
            t, s = float(grid[k]), float(grid[k + 1])
            cx, cq = IC.ddim_coeffs(t, s)
            a = math.exp(-t)
            xm, dm = np.abs(traj[k]).max(), np.abs(qs[k]).max()
            tol += 4 * (7 + t + s) * U * (abs(cx) * xm + abs(cq) * dm + abs(cq) * (2 * xm + a * dm) / a)
    if len(_REFERENCE_SIDES) > 64:
        _REFERENCE_SIDES.clear()
    _REFERENCE_SIDES[key] = (x, tol)
    return x, tol


_REFERENCE_SIDES: dict = {}


# ------------------------------------------------------------------------------------------- identities
def _identity_figure(ctx: Context, x_ref: np.ndarray, x_other: np.ndarray, tol: float, what: str) -> None:
    """Per output point the largest coordinate difference of the two routes, in decreasing order (about 200
    ranks, log-spaced), against the rounding tolerance of the max (zero differences are not drawn)."""
    e = np.sort(np.abs(x_ref - x_other).max(axis=1))[::-1]
    idx = np.unique(np.geomspace(1, e.size, 200).astype(int)) - 1
    ctx.plot.agreement("points", idx + 1, e[idx], tol, title=f"{what}, per output point",
                xlabel="rank of the point (largest difference first)", ylabel="max over coordinates |difference|",
                tol_label="rounding tolerance of the max")


def _eta_coeffs_bugged(kind: str) -> CoefBug:
    r"""DDIM-eta coefficients at eta = 1 derived with a wrong noise size ``c``:
    ``"beta"``: :math:`c = \eta\sigma_{t|s}` (the forward step's std) instead of the posterior std
    :math:`\eta\sqrt v`; ``"variance"``: :math:`c = \eta v` (variance for std).  Then :math:`c_x =
    \sqrt{\sigma_s^2 - c^2}/\sigma_t`, :math:`c_q = \alpha_s - \alpha_t c_x`."""
    def bug(k, t, s, c0):
        a_t, a_s = math.exp(-t), math.exp(-s)
        s2t, s2s, s2h = -math.expm1(-2 * t), -math.expm1(-2 * s), -math.expm1(-2 * (t - s))
        v = s2s * s2h / s2t
        c = math.sqrt(s2h) if kind == "beta" else v
        cx = math.sqrt(max(s2s - c * c, 0.0) / s2t)
        return (cx, a_s - a_t * cx, c)
    return bug


@claim(
    id="samplers.ddpm_is_ddim_eta1",
    paper="samplers",
    statement="code generation: the generated DDPM step and the generated DDIM-eta step at eta = 1 (expressions "
              "SymPy proved equal, rewritten separately for float64) give the same outputs (same seed, same noise) "
              "to float64 rounding; this tests the code generation, not the derivation "
              "(samplers.ddpm_exact_law_1d checks the DDPM coefficients against an independent oracle)",
    note=f"{NOTE_INT}#ddim-eta",
    provenance="standard",
    quick={"n": 1000, "kappa": 0.1, "w": 3.0},
    full={"n": 10000, "kappa": 0.05, "w": 3.0},
    controls={"float32_coeffs": "the DDIM-eta coefficient table evaluated in float32",
              "beta_for_posterior": "eta-family noise eta sigma_{t|s} (forward-step std) instead of the posterior std",
              "variance_for_std": "eta-family noise eta v (posterior variance) where eta sqrt(v) belongs"},
)
def ddpm_is_ddim_eta1(ctx: Context) -> list[Measurement]:
    """DDPM vs DDIM-eta(1) on a guided 2-class mixture; the controls corrupt the DDIM-eta side."""
    p = ctx.params
    gm, grid, kw = _guided_setup(ctx)
    x1, tol = _reference_side(gm, grid, kw, "ddpm")
    if ctx.control is None:
        x2 = sample(gm, "ddim_eta", eta=1.0, **kw)
    else:
        bug = (float32_coeffs if ctx.bug("float32_coeffs")
               else _eta_coeffs_bugged("beta" if ctx.bug("beta_for_posterior") else "variance"))
        x2 = chain(gm, "ddim_eta", grid, p["n"], kw["seed"], label=1, w=p["w"], eta=1.0, coef_bug=bug)
    diff = float(np.abs(x1 - x2).max())
    _identity_figure(ctx, x1, x2, tol, "|ddpm - ddim_eta(1)|")
    return [Measurement(name="max |ddpm - ddim_eta(1)|", measured=diff, predicted=0.0, kind="equal", tol=tol,
                        reason="sum over steps of 4(7 + t + s)u (|c_x||x| + |c_q||D_w| + |c_z| max|z|): "
                               "generated-coefficient error (4 + t + s)u plus arithmetic, no amplification",
                        extra={"steps": int(grid.size - 1), "tol_over_u": tol / U})]


@claim(
    id="samplers.dpm_solver_1_is_ddim",
    paper="samplers",
    statement="code generation: DPM-Solver-1 (noise prediction frozen) and DDIM (data prediction frozen), whose "
              "maps SymPy proved equal, give the same outputs to float64 rounding; this tests the generated "
              "coefficients and the eps route of the sampler, not the derivation",
    note=f"{NOTE_INT}#dpm-solver-1",
    provenance="standard",
    quick={"n": 1000, "kappa": 0.1, "w": 3.0},
    full={"n": 10000, "kappa": 0.05, "w": 3.0},
    controls={"alpha_dropped": "DPM-Solver-1's x coefficient 1 where alpha_s/alpha_t = e^h belongs",
              "eps_variance": "noise prediction -sigma_t^2 s where -sigma_t s belongs (variance for std)",
              "float32_coeffs": "the DPM-Solver-1 coefficient table evaluated in float32"},
)
def dpm_solver_1_is_ddim(ctx: Context) -> list[Measurement]:
    """DPM-Solver-1 vs DDIM; the controls corrupt the DPM-Solver-1 side."""
    p = ctx.params
    gm, grid, kw = _guided_setup(ctx)
    xd, tol = _reference_side(gm, grid, kw, "ddim")
    if ctx.control is None:
        x1 = sample(gm, "dpm_solver_1", **kw)
    else:
        bug = {"alpha_dropped": lambda k, t, s, c: (1.0, c[1]), "float32_coeffs": float32_coeffs}.get(ctx.control)
        x1 = chain(gm, "dpm_solver_1", grid, p["n"], kw["seed"], label=1, w=p["w"], coef_bug=bug,
                   eps_variance=ctx.bug("eps_variance"))
    diff = float(np.abs(x1 - xd).max())
    _identity_figure(ctx, xd, x1, tol, "|dpm_solver_1 - ddim|")
    return [Measurement(name="max |dpm_solver_1 - ddim|", measured=diff, predicted=0.0, kind="equal", tol=tol,
                        reason="sum over steps of 4(7 + t + s)u (|c_x||x| + |c_q||D_w| + |c_q|(2|x| + alpha|D_w|)/alpha): "
                               "coefficient error and the cancellation of x + sigma^2 s in the eps route",
                        extra={"tol_over_u": tol / U})]


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


def _oracle_maps(grid: np.ndarray, mu: np.ndarray, Sigma: np.ndarray) -> dict:
    r"""Per start time :math:`t_k` of ``grid`` (``k < n``) the exact affine quantities on :math:`N(\mu, \Sigma)`
    that :func:`oracle_endpoint` applies: :math:`\alpha_t\mu`, the denoiser's matrix
    :math:`M_k^\top = (C_t^{-1}\alpha_t\Sigma)^\top` (:math:`D(x) = \mu + (x - \alpha_t\mu)M_k^\top`) and the score's
    :math:`P_k^\top = (C_t^{-1})^\top` (:math:`s(x) = -(x - \alpha_t\mu)P_k^\top`), :math:`C_t = \alpha_t^2\Sigma +
    \sigma_t^2 I`; the step scalars :math:`\alpha_t, \alpha_s, \sigma_t, \sigma_s, h` and the half log-SNR
    :math:`\ell(t) = -t - \tfrac12\log\sigma_t^2`.  One batched ``solve`` / ``inv`` over the times (LAPACK per
    matrix, as one call per step would be); memoised on the exact grid and target (the methods of one grid share
    it)."""
    key = (grid.tobytes(), mu.tobytes(), Sigma.tobytes())
    hit = _ORACLE_MAPS.get(key)
    if hit is not None:
        return hit
    d, n = mu.size, grid.size - 1
    I = np.eye(d)
    ts = [float(v) for v in grid]
    a = [math.exp(-t) for t in ts]
    s2 = [-math.expm1(-2 * t) for t in ts[:-1]]
    C = np.stack([a[k] * a[k] * Sigma + s2[k] * I for k in range(n)])
    out = {"am": [a[k] * mu for k in range(n)],
           "MT": [m.T for m in np.linalg.solve(C, np.stack([a[k] * Sigma for k in range(n)]))],
           "PT": [m.T for m in np.linalg.inv(C)],
           "a": a, "sg": [_sigma(t) for t in ts], "h": [ts[k] - ts[k + 1] for k in range(n)],
           "ell": [-t - 0.5 * math.log(-math.expm1(-2 * t)) for t in ts]}
    if len(_ORACLE_MAPS) >= 16:
        _ORACLE_MAPS.clear()
    _ORACLE_MAPS[key] = out
    return out


#: :func:`_oracle_maps` of the grids already seen in this process.
_ORACLE_MAPS: dict = {}


def oracle_endpoint(method: str, grid: np.ndarray, x0: np.ndarray, mu: np.ndarray, Sigma: np.ndarray) -> np.ndarray:
    r"""The deterministic ``method`` on the Gaussian target :math:`N(\mu, \Sigma)`, written from the formulas of
    ``proofs_notes/integrators.md`` (sections 1, 3, 4, 5) with the exact affine denoiser/score
    (:func:`_oracle_maps`), independently of the generated coefficients and of the kernels.  Plain float64; used
    only to size the order window."""
    g = _oracle_maps(grid, mu, Sigma)
    a, sg, ell = g["a"], g["sg"], g["ell"]
    x, d_prev = np.array(x0, dtype=np.float64), None
    for k in range(grid.size - 1):
        a_t, a_s, sg_t, sg_s, h = a[k], a[k + 1], sg[k], sg[k + 1], g["h"][k]
        if method in ("ddim", "dpm_solver_2"):
            Dt = mu + (x - g["am"][k]) @ g["MT"][k]
            cq = a_s - a_t * sg_s / sg_t
            if method == "dpm_solver_2" and k > 0:
                hl, hp = ell[k + 1] - ell[k], ell[k] - ell[k - 1]
                r = hl / (2 * hp)
                xn = sg_s / sg_t * x + a_s * (-math.expm1(-hl)) * ((1 + r) * Dt - r * d_prev)
            else:
                xn = sg_s / sg_t * x + cq * Dt
            d_prev = Dt
            x = xn
            continue
        score = -(x - g["am"][k]) @ g["PT"][k]
        if method == "dpm_solver_1":
            xn = a_s / a_t * x + (sg_s - a_s / a_t * sg_t) * (-sg_t * score)
        elif method == "ei_ode":
            xn = math.exp(h) * x + math.expm1(h) * score
        elif method == "euler":
            xn = (1 + h) * x + h * score
        else:
            raise ValueError(f"method: no oracle for {method!r}")
        x = xn
    return x


def order_window(method: str, order: int, ns: list[int], p: dict, x0: np.ndarray, gm: GaussianMixture) -> dict:
    r"""Half-width of the window for the fitted order, from the next-order terms of the error expansion.

    On the log-SNR-uniform grid the step is :math:`h = L/n`, and the endpoint error of a method of order ``p``
    has the expansion :math:`E(n) = n^{-p}(U + W/n + R/n^2 + \dots)` (entrywise over points and coordinates).
    ``U, W, R`` are obtained by Richardson extrapolation of :func:`oracle_endpoint` (the method as the note
    defines it, not the code under test) at :math:`n_f, 2n_f, 4n_f` with :math:`n_f = 2\max(ns)`.  With
    :math:`m_j = \max|U + W/n_j + R/n_j^2|` and the remainder bounded by twice the last kept term,
    :math:`r_j = 2\max|R|/(n_j^2 m_j)` (the terms fall geometrically: ``ratio`` = :math:`\max|W|/(n_1\max|U|)`
    must be below 1/2, else ``ValueError``: the fitted range is outside the derivation's), the measured error is :math:`n_j^{-p}m_j(1+\theta_j r_j)`, :math:`|\theta_j|\le1`,
    and the OLS slope of :math:`\log E` on :math:`\log n` (weights :math:`a_j`, :math:`\sum a_j = 0`) is
    :math:`-p + \sum_j a_j\log(m_j(1+\theta_j r_j))`, so
    :math:`|\text{fitted order} - p| \le \sum_j|a_j|\,(|\log(m_j/\max|U||) + |\log(1-r_j)|)`.
    (``proofs_notes/integrators.md#orders``.)
    """
    key = (method, order, tuple(ns), p["kind"], p["T"], p["delta"], x0.tobytes())
    if key in _WINDOWS:
        return _WINDOWS[key]
    mu, Sigma = gm.means[0], gm.covs[0]
    nf = 2 * max(ns)
    F = []
    for n in (nf, 2 * nf, 4 * nf):
        grid = time_grid(p["kind"], T=p["T"], delta=p["delta"], n=n)
        F.append((oracle_endpoint(method, grid, x0, mu, Sigma) - pf_map(gm, x0, p["T"], p["delta"])) * float(n) ** order)
    # F(n) = U + W/n + R/n^2 at n, 2n, 4n  ->  solve the 3x3 Vandermonde system entrywise
    V = np.array([[1.0, 1.0 / (m * nf), 1.0 / (m * nf) ** 2] for m in (1, 2, 4)])
    coef = np.linalg.solve(V, np.stack([f.ravel() for f in F]))
    Uc, Wc, Rc = (np.abs(c) for c in coef)
    u_max = float(np.max(np.abs(coef[0])))
    lx = np.log(np.asarray(ns, dtype=np.float64))
    a = (lx - lx.mean()) / np.sum((lx - lx.mean()) ** 2)
    half = 0.0
    for aj, n in zip(a, ns):
        m = float(np.max(np.abs(coef[0] + coef[1] / n + coef[2] / n**2)))
        r = 2 * float(Rc.max()) / (n * n * m)
        half += abs(aj) * (abs(math.log(m / u_max)) + abs(math.log1p(-r)))
    out = {"half": half, "U": u_max, "W": float(Wc.max()), "R": float(Rc.max()),
           "ratio": float(Wc.max()) / (min(ns) * u_max)}
    if not out["ratio"] < 0.5:
        raise ValueError(f"ns: the next-order term of {method} is not small on n >= {min(ns)} "
                         f"(max|W|/(n max|U|) = {out['ratio']:.3g} >= 1/2); fit over larger n")
    _WINDOWS[key] = out
    return out


#: Windows already derived in this process (they depend on the seed's points, not on the control run).
_WINDOWS: dict = {}


def _bug_alpha_ratio(method: str) -> CoefBug:
    r"""The step's :math:`\alpha_s/\alpha_t` dropped: the x coefficient :math:`e^h` (EI-ODE, DPM-Solver-1) or
    :math:`1 + h` (Euler) becomes 1; DDIM's / DPM-Solver-2's data coefficients lose :math:`\alpha`:
    :math:`\alpha_s - \alpha_t\sigma_s/\sigma_t \to 1 - \sigma_s/\sigma_t`."""
    def bug(k, t, s, c):
        if method in ("ddim", "dpm_solver_2"):
            f = (1 - _sigma(s) / _sigma(t)) / (math.exp(-s) - math.exp(-t) * _sigma(s) / _sigma(t))
            return (c[0],) + tuple(f * v for v in c[1:])
        return (1.0,) + tuple(c[1:])
    return bug


def _bug_sde_drift(k, t, s, c):
    """The reverse-SDE drift (g^2 s) in the probability-flow step (1/2 g^2 s): the score/eps coefficient doubled."""
    return (c[0], 2 * c[1]) + tuple(c[2:])


def _bug_multistep_half(k, t, s, c):
    r"""DPM-Solver++(2M) with :math:`h/h_p` where :math:`h/(2h_p)` belongs: from
    :math:`c_q = A(1 + r/2), c_p = -Ar/2` to :math:`A(1 + r), -Ar`, i.e. :math:`(c_q - c_p, 2c_p)`."""
    return c if len(c) < 3 else (c[0], c[1] - c[2], 2 * c[2])


def _order_endpoint(gm: GaussianMixture, method: str, grid: np.ndarray, x0: np.ndarray, stated: bool,
                    coef_bug: CoefBug | None, q_at_end: bool) -> np.ndarray:
    """The endpoint of :func:`convergence_orders`: ``sample`` from ``x0`` (the stated run) or :func:`chain` with
    the control's bug, memoised on the exact inputs that determine it (method, grid, start points, target, the
    coefficients of every step after the bug, ``q_at_end``).  A control whose bug leaves a method's coefficients
    as generated (``sde_drift_in_ode`` on the denoiser methods, ``multistep_half_missing`` on the one-step
    methods) steps the stated run's chain, which ``chain`` reproduces bit for bit (``tests/test_samplers.py``):
    its endpoint is the stated run's, not computed again."""
    rec = get_method(method)
    coefs = _grid_coefs(rec, grid, None)
    if coef_bug is not None:
        coefs = [coef_bug(k, float(grid[k]), float(grid[k + 1]), c) for k, c in enumerate(coefs)]
    key = (method, grid.tobytes(), x0.tobytes(), gm.means.tobytes(), gm.covs.tobytes(), gm.log_weights.tobytes(),
           tuple(map(len, coefs)),
           np.array([v for c in coefs for v in c], dtype=np.float64).tobytes(), q_at_end)
    hit = _ORDER_ENDPOINTS.get(key)
    if hit is not None:
        return hit
    if stated:
        x = sample(gm, method, grid=grid, n=x0.shape[0], x_init=x0)
    else:
        x = chain(gm, method, grid, x0.shape[0], 0, x_init=x0, coef_bug=coef_bug, q_at_end=q_at_end)
    if len(_ORDER_ENDPOINTS) >= 512:
        _ORDER_ENDPOINTS.clear()
    _ORDER_ENDPOINTS[key] = x
    return x


#: :func:`_order_endpoint` results of this process.
_ORDER_ENDPOINTS: dict = {}


@claim(
    id="samplers.convergence_orders",
    paper="samplers",
    statement="on a Gaussian target, for several end times delta, the endpoint error vs the exact probability-flow "
              "map decays like h^p with "
              f"the orders of the method table: {_orders_text()}; the fitted order lies within the bias that the "
              "next-order terms of the error expansion give on the fitted range of n",
    note=f"{NOTE_INT}#orders",
    provenance="standard",
    quick={"ns": [32, 64, 128], "T": 2.0, "deltas": [0.05, 1e-3], "points": 64, "kind": "logsnr",
           "methods": ["ddim", "euler", "ei_ode", "dpm_solver_2"]},
    full={"ns": [64, 128, 256, 512, 1024], "T": 2.0, "deltas": [0.05, 0.01, 1e-3], "points": 256, "kind": "logsnr"},
    controls={"alpha_ratio_dropped": "alpha_s/alpha_t dropped from the step (e^h or 1 + h -> 1 in the x coefficient; "
                                     "alpha_s - alpha_t sigma_s/sigma_t -> 1 - sigma_s/sigma_t)",
              "sde_drift_in_ode": "score/eps coefficient doubled: the reverse-SDE drift used in the probability-flow step",
              "multistep_half_missing": "DPM-Solver++(2M) correction h/h_p where h/(2 h_p) belongs",
              "q_at_step_end": "the score/denoiser evaluated at the step's end time s instead of its start t"},
)
def convergence_orders(ctx: Context) -> list[Measurement]:
    """Log-log slope of the max endpoint error vs n, for every method of :func:`order_methods` (the quick
    profile keeps to four of them), against a window derived from the next-order terms (:func:`order_window`)."""
    p = ctx.params
    gm = gaussian_target()
    x0 = ctx.rng.standard_normal((p["points"], gm.d))
    out, series = [], {}
    for delta in p["deltas"]:
        pd = {**p, "delta": delta}
        exact = pf_map(gm, x0, p["T"], delta)
        for method, order in order_methods(p).items():
            bug = {"alpha_ratio_dropped": _bug_alpha_ratio(method), "multistep_half_missing": _bug_multistep_half,
                   "sde_drift_in_ode": _bug_sde_drift if TABLE[method].q in ("score", "eps") else None}.get(ctx.control)
            errs = []
            for n in p["ns"]:
                grid = time_grid(p["kind"], T=p["T"], delta=delta, n=n)
                x = _order_endpoint(gm, method, grid, x0, ctx.control is None, bug, ctx.bug("q_at_step_end"))
                errs.append(float(np.abs(x - exact).max()))
            fit = loglog_slope(p["ns"], errs)
            win = order_window(method, order, p["ns"], pd, x0, gm)
            series.setdefault(method, []).append((f"delta={delta:g}", errs, -fit.slope, win["half"]))
            out.append(Measurement(
                name=f"order {method} (delta={delta:g})", measured=-fit.slope, kind="interval", lo=order - win["half"],
                hi=order + win["half"], tol=0.0,
                reason="next-order bias of the fitted slope, sum_j |a_j|(|log(m_j/|U|)| + |log(1 - r_j)|), from the "
                       "error expansion n^-p (U + W/n + R/n^2) of the method as the note defines it (Richardson at 2, 4, "
                       "8 x max n), remainder <= 2|R|/n^2 (integrators.md#orders)",
                extra={"errors": errs, "ns": list(p["ns"]), "grid": p["kind"], "delta": delta, "window": win}))
    for method, order in order_methods(p).items():
        ctx.plot.rates(method, p["ns"], [v[:2] for v in series[method]], slope=-order, pred_label=f"slope -{order}",
               title=f"{method}: fitted order " + ", ".join(f"{v[2]:.3f}" for v in series[method])
               + f" (p = {order} +- {max(v[3] for v in series[method]):.3f})",
               xlabel="steps n", ylabel="max endpoint error vs exact flow map")
    return out


# ----------------------------------------------------------------------------- exact law on a grid (1-D)
#: Probability that the DKW band below is exceeded by chance: the ensemble level of numerics.stats.
DKW_FALSE_ALARM = 1.0 - ENSEMBLE_LEVEL


@functools.lru_cache(maxsize=4096)
def posterior_coeffs_mp(t: float, s: float, dps: int = 30) -> tuple[float, float, float]:
    r"""The Gaussian posterior :math:`q(x_s\mid x_t, x_0) = N(a\,x_t + b\,x_0,\ v)`, written from scratch in mpmath
    from the schedule (:math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`, :math:`\alpha_{t|s} = \alpha_t/\alpha_s`,
    :math:`\sigma_{t|s}^2 = 1 - \alpha_{t|s}^2`): :math:`a = \alpha_{t|s}\sigma_s^2/\sigma_t^2`,
    :math:`b = \alpha_s\sigma_{t|s}^2/\sigma_t^2`, :math:`v = \sigma_s^2\sigma_{t|s}^2/\sigma_t^2`
    (integrators.md#ddim-eta).  Returns ``(a, b, sqrt(v))``; independent of the generated coefficients.  Memoised on
    the exact arguments (``mp.workdps`` sets mpmath's global precision, so threads must read the memo, not compute:
    :func:`_exact_law_cached` fills it first)."""
    with mp.workdps(dps):
        tt, ss = mp.mpf(t), mp.mpf(s)
        a_t, a_s = mp.exp(-tt), mp.exp(-ss)
        a_ts = a_t / a_s
        s2_t, s2_s, s2_ts = 1 - a_t**2, 1 - a_s**2, 1 - a_ts**2
        return (float(a_ts * s2_s / s2_t), float(a_s * s2_ts / s2_t), float(mp.sqrt(s2_s * s2_ts / s2_t)))


def _ddpm_grid_law(gm: GaussianMixture, grid_t: np.ndarray, label: int, w: float, x: np.ndarray) -> tuple:
    r"""Exact output density of guided DDPM on the space grid ``x`` (1-D), by propagating the Gaussian chain
    :math:`x' \sim N(a\,x + b\,D_w(x),\ v)` with the posterior coefficients of :func:`posterior_coeffs_mp`
    (mpmath, from the schedule; not the sampler's generated ones) and :math:`D_w = D + w\,\sigma_t^2/\alpha_t\,g_y`
    (classifier guidance in score form).  Returns ``(density, escaped mass)``.
    """
    from numerics.references.grid_density import gaussian_on_grid, propagate

    co = [posterior_coeffs_mp(float(grid_t[k]), float(grid_t[k + 1])) for k in range(len(grid_t) - 1)]

    def mean(xx, k):
        t = float(grid_t[k])
        pts = xx[:, None]
        D = gm.denoiser(pts, t)[:, 0]
        if label is not None and w != 0.0:
            D = D + w * (-math.expm1(-2 * t)) / math.exp(-t) * gm.guidance_vector(pts, t, label)[:, 0]
        return co[k][0] * xx + co[k][1] * D

    def var(k):
        return co[k][2] ** 2

    res = propagate(gaussian_on_grid(x, 0.0, 1.0), x, mean, var, len(grid_t) - 1)
    return res.density, res.escaped


def _ddpm_bug(name: str) -> CoefBug | None:
    r"""Wrong DDPM coefficients: ``beta_for_posterior``: noise :math:`\sigma_{t|s}` (DDPM's
    :math:`\beta_t` choice) instead of the posterior std :math:`\sqrt v`; ``alpha_ratio_dropped``: the
    :math:`x_t` coefficient :math:`\sigma_s^2/\sigma_t^2` without :math:`\alpha_{t|s}`."""
    if name == "beta_for_posterior":
        return lambda k, t, s, c: (c[0], c[1], math.sqrt(-math.expm1(-2 * (t - s))))
    if name == "alpha_ratio_dropped":
        return lambda k, t, s, c: (c[0] / math.exp(-(t - s)), c[1], c[2])
    return None


def law_mixture() -> GaussianMixture:
    """The 1-D two-class mixture of :func:`ddpm_exact_law_1d`."""
    return GaussianMixture([0.5, 0.5], [[-2.0], [1.5]], np.array([[[0.5]], [[0.3]]]), labels=[0, 1])


@functools.lru_cache(maxsize=8)
def _exact_law_cached(T: float, delta: float, steps: int, w: float, space: int) -> tuple:
    """``(x, density, escaped, refinement error)`` of the exact guided-DDPM law (seed- and control-independent,
    so computed once per process).  The law on ``x`` and on the halved spacing of the refinement are two
    independent propagations, run side by side (:func:`~numerics.references.grid_density.run_concurrently`, the
    finer first); the law on ``x`` is propagated once and used for both the density and the refinement (bit for
    bit what the separate runs gave)."""
    from numerics.references.grid_density import refinement_error, run_concurrently, uniform_grid

    gm = law_mixture()
    grid_t = time_grid("uniform", T=T, delta=delta, n=steps)
    x = uniform_grid(-9.0, 9.0, space)
    fine = np.linspace(x[0], x[-1], 2 * x.size - 1)  # refinement_error's finer grid
    for k in range(grid_t.size - 1):  # mpmath's precision is global: the coefficients before the threads
        posterior_coeffs_mp(float(grid_t[k]), float(grid_t[k + 1]))
    laws = run_concurrently({g.size: functools.partial(_ddpm_grid_law, gm, grid_t, 1, w, g) for g in (fine, x)})
    dens, escaped = laws[x.size]
    ref_err = refinement_error(lambda g: laws[g.size][0], x)
    return x, dens, escaped, ref_err


@claim(
    id="samplers.ddpm_exact_law_1d",
    paper="samplers",
    statement="the output law of guided DDPM on a 1-D two-class mixture equals the law of the chain of Gaussian "
              "posteriors q(x_s | x_t, x_0 = D_w(x_t)) written independently from the schedule (mpmath coefficients, "
              "propagated on a grid); guidance w means s + w g_y",
    note=f"{NOTE_INT}#ddpm-exact-law",
    provenance="standard",
    quick={"n": 20000, "steps": 25, "w": 3.0, "T": 3.0, "delta": 0.02, "space": 801},
    full={"n": 200000, "steps": 60, "w": 3.0, "T": 5.0, "delta": 1e-3, "space": 4001},
    controls={"beta_for_posterior": "ancestral noise sigma_{t|s} (forward-step std) instead of the posterior std sqrt(v)",
              "alpha_ratio_dropped": "posterior-mean x_t coefficient sigma_s^2/sigma_t^2 without alpha_{t|s}",
              "q_at_step_end": "the guided denoiser evaluated at the step's end time s instead of its start t",
              "w_minus_one": "guidance weight w - 1 where w belongs (the CFG/CG convention mixed up)"},
)
def ddpm_exact_law_1d(ctx: Context) -> list[Measurement]:
    r"""Kolmogorov distance between the sampler's empirical CDF and the exact grid CDF.

    Tolerance: the DKW inequality :math:`P(\sup|F_n - F| > \varepsilon) \le 2e^{-2n\varepsilon^2}` at
    false-alarm probability ``DKW_FALSE_ALARM`` (the ensemble level), plus the grid law's own error (L1
    refinement estimate and escaped mass, both bounding the CDF error, and the cumulative-sum error).
    """
    p = ctx.params
    gm = law_mixture()
    grid_t = time_grid("uniform", T=p["T"], delta=p["delta"], n=p["steps"])
    seed = int(ctx.rng.integers(2**31))
    if ctx.control is None:
        xs = sample(gm, method="ddpm", grid=grid_t, n=p["n"], seed=seed, label=1, guidance=p["w"])[:, 0]
    else:
        xs = chain(gm, "ddpm", grid_t, p["n"], seed, label=1, w=p["w"], coef_bug=_ddpm_bug(ctx.control),
                   q_at_end=ctx.bug("q_at_step_end"), w_q=p["w"] - 1 if ctx.bug("w_minus_one") else None)[:, 0]
    x, dens, escaped, ref_err = _exact_law_cached(p["T"], p["delta"], p["steps"], p["w"], p["space"])
    dx = x[1] - x[0]
    # midpoint-corrected cumulative sum = the cumulative trapezoid rule: error <= (b - a) dx^2 max|p''| / 12
    cdf = (np.cumsum(dens) - 0.5 * dens) * dx
    cdf /= dens.sum() * dx
    emp = np.searchsorted(np.sort(xs), x, side="right") / len(xs)
    ks = float(np.max(np.abs(emp - cdf)))
    eps = math.sqrt(math.log(2.0 / DKW_FALSE_ALARM) / (2.0 * len(xs)))
    cdf_quad = float((x[-1] - x[0]) * dx**2 * np.abs(np.gradient(np.gradient(dens, dx), dx)).max() / 12)
    grid_cdf_err = ref_err + escaped + cdf_quad
    _law_figure(ctx, xs, x, dens / (dens.sum() * dx), np.abs(emp - cdf), eps + grid_cdf_err, p["w"])
    return [Measurement(
        name="sup |F_n - F_exact|", measured=ks, predicted=0.0, kind="le", tol=eps + grid_cdf_err,
        reason=f"DKW band at false alarm {DKW_FALSE_ALARM:.2g} (1 - ENSEMBLE_LEVEL; eps = {eps:.2e}) + grid error "
               f"(L1 refinement {ref_err:.1e}, escaped {escaped:.1e}, cumulative-sum error {cdf_quad:.1e})",
        extra={"w": p["w"], "seed": seed})]


def _law_figure(ctx: Context, xs: np.ndarray, x: np.ndarray, dens: np.ndarray, gap: np.ndarray, tol: float,
                w: float) -> None:
    """On the window where the exact density exceeds 1e-6 of its peak: the samples' histogram (100 bins)
    against the exact density, and |F_n - F_exact| on the space grid (its largest value in each of ~150 blocks,
    so that the sup is kept) against the DKW + grid tolerance."""
    on = np.flatnonzero(dens > 1e-6 * dens.max())
    i0, i1 = on[0], on[-1] + 1
    hist, edges = np.histogram(xs, bins=100, range=(x[i0], x[i1 - 1]))
    stride = max(1, (i1 - i0) // 300)
    ctx.plot.panel("density", title=f"guided DDPM output law, w = {w:g}: histogram of {xs.size} samples",
                   xlabel="x", ylabel="density")
    ctx.plot.measured("density", 0.5 * (edges[1:] + edges[:-1]), hist / (xs.size * (edges[1] - edges[0])),
                      style="step")
    ctx.plot.predicted("density", x[i0:i1:stride], dens[i0:i1:stride], label="exact law (posterior chain)")
    starts = np.arange(i0, i1, (i1 - i0) // 150 + 1)
    mid = np.minimum(starts + (starts[1] - starts[0]) // 2 if starts.size > 1 else starts, i1 - 1)
    ctx.plot.panel("cdf", title="|F_n - F_exact| (block maxima on the space grid)", xlabel="x",
                   ylabel="|F_n(x) - F(x)|", yscale="log")
    ctx.plot.measured("cdf", x[mid], np.maximum.reduceat(gap[:i1], starts), style="line")
    ctx.plot.bound("cdf", x[[i0, i1 - 1]], [tol, tol], label="DKW band + grid error")


# ----------------------------------------------------------------------------- weak order (stochastic)
def weak_target(d: int) -> GaussianMixture:
    """The Gaussian target of :func:`weak_orders` in dimension ``d``: eigenvalues spread over [0.05, 2] in a fixed
    random rotation, mean of norm ~1 (seed-independent: built from a fixed generator)."""
    g = np.random.default_rng(12345 + d)
    V, _ = np.linalg.qr(g.standard_normal((d, d)))
    lam = np.geomspace(0.05, 2.0, d) if d > 1 else np.array([0.4])
    mu = g.standard_normal(d) / math.sqrt(d)
    return GaussianMixture([1.0], [mu], [(V * lam) @ V.T])


def _stochastic_coeffs(method: str, t: float, s: float, eta: float) -> tuple[float, float, float]:
    """``(c_x, c_q, c_z)`` of a stochastic step from the formulas of integrators.md §§2, 5 (plain float64,
    independent of the generated coefficients)."""
    h = t - s
    a_t, a_s = math.exp(-t), math.exp(-s)
    s2t, s2s, s2h = -math.expm1(-2 * t), -math.expm1(-2 * s), -math.expm1(-2 * h)
    if method in ("ddpm", "ddim_eta"):
        v = s2s * s2h / s2t
        c = (1.0 if method == "ddpm" else eta) * math.sqrt(v)
        cx = math.sqrt((s2s - c * c) / s2t)
        return cx, a_s - a_t * cx, c
    if method == "ei_sde":
        return math.exp(h), 2 * math.expm1(h), math.sqrt(math.expm1(2 * h))
    if method == "ei_sde_code":
        return math.exp(h), 2 * math.expm1(h), math.sqrt(2 * math.expm1(h))
    if method == "euler_maruyama":
        return 1 + h, 2 * h, math.sqrt(2 * h)
    raise ValueError(f"method: no oracle for {method!r}")


def _kl_diag(m, v, m_ex, v_ex) -> float:
    """KL(N(m, diag v) || N(m_ex, diag v_ex)) in the target's eigenbasis."""
    return float(0.5 * np.sum(v / v_ex + (m - m_ex) ** 2 / v_ex - 1.0 - np.log(v / v_ex)))


def weak_oracle_kl(method: str, grid: np.ndarray, gm: GaussianMixture, eta: float) -> float:
    r"""KL from the endpoint law of the stochastic ``method`` to the exact :math:`N(\alpha_\delta\mu, C_\delta)`,
    starting from the exact :math:`N(\alpha_T\mu, C_T)`: in the eigenbasis of :math:`\Sigma` every coordinate is an
    independent scalar chain :math:`x' = (c_x + c_qk)x + c_qb + c_zz` (``q = kx + b`` the exact affine denoiser
    or score), propagated in mean and variance with the coefficients of :func:`_stochastic_coeffs`.  Used only
    to size the weak-order window."""
    lam, V = gm.evals[0], gm.evecs[0]
    mu = V.T @ gm.means[0]
    T, dl = float(grid[0]), float(grid[-1])
    C = lambda t: math.exp(-2 * t) * lam - math.expm1(-2 * t)  # noqa: E731
    m, v = math.exp(-T) * mu, C(T)
    den = get_method(method).q == "denoiser"
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        a = math.exp(-t)
        cx, cq, cz = _stochastic_coeffs(method, t, s, eta)
        if den:
            kk = a * lam / C(t)
            b = mu * (1 - a * kk)
        else:
            kk = -1.0 / C(t)
            b = a * mu / C(t)
        m, v = (cx + cq * kk) * m + cq * b, (cx + cq * kk) ** 2 * v + cz * cz
    return _kl_diag(m, v, math.exp(-dl) * mu, C(dl))


def law_kl(method: str, grid: np.ndarray, gm: GaussianMixture, eta: float | None,
           coef_bug: CoefBug | None = None, q_at_end: bool = False) -> float:
    r"""KL from the exact endpoint law of ``method``'s chain with the generated coefficients (as
    :func:`numerics.references.exact_gaussian.exact_law` propagates it; with a bug injected here) to the exact
    marginal, from the exact start :math:`N(\alpha_T\mu, C_T)`."""
    from numerics.references.exact_gaussian import affine_q, cov_t, exact_law, gaussian_kl

    mu, Sigma = gm.means[0], gm.covs[0]
    T, dl = float(grid[0]), float(grid[-1])
    m0, S0 = math.exp(-T) * mu, cov_t(Sigma, T)
    if coef_bug is None and not q_at_end:
        m, S = exact_law(gm, method, grid, m0=m0, S0=S0, eta=eta)
    else:
        rec = get_method(method)
        coefs, _ = grid_coefficients(rec, grid, eta, "cg")
        m, S, I = m0.copy(), S0.copy(), np.eye(mu.size)
        for k in range(grid.size - 1):
            t, s = float(grid[k]), float(grid[k + 1])
            c = coefs[k] if coef_bug is None else coef_bug(k, t, s, coefs[k])
            Q, r = affine_q(rec.q, mu, Sigma, s if q_at_end else t)
            M = c[0] * I + c[1] * Q
            m, S = M @ m + c[1] * r, M @ S @ M.T + c[-1] ** 2 * I
            S = 0.5 * (S + S.T)
    return gaussian_kl(m, S, math.exp(-dl) * mu, cov_t(Sigma, dl))


def weak_window(method: str, ns: list[int], p: dict, gm: GaussianMixture, eta: float) -> dict:
    r"""As :func:`order_window` for the scalar :math:`\mathrm{KL}(n) = n^{-2}(U + W/n + R/n^2 + \dots)` (weak order
    1: moment errors :math:`O(h)`, KL quadratic in them), from :func:`weak_oracle_kl` at 2, 4, 8 x max(ns)."""
    key = ("weak", method, tuple(ns), p["T"], p["delta"], gm.d, eta)
    if key in _WINDOWS:
        return _WINDOWS[key]
    nf = 2 * max(ns)
    F = []
    for n in (nf, 2 * nf, 4 * nf):
        grid = time_grid(p["kind"], T=p["T"], delta=p["delta"], n=n)
        F.append(weak_oracle_kl(method, grid, gm, eta) * float(n) ** 2)
    V = np.array([[1.0, 1.0 / (m * nf), 1.0 / (m * nf) ** 2] for m in (1, 2, 4)])
    Uc, Wc, Rc = np.linalg.solve(V, np.array(F))
    lx = np.log(np.asarray(ns, dtype=np.float64))
    a = (lx - lx.mean()) / np.sum((lx - lx.mean()) ** 2)
    half = 0.0
    for aj, n in zip(a, ns):
        m = abs(Uc + Wc / n + Rc / n**2)
        r = 2 * abs(Rc) / (n * n * m)
        half += abs(aj) * (abs(math.log(m / abs(Uc))) + abs(math.log1p(-r)))
    out = {"half": half, "U": float(Uc), "W": float(Wc), "R": float(Rc), "ratio": abs(Wc) / (min(ns) * abs(Uc))}
    if not out["ratio"] < 0.5:
        raise ValueError(f"ns: the next-order term of {method} (weak) is not small on n >= {min(ns)} "
                         f"(|W|/(n |U|) = {out['ratio']:.3g} >= 1/2); fit over larger n")
    _WINDOWS[key] = out
    return out


def _bug_alpha_ratio_sde(method: str) -> CoefBug:
    r""":math:`\alpha_s/\alpha_t` dropped: the x coefficient :math:`e^h` / :math:`1 + h` becomes 1 (EI-SDE,
    Euler-Maruyama); DDPM's :math:`\alpha_{t|s}\sigma_s^2/\sigma_t^2` loses :math:`\alpha_{t|s}` (and DDIM-eta's
    :math:`\sqrt{\sigma_s^2 - c^2}/\sigma_t` is divided by :math:`\alpha_{t|s}` likewise)."""
    def bug(k, t, s, c):
        if method in ("ddpm", "ddim_eta"):
            return (c[0] / math.exp(-(t - s)),) + tuple(c[1:])
        return (1.0,) + tuple(c[1:])
    return bug


WEAK_METHODS = ("ddpm", "ddim_eta", "ei_sde", "ei_sde_code", "euler_maruyama")


@claim(
    id="samplers.weak_orders",
    paper="samplers",
    statement="on Gaussian targets in d = 1 and d = 16, started from the exact marginal, the KL from the exact endpoint "
              "law of every stochastic sampler's chain (ddpm, ddim_eta at eta = 1/2, ei_sde, ei_sde_code, "
              "euler_maruyama; exact_law, which propagates the generated coefficients) to the exact marginal decays "
              "like h^2 (weak order 1), within the bias of the next-order terms",
    note=f"{NOTE_INT}#weak-order",
    provenance="standard",
    quick={"ns": [32, 64, 128], "T": 2.0, "delta": 0.05, "kind": "logsnr", "dims": [1, 16], "eta": 0.5},
    full={"ns": [64, 128, 256, 512, 1024], "T": 2.0, "delta": 0.05, "kind": "logsnr", "dims": [1, 16], "eta": 0.5},
    controls={"alpha_ratio_dropped": "alpha_s/alpha_t dropped from the step's x coefficient",
              "sde_drift_halved": "score coefficient of the SDE step halved (the probability-flow drift with the noise)",
              "noise_sqrt2_missing": "SDE noise sqrt(h)-sized: the sqrt(2) of g = sqrt(2) forgotten",
              "q_at_step_end": "the score/denoiser evaluated at the step's end time s instead of its start t"},
)
def weak_orders(ctx: Context) -> list[Measurement]:
    """Log-log slope of the endpoint KL vs n for every stochastic method and dimension, against the window of
    :func:`weak_window` (exact laws: no Monte Carlo; seed-independent)."""
    p = ctx.params
    out, series = [], {}
    for d in p["dims"]:
        gm = weak_target(d)
        for method in WEAK_METHODS:
            eta = p["eta"] if method == "ddim_eta" else None
            score_m = get_method(method).q == "score"
            bug = {"alpha_ratio_dropped": _bug_alpha_ratio_sde(method),
                   "sde_drift_halved": (lambda k, t, s, c: (c[0], 0.5 * c[1], c[2])) if score_m else None,
                   "noise_sqrt2_missing": (lambda k, t, s, c: (c[0], c[1], c[2] / math.sqrt(2))) if score_m else None,
                   }.get(ctx.control)
            kls = [law_kl(method, time_grid(p["kind"], T=p["T"], delta=p["delta"], n=n), gm, eta, bug,
                          ctx.bug("q_at_step_end")) for n in p["ns"]]
            fit = loglog_slope(p["ns"], kls)
            win = weak_window(method, p["ns"], p, gm, p["eta"])
            series.setdefault(method, []).append((f"d={d}", kls, -fit.slope, win["half"]))
            out.append(Measurement(
                name=f"KL order {method} d={d}", measured=-fit.slope, kind="interval", lo=2 - win["half"],
                hi=2 + win["half"], tol=0.0,
                reason="weak order 1 (KL ~ h^2); window = next-order bias of the fitted slope from the expansion "
                       "n^-2 (U + W/n + R/n^2) of the KL of the method as the note defines it (per-coordinate "
                       "Gaussian chain, Richardson at 2, 4, 8 x max n), remainder <= 2|R|/n^2 (integrators.md#weak-order)",
                extra={"kl": kls, "ns": list(p["ns"]), "window": win}))
    for method in WEAK_METHODS:
        ctx.plot.rates(method, p["ns"], [v[:2] for v in series[method]], slope=-2.0, pred_label="slope -2",
               title=f"{method}{' (eta = %g)' % p['eta'] if method == 'ddim_eta' else ''}: KL order " + ", ".join(f"{v[2]:.3f}" for v in series[method])
               + f" (2 +- {max(v[3] for v in series[method]):.3f})",
               xlabel="steps n", ylabel="KL(endpoint law || exact marginal)")
    return out


# --------------------------------------------------------------------------- the fast kernel path

def _fast_setting(ctx: Context) -> GaussianMixture:
    """Two classes with an atom, an isotropic, a low-rank and a full component in d = 4 (the fast path's
    per-particle route with spikes); points near the data and far from it."""
    rng = ctx.rng
    d = 4
    A = rng.standard_normal((4, d, 2))
    covs = np.einsum("kij,klj->kil", A, A) * 0.5
    covs[0] = 0.0
    covs[1] = 0.3 * np.eye(d)
    covs[3] += 0.1 * np.eye(d)
    return GaussianMixture([0.2, 0.3, 0.25, 0.25], 2.0 * rng.standard_normal((4, d)), covs, labels=[0, 1, 0, 1])


@claim(
    id="samplers.fast_path_agrees",
    paper="samplers",
    statement="the fast GEMM-form kernel path (sample(..., fast=True), the kernel guidance-verify bench times) gives "
              "the reference kernel's denoiser and guided denoiser to within the derived float64 agreement bound "
              "(the reference kernel is checked against the 50-digit oracle in the foundations claims)",
    note=f"{NOTE_INT}#fast-path",
    provenance="standard",
    quick={"n": 200, "times": [1e-3, 0.05, 0.7, 3.0], "w": 3.0},
    full={"n": 2000, "times": [1e-4, 1e-3, 0.01, 0.05, 0.3, 0.7, 3.0], "w": 3.0},
    controls={"time_offset": "the fast kernel evaluated one step (1e-3) off in time, at t + 1e-3",
              "w_minus_one": "guidance weight w - 1 passed where w belongs (CG/CFG convention mixed up)",
              "label_swapped": "the guided denoiser of the other class (label convention 0/1 swapped)"},
)
def fast_path_agrees(ctx: Context) -> list[Measurement]:
    """Fast vs reference kernel, per point in units of :func:`numerics.fast.agreement_bound`."""
    from numerics.fast import FastMixture, agreement_bound

    p = ctx.params
    gm = _fast_setting(ctx)
    fm = FastMixture(gm)
    w, y = float(p["w"]), 1
    dt = 1e-3 if ctx.bug("time_offset") else 0.0
    w_fast = w - 1.0 if ctx.bug("w_minus_one") else w
    y_fast = 1 - y if ctx.bug("label_swapped") else y
    worst = {"den": 0.0, "guided": 0.0}
    per_t: dict[str, list[float]] = {"den": [], "guided": []}
    for t in p["times"]:
        x = 2.0 * ctx.rng.standard_normal((p["n"], gm.d))
        x[: p["n"] // 4] = math.exp(-t) * gm.means[ctx.rng.integers(0, gm.K, p["n"] // 4)]
        a, s2 = alpha_sigma2(t)
        tol_d = agreement_bound(fm, gm, x, t, "denoiser")
        g = gm.guidance_vector(x, t, y)
        # the guidance vector adds w (sigma^2/alpha)|g| relative rounding (its own p_not and difference)
        tol_g = tol_d * (1 + w) + (gm.d + 8) * U * w * (s2 / a) * np.abs(g).max(axis=1, keepdims=True)
        ref_d, ref_g = gm.denoiser(x, t), gm.guided_denoiser(x, t, y, w)
        fast_d, fast_g = fm.denoiser(x, t + dt), fm.guided_denoiser(x, t + dt, y_fast, w_fast)
        per_t["den"].append(float(np.max(np.abs(fast_d - ref_d) / tol_d)))
        per_t["guided"].append(float(np.max(np.abs(fast_g - ref_g) / tol_g)))
        worst["den"] = max(worst["den"], per_t["den"][-1])
        worst["guided"] = max(worst["guided"], per_t["guided"][-1])
    for key, what in (("den", "denoiser D"), ("guided", f"guided denoiser D_w (w = {w:g})")):
        ctx.plot.agreement(key, p["times"], per_t[key], 1.0, title=f"fast vs reference {what}",
                    xlabel="time t", ylabel="max over points |fast - ref| / agreement bound",
                    tol_label="agreement bound")
    reason = ("per point: 2(2 eps spread + gamma_n scale), eps the GEMM-form logit bound (numerics.fast."
              "agreement_bound, derived in its docstring)")
    return [
        # a ratio of rounding errors: it depends on the platform's exp and summation order, and any value in
        # [0, 1] passes alike, so a baseline comparison allows it to move within that range (drift_tol = 1)
        Measurement(name="max |D_fast - D_ref| / bound", measured=worst["den"], predicted=1.0, kind="le", tol=0.0,
                    reason=reason, extra={"drift_tol": 1.0}),
        Measurement(name="max |D_w,fast - D_w,ref| / bound", measured=worst["guided"], predicted=1.0, kind="le",
                    tol=0.0, reason=reason + ", times (1 + w), plus gamma_{d+8} w (sigma^2/alpha)|g| for the guidance",
                    extra={"drift_tol": 1.0}),
    ]

r"""Exact endpoint laws of every sampler on point-mass directions: the delta sweeps of the support claims.

On the directions where the guided denoiser is a constant ``a`` (a single atom; or the directions orthogonal to
a subspace that carries every class, where :math:`D_\gamma^\perp = 0` for every guidance weight, note C1) every
method of :data:`numerics.methods.TABLE` takes the affine step

.. math::  y_s = a_k\,y_t + b_k\,a + \sqrt{\nu_k}\,z,\qquad z\sim N(0, I),

with :math:`(a_k, b_k, \nu_k)` written out below by hand from the method's definition (``proofs_notes/support.md
#sampler-laws``), not read from the generated coefficient tables the samplers use.  Started from
:math:`y_0 \sim N(0, I)` the endpoint is therefore

.. math::  y_N = A\,y_0 + B\,a + G,\qquad A = \prod_k a_k,\quad B = \sum_k b_k \prod_{j>k} a_j,\quad
           G \sim N(0, V I),\quad V = \sum_k \nu_k \prod_{j>k} a_j^2,

a Gaussian :math:`N(B a, (A^2 + V) I)` whose spread :math:`r_\delta = \sqrt{A^2 + V}` is the distance scale of the
sampler at the early-stopping time :math:`\delta`.  For a deterministic method (:math:`V = 0`) the map
:math:`y_0 \mapsto y_N` is exact per sample.

Per-step coefficients (OU: :math:`\lambda_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`, :math:`h = t - s`,
:math:`\sigma_{t|s}^2 = 1 - e^{-2h}`; a score method sees :math:`S = (\lambda_t a - y)/\sigma_t^2`):

============================  ====================================  ==============================  =========================================
method                        :math:`a_k`                           :math:`b_k`                     :math:`\nu_k`
============================  ====================================  ==============================  =========================================
ddim, dpm_solver_1/2          :math:`\sigma_s/\sigma_t`             :math:`\lambda_s - \lambda_t a_k`  0
ddim_eta (:math:`\eta`)       :math:`\sqrt{\sigma_s^2 - \nu_k}/\sigma_t`  :math:`\lambda_s - \lambda_t a_k`  :math:`\eta^2 \sigma_s^2\sigma_{t|s}^2/\sigma_t^2`
ddpm                          :math:`e^{-h}\sigma_s^2/\sigma_t^2`   :math:`\lambda_s\sigma_{t|s}^2/\sigma_t^2`  :math:`\sigma_s^2\sigma_{t|s}^2/\sigma_t^2`
ei_ode                        :math:`e^h - (e^h - 1)/\sigma_t^2`    :math:`(e^h-1)\lambda_t/\sigma_t^2`  0
ei_sde                        :math:`e^h - 2(e^h - 1)/\sigma_t^2`   :math:`2(e^h-1)\lambda_t/\sigma_t^2`  :math:`e^{2h} - 1`
ei_sde_code                   as ei_sde                             as ei_sde                       :math:`2(e^h - 1)`
euler                         :math:`1 + h - h/\sigma_t^2`          :math:`h\lambda_t/\sigma_t^2`   0
euler_maruyama                :math:`1 + h - 2h/\sigma_t^2`         :math:`2h\lambda_t/\sigma_t^2`  :math:`2h`
============================  ====================================  ==============================  =========================================

(DPM-Solver++(2M) adds a multiple of :math:`D_t - D_{t'}`, which vanishes for a constant denoiser.)  The
exponential-integrator rows satisfy :math:`a_k\lambda_t + b_k = \lambda_s` (the mean stays on
:math:`\lambda_s a`); the Euler rows miss it by :math:`(e^h - 1 - h)\lambda_t`, their O(h^2) local error.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from scipy.special import ndtr
from scipy.stats import kstwo

from numerics.grids import time_grid
from numerics.validate import check_choice

__all__ = ["SWEEP_METHODS", "GRID_KINDS", "point_mass_step", "PointMassLaw", "point_mass_law", "sweep_grid",
           "ks_ratio", "branched_ends"]

#: Every method of the package the sweeps run (``ddim_eta`` at an intermediate eta, :data:`SWEEP_ETA`).
SWEEP_METHODS: tuple[str, ...] = ("ddim", "dpm_solver_2", "ei_ode", "euler", "ddpm", "ddim_eta", "ei_sde",
                                  "ei_sde_code", "euler_maruyama")
#: The eta of ``ddim_eta`` in the sweeps (halfway between DDIM and DDPM).
SWEEP_ETA = 0.5
#: Grid kinds of :func:`numerics.grids.time_grid` the sweeps run.
GRID_KINDS: tuple[str, ...] = ("geometric", "logsnr", "uniform")


def point_mass_step(method: str, t: float, s: float, eta: float | None = None) -> tuple[float, float, float]:
    r"""``(a_k, b_k, nu_k)`` of one step :math:`y_s = a_k y_t + b_k a + \sqrt{\nu_k} z` on a point mass ``a``
    (the table of the module docstring), in float64 with ``expm1`` near ``t = 0``."""
    h = t - s
    lam_t, lam_s = math.exp(-t), math.exp(-s)
    s2t, s2s, s2h = -math.expm1(-2 * t), -math.expm1(-2 * s), -math.expm1(-2 * h)
    if method in ("ddim", "dpm_solver_1", "dpm_solver_2", "ddim_eta"):
        nu = 0.0 if method != "ddim_eta" else (SWEEP_ETA if eta is None else eta) ** 2 * s2s * s2h / s2t
        a = math.sqrt((s2s - nu) / s2t)
        return a, lam_s - lam_t * a, nu
    if method == "ddpm":
        return math.exp(-h) * s2s / s2t, lam_s * s2h / s2t, s2s * s2h / s2t
    if method in ("ei_ode", "ei_sde", "ei_sde_code"):
        m = 1.0 if method == "ei_ode" else 2.0
        nu = {"ei_ode": 0.0, "ei_sde": math.expm1(2 * h), "ei_sde_code": 2 * math.expm1(h)}[method]
        return math.exp(h) - m * math.expm1(h) / s2t, m * math.expm1(h) * lam_t / s2t, nu
    if method in ("euler", "euler_maruyama"):
        m = 1.0 if method == "euler" else 2.0
        return 1 + h - m * h / s2t, m * h * lam_t / s2t, 0.0 if method == "euler" else 2 * h
    raise ValueError(f"method: no point-mass step for {method!r}")


class PointMassLaw(NamedTuple):
    r"""Endpoint law :math:`y_N = A y_0 + B a + G`, :math:`G\sim N(0, V I)`, of a run on a point mass."""

    A: float
    B: float
    V: float

    @property
    def radius(self) -> float:
        r""":math:`r_\delta = \sqrt{A^2 + V}`: the spread of :math:`y_N` from :math:`y_0\sim N(0, I)`."""
        return math.hypot(self.A, math.sqrt(self.V))


def point_mass_law(method: str, grid: np.ndarray, eta: float | None = None) -> PointMassLaw:
    r"""Compose :func:`point_mass_step` over ``grid``: :math:`A \leftarrow a_k A`, :math:`B \leftarrow a_k B + b_k`,
    :math:`V \leftarrow a_k^2 V + \nu_k`."""
    A, B, V = 1.0, 0.0, 0.0
    g = np.asarray(grid, dtype=np.float64)
    for t, s in zip(g[:-1], g[1:]):
        a, b, nu = point_mass_step(method, float(t), float(s), eta)
        A, B, V = a * A, a * B + b, a * a * V + nu
    return PointMassLaw(A, B, V)


def sweep_grid(kind: str, delta: float, kappa: float, n: int, T: float = 5.0) -> np.ndarray:
    r"""The grid of one sweep point: ``geometric`` with step parameter ``kappa`` (steps
    :math:`\le \kappa\min(1, s)`), ``logsnr`` and ``uniform`` with ``n`` steps, all from ``T`` to ``delta``."""
    kind = check_choice(kind, "kind", GRID_KINDS)
    if kind == "geometric":
        return time_grid("geometric", T=T, delta=delta, kappa=kappa)
    return time_grid(kind, T=T, delta=delta, n=n)


def ks_ratio(z: np.ndarray, alpha: float) -> float:
    """Kolmogorov-Smirnov statistic of ``z`` against N(0, 1) (:func:`ks_statistic_normal`) over its critical value
    at level ``alpha`` (the exact finite-m law, ``scipy.stats.kstwo``, :func:`_ks_critical`): > 1 rejects the law at
    level ``alpha``."""
    return float(ks_statistic_normal(z) / _ks_critical(float(alpha), int(np.size(z))))


def ks_statistic_normal(z: np.ndarray) -> float:
    r"""The two-sided Kolmogorov-Smirnov statistic of the sample ``z`` against N(0, 1),

    .. math:: D_m = \max\big(\max_i (i/m - \Phi(z_{(i)})),\ \max_i (\Phi(z_{(i)}) - (i-1)/m)\big),

    by the operations of ``scipy.stats.kstest(z, "norm").statistic`` (scipy 1.17's ``ks_1samp``: the same floats,
    tested) without its p-value: kstest also evaluates the exact finite-m law of :math:`D_m` at the statistic (pure
    Python, about 5 ms a call), which :func:`ks_ratio` never reads.  With this function and the memoised critical
    value, the sweeps' 1500 calls at m = 4000-254000 took 2.3 s against 15.7 s with kstest and the critical value
    inverted at every call (the two changes timed together)."""
    x = np.sort(np.asarray(z, dtype=np.float64).ravel())
    m = x.size
    cdf = ndtr(x)
    d_plus = np.max(np.arange(1.0, m + 1) / m - cdf)
    d_minus = np.max(cdf - np.arange(0.0, m) / m)
    return float(max(d_plus, d_minus))


@functools.lru_cache(maxsize=256)
def _ks_critical(alpha: float, m: int) -> float:
    """``kstwo.isf(alpha, m)``, memoised: the sweeps test many samples of one size at one level (an inversion of the
    exact law costs about 2 ms)."""
    return float(kstwo.isf(alpha, m))


def branched_ends(make_target, method: str, grids: dict, deltas: list[float], z: np.ndarray,
                  **sample_kw) -> dict[float, np.ndarray]:
    r"""The end points of a one-step sampler from ``z`` on every grid of ``grids`` (``delta -> grid``, ``deltas``
    decreasing), equal bit for bit to one :func:`~numerics.samplers.sample` run per grid
    (``sample(make_target(grid), method, grid=grid, n=len(z), x_init=z, **sample_kw)``).

    The geometric grids of one ``(T, kappa)`` share every node but their last (checked: ``ValueError`` naming
    ``grids`` otherwise), and a step of a method without memory (not ``multistep``: ``ValueError`` naming
    ``method`` otherwise) is a function of ``(x, t, s)`` and its noise alone, so one run along the smallest
    delta's grid, stopped at each larger grid's last shared node, from which that grid's last step is taken on
    ``make_target(grid)`` (a control's bug may depend on the grid), gives every end point at the cost of the
    longest run plus one step per delta.  A stochastic method needs ``noise="blocks"`` and an integer or
    SeedSequence ``seed`` in ``sample_kw`` (``ValueError`` naming ``method`` otherwise): its step ``k`` then
    draws the block keyed on ``(seed, k)`` whichever grid it belongs to, and each piece is run with
    ``first_step`` at its first node's index, so every grid sees the noise of its own run with that seed (the
    grids' runs share their noise up to their last step: common random numbers)."""
    from numerics.methods import TABLE
    from numerics.samplers import sample

    rec = TABLE.get(method)
    if rec is None or rec.multistep or (rec.stochastic and sample_kw.get("noise") != "blocks"):
        raise ValueError(f"method: need a one-step method, deterministic or with noise='blocks', got {method!r}")
    step0 = (lambda j: {"first_step": j}) if rec.stochastic else (lambda j: {})
    full = grids[deltas[-1]]
    ends, x, pos = {}, z, 0
    for delta in deltas:
        grid = grids[delta]
        j = grid.size - 2  # its last node shared with the full grid
        if not np.array_equal(grid[:-1], full[:j + 1]):
            raise ValueError(f"grids: the grid of delta={delta!r} is not the smallest delta's grid up to its last node")
        if j > pos:
            x = sample(make_target(full), method, grid=full[pos:j + 1], n=z.shape[0], x_init=x, **sample_kw,
                       **step0(pos))
            pos = j
        ends[delta] = sample(make_target(grid), method, grid=grid[j:], n=z.shape[0], x_init=x, **sample_kw,
                             **step0(j))
    return ends

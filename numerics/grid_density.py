r"""Exact output densities of Gaussian-transition samplers in 1-D, by propagation on a uniform grid.

A stochastic sampler step :math:`x_{k+1}\sim N(m_k(x_k), v_k)` maps a density :math:`p_k` to

.. math::  p_{k+1}(z) = \int p_k(x)\,N(z; m_k(x), v_k)\,dx .

:func:`propagate` evaluates this integral with the trapezoid (equivalently, rectangle) rule on a
uniform grid of spacing :math:`\Delta`.  For a smooth, rapidly decaying integrand the rule converges
spectrally (error :math:`\approx 2\sum_{j\ge1}|\hat F(2\pi j/\Delta)|`), so it is exact to rounding once
:math:`\Delta` resolves the narrowest feature (the kernel width :math:`\sqrt{v_k}` and the variation of
:math:`p_k` and :math:`m_k`).  The two error sources are reported, not hidden:

* ``escaped``: the mass that left the grid interval (the kernel's tails beyond the ends), accumulated
  over the steps -- the truncation error of the domain;
* the quadrature error, estimated by **refinement**: :func:`refinement_error` reruns on a grid with half
  the spacing and returns the L1 distance between the two results (a conservative estimate of the finer
  run's error for a spectrally convergent rule).

Time convention: none -- the caller's ``transition_mean_fn(x, k)`` and ``transition_var`` encode the
sampler (for the reverse OU process, step ``k`` goes from OU time ``t_k`` to ``t_{k+1} < t_k``).

API (stable; reused by other papers' claims)::

    grid = uniform_grid(lo, hi, n)
    p0 = gaussian_on_grid(grid, mean, var)
    res = propagate(p0, grid, transition_mean_fn, transition_var, steps)   # GridResult
    res.density, res.escaped
    kl_grid(p, q, grid), tv_grid(p, q, grid)
    refinement_error(run, grid)   # run: grid -> density; L1 distance to the run on the halved-spacing grid
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from numerics._validate import as_float_array, check_int

__all__ = ["GridResult", "uniform_grid", "gaussian_on_grid", "propagate", "kl_grid", "tv_grid",
           "refinement_error", "spacing"]

#: Relative tolerance on the uniformity of a grid's spacing.
UNIFORM_TOL = 1e-9


@dataclass(frozen=True)
class GridResult:
    """Output of :func:`propagate`: the density on the grid and the mass that escaped the interval."""

    density: np.ndarray
    escaped: float


def uniform_grid(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` equally spaced points on ``[lo, hi]`` (``lo < hi`` finite, ``n >= 3``)."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"lo, hi: need finite lo < hi, got {lo!r}, {hi!r}")
    return np.linspace(lo, hi, check_int(n, "n", 3))


def spacing(grid) -> float:
    """The spacing of a uniform, increasing grid; ``ValueError`` if it is not one."""
    g = as_float_array(grid, "grid", 1)
    if g.size < 3:
        raise ValueError(f"grid: need at least 3 points, got {g.size}")
    dx = np.diff(g)
    h = float(dx.mean())
    if h <= 0 or np.max(np.abs(dx - h)) > UNIFORM_TOL * max(1.0, abs(g).max()):
        raise ValueError("grid: must be uniform and increasing")
    return h


def _check_density(p, grid, name: str) -> np.ndarray:
    arr = as_float_array(p, name, 1)
    if arr.shape != np.shape(grid):
        raise ValueError(f"{name}: expected shape {np.shape(grid)}, got {arr.shape}")
    if np.any(arr < 0):
        raise ValueError(f"{name}: must be non-negative")
    return arr


def gaussian_on_grid(grid, mean: float, var: float) -> np.ndarray:
    """The :math:`N(\\text{mean}, \\text{var})` density evaluated at the grid points."""
    g = as_float_array(grid, "grid", 1)
    var = float(var)
    if not (math.isfinite(var) and var > 0):
        raise ValueError(f"var: must be finite and > 0, got {var!r}")
    return np.exp(-0.5 * (g - float(mean)) ** 2 / var) / math.sqrt(2 * math.pi * var)


def propagate(density0, grid, transition_mean_fn: Callable[[np.ndarray, int], np.ndarray],
              transition_var, steps: int) -> GridResult:
    r"""Push a density through ``steps`` Gaussian transitions :math:`x_{k+1}\sim N(m(x_k, k), v_k)`.

    Parameters
    ----------
    density0 : array_like, shape (n,)
        Initial density values at the grid points (non-negative; need not be normalised).
    grid : array_like, shape (n,)
        Uniform increasing grid.
    transition_mean_fn : callable ``(x (n,), k) -> (n,)``
        The transition mean of step ``k`` at every grid point; must be finite.
    transition_var : float or callable ``k -> float``
        The transition variance :math:`v_k > 0`.
    steps : int >= 0

    Returns
    -------
    GridResult
        ``density`` at the grid points after the last step, and ``escaped``: the total mass the
        kernels put outside ``[grid[0] - dx/2, grid[-1] + dx/2]`` (computed with ``erfc``), i.e. the
        domain-truncation loss (the quadrature error is estimated separately by refinement).

    Cost: one dense ``(n, n)`` kernel per step, :math:`O(n^2)` time.
    """
    from scipy.special import ndtr

    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    p = _check_density(density0, g, "density0").copy()
    steps = check_int(steps, "steps", 0)
    escaped = 0.0
    lo, hi = g[0] - 0.5 * dx, g[-1] + 0.5 * dx
    for k in range(steps):
        v = float(transition_var(k)) if callable(transition_var) else float(transition_var)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"transition_var: must be finite and > 0 at step {k}, got {v!r}")
        m = np.asarray(transition_mean_fn(g, k), dtype=np.float64)
        if m.shape != g.shape or not np.all(np.isfinite(m)):
            raise ValueError(f"transition_mean_fn: must return {g.shape} finite values at step {k}")
        sd = math.sqrt(v)
        w = p * dx  # source masses
        outside = ndtr((lo - m) / sd) + ndtr((m - hi) / sd)
        escaped += float(w @ outside)
        K = np.exp(-0.5 * ((g[:, None] - m[None, :]) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        p = K @ w
    return GridResult(p, escaped)


def kl_grid(p, q, grid) -> float:
    r""":math:`\mathrm{KL}(p\|q) = \int p\log(p/q)` by the grid rule, both normalised on the grid first.

    ``ValueError`` if ``q`` vanishes where ``p`` does not (infinite KL).
    """
    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    p, q = _check_density(p, g, "p"), _check_density(q, g, "q")
    zp, zq = p.sum() * dx, q.sum() * dx
    if zp <= 0 or zq <= 0:
        raise ValueError("p, q: must have positive mass")
    p, q = p / zp, q / zq
    on = p > 0
    if np.any(q[on] == 0):
        raise ValueError("q: vanishes where p is positive (KL is infinite)")
    return float(np.sum(p[on] * np.log(p[on] / q[on])) * dx)


def tv_grid(p, q, grid) -> float:
    r"""Total variation :math:`\tfrac12\int|p-q|` by the grid rule (both normalised on the grid first)."""
    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    p, q = _check_density(p, g, "p"), _check_density(q, g, "q")
    return float(0.5 * np.sum(np.abs(p / (p.sum() * dx) - q / (q.sum() * dx))) * dx)


def refinement_error(run: Callable[[np.ndarray], np.ndarray], grid) -> float:
    """L1 distance between ``run(grid)`` and ``run(finer)`` on the grid, ``finer`` having half the spacing.

    ``run`` maps a grid to a density on it.  The finer result is compared at the common points.
    """
    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    fine = np.linspace(g[0], g[-1], 2 * g.size - 1)
    a, b = np.asarray(run(g)), np.asarray(run(fine))[::2]
    return float(np.sum(np.abs(a - b)) * dx)

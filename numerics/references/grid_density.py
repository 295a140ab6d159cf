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

Two dimensions, isotropic kernels :math:`x_{k+1}\sim N(m_k(x_k), v_k I_2)` on a tensor grid ``grid1 x grid2``
(densities of shape ``(n1, n2)``, index ``[a, b]`` at ``(grid1[a], grid2[b])``)::

    p0 = gaussian_on_grid_2d(grid1, grid2, mean, cov)
    res = propagate_2d(p0, grid1, grid2, transition_mean_fn, transition_var, steps)   # GridResult
    kl_grid_2d(p, q, grid1, grid2), tv_grid_2d(p, q, grid1, grid2)
    refinement_error_2d(run, grid1, grid2)   # run: (grid1, grid2) -> density; both spacings halved

Independent propagations (or any jobs whose heavy work releases the GIL) side by side on
``numba.get_num_threads()`` threads, bit for bit as run alone::

    run_concurrently({key: job, ...})   # -> {key: job()}
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import numba
import numpy as np
from numba import njit

from numerics.divergences import kl_cells
from numerics.validate import as_float_array, check_array, check_density, check_int, check_positive, check_real

__all__ = ["GridResult", "uniform_grid", "gaussian_on_grid", "propagate", "gauss_transform", "kl_grid", "tv_grid",
           "refinement_error", "spacing", "gaussian_on_grid_2d", "propagate_2d", "kl_grid_2d", "tv_grid_2d",
           "refinement_error_2d", "run_concurrently"]

#: Relative tolerance on the uniformity of a grid's spacing.
UNIFORM_TOL = 1e-9
#: Most points :func:`uniform_grid` builds (80 MB of float64; a propagation on it costs O(n^2) per step).
MAX_GRID_POINTS = 10_000_000


@dataclass(frozen=True)
class GridResult:
    """Output of :func:`propagate`: the density on the grid and the mass that escaped the interval."""

    density: np.ndarray
    escaped: float


def uniform_grid(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` equally spaced points on ``[lo, hi]`` (``lo < hi`` finite real numbers, ``hi - lo`` finite,
    ``3 <= n <=`` :data:`MAX_GRID_POINTS`)."""
    lo, hi = check_real(lo, "lo"), check_real(hi, "hi")
    if not lo < hi:
        raise ValueError(f"lo, hi: need finite lo < hi, got {lo!r}, {hi!r}")
    if not math.isfinite(hi - lo):
        raise ValueError(f"lo, hi: the width hi - lo overflows float64, got {lo!r}, {hi!r}")
    return np.linspace(lo, hi, check_int(n, "n", 3, MAX_GRID_POINTS))


def spacing(grid, name: str = "grid") -> float:
    """The spacing of a uniform, increasing grid; ``ValueError`` (naming ``name``) if it is not one."""
    g = as_float_array(grid, name, 1)
    if g.size < 3:
        raise ValueError(f"{name}: need at least 3 points, got {g.size}")
    dx = np.diff(g)
    h = float(dx.mean())
    if h <= 0 or np.max(np.abs(dx - h)) > UNIFORM_TOL * max(1.0, abs(g).max()):
        raise ValueError(f"{name}: must be uniform and increasing")
    return h


def _check_density(p, grid, name: str) -> np.ndarray:
    return check_density(p, name, 1, np.shape(grid))


def gaussian_on_grid(grid, mean: float, var: float) -> np.ndarray:
    """The :math:`N(\\text{mean}, \\text{var})` density evaluated at the grid points.

    ``mean`` a finite real number, ``var`` a finite real number ``> 0`` with ``2 pi var`` finite; ValueError
    naming the argument otherwise.
    """
    g = as_float_array(grid, "grid", 1)
    mean = check_real(mean, "mean")
    var = check_positive(var, "var")
    if not math.isfinite(2 * math.pi * var):
        raise ValueError(f"var: 2 pi var overflows float64, got {var!r}")
    with np.errstate(over="ignore"):  # (g - mean)^2 / var overflowing to inf gives the correct density 0
        return np.exp(-0.5 * (g - mean) ** 2 / var) / math.sqrt(2 * math.pi * var)


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

    Cost: at most n^2 kernel entries per step (fewer where the kernel underflows), by the exponential-free
    recurrence of :func:`_gauss_transform`.
    """
    from scipy.special import ndtr

    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    p = _check_density(density0, g, "density0").copy()
    steps = check_int(steps, "steps", 0)
    _check_transition(transition_mean_fn, transition_var)
    escaped = 0.0
    lo, hi = g[0] - 0.5 * dx, g[-1] + 0.5 * dx
    for k in range(steps):
        v = _variance_at(transition_var, k)
        m = check_array(_call_user(transition_mean_fn, "transition_mean_fn", f"at step {k}", g, k),
                        f"transition_mean_fn (step {k})", g.shape)
        sd = math.sqrt(v)
        w = p * dx  # source masses
        outside = ndtr((lo - m) / sd) + ndtr((m - hi) / sd)
        escaped += float(w @ outside)
        p = np.empty_like(g)
        _gauss_transform(g, dx, m, w, sd, p)
        _check_propagated(p, escaped, k)
    return GridResult(p, escaped)


def gauss_transform(grid, means, weights, sd: float) -> np.ndarray:
    r""":math:`\text{out}_i = \sum_j w_j\,N(g_i; m_j, \text{sd}^2)` on the uniform increasing ``grid``: the
    compiled kernel sum :func:`_gauss_transform` (the step of :func:`propagate`, without its escaped-mass and
    density checks). ``means`` and ``weights`` finite, of one shape ``(J,)``; ``sd > 0``; ValueError naming the
    argument otherwise."""
    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    m = as_float_array(means, "means", 1)
    w = check_array(weights, "weights", m.shape)
    out = np.empty_like(g)
    _gauss_transform(g, dx, m, w, check_positive(sd, "sd"), out)
    return out


@njit(cache=True, nogil=True)
def _gauss_transform(g, dx, m, w, sd, out):
    r""":math:`\text{out}_i = \sum_j w_j\,N(g_i; m_j, \text{sd}^2)` on the uniform grid ``g`` (spacing ``dx``):
    :func:`_add_kernel` for each source with a nonzero weight (the same sum as the dense form, which this
    replaced, 10-30 times faster; ``nogil``: see :func:`run_concurrently`)."""
    n = g.shape[0]
    for i in range(n):
        out[i] = 0.0
    inv2v = 0.5 / (sd * sd)
    q = math.exp(-2.0 * dx * dx * inv2v)
    norm = 1.0 / (sd * math.sqrt(2.0 * math.pi))
    for j in range(m.shape[0]):
        wj = w[j] * norm
        if wj != 0.0:
            _add_kernel(g, dx, m[j], wj, inv2v, q, out)


def gauss_kernel_matrix(grid, means, sd: float) -> np.ndarray:
    r""":math:`\text{out}_{j i} = N(g_i; m_j, \text{sd}^2)`, the ``(J, n)`` kernel matrix on the uniform increasing
    ``grid`` by the recurrence of :func:`_add_kernel` (the rows :func:`gauss_transform` sums without storing).
    ``means`` finite, shape ``(J,)``; ``sd > 0``; ValueError naming the argument otherwise."""
    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    m = as_float_array(means, "means", 1)
    out = np.zeros((m.size, g.size))
    _gauss_rows(g, dx, m, check_positive(sd, "sd"), out)
    return out


@njit(cache=True, nogil=True)
def _gauss_rows(g, dx, m, sd, out):
    """``out[j] += N(g; m_j, sd^2)`` for every source ``j`` (``out`` zeroed by the caller): :func:`_add_kernel`
    (``nogil``: see :func:`run_concurrently`)."""
    inv2v = 0.5 / (sd * sd)
    q = math.exp(-2.0 * dx * dx * inv2v)
    norm = 1.0 / (sd * math.sqrt(2.0 * math.pi))
    for j in range(m.shape[0]):
        _add_kernel(g, dx, m[j], norm, inv2v, q, out[j])


#: Kernel entries between exact ``exp`` evaluations in :func:`_add_kernel` (the recurrence's relative error
#: grows like s^2/2 roundings over s steps: at most 32 ulp between restarts).
RESTART = 8


@njit(cache=True)
def _add_kernel(g, dx, mj, scale, inv2v, q, out):
    r"""``out[i] += scale * exp(-(g_i - mj)^2 inv2v)`` on the uniform grid ``g`` (spacing ``dx``), ``q = e^{-4 dx^2
    inv2v}``, where the term is nonzero.

    Along the grid the kernel of one source obeys a two-term multiplicative recurrence: with
    :math:`z_i = g_i - m_j` and :math:`v = 1/(2\,\text{inv2v})`,

    .. math:: K_{i\pm1} = K_i\,r_i,\qquad r_i = e^{-(\pm 2 z_i\Delta + \Delta^2)/(2v)},\qquad
       r_{i\pm1} = r_i\,e^{-\Delta^2/v},

    so two products replace an exponential. Starting at the grid point nearest :math:`m_j` it runs outwards in
    both directions, exactly re-evaluated every :data:`RESTART` points, and stops where the kernel underflows to 0
    (the dense kernel is exactly 0 there too). Relative error per entry at most about 32 ulp near the source,
    growing with the exponent :math:`z^2/(2v)` far from it (tests)."""
    n = g.shape[0]
    c = (mj - g[0]) / dx
    i0 = 0 if c < 0.0 else (n - 1 if c > n - 1 else int(c + 0.5))
    for direction in (1, -1):
        i = i0 if direction == 1 else i0 - 1
        while 0 <= i < n:
            z = g[i] - mj
            K = math.exp(-z * z * inv2v)
            if K == 0.0:
                break
            r = math.exp(-(direction * 2.0 * z * dx + dx * dx) * inv2v)
            for _ in range(RESTART):
                out[i] += scale * K
                K *= r
                r *= q
                i += direction
                if i < 0 or i >= n or K == 0.0:
                    break
            if K == 0.0:
                break


def run_concurrently(jobs: dict[Hashable, Callable[[], Any]]) -> dict[Hashable, Any]:
    """``{key: job()}`` for independent jobs (e.g. whole grid propagations), on ``numba.get_num_threads()`` Python
    threads, inline for one thread.

    The jobs start in the dict's order (put the costliest first).  Their heavy work must release the GIL: NumPy's
    ufuncs and BLAS (one BLAS thread in a serial run), and this module's ``nogil`` kernels (:func:`_gauss_transform`,
    :func:`_gauss_rows`).  The jobs share no mutable state (memo dicts at most, whose values do not depend on who
    fills them), so each computes exactly what it computes alone and the results are bit for bit the same for any
    thread count (tested); an exception of a job is raised here (after the running jobs end; the others never
    start).
    """
    if not isinstance(jobs, dict) or not all(callable(j) for j in jobs.values()):
        raise ValueError("jobs: must be a dict of callables")
    threads = min(numba.get_num_threads(), len(jobs))
    if threads <= 1:
        return {key: job() for key, job in jobs.items()}
    pool = ThreadPoolExecutor(threads)
    try:
        futures = {key: pool.submit(job) for key, job in jobs.items()}
        return {key: f.result() for key, f in futures.items()}
    finally:  # on an error (a job's, or the harness's time limit) the jobs not yet started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def _check_transition(transition_mean_fn, transition_var) -> None:
    """Up-front checks of :func:`propagate`'s transition arguments (a constant variance is checked here once)."""
    if not callable(transition_mean_fn):
        raise ValueError(f"transition_mean_fn: must be callable, got {type(transition_mean_fn).__name__}")
    if not callable(transition_var):
        _variance_at(transition_var, 0)


def _call_user(fn: Callable, name: str, where: str, *args):
    """``fn(*args)``; any exception it raises becomes a ValueError naming ``name`` and ``where`` it was called (the
    original is kept as ``__cause__``)."""
    try:
        return fn(*args)
    except Exception as exc:  # the user's function: any failure is reported as a bad argument
        raise ValueError(f"{name}: calling it {where} failed ({type(exc).__name__}: {exc})") from exc


def _variance_at(transition_var, k: int) -> float:
    """The transition variance of step ``k``: a finite real number ``> 0`` (ValueError naming ``transition_var``)."""
    v = _call_user(transition_var, "transition_var", f"at step {k}", k) if callable(transition_var) else transition_var
    return check_positive(v, f"transition_var (step {k})")


def _check_propagated(p: np.ndarray, escaped: float, k: int) -> None:
    """The density after step ``k`` and the escaped mass must be finite: ``density0`` was too large."""
    if not (np.isfinite(p).all() and math.isfinite(escaped)):
        raise ValueError(f"density0: the propagated density overflows float64 at step {k}; rescale density0 "
                         "(it need not be normalised)")


def kl_grid(p, q, grid) -> float:
    r""":math:`\mathrm{KL}(p\|q) = \int p\log(p/q)` by the grid rule, both normalised on the grid first.

    :func:`numerics.divergences.kl_cells` with cell ``dx``: ``math.inf`` if ``q`` vanishes where ``p`` does not.
    """
    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    return kl_cells(_check_density(p, g, "p"), _check_density(q, g, "q"), dx)


def tv_grid(p, q, grid) -> float:
    r"""Total variation :math:`\tfrac12\int|p-q|` by the grid rule (both normalised on the grid first)."""
    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    p, q = _check_density(p, g, "p"), _check_density(q, g, "q")
    return float(0.5 * np.sum(np.abs(_normalised(p, dx, "p") - _normalised(q, dx, "q"))) * dx)


def _normalised(p: np.ndarray, cell: float, name: str) -> np.ndarray:
    """``p / (sum(p) * cell)``: a density normalised on the grid; its mass must be finite and > 0 (ValueError
    naming ``name`` otherwise)."""
    with np.errstate(over="ignore"):  # an overflowing mass is refused below
        mass = p.sum() * cell
    if not (math.isfinite(mass) and mass > 0.0):
        raise ValueError(f"{name}: its mass on the grid must be finite and > 0, got {float(mass)!r}; rescale it")
    return p / mass


def refinement_error(run: Callable[[np.ndarray], np.ndarray], grid) -> float:
    """L1 distance between ``run(grid)`` and ``run(finer)`` on the grid, ``finer`` having half the spacing.

    ``run`` maps a grid to a density on it.  The finer result is compared at the common points.
    """
    g = as_float_array(grid, "grid", 1)
    dx = spacing(g)
    fine = np.linspace(g[0], g[-1], 2 * g.size - 1)
    a, b = _run_on(run, g), _run_on(run, fine)[::2]
    return _finite_distance(float(np.sum(np.abs(a - b)) * dx))


def _run_on(run: Callable, *grids: np.ndarray) -> np.ndarray:
    """``run(*grids)``: a finite density of shape ``(g.size for g in grids)`` (ValueError naming ``run`` otherwise,
    a failure of ``run`` kept as ``__cause__``)."""
    if not callable(run):
        raise ValueError(f"run: must be callable, got {type(run).__name__}")
    shape = tuple(g.size for g in grids)
    return check_array(_call_user(run, "run", f"on the {'x'.join(map(str, shape))} grid", *grids),
                       f"run (on the {'x'.join(map(str, shape))} grid)", shape)


def _finite_distance(value: float) -> float:
    """A refinement distance must be finite: the densities ``run`` returns are too large for float64 otherwise."""
    if not math.isfinite(value):
        raise ValueError("run: the L1 distance between its densities overflows float64; rescale them")
    return value


# --------------------------------------------------------------------------- two dimensions
#: Largest number of kernel entries (per coordinate factor) held at once by :func:`propagate_2d`.
BLOCK_ENTRIES = 2_000_000
#: Kernel factors (relative to their largest value) below this are set to zero by :func:`propagate_2d`.
FLUSH = 1e-150


def _grids_2d(grid1, grid2) -> tuple[np.ndarray, np.ndarray, float, float]:
    g1, g2 = as_float_array(grid1, "grid1", 1), as_float_array(grid2, "grid2", 1)
    return g1, g2, spacing(g1, "grid1"), spacing(g2, "grid2")


def _check_density_2d(p, g1, g2, name: str) -> np.ndarray:
    return check_density(p, name, 2, (g1.size, g2.size))


def gaussian_on_grid_2d(grid1, grid2, mean, cov) -> np.ndarray:
    """The :math:`N(\\text{mean}, \\text{cov})` density at the tensor grid points, shape ``(n1, n2)``.

    ``cov``: a positive scalar (isotropic) or a symmetric positive-definite ``(2, 2)`` matrix.
    """
    g1, g2 = as_float_array(grid1, "grid1", 1), as_float_array(grid2, "grid2", 1)
    m = as_float_array(mean, "mean", 1)
    if m.shape != (2,):
        raise ValueError(f"mean: expected shape (2,), got {m.shape}")
    c = as_float_array(cov, "cov", (0, 2))  # refuses ragged input before np.ndim looks at it
    scalar = np.ndim(cov) == 0  # (as_float_array makes a 0-d array 1-d)
    c = float(c.reshape(())) * np.eye(2) if scalar else c
    if c.shape != (2, 2) or abs(c[0, 1] - c[1, 0]) > 1e-12 * np.abs(c).max():
        raise ValueError(f"cov: must be a positive scalar or a symmetric (2, 2) matrix, got shape {c.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing determinant is refused below
        det = float(c[0, 0] * c[1, 1] - c[0, 1] * c[1, 0])
    if not (c[0, 0] > 0 and det > 0):
        raise ValueError("cov: must be positive definite")
    with np.errstate(over="ignore"):
        P = np.array([[c[1, 1], -c[0, 1]], [-c[1, 0], c[0, 0]]]) / det
    if not (np.isfinite(P).all() and math.isfinite(2 * math.pi * math.sqrt(det))):
        raise ValueError(f"cov: its inverse or determinant overflows float64 (det = {det:.3g}); rescale it")
    with np.errstate(over="ignore", invalid="ignore"):
        d1, d2 = (g1 - m[0])[:, None], (g2 - m[1])[None, :]
        q = P[0, 0] * d1 * d1 + 2 * P[0, 1] * d1 * d2 + P[1, 1] * d2 * d2
        out = np.exp(-0.5 * q) / (2 * math.pi * math.sqrt(det))
    if not np.isfinite(out).all():
        raise ValueError("mean: the quadratic form (x - mean)^T cov^-1 (x - mean) is not finite in float64 at some grid "
                         "points (grid and mean too far apart); rescale")
    return out


def _gauss_factor(g: np.ndarray, m: np.ndarray, sd: float, out: np.ndarray) -> None:
    """``out[x, a] = exp(-(g[a] - m[x])^2 / (2 sd^2))``, in place."""
    np.subtract(g[None, :], m[:, None], out=out)
    out *= 1.0 / sd
    np.square(out, out=out)
    out *= -0.5
    np.exp(out, out=out)


def propagate_2d(density0, grid1, grid2,
                 transition_mean_fn: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                 transition_var, steps: int) -> GridResult:
    r"""Push a 2-D density through ``steps`` isotropic Gaussian transitions :math:`x_{k+1}\sim N(m(x_k, k), v_k I_2)`.

    Since :math:`N(z; m(x), vI) = N(z_1; m_1(x), v)\,N(z_2; m_2(x), v)`, one step is
    :math:`P'[a, b] = \sum_x w(x) A[a, x] B[b, x] = (A\,\mathrm{diag}(w)\,B^\top)[a, b]` with
    :math:`w = P\Delta_1\Delta_2` the source masses, :math:`A[a, x] = N(z_{1,a}; m_1(x), v)` (``n1 x n1 n2``) and
    :math:`B[b, x] = N(z_{2,b}; m_2(x), v)` (``n2 x n1 n2``): two dense matrix products per step
    (:math:`O(n_1^2 n_2^2)` flops, i.e. :math:`O(n^4)` for ``n1 = n2 = n``, plus :math:`n_1 n_2 (n_1 + n_2)`
    exponentials; done by BLAS in blocks of source points of at most :data:`BLOCK_ENTRIES` kernel entries).  The quadrature is the same
    tensor trapezoid rule as :func:`propagate` (spectrally accurate; estimate it with :func:`refinement_error_2d`).

    Parameters
    ----------
    density0 : array_like, shape (n1, n2)
        Initial density at ``(grid1[a], grid2[b])`` (non-negative; need not be normalised).
    grid1, grid2 : array_like, shapes (n1,), (n2,)
        Uniform increasing grids of the two coordinates.
    transition_mean_fn : callable ``(X1, X2, k) -> (M1, M2)``
        ``X1, X2`` the ``(n1, n2)`` meshgrid (``indexing="ij"``); returns the two coordinates of the
        transition mean of step ``k`` at every grid point, each of shape ``(n1, n2)`` and finite.
    transition_var : float or callable ``k -> float``
        The per-coordinate transition variance :math:`v_k > 0` (the kernel is :math:`N(m, v_k I_2)`).
    steps : int >= 0

    Returns
    -------
    GridResult
        ``density`` (shape ``(n1, n2)``) after the last step, and ``escaped``: the accumulated mass the
        kernels put outside the box :math:`[g_1 \mp \Delta_1/2]\times[g_2\mp\Delta_2/2]`, bounded by the union
        bound over the coordinates (outside in coordinate 1 plus outside in coordinate 2, with ``erfc``), so it
        over-counts only the corners.
    """
    from scipy.special import ndtr

    g1, g2, dx1, dx2 = _grids_2d(grid1, grid2)
    p = _check_density_2d(density0, g1, g2, "density0").copy()
    steps = check_int(steps, "steps", 0)
    X1, X2 = np.meshgrid(g1, g2, indexing="ij")
    lo1, hi1 = g1[0] - 0.5 * dx1, g1[-1] + 0.5 * dx1
    lo2, hi2 = g2[0] - 0.5 * dx2, g2[-1] + 0.5 * dx2
    n1, n2 = g1.size, g2.size
    blk = min(n1 * n2, max(1, BLOCK_ENTRIES // max(n1, n2)))
    bufA, bufB = np.empty((blk, n1)), np.empty((blk, n2))
    bufM = np.empty((blk, max(n1, n2)), dtype=bool)
    escaped = 0.0
    _check_transition(transition_mean_fn, transition_var)
    for k in range(steps):
        v = _variance_at(transition_var, k)
        M1, M2 = _mean_pair(_call_user(transition_mean_fn, "transition_mean_fn", f"at step {k}", X1, X2, k), (n1, n2), k)
        sd = math.sqrt(v)
        c = 1.0 / (sd * math.sqrt(2 * math.pi))
        w, m1, m2 = (p * (dx1 * dx2)).ravel(), M1.ravel(), M2.ravel()
        out = ndtr((lo1 - m1) / sd) + ndtr((m1 - hi1) / sd) + ndtr((lo2 - m2) / sd) + ndtr((m2 - hi2) / sd)
        escaped += float(w @ out)
        # overflow (a far-away mean, huge masses) makes a non-finite density, refused below
        with np.errstate(over="ignore", invalid="ignore"):
            new = np.zeros((n1, n2))
            wmax = float(w.max()) * c * c
            for s in range(0, w.size, blk):
                sl = slice(s, s + blk)
                r = w[sl].size
                # stored transposed (sources x targets, C order): A^T and B^T; the product is A diag(w) B^T.
                # Computed in reused buffers: fresh large temporaries cost more (page faults) than the arithmetic.
                At, Bt, mask = bufA[:r], bufB[:r], bufM[:r, :n1]
                _gauss_factor(g1, m1[sl], sd, At)
                _gauss_factor(g2, m2[sl], sd, Bt)
                At *= (w[sl] * (c * c))[:, None]
                # entries below FLUSH x the largest change the result by < FLUSH relatively (far below rounding);
                # zeroing them keeps the products out of subnormal arithmetic, which is ~100x slower in BLAS
                np.less(At, FLUSH * wmax, out=mask)
                np.copyto(At, 0.0, where=mask)
                np.less(Bt, FLUSH, out=bufM[:r, :n2])
                np.copyto(Bt, 0.0, where=bufM[:r, :n2])
                new += At.T @ Bt
        p = new
        _check_propagated(p, escaped, k)
    return GridResult(p, escaped)


def _mean_pair(out, shape: tuple[int, int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(M1, M2)`` returned by :func:`propagate_2d`'s ``transition_mean_fn`` at step ``k``: two finite real arrays
    of ``shape`` (ValueError naming ``transition_mean_fn`` otherwise)."""
    name = f"transition_mean_fn (step {k})"
    try:
        M1, M2 = out
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: must return a pair (M1, M2) ({exc})") from None
    return check_array(M1, f"{name} M1", shape), check_array(M2, f"{name} M2", shape)


def kl_grid_2d(p, q, grid1, grid2) -> float:
    r""":math:`\mathrm{KL}(p\|q)` by the tensor grid rule, both normalised on the grid first (as :func:`kl_grid`).

    :func:`numerics.divergences.kl_cells` with cell ``dx1 * dx2``: ``math.inf`` if ``q`` vanishes where ``p`` does not.
    """
    g1, g2, dx1, dx2 = _grids_2d(grid1, grid2)
    return kl_cells(_check_density_2d(p, g1, g2, "p"), _check_density_2d(q, g1, g2, "q"), dx1 * dx2)


def tv_grid_2d(p, q, grid1, grid2) -> float:
    r"""Total variation :math:`\tfrac12\int|p-q|` by the tensor grid rule (both normalised on the grid first)."""
    g1, g2, dx1, dx2 = _grids_2d(grid1, grid2)
    p, q = _check_density_2d(p, g1, g2, "p"), _check_density_2d(q, g1, g2, "q")
    da = dx1 * dx2
    return float(0.5 * np.sum(np.abs(_normalised(p, da, "p") - _normalised(q, da, "q"))) * da)


def refinement_error_2d(run: Callable[[np.ndarray, np.ndarray], np.ndarray], grid1, grid2) -> float:
    """L1 distance between ``run(grid1, grid2)`` and ``run(fine1, fine2)`` on the coarse grid, both spacings halved.

    ``run`` maps a pair of grids to a density of shape ``(n1, n2)``; the finer result is compared at the
    common points (every other point in each coordinate), as in :func:`refinement_error`.
    """
    g1, g2, dx1, dx2 = _grids_2d(grid1, grid2)
    f1 = np.linspace(g1[0], g1[-1], 2 * g1.size - 1)
    f2 = np.linspace(g2[0], g2[-1], 2 * g2.size - 1)
    a, b = _run_on(run, g1, g2), _run_on(run, f1, f2)[::2, ::2]
    return _finite_distance(float(np.sum(np.abs(a - b)) * dx1 * dx2))

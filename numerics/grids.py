r"""Time grids for samplers, in OU forward time.

A grid is a strictly decreasing float64 array :math:`T = t_0 > t_1 > \dots > t_N = \delta > 0` of OU
forward times (:math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`); step :math:`k` goes
from :math:`t_k` to :math:`t_{k+1}` and has size :math:`h_k = t_k - t_{k+1}`.  ``N = len(grid) - 1``
steps.

Kinds
-----
``"uniform"``
    :math:`t_k = T - k(T-\delta)/n`.
``"logsnr"``
    uniform in the log-SNR :math:`\lambda_t = \log(\alpha_t^2/\sigma_t^2) = -\log(e^{2t}-1)`,
    :math:`t = \tfrac12\log(1 + e^{-\lambda})`.
``"geometric"``
    the support paper's ``generate_grid(0, T, delta, kappa)``: in sampler time
    :math:`\tau = T - t`, constant steps :math:`\kappa` on :math:`[0, T-1]`, then geometric steps
    :math:`\kappa/(1+\kappa)^m`, :math:`m = 1, 2, \dots` until :math:`\tau = T - \delta`, the last one
    clipped.  Equivalently, in forward time: :math:`t_k = T - k\kappa` for
    :math:`k \le n_c = \lfloor (T-1)/\kappa\rfloor`, then :math:`t_{k+1} = t_k/(1+\kappa)` (each tail
    step is :math:`\tfrac{\kappa}{1+\kappa}` times the remaining forward time) until
    :math:`t \le \delta`, where the grid is clipped to :math:`\delta`.  The forward-time form is
    computed directly (no accumulated sampler-time sums), so tiny ``delta`` keeps full relative
    accuracy.  For ``T=5, delta=1e-3``: 113 steps at ``kappa=0.1``, 26 at ``kappa=0.5``.
an array
    an explicit grid, validated and returned as float64.
"""
from __future__ import annotations

import math

import numpy as np

from numerics.schedule import logsnr_t, t_of_logsnr
from numerics.validate import check_int, check_positive, check_real, check_sorted

__all__ = ["time_grid", "logsnr", "logsnr_inverse", "validate_grid", "check_grid", "default_grid", "GRID_KINDS",
           "MAX_STEPS"]

GRID_KINDS = ("uniform", "logsnr", "geometric")
#: refuse to build grids longer than this (protects against kappa ~ 1e-300 and the like)
MAX_STEPS = 10_000_000
#: relative slack when deciding that (T - 1)/kappa is an integer (e.g. (3.3 - 1)/0.1 = 22.999999999999996)
_INT_SLACK = 1e-9


#: The OU log-SNR map and its inverse (one implementation, in :mod:`numerics.schedule`).
logsnr = logsnr_t
logsnr_inverse = t_of_logsnr


def _check_T_delta(T: object, delta: object) -> tuple[float, float]:
    T = check_positive(T, "T")
    delta = check_positive(delta, "delta")
    if delta >= T:
        raise ValueError(f"delta: must be < T (delta={delta!r}, T={T!r})")
    return T, delta


def validate_grid(grid: object, T: float | None = None, delta: float | None = None, name: str = "grid") -> np.ndarray:
    """Check that ``grid`` is a valid decreasing grid of forward times; return it as float64.

    Raises ``ValueError`` naming ``name`` if it is not 1-D with at least 2 points, not finite,
    not strictly decreasing, or leaves :math:`(0, T]` (and, if ``delta`` is given, goes below ``delta``).
    """
    arr = check_sorted(grid, name, decreasing=True)
    if arr[-1] <= 0:
        raise ValueError(f"{name}: leaves (0, T]: last time {float(arr[-1])!r} <= 0")
    if T is not None and arr[0] > T:
        raise ValueError(f"{name}: leaves (0, T]: first time {float(arr[0])!r} > T={T!r}")
    if delta is not None and arr[-1] < delta:
        raise ValueError(f"{name}: goes below delta: last time {float(arr[-1])!r} < delta={delta!r}")
    return arr


def default_grid() -> np.ndarray:
    """The support paper's grid: ``time_grid("geometric", T=5, delta=1e-3, kappa=0.1)`` (113 steps)."""
    return time_grid("geometric", T=5.0, delta=1e-3, kappa=0.1)


def check_grid(grid: object, name: str = "grid") -> np.ndarray:
    """A sampler's grid argument: ``None`` gives :func:`default_grid`; otherwise an explicit array of times,
    validated by :func:`validate_grid` (a kind name is refused: build the grid with :func:`time_grid`)."""
    if grid is None:
        return default_grid()
    if isinstance(grid, str):
        raise ValueError(f"{name}: must be an array of times (build one with time_grid({grid!r}, ...))")
    return validate_grid(grid, name=name)


def _uniform(T: float, delta: float, n: int) -> np.ndarray:
    g = np.linspace(T, delta, n + 1, dtype=np.float64)
    g[0], g[-1] = T, delta
    return g


def _logsnr_grid(T: float, delta: float, n: int) -> np.ndarray:
    lam = np.linspace(logsnr(T), logsnr(delta), n + 1, dtype=np.float64)
    g = logsnr_inverse(lam)
    g[0], g[-1] = T, delta
    return g


def _geometric_steps(T: float, delta: float, kappa: float) -> float:
    """Estimated step count of the geometric grid (as :func:`_geometric` bounds it), for ``delta < T``."""
    span = max(0.0, min(T - 1.0, T - delta))
    if not span / kappa <= MAX_STEPS:
        return math.inf
    n_c = math.floor(span / kappa)
    t_c = T - n_c * kappa
    return n_c + (math.log(max(t_c, delta) / delta) / math.log1p(kappa) if t_c > delta else 0.0) + 2


def _too_many_steps(T: float, delta: float, kappa: float, ratio: float):
    """Raise the error for a geometric grid of more than :data:`MAX_STEPS` steps.  It blames ``T`` when the
    constant phase alone, (T - 1)/kappa = ``ratio`` steps, is too long although ``kappa`` gives a short grid from
    the default T = 5 (T = 1e300 with kappa = 0.1); otherwise ``kappa`` (too small for any T)."""
    if ratio + 2 > MAX_STEPS and _geometric_steps(min(T, 5.0), min(delta, 1e-3), kappa) <= MAX_STEPS:
        raise ValueError(f"T: T={T!r} with kappa={kappa!r} needs about (T - 1)/kappa = {ratio:.3g} constant steps, "
                         f"more than {MAX_STEPS}; use a smaller T (OU time beyond ~40 is stationary in float64)")
    raise ValueError(f"kappa: {kappa!r} gives more than {MAX_STEPS} steps")


def _geometric(T: float, delta: float, kappa: float) -> np.ndarray:
    # constant phase: sampler time [0, min(T - 1, T - delta)], n_c = floor(.../kappa)
    span = max(0.0, min(T - 1.0, T - delta))
    ratio = span / kappa
    if not ratio <= MAX_STEPS:  # also ratio = inf (T = 1e300, kappa = 1e-10), before round() of it
        _too_many_steps(T, delta, kappa, ratio)
    n_c = int(round(ratio)) if abs(ratio - round(ratio)) <= _INT_SLACK * max(1.0, ratio) else int(math.floor(ratio))
    # number of tail steps from forward time t_c to delta: ceil(log(t_c/delta)/log1p(kappa))
    t_c = T - n_c * kappa
    n_tail_est = math.log(max(t_c, delta) / delta) / math.log1p(kappa) if t_c > delta else 0.0
    if n_c + n_tail_est + 2 > MAX_STEPS:
        _too_many_steps(T, delta, kappa, ratio)
    times = [T - k * kappa for k in range(n_c + 1)]
    times[0] = T
    if times[-1] <= delta * (1 + 1e-12):  # constant steps already reached delta
        times[-1] = delta
        return np.array(times, dtype=np.float64)
    tcur = times[-1]
    factor = 1.0 + kappa
    while tcur > delta:
        tcur = tcur / factor
        if tcur <= delta:
            tcur = delta
        times.append(tcur)
    return np.array(times, dtype=np.float64)


def time_grid(
    kind: str | np.ndarray,
    T: float | None = None,
    delta: float | None = None,
    n: int | None = None,
    kappa: float | None = None,
) -> np.ndarray:
    r"""A strictly decreasing float64 grid of OU forward times, first element ``T``, last ``delta``.

    Parameters
    ----------
    kind : {"uniform", "logsnr", "geometric"} or array_like
        Grid kind (see the module docstring), or an explicit grid to validate.
    T : float, optional
        Start (largest) forward time; default 5.0 for named kinds.  For an explicit grid, if
        given, every time must lie in :math:`(0, T]`.
    delta : float, optional
        Early-stopping time, :math:`0 < \delta < T`; default 1e-3 for named kinds.  For an
        explicit grid, if given, no time may be smaller.
    n : int, optional
        Number of steps (required for ``"uniform"`` and ``"logsnr"``).
    kappa : float, optional
        Step parameter of ``"geometric"`` (required there): constant steps :math:`\kappa`, then
        geometric steps :math:`\kappa/(1+\kappa)^m` in sampler time.

    Returns
    -------
    numpy.ndarray
        ``(N + 1,)`` float64, strictly decreasing, ``grid[0] == T``, ``grid[-1] == delta``.

    Raises
    ------
    ValueError
        Naming the offending argument: unknown ``kind``; ``grid`` not strictly decreasing, not
        finite or leaving :math:`(0, T]`; ``n`` < 1 or missing; ``kappa`` <= 0 or missing;
        ``delta`` <= 0 or >= ``T``; ``T`` <= 0.
    """
    if not isinstance(kind, str):
        Tv = None if T is None else check_real(T, "T")
        dv = None if delta is None else check_real(delta, "delta")
        if n is not None:
            raise ValueError("n: must not be given with an explicit grid")
        if kappa is not None:
            raise ValueError("kappa: must not be given with an explicit grid")
        return validate_grid(kind, Tv, dv, name="grid")
    if kind not in GRID_KINDS:
        raise ValueError(f"kind: must be one of {', '.join(GRID_KINDS)} or an array, got {kind!r}")
    T, delta = _check_T_delta(5.0 if T is None else T, 1e-3 if delta is None else delta)
    if kind in ("uniform", "logsnr"):
        if kappa is not None:
            raise ValueError(f"kappa: is not used by kind {kind!r}; give n")
        if n is None:
            raise ValueError(f"n: is required (number of steps) for kind {kind!r}")
        n = check_int(n, "n", 1, MAX_STEPS)
        grid = _uniform(T, delta, n) if kind == "uniform" else _logsnr_grid(T, delta, n)
    else:
        if n is not None:
            raise ValueError("n: is not used by kind 'geometric'; give kappa")
        if kappa is None:
            raise ValueError("kappa: is required for kind 'geometric'")
        grid = _geometric(T, delta, check_positive(kappa, "kappa"))
    # rounding can merge neighbouring points of very fine grids: refuse rather than return a bad grid
    if not np.all(np.diff(grid) < 0):
        arg = "kappa" if kind == "geometric" else "n"
        raise ValueError(f"{arg}: too fine for T={T!r}, delta={delta!r}: grid points coincide in float64")
    return grid

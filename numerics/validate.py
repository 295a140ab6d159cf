"""Input validation shared by every public numerics function.

Every check raises :class:`ValueError` whose message starts with the argument's name, so a user
never sees a Numba typing error or a silent NaN for malformed input.
"""
from __future__ import annotations

import numbers

import numpy as np

#: Tolerance on ``|sum(weights) - 1|``.
WEIGHT_SUM_TOL = 1e-9


def as_float_array(value, name: str, ndim: int | tuple[int, ...], check_finite: bool = True) -> np.ndarray:
    """Convert ``value`` to a C-contiguous float64 array of the given dimension(s), all finite.

    ``check_finite=False`` skips the finiteness pass, for callers whose kernel detects non-finite input itself.
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists etc.
        raise ValueError(f"{name}: cannot be converted to an array ({exc})") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name}: must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: must be real, got complex values")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in dims:
        raise ValueError(f"{name}: expected {' or '.join(map(str, dims))}-D array, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if check_finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def check_time(t, name: str = "t") -> float:
    """A forward time: a finite real number ``> 0``."""
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, (numbers.Real, np.floating, np.integer)):
        arr = np.asarray(t)
        if arr.ndim == 0 and np.issubdtype(arr.dtype, np.number) and not np.iscomplexobj(arr):
            t = arr.item()
        else:
            raise ValueError(f"{name}: must be a real scalar, got {type(t).__name__}")
    t = float(t)
    if not np.isfinite(t) or t <= 0.0:
        raise ValueError(f"{name}: must be finite and > 0, got {t!r}")
    return t


def check_points(x, d: int, name: str = "x", check_finite: bool = True) -> tuple[np.ndarray, bool]:
    """Points ``(N, d)`` (or one point ``(d,)``), finite float64; returns the 2-D array and whether it was 1-D."""
    arr = as_float_array(x, name, (1, 2), check_finite)
    single = arr.ndim == 1
    if single:
        arr = arr[None, :]
    if arr.shape[1] != d:
        raise ValueError(f"{name}: last dimension must be d={d}, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: needs at least one point, got shape {arr.shape}")
    return arr, single


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An integer (Python or NumPy, not bool) within ``[low, high]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name}: must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name}: must be <= {high}, got {value}")
    return value


def check_nonneg_scalar(value, name: str) -> float:
    """A finite real scalar ``>= 0`` (a guidance weight, for instance)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name}: must be a real scalar, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")
    return value


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """A finite real number ``> 0`` (or ``>= 0`` with ``allow_zero``)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a real number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name}: must be finite and {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v

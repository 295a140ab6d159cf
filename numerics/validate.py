"""Input validation shared by every public numerics function.

Every check raises :class:`ValueError` whose message starts with the argument's name (``"name: ..."``),
so a user never sees a Numba typing error or a silent NaN for malformed input.  The checks are generic
(a positive integer, a finite real, a label in range, a finite array of a shape, a monotone sequence,
a choice among names ...); paper-specific rules are built from them in the paper's own module.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = ["WEIGHT_SUM_TOL", "as_float_array", "check_array", "check_bool", "check_choice", "check_density", "check_int",
           "check_label", "check_labels", "check_nonneg_scalar", "check_points", "check_positive", "check_real",
           "check_real_values", "check_rng", "check_seed", "check_sorted", "check_time", "check_time_values", "check_times", "check_weights"]

#: Tolerance on ``|sum(weights) - 1|``.
WEIGHT_SUM_TOL = 1e-9


def as_float_array(value, name: str, ndim: int | tuple[int, ...], check_finite: bool = True) -> np.ndarray:
    """Convert ``value`` to a C-contiguous, writeable float64 array of the given dimension(s), all finite.

    ``check_finite=False`` skips the finiteness pass, for callers whose kernel detects non-finite input itself.
    A read-only array is copied: Numba types it apart from a writeable one, so passing it on would compile a
    second specialisation of every kernel it reaches (the reference mixture kernels: about 16 s from an empty
    cache, measured 2026-12-06).
    """
    dims = (ndim,) if isinstance(ndim, int) else ndim
    ready = (type(value) is np.ndarray and value.dtype is _FLOAT64 and value.flags.c_contiguous
             and value.flags.writeable)  # already what the conversion returns (the samplers' per-step calls)
    arr = value if ready else _converted(value, name)
    if arr.ndim not in dims:
        raise ValueError(f"{name}: expected {' or '.join(map(str, dims))}-D array, got shape {arr.shape}")
    if not ready:
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if not arr.flags.writeable:
            arr = arr.copy()
    if check_finite and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


#: The float64 dtype instance NumPy gives every float64 array it creates (:func:`as_float_array` tests identity: an
#: equal dtype of another instance takes the general path, to the same result).
_FLOAT64 = np.dtype(np.float64)


def _converted(value, name: str) -> np.ndarray:
    """``np.asarray(value)`` if it is a real numeric (or bool) array, else the ValueError naming ``name``."""
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
    return arr


def _real_numbers(value, name: str, what: str) -> None:
    """Refuse what ``np.array(value, dtype=float64)`` would quietly convert: strings (``"1.5"`` parsed),
    complex numbers (imaginary part dropped) and other non-numeric objects.  ``what`` describes the
    expected value for the message."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name}: must be {what}, got a string {value!r}")
    try:
        arr = np.asarray(value)
    except Exception:  # ragged lists etc.: left to the caller's conversion, which reports them
        return
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: must be {what}, got complex values")
    if arr.dtype.kind in "USO" or not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        if arr.dtype == object and all(
                isinstance(v, (numbers.Real, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_))
                for v in arr.ravel().tolist()):
            return  # a list of real Python/NumPy scalars of mixed types
        raise ValueError(f"{name}: must be {what}, got dtype {arr.dtype}")


def _real_scalar(value, name: str) -> float:
    """A real number (Python or NumPy scalar, or a 0-d numeric array; not bool, str or complex) as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        try:
            arr = np.asarray(value) if not isinstance(value, (str, bytes, bool, np.bool_)) else None
        except (TypeError, ValueError):  # ragged nested lists: not a number either
            arr = None
        if (arr is not None and arr.ndim == 0 and np.issubdtype(arr.dtype, np.number)
                and not np.iscomplexobj(arr)):
            return float(arr.item())
        raise ValueError(f"{name}: must be a real number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float64
        raise ValueError(f"{name}: must be a real number within float64 range, got an integer of "
                         f"{int(value).bit_length()} bits") from None


def check_real(value, name: str, finite: bool = True) -> float:
    """A real number (Python or NumPy scalar, or a 0-d numeric array; not bool, str or complex) as a float,
    finite unless ``finite=False`` (then NaN and infinities are returned as they are)."""
    v = _real_scalar(value, name)
    if finite and not np.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    return v


def check_time(t, name: str = "t") -> float:
    """A forward time: a finite real number ``> 0``."""
    return check_positive(t, name)


def check_real_values(value, name: str) -> np.ndarray:
    """Real, finite numbers of any shape (a scalar gives a 0-d array), as a float64 array."""
    _real_numbers(value, name, "a real number or an array of real numbers")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be converted to an array of real numbers ({exc})") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def check_time_values(t, name: str = "t", allow_zero: bool = True, upper: float | None = None) -> np.ndarray:
    """Forward times of any shape (a scalar gives a 0-d array): real, finite, ``>= 0`` (``> 0`` with
    ``allow_zero=False``) and, if given, ``<= upper``; returned as a float64 array."""
    arr = check_real_values(t, name)
    low = float(arr.min()) if arr.size else 0.0
    if low < 0.0 or (not allow_zero and low <= 0.0):
        raise ValueError(f"{name}: must be {'>=' if allow_zero else '>'} 0, got min {low!r}")
    if upper is not None and arr.size and float(arr.max()) > upper:
        raise ValueError(f"{name}: must be <= {upper:g}, got max {float(arr.max())!r}")
    return arr


def check_times(t, n: int, name: str = "t") -> float | np.ndarray:
    """One forward time for all ``n`` points (a finite real ``> 0``, returned as float) or one per point
    (shape ``(n,)``, each finite and ``> 0``, returned as a float64 array)."""
    if not (isinstance(t, (list, tuple)) or (isinstance(t, np.ndarray) and t.ndim > 0)):
        return check_time(t, name)
    arr = as_float_array(t, name, 1)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected a scalar or {n} times (one per point), got shape {arr.shape}")
    if np.any(arr <= 0.0):
        raise ValueError(f"{name}: must be > 0, got min {float(arr.min())!r}")
    return arr


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


def check_array(value, name: str, shape: tuple[int | None, ...], check_finite: bool = True) -> np.ndarray:
    """A float64 array (a copy) of the given shape (``None``: any size >= 1 on that axis), all finite.
    Strings and complex numbers are refused, not converted."""
    _real_numbers(value, name, f"a real float array of shape {_shape_str(shape)}")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: must be a float array of shape {_shape_str(shape)}: {exc}") from None
    if arr.ndim != len(shape) or any(
            (s is None and a < 1) or (s is not None and a != s) for a, s in zip(arr.shape, shape)):
        raise ValueError(f"{name}: must have shape {_shape_str(shape)}, got {arr.shape}")
    if check_finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _shape_str(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("N" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


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
    return check_positive(value, name, allow_zero=True)


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """A finite real number ``> 0`` (or ``>= 0`` with ``allow_zero``)."""
    v = _real_scalar(value, name)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name}: must be finite and {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


def check_bool(value, name: str) -> bool:
    """``True`` or ``False`` (Python or NumPy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: must be True or False, got {value!r}")
    return bool(value)


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """One of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_label(y, n_classes: int | None, name: str = "y") -> int:
    """A class label: an integer (not bool) in ``0..n_classes-1`` (``n_classes=None``: any integer >= 0)."""
    if isinstance(y, (bool, np.bool_)) or not isinstance(y, (numbers.Integral, np.integer)):
        raise ValueError(f"{name}: must be an integer class, got {y!r}")
    y = int(y)
    if y < 0 or (n_classes is not None and y >= n_classes):
        where = "an integer >= 0" if n_classes is None else f"an existing class in 0..{n_classes - 1}"
        raise ValueError(f"{name}: must be {where}, got {y}")
    return y


def check_labels(labels, K: int, name: str = "labels") -> tuple[np.ndarray, int]:
    """``K`` class labels covering ``0..C-1`` (integers, or floats with integer values); returns ``(int64 array, C)``."""
    try:
        lab = np.asarray(labels)
    except ValueError:  # a ragged list
        raise ValueError(f"{name}: expected shape ({K},), got a ragged sequence") from None
    if lab.shape != (K,):
        raise ValueError(f"{name}: expected shape ({K},), got {lab.shape}")
    if lab.dtype == bool or not (np.issubdtype(lab.dtype, np.integer) or np.issubdtype(lab.dtype, np.floating)):
        raise ValueError(f"{name}: must be integers, got dtype {lab.dtype}")
    if np.issubdtype(lab.dtype, np.floating) and not np.all(np.isfinite(lab) & (lab == np.round(lab))):
        raise ValueError(f"{name}: must be integers")
    # K labels can cover at most 0..K-1: bound them before any conversion or per-label allocation (a label
    # of 2**62 must not build a set of 2**62 integers)
    if K and (lab.min() < 0 or lab.max() >= K):
        bad = lab.min() if lab.min() < 0 else lab.max()
        raise ValueError(f"{name}: must be integers covering 0..C-1 (each in 0..{K - 1} for {K} components), "
                         f"got {bad.item()!r}")
    lab = lab.astype(np.int64)
    C = int(lab.max()) + 1 if K else 0
    present = np.unique(lab)
    if present.size != C:  # sizes O(K): present is a subset of 0..C-1, so equal sizes mean it covers them
        raise ValueError(f"{name}: must be integers covering 0..C-1, got {present.tolist()}")
    return lab, C


def check_weights(weights, name: str = "weights", K: int | None = None) -> np.ndarray:
    """Mixture weights: a non-empty 1-D finite array (of ``K`` entries if given), non-negative, summing to 1
    within :data:`WEIGHT_SUM_TOL`; returned renormalised, ``w / w.sum()``."""
    w = as_float_array(weights, name, 1)
    if w.shape[0] == 0:
        raise ValueError(f"{name}: need at least one component")
    if K is not None and w.shape[0] != K:
        raise ValueError(f"{name}: need {K} entries (one per component), got {w.shape[0]}")
    if np.any(w < 0):
        raise ValueError(f"{name}: must be non-negative, got min {w.min():.3g}")
    if abs(w.sum() - 1.0) > WEIGHT_SUM_TOL:
        raise ValueError(f"{name}: must sum to 1 (within {WEIGHT_SUM_TOL:g}), got {w.sum():.17g}")
    return w / w.sum()


def check_sorted(values, name: str, decreasing: bool = False, min_size: int = 2) -> np.ndarray:
    """A 1-D finite float64 array (a copy) of at least ``min_size`` entries, strictly increasing (or decreasing).
    Strings and complex numbers are refused, not converted."""
    _real_numbers(values, name, "a 1-D array of real numbers")
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: must be a 1-D array of floats: {exc}") from None
    if arr.ndim != 1 or arr.size < min_size:
        raise ValueError(f"{name}: must be a 1-D array with at least {min_size} entries, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite (found NaN or inf)")
    step = -np.diff(arr) if decreasing else np.diff(arr)
    if not np.all(step > 0):
        k = int(np.argmax(step <= 0))
        op = "<=" if decreasing else ">="
        raise ValueError(f"{name}: must be strictly {'decreasing' if decreasing else 'increasing'} "
                         f"({name}[{k}]={float(arr[k])!r} {op} {name}[{k + 1}]={float(arr[k + 1])!r})")
    return arr


def check_density(value, name: str, ndim: int | tuple[int, ...], shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Density values on a grid: a finite float64 array (no copy if already one) of the given dimension(s), of
    ``shape`` if given, all ``>= 0``."""
    arr = as_float_array(value, name, ndim)
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    if np.any(arr < 0):
        raise ValueError(f"{name}: must be non-negative")
    return arr


def check_seed(seed, name: str = "seed") -> np.random.Generator:
    """A random generator from ``seed``: ``None``, a non-negative integer (not bool), a sequence of them, a
    ``np.random.SeedSequence``, ``BitGenerator`` or ``Generator`` (all as ``np.random.default_rng`` takes
    them); anything else (a float, a string, a negative integer) is refused naming ``name``."""
    if isinstance(seed, (bool, np.bool_, str, bytes, float, complex, np.floating, np.complexfloating)):
        raise ValueError(f"{name}: must be None, a non-negative integer, a SeedSequence or a Generator, got {seed!r}")
    if isinstance(seed, (numbers.Integral, np.integer)) and int(seed) < 0:
        raise ValueError(f"{name}: must be a non-negative integer, got {int(seed)}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: must be None, a non-negative integer, a SeedSequence or a Generator, "
                         f"got {seed!r} ({exc})") from None


def check_rng(rng, name: str = "rng") -> np.random.Generator:
    """A ``np.random.Generator`` (used as it is, so the caller's stream advances)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{name}: must be a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")
    return rng

r"""Input checks of the symbolic layer: numbers and SymPy objects only, never strings.

SymPy's ``sympify`` (and everything that calls it non-strictly: ``Matrix(...)`` entries, ``expr.subs(old, new)``)
*parses and evaluates* a string, so a crafted string runs arbitrary code.  Every public constructor and
function of :mod:`theory` that takes a number therefore goes through :func:`as_scalar`, which accepts

* a SymPy expression (``sympy.Expr``, not a Boolean or a matrix),
* a real Python or NumPy number (``int``, ``float``, ``fractions.Fraction``, ``decimal.Decimal``,
  ``numpy.float64``, ...), converted with ``sympify(value, strict=True)`` -- the same object the old
  non-strict ``sympify`` returned (a float becomes the ``Float`` of the same double),

and rejects ``str``/``bytes`` and every other type with a ``TypeError`` naming the argument, ``bool`` (a
``TypeError``: it is an ``int`` to Python but never meant as a number), and NaN or infinite values (a
``ValueError``).  Nothing here ever parses text.
"""
from __future__ import annotations

import math
import numbers
from decimal import Decimal

import sympy as sp

__all__ = ["as_scalar", "as_entries", "as_matrix", "as_expr_or_matrix", "check_schedule", "check_int",
           "reject_text", "WEIGHT_SUM_TOL"]

#: Tolerance on ``|sum(weights) - 1|`` when the weights are floats (exact for rationals); as in ``numerics``.
WEIGHT_SUM_TOL = 1e-9

_TEXT = (str, bytes, bytearray)
_NON_FINITE = (sp.nan, sp.oo, -sp.oo, sp.zoo)


def reject_text(value, name: str) -> None:
    """``TypeError`` if ``value`` is a string (or bytes): theory never evaluates text."""
    if isinstance(value, _TEXT):
        raise TypeError(f"{name}: a string is not accepted (numbers and SymPy expressions only), got {value!r:.60}")


def _is_array(value) -> bool:
    return hasattr(value, "ndim") and hasattr(value, "shape") and hasattr(value, "dtype")


def as_scalar(value, name: str) -> sp.Expr:
    """A SymPy scalar from a SymPy expression or a real number (see the module docstring)."""
    reject_text(value, name)
    if _is_array(value) and getattr(value, "ndim", None) == 0:  # 0-d NumPy array: its scalar
        value = value[()]
        reject_text(value, name)
    if isinstance(value, sp.Basic):
        if not isinstance(value, sp.Expr) or isinstance(value, sp.MatrixBase):
            raise TypeError(f"{name}: must be a number or a SymPy expression, got {type(value).__name__} {value!r:.60}")
        if value in _NON_FINITE or value.has(*_NON_FINITE):
            raise ValueError(f"{name}: must be finite, got {value}")
        return value
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        raise TypeError(f"{name}: must be a number or a SymPy expression, got bool {value!r}")
    if isinstance(value, (numbers.Real, Decimal)):
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        if not finite:
            raise ValueError(f"{name}: must be finite, got {value!r}")
        return sp.sympify(value, strict=True)
    raise TypeError(f"{name}: must be a real number or a SymPy expression, got {type(value).__name__} {value!r:.60}")


def as_entries(value, name: str):
    """A nested list (lists, tuples, NumPy arrays, SymPy matrices) with every scalar through :func:`as_scalar`."""
    reject_text(value, name)
    if isinstance(value, sp.MatrixBase):
        return [[as_scalar(value[i, j], f"{name}[{i}, {j}]") for j in range(value.cols)] for i in range(value.rows)]
    if isinstance(value, (list, tuple)) or (_is_array(value) and value.ndim > 0):
        return [as_entries(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return as_scalar(value, name)


def as_matrix(value, name: str) -> sp.Matrix:
    """``sympy.Matrix`` of checked entries (same shape rules as ``Matrix(value)``), never built from text."""
    entries = as_entries(value, name)
    if isinstance(value, sp.MatrixBase):
        return sp.Matrix(entries) if entries else sp.Matrix(value.rows, value.cols, [])
    if not isinstance(entries, list):
        raise TypeError(f"{name}: must be a list, array or Matrix, got {type(value).__name__}")
    try:
        return sp.Matrix(entries)
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{name}: not a matrix ({exc})") from None


def as_expr_or_matrix(value, name: str):
    """A SymPy expression or matrix (returned as is), or a number (through :func:`as_scalar`)."""
    if isinstance(value, sp.MatrixBase):
        return value
    return as_scalar(value, name)


def check_schedule(schedule, name: str = "schedule"):
    """``TypeError`` unless ``schedule`` is a :class:`theory.forward.VPSchedule`."""
    from theory.forward import VPSchedule

    if not isinstance(schedule, VPSchedule):
        raise TypeError(f"{name}: must be a VPSchedule, got {type(schedule).__name__}")
    return schedule


def check_int(value, name: str, low: int | None = None) -> int:
    """A Python/NumPy/SymPy integer (not a bool, not a float), at least ``low`` if given."""
    reject_text(value, name)
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_") or not isinstance(value, (numbers.Integral, sp.Integer)):
        raise TypeError(f"{name}: must be an integer, got {type(value).__name__} {value!r:.60}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name}: must be >= {low}, got {value}")
    return value


def is_negative(expr: sp.Expr) -> bool:
    """True only when SymPy can decide that ``expr`` is negative (or, for a number, not real)."""
    if not expr.free_symbols and expr.is_number:
        if expr.is_extended_real is False:
            return True
    return bool(expr.is_extended_negative)

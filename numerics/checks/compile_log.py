r"""Which Numba functions a claim compiled, and for how long.

From an empty Numba cache a run pays for compiling every kernel it uses; from a warm cache it only loads
them.  :func:`record_compiles` listens to Numba's ``numba:compile`` event (fired around a real compilation,
not around a load from the on-disk cache) while a claim runs, and keeps one :class:`Compiled` entry per
compilation: the function's qualified name, the signature and the *exclusive* time,

.. math::
    t_{\rm excl}(f) = t_{\rm end}(f) - t_{\rm start}(f) - \sum_{g \text{ compiled inside } f}
                      \bigl(t_{\rm end}(g) - t_{\rm start}(g)\bigr),

so that a kernel that compiles its callees is not charged for them, and the entries of one call add up
to the time spent compiling (to the timer's resolution).  Loading a callee from the cache while its caller
compiles is charged to the caller.

The runner wraps each call of a claim (stated run and each control) in it; the report gives every claim's
total and its costliest functions (``compile_s``, ``compiled``).  Nothing is recorded unless Numba is
already imported when the call starts (the paper modules import it when they are loaded), so the harness
itself never imports Numba.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator

__all__ = ["Compiled", "record_compiles", "merge_compiled"]


@dataclass(frozen=True)
class Compiled:
    """One compilation: ``function`` (``module.qualname``), ``signature`` (argument types) and
    ``seconds`` (exclusive of the functions compiled inside it)."""

    function: str
    signature: str
    seconds: float


def _name(dispatcher: Any) -> str:
    func = getattr(dispatcher, "py_func", None)
    if func is None:
        return repr(dispatcher)
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func.__name__)}"


def _listener_class() -> type:
    from numba.core import event

    class _Recorder(event.Listener):
        """Keeps a stack of (start, time of nested compilations) and appends a :class:`Compiled` at each end."""

        def __init__(self, out: list[Compiled]) -> None:
            self.out = out
            self.stack: list[list[float]] = []

        def on_start(self, ev: Any) -> None:
            self.stack.append([time.perf_counter(), 0.0])

        def on_end(self, ev: Any) -> None:
            if not self.stack:  # an event that started before we listened
                return
            start, nested = self.stack.pop()
            total = time.perf_counter() - start
            if self.stack:
                self.stack[-1][1] += total
            data = ev.data or {}
            args = data.get("args", ())
            self.out.append(Compiled(_name(data.get("dispatcher")), f"({', '.join(map(str, args))})",
                                     max(total - nested, 0.0)))

    return _Recorder


@contextlib.contextmanager
def record_compiles() -> Iterator[list[Compiled]]:
    """Collect the Numba compilations made inside the block into the yielded list (empty when Numba is
    not imported yet)."""
    out: list[Compiled] = []
    if "numba" not in sys.modules:
        yield out
        return
    from numba.core import event

    with event.install_listener("numba:compile", _listener_class()(out)):
        yield out


def merge_compiled(entries: list[Compiled]) -> list[dict[str, Any]]:
    """Sum the entries by function (all signatures together), costliest first:
    ``[{"function", "signatures", "s"}, ...]``."""
    by_name: dict[str, list[Any]] = {}
    for e in entries:
        row = by_name.setdefault(e.function, [0, 0.0])
        row[0] += 1
        row[1] += e.seconds
    rows = [{"function": f, "signatures": n, "s": s} for f, (n, s) in by_name.items()]
    return sorted(rows, key=lambda r: -r["s"])

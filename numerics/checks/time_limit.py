"""A time limit on one run of a claim (``guidance-verify run --task-timeout SECONDS``).

:func:`time_limit` raises :class:`TaskTimeout` inside the code it guards once the limit has passed:

* in the main thread (a serial run) by ``SIGALRM`` (``signal.setitimer``), which also interrupts a
  ``time.sleep`` or a blocking system call;
* in any other thread (a Dask worker runs its tasks in a thread pool) by an asynchronous exception
  (``PyThreadState_SetAsyncExc``), delivered at the next Python bytecode.

Neither can stop code that never returns to Python (a Numba loop that does not end): a serial run then
waits for it; a Dask run restarts the worker once the limit and a grace period have passed
(:mod:`numerics.checks.dask_runner`).

:class:`TaskTimeout` derives from ``BaseException`` so that a claim's own ``except Exception`` cannot
swallow it.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import signal
import threading
from typing import Iterator

__all__ = ["TaskTimeout", "check_timeout", "time_limit"]


class TaskTimeout(BaseException):
    """One run of a claim exceeded its time limit (``--task-timeout``)."""


def check_timeout(seconds: object, name: str = "task_timeout") -> float | None:
    """``None`` (no limit) or a finite number of seconds > 0; anything else is a ValueError naming ``name``."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{name}: expected a number of seconds, got {seconds!r}")
    value = float(seconds)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number of seconds > 0, got {seconds!r}")
    return value


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TaskTimeout` in the guarded block once ``seconds`` have passed (``None``: no limit)."""
    seconds = check_timeout(seconds, "seconds")
    if seconds is None:
        yield
    elif threading.current_thread() is threading.main_thread():
        with _alarm(seconds):
            yield
    else:
        with _async_exception(seconds):
            yield


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def _raise(signum, frame):
        raise TaskTimeout(f"exceeded {seconds:g} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def _async_exception(seconds: float) -> Iterator[None]:
    tid = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"open": True, "fired": False}

    def fire() -> None:
        with lock:
            if state["open"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, ctypes.py_object(TaskTimeout))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["open"] = False
            if state["fired"]:  # clear an exception not yet delivered (the block ended meanwhile)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, None)
        timer.cancel()

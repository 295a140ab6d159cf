r"""Independent pure-Python reference computations (mpmath oracles) on several processes.

mpmath holds the GIL, so threads do not help it; :func:`process_map` gives each of up to ``workers`` processes
(default: Numba's thread budget, ``numba.get_num_threads()``, the cores a serial run may use) a share of the jobs
and returns their results in the jobs' order:

.. math::
    \mathrm{process\_map}(f, [a_1, \dots, a_n]) = [f(*a_1), \dots, f(*a_n)].

The values are those of the serial loop (each job is computed by the same function from the same arguments,
pickled both ways: NumPy arrays and floats exactly).  It runs the loop in this process instead when fewer than
two workers or jobs are asked for, or when this process may not have children (a daemonic process, such as a
multiprocessing worker).  The pool uses the ``spawn`` start (no fork of a process that holds Numba or Dask
threads; a child imports what ``f`` needs, about a second), its processes ignore SIGINT (Ctrl-C reaches the
whole process group; the caller decides), and any exception in this process while it waits (Ctrl-C, a run's
time limit) terminates them before it propagates.  An exception raised by a job propagates as in the loop; a
pool that breaks (a child killed) is left and the jobs it did not finish run here.
"""
from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from typing import Any, Callable, Sequence

import numba

from numerics.validate import check_int

__all__ = ["process_map"]


def _may_have_children() -> bool:
    return not multiprocessing.current_process().daemon


def process_map(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int | None = None) -> list:
    """``[fn(*job) for job in jobs]``, computed by up to ``workers`` processes (see the module docstring).

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled by name), deterministic in its arguments.
    jobs : sequence of tuples
        The positional arguments of each call (picklable).
    workers : int, optional
        Most processes to use (default ``numba.get_num_threads()``); 1 runs the loop here.

    Raises
    ------
    ValueError
        ``workers`` below 1.
    """
    jobs = [tuple(j) for j in jobs]
    workers = numba.get_num_threads() if workers is None else check_int(workers, "workers", 1)
    workers = min(workers, len(jobs))
    if workers < 2 or not _may_have_children():
        return [fn(*j) for j in jobs]
    ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=signal.signal,
                             initargs=(signal.SIGINT, signal.SIG_IGN))
    futures = [ex.submit(fn, *j) for j in jobs]
    out: list = []
    try:
        for j, fut in zip(jobs, futures):
            try:
                out.append(fut.result())
            except BrokenExecutor:
                out.append(fn(*j))
    except BaseException:
        procs = getattr(ex, "_processes", None) or {}    # no public way to stop a busy child
        for proc in list(procs.values()):
            proc.terminate()
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    return out

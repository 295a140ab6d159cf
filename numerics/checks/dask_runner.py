"""Run claims on a Dask cluster: one task per (claim, seed, control) run, merged in serial order.

A claim at one seed is a stated run followed, if it passed, by one run per control; each run is a
Dask task (:func:`call`, the same function a serial run calls), so a claim with four controls uses
five workers at once. The client assembles the results exactly as the serial runner does (the same
:mod:`numerics.checks.runner` functions) and yields them in the serial order (claim by claim, seed
by seed), so the report equals a serial run's, measurement for measurement. A claim that did not
read the seed at the first seed is not submitted again for the other seeds (it cannot depend on
them), as in a serial ensemble.

Faults: a task whose worker dies is rerun by the scheduler on another worker (up to
``distributed.scheduler.allowed-failures`` times); a task that still fails, or whose result cannot be
brought back, becomes that run's ERROR with the reason, and the rest of the run goes on. Closing the
generator (Ctrl-C in the client) cancels what has not finished.

Workers of :func:`local_cluster` are single-threaded processes whose Numba and BLAS thread counts are
pinned to their share of the cores (environment variables set before the worker starts), so that N
workers never run more than the machine's cores.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterator, Sequence

from numerics.checks import runner as R
from numerics.checks.claim import Claim
from numerics.checks.results import ClaimResult

__all__ = ["call", "local_cluster", "results", "thread_env"]

#: Environment variables that set the thread pools of Numba and of the BLAS/OpenMP libraries.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_env(n_workers: int, cores: int | None = None) -> dict[str, str]:
    r"""The environment of each worker: every thread pool at :math:`\max(1, \lfloor c / N \rfloor)`.

    Parameters
    ----------
    n_workers : int
        Number of worker processes :math:`N` on this machine.
    cores : int, optional
        Cores :math:`c` to share (default: the cores this process may use).
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = str(max(1, cores // n_workers))
    return {name: share for name in THREAD_VARIABLES}


def local_cluster(n_workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker processes with their
    thread pools pinned (:func:`thread_env`); the caller closes it.  The dashboard binds a free port
    (``":0"``): ``dashboard_address=None`` does not disable it (dask/distributed#8136) and then warns
    whenever port 8787 is taken, e.g. by a second run side by side."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                        dashboard_address=":0", env=thread_env(n_workers))


def call(claim: Claim, profile: str, seed: int, control: str | None) -> R._Outcome:
    """One run of a claim (the task): :func:`numerics.checks.runner._call` on a worker."""
    return R._call(claim, profile, seed, control)


def _task_failed(exc: BaseException) -> R._Outcome:
    return R._Outcome(error=f"the Dask task failed: {type(exc).__name__}: {exc}")


@dataclasses.dataclass
class _Pending:
    """A claim at one seed whose control runs are out."""

    result: ClaimResult
    todo: list[tuple[str, str]]
    outs: dict[str, R._Outcome] = dataclasses.field(default_factory=dict)


def results(client: Any, claims: Sequence[Claim], seed_list: Sequence[int], profile: str,
            control: bool, on_start: Callable[[Claim, int, int], None] | None = None,
            ) -> Iterator[tuple[int, ClaimResult]]:
    """Run every claim at every seed on ``client``; yield (seed index, result) in serial order.

    Parameters
    ----------
    client : distributed.Client
    claims, seed_list, profile, control
        As for :func:`numerics.checks.runner.run_claims`.
    on_start : callable(claim, index, total), optional
        Called just before each result is yielded (progress display).
    """
    from distributed import as_completed

    n_seeds = len(seed_list)
    total = len(claims) * n_seeds
    keys: dict[str, tuple[int, int, str | None]] = {}
    futures: dict[str, Any] = {}
    pending: dict[tuple[int, int], _Pending] = {}
    ready: dict[tuple[int, int], ClaimResult] = {}
    done = as_completed([], with_results=True, raise_errors=False)

    def submit(ci: int, k: int, name: str | None) -> None:
        fut = client.submit(call, claims[ci], profile, seed_list[k], name, pure=False,
                            priority=-(ci * n_seeds + k))
        keys[fut.key], futures[fut.key] = (ci, k, name), fut
        done.add(fut)

    def finished(ci: int, k: int, result: ClaimResult) -> None:
        ready[(ci, k)] = result
        if k != 0:
            return
        for k2 in range(1, n_seeds):
            if result.used_seed or result.interrupted_by:
                submit(ci, k2, None)
            else:
                ready[(ci, k2)] = R._reused(result, seed_list[k2])

    def outcome_arrived(ci: int, k: int, name: str | None, out: R._Outcome) -> None:
        claim = claims[ci]
        if name is None:
            result = R._stated_result(claim, profile, seed_list[k], out)
            todo = R._controls_to_run(result, claim, control)
            if not todo:
                finished(ci, k, result)
                return
            pending[(ci, k)] = _Pending(result, todo)
            for cname, _ in todo:
                submit(ci, k, cname)
            return
        p = pending[(ci, k)]
        p.outs[name] = out
        if len(p.outs) == len(p.todo):
            del pending[(ci, k)]
            R._add_controls(p.result, ((n, d, p.outs[n]) for n, d in p.todo))
            finished(ci, k, p.result)

    for ci in range(len(claims)):
        submit(ci, 0, None)
    position = 0
    try:
        for fut, value in done:
            ci, k, name = keys.pop(fut.key)
            futures.pop(fut.key, None)
            out = value if isinstance(value, R._Outcome) else _task_failed(
                fut.exception() if fut.status == "error" else TypeError(f"returned {value!r:.200}"))
            outcome_arrived(ci, k, name, out)
            while position < total and divmod(position, n_seeds) in ready:
                ci2, k2 = divmod(position, n_seeds)
                if on_start is not None:
                    on_start(claims[ci2], position, total)
                position += 1
                yield k2, ready.pop((ci2, k2))
        if position < total:  # a harness bug, never a claim's failure: stop the run, say so
            raise RuntimeError(f"the Dask run ended with {total - position} of {total} results missing")
    finally:
        if futures:
            client.cancel(list(futures.values()))

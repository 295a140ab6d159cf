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
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from numerics.checks import runner as R
from numerics.checks.claim import Claim
from numerics.checks.results import ClaimResult

__all__ = ["START_TOPIC", "call", "grace_period", "local_cluster", "results", "sync_numba_threads", "thread_env"]

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


#: Topic of the event a task logs when it starts (its key and worker), from which the client times it.
START_TOPIC = "guidance-verify-task-start"


def grace_period(task_timeout: float) -> float:
    """Seconds past ``--task-timeout`` after which a task that has not returned (stuck in compiled code,
    where the in-task limit cannot reach) has its worker restarted: ``max(5, task_timeout / 4)``."""
    return max(5.0, task_timeout / 4)


def sync_numba_threads() -> None:
    """Run Numba's kernels on the worker's share of the cores without desynchronising Numba's pool.

    Numba reads ``NUMBA_NUM_THREADS`` when it is imported and sizes its thread pool from it.  A spawned
    worker re-imports the parent's ``__main__`` (``guidance-verify``'s script imports the package, hence
    Numba) *before* the Nanny sets the worker's environment (:func:`thread_env`), so Numba starts with the
    machine's core count :math:`c` while the environment says the share :math:`s`.  Numba re-reads the
    environment at every compilation and then refuses ("Cannot set NUMBA_NUM_THREADS to a different value
    once the threads have been launched"); re-reading the configuration by hand is worse: it sets
    ``numba.config.NUMBA_NUM_THREADS`` to :math:`s` while the pool still has :math:`c` threads, so
    ``numba.get_thread_id()`` exceeds the per-thread scratch sized from the configuration (heap corruption
    in the fast path, stop 30).  So: keep the environment equal to the count Numba started with (the
    configuration stays equal to the pool) and cap the threads a kernel uses at the share with
    ``numba.set_num_threads`` (per calling thread, hence at the start of every task).  A worker that has
    not imported Numba yet imports it with the share and needs nothing.
    """
    import sys

    global _numba_share
    numba = sys.modules.get("numba")
    if numba is None:
        return
    started = int(numba.config.NUMBA_NUM_THREADS)
    if _numba_share is None:  # the first task: the environment still holds the Nanny's share
        share = os.environ.get("NUMBA_NUM_THREADS", "")
        _numba_share = min(int(share), started) if share.isdigit() and int(share) >= 1 else started
        os.environ["NUMBA_NUM_THREADS"] = str(started)
    numba.set_num_threads(_numba_share)


#: The worker's Numba thread share, read from its environment by the first :func:`sync_numba_threads`.
_numba_share: int | None = None


def call(claim: Claim, profile: str, seed: int, control: str | None,
         task_timeout: float | None = None) -> R._Outcome:
    """One run of a claim (the task): :func:`numerics.checks.runner._call` on a worker, after
    :func:`sync_numba_threads`.  With a time limit it first logs :data:`START_TOPIC` so that the client
    can time it."""
    sync_numba_threads()
    if task_timeout is not None:
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(START_TOPIC, {"key": worker.get_current_task(), "worker": worker.address})
    return R._call(claim, profile, seed, control, task_timeout)


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
            task_timeout: float | None = None) -> Iterator[tuple[int, ClaimResult]]:
    """Run every claim at every seed on ``client``; yield (seed index, result) in serial order.

    Parameters
    ----------
    client : distributed.Client
    claims, seed_list, profile, control
        As for :func:`numerics.checks.runner.run_claims`.
    on_start : callable(claim, index, total), optional
        Called just before each result is yielded (progress display).
    task_timeout : float, optional
        Seconds one task may run: the task stops itself (:mod:`numerics.checks.time_limit`); one that
        has not returned :func:`grace_period` later is cancelled, its worker restarted, and the run
        becomes ERROR.
    """
    from distributed import as_completed

    n_seeds = len(seed_list)
    total = len(claims) * n_seeds
    keys: dict[str, tuple[int, int, str | None]] = {}
    futures: dict[str, Any] = {}
    pending: dict[tuple[int, int], _Pending] = {}
    ready: dict[tuple[int, int], ClaimResult] = {}
    done = as_completed([], with_results=True, raise_errors=False)

    started = _StartTimes(client) if task_timeout is not None else None

    def submit(ci: int, k: int, name: str | None) -> None:
        fut = client.submit(call, claims[ci], profile, seed_list[k], name, task_timeout, pure=False,
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
        while not done.is_empty():
            batch = done.next_batch(block=started is None)
            if started is not None and not batch:
                for key, worker in started.overdue(task_timeout + grace_period(task_timeout), keys):
                    ci, k, name = keys.pop(key)
                    client.cancel([futures.pop(key)])
                    _restart(client, worker)
                    how = f"stopped by restarting its worker (still running {grace_period(task_timeout):g} s later)"
                    batch.append((None, (ci, k, name, R._Outcome(error=R.timeout_error(task_timeout, how)))))
                if not batch:
                    time.sleep(0.1)
            for fut, value in batch:
                if fut is not None:
                    if fut.key not in keys:  # cancelled after its time limit: already reported
                        continue
                    ci, k, name = keys.pop(fut.key)
                    futures.pop(fut.key, None)
                    out = value if isinstance(value, R._Outcome) else _task_failed(
                        fut.exception() if fut.status == "error" else TypeError(f"returned {value!r:.200}"))
                else:
                    ci, k, name, out = value
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
        if started is not None:
            started.close()


class _StartTimes:
    """When each task started (on the client's clock, from the :data:`START_TOPIC` events) and where."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.start: dict[str, tuple[float, str]] = {}
        client.subscribe_topic(START_TOPIC, self._event)

    def _event(self, event: Any) -> None:
        _, msg = event
        with self.lock:
            self.start[msg["key"]] = (time.monotonic(), msg["worker"])

    def overdue(self, limit: float, live: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(key, worker)`` of the live tasks that started more than ``limit`` seconds ago (each once)."""
        now = time.monotonic()
        with self.lock:
            late = [(k, w) for k, (t, w) in self.start.items() if k in live and now - t > limit]
            for k, _ in late:
                del self.start[k]
        return late

    def close(self) -> None:
        try:
            self.client.unsubscribe_topic(START_TOPIC)
        except Exception:  # noqa: BLE001 - the client may be closing; nothing to undo then
            pass


def _restart(client: Any, worker: str) -> None:
    """Restart ``worker`` (its nanny starts a fresh process; a worker without a nanny cannot be restarted,
    and the task's ERROR stands all the same)."""
    try:
        client.restart_workers([worker], timeout=60, raise_for_error=False)
    except Exception:  # noqa: BLE001 - best effort: the run goes on without that worker
        pass

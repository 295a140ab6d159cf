"""numerics.references.process_map: the serial loop's values in the jobs' order, on a pool of spawned processes
when two workers and two jobs are there, in this process otherwise; errors of a job propagate."""
import math
import os
import signal

import numpy as np
import pytest

from numerics.references.process_map import process_map


def _pid_and_value(a: float, b: np.ndarray) -> tuple[int, float, np.ndarray]:
    """A job: its process id, an exact function of the arguments and an array derived from them."""
    return os.getpid(), math.fsum(b) * a, np.sqrt(b) * a


def _sigint_ignored(_: int) -> bool:
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def _fails(x: float) -> float:
    if x < 0:
        raise ValueError(f"x: negative ({x})")
    return x


def _jobs(n=5):
    rng = np.random.default_rng(3)
    return [(float(rng.random()), rng.random(7)) for _ in range(n)]


def test_pool_values_equal_the_loop_in_order():
    jobs = _jobs()
    loop = [_pid_and_value(*j) for j in jobs]
    pool = process_map(_pid_and_value, jobs, workers=2)
    assert [v for _, v, _ in pool] == [v for _, v, _ in loop]
    assert all(np.array_equal(p, q) for (_, _, p), (_, _, q) in zip(pool, loop))
    assert os.getpid() not in {pid for pid, _, _ in pool}       # computed by the pool's processes


@pytest.mark.parametrize("workers, n", [(1, 4), (2, 1)])
def test_one_worker_or_one_job_runs_here(workers, n):
    out = process_map(_pid_and_value, _jobs(n), workers=workers)
    assert {pid for pid, _, _ in out} == {os.getpid()} and len(out) == n


def test_an_error_of_a_job_propagates():
    with pytest.raises(ValueError, match="x: negative"):
        process_map(_fails, [(1.0,), (-2.0,), (3.0,)], workers=2)


def test_bad_workers_names_the_argument():
    with pytest.raises(ValueError, match="workers"):
        process_map(_fails, [(1.0,)], workers=0)


def test_pool_processes_ignore_sigint():
    """Ctrl-C reaches the whole process group; the pool's processes leave it to the caller."""
    assert process_map(_sigint_ignored, [(0,), (1,)], workers=2) == [True, True]

"""Runs on Dask (issue 21): the same report as a serial run, workers pinned to their share of the
cores, a killed worker loses nothing, and the command line's flags fail with one clear line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from numerics import checks  # noqa: E402
from numerics.checks import dask_runner, report  # noqa: E402
from numerics.checks.claim import Context, Measurement  # noqa: E402
from numerics.checks.runner import run_claims  # noqa: E402
from numerics.cli import main  # noqa: E402
from tests.test_harness import make_claim, meas  # noqa: E402

#: Fast real claims: two read the seed (one per paper with Monte Carlo), two do not.
REAL = ["foundations.tweedie_first_order", "foundations.cg_equals_cfg",
        "samplers.ddpm_is_ddim_eta1", "discrete_kl.structural_invariants"]


def _comparable(run: Any) -> list[tuple]:
    """Everything a report says about the measurements, per claim x seed, in order (the values
    themselves are compared with the baseline's drift rule, see below)."""
    def ms(checked: Any) -> list[tuple]:
        return [(c.measurement.name, c.passed) for c in checked]
    return [(r.claim.id, r.seed, r.verdict, r.control, r.reused_from, ms(r.measurements),
             [(cr.name, cr.status, cr.flagged, ms(cr.measurements)) for cr in r.controls])
            for r in run.results]


@pytest.fixture(scope="module")
def client():
    with dask_runner.local_cluster(2) as cluster, distributed.Client(cluster) as c:
        yield c


def test_thread_env_shares_the_cores() -> None:
    assert dask_runner.thread_env(2, cores=8)["NUMBA_NUM_THREADS"] == "4"
    assert set(dask_runner.thread_env(3, cores=2).values()) == {"1"}
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_workers"):
            dask_runner.thread_env(bad)


_NUMBA_FIRST_SCRIPT = """
import numba  # as guidance-verify's script does: spawned workers import Numba before their environment is set
import distributed
from numerics.checks import dask_runner
from numerics.checks.examples import CLAIMS


def pool_state():
    import os
    import numba
    from numba.np.ufunc import parallel
    # configured count, the pool's real size, the threads a kernel may use, the environment
    return (numba.config.NUMBA_NUM_THREADS, parallel.NUM_THREADS, numba.get_num_threads(),
            int(os.environ["NUMBA_NUM_THREADS"]))


def fast_then_compile():
    # the per-thread scratch of the fast path is sized from the configured count and indexed by
    # numba.get_thread_id(): a configuration smaller than the pool writes out of bounds
    import numpy as np
    from numerics.fast import FastMixture
    from numerics.mixture import GaussianMixture
    rng = np.random.default_rng(0)
    gm = GaussianMixture([0.5, 0.5], rng.standard_normal((2, 3)), np.stack([np.eye(3), 0.2 * np.eye(3)]),
                         labels=[0, 1])
    x = rng.standard_normal((4000, 3))
    fm = FastMixture(gm)
    worst = max(float(np.max(np.abs(fm.denoiser(x, t) - gm.denoiser(x, t)))) for t in (0.05, 0.7) for _ in range(5))

    @numba.njit(parallel=True)  # a compilation after the pool launched (the original failure)
    def total(v):
        s = 0.0
        for i in numba.prange(v.size):
            s += v[i]
        return s

    return worst, total(np.ones(1000))


if __name__ == "__main__":
    with dask_runner.local_cluster(2) as cluster, distributed.Client(cluster) as c:
        claim = CLAIMS["examples.gaussian_mean"]
        workers = list(c.scheduler_info()["workers"])
        for worker in workers:  # one task on each worker
            run = c.submit(dask_runner.call, claim, "quick", 0, None, workers=[worker], pure=False)
            assert run.result().error is None
        for worker in workers:
            worst, total = c.submit(lambda: (dask_runner.sync_numba_threads(), fast_then_compile())[1],
                                    workers=[worker], pure=False).result()
            assert worst < 1e-8 and total == 1000.0, (worst, total)
        # set_num_threads is per thread: read the state in a task (the executor thread), as call() runs
        print(sorted(c.submit(lambda: (dask_runner.sync_numba_threads(), pool_state())[1], workers=[w],
                              pure=False).result() for w in workers))
"""


def test_a_task_runs_with_the_workers_numba_thread_count(tmp_path: Path) -> None:
    """Regression (stops 29 and 30): a worker that imported Numba at spawn kept the machine's core count
    while its environment said its share.  Stop 29: a compilation after the pool launched failed.  Stop
    30: re-reading the configuration made it smaller than the pool, and the fast path's per-thread
    scratch was written out of bounds (the worker died with heap corruption).  After tasks, on every
    worker the configured count equals the pool's size and a kernel uses the worker's share."""
    script = tmp_path / "numba_first.py"
    script.write_text(_NUMBA_FIRST_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    states = eval(out.stdout.strip().splitlines()[-1])  # a printed list of pool_state() tuples
    share = int(dask_runner.thread_env(2)["NUMBA_NUM_THREADS"])
    assert len(states) == 2, states
    for configured, pool, used, environment in states:
        assert configured == pool == environment and used == min(share, pool), states


def test_workers_are_pinned_to_their_share(client: Any) -> None:
    def pools() -> tuple[int, list[int]]:
        import numba
        from threadpoolctl import threadpool_info
        return numba.get_num_threads(), [p["num_threads"] for p in threadpool_info()]
    share = int(dask_runner.thread_env(2)["NUMBA_NUM_THREADS"])
    for numba_threads, blas in client.run(pools).values():
        assert numba_threads == share and all(n == share for n in blas)


def test_same_report_as_serial_run(client: Any, tmp_path: Path) -> None:
    claims = checks.load_all()
    chosen = [claims[c] for c in REAL]
    serial = run_claims(chosen, seeds=[0, 1], out_dir=tmp_path / "serial")
    parallel = run_claims(chosen, seeds=[0, 1], client=client, out_dir=tmp_path)
    assert _comparable(parallel) == _comparable(serial)
    assert parallel.ok and parallel.status == "complete"
    # Values: equal up to the drift rule of --baseline (tol, ci half-width, or sqrt(u)|value| for a
    # different summation order: NumPy's SIMD pairwise sums depend on the arrays' alignment, which
    # differs between processes, so a sum of O(1) terms may move by an ulp in another process).
    baseline = report.load_baseline(tmp_path / "serial" / "report.json")
    assert [d for r in parallel.results if r.seed == 0 for d in baseline.drift_of(r)] == []
    doc = json.loads((tmp_path / "report.json").read_text())
    assert [c["id"] for c in doc["claims"]] == [c for c in REAL for _ in (0, 1)]
    assert {c["figure_kind"] for c in doc["claims"] if c["seed"] == 0} == {"science"}


def _once_then_die(marker: str) -> Any:
    def body(ctx: Context) -> list[Measurement]:
        if ctx.control is None and not os.path.exists(marker):
            Path(marker).write_text("died once")
            os._exit(3)  # the worker process dies mid-task
        return [meas(1.0 if ctx.broken else 0.0)]
    return body


def test_a_killed_worker_loses_nothing(client: Any, tmp_path: Path) -> None:
    c = make_claim("t.dies_once", _once_then_die(str(tmp_path / "marker")))
    other = make_claim("t.fine", lambda ctx: [meas(1.0 if ctx.broken else 0.0)])
    run = run_claims([c, other], client=client)
    assert [r.verdict for r in run.results] == ["holds", "holds"]
    assert (tmp_path / "marker").exists()  # it did die once; the scheduler ran it again


def test_a_task_that_always_kills_its_worker_is_an_error(tmp_path: Path) -> None:
    def always(ctx: Context) -> list[Measurement]:
        os._exit(3)
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            dask_runner.local_cluster(1) as cluster, distributed.Client(cluster) as c:
        run = run_claims([make_claim("t.killer", always)], client=c)
        # the nanny restarts the worker: the cluster runs the next claim (a task that was on the
        # dying worker beside the killer may die with it, hence a run of its own)
        after = run_claims([make_claim("t.fine", lambda ctx: [meas(1.0 if ctx.broken else 0.0)])],
                           client=c)
    killer = run.results[0]
    assert killer.verdict == "ERROR" and "Dask task failed: KilledWorker" in killer.error
    assert run.status == "complete" and after.results[0].verdict == "holds"


@pytest.mark.parametrize("argv,match", [
    (["--workers", "0"], "number of workers must be 1 to 1024"),
    (["--workers", "two"], "--workers"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not allowed with"),
    (["--scheduler", " "], "empty scheduler address"),
])
def test_bad_flags_are_one_line(argv: list[str], match: str, capsys: pytest.CaptureFixture[str],
                                tmp_path: Path) -> None:
    code = main(["run", "--only", "foundations.cg_equals_cfg", "--out", str(tmp_path), *argv])
    assert code == 2 and match in capsys.readouterr().err


def test_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "numerics.cli", "run", "--only",
                           "foundations.cg_equals_cfg", "--scheduler", "tcp://127.0.0.1:9",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--scheduler 'tcp://127.0.0.1:9': cannot connect" in proc.stderr
    assert "Traceback" not in proc.stderr


def _busy(ctx: Context) -> list[Measurement]:
    while True:  # a Python loop that never ends: stopped inside the task
        pass


def _asleep(ctx: Context) -> list[Measurement]:
    import time

    time.sleep(10 ** 6)  # blocked in C: a worker thread cannot be interrupted, its worker is restarted
    return [meas(0.0)]


def _fine(ctx: Context) -> list[Measurement]:
    return [meas(1.0 if ctx.broken else 0.0)]


def _hanging_claims() -> list[Any]:
    return [make_claim("t.busy", _busy), make_claim("t.asleep", _asleep), make_claim("t.fine", _fine)]


def test_task_timeout_serial() -> None:
    """--task-timeout in a serial run (SIGALRM in the main thread): a Python loop and a sleep are both
    stopped, each is its claim's ERROR, and the next claim runs (with its control)."""
    run = run_claims(_hanging_claims(), task_timeout=1.0)
    busy, asleep, fine = run.results
    assert busy.verdict == asleep.verdict == "ERROR"
    assert "TaskTimeout: the run exceeded --task-timeout 1 s and was stopped" in busy.error
    assert "TaskTimeout" in asleep.error
    assert fine.verdict == "holds" and fine.control == "flagged" and run.status == "complete"


def test_task_timeout_on_dask(tmp_path: Path) -> None:
    """--task-timeout on Dask: the Python loop stops itself in the task; the sleep cannot, so once the
    limit and the grace period have passed the client cancels it and restarts its worker; the third
    claim holds, and the cluster is usable afterwards."""
    with dask_runner.local_cluster(2) as cluster, distributed.Client(cluster) as c:
        run = run_claims(_hanging_claims(), client=c, task_timeout=1.0, out_dir=tmp_path)
        after = run_claims([make_claim("t.after", _fine)], client=c)
    busy, asleep, fine = run.results
    assert busy.verdict == "ERROR" and busy.error.endswith("and was stopped")
    assert asleep.verdict == "ERROR" and "stopped by restarting its worker" in asleep.error
    assert fine.verdict == "holds" and run.status == "complete"
    assert after.results[0].verdict == "holds"
    doc = json.loads((tmp_path / "report.json").read_text())
    assert [c["verdict"] for c in doc["claims"]] == ["ERROR", "ERROR", "holds"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_bad_task_timeout_is_one_line(value: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "--only", "foundations.cg_equals_cfg", "--out", str(tmp_path), "--task-timeout", value])
    assert code == 2 and "--task-timeout" in capsys.readouterr().err


@pytest.fixture(scope="module")
def separate_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A scheduler and a worker started as separate processes on 127.0.0.1 (``dask scheduler``,
    ``dask worker``, the worker under a nanny), as on a cluster; yields the scheduler file."""
    import shutil
    import time

    dask_cli = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
    folder = tmp_path_factory.mktemp("cluster")
    sched_file = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")]),
           **dask_runner.thread_env(1)}
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sched_file.exists(), "the scheduler did not start"
        procs.append(subprocess.Popen([dask_cli, "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
                                       "--nworkers", "1", "--dashboard-address", ":0", "--host", "127.0.0.1"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(scheduler_file=str(sched_file), timeout="60s") as c:
            c.wait_for_workers(1, timeout=120)
        yield sched_file
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_separate_scheduler_and_worker_processes(separate_cluster: Path, tmp_path: Path) -> None:
    """``--scheduler`` against a scheduler and a worker started as their own processes: the same report
    as a serial run (up to the drift rule), and a worker killed mid-task loses nothing (its nanny starts
    a new one and the scheduler reruns the task)."""
    claims = checks.load_all()
    chosen = [claims[c] for c in REAL[:2]]
    serial = run_claims(chosen, seeds=[0, 1], out_dir=tmp_path / "serial")
    code = main(["run", "--only", *REAL[:2], "--seeds", "2", "--scheduler", str(separate_cluster),
                 "--baseline", str(tmp_path / "serial" / "report.json"), "--out", str(tmp_path / "dask")])
    doc = json.loads((tmp_path / "dask" / "report.json").read_text())
    assert code == 0, doc["summary"]
    assert [(c["id"], c["seed"], c["verdict"]) for c in doc["claims"]] == \
        [(r.claim.id, r.seed, r.verdict) for r in serial.results]
    with distributed.Client(scheduler_file=str(separate_cluster), timeout="60s") as c:
        dies = make_claim("t.dies_once", _once_then_die(str(tmp_path / "marker")))
        # claim bodies travel by value (closures): the worker process need not import this test module
        run = run_claims([dies, make_claim("t.fine", lambda ctx: [meas(1.0 if ctx.broken else 0.0)])], client=c)
    assert [r.verdict for r in run.results] == ["holds", "holds"], [r.error for r in run.results]
    assert (tmp_path / "marker").exists()

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

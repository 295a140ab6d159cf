"""The fast path compiled in a second process while a run goes on (numerics.fast.warmup)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from numerics.fast import warmup


def _sleeper(seconds: float, code: int = 0) -> list[str]:
    return [sys.executable, "-c", f"import time, sys; time.sleep({seconds}); sys.exit({code})"]


def test_await_waits_for_the_pending_process_then_forgets_it():
    with warmup.BackgroundCompile(_sleeper(1.0)) as bg:
        assert warmup._PENDING is bg
        waited = warmup.await_background_compile()
        assert waited >= 0.9  # the child sleeps 1 s: an await that does not wait returns at once
        assert bg.proc.returncode == 0
        assert warmup._PENDING is None
        assert warmup.await_background_compile() == 0.0  # only the first kernel call waits
    assert warmup._PENDING is None


def test_a_failing_or_hanging_child_only_costs_time(monkeypatch):
    with warmup.BackgroundCompile(_sleeper(0.0, code=3)) as bg:
        assert bg.wait() is False  # exit status 3: not reported as compiled
    monkeypatch.setattr(warmup, "WAIT_LIMIT_S", 0.5)
    with warmup.BackgroundCompile(_sleeper(60.0)) as bg:
        start = time.perf_counter()
        assert warmup.await_background_compile() == pytest.approx(0.5, abs=0.4)  # stopped at the limit
        assert time.perf_counter() - start < 15
        assert bg.proc.poll() is not None  # and terminated, not left running


def test_close_stops_a_child_the_run_did_not_need():
    bg = warmup.BackgroundCompile(_sleeper(60.0)).start()
    bg.close()
    assert bg.proc.poll() is not None and warmup._PENDING is None


def test_first_kernel_call_of_each_path_awaits_the_compile():
    """In a fresh process (no kernel compiled yet), the first step of a path calls the await, later steps of
    that path do not; fails if the hook is missing (the run would compile in line alongside the child) or
    runs on every step."""
    code = r"""
import numpy as np
import numerics.fast.mixture as fmx
from numerics import GaussianMixture
calls = []
fmx.await_background_compile = lambda: calls.append(1) or 0.0
iso = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], np.stack([0.5 * np.eye(2)] * 2), labels=[0, 1])
fm = fmx.FastMixture(iso)
x = np.zeros((5, 2))
fm.score(x, 0.5); fm.denoiser(x, 0.3); fmx.guided_ddim_step(fm, x, 0.5, 0.4, 1, 2.0)
print("CALLS", len(calls))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "CALLS 1" in out.stdout


def test_the_child_fills_the_cache_that_the_run_loads():
    """After ``python -m numerics.fast.warmup`` (the child's command) a fresh process steps both paths from
    Numba's cache: no compile (a cache miss would mean the child compiled another signature or another copy
    of the package)."""
    bg = warmup.BackgroundCompile().start()
    assert bg.wait(limit=900) is True
    bg.close()
    code = r"""
import numerics.fast.kernels as kk
from numerics.fast.warmup import compile_fast_paths
compile_fast_paths()
for name in ("guided_step_lanes", "guided_step_rows"):
    st = getattr(kk, name).stats
    print(name, sum(st.cache_hits.values()), sum(st.cache_misses.values()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    rows = dict((ln.split()[0], ln.split()[1:]) for ln in out.stdout.splitlines() if ln.startswith("guided"))
    assert rows == {"guided_step_lanes": ["1", "0"], "guided_step_rows": ["1", "0"]}, out.stdout

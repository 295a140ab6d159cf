r"""Compile the fast path in a second process while a run goes on.

From an empty Numba cache, the first mixture step pays for compiling its kernel
(:func:`~numerics.fast.kernels.guided_step_lanes` or :func:`~numerics.fast.kernels.guided_step_rows`): about
30 s each on a quiet two-core machine, two thirds of it Numba's own passes in one Python thread.  A serial
run keeps one core busy, so :class:`BackgroundCompile` starts ``python -m numerics.fast.warmup`` at the
beginning of the run: it takes one tiny step on each path (:func:`compile_fast_paths`), which compiles both
kernels and writes them to Numba's on-disk cache (or only loads them when the cache is warm).  The first
step of the run itself waits for that process (:func:`await_background_compile`, called by
:class:`~numerics.fast.mixture.FastMixture` before a kernel's first call) and then loads the kernel from
the cache.  The compiled code is the same either way (one source, one signature per kernel, the same
Numba), so results do not change; only the compile time moves out of the run's critical path.

Anything that goes wrong in the second process (it fails, is killed, or takes longer than
:data:`WAIT_LIMIT_S`) only costs time: the run then compiles in line, as without it.  The child shares the
run's process group, so a Ctrl-C stops it too (Numba writes each cache file through a temporary file and
an atomic rename, so an interrupted compile leaves no broken entry).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["BackgroundCompile", "await_background_compile", "compile_fast_paths", "WAIT_LIMIT_S"]

#: Longest wait for the compiling process at a kernel's first call; after it the run compiles in line.
WAIT_LIMIT_S = 600.0

#: The compiling process of this run, while one is running (set by :meth:`BackgroundCompile.start`).
_PENDING: "BackgroundCompile | None" = None


def compile_fast_paths() -> None:
    """One small guided DDIM step on each path of the fast kernel (isotropic ``d = 2``: lanes; full
    covariances ``d = 3``: per particle), so that both are compiled or loaded, and cached."""
    import numpy as np

    from numerics.fast.mixture import FastMixture, guided_ddim_step
    from numerics.mixture import GaussianMixture

    x2 = np.linspace(-1.0, 1.0, 8).reshape(4, 2)
    iso = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], np.stack([0.5 * np.eye(2)] * 2), labels=[0, 1])
    full_cov = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.0]])
    full = GaussianMixture([0.5, 0.5], [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.stack([full_cov] * 2), labels=[0, 1])
    for gm, x in ((iso, x2), (full, np.linspace(-1.0, 1.0, 12).reshape(4, 3))):
        guided_ddim_step(FastMixture(gm), x, 0.5, 0.4, 1, 2.0)


class BackgroundCompile:
    """The compiling process of one run (a context manager: ``with BackgroundCompile():``).

    ``start`` launches it and registers it for :func:`await_background_compile`; ``close`` stops it if the run
    ends first (a short run that never steps a mixture does not wait for it) and unregisters it.
    """

    def __init__(self, command: list[str] | None = None) -> None:
        #: the child's command line: ``python -m numerics.fast.warmup`` unless given (tests give others)
        self.command = command or [sys.executable, "-m", "numerics.fast.warmup"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "BackgroundCompile":
        global _PENDING
        root = str(Path(__file__).resolve().parents[2])  # the package this run imported, not another install
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            self.proc = subprocess.Popen(self.command, env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        except OSError:
            self.proc = None  # no second process: the run compiles in line
            return self
        _PENDING = self
        return self

    def wait(self, limit: float | None = None) -> bool:
        """Wait for the process to finish (at most ``limit`` seconds, then stop it); True if it exited with 0."""
        if self.proc is None:
            return False
        try:
            return self.proc.wait(timeout=WAIT_LIMIT_S if limit is None else limit) == 0
        except subprocess.TimeoutExpired:
            self.close()
            return False

    def close(self) -> None:
        global _PENDING
        if _PENDING is self:
            _PENDING = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "BackgroundCompile":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def await_background_compile() -> float:
    """If this run's compiling process is running, wait for it (then the kernels load from the cache) and
    forget it; returns the seconds waited (0.0 when there is none)."""
    global _PENDING
    pending = _PENDING
    if pending is None:
        return 0.0
    start = time.perf_counter()
    try:
        pending.wait()
    finally:
        _PENDING = None
    return time.perf_counter() - start


if __name__ == "__main__":  # pragma: no cover - run as the child process
    compile_fast_paths()

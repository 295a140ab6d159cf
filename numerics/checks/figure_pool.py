r"""Draw the claims' figures in a separate process while the next claims run.

Drawing a claim's figure (matplotlib: tick labels, text, PNG encoding) is pure Python in one thread
and takes 0.1-1 s per claim, about 30 s of a quick profile; the claims themselves mostly keep one
core busy.  :class:`FigurePool` hands each finished result to one drawing process
(``concurrent.futures.ProcessPoolExecutor``, ``spawn`` start: no fork of a process that holds Numba or
Dask threads) and writes the PNG it returns from this process, atomically, when it is ready; the run
waits for the last ones before its final report write.  The figures and the report are the same as
when drawn in line (:func:`numerics.checks.report.save_claim_figure`); only the time they take is
hidden behind the claims.

The drawing process ignores SIGINT (a Ctrl-C reaches the whole process group: the run, not the
drawing process, decides what to do with it).  Anything that goes wrong on the way (a result that does
not pickle, a drawing process that died) falls back to drawing in this process (from the pickled copy: the
run frees a result's recordings once it is submitted), so no figure is lost; a figure whose drawing raises
gets its ``figure_error``, as in line.
A Ctrl-C while the run waits for the last figures stops the wait: those figures are left out
(``figure_error`` says so) and the report is still written.
"""
from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import signal
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from numerics.checks import report
from numerics.checks.results import ClaimResult

__all__ = ["FigurePool"]


@dataclass(frozen=True)
class _ClaimName:
    """Stands in for the :class:`~numerics.checks.claim.Claim` of a result sent to the drawing process: a
    figure reads only the claim's id (the claim's function need not pickle)."""

    id: str


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _draw(payload: bytes) -> tuple[str, bytes]:
    """In the drawing process: the figure of a pickled result (:func:`report.claim_figure_png`)."""
    return report.claim_figure_png(pickle.loads(payload))


def _payload(result: ClaimResult) -> bytes:
    """The result pickled for drawing: a shallow copy whose claim is only its id."""
    light = copy.copy(result)
    light.claim = _ClaimName(str(result.claim.id))  # type: ignore[assignment]
    return pickle.dumps(light, protocol=pickle.HIGHEST_PROTOCOL)


class FigurePool:
    """Draw figures in ``processes`` drawing processes (started at the first figure) and store them in ``out_dir``.

    Parameters
    ----------
    out_dir : path
        The run directory; each figure goes to ``figures/<claim id>.png`` in it.
    processes : int
        Number of drawing processes, >= 1.
    """

    def __init__(self, out_dir: str | os.PathLike[str], processes: int = 1) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes: must be an integer >= 1, got {processes!r}")
        self.out_dir = Path(out_dir)
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._pending: list[tuple[ClaimResult, bytes, Future]] = []
        self._broken = False

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_ignore_sigint)
        return self._executor

    def submit(self, result: ClaimResult) -> None:
        """Queue the figure of ``result`` (drawn here at once if the pool cannot take it), and store the figures
        that are ready."""
        try:
            payload = _payload(result)
        except Exception:  # noqa: BLE001 - a result that does not pickle: draw it here
            report.save_claim_figure(result, self.out_dir)
            return
        if self._broken:
            self._draw_here(result, payload)
            return
        try:
            self._pending.append((result, payload, self._pool().submit(_draw, payload)))
        except BrokenExecutor:  # the drawing process died: draw this one and the rest here
            self._broken = True
            self._draw_here(result, payload)
        self.collect()

    def _draw_here(self, result: ClaimResult, payload: bytes) -> None:
        """Draw from the pickled copy in this process (the runner frees the result's recordings once submitted)."""
        try:
            kind, png = _draw(payload)
        except Exception as exc:  # noqa: BLE001 - a bad figure must not lose the result
            result.figure_error = f"{type(exc).__name__}: {exc}"
            return
        report.store_claim_figure(result, self.out_dir, kind, png)

    def _store(self, result: ClaimResult, payload: bytes, fut: Future) -> None:
        try:
            kind, png = fut.result()
        except BrokenExecutor:  # the drawing process died: draw this one (and the rest) here
            self._broken = True
            self._draw_here(result, payload)
            return
        except Exception as exc:  # noqa: BLE001 - drawing raised: as in line, the figure's error
            result.figure_error = f"{type(exc).__name__}: {exc}"
            return
        report.store_claim_figure(result, self.out_dir, kind, png)

    def collect(self) -> None:
        """Store the figures whose drawing has finished (does not wait)."""
        still = []
        for result, payload, fut in self._pending:
            if fut.done():
                self._store(result, payload, fut)
            else:
                still.append((result, payload, fut))
        self._pending = still

    def close(self) -> None:
        """Wait for every queued figure and store it, then stop the drawing processes.

        A KeyboardInterrupt during the wait cancels the figures not yet stored (their ``figure_error`` says
        so) and is raised again once the processes are stopped."""
        try:
            while self._pending:
                self._store(*self._pending[0])
                self._pending.pop(0)
        except KeyboardInterrupt:
            for result, _, fut in self._pending:
                fut.cancel()
                result.figure_error = "KeyboardInterrupt: the run was interrupted before this figure was drawn"
            self._pending = []
            self._shutdown(wait=False)
            raise
        self._shutdown(wait=True)

    def _shutdown(self, wait: bool) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None

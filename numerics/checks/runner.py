"""Run claims, isolate their failures, and keep the report on disk current.

:func:`run_claim` runs one claim (the stated run, then the negative control) and never raises for
an ordinary exception: it is recorded as ``ERROR`` with its traceback. ``KeyboardInterrupt`` and
``SystemExit`` raised inside a claim are recorded too (verdict ``INTERRUPTED``) and returned, not
re-raised; :func:`run_claims` then writes the report with status ``"interrupted"`` and stops.

:func:`run_claims` runs an explicit list of :class:`~numerics.checks.claim.Claim` objects (tests
pass their own; the CLI passes the loaded registry), saves one figure per claim and rewrites
``report.json`` / ``report.md`` atomically after each claim (a large report, whose last write took at least
:data:`SAVE_DEFER_FLOOR` s, at most once per :data:`SAVE_COST_RATIO` times that duration; always at the end,
on Ctrl-C and on SIGTERM), so the file on disk is always complete, valid JSON describing
what has finished.

The result classes (:class:`CheckedMeasurement`, :class:`ClaimResult`, :class:`RunReport`) live in
:mod:`numerics.checks.results` and are importable from here too. Imports go one way:
``runner -> report -> results``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from numerics.checks import report
from numerics.checks import verdict as V
from numerics.checks.claim import PROFILES, Claim, Measurement
from numerics.checks.compile_log import Compiled, record_compiles
from numerics.checks.figure_pool import FigurePool
from numerics.checks.report import Baseline
from numerics.checks.results import CheckedMeasurement, ClaimResult, ControlRun, RunReport, utc_now
from numerics.checks.time_limit import TaskTimeout, check_timeout, time_limit

__all__ = [
    "SAVE_COST_RATIO",
    "SAVE_DEFER_FLOOR",
    "serial_blas_limit",
    "CheckedMeasurement",
    "ClaimResult",
    "ControlRun",
    "NoMatchError",
    "RunReport",
    "run_claim",
    "run_claims",
    "select",
]


class NoMatchError(ValueError):
    """A ``--only`` glob matched no claim; ``.pattern`` is the glob."""

    def __init__(self, pattern: str, known: int) -> None:
        super().__init__(f"no claim matches {pattern!r} ({known} claims known; "
                         f"see 'guidance-verify list')")
        self.pattern = pattern


@dataclass
class _Outcome:
    """What one call of a claim function produced (plain, picklable data: it may come back from
    a Dask worker)."""

    checked: list[CheckedMeasurement] = field(default_factory=list)
    error: str | None = None
    interrupted_by: str | None = None
    wall_time: float = 0.0
    used_seed: bool = True  # True unless the Context existed and was never asked for the seed
    plot: Any = None  # the Context's PlotRecorder
    figure: Any = None  # a figure the claim drew itself (Context.drawn_figure)
    compiled: list[Compiled] = field(default_factory=list)  # Numba compilations of this call

    @property
    def all_pass(self) -> bool:
        """Every counted measurement passed (and there is at least one)."""
        return V.all_pass(c.passed for c in self.checked if c.measurement.counted)


class Terminated(KeyboardInterrupt):
    """SIGTERM received (``kill``, ``timeout``, a batch scheduler ending the job): handled as Ctrl-C is,
    so the report written so far is completed and says INTERRUPTED (see :func:`sigterm_as_interrupt`)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """In the main thread, turn SIGTERM into :class:`Terminated` for the duration (the old handler is
    restored after); elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise Terminated("SIGTERM")

    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _describe_interrupt(exc: BaseException) -> str:
    if isinstance(exc, Terminated):
        return "SIGTERM"
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    return type(exc).__name__


def _interrupt_cause(exc: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM behind an ordinary exception, if any: an interrupt raised inside a C callback
    comes back wrapped (Numba's unpickling of a cached kernel turns it into ``SystemError``), and must stop
    the run as the bare interrupt does instead of being recorded as the claim's own error."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _check_output(out: Any) -> list[CheckedMeasurement]:
    """Validate a claim function's return value and check each measurement."""
    if not isinstance(out, (list, tuple)):
        raise TypeError(f"a claim must return a list of Measurement, got {type(out).__name__}")
    if not out:
        raise ValueError("a claim must return at least one Measurement (an empty list proves nothing)")
    bad = [type(m).__name__ for m in out if not isinstance(m, Measurement)]
    if bad:
        raise TypeError(f"a claim must return Measurement objects, got {', '.join(bad)}")
    names = [m.name for m in out]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"duplicate measurement names: {dups}")
    if not any(m.counted for m in out):
        raise ValueError("a claim must return at least one counted Measurement "
                         "(informational ones alone prove nothing)")
    return [CheckedMeasurement.of(m) for m in out]


def timeout_error(seconds: float, how: str = "stopped") -> str:
    """The ERROR text of a run that exceeded ``--task-timeout``."""
    return f"TaskTimeout: the run exceeded --task-timeout {seconds:g} s and was {how}"


def _call(claim: Claim, profile: str, seed: int, control: str | None, timeout: float | None = None) -> _Outcome:
    """Call the claim function once (within ``timeout`` seconds, see :mod:`numerics.checks.time_limit`);
    exceptions become ``error`` / ``interrupted_by``."""
    t0 = time.perf_counter()
    try:
        ctx = claim.context(profile, seed, control)
    except Exception:  # noqa: BLE001 - e.g. parameters that cannot be deep-copied
        return _Outcome(error=traceback.format_exc())
    outcome = _Outcome()
    try:
        with time_limit(timeout), record_compiles() as compiled:
            outcome.compiled = compiled
            returned = claim.func(ctx)
        outcome.checked = _check_output(returned)
    except TaskTimeout:
        outcome.error = timeout_error(float(timeout))
    except (KeyboardInterrupt, SystemExit) as exc:
        outcome.error = traceback.format_exc()
        outcome.interrupted_by = _describe_interrupt(exc)
    except Exception as exc:  # noqa: BLE001 - isolating claim failures is the point
        outcome.error = traceback.format_exc()
        interrupt = _interrupt_cause(exc)
        if interrupt is not None:
            outcome.interrupted_by = _describe_interrupt(interrupt)
    outcome.wall_time = time.perf_counter() - t0
    outcome.used_seed = ctx.used_seed
    outcome.plot = ctx.plot
    outcome.figure = ctx.drawn_figure
    return outcome


def _stated_result(claim: Claim, profile: str, seed: int, out: _Outcome) -> ClaimResult:
    if out.interrupted_by:
        stated = V.INTERRUPTED
    elif out.error:
        stated = V.ERROR
    else:
        stated = V.stated_verdict(claim.expect, out.all_pass)
    return ClaimResult(claim=claim, profile=profile, seed=seed, verdict=stated,
                       stated_verdict=stated, control=V.CONTROL_NOT_RUN,
                       measurements=out.checked, error=out.error,
                       interrupted_by=out.interrupted_by, wall_time=out.wall_time,
                       used_seed=out.used_seed, compiled=out.compiled,
                       figure_obj=None if out.error else out.figure,
                       plot=None if out.error else out.plot)


def _control_run(name: str, description: str, stated: list[CheckedMeasurement],
                 out: _Outcome) -> ControlRun:
    if out.error:
        return ControlRun(name, description, V.CONTROL_ERROR, out.checked, [], out.error,
                          out.wall_time, out.plot, out.compiled)
    flagged = V.control_flags([c.measurement for c in stated], [c.measurement for c in out.checked])
    status = V.CONTROL_FLAGGED if flagged else V.CONTROL_NOT_FLAGGED
    return ControlRun(name, description, status, out.checked, flagged, None, out.wall_time,
                      out.plot, out.compiled)


def _controls_to_run(result: ClaimResult, claim: Claim, control: bool) -> list[tuple[str, str]]:
    """The (name, description) of the controls to run after the stated run; sets the control
    status instead when none run (stated run failed, ``control="none"``, controls skipped)."""
    if V.is_failure(result.verdict):
        return []
    if claim.control == "none":
        result.control = V.CONTROL_NONE
        return []
    if not control:
        result.control = V.CONTROL_SKIPPED
        return []
    return list(claim.controls.items())


def _add_controls(result: ClaimResult, runs: Iterable[tuple[str, str, _Outcome]]) -> None:
    """Record the control runs (in declaration order) and set the verdict; an interrupted
    control makes the result INTERRUPTED and ends it there."""
    for name, description, out in runs:
        result.used_seed = result.used_seed or out.used_seed
        if out.interrupted_by:
            result.interrupted_by = out.interrupted_by
            result.verdict = V.INTERRUPTED
            return
        result.controls.append(_control_run(name, description, result.measurements, out))
    _summarise_controls(result)


def _summarise_controls(result: ClaimResult) -> None:
    """Set ``result.control`` and the final verdict from its finished control runs."""
    if any(cr.status == V.CONTROL_ERROR for cr in result.controls):
        result.control = V.CONTROL_ERROR
    elif result.unflagged or result.idle_controls:
        result.control = V.CONTROL_NOT_FLAGGED
    else:
        result.control = V.CONTROL_FLAGGED
    result.verdict = V.final_verdict(result.stated_verdict, result.control)


def run_claim(claim: Claim, *, profile: str = "quick", seed: int = 0,
              control: bool = True, task_timeout: float | None = None) -> ClaimResult:
    """Run one claim: the stated run, then (if it passed) every control.

    Parameters
    ----------
    claim : Claim
    profile : {"quick", "full", "reduced"}
    seed : int
        Run seed; the claim's generator is seeded from it and the claim id.
    control : bool
        False skips the controls (control status ``"skipped"``).
    task_timeout : float, optional
        Seconds each run (stated, each control) may take before it is stopped as ERROR.

    Returns
    -------
    ClaimResult
        Never raises for an exception inside the claim (ERROR / INTERRUPTED instead).

    Notes
    -----
    The controls run only when the stated run passed its own verdict (holds /
    fails-as-predicted); after VIOLATED or ERROR their status is ``"not run"``. Each control
    records the counted measurements it flagged (see :func:`numerics.checks.verdict.control_flags`);
    a counted measurement no control flags, or a control that flags nothing, makes the claim
    UNFALSIFIABLE; a control that raises makes it ERROR.
    """
    if profile not in PROFILES:  # validated before anything runs
        raise ValueError(f"unknown profile {profile!r} (choose one of {', '.join(PROFILES)})")
    task_timeout = check_timeout(task_timeout)
    result = _stated_result(claim, profile, seed, _call(claim, profile, seed, None, task_timeout))
    todo = _controls_to_run(result, claim, control)
    if todo:
        _add_controls(result, ((name, description, _call(claim, profile, seed, name, task_timeout))
                               for name, description in todo))
    return result


def _matches(claim_id: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(claim_id, pattern) or fnmatch.fnmatchcase(claim_id, pattern + ".*")


def select(claims: Mapping[str, Claim] | Iterable[Claim],
           patterns: Sequence[str] | None) -> list[Claim]:
    """Claims whose id matches any of ``patterns``, in registry order.

    A pattern is an ``fnmatch`` glob on the claim id (case-sensitive); a bare prefix such as
    ``"support"`` also selects ``"support.*"``. ``None`` or an empty list selects everything.

    Raises
    ------
    NoMatchError
        If some pattern matches no claim.
    """
    items = list(claims.values()) if isinstance(claims, Mapping) else list(claims)
    if not patterns:
        return items
    for pattern in patterns:
        if not any(_matches(c.id, pattern) for c in items):
            raise NoMatchError(pattern, len(items))
    return [c for c in items if any(_matches(c.id, p) for p in patterns)]


def _seed_result(claim: Claim, first: ClaimResult | None, seed: int, profile: str,
                 control: bool, task_timeout: float | None = None) -> ClaimResult:
    """The claim's result at ``seed``: run it, or reuse ``first`` if that never read the seed."""
    if first is not None and not first.used_seed and not first.interrupted_by:
        return _reused(first, seed)
    return run_claim(claim, profile=profile, seed=seed, control=control, task_timeout=task_timeout)


def _reused(first: ClaimResult, seed: int) -> ClaimResult:
    """``first`` (which never read the seed) standing for the claim's result at ``seed``."""
    return dataclasses.replace(first, seed=seed, reused_from=first.seed, drift=[], figure=None,
                               figure_kind=None, figure_obj=None, plot=None)


#: A write of the report that took at least :data:`SAVE_DEFER_FLOOR` s is not repeated after a result until this
#: many times its duration has passed, so writing costs at most 1/(1 + ratio) of a run's time.  Without it the
#: writes grow quadratically with the number of results: a 20-seed ensemble's report reaches ~10 MB of JSON
#: (0.3 s to serialise alone), and rewriting it after each of its 1300 results kept the client of a
#: ``--workers`` run at ~40% of a core (measured on 2026-12-05), taken from the workers.
SAVE_COST_RATIO = 20.0
#: Writes faster than this (s) are never deferred: a small report is rewritten after every claim.
SAVE_DEFER_FLOOR = 0.1


def serial_blas_limit() -> contextlib.AbstractContextManager:
    r"""One BLAS thread while a serial run runs (:func:`threadpoolctl.threadpool_limits`; Numba keeps all cores).

    OpenBLAS's worker threads busy-wait for about :math:`2^{28}` cycles after each call; on a machine whose
    cores are busy with other work they take the run's share of the CPU.  Measured on two cores (2026-12-05,
    ``discriminator.trained_1d``, quick profile, stated run): 13.9 s quiet and 36.5 s with one CPU-bound
    competitor per core (2.6x), against 14.0 s and 21.5 s (1.5x) with one BLAS thread; the claims' BLAS
    calls are small, so one thread costs nothing measurable on a quiet machine.  Dask workers get the same
    limit from their environment (:mod:`numerics.checks.dask_runner`)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _serial_results(claims: Sequence[Claim], seed_list: Sequence[int], profile: str,
                    control: bool, on_start: Callable[[Claim, int, int], None] | None,
                    task_timeout: float | None = None) -> Iterator[tuple[int, ClaimResult]]:
    """Run every claim at every seed here, in order; yields (seed index, result)."""
    total, done = len(claims) * len(seed_list), 0
    for c in claims:
        first: ClaimResult | None = None
        for k, s in enumerate(seed_list):
            if on_start is not None:
                on_start(c, done, total)
            result = _seed_result(c, first, s, profile, control, task_timeout)
            done += 1
            yield k, result
            first = first or result


def _finish_claim(run: RunReport, result: ClaimResult, baseline: Baseline | None,
                  out_dir: Path | None, figures: FigurePool | None = None) -> None:
    if baseline is not None:
        result.drift = baseline.drift_of(result)
    run.results.append(result)  # first, so a Ctrl-C while drawing does not lose the result
    if out_dir is not None and figures is not None:
        figures.submit(result)  # drawn in another process; stored by the pool
    elif out_dir is not None:
        report.save_claim_figure(result, out_dir)
    result.figure_obj = None  # free the figure and its recording; they are on disk now
    result.plot = None
    for cr in result.controls:
        cr.plot = None


def run_claims(
    claims: Sequence[Claim],
    *,
    profile: str = "quick",
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    control: bool = True,
    baseline: Baseline | None = None,
    selection: Sequence[str] | None = None,
    on_start: Callable[[Claim, int, int], None] | None = None,
    on_result: Callable[[ClaimResult], None] | None = None,
    client: Any = None,
    task_timeout: float | None = None,
    figure_processes: int = 0,
) -> RunReport:
    """Run ``claims`` in order, writing the report after each one (see :data:`SAVE_COST_RATIO`).

    Parameters
    ----------
    claims : sequence of Claim
        Exactly the claims to run (see :func:`select`).
    profile : {"quick", "full", "reduced"}
    seed : int
        The run seed (ignored when ``seeds`` is given).
    seeds : sequence of int, optional
        A seed ensemble: every claim runs at every seed, in order, and the report keeps every
        seed's result; a claim whose verdict changes with the seed is UNSTABLE (a failure, see
        :attr:`RunReport.ensemble`). A claim that did not read the seed at the first seed
        (``ClaimResult.used_seed`` False) is not rerun: its result is reused for the other seeds
        (``reused_from``), since it cannot depend on the seed.
    out_dir : path, optional
        Where ``report.json``, ``report.md`` and ``figures/<id>.png`` go; ``None`` writes nothing.
        The directory is created if needed, and what an earlier run left there (its report and
        the figures that report lists, see :func:`numerics.checks.report.clear_outputs`) is removed first.
    control : bool
        False skips every negative control.
    baseline : Baseline, optional
        From :func:`numerics.checks.report.load_baseline`; drift is recorded per claim.
    selection : sequence of str, optional
        The globs that chose ``claims``, recorded in the report.
    on_start : callable(claim, index, total), optional
        Called before each run of a claim at one seed (progress display; ``total`` counts
        claim x seed runs).
    on_result : callable(ClaimResult), optional
        Called after each such run, once its result is in the report (on disk, unless the write was
        deferred by :data:`SAVE_COST_RATIO`).
    client : distributed.Client, optional
        Run on this Dask cluster instead of here: one task per (claim, seed, control) run
        (:mod:`numerics.checks.dask_runner`); the results are merged in the serial order, so
        the report is the one a serial run writes.
    task_timeout : float, optional
        Seconds one run (a claim at one seed, stated or one control) may take; a run that exceeds
        it is stopped and becomes that run's ERROR, and the rest goes on (see
        :mod:`numerics.checks.time_limit`; on Dask a run stuck in compiled code has its worker
        restarted after a grace period).
    figure_processes : int
        0 (default): each claim's figure is drawn here, after the claim.  N >= 1: in N other processes while
        the next claims run (:class:`~numerics.checks.figure_pool.FigurePool`; the CLI uses 1), the same
        figures; the run waits for them before its final report write.  A run of one claim draws in line.

    Returns
    -------
    RunReport
        ``status`` is ``"complete"``; ``"interrupted"`` if a claim raised KeyboardInterrupt /
        SystemExit or one arrived in the harness between claims (the remaining claims are not run);
        ``"failed"`` if writing into ``out_dir`` raised OSError (disk full, read-only, removed):
        the remaining claims are not run, ``error`` says why, and the report on disk is the last
        one written (with status ``"failed"`` if that could still be written). Never raises for
        either; the final write holds Ctrl-C back, so a second Ctrl-C cannot tear it.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (choose one of {', '.join(PROFILES)})")
    task_timeout = check_timeout(task_timeout)
    if isinstance(figure_processes, bool) or not isinstance(figure_processes, int) or figure_processes < 0:
        raise ValueError(f"figure_processes: must be an integer >= 0, got {figure_processes!r}")
    out = Path(out_dir) if out_dir is not None else None
    # one claim leaves nothing to overlap its figure with
    figures = FigurePool(out, figure_processes) if out is not None and figure_processes and len(claims) > 1 else None
    seed_list = [int(s) for s in seeds] if seeds is not None else [int(seed)]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be a non-empty list of distinct seeds, got {seeds!r}")
    run = RunReport(profile=profile, seed=seed_list[0], control=control,
                    seeds=seed_list if seeds is not None else None,
                    planned=[c.id for c in claims],
                    selection=list(selection) if selection else None,
                    out_dir=str(out) if out is not None else None,
                    baseline=baseline.info() if baseline is not None else None)
    t0 = time.perf_counter()
    last_write = [-float("inf"), 0.0]  # when the last write ended, and how long it took

    def save(force: bool = True) -> None:
        start = time.perf_counter()
        cost = last_write[1]
        if not force and cost >= SAVE_DEFER_FLOOR and start - last_write[0] < SAVE_COST_RATIO * cost:
            return
        run.wall_time = start - t0
        if out is not None:
            report.write_report(run, out)
        end = time.perf_counter()
        last_write[:] = [end, end - start]

    try:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            report.clear_outputs(out)
        save()
        limit: contextlib.AbstractContextManager = contextlib.nullcontext()
        if client is None:
            limit = serial_blas_limit()
            results = _serial_results(claims, seed_list, profile, control, on_start, task_timeout)
        else:
            from numerics.checks import dask_runner

            results = dask_runner.results(client, claims, seed_list, profile, control, on_start,
                                          task_timeout=task_timeout)
        with contextlib.closing(results), limit:
            for k, result in results:
                _finish_claim(run, result, baseline if k == 0 else None, out if k == 0 else None, figures)
                if result.interrupted_by:
                    run.status, run.interrupted_by = "interrupted", result.interrupted_by
                save(force=bool(result.interrupted_by))
                if on_result is not None:
                    on_result(result)
                if result.interrupted_by:
                    break
            else:
                run.status = "complete"
    except (KeyboardInterrupt, SystemExit) as exc:
        run.status, run.interrupted_by = "interrupted", _describe_interrupt(exc)
    except OSError as exc:  # disk full, folder gone or read-only: stop, say why
        _mark_failed(run, out, exc)
    except Exception as exc:  # noqa: BLE001 - a harness bug (callback, report): stop, say why
        _mark_failed(run, out, exc)
    _close_figures(run, figures)
    run.finished_utc = utc_now()
    _final_save(run, save, out)
    return run


def _close_figures(run: RunReport, figures: FigurePool | None) -> None:
    """Wait for the figures still being drawn; a Ctrl-C here leaves them out and marks the run interrupted."""
    if figures is None:
        return
    try:
        figures.close()
    except (KeyboardInterrupt, SystemExit) as exc:
        if run.status != "failed":
            run.status, run.interrupted_by = "interrupted", run.interrupted_by or _describe_interrupt(exc)


def _write_error(out: Path | None, exc: Exception) -> str:
    if not isinstance(exc, OSError):
        text = " ".join(str(exc).split())[:200]
        return f"the run stopped on an internal error: {type(exc).__name__}: {text}"
    where = f" ({exc.filename})" if exc.filename else ""
    return (f"cannot write the report into --out {str(out)!r}: "
            f"{exc.strerror or type(exc).__name__}{where}")


def _mark_failed(run: RunReport, out: Path | None, exc: Exception) -> None:
    if run.status != "failed":
        run.status, run.error = "failed", _write_error(out, exc)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[list[int]]:
    """Hold back SIGINT (Ctrl-C) and SIGTERM in the main thread for the duration; yields the signals caught.

    Elsewhere (another thread, no Python handler installed) it does nothing.
    """
    caught: list[int] = []
    old = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if old is None:
        yield caught
        return
    old_term = signal.getsignal(signal.SIGTERM)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)


def _final_save(run: RunReport, save: Callable[[], None], out: Path | None) -> None:
    """Write the final report with Ctrl-C held back; never raises.

    A KeyboardInterrupt that still gets through (raised inside the write) marks the run
    interrupted and the write is tried once more; an OSError (or any other exception) marks the
    run failed and is tried once more too (to record the failure). If both attempts fail, the last report written stays:
    complete, valid JSON (the writes are atomic), with status ``"running"``.
    """
    for _ in range(2):
        try:
            with _sigint_deferred():
                save()
            return
        except KeyboardInterrupt:
            if run.status != "failed":
                run.status = "interrupted"
                run.interrupted_by = run.interrupted_by or "KeyboardInterrupt"
        except Exception as exc:  # noqa: BLE001 - OSError (disk full, ...) or a bug
            _mark_failed(run, out, exc)

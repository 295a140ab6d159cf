"""The ``guidance-verify audit`` subcommand: its parser and its runner (``numerics.cli`` calls both).

Exit status: 0 no finding new against ``--baseline`` (without a baseline: no finding at all), 1 new findings,
2 bad input or the ``[audit]`` extra missing (the message says ``pip install "guidance-verify[audit]"``).
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

__all__ = ["LIBRARIES", "AuditUsageError", "add_parser", "run"]

LIBRARIES = ("diffusers",)


class AuditUsageError(Exception):
    """Bad input or missing extra: one line on stderr, exit status 2."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "audit", help="audit a sampler library's schedulers against the exact oracles",
        description="Drive diffusers' schedulers with exact model outputs of a Gaussian target and report "
                    "measured disagreements with the derived updates (findings), with reproductions; writes "
                    "audit.json and audit.md into --out. Needs the [audit] extra.")
    p.add_argument("library", choices=LIBRARIES, metavar="LIBRARY", help="the library to audit: diffusers")
    p.add_argument("--reduced", action="store_true", help="a reduced sweep (under 3 minutes on two cores)")
    p.add_argument("--out", metavar="DIR", default=None, help="output directory (default: results/audit-<UTC>)")
    p.add_argument("--baseline", metavar="FILE", default=None,
                   help="a stored audit.json: exit 1 only for findings not in it")
    p.add_argument("--only", metavar="NAME", action="append", default=None,
                   help="audit only this scheduler (repeatable)")
    p.add_argument("--jobs", metavar="N", type=int, default=1,
                   help="audit N schedulers at a time in worker processes (default 1; 2 uses both of two cores)")


def _audit_one(name: str, profile: str) -> dict:
    """One scheduler's row (a worker process's task; also the serial path)."""
    from numerics.audit import checks, diffusers_driver as dd

    t1, c1 = time.perf_counter(), time.process_time()
    row = checks.audit_scheduler(dd.SPECS[name], checks.PROFILES[profile])
    # wall time, and this process's CPU time (the cost on a shared machine: other jobs lengthen the first only)
    row["seconds"], row["cpu_seconds"] = time.perf_counter() - t1, time.process_time() - c1
    return row


def _quiet(torch, diffusers) -> None:
    torch.set_num_threads(1)
    diffusers.utils.logging.set_verbosity_error()  # its advice on configurations would drown the report
    warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")


def run(args, out: Path) -> int:
    from numerics.audit import diffusers_driver as dd

    try:
        torch, diffusers = dd.load()
    except dd.MissingExtra as exc:
        raise AuditUsageError(str(exc)) from None
    from numerics.audit import checks, report as rp

    baseline = None
    if args.baseline is not None:
        try:
            baseline = rp.load_baseline(Path(args.baseline))
        except ValueError as exc:
            raise AuditUsageError(str(exc)) from None
    names = list(dd.SPECS)
    if args.only:
        bad = [n for n in args.only if n not in dd.SPECS]
        if bad:
            raise AuditUsageError(f"--only: unknown scheduler {bad[0]!r} (choose from {', '.join(dd.SPECS)})")
        names = args.only
    jobs = getattr(args, "jobs", 1)
    if not (isinstance(jobs, int) and jobs >= 1):
        raise AuditUsageError(f"--jobs: must be an integer >= 1, got {jobs!r}")
    profile = "reduced" if args.reduced else "full"
    t0 = time.perf_counter()
    _quiet(torch, diffusers)
    done = {}

    def report_row(name: str, row: dict) -> None:
        done[name] = row
        print(f"audit: {name}: {len(row['findings'])} finding(s) ({row['seconds']:.1f} s, CPU {row['cpu_seconds']:.1f} s)",
              file=sys.stderr)

    if jobs == 1 or len(names) == 1:
        for name in names:
            report_row(name, _audit_one(name, profile))
    else:
        # worker processes forked from this one (torch and diffusers already imported, one thread each, before any
        # Numba kernel ran); each audits whole schedulers, so the rows are the serial run's
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(jobs, len(names)), mp_context=mp.get_context("fork")) as ex:
            futs = {ex.submit(_audit_one, name, profile): name for name in names}
            for fut in as_completed(futs):
                report_row(futs[fut], fut.result())
    rows = [done[name] for name in names]
    report = {"library": args.library, "profile": "reduced" if args.reduced else "full",
              "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__},
              "target": {"mean": list(checks.TARGET.mean), "std": checks.TARGET.std},
              "schedulers": rows, "seconds": time.perf_counter() - t0}
    new = rp.new_findings(report, baseline)
    report["new_findings"] = new
    rp.write_report(report, out)
    print(rp.markdown(report))
    return 1 if new else 0

"""The ``guidance-verify`` command line.

Subcommands: ``run`` (check the claims), ``list`` (show them), ``derive`` (print the symbolic
derivations), ``sample`` (draw guided samples), ``bench`` (time one guided step per backend). ``main(argv)`` returns the exit status:

0  nothing VIOLATED, ERROR, UNFALSIFIABLE, interrupted or drifted
1  some claim failed, drifted, the run was interrupted (130 after Ctrl-C), or writing its output
   failed (disk full, ...)
2  bad input: unknown profile or claim glob, unwritable --out, unreadable --baseline, bad options

Every error is one line on stderr, ``guidance-verify: error: <what>``, naming the flag at fault,
never a traceback; input is checked before any long work (sampling, running claims).

The claims are those of the claim modules declared in the entry-point group
``guidance_verify.claims`` (this package's papers and any other installed package's; see
:mod:`numerics.checks`). Tests (and embedding code) inject claims with
``main(argv, registry={id: Claim, ...})``; from a shell, ``GUIDANCE_VERIFY_CLAIM_MODULES=mod1,mod2``
replaces the list of claim modules.

Importing this module is cheap: NumPy, rich, matplotlib and the claims load inside the commands.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, NoReturn, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from numerics.checks.claim import Claim
    from numerics.checks.results import ClaimResult, RunReport

__all__ = ["build_parser", "main"]

PROG = "guidance-verify"
PROFILES = ("quick", "full", "reduced")
TARGETS = ("two_class", "atoms", "subspace")
from numerics.methods import METHODS  # noqa: E402 - the table of sampler methods (numerics.methods)

ClaimSource = Mapping[str, "Claim"] | Iterable["Claim"] | None


class UsageError(Exception):
    """Bad input: printed as one line on stderr, exit status 2."""


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` (one line) instead of exiting."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        raise UsageError(f"{' '.join(message.split())} (see '{self.prog} --help')")


#: Largest run / sample seed: seeds are stored as JSON integers and fit int64.
MAX_SEED = 2**63 - 1
#: Largest ``sample --n``: the samples are held in memory (16 d bytes each, d = 2 here: 160 MB).
MAX_SAMPLES = 10_000_000
#: Largest ``sample --label`` the parser accepts (the target then checks it is one of its classes).
MAX_LABEL = 2**31 - 1


def _short(text: object, width: int = 40) -> str:
    text = repr(text) if isinstance(text, str) else str(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _parse_int(text: str) -> int:
    """An integer from ``text``: decimal, or a float literal with an integral value (``1e6``)."""
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        value = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {_short(text)}") from None
    if math.isinf(value) or (s.lstrip("+-").isdigit()):
        raise argparse.ArgumentTypeError(f"out of range: {_short(text)}")
    if not (math.isfinite(value) and value.is_integer()):
        raise argparse.ArgumentTypeError(f"not an integer: {_short(text)}")
    return int(value)


def _int_in(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        value = _parse_int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {_short(value)}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {_short(value)}")
        return value

    return parse


_nonneg_int = _int_in(0, MAX_SEED)
_pos_int = _int_in(1, MAX_SAMPLES)
_label = _int_in(0, MAX_LABEL)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {_short(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {_short(text)}")
    return value


def _path(text: str) -> str:
    """A non-empty path without NUL bytes (an empty --out would silently mean the cwd)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if "\0" in text:
        raise argparse.ArgumentTypeError("must not contain a NUL byte")
    return text


#: Most seeds of one ensemble (a sanity bound: each seed reruns every seeded claim).
MAX_SEEDS = 10_000


def _seed_range(text: str) -> tuple[int, int | None]:
    """``--seeds``: ``"N"`` (N seeds from --seed) or ``"A-B"`` (seeds A..B) -> (first, count)."""
    text = text.strip()
    if "-" in text.lstrip("-"):
        a, b = text.split("-", 1)
        lo, hi = _nonneg_int(a), _nonneg_int(b)
        if hi < lo:
            raise argparse.ArgumentTypeError(f"empty seed range {text!r} (B < A)")
        first, count = lo, hi - lo + 1
    else:
        first, count = None, _nonneg_int(text)  # type: ignore[assignment]
    if not 1 <= count <= MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"the number of seeds must be 1 to {MAX_SEEDS}, got {count}")
    return (first, count)  # type: ignore[return-value]


def _workers(text: str) -> int:
    """``--workers``: 1 to 1024 worker processes."""
    n = _nonneg_int(text)
    if not 1 <= n <= 1024:
        raise argparse.ArgumentTypeError(f"the number of workers must be 1 to 1024, got {n}")
    return n


def _seconds(text: str) -> float:
    """``--task-timeout``: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def _scheduler(text: str) -> str:
    """``--scheduler``: a non-empty address or scheduler-file path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty scheduler address")
    return text.strip()


@contextlib.contextmanager
def _dask_client(args: argparse.Namespace) -> Iterator[Any]:
    """The Dask client of ``--workers``/``--scheduler``, or None for a serial run."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--workers/--scheduler need Dask: pip install "
                         "'guidance-verify[distributed]'") from None
    from numerics.checks.dask_runner import local_cluster

    if args.workers is not None:
        with local_cluster(args.workers) as cluster, Client(cluster) as client:
            yield client
        return
    kind = "scheduler_file" if Path(args.scheduler).is_file() else "address"
    try:
        client = Client(**{kind: args.scheduler}, timeout="20s")
    except (OSError, ValueError) as exc:
        raise UsageError(f"--scheduler {args.scheduler!r}: cannot connect ({exc})") from None
    with client:
        yield client


def _seed_list(args: argparse.Namespace) -> list[int] | None:
    if args.seeds is None:
        return None
    first, count = args.seeds
    start = args.seed if first is None else first
    if start + count - 1 > MAX_SEED:
        raise UsageError(f"--seeds: the last seed {start + count - 1} is above {MAX_SEED}")
    return list(range(start, start + count))


def _glob(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty glob matches no claim")
    return text


_RUN_EPILOG = """\
verdicts: holds, fails-as-predicted (a counterexample behaving as predicted) are passes;
VIOLATED, ERROR, UNFALSIFIABLE (a counted measurement that no control flags, or a control
that flags nothing) and INTERRUPTED fail; over --seeds, UNSTABLE (the verdict changed with the
seed) fails too.
exit status: 0 if nothing failed or drifted, 1 otherwise (130 after Ctrl-C, 143 after SIGTERM), 2 on bad input.
examples:
  guidance-verify run
  guidance-verify run --only 'support.*' foundations --profile full --seed 1
  guidance-verify run --seeds 20
  guidance-verify run --baseline results/20250101T000000Z/report.json
"""


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="run the claims and write a report",
        description="Run the claims (each stated, then each of its controls), print a table, and "
                    "write report.json, report.md and figures/<claim id>.png into --out.",
        epilog=_RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick", metavar="{quick,full,reduced}",
                   help="parameter set of every claim (default: quick, a few minutes); reduced = "
                        "full with the documented cuts of the claims CI cannot afford in full")
    p.add_argument("--only", action="extend", nargs="+", metavar="GLOB", default=None, type=_glob,
                   help="run only claims whose id matches a glob (fnmatch); a bare paper name "
                        "such as 'support' selects all its claims; repeatable")
    p.add_argument("--out", metavar="DIR", default=None, type=_path,
                   help="output directory (default: results/<UTC timestamp>, a new one). An "
                        "existing DIR is reused: what an earlier run left there (report.json, "
                        "report.md and the figures its report lists) is removed first, so the "
                        "folder never mixes "
                        "two runs; nothing else in it is touched")
    p.add_argument("--seed", type=_nonneg_int, default=0, metavar="N",
                   help="run seed, 0 <= N < 2^63; each claim's generator is seeded from it and "
                        "the claim id (default: 0)")
    p.add_argument("--seeds", type=_seed_range, default=None, metavar="N|A-B",
                   help="a seed ensemble: run every claim at N seeds (--seed, --seed + 1, ...) or "
                        "at seeds A to B inclusive; a claim whose verdict changes with the seed is "
                        "UNSTABLE and fails the run; claims that read no seed run once")
    p.add_argument("--baseline", metavar="FILE", default=None, type=_path,
                   help="a stored report.json; a measurement that moved by more than its tol "
                        "(plus its ci half-width) is drift, and drift fails the run")
    p.add_argument("--no-control", action="store_true",
                   help="skip the controls (faster; a check that cannot fail goes "
                        "unnoticed)")
    p.add_argument("--task-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="time limit of one run (a claim at one seed, stated or one control): a run "
                        "that exceeds it is stopped and is that claim's ERROR, and the rest goes on. "
                        "Serial runs stop Python code and sleeps; with --workers/--scheduler a run "
                        "stuck in compiled code has its worker restarted after a grace period")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_workers, default=None, metavar="N",
                       help="run on a local Dask cluster of N single-threaded worker processes "
                            "(each a share of the cores); one task per (claim, seed, control) "
                            "run, the same report as a serial run (needs the [distributed] extra)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", type=_scheduler,
                       help="run on an existing Dask cluster: a scheduler address "
                            "(tcp://host:8786) or a scheduler file (JSON)")


def _add_sweep(sub: Any) -> None:
    p = sub.add_parser(
        "sweep", help="run one claim over a grid of its parameters",
        description="Run one claim's stated run (no controls) at every point of a grid of its sweepable "
                    "parameters, and write sweep.json, sweep.csv (one row per grid point: every "
                    "measurement, prediction, tolerance and verdict) and sweep.png (measured against "
                    "predicted across the grid) into --out. Exit status 0 if every point gives the "
                    "claim's expected verdict, 1 otherwise, 2 on bad arguments.")
    p.add_argument("claim", metavar="CLAIM", help="the claim id (see 'guidance-verify list')")
    p.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2,...",
                   help="a sweepable parameter and its values; repeat for a product grid")
    p.add_argument("--profile", default="quick", metavar="{quick,full,reduced}",
                   help="the parameters the grid's values replace (default: quick)")
    p.add_argument("--seed", type=_nonneg_int, default=0, metavar="N", help="run seed (default: 0)")
    p.add_argument("--out", metavar="DIR", default=None, type=_path,
                   help="output directory (default: results/sweep-<UTC timestamp>)")
    p.add_argument("--task-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="time limit of the run at one grid point (then ERROR for that point)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_workers, default=None, metavar="N",
                       help="one task per grid point on a local Dask cluster of N workers")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", type=_scheduler,
                       help="one task per grid point on an existing Dask cluster")


def _add_sample(sub: Any) -> None:
    p = sub.add_parser(
        "sample", help="draw guided samples from a test target",
        description="Draw guided samples from one of the exact test targets with a chosen "
                    "sampler and save them.")
    p.add_argument("--target", choices=TARGETS, default="two_class",
                   help="test target (default: two_class)")
    p.add_argument("--method", choices=METHODS, default="ddim", help="sampler (default: ddim)")
    p.add_argument("--n", type=_pos_int, default=1000,
                   help=f"number of samples, 1 <= n <= {MAX_SAMPLES:.0e} (held in memory; "
                        f"'1e6' is read as 1000000) (default: 1000)")
    p.add_argument("--guidance", type=_finite_float, default=1.0,
                   help="guidance strength w >= 0 (default: 1.0, no extra guidance)")
    p.add_argument("--label", type=_label, default=0,
                   help="class label to guide to, one of the target's classes (default: 0)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="seed, 0 <= seed < 2^63 (default: 0)")
    p.add_argument("--out", metavar="DIR", default=None, type=_path,
                   help="directory for samples.npy and samples.png (default: "
                        "results/sample-<UTC timestamp>); checked writable before sampling; a "
                        "DIR already holding samples.npy or samples.png is refused unless --force")
    p.add_argument("--force", action="store_true",
                   help="overwrite samples.npy / samples.png already in --out")


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="time one guided sampler step (Numba, NumPy, torch, JAX, GEMM floor)",
        description="Time one guided DDIM and DDPM step of a K-component mixture for each backend "
                    "(ns per particle-step, median of repeats after warm-up, with spread and ratios "
                    "to Numba), plus Numba compile times (cold and cached) and the import time.")
    p.add_argument("--quick", action="store_true", help="a reduced grid, Numba compile timed from cache only (under a minute)")
    p.add_argument("--json", metavar="PATH", default=None, type=_path,
                   help="write the records {K, d, N, step, backend, ns_per_particle_step, ...}")
    p.add_argument("--suite", action="store_true",
                   help="also time `guidance-verify run` (quick profile) cold (empty Numba cache) and warm "
                        "(several minutes; always done without --quick)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test-sized grid


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``guidance-verify`` (subcommands run, list, derive, sweep, sample, bench)."""
    parser = _Parser(
        prog=PROG,
        description="Verified numerics for the theory of guided diffusion sampling: check the "
                    "claims of the seed papers, claim by claim, each with its named controls.",
        epilog="Run 'guidance-verify <command> --help' for the options of a command.")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    _add_run(sub)
    sub.add_parser("list", help="list the claims",
                   description="List the claims with their paper, provenance, expected outcome "
                               "and statement.")
    d = sub.add_parser("derive", help="print the symbolic derivations",
                       description="Print every derivation of theory/ (SymPy); with --out, "
                                   "also write them as Markdown files.")
    d.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    d.add_argument("--out", metavar="DIR", default=None, type=_path,
                   help="write Markdown derivations here")
    _add_sweep(sub)
    _add_sample(sub)
    _add_bench(sub)
    from numerics.audit.command import add_parser as _add_audit  # argparse only: importing it is cheap

    _add_audit(sub)
    return parser


# --------------------------------------------------------------------------- helpers


_NO_CLAIMS = ("no claims found: no claim module is declared in the entry-point group "
              "'guidance_verify.claims' (is guidance-verify installed? 'pip install -e .' "
              "refreshes the entry points) and GUIDANCE_VERIFY_CLAIM_MODULES is not set")


def _claims(registry: ClaimSource) -> dict[str, "Claim"]:
    """The injected claims, or those of every claim module; none at all is a UsageError."""
    if registry is None:
        from numerics.checks import load_all

        claims = load_all()
        if not claims:
            raise UsageError(_NO_CLAIMS)
        return claims
    if isinstance(registry, Mapping):
        return dict(registry)
    return {c.id: c for c in registry}


def _default_out(prefix: str = "") -> Path:
    stamp = prefix + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path("results") / stamp
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{stamp}-{k}")
    return out


def _writable_dir(out: Path, flag: str = "--out") -> Path:
    """Create ``out`` and prove it writable, or raise UsageError naming ``flag``."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"cannot write to {flag} {str(out)!r}: it is an existing file, "
                         f"not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"cannot write to {flag} {str(out)!r}: {exc.strerror or exc}") from None
    return out


def _select(claims: dict[str, "Claim"], only: Sequence[str] | None) -> list["Claim"]:
    """Selected claims; import-error pseudo-claims always run (they may hide the ones asked for)."""
    from numerics.checks.runner import NoMatchError, select

    broken = [c for c in claims.values() if c.paper == "import"]
    real = {k: c for k, c in claims.items() if c.paper != "import"}
    try:
        chosen = select(real, only)
    except NoMatchError as exc:
        hint = (f"; claim modules that failed to import: "
                f"{', '.join(c.module for c in broken)}") if broken else ""
        raise UsageError(f"{exc}{hint}") from None
    return chosen + broken


def _console(stderr: bool = False) -> Any:
    """A rich console; 160 columns when not a terminal (logs, CI) and $COLUMNS is unset."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = not getattr(stream, "isatty", lambda: False)() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=160 if wide else None)


_STYLE = {"holds": "green", "fails-as-predicted": "cyan"}


def _style(verdict: str) -> str:
    return _STYLE.get(verdict, "bold red")


# --------------------------------------------------------------------------- run


def _results_table(run: "RunReport") -> Any:
    from rich.table import Table

    from numerics.checks.report import control_text, measured_text, predicted_text

    drift = run.baseline is not None
    table = Table(title=f"guidance-verify: {run.profile} profile, seed {run.seed}",
                  show_lines=False)
    for col in ("claim", "measurement", "measured", "predicted", "tol", "ok", "flagged by",
                "verdict", "control") + (("drift",) if drift else ()):
        table.add_column(col, overflow="fold", min_width=5 if col == "drift" else None,
                         no_wrap=col == "claim")
    for r in run.results:
        if r.seed == run.seed and r.reused_from is None:
            _add_claim_rows(table, r, drift, control_text, measured_text, predicted_text)
    return table


def _ensemble_table(run: "RunReport") -> Any:
    """One row per claim: its verdict over the seeds and how many seeds gave each verdict."""
    from collections import Counter

    from rich.markup import escape
    from rich.table import Table

    from numerics.checks.verdict import UNSTABLE

    seeds = run.seeds or []
    table = Table(title=f"seed ensemble: {len(seeds)} seeds ({seeds[0]}-{seeds[-1]})"
                  if seeds else "seed ensemble")
    for col in ("claim", "over seeds", "verdicts (count)"):
        table.add_column(col, overflow="fold")
    for cid, e in run.ensemble.items():
        counts = Counter(e["verdicts"].values())
        text = ", ".join(f"{v} x{n}" for v, n in counts.items())
        if e["seed_independent"]:
            text += " (reads no seed: run once)"
        elif e["verdict"] == UNSTABLE:
            text += "; " + ", ".join(f"seed {s}: {v}" for s, v in e["verdicts"].items()
                                     if v != counts.most_common(1)[0][0])
        verdict = e["verdict"]
        table.add_row(escape(cid), f"[{_style(verdict)}]{verdict}[/]", escape(text))
    return table


def _add_claim_rows(table: Any, r: "ClaimResult", drift: bool, control_text: Any,
                    measured_text: Any, predicted_text: Any) -> None:
    from rich.markup import escape

    from numerics.checks.report import flagged_by_text

    drifted = {d["measurement"] for d in r.drift}
    rows = r.measurements or [None]
    for i, c in enumerate(rows):
        first = i == 0
        head = [r.claim.id if first else ""]
        tail = [f"[{_style(r.verdict)}]{r.verdict}[/]" if first else "",
                escape(control_text(r)) if first else ""]
        if c is None:
            body = [escape(_last_line(r.error) or "(no measurements)"), "", "", "", "", ""]
        else:
            m = c.measurement
            body = [escape(m.name), escape(measured_text(m)), escape(predicted_text(m)),
                    f"{m.tol:.3g}", "[green]yes[/]" if c.passed else "[bold red]no[/]",
                    escape(flagged_by_text(r, m))]
        extra = []
        if drift:
            extra = ["[bold red]DRIFT[/]" if c is not None and c.measurement.name in drifted
                     else ""]
        table.add_row(*head, *body, *tail, *extra)


def _error_lines(run: "RunReport") -> list[str]:
    """One line per claim run or control that raised: what it raised (the table has no room)."""
    from rich.markup import escape

    lines = []
    for r in run.results:
        if r.reused_from is not None:
            continue
        seed = f" (seed {r.seed})" if run.seeds else ""
        if r.error:
            lines.append(f"[bold red]{escape(r.claim.id)}{seed}: {escape(_last_line(r.error, 200))}[/]")
        lines += [f"[bold red]{escape(r.claim.id)}{seed}, control {escape(cr.name)}: "
                  f"{escape(_last_line(cr.error, 200))}[/]" for cr in r.controls if cr.error]
    return lines


def _last_line(text: str | None, width: int = 90) -> str:
    """The last non-empty line of a traceback (the exception), shortened to ``width``."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= width else last[: width - 3] + "..."


def _summary_line(run: "RunReport", out: Path) -> str:
    from collections import Counter

    from rich.markup import escape

    ensemble = run.ensemble
    counts = Counter(e["verdict"] for e in ensemble.values())
    parts = ", ".join(f"{n} {v}" for v, n in counts.items())
    if run.seeds:
        parts += f" (over {len(run.seeds)} seeds, {len(run.results)} claim x seed results)"
    drift = sum(len(r.drift) for r in run.results)
    status = "" if run.status == "complete" else f" [bold red]{run.status.upper()}[/]" + (
        f" ({run.interrupted_by})" if run.interrupted_by else "")
    from numerics.checks.report import matrix_size

    size = matrix_size(run)
    matrix = (f"\ncontrol matrix: {size['flagged_cells']}/{size['cells']} cells flagged "
              f"({size['counted_measurements']} counted measurements, {size['controls']} controls, "
              f"{size['informational']} informational measurements)")
    return (f"{len(ensemble)}/{len(run.planned)} claims: {parts or 'none'}"
            + (f", [bold red]{drift} drifted[/]" if drift else "") + status
            + matrix
            + f"\nwall time {run.wall_time:.1f} s; report: {escape(str(out / 'report.json'))}")


def _load_baseline(path: str | None) -> Any:
    if path is None:
        return None
    from numerics.checks.report import BaselineError, load_baseline

    try:
        return load_baseline(path)
    except BaselineError as exc:
        raise UsageError(f"bad --baseline: {exc}") from None


def _warn_baseline(baseline: Any, args: argparse.Namespace) -> None:
    if baseline is None:
        return
    if (baseline.profile, baseline.seed) != (args.profile, args.seed):
        print(f"{PROG}: warning: baseline was run with profile {baseline.profile!r}, seed "
              f"{baseline.seed!r}; this run uses {args.profile!r}, seed {args.seed}",
              file=sys.stderr)


@contextlib.contextmanager
def _background_compile(wanted: bool) -> Iterator[None]:
    """A serial run of several claims compiles the fast path in a second process meanwhile
    (:class:`numerics.fast.warmup.BackgroundCompile`): the run itself uses one core."""
    if not wanted:
        yield
        return
    from numerics.fast.warmup import BackgroundCompile

    with BackgroundCompile():
        yield


def _execute(claims: list["Claim"], args: argparse.Namespace, out: Path,
             baseline: Any) -> "RunReport":
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    from numerics.checks.runner import run_claims

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_console(stderr=True), transient=True) as bar:
        seeds = _seed_list(args)
        n_tasks = len(claims) * len(seeds or [0])
        task = bar.add_task("starting", total=n_tasks)
        with _dask_client(args) as client, _background_compile(client is None and n_tasks > 1):
            return run_claims(
                claims, profile=args.profile, seed=args.seed, seeds=seeds, out_dir=out,
                control=not args.no_control, baseline=baseline, selection=args.only,
                on_start=lambda c, i, n: bar.update(task, description=c.id),
                on_result=lambda r: bar.advance(task), client=client, task_timeout=args.task_timeout,
                figure_processes=1)


def _cmd_run(args: argparse.Namespace, registry: ClaimSource) -> int:
    if args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r} (choose quick, full or reduced)")
    claims = _select(_claims(registry), args.only)
    baseline = _load_baseline(args.baseline)
    out = _writable_dir(Path(args.out) if args.out else _default_out())
    _warn_baseline(baseline, args)
    from numerics.checks.runner import sigterm_as_interrupt

    with sigterm_as_interrupt():  # kill / timeout / a batch scheduler: the report says INTERRUPTED, as after Ctrl-C
        run = _execute(claims, args, out, baseline)
    console = _console()
    console.print(_results_table(run))
    for line in _error_lines(run):
        console.print(line)
    if run.seeds:
        console.print(_ensemble_table(run))
    console.print(_summary_line(run, out))
    if run.error:
        print(f"{PROG}: error: {run.error}", file=sys.stderr)
    return run.exit_code()


# --------------------------------------------------------------------------- other commands


def _cmd_sweep(args: argparse.Namespace, registry: ClaimSource) -> int:
    from numerics.checks import sweep as S

    if args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r} (choose quick, full or reduced)")
    claims = {k: c for k, c in _claims(registry).items() if c.paper != "import"}
    if args.claim not in claims:
        raise UsageError(f"no claim {args.claim!r} (see 'guidance-verify list')")
    claim = claims[args.claim]
    try:
        grid = S.parse_grid(claim, args.grid)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = _writable_dir(Path(args.out) if args.out else _default_out("sweep-"))
    with _dask_client(args) as client:
        rows = S.run_sweep(claim, grid, profile=args.profile, seed=args.seed, client=client,
                           task_timeout=args.task_timeout)
    S.write_sweep(claim, grid, rows, out, args.profile, args.seed)
    expected = {"holds": "holds", "fails-as-predicted": "fails-as-predicted"}[claim.expect]
    bad = [r for r in rows if r.verdict != expected]
    console = _console()
    for r in rows:
        point = ", ".join(f"{k}={v}" for k, v in r.point.items())
        console.print(f"{point}: {r.verdict}" + (f" ({r.error.strip().splitlines()[-1]})" if r.error else ""))
    console.print(f"{len(rows) - len(bad)}/{len(rows)} grid points {expected}; "
                  f"table and figure: {out / 'sweep.csv'}, {out / 'sweep.png'}")
    return 1 if bad else 0


def _cmd_list(registry: ClaimSource) -> int:
    from rich.markup import escape
    from rich.table import Table

    claims = _claims(registry)
    table = Table(title=f"{len(claims)} claims")
    for col in ("claim", "paper", "provenance", "expect", "controls", "statement"):
        table.add_column(col, overflow="fold")
    for c in claims.values():
        control = (", ".join(c.controls) if c.control != "none"
                   else f"none ({c.control_reason})")
        table.add_row(*(escape(x) for x in (c.id, c.paper, c.provenance, c.expect, control,
                                            c.statement)))
    _console().print(table)
    broken = [c.module for c in claims.values() if c.paper == "import"]
    for module in broken:
        print(f"{PROG}: error: claim module {module!r} failed to import "
              f"('guidance-verify run' shows the traceback)", file=sys.stderr)
    return 1 if broken else 0


def _optional_module(name: str, what: str):
    """Import ``name`` lazily (it pulls in SymPy or matplotlib); ``None`` after printing why it failed."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        print(f"{PROG}: error: {what} is not available: {exc}", file=sys.stderr)
        return None


def _cmd_derive(args: argparse.Namespace) -> int:
    derive = _optional_module("theory.derive", "theory.derive")
    if derive is None:
        return 1
    out = _writable_dir(Path(args.out)) if args.out is not None else None  # before the work
    derive.print_all(latex=args.latex)
    if out is not None:
        derive.write_markdown(str(out))
    return 0


SAMPLE_FILES = ("samples.npy", "samples.png")


def _sample_out(args: argparse.Namespace) -> tuple[Path, bool]:
    """The checked output directory of ``sample`` (created, writable) and whether it is new."""
    out = Path(args.out) if args.out is not None else _default_out("sample-")
    if out.is_dir() and not args.force:
        there = [name for name in SAMPLE_FILES if (out / name).exists()]
        if there:
            raise UsageError(f"--out {str(out)!r} already holds {' and '.join(there)}; "
                             f"pass --force to overwrite")
    new = not out.exists()
    return _writable_dir(out), new


def _cmd_sample(args: argparse.Namespace) -> int:
    out, new = _sample_out(args)  # before sampling: a bad --out must not cost the sampling
    args.out = str(out)
    rc = 1
    try:
        cli_sample = _optional_module("numerics.cli_sample", "the sample command")
        if cli_sample is not None:
            rc = cli_sample.run(args)
            rc = rc if isinstance(rc, int) else 0
    finally:
        if rc != 0 and new:
            _remove_if_empty(out)
    return rc


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _cmd_bench(args: argparse.Namespace) -> int:
    from numerics.bench.timing import main_bench

    if args.json is not None:
        target = Path(args.json)
        parent = target.resolve().parent
        if target.is_dir():
            raise UsageError(f"cannot write --json {args.json!r}: it is a directory")
        if not parent.is_dir():
            raise UsageError(f"cannot write --json {args.json!r}: no directory {str(parent)!r}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write --json {args.json!r}: directory {str(parent)!r} "
                             f"is not writable")
    return main_bench(quick=args.quick, tiny=args.tiny, json_path=args.json,
                      suite_timing=args.suite or not (args.quick or args.tiny))


def _cmd_audit(args: argparse.Namespace) -> int:
    """``audit LIBRARY``: numerics.audit.command; its usage errors (and a missing [audit] extra) exit 2."""
    from numerics.audit.command import AuditUsageError, run

    out = Path(args.out) if args.out is not None else _default_out("audit-")
    new = not out.exists()
    out = _writable_dir(out)
    try:
        return run(args, out)
    except AuditUsageError as exc:
        if new:
            _remove_if_empty(out)
        raise UsageError(str(exc)) from None


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None, *, registry: ClaimSource = None) -> int:
    """Run ``guidance-verify`` with arguments ``argv`` (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : sequence of str, optional
    registry : mapping id -> Claim, or iterable of Claim, optional
        The claims ``run`` and ``list`` use instead of :func:`numerics.checks.load_all`
        (tests and embedding code inject claims this way).

    Returns
    -------
    int
        The exit status (see the module docstring); bad arguments print one line and return 2,
        ``--help`` returns 0, instead of exiting.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            return _cmd_run(args, registry)
        if args.command == "list":
            return _cmd_list(registry)
        if args.command == "derive":
            return _cmd_derive(args)
        if args.command == "bench":
            return _cmd_bench(args)
        if args.command == "sweep":
            return _cmd_sweep(args, registry)
        if args.command == "audit":
            return _cmd_audit(args)
        return _cmd_sample(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        term = type(exc).__name__ == "Terminated"
        print(f"{PROG}: error: interrupted ({'SIGTERM' if term else 'Ctrl-C'})", file=sys.stderr)
        return 143 if term else 130
    except OSError as exc:  # e.g. disk full while writing samples or derivations
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{PROG}: error: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

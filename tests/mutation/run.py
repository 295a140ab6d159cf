r"""Run the mutation suite: apply each curated mutant to a temporary copy of the package and check that the
claims (or, for numerical safeguards, the named unit test) catch it.

    python -m tests.mutation.run                 # every mutant, one copy at a time
    python -m tests.mutation.run --jobs 2        # two copies in parallel
    python -m tests.mutation.run --only 'gen_*'  # mutants whose id matches a glob (repeatable)
    python -m tests.mutation.run --list          # the mutants and what should catch them

For every mutant the runner copies ``numerics/``, ``theory/`` and ``pyproject.toml`` (and ``tests/`` for a
test mutant) into a fresh temporary directory, without any ``__pycache__`` (so no stale bytecode or Numba
cache), replaces the mutant's ``original`` text (which must occur exactly once) and runs, with
``PYTHONPATH=<copy>``, ``cwd=<copy>`` and a fresh ``NUMBA_CACHE_DIR`` inside the copy,

    python -c <print numerics.__file__; numerics.cli.main> run --only <globs> --no-control --out <copy>/out

(``guidance-verify run`` of the copy: the subprocess prints the path of the ``numerics`` it imported and the
runner refuses a run that did not import the copy; the installed package is an editable install of the
working tree, which a plain ``guidance-verify`` would run instead).  A claim mutant is **caught** when that run
exits non-zero and its ``report.json`` has a selected claim VIOLATED, ERROR or UNSTABLE that held in the
baseline.  A test mutant is caught when ``python -m pytest <node id>`` fails on the copy.  ``regen``
mutants (derivations in ``theory/``) first regenerate ``numerics/generated/integrator_coeffs.py`` in the copy
with ``python -m theory.codegen``.

Alongside the mutants, the runner runs the same command on an unmutated copy over the union of all selected
globs (the *baseline*; all copies come from one snapshot of the working tree taken at the start): a claim
that fails there cannot catch anything, and a failing baseline fails the suite (exit 2).  Output: a table (mutant, kind, status, what caught it, time), the scores caught-by-claims /
claim mutants and caught-by-tests / test mutants, the survivors, and the total wall time.  ``--json PATH``
writes the same as JSON.

Exit status: 0 every mutant caught; 1 some mutant survived (or its run failed to run); 2 bad input or a
failing baseline.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

if __package__ in (None, ""):  # ``python tests/mutation/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.mutation.mutants import MUTANTS, Mutant  # noqa: E402
else:
    from .mutants import MUTANTS, Mutant

REPO = Path(__file__).resolve().parents[2]
#: What a copy holds (tests/ only for test mutants).
COPIED = ("numerics", "theory", "pyproject.toml")
#: Claim verdicts that count as catching a mutant.
CATCHING = ("VIOLATED", "ERROR", "UNSTABLE")
#: Per-run time limit (seconds); a run that exceeds it is not counted as catching.
DEFAULT_TIMEOUT = 900.0

#: Runs ``guidance-verify`` from the copy and proves it: the first line is the imported package's path.
#: At exit it prints the CPU seconds the run used (all threads), a measure that does not depend on the load.
_CLI = ("import atexit, resource, sys, numerics, theory; "
        "print('MUTATION-NUMERICS', numerics.__file__, theory.__file__, flush=True); "
        "atexit.register(lambda: print('MUTATION-CPU', sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), flush=True)); "
        "from numerics.cli import main; sys.exit(main(sys.argv[1:]))")
#: ``python -c _MODULE mod args...`` is ``python -m mod args...`` that also prints its CPU seconds at exit.
_MODULE = ("import atexit, resource, runpy, sys; "
           "atexit.register(lambda: print('MUTATION-CPU', sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), flush=True)); "
           "mod = sys.argv[1]; sys.argv = [mod] + sys.argv[2:]; runpy.run_module(mod, run_name='__main__', alter_sys=True)")


@dataclass
class Result:
    id: str
    kind: str
    status: str  # CAUGHT, SURVIVED, FAILED-TO-RUN, BASELINE
    caught_by: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0
    cpu_seconds: float | None = None  #: CPU time of the claims run (all threads), independent of the load
    returncode: int | None = None
    verdicts: dict[str, str] = field(default_factory=dict)  #: claim id -> verdict of the run


# ----------------------------------------------------------------------------------------------- copies
def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in ("__pycache__", ".pytest_cache", ".hypothesis", "results")
            or n.endswith((".pyc", ".nbi", ".nbc"))}


def make_copy(dest: Path, with_tests: bool = False, source: Path = REPO) -> Path:
    """A copy of the package (``numerics``, ``theory``, ``pyproject.toml``, optionally ``tests``) of ``source``
    in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED + (("tests",) if with_tests else ()):
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def apply(mutant: Mutant, root: Path) -> None:
    """Replace ``mutant.original`` by ``mutant.replacement`` in ``root/mutant.file`` (exactly one occurrence)."""
    path = root / mutant.file
    text = path.read_text()
    n = text.count(mutant.original)
    if n != 1:
        raise AssertionError(f"{mutant.id}: the original text occurs {n} times in {mutant.file}, expected once")
    if mutant.replacement == mutant.original:
        raise AssertionError(f"{mutant.id}: the replacement equals the original")
    path.write_text(text.replace(mutant.original, mutant.replacement))


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GUIDANCE_VERIFY_CLAIM_MODULES", None)  # the copy's own entry-point list
    env.update(PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(root / ".numba_cache"), MPLBACKEND="Agg",
               PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("NUMBA_NUM_THREADS", "1")
    return env


def _run(cmd: list[str], root: Path, timeout: float) -> tuple[int | None, str]:
    try:
        p = subprocess.run(cmd, cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out
    return p.returncode, p.stdout


def _imported_copy(output: str, root: Path) -> bool:
    for line in output.splitlines():
        if line.startswith("MUTATION-NUMERICS "):
            paths = line.split()[1:]
            return bool(paths) and all(Path(p).resolve().is_relative_to(root.resolve()) for p in paths)
    return False


def cpu_seconds(output: str) -> float | None:
    """The CPU seconds a run printed at exit (``None`` if it did not get there)."""
    for line in reversed(output.splitlines()):
        if line.startswith("MUTATION-CPU "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def run_claims(root: Path, globs: tuple[str, ...] | list[str], timeout: float) -> tuple[int | None, dict | None, str]:
    """``guidance-verify run --only globs --no-control`` of the copy at ``root``: (exit code, report, output)."""
    out = root / "out"
    cmd = [sys.executable, "-c", _CLI, "run", "--only", *globs, "--no-control", "--out", str(out)]
    rc, text = _run(cmd, root, timeout)
    if not _imported_copy(text, root):
        raise RuntimeError(f"the run did not import the copy at {root} (or did not start):\n{text[-2000:]}")
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        report = None
    return rc, report, text


def verdicts(report: dict | None) -> dict[str, str]:
    """``claim id -> verdict`` of a report (empty if there is none)."""
    if not report:
        return {}
    return {c.get("id"): c.get("verdict") for c in report.get("claims", []) if isinstance(c, dict)}


def _tail(text: str, n: int = 6) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-600:]


# ----------------------------------------------------------------------------------------------- one mutant
def selected(claim_id: str, globs) -> bool:
    """Whether ``--only globs`` selects ``claim_id`` (the harness's rule: an fnmatch glob, or a bare prefix
    such as a paper name)."""
    return any(fnmatch.fnmatchcase(claim_id, g) or fnmatch.fnmatchcase(claim_id, g + ".*") for g in globs)


def judge(res: Result, m: Mutant, baseline: dict[str, str]) -> Result:
    """Decide a claim mutant's run (status ``PENDING``) against the baseline verdicts: CAUGHT when the run
    failed (non-zero exit) with a claim its globs select VIOLATED, ERROR or UNSTABLE that did not fail in the
    baseline.  Only selected claims count: the harness also runs import-error pseudo-claims of every claim
    module, which a mutant of one paper's helpers must not be credited with."""
    if res.status != "PENDING":
        return res
    res.caught_by = [f"{cid} {v}" for cid, v in res.verdicts.items()
                     if v in CATCHING and baseline.get(cid) not in CATCHING and selected(cid, m.claims)]
    if res.returncode not in (0, None) and res.caught_by:
        res.status = "CAUGHT"
    else:
        res.status = "SURVIVED"
        res.detail = "; ".join(f"{cid} {v}" for cid, v in res.verdicts.items()) + (f" {res.detail}" if res.detail else "")
    return res


def run_mutant(m: Mutant, work: Path, timeout: float, keep: bool, source: Path = REPO) -> Result:
    """Apply ``m`` to a fresh copy of ``source`` and run what should catch it; a claim mutant comes back
    ``PENDING`` (decided by :func:`judge` once the baseline is known)."""
    t0 = time.perf_counter()
    res = Result(m.id, m.kind, "SURVIVED", expected=list(m.claims) if m.test is None else [m.test])
    root = Path(tempfile.mkdtemp(prefix=f"{m.id}.", dir=work))
    try:
        make_copy(root, with_tests=m.test is not None, source=source)
        apply(m, root)
        if m.regen:
            gen = root / "numerics" / "generated" / "integrator_coeffs.py"
            before = gen.read_text()
            rc, text = _run([sys.executable, "-c", _MODULE, "theory.codegen"], root, timeout)
            res.cpu_seconds = cpu_seconds(text)
            if rc != 0:
                res.status, res.detail = "FAILED-TO-RUN", f"codegen exit {rc}: {_tail(text)}"
                return res
            if gen.read_text() == before:
                res.detail = "regeneration left the generated coefficients unchanged (equivalent mutant)"
                return res
        if m.test is not None:
            cmd = [sys.executable, "-c", _MODULE, "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", m.test]
            rc, text = _run(cmd, root, timeout)
            res.returncode, res.cpu_seconds = rc, cpu_seconds(text)
            if rc == 1:
                res.status, res.caught_by = "CAUGHT", [m.test]
                failed = [ln.split()[1] for ln in text.splitlines() if ln.startswith("FAILED ")]
                res.detail = ", ".join(failed[:3])
            elif rc == 0:
                res.detail = "the test passed"
            else:
                res.status, res.detail = "FAILED-TO-RUN", f"pytest exit {rc}: {_tail(text)}"
            return res
        rc, report, text = run_claims(root, m.claims, timeout)
        cpu = cpu_seconds(text)
        res.returncode = rc
        res.cpu_seconds = None if cpu is None else cpu + (res.cpu_seconds or 0.0)
        if rc is None:
            res.detail = f"timed out after {timeout:g} s"
            return res
        if rc == 2 or report is None:
            res.status, res.detail = "FAILED-TO-RUN", f"exit {rc}: {_tail(text)}"
            return res
        res.verdicts = verdicts(report)
        res.status = "PENDING"
        if not res.verdicts:
            res.detail = _tail(text)
        return res
    except Exception as exc:  # noqa: BLE001 - one broken mutant must not stop the suite
        res.status, res.detail = "FAILED-TO-RUN", f"{type(exc).__name__}: {exc}"
        return res
    finally:
        res.seconds = time.perf_counter() - t0
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            res.detail = (res.detail + f" [copy kept: {root}]").strip()


def run_baseline(globs: list[str], work: Path, timeout: float, source: Path = REPO) -> tuple[Result, dict[str, str]]:
    t0 = time.perf_counter()
    root = make_copy(Path(tempfile.mkdtemp(prefix="baseline.", dir=work)), source=source)
    res = Result("(baseline)", "claims", "BASELINE", expected=globs)
    try:
        rc, report, text = run_claims(root, globs, timeout)
    except Exception as exc:  # noqa: BLE001
        res.status, res.detail = "FAILED-TO-RUN", f"{type(exc).__name__}: {exc}"
        return res, {}
    finally:
        res.seconds = time.perf_counter() - t0
        shutil.rmtree(root, ignore_errors=True)
    res.returncode, res.cpu_seconds = rc, cpu_seconds(text)
    got = res.verdicts = verdicts(report)
    failing = [f"{cid} {v}" for cid, v in got.items() if v in CATCHING or v == "INTERRUPTED"]
    if rc != 0 or failing or not got:
        res.status = "FAILED-TO-RUN"
        res.detail = "the unmutated package fails: " + ("; ".join(failing) or f"exit {rc}: {_tail(text)}")
    else:
        res.detail = f"{len(got)} claims, none failing"
    return res, got


# ----------------------------------------------------------------------------------------------- CLI
def select(patterns: list[str] | None) -> list[Mutant]:
    if not patterns:
        return list(MUTANTS)
    chosen = [m for m in MUTANTS if any(fnmatch.fnmatchcase(m.id, p) for p in patterns)]
    missing = [p for p in patterns if not any(fnmatch.fnmatchcase(m.id, p) for m in MUTANTS)]
    if missing:
        raise ValueError(f"--only {' '.join(missing)} matches no mutant (see --list)")
    return chosen


def _table(rows: list[Result]) -> str:
    out = [f"{'mutant':38s} {'kind':6s} {'status':13s} {'wall':>7s} {'cpu':>7s}  caught by / detail"]
    for r in rows:
        what = ", ".join(r.caught_by) if r.caught_by else r.detail
        cpu = "-" if r.cpu_seconds is None else f"{r.cpu_seconds:.1f}s"
        out.append(f"{r.id:38s} {r.kind:6s} {r.status:13s} {r.seconds:6.1f}s {cpu:>7s}  {what}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.mutation.run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="extend", nargs="+", metavar="GLOB", help="mutant id globs (fnmatch)")
    ap.add_argument("--jobs", type=int, default=1, help="copies run in parallel (default 1)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per run (default 900)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated baseline run")
    ap.add_argument("--keep", action="store_true", help="keep the mutated copies (their paths are printed)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--claims", action="extend", nargs="+", metavar="GLOB",
                    help="run every selected claim mutant against these claim globs instead of its own "
                         "(to find which claims catch a mutant)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    try:
        mutants = select(args.only)
    except ValueError as exc:
        print(f"mutation: error: {exc}", file=sys.stderr)
        return 2
    if args.claims:
        mutants = [replace(m, claims=tuple(args.claims)) if m.test is None else m for m in mutants]
    if args.list:
        for m in mutants:
            catch = m.test if m.test is not None else " ".join(m.claims)
            print(f"{m.id:38s} {m.kind:6s} {m.file}\n    {m.description}\n    caught by: {catch}"
                  + ("  [regenerates the coefficients]" if m.regen else ""))
        print(f"{len(mutants)} mutants ({sum(m.kind == 'claims' for m in mutants)} claim, "
              f"{sum(m.kind == 'test' for m in mutants)} test)")
        return 0

    t0 = time.perf_counter()
    base: Result | None = None
    work = Path(tempfile.mkdtemp(prefix="gv-mutation."))
    rows: list[Result] = []
    try:
        # one snapshot of the working tree: the baseline and every mutant start from the same sources, even
        # if the tree is edited while the suite runs
        snapshot = make_copy(work / "snapshot", with_tests=any(m.test is not None for m in mutants))
        for m in mutants:
            n = (snapshot / m.file).read_text().count(m.original) if (snapshot / m.file).is_file() else 0
            if n != 1:
                print(f"mutation: error: {m.id}: the original text occurs {n} times in {m.file}, expected once "
                      "(the file changed: update tests/mutation/mutants.py)", file=sys.stderr)
                return 2
        baseline: dict[str, str] = {}
        globs = sorted({g for m in mutants if m.test is None for g in m.claims})
        # longest first (regenerating and multi-claim mutants), so parallel copies finish together
        order = sorted(mutants, key=lambda m: (not m.regen, -len(m.claims)))
        with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            # the baseline runs alongside the mutants (first in the queue); the claim mutants are judged
            # against it once everything has run
            fbase = pool.submit(run_baseline, globs, work, args.timeout, snapshot) \
                if globs and not args.no_baseline else None
            futures = {pool.submit(run_mutant, m, work, args.timeout, args.keep, snapshot): m for m in order}
            for fut in cf.as_completed(futures):
                r = fut.result()
                rows.append(r)
                print(f"  {r.id:38s} {'ran' if r.status == 'PENDING' else r.status:13s} {r.seconds:6.1f}s",
                      flush=True)
            if fbase is not None:
                base, baseline = fbase.result()
        byid = {m.id: m for m in mutants}
        rows = [judge(r, byid[r.id], baseline) for r in rows]
        if base is not None:
            print(_table([base]), flush=True)
            if base.status != "BASELINE":
                print(_table(rows))
                print("mutation: the baseline (unmutated package) fails; mutation scores would mean nothing",
                      file=sys.stderr)
                return 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rank = {m.id: i for i, m in enumerate(mutants)}
    rows.sort(key=lambda r: rank[r.id])
    wall = time.perf_counter() - t0
    claim_rows = [r for r in rows if r.kind == "claims"]
    test_rows = [r for r in rows if r.kind == "test"]
    n_c = sum(r.status == "CAUGHT" for r in claim_rows)
    n_t = sum(r.status == "CAUGHT" for r in test_rows)
    survivors = [r for r in rows if r.status != "CAUGHT"]
    print()
    print(_table(rows))
    print()
    print(f"caught by claims: {n_c}/{len(claim_rows)}"
          + (f" ({100.0 * n_c / len(claim_rows):.0f}%)" if claim_rows else ""))
    print(f"caught by tests:  {n_t}/{len(test_rows)}"
          + (f" ({100.0 * n_t / len(test_rows):.0f}%)" if test_rows else ""))
    if survivors:
        print("survivors (each a missing check):")
        for r in survivors:
            print(f"  {r.id} [{r.status}] expected {' '.join(r.expected)}: {r.detail}")
    else:
        print("survivors: none")
    cpu = sum(r.cpu_seconds or 0.0 for r in rows) + ((base.cpu_seconds or 0.0) if base is not None else 0.0)
    print(f"wall time {wall:.1f} s ({args.jobs} job{'s' if args.jobs > 1 else ''}); CPU time of all runs "
          f"{cpu:.1f} s (baseline included)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "caught_by_claims": [n_c, len(claim_rows)], "caught_by_tests": [n_t, len(test_rows)],
            "wall_time_s": wall, "jobs": args.jobs, "results": [asdict(r) for r in rows]}, indent=2))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

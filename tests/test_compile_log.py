"""numerics.checks.compile_log: which Numba functions a claim compiled, exclusive times, and the report fields."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from numba import njit

from numerics.checks import report
from numerics.checks.claim import Measurement, claim
from numerics.checks.compile_log import Compiled, merge_compiled, record_compiles
from numerics.checks.runner import run_claim

ROOT = Path(__file__).resolve().parents[1]


def _fresh_pair():
    """Two new dispatchers (never compiled): ``outer`` calls ``inner``."""
    @njit
    def inner(x):
        return 2.0 * x

    @njit
    def outer(x):
        return inner(x) + 1.0

    return outer


def test_nested_compilations_are_recorded_with_exclusive_times() -> None:
    outer = _fresh_pair()
    with record_compiles() as log:
        start = time.perf_counter()
        assert outer(1.0) == 3.0
        elapsed = time.perf_counter() - start
    names = [c.function.rsplit(".", 1)[-1] for c in log]
    assert sorted(names) == ["inner", "outer"]
    assert all(c.signature == "(float64)" and c.seconds >= 0.0 for c in log)
    # exclusive times: the inner compile is not charged to outer again, so the sum fits in the call
    assert sum(c.seconds for c in log) <= elapsed
    with record_compiles() as again:
        outer(2.0)  # compiled already: nothing new
    assert again == []


def test_merge_sums_signatures_costliest_first() -> None:
    rows = merge_compiled([Compiled("m.f", "(int64)", 1.0), Compiled("m.g", "(float64)", 3.0),
                           Compiled("m.f", "(float64)", 2.5)])
    assert rows == [{"function": "m.f", "signatures": 2, "s": 3.5}, {"function": "m.g", "signatures": 1, "s": 3.0}]


def test_loads_from_the_disk_cache_are_not_compilations(tmp_path: Path) -> None:
    (tmp_path / "gv_cached_kernel.py").write_text(textwrap.dedent("""
        from numba import njit

        @njit(cache=True)
        def twice(x):
            return 2.0 * x
    """))
    code = ("from numerics.checks.compile_log import record_compiles\n"
            "import gv_cached_kernel\n"
            "with record_compiles() as log:\n"
            "    gv_cached_kernel.twice(1.0)\n"
            "print([c.function for c in log])\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           check=True, cwd=tmp_path).stdout.strip() for _ in range(2)]
    assert runs == ["['gv_cached_kernel.twice']", "[]"]


def test_the_report_names_what_each_run_compiled(tmp_path: Path) -> None:
    """Stated run and control each compile a new kernel: the claim's ``compile_s`` is their sum, ``compiled``
    names the kernel (two signatures: one per run), and report.md says it."""
    def body(ctx):
        outer = _fresh_pair()
        value = outer(1.0) + (5.0 if ctx.broken else 0.0)
        return [Measurement(name="m", measured=value, predicted=3.0, kind="equal", tol=0.1, reason="test")]

    reg: dict = {}
    claim(id="tmpcompile.one", paper="tmpcompile", statement="s", note="test", provenance="standard",
          registry=reg, controls={"bump": "adds 5 (test only)"})(body)
    result = run_claim(reg["tmpcompile.one"])
    assert result.verdict == "holds"
    doc = report.jsonable(report.report_dict(_run_of(result)))
    entry = doc["claims"][0]
    assert entry["controls"][0]["compile_s"] > 0.0
    assert entry["compile_s"] == sum(c.seconds for c in result.all_compiled) > entry["controls"][0]["compile_s"]
    outer_row = next(r for r in entry["compiled"] if r["function"].endswith("_fresh_pair.<locals>.outer"))
    assert outer_row["signatures"] == 2
    json.dumps(doc)
    assert "Numba compilation" in report.render_markdown(_run_of(result))


def _run_of(result):
    from numerics.checks.results import RunReport

    run = RunReport(profile="quick", seed=0, control=True, planned=[result.claim.id])
    run.results.append(result)
    return run


def test_read_only_points_compile_no_second_specialisation() -> None:
    """Numba types a read-only array apart from a writeable one; validation copies it, so a read-only ``x`` reaches
    the reference kernel with the signature a writeable one compiled (a second specialisation cost about 16 s of
    a cold quick run before)."""
    import numpy as np

    from numerics.mixture import GaussianMixture

    gm = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], np.stack([0.5 * np.eye(2)] * 2), labels=[0, 1])
    x = np.linspace(-1.0, 1.0, 8).reshape(4, 2)
    expected = gm.score(x, 0.5)
    x.setflags(write=False)
    with record_compiles() as log:
        got = gm.score(x, 0.5)
    assert log == []
    np.testing.assert_array_equal(got, expected)

"""Figures drawn in another process (numerics.checks.figure_pool): the same files and report fields as
figures drawn in line, whatever kind of figure; nothing lost when the pool cannot take a result, when
its process dies or when the wait for the last figures is interrupted."""
from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from numerics.checks import report
from numerics.checks.claim import Context, Measurement
from numerics.checks.figure_pool import FigurePool
from numerics.checks.runner import run_claim, run_claims
from tests.test_harness import GOOD, make_claim, meas, no_temp_files
from tests.test_plots import _rate_claim


def _drawing(ctx: Context) -> list[Measurement]:
    ax = ctx.figure(figsize=(2, 3)).add_subplot()
    ax.plot([0, 1], [0, 1 + ctx.broken])
    return [meas(float(ctx.broken))]


def _claims():
    return [make_claim("t.rate", _rate_claim, controls={"half_order": "half order (test only)"}),
            make_claim("t.draw", _drawing), GOOD]


def _fields(run) -> list[tuple]:
    return [(r.claim.id, r.verdict, r.figure, r.figure_kind, r.figure_error) for r in run.results]


def test_pool_figures_are_the_inline_figures_byte_for_byte(tmp_path: Path) -> None:
    inline = run_claims(_claims(), out_dir=tmp_path / "inline")
    pooled = run_claims(_claims(), out_dir=tmp_path / "pool", figure_processes=1)
    assert _fields(pooled) == _fields(inline)
    assert [r.figure_kind for r in pooled.results] == ["science", "own", "default"]
    for r in inline.results:
        a, b = (tmp_path / "inline" / r.figure).read_bytes(), (tmp_path / "pool" / r.figure).read_bytes()
        assert a[:8] == b"\x89PNG\r\n\x1a\n" and a == b, r.figure
    assert no_temp_files(tmp_path / "pool")
    assert all(r.plot is None for r in pooled.results)  # freed once sent


def test_a_result_that_does_not_pickle_is_drawn_in_line(tmp_path: Path) -> None:
    res = run_claims([make_claim("t.rate", _rate_claim)], out_dir=None).results[0]
    res = type(res)(**{**res.__dict__})
    res.plot = None
    res.figure_obj = None
    res.drift = [{"unpicklable": lambda: None}]  # a lambda does not pickle: the pool draws it here
    pool = FigurePool(tmp_path, 1)
    pool.submit(res)
    pool.close()
    assert res.figure == "figures/t.rate.png" and res.figure_kind == "default"
    assert (tmp_path / res.figure).stat().st_size > 0


class _FailingExecutor:
    """Stands in for the drawing processes: every figure's future raises ``exc``, at once (``pending=False``)
    or only when the run waits for it (``pending=True``: the future is not done before)."""

    def __init__(self, exc: BaseException, pending: bool = False) -> None:
        self.exc, self.pending = exc, pending

    def submit(self, *a: object, **k: object) -> Future:
        if self.pending:
            exc = self.exc

            class Waiting(Future):
                def result(self, timeout: float | None = None) -> object:
                    raise exc

            return Waiting()
        fut: Future = Future()
        fut.set_exception(self.exc)
        return fut

    def shutdown(self, **k: object) -> None:
        pass


def _pool_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException,
                  pending: bool = False) -> FigurePool:
    pool = FigurePool(tmp_path, 1)
    monkeypatch.setattr(pool, "_pool", lambda: _FailingExecutor(exc, pending))
    return pool


def test_a_dead_drawing_process_loses_no_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool_failing(tmp_path, monkeypatch, BrokenProcessPool("the drawing process died"))
    res = run_claim(make_claim("t.rate", _rate_claim))
    assert res.plot
    pool.submit(res)
    res.plot = None  # the runner frees the recordings once submitted: the fallback draws from its copy
    pool.close()
    assert res.figure == "figures/t.rate.png" and res.figure_kind == "science" and res.figure_error is None


def test_a_figure_that_raises_in_the_drawing_process_keeps_its_error(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool_failing(tmp_path, monkeypatch, RuntimeError("renderer broke"))
    res = run_claims([GOOD], out_dir=None).results[0]
    pool.submit(res)
    pool.close()
    assert res.figure is None and "renderer broke" in res.figure_error


def test_an_interrupted_wait_leaves_the_rest_out_and_says_so(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool_failing(tmp_path, monkeypatch, KeyboardInterrupt(), pending=True)
    res = run_claims([GOOD], out_dir=None).results[0]
    pool.submit(res)
    with pytest.raises(KeyboardInterrupt):
        pool.close()
    assert res.figure is None and "interrupted" in res.figure_error


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_bad_process_counts_are_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="processes"):
        FigurePool(tmp_path, bad)  # type: ignore[arg-type]
    if bad != 0:
        with pytest.raises(ValueError, match="figure_processes"):
            run_claims([GOOD], out_dir=tmp_path, figure_processes=bad)  # type: ignore[arg-type]


def test_store_records_a_write_failure_as_the_figure_error(tmp_path: Path) -> None:
    res = run_claims([GOOD], out_dir=None).results[0]
    (tmp_path / "figures").write_text("a file where the folder should be")
    report.store_claim_figure(res, tmp_path, "default", b"png")
    assert res.figure is None and res.figure_error

"""Science figures: the recorder validates what a claim records, the harness draws the stated run's
curves with each control's measured curves, and a broken recording never costs the verdict."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numerics.checks import plots, report
from numerics.checks.claim import Context, Measurement
from numerics.checks.runner import run_claim, run_claims
from tests.test_harness import _png_size, make_claim, meas


def _rate_claim(ctx: Context) -> list[Measurement]:
    """Error ~ h^p, p = 1 stated, p = 0.5 in the control: a rate on log-log axes."""
    h = np.array([0.1, 0.05, 0.025])
    p = 0.5 if ctx.broken else 1.0
    err = 2.0 * h ** p
    ctx.plot.panel("rate", title="error vs step", xlabel="h", ylabel="error", xscale="log",
                   yscale="log")
    ctx.plot.measured("rate", h, err, lo=0.9 * err, hi=1.1 * err)
    ctx.plot.predicted("rate", h, plots.power_law(h, 1.0, (h[0], err[0])), label="slope 1")
    ctx.plot.bound("rate", h, 3.0 * h, label="bound 3h")
    slope = float(np.polyfit(np.log(h), np.log(err), 1)[0])
    return [meas(slope, predicted=1.0, tol=0.05, name="slope")]


def test_power_law_passes_through_its_point_with_its_slope() -> None:
    x = np.array([1.0, 2.0, 4.0])
    y = plots.power_law(x, -2.0, (2.0, 3.0))
    assert y[1] == pytest.approx(3.0)
    assert np.diff(np.log(y)) / np.diff(np.log(x)) == pytest.approx([-2.0, -2.0])


@pytest.mark.parametrize("through,slope", [((0.0, 1.0), 1.0), ((1.0, -1.0), 1.0),
                                           ((1.0, 1.0), float("nan"))])
def test_power_law_rejects_bad_input(through: tuple[float, float], slope: float) -> None:
    with pytest.raises(ValueError, match="through|slope"):
        plots.power_law([1.0], slope, through)


@pytest.mark.parametrize("call,match", [
    (lambda r: r.measured("nope", [1], [1]), "not declared"),
    (lambda r: r.measured("a", [1, 2], [1]), "same length"),
    (lambda r: r.measured("a", [[1]], [[1]]), "one-dimensional"),
    (lambda r: r.measured("a", [1], [1], lo=[0]), "together"),
    (lambda r: r.measured("a", [1], [1], style="bars"), "style"),
    (lambda r: r.bound("a", [1], [1], side="left"), "side"),
    (lambda r: r.panel("b", xscale="loglog"), "xscale"),
    (lambda r: r.panel("", title="x"), "key"),
])
def test_recorder_rejects_bad_recordings(call, match: str) -> None:
    rec = plots.PlotRecorder()
    rec.panel("a")
    with pytest.raises(ValueError, match=match):
        call(rec)


def test_science_figure_draws_stated_and_control_curves(tmp_path: Path) -> None:
    c = make_claim("t.rate", _rate_claim, controls={"half_order": "a first-order method run at "
                                                                  "half order (test only)"})
    r = run_claim(c)
    assert r.verdict == "holds" and r.controls[0].flagged == ["slope"]
    assert r.plot.panels["rate"].xscale == "log"
    assert [cv.role for cv in r.plot.curves] == ["measured", "predicted", "bound"]
    assert r.controls[0].plot.curves[0].y != r.plot.curves[0].y  # the control's own curve
    fig = report.science_figure(r)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "control half_order" in labels and "slope 1" in labels and "bound 3h" in labels
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "holds: 1/1 counted measurements pass; controls: half_order flags 1" in \
        report.verdict_line(r)
    run = run_claims([c], out_dir=tmp_path)
    assert run.results[0].figure == "figures/t.rate.png"
    assert run.results[0].figure_kind == "science"
    assert _png_size(tmp_path / "figures/t.rate.png")[0] == 460  # one 4.6-inch panel at 100 dpi
    assert run.results[0].plot is None  # freed once on disk


def test_science_figure_skips_points_a_log_axis_cannot_show() -> None:
    rec = plots.PlotRecorder()
    rec.panel("p", yscale="log")
    rec.measured("p", [1.0, 2.0, 3.0, 4.0], [1.0, 0.0, -1.0, float("nan")])
    fig = plots.draw(rec.panels, rec.curves)
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [1.0]


def test_a_bad_recording_fails_the_claim_with_its_reason() -> None:
    def bad(ctx: Context) -> list[Measurement]:
        ctx.plot.measured("undeclared", [1], [1])
        return [meas(0.0)]
    r = run_claim(make_claim("t.badplot", bad))
    assert r.verdict == "ERROR" and "not declared" in r.error


def test_a_figure_that_cannot_be_drawn_keeps_the_verdict(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("renderer broke")
    monkeypatch.setattr(plots, "draw", boom)
    run = run_claims([make_claim("t.rate2", _rate_claim,
                                 controls={"half_order": "half order (test only)"})],
                     out_dir=tmp_path)
    r = run.results[0]
    assert r.verdict == "holds" and r.figure is None and "renderer broke" in r.figure_error


def test_line_through_is_nan_where_no_line_exists() -> None:
    assert np.all(np.isnan(plots.line_through([1.0, 2.0], 1.0, 1.0, -0.5)))
    assert np.all(np.isnan(plots.line_through([1.0, 2.0], float("inf"), 1.0, 1.0)))
    assert plots.line_through([1.0, 2.0], 2.0, 1.0, 3.0) == pytest.approx([3.0, 12.0])


def test_decades_and_level() -> None:
    d = plots.decades(0.3, 2.0, num=3)
    assert d[0] == pytest.approx(0.1) and d[-1] == pytest.approx(10.0)
    assert plots.decades(2.0, 3.0, num=2)[-1] == pytest.approx(10.0)  # at least one decade
    assert [list(a) for a in plots.level([3.0, 1.0, 2.0], 5.0)] == [[1.0, 3.0], [5.0, 5.0]]
    assert list(plots.level([2.0], 1.0)[0]) == [1.0, 4.0]


def test_worst_by_param_keeps_the_worst_ratio_per_value() -> None:
    w = plots.WorstByParam()
    w.add(1.0, [1.0, 3.0], [1.0, 10.0])  # ratios 1 and 0.3: the first
    w.add(1.0, [0.5], [0.1])  # ratio 5: replaces it
    w.add(0.5, [2.0, np.nan], 4.0)
    x, e, t = w.arrays()
    assert list(x) == [0.5, 1.0] and list(e) == [2.0, 0.5] and list(t) == [4.0, 0.1]


def test_common_panels_record_what_they_say() -> None:
    rec = plots.PlotRecorder()
    rec.agreement("a", [2.0, 1.0], [-1e-15, 2e-15], 1e-14, title="identity")
    assert rec.panels["a"].yscale == "log"
    meas_a = [c for c in rec.curves if c.panel == "a" and c.role == "measured"][0]
    assert meas_a.x == (1.0, 2.0) and meas_a.y == (2e-15, 1e-15)  # sorted by x, |err|
    rec.agreement("one", [3.0], [1e-15], 1e-14)
    assert rec.panels["one"].xscale == "linear"
    fit = type("Fit", (), {"slope": -1.0, "intercept": 0.0})()
    rec.rate("r", [1.0, 2.0, 4.0], [1.0, 0.5, 0.25], slope=-1.0, fit=fit)
    roles = [(c.role, c.label) for c in rec.curves if c.panel == "r"]
    assert roles == [("measured", "measured"), ("predicted", "predicted slope -1"),
                     ("measured", "fitted slope -1.000")]
    rec.versus_bound("v", [1.0, 10.0], [0.5, 20.0])
    diag = [c for c in rec.curves if c.panel == "v" and c.role == "bound"][0]
    assert diag.x == diag.y


def test_a_control_cloud_stays_a_cloud_and_has_one_legend_entry() -> None:
    rec, ctl = plots.PlotRecorder(), plots.PlotRecorder()
    for r in (rec, ctl):
        r.panel("p")
        r.measured("p", [0.0, 1.0], [0.0, 1.0])
        r.measured("p", [0.0, 1.0], [1.0, 0.0])
    rec.bound("p", [0.0, 1.0], [2.0, 2.0])
    fig = plots.draw(rec.panels, rec.curves, [("sign", ctl.curves, True)])
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels.count("control sign") == 1
    control_lines = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(control_lines) == 2 and all(ln.get_linestyle() == "None" for ln in control_lines)
    stated = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert stated[0].get_color() != stated[1].get_color()  # two stated series, two colours


@pytest.mark.parametrize("with_bound", [False, True])
def test_an_equal_aspect_panel_draws_without_matplotlib_warnings(with_bound: bool, caplog) -> None:
    """Equal-aspect panels (region plots) keep their aspect without matplotlib's "Ignoring fixed x limits"
    warning (logged when fixed limits meet adjustable data limits), with and without a shaded bound."""
    import logging

    rec = plots.PlotRecorder()
    rec.panel("p", equal_aspect=True)
    rec.measured("p", [0.0, 4.0, 1.0], [0.0, 1.0, 0.5])
    if with_bound:
        rec.bound("p", [0.0, 4.0], [2.0, 2.0])
    with caplog.at_level(logging.WARNING, logger="matplotlib"):
        fig = plots.draw(rec.panels, rec.curves)
        fig.canvas.draw()
    assert not [r for r in caplog.records if "Ignoring fixed" in r.getMessage()]
    assert fig.axes[0].get_aspect() == 1.0

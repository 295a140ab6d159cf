r"""Figure helpers of the ``samplers`` and ``discrete_kl`` claims (:mod:`numerics.checks.plots`).

Recording only: each helper turns arrays a claim has already computed into ``ctx.plot`` curves, draws no
random numbers and does not raise on values a control run may produce (a line through a non-positive point
is left out as NaN; non-positive values are skipped by the drawing on log axes).
"""
from __future__ import annotations

import math

import numpy as np

from numerics.checks.plots import PlotRecorder, power_law

#: Drawing styles given in turn to the measured series sharing a panel (the harness colours them alike).
SERIES_STYLES = ("points", "line", "step")


def line_through(x, slope: float, x0: float, y0: float) -> np.ndarray:
    """:func:`~numerics.checks.plots.power_law` of ``slope`` through ``(x0, y0)``; NaN if that point is not positive.

    Parameters
    ----------
    x : array_like
        Abscissae (positive).
    slope : float
        Log-log slope.
    x0, y0 : float
        The point the line goes through.
    """
    if x0 > 0 and y0 > 0 and math.isfinite(x0) and math.isfinite(y0):
        return power_law(x, slope, (x0, y0))
    return np.full(np.shape(x), np.nan)


def decades(lo: float, hi: float, num: int = 16) -> np.ndarray:
    """``num`` log-spaced abscissae from the power of ten below ``lo`` to the one above ``hi`` (positive):
    a curve over them gives a log axis at least two labelled decades (else matplotlib labels minor ticks,
    which crowd)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return np.logspace(a, max(b, a + 1), num)


def agreement(plot: PlotRecorder, key: str, x, err, tol, *, title: str, xlabel: str, ylabel: str = "error",
              xscale: str = "log", tol_label: str = "tolerance") -> None:
    """An identity checked to rounding: the error against the parameter it was checked over (log y), with
    the tolerance as an upper bound curve.

    Parameters
    ----------
    plot : PlotRecorder
        ``ctx.plot``.
    key, title, xlabel, ylabel, xscale : str
        The panel (its y axis is logarithmic; zero errors are not drawn).
    x, err : array_like
        Parameter values and the measured errors there.
    tol : float or array_like
        The tolerance (a scalar, or one per ``x``); at a single ``x`` it is drawn as a short segment (and
        the x axis is linear).
    tol_label : str
        Legend label of the tolerance curve.
    """
    x = np.asarray(x, dtype=float).ravel()
    tb = np.broadcast_to(np.asarray(tol, dtype=float).ravel(), x.shape)
    if x.size == 1:  # a short segment on a linear axis, so that the tolerance at one point shows as a line
        xb, tb, xscale = x + np.array([-1.0, 1.0]) * max(0.25 * abs(x[0]), 0.5), np.repeat(tb, 2), "linear"
    else:
        xb = x
    plot.panel(key, title=title, xlabel=xlabel, ylabel=ylabel, xscale=xscale, yscale="log")
    plot.measured(key, x, err)
    plot.bound(key, xb, tb, label=tol_label)


def versus_bound(plot: PlotRecorder, key: str, bound, value, *, title: str, xlabel: str = "bound",
                 ylabel: str = "measured", bound_label: str = "bound (measured = bound)") -> None:
    """Measured values against the bound each must respect (log-log): the bound is the diagonal, and a
    value lies below it exactly where it respects its bound.

    Parameters
    ----------
    plot : PlotRecorder
        ``ctx.plot``.
    key, title, xlabel, ylabel : str
        The panel.
    bound, value : array_like
        Per case the bound and the measured value (one point each; drawn in order of the bound).
    bound_label : str
        Legend label of the diagonal.
    """
    b = np.asarray(bound, dtype=float).ravel()
    order = np.argsort(b, kind="stable")
    pos = b[np.isfinite(b) & (b > 0)]
    plot.panel(key, title=title, xlabel=xlabel, ylabel=ylabel, xscale="log", yscale="log")
    plot.measured(key, b[order], np.asarray(value, dtype=float).ravel()[order])
    if pos.size:
        d = decades(pos.min() / 1.5, pos.max() * 1.5)
        plot.bound(key, d, d, label=bound_label)


def rate(plot: PlotRecorder, key: str, x, series: list[tuple[str, object]], *, slope: float, title: str,
         xlabel: str, ylabel: str, pred_label: str | None = None) -> None:
    """Rates on log-log axes: a few measured series against ``x`` and the predicted slope through the
    first point of each (labelled once); the series get the styles of :data:`SERIES_STYLES` in turn.

    Parameters
    ----------
    plot : PlotRecorder
        ``ctx.plot``.
    key, title, xlabel, ylabel : str
        The panel.
    x : array_like
        Common abscissae.
    series : list of (label, array_like)
        Measured series (put the fitted slope in the label).
    slope : float
        Predicted log-log slope.
    pred_label : str, optional
        Legend label of the predicted lines (default ``"predicted slope <slope>"``).
    """
    x = np.asarray(x, dtype=float)
    plot.panel(key, title=title, xlabel=xlabel, ylabel=ylabel, xscale="log", yscale="log")
    for i, (label, y) in enumerate(series):
        y = np.asarray(y, dtype=float)
        plot.measured(key, x, y, label=label, style=SERIES_STYLES[i % len(SERIES_STYLES)])
        plot.predicted(key, x, line_through(x, slope, x[0], y[0]),
                       label=(pred_label or f"predicted slope {slope:g}") if i == 0 else "")

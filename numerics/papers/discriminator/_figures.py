"""Small helpers for the discriminator claims' science figures (``ctx.plot``; see :mod:`numerics.checks.plots`).

They only arrange values a claim already computed; nothing here measures or decides anything.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from numerics.checks.plots import PlotRecorder


def staircase(tol: Sequence[float], width: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """A per-check tolerance drawn as a horizontal step ``tol[i]`` over ``[i - width, i + width]``.

    Parameters
    ----------
    tol : sequence of float
        Tolerance of check ``i`` (plotted at abscissa ``i``).
    width : float
        Half-width of each step.

    Returns
    -------
    xs, ys : ndarray
        The polyline (consecutive steps are joined by vertical segments).
    """
    t = np.asarray(tol, dtype=float)
    i = np.arange(t.size, dtype=float)
    xs = np.column_stack([i - width, i + width]).ravel()
    return xs, np.repeat(t, 2)


def agreement(plot: PlotRecorder, key: str, dev: Sequence[float], tol: Sequence[float], *, title: str,
              xlabel: str, x: Sequence[float] | None = None, xscale: str = "linear",
              ylabel: str = "|measured - predicted|") -> None:
    """Panel ``key``: an agreement check's error ``|dev|`` on log y with its tolerance as the upper bound.

    Parameters
    ----------
    plot : PlotRecorder
        The claim's ``ctx.plot``.
    key : str
        Panel key.
    dev, tol : sequence of float
        Signed deviations (measured - predicted) and their tolerances.
    title, xlabel : str
        Panel labels (with ``x`` None, ``xlabel`` should say which check is at which index).
    x : sequence of float, optional
        The parameter the check ran over; None: checks at abscissae 0, 1, ..., each with its own
        tolerance step (:func:`staircase`).
    xscale : str
        Scale of the x axis.
    ylabel : str
        What the error is (the y label).
    """
    if x is not None:  # one tolerance per parameter value: the harness's own panel
        plot.agreement(key, x, dev, tol, title=title, xlabel=xlabel, ylabel=ylabel, xscale=xscale)
        return
    plot.panel(key, title=title, xlabel=xlabel, ylabel=ylabel, xscale=xscale, yscale="log")
    plot.measured(key, np.arange(len(dev), dtype=float), np.abs(dev))
    plot.bound(key, *staircase(tol), label="tolerance")


def thin(n: int, target: int = 100) -> slice:
    """Every k-th of ``n`` grid points, about ``target`` of them (controls draw a marker per point).

    Parameters
    ----------
    n : int
        Number of grid points.
    target : int
        Wanted number of points.
    """
    return slice(None, None, max(1, n // target))

r"""Figure helpers of the support paper's claims (recording into ``ctx.plot``, no drawing, no random numbers).

Every helper records plain arrays the claim already computed (or exact curves on a few hundred points), in the
stated run and in every control's run alike, so the harness can draw each control's measured curves beside the
stated run's.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from numerics.checks.plots import PlotRecorder


def span(xs: Sequence[float], log: bool = True) -> np.ndarray:
    """Two abscissae covering ``xs`` with a margin (a horizontal tolerance line over one or more points).

    Parameters
    ----------
    xs : sequence of float
        The abscissae of the measured points.
    log : bool
        Margin by a factor 1.25 (log axes) or by 5% of the range (at least 0.5, linear axes).
    """
    lo, hi = float(np.min(xs)), float(np.max(xs))
    if log:
        return np.array([lo / 1.25, hi * 1.25])
    pad = max(0.05 * (hi - lo), 0.5)
    return np.array([lo - pad, hi + pad])


def tolerance(plot: PlotRecorder, key: str, xs: Sequence[float], value: float, *, label: str,
              side: str = "upper", log: bool = True) -> None:
    """A constant bound ``value`` (a tolerance, a pass band's edge) drawn over the abscissae ``xs``."""
    x = span(xs, log)
    plot.bound(key, x, np.full(2, float(value)), label=label, side=side)


def endpoints(plot: PlotRecorder, key: str, pts: np.ndarray, label: str = "endpoints") -> None:
    """2-D endpoints as a measured point cloud (non-finite rows dropped by the harness)."""
    p = np.asarray(pts, float).reshape(-1, 2)
    plot.measured(key, p[:, 0], p[:, 1], label=label)


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index runs where ``mask`` is True along a closed curve (a run may wrap around the end)."""
    n = mask.size
    if mask.all():
        return [np.append(np.arange(n), 0)]
    start = int(np.argmin(mask))  # a False index: no run wraps past it
    idx = (np.arange(n) + start) % n
    out, cur = [], []
    for i in idx:
        if mask[i]:
            cur.append(i)
        elif cur:
            out.append(np.array(cur))
            cur = []
    if cur:
        out.append(np.array(cur))
    return out


def outline(region, n: int = 360) -> list[np.ndarray]:
    """The boundary of a planar region of :mod:`numerics.papers.support.region_targets` as polylines.

    Disk / annulus / crescent (disk minus a disk): the arcs of the outer circle outside the hole and of the
    hole's circle inside the disk; the lens: its closed curve.

    Parameters
    ----------
    region : Disk, Annulus, Crescent or Lens
    n : int
        Points per circle (per arc of the lens).

    Returns
    -------
    list of numpy.ndarray, each (m, 2)
    """
    if hasattr(region, "R"):
        th = np.linspace(0, 2 * np.pi, n, endpoint=False)
        u = np.stack([np.cos(th), np.sin(th)], axis=1)
        outer = region.c + region.R * u
        if region.r == 0:
            return [np.concatenate([outer, outer[:1]])]
        hole = region.c2 + region.r * u
        keep_o = np.linalg.norm(outer - region.c2, axis=1) >= region.r
        keep_h = np.linalg.norm(hole - region.c, axis=1) <= region.R
        return [outer[r] for r in _runs(keep_o)] + [hole[r] for r in _runs(keep_h)]
    b = region.boundary(n)
    up, lo = b[:n], b[n:]
    return [np.concatenate([up, lo[::-1], up[:1]])]


def regions(plot: PlotRecorder, key: str, rm, target: int | None = None) -> None:
    """Record the outlines of every region of ``rm`` as reference curves; the class ``target`` (if any) as a
    labelled outline of dots ("target class", 32 dots per circle)."""
    first = True
    for reg, lab in zip(rm.regions, rm.labels):
        is_target = target is not None and int(lab) == int(target)
        for pts in outline(reg, n=32 if is_target else 360):
            label = "target class" if (is_target and first) else ""
            if is_target:
                first = False
            plot.reference(key, pts[:, 0], pts[:, 1], label=label, style="points" if is_target else "line")


def log_density_histogram(values: np.ndarray, bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
    r"""Histogram of :math:`\ln v` of positive values: bin centres :math:`e^{u}` and the density per unit
    :math:`\ln v` (a scale change shifts it along log axes without changing its shape).

    Parameters
    ----------
    values : numpy.ndarray
        Positive values (others are ignored).
    bins : int
        Number of bins over the range of the logs.
    """
    v = np.asarray(values, float)
    u = np.log(v[(v > 0) & np.isfinite(v)])
    if u.size < 2 or u.max() == u.min():
        return np.full(1, np.nan), np.full(1, np.nan)
    dens, edges = np.histogram(u, bins=bins, density=True)
    return np.exp(0.5 * (edges[:-1] + edges[1:])), dens

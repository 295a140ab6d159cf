r"""Science figures: a claim records *what* to plot; the harness draws it with its controls.

A claim function records curves into ``ctx.plot`` (a :class:`PlotRecorder`) in every run, stated
and control alike. The harness keeps the stated run's recording and each control's, and
:func:`draw` turns them into one picture per claim: the measured quantity against the
prediction on its natural axes (a rate on log-log axes with the predicted slope, a density
against the exact one, a bound as a curve above the measured values), with every control's
*measured* curves drawn in the same panels, so that a reader sees how far each modelled bug
moves the measurement and the verdict line printed under the title.

Roles of a curve:

``measured``
    what the run measured (markers, optional ci bars); in a control's run it is drawn as that
    control's curve (crosses, thin line, one colour per control).
``predicted``
    what the theory says (dashed); recorded in the stated run only is enough.
``bound``
    a proven bound (solid black; the forbidden side shaded lightly).
``reference``
    context that is neither measured nor predicted (region outlines, the data's atoms); grey.

The recording is plain data (lists of floats), so it costs nothing when no figure is wanted and a
control run that raises loses nothing of the stated run's picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["Curve", "Panel", "PlotRecorder", "ROLES", "STYLES", "draw", "power_law"]

ROLES = ("measured", "predicted", "bound", "reference")
STYLES = ("points", "line", "step")
_SCALES = ("linear", "log", "symlog")


def power_law(x: Sequence[float] | np.ndarray, slope: float, through: tuple[float, float]) -> np.ndarray:
    r"""The line of a given slope on log-log axes through a point: :math:`y = y_0 (x/x_0)^{p}`.

    Parameters
    ----------
    x : array_like
        Abscissae (positive).
    slope : float
        The exponent :math:`p`.
    through : (float, float)
        The point :math:`(x_0, y_0)`, both positive.
    """
    x0, y0 = (float(v) for v in through)
    if not (x0 > 0 and y0 > 0 and math.isfinite(x0) and math.isfinite(y0)):
        raise ValueError(f"through must be a point with positive finite coordinates, got {through!r}")
    if not math.isfinite(float(slope)):
        raise ValueError(f"slope must be finite, got {slope!r}")
    xs = np.asarray(x, dtype=np.float64)
    return y0 * np.exp(float(slope) * np.log(xs / x0))


@dataclass(frozen=True)
class Panel:
    """One set of axes: its key, labels and scales."""

    key: str
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    xscale: str = "linear"
    yscale: str = "linear"
    equal_aspect: bool = False


@dataclass(frozen=True)
class Curve:
    """One recorded curve (plain floats; NaN marks a missing value)."""

    panel: str
    role: str
    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    lo: tuple[float, ...] | None = None
    hi: tuple[float, ...] | None = None
    style: str = "points"
    side: str = "upper"


def _floats(name: str, values: Any) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return tuple(float(v) for v in arr)


@dataclass
class PlotRecorder:
    """Collects panels and curves during one run of a claim (see the module docstring)."""

    panels: dict[str, Panel] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.panels)

    def panel(self, key: str, *, title: str = "", xlabel: str = "", ylabel: str = "",
              xscale: str = "linear", yscale: str = "linear", equal_aspect: bool = False) -> None:
        """Declare panel ``key`` (panels are drawn left to right in declaration order)."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        for arg, scale in (("xscale", xscale), ("yscale", yscale)):
            if scale not in _SCALES:
                raise ValueError(f"{arg} must be one of {_SCALES}, got {scale!r}")
        self.panels[key] = Panel(key, title, xlabel, ylabel, xscale, yscale, bool(equal_aspect))

    def _add(self, panel: str, role: str, label: str, x: Any, y: Any, *, lo: Any = None,
             hi: Any = None, style: str = "points", side: str = "upper") -> None:
        if panel not in self.panels:
            raise ValueError(f"panel {panel!r} was not declared (declare it with plot.panel first)")
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        if side not in ("upper", "lower"):
            raise ValueError(f"side must be 'upper' or 'lower', got {side!r}")
        xs, ys = _floats("x", x), _floats("y", y)
        if len(xs) != len(ys):
            raise ValueError(f"x and y must have the same length, got {len(xs)} and {len(ys)}")
        los = his = None
        if lo is not None or hi is not None:
            if lo is None or hi is None:
                raise ValueError("lo and hi must be given together")
            los, his = _floats("lo", lo), _floats("hi", hi)
            if len(los) != len(xs) or len(his) != len(xs):
                raise ValueError("lo and hi must have the length of x")
        self.curves.append(Curve(panel, role, str(label), xs, ys, los, his, style, side))

    def measured(self, panel: str, x: Any, y: Any, *, label: str = "measured", lo: Any = None,
                 hi: Any = None, style: str = "points") -> None:
        """A measured curve, with optional confidence bounds ``lo``/``hi`` per point."""
        self._add(panel, "measured", label, x, y, lo=lo, hi=hi, style=style)

    def predicted(self, panel: str, x: Any, y: Any, *, label: str = "predicted",
                  style: str = "line") -> None:
        """The theory's prediction (an exact law, a predicted rate)."""
        self._add(panel, "predicted", label, x, y, style=style)

    def bound(self, panel: str, x: Any, y: Any, *, label: str = "bound", side: str = "upper") -> None:
        """A proven bound; ``side`` says whether the measured values must lie below ('upper')."""
        self._add(panel, "bound", label, x, y, style="line", side=side)

    def reference(self, panel: str, x: Any, y: Any, *, label: str = "", style: str = "line") -> None:
        """Context drawn in grey (region outlines, atoms); unlabelled ones stay out of the legend."""
        self._add(panel, "reference", label, x, y, style=style)


# --------------------------------------------------------------------------- drawing

_CONTROL_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                   "tab:cyan", "0.35")


def _positive_ok(scale: str, v: float) -> bool:
    return scale != "log" or v > 0


def _clean(c: Curve, panel: Panel) -> tuple[list[float], list[float], list[int]]:
    """Points that can be drawn on the panel's scales (finite; positive on log axes)."""
    keep = [i for i, (a, b) in enumerate(zip(c.x, c.y))
            if math.isfinite(a) and math.isfinite(b)
            and _positive_ok(panel.xscale, a) and _positive_ok(panel.yscale, b)]
    return [c.x[i] for i in keep], [c.y[i] for i in keep], keep


def _draw_curve(ax: Any, c: Curve, panel: Panel, *, color: str | None = None,
                control: str | None = None) -> None:
    xs, ys, keep = _clean(c, panel)
    if not xs:
        return
    if control is not None:
        label = f"control {control}" + (f": {c.label}" if c.label not in ("", "measured") else "")
        ax.plot(xs, ys, marker="x", ms=4, lw=0.8, ls="-" if c.style != "points" else ":",
                color=color, alpha=0.8, label=label,
                drawstyle="steps-mid" if c.style == "step" else "default")
        return
    if c.role == "measured":
        if c.lo is not None and c.hi is not None:
            lo = [max(ys[k] - c.lo[i], 0.0) for k, i in enumerate(keep)]
            hi = [max(c.hi[i] - ys[k], 0.0) for k, i in enumerate(keep)]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o" if c.style == "points" else "o-", ms=4,
                        capsize=3, color=color or "tab:blue", label=c.label or None)
        elif c.style == "step":
            ax.plot(xs, ys, drawstyle="steps-mid", color=color or "tab:blue", lw=1.2,
                    label=c.label or None)
        else:
            ax.plot(xs, ys, marker="o", ms=4, ls="none" if c.style == "points" else "-",
                    color=color or "tab:blue", label=c.label or None)
    elif c.role == "predicted":
        ax.plot(xs, ys, ls="--", lw=1.4, color=color or "k", label=c.label or None,
                marker="s" if c.style == "points" else None, ms=3)
    elif c.role == "bound":
        ax.plot(xs, ys, ls="-", lw=1.6, color=color or "k", label=c.label or None)
        lim = ax.get_ylim()
        edge = [lim[1]] * len(xs) if c.side == "upper" else [lim[0]] * len(xs)
        ax.fill_between(xs, ys, edge, color="0.5", alpha=0.12, lw=0)
        ax.set_ylim(lim)
    else:  # reference
        ax.plot(xs, ys, color=color or "0.55", lw=0.9, label=c.label or None,
                marker="." if c.style == "points" else None,
                ls="none" if c.style == "points" else "-")


def draw(panels: dict[str, Panel], stated: Sequence[Curve],
         controls: Sequence[tuple[str, Sequence[Curve], bool]] = (),
         *, title: str = "", subtitle: str = "") -> "Figure":
    """Draw recorded panels: the stated run's curves and each control's measured curves.

    Parameters
    ----------
    panels : dict
        The stated run's panels (``PlotRecorder.panels``).
    stated : sequence of Curve
        The stated run's curves.
    controls : sequence of (name, curves, flagged)
        Each control's recorded curves; only its ``measured`` curves are drawn (in a colour of
        its own; its label says whether the control flagged the claim).
    title, subtitle : str
        Figure title (claim id and verdict) and the small line under it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = list(panels)
    n = max(1, len(keys))
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig = Figure(figsize=(4.6 * ncol, 3.9 * nrow + 0.5))
    FigureCanvasAgg(fig)
    for k, key in enumerate(keys):
        p = panels[key]
        ax = fig.add_subplot(nrow, ncol, k + 1)
        ax.set_xscale(p.xscale)
        ax.set_yscale(p.yscale)
        for c in (c for c in stated if c.panel == key and c.role != "bound"):
            _draw_curve(ax, c, p)
        for j, (name, curves, flagged) in enumerate(controls):
            color = _CONTROL_COLORS[j % len(_CONTROL_COLORS)]
            for c in curves:
                if c.panel == key and c.role == "measured":
                    _draw_curve(ax, c, p, color=color,
                                control=name + ("" if flagged else " (not flagged)"))
        for c in (c for c in stated if c.panel == key and c.role == "bound"):
            _draw_curve(ax, c, p)  # last: it shades up to the final y-limits
        if p.equal_aspect:
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(p.title, fontsize=9)
        ax.set_xlabel(p.xlabel, fontsize=8)
        ax.set_ylabel(p.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=10)
    if subtitle:
        fig.text(0.5, 0.005, subtitle, ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.04 if subtitle else 0, 1, 0.96))
    return fig

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
    what the run measured (markers, optional ci bars; the stated run's series of one panel get
    colours of their own); in a control's run it is drawn as that control's curve (crosses, one
    colour and one legend entry per control; points stay a cloud, lines stay lines).
``predicted``
    what the theory says (dashed); recorded in the stated run only is enough.
``bound``
    a proven bound (solid black; the forbidden side shaded lightly).
``reference``
    context that is neither measured nor predicted (region outlines, the data's atoms); grey.

Common panels are methods of the recorder (:meth:`PlotRecorder.agreement`,
:meth:`PlotRecorder.rate`, :meth:`PlotRecorder.rates`, :meth:`PlotRecorder.versus_bound`) with the small helpers they use
(:func:`line_through`, :func:`decades`, :func:`level`, :class:`WorstByParam`); paper folders call
these rather than keeping their own.

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

__all__ = ["Curve", "PANEL_MARGINS", "Panel", "PlotRecorder", "ROLES", "STYLES", "WorstByParam", "decades", "draw",
           "inch_margins", "level", "line_through", "power_law"]

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


def line_through(x: Sequence[float] | np.ndarray, slope: float, x0: float, y0: float) -> np.ndarray:
    r""":func:`power_law` through :math:`(x_0, y_0)`, or NaN (not drawn) where that point or the slope
    is not positive and finite: a control's run may measure a non-positive rate, and a figure never raises
    on it."""
    if x0 > 0 and y0 > 0 and math.isfinite(x0) and math.isfinite(y0) and math.isfinite(slope):
        return power_law(x, slope, (x0, y0))
    return np.full(np.shape(x), np.nan)


def decades(lo: float, hi: float, num: int = 16) -> np.ndarray:
    r"""``num`` log-spaced abscissae from :math:`10^{\lfloor \log_{10} lo \rfloor}` to
    :math:`10^{\lceil \log_{10} hi \rceil}` (at least one decade; ``lo``, ``hi`` positive): a curve
    over them gives a log axis labelled at two powers of ten at least."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return np.logspace(a, max(b, a + 1), num)


def level(x: Sequence[float] | np.ndarray, y: float) -> tuple[np.ndarray, np.ndarray]:
    """A horizontal line at height ``y`` spanning the extent of ``x`` (a constant bound or reference);
    around a single abscissa a short segment (within a factor 2 when positive, for log axes)."""
    xs = np.asarray(x, dtype=np.float64)
    lo, hi = float(np.nanmin(xs)), float(np.nanmax(xs))
    if lo == hi:
        lo, hi = (lo / 2, hi * 2) if lo > 0 else (lo - 0.5, hi + 0.5)
    return np.array([lo, hi]), np.array([float(y), float(y)])


class WorstByParam:
    """Per parameter value, the (error, tolerance) pair of the point with the largest error/tolerance.

    A claim whose measurement is the worst ratio over many points records, per value of the parameter it
    varies (a time, a guidance weight), the error and the tolerance at its worst point: the measured error
    lies below the tolerance curve exactly where that ratio is at most 1 (see :meth:`PlotRecorder.agreement`).
    """

    def __init__(self) -> None:
        self._worst: dict[float, tuple[float, float, float]] = {}

    def add(self, x: float, err: Any, tol: Any) -> None:
        """Add the errors ``err`` with tolerances ``tol`` (scalars or arrays of one shape) checked at ``x``."""
        e = np.ravel(np.asarray(err, dtype=np.float64))
        t = np.ravel(np.broadcast_to(np.asarray(tol, dtype=np.float64), np.shape(err)))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = e / t
        if r.size == 0 or not np.any(np.isfinite(r)):
            return
        i = int(np.nanargmax(np.where(np.isfinite(r), r, -np.inf)))
        x = float(x)
        if x not in self._worst or r[i] > self._worst[x][0]:
            self._worst[x] = (float(r[i]), float(e[i]), float(t[i]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, error, tolerance)`` sorted by ``x``."""
        xs = sorted(self._worst)
        return (np.array(xs), np.array([self._worst[x][1] for x in xs]),
                np.array([self._worst[x][2] for x in xs]))


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


    # ----------------------------------------------------------------- common panels

    def agreement(self, key: str, x: Any, err: Any, tol: Any, *, title: str = "", xlabel: str = "",
                  ylabel: str = "error", xscale: str = "log", tol_label: str = "tolerance") -> None:
        """An identity checked to rounding: ``|err|`` against the parameter it was checked over (log y),
        the tolerance (a scalar or one per ``x``) as an upper bound; at a single ``x`` a short segment
        on a linear x axis."""
        xs = np.asarray(x, dtype=np.float64).ravel()
        tb = np.broadcast_to(np.asarray(tol, dtype=np.float64).ravel(), xs.shape)
        order = np.argsort(xs, kind="stable")
        xs, tb = xs[order], tb[order]
        es = np.abs(np.asarray(err, dtype=np.float64).ravel())[order]
        xb = xs
        if xs.size == 1:
            xb, tb, xscale = level(xs, float(tb[0]))[0], np.repeat(tb, 2), "linear"
        self.panel(key, title=title, xlabel=xlabel, ylabel=ylabel, xscale=xscale, yscale="log")
        self.measured(key, xs, es)
        self.bound(key, xb, tb, label=tol_label)

    def worst_agreement(self, key: str, worst: WorstByParam, **kwargs: Any) -> None:
        """:meth:`agreement` of a :class:`WorstByParam` (keyword arguments as there)."""
        self.agreement(key, *worst.arrays(), **kwargs)

    def rate(self, key: str, x: Any, y: Any, *, slope: float, title: str = "", xlabel: str = "",
             ylabel: str = "", through: tuple[float, float] | None = None, pred_label: str | None = None,
             fit: Any = None, fit_x: Any = None, lo: Any = None, hi: Any = None,
             label: str = "measured", new_panel: bool = True) -> None:
        r"""A rate on log-log axes: measured :math:`y(x)`, the predicted slope through ``through``
        (default: the first point) and, given the claim's ``fit`` (an object with ``slope`` and
        ``intercept`` in natural logs, e.g. :class:`numerics.stats.SlopeFit`), the fitted line over
        ``fit_x`` (default: ``x``). ``new_panel=False`` adds a further series to panel ``key``."""
        xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        x0, y0 = through if through is not None else (float(xs[0]), float(ys[0]))
        if new_panel:
            self.panel(key, title=title, xlabel=xlabel, ylabel=ylabel, xscale="log", yscale="log")
        self.measured(key, xs, ys, lo=lo, hi=hi, label=label)
        self.predicted(key, xs, line_through(xs, slope, x0, y0),
                       label=pred_label if pred_label is not None else f"predicted slope {slope:g}")
        if fit is not None:
            fx = np.unique(xs if fit_x is None else np.asarray(fit_x, dtype=np.float64))
            fx = fx[fx > 0]
            self.measured(key, fx, np.exp(fit.intercept + fit.slope * np.log(fx)), style="line",
                          label=f"fitted slope {fit.slope:.3f}")

    def rates(self, key: str, x: Any, series: Sequence[tuple[str, Any]], *, slope: float,
              title: str = "", xlabel: str = "", ylabel: str = "", pred_label: str | None = None) -> None:
        """Several measured series against the same ``x`` in one log-log panel, each with the
        predicted slope through its first point (the prediction labelled once)."""
        for i, (label, y) in enumerate(series):
            self.rate(key, x, y, slope=slope, title=title, xlabel=xlabel, ylabel=ylabel, label=label,
                      pred_label=(pred_label if pred_label is not None else f"predicted slope {slope:g}")
                      if i == 0 else "", new_panel=i == 0)

    def versus_bound(self, key: str, bound: Any, value: Any, *, title: str = "", xlabel: str = "bound",
                     ylabel: str = "measured", bound_label: str = "measured = bound") -> None:
        """Measured values against the bound each must respect (log-log): the bound is the diagonal,
        and a point lies below it exactly where its value respects its bound."""
        b = np.asarray(bound, dtype=np.float64).ravel()
        order = np.argsort(b, kind="stable")
        pos = b[np.isfinite(b) & (b > 0)]
        self.panel(key, title=title, xlabel=xlabel, ylabel=ylabel, xscale="log", yscale="log")
        self.measured(key, b[order], np.asarray(value, dtype=np.float64).ravel()[order])
        if pos.size:
            d = decades(float(pos.min()) / 1.5, float(pos.max()) * 1.5)
            self.bound(key, d, d, label=bound_label)


# --------------------------------------------------------------------------- drawing

_STATED_COLORS = ("tab:blue", "tab:green", "navy", "tab:cyan", "darkgreen", "slategray")
_CONTROL_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                   "goldenrod", "maroon")


def _positive_ok(scale: str, v: float) -> bool:
    return scale != "log" or v > 0


def _clean(c: Curve, panel: Panel) -> tuple[list[float], list[float], list[int]]:
    """Points that can be drawn on the panel's scales (finite; positive on log axes)."""
    keep = [i for i, (a, b) in enumerate(zip(c.x, c.y))
            if math.isfinite(a) and math.isfinite(b)
            and _positive_ok(panel.xscale, a) and _positive_ok(panel.yscale, b)]
    return [c.x[i] for i in keep], [c.y[i] for i in keep], keep


def _draw_control(ax: Any, c: Curve, panel: Panel, color: str, label: str | None) -> None:
    """A control's measured curve: crosses (a point cloud stays a cloud), a thin line for lines."""
    xs, ys, _ = _clean(c, panel)
    if xs:
        ax.plot(xs, ys, marker="x", ms=4, lw=0.8, ls="none" if c.style == "points" else "-",
                color=color, alpha=0.8, label=label,
                drawstyle="steps-mid" if c.style == "step" else "default")


def _draw_stated(ax: Any, c: Curve, panel: Panel, color: str) -> None:
    xs, ys, keep = _clean(c, panel)
    if not xs:
        return
    label = c.label or None
    if c.role == "measured":
        if c.lo is not None and c.hi is not None:
            lo = [max(ys[k] - c.lo[i], 0.0) for k, i in enumerate(keep)]
            hi = [max(c.hi[i] - ys[k], 0.0) for k, i in enumerate(keep)]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o" if c.style == "points" else "o-", ms=4,
                        capsize=3, color=color, label=label)
        elif c.style == "step":
            ax.plot(xs, ys, drawstyle="steps-mid", color=color, lw=1.2, label=label)
        else:
            ax.plot(xs, ys, marker="o" if c.style == "points" else None, ms=4,
                    ls="none" if c.style == "points" else "-", color=color, label=label)
    elif c.role == "predicted":
        ax.plot(xs, ys, ls="--", lw=1.4, color="k", label=label,
                marker="s" if c.style == "points" else None, ms=3)
    elif c.role == "bound":
        ax.plot(xs, ys, ls="-", lw=1.6, color="k", label=label)
    else:  # reference
        ax.plot(xs, ys, color="0.55", lw=0.9, label=label,
                marker="." if c.style == "points" else None,
                ls="none" if c.style == "points" else "-")


def _shade_bounds(ax: Any, bounds: Sequence[Curve], panel: Panel) -> bool:
    """Shade each bound's forbidden side up to the final axis limits (drawn last, limits kept). Returns whether
    anything was shaded: only then are the limits fixed (fixed limits and an equal aspect with adjustable data
    limits make matplotlib warn and ignore them)."""
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    shaded = False
    for c in bounds:
        xs, ys, _ = _clean(c, panel)
        if xs:
            edge = [ylim[1] if c.side == "upper" else ylim[0]] * len(xs)
            ax.fill_between(xs, ys, edge, color="0.5", alpha=0.12, lw=0)
            shaded = True
    if shaded:
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
    return shaded


def _draw_panel(ax: Any, p: Panel, stated: Sequence[Curve],
                controls: Sequence[tuple[str, Sequence[Curve], bool]]) -> None:
    ax.set_xscale(p.xscale)
    ax.set_yscale(p.yscale)
    mine = [c for c in stated if c.panel == p.key]
    n_measured = 0
    for c in mine:
        color = "k"
        if c.role == "measured":
            color = _STATED_COLORS[n_measured % len(_STATED_COLORS)]
            n_measured += 1
        _draw_stated(ax, c, p, color)
    for j, (name, curves, flagged) in enumerate(controls):
        label: str | None = f"control {name}" + ("" if flagged else " (not flagged)")
        for c in curves:
            if c.panel == p.key and c.role == "measured":
                _draw_control(ax, c, p, _CONTROL_COLORS[j % len(_CONTROL_COLORS)], label)
                label = None  # one legend entry per control
    fixed = _shade_bounds(ax, [c for c in mine if c.role == "bound"], p)
    if p.equal_aspect:  # with the limits fixed by the shading, the box gives way instead of the limits
        ax.set_aspect("equal", adjustable="box" if fixed else "datalim")
    ax.set_title(p.title, fontsize=9)
    ax.set_xlabel(p.xlabel, fontsize=8)
    ax.set_ylabel(p.ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.tick_params(which="minor", labelsize=5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="best")


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
    width, height = PANEL_WIDTH * ncol, PANEL_HEIGHT * nrow + 0.5
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    left, right, bottom, top, gap_w, gap_h = PANEL_MARGINS
    bottom += SUBTITLE_HEIGHT if subtitle else 0.0
    fig.subplots_adjust(**inch_margins(width, height, ncol, nrow, (left, right, bottom, top, gap_w, gap_h)))
    for k, key in enumerate(keys):
        _draw_panel(fig.add_subplot(nrow, ncol, k + 1), panels[key], stated, controls)
    fig.suptitle(title, fontsize=10)
    if subtitle:
        fig.text(0.5, 0.005, subtitle, ha="center", va="bottom", fontsize=7, wrap=True)
    return fig


#: Size of one panel of :func:`draw` (inches; the figure adds 0.5 in for its title).
PANEL_WIDTH, PANEL_HEIGHT = 4.6, 3.9
#: Fixed margins of :func:`draw` in inches (left, right, bottom, top, gap between columns, between rows): room
#: for the tick labels (fontsize 7) and axis labels (8) left of and below each panel, for each panel's title (9)
#: above it and for the figure's title; the subtitle adds :data:`SUBTITLE_HEIGHT` at the bottom.  Fixed margins
#: replace ``tight_layout``, which measured every tick label before the figure was drawn and left a layout
#: engine behind that made ``savefig`` draw the figure twice: about half of a figure's cost.
PANEL_MARGINS = (0.8, 0.2, 0.55, 0.65, 0.85, 0.85)
SUBTITLE_HEIGHT = 0.3


def inch_margins(width: float, height: float, ncol: int, nrow: int,
                 margins: tuple[float, float, float, float, float, float]) -> dict[str, float]:
    r"""``Figure.subplots_adjust`` arguments placing an ``nrow x ncol`` grid of axes in a ``width x height``
    figure with fixed margins in inches, ``margins = (left, right, bottom, top, gap_w, gap_h)``: the axes width
    is :math:`a_w = (W - m_l - m_r - (n_c - 1) g_w)/n_c` and ``wspace`` is :math:`g_w / a_w` (matplotlib's unit,
    a fraction of the mean axes width); likewise the height."""
    left, right, bottom, top, gap_w, gap_h = margins
    ax_w = (width - left - right - (ncol - 1) * gap_w) / ncol
    ax_h = (height - bottom - top - (nrow - 1) * gap_h) / nrow
    if ax_w <= 0 or ax_h <= 0:
        raise ValueError(f"margins: {margins!r} leave no room for {nrow} x {ncol} axes in {width} x {height} in")
    return {"left": left / width, "right": 1.0 - right / width, "bottom": bottom / height,
            "top": 1.0 - top / height, "wspace": gap_w / ax_w, "hspace": gap_h / ax_h}

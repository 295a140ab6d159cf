"""Claims, measurements, the ``@claim`` decorator and the claim registry.

A *claim* is one numerically testable statement of the theory. Its author writes a function of a
:class:`Context` that returns a list of :class:`Measurement` objects, and decorates it with
:func:`claim`::

    from numerics.checks.claim import claim, Measurement

    @claim(id="foundations.tweedie_first_order", paper="foundations",
           statement="E[X0|Xt=x] = (x + sigma_t^2 score)/alpha_t",
           note="proofs_notes/foundations.md#tweedie", provenance="standard",
           expect="holds", quick={"d": 2}, full={"d": 16},
           controls={"alpha_dropped": "Tweedie's map without the 1/alpha_t"})
    def tweedie(ctx):
        a = 1.0 if ctx.bug("alpha_dropped") else alpha_t(t)
        ...
        return [Measurement(name="max rel err", measured=err, predicted=0.0, kind="equal",
                            tol=tol, reason="float64 rounding: 8*d*u")]

A claim declares its *controls*: named bugs that a careful implementer could make (a dropped
alpha_t, a sign flip, a time index one step off, w where w - 1 belongs, ...), each described in one
line. The harness calls the function once as stated (``ctx.control`` is None) and once per control
(``ctx.control`` is its name; ``ctx.bug(name)`` is True only in that control's run), and records for
every measurement which controls moved it across its pass line (the *control matrix*). A counted
measurement that no control flags, or a control that flags no counted measurement, makes the claim
UNFALSIFIABLE. A measurement declared ``counted=False`` is informational: recorded and shown, never
counted. Scaling an output by a constant is not a control. See :mod:`numerics.checks.verdict`.

Only NumPy is imported here; matplotlib is imported lazily by :meth:`Context.figure`.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, MutableMapping

import numpy as np

from numerics.checks.plots import PlotRecorder

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "CONTROLS",
    "Claim",
    "ClaimFunction",
    "Context",
    "EXPECTS",
    "KINDS",
    "Measurement",
    "PROFILES",
    "PROVENANCES",
    "REGISTRY",
    "claim",
    "claim_seed",
]

#: Measurement kinds and their pass rules (see :func:`numerics.checks.verdict.passes`).
KINDS: frozenset[str] = frozenset({"equal", "le", "ge", "interval", "true"})
#: Where the statement comes from: quoted from the paper, our reconstruction, or textbook.
PROVENANCES: frozenset[str] = frozenset({"quoted", "reconstructed", "standard"})
#: What the theory predicts for the measurements.
EXPECTS: frozenset[str] = frozenset({"holds", "fails-as-predicted"})
#: Control modes: ``"broken"`` (default: the function is rerun once per named control, ctx.bug(name))
#: or ``"none"`` (no control; requires ``control_reason``).
CONTROLS: frozenset[str] = frozenset({"broken", "none"})
#: Parameter profiles. ``"reduced"`` is the full profile with each claim's documented
#: ``reduced`` overrides (what CI can afford; the full profile of a claim without overrides).
PROFILES: tuple[str, ...] = ("quick", "full", "reduced")

_ID_RE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_\-]+)+$")
_CONTROL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NEEDS_PREDICTED = frozenset({"equal", "le", "ge"})


def _as_float(value: Any, name: str) -> float:
    """Convert ``value`` to a Python float or raise a ``TypeError`` naming the field."""
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Measurement.{name} must be a real number, got {value!r}") from exc


def _opt_float(value: Any, name: str) -> float | None:
    return None if value is None else _as_float(value, name)


@dataclass(frozen=True)
class Measurement:
    """One measured quantity, the theory's prediction for it, and the pass rule.

    Parameters
    ----------
    name : str
        Short label, unique within the claim (used as the key for baseline comparison).
    measured : float
        The measured value. NaN never passes. For ``kind="true"`` pass 1.0/True when the
        predicted qualitative event happened.
    predicted : float or None
        The theory's value or bound; required for ``"equal"``, ``"le"``, ``"ge"``.
    kind : {"equal", "le", "ge", "interval", "true"}
        The pass rule (see :func:`numerics.checks.verdict.passes`).
    tol : float
        Non-negative, finite tolerance, derived (quadrature error, rounding, Monte Carlo), never tuned.
    reason : str
        Required, non-empty: why that tolerance.
    ci : tuple of float, optional
        ``(lo, hi)`` confidence interval of a Monte-Carlo ``measured``; "le" uses its upper end,
        "ge" its lower end, "interval" requires it to lie inside the tolerance-widened interval.
    lo, hi : float, optional
        The predicted interval for ``kind="interval"`` (required there, ``lo <= hi``).
    extra : dict, optional
        Anything else worth recording (JSON-serialisable values are stored as such).
    counted : bool
        True (default): the measurement counts toward the verdict and some control must flag it.
        False: informational, recorded and shown, never counted (and not required to be flagged).

    Raises
    ------
    ValueError
        On an unknown kind, an empty reason, a negative or non-finite tol, a missing predicted /
        lo / hi, or a reversed ci / interval; the message names the field.
    TypeError
        When a numeric field is not a real number.
    """

    name: str
    measured: float
    predicted: float | None = None
    kind: str = "equal"
    tol: float = 0.0
    reason: str = ""
    ci: tuple[float, float] | None = None
    lo: float | None = None
    hi: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    counted: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.counted, bool):
            raise TypeError(f"Measurement.counted must be a bool, got {self.counted!r}")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("Measurement.name must be a non-empty string")
        if self.kind not in KINDS:
            raise ValueError(f"Measurement.kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError(f"Measurement.reason is required (why tol={self.tol!r}?) "
                             f"for measurement {self.name!r}")
        set_(self, "measured", _as_float(self.measured, "measured"))
        set_(self, "predicted", _opt_float(self.predicted, "predicted"))
        tol = _as_float(self.tol, "tol")
        if not (math.isfinite(tol) and tol >= 0.0):
            raise ValueError(f"Measurement.tol must be finite and >= 0, got {tol!r}")
        set_(self, "tol", tol)
        set_(self, "lo", _opt_float(self.lo, "lo"))
        set_(self, "hi", _opt_float(self.hi, "hi"))
        self._check_kind_fields()
        set_(self, "ci", self._checked_ci())
        if not isinstance(self.extra, dict):
            raise TypeError(f"Measurement.extra must be a dict, got {type(self.extra).__name__}")

    def _check_kind_fields(self) -> None:
        if self.kind in _NEEDS_PREDICTED and self.predicted is None:
            raise ValueError(f"Measurement.predicted is required for kind={self.kind!r}")
        if self.kind == "interval":
            if self.lo is None or self.hi is None:
                raise ValueError("Measurement.lo and Measurement.hi are required for kind='interval'")
            if self.lo > self.hi:
                raise ValueError(f"Measurement.lo ({self.lo}) > Measurement.hi ({self.hi})")

    def _checked_ci(self) -> tuple[float, float] | None:
        if self.ci is None:
            return None
        try:
            lo, hi = self.ci
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Measurement.ci must be a (lo, hi) pair, got {self.ci!r}") from exc
        lo, hi = _as_float(lo, "ci[0]"), _as_float(hi, "ci[1]")
        if lo > hi:
            raise ValueError(f"Measurement.ci is reversed: ({lo}, {hi})")
        return (lo, hi)


ClaimFunction = Callable[["Context"], "list[Measurement]"]


def claim_seed(seed: int, claim_id: str) -> np.random.SeedSequence:
    """The seed sequence of claim ``claim_id`` in a run with seed ``seed``.

    Mixes the run seed with four 32-bit words of SHA-256(claim_id), so each claim gets its own
    reproducible stream that does not depend on which other claims run or in what order.
    """
    digest = hashlib.sha256(claim_id.encode("utf-8")).digest()
    words = [int.from_bytes(digest[4 * i: 4 * i + 4], "little") for i in range(4)]
    return np.random.SeedSequence([int(seed), *words])


class Context:
    """What a claim function receives.

    Attributes
    ----------
    claim_id : str
        The claim's id.
    params : dict
        A private deep copy of the profile's parameter set.
    profile : {"quick", "full", "reduced"}
    control : str or None
        None in the stated run; the name of the control being run otherwise.
    controls : tuple of str
        The names of the claim's declared controls.
    seed : int
        The run seed (the same for every claim of the run).
    rng : numpy.random.Generator
        Seeded from ``seed`` and ``claim_id`` (:func:`claim_seed`); identical for the stated run
        and every control, so the runs differ only by the control.
    sub_seed : int
        A 63-bit integer from the same seed sequence, for APIs that take an int seed.
    used_seed : bool
        True once ``seed``, ``rng`` or ``sub_seed`` has been read. A claim whose runs never read
        them draws no random numbers from the run seed, so its verdict cannot depend on it; a
        seed ensemble (``run --seeds``) runs such a claim once.
    plot : numerics.checks.plots.PlotRecorder
        Where the claim records its science figure (panels and curves) in every run; the
        harness draws the stated run's curves with each control's measured curves beside them
        (:mod:`numerics.checks.plots`). A claim that records nothing gets the default figure.
    """

    def __init__(self, claim_id: str, params: dict[str, Any], profile: str, seed: int,
                 control: str | None = None, controls: tuple[str, ...] = ()) -> None:
        self.claim_id = claim_id
        self.params = params
        self.profile = profile
        self.control = control
        self.controls = tuple(controls)
        self._seed = int(seed)
        self._rng: np.random.Generator | None = None
        self._sub_seed: int | None = None
        self.used_seed = False
        self._figure: Any = None
        self.plot = PlotRecorder()
        if control is not None and control not in self.controls:
            raise ValueError(f"claim {claim_id!r} declares no control {control!r} "
                             f"(declared: {', '.join(self.controls) or 'none'})")

    def __repr__(self) -> str:
        return (f"Context(claim_id={self.claim_id!r}, profile={self.profile!r}, seed={self._seed}, "
                f"control={self.control!r})")

    @property
    def seed(self) -> int:
        self.used_seed = True
        return self._seed

    @property
    def rng(self) -> np.random.Generator:
        self.used_seed = True
        if self._rng is None:
            self._rng = np.random.default_rng(claim_seed(self._seed, self.claim_id))
        return self._rng

    @property
    def sub_seed(self) -> int:
        self.used_seed = True
        if self._sub_seed is None:
            ss = claim_seed(self._seed, self.claim_id)
            self._sub_seed = int(ss.spawn(1)[0].generate_state(1, np.uint64)[0]) >> 1
        return self._sub_seed

    @property
    def broken(self) -> bool:
        """True in any control's run (for claims with one control; prefer :meth:`bug`)."""
        return self.control is not None

    def bug(self, name: str) -> bool:
        """True exactly in the run of control ``name``.

        Raises
        ------
        ValueError
            If the claim declares no control ``name`` (a misspelt control would otherwise be a
            control that changes nothing).
        """
        if name not in self.controls:
            raise ValueError(f"claim {self.claim_id!r} declares no control {name!r} "
                             f"(declared: {', '.join(self.controls) or 'none'})")
        return self.control == name

    def figure(self, **kwargs: Any) -> "Figure":
        """A matplotlib Figure (Agg canvas, no pyplot state) the claim may draw into.

        The harness saves it as ``figures/<claim id>.png`` (the controls' figures are discarded).
        Repeated calls return the same figure; ``kwargs`` (e.g. ``figsize``) apply to the first.
        """
        if self._figure is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            self._figure = Figure(**kwargs)
            FigureCanvasAgg(self._figure)
        return self._figure

    @property
    def drawn_figure(self) -> "Figure | None":
        """The figure if the claim drew into it (at least one Axes), else None."""
        fig = self._figure
        return fig if fig is not None and fig.axes else None


@dataclass(frozen=True, eq=False)
class Claim:
    """A registered claim: metadata, parameter sets and the function that measures.

    Build claims with the :func:`claim` decorator; constructing one directly validates the same
    way (``ValueError`` naming the field). Claims compare and hash by identity.
    """

    id: str
    paper: str
    statement: str
    note: str
    provenance: str
    expect: str
    func: ClaimFunction
    quick: Mapping[str, Any]
    full: Mapping[str, Any]
    control: str = "broken"
    control_reason: str = ""
    module: str = ""
    controls: Mapping[str, str] = field(default_factory=dict)
    reduced: Mapping[str, Any] = field(default_factory=dict)
    reduced_reason: str = ""
    sweepable: Mapping[str, type] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ValueError(f"claim id must look like '<paper>.<name>', got {self.id!r}")
        if not self.id.startswith(f"{self.paper}."):
            raise ValueError(f"claim id {self.id!r} must start with its paper {self.paper!r} + '.'")
        for name in ("statement", "note"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"claim {self.id!r}: {name} must be a non-empty string")
        self._check_choice("provenance", PROVENANCES)
        self._check_choice("expect", EXPECTS)
        self._check_choice("control", CONTROLS)
        if self.control == "none" and not str(self.control_reason).strip():
            raise ValueError(f"claim {self.id!r}: control='none' requires a control_reason")
        self._check_controls()
        for name in ("quick", "full", "reduced"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"claim {self.id!r}: {name} must be a dict of parameters")
        unknown = sorted(set(self.reduced) - set(self.full))
        if unknown:
            raise ValueError(f"claim {self.id!r}: reduced overrides unknown full parameters {unknown}")
        if self.reduced and not str(self.reduced_reason).strip():
            raise ValueError(f"claim {self.id!r}: reduced overrides need a reduced_reason")
        if not callable(self.func):
            raise TypeError(f"claim {self.id!r}: func must be callable")
        self._check_sweepable()

    def _check_sweepable(self) -> None:
        if not isinstance(self.sweepable, Mapping):
            raise TypeError(f"claim {self.id!r}: sweepable must be a dict parameter name -> int or float")
        for name, kind in self.sweepable.items():
            if kind not in (int, float):
                raise ValueError(f"claim {self.id!r}: sweepable parameter {name!r} must be int or float, got {kind!r}")
            if name not in self.quick or name not in self.full:
                raise ValueError(f"claim {self.id!r}: sweepable parameter {name!r} is not a parameter of both "
                                 "the quick and the full profile")
        object.__setattr__(self, "sweepable", dict(self.sweepable))

    def with_params(self, **overrides: Any) -> "Claim":
        """This claim with ``overrides`` replacing parameters in every profile (a sweep's grid point);
        only :attr:`sweepable` parameters may be overridden."""
        bad = sorted(set(overrides) - set(self.sweepable))
        if bad:
            raise ValueError(f"claim {self.id!r}: parameters {bad} are not sweepable "
                             f"(sweepable: {sorted(self.sweepable) or 'none'})")
        return dataclasses.replace(self, quick={**self.quick, **overrides}, full={**self.full, **overrides},
                                   reduced={k: v for k, v in self.reduced.items() if k not in overrides})

    def _check_controls(self) -> None:
        if not isinstance(self.controls, Mapping):
            raise TypeError(f"claim {self.id!r}: controls must be a dict name -> one-line bug")
        if self.control == "none" and self.controls:
            raise ValueError(f"claim {self.id!r}: control='none' with controls declared")
        if self.control == "broken" and not self.controls:
            raise ValueError(f"claim {self.id!r}: declare at least one named control "
                             f"(controls={{'name': 'the bug in one line'}}) or control='none'")
        for name, text in self.controls.items():
            if not isinstance(name, str) or not _CONTROL_RE.match(name):
                raise ValueError(f"claim {self.id!r}: control name {name!r} must be an identifier")
            if not isinstance(text, str) or not text.strip() or "\n" in text.strip():
                raise ValueError(f"claim {self.id!r}: control {name!r} needs a one-line description")
        object.__setattr__(self, "controls", dict(self.controls))

    def _check_choice(self, name: str, allowed: frozenset[str]) -> None:
        value = getattr(self, name)
        if value not in allowed:
            raise ValueError(f"claim {self.id!r}: {name} must be one of {sorted(allowed)}, "
                             f"got {value!r}")

    def params(self, profile: str) -> dict[str, Any]:
        """A deep copy of the parameter set of ``profile`` ("quick", "full" or "reduced").

        ``"reduced"`` is ``full`` updated with the claim's ``reduced`` overrides.
        """
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r} (choose one of {', '.join(PROFILES)})")
        if profile == "reduced":
            return copy.deepcopy({**dict(self.full), **dict(self.reduced)})
        return copy.deepcopy(dict(getattr(self, profile)))

    def context(self, profile: str, seed: int, control: str | None = None) -> Context:
        """A fresh :class:`Context` for one call of the claim function (``control`` None: stated)."""
        return Context(claim_id=self.id, params=self.params(profile), profile=profile,
                       seed=seed, control=control, controls=tuple(self.controls))


#: The default registry: claim id -> Claim, in registration order.
REGISTRY: dict[str, Claim] = {}


def _register(registry: MutableMapping[str, Claim], new: Claim) -> None:
    old = registry.get(new.id)
    same_source = old is not None and (
        old.module, getattr(old.func, "__qualname__", None)
    ) == (new.module, getattr(new.func, "__qualname__", None))
    if old is not None and not same_source:
        raise ValueError(f"duplicate claim id {new.id!r} (already defined in {old.module})")
    registry[new.id] = new  # re-import of the same module replaces its own entry


def claim(
    *,
    id: str,
    paper: str,
    statement: str,
    note: str,
    provenance: str,
    expect: str = "holds",
    quick: Mapping[str, Any] | None = None,
    full: Mapping[str, Any] | None = None,
    control: str = "broken",
    control_reason: str = "",
    controls: Mapping[str, str] | None = None,
    reduced: Mapping[str, Any] | None = None,
    reduced_reason: str = "",
    sweepable: Mapping[str, type] | None = None,
    registry: MutableMapping[str, Claim] | None = None,
) -> Callable[[ClaimFunction], ClaimFunction]:
    """Decorator registering a claim function.

    Parameters
    ----------
    id : str
        ``"<paper>.<name>"``, unique in the registry.
    paper : str
        Short name of the paper (``ce_guidance``, ``support``, ``discrete_kl``, ``discriminator``)
        or ``"foundations"``.
    statement : str
        The statement checked, in one line.
    note : str
        Pointer to the precise statement, e.g. ``"proofs_notes/foundations.md#tweedie"``.
    provenance : {"quoted", "reconstructed", "standard"}
    expect : {"holds", "fails-as-predicted"}
        "fails-as-predicted" marks a counterexample: its measurements encode the predicted failure.
    quick, full : dict, optional
        Parameter sets. ``quick`` defaults to ``{}``; ``full`` defaults to ``quick``.
    control : {"broken", "none"}
        ``"broken"`` (default): run every control of ``controls``. ``"none"`` disables the
        controls (discouraged) and requires ``control_reason``.
    control_reason : str
        Why there is no control; shown in the report.
    controls : dict, optional
        ``{name: one-line description of the bug}``; required unless ``control="none"``. In the
        claim function, ``ctx.bug(name)`` is True exactly in that control's run.
    reduced : dict, optional
        Overrides of ``full`` parameters for the ``"reduced"`` profile (what CI runs); only for
        claims whose full profile CI cannot afford, with ``reduced_reason`` saying what is cut.
    reduced_reason : str
        One line: what the reduction leaves out and why the reduced run still guards the claim.
    sweepable : dict, optional
        ``{parameter: int or float}``: the scalar parameters ``guidance-verify sweep`` may vary
        (each a parameter of both profiles).
    registry : mutable mapping, optional
        Where to register; default :data:`REGISTRY`. Tests and demos pass their own dict.

    Returns
    -------
    callable
        A decorator that returns the function unchanged, with the :class:`Claim` attached as
        ``func.claim``.

    Raises
    ------
    ValueError
        On invalid metadata or a duplicate id (from a different function).
    """
    quick_set = dict(quick or {})
    full_set = dict(full) if full is not None else dict(quick_set)
    target = REGISTRY if registry is None else registry

    def decorate(func: ClaimFunction) -> ClaimFunction:
        new = Claim(id=id, paper=paper, statement=statement, note=note, provenance=provenance,
                    expect=expect, func=func, quick=quick_set, full=full_set, control=control,
                    control_reason=control_reason, module=getattr(func, "__module__", ""),
                    controls=dict(controls or {}),
                    reduced=dict(reduced or {}), reduced_reason=reduced_reason,
                    sweepable=dict(sweepable or {}))
        _register(target, new)
        func.claim = new  # type: ignore[attr-defined]
        return func

    return decorate

r"""What a sampler needs of a target: the :class:`Target` protocol, and :class:`ScoreModel` (user callables).

A target is anything with a dimension ``d``, a number of classes ``n_classes`` (``None``: any label
``>= 0``) and the four fields of OU forward time ``t`` below; :class:`numerics.mixture.GaussianMixture`
(exact), :class:`ScoreModel` (user callables) and the support paper's region mixtures implement it.
Points are ``(N, d)`` float64 arrays, ``t`` a scalar forward time, ``y`` a class label; each method
returns ``(N, d)``.  A method whose field the target cannot provide raises ``ValueError`` naming the
``guidance_form`` that needs it.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from numerics.schedule import alpha_sigma2
from numerics.validate import check_int, check_time

__all__ = ["Target", "ScoreModel"]


@runtime_checkable
class Target(Protocol):
    r"""The protocol :func:`numerics.samplers.sample` accepts."""

    #: Dimension.
    d: int
    #: Number of classes; labels lie in ``0..n_classes-1`` (``None``: any label ``>= 0``).
    n_classes: int | None

    def score(self, x: np.ndarray, t: float) -> np.ndarray:
        r""":math:`\nabla\log p_t(x)`."""

    def denoiser(self, x: np.ndarray, t: float) -> np.ndarray:
        r""":math:`E[X_0\mid X_t = x]`."""

    def guidance_vector(self, x: np.ndarray, t: float, y: int) -> np.ndarray:
        r""":math:`g_y = \nabla\log p_t(y\mid x)` (guidance form ``"cg"``)."""

    def conditional_score(self, x: np.ndarray, t: float, y: int) -> np.ndarray:
        r""":math:`\nabla\log p_t(x\mid y)` (guidance form ``"cfg"``)."""


class ScoreModel:
    r"""A user score model: callables of points ``(N, d)`` and a scalar OU time; a :class:`Target`.

    Parameters
    ----------
    score : callable
        ``score(x, t) -> (N, d)``, the (unconditional) score :math:`\nabla\log p_t(x)`.
    d : int
        Dimension.
    guidance : callable, optional
        ``guidance(x, t, y) -> (N, d)``, the guidance vector :math:`\nabla\log p_t(y\mid x)` (``"cg"``).
    conditional_score : callable, optional
        ``conditional_score(x, t, y) -> (N, d)``, :math:`\nabla\log p_t(x\mid y)` (``"cfg"``).
    n_classes : int, optional
        Number of classes; labels must lie in ``0..n_classes-1`` (default: any label >= 0).

    Raises
    ------
    ValueError
        If a callable does not return a finite ``(2, d)`` float array on a test ``(2, d)`` input at
        ``t = 0.5`` (label 0); and on every later call whose output is not exactly the shape of ``x``
        (``(N, d)``: no broadcasting of ``(1, d)`` or ``(d,)``), not of a real floating dtype (integers,
        complex and objects are refused) or not finite: the message starts with the callable's name
        (``score``, ``guidance``, ``conditional_score``; ``denoiser`` for the Tweedie denoiser) and gives the
        time and what was wrong.

    Notes
    -----
    The denoiser is Tweedie's :math:`D = (x + \sigma_t^2 s)/\alpha_t`; it cancels at large ``t``
    (a score model gives no better route).  A subclass with an exact denoiser overrides :meth:`denoiser`.
    """

    def __init__(self, score: Callable, d: int, guidance: Callable | None = None,
                 conditional_score: Callable | None = None, n_classes: int | None = None):
        self.d = check_int(d, "d", 1)
        self.n_classes = None if n_classes is None else check_int(n_classes, "n_classes", 1)
        self._score = self._checked(score, "score", False)
        self._guidance = None if guidance is None else self._checked(guidance, "guidance", True)
        self._cond = None if conditional_score is None else self._checked(conditional_score, "conditional_score", True)

    def _checked(self, f: Callable, name: str, labelled: bool) -> Callable:
        if not callable(f):
            raise ValueError(f"{name}: must be callable")
        x = np.linspace(-0.5, 0.5, 2 * self.d).reshape(2, self.d)
        try:
            out = f(x, 0.5, 0) if labelled else f(x, 0.5)
            out = np.asarray(out)
        except Exception as exc:  # noqa: BLE001 - any failure of the user callable is a bad argument
            raise ValueError(f"{name}: calling it on a (2, {self.d}) array failed: {exc!r}") from None
        if out.shape != (2, self.d):
            raise ValueError(f"{name}: must return shape (N, d) = (2, {self.d}), got {out.shape}")
        if not np.issubdtype(out.dtype, np.floating):
            raise ValueError(f"{name}: must return a real floating array, got dtype {out.dtype}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{name}: returned non-finite values on a test input")
        return f

    @staticmethod
    def _output(out, name: str, x, t) -> np.ndarray:
        """A callable's output checked (on every call: O(N d), cheap next to the model): exactly the shape of
        ``x``, a real floating dtype, all finite; returned as float64 (a no-op for float64 output)."""
        out = np.asarray(out)
        shape = np.shape(x)
        if out.shape != shape:
            raise ValueError(f"{name}: at t={t!r} returned shape {out.shape}, expected exactly {shape} (the shape of x; "
                             "no broadcasting)")
        if not np.issubdtype(out.dtype, np.floating):
            raise ValueError(f"{name}: at t={t!r} returned dtype {out.dtype}, expected a real floating array")
        out = np.asarray(out, dtype=np.float64)
        if not np.isfinite(out).all():
            raise ValueError(f"{name}: at t={t!r} returned non-finite values "
                             f"({int(np.count_nonzero(~np.isfinite(out)))} of {out.size})")
        return out

    @property
    def has_guidance(self) -> bool:
        """Whether a guidance callable was given (guidance form ``"cg"``)."""
        return self._guidance is not None

    @property
    def has_conditional_score(self) -> bool:
        """Whether a conditional-score callable was given (guidance form ``"cfg"``)."""
        return self._cond is not None

    def __repr__(self) -> str:
        return f"ScoreModel(d={self.d}, guidance={self.has_guidance}, cfg={self.has_conditional_score})"

    @staticmethod
    def _call(f: Callable, name: str, x, t, *y):
        """Call a user callable; any exception it raises is reported as a ValueError naming it."""
        try:
            return f(x, t, *y)
        except Exception as exc:  # noqa: BLE001 - any failure of the user callable is a bad argument
            raise ValueError(f"{name}: at t={t!r} raised {exc!r}") from exc

    def score(self, x: np.ndarray, t: float) -> np.ndarray:
        return self._output(self._call(self._score, "score", x, t), "score", x, t)

    def guidance_vector(self, x: np.ndarray, t: float, y: int) -> np.ndarray:
        if self._guidance is None:
            raise ValueError("guidance_form: 'cg' with a label needs a ScoreModel with a guidance callable")
        return self._output(self._call(self._guidance, "guidance", x, t, y), "guidance", x, t)

    def conditional_score(self, x: np.ndarray, t: float, y: int) -> np.ndarray:
        if self._cond is None:
            raise ValueError("guidance_form: 'cfg' needs a ScoreModel with a conditional_score callable")
        return self._output(self._call(self._cond, "conditional_score", x, t, y), "conditional_score", x, t)

    def denoiser(self, x: np.ndarray, t: float) -> np.ndarray:
        a, s2 = alpha_sigma2(check_time(t))
        if a == 0.0:  # t > ~745: alpha_t = e^{-t} underflows, Tweedie's (x + sigma^2 s)/alpha is not representable
            raise ValueError(f"denoiser: at t={t!r} alpha_t = exp(-t) underflows to 0, so the Tweedie denoiser "
                             "(x + sigma_t^2 s)/alpha_t is not representable; use times t < 745")
        return self._output((x + s2 * self.score(x, t)) / a, "denoiser", x, t)

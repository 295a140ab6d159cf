r"""Guided diffusion samplers on a decreasing grid of OU forward times.

Every method takes one step from forward time :math:`t` to :math:`s < t` as

.. math::  x_s = c_x\,x_t + c_q\,q(x_t, t) \;[+\,c_{q'}\,q(x_{t'}, t')]\;[+\,c_z\,z],\qquad z\sim N(0, I),

with the generated coefficients of :mod:`numerics.generated.integrator_coeffs` and ``q`` one of

* the guided denoiser :math:`D_w = (x + \sigma_t^2 s_w)/\alpha_t` (``ddim``, ``ddpm``, ``ddim_eta``,
  ``dpm_solver_2``), computed without cancellation as :math:`D + w\,(\sigma_t^2/\alpha_t)\,g_y`;
* the guided noise prediction :math:`\varepsilon_w = -\sigma_t s_w` (``dpm_solver_1``);
* the guided score :math:`s_w` (``ei_ode``, ``ei_sde``, ``ei_sde_code``, ``euler``, ``euler_maruyama``).

Guidance forms: ``"cg"`` :math:`s_w = s + w\,g_y` (:math:`g_y = \nabla\log p_t(y\mid x)`);
``"cfg"`` :math:`s_w = w\,s_y + (1-w)\,s`; ``"cg_mean"`` (``ddpm`` only): the unguided posterior mean
plus :math:`w\,\mathrm{mean\_form}(t,s)\,g_y` (``ddpm_guidance_shifts``).

Randomness: a single ``np.random.default_rng(seed)`` draws ``x_init`` (if not given) and then one
``(n, d)`` block per step of a stochastic method, all in NumPy, so the output does not depend on the
number of Numba threads.  The per-step update is NumPy; the score kernels are Numba.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np

from numerics.generated import integrator_coeffs as IC
from numerics.grids import time_grid
from numerics.mixture import GaussianMixture
from numerics.schedule import alpha_sigma2

__all__ = ["sample", "ScoreModel", "METHODS", "GUIDANCE_FORMS", "DENOISER_METHODS", "SCORE_METHODS",
           "STOCHASTIC_METHODS", "default_grid"]

#: method -> kind of ``q`` it freezes over a step
_Q_KIND = {
    "ddim": "denoiser", "ddpm": "denoiser", "ddim_eta": "denoiser", "dpm_solver_2": "denoiser",
    "dpm_solver_1": "eps",
    "ei_ode": "score", "ei_sde": "score", "ei_sde_code": "score", "euler": "score", "euler_maruyama": "score",
}
METHODS: tuple[str, ...] = tuple(_Q_KIND)
DENOISER_METHODS = tuple(m for m, k in _Q_KIND.items() if k == "denoiser")
SCORE_METHODS = tuple(m for m, k in _Q_KIND.items() if k == "score")
STOCHASTIC_METHODS = ("ddpm", "ddim_eta", "ei_sde", "ei_sde_code", "euler_maruyama")
GUIDANCE_FORMS = ("cg", "cfg", "cg_mean")


def default_grid() -> np.ndarray:
    """The support paper's grid: ``time_grid("geometric", T=5, delta=1e-3, kappa=0.1)`` (113 steps)."""
    return time_grid("geometric", T=5.0, delta=1e-3, kappa=0.1)


class ScoreModel:
    r"""A user score model: callables of points ``(N, d)`` and a scalar OU time.

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
        ``t = 0.5`` (label 0).

    Notes
    -----
    The denoiser is Tweedie's :math:`D = (x + \sigma_t^2 s)/\alpha_t`; it cancels at large ``t``
    (a score model gives no better route).
    """

    def __init__(self, score: Callable, d: int, guidance: Callable | None = None,
                 conditional_score: Callable | None = None, n_classes: int | None = None):
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
            raise ValueError(f"d: must be an integer >= 1, got {d!r}")
        self.d = int(d)
        self.n_classes = None if n_classes is None else int(n_classes)
        if self.n_classes is not None and self.n_classes < 1:
            raise ValueError(f"n_classes: must be >= 1, got {n_classes!r}")
        self._score = self._checked(score, "score", False)
        self._guidance = None if guidance is None else self._checked(guidance, "guidance", True)
        self._cond = None if conditional_score is None else self._checked(conditional_score, "conditional_score", True)

    def _checked(self, f: Callable, name: str, labelled: bool) -> Callable:
        if not callable(f):
            raise ValueError(f"{name}: must be callable")
        x = np.linspace(-0.5, 0.5, 2 * self.d).reshape(2, self.d)
        try:
            out = f(x, 0.5, 0) if labelled else f(x, 0.5)
            out = np.asarray(out, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - any failure of the user callable is a bad argument
            raise ValueError(f"{name}: calling it on a (2, {self.d}) array failed: {exc!r}") from None
        if out.shape != (2, self.d):
            raise ValueError(f"{name}: must return shape (N, d) = (2, {self.d}), got {out.shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{name}: returned non-finite values on a test input")
        return f

    def __repr__(self) -> str:
        return f"ScoreModel(d={self.d}, guidance={self._guidance is not None}, cfg={self._cond is not None})"

    def score(self, x: np.ndarray, t: float) -> np.ndarray:
        return np.asarray(self._score(x, t), dtype=np.float64)

    def guidance_vector(self, x: np.ndarray, t: float, y: int) -> np.ndarray:
        if self._guidance is None:
            raise ValueError("guidance_form: 'cg' with a label needs a ScoreModel with a guidance callable")
        return np.asarray(self._guidance(x, t, y), dtype=np.float64)

    def conditional_score(self, x: np.ndarray, t: float, y: int) -> np.ndarray:
        if self._cond is None:
            raise ValueError("guidance_form: 'cfg' needs a ScoreModel with a conditional_score callable")
        return np.asarray(self._cond(x, t, y), dtype=np.float64)

    def denoiser(self, x: np.ndarray, t: float) -> np.ndarray:
        a, s2 = alpha_sigma2(t)
        return (x + s2 * self.score(x, t)) / a


class _Guided:
    """The guided score / denoiser / noise prediction of a target at fixed label, weight and form."""

    def __init__(self, target, label: int | None, w: float, form: str, fast: bool = False):
        self.target, self.label, self.w, self.form = target, label, w, form
        self.unguided = label is None
        self._cond = None
        self._fast = None
        if fast and isinstance(target, GaussianMixture) and form == "cg":
            from numerics.fast.kernels import FastMixture

            self._fast = FastMixture(target)
        if not self.unguided and form == "cfg" and isinstance(target, GaussianMixture):
            self._cond = target.conditional(label)

    def score(self, x: np.ndarray, t: float) -> np.ndarray:
        r""":math:`s_w` (``cg``/``cg_mean``: :math:`s + w g_y`; ``cfg``: :math:`w s_y + (1-w) s`)."""
        tg, w = self.target, self.w
        if self.unguided:
            return tg.score(x, t)
        if self.form == "cfg":
            return w * tg.conditional_score(x, t, self.label) + (1.0 - w) * tg.score(x, t)
        return tg.score(x, t) + w * tg.guidance_vector(x, t, self.label)

    def denoiser(self, x: np.ndarray, t: float) -> np.ndarray:
        r""":math:`D_w = D + w(\sigma_t^2/\alpha_t) g_y` (``cg``) or :math:`w D_y + (1-w) D` (``cfg``)."""
        tg, w = self.target, self.w
        if self._fast is not None:  # GEMM-form kernel (numerics.fast.kernels), same quantity to its bound
            return self._fast.denoiser(x, t) if self.unguided else self._fast.guided_denoiser(x, t, self.label, w)
        if self.unguided or self.form == "cg_mean":  # cg_mean guides the posterior mean instead
            return tg.denoiser(x, t)
        if self.form == "cfg":
            if self._cond is not None:
                return w * self._cond.denoiser(x, t) + (1.0 - w) * tg.denoiser(x, t)
            a, s2 = alpha_sigma2(t)
            return (x + s2 * self.score(x, t)) / a
        if isinstance(tg, GaussianMixture):  # one kernel pass instead of two
            return tg.guided_denoiser(x, t, self.label, w)
        a, s2 = alpha_sigma2(t)
        return tg.denoiser(x, t) + (w * s2 / a) * tg.guidance_vector(x, t, self.label)

    def eps(self, x: np.ndarray, t: float) -> np.ndarray:
        r""":math:`\varepsilon_w = -\sigma_t s_w`."""
        return -math.sqrt(-math.expm1(-2.0 * t)) * self.score(x, t)

    def q(self, kind: str, x: np.ndarray, t: float) -> np.ndarray:
        return getattr(self, kind)(x, t)


# ---------------------------------------------------------------------------------------- validation
def _check_method(method) -> str:
    if not isinstance(method, str) or method not in _Q_KIND:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _check_form(form, method: str) -> str:
    if not isinstance(form, str) or form not in GUIDANCE_FORMS:
        raise ValueError(f"guidance_form: must be one of {', '.join(GUIDANCE_FORMS)}, got {form!r}")
    if form == "cg_mean" and method != "ddpm":
        raise ValueError(f"guidance_form: 'cg_mean' is only defined for method 'ddpm', got method {method!r}")
    return form


def _check_eta(eta, method: str) -> float | None:
    if method != "ddim_eta":
        if eta is not None:
            raise ValueError(f"eta: only method 'ddim_eta' takes eta, got eta={eta!r} for {method!r}")
        return None
    if eta is None:
        raise ValueError("eta: method 'ddim_eta' needs eta in [0, 1]")
    if isinstance(eta, bool) or not isinstance(eta, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"eta: must be a real number in [0, 1], got {eta!r}")
    eta = float(eta)
    if not (0.0 <= eta <= 1.0):
        raise ValueError(f"eta: must be in [0, 1], got {eta!r}")
    return eta


def _check_grid(grid) -> np.ndarray:
    if grid is None:
        return default_grid()
    if isinstance(grid, str):
        raise ValueError(f"grid: must be an array of times (build one with time_grid({grid!r}, ...))")
    return time_grid(grid)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)) or int(n) < 1:
        raise ValueError(f"n: must be an integer >= 1, got {n!r}")
    return int(n)


def _check_guidance(guidance) -> float:
    if isinstance(guidance, bool) or not isinstance(guidance, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"guidance: must be a real number >= 0, got {guidance!r}")
    w = float(guidance)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"guidance: must be finite and >= 0, got {guidance!r}")
    return w


def _check_label(label, target, w: float) -> int | None:
    if label is None:
        if w != 1.0:
            raise ValueError(f"label: guidance={w!r} != 1 needs a label (label=None means unguided)")
        return None
    if isinstance(label, bool) or not isinstance(label, (numbers.Integral, np.integer)):
        raise ValueError(f"label: must be an integer class, got {label!r}")
    label = int(label)
    C = target.n_classes
    if label < 0 or (C is not None and label >= C):
        where = "an integer >= 0" if C is None else f"an existing class in 0..{C - 1}"
        raise ValueError(f"label: must be {where}, got {label}")
    return label


def _check_target(target):
    if not isinstance(target, (GaussianMixture, ScoreModel)):
        raise ValueError(f"target: must be a GaussianMixture or a ScoreModel, got {type(target).__name__}")
    return target


def _initial(x_init, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    if x_init is None:
        return rng.standard_normal((n, d))
    try:
        x = np.array(x_init, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"x_init: must be a float array of shape ({n}, {d}): {exc}") from None
    if x.shape != (n, d):
        raise ValueError(f"x_init: must have shape (n, d) = ({n}, {d}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x_init: contains NaN or infinite values")
    return x


# ---------------------------------------------------------------------------------------- stepping
def _coeffs(method: str, t: float, s: float, eta: float | None, t_prev: float | None) -> tuple:
    """Coefficients of one step; ``dpm_solver_2`` without a previous time is DDIM."""
    if method == "ddim_eta":
        return IC.ddim_eta_coeffs(t, s, eta)
    if method == "dpm_solver_2":
        return IC.ddim_coeffs(t, s) if t_prev is None else IC.dpm_solver_2_coeffs(t, s, t_prev)
    return IC.COEFFICIENT_FUNCTIONS[method][0](t, s)


def _step(method: str, guided: _Guided, x: np.ndarray, t: float, s: float, eta, t_prev, q_prev,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r"""One step :math:`x_t\to x_s`; returns ``(x_s, q(x_t))`` (``q`` is reused by multistep methods)."""
    kind = _Q_KIND[method]
    q = guided.q(kind, x, t)
    c = _coeffs(method, t, s, eta, t_prev)
    out = c[0] * x + c[1] * q
    if method == "dpm_solver_2" and t_prev is not None:
        out = out + c[2] * q_prev
    if method == "ddpm" and guided.form == "cg_mean" and not guided.unguided:
        # q was the unguided denoiser: add the mean-form shift w * mean_form * g
        out = out + (guided.w * IC.ddpm_guidance_shifts(t, s)[1]) * guided.target.guidance_vector(x, t, guided.label)
    if method in STOCHASTIC_METHODS:
        out = out + c[2] * rng.standard_normal(x.shape)
    return out, q


def sample(target, method: str = "ddim", grid=None, n: int = 1000, seed=0, label: int | None = None,
           guidance: float = 1.0, x_init=None, guidance_form: str = "cg", eta: float | None = None,
           return_trajectory: bool = False, fast: bool = False):
    r"""Run a guided sampler from ``grid[0]`` down to ``grid[-1]``.

    Parameters
    ----------
    target : GaussianMixture or ScoreModel
    method : str
        One of :data:`METHODS`.  A step :math:`t\to s` is
        :math:`x_s = c_x x_t + c_q q + [c_{q'} q_{\rm prev}] + [c_z z]` with the generated coefficients.
    grid : array_like, optional
        Strictly decreasing OU times (validated by :func:`numerics.grids.time_grid`); default
        :func:`default_grid`.
    n : int
        Number of samples (ignored shape-wise when ``x_init`` is given, which must be ``(n, d)``).
    seed : int or SeedSequence
        Seed of the single ``np.random.default_rng`` used for ``x_init`` and the step noise.
    label : int, optional
        Class ``y`` to guide towards; ``None`` with ``guidance == 1`` is unguided sampling.
    guidance : float
        :math:`w \ge 0`.
    x_init : array_like, optional
        ``(n, d)`` start points; default :math:`N(0, I)` draws (the OU stationary law).
    guidance_form : {"cg", "cfg", "cg_mean"}
        ``cg``: :math:`s_w = s + w g_y`; ``cfg``: :math:`s_w = w s_y + (1-w)s`; ``cg_mean`` (ddpm):
        :math:`\mu_{\rm post}(x_t, D) + w\,\frac{\sigma_s^2\sigma_{t|s}^2}{\sigma_t^2}\,g_y`.
    eta : float, optional
        Only for ``ddim_eta``, in ``[0, 1]`` (0: DDIM, 1: DDPM).
    return_trajectory : bool
        Also return the ``(len(grid), n, d)`` trajectory (``[0]`` is ``x_init``).
    fast : bool
        For a :class:`GaussianMixture` target and the ``cg`` form: evaluate the (guided) denoiser with the fast
        GEMM-form kernel of :mod:`numerics.fast.kernels` (the one ``guidance-verify bench`` times) instead of the
        reference kernel; equal to the reference up to its derived error bound (``tests/test_bench.py``). Only
        methods that use the denoiser (DDIM, DDPM, ...) are affected; ignored for other targets and forms.

    Returns
    -------
    numpy.ndarray
        ``(n, d)`` float64 samples at ``grid[-1]`` (and the trajectory if asked).

    Raises
    ------
    ValueError
        Naming the argument (see the module docstring for the rules).
    """
    target = _check_target(target)
    method = _check_method(method)
    form = _check_form(guidance_form, method)
    eta = _check_eta(eta, method)
    grid = _check_grid(grid)
    n = _check_n(n)
    w = _check_guidance(guidance)
    label = _check_label(label, target, w)
    rng = np.random.default_rng(seed)
    x = _initial(x_init, n, target.d, rng)
    if not isinstance(fast, (bool, np.bool_)):
        raise ValueError(f"fast: must be True or False, got {fast!r}")
    guided = _Guided(target, label, w, form, bool(fast))
    traj = [x.copy()] if return_trajectory else None
    q_prev, t_prev = None, None
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        x, q = _step(method, guided, x, t, s, eta, t_prev, q_prev, rng)
        q_prev, t_prev = q, t
        if traj is not None:
            traj.append(x.copy())
    return (x, np.stack(traj)) if return_trajectory else x

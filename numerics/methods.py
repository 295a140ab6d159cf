r"""The table of sampler methods: one :class:`Method` record per method, the only list of them.

Every method takes one step from OU forward time :math:`t` to :math:`s < t` as

.. math::  x_s = c_x\,x_t + c_q\,q(x_t, t) \;[+\,c_{q'}\,q(x_{t'}, t')]\;[+\,c_z\,z],\qquad z\sim N(0, I),

with the generated coefficients of :mod:`numerics.generated.integrator_coeffs`.  The record says what
``q`` is, what is frozen over the step (as :attr:`theory.integrators.Update.frozen` states it), whether
noise is injected, the method's order and its coefficient function.  The samplers
(:mod:`numerics.samplers`), the exact Gaussian laws (:mod:`numerics.references.exact_gaussian`), the
command line, the order claim (``samplers.convergence_orders``) and the support experiments read it,
and the method-name checks live here.

Orders
------
``order`` is the global order :math:`p` of a deterministic method as an integrator of the
probability-flow ODE (endpoint error :math:`O(h^p)`, measured by ``samplers.convergence_orders``):
DDIM, DPM-Solver-1 (the same map as DDIM, ``proofs_notes/integrators.md`` section 3), the score-frozen
exponential integrator and Euler are first order; DPM-Solver++(2M) is second order (its local error is
:math:`O(h^3)`, section 4).  The stochastic methods discretise the reverse SDE; their weak order is
expected to be 1 (Euler-Maruyama: Kloeden & Platen, *Numerical Solution of SDEs*, Thm 14.5.2; the
others freeze the drift over the step and match the transition's first two moments to
:math:`O(h^2)`), but no claim measures it, so ``order`` is ``None`` for them.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable


from numerics.generated import integrator_coeffs as IC
from numerics.validate import check_choice, check_real

__all__ = ["Method", "TABLE", "METHODS", "DETERMINISTIC_METHODS", "STOCHASTIC_METHODS", "DENOISER_METHODS",
           "SCORE_METHODS", "GUIDANCE_FORMS", "QUANTITIES", "get_method", "select", "check_method", "check_form",
           "check_eta", "LOG_DBL_MAX", "grid_coefficients"]

#: Guidance forms: ``cg`` (score form :math:`s + w g_y`), ``cfg`` (:math:`w s_y + (1-w) s`) and ``cg_mean``
#: (the posterior mean shifted by :math:`w` times the posterior variance times :math:`g_y`; methods with
#: :attr:`Method.guidance_shifts` only).
GUIDANCE_FORMS = ("cg", "cfg", "cg_mean")
#: What ``q`` can be: the (guided) denoiser :math:`D_w`, noise prediction :math:`\varepsilon_w = -\sigma_t s_w`
#: or score :math:`s_w`.
QUANTITIES = ("denoiser", "eps", "score")


#: :math:`\log(\mathrm{DBL\_MAX}) \approx 709.78`: ``exp(h)`` is finite exactly for ``h`` below it.
LOG_DBL_MAX = math.log(sys.float_info.max)


@dataclass(frozen=True)
class Method:
    r"""One sampler method.

    Attributes
    ----------
    name : str
        The name ``sample(method=...)`` takes.
    frozen : str
        What is held constant over the step, as in :class:`theory.integrators.Update`: ``"denoiser"``,
        ``"noise"``, ``"score"`` or ``"denoiser-linear"`` (linear in the half log-SNR, multistep).
    q : str
        The quantity the update evaluates at :math:`(x_t, t)`, one of :data:`QUANTITIES`.
    stochastic : bool
        Whether the update adds :math:`c_z z` (the last coefficient is :math:`c_z`).
    order : int or None
        Global order of a deterministic method on the probability-flow ODE; ``None`` for stochastic
        methods (see the module docstring).
    coeffs : callable
        The generated coefficient function, ``coeffs(t, s)``, ``coeffs(t, s, eta)`` or ``coeffs(t, s, t_prev)``.
    takes_eta : bool
        Whether the method takes ``eta`` (in ``[0, 1]``, required).
    first_step : callable or None
        Multistep methods: the coefficients of the first step (no previous ``q``); ``None`` for one-step methods.
    guidance_shifts : callable or None
        ``(t, s) -> (score_form, mean_form)`` shifts of the posterior mean per unit :math:`w g_y`; a method
        with it accepts ``guidance_form="cg_mean"``.
    max_step : float
        Largest step :math:`h = t - s` for which the coefficients are finite floats (``inf``: no such limit),
        derived from the coefficient formulas (see the table below); :func:`grid_coefficients` refuses grids
        with a longer step, and also any grid on which a generated coefficient is not finite for another
        reason (underflow of :math:`e^{-2h}` or of a product of small times: a division by zero).
    description : str
    """

    name: str
    frozen: str
    q: str
    stochastic: bool
    order: int | None
    coeffs: Callable
    takes_eta: bool = False
    first_step: Callable | None = None
    guidance_shifts: Callable | None = None
    max_step: float = math.inf
    description: str = ""

    @property
    def multistep(self) -> bool:
        """Whether the update also uses ``q`` at the previous time."""
        return self.first_step is not None

    @property
    def guidance_forms(self) -> tuple[str, ...]:
        """The guidance forms this method accepts."""
        return GUIDANCE_FORMS if self.guidance_shifts is not None else ("cg", "cfg")

    def coefficients(self, t: float, s: float, eta: float | None = None, t_prev: float | None = None) -> tuple:
        """Coefficients of one step ``t -> s`` (``t_prev``: the previous time of a multistep method, ``None`` on
        its first step).  No argument checking (hot path)."""
        if self.takes_eta:
            return self.coeffs(t, s, eta)
        if self.first_step is not None:
            return self.first_step(t, s) if t_prev is None else self.coeffs(t, s, t_prev)
        return self.coeffs(t, s)


# Step limits, from the coefficient formulas (``numerics.generated.integrator_coeffs``), L = log(DBL_MAX):
#   ei_ode        c_x = e^h                      finite iff h < L          (~709.78)
#   ei_sde_code   c_q = 2 (e^h - 1)              finite iff h < L - log 2  (~709.09)
#   ei_sde        c_z = sqrt(e^{2h} - 1)         finite iff h < L / 2      (~354.89)
#   dpm_solver_1  c_x = e^h and c_q divides by e^{-2h}, which must stay a normal float (not flush to
#                 zero: a ZeroDivisionError): h < -log(DBL_MIN) / 2 ~ 354.20
#   euler, euler_maruyama: c_x = 1 + h, c_q = h (or 2h) are finite for every h, but c_q q overflows for
#                 |q| > DBL_MAX / h; they are first-order truncations of the ei_ode / ei_sde steps, whose
#                 exact linear part e^h is not representable beyond L: the same documented limit h < L.
#   ddim, ddpm, ddim_eta, dpm_solver_2: coefficients bounded (|c| <= 1 up to e^{-s}-factors), no step limit;
#                 their generated forms can still divide by an underflowed product at extreme times, which
#                 grid_coefficients detects by evaluating them.
_MIN_NORMAL_LOG = math.log(sys.float_info.min)  # log(DBL_MIN) ~ -708.40
_RECORDS = (
    Method("ddim", "denoiser", "denoiser", False, 1, IC.ddim_coeffs,
           description="DDIM: data prediction frozen, linear part exact in log-SNR"),
    Method("ddpm", "denoiser", "denoiser", True, None, IC.ddpm_coeffs, guidance_shifts=IC.ddpm_guidance_shifts,
           description="DDPM ancestral step: Gaussian posterior with x_0 replaced by D(x_t)"),
    Method("ddim_eta", "denoiser", "denoiser", True, None, IC.ddim_eta_coeffs, takes_eta=True,
           description="DDIM eta family: eta = 0 is DDIM, eta = 1 is DDPM"),
    Method("dpm_solver_1", "noise", "eps", False, 1, IC.dpm_solver_1_coeffs, max_step=-_MIN_NORMAL_LOG / 2.0,
           description="DPM-Solver-1: noise prediction frozen; the same map as DDIM"),
    Method("dpm_solver_2", "denoiser-linear", "denoiser", False, 2, IC.dpm_solver_2_coeffs,
           first_step=IC.ddim_coeffs, description="DPM-Solver++(2M): denoiser linear in log-SNR; first step DDIM"),
    Method("ei_ode", "score", "score", False, 1, IC.ei_ode_coeffs, max_step=LOG_DBL_MAX,
           description="EI-ODE: score frozen, PF-ODE linear part exact"),
    Method("ei_sde", "score", "score", True, None, IC.ei_sde_coeffs, max_step=LOG_DBL_MAX / 2.0,
           description="EI-SDE: score frozen, reverse-SDE linear part exact in mean and variance"),
    Method("ei_sde_code", "score", "score", True, None, IC.ei_sde_code_coeffs, max_step=LOG_DBL_MAX - math.log(2.0),
           description="EI-SDE of the support paper's code: noise sqrt(2(e^h - 1))"),
    Method("euler", "score", "score", False, 1, IC.euler_coeffs, max_step=LOG_DBL_MAX,
           description="Euler on the PF-ODE"),
    Method("euler_maruyama", "score", "score", True, None, IC.euler_maruyama_coeffs, max_step=LOG_DBL_MAX,
           description="Euler-Maruyama on the reverse SDE"),
)

#: name -> :class:`Method`, in the order of :data:`theory.integrators.UPDATE_NAMES`.
TABLE: dict[str, Method] = {m.name: m for m in _RECORDS}
#: Every method name.
METHODS: tuple[str, ...] = tuple(TABLE)
DETERMINISTIC_METHODS: tuple[str, ...] = tuple(m.name for m in _RECORDS if not m.stochastic)
STOCHASTIC_METHODS: tuple[str, ...] = tuple(m.name for m in _RECORDS if m.stochastic)
DENOISER_METHODS: tuple[str, ...] = tuple(m.name for m in _RECORDS if m.q == "denoiser")
SCORE_METHODS: tuple[str, ...] = tuple(m.name for m in _RECORDS if m.q == "score")


def check_method(method, name: str = "method", allowed: tuple[str, ...] | None = None) -> str:
    """A method name of the table (or of its subset ``allowed``)."""
    return check_choice(method, name, METHODS if allowed is None else allowed)


def get_method(method, name: str = "method") -> Method:
    """The :class:`Method` record of a (validated) method name."""
    return TABLE[check_method(method, name)]


def select(*names: str) -> tuple[str, ...]:
    """A choice of methods (for an experiment), each checked against the table: ``select("ddim", "ddpm")``."""
    for n in names:
        check_method(n, "names")
    return tuple(names)


def check_form(form, method: str) -> str:
    """A guidance form the (validated) ``method`` accepts."""
    form = check_choice(form, "guidance_form", GUIDANCE_FORMS)
    if form not in TABLE[method].guidance_forms:
        with_shift = [m.name for m in _RECORDS if m.guidance_shifts is not None]
        raise ValueError(f"guidance_form: {form!r} is only defined for method {', '.join(map(repr, with_shift))}, "
                         f"got method {method!r}")
    return form


def check_eta(eta, method: str) -> float | None:
    """``eta`` of a (validated) ``method``: a real in ``[0, 1]`` for methods that take it, ``None`` otherwise."""
    if not TABLE[method].takes_eta:
        if eta is not None:
            takers = ", ".join(repr(m.name) for m in _RECORDS if m.takes_eta)
            raise ValueError(f"eta: only method {takers} takes eta, got eta={eta!r} for {method!r}")
        return None
    if eta is None:
        raise ValueError(f"eta: method {method!r} needs eta in [0, 1]")
    eta = check_real(eta, "eta")
    if not (0.0 <= eta <= 1.0):
        raise ValueError(f"eta: must be in [0, 1], got {eta!r}")
    return eta


def grid_coefficients(rec: Method, grid, eta: float | None = None, form: str = "cg") -> tuple[list, list | None]:
    """The coefficients of every step of a (validated, strictly decreasing) ``grid`` for method ``rec``, and the
    ``cg_mean`` shifts (``None`` for other forms): the same calls, with the same arguments, as the sampler's
    steps, made once up front, so a grid the method cannot step is refused before any work.

    Raises ``ValueError`` naming ``grid`` (with the step and its times) if a step is longer than
    :attr:`Method.max_step`, or if a coefficient is not finite or its generated formula divides by zero.
    """
    coefs, shifts = [], ([] if form == "cg_mean" else None)
    t_prev = None
    for k in range(len(grid) - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        h = t - s
        if h >= rec.max_step:
            raise ValueError(f"grid: step {k} (t={t!r} -> s={s!r}) has h = {h!r} >= {rec.max_step:.6g}, the longest "
                             f"step whose {rec.name} coefficients are finite floats; use smaller steps")
        try:
            c = rec.coefficients(t, s, eta, t_prev)
            sh = rec.guidance_shifts(t, s) if shifts is not None else ()
        except ZeroDivisionError:
            c = sh = (math.nan,)
        if not all(math.isfinite(v) for v in c) or not all(math.isfinite(v) for v in sh):
            prev = "" if t_prev is None else f", previous time {t_prev!r}"
            raise ValueError(f"grid: the {rec.name} coefficients of step {k} (t={t!r} -> s={s!r}{prev}) are not finite "
                             "in float64 (a time so small, or a step so long, that exp(-t), exp(-2h) or a product of "
                             "them underflows to 0); use times in a moderate range, e.g. 1e-12 <= t <= 50")
        coefs.append(c)
        if shifts is not None:
            shifts.append(sh)
        t_prev = t
    return coefs, shifts

r"""One-step samplers, derived by integrating the linear part of the reverse dynamics exactly.

Time convention
---------------
Times are OU forward times (:data:`theory.forward.OU`: :math:`\alpha_t = e^{-t}`,
:math:`\sigma_t^2 = 1 - e^{-2t}`).  A sampler step goes from the current forward time
:math:`t` to the next, smaller one :math:`s` (:math:`0 < s < t`), step :math:`h = t - s > 0`.
In sampler time :math:`\tau` (:math:`d\tau = -dt`) the reverse dynamics are

.. math::
    \frac{dy}{d\tau} = y + \nabla\log p(y) \quad\text{(probability-flow ODE)},\qquad
    dy = \big(y + 2\nabla\log p(y)\big)\,d\tau + \sqrt2\,dB \quad\text{(reverse SDE)},

and :math:`D(x) = (x + \sigma_t^2\nabla\log p_t(x))/\alpha_t`, :math:`\varepsilon(x) = -\sigma_t\nabla\log p_t(x)`.

Every update is linear in the state, the frozen quantity and the noise,

.. math::  x_s = c_x(t,s)\,x_t + c_q(t,s)\,q + c_z(t,s)\,z,\qquad z\sim N(0, I),

where :math:`q` is the quantity held constant over the step (denoiser, score or noise
prediction, evaluated at :math:`(x_t, t)`).  The coefficients are **derived** here: the
dynamics are written with the linear part separated, the linear part is integrated exactly
(``sympy.integrate`` / ``sympy.dsolve``) with :math:`q` frozen, and the result is read off.

Public API: :class:`Update`, :func:`all_updates`, :func:`get_update`, :func:`derivation_steps`,
:func:`guidance_gap`, :func:`ei_sde_code_noise_gap`, :func:`dpm_solver_2_exact_linear`, and one
builder per scheme (:func:`ddim`, :func:`ddpm`, :func:`ddim_eta`, :func:`dpm_solver_1`,
:func:`dpm_solver_2`, :func:`ei_ode`, :func:`ei_sde`, :func:`ei_sde_code`, :func:`euler`,
:func:`euler_maruyama`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from theory.forward import GENERAL, OU, VPSchedule, s, t

__all__ = [
    "Update",
    "all_updates",
    "get_update",
    "derivation_steps",
    "guidance_gap",
    "ei_sde_code_noise_gap",
    "dpm_solver_2_exact_linear",
    "dpm_solver_3_weights",
    "dpm_solver_2_eps_weights",
    "dpm_solver_3_eps_weights",
    "dpm_solver_2s_weights",
    "heun_weights",
    "lms_weights",
    "lms_k",
    "lms_g1",
    "lms_g2",
    "lms_g3",
    "LMS_MAX_ORDER",
    "deis_weights",
    "unipc_corrector_weights",
    "DEIS_MAX_ORDER",
    "phi",
    "half_logsnr_step",
    "psi",
    "h_ell",
    "h_ell_prev",
    "h_ell_prev2",
    "ddim",
    "ddpm",
    "ddim_eta",
    "dpm_solver_1",
    "dpm_solver_2",
    "ei_ode",
    "ei_sde",
    "ei_sde_code",
    "euler",
    "euler_maruyama",
    "posterior_gaussian",
    "UPDATE_NAMES",
    "t_prev",
    "eta",
    "h",
]

# ----------------------------------------------------------------------------------------
# symbols
# ----------------------------------------------------------------------------------------
#: previous (larger) forward time of a multistep method, ``t_prev > t``.
t_prev = sp.Symbol("t_p", positive=True)
#: step size ``h = t - s`` (display and series only; coefficients are written in ``t, s``).
h = sp.Symbol("h", positive=True)
#: DDIM stochasticity, ``0 <= eta <= 1``.
eta = sp.Symbol("eta", nonnegative=True)
tau = sp.Symbol("tau", nonnegative=True)  # sampler time elapsed inside a step
r = sp.Symbol("r", positive=True)  # integration variable
x_t = sp.Symbol("x_t", real=True)  # current state
x_s = sp.Symbol("x_s", real=True)  # next state
x_0 = sp.Symbol("x_0", real=True)  # clean sample (conditioning variable of the posterior)
q = sp.Symbol("q", real=True)  # frozen quantity
q_prev = sp.Symbol("q_p", real=True)  # frozen quantity at the previous step (multistep)
z = sp.Symbol("z", real=True)  # standard normal
w = sp.Symbol("w", real=True)  # guidance weight
g = sp.Symbol("g", real=True)  # guidance vector grad log p_t(y|x) (per coordinate)
theta = sp.Symbol("theta", positive=True)  # s = theta * t in the t -> 0 series
lam = sp.Symbol("ell", real=True)  # half log-SNR, integration variable
ell_t = sp.Symbol("ell_t", real=True)
h_ell = sp.Symbol("h_ell", positive=True)  # ell_s - ell_t > 0
h_ell_prev = sp.Symbol("h_ell_p", positive=True)  # ell_t - ell_p > 0
slope = sp.Symbol("D_1", real=True)  # slope of the denoiser in ell (multistep)
# abstract schedule values used to display derivations
a_s, a_t, a_ts = sp.symbols("alpha_s alpha_t alpha_t|s", positive=True)
sg_s, sg_t, sg_ts = sp.symbols("sigma_s sigma_t sigma_t|s", positive=True)

# ----------------------------------------------------------------------------------------
# the Update record
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Update:
    r"""One sampler step :math:`x_s = c_x x_t + c_q q \;[+\, c_{q,prev}\, q_{prev}] \;[+\, c_z z]`.

    Parameters
    ----------
    name : str
        Scheme name (``"ddim"``, ``"ddpm"``, ...).
    frozen : str
        What is held constant over :math:`[s, t]`: ``"denoiser"``, ``"score"``, ``"noise"``
        (noise prediction :math:`\varepsilon`), or ``"denoiser-linear"`` (linear in the
        half log-SNR, multistep).
    c_x, c_q : sympy.Expr
        Coefficients of the current state and the frozen quantity, in the symbols ``args``.
    c_z : sympy.Expr
        Standard deviation multiplying a standard normal ``z`` (0 for deterministic schemes).
    c_q_prev : sympy.Expr or None
        Coefficient of the frozen quantity at the previous (larger) time ``t_prev`` (multistep).
    args : tuple of sympy.Symbol
        Arguments of the coefficient functions, in order: ``(t, s)``, ``(t, s, eta)`` or
        ``(t, s, t_prev)``.
    exponential : bool
        Whether the linear part is integrated exactly (``False`` for Euler baselines).
    """

    name: str
    frozen: str
    c_x: sp.Expr
    c_q: sp.Expr
    c_z: sp.Expr = sp.S.Zero
    c_q_prev: sp.Expr | None = None
    args: tuple = (t, s)
    exponential: bool = True
    description: str = ""

    @property
    def stochastic(self) -> bool:
        """``True`` when the update injects noise (``c_z`` is not identically zero)."""
        return self.c_z != 0

    def coefficients(self) -> tuple[tuple[str, sp.Expr], ...]:
        """Ordered ``(label, expression)`` pairs: ``c_x, c_q[, c_q_prev][, c_z]``.

        This is the return order of the generated Numba function ``<name>_coeffs``.
        """
        out = [("c_x", self.c_x), ("c_q", self.c_q)]
        if self.c_q_prev is not None:
            out.append(("c_q_prev", self.c_q_prev))
        if self.stochastic:
            out.append(("c_z", self.c_z))
        return tuple(out)

    def step(self, x: sp.Expr = x_t, qq: sp.Expr = q, zz: sp.Expr = z, qp: sp.Expr = q_prev) -> sp.Expr:
        r"""The update as an expression: :math:`c_x x + c_q q + c_{q,prev} q_p + c_z z`."""
        out = self.c_x * x + self.c_q * qq + self.c_z * zz
        if self.c_q_prev is not None:
            out += self.c_q_prev * qp
        return out


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def _coeff(expr: sp.Expr, sym: sp.Symbol) -> sp.Expr:
    """Coefficient of ``sym`` in an expression affine in ``sym``."""
    e = sp.expand(expr)
    c = e.coeff(sym, 1)
    assert sp.expand(e - c * sym).has(sym) is False, (expr, sym)
    return c


def _schedule_values(schedule: VPSchedule) -> dict:
    """Map abstract alpha/sigma symbols to a schedule's expressions in (t, s)."""
    return {
        a_s: schedule.alpha(s),
        a_t: schedule.alpha(t),
        a_ts: schedule.alpha_ts(t, s),
        sg_s: sp.sqrt(schedule.sigma2(s)),
        sg_t: sp.sqrt(schedule.sigma2(t)),
        sg_ts: sp.sqrt(sp.simplify(schedule.sigma2_ts(t, s))),
    }


def _half_logsnr_step(schedule: VPSchedule, t_hi: sp.Expr, t_lo: sp.Expr) -> sp.Expr:
    r""":math:`\ell_{t_{lo}} - \ell_{t_{hi}} = \tfrac12\log\frac{\alpha_{lo}^2\sigma_{hi}^2}{\sigma_{lo}^2\alpha_{hi}^2}`,
    written as one logarithm of a ratio (positive when ``t_lo < t_hi``)."""
    ratio = (schedule.alpha(t_lo) ** 2 * schedule.sigma2(t_hi)) / (
        schedule.sigma2(t_lo) * schedule.alpha(t_hi) ** 2
    )
    return sp.log(sp.powsimp(ratio)) / 2


def _read_off(update: sp.Expr, schedule: VPSchedule, **fields) -> Update:
    r"""The :class:`Update` whose coefficients of :math:`x_t, q, z` are read off ``update``.

    ``update`` is written in the abstract :math:`\alpha, \sigma` symbols; the coefficients are
    taken in those symbols and then evaluated on ``schedule``.  ``fields`` are the remaining
    :class:`Update` fields (``name``, ``frozen``, ``description``, ``args``).
    """
    vals = _schedule_values(schedule)
    c_z = _coeff(update, z).subs(vals) if update.has(z) else sp.S.Zero
    return Update(c_x=_coeff(update, x_t).subs(vals), c_q=_coeff(update, q).subs(vals), c_z=c_z, **fields)


def _log_snr_step(score: sp.Expr, xf: sp.Expr, factor: str, rate: sp.Expr) -> dict:
    r"""Integrate the PF-ODE over one step in the half log-SNR, the frozen quantity ``q`` held fixed.

    The steps shared by DDIM and DPM-Solver-1 (schedule :data:`theory.forward.GENERAL`):
    the forward-time PF-ODE :math:`\dot x = f(t)x - \tfrac12 g(t)^2\,\mathrm{score}` is multiplied by
    the integrating factor :math:`1/m_t` (``factor``: ``"sigma"`` or ``"alpha"``), which must remove
    :math:`x`; in :math:`\ell = \log(\alpha/\sigma)` it must read
    :math:`d(x/m)/d\ell = \mathrm{rate}(\ell)\,q`; integrating over :math:`[\ell_t, \ell_t + h_\ell]`
    and using :math:`e^{\ell} = \alpha/\sigma` gives :math:`x_s = m_s(x_t/m_t + \int)`.

    ``score`` is the score model in the state ``xf`` (a function of ``t``) and ``q``; ``rate`` is an
    expression in :data:`lam` (the integration variable).  Returns the keys ``pf_ode``,
    ``linear_part``, ``d_scaled``, ``d_ell``, ``scaled_ode`` (:math:`d(x/m)/d\ell`), ``integral`` and
    ``update`` (abstract symbols).
    """
    schedule = GENERAL
    alpha = schedule.alpha(t)
    sig = sp.sqrt(schedule.sigma2(t))
    m_expr, m_s, m_t = {"sigma": (sig, sg_s, sg_t), "alpha": (alpha, a_s, a_t)}[factor]  # m_t; abstract m_s, m_t
    rhs = schedule.drift_coefficient(t) * xf - schedule.diffusion2(t) / 2 * score
    linear = sp.simplify(sp.diff(rhs, xf))
    d_scaled = sp.simplify(sp.diff(xf / m_expr, t).subs(sp.Derivative(xf, t), rhs))
    if d_scaled.has(xf):  # 1/m must kill the linear part
        raise AssertionError(f"1/{factor}_t is not an integrating factor")
    ell = sp.log(alpha / sig)
    d_ell = sp.simplify(sp.diff(ell, t))
    d_scaled_dell = sp.simplify(d_scaled / d_ell)
    if sp.simplify(d_scaled_dell - rate.subs(lam, ell) * q) != 0:
        raise AssertionError(f"d(x/{factor})/d ell is not {rate.subs(lam, sp.Symbol('ell'))} q")
    integral = sp.integrate(rate * q, (lam, ell_t, ell_t + h_ell))
    # e^{ell_t} = alpha_t/sigma_t, e^{ell_s} = e^{ell_t + h_ell} = alpha_s/sigma_s
    integral = sp.expand(integral, power_exp=True).subs(
        {sp.exp(ell_t): a_t / sg_t, sp.exp(h_ell): (a_s / sg_s) / (a_t / sg_t)}
    )
    return {
        "pf_ode": rhs,
        "linear_part": linear,
        "d_scaled": d_scaled,
        "d_ell": d_ell,
        "scaled_ode": d_scaled_dell,
        "integral": integral,
        "update": sp.expand(m_s * (x_t / m_t + integral)),
    }


# ----------------------------------------------------------------------------------------
# 1. data-prediction (denoiser-frozen) form: DDIM
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _ddim_derivation() -> dict:
    r"""Derive DDIM for any VP schedule.

    Forward-time PF-ODE :math:`\dot x = f(t) x - \tfrac12 g(t)^2\nabla\log p_t(x)` with
    :math:`\nabla\log p_t = (\alpha_t D - x)/\sigma_t^2`.  Then :math:`1/\sigma_t` is an
    integrating factor, and in the half log-SNR :math:`\ell = \log(\alpha/\sigma)`,
    :math:`d(x/\sigma)/d\ell = e^{\ell} D`; freezing :math:`D` and integrating over
    :math:`[\ell_t, \ell_s]` gives the update (steps in :func:`_log_snr_step`).
    """
    xf = sp.Function("x")(t)
    score = (GENERAL.alpha(t) * q - xf) / GENERAL.sigma2(t)  # q = D, the denoiser
    d = _log_snr_step(score, xf, "sigma", sp.exp(lam))
    d["data_ode"] = d.pop("scaled_ode")
    return d


@lru_cache(maxsize=None)
def _ddim_direct_t_integral() -> sp.Expr:
    r"""Cross-check (OU only): variation of constants directly in forward time.

    :math:`x_s = \Phi(s,t)x_t + D\int_t^s \Phi(s,r)\,b(r)\,dr`, with
    :math:`\Phi(s,t) = \exp\int_t^s a(r)dr`, :math:`a = \alpha^2/\sigma^2`, :math:`b = -\alpha/\sigma^2`.
    Returns the coefficient of ``D`` (about 3 s of ``sympy.integrate``).
    """
    a_r = 1 / (sp.exp(2 * r) - 1)
    phi = sp.exp(sp.expand(sp.integrate(a_r, (r, t, s))))  # propagator from t back to s: sigma_s/sigma_t
    b_r = -OU.alpha(r) / OU.sigma2(r)
    integrand = phi.subs(t, r) * b_r  # Phi(s, r) b(r) = -sigma_s alpha_r / sigma_r^3
    parts = sp.separatevars(integrand, symbols=[r], dict=True)  # constant (in r) x function of r
    # int_t^s = -int_s^t
    return sp.simplify(-parts["coeff"] * sp.integrate(sp.simplify(parts[r]), (r, s, t)))


def ddim(schedule: VPSchedule = OU) -> Update:
    r"""DDIM (denoiser frozen, deterministic).

    .. math::  x_s = \frac{\sigma_s}{\sigma_t}x_t + \Big(\alpha_s - \alpha_t\frac{\sigma_s}{\sigma_t}\Big)D .
    """
    return _read_off(
        _ddim_derivation()["update"], schedule,
        name="ddim",
        frozen="denoiser",
        description="DDIM: data prediction D(x_t) frozen, linear part integrated exactly in log-SNR",
    )


# ----------------------------------------------------------------------------------------
# 2. Gaussian posterior: DDPM and the eta family
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def posterior_gaussian() -> dict:
    r"""Derive :math:`q(x_s \mid x_t, x_0)` by Bayes' rule (abstract alpha/sigma symbols).

    :math:`\log q(x_s\mid x_t,x_0) = -\frac{(x_s-\alpha_s x_0)^2}{2\sigma_s^2}
    - \frac{(x_t-\alpha_{t|s}x_s)^2}{2\sigma_{t|s}^2} + \text{const}`; completing the square in
    :math:`x_s` gives precision, mean and variance.  The identity
    :math:`\sigma_t^2 = \sigma_{t|s}^2 + \alpha_{t|s}^2\sigma_s^2` (VP) turns them into

    .. math::
        \mu = \frac{\alpha_{t|s}\sigma_s^2}{\sigma_t^2}x_t + \frac{\alpha_s\sigma_{t|s}^2}{\sigma_t^2}x_0,
        \qquad v = \frac{\sigma_s^2\sigma_{t|s}^2}{\sigma_t^2}.

    Returns a dict with keys ``log_density``, ``precision``, ``mean``, ``variance`` (raw, abstract),
    ``mean_cx``, ``mean_cq``, ``variance_vp`` (after the VP identity, abstract).
    """
    logq = -((x_s - a_s * x_0) ** 2) / (2 * sg_s**2) - (x_t - a_ts * x_s) ** 2 / (2 * sg_ts**2)
    poly = sp.Poly(sp.expand(logq), x_s)
    c2 = poly.coeff_monomial(x_s**2)
    c1 = poly.coeff_monomial(x_s)
    precision = sp.together(-2 * c2)
    mean = sp.together(c1 / precision)
    variance = sp.together(1 / precision)
    # VP identity: sigma_t|s^2 + alpha_t|s^2 sigma_s^2 = sigma_t^2
    vp = {sg_ts**2: sg_t**2 - a_ts**2 * sg_s**2}

    def _vp(e: sp.Expr) -> sp.Expr:
        num, den = sp.fraction(sp.factor(e))
        den = sp.factor(sp.expand(den).subs(vp))
        return sp.factor(num) / den

    mean_vp = _vp(mean)
    return {
        "log_density": logq,
        "precision": precision,
        "mean": mean,
        "variance": variance,
        "mean_cx": sp.simplify(_coeff(mean_vp, x_t)),
        "mean_cq": sp.simplify(_coeff(mean_vp, x_0)),
        "variance_vp": sp.simplify(_vp(variance)),
    }


def ddpm(schedule: VPSchedule = OU) -> Update:
    r"""DDPM: sample the exact Gaussian posterior :math:`q(x_s\mid x_t, x_0 = D(x_t))`.

    .. math::  x_s = \frac{\alpha_{t|s}\sigma_s^2}{\sigma_t^2}x_t + \frac{\alpha_s\sigma_{t|s}^2}{\sigma_t^2}D
               + \frac{\sigma_s\sigma_{t|s}}{\sigma_t}z .
    """
    post = posterior_gaussian()
    vals = _schedule_values(schedule)
    return Update(
        name="ddpm",
        frozen="denoiser",
        c_x=post["mean_cx"].subs(vals),
        c_q=post["mean_cq"].subs(vals),
        c_z=sp.sqrt(post["variance_vp"]).subs(vals),
        description="DDPM ancestral step: exact Gaussian posterior with x_0 replaced by D(x_t)",
    )


@lru_cache(maxsize=None)
def _eta_abstract() -> dict:
    r"""The eta family in abstract symbols: :math:`x_s = \alpha_s D + \sqrt{\sigma_s^2-c^2}\,\hat\varepsilon + c z`."""
    post = posterior_gaussian()
    c = eta * sp.sqrt(post["variance_vp"])
    eps_hat = (x_t - a_t * q) / sg_t
    upd = a_s * q + sp.sqrt(sg_s**2 - c**2) * eps_hat + c * z
    return {"c": c, "eps_hat": eps_hat, "update": upd}


def ddim_eta(schedule: VPSchedule = OU) -> Update:
    r"""The DDIM eta family (``0 <= eta <= 1``), arguments ``(t, s, eta)``.

    .. math::
        x_s = \alpha_s D + \sqrt{\sigma_s^2 - c^2}\,\hat\varepsilon + c\,z,\quad
        c = \eta\,\frac{\sigma_s\sigma_{t|s}}{\sigma_t},\quad \hat\varepsilon = \frac{x_t - \alpha_t D}{\sigma_t}.
    """
    return _read_off(
        _eta_abstract()["update"], schedule,
        name="ddim_eta",
        frozen="denoiser",
        args=(t, s, eta),
        description="DDIM eta family: eta=0 is DDIM, eta=1 is DDPM",
    )


# ----------------------------------------------------------------------------------------
# 3. noise-prediction form: DPM-Solver-1
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _dpm1_derivation() -> dict:
    r"""Noise prediction frozen: :math:`d(x/\alpha)/d\ell = -e^{-\ell}\varepsilon`, integrated exactly.

    With :math:`\nabla\log p_t = -\varepsilon/\sigma_t`, :math:`1/\alpha_t` is the integrating factor;
    freezing :math:`\varepsilon` over :math:`[\ell_t, \ell_s]` gives
    :math:`x_s = \alpha_s\big(x_t/\alpha_t - \int_{\ell_t}^{\ell_s} e^{-\ell}\varepsilon\,d\ell\big)`
    (steps in :func:`_log_snr_step`).
    """
    xf = sp.Function("x")(t)
    score = -q / sp.sqrt(GENERAL.sigma2(t))  # q = eps frozen: score = -eps / sigma
    d = _log_snr_step(score, xf, "alpha", -sp.exp(-lam))
    d["noise_ode"] = d.pop("scaled_ode")
    return d


def dpm_solver_1(schedule: VPSchedule = OU) -> Update:
    r"""DPM-Solver-1: noise prediction :math:`\varepsilon` frozen, ``q = eps(x_t)``.

    .. math::  x_s = \frac{\alpha_s}{\alpha_t}x_t + \Big(\sigma_s - \frac{\alpha_s}{\alpha_t}\sigma_t\Big)\varepsilon .
    """
    return _read_off(
        _dpm1_derivation()["update"], schedule,
        name="dpm_solver_1",
        frozen="noise",
        description="DPM-Solver-1: noise prediction frozen; equals DDIM",
    )


# ----------------------------------------------------------------------------------------
# 4. multistep second order: DPM-Solver++(2M)
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _dpm2_derivation() -> dict:
    r"""Denoiser linear in :math:`\ell` on the step, slope from the previous step.

    :math:`D(\ell) \approx D_t + (\ell-\ell_t)D_1`, :math:`D_1 = (D_t - D_p)/h_{p}`.
    Exact integration gives :math:`\alpha_s(1-e^{-h})D_t + \alpha_s(h-1+e^{-h})D_1`; DPM-Solver++(2M)
    replaces :math:`h - 1 + e^{-h}` by :math:`\tfrac h2(1-e^{-h})` (equal to :math:`O(h^3)`).
    """
    integrand = sp.exp(lam) * (q + (lam - ell_t) * slope)
    integral = sp.integrate(integrand, (lam, ell_t, ell_t + h_ell))
    # multiply by sigma_s, use sigma_s e^{ell_s} = alpha_s: sigma_s e^{ell_t} = alpha_s e^{-h}
    scaled = sp.expand(sp.expand(integral, power_exp=True) * sp.exp(-ell_t - h_ell), power_exp=True)
    # scaled = integral / e^{ell_s};  update = sigma_s/sigma_t x_t + alpha_s * scaled
    c_D = sp.simplify(scaled.coeff(q))
    c_slope = sp.simplify(scaled.coeff(slope))
    exact_2m = {"c_D": c_D, "c_slope": c_slope}
    # 2M approximation of the slope weight:
    approx_slope = h_ell / 2 * (1 - sp.exp(-h_ell))
    gap = sp.series(c_slope - approx_slope, h_ell, 0, 4).removeO()
    d1 = (q - q_prev) / h_ell_prev
    lu = sp.expand(c_D * q + approx_slope * d1)
    return {
        "integral": integral,
        "exact": exact_2m,
        "approx_gap_series": gap,
        "coef_q": sp.factor(lu.coeff(q)),
        "coef_q_prev": sp.factor(lu.coeff(q_prev)),
    }


def _dpm2_on_schedule(weight: sp.Expr, schedule: VPSchedule) -> sp.Expr:
    r"""A 2M weight (in :math:`h_\ell, h_{\ell,p}`, divided by :math:`\alpha_s`) as a coefficient on ``schedule``.

    :math:`e^{-h_\ell} = \frac{\alpha_t\sigma_s}{\sigma_t\alpha_s}` (algebraic form); the log-SNR steps
    :math:`h_\ell = \ell_s - \ell_t`, :math:`h_{\ell,p} = \ell_t - \ell_{t_p}` by :func:`_half_logsnr_step`.
    """
    exp_minus_hell = schedule.alpha(t) * sp.sqrt(schedule.sigma2(s)) / (
        sp.sqrt(schedule.sigma2(t)) * schedule.alpha(s)
    )
    expr = a_s * weight.subs(sp.exp(-h_ell), exp_minus_hell)
    steps = {h_ell: _half_logsnr_step(schedule, t, s), h_ell_prev: _half_logsnr_step(schedule, t_prev, t)}
    return expr.subs(steps).subs(_schedule_values(schedule))


def dpm_solver_2(schedule: VPSchedule = OU) -> Update:
    r"""DPM-Solver++(2M), data-prediction multistep, arguments ``(t, s, t_prev)``, ``t_prev > t > s``.

    With half log-SNR steps :math:`h = \ell_s - \ell_t`, :math:`h_p = \ell_t - \ell_{t_p}`:

    .. math::
        x_s = \frac{\sigma_s}{\sigma_t}x_t + \alpha_s(1-e^{-h})\Big[\Big(1+\frac{h}{2h_p}\Big)D_t
              - \frac{h}{2h_p}D_{t_p}\Big].

    ``q = D(x_t)``, ``q_prev = D(x_{t_p})``.  The first step has no previous value and falls back
    to :func:`ddim` (which is the limit ``t_prev -> infinity``).
    """
    d = _dpm2_derivation()
    return Update(
        name="dpm_solver_2",
        frozen="denoiser-linear",
        c_x=(sg_s / sg_t).subs(_schedule_values(schedule)),
        c_q=_dpm2_on_schedule(d["coef_q"], schedule),
        c_q_prev=_dpm2_on_schedule(d["coef_q_prev"], schedule),
        args=(t, s, t_prev),
        description="DPM-Solver++(2M); first step: DDIM",
    )


def dpm_solver_2_exact_linear(schedule: VPSchedule = OU) -> tuple[sp.Expr, sp.Expr]:
    r"""Coefficients ``(c_q, c_q_prev)`` of the *exact* integral of the linear-in-:math:`\ell` denoiser,

    .. math::  \alpha_s(1-e^{-h})D_t + \alpha_s\frac{h-1+e^{-h}}{h_p}(D_t - D_p),

    which DPM-Solver++(2M) approximates to :math:`O(h^3)` per step.
    """
    d = _dpm2_derivation()
    ex = d["exact"]
    lu = sp.expand(ex["c_D"] * q + ex["c_slope"] * (q - q_prev) / h_ell_prev)
    return _dpm2_on_schedule(lu.coeff(q), schedule), _dpm2_on_schedule(lu.coeff(q_prev), schedule)


# ----------------------------------------------------------------------------------------
# 4b. multistep third order: DPM-Solver++(3M), Newton interpolant of D in ell
# ----------------------------------------------------------------------------------------
#: log-SNR steps of the third-order multistep update (arguments of :func:`dpm_solver_3_weights`).
h_ell_prev2 = sp.Symbol("h_ell_p2", positive=True)  # ell_{t_p} - ell_{t_p2} > 0
_u = sp.Symbol("u", nonnegative=True)  # ell - ell_t inside the step


def psi(k: int, step: sp.Expr = h_ell) -> sp.Expr:
    r"""The exponential-integrator weight :math:`\psi_k(h) = \int_0^h e^{u-h}\,\frac{u^k}{k!}\,du` (``sympy.integrate``).

    :math:`\psi_0 = 1 - e^{-h}`, :math:`\psi_1 = h - 1 + e^{-h}`, :math:`\psi_2 = \tfrac{h^2}2 - h + 1 - e^{-h}`;
    :math:`\psi_k = h^{k+1}/(k+1)! + O(h^{k+2})`.
    """
    return sp.expand(sp.integrate(sp.exp(_u - step) * _u**k / sp.factorial(k), (_u, 0, step)))


def _newton3_step(kernel: sp.Expr, basis) -> dict:
    r"""The exponential-integrator step with the model output (``q`` at :math:`u = 0`, ``q_p`` at :math:`-h_p`,
    ``q_p2`` at :math:`-h_p - h_{p2}`) replaced by its quadratic interpolant in :math:`\ell` in Newton form,
    :math:`P(u) = q + u\,\delta_1 + u(u + h_p)\,\delta_2`, integrated against ``kernel`` (:math:`e^{u-h}` for the
    data prediction, :math:`e^{h-u}` for the noise prediction) over :math:`[0, h]`; ``basis(k)`` is the kernel's
    weight :math:`\int_0^h \mathrm{kernel}\,u^k/k!\,du` (:func:`psi`, :func:`phi`).

    Asserts that :math:`P` interpolates the three values and that the weights of :math:`q, \delta_1, \delta_2`
    from ``sympy.integrate`` are :math:`b_0, b_1, 2b_2 + h_pb_1` (:math:`u(u + h_p) = 2\frac{u^2}2 + h_pu`).
    Returns ``interpolant``, ``weights`` (``sympy.integrate``), ``weights_basis`` (the :math:`b_k` form),
    ``values`` (``q, q_p, q_p2``), ``divided_differences`` (:math:`\delta_1, \delta_2` in them) and ``local_error``:
    ``local_error(w2)``, for a weight ``w2`` of :math:`\delta_2` (with :math:`b_0, b_1` on :math:`q, \delta_1`), is
    the update minus the exact integral for a cubic :math:`\sum_k c_k u^k` with :math:`h_p = \rho_1 h`,
    :math:`h_{p2} = \rho_2 h`, as a series in :math:`h` to :math:`h^5` (symbols ``c0..c3``, ``rho_1``, ``rho_2``).
    """
    d0, dp, dp2 = q, q_prev, sp.Symbol("q_p2", real=True)
    d1 = (d0 - dp) / h_ell_prev
    d2 = (d1 - (dp - dp2) / h_ell_prev2) / (h_ell_prev + h_ell_prev2)
    P = d0 + _u * d1 + _u * (_u + h_ell_prev) * d2
    nodes = {0: d0, -h_ell_prev: dp, -h_ell_prev - h_ell_prev2: dp2}
    for node, val in nodes.items():
        if sp.simplify(P.subs(_u, node) - val) != 0:
            raise AssertionError(f"the Newton form does not interpolate at u = {node}")
    b1, b2 = sp.Symbol("delta_1"), sp.Symbol("delta_2")
    newton = d0 + _u * b1 + _u * (_u + h_ell_prev) * b2
    integral = sp.expand(sp.integrate(kernel * newton, (_u, 0, h_ell)))
    weights = tuple(sp.simplify(integral.coeff(v)) for v in (d0, b1, b2))
    w_basis = (basis(0), basis(1), 2 * basis(2) + h_ell_prev * basis(1))
    for a, b in zip(weights, w_basis):
        if sp.simplify(a - b) != 0:
            raise AssertionError("the interpolant's weights are not the b_0, b_1, 2 b_2 + h_p b_1 combination")
    cs = sp.symbols("c0:4", real=True)
    rho1, rho2 = sp.symbols("rho_1 rho_2", positive=True)
    Dc = lambda x: sum(c * x**k for k, c in enumerate(cs))  # noqa: E731
    at_nodes = {d0: Dc(0), dp: Dc(-h_ell_prev), dp2: Dc(-h_ell_prev - h_ell_prev2)}
    exact = sp.integrate(kernel * Dc(_u), (_u, 0, h_ell))

    def local_error(w2: sp.Expr) -> sp.Expr:
        upd = (w_basis[0] * d0 + w_basis[1] * d1 + w2 * d2).subs(at_nodes)
        err = sp.simplify((upd - exact).subs({h_ell_prev: rho1 * h_ell, h_ell_prev2: rho2 * h_ell}))
        return sp.expand(sp.series(err, h_ell, 0, 6).removeO())

    return {"interpolant": P, "weights": weights, "weights_basis": w_basis, "values": (d0, dp, dp2),
            "divided_differences": (d1, d2), "local_error": local_error}


@lru_cache(maxsize=None)
def _dpm3_derivation() -> dict:
    r"""DPM-Solver++(3M): the data-prediction exponential integrator with :math:`D` replaced by its quadratic
    interpolant in :math:`\ell` through the last three model calls.

    With :math:`u = \ell - \ell_t`, the nodes are :math:`u = 0, -h_p, -h_p - h_{p2}` (values
    :math:`D_t, D_p, D_{p2}`), and the Newton form of the interpolant is
    :math:`P(u) = D_t + u\,\delta_1 + u(u + h_p)\,\delta_2` with the divided differences
    :math:`\delta_1 = (D_t - D_p)/h_p`, :math:`\delta_2 = (\delta_1 - (D_p - D_{p2})/h_{p2})/(h_p + h_{p2})`.
    The exact update of :math:`d(x/\sigma)/d\ell = e^{\ell}P` over :math:`[\ell_t, \ell_t + h]` is

    .. math::
        x_s = \frac{\sigma_s}{\sigma_t}x_t + \alpha_s\big(\psi_0(h)\,D_t + \psi_1(h)\,\delta_1
              + (2\psi_2(h) + h_p\psi_1(h))\,\delta_2\big),

    since :math:`\sigma_s e^{\ell_t + u} = \alpha_s e^{u - h}` (:func:`psi`; :func:`_newton3_step` integrates and
    checks).  Returns ``interpolant``,
    ``weights`` (the three weights, from ``sympy.integrate`` of :math:`e^{u-h}P`), ``weights_psi`` (the same in
    :func:`psi`; the derivation asserts they agree), and ``local_error_series``: the update minus the exact
    integral for a cubic :math:`D(u) = \sum_k c_k u^k`, as a series in :math:`h` with
    :math:`h_p = \rho_1 h`, :math:`h_{p2} = \rho_2 h` (it starts at :math:`h^4`: the update is exact for
    quadratic :math:`D`, local order 4, global order 3).
    """
    d = _newton3_step(sp.exp(_u - h_ell), psi)
    w_psi = d["weights_basis"]
    return {"interpolant": d["interpolant"], "weights": d["weights"], "weights_psi": w_psi,
            "local_error_series": d["local_error"](w_psi[2])}


def dpm_solver_3_weights() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""The weights :math:`(\psi_0(h),\ \psi_1(h),\ 2\psi_2(h) + h_p\psi_1(h))` of :math:`D_t, \delta_1, \delta_2` in
    the DPM-Solver++(3M) update (:func:`_dpm3_derivation`), divided by :math:`\alpha_s`, as expressions in the
    half log-SNR steps :data:`h_ell` (:math:`h = \ell_s - \ell_t`) and :data:`h_ell_prev`
    (:math:`h_p = \ell_t - \ell_{t_p}`):

    .. math::
        x_s = \frac{\sigma_s}{\sigma_t}x_t + \alpha_s\big(\psi_0 D_t + \psi_1\delta_1 + (2\psi_2 + h_p\psi_1)\delta_2\big).

    The order-2 steps of the same run are :func:`dpm_solver_2` and the first is :func:`ddim`.
    """
    return _dpm3_derivation()["weights_psi"]


# ----------------------------------------------------------------------------------------
# 4c. noise-prediction multistep second order: DPM-Solver-2M (diffusers' algorithm_type "dpmsolver")
# ----------------------------------------------------------------------------------------
def phi(k: int, step: sp.Expr = h_ell) -> sp.Expr:
    r"""The noise-form exponential-integrator weight :math:`\varphi_k(h) = \int_0^h e^{h-u}\,\frac{u^k}{k!}\,du`
    (``sympy.integrate``): :math:`\varphi_0 = e^h - 1`, :math:`\varphi_1 = e^h - 1 - h`;
    :math:`\varphi_k = h^{k+1}/(k+1)! + O(h^{k+2})` with every Taylor coefficient positive."""
    return sp.expand(sp.integrate(sp.exp(step - _u) * _u**k / sp.factorial(k), (_u, 0, step)))


@lru_cache(maxsize=None)
def _dpm2_eps_derivation() -> dict:
    r"""DPM-Solver-2M in the noise parameterisation: the noise prediction linear in :math:`\ell` on the step.

    :func:`_dpm1_derivation` gives :math:`d(x/\alpha)/d\ell = -e^{-\ell}\varepsilon`.  With the linear interpolant
    :math:`\varepsilon(\ell_t + u) \approx \varepsilon_t + u\,\delta_1`, :math:`\delta_1 = (\varepsilon_t -
    \varepsilon_p)/h_p` (through the previous call at :math:`u = -h_p`), integration over
    :math:`[\ell_t, \ell_t + h]` and :math:`\alpha_s e^{-\ell_t - u} = \sigma_s e^{h - u}` give

    .. math::
        x_s = \frac{\alpha_s}{\alpha_t}x_t - \sigma_s\big(\varphi_0(h)\,\varepsilon_t + \varphi_1(h)\,\delta_1\big)

    (:func:`phi`; diffusers' ``solver_type="heun"``).  The midpoint variant (``solver_type="midpoint"``,
    diffusers' default) replaces :math:`\varphi_1(h) = h^2/2 + h^3/6 + \dots` by
    :math:`\tfrac h2\varphi_0(h) = h^2/2 + h^3/4 + \dots` (larger by :math:`h^3/12 + O(h^4)`).

    Returns ``rate`` (:math:`-e^{-\ell}`, checked against :func:`_dpm1_derivation`), ``weights`` (of
    :math:`\varepsilon_t, \delta_1` inside :math:`-\sigma_s(\cdot)`, from ``sympy.integrate``; asserted equal to
    :math:`\varphi_0, \varphi_1`), ``midpoint_gap_series`` and ``local_error_series``: per variant, the update minus
    the exact integral for a quadratic :math:`\varepsilon(u) = c_0 + c_1 u + c_2 u^2`, :math:`h_p = \rho h`, as a
    series in :math:`h` (both start at :math:`h^3`: exact for linear :math:`\varepsilon`, local order 3, global
    order 2).
    """
    rate = -sp.exp(-lam)
    d1 = _dpm1_derivation()
    if sp.simplify(d1["noise_ode"] - rate.subs(lam, sp.log(GENERAL.alpha(t) / sp.sqrt(GENERAL.sigma2(t)))) * q) != 0:
        raise AssertionError("d(x/alpha)/d ell is not -e^{-ell} eps")
    integral = sp.integrate(-rate * (q + (lam - ell_t) * slope), (lam, ell_t, ell_t + h_ell))
    # x_s = (alpha_s/alpha_t) x_t - alpha_s * integral, alpha_s = sigma_s e^{ell_t + h}: weights inside -sigma_s(.)
    scaled = sp.expand(sp.expand(integral, power_exp=True) * sp.exp(ell_t + h_ell), power_exp=True)
    weights = (sp.simplify(scaled.coeff(q)), sp.simplify(scaled.coeff(slope)))
    for a, b in zip(weights, (phi(0), phi(1))):
        if sp.simplify(a - b) != 0:
            raise AssertionError("the linear interpolant's weights are not phi_0, phi_1")
    midpoint = h_ell / 2 * phi(0)
    cs = sp.symbols("c0:3", real=True)
    rho = sp.Symbol("rho", positive=True)
    ec = lambda x: sum(c * x**k for k, c in enumerate(cs))  # noqa: E731
    exact = sp.integrate(sp.exp(h_ell - _u) * ec(_u), (_u, 0, h_ell))
    delta = (ec(0) - ec(-rho * h_ell)) / (rho * h_ell)
    local = {name: sp.expand(sp.series(sp.simplify(phi(0) * ec(0) + w * delta - exact), h_ell, 0, 5).removeO())
             for name, w in (("heun", phi(1)), ("midpoint", midpoint))}
    return {"rate": rate, "integral": integral, "weights": weights,
            "midpoint_gap_series": sp.series(phi(1) - midpoint, h_ell, 0, 5).removeO(),
            "local_error_series": local}


def dpm_solver_2_eps_weights() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""The weights :math:`(\varphi_0(h),\ \tfrac h2\varphi_0(h),\ \varphi_1(h))` of :math:`\varepsilon_t` and of
    :math:`\delta_1 = (\varepsilon_t - \varepsilon_p)/h_p` (midpoint, heun) in DPM-Solver-2M's noise form
    (:func:`_dpm2_eps_derivation`), divided by :math:`-\sigma_s`, in the half log-SNR step :data:`h_ell`:

    .. math::
        x_s = \frac{\alpha_s}{\alpha_t}x_t - \sigma_s\big(\varphi_0\,\varepsilon_t + w\,\delta_1\big),\qquad
        w = \tfrac h2\varphi_0 \text{ (midpoint)},\ \varphi_1 \text{ (heun)}.

    The first step (no previous call) is DPM-Solver-1, :func:`dpm_solver_1` (:math:`\delta_1` dropped).
    """
    w0, w1 = _dpm2_eps_derivation()["weights"]
    return w0, h_ell / 2 * w0, w1


# ----------------------------------------------------------------------------------------
# 4d. singlestep second order: DPM-Solver++(2S) (diffusers' DPMSolverSinglestepScheduler, solver_order=2)
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _dpm2s_derivation() -> dict:
    r"""DPM-Solver++(2S): the data-prediction exponential integrator over :math:`[\ell_{s_1}, \ell_{s_1} + h]` with
    :math:`D` replaced by its line through the step's start (:math:`u = 0`, value :math:`D_{s_1}`) and an
    intermediate node *inside* the step (:math:`u = h_0 = r h`, :math:`0 < r < 1`, value :math:`D_{s_0}`, the model
    at the state a first-order step reached there):

    .. math::
        P(u) = D_{s_1} + u\,\delta,\quad \delta = \frac{D_{s_0} - D_{s_1}}{h_0},\qquad
        x_t = \frac{\sigma_t}{\sigma_{s_1}}x_{s_1} + \alpha_t\big(\psi_0(h)\,D_{s_1} + w\,\delta\big),

    with :math:`w = \psi_1(h)` the exact integral of the line (diffusers' ``solver_type="heun"``) and
    :math:`w = \tfrac h2\psi_0(h)` (``"midpoint"``, the default; :func:`psi`).  Returns ``weights`` (of
    :math:`D_{s_1}, \delta`, from ``sympy.integrate`` of :math:`e^{u-h}P`; asserted equal to :math:`\psi_0,
    \psi_1`), ``midpoint_gap_series`` (:math:`\psi_1 - \tfrac h2\psi_0 = h^3/12 - h^4/24 + O(h^5)`: the midpoint weight is
    smaller) and
    ``local_error_series``: per variant, the update minus the exact integral for a quadratic
    :math:`D(u) = c_0 + c_1u + c_2u^2` with the node at :math:`u = rh`, a series in :math:`h` (both start at
    :math:`h^3`: heun :math:`c_2h^3(r/2 - 1/3)`, exact for linear :math:`D`; midpoint :math:`-c_1h^3/12` more; local
    order 3, global order 2).
    """
    rr = sp.Symbol("r", positive=True)
    d_s1, d_s0 = q, sp.Symbol("q_s0", real=True)
    P = d_s1 + _u * (d_s0 - d_s1) / (rr * h_ell)
    for node, val in ((0, d_s1), (rr * h_ell, d_s0)):
        if sp.simplify(P.subs(_u, node) - val) != 0:
            raise AssertionError(f"the line does not interpolate at u = {node}")
    b = sp.Symbol("delta")
    integral = sp.expand(sp.integrate(sp.exp(_u - h_ell) * (d_s1 + _u * b), (_u, 0, h_ell)))
    weights = (sp.simplify(integral.coeff(d_s1)), sp.simplify(integral.coeff(b)))
    for a, c in zip(weights, (psi(0), psi(1))):
        if sp.simplify(a - c) != 0:
            raise AssertionError("the line's weights are not psi_0, psi_1")
    midpoint = h_ell / 2 * psi(0)
    cs = sp.symbols("c0:3", real=True)
    Dc = lambda x: sum(c * x**k for k, c in enumerate(cs))  # noqa: E731
    exact = sp.integrate(sp.exp(_u - h_ell) * Dc(_u), (_u, 0, h_ell))
    delta = (Dc(rr * h_ell) - Dc(0)) / (rr * h_ell)
    local = {name: sp.expand(sp.series(sp.simplify(psi(0) * Dc(0) + wt * delta - exact), h_ell, 0, 4).removeO())
             for name, wt in (("heun", psi(1)), ("midpoint", midpoint))}
    return {"interpolant": P, "weights": weights,
            "midpoint_gap_series": sp.series(psi(1) - midpoint, h_ell, 0, 5).removeO(),
            "local_error_series": local}


def dpm_solver_2s_weights() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""The weights :math:`(\psi_0(h),\ \tfrac h2\psi_0(h),\ \psi_1(h))` of :math:`D_{s_1}` and of
    :math:`\delta = (D_{s_0} - D_{s_1})/h_0` (midpoint, heun) in DPM-Solver++(2S) (:func:`_dpm2s_derivation`),
    divided by :math:`\alpha_t`, in the half log-SNR step :data:`h_ell` of the whole step :math:`s_1 \to t`:

    .. math::
        x_t = \frac{\sigma_t}{\sigma_{s_1}}x_{s_1} + \alpha_t\big(\psi_0\,D_{s_1} + w\,\delta\big),\qquad
        w = \tfrac h2\psi_0 \text{ (midpoint)},\ \psi_1 \text{ (heun)}.

    The intermediate state at :math:`s_0` comes from DDIM (:func:`ddim`) from :math:`s_1`.
    """
    w0, w1 = _dpm2s_derivation()["weights"]
    return w0, h_ell / 2 * w0, w1


# ----------------------------------------------------------------------------------------
# 4i. singlestep third order: DPM-Solver++(3S) (diffusers' DPMSolverSinglestepScheduler, solver_order=3)
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _dpm3s_derivation() -> dict:
    r"""DPM-Solver++(3S): the data-prediction exponential integrator over :math:`[\ell_{s_2}, \ell_{s_2} + h]` from
    the saved state at :math:`s_2` (:math:`u = \ell - \ell_{s_2} = 0`), with two model calls *inside* the step, at
    the first intermediate level :math:`s_1` (:math:`u = h_1`) and the second :math:`s_0` (:math:`u = h_0 = h_1 + g`,
    :math:`g > 0` the log-SNR step :math:`s_1 \to s_0`), the states there from the first- and second-order steps
    (:func:`ddim`, :func:`dpm_solver_2s_weights`) from :math:`s_2`.

    *heun* (diffusers' ``solver_type="heun"``): :math:`D` replaced by its quadratic interpolant through the three
    calls, in the monomial form :math:`P(u) = D_{s_2} + a\,u + b\,u^2` (``sympy.solve`` of the two interpolation
    conditions):

    .. math::
        a = a_1\Delta_1 + a_0\Delta_0,\quad b = b_1\Delta_1 + b_0\Delta_0,\qquad
        \Delta_j = D_{s_j} - D_{s_2},\\
        a_1 = \frac{h_0}{h_1 g},\ a_0 = -\frac{h_1}{h_0 g},\ b_1 = -\frac1{h_1 g},\ b_0 = \frac1{h_0 g},\qquad
        x_t = \frac{\sigma_t}{\sigma_{s_2}}x_{s_2} + \alpha_t\big(\psi_0(h)\,D_{s_2} + \psi_1(h)\,a + 2\psi_2(h)\,b\big)

    (every factor sign-definite: no cancellation in the weights).  *midpoint* (``"midpoint"``, the default; the
    DPM-Solver paper's third-order singlestep method): the line through :math:`D_{s_2}` and :math:`D_{s_0}` alone,
    integrated exactly, :math:`x_t = \dots + \alpha_t(\psi_0 D_{s_2} + \psi_1\Delta_0/h_0)`; exact for linear
    :math:`D`, and its quadrature error for quadratic :math:`D` is :math:`c_2h^3(r_0/2 - 1/3) + O(h^4)`,
    :math:`r_0 = h_0/h`: third order only where :math:`r_0 = 2/3 + O(h)`.

    Returns ``weights`` (of :math:`D_{s_2}, a, b` from ``sympy.integrate`` of :math:`e^{u-h}P`; asserted equal to
    :math:`\psi_0, \psi_1, 2\psi_2`), ``nodes`` (:math:`a_1, a_0, b_1, b_0`), and ``local_error_series``: per variant
    the quadrature error (update minus the exact integral) for a cubic :math:`D(u) = \sum_k c_k u^k` with
    :math:`h_1 = \rho_1 h`, :math:`g = \gamma h`, a series in :math:`h` (heun from :math:`h^4`; midpoint from
    :math:`h^3` with the factor :math:`c_2(r_0/2 - 1/3)`, :math:`r_0 = \rho_1 + \gamma`), and ``s1_weight_series``:
    heun's weight of :math:`D_{s_1}`, :math:`\psi_1a_1 + 2\psi_2b_1 = h(r_0/2 - 1/3)/(\rho_1\gamma) + O(h^2)`, through
    which the first-order (DDIM) state at :math:`s_1`, local error :math:`O(h^2)`, reaches the output: :math:`O(h^3)`
    unless :math:`r_0 = 2/3 + O(h)`, so heun too is third order only there (the midpoint does not use
    :math:`D_{s_1}`; the second-order state at :math:`s_0` enters with weight :math:`O(h)`, :math:`O(h^4)` for both).
    """
    h1, gg = h_ell_prev, h_ell_prev2
    h0 = h1 + gg
    aa, bb = sp.symbols("a b", real=True)
    d2, dd1, dd0 = q, sp.Symbol("q_s1", real=True), sp.Symbol("q_s0", real=True)
    sol = sp.solve([d2 + aa * h1 + bb * h1**2 - dd1, d2 + aa * h0 + bb * h0**2 - dd0], [aa, bb], dict=True)[0]
    D1, D0 = sp.Symbol("Delta_1"), sp.Symbol("Delta_0")
    a_lin = sp.expand(sol[aa].subs({dd1: d2 + D1, dd0: d2 + D0}))
    b_lin = sp.expand(sol[bb].subs({dd1: d2 + D1, dd0: d2 + D0}))
    nodes = tuple(sp.factor(e.coeff(v)) for e, v in ((a_lin, D1), (a_lin, D0), (b_lin, D1), (b_lin, D0)))
    want = (h0 / (h1 * gg), -h1 / (h0 * gg), -1 / (h1 * gg), 1 / (h0 * gg))
    for got, w_ in zip(nodes, want):
        if sp.simplify(got - w_) != 0:
            raise AssertionError("the interpolation weights are not the sign-definite node forms")
    integral = sp.expand(sp.integrate(sp.exp(_u - h_ell) * (d2 + aa * _u + bb * _u**2), (_u, 0, h_ell)))
    weights = tuple(sp.simplify(integral.coeff(v)) for v in (d2, aa, bb))
    for got, w_ in zip(weights, (psi(0), psi(1), 2 * psi(2))):
        if sp.simplify(got - w_) != 0:
            raise AssertionError("the quadratic's weights are not psi_0, psi_1, 2 psi_2")
    cs = sp.symbols("c0:4", real=True)
    rho1, gam = sp.symbols("rho_1 gamma", positive=True)
    Dc = lambda x: sum(c * x**k for k, c in enumerate(cs))  # noqa: E731
    exact = sp.integrate(sp.exp(_u - h_ell) * Dc(_u), (_u, 0, h_ell))
    sub = {h1: rho1 * h_ell, gg: gam * h_ell}
    Ds = {D1: Dc(h1) - Dc(0), D0: Dc(h0) - Dc(0)}
    heun = psi(0) * Dc(0) + psi(1) * a_lin.subs(Ds) + 2 * psi(2) * b_lin.subs(Ds)
    mid = psi(0) * Dc(0) + psi(1) * (Dc(h0) - Dc(0)) / h0
    local = {name: sp.expand(sp.series(sp.simplify((upd - exact).subs(sub)), h_ell, 0, 5).removeO())
             for name, upd in (("heun", heun), ("midpoint", mid))}
    # the weight of D_{s1} in heun's update: the DDIM state at s1 (local error O(h^2)) reaches the output through it
    w_s1 = sp.simplify((psi(1) * nodes[0] + 2 * psi(2) * nodes[2]).subs(sub))
    return {"interpolant": d2 + a_lin * _u + b_lin * _u**2, "weights": weights, "nodes": nodes,
            "local_error_series": local, "s1_weight_series": sp.expand(sp.series(w_s1, h_ell, 0, 3).removeO())}


def dpm_solver_3s_weights() -> tuple[sp.Expr, ...]:
    r"""DPM-Solver++(3S) (:func:`_dpm3s_derivation`) in the half log-SNR steps :data:`h_ell` (:math:`h`, the whole
    step :math:`s_2 \to t`), :data:`h_ell_prev` (:math:`h_1`, :math:`s_2 \to s_1`) and :data:`h_ell_prev2`
    (:math:`g`, :math:`s_1 \to s_0`): ``(psi_0, psi_1, 2 psi_2, a_1, a_0, b_1, b_0, m_0)``,

    .. math::
        x_t = \frac{\sigma_t}{\sigma_{s_2}}x_{s_2} + \alpha_t\big(\psi_0 D_{s_2} + \psi_1 a + 2\psi_2 b\big)
        \ \text{(heun)},\qquad
        x_t = \frac{\sigma_t}{\sigma_{s_2}}x_{s_2} + \alpha_t\big(\psi_0 D_{s_2} + m_0\Delta_0\big)
        \ \text{(midpoint)},

    :math:`a = a_1\Delta_1 + a_0\Delta_0`, :math:`b = b_1\Delta_1 + b_0\Delta_0`, :math:`m_0 = \psi_1(h)/h_0`,
    :math:`h_0 = h_1 + g`.
    """
    d = _dpm3s_derivation()
    return tuple(d["weights"]) + tuple(d["nodes"]) + (psi(1) / (h_ell_prev + h_ell_prev2),)


# ----------------------------------------------------------------------------------------
# 4j. noise-prediction multistep third order: DPM-Solver-3M (diffusers' algorithm_type "dpmsolver", solver_order=3)
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _dpm3_eps_derivation() -> dict:
    r"""DPM-Solver-3M in the noise parameterisation: :func:`_dpm2_eps_derivation`'s equation
    :math:`d(x/\alpha)/d\ell = -e^{-\ell}\varepsilon` with :math:`\varepsilon` replaced by its quadratic interpolant in
    :math:`\ell` through the last three calls (nodes :math:`u = 0, -h_p, -h_p - h_{p2}`, Newton form
    :math:`\varepsilon_t + u\,\delta_1 + u(u + h_p)\,\delta_2`, :math:`\delta_1 = (\varepsilon_t - \varepsilon_p)/h_p`,
    :math:`\delta_2 = (\delta_1 - (\varepsilon_p - \varepsilon_{p2})/h_{p2})/(h_p + h_{p2})`).  With
    :math:`\alpha_s e^{-\ell_t - u} = \sigma_s e^{h - u}` the integral over the step is one against :math:`e^{h-u}`
    (:func:`_newton3_step`, which integrates with ``sympy.integrate`` and asserts the :func:`phi` form):

    .. math::
        x_s = \frac{\alpha_s}{\alpha_t}x_t - \sigma_s\big(\varphi_0(h)\,\varepsilon_t + \varphi_1(h)\,\delta_1
              + (2\varphi_2(h) + h_p\varphi_1(h))\,\delta_2\big).

    Returns ``rate`` (:math:`-e^{-\ell}`, :func:`_dpm2_eps_derivation`'s, checked there against DPM-Solver-1's
    derivation), ``interpolant``, ``weights`` (of :math:`\varepsilon_t, \delta_1, \delta_2` inside
    :math:`-\sigma_s(\cdot)`, from ``sympy.integrate``), ``weights_phi`` (the :func:`phi` form; asserted equal),
    ``halved_weight`` (:math:`h_p\varphi_1 + \varphi_2`: the weight of :math:`\delta_2` with the :math:`\varphi_2` part
    halved) and ``local_error_series``: for ``derived`` and ``halved`` the update minus the exact integral (inside
    :math:`-\sigma_s(\cdot)`) for a cubic :math:`\varepsilon(u) = \sum_k c_k u^k`, :math:`h_p = \rho_1 h`,
    :math:`h_{p2} = \rho_2 h`, a series in :math:`h`: ``derived`` starts at :math:`h^4` (exact for quadratic
    :math:`\varepsilon`, local order 4, global order 3), ``halved`` at :math:`-c_2h^3/6` (exact only for linear
    :math:`\varepsilon`, global order 2).
    """
    rate = _dpm2_eps_derivation()["rate"]
    d = _newton3_step(sp.exp(h_ell - _u), phi)
    w_phi = d["weights_basis"]
    halved = h_ell_prev * phi(1) + phi(2)
    return {"rate": rate, "interpolant": d["interpolant"], "weights": d["weights"], "weights_phi": w_phi,
            "halved_weight": halved,
            "local_error_series": {"derived": d["local_error"](w_phi[2]), "halved": d["local_error"](halved)}}


def dpm_solver_3_eps_weights() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""The weights :math:`(\varphi_0(h),\ \varphi_1(h),\ 2\varphi_2(h) + h_p\varphi_1(h))` of :math:`\varepsilon_t,
    \delta_1, \delta_2` (Newton divided differences of the noise prediction in :math:`\ell`) in DPM-Solver-3M's noise
    form (:func:`_dpm3_eps_derivation`), divided by :math:`-\sigma_s`, in the half log-SNR steps :data:`h_ell`
    (:math:`h = \ell_s - \ell_t`) and :data:`h_ell_prev` (:math:`h_p = \ell_t - \ell_{t_p}`):

    .. math::
        x_s = \frac{\alpha_s}{\alpha_t}x_t - \sigma_s\big(\varphi_0\,\varepsilon_t + \varphi_1\,\delta_1
              + (2\varphi_2 + h_p\varphi_1)\,\delta_2\big).

    The order-2 steps of the same run are :func:`dpm_solver_2_eps_weights` (midpoint) and the first is
    :func:`dpm_solver_1`.
    """
    return _dpm3_eps_derivation()["weights_phi"]


# ----------------------------------------------------------------------------------------
# 4e. Heun's trapezoidal predictor-corrector in the VE variables (diffusers' HeunDiscreteScheduler)
# ----------------------------------------------------------------------------------------
def _ve_pf_ode() -> sp.Expr:
    r"""The PF-ODE in the VE variables :math:`y = x/\alpha_t`, :math:`\tilde\sigma = \sigma_t/\alpha_t` minus
    :math:`(y - D)/\tilde\sigma` (schedule :data:`theory.forward.GENERAL`): zero when
    :math:`dy/d\tilde\sigma = (y - D)/\tilde\sigma`, the ODE diffusers' VE schedulers integrate."""
    xf = sp.Function("x")(t)
    al, sg = GENERAL.alpha(t), sp.sqrt(GENERAL.sigma2(t))
    score = (al * q - xf) / GENERAL.sigma2(t)   # q = D, the denoiser
    rhs = GENERAL.drift_coefficient(t) * xf - GENERAL.diffusion2(t) / 2 * score
    dy = sp.diff(xf / al, t).subs(sp.Derivative(xf, t), rhs)
    return sp.simplify(dy / sp.diff(sg / al, t) - (xf / al - q) / (sg / al))


def _heun_ve(y0: sp.Expr, S0: sp.Expr, S1: sp.Expr, D0: sp.Expr, D1, w: sp.Expr = sp.Rational(1, 2)) -> tuple:
    r"""``(y_p, y_1)``: the Euler predictor and the corrected step of :math:`dy/d\tilde\sigma = (y - D)/\tilde\sigma`
    from :math:`(y_0, S_0)` to :math:`S_1`, with the slope at the predictor weighted ``w`` (Heun: 1/2):
    :math:`y_p = y_0 + (S_1 - S_0)d_0`, :math:`y_1 = y_0 + (S_1 - S_0)((1 - w)d_0 + w\,d_1)`,
    :math:`d_0 = (y_0 - D_0)/S_0`, :math:`d_1 = (y_p - D_1(y_p))/S_1` (``D1``: a value or a function of
    :math:`y_p`)."""
    d0 = (y0 - D0) / S0
    yp = y0 + (S1 - S0) * d0
    d1 = (yp - (D1(yp) if callable(D1) else D1)) / S1
    return yp, y0 + (S1 - S0) * ((1 - w) * d0 + w * d1)


@lru_cache(maxsize=None)
def _heun_derivation() -> dict:
    r"""Heun's method (explicit trapezoidal rule) on the PF-ODE in diffusers' VE variables.

    In :math:`y = x/\alpha`, :math:`\tilde\sigma = \sigma/\alpha` the PF-ODE of any VP schedule is
    :math:`dy/d\tilde\sigma = (y - D)/\tilde\sigma` (checked by :func:`_ve_pf_ode`).  One step
    :math:`\tilde\sigma_t \to \tilde\sigma_s` takes the Euler predictor (= DDIM, :func:`ddim`) and then the trapezoid
    of the slopes at the start and at the predictor (:func:`_heun_ve`).  Since
    :math:`(y_p - D_0)/\tilde\sigma_s = (y_0 - D_0)/\tilde\sigma_t`, the slopes differ by
    :math:`(D_0 - D_1)/\tilde\sigma_s` and

    .. math::
        x_s = \underbrace{\frac{\sigma_s}{\sigma_t}x_t + \alpha_s\psi_0(h)D_t}_{\text{DDIM predictor } x_p}
              + \alpha_s\,\tfrac12\varphi_0(h)\,\big(D(x_p, s) - D_t\big),\qquad
        \tfrac{\tilde\sigma_t}{\tilde\sigma_s} - 1 = e^h - 1 = \varphi_0(h),

    :math:`h = \ell_s - \ell_t` (:func:`psi`, :func:`phi`).  Returns ``ve_ode`` (0), ``coefficients`` (of
    :math:`x_t, D_t, D_p` in the abstract :math:`\alpha, \sigma`), ``weights`` (:math:`\psi_0, \tfrac12\varphi_0` of
    :math:`D_t` and :math:`D_p - D_t`, divided by :math:`\alpha_s`; asserted), ``gain`` (the step's affine gain
    :math:`y_1 - m = G(y_0 - m)` for the Gaussian denoiser :math:`m + v(y - m)/(v + \tilde\sigma^2)`, closed form in
    :math:`S_0, S_1, v`), ``local_error_series`` (``heun``, ``euler`` (the predictor alone, ``w = 0``),
    ``endpoint`` (the slope at the predictor alone, ``w = 1``): the gain minus the exact flow's
    :math:`\sqrt{(v + S_1^2)/(v + S_0^2)}`, a series in the step :math:`k = S_0 - S_1`: Heun's is
    :math:`S_0vk^3/(2(S_0^2 + v)^3) + O(k^4)`, local order 3, global order 2; the other two start at
    :math:`\mp vk^2/(2(S_0^2 + v)^2)`, order 1) and
    ``final_step`` (the predictor at :math:`\tilde\sigma_s = 0` is :math:`D_t`: the last step to
    :math:`\sigma = 0` is Euler, where the corrector's :math:`\varphi_0(h)` is infinite).
    """
    ve = _ve_pf_ode()
    if ve != 0:
        raise AssertionError(f"the PF-ODE in (x/alpha, sigma/alpha) is not (y - D)/sigma: residual {ve}")
    y0, S0, S1, q1 = sp.symbols("y_0 S_0 S_1 q_1", real=True)
    yp, y1 = _heun_ve(y0, S0, S1, q, q1)
    to_vp = {y0: x_t / a_t, S0: sg_t / a_t, S1: sg_s / a_s}
    upd, pred = sp.expand(a_s * y1.subs(to_vp)), sp.expand(a_s * yp.subs(to_vp))
    c = tuple(sp.simplify(_coeff(upd, v)) for v in (x_t, q, q1))
    ddim_upd = _ddim_derivation()["update"]
    if sp.simplify(pred - ddim_upd) != 0 or sp.simplify(c[0] - sg_s / sg_t) != 0:
        raise AssertionError("the predictor is not DDIM")
    e_h = (a_s * sg_t) / (a_t * sg_s)            # e^{h}, h = ell_s - ell_t
    weights = (sp.simplify((c[1] + c[2]) / a_s), sp.simplify(c[2] / a_s))
    for got, want in zip(weights, (psi(0), phi(0) / 2)):
        if sp.simplify(got - want.subs(sp.exp(h_ell), e_h).subs(sp.exp(-h_ell), 1 / e_h)) != 0:
            raise AssertionError("the Heun weights are not psi_0, phi_0/2")
    k, v, m = sp.Symbol("k", positive=True), sp.Symbol("v", positive=True), sp.Symbol("m", real=True)
    Dg = lambda y, S: m + v / (v + S**2) * (y - m)  # noqa: E731
    exact = sp.sqrt((v + S1**2) / (v + S0**2))
    gains, local = {}, {}
    for name, w in (("heun", sp.Rational(1, 2)), ("euler", sp.S.Zero), ("endpoint", sp.S.One)):
        yn = _heun_ve(y0, S0, S1, Dg(y0, S0), lambda y: Dg(y, S1), w)[1]
        G = sp.simplify(sp.diff(yn, y0))
        if sp.simplify(yn - m - G * (y0 - m)) != 0:
            raise AssertionError("the step is not affine about m")
        gains[name] = G
        ser = sp.expand(sp.series((G - exact).subs(S1, S0 - k), k, 0, 4).removeO())
        local[name] = sum(sp.factor(sp.simplify(ser.coeff(k, p))) * k**p for p in range(4))
    final = sp.simplify(yp.subs(S1, 0))
    if final != q:
        raise AssertionError("the predictor to sigma = 0 is not D_t")
    return {"ve_ode": ve, "coefficients": c, "weights": weights, "gain": gains["heun"], "gains": gains,
            "local_error_series": local, "final_step": final}


def heun_weights() -> tuple[sp.Expr, sp.Expr]:
    r"""The weights :math:`(\psi_0(h),\ \tfrac12\varphi_0(h))` of :math:`D_t` and of :math:`D_p - D_t` (the
    denoiser at the Euler predictor :math:`x_p` at level :math:`s`, minus the one at the start) in Heun's step of
    the PF-ODE in the VE variables (:func:`_heun_derivation`), divided by :math:`\alpha_s`, in the half log-SNR
    step :data:`h_ell` (:math:`h = \ell_s - \ell_t`):

    .. math::
        x_s = \frac{\sigma_s}{\sigma_t}x_t + \alpha_s\big(\psi_0\,D_t + \tfrac12\varphi_0\,(D_p - D_t)\big),\qquad
        x_p = \frac{\sigma_s}{\sigma_t}x_t + \alpha_s\psi_0\,D_t\ \text{(DDIM)}.
    """
    return psi(0), phi(0) / 2


# ----------------------------------------------------------------------------------------
# 4f. Linear multistep (Adams-Bashforth on a non-uniform sigma grid) in the VE variables (LMSDiscreteScheduler)
# ----------------------------------------------------------------------------------------
#: LMS arguments: the sigma step k = sigma_i - sigma_{i+1} > 0 and the gaps g_m = sigma_{i-m} - sigma_{i-m+1} > 0
lms_k = sp.Symbol("lms_k", positive=True)
lms_g1, lms_g2, lms_g3 = sp.symbols("lms_g1 lms_g2 lms_g3", positive=True)
#: the highest LMS order derived (diffusers' default ``order=4``)
LMS_MAX_ORDER = 4


@lru_cache(maxsize=None)
def _lms_derivation() -> dict:
    r"""The exact Lagrange-basis integrals of diffusers' linear multistep step.

    On :math:`dy/d\tilde\sigma = d(y, \tilde\sigma) = (y - D)/\tilde\sigma` (:func:`_ve_pf_ode`) the order-``p``
    step from :math:`\sigma_i` to :math:`\sigma_{i+1}` integrates the polynomial through the last ``p`` slopes:
    :math:`y_{i+1} = y_i + \sum_{j<p} c_{pj} d_{i-j}`,
    :math:`c_{pj} = \int_{\sigma_i}^{\sigma_{i+1}} \ell_j(\tau)\,d\tau`,
    :math:`\ell_j(\tau) = \prod_{m \ne j, m < p}(\tau - \sigma_{i-m})/(\sigma_{i-j} - \sigma_{i-m})`.
    With :math:`\tau = \sigma_i - v`, :math:`k = \sigma_i - \sigma_{i+1}` and :math:`G_m = \sigma_{i-m} - \sigma_i
    = g_1 + \dots + g_m` (:math:`g_m = \sigma_{i-m} - \sigma_{i-m+1} > 0`, decreasing sigmas), every factor is
    :math:`-(v + G_m)/(G_j - G_m)`, and

    .. math::  c_{pj} = -(-1)^j\,\frac{\int_0^k \prod_{m\ne j}(v + G_m)\,dv}{\prod_{m\ne j}|G_j - G_m|},

    a positive polynomial over a product of sums of gaps (no cancellation).  Returns ``coeffs`` (``p ->`` the
    ``p`` integrals, SymPy's :func:`sympy.integrate` of the Lagrange basis in :math:`\tau` with symbolic nodes,
    then written in ``k, g``; asserted equal to the signed form above), ``stable`` (the signed form), ``exactness``
    (order ``p`` integrates :math:`\tau^q` exactly for ``q < p``: asserted) and ``local_error_series`` (the
    error of one step on :math:`dy/d\tau = f(\tau)` with :math:`f` the monomial :math:`\tau^p` about
    :math:`\sigma_i`, i.e. the first non-integrated power: nonzero, of degree ``p + 1`` in the step size at fixed
    gap ratios, so the step is order ``p``).
    """
    tau, v = sp.symbols("tau v", real=True)
    S = sp.symbols("sigma_0:5", real=True)  # S[0] = sigma_{i+1}, S[1 + m] = sigma_{i-m}
    gaps = (lms_g1, lms_g2, lms_g3)
    G = [sp.S.Zero] + [sum(gaps[:m]) for m in range(1, LMS_MAX_ORDER)]
    coeffs, stable, exact, local = {}, {}, {}, {}
    for p in range(1, LMS_MAX_ORDER + 1):
        nodes = [S[1 + m] for m in range(p)]
        to_kg = {S[1 + m]: S[1] + G[m] for m in range(p)}
        to_kg[S[0]] = S[1] - lms_k
        cs, st = [], []
        for j in range(p):
            ell = sp.Mul(*[(tau - nodes[m]) / (nodes[j] - nodes[m]) for m in range(p) if m != j])
            c = sp.integrate(ell, (tau, S[1], S[0]))
            c = sp.factor(sp.simplify(c.subs(to_kg)))
            num = sp.expand(sp.integrate(sp.Mul(*[(v + G[m]) for m in range(p) if m != j]), (v, 0, lms_k)))
            den = sp.Mul(*[sp.factor(sp.Abs(G[j] - G[m])) for m in range(p) if m != j])
            signed = -(-1) ** j * num / den
            if sp.simplify(c - signed) != 0:
                raise AssertionError(f"LMS order {p} coefficient {j}: the signed positive form differs")
            if c.free_symbols - {lms_k, *gaps[:p - 1]}:
                raise AssertionError("an LMS coefficient depends on more than the step and the gaps")
            cs.append(c)
            st.append(signed)
        # exactness: order p integrates polynomials of degree < p in tau exactly
        for qd in range(p):
            quad = sum(cj * (S[1] + G[j]) ** qd for j, cj in enumerate(cs))
            want = ((S[1] - lms_k) ** (qd + 1) - S[1] ** (qd + 1)) / (qd + 1)
            if sp.simplify(sp.expand(quad - want)) != 0:
                raise AssertionError(f"LMS order {p} does not integrate tau^{qd} exactly")
        eps_ = sp.Symbol("epsilon", positive=True)   # uniform scaling of the step and the gaps
        quad = sum(cj * G[j] ** p for j, cj in enumerate(cs))   # f = (tau - sigma_i)^p
        err = sp.factor(sp.simplify(quad - (-lms_k) ** (p + 1) / (p + 1)))
        scaled = sp.simplify(err.subs({lms_k: eps_ * lms_k, **{g_: eps_ * g_ for g_ in gaps}}) / err)
        if err == 0 or scaled != eps_ ** (p + 1):
            raise AssertionError(f"LMS order {p}: the first non-integrated power is not of degree p + 1")
        coeffs[p], stable[p], exact[p], local[p] = tuple(cs), tuple(st), True, err
    return {"coeffs": coeffs, "stable": stable, "exactness": exact, "local_error_series": local}


def lms_weights() -> tuple[sp.Expr, ...]:
    r"""The LMS coefficients :math:`c_{pj}` of :func:`_lms_derivation` for orders ``p = 1..4`` in one tuple
    (``c1_0; c2_0, c2_1; c3_0, c3_1, c3_2; c4_0, ..., c4_3``), functions of the sigma step :data:`lms_k` and the gaps
    :data:`lms_g1`, :data:`lms_g2`, :data:`lms_g3` (order ``p`` uses the first ``p - 1``):
    :math:`y_{i+1} = y_i + \sum_j c_{pj}\,(y_{i-j} - D_{i-j})/\sigma_{i-j}`."""
    d = _lms_derivation()["coeffs"]
    return tuple(c for p in range(1, LMS_MAX_ORDER + 1) for c in d[p])


# ----------------------------------------------------------------------------------------
# 4g. DEIS (diffusers' DEISMultistepScheduler, "deis"): Lagrange interpolant of the noise prediction in log(rho)
# ----------------------------------------------------------------------------------------
#: the highest DEIS order derived (diffusers' ``solver_order`` is 1, 2 or 3; default 2)
DEIS_MAX_ORDER = 3


@lru_cache(maxsize=None)
def _deis_derivation() -> dict:
    r"""The exact Lagrange integrals of diffusers' DEIS ("log-rho") multistep step.

    With :math:`y = x/\alpha` and :math:`\rho = \sigma/\alpha = e^{-\ell}` the probability-flow ODE is
    :math:`dy/d\rho = \varepsilon` (:func:`_dpm1_derivation`: :math:`d(x/\alpha)/d\ell = -e^{-\ell}\varepsilon`).  The
    order-``p`` step from the call at :math:`t` (level :math:`\rho_t`) to :math:`s` replaces :math:`\varepsilon` by
    its Lagrange interpolant in :math:`\log\rho` through the last ``p`` calls and integrates it exactly over
    :math:`\rho`:

    .. math::  y_s = y_t + \sum_{j<p} c_{pj}\,\varepsilon_{j},\qquad
               c_{pj} = \int_{\rho_t}^{\rho_s} L_j(\log\rho)\,d\rho,

    :math:`L_j` the Lagrange basis on the nodes :math:`\log\rho_t, \log\rho_{t_p}, \log\rho_{t_{p2}}` (first ``p``).
    With :math:`r = \ell - \ell_t` (:math:`\rho = \rho_t e^{-r}`) the nodes are :math:`r = 0, -h_p, -h_p - h_{p2}`
    and :math:`c_{pj} = -\rho_s W_{pj}`, :math:`W_{pj} = \int_0^h e^{h-r}\ell_j(r)\,dr`, so in VP coordinates

    .. math::  x_s = \frac{\alpha_s}{\alpha_t}x_t - \sigma_s\sum_{j<p} W_{pj}\,\varepsilon_j,

    and :math:`W_{pj} = \sum_k b_{pjk}\,\varphi_k(h)` (:func:`phi`) with the coefficients :math:`b_{pjk} = k!\,[r^k]
    \ell_j` all of the sign of :math:`(-1)^j` (every factor of :math:`\ell_j` is :math:`r` plus a positive node
    distance): a sign-definite combination, no cancellation.

    Returns ``weights`` (``p ->`` the ``p`` weights :math:`W_{pj}`, ``sympy.integrate`` of :math:`e^{h-r}\ell_j`),
    ``phi_coeffs`` (``p ->`` per ``j`` the :math:`b_{pjk}`; asserted: the weights equal :math:`\sum_k
    b_{pjk}\varphi_k`, and each tuple is sign-definite), ``rho_form`` (asserted: :math:`\int_{\rho_t}^{\rho_s}
    L_j(\log\rho)\,d\rho` integrated in :math:`\rho` with symbolic nodes equals :math:`-\rho_s W_{pj}`),
    ``exactness`` (order ``p`` integrates :math:`e^{h-r}r^q` exactly for ``q < p``), and ``local_error_series``
    (``p ->`` the error on :math:`\varepsilon = r^p`, the first power not integrated exactly, as a series in
    :math:`h` with :math:`h_p = \rho_1 h`, :math:`h_{p2} = \rho_2 h`: it starts at :math:`h^{p+1}`, local order
    :math:`p + 1`, global order ``p``).  Order 1 is DPM-Solver-1 (:math:`W = \varphi_0`) and order 2 DPM-Solver-2M
    with the exact (heun) weight (:math:`\varphi_0 + \varphi_1/h_p`, :math:`-\varphi_1/h_p`; both asserted).
    """
    r = _u
    nodes_all = (sp.S.Zero, -h_ell_prev, -h_ell_prev - h_ell_prev2)
    rho_var, L0 = sp.Symbol("rho", positive=True), sp.Symbol("L_0", real=True)
    rho_t = sp.Symbol("rho_t", positive=True)
    Ls = (L0, L0 + h_ell_prev, L0 + h_ell_prev + h_ell_prev2)     # log rho at the nodes: log rho = L_0 - r
    rho1, rho2 = sp.symbols("rho_1 rho_2", positive=True)
    weights, bcoef, rho_form, exact, local = {}, {}, {}, {}, {}
    for p in range(1, DEIS_MAX_ORDER + 1):
        nodes = nodes_all[:p]
        ws, bs = [], []
        for j in range(p):
            ell = sp.expand(sp.Mul(*[(r - nodes[m]) / (nodes[j] - nodes[m]) for m in range(p) if m != j]))
            W = sp.simplify(sp.integrate(sp.exp(h_ell - r) * ell, (r, 0, h_ell)))
            poly = sp.Poly(ell, r)
            b = tuple(sp.factor(poly.coeff_monomial(r**k) * sp.factorial(k)) for k in range(p))
            if sp.simplify(W - sum(bk * phi(k) for k, bk in enumerate(b))) != 0:
                raise AssertionError(f"DEIS order {p} weight {j} is not its phi combination")
            sign = (-1) ** j
            if any(bk != 0 and not (sign * bk).is_positive for bk in b):
                raise AssertionError(f"DEIS order {p} weight {j}: the phi combination is not sign-definite")
            # the same weight from the log-rho form: integrate L_j(log rho) over rho, nodes symbolic
            Lj = sp.Mul(*[(sp.log(rho_var) - Ls[m]) / (Ls[j] - Ls[m]) for m in range(p) if m != j])
            c = sp.integrate(sp.expand(Lj), (rho_var, rho_t * sp.exp(-h_ell), rho_t))  # from rho_s to rho_t
            c = -c.subs(L0, sp.log(rho_t))                                                # rho_t to rho_s
            if sp.simplify(sp.expand_log(c + rho_t * sp.exp(-h_ell) * W, force=True)) != 0:
                raise AssertionError(f"DEIS order {p} weight {j}: the log-rho integral is not -rho_s W")
            ws.append(W)
            bs.append(b)
        for qd in range(p):
            quad = sum(W * nodes[j] ** qd for j, W in enumerate(ws))
            want = sp.integrate(sp.exp(h_ell - r) * r**qd, (r, 0, h_ell))
            if sp.simplify(quad - want) != 0:
                raise AssertionError(f"DEIS order {p} does not integrate r^{qd} exactly")
        err = sum(W * nodes[j] ** p for j, W in enumerate(ws)) - sp.integrate(sp.exp(h_ell - r) * r**p, (r, 0, h_ell))
        err = err.subs({h_ell_prev: rho1 * h_ell, h_ell_prev2: rho2 * h_ell})
        series = sp.expand(sp.series(err, h_ell, 0, p + 3).removeO())
        lead = sp.simplify(series.coeff(h_ell, p + 1))
        if lead == 0 or any(sp.simplify(series.coeff(h_ell, k)) != 0 for k in range(p + 1)):
            raise AssertionError(f"DEIS order {p}: the local error does not start at h^{p + 1}")
        weights[p], bcoef[p], rho_form[p], exact[p], local[p] = tuple(ws), tuple(bs), True, True, series
    if sp.simplify(weights[1][0] - phi(0)) != 0:
        raise AssertionError("DEIS order 1 is not DPM-Solver-1")
    w0, _, wh = dpm_solver_2_eps_weights()
    if sp.simplify(weights[2][0] - (w0 + wh / h_ell_prev)) != 0 or sp.simplify(weights[2][1] + wh / h_ell_prev) != 0:
        raise AssertionError("DEIS order 2 is not DPM-Solver-2M with the exact (heun) weight")
    return {"weights": weights, "phi_coeffs": bcoef, "rho_form": rho_form, "exactness": exact,
            "local_error_series": local}


def deis_weights() -> tuple[sp.Expr, ...]:
    r"""The DEIS weights :math:`W_{pj}` of :func:`_deis_derivation` for orders ``p = 1..3`` in one tuple
    (``W1_0; W2_0, W2_1; W3_0, W3_1, W3_2``), in the half log-SNR steps :data:`h_ell` (:math:`h = \ell_s - \ell_t`),
    :data:`h_ell_prev` (:math:`h_p = \ell_t - \ell_{t_p}`) and :data:`h_ell_prev2` (:math:`h_{p2}`):

    .. math::  x_s = \frac{\alpha_s}{\alpha_t}x_t - \sigma_s\sum_j W_{pj}\,\varepsilon_j,

    :math:`\varepsilon_0, \varepsilon_1, \varepsilon_2` the noise predictions at :math:`t, t_p, t_{p2}`."""
    d = _deis_derivation()["weights"]
    return tuple(w for p in range(1, DEIS_MAX_ORDER + 1) for w in d[p])


# ----------------------------------------------------------------------------------------
# 4h. UniPC (diffusers' UniPCMultistepScheduler: bh2, predict_x0, UniP predictor + UniC corrector)
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _unipc_derivation() -> dict:
    r"""UniPC's B(h) = bh2 predictor and corrector in the data-prediction form, from its order conditions.

    Both steps are :math:`x_t = \frac{\sigma_t}{\sigma_{s_0}}x_{s_0} + \alpha_t\psi_0(h)D_0 - \alpha_tB(h)\sum_k
    \rho_k\frac{D_k - D_0}{r_k}` with :math:`B(h) = e^{-h} - 1 = -\psi_0(h)` (bh2), the nodes :math:`r_k =
    (\ell_k - \ell_{s_0})/h` of the other model outputs and :math:`\rho` solving the order conditions
    :math:`\sum_k\rho_kr_k^{i-1} = b_i = i!\,\psi_i(h)/(h^i\psi_0(h))`, ``i = 1..`` (number of nodes), which make
    the sum the exact integral of the interpolating polynomial's non-constant part (:func:`psi`).

    * UniP, order 1: DDIM.  Order 2 (one earlier output at :math:`r_1 = -h_p/h`): diffusers replaces the solution
      :math:`\rho = b_1` by :math:`\tfrac12`, which is DPM-Solver++(2M) (:func:`_dpm2_derivation`; asserted).
    * UniC after an order-``p`` predictor, with the new output :math:`D_t` at :math:`r = 1` (evaluated at the
      predictor's state): order 1 (nodes :math:`0, 1`) uses :math:`\rho = \tfrac12`:
      :math:`\alpha_t\psi_0(D_0 + D_t)/2`, the exact linear weight :math:`\psi_1/h` replaced by :math:`\psi_0/2`
      (``gap_c1_series``: :math:`\psi_1/h - \psi_0/2 = h^2/12 + O(h^3)`); order 2 (nodes :math:`r_1 = -h_p/h,
      0, 1`) solves the conditions: asserted equal to the exact integral of the quadratic through the three
      outputs, in Newton form :math:`\psi_0D_0 + \psi_1\delta_1 + (2\psi_2 - h\psi_1)\delta_2`,
      :math:`\delta_1 = (D_t - D_0)/h`, :math:`\delta_2 = (\delta_1 - (D_0 - D_1)/h_p)/(h + h_p)`.

    Returns ``weights`` (:math:`\psi_0, \psi_0/2, \psi_1, 2\psi_2 - h\psi_1`), ``corrector2`` (the order-2
    corrector's weights of :math:`D_1, D_0, D_t` from the solved conditions), ``gap_c1_series`` and
    ``local_error_series``: per corrector order the update minus the exact integral for a cubic :math:`D(u)`,
    :math:`h_p = \rho_1h`, as a series in :math:`h` (order 1 from :math:`h^3`, order 2 from :math:`h^4`).
    """
    d0, dt, d1 = q, sp.Symbol("q_t", real=True), q_prev
    hp = h_ell_prev
    # the order conditions' right-hand sides with bh2: -B(h) b_i = i! psi_i / h^i
    b = [sp.factorial(i) * psi(i) / (h_ell**i * psi(0)) for i in (1, 2)]
    # UniP order 2 with rho = 1/2: -B * rho * (D_1 - D_0)/r_1 = psi_0 (h/(2 h_p)) (D_0 - D_1)
    unip2 = sp.expand(psi(0) * sp.Rational(1, 2) * (d1 - d0) / (-hp / h_ell))
    dpm2 = _dpm2_derivation()
    want = sp.expand(h_ell / 2 * (1 - sp.exp(-h_ell)) * (d0 - d1) / hp)
    if sp.simplify(unip2 - want) != 0 or sp.simplify(dpm2["exact"]["c_D"] - psi(0)) != 0:
        raise AssertionError("UniP order 2 (bh2, rho = 1/2) is not DPM-Solver++(2M)")
    # UniC order 2: solve the conditions on the nodes r_1 = -h_p/h and 1
    r1 = -hp / h_ell
    rho_a, rho_b = sp.symbols("rho_a rho_b")
    sol = sp.solve([sp.Eq(rho_a + rho_b, b[0]), sp.Eq(rho_a * r1 + rho_b, b[1])], [rho_a, rho_b], dict=True)[0]
    corr = psi(0) * (sol[rho_a] * (d1 - d0) / r1 + sol[rho_b] * (dt - d0))   # -B(h) sum rho_k D1_k
    upd2 = sp.expand(psi(0) * d0 + corr)
    delta1 = (dt - d0) / h_ell
    delta2 = (delta1 - (d0 - d1) / hp) / (h_ell + hp)
    newton = psi(0) * d0 + psi(1) * delta1 + (2 * psi(2) - h_ell * psi(1)) * delta2
    for v in (d0, dt, d1):
        if sp.simplify(upd2.coeff(v) - sp.expand(newton).coeff(v)) != 0:
            raise AssertionError("UniC order 2 is not the exact integral of the quadratic")
    # the quadratic's integral, independently: integrate e^{u-h} P(u) with P through (-h_p, D_1), (0, D_0), (h, D_t)
    P = d0 + _u * delta1 + _u * (_u - h_ell) * delta2
    for node, val in ((0, d0), (h_ell, dt), (-hp, d1)):
        if sp.simplify(P.subs(_u, node) - val) != 0:
            raise AssertionError("the Newton form does not interpolate")
    direct = sp.integrate(sp.exp(_u - h_ell) * P, (_u, 0, h_ell))
    if sp.simplify(direct - newton) != 0:
        raise AssertionError("the quadratic's integral is not the psi combination")
    upd1 = psi(0) * d0 + psi(0) / 2 * (dt - d0)
    cs = sp.symbols("c0:4", real=True)
    rho1 = sp.Symbol("rho_1", positive=True)
    Dc = lambda x: sum(c * x**k for k, c in enumerate(cs))  # noqa: E731
    exact = sp.integrate(sp.exp(_u - h_ell) * Dc(_u), (_u, 0, h_ell))
    vals = {d0: Dc(0), dt: Dc(h_ell), d1: Dc(-hp)}
    local = {}
    for order, upd in ((1, upd1), (2, newton)):
        err = sp.simplify((upd.subs(vals) - exact).subs(hp, rho1 * h_ell))
        local[order] = sp.expand(sp.series(err, h_ell, 0, order + 4).removeO())
        if any(sp.simplify(local[order].coeff(h_ell, k)) != 0 for k in range(order + 2)) \
                or sp.simplify(local[order].coeff(h_ell, order + 2)) == 0:
            raise AssertionError(f"UniC order {order}: the local error does not start at h^{order + 2}")
    weights = (psi(0), psi(0) / 2, psi(1), 2 * psi(2) - h_ell * psi(1))
    return {"weights": weights, "corrector2": tuple(sp.factor(upd2.coeff(v)) for v in (d1, d0, dt)),
            "gap_c1_series": sp.series(psi(1) / h_ell - psi(0) / 2, h_ell, 0, 4).removeO(),
            "local_error_series": local}


def unipc_corrector_weights() -> tuple[sp.Expr, ...]:
    r"""UniC's (bh2) weights, divided by :math:`\alpha_t`, in the half log-SNR step :data:`h_ell` of the step
    :math:`s_0 \to t` (:func:`_unipc_derivation`): ``c_q`` :math:`\psi_0`; ``c_t1`` :math:`\psi_0/2`, the weight of
    :math:`D_t - D_0` at order 1; ``c_d1`` :math:`\psi_1` and ``c_d2`` :math:`2\psi_2 - h\psi_1`, the weights of the
    divided differences :math:`\delta_1, \delta_2` at order 2:

    .. math::
        x^c_t = \frac{\sigma_t}{\sigma_{s_0}}x^c_{s_0} + \alpha_t\big(\psi_0D_0 + \tfrac{\psi_0}2(D_t - D_0)\big)
        \ \text{(order 1)},\qquad
        x^c_t = \frac{\sigma_t}{\sigma_{s_0}}x^c_{s_0} + \alpha_t\big(\psi_0D_0 + \psi_1\delta_1
        + (2\psi_2 - h\psi_1)\delta_2\big)\ \text{(order 2)}.

    The predictor is :func:`ddim` (order 1) and DPM-Solver++(2M) (:func:`dpm_solver_2`, order 2).
    """
    return _unipc_derivation()["weights"]


def half_logsnr_step(schedule: VPSchedule = OU) -> sp.Expr:
    r""":math:`\ell_s - \ell_t` for a step ``t -> s`` (``t > s``), one logarithm of a ratio (:func:`_half_logsnr_step`)."""
    return _half_logsnr_step(schedule, t, s)


# ----------------------------------------------------------------------------------------
# 5. score-frozen exponential integrators (OU; constant linear part) and Euler baselines
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _ei_derivation() -> dict:
    r"""Score frozen on the step; OU linear part :math:`y` integrated exactly in sampler time.

    ODE: :math:`y' = y + q` (dsolve and variation of constants agree):
    :math:`y(\tau) = e^\tau y_0 + (e^\tau - 1)q`.
    SDE: :math:`dy = (y + 2q)d\tau + \sqrt2 dB`: mean :math:`e^\tau y_0 + 2(e^\tau-1)q`, variance
    :math:`\int_0^\tau 2e^{2(\tau-r)}dr = e^{2\tau}-1` (Ito isometry).
    """
    yf = sp.Function("y")
    ode = sp.Eq(yf(tau).diff(tau), yf(tau) + q)
    sol = sp.dsolve(ode, yf(tau), ics={yf(0): x_t}).rhs
    voc = sp.exp(tau) * x_t + sp.integrate(sp.exp(tau - r) * q, (r, 0, tau))
    if sp.simplify(sol - voc) != 0:
        raise AssertionError("dsolve and variation of constants disagree")
    sde_mean = sp.exp(tau) * x_t + sp.integrate(sp.exp(tau - r) * 2 * q, (r, 0, tau))
    sde_var = sp.integrate(sp.exp(2 * (tau - r)) * 2, (r, 0, tau))
    euler_ode = x_t + tau * (x_t + q)
    euler_sde_mean = x_t + tau * (x_t + 2 * q)
    euler_sde_var = 2 * tau
    return {
        "ode": ode,
        "ode_solution": sp.expand(sol),
        "voc": sp.expand(voc),
        "ode_rhs": yf(tau) + q,
        "sde_mean": sp.expand(sde_mean),
        "sde_var": sp.simplify(sde_var),
        "euler_ode": sp.expand(euler_ode),
        "euler_sde_mean": sp.expand(euler_sde_mean),
        "euler_sde_var": euler_sde_var,
    }


def _at_step(expr: sp.Expr) -> sp.Expr:
    """Evaluate an expression in the elapsed sampler time at tau = h = t - s."""
    return expr.subs(tau, t - s)


def _score_frozen(name: str, mean: sp.Expr, c_z: sp.Expr = sp.S.Zero, **fields) -> Update:
    r"""The score-frozen :class:`Update` with mean ``mean`` (in :math:`\tau`, taken at :math:`\tau = h`) and noise std ``c_z``."""
    m = _at_step(mean)
    return Update(name, "score", _coeff(m, x_t), _coeff(m, q), c_z, **fields)


def ei_ode() -> Update:
    r"""Score-frozen exponential integrator of the PF-ODE: :math:`y \leftarrow e^h y + (e^h-1)\,\mathrm{score}`."""
    return _score_frozen("ei_ode", _ei_derivation()["ode_solution"],
                         description="EI-ODE: score frozen, PF-ODE linear part integrated exactly")


def ei_sde() -> Update:
    r"""Score-frozen exponential integrator of the reverse SDE, exact linear noise:
    :math:`y \leftarrow e^h y + 2(e^h-1)\,\mathrm{score} + \sqrt{e^{2h}-1}\,z`."""
    d = _ei_derivation()
    return _score_frozen("ei_sde", d["sde_mean"], sp.sqrt(_at_step(d["sde_var"])),
                         description="EI-SDE: score frozen, reverse-SDE linear part exact in mean and variance")


def ei_sde_code() -> Update:
    r"""The support paper's code variant: noise std :math:`\sqrt{2(e^h-1)}` instead of :math:`\sqrt{e^{2h}-1}`.

    The variances differ by :math:`(e^{2h}-1) - 2(e^h-1) = (e^h-1)^2 = h^2 + O(h^3)`: first-order agreement.
    """
    d = _ei_derivation()
    # the code's noise: the diffusion sqrt(2) times sqrt(e^h - 1) (variance 2(e^h - 1), not e^{2h} - 1)
    code_var = 2 * _coeff(_at_step(d["ode_solution"]), q)
    return _score_frozen("ei_sde_code", d["sde_mean"], sp.sqrt(code_var),
                         description="EI-SDE as in the support paper's code: noise sqrt(2(e^h-1)) instead of sqrt(e^{2h}-1)")


def euler() -> Update:
    r"""Euler on the PF-ODE (not exponential): :math:`y \leftarrow y + h(y + \mathrm{score})`."""
    return _score_frozen("euler", _ei_derivation()["euler_ode"], exponential=False,
                         description="Euler baseline on the PF-ODE")


def euler_maruyama() -> Update:
    r"""Euler-Maruyama on the reverse SDE: :math:`y \leftarrow y + h(y + 2\,\mathrm{score}) + \sqrt{2h}\,z`."""
    d = _ei_derivation()
    return _score_frozen("euler_maruyama", d["euler_sde_mean"], sp.sqrt(_at_step(d["euler_sde_var"])),
                         exponential=False, description="Euler-Maruyama baseline on the reverse SDE")


# ----------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------
_BUILDERS = {
    "ddim": ddim,
    "ddpm": ddpm,
    "ddim_eta": ddim_eta,
    "dpm_solver_1": dpm_solver_1,
    "dpm_solver_2": dpm_solver_2,
    "ei_ode": ei_ode,
    "ei_sde": ei_sde,
    "ei_sde_code": ei_sde_code,
    "euler": euler,
    "euler_maruyama": euler_maruyama,
}
#: the update names, in the order of :func:`all_updates` and of the generated module.
UPDATE_NAMES = tuple(_BUILDERS)


@lru_cache(maxsize=None)
def get_update(name: str) -> Update:
    """The OU :class:`Update` called ``name`` (one of :data:`UPDATE_NAMES`)."""
    if name not in _BUILDERS:
        raise ValueError(f"name: unknown update {name!r}; expected one of {', '.join(UPDATE_NAMES)}")
    return _BUILDERS[name]()


def all_updates() -> list[Update]:
    """Every update of the package for the OU schedule, in the order of :data:`UPDATE_NAMES`."""
    return [get_update(n) for n in UPDATE_NAMES]


# ----------------------------------------------------------------------------------------
# extras: noise gap of the code variant, guidance mean-form vs score-form
# ----------------------------------------------------------------------------------------
def ei_sde_code_noise_gap(order: int = 4) -> dict:
    r"""Difference between the exact linear noise and the code's noise.

    Returns ``variance_gap`` :math:`= (e^{2h}-1) - 2(e^h-1)` (closed form :math:`(e^h-1)^2`),
    its series, and the series of the std gap :math:`\sqrt{e^{2h}-1}-\sqrt{2(e^h-1)}
    = \tfrac{\sqrt2}{4}h^{3/2} + O(h^{5/2})`.
    """
    ex = get_update("ei_sde").c_z.subs(t - s, h).subs(t, s + h)
    co = get_update("ei_sde_code").c_z.subs(t - s, h).subs(t, s + h)
    ex, co = sp.simplify(ex), sp.simplify(co)
    var_gap = sp.simplify(ex**2 - co**2)
    return {
        "variance_gap": var_gap,
        "variance_gap_closed": sp.factor(var_gap),
        "variance_gap_series": sp.series(var_gap, h, 0, order),
        "std_gap_series": sp.series(ex - co, h, 0, order),
        "variance_exact_series": sp.series(ex**2, h, 0, 3),
        "variance_code_series": sp.series(co**2, h, 0, 3),
    }


@lru_cache(maxsize=None)
def guidance_gap() -> dict:
    r"""Guided DDPM: score form vs mean form, per unit :math:`w g` and in full.

    *Score form*: replace :math:`D` by :math:`D + \frac{\sigma_t^2}{\alpha_t}w g` (i.e. add
    :math:`w g` to the score); the posterior mean moves by
    :math:`\frac{\alpha_s\sigma_{t|s}^2}{\sigma_t^2}\cdot\frac{\sigma_t^2}{\alpha_t}wg
    = \frac{\alpha_s}{\alpha_t}\sigma_{t|s}^2\,wg`.
    *Mean form* (Dhariwal-Nichol): mean :math:`+\ w\,v\,g` with :math:`v = \sigma_s^2\sigma_{t|s}^2/\sigma_t^2`.

    The difference is :math:`\sigma_{t|s}^2\big(\frac{\alpha_s}{\alpha_t}-\frac{\sigma_s^2}{\sigma_t^2}\big)wg \ge 0`.

    Returns keys ``score_shift``, ``mean_shift``, ``difference`` (OU, in t, s, w, g),
    ``score_shift_per_wg``, ``mean_shift_per_wg`` (unsimplified, per unit :math:`wg`),
    ``difference_abstract``, ``series_h`` (s fixed, t = s + h, to :math:`O(h^3)`),
    ``series_h_leading`` and ``series_t0`` (:math:`s=\theta t`, :math:`t\to0`, to :math:`O(t^3)`).
    """
    ddpm_u = get_update("ddpm")
    vals = _schedule_values(OU)
    D_shift = OU.sigma2(t) / OU.alpha(t) * w * g
    score_shift = ddpm_u.c_q * D_shift
    mean_shift = w * ddpm_u.c_z**2 * g
    difference = score_shift - mean_shift
    post = posterior_gaussian()
    abstract = sp.simplify(post["mean_cq"] * sg_t**2 / a_t * w * g - w * post["variance_vp"] * g)
    # series in the step h with s fixed
    diff_h = sp.simplify(difference.subs(t, s + h))
    series_h = sp.series(diff_h, h, 0, 3).removeO()
    lead_h = sp.simplify(series_h.coeff(h, 2)) * h**2
    # t -> 0 with s = theta t, 0 < theta < 1
    diff_t = difference.subs(s, theta * t)
    series_t0 = sp.series(diff_t, t, 0, 3).removeO()
    return {
        "score_shift_per_wg": ddpm_u.c_q * OU.sigma2(t) / OU.alpha(t),
        "mean_shift_per_wg": ddpm_u.c_z**2,
        "score_shift": sp.simplify(score_shift),
        "mean_shift": sp.simplify(mean_shift),
        "difference": sp.simplify(difference),
        "difference_abstract": abstract,
        "series_h": sp.simplify(series_h),
        "series_h_leading": lead_h,
        "series_t0": sp.factor(sp.simplify(series_t0)),
        "abstract_values": vals,
    }


# ----------------------------------------------------------------------------------------
# derivation steps for the `derive` command
# ----------------------------------------------------------------------------------------
_COEF_TEX = {"c_x": "c_x", "c_q": "c_q", "c_q_prev": r"c_{q,\mathrm{prev}}", "c_z": "c_z"}


def _result_steps(u: Update) -> list[tuple[str, sp.Expr]]:
    args = ", ".join(sp.latex(a) for a in u.args)
    return [(rf"{_COEF_TEX[label]}({args})\ \text{{(OU)}}", expr) for label, expr in u.coefficients()]


_SHOW_Q = {  # how the frozen quantity q is displayed in derivations
    "ddim": sp.Symbol("D"), "ddpm": sp.Symbol("D"), "ddim_eta": sp.Symbol("D"),
    "dpm_solver_1": sp.Symbol("varepsilon"), "dpm_solver_2": sp.Symbol("D_t"),
}


def derivation_steps(name: str) -> list[tuple[str, sp.Expr]]:
    r"""The derivation of update ``name`` as ``(label, expression)`` pairs, read "label = expression".

    Labels are LaTeX (the left-hand side, with ``\text{...}`` comments); expressions are what SymPy
    derived, with the frozen quantity ``q`` displayed as :math:`D`, :math:`\varepsilon` or :math:`q`
    (the score).  ``name`` is one of :data:`UPDATE_NAMES`, ``"posterior"`` or ``"guidance_gap"``.
    """
    steps = _derivation_steps(name)
    shown = _SHOW_Q.get(name)
    if shown is None:
        return steps
    return [(label, expr.subs({q: shown, q_prev: sp.Symbol("D_p")})) for label, expr in steps]


def _derivation_steps(name: str) -> list[tuple[str, sp.Expr]]:
    if name == "ddim":
        d = _ddim_derivation()
        steps = [
            (r"\frac{dx}{dt}\ \text{(PF-ODE, forward time; } \nabla\log p_t = (\alpha_t D - x)/\sigma_t^2,"
             r"\ \log\alpha_t = L(t))", d["pf_ode"]),
            (r"\partial_x \frac{dx}{dt}\ \text{(linear part)}", d["linear_part"]),
            (r"\frac{d}{dt}\frac{x}{\sigma_t}\ \text{(no } x\text{: } 1/\sigma_t \text{ is an integrating factor)}",
             d["d_scaled"]),
            (r"\frac{d\ell_t}{dt},\ \ell_t = \log(\alpha_t/\sigma_t)", d["d_ell"]),
            (r"\frac{d(x/\sigma)}{d\ell}\ (= e^{\ell}D)", d["data_ode"]),
            (r"\int_{\ell_t}^{\ell_t + h_\ell} e^{\ell} D\, d\ell\ \text{(D frozen)}", d["integral"]),
            (r"x_s = \sigma_s\big(x_t/\sigma_t + \textstyle\int\big)", d["update"]),
        ]
        return steps + _result_steps(get_update("ddim"))
    if name in ("ddpm", "posterior"):
        p = posterior_gaussian()
        steps = [
            (r"\log q(x_s\mid x_t, x_0) + \text{const}\ \text{(Bayes)}", p["log_density"]),
            (r"\text{posterior precision}", p["precision"]),
            (r"\text{posterior mean (completing the square)}", p["mean"]),
            (r"\text{posterior variance}", p["variance"]),
            (r"\partial_{x_t}\mu\ \text{(using } \sigma_t^2 = \sigma_{t|s}^2 + \alpha_{t|s}^2\sigma_s^2)", p["mean_cx"]),
            (r"\partial_{x_0}\mu", p["mean_cq"]),
            (r"v", p["variance_vp"]),
        ]
        return steps + (_result_steps(get_update("ddpm")) if name == "ddpm" else [])
    if name == "ddim_eta":
        e = _eta_abstract()
        return [
            (r"c = \eta\sqrt{v}", e["c"]),
            (r"\hat\varepsilon", e["eps_hat"]),
            (r"x_s = \alpha_s D + \sqrt{\sigma_s^2 - c^2}\,\hat\varepsilon + c z", e["update"]),
        ] + _result_steps(get_update("ddim_eta"))
    if name == "dpm_solver_1":
        d = _dpm1_derivation()
        return [
            (r"\frac{d}{dt}\frac{x}{\alpha_t}\ \text{(}\varepsilon\text{ frozen, } \nabla\log p = -\varepsilon/\sigma_t)",
             d["d_scaled"]),
            (r"\frac{d(x/\alpha)}{d\ell}\ (= -e^{-\ell}\varepsilon)", d["noise_ode"]),
            (r"\int_{\ell_t}^{\ell_t + h_\ell} -e^{-\ell}\varepsilon\, d\ell", d["integral"]),
            (r"x_s = \alpha_s\big(x_t/\alpha_t + \textstyle\int\big)", d["update"]),
        ] + _result_steps(get_update("dpm_solver_1"))
    if name == "dpm_solver_2":
        d = _dpm2_derivation()
        return [
            (r"\int_{\ell_t}^{\ell_t+h} e^{\ell}\big(D_t + (\ell - \ell_t) D_1\big)\,d\ell", d["integral"]),
            (r"e^{-\ell_s}\times\text{coefficient of } D_t", d["exact"]["c_D"]),
            (r"e^{-\ell_s}\times\text{coefficient of } D_1", d["exact"]["c_slope"]),
            (r"(h - 1 + e^{-h}) - \tfrac h2 (1 - e^{-h})\ \text{(2M replacement, series)}", d["approx_gap_series"]),
            (r"\text{2M weight of } D_t\ (\times\alpha_s),\ D_1 = (D_t - D_p)/h_p", d["coef_q"]),
            (r"\text{2M weight of } D_p\ (\times\alpha_s)", d["coef_q_prev"]),
        ] + _result_steps(get_update("dpm_solver_2"))
    if name in ("ei_ode", "ei_sde", "ei_sde_code", "euler", "euler_maruyama"):
        d = _ei_derivation()
        if name in ("ei_ode", "euler"):
            steps = [
                (r"\frac{dy}{d\tau}\ \text{(PF-ODE, sampler time, score } q \text{ frozen)}", d["ode_rhs"]),
                (r"y(\tau)\ \text{(dsolve)}", d["ode_solution"]),
            ]
            if name == "euler":
                steps.append((r"y + \tau(y + q)\ \text{(Euler: first-order Taylor)}", d["euler_ode"]))
        else:
            steps = [
                (r"E\,y(\tau)\ \text{(}dy = (y + 2q)d\tau + \sqrt2 dB\text{, variation of constants)}", d["sde_mean"]),
                (r"\mathrm{Var}\,y(\tau) = \int_0^\tau 2e^{2(\tau-r)}dr\ \text{(Ito isometry)}", d["sde_var"]),
            ]
            if name == "ei_sde_code":
                gap = ei_sde_code_noise_gap()
                steps += [
                    (r"(e^{2h} - 1) - 2(e^h - 1)\ \text{(code's variance gap)}", gap["variance_gap_closed"]),
                    (r"\sqrt{e^{2h}-1} - \sqrt{2(e^h-1)}", gap["std_gap_series"]),
                ]
            if name == "euler_maruyama":
                steps += [
                    (r"y + \tau(y + 2q)\ \text{(Euler-Maruyama mean)}", d["euler_sde_mean"]),
                    (r"\text{Euler-Maruyama variance}", d["euler_sde_var"]),
                ]
        return steps + _result_steps(get_update(name))
    if name == "guidance_gap":
        gg = guidance_gap()
        return [
            (r"\text{score form: } \frac{\alpha_s\sigma_{t|s}^2}{\sigma_t^2}\cdot\frac{\sigma_t^2}{\alpha_t} w g", gg["score_shift"]),
            (r"\text{mean form: } w\,v\,g", gg["mean_shift"]),
            (r"\text{score form} - \text{mean form}", gg["difference_abstract"]),
            (r"\text{score form} - \text{mean form}\ \text{(OU)}", gg["difference"]),
            (r"\text{series in } h = t - s\ (s \text{ fixed})", gg["series_h"]),
            (r"\text{series as } t\to 0,\ s = \theta t", gg["series_t0"]),
        ]
    raise ValueError(
        f"name: unknown derivation {name!r}; expected one of {', '.join(UPDATE_NAMES)}, posterior, guidance_gap"
    )

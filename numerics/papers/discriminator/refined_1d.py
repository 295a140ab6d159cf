r"""Exact 1-D laws of discriminator-refined diffusion samplers (Verine et al., arXiv 2503.16117).

Time convention: OU forward time ``t`` in ``[0, T]``, :math:`dX = -X\,dt + \sqrt2\,dB`,
:math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}` (so :math:`g^2 = 2`).  The samplers run in
reversed time :math:`\tau = T - t` from the *model's* terminal marginal :math:`\hat p_T`:

* reverse SDE  :math:`dx = (x + 2 s(x,t))\,d\tau + \sqrt2\,dW`, whose density solves the Fokker-Planck
  equation :math:`\partial_\tau\rho = -\partial_x[(x+2s)\rho] + \partial_x^2\rho`
  (:func:`sde_endpoint`: finite volumes with Scharfetter-Gummel fluxes, Crank-Nicolson in time);
* probability-flow ODE  :math:`dx/d\tau = x + s(x,t)`, with
  :math:`d\log\rho(x_\tau)/d\tau = -(1 + \partial_x s)` (:func:`ode_endpoint`: RK4 transport of points
  with the exact log-determinant).

A refined score is a :class:`Field`: a callable ``(x, t) -> (s, ds/dx)``.  Builders: :func:`bayes_field`
(model score plus ``w`` times the Bayes correction, optionally with a ripple
:math:`\varepsilon\sin\omega x` added to the logit), :func:`linear_field` (linear-logit correction
:math:`\beta(t)`), :func:`feature_field` (trained feature logits), :func:`empirical_field`.

Everything is 1-D and float64.  Discretisation errors are estimated by halving ``dx`` and ``dtau``
(:func:`kl_with_error`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numba
import numpy as np

from numerics.divergences import gaussian_kl_1d, kl_cells
from numerics.quadrature import gauss_hermite_normal
from numerics.validate import check_int, check_positive, check_real, check_real_values, check_sorted

__all__ = [
    "Mixture1D", "Marginal", "Grid1D", "Field", "SETTING_G_DATA", "SETTING_G_MODEL", "setting_g",
    "bayes_field", "BayesField", "linear_field", "feature_field", "FeatureField", "empirical_field",
    "sde_endpoint", "ode_endpoint", "endpoint_kl", "ENDPOINT_FLOOR", "kl_with_error",
    "ce_value", "ce_gap", "path_kl", "path_terms", "path_kl_from", "PathTerms", "fisher_gap", "time_nodes",
    "mse_optimal_linear", "ce_optimal_linear", "linear_beta_spline",
    "gaussian_refined_endpoint", "gaussian_path_kl",
    "FourierLogit", "time_hats", "fit_logit_ce", "fit_logit_gm", "fit_logit_gm_targets",
]

def _pos_float(value, name: str, allow_zero: bool = False) -> float:
    return check_positive(value, name, allow_zero)


#: Largest sample size, grid size or number of time steps a helper accepts (bounds memory and run time).
MAX_SIZE = 10**7


def _pos_int(value, name: str, minimum: int = 1) -> int:
    return check_int(value, name, low=minimum, high=MAX_SIZE)


#: Largest number of time steps of :func:`sde_endpoint` / :func:`ode_endpoint` (each step evaluates the field a few
#: times, in Python but for the PF-ODE of a :class:`FeatureField` or :class:`BayesField`: this bounds their run time to
#: minutes; the claims use a
#: few thousand).
MAX_STEPS = 10**6


def _n_steps(span: float, dtau: float) -> int:
    """``ceil(span / dtau)`` (at least 1) time steps, refused (naming ``dtau``) beyond :data:`MAX_STEPS`."""
    n = span / dtau
    if not n <= MAX_STEPS:
        raise ValueError(f"dtau: {span!r}/{dtau!r} needs {n:.3g} time steps, more than {MAX_STEPS}")
    return max(1, int(math.ceil(n)))


def _time(t) -> float:
    """An OU time ``t >= 0`` (finite)."""
    return check_positive(t, "t", allow_zero=True)


@numba.njit(cache=True)
def _mix_score_point(x, lw, m, v, lc, pk):
    r"""Score and its x-derivative at one point ``x`` of a 1-D mixture (log-sum-exp posterior weights
    :math:`\pi_k`; ``lw = log w - log(v)/2``; ``lc``, ``pk``: work arrays of size K):

    .. math:: s = \sum_k \pi_k s_k,\quad s' = \sum_k \pi_k\big((s_k - s)^2 - 1/v_k\big),\qquad s_k = -(x - m_k)/v_k,

    the posterior variance of :math:`s_k` taken about its mean in a second pass (the one-pass
    :math:`E[s_k^2] - s^2` cancels once :math:`|x| \gg \sqrt{v}`: both terms grow like :math:`x^2/v^2`).
    The largest component's weight :math:`e^{0}` is written 1 (exact: no exp call), and ``lc`` holds
    :math:`s_k` once its log weight is used (computed once, read in both passes): the same numbers as
    computing them again, 2.5x faster for K = 2."""
    K = m.size
    mx = -np.inf
    for k in range(K):
        r = x - m[k]
        lc[k] = lw[k] - 0.5 * r * r / v[k]
        if lc[k] > mx:
            mx = lc[k]
    z = 0.0
    a = 0.0
    for k in range(K):
        e = lc[k] - mx
        pk[k] = 1.0 if e == 0.0 else np.exp(e)
        z += pk[k]
        lc[k] = -(x - m[k]) / v[k]
        a += pk[k] * lc[k]
    s = a / z
    b = 0.0
    for k in range(K):
        d = lc[k] - s
        b += pk[k] * (d * d - 1.0 / v[k])
    return s, b / z


@numba.njit(cache=True)
def _mix_score_block(x, lw, m, v, lc, pk, acc, s, ds):
    r""":func:`_mix_score_point` at every point of ``x`` (a PF-ODE chunk): ``s[i], ds[i]``, the same operations on
    each point in the same order (so the same floats, tests), with the loops over the components outside the loops
    over the points, so that everything but the ``exp`` calls vectorises across the points.  Work arrays: ``lc, pk``
    ``(K, n)`` or wider, ``acc`` ``(3, n)`` or wider (the running max, then the posterior variance's sum; the
    normaliser; the mean's sum)."""
    n, K = x.size, m.size
    mx, z, a = acc[0], acc[1], acc[2]
    for i in range(n):
        mx[i] = -np.inf
    for k in range(K):
        lwk, mk, vk = lw[k], m[k], v[k]
        for i in range(n):
            r = x[i] - mk
            lc[k, i] = lwk - 0.5 * r * r / vk
            if lc[k, i] > mx[i]:
                mx[i] = lc[k, i]
    for k in range(K):  # the exps (libm calls) on their own loop
        for i in range(n):
            e = lc[k, i] - mx[i]
            pk[k, i] = 1.0 if e == 0.0 else np.exp(e)
    for i in range(n):
        z[i] = 0.0
        a[i] = 0.0
    for k in range(K):
        mk, vk = m[k], v[k]
        for i in range(n):
            z[i] += pk[k, i]
            lc[k, i] = -(x[i] - mk) / vk
            a[i] += pk[k, i] * lc[k, i]
    b = mx  # the max is used up
    for i in range(n):
        s[i] = a[i] / z[i]
        b[i] = 0.0
    for k in range(K):
        vk = v[k]
        for i in range(n):
            d = lc[k, i] - s[i]
            b[i] += pk[k, i] * (d * d - 1.0 / vk)
    for i in range(n):
        ds[i] = b[i] / z[i]


@numba.njit(cache=True)
def _mix_score_kernel(x, logw, m, v):
    """:func:`_mix_score_point` at every point of ``x`` (1-D)."""
    n, K = x.size, m.size
    s = np.empty(n)
    ds = np.empty(n)
    lc = np.empty(K)
    pk = np.empty(K)
    lw = logw - 0.5 * np.log(v)
    for i in range(n):
        s[i], ds[i] = _mix_score_point(x[i], lw, m, v, lc, pk)
    return s, ds


@numba.njit(cache=True, parallel=True)
def _mix_score_rows(x, logw, m, v):
    """The score of :func:`_mix_score_kernel` at every point of ``x`` for each row of the marginal means and
    variances ``m``, ``v`` (rows: times; the same arithmetic per row).  The rows run over the Numba threads, each
    writing only its own row (the same numbers for any thread count)."""
    rows, n, K = m.shape[0], x.size, m.shape[1]
    out = np.empty((rows, n))
    lw = np.empty((rows, K))  # per row: log w - log(v)/2 (the same array expression per row as before)
    for r in range(rows):
        lw[r] = logw - 0.5 * np.log(v[r])
    lc, pk = np.empty((rows, K)), np.empty((rows, K))  # each row's own work arrays, allocated before the loop
    for r in numba.prange(rows):
        mr, vr = m[r], v[r]
        for i in range(n):
            out[r, i] = _mix_score_point(x[i], lw[r], mr, vr, lc[r], pk[r])[0]
    return out


# ----------------------------------------------------------------------------------------------
# 1-D Gaussian mixtures with t = 0 allowed
# ----------------------------------------------------------------------------------------------
class Marginal(NamedTuple):
    """Components of a 1-D mixture's OU marginal: ``sum_k weights[k] N(means[k], variances[k])``."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray


class Mixture1D:
    r"""A 1-D Gaussian mixture :math:`\sum_k w_k N(m_k, v_k)` (all :math:`v_k > 0`) and its OU marginals
    :math:`\sum_k w_k N(m_k e^{-t},\ v_k e^{-2t} + 1 - e^{-2t})`, valid for every ``t >= 0``.

    Raises ``ValueError`` naming ``weights``, ``means`` or ``variances`` on bad input.
    """

    def __init__(self, weights, means, variances):
        arrs = []
        for name, val in (("weights", weights), ("means", means), ("variances", variances)):
            a = np.atleast_1d(check_real_values(val, name))
            if a.ndim != 1 or a.size == 0:
                raise ValueError(f"{name}: must be a non-empty 1-D array, got shape {a.shape}")
            arrs.append(a)
        w, m, v = arrs
        if not (w.size == m.size == v.size):
            raise ValueError(f"means, variances: need one per weight ({w.size}), got {m.size} and {v.size}")
        if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
            raise ValueError(f"weights: must be non-negative and sum to 1, got {w}")
        if np.any(v <= 0):
            raise ValueError(f"variances: must be > 0, got {v}")
        self.w, self.m, self.v = w / w.sum(), m, v

    def __repr__(self) -> str:
        return f"Mixture1D(weights={self.w.tolist()}, means={self.m.tolist()}, variances={self.v.tolist()})"

    def marginal(self, t: float) -> Marginal:
        """``(weights, means_t, variances_t)`` of the OU marginal at time ``t >= 0``."""
        t = _time(t)
        a = math.exp(-t)
        return Marginal(self.w, self.m * a, self.v * a * a - math.expm1(-2.0 * t))

    def _comp(self, x, t):
        w, m, v = self.marginal(t)
        x = check_real_values(x, "x")[..., None]
        with np.errstate(over="ignore"):
            q = 0.5 * (x - m) ** 2 / v
            if not np.all(np.isfinite(q)):  # (x - m)**2 overflows: square (x - m) / sqrt(v) instead
                h = (x - m) / np.sqrt(v)
                q = np.where(np.isfinite(q), q, 0.5 * h * h)
        lc = np.log(w) - 0.5 * np.log(2 * np.pi * v) - q
        return x, m, v, lc

    def _log_density(self, x, t: float) -> np.ndarray:
        """:meth:`log_density`, ``-inf`` where it is below the float64 range."""
        _, _, _, lc = self._comp(x, t)
        mx = lc.max(axis=-1, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0.0)
        with np.errstate(divide="ignore"):
            return (mx + np.log(np.exp(lc - mx).sum(axis=-1, keepdims=True)))[..., 0]

    def log_density(self, x, t: float) -> np.ndarray:
        out = self._log_density(x, t)
        if not np.all(np.isfinite(out)):
            xa = np.asarray(x, dtype=np.float64)
            raise ValueError(f"x: log p_t(x) is below the float64 range at t={t!r} (|x| up to "
                             f"{np.max(np.abs(xa)):.3g} too far from every component)")
        return out

    def density(self, x, t: float) -> np.ndarray:
        """:math:`p_t(x)` (0 where it underflows, far from every component)."""
        return np.exp(self._log_density(x, t))

    def score_and_derivative(self, x, t: float) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`s = \partial_x\log p_t` and :math:`\partial_x s = \sum\pi_k(s_k^2 - 1/v_k) - s^2`."""
        w, m, v = self.marginal(t)
        xa = check_real_values(x, "x")
        s, ds = _mix_score_kernel(np.ascontiguousarray(xa.ravel()), np.log(w), m, v)
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(ds))):
            raise ValueError(f"x: the score is not finite at t={t!r} (|x| up to {np.max(np.abs(xa)):.3g} too large: "
                             "(x - m)**2 overflows float64)")
        return s.reshape(xa.shape), ds.reshape(xa.shape)

    def score(self, x, t: float) -> np.ndarray:
        return self.score_and_derivative(x, t)[0]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = _pos_int(n, "n")
        k = rng.choice(self.w.size, size=n, p=self.w)
        return self.m[k] + np.sqrt(self.v[k]) * rng.standard_normal(n)

    def expect(self, f: Callable, t: float, nodes: int = 80) -> float:
        """:math:`E_{p_t}[f(X)]` by Gauss-Hermite quadrature (``nodes`` per component)."""
        z, wz = gauss_hermite_normal(nodes)
        w, m, v = self.marginal(t)
        x = m[:, None] + np.sqrt(v)[:, None] * z[None, :]
        return float(np.sum(w[:, None] * wz[None, :] * f(x)))


#: Setting G of the note: data 0.5 N(-2, 0.25) + 0.5 N(2, 0.25); model 0.7 N(-2, 0.36) + 0.3 N(2, 0.36).
SETTING_G_DATA = ([0.5, 0.5], [-2.0, 2.0], [0.25, 0.25])
SETTING_G_MODEL = ([0.7, 0.3], [-2.0, 2.0], [0.36, 0.36])


def setting_g() -> tuple[Mixture1D, Mixture1D]:
    """``(data, model)`` of setting G (T = 8 in the checks)."""
    return Mixture1D(*SETTING_G_DATA), Mixture1D(*SETTING_G_MODEL)


# ----------------------------------------------------------------------------------------------
# grids and KL
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid1D:
    """Cell centres ``lo, lo+dx, ..., hi`` (uniform)."""

    lo: float = -7.0
    hi: float = 7.0
    dx: float = 0.005

    def __post_init__(self):
        for name in ("lo", "hi"):
            check_real(getattr(self, name), name)
        _pos_float(self.dx, "dx")
        if not self.hi > self.lo:
            raise ValueError(f"hi: must exceed lo ({self.lo}), got {self.hi}")
        if not (self.hi - self.lo) / self.dx <= MAX_SIZE:
            raise ValueError(f"dx: [{self.lo!r}, {self.hi!r}] in steps of {self.dx!r} needs more than {MAX_SIZE} cells")

    @property
    def x(self) -> np.ndarray:
        n = int(round((self.hi - self.lo) / self.dx)) + 1
        return self.lo + self.dx * np.arange(n)

    def refined(self) -> "Grid1D":
        return Grid1D(self.lo, self.hi, self.dx / 2)


# ----------------------------------------------------------------------------------------------
# refined score fields
# ----------------------------------------------------------------------------------------------
Field = Callable[[np.ndarray, float], "tuple[np.ndarray, np.ndarray]"]


#: The forms of :class:`BayesField`'s score (``form``; the codes of :func:`_bayes_point`): the refined score, and
#: the two miswritten ones that ``discriminator.ce_gradient_counterexample``'s controls run through the samplers.
BAYES_FORMS = ("refined", "classes_swapped", "chain_rule_omega_dropped")


class BayesField:
    r"""Refined score :math:`s_\theta + w\,\partial_x d` with :math:`d = d^* + \varepsilon\sin\omega x`,
    :math:`d^* = \log p_t - \log\hat p_t` (:func:`bayes_field`), a :class:`Field`: ``field(x, t)`` returns
    :math:`(s, \partial_x s)` by NumPy.  :func:`sde_endpoint` takes the scores of all its steps at once
    (:meth:`score_table`) and :func:`ode_endpoint` runs the RK4 transport in one compiled loop
    (:func:`_ode_bayes_kernel`), both with the same arithmetic as the call (tests: bit for bit).

    ``form`` (one of :data:`BAYES_FORMS`; ``w`` is not used by the last two): "refined" is the above;
    "classes_swapped" the score of :math:`-d^* + \varepsilon\sin\omega x` (the logit of the other class),
    :math:`s = s_\theta - (s_p - s_\theta) + \varepsilon\omega\cos\omega x`; "chain_rule_omega_dropped" the
    score of :math:`d^* + \varepsilon\sin\omega x` with the chain rule's :math:`\omega` lost,
    :math:`s = s_p + \varepsilon\cos\omega x` (derivatives: of these expressions)."""

    def __init__(self, data: Mixture1D, model: Mixture1D, w: float, eps: float, omega: float,
                 form: str = "refined"):
        if form not in BAYES_FORMS:
            raise ValueError(f"form: must be one of {BAYES_FORMS}, got {form!r}")
        self.data, self.model, self.w, self.eps, self.omega = data, model, w, eps, omega
        self.form = form
        self.code = BAYES_FORMS.index(form)

    def __call__(self, x, t):
        w, eps, omega = self.w, self.eps, self.omega
        sp_, dsp = self.data.score_and_derivative(x, t)
        sq, dsq = self.model.score_and_derivative(x, t)
        if self.code == 1:
            s = sq - (sp_ - sq) + eps * omega * np.cos(omega * x)
            ds = dsq - (dsp - dsq) - eps * omega * omega * np.sin(omega * x)
        elif self.code == 2:
            s, ds = sp_ + eps * np.cos(omega * x), dsp - eps * omega * np.sin(omega * x)
        elif eps == 0.0:
            s, ds = sq + w * (sp_ - sq), dsq + w * (dsp - dsq)
        else:
            s = sq + w * (sp_ - sq + eps * omega * np.cos(omega * x))
            ds = dsq + w * (dsp - dsq - eps * omega * omega * np.sin(omega * x))
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(ds))):
            raise ValueError(f"w: the refined score is not finite at t={t!r} (w={w!r}, eps={eps!r}, omega={omega!r} "
                             "too large)")
        return s, ds

    def tables(self, times) -> tuple[np.ndarray, ...]:
        r"""The data's and the model's log weights and, per time of ``times`` (rows), marginal means and variances
        (:meth:`Mixture1D.marginal`'s scalar arithmetic, so the same numbers as the call: :func:`_marginal_rows`)."""
        times = np.asarray(times, dtype=np.float64).ravel()
        ok = np.isfinite(times) & (times >= 0)
        if not ok.all():
            _time(times[np.argmin(ok)])  # raises marginal's ValueError naming t
        out = []
        for mix in (self.data, self.model):
            out += [np.log(mix.w), *_marginal_rows(mix.m, mix.v, times)]
        return tuple(out)

    def score_table(self, x: np.ndarray, times) -> np.ndarray:
        """The score :math:`s` of ``field(x, t)`` at the 1-D ``x`` for each of ``times`` (row ``i``: ``times[i]``),
        compiled: the data's and the model's score rows (:func:`_mix_pair_rows`, memoised on the exact inputs: every
        ``w``, ``eps``, ``omega`` and form on one grid and time set shares them) combined by
        :func:`_bayes_combine_rows` (the arithmetic of :func:`_bayes_point`, so the numbers of
        :func:`_bayes_score_rows`); a non-finite score is reported by the call's ValueError."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        tabs = self.tables(times)
        sp_, sq, dmax = _PAIR_ROWS.get((x,) + tabs, lambda: _dynamic(_mix_pair_rows, x, *tabs))
        out, bad = _dynamic(_bayes_combine_rows, x, sp_, sq, dmax, float(self.w), float(self.eps), float(self.omega),
                            self.code)
        if bad == -2:  # a derivative not provably finite: the full kernel, which checks every one
            out, bad = _dynamic(_bayes_score_rows, x, *tabs, float(self.w), float(self.eps), float(self.omega),
                                self.code)
        if bad >= 0:
            self(x, float(times[bad]))  # raises the call's ValueError
        return out


@numba.njit(cache=True)
def _marginal_rows(m, v, times):
    r"""The OU marginal's means and variances at each of ``times`` (rows), :meth:`Mixture1D.marginal`'s scalar
    arithmetic: :math:`a = e^{-t}` (libm's exp, as ``math.exp``), :math:`m a` and :math:`v a a - \mathrm{expm1}(-2t)`
    (the same floats, test), without a Python call per time."""
    rows, K = times.size, m.size
    mt, vt = np.empty((rows, K)), np.empty((rows, K))
    for r in range(rows):
        a = math.exp(-times[r])
        e = math.expm1(-2.0 * times[r])
        for k in range(K):
            mt[r, k] = m[k] * a
            vt[r, k] = v[k] * a * a - e
    return mt, vt


def bayes_field(data: Mixture1D, model: Mixture1D, w: float = 1.0, eps: float = 0.0,
                omega: float = 0.0, form: str = "refined") -> BayesField:
    r"""Refined score :math:`s_\theta + w\,\partial_x d` with :math:`d = d^* + \varepsilon\sin\omega x`,
    :math:`d^* = \log p_t - \log\hat p_t`; the model score :math:`s_\theta` is exact for ``model``
    (a :class:`BayesField`; ``form``: see there)."""
    w, eps, omega = check_real(w, "w"), check_real(eps, "eps"), check_real(omega, "omega")
    return BayesField(data, model, w, eps, omega, form)


@numba.njit(cache=True)
def _bayes_point(x, lwp, mp, vp, lwq, mq, vq, w, eps, omega, lc, pk, form):
    """``(s, ds)`` of :meth:`BayesField.__call__` at one point (the rows of the data's and the model's marginal at
    one time; ``lwp``, ``lwq``: log w - log(v)/2; ``form``: the field's code in :data:`BAYES_FORMS`), the NumPy
    call's arithmetic."""
    sp_, dsp = _mix_score_point(x, lwp, mp, vp, lc, pk)
    sq, dsq = _mix_score_point(x, lwq, mq, vq, lc, pk)
    return _bayes_form(x, sp_, dsp, sq, dsq, w, eps, omega, form)


@numba.njit(cache=True, inline="always")
def _bayes_form(x, sp_, dsp, sq, dsq, w, eps, omega, form):
    """``(s, ds)`` of :func:`_bayes_point` from the data's and the model's scores and derivatives at ``x``."""
    if form == 1:
        return (sq - (sp_ - sq) + eps * omega * np.cos(omega * x),
                dsq - (dsp - dsq) - eps * omega * omega * np.sin(omega * x))
    if form == 2:
        return sp_ + eps * np.cos(omega * x), dsp - eps * omega * np.sin(omega * x)
    if eps == 0.0:
        return sq + w * (sp_ - sq), dsq + w * (dsp - dsq)
    return (sq + w * (sp_ - sq + eps * omega * np.cos(omega * x)),
            dsq + w * (dsp - dsq - eps * omega * omega * np.sin(omega * x)))


@numba.njit(cache=True, parallel=True)
def _bayes_score_rows(x, logwp, mp, vp, logwq, mq, vq, w, eps, omega, form):
    """Score rows of :meth:`BayesField.score_table` and the first row with a non-finite score (-1: none).  The rows
    (times) run over the Numba threads, each writing only its own row and flag (the same numbers for any thread
    count)."""
    n, K, rows = x.size, max(mp.shape[1], mq.shape[1]), mp.shape[0]
    out = np.empty((rows, n))
    bad_row = np.zeros(rows, dtype=np.bool_)
    lwp = np.empty(mp.shape)  # per row: log w - log(v)/2 (the same array expressions per row as before)
    lwq = np.empty(mq.shape)
    for r in range(rows):
        lwp[r] = logwp - 0.5 * np.log(vp[r])
        lwq[r] = logwq - 0.5 * np.log(vq[r])
    lc, pk = np.empty((rows, K)), np.empty((rows, K))  # each row's own work arrays, allocated before the loop
    for r in numba.prange(rows):
        mpr, vpr, mqr, vqr = mp[r], vp[r], mq[r], vq[r]  # the rows' views once, not per point
        for i in range(n):
            s, ds = _bayes_point(x[i], lwp[r], mpr, vpr, lwq[r], mqr, vqr, w, eps, omega, lc[r], pk[r], form)
            out[r, i] = s
            if not (np.isfinite(s) and np.isfinite(ds)):
                bad_row[r] = True
    bad = -1
    for r in range(rows):
        if bad_row[r]:
            bad = r
            break
    return out, bad


class _Memo:
    """Results memoised on their exact input arrays (dtypes, shapes and bytes: the same inputs, the same result),
    read-only, at most ``size`` of them (the least recently used dropped first)."""

    def __init__(self, size: int):
        self.size, self.items = size, {}

    def get(self, arrays: tuple, compute: Callable):
        """``compute()`` for the inputs ``arrays``, computed once."""
        key = tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays)
        out = self.items.pop(key, None)
        if out is None:
            out = compute()
            for arr in (out if isinstance(out, tuple) else (out,)):
                arr.flags.writeable = False
            while len(self.items) >= self.size:
                self.items.pop(next(iter(self.items)))
        self.items[key] = out  # most recently used last
        return out


#: The data and model score rows of :meth:`BayesField.score_table` (a fine grid's pair is about 180 MB, so at most
#: two: the fine and the coarse solve of one error estimate).
_PAIR_ROWS = _Memo(2)


@numba.njit(cache=True, parallel=True)
def _mix_pair_rows(x, logwp, mp, vp, logwq, mq, vq):
    r"""The data's and the model's scores of :func:`_bayes_point` at every point of ``x`` for each row (time) of the
    marginal tables, and per row the largest :math:`|\partial_x s|` of either (NaN where one is not finite).  The
    rows run over the Numba threads, each writing only its own row (the same numbers for any thread count)."""
    n, K, rows = x.size, max(mp.shape[1], mq.shape[1]), mp.shape[0]
    sp_, sq = np.empty((rows, n)), np.empty((rows, n))
    dmax = np.zeros(rows)
    lwp = np.empty(mp.shape)  # per row: log w - log(v)/2 (the same array expressions per row as before)
    lwq = np.empty(mq.shape)
    for r in range(rows):
        lwp[r] = logwp - 0.5 * np.log(vp[r])
        lwq[r] = logwq - 0.5 * np.log(vq[r])
    lc, pk = np.empty((rows, K)), np.empty((rows, K))
    for r in numba.prange(rows):
        for i in range(n):
            a, da = _mix_score_point(x[i], lwp[r], mp[r], vp[r], lc[r], pk[r])
            b, db = _mix_score_point(x[i], lwq[r], mq[r], vq[r], lc[r], pk[r])
            sp_[r, i], sq[r, i] = a, b
            m = max(abs(da), abs(db))
            if np.isnan(da) or np.isnan(db) or np.isnan(dmax[r]):
                dmax[r] = np.nan
            elif m > dmax[r]:
                dmax[r] = m
    return sp_, sq, dmax


@numba.njit(cache=True, parallel=True)
def _bayes_combine_rows(x, sp_, sq, dmax, w, eps, omega, form):
    r"""The score rows of :func:`_bayes_score_rows` from the data's and the model's score rows (:func:`_mix_pair_rows`)
    by :func:`_bayes_point`'s expressions (the ripple's :math:`\cos\omega x` once per point: it does not depend on
    the row).  Returns ``(out, bad)``: the first row with a non-finite score, -1 if none, or -2 where a row's
    derivative is not provably finite: :math:`|\partial_x s| \le (|w| + 1)\,2 d + |\varepsilon|\omega^2(|w| + 1)`
    (``d`` the row's ``dmax``) is not below 1e300 (the caller then runs :func:`_bayes_score_rows`)."""
    rows, n = sp_.shape
    cw, sw = np.empty(n), np.empty(n)
    for i in range(n):
        cw[i], sw[i] = np.cos(omega * x[i]), np.sin(omega * x[i])
    out = np.empty((rows, n))
    bad_row = np.zeros(rows, dtype=np.int64)
    for r in numba.prange(rows):
        if not (abs(w) + 3.0) * (2.0 * dmax[r] + abs(eps) * (omega * omega + abs(omega))) < 1e300:
            bad_row[r] = 2
        for i in range(n):
            a, b = sp_[r, i], sq[r, i]
            if form == 1:
                s = b - (a - b) + eps * omega * cw[i]
            elif form == 2:
                s = a + eps * cw[i]
            elif eps == 0.0:
                s = b + w * (a - b)
            else:
                s = b + w * (a - b + eps * omega * cw[i])
            out[r, i] = s
            if not np.isfinite(s):
                bad_row[r] = 1
    for r in range(rows):
        if bad_row[r] == 2:
            return out, -2
        if bad_row[r] == 1:
            return out, r
    return out, -1


class LinearField:
    r"""Refined score :math:`s_\theta + \beta(t)` of a linear logit :math:`d = \beta(t)x + c(t)`, a :class:`Field`:
    ``field(x, t)`` returns :math:`(s, \partial_x s)`; :func:`sde_endpoint` takes the scores of all its steps at once
    (:meth:`score_table`)."""

    def __init__(self, model: Mixture1D, beta: Callable[[float], float]):
        self.model, self.beta = model, beta

    def __call__(self, x, t):
        sq, dsq = self.model.score_and_derivative(x, t)
        return sq + self.beta(t), dsq

    def score_table(self, x: np.ndarray, times) -> np.ndarray:
        r"""The score :math:`s` of ``field(x, t)`` at the 1-D ``x`` for each of ``times`` (row ``i``: ``times[i]``):
        the model's marginals by :func:`_marginal_rows` (``marginal``'s floats), its score rows by
        :func:`_model_score_rows` (the numbers of :meth:`Mixture1D.score_and_derivative`, row by row), plus
        :math:`\beta` at each time (``beta.many`` if it has it); where a score is not finite the call's ValueError."""
        times = np.asarray(times, dtype=np.float64)
        model, x = self.model, np.ascontiguousarray(x, dtype=np.float64)
        mt, vt = _marginal_rows(model.m, model.v, times)
        sq = _model_score_rows(x, np.log(model.w), mt, vt)
        many = getattr(self.beta, "many", None)
        betas = many(times) if many is not None else np.array([self.beta(float(t)) for t in times], dtype=np.float64)
        out = sq + betas[:, None]
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            self(x, float(times[np.argmax(bad)]))  # raises the call's ValueError
            raise ValueError(f"beta: not finite at t={float(times[np.argmax(bad)])!r}")
        return out


def linear_field(model: Mixture1D, beta: Callable[[float], float]) -> Field:
    r"""Refined score :math:`s_\theta + \beta(t)` of a linear logit :math:`d = \beta(t)x + c(t)` (a
    :class:`LinearField`)."""
    return LinearField(model, beta)


def empirical_field(points: np.ndarray) -> Field:
    r"""Score of the empirical marginal :math:`p^n_t = \frac1n\sum_i N(x_i e^{-t}, \sigma_t^2)` (``t > 0``):
    the refined score of the Bayes discriminator trained against a finite real set (memorisation)."""
    pts = check_real_values(points, "points").ravel()
    if pts.size == 0:
        raise ValueError("points: needs at least one point")

    def field(x, t):
        if check_real(t, "t") <= 0:
            raise ValueError("t: the empirical score needs t > 0")
        emp = Mixture1D(np.full(pts.size, 1.0 / pts.size), pts, np.full(pts.size, 1e-300))
        emp.v = np.full(pts.size, 0.0)
        return emp.score_and_derivative(x, t)

    return field


# ----------------------------------------------------------------------------------------------
# reverse SDE: Fokker-Planck, Scharfetter-Gummel finite volumes + Crank-Nicolson
# ----------------------------------------------------------------------------------------------
def _bern(z: np.ndarray) -> np.ndarray:
    r"""Bernoulli function :math:`B(z) = z / (e^z - 1)`, stable near 0 and for large :math:`|z|`: ``z / expm1(z)``
    (NumPy's, elementwise), :math:`1 - z/2` where :math:`|z| < 10^{-6}`.  Without such entries (the SDE's faces at
    the claims' steps) the quotient of the whole array, no masks or gathers: the same elementwise operations, so the
    same floats (tests), in half the time."""
    small = np.abs(z) < 1e-6
    if not small.any():
        return z / np.expm1(z)
    out = np.empty_like(z)
    zs = z[~small]
    out[~small] = zs / np.expm1(zs)
    out[small] = 1.0 - 0.5 * z[small]
    return out


def _sg_operator(b_faces: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tridiagonal FP operator (lower, diag, upper) for the flux J = b rho - rho' with zero-flux ends."""
    bp, bm = _bern(b_faces * h), _bern(-b_faces * h)
    n = b_faces.size + 1
    lower = np.zeros(n)
    upper = np.zeros(n)
    diag = np.zeros(n)
    # face f between cells f and f+1: J_f = (bm_f rho_f - bp_f rho_{f+1}) / h
    upper[:-1] = bp / h**2           # coefficient of rho_{i+1} in row i
    lower[1:] = bm / h**2            # coefficient of rho_{i-1} in row i
    diag[:-1] -= bm / h**2
    diag[1:] -= bp / h**2
    return lower, diag, upper


#: Entries (rows x faces) per NumPy Bernoulli call of :func:`_cn_steps`: its five temporaries stay in cache
#: (128 KB each; blocks of 128 rows of 2800 faces made the steps 2x slower than the per-step loop).
_CN_BLOCK = 1 << 14


def _cn_steps(rho: np.ndarray, table: np.ndarray, faces: np.ndarray, h: float, dt: float) -> np.ndarray:
    r"""The Crank-Nicolson steps of :func:`sde_endpoint` from the score rows ``table`` (row ``k``: step time ``k``):
    step ``k`` maps :math:`\rho` with the operators of rows ``k`` and ``k + 1``.  The same numbers as building each
    operator by :func:`_sg_operator` and stepping by :func:`_cn_step` (tests: bit for bit): the Bernoulli
    function by :func:`_bern` (NumPy's ``expm1``, elementwise) on blocks of about :data:`_CN_BLOCK` entries, the
    operators' assembly and the steps in one compiled loop per block (:func:`_cn_block`), not a Python call per
    step."""
    lo0, di0, up0 = _sg_operator(faces + 2.0 * table[0], h)
    rows = max(1, _CN_BLOCK // faces.size)
    for start in range(1, table.shape[0], rows):
        b = (faces + 2.0 * table[start:start + rows]) * h
        rho = _cn_block(rho, lo0, di0, up0, _bern(b), _bern(-b), h, dt)
    return rho


@numba.njit(cache=True)
def _cn_block(rho, lo0, di0, up0, bp, bm, h, dt):
    """Crank-Nicolson steps through the rows of ``bp``, ``bm`` (the Bernoulli values of the faces' drifts at the
    next step times), :func:`_sg_operator`'s assembly; ``lo0, di0, up0`` (in: the operator of the step's start,
    out: of the block's last row) are overwritten."""
    n = rho.size
    hh = h ** 2
    lo1, di1, up1 = np.zeros(n), np.zeros(n), np.zeros(n)
    for j in range(bp.shape[0]):
        di1[:] = 0.0
        for f in range(n - 1):
            up1[f] = bp[j, f] / hh
            lo1[f + 1] = bm[j, f] / hh
            di1[f] -= bm[j, f] / hh
        for f in range(n - 1):
            di1[f + 1] -= up1[f]  # bp[j, f] / hh, divided once
        rho = _cn_step(rho, lo0, di0, up0, lo1, di1, up1, dt)
        lo0[:] = lo1
        di0[:] = di1
        up0[:] = up1
    return rho


@numba.njit(cache=True)
def _cn_step(rho, lo0, di0, up0, lo1, di1, up1, dt):
    n = rho.size
    rhs = np.empty(n)
    for i in range(n):
        v = (1.0 + 0.5 * dt * di0[i]) * rho[i]
        if i > 0:
            v += 0.5 * dt * lo0[i] * rho[i - 1]
        if i < n - 1:
            v += 0.5 * dt * up0[i] * rho[i + 1]
        rhs[i] = v
    # Thomas on (I - dt/2 L1)
    cp = np.empty(n)
    dp = np.empty(n)
    b = 1.0 - 0.5 * dt * di1[0]
    c = -0.5 * dt * up1[0]
    cp[0] = c / b
    dp[0] = rhs[0] / b
    for i in range(1, n):
        a = -0.5 * dt * lo1[i]
        b = 1.0 - 0.5 * dt * di1[i]
        c = -0.5 * dt * up1[i] if i < n - 1 else 0.0
        den = b - a * cp[i - 1]
        cp[i] = c / den
        dp[i] = (rhs[i] - a * dp[i - 1]) / den
    out = np.empty(n)
    out[n - 1] = dp[n - 1]
    for i in range(n - 2, -1, -1):
        out[i] = dp[i] - cp[i] * out[i + 1]
    return out


def sde_endpoint(field: Field, start: Mixture1D, T: float = 8.0, grid: Grid1D = Grid1D(),
                 dtau: float = 2e-3, t_end: float = 0.0) -> np.ndarray:
    r"""Density on ``grid.x`` of the reverse-SDE sampler with score ``field`` run from
    :math:`X_T\sim` ``start``'s marginal at ``T`` down to ``t_end`` (OU time).

    Finite volumes with Scharfetter-Gummel fluxes (exact for a locally constant drift, positivity
    preserving), zero-flux boundaries, Crank-Nicolson in :math:`\tau`; mass is conserved to rounding.
    Error: :math:`O(dx^2 + d\tau^2)`; estimate by refinement (:func:`kl_with_error`).
    Crank-Nicolson itself is not positivity preserving: in the far tails (``|x|`` near 7 in setting G, density
    :math:`\lesssim 10^{-17}` of its peak) round-off leaves values of either sign, and some exact zeros; compare
    such a density with :func:`endpoint_kl`.
    """
    T = _pos_float(T, "T")
    dtau = _pos_float(dtau, "dtau")
    t_end = _pos_float(t_end, "t_end", allow_zero=True)
    if t_end >= T:
        raise ValueError(f"t_end: must be < T={T}, got {t_end}")
    if not isinstance(grid, Grid1D):
        raise ValueError("grid: must be a Grid1D")
    x = grid.x
    h = grid.dx
    faces = 0.5 * (x[1:] + x[:-1])
    n_steps = _n_steps(T - t_end, dtau)
    dt = (T - t_end) / n_steps
    rho = start.density(x, T)
    rho = rho / (rho.sum() * h)

    times = [T] + [max(T - (k + 1) * dt, t_end) for k in range(n_steps)]
    if isinstance(field, (FeatureField, BayesField, LinearField)):  # the score at every step time at once
        rho = _cn_steps(rho, field.score_table(faces, np.array(times)), faces, h, dt)
    else:
        def op(i):
            return _sg_operator(faces + 2.0 * field(faces, times[i])[0], h)

        L0 = op(0)
        for k in range(n_steps):
            L1 = op(k + 1)
            rho = _cn_step(rho, L0[0], L0[1], L0[2], L1[0], L1[1], L1[2], dt)
            L0 = L1
    if not np.all(np.isfinite(rho)):
        raise ValueError(f"dtau: the Crank-Nicolson density is not finite at t={t_end!r} (step dt={dt!r} too large "
                         "for this field and grid)")
    return rho


# ----------------------------------------------------------------------------------------------
# probability-flow ODE: RK4 transport with exact log-determinant
# ----------------------------------------------------------------------------------------------
@dataclass
class OdeResult:
    """Endpoint law of the PF-ODE on a grid, with collapse flags."""

    x: np.ndarray
    log_density: np.ndarray
    mass: float             # grid mass of the endpoint density (1 up to quadrature and RK4 error)
    max_log_density: float  # collapse flag: >> 0 means near-atomic endpoint

    @property
    def density(self) -> np.ndarray:
        return np.exp(self.log_density)

    def kl_from(self, data: "Mixture1D") -> float:
        r""":math:`\mathrm{KL}(p_0\|\tilde p_0)` on the grid (no renormalisation of :math:`\tilde p_0`)."""
        lp = data.log_density(self.x, 0.0)
        return float(np.sum(np.exp(lp) * (lp - self.log_density)) * (self.x[1] - self.x[0]))


def ode_endpoint(field: Field, start: Mixture1D, T: float = 8.0, grid: Grid1D = Grid1D(),
                 dtau: float = 2e-3) -> OdeResult:
    r"""Endpoint density of the PF-ODE :math:`dx/d\tau = x + s(x, T-\tau)` started from :math:`\hat p_T`
    (``start``), evaluated exactly on ``grid.x`` by backward characteristics.

    From each grid point :math:`x` at ``t = 0`` the flow is run forward in OU time,
    :math:`dx/dt = -(x + s)`, to :math:`x_T = \Phi^{-1}(x)` with RK4, accumulating the 1-D log-determinant
    :math:`A = \int_0^T (1 + \partial_x s)\,dt`; then :math:`\log\tilde p_0(x) = \log\hat p_T(x_T) - A`.
    No interpolation and no coverage problem where the forward map expands; the only error is RK4's,
    :math:`O(d\tau^4)`.  A :class:`FeatureField` or a :class:`BayesField` is transported by a compiled loop
    (:func:`_ode_feature`, :func:`_ode_bayes`), any other field by the NumPy loop (:func:`_ode_rk4`).
    """
    T = _pos_float(T, "T")
    dtau = _pos_float(dtau, "dtau")
    if not isinstance(grid, Grid1D):
        raise ValueError("grid: must be a Grid1D")
    x0 = grid.x
    n_steps = _n_steps(T, dtau)
    dt = T / n_steps
    if isinstance(field, FeatureField):
        xx, A = _ode_feature(field, x0, T, n_steps, dt)
    elif isinstance(field, BayesField):
        xx, A = _ode_bayes(field, x0, T, n_steps, dt)
    else:
        xx, A = _ode_rk4(field, x0, T, n_steps, dt)
    if not (np.all(np.abs(xx) <= _ODE_STATE_MAX) and np.all(np.isfinite(A))):
        raise ValueError(f"dtau: the PF-ODE state or log-determinant is not finite at t={T!r} (RK4 step dt={dt!r} "
                         "too large for this field: unstable)")
    ell = start.log_density(xx, T) - A
    return OdeResult(x0, ell, float(np.sum(np.exp(ell)) * grid.dx), float(np.max(ell)))


def _unstable(t: float, dt: float) -> ValueError:
    return ValueError(f"dtau: the PF-ODE state leaves |x| <= {_ODE_STATE_MAX:g} at t={t!r} (RK4 step dt={dt!r} "
                      "too large for this field: unstable)")


def _ode_rk4(field: Field, x0: np.ndarray, T: float, n_steps: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    r"""RK4 in OU time of :math:`dx/dt = -(x + s)`, :math:`dA/dt = 1 + \partial_x s` from ``(x0, 0)`` to ``T``
    (``n_steps`` steps ``dt``) for any :class:`Field`: returns :math:`(x_T, A)`."""

    def rhs(xx, t):
        if not np.all(np.abs(xx) <= _ODE_STATE_MAX):  # also NaN: only an unstable step gets here from a grid
            raise _unstable(t, dt)
        s, ds = field(xx, t)
        return -(xx + s), 1.0 + ds

    xx = x0.copy()
    A = np.zeros_like(xx)
    for k in range(n_steps):
        t0 = k * dt
        k1x, k1a = rhs(xx, t0)
        k2x, k2a = rhs(xx + 0.5 * dt * k1x, t0 + 0.5 * dt)
        k3x, k3a = rhs(xx + 0.5 * dt * k2x, t0 + 0.5 * dt)
        k4x, k4a = rhs(xx + dt * k3x, min(t0 + dt, T))
        xx = xx + dt / 6 * (k1x + 2 * k2x + 2 * k3x + k4x)
        A = A + dt / 6 * (k1a + 2 * k2a + 2 * k3a + k4a)
    return xx, A


def _rk4_stage_times(T: float, n_steps: int, dt: float) -> np.ndarray:
    r"""The table times of the compiled RK4 transports, ``(3 n_steps,)``: for step ``k`` the rows ``3k, 3k + 1,
    3k + 2`` hold :math:`k\,dt`, :math:`k\,dt + dt/2` and :math:`\min(k\,dt + dt, T)` (stages 0, 1-2 and 3)."""
    k = np.arange(n_steps) * dt
    return np.stack([k, k + 0.5 * dt, np.minimum(k + dt, T)], axis=1).ravel()


def _ode_feature(field: "FeatureField", x0: np.ndarray, T: float, n_steps: int,
                 dt: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_ode_rk4` for a :class:`FeatureField`, compiled (:func:`_ode_feature_kernel`): the same stage
    times, the same state check (the same error at the same time), the field's tables at each stage time."""
    times = _rk4_stage_times(T, n_steps, dt)
    coef, logw, mt, vt = field.tables(times)
    fam = field.fam
    xx, A, bad = _dynamic(_ode_feature_kernel, x0, dt, n_steps, coef, logw, mt, vt, -fam.omega, -fam.omega ** 2,
                          fam.omega, fam.phase, field.w, field.scale, _ODE_STATE_MAX)
    if bad >= 0:
        raise _unstable(float(times[3 * (bad // 4) + (bad % 4 + 1) // 2]), dt)
    return xx, A


def _ode_bayes(field: BayesField, x0: np.ndarray, T: float, n_steps: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_ode_rk4` for a :class:`BayesField`, compiled (:func:`_ode_bayes_kernel`): the same stage times and
    arithmetic, the marginals by :meth:`BayesField.tables`; where a state leaves the bound or a score is not finite,
    :func:`_ode_rk4` is run instead (it raises the same error at the same stage)."""
    times = _rk4_stage_times(T, n_steps, dt)
    xx, A, bad = _dynamic(_ode_bayes_kernel, x0, dt, n_steps, *field.tables(times), float(field.w), float(field.eps),
                          float(field.omega), field.code, _ODE_STATE_MAX)
    if bad:
        return _ode_rk4(field, x0, T, n_steps, dt)
    return xx, A


@numba.njit(cache=True, inline="always")
def _rk4_stage_state(x, kx, st, h2, dt, y):
    r"""``y`` = the state of RK4 stage ``st`` (0-3) from the step's start ``x`` and the earlier stages' slopes
    ``kx``: :math:`y = x` (stage 0), :math:`x + \tfrac{dt}2 k_{st-1}` (stages 1, 2), :math:`x + dt\,k_3` (stage 3);
    ``h2`` is ``0.5 * dt``."""
    n = x.size
    if st == 1 or st == 2:
        for i in range(n):
            y[i] = x[i] + h2 * kx[st - 1, i]
    elif st == 3:
        for i in range(n):
            y[i] = x[i] + dt * kx[2, i]
    else:
        y[:] = x


@numba.njit(cache=True, inline="always")
def _rk4_combine(x, A, kx, ka, h6):
    r"""The RK4 step in place: :math:`x \mathrel{+}= h_6(k_0 + 2k_1 + 2k_2 + k_3)` and the same for the
    log-determinant ``A`` with the slopes ``ka`` (``h6`` is ``dt / 6``)."""
    for i in range(x.size):
        x[i] = x[i] + h6 * (kx[0, i] + 2 * kx[1, i] + 2 * kx[2, i] + kx[3, i])
        A[i] = A[i] + h6 * (ka[0, i] + 2 * ka[1, i] + 2 * ka[2, i] + ka[3, i])


def _dynamic(kernel, *args):
    """``kernel(*args)`` with Numba's dynamic schedule (chunks of one ``prange`` iteration handed out in turn), so
    that a thread on a busy core does not hold up the others; the results do not depend on the schedule (each
    iteration of these kernels writes only its own outputs)."""
    old = numba.set_parallel_chunksize(1)
    try:
        return kernel(*args)
    finally:
        numba.set_parallel_chunksize(old)


#: Points per chunk of the compiled PF-ODE transports (:func:`_ode_bayes_kernel`, :func:`_ode_feature_kernel`):
#: the chunks are fixed by the grid alone, not by the thread count, and each point's trajectory is computed
#: with the same arithmetic in any chunk, so the endpoints are bit-identical for any number of Numba threads.
_ODE_CHUNK = 64


@numba.njit(cache=True)
def _chunk_bounds(n, c):
    """Start and end of chunk ``c`` of :data:`_ODE_CHUNK` points among ``n``."""
    return c * _ODE_CHUNK, min(n, (c + 1) * _ODE_CHUNK)


@numba.njit(cache=True, parallel=True)
def _ode_bayes_kernel(x0, dt, n_steps, logwp, mp, vp, logwq, mq, vq, w, eps, omega, form, state_max):
    r""":func:`_ode_bayes`'s RK4 transport of the points ``x0`` (rows ``3k, 3k + 1, 3k + 2`` of the tables: the times
    ``k dt``, ``k dt + dt/2``, ``min(k dt + dt, T)``), the NumPy loop's arithmetic.  Returns ``(x_T, A, bad)``:
    ``bad`` is True where a state left :math:`|x| \le` ``state_max`` or a score was not finite (the NumPy loop
    raises there).  The points run in fixed chunks of :data:`_ODE_CHUNK` over the Numba threads (independent
    trajectories; each chunk writes only its own points: the same numbers for any thread count)."""
    n = x0.size
    lwp = np.empty(mp.shape)  # per table row: log w - log(v)/2 (elementwise, as computed per row before)
    lwq = np.empty(mq.shape)
    for r in range(mp.shape[0]):
        lwp[r] = logwp - 0.5 * np.log(vp[r])
        lwq[r] = logwq - 0.5 * np.log(vq[r])
    x = x0.copy()
    A = np.zeros(n)
    n_chunks = (n + _ODE_CHUNK - 1) // _ODE_CHUNK
    bad = np.zeros(n_chunks, dtype=np.bool_)
    K = max(mp.shape[1], mq.shape[1])
    lc, pk, acc, kx, ka, y = _ode_work(n_chunks, K)
    for c in numba.prange(n_chunks):
        lo, hi = _chunk_bounds(n, c)
        bad[c] = _ode_bayes_chunk(x[lo:hi], A[lo:hi], dt, n_steps, lwp, mp, vp, lwq, mq, vq, w, eps, omega,
                                  form, state_max, lc[c], pk[c], acc[c], kx[c], ka[c], y[c, :hi - lo])
    return x, A, bad.any()


@numba.njit(cache=True)
def _ode_work(n_chunks, K):
    """Each chunk's own work arrays of the RK4 chunks, allocated before the threaded loop: ``lc, pk``
    ``(n_chunks, K, _ODE_CHUNK)`` and ``acc`` ``(n_chunks, 7, _ODE_CHUNK)`` (:func:`_mix_score_block`'s work and
    outputs: rows 0-2 its work, 3-4 and 5-6 two mixtures' scores and derivatives), the stage slopes ``kx, ka`` ``(n_chunks, 4, _ODE_CHUNK)`` and the stage states ``y``
    ``(n_chunks, _ODE_CHUNK)`` (a chunk of ``m`` points uses the first ``m`` columns)."""
    return (np.empty((n_chunks, K, _ODE_CHUNK)), np.empty((n_chunks, K, _ODE_CHUNK)),
            np.empty((n_chunks, 7, _ODE_CHUNK)), np.empty((n_chunks, 4, _ODE_CHUNK)),
            np.empty((n_chunks, 4, _ODE_CHUNK)), np.empty((n_chunks, _ODE_CHUNK)))


@numba.njit(cache=True)
def _ode_bayes_chunk(x, A, dt, n_steps, lwp, mp, vp, lwq, mq, vq, w, eps, omega, form, state_max, lc, pk, acc, kx, ka,
                     y):
    """One chunk of :func:`_ode_bayes_kernel`: RK4 of the points ``x`` (in place, with their log-determinants
    ``A``); True where a state left the bound or a score was not finite.  ``lc, pk, acc, kx, ka, y``: the chunk's
    work arrays (:func:`_ode_work`; ``y`` has the chunk's length, the others at least as many columns).  Each stage
    takes both mixtures' scores at all the chunk's points by :func:`_mix_score_block` (the numbers of
    :func:`_bayes_point`, point by point), then :func:`_bayes_form`."""
    n = x.size
    h2 = 0.5 * dt
    h6 = dt / 6
    sp_, dsp, sq, dsq = acc[3], acc[4], acc[5], acc[6]
    for k in range(n_steps):
        for st in range(4):
            _rk4_stage_state(x, kx, st, h2, dt, y)
            r = 3 * k + (st + 1) // 2
            for i in range(n):
                if not abs(y[i]) <= state_max:
                    return True
            _mix_score_block(y, lwp[r], mp[r], vp[r], lc, pk, acc, sp_, dsp)
            _mix_score_block(y, lwq[r], mq[r], vq[r], lc, pk, acc, sq, dsq)
            for i in range(n):
                s, ds = _bayes_form(y[i], sp_[i], dsp[i], sq[i], dsq[i], w, eps, omega, form)
                if not (np.isfinite(s) and np.isfinite(ds)):
                    return True
                kx[st, i] = -(y[i] + s)
                ka[st, i] = 1.0 + ds
        _rk4_combine(x, A, kx, ka, h6)
    return False


#: Largest |x| of a PF-ODE state in :func:`ode_endpoint` (its square stays far inside float64); started on a grid,
#: the state only gets there through an unstable RK4 step.
_ODE_STATE_MAX = 1e150


#: Floor of an SDE endpoint density before a KL against it (:func:`endpoint_kl`).
ENDPOINT_FLOOR = 1e-300


def endpoint_kl(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    r""":math:`\mathrm{KL}(p\|q)` on the grid (:func:`numerics.divergences.kl_cells`) of a density ``p`` against an
    :func:`sde_endpoint` density ``q``, with ``q`` floored at :data:`ENDPOINT_FLOOR` first.

    The floor is explicit because :func:`kl_cells` returns ``inf`` where ``q = 0`` on the support of ``p``: the
    Crank-Nicolson endpoint has round-off values :math:`\le 0` at a few far-tail cells (in the claims' runs
    :math:`|x|\ge 6.9`, up to 31 cells, where the data density is :math:`\lesssim 10^{-19}`), where the exact
    endpoint density is positive but below what the scheme resolves.  Floored, these cells add
    :math:`\sum p(\log p + 690)\,dx \lesssim 2\cdot 10^{-18}` to the KL, far below every tolerance it is compared
    with (:math:`\ge 10^{-9}`).
    """
    return kl_cells(p, np.maximum(check_real_values(q, "q"), ENDPOINT_FLOOR), _pos_float(dx, "dx"))


def kl_with_error(data: Mixture1D, field: Field, start: Mixture1D, sampler: str = "sde", T: float = 8.0,
                  grid: Grid1D = Grid1D(), dtau: float = 2e-3) -> tuple[float, float]:
    r""":math:`\mathrm{KL}(p_0\,\|\,\tilde p_0)` of the ``sampler`` ("sde" or "ode") endpoint and an error
    estimate: the change when ``dx`` and ``dtau`` are both doubled (second-order schemes: the fine
    value's error is about a third of that, so the estimate is conservative)."""
    if sampler not in ("sde", "ode"):
        raise ValueError(f"sampler: must be 'sde' or 'ode', got {sampler!r}")
    vals = []
    for f in (1, 2):
        g = Grid1D(grid.lo, grid.hi, grid.dx * f)
        if sampler == "sde":
            q = sde_endpoint(field, start, T, g, dtau * f)
        else:
            vals.append(ode_endpoint(field, start, T, g, dtau * f).kl_from(data))
            continue
        vals.append(endpoint_kl(data.density(g.x, 0.0), q, g.dx))
    return vals[0], abs(vals[0] - vals[1])


# ----------------------------------------------------------------------------------------------
# cross-entropy, path KL, Fisher gaps
# ----------------------------------------------------------------------------------------------
def _softplus(z):
    return np.logaddexp(0.0, z)


def ce_value(data: Mixture1D, model: Mixture1D, t: float, logit: Callable, x: np.ndarray | None = None) -> float:
    r"""Two-class cross-entropy :math:`\int p_t\,\mathrm{softplus}(-d) + \hat p_t\,\mathrm{softplus}(d)\,dx`
    of the logit ``d = logit(x)`` (grid quadrature, trapezoid on a wide uniform grid)."""
    x = np.linspace(-12, 12, 24001) if x is None else _quad_grid(x)
    d = logit(x)
    f = data.density(x, t) * _softplus(-d) + model.density(x, t) * _softplus(d)
    out = float(np.sum(f) * (x[1] - x[0]))
    if not math.isfinite(out):
        raise ValueError(f"x: the cross-entropy on this grid is not finite at t={t!r} (grid or logit values too large)")
    return out


def _quad_grid(x) -> np.ndarray:
    """A quadrature grid: 1-D, at least 2 points, strictly increasing, finite, with a finite spacing."""
    x = check_sorted(x, "x")
    if not math.isfinite(x[1] - x[0]):
        raise ValueError(f"x: the grid spacing overflows float64 (x[0]={x[0]!r}, x[1]={x[1]!r})")
    return x


def bayes_logit(data: Mixture1D, model: Mixture1D, t: float) -> Callable:
    r""":math:`d^*(x) = \log p_t(x) - \log\hat p_t(x)`."""
    return lambda x: data.log_density(x, t) - model.log_density(x, t)


def ce_gap(data: Mixture1D, model: Mixture1D, t: float, err: Callable) -> float:
    r"""CE of :math:`d^* + e` minus CE of :math:`d^*` (``err(x) = e(x)``) at time ``t``."""
    d0 = bayes_logit(data, model, t)
    return ce_value(data, model, t, lambda x: d0(x) + err(x)) - ce_value(data, model, t, d0)


def time_nodes(T: float, pieces=(0.0, 0.05, 0.3, 1.0, 3.0), n: int = 24):
    """Composite Gauss-Legendre nodes/weights on [0, T] with breakpoints ``pieces`` (below T)."""
    T, n = _pos_float(T, "T"), _pos_int(n, "n")
    edges = [p for p in check_real_values(pieces, "pieces").ravel().tolist() if p < T] + [T]
    z, wz = np.polynomial.legendre.leggauss(n)
    ts, ws = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        ts.append(0.5 * (b - a) * z + 0.5 * (a + b))
        ws.append(0.5 * (b - a) * wz)
    return np.concatenate(ts), np.concatenate(ws)


def fisher_gap(data: Mixture1D, field_corr: Callable, t: float, model: Mixture1D,
               x: np.ndarray | None = None) -> float:
    r""":math:`E_{p_t}|\nabla\log p_t - s_\theta - c|^2` with the correction ``c = field_corr(x, t)``."""
    x = np.linspace(-12, 12, 12001) if x is None else _quad_grid(x)
    return _fisher_sum(*_fisher_terms(data, model, t, x), field_corr, t, x)


def _fisher_terms(data: Mixture1D, model: Mixture1D, t: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The correction-free terms of :func:`fisher_gap` on the grid ``x``: :math:`\nabla\log p_t - s_\theta` and
    :math:`p_t`."""
    return data.score(x, t) - model.score(x, t), data.density(x, t)


def _fisher_sum(diff: np.ndarray, dens: np.ndarray, field_corr: Callable, t: float, x: np.ndarray) -> float:
    r""":func:`fisher_gap` from its terms (:func:`_fisher_terms`): :math:`\sum p_t\,r^2\,dx`,
    :math:`r = (\nabla\log p_t - s_\theta) - c`."""
    r = diff - field_corr(x, t)
    out = float(np.sum(dens * r * r) * (x[1] - x[0]))
    if not math.isfinite(out):
        raise ValueError(f"x: the Fisher gap on this grid is not finite at t={t!r} (grid or correction values too "
                         "large)")
    return out


class PathTerms(NamedTuple):
    r"""The correction-free parts of :func:`path_kl` (:func:`path_terms`): the time nodes and weights, the x-grid,
    per node :math:`\nabla\log p_t - s_\theta` and :math:`p_t` on it, and :math:`\mathrm{KL}(p_T\|\hat p_T)`."""

    ts: np.ndarray
    ws: np.ndarray
    x: np.ndarray
    diff: tuple
    dens: tuple
    kl_T: float


def path_terms(data: Mixture1D, model: Mixture1D, T: float = 8.0, n: int = 24, x: np.ndarray | None = None,
               pieces=(0.0, 0.05, 0.3, 1.0, 3.0)) -> PathTerms:
    """The parts of :func:`path_kl` that do not depend on the correction (computed once, reused for every
    correction by :func:`path_kl_from`)."""
    ts, ws = time_nodes(T, pieces=pieces, n=n)
    g = np.linspace(-12, 12, 24001) if x is None else _quad_grid(x)
    terms = [_fisher_terms(data, model, float(ti), g) for ti in ts]
    kl_T = kl_cells(data.density(g, T), model.density(g, T), g[1] - g[0])
    return PathTerms(ts, ws, g, tuple(a for a, _ in terms), tuple(b for _, b in terms), kl_T)


def path_kl_from(terms: PathTerms, correction: Callable) -> float:
    """:func:`path_kl` of ``correction`` from its correction-free parts ``terms`` (:func:`path_terms`): the same
    numbers as :func:`path_kl`."""
    integral = sum(wi * _fisher_sum(a, b, correction, float(ti), terms.x)
                   for ti, wi, a, b in zip(terms.ts, terms.ws, terms.diff, terms.dens))
    return float(terms.kl_T + integral)


def path_kl(data: Mixture1D, model: Mixture1D, correction: Callable, T: float = 8.0, n: int = 24,
            x: np.ndarray | None = None, pieces=(0.0, 0.05, 0.3, 1.0, 3.0)) -> float:
    r"""Girsanov path KL (OU, :math:`g^2/2 = 1`):
    :math:`\mathrm{KL}(p_T\|\hat p_T) + \int_0^T E_{p_t}|\nabla\log p_t - s_\theta - c|^2\,dt`
    (composite Gauss-Legendre in ``t`` with breakpoints ``pieces``: put the kinks of ``c`` in time there)."""
    return path_kl_from(path_terms(data, model, T, n, x, pieces), correction)


# ----------------------------------------------------------------------------------------------
# linear-logit families: MSE (gradient-matching) and CE optima
# ----------------------------------------------------------------------------------------------
def mse_optimal_linear(data: Mixture1D, model: Mixture1D, t: float) -> float:
    r""":math:`\beta^{MSE}(t) = E_{p_t}[\nabla\log p_t - s_\theta] = -E_{p_t}[s_\theta]`."""
    return -data.expect(lambda x: model.score(x, t), t)


def ce_optimal_linear(data: Mixture1D, model: Mixture1D, t: float, init=(0.0, 0.0),
                      nodes: int = 80) -> tuple[float, float]:
    r"""Logistic regression of :math:`p_t` (label 1) against :math:`\hat p_t` (label 0) with logit
    :math:`\beta x + c`: Newton's method on Gauss-Hermite quadrature (``nodes`` per component).
    Returns ``(beta, c)``."""
    z, wz = gauss_hermite_normal(nodes)

    def pts(mix):
        w, m, v = mix.marginal(t)
        return (m[:, None] + np.sqrt(v)[:, None] * z).ravel(), (w[:, None] * wz).ravel()

    xp, wp = pts(data)
    xq, wq = pts(model)
    th = np.array(init, dtype=np.float64)
    for _ in range(60):
        dp = th[0] * xp + th[1]
        dq = th[0] * xq + th[1]
        sp_ = 1.0 / (1.0 + np.exp(dp))    # sigma(-d)
        sq = 1.0 / (1.0 + np.exp(-dq))    # sigma(d)
        g = np.array([np.sum(wp * -sp_ * xp) + np.sum(wq * sq * xq), np.sum(wp * -sp_) + np.sum(wq * sq)])
        hp, hq = wp * sp_ * (1 - sp_), wq * sq * (1 - sq)
        H = np.array([[np.sum(hp * xp * xp) + np.sum(hq * xq * xq), np.sum(hp * xp) + np.sum(hq * xq)],
                      [np.sum(hp * xp) + np.sum(hq * xq), np.sum(hp) + np.sum(hq)]])
        step = np.linalg.solve(H, g)
        th = th - step
        if np.max(np.abs(step)) < 1e-12 * (1 + np.max(np.abs(th))):
            break
    return float(th[0]), float(th[1])


def linear_beta_spline(data: Mixture1D, model: Mixture1D, objective: str, T: float = 8.0, n: int = 801):
    r""":math:`\beta(t)` of the ``objective`` ("mse" or "ce") optimum on ``n`` uniform times in [0, T],
    returned as a cubic spline (C^2; its interpolation error is checked by halving ``n`` in the tests)."""
    from scipy.interpolate import CubicSpline
    if objective not in ("mse", "ce"):
        raise ValueError(f"objective: must be 'mse' or 'ce', got {objective!r}")
    ts = np.linspace(0.0, T, n)
    betas = np.empty(n)
    th = (0.0, 0.0)
    for i, ti in enumerate(ts):
        if objective == "mse":
            betas[i] = mse_optimal_linear(data, model, float(ti))
        else:
            th = ce_optimal_linear(data, model, float(ti), init=th)
            betas[i] = th[0]
    return BetaSpline(CubicSpline(ts, betas))


class BetaSpline:
    r""":math:`\beta(t)` as a cubic spline (:func:`linear_beta_spline`): ``beta(t)`` at one time, ``beta.many(ts)`` at
    many in one call (the same floats: SciPy evaluates each point alone); ``sign`` multiplies both."""

    def __init__(self, spline, sign: float = 1.0):
        self.spline, self.sign = spline, float(sign)

    def __call__(self, t) -> float:
        v = float(self.spline(t))
        return v if self.sign == 1.0 else self.sign * v

    def many(self, ts: np.ndarray) -> np.ndarray:
        r""":math:`\beta` at each of ``ts`` (1-D)."""
        v = np.asarray(self.spline(np.asarray(ts, dtype=np.float64)), dtype=np.float64)
        return v if self.sign == 1.0 else self.sign * v

    def signed(self, sign: float) -> "BetaSpline":
        """The slope times ``sign``."""
        return BetaSpline(self.spline, self.sign * float(sign))


# ----------------------------------------------------------------------------------------------
# Gaussian data / model: closed-form moment equations
# ----------------------------------------------------------------------------------------------
def gaussian_refined_endpoint(model: Mixture1D, beta: Callable[[float], float], sampler: str = "sde",
                              T: float = 8.0, n_steps: int = 4000) -> tuple[float, float]:
    r"""Mean and variance at ``t = 0`` of the refined sampler with score :math:`-(x-\hat\mu_t)/\hat v_t + \beta(t)`
    (single-Gaussian ``model``), started from :math:`\hat p_T`, by RK4 on the moment equations in
    :math:`\tau = T - t`:

    * SDE: :math:`\dot m = (1+2a)m + 2b`, :math:`\dot V = 2(1+2a)V + 2`,
    * ODE: :math:`\dot m = (1+a)m + b`,   :math:`\dot V = 2(1+a)V`,

    with :math:`a = -1/\hat v_t`, :math:`b = \hat\mu_t/\hat v_t + \beta(t)`.  The stage times' marginals
    (:func:`_marginal_rows`) and slopes (``beta.many(times)`` if ``beta`` has it, as :class:`BetaSpline`; else one
    call per time) come first, the RK4 loop is compiled (:func:`_gauss_moment_rk4`); the same floats as a NumPy loop
    calling ``marginal`` and ``beta`` at every stage (test)."""
    if model.w.size != 1:
        raise ValueError("model: moment equations need a single Gaussian")
    if sampler not in ("sde", "ode"):
        raise ValueError(f"sampler: must be 'sde' or 'ode', got {sampler!r}")
    n_steps = _pos_int(n_steps, "n_steps")
    T = _pos_float(T, "T")
    dt = T / n_steps
    t0 = T - np.arange(n_steps) * dt  # the loop's T - k dt
    times = np.stack([t0, t0 - 0.5 * dt, np.maximum(t0 - dt, 0.0)], axis=1).ravel()  # each step's stage times
    mt, vt = _marginal_rows(model.m, model.v, times)
    many = getattr(beta, "many", None)
    betas = many(times) if many is not None else np.array([beta(float(t)) for t in times], dtype=np.float64)
    a = -1.0 / vt[:, 0]
    b = mt[:, 0] / vt[:, 0] + check_real_values(betas, "beta")
    _, mu, v = model.marginal(T)
    m, V = _gauss_moment_rk4(float(mu[0]), float(v[0]), dt, a.reshape(n_steps, 3), b.reshape(n_steps, 3),
                             sampler == "sde")
    return float(m), float(V)


@numba.njit(cache=True, inline="always")
def _gauss_moment_rhs(m, V, a, b, sde):
    """The moment equations' right-hand side of :func:`gaussian_refined_endpoint` (its expressions, in its order)."""
    if sde:
        return (1.0 + 2.0 * a) * m + 2.0 * b, 2.0 * (1.0 + 2.0 * a) * V + 2.0
    return (1.0 + a) * m + b, 2.0 * (1.0 + a) * V


@numba.njit(cache=True)
def _gauss_moment_rk4(m, V, dt, a, b, sde):
    r"""RK4 of :func:`gaussian_refined_endpoint`'s moment equations from ``(m, V)``: step ``k`` takes :math:`a, b` of
    its stage times from row ``k`` of ``a``, ``b`` (columns: :math:`t_0`, :math:`t_0 - dt/2` (stages 2 and 3),
    :math:`\max(t_0 - dt, 0)`); the NumPy loop's arithmetic on the pair, component by component (the same floats,
    test)."""
    h = 0.5 * dt
    h6 = dt / 6
    for k in range(a.shape[0]):
        k1m, k1v = _gauss_moment_rhs(m, V, a[k, 0], b[k, 0], sde)
        k2m, k2v = _gauss_moment_rhs(m + h * k1m, V + h * k1v, a[k, 1], b[k, 1], sde)
        k3m, k3v = _gauss_moment_rhs(m + h * k2m, V + h * k2v, a[k, 1], b[k, 1], sde)
        k4m, k4v = _gauss_moment_rhs(m + dt * k3m, V + dt * k3v, a[k, 2], b[k, 2], sde)
        m = m + h6 * (k1m + 2.0 * k2m + 2.0 * k3m + k4m)
        V = V + h6 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v)
    return m, V


def gaussian_path_kl(data: Mixture1D, model: Mixture1D, beta: Callable[[float], float], T: float = 8.0,
                     n: int = 24) -> float:
    r"""Path KL of the linear refinement for Gaussian data/model in closed form per ``t``:
    :math:`E_{p_t}(Ax+B)^2 = A^2(v_t+\mu_t^2) + 2AB\mu_t + B^2` with :math:`A = 1/\hat v_t - 1/v_t`,
    :math:`B = \mu_t/v_t - \hat\mu_t/\hat v_t - \beta(t)`; Gauss-Legendre in ``t``."""
    ts, ws = time_nodes(T, n=n)
    total = 0.0
    for ti, wi in zip(ts, ws):
        _, m, v = data.marginal(float(ti))
        _, mh, vh = model.marginal(float(ti))
        A = 1 / vh[0] - 1 / v[0]
        B = m[0] / v[0] - mh[0] / vh[0] - beta(float(ti))
        total += wi * (A * A * (v[0] + m[0] ** 2) + 2 * A * B * m[0] + B * B)
    _, m, v = data.marginal(T)
    _, mh, vh = model.marginal(T)
    return float(gaussian_kl_1d(m[0], v[0], mh[0], vh[0]) + total)


# ----------------------------------------------------------------------------------------------
# trained discriminators: random Fourier features x time hats, norm-bounded, both objectives
# ----------------------------------------------------------------------------------------------
def time_hats(t, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear hat functions on ``knots`` (increasing, 1-D) at times ``t``: shape ``(N, K)``
    (``N = 1`` for a scalar ``t``), hat ``k`` is 1 at ``knots[k]``, 0 at the other knots, constant beyond the ends."""
    return _hats(_hat_times(t), check_sorted(knots, "knots"))


def _hat_times(t) -> np.ndarray:
    """Validated times of the hats: a real number (a 0-d array) or a 1-D array of real numbers, finite."""
    t = check_real_values(t, "t")
    if t.ndim > 1:
        raise ValueError(f"t: must be a number or a 1-D array of times, got shape {t.shape}")
    return t


def _feature_arg(x: np.ndarray, omega: np.ndarray, phase: np.ndarray, name: str = "x") -> np.ndarray:
    """``x[:, None] * omega + phase`` (1-D ``x``) or ``x @ omega.T + phase`` (2-D), refused where it overflows (the
    phase added in place: one N x J array)."""
    with np.errstate(over="ignore", invalid="ignore"):
        arg = x[:, None] * omega if x.ndim == 1 else x @ omega.T
        arg += phase
    if not np.all(np.isfinite(arg)):
        raise ValueError(f"{name}: the feature argument omega * x + phase overflows float64 (|{name}| up to "
                         f"{np.max(np.abs(x)):.3g} too large)")
    return arg


def _sin_basis(x: np.ndarray, omega: np.ndarray, phase: np.ndarray) -> np.ndarray:
    r"""The :math:`\partial_x` basis :math:`-\omega_j\sin(\omega_j x_i + b_j)` ``(N, J)`` of the 1-D ``x``
    (:func:`_feature_arg`, then NumPy's ``sin`` and the product in place: the numbers of
    ``-omega * np.sin(_feature_arg(x, omega, phase))`` in one array instead of four)."""
    arg = _feature_arg(x, omega, phase)
    np.sin(arg, out=arg)
    return np.multiply(-omega, arg, out=arg)


def _hats(t, knots: np.ndarray) -> np.ndarray:
    """:func:`time_hats` without validation (``knots`` already checked, ``t`` real)."""
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    eye = np.eye(knots.size)
    return np.stack([np.interp(t, knots, eye[k]) for k in range(knots.size)], axis=-1)


class FourierLogit:
    r"""Logit family :math:`d_\phi(x,t) = \sum_{j,k}\phi_{jk}\,h_k(t)\cos(\omega_j x + b_j)` with
    piecewise-linear hats :math:`h_k` on ``knots`` (in OU time) and random frequencies
    :math:`\omega_j\sim N(0, \text{scale}^2)`.  The norm bound is imposed by a ridge penalty ``lam``
    (the Lagrangian form of :math:`\|\phi\|_2\le B`)."""

    def __init__(self, n_freq: int = 24, scale: float = 1.5, knots=(0.0, 0.05, 0.2, 0.6, 1.5, 3.0, 8.0),
                 seed: int = 0):
        n_freq = _pos_int(n_freq, "n_freq")
        scale = _pos_float(scale, "scale")
        rng = np.random.default_rng(seed)
        self.omega = scale * rng.standard_normal(n_freq)
        self.phase = rng.uniform(0, 2 * np.pi, n_freq)
        self.knots = check_sorted(knots, "knots")
        self.coef = np.zeros((n_freq, self.knots.size))

    @property
    def n_params(self) -> int:
        return self.coef.size

    def hats(self, t) -> np.ndarray:
        return _hats(_hat_times(t), self.knots)

    def features(self, x, t, deriv: int = 0) -> np.ndarray:
        """Rows: samples; columns: (j, k) features of d (deriv=0), of dd/dx (1) or d2d/dx2 (2)."""
        x = np.atleast_1d(check_real_values(x, "x"))
        if x.ndim != 1:
            raise ValueError(f"x: must be a number or a 1-D array, got shape {x.shape}")
        H = self.hats(t)
        if H.shape[0] == 1 and x.size > 1:
            H = np.broadcast_to(H, (x.size, H.shape[1]))
        if H.shape[0] != x.size:
            raise ValueError(f"t: expected a scalar or {x.size} times (one per point), got {H.shape[0]}")
        arg = _feature_arg(x, self.omega, self.phase)
        if deriv == 0:
            F = np.cos(arg)
        elif deriv == 1:
            F = -self.omega * np.sin(arg)
        else:
            F = -self.omega ** 2 * np.cos(arg)
        return (F[:, :, None] * H[:, None, :]).reshape(x.size, -1)

    def _eval(self, x, t, deriv: int) -> np.ndarray:
        t = _hat_times(t)
        if t.ndim == 0:  # one time: contract the time hats first (N x J work)
            xa = check_real_values(x, "x")
            c = self.coef @ _hats(t, self.knots)[0]
            xr = np.ascontiguousarray(xa.ravel())
            sn, cs, ok = _sincos_tables(xr, self.omega, self.phase)
            if not ok[0]:
                _feature_arg(xr, self.omega, self.phase)  # raises the ValueError naming x
            return _fourier_contract(sn, cs, self.omega, c, deriv).reshape(xa.shape)
        return self.features(x, t, deriv) @ self.coef.ravel()

    def grad(self, x, t) -> np.ndarray:
        r""":math:`\partial_x d_\phi(x, t)`."""
        return self._eval(x, t, 1)

    def grad2(self, x, t) -> np.ndarray:
        r""":math:`\partial_x^2 d_\phi(x, t)`."""
        return self._eval(x, t, 2)

    def logit(self, x, t) -> np.ndarray:
        r""":math:`d_\phi(x, t)`."""
        return self._eval(x, t, 0)


def _noisy(x0: np.ndarray, rng: np.random.Generator, T: float, t_min: float):
    t = rng.uniform(t_min, T, x0.size)
    a = np.exp(-t)
    s2 = -np.expm1(-2 * t)
    z = rng.standard_normal(x0.size)
    return a * x0 + np.sqrt(s2) * z, t, -z / np.sqrt(s2)


def fit_logit_gm(fam: FourierLogit, real: np.ndarray, model: Mixture1D, rng: np.random.Generator,
                 T: float = 8.0, lam: float = 1e-3, t_min: float = 1e-2, repeats: int = 4,
                 target: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None) -> FourierLogit:
    r"""Gradient matching (the proposed objective, :math:`\lambda = g^2/2 = 1`, ``t`` uniform on
    ``[t_min, T]``): least squares of :math:`\nabla\log p(x_t|x_0) - s_\theta(x_t)` on
    :math:`\nabla_x d_\phi(x_t,t)`, ``repeats`` noise draws per real sample, ridge ``lam``:

    .. math:: \phi = \Big(\tfrac1N F^\top F + \lambda I\Big)^{-1}\tfrac1N F^\top(a - s_\theta(x_t)),
       \qquad a = \nabla\log p(x_t|x_0) = -\frac{x_t - \alpha_t x_0}{\sigma_t^2} = -\frac{z}{\sigma_t},

    with :math:`F` the rows of :math:`\partial_x` features at :math:`(x_t, t)`, accumulated by hat interval
    (:func:`_hat_interval_design`: a row has 2J of the JK features nonzero, so :math:`F^\top F` costs 2J x 2J
    per row instead of JK x JK).

    ``target``, if given, replaces :math:`a` by ``target(x_t, x_0, t)`` (same noise draws, same random stream):
    the hook for other regression targets (the claims use it for a target with a dropped :math:`\alpha_t`).
    Fits ``fam`` in place and returns it (:func:`fit_logit_gm_targets` with the one target)."""
    return fit_logit_gm_targets(fam, real, model, rng, T, lam, t_min, repeats, (target,))[0]


def fit_logit_gm_targets(fam: FourierLogit, real: np.ndarray, model: Mixture1D, rng: np.random.Generator,
                         T: float = 8.0, lam: float = 1e-3, t_min: float = 1e-2, repeats: int = 4,
                         targets: tuple = (None,)) -> list[FourierLogit]:
    r""":func:`fit_logit_gm` for each of ``targets`` (``None``: :math:`a`) on the same noise draws: one design and one
    Gram matrix :math:`F^\top F`, a right-hand side per target,

    .. math:: \phi^{(k)} = \Big(\tfrac1N F^\top F + \lambda I\Big)^{-1}\tfrac1N F^\top(a^{(k)} - s_\theta(x_t)),

    each summed and solved as :func:`fit_logit_gm` does for that target alone (the same floats, tests).  The first
    fit is ``fam`` (in place), the others shallow copies of it with their own coefficients."""
    lam = _pos_float(lam, "lam", allow_zero=True)
    real = np.asarray(real, dtype=np.float64).ravel()
    if real.size == 0:
        raise ValueError("real: needs at least one sample")
    x0 = np.repeat(real, repeats)
    p = fam.n_params
    A = np.zeros((p, p))
    rs = [np.zeros(p) for _ in targets]
    for chunk in np.array_split(np.arange(x0.size), max(1, x0.size // 20000)):
        xt, t, a = _noisy(x0[chunk], rng, T, t_min)
        _, m, v = _marg_arrays(model, t)
        score = _mixture_score_vec(xt, model.w, m, v)
        res = [(a if f is None else check_real_values(f(xt, x0[chunk], t), "target")) - score for f in targets]
        for b in _hat_interval_design(None, fam.hats(t), fam.knots, t, cos_of=(xt, fam.omega, fam.phase), deriv=1):
            A[np.ix_(b.cols, b.cols)] += b.G.T @ b.G
            for r, rk in zip(rs, res):
                r[b.cols] += b.G.T @ rk[b.rows]
    n = x0.size
    M = A / n + lam * np.eye(p)
    fits = [fam] + [copy.copy(fam) for _ in targets[1:]]
    for f, r in zip(fits, rs):
        f.coef = np.linalg.solve(M, r / n).reshape(fam.coef.shape)
    return fits


def _marg_arrays(mix: Mixture1D, t: np.ndarray):
    a = np.exp(-t)[:, None]
    return mix.w, mix.m * a, mix.v * a * a - np.expm1(-2 * t)[:, None]


def _mixture_score_vec(x, w, m, v):
    """Score at per-sample times: m, v have shape (N, K)."""
    lc = np.log(w) - 0.5 * np.log(v) - 0.5 * (x[:, None] - m) ** 2 / v
    lc -= lc.max(axis=1, keepdims=True)
    pi = np.exp(lc)
    pi /= pi.sum(axis=1, keepdims=True)
    return np.sum(pi * (-(x[:, None] - m) / v), axis=1)


def fit_logit_ce(fam: FourierLogit, real: np.ndarray, fake: np.ndarray, rng: np.random.Generator,
                 T: float = 8.0, lam: float = 1e-3, t_min: float = 1e-2, repeats: int = 4,
                 maxiter: int = 100) -> FourierLogit:
    r"""Cross-entropy (DG's objective): logistic regression of noised real (label 1) against noised
    model samples (label 0), ``t`` uniform on ``[t_min, T]``, classes weighted equally, ridge ``lam``:

    .. math:: \min_\phi\ \sum_i w_i\big[y_i\,\mathrm{softplus}(-d_i) + (1-y_i)\,\mathrm{softplus}(d_i)\big]
       + \tfrac\lambda2\|\phi\|^2, \qquad d_i = F_i\phi,

    convex, solved by damped Newton (:func:`_newton_logistic`, at most ``maxiter`` iterations) on the design
    stored by hat interval (:func:`_hat_interval_design`)."""
    lam = _pos_float(lam, "lam", allow_zero=True)
    maxiter = _pos_int(maxiter, "maxiter")
    real = np.asarray(real, dtype=np.float64).ravel()
    fake = np.asarray(fake, dtype=np.float64).ravel()
    if real.size == 0 or fake.size == 0:
        raise ValueError("real, fake: need at least one sample each")
    xr, tr, _ = _noisy(np.repeat(real, repeats), rng, T, t_min)
    xf, tf, _ = _noisy(np.repeat(fake, repeats), rng, T, t_min)
    x, t = np.concatenate([xr, xf]), np.concatenate([tr, tf])
    blocks = _hat_interval_design(None, fam.hats(t), fam.knots, t, cos_of=(x, fam.omega, fam.phase))
    y = np.concatenate([np.ones(xr.size), np.zeros(xf.size)])
    wts = np.concatenate([np.full(xr.size, 0.5 / xr.size), np.full(xf.size, 0.5 / xf.size)])
    fam.coef = _newton_logistic(blocks, y, wts, lam, fam.n_params, maxiter).reshape(fam.coef.shape)
    return fam


class _DesignBlock(NamedTuple):
    rows: np.ndarray  # the samples whose time lies in this hat interval
    G: np.ndarray  # their nonzero features, shape (rows.size, cols.size)
    cols: np.ndarray  # the parameters those features belong to


def _hat_interval_design(basis: np.ndarray | None, H: np.ndarray, knots: np.ndarray, t: np.ndarray,
                         cos_of: tuple | None = None, deriv: int = 0) -> list[_DesignBlock]:
    r"""The design :math:`F_{i,(j,k)} = f_j(x_i)\,h_k(t_i)` (column ``j*K + k``, as ``features`` of the logit
    families) stored by hat interval, from the spatial ``basis`` (N, J) and the hats ``H`` (N, K) on ``knots``.
    A time in :math:`[k_g, k_{g+1}]` has only the hats :math:`h_g, h_{g+1}` nonzero (piecewise-linear hats), so
    its row is :math:`(f_j(x)\,h_g(t),\ f_j(x)\,h_{g+1}(t))_j` on the columns :math:`(j, g), (j, g + 1)`:
    ``F[rows][:, cols] == G`` and ``F[rows]`` is zero elsewhere (2J of JK columns).  The blocks' ``G`` are consecutive
    row ranges of one array (:func:`_hat_blocks`), which :func:`_newton_logistic` passes over without a copy.

    ``cos_of = (x, omega, phase)`` (with ``basis`` None): the basis :math:`f_j(x) = \cos(\omega_j x + b_j)` computed
    row by row in the same pass (the numbers of ``np.cos(_feature_arg(x, omega, phase))``, no N x J temporaries;
    its ValueError where the argument overflows); with ``deriv`` 1 the basis :math:`f_j(x) = -\omega_j\sin(\omega_j x
    + b_j)` (the numbers of :func:`_sin_basis`)."""
    K = knots.size
    interval = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, K - 2)
    order = np.argsort(interval, kind="stable")  # each interval's rows in increasing order, intervals in order
    sizes = np.bincount(interval, minlength=K - 1)
    H = np.ascontiguousarray(H, dtype=np.float64)
    serial = order.size < _SERIAL_ROWS
    if cos_of is None:
        J = basis.shape[1]
        G, other = _dynamic(_hat_blocks_serial if serial else _hat_blocks,
                            np.ascontiguousarray(basis, dtype=np.float64), H, order, interval)
    else:
        x, omega, phase = (np.ascontiguousarray(a, dtype=np.float64) for a in cos_of)
        J = omega.size
        G, other, ok = _dynamic(_cos_hat_blocks_serial if serial else _cos_hat_blocks, x, omega, phase, H, order,
                                interval, deriv)
        if not ok:
            _feature_arg(x, omega, phase)  # raises the ValueError naming x
    if other:  # never for np.interp hats: guards a change of _hats
        raise AssertionError("time hats: more than two nonzero hats on one knot interval")
    blocks, start = [], 0
    for g in range(K - 1):
        m = int(sizes[g])
        if m == 0:
            continue
        blocks.append(_DesignBlock(order[start:start + m], G[start:start + m],
                                   np.concatenate([np.arange(J) * K + g, np.arange(J) * K + g + 1])))
        start += m
    return blocks


#: Rows per chunk of :func:`_hat_blocks` (fixed: the threads only share out the chunks).
_DESIGN_CHUNK = 4096
#: Designs of fewer rows are built and passed over on the calling thread (:func:`_hat_blocks_serial`,
#: :func:`_newton_pass_serial`; the same chunks and order, so the same numbers): starting the thread team costs more
#: there than it saves (a Newton pass on 400 rows: 0.2 ms of CPU serial, 4.5-7.5 ms on two threads at load 16-20).
_SERIAL_ROWS = 8192


@numba.njit(cache=True)
def _hat_row(G, r, f, H, i, g):
    """Row ``r`` of the stacked design: ``G[r] = (f * H[i, g], f * H[i, g + 1])`` for the basis row ``f`` of sample
    ``i``; True where a hat but ``g, g + 1`` is nonzero (or NaN) at ``i``."""
    J, K = f.size, H.shape[1]
    other = False
    for k in range(K):
        if k != g and k != g + 1 and H[i, k] != 0.0:
            other = True
    a, b = H[i, g], H[i, g + 1]
    for j in range(J):
        G[r, j] = f[j] * a
        G[r, J + j] = f[j] * b
    return other


@numba.njit(cache=True)
def _hat_chunk(basis, H, order, interval, G, c):
    """Rows of chunk ``c`` of :func:`_hat_blocks` (:func:`_hat_row` each); True where one has another nonzero hat."""
    other = False
    for r in range(c * _DESIGN_CHUNK, min(order.size, (c + 1) * _DESIGN_CHUNK)):
        i = order[r]
        if _hat_row(G, r, basis[i], H, i, interval[i]):
            other = True
    return other


@numba.njit(cache=True)
def _cos_hat_chunk(x, omega, phase, H, order, interval, G, c, f, deriv):
    r"""Rows of chunk ``c`` of :func:`_cos_hat_blocks`, each row's basis :math:`\cos(\omega_j x_i + b_j)` (``deriv``
    0) or :math:`-\omega_j\sin(\omega_j x_i + b_j)` (1) computed into the work row ``f`` first; ``(other, finite)``."""
    other, finite = False, True
    for r in range(c * _DESIGN_CHUNK, min(order.size, (c + 1) * _DESIGN_CHUNK)):
        i = order[r]
        for j in range(omega.size):
            a = x[i] * omega[j] + phase[j]
            if not np.isfinite(a):
                finite = False
            f[j] = np.cos(a) if deriv == 0 else -omega[j] * np.sin(a)
        if _hat_row(G, r, f, H, i, interval[i]):
            other = True
    return other, finite


@numba.njit(cache=True)
def _flags_any(flags):
    """Any of the boolean ``flags`` (a plain loop: no parallel reduction)."""
    for v in flags:
        if v:
            return True
    return False


@numba.njit(cache=True, parallel=True)
def _hat_blocks(basis, H, order, interval):
    r"""The blocks of :func:`_hat_interval_design`, compiled and stacked: row ``r`` of ``G`` (the sample
    ``i = order[r]``, of hat interval ``g = interval[i]``) is ``(basis[i] * H[i, g], basis[i] * H[i, g + 1])`` (NumPy's
    products, one pass, no temporaries; :func:`_hat_row`), and ``other``: some hat but ``g, g + 1`` is nonzero (or
    NaN) on a row.  The chunks of :data:`_DESIGN_CHUNK` rows run over the Numba threads (each writes only its own
    rows: the same for any thread count); :func:`_hat_interval_design` runs designs below :data:`_SERIAL_ROWS` rows
    through :func:`_hat_blocks_serial` instead (the same numbers, no thread start-up)."""
    n = order.size
    G = np.empty((n, 2 * basis.shape[1]))
    n_chunks = (n + _DESIGN_CHUNK - 1) // _DESIGN_CHUNK
    bad = np.empty(n_chunks, dtype=np.bool_)
    for c in numba.prange(n_chunks):
        bad[c] = _hat_chunk(basis, H, order, interval, G, c)
    return G, _flags_any(bad)


@numba.njit(cache=True)
def _hat_blocks_serial(basis, H, order, interval):
    """:func:`_hat_blocks` on the calling thread."""
    n = order.size
    G = np.empty((n, 2 * basis.shape[1]))
    other = False
    for c in range((n + _DESIGN_CHUNK - 1) // _DESIGN_CHUNK):
        other = _hat_chunk(basis, H, order, interval, G, c) or other
    return G, other


@numba.njit(cache=True, parallel=True)
def _cos_hat_blocks(x, omega, phase, H, order, interval, deriv=0):
    r""":func:`_hat_blocks` of the basis :math:`\cos(\omega_j x_i + b_j)` (``deriv`` 0) or
    :math:`-\omega_j\sin(\omega_j x_i + b_j)` (1), each row's basis computed in the pass (the arithmetic of
    ``np.cos(_feature_arg(x, omega, phase))``, of :func:`_sin_basis`; Numba's cos and sin are libm's, which NumPy's
    equal bit for bit here: tests).  Returns ``(G, other, ok)``, ``ok``: every argument finite."""
    n, J = order.size, omega.size
    G = np.empty((n, 2 * J))
    n_chunks = (n + _DESIGN_CHUNK - 1) // _DESIGN_CHUNK
    bad = np.empty(n_chunks, dtype=np.bool_)
    inf = np.empty(n_chunks, dtype=np.bool_)
    f = np.empty((n_chunks, J))  # each chunk's basis row
    for c in numba.prange(n_chunks):
        other, finite = _cos_hat_chunk(x, omega, phase, H, order, interval, G, c, f[c], deriv)
        bad[c], inf[c] = other, not finite
    return G, _flags_any(bad), not _flags_any(inf)


@numba.njit(cache=True)
def _cos_hat_blocks_serial(x, omega, phase, H, order, interval, deriv=0):
    """:func:`_cos_hat_blocks` on the calling thread."""
    n, J = order.size, omega.size
    G = np.empty((n, 2 * J))
    f = np.empty(J)
    other, ok = False, True
    for c in range((n + _DESIGN_CHUNK - 1) // _DESIGN_CHUNK):
        o, finite = _cos_hat_chunk(x, omega, phase, H, order, interval, G, c, f, deriv)
        other, ok = other or o, ok and finite
    return G, other, ok


#: Rows per chunk of :func:`_newton_pass` (a block's rows are cut into chunks of this many, the last shorter): the
#: chunks are fixed by the block sizes alone, so the partial sums and their reduction are the same for any number of
#: Numba threads.
_NEWTON_CHUNK = 2048


def _stacked_design(blocks: list[_DesignBlock]) -> np.ndarray:
    """The blocks' ``G`` stacked in block order, ``(N, 2J)``: the array they are views of when
    :func:`_hat_interval_design` built them (no copy), else a concatenation."""
    base = blocks[0].G.base
    n = sum(b.G.shape[0] for b in blocks)
    if base is not None and base.ndim == 2 and base.shape == (n, blocks[0].G.shape[1]) and base.flags.c_contiguous:
        step, ptr = base.strides[0], base.__array_interface__["data"][0]
        for b in blocks:
            if b.G.base is not base or b.G.__array_interface__["data"][0] != ptr:
                break
            ptr += b.G.shape[0] * step
        else:
            return base
    return np.ascontiguousarray(np.concatenate([b.G for b in blocks]), dtype=np.float64)


def _newton_chunks(sizes: list[int]) -> np.ndarray:
    """``(start, end, block)`` rows of the chunks of :func:`_newton_pass`: each block's rows (consecutive in the
    stacked design, block sizes ``sizes``) cut into chunks of :data:`_NEWTON_CHUNK` rows."""
    out, start = [], 0
    for g, m in enumerate(sizes):
        for lo in range(start, start + m, _NEWTON_CHUNK):
            out.append((lo, min(lo + _NEWTON_CHUNK, start + m), g))
        start += m
    return np.array(out, dtype=np.int64).reshape(-1, 3)


@numba.njit(cache=True)
def _softplus1(z):
    r""":math:`\mathrm{softplus}(z) = \log(1 + e^z)` as NumPy's ``logaddexp(0, z)`` computes it:
    :math:`\max(0, z) + \mathrm{log1p}(e^{-|z|})` (:math:`\log 2` at 0)."""
    if z == 0.0:
        return math.log(2.0)
    if z < 0.0:
        return math.log1p(math.exp(z))
    return z + math.log1p(math.exp(-z))


@numba.njit(cache=True)
def _neumaier(s, c, t):
    r"""One step of Neumaier's compensated sum: returns ``(s + t, c + the rounding error of s + t)``; the total is
    ``s + c`` at the end, within :math:`2u|\sum t_i| + O(m u^2)\sum|t_i|` of the exact sum of ``m`` terms
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 4.3)."""
    u = s + t
    if abs(s) >= abs(t):
        c += (s - u) + t
    else:
        c += (t - u) + s
    return u, c


@numba.njit(cache=True)
def _newton_chunk(G, lo, hi, cb, y, wts, d, gp, hp):
    r"""One chunk (rows ``lo:hi`` of the stacked design ``G``, block coefficients ``cb``) of :func:`_newton_pass`:
    writes the logits ``d[lo:hi]``, the chunk's gradient :math:`\sum_i G_i w_i(\sigma(d_i) - y_i)` into ``gp`` and
    its curvature :math:`\sum_i (G_{ia}\,w_i\sigma(d_i)\sigma(-d_i))\,G_{ib}` into ``hp``
    (both zeroed here; rows summed in order, the loops over the columns innermost); returns the chunk's loss
    :math:`\sum_i w_i\,\mathrm{softplus}(\mp d_i)` as a compensated (Neumaier) sum ``(sum, compensation)``
    (:func:`_neumaier`): the Armijo test of :func:`_newton_logistic` compares losses whose difference near the
    minimum is far below a plain running sum's rounding (up to :math:`m u\sum_i|t_i|` for ``m`` rows, about
    1e-12 at m = 2048), which stalled the line search at the rounding floor.

    The rows go in groups of :data:`_NEWTON_ROWS` (:func:`_newton_rows8`): each sum entry is read and written once
    per group and the group's terms are added to it one row after the other, in row order, as
    ``((h + t_0) + t_1) + ...`` (no reassociation without fastmath): the same additions in the same order as one row
    at a time, so the same floats (test: against the one-row loop), with an eighth of the loads and stores of the
    sums (one pass at n = 1e5, one thread: 0.113 -> 0.088 s of CPU, 2026-12-06, shared machine)."""
    P = G.shape[1]
    gp[:] = 0.0
    hp[:] = 0.0
    loss = 0.0
    comp = 0.0
    sc = np.empty((_NEWTON_ROWS, P))  # the group's rows G_i * curv_i
    r = np.empty(_NEWTON_ROWS)  # the group's w_i (sigma(d_i) - y_i)
    i = lo
    while i < hi:
        m = min(_NEWTON_ROWS, hi - i)
        for q in range(m):
            loss, comp = _newton_row(G, i + q, cb, y, wts, d, loss, comp, sc[q], r, q)
        if m == _NEWTON_ROWS:
            _newton_rows8(G, i, sc, r, gp, hp)
        else:
            for q in range(m):
                _newton_rows1(G, i + q, sc[q], r[q], gp, hp)
        i += m
    return loss + comp


#: Rows per group of :func:`_newton_chunk` (fixed: :func:`_newton_rows8` is written for eight).
_NEWTON_ROWS = 8


@numba.njit(cache=True, inline="always")
def _newton_row(G, i, cb, y, wts, d, loss, comp, sc, r, q):
    r"""Row ``i`` of :func:`_newton_chunk`: its logit ``d[i]``, the loss with its term added (:func:`_neumaier`),
    ``sc`` :math:`= G_i\,w_i\sigma(d_i)\sigma(-d_i)` and ``r[q]`` :math:`= w_i(\sigma(d_i) - y_i)`; returns
    ``(loss, comp)``."""
    P = G.shape[1]
    acc = 0.0
    for a in range(P):
        acc += G[i, a] * cb[a]
    d[i] = acc
    loss, comp = _neumaier(loss, comp, wts[i] * (_softplus1(-acc) if y[i] > 0 else _softplus1(acc)))
    e = math.exp(-abs(acc))
    sig = 1.0 / (1.0 + e) if acc >= 0 else e / (1.0 + e)
    curv = wts[i] * e / (1.0 + e) ** 2  # w sigma(d) sigma(-d), without cancellation
    r[q] = wts[i] * (sig - y[i])
    for a in range(P):
        sc[a] = G[i, a] * curv
    return loss, comp


@numba.njit(cache=True, inline="always")
def _newton_rows8(G, i, sc, r, gp, hp):
    """Rows ``i, ..., i + 7`` added to the gradient ``gp`` and the curvature ``hp``, each entry as
    ``((h + t_i) + t_{i+1}) + ... + t_{i+7}``: the one-row loop's additions in its order."""
    P = G.shape[1]
    r0, r1, r2, r3, r4, r5, r6, r7 = r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
    for a in range(P):
        gp[a] = (((((((gp[a] + G[i, a] * r0) + G[i + 1, a] * r1) + G[i + 2, a] * r2) + G[i + 3, a] * r3)
                   + G[i + 4, a] * r4) + G[i + 5, a] * r5) + G[i + 6, a] * r6) + G[i + 7, a] * r7
    for a in range(P):
        s0, s1, s2, s3, s4, s5, s6, s7 = sc[0, a], sc[1, a], sc[2, a], sc[3, a], sc[4, a], sc[5, a], sc[6, a], sc[7, a]
        for b in range(P):
            hp[a, b] = (((((((hp[a, b] + s0 * G[i, b]) + s1 * G[i + 1, b]) + s2 * G[i + 2, b]) + s3 * G[i + 3, b])
                          + s4 * G[i + 4, b]) + s5 * G[i + 5, b]) + s6 * G[i + 6, b]) + s7 * G[i + 7, b]


@numba.njit(cache=True, inline="always")
def _newton_rows1(G, i, sc, r, gp, hp):
    """Row ``i`` added to the gradient ``gp`` and the curvature ``hp`` (the remainder of a chunk)."""
    P = G.shape[1]
    for a in range(P):
        gp[a] += G[i, a] * r
    for a in range(P):
        s = sc[a]
        for b in range(P):
            hp[a, b] += s * G[i, b]


@numba.njit(cache=True, parallel=True)
def _newton_pass(G, chunks, C, y, wts, n_blocks):
    r"""Logits, loss, gradient and curvature of :func:`_newton_logistic` at the block coefficients ``C`` (row ``g``:
    block ``g``'s 2J parameters) in one pass over the stacked design ``G`` (rows in block order; ``y``, ``wts`` in
    the same order).  Returns ``(d, loss, grad, hess)``: the logits, :math:`\sum_i w_i\,\mathrm{softplus}(\mp d_i)`,
    per block :math:`G^\top w(\sigma(d) - y)` ``(n_blocks, 2J)`` and :math:`G^\top\mathrm{diag}(w\sigma(d)\sigma(-d))G`
    ``(n_blocks, 2J, 2J)``.  The chunks (:func:`_newton_chunks`) run over the Numba threads, each writing only its
    own rows and partial sums; the partial sums are then added in chunk order (:func:`_newton_reduce`: the same
    numbers for any thread count, and as :func:`_newton_pass_serial`)."""
    nch, P = chunks.shape[0], G.shape[1]
    d = np.empty(G.shape[0])
    lossp, gp, hp = np.empty(nch), np.empty((nch, P)), np.empty((nch, P, P))
    for c in numba.prange(nch):
        lossp[c] = _newton_chunk(G, chunks[c, 0], chunks[c, 1], C[chunks[c, 2]], y, wts, d, gp[c], hp[c])
    return _newton_reduce(d, lossp, gp, hp, chunks, n_blocks)


@numba.njit(cache=True)
def _newton_pass_serial(G, chunks, C, y, wts, n_blocks):
    """:func:`_newton_pass` on the calling thread (designs below :data:`_SERIAL_ROWS` rows)."""
    nch, P = chunks.shape[0], G.shape[1]
    d = np.empty(G.shape[0])
    lossp, gp, hp = np.empty(nch), np.empty((nch, P)), np.empty((nch, P, P))
    for c in range(nch):
        lossp[c] = _newton_chunk(G, chunks[c, 0], chunks[c, 1], C[chunks[c, 2]], y, wts, d, gp[c], hp[c])
    return _newton_reduce(d, lossp, gp, hp, chunks, n_blocks)


@numba.njit(cache=True)
def _newton_reduce(d, lossp, gp, hp, chunks, n_blocks):
    """The chunks' partial loss, gradients and curvatures of :func:`_newton_pass` added in chunk order, per block:
    ``(d, loss, grad, hess)`` (the loss by :func:`_neumaier`'s compensated sum)."""
    P = gp.shape[1]
    loss = 0.0
    comp = 0.0
    grad = np.zeros((n_blocks, P))
    hess = np.zeros((n_blocks, P, P))
    for c in range(chunks.shape[0]):
        g = chunks[c, 2]
        loss, comp = _neumaier(loss, comp, lossp[c])
        for a in range(P):
            grad[g, a] += gp[c, a]
            for b in range(P):
                hess[g, a, b] += hp[c, a, b]
    return d, loss + comp, grad, hess


def _newton_logistic(blocks: list[_DesignBlock], y: np.ndarray, wts: np.ndarray, lam: float, n_params: int,
                     maxiter: int) -> np.ndarray:
    r"""Minimiser of the weighted, ridge-penalised logistic loss of :func:`fit_logit_ce` (and of the 2-D
    family's fit) by damped Newton:

    .. math:: \nabla = F^\top w(\sigma(d) - y) + \lambda\phi, \qquad
       \nabla^2 = F^\top\mathrm{diag}\big(w\,\sigma(d)\sigma(-d)\big)F + \lambda I,

    step :math:`p = -(\nabla^2)^{-1}\nabla`, halved until the loss decreases by Armijo's rule (1e-4); stops when
    half the Newton decrement :math:`-\nabla\cdot p/2` (the predicted loss decrease, which bounds the distance
    to the minimum for this self-concordant-like loss) is below 1e-20, when no step lowers the loss (rounding
    floor), or after ``maxiter`` iterations.

    The logits, the loss and the block sums of :math:`\nabla` and :math:`\nabla^2` at a point come from one compiled
    pass over the stacked design (:func:`_newton_pass`; the gradient and curvature of a trial point are kept for the
    next iteration when the step is accepted).  Its sums run over fixed chunks of rows in a fixed order, not in
    BLAS's order: each entry of a block sum of ``m`` rows differs from the exact sum by at most
    :math:`\gamma_{m'}\sum_i|G_{ia}||w_i c_i||G_{ib}|` with :math:`m' = ` :data:`_NEWTON_CHUNK` + (number of chunks)
    and :math:`\gamma_k = ku/(1 - ku)`, :math:`u = 2^{-53}` (BLAS's product has the same kind of bound with its own
    order), so the fit moves by rounding only (tests: against the dense design's products)."""
    G = _stacked_design(blocks)
    rows = np.concatenate([b.rows for b in blocks])
    ys, ws = np.ascontiguousarray(y[rows], dtype=np.float64), np.ascontiguousarray(wts[rows], dtype=np.float64)
    chunks = _newton_chunks([b.rows.size for b in blocks])
    cols = np.array([b.cols for b in blocks])

    kernel = _newton_pass_serial if G.shape[0] < _SERIAL_ROWS else _newton_pass

    def evaluate(c):
        return _dynamic(kernel, G, chunks, np.ascontiguousarray(c[cols]), ys, ws, len(blocks))

    c = np.zeros(n_params)
    _, f, gsum, hsum = evaluate(c)
    f = float(f + 0.5 * lam * (c @ c))
    for _ in range(maxiter):
        grad = lam * c
        hess = lam * np.eye(n_params)
        for k, b in enumerate(blocks):
            grad[b.cols] += gsum[k]
            hess[np.ix_(b.cols, b.cols)] += hsum[k]
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:  # lam = 0 on a rank-deficient design
            step = -np.linalg.lstsq(hess, grad, rcond=None)[0]
        slope = float(grad @ step)
        if -slope / 2.0 <= 1e-20:
            break
        for _ in range(60):
            c_new = c + step
            _, f_new, g_new, h_new = evaluate(c_new)
            f_new = float(f_new + 0.5 * lam * (c_new @ c_new))
            if f_new <= f + 1e-4 * slope:
                break
            step = step / 2.0
            slope = slope / 2.0
        else:
            break  # no decrease representable: at the minimum to rounding
        c, f, gsum, hsum = c_new, f_new, g_new, h_new
    return c


class FeatureField:
    r"""Refined score :math:`c\,(s_\theta + w\,\nabla_x d_\phi)` of a trained :class:`FourierLogit` (``scale``
    :math:`c = 1` but in a control that scales the drift's score), a :class:`Field`: ``field(x, t)`` returns
    :math:`(s, \partial_x s)` by NumPy.  :func:`ode_endpoint` recognises it and runs the whole RK4 transport in
    one compiled loop (:func:`_ode_feature_kernel`) on the same times and the same arithmetic, with the
    features' :math:`\sin, \cos` by :func:`_sincos1` (within 1 ulp of NumPy's); :func:`sde_endpoint` takes the
    scores of all its steps at once (:meth:`score_table`)."""

    def __init__(self, model: Mixture1D, fam: FourierLogit, w: float = 1.0, scale: float = 1.0):
        self.model, self.fam, self.w, self.scale = model, fam, float(w), float(scale)
        self._cache: dict = {}

    def scaled(self, factor: float) -> "FeatureField":
        """The field times ``factor`` (its score and derivative both)."""
        return FeatureField(self.model, self.fam, self.w, self.scale * float(factor))

    def __call__(self, x, t):
        sq, dsq = self.model.score_and_derivative(x, t)
        xa = np.asarray(x, dtype=np.float64)
        fam, cache = self.fam, self._cache
        if cache.get("x") is not xa:  # the SDE solver reuses one face array: features computed once
            arg = xa.ravel()[:, None] * fam.omega + fam.phase
            cache.update(x=xa, F1=-fam.omega * np.sin(arg), F2=-fam.omega ** 2 * np.cos(arg))
        c = fam.coef @ fam.hats(float(t))[0]
        g1, g2 = cache["F1"] @ c, cache["F2"] @ c
        s, ds = sq + self.w * g1.reshape(xa.shape), dsq + self.w * g2.reshape(xa.shape)
        return (s, ds) if self.scale == 1.0 else (self.scale * s, self.scale * ds)

    def score_table(self, x: np.ndarray, times: np.ndarray) -> np.ndarray:
        r"""The score :math:`s` of ``field(x, t)`` at the 1-D ``x`` for each of ``times`` (row ``i``: ``times[i]``):
        the model score by :func:`_mix_score_rows` (every row, over the Numba threads; memoised on its exact inputs by
        :func:`_model_score_rows`: every fit's SDE on one grid shares it), the features
        :math:`-\omega_j\sin(\omega_j x + b_j)` once, contracted with every row of :meth:`tables`' coefficients in
        one product."""
        coef, logw, m, v = self.tables(times)
        fam = self.fam
        F1 = _sin_basis(x, fam.omega, fam.phase)
        sq = _model_score_rows(np.ascontiguousarray(x, dtype=np.float64), logw, m, v)
        return self.scale * (sq + self.w * (coef @ F1.T))

    def tables(self, times: np.ndarray) -> tuple[np.ndarray, ...]:
        r"""Everything of the field that does not depend on ``x``, at each of ``times`` (1-D): the hat-contracted
        coefficients :math:`c_j(t) = \sum_k\phi_{jk}h_k(t)` (rows), the model's log weights and its marginal
        means and variances (rows: :meth:`Mixture1D.marginal`'s formula, vectorised)."""
        fam = self.fam
        coef = np.ascontiguousarray(_hats(times, fam.knots) @ fam.coef.T)
        w, m, v = _marg_arrays(self.model, times)
        return coef, np.log(w), m, v


#: The model-score tables of :func:`_model_score_rows`.
_MODEL_ROWS = _Memo(4)


def _model_score_rows(x: np.ndarray, logw: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """:func:`_mix_score_rows` (threaded, dynamic schedule), memoised on the exact inputs (:class:`_Memo`;
    read-only)."""
    return _MODEL_ROWS.get((x, logw, m, v), lambda: _dynamic(_mix_score_rows, x, logw, m, v))


def feature_field(model: Mixture1D, fam: FourierLogit, w: float = 1.0) -> FeatureField:
    r"""Refined score :math:`s_\theta + w\,\nabla_x d_\phi` of a trained :class:`FourierLogit`
    (a :class:`FeatureField`)."""
    return FeatureField(model, fam, w)


# fdlibm's split of pi/2 (three 33-bit parts and a tail: k * part is exact for |k| < 2**20) and its minimax
# polynomials of sin and cos on [-pi/4, pi/4] (__kernel_sin, __kernel_cos)
_PIO2_1, _PIO2_2 = 1.57079632673412561417e+00, 6.07710050630396597660e-11
_PIO2_3, _PIO2_3T = 2.02226624871116645580e-21, 8.47842766036889956997e-32
_TWO_OVER_PI = 6.36619772367581382433e-01
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1, _C2, _C3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4, _C5, _C6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11
#: Largest |argument| of the polynomial path of :func:`_sincos` (beyond: libm's sin and cos).
_SINCOS_MAX = 1e5


@numba.njit(cache=True)
def _sincos1(a):
    r"""``(sin a, cos a)`` for :math:`|a| \le` :data:`_SINCOS_MAX`: Cody-Waite reduction :math:`a = k\pi/2 + r`,
    :math:`|r| \le \pi/4` (``k`` rounded, :math:`\pi/2` in three exact 33-bit parts and a tail), fdlibm's
    polynomials of :math:`\sin r, \cos r`, the quadrant ``k mod 4`` by selects (no branch: loops over it vectorise).
    Within 1 ulp of libm (tests)."""
    k = np.floor(a * _TWO_OVER_PI + 0.5)
    r = ((a - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3 - k * _PIO2_3T
    z = r * r
    sr = r + z * r * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    cr = 1.0 - (0.5 * z - z * (z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))))
    q = np.int64(k) & 3
    odd = (q & 1) == 1
    return (cr if odd else sr) * (1.0 - (q & 2)), (sr if odd else cr) * (1.0 - ((q + 1) & 2))


@numba.njit(cache=True)
def _sincos(arg, sn, cs):
    """``sn[j], cs[j] = sin(arg[j]), cos(arg[j])`` by :func:`_sincos1`; any :math:`|a| >` :data:`_SINCOS_MAX` or
    NaN sends the whole row to libm."""
    big = 0.0
    for j in range(arg.size):
        big = max(big, abs(arg[j]))
    fast = big <= _SINCOS_MAX
    for j in range(arg.size):
        if fast:
            sn[j], cs[j] = _sincos1(arg[j])
        else:
            sn[j], cs[j] = np.sin(arg[j]), np.cos(arg[j])


@numba.njit(cache=True)
def _feature_rhs(x, row, coef, lwt, mt, vt, nw1, nw2, omega, phase, w, scale, lc, pk, acc, g1, g2, fx, fa):
    r"""The PF-ODE right-hand side ``fx, fa`` :math:`= (-(x + s),\ 1 + \partial_x s)` of a :class:`FeatureField` at
    every point of ``x`` and the time of table row ``row``: :math:`s = c\,(s_\theta + w\sum_j(-\omega_j\sin a_j)c_j)`,
    :math:`\partial_x s = c\,(\partial_x s_\theta + w\sum_j(-\omega_j^2\cos a_j)c_j)`, :math:`a_j = \omega_j x + b_j`
    (the NumPy field's arithmetic, summed in ``j`` order; the loop over the points innermost, so it vectorises).
    :func:`_sincos1` when every :math:`|a_j|` is at most :data:`_SINCOS_MAX` (bounded from ``max |x|``), else libm.
    The model score by :func:`_mix_score_block` (work arrays ``lc, pk, acc``; its rows 3 and 4 take
    :math:`s_\theta, \partial_x s_\theta`)."""
    n = x.size
    big = 0.0
    for i in range(n):
        big = max(big, abs(x[i]))
    wmax, bmax = 0.0, 0.0
    for j in range(omega.size):
        wmax, bmax = max(wmax, abs(omega[j])), max(bmax, abs(phase[j]))
    fast = big * wmax + bmax <= _SINCOS_MAX
    g1[:] = 0.0
    g2[:] = 0.0
    for j in range(omega.size):
        oj, bj, c1, c2 = omega[j], phase[j], nw1[j], nw2[j]
        cj = coef[row, j]
        if fast:
            for i in range(n):
                sn, cs = _sincos1(x[i] * oj + bj)
                g1[i] += c1 * sn * cj
                g2[i] += c2 * cs * cj
        else:
            for i in range(n):
                a = x[i] * oj + bj
                g1[i] += c1 * np.sin(a) * cj
                g2[i] += c2 * np.cos(a) * cj
    sq, dsq = acc[3], acc[4]
    _mix_score_block(x, lwt[row], mt[row], vt[row], lc, pk, acc, sq, dsq)
    for i in range(n):
        fx[i] = -(x[i] + scale * (sq[i] + w * g1[i]))
        fa[i] = 1.0 + scale * (dsq[i] + w * g2[i])


@numba.njit(cache=True, parallel=True)
def _ode_feature_kernel(x0, dt, n_steps, coef, logw, mt, vt, nw1, nw2, omega, phase, w, scale, state_max):
    r""":func:`ode_endpoint`'s RK4 transport of the points ``x0`` for a :class:`FeatureField` (rows ``3k, 3k + 1,
    3k + 2`` of the tables: the times ``k dt``, ``k dt + dt/2``, ``min(k dt + dt, T)``), the NumPy loop's
    arithmetic.  Returns ``(x_T, A, bad)``: ``bad`` is the first stage ``4k + i`` at which some state left
    :math:`|x| \le` ``state_max`` (the NumPy loop's check: it stops there), or -1.  The points run in fixed
    chunks of :data:`_ODE_CHUNK` over the Numba threads (independent trajectories, each chunk writes only its
    own points; ``bad`` is the least of the chunks' first bad stages: the same for any thread count)."""
    n = x0.size
    lwt = logw - 0.5 * np.log(vt)  # the rows of _mix_score_point's log w - log(v)/2
    x = x0.copy()
    A = np.zeros(n)
    n_chunks = (n + _ODE_CHUNK - 1) // _ODE_CHUNK
    bad = np.full(max(n_chunks, 1), -1, dtype=np.int64)
    lc, pk, acc, kx, ka, y = _ode_work(n_chunks, lwt.shape[1])
    g1, g2 = np.empty(n), np.empty(n)
    for c in numba.prange(n_chunks):
        lo, hi = _chunk_bounds(n, c)
        bad[c] = _ode_feature_chunk(x[lo:hi], A[lo:hi], dt, n_steps, coef, lwt, mt, vt, nw1, nw2, omega, phase,
                                    w, scale, state_max, lc[c], pk[c], acc[c], g1[lo:hi], g2[lo:hi], kx[c], ka[c],
                                    y[c, :hi - lo])
    first = -1
    for c in range(n_chunks):
        if bad[c] >= 0 and (first < 0 or bad[c] < first):
            first = bad[c]
    return x, A, first


@numba.njit(cache=True)
def _ode_feature_chunk(x, A, dt, n_steps, coef, lwt, mt, vt, nw1, nw2, omega, phase, w, scale, state_max, lc, pk,
                       acc, g1, g2, kx, ka, y):
    """One chunk of :func:`_ode_feature_kernel`: RK4 of the points ``x`` (in place, with their log-determinants
    ``A``); the first stage ``4k + i`` at which one of them left the bound, or -1.  ``lc, pk, acc, kx, ka, y``: the
    chunk's work arrays (:func:`_ode_work`), ``g1, g2`` its slices of the sums' arrays."""
    n = x.size
    h2 = 0.5 * dt
    h6 = dt / 6
    for k in range(n_steps):
        for st in range(4):
            _rk4_stage_state(x, kx, st, h2, dt, y)
            for i in range(n):
                if not abs(y[i]) <= state_max:
                    return 4 * k + st
            _feature_rhs(y, 3 * k + (st + 1) // 2, coef, lwt, mt, vt, nw1, nw2, omega, phase, w, scale, lc, pk,
                         acc, g1, g2, kx[st], ka[st])
        _rk4_combine(x, A, kx, ka, h6)
    return -1


#: The sine and cosine tables of :func:`_sincos_tables` (one x-grid and one family's frequencies each: the path KL
#: and the CE gap evaluate every fit of a claim on the same grid, at many times).
_SINCOS_TABLES = _Memo(4)
#: Largest table (points x frequencies) :func:`_sincos_tables` keeps (8 MB per table).
_SINCOS_TABLE_MAX = 1 << 20


def _sincos_tables(x: np.ndarray, omega: np.ndarray, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_sincos_table` of the 1-D ``x``, memoised on the exact inputs (:class:`_Memo`, read-only) up to
    :data:`_SINCOS_TABLE_MAX` entries."""
    if x.size * omega.size > _SINCOS_TABLE_MAX:
        return _sincos_table(x, omega, phase)
    return _SINCOS_TABLES.get((x, omega, phase), lambda: _sincos_table(x, omega, phase))


@numba.njit(cache=True)
def _sincos_table(x, omega, phase):
    r"""``(sn, cs, ok)``: :math:`\sin a_{ji}, \cos a_{ji}` ``(J, n)`` with :math:`a_{ji} = \omega_j x_i + b_j`, each
    point's row of arguments by :func:`_sincos` (libm for the whole row if one :math:`|a|` exceeds
    :data:`_SINCOS_MAX`); ``ok`` ``(1,)``: every :math:`a_{ji}` finite."""
    J = omega.size
    arg = np.empty(J)
    sn1 = np.empty(J)
    cs1 = np.empty(J)
    sn = np.empty((J, x.size))
    cs = np.empty((J, x.size))
    ok = np.ones(1, dtype=np.bool_)
    for i in range(x.size):
        for j in range(J):
            arg[j] = x[i] * omega[j] + phase[j]
            ok[0] = ok[0] and np.isfinite(arg[j])
        _sincos(arg, sn1, cs1)
        for j in range(J):
            sn[j, i] = sn1[j]
            cs[j, i] = cs1[j]
    return sn, cs, ok


@numba.njit(cache=True)
def _fourier_contract(sn, cs, omega, c, deriv):
    r""":math:`\sum_j F_j(x_i) c_j` at every point from the tables of :func:`_sincos_table`, with :math:`F_j = \cos a_j`
    (``deriv`` 0), :math:`-\omega_j\sin a_j` (1) or :math:`\cos(a_j)(-\omega_j^2)` (2), summed in ``j`` order from 0
    (each term :math:`((-\omega_j)\sin a_j)\,c_j`, :math:`\cos(a_j)\,c_j`, :math:`(\cos(a_j)(-\omega_j^2))\,c_j`):
    the loop over the points innermost, so it vectorises; per point the same operations in the same order as one
    point at a time (tests)."""
    J, n = sn.shape
    out = np.zeros(n)
    for j in range(J):
        cj = c[j]
        if deriv == 1:
            wj = -omega[j]
            for i in range(n):
                out[i] += wj * sn[j, i] * cj
        elif deriv == 0:
            for i in range(n):
                out[i] += cs[j, i] * cj
        else:
            wj = -(omega[j] ** 2)
            for i in range(n):
                out[i] += cs[j, i] * wj * cj
    return out

r"""Perturbed classifiers, their guidance vectors, conditional KL and guidance MSE.

Time convention: OU forward time ``t > 0``, :math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`.

A perturbed classifier adds a logit perturbation :math:`\delta(x) \in \mathbb R^C` to the true log
posterior and renormalises,

.. math::  \hat p_t(y\mid x) = \mathrm{softmax}_y\big(\log p_t(\cdot\mid x) + \delta(x)\big),

so the log-probability error is :math:`r_y = \delta_y - \log\sum_{y'} p_t(y'\mid x)e^{\delta_{y'}}` and the
learned guidance vector is :math:`\hat g_y = g_y + \nabla r_y`.  The two error measures are

* the conditional KL :math:`\varepsilon^2 = \mathbb E_{X\sim p_t}\,\mathrm{KL}(p_t(\cdot\mid X)\,\|\,\hat p_t(\cdot\mid X))`
  (equal to the excess cross-entropy, ``proofs_notes/ce_guidance.md``);
* the guidance MSE over the joint law, :math:`\mathbb E_{(X,Y)}\|\hat g_Y(X)-g_Y(X)\|^2
  = \mathbb E_X\sum_y p_t(y\mid X)\|\nabla r_y(X)\|^2`, or over one class, :math:`\mathbb E_{X\sim p_t(\cdot\mid y)}\|\nabla r_y\|^2`.

Two routes:

* :func:`errors_quadrature` -- the two-class isotropic setting G of the paper note
  (:class:`SettingG`, :math:`X_0\mid Y\sim N(Y\mu, I)`) with a :class:`Ripple` perturbation; every
  expectation reduces to two coordinates (along :math:`\mu` and along the ripple), integrated by
  Gauss-Hermite / trapezoid / phase-average rules whose error is estimated by halving the rule
  (spectrally convergent rules: the halved-rule difference bounds the finer rule's error once both are
  resolved) plus the analytic phase-average term :math:`4\sup|G|e^{-\omega^2/2}`.
* :func:`errors_monte_carlo` -- any :class:`~numerics.mixture.GaussianMixture`, any perturbation with a
  gradient, any ``d``: Monte Carlo over :math:`X` with the label average done exactly (Rao-Blackwell),
  with Student-t confidence intervals.

:func:`theorem_bound` evaluates the bound of ``proofs_notes/ce_guidance.md`` (Theorem 1):
:math:`\mathrm{MSE}\le(\varepsilon/\sqrt{c_M})(2dL + M S_4)`; :meth:`SettingG.certificates` gives
certified ``L`` and ``M`` for a logit perturbation in setting G.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy.special import expit, log_expit

from numerics.mixture import GaussianMixture
from numerics.quadrature import gauss_hermite_normal
from numerics.references.grid_density import run_concurrently
from numerics.schedule import alpha_sigma2
from numerics.stats import mean_ci
from numerics.validate import as_float_array, check_int, check_positive, check_real, check_real_values, check_time

__all__ = [
    "SettingG", "Ripple", "FourierFeatures", "ErrorEstimate", "MCErrors",
    "perturbed_log_posterior", "perturbed_guidance", "ripple_integrands", "errors_quadrature", "errors_monte_carlo",
    "theorem_bound", "c_M", "SIGMA2_MAX", "SIGMA3_MAX", "SIGMA4_MAX", "SQUARE2_MAX", "RippleExpansion",
    "ripple_expansion",
]

#: :math:`\sup|\sigma''| = 1/(6\sqrt3)` for the logistic function :math:`\sigma`.
SIGMA2_MAX = 1.0 / (6.0 * math.sqrt(3.0))


def _sup_on_unit(P) -> float:
    """max |P(s)| over s in [0, 1] for a polynomial P: endpoints and the real critical points (exact up to rounding)."""
    pts = [0.0, 1.0] + [float(r.real) for r in P.deriv().roots() if abs(r.imag) < 1e-12 and 0.0 <= r.real <= 1.0]
    return float(max(abs(P(x)) for x in pts))


def _logistic_derivative_sups():
    r"""sup of |sigma''|, |sigma'''|, |sigma''''|, |(sigma^2)''|: polynomials in s = sigma(u), as d/du = s(1-s) d/ds."""
    from numpy.polynomial import Polynomial as Poly
    s1 = Poly([0.0, 1.0, -1.0])  # sigma' = s(1-s)
    D = lambda P: P.deriv() * s1  # noqa: E731
    d2, sq = D(s1), D(Poly([0.0, 0.0, 1.0]))
    d3 = D(d2)
    return _sup_on_unit(d2), _sup_on_unit(d3), _sup_on_unit(D(d3)), _sup_on_unit(D(sq))


#: sup|sigma''| (= 1/(6 sqrt 3)), sup|sigma'''| (= 1/8), sup|sigma''''|, sup|(sigma^2)''| over the real line
#: (``proofs_notes/ce_guidance.md#remainders``).
_SIGMA2_POLY, SIGMA3_MAX, SIGMA4_MAX, SQUARE2_MAX = _logistic_derivative_sups()
#: Frequencies at or above this use the exact phase average on the ripple coordinate (error <= 4 sup|G| e^{-w^2/2} < 1e-7 sup|G|).
PHASE_OMEGA = 6.0


def _pos(value, name: str, allow_zero: bool = False) -> float:
    return check_positive(value, name, allow_zero)


# --------------------------------------------------------------------------- perturbations
class Ripple:
    r"""Logit perturbation :math:`h(x) = \delta\sum_{j=1}^k\sin(\omega\langle u_j, x\rangle)`, ``u`` orthonormal rows.

    Certified bounds: :math:`|h|\le k\delta`, :math:`\|\nabla h\|\le\sqrt k\,\delta\omega`,
    :math:`\|\nabla^2 h\|_{op}\le\delta\omega^2` (orthonormal directions: the Hessian is
    :math:`-\delta\omega^2\sum_j\sin(\cdot)u_ju_j^\top`).
    """

    def __init__(self, delta, omega, directions):
        self.delta = _pos(delta, "delta", allow_zero=True)
        self.omega = _pos(omega, "omega")
        if not math.isfinite(float(np.float64(self.delta) * np.float64(self.omega) ** 2)):
            raise ValueError(f"omega: the bound delta * omega**2 overflows float64 (delta={delta!r}, omega={omega!r})")
        U = as_float_array(directions, "directions", (1, 2))
        U = U[None, :] if U.ndim == 1 else U
        if U.shape[0] == 0:
            raise ValueError("directions: need at least one direction")
        if np.max(np.abs(U @ U.T - np.eye(U.shape[0]))) > 1e-10:
            raise ValueError("directions: rows must be orthonormal")
        self.U, self.k, self.d = U, U.shape[0], U.shape[1]

    def _proj(self, x):
        X = as_float_array(x, "x", 2)
        if X.shape[1] != self.d:
            raise ValueError(f"x: last dimension must be d={self.d}, got shape {X.shape}")
        P = X @ self.U.T
        if not np.all(np.isfinite(self.omega * P)):
            raise ValueError(f"x: omega * <u, x> overflows float64 (|x| too large for omega={self.omega!r})")
        return P

    def value(self, x):
        return self.delta * np.sin(self.omega * self._proj(x)).sum(axis=1)

    def grad(self, x):
        return (self.delta * self.omega * np.cos(self.omega * self._proj(x))) @ self.U

    @property
    def sup_abs(self):
        return self.k * self.delta

    @property
    def sup_grad(self):
        return math.sqrt(self.k) * self.delta * self.omega

    @property
    def sup_hess(self):
        return self.delta * self.omega**2


class FourierFeatures:
    r"""Logit perturbation :math:`h(x) = \sum_j a_j\cos(\langle w_j, x\rangle + \phi_j)` (random Fourier features).

    Certified bounds: :math:`|h|\le\sum|a_j|`, :math:`\|\nabla h\|\le\sum|a_j|\|w_j\|`,
    :math:`\|\nabla^2h\|_{op}\le\sum|a_j|\|w_j\|^2`.
    """

    def __init__(self, amplitudes, frequencies, phases):
        self.a = as_float_array(amplitudes, "amplitudes", 1)
        self.W = as_float_array(frequencies, "frequencies", 2)
        self.phi = as_float_array(phases, "phases", 1)
        if not (self.a.shape[0] == self.W.shape[0] == self.phi.shape[0]) or self.a.shape[0] == 0:
            raise ValueError(f"amplitudes/frequencies/phases: need matching lengths >= 1, got "
                             f"{self.a.shape[0]}, {self.W.shape[0]}, {self.phi.shape[0]}")
        self.d = self.W.shape[1]
        with np.errstate(over="ignore"):
            if not math.isfinite(self.sup_hess):
                raise ValueError("frequencies: the Hessian bound sum |a_j| |w_j|^2 overflows float64")

    def _arg(self, x):
        X = as_float_array(x, "x", 2)
        if X.shape[1] != self.d:
            raise ValueError(f"x: last dimension must be d={self.d}, got shape {X.shape}")
        return X @ self.W.T + self.phi

    def value(self, x):
        return np.cos(self._arg(x)) @ self.a

    def grad(self, x):
        return (-np.sin(self._arg(x)) * self.a) @ self.W

    @property
    def sup_abs(self):
        return float(np.sum(np.abs(self.a)))

    @property
    def sup_grad(self):
        return float(np.sum(np.abs(self.a) * np.linalg.norm(self.W, axis=1)))

    @property
    def sup_hess(self):
        return float(np.sum(np.abs(self.a) * np.sum(self.W**2, axis=1)))


# --------------------------------------------------------------------------- setting G
class SettingG:
    r"""Setting G: :math:`Y=\pm1` w.p. 1/2, :math:`X_0\mid Y\sim N(Y\mu, I_d)`, OU time ``t``.

    Class index 0 is :math:`Y=+1` (mean :math:`+\mu`), index 1 is :math:`Y=-1`.  The true logit of
    :math:`Y=+1` is :math:`f(x) = 2\alpha_t\langle\mu,x\rangle`, :math:`\|\nabla f\| = 2\alpha_t\|\mu\|`;
    :math:`X_t\mid Y\sim N(Y\alpha_t\mu, I)`.
    """

    def __init__(self, mu, t):
        self.mu = as_float_array(mu, "mu", 1)
        with np.errstate(over="ignore"):
            self.m = float(np.linalg.norm(self.mu))
        if self.m == 0.0:
            raise ValueError("mu: must be non-zero")
        self.t = check_time(t)
        self.d = self.mu.size
        self.alpha = math.exp(-self.t)
        self.unit = self.mu / self.m
        self.grad_f_norm = 2.0 * self.alpha * self.m
        # the certificates and the ripple expansion use ||grad f||^2
        if not (math.isfinite(self.m) and math.isfinite(float(np.float64(self.grad_f_norm) ** 2))):
            raise ValueError(f"mu: too large: ||grad f||^2 = (2 alpha_t |mu|)^2 overflows float64 (|mu| = {self.m:.3g}, "
                             f"t={self.t!r})")

    def mixture(self) -> GaussianMixture:
        eye = np.eye(self.d)
        return GaussianMixture([0.5, 0.5], np.stack([self.mu, -self.mu]), np.stack([eye, eye]), labels=[0, 1])

    def logit(self, x):
        r"""The true logit :math:`2\alpha_t \langle \mu, x\rangle` at points ``x`` of shape ``(n, d)``."""
        X = as_float_array(x, "x", 2)
        if X.shape[1] != self.d:
            raise ValueError(f"x: last dimension must be d={self.d}, got shape {X.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            out = 2.0 * self.alpha * (X @ self.mu)
        if not np.all(np.isfinite(out)):
            raise ValueError("x: the logit 2 alpha_t <mu, x> overflows float64")
        return out

    def sample(self, n: int, rng: np.random.Generator, y: int | None = None):
        """``(x (n, d), ysign (n,))`` from the time-``t`` joint law (or class ``y`` in {+1, -1})."""
        n = check_int(n, "n", 1, 10**7)
        if y is None:
            ys = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        elif y in (1, -1):
            ys = np.full(n, float(y))
        else:
            raise ValueError(f"y: must be +1, -1 or None, got {y!r}")
        return ys[:, None] * self.alpha * self.mu + rng.standard_normal((n, self.d)), ys

    def pq_moments(self, n: int = 80) -> tuple[float, float]:
        r""":math:`(\mathbb E[pq], \mathbb E[(pq)^2])` with :math:`p = p_t(+1\mid X)`, by Gauss-Hermite (``n`` nodes per component)."""
        s, w = gauss_hermite_normal(n)
        f = 2 * self.alpha * self.m * (s + self.alpha * self.m)  # by symmetry both components give the same
        pq = expit(f) * expit(-f)
        return float(w @ pq), float(w @ pq**2)

    def score_fourth_moment(self) -> float:
        r""":math:`S_4 = (\mathbb E\|\nabla\log p_t(X\mid Y)\|^4)^{1/2} = \sqrt{d^2+2d}` (a chi-square with d dof)."""
        return math.sqrt(self.d**2 + 2 * self.d)

    def certificates(self, h) -> tuple[float, float]:
        r"""Certified ``(L, M)`` for the logit perturbation ``h`` (any object with ``sup_abs``, ``sup_grad``, ``sup_hess``).

        With :math:`r_{+} = \log\sigma(f+h)-\log\sigma(f)` (and :math:`r_-` symmetric):
        :math:`|r_\pm|\le\sup|h| = M` (log-sigmoid is 1-Lipschitz) and
        :math:`\|\nabla^2 r_\pm\|_{op}\le \sup\|\nabla^2h\| + \sup|\sigma''|\,M\,\|\nabla f\|^2 + \tfrac14(2\|\nabla f\|G_h + G_h^2) = L`
        (``proofs_notes/ce_guidance.md#certificates``).
        """
        gf, M, G, H = self.grad_f_norm, h.sup_abs, h.sup_grad, h.sup_hess
        return H + SIGMA2_MAX * M * gf**2 + 0.25 * (2 * gf * G + G**2), M


def c_M(M: float) -> float:
    r""":math:`c_M = (e^{-M}-1+M)/M^2` (:math:`\to 1/2` as :math:`M\to0`): :math:`e^r-1-r\ge c_M r^2` on :math:`|r|\le M`."""
    M = _pos(M, "M", allow_zero=True)
    if M < 1e-4:
        return 0.5 - M / 6.0 + M * M / 24.0
    if M > 1e150:  # M**2 would overflow; (e^-M - 1 + M)/M^2 = (M - 1)/M^2 to double precision
        return (M - 1.0) / M / M
    return (math.expm1(-M) + M) / M**2


def theorem_bound(eps: float, d: int, L: float, M: float, S4: float) -> float:
    r"""Theorem 1 of ``proofs_notes/ce_guidance.md``: :math:`\mathrm{MSE}\le(\varepsilon/\sqrt{c_M})(2dL + M S_4)`."""
    eps = _pos(eps, "eps", allow_zero=True)
    d = check_int(d, "d", 1)
    out = eps / math.sqrt(c_M(M)) * (2 * d * _pos(L, "L", True) + _pos(M, "M", True) * _pos(S4, "S4", True))
    if not math.isfinite(out):
        raise ValueError(f"eps, L, M, S4: the bound overflows float64 (eps={eps!r}, L={L!r}, M={M!r}, S4={S4!r})")
    return out


@dataclass(frozen=True)
class RippleExpansion:
    r"""Leading-order KL and MSE of a ripple in setting G with explicit remainder bounds (:func:`ripple_expansion`):
    :math:`|\mathrm{KL}-\mathtt{kl}|\le\mathtt{kl\_rem}` and :math:`|\mathrm{MSE}-\mathtt{mse}|\le\mathtt{mse\_rem}`."""

    kl: float
    kl_rem: float
    mse: float
    mse_rem: float

    def ratio_bounds(self) -> tuple[float, float]:
        """An interval containing MSE/KL (needs ``kl_rem < kl``)."""
        if not self.kl_rem < self.kl:
            raise ValueError("ratio_bounds: the KL remainder bound is not below the leading term")
        return (self.mse - self.mse_rem) / (self.kl + self.kl_rem), (self.mse + self.mse_rem) / (self.kl - self.kl_rem)


def ripple_expansion(setting: SettingG, delta: float, omega: float, k: int = 1) -> RippleExpansion:
    r"""Joint-law KL and MSE of :math:`h=\delta\sum_{j\le k}\sin(\omega\langle u_j,x\rangle)` (``u_j`` orthonormal,
    orthogonal to :math:`\mu`) to leading order in :math:`\delta`, with explicit remainder bounds
    (``proofs_notes/ce_guidance.md#remainders``):

    * :math:`\mathrm{KL}=\tfrac12E[pq]\,Eh^2+R_K`, :math:`|R_K|\le Eh^4/192`;
    * :math:`\mathrm{MSE}=\|\nabla f\|^2E[(pq)^2]\,Eh^2+E[pq]\,E\|\nabla h\|^2+R_M`,
      :math:`|R_M|\le\|\nabla f\|^2A_4Eh^4/24+\tfrac12\sup|(\sigma^2)''|\,E[\|\nabla h\|^2h^2]`,
      :math:`A_4=2(k\delta/4)\sup|\sigma''''|+2\sup|\sigma'''|+6\sup|\sigma''|^2`.

    The odd (cubic, resp. linear) terms vanish exactly: :math:`v\mapsto-v` preserves the law of the ripple
    coordinates and flips :math:`h`.
    """
    if not isinstance(setting, SettingG):
        raise ValueError("setting: need a SettingG")
    dl = _pos(delta, "delta", allow_zero=True)
    om = _pos(omega, "omega")
    k = check_int(k, "k", 1, 10**6)
    try:
        return _ripple_expansion(setting, dl, om, k)
    except OverflowError:
        raise ValueError(f"delta: the expansion overflows float64 (delta={dl!r}, omega={om!r}, k={k})") from None


def _ripple_expansion(setting: SettingG, dl: float, om: float, k: int) -> RippleExpansion:
    """:func:`ripple_expansion` for validated arguments."""
    epq, epq2 = setting.pq_moments()
    gf2 = setting.grad_f_norm ** 2
    e2, e8 = math.exp(-2 * om * om), math.exp(-8 * om * om)
    S2, C2 = (1 - e2) / 2, (1 + e2) / 2  # E sin^2, E cos^2 of omega v, v ~ N(0, 1)
    S4 = 3 / 8 - e2 / 2 + e8 / 8  # E sin^4
    CS = (1 - e8) / 8  # E sin^2 cos^2
    Eh2 = dl**2 * k * S2
    Eh4 = dl**4 * (k * S4 + 3 * k * (k - 1) * S2**2)
    Eg2 = dl**2 * om**2 * k * C2
    Eg2h2 = dl**4 * om**2 * (k * CS + k * (k - 1) * C2 * S2)
    A4 = 2 * (k * dl / 4) * SIGMA4_MAX + 2 * SIGMA3_MAX + 6 * SIGMA2_MAX**2
    return RippleExpansion(kl=0.5 * epq * Eh2, kl_rem=Eh4 / 192.0, mse=gf2 * epq2 * Eh2 + epq * Eg2,
                           mse_rem=gf2 * A4 * Eh4 / 24.0 + 0.5 * SQUARE2_MAX * Eg2h2)


# --------------------------------------------------------------------------- generic formulas
def perturbed_log_posterior(log_p, delta):
    r""":math:`\log\hat p = \log\mathrm{softmax}(\log p + \delta)`, row-wise; ``(N, C)``."""
    lp, dl = as_float_array(log_p, "log_p", 2), as_float_array(delta, "delta", 2)
    if lp.shape[1] == 0:
        raise ValueError(f"log_p: needs at least one class, got shape {lp.shape}")
    if dl.shape != lp.shape:
        raise ValueError(f"delta: expected the shape of log_p {lp.shape}, got {dl.shape}")
    with np.errstate(over="ignore"):
        z = lp + dl
    if not np.all(np.isfinite(z)):
        raise ValueError("delta: log_p + delta overflows float64 (|delta| too large)")
    m = z.max(axis=1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))


def perturbed_guidance(g, grad_delta, log_p_hat):
    r""":math:`\hat g_y = g_y + \nabla\delta_y - \sum_{y'}\hat p_{y'}(g_{y'} + \nabla\delta_{y'})`; arrays ``(N, C, d)``."""
    g = as_float_array(g, "g", 3)
    gd = as_float_array(grad_delta, "grad_delta", 3)
    if gd.shape != g.shape:
        raise ValueError(f"grad_delta: expected shape {g.shape}, got {gd.shape}")
    lph = as_float_array(log_p_hat, "log_p_hat", 2)
    if lph.shape != g.shape[:2]:
        raise ValueError(f"log_p_hat: expected shape {g.shape[:2]} (the (N, C) of g), got {lph.shape}")
    ph = np.exp(lph)
    with np.errstate(over="ignore", invalid="ignore"):
        tot = g + gd
        out = tot - np.einsum("nc,ncd->nd", ph, tot)[:, None, :]
    if not np.all(np.isfinite(out)):
        raise ValueError("g: the perturbed guidance g + grad_delta - E[g + grad_delta] overflows float64 "
                         "(g or grad_delta too large)")
    return out


# --------------------------------------------------------------------------- quadrature in setting G
@dataclass(frozen=True)
class ErrorEstimate:
    """KL and MSE with a-posteriori quadrature error estimates (absolute)."""

    kl: float
    mse: float
    kl_err: float
    mse_err: float

    @property
    def eps(self) -> float:
        return math.sqrt(max(self.kl, 0.0))


def ripple_integrands(f, h, gf, dh_par, dh_perp, y, w=1.0):
    r"""Per-node conditional KL and squared guidance error in setting G with a logit perturbation ``h``.

    ``f`` the true logit of :math:`Y=+1` at the nodes, ``h`` the perturbation there, ``gf`` :math:`\|\nabla f\|`,
    ``dh_par`` / ``dh_perp`` the components of :math:`\nabla h` along / orthogonal to :math:`\nabla f` (arrays
    broadcasting together).  Returns ``(kl, err)``: :math:`\mathrm{KL}(p(\cdot\mid x)\|\hat p(\cdot\mid x))` and the
    squared error of ``w`` times the learned guidance against the true one, label-averaged (``y`` None) or of
    class ``y`` (+1 / -1).
    """
    f, h, gf, dh_par, dh_perp = (check_real_values(v, name) for v, name in
                                 ((f, "f"), (h, "h"), (gf, "gf"), (dh_par, "dh_par"), (dh_perp, "dh_perp")))
    w = check_real(w, "w")
    if y not in (None, 1, -1):
        raise ValueError(f"y: must be None, +1 or -1, got {y!r}")
    kl, err = _ripple_integrands_blocks((f, h, gf, dh_par, dh_perp), y, w)
    if not np.all(np.isfinite(kl)):
        raise ValueError("f, h: the conditional KL overflows float64 (|f| or |h| too large)")
    if not np.all(np.isfinite(err)):
        raise ValueError("gf, dh_par, dh_perp: the squared guidance error overflows float64 (|grad f| or |grad h| too "
                         "large)")
    return kl, err


#: Entries per block of :func:`_ripple_integrands_blocks` (a few MB of temporaries per block, in cache).
RIPPLE_BLOCK = 2**16


def _ripple_integrands_blocks(args: tuple, y, w) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_ripple_integrands` on the broadcast shape of ``args``, in blocks of the last axis of about
    :data:`RIPPLE_BLOCK` entries, run side by side (:func:`~numerics.references.grid_density.run_concurrently`;
    one block runs inline).  Every entry is computed by the same elementwise operations as on the whole arrays, so
    the result is bit for bit that of one call, for any block size and thread count (tested).  Blocked only where
    ``f`` and ``h`` carry the whole shape (the KL's shape is theirs)."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in args))
    small = not shape or math.prod(shape) <= RIPPLE_BLOCK
    if small or np.broadcast_shapes(np.shape(args[0]), np.shape(args[1])) != shape:  # (kl has the shape of f, h)
        with np.errstate(over="ignore", invalid="ignore"):
            return _ripple_integrands(*args, y, w)
    full = [np.broadcast_to(v, shape) for v in args]
    kl, err = np.empty(shape), np.empty(shape)
    cols = max(1, RIPPLE_BLOCK * shape[-1] // math.prod(shape))

    def block(sl: slice) -> None:
        with np.errstate(over="ignore", invalid="ignore"):  # (thread-local)
            kl[..., sl], err[..., sl] = _ripple_integrands(*(v[..., sl] for v in full), y, w)
    run_concurrently({s: functools.partial(block, slice(s, s + cols)) for s in range(0, shape[-1], cols)})
    return kl, err


def _ripple_integrands(f, h, gf, dh_par, dh_perp, y, w):
    """:func:`ripple_integrands` for validated arrays."""
    lp, lph = log_expit(f), log_expit(f + h)
    lq, lqh = log_expit(-f), log_expit(-f - h)
    p, q, ph, qh = np.exp(lp), np.exp(lq), np.exp(lph), np.exp(lqh)
    kl = p * (lp - lph) + q * (lq - lqh)
    # g_+ = q grad f,  ghat_+ = qh (grad f + grad h);  g_- = -p grad f,  ghat_- = -ph (grad f + grad h)
    e_plus = ((w * qh - q) * gf + w * qh * dh_par) ** 2 + (w * qh * dh_perp) ** 2
    e_minus = ((w * ph - p) * gf + w * ph * dh_par) ** 2 + (w * ph * dh_perp) ** 2
    if y is None:
        return kl, p * e_plus + q * e_minus
    return kl, (e_plus if y == 1 else e_minus)


def _phase_or_grid(omega: float, n: int, halve: bool):
    """Nodes/weights on the ripple coordinate v ~ N(0,1): phase average (theta uniform) or a trapezoid grid."""
    if omega >= PHASE_OMEGA:
        nt = n // 2 if halve else n
        theta = 2 * math.pi * np.arange(nt) / nt
        return np.sin(theta), np.cos(theta), np.full(nt, 1.0 / nt)
    nv = (n // 2 if halve else n) | 1
    v = np.linspace(-12.0, 12.0, nv)
    w = np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi) * (v[1] - v[0])
    return np.sin(omega * v), np.cos(omega * v), w


def errors_quadrature(setting: SettingG, ripple: Ripple, y: int | None = None, n_s: int = 80,
                      n_v: int | None = None, guidance_scale: float = 1.0, logit_scale: float = 1.0) -> ErrorEstimate:
    r"""KL and guidance MSE in setting G for a one-direction :class:`Ripple` ``h = delta sin(omega <u, x>)``.

    Geometry: ``u`` orthogonal to :math:`\mu` (needs ``d >= 2``) gives a tensor rule over
    :math:`s = \langle\hat\mu, x\rangle` (Gauss-Hermite, ``n_s`` nodes per mixture component) and
    :math:`v = \langle u, x\rangle\sim N(0,1)` (phase average with ``n_v`` points for
    :math:`\omega\ge 6`, else trapezoid on [-12, 12]); ``u`` parallel to :math:`\mu` (any ``d``) uses a
    trapezoid rule in ``s`` on :math:`\pm\alpha m\pm 12` fine enough for :math:`\omega`.

    ``y`` None: KL and the joint-law MSE; ``y`` = +1 / -1: the MSE over :math:`p_t(\cdot\mid y)` (KL still
    over the marginal).  ``guidance_scale`` ``w`` measures :math:`w\hat g` against :math:`g` (``w = 1``: the
    plain MSE; other values serve negative controls).  ``logit_scale`` ``c`` makes the learned logit
    :math:`c f + h` (``c = 1``: the perturbed classifier; ``c = alpha_{t'}/alpha_t`` is a classifier evaluated at the
    wrong time :math:`t'`, a negative control; orthogonal ripples only).  The reported errors are :math:`|I_n - I_{n/2}|` (halved rules) plus, for the phase
    average, :math:`4\sup|G|e^{-\omega^2/2}` (the Fourier tail of :math:`v\mapsto\omega v \bmod 2\pi`).
    """
    if not isinstance(setting, SettingG) or not isinstance(ripple, Ripple):
        raise ValueError("setting/ripple: need a SettingG and a Ripple")
    if ripple.k != 1 or ripple.d != setting.d:
        raise ValueError(f"ripple: need one direction in d={setting.d}, got k={ripple.k}, d={ripple.d}")
    if y not in (None, 1, -1):
        raise ValueError(f"y: must be None, +1 or -1, got {y!r}")
    n_s = check_int(n_s, "n_s", 8)
    w = _pos(guidance_scale, "guidance_scale", allow_zero=True)
    u = ripple.U[0]
    c = float(u @ setting.unit)
    kappa = check_real(logit_scale, "logit_scale") - 1.0
    if abs(c) < 1e-12:
        run = lambda: _quad_perp(setting, ripple, y, n_s, n_v, w, kappa)  # noqa: E731
    elif kappa != 0.0:
        raise ValueError("logit_scale: supported for ripples orthogonal to mu only")
    elif abs(abs(c) - 1.0) < 1e-12:
        run = lambda: _quad_par(setting, ripple, y, c, n_v, w)  # noqa: E731
    else:
        raise ValueError("ripple: direction must be orthogonal or parallel to mu for quadrature (use errors_monte_carlo)")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            out = run()
    except OverflowError:
        out = None
    except ValueError as exc:  # the integrands' own overflow check
        if not str(exc).startswith(("f, h:", "gf, dh_par, dh_perp:")):
            raise
        out = None
    if out is None or not all(math.isfinite(v) for v in (out.kl, out.mse, out.kl_err, out.mse_err)):
        raise ValueError(f"ripple: the KL or MSE quadrature overflows float64 (delta={ripple.delta!r}, "
                         f"omega={ripple.omega!r}, guidance_scale={w!r}, logit_scale={logit_scale!r} too large)")
    return out


def _centres(setting, y):
    am = setting.alpha * setting.m
    return [(0.5, am), (0.5, -am)] if y is None else [(1.0, y * am)]


def _quad_perp(setting, ripple, y, n_s, n_v, w, kappa=0.0):
    dl, om = ripple.delta, ripple.omega
    n_v = check_int(n_v, "n_v", 16) if n_v is not None else (4096 if om >= PHASE_OMEGA else 8001)
    gf = setting.grad_f_norm

    def run(halve):
        s0, ws = gauss_hermite_normal(n_s // 2 if halve else n_s)
        sn, cs, wv = _phase_or_grid(om, n_v, halve)
        h, dperp = (dl * sn)[None, :], (dl * om * cs)[None, :]
        kl = mse = 0.0
        for wc, cen in _centres(setting, None):  # the KL is always over the marginal
            F = (gf * (s0 + cen))[:, None]
            k_, m_ = ripple_integrands(F, h + kappa * F, gf, kappa * gf, dperp, None, w)
            kl += wc * (ws @ k_ @ wv)
            if y is None:
                mse += wc * (ws @ m_ @ wv)
        if y is not None:
            F = (gf * (s0 + y * setting.alpha * setting.m))[:, None]
            _, m_ = ripple_integrands(F, h + kappa * F, gf, kappa * gf, dperp, y, w)
            mse = ws @ m_ @ wv
        return float(kl), float(mse)

    kl, mse = run(False)
    kl2, mse2 = run(True)
    tail = 4 * math.exp(-0.5 * om * om) if om >= PHASE_OMEGA else 0.0
    # sup of the integrands: KL <= |h| * 1 <= delta (log-sigmoid 1-Lipschitz), MSE <= (gf + delta*om)^2
    return ErrorEstimate(kl, mse, abs(kl - kl2) + tail * dl, abs(mse - mse2) + tail * (max(w, 1.0) * (gf + dl * om) + gf) ** 2)


def _quad_par(setting, ripple, y, c, n_v, w):
    dl, om = ripple.delta, ripple.omega
    am, gf = setting.alpha * setting.m, setting.grad_f_norm
    n = check_int(n_v, "n_v", 16) if n_v is not None else int(max(4001, 48 * (om + 10)))
    if n > 2_000_000:
        raise ValueError(f"ripple: omega={om:g} too large for the parallel-direction trapezoid rule")

    def run(halve):
        nn = (n // 2 if halve else n) | 1
        s = np.linspace(-am - 12, am + 12, nn)
        ds = s[1] - s[0]
        f = gf * s
        h = dl * np.sin(om * c * s)
        dpar = dl * om * np.cos(om * c * s)  # along mu-hat (sign c absorbed: grad h = c*... along unit)
        dpar = dpar * c
        phi = lambda z: np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
        marg = 0.5 * (phi(s - am) + phi(s + am))
        k_, mj = ripple_integrands(f, h, gf, dpar, 0.0, None, w)
        kl = float(np.sum(k_ * marg) * ds)
        if y is None:
            return kl, float(np.sum(mj * marg) * ds)
        _, my = ripple_integrands(f, h, gf, dpar, 0.0, y, w)
        return kl, float(np.sum(my * phi(s - y * am)) * ds)

    kl, mse = run(False)
    kl2, mse2 = run(True)
    return ErrorEstimate(kl, mse, abs(kl - kl2), abs(mse - mse2))


# --------------------------------------------------------------------------- Monte Carlo, any mixture
@dataclass(frozen=True)
class MCErrors:
    """Monte-Carlo KL and MSE with confidence intervals (``MeanCI``); ``eps_ci`` the CI of sqrt(KL)."""

    kl: object
    mse: object

    @property
    def eps(self) -> float:
        return math.sqrt(max(self.kl.mean, 0.0))

    @property
    def eps_ci(self) -> tuple[float, float]:
        return math.sqrt(max(self.kl.lo, 0.0)), math.sqrt(max(self.kl.hi, 0.0))


def errors_monte_carlo(gm: GaussianMixture, t: float, perturbations: Mapping[int, object], n: int,
                       rng: np.random.Generator, y: int | None = None, level: float = 0.95) -> MCErrors:
    r"""Monte-Carlo conditional KL and guidance MSE for ``softmax(log p_t + delta)`` on any mixture.

    ``perturbations`` maps a class index to a logit perturbation (``value(x) (N,)``, ``grad(x) (N, d)``);
    other classes get 0.  ``y`` None: :math:`X\sim p_t` and the label-averaged squared error
    :math:`\sum_y p_t(y\mid X)\|\hat g_y-g_y\|^2`; ``y`` a class index: :math:`X\sim p_t(\cdot\mid y)`
    and :math:`\|\hat g_y - g_y\|^2` (the KL is then that class's, not the marginal one).
    """
    if not isinstance(gm, GaussianMixture):
        raise ValueError("gm: must be a GaussianMixture")
    t = check_time(t)
    n = check_int(n, "n", 2)
    C = gm.n_classes
    for c_, h in perturbations.items():
        check_int(c_, "perturbations key", 0, C - 1)
        if getattr(h, "d", gm.d) != gm.d:
            raise ValueError(f"perturbations: class {c_} perturbation has d={h.d}, mixture has d={gm.d}")
    yy = None if y is None else check_int(y, "y", 0, C - 1)
    a, s2 = alpha_sigma2(t)
    x = a * gm.sample_data(n, rng, y=yy) + math.sqrt(s2) * rng.standard_normal((n, gm.d))
    log_p = gm.class_log_posterior(x, t)
    g = np.stack([gm.guidance_vector(x, t, c_) for c_ in range(C)], axis=1)
    delta = np.zeros((n, C))
    gdel = np.zeros((n, C, gm.d))
    for c_, h in perturbations.items():
        delta[:, c_] = h.value(x)
        gdel[:, c_] = h.grad(x)
    log_ph = perturbed_log_posterior(log_p, delta)
    gh = perturbed_guidance(g, gdel, log_ph)
    p = np.exp(log_p)
    kl = np.sum(p * (log_p - log_ph), axis=1)
    err = np.sum((gh - g) ** 2, axis=2)
    mse = np.sum(p * err, axis=1) if yy is None else err[:, yy]
    return MCErrors(mean_ci(kl, level), mean_ci(mse, level))

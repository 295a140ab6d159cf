r"""Curved supports in high dimension: the uniform law on a round sphere :math:`S^k` inside :math:`\mathbb R^d`.

Target (``proofs_notes/support.md#high-dim-spheres``)
-----------------------------------------------------
:class:`SphereTarget` ``(k, d, R)``: :math:`X_0` uniform (normalised surface measure) on the sphere
:math:`\{x : |x_\parallel| = R,\ x_\perp = 0\}`, :math:`x = (x_\parallel, x_\perp)\in\mathbb R^{k+1}\times
\mathbb R^{d-k-1}`, :math:`1\le k`, :math:`k + 1\le d\le 256`.  OU forward process: :math:`X_t = \lambda X_0 +
\sigma Z`, :math:`\lambda = e^{-t}`, :math:`\sigma^2 = 1 - e^{-2t}`.

**Derivation.**  With :math:`X_0 = R u`, :math:`u` uniform on the unit sphere :math:`S^k\subset\mathbb R^{k+1}`,

.. math::  p_t(y) = (2\pi\sigma^2)^{-d/2}\,E_u\exp\Big(-\frac{|y - \lambda R u|^2}{2\sigma^2}\Big)
           = (2\pi\sigma^2)^{-d/2}\,e^{-(|y|^2 + \lambda^2R^2)/(2\sigma^2)}\,E_u\,e^{z\,\langle\hat y_\parallel, u\rangle},
           \qquad z = \frac{\lambda R|y_\parallel|}{\sigma^2},

and the von Mises-Fisher integral on :math:`S^k` (dimension :math:`p = k + 1`, :math:`\nu = p/2 - 1 = (k-1)/2`) is
:math:`E_u e^{z\langle e, u\rangle} = \Gamma(\nu + 1)\,(2/z)^{\nu} I_\nu(z)`.  Hence, exactly,

.. math::  \log p_t(y) = -\frac d2\log(2\pi\sigma^2) - \frac{(|y_\parallel| - \lambda R)^2 + |y_\perp|^2}{2\sigma^2}
           + \log\Gamma(\nu+1) + \nu\log\frac 2z + \log\big(e^{-z} I_\nu(z)\big)

(the :math:`e^{z}` of :math:`I_\nu` is absorbed into the square, so no cancellation), and, differentiating
:math:`\log(z^{-\nu}I_\nu(z))' = I_{\nu+1}(z)/I_\nu(z) =: r_\nu(z)`, Tweedie's formula gives

.. math::  D(y) = E[X_0\mid X_t = y] = R\,r_\nu(z)\,\frac{y_\parallel}{|y_\parallel|},\qquad
           \nabla\log p_t(y) = \frac{\lambda D(y) - y}{\sigma^2}.

:math:`D_\perp = 0` exactly, :math:`|D| = R\,r_\nu(z) < R` (:math:`0\le r_\nu < 1`), and :math:`D\to R\hat y_\parallel`
as :math:`t\to 0` (:math:`z\to\infty`); at :math:`y_\parallel = 0`, :math:`D = 0` (the limit, by symmetry).

**The Bessel ratio** :func:`bessel_ratio`, :math:`r_\nu(z) = I_{\nu+1}(z)/I_\nu(z)`, in float64 for every
:math:`z\ge 0` and :math:`0\le\nu\le 128`:

* :math:`z\le\nu + 1` (where :math:`e^{-z}I_\nu` underflows for large :math:`\nu`): the backward recurrence
  :math:`r_\mu = z/(2(\mu+1) + z\,r_{\mu+1})` from :math:`\mu = \nu + 64`, started at Amos's bound
  :math:`z/(\mu + \tfrac12 + \sqrt{(\mu+\tfrac12)^2 + z^2})`; an error in :math:`r_{\mu+1}` is multiplied by
  :math:`r_\mu^2\le 0.2` per step, so the start's error is gone after 64 steps.  Carried as :math:`s = r/z`
  (:math:`s\to 1/(2\nu+2)` at :math:`z = 0`), so the denoiser :math:`R\lambda R\,s(z)\,y_\parallel/\sigma^2`
  has no 0/0 at :math:`y_\parallel = 0`.
* :math:`\nu + 1 < z < Z(\nu)`: the ratio of exponentially scaled ``scipy.special.ive`` (no overflow; both
  factors are normal numbers there); at :math:`\nu = 1/2` the closed form :math:`(\coth z - 1/z)/z`
  (:func:`_half_ratio_over_z`, within 27u).
* :math:`z\ge Z(\nu)` (:func:`_asy_start`; Amos's routines lose accuracy from about 1e7 on, and beyond 1e9 return
  NaN): the ratio of the two asymptotic series :math:`\sqrt{2\pi z}\,e^{-z}I_\mu(z)\sim\sum_j (-1)^j a_j(\mu)/z^j`,
  :math:`a_j(\mu) = \prod_{i\le j}(4\mu^2 - (2i-1)^2)/(j!\,8^j)`, with 8 terms, :math:`\mu = \nu, \nu + 1`.
  :math:`Z(\nu) = \min(10^7, \max(20, (32|a_8(\mu)|/u)^{1/8}))` (the larger over the two orders): there twice
  the first omitted term, :math:`2|a_8(\mu)|z^{-8}\le u/16` (DLMF 10.40(ii)), and the omitted exponentially
  small part of :math:`I_\mu`, relative :math:`e^{-2z}\le e^{-40} < u/26`, leave each series within
  :math:`u/10` of its value and the ratio within :math:`u/5` (plus the rounding of the 8 terms, a few u; the
  mpmath test holds the branch to :data:`RATIO_REL_ERR`).  :math:`Z = 20` for :math:`\nu = 1/2` (the series of
  half-integer orders terminate: :math:`a_8 = 0`), 193.7 for :math:`\nu = 0` and 203.1 for :math:`\nu = 1`.
  Before 2026-12-06 (stop 41) the branch started at :math:`10^7` for every order: the ``ive`` calls it replaces
  were about a third of ``support.high_dim_spheres``' Bessel time (its times :math:`t\lesssim 0.003`-0.025).
  Limits: :math:`r_\nu(z)\approx z/(2\nu+2)` at 0 and
  :math:`1 - (2\nu+1)/(2z) + (4\nu^2-1)/(8z^2)` at infinity.

Claim body :func:`sphere_measurements` (to be wrapped with ``@claim`` in ``claims.py``): see its docstring and
the note.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np
from scipy.special import gammaln, ive
from scipy.stats import binom, chi, chi2

from numerics.checks.claim import Measurement
from numerics.constants import UNIT_ROUNDOFF as U
from numerics.grids import time_grid
from numerics.papers.support.sweeps import branched_ends, ks_ratio, point_mass_law, point_mass_step
from numerics.schedule import alpha_sigma2
from numerics.stats import ENSEMBLE_LEVEL
from numerics.validate import check_choice, check_int, check_label, check_points, check_positive, check_time

__all__ = ["MAX_D", "bessel_ratio", "bessel_ratio_over_z", "log_bessel_scaled", "SphereTarget", "CONTROLS",
           "radial_recursion", "radial_ends", "median_lower_quantile", "sphere_measurements"]



#: Largest ambient dimension of :class:`SphereTarget`.
MAX_D = 256
#: Backward-recurrence depth of the small-z branch of :func:`bessel_ratio`.
_DEPTH = 64
#: Start of the asymptotic branch.
_Z_ASY = 1e7
#: Terms of the asymptotic series.
_N_ASY = 8
#: Least start of the asymptotic branch of :func:`bessel_ratio_over_z` (:func:`_asy_start`): from there the
#: exponentially small part :math:`e^{-2z}` of :math:`I_\mu` that the series omits is below u/26.
_Z_ASY_MIN = 20.0


def _check_nu(nu) -> float:
    v = check_positive(nu, "nu", allow_zero=True)
    if v > MAX_D / 2:
        raise ValueError(f"nu: must be <= {MAX_D / 2:g} (spheres in dimension <= {MAX_D}), got {nu!r}")
    return v


def _check_z(z) -> np.ndarray:
    try:
        arr = np.asarray(z, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"z: must be real numbers >= 0 ({exc})") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("z: must be finite and >= 0")
    return arr


def _asy_series(mu: float, z: np.ndarray) -> np.ndarray:
    r""":math:`\sum_{j<8} (-1)^j a_j(\mu) z^{-j}` (the scaled :math:`\sqrt{2\pi z}e^{-z}I_\mu(z)`)."""
    out = np.ones_like(z)
    term = np.ones_like(z)
    m4 = 4.0 * mu * mu
    for j in range(1, _N_ASY):
        term = term * (-(m4 - (2 * j - 1) ** 2) / (j * 8.0 * z))
        out = out + term
    return out


@lru_cache(maxsize=64)
def _asy_start(nu: float) -> float:
    r""":math:`Z(\nu) = \min(10^7, \max(20, (32\max_\mu|a_8(\mu)|/u)^{1/8}))`, :math:`\mu\in\{\nu, \nu + 1\}`: where
    :func:`bessel_ratio_over_z` starts its asymptotic branch (module docstring: twice the first omitted term,
    :math:`2|a_8(\mu)|z^{-8}`, is at most u/16 there).  Memoised on the exact ``nu``."""
    worst = 0.0
    for mu in (nu, nu + 1.0):
        a, m4 = 1.0, 4.0 * mu * mu
        for j in range(1, _N_ASY + 1):  # a_8(mu) = prod_{j <= 8} (4 mu^2 - (2j - 1)^2) / (8 j)
            a *= (m4 - (2 * j - 1) ** 2) / (j * 8.0)
        worst = max(worst, abs(a))
    return min(_Z_ASY, max(_Z_ASY_MIN, (32.0 * worst / U) ** (1.0 / _N_ASY)))


@numba.njit(cache=True)
def _recurrence_kernel(nu: float, zs: np.ndarray, depth: int, a2: float) -> np.ndarray:
    """Per element: start ``1/(a + sqrt(a2 + z z))`` (a = nu + depth + 1/2, ``a2`` = a**2 as Python computes it),
    then ``s = 1/(2 (nu + j) + (z z) s)`` for j = depth, ..., 1: the same float64 operations in the same order as
    :func:`_ratio_over_z_small_numpy`, so bit-identical to it."""
    a = nu + depth + 0.5
    zz = zs * zs
    s = np.empty_like(zs)
    for i in range(zs.size):
        s[i] = 1.0 / (a + np.sqrt(a2 + zz[i]))
    for j in range(depth, 0, -1):  # elements innermost: independent divisions overlap in the pipeline
        c = 2.0 * (nu + j)
        for i in range(zs.size):
            s[i] = 1.0 / (c + zz[i] * s[i])
    return s


def _ratio_over_z_small(nu: float, zs: np.ndarray) -> np.ndarray:
    r"""The backward recurrence of :func:`bessel_ratio_over_z` (branch :math:`z\le\nu + 1`): :math:`s_\mu` at
    :math:`\mu = \nu + 64` from Amos's bound :math:`1/(\mu + \tfrac12 + \sqrt{(\mu+\tfrac12)^2 + z^2})`, then
    :math:`s_{\mu-1} = 1/(2\mu + z^2 s_\mu)` down to :math:`s_\nu` (compiled: :func:`_recurrence_kernel`)."""
    mu = nu + _DEPTH
    return _recurrence_kernel(float(nu), np.ascontiguousarray(zs, dtype=np.float64), _DEPTH, (mu + 0.5) ** 2)


def _ratio_over_z_small_numpy(nu: float, zs: np.ndarray) -> np.ndarray:
    """The former NumPy form of :func:`_ratio_over_z_small` (the reference the tests compare the kernel with)."""
    mu = nu + _DEPTH
    # r_mu ~ Amos's upper bound; s = r/z
    s = 1.0 / (mu + 0.5 + np.sqrt((mu + 0.5) ** 2 + zs * zs))
    for j in range(_DEPTH, 0, -1):  # s_{mu-1} = 1/(2 mu + z^2 s_mu)
        s = 1.0 / (2.0 * (nu + j) + zs * zs * s)
    return s


def _series_split(nu: float, z) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(nu, z, z.ravel(), an output buffer, the mask z <= nu + 1)``: the validated arguments of the Bessel
    kernels and the mask of their series branch."""
    nu = _check_nu(nu)
    z = _check_z(z)
    flat = z.ravel()
    return nu, z, flat, np.empty_like(flat), flat <= nu + 1.0


def _half_ratio_over_z(z: np.ndarray) -> np.ndarray:
    r""":math:`s_{1/2}(z) = (\coth z - 1/z)/z` in closed form (:math:`I_{1/2} = \sqrt{2/\pi z}\sinh z`,
    :math:`I_{3/2} = \sqrt{2/\pi z}(\cosh z - \sinh z/z)`), for the middle branch :math:`3/2 < z < 20` of
    :func:`bessel_ratio_over_z` at :math:`\nu = 1/2` (the 2-sphere), where ``ive`` costs about 0.5 us per value.

    Rounding: NumPy's ``tanh`` within 4 ulp (8u), so :math:`\coth z = 1/\tanh z` within 9u and :math:`1/z`
    within u; the difference has condition number :math:`(\coth z + 1/z)/(\coth z - 1/z)\le 4.3` at
    :math:`z = 3/2` (decreasing in z; 2.0 at z = 3), so the result is within
    :math:`(1.105\cdot 9 + 0.667)u/0.438 + 2u\le 27u` of :math:`s_{1/2}`, inside :data:`RATIO_REL_ERR` (32u;
    ``ive``'s ratio, which it replaces since 2026-12-06, stop 41, is held to the same bound by the mpmath test)."""
    return (1.0 / np.tanh(z) - 1.0 / z) / z


def bessel_ratio_over_z(nu: float, z) -> np.ndarray:
    r""":math:`s_\nu(z) = r_\nu(z)/z = I_{\nu+1}(z)/(z I_\nu(z))` for :math:`z\ge 0`, with :math:`s_\nu(0) = 1/(2\nu+2)`.

    Parameters
    ----------
    nu : float
        Order, :math:`0\le\nu\le 128`.
    z : array_like
        Arguments, finite and :math:`\ge 0`.

    Returns
    -------
    numpy.ndarray
        Same shape as ``z``, float64 (see the module docstring for the three branches).

    Raises
    ------
    ValueError
        ``nu`` out of range, or ``z`` negative or not finite.
    """
    nu, z, flat, out, small = _series_split(nu, z)
    if np.any(small):
        out[small] = _ratio_over_z_small(nu, flat[small])
    z_asy = _asy_start(nu)
    mid = (~small) & (flat < z_asy)
    if np.any(mid):
        zm = flat[mid]
        out[mid] = _half_ratio_over_z(zm) if nu == 0.5 else ive(nu + 1.0, zm) / ive(nu, zm) / zm
    big = flat >= z_asy
    if np.any(big):
        zb = flat[big]
        out[big] = _asy_series(nu + 1.0, zb) / _asy_series(nu, zb) / zb
    return out.reshape(z.shape)


def bessel_ratio(nu: float, z) -> np.ndarray:
    r""":math:`r_\nu(z) = I_{\nu+1}(z)/I_\nu(z)\in[0, 1)` for :math:`z\ge 0`, stable for every :math:`z`
    (:func:`bessel_ratio_over_z` times z; same parameters)."""
    z = _check_z(z)
    return bessel_ratio_over_z(nu, z) * z


def log_bessel_scaled(nu: float, z) -> np.ndarray:
    r""":math:`\log\big(\Gamma(\nu+1)(2/z)^\nu e^{-z} I_\nu(z)\big)` for :math:`z\ge 0` (0 at z = 0): the log of the
    von Mises-Fisher average :math:`E_u e^{z(\langle e,u\rangle - 1)}`.

    For :math:`z\le\nu+1` the power series :math:`\sum_m (z^2/4)^m\Gamma(\nu+1)/(m!\,\Gamma(\nu+m+1))` (ratio of
    terms :math:`z^2/(4m(\nu+m))`, summed until the term is below u of the sum), minus z; above, ``ive``; from
    1e7 on, the asymptotic series."""
    nu, z, flat, out, small = _series_split(nu, z)
    if np.any(small):
        zs = flat[small]
        q = zs * zs / 4.0
        total, term = np.ones_like(zs), np.ones_like(zs)
        m = 1
        while True:
            term = term * q / (m * (nu + m))
            total = total + term
            if np.all(term <= 1e-17 * total) or m > 2000:
                break
            m += 1
        out[small] = np.log(total) - zs
    rest = ~small
    if np.any(rest):
        zr = flat[rest]
        mid = zr < _Z_ASY
        lg = np.empty_like(zr)
        lg[mid] = np.log(ive(nu, zr[mid]))
        zb = zr[~mid]
        lg[~mid] = np.log(_asy_series(nu, zb)) - 0.5 * np.log(2 * np.pi * zb)
        out[rest] = gammaln(nu + 1.0) + nu * np.log(2.0 / zr) + lg
    return out.reshape(z.shape)


class SphereTarget:
    r"""The uniform law on the round sphere :math:`\{|x_\parallel| = R, x_\perp = 0\}\cong S^k` in :math:`\mathbb R^d`
    (:math:`x_\parallel` the first k + 1 coordinates), with exact OU-noised score and denoiser; a
    :class:`numerics.target.Target` with one class.

    Parameters
    ----------
    k : int
        Dimension of the sphere, :math:`k\ge 1` (1: a circle).
    d : int
        Ambient dimension, :math:`k + 1\le d\le 256`.
    R : float
        Radius, finite and > 0.

    Raises
    ------
    ValueError
        Naming ``k``, ``d`` or ``R``.

    Notes
    -----
    :math:`\nu = (k-1)/2`; :math:`D(y) = R\,r_\nu(z)\,\hat y_\parallel`, :math:`z = \lambda R|y_\parallel|/\sigma^2`;
    score :math:`(\lambda D - y)/\sigma^2` (module docstring).  ``nu`` may be overridden after construction
    (the claim's ``bessel_order`` control sets :math:`\nu = k/2`, a sphere of the wrong dimension).
    """

    n_classes = 1

    def __init__(self, k: int, d: int, R: float = 1.0) -> None:
        self.k = check_int(k, "k", 1, MAX_D - 1)
        self.d = check_int(d, "d", self.k + 1, MAX_D)
        self.R = check_positive(R, "R")
        self.nu = (self.k - 1) / 2.0

    def __repr__(self) -> str:
        return f"SphereTarget(k={self.k}, d={self.d}, R={self.R!r})"

    # ------------------------------------------------------------------ geometry
    def _points(self, x) -> np.ndarray:
        return check_points(x, self.d, "x")[0]

    def split(self, x) -> tuple[np.ndarray, np.ndarray]:
        """``(x_par, x_perp)``: the first k + 1 coordinates and the other d - k - 1 (views of a (N, d) copy)."""
        x = self._points(x)
        return x[:, : self.k + 1], x[:, self.k + 1:]

    def normal_parts(self, x) -> tuple[np.ndarray, np.ndarray]:
        r"""``(e, p)``: the radial offset :math:`e = |x_\parallel| - R` and the off-span norm :math:`p = |x_\perp|`,
        so that the distance to the sphere is :math:`\sqrt{e^2 + p^2}` (the nearest point is
        :math:`R\hat x_\parallel`; the tangential position :math:`\hat x_\parallel` is the rest)."""
        xp, xq = self.split(x)
        return np.linalg.norm(xp, axis=1) - self.R, np.linalg.norm(xq, axis=1)

    def distance(self, x) -> np.ndarray:
        r"""Distance to the sphere, :math:`\sqrt{(|x_\parallel| - R)^2 + |x_\perp|^2}`."""
        e, p = self.normal_parts(x)
        return np.hypot(e, p)

    # ------------------------------------------------------------------ fields
    def _z(self, x, t):
        t = check_time(t)
        lam, s2 = alpha_sigma2(t)
        x = self._points(x)
        rho = np.linalg.norm(x[:, : self.k + 1], axis=1)
        return x, rho, lam, s2, lam * self.R * rho / s2

    def _factor(self, rho, lam, s2, z) -> np.ndarray:
        r""":math:`R\,r_\nu(z)/|y_\parallel|` (= :math:`R\lambda R s_\nu(z)/\sigma^2`, finite at :math:`\rho = 0`)."""
        return self.R * (lam * self.R / s2) * bessel_ratio_over_z(self.nu, z)

    def denoiser(self, x, t: float) -> np.ndarray:
        r""":math:`E[X_0\mid X_t = x] = R\,r_\nu(z)\,\hat x_\parallel` (0 off the span, 0 at :math:`x_\parallel = 0`)."""
        x, rho, lam, s2, z = self._z(x, t)
        out = np.zeros_like(x)
        out[:, : self.k + 1] = self._factor(rho, lam, s2, z)[:, None] * x[:, : self.k + 1]
        return out

    def score(self, x, t: float) -> np.ndarray:
        r""":math:`\nabla\log p_t(x) = (\lambda D - x)/\sigma^2`."""
        x, rho, lam, s2, z = self._z(x, t)
        out = x / -s2  # = (-x)/s2 exactly (division rounds sign-symmetrically), one pass over x instead of two
        out[:, : self.k + 1] += (lam / s2) * self._factor(rho, lam, s2, z)[:, None] * x[:, : self.k + 1]
        return out

    def log_density(self, x, t: float) -> np.ndarray:
        r""":math:`\log p_t(x)` (normalised; module docstring)."""
        x, rho, lam, s2, z = self._z(x, t)
        perp2 = np.sum(x[:, self.k + 1:] ** 2, axis=1)
        return (-0.5 * self.d * math.log(2 * math.pi * s2) - ((rho - lam * self.R) ** 2 + perp2) / (2 * s2)
                + log_bessel_scaled(self.nu, z))

    def guidance_vector(self, x, t: float, y: int) -> np.ndarray:
        r"""One class: :math:`p_t(0\mid x) = 1`, so :math:`\nabla\log p_t(0\mid x) = 0`."""
        check_label(y, self.n_classes, "y")
        check_time(t)
        return np.zeros_like(self._points(x))

    def conditional_score(self, x, t: float, y: int) -> np.ndarray:
        r"""One class: the class score is the score."""
        check_label(y, self.n_classes, "y")
        return self.score(x, t)


# ====================================================================================================
# Claim body (proofs_notes/support.md#high-dim-spheres); the lead wraps it with @claim in claims.py
# ====================================================================================================
#: Deterministic and stochastic samplers the claim runs.
DETERMINISTIC: tuple[str, ...] = ("ddim", "ei_ode")
STOCHASTIC: tuple[str, ...] = ("ddpm", "ei_sde_code")
#: Relative accuracy of :func:`bessel_ratio` for nu <= 64 (tests/test_support_spheres.py checks it against
#: 30-digit mpmath), used in the rounding bound of :func:`radial_recursion`.
RATIO_REL_ERR = 32 * U
#: The controls the claim declares (name -> the bug in one line).
CONTROLS: dict[str, str] = {
    "alpha_dropped": "the score converted from the denoiser without lambda: (D - y)/sigma^2 (and D from it by Tweedie)",
    "score_step_late": "the score evaluated one grid step late (at the step's end node)",
    "bessel_order": "the vMF ratio with nu = k/2 instead of (k-1)/2 (the sphere's dimension off by one)",
    "float32_score": "the score computed in float32 (denoiser from it by Tweedie)",
}


def _score_coeffs(method: str, t: float, s: float) -> tuple[float, float]:
    r"""``(|c_x|, |c_q|)`` of the sampler's own update :math:`c_x y + c_q q` in exact arithmetic (used only for the
    size of its rounding): denoiser methods :math:`(a_k, b_k)`; score methods :math:`(e^h, m(e^h - 1))`."""
    h = t - s
    if method in ("ei_ode", "ei_sde", "ei_sde_code"):
        m = 1.0 if method == "ei_ode" else 2.0
        return math.exp(h), m * math.expm1(h)
    a, b, _ = point_mass_step(method, t, s)
    return abs(a), abs(b)


#: Memo of :func:`radial_recursion` on its exact inputs (the stated run and each control share the starts).
_RADIAL_MEMO: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_RADIAL_MEMO_SIZE = 64


def radial_recursion(method: str, grid: np.ndarray, rho0: np.ndarray, R: float, nu: float,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The radius of a deterministic sampler on the sphere target: :math:`\rho_{j+1} = a_j\rho_j + b_j R\,
    r_\nu(\lambda_{t_j}R\rho_j/\sigma_{t_j}^2)` with the hand-derived point-mass coefficients
    (:func:`numerics.papers.support.sweeps.point_mass_step`), and a rounding bound :math:`E_N` of
    :math:`|y_{\parallel,N} - \rho_N\hat z_\parallel|`.

    The step :math:`y\mapsto a y + f(|y|)\hat y`, :math:`f(\rho) = bRr_\nu(\lambda R\rho/\sigma^2)`, has Jacobian
    :math:`aI + f'\hat y\hat y^T + (f/\rho)(I - \hat y\hat y^T)`, of norm :math:`L = a + \max(f', f/\rho)`, so an
    error propagates as :math:`E_{j+1} = L_j E_j + \ell_j` with the local rounding
    :math:`\ell_j = 8u(|c_x|\rho_j + |c_q| Q_j) + (k + 3)u\,bR + 2\epsilon_r bR` (:math:`Q = R` for a denoiser
    update, :math:`(\rho + \lambda R)/\sigma^2` for a score update; :math:`(k+3)u` the norm of
    :math:`y_\parallel`; :math:`\epsilon_r` = :data:`RATIO_REL_ERR`).

    Parameters
    ----------
    method : {"ddim", "ei_ode"}
    grid : numpy.ndarray
        Decreasing OU times.
    rho0 : numpy.ndarray
        Start radii :math:`|z_\parallel|`.
    R, nu : float
        Radius and Bessel order.
    k : int
        Sphere dimension (for the norm's rounding).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        :math:`\rho_N` and :math:`E_N`, per sample (memoised on the exact inputs: the stated run and every control
        of the claim ask for the same starts; copies are returned).
    """
    method = check_choice(method, "method", DETERMINISTIC)
    grid = np.ascontiguousarray(grid, dtype=np.float64)
    rho = np.array(rho0, dtype=np.float64)
    key = _radial_key(method, grid, rho, R, nu, k)
    if key not in _RADIAL_MEMO:
        _remember(key, _radial_recursion(method, grid, rho, R, nu, k))
    return tuple(a.copy() for a in _RADIAL_MEMO[key])


def _radial_key(method: str, grid: np.ndarray, rho: np.ndarray, R: float, nu: float, k: int) -> tuple:
    """The memo key of :func:`radial_recursion`: every input by its exact bits."""
    return (method, grid.tobytes(), rho.shape, rho.tobytes(), float(R), float(nu), int(k))


def radial_ends(method: str, grids: dict, deltas: list[float], rho0: np.ndarray, R: float, nu: float,
                k: int) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    r""":func:`radial_recursion` on every grid of ``grids`` (``delta -> grid``, ``deltas`` decreasing, each grid the
    smallest delta's grid up to its last node: ``ValueError`` naming ``grids`` otherwise), equal bit for bit to one
    call per grid: the recursion's step at :math:`(t, s)` is a function of :math:`(\rho, E, t, s)` alone, so one pass
    along the smallest delta's grid, branched one step from each larger grid's last shared node, gives every grid's
    :math:`(\rho_N, E_N)` at the cost of the longest pass plus one step per delta.  The results are stored in
    :func:`radial_recursion`'s memo (the claim's controls ask for the same ones); copies are returned."""
    method = check_choice(method, "method", DETERMINISTIC)
    rho = np.array(rho0, dtype=np.float64)
    full = np.ascontiguousarray(grids[deltas[-1]], dtype=np.float64)
    keys = {delta: _radial_key(method, np.ascontiguousarray(grids[delta], dtype=np.float64), rho, R, nu, k)
            for delta in deltas}
    if any(key not in _RADIAL_MEMO for key in keys.values()):
        state, pos = (rho, np.zeros_like(rho)), 0
        for delta in deltas:
            grid = np.ascontiguousarray(grids[delta], dtype=np.float64)
            j = grid.size - 2
            if not np.array_equal(grid[:-1], full[:j + 1]):
                raise ValueError(f"grids: the grid of delta={delta!r} is not the smallest delta's grid up to its last node")
            for i in range(pos, j):
                state = _radial_step(method, float(full[i]), float(full[i + 1]), *state, R, nu, k)
            pos = j
            _remember(keys[delta], _radial_step(method, float(grid[j]), float(grid[j + 1]), *state, R, nu, k))
    return {delta: tuple(a.copy() for a in _RADIAL_MEMO[key]) for delta, key in keys.items()}


def _remember(key: tuple, value: tuple[np.ndarray, np.ndarray]) -> None:
    """Store ``value`` in :data:`_RADIAL_MEMO`, dropping the oldest entry beyond :data:`_RADIAL_MEMO_SIZE`."""
    if key not in _RADIAL_MEMO and len(_RADIAL_MEMO) >= _RADIAL_MEMO_SIZE:
        _RADIAL_MEMO.pop(next(iter(_RADIAL_MEMO)))
    _RADIAL_MEMO[key] = value


def _radial_recursion(method: str, grid: np.ndarray, rho: np.ndarray, R: float, nu: float,
                      k: int) -> tuple[np.ndarray, np.ndarray]:
    """The loop of :func:`radial_recursion` (``rho``: the start radii, float64)."""
    err = np.zeros_like(rho)
    for t, s in zip(map(float, grid[:-1]), map(float, grid[1:])):
        rho, err = _radial_step(method, t, s, rho, err, R, nu, k)
    return rho, err


def _radial_step(method: str, t: float, s: float, rho: np.ndarray, err: np.ndarray, R: float, nu: float,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    r"""One step :math:`t\to s` of :func:`radial_recursion`: :math:`(\rho, E)` at s from :math:`(\rho, E)` at t."""
    a, b, _ = point_mass_step(method, t, s)
    lam, s2 = math.exp(-t), -math.expm1(-2 * t)
    g = lam * R / s2
    z = g * rho
    q = bessel_ratio_over_z(nu, z)  # r/z
    r = q * z
    f_over_rho = b * R * g * q
    f_prime = b * R * g * (1.0 - r * r - (2 * nu + 1) * q)
    cx, cq = _score_coeffs(method, t, s)
    Q = R if method == "ddim" else (rho + lam * R) / s2
    local = 8 * U * (cx * rho + cq * Q) + (k + 3) * U * b * R + 2 * RATIO_REL_ERR * b * R
    return a * rho + b * R * r, (a + np.maximum(f_prime, f_over_rho)) * err + local


class _BuggySphere(SphereTarget):
    r"""The stated :class:`SphereTarget` with one bug of :data:`CONTROLS` in its score, and the denoiser by Tweedie
    from that score, :math:`(x + \sigma_t^2 s)/\alpha_t`, exactly as :class:`numerics.target.ScoreModel` makes it
    (same float64 operations; the claim formerly wrapped these scores in ScoreModel lambdas)."""

    def __init__(self, tg: SphereTarget, bug: str, grid: np.ndarray) -> None:
        super().__init__(tg.k, tg.d, tg.R)
        self.nu = tg.nu
        self.bug = check_choice(bug, "bug", ("alpha_dropped", "score_step_late", "float32_score"))
        self._next = {float(t): float(s) for t, s in zip(grid[:-1], grid[1:])}

    def score(self, x, t: float) -> np.ndarray:
        """The buggy score (:data:`CONTROLS`)."""
        if self.bug == "alpha_dropped":
            return (super().denoiser(x, t) - x) / -math.expm1(-2 * t)
        if self.bug == "score_step_late":
            return super().score(x, self._next.get(t, t))
        return super().score(x, t).astype(np.float32).astype(np.float64)

    def denoiser(self, x, t: float) -> np.ndarray:
        r"""Tweedie's :math:`(x + \sigma_t^2 s)/\alpha_t` from the buggy score."""
        a, s2 = alpha_sigma2(check_time(t))
        return (x + s2 * self.score(x, t)) / a


def _buggy(tg: SphereTarget, grid: np.ndarray, bug: str | None) -> SphereTarget:
    """The stated target or a realistic bug of it (see :data:`CONTROLS`)."""
    if bug is None:
        return tg
    if bug == "bessel_order":
        bad = SphereTarget(tg.k, tg.d, tg.R)
        bad.nu = tg.k / 2.0
        return bad
    if bug in ("alpha_dropped", "score_step_late", "float32_score"):
        return _BuggySphere(tg, bug, grid)
    raise ValueError(f"bug: unknown {bug!r}")


@lru_cache(maxsize=64)
def median_lower_quantile(n: int, alpha: float) -> float:
    r"""The largest :math:`\beta` with :math:`P(\mathrm{Bin}(n, \beta)\ge j)\le\alpha`, :math:`j = \lceil n/2\rceil`: the
    sample median of n i.i.d. draws of X (``np.median``, :math:`\ge X_{(j)}`) is :math:`\ge F_X^{-1}(\beta)` with
    probability :math:`\ge 1 - \alpha` (:math:`X_{(j)} < F^{-1}(\beta)` iff at least j draws fall below it).
    Memoised on the exact ``(n, alpha)``: the claim asks for the same pair once per run and sample size."""
    j = (n + 1) // 2
    lo, hi = 0.0, 0.5
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if binom.sf(j - 1, n, mid) <= alpha:
            lo = mid
        else:
            hi = mid
    return lo




def sphere_measurements(ctx) -> list[Measurement]:
    r"""Curved supports in high dimension (note ``#high-dim-spheres``): :class:`SphereTarget` ``(k, d)`` sampled
    unguided from :math:`y_0 = z\sim N(0, I_d)` on ``time_grid("geometric", T=5, delta, kappa)``.

    Per (method, k), over every d and delta of the profile:

    * ``perp law``: the d - k - 1 coordinates off the sphere's span follow the point-mass law with c = 0,
      :math:`y_\perp = A z_\perp + N(0, V I)` (:func:`point_mass_law`).  Deterministic: max over samples of
      :math:`|y_\perp - A z_\perp|` over the rounding bound :math:`8Nu(\max|y_\perp| + \max|z_\perp|)(1 + A)` (<= 1).
      Stochastic: KS of the n(d - k - 1) values :math:`y_\perp/r_\delta` against N(0, 1) at level
      :math:`(1 - \text{ENSEMBLE\_LEVEL})/J`, J runs (<= 1).
    * ``radial recursion`` (deterministic): :math:`y_{\parallel,N} = \rho_N\hat z_\parallel` with :math:`\rho_N` from
      :func:`radial_recursion`, per sample within its propagated rounding bound (<= 1).
    * ``normal distance``: deterministic: the median of :math:`\mathrm{dist}/(\sigma_\delta\sqrt{d-k})` equals the
      exact law's on the same starts, :math:`\mathrm{dist}_i = \sqrt{(\rho_{N,i} - R)^2 + A^2|z_{\perp,i}|^2}`, within
      the largest per-sample rounding bound.  Stochastic: the lower bound :math:`\mathrm{dist}\ge|y_\perp|`,
      :math:`|y_\perp|/r_\delta\sim\chi_{d-k-1}`: the sample median of dist / r_delta is at least
      :math:`F_{\chi_{d-k-1}}^{-1}(\beta)` (:func:`median_lower_quantile` at level :math:`(1 - \text{ENSEMBLE\_LEVEL})/J`).
    * informational: the table of :math:`\mathrm{median\ dist}/(\sigma_\delta\sqrt{d-k})` against the flat-limit
      value :math:`(r_\delta/\sigma_\delta)\sqrt{m(\chi^2_{d-k})/(d-k)}`, the radial offset's quantiles (units of
      :math:`r_\delta`), and the tangential part (mean resultant length of :math:`\hat y_\parallel`, left free).

    Runs: one per (method, k, d) along the smallest delta's grid, each larger delta's end one step branched from its
    grid's last shared node (:func:`~numerics.papers.support.sweeps.branched_ends`, bit for bit a run per grid;
    the radial recursion likewise, :func:`radial_ends`).  The stochastic samplers draw the counter-based block
    stream ``sample(..., noise="blocks")`` with one seed per (method, k, d), shared by its deltas (whose runs then
    share their noise up to their last step; the J tests are combined by a union bound, valid under dependence)
    and by the stated run and every control.
    """
    p = ctx.params
    n, ds, ks, R, kappa = p["n"], list(p["ds"]), list(p["ks"]), float(p["R"]), float(p["kappa"])
    deltas = sorted(p["deltas"], reverse=True)
    methods = list(p["methods"])
    alpha = 1.0 - ENSEMBLE_LEVEL
    J = len(ds) * len(deltas)
    grids = {delta: time_grid("geometric", T=5.0, delta=delta, kappa=kappa) for delta in deltas}
    starts = {(k, d): ctx.rng.standard_normal((n, d)) for k in ks for d in ds}
    out: list[Measurement] = []
    table: list[dict] = []
    for method in methods:
        stochastic = method in STOCHASTIC
        key = f"{method}"
        ctx.plot.panel(key, title=method, xlabel=r"$\delta$",
                       ylabel=r"median dist / $(\sigma_\delta\sqrt{d-k})$", xscale="log", yscale="log")
        for k in ks:
            worst_perp, worst_rad, worst_med = 0.0, 0.0, 0.0
            min_lower = math.inf
            rows = []
            for d in ds:
                z = starts[(k, d)]
                tg = SphereTarget(k, d, R)
                zpar, zperp = z[:, : k + 1], z[:, k + 1:]
                meas, pred = [], []
                seed = (ctx.sub_seed + 7919 * methods.index(method) + 104729 * k + 13 * d) % 2**63
                noise = {"seed": seed, "noise": "blocks"} if stochastic else {}
                ends = branched_ends(lambda g, tg=tg: _buggy(tg, g, ctx.control), method, grids, deltas, z, **noise)
                radial = None if stochastic else radial_ends(method, grids, deltas, np.linalg.norm(zpar, axis=1), R,
                                                             (k - 1) / 2.0, k)
                for delta in deltas:
                    grid = grids[delta]
                    N = grid.size - 1
                    law = point_mass_law(method, grid)
                    r = law.radius
                    sig = math.sqrt(-math.expm1(-2 * delta))
                    y = ends[delta]
                    ypar, yperp = y[:, : k + 1], y[:, k + 1:]
                    e, pn = tg.normal_parts(y)
                    dist = np.hypot(e, pn)
                    scale = sig * math.sqrt(d - k)
                    med = float(np.median(dist))
                    if stochastic:
                        worst_perp = max(worst_perp, ks_ratio((yperp / r).ravel(), alpha / J))
                        beta = median_lower_quantile(n, alpha / J)
                        lower = r * float(chi.ppf(beta, d - k - 1))
                        min_lower = min(min_lower, med / lower)
                        flat = r * math.sqrt(float(chi2.median(d - k)))
                        pred.append(flat / scale)
                    else:
                        tau = 8 * N * U * (np.max(np.abs(yperp)) + np.max(np.abs(zperp))) * (1 + law.A)
                        worst_perp = max(worst_perp, float(np.max(np.abs(yperp - law.A * zperp))) / tau)
                        rho0 = np.linalg.norm(zpar, axis=1)
                        rho_n, err = radial[delta]
                        dev = np.linalg.norm(ypar - (rho_n / rho0)[:, None] * zpar, axis=1)
                        worst_rad = max(worst_rad, float(np.max(dev / err)))
                        dist_law = np.hypot(rho_n - R, law.A * np.linalg.norm(zperp, axis=1))
                        med_law = float(np.median(dist_law))
                        bound = float(np.max(err)) + tau * math.sqrt(d - k - 1)
                        worst_med = max(worst_med, abs(med - med_law) / bound)
                        pred.append(med_law / scale)
                    meas.append(med / scale)
                    ez = e / r
                    rows.append({"method": method, "k": k, "d": d, "delta": delta, "r_over_sigma": r / sig,
                                 "median_dist_over_sigma_sqrt_dk": med / scale,
                                 "flat_limit": r * math.sqrt(float(chi2.median(d - k))) / scale,
                                 "radial_q05_q50_q95": [float(v) for v in np.quantile(ez, [0.05, 0.5, 0.95])],
                                 "tangential_resultant": float(np.linalg.norm(np.mean(
                                     ypar / np.linalg.norm(ypar, axis=1, keepdims=True), axis=0)))})
                ctx.plot.measured(key, deltas, meas, label=f"S^{k} d={d}")
                ctx.plot.predicted(key, deltas, pred, label=f"S^{k} d={d} ({'flat limit' if stochastic else 'exact law'})")
            name = f"{method} S^{k}"
            out.append(Measurement(
                name=f"perp law {name}", measured=worst_perp, predicted=1.0, kind="le", tol=0.0,
                reason=(f"KS statistic over its exact critical value at (1 - ENSEMBLE_LEVEL)/J, J = {J} runs"
                        if stochastic else "rounding bound 8 N u (max|y_perp| + max|z_perp|)(1 + A) is the unit"),
                extra={"ds": ds, "deltas": deltas}))
            if stochastic:
                out.append(Measurement(
                    name=f"normal distance lower bound {name}", measured=min_lower, predicted=1.0, kind="ge", tol=0.0,
                    reason=("dist >= |y_perp| ~ r chi_{d-k-1}: sample median >= r F^-1(beta), beta from the binomial "
                            f"law of the order statistics at (1 - ENSEMBLE_LEVEL)/J, J = {J}"),
                    extra={"rows": rows}))
            else:
                out.append(Measurement(
                    name=f"radial recursion {name}", measured=worst_rad, predicted=1.0, kind="le", tol=0.0,
                    reason="propagated rounding bound E_N of radial_recursion (Jacobian norm times error plus local "
                           "rounding per step) is the unit", extra={"ds": ds, "deltas": deltas}))
                out.append(Measurement(
                    name=f"normal distance {name}", measured=worst_med, predicted=1.0, kind="le", tol=0.0,
                    reason="per-sample |dist - dist_law| <= E_N + tau sqrt(d-k-1), so the medians differ by at most "
                           "the largest of these (the unit)", extra={"rows": rows}))
            table.extend(rows)
    out.append(Measurement(name="scaling table", measured=float(len(table)), predicted=float(len(table)),
                           kind="equal", tol=0.0, reason="informational", counted=False, extra={"rows": table}))
    return out

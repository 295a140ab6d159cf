r"""Exact-score targets beyond Gaussians: labelled mixtures of uniform laws on regions.

Time convention: OU forward time ``t > 0``, :math:`\lambda_t = \alpha_t = e^{-t}`,
:math:`\sigma_t^2 = 1 - e^{-2t}`.  Each component ``k`` is uniform on a region :math:`\Omega_k` (a box,
a sphere, or a planar disk / annulus / crescent / "lens").  Given :math:`X_t = y`, the posterior of
:math:`X_0` within component ``k`` is the uniform law on :math:`\Omega_k` tilted by the Gaussian kernel
:math:`N(x;\,\mu,\tau^2 I)` with :math:`\mu = y/\lambda`, :math:`\tau = \sigma/\lambda`.  Everything
follows from two numbers per component, the kernel mass :math:`M_k = \int_{\Omega_k} N(x;\mu,\tau^2 I)\,dx`
and the tilted mean :math:`c_k`:

* :math:`\log p_t(y\mid k) = \log M_k - \log|\Omega_k| - d\log\lambda` (full-dimensional regions;
  spheres use the normalised surface measure, closed form via Bessel functions);
* the score :math:`\nabla\log p_t(y) = (\lambda\,\bar m(y) - y)/\sigma^2`, :math:`\bar m = \sum_k\pi_k c_k`;
* the class-``y`` score with :math:`m_y` in place of :math:`\bar m`, and the guidance vector
  :math:`\lambda(m_y - \bar m)/\sigma^2`.

How :math:`M_k, c_k` are computed
--------------------------------
* **Box** :math:`\prod_j[a_j,b_j]`: closed form, a product of truncated normals, in log space
  (``scipy.special.log_ndtr``, upper tails by symmetry).
* **Sphere** :math:`c + R\,S^{d-1}`: closed form (von Mises-Fisher): with
  :math:`\kappa = \lambda R|y-\lambda c|/\sigma^2`, :math:`c_k = c + R\,\frac{I_{d/2}(\kappa)}{I_{d/2-1}(\kappa)}
  \frac{y-\lambda c}{|y-\lambda c|}`; exponentially scaled ``scipy.special.ive``.
* **Planar regions** (disk, annulus, crescent = disk minus a disk, lens): by vertical slices.  On each
  vertical line the region is a union of at most two intervals, and the Gaussian integral over an interval
  is closed form (truncated normal, log space).  The remaining 1-D integral in ``x`` is a composite
  Gauss-Legendre rule on panels that (i) are uniform in :math:`v = \operatorname{asinh}((x - x^*)/\tau)`,
  with :math:`x^*` the abscissa of the nearest point of the region to :math:`\mu` (so the rule resolves
  the kernel at every :math:`\tau`), (ii) break at every abscissa where the slice structure changes
  (sqrt-type endpoints), and (iii) use the substitution :math:`x = a + (b-a)\sin^2(\pi u/2)` that makes
  the sqrt endpoint behaviour analytic.  The window and the asinh panel edges are computed in NumPy (its
  ``sinh`` and ``arcsinh`` round differently from libm's); the nodes, weights and slice intervals
  (:func:`_point_nodes`, :func:`_disk_minus_disk_intervals`, :func:`_lens_intervals`) and the sums over them
  (:func:`_slice_point`; the interval masses by libm's ``erfc``, and by scipy's own ``log_ndtr`` where the whole
  interval lies more than 37 kernel widths from the kernel's centre, :func:`_log_gauss_interval_1`; it replaced
  NumPy broadcasting on 2026-12-06 and agrees with it to the rounding of the log weights) run compiled, point by
  point in one loop (:func:`_region_sums`, Numba; since 2026-12-06, stop 42, without storing the (points, nodes,
  intervals) arrays between them: the same floats as :meth:`_Planar.slice_inputs` followed by
  :func:`_slice_moments`, tested); the points of a call are independent, so from :data:`_SERIAL_NODES` node
  evaluations on they are spread over Numba's threads (each point in the work rows of the thread that runs it,
  allocated before the loop, and its own output row: the same floats for any thread count).  The sums skip a node whose log weight is
  provably more than :data:`_PRUNE_GAP` below the largest (its weight underflows to 0: bit for bit the same
  result); a slice with one piece of finite mass skips the log-sum-exp over its pieces, and an interval whose
  lower end lies so deep in the tail that ``expm1(log_ndtr(lo) - log_ndtr(hi))`` is -1.0 skips
  ``log_ndtr(lo)`` (:data:`_DEEP_TAIL`): both give the full formula's floats.  The planar components of a call (every
  region and point a step needs) are stacked into one compiled call (:func:`_joint_slice_moments`).  The posterior
  means (score, denoisers, guidance) leave out a component of a point whose weight in the softmax is provably below
  :math:`e^{-50}` (:meth:`RegionMixture._needed_moments`: its log weight bounded from the distance to the region,
  :meth:`_Planar.log_mass_bound`, more than :data:`_SOFTMAX_GAP` below a computed one; at small and intermediate t
  most components of a point near another region), so they are the full computation's floats up to
  :math:`2(K-1)e^{-50}` of the largest component mean, far below their rounding (tested; 800, exact underflow and
  bit for bit by construction, until stop 42); the softmax's normaliser is scipy's ``logsumexp`` formula by the same
  NumPy operations (:func:`_logsumexp_rows`, bit for bit);
  :meth:`RegionMixture.component_moments` still computes every component.  Panels are restricted to
  :math:`|x-\mu_x|^2 \le d_{\min}^2 + 2L\tau^2` (:math:`L = 40`: the dropped part of the integrand is
  below :math:`e^{-40}` of its peak).  The quadrature error is *estimated* by refinement
  (:meth:`RegionMixture.quadrature_error`: the same rule with twice the panels and nodes); the tests
  compare against independent references (non-central chi-square CDF for disks and annuli, the closed
  form for rectangles).  **Accuracy contract** (:data:`PLANAR_ACCURACY`, checked against an independent
  mpmath oracle by the claim ``support.geometry_oracle``): with the default rule, component log masses
  :math:`\ell_k` to :math:`10^{-6}(1 + |\ell_k|)` (far tails, where the kernel is much narrower than the
  distance to the region, lose relative accuracy in proportion to the exponent) and component means to
  ``1e-6`` times the diameter of the regions' bounding box, for :math:`t \ge 0.003`.  It is a specification (what a user of :class:`RegionMixture` may rely on), not an
  error bound derived from the rule: the rule's actual errors are far smaller once every kink of the slice
  lengths is a panel edge (about ``2e-8`` in the log density at ``t = 0.01``), and a missing break (the
  crescents' circle crossings, before it was added) breaks it by orders of magnitude (``7.6e-4``).

The authors' approximate score
------------------------------
``kernel="authors"`` reproduces the approximation of the support paper's code (see the note, section 1.2):
kernel :math:`\exp(-|x-y|^2/2\sigma^2)/(2\pi\sigma^2)` centred at ``y`` (no :math:`\lambda`), class weights not
divided by the areas, a fixed 20 x 20 trapezoid rule over the region ("curve" mode for regions with one
interval per slice, "bbox" mode -- bounding box x-range times [-5, 5], masked -- otherwise).  The score is
then :math:`(\lambda\bar m - y)/\sigma^2` with the approximate :math:`\bar m`.  It is *not* the exact score:
see ``proofs_notes/support.md`` and the claim ``support.score_identity``.
"""
from __future__ import annotations

import ctypes
import functools
import math

import llvmlite.binding as llvm
import numba
import numpy as np
import scipy
import scipy.special.cython_special as _cython_special
from scipy.special import gammaln, ive, log_ndtr, logsumexp

from numerics.constants import LOG_2PI
from numerics.schedule import alpha_sigma2
from numerics.validate import (as_float_array, check_array, check_choice, check_int, check_label, check_labels,
                               check_points, check_positive, check_real, check_time, check_weights)

__all__ = ["PLANAR_ACCURACY", "Box", "Sphere", "Disk", "Annulus", "Crescent", "Lens", "RegionMixture", "three_disks",
           "two_crescents", "LOG_CUTOFF"]

#: Relative cutoff of the planar quadrature: the dropped integrand is below exp(-LOG_CUTOFF) of its peak.
LOG_CUTOFF = 40.0
#: The planar quadrature's accuracy contract (module docstring): ``A(1 + |l_k|)`` on component log masses
#: ``l_k``, and ``A`` times the diameter of the regions' bounding box on component means.
PLANAR_ACCURACY = 1e-6
_LOG_SQRT_2PI = 0.5 * LOG_2PI


#: Largest disk radius (its area stays far inside float64).
MAX_RADIUS = 1e150


def _center(c, d: int | None, name: str = "center") -> np.ndarray:
    """A finite point of R^d (any d >= 1 if ``d`` is None)."""
    return check_array(c, name, (d,))


# ------------------------------------------------------------------------------- truncated normals
def log_gauss_interval(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    r""":math:`\log(\Phi(\beta) - \Phi(\alpha))` elementwise, stable in both tails (``-inf`` if empty)."""
    alpha, beta = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(beta, float))
    flip = alpha > 0
    lo = np.where(flip, -beta, alpha)
    hi = np.where(flip, -alpha, beta)
    lh, ll = log_ndtr(hi), log_ndtr(lo)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = lh + np.log(-np.expm1(ll - lh))
    return np.where(hi > lo, out, -np.inf)


def trunc_normal(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(log Z, m)`` with :math:`Z = \Phi(\beta)-\Phi(\alpha)` and :math:`m = (\phi(\alpha)-\phi(\beta))/Z`,
    the mean of a standard normal truncated to :math:`[\alpha, \beta]` (0 where the interval is empty)."""
    logZ = log_gauss_interval(alpha, beta)
    ok = np.isfinite(logZ)
    lz = np.where(ok, logZ, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        a2 = np.where(np.isfinite(alpha), alpha, 0.0)
        b2 = np.where(np.isfinite(beta), beta, 0.0)
        pa = np.where(np.isfinite(alpha), np.exp(-0.5 * a2 * a2 - _LOG_SQRT_2PI - lz), 0.0)
        pb = np.where(np.isfinite(beta), np.exp(-0.5 * b2 * b2 - _LOG_SQRT_2PI - lz), 0.0)
        m = np.where(ok, pa - pb, 0.0)
    return logZ, m


def _cython_special_address(name: str, signature: bytes) -> int:
    """Address of the C function ``name`` of ``scipy.special.cython_special`` with the C ``signature`` (its
    ``__pyx_capi__`` capsule; a fused function has one capsule per type, ``__pyx_fuse_<i><name>``, whose
    index is scipy's choice, so the capsule is picked by its signature).  ImportError if scipy has none."""
    get_name, get_ptr = ctypes.pythonapi.PyCapsule_GetName, ctypes.pythonapi.PyCapsule_GetPointer
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_ptr.restype, get_ptr.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    for key, cap in _cython_special.__pyx_capi__.items():
        if (key == name or (key.startswith("__pyx_fuse_") and key.endswith(name))) and get_name(cap) == signature:
            return get_ptr(cap, signature)
    raise ImportError(f"scipy.special.cython_special exports no {name} with the C signature {signature.decode()} "
                      f"(scipy {scipy.__version__}); numerics.papers.support.region_targets needs it")


# scipy's own double log_ndtr (the function behind the ufunc ``scipy.special.log_ndtr``), bound by symbol name so
# that Numba's on-disk cache stays valid across processes (the address is registered again at every import)
llvm.add_symbol("guidance_verify_scipy_log_ndtr",
                _cython_special_address("log_ndtr", b"double (double, int __pyx_skip_dispatch)"))
_log_ndtr_c = numba.types.ExternalFunction("guidance_verify_scipy_log_ndtr",
                                          numba.types.float64(numba.types.float64, numba.types.intc))


#: :func:`_log_gauss_interval_1` skips ``log_ndtr(lo)`` where ``lh + lo^2/2`` exceeds this (its lower end is so deep
#: in the tail that ``expm1(log_ndtr(lo) - lh)`` is -1.0 exactly).
_DEEP_TAIL = 41.0

#: :func:`_log_gauss_interval_1` takes the difference of ``erfc`` directly where the upper end ``hi`` (after the flip
#: to :math:`lo \le 0`) exceeds this: there :math:`\Phi(hi) \ge 5.7\cdot 10^{-300}` is a normal float that ``erfc``
#: gives to its relative accuracy, and :math:`\Phi(lo)` is either one too or below :math:`2^{-1021}`, where its
#: absolute error (:math:`2^{-1074}`) is far below the rounding of :math:`\Phi(hi)`.  Where the whole interval lies
#: further out, the log-space formula (scipy's ``log_ndtr``, its asymptotic series, the deep-tail skip) is kept.
_DIRECT_HI = -37.0
_SQRT_HALF = 0.7071067811865476


@numba.njit(cache=True, error_model="numpy")
def _log_gauss_interval_1(alpha: float, beta: float) -> float:
    r""":func:`log_gauss_interval` for one interval, :math:`\log Z`, :math:`Z = \Phi(hi) - \Phi(lo)` with
    :math:`(lo, hi) = (\alpha, \beta)`, or :math:`(-\beta, -\alpha)` where :math:`\alpha > 0` (so :math:`lo \le 0`).
    For :math:`hi >` :data:`_DIRECT_HI` by ``erfc`` (:math:`\Phi(x) = \tfrac12\operatorname{erfc}(-x/\sqrt2)`):
    :math:`\log(\tfrac12(\operatorname{erfc}(-hi/\sqrt2) - \operatorname{erfc}(-lo/\sqrt2)))` for :math:`hi \le 0`,
    :math:`\operatorname{log1p}(-\tfrac12(\operatorname{erfc}(-lo/\sqrt2) + \operatorname{erfc}(hi/\sqrt2)))`
    for :math:`hi > 0` (:math:`Z = 1 - \Phi(lo) - \Phi(-hi)`, two lower tails);
    else :func:`log_gauss_interval`'s formula :math:`\ell_h + \log(-\operatorname{expm1}(\ell_l - \ell_h))`,
    :math:`\ell = ` scipy's ``log_ndtr``.  The two agree to their rounding, which both amplify by the same
    condition number :math:`\Phi(hi)/Z` of the difference (since 2026-12-06, stop 43: 2.3 times faster, three
    transcendental calls instead of six; tested against mpmath)."""
    if alpha > 0:
        lo, hi = -beta, -alpha
    else:
        lo, hi = alpha, beta
    if not hi > lo:
        return -np.inf
    if hi > _DIRECT_HI:
        if hi <= 0.0:
            return math.log(0.5 * (math.erfc(-hi * _SQRT_HALF) - math.erfc(-lo * _SQRT_HALF)))
        return math.log1p(-0.5 * (math.erfc(-lo * _SQRT_HALF) + math.erfc(hi * _SQRT_HALF)))
    lh = _log_ndtr_c(hi, 0)
    if lo < -1.0 and lh + 0.5 * lo * lo > _DEEP_TAIL:
        # log Phi(lo) < -lo^2/2 - log(2 pi)/2 for lo <= -1 (Mills' ratio), so log Phi(lo) - lh < -41.9: there
        # expm1 is -1.0 exactly (below -56 log 2 it returns -1) and log(1) = 0, the formula's own value
        return lh + 0.0
    return lh + math.log(-math.expm1(_log_ndtr_c(lo, 0) - lh))


@numba.njit(cache=True, error_model="numpy")
def _trunc_mean_1(alpha: float, beta: float, logZ: float) -> float:
    """The mean of :func:`trunc_normal` for one interval of log mass ``logZ`` (0 for an empty one)."""
    if not np.isfinite(logZ):
        return 0.0
    pa = math.exp(-0.5 * alpha * alpha - _LOG_SQRT_2PI - logZ) if np.isfinite(alpha) else 0.0
    pb = math.exp(-0.5 * beta * beta - _LOG_SQRT_2PI - logZ) if np.isfinite(beta) else 0.0
    return pa - pb


@numba.njit(cache=True, error_model="numpy")
def _logsumexp_1d(a: np.ndarray) -> float:
    r"""``scipy.special.logsumexp`` of a short vector, by scipy's formula: with :math:`a^* = \max a` taken
    by ``m`` entries, :math:`\log1p(s) + \log m + a^*`, :math:`s = \sum_{a_j < a^*} e^{a_j - a^*} / m`;
    where that is not finite, :math:`\log\sum_j e^{a_j}` (NaN in, NaN out)."""
    if a.size == 1:
        return a[0]  # log1p(0) + log(1) + a_0 = a_0; log(e^a_0) = a_0 at +-inf and NaN
    amax = -np.inf
    for v in a:
        if np.isnan(v):
            return np.nan
        amax = max(amax, v)
    m, s = 0, 0.0
    for v in a:
        if v == amax:
            m += 1
        else:
            s += math.exp(v - amax)
    if s != 0.0:
        s /= m
    out = math.log1p(s) + (math.log(m) if m > 1 else 0.0) + amax  # log(1) is 0.0 exactly
    if np.isfinite(out):
        return out
    direct = 0.0
    for v in a:
        direct += math.exp(v)
    return math.log(direct)


#: A node whose log weight is provably below the largest by more than this is skipped by :func:`_slice_moments`:
#: its weight :math:`e^{lw - lw_{\max}}` underflows to exactly 0 (below :math:`e^{-745.2}`), so the sums are
#: unchanged bit for bit (the 55 to spare cover the rounding of the bound, see :func:`_log_weight_bound`).
_PRUNE_GAP = 800.0

#: A component whose log weight is provably more than this below the largest computed one of its row is left out of
#: the posterior means (:meth:`RegionMixture._needed_moments`; 800, the exact-underflow gap, until 2026-12-06, stop
#: 42).  Its softmax weight is below :math:`e^{-50} = 1.9\cdot 10^{-22}`, so the :math:`\le K - 1` left-out
#: components weigh :math:`\varepsilon < (K - 1)e^{-50}` together, and in exact arithmetic the mean moves by at most
#: :math:`2\varepsilon \max_k |m_k|` (the left-out terms, plus the kept weights renormalised by
#: :math:`1/(1 - \varepsilon)`): below :math:`2\cdot 10^{-21}\max_k|m_k|` for the five-region mixture (K = 5), about
#: :math:`10^{-5}` of one rounding :math:`u\max_k|m_k|` of the means.  So a mean is the full computation's floats or
#: one rounding away; the support claims' lemma checks evaluate the same means as their samplers (the inequality is
#: checked for the D the step used), and their per-step rounding term :math:`64u(1 + |y_{k+1}| + a|y_k| + c|D|)`
#: covers a move of that size.  Checked 2026-12-06 (stop 42): the three experiment claims' full and quick reports,
#: and the quick reports of ``three_disks``, ``nonconvex``, ``score_identity``, ``geometry_oracle`` and
#: ``late_wrong_class``, equal stop 41's bit for bit.  It saves about 13% of the five-region experiment's slice
#: sums (the components weighing between :math:`e^{-800}` and :math:`e^{-50}` of a point's largest).
_SOFTMAX_GAP = 50.0


@numba.njit(cache=True, error_model="numpy", inline="always")
def _log_weight_bound(x: float, lwx: float, ylo: np.ndarray, yhi: np.ndarray, q: int, mux: float, muy: float,
                      tau: float, log_tau: float) -> float:
    r"""An upper bound of the log weight :math:`lw_q` that :func:`_slice_moments` computes for one node, without
    ``log_ndtr``: with :math:`a = \min_j \operatorname{dist}(0, [\alpha_j, \beta_j])` over the non-empty
    intervals (the same rounded :math:`\alpha, \beta`), :math:`S_q \le 2\max_j Z_j \le e^{-a^2/2}` (the Gaussian
    tail :math:`\Phi(-a) \le e^{-a^2/2}/2`; :math:`S_q \le 1` at a = 0), so :math:`\log S_q \le -a^2/2`, to
    which 1 + 1e-10 a^2/2 is added for the rounding of ``log_ndtr`` and the log-sum; the other terms are
    computed as in the sums (rounding is monotone; ``lwx``: the node's :math:`\log\max(w, 0)`, the sums' own; its
    slices are the row ``q`` of ``ylo, yhi``, read in place).  NaN (never pruned) if an interval end is NaN; ``-inf``
    if every interval is empty.  Inlined, like :func:`_node_log_weight`, into :func:`_slice_point` (Numba's
    ``inline="always"``): a call per node with array arguments and row views cost atomic reference counts, 8-11% of
    the sums' time under ``perf`` (``NRT_incref``/``NRT_decref``, 2026-12-06)."""
    a2 = np.inf
    for j in range(ylo.shape[1]):
        alpha = (ylo[q, j] - muy) / tau
        beta = (yhi[q, j] - muy) / tau
        if np.isnan(alpha) or np.isnan(beta):
            return np.nan
        if not beta > alpha:
            continue
        a = alpha if alpha > 0 else (-beta if beta < 0 else 0.0)
        a2 = min(a2, a * a)
    if a2 == np.inf:
        return -np.inf
    ls = -0.5 * a2 + (1.0 + 1e-10 * 0.5 * a2)
    z = (x - mux) / tau
    return ls - 0.5 * z * z - _LOG_SQRT_2PI - log_tau + lwx


@numba.njit(cache=True, error_model="numpy", inline="always")
def _node_log_weight(x: float, lwx: float, ylo: np.ndarray, yhi: np.ndarray, q: int, mux: float, muy: float,
                     tau: float, log_tau: float, lz: np.ndarray, tm: np.ndarray) -> tuple[float, float]:
    r"""One node of :func:`_slice_moments`: ``(lw, slice mean)`` with :math:`lw = \log S - z^2/2 - \log\sqrt{2\pi}
    - \log\tau + \log w`, :math:`z = (x - \mu_x)/\tau` (``lwx``: :math:`\log\max(w, 0)`, computed once per node;
    its slices: the row ``q`` of ``ylo, yhi``; ``lz``, ``tm``: work arrays of the interval count)."""
    J = ylo.shape[1]
    live, jlive = 0, 0
    for j in range(J):
        alpha = (ylo[q, j] - muy) / tau
        beta = (yhi[q, j] - muy) / tau
        lz[j] = _log_gauss_interval_1(alpha, beta)
        tm[j] = _trunc_mean_1(alpha, beta, lz[j])
        if lz[j] != -np.inf:
            live, jlive = live + 1, j
    if J == 1:  # exp(lz - ls) = exp(0) = 1 exactly (NaN where ls is not finite)
        ls = _logsumexp_1d(lz)
        acc = tm[0] if np.isfinite(ls) else np.nan
    elif live == 1 and np.isfinite(lz[jlive]):
        # one piece of finite mass, the others -inf with mean 0: _logsumexp_1d's value 0.0 + 0.0 + lz and
        # weights exp(0) = 1, exp(-inf) = 0, without its exp / log1p / log (the same floats)
        ls = 0.0 + lz[jlive]
        acc = 0.0 + tm[jlive]
    else:
        ls = _logsumexp_1d(lz)
        acc = 0.0
        for j in range(J):
            acc += math.exp(lz[j] - ls) * tm[j]
    z = (x - mux) / tau
    return ls - 0.5 * z * z - _LOG_SQRT_2PI - log_tau + lwx, muy + tau * acc


@numba.njit(cache=True, error_model="numpy")
def _slice_point(x: np.ndarray, wx: np.ndarray, ylo: np.ndarray, yhi: np.ndarray, mux: float, muy: float,
                 tau: float, log_tau: float, prune: bool, out: np.ndarray, lw: np.ndarray, ym: np.ndarray,
                 ub: np.ndarray, lwx: np.ndarray, lz: np.ndarray, tm: np.ndarray) -> None:
    r"""One point of :func:`_slice_moments`: its nodes ``x, wx`` (Q,), slices ``ylo, yhi`` (Q, J) and kernel centre
    :math:`(\mu_x, \mu_y)`; writes ``(log M, mean_x, mean_y)`` into ``out`` (3,).  ``lw, ym, ub, lwx`` (Q,) and
    ``lz, tm`` (J,) are its work arrays (a point's own when points run on different threads); ``lwx`` takes the
    nodes' :math:`\log\max(w_q, 0)`, which the bound and the log weight share."""
    Q = x.size
    cut = -np.inf
    for q in range(Q):
        lwx[q] = math.log(max(wx[q], 0.0))
    if prune:
        for q in range(Q):
            ub[q] = _log_weight_bound(x[q], lwx[q], ylo, yhi, q, mux, muy, tau, log_tau)
        q0 = np.argmax(ub)
        lw0, _ = _node_log_weight(x[q0], lwx[q0], ylo, yhi, q0, mux, muy, tau, log_tau, lz, tm)
        cut = lw0 - _PRUNE_GAP
        for q in range(Q):
            if ub[q] < cut:
                lw[q], ym[q] = -np.inf, 0.0
            else:
                lw[q], ym[q] = _node_log_weight(x[q], lwx[q], ylo, yhi, q, mux, muy, tau, log_tau, lz, tm)
    else:
        for q in range(Q):
            lw[q], ym[q] = _node_log_weight(x[q], lwx[q], ylo, yhi, q, mux, muy, tau, log_tau, lz, tm)
    lmax = np.max(lw)
    sw = sx = sy = 0.0
    for q in range(Q):
        w = math.exp(lw[q] - lmax)
        if not np.isfinite(w) or w == 0.0:
            continue
        sw += w
        sx += w * x[q]
        sy += w * ym[q]
    out[0] = lmax + math.log(sw)
    out[1] = sx / sw
    out[2] = sy / sw


@numba.njit(cache=True, error_model="numpy")
def _slice_moments_serial(x: np.ndarray, wx: np.ndarray, ylo: np.ndarray, yhi: np.ndarray, mu: np.ndarray,
                          tau: float, prune: bool, out: np.ndarray) -> None:
    """:func:`_slice_point` for every point of given nodes and slices, on the calling thread (``out``: (N, 3))."""
    log_tau = math.log(tau)
    Q, J = x.shape[1], ylo.shape[2]
    lw, ym, ub, lwx, lz, tm = np.empty(Q), np.empty(Q), np.empty(Q), np.empty(Q), np.empty(J), np.empty(J)
    for n in range(x.shape[0]):
        _slice_point(x[n], wx[n], ylo[n], yhi[n], mu[n, 0], mu[n, 1], tau, log_tau, prune, out[n], lw, ym, ub, lwx,
                     lz, tm)


def _slice_moments(x: np.ndarray, wx: np.ndarray, ylo: np.ndarray, yhi: np.ndarray, mu: np.ndarray,
                   tau: float, prune: bool = True) -> tuple[np.ndarray, np.ndarray]:
    r"""The slice rule's sums (see :meth:`_Planar.kernel_moments`) over given nodes and slices
    (:meth:`_Planar.slice_inputs`): per point n, over nodes q with weights
    :math:`w_q` and slices :math:`\bigcup_j [l_{qj}, u_{qj}]`, the slice masses
    :math:`S_q = \sum_j Z_{qj}`, :math:`Z_{qj} = \Phi(\beta_{qj}) - \Phi(\alpha_{qj})`,
    :math:`\alpha = (l - \mu_y)/\tau`, and slice means :math:`\mu_y + \tau\sum_j (Z_{qj}/S_q) m_{qj}`;
    :math:`\log M = \log\sum_q w_q S_q \phi((x_q - \mu_x)/\tau)/\tau` (shifted by the largest term) and the
    mean the :math:`w_q S_q \phi`-weighted average of :math:`(x_q, \text{slice mean}_q)`.  ``prune``: a node
    whose bound (:func:`_log_weight_bound`) lies more than :data:`_PRUNE_GAP` below the exact log weight of
    the node of largest bound is not evaluated; its weight would underflow to 0, so the result is the same
    bit for bit (checked by the tests against ``prune=False``).  On the calling thread; the package's own calls
    take :func:`_region_sums`, which builds the nodes and slices inside the same compiled loop (the same floats,
    tested).  Returns ``(log M (N,), mean (N, 2))``."""
    out = np.empty((x.shape[0], 3))
    _slice_moments_serial(x, wx, ylo, yhi, mu, float(tau), bool(prune), out)
    return out[:, 0].copy(), out[:, 1:].copy()


#: Region kinds of :func:`_region_point` (the slice intervals it calls).
_KIND_DISK_MINUS_DISK, _KIND_LENS = 0, 1


#: Work rows of :func:`_region_point` per thread (:func:`_region_work`): the nodes x, their weights, log weights,
#: slice means, bounds and log node weights (Q each), the panel ends (E), the slices' lower and upper ends (2Q each)
#: and the interval work arrays (2 each).
_WORK_Q, _WORK_J = 6, 2


@numba.njit(cache=True, error_model="numpy")
def _region_point(edges: np.ndarray, lo: float, hi: float, kind: int, par: np.ndarray, brk: np.ndarray,
                  s: np.ndarray, jac: np.ndarray, mux: float, muy: float, tau: float, log_tau: float, prune: bool,
                  out: np.ndarray, wq: np.ndarray, we: np.ndarray, wy: np.ndarray, wj: np.ndarray) -> None:
    r"""One point of :func:`_region_sums`: its nodes and weights (:func:`_point_nodes`, from its panel edges
    ``edges`` and window ``[lo, hi]``, the region's ``breaks`` ``brk``), its slices (``kind``
    :data:`_KIND_DISK_MINUS_DISK`: :func:`_disk_minus_disk_fill` with ``par = (c_x, c_y, R, c2_x, c2_y, r)``;
    :data:`_KIND_LENS`: :func:`_lens_fill` with ``par = (s_x, s_y, ...)``) and its sums (:func:`_slice_point`)
    into ``out`` (3,): the same functions, on the same floats, as :meth:`_Planar.slice_inputs` and
    :func:`_slice_moments`, without the (N, Q, J) arrays between them.  ``wq`` (6, Q_max), ``we`` (E_max,), ``wy``
    (2, 2 Q_max) and ``wj`` (2, 2) are the work rows of the calling thread (:func:`_region_work`), of which it uses the
    first Q, E, QJ and J entries (every entry it reads it has written for this point)."""
    n = s.size
    E = edges.size + brk.size
    Q = (E - 1) * n
    J = 1 if kind == _KIND_LENS or par[5] == 0 else 2
    x, wx = wq[0, :Q], wq[1, :Q]
    _point_nodes(edges, lo, hi, brk, s, jac, we[:E], x, wx)
    ylo, yhi = wy[0, :Q * J].reshape((Q, J)), wy[1, :Q * J].reshape((Q, J))
    if kind == _KIND_LENS:
        _lens_fill(x, par[0], par[1], ylo, yhi)
    else:
        _disk_minus_disk_fill(x, par[0:2], par[2], par[3:5], par[5], ylo, yhi)
    _slice_point(x, wx, ylo, yhi, mux, muy, tau, log_tau, prune, out, wq[2, :Q], wq[3, :Q], wq[4, :Q], wq[5, :Q],
                 wj[0, :J], wj[1, :J])


@numba.njit(cache=True, error_model="numpy")
def _region_work(threads: int, q_max: int, e_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Work rows of :func:`_region_point` for ``threads`` threads: ``(wq (T, 6, Q), we (T, E), wy (T, 2, 2Q),
    wj (T, 2, 2))``."""
    return (np.empty((threads, _WORK_Q, q_max)), np.empty((threads, e_max)), np.empty((threads, 2, _WORK_J * q_max)),
            np.empty((threads, 2, _WORK_J)))


@numba.njit(cache=True, error_model="numpy")
def _region_sums_serial(edges: np.ndarray, lo: np.ndarray, hi: np.ndarray, reg: np.ndarray, kinds: np.ndarray,
                        pars: np.ndarray, brks: np.ndarray, nbs: np.ndarray, s: np.ndarray, jac: np.ndarray,
                        mu: np.ndarray, tau: float, prune: bool, out: np.ndarray) -> None:
    """:func:`_region_point` for every point i (region ``reg[i]`` of the tables ``kinds, pars, brks, nbs``), on the
    calling thread (``out``: (N, 3)), with one set of work rows."""
    log_tau = math.log(tau)
    e_max = edges.shape[1] + brks.shape[1]
    wq, we, wy, wj = _region_work(1, (e_max - 1) * s.size, e_max)
    for i in range(edges.shape[0]):
        k = reg[i]
        _region_point(edges[i], lo[i], hi[i], kinds[k], pars[k], brks[k, :nbs[k]], s, jac, mu[i, 0], mu[i, 1], tau,
                      log_tau, prune, out[i], wq[0], we[0], wy[0], wj[0])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _region_sums_threads(edges: np.ndarray, lo: np.ndarray, hi: np.ndarray, reg: np.ndarray, kinds: np.ndarray,
                         pars: np.ndarray, brks: np.ndarray, nbs: np.ndarray, s: np.ndarray, jac: np.ndarray,
                         mu: np.ndarray, tau: float, prune: bool, out: np.ndarray, threads: int) -> None:
    """:func:`_region_sums_serial` with the points spread over Numba's threads (``threads``: the pool's size,
    ``numba.config.NUMBA_NUM_THREADS``): the work rows of every thread are allocated before the loop, each point
    uses those of the thread that runs it (``numba.get_thread_id``) and writes only its own row of ``out``, so the
    result does not depend on the thread count or the schedule (bit for bit; tested)."""
    log_tau = math.log(tau)
    e_max = edges.shape[1] + brks.shape[1]
    wq, we, wy, wj = _region_work(threads, (e_max - 1) * s.size, e_max)
    for i in numba.prange(edges.shape[0]):
        k = reg[i]
        t = numba.get_thread_id()
        _region_point(edges[i], lo[i], hi[i], kinds[k], pars[k], brks[k, :nbs[k]], s, jac, mu[i, 0], mu[i, 1], tau,
                      log_tau, prune, out[i], wq[t], we[t], wy[t], wj[t])


#: :func:`_region_sums` runs on the calling thread below this many node evaluations (points x nodes, about 50
#: points of 192-224 nodes): on a quiet machine two threads win from about 10 points on, but on a busy one each
#: call waits for the other thread to be scheduled (the quick profile's 20-point calls took about 3x the wall
#: time of one thread at load 8-10, 2026-12-06), so only calls of several ms are spread.
_SERIAL_NODES = 10000


def _region_sums(regions: list, windows: list, mus: list, tau: float, order: int, prune: bool = True) -> list:
    r"""The slice rule's sums (:func:`_slice_moments`) of ``regions[i]`` at the points ``mus[i]`` with the windows
    ``windows[i] = (edges, lo, hi)`` (:meth:`_Planar.slice_window`) for every i, in one compiled call: per point the
    nodes, weights and slices are built and summed in the same loop (:func:`_region_point`), so the regions' points
    are stacked whatever their node and interval counts.  The points are independent: from :data:`_SERIAL_NODES`
    node evaluations on they are spread over Numba's threads (the same floats for any thread count).  Returns
    ``[(log M, mean), ...]``."""
    if not regions:
        return []
    counts = [m.shape[0] for m in mus]
    edges = np.ascontiguousarray(np.concatenate([w[0] for w in windows]), dtype=float)
    lo = np.ascontiguousarray(np.concatenate([w[1] for w in windows]), dtype=float)
    hi = np.ascontiguousarray(np.concatenate([w[2] for w in windows]), dtype=float)
    mu = np.ascontiguousarray(np.concatenate(mus), dtype=float)
    reg = np.repeat(np.arange(len(regions)), counts)
    brs = [r._breaks_array() for r in regions]
    brks = np.zeros((len(regions), max(1, max(b.size for b in brs))))
    for i, b in enumerate(brs):
        brks[i, :b.size] = b
    nbs = np.array([b.size for b in brs], dtype=np.int64)
    kinds = np.array([r._sums_kind for r in regions], dtype=np.int64)
    pars = np.stack([r._sums_params() for r in regions])
    s, jac = _sin2_rule(order)
    nodes = sum(c * (edges.shape[1] + b.size - 1) * order for c, b in zip(counts, brs))
    out = np.empty((mu.shape[0], 3))
    args = (edges, lo, hi, reg, kinds, pars, brks, nbs, s, jac, mu, float(tau), bool(prune), out)
    if mu.shape[0] > 1 and nodes >= _SERIAL_NODES and numba.get_num_threads() > 1:
        old = numba.set_parallel_chunksize(1)  # dynamic schedule over points: robust to a busy core
        try:
            _region_sums_threads(*args, numba.config.NUMBA_NUM_THREADS)
        finally:
            numba.set_parallel_chunksize(old)
    else:
        _region_sums_serial(*args)
    res, i0 = [], 0
    for c in counts:
        res.append((out[i0:i0 + c, 0].copy(), out[i0:i0 + c, 1:].copy()))
        i0 += c
    return res


def _joint_slice_moments(regions: list, rows: list, mu: np.ndarray, tau: float, panels: int, order: int,
                         dmins: list | None) -> list:
    """:meth:`_Planar.kernel_moments` of ``regions[i]`` at the points ``mu[rows[i]]`` for every i, in one
    :func:`_region_sums` call (points stacked, so that a call is large enough to be spread over the threads).  The
    points are independent, so each region's values are its own call's bit for bit (tested).  A region whose
    :meth:`~_Planar.intervals` is not its kind's own (a subclass that changes the slices, as a control does) has its
    slices taken from its ``intervals`` (:func:`_slice_nodes`, then :func:`_slice_moments`).  ``dmins``: the points'
    distances to each region, if known.  Returns ``[(log M, mean), ...]``."""
    mus = [mu[r] for r in rows]
    windows = [reg.slice_window(m, tau, panels, None if dmins is None else dmins[i])
               for i, (reg, m) in enumerate(zip(regions, mus))]
    fused = [i for i, reg in enumerate(regions) if reg._fused()]
    out = dict(zip(fused, _region_sums([regions[i] for i in fused], [windows[i] for i in fused],
                                       [mus[i] for i in fused], tau, order)))
    s, jac = _sin2_rule(order)
    for i in set(range(len(regions))) - set(fused):  # slices through the region's own ``intervals``
        x, wx = _slice_nodes(*windows[i], regions[i]._breaks_array(), s, jac)
        out[i] = _slice_moments(x, wx, *regions[i].intervals(x), np.ascontiguousarray(mus[i], dtype=float), tau)
    return [out[i] for i in range(len(regions))]


@numba.njit(cache=True, error_model="numpy")
def _sort_small(e: np.ndarray) -> None:
    """Sort the short array ``e`` in place, ascending, NaN last (the order of ``np.sort``), by insertion: the
    panel ends are a dozen numbers, and Numba's own ``sort`` (a quicksort) costs about 3 s to compile from an
    empty cache, measured 2026-12-06."""
    for j in range(1, e.size):
        v = e[j]
        i = j - 1
        while i >= 0 and (e[i] > v or (e[i] != e[i] and v == v)):  # e[i] after v (a NaN after any number)
            e[i + 1] = e[i]
            i -= 1
        e[i + 1] = v


@numba.njit(cache=True, error_model="numpy")
def _point_nodes(edges: np.ndarray, lo: float, hi: float, breaks: np.ndarray, s: np.ndarray, jac: np.ndarray,
                 e: np.ndarray, x: np.ndarray, wx: np.ndarray) -> None:
    r"""One point of :func:`_slice_nodes`: its panel edges ``edges`` and the ``breaks`` clipped to :math:`[l, h]`,
    sorted, the outer two set to :math:`l` and :math:`h`, into ``e`` (E = edges + breaks); the nodes
    :math:`a + (b - a)s_k` and weights :math:`(b - a)\,\text{jac}_k` of each panel [a, b] into ``x, wx``
    ((E - 1) n each)."""
    P1, n, E = edges.size, s.size, e.size
    e[:P1] = edges
    for j in range(breaks.size):
        e[P1 + j] = min(max(breaks[j], lo), hi)
    _sort_small(e)
    e[0], e[E - 1] = lo, hi
    for p in range(E - 1):
        a, w = e[p], e[p + 1] - e[p]
        for k in range(n):
            x[p * n + k] = a + w * s[k]
            wx[p * n + k] = w * jac[k]


@numba.njit(cache=True, error_model="numpy")
def _slice_nodes(edges: np.ndarray, lo: np.ndarray, hi: np.ndarray, breaks: np.ndarray, s: np.ndarray,
                 jac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes and weights of the slice rule (see :meth:`_Planar.kernel_moments`), per point n
    (:func:`_point_nodes`): the panel edges ``edges[n]`` and the ``breaks`` clipped to :math:`[l_n, h_n]`, sorted,
    the outer two set to :math:`l_n` and :math:`h_n`; on each panel [a, b] the nodes :math:`a + (b - a)s_k` and
    weights :math:`(b - a)\,\text{jac}_k` (:func:`_sin2_rule`).  Returns ``(x, wx)``, each ``(N, (E - 1) n)`` with
    E = edges + breaks."""
    N, P1, n = edges.shape[0], edges.shape[1], s.size
    E = P1 + breaks.size
    x = np.empty((N, (E - 1) * n))
    wx = np.empty((N, (E - 1) * n))
    e = np.empty(E)
    for i in range(N):
        _point_nodes(edges[i], lo[i], hi[i], breaks, s, jac, e, x[i], wx[i])
    return x, wx


@numba.njit(cache=True, error_model="numpy")
def _circle_interval_1(x: float, cx: float, cy: float, R: float) -> tuple[float, float]:
    r"""The slice :math:`[c_y - h, c_y + h]`, :math:`h = \sqrt{R^2 - (x - c_x)^2}`, of a disk at ``x``
    (``(0, 0)`` where :math:`h^2 \le 0`)."""
    h2 = R * R - (x - cx) * (x - cx)
    if h2 <= 0:
        return 0.0, 0.0
    h = math.sqrt(h2)
    return cy - h, cy + h


@numba.njit(cache=True, error_model="numpy")
def _disk_minus_disk_fill(x: np.ndarray, c: np.ndarray, R: float, c2: np.ndarray, r: float, lo: np.ndarray,
                          hi: np.ndarray) -> None:
    r""":func:`_disk_minus_disk_intervals` into given ``lo, hi`` (``(x.size, J)``, J = 1 if r = 0 else 2)."""
    J = lo.shape[1]
    for i in range(x.size):
        l0, u0 = _circle_interval_1(x[i], c[0], c[1], R)
        lo[i, 0] = l0
        if J == 1:
            hi[i, 0] = u0
            continue
        l1, u1 = _circle_interval_1(x[i], c2[0], c2[1], r)
        hole = u1 > l1
        lo[i, 1] = max(l0, u1) if hole else u0
        hi[i, 0] = min(u0, l1) if hole else u0
        hi[i, 1] = u0


@numba.njit(cache=True, error_model="numpy")
def _disk_minus_disk_intervals(x: np.ndarray, c: np.ndarray, R: float, c2: np.ndarray, r: float
                               ) -> tuple[np.ndarray, np.ndarray]:
    r"""Slices of the disk ``(c, R)`` minus the open disk ``(c2, r)`` at the abscissae ``x`` (1-D): the outer
    slice :math:`[l_0, u_0]` (r = 0: one interval), else :math:`[l_0, \min(u_0, l_1)]` and
    :math:`[\max(l_0, u_1), u_0]` where the hole's slice :math:`(l_1, u_1)` is not empty, and
    :math:`[l_0, u_0]`, :math:`[u_0, u_0]` where it is.  Returns ``(lo, hi)``, each ``(x.size, J)``."""
    J = 1 if r == 0 else 2
    lo = np.empty((x.size, J))
    hi = np.empty((x.size, J))
    _disk_minus_disk_fill(x, c, R, c2, r, lo, hi)
    return lo, hi


@numba.njit(cache=True, error_model="numpy")
def _lens_fill(x: np.ndarray, sx: float, sy: float, lo: np.ndarray, hi: np.ndarray) -> None:
    """:func:`_lens_intervals` into given ``lo, hi`` (``(x.size, 1)``)."""
    for i in range(x.size):
        u = x[i] - sx
        g = 0.5 * ((u + 3) * (u + 3)) * ((u + 1) * (u + 1)) if -3 <= u <= -1 else 0.0
        lo[i, 0], hi[i, 0] = sy - g, sy + g


@numba.njit(cache=True, error_model="numpy")
def _lens_intervals(x: np.ndarray, sx: float, sy: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Slices :math:`[s_y - g, s_y + g]` of the lens shifted by ``(sx, sy)`` at the abscissae ``x`` (1-D),
    :math:`g = \tfrac12 (u+3)^2 (u+1)^2` for :math:`u = x - s_x \in [-3, -1]`, else 0.  Returns ``(lo, hi)``,
    each ``(x.size, 1)``."""
    lo = np.empty((x.size, 1))
    hi = np.empty((x.size, 1))
    _lens_fill(x, sx, sy, lo, hi)
    return lo, hi


def _flat_intervals(kernel, x, *args) -> tuple[np.ndarray, np.ndarray]:
    """``kernel(x.ravel(), *args)`` reshaped to ``x.shape + (J,)``."""
    x = np.asarray(x, float)
    lo, hi = kernel(np.ascontiguousarray(x.ravel()), *args)
    return lo.reshape(x.shape + (lo.shape[1],)), hi.reshape(x.shape + (hi.shape[1],))


#: Samples per block of the sample searches (:func:`_sample_boxes`), and blocks per superblock.
_BLOCK = 64
_SUPER = 16


@numba.njit(cache=True, error_model="numpy")
def _block_gap2(px: float, py: float, box: np.ndarray) -> float:
    r"""A lower bound of the computed :math:`(p_x - b_x)^2 + (p_y - b_y)^2` over the samples b of a block with
    bounding box ``box = (x_min, x_max, y_min, y_max)``: the same formula at the box's nearest side (rounding is
    monotone, so it is below every sample's value as computed)."""
    gx = box[0] - px if px < box[0] else (px - box[1] if px > box[1] else 0.0)
    gy = box[2] - py if py < box[2] else (py - box[3] if py > box[3] else 0.0)
    return gx * gx + gy * gy


@numba.njit(cache=True, error_model="numpy")
def _sample_boxes(bp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding boxes ``(x_min, x_max, y_min, y_max)`` of the samples ``bp`` (M, 2) in blocks of :data:`_BLOCK`
    (``box``, (nb, 4)) and of the blocks in superblocks of :data:`_SUPER` (``sbox``, (ns, 4))."""
    M = bp.shape[0]
    nb = (M + _BLOCK - 1) // _BLOCK
    ns = (nb + _SUPER - 1) // _SUPER
    box = np.empty((nb, 4))
    for b in range(nb):
        seg = bp[b * _BLOCK:min(M, (b + 1) * _BLOCK)]
        box[b, 0], box[b, 1] = seg[:, 0].min(), seg[:, 0].max()
        box[b, 2], box[b, 3] = seg[:, 1].min(), seg[:, 1].max()
    sbox = np.empty((ns, 4))
    for S in range(ns):
        seg = box[S * _SUPER:min(nb, (S + 1) * _SUPER)]
        sbox[S, 0], sbox[S, 1] = seg[:, 0].min(), seg[:, 1].max()
        sbox[S, 2], sbox[S, 3] = seg[:, 2].min(), seg[:, 3].max()
    return box, sbox


@numba.njit(cache=True, error_model="numpy")
def _least_d2(px: float, py: float, bp: np.ndarray, box: np.ndarray, sbox: np.ndarray, lbs: np.ndarray) -> float:
    r""":math:`\min_j (p_x - b_{j,x})^2 + (p_y - b_{j,y})^2` over the samples ``bp``, exactly (the brute-force
    minimum's float): the superblock of least bound (:func:`_block_gap2` of ``sbox``) first, then the others; a
    superblock or block whose bound is not below the least value found so far is skipped (none of its samples can
    lower it).  ``lbs``: work array of the superblock count."""
    M, nb, ns = bp.shape[0], box.shape[0], sbox.shape[0]
    for S in range(ns):
        lbs[S] = _block_gap2(px, py, sbox[S])
    S0 = np.argmin(lbs)
    best = np.inf
    for r in range(ns + 1):
        S = S0 if r == 0 else r - 1
        if (r > 0 and S == S0) or lbs[S] >= best:
            continue
        for b in range(S * _SUPER, min(nb, (S + 1) * _SUPER)):
            if _block_gap2(px, py, box[b]) >= best:
                continue
            for j in range(b * _BLOCK, min(M, (b + 1) * _BLOCK)):
                dx, dy = px - bp[j, 0], py - bp[j, 1]
                best = min(best, dx * dx + dy * dy)
    return best


@numba.njit(cache=True, error_model="numpy")
def _nearest_abscissa(p: np.ndarray, bp: np.ndarray, box: np.ndarray, sbox: np.ndarray) -> np.ndarray:
    r"""Per point :math:`p_i`, the abscissa of the boundary point :math:`b_j` of least
    :math:`(p_{i,x} - b_{j,x})^2 + (p_{i,y} - b_{j,y})^2`, the first one on ties (``np.argmin``'s choice; ``bp[0]``
    where no value is below infinity): the least value by :func:`_least_d2` (``box, sbox``: :func:`_sample_boxes` of
    ``bp``), then the first sample in index order that attains it (blocks whose bound exceeds it skipped)."""
    out = np.empty(p.shape[0])
    lbs = np.empty(sbox.shape[0])
    M = bp.shape[0]
    for i in range(p.shape[0]):
        px, py = p[i, 0], p[i, 1]
        best = _least_d2(px, py, bp, box, sbox, lbs)
        k = -1
        for b in range(box.shape[0] if best < np.inf else 0):
            if k >= 0:
                break
            if _block_gap2(px, py, box[b]) > best:
                continue
            for j in range(b * _BLOCK, min(M, (b + 1) * _BLOCK)):
                dx, dy = px - bp[j, 0], py - bp[j, 1]
                if dx * dx + dy * dy == best:
                    k = j
                    break
        out[i] = bp[max(k, 0), 0]
    return out


@numba.njit(cache=True, error_model="numpy")
def _min_sample_distance(p: np.ndarray, bp: np.ndarray, box: np.ndarray, sbox: np.ndarray) -> np.ndarray:
    r"""Per point :math:`p_i`, :math:`\min_j \sqrt{(p_{i,x} - b_{j,x})^2 + (p_{i,y} - b_{j,y})^2}` over the
    samples ``bp`` (M, 2), exactly (the same value as the brute-force minimum), by :func:`_least_d2` (``box, sbox``:
    :func:`_sample_boxes` of ``bp``)."""
    out = np.empty(p.shape[0])
    lbs = np.empty(sbox.shape[0])
    for i in range(p.shape[0]):
        out[i] = math.sqrt(_least_d2(p[i, 0], p[i, 1], bp, box, sbox, lbs))
    return out


@functools.lru_cache(maxsize=None)
def _sin2_rule(order: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The ``order``-point Gauss-Legendre rule on [0, 1] under :math:`x = \sin^2(\pi u/2)`: nodes
    :math:`\sin^2(\pi u_i/2)` and weights :math:`\tfrac{\pi}{2}\sin(\pi u_i)\,w_i` (read-only; one per order)."""
    u, wu = np.polynomial.legendre.leggauss(order)
    u, wu = 0.5 * (u + 1), 0.5 * wu
    s = np.sin(0.5 * np.pi * u) ** 2
    jac = 0.5 * np.pi * np.sin(np.pi * u) * wu
    s.flags.writeable = jac.flags.writeable = False
    return s, jac


@functools.lru_cache(maxsize=None)
def _unit_edges(panels: int) -> np.ndarray:
    """``np.linspace(0, 1, panels + 1)``, the panel edges in the asinh variable (read-only; one per count)."""
    e = np.linspace(0, 1, panels + 1)
    e.flags.writeable = False
    return e


# ------------------------------------------------------------------------------- regions
class Box:
    """Uniform on the box ``prod_j [lo_j, hi_j]`` in R^d (closed-form scores)."""

    kind = "box"

    def __init__(self, lo, hi):
        self.lo = as_float_array(lo, "lo", 1)
        self.hi = as_float_array(hi, "hi", 1)
        if self.lo.shape != self.hi.shape:
            raise ValueError(f"hi: must have the shape of lo {self.lo.shape}, got {self.hi.shape}")
        if np.any(self.hi <= self.lo):
            raise ValueError("hi: must exceed lo in every coordinate")
        self.d = self.lo.shape[0]
        self.log_volume = float(np.sum(np.log(self.hi - self.lo)))
        if not math.isfinite(self.log_volume):
            raise ValueError(f"hi: the box volume overflows float64 (hi - lo = {(self.hi - self.lo).tolist()})")

    def __repr__(self):
        return f"Box(lo={self.lo.tolist()}, hi={self.hi.tolist()})"

    def kernel_moments(self, mu: np.ndarray, tau: float):
        """``(log M, mean)`` of ``N(mu, tau^2 I)`` restricted to the box (closed form)."""
        logZ, m = trunc_normal((self.lo - mu) / tau, (self.hi - mu) / tau)
        return logZ.sum(axis=1), mu + tau * m

    def distance(self, x) -> np.ndarray:
        x = check_points(x, self.d, "x")[0]
        gap = np.maximum(np.maximum(self.lo - x, 0.0), x - self.hi)
        return np.sqrt(np.sum(gap * gap, axis=1))

    def contains(self, x) -> np.ndarray:
        x = check_points(x, self.d, "x")[0]
        return np.all((x >= self.lo) & (x <= self.hi), axis=1)


class Sphere:
    """Uniform (surface measure) on the sphere ``center + R S^{d-1}``; d = 2 is a circle."""

    kind = "sphere"

    def __init__(self, center, radius):
        self.center = _center(center, None)
        self.d = self.center.shape[0]
        if self.d < 2:
            raise ValueError(f"center: a sphere needs d >= 2, got d={self.d}")
        self.R = check_positive(radius, "radius")

    def __repr__(self):
        return f"Sphere(center={self.center.tolist()}, radius={self.R})"

    def log_likelihood_and_mean(self, y: np.ndarray, lam: float, s2: float):
        r"""``(log p_t(y | sphere), E[X_0 | y, sphere])`` in closed form (von Mises-Fisher)."""
        d, R = self.d, self.R
        v = y - lam * self.center
        r = np.sqrt(np.sum(v * v, axis=1))
        kap = lam * R * r / s2
        nu = d / 2 - 1
        small = kap < 1e-8
        ks = np.where(small, 1.0, kap)
        # log[(kap/2)^(-nu) I_nu(kap)]; its kap -> 0 limit is -log Gamma(nu + 1)
        lbess = np.where(small, -gammaln(nu + 1), np.log(ive(nu, ks)) + ks - nu * np.log(ks / 2))
        ll = (-0.5 * d * np.log(2 * np.pi * s2) - (r * r + lam * lam * R * R) / (2 * s2)
              + gammaln(d / 2) + lbess)
        # A(kap)/kap with A = I_{d/2}/I_{d/2-1}; the limit at 0 is 1/d
        a_over_k = np.where(small, 1.0 / d, ive(nu + 1, ks) / ive(nu, ks) / ks)
        mean = self.center + (R * a_over_k * lam * R / s2)[:, None] * v
        return ll, mean

    def distance(self, x) -> np.ndarray:
        x = check_points(x, self.d, "x")[0]
        return np.abs(np.linalg.norm(x - self.center, axis=1) - self.R)

    def contains(self, x) -> np.ndarray:
        return self.distance(x) == 0.0


class _Planar:
    """A planar region given by vertical slices (at most two y-intervals per abscissa)."""

    kind = "planar"
    d = 2
    single_interval = True

    # subclasses set: xa, xb, breaks (abscissae where the slices change), area, intervals(x), distance(x)
    def bbox(self) -> tuple[float, float, float, float]:
        raise NotImplementedError

    @property
    def log_volume(self) -> float:
        return math.log(self.area)

    def contains(self, p) -> np.ndarray:
        p = check_points(p, 2, "p")[0]
        lo, hi = self.intervals(p[:, 0])
        y = p[:, 1:2]
        inside = (y >= lo) & (y <= hi) & (hi > lo)
        return np.any(inside, axis=1) & (p[:, 0] >= self.xa) & (p[:, 0] <= self.xb)

    def nearest_x(self, p: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
        """Abscissa of (a numerical approximation of) the nearest point of the region to ``p`` (``dist``: the
        points' :meth:`distance`, if known; unused here)."""
        x = _nearest_abscissa(np.ascontiguousarray(p, dtype=float), self._boundary_points(), *self._bp_boxes)
        return np.where(self.contains(p), p[:, 0], x)

    def _boundary_points(self) -> np.ndarray:
        """The 2001-abscissa boundary samples of :meth:`nearest_x` (built once, with their block boxes)."""
        if getattr(self, "_bp", None) is None:
            self._bp = self.boundary(2001)
            self._bp_boxes = _sample_boxes(self._bp)
        return self._bp

    #: An upper bound of :meth:`distance`'s excess over the exact distance (0: exact up to rounding).
    distance_error = 0.0

    def kernel_moments(self, mu: np.ndarray, tau: float, panels: int = 24, order: int = 8,
                       dmin: np.ndarray | None = None):
        r"""``(log M, mean)`` of :math:`N(\mu,\tau^2 I)` restricted to the region, by the slice rule (``dmin``:
        ``self.distance(mu)``, if known)."""
        return _joint_slice_moments([self], [np.arange(np.shape(mu)[0])], np.asarray(mu, float), tau, panels, order,
                                    None if dmin is None else [dmin])[0]

    def slice_window(self, mu: np.ndarray, tau: float, panels: int = 24, dmin: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The panel edges and the window ``(edges (N, panels + 1), lo (N,), hi (N,))`` of :meth:`kernel_moments`
        (NumPy's ``sinh`` and ``arcsinh``, see the module docstring)."""
        dmin = self.distance(mu) if dmin is None else dmin
        xs = np.clip(self.nearest_x(mu, dmin), self.xa, self.xb)
        half = np.sqrt(dmin ** 2 + 2 * LOG_CUTOFF * tau * tau)
        lo = np.minimum(np.maximum(self.xa, mu[:, 0] - half), xs)
        hi = np.maximum(np.minimum(self.xb, mu[:, 0] + half), xs)
        va, vb = np.arcsinh((lo - xs) / tau), np.arcsinh((hi - xs) / tau)
        edges = xs[:, None] + tau * np.sinh(va[:, None] + (vb - va)[:, None] * _unit_edges(panels)[None, :])
        return edges, lo, hi

    def slice_inputs(self, mu: np.ndarray, tau: float, panels: int = 24, order: int = 8,
                     dmin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The nodes, weights and slices ``(x, wx, ylo, yhi)`` of :meth:`kernel_moments` (its sums' inputs, which
        :func:`_region_sums` builds point by point without storing them)."""
        edges, lo, hi = self.slice_window(mu, tau, panels, dmin)
        s, jac = _sin2_rule(order)
        x, wx = _slice_nodes(edges, lo, hi, self._breaks_array(), s, jac)
        ylo, yhi = self.intervals(x)                                   # (N, Q, J)
        return x, wx, ylo, yhi

    def log_mass_bound(self, dmin: np.ndarray, tau: float, panels: int = 24, order: int = 8) -> np.ndarray:
        r"""An upper bound of the ``log M`` that :meth:`kernel_moments` computes at points at distance ``dmin``
        (:meth:`distance`) from the region: with :math:`d = (1 - 10^{-9})d_{\min} - \epsilon - 10^{-9}`, clipped at
        0 (:math:`\epsilon` = :attr:`distance_error`; the factor and the 1e-9 cover the rounding of the distance),
        :math:`-(1 - 10^{-9})\,d^2/2\tau^2 + 3 - \log\sqrt{2\pi} - \log\tau + \log(x_b - x_a) + \log Q`.
        Each node's log weight is at most :func:`_log_weight_bound`'s value :math:`-(1 - 10^{-10})(a^2 + z^2)/2 + 1
        - \log\sqrt{2\pi} - \log\tau + \log w_q`, where :math:`\tau^2(a^2 + z^2)` is the squared distance from
        :math:`\mu` to a point of the node's slice, so at least :math:`d^2`; :math:`w_q \le x_b - x_a` (a panel
        width times a weight of the sin^2 rule, each below 1: they are positive and sum to 1); and the sum of the
        Q = (panels + breaks) order node weights, shifted by the largest, is at most Q.  The 2 nats to spare cover
        the rounding of the sums."""
        d = np.maximum((1.0 - 1e-9) * dmin - self.distance_error - 1e-9, 0.0)
        Q = (panels + len(self.breaks)) * order
        return (-(1.0 - 1e-9) * 0.5 * (d / tau) ** 2 + 3.0 - _LOG_SQRT_2PI - math.log(tau)
                + math.log(self.xb - self.xa) + math.log(Q))

    #: The kind of slices :func:`_region_point` builds (None: only through :meth:`intervals`).
    _sums_kind = None

    def _fused(self) -> bool:
        """Whether :func:`_region_sums` may build this region's slices itself: its kind's own :meth:`intervals`
        (a subclass that overrides it, e.g. a control's, takes its slices from :meth:`intervals`)."""
        return self._sums_kind is not None and type(self).intervals is type(self)._sums_intervals

    def _breaks_array(self) -> np.ndarray:
        """:attr:`breaks` as a float array (built once)."""
        if getattr(self, "_breaks_arr", None) is None:
            self._breaks_arr = np.asarray(self.breaks, float)
        return self._breaks_arr

    def authors_nodes(self, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """The authors' fixed trapezoid nodes and weights (curve mode, or bbox mode for two-interval slices)."""
        def trap(k):
            w = np.ones(k)
            w[0] = w[-1] = 0.5
            return w
        if self.single_interval:
            xs = np.linspace(self.xa, self.xb, n)
            wx = trap(n) * (self.xb - self.xa) / (n - 1)
            lo, hi = self.intervals(xs[None, :])
            lo, hi = lo[0, :, 0], hi[0, :, 0]
            t = np.linspace(0, 1, n)
            X = np.repeat(xs, n)
            Y = (lo[:, None] + (hi - lo)[:, None] * t[None, :]).ravel()
            W = (wx[:, None] * trap(n)[None, :] * ((hi - lo) / (n - 1))[:, None]).ravel()
        else:
            xs, ys = np.linspace(self.xa, self.xb, n), np.linspace(-5.0, 5.0, n)
            X, Y = np.meshgrid(xs, ys, indexing="ij")
            X, Y = X.ravel(), Y.ravel()
            W = np.outer(trap(n) * (self.xb - self.xa) / (n - 1), trap(n) * 10.0 / (n - 1)).ravel()
            W = W * self.contains(np.stack([X, Y], axis=1))
        return np.stack([X, Y], axis=1), W


class _DiskMinusDisk(_Planar):
    """Closed disk ``|x - c| <= R`` minus the open disk ``|x - c2| < r`` (r = 0: the plain disk)."""

    def __init__(self, center, radius, hole_center=None, hole_radius=0.0):
        self.c = _center(center, 2)
        self.R = check_positive(radius, "radius")
        if self.R > MAX_RADIUS:
            raise ValueError(f"radius: must be <= {MAX_RADIUS:g} (the area must stay finite), got {radius!r}")
        self.r = check_real(hole_radius, "hole_radius")
        if self.r < 0:
            raise ValueError(f"hole_radius: must be >= 0, got {hole_radius!r}")
        self.c2 = self.c.copy() if hole_center is None else _center(hole_center, 2, "hole_center")
        dist = float(np.linalg.norm(self.c2 - self.c))
        if self.r > 0 and dist + self.R <= self.r:
            raise ValueError("hole_radius: the hole covers the whole disk")
        self.xa, self.xb = self.c[0] - self.R, self.c[0] + self.R
        self._isect = _circle_intersections(self.c, self.R, self.c2, self.r) if self.r > 0 else np.zeros((0, 2))
        # The slice [l0, u0] minus (l1, u1) changes form where the hole's disk starts or ends and where the two
        # circles cross (an end of a slice switches from one circle to the other): the slice lengths have a
        # kink at each, so each is a panel edge of the quadrature (without the crossings, the Gauss-Legendre
        # panels converge only algebraically there: the crescent's log density was 7.6e-4 off at t = 0.01).
        br = [self.c2[0] - self.r, self.c2[0] + self.r] if self.r > 0 else []
        br += [float(q[0]) for q in self._isect]
        self.breaks = sorted({float(b) for b in br if self.xa < b < self.xb})
        self.single_interval = self.r == 0
        self.area = math.pi * self.R ** 2 - _lens_area(self.R, self.r, dist)

    def bbox(self):
        return self.xa, self.xb, self.c[1] - self.R, self.c[1] + self.R

    def intervals(self, x):
        return _flat_intervals(_disk_minus_disk_intervals, x, self.c, float(self.R), self.c2, float(self.r))

    _sums_kind, _sums_intervals = _KIND_DISK_MINUS_DISK, intervals

    def _sums_params(self) -> np.ndarray:
        """The arguments of :meth:`intervals` as :func:`_region_point`'s ``par``."""
        return np.array([self.c[0], self.c[1], self.R, self.c2[0], self.c2[1], self.r], dtype=float)

    def distance(self, p) -> np.ndarray:
        """The distance to the region: the least of 0 (inside), the outer circle's nearest point if it is outside
        the hole, the hole circle's nearest point if it is inside the outer disk, and the circles' crossings
        (compiled, :func:`_disk_minus_disk_distance`)."""
        p = check_points(p, 2, "p")[0]
        return _disk_minus_disk_distance(np.ascontiguousarray(p), self.c, float(self.R), self.c2, float(self.r),
                                         self._isect)

    def boundary(self, n: int) -> np.ndarray:
        th = np.linspace(0, 2 * np.pi, n, endpoint=False)
        pts = self.c + self.R * np.stack([np.cos(th), np.sin(th)], axis=1)
        if self.r > 0:
            pts = np.concatenate([pts, self.c2 + self.r * np.stack([np.cos(th), np.sin(th)], axis=1)])
        keep = self.distance(pts) <= 1e-9
        return pts[keep] if keep.any() else pts

    def nearest_x(self, p, dist=None):
        """The abscissa of the exact nearest point: the candidate of :meth:`distance` achieving the distance
        (``dist``: ``self.distance(p)``, if known; compiled, :func:`_disk_minus_disk_nearest_x`)."""
        p = np.ascontiguousarray(np.atleast_2d(np.asarray(p, float)))
        dist = self.distance(p) if dist is None else dist
        return _disk_minus_disk_nearest_x(p, np.ascontiguousarray(dist, dtype=float), self.c, float(self.R), self.c2,
                                          float(self.r), self._isect, float(self.xa), float(self.xb))


@numba.njit(cache=True, error_model="numpy")
def _norm_2d(x: float, y: float) -> float:
    r"""``np.linalg.norm`` of the row ``(x, y)``: :math:`\sqrt{x^2 + y^2}`, NumPy's operations."""
    return math.sqrt(x * x + y * y)


@numba.njit(cache=True, error_model="numpy")
def _project_1(px: float, py: float, cx: float, cy: float, R: float) -> tuple[float, float]:
    """The nearest point of the circle (c, R) to p: :math:`c + R v/|v|`, :math:`v = p - c` (``c + (R, 0)`` where |v|
    is not > 0)."""
    vx, vy = px - cx, py - cy
    n = _norm_2d(vx, vy)
    ux, uy = (vx / n, vy / n) if n > 0 else (1.0, 0.0)
    return cx + R * ux, cy + R * uy


@numba.njit(cache=True, error_model="numpy")
def _min_nan(a: float, b: float) -> float:
    """``np.min`` of two numbers (NaN if either is)."""
    if a != a or b != b:
        return np.nan
    return min(a, b)


@numba.njit(cache=True, error_model="numpy")
def _disk_minus_disk_distance(p: np.ndarray, c: np.ndarray, R: float, c2: np.ndarray, r: float,
                              isect: np.ndarray) -> np.ndarray:
    r"""Per point, the distance to the closed disk (c, R) minus the open disk (c2, r): the least of 0 if inside,
    :math:`|p - \pi_A|` with :math:`\pi_A` the outer circle's nearest point if :math:`|\pi_A - c_2| \ge r`, and (r > 0)
    :math:`|p - \pi_B|` with :math:`\pi_B` the hole circle's if :math:`|\pi_B - c| \le R`, and the distances to the
    crossings ``isect``: the NumPy formula it replaced (2026-12-06, stop 42), the same operations per point."""
    out = np.empty(p.shape[0])
    for i in range(p.shape[0]):
        px, py = p[i, 0], p[i, 1]
        inside = _norm_2d(px - c[0], py - c[1]) <= R and not _norm_2d(px - c2[0], py - c2[1]) < r
        best = 0.0 if inside else np.inf
        ax, ay = _project_1(px, py, c[0], c[1], R)
        best = _min_nan(best, _norm_2d(px - ax, py - ay) if _norm_2d(ax - c2[0], ay - c2[1]) >= r else np.inf)
        if r > 0:
            bx, by = _project_1(px, py, c2[0], c2[1], r)
            best = _min_nan(best, _norm_2d(px - bx, py - by) if _norm_2d(bx - c[0], by - c[1]) <= R else np.inf)
            for q in range(isect.shape[0]):
                best = _min_nan(best, _norm_2d(px - isect[q, 0], py - isect[q, 1]))
        out[i] = best
    return out


@numba.njit(cache=True, error_model="numpy")
def _disk_minus_disk_nearest_x(p: np.ndarray, dist: np.ndarray, c: np.ndarray, R: float, c2: np.ndarray, r: float,
                               isect: np.ndarray, xa: float, xb: float) -> np.ndarray:
    r"""Per point, the abscissa of the first candidate of :func:`_disk_minus_disk_distance` (outer circle, hole
    circle, crossings) whose distance is within :math:`10^{-12}(1 + d)` of ``dist``; the point's own abscissa where
    ``dist`` is 0, the point's abscissa clipped to :math:`[x_a, x_b]` where no candidate is (the NumPy formula it
    replaced, 2026-12-06, stop 42, per point)."""
    out = np.empty(p.shape[0])
    for i in range(p.shape[0]):
        px, py, d = p[i, 0], p[i, 1], dist[i]
        tol = 1e-12 * (1 + d)
        ax, ay = _project_1(px, py, c[0], c[1], R)
        best = ax if abs(_norm_2d(px - ax, py - ay) - d) <= tol else np.nan
        if r > 0:
            bx, by = _project_1(px, py, c2[0], c2[1], r)
            if best != best and _norm_2d(bx - c[0], by - c[1]) <= R and abs(_norm_2d(px - bx, py - by) - d) <= tol:
                best = bx
            for q in range(isect.shape[0]):
                if best != best and abs(_norm_2d(px - isect[q, 0], py - isect[q, 1]) - d) <= tol:
                    best = isect[q, 0]
        if d == 0:
            best = px
        if best != best:
            best = px if px != px else min(max(px, xa), xb)
        out[i] = best
    return out


def _circle_intersections(c1, R, c2, r) -> np.ndarray:
    d = float(np.linalg.norm(c2 - c1))
    if d == 0 or d > R + r or d < abs(R - r):
        return np.zeros((0, 2))
    a = (R * R - r * r + d * d) / (2 * d)
    h = math.sqrt(max(R * R - a * a, 0.0))
    e = (c2 - c1) / d
    base = c1 + a * e
    perp = np.array([-e[1], e[0]])
    return np.stack([base + h * perp, base - h * perp])


def _lens_area(R, r, d) -> float:
    """Area of the intersection of two disks of radii R, r at centre distance d."""
    if r == 0 or d >= R + r:
        return 0.0
    if d <= abs(R - r):
        return math.pi * min(R, r) ** 2
    a1 = r * r * math.acos((d * d + r * r - R * R) / (2 * d * r))
    a2 = R * R * math.acos((d * d + R * R - r * r) / (2 * d * R))
    a3 = 0.5 * math.sqrt((-d + r + R) * (d + r - R) * (d - r + R) * (d + r + R))
    return a1 + a2 - a3


class Disk(_DiskMinusDisk):
    """Uniform on the closed disk ``|x - center| <= radius`` in R^2."""

    def __init__(self, center, radius):
        super().__init__(center, radius)

    def __repr__(self):
        return f"Disk(center={self.c.tolist()}, radius={self.R})"


class Annulus(_DiskMinusDisk):
    """Uniform on ``r_in <= |x - center| <= r_out`` in R^2 (non-convex; medial axis: the centre)."""

    def __init__(self, center, r_out, r_in):
        r_out = check_positive(r_out, "r_out")
        r_in = check_positive(r_in, "r_in")
        if r_in >= r_out:
            raise ValueError(f"r_in: must be < r_out={r_out}, got {r_in}")
        super().__init__(center, r_out, center, r_in)

    def __repr__(self):
        return f"Annulus(center={self.c.tolist()}, r_out={self.R}, r_in={self.r})"


class Crescent(_DiskMinusDisk):
    """The authors' crescent: disk (centre, r_out) minus the disk (centre + (offset, 0), r_in)."""

    def __init__(self, center, r_out=1.5, r_in=1.0, offset=0.8):
        c = _center(center, 2)
        off = check_real(offset, "offset")
        if off == 0:
            raise ValueError("offset: must be non-zero (offset 0 is an annulus)")
        super().__init__(c, r_out, c + np.array([off, 0.0]), r_in)

    def __repr__(self):
        return f"Crescent(center={self.c.tolist()}, r_out={self.R}, r_in={self.r}, offset={self.c2[0] - self.c[0]})"


class Lens(_Planar):
    r"""The authors' "lens" :math:`\{-3\le x\le -1,\ |y|\le 0.5(x+3)^2(x+1)^2\}` (shifted by ``center``)."""

    def __init__(self, center=(0.0, 0.0)):
        self.shift = _center(center, 2)
        self.xa, self.xb = -3.0 + self.shift[0], -1.0 + self.shift[0]
        self.breaks = []
        self.area = 16 / 15  # 2 * 0.5 * int_{-3}^{-1} (x+3)^2 (x+1)^2 dx, the integral being 16/15
        self._bp = None

    #: :meth:`distance` is the least distance to boundary samples: above the exact one by at most half the longest
    #: arc between samples, 6.3e-5 (abscissae 1e-4 apart, slope of the boundary at most 0.77).
    distance_error = 2e-4

    def __repr__(self):
        return f"Lens(center={self.shift.tolist()})"

    def bbox(self):
        return self.xa, self.xb, self.shift[1] - 0.5, self.shift[1] + 0.5

    def intervals(self, x):
        return _flat_intervals(_lens_intervals, x, float(self.shift[0]), float(self.shift[1]))

    _sums_kind, _sums_intervals = _KIND_LENS, intervals

    def _sums_params(self) -> np.ndarray:
        """The arguments of :meth:`intervals` as :func:`_region_point`'s ``par`` (padded to 6)."""
        return np.array([self.shift[0], self.shift[1], 0.0, 0.0, 0.0, 0.0], dtype=float)

    def boundary(self, n: int) -> np.ndarray:
        x = np.linspace(self.xa, self.xb, n)
        lo, hi = self.intervals(x)
        return np.concatenate([np.stack([x, hi[:, 0]], 1), np.stack([x, lo[:, 0]], 1)])

    def distance(self, p) -> np.ndarray:
        """Distance to the lens; boundary sampled at 20001 abscissae (error <= half the largest chord, < 2e-4), the
        least sample distance found exactly by :func:`_min_sample_distance` (block-pruned, compiled)."""
        p = check_points(p, 2, "p")[0]
        if getattr(self, "_fine", None) is None:
            self._fine = self.boundary(20001)
            self._fine_boxes = _sample_boxes(self._fine)
        return np.where(self.contains(p), 0.0, _min_sample_distance(np.ascontiguousarray(p), self._fine,
                                                                     *self._fine_boxes))


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    r"""``scipy.special.logsumexp(a, axis=1, keepdims=True)`` of a real 2-D array, by the same NumPy operations in the
    same order as scipy's own (1.17: :math:`\log1p(s) + \log m + a^*` with :math:`a^*` the row maximum taken by m
    entries and :math:`s = \sum_{a_j < a^*} e^{a_j - a^*}/m`; where that is not finite, :math:`\log\sum_j e^{a_j}`), so
    the same floats (tested against scipy, with infinite and NaN entries) without scipy's array-API dispatch (about
    0.1 ms a call, 18696 calls in a full five-region run)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out_inf = np.log(np.sum(np.exp(a), axis=1, keepdims=True))
        a_max = np.max(a, axis=1, keepdims=True)
        mask = a == a_max
        shifted = np.where(mask, -np.inf, a)
        m = np.sum(mask.astype(a.dtype), axis=1, keepdims=True, dtype=a.dtype)
        s = np.sum(np.exp(shifted - a_max), axis=1, keepdims=True, dtype=a.dtype)
        s = np.where(s == 0, s, s / m)
        sgn = np.sign(s + 1) * np.sign(m)
        s = np.where(s < -1, -s - 2, s)
        out = np.log1p(s) + np.log(np.abs(m)) + a_max
    out[sgn < 0] = np.nan
    return np.where(np.isfinite(out), out, out_inf)


# ------------------------------------------------------------------------------- the mixture
class RegionMixture:
    r"""A labelled mixture of uniform laws on regions, with exact OU scores.

    Parameters
    ----------
    regions : sequence of Box / Sphere / Disk / Annulus / Crescent / Lens
        All of the same dimension ``d``.
    weights : array_like, optional
        Component weights (non-negative, summing to 1); default equal.
    labels : array_like of int, optional
        Class of each component (covering ``0..C-1``); default each its own class.
    kernel : {"exact", "authors"}
        ``"authors"``: the support paper's approximate posterior (no lambda, 20 x 20 trapezoid, weights
        not divided by area); planar regions only.
    panels, order : int
        Planar quadrature: asinh-uniform panels and Gauss-Legendre nodes per panel.

    Notes
    -----
    A :class:`numerics.target.Target`, so :func:`numerics.samplers.sample` accepts it directly;
    ``denoiser`` is the exact posterior mean (not Tweedie from the score).  The results of recent ``(x, t)``
    (up to :attr:`CACHE_BYTES`) are cached (keyed by the exact bytes of x; per entry the components computed so
    far), so a guided step computes each component's moments once and a re-evaluation along a stored trajectory
    costs no quadrature.  The posterior means compute only the components whose softmax weight is not provably below
    e^-50 (see the module docstring).
    """

    def __init__(self, regions, weights=None, labels=None, kernel: str = "exact", panels: int = 24,
                 order: int = 8):
        if isinstance(regions, (Box, Sphere, _Planar)):
            regions = [regions]
        try:
            regions = list(regions)
        except TypeError:
            raise ValueError("regions: must be a sequence of regions") from None
        if not regions or not all(isinstance(r, (Box, Sphere, _Planar)) for r in regions):
            raise ValueError("regions: must be a non-empty sequence of Box/Sphere/Disk/Annulus/Crescent/Lens")
        dims = {r.d for r in regions}
        if len(dims) != 1:
            raise ValueError(f"regions: all must have the same dimension, got {sorted(dims)}")
        K = len(regions)
        w = np.full(K, 1.0 / K) if weights is None else check_weights(weights, "weights", K)
        lab, C = (np.arange(K), K) if labels is None else check_labels(labels, K)
        kernel = check_choice(kernel, "kernel", ("exact", "authors"))
        if kernel == "authors" and not all(isinstance(r, _Planar) for r in regions):
            raise ValueError("kernel: 'authors' is defined for planar regions only")
        self.regions, self.weights, self.labels = regions, w, lab.astype(int)
        self.d, self.K, self.n_classes = dims.pop(), K, C
        self.kernel, self.panels, self.order = kernel, check_int(panels, "panels", 2), check_int(order, "order", 2)
        self._cache = {}

    #: Bytes kept by the (t, x) cache of :meth:`component_moments` (a whole trajectory of a few hundred
    #: samples, so that checks re-evaluating the sampler's states, e.g. the support claims' contraction
    #: lemma, cost no quadrature); the oldest entries are dropped first.  An entry of N points holds 18 N K bytes
    #: of component moments and bookkeeping (computed-entry flags, weight bounds) besides x: about 5300 states of
    #: the five-region experiment's 100 points, as many as the 64 MB of moments alone held before 2026-12-06.
    CACHE_BYTES = 96_000_000

    def __repr__(self):
        return f"RegionMixture({self.regions}, weights={self.weights.tolist()}, labels={self.labels.tolist()})"

    # -- component moments ----------------------------------------------------------------------
    def component_moments(self, x, t, panels: int | None = None, order: int | None = None):
        """``(log w_k + log p_t(x | k), E[X_0 | X_t = x, k])``: arrays ``(N, K)`` and ``(N, K, d)``."""
        x, _ = check_points(x, self.d)
        t = check_time(t)
        return self._moments(x, t, panels or self.panels, order or self.order)

    def _check_scale(self, x: np.ndarray, t: float) -> tuple[float, float]:
        """``(lambda_t, sigma_t^2)``; ValueError naming ``t`` or ``x`` where the kernel is not defined."""
        lam, s2 = alpha_sigma2(t)
        if lam < 1e-300 or s2 == 0.0:
            raise ValueError(f"t: must give alpha_t > 1e-300 and sigma_t^2 > 0, got t={t!r}")
        if self.kernel == "exact" and not np.all(np.isfinite(x / lam)):
            raise ValueError(f"x: x / alpha_t overflows float64 at t={t!r} (|x| up to {np.max(np.abs(x)):.3g} too large "
                             "for this t)")
        return lam, s2

    def _moments(self, x: np.ndarray, t: float, P: int, n: int, need: np.ndarray | None = None,
                 dist: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`component_moments` of the checked ``x, t``, of the (row, component) entries ``need`` ((N, K) bool;
        None: all).  An entry not computed (only when ``need`` leaves it out) is ``-inf`` in the log weights and 0 in
        the means.  The cache keeps, per ``(t, x)``, the entries computed so far; a later call computes only the
        entries it needs that are missing (rows of a component computed together or apart give the same floats:
        every step of the component moments is row by row).  ``dist``: the points' distances to each region ((N, K),
        :meth:`_log_weight_bounds`), if known."""
        ll, mean, done = self._entry(x, t, P, n)[:3]
        todo = ~done if need is None else need & ~done
        if todo.any():
            self._fill(x, t, P, n, todo, ll, mean, done, dist)
        return ll, mean

    def _entry(self, x: np.ndarray, t: float, P: int, n: int) -> list:
        """The cache entry of ``(t, x)``: ``[ll, mean, done, ub]`` (``ub``: :meth:`_log_weight_bounds`'s bounds once
        computed, else None), a new empty one if there is none."""
        key = (t, P, n, self.kernel, x.shape, x.tobytes())
        entry = self._cache.get(key)
        if entry is None:
            self._check_scale(x, t)
            N = x.shape[0]
            entry = [np.full((N, self.K), -np.inf), np.zeros((N, self.K, self.d)), np.zeros((N, self.K), bool), None]
            self._store(key, entry)
        return entry

    def _fill(self, x, t, P, n, todo, ll, mean, done, dist) -> None:
        """Compute the entries ``todo`` ((N, K) bool) into ``ll, mean`` and mark them ``done``: the planar
        components' rows by :func:`_joint_slice_moments`, the closed-form regions and the authors' kernel all rows
        of a component at once."""
        lam, s2 = alpha_sigma2(t)
        N = x.shape[0]
        mu, tau = x / lam, math.sqrt(s2) / lam
        cols = [k for k in range(self.K) if todo[:, k].any()]
        new_ll, new_mean, rows_of = {}, {}, {}
        if self.kernel == "exact":
            planar = [k for k in cols if isinstance(self.regions[k], _Planar)]
            for k in planar:
                rows_of[k] = np.flatnonzero(todo[:, k])
            sums = _joint_slice_moments([self.regions[k] for k in planar], [rows_of[k] for k in planar], mu, tau, P,
                                        n, None if dist is None else [dist[rows_of[k], k] for k in planar])
            for k, (lm, m) in zip(planar, sums):
                with np.errstate(divide="ignore"):
                    new_ll[k] = lm - self.regions[k].log_volume - self.d * math.log(lam) + math.log(self.weights[k])
                new_mean[k] = m
            cols_rest = [k for k in cols if k not in rows_of]
        else:
            cols_rest = cols
        for k in cols_rest:
            reg = self.regions[k]
            rows_of[k] = np.arange(N)
            if self.kernel == "authors":
                nodes, W = reg.authors_nodes()
                d2 = np.sum((x[:, None, :] - nodes[None, :, :]) ** 2, axis=2)
                with np.errstate(divide="ignore"):
                    lw = np.log(W)[None, :] - d2 / (2 * s2) - np.log(2 * np.pi * s2)
                l = logsumexp(lw, axis=1)
                new_ll[k] = math.log(self.weights[k]) + l
                new_mean[k] = np.exp(lw - l[:, None]) @ nodes
                continue
            if isinstance(reg, Sphere):
                l, m = reg.log_likelihood_and_mean(x, lam, s2)
            else:
                lm, m = reg.kernel_moments(mu, tau)
                l = lm - reg.log_volume - self.d * math.log(lam)
            with np.errstate(divide="ignore"):
                new_ll[k] = l + math.log(self.weights[k])
            new_mean[k] = m
        # a component of positive weight has p_t(x | k) > 0: a log-likelihood of -inf is an underflow
        bad = np.zeros(N, bool)
        for k in cols:
            bad[rows_of[k]] |= (np.isnan(new_ll[k]) | np.isnan(new_mean[k]).any(axis=1)
                                | ((new_ll[k] == -np.inf) & (self.weights[k] > 0)))
        if bad.any():
            raise self._moments_error(x, t, bad)
        for k in cols:
            ll[rows_of[k], k] = new_ll[k]
            mean[rows_of[k], k] = new_mean[k]
            done[rows_of[k], k] = True

    def _store(self, key, entry) -> None:
        """Keep ``entry`` under ``key``, dropping the oldest entries beyond :attr:`CACHE_BYTES`."""
        def size(k, e):  # the weight bounds (added later) are counted as one more array of the log weights' size
            return 2 * e[0].nbytes + e[1].nbytes + e[2].nbytes + len(k[-1])
        self._cache_bytes = getattr(self, "_cache_bytes", 0) + size(key, entry)
        while self._cache and self._cache_bytes > self.CACHE_BYTES:
            k0 = next(iter(self._cache))
            self._cache_bytes -= size(k0, self._cache.pop(k0))
        self._cache[key] = entry

    def _log_weight_bounds(self, x: np.ndarray, lam: float, s2: float, P: int, n: int
                           ) -> tuple[np.ndarray, np.ndarray]:
        r"""``(ub, dist)``, each (N, K): per planar component an upper bound of the log weight
        :math:`\ell_k = \log w_k + \log M_k - \log|\Omega_k| - 2\log\lambda` that :meth:`component_moments`
        computes (:meth:`_Planar.log_mass_bound`), and the distance of :math:`\mu = x/\lambda` to the region; ``+inf``
        and NaN for the other regions (never pruned)."""
        N = x.shape[0]
        ub, dist = np.full((N, self.K), np.inf), np.full((N, self.K), np.nan)
        mu, tau = x / lam, math.sqrt(s2) / lam
        for k, reg in enumerate(self.regions):
            if isinstance(reg, _Planar):
                dist[:, k] = reg.distance(mu)
                with np.errstate(divide="ignore"):
                    ub[:, k] = (reg.log_mass_bound(dist[:, k], tau, P, n) - reg.log_volume - self.d * math.log(lam)
                                + math.log(self.weights[k]))
        return ub, dist

    def _needed_moments(self, x: np.ndarray, t: float, y=None) -> tuple[np.ndarray, np.ndarray]:
        r"""The component moments that :meth:`_mean` (class ``y``, or None) needs: every entry except those whose
        weight in its softmax is provably below :math:`e^{-50}`.  An entry (row i, component k) is left out when its bound
        :math:`u_{ik}` (:meth:`_log_weight_bounds`) lies more than :data:`_SOFTMAX_GAP` below a computed log weight of
        the row (first the entries that survive the test against the row's largest bound, then any left-out entry
        within the gap of their largest); a component of the row's class ``y`` is always computed, and so, for
        ``y = None``, is one of the classes of the last call with a class and as many rows (a guided sampler's next
        guidance call at the same ``(x, t)`` then finds its components in the cache).  Then
        :math:`\ell_k - \operatorname{logsumexp}(\ell) < -50` and the mean is the full computation's up to
        :math:`2(K-1)e^{-50}\max_k|m_k|` (:data:`_SOFTMAX_GAP`: far below its rounding; tested), at the cost of the
        entries left out (at small and intermediate t, most components of a point far from them)."""
        P, n = self.panels, self.order
        if self.kernel != "exact" or not any(isinstance(r, _Planar) for r in self.regions):
            return self._moments(x, t, P, n)
        entry = self._entry(x, t, P, n)
        if entry[2].all():
            return entry[0], entry[1]
        dist = None
        if entry[3] is None:  # the distances serve this call's fills; later fills (rare) compute their own
            lam, s2 = alpha_sigma2(t)
            entry[3], dist = self._log_weight_bounds(x, lam, s2, P, n)
        ub = entry[3]
        out = ub < np.max(ub, axis=1, keepdims=True) - _SOFTMAX_GAP
        if y is not None:
            self._classes_hint = (x.shape[0], np.array(y))
        elif getattr(self, "_classes_hint", (None,))[0] == x.shape[0]:
            y = self._classes_hint[1]  # a sampler's next guidance call at this (x, t) will need these: compute them now
        if y is not None:
            out &= self.labels[None, :] != (y if np.ndim(y) == 0 else np.asarray(y)[:, None])
        if not out.any():
            return self._moments(x, t, P, n, None, dist)
        ll, mean = self._moments(x, t, P, n, ~out, dist)
        late = out & (ub >= np.max(ll, axis=1, keepdims=True) - _SOFTMAX_GAP)
        if late.any():
            ll, mean = self._moments(x, t, P, n, ~out | late, dist)
        return ll, mean

    def _moments_error(self, x: np.ndarray, t: float, bad: np.ndarray) -> ValueError:
        """The error for points ``x[bad]`` whose component moments are not finite at ``t``: it blames ``x`` when
        the same ``t`` works at a point of the support (so the points are too far from it), else ``t``."""
        reg = self.regions[0]
        if isinstance(reg, Box):
            ref = 0.5 * (reg.lo + reg.hi)
        elif isinstance(reg, Sphere):
            ref = reg.center + reg.R * np.eye(reg.d)[0]
        else:
            ref = reg._boundary_points()[0]
        ref = alpha_sigma2(t)[0] * ref[None, :]
        ref_ok = not np.array_equal(x, ref)
        if ref_ok:
            try:
                self.component_moments(ref, t)
            except ValueError:
                ref_ok = False
        if ref_ok:
            i = int(np.argmax(bad))
            return ValueError(f"x: the component moments are not finite at t={t!r} for {int(bad.sum())} point(s), e.g. "
                              f"x={x[i].tolist()} (the region kernel underflows: x too far from every region for this t)")
        return ValueError(f"t: the component moments are not finite at t={t!r} (the region kernel underflows: "
                          "t too small or too large, or x too far from every region)")

    def log_density(self, x, t) -> np.ndarray:
        """:math:`\\log p_t(x)` (exact kernel: Lebesgue density; spheres: density of the smoothed surface law)."""
        ll, _ = self.component_moments(x, t)
        return logsumexp(ll, axis=1)

    def class_log_posterior(self, x, t) -> np.ndarray:
        ll, _ = self.component_moments(x, t)
        cl = np.stack([logsumexp(np.where(self.labels == c, ll, -np.inf), axis=1) for c in range(self.n_classes)], 1)
        return cl - logsumexp(cl, axis=1, keepdims=True)

    def class_posterior(self, x, t) -> np.ndarray:
        return np.exp(self.class_log_posterior(x, t))

    def _mean(self, x, t, y=None) -> np.ndarray:
        """The posterior mean, of class ``y`` if given (an int, or an ``(N,)`` array: one class per row)."""
        x, _ = check_points(x, self.d)
        ll, mean = self._needed_moments(x, check_time(t), y)
        if y is not None:
            ll = np.where(self.labels == (y if np.ndim(y) == 0 else np.asarray(y)[:, None]), ll, -np.inf)
        pi = np.exp(ll - _logsumexp_rows(ll))
        return np.einsum("nk,nkd->nd", pi, mean)

    def _label(self, y) -> int:
        return check_label(y, self.n_classes, "y")

    def denoiser(self, x, t) -> np.ndarray:
        """:math:`E[X_0 \\mid X_t = x]` (exact posterior mean)."""
        return self._mean(x, t)

    def conditional_denoiser(self, x, t, y) -> np.ndarray:
        return self._mean(x, t, self._label(y))

    def conditional_denoiser_rows(self, x, t, etas: np.ndarray) -> np.ndarray:
        """Row i: :meth:`conditional_denoiser` with ``y = etas[i]`` (bit for bit: the softmax is taken row by row)."""
        return self._mean(x, t, self._check_rows(x, etas))

    def score(self, x, t) -> np.ndarray:
        x2, _ = check_points(x, self.d)
        lam, s2 = alpha_sigma2(t)
        return (lam * self._mean(x2, t) - x2) / s2

    def conditional_score(self, x, t, y) -> np.ndarray:
        x2, _ = check_points(x, self.d)
        lam, s2 = alpha_sigma2(t)
        return (lam * self._mean(x2, t, self._label(y)) - x2) / s2

    def guidance_vector(self, x, t, y) -> np.ndarray:
        lam, s2 = alpha_sigma2(t)
        return lam * (self._mean(x, t, self._label(y)) - self._mean(x, t)) / s2

    def guidance_vector_rows(self, x, t, etas: np.ndarray) -> np.ndarray:
        r""":math:`\lambda(m_{\eta_i} - \bar m)/\sigma^2` for each row i with its own class ``etas[i]`` (row i equals
        :meth:`guidance_vector` with ``y = etas[i]`` bit for bit: the softmax is taken row by row)."""
        etas = self._check_rows(x, etas)
        lam, s2 = alpha_sigma2(t)
        return lam * (self._mean(x, t, etas) - self._mean(x, t)) / s2

    def _check_rows(self, x, etas) -> np.ndarray:
        """``etas`` as one class of the mixture per row of ``x`` (ValueError naming ``etas``)."""
        etas = np.asarray(etas)
        if etas.shape != (np.shape(x)[0],) or not np.issubdtype(etas.dtype, np.integer):
            raise ValueError(f"etas: must be {np.shape(x)[0]} integer classes (one per row), got {etas!r}")
        for v in np.unique(etas):
            self._label(v)
        return etas

    def guided_denoiser(self, x, t, y, gamma) -> np.ndarray:
        r""":math:`D_\gamma = \gamma m_y - (\gamma - 1)\bar m`."""
        gamma = check_real(gamma, "gamma")
        with np.errstate(over="ignore", invalid="ignore"):
            out = gamma * self._mean(x, t, self._label(y)) - (gamma - 1) * self._mean(x, t)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"gamma: the guided denoiser overflows float64 (|gamma| = {abs(gamma):.3g} too large)")
        return out

    def distance(self, x, y=None) -> np.ndarray:
        """Distance from points to the support of the mixture (or of class ``y``)."""
        x, _ = check_points(x, self.d)
        regs = [r for r, l in zip(self.regions, self.labels) if y is None or l == self._label(y)]
        with np.errstate(over="ignore"):
            out = np.min(np.stack([r.distance(x) for r in regs]), axis=0)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"x: the distance to the support overflows float64 (|x| up to {np.max(np.abs(x)):.3g} "
                             "too large)")
        return out

    def quadrature_error(self, x, t) -> float:
        """Refinement estimate of the planar-quadrature error of the denoiser: max over ``x`` of
        ``|m(P, n) - m(2P, 2n)|`` over all components (0 when every region is closed form)."""
        if self.kernel != "exact" or not any(isinstance(r, _Planar) for r in self.regions):
            return 0.0
        _, m1 = self.component_moments(x, t)
        _, m2 = self.component_moments(x, t, 2 * self.panels, 2 * self.order)
        return float(np.max(np.abs(m1 - m2)))


def three_disks(**kw) -> RegionMixture:
    """The authors' convex example (Figures 3-4): three disks, weights 1/3, target class 1."""
    return RegionMixture([Disk((-1.5, 0.5), 0.7), Disk((0.2, 3.0), 1.2), Disk((2.5, -0.5), 1.5)], **kw)


def two_crescents(**kw) -> RegionMixture:
    """The authors' non-convex example (Figures 5-6): crescents at (2, 2) (bite to the right, class 0)
    and (-2, 3) (bite to the left, class 1); outer radius 1.5, inner 1.0, offset 0.8; weights 1/2."""
    return RegionMixture([Crescent((2.0, 2.0), 1.5, 1.0, 0.8), Crescent((-2.0, 3.0), 1.5, 1.0, -0.8)], **kw)

r"""Independent high-precision reference for the planar region mixtures of the support paper.

The package computes the noised densities of its region mixtures with a fast float64 slice quadrature
(:mod:`numerics.papers.support.region_targets`).  This module computes the same quantities a second
time, from the numbers that define the regions, without calling any of that module's geometry or
quadrature: the regions are re-described by plain tuples (a *region spec*), their vertical slices are
written again here, the y-direction is integrated in closed form in mpmath and the x-direction by
mpmath's tanh-sinh quadrature.  It is the reference of the claim body :func:`geometry_measurements`.

Region specs
------------
``("disk", cx, cy, R)``
    the closed disk :math:`|x - c| \le R`.
``("crescent", cx, cy, R_out, R_in, offset)``
    the outer disk :math:`|x - c| \le R_{out}` minus the open inner disk
    :math:`|x - c - (\mathrm{offset}, 0)| < R_{in}` (the inner disk may stick out of the outer one).
``("lens",)`` or ``("lens", sx, sy)``
    the authors' lens :math:`\{-3 \le x - s_x \le -1,\ |y - s_y| \le \tfrac12 (x - s_x + 3)^2 (x - s_x + 1)^2\}`.

Time convention: OU, :math:`\lambda_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`.  Component ``k`` is
uniform on :math:`\Omega_k` (area :math:`A_k`) and

.. math::
    p_t(v \mid k) = \frac{1}{A_k}\int_{\Omega_k} N(v;\,\lambda x,\,\sigma^2 I)\,dx
    = \frac{1}{\lambda A_k}\int \frac{1}{\sigma}\,\phi(u_x)\,
      \sum_j \bigl[\Phi(\beta_j(x)) - \Phi(\alpha_j(x))\bigr]\,dx,

with :math:`u_x = (\lambda x - v_1)/\sigma`, and for the slice :math:`\{y : (x, y) \in \Omega_k\} = \bigcup_j
[\ell_j(x), h_j(x)]`: :math:`\alpha_j = (\lambda \ell_j - v_2)/\sigma`, :math:`\beta_j = (\lambda h_j - v_2)/\sigma`.
The gradient is differentiated under the integral sign, analytically (no finite differences):

.. math::
    \partial_{v_1} p_t(v\mid k) = \frac{1}{\lambda A_k}\int \frac{\phi(u_x)}{\sigma}\,\frac{u_x}{\sigma}
      \sum_j \Delta\Phi_j\,dx, \qquad
    \partial_{v_2} p_t(v\mid k) = -\frac{1}{\lambda A_k}\int \frac{\phi(u_x)}{\sigma^2}
      \sum_j \bigl[\phi(\beta_j) - \phi(\alpha_j)\bigr]\,dx .

The mixture :math:`p_t = \sum_k w_k p_t(\cdot\mid k)` (the *stated* weights :math:`w_k`), the score
:math:`\nabla p_t / p_t`, the class log posterior :math:`\log\sum_{k \in c} w_k p_t(v|k) - \log p_t(v)` and the
class guidance vector :math:`\nabla \log P(c \mid v) = \nabla p_c / p_c - \nabla p_t / p_t` follow in mpmath.

Errors
------
* :math:`\Phi(\beta) - \Phi(\alpha)` is formed from ``erfc`` on the side where both ends lie in a tail
  (no cancellation of two numbers close to 1); mpmath has no underflow, so far tails keep their relative
  accuracy.
* The x-integrals are split at every abscissa where the slice structure changes (region ends, the
  inner disk's ends, the abscissa where the two circles of a crescent cross) and, to resolve the kernel,
  at :math:`x^*` and :math:`x^* \pm 2\tau` (:math:`\tau = \sigma/\lambda`, :math:`x^*` the abscissa of the
  nearest point of the region to :math:`v/\lambda`); on each piece tanh-sinh handles the square-root
  endpoint behaviour.  The integrands are scaled by their peak on a pilot set first (mpmath's stopping rule
  is absolute).  The value and its two gradient integrands are integrated together at shared nodes
  (:func:`_joint_tanh_sinh`: for each of the three exactly ``mp.quad``'s nodes, level sums, stopping rule and
  error estimate, each node evaluated once).  mpmath's error estimate of every integral plus a working-precision term
  :math:`10^{3-\mathrm{dps}}(1 + E)\int|f|` (``E`` the largest exponent met; see :func:`_region_integrals`)
  is propagated to first order into the error bound of each returned quantity (:class:`OracleValues`),
  with the final rounding to float64 (:math:`u|\cdot|`).  Checked against 45-digit runs: the bound held
  with two to six orders of magnitude to spare.
* Areas: mpmath quadrature of the slice lengths over the same pieces (:func:`oracle_area`).

Distances (:func:`brute_force_distance`): the boundary is sampled from this module's own parametrisation
(arcs of circles by angle, with their exact end angles at the crescent's corners; the lens's two graphs by
abscissa), consecutive samples are joined by segments, and the distance to the polyline is taken by brute
force; points inside (slice test) get 0.  The polyline lies within the *sagitta* of the curve: for a
circle arc of radius :math:`R` split into angles :math:`\Delta\theta`, :math:`R(1 - \cos(\Delta\theta/2))
\approx h^2/(8R)` for chords :math:`h`; for the lens, whose curvature radius varies, the chord is the linear
interpolant of :math:`g(x) = \tfrac12 (x+3)^2(x+1)^2` on nodes :math:`\Delta x` apart, so the vertical gap is
at most :math:`\Delta x^2 \max|g''|/8` with :math:`g'' = 6s^2 - 2` (:math:`s = x + 2 \in [-1, 1]`), i.e.
:math:`\max|g''| = 4` at the tips (curvature radius :math:`\rho_{\min} = 1/4` there, where :math:`g' = 0`).
Hence :math:`|d_{\rm polyline} - d| \le` that bound (Hausdorff distance of curve and polyline); the chords
within twice the bound of the nearest one are then cut finer, repeatedly, until the bound is below
:math:`10^{-18}` (:func:`brute_force_distance`).

The claim body
--------------
:func:`geometry_measurements` compares the package's mixtures (``experiments.experiment(name).mixture``)
with this oracle; :data:`GEOMETRY_CONTROLS`, :data:`GEOMETRY_QUICK`, :data:`GEOMETRY_FULL` are the metadata
for wrapping it as a claim.  See ``proofs_notes/support.md#geometry-oracle``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import mpmath as mp
import numpy as np

from numerics import constants, validate
from numerics.constants import UNIT_ROUNDOFF as U
from numerics.papers.support.region_targets import PLANAR_ACCURACY
from numerics.references import disk_cache
from numerics.references.process_map import process_map
from numerics.validate import check_array, check_int, check_label, check_points, check_time

__all__ = ["AUTHORS_SPECS", "OracleValues", "check_region", "region_breaks", "region_slices", "oracle_contains",
           "oracle_area", "oracle_values", "cached_oracle_values", "cached_brute_force_distance",
           "oracle_log_density", "oracle_class_log_posterior", "oracle_score",
           "oracle_guidance", "boundary_polylines", "brute_force_distance", "spec_of_region",
           "geometry_measurements", "DEFAULT_DPS", "LENS_MAX_G1", "LENS_MAX_G2", "DENSITY_POINTS",
           "GEOMETRY_CONTROLS", "GEOMETRY_QUICK", "GEOMETRY_FULL", "PKG_LENS_DIST_ERR", "REFINE", "REFINE_FLOOR",
           "REFINE_CAP", "KERNEL_SPLITS", "REFINE_TAIL"]

#: Working precision (decimal digits) of the oracle's mpmath computations.
DEFAULT_DPS = 24
#: :math:`\max_{[-3,-1]} |g''|` of the lens half-width :math:`g(x) = \tfrac12 (x+3)^2 (x+1)^2`:
#: with :math:`s = x + 2`, :math:`g = \tfrac12 (s^2-1)^2`, :math:`g'' = 6s^2 - 2 \in [-2, 4]`.
LENS_MAX_G2 = 4.0
#: :math:`\max_{[-3,-1]} |g'|`: :math:`g' = 2s(s^2 - 1)`, extreme at :math:`s^2 = 1/3`: :math:`4/(3\sqrt3)`.
LENS_MAX_G1 = 4.0 / (3.0 * math.sqrt(3.0))

#: The authors' mixtures (arXiv 2605.07220, read from their code; see ``experiments.py``), written from
#: their numbers: ``(regions, weights)``, each region its own class.
AUTHORS_SPECS: dict[str, tuple[tuple[tuple, ...], tuple[float, ...]]] = {
    "three_disks": ((("disk", -1.5, 0.5, 0.7), ("disk", 0.2, 3.0, 1.2), ("disk", 2.5, -0.5, 1.5)),
                    (1 / 3, 1 / 3, 1 / 3)),
    "two_crescents": ((("crescent", 2.0, 2.0, 1.5, 1.0, 0.8), ("crescent", -2.0, 3.0, 1.5, 1.0, -0.8)),
                      (0.5, 0.5)),
    "five_regions": ((("lens", 0.0, 0.0), ("crescent", 2.0, 2.0, 1.5, 1.0, 0.8),
                      ("crescent", 2.0, -2.0, 1.5, 1.0, -0.8), ("disk", -3.0, 3.0, 0.8), ("disk", -1.0, -3.0, 0.8)),
                     (0.2, 0.2, 0.2, 0.2, 0.2)),
}


# ==================================================================================================== specs
def _finite(value: Any, name: str) -> float:
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    return v


def check_region(spec: Any, name: str = "spec") -> tuple:
    """Validate a region spec (see the module docstring) and return it normalised (floats; the lens with
    its shift).

    Raises
    ------
    ValueError
        Naming ``name``: not a tuple with a known kind, wrong number of numbers, a non-finite number, a
        non-positive radius, a zero offset, or an inner disk that covers the outer one.
    """
    if not isinstance(spec, (tuple, list)) or not spec or not isinstance(spec[0], str):
        raise ValueError(f"{name}: must be a tuple ('disk'|'crescent'|'lens', numbers...), got {spec!r}")
    kind, nums = spec[0], list(spec[1:])
    sizes = {"disk": (3,), "crescent": (5,), "lens": (0, 2)}
    if kind not in sizes:
        raise ValueError(f"{name}: unknown region kind {kind!r} (choose 'disk', 'crescent' or 'lens')")
    if len(nums) not in sizes[kind]:
        raise ValueError(f"{name}: a {kind} takes {' or '.join(map(str, sizes[kind]))} numbers, got {len(nums)}")
    vals = [_finite(v, f"{name}") for v in nums]
    if kind == "lens":
        return ("lens", *(vals or [0.0, 0.0]))
    if kind == "disk":
        if vals[2] <= 0:
            raise ValueError(f"{name}: the disk radius must be > 0, got {vals[2]!r}")
        return ("disk", *vals)
    cx, cy, R, r, off = vals
    if R <= 0 or r <= 0:
        raise ValueError(f"{name}: the crescent radii must be > 0, got R_out={R!r}, R_in={r!r}")
    if off == 0:
        raise ValueError(f"{name}: the crescent offset must be non-zero (offset 0 is an annulus)")
    if abs(off) + R <= r:
        raise ValueError(f"{name}: the inner disk covers the outer disk (|offset| + R_out <= R_in)")
    return ("crescent", cx, cy, R, r, off)


def _check_regions(regions: Any, name: str = "regions") -> tuple[tuple, ...]:
    if isinstance(regions, tuple) and regions and isinstance(regions[0], str):
        regions = (regions,)
    try:
        regs = tuple(regions)
    except TypeError:
        raise ValueError(f"{name}: must be a sequence of region specs, got {regions!r}") from None
    if not regs:
        raise ValueError(f"{name}: must not be empty")
    return tuple(check_region(r, f"{name}[{i}]") for i, r in enumerate(regs))


def _check_weights(weights: Any, K: int) -> tuple[float, ...]:
    w = check_array(weights, "weights", (K,))
    if np.any(w <= 0):
        raise ValueError(f"weights: must be positive, got {w.tolist()}")
    if abs(float(np.sum(w)) - 1.0) > 1e-12:
        raise ValueError(f"weights: must sum to 1, got sum {float(np.sum(w))!r}")
    return tuple(float(x) for x in w)


def _check_labels(labels: Any, K: int) -> tuple[int, ...]:
    if labels is None:
        return tuple(range(K))
    lab = np.asarray(labels)
    if lab.shape != (K,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels: must be {K} integers, got {labels!r}")
    if set(lab.tolist()) != set(range(int(lab.max()) + 1)) or lab.min() < 0:
        raise ValueError(f"labels: must cover 0..C-1, got {lab.tolist()}")
    return tuple(int(x) for x in lab)


def _check_dps(dps: Any) -> int:
    return check_int(dps, "dps", 15, 200)


def spec_of_region(region: Any) -> tuple:
    """The spec of a package region (:class:`Disk`, :class:`Crescent`, :class:`Lens`) from its public
    parameters (centre, radii, offset, shift); nothing of its geometry code is used."""
    kind = type(region).__name__.lstrip("_")
    if hasattr(region, "shift"):
        return check_region(("lens", float(region.shift[0]), float(region.shift[1])), "region")
    if hasattr(region, "c") and hasattr(region, "R"):
        c = [float(v) for v in region.c]
        if float(getattr(region, "r", 0.0)) == 0.0:
            return check_region(("disk", c[0], c[1], float(region.R)), "region")
        off = float(region.c2[0] - region.c[0])
        if float(region.c2[1]) != c[1]:
            raise ValueError("region: only crescents with a horizontal offset have a spec")
        return check_region(("crescent", c[0], c[1], float(region.R), float(region.r), off), "region")
    raise ValueError(f"region: no spec for {kind}")


# ==================================================================================================== slices
def _crescent_cross(spec: tuple) -> float | None:
    """Abscissa where the outer and inner circles of a crescent cross, or None."""
    _, cx, _, R, r, off = spec
    if not (abs(R - r) < abs(off) < R + r):
        return None
    # (x - cx)^2 - (x - cx - off)^2 = R^2 - r^2
    return cx + (R * R - r * r + off * off) / (2.0 * off)


def region_breaks(spec: tuple) -> list[float]:
    """Sorted abscissae where the slice structure of the region changes, including both ends."""
    spec = check_region(spec)
    if spec[0] == "lens":
        return [-3.0 + spec[1], -1.0 + spec[1]]
    if spec[0] == "disk":
        return [spec[1] - spec[3], spec[1] + spec[3]]
    _, cx, _, R, r, off = spec
    lo, hi = cx - R, cx + R
    pts = {lo, hi}
    for b in (cx + off - r, cx + off + r, _crescent_cross(spec)):
        if b is not None and lo < b < hi:
            pts.add(b)
    return sorted(pts)


def _sqrt_pos(a):
    return mp.sqrt(a) if a > 0 else mp.mpf(0)


def region_slices(spec: tuple, x) -> list[tuple[Any, Any]]:
    r"""The slice :math:`\{y : (x, y) \in \Omega\}` as a list of intervals ``(lo, hi)`` (mpmath numbers if
    ``x`` is an ``mpf``, else floats); empty outside the region.

    Disk: :math:`[c_y - h, c_y + h]`, :math:`h = \sqrt{R^2 - (x - c_x)^2}`.  Crescent: the outer slice minus the
    open inner slice :math:`(c_y - h_1, c_y + h_1)`, which is two intervals, the whole outer slice (no inner
    disk at this ``x``) or nothing (the inner slice covers the outer one).  Lens: :math:`[s_y - g, s_y + g]`.
    """
    spec = check_region(spec)
    if not isinstance(x, mp.mpf):
        x = _finite(x, "x")
    return _slices(spec, x)


def _slice_numbers(spec: tuple) -> tuple[float, ...]:
    """The numbers :func:`_slices` uses, formed in float64 from a validated spec: the lens ``(s_x, s_y)``, a disk
    ``(c_x, c_y, R, R*R)``, a crescent ``(c_x, c_y, R, R*R, R_in, R_in*R_in, c_x + offset)`` (the products and
    the inner centre rounded in float64 whatever the type of the abscissa)."""
    if spec[0] == "lens":
        return spec[1], spec[2]
    cx, cy, R = spec[1], spec[2], spec[3]
    if spec[0] == "disk":
        return cx, cy, R, R * R
    r, off = spec[4], spec[5]
    return cx, cy, R, R * R, r, r * r, cx + off


def _slices(spec: tuple, x, nums: tuple | None = None) -> list[tuple[Any, Any]]:
    """:func:`region_slices` of a validated spec (the quadrature's inner loop); ``nums``: its
    :func:`_slice_numbers`, possibly converted to mpf once (exactly: the same slices, without a float
    conversion per operation)."""
    use_mp = isinstance(x, mp.mpf)
    sq = _sqrt_pos if use_mp else (lambda a: math.sqrt(a) if a > 0 else 0.0)
    if nums is None:
        nums = _slice_numbers(spec)
    if spec[0] == "lens":
        u = x - nums[0]
        if u < -3 or u > -1:
            return []
        g = (u + 3) ** 2 * (u + 1) ** 2 / 2
        return [(nums[1] - g, nums[1] + g)]
    cx, cy, R, R2 = nums[:4]
    d0 = x - cx
    if abs(d0) > R:
        return []
    h0 = sq(R2 - d0 ** 2)
    if spec[0] == "disk":
        return [(cy - h0, cy + h0)]
    r, r2, cx2 = nums[4:]
    dx = x - cx2
    if abs(dx) >= r:
        return [(cy - h0, cy + h0)]
    h1 = sq(r2 - dx * dx)
    if h1 >= h0:
        return []
    return [(cy - h0, cy - h1), (cy + h1, cy + h0)]


def oracle_contains(spec: Any, p: Any) -> np.ndarray:
    """Whether points ``p`` (``(N, 2)``) lie in the region (closed; the slice test), or in the union of a
    sequence of specs."""
    regs = _check_regions(spec, "spec")
    p = check_points(p, 2, "p")[0]
    out = np.zeros(p.shape[0], dtype=bool)
    for reg in regs:
        for i, (x, y) in enumerate(p):
            out[i] |= any(lo <= y <= hi for lo, hi in _slices(reg, float(x)))
    return out


@lru_cache(maxsize=64)
def _area(spec: tuple, dps: int) -> tuple[float, float]:
    with mp.workdps(dps):
        br = [mp.mpf(b) for b in region_breaks(spec)]
        f = lambda x: mp.fsum(hi - lo for lo, hi in _slices(spec, x))  # noqa: E731
        val, err = mp.quad(f, br, error=True)
        return float(val), float(abs(err) + abs(val) * mp.mpf(10) ** (-dps + 2))


def oracle_area(spec: Any, dps: int = DEFAULT_DPS) -> tuple[float, float]:
    r"""``(area, error bound)`` of a region: :math:`\int (\text{slice length})\,dx` by mpmath tanh-sinh over
    the pieces between :func:`region_breaks` (error: mpmath's estimate plus :math:`10^{2-\mathrm{dps}}` relative)."""
    return _area(check_region(spec), _check_dps(dps))


# ==================================================================================================== densities
def _dPhi(a, b):
    r""":math:`\Phi(\sqrt2\,b) - \Phi(\sqrt2\,a)` for :math:`a \le b` (arguments already divided by
    :math:`\sqrt2`), from ``erfc`` on the side without cancellation:
    :math:`\tfrac12(\mathrm{erfc}(a) - \mathrm{erfc}(b))` for :math:`a \ge 0`, its mirror for :math:`b \le 0`,
    else :math:`1 - \tfrac12(\mathrm{erfc}(b) + \mathrm{erfc}(-a))`."""
    if a >= 0:
        return (mp.erfc(a) - mp.erfc(b)) / 2
    if b <= 0:
        return (mp.erfc(-b) - mp.erfc(-a)) / 2
    return 1 - (mp.erfc(b) + mp.erfc(-a)) / 2


def _nearest_abscissa(spec: tuple, mu: np.ndarray) -> float:
    """Abscissa of (a sampled approximation of) the nearest point of the region to ``mu``: it only places
    extra breakpoints of the x-quadrature (accuracy is not needed for correctness)."""
    if oracle_contains(spec, mu[None, :])[0]:
        return float(mu[0])
    pts = np.concatenate([pl for pl in _polylines(spec, 500)[0]])
    return float(pts[np.argmin(np.sum((pts - mu) ** 2, axis=1)), 0])


#: Extra breakpoints of the x-quadrature around the nearest abscissa, in units of tau = sigma/lambda.
KERNEL_SPLITS: tuple[float, ...] = (2.0,)


def _joint_tanh_sinh(f, pts: Sequence, n_main: int) -> list[tuple[Any, Any]]:
    r"""``[(integral, error estimate), ...]`` of the components of the tuple-valued ``f`` over the pieces
    between ``pts``, by mpmath's tanh-sinh rule with mpmath's own stopping rule per component, all components
    sharing the evaluations of ``f`` at the nodes.

    This is :func:`mpmath.quad` (``error=True``) applied to each of the first ``n_main`` components, step for
    step: the same nodes (``mp.mp._tanh_sinh.get_nodes``, cached per interval, degree and precision), the same
    working precision (``prec + 20`` bits), the same level sums
    :math:`S_m = h_m\,(S_{m-1}/(2h_m) + \sum_{\text{new nodes}} w_i f(x_i))`, :math:`h_m = 2^{-m}`, the same
    error estimate from the level differences (``estimate_error``) and stopping rule (estimate at most
    ``mp.eps / 8``, at most ``guess_degree(prec)`` levels), per piece and per component; the values
    and estimates are therefore those of ``mp.quad`` applied to each component alone, bit for bit.
    Where ``mp.quad`` would evaluate the component functions once each, this evaluates the node once.
    The remaining components (the majorants of :func:`_region_integrals`, which only need a few correct digits)
    are summed on the same levels and taken at the level where the last main component stopped, with their
    own level-difference estimate.  (The rule's node and error methods are mpmath's, not public API:
    ``tests/test_geometry_oracle.py`` checks the equality with ``mp.quad``.)

    Raises
    ------
    ValueError
        ``pts`` has no piece of positive length.
    """
    ctx = mp.mp
    rule = ctx._tanh_sinh
    prec = ctx.prec
    epsilon = ctx.eps / 8
    max_degree = rule.guess_degree(prec)
    total = None
    try:
        ctx.prec += 20
        for a, b in zip(pts[:-1], pts[1:]):
            if a == b:
                continue
            res: list[list] = []
            stop: list = []
            err = []
            for degree in range(1, max_degree + 1):
                nodes = rule.get_nodes(a, b, degree, prec)
                vals = [f(x) for x, _ in nodes]
                if not res:
                    res = [[] for _ in vals[0]]
                    stop = [None] * len(res)
                    err = [ctx.zero] * len(res)
                h = ctx.mpf(2) ** (-degree)
                for i, r in enumerate(res):
                    if stop[i] is not None:
                        continue
                    S = r[-1] / (h * 2) if r else ctx.zero
                    S += ctx.fdot((w, v[i]) for (_, w), v in zip(nodes, vals))
                    r.append(h * S)
                    if degree > 1:
                        err[i] = rule.estimate_error(r, prec, epsilon)
                        if i < n_main and err[i] <= epsilon:
                            stop[i] = degree
                if all(s is not None for s in stop[:n_main]):
                    break
            piece = [(r[-1], e) for r, e in zip(res, err)]
            total = piece if total is None else [(I + p, E + q) for (I, E), (p, q) in zip(total, piece)]
    finally:
        ctx.prec = prec
    if total is None:
        raise ValueError(f"pts: no piece of positive length in {pts!r}")
    return [(+I, E) for I, E in total]


@lru_cache(maxsize=20000)
def _region_integrals(spec: tuple, v1: float, v2: float, t: float, dps: int):
    r"""``(I0, I1, I2, e0, e1, e2)`` (mpf): the three x-integrals of the module docstring (without the
    factor :math:`1/(\lambda A)`) and their error bounds.

    mpmath's tanh-sinh stops on an *absolute* error below :math:`2^{4 - \mathrm{prec}}`, so the integrands are
    divided by their largest value on a pilot set of abscissae (the split points' midpoints and the
    nearest abscissa) before integrating: the stopping rule is then relative to the integrand's peak.
    The three integrals and the two majorants below are integrated together (:func:`_joint_tanh_sinh`: each
    of the three exactly as ``mp.quad`` would alone, the majorants on the same levels).
    Error bound of integral ``i``: mpmath's estimate plus the working-precision term
    :math:`\varepsilon_p \int |f_i|`, with :math:`\varepsilon_p = 10^{3-\mathrm{dps}}(1 + E)` and ``E`` the
    largest exponent met at a node (:math:`u^2/2` plus :math:`\max(\alpha^2, \beta^2)/2`): an exponent computed
    with absolute error :math:`10^{-\mathrm{dps}} E` perturbs the integrand by that relative amount, and the
    factor 100 covers the few operations per node and the loss of the difference of two ``erfc`` on the thin
    slices (relative to the integrand level around them).  The smooth majorants
    :math:`\int k\,\frac{1 + u^2}{2\sigma}\,s_0 \ge \int |f_1|` (:math:`|u| \le (1 + u^2)/2`, no kink at
    :math:`u = 0`) and :math:`\int k\,\sum_j(\phi(\alpha_j) + \phi(\beta_j))/\sigma \ge \int |f_2|` are summed
    on the same nodes, and their own level-difference estimate is added to them."""
    with mp.workdps(dps):
        T = mp.mpf(t)
        lam = mp.exp(-T)
        sig = mp.sqrt(-mp.expm1(-2 * T))
        tau = sig / lam
        V1, V2 = mp.mpf(v1), mp.mpf(v2)
        rt2pi = mp.sqrt(2 * mp.pi)
        c0 = 1 / (sig * rt2pi)
        # per node, with r = lambda / (sqrt2 sigma): u/sqrt2 = r x - v1/(sqrt2 sigma), alpha/sqrt2 = r l - ...
        with mp.extraprec(20):
            rs = lam / (sig * mp.sqrt(2))
            o1, o2 = V1 / (sig * mp.sqrt(2)), V2 / (sig * mp.sqrt(2))
        nums = tuple(mp.mpf(q) for q in _slice_numbers(spec))
        cache: dict = {}
        emax = [0.0]

        def parts(x):
            hit = cache.get(x)
            if hit is not None:         # the pilot's midpoints are the degree-1 nodes of their pieces
                return hit
            u2 = rs * x - o1                                    # u / sqrt2
            k = c0 * mp.exp(-u2 * u2)
            s0 = sy = sa = mp.mpf(0)
            fu = float(u2) ** 2
            e = fu
            for lo, hi in _slices(spec, x, nums):
                a, b = rs * lo - o2, rs * hi - o2                # alpha / sqrt2, beta / sqrt2
                s0 += _dPhi(a, b)
                pa, pb = mp.exp(-a * a), mp.exp(-b * b)          # sqrt(2 pi) phi(alpha), sqrt(2 pi) phi(beta)
                sy += pb - pa
                sa += pa + pb
                e = max(e, fu + max(float(a) ** 2, float(b) ** 2))
            emax[0] = max(emax[0], e)
            cache[x] = (k, u2, s0, sy / rt2pi, sa / rt2pi)
            return cache[x]

        br = region_breaks(spec)
        xs = _nearest_abscissa(spec, np.array([v1, v2]) / math.exp(-t))
        ftau = float(tau)
        extra = [xs + s * m * ftau for s in (-1, 1) for m in KERNEL_SPLITS] + [xs]
        pts = [mp.mpf(p) for p in sorted({*br, *(e for e in extra if br[0] < e < br[-1])})]
        pilot = [(a + b) / 2 for a, b in zip(pts[:-1], pts[1:])] + [mp.mpf(xs)]
        scale = max((lambda q: q[0] * q[2])(parts(x)) for x in pilot)
        if not scale > 0:
            raise ValueError(f"v: the oracle's integrand vanished on its pilot set at v={[v1, v2]}, t={t!r}")

        with mp.extraprec(20):
            c0s, c1s = 1 / scale, 1 / (sig * scale)
            c2s = c1s * mp.sqrt(2)
        half = mp.mpf(0.5)

        def fs(x):
            k, u2, s0, sy, sa = parts(x)                        # f_1 = k u/sigma s0, u = sqrt2 u2
            ks0 = k * s0
            return (ks0 * c0s, ks0 * u2 * c2s, -k * sy * c1s, ks0 * (half + u2 * u2) * c1s, k * sa * c1s)

        res = _joint_tanh_sinh(fs, pts, 3)
        eps_p = mp.mpf(10) ** (3 - dps) * (1 + emax[0])
        absint = (res[0][0], res[3][0] + abs(res[3][1]), res[4][0] + abs(res[4][1]))
        vals = tuple(r[0] * scale for r in res[:3])
        errs = tuple((abs(r[1]) + eps_p * a) * scale for r, a in zip(res[:3], absint))
        return vals + errs


@dataclass(frozen=True)
class OracleValues:
    r"""Oracle quantities at ``N`` points (float64 after the mpmath computation) with error bounds.

    Attributes
    ----------
    log_components : ndarray (N, K)
        :math:`\log w_k + \log p_t(v \mid k)`.
    log_density : ndarray (N,)
        :math:`\log p_t(v)`.
    class_log_posterior : ndarray (N, C)
    score : ndarray (N, 2)
        :math:`\nabla \log p_t(v)`.
    guidance : ndarray (C, N, 2)
        :math:`\nabla \log P(c \mid v)` for every class ``c``.
    err_log_components, err_log_density, err_class_log_posterior, err_score, err_guidance : ndarray
        First-order error bounds of the same shapes but for the vectors (one bound per point: (N,) and
        (C, N)), from mpmath's quadrature error estimates, the working precision and the rounding to float64.
    """

    log_components: np.ndarray
    log_density: np.ndarray
    class_log_posterior: np.ndarray
    score: np.ndarray
    guidance: np.ndarray
    err_log_components: np.ndarray
    err_log_density: np.ndarray
    err_class_log_posterior: np.ndarray
    err_score: np.ndarray
    err_guidance: np.ndarray


def _norm2(a, b):
    return mp.sqrt(a * a + b * b)


def oracle_values(regions: Any, weights: Any, v: Any, t: Any, labels: Any = None,
                  dps: int = DEFAULT_DPS) -> OracleValues:
    r"""All oracle quantities of the mixture :math:`\sum_k w_k\,\mathrm{Unif}(\Omega_k)` at the points ``v``
    (``(N, 2)``, noised space) and OU time ``t`` (see :class:`OracleValues` and the module docstring).

    Parameters
    ----------
    regions : sequence of region specs
    weights : array_like (K,)
        The stated mixture weights (positive, summing to 1).
    v : array_like (N, 2)
    t : float
        OU time, > 0.
    labels : array_like of int (K,), optional
        Class of each component (default: each its own class).
    dps : int
        Working precision in decimal digits (15..200).

    Raises
    ------
    ValueError
        Naming the argument.
    """
    regs = _check_regions(regions)
    K = len(regs)
    w = _check_weights(weights, K)
    lab = _check_labels(labels, K)
    v = check_points(v, 2, "v")[0]
    t = check_time(t)
    if not t > 0:
        raise ValueError(f"t: must be > 0, got {t!r}")
    dps = _check_dps(dps)
    C = max(lab) + 1
    N = v.shape[0]
    out = {k: np.empty(s) for k, s in (("lc", (N, K)), ("ld", N), ("cp", (N, C)), ("sc", (N, 2)), ("g", (C, N, 2)),
                                        ("elc", (N, K)), ("eld", N), ("ecp", (N, C)), ("esc", N), ("eg", (C, N)))}
    with mp.workdps(dps):
        eps = mp.mpf(10) ** (-dps + 3)
        lam = mp.exp(-mp.mpf(t))
        areas = [_area(r, dps) for r in regs]
        for i in range(N):
            p, g1, g2, ep, eg = [], [], [], [], []
            for k, reg in enumerate(regs):
                I0, I1, I2, e0, e1, e2 = _region_integrals(reg, float(v[i, 0]), float(v[i, 1]), t, dps)
                A, eA = mp.mpf(areas[k][0]), mp.mpf(areas[k][1])
                if I0 <= 0:
                    raise ValueError(f"v: the oracle's kernel mass vanished at v={v[i].tolist()}, t={t!r}")
                scale = w[k] / (lam * A)
                p.append(scale * I0)
                g1.append(scale * I1)
                g2.append(scale * I2)
                # relative error of p_k: quadrature and working precision + area
                ep.append(e0 / I0 + eA / A + eps)
                eg.append(scale * _norm2(e1, e2) + _norm2(scale * I1, scale * I2) * (eA / A + eps))
            P = mp.fsum(p)
            G = (mp.fsum(g1), mp.fsum(g2))
            rel_P = mp.fsum(pk * e for pk, e in zip(p, ep)) / P
            score = (G[0] / P, G[1] / P)
            err_score = mp.fsum(eg) / P + _norm2(*score) * rel_P
            for k in range(K):
                out["lc"][i, k] = float(mp.log(p[k]))
                out["elc"][i, k] = float(ep[k]) + U * abs(out["lc"][i, k])
            logP = mp.log(P)
            out["ld"][i] = float(logP)
            out["eld"][i] = float(rel_P) + U * abs(float(logP))
            out["sc"][i] = [float(score[0]), float(score[1])]
            out["esc"][i] = float(err_score) + U * float(_norm2(*score))
            for c in range(C):
                ks = [k for k in range(K) if lab[k] == c]
                Pc = mp.fsum(p[k] for k in ks)
                Gc = (mp.fsum(g1[k] for k in ks), mp.fsum(g2[k] for k in ks))
                rel_c = mp.fsum(p[k] * ep[k] for k in ks) / Pc
                lp = mp.log(Pc) - logP
                out["cp"][i, c] = float(lp)
                out["ecp"][i, c] = float(rel_c + rel_P) + U * abs(float(lp))
                sc_c = (Gc[0] / Pc, Gc[1] / Pc)
                err_c = mp.fsum(eg[k] for k in ks) / Pc + _norm2(*sc_c) * rel_c
                gv = (sc_c[0] - score[0], sc_c[1] - score[1])
                out["g"][c, i] = [float(gv[0]), float(gv[1])]
                out["eg"][c, i] = float(err_c + err_score) + U * float(_norm2(*gv))
    return OracleValues(out["lc"], out["ld"], out["cp"], out["sc"], out["g"], out["elc"], out["eld"], out["ecp"],
                        out["esc"], out["eg"])


#: The files whose bytes key the on-disk reference entries: this module (the mpmath oracle and the brute-force
#: distance), the cache itself, and the two package modules whose code enters the stored values
#: (:mod:`numerics.validate` normalises the inputs; :mod:`numerics.constants` gives the rounding unit in the
#: error fields).  An edit of any of them is a different key, so a miss.
_REFERENCE_SOURCES = (__file__, disk_cache.__file__, validate.__file__, constants.__file__)

_ORACLE_FIELDS = ("log_components", "log_density", "class_log_posterior", "score", "guidance", "err_log_components",
                  "err_log_density", "err_class_log_posterior", "err_score", "err_guidance")


def _oracle_entry(regions: Any, weights: Any, v: Any, t: Any, labels: Any = None, dps: int = DEFAULT_DPS) -> tuple:
    """``(namespace, inputs, source, compute, names)`` of :func:`oracle_values`'s reference entry (the inputs
    validated as :func:`oracle_values` does)."""
    regs = _check_regions(regions)
    w = _check_weights(weights, len(regs))
    lab = _check_labels(labels, len(regs))
    v = check_points(v, 2, "v")[0]
    t = check_time(t)
    dps = _check_dps(dps)

    def compute() -> dict[str, np.ndarray]:
        o = oracle_values(regs, w, v, t, lab, dps)
        return {f: getattr(o, f) for f in _ORACLE_FIELDS}

    return ("support.geometry_oracle.oracle_values", (regs, w, lab, v, t, dps),
            disk_cache.source_digest(*_REFERENCE_SOURCES), compute, _ORACLE_FIELDS)


def _brute_entry(spec: Any, x: Any, n: int = 1000) -> tuple:
    """``(namespace, inputs, source, compute, names)`` of :func:`brute_force_distance`'s reference entry."""
    regs = _check_regions(spec, "spec")
    x = check_points(x, 2, "x")[0]
    n = check_int(n, "n", 10)

    def compute() -> dict[str, np.ndarray]:
        d, b = brute_force_distance(regs, x, n)
        return {"distance": d, "bound": b}

    return ("support.geometry_oracle.brute_force_distance", (regs, x, n),
            disk_cache.source_digest(*_REFERENCE_SOURCES), compute, ("distance", "bound"))


#: The reference entries :func:`_references` computes, by kind.
_ENTRIES = {"oracle": _oracle_entry, "brute": _brute_entry}
#: Reference arrays computed in this process or its pool, by entry key: the stated run and every control
#: evaluate the same entries (the pool's processes keep no cache the next run could reuse).
_MEMO: dict[str, dict[str, np.ndarray]] = {}
_MEMO_MAX = 4096


def _computed_entry(kind: str, args: tuple) -> dict[str, np.ndarray]:
    """In a pool process (or here): the entry's arrays, through the on-disk cache (a miss is stored there)."""
    namespace, inputs, src, compute, names = _ENTRIES[kind](*args)
    return disk_cache.cached_arrays(namespace, inputs, compute, src, names)[0]


def _references(requests: Sequence[tuple[str, tuple]]) -> list[tuple[dict[str, np.ndarray], bool]]:
    """``[(arrays, hit)]`` of the entries ``_ENTRIES[kind](*args)`` for ``(kind, args)`` in ``requests``: read
    from the on-disk cache (``hit`` True), else from this process's memo, else computed, the missing ones
    together by :func:`numerics.references.process_map.process_map` (one entry per process at a time, up to
    Numba's thread budget); every value is the one a serial computation gives, bit for bit (read-only arrays)."""
    entries = [_ENTRIES[kind](*args) for kind, args in requests]
    keys = [disk_cache.entry_key(ns, inputs, src) for ns, inputs, src, _, _ in entries]
    out: list = [None] * len(requests)
    todo = []
    for i, ((ns, inputs, src, _, names), key) in enumerate(zip(entries, keys)):
        stored = disk_cache.stored_arrays(ns, inputs, src, names)
        if stored is not None:
            out[i] = (stored, True)
        elif key in _MEMO:                  # stored on the disk as a computation would be
            out[i] = (disk_cache.cached_arrays(ns, inputs, lambda a=_MEMO[key]: a, src, names)[0], False)
        else:
            todo.append(i)
    for i, arrays in zip(todo, process_map(_computed_entry, [(requests[i][0], tuple(requests[i][1])) for i in todo])):
        for a in arrays.values():
            a.setflags(write=False)
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[keys[i]] = arrays
        out[i] = (arrays, False)
    return out


def cached_oracle_values(regions: Any, weights: Any, v: Any, t: Any, labels: Any = None,
                         dps: int = DEFAULT_DPS) -> tuple[OracleValues, bool]:
    r"""``(values, hit)``: :func:`oracle_values`, kept in the on-disk reference cache
    (:mod:`numerics.references.disk_cache`) under the exact inputs (region specs, weights, points, time, labels,
    working precision, every float by its bits) and the bytes of :data:`_REFERENCE_SOURCES` (this module, the
    cache, :mod:`numerics.validate`, :mod:`numerics.constants`), and in this process's memo:
    a hit returns the arrays a recomputation gives, bit for bit; ``hit`` says whether they came from the disk.
    The inputs are validated first, as :func:`oracle_values` does (ValueError naming the argument)."""
    arrays, hit = _references([("oracle", (regions, weights, v, t, labels, dps))])[0]
    return OracleValues(**{f: arrays[f] for f in _ORACLE_FIELDS}), hit


def oracle_log_density(regions: Any, weights: Any, v: Any, t: Any,
                       dps: int = DEFAULT_DPS) -> tuple[np.ndarray, np.ndarray]:
    r"""``(components (N, K), mixture (N,))``: :math:`\log w_k + \log p_t(v \mid k)` and
    :math:`\log p_t(v)` (see :func:`oracle_values`)."""
    o = oracle_values(regions, weights, v, t, dps=dps)
    return o.log_components, o.log_density


def oracle_class_log_posterior(regions: Any, weights: Any, v: Any, t: Any, labels: Any = None,
                               dps: int = DEFAULT_DPS) -> np.ndarray:
    r"""``(N, C)``: :math:`\log P(c \mid v) = \log \sum_{k \in c} w_k p_t(v|k) - \log p_t(v)`."""
    return oracle_values(regions, weights, v, t, labels, dps).class_log_posterior


def oracle_score(regions: Any, weights: Any, v: Any, t: Any, dps: int = DEFAULT_DPS) -> np.ndarray:
    r"""``(N, 2)``: :math:`\nabla \log p_t(v)` (gradient differentiated under the integral, analytically)."""
    return oracle_values(regions, weights, v, t, dps=dps).score


def oracle_guidance(regions: Any, weights: Any, v: Any, t: Any, label: Any, labels: Any = None,
                    dps: int = DEFAULT_DPS) -> np.ndarray:
    r"""``(N, 2)``: the class guidance vector :math:`\nabla \log P(\text{label} \mid v)
    = \nabla \log p_t(v \mid \text{label}) - \nabla \log p_t(v)`."""
    o = oracle_values(regions, weights, v, t, labels, dps)
    return o.guidance[check_label(label, o.guidance.shape[0], "label")]


# ==================================================================================================== distances
#: Sub-segments per candidate segment in the second pass of :func:`brute_force_distance`.
REFINE = 128


@dataclass(frozen=True)
class _Piece:
    """A smooth boundary piece: ``kind`` "arc" (centre, radius, angles) or "graph" (the lens's upper or lower
    graph: shift, sign, abscissae relative to the shift), with its parameter nodes."""

    kind: str
    data: tuple
    nodes: np.ndarray

    def points(self, par: np.ndarray) -> np.ndarray:
        if self.kind == "arc":
            cx, cy, R = self.data
            return np.stack([cx + R * np.cos(par), cy + R * np.sin(par)], axis=-1)
        sx, sy, sgn = self.data
        g = 0.5 * (par + 3) ** 2 * (par + 1) ** 2
        return np.stack([par + sx, sy + sgn * g], axis=-1)

    def sagitta(self, dpar: float) -> float:
        r"""Largest distance between the curve and its chords for parameter steps ``dpar``: a circle arc
        :math:`R(1 - \cos(\Delta\theta/2))`; the lens graph (linear interpolation of g): :math:`\Delta x^2
        \max|g''|/8`."""
        if self.kind == "arc":
            return 2.0 * self.data[2] * math.sin(dpar / 4) ** 2      # R(1 - cos(dpar/2)) without cancellation
        return dpar * dpar * LENS_MAX_G2 / 8.0


def _pieces(spec: tuple, n: int) -> list[_Piece]:
    """The region's boundary as smooth pieces, sampled with chords at most ``1/n`` (parameter steps: angle
    ``h/R``; lens abscissae ``h``, whose chords are at most ``h sqrt(1 + max g'^2)``)."""
    h = 1.0 / n

    def arc(cx, cy, R, th0, th1):
        m = max(2, int(math.ceil(R * (th1 - th0) / h)) + 1)
        return _Piece("arc", (cx, cy, R), np.linspace(th0, th1, m))

    if spec[0] == "lens":
        m = int(math.ceil(2.0 / h)) + 1
        x = np.linspace(-3.0, -1.0, m)
        return [_Piece("graph", (spec[1], spec[2], 1.0), x), _Piece("graph", (spec[1], spec[2], -1.0), x)]
    if spec[0] == "disk":
        return [arc(spec[1], spec[2], spec[3], 0.0, 2 * math.pi)]
    _, cx, cy, R, r, off = spec
    d = abs(off)
    e = 1.0 if off > 0 else -1.0                  # direction of the offset along x
    # outer circle: a point at angle th from the offset direction is in the open inner disk iff
    # R^2 + d^2 - 2 R d cos th < r^2 (law of cosines); kept: |th| >= th_o
    co = (R * R + d * d - r * r) / (2 * R * d)
    th_o = 0.0 if co >= 1 else math.acos(co)
    # inner circle: a point at angle ph from the direction towards c is in the outer disk iff
    # r^2 + d^2 - 2 r d cos ph <= R^2; kept: |ph| <= ph_i
    ci = (r * r + d * d - R * R) / (2 * r * d)
    ph_i = math.pi if ci <= -1 else (None if ci >= 1 else math.acos(ci))
    base_o = 0.0 if e > 0 else math.pi
    out = [arc(cx, cy, R, base_o + th_o, base_o + 2 * math.pi - th_o)]
    if ph_i is not None:
        base_i = math.pi if e > 0 else 0.0
        out.append(arc(cx + off, cy, r, base_i - ph_i, base_i + ph_i))
    return out


def _polylines(spec: tuple, n: int) -> tuple[list[np.ndarray], float]:
    pcs = _pieces(spec, n)
    return [pc.points(pc.nodes) for pc in pcs], max(pc.sagitta(float(pc.nodes[1] - pc.nodes[0])) for pc in pcs)


def boundary_polylines(spec: Any, n: int = 1000) -> tuple[list[np.ndarray], float]:
    r"""The region's boundary from this module's parametrisation, as polylines with chords of length about
    :math:`h = 1/n` (circles: by angle, the crescent's arcs ending exactly at the circles' crossings; the lens:
    its two graphs on a uniform abscissa grid of spacing h), and the bound on the distance between
    the curve and the polylines: :math:`\max R(1 - \cos(\Delta\theta/2))` for arcs, :math:`\Delta x^2
    \max|g''|/8 = \Delta x^2/2` for the lens."""
    spec = check_region(spec)
    return _polylines(spec, check_int(n, "n", 10))


def _segment_distance(p: np.ndarray, pl: np.ndarray) -> np.ndarray:
    """``(N, S)``: distance from each point to each segment of the polyline ``pl``."""
    a, b = pl[:-1], pl[1:]
    ab = b - a
    L2 = np.sum(ab * ab, axis=1)
    ap = p[:, None, :] - a[None, :, :]
    s = np.clip(np.einsum("nsd,sd->ns", ap, ab) / np.where(L2 > 0, L2, 1.0), 0.0, 1.0)
    diff = ap - s[:, :, None] * ab[None, :, :]
    return np.sqrt(np.sum(diff * diff, axis=2))


#: Stop refining once the sagitta bound is below this (float64 rounding of a distance is about 1e-15).
REFINE_FLOOR = 1e-18
#: Largest number of candidate sub-segments refined per point and level (a point near a circle's centre is
#: nearly equidistant to a whole arc: it keeps the bound of the level reached).
REFINE_CAP = 20000


@lru_cache(maxsize=256)
def _brute(spec: tuple, xb: bytes, N: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.frombuffer(xb, dtype=np.float64).reshape(N, 2)
    pcs = _pieces(spec, n)
    coarse = []                                   # per piece: (N, S) segment distances
    for pc in pcs:
        pl = pc.points(pc.nodes)
        coarse.append(np.concatenate([_segment_distance(x[i:i + 32], pl) for i in range(0, N, 32)]))
    inside = oracle_contains((spec,), x)
    u = np.linspace(0.0, 1.0, REFINE + 1)
    d = np.zeros(N)
    bound = np.zeros(N)
    for i in range(N):
        if inside[i]:
            continue
        # level 0: every segment; intervals of parameters per piece
        dist = [c[i] for c in coarse]
        ivs = [(pc.nodes[:-1], pc.nodes[1:]) for pc in pcs]
        s = max(pc.sagitta(float(np.max(hi - lo))) for pc, (lo, hi) in zip(pcs, ivs))
        best = min(float(dd.min()) for dd in dist)
        while s > REFINE_FLOOR:
            # the interval whose arc holds the nearest point has chord distance <= d + s <= best + 2 s
            keep = [dd <= best + 2 * s for dd in dist]
            if sum(int(k.sum()) for k in keep) * REFINE > REFINE_CAP:
                break
            new_dist, new_ivs, new_s = [], [], 0.0
            for pc, (lo, hi), k in zip(pcs, ivs, keep):
                lo, hi = lo[k], hi[k]
                par = lo[:, None] + (hi - lo)[:, None] * u[None, :]          # (J, REFINE + 1)
                pts = pc.points(par)
                a_, b_ = pts[:, :-1].reshape(-1, 2), pts[:, 1:].reshape(-1, 2)
                ab = b_ - a_
                L2 = np.sum(ab * ab, axis=1)
                ap = x[i] - a_
                tt = np.clip(np.sum(ap * ab, axis=1) / np.where(L2 > 0, L2, 1.0), 0.0, 1.0)
                new_dist.append(np.linalg.norm(ap - tt[:, None] * ab, axis=1))
                new_ivs.append((par[:, :-1].ravel(), par[:, 1:].ravel()))
                if lo.size:
                    new_s = max(new_s, pc.sagitta(float(np.max(hi - lo)) / REFINE))
            dist, ivs, s = new_dist, new_ivs, new_s
            best = min(float(dd.min()) for dd in dist if dd.size)
        d[i], bound[i] = best, s
    d.setflags(write=False)
    bound.setflags(write=False)
    return d, bound


def brute_force_distance(spec: Any, x: Any, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    r"""Distance from points ``x`` (``(N, 2)``) to a region or to the union of a sequence of regions, by
    brute force, and its error bound per point.

    0 inside (the slice test).  Outside, over the boundary pieces of this module's parametrisation
    (:func:`boundary_polylines`, chords about :math:`h = 1/n`): the distance :math:`d_0` to every segment;
    the polyline is within the sagitta :math:`s_0` of the curve (circle arcs :math:`R(1 - \cos(\Delta\theta/2))
    \approx h^2/(8R)`; the lens :math:`\Delta x^2 \max|g''|/8`), so :math:`|d_0 - d| \le s_0`, and the segment
    whose arc holds the nearest point has chord distance at most :math:`d + s_0 \le d_0 + 2 s_0`.  Every
    such segment is cut into :data:`REFINE` sub-segments (sagitta :math:`s_1 \approx s_0/\mathrm{REFINE}^2`),
    and so on until the bound is below :data:`REFINE_FLOOR` (or the candidates exceed :data:`REFINE_CAP`).
    Returns ``(distances, bounds)``: :math:`|d_{\rm returned} - d| \le` bound at each point (plus the
    rounding of the last distance, about :math:`8u(|x| + R)`); for a union, the largest bound of its regions."""
    regs = _check_regions(spec, "spec")
    x = check_points(x, 2, "x")[0]
    n = check_int(n, "n", 10)
    d = np.full(x.shape[0], np.inf)
    bound = np.zeros(x.shape[0])
    xb = np.ascontiguousarray(x).tobytes()
    for reg in regs:
        dr, b = _brute(reg, xb, x.shape[0], n)
        d = np.minimum(d, dr)
        bound = np.maximum(bound, b)
    return d, bound


def cached_brute_force_distance(spec: Any, x: Any, n: int = 1000) -> tuple[np.ndarray, np.ndarray, bool]:
    r"""``(distances, bounds, hit)``: :func:`brute_force_distance`, kept in the on-disk reference cache under the
    exact inputs (region specs, points by their bits, ``n``) and the bytes of :data:`_REFERENCE_SOURCES`
    (see :func:`cached_oracle_values`); a hit is the recomputation bit for bit."""
    arrays, hit = _references([("brute", (spec, x, n))])[0]
    return arrays["distance"], arrays["bound"], hit


# ==================================================================================================== the claim body
#: Evaluation points (data space; the density checks use :math:`v = \lambda_t p`): inside a region, in a
#: crescent's bite, near a crescent's corner and a lens tip, just outside an edge, between regions.
DENSITY_POINTS: dict[str, tuple[tuple[float, float], ...]] = {
    "three_disks": ((-1.5, 0.5), (-0.7, 0.6), (0.2, 1.7), (1.0, 1.0), (2.5, -2.1), (4.1, -0.5)),
    "two_crescents": ((0.9, 2.0), (3.0, 2.0), (3.25, 3.0), (0.0, 2.5), (-2.6, 3.0), (2.0, 0.4)),
    "five_regions": ((-2.0, 0.3), (-0.95, 0.0), (3.0, 2.0), (1.5, -2.0), (0.0, 0.0), (-2.2, 2.6), (-1.0, -3.0)),
}

#: Named controls of the geometry claim: realistic bugs of the package's side (one line each).
GEOMETRY_CONTROLS: dict[str, str] = {
    "area_weights": "class weights proportional to the region areas instead of the stated mixture weights",
    "alpha_dropped": "the region kernel centred at v instead of v/lambda, width sigma instead of sigma/lambda "
                     "(the authors' alpha-less kernel), then Tweedie with lambda",
    "bite_flipped": "every crescent's inner disk offset to the wrong side (the sign of the offset flipped)",
    "hole_not_clipped": "the crescent area taken as pi (R_out^2 - R_in^2): the inner disk not clipped to the outer one",
    "lens_half_width": "the lens half-width (x+3)^2 (x+1)^2 without the factor 1/2 (area left at 16/15)",
    "distance_to_union": "the distance to the guided class measured to the union of all regions",
    "no_inside_test": "the distance taken to sampled boundary points without the inside test (> 0 inside a region)",
}

#: Parameters of the quick and full profiles.
GEOMETRY_QUICK: dict[str, Any] = {"mixtures": ["two_crescents", "five_regions"], "ts": [0.01, 0.1, 1.0],
                                  "dps": DEFAULT_DPS, "grid_step": 0.5, "boundary_n": 1000}
GEOMETRY_FULL: dict[str, Any] = {"mixtures": ["two_crescents", "five_regions", "three_disks"],
                                 "ts": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0], "dps": DEFAULT_DPS, "grid_step": 0.25,
                                 "boundary_n": 1000}

#: :math:`1/(1 - \rho)` with :math:`\rho = 1/2`: the factor on the second refinement difference
#: :math:`|q_{2P} - q_{4P}|` bounding the twice-refined rule's own error :math:`|q_{2P} - q|`
#: (:func:`_package_values`).
REFINE_TAIL = 2.0

#: Abscissae of the package lens's sampled boundary (``Lens.distance``: 20001 on [-3, -1]), whence its
#: documented point-sampling error: half the largest arc between samples,
#: :math:`\tfrac12 \Delta x \sqrt{1 + \max g'^2}`.
PKG_LENS_SAMPLES = 20001
PKG_LENS_DIST_ERR = 0.5 * (2.0 / (PKG_LENS_SAMPLES - 1)) * math.sqrt(1.0 + LENS_MAX_G1 ** 2)


def _package_mixture(name: str, ctx: Any):
    """The package's mixture ``name`` (the experiments' builder), with the control's bug if one applies."""
    import copy

    from numerics.papers.support.experiments import experiment
    from numerics.papers.support.region_targets import Crescent, Lens, RegionMixture

    rm = experiment(name).mixture
    regs = list(rm.regions)
    if ctx.bug("bite_flipped"):
        regs = [Crescent(r.c, r.R, r.r, -(r.c2[0] - r.c[0])) if isinstance(r, Crescent) else r for r in regs]
    if ctx.bug("hole_not_clipped"):
        regs = [copy.copy(r) for r in regs]
        for r in regs:
            if isinstance(r, Crescent):
                r.area = math.pi * (r.R ** 2 - r.r ** 2)
    if ctx.bug("lens_half_width"):
        class _WideLens(Lens):
            # every use of the lens's shape (quadrature slices, inside test, boundary, distance) goes through
            # ``intervals``: the bug is there
            def intervals(self, x):
                u = np.asarray(x, float) - self.shift[0]
                g = np.where((u >= -3) & (u <= -1), (u + 3) ** 2 * (u + 1) ** 2, 0.0)
                return (self.shift[1] - g)[..., None], (self.shift[1] + g)[..., None]
        regs = [_WideLens(r.shift) if isinstance(r, Lens) else r for r in regs]
    w = rm.weights
    if ctx.bug("area_weights"):
        a = np.array([r.area for r in regs])
        w = a / a.sum()
    return RegionMixture(regs, weights=w, labels=rm.labels, panels=rm.panels, order=rm.order)


def _package_values(rm: Any, V: np.ndarray, t: float, alpha_dropped: bool) -> dict[str, Any]:
    r"""The package's log density, class log posteriors, score and guidance vectors at ``V``, and its own
    refinement estimates (the rule of ``RegionMixture.quadrature_error``, per point: the same quadrature
    with twice the panels and nodes) of the component log masses and means, completed by the triangle
    inequality :math:`|q_P - q| \le |q_P - q_{2P}| + |q_{2P} - q|` with the last term estimated by the next
    refinement: :math:`|q_{2P} - q| \le |q_{2P} - q_{4P}|/(1 - \rho) \le 2|q_{2P} - q_{4P}|` when a doubling of
    panels and nodes at least halves the error (:math:`\rho \le 1/2`; every kink of the slice lengths is a panel
    edge, so each panel's integrand is smooth and Gauss-Legendre converges much faster than that).  The
    refinement difference alone equals the coarse error when the finer rule is exact, leaving no room for the
    finer rule's own error.  ``alpha_dropped``: the control
    of that name, evaluated through the package's public moments at :math:`(\lambda' V, t')` with
    :math:`\sigma_{t'}/\lambda_{t'} = \sigma_t`, which is the kernel :math:`N(x; V, \sigma_t^2 I)`."""
    from scipy.special import logsumexp

    from numerics.schedule import alpha_sigma2

    lam, s2 = alpha_sigma2(t)
    C = rm.n_classes
    P2, n2 = 2 * rm.panels, 2 * rm.order
    if not alpha_dropped:
        ll, m = rm.component_moments(V, t)
        ll2, m2 = rm.component_moments(V, t, P2, n2)
        ll4, m4 = rm.component_moments(V, t, 2 * P2, 2 * n2)
        out = {"log_density": rm.log_density(V, t), "class_log_posterior": rm.class_log_posterior(V, t),
               "score": rm.score(V, t), "guidance": np.stack([rm.guidance_vector(V, t, c) for c in range(C)])}
    else:
        t1 = 0.5 * math.log1p(s2)                # sigma_t1 / lambda_t1 = sqrt(e^{2 t1} - 1) = sigma_t
        lam1 = math.exp(-t1)
        ll, m = rm.component_moments(lam1 * V, t1)
        ll2, m2 = rm.component_moments(lam1 * V, t1, P2, n2)
        ll4, m4 = rm.component_moments(lam1 * V, t1, 2 * P2, 2 * n2)
        ll = ll + 2 * math.log(lam1)             # p(v|k) = M(v, sigma)/A: no lambda^-2 Jacobian
        ll2, ll4 = ll2 + 2 * math.log(lam1), ll4 + 2 * math.log(lam1)
        ld = logsumexp(ll, axis=1)
        cl = np.stack([logsumexp(np.where(rm.labels == c, ll, -np.inf), axis=1) for c in range(C)], 1)
        pi = np.exp(ll - ld[:, None])
        mbar = np.einsum("nk,nkd->nd", pi, m)
        g = []
        for c in range(C):
            lc = np.where(rm.labels == c, ll, -np.inf)
            pc = np.exp(lc - logsumexp(lc, axis=1, keepdims=True))
            g.append(lam * (np.einsum("nk,nkd->nd", pc, m) - mbar) / s2)
        out = {"log_density": ld, "class_log_posterior": cl - ld[:, None], "score": (lam * mbar - V) / s2,
               "guidance": np.stack(g)}
    # |q(P) - q| <= |q(P) - q(2P)| + |q(2P) - q|, and |q(2P) - q| <= |q(2P) - q(4P)| / (1 - rho) <= 2 |q(2P) - q(4P)|
    # when a doubling at least halves the error (rho <= 1/2: every kink is a panel edge, the pieces are smooth)
    out["dl"] = np.max(np.abs(ll - ll2) + REFINE_TAIL * np.abs(ll2 - ll4), axis=1)
    out["dm"] = np.max(np.linalg.norm(m - m2, axis=2) + REFINE_TAIL * np.linalg.norm(m2 - m4, axis=2), axis=1)
    out["ll"] = ll
    return out


def _contract_tolerances(ll: np.ndarray, labels: np.ndarray, D: float, lam: float, s: float, o: Any) -> dict:
    r"""Per point, the accuracy contract of ``region_targets`` (:data:`PLANAR_ACCURACY` ``A``: component log
    masses within :math:`a_k = A(1 + |\ell_k|)`, component means within :math:`A D`) propagated to each quantity,
    plus the oracle's own error bound.  With the posterior weights :math:`\pi_k` of the package's log masses
    :math:`\ell_k`: the log density is off by at most :math:`\delta = \sum_k \pi_k a_k`; a class log posterior
    by :math:`\delta_c + \delta`, :math:`\delta_c = \sum_{k \in c}\pi_{k|c} a_k`; a posterior mean by
    :math:`A D + D \sum_k \pi_k (e^{a_k + \delta} - 1)` (the weights' error moves the mean by at most D each),
    and the class means likewise with :math:`\pi_{k|c}, \delta_c`; the sigma-scaled score carries
    :math:`\lambda/\sigma` times the mean's error, the guidance vector two means."""
    from scipy.special import logsumexp, softmax

    a = PLANAR_ACCURACY * (1.0 + np.abs(ll))                                   # (N, K)
    pi = softmax(ll, axis=1)
    delta = np.sum(pi * a, axis=1)
    w_err = np.sum(pi * np.expm1(a + delta[:, None]), axis=1)
    d_cls, w_cls = [], []
    for c in np.unique(labels):
        lc = np.where(labels[None, :] == c, ll, -np.inf)
        pc = np.exp(lc - logsumexp(lc, axis=1, keepdims=True))
        dc = np.sum(pc * a, axis=1)
        d_cls.append(dc)
        w_cls.append(np.sum(pc * np.expm1(a + dc[:, None]), axis=1))
    d_cls, w_cls = np.stack(d_cls, axis=1), np.stack(w_cls, axis=1)
    mean_err = PLANAR_ACCURACY * D + D * w_err
    cls_mean_err = PLANAR_ACCURACY * D + D * np.max(w_cls, axis=1)
    return {
        "log density": delta + o.err_log_density,
        "class log posterior": np.max(d_cls, axis=1) + delta + np.max(o.err_class_log_posterior, axis=1),
        "sigma * score": lam * mean_err / s + s * o.err_score,
        "sigma * guidance": lam * (mean_err + cls_mean_err) / s + s * np.max(o.err_guidance, axis=0),
    }


def _contract_measurement(name: str, q: str, errs: list, ratios: list, ts: list) -> Any:
    """The counted check of the accuracy contract (``region_targets.PLANAR_ACCURACY``) for quantity ``q``:
    the largest error over its contract tolerance, over points and times."""
    from numerics.checks.claim import Measurement

    r = np.concatenate(ratios)
    e = np.concatenate([e_ for e_, _ in errs])
    i = int(np.argmax(r))
    return Measurement(
        name=f"{name}: {q}, max over points and t of |pkg - oracle| / accuracy contract", measured=float(r[i]),
        predicted=1.0, kind="le", tol=0.0,
        reason="the planar quadrature's accuracy contract (region_targets.PLANAR_ACCURACY A: log masses within "
               "A(1 + |l_k|), means within A D; a specification), propagated by the posterior weights "
               "(_contract_tolerances), plus the oracle's mpmath error bound",
        # a ratio of a quadrature-and-rounding error to its bound: the error moves with the summation order (NumPy's
        # SIMD sums depend on memory alignment, another process may differ by ulps, and an ulp of the quantity is a
        # far larger share of the error), and any value in [0, 1] passes alike: drift_tol = 1
        extra={"max_abs_error": float(np.max(e)), "error_at_worst": float(e[i]), "ts": ts, "drift_tol": 1.0})


def _union_box(specs: Sequence[tuple]) -> tuple[float, float]:
    """``(D, B)``: the diameter of the bounding box of the union of the regions (every posterior mean and
    component mean lies in its convex hull) and the largest absolute coordinate in it."""
    x0, x1, y0, y1 = _bbox(specs)
    return math.hypot(x1 - x0, y1 - y0), max(abs(x0), abs(x1), abs(y0), abs(y1))


def _package_distances(rm: Any, P: np.ndarray, ctx: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(per class (C, N), union (N,))`` distances of the package (with the control's bug if one applies)."""
    C = rm.n_classes
    if ctx.bug("no_inside_test"):
        from scipy.spatial import cKDTree
        per_reg = np.stack([cKDTree(r.boundary(20001)).query(P)[0] for r in rm.regions])
        cls = np.stack([np.min(per_reg[rm.labels == c], axis=0) for c in range(C)])
        return cls, np.min(per_reg, axis=0)
    union = rm.distance(P)
    if ctx.bug("distance_to_union"):
        return np.stack([union] * C), union
    return np.stack([rm.distance(P, c) for c in range(C)]), union


def _distance_points(name: str, specs: Sequence[tuple], grid_step: float) -> np.ndarray:
    """The distance checks' points of mixture ``name``: its designed points, then the grid of step ``grid_step``
    over the regions' bounding box enlarged by 1."""
    x0, x1, y0, y1 = _bbox(specs)
    g = grid_step
    gx, gy = np.arange(x0 - 1, x1 + 1 + g / 2, g), np.arange(y0 - 1, y1 + 1 + g / 2, g)
    pts = np.array(DENSITY_POINTS[name], dtype=np.float64)
    return np.concatenate([pts, np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)])


def _claim_references(names: Sequence[str], ts: Sequence[float], dps: int, grid_step: float,
                      boundary_n: int) -> dict[tuple, tuple[dict[str, np.ndarray], bool]]:
    r"""Every reference of :func:`geometry_measurements` at once (:func:`_references`, so the missing ones share
    one process pool): ``("oracle", name, t)`` the oracle at :math:`v = \lambda_t p` for the designed points
    ``p``, and ``("brute", name, k)`` region ``k``'s brute-force distances at :func:`_distance_points`."""
    from numerics.schedule import alpha_sigma2

    requests, labels = [], []
    for name in names:
        specs, w = AUTHORS_SPECS[name]
        specs = tuple(check_region(s) for s in specs)
        pts = np.array(DENSITY_POINTS[name], dtype=np.float64)
        for t in ts:
            requests.append(("oracle", (specs, w, alpha_sigma2(t)[0] * pts, t, None, dps)))
            labels.append(("oracle", name, t))
        P = _distance_points(name, specs, grid_step)
        for k, sp in enumerate(specs):
            requests.append(("brute", (sp, P, boundary_n)))
            labels.append(("brute", name, k))
    return dict(zip(labels, _references(requests)))


def geometry_measurements(ctx: Any) -> list:
    r"""Claim body: the package's region mixtures against this module's independent oracle.

    Per mixture of ``ctx.params["mixtures"]`` (the authors' ``two_crescents``, ``five_regions``, optionally
    ``three_disks``), built by the package's experiment builder and compared with the spec written here
    from the authors' numbers (:data:`AUTHORS_SPECS`, stated weights):

    * ``areas``: :math:`\max_k |\log A_k^{\rm pkg} - \log A_k^{\rm oracle}|`, tolerance the rounding of the
      closed forms (:math:`64u` relative: about 20 operations with condition numbers below 3) plus the
      oracle's quadrature error;
    * at every ``t`` of ``ts`` and the points :math:`v = \lambda_t p` (:data:`DENSITY_POINTS`), per point the
      error over its own tolerance, largest over points and times (``<= 1``), for the log density, the class
      log posteriors, :math:`\sigma_t`-scaled score and every class's :math:`\sigma_t`-scaled guidance vector.
      The tolerance of a point: the package's refinement estimates :math:`\delta_\ell` (component log masses)
      and :math:`\delta_m` (component means) from the rule of ``quadrature_error`` (coarse minus twice
      refined, plus :data:`REFINE_TAIL` times twice refined minus four times refined: the triangle
      inequality with a halving per doubling), the float64 rounding of
      the slice quadrature :math:`\varepsilon_\ell = u(Q + 10(|\ell_k| + 50))` (``Q`` nodes; about ten
      operations per node's log weight, each on terms below :math:`|\ell_k| + 50`), of the means
      :math:`\varepsilon_m = u(Q + 20)(B + |v|/\lambda)` (``B`` the largest coordinate of the regions), the
      propagation of the log-mass error into the posterior weights, :math:`(e^{2\delta} - 1)D` with ``D`` the
      diameter of the regions' bounding box, and the oracle's own error bound (:class:`OracleValues`);
    * the same four quantities against the accuracy contract of ``region_targets``
      (:data:`~numerics.papers.support.region_targets.PLANAR_ACCURACY`, a specification), propagated by the
      posterior weights (:func:`_contract_tolerances`): this tolerance does not grow with the error it judges;
    * distances, at the designed points and a grid of step ``grid_step`` over the regions' bounding box
      enlarged by 1: :math:`|d_{\rm pkg} - d_{\rm brute}|` over its tolerance for every class as the guided
      class, and for the union: the refined sagitta bound of :func:`brute_force_distance`, the package
      lens's documented sampling error :data:`PKG_LENS_DIST_ERR` where the set contains the lens, and
      rounding :math:`16u(|p| + \max R)`.

    Controls: :data:`GEOMETRY_CONTROLS`.
    """
    from numerics.checks.claim import Measurement
    from numerics.checks.plots import WorstByParam
    from numerics.schedule import alpha_sigma2

    p = ctx.params
    dps = int(p.get("dps", DEFAULT_DPS))
    ts = [float(t) for t in p["ts"]]
    out: list = []
    quantities = ("log density", "class log posterior", "sigma * score", "sigma * guidance")
    worst = {q: {} for q in quantities}
    dist_plot = {}
    refs = _claim_references(p["mixtures"], ts, dps, float(p["grid_step"]), int(p["boundary_n"]))
    for name in p["mixtures"]:
        specs, w = AUTHORS_SPECS[name]
        specs = tuple(check_region(s) for s in specs)
        rm = _package_mixture(name, ctx)
        K, C = len(specs), rm.n_classes
        D, B = _union_box(specs)
        Q = (rm.panels + 2) * rm.order

        # ---- areas
        oa = [oracle_area(s, dps) for s in specs]
        a_err = [abs(math.log(r.area) - math.log(a)) for r, (a, _) in zip(rm.regions, oa)]
        a_tol = [64 * U + e / a for a, e in oa]
        out.append(Measurement(
            name=f"{name}: areas, max_k |log A_pkg - log A_oracle| / tol", measured=max(e / t_ for e, t_ in zip(a_err, a_tol)),
            predicted=1.0, kind="le", tol=0.0,
            reason="per region: 64u (closed forms, ~20 operations with condition numbers < 3) + the oracle's "
                   "tanh-sinh error estimate of the integral of the slice lengths (relative)",
            counted=any(s_[0] == "crescent" for s_ in specs),   # disks and lenses: pi R^2, 16/15 (no control)
            extra={"abs_errors": a_err, "tolerances": a_tol, "oracle_areas": [a for a, _ in oa],
                   "package_areas": [float(r.area) for r in rm.regions]}))

        # ---- densities, posteriors, score, guidance
        pts = np.array(DENSITY_POINTS[name], dtype=np.float64)
        ratios = {q: [] for q in quantities}
        errs = {q: [] for q in quantities}
        acc = {q: [] for q in quantities}
        from_cache: list[bool] = []         # per t: the oracle's values read from the on-disk reference cache
        for t in ts:
            lam, s2 = alpha_sigma2(t)
            s = math.sqrt(s2)
            V = lam * pts
            arrays, hit = refs[("oracle", name, t)]
            o = OracleValues(**{f: arrays[f] for f in _ORACLE_FIELDS})
            from_cache.append(hit)
            pk = _package_values(rm, V, t, ctx.bug("alpha_dropped"))
            eps_l = U * (Q + 10 * (np.max(np.abs(pk["ll"]), axis=1) + 50))
            delta = pk["dl"] + eps_l                                     # (N,) log-mass error per point
            mu = np.linalg.norm(V, axis=1) / lam
            e_m = pk["dm"] + np.expm1(2 * delta) * D + U * (Q + 20) * (B + mu)
            vnorm = np.linalg.norm(V, axis=1)
            tol = {
                "log density": delta + o.err_log_density + U * (K + np.abs(pk["log_density"])),
                "class log posterior": (2 * delta + np.max(o.err_class_log_posterior, axis=1)
                                        + 2 * U * (K + np.max(np.abs(pk["class_log_posterior"]), axis=1)
                                                   + np.abs(pk["log_density"]))),
                "sigma * score": (lam * e_m + 4 * U * (lam * B + vnorm)) / s + s * o.err_score,
                "sigma * guidance": (2 * lam * e_m + 4 * U * lam * B) / s + s * np.max(o.err_guidance, axis=0),
            }
            err = {
                "log density": np.abs(pk["log_density"] - o.log_density),
                "class log posterior": np.max(np.abs(pk["class_log_posterior"] - o.class_log_posterior), axis=1),
                "sigma * score": s * np.linalg.norm(pk["score"] - o.score, axis=1),
                "sigma * guidance": s * np.max(np.linalg.norm(pk["guidance"] - o.guidance, axis=2), axis=0),
            }
            contract = _contract_tolerances(pk["ll"], np.asarray(rm.labels), D, lam, s, o)
            for q in quantities:
                acc[q].append(err[q] / contract[q])
                ratios[q].append(err[q] / tol[q])
                errs[q].append((err[q], tol[q]))
                worst[q].setdefault(name, WorstByParam()).add(t, err[q], tol[q])
        for q in quantities:
            out.append(_contract_measurement(name, q, errs[q], acc[q], ts))
        for q in quantities:
            r = np.concatenate(ratios[q])
            i = int(np.argmax(r))
            e_all = np.concatenate([e for e, _ in errs[q]])
            t_all = np.concatenate([t_ for _, t_ in errs[q]])
            out.append(Measurement(
                name=f"{name}: {q}, max over points and t of |pkg - oracle| / tol", measured=float(r[i]),
                predicted=1.0, kind="le", tol=0.0,
                reason="per point: the package's refinement estimates (quadrature_error's rule) of the log masses "
                       "and means, propagated; float64 rounding of the slice quadrature; the oracle's mpmath error "
                       "bound (geometry_oracle.geometry_measurements)",
                extra={"max_abs_error": float(np.max(e_all)), "error_at_worst": float(e_all[i]),
                       "tol_at_worst": float(t_all[i]), "min_tol": float(np.min(t_all)), "ts": ts,
                       "n_points": int(pts.shape[0]), "drift_tol": 1.0,   # an error-to-bound ratio, as above
                       "oracle_ts_from_disk_cache": [t_ for t_, h in zip(ts, from_cache) if h]}))

        # ---- distances
        P = _distance_points(name, specs, float(p["grid_step"]))
        per_reg = []
        bounds = []
        dist_from_cache: list[bool] = []    # per region: the brute force read from the on-disk reference cache
        for k in range(len(specs)):
            arrays, hit = refs[("brute", name, k)]
            d, b = arrays["distance"], arrays["bound"]
            per_reg.append(d)
            bounds.append(b)
            dist_from_cache.append(hit)
        per_reg = np.stack(per_reg)
        labels = np.asarray(rm.labels)
        rmax = max(s_[3] if s_[0] != "lens" else 1.0 for s_ in specs)
        rnd = 16 * U * (np.linalg.norm(P, axis=1) + rmax)
        has_lens = np.array([s_[0] == "lens" for s_ in specs])
        d_cls, d_uni = _package_distances(rm, P, ctx)
        worst_c, info_c = 0.0, {}
        for c in range(C):
            sel = labels == c
            bf = np.min(per_reg[sel], axis=0)
            tol_c = np.max(np.stack(bounds)[sel], axis=0) + (PKG_LENS_DIST_ERR if has_lens[sel].any() else 0.0) + rnd
            r = np.abs(d_cls[c] - bf) / tol_c
            worst_c = max(worst_c, float(np.max(r)))
            info_c[str(c)] = float(np.max(np.abs(d_cls[c] - bf)))
        bf_u = np.min(per_reg, axis=0)
        tol_u = np.max(np.stack(bounds), axis=0) + (PKG_LENS_DIST_ERR if has_lens.any() else 0.0) + rnd
        r_u = np.abs(d_uni - bf_u) / tol_u
        dist_plot[name] = (bf_u, np.abs(d_uni - bf_u), tol_u)
        out.append(Measurement(
            name=f"{name}: distance to each class (as the guided class), max |pkg - brute force| / tol",
            measured=worst_c, predicted=1.0, kind="le", tol=0.0,
            reason="per point: the brute force's refined sagitta bound (circles R(1 - cos(dtheta/2)), lens "
                   "dx^2 max|g''|/8, refined to < 1e-18) + the package lens's point-sampling error "
                   "0.5 dx sqrt(1 + max g'^2) where the class is the lens + rounding 16u(|p| + R)",
            extra={"max_abs_error_per_class": info_c, "n_points": int(P.shape[0]),
                   "largest_brute_force_bound": float(np.max(np.stack(bounds)))}))
        out.append(Measurement(
            name=f"{name}: distance to the union, max |pkg - brute force| / tol", measured=float(np.max(r_u)),
            predicted=1.0, kind="le", tol=0.0,
            reason="as for the classes, with the union's polylines (min over regions)",
            extra={"max_abs_error": float(np.max(np.abs(d_uni - bf_u))), "n_points": int(P.shape[0]),
                   "brute_force_regions_from_disk_cache": int(sum(dist_from_cache))}))

    # ---- figure: per quantity the worst error/tolerance ratio per t (one series per mixture), <= 1 passes
    for q in quantities:
        ctx.plot.panel(q, title=f"{q}: |pkg - oracle| / tolerance (worst point per t)", xlabel="t",
                       ylabel="error / tolerance", xscale="log", yscale="log")
        for name, wb in worst[q].items():
            x, e, tl = wb.arrays()
            ctx.plot.measured(q, x, e / tl, label=name)          # zeros are left out of log axes
        ctx.plot.bound(q, [min(ts), max(ts)] if len(ts) > 1 else [ts[0] / 2, ts[0] * 2], [1.0, 1.0],
                       label="1 (tolerance)")
    ctx.plot.panel("distance", title="distance to the union: |pkg - brute force| / tolerance",
                   xlabel="brute-force distance", ylabel="error / tolerance", yscale="log")
    for name, (d, e, tl) in dist_plot.items():
        order = np.argsort(d)
        ctx.plot.measured("distance", d[order], (e / tl)[order], label=name)
    dmax = max(float(np.max(d)) for d, _, _ in dist_plot.values()) if dist_plot else 1.0
    ctx.plot.bound("distance", [0.0, dmax], [1.0, 1.0], label="1 (tolerance)")
    return out


def _bbox(specs: Sequence[tuple]) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)``: the bounding box of the union of the regions."""
    xs, ys = [], []
    for s in specs:
        if s[0] == "lens":
            xs += [s[1] - 3, s[1] - 1]
            ys += [s[2] - 0.5, s[2] + 0.5]
        else:
            xs += [s[1] - s[3], s[1] + s[3]]
            ys += [s[2] - s[3], s[2] + s[3]]
    return min(xs), max(xs), min(ys), max(ys)

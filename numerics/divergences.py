r"""Kullback-Leibler divergences used by the claims (one definition each).

``kl_cells(p, q, cell)``
    :math:`\mathrm{KL}(p\|q) = \int p\log(p/q)` for two densities sampled on the same uniform grid of
    cells of measure ``cell`` (``dx`` in 1-D, ``dx1 * dx2`` on a 2-D tensor grid; any array shape), by
    the rectangle rule after normalising both to unit mass on the grid:

    .. math::  \mathrm{KL}_h = h\sum_{i:\,p_i>0} \bar p_i\log(\bar p_i/\bar q_i),\qquad
               \bar p = p/(h\textstyle\sum_i p_i),\ \bar q = q/(h\textstyle\sum_i q_i).

    On a uniform grid the rectangle and trapezoid rules differ only by the half weights of the two end
    cells, so for densities that are negligible at the ends this is the trapezoid rule, spectrally
    accurate for smooth rapidly decaying integrands.

    **The q = 0 rule.**  Where :math:`q_i = 0` and :math:`p_i > 0` the divergence is :math:`+\infty`
    (the convention :math:`p\log(p/0) = +\infty`), and ``kl_cells`` returns ``math.inf``: a density
    floored at a tiny value would instead return a finite number that depends on the floor.  Cells with
    :math:`p_i = 0` contribute 0 (:math:`0\log 0 = 0`).  Negative, NaN or infinite entries raise
    ``ValueError`` naming the argument (clip solver round-off explicitly before calling).

``gaussian_kl(m0, S0, m1, S1)``
    :math:`\mathrm{KL}(N(m_0,S_0)\|N(m_1,S_1)) = \tfrac12\big[\mathrm{tr}(S_1^{-1}S_0)
    + (m_1-m_0)^\top S_1^{-1}(m_1-m_0) - d + \log\det S_1 - \log\det S_0\big]` in ``d`` dimensions, by
    Cholesky factors (no inverse, log-determinants from the factors' diagonals).
``gaussian_kl_1d(m0, v0, m1, v1)``
    The same for scalars (means and variances), in closed form.
"""
from __future__ import annotations

import math

import numpy as np

from numerics.validate import as_float_array, check_density, check_positive, check_real

__all__ = ["gaussian_kl", "gaussian_kl_1d", "kl_cells"]


def kl_cells(p, q, cell: float) -> float:
    r""":math:`\mathrm{KL}(p\|q)` of two densities on the same uniform grid of cells of measure ``cell``.

    Parameters
    ----------
    p, q : array_like, same shape (1-, 2- or 3-D)
        Density values at the cell centres: finite, non-negative, positive total mass (need not be
        normalised: both are normalised on the grid first).
    cell : float > 0
        Measure of one cell (``dx``, or ``dx1 * dx2`` on a 2-D tensor grid).

    Returns
    -------
    float
        :math:`h\sum_{p_i>0}\bar p_i\log(\bar p_i/\bar q_i)` (module docstring), ``math.inf`` when
        :math:`q` vanishes at a cell where :math:`p > 0`.

    Notes
    -----
    The log-ratio is taken as :math:`\log(\bar p_i/\bar q_i)` (one rounding in the quotient, so the
    integrand is accurate where :math:`p\approx q`); where the quotient overflows or underflows to 0 it
    is :math:`\log\bar p_i - \log\bar q_i` instead.
    """
    p = check_density(p, "p", (1, 2, 3))
    q = check_density(q, "q", p.ndim, p.shape)
    h = float(cell)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"cell: must be finite and > 0, got {cell!r}")
    zp, zq = p.sum() * h, q.sum() * h
    if not zp > 0:
        raise ValueError("p: must have positive mass")
    if not zq > 0:
        raise ValueError("q: must have positive mass")
    p, q = p / zp, q / zq
    on = p > 0
    pn, qn = p[on], q[on]
    if np.any(qn == 0):
        return math.inf
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        lr = np.log(pn / qn)
    bad = ~np.isfinite(lr)
    if np.any(bad):
        lr[bad] = np.log(pn[bad]) - np.log(qn[bad])
    return float(np.sum(pn * lr) * h)


def gaussian_kl(m0, S0, m1, S1) -> float:
    r""":math:`\mathrm{KL}(N(m_0,S_0)\,\|\,N(m_1,S_1))` for means ``(d,)`` and symmetric positive-definite ``(d, d)`` covariances.

    With :math:`S_i = L_iL_i^\top` (Cholesky): :math:`\mathrm{tr}(S_1^{-1}S_0) = \|L_1^{-1}L_0\|_F^2`,
    :math:`(m_1-m_0)^\top S_1^{-1}(m_1-m_0) = \|L_1^{-1}(m_1-m_0)\|^2`,
    :math:`\log\det S_1 - \log\det S_0 = 2\sum_j(\log L_{1,jj} - \log L_{0,jj})`.
    ``ValueError`` (naming the argument) for mismatched shapes or a covariance that is not positive definite.
    """
    m0, m1 = as_float_array(m0, "m0", 1), as_float_array(m1, "m1", 1)
    S0, S1 = as_float_array(S0, "S0", 2), as_float_array(S1, "S1", 2)
    d = m0.size
    for name, arr, shape in (("m1", m1, (d,)), ("S0", S0, (d, d)), ("S1", S1, (d, d))):
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    try:
        L1 = np.linalg.cholesky(S1)
    except np.linalg.LinAlgError:
        raise ValueError("S1: must be symmetric positive definite") from None
    try:
        L0 = np.linalg.cholesky(S0)
    except np.linalg.LinAlgError:
        raise ValueError("S0: must be symmetric positive definite") from None
    Z = np.linalg.solve(L1, L0)
    v = np.linalg.solve(L1, m1 - m0)
    logdet = 2.0 * (np.sum(np.log(np.diag(L1))) - np.sum(np.log(np.diag(L0))))
    out = float(0.5 * (np.sum(Z * Z) + v @ v - d + logdet))
    if not math.isfinite(out):
        raise ValueError("m0, S0, m1, S1: the divergence is not finite in float64 (overflow); rescale the inputs")
    return out


def gaussian_kl_1d(m0: float, v0: float, m1: float, v1: float) -> float:
    r""":math:`\mathrm{KL}(N(m_0,v_0)\|N(m_1,v_1)) = \tfrac12\big[v_0/v_1 + (m_1-m_0)^2/v_1 - 1 + \log(v_1/v_0)\big]` (variances ``> 0``).

    The scalar case of :func:`gaussian_kl`, in closed form (the two agree to rounding,
    ``tests/test_divergences.py``).  Absolute rounding error a few units of :math:`u(1 + v_0/v_1 + (m_1-m_0)^2/v_1)`.
    """
    m0, m1 = check_real(m0, "m0"), check_real(m1, "m1")
    v0, v1 = check_positive(v0, "v0"), check_positive(v1, "v1")
    try:
        out = 0.5 * (v0 / v1 + (m1 - m0) ** 2 / v1 - 1.0 + math.log(v1 / v0))
    except (OverflowError, ValueError, ZeroDivisionError):
        out = math.inf
    if not math.isfinite(out):
        raise ValueError(f"m0, v0, m1, v1: the divergence overflows float64 (m0={m0!r}, v0={v0!r}, m1={m1!r}, v1={v1!r})")
    return out

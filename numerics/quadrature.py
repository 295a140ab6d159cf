r"""Gauss-Hermite quadrature for expectations over a standard normal variable (one definition).

:func:`gauss_hermite_normal` returns the ``n``-point rule

.. math::  \mathbb E\,f(Z) \approx \sum_{i=1}^n w_i f(z_i),\qquad Z\sim N(0, 1),

with :math:`z_i` the roots of the probabilists' Hermite polynomial :math:`\mathrm{He}_n` and

.. math::  w_i = \frac{n!}{n^2\,\mathrm{He}_{n-1}(z_i)^2},\qquad \sum_i w_i = 1 .

It is exact for every polynomial of degree :math:`\le 2n - 1` (Gauss quadrature for the weight
:math:`e^{-z^2/2}/\sqrt{2\pi}`), up to the rounding of the nodes and weights (``numpy`` computes them
by the Golub-Welsch eigenvalue method plus one Newton step; relative error of the weights about
:math:`10^{-14}` for ``n`` in the hundreds, ``tests/test_quadrature.py``).  For an integrand analytic in
a strip :math:`|\mathrm{Im}\,z| < a` the error decays geometrically in :math:`\sqrt n`.

Normalisation: the weights of :func:`numpy.polynomial.hermite_e.hermegauss` (for the weight
:math:`e^{-z^2/2}`, total :math:`\sqrt{2\pi}`) are divided by their computed sum, so the rule integrates
constants exactly to rounding whatever scaling the library applies.

:func:`gauss_hermite_normal_nd` is the tensor product of ``d`` such rules, for :math:`\mathbb E f(Z)`,
:math:`Z\sim N(0, I_d)`: ``n**d`` points, exact for every polynomial of degree :math:`\le 2n-1` in each
coordinate separately.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from numerics.validate import check_int

__all__ = ["GaussRule", "gauss_hermite_normal", "gauss_hermite_normal_nd"]

#: Largest number of nodes accepted (``hermegauss`` builds an ``n x n`` companion matrix).
MAX_NODES = 4000
#: Largest number of points of a tensor-product rule (:func:`gauss_hermite_normal_nd`).
MAX_POINTS_ND = 10**8


class GaussRule(NamedTuple):
    """Nodes and weights of a quadrature rule: ``E f(Z) ~ weights @ f(nodes)``."""

    nodes: np.ndarray
    weights: np.ndarray


@lru_cache(maxsize=64)
def _rule(n: int) -> GaussRule:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    z.flags.writeable = False  # cached: shared by every caller
    w.flags.writeable = False
    return GaussRule(z, w)


def gauss_hermite_normal(n: int) -> GaussRule:
    r"""The ``n``-point Gauss-Hermite rule for :math:`\mathbb E f(Z)`, :math:`Z\sim N(0,1)`.

    Parameters
    ----------
    n : int, 1 <= n <= 4000

    Returns
    -------
    GaussRule
        ``nodes`` :math:`z_i` (increasing, symmetric about 0) and ``weights``
        :math:`w_i = n!/(n^2\mathrm{He}_{n-1}(z_i)^2)` summing to 1; the rule is exact for polynomials
        of degree :math:`\le 2n-1`.  The arrays are cached and read-only.
    """
    return _rule(check_int(n, "n", 1, MAX_NODES))


def gauss_hermite_normal_nd(n: int, d: int) -> GaussRule:
    r"""Tensor-product Gauss-Hermite rule for :math:`\mathbb E f(Z)`, :math:`Z\sim N(0, I_d)`.

    Returns
    -------
    GaussRule
        ``nodes`` of shape ``(n**d, d)`` (the first coordinate varies slowest) and ``weights`` ``(n**d,)``,
        the products of the 1-D weights of :func:`gauss_hermite_normal` (summing to 1).  Not cached
        (``n**d`` points).
    """
    z, w = gauss_hermite_normal(n)
    d = check_int(d, "d", 1)
    if d * np.log(z.size) + np.log(d) > np.log(MAX_POINTS_ND):
        raise ValueError(f"d: the rule has n**d = {z.size}**{d} points of {d} coordinates, more than {MAX_POINTS_ND} values")
    if d == 1:
        return GaussRule(z[:, None], w)
    grids = np.meshgrid(*([z] * d), indexing="ij")
    wg = np.meshgrid(*([w] * d), indexing="ij")
    return GaussRule(np.stack([g.ravel() for g in grids], axis=1), np.prod(np.stack([g.ravel() for g in wg]), axis=0))

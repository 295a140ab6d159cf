r"""Numba kernels for Gaussian-mixture marginals of the VP process.

Component ``k`` of the data law is :math:`N(\mu_k, S_k)` with :math:`S_k = U_k\,\mathrm{diag}(\lambda_k)\,U_k^\top`
(eigenvalues in descending order, the first ``rank[k]`` of them positive, the rest exactly zero).
At forward time ``t`` its marginal is :math:`N(\alpha\mu_k, C_k)`, :math:`C_k = \alpha^2 S_k + \sigma^2 I`, and with
:math:`v = x - \alpha\mu_k`, :math:`p = U_r^\top v`, :math:`c_j = \alpha^2\lambda_j + \sigma^2`,
:math:`v_\perp = v - U_r p` (zero when the rank is full):

.. math::
    \ell_k &= \log w_k - \tfrac12\Big(d\log 2\pi + \sum_{j<r}\log c_j + (d-r)\log\sigma^2
              + \sum_{j<r} p_j^2/c_j + \|v_\perp\|^2/\sigma^2\Big) \\
    s_k &= -C_k^{-1} v = -\Big(\sum_{j<r} u_j\,p_j/c_j + v_\perp/\sigma^2\Big) \\
    m_k &= E[X_0\mid x, k] = \mu_k + \sum_{j<r} u_j\,\alpha\lambda_j p_j/c_j \\
    P_k &= \mathrm{Cov}[X_0\mid x, k] = \sum_{j<r} u_j u_j^\top\,\lambda_j\sigma^2/c_j .

Mixture quantities are posterior averages with weights :math:`\pi_k = \mathrm{softmax}_k(\ell_k)`, accumulated in
one pass with a running maximum (online log-sum-exp), so nothing under- or overflows.

The mixture kernels take per-particle arrays ``alpha`` and ``sigma2`` of shape ``(N,)`` (computed by the
caller as ``exp(-t_i)`` and ``-expm1(-2 t_i)``; one time for all particles is a constant array) rather than
``t``; they loop over particles with ``prange`` and allocate nothing inside it.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from numerics.constants import LOG_2PI

#: ``quantity`` codes for :func:`mixture_average`.
SCORE = 0
DENOISER = 1


@njit(cache=True)
def component_logit(xi, k, alpha, sigma2, means, evecs, evals, rank, logw, proj, resid):
    r""":math:`\ell_k(x)`; leaves :math:`p = U_r^\top v` in ``proj`` and :math:`v_\perp` in ``resid``."""
    d = xi.shape[0]
    r = rank[k]
    for l in range(d):
        resid[l] = xi[l] - alpha * means[k, l]
    logdet = (d - r) * math.log(sigma2)
    quad = 0.0
    for j in range(r):
        pj = 0.0
        for l in range(d):
            pj += evecs[k, l, j] * resid[l]
        proj[j] = pj
        cj = alpha * alpha * evals[k, j] + sigma2
        logdet += math.log(cj)
        quad += pj * pj / cj
    if r == d:
        for l in range(d):
            resid[l] = 0.0
    else:
        for j in range(r):
            pj = proj[j]
            for l in range(d):
                resid[l] -= pj * evecs[k, l, j]
        rr = 0.0
        for l in range(d):
            rr += resid[l] * resid[l]
        quad += rr / sigma2
    return logw[k] - 0.5 * (d * LOG_2PI + logdet + quad)


@njit(cache=True)
def live_logit(xi, k, alpha, sigma2, means, evecs, evals, rank, logw, proj, resid):
    r""":math:`\ell_k(x)` as :func:`component_logit`, or ``-inf`` for a component without mass at ``x``: zero
    weight (not evaluated) or a quadratic form that overflowed.  Callers skip a component when it is ``-inf``."""
    if logw[k] == -np.inf:
        return -np.inf
    return component_logit(xi, k, alpha, sigma2, means, evecs, evals, rank, logw, proj, resid)


@njit(cache=True)
def component_quantity(k, quantity, alpha, sigma2, means, evecs, evals, rank, proj, resid, out):
    """Write :math:`s_k` (``quantity == SCORE``) or :math:`m_k` (``DENOISER``) into ``out``."""
    d = out.shape[0]
    r = rank[k]
    if quantity == 0:
        for l in range(d):
            out[l] = -resid[l] / sigma2
        for j in range(r):
            coef = proj[j] / (alpha * alpha * evals[k, j] + sigma2)
            for l in range(d):
                out[l] -= evecs[k, l, j] * coef
    else:
        for l in range(d):
            out[l] = means[k, l]
        for j in range(r):
            coef = alpha * evals[k, j] * proj[j] / (alpha * alpha * evals[k, j] + sigma2)
            for l in range(d):
                out[l] += evecs[k, l, j] * coef


@njit(cache=True)
def online_push(m, z, ell, comp, acc):
    r"""One step of an online log-sum-exp average: fold weight :math:`e^{\ell}` and vector ``comp`` into
    the running ``(max m, sum z, acc)`` (``acc`` holds :math:`\sum e^{\ell_k - m} q_k`); returns the new ``(m, z)``."""
    if ell > m:
        scale = math.exp(m - ell)
        for l in range(acc.shape[0]):
            acc[l] = acc[l] * scale + comp[l]
        return ell, z * scale + 1.0
    wgt = math.exp(ell - m)
    for l in range(acc.shape[0]):
        acc[l] += wgt * comp[l]
    return m, z + wgt


@njit(cache=True)
def online_finish(m, z, acc):
    r"""End an online average: divide ``acc`` by ``z``; return the log of the total weight, :math:`m + \log z`
    (``-inf``, and ``acc`` left as it is, when nothing was pushed)."""
    if z > 0.0:
        for l in range(acc.shape[0]):
            acc[l] /= z
        return m + math.log(z)
    return -np.inf


@njit(cache=True, parallel=True)
def mixture_average(x, alpha, sigma2, means, evecs, evals, rank, logw, in_mask, quantity,
                    avg_in, avg_out, logz, work):
    r"""Posterior averages of a component quantity, split by a component mask.

    For every particle ``i``: ``avg_in[i] = sum_{k in mask} pi_k q_k / sum_{k in mask} pi_k`` and the same over
    the complement in ``avg_out[i]``; ``logz[i, 0]`` and ``logz[i, 1]`` are
    :math:`\log\sum_{k\in\text{mask}} w_k N_k(x)` and the complement's (``-inf`` for an empty set).
    ``work`` is ``(N, 3, d)`` scratch.
    """
    n, d = x.shape
    K = means.shape[0]
    # each prange kernel unpacks its own scratch rows (views of ``work``: no allocation inside the parallel loop)
    for i in prange(n):
        al, s2 = alpha[i], sigma2[i]  # this particle's time
        proj, resid, comp = work[i, 0], work[i, 1], work[i, 2]
        m_in = -np.inf
        m_out = -np.inf
        z_in = 0.0
        z_out = 0.0
        for l in range(d):
            avg_in[i, l] = 0.0
            avg_out[i, l] = 0.0
        for k in range(K):
            ell = live_logit(x[i], k, al, s2, means, evecs, evals, rank, logw, proj, resid)
            if ell == -np.inf:
                continue
            component_quantity(k, quantity, al, s2, means, evecs, evals, rank, proj, resid, comp)
            if in_mask[k]:
                m_in, z_in = online_push(m_in, z_in, ell, comp, avg_in[i])
            else:
                m_out, z_out = online_push(m_out, z_out, ell, comp, avg_out[i])
        logz[i, 0] = online_finish(m_in, z_in, avg_in[i])
        logz[i, 1] = online_finish(m_out, z_out, avg_out[i])


@njit(cache=True, parallel=True)
def class_log_mass(x, alpha, sigma2, means, evecs, evals, rank, logw, labels, out, sums, work):
    r"""``out[i, c]`` :math:`= \log\sum_{k:\,y(k)=c} w_k N(x_i;\alpha\mu_k, C_k)` (``-inf`` if no component has weight).

    Online log-sum-exp per class: ``out`` holds the running maximum, ``sums`` (``(N, C)``) the running sum;
    ``work`` is ``(N, 2, d)`` scratch.
    """
    n, d = x.shape
    K = means.shape[0]
    C = out.shape[1]
    for i in prange(n):
        al, s2 = alpha[i], sigma2[i]  # this particle's time
        proj, resid = work[i, 0], work[i, 1]
        for c in range(C):
            out[i, c] = -np.inf
            sums[i, c] = 0.0
        for k in range(K):
            ell = live_logit(x[i], k, al, s2, means, evecs, evals, rank, logw, proj, resid)
            if ell == -np.inf:
                continue
            c = labels[k]
            m = out[i, c]
            if ell > m:
                sums[i, c] = sums[i, c] * math.exp(m - ell) + 1.0
                out[i, c] = ell
            else:
                sums[i, c] += math.exp(ell - m)
        for c in range(C):
            if sums[i, c] > 0.0:
                out[i, c] += math.log(sums[i, c])


@njit(cache=True, parallel=True)
def mixture_posterior_cov(x, alpha, sigma2, means, evecs, evals, rank, logw, in_mask, out, work):
    r"""``out[i]`` :math:`= \mathrm{Cov}[X_0\mid X_t = x_i,\ k\in\text{mask}]`
    :math:`= \sum_k \pi_k (P_k + (m_k - \bar m)(m_k - \bar m)^\top)` (law of total covariance).

    Two passes over the components: the first gives the normaliser and :math:`\bar m`, the second the sum.
    ``work`` is ``(N, 4, d)`` scratch.  Particles whose mask has no weighted component get NaN (the
    caller rejects such masks before calling).
    """
    n, d = x.shape
    K = means.shape[0]
    for i in prange(n):
        al, s2 = alpha[i], sigma2[i]  # this particle's time
        proj, resid, comp, mbar = work[i, 0], work[i, 1], work[i, 2], work[i, 3]
        m_run = -np.inf
        z = 0.0
        for l in range(d):
            mbar[l] = 0.0
        for k in range(K):
            ell = live_logit(x[i], k, al, s2, means, evecs, evals, rank, logw, proj, resid) if in_mask[k] else -np.inf
            if ell == -np.inf:
                continue
            component_quantity(k, 1, al, s2, means, evecs, evals, rank, proj, resid, comp)
            m_run, z = online_push(m_run, z, ell, comp, mbar)
        for a in range(d):
            for b in range(d):
                out[i, a, b] = 0.0
        if z == 0.0:
            for a in range(d):
                for b in range(d):
                    out[i, a, b] = np.nan
            continue
        logz = online_finish(m_run, z, mbar)
        for k in range(K):
            ell = live_logit(x[i], k, al, s2, means, evecs, evals, rank, logw, proj, resid) if in_mask[k] else -np.inf
            if ell == -np.inf:
                continue
            pik = math.exp(ell - logz)
            if pik == 0.0:
                continue
            component_quantity(k, 1, al, s2, means, evecs, evals, rank, proj, resid, comp)
            for l in range(d):
                comp[l] -= mbar[l]
            for a in range(d):
                for b in range(d):
                    out[i, a, b] += pik * comp[a] * comp[b]
            for j in range(rank[k]):
                lam = evals[k, j]
                pj = pik * lam * s2 / (al * al * lam + s2)
                for a in range(d):
                    ua = evecs[k, a, j] * pj
                    for b in range(d):
                        out[i, a, b] += ua * evecs[k, b, j]

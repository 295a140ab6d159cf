r"""Numba kernels for Gaussian-mixture marginals of the VP process.

Component ``k`` of the data law is :math:`N(\mu_k, S_k)` with :math:`S_k = U_k\,\mathrm{diag}(\lambda_k)\,U_k^\top`
(eigenvalues in descending order, the first ``rank[k]`` of them positive, the rest exactly zero).
At forward time ``t`` its marginal is :math:`N(\alpha\mu_k, C_k)`, :math:`C_k = \alpha^2 S_k + \sigma^2 I`, and with
:math:`v = x - \alpha\mu_k`, :math:`p = U_r^\top v`, :math:`c_j = \alpha^2\lambda_j + \sigma^2`,
:math:`D_j = \alpha^2\lambda_j/c_j`, :math:`v_\perp = v - U_r p` (zero when the rank is full):

.. math::
    \ell_k &= -\tfrac d2\big(\log 2\pi + \log\sigma^2\big) + a_k - \tfrac12 q_k, \qquad
    a_k = \log w_k - \tfrac12\sum_{j<r}\operatorname{log1p}(\alpha^2\lambda_j/\sigma^2), \\
    q_k &= v^\top C_k^{-1} v = \sum_{j<r} p_j^2/c_j + \|v_\perp\|^2/\sigma^2
         = \big(\|v\|^2 - E_k\big)/\sigma^2, \qquad E_k = \sum_{j<r} D_j\,p_j^2, \\
    s_k &= -C_k^{-1} v = -\Big(\sum_{j<r} u_j\,p_j/c_j + v_\perp/\sigma^2\Big) \\
    m_k &= E[X_0\mid x, k] = \mu_k + \sum_{j<r} u_j\,\alpha\lambda_j p_j/c_j \\
    P_k &= \mathrm{Cov}[X_0\mid x, k] = \sum_{j<r} u_j u_j^\top\,\lambda_j\sigma^2/c_j .

Logit differences without cancellation
--------------------------------------
Mixture quantities are posterior averages with weights :math:`\pi_k = \mathrm{softmax}_k(\ell_k)`, which need only
the differences :math:`\delta_k = \ell_k - \ell_r` to a reference component ``r`` (per particle: the largest
logit of a first pass).  Far from the data, :math:`q_k \approx \|x\|^2/\sigma^2` is large for every ``k`` and
:math:`\ell_k - \ell_r` formed from the two logits loses :math:`\log_{10} q_k` digits.  The kernels form it as

.. math::
    \delta_k = a_k - a_r - \frac{1}{2\sigma^2}\Big(\alpha\,(\mu_r - \mu_k)\cdot\big(2x - \alpha(\mu_k + \mu_r)\big)
               - E_k + E_r\Big)                                                       \qquad\text{(form B)}

(:math:`\|x - a\|^2 - \|x - b\|^2 = (b - a)\cdot(2x - a - b)`; the common :math:`d\log(2\pi\sigma^2)` cancels
exactly and is never formed), or as :math:`(a_k - \tfrac12 q_k) - (a_r - \tfrac12 q_r)` (form A), whichever has
the smaller rounding bound (below): form B wins far from the data at moderate and large ``t`` (where
:math:`D_j \ll 1`), form A near the data and at small ``t`` (where :math:`D_j \to 1` and form B would cancel
:math:`\|v\|^2` against :math:`E_k`).

Rounding bound (proof: ``proofs_notes/foundations.md#logit-differences``).  With :math:`u = 2^{-53}`,
:math:`\gamma_n = nu/(1 - nu)`, :math:`S_k = \|x\| + \alpha\|\mu_k\|`, :math:`G_l = 2|x_l| + \alpha(|\mu_{kl}| + |\mu_{rl}|)`,

.. math::
    |\hat\delta_k - \delta_k| \le \gamma_{2d+16}\,\Big(\min(B^A_{kr}, B^B_{kr}) + |\delta_k| + A_k + A_r\Big),
    \qquad B^A_{kr} = \tfrac12(f_k + f_r), \quad
    B^B_{kr} = \frac{\alpha\sum_l |\mu_{rl} - \mu_{kl}|\,G_l + e_k + e_r}{2\sigma^2},

with :math:`f_k = \sum_{j<r}(p_j^2 + 2|p_j|S_k)/c_j + (\|v_\perp\|^2 + 4\sqrt d\,\|v_\perp\|S_k)/\sigma^2` (:math:`q_k` and the
rounding of :math:`v` and :math:`p`), :math:`e_k = \sum_{j<r} D_j\,(p_j^2 + 2|p_j|S_k)` and :math:`A_k = |\log w_k| + \sum_{j<r}(1 +
\operatorname{log1p}(\alpha^2\lambda_j/\sigma^2))` (first order in ``u``; the float64 ``U`` taken orthonormal, as
everywhere in these kernels).  The softmax then gives :math:`|\hat\pi_k - \pi_k| \le \pi_k\,(2\max_j|\hat\delta_j -
\delta_j| + \gamma_{K+4})`, so a class posterior is within :math:`2\max_j|\hat\delta_j - \delta_j| + \gamma_{K+6}`
absolutely (with the ``log``/``exp`` of the class log-posterior).  At :math:`t \ge 10` and :math:`10^3\sigma_t` from the data :math:`B^B_{kr} = O(\alpha\|\Delta\mu\|\,\|x\|/\sigma^2)
\approx 10^{-1}`, against :math:`B^A_{kr} \approx 10^6` for the old form A everywhere.  The kernel evaluates
:math:`2B^B_{kr}` and :math:`2B^A_{kr} = f_k + f_r` from its own intermediate values and uses the form with the
smaller one.  The log-det term :math:`\operatorname{log1p}(y)`, :math:`y = \alpha^2\lambda_j/\sigma^2`, is taken as
:math:`\log(\alpha^2\lambda_j) - \log\sigma^2` when ``y`` overflows (a subnormal :math:`\sigma^2`).

Accumulation: after the first pass, one pass with a running maximum over the :math:`\delta_k` (online log-sum-exp), so nothing under- or
overflows; the mixture log-normaliser is returned as ``(reference logit, log-sum-exp of the differences)`` so that
callers can take ratios (class posteriors, :math:`p(\neg y\mid x)`) without adding and subtracting the large
reference logit.

The mixture kernels take per-particle arrays ``alpha`` and ``sigma2`` of shape ``(N,)`` (computed by the
caller as ``exp(-t_i)`` and ``-expm1(-2 t_i)``; one time for all particles is a constant array) rather than
``t``, and the transposed eigenvectors ``evecs_t`` (``evecs_t[k, j]`` is :math:`u_j` of component ``k``, a
contiguous row).  They loop over chunks of particles with ``prange``; all scratch comes from
:func:`workspace` (one block per chunk, allocated by the caller), nothing is allocated inside the loop.  The
per-time constants (:func:`time_tables`) are recomputed only when a particle's time differs from the previous one
of its chunk, and the small helpers are inlined (``inline="always"``: a call per component would otherwise cost
reference counting of every array argument), so the kernels are faster than the absolute-logit ones they replace
(README, Accuracy).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from numerics.constants import LOG_2PI

#: ``quantity`` codes for :func:`mixture_average`.
SCORE = 0
DENOISER = 1

#: Number of particle chunks (one scratch block each) of the ``prange`` loops.
N_CHUNKS = 64

# rows of the per-component scratch ``kv`` of :func:`workspace`
_ELL, _A, _Q, _E, _EB, _DELTA, _LOGDET, _FA = 0, 1, 2, 3, 4, 5, 6, 7
# rows of the per-time tables ``tab[k]``: 1/c_j, D_j = alpha^2 lambda_j / c_j, alpha lambda_j / c_j
_INVC, _D, _COEFM = 0, 1, 2


def workspace(n: int, K: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scratch for the mixture kernels, one block per chunk of particles: ``(vec (B, 4, d), kv (B, 8, K),
    proj (B, K, d), resid (B, K, d), tab (B, K, 3, d))`` with ``B = min(n, N_CHUNKS)`` (at least 1)."""
    nb = max(1, min(n, N_CHUNKS))
    return (np.empty((nb, 4, d)), np.empty((nb, 8, K)), np.empty((nb, K, d)), np.empty((nb, K, d)),
            np.empty((nb, K, 3, d)))


@njit(cache=True)
def time_tables(alpha, sigma2, evals, rank, tab, kv):
    r"""The per-time constants of every component: ``tab[k]`` (rows ``1/c_j``, :math:`D_j`,
    :math:`\alpha\lambda_j/c_j`) and :math:`\sum_j\operatorname{log1p}(\alpha^2\lambda_j/\sigma^2)` in ``kv``.
    The kernels recompute them only when a particle's time differs from the previous one of its chunk."""
    a2 = alpha * alpha
    for k in range(evals.shape[0]):
        ld = 0.0
        for j in range(rank[k]):
            lam = evals[k, j]
            c = a2 * lam + sigma2
            tab[k, _INVC, j] = 1.0 / c
            tab[k, _D, j] = a2 * lam / c
            tab[k, _COEFM, j] = alpha * lam / c
            y = a2 * lam / sigma2  # overflows only for a subnormal sigma2; then log1p(y) = log(y) to within u
            ld += math.log1p(y) if y < 1e300 else math.log(a2 * lam) - math.log(sigma2)
        kv[_LOGDET, k] = ld


@njit(cache=True, inline="always")
def new_time(alpha, sigma2, i, lo, evals, rank, tab, kv):
    """Refresh the tables (:func:`time_tables`) for particle ``i`` if it starts its chunk (``lo``) or its time
    is not the previous particle's."""
    if i == lo or alpha[i] != alpha[i - 1] or sigma2[i] != sigma2[i - 1]:
        time_tables(alpha[i], sigma2[i], evals, rank, tab, kv)


@njit(cache=True, inline="always")
def chunk_range(b, nb, n):
    """Particles ``lo:hi`` of chunk ``b`` of ``nb``."""
    return b * n // nb, (b + 1) * n // nb


@njit(cache=True, inline="always")
def component_terms(xi, k, alpha, sigma2, xnorm, means, evecs_t, rank, logw, tab, proj, resid, kv):
    r"""First pass for component ``k``: :math:`p = U_r^\top v` into ``proj``, :math:`v_\perp` into ``resid``, and
    into column ``k`` of ``kv``: :math:`a_k - q_k/2` (``-inf`` for a zero weight or an overflowed :math:`q_k`),
    :math:`a_k`, :math:`q_k` and its rounding scale :math:`f_k`, :math:`E_k` and its rounding scale :math:`e_k`
    (module docstring)."""
    if logw[k] == -np.inf:
        kv[_ELL, k] = -np.inf
        return
    d = xi.shape[0]
    r = rank[k]
    invc, dd = tab[k, _INVC], tab[k, _D]
    mnorm = 0.0
    for l in range(d):
        am = alpha * means[k, l]
        resid[l] = xi[l] - am
        mnorm += am * am
    scale = xnorm + math.sqrt(mnorm)
    quad = 0.0
    fa = 0.0
    ek = 0.0
    eb = 0.0
    for j in range(r):
        pj = 0.0
        for l in range(d):
            pj += evecs_t[k, j, l] * resid[l]
        proj[j] = pj
        p2 = pj * pj
        quad += p2 * invc[j]
        fa += 2.0 * abs(pj) * scale * invc[j]
        ek += dd[j] * p2
        eb += dd[j] * (p2 + 2.0 * abs(pj) * scale)
    if r == d:
        for l in range(d):
            resid[l] = 0.0
    else:
        for j in range(r):
            pj = proj[j]
            for l in range(d):
                resid[l] -= pj * evecs_t[k, j, l]
        rr = 0.0
        for l in range(d):
            rr += resid[l] * resid[l]
        quad += rr / sigma2
        fa += 4.0 * math.sqrt(d * rr) * scale / sigma2
    a = logw[k] - 0.5 * kv[_LOGDET, k]
    kv[_A, k] = a
    kv[_Q, k] = quad
    kv[_FA, k] = quad + fa
    kv[_E, k] = ek
    kv[_EB, k] = eb
    kv[_ELL, k] = a - 0.5 * quad if quad < np.inf else -np.inf


@njit(cache=True, inline="always")
def first_pass(xi, alpha, sigma2, means, evecs_t, rank, logw, tab, proj, resid, kv):
    """:func:`component_terms` for every component; returns the reference ``r`` (the largest logit), ``-1`` when
    no component has mass at ``xi``."""
    d = xi.shape[0]
    xn = 0.0
    for l in range(d):
        xn += xi[l] * xi[l]
    xnorm = math.sqrt(xn)
    best = -1
    for k in range(means.shape[0]):
        component_terms(xi, k, alpha, sigma2, xnorm, means, evecs_t, rank, logw, tab, proj[k], resid[k], kv)
        if kv[_ELL, k] > -np.inf and (best < 0 or kv[_ELL, k] > kv[_ELL, best]):
            best = k
    return best


@njit(cache=True, inline="always")
def logit_gap(xi, k, r, alpha, sigma2, means, kv):
    r""":math:`\delta_k = \ell_k - \ell_r` in form B or form A, whichever has the smaller rounding bound (module
    docstring); ``-inf`` for a component without mass."""
    if kv[_ELL, k] == -np.inf:
        return -np.inf
    if k == r:
        return 0.0
    dot = 0.0
    mag = 0.0
    for l in range(xi.shape[0]):
        h = means[r, l] - means[k, l]
        g = 2.0 * xi[l] - alpha * (means[k, l] + means[r, l])
        dot += h * g
        mag += abs(h) * (2.0 * abs(xi[l]) + alpha * (abs(means[k, l]) + abs(means[r, l])))
    bound_b = (alpha * mag + kv[_EB, k] + kv[_EB, r]) / sigma2
    if bound_b <= kv[_FA, k] + kv[_FA, r]:
        return kv[_A, k] - kv[_A, r] - 0.5 * (alpha * dot - kv[_E, k] + kv[_E, r]) / sigma2
    return kv[_ELL, k] - kv[_ELL, r]


@njit(cache=True, inline="always")
def reference_logit(kv, r, d, sigma2):
    r"""The absolute logit :math:`\ell_r` of the reference (``-inf`` when there is none, ``r < 0``)."""
    if r < 0:
        return -np.inf
    return kv[_ELL, r] - 0.5 * d * (LOG_2PI + math.log(sigma2))


@njit(cache=True, inline="always")
def component_quantity(k, quantity, sigma2, means, evecs_t, rank, tab, proj, resid, out):
    """Write :math:`s_k` (``quantity == SCORE``) or :math:`m_k` (``DENOISER``) into ``out`` (``tab``:
    :func:`time_tables`)."""
    d = out.shape[0]
    r = rank[k]
    if quantity == 0:
        for l in range(d):
            out[l] = -resid[l] / sigma2
        for j in range(r):
            coef = proj[j] * tab[k, _INVC, j]
            for l in range(d):
                out[l] -= evecs_t[k, j, l] * coef
    else:
        for l in range(d):
            out[l] = means[k, l]
        for j in range(r):
            coef = tab[k, _COEFM, j] * proj[j]
            for l in range(d):
                out[l] += evecs_t[k, j, l] * coef


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def online_finish(m, z, acc):
    r"""End an online average: divide ``acc`` by ``z``; return the log of the total weight, :math:`m + \log z`
    (``-inf``, and ``acc`` left as it is, when nothing was pushed)."""
    if z > 0.0:
        for l in range(acc.shape[0]):
            acc[l] /= z
        return m + math.log(z)
    return -np.inf


@njit(cache=True, parallel=True)
def mixture_average(x, alpha, sigma2, means, evecs_t, evals, rank, logw, in_mask, quantity,
                    avg_in, avg_out, logz, ws):
    r"""Posterior averages of a component quantity, split by a component mask.

    For every particle ``i``: ``avg_in[i] = sum_{k in mask} pi_k q_k / sum_{k in mask} pi_k`` and the same over
    the complement in ``avg_out[i]``; ``logz[i, 0]`` and ``logz[i, 1]`` are
    :math:`\log\sum_{k\in\text{mask}} e^{\delta_k}` and the complement's (``-inf`` for an empty set),
    ``logz[i, 2]`` the reference logit :math:`\ell_r` (so :math:`\log\sum_{k\in\text{mask}} w_k N_k(x)` is
    ``logz[i, 2] + logz[i, 0]``).  ``ws`` is :func:`workspace`.
    """
    n, d = x.shape
    vec, kvs, projs, resids, tabs = ws
    nb = vec.shape[0]
    for b in prange(nb):
        comp, kv, proj, resid, tab = vec[b, 0], kvs[b], projs[b], resids[b], tabs[b]
        lo, hi = chunk_range(b, nb, n)
        for i in range(lo, hi):
            al, s2 = alpha[i], sigma2[i]  # this particle's time
            new_time(alpha, sigma2, i, lo, evals, rank, tab, kv)
            r = first_pass(x[i], al, s2, means, evecs_t, rank, logw, tab, proj, resid, kv)
            m_in = -np.inf
            m_out = -np.inf
            z_in = 0.0
            z_out = 0.0
            for l in range(d):
                avg_in[i, l] = 0.0
                avg_out[i, l] = 0.0
            for k in range(means.shape[0]):
                ell = logit_gap(x[i], k, r, al, s2, means, kv)
                if ell == -np.inf:
                    continue
                component_quantity(k, quantity, s2, means, evecs_t, rank, tab, proj[k], resid[k], comp)
                if in_mask[k]:
                    m_in, z_in = online_push(m_in, z_in, ell, comp, avg_in[i])
                else:
                    m_out, z_out = online_push(m_out, z_out, ell, comp, avg_out[i])
            logz[i, 0] = online_finish(m_in, z_in, avg_in[i])
            logz[i, 1] = online_finish(m_out, z_out, avg_out[i])
            logz[i, 2] = reference_logit(kv, r, d, s2)


@njit(cache=True, parallel=True)
def class_log_mass(x, alpha, sigma2, means, evecs_t, evals, rank, logw, labels, out, sums, ref, ws):
    r"""``out[i, c]`` :math:`= \log\sum_{k:\,y(k)=c} e^{\delta_k}` (``-inf`` if no component has weight) and
    ``ref[i]`` :math:`= \ell_r`, so that the class log mass :math:`\log\sum_{k:\,y(k)=c} w_k N(x_i;\alpha\mu_k, C_k)`
    is ``ref[i] + out[i, c]`` and the class log-posteriors need ``out`` only.

    Online log-sum-exp per class: ``out`` holds the running maximum, ``sums`` (``(N, C)``) the running sum;
    ``ws`` is :func:`workspace`.
    """
    n, d = x.shape
    C = out.shape[1]
    vec, kvs, projs, resids, tabs = ws
    nb = vec.shape[0]
    for b in prange(nb):
        kv, proj, resid, tab = kvs[b], projs[b], resids[b], tabs[b]
        lo, hi = chunk_range(b, nb, n)
        for i in range(lo, hi):
            al, s2 = alpha[i], sigma2[i]  # this particle's time
            new_time(alpha, sigma2, i, lo, evals, rank, tab, kv)
            r = first_pass(x[i], al, s2, means, evecs_t, rank, logw, tab, proj, resid, kv)
            for c in range(C):
                out[i, c] = -np.inf
                sums[i, c] = 0.0
            for k in range(means.shape[0]):
                ell = logit_gap(x[i], k, r, al, s2, means, kv)
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
            ref[i] = reference_logit(kv, r, d, s2)


@njit(cache=True, parallel=True)
def mixture_posterior_cov(x, alpha, sigma2, means, evecs_t, evals, rank, logw, in_mask, out, ws):
    r"""``out[i]`` :math:`= \mathrm{Cov}[X_0\mid X_t = x_i,\ k\in\text{mask}]`
    :math:`= \sum_k \pi_k (P_k + (m_k - \bar m)(m_k - \bar m)^\top)` (law of total covariance).

    Two passes over the components (after :func:`first_pass`): the first gives the normaliser and :math:`\bar m`
    (and keeps the :math:`\delta_k`), the second the sum.  ``ws`` is :func:`workspace`.  Particles whose mask has no
    weighted component get NaN (the caller rejects such masks before calling).
    """
    n, d = x.shape
    K = means.shape[0]
    vec, kvs, projs, resids, tabs = ws
    nb = vec.shape[0]
    for b in prange(nb):
        comp, mbar, kv, proj, resid, tab = vec[b, 0], vec[b, 1], kvs[b], projs[b], resids[b], tabs[b]
        lo, hi = chunk_range(b, nb, n)
        for i in range(lo, hi):
            al, s2 = alpha[i], sigma2[i]  # this particle's time
            new_time(alpha, sigma2, i, lo, evals, rank, tab, kv)
            r = first_pass(x[i], al, s2, means, evecs_t, rank, logw, tab, proj, resid, kv)
            m_run = -np.inf
            z = 0.0
            for l in range(d):
                mbar[l] = 0.0
            for k in range(K):
                ell = logit_gap(x[i], k, r, al, s2, means, kv) if in_mask[k] else -np.inf
                kv[_DELTA, k] = ell
                if ell == -np.inf:
                    continue
                component_quantity(k, 1, s2, means, evecs_t, rank, tab, proj[k], resid[k], comp)
                m_run, z = online_push(m_run, z, ell, comp, mbar)
            for a in range(d):
                for c in range(d):
                    out[i, a, c] = 0.0
            if z == 0.0:
                for a in range(d):
                    for c in range(d):
                        out[i, a, c] = np.nan
                continue
            logz = online_finish(m_run, z, mbar)
            for k in range(K):
                ell = kv[_DELTA, k]
                if ell == -np.inf:
                    continue
                pik = math.exp(ell - logz)
                if pik == 0.0:
                    continue
                component_quantity(k, 1, s2, means, evecs_t, rank, tab, proj[k], resid[k], comp)
                for l in range(d):
                    comp[l] -= mbar[l]
                for a in range(d):
                    for c in range(d):
                        out[i, a, c] += pik * comp[a] * comp[c]
                for j in range(rank[k]):
                    lam = evals[k, j]
                    pj = pik * lam * s2 / (al * al * lam + s2)
                    for a in range(d):
                        ua = evecs_t[k, j, a] * pj
                        for c in range(d):
                            out[i, a, c] += ua * evecs_t[k, j, c]

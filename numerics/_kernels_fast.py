r"""Fast guided mixture steps: squared distances in GEMM form, Numba log-sum-exp, sparse recombination.

Model, notation and time convention as in :mod:`numerics.reference_numpy` ("spiked" eigen-factors
:math:`S_k = \lambda_{0k} I + U_k\mathrm{diag}(\delta_k)U_k^\top`, OU time, :math:`c_0 = \alpha^2\lambda_0+\sigma^2`,
:math:`c_j = c_0 + \alpha^2\delta_j`).  With :math:`B = [\mu_1 \dots \mu_K \mid u_1 \dots u_R]` (``d x (K+R)``,
all spike vectors of all components), one BLAS product :math:`XB` gives every :math:`x\cdot\mu_k` and
:math:`x\cdot u_j`, and

.. math::
    \|v_k\|^2 = \|x\|^2 - 2\alpha\, x\cdot\mu_k + \alpha^2\|\mu_k\|^2, \qquad p_j = x\cdot u_j - \alpha\,u_j\cdot\mu_k .

The guided denoiser (or score) is then :math:`a\,x + G B^\top` with per-particle coefficients
:math:`G` (``K+R`` per particle) built by the Numba kernel :func:`guided_coeffs`.

Cancellation and the fallback (``proofs`` in the docstring of :func:`logit_error_bounds`)
---------------------------------------------------------------------------------------
Let :math:`S = \|x\| + \alpha\|\mu_k\|` and :math:`\gamma_n = nu/(1-nu)`.  The GEMM form has
:math:`|\widehat{\|v\|^2} - \|v\|^2| \le \gamma_{d+4} S^2` (every summand of the three terms is bounded by
:math:`S^2` in absolute value, whatever the summation order of BLAS), so its logit error is about
:math:`\gamma_{d+4} S^2/(2c_0)`.  The direct form (:math:`v = x - \alpha\mu` rounded first) has
:math:`\gamma_{d+4}(\|v\|^2 + 2\|v\|S)/(2c_0)`.  The two agree when :math:`\|v\| \gtrsim S` and the GEMM form
loses :math:`S/\|v\|` digits when :math:`x \approx \alpha\mu_k` -- exactly for the *nearest*, heaviest components
at small ``t``.  Per (particle, component), the kernel keeps the GEMM value only if

.. math::  S^2 \le \rho\,\max\big(\|v\|^2 + 2\|v\|S,\; c_0\big), \qquad \rho = 2^6 = 64,

i.e. only if its error bound is at most :math:`\rho` times the direct form's own bound (or, when that is
below the rounding floor :math:`\gamma_{d+4}/2` of a logit of size one, :math:`\rho` times that floor);
otherwise it recomputes that entry in the direct form (``O(d r')`` work).  So the fast path's logits are never
more than 6 bits worse than the direct kernel's, and since a logit error :math:`\epsilon` perturbs the
posterior weights relatively by at most :math:`2\epsilon`, the same holds for the weights.  Typical sampling
states (``t`` not tiny) have :math:`S^2/\|v\|^2 = O(1)` and never fall back.

Truncation of negligible weights
--------------------------------
Within each class group, components with :math:`\pi_k/\pi_{\max} < 2^{-64}` (logit more than
:data:`LOG_DROP` below the group's maximum) get weight exactly 0 (no ``exp`` evaluated, no term in the
recombination).  Their total relative weight is below :math:`K\,2^{-64}`, so for :math:`K \le 2^{10}` the
result changes by less than :math:`2^{-54}\max_k\|m_k\|`, i.e. below one rounding of the largest term.
The recombination :math:`G B^\top` is done by BLAS when many weights survive, and otherwise sparsely in
Numba (only the surviving components), see :data:`DENSE_FRACTION`.

All kernels: ``njit(cache=True)``, no fastmath, all arrays allocated by the caller outside ``prange``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from numerics._validate import check_points, check_time
from numerics.reference_numpy import LOG_2PI, spiked_factors
from numerics.schedule import alpha_sigma2

__all__ = ["FastMixture", "guided_ddim_step", "guided_ddpm_step", "logit_error_bounds",
           "GEMM_RATIO", "LOG_DROP", "DENSE_FRACTION"]

#: :math:`\rho`: the GEMM form is kept while its error bound is at most this multiple of the direct form's.
GEMM_RATIO = 64.0
#: Components whose weight is below ``2**-64`` of their group's largest are dropped (exactly 0).
LOG_DROP = -64.0 * math.log(2.0)
#: Up to this dimension the products x.mu_k, x.u_j are formed inside the Numba kernel instead of by BLAS.
INLINE_DIM = 32
#: Recombine with BLAS when the mean number of surviving components per particle exceeds this fraction of K.
DENSE_FRACTION = 0.25

FORM_AUTO, FORM_GEMM, FORM_DIRECT = 0, 1, 2


@njit(cache=True)
def _quad(x, i, k, x2, xn, XB, mu, mu2, mun, spikeT, muU, spk_start, c0k, omega, alpha, ratio, form, P):
    r"""Quadratic form :math:`v^\top C_k^{-1} v` of particle ``i``, component ``k``; leaves :math:`p_j` in ``P[i, K+j]``.

    Returns ``(quad, used_direct)``.
    """
    K = mu.shape[0]
    d = x.shape[1]
    S = xn + alpha * mun[k]
    v2 = x2 - 2.0 * alpha * XB[i, k] + alpha * alpha * mu2[k]
    if v2 < 0.0:
        v2 = 0.0
    direct = form == 2
    if form == 0:
        direct = S * S > ratio * max(v2 + 2.0 * math.sqrt(v2) * S, c0k)
    if direct:
        v2 = 0.0
        for l in range(d):
            vl = x[i, l] - alpha * mu[k, l]
            v2 += vl * vl
        for j in range(spk_start[k], spk_start[k + 1]):
            pj = 0.0
            for l in range(d):
                pj += spikeT[j, l] * (x[i, l] - alpha * mu[k, l])
            P[i, K + j] = pj
    else:
        for j in range(spk_start[k], spk_start[k + 1]):
            P[i, K + j] = XB[i, K + j] - alpha * muU[j]
    quad = v2 / c0k
    for j in range(spk_start[k], spk_start[k + 1]):
        pj = P[i, K + j]
        quad -= pj * pj * omega[j]
    if quad < 0.0:
        quad = 0.0
    return quad, direct


@njit(cache=True)
def _norm2(x, i):
    s = 0.0
    for l in range(x.shape[1]):
        s += x[i, l] * x[i, l]
    return s


@njit(cache=True, parallel=True)
def logits(x, XB, mu, mu2, mun, spikeT, muU, spk_start, const, c0, omega, alpha, ratio, form, L, used, P):
    """``L[i, k]`` = log w_k + log N(x_i; alpha mu_k, C_k) in the requested form; ``used[i, k]`` = direct form used."""
    n = x.shape[0]
    K = mu.shape[0]
    for i in prange(n):
        x2 = _norm2(x, i)
        xn = math.sqrt(x2)
        for k in range(K):
            q, dr = _quad(x, i, k, x2, xn, XB, mu, mu2, mun, spikeT, muU, spk_start, c0[k], omega, alpha,
                          ratio, form, P)
            L[i, k] = const[k] - 0.5 * q
            used[i, k] = dr


@njit(cache=True, parallel=True)
def guided_coeffs(x, XB, mu, mu2, mun, spikeT, muU, spk_start, const, c0, omega, coef_mu, coef_x, coef_spk,
                  in_mask, alpha, w, ratio, log_drop, G, a, info, B, inline_dots):
    r"""Coefficients of the guided quantity :math:`Q_w = a\,x + G B^\top` for every particle.

    :math:`Q_w = Q_\text{in} + (w-1)\,p(\neg y\mid x)(Q_\text{in} - Q_\text{out})`, so component ``k`` gets weight
    :math:`\beta_k = (1 + (w-1)p_\neg)\pi^\text{in}_k` (in the mask) or :math:`-(w-1)p_\neg\pi^\text{out}_k`; the
    component quantity is ``coef_x[k] x + coef_mu[k] mu_k + sum_j coef_spk[j] p_j u_j``.
    ``G`` (``(n, K+R)``) is also the scratch for logits and projections.  ``info[i]`` =
    ``(direct-form entries, surviving components, 1 if the mask has no mass at x_i)``.
    With ``inline_dots`` the products ``XB[i] = x_i B`` are formed here (small ``d``, where a BLAS call on a
    tall, narrow matrix costs more than it saves); the loop runs over the columns innermost (vectorisable).
    """
    n = x.shape[0]
    K = mu.shape[0]
    C = B.shape[1]
    for i in prange(n):
        if inline_dots:
            for c in range(C):
                XB[i, c] = 0.0
            for l in range(x.shape[1]):
                xl = x[i, l]
                for c in range(C):
                    XB[i, c] += xl * B[l, c]
        x2 = _norm2(x, i)
        xn = math.sqrt(x2)
        m_in = -np.inf
        m_out = -np.inf
        nfb = 0
        for k in range(K):
            if const[k] == -np.inf:
                G[i, k] = -np.inf
                for j in range(spk_start[k], spk_start[k + 1]):
                    G[i, K + j] = 0.0
                continue
            q, dr = _quad(x, i, k, x2, xn, XB, mu, mu2, mun, spikeT, muU, spk_start, c0[k], omega, alpha,
                          ratio, 0, G)
            if dr:
                nfb += 1
            ell = const[k] - 0.5 * q
            G[i, k] = ell
            if in_mask[k]:
                if ell > m_in:
                    m_in = ell
            elif ell > m_out:
                m_out = ell
        z_in = 0.0
        z_out = 0.0
        nterm = 0
        for k in range(K):
            ell = G[i, k]
            m = m_in if in_mask[k] else m_out
            e = 0.0
            if ell != -np.inf and ell - m >= log_drop:
                e = math.exp(ell - m)
                nterm += 1
            G[i, k] = e
            if in_mask[k]:
                z_in += e
            else:
                z_out += e
        info[i, 0] = nfb
        info[i, 1] = nterm
        info[i, 2] = 0
        if z_in == 0.0:
            info[i, 2] = 1
            a[i] = 0.0
            for c in range(G.shape[1]):
                G[i, c] = 0.0
            continue
        p_not = 0.0
        if z_out > 0.0:
            p_not = 1.0 / (1.0 + math.exp((m_in + math.log(z_in)) - (m_out + math.log(z_out))))
        g_in = (1.0 + (w - 1.0) * p_not) / z_in
        g_out = 0.0
        if z_out > 0.0:
            g_out = -(w - 1.0) * p_not / z_out
        ai = 0.0
        for k in range(K):
            beta = G[i, k] * (g_in if in_mask[k] else g_out)
            ai += beta * coef_x[k]
            G[i, k] = beta * coef_mu[k]
            for j in range(spk_start[k], spk_start[k + 1]):
                G[i, K + j] = beta * coef_spk[j] * G[i, K + j] if beta != 0.0 else 0.0
        a[i] = ai


@njit(cache=True, parallel=True)
def combine_sparse(x, G, a, BT, cx, cq, cz, z, use_z, out):
    r"""``out = cx x + cq (a x + G B^T) [+ cz z]``, summing only the nonzero entries of ``G``."""
    n, d = x.shape
    C = G.shape[1]
    for i in prange(n):
        ai = a[i]
        for l in range(d):
            out[i, l] = ai * x[i, l]
        for c in range(C):
            g = G[i, c]
            if g != 0.0:
                for l in range(d):
                    out[i, l] += g * BT[c, l]
        for l in range(d):
            v = cx * x[i, l] + cq * out[i, l]
            if use_z:
                v += cz * z[i, l]
            out[i, l] = v


@njit(cache=True, parallel=True)
def combine_dense(x, Y, a, cx, cq, cz, z, use_z, out):
    r"""``out = cx x + cq (a x + Y) [+ cz z]`` with ``Y = G B^T`` from BLAS (``out`` may be ``Y``)."""
    n, d = x.shape
    for i in prange(n):
        ai = a[i]
        for l in range(d):
            v = cx * x[i, l] + cq * (ai * x[i, l] + Y[i, l])
            if use_z:
                v += cz * z[i, l]
            out[i, l] = v


class FastMixture:
    """Fast guided evaluation of a :class:`~numerics.mixture.GaussianMixture` (GEMM form with fallback).

    Results agree with ``gm.score`` / ``gm.denoiser`` / ``gm.guidance_vector`` to the bounds stated in
    ``tests/test_bench.py``.  Work arrays are cached per particle count (reused across steps).
    """

    def __init__(self, gm, ratio: float = GEMM_RATIO):
        self.gm = gm
        self.d, self.K = gm.d, gm.K
        self.labels = gm.labels
        self.log_weights = np.ascontiguousarray(gm.log_weights)
        self.ratio = float(ratio)
        lam0, U, delta = spiked_factors(gm.evecs, gm.evals, gm.rank)
        self.lam0 = lam0
        cols, owner, dl, start = [], [], [], [0]
        for k in range(self.K):
            sel = delta[k] > 0.0
            cols.append(U[k][:, sel].T)
            dl.append(delta[k][sel])
            owner += [k] * int(sel.sum())
            start.append(start[-1] + int(sel.sum()))
        self.spikeT = np.ascontiguousarray(np.concatenate(cols, axis=0)) if cols else np.zeros((0, self.d))
        self.delta = np.concatenate(dl) if dl else np.zeros(0)
        self.owner = np.asarray(owner, dtype=np.int64)
        self.spk_start = np.asarray(start, dtype=np.int64)
        self.R = self.spikeT.shape[0]
        self.mu = np.ascontiguousarray(gm.means)
        self.mu2 = np.einsum("kd,kd->k", self.mu, self.mu)
        self.mun = np.sqrt(self.mu2)
        self.muU = np.einsum("jd,jd->j", self.spikeT, self.mu[self.owner]) if self.R else np.zeros(0)
        self.BT = np.ascontiguousarray(np.concatenate([self.mu, self.spikeT], axis=0))  # (K+R, d)
        self.B = np.ascontiguousarray(self.BT.T)  # (d, K+R)
        self._work: dict[int, tuple] = {}
        self.last_info: np.ndarray | None = None

    # ------------------------------------------------------------------ pieces
    def _consts(self, alpha, sigma2, quantity):
        a2 = alpha * alpha
        c0 = a2 * self.lam0 + sigma2
        c0o = c0[self.owner]
        cj = c0o + a2 * self.delta
        l1p = np.log1p(a2 * self.delta / c0o)
        logdet = self.d * np.log(c0) + np.bincount(self.owner, weights=l1p, minlength=self.K)
        const = self.log_weights - 0.5 * (self.d * LOG_2PI + logdet)
        omega = a2 * self.delta / (c0o * cj)
        if quantity == "score":
            coef_mu, coef_x, coef_spk = alpha / c0, -1.0 / c0, omega
        else:
            coef_mu, coef_x = sigma2 / c0, alpha * self.lam0 / c0
            coef_spk = alpha * sigma2 * self.delta / (c0o * cj)
        return c0, const, omega, coef_mu, coef_x, coef_spk

    def workspace(self, n: int):
        """``(XB, G, a, info, Y)`` for ``n`` particles (allocated once per ``n``)."""
        ws = self._work.get(n)
        if ws is None:
            C = self.K + self.R
            ws = (np.empty((n, C)), np.empty((n, C)), np.empty(n), np.empty((n, 3), dtype=np.int64),
                  np.empty((n, self.d)))
            self._work = {n: ws}
        return ws

    def _run(self, x, t, quantity, y, w, cx, cq, cz, z, out):
        X, single = check_points(x, self.d)
        X = np.ascontiguousarray(X)
        alpha, sigma2 = alpha_sigma2(check_time(t))
        if y is None:
            mask, w = np.ones(self.K, dtype=np.bool_), 1.0
        else:
            mask = self.labels == int(y)
        c0, const, omega, coef_mu, coef_x, coef_spk = self._consts(alpha, sigma2, quantity)
        n = X.shape[0]
        XB, G, a, info, Y = self.workspace(n)
        inline = self.d <= INLINE_DIM
        if not inline:
            np.matmul(X, self.B, out=XB)
        guided_coeffs(X, XB, self.mu, self.mu2, self.mun, self.spikeT, self.muU, self.spk_start, const, c0,
                      omega, coef_mu, coef_x, coef_spk, mask, alpha, float(w), self.ratio, LOG_DROP, G, a, info,
                      self.B, inline)
        self.last_info = info
        if info[:, 2].any():
            raise ValueError("x: a point is so far from every component that its density underflows to 0")
        if out is None:
            out = np.empty((n, self.d))
        use_z = z is not None
        zz = np.ascontiguousarray(z) if use_z else X
        if use_z and zz.shape != X.shape:
            raise ValueError(f"z: expected shape {X.shape}, got {zz.shape}")
        if info[:, 1].sum() > DENSE_FRACTION * self.K * n:
            np.matmul(G, self.BT, out=Y)
            combine_dense(X, Y, a, cx, cq, cz, zz, use_z, out)
        else:
            combine_sparse(X, G, a, self.BT, cx, cq, cz, zz, use_z, out)
        return out[0] if single else out

    # ------------------------------------------------------------------ public
    def score(self, x, t) -> np.ndarray:
        r""":math:`\nabla_x\log p_t(x)`; OU time ``t``."""
        return self._run(x, t, "score", None, 1.0, 0.0, 1.0, 0.0, None, None)

    def denoiser(self, x, t) -> np.ndarray:
        r""":math:`E[X_0\mid X_t = x]`; OU time ``t``."""
        return self._run(x, t, "denoiser", None, 1.0, 0.0, 1.0, 0.0, None, None)

    def guided_score(self, x, t, y: int, w: float) -> np.ndarray:
        r""":math:`\nabla\log p_t(x) + w\,\nabla\log p_t(y\mid x)`."""
        return self._run(x, t, "score", y, w, 0.0, 1.0, 0.0, None, None)

    def guided_denoiser(self, x, t, y: int, w: float) -> np.ndarray:
        r""":math:`D(x) + w(\sigma_t^2/\alpha_t)\nabla\log p_t(y\mid x)`."""
        return self._run(x, t, "denoiser", y, w, 0.0, 1.0, 0.0, None, None)

    def logits(self, x, t, form: str = "auto"):
        """``(L, used_direct)``: :math:`\\log w_k + \\log N(x;\\alpha\\mu_k, C_k)` per (particle, component)."""
        X, _ = check_points(x, self.d)
        X = np.ascontiguousarray(X)
        alpha, sigma2 = alpha_sigma2(check_time(t))
        c0, const, omega, *_ = self._consts(alpha, sigma2, "score")
        n = X.shape[0]
        XB = X @ self.B
        L = np.empty((n, self.K))
        used = np.empty((n, self.K), dtype=np.bool_)
        P = np.empty((n, self.K + self.R))
        code = {"auto": FORM_AUTO, "gemm": FORM_GEMM, "direct": FORM_DIRECT}[form]
        logits(X, XB, self.mu, self.mu2, self.mun, self.spikeT, self.muU, self.spk_start, const, c0, omega,
               alpha, self.ratio, code, L, used, P)
        return L, used


def guided_ddim_step(fm: FastMixture, x, t: float, s: float, y: int, w: float, out=None) -> np.ndarray:
    r"""One guided DDIM step :math:`x_s = c_x x_t + c_q D_w(x_t)` from OU time ``t`` to ``s < t``."""
    from numerics._generated.integrator_coeffs import ddim_coeffs

    if not 0.0 < s < t:
        raise ValueError(f"s: need 0 < s < t, got s={s!r}, t={t!r}")
    cx, cq = ddim_coeffs(float(t), float(s))
    return fm._run(x, t, "denoiser", y, w, cx, cq, 0.0, None, out)


def guided_ddpm_step(fm: FastMixture, x, t: float, s: float, y: int, w: float, z, out=None) -> np.ndarray:
    r"""One guided DDPM step :math:`x_s = c_x x_t + c_q D_w(x_t) + c_z z` (``z`` standard normal, ``(N, d)``)."""
    from numerics._generated.integrator_coeffs import ddpm_coeffs

    if not 0.0 < s < t:
        raise ValueError(f"s: need 0 < s < t, got s={s!r}, t={t!r}")
    cx, cq, cz = ddpm_coeffs(float(t), float(s))
    return fm._run(x, t, "denoiser", y, w, cx, cq, cz, z, out)


def logit_error_bounds(fm: FastMixture, x, t):
    r"""Per (particle, component) first-order bounds ``(E_gemm, E_direct)`` on the logit error.

    With :math:`S = \|x\| + \alpha\|\mu_k\|`, :math:`\gamma = \gamma_{d+4}`, :math:`e = \gamma S` (error of each
    GEMM-form projection :math:`p_j`, :math:`\|u_j\| = 1`) and :math:`\omega_j = \alpha^2\delta_j/(c_0 c_j) < 1/c_0`:

    .. math::
        E_\text{gemm} &= \tfrac12\Big(\gamma S^2/c_0 + \sum_j \omega_j (2|p_j| e + e^2)\Big) + \gamma\,(|\ell| + 1) \\
        E_\text{direct} &= \tfrac12\Big(\gamma(\|v\|^2 + 2\|v\| S)/c_0 + \sum_j \omega_j(2|p_j| e_v + e_v^2)\Big)
                         + \gamma\,(|\ell| + 1),\quad e_v = \gamma(\|v\| + S)

    The last term covers the rounding of the final sum and of the constants (shared by both forms).
    """
    X, _ = check_points(x, fm.d)
    alpha, sigma2 = alpha_sigma2(check_time(t))
    u = np.finfo(np.float64).eps / 2
    n = fm.d + 4
    gam = n * u / (1 - n * u)
    c0, const, omega, *_ = fm._consts(alpha, sigma2, "score")
    S = np.linalg.norm(X, axis=1)[:, None] + alpha * fm.mun[None, :]
    v = X[:, None, :] - alpha * fm.mu[None, :, :]
    vn = np.linalg.norm(v, axis=2)
    L_abs = np.abs(fm.logits(X, t, "direct")[0])
    e = gam * S
    ev = gam * (vn + S)
    spk_g = np.zeros_like(S)
    spk_d = np.zeros_like(S)
    for j in range(fm.R):
        k = fm.owner[j]
        pj = np.abs(v[:, k, :] @ fm.spikeT[j])
        spk_g[:, k] += omega[j] * (2 * pj * e[:, k] + e[:, k] ** 2)
        spk_d[:, k] += omega[j] * (2 * pj * ev[:, k] + ev[:, k] ** 2)
    floor = gam * (L_abs + 1.0)
    E_gemm = 0.5 * (gam * S**2 / c0 + spk_g) + floor
    E_direct = 0.5 * (gam * (vn**2 + 2 * vn * S) / c0 + spk_d) + floor
    return E_gemm, E_direct

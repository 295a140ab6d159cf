r"""High-precision (mpmath) reference for :class:`~numerics.mixture.GaussianMixture`, and the error bound.

The reference evaluates the same mixture, taking the float64 inputs (``x``, ``t``, the means, the
stored eigen-factors ``U_r, lambda`` and weights) as exact real numbers, at ``dps`` digits.  The model's
covariance is :math:`S_k = U_r\,\mathrm{diag}(\lambda)\,U_r^\top` exactly; the reference forms
:math:`C_k = \alpha^2 S_k + \sigma^2 I` and solves :math:`C_k^{-1}v` by LU in mpmath, with ``det`` for the
normaliser; :math:`S_k`, the LU factors and :math:`\log\det C_k` do not depend on the point and are computed once
per component, time and precision (memoised on those exact inputs; the same values as ``mp.lu_solve`` and
``mp.det`` at every call, bit for bit).  It never assumes the float64 ``U`` to be orthogonal (it is so only to
~1e-16, which at large ``t`` would swamp a guidance vector of size ~alpha_t), so it is a second, independent route.

:func:`score_error_bound` is Theorem 8.1 of ``proofs_notes/foundations.md#numerical-evaluation``: the
first-order forward error of the float64 score, a property of the problem given float64 inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import mpmath as mp
import numpy as np

from numerics.constants import UNIT_ROUNDOFF
from numerics.mixture import GaussianMixture

__all__ = ["MPResult", "mp_reference", "mixture_error_bound", "score_error_bound", "guidance_error_bound",
           "relative_error", "within_bound", "UNDERFLOW", "UNIT_ROUNDOFF"]


@dataclass
class MPResult:
    """mpmath values at one point: mixture and per-component quantities (lists of ``mpf``)."""

    score: list
    denoiser: list
    log_density: object
    class_log_posterior: list
    guidance: list  # guidance[y] is a d-list
    class_denoisers: list  # class_denoisers[y] = (D_y, D_not_y, p_not_y)
    # per component, for the error bound
    pi: list
    q: list
    s_comp: list
    m_comp: list
    kappa: list
    rho: list
    log_e_max: object


def _vec(a) -> list:
    return [mp.mpf(float(v)) for v in a]


#: Per-component factors that do not depend on the point, keyed by the exact inputs they are computed from
#: (component ``k``'s stored eigen-factors, ``t`` and the digits): computed once per process.
_FACTOR_CACHE: dict = {}


def _component_factors(gm: GaussianMixture, k: int, t: float, dps: int) -> tuple:
    r"""Component ``k``'s :math:`S_k = U_r\,\mathrm{diag}(\lambda)\,U_r^\top` (formed exactly from the stored
    float64 factors), the LU factors of :math:`C_k = \alpha_t^2S_k + \sigma_t^2I` as ``mp.lu_solve`` computes
    them (10 guard bits), :math:`\log\det C_k` (``mp.det``) and :math:`C_k`'s eigenvalues
    :math:`\alpha_t^2\lambda_j + \sigma_t^2, \sigma_t^2`, at ``dps`` digits.  None depends on the point, so they
    are memoised on the exact inputs (``_FACTOR_CACHE``); the values are those of the unmemoised steps bit for bit."""
    key = (gm.d, gm.evecs[k].tobytes(), gm.evals[k].tobytes(), int(gm.rank[k]), t, dps)
    if key not in _FACTOR_CACHE:
        if len(_FACTOR_CACHE) > 4096:
            _FACTOR_CACHE.clear()
        d, r = gm.d, int(gm.rank[k])
        with mp.workdps(dps):
            tt = mp.mpf(t)
            alpha, sigma2 = mp.exp(-tt), -mp.expm1(-2 * tt)
            Ur = mp.matrix([[mp.mpf(float(gm.evecs[k, l, j])) for j in range(r)] for l in range(d)]) if r else None
            lam = _vec(gm.evals[k][:r])
            # the model's covariance, exactly: S = U_r diag(lambda) U_r^T with the stored float64 factors
            S = Ur * mp.diag(lam) * Ur.T if r else mp.zeros(d, d)
            C = alpha**2 * S + sigma2 * mp.eye(d)
            with mp.workprec(mp.mp.prec + 10):  # mp.lu_solve's guard bits
                LU = mp.mp.LU_decomp(C.copy())
            logdet = mp.log(mp.det(C))
            c = [alpha**2 * lj + sigma2 for lj in lam] + [sigma2]
        _FACTOR_CACHE[key] = (S, LU, logdet, c)
    return _FACTOR_CACHE[key]


def _lu_solve_factored(LU: tuple, v) -> object:
    """``mp.lu_solve(C, v)`` from ``C``'s cached LU factors ``LU = (A, p)``: the same substitutions at the same
    precision (10 guard bits), so the same result bit for bit; ``LU`` is not modified."""
    with mp.workprec(mp.mp.prec + 10):
        A, p = LU
        return mp.mp.U_solve(A, mp.mp.L_solve(A, v.copy(), p))


def mp_reference(gm: GaussianMixture, x, t: float, dps: int = 50) -> MPResult:
    """Evaluate score, denoiser, log-density, class posteriors and guidance vectors at one point ``x`` (``(d,)``)."""
    with mp.workdps(dps):
        d, K = gm.d, gm.K
        xv = _vec(x)
        tt = mp.mpf(float(t))
        alpha = mp.exp(-tt)
        sigma2 = -mp.expm1(-2 * tt)
        ells, s_comp, m_comp, q_all, kap, rho, loge = [], [], [], [], [], [], []
        for k in range(K):
            mu = _vec(gm.means[k])
            S, LU, logdet, c = _component_factors(gm, k, float(t), dps)
            v = mp.matrix([xv[l] - alpha * mu[l] for l in range(d)])
            Cinv_v = _lu_solve_factored(LU, v)
            q = mp.fsum(v[l] * Cinv_v[l] for l in range(d))
            w = mp.mpf(float(gm.weights[k]))
            ell = (mp.log(w) if w > 0 else mp.ninf) - (d * mp.log(2 * mp.pi) + logdet + q) / 2
            s_k = [-Cinv_v[l] for l in range(d)]
            SCv = S * Cinv_v
            m_k = [mu[l] + alpha * SCv[l] for l in range(d)]
            ells.append(ell), s_comp.append(s_k), m_comp.append(m_k), q_all.append(q)
            kap.append(max(c) / min(c))
            nv = mp.sqrt(mp.fsum(vi**2 for vi in v))
            nam = mp.sqrt(mp.fsum((alpha * m) ** 2 for m in mu))
            rho.append(nam / nv if nv > 0 else mp.inf)
            loge.append(max(abs(mp.log(cj)) for cj in c))
        M = max(ells)
        ex = [mp.exp(e - M) if e != mp.ninf else mp.mpf(0) for e in ells]
        Z = mp.fsum(ex)
        pi = [e / Z for e in ex]
        score = [mp.fsum(pi[k] * s_comp[k][l] for k in range(K)) for l in range(d)]
        den = [mp.fsum(pi[k] * m_comp[k][l] for k in range(K)) for l in range(d)]
        logp = M + mp.log(Z)
        C = gm.n_classes
        cls_mass = [mp.fsum(ex[k] for k in range(K) if gm.labels[k] == c) for c in range(C)]
        cls_logpost = [mp.log(m / Z) if m > 0 else mp.ninf for m in cls_mass]
        guidance, class_den = [], []
        for c in range(C):
            members = [k for k in range(K) if gm.labels[k] == c]
            others = [k for k in range(K) if gm.labels[k] != c]
            z_out = mp.fsum(ex[k] for k in others)  # never Z - mass: that cancels when p(y|x) ~ 1
            p_not = z_out / Z
            s_y = [mp.fsum(ex[k] * s_comp[k][l] for k in members) / cls_mass[c] for l in range(d)]
            s_o = [mp.fsum(ex[k] * s_comp[k][l] for k in others) / z_out if z_out > 0 else mp.mpf(0) for l in range(d)]
            # g_y = p(not y|x) (s_y - s_not_y) (Bayes; proved symbolically in tests/test_theory_targets.py)
            guidance.append([p_not * (s_y[l] - s_o[l]) for l in range(d)])
            d_in = [mp.fsum(ex[k] * m_comp[k][l] for k in members) / cls_mass[c] for l in range(d)]
            d_out = [mp.fsum(ex[k] * m_comp[k][l] for k in others) / z_out if z_out > 0 else mp.mpf(0) for l in range(d)]
            class_den.append((d_in, d_out, p_not))
        return MPResult(score, den, logp, cls_logpost, guidance, class_den, pi, q_all, s_comp, m_comp, kap, rho, max(loge))


def relative_error(computed, ref) -> float:
    r""":math:`\|\hat v - v\|_2/\|v\|_2` evaluated in mpmath (``inf`` if ``v = 0`` and ``\hat v \ne 0``)."""
    with mp.workdps(50):
        diff = mp.sqrt(mp.fsum((mp.mpf(float(a)) - b) ** 2 for a, b in zip(np.atleast_1d(computed), ref)))
        nref = mp.sqrt(mp.fsum(b**2 for b in ref))
        if nref == 0:
            return 0.0 if diff == 0 else float("inf")
        return float(diff / nref)


def _norm(v) -> mp.mpf:
    return mp.sqrt(mp.fsum(vi**2 for vi in v))


def _constants(gm: GaussianMixture, ref: MPResult):
    logw = [abs(mp.log(mp.mpf(float(w)))) for w in gm.weights if w > 0]
    a = 1 + ref.log_e_max + max(logw) / gm.d
    c = 4 * (mp.mpf(gm.d) ** 1.5 + gm.K + 4)
    return a, c


def _component_errors(ref: MPResult, c, u):
    r"""``(k, \varepsilon_k + c u)`` for every component with posterior weight, :math:`\varepsilon_k = u(1 + 2\rho_k)`
    (``rho`` capped at 1e30): the per-component relative error of Theorem 8.1 before the condition factors."""
    for k in range(len(ref.pi)):
        if ref.pi[k] != 0:
            yield k, u * (1 + 2 * min(ref.rho[k], mp.mpf(1e30))) + c * u


def mixture_error_bound(gm: GaussianMixture, ref: MPResult, quantity: str = "score") -> float:
    r"""Relative first-order error bound of the float64 score (or denoiser), Theorem 8.1.

    .. math::
        \|\delta s\| \le \sum_k \pi_k\,(\varepsilon_k + c\,u)(1+\kappa_k)\big[\|s_k\| + (q_k + d\,a)\|s_k - \bar s\|\big],

    with :math:`\varepsilon_k = u(1 + 2\rho_k)`, :math:`a = 1 + \max|\log c_{k,j}| + \max_k|\log w_k|/d` and
    :math:`c = 4(d^{3/2} + K + 4)`: the proof's constants :math:`c_1, c_2, c_3` are each at most
    :math:`d^{3/2} + d + 4` (dot products of length ``d`` turned into norms, the ``log``/division/sum
    roundings) and the final weighted sum adds :math:`\gamma_{K+1}`; the factor 4 covers their sum.
    For the denoiser the same steps apply with :math:`m_k` in place of :math:`s_k`.
    """
    comp = ref.s_comp if quantity == "score" else ref.m_comp
    mean = ref.score if quantity == "score" else ref.denoiser
    u = mp.mpf(UNIT_ROUNDOFF)
    with mp.workdps(50):
        a, c = _constants(gm, ref)
        total = mp.mpf(0)
        for k, err in _component_errors(ref, c, u):
            diff = _norm([comp[k][l] - mean[l] for l in range(gm.d)])
            total += ref.pi[k] * err * (1 + ref.kappa[k]) * (_norm(comp[k]) + (ref.q[k] + gm.d * a) * diff)
        nm = _norm(mean)
        return float(total / nm) if nm > 0 else float("inf")


#: Below this norm a float64 result may underflow (subnormals have no relative accuracy).
UNDERFLOW = 1e-290


def within_bound(computed, ref, rel_bound: float) -> bool:
    r"""``True`` when :math:`\|\hat v - v\| \le` ``rel_bound`` :math:`\|v\|`, or when both norms lie below
    :data:`UNDERFLOW` (the exact value is not representable with relative accuracy in float64)."""
    if relative_error(computed, ref) <= rel_bound:
        return True
    with mp.workdps(50):
        nref = mp.sqrt(mp.fsum(b**2 for b in ref))
    return float(nref) < UNDERFLOW and float(np.linalg.norm(np.atleast_1d(computed))) < UNDERFLOW


def score_error_bound(gm: GaussianMixture, ref: MPResult) -> float:
    """Theorem 8.1 for the score (see :func:`mixture_error_bound`)."""
    return mixture_error_bound(gm, ref, "score")


def guidance_error_bound(gm: GaussianMixture, ref: MPResult, y: int) -> float:
    r"""Relative error bound of :math:`g_y = p(\neg y\mid x)\,\alpha\sigma^{-2}(D_y - D_{\neg y})`.

    The class denoisers carry the error of Theorem 8.1 (with the per-class weights); their difference
    loses :math:`(\|D_y\| + \|D_{\neg y}\|)/\|D_y - D_{\neg y}\|`; the factor :math:`p(\neg y\mid x)` carries the
    logit error :math:`\max_k |\delta\ell_k|`, relative :math:`\max_k |\delta\ell_k|/p(\neg y|x)` at most
    (absolute error of a logistic of the log-odds, divided by its value, bounded by the log-odds error).
    """
    u = mp.mpf(UNIT_ROUNDOFF)
    with mp.workdps(50):
        a, c = _constants(gm, ref)
        d_in, d_out, p_not = ref.class_denoisers[y]
        if p_not == 0:
            return 0.0
        worst = mp.mpf(0)
        for k, err in _component_errors(ref, c, u):
            worst = max(worst, err * (1 + ref.kappa[k]) * (ref.q[k] + gm.d * a + 1))
        diff = _norm([d_in[l] - d_out[l] for l in range(gm.d)])
        if diff == 0:
            return float("inf")
        cancel = (_norm(d_in) + _norm(d_out)) / diff
        return float(worst * (cancel + 2))

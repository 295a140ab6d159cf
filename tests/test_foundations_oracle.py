r"""The foundations claims' 50-digit second-order oracle (``mp_second_order``) against its direct computation.

``mp_second_order`` takes each component's :math:`C_k^{-1}`, :math:`P_k = \sigma^2S_kC_k^{-1}` and their norms from a
per-process cache and skips components of zero posterior weight (whose terms are exact zeros); the direct
computation here inverts every :math:`C_k` with ``mp.inverse`` at each call and sums over all components, in the
same order.  The two must agree bit for bit, at two times (a cache keyed wrongly on ``t`` would reuse the first
time's factors) and with a class mask (zero weights).
"""
import mpmath as mp
import numpy as np

from numerics.papers.foundations import claims as F
from numerics.references.mpmath_reference import mp_reference


def _direct(gm, ref, t, mask):
    """Law of total covariance and Hessian of the log-sum-exp, every component, no cache."""
    d, K = gm.d, gm.K
    with mp.workdps(F.MP_DPS):
        tt = mp.mpf(t)
        a, s2 = mp.exp(-tt), -mp.expm1(-2 * tt)
        w = [ref.pi[k] if (mask is None or mask[k]) else mp.mpf(0) for k in range(K)]
        pi = [wk / mp.fsum(w) for wk in w]
        D = [mp.fsum(pi[k] * ref.m_comp[k][l] for k in range(K)) for l in range(d)]
        s = [mp.fsum(pi[k] * ref.s_comp[k][l] for k in range(K)) for l in range(d)]
        cov, hess = [mp.mpf(0)] * (d * d), [mp.mpf(0)] * (d * d)
        for k in range(K):
            r = int(gm.rank[k])
            U = mp.matrix([[mp.mpf(float(gm.evecs[k, i, j])) for j in range(r)] for i in range(d)]) if r else None
            S = U * mp.diag([mp.mpf(float(v)) for v in gm.evals[k][:r]]) * U.T if r else mp.zeros(d, d)
            Ci = mp.inverse(a**2 * S + s2 * mp.eye(d))
            P = s2 * S * Ci
            dm = [ref.m_comp[k][l] - D[l] for l in range(d)]
            ds = [ref.s_comp[k][l] - s[l] for l in range(d)]
            if pi[k] == 0:
                continue
            cov = [c + pi[k] * (P[i, j] + dm[i] * dm[j]) for c, (i, j) in zip(cov, ((i, j) for i in range(d) for j in range(d)))]
            hess = [h + pi[k] * (-Ci[i, j] + ds[i] * ds[j]) for h, (i, j) in zip(hess, ((i, j) for i in range(d) for j in range(d)))]
        return cov, hess


def test_second_order_oracle_equals_direct_computation():
    rng = np.random.default_rng(3)
    gm = F.labelled_mixture(rng, 3, 6, 3)
    F._COMPONENT_CACHE.clear()
    for t in (0.02, 1.0):
        for x in F.marginal_points(gm, rng, t, 2):
            ref = mp_reference(gm, x, t)
            for y in (None, 1):
                mask = None if y is None else gm.labels == y
                so = F.mp_second_order(gm, ref, x, t, mask)
                cov, hess = _direct(gm, ref, t, mask)
                assert so["cov"] == cov and so["hess"] == hess, (t, y)
    assert len(F._COMPONENT_CACHE) == 2 * gm.K


def test_fd_jacobian_batched_equals_point_by_point():
    """``_jacobian`` sends the 2d shifted points of a step to the kernel in one call; the kernels treat rows
    independently, so it equals central differences evaluated one shifted point per call bit for bit (score and
    guidance vector of a labelled mixture with low-rank components), and it recovers an exact Jacobian: a
    quadratic map's central differences are exact up to rounding."""
    rng = np.random.default_rng(5)
    gm = F.labelled_mixture(rng, 4, 6, 3)
    x, t, h = rng.standard_normal(4), 0.3, 1e-2 * np.sqrt(-np.expm1(-0.6))

    def by_point(f, step):
        cols = [(f(x + step * e) - f(x - step * e)) / (2 * step) for e in np.eye(4)]
        return np.stack(cols, axis=1)

    for f in (lambda z: gm.score(z, t), lambda z: gm.guidance_vector(z, t, 1)):
        J, err = F._jacobian(f, x, h)
        Jh, Jh2 = by_point(f, h), by_point(f, h / 2)
        assert np.array_equal(J, (4 * Jh2 - Jh) / 3) and np.array_equal(err, np.abs(Jh - Jh2))
    A = rng.standard_normal((4, 4))
    J, _ = F._jacobian(lambda z: z @ A.T + 0.5 * z**2, x, 0.1)
    assert np.allclose(J, A + np.diag(x), rtol=0, atol=1e-13)

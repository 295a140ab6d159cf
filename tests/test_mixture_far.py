"""Issue 20 item 4: class posterior and denoiser far from the data, against the 50-digit mpmath reference.

The kernels form the logit differences :math:`\\delta_k = \\ell_k - \\ell_r` without the common
:math:`\\|x\\|^2/\\sigma_t^2` (``numerics/_kernels.py``, module docstring).  Every check here compares with
:func:`numerics.references.mpmath_reference.mp_reference` (LU in mpmath, written independently of the kernels) and
uses tolerances derived from the rounding bound of the module docstring (the proof is in
``proofs_notes/foundations.md#logit-differences``), evaluated in mpmath at the exact values:

* logit differences: :math:`\\varepsilon_k = \\gamma_{2d+16}(\\min(B^A_{kr}, B^B_{kr}) + |\\delta_k| + A_k + A_r)`
  (:math:`B^A_{kr} = (f_k + f_r)/2`, :math:`B^B_{kr} = (\\alpha\\sum_l|\\mu_{rl} - \\mu_{kl}|G_l + e_k + e_r)/(2\\sigma^2)`);
* class posterior (absolute): :math:`2\\max_k\\varepsilon_k + \\gamma_{K+6}` (softmax: :math:`|\\hat\\pi_k - \\pi_k| \\le
  \\pi_k(2\\max\\varepsilon + \\gamma_{K+4})`, plus the ``log``/``exp`` of the class log-posterior, absolute
  :math:`u\\,P|\\log P| \\le u`);
* denoiser, relative to its scale :math:`\\sum_k\\pi_k\\|m_k\\|`: the weight error above plus :math:`\\gamma_{K+3}`
  (the weighted sum) plus :math:`\\gamma_{2d+8}\\sum_k\\pi_k M_k/\\text{scale}` (each :math:`m_k`, with
  :math:`M_k = \\|\\mu_k\\| + \\sum_j (\\alpha\\lambda_j/c_j)(|p_j| + S_k)`).

And the issue's target: wherever the problem is well conditioned (the first-order change of the exact value under a
relative change ``u`` of ``x``, the means, the eigenvalues and the weights, bounded from above in mpmath, is below
``100 u``) the class posterior is within ``1e-13`` absolutely and the denoiser within ``1e-12`` of its scale.
"""
from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

from numerics import GaussianMixture
from numerics.references.mpmath_reference import UNIT_ROUNDOFF, mp_reference

U = mp.mpf(UNIT_ROUNDOFF)
TIMES = [1e-3, 1.0, 10.0, 50.0]
KINDS = ["isotropic", "full", "lowrank"]
DIMS = [1, 2, 16]
FAR = 1e3  # standard deviations sigma_t out


def gamma(n: int):
    """:math:`\\gamma_n = nu/(1 - nu)`."""
    return n * U / (1 - n * U)


def make_mixture(kind: str, d: int, seed: int = 0) -> GaussianMixture:
    """Three components, two classes (labels 0, 1, 0), means ~ 2 N(0, I): isotropic (scaled identities), full
    (random SPD) or low rank (rank ``max(1, d // 2)``, the first an atom)."""
    rng = np.random.default_rng(seed + 31 * d + {"isotropic": 0, "full": 1, "lowrank": 2}[kind])
    K = 3
    if kind == "isotropic":
        S = np.array([s * np.eye(d) for s in (0.5, 1.0, 2.0)])
    elif kind == "full":
        A = rng.standard_normal((K, d, d)) / np.sqrt(d)
        S = A @ A.transpose(0, 2, 1) + 0.1 * np.eye(d)
    else:
        B = rng.standard_normal((K, d, max(1, d // 2)))
        S = B @ B.transpose(0, 2, 1)
        S[0] = 0.0
    w = np.array([0.5, 0.3, 0.2])
    return GaussianMixture(w, 2.0 * rng.standard_normal((K, d)), S, labels=[0, 1, 0])


def points(gm: GaussianMixture, t: float, seed: int) -> list[tuple[np.ndarray, str]]:
    """Per component: one point near it (one sigma_t of noise) and one ``FAR`` sigma_t from it."""
    rng = np.random.default_rng(seed)
    alpha, sig = np.exp(-t), np.sqrt(-np.expm1(-2 * t))
    out = []
    for k in range(gm.K):
        direction = rng.standard_normal(gm.d)
        direction /= np.linalg.norm(direction)
        out.append((alpha * gm.means[k] + sig * rng.standard_normal(gm.d), "near"))
        out.append((alpha * gm.means[k] + FAR * sig * direction, "far"))
    return out


def _norm(v):
    return mp.sqrt(mp.fsum(a * a for a in v))


def analyse(gm: GaussianMixture, x: np.ndarray, t: float) -> dict:
    """Errors of the float64 class posterior and denoiser at ``(x, t)`` against mpmath, their derived bounds and the
    conditions (module docstring).  Floats; errors of the denoiser relative to its scale."""
    ref = mp_reference(gm, x, t)
    post = gm.class_posterior(x, t)
    den = gm.denoiser(x, t)
    with mp.workdps(50):
        d, K = gm.d, gm.K
        xv = [mp.mpf(float(a)) for a in x]
        alpha, s2 = mp.exp(-mp.mpf(float(t))), -mp.expm1(-2 * mp.mpf(float(t)))
        xn = _norm(xv)
        terms = []
        for k in range(K):
            mu = [mp.mpf(float(a)) for a in gm.means[k]]
            r = int(gm.rank[k])
            v = [xv[l] - alpha * mu[l] for l in range(d)]
            lam = [mp.mpf(float(a)) for a in gm.evals[k, :r]]
            p = [mp.fsum(mp.mpf(float(gm.evecs[k, l, j])) * v[l] for l in range(d)) for j in range(r)]
            c = [alpha**2 * lj + s2 for lj in lam]
            Dj = [alpha**2 * lam[j] / c[j] for j in range(r)]
            S = xn + alpha * _norm(mu)
            perp = _norm([v[l] - mp.fsum(mp.mpf(float(gm.evecs[k, l, j])) * p[j] for j in range(r)) for l in range(d)])
            terms.append(dict(
                mu=mu,
                f=mp.fsum((p[j] ** 2 + 2 * abs(p[j]) * S) / c[j] for j in range(r)) + (perp**2 + 4 * mp.sqrt(d) * perp * S) / s2,
                e=mp.fsum(Dj[j] * (p[j] ** 2 + 2 * abs(p[j]) * S) for j in range(r)),
                A=abs(mp.log(mp.mpf(float(gm.weights[k])))) + mp.fsum(1 + mp.log1p(alpha**2 * lj / s2) for lj in lam),
                M=_norm(mu) + mp.fsum(alpha * lam[j] / c[j] * (abs(p[j]) + S) for j in range(r)),
                dl=mp.fsum(lam[j] * alpha**2 / 2 * abs(1 / c[j] - p[j] ** 2 / c[j] ** 2) for j in range(r)),
                dm=mp.fsum(lam[j] * alpha * abs(p[j]) * s2 / c[j] ** 2 for j in range(r)),
                lamc=max([lam[j] / c[j] for j in range(r)], default=mp.mpf(0)),
            ))
        pi = ref.pi
        r = max(range(K), key=lambda k: pi[k])
        eps = mp.mpf(0)
        for k in range(K):
            if pi[k] == 0 or k == r:
                continue
            G = [2 * abs(xv[l]) + alpha * (abs(terms[k]["mu"][l]) + abs(terms[r]["mu"][l])) for l in range(d)]
            bb = (alpha * mp.fsum(abs(terms[r]["mu"][l] - terms[k]["mu"][l]) * G[l] for l in range(d))
                  + terms[k]["e"] + terms[r]["e"]) / (2 * s2)
            ba = (terms[k]["f"] + terms[r]["f"]) / 2
            delta = mp.log(pi[k]) - mp.log(pi[r])
            eps = max(eps, gamma(2 * d + 16) * (min(ba, bb) + abs(delta) + terms[k]["A"] + terms[r]["A"]))
        weight_err = 2 * eps + gamma(K + 4)
        mcomp = ref.m_comp
        scale = mp.fsum(pi[k] * _norm(mcomp[k]) for k in range(K))
        post_bound = weight_err + gamma(K + 6) - gamma(K + 4)
        den_bound = weight_err + gamma(K + 3) + gamma(2 * d + 8) * mp.fsum(pi[k] * terms[k]["M"] for k in range(K)) / scale
        sbar = ref.score
        ds = [_norm([ref.s_comp[k][l] - sbar[l] for l in range(d)]) for k in range(K)]
        dm = [_norm([mcomp[k][l] - ref.denoiser[l] for l in range(d)]) for k in range(K)]
        # ell_k's sensitivity to relative changes of mu_k, lambda_k, w_k (first order, upper bound)
        par = [alpha * mp.fsum(abs(terms[k]["mu"][l] * ref.s_comp[k][l]) for l in range(d)) + terms[k]["dl"] + 1
               for k in range(K)]
        cond_post, post_err = mp.mpf(0), mp.mpf(0)
        for cl in range(gm.n_classes):
            inc = [k for k in range(K) if gm.labels[k] == cl]
            P = mp.fsum(pi[k] for k in inc)
            grad = [mp.fsum(pi[k] * (ref.s_comp[k][l] - sbar[l]) for k in inc) for l in range(d)]
            cond = U * (xn * _norm(grad) + mp.fsum(pi[k] * abs((1 if k in inc else 0) - P) * par[k] for k in range(K)))
            cond_post = max(cond_post, cond)
            post_err = max(post_err, abs(mp.mpf(float(post[cl])) - P))
        cond_den = U * (xn * mp.fsum(pi[k] * (alpha * terms[k]["lamc"] + dm[k] * ds[k]) for k in range(K))
                        + mp.fsum(pi[k] * (_norm(terms[k]["mu"]) + terms[k]["dm"] + dm[k] * par[k]) for k in range(K)))
        den_err = _norm([mp.mpf(float(den[l])) - ref.denoiser[l] for l in range(d)]) / scale
        return dict(post_err=float(post_err), post_bound=float(post_bound), cond_post=float(cond_post),
                    den_err=float(den_err), den_bound=float(den_bound), cond_den=float(cond_den / scale))


def old_class_posterior(gm: GaussianMixture, x: np.ndarray, t: float) -> np.ndarray:
    """The class posterior from absolute logits (the formula before issue 20 item 4), in float64."""
    alpha, s2 = np.exp(-t), -np.expm1(-2 * t)
    ell = np.empty(gm.K)
    for k in range(gm.K):
        r = int(gm.rank[k])
        U_, c = gm.evecs[k][:, :r], alpha**2 * gm.evals[k, :r] + s2
        v = x - alpha * gm.means[k]
        p = U_.T @ v
        perp = v - U_ @ p
        q = np.sum(p * p / c) + perp @ perp / s2
        ell[k] = gm.log_weights[k] - 0.5 * (np.sum(np.log(c)) + (gm.d - r) * np.log(s2) + q)
    pi = np.exp(ell - ell.max())
    pi /= pi.sum()
    return np.bincount(gm.labels, weights=pi, minlength=gm.n_classes)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", DIMS)
def test_far_and_near_within_derived_bound_and_target(kind, d):
    """Every point within the derived bound; where well conditioned (< 100 u) within the issue's target."""
    gm = make_mixture(kind, d)
    n_target = 0
    for t in TIMES:
        for x, where in points(gm, t, seed=int(1000 * t) + d):
            a = analyse(gm, x, t)
            assert a["post_err"] <= a["post_bound"], (t, where, a)
            assert a["den_err"] <= a["den_bound"], (t, where, a)
            if a["cond_post"] < 100 * UNIT_ROUNDOFF:
                n_target += 1
                assert a["post_err"] <= 1e-13, (t, where, a)
            if a["cond_den"] < 100 * UNIT_ROUNDOFF:
                assert a["den_err"] <= 1e-12, (t, where, a)
            if t >= 10.0:
                # the case: t up to 50 and 1e3 sigma_t out is well conditioned (so the target applies)
                assert a["cond_post"] < 100 * UNIT_ROUNDOFF and a["cond_den"] < 100 * UNIT_ROUNDOFF, (t, where, a)
    assert n_target >= 12


def test_old_formula_fails_the_new_tolerance_far_out():
    """Teeth: at t = 10, 1e3 sigma_t from a component (d = 16, full covariances), the absolute-logit formula misses
    the 1e-13 target the kernels meet, and the derived bound; the kernels meet both at the same point."""
    gm = make_mixture("full", 16)
    t = 10.0
    x = [p for p, where in points(gm, t, seed=7) if where == "far"][0]
    ref = mp_reference(gm, x, t)
    exact = np.array([float(mp.fsum(ref.pi[k] for k in range(gm.K) if gm.labels[k] == c)) for c in range(2)])
    a = analyse(gm, x, t)
    old_err = float(np.max(np.abs(old_class_posterior(gm, x, t) - exact)))
    assert old_err > max(1e-13, a["post_bound"]), (old_err, a)
    assert a["post_err"] <= min(1e-13, a["post_bound"]), a


@pytest.mark.parametrize("d", [1, 16])
def test_near_data_small_t_keeps_the_absolute_form(d):
    """Near the data at small t the eigen terms E_k ~ |v|^2 (D_j -> 1) and form B would cancel ~ q_k sigma^2 / sigma^2
    digits: a point between two broad components (posterior balanced, well conditioned) at t <= 1e-3 must stay within
    the derived bound (which takes the smaller of the two forms' bounds) and the 1e-13 target."""
    S = np.array([np.eye(d), np.eye(d)])
    mu = np.zeros((2, d))
    mu[0, 0], mu[1, 0] = -1.0, 1.0
    gm = GaussianMixture([0.5, 0.5], mu, S, labels=[0, 1])
    x = np.zeros(d)
    x[0] = 0.3
    for t in (1e-6, 1e-4, 1e-3):
        a = analyse(gm, x, t)
        assert a["cond_post"] < 100 * UNIT_ROUNDOFF, a
        assert a["post_err"] <= min(1e-13, a["post_bound"]), (t, a)
        assert a["den_err"] <= min(1e-12, a["den_bound"]), (t, a)


@pytest.mark.parametrize("kind,d", [("full", 16), ("lowrank", 2), ("isotropic", 1)])
def test_fast_path_far_within_its_documented_bound(kind, d):
    """The fast path (numerics/fast) keeps absolute logits (GEMM or direct form): far out at t >= 10 it is held to its
    own documented bound, :func:`numerics.fast.agreement_bound` (logit error gamma_{d+4} S^2 / (2 c_0), S = |x| + alpha
    |mu_k|, through the softmax), here against the mpmath oracle; the reference kernels meet the issue's 1e-12 at the
    same points (``numerics/fast/kernels.py``, "Far from the data")."""
    from numerics.fast import FastMixture, agreement_bound

    gm = make_mixture(kind, d)
    fm = FastMixture(gm)
    for t in (10.0, 50.0):
        for x, where in points(gm, t, seed=3):
            if where != "far":
                continue
            ref = mp_reference(gm, x, t)
            X = x[None, :]
            with mp.workdps(50):
                err = _norm([mp.mpf(float(a)) - b for a, b in zip(fm.denoiser(X, t)[0], ref.denoiser)])
            assert float(err) <= float(agreement_bound(fm, gm, X, t, "denoiser")[0, 0]), (t, float(err))
            assert analyse(gm, x, t)["den_err"] <= 1e-12


@pytest.mark.parametrize("t", [1e-300, 1e-310])
def test_subnormal_sigma2_keeps_full_rank_components(t):
    """At t = 1e-310 sigma_t^2 is subnormal and alpha^2 lambda / sigma^2 overflows: the log-det term must fall back to
    log(alpha^2 lambda) - log(sigma^2) (log1p(y) = log(y) to within u there), not make the component weightless.
    Tolerance: log p is a sum of terms of size at most T = d|log sigma^2|/2 + d log(2 pi)/2 + |log w| +
    sum_j log1p(alpha^2 lambda_j/sigma^2)/2 + q/2 + log K, each with a relative error within gamma_{2d+16}
    (Theorem 8.4's steps (iv)-(v)), so |error| <= 2 gamma_{2d+16} T."""
    gm = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 0.0]], [np.eye(2), np.diag([1.0, 0.0])], labels=[0, 1])
    x = np.array([0.3, 0.0])
    ref = mp_reference(gm, x, t, dps=400)  # sigma^2 ~ 1e-310 beside lambda = 1: the LU needs > 310 digits
    with mp.workdps(400):
        s2 = -mp.expm1(-2 * mp.mpf(t))
        T = (gm.d * abs(mp.log(s2)) / 2 + gm.d * mp.log(2 * mp.pi) / 2 + abs(mp.log(0.5))
             + mp.log1p(1 / s2) / 2 + max(ref.q) / 2 + mp.log(gm.K))
        tol = float(2 * gamma(2 * gm.d + 16) * T)
    assert abs(float(gm.log_density(x, t)) - float(ref.log_density)) <= tol
    assert np.all(np.isfinite(gm.denoiser(x, t))) and np.all(np.isfinite(gm.class_posterior(x, t)))

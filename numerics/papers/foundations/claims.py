r"""Claims of the foundations: Tweedie (both orders), the guidance Hessian identity, CG = CFG.

Statements and proofs: ``proofs_notes/foundations.md``.  Every claim is checked at points drawn from the
time-``t`` marginal of a labelled mixture with an atom, a rank-one and full-rank components, in two ways:

* **the identity itself, in 50-digit arithmetic**: both sides are evaluated in mpmath by *different*
  formulas (``numerics.references.mpmath_reference``, and :func:`mp_second_order` here): the posterior mean
  as :math:`\sum_k\pi_k m_k` against Tweedie's map of the score :math:`\sum_k\pi_k s_k`; the posterior
  covariance by the law of total covariance against the map of the Hessian of the log-sum-exp; the class
  Hessian as :math:`H_y - H` against the covariance form; CFG from :math:`s_y, s` against CG from the stable
  :math:`g_y = p(\neg y\mid x)(s_y - s_{\neg y})`.  Tolerance: the first-order bound of the float64 evaluation
  (Theorem 8.1) rescaled from :math:`u = 2^{-53}` to :math:`10^{-50}` (the bound is linear in the unit roundoff);
* **the package's float64 kernels against that independent oracle**: each kernel output (the Tweedie map of
  the kernel score, the kernel denoiser, the kernel posterior covariance, the kernel guidance Hessian, kernel CG)
  is compared with the 50-digit value, so a bug in the kernels' posterior weights, which both sides of a
  kernel-vs-kernel comparison would share, shows.  Tolerance: Theorem 8.1 for scores and denoisers, its
  Corollary 8.3 for posterior covariances (``proofs_notes/foundations.md#numerical-evaluation``), plus a few
  ulps for the final arithmetic of the identity, plus the oracle's own 50-digit bound where its route cancels
  (near an atom at small t the covariance is ~1e-65 and I + sigma^2 H cancels to that size).

The 50-digit values are cached per (mixture, point, time) in the process: the stated run and the control runs
evaluate them at the same points.  What does not depend on the point is computed once per component and time
(memoised on the exact float64 inputs): in :func:`mp_reference` the matrix :math:`S_k`, the LU factors of
:math:`C_k` and :math:`\log\det C_k`; here :math:`C_k^{-1}`, :math:`P_k` and their norms.  Components of zero
posterior weight (outside a class) are skipped, since every term they add is an exact zero.  The values are those
of the unmemoised computation bit for bit (``tests/test_foundations_oracle.py``, ``tests/test_mixture.py``).

The kernel-vs-kernel comparisons of the earlier version (the kernel denoiser against the Tweedie map of the
kernel score; the covariance against the finite-difference Jacobian of the kernel score, with a Richardson
a-posteriori error estimate) are kept as informational measurements: they share the kernels' weights, and the
Richardson estimate comes from the same finite differences it judges.

Controls (realistic bugs): the identity's map written wrongly (``alpha_dropped``, ``sigma2_dropped``, ...),
applied to both the 50-digit and the float64 evaluation, and ``logdet_dropped``: the kernels' posterior
log-weights without the :math:`-\tfrac12\log\det C_k(t)` normaliser, obtained by running the real kernels on
the mixture whose log-weights carry :math:`+\tfrac12\log\det C_k(t)` (the same kernel computation, exactly).

The measured value of each comparison is the worst ratio (error / tolerance) over all points; it holds when
the ratio is at most 1.
"""
from __future__ import annotations

import copy

import mpmath as mp
import numpy as np

from numerics.checks.claim import Context, Measurement, claim
from numerics.checks.plots import WorstByParam
from numerics.constants import UNIT_ROUNDOFF as U
from numerics.mixture import GaussianMixture
from numerics.references.mpmath_reference import MPResult, guidance_error_bound, mixture_error_bound, mp_reference
from numerics.schedule import alpha_t, sigma2_t

NOTE = "proofs_notes/foundations.md"
QUICK = {"d": 3, "K": 6, "classes": 3, "points_per_time": 4, "times": [0.02, 0.2, 1.0, 3.0]}
FULL = {"d": 8, "K": 16, "classes": 4, "points_per_time": 24, "times": [1e-3, 0.01, 0.05, 0.2, 0.5, 1.0, 3.0, 10.0]}
#: CI's cut of the full profile (``--profile reduced``): the mpmath oracle's cost is per point.
REDUCED = {"points_per_time": 6}
REDUCED_REASON = ("the full profile's mixture (d = 8, K = 16, 4 classes) at all 8 times with 6 points per time "
                  "instead of 24 (each point is checked against its own derived bound, so none is loosened)")
#: Digits of the mpmath oracle.
MP_DPS = 50
#: Theorem 8.1's bounds are first order in the unit roundoff: rescaled to a 50-digit evaluation
#: (unit roundoff 2^-167 < 1e-50) by this factor.
MP_SCALE = 10.0**-MP_DPS / U

LOGDET = {"logdet_dropped": "kernel posterior log-weights without the -1/2 log det C_k(t) normaliser"}


def labelled_mixture(rng: np.random.Generator, d: int, K: int, classes: int) -> GaussianMixture:
    """An atom, a rank-one component and full-rank ones, means ~ N(0, 4 I), labels cycling over classes."""
    A = rng.standard_normal((K, d, d)) / np.sqrt(d)
    S = A @ A.transpose(0, 2, 1)
    S[0] = 0.0
    b = rng.standard_normal((d, 1))
    S[1] = b @ b.T
    return GaussianMixture(rng.dirichlet(np.ones(K)), 2.0 * rng.standard_normal((K, d)), S,
                           labels=np.arange(K) % classes)


def marginal_points(gm: GaussianMixture, rng: np.random.Generator, t: float, n: int) -> np.ndarray:
    r"""``n`` draws of :math:`X_t = \alpha_t X_0 + \sigma_t Z`."""
    x0 = gm.sample_data(n, rng)
    return np.exp(-t) * x0 + np.sqrt(-np.expm1(-2 * t)) * rng.standard_normal(x0.shape)


def kernel_mixture(gm: GaussianMixture, t: float, ctx: Context) -> GaussianMixture:
    r"""The mixture whose kernels the claim evaluates at time ``t``: ``gm`` itself, or (control
    ``logdet_dropped``) a copy whose log-weights carry :math:`+\tfrac12\log\det C_k(t)`, so that the kernels'
    logits :math:`\log w_k - \tfrac12(d\log 2\pi + \log\det C_k + q_k)` lose the log-determinant exactly."""
    if not ctx.bug("logdet_dropped"):
        return gm
    a, s2 = alpha_t(t), sigma2_t(t)
    logdet = np.array([(gm.d - gm.rank[k]) * np.log(s2) + np.sum(np.log(a**2 * gm.evals[k][:gm.rank[k]] + s2))
                       for k in range(gm.K)])
    bad = copy.copy(gm)
    bad.log_weights = gm.log_weights + 0.5 * logdet
    return bad


def _setting(ctx: Context):
    p = ctx.params
    gm = labelled_mixture(ctx.rng, p["d"], p["K"], p["classes"])
    for t in p["times"]:
        for x in marginal_points(gm, ctx.rng, t, p["points_per_time"]):
            yield gm, float(t), x


def _ratio(name: str, worst: float, reason: str, extra: dict | None = None, counted: bool = True) -> Measurement:
    """``error / tolerance <= 1``.  Its value is rounding noise (platform-dependent), so for baseline
    comparison any value in [0, 1] is equivalent: ``drift_tol = 1``."""
    return Measurement(name=name, measured=worst, predicted=1.0, kind="le", tol=0.0, reason=reason,
                       extra={**(extra or {}), "drift_tol": 1.0}, counted=counted)


def _panels(ctx: Context, worst_by: dict, titles: dict, xlabel: str = r"$t$", xscale: str = "log") -> None:
    """One panel per measurement: per parameter value, the error at the worst point (error / tolerance) and its
    tolerance (``WorstByParam``), log y."""
    for key, title in titles.items():
        ctx.plot.worst_agreement(key, worst_by[key], title=title, xlabel=xlabel, xscale=xscale,
                    ylabel="error at the worst point")


def _mpv(v) -> list:
    return [mp.mpf(float(a)) for a in np.ravel(v)]


def _mpnorm(v) -> mp.mpf:
    return mp.sqrt(mp.fsum(a**2 for a in v))


def _mp_err(v_float, v_mp) -> float:
    """``|v_float - v_mp|`` (Euclidean / Frobenius) in mpmath, as a float."""
    with mp.workdps(MP_DPS):
        return float(_mpnorm([a - b for a, b in zip(_mpv(v_float), v_mp)]))


#: 50-digit ``(C_k^{-1}, P_k)`` per component and time (they do not depend on x): computed once per process.
_COMPONENT_CACHE: dict = {}


def _mp_component(gm: GaussianMixture, k: int, t: float) -> tuple:
    r"""50-digit :math:`C_k^{-1}` and :math:`P_k = \sigma_t^2 S_k C_k^{-1}` of component ``k`` at time ``t``, as flat
    row-major ``d*d`` mpf lists, and their Frobenius norms :math:`\|C_k^{-1}\|, \|P_k\|`, with
    :math:`S_k = U_r\,\mathrm{diag}(\lambda)\,U_r^\top` formed exactly from the stored float64 factors (as
    :func:`mp_reference` does) and :math:`C_k = \alpha_t^2S_k + \sigma_t^2I` inverted by LU."""
    key = (gm.means.tobytes(), gm.evecs.tobytes(), gm.evals.tobytes(), k, float(t))
    if key not in _COMPONENT_CACHE:
        if len(_COMPONENT_CACHE) > 4096:
            _COMPONENT_CACHE.clear()
        d, r = gm.d, int(gm.rank[k])
        with mp.workdps(MP_DPS):
            tt = mp.mpf(float(t))
            alpha, s2 = mp.exp(-tt), -mp.expm1(-2 * tt)
            Ur = mp.matrix([[mp.mpf(float(gm.evecs[k, l, j])) for j in range(r)] for l in range(d)]) if r else None
            S = Ur * mp.diag(_mpv(gm.evals[k][:r])) * Ur.T if r else mp.zeros(d, d)
            Ci = mp.inverse(alpha**2 * S + s2 * mp.eye(d))
            Pk = s2 * S * Ci
            ci = [Ci[i, j] for i in range(d) for j in range(d)]
            pk = [Pk[i, j] for i in range(d) for j in range(d)]
            _COMPONENT_CACHE[key] = (ci, pk, _mpnorm(ci), _mpnorm(pk))
    return _COMPONENT_CACHE[key]


def mp_second_order(gm: GaussianMixture, ref: MPResult, x, t: float, mask=None) -> dict:
    r"""50-digit second-order quantities at ``x`` (``mask``: restrict to a class's components, renormalised).

    Returns flat row-major ``d*d`` mpf lists: ``cov`` by the law of total covariance
    :math:`\sum_k\pi_k(\sigma^2S_kC_k^{-1} + (m_k - D)(m_k - D)^\top)` and ``hess`` by differentiating the
    log-sum-exp, :math:`\sum_k\pi_k(-C_k^{-1} + (s_k - s)(s_k - s)^\top)` (foundations.md, Corollary 4.3): two
    formulas that Theorem 4.1 links, evaluated independently.  Also ``bound``: Corollary 8.3's first-order
    float64 error bound of the kernel covariance (Frobenius), and ``scale`` (:math:`\|\mathrm{Cov}\| +
    \sigma^2/\alpha^2(\sqrt d + \sigma^2\|H\|)`) and ``hround``, the rounding bound of the Hessian's sum
    (:math:`(K + d + 4)u\sum_k\pi_k(\|C_k^{-1}\| + \|s_k - s\|^2)`).  ``ref`` is :func:`mp_reference` of ``gm`` at ``x``.
    """
    d, K = gm.d, gm.K
    keep = [True] * K if mask is None else [bool(m) for m in mask]
    with mp.workdps(MP_DPS):
        tt = mp.mpf(float(t))
        alpha, s2 = mp.exp(-tt), -mp.expm1(-2 * tt)
        w = [ref.pi[k] if keep[k] else mp.mpf(0) for k in range(K)]
        z = mp.fsum(w)
        pi = [wk / z for wk in w]
        D = [mp.fsum(pi[k] * ref.m_comp[k][l] for k in range(K)) for l in range(d)]
        s = [mp.fsum(pi[k] * ref.s_comp[k][l] for k in range(K)) for l in range(d)]
        cov, hess = [mp.mpf(0)] * (d * d), [mp.mpf(0)] * (d * d)
        # components of zero posterior weight add exact zeros to every sum below: they are skipped
        live = [k for k in range(K) if pi[k] != 0]
        ij = [(i, j) for i in range(d) for j in range(d)]  # row-major
        Q, P, nCi, nP, dm, ds = {}, {}, {}, {}, {}, {}
        for k in live:
            Ci, P[k], nCi[k], nP[k] = _mp_component(gm, k, t)
            dm[k] = [ref.m_comp[k][l] - D[l] for l in range(d)]
            ds[k] = [ref.s_comp[k][l] - s[l] for l in range(d)]
            dmk, dsk = dm[k], ds[k]
            Q[k] = [p + dmk[i] * dmk[j] for p, (i, j) in zip(P[k], ij)]
            cov = [c + pi[k] * q for c, q in zip(cov, Q[k])]
            hess = [h + pi[k] * (-c + dsk[i] * dsk[j]) for h, c, (i, j) in zip(hess, Ci, ij)]
        # Corollary 8.3 (foundations.md#numerical-evaluation)
        u = mp.mpf(U)
        logw = [abs(mp.log(mp.mpf(float(wk)))) for wk in gm.weights if wk > 0]
        a_const = 1 + ref.log_e_max + max(logw) / d
        c_const = 4 * (mp.mpf(d) ** 1.5 + K + 4)
        bound = mp.mpf(0)
        for k in live:
            e_k = u * (1 + 2 * min(ref.rho[k], mp.mpf(1e30))) + c_const * u
            mk, dk = _mpnorm(ref.m_comp[k]), _mpnorm(dm[k])
            spread = _mpnorm([q - c for q, c in zip(Q[k], cov)])
            bound += pi[k] * e_k * (1 + ref.kappa[k]) * (nP[k] + 2 * mk * dk + dk**2
                                                         + (ref.q[k] + d * a_const) * spread)
        bound += 2 * d * u * (_mpnorm(cov) + mp.fsum(pi[k] * _mpnorm(Q[k]) for k in live))
        scale = _mpnorm(cov) + s2 / alpha**2 * (mp.sqrt(d) + s2 * _mpnorm(hess))
        # size of the terms the Hessian's sum adds before they cancel; its rounding is (K + d + 4)u times it
        hscale = mp.fsum(pi[k] * (nCi[k] + _mpnorm(ds[k]) ** 2) for k in live)
        return {"cov": cov, "hess": hess, "bound": bound, "scale": scale, "alpha": alpha, "s2": s2,
                "hround": (K + d + 4) * u * hscale}


#: 50-digit references already computed in this process, keyed by the mixture, the point, the time and the
#: class mask: the stated run and every control run evaluate the oracle at the same points (same seed).
_REF_CACHE: dict = {}


def _key(gm: GaussianMixture, *rest) -> tuple:
    return (*gm.key(), *rest)


def _cached(key: tuple, compute):
    if key not in _REF_CACHE:
        if len(_REF_CACHE) > 20000:
            _REF_CACHE.clear()
        _REF_CACHE[key] = compute()
    return _REF_CACHE[key]


def oracle(gm: GaussianMixture, x: np.ndarray, t: float) -> MPResult:
    """:func:`mp_reference` of ``gm`` at ``(x, t)`` (``MP_DPS`` digits), cached."""
    return _cached(_key(gm, "ref", np.asarray(x).tobytes(), float(t)), lambda: mp_reference(gm, x, t, MP_DPS))


def oracle2(gm: GaussianMixture, x: np.ndarray, t: float, y: int | None = None) -> dict:
    """:func:`mp_second_order` of ``gm`` at ``(x, t)``, over class ``y``'s components if given, cached."""
    mask = None if y is None else gm.labels == y
    return _cached(_key(gm, "so", np.asarray(x).tobytes(), float(t), y),
                   lambda: mp_second_order(gm, oracle(gm, x, t), x, t, mask))


@claim(
    id="foundations.tweedie_first_order",
    paper="foundations",
    statement="E[X0 | Xt = x] = (x + sigma_t^2 grad log p_t(x)) / alpha_t for labelled Gaussian mixtures "
              "(atoms and low-rank components included): in 50-digit arithmetic, and for the package's float64 "
              "kernels (Tweedie map of the kernel score, and the kernel denoiser) against that 50-digit oracle",
    note=f"{NOTE}#tweedie",
    provenance="standard",
    quick=QUICK,
    full=FULL,
    reduced=REDUCED,
    reduced_reason=REDUCED_REASON,
    controls={"alpha_dropped": "Tweedie's map without the 1/alpha_t: x + sigma_t^2 s", **LOGDET},
)
def tweedie_first_order(ctx: Context) -> list[Measurement]:
    """The posterior mean sum_k pi_k m_k (mpmath) against Tweedie's map of the score sum_k pi_k s_k."""
    worst = {"mp": 0.0, "map": 0.0, "den": 0.0, "kk": 0.0}
    wb = {k: WorstByParam() for k in worst}
    inv_a = not ctx.bug("alpha_dropped")
    for gm, t, x in _setting(ctx):
        a, s2 = alpha_t(t), sigma2_t(t)
        km = kernel_mixture(gm, t, ctx)
        s, D = km.score(x, t), km.denoiser(x, t)
        ref = oracle(gm, x, t)
        b_s, b_d = _cached(_key(gm, "b1", x.tobytes(), t), lambda: (mixture_error_bound(gm, ref, "score"),
                                                                    mixture_error_bound(gm, ref, "denoiser")))
        with mp.workdps(MP_DPS):
            am, s2m = mp.exp(-mp.mpf(float(t))), -mp.expm1(-2 * mp.mpf(float(t)))
            tw = [(xi + s2m * si) / (am if inv_a else 1) for xi, si in zip(_mpv(x), ref.score)]
            e_mp = float(_mpnorm([p - q for p, q in zip(tw, ref.denoiser)]))
            n_s, n_d = float(_mpnorm(ref.score)), float(_mpnorm(ref.denoiser))
        nx = float(np.linalg.norm(x))
        tol_mp = MP_SCALE * (b_d * n_d + b_s * s2 * n_s / a + 4 * U * (nx + s2 * n_s) / a)
        worst["mp"] = max(worst["mp"], e_mp / tol_mp)
        tweedie = (x + s2 * s) / a if inv_a else x + s2 * s
        tol_map = b_s * s2 * n_s / a + 4 * U * (nx + s2 * n_s) / a
        e_map, e_den, e_kk = _mp_err(tweedie, ref.denoiser), _mp_err(D, ref.denoiser), float(np.linalg.norm(tweedie - D))
        worst["map"] = max(worst["map"], e_map / tol_map)
        worst["den"] = max(worst["den"], e_den / (b_d * n_d))
        worst["kk"] = max(worst["kk"], e_kk / (b_d * n_d + tol_map))
        for k, e, tl in (("mp", e_mp, tol_mp), ("map", e_map, tol_map), ("den", e_den, b_d * n_d),
                         ("kk", e_kk, b_d * n_d + tol_map)):
            wb[k].add(t, e, tl)
    _panels(ctx, wb, {"mp": r"50 digits: $|\sum\pi_k m_k - $Tweedie$(\sum\pi_k s_k)|$",
                      "map": "kernel: |Tweedie(s_kernel) - D_50digits|",
                      "den": "kernel: |D_kernel - D_50digits|",
                      "kk": "kernel vs kernel (informational)"})
    return [
        _ratio("50 digits: |sum pi_k m_k - Tweedie(sum pi_k s_k)| / tol", worst["mp"],
               "Theorem 8.1 bounds of D and s plus 4u for the map, rescaled from u to 1e-50 (first order in u)"),
        _ratio("kernel: |Tweedie(s_kernel) - D_50digits| / tol", worst["map"],
               "per point: Theorem 8.1 bound of the float64 score (mpmath reference at that point), "
               "times sigma^2/alpha, plus 4u(|x| + sigma^2|s|)/alpha for the map"),
        _ratio("kernel: |D_kernel - D_50digits| / tol", worst["den"],
               "per point: Theorem 8.1 bound of the float64 denoiser"),
        _ratio("kernel vs kernel: |D_kernel - Tweedie(s_kernel)| / tol", worst["kk"],
               "sum of the two kernel bounds; informational: both sides share the kernels' posterior weights",
               counted=False),
    ]


@claim(
    id="foundations.tweedie_second_order",
    paper="foundations",
    statement="Cov[X0 | Xt = x] = (sigma^2/alpha^2) (I + sigma^2 Hess log p_t(x)): in 50-digit arithmetic (law of "
              "total covariance vs the Hessian of the log-sum-exp), and for the float64 kernel covariance against it",
    note=f"{NOTE}#second-order-tweedie",
    provenance="standard",
    quick=QUICK,
    full=FULL,
    reduced=REDUCED,
    reduced_reason=REDUCED_REASON,
    controls={"sigma2_dropped": "the inner sigma^2 dropped: (sigma^2/alpha^2)(I + H)", **LOGDET},
)
def tweedie_second_order(ctx: Context) -> list[Measurement]:
    """Law of total covariance (mpmath; the float64 kernel) against the map of the mpmath Hessian."""
    worst = {"mp": 0.0, "kern": 0.0, "fd": 0.0}
    wb = {k: WorstByParam() for k in worst}
    for gm, t, x in _setting(ctx):
        a, s2 = alpha_t(t), sigma2_t(t)
        km = kernel_mixture(gm, t, ctx)
        so = oracle2(gm, x, t)
        with mp.workdps(MP_DPS):
            am2, s2m = so["alpha"] ** 2, so["s2"]
            inner = 1 if ctx.bug("sigma2_dropped") else s2m
            d = gm.d
            pred = [s2m / am2 * ((1 if i == j else 0) + inner * so["hess"][i * d + j]) for i in range(d) for j in range(d)]
            e_mp = float(_mpnorm([p - c for p, c in zip(pred, so["cov"])]))
            scale, bnd = float(so["scale"]), float(so["bound"])
            hround = float(s2m**2 / am2 * so["hround"])
        tol_mp = MP_SCALE * (bnd + hround + 16 * U * scale)
        worst["mp"] = max(worst["mp"], e_mp / tol_mp)
        wb["mp"].add(t, e_mp, tol_mp)
        cov = km.posterior_cov(x, t)
        # the oracle's own error (tol_mp) counts too: near an atom at small t, Cov ~ 1e-65 while I + sigma^2 H
        # cancels to that size in 50-digit arithmetic
        e_kern = _mp_err(cov, pred)
        worst["kern"] = max(worst["kern"], e_kern / (bnd + tol_mp))
        wb["kern"].add(t, e_kern, bnd + tol_mp)
        # informational: FD Jacobian of the kernel score (Richardson a-posteriori estimate)
        h = FD_STEP * np.sqrt(s2)
        J, err = _jacobian(lambda z: km.score(z, t), x, h)
        inner_f = 1.0 if ctx.bug("sigma2_dropped") else s2
        pred_fd = s2 / a**2 * (np.eye(gm.d) + inner_f * J)
        mu_max = float(np.linalg.norm(gm.means, axis=1).max())
        rounding = 3 * _eval_error(gm, t, (np.linalg.norm(x) + h * np.sqrt(gm.d) + a * mu_max) / s2) / h
        tol = s2**2 / a**2 * (err + rounding) + 64 * U * (np.abs(cov).max() + np.sum(km.denoiser(x, t) ** 2))
        worst["fd"] = max(worst["fd"], float(np.max(np.abs(pred_fd - cov) / tol)))
        wb["fd"].add(t, np.abs(pred_fd - cov), tol)
    _panels(ctx, wb, {"mp": r"50 digits: $|$Cov$ - (\sigma^2/\alpha^2)(I + \sigma^2 H)|$",
                      "kern": "kernel: |Cov_kernel - Tweedie2(H_50digits)|",
                      "fd": "kernel vs FD Jacobian (informational, entrywise)"})
    return [
        _ratio("50 digits: |Cov - (s2/a2)(I + s2 H)| / tol", worst["mp"],
               "Corollary 8.3 bound of the covariance, the Hessian sum's rounding (K + d + 4)u sum_k pi_k(|C_k^-1| + |s_k - s|^2) sigma^4/alpha^2 and 16u of the scale, rescaled from u to 1e-50"),
        _ratio("kernel: |Cov_kernel - (s2/a2)(I + s2 H_50digits)| / tol", worst["kern"],
               "per point: Corollary 8.3 (foundations.md#numerical-evaluation) first-order bound of the float64 "
               "posterior covariance (mpmath reference at that point), plus the 50-digit oracle's own bound"),
        _ratio("kernel vs kernel: |Cov - Tweedie2(FD Jacobian of the kernel score)| / tol", worst["fd"],
               "Richardson a-posteriori error of the FD Hessian (h = 1e-2 sigma_t) + 3 eps_s/h rounding; "
               "informational: an a-posteriori estimate from the data it judges, and shared kernel weights",
               counted=False),
    ]


def _jacobian(f, x: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Central-difference Jacobian of ``f`` (rows ``(n, d) -> (n, d)``, row by row) with Richardson extrapolation
    and its error estimate: :math:`J_h = [f(x + h e_j) - f(x - h e_j)]_j / 2h`, :math:`J = (4J_{h/2} - J_h)/3`,
    error :math:`|J_h - J_{h/2}|`.  The 2d shifted points of one step go to ``f`` in one call (the kernels treat
    rows independently, so the columns are the floats of one call per point)."""
    d = x.shape[0]

    def central(step):
        shift = step * np.eye(d)
        rows = f(np.concatenate([x + shift, x - shift]))
        return ((rows[:d] - rows[d:]) / (2 * step)).T

    Jh, Jh2 = central(h), central(h / 2)
    return (4 * Jh2 - Jh) / 3, np.abs(Jh - Jh2)


FD_STEP = 1e-2  # h / sigma_t


def _eval_error(gm: GaussianMixture, t: float, magnitude: float) -> float:
    r"""Evaluation error :math:`\varepsilon_f = c\,u\,(1+\kappa)\,F` of a kernel output whose summed terms have size ``F``."""
    a, s2 = alpha_t(t), sigma2_t(t)
    kappa = float(np.max((a**2 * gm.evals.max(axis=1) + s2) / s2))
    c = 4 * (gm.d**1.5 + gm.K + 4)
    return c * U * (1 + kappa) * magnitude


@claim(
    id="foundations.hessian_identity",
    paper="foundations",
    statement="Hess_x log p_t(y|x) = (alpha^2/sigma^4)(Cov[X0|x,y] - Cov[X0|x]): in 50-digit arithmetic (H_y - H "
              "from the log-sum-exp vs the covariance form), and for the float64 kernel guidance Hessian against it",
    note=f"{NOTE}#hessian-identity",
    provenance="standard",
    quick=QUICK,
    full=FULL,
    reduced=REDUCED,
    reduced_reason=REDUCED_REASON,
    controls={"wrong_class_cov": "the covariance form with the class-(y+1) covariance in place of class y",
              "sigma4_as_sigma2": "prefactor alpha^2/sigma^2 where alpha^2/sigma^4 belongs", **LOGDET},
)
def hessian_identity(ctx: Context) -> list[Measurement]:
    """Hessian of log p_t(y|x) as H_y - H (mpmath) against the covariance form (mpmath; the float64 kernel)."""
    worst = {"mp": 0.0, "kern": 0.0, "fd": 0.0}
    wb = {k: WorstByParam() for k in worst}
    for gm, t, x in _setting(ctx):
        a, s2 = alpha_t(t), sigma2_t(t)
        km = kernel_mixture(gm, t, ctx)
        y = int(ctx.rng.integers(gm.n_classes))
        y_cov = (y + 1) % gm.n_classes if ctx.bug("wrong_class_cov") else y
        tot = oracle2(gm, x, t)
        cls = {c: oracle2(gm, x, t, c) for c in {y, y_cov}}
        with mp.workdps(MP_DPS):
            pre = tot["alpha"] ** 2 / tot["s2"] ** (1 if ctx.bug("sigma4_as_sigma2") else 2)
            exact = [hy - h for hy, h in zip(cls[y]["hess"], tot["hess"])]
            form = [pre * (cy - c) for cy, c in zip(cls[y_cov]["cov"], tot["cov"])]
            e_mp = float(_mpnorm([p - q for p, q in zip(form, exact)]))
            pre_f = float(pre)
            bnd = float(pre * (cls[y_cov]["bound"] + tot["bound"]
                               + 4 * U * (_mpnorm(cls[y_cov]["cov"]) + _mpnorm(tot["cov"]))))
            hround = float(cls[y]["hround"] + tot["hround"])
        tol_mp = MP_SCALE * (bnd + hround)
        worst["mp"] = max(worst["mp"], e_mp / tol_mp)
        wb["mp"].add(t, e_mp, tol_mp)
        if ctx.control is None or ctx.bug("logdet_dropped"):
            H = km.guidance_hessian(x, t, y)
        else:
            H = pre_f * (km.posterior_cov(x, t, y_cov) - km.posterior_cov(x, t))
        e_kern = _mp_err(H, exact)
        worst["kern"] = max(worst["kern"], e_kern / (bnd + tol_mp))  # + the oracle's own error
        wb["kern"].add(t, e_kern, bnd + tol_mp)
        # informational: FD Jacobian of the kernel guidance vector
        h = FD_STEP * np.sqrt(s2)
        J, err = _jacobian(lambda z: km.guidance_vector(z, t, y), x, h)
        mu_max = float(np.linalg.norm(gm.means, axis=1).max())
        rounding = 3 * _eval_error(gm, t, a / s2 * ((np.linalg.norm(x) + h * np.sqrt(gm.d)) / a + mu_max + 1)) / h
        scale = np.abs(km.posterior_cov(x, t, y)).max() + np.abs(km.posterior_cov(x, t)).max() + np.sum(km.denoiser(x, t) ** 2)
        tol = err + rounding + a**2 / s2**2 * 128 * U * scale
        worst["fd"] = max(worst["fd"], float(np.max(np.abs(J - H) / tol)))
        wb["fd"].add(t, np.abs(J - H), tol)
    _panels(ctx, wb, {"mp": r"50 digits: $|H_y - H - (\alpha^2/\sigma^4)($Cov$_y - $Cov$)|$",
                      "kern": "kernel: |guidance_hessian - (H_y - H)_50digits|",
                      "fd": "FD Jacobian of g_y vs kernel (informational, entrywise)"})
    return [
        _ratio("50 digits: |H_y - H - (a2/s4)(Cov_y - Cov)| / tol", worst["mp"],
               "Corollary 8.3 bounds of both covariances times alpha^2/sigma^4 and the rounding of both Hessian sums, "
               "rescaled from u to 1e-50"),
        _ratio("kernel: |guidance_hessian - (H_y - H)_50digits| / tol", worst["kern"],
               "per point: alpha^2/sigma^4 (Corollary 8.3 bounds of Cov_y and Cov + 4u(|Cov_y| + |Cov|) for "
               "the difference), foundations.md#numerical-evaluation, plus the 50-digit oracle's own bound"),
        _ratio("kernel vs kernel: |FD Jacobian of g_y - covariance form| / tol", worst["fd"],
               "Richardson a-posteriori error of the FD Jacobian of g_y (h = 1e-2 sigma_t) + 3 eps_g/h + covariance "
               "rounding; informational: an a-posteriori estimate from the data it judges, and shared kernel weights",
               counted=False),
    ]


def _mp_class_score(gm: GaussianMixture, ref: MPResult, y: int) -> list:
    r"""The class-``y`` score :math:`\sum_{k:y(k)=y}\pi_k s_k / \sum_{k:y(k)=y}\pi_k` from the 50-digit reference
    (not from ``gm.conditional(y)``, whose float64 renormalised weights would perturb it by ~u)."""
    with mp.workdps(MP_DPS):
        members = [k for k in range(gm.K) if gm.labels[k] == y]
        z = mp.fsum(ref.pi[k] for k in members)
        return [mp.fsum(ref.pi[k] * ref.s_comp[k][l] for k in members) / z for l in range(gm.d)]


@claim(
    id="foundations.cg_equals_cfg",
    paper="foundations",
    statement="with exact scores, classifier guidance s + w g_y equals classifier-free guidance "
              "w s_y + (1 - w) s for every w >= 0: in 50-digit arithmetic (g_y from the stable form "
              "p(not y|x)(s_y - s_not_y)), and for the float64 kernels' CG against the 50-digit CFG",
    note=f"{NOTE}#cg-equals-cfg",
    provenance="standard",
    quick={**QUICK, "weights": [0.0, 1.0, 3.0, 10.0]},
    full={**FULL, "weights": [0.0, 0.5, 1.0, 2.0, 3.0, 7.5, 10.0, 50.0]},
    reduced=REDUCED,
    reduced_reason=REDUCED_REASON,
    controls={"wrong_class_guidance": "CG with the guidance vector of class y+1",
              "w_convention": "CFG written (1 + w) s_y - w s, i.e. w where w - 1 belongs", **LOGDET},
)
def cg_equals_cfg(ctx: Context) -> list[Measurement]:
    """CG (guidance vector) against CFG (conditional and unconditional scores), mpmath and kernel."""
    worst = {"mp": 0.0, "kern": 0.0, "cfg": 0.0, "kk": 0.0}
    wb = {k: WorstByParam() for k in worst}
    shift = 1.0 if ctx.bug("w_convention") else 0.0
    for gm, t, x in _setting(ctx):
        km = kernel_mixture(gm, t, ctx)
        y = int(ctx.rng.integers(gm.n_classes))
        y_g = (y + 1) % gm.n_classes if ctx.bug("wrong_class_guidance") else y
        s, s_y, g = km.score(x, t), km.conditional_score(x, t, y), km.guidance_vector(x, t, y_g)
        cond = gm.conditional(y)
        ref, ref_y = oracle(gm, x, t), oracle(cond, x, t)
        rb_s, rb_sy, rb_g = _cached(_key(gm, "bcg", x.tobytes(), t, y), lambda: (
            mixture_error_bound(gm, ref, "score"), mixture_error_bound(cond, ref_y, "score"),
            guidance_error_bound(gm, ref, y)))
        b_s, b_sy = rb_s * np.linalg.norm(s), rb_sy * np.linalg.norm(s_y)
        b_g = rb_g * np.linalg.norm(g)
        sy_mp = _mp_class_score(gm, ref, y)
        for w in ctx.params["weights"]:
            wc = w + shift
            with mp.workdps(MP_DPS):
                cfg = [wc * a + (1 - wc) * b for a, b in zip(sy_mp, ref.score)]
                cfg_true = [w * a + (1 - w) * b for a, b in zip(sy_mp, ref.score)]
                cg_mp = [b + w * gg for b, gg in zip(ref.score, ref.guidance[y_g])]
                e_mp = float(_mpnorm([p - q for p, q in zip(cg_mp, cfg)]))
            rnd = 4 * U * (2 * np.linalg.norm(s) + w * np.linalg.norm(g) + w * np.linalg.norm(s_y) + abs(1 - w) * np.linalg.norm(s))
            tol_cg = b_s + w * b_g + rnd
            tol = w * (b_g + b_sy + b_s) + abs(1 - w) * b_s + b_s + rnd
            if tol == 0.0:  # w = 0 and s = 0 exactly: both sides are exactly 0
                continue
            worst["mp"] = max(worst["mp"], e_mp / (MP_SCALE * tol))
            e_kern = _mp_err(s + w * g, cfg)
            worst["kern"] = max(worst["kern"], e_kern / tol_cg)
            wb["mp"].add(w, e_mp, MP_SCALE * tol)
            wb["kern"].add(w, e_kern, tol_cg)
            cfg_k = wc * s_y + (1 - wc) * s
            # the float64 CFG (conditional_score and score kernels) against the 50-digit CFG: the
            # Theorem 8.1 bounds of s_y and s weighted by w and |1 - w|, plus 4u for the sum
            tol_cfg = (w * b_sy + abs(1 - w) * b_s
                       + 4 * U * (w * np.linalg.norm(s_y) + abs(1 - w) * np.linalg.norm(s)))
            if tol_cfg > 0.0:
                e_cfg = _mp_err(cfg_k, cfg_true)
                worst["cfg"] = max(worst["cfg"], e_cfg / tol_cfg)
                wb["cfg"].add(w, e_cfg, tol_cfg)
            e_kk = float(np.linalg.norm((s + w * g) - cfg_k))
            worst["kk"] = max(worst["kk"], e_kk / tol)
            wb["kk"].add(w, e_kk, tol)
    _panels(ctx, wb, {"mp": "50 digits: |CG - CFG|", "kern": "kernel: |CG_kernel - CFG_50digits|",
                      "cfg": "kernel: |CFG_kernel - CFG_50digits|", "kk": "kernel vs kernel (informational)"},
            xlabel="guidance weight $w$", xscale="linear")
    return [
        _ratio("50 digits: |CG - CFG| / tol", worst["mp"],
               "Theorem 8.1 bounds of s, s_y, g weighted by w, plus 4u for the sums, rescaled from u to 1e-50"),
        _ratio("kernel: |CG_kernel - CFG_50digits| / tol", worst["kern"],
               "per point: Theorem 8.1 bounds of the float64 s and g (mpmath reference), w-weighted, plus 4u"),
        _ratio("kernel: |CFG_kernel - CFG_50digits| / tol", worst["cfg"],
               "per point: Theorem 8.1 bounds of the float64 s_y and s (mpmath reference), weighted by "
               "w and |1 - w|, plus 4u for the sum"),
        _ratio("kernel vs kernel: |CG - CFG| / tol", worst["kk"],
               "Theorem 8.1 bounds of s, s_y, g weighted by w, plus 4u; informational: shared kernel weights",
               counted=False),
    ]

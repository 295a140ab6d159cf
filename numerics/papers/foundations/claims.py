r"""Claims of the foundations: Tweedie (both orders), the guidance Hessian identity, CG = CFG.

Statements and proofs: ``proofs_notes/foundations.md``.  Every claim is checked on the package's own
float64 numerics (the Numba kernels) at points drawn from the time-``t`` marginal of a labelled mixture
with an atom, a rank-one and full-rank components.  Tolerances are per point:

* rounding: the first-order bounds of Theorem 8.1 (``numerics.references.mpmath_reference``), evaluated from a 50-digit
  mpmath reference at that point, plus a few ulps for the final arithmetic of the identity;
* finite differences (second-order claims), step :math:`h = 10^{-2}\sigma_t`: a Richardson a-posteriori
  estimate.  With the central difference :math:`J_h`, :math:`J_h - J = c h^2 + O(h^4)`, so
  :math:`|J_h - J_{h/2}|` estimates :math:`\tfrac34 c h^2`; we use the extrapolation
  :math:`(4J_{h/2} - J_h)/3`, whose truncation error is :math:`O(h^4)`, and take :math:`|J_h - J_{h/2}|`
  as its bound.  Rounding: if each evaluation of ``f`` errs by at most :math:`\varepsilon_f`, the
  extrapolation errs by at most :math:`(4\cdot 2\varepsilon_f/h + \varepsilon_f/h)/3 = 3\varepsilon_f/h`;
  :math:`\varepsilon_f = c\,u\,(1+\kappa)\,F` with Theorem 8.1's :math:`c = 4(d^{3/2}+K+4)`, the worst
  component condition number :math:`\kappa` and ``F`` the size of the terms the kernel sums before they
  cancel (:math:`(\|x\| + \alpha\max\|\mu_k\|)/\sigma^2` for the score,
  :math:`(\alpha/\sigma^2)(\|x\|/\alpha + \max\|\mu_k\| + 1)` for the guidance vector).

The measured value of each claim is the worst ratio (error / tolerance) over all points; the claim holds
when it is at most 1.
"""
from __future__ import annotations

import numpy as np

from numerics.checks.claim import Context, Measurement, claim
from numerics.constants import UNIT_ROUNDOFF as U
from numerics.mixture import GaussianMixture
from numerics.references.mpmath_reference import guidance_error_bound, mixture_error_bound, mp_reference
from numerics.schedule import alpha_t, sigma2_t

NOTE = "proofs_notes/foundations.md"
QUICK = {"d": 3, "K": 6, "classes": 3, "points_per_time": 4, "times": [0.02, 0.2, 1.0, 3.0]}
FULL = {"d": 8, "K": 16, "classes": 4, "points_per_time": 24, "times": [1e-3, 0.01, 0.05, 0.2, 0.5, 1.0, 3.0, 10.0]}


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


def _setting(ctx: Context):
    p = ctx.params
    gm = labelled_mixture(ctx.rng, p["d"], p["K"], p["classes"])
    for t in p["times"]:
        for x in marginal_points(gm, ctx.rng, t, p["points_per_time"]):
            yield gm, float(t), x


def _ratio_measurement(name: str, worst: float, reason: str, extra: dict) -> Measurement:
    """``error / tolerance <= 1``.  Its value is rounding noise (platform-dependent), so for baseline
    comparison any value in [0, 1] is equivalent: ``drift_tol = 1``."""
    return Measurement(name=name, measured=worst, predicted=1.0, kind="le", tol=0.0, reason=reason,
                       extra={**extra, "drift_tol": 1.0})


def _jacobian(f, x: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference Jacobian of ``f: (d,) -> (d,)`` with Richardson extrapolation and its error estimate."""
    d = x.shape[0]

    def central(step):
        cols = [(f(x + step * e) - f(x - step * e)) / (2 * step) for e in np.eye(d)]
        return np.stack(cols, axis=1)

    Jh, Jh2 = central(h), central(h / 2)
    return (4 * Jh2 - Jh) / 3, np.abs(Jh - Jh2)


FD_STEP = 1e-2  # h / sigma_t

# Each @claim(...) below declares a different claim; their shared keyword layout and the closing
# ``return [_ratio_measurement(...)]`` are declarations (the duplicates tool pairs them), not a repeated helper.


def _eval_error(gm: GaussianMixture, t: float, magnitude: float) -> float:
    r"""Evaluation error :math:`\varepsilon_f = c\,u\,(1+\kappa)\,F` of a kernel output whose summed terms have size ``F``."""
    a, s2 = alpha_t(t), sigma2_t(t)
    kappa = float(np.max((a**2 * gm.evals.max(axis=1) + s2) / s2))
    c = 4 * (gm.d**1.5 + gm.K + 4)
    return c * U * (1 + kappa) * magnitude


@claim(
    id="foundations.tweedie_first_order",
    paper="foundations",
    statement="E[X0 | Xt = x] = (x + sigma_t^2 grad log p_t(x)) / alpha_t for labelled Gaussian mixtures "
              "(atoms and low-rank components included)",
    note=f"{NOTE}#tweedie",
    provenance="standard",
    quick=QUICK,
    full=FULL,
)
def tweedie_first_order(ctx: Context) -> list[Measurement]:
    """Direct posterior mean (kernel) vs Tweedie's map of the kernel score. Control: alpha_t dropped."""
    worst = 0.0
    for gm, t, x in _setting(ctx):
        a, s2 = alpha_t(t), sigma2_t(t)
        s, D = gm.score(x, t), gm.denoiser(x, t)
        tweedie = (x + s2 * s) if ctx.broken else (x + s2 * s) / a
        ref = mp_reference(gm, x, t)
        tol = (mixture_error_bound(gm, ref, "denoiser") * np.linalg.norm(D)
               + mixture_error_bound(gm, ref, "score") * s2 * np.linalg.norm(s) / a
               + 4 * U * (np.linalg.norm(x) + s2 * np.linalg.norm(s)) / a)
        worst = max(worst, float(np.linalg.norm(tweedie - D) / tol))
    return [_ratio_measurement(
        "max |D - Tweedie| / tolerance", worst,
        "per point: Theorem 8.1 bounds of D and s (mpmath reference at that point) plus 4u for the map",
        {"alpha_dropped": ctx.broken})]


@claim(
    id="foundations.tweedie_second_order",
    paper="foundations",
    statement="Cov[X0 | Xt = x] = (sigma^2/alpha^2) (I + sigma^2 Hess log p_t(x))",
    note=f"{NOTE}#second-order-tweedie",
    provenance="standard",
    quick=QUICK,
    full=FULL,
)
def tweedie_second_order(ctx: Context) -> list[Measurement]:
    """Kernel posterior covariance vs the finite-difference Jacobian of the kernel score.
    Control: the inner sigma^2 dropped, (sigma^2/alpha^2)(I + H)."""
    worst = 0.0
    for gm, t, x in _setting(ctx):
        a, s2 = alpha_t(t), sigma2_t(t)
        h = FD_STEP * np.sqrt(s2)
        J, err = _jacobian(lambda z: gm.score(z, t), x, h)
        inner = 1.0 if ctx.broken else s2
        pred = s2 / a**2 * (np.eye(gm.d) + inner * J)
        cov = gm.posterior_cov(x, t)
        mu_max = float(np.linalg.norm(gm.means, axis=1).max())
        rounding = 3 * _eval_error(gm, t, (np.linalg.norm(x) + h * np.sqrt(gm.d) + a * mu_max) / s2) / h
        tol = s2**2 / a**2 * (err + rounding) + 64 * U * (np.abs(cov).max() + np.sum(gm.denoiser(x, t) ** 2))
        worst = max(worst, float(np.max(np.abs(pred - cov) / tol)))
    return [_ratio_measurement(
        "max |Cov - Tweedie2| / tolerance", worst,
        "Richardson a-posteriori error of the FD Hessian (h = 1e-2 sigma_t) + 3 eps_s/h rounding (module doc), "
        "and 64u(|Cov| + |D|^2) for the covariance's total-covariance sum",
        {"sigma2_dropped": ctx.broken})]


@claim(
    id="foundations.hessian_identity",
    paper="foundations",
    statement="Hess_x log p_t(y|x) = (alpha^2/sigma^4)(Cov[X0|x,y] - Cov[X0|x])",
    note=f"{NOTE}#hessian-identity",
    provenance="standard",
    quick=QUICK,
    full=FULL,
)
def hessian_identity(ctx: Context) -> list[Measurement]:
    """Kernel guidance Hessian (covariance form) vs the FD Jacobian of the kernel guidance vector.
    Control: the class-(y+1) covariance in place of class y."""
    worst = 0.0
    for gm, t, x in _setting(ctx):
        a, s2 = alpha_t(t), sigma2_t(t)
        y = int(ctx.rng.integers(gm.n_classes))
        y_cov = (y + 1) % gm.n_classes if ctx.broken else y
        h = FD_STEP * np.sqrt(s2)
        J, err = _jacobian(lambda z: gm.guidance_vector(z, t, y), x, h)
        H = a**2 / s2**2 * (gm.posterior_cov(x, t, y_cov) - gm.posterior_cov(x, t))
        mu_max = float(np.linalg.norm(gm.means, axis=1).max())
        rounding = 3 * _eval_error(gm, t, a / s2 * ((np.linalg.norm(x) + h * np.sqrt(gm.d)) / a + mu_max + 1)) / h
        scale = np.abs(gm.posterior_cov(x, t, y)).max() + np.abs(gm.posterior_cov(x, t)).max() + np.sum(gm.denoiser(x, t) ** 2)
        tol = err + rounding + a**2 / s2**2 * 128 * U * scale
        worst = max(worst, float(np.max(np.abs(J - H) / tol)))
    return [_ratio_measurement(
        "max |Hess - covariance form| / tolerance", worst,
        "Richardson a-posteriori error of the FD Jacobian of g_y (h = 1e-2 sigma_t) + 3 eps_g/h, and the covariance difference's "
        "rounding 128u(|Cov_y| + |Cov| + |D|^2) alpha^2/sigma^4",
        {"wrong_class_cov": ctx.broken})]


@claim(
    id="foundations.cg_equals_cfg",
    paper="foundations",
    statement="with exact scores, classifier guidance s + w g_y equals classifier-free guidance "
              "w s_y + (1 - w) s for every w >= 0",
    note=f"{NOTE}#cg-equals-cfg",
    provenance="standard",
    quick={**QUICK, "weights": [0.0, 1.0, 3.0, 10.0]},
    full={**FULL, "weights": [0.0, 0.5, 1.0, 2.0, 3.0, 7.5, 10.0, 50.0]},
)
def cg_equals_cfg(ctx: Context) -> list[Measurement]:
    """Kernel CG (guidance vector, denoiser route) vs kernel CFG (conditional and unconditional scores).
    Control: the guidance vector of the wrong class."""
    worst = 0.0
    for gm, t, x in _setting(ctx):
        y = int(ctx.rng.integers(gm.n_classes))
        y_g = (y + 1) % gm.n_classes if ctx.broken else y
        s, s_y, g = gm.score(x, t), gm.conditional_score(x, t, y), gm.guidance_vector(x, t, y_g)
        ref, ref_y = mp_reference(gm, x, t), mp_reference(gm.conditional(y), x, t)
        b_s = mixture_error_bound(gm, ref, "score") * np.linalg.norm(s)
        b_sy = mixture_error_bound(gm.conditional(y), ref_y, "score") * np.linalg.norm(s_y)
        b_g = guidance_error_bound(gm, ref, y) * np.linalg.norm(g)
        for w in ctx.params["weights"]:
            diff = np.linalg.norm((s + w * g) - (w * s_y + (1 - w) * s))
            tol = (w * (b_g + b_sy + b_s) + abs(1 - w) * b_s + b_s
                   + 4 * U * (2 * np.linalg.norm(s) + w * np.linalg.norm(g) + w * np.linalg.norm(s_y) + abs(1 - w) * np.linalg.norm(s)))
            if tol == 0.0:  # w = 0 and s = 0 exactly: both sides are exactly 0
                continue
            worst = max(worst, float(diff / tol))
    return [_ratio_measurement(
        "max |CG - CFG| / tolerance", worst,
        "per point: Theorem 8.1 bounds of s, s_y, g (mpmath reference) weighted by w, plus 4u for the sums",
        {"wrong_class_guidance": ctx.broken})]

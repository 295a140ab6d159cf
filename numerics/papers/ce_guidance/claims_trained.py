r"""Trained classifiers: does cross-entropy training give good guidance?  (ce_guidance, our reconstruction.)

Two settings in ``d = 2``, OU time, classifiers fitted by damped Newton on the cross-entropy of ``n`` samples
of :math:`(X_t, Y)` (``numerics/papers/ce_guidance/trained_classifier.py``); :math:`\varepsilon^2` (conditional KL) and the
joint-law guidance MSE are computed by tensor Gauss-Hermite quadrature against the exact posterior.

* **B (certified)**: :class:`~numerics.papers.ce_guidance.trained_classifier.LabelNoiseSetting` -- the true posterior has a
  floor ``rho``, the classifier is a random-Fourier-feature logistic regression with an L2 penalty
  (bounded, smooth logit), so Theorem 1's ``L`` and ``M`` are certified per fit and
  :math:`\mathrm{MSE}\le(\varepsilon/\sqrt{c_M})(2dL+MS_4)` is checked fit by fit.  The family is
  misspecified (the Bayes logit is not a finite Fourier sum), so the errors plateau at the approximation error.
* **Q (well specified)**: two Gaussians with unequal covariances, quadratic-feature logistic regression
  (the Bayes logit is quadratic).  Parametric rate: the MLE satisfies :math:`\hat\theta-\theta^*=O_P(n^{-1/2})`
  and both :math:`\varepsilon^2` and the MSE are smooth non-negative functionals vanishing to second order at
  :math:`\theta^*` (quadratic forms in :math:`\hat\theta-\theta^*` to leading order), so both decay like
  :math:`n^{-1}`: the log-log slope in ``n`` is -1.  Q fits are *outside* Theorem 1's assumptions (a quadratic
  logit error is unbounded: (A2) fails) and are reported as such.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import t as student_t

from numerics.checks.claim import Context, Measurement, claim
from numerics.stats import loglog_slope
from numerics.mixture import GaussianMixture
from numerics.papers.ce_guidance.trained_classifier import (LabelNoiseSetting, LogisticClassifier, QuadraticFeatures,
                                         RandomFourierFeatures, bound_for, certify_label_noise,
                                         errors_quadrature_2d, sample_noised, score_fourth_moment)

PAPER = "ce_guidance"
NOTE = "proofs_notes/ce_guidance.md#trained-classifiers"

SETTING_B = LabelNoiseSetting((1.5, 0.5), ((1.0, 0.3), (0.3, 0.5)), 0.1)


def setting_q() -> GaussianMixture:
    """Two Gaussians, unequal covariances, equal weights (class 0 at (1, 0), class 1 at (-1, 0.5))."""
    return GaussianMixture([0.5, 0.5], [[1.0, 0.0], [-1.0, 0.5]],
                           [[[1.0, 0.3], [0.3, 0.5]], [[0.4, -0.1], [-0.1, 1.5]]], labels=[0, 1])


def _fits_b(ctx: Context, p: dict) -> list[dict]:
    rows = []
    gm = SETTING_B.mixture()
    for t in p["times_b"]:
        s4, s4_err = score_fourth_moment(gm, t, p["quad_n"])
        for n in p["ns_b"]:
            x, y = sample_noised(gm, t, int(n), ctx.rng)
            feats = RandomFourierFeatures(2, p["n_features"], p["rff_scale"], ctx.rng)
            clf = LogisticClassifier(feats, p["lam"]).fit(x, y)
            e = errors_quadrature_2d(gm, t, clf, p["quad_n"], guidance_sign=-1.0 if ctx.broken else 1.0)
            cert = certify_label_noise(SETTING_B, t, clf)
            eps_lo = math.sqrt(max(e.kl - e.kl_err, 0.0))
            bound = bound_for(eps_lo, 2, cert, s4 - s4_err)
            rows.append(dict(setting="B", t=t, n=int(n), kl=e.kl, mse=e.mse, kl_err=e.kl_err, mse_err=e.mse_err,
                             L=cert.L, M=cert.M, certified=cert.ok, why=cert.why, S4=s4, bound=bound))
    return rows


def _fits_q(ctx: Context, p: dict) -> list[dict]:
    rows = []
    gm = setting_q()
    for t in p["times_q"]:
        for n in p["ns_q"]:
            for rep in range(p["reps"]):
                x, y = sample_noised(gm, t, int(n), ctx.rng)
                if ctx.broken:
                    y = 1 - y  # negative control: trained on swapped labels
                clf = LogisticClassifier(QuadraticFeatures(2)).fit(x, y)
                e = errors_quadrature_2d(gm, t, clf, p["quad_n"])
                B, _, _ = clf.certificates()
                rows.append(dict(setting="Q", t=t, n=int(n), rep=rep, kl=e.kl, mse=e.mse, kl_err=e.kl_err,
                                 mse_err=e.mse_err, certified=False,
                                 why="quadratic logit error unbounded: |r| <= M (A2) fails" if not math.isfinite(B) else "",
                                 bound=math.inf))
    return rows


def _slope_measure(rows, key, level):
    n = np.array([r["n"] for r in rows], float)
    v = np.array([r[key] for r in rows], float)
    fit = loglog_slope(n, v, level=level)
    q = float(student_t.ppf(0.5 + level / 2, fit.n - 2))
    return fit, q * fit.se


@claim(id="ce_guidance.trained_classifiers", paper=PAPER,
       statement="cross-entropy-trained logistic classifiers (random Fourier / quadratic features, n = 1e2..1e5 samples of X_t): "
                 "every certified fit satisfies MSE <= (eps/sqrt(c_M))(2dL + M S4); in the well-specified quadratic family "
                 "eps^2 and the guidance MSE both decay like n^-1 (parametric rate), so MSE = O(eps^2)",
       note=NOTE, provenance="reconstructed",
       quick={"times_b": [0.1, 1.0], "ns_b": [100, 1000, 10000], "times_q": [0.5], "ns_q": [100, 1000, 10000], "reps": 4,
              "n_features": 16, "rff_scale": 1.0, "lam": 1e-3, "quad_n": 40, "level": 0.99, "rate_n_min": 100},
       full={"times_b": [0.1, 0.5, 1.0], "ns_b": [100, 1000, 10000, 100000], "times_q": [0.1, 0.5, 1.0],
             "ns_q": [100, 316, 1000, 3162, 10000, 31623, 100000], "reps": 6,
             "n_features": 24, "rff_scale": 1.0, "lam": 1e-3, "quad_n": 64, "level": 0.99, "rate_n_min": 316})
def trained_classifiers(ctx: Context) -> list[Measurement]:
    """Control: the quadratic classifiers are trained on swapped labels (eps^2 and MSE stop decaying: the slopes
    are flagged) and the Fourier classifiers' guidance is used with the wrong sign (recorded: the Theorem-1 bound
    is too loose to flag it at these eps, a finding reported, not hidden)."""
    p = ctx.params
    rows_b, rows_q = _fits_b(ctx, p), _fits_q(ctx, p)
    ms = []
    certified = [r for r in rows_b if r["certified"]]
    for r in certified:
        ms.append(Measurement(
            name=f"B t={r['t']} n={r['n']}: MSE <= Theorem-1 bound", measured=r["mse"], predicted=r["bound"], kind="le",
            ci=(r["mse"] - r["mse_err"], r["mse"] + r["mse_err"]),
            reason="Theorem 1 is an inequality; MSE upper end = quadrature value + halved-rule error, bound evaluated at "
                   "the lower ends of eps (KL - its quadrature error) and S4",
            extra={"eps2": r["kl"], "L": r["L"], "M": r["M"], "S4": r["S4"], "ratio": r["mse"] / r["bound"],
                   "wrong_sign_guidance": ctx.broken}))
    outside = [r for r in rows_b + rows_q if not r["certified"]]
    ms.append(Measurement(
        name="fits checked against the bound (certified)", measured=float(len(certified)), predicted=float(len(rows_b)),
        kind="equal", tol=0.0, reason="count: every Fourier fit must be certified (bounded logit, floored posterior)",
        extra={"outside_assumptions": len(outside),
               "outside_reasons": sorted({r["why"] for r in outside}),
               "max_ratio_mse_over_bound": max((r["mse"] / r["bound"] for r in certified), default=float("nan"))}))
    level = p["level"]
    for key, label in (("kl", "eps^2"), ("mse", "guidance MSE")):
        for t in p["times_q"]:
            sub = [r for r in rows_q if r["t"] == t and r["n"] >= p["rate_n_min"]]
            fit, half = _slope_measure(sub, key, level)
            ms.append(Measurement(
                name=f"Q t={t}: slope of log {label} vs log n", measured=fit.slope, predicted=-1.0, kind="equal", tol=half,
                reason=f"parametric rate n^-1 (well-specified MLE); window = {level:.0%} t-interval half-width "
                       f"t_(n-2) x SE of the OLS slope over all {p['reps']} replicate fits per n >= {p['rate_n_min']} "
                       "(full profile drops n = 100: pre-asymptotic, O(n^-2) terms not small at t = 0.1)",
                extra={"se": fit.se, "r2": fit.r2, "swapped_labels": ctx.broken}))
    if not ctx.broken:
        _draw(ctx, rows_b, rows_q)
    # full table for the report
    ms[-1].extra["table"] = [{k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                              for k, v in r.items() if k != "why"} for r in rows_b + rows_q]
    return ms


def _draw(ctx, rows_b, rows_q):
    import matplotlib as mpl
    import matplotlib.cm as cm
    from matplotlib.colors import LogNorm

    fig = ctx.figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot(111)
    ns = [r["n"] for r in rows_b + rows_q]
    norm = LogNorm(min(ns), max(ns))
    cmap = mpl.colormaps["viridis"]
    times = sorted({r["t"] for r in rows_b + rows_q})
    markers = dict(zip(times, "osD^v<>"))
    for r in rows_b:
        c = cmap(norm(r["n"]))
        e = math.sqrt(r["kl"])
        ax.loglog([e, e], [r["mse"], r["bound"]], "-", color=c, lw=0.6, alpha=0.5)
        ax.loglog(e, r["mse"], markers[r["t"]], color=c, ms=6)
        ax.loglog(e, r["bound"], "_", color=c, ms=10, mew=2)
    for r in rows_q:
        ax.loglog(math.sqrt(r["kl"]), r["mse"], markers[r["t"]], mfc="none", mec=cmap(norm(r["n"])), ms=5)
    eps = np.array([math.sqrt(r["kl"]) for r in rows_b + rows_q])
    xs = np.geomspace(eps.min(), eps.max(), 50)
    cert = [r for r in rows_b if r["certified"]]
    if cert:
        k = min(r["bound"] / math.sqrt(r["kl"]) for r in cert)
        ax.loglog(xs, k * xs, "k--", lw=1, label="smallest certified bound slope (Theorem 1, linear in eps)")
    ax.loglog(xs, 5 * xs**2, "k:", lw=1, label=r"$5\varepsilon^2$ (parametric: MSE $\propto\varepsilon^2$)")
    for t in times:
        ax.plot([], [], markers[t], color="gray", label=f"t={t}")
    ax.plot([], [], "o", color="gray", label="filled: Fourier (certified); bar: its bound")
    ax.plot([], [], "o", mfc="none", mec="gray", label="open: quadratic (outside A2)")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="training samples n")
    ax.set_xlabel(r"$\varepsilon = \sqrt{\mathrm{conditional\ KL}}$ (quadrature)")
    ax.set_ylabel("guidance MSE (quadrature)")
    ax.set_title("trained classifiers: MSE vs eps, Theorem-1 bounds")
    ax.legend(fontsize=6, loc="upper left")

r"""Claims of a demo paper, "demo": the class posterior of two Gaussian classes in 1-D.

Classes :math:`y \in \{0, 1\}` with prior :math:`w_y` and :math:`X \mid y \sim N(\mu_y, s^2)`. The
code under test computes the posterior from the class densities (Bayes' rule); the theory says

* it is logistic in x: :math:`p(1 \mid x) = \sigma(a x + b)`, :math:`a = (\mu_1 - \mu_0)/s^2`,
  :math:`b = (\mu_0^2 - \mu_1^2)/(2 s^2) + \log(w_1/w_0)`;
* it averages to the prior: :math:`E[p(1 \mid X)] = w_1` for X drawn from the mixture.

The negative control is a common bug: the posterior computed without the class prior (as if the
classes were equally likely). Only NumPy and the harness's public ``claim`` API are used, as in any
package outside guidance-verify.
"""
from __future__ import annotations

import math

import numpy as np

from numerics.checks.claim import Context, Measurement, claim

U = 2.0**-53  # float64 unit roundoff
NOTE = "tests/plugins/gv_demo_claims/claims.py"
SETTING = {"w": [0.3, 0.7], "mu": [-1.0, 1.0], "s2": 1.0}
#: Two-sided false-alarm probability of the Monte-Carlo tolerance (Hoeffding).
FALSE_ALARM = 1e-6


def posterior(x: np.ndarray, w, mu, s2: float, use_prior: bool = True) -> np.ndarray:
    """p(1 | x) from the class densities; ``use_prior=False`` is the bug of the negative control."""
    q = (x[:, None] - np.asarray(mu)[None, :]) ** 2 / (2.0 * s2)
    dens = np.exp(-q) / math.sqrt(2.0 * math.pi * s2)
    joint = dens * (np.asarray(w)[None, :] if use_prior else 1.0)
    return joint[:, 1] / joint.sum(axis=1)


def draw(rng: np.random.Generator, n: int, w, mu, s2: float) -> np.ndarray:
    """n draws of X from the mixture."""
    y = rng.random(n) < w[1]
    return np.where(y, mu[1], mu[0]) + math.sqrt(s2) * rng.standard_normal(n)


@claim(id="demo.posterior_is_logistic", paper="demo",
       statement="the class posterior of two Gaussian classes with one variance is sigma(a x + b)",
       note=NOTE, provenance="standard", quick={**SETTING, "n": 512}, full={**SETTING, "n": 8192},
       controls={"prior_dropped": "Bayes' rule without the class prior w_k"})
def posterior_is_logistic(ctx: Context) -> list[Measurement]:
    """Bayes' rule from the densities against the closed form, point by point, in units of a
    first-order rounding bound."""
    p = ctx.params
    w, mu, s2 = p["w"], p["mu"], p["s2"]
    x = draw(ctx.rng, p["n"], w, mu, s2)
    a = (mu[1] - mu[0]) / s2
    b = (mu[0] ** 2 - mu[1] ** 2) / (2.0 * s2) + math.log(w[1] / w[0])
    closed = 1.0 / (1.0 + np.exp(-(a * x + b)))
    bayes = posterior(x, w, mu, s2, use_prior=not ctx.bug("prior_dropped"))
    # First order in u, allowing 4 ulp for each exp and log. Bayes: each w_k e^{-q_k} / c errs by
    # <= u (4 q_k + 8) relative (q_k itself by 4u relative), the ratio A_1 / (A_0 + A_1) <= 1 adds
    # the larger of the two twice plus 2u: <= u (8 max q + 18). Closed form: z = a x + b errs by
    # <= 6u (|a x| + B), B = (mu_0^2 + mu_1^2)/(2 s^2) + |log(w_1/w_0)|; sigma' <= 1/4 and the
    # evaluation of sigma adds 6u: <= u (1.5 (|a x| + B) + 6). Summed and rounded up:
    q_max = np.max((x[:, None] - np.asarray(mu)[None, :]) ** 2, axis=1) / (2.0 * s2)
    B = (mu[0] ** 2 + mu[1] ** 2) / (2.0 * s2) + abs(math.log(w[1] / w[0]))
    tol = U * (8.0 * q_max + 2.0 * (np.abs(a * x) + B) + 24.0)
    worst = float(np.max(np.abs(bayes - closed) / tol))
    return [Measurement(
        name="max |Bayes - logistic| / rounding bound", measured=worst, predicted=1.0, kind="le",
        tol=0.0, reason="per-point first-order float64 bound u (8 max q + 2 (|a x| + B) + 24)",
        # the value is rounding noise; any value in [0, 1] is the same result on another machine
        extra={"n": p["n"], "drift_tol": 1.0})]


@claim(id="demo.posterior_averages_to_prior", paper="demo",
       statement="E[p(1 | X)] = w_1 for X drawn from the mixture",
       note=NOTE, provenance="standard", quick={**SETTING, "n": 16384},
       full={**SETTING, "n": 262144},
       controls={"prior_dropped": "Bayes' rule without the class prior w_k"})
def posterior_averages_to_prior(ctx: Context) -> list[Measurement]:
    """Monte Carlo mean of the posterior against the prior w_1, Hoeffding tolerance."""
    p = ctx.params
    w, mu, s2, n = p["w"], p["mu"], p["s2"], p["n"]
    mean = float(np.mean(posterior(draw(ctx.rng, n, w, mu, s2), w, mu, s2,
                                   use_prior=not ctx.bug("prior_dropped"))))
    # p(1 | x) lies in [0, 1]: P(|mean - w_1| >= t) <= 2 exp(-2 n t^2) = FALSE_ALARM (Hoeffding);
    # rounding (n u) is far below.
    tol = math.sqrt(math.log(2.0 / FALSE_ALARM) / (2.0 * n)) + n * U
    return [Measurement(
        name="mean posterior of class 1", measured=mean, predicted=w[1], kind="equal", tol=tol,
        reason=f"Hoeffding for a mean of n values in [0, 1], false alarm {FALSE_ALARM:g}",
        extra={"n": n})]

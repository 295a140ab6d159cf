"""Two tiny, self-contained demo claims (for tests and for reading as templates).

They register only into :data:`CLAIMS` (this module's own dict), never into the default
``REGISTRY``, so importing this module does not change what ``guidance-verify run`` checks. Run them
with ``GUIDANCE_VERIFY_CLAIM_MODULES=numerics.checks.examples guidance-verify run``.

- ``examples.gaussian_mean``: Monte Carlo; the sample mean of N(mu, 1) draws is mu within a
  normal-quantile tolerance (holds). Control: draws from N(mu + shift, 1).
- ``examples.variance_identity_fails``: a counterexample; the naive "identity"
  mean(x^2) = mean(x)^2 fails for x = 1..n, by exactly (n^2 - 1)/12 (fails-as-predicted).
  Control: a constant x, for which the predicted failure does not happen.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from numerics.checks.claim import Claim, Context, Measurement, claim
from numerics.stats import mean_ci

__all__ = ["CLAIMS"]

#: The demo claims, id -> Claim.
CLAIMS: dict[str, Claim] = {}

#: Two-sided false-alarm probability of the Monte-Carlo tolerance below.
FALSE_ALARM = 1e-6


# Each demo spells out its whole @claim(...) (no shared partial), so that each reads as a template.
@claim(
    id="examples.gaussian_mean",
    paper="examples",
    statement="the sample mean of n i.i.d. N(mu, 1) draws estimates mu",
    note="numerics/checks/examples.py (demo)",
    provenance="standard",
    expect="holds",
    quick={"mu": 0.3, "n": 4096, "shift": 0.5},
    full={"mu": 0.3, "n": 65536, "shift": 0.5},
    controls={"shifted_mean": "the draws are centred at mu + shift (an offset left in the sampler)"},
    registry=CLAIMS,
)
def gaussian_mean(ctx: Context) -> list[Measurement]:
    """Sample mean vs mu; tolerance z_{1 - a/2} / sqrt(n) with a = FALSE_ALARM (exact: var 1)."""
    p = ctx.params
    mu = p["mu"] + (p["shift"] if ctx.bug("shifted_mean") else 0.0)
    x = ctx.rng.normal(mu, 1.0, size=p["n"])
    est = mean_ci(x, level=0.95, method="normal")
    tol = NormalDist().inv_cdf(1.0 - FALSE_ALARM / 2.0) / math.sqrt(p["n"])
    return [Measurement(
        name="sample mean", measured=est.mean, predicted=p["mu"], kind="equal", tol=tol,
        ci=est.ci,
        reason=f"known unit variance: |mean - mu| <= z/sqrt(n) fails with probability "
               f"{FALSE_ALARM:g} (z = {tol * math.sqrt(p['n']):.3f})",
        extra={"n": p["n"]},
    )]


@claim(
    id="examples.variance_identity_fails",
    paper="examples",
    statement="mean(x^2) = mean(x)^2 fails for x = 1..n; the gap is (n^2 - 1)/12",
    note="numerics/checks/examples.py (demo)",
    provenance="standard",
    expect="fails-as-predicted",
    quick={"n": 1000},
    full={"n": 1_000_000},
    controls={"constant_data": "the data array is filled with one value instead of 1..n"},
    registry=CLAIMS,
)
def variance_identity_fails(ctx: Context) -> list[Measurement]:
    """The gap mean(x^2) - mean(x)^2 for x = 1..n, against its exact value (n^2 - 1)/12."""
    n = ctx.params["n"]
    x = np.full(n, 7.0) if ctx.bug("constant_data") else np.arange(1.0, n + 1.0)
    gap = float(np.mean(x * x) - np.mean(x) ** 2)
    predicted = (n * n - 1) / 12.0
    # Both means are sums of n terms <= n^2: relative rounding <= n * u each (u = 2^-53); the
    # difference loses it against mean(x^2) ~ n^2 / 3, so |error| <= 2 n u n^2 / 3 + ulp slack.
    tol = 2.0 * n * 2.0**-53 * n * n / 3.0 + 4.0 * np.spacing(predicted)
    return [
        Measurement(name="identity violated", measured=float(gap > tol), kind="true",
                    reason="qualitative event: the gap exceeds the rounding tolerance"),
        Measurement(name="gap", measured=gap, predicted=predicted, kind="equal", tol=tol,
                    reason="float64 summation: 2 n u * n^2/3 with u = 2^-53, plus 4 ulp"),
    ]

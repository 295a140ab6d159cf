"""diffusers' DEISMultistepScheduler ("deis", log-rho) against the derived DEIS update (proofs_notes/integrators.md
§4g; numerics.audit.oracle.deis_prediction).

* Every step and every run, orders 1-3 (``solver_order``), the three prediction types, three spacings, tables cast
  to float64 and as shipped, agree with the derived update within the derived rounding bound; the orders the driver
  records are the ones the scheduler used (counted by a subclass).
* Realistic wrong DEIS steps (the log(rho) nodes of the order-2 step swapped; the two history calls of the order-3
  step swapped; the 1/(log rho_b - log rho_c) factor dropped) are reported as step findings by the audit.
* Order, without the audit's driver, oracle or generated coefficients: feeding the scheduler the exact state and
  noise prediction of a Gaussian target N(M, S^2) at every call (x = alpha M + sqrt(alpha^2 S^2 + sigma^2) Z on the
  probability-flow trajectory) leaves its middle step's local error alone, ~ C h^(p+1) in the log-SNR step h:
  halving the step divides it by 2^(p+1).  The test decides between p and p + 1 at the midpoint exponents.
  And the run's output (the flow map's error against the exact map, :func:`numerics.audit.checks.law_and_order`) on
  an exponential-sigma grid (uniform in log rho, so every step halves as n doubles) falls as n^-p for p = 1, 2.
* The generated weights against an independent mpmath quadrature of the Lagrange basis in log(rho) over rho at random
  nodes (the definition, not the SymPy closed form).
"""
import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
mp = pytest.importorskip("mpmath")

from numerics.audit import checks, diffusers_driver as dd, oracle as O  # noqa: E402
from numerics.generated import integrator_coeffs as IC  # noqa: E402

SPEC = dd.SPECS["DEISMultistep"]


def _spec(order: int) -> dd.SchedulerSpec:
    return dataclasses.replace(SPEC, name=f"DEISMultistep-{order}", config=(("solver_order", order),), order=order)


# ------------------------------------------------------------------------------------------ agreement
@pytest.mark.parametrize("order", [1, 2, 3])
def test_deis_steps_and_runs_agree_with_derived_update(order):
    worst = {"float64": [0.0, 0.0], "native": [0.0, 0.0]}
    for tables in ("float64", "native"):
        for pred in ("epsilon", "sample", "v_prediction"):
            for spacing in ("leading", "trailing", "linspace"):
                for n in (1, 2, 3, 7, 10, 50):
                    rec = dd.run(SPEC, n, checks.TARGET, checks.Z_STEP, tables=tables, prediction_type=pred,
                                 config={"timestep_spacing": spacing, "solver_order": order})
                    sc, rc = checks.step_check(rec), checks.run_check(rec)
                    worst[tables][0] = max(worst[tables][0], sc["ratio"])
                    worst[tables][1] = max(worst[tables][1], rc["ratio"])
    print(f"DEIS order {order}: max step / run error over the bound:", worst)
    assert all(v <= 1.0 for w in worst.values() for v in w), worst


def test_recorded_orders_are_the_schedulers():
    """The orders the driver records (warm-up 1, 2, ..., lower_order_final below 15 steps) are the update methods the
    scheduler called."""
    used = []

    class Counting(diffusers.DEISMultistepScheduler):
        def deis_first_order_update(self, *a, **k):
            used.append(1)
            return super().deis_first_order_update(*a, **k)

        def multistep_deis_second_order_update(self, *a, **k):
            used.append(2)
            return super().multistep_deis_second_order_update(*a, **k)

        def multistep_deis_third_order_update(self, *a, **k):
            used.append(3)
            return super().multistep_deis_third_order_update(*a, **k)

    for order in (1, 2, 3):
        for n in (1, 2, 3, 5, 14, 15, 20):
            used.clear()
            cfg = {"solver_order": order}
            rec = dd.run(_spec(order), n, checks.TARGET, checks.Z_STEP, scheduler=Counting(**cfg))
            # the driver's first step also steps two copies (its float32-input probe): the last n calls are the run's
            assert [s.order for s in rec.steps] == used[-n:] and len(used) == n + 2, (order, n, used)


def test_zero_last_step_of_exponential_grid():
    """The exponential-sigma grid repeats its last sigma: the last step is the identity on both sides."""
    for order in (2, 3):
        rec = dd.run(SPEC, 12, checks.TARGET, checks.Z_STEP,
                     config={"use_exponential_sigmas": True, "solver_order": order})
        assert rec.steps[-1].t_out == rec.steps[-1].t_in
        assert checks.step_check(rec)["ratio"] <= 1.0 and checks.run_check(rec)["ratio"] <= 1.0


def test_bad_history_is_refused():
    x = np.zeros((1, 2))
    with pytest.raises(ValueError, match="t_hist"):
        O.deis_prediction(checks.TARGET, x, 1.0, 0.5, [x, x, x], [3.0, 2.0, 1.5])
    with pytest.raises(ValueError, match="t_hist"):
        O.deis_prediction(checks.TARGET, x, 1.0, 0.5, [x], [0.8])
    with pytest.raises(ValueError, match="x_hist"):
        O.deis_prediction(checks.TARGET, x, 1.0, 0.5, [], [2.0])


# ------------------------------------------------------------------------------------------ wrong DEIS
def _log_rho(sch, k):
    return math.log(float(sch.sigmas[k]))


class SwappedNodes(diffusers.DEISMultistepScheduler):
    """Order 2 with the log(rho) nodes of the two calls swapped (each output integrated against the other's basis)."""

    def multistep_deis_second_order_update(self, model_output_list, *a, sample=None, **k):
        m = list(model_output_list)
        m[-1], m[-2] = m[-2], m[-1]
        return super().multistep_deis_second_order_update(m, *a, sample=sample, **k)


class SwappedHistory(diffusers.DEISMultistepScheduler):
    """Order 3 with its two history calls swapped (the outputs at rho_{s1} and rho_{s2} exchanged)."""

    def multistep_deis_third_order_update(self, model_output_list, *a, sample=None, **k):
        m = list(model_output_list)
        m[-2], m[-3] = m[-3], m[-2]
        return super().multistep_deis_third_order_update(m, *a, sample=sample, **k)


class DroppedDenominator(diffusers.DEISMultistepScheduler):
    """Order 2 with the 1/(log rho_b - log rho_c) factor of both coefficients dropped: each coefficient times its
    denominator, i.e. the outputs scaled by (log rho_{s0} - log rho_{s1}) and its negative."""

    def multistep_deis_second_order_update(self, model_output_list, *a, sample=None, **k):
        i = self.step_index
        d = _log_rho(self, i) - _log_rho(self, i - 1)
        m = list(model_output_list)
        m[-1], m[-2] = m[-1] * d, m[-2] * (-d)
        return super().multistep_deis_second_order_update(m, *a, sample=sample, **k)


def _tiny():
    return checks.Profile(steps_ns=(2, 8), order_ns=(10, 20, 40), finite_ns=(1, 2), predictions=("epsilon",),
                          spacings=("leading",), betas=("linear",))


@pytest.mark.parametrize("bad,order", [(SwappedNodes, 2), (SwappedHistory, 3), (DroppedDenominator, 2)])
def test_wrong_deis_is_reported(bad, order):
    row = checks.audit_scheduler(_spec(order), _tiny(), scheduler_factory=lambda cfg: bad(**cfg))
    keys = {f["key"] for f in row["findings"]}
    worst = row["step_float64"]["max_err_over_bound"]
    print(f"{bad.__name__}: step error / bound {worst:.3g}; findings {sorted(keys)}")
    assert any(":step:step" in key for key in keys) and worst > 1e3


def test_right_deis_is_not_reported():
    for order in (2, 3):
        row = checks.audit_scheduler(_spec(order), _tiny(),
                                     scheduler_factory=lambda cfg: diffusers.DEISMultistepScheduler(**cfg))
        assert row["findings"] == [] and row["step_float64"]["max_err_over_bound"] <= 1.0


# ------------------------------------------------------------------------------------------ order
M, S, Z = 0.7, 0.5, 1.3


def _exact(a, sg):
    return a * M + np.sqrt(a * a * S * S + sg * sg) * Z


def _eps(x, a, sg):
    D = M + a * S * S / (a * a * S * S + sg * sg) * (x - a * M)
    return (x - a * D) / sg


def _middle_step_error(n: int, order: int) -> tuple[float, float]:
    """(|scheduler - exact|, log-rho step) of the middle step of an n-step run fed the exact trajectory."""
    sch = diffusers.DEISMultistepScheduler(solver_order=order, timestep_spacing="linspace")
    sch.set_timesteps(n)
    sch.sigmas = sch.sigmas.double()
    rho = sch.sigmas.numpy()
    a = 1.0 / np.sqrt(1.0 + rho * rho)
    sg = rho * a
    i = n // 2
    for k, t in enumerate(sch.timesteps[:i + 1]):
        x = torch.tensor([_exact(a[k], sg[k])], dtype=torch.float64)
        out = sch.step(_eps(x, a[k], sg[k]), t, x).prev_sample
    return abs(float(out[0]) - _exact(a[i + 1], sg[i + 1])), math.log(rho[i] / rho[i + 1])


@pytest.mark.parametrize("order", [1, 2, 3])
def test_deis_local_error_is_of_order_p_plus_1(order):
    e1, h1 = _middle_step_error(25, order)
    e2, h2 = _middle_step_error(50, order)
    assert min(e1, e2) > 1e-9   # truncation far above float64 rounding
    local = math.log(e1 / e2) / math.log(h1 / h2)
    print(f"DEIS order {order}: local error exponent {local:.3f} (theory {order + 1})")
    assert order + 0.5 < local < order + 1.5, local


@pytest.mark.parametrize("order", [1, 2])
def test_deis_run_error_is_of_order_p(order):
    law = checks.law_and_order(_spec(order), (40, 80, 160), config={"use_exponential_sigmas": True,
                                                                     "solver_order": order})
    print(f"DEIS order {order}: fitted global order {law['observed_order']:.3f} (theory {order})")
    assert abs(law["observed_order"] - order) < 0.2, law["observed_order"]


# ------------------------------------------------------------------------------------------ coefficients
def test_generated_weights_are_the_log_rho_lagrange_integrals():
    """-rho_s W_pj = int_{rho_t}^{rho_s} L_j(log rho) drho by mpmath quadrature at random nodes (30 digits), log-SNR
    steps from 1e-3 to 3 and log rho from -5 to 5 (the schedules' range)."""
    rng = np.random.default_rng(23)
    worst = 0.0
    for _ in range(30):
        h, hp, hp2 = np.exp(rng.uniform(np.log(1e-3), np.log(3.0), 3))
        L0f = rng.uniform(-5.0, 5.0)
        W = IC.deis_weights(float(h), float(hp), float(hp2))
        with mp.workdps(30):
            # log rho at t, t_p, t_p2 (earlier calls: larger rho) and at s: the steps are exactly h, hp, hp2
            L0 = mp.mpf(L0f)
            nodes = [L0, L0 + mp.mpf(hp), L0 + mp.mpf(hp) + mp.mpf(hp2)]
            Ls = L0 - mp.mpf(h)
            for p in (1, 2, 3):
                for j in range(p):
                    def basis(rho, j=j, p=p):
                        L = mp.log(rho)
                        return mp.fprod((L - nodes[m]) / (nodes[j] - nodes[m]) for m in range(p) if m != j)
                    c = mp.quad(basis, [mp.exp(L0), mp.exp(Ls)])
                    got = -mp.exp(Ls) * mp.mpf(W[p * (p - 1) // 2 + j])
                    worst = max(worst, float(abs(got - c) / abs(c)))
    print(f"generated DEIS weights vs mpmath quadrature: max relative error {worst:.2e}")
    assert worst < 1e-13   # the generated coefficients' relative tolerance of tests/test_codegen.py (REL_TOL)

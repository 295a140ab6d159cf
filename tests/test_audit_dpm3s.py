"""DPMSolverSinglestep at solver_order=3 (DPM-Solver++(3S), proofs_notes/integrators.md §4i) in the diffusers audit.

* Agreement: every step (orders 1, 2, 3 of the order list 1, 2, 3, 1, 2, 3, ...) and every run of the
  scheduler, midpoint and heun, agrees with the derived update within the derived rounding bound, with float64 tables and as shipped;
  solver_order=1 is DDIM; the orders the driver records are the update methods the scheduler called (a subclass counts).
* Realistic wrong 3S steps are reported as step findings by the audit: heun's two intermediate calls swapped (r0 and
  r1 exchanged; for the midpoint this is the next case), the midpoint's line through the first intermediate call
  instead of the second (the intermediate level one index off), heun's second divided difference halved (its D2 = 2 (D1_1 - D1_0)/(r0 - r1) without the 2: the
  psi_2 / D2 pairing of DPMSolverMultistep's order 3), and the order-3 step restarted from the current sample instead
  of the saved one.
* Order, without the audit's driver, oracle or generated coefficients: the scheduler fed the exact state and noise
  prediction of a Gaussian target at every call, so a block (saved state, two intermediate calls) has its quadrature
  error alone.  On steps uniform in the log-SNR (r0 = 2/3) both variants' block error falls as h^4; on a grid whose
  blocks have r0 = 1/2, r1 = 1/4 the midpoint's falls as h^3 (its c2 h^3 (r0/2 - 1/3) term) and heun's still as h^4
  (the quadratic through the three calls).  The run's output on uniform log-SNR steps converges at order 3, and
  at order 2 for both variants on blocks with r0 = 1/2 (heun's weight of its DDIM state at s1 is O(h) there).
* The generated coefficients against an mpmath quadrature of the quadratic / line through the nodes (the definition,
  not the SymPy closed form).
"""
import dataclasses
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
mp = pytest.importorskip("mpmath")

from numerics.audit import checks, diffusers_driver as dd, oracle as O  # noqa: E402
from numerics.generated import integrator_coeffs as IC  # noqa: E402

MID, HEUN = dd.SPECS["DPMSolverSinglestep-3"], dd.SPECS["DPMSolverSinglestep-3-heun"]


# ------------------------------------------------------------------------------------------ agreement
@pytest.mark.parametrize("spec", [MID, HEUN, dd.SPECS["DPMSolverSinglestep-1"]], ids=lambda s: s.name)
def test_dpm3s_steps_and_runs_agree_with_derived_update(spec):
    worst = {"float64": [0.0, 0.0], "native": [0.0, 0.0]}
    for tables in ("float64", "native"):
        for pred in ("epsilon", "sample", "v_prediction"):
            for beta in ("linear", "scaled_linear", "squaredcos_cap_v2"):
                for n in (1, 2, 3, 4, 5, 6, 7, 10, 50):
                    rec = dd.run(spec, n, checks.TARGET, checks.Z_STEP, tables=tables, prediction_type=pred,
                                 config={"beta_schedule": beta})
                    sc, rc = checks.step_check(rec), checks.run_check(rec)
                    worst[tables][0] = max(worst[tables][0], sc["ratio"])
                    worst[tables][1] = max(worst[tables][1], rc["ratio"])
    print(f"{spec.name}: max step / run error over the bound: {worst}")
    assert all(v <= 1.0 for w in worst.values() for v in w), worst


def test_recorded_orders_are_the_schedulers():
    used = []

    class Counting(diffusers.DPMSolverSinglestepScheduler):
        def dpm_solver_first_order_update(self, *a, **k):
            used.append(1)
            return super().dpm_solver_first_order_update(*a, **k)

        def singlestep_dpm_solver_second_order_update(self, *a, **k):
            used.append(2)
            return super().singlestep_dpm_solver_second_order_update(*a, **k)

        def singlestep_dpm_solver_third_order_update(self, *a, **k):
            used.append(3)
            return super().singlestep_dpm_solver_third_order_update(*a, **k)

    for n in (1, 2, 3, 4, 5, 6, 7, 12):
        used.clear()
        rec = dd.run(MID, n, checks.TARGET, checks.Z_STEP, scheduler=Counting(solver_order=3))
        assert [s.order for s in rec.steps] == used[-n:], (n, used)
        assert 3 in used or n < 4


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match="t_prev2"):
        O.dpm3s_coeffs("dpm3s", 1.0, 0.5, 0.9, 1.5 - 0.7)
    with pytest.raises(ValueError, match="kind"):
        O.dpm3s_coeffs("dpm3", 1.0, 0.5, 1.2, 1.5)
    with pytest.raises(ValueError, match="t_prev2"):
        O.bound_counts("dpm3sh", 1.0, 0.5, 1.2)


# ------------------------------------------------------------------------------------------ wrong 3S
def _lams(sch):
    i = sch.step_index
    sig = sch.sigmas[i - 2:i + 2].double()
    a = 1.0 / torch.sqrt(sig * sig + 1.0)
    return torch.log(a) - torch.log(sig * a)   # lambda_{s2}, lambda_{s1}, lambda_{s0}, lambda_t


class SwappedIntermediates(diffusers.DPMSolverSinglestepScheduler):
    """The two intermediate calls' outputs exchanged (each weighted as the other: r0 and r1 swapped)."""

    def singlestep_dpm_solver_third_order_update(self, model_output_list, *a, sample=None, **k):
        m = list(model_output_list)
        m[-1], m[-2] = m[-2], m[-1]
        return super().singlestep_dpm_solver_third_order_update(m, *a, sample=sample, **k)


class FirstIntermediate(diffusers.DPMSolverSinglestepScheduler):
    """The line through the first intermediate call's output at the second's level (one index off)."""

    def singlestep_dpm_solver_third_order_update(self, model_output_list, *a, sample=None, **k):
        m = list(model_output_list)
        m[-1] = m[-2]
        return super().singlestep_dpm_solver_third_order_update(m, *a, sample=sample, **k)


class HalvedD2(diffusers.DPMSolverSinglestepScheduler):
    """heun with the curvature halved (D2 = (D1_1 - D1_0)/(r0 - r1), the 2 dropped), D1 kept: the outputs at the two
    intermediate levels replaced by the quadratic through the same D_{s2} and slope a with b/2."""

    def singlestep_dpm_solver_third_order_update(self, model_output_list, *a, sample=None, **k):
        l2, l1, l0, _ = _lams(self)
        h1, h0 = l1 - l2, l0 - l2
        m2, m1, m0 = model_output_list[-3], model_output_list[-2], model_output_list[-1]
        d1, d0 = m1 - m2, m0 - m2
        aa = (h0 * h0 * d1 - h1 * h1 * d0) / (h1 * h0 * (h0 - h1))
        bb = (h1 * d0 - h0 * d1) / (h1 * h0 * (h0 - h1))
        m = list(model_output_list)
        m[-2], m[-1] = m2 + aa * h1 + 0.5 * bb * h1 * h1, m2 + aa * h0 + 0.5 * bb * h0 * h0
        return super().singlestep_dpm_solver_third_order_update(m, *a, sample=sample, **k)


class CurrentSample(diffusers.DPMSolverSinglestepScheduler):
    """The order-3 step from the current sample (the second intermediate state) instead of the saved one."""

    def step(self, model_output, timestep, sample, *a, **k):
        self._current = sample
        return super().step(model_output, timestep, sample, *a, **k)

    def singlestep_dpm_solver_third_order_update(self, model_output_list, *a, sample=None, **k):
        return super().singlestep_dpm_solver_third_order_update(model_output_list, *a, sample=self._current, **k)


def _tiny():
    return checks.Profile(steps_ns=(3, 9), order_ns=(12, 24, 48), finite_ns=(1, 3), predictions=("epsilon",),
                          spacings=("leading",), betas=("linear",))


@pytest.mark.parametrize("bad,spec", [(SwappedIntermediates, HEUN), (FirstIntermediate, MID), (HalvedD2, HEUN),
                                      (CurrentSample, MID)],
                         ids=["swapped-intermediates", "first-intermediate", "halved-D2", "current-sample"])
def test_wrong_dpm3s_is_reported(bad, spec):
    row = checks.audit_scheduler(spec, _tiny(), scheduler_factory=lambda cfg: bad(**cfg))
    keys = {f["key"] for f in row["findings"]}
    worst = row["step_float64"]["max_err_over_bound"]
    print(f"{bad.__name__} ({spec.name}): step error / bound {worst:.3g} (as shipped "
          f"{row['step_native']['max_err_over_bound']:.3g}); findings {sorted(keys)}")
    assert any(":step:step" in key for key in keys) and worst > 10.0


@pytest.mark.parametrize("spec", [MID, HEUN], ids=lambda s: s.name)
def test_right_dpm3s_is_not_reported(spec):
    row = checks.audit_scheduler(spec, _tiny(),
                                 scheduler_factory=lambda cfg: diffusers.DPMSolverSinglestepScheduler(**cfg))
    assert row["findings"] == [] and row["step_float64"]["max_err_over_bound"] <= 1.0


# ------------------------------------------------------------------------------------------ order
M, S, Z = 0.7, 0.5, 1.3


def _exact(a, sg):
    return a * M + np.sqrt(a * a * S * S + sg * sg) * Z


def _eps(x, a, sg):
    D = M + a * S * S / (a * a * S * S + sg * sg) * (x - a * M)
    return (x - a * D) / sg


def _block_error(h: float, solver_type: str, pattern, lam0: float = -1.0) -> float:
    """|scheduler - exact| after one block (orders 1, 2, 3) from the log-SNR level ``lam0`` over the whole log-SNR
    step ``h``, its three steps in the proportions ``pattern``, the scheduler fed the exact state and noise prediction
    at every call (the order list checked to be 1, 2, 3).  lam0 = -1: away from the log-SNR levels where the leading
    error coefficient of this target crosses zero (near 0 for the midpoint, near 1 for heun: there the exponent is
    erratic)."""
    sch = diffusers.DPMSolverSinglestepScheduler(solver_order=3, solver_type=solver_type, lower_order_final=False,
                                                 final_sigmas_type="sigma_min")
    sch.set_timesteps(3)
    w = np.asarray(pattern, float)
    lam = lam0 + h * np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
    rho = np.exp(-lam)                    # diffusers' sigma = sigma_t / alpha_t = e^{-lambda}
    sch.sigmas = torch.tensor(rho, dtype=torch.float64)
    a = 1.0 / np.sqrt(1.0 + rho * rho)
    sg = rho * a
    for k, t in enumerate(sch.timesteps):
        x = torch.tensor([_exact(a[k], sg[k])], dtype=torch.float64)
        out = sch.step(_eps(x, a[k], sg[k]), t, x).prev_sample
    assert [int(o) for o in sch.order_list] == [1, 2, 3]
    return abs(float(out[0]) - _exact(a[3], sg[3]))


@pytest.mark.parametrize("solver_type,pattern,expected", [("midpoint", (1, 1, 1), 4), ("heun", (1, 1, 1), 4),
                                                          ("midpoint", (1, 1, 2), 3), ("heun", (1, 1, 2), 4)])
def test_dpm3s_block_error_exponent(solver_type, pattern, expected):
    e1, e2 = _block_error(0.2, solver_type, pattern), _block_error(0.1, solver_type, pattern)
    assert min(e1, e2) > 1e-9   # truncation far above float64 rounding
    local = math.log2(e1 / e2)
    print(f"3S {solver_type}, steps {pattern} (r0 = {sum(pattern[:2]) / sum(pattern):.3g}): block error exponent "
          f"{local:.3f} (theory {expected})")
    assert expected - 0.5 < local < expected + 0.5, local


def _run_error(n_blocks: int, solver_type: str, pattern) -> float:
    """|scheduler output - exact flow| of a whole run of ``n_blocks`` blocks from log-SNR -2.5 to 4.5, each block's
    three steps in the proportions ``pattern``, the model output exact at the scheduler's own states."""
    sch = diffusers.DPMSolverSinglestepScheduler(solver_order=3, solver_type=solver_type, lower_order_final=False,
                                                 final_sigmas_type="sigma_min")
    sch.set_timesteps(3 * n_blocks)
    w = np.tile(np.asarray(pattern, float), n_blocks)
    lam = -2.5 + 7.0 * np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
    rho = np.exp(-lam)
    sch.sigmas = torch.tensor(rho, dtype=torch.float64)
    a = 1.0 / np.sqrt(1.0 + rho * rho)
    sg = rho * a
    x = torch.tensor([_exact(a[0], sg[0])], dtype=torch.float64)
    for k, t in enumerate(sch.timesteps):
        x = sch.step(_eps(x, a[k], sg[k]), t, x).prev_sample
    return abs(float(x[0]) - _exact(a[-1], sg[-1]))


@pytest.mark.parametrize("solver_type,pattern,expected", [("midpoint", (1, 1, 1), 3), ("heun", (1, 1, 1), 3),
                                                          ("midpoint", (1, 1, 2), 2), ("heun", (1, 1, 2), 2)])
def test_dpm3s_run_order_needs_r0_two_thirds(solver_type, pattern, expected):
    """Global order 3 on uniform log-SNR steps; 2 for both variants when every block has r0 = 1/2 (the midpoint
    through its quadrature, heun through its O(h) weight of the DDIM state at s1: theory's s1_weight_series)."""
    e1, e2 = _run_error(20, solver_type, pattern), _run_error(40, solver_type, pattern)
    order = math.log2(e1 / e2)
    print(f"3S {solver_type}, steps {pattern}: run order {order:.3f} (theory {expected})")
    assert abs(order - expected) < 0.35, order


@pytest.mark.parametrize("spec", [MID, HEUN], ids=lambda s: s.name)
def test_dpm3s_run_error_is_of_order_3(spec):
    law = checks.law_and_order(spec, (60, 120, 240), config={"use_exponential_sigmas": True,
                                                             "final_sigmas_type": "sigma_min"})
    print(f"{spec.name}: fitted global order {law['observed_order']:.3f} (theory {spec.order})")
    assert spec.order == 3 and abs(law["observed_order"] - 3) < 0.2, law["observed_order"]


# ------------------------------------------------------------------------------------------ coefficients
def test_generated_weights_are_the_interpolant_integrals():
    """With mpmath (30 digits) at random steps: the 3S heun update of D_{s2}, D_{s1}, D_{s0} is the integral of
    e^{u - h} times the quadratic through (0, D_{s2}), (h1, D_{s1}), (h0, D_{s0}) (mpmath's Lagrange form, quadrature),
    and the midpoint's that of the line through (0, D_{s2}), (h0, D_{s0})."""
    rng = np.random.default_rng(31)
    worst = 0.0
    for _ in range(30):
        h = float(np.exp(rng.uniform(np.log(1e-3), np.log(3.0))))
        f1, f2 = np.sort(rng.uniform(0.05, 0.95, 2))
        h1, g = h * f1, h * (f2 - f1)
        c0, ca, cb, a1, a0, b1, b0, m0 = IC.dpm_solver_3s_weights(h, h1, g)
        heun = (c0 - ca * (a1 + a0) - cb * (b1 + b0), ca * a1 + cb * b1, ca * a0 + cb * b0)
        mid = (c0 - m0, 0.0, m0)
        with mp.workdps(30):
            H, N = mp.mpf(h), [mp.mpf(0), mp.mpf(h1), mp.mpf(h1) + mp.mpf(g)]
            for j in range(3):
                Lq = lambda u, j=j: mp.fprod((u - N[m]) / (N[j] - N[m]) for m in range(3) if m != j)  # noqa: E731
                want = mp.quad(lambda u: mp.exp(u - H) * Lq(u), [0, H])
                worst = max(worst, float(abs(mp.mpf(heun[j]) - want) / abs(want)))
            for j, other in ((0, 2), (2, 0)):
                want = mp.quad(lambda u: mp.exp(u - H) * (u - N[other]) / (N[j] - N[other]), [0, H])
                worst = max(worst, float(abs(mp.mpf(mid[j]) - want) / abs(want)))
    print(f"generated 3S weights vs mpmath quadrature: max relative error {worst:.2e}")
    assert worst < 1e-11

"""diffusers' UniPCMultistepScheduler (default: solver_order=2, bh2, predict_x0) against the derived UniPC steps
(proofs_notes/integrators.md §4h): the corrector UniC from the previous call's corrected state to the new call's
level (numerics.audit.oracle.unipc_corrector_prediction; the driver records the corrected state, UniPC's
``last_sample``), and the predictor UniP from that state (DDIM, DPM-Solver++(2M); unipc_predictor_prediction), the
model outputs taken at the predicted states.

* Every step (corrector and predictor) and every run, three prediction types and spacings, tables cast to float64
  and as shipped, within the derived rounding bound.
* Wrong UniPC steps are reported: the corrector dropped (the predicted state kept), the corrector capped at order
  1, the B(h) = h variant (bh1) in place of bh2.
* Order: the run's output error against the exact flow map on an exponential-sigma grid (uniform in log-SNR, ending
  at sigma_min) falls as n^-3 (UniPC-2: the order-2 corrector is exact for a quadratic model output in log-SNR),
  and as n^-2 with the corrector disabled (DPM-Solver++(2M)): the harness tells the two apart.
* The generated corrector weights against an independent mpmath quadrature of e^{u-h} P(u), P the quadratic through
  the three outputs (the definition, not the SymPy closed form).
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

SPEC = dd.SPECS["UniPCMultistep"]


@pytest.mark.parametrize("tables", ["float64", "native"])
def test_unipc_steps_and_runs_agree_with_derived_update(tables):
    worst = [0.0, 0.0]
    for pred in ("epsilon", "sample", "v_prediction"):
        for spacing in ("leading", "trailing", "linspace"):
            for n in (1, 2, 3, 7, 10, 50):
                rec = dd.run(SPEC, n, checks.TARGET, checks.Z_STEP, tables=tables, prediction_type=pred,
                             config={"timestep_spacing": spacing})
                assert all(s.x_start is not None for s in rec.steps)
                worst[0] = max(worst[0], checks.step_check(rec)["ratio"])
                worst[1] = max(worst[1], checks.run_check(rec)["ratio"])
    print(f"UniPC tables {tables}: max step / run error over the bound: {worst}")
    assert max(worst) <= 1.0, worst


def test_recorded_orders_are_the_schedulers():
    """The predictor orders the driver records (warm-up, lower_order_final) are the ones UniP was called with, and the
    corrector's are the previous step's."""
    used = {"p": [], "c": []}

    class Counting(diffusers.UniPCMultistepScheduler):
        def multistep_uni_p_bh_update(self, *a, order=None, **k):
            used["p"].append(order)
            return super().multistep_uni_p_bh_update(*a, order=order, **k)

        def multistep_uni_c_bh_update(self, *a, order=None, **k):
            used["c"].append(order)
            return super().multistep_uni_c_bh_update(*a, order=order, **k)

    for n in (1, 2, 3, 5, 20):
        used["p"].clear()
        used["c"].clear()
        rec = dd.run(SPEC, n, checks.TARGET, checks.Z_STEP, scheduler=Counting())
        orders = [s.order for s in rec.steps]
        # the driver's first step also steps two copies (its float32-input probe)
        assert orders == used["p"][2:] and orders[:-1] == used["c"], (n, orders, used)


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match="t1"):
        O.unipc_corrector_coeffs(0.5, 1.0)
    with pytest.raises(ValueError, match="t1"):
        O.unipc_corrector_coeffs(1.0, 0.5, 0.8)


# ------------------------------------------------------------------------------------------ wrong UniPC
class NoCorrector(diffusers.UniPCMultistepScheduler):
    """The corrector dropped: the predicted state is kept."""

    def multistep_uni_c_bh_update(self, *a, this_sample=None, **k):
        return this_sample


class CorrectorOrderOne(diffusers.UniPCMultistepScheduler):
    """The corrector capped at order 1 (the trapezoid through D_0 and D_t only)."""

    def multistep_uni_c_bh_update(self, *a, order=None, **k):
        return super().multistep_uni_c_bh_update(*a, order=1, **k)


def _bh1(**cfg):
    return diffusers.UniPCMultistepScheduler(**{**cfg, "solver_type": "bh1"})


def _tiny():
    return checks.Profile(steps_ns=(3, 8), order_ns=(10, 20, 40), finite_ns=(1, 2), predictions=("epsilon",),
                          spacings=("leading",), betas=("linear",))


@pytest.mark.parametrize("factory", [NoCorrector, CorrectorOrderOne, _bh1], ids=["no-corrector", "corrector-order-1",
                                                                                 "bh1"])
def test_wrong_unipc_is_reported(factory):
    row = checks.audit_scheduler(SPEC, _tiny(), scheduler_factory=lambda cfg: factory(**cfg))
    keys = {f["key"] for f in row["findings"]}
    worst = row["step_float64"]["max_err_over_bound"]
    print(f"{getattr(factory, '__name__', factory)}: step error / bound {worst:.3g}; findings {sorted(keys)}")
    assert any(":step:step" in key for key in keys) and worst > 1e3


def test_right_unipc_is_not_reported():
    row = checks.audit_scheduler(SPEC, _tiny(), scheduler_factory=lambda cfg: diffusers.UniPCMultistepScheduler(**cfg))
    assert row["findings"] == [] and row["step_float64"]["max_err_over_bound"] <= 1.0


# ------------------------------------------------------------------------------------------ order
@pytest.mark.parametrize("disable,order", [(False, 3), (True, 2)])
def test_unipc_run_error_is_of_order_3_and_2_without_corrector(disable, order):
    cfg = {"use_exponential_sigmas": True, "final_sigmas_type": "sigma_min"}
    if disable:
        cfg["disable_corrector"] = list(range(200))
    spec = dataclasses.replace(SPEC, order=order)
    law = checks.law_and_order(spec, (40, 80, 160), config=cfg)
    print(f"UniPC (corrector {'off' if disable else 'on'}): fitted global order {law['observed_order']:.3f} "
          f"(theory {order})")
    assert abs(law["observed_order"] - order) < 0.2, law["observed_order"]


# ------------------------------------------------------------------------------------------ coefficients
def test_generated_corrector_weights_are_the_quadratic_integral():
    """alpha_t-free UniC order-2 weights of D_1, D_0, D_t (oracle.unipc_corrector_coeffs' expansion of the generated
    unipc_corrector_weights) = int_0^h e^{u-h} L_j(u) du, L_j the Lagrange basis on u = -h_p, 0, h, by mpmath
    quadrature (h, h_p the steps the oracle computed, exact in mpmath); order 1: psi_0/2 on D_t, the quadrature of
    e^{u-h}/2."""
    rng = np.random.default_rng(4)
    worst = 0.0
    for _ in range(30):
        s0 = float(rng.uniform(0.05, 4.0))
        t, t1 = s0 * float(rng.uniform(0.2, 0.99)), s0 * float(rng.uniform(1.01, 3.0))
        k = O.unipc_corrector_coeffs(s0, t, t1)
        a_t = math.exp(-t)
        with mp.workdps(30):
            h, hp = mp.mpf(k["h"]), mp.mpf(k["hp"])
            nodes = [-hp, mp.mpf(0), h]
            # the expansion of the divided differences sums terms of at most this size (the weights' condition)
            c0, _, c2, c3 = (abs(v) / a_t for v in k["c"])
            mag = c0 + c2 / k["h"] + 2.0 * c3 / (k["h"] * (k["h"] + k["hp"])) + 2.0 * c3 / (k["hp"] * (k["h"] + k["hp"]))
            for j, w in zip((1, 2, 0), k["w"]):   # k["w"]: weights of D_0, D_t, D_1 -> nodes 0, h, -h_p
                basis = lambda u, j=j: mp.exp(u - h) * mp.fprod((u - nodes[m]) / (nodes[j] - nodes[m])
                                                                 for m in range(3) if m != j)
                c = mp.quad(basis, [0, h])
                # the generated weights' relative tolerance (tests/test_codegen.py REL_TOL = 1e-13) on each term,
                # 8 roundings of the expansion and of the product with alpha_t
                tol = 1e-13 * mag + 8 * 2.0 ** -53 * mag
                worst = max(worst, float(abs(mp.mpf(w) / a_t - c) / tol))
            k1 = O.unipc_corrector_coeffs(s0, t)
            c1 = mp.quad(lambda u: mp.exp(u - h) / 2, [0, h])
            worst = max(worst, float(abs(mp.mpf(k1["w"][1]) / a_t - c1) / (c1 * (1e-13 + 4 * 2.0 ** -53))))
    print(f"generated UniC weights vs mpmath quadrature: max error / tolerance {worst:.2e}")
    assert worst <= 1.0

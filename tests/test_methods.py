"""The table of sampler methods (numerics.methods): complete, consistent with the derivations and the generated
coefficients, and the one list every reader uses (samplers, command line, order claim, exact laws, support)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from numerics import methods as M
from numerics import sample, time_grid
from numerics.generated import integrator_coeffs as IC
from numerics.mixture import GaussianMixture

GRID = time_grid("uniform", T=2.0, delta=0.05, n=6)


@pytest.fixture(scope="module")
def gm():
    return GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.5, -0.5]], np.stack([0.3 * np.eye(2), np.zeros((2, 2))]),
                           labels=[0, 1])


def test_table_names_and_derived_tuples():
    assert M.METHODS == tuple(M.TABLE) and len(set(M.METHODS)) == len(M.METHODS)
    assert all(name == rec.name for name, rec in M.TABLE.items())
    assert set(M.DETERMINISTIC_METHODS) | set(M.STOCHASTIC_METHODS) == set(M.METHODS)
    assert not set(M.DETERMINISTIC_METHODS) & set(M.STOCHASTIC_METHODS)
    assert all(rec.q in M.QUANTITIES for rec in M.TABLE.values())
    # the samplers module re-exports the table's lists
    from numerics import samplers
    assert samplers.METHODS == M.METHODS and samplers.STOCHASTIC_METHODS == M.STOCHASTIC_METHODS


def test_table_matches_generated_coefficients():
    """Each record's coefficient function is the generated one of its name, and the record's flags agree with its
    signature: ``eta`` argument <-> takes_eta, ``t_prev`` <-> multistep, a ``c_z`` output <-> stochastic."""
    # the non-method entries: the guidance shifts and the pieces of the audit's DPM-Solver++(3M) oracle
    assert set(M.METHODS) == set(IC.COEFFICIENT_FUNCTIONS) - {"ddpm_guidance_shifts", "half_logsnr_step",
                                                              "dpm_solver_3_weights", "dpm_solver_2_eps_weights",
                                                              "dpm_solver_3_eps_weights",
                                                              "dpm_solver_2s_weights", "dpm_solver_3s_weights",
                                                              "heun_weights",
                                                              "lms_weights", "deis_weights", "unipc_corrector_weights"}
    for name, rec in M.TABLE.items():
        fn, args, outs = IC.COEFFICIENT_FUNCTIONS[name]
        assert rec.coeffs is fn
        assert rec.takes_eta == ("eta" in args)
        assert rec.multistep == ("t_prev" in args)
        assert rec.stochastic == ("c_z" in outs) and (outs[-1] == "c_z" or not rec.stochastic)
        c = rec.coefficients(0.7, 0.5, eta=0.3, t_prev=0.9)
        assert len(c) == len(outs) and all(math.isfinite(v) for v in c)
        if rec.multistep:  # the first step (no previous time) has its own one-step coefficients
            assert rec.first_step(0.7, 0.5) == rec.coefficients(0.7, 0.5)


def test_table_matches_the_derivations():
    """frozen / stochastic / multistep as theory.integrators derives them (SymPy; a few seconds)."""
    from theory.integrators import UPDATE_NAMES, get_update

    assert M.METHODS == tuple(UPDATE_NAMES)
    for name, rec in M.TABLE.items():
        u = get_update(name)
        assert (rec.frozen, rec.stochastic, rec.multistep) == (u.frozen, u.stochastic, u.c_q_prev is not None), name


def test_orders():
    """Deterministic methods carry their ODE order (1, and 2 for the multistep DPM-Solver++(2M)); stochastic ones None."""
    for rec in M.TABLE.values():
        if rec.stochastic:
            assert rec.order is None
        else:
            assert rec.order == (2 if rec.multistep else 1), rec.name


@pytest.mark.parametrize("method", M.METHODS)
def test_every_method_runs_through_sample(gm, method):
    rec = M.TABLE[method]
    kw = {"eta": 0.5} if rec.takes_eta else {}
    x0 = np.random.default_rng(1).standard_normal((64, 2))
    x = sample(gm, method, grid=GRID, n=64, seed=2, label=1, guidance=2.0, x_init=x0, **kw)
    assert x.shape == (64, 2) and np.all(np.isfinite(x))
    # from the same start, deterministic methods ignore the seed; stochastic ones use it
    y = sample(gm, method, grid=GRID, n=64, seed=3, label=1, guidance=2.0, x_init=x0, **kw)
    assert np.array_equal(x, y) != rec.stochastic
    for form in rec.guidance_forms:
        sample(gm, method, grid=GRID, n=4, label=1, guidance=2.0, guidance_form=form, **kw)


def test_order_claim_measures_the_table():
    """samplers.convergence_orders measures every deterministic method of the table with an order (full
    profile); the quick profile keeps to the four it always measured."""
    from numerics.checks import load_all
    from numerics.papers.samplers.claims import order_methods

    table = {r.name: r.order for r in M.TABLE.values() if not r.stochastic and r.order is not None}
    assert order_methods({}) == table
    assert set(table) == set(M.DETERMINISTIC_METHODS)
    claim = load_all(["numerics.papers.samplers.claims"])["samplers.convergence_orders"]
    assert order_methods(claim.full) == table
    assert list(order_methods(claim.quick)) == ["ddim", "euler", "ei_ode", "dpm_solver_2"]
    with pytest.raises(ValueError, match="methods"):
        order_methods({"methods": ["ddpm"]})  # stochastic: no order to measure


def test_cli_offers_exactly_the_table():
    from numerics.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    method = next(a for a in sub.choices["sample"]._actions if a.dest == "method")
    assert tuple(method.choices) == M.METHODS
    for name in M.METHODS:
        assert parser.parse_args(["sample", "--method", name]).method == name


def test_support_methods_are_table_methods():
    from numerics.papers.support import experiments as E

    assert set(E.METHODS) <= set(M.METHODS)
    with pytest.raises(ValueError, match="names"):
        M.select("ddim", "heun")


@pytest.mark.parametrize("call, needle", [
    (lambda: M.check_method("heun"), "^method: must be one of ddim, "),
    (lambda: M.check_method(3), "^method:"),
    (lambda: M.check_method("ddim", allowed=("ei_ode",)), "^method: must be one of ei_ode, got 'ddim'"),
    (lambda: M.check_form("xyz", "ddim"), "^guidance_form:"),
    (lambda: M.check_form("cg_mean", "ddim"), "^guidance_form: 'cg_mean' is only defined for method 'ddpm'"),
    (lambda: M.check_eta(0.5, "ddim"), "^eta: only method 'ddim_eta' takes eta"),
    (lambda: M.check_eta(None, "ddim_eta"), "^eta:"),
    (lambda: M.check_eta(1.5, "ddim_eta"), "^eta:"),
    (lambda: M.check_eta(True, "ddim_eta"), "^eta:"),
])
def test_checks_name_the_argument(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_checks_accept():
    assert M.check_method("ddpm") == "ddpm" and M.get_method("ddpm") is M.TABLE["ddpm"]
    assert M.check_form("cg_mean", "ddpm") == "cg_mean"
    assert M.check_eta(np.float32(0.25), "ddim_eta") == 0.25 and M.check_eta(None, "ddim") is None

"""Issue 24 (Python API): bad input is never silent.

Every case is a ValueError whose message starts with the name of the argument at fault, raised before any long
work, or a correct finite result; the fuzz tests check that nothing else (another exception type, a NaN) comes
out of ``sample`` and the ``GaussianMixture`` methods on edge values.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numerics import GaussianMixture, sample, time_grid
from numerics.builtin_targets import atoms, two_class
from numerics.methods import LOG_DBL_MAX, METHODS, TABLE, grid_coefficients
from numerics.mixture import GUIDANCE_T_MIN, HESSIAN_T_MIN
from numerics.samplers import MAX_GUIDANCE, MAX_X_INIT
from numerics.target import ScoreModel

TC = two_class()
ATOMS = atoms()
X2 = np.zeros((2, 2))
G = [1.0, 0.5, 0.1]  # a short valid grid


def _sm(score=None, **kw):
    return ScoreModel(score or TC.score, 2, **kw)


def _called_later(out):
    """A score that passes the construction test (t = 0.5) and returns ``out(x)`` at every other time."""
    return lambda x, t: TC.score(x, t) if t == 0.5 else out(x)


def _kw(method):
    return {"eta": 0.5} if TABLE[method].takes_eta else {}


CASES = [
    # --- grids whose steps overflow the method's coefficients (grid x method)
    *[(sample, dict(target=TC, method=m, grid=[800.0, 1.0], n=3, **_kw(m)), ValueError, "^grid: step 0")
      for m in ("ei_ode", "ei_sde", "ei_sde_code", "euler", "euler_maruyama", "dpm_solver_1")],
    (sample, dict(target=TC, method="ei_sde", grid=[400.0, 1.0], n=3), ValueError, "^grid: step 0"),
    (sample, dict(target=TC, method="ei_ode", grid=[1.7e308, 1.0], n=3), ValueError, "^grid: step 0"),
    (sample, dict(target=TC, method="dpm_solver_1", grid=[400.0, 1.0], n=3), ValueError, "^grid: step 0"),
    # dpm_solver_2: a huge previous step (exp(-2 hp) underflows) or tiny times (a product underflows)
    (sample, dict(target=TC, method="dpm_solver_2", grid=[800.0, 40.0, 1.0], n=3), ValueError, "^grid:.*step 1"),
    (sample, dict(target=TC, method="dpm_solver_2", grid=[40.0, 1e-300, 1e-310], n=3), ValueError, "^grid:.*step 1"),
    (sample, dict(target=TC, method="dpm_solver_2", grid=[5.0, 1.0, 1e-310], n=3), ValueError, "^grid:.*step 1"),
    (sample, dict(target=TC, method="ddim_eta", grid=[1e-200, 1e-300], n=3, eta=0.5), ValueError, "^grid: .*step 0"),
    (sample, dict(target=TC, method="ddpm", grid=[5.0, 1.0], n=3, label=1, guidance=2.0, guidance_form="cg_mean"),
     None, None),
    # --- guidance_vector / guidance_hessian below their smallest finite time
    *[(TC.guidance_hessian, dict(x=X2, t=t, y=1), ValueError, "^t: the guidance Hessian needs t >=")
      for t in (1e-155, 1e-160, 1e-200, 1e-310)],
    *[(TC.guidance_vector, dict(x=X2, t=t, y=1), ValueError, "^t: the guidance vector needs t >=")
      for t in (1e-310, 5e-324)],
    (TC.guidance_hessian, dict(x=X2, t=[1e-3, 1e-160], y=1), ValueError, "^t: the guidance Hessian"),
    (TC.guidance_hessian, dict(x=X2, t=2 * HESSIAN_T_MIN, y=1), None, None),
    (ATOMS.score, dict(x=ATOMS.means[:1] + [[0.1, 0.0]], t=1e-310), ValueError, "^t: the score overflows"),
    (ATOMS.conditional_score, dict(x=ATOMS.means[:1] + [[0.1, 0.0]], t=1e-310, y=0), ValueError,
     "^t: the conditional score overflows"),
    (ATOMS.score, dict(x=ATOMS.means[:1] + [[0.1, 0.0]], t=1e-300), None, None),
    (TC.guidance_vector, dict(x=X2, t=2 * GUIDANCE_T_MIN, y=1), None, None),
    # --- guided_denoiser's weight
    *[(TC.guided_denoiser, dict(x=X2, t=0.5, y=1, w=w), ValueError, "^w: must be")
      for w in (np.nan, np.inf, -np.inf, "2", True, 1 + 0j, None)],
    (TC.guided_denoiser, dict(x=X2, t=0.5, y=1, w=np.float32(2.0)), None, None),
    # --- ScoreModel outputs, on every call
    (sample, dict(target=_sm(_called_later(lambda x: np.zeros((1, 2)))), grid=G, n=3), ValueError,
     r"^score: at t=1\.0 returned shape \(1, 2\)"),
    (sample, dict(target=_sm(_called_later(lambda x: np.zeros(2))), grid=G, n=3), ValueError, r"^score: .*shape \(2,\)"),
    (sample, dict(target=_sm(_called_later(lambda x: x.astype(complex))), grid=G, n=3), ValueError,
     "^score: .*dtype complex"),
    (sample, dict(target=_sm(_called_later(lambda x: np.full_like(x, np.nan))), grid=G, n=3), ValueError,
     "^score: at t=1.0 returned non-finite"),
    (sample, dict(target=_sm(guidance=lambda x, t, y: (TC.guidance_vector(x, t, y) if t == 0.5
                                                        else np.full_like(x, np.inf)), n_classes=2),
                  grid=G, n=3, label=1, guidance=2.0), ValueError, "^guidance: at t=1.0 returned non-finite"),
    (sample, dict(target=_sm(conditional_score=lambda x, t, y: (TC.conditional_score(x, t, y) if t == 0.5
                                                                 else np.zeros((1, 2))), n_classes=2),
                  grid=G, n=3, label=1, guidance=2.0, guidance_form="cfg"), ValueError, "^conditional_score: at t=1.0"),
    (sample, dict(target=_sm(), method="ddim", grid=[800.0, 1.0], n=3), ValueError, "^denoiser: at t=800.0"),
    (ScoreModel, dict(score=lambda x, t: np.zeros(x.shape, dtype=int), d=2), ValueError, "^score: must return a real"),
    *[(ScoreModel, dict(score=TC.score, d=2, n_classes=v), ValueError, "^n_classes: must be an integer")
      for v in (2.5, "3", True)],
    # --- labels: no allocation proportional to a label's value
    (GaussianMixture, dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covs=np.ones((2, 1, 1)), labels=[0, 2**62]),
     ValueError, "^labels: must be integers covering"),
    (GaussianMixture, dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covs=np.ones((2, 1, 1)), labels=[0.0, 1e300]),
     ValueError, "^labels: must be integers covering"),
    # --- the right argument is blamed
    (sample, dict(target=TC, n=3, label=1, guidance=1e300), ValueError, "^guidance: must be <="),
    (sample, dict(target=TC, n=3, label=1, guidance=1e12), ValueError, "^guidance: must be <="),
    (sample, dict(target=TC, n=2, label=1, x_init=np.full((2, 2), 1e200)), ValueError, "^x_init: max"),
    (GaussianMixture, dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[[9e307, 0.0], [0.0, 1.0]]]), ValueError,
     "^covs: component 0: the eigen-decomposition is not finite"),
    (GaussianMixture, dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[[9e307, 9e307], [9e307, 9e307]]]), ValueError,
     "^covs: component 0"),
    (time_grid, dict(kind="geometric", T=1e300, delta=1e-3, kappa=0.1), ValueError, "^T: "),
    (time_grid, dict(kind="geometric", T=5.0, delta=1e-3, kappa=1e-300), ValueError, "^kappa: "),
    (time_grid, dict(kind="geometric", T=1e300, delta=1e-3, kappa=1e-10), ValueError, "^kappa: "),
    *[(sample, dict(target=TC, n=2, grid=G, seed=s), ValueError, "^seed: ") for s in (-1, 1.5, "abc", True, [1, -2])],
    (sample, dict(target=TC, n=2, grid=G, seed=np.random.default_rng(3)), None, None),
    (sample, dict(target=TC, n=2, grid=G, seed=np.random.SeedSequence(3)), None, None),
    (TC.sample_data, dict(n=5, rng=0), ValueError, "^rng: must be a numpy.random.Generator"),
    (TC.sample_data, dict(n=2**62, rng=np.random.default_rng(0)), ValueError, "^n: "),
    (TC.sample_data, dict(n=5, rng=np.random.default_rng(0), y=1), None, None),
    # --- quietly converted before, refused now
    (sample, dict(target=TC, n=2, grid=["1.0", "0.5"]), ValueError, "^grid: must be a 1-D array of real numbers"),
    (sample, dict(target=TC, n=2, grid=[1.0 + 1j, 0.5]), ValueError, "^grid: .*complex"),
    (sample, dict(target=TC, n=2, grid=np.array([1.0, 0.5], dtype=complex)), ValueError, "^grid: .*complex"),
    (time_grid, dict(kind=np.array([1.0 + 0j, 0.5])), ValueError, "^grid: .*complex"),
    (sample, dict(target=TC, n=2, grid=G, x_init=np.ones((2, 2)) * (1 + 1j)), ValueError, "^x_init: .*complex"),
    (sample, dict(target=TC, n=2, grid=G, x_init=[["1", "2"], ["1", "2"]]), ValueError, "^x_init: must be a real"),
    *[(sample, dict(target=TC, n=2, grid=G, return_trajectory=v), ValueError, "^return_trajectory: must be True or False")
      for v in ("no", 1, None)],
    (sample, dict(target=TC, n=2, grid=G, fast="yes"), ValueError, "^fast: must be True or False"),
    # --- sizes that cannot be allocated: refused naming n, not a MemoryError
    (sample, dict(target=TC, n=2**62, grid=G), ValueError, "^n: n=.* float64 values, more than"),
    (sample, dict(target=TC, n=10**12, grid=G), ValueError, "^n: "),
    (sample, dict(target=TC, n=10**8, grid=time_grid("uniform", n=99), return_trajectory=True), ValueError,
     r"^n: the trajectory \(len\(grid\)=100\)"),
]


@pytest.mark.parametrize("call, kwargs, exc, needle", CASES)
def test_bad_input_is_refused_naming_the_argument(call, kwargs, exc, needle):
    if exc is None:  # accepted: a finite result
        out = call(**kwargs)
        assert np.all(np.isfinite(out))
        return
    with pytest.raises(exc, match=needle):
        call(**kwargs)


def test_method_step_limits_are_the_coefficient_overflow_points():
    """max_step is where the coefficients stop being finite (just below: finite; the limit: refused)."""
    assert TABLE["ei_ode"].max_step == LOG_DBL_MAX
    for name in ("ei_ode", "ei_sde", "ei_sde_code", "dpm_solver_1"):
        rec = TABLE[name]
        h = rec.max_step * (1 - 1e-12)
        coefs, _ = grid_coefficients(rec, np.array([h + 1.0, 1.0]))
        assert all(math.isfinite(c) for c in coefs[0]), name
        with pytest.raises(ValueError, match="^grid: step 0"):
            grid_coefficients(rec, np.array([rec.max_step + 1.0, 1.0]))
    # just past the limit the raw coefficient formula overflows (ei_*) or divides by zero (dpm_solver_1 at 2x)
    assert not math.isfinite(TABLE["ei_sde"].coeffs(LOG_DBL_MAX / 2 + 1.5, 1.0)[2])
    with pytest.raises(ZeroDivisionError):
        TABLE["dpm_solver_1"].coeffs(800.0, 1.0)


def test_grid_coefficients_equal_the_step_calls():
    """The coefficients computed up front are the very values the steps used before (same calls)."""
    grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=0.2)
    for m in METHODS:
        rec = TABLE[m]
        eta = 0.3 if rec.takes_eta else None
        coefs, _ = grid_coefficients(rec, grid, eta)
        for k in range(grid.size - 1):
            t_prev = None if k == 0 else float(grid[k - 1])
            assert coefs[k] == rec.coefficients(float(grid[k]), float(grid[k + 1]), eta, t_prev)


def test_a_step_that_overflows_names_step_time_and_cause():
    """A step whose result overflows (here: a model score of 1e307, finite, times h = 19) stops at that step with
    its index, times and likely cause, instead of returning inf/NaN."""
    sm = ScoreModel(lambda x, t: np.full_like(x, 1e307), 2)
    with pytest.raises(ValueError, match=r"^grid: step 0 \(t=20\.0 -> s=1\.0\) produced non-finite values; likely cause"):
        sample(sm, method="euler", grid=[20.0, 1.0], n=4)


def test_target_failure_at_the_start_blames_x_init():
    """Start points within MAX_X_INIT but too far for the first evaluation at a small time: named x_init, step 0."""
    atoms = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], np.zeros((2, 2, 2)), labels=[0, 1])
    with pytest.raises(ValueError, match=r"^x_init: step 0 \(t=1e-09 -> s=1e-10\) could not evaluate the target"):
        sample(atoms, grid=[1e-9, 1e-10], n=2, x_init=np.full((2, 2), 1e150))


def test_large_guidance_failing_mid_run_blames_guidance():
    gm = GaussianMixture([0.5, 0.5], [[-3.0], [3.0]], np.zeros((2, 1, 1)), labels=[0, 1])
    try:
        out = sample(gm, "ddim", grid=time_grid("uniform", T=5.0, delta=1e-12, n=4), n=8, label=1, guidance=MAX_GUIDANCE)
    except ValueError as exc:
        assert re.match(r"^guidance: step \d+ \(t=", str(exc)), str(exc)
    else:
        assert np.all(np.isfinite(out))


def test_valid_bounds_are_accepted():
    x = sample(TC, grid=G, n=2, label=1, guidance=MAX_GUIDANCE / 1e6, x_init=np.full((2, 2), 0.5))
    assert np.all(np.isfinite(x))
    assert MAX_X_INIT == 1e150


# ------------------------------------------------------------------------------------------ fuzz
_KNOWN = ("target", "method", "grid", "n", "seed", "label", "guidance", "x_init", "guidance_form", "eta",
          "return_trajectory", "fast", "x", "t", "y", "w", "rng", "score", "guidance", "conditional_score", "denoiser")
_edge_float = st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e200, 1e-300, 5e-324, -1.0, 0.0, 1.0, 0.5, 3.0,
                               1e-12, 40.0, 800.0])
_edge = st.one_of(
    _edge_float, st.none(), st.booleans(), st.integers(-3, 3), st.just(2**62), st.just(10**12), st.text(max_size=3), st.just(1 + 2j),
    st.lists(_edge_float, min_size=0, max_size=4),
    st.lists(st.lists(_edge_float, min_size=1, max_size=3), min_size=1, max_size=3),
)


def _check_outcome(call):
    try:
        out = call()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert re.match(r"^(%s):" % "|".join(_KNOWN), msg), msg
        return
    out = out[0] if isinstance(out, tuple) else out
    assert np.all(np.isfinite(out))


@settings(max_examples=200, deadline=None)
@given(method=st.one_of(st.sampled_from(METHODS), _edge), grid=st.one_of(
           st.lists(_edge_float, min_size=0, max_size=4), st.just([800.0, 1.0]), st.just([1e-100, 1e-200, 1e-300]),
           st.just(G), _edge),
       n=st.one_of(st.integers(1, 3), _edge), seed=st.one_of(st.integers(0, 5), _edge),
       label=st.one_of(st.sampled_from([None, 0, 1]), _edge), guidance=st.one_of(st.sampled_from([1.0, 2.0]), _edge),
       x_init=st.one_of(st.none(), _edge), eta=st.one_of(st.none(), st.just(0.5), _edge),
       form=st.one_of(st.sampled_from(["cg", "cfg", "cg_mean"]), _edge))
def test_fuzz_sample(method, grid, n, seed, label, guidance, x_init, eta, form):
    _check_outcome(lambda: sample(TC, method=method, grid=grid, n=n, seed=seed, label=label, guidance=guidance,
                                  x_init=x_init, eta=eta, guidance_form=form))


@settings(max_examples=200, deadline=None)
@given(x=st.one_of(st.just([[0.0, 0.0]]), st.just([[2.0, 1.0], [-2.0, 0.0]]), _edge), t=st.one_of(_edge_float, _edge),
       y=st.one_of(st.sampled_from([0, 1]), _edge), w=st.one_of(st.just(2.0), _edge),
       which=st.sampled_from(["score", "denoiser", "guidance_vector", "guidance_hessian", "guided_denoiser",
                              "conditional_score", "class_posterior", "posterior_cov", "log_density", "sample_data"]))
def test_fuzz_mixture_methods(x, t, y, w, which):
    gm = TC
    calls = {
        "score": lambda: gm.score(x, t), "denoiser": lambda: gm.denoiser(x, t),
        "guidance_vector": lambda: gm.guidance_vector(x, t, y), "guidance_hessian": lambda: gm.guidance_hessian(x, t, y),
        "guided_denoiser": lambda: gm.guided_denoiser(x, t, y, w), "conditional_score": lambda: gm.conditional_score(x, t, y),
        "class_posterior": lambda: gm.class_posterior(x, t), "posterior_cov": lambda: gm.posterior_cov(x, t),
        "log_density": lambda: gm.log_density(x, t),
        "sample_data": lambda: gm.sample_data(y, np.random.default_rng(0) if isinstance(w, float) else w),
    }
    _check_outcome(calls[which])


# ------------------------------------------------------------------ references, mixture, codegen (issue 24, remaining)
from numerics.references import exact_gaussian as EG  # noqa: E402
from numerics.references import grid_density as GD  # noqa: E402

G1 = GaussianMixture([1.0], [[0.5, -0.5]], [[[1.0, 0.2], [0.2, 0.5]]])
_G5 = np.linspace(-2.0, 2.0, 5)


@pytest.mark.parametrize("call, needle", [
    (lambda: EG.exact_law(G1, "ddim", G, m0=[np.nan, 0.0]), "^m0: contains NaN"),
    (lambda: EG.exact_law(G1, "ddim", G, m0="ab"), "^m0: must be"),
    (lambda: EG.exact_law(G1, "ddim", G, m0=[1.0, 2.0, 3.0]), "^m0: must have shape"),
    (lambda: EG.exact_law(G1, "ddim", G, S0=[[1.0, 2.0], [2.0, 1.0]]), "^S0: component 0 is not positive semi-definite"),
    (lambda: EG.exact_law(G1, "ddim", G, S0=[[1.0, 0.5], [0.0, 1.0]]), "^S0: component 0 is not symmetric"),
    (lambda: EG.exact_law(G1, "ddim", [1.0, 0.5], S0=[[1e308, 0.0], [0.0, 1e308]]), "^S0: component 0: the eigen"),
    (lambda: EG.exact_law(G1, "ei_ode", [800.0, 1.0]), "^grid: step 0"),
    (lambda: EG.exact_law(G1, "ddim", [800.0, 1.0], affine_guidance=lambda t: (np.eye(2), np.ones(2))),
     "^grid: the guided denoiser's factor"),
    (lambda: EG.exact_law(G1, "ddim", G, affine_guidance=lambda t: 1 / 0), "^affine_guidance: calling it at t=1.0"),
    (lambda: EG.exact_law(G1, "ddim", G, affine_guidance=lambda t: (np.eye(3), np.ones(2))), r"^affine_guidance\(t=1.0\) A_t"),
    (lambda: EG.exact_law(G1, "ddim", G, affine_guidance=lambda t: (np.eye(2), ["a", "b"])), r"^affine_guidance\(t=1.0\) b_t"),
    (lambda: EG.exact_law(G1, "ddim", G, guidance=1e308, affine_guidance=lambda t: (np.eye(2), np.ones(2))),
     "^guidance: the guided denoiser's factor"),
    (lambda: EG.exact_law(G1, "ei_ode", G, guidance=1e308, affine_guidance=lambda t: (np.eye(2), np.ones(2))),
     "^guidance: the propagated covariance overflows"),
    (lambda: EG.exact_law(G1, "ei_ode", G, guidance=1e308, affine_guidance=lambda t: (np.eye(2) * 1e10, np.ones(2))),
     "^guidance: the affine map of step 0"),
    (lambda: EG.exact_law(G1, "ei_ode", G, S0=np.eye(2) * 1e300, guidance=1e5,
                          affine_guidance=lambda t: (np.eye(2), np.ones(2))), "^S0: the propagated covariance"),
    (lambda: EG.pf_map(G1, [[0.0, 1.0]], -1000.0, 0.5), "^t: must be finite and >= 0"),
    (lambda: EG.pf_map(G1, [[0.0, 1.0]], 1.0, "0.5"), "^s: must be a real number"),
    (lambda: EG.pf_map(G1, [], 1.0, 0.5), "^x: last dimension"),
    (lambda: EG.pf_map(G1, [[np.nan, 1.0]], 1.0, 0.5), "^x: contains NaN"),
    (lambda: EG.pf_map(G1, [[1.7e308, -1.7e308]], 1e-3, 5.0), "^x: the mapped points overflow"),
    (lambda: EG.pf_map(GaussianMixture([1.0], [[0.0, 0.0]], [np.diag([1.0, 0.0])]), [[0.0, 1.0]], 0.0, 0.5),
     "^t: C_t is singular"),
    (lambda: EG.cov_t(G1.covs[0], np.inf), "^t: must be finite"),
    (lambda: EG.affine_score(G1.means[0], G1.covs[0], None), "^t: must be a real number"),
    (lambda: EG.affine_q("denoiser", G1.means[0], G1.covs[0], 1000.0, 1.0, lambda t: (np.eye(2), np.ones(2))),
     "^t: the guided denoiser's factor"),
    (lambda: EG.affine_q("denoiser", G1.means[0], G1.covs[0], 1.0, 1e308, lambda t: (np.eye(2), np.ones(2))),
     "^w: the guided denoiser's factor"),
    (lambda: EG.affine_q("nope", G1.means[0], G1.covs[0], 1.0), "^kind: must be one of"),
    (lambda: EG.affine_q("score", G1.means[0], G1.covs[0], 1.0, -1.0), "^w: must be finite and >= 0"),
    (lambda: EG.affine_q("score", G1.means[0], G1.covs[0], 1.0, 1.0, 3.0), "^guid: must be a callable"),
    (lambda: EG.affine_score(np.zeros(2), np.diag([1.0, 0.0]), 0.0), "^t: C_t .* is singular"),
    (lambda: GD.uniform_grid("a", 1.0, 3), "^lo: must be a real number"),
    (lambda: GD.uniform_grid(0.0, True, 3), "^hi: must be a real number"),
    (lambda: GD.uniform_grid(-1e308, 1e308, 3), "^lo, hi: the width hi - lo overflows"),
    (lambda: GD.uniform_grid(0.0, 1.0, 2**62), "^n: must be <="),
    (lambda: GD.gaussian_on_grid(_G5, "x", 1.0), "^mean: must be a real number"),
    (lambda: GD.gaussian_on_grid(_G5, 0.0, "1"), "^var: must be a real number"),
    (lambda: GD.gaussian_on_grid(_G5, 0.0, 1e308), "^var: 2 pi var overflows"),
    (lambda: GD.gaussian_on_grid_2d(_G5, _G5, [0.0, 0.0], [[1e-320, 0.0], [0.0, 1.0]]), "^cov: its inverse"),
    (lambda: GD.gaussian_on_grid_2d(_G5, _G5, [0.0, 0.0], [[np.nan], [1.0, 2.0]]), "^cov: cannot be converted"),
    (lambda: GD.tv_grid([1e308] * 5, [1.0] * 5, _G5), "^p: its mass on the grid"),
    (lambda: GD.tv_grid_2d(np.ones((5, 5)), np.zeros((5, 5)), _G5, _G5), "^q: its mass on the grid"),
    (lambda: GD.refinement_error(lambda g: 1 / 0, _G5), "^run: calling it on the 5 grid failed"),
    (lambda: GD.refinement_error(lambda g: np.full(g.size, np.nan), _G5), r"^run \(on the 5 grid\): contains NaN"),
    (lambda: GD.refinement_error_2d(lambda a, b: np.ones(2), _G5, _G5), r"^run \(on the 5x5 grid\): must have shape"),
    (lambda: GD.propagate(np.ones(5), _G5, lambda g, k: 0.9 * g, "a", 1), r"^transition_var \(step 0\): must be a real"),
    (lambda: GD.propagate(np.ones(5), _G5, lambda g, k: 0.9 * g, "a", 0), r"^transition_var \(step 0\): must be a real"),
    (lambda: GD.propagate(np.ones(5), _G5, lambda g, k: 0.9 * g, lambda k: "a", 1), r"^transition_var \(step 0\)"),
    (lambda: GD.propagate(np.ones(5), _G5, lambda g, k: 0.9 * g, lambda k: float("a"), 1),
     "^transition_var: calling it at step 0 failed"),
    (lambda: GD.propagate(np.ones(5), _G5, lambda g, k: 0.9 * g, 1e-320 * 0, 1), r"^transition_var \(step 0\): must be"),
    (lambda: GD.propagate(np.ones(5), _G5, lambda g, k: g * (1 + 1j), 0.5, 1), r"^transition_mean_fn \(step 0\): must be"),
    (lambda: GD.propagate(np.ones(5), _G5, lambda g, k: g[:2], 0.5, 1), r"^transition_mean_fn \(step 0\): must have shape"),
    (lambda: GD.propagate(np.ones(5), _G5, None, 0.5, 1), "^transition_mean_fn: must be callable"),
    (lambda: GD.propagate(np.full(5, 1e308), _G5, lambda g, k: 0.0 * g, 1e-4, 1), "^density0: the propagated density"),
    (lambda: GD.propagate_2d(np.ones((5, 5)), _G5, _G5, lambda a, b, k: a, 0.5, 1), r"^transition_mean_fn \(step 0\): must "
                                                                                    "return a pair"),
    (lambda: GD.propagate_2d(np.ones((5, 5)), _G5, _G5, lambda a, b, k: (a, b * np.nan), 0.5, 1),
     r"^transition_mean_fn \(step 0\) M2: contains NaN"),
    (lambda: GD.gauss_transform([0.0, 1.0, 3.0], [0.0], [1.0], 1.0), r"^grid: must be uniform"),
    (lambda: GD.gauss_transform(_G5, [np.nan], [1.0], 1.0), r"^means"),
    (lambda: GD.gauss_transform(_G5, [0.0, 1.0], [1.0], 1.0), r"^weights"),
    (lambda: GD.gauss_transform(_G5, [0.0], [1.0], 0.0), r"^sd"),
])
def test_references_refuse_naming_the_argument(call, needle):
    """exact_gaussian and grid_density: strings, NaN, wrong shapes, overflow and failing user functions give a
    ValueError naming the argument (they gave NaN results, ZeroDivisionError, OverflowError or NumPy's errors)."""
    with pytest.raises(ValueError, match=needle):
        call()


@pytest.mark.parametrize("which", ["propagate", "propagate_2d"])
def test_propagate_keeps_the_user_error_as_cause(which):
    def boom(*args):
        raise ZeroDivisionError("boom")
    with pytest.raises(ValueError, match="^transition_mean_fn: calling it at step 0 failed") as info:
        if which == "propagate":
            GD.propagate(np.ones(5), _G5, boom, 0.5, 1)
        else:
            GD.propagate_2d(np.ones((5, 5)), _G5, _G5, boom, 0.5, 1)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_exact_law_at_a_stationary_start_time():
    """ddim from t = 800 (alpha_t = 0 in float64): the unguided denoiser is the mean; this raised ZeroDivisionError."""
    m, S = EG.exact_law(G1, "ddim", [800.0, 1.0, 0.5])
    assert np.all(np.isfinite(m)) and np.all(np.isfinite(S))
    Q, r = EG.affine_q("denoiser", G1.means[0], G1.covs[0], 1000.0)
    assert np.all(Q == 0.0) and np.array_equal(r, G1.means[0])


# class_log_posterior: a rank-deficient mixture, a point far off both supports at t = 1e-300, so that
# |x_perp|^2 / sigma_t^2 overflows for class 1 (its log mass was -inf) though the log-posterior is -4.8e307
_FLAT = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [0.0, -6e3]], [np.diag([1.0, 0.0])] * 2)


@pytest.mark.parametrize("y, expected", [(1.3e4, -4.8e307), (2e4, -6.9e307)])
def test_class_log_posterior_is_finite_where_the_class_mass_underflows(y, expected):
    lp = _FLAT.class_log_posterior(np.array([[0.3, y], [0.1, 0.2]]), 1e-300)
    assert np.all(np.isfinite(lp)) and lp[0, 0] == 0.0
    assert lp[0, 1] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(_FLAT.class_posterior(np.array([0.3, y]), 1e-300), [1.0, 0.0])


def test_class_log_posterior_refuses_a_point_rounding_decides():
    """At |x| = 1e154 the components' distances differ below the rounding of |x|^2: a named error, not 0.5/0.5."""
    with pytest.raises(ValueError, match="^x: the class log-posterior is not determined"):
        _FLAT.class_log_posterior(np.array([0.3, 1e154]), 1e-300)


@pytest.mark.parametrize("expr", ["exp(-t)", b"1", True, float("nan"), None])
def test_codegen_stabilize_never_parses_text(expr):
    import theory.codegen as C
    with pytest.raises((TypeError, ValueError), match="^expr: "):
        C.stabilize(expr)

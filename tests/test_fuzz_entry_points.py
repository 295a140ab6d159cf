"""Issue 24 (Python API, remaining entry points): bad input is never silent.

Hypothesis fuzz tests for ``time_grid``, ``numerics.quadrature``, ``numerics.divergences``, ``numerics.stats``,
``numerics.schedule``, ``numerics.references.exact_gaussian``, ``numerics.references.grid_density`` and for
``ScoreModel`` callables that misbehave late in a ``sample`` run.  Each outcome is a finite result (or a documented
value, e.g. ``inf`` for a KL with q = 0 where p > 0) or a ValueError/TypeError whose message starts with the name
of an argument of the function (or a clearly named quantity); nothing else (another exception type, a NaN, a
NumPy warning turned error) comes out.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from numerics import GaussianMixture, sample, time_grid
from numerics import divergences, quadrature, schedule, stats
from numerics.builtin_targets import two_class
from numerics.references import exact_gaussian, grid_density
from numerics.target import ScoreModel

TC = two_class()
G1 = GaussianMixture([1.0], [[0.5, -0.5]], [[[1.0, 0.2], [0.2, 0.5]]])

_edge_float = st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e200, 1e-300, 1e-320, 5e-324, -1.0, 0.0,
                               1.0, 0.5, 3.0, 1e-12, 40.0, 800.0])
_edge = st.one_of(
    _edge_float, st.none(), st.booleans(), st.integers(-3, 3), st.just(2**62), st.just(10**12), st.text(max_size=3),
    st.just(1 + 2j), st.lists(_edge_float, min_size=0, max_size=4),
    st.lists(st.lists(_edge_float, min_size=1, max_size=3), min_size=1, max_size=3),
)
_edge_array = st.one_of(st.lists(_edge_float, min_size=0, max_size=5), _edge)


def _finite(out) -> bool:
    if isinstance(out, (bool, np.bool_, str)):
        return True
    if isinstance(out, tuple):  # NamedTuple results / (Q, r) pairs
        return all(_finite(v) for v in out)
    if hasattr(out, "density"):
        return _finite(out.density) and _finite(out.escaped)
    return bool(np.all(np.isfinite(np.asarray(out, dtype=np.float64))))


def _check(call, names, allowed=()):
    """``call()`` returns a finite result (or one of ``allowed``) or raises ValueError/TypeError naming one of
    ``names`` at the start of its message."""
    try:
        out = call()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert re.match(r"^(%s)\b" % "|".join(map(re.escape, names)), msg), f"{type(exc).__name__}: {msg}"
        return None
    if any(out == a for a in allowed if isinstance(out, float)):
        return out
    assert _finite(out), out
    return out


_FUZZ = settings(max_examples=100, deadline=None)


# ------------------------------------------------------------------------------------------- time_grid
@_FUZZ
@given(kind=st.one_of(st.sampled_from(["uniform", "logsnr", "geometric"]), _edge),
       T=st.one_of(st.none(), _edge_float, _edge), delta=st.one_of(st.none(), _edge_float, _edge),
       n=st.one_of(st.none(), st.integers(1, 50), _edge), kappa=st.one_of(st.none(), _edge_float, _edge))
@example(kind="logsnr", T=1e-320, delta=5e-324, n=3, kappa=None)
@example(kind="geometric", T=1e308, delta=1e-320, n=None, kappa=1e200)
@example(kind="uniform", T=1e308, delta=1e-320, n=10**7, kappa=None)
def test_fuzz_time_grid(kind, T, delta, n, kappa):
    out = _check(lambda: time_grid(kind, T=T, delta=delta, n=n, kappa=kappa), ("kind", "grid", "T", "delta", "n", "kappa"))
    if out is not None:
        assert out.ndim == 1 and out.size >= 2 and np.all(np.diff(out) < 0) and out[-1] > 0


# ------------------------------------------------------------------------------------------- quadrature
@_FUZZ
@given(n=st.one_of(st.integers(1, 40), _edge), d=st.one_of(st.integers(1, 3), _edge))
@example(n=1, d=10**12)
def test_fuzz_quadrature(n, d):
    out = _check(lambda: quadrature.gauss_hermite_normal(n), ("n",))
    if out is not None:
        assert abs(out.weights.sum() - 1.0) < 1e-12
    small = not (isinstance(n, int) and isinstance(d, int) and 0 < n and 0 < d and d * math.log(max(n, 1)) > 11.5)
    _check(lambda: quadrature.gauss_hermite_normal_nd(n, d) if small or d > 10**6 else (), ("n", "d"))


# ------------------------------------------------------------------------------------------- divergences
_density = st.one_of(st.lists(st.sampled_from([0.0, 1e-320, 1e-300, 0.5, 1.0, 1e300, 1e308]), min_size=1, max_size=5),
                     _edge_array)


@_FUZZ
@given(p=_density, q=_density, cell=st.one_of(st.sampled_from([1.0, 0.1]), _edge))
@example(p=[1e308, 1e308], q=[1.0, 1.0], cell=1.0)
@example(p=[1.0, 1.0], q=[1e-320, 1e-320], cell=1e-10)
@example(p=[1.0, 1.0], q=[1.0, 1.0], cell=True)
def test_fuzz_kl_cells(p, q, cell):
    out = _check(lambda: divergences.kl_cells(p, q, cell), ("p", "q", "cell"), allowed=(math.inf,))
    if out is not None and out != math.inf:
        assert out >= -1e-12


_cov = st.one_of(st.just([[1.0, 0.0], [0.0, 1.0]]), st.just([[1e308, 0.0], [0.0, 1e-308]]),
                 st.just([[1e-320, 0.0], [0.0, 1.0]]), st.just([[1.0, 2.0], [2.0, 1.0]]), _edge)
_mean = st.one_of(st.just([0.0, 1.0]), st.just([1e308, -1e308]), _edge)


@_FUZZ
@given(m0=_mean, S0=_cov, m1=_mean, S1=_cov)
@example(m0=[0.0, 0.0], S0=[[1.0, 0.0], [0.0, 1.0]], m1=[1e308, -1e308], S1=[[1.0, 0.0], [0.0, 1.0]])
@example(m0=[0.0, 0.0], S0=[[1e308, 0.0], [0.0, 1e-308]], m1=[0.0, 0.0], S1=[[1e-320, 0.0], [0.0, 1.0]])
def test_fuzz_gaussian_kl(m0, S0, m1, S1):
    out = _check(lambda: divergences.gaussian_kl(m0, S0, m1, S1), ("m0", "S0", "m1", "S1"))
    if out is not None:
        assert out >= -1e-9


@_FUZZ
@given(m0=st.one_of(st.just(0.0), _edge_float, _edge), v0=st.one_of(st.just(1.0), _edge_float, _edge),
       m1=st.one_of(st.just(1.0), _edge_float, _edge), v1=st.one_of(st.just(2.0), _edge_float, _edge))
@example(m0=0.0, v0=1.0, m1=0.0, v1=0.0)
@example(m0=0.0, v0=1.0, m1=1e308, v1=1e-300)
@example(m0="0", v0=1.0, m1=0.0, v1=1.0)
def test_fuzz_gaussian_kl_1d(m0, v0, m1, v1):
    _check(lambda: divergences.gaussian_kl_1d(m0, v0, m1, v1), ("m0", "v0", "m1", "v1"))


# ------------------------------------------------------------------------------------------- stats
_sample = st.one_of(st.lists(st.sampled_from([0.0, 1.0, -2.5, 1e-320, 1e308, -1e308, 1e200]), min_size=0, max_size=6),
                    _edge_array)
_level = st.one_of(st.sampled_from([0.95, 0.5, 1e-300, 1 - 1e-16]), _edge)


@_FUZZ
@given(x=_sample, level=_level, method=st.one_of(st.sampled_from(["t", "normal"]), _edge))
@example(x=[1e308, 1e308], level=0.95, method="t")
@example(x=[1.0, 2.0], level="0.9", method="t")
@example(x=[1.0, 2.0], level=None, method="t")
@example(x=["a", "b"], level=0.9, method="t")
def test_fuzz_mean_ci(x, level, method):
    _check(lambda: stats.mean_ci(x, level, method), ("x", "level", "method", "mean_ci"))


@_FUZZ
@given(k=st.one_of(st.integers(0, 10), _edge), n=st.one_of(st.integers(1, 10), _edge), level=_level,
       method=st.one_of(st.sampled_from(["wilson", "clopper-pearson", "exact"]), _edge))
@example(k=np.nan, n=10, level=0.95, method="wilson")
@example(k=1, n=np.inf, level=0.95, method="wilson")
@example(k="a", n=3, level=0.95, method="wilson")
def test_fuzz_proportion_ci(k, n, level, method):
    _check(lambda: stats.proportion_ci(k, n, level, method), ("k", "n", "level", "method"))


@_FUZZ
@given(x=_sample, y=_sample, level=_level)
@example(x=[1.0, 2.0, 4.0], y=[1e-320, 1.0, 1e308], level=0.95)
def test_fuzz_loglog_slope(x, y, level):
    _check(lambda: stats.loglog_slope(x, y, level), ("x", "y", "level", "loglog_slope"))


@_FUZZ
@given(ci=st.one_of(st.tuples(_edge_float, _edge_float), _edge), bound=_edge, tol=_edge,
       which=st.sampled_from(["upper_end_le", "lower_end_ge", "half_width"]))
@example(ci=("1.0", 2.0), bound=1.0, tol=0.0, which="upper_end_le")
@example(ci=(0.0, 1.0), bound=True, tol=0.0, which="lower_end_ge")
@example(ci=(True, 1.0), bound=1.0, tol=0.0, which="half_width")
@example(ci=(-1e308, 1e308), bound=1.0, tol=0.0, which="half_width")
def test_fuzz_ci_rules(ci, bound, tol, which):
    calls = {"upper_end_le": lambda: stats.upper_end_le(ci, bound, tol),
             "lower_end_ge": lambda: stats.lower_end_ge(ci, bound, tol), "half_width": lambda: stats.half_width(ci)}
    names = ("measured_ci", "ci", "bound", "tol")
    try:
        out = calls[which]()
    except (ValueError, TypeError) as exc:
        assert re.match(r"^(%s)\b" % "|".join(names), str(exc)), str(exc)
        return
    if which != "half_width":  # documented: False if any value is NaN
        assert isinstance(out, bool)
    else:  # documented: NaN if an end is NaN, inf if an end is infinite; finite (>= 0) for finite ends
        assert isinstance(out, float)
        assert math.isfinite(out) == all(math.isfinite(v) for v in ci) and not out < 0, (ci, out)


# ------------------------------------------------------------------------------------------- schedule
@_FUZZ
@given(t=st.one_of(_edge_float, _edge, st.just(np.array([0.5, 1e-320, 40.0]))),
       which=st.sampled_from(["alpha_t", "sigma2_t", "alpha_sigma2", "logsnr_t", "t_of_logsnr"]))
@example(t=-1000.0, which="alpha_t")
@example(t=-1000.0, which="alpha_sigma2")
@example(t=0.0, which="logsnr_t")
@example(t=np.nan, which="sigma2_t")
@example(t="1.0", which="alpha_t")
def test_fuzz_schedule(t, which):
    _check(lambda: getattr(schedule, which)(t), ("t", "lam"))


# ------------------------------------------------------------------------------------------- exact_gaussian
@_FUZZ
@given(method=st.one_of(st.sampled_from(["ddim", "ddpm", "euler", "ei_ode", "dpm_solver_2"]), _edge),
       grid=st.one_of(st.just([1.0, 0.5, 0.1]), st.lists(_edge_float, min_size=0, max_size=3), _edge),
       m0=st.one_of(st.none(), st.just([0.0, 0.0]), _edge), S0=st.one_of(st.none(), _cov),
       guidance=st.one_of(st.just(1.0), _edge), use_guid=st.booleans(),
       form=st.one_of(st.sampled_from(["cg", "cg_mean", "cfg"]), _edge))
@example(method="ddim", grid=[1.0, 0.5], m0=[np.nan, 0.0], S0=None, guidance=1.0, use_guid=False, form="cg")
@example(method="ddim", grid=[1.0, 0.5], m0=None, S0=[[1e308, 0.0], [0.0, 1e308]], guidance=1.0, use_guid=False,
         form="cg")
@example(method="ddim", grid=[1.0, 0.5], m0="ab", S0=None, guidance=1.0, use_guid=False, form="cg")
@example(method="ddim", grid=[1.0, 0.5], m0=[1.0, 2.0, 3.0], S0=None, guidance=1.0, use_guid=False, form="cg")
def test_fuzz_exact_law(method, grid, m0, S0, guidance, use_guid, form):
    guid = (lambda t: (-0.1 * np.eye(2), np.ones(2))) if use_guid else None
    _check(lambda: exact_gaussian.exact_law(G1, method, grid, m0=m0, S0=S0, guidance=guidance, affine_guidance=guid,
                                            guidance_form=form),
           ("target", "method", "grid", "m0", "S0", "eta", "guidance", "affine_guidance", "guidance_form"))


@_FUZZ
@given(target=st.one_of(st.just(G1), st.just(TC), _edge), x=st.one_of(st.just([[0.0, 1.0]]), _edge),
       t=st.one_of(st.just(1.0), _edge_float, _edge), s=st.one_of(st.just(0.5), _edge_float, _edge),
       which=st.sampled_from(["pf_map", "gaussian_params", "cov_t", "affine_score", "affine_q"]),
       kind=st.one_of(st.sampled_from(["score", "denoiser", "eps"]), _edge))
@example(target=G1, x=[[0.0, 1.0]], t=-1000.0, s=0.5, which="pf_map", kind="score")
@example(target=G1, x=[[0.0, 1.0]], t=1000.0, s=0.5, which="affine_q", kind="denoiser")
@example(target=G1, x=[[0.0, 1.0]], t=0.0, s=0.5, which="affine_q", kind="score")
def test_fuzz_exact_gaussian_helpers(target, x, t, s, which, kind):
    mu, Sigma = G1.means[0], G1.covs[0]
    calls = {"pf_map": lambda: exact_gaussian.pf_map(target, x, t, s),
             "gaussian_params": lambda: exact_gaussian.gaussian_params(target),
             "cov_t": lambda: exact_gaussian.cov_t(Sigma, t),
             "affine_score": lambda: exact_gaussian.affine_score(mu, Sigma, t),
             "affine_q": lambda: exact_gaussian.affine_q(kind, mu, Sigma, t)}
    _check(calls[which], ("target", "x", "t", "s", "kind", "mu", "Sigma", "w", "guid"))


# ------------------------------------------------------------------------------------------- grid_density
_grid1 = st.one_of(st.just(list(np.linspace(-3.0, 3.0, 7))), st.just([0.0, 1.0, 2.0, 4.0]),
                   st.just([1e308, 1.5e308, 2e308]), _edge_array)


@_FUZZ
@given(grid=_grid1, p=_density, q=_density, mean=st.one_of(st.just(0.0), _edge), var=st.one_of(st.just(1.0), _edge),
       lo=_edge, hi=_edge, n=st.one_of(st.integers(3, 9), _edge),
       which=st.sampled_from(["uniform_grid", "spacing", "gaussian_on_grid", "kl_grid", "tv_grid"]))
@example(grid=[-1e308, 0.0, 1e308], p=[1.0], q=[1.0], mean=0.0, var=1.0, lo=0.0, hi=1.0, n=3, which="spacing")
@example(grid=[-1.0, 0.0, 1.0], p=[1.0], q=[1.0], mean=0.0, var=1e-320, lo=0.0, hi=1.0, n=3,
         which="gaussian_on_grid")
@example(grid=[-1.0, 0.0, 1.0], p=[1.0], q=[1.0], mean="x", var=1.0, lo=0.0, hi=1.0, n=3, which="gaussian_on_grid")
@example(grid=[-1.0, 0.0, 1.0], p=[1e308, 1e308, 1e308], q=[1.0, 1.0, 1.0], mean=0.0, var=1.0, lo=0.0, hi=1.0, n=3,
         which="tv_grid")
@example(grid=[-1.0, 0.0, 1.0], p=[1.0], q=[1.0], mean=0.0, var=1.0, lo=-1e308, hi=1e308, n=3, which="uniform_grid")
@example(grid=[-1.0, 0.0, 1.0], p=[1.0], q=[1.0], mean=0.0, var=1.0, lo="a", hi=1.0, n=3, which="uniform_grid")
def test_fuzz_grid_density_1d(grid, p, q, mean, var, lo, hi, n, which):
    p3 = p if not (isinstance(p, list) and len(p) == 1) else p * (len(grid) if isinstance(grid, list) else 1)
    calls = {"uniform_grid": lambda: grid_density.uniform_grid(lo, hi, n),
             "spacing": lambda: grid_density.spacing(grid),
             "gaussian_on_grid": lambda: grid_density.gaussian_on_grid(grid, mean, var),
             "kl_grid": lambda: grid_density.kl_grid(p3, q, grid),
             "tv_grid": lambda: grid_density.tv_grid(p3, q, grid)}
    _check(calls[which], ("grid", "p", "q", "mean", "var", "lo", "hi", "n"), allowed=(math.inf,))


_G3 = np.linspace(-2.0, 2.0, 5)


@_FUZZ
@given(density0=st.one_of(st.just(list(np.ones(5))), _density), mean_out=st.sampled_from(["ok", "nan", "shape", "raise",
                                                                                          "complex", "huge"]),
       var=st.one_of(st.just(0.5), _edge_float, _edge, st.just(lambda k: np.nan)), steps=st.one_of(st.integers(0, 3), _edge))
@example(density0=list(np.ones(5)), mean_out="raise", var=0.5, steps=1)
@example(density0=list(np.ones(5)), mean_out="complex", var=0.5, steps=1)
@example(density0=list(np.ones(5)), mean_out="ok", var="a", steps=1)
@example(density0=list(np.ones(5)), mean_out="ok", var=lambda k: "a", steps=1)
@example(density0=list(np.ones(5)), mean_out="ok", var=1e-320, steps=1)
def test_fuzz_propagate(density0, mean_out, var, steps):
    outs = {"ok": lambda g: 0.9 * g, "nan": lambda g: g * np.nan, "shape": lambda g: g[:2],
            "raise": lambda g: 1 / 0, "complex": lambda g: g * (1 + 1j), "huge": lambda g: g * 1e308}
    _check(lambda: grid_density.propagate(density0, _G3, lambda g, k: outs[mean_out](g), var, steps),
           ("density0", "grid", "transition_mean_fn", "transition_var", "steps"))
    _check(lambda: grid_density.propagate_2d(np.ones((5, 5)) if isinstance(density0, list) and len(density0) == 5
                                             else density0, _G3, _G3,
                                             lambda a, b, k: (outs[mean_out](a), outs[mean_out](b)), var, steps),
           ("density0", "grid1", "grid2", "transition_mean_fn", "transition_var", "steps"))


@_FUZZ
@given(p=st.one_of(st.just(np.ones((5, 5))), st.just(np.full((5, 5), 1e308)), _edge),
       q=st.one_of(st.just(np.ones((5, 5))), st.just(np.zeros((5, 5))), _edge),
       mean=st.one_of(st.just([0.0, 0.0]), _edge), cov=st.one_of(st.just(1.0), _cov, st.just(1e-320)),
       grid2=st.one_of(st.just(_G3), _grid1),
       which=st.sampled_from(["gaussian_on_grid_2d", "kl_grid_2d", "tv_grid_2d", "refinement_error_2d",
                              "refinement_error"]))
@example(p=np.ones((5, 5)), q=np.ones((5, 5)), mean=[0.0, 0.0], cov=1e-320, grid2=_G3, which="gaussian_on_grid_2d")
@example(p=np.ones((5, 5)), q=np.ones((5, 5)), mean=[0.0, 0.0], cov=[[1e308, 0.0], [0.0, 1e308]], grid2=_G3,
         which="gaussian_on_grid_2d")
def test_fuzz_grid_density_2d(p, q, mean, cov, grid2, which):
    calls = {"gaussian_on_grid_2d": lambda: grid_density.gaussian_on_grid_2d(_G3, grid2, mean, cov),
             "kl_grid_2d": lambda: grid_density.kl_grid_2d(p, q, _G3, grid2),
             "tv_grid_2d": lambda: grid_density.tv_grid_2d(p, q, _G3, grid2),
             "refinement_error_2d": lambda: grid_density.refinement_error_2d(
                 lambda a, b: np.ones((a.size, b.size)) * float(np.asarray(mean, dtype=float).ravel()[0])
                 if isinstance(mean, list) and mean else np.ones((2, 2)), _G3, grid2),
             "refinement_error": lambda: grid_density.refinement_error(lambda g: np.ones(g.size), grid2)}
    _check(calls[which], ("p", "q", "mean", "cov", "grid1", "grid2", "run", "grid"), allowed=(math.inf,))


# ------------------------------------------------------------------------------------------- ScoreModel, late failure
_BAD = {
    "nan": lambda x: np.full_like(x, np.nan),
    "inf": lambda x: np.full_like(x, -np.inf),
    "shape": lambda x: np.zeros((x.shape[0] + 1, x.shape[1])),
    "flat": lambda x: np.zeros(x.size),
    "complex": lambda x: x.astype(complex),
    "int": lambda x: np.zeros(x.shape, dtype=int),
    "list": lambda x: x.tolist(),
    "none": lambda x: None,
    "raise": lambda x: (_ for _ in ()).throw(RuntimeError("model failed")),
    "zerodiv": lambda x: 1 / 0,
}


def _late(good, k, bad):
    """``good`` for the construction test and the first ``k`` calls of the run, then ``bad(x)``."""
    calls = [0]

    def f(x, t, *y):
        calls[0] += 1
        return good(x, t, *y) if calls[0] <= k + 1 else _BAD[bad](x)
    return f


@_FUZZ
@given(k=st.integers(0, 4), bad=st.sampled_from(sorted(_BAD)), which=st.sampled_from(["score", "guidance",
                                                                                      "conditional_score"]),
       method=st.sampled_from(["ddim", "ddpm", "euler", "ei_sde", "dpm_solver_2"]))
@example(k=2, bad="raise", which="score", method="ddim")
@example(k=1, bad="nan", which="guidance", method="ddpm")
@example(k=0, bad="list", which="score", method="euler")
def test_fuzz_score_model_late_failure(k, bad, which, method):
    good = {"score": TC.score, "guidance": TC.guidance_vector, "conditional_score": TC.conditional_score}
    fns = {name: (_late(f, k, bad) if name == which else f) for name, f in good.items()}
    sm = ScoreModel(fns["score"], 2, guidance=fns["guidance"], conditional_score=fns["conditional_score"], n_classes=2)
    form = "cfg" if which == "conditional_score" else "cg"
    grid = [2.0, 1.5, 1.0, 0.6, 0.3, 0.1]
    if bad == "list":  # a list of floats of the right shape is a valid output: the run completes
        out = sample(sm, method=method, grid=grid, n=3, seed=0, label=1, guidance=2.0, guidance_form=form)
        assert np.all(np.isfinite(out))
        return
    with pytest.raises(ValueError, match=r"^%s: " % which):
        sample(sm, method=method, grid=grid, n=3, seed=0, label=1, guidance=2.0, guidance_form=form)

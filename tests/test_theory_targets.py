"""Symbolic identities: Tweedie (both orders), the Hessian identity, CG = CFG.

Where ``simplify`` closes quickly (a single Gaussian) the identity is proved exactly; for mixtures it
is checked at random rational points to 40 digits (``simplify`` of the two-class CG-CFG difference takes
minutes), with a residual bound of 1e-30 that a wrong formula misses by many orders of magnitude.
"""
import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from theory import forward as fw
from theory.guidance import cg_minus_cfg, w
from theory.targets import SymbolicMixture



def _points(mix, rng, n=4):
    """Random rational substitutions for x, t and every free parameter of the mixture."""
    out = []
    for _ in range(n):
        sub = {fw.t: sp.Rational(int(rng.integers(5, 200)), 100)}
        for xi in mix.x:
            sub[xi] = sp.Rational(int(rng.integers(-250, 250)), 100)
        out.append(sub)
    return out


def _params(rng):
    m0, m1 = sp.symbols("mu0 mu1", real=True)
    v0, v1 = sp.symbols("v0 v1", positive=True)
    wt = sp.Symbol("p0", positive=True)
    return {m0: sp.Rational(int(rng.integers(-20, 0)), 10), m1: sp.Rational(int(rng.integers(1, 20)), 10),
            v0: sp.Rational(int(rng.integers(1, 30)), 10), v1: sp.Rational(int(rng.integers(1, 30)), 10),
            wt: sp.Rational(int(rng.integers(1, 9)), 10)}


_CACHE: dict = {}


def _max_abs(expr_matrix, sub):
    """max |entry| at the substitution, evaluated by an mpmath lambdification at 45 digits."""
    M = sp.Matrix(expr_matrix)
    syms = sorted(M.free_symbols, key=str)
    key = (id(expr_matrix), tuple(syms))
    if key not in _CACHE:
        _CACHE[key] = (expr_matrix, sp.lambdify(syms, list(M), "mpmath"))
    f = _CACHE[key][1]
    with mp.workdps(45):
        vals = f(*[mp.mpf(sub[s_].p) / sub[s_].q for s_ in syms])
        return max(abs(v) for v in vals)


def test_tweedie_gaussian_exact():
    g = SymbolicMixture.gaussian_1d()
    assert sp.simplify(g.tweedie_denoiser()[0] - g.denoiser()[0]) == 0
    assert sp.simplify(g.tweedie_posterior_cov()[0] - g.posterior_cov()[0]) == 0


def test_tweedie_gaussian_any_schedule():
    """Tweedie holds for every VP schedule (log alpha_t = L(t) undefined)."""
    g = SymbolicMixture.gaussian_1d(schedule=fw.GENERAL)
    assert sp.simplify(g.tweedie_denoiser()[0] - g.denoiser()[0]) == 0


def test_tweedie_negative_control():
    """Dropping alpha_t from Tweedie's map breaks the identity."""
    g = SymbolicMixture.gaussian_1d()
    wrong = g.x[0] + g.sigma2 * g.score()[0]
    assert sp.simplify(wrong - g.denoiser()[0]) != 0


@pytest.fixture(scope="module")
def two_class():
    return SymbolicMixture.two_class_1d()


def test_mixture_identities_at_random_points(two_class):
    rng = np.random.default_rng(7)
    m = two_class
    exprs = {
        "tweedie1": m.tweedie_denoiser() - m.denoiser(),
        "tweedie2": m.tweedie_posterior_cov() - m.posterior_cov(),
        "score": m.score() - m.score_direct(),
        "hessian": m.guidance_hessian(1) - m.guidance_hessian_identity(1),
        "bayes": m.guidance_vector(1) - (m.score(1) - m.score()),
        "cg_cfg": cg_minus_cfg(m, 1, weight=sp.Rational(7, 2)),
    }
    for _ in range(3):
        par = _params(rng)
        for sub in _points(m, rng, 2):
            sub = {**sub, **par}
            for name, e in exprs.items():
                assert _max_abs(e, sub) < 1e-30, name


def test_mixture_negative_controls(two_class):
    """Each identity check flags a broken variant: wrong class, dropped alpha, wrong sign."""
    rng = np.random.default_rng(8)
    m = two_class
    broken = {
        "cg_wrong_class": m.score() + w * m.guidance_vector(0) - (w * m.score(1) + (1 - w) * m.score()),
        "hessian_no_alpha": m.guidance_hessian(1) - m.guidance_hessian_identity(1) * m.alpha**-2,
        "tweedie_sign": (m.x - m.sigma2 * m.score()) / m.alpha - m.denoiser(),
    }
    par = _params(rng)
    sub = {**_points(m, rng, 1)[0], **par, w: sp.Rational(3)}
    for name, e in broken.items():
        assert _max_abs(e, sub) > 1e-6, name


def test_atoms_and_low_rank_2d():
    """A 2-D mixture with an atom, a rank-one and a full component: Tweedie and the Hessian identity."""
    m = SymbolicMixture(
        [sp.Rational(1, 3), sp.Rational(1, 3), sp.Rational(1, 3)],
        [[0, 1], [1, -1], [-1, 0]],
        [sp.zeros(2, 2), sp.Matrix([[1, 1], [1, 1]]), sp.Matrix([[2, sp.Rational(1, 2)], [sp.Rational(1, 2), 1]])],
        labels=[0, 1, 1],
    )
    rng = np.random.default_rng(9)
    exprs = [m.tweedie_denoiser() - m.denoiser(), m.guidance_hessian(1) - m.guidance_hessian_identity(1),
             m.tweedie_posterior_cov() - m.posterior_cov()]
    for sub in _points(m, rng, 2):
        for e in exprs:
            assert _max_abs(e, sub) < 1e-30

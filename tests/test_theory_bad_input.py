"""The symbolic layer never evaluates text, and bad input gives a TypeError/ValueError naming the argument.

SymPy's non-strict ``sympify`` (used by ``Matrix(...)`` entries and ``expr.subs(old, new)`` too) parses and
evaluates a string: a crafted string runs arbitrary code.  Every public constructor/function of ``theory``
refuses strings before anything reaches SymPy.
"""
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import discriminator as TD
from theory import forward as fw
from theory import gaussian_channel as gc
from theory import guidance as tg
from theory.targets import SymbolicMixture

GOOD = dict(weights=[sp.Rational(1, 2), sp.Rational(1, 2)], means=[[0, 1], [1, -1]],
            covs=[sp.eye(2), sp.zeros(2, 2)], labels=[0, 1])


def _mix(**kw):
    return SymbolicMixture(**dict(GOOD, **kw))


def _payload(path) -> str:
    """A string that creates ``path`` if anything evaluates it."""
    return f"__import__('pathlib').Path({str(path)!r}).touch()"


# ----------------------------------------------------------------------------- no code execution
def _injection_sites(s):
    """(callable, description) pairs each feeding the crafted string ``s`` to one argument."""
    mix = SymbolicMixture.gaussian_1d()
    return [
        (lambda: SymbolicMixture([s, sp.Rational(1, 2)], [[0], [1]], [[[1]], [[1]]]), "weights"),
        (lambda: SymbolicMixture([1], [[s]], [[[1]]]), "means"),
        (lambda: SymbolicMixture([1], [s], [[[1]]]), "means"),
        (lambda: SymbolicMixture([1], [[0]], [[[s]]]), "covs"),
        (lambda: SymbolicMixture([1], [[0]], [s]), "covs"),
        (lambda: SymbolicMixture([1], [[0]], [[[1]]], labels=[s]), "labels"),
        (lambda: SymbolicMixture([1], [[0]], [[[1]]], schedule=s), "schedule"),
        (lambda: SymbolicMixture(s, [[0]], [[[1]]]), "weights"),
        (lambda: SymbolicMixture([1], [[0]], [sp.Matrix([[1]])], labels=np.array([s])), "labels"),
        (lambda: SymbolicMixture([1], np.array([[s]], dtype=object), [[[1]]]), "means"),
        (lambda: SymbolicMixture.gaussian_1d(mean=s), "mean"),
        (lambda: SymbolicMixture.gaussian_1d(var=s), "var"),
        (lambda: fw.OU.alpha(s), "tt"),
        (lambda: fw.OU.sigma2(s), "tt"),
        (lambda: fw.OU.alpha_ts(fw.t, s), "ss"),
        (lambda: fw.OU.logsnr(s), "tt"),
        (lambda: fw.VPSchedule("bad", s), "log_alpha"),
        (lambda: fw.linear_schedule(s, 20), "b_min"),
        (lambda: fw.cosine_schedule(s), "offset"),
        (lambda: fw.gaussian_marginal_density(fw.OU, s, 1), "mean0"),
        (lambda: fw.fokker_planck_residual(fw.OU, s), "density"),
        (lambda: tg.classifier_guided_score(mix.score(), mix.score(), s), "weight"),
        (lambda: tg.cfg_score(s, mix.score()), "cond_score"),
        (lambda: tg.guided_denoiser(mix.denoiser(), s), "denoiser"),
        (lambda: TD.bayes_logit(mix, mix, s), "xx"),
        (lambda: TD.gaussian_marginal(s, 1), "mean0"),
        (lambda: TD.gaussian_fisher_gap(s), "beta"),
        (lambda: TD.ce_pointwise(s), "d"),
        (lambda: gc.gaussian_kl_1d(s, 1, 0, 1), "m1"),
        (lambda: gc.riemann_gap_gaussian([s]), "ts"),
    ]


@pytest.mark.parametrize("site", range(len(_injection_sites("x"))))
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_crafted_string_is_refused_and_never_runs(tmp_path, site, as_bytes):
    marker = tmp_path / "pwned"
    s = _payload(marker)
    fn, name = _injection_sites(s.encode() if as_bytes else s)[site]
    with pytest.raises(TypeError, match=name):
        fn()
    assert not marker.exists()


def test_payload_would_run_if_sympified(tmp_path):
    """Control: the payload is live (plain ``sympify`` runs it), so the test above would notice an evaluation."""
    marker = tmp_path / "pwned"
    try:
        sp.sympify(_payload(marker))
    except Exception:  # noqa: BLE001 - sympify fails after running the code; only the side effect matters
        pass
    assert marker.exists()


# ----------------------------------------------------------------------------- valid input unchanged
@pytest.mark.parametrize("w,expected", [
    ([1], [sp.Integer(1)]),
    ([0.25, 0.75], [sp.Float(0.25), sp.Float(0.75)]),
    ([0.1, 0.9], [sp.sympify(0.1), sp.sympify(0.9)]),
    ([np.float64(0.1), np.float64(0.9)], [sp.sympify(np.float64(0.1)), sp.sympify(np.float64(0.9))]),
    ([np.float32(0.5), np.float32(0.5)], [sp.sympify(np.float32(0.5))] * 2),
    ([Fraction(1, 3), Fraction(2, 3)], [sp.Rational(1, 3), sp.Rational(2, 3)]),
    ([Decimal("0.5"), Decimal("0.5")], [sp.sympify(Decimal("0.5"))] * 2),
    ([np.int64(1)], [sp.Integer(1)]),
    (np.array([0.5, 0.5]), [sp.Float(0.5)] * 2),
])
def test_numbers_convert_as_plain_sympify_did(w, expected):
    K = len(w)
    m = SymbolicMixture(w, [[k] for k in range(K)], [[[1]]] * K)
    assert m.weights == expected
    assert [type(a) for a in m.weights] == [type(b) for b in expected]
    # a float converts to the Float of the same double, with the same precision
    for a, b in zip(m.weights, expected):
        assert a._prec == b._prec if isinstance(b, sp.Float) else a == b


def test_sympy_and_array_input_unchanged():
    p = sp.Symbol("p", positive=True)
    m = SymbolicMixture([p, 1 - p], np.array([[0.5, 1.0], [-1.0, 2.0]]),
                        np.stack([np.eye(2), np.array([[2.0, 0.5], [0.5, 1.0]])]), labels=np.array([1, 0]))
    assert m.weights == [p, 1 - p]
    assert m.means[0] == sp.Matrix([0.5, 1.0]) and m.means[0].shape == (2, 1)
    assert m.covs[1] == sp.Matrix([[2.0, 0.5], [0.5, 1.0]])
    assert m.labels == [1, 0] and all(type(y) is int for y in m.labels)
    g = SymbolicMixture.gaussian_1d(sp.Rational(1, 3), 2)
    assert g.means[0] == sp.Matrix([sp.Rational(1, 3)]) and g.covs[0] == sp.Matrix([[2]])
    assert fw.OU.alpha(0.5) == sp.exp(-sp.Float(0.5))
    assert fw.linear_schedule(0.1, 20).log_alpha == fw.linear_schedule(sp.Float(0.1), sp.Integer(20)).log_alpha


# ----------------------------------------------------------------------------- bad input: one table
_G = SymbolicMixture.gaussian_1d()
_p = sp.Symbol("p", positive=True)
_neg = sp.Symbol("n", negative=True)

BAD = [
    # SymbolicMixture: weights
    (_mix, dict(weights=[sp.Rational(3, 2), -sp.Rational(1, 2)]), ValueError, r"weights\[1\]: must be non-negative"),
    (_mix, dict(weights=[0.5, 0.6]), ValueError, "weights: must sum to 1"),
    (_mix, dict(weights=[sp.Rational(1, 2), sp.Rational(1, 3)]), ValueError, "weights: must sum to 1"),
    (_mix, dict(weights=[float("nan"), 0.5]), ValueError, r"weights\[0\]: must be finite"),
    (_mix, dict(weights=[np.inf, 0.5]), ValueError, r"weights\[0\]: must be finite"),
    (_mix, dict(weights=[sp.nan, 0.5]), ValueError, r"weights\[0\]: must be finite"),
    (_mix, dict(weights=[sp.oo, 0.5]), ValueError, r"weights\[0\]: must be finite"),
    (_mix, dict(weights=[True, False]), TypeError, r"weights\[0\]: .*bool"),
    (_mix, dict(weights=[np.True_, np.False_]), TypeError, r"weights\[0\]"),
    (_mix, dict(weights=[0.5 + 0.5j, 0.5 - 0.5j]), TypeError, r"weights\[0\]"),
    (_mix, dict(weights=[sp.I, 1 - sp.I]), ValueError, r"weights\[0\]"),
    (_mix, dict(weights=[_neg, 1 - _neg]), ValueError, r"weights\[0\]: must be non-negative"),
    (_mix, dict(weights=[None, 0.5]), TypeError, r"weights\[0\]"),
    (_mix, dict(weights=[[0.5], [0.5]]), TypeError, r"weights\[0\]"),
    (_mix, dict(weights=0.5), TypeError, "weights"),
    (_mix, dict(weights=[]), ValueError, "weights"),
    (_mix, dict(weights=[1]), ValueError, "means: need one per weight"),
    (_mix, dict(weights=[sp.Eq(_p, 1), 0.5]), TypeError, r"weights\[0\]"),
    # means
    (_mix, dict(means=[[0, 1]]), ValueError, "means: need one per weight"),
    (_mix, dict(means=[[0, 1], [1]]), ValueError, r"means\[1\]: dimension"),
    (_mix, dict(means=[[[0, 1]], [[1, 1]]]), ValueError, r"means\[0\]: must be a column"),
    (_mix, dict(means=[[0, np.nan], [1, 1]]), ValueError, r"means\[0\]\[1\]: must be finite"),
    (_mix, dict(means=[[0, sp.I], [1, 1]]), ValueError, r"means\[0\]: entries must be real"),
    (_mix, dict(means=[[0, None], [1, 1]]), TypeError, r"means\[0\]\[1\]"),
    (_mix, dict(means=[[0, True], [1, 1]]), TypeError, r"means\[0\]\[1\]"),
    (_mix, dict(means=[[], []]), ValueError, r"means\[0\]"),
    # covs
    (_mix, dict(covs=[sp.eye(2)]), ValueError, "covs: need one per weight"),
    (_mix, dict(covs=[sp.eye(2), sp.eye(3)]), ValueError, r"covs\[1\]: must be 2 x 2"),
    (_mix, dict(covs=[sp.eye(2), sp.Matrix([[1, 0, 0], [0, 1, 0]])]), ValueError, r"covs\[1\]: must be 2 x 2"),
    (_mix, dict(covs=[sp.eye(2), sp.Matrix([[1, 2], [0, 1]])]), ValueError, r"covs\[1\]: must be symmetric"),
    (_mix, dict(covs=[sp.eye(2), sp.Matrix([[_p, _p], [0, 1]])]), ValueError, r"covs\[1\]: must be symmetric"),
    (_mix, dict(covs=[sp.eye(2), -sp.eye(2)]), ValueError, r"covs\[1\]: diagonal"),
    (_mix, dict(covs=[sp.eye(2), sp.Matrix([[1, 2], [2, 1]])]), ValueError, r"covs\[1\]: must be positive semi-definite"),
    (_mix, dict(covs=[sp.eye(2), sp.Matrix([[_neg, 0], [0, 1]])]), ValueError, r"covs\[1\]: diagonal"),
    (_mix, dict(covs=[sp.eye(2), [[1, np.inf], [np.inf, 1]]]), ValueError, r"covs\[1\]\[0\]\[1\]: must be finite"),
    (_mix, dict(covs=[sp.eye(2), [[1, 0], [0, False]]]), TypeError, r"covs\[1\]\[1\]\[1\]"),
    # labels, schedule
    (_mix, dict(labels=[0]), ValueError, "labels: need one per weight"),
    (_mix, dict(labels=[0, 0.5]), TypeError, r"labels\[1\]"),
    (_mix, dict(labels=[0, 1.0]), TypeError, r"labels\[1\]"),
    (_mix, dict(labels=[True, False]), TypeError, r"labels\[0\]"),
    (_mix, dict(labels=[0, None]), TypeError, r"labels\[1\]"),
    (_mix, dict(labels=5), TypeError, "labels"),
    (_mix, dict(schedule=None), TypeError, "schedule"),
    # SymbolicMixture.gaussian_1d
    (SymbolicMixture.gaussian_1d, dict(mean=float("nan")), ValueError, "mean"),
    (SymbolicMixture.gaussian_1d, dict(var=-1), ValueError, "var"),
    (SymbolicMixture.gaussian_1d, dict(var=True), TypeError, "var"),
    # forward
    (fw.VPSchedule, dict(name="x", log_alpha=-1.0), TypeError, "log_alpha"),
    (fw.VPSchedule, dict(name=3, log_alpha=-fw.t), TypeError, "name"),
    (fw.VPSchedule, dict(name="x", log_alpha=-fw.t, params=[1]), TypeError, "params"),
    (fw.OU.alpha, dict(tt=float("inf")), ValueError, "tt"),
    (fw.OU.alpha, dict(tt=None), TypeError, "tt"),
    (fw.OU.sigma2_ts, dict(tt=1, ss=False), TypeError, "ss"),
    (fw.linear_schedule, dict(b_min=-1, b_max=20), ValueError, "b_min"),
    (fw.linear_schedule, dict(b_min=0.1, b_max=20, T=0), ValueError, "T"),
    (fw.linear_schedule, dict(b_min=0.1, b_max=np.nan), ValueError, "b_max"),
    (fw.cosine_schedule, dict(offset=-0.1), ValueError, "offset"),
    (fw.cosine_schedule, dict(offset=0.008, T=-1), ValueError, "T"),
    (fw.gaussian_marginal_density, dict(schedule="ou", mean0=0, var0=1), TypeError, "schedule"),
    (fw.gaussian_marginal_density, dict(schedule=fw.OU, mean0=0, var0=-1), ValueError, "var0"),
    (fw.fokker_planck_residual, dict(schedule=fw.OU, density=None), TypeError, "density"),
    # guidance
    (tg.classifier_guided_score, dict(score=_G.score(), guidance=_G.score(), weight=None), TypeError, "weight"),
    (tg.cfg_score, dict(cond_score=_G.score(), score=_G.score(), weight=np.nan), ValueError, "weight"),
    (tg.guided_denoiser, dict(cond_denoiser=[1.0], denoiser=_G.denoiser()), TypeError, "cond_denoiser"),
    (tg.cg_minus_cfg, dict(mix=_G, y=1), ValueError, "y"),
    (tg.cg_minus_cfg, dict(mix="m", y=0), TypeError, "mix"),
    (tg.cg_minus_cfg, dict(mix=_G, y=True), TypeError, "y"),
    # discriminator
    (TD.bayes_logit, dict(data=_G, model=None), TypeError, "model"),
    (TD.refined_score_residual, dict(data=1, model=_G), TypeError, "data"),
    (TD.gaussian_marginal, dict(mean0=0, var0=-2), ValueError, "var0"),
    (TD.gaussian_marginal, dict(mean0=0, var0=1, schedule=2), TypeError, "schedule"),
    (TD.dsm_minus_esm_polynomial, dict(degree=True), TypeError, "degree"),
    (TD.dsm_minus_esm_polynomial, dict(degree=2.0), ValueError, "degree"),
    (TD.dsm_minus_esm_polynomial, dict(degree=-1), ValueError, "degree"),
    (TD.girsanov_weight, dict(schedule="ou"), TypeError, "schedule"),
    (TD.gaussian_fisher_gap, dict(beta=np.inf), ValueError, "beta"),
    (TD.ce_pointwise, dict(d=0, p=None), TypeError, "p"),
    # gaussian channel
    (gc.gaussian_kl_1d, dict(m1=0, v1=0, m2=0, v2=1), ValueError, "v1"),
    (gc.gaussian_kl_1d, dict(m1=0, v1=1, m2=0, v2=-1), ValueError, "v2"),
    (gc.gaussian_kl_1d, dict(m1=np.nan, v1=1, m2=0, v2=1), ValueError, "m1"),
    (gc.riemann_gap_gaussian, dict(ts=[]), ValueError, "ts"),
    (gc.riemann_gap_gaussian, dict(ts=[0, 2, 1]), ValueError, "ts"),
    (gc.riemann_gap_gaussian, dict(ts=[-1, 1]), ValueError, r"ts\[0\]"),
    (gc.riemann_gap_gaussian, dict(ts=3), TypeError, "ts"),
]


@pytest.mark.parametrize("fn,kwargs,exc,needle", BAD, ids=[f"{i}-{fn.__name__}" for i, (fn, *_ ) in enumerate(BAD)])
def test_bad_input_is_refused(fn, kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        fn(**kwargs)


# ----------------------------------------------------------------------------- hypothesis: anything in, a clean answer out
_junk_scalar = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 3),
    st.fractions(max_denominator=10),
    st.booleans(),
    st.none(),
    st.text(max_size=30),
    st.sampled_from(["1/2", "0.5", "x", "__import__('os')", "lambda: 0", "(", "1e309", "nan", "oo", "I",
                     "Matrix([[1]])", "exec('1')"]),
    st.binary(max_size=8),
    st.sampled_from([sp.Rational(1, 2), sp.Symbol("a", positive=True), sp.nan, sp.oo, sp.I, sp.Integer(-1)]),
)
_junk = st.one_of(_junk_scalar, st.lists(_junk_scalar, max_size=3), st.lists(st.lists(_junk_scalar, max_size=3), max_size=3))


@st.composite
def _mixture_args(draw):
    """Either free junk, or the right structure (K components in d = 1) with junk or valid entries."""
    if draw(st.booleans()):
        return draw(_junk), draw(_junk), draw(_junk), draw(st.one_of(st.none(), _junk))
    K = draw(st.integers(1, 2))
    ok = st.one_of(st.integers(-3, 3), st.floats(-3, 3), st.fractions(-3, 3, max_denominator=10))
    entry = st.one_of(ok, ok, _junk_scalar)
    weights = draw(st.one_of(st.just([sp.Rational(1, K)] * K), st.just([1.0 / K] * K), st.lists(entry, min_size=K, max_size=K)))
    means = [[draw(entry)] for _ in range(K)]
    covs = [[[draw(st.one_of(st.floats(0, 3), entry))]] for _ in range(K)]
    labels = draw(st.one_of(st.none(), st.lists(st.one_of(st.integers(0, 2), _junk_scalar), min_size=K, max_size=K)))
    return weights, means, covs, labels


@settings(max_examples=100, deadline=None)
@given(args=_mixture_args())
def test_symbolic_mixture_fuzz(tmp_path_factory, args):
    """Random numbers/strings/None: a valid object or a TypeError/ValueError, never another error, never code."""
    weights, means, covs, labels = args
    marker = tmp_path_factory.getbasetemp() / "fuzz-pwned"
    bait = _payload(marker)
    if isinstance(weights, list) and weights and isinstance(weights[0], str):
        weights = [bait, *weights[1:]]
    try:
        m = SymbolicMixture(weights, means, covs, labels)
    except (TypeError, ValueError):
        pass
    else:
        assert isinstance(m, SymbolicMixture) and len(m.weights) == len(m.means) == len(m.covs) == len(m.labels)
        assert all(isinstance(w, sp.Expr) for w in m.weights)
    assert not marker.exists()


@settings(max_examples=100, deadline=None)
@given(w=st.lists(st.fractions(min_value=0, max_value=1, max_denominator=50), min_size=1, max_size=3),
       mu=st.lists(st.floats(-5, 5), min_size=3, max_size=3), v=st.lists(st.floats(0, 4), min_size=3, max_size=3))
def test_symbolic_mixture_fuzz_valid(w, mu, v):
    """Valid random mixtures (weights renormalised exactly) are accepted with the plain-sympify values."""
    total = sum(w)
    if total == 0:
        return
    w = [x / total for x in w]
    K = len(w)
    m = SymbolicMixture(w, [[mu[k]] for k in range(K)], [[[v[k]]] for k in range(K)])
    assert m.weights == [sp.sympify(x) for x in w]
    assert [mm[0] for mm in m.means] == [sp.sympify(mu[k]) for k in range(K)]

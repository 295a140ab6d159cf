"""Malformed input gives a ValueError naming the argument: never a Numba error, never a silent NaN."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numerics import GaussianMixture

GOOD = dict(weights=[0.5, 0.5], means=[[0.0, 0.0], [1.0, 1.0]], covs=np.stack([np.eye(2), np.zeros((2, 2))]), labels=[0, 1])


@pytest.fixture(scope="module")
def gm():
    return GaussianMixture(**GOOD)


@pytest.mark.parametrize("field,value,needle", [
    ("weights", [0.5, -0.1], "weights"),
    ("weights", [0.5, np.nan], "weights"),
    ("weights", [0.5, 0.6], "weights"),
    ("weights", [[0.5, 0.5]], "weights"),
    ("weights", ["a", "b"], "weights"),
    ("means", [[0.0, 0.0]], "means"),
    ("means", [[0.0, np.inf], [1.0, 1.0]], "means"),
    ("covs", np.stack([np.eye(2), -np.eye(2)]), "covs"),
    ("covs", np.stack([np.eye(2), np.array([[1.0, 2.0], [0.0, 1.0]])]), "covs"),
    ("covs", np.stack([np.eye(3), np.eye(3)]), "covs"),
    ("covs", np.stack([np.eye(2), np.array([[1.0, 2.0], [2.0, 1.0]])]), "covs"),
    ("labels", [0, 2], "labels"),
    ("labels", [0.5, 1], "labels"),
    ("labels", [-1, 0], "labels"),
    ("labels", [0], "labels"),
    ("labels", [True, False], "labels"),
])
def test_constructor_rejects(field, value, needle):
    kw = dict(GOOD, **{field: value})
    with pytest.raises(ValueError, match=needle):
        GaussianMixture(**kw)


@pytest.mark.parametrize("x,t,needle", [
    (np.array([[np.nan, 0.0]]), 1.0, "x"),
    (np.array([[0.0, 0.0, 0.0]]), 1.0, "x"),
    (np.zeros((0, 2)), 1.0, "x"),
    ("abc", 1.0, "x"),
    (np.zeros((1, 2)), 0.0, "t"),
    (np.zeros((1, 2)), -1.0, "t"),
    (np.zeros((1, 2)), np.nan, "t"),
    (np.zeros((1, 2)), np.inf, "t"),
    (np.zeros((1, 2)), "1", "t"),
    (np.zeros((1, 2)), [1.0, 2.0], "t"),
])
def test_methods_reject(gm, x, t, needle):
    for method in (gm.score, gm.denoiser, gm.class_posterior, gm.posterior_cov, gm.log_density):
        with pytest.raises(ValueError, match=needle):
            method(x, t)
    with pytest.raises(ValueError, match=needle):
        gm.guidance_vector(x, t, 1)


@pytest.mark.parametrize("y", [2, -1, 0.5, "1", None, True])
def test_bad_label_argument(gm, y):
    with pytest.raises(ValueError, match="y"):
        gm.guidance_vector(np.zeros((1, 2)), 1.0, y)
    with pytest.raises(ValueError, match="y"):
        gm.conditional(y)


def test_overflowing_point_is_reported(gm):
    """A point so far out that every log-density is -inf: a clear error, not NaN."""
    with pytest.raises(ValueError, match="x"):
        gm.score(np.array([[1e200, 0.0]]), 1e-6)


_anything = st.one_of(
    st.none(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    st.lists(st.lists(st.floats(-5, 5), min_size=1, max_size=3), min_size=1, max_size=3),
)


@settings(max_examples=200)
@given(weights=st.one_of(_anything, st.just(GOOD["weights"])), means=st.one_of(_anything, st.just(GOOD["means"])),
       covs=st.one_of(_anything, st.just(GOOD["covs"])), labels=st.one_of(_anything, st.just(GOOD["labels"])))
def test_fuzz_constructor(weights, means, covs, labels):
    try:
        gm = GaussianMixture(weights, means, covs, labels)
    except ValueError:
        return
    # whatever was accepted must evaluate to finite numbers
    s = gm.score(np.zeros((2, gm.d)), 0.5)
    assert np.all(np.isfinite(s))


@settings(max_examples=200)
@given(x=_anything, t=_anything, y=_anything)
def test_fuzz_methods(gm, x, t, y):
    for call in (lambda: gm.score(x, t), lambda: gm.class_posterior(x, t), lambda: gm.guidance_vector(x, t, y)):
        try:
            out = call()
        except ValueError:
            continue
        assert np.all(np.isfinite(out))

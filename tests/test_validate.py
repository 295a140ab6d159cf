"""The generic validators of numerics.validate: accept what they promise, reject the rest with a ValueError whose
message starts with the argument's name."""
from __future__ import annotations

import numpy as np
import pytest

from numerics import validate as V


@pytest.mark.parametrize("call, needle", [
    (lambda: V.check_real("1.0", "a"), "^a: must be a real number"),
    (lambda: V.check_real(True, "a"), "^a: must be a real number"),
    (lambda: V.check_real(1 + 2j, "a"), "^a: must be a real number"),
    (lambda: V.check_real([1.0], "a"), "^a: must be a real number"),
    (lambda: V.check_real(np.nan, "a"), "^a: must be finite"),
    (lambda: V.check_real(10**400, "a"), "^a: must be a real number within float64 range"),
    (lambda: V.check_real(10**400, "a", finite=False), "^a: must be a real number within float64 range"),
    (lambda: V.check_real("nan", "a", finite=False), "^a: must be a real number"),
    (lambda: V.check_real(True, "a", finite=False), "^a: must be a real number"),
    (lambda: V.check_positive(0.0, "b"), "^b: must be finite and > 0"),
    (lambda: V.check_positive(-1, "b", allow_zero=True), "^b: must be finite and >= 0"),
    (lambda: V.check_positive("2", "b"), "^b: must be a real number"),
    (lambda: V.check_nonneg_scalar(np.inf, "w"), "^w:"),
    (lambda: V.check_time(0.0), "^t:"),
    (lambda: V.check_times([1.0, 2.0], 3), "^t: expected a scalar or 3 times"),
    (lambda: V.check_times(np.array([1.0, 0.0]), 2), "^t: must be > 0"),
    (lambda: V.check_times([1.0, np.nan], 2), "^t: contains NaN"),
    (lambda: V.check_times(np.ones((2, 1)), 2), "^t:"),
    (lambda: V.check_int(2.0, "n"), "^n: must be an integer"),
    (lambda: V.check_int(np.bool_(True), "n"), "^n: must be an integer"),
    (lambda: V.check_int(0, "n", 1), "^n: must be >= 1"),
    (lambda: V.check_int(5, "n", 1, 4), "^n: must be <= 4"),
    (lambda: V.check_bool(1, "fast"), "^fast: must be True or False"),
    (lambda: V.check_choice("c", "kind", ("a", "b")), "^kind: must be one of a, b, got 'c'"),
    (lambda: V.check_choice(None, "kind", ("a", "b")), "^kind:"),
    (lambda: V.check_label(3, 3, "label"), r"^label: must be an existing class in 0\.\.2, got 3"),
    (lambda: V.check_label(-1, None, "y"), "^y: must be an integer >= 0"),
    (lambda: V.check_label(1.0, 3, "y"), "^y: must be an integer class"),
    (lambda: V.check_label(True, 3, "y"), "^y: must be an integer class"),
    (lambda: V.check_labels([0, 2], 2), "^labels: must be integers covering"),
    (lambda: V.check_labels([0, 0.5], 2), "^labels: must be integers"),
    (lambda: V.check_labels([0], 2), "^labels: expected shape"),
    (lambda: V.check_weights([], "w"), "^w: need at least one component"),
    (lambda: V.check_weights([0.5, 0.6]), "^weights: must sum to 1"),
    (lambda: V.check_weights([1.5, -0.5]), "^weights: must be non-negative"),
    (lambda: V.check_weights([0.5, 0.5], K=3), "^weights: need 3 entries"),
    (lambda: V.check_array([[1.0, 2.0]], "x_init", (2, 2)), r"^x_init: must have shape \(2, 2\)"),
    (lambda: V.check_array(np.zeros((0, 2)), "X", (None, 2)), r"^X: must have shape \(N, 2\)"),
    (lambda: V.check_array([1.0, np.inf], "bias", (2,)), "^bias: contains NaN"),
    (lambda: V.check_array("ab", "bias", (2,)), "^bias:"),
    (lambda: V.check_sorted([1.0, 1.0], "knots"), r"^knots: must be strictly increasing \(knots\[0\]=1.0 >= knots\[1\]=1.0\)"),
    (lambda: V.check_sorted([1.0, 2.0], "grid", decreasing=True), "^grid: must be strictly decreasing"),
    (lambda: V.check_sorted([1.0], "grid"), "^grid: must be a 1-D array with at least 2 entries"),
    (lambda: V.check_sorted([[1.0, 2.0]], "grid"), "^grid: must be a 1-D array"),
    (lambda: V.check_sorted([0.0, np.nan], "grid"), "^grid: must be finite"),
    # strings and complex numbers are refused, not converted (issue 24)
    (lambda: V.check_sorted(["1.0", "0.5"], "grid", decreasing=True), "^grid: must be a 1-D array of real numbers"),
    (lambda: V.check_sorted([1.0 + 1j, 0.5], "grid", decreasing=True), "^grid: .*complex"),
    (lambda: V.check_sorted("10", "grid"), "^grid: .*string"),
    (lambda: V.check_array(np.ones((2, 2), dtype=complex), "x_init", (2, 2)), "^x_init: .*complex"),
    (lambda: V.check_array([["1", "2"]], "x_init", (1, 2)), "^x_init: must be a real float array"),
    (lambda: V.check_array([[object(), 1.0]], "x_init", (1, 2)), "^x_init: must be a real float array"),
    # labels bounded by K before any per-label allocation
    (lambda: V.check_labels([0, 2**62], 2), "^labels: must be integers covering"),
    (lambda: V.check_labels([0.0, 1e300], 2), "^labels: must be integers covering"),
    (lambda: V.check_labels([1, 1], 2), "^labels: must be integers covering"),
    # seeds and generators
    (lambda: V.check_seed(-1), "^seed: must be a non-negative integer"),
    (lambda: V.check_seed(1.5), "^seed: must be None"),
    (lambda: V.check_seed("abc"), "^seed: must be None"),
    (lambda: V.check_seed(True), "^seed: must be None"),
    (lambda: V.check_seed([1, -2]), "^seed: must be None"),
    (lambda: V.check_rng(0), "^rng: must be a numpy.random.Generator"),
])
def test_rejects_naming_the_argument(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_accepts():
    assert V.check_real(np.float32(0.5), "a") == 0.5 and V.check_real(np.array(2), "a") == 2.0
    assert V.check_positive(np.int64(3), "b") == 3.0 and V.check_positive(0, "b", allow_zero=True) == 0.0
    assert V.check_time(np.array(0.25)) == 0.25
    assert V.check_times(0.5, 3) == 0.5 and isinstance(V.check_times(0.5, 3), float)
    np.testing.assert_array_equal(V.check_times([0.5, 1.0], 2), [0.5, 1.0])
    assert V.check_int(np.int32(4), "n", 1, 4) == 4
    assert V.check_bool(np.bool_(False), "fast") is False
    assert V.check_label(np.int64(2), 3) == 2 and V.check_label(7, None) == 7
    lab, C = V.check_labels([1.0, 0.0, 1.0], 3)
    assert C == 2 and lab.dtype == np.int64 and lab.tolist() == [1, 0, 1]
    w = V.check_weights([0.25, 0.75 + 1e-12])
    assert abs(w.sum() - 1.0) <= 1e-15
    a = V.check_array([[1, 2], [3, 4]], "x", (None, 2))
    assert a.dtype == np.float64 and a.shape == (2, 2)
    src = np.array([3.0, 2.0, 1.0])
    g = V.check_sorted(src, "grid", decreasing=True)
    g[0] = 0.0  # a copy
    assert src[0] == 3.0


def test_accepts_seeds_and_mixed_real_lists():
    for seed in (None, 0, np.int64(7), [1, 2], np.random.SeedSequence(3)):
        assert isinstance(V.check_seed(seed), np.random.Generator)
    g = np.random.default_rng(1)
    assert V.check_seed(g) is g and V.check_rng(g) is g
    np.testing.assert_array_equal(V.check_sorted([3, 2.5, np.float32(1.0)], "grid", decreasing=True), [3.0, 2.5, 1.0])
    np.testing.assert_array_equal(V.check_array(np.array([1, 2.0], dtype=object), "b", (2,)), [1.0, 2.0])
    lab, C = V.check_labels(np.array([1, 0, 2]), 3)
    assert C == 3 and lab.tolist() == [1, 0, 2]


def test_check_real_finite_false_passes_nan_and_inf():
    assert np.isnan(V.check_real(np.nan, "a", finite=False))
    assert V.check_real(-np.inf, "a", finite=False) == -np.inf and V.check_real(np.float32(2.5), "a", False) == 2.5


def test_read_only_input_comes_back_writeable_and_equal() -> None:
    from numerics.validate import as_float_array

    x = np.arange(6.0).reshape(3, 2)
    x.setflags(write=False)
    out = as_float_array(x, "x", 2)
    assert out.flags.writeable and out.flags.c_contiguous and out is not x
    np.testing.assert_array_equal(out, x)
    y = np.arange(6.0).reshape(3, 2)
    assert as_float_array(y, "y", 2) is y  # a writeable float64 array is not copied


@pytest.mark.parametrize("make", [
    lambda: np.arange(12.0).reshape(3, 4)[:, ::2],  # float64 but not contiguous
    lambda: np.asfortranarray(np.arange(6.0).reshape(3, 2)),
    lambda: np.arange(6.0).reshape(3, 2).astype(">f8"),  # equal values, another dtype instance (byte order)
    lambda: np.arange(6, dtype=np.float32).reshape(3, 2),
    lambda: np.arange(6).reshape(3, 2),
    lambda: [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]],
])
def test_as_float_array_general_path_returns_contiguous_native_float64(make) -> None:
    """Whatever takes the general path (not a writeable C-contiguous native float64 ndarray) comes back as one,
    equal in value; the fast path's shortcut must not let a strided view or a foreign dtype through."""
    from numerics.validate import as_float_array

    x = make()
    out = as_float_array(x, "x", 2)
    assert out.dtype == np.float64 and out.dtype.isnative and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, np.asarray(x, dtype=np.float64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_as_float_array_fast_path_still_checks_values_and_dims(bad) -> None:
    from numerics.validate import as_float_array

    x = np.zeros((4, 2))
    x[2, 1] = bad
    with pytest.raises(ValueError, match="^x: contains NaN or infinite values"):
        as_float_array(x, "x", 2)
    assert as_float_array(x, "x", 2, check_finite=False) is x
    with pytest.raises(ValueError, match="^x: expected 1-D array"):
        as_float_array(np.zeros((4, 2)), "x", 1)

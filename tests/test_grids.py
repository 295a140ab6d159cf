"""Time grids (numerics/grids.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numerics.grids import MAX_STEPS, logsnr, logsnr_inverse, time_grid


def authors_generate_grid(t0, T, delta, kappa, max_iter=100_000):
    """Float port of the support paper's ``generate_grid`` (sampler time), with an iteration cap.

    Returns None where the original ``while t_probe < t_end`` loop would not terminate.
    """
    t_end = T - delta
    t_switch = min(t_end, max(t0, T - 1.0))
    n_constant = max(0, int(math.floor((t_switch - t0) / kappa)))
    t_probe = t0 + n_constant * kappa
    n_tail = 0
    while t_probe < t_end:
        t_probe += kappa / ((1.0 + kappa) ** (n_tail + 1))
        n_tail += 1
        if n_tail > max_iter:  # the steps have decayed below float resolution: an endless loop
            return None
    ts = [t0]
    for k in range(n_constant + n_tail):
        dk = kappa if k < n_constant else kappa / ((1.0 + kappa) ** (k - n_constant + 1))
        ts.append(min(ts[-1] + dk, t_end))
    return np.array(ts)


def _is_valid(g, T, delta):
    return (
        g.dtype == np.float64
        and g.ndim == 1
        and g[0] == T
        and g[-1] == delta
        and np.all(np.diff(g) < 0)
        and np.all(np.isfinite(g))
    )


# ------------------------------------------------------------------------------------------
# the support paper's grid
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa,steps,n_const,last", [(0.1, 113, 40, 4.6e-5), (0.5, 26, 8, 1.5e-5)])
def test_geometric_step_counts(kappa, steps, n_const, last):
    g = time_grid("geometric", T=5.0, delta=1e-3, kappa=kappa)
    assert _is_valid(g, 5.0, 1e-3)
    assert len(g) - 1 == steps
    h = -np.diff(g)
    assert np.sum(np.isclose(h, kappa, rtol=1e-12)) == n_const
    assert math.isclose(h[-1], last, rel_tol=0.02)  # the note quotes two digits


@pytest.mark.parametrize("kappa", [0.1, 0.5, 0.25, 1.0, 2.0])
def test_geometric_matches_authors_code_when_it_terminates(kappa):
    ts = authors_generate_grid(0.0, 5.0, 1e-3, kappa)
    ours = time_grid("geometric", T=5.0, delta=1e-3, kappa=kappa)
    assert ts is not None and len(ts) == len(ours)
    assert np.allclose(5.0 - ts, ours, rtol=0, atol=1e-12)


def test_geometric_tail_is_relative_to_remaining_time():
    g = time_grid("geometric", T=5.0, delta=1e-6, kappa=0.1)
    tail = g[41:-1]
    assert np.allclose(tail[1:] / tail[:-1], 1 / 1.1, rtol=1e-14)
    assert np.isclose(g[40], 1.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize("T,kappa", [(5.0, 0.3), (3.3, 0.1)])
def test_authors_code_does_not_terminate_when_T_minus_1_over_kappa_is_not_integer(T, kappa):
    # (T-1)/kappa not an integer (or not one in float: 2.3/0.1 = 22.999999999999996): the
    # authors' tail, which sums to less than 1, starts more than 1 + delta before the end and
    # never reaches it.
    assert authors_generate_grid(0.0, T, 1e-3, kappa, max_iter=1000) is None
    g = time_grid("geometric", T=T, delta=1e-3, kappa=kappa)
    assert _is_valid(g, T, 1e-3)
    if T == 3.3:  # treated as the integer case: 23 constant steps, then the tail from t = 1
        assert np.sum(np.isclose(-np.diff(g), 0.1, rtol=1e-9)) == 23
        assert np.isclose(g[23], 1.0, rtol=0, atol=1e-12)


def test_geometric_small_T_and_tiny_delta():
    g = time_grid("geometric", T=0.5, delta=1e-10, kappa=0.2)
    assert _is_valid(g, 0.5, 1e-10)
    # computed in forward time: the last points keep full relative accuracy
    assert np.allclose(g[1:-1] / g[:-2], 1 / 1.2, rtol=1e-14)


def test_geometric_delta_above_one():
    g = time_grid("geometric", T=5.0, delta=2.0, kappa=1.0)
    assert np.array_equal(g, [5.0, 4.0, 3.0, 2.0])


# ------------------------------------------------------------------------------------------
# uniform and log-SNR grids
# ------------------------------------------------------------------------------------------
def test_uniform():
    g = time_grid("uniform", T=2.0, delta=0.5, n=3)
    assert np.array_equal(g, [2.0, 1.5, 1.0, 0.5])


def test_logsnr_grid_is_uniform_in_logsnr():
    g = time_grid("logsnr", T=5.0, delta=1e-3, n=10)
    assert _is_valid(g, 5.0, 1e-3) and len(g) == 11
    lam = logsnr(g)
    assert np.allclose(np.diff(lam), (logsnr(1e-3) - logsnr(5.0)) / 10, rtol=1e-10)
    # lambda_t = log(alpha^2/sigma^2)
    assert math.isclose(float(logsnr(0.7)), math.log(math.exp(-1.4) / (1 - math.exp(-1.4))), rel_tol=1e-14)


def test_logsnr_inverse_extremes():
    t = np.array([1e-10, 1e-3, 1.0, 50.0, 300.0])
    assert np.allclose(logsnr_inverse(logsnr(t)), t, rtol=1e-12, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["uniform", "logsnr"]),
    T=st.floats(0.01, 50.0),
    frac=st.floats(1e-9, 0.99),
    n=st.integers(1, 400),
)
def test_named_grids_property(kind, T, frac, n):
    delta = T * frac
    g = time_grid(kind, T=T, delta=delta, n=n)
    assert _is_valid(g, T, delta) and len(g) == n + 1


@settings(max_examples=40, deadline=None)
@given(T=st.floats(0.05, 20.0), frac=st.floats(1e-9, 0.9), kappa=st.floats(0.01, 3.0))
def test_geometric_property(T, frac, kappa):
    delta = T * frac
    g = time_grid("geometric", T=T, delta=delta, kappa=kappa)
    assert _is_valid(g, T, delta)
    h = -np.diff(g)
    assert np.all(h <= kappa * (1 + 1e-9))  # steps never exceed kappa


def test_explicit_grid():
    g = time_grid([3, 2.0, 1, 0.25])
    assert g.dtype == np.float64 and np.array_equal(g, [3.0, 2.0, 1.0, 0.25])
    assert np.array_equal(time_grid(np.array([1.0, 0.5]), T=1.0, delta=0.5), [1.0, 0.5])


# ------------------------------------------------------------------------------------------
# bad input -> ValueError naming the argument
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,kwargs,name",
    [
        (("spiral",), {"n": 3}, "kind"),
        (([1.0, 2.0, 0.5],), {}, "grid"),  # not decreasing
        (([1.0, 1.0, 0.5],), {}, "grid"),  # not strictly decreasing
        (([1.0, float("nan"), 0.5],), {}, "grid"),
        (([1.0, float("inf")],), {}, "grid"),
        (([1.0, 0.5, 0.0],), {}, "grid"),  # leaves (0, T]
        (([1.0, 0.5, -0.1],), {}, "grid"),
        (([6.0, 0.5],), {"T": 5.0}, "grid"),  # leaves (0, T]
        (([1.0],), {}, "grid"),  # too short
        (([[1.0, 0.5]],), {}, "grid"),  # not 1-D
        (("uniform",), {"n": 0}, "n"),
        (("logsnr",), {"n": -2}, "n"),
        (("uniform",), {"n": 2.5}, "n"),
        (("uniform",), {}, "n"),  # missing n
        (("geometric",), {"kappa": 0.0}, "kappa"),
        (("geometric",), {"kappa": -0.1}, "kappa"),
        (("geometric",), {"kappa": float("nan")}, "kappa"),
        (("geometric",), {}, "kappa"),  # missing kappa
        (("geometric",), {"kappa": 1e-300}, "kappa"),  # absurd step count
        (("uniform",), {"n": 4, "delta": 0.0}, "delta"),
        (("uniform",), {"n": 4, "delta": -1e-3}, "delta"),
        (("uniform",), {"n": 4, "delta": 5.0}, "delta"),  # delta >= T
        (("geometric",), {"kappa": 0.1, "T": 1.0, "delta": 2.0}, "delta"),
        (("uniform",), {"n": 4, "T": -1.0}, "T"),
        (("uniform",), {"n": 4, "T": float("inf")}, "T"),
        (("uniform",), {"n": MAX_STEPS + 1}, "n"),
        (("uniform",), {"n": 3, "kappa": 0.1}, "kappa"),  # not used by this kind
        (("geometric",), {"n": 3, "kappa": 0.1}, "n"),
    ],
)
def test_bad_input_names_the_argument(args, kwargs, name):
    with pytest.raises(ValueError) as exc:
        time_grid(*args, **kwargs)
    assert name in str(exc.value)


def test_error_messages_are_specific():
    # negative control for the check above: a different argument's name is not what is reported
    with pytest.raises(ValueError) as exc:
        time_grid("geometric", kappa=-1.0)
    assert str(exc.value).startswith("kappa:")
    with pytest.raises(ValueError) as exc:
        time_grid("uniform", n=0)
    assert str(exc.value).startswith("n:")  # every message is "<argument>: ..." (numerics.validate)

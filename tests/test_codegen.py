"""The generated Numba coefficients: current, compiled, and accurate against 50-digit mpmath.

Accuracy bound (stated, not tuned).  Each generated coefficient is a product/quotient/sum of
non-negative primitives (``exp``, ``expm1``, ``log1p``, ``sqrt`` of non-negative arguments), so its
relative error is at most ``c_ops * u`` (``u = 2**-53``, ``c_ops`` <= about 40 operations, each
contributing at most one rounding, plus ~1 ulp per library call) **plus** the propagated error of
the inputs it forms: ``h = t - s`` is rounded (relative ``u``), and ``exp(+-h)``, ``expm1(2h)`` have
condition number <= ``2h`` <= 100 on ``t <= 50``.  Hence ``rel.err <= (40 + 2 * 50 + 2 * 50) u
~ 2.7e-14``; we assert ``1e-13``.  (Observed worst case: 3.4e-15 at ``t = 50``.)
"""
from __future__ import annotations

import math

import mpmath as mp
import numba
import numpy as np
import pytest
import sympy as sp

import theory.codegen as C
from numerics.generated import integrator_coeffs as G
from theory.forward import s, t
from theory.integrators import eta, h_ell_prev2, lms_k, t_prev

REL_TOL = 1e-13  # see the module docstring for the bound (~2.7e-14)

# ------------------------------------------------------------------------------------------
# test points: t, s in [1e-10, 50], including steps h ~ 1e-12
# ------------------------------------------------------------------------------------------
_LEVELS = [1e-10, 3e-9, 1e-6, 1e-3, 0.1, 0.7, 1.0, 3.0, 10.0, 50.0]


def _pairs() -> list[tuple[float, float]]:
    pts = [(a, b) for a in _LEVELS for b in _LEVELS if b < a]
    for a in _LEVELS:
        for hh in (1e-12, 1e-9, 1e-5):
            b = a - hh
            if 0 < b < a:
                pts.append((a, b))
    rng = np.random.default_rng(20240601)
    for _ in range(40):
        lo, hi = np.sort(np.exp(rng.uniform(math.log(1e-10), math.log(50.0), 2)))
        if lo < hi:
            pts.append((float(hi), float(lo)))
    return pts


PAIRS = _pairs()


def _extra_args(spec: C.CoeffSpec, tt: float) -> list[tuple]:
    if spec.args[:1] == (lms_k,):   # (k, g1) from the pair, the further gaps tiny to large against them
        return [(tt * 1e-3, tt), (tt, 1e-6 * tt), (3.0 * tt, 0.5 * tt)]
    if spec.args[2:] == (h_ell_prev2,):   # h_p2 tiny to large against the pair (h, h_p)
        return [(tt * 1e-6,), (tt,), (50.0 * tt,)]
    if spec.args[2:] == (eta,):
        return [(0.0,), (0.3,), (0.999999,), (1.0,)]
    if spec.args[2:] == (t_prev,):
        return [(tt * (1 + 1e-12) + 1e-12,), (1.5 * tt,), (tt + 1.0,), (tt + 40.0,)]
    return [()]


def _mp_reference(fns: list, args: tuple) -> list:
    """Reference values with mpmath: 50 digits, escalated while 50/100/... disagree.

    The raw (derived) formulas cancel catastrophically in places, e.g. the eta family at
    eta = 1, h = 40, s = 1e-6 loses ~44 of the 50 digits, so the precision is doubled until two
    consecutive precisions agree to 1e-25.
    """
    out = []
    for f in fns:
        prev = None
        for dps in (50, 100, 200, 400):
            with mp.workdps(dps):
                val = f(*[mp.mpf(a) for a in args])
            if prev is not None and (val == prev or abs(val - prev) <= mp.mpf("1e-25") * abs(val)):
                break
            prev = val
        else:  # pragma: no cover - would mean the reference itself is unreliable
            raise AssertionError(f"mpmath reference did not converge at {args}")
        out.append(val)
    return out


def max_rel_error(fn, spec: C.CoeffSpec, pairs=PAIRS) -> tuple[float, tuple, str]:
    """Largest relative error of ``fn`` against the mpmath reference of ``spec`` over ``pairs``."""
    refs = [sp.lambdify(spec.args, e, modules="mpmath") for e in spec.exprs]
    worst = (0.0, (), "")
    for tt, ss in pairs:
        for extra in _extra_args(spec, tt):
            args = ((tt, ss) + extra)[:len(spec.args)]   # a function of one log-SNR step takes the first
            got = fn(*args)
            assert len(got) == len(spec.labels)
            want = _mp_reference(refs, args)
            for lab, gv, wv in zip(spec.labels, got, want):
                if not math.isfinite(gv):
                    return (math.inf, args, lab)
                err = abs(gv) if wv == 0 else float(abs((mp.mpf(gv) - wv) / wv))
                if err > worst[0]:
                    worst = (err, args, lab)
    return worst


SPECS = C.coefficient_specs()


@pytest.mark.parametrize("spec", SPECS, ids=[sp_.func for sp_ in SPECS])
def test_generated_matches_mpmath(spec):
    fn = getattr(G, spec.func)
    assert isinstance(fn, numba.core.registry.CPUDispatcher)  # it is the njit function
    err, where, lab = max_rel_error(fn, spec)
    assert err <= REL_TOL, f"{spec.func}.{lab} relative error {err:.3e} at {where}"


def test_comparison_detects_dropped_alpha():
    # negative control: DDIM with alpha_s dropped from c_q must be flagged
    spec = next(sp_ for sp_ in SPECS if sp_.func == "ddim_coeffs")

    def wrong(tt, ss):
        cx, cq = G.ddim_coeffs(tt, ss)
        return cx, cq / math.exp(-ss)

    err, _, lab = max_rel_error(wrong, spec, PAIRS[:20])
    assert err > 1e-3 and lab == "c_q"

    def swapped(tt, ss):  # wrong return order
        cx, cq = G.ddim_coeffs(tt, ss)
        return cq, cx

    assert max_rel_error(swapped, spec, PAIRS[:5])[0] > 1e-3


def test_naive_formula_would_fail_the_same_check():
    # the check is sharp enough to see cancellation: the unstable textbook form of DDIM's c_q
    spec = next(sp_ for sp_ in SPECS if sp_.func == "ddim_coeffs")

    def naive(tt, ss):
        ratio = math.sqrt((1 - math.exp(-2 * ss)) / (1 - math.exp(-2 * tt)))
        return ratio, math.exp(-ss) - math.exp(-tt) * ratio

    assert max_rel_error(naive, spec, [(1.0, 1.0 - 1e-9), (1e-9, 5e-10)])[0] > 1e-8


# ------------------------------------------------------------------------------------------
# identities, numerically, on the generated functions
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tt,ss", [(1.0, 0.5), (5.0, 4.9), (1e-3, 1e-4), (50.0, 1e-10), (0.3, 0.3 - 1e-12)])
def test_generated_identities(tt, ss):
    cx, cq = G.ddim_coeffs(tt, ss)
    e0 = G.ddim_eta_coeffs(tt, ss, 0.0)
    assert e0[2] == 0.0
    assert np.allclose(e0[:2], (cx, cq), rtol=1e-14, atol=0)
    e1 = G.ddim_eta_coeffs(tt, ss, 1.0)
    assert np.allclose(e1, G.ddpm_coeffs(tt, ss), rtol=1e-14, atol=0)
    # DPM-Solver-1 with eps = (x - alpha_t D)/sigma_t is DDIM
    dx, de = G.dpm_solver_1_coeffs(tt, ss)
    a_t, s_t = math.exp(-tt), math.sqrt(-math.expm1(-2 * tt))
    # (the sum cancels when alpha_s/alpha_t is large: compare relative to the summands)
    assert abs(dx + de / s_t - cx) <= 1e-14 * (abs(dx) + abs(de / s_t))
    assert math.isclose(-de * a_t / s_t, cq, rel_tol=1e-12)
    # DPM-Solver++(2M) integrates a constant denoiser like DDIM
    x2, q2, p2 = G.dpm_solver_2_coeffs(tt, ss, tt * 1.7 + 0.1)
    assert math.isclose(x2, cx, rel_tol=1e-15) and math.isclose(q2 + p2, cq, rel_tol=1e-12)


def test_code_variant_noise_first_order():
    for hh in (1e-2, 1e-4, 1e-6):
        v_ex = G.ei_sde_coeffs(1.0 + hh, 1.0)[2] ** 2
        v_co = G.ei_sde_code_coeffs(1.0 + hh, 1.0)[2] ** 2
        assert math.isclose(v_ex - v_co, math.expm1(hh) ** 2, rel_tol=1e-6, abs_tol=0)


# ------------------------------------------------------------------------------------------
# generation
# ------------------------------------------------------------------------------------------
def test_regeneration_changes_nothing(tmp_path):
    out = C.write(tmp_path / "integrator_coeffs.py")
    committed = C.default_output_path().read_text()
    assert out.read_text() == committed
    assert (tmp_path / "__init__.py").exists()
    ok, diff = C.check()
    assert ok and diff == ""


def test_check_flags_a_modified_file(tmp_path, capsys):
    target = tmp_path / "integrator_coeffs.py"
    target.write_text(C.default_output_path().read_text().replace("c_q = ", "c_q = 1.0 + ", 1))
    assert C.main(["--check", "--output", str(target)]) == 1
    assert "+" in capsys.readouterr().out
    C.main(["--output", str(target)])
    assert C.main(["--check", "--output", str(target)]) == 0


def test_header_and_table():
    text = C.default_output_path().read_text()
    assert text.startswith("# GENERATED FILE")
    assert "python -m theory.codegen" in text.splitlines()[1]
    assert set(G.COEFFICIENT_FUNCTIONS) == {sp_.func.removesuffix("_coeffs") for sp_ in SPECS}
    for name, (fn, argnames, labels) in G.COEFFICIENT_FUNCTIONS.items():
        args = {"t": 1.0, "s": 0.5, "eta": 0.5, "t_prev": 2.0, "h": 0.3, "h_p": 0.4, "h_p2": 0.6, "k": 0.2, "g1": 0.3,
                "g2": 0.4, "g3": 0.5}
        vals = fn(*[args[a] for a in argnames])
        assert len(vals) == len(labels) and all(isinstance(v, float) for v in vals), name


def test_primitives_come_from_the_shared_helpers():
    # each primitive of a time is written once, in _decay / _growth; the coefficient functions call them
    text = C.default_output_path().read_text()
    assert text.count("def _decay(v):") == 1 and text.count("def _growth(v):") == 1
    functions = text.split("def ddim_coeffs", 1)[1]
    assert "math.exp(" not in functions and "math.expm1(" not in functions
    assert "_decay(s)" in functions and "_decay(hp)" in functions and "_growth(h)" in functions
    v = 0.37
    assert G._decay(v) == (math.exp(-v), -math.expm1(-v), math.exp(-2 * v), -math.expm1(-2 * v))
    assert G._growth(v) == (math.exp(v), math.expm1(v), math.exp(2 * v), math.expm1(2 * v))


def test_stabilize_refuses_sign_indefinite():
    with pytest.raises(C.StabilizeError):
        C.stabilize(sp.exp(-s) - sp.Rational(1, 2))
    # and rewrites a cancelling difference into a positive form
    e = C.stabilize(1 - sp.exp(-2 * t))
    assert not any(a.could_extract_minus_sign() for a in sp.Add.make_args(sp.expand(e)))


# ------------------------------------------------------------------------------------------
# cross-check with the support paper's note (section 5, C1 and C3): grid + coefficients
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa,rho_ei,v_ddpm", [(0.1, 4.862e-2, 2.192e-3), (0.5, 6.397e-2, 2.979e-3)])
def test_support_note_contraction_and_variance(kappa, rho_ei, v_ddpm):
    from numerics.grids import time_grid

    grid = time_grid("geometric", T=5.0, delta=1e-3, kappa=kappa)
    # orthogonal to a shared subspace D has no component, so score = -y / sigma_t^2 there
    rho_e, rho_d, v = 1.0, 1.0, 1.0
    for tt, ss in zip(grid[:-1], grid[1:]):
        s2 = -math.expm1(-2.0 * tt)
        cx, cq = G.ei_ode_coeffs(tt, ss)
        rho_e *= cx - cq / s2
        rho_d *= G.ddim_coeffs(tt, ss)[0]
        cx, cq, cz = G.ei_sde_code_coeffs(tt, ss)
        v = (cx - cq / s2) ** 2 * v + cz**2
    # the note quotes 4 significant digits: tolerance half a unit in the last digit
    assert abs(rho_e - rho_ei) <= 0.5e-5 and abs(v - v_ddpm) <= 0.5e-6
    # DDIM telescopes exactly: rho = sigma_delta / sigma_T
    assert math.isclose(rho_d, math.sqrt(-math.expm1(-2e-3) / -math.expm1(-10.0)), rel_tol=1e-13)
    assert abs(rho_d - 4.470e-2) <= 0.5e-5

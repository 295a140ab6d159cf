r"""Emit the integrator coefficients of :mod:`theory.integrators` as Numba functions.

Run ``python -m theory.codegen`` to (re)write ``numerics/generated/integrator_coeffs.py`` and
``python -m theory.codegen --check`` to verify that the committed file is current (exit code 1
and a diff if it is not).  ``--output PATH`` writes elsewhere.

Cancellation-free rewriting
---------------------------
The derived coefficients are written with :math:`e^{-t}`, :math:`1-e^{-2t}`, square roots and
logarithms, which lose all accuracy for tiny steps or tiny times (:math:`1 - e^{-2t}` at
:math:`t = 10^{-10}`, :math:`\alpha_s - \alpha_t\sigma_s/\sigma_t` at :math:`h = 10^{-12}`).
Before printing, each coefficient is rewritten in SymPy by three rules:

1. *Variables.*  With :math:`h = t - s`, :math:`h_p = t_{prev} - t`, every exponential is a
   monomial in :math:`X = e^{-s}`, :math:`Y = e^{-h}`, :math:`Z = e^{-h_p}` (and :math:`\eta`),
   all in :math:`[0, 1]`.
2. *Positive polynomial form.*  A polynomial that is sign-definite on the box is rewritten as a
   combination with non-negative coefficients of products of :math:`v` and :math:`1 - v` for each
   variable :math:`v` (monomial basis if that already works, otherwise the Bernstein basis, with
   degree elevation).  Each :math:`v` and :math:`1 - v` is a *primitive* computed to full relative
   accuracy (``exp(-s)``, ``-expm1(-2*s)``, ``(1-eta)*(1+eta)``, ...), so the sum has no cancellation:
   its relative error is at most (number of operations) x (unit roundoff) + the primitives' errors.
   Rational functions are handled as numerator / denominator.
3. *Conjugates and logs.*  A difference :math:`A - B` with radicals becomes
   :math:`(A^2 - B^2)/(A + B)` with the rational numerator put in positive form (rule 2); a
   :math:`\log(P/Q)` becomes :math:`\operatorname{log1p}((P - Q)/Q)` with :math:`P - Q` in positive form.

Each rewritten coefficient is checked against the derived one at random rational points with
40-digit arithmetic before it is printed, and the printed source comes from SymPy's Python code
printer (``sympy.printing.pycode``).
"""
from __future__ import annotations

import argparse
import difflib
import random
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.pycode import pycode

from theory._validate import as_scalar
from theory.forward import s, t
from theory.integrators import (Update, all_updates, dpm_solver_2_eps_weights, dpm_solver_2s_weights,
                                dpm_solver_3_eps_weights, dpm_solver_3s_weights,
                                dpm_solver_3_weights, eta, guidance_gap, h, h_ell, h_ell_prev, half_logsnr_step,
                                h_ell_prev2, heun_weights, lms_g1, lms_g2, lms_g3, lms_k, lms_weights, phi, psi,
                                t_prev, deis_weights, unipc_corrector_weights)
from theory.integrators import DEIS_MAX_ORDER, LMS_MAX_ORDER, _deis_derivation, _lms_derivation

__all__ = [
    "CoeffSpec",
    "coefficient_specs",
    "stabilize",
    "phi_stable",
    "generate_source",
    "default_output_path",
    "write",
    "check",
    "main",
]

# -------------------------------------------------------------------------------------------
# variables and primitives
# -------------------------------------------------------------------------------------------
hp = sp.Symbol("hp", positive=True)  # t_prev - t
X, Y, Z, E = sp.symbols("X Y Z E", positive=True)  # e^{-s}, e^{-h}, e^{-hp}, eta
_U = {v: sp.Symbol(f"{v.name}2", positive=True) for v in (X, Y, Z, E)}  # v**2 as a variable

# primitive symbols (names are the variable names in the generated code)
_P = {
    name: sp.Symbol(name, positive=True)
    for name in (
        "a_s", "am_s", "a2_s", "sig2_s",
        "a_h", "am_h", "a2_h", "sig2_h",
        "a_hp", "am_hp", "a2_hp", "sig2_hp",
        "eta", "etam", "eta2", "etam2",
        "ea_h", "em_h", "ea2_h", "em2_h",
    )
}
#: code-symbol -> defining expression (what the generated code assigns), for each primitive
_DEF = {
    "a_s": sp.exp(-s), "am_s": -expm1(-s), "a2_s": sp.exp(-2 * s), "sig2_s": -expm1(-2 * s),
    "a_h": sp.exp(-h), "am_h": -expm1(-h), "a2_h": sp.exp(-2 * h), "sig2_h": -expm1(-2 * h),
    "a_hp": sp.exp(-hp), "am_hp": -expm1(-hp), "a2_hp": sp.exp(-2 * hp), "sig2_hp": -expm1(-2 * hp),
    "eta": eta, "etam": 1 - eta, "eta2": eta**2, "etam2": (1 - eta) * (1 + eta),
    "ea_h": sp.exp(h), "em_h": expm1(h), "ea2_h": sp.exp(2 * h), "em2_h": expm1(2 * h),
}
#: the same with exp only (for the exact check)
_EXACT = {k: v.replace(expm1, lambda a: sp.exp(a) - 1) for k, v in _DEF.items()}
#: per polynomial variable: (variable in the polynomial, primitive, complement primitive)
_VARINFO = {
    X: ("a_s", "am_s"), _U[X]: ("a2_s", "sig2_s"),
    Y: ("a_h", "am_h"), _U[Y]: ("a2_h", "sig2_h"),
    Z: ("a_hp", "am_hp"), _U[Z]: ("a2_hp", "sig2_hp"),
    E: ("eta", "etam"), _U[E]: ("eta2", "etam2"),
}
_ORDER = (Y, X, Z, E)  # variable order of the positive-form search
_UNBOUNDED = (h,)  # positive symbols with no upper bound (monomial basis only)
_PRIMITIVE_ORDER = tuple(_P)  # emission order of primitive assignments
#: The primitives of a time are computed by one shared generated helper per family:
#: helper -> (primitive prefixes in return order, the times it serves, docstring).  The helper's
#: body is the ``_DEF`` entries of the first time, written in its argument ``v``; the eta
#: primitives (used by one function) stay inline.
_HELPERS = {
    "_decay": (("a", "am", "a2", "sig2"), ("s", "h", "hp"),
               "(exp(-v), 1 - exp(-v), exp(-2v), 1 - exp(-2v)) of a time v >= 0, without cancellation."),
    "_growth": (("ea", "em", "ea2", "em2"), ("h",),
                "(exp(v), exp(v) - 1, exp(2v), exp(2v) - 1) of a step v >= 0, without cancellation."),
}
_TIME = {"s": s, "h": h, "hp": hp}
#: primitive name -> (helper, time, the names that one call returns)
_FROM_HELPER = {
    f"{p}_{v}": (helper, v, tuple(f"{q}_{v}" for q in prefixes))
    for helper, (prefixes, times, _doc) in _HELPERS.items()
    for v in times
    for p in prefixes
}


class StabilizeError(ValueError):
    """A coefficient could not be put in cancellation-free form."""


# -------------------------------------------------------------------------------------------
# rule 1: exponentials -> monomials in X, Y, Z
# -------------------------------------------------------------------------------------------
def _to_variables(expr: sp.Expr) -> sp.Expr:
    """Substitute ``t = s + h``, ``t_prev = s + h + hp``, ``eta -> E``; exponentials -> monomials."""
    e = expr.subs({t_prev: s + h + hp}).subs({t: s + h}).subs({eta: E})

    def _mono(arg: sp.Expr) -> sp.Expr:
        arg = sp.expand(arg)
        cs, ch, chp = arg.coeff(s), arg.coeff(h), arg.coeff(hp)
        rest = sp.expand(arg - cs * s - ch * h - chp * hp)
        if rest.free_symbols:
            raise StabilizeError(f"exponent {arg} is not linear in s, h, hp")
        for c in (cs, ch, chp):
            if not c.is_integer:
                raise StabilizeError(f"exponent {arg} has a non-integer coefficient")
        return sp.exp(rest) * X ** (-cs) * Y ** (-ch) * Z ** (-chp)

    e = e.replace(sp.exp, _mono)
    if e.has(s) and not e.has(X):
        raise StabilizeError("s survives outside exponentials")
    return e


# -------------------------------------------------------------------------------------------
# rule 2: positive polynomial form
# -------------------------------------------------------------------------------------------
def _pos_unbounded(p: sp.Expr) -> sp.Expr | None:
    if p.is_Number:
        return p if p >= 0 else None
    syms = sorted(p.free_symbols, key=lambda x: x.name)
    if not set(syms) <= set(_UNBOUNDED):
        return None
    poly = sp.Poly(p, *syms)
    if all(c >= 0 for c in poly.coeffs()):
        return p
    return None


def _pos(p: sp.Expr, variables: tuple) -> sp.Expr | None:
    """Non-negative combination of primitives equal to polynomial ``p``, or None."""
    p = sp.expand(p)
    if p == 0:
        return sp.S.Zero
    if not variables:
        return _pos_unbounded(p)
    v, rest = variables[0], variables[1:]
    if not p.has(v):
        return _pos(p, rest)
    prim, comp = (_P[n] for n in _VARINFO[v])
    coeffs = sp.Poly(p, v).all_coeffs()[::-1]  # c_0 .. c_m
    m = len(coeffs) - 1
    parts = [_pos(c, rest) for c in coeffs]
    if all(q is not None for q in parts):  # monomial basis
        return sp.Add(*[q * prim**k for k, q in enumerate(parts)])
    for deg in range(m, m + 3):  # Bernstein basis, with degree elevation
        bern = [
            sp.Add(*[sp.binomial(k, j) / sp.binomial(deg, j) * coeffs[j] for j in range(min(k, m) + 1)])
            for k in range(deg + 1)
        ]
        parts = [_pos(b, rest) for b in bern]
        if all(q is not None for q in parts):
            return sp.Add(*[sp.binomial(deg, k) * prim**k * comp ** (deg - k) * q for k, q in enumerate(parts)])
    return None


def _even_in(p: sp.Expr, v: sp.Symbol) -> bool:
    return all(m[0] % 2 == 0 for m in sp.Poly(p, v).monoms())


def _nonneg_coeffs(e: sp.Expr) -> bool:
    e = sp.expand(e)
    return all(not _is_negative_term(a) for a in sp.Add.make_args(e))


def _tidy(e: sp.Expr) -> sp.Expr:
    """Compact a positive form without introducing a subtraction (factor only into positive factors)."""
    e = sp.expand(e)
    f = sp.factor(e)
    if all(_nonneg_coeffs(fac) for fac in sp.Mul.make_args(f)):
        return f
    return sp.factor_terms(e)


def signed_positive_form(p: sp.Expr) -> tuple[int, sp.Expr]:
    """``(sign, form)`` with ``p == sign * form`` and ``form`` a positive combination of primitives."""
    p = sp.expand(p)
    order = []
    for v in _ORDER:
        if not p.has(v):
            continue
        if _even_in(p, v):
            p = sp.expand(p.subs(v, sp.sqrt(_U[v])))
            order.append(_U[v])
        else:
            order.append(v)
    res = _pos(p, tuple(order))
    if res is not None:
        return 1, _tidy(res)
    res = _pos(-p, tuple(order))
    if res is not None:
        return -1, _tidy(res)
    raise StabilizeError(f"polynomial is not sign-definite in positive form: {p}")


def positive_form(p: sp.Expr) -> sp.Expr:
    """Rewrite a polynomial in X, Y, Z, E (and h) that is sign-definite on the box in positive form."""
    sign, form = signed_positive_form(p)
    return sign * form


# -------------------------------------------------------------------------------------------
# rule 3: recursive rewriting (rationals, conjugates, logs)
# -------------------------------------------------------------------------------------------
_VARS = set(_ORDER) | set(_UNBOUNDED)


def _is_rational(e: sp.Expr) -> bool:
    if not e.free_symbols <= _VARS:
        return False
    for node in sp.preorder_traversal(e):
        if isinstance(node, sp.Function) and not isinstance(node, sp.exp):
            return False
        if isinstance(node, sp.exp) and node.free_symbols:
            return False
        if node.is_Pow and not node.exp.is_integer:
            return False
    return True


def _stab_rational(e: sp.Expr) -> sp.Expr:
    num, den = sp.fraction(sp.cancel(sp.together(e)))
    sn, fn = signed_positive_form(num)
    sd, fd = signed_positive_form(den)
    return (sn * sd) * fn / fd


def _is_negative_term(a: sp.Expr) -> bool:
    c, _ = a.as_coeff_Mul()
    return bool(c.is_negative)


def _stab(e: sp.Expr) -> sp.Expr:
    if e.is_Number:
        return e
    if e.is_Symbol:
        if e in _VARINFO:
            return _P[_VARINFO[e][0]]
        if e in _UNBOUNDED:
            return e
        raise StabilizeError(f"unexpected symbol {e}")
    if (e.is_Add or e.is_Mul or e.is_Pow) and _is_rational(e):
        return _stab_rational(e)
    if e.is_Pow:
        return _stab(e.base) ** e.exp
    if e.is_Mul:
        return sp.Mul(*[_stab(a) for a in e.args])
    if isinstance(e, sp.log):
        if not _is_rational(e.args[0]):
            raise StabilizeError(f"log of a non-rational argument: {e}")
        num, den = sp.fraction(sp.cancel(sp.together(e.args[0])))
        sn, fn = signed_positive_form(sp.expand(num - den))
        sd, fd = signed_positive_form(den)
        return log1p((sn * sd) * fn / fd)
    if e.is_Add:
        pos = [a for a in e.args if not _is_negative_term(a)]
        neg = [-a for a in e.args if _is_negative_term(a)]
        if not neg:
            return sp.Add(*[_stab(a) for a in pos])
        if not pos:
            return -_stab(sp.Add(*neg))
        big_a, big_b = sp.Add(*pos), sp.Add(*neg)
        diff2 = sp.expand(big_a**2 - big_b**2)
        if not _is_rational(diff2):
            raise StabilizeError(f"conjugate does not remove radicals: {e}")
        return _stab_rational(diff2) / (_stab(big_a) + _stab(big_b))
    raise StabilizeError(f"cannot stabilize {e!r}")


def _exact_from_primitives(e: sp.Expr) -> sp.Expr:
    """Primitive symbols -> exp-only expressions in t, s, t_prev, eta (for the check)."""
    sub = {_P[k]: v for k, v in _EXACT.items()}
    e = e.subs(sub).replace(log1p, lambda a: sp.log(1 + a)).replace(expm1, lambda a: sp.exp(a) - 1)
    return e.subs({hp: t_prev - t}).subs({h: t - s})


def _check_equal(raw: sp.Expr, stable: sp.Expr, args: tuple, n: int = 4, digits: int = 40) -> None:
    """Compare at random rational points with ``digits``-digit arithmetic; raise on mismatch."""
    rng = random.Random(12345)
    ex = _exact_from_primitives(stable)
    for _ in range(n):
        ss = sp.Rational(rng.randint(1, 900), 1000)
        hh = sp.Rational(rng.randint(1, 900), 1000)
        pt = {s: ss, t: ss + hh, t_prev: ss + hh + sp.Rational(rng.randint(1, 900), 1000),
              eta: sp.Rational(rng.randint(0, 1000), 1000)}
        a = sp.N(raw.subs(pt), digits)
        b = sp.N(ex.subs(pt), digits)
        if abs(a - b) > sp.Float(10) ** (5 - digits) * (1 + abs(a)):
            raise StabilizeError(f"rewritten coefficient differs from the derived one at {pt}: {a} vs {b}")


_H_ONLY = {_P[n] for n in ("a_h", "am_h", "a2_h", "sig2_h")}
_GROWTH = {
    _P["a_h"]: 1 / _P["ea_h"],
    _P["am_h"]: _P["em_h"] / _P["ea_h"],
    _P["a2_h"]: 1 / _P["ea2_h"],
    _P["sig2_h"]: _P["em2_h"] / _P["ea2_h"],
}


def _growth_form(e: sp.Expr) -> sp.Expr:
    """For functions of ``h`` alone, prefer growing primitives (``exp(h)``, ``expm1(h)``) when shorter.

    The substitutions are identities between positive primitives, so accuracy is unchanged.
    """
    if not e.free_symbols or not e.free_symbols <= _H_ONLY:
        return e
    cand = sp.powsimp(e.subs(_GROWTH), force=True)
    cand = sp.simplify(cand) if sp.count_ops(cand) > sp.count_ops(e) else cand
    return cand if sp.count_ops(cand) < sp.count_ops(e) else e


def stabilize(expr: sp.Expr, args: tuple = (t, s)) -> sp.Expr:
    """Cancellation-free form of a coefficient, in the primitive symbols (``a_s``, ``sig2_h``, ...).

    ``expr``: a SymPy expression or a real number (never a string: it is not parsed, see
    :mod:`theory._validate`).  The result is verified equal to ``expr`` at random points (40 digits).
    """
    expr = as_scalar(expr, "expr")
    stable = _growth_form(_stab(_to_variables(expr)))
    _check_equal(expr, stable, args)
    return stable


# -------------------------------------------------------------------------------------------
# specs and emission
# -------------------------------------------------------------------------------------------
_ARGNAME = {t: "t", s: "s", t_prev: "t_prev", eta: "eta", h_ell: "h", h_ell_prev: "h_p", h_ell_prev2: "h_p2",
            lms_k: "k", lms_g1: "g1", lms_g2: "g2", lms_g3: "g3"}


@dataclass(frozen=True)
class CoeffSpec:
    """One generated function: ``<func>(*args) -> tuple(labels)`` with raw SymPy expressions."""

    func: str
    args: tuple
    labels: tuple
    exprs: tuple
    doc: str
    #: the printed forms when they are not :func:`stabilize`'s (the log-SNR weights: :func:`psi_stable`)
    stable: tuple | None = None
    #: the argument domain stated in the docstring of a function printed from its ``stable`` forms
    domain: str = "log-SNR steps > 0"


#: psi_k(h), k >= 1, is summed from its Taylor series below this step (module docstring of psi_stable)
PSI_SWITCH = 1
#: terms of that series (degree PSI_TERMS - 1)
PSI_TERMS = 20


def psi_stable(k: int, step: sp.Symbol = h_ell) -> sp.Expr:
    r"""A float64 form of :func:`theory.integrators.psi` without cancellation.

    :math:`\psi_0 = -\mathrm{expm1}(-h)`.  For :math:`k \ge 1` the closed form (SymPy's integral with
    :math:`e^{-h} - 1` written ``expm1(-h)``) subtracts terms of size 1 to leave :math:`\approx h^{k+1}/(k+1)!`, so
    below :data:`PSI_SWITCH` the function is SymPy's Taylor series of the same integral to degree
    ``PSI_TERMS - 1`` in Horner form: the series alternates with terms decreasing from the first
    (:math:`h \le 1`), so its sum carries a few roundings, and the truncation is at most
    :math:`h^{N}/N!` against :math:`\psi_k \ge e^{-h}h^{k+1}/(k+1)!`: relative
    :math:`e\,(k+1)!/N! < 10^{-16}` for :math:`k \le 2`, :math:`N = 20`.  At and above the switch the closed
    form's cancellation costs at most a factor :math:`1/\psi_k(1)` (:math:`\le 8`) in relative error.
    """
    closed = sp.expand(psi(k, step)).subs(sp.exp(-step), expm1(-step) + 1)
    if k == 0:
        return sp.expand(closed)
    series = sp.horner(sp.series(psi(k, step), step, 0, PSI_TERMS).removeO(), wrt=step)
    return sp.Piecewise((series, step < PSI_SWITCH), (sp.expand(closed), True))


def phi_stable(k: int, step: sp.Symbol = h_ell) -> sp.Expr:
    r"""A float64 form of :func:`theory.integrators.phi` without cancellation.

    :math:`\varphi_0 = \mathrm{expm1}(h)`.  For :math:`k \ge 1` the closed form (:math:`e^h - 1` written
    ``expm1(h)``) subtracts the first Taylor terms, so below :data:`PSI_SWITCH` the function is SymPy's Taylor series
    of the same integral to degree ``PSI_TERMS - 1`` in Horner form: every coefficient is positive (no
    cancellation), and the truncation is below :math:`e\,h^{N}/N!` against :math:`\varphi_k \ge h^{k+1}/(k+1)!`:
    relative :math:`e\,(k+1)!/N! < 10^{-17}` for :math:`k \le 2`, :math:`N = 20`.  At and above the switch the closed
    form's cancellation costs at most a factor :math:`(e - 1)/\varphi_1(1) < 2.5` in relative error (:math:`k = 1`)
    and :math:`(e + 1/2)/\varphi_2(1) < 15` (:math:`k = 2`, :math:`\varphi_2 = e^h - 1 - h - h^2/2`).
    """
    closed = sp.expand(phi(k, step)).subs(sp.exp(step), expm1(step) + 1)
    if k == 0:
        return sp.expand(closed)
    series = sp.horner(sp.series(phi(k, step), step, 0, PSI_TERMS).removeO(), wrt=step)
    return sp.Piecewise((series, step < PSI_SWITCH), (sp.expand(closed), True))


def _dpm2_eps_stable() -> tuple:
    """The noise-form 2M weights with each phi_k in :func:`phi_stable` form (positive combinations)."""
    p0, p1 = phi_stable(0), phi_stable(1)
    return p0, h_ell / 2 * p0, p1


def _dpm3_eps_stable() -> tuple:
    """The noise-form 3M weights with each phi_k in :func:`phi_stable` form: phi_0, phi_1 and 2 phi_2 + h_p phi_1, a
    sum of positive terms (no cancellation between them)."""
    p0, p1, p2 = (phi_stable(k) for k in range(3))
    return p0, p1, 2 * p2 + h_ell_prev * p1


def _dpm2s_stable() -> tuple:
    """The DPM-Solver++(2S) weights with each psi_k in :func:`psi_stable` form."""
    p0, p1 = psi_stable(0), psi_stable(1)
    return p0, h_ell / 2 * p0, p1


def _dpm3s_stable() -> tuple:
    """The DPM-Solver++(3S) weights with each psi_k in :func:`psi_stable` form; the node weights are products and
    quotients of the positive steps (h_0 = h_1 + g, a sum of positives): no cancellation."""
    p0, p1, p2 = (psi_stable(k) for k in range(3))
    h0 = h_ell_prev + h_ell_prev2
    return (p0, p1, 2 * p2, h0 / (h_ell_prev * h_ell_prev2), -h_ell_prev / (h_ell_prev2 * h0),
            -1 / (h_ell_prev * h_ell_prev2), 1 / (h_ell_prev2 * h0), p1 / h0)


def _heun_stable() -> tuple:
    """Heun's weights: psi_0 = 1 - exp(-h) and phi_0/2 = (exp(h) - 1)/2, each one primitive (no cancellation)."""
    return psi_stable(0), phi_stable(0) / 2


def _lms_stable() -> tuple:
    """The LMS coefficients in their signed positive form: -(-1)^j (a polynomial in k and the gaps with positive
    coefficients) / (a product of sums of gaps), no subtraction (:func:`theory.integrators._lms_derivation`)."""
    d = _lms_derivation()["stable"]
    return tuple(c for p in range(1, LMS_MAX_ORDER + 1) for c in d[p])


def _deis_stable() -> tuple:
    """The DEIS weights as their sign-definite phi combinations (:func:`theory.integrators._deis_derivation`'s
    ``phi_coeffs``: every b_k of weight j has the sign (-1)^j), each phi_k in :func:`phi_stable` form: no
    cancellation between the terms."""
    b = _deis_derivation()["phi_coeffs"]
    return tuple(sum(bk * phi_stable(k) for k, bk in enumerate(bj))
                 for p in range(1, DEIS_MAX_ORDER + 1) for bj in b[p])


def _unipc_stable() -> tuple:
    """UniC's weights: psi_0, psi_0/2, psi_1 in :func:`psi_stable` form, and 2 psi_2 - h psi_1 (about -h^3/6: its
    two terms cancel for small h) as SymPy's Taylor series of the combination itself below :data:`PSI_SWITCH`
    (alternating, terms decreasing from the first for h <= 1; truncation below h^N/N! * 3h against h^3/6 * e^{-h})
    and its closed form (2 + h)(1 - e^{-h}) - 2h, expm1 written, above (a loss of at most (2 + 3)/0.104 < 50 at
    h = 1, the ratio falling with h)."""
    p0, p1 = psi_stable(0), psi_stable(1)
    comb = 2 * psi(2) - h_ell * psi(1)
    series = sp.horner(sp.series(comb, h_ell, 0, PSI_TERMS).removeO(), wrt=h_ell)
    closed = sp.expand(comb).subs(sp.exp(-h_ell), expm1(-h_ell) + 1)
    return p0, p0 / 2, p1, sp.Piecewise((series, h_ell < PSI_SWITCH), (sp.expand(closed), True))


def _dpm3_stable() -> tuple:
    """The DPM-Solver++(3M) weights with each psi_k in :func:`psi_stable` form (a positive combination)."""
    p0, p1, p2 = (psi_stable(k) for k in range(3))
    return p0, p1, 2 * p2 + h_ell_prev * p1


def _update_doc(u: Update) -> str:
    quantity = {
        "denoiser": "q = D(x_t), the denoiser at (x_t, t)",
        "denoiser-linear": "q = D(x_t), q_prev = D(x_{t_prev}) (denoiser at the previous, larger time)",
        "score": "q = score(x_t) = grad log p_t(x_t)",
        "noise": "q = eps(x_t) = -sigma_t * score(x_t), the noise prediction",
    }[u.frozen]
    form = "x_s = c_x*x_t + c_q*q" + (" + c_q_prev*q_prev" if u.c_q_prev is not None else "")
    form += " + c_z*z, z ~ N(0, I)" if u.stochastic else ""
    return f"{u.description}.\n\n    {form};  {quantity}."


def coefficient_specs() -> list[CoeffSpec]:
    """Every generated function, in emission order."""
    specs = []
    for u in all_updates():
        labels, exprs = zip(*u.coefficients())
        specs.append(CoeffSpec(f"{u.name}_coeffs", tuple(u.args), labels, exprs, _update_doc(u)))
    gg = guidance_gap()
    specs.append(
        CoeffSpec(
            "ddpm_guidance_shifts",
            (t, s),
            ("score_form", "mean_form"),
            (gg["score_shift_per_wg"], gg["mean_shift_per_wg"]),
            "Guided DDPM: shift of the posterior mean per unit w*g.\n\n"
            "    score_form: D -> D + (sigma_t^2/alpha_t) w g, shift = (alpha_s/alpha_t) sigma_{t|s}^2 w g;\n"
            "    mean_form: mean + w * (posterior variance) * g, shift = sigma_s^2 sigma_{t|s}^2 / sigma_t^2 w g",
        )
    )
    specs.append(CoeffSpec(
        "half_logsnr_step", (t, s), ("ell_step",), (half_logsnr_step(),),
        "Half log-SNR step ell_s - ell_t of a step t -> s, ell = log(alpha/sigma) (the multistep updates' h)."))
    specs.append(CoeffSpec(
        "dpm_solver_3_weights", (h_ell, h_ell_prev), ("c_q", "c_d1", "c_d2"), dpm_solver_3_weights(),
        "DPM-Solver++(3M) weights (divided by alpha_s) of D_t, delta_1, delta_2 (Newton divided differences of the\n"
        "    denoiser in ell): x_s = (sigma_s/sigma_t) x_t + alpha_s (c_q D_t + c_d1 delta_1 + c_d2 delta_2),\n"
        "    psi_0(h), psi_1(h), 2 psi_2(h) + h_p psi_1(h); arguments: the half log-SNR steps h = ell_s - ell_t,\n"
        "    h_p = ell_t - ell_{t_p}",
        stable=_dpm3_stable()))
    specs.append(CoeffSpec(
        "dpm_solver_2_eps_weights", (h_ell,), ("c_q", "c_d1_midpoint", "c_d1_heun"), dpm_solver_2_eps_weights(),
        "DPM-Solver-2M noise-form weights (divided by -sigma_s) of eps_t and delta_1 = (eps_t - eps_p)/h_p:\n"
        "    x_s = (alpha_s/alpha_t) x_t - sigma_s (c_q eps_t + c_d1 delta_1), phi_0(h); (h/2) phi_0(h) (midpoint);\n"
        "    phi_1(h) (heun, the exact integral of the linear interpolant); argument: the half log-SNR step\n"
        "    h = ell_s - ell_t",
        stable=_dpm2_eps_stable()))
    specs.append(CoeffSpec(
        "dpm_solver_3_eps_weights", (h_ell, h_ell_prev), ("c_q", "c_d1", "c_d2"), dpm_solver_3_eps_weights(),
        "DPM-Solver-3M noise-form weights (divided by -sigma_s) of eps_t, delta_1, delta_2 (Newton divided differences\n"
        "    of the noise prediction in ell): x_s = (alpha_s/alpha_t) x_t - sigma_s (c_q eps_t + c_d1 delta_1 + c_d2\n"
        "    delta_2), phi_0(h), phi_1(h), 2 phi_2(h) + h_p phi_1(h) (the exact integral of the quadratic interpolant);\n"
        "    arguments: the half log-SNR steps h = ell_s - ell_t, h_p = ell_t - ell_{t_p}",
        stable=_dpm3_eps_stable()))
    specs.append(CoeffSpec(
        "dpm_solver_2s_weights", (h_ell,), ("c_q", "c_d1_midpoint", "c_d1_heun"), dpm_solver_2s_weights(),
        "DPM-Solver++(2S) weights (divided by alpha_t) of D_{s1} and delta = (D_{s0} - D_{s1})/h_0 (the line through\n"
        "    the step's start s1 and the intermediate level s0): x_t = (sigma_t/sigma_{s1}) x_{s1} + alpha_t (c_q D_{s1}\n"
        "    + c_d1 delta), psi_0(h); (h/2) psi_0(h) (midpoint); psi_1(h) (heun, the exact integral of the line);\n"
        "    argument: the half log-SNR step h = ell_t - ell_{s1} of the whole step",
        stable=_dpm2s_stable()))
    specs.append(CoeffSpec(
        "dpm_solver_3s_weights", (h_ell, h_ell_prev, h_ell_prev2),
        ("c_q", "c_a", "c_b", "a_1", "a_0", "b_1", "b_0", "m_0"), dpm_solver_3s_weights(),
        "DPM-Solver++(3S) (singlestep third order, from the saved state s2 with calls at s1 and s0 inside the step)\n"
        "    weights divided by alpha_t: heun x_t = (sigma_t/sigma_{s2}) x_{s2} + alpha_t (c_q D_{s2} + c_a a + c_b b),\n"
        "    a = a_1 Delta_1 + a_0 Delta_0, b = b_1 Delta_1 + b_0 Delta_0 (the quadratic D_{s2} + a u + b u^2 through\n"
        "    the three calls, Delta_j = D_{sj} - D_{s2}); midpoint x_t = ... + alpha_t (c_q D_{s2} + m_0 Delta_0);\n"
        "    psi_0(h), psi_1(h), 2 psi_2(h), psi_1(h)/h_0; arguments: the half log-SNR steps h = ell_t - ell_{s2},\n"
        "    h_p = h_1 = ell_{s1} - ell_{s2}, h_p2 = g = ell_{s0} - ell_{s1} (h_0 = h_1 + g)",
        stable=_dpm3s_stable()))
    specs.append(CoeffSpec(
        "heun_weights", (h_ell,), ("c_q", "c_d"), heun_weights(),
        "Heun (trapezoidal predictor-corrector of the PF-ODE in the VE variables x/alpha, sigma/alpha) weights\n"
        "    (divided by alpha_s) of D_t and of D_p - D_t, D_p the denoiser at the DDIM predictor x_p at level s:\n"
        "    x_s = (sigma_s/sigma_t) x_t + alpha_s (c_q D_t + c_d (D_p - D_t)), psi_0(h) = 1 - exp(-h),\n"
        "    phi_0(h)/2 = (exp(h) - 1)/2 (= (sigma_t/alpha_t)/(sigma_s/alpha_s) - 1, halved); argument: the half\n"
        "    log-SNR step h = ell_s - ell_t",
        stable=_heun_stable()))
    specs.append(CoeffSpec(
        "lms_weights", (lms_k, lms_g1, lms_g2, lms_g3),
        tuple(f"c{p}_{j}" for p in range(1, LMS_MAX_ORDER + 1) for j in range(p)), lms_weights(),
        "Linear multistep (diffusers' LMSDiscreteScheduler) coefficients of orders p = 1..4 in the VE variables:\n"
        "    y_{i+1} = y_i + sum_j cp_j d_{i-j}, d = (y - D)/sigma, cp_j the exact integral from sigma_i to\n"
        "    sigma_{i+1} of the Lagrange basis polynomial of sigma_{i-j} on the nodes sigma_i, ..., sigma_{i-p+1};\n"
        "    arguments: the sigma step k = sigma_i - sigma_{i+1} and the gaps g_m = sigma_{i-m} - sigma_{i-m+1}\n"
        "    (order p uses g_1, ..., g_{p-1})",
        stable=_lms_stable(), domain="k, g1, g2, g3 > 0"))
    specs.append(CoeffSpec(
        "deis_weights", (h_ell, h_ell_prev, h_ell_prev2),
        tuple(f"c{p}_{j}" for p in range(1, DEIS_MAX_ORDER + 1) for j in range(p)), deis_weights(),
        "DEIS (diffusers' DEISMultistepScheduler, log-rho) weights of orders p = 1..3 (divided by -sigma_s):\n"
        "    x_s = (alpha_s/alpha_t) x_t - sigma_s sum_j cp_j eps_j, cp_j the exact integral over rho = sigma/alpha of\n"
        "    the Lagrange basis in log(rho) of the call j (0: the current, 1, 2: the earlier ones), written as\n"
        "    sign-definite phi_k(h) combinations; arguments: the half log-SNR steps h = ell_s - ell_t,\n"
        "    h_p = ell_t - ell_{t_p}, h_p2 = ell_{t_p} - ell_{t_p2} (order p uses the first p)",
        stable=_deis_stable()))
    specs.append(CoeffSpec(
        "unipc_corrector_weights", (h_ell,), ("c_q", "c_t1", "c_d1", "c_d2"), unipc_corrector_weights(),
        "UniPC's corrector UniC (bh2, data prediction) weights (divided by alpha_t) of the step s0 -> t:\n"
        "    x_t = (sigma_t/sigma_s0) x_s0 + alpha_t (c_q D_0 + c_t1 (D_t - D_0)) at order 1 (psi_0, psi_0/2), and\n"
        "    x_t = (sigma_t/sigma_s0) x_s0 + alpha_t (c_q D_0 + c_d1 delta_1 + c_d2 delta_2) at order 2 (psi_1,\n"
        "    2 psi_2 - h psi_1: the exact integral of the quadratic through D_1, D_0, D_t), delta_1 = (D_t - D_0)/h,\n"
        "    delta_2 = (delta_1 - (D_0 - D_1)/h_p)/(h + h_p); argument: the half log-SNR step h = ell_t - ell_s0",
        stable=_unipc_stable()))
    return specs


_PRINT_SETTINGS = {"fully_qualified_modules": True, "standard": "python3"}


def _code(e: sp.Expr) -> str:
    return pycode(e, **_PRINT_SETTINGS)


def _emit_helper(helper: str) -> str:
    """One shared primitive helper: the ``_DEF`` entries of its primitives, written in a time ``v``."""
    prefixes, times, doc = _HELPERS[helper]
    for p in prefixes:  # the helper computes what _DEF defines, for every time it serves
        first = _DEF[f"{p}_{times[0]}"]
        assert all(_DEF[f"{p}_{v}"] == first.subs(_TIME[times[0]], _TIME[v]) for v in times), (helper, p)
    v = sp.Symbol("v", positive=True)
    ret = ", ".join(_code(_DEF[f"{p}_{times[0]}"].subs(_TIME[times[0]], v)) for p in prefixes)
    return "\n".join([
        "@numba.njit(cache=True)",
        f"def {helper}(v):",
        f'    """{doc}"""',
        f"    return ({ret})",
    ])


def _emit_weights(spec: CoeffSpec) -> str:
    """A function of log-SNR steps: its :attr:`CoeffSpec.stable` forms, printed with the argument names."""
    names = {a: sp.Symbol(_ARGNAME[a]) for a in spec.args}
    ret = ", ".join(spec.labels)
    lines = ["@numba.njit(cache=True)", f"def {spec.func}({', '.join(_ARGNAME[a] for a in spec.args)}):",
             f'    """{spec.doc}.\n\n    Returns ({ret}); {spec.domain}.\n    """']
    # 1 - exp(-h) is the shared helper's primitive am_h (the primitives of a time are written once, in _decay)
    # and exp(h) - 1 the growing helper's em_h
    am = {expm1(-a): -sp.Symbol(f"am_{_ARGNAME[a]}") for a in spec.args}
    am.update({expm1(a): sp.Symbol(f"em_{_ARGNAME[a]}") for a in spec.args})
    forms = [e.subs(am).subs(names) for e in spec.stable]
    for a in spec.args:
        if any(x.has(sp.Symbol(f"am_{_ARGNAME[a]}")) for x in forms):
            lines.append(f"    _, am_{_ARGNAME[a]}, _, _ = _decay({_ARGNAME[a]})")
        if any(x.has(sp.Symbol(f"em_{_ARGNAME[a]}")) for x in forms):
            lines.append(f"    _, em_{_ARGNAME[a]}, _, _ = _growth({_ARGNAME[a]})")
    for lab, e in zip(spec.labels, forms):
        lines.append(f"    {lab} = {_code(e)}")
    lines.append(f"    return ({ret},)" if len(spec.labels) == 1 else f"    return ({ret})")
    return "\n".join(lines)


def _emit_function(spec: CoeffSpec) -> str:
    if spec.stable is not None:
        return _emit_weights(spec)
    stable = [stabilize(e, spec.args) for e in spec.exprs]
    used = set().union(*(x.free_symbols for x in stable))
    argnames = [_ARGNAME[a] for a in spec.args]
    lines = ["@numba.njit(cache=True)", f"def {spec.func}({', '.join(argnames)}):"]
    ret = ", ".join(spec.labels)
    lines.append(f'    """{spec.doc}\n\n    Returns ({ret}); OU forward times, t > s > 0.\n    """')
    needs_h = any(x == h or x.name.endswith(("_h", "_hp")) for x in used)
    needs_hp = any(x.name.endswith("_hp") for x in used)
    if needs_h or needs_hp:
        lines.append(f"    h = {_code(t - s)}")
    if needs_hp:
        lines.append(f"    hp = {_code(sp.Symbol('t_prev') - t)}")
    called = set()
    for name in _PRIMITIVE_ORDER:
        if _P[name] not in used or name == "eta":  # eta: the argument itself
            continue
        if name not in _FROM_HELPER:
            lines.append(f"    {name} = {_code(_DEF[name])}")
            continue
        helper, v, names = _FROM_HELPER[name]
        if (helper, v) not in called:  # one call per helper and time; unused results go to `_`
            called.add((helper, v))
            targets = ", ".join(n if _P[n] in used else "_" for n in names)
            lines.append(f"    {targets} = {helper}({v})")
    for lab, e in zip(spec.labels, stable):
        lines.append(f"    {lab} = {_code(e)}")
    lines.append(f"    return ({ret},)" if len(spec.labels) == 1 else f"    return ({ret})")
    return "\n".join(lines)


HEADER = '''\
# GENERATED FILE -- DO NOT EDIT BY HAND.
# Generated by `python -m theory.codegen` from the SymPy derivations in theory/integrators.py.
# Verify it is current with `python -m theory.codegen --check`.
r"""Integrator coefficients as Numba functions of OU forward times (generated).

Every function takes float64 scalars, the current forward time ``t`` and the next, smaller one
``s`` (``0 < s < t``; ``t_prev > t`` for multistep; ``0 <= eta <= 1``), and returns a tuple of
float64 coefficients of the update

    x_s = c_x * x_t + c_q * q [+ c_q_prev * q_prev] [+ c_z * z],   z ~ N(0, I).

Expressions are rewritten in cancellation-free form (see theory/codegen.py): primitives are
``a_v = exp(-v)``, ``am_v = -expm1(-v) = 1 - exp(-v)``, ``a2_v = exp(-2v)``,
``sig2_v = -expm1(-2v) = 1 - exp(-2v)`` for ``v`` in ``s``, ``h = t - s``, ``hp = t_prev - t``;
``ea_h = exp(h)``, ``em_h = expm1(h)``, ``ea2_h = exp(2h)``, ``em2_h = expm1(2h)``;
``eta2 = eta**2``, ``etam2 = (1 - eta)(1 + eta)``.  The ``*_v`` primitives come from one shared
helper ``_decay(v)``, the growing ones from ``_growth(h)`` (Numba inlines both and drops unused
results: the same operations as writing them out).  Relative error a few units of roundoff
plus about (t + s) units from the rounding of ``h = t - s`` (tested against 50-digit mpmath for
t, s in [1e-10, 50] and steps down to 1e-12).

No argument checking (hot path): callers pass 0 < s < t (< t_prev) and 0 <= eta <= 1.
``dpm_solver_2_coeffs`` needs a finite t_prev; its first step is ``ddim_coeffs``.
"""
import math

import numba

# The coefficient functions below share a skeleton generated from one template in theory/codegen.py; only their formulas differ.


'''


def generate_source() -> str:
    """The full text of the generated module (computed once per process)."""
    return _generate_source_cached()


@lru_cache(maxsize=1)
def _generate_source_cached() -> str:
    specs = coefficient_specs()
    parts = [HEADER]
    for helper in _HELPERS:
        parts.append(_emit_helper(helper))
        parts.append("\n\n\n")
    names = []
    for spec in specs:
        parts.append(_emit_function(spec))
        parts.append("\n\n\n")
        names.append(spec)
    table = ",\n".join(
        f"    {sp_.func.removesuffix('_coeffs')!r}: ({sp_.func}, {tuple(_ARGNAME[a] for a in sp_.args)!r}, {sp_.labels!r})"
        for sp_ in names
    )
    parts.append(
        "#: name -> (function, argument names, returned coefficient names)\n"
        f"COEFFICIENT_FUNCTIONS = {{\n{table},\n}}\n\n"
        f"__all__ = {[sp_.func for sp_ in names] + ['COEFFICIENT_FUNCTIONS']!r}\n"
    )
    return "".join(parts)


def default_output_path() -> Path:
    """``<repo>/numerics/generated/integrator_coeffs.py``."""
    return Path(__file__).resolve().parent.parent / "numerics" / "generated" / "integrator_coeffs.py"


def write(path: str | Path | None = None) -> Path:
    """Write the generated module to ``path`` (default: :func:`default_output_path`)."""
    path = Path(path) if path is not None else default_output_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    init = path.parent / "__init__.py"
    if not init.exists():
        init.write_text("")
    tmp = path.with_suffix(".py.tmp")
    tmp.write_text(generate_source())
    tmp.replace(path)
    return path


def check(path: str | Path | None = None) -> tuple[bool, str]:
    """``(is_current, unified diff)`` of the file at ``path`` against a fresh generation."""
    path = Path(path) if path is not None else default_output_path()
    fresh = generate_source()
    old = path.read_text() if path.exists() else ""
    if old == fresh:
        return True, ""
    diff = "".join(difflib.unified_diff(old.splitlines(True), fresh.splitlines(True), str(path), "fresh"))
    return False, diff


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m theory.codegen [--check] [--output PATH]``."""
    ap = argparse.ArgumentParser(prog="python -m theory.codegen", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from a fresh generation")
    ap.add_argument("--output", default=None, help="target path (default: numerics/generated/integrator_coeffs.py)")
    ns = ap.parse_args(argv)
    if ns.check:
        ok, diff = check(ns.output)
        if not ok:
            sys.stdout.write(diff or "generated file missing\n")
            sys.stderr.write("integrator_coeffs.py is out of date: run `python -m theory.codegen`\n")
            return 1
        print("integrator_coeffs.py is current")
        return 0
    print(f"wrote {write(ns.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

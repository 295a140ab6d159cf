r"""Printable derivations: each is a titled list of (label, SymPy expression) steps.

``guidance-verify derive`` prints them (pretty or LaTeX); ``--out DIR`` writes one Markdown file per
derivation with the LaTeX, which is how ``proofs_notes/derived/`` is produced.  A derivation is a function
decorated with :func:`derivation`; the expressions are computed when the derivation runs, so what is
printed is what SymPy derived, never a typed formula.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from theory import forward as fw
from theory.guidance import cfg_score, classifier_guided_score
from theory.targets import SymbolicMixture

__all__ = ["Derivation", "DERIVATIONS", "derivation", "all_derivations", "print_all", "write_markdown", "to_markdown"]

Step = tuple[str, object]


@dataclass(frozen=True)
class Derivation:
    """A named derivation; ``build()`` returns its steps."""

    name: str
    title: str
    build: Callable[[], list[Step]]


DERIVATIONS: dict[str, Derivation] = {}


def derivation(name: str, title: str):
    """Register a derivation function returning a list of ``(label, expression)`` steps."""

    def deco(fn: Callable[[], list[Step]]):
        DERIVATIONS[name] = Derivation(name, title, fn)
        return fn

    return deco


# ----------------------------------------------------------------------------- forward process
@derivation("forward", "The OU / VP forward process")
def _forward() -> list[Step]:
    t, s = fw.t, fw.s
    ou = fw.OU
    L = fw.GENERAL
    m0, v0 = sp.symbols("m_0 v_0", positive=True)
    res_ou = sp.simplify(fw.fokker_planck_residual(ou, fw.gaussian_marginal_density(ou, m0, v0)))
    res_gen = sp.simplify(sp.together(sp.expand(fw.fokker_planck_residual(L, fw.gaussian_marginal_density(L, m0, v0)))))
    lin, cos = fw.linear_schedule(), fw.cosine_schedule()
    return [
        (r"\alpha_t", ou.alpha()),
        (r"\sigma_t^2", ou.sigma2()),
        (r"\beta(t) = -2\,\tfrac{d}{dt}\log\alpha_t", ou.beta()),
        (r"\lambda_t = \log(\alpha_t^2/\sigma_t^2)", sp.simplify(ou.logsnr())),
        (r"\alpha_{t|s}", sp.simplify(ou.alpha_ts())),
        (r"\sigma^2_{t|s} = \sigma_t^2 - \alpha_{t|s}^2\sigma_s^2", sp.simplify(ou.sigma2_ts())),
        (r"\sigma^2_{t|s} - (1 - \alpha_{t|s}^2)\ \text{(general schedule)}", sp.simplify(L.sigma2_ts() - (1 - L.alpha_ts() ** 2))),
        (r"p_t(x)\ \text{for}\ X_0\sim N(m_0, v_0)", fw.gaussian_marginal_density(ou, m0, v0)),
        (r"\text{Fokker-Planck residual}/p_t\ \text{(OU)}", res_ou),
        (r"\text{Fokker-Planck residual}/p_t\ \text{(any VP schedule, } \log\alpha_t = L(t))", res_gen),
        (r"\log\alpha_t\ \text{(linear } \beta)", lin.log_alpha),
        (r"\beta(t)\ \text{(linear)}", lin.beta()),
        (r"\log\alpha_t\ \text{(cosine)}", cos.log_alpha),
        (r"\beta(t)\ \text{(cosine)}", cos.beta()),
    ]


# ----------------------------------------------------------------------------- Tweedie
@derivation("tweedie", "Tweedie's formulas for a Gaussian target")
def _tweedie() -> list[Step]:
    g = SymbolicMixture.gaussian_1d()
    score = sp.simplify(g.score()[0])
    return [
        (r"p_t(x)", g.density()),
        (r"\nabla\log p_t(x)", score),
        (r"E[X_0\mid x]\ \text{(Gaussian conditioning)}", sp.simplify(g.denoiser()[0])),
        (r"(x + \sigma_t^2\nabla\log p_t)/\alpha_t", sp.simplify(g.tweedie_denoiser()[0])),
        (r"\text{difference}", sp.simplify(g.tweedie_denoiser()[0] - g.denoiser()[0])),
        (r"\mathrm{Var}[X_0\mid x]", sp.simplify(g.posterior_cov()[0])),
        (r"\tfrac{\sigma_t^2}{\alpha_t^2}(1 + \sigma_t^2\,\partial_x^2\log p_t)", sp.simplify(g.tweedie_posterior_cov()[0])),
        (r"\text{difference}", sp.simplify(g.tweedie_posterior_cov()[0] - g.posterior_cov()[0])),
    ]


# ----------------------------------------------------------------------------- guidance
@derivation("guidance", "Class posterior, guidance vector and its Hessian for a two-class 1-D mixture")
def _guidance() -> list[Step]:
    m = SymbolicMixture.two_class_1d()
    g1 = m.guidance_vector(1)[0]
    s, s1 = m.score()[0], m.score(1)[0]
    cg, cfg = classifier_guided_score(s, g1), cfg_score(s1, s)
    return [
        (r"p_t(1\mid x)", sp.simplify(m.class_posterior(1))),
        (r"g_1(x) = \partial_x\log p_t(1\mid x)", g1),
        (r"\text{(CG)}\ s + w g_1", cg),
        (r"\text{(CFG)}\ w s_1 + (1-w) s", cfg),
        (r"\text{(CG)} - \text{(CFG)} = w\,(g_1 - s_1 + s)", sp.factor(cg - cfg)),
        (r"\partial_x^2\log p_t(1\mid x)", m.guidance_hessian(1)[0]),
        (r"\tfrac{\alpha_t^2}{\sigma_t^4}(\mathrm{Var}[X_0\mid x,1] - \mathrm{Var}[X_0\mid x])", m.guidance_hessian_identity(1)[0]),
    ]


def _integrator_derivations() -> None:
    """Register the sampler derivations of :mod:`theory.integrators` when that module is present."""
    try:
        from theory import integrators
    except ImportError:  # pragma: no cover - integrators are part of the package
        return
    for upd in integrators.all_updates():
        DERIVATIONS.setdefault(
            f"integrator_{upd.name}",
            Derivation(f"integrator_{upd.name}", f"Sampler update: {upd.name}",
                       (lambda n=upd.name: integrators.derivation_steps(n))),
        )


def all_derivations() -> list[Derivation]:
    """Every registered derivation, foundations first, then the samplers."""
    _integrator_derivations()
    return list(DERIVATIONS.values())


# ----------------------------------------------------------------------------- output
def _as_latex(expr) -> str:
    return expr if isinstance(expr, str) else sp.latex(expr)


def to_markdown(der: Derivation, steps: list[Step]) -> str:
    """One derivation as Markdown with display LaTeX."""
    lines = [f"# {der.title}", "", f"Generated by `guidance-verify derive` from `theory` (derivation `{der.name}`).", ""]
    for label, expr in steps:
        lines += [f"$$ {label} \\;=\\; {_as_latex(expr)} $$", ""]
    return "\n".join(lines)


def print_all(latex: bool = False, names: list[str] | None = None) -> None:
    """Print every derivation (SymPy pretty printing, or LaTeX source with ``latex=True``)."""
    for der in all_derivations():
        if names and der.name not in names:
            continue
        print(f"== {der.title} [{der.name}] ==")
        for label, expr in der.build():
            if latex:
                print(f"{label} = {_as_latex(expr)}")
            else:
                print(f"{label}:")
                print(sp.pretty(expr, use_unicode=True) if not isinstance(expr, str) else expr)
            print()


def _atomic_write(path: str, text: str) -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".md")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_markdown(out_dir: str, names: list[str] | None = None) -> list[str]:
    """Write each derivation to ``out_dir/<name>.md`` (atomically) and an ``index.md``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths, index = [], ["# Derivations", "", "Generated by `guidance-verify derive --out`.", ""]
    for der in all_derivations():
        if names and der.name not in names:
            continue
        path = os.path.join(out_dir, f"{der.name}.md")
        _atomic_write(path, to_markdown(der, der.build()))
        paths.append(path)
        index.append(f"- [{der.title}]({der.name}.md)")
    _atomic_write(os.path.join(out_dir, "index.md"), "\n".join(index) + "\n")
    return paths


# ----------------------------------------------------------------------------- README sampler table
def _step(name: str, startswith: str):
    from theory import integrators

    for label, expr in integrators.derivation_steps(name):
        if label.strip().startswith(startswith):
            return expr
    raise KeyError(f"{name}: no step starting with {startswith!r}")


def sampler_rows() -> list[tuple[str, str, str]]:
    r"""``(method, frozen quantity, update in LaTeX)`` for every sampler, each update taken from the
    final step of its SymPy derivation (score-frozen schemes in :math:`h = t - s`)."""
    from theory import integrators

    t, s = fw.t, fw.s
    h = sp.Symbol("h", positive=True)
    xt, D, q, z = sp.symbols("x_t D q z")
    Dp = sp.Symbol("D_p")
    rows = []
    for upd in integrators.all_updates():
        n = upd.name
        if n in ("ddim", "ddim_eta", "dpm_solver_1"):
            expr = _step(n, "x_s")
        elif n == "ddpm":
            expr = (_step(n, r"\partial_{x_t}") * xt + _step(n, r"\partial_{x_0}") * D
                    + sp.sqrt(_step(n, "v")) * z)
        elif n == "dpm_solver_2":
            a_s, s_s, s_t = sp.symbols(r"alpha_s sigma_s sigma_t", positive=True)
            expr = s_s / s_t * xt + a_s * (_step(n, r"\text{2M weight of } D_t") * D + _step(n, r"\text{2M weight of } D_p") * Dp)
        else:
            coeffs = [sp.simplify(c.subs(t, s + h)) for c in (upd.c_x, upd.c_q, upd.c_z)]
            expr = coeffs[0] * xt + coeffs[1] * q + coeffs[2] * z
        rows.append((n, upd.frozen, f"x_s = {sp.latex(expr)}".replace("t|s", r"t\mid s")))
    return rows


def sampler_table_markdown() -> str:
    """The README's sampler table (regenerate with ``python -c 'from theory.derive import sampler_table_markdown as f; print(f())'``)."""
    lines = ["| method | frozen over the step | update (from the derivation) |", "|---|---|---|"]
    lines += [f"| `{n}` | {frozen} | ${upd}$ |" for n, frozen, upd in sampler_rows()]
    return "\n".join(lines)

"""Claims of the theory of guided diffusion, their registry and the verdict logic.

Modules
-------
claim      Claim, Measurement, Context, the ``@claim`` decorator and :data:`REGISTRY`
verdict    pass rules of measurements, claim verdicts, baseline drift
stats      confidence intervals and log-log slope fits for claims
runner     runs claims (stated run + negative control), isolates failures, keeps the report current
report     report.json / report.md / figures, baselines, atomic writes
examples   two self-contained demo claims (registered only in ``examples.CLAIMS``, not REGISTRY)

The claim modules, one per paper, are listed in :data:`CLAIM_MODULES` and imported by
:func:`load_all`. The environment variable ``GUIDANCE_VERIFY_CLAIM_MODULES`` (comma-separated module
names) replaces that list, e.g. to run your own claim module or the demos::

    GUIDANCE_VERIFY_CLAIM_MODULES=numerics.checks.examples guidance-verify run
"""
from __future__ import annotations

import importlib
import os
import traceback
from typing import Any, Sequence

from numerics.checks.claim import REGISTRY, Claim, Context, Measurement, claim

__all__ = [
    "CLAIM_MODULES",
    "CLAIM_MODULES_ENV",
    "Claim",
    "Context",
    "Measurement",
    "REGISTRY",
    "claim",
    "claim_modules",
    "load_all",
]

#: Modules that define the registered claims (each registers into REGISTRY on import).
CLAIM_MODULES: list[str] = ["numerics.papers.foundations.claims", "numerics.papers.samplers.claims", "numerics.papers.ce_guidance.claims", "numerics.papers.discrete_kl.claims", "numerics.papers.support.claims", "numerics.papers.discriminator.claims", "numerics.papers.support.claims_experiments", "numerics.papers.ce_guidance.claims_trained"]
#: Environment variable that overrides :data:`CLAIM_MODULES` (comma-separated module names).
CLAIM_MODULES_ENV = "GUIDANCE_VERIFY_CLAIM_MODULES"


def claim_modules() -> list[str]:
    """The claim modules to load: ``$GUIDANCE_VERIFY_CLAIM_MODULES`` if set, else CLAIM_MODULES."""
    env = os.environ.get(CLAIM_MODULES_ENV, "").strip()
    if env:
        return [m.strip() for m in env.split(",") if m.strip()]
    return list(CLAIM_MODULES)


def _import_error_claim(module: str, text: str) -> Claim:
    """A pseudo-claim that reports ``module``'s import failure as ERROR when run."""

    def failed_import(ctx: Context) -> Any:
        raise ImportError(f"claim module {module!r} failed to import:\n{text}")

    return Claim(id=f"import.{module}", paper="import", statement=f"module {module} imports",
                 note=f"{module.replace('.', '/')}.py", provenance="standard", expect="holds",
                 func=failed_import, quick={}, full={}, control="none",
                 control_reason="import check; nothing to control", module=module)


#: Claim ids each module added to REGISTRY while it was imported (covers claims built by a
#: helper function defined in another module, whose ``Claim.module`` names the helper's module).
_ADDED_BY: dict[str, list[str]] = {}


def _import(module: str) -> Any:
    """Import ``module``, remembering which claim ids it added to REGISTRY."""
    before = set(REGISTRY)
    try:
        return importlib.import_module(module)
    finally:
        added = [k for k in REGISTRY if k not in before]
        if added:
            _ADDED_BY.setdefault(module, []).extend(added)


def _registered_by(module: str, loading: Sequence[str]) -> list[Claim]:
    """REGISTRY claims of ``module``: defined there, or added while it was imported by a helper
    that is not itself one of the modules being ``loading`` (those claim their own)."""
    ids = set(_ADDED_BY.get(module, ()))
    return [c for c in REGISTRY.values()
            if c.module == module or (c.id in ids and c.module not in loading)]


def _module_claims(module: str, mod: Any, loading: Sequence[str]) -> list[Claim]:
    """Claims defined by ``mod``: its entries in REGISTRY, plus its own ``CLAIMS`` mapping."""
    found = _registered_by(module, loading)
    own = getattr(mod, "CLAIMS", None)
    if isinstance(own, dict):
        found += [c for c in own.values() if isinstance(c, Claim) and c not in found]
    return found


def load_all(modules: Sequence[str] | None = None) -> dict[str, Claim]:
    """Import the claim modules and return their claims, id -> Claim, in module order.

    Parameters
    ----------
    modules : sequence of str, optional
        Module names; default :func:`claim_modules`.

    Returns
    -------
    dict
        The claims each module registered in :data:`REGISTRY` while it was imported or whose
        function it defines (or listed in a module-level
        ``CLAIMS`` dict, as :mod:`numerics.checks.examples` does). A module that fails to import
        contributes one pseudo-claim ``"import.<module>"`` that runs as ERROR with the import
        traceback; the other modules still load. Claims a broken module registered before
        failing are kept.
    """
    out: dict[str, Claim] = {}
    loading = claim_modules() if modules is None else list(modules)
    for module in loading:
        try:
            mod = _import(module)
        except Exception:  # noqa: BLE001 - one broken module must not hide the others
            text = traceback.format_exc()
            for c in _registered_by(module, loading):
                out.setdefault(c.id, c)
            pseudo = _import_error_claim(module, text)
            out[pseudo.id] = pseudo
            continue
        for c in _module_claims(module, mod, loading):
            out.setdefault(c.id, c)
    return out

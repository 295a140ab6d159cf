"""The claim harness: claims, their registry, verdicts, the runner and reports.

Modules
-------
claim      Claim, Measurement, Context, the ``@claim`` decorator and :data:`REGISTRY`
verdict    pass rules of measurements, claim verdicts, baseline drift
results    the data of a run: CheckedMeasurement, ClaimResult, RunReport
runner     runs claims (stated run + each named control), isolates failures, keeps the report current
report     report.json / report.md / figures, baselines
examples   two self-contained demo claims (registered only in ``examples.CLAIMS``, not REGISTRY)

The harness knows no paper. The claim modules are found through the entry-point group
``guidance_verify.claims`` (:data:`CLAIMS_GROUP`): each entry point names a paper and its value is
the module that defines the paper's claims. guidance-verify declares its own papers there, and any
installed distribution can add more the same way, in its ``pyproject.toml``::

    [project.entry-points."guidance_verify.claims"]
    mypaper = "mypackage.claims"

:func:`claim_modules` lists them and :func:`load_all` imports them. The environment variable
``GUIDANCE_VERIFY_CLAIM_MODULES`` (comma-separated module names) replaces that list, e.g. to run
your own claim module or the demos::

    GUIDANCE_VERIFY_CLAIM_MODULES=numerics.checks.examples guidance-verify run
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import traceback
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from numerics.checks.claim import REGISTRY, Claim, Context, Measurement, claim
from numerics.checks.plots import PlotRecorder, power_law

__all__ = [
    "CLAIMS_GROUP",
    "CLAIM_MODULES_ENV",
    "Claim",
    "ClaimSource",
    "Context",
    "DISTRIBUTION",
    "Measurement",
    "PlotRecorder",
    "REGISTRY",
    "claim",
    "claim_modules",
    "claim_sources",
    "load_all",
    "power_law",
]

#: Entry-point group of the claim modules: ``<paper> = <module>``.
CLAIMS_GROUP = "guidance_verify.claims"
#: Environment variable that replaces the entry points (comma-separated module names).
CLAIM_MODULES_ENV = "GUIDANCE_VERIFY_CLAIM_MODULES"
#: The distribution whose own entry points load first.
DISTRIBUTION = "guidance-verify"


@dataclass(frozen=True)
class ClaimSource:
    """A claim module to load and where it was declared.

    ``origin`` says where the module name came from (an entry point and its distribution, or the
    environment variable). ``error`` is set when the declaration itself could not be read (an
    unreadable ``entry_points.txt``); ``module`` then names the distribution, nothing is imported.
    """

    module: str
    origin: str
    error: str | None = None


def _normalize(name: str) -> str:
    """A distribution name normalised as in PEP 503 (``Guidance_Verify`` -> ``guidance-verify``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions() -> Iterator[tuple[str, Any]]:
    """(normalised name, distribution) of the installed distributions, each name once.

    The first on ``sys.path`` wins, as in :func:`importlib.metadata.entry_points`.
    """
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        try:
            name = _normalize(dist.metadata["Name"] or "")
        except Exception:  # noqa: BLE001 - unreadable metadata: no name, entry points still read
            name = ""
        if name and name in seen:
            continue
        seen.add(name)
        yield name, dist


def _entry_point_sources() -> list[ClaimSource]:
    """The claim modules declared in :data:`CLAIMS_GROUP`, in load order.

    Order: guidance-verify's own entry points first, then those of the other distributions sorted
    by distribution name; within a distribution by entry-point name. (setuptools writes
    ``entry_points.txt`` sorted by name, so the order of the declaration in ``pyproject.toml`` does
    not survive the build; name order is the one order every build backend can reproduce.)
    A distribution whose entry points cannot be read gives one source with ``error`` set.
    """
    found: list[tuple[tuple[int, str, str], ClaimSource]] = []
    for name, dist in _distributions():
        first = 0 if name == DISTRIBUTION else 1
        label = f"{name or '<unnamed distribution>'} {dist.version or ''}".strip()
        try:
            eps = list(dist.entry_points.select(group=CLAIMS_GROUP))
        except Exception:  # noqa: BLE001 - one broken distribution must not hide the others
            src = ClaimSource(module=name or "unnamed-distribution",
                              origin=f"distribution {label}",
                              error=f"the entry points of {label} cannot be read:\n"
                                    + traceback.format_exc())
            found.append(((first, name, ""), src))
            continue
        for ep in eps:
            src = ClaimSource(module=ep.value.strip(),
                              origin=f"entry point {ep.name} = {ep.value} of {label}")
            found.append(((first, name, ep.name), src))
    found.sort(key=lambda item: item[0])
    out: list[ClaimSource] = []
    modules: set[str] = set()
    for _, src in found:
        if src.module not in modules:  # the same module declared twice loads once
            modules.add(src.module)
            out.append(src)
    return out


def claim_sources() -> list[ClaimSource]:
    """The claim modules to load, with where each was declared.

    ``$GUIDANCE_VERIFY_CLAIM_MODULES`` if set (it replaces the entry points), else the entry points
    of :data:`CLAIMS_GROUP` (see :func:`_entry_point_sources` for the order).
    """
    env = os.environ.get(CLAIM_MODULES_ENV, "").strip()
    if env:
        return [ClaimSource(module=m.strip(), origin=f"${CLAIM_MODULES_ENV}")
                for m in env.split(",") if m.strip()]
    return _entry_point_sources()


def claim_modules() -> list[str]:
    """The names of the claim modules to load, in load order (see :func:`claim_sources`)."""
    return [s.module for s in claim_sources()]


def _pseudo_id(module: str) -> str:
    """``import.<module>`` with every character a claim id does not allow replaced by ``_``."""
    parts = [re.sub(r"[^A-Za-z0-9_\-]", "_", p) or "_" for p in module.split(".")]
    return "import." + ".".join(parts)


def _import_error_claim(module: str, text: str) -> Claim:
    """A pseudo-claim that reports ``module``'s import failure as ERROR when run."""

    def failed_import(ctx: Context) -> Any:
        raise ImportError(text)

    return Claim(id=_pseudo_id(module), paper="import", statement=f"module {module} imports",
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
        Module names; default :func:`claim_modules` (the entry points, or the environment
        variable).

    Returns
    -------
    dict
        The claims each module registered in :data:`REGISTRY` while it was imported or whose
        function it defines (or listed in a module-level ``CLAIMS`` dict, as
        :mod:`numerics.checks.examples` does). A module that fails to import (or an entry point
        whose value is not an importable module, or a distribution whose entry points cannot be
        read) contributes one pseudo-claim ``"import.<module>"`` that runs as ERROR with the
        traceback; the other modules still load. Claims a broken module registered before
        failing are kept.
    """
    sources = claim_sources() if modules is None else [
        ClaimSource(module=m, origin="load_all()") for m in modules]
    loading = [s.module for s in sources]
    out: dict[str, Claim] = {}
    for src in sources:
        module = src.module
        if src.error is not None:
            pseudo = _import_error_claim(module, src.error)
            out[pseudo.id] = pseudo
            continue
        try:
            mod = _import(module)
        except Exception:  # noqa: BLE001 - one broken module must not hide the others
            text = (f"claim module {module!r} ({src.origin}) failed to import:\n"
                    + traceback.format_exc())
            for c in _registered_by(module, loading):
                out.setdefault(c.id, c)
            pseudo = _import_error_claim(module, text)
            out[pseudo.id] = pseudo
            continue
        for c in _module_claims(module, mod, loading):
            out.setdefault(c.id, c)
    return out

"""The architecture is checked: import-linter contracts and the private-name rule.

The layers of ``numerics/`` and the independence of the paper folders are import-linter contracts in
``pyproject.toml`` (``lint-imports``, run by ``.ci/run``). These tests check that the contracts hold,
that they have teeth (a deliberate wrong-way import breaks them), and one rule import-linter does not
express: no module imports a private (underscore) name from a module outside its own package.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("numerics", "theory")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``(line, dotted name)`` a module imports: ``from M import n`` gives ``M.n``."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*"]
    return out


def private_import_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports in ``source`` (the text of ``module``) of a private name owned by another package.

    A private part ``_c`` of a dotted name ``a.b._c`` is owned by the package that holds it: ``a.b`` if
    that is a package (``_c`` is a private module or a private name of the package), the package of
    module ``a.b`` if ``a.b`` is a module. Only modules of exactly that package may import it (siblings,
    not subpackages or parents). Names outside :data:`PACKAGES` (third-party libraries) are not judged.
    """
    own = module if is_package else module.rpartition(".")[0]
    bad = []
    for line, name in _imported_names(ast.parse(source), module, is_package):
        parts = name.split(".")
        if parts[0] not in PACKAGES:
            continue
        for i, part in enumerate(parts):
            holder = parts[:i] if (ROOT.joinpath(*parts[:i])).is_dir() else parts[:i - 1]
            if _is_private(part) and ".".join(holder) != own:
                bad.append(f"{module}:{line} imports {name}")
                break
    return bad


def test_no_private_name_is_imported_across_packages():
    bad = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            module = _module_name(path, ROOT)
            bad += private_import_violations(path.read_text(), module, path.name == "__init__.py")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module, source, flagged", [
    ("numerics.references.exact_gaussian", "from numerics.samplers import _check_grid", True),
    ("numerics.papers.ce_guidance.claims", "from numerics.papers.ce_guidance.classifier_error import _hermite",
     False),  # same package: a module may use its siblings' private helpers
    ("numerics.fast.kernels", "from numerics._kernels import lse", True),  # a subpackage is another package
    ("numerics.mixture", "from numerics import _kernels as K_", False),
    ("numerics.samplers", "import numerics.fast._impl", True),
    ("numerics.papers.support.claims", "from numerics.mixture import GaussianMixture", False),
    ("numerics.papers.support.claims", "from ..samplers.claims import _rho", True),
    ("numerics.cli", "from numpy.linalg import _umath_linalg", False),  # third-party: not judged
])
def test_private_import_rule(module, source, flagged):
    """The rule itself: flags a wrong import, passes a right one (the control of the test above)."""
    assert bool(private_import_violations(source, module)) is flagged


def _contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_contracts_cover_the_package():
    """The layers contract names every top-level module and subpackage of ``numerics`` (nothing escapes
    it by being unlisted), and the other contracts are present."""
    cfg = _contracts()
    contracts = {c["type"]: c for c in cfg["contracts"]}
    assert {"layers", "independence", "forbidden"} <= set(contracts)
    listed = {m.strip() for layer in contracts["layers"]["layers"] for m in layer.replace("|", ":").split(":")}
    present = {p.stem if p.is_file() else p.name for p in (ROOT / "numerics").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert present == listed, {"unlisted": sorted(present - listed), "missing": sorted(listed - present)}
    papers = [p.name for p in (ROOT / "numerics" / "papers").iterdir() if (p / "__init__.py").exists()]
    assert len(papers) >= 6 and contracts["independence"]["modules"] == ["numerics.papers.*"]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def linter():
    pytest.importorskip("importlinter", reason="import-linter is in the test extra")
    return _lint_imports


def test_import_contracts_hold(linter):
    res = linter(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("where, line, contract", [
    ("numerics/schedule.py", "import numerics.samplers", "layered"),             # core imports a higher layer
    ("numerics/papers/support/region_targets.py", "import numerics.papers.discrete_kl.channel",
     "independent"),                                                               # one paper imports another
    ("numerics/checks/verdict.py", "import numerics.references.exact_gaussian", "harness"),
    ("theory/forward.py", "import numerics.schedule", "theory never"),
])
def test_a_wrong_way_import_breaks_a_contract(linter, tmp_path, where, line, contract):
    """Negative control: the same contracts on a copy with one wrong-way import must fail."""
    for name in (*PACKAGES, "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / name)
    target = tmp_path / where
    target.write_text(target.read_text() + f"\n{line}  # deliberate wrong-way import\n")
    res = linter(tmp_path)
    assert res.returncode != 0, res.stdout
    broken = res.stdout[res.stdout.find("Broken contracts"):]
    assert contract in broken, res.stdout

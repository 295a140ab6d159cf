"""Source hygiene: no docstring of the package or its tests holds a control character, nor does any file.

A LaTeX command in a docstring that is not a raw string loses its backslash to an escape: ``\\alpha`` becomes
BEL + ``lpha``, ``\\frac`` a form feed + ``rac``, ``\\tfrac`` a tab + ``frac``, ``\\rho`` a carriage return +
``ho``.  The docs then show garbage and nothing fails, so this test does.  Also catches such characters pasted
into a file literally.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for d in ("numerics", "theory", "tests") for p in (ROOT / d).rglob("*.py"))
#: C0 controls other than newline (tabs included: the sources indent with spaces)
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _bad_strings(source: str) -> list[tuple[int, str]]:
    """``(line, excerpt)`` of every docstring (module, class, function) that holds a control character.

    Other strings may spell one on purpose (``"\\x00"`` to test that a NUL in a path is refused)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node, clean=False)
        m = CONTROL.search(doc or "")
        if m:
            out.append((node.body[0].lineno, repr(doc[max(m.start() - 20, 0):m.start() + 20])))
    return out


def test_the_check_has_teeth() -> None:
    assert _bad_strings('def f():\n    """at :math:`\\alpha` and \\frac12"""\n')  # \a and \f escapes
    assert not _bad_strings('def f():\n    r"""at :math:`\\alpha` and \\frac12"""\n')
    assert not _bad_strings('x = "a\\nb\\x00"\n')


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_control_characters_in_strings(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert not CONTROL.search(source.replace("\n", "")), "a control character in the file itself"
    assert _bad_strings(source) == []

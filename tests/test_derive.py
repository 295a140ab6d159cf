"""``guidance-verify derive``: every derivation builds, and proofs_notes/derived is what it writes."""
import pathlib

from numerics.cli import main
from theory.derive import all_derivations

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_derived_notes_are_current(tmp_path):
    assert main(["derive", "--out", str(tmp_path)]) == 0
    committed = ROOT / "proofs_notes" / "derived"
    new = {p.name: p.read_text() for p in tmp_path.glob("*.md")}
    old = {p.name: p.read_text() for p in committed.glob("*.md")}
    assert new.keys() == old.keys()
    stale = [name for name in new if new[name] != old[name]]
    assert not stale, f"regenerate with `guidance-verify derive --out proofs_notes/derived`: {stale}"


def test_every_derivation_ends_in_a_result():
    """Each derivation has steps, and the identity steps named 'difference' or 'residual' are exactly 0."""
    import sympy as sp

    names = [d.name for d in all_derivations()]
    assert {"forward", "tweedie", "guidance", "integrator_ddim", "integrator_ddpm"} <= set(names)
    for der in all_derivations():
        if der.name not in ("forward", "tweedie"):
            continue
        steps = der.build()
        assert steps
        for label, expr in steps:
            if "difference" in label or "residual" in label.lower():
                assert sp.simplify(expr) == 0, (der.name, label)

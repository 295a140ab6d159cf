"""Every claim points to a precise statement that exists, and names realistic controls.

A claim's ``note`` is ``proofs_notes/<file>.md#<anchor>``: the file must exist and the anchor must be
the GitHub slug of one of its headings (lower case, punctuation dropped, spaces to hyphens), so the
link in a report lands on the statement. Every claim declares named controls (no transitional
unnamed one) with one-line descriptions.
"""
import pathlib
import re

import pytest

import numerics.checks as checks

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTE_RE = re.compile(r"^proofs_notes/([\w\-/]+\.md)(?:#([\w\-]+))?$")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*]|\$", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
    out, seen = set(), {}
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
        out.update(re.findall(r'<a (?:id|name)="([\w\-]+)"', line))
    return out


CLAIMS = sorted(checks.load_all().values(), key=lambda c: c.id)


def test_no_pandoc_heading_ids():
    """GitHub renders ``## Title {#id}`` literally (anchor ``title-id``): explicit anchors are
    ``<a id="id"></a>`` lines instead."""
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "proofs_notes").rglob("*.md"))
           for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           if re.match(r"^#{1,6}\s.*\{#[\w\-]+\}\s*$", line)]
    assert not bad, bad


def test_slug_matches_github():
    assert slug("Tweedie's formula (first order)") == "tweedies-formula-first-order"
    assert slug("C6: the `ei_ode` exponent") == "c6-the-ei_ode-exponent"


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_note_anchor_resolves(claim):
    m = NOTE_RE.match(claim.note)
    assert m, f"{claim.id}: note {claim.note!r} is not proofs_notes/<file>.md#<anchor>"
    path = ROOT / "proofs_notes" / m.group(1)
    assert path.is_file(), f"{claim.id}: {path} does not exist"
    assert m.group(2), f"{claim.id}: note {claim.note!r} names no section"
    assert m.group(2) in anchors(path), f"{claim.id}: no heading of {m.group(1)} has anchor #{m.group(2)}"


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_claim_names_its_controls(claim):
    if claim.control == "none":
        assert claim.control_reason.strip()
        return
    assert claim.controls and "legacy_broken" not in claim.controls, \
        f"{claim.id} still uses the unnamed legacy control"


def test_readme_links_to_notes_resolve():
    """Every proofs_notes/<file>.md#anchor that README mentions exists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for file, anchor in re.findall(r"proofs_notes/([\w\-/]+\.md)#([\w\-]+)", text):
        if file == "mypaper.md":  # the "Adding a claim" example of a user's own paper
            continue
        assert anchor in anchors(ROOT / "proofs_notes" / file), f"README: {file}#{anchor}"


def reduced_table() -> str:
    """README's table of the reduced profile's cuts, rendered from the claims' declarations."""
    import json

    out = ["| claim | cut (over the full profile) | why the reduced run still guards the claim |", "|---|---|---|"]
    for c in checks.load_all().values():
        if c.reduced:
            parts = []
            for k, v in c.reduced.items():
                if isinstance(v, dict):  # a nested parameter set: only what changed
                    parts += [f"{k}.{kk} = {json.dumps(vv)}" for kk, vv in v.items() if c.full[k].get(kk) != vv]
                else:
                    parts.append(f"{k} = {json.dumps(v)}")
            cut = ", ".join(parts)
            out.append(f"| `{c.id}` | {cut} | {c.reduced_reason} |")
    return "\n".join(out)


def test_readme_documents_every_reduced_claim():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- reduced:begin -->\n")[1].split("\n<!-- reduced:end -->")[0]
    assert block == reduced_table()

"""The mutation suite (``tests/mutation``): its list is well formed (always run), and, with
``GUIDANCE_VERIFY_MUTATION=1``, every mutant is caught (the whole suite; CI runs it as a separate step:
``GUIDANCE_VERIFY_MUTATION=1 python -m pytest tests/test_mutation.py -k suite``).
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from tests.mutation import run as R
from tests.mutation.mutants import MUTANTS

REPO = Path(__file__).resolve().parents[1]
RUN_SUITE = os.environ.get("GUIDANCE_VERIFY_MUTATION", "") == "1"


@pytest.fixture(scope="module")
def claim_ids() -> list[str]:
    from numerics.checks import load_all

    claims = load_all()
    return [cid for cid, c in claims.items() if c.paper != "import"]


def test_ids_unique_and_enough():
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    assert sum(m.kind == "claims" for m in MUTANTS) >= 25


@pytest.mark.parametrize("m", MUTANTS, ids=lambda m: m.id)
def test_mutant_well_formed(m, claim_ids):
    path = REPO / m.file
    assert m.file.startswith(("numerics/", "theory/")), m.file
    assert not m.file.endswith("claims.py"), "mutants change models and kernels, never the checks"
    assert path.is_file(), m.file
    assert path.read_text().count(m.original) == 1, f"{m.id}: original must occur exactly once in {m.file}"
    assert m.replacement != m.original
    assert m.description and "\n" not in m.description
    assert (m.test is None) != (not m.claims), f"{m.id}: name claim globs or a unit test, not both"
    if m.test is not None:
        assert (REPO / m.test.split("::")[0]).is_file(), m.test
    for glob in m.claims:
        # the harness's selection rule (numerics.checks.runner.select): an fnmatch glob or a bare paper name
        hits = [c for c in claim_ids if fnmatch.fnmatchcase(c, glob) or fnmatch.fnmatchcase(c, glob + ".*")]
        assert hits, f"{m.id}: claim glob {glob!r} selects no claim"
    if m.regen:
        assert m.file.startswith("theory/")


def test_apply_changes_exactly_one_place(tmp_path):
    m = MUTANTS[0]
    root = tmp_path / "copy"
    (root / Path(m.file).parent).mkdir(parents=True)
    (root / m.file).write_text((REPO / m.file).read_text())
    R.apply(m, root)
    text = (root / m.file).read_text()
    assert text.count(m.replacement) >= 1 and m.original not in text
    with pytest.raises(AssertionError):
        R.apply(m, root)  # the original is gone: refused, never silently a no-op


@pytest.mark.slow
@pytest.mark.skipif(not RUN_SUITE, reason="the mutation suite runs when GUIDANCE_VERIFY_MUTATION=1 (a CI step)")
def test_suite_catches_every_mutant():
    jobs = int(os.environ.get("GUIDANCE_VERIFY_MUTATION_JOBS", "2"))
    assert R.main(["--jobs", str(jobs)]) == 0, "some mutant survived: see the table above (a missing check)"

"""The papers: one folder per paper, ``numerics/papers/<paper>/``, with its helpers and its claims.

Each paper's claims are in one module, ``numerics.papers.<paper>.claims``, declared to the claim
harness in ``pyproject.toml`` under the entry-point group ``guidance_verify.claims`` as
``<paper> = "numerics.papers.<paper>.claims"`` (``tests/test_entry_points.py`` checks that every
folder here with a ``claims.py`` is declared). Papers never import each other; what two papers share
belongs in the core modules of ``numerics``.
"""

"""A third-party claim package, as another project would ship one (see tests/test_entry_points.py).

Its claims are in :mod:`gv_demo_claims.claims`; the package declares them to guidance-verify with an
entry point in its own ``pyproject.toml``::

    [project.entry-points."guidance_verify.claims"]
    demo = "gv_demo_claims.claims"
"""

"""Shared test settings.

``GV_SLOW=full`` runs the slow sweeps in full; by default (and in CI) tests marked ``slow`` run a reduced
form of the same sweep, chosen by :func:`slow_size`.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# pytest-xdist's workers set COLUMNS=80 (the controller's width): the CLI's tables would wrap claim ids that the
# tests look for. Without it the CLI writes 160 columns when not on a terminal, as in a single-process run.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.pop("COLUMNS", None)

# The on-disk reference cache (numerics/references/disk_cache.py) is off in the tests, so that no test depends on
# its state or writes into the user's cache; the cache's own tests point it at a temporary directory.
os.environ["GUIDANCE_VERIFY_CACHE_DIR"] = "off"

FULL = os.environ.get("GV_SLOW", "") == "full"


def slow_size(reduced, full):
    """The size a slow sweep uses: ``full`` under ``GV_SLOW=full``, else ``reduced``."""
    return full if FULL else reduced


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)

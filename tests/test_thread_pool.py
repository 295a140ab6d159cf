"""The environment of Numba's thread pool that ``import numerics`` sets (its module docstring): idle OpenMP
workers spin briefly, then sleep, unless the user chose otherwise."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# a parallel reference kernel runs, so the pool starts after the import; OMP_DISPLAY_ENV makes libgomp print the
# wait policy it actually uses when it starts
_PROBE = """
import numpy as np
import numba
import numerics
from numerics import GaussianMixture
gm = GaussianMixture([0.5, 0.5], np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
gm.score(np.zeros((4, 2)), 0.5)
print("LAYER", numba.threading_layer())
"""


def _probe(policy: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    env.update(policy)
    return subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300,
                          check=True)


# libgomp displays 'PASSIVE' for an unset policy too; what differs is the spin count: 3e5 unset, 3000 ours
@pytest.mark.parametrize("policy, expected", [
    ({}, ("PASSIVE", "3000")),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", "30000000000")),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, ("PASSIVE", "0")),
    ({"GOMP_SPINCOUNT": "77"}, ("PASSIVE", "77")),
])
def test_pool_wait_policy(policy, expected):
    """Nothing set: the pool that the first parallel kernel starts spins 3000 times, then sleeps; a policy or
    spin count the user sets is kept as set."""
    run = _probe(policy)
    if "LAYER omp" not in run.stdout:
        pytest.skip(f"Numba's threading layer is not OpenMP here ({run.stdout.strip()!r})")
    assert f"OMP_WAIT_POLICY = '{expected[0]}'" in run.stderr, run.stderr
    assert f"GOMP_SPINCOUNT = '{expected[1]}'" in run.stderr, run.stderr

"""Fast float64 numerics for guided diffusion: exact mixture scores (Numba), samplers and claims.

Time convention everywhere: OU forward time ``t`` with ``alpha_t = exp(-t)``, ``sigma_t^2 = 1 - exp(-2t)``.
Nothing is compiled at import; kernels compile (or load from Numba's cache) on first use.

Numba's parallel kernels run on its OpenMP thread pool.  Unless the environment sets ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT``, an idle pool thread spins about 3000 times (microseconds) and then sleeps
(``OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=3000``, set here before the pool starts).  libgomp's default spins
about 3e5 times after every parallel call, so on a machine whose cores are taken by other work (other
processes, pytest-xdist workers, this package's own noise and job threads) the spinner keeps a core busy and
each small parallel call waits for a descheduled thread; sleeping at once makes back-to-back calls pay a
wake-up each.  Measured (2026-12-06, two cores, a tiny two-thread ``prange`` call, mean of 20000 back to back): quiet,
1.6-1.7 us with 3000 spins or the default, 42-46 us passive (0 spins); with six busy processes beside it,
7-10 us with 3000 spins, 29-66 us passive and 42-1100 us with the default.  README ("Threads") has the
claims' times.
"""
import os as _os

if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    _os.environ["GOMP_SPINCOUNT"] = "3000"

from numerics.grids import time_grid  # noqa: E402 - after the thread pool's environment
from numerics.mixture import GaussianMixture  # noqa: E402
from numerics.samplers import sample  # noqa: E402

__all__ = ["GaussianMixture", "sample", "time_grid"]

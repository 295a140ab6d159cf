"""Fast float64 numerics for guided diffusion: exact mixture scores (Numba), samplers and claims.

Time convention everywhere: OU forward time ``t`` with ``alpha_t = exp(-t)``, ``sigma_t^2 = 1 - exp(-2t)``.
Nothing is compiled at import; kernels compile (or load from Numba's cache) on first use.

Numba's parallel kernels run on its OpenMP thread pool.  Unless the environment says otherwise, the pool's
idle threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, set here before the pool starts; an explicit
``OMP_WAIT_POLICY`` is kept).  libgomp's default spins about 3e5 times before sleeping after every parallel
call, so on a machine whose cores are taken by other work (other processes, pytest-xdist workers, this
package's own noise and job threads) the spinner keeps a core busy and each small parallel call waits for a
descheduled thread.  Measured (2026-12-06, two cores, load average 7-10 from other jobs): a tiny two-thread
``prange`` call took 1.1 ms with the default against 20 us passive, and ``foundations.tweedie_second_order``'s
full stated run 54-98 s wall against 28 s; the quiet-machine comparison is in README ("Threads").
"""
import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from numerics.grids import time_grid  # noqa: E402 - after the thread pool's environment
from numerics.mixture import GaussianMixture  # noqa: E402
from numerics.samplers import sample  # noqa: E402

__all__ = ["GaussianMixture", "sample", "time_grid"]

"""Fast float64 numerics for guided diffusion: exact mixture scores (Numba), samplers and claims.

Time convention everywhere: OU forward time ``t`` with ``alpha_t = exp(-t)``, ``sigma_t^2 = 1 - exp(-2t)``.
Nothing is compiled at import; kernels compile (or load from Numba's cache) on first use.
"""
from numerics.grids import time_grid
from numerics.mixture import GaussianMixture
from numerics.samplers import sample

__all__ = ["GaussianMixture", "sample", "time_grid"]

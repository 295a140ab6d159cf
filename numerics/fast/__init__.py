"""The fast path: one guided DDIM/DDPM step of a Gaussian mixture in a single fused, parallel Numba kernel.

Squared distances in GEMM form (with a per-entry fallback to the direct form where cancellation would cost
more than 6 bits), a vectorised log-sum-exp, and a sparse recombination, fused with the update; the
sampler's ``fast=True`` option and ``guidance-verify bench`` run it.  Modules: :mod:`numerics.fast.kernels`
(every ``@njit`` function, and the method and error bounds in its docstring), :mod:`numerics.fast.mixture`
(:class:`FastMixture`: set-up, validation, work arrays; the step functions), :mod:`numerics.fast.spiked`
(covariances as isotropic part plus spikes).  Importing compiles nothing; the kernels are compiled, or loaded
from Numba's cache, on first use.
"""
from numerics.fast.kernels import stream_update
from numerics.fast.mixture import (GEMM_RATIO, FastMixture, agreement_bound, guided_ddim_step,
                                   guided_ddpm_step, logit_error_bounds)
from numerics.fast.spiked import spiked_factors

__all__ = ["FastMixture", "agreement_bound", "guided_ddim_step", "guided_ddpm_step", "logit_error_bounds", "stream_update",
           "spiked_factors", "GEMM_RATIO"]

r"""The machine's limits for one guided step, measured by the bench itself, and the fraction of each that a step
reaches.

Three limits, each measured in a fraction of a second (best of a few repeats: interference only adds time):

* **FMA peak** :math:`P = \text{threads}\times\text{pipes}\times\text{lanes}\times 2\,f` flop/s. The clock
  :math:`f` comes from a chain of dependent fused multiply-adds, :math:`a \leftarrow ab + c`, which runs at one
  FMA per latency: :math:`f = L\,n/T` for :math:`n` FMAs in :math:`T` seconds with latency :math:`L` =
  :data:`FMA_LATENCY` cycles. ``lanes`` is the float64 vector width the CPU advertises (8 with AVX-512, 4 with
  AVX2/FMA, else 2: what the compiler may use, so a virtual machine that hides AVX-512 counts 4) and ``pipes`` = :data:`FMA_PIPES`; both are assumptions about the core, printed with the
  result.
* **Memory bandwidth** :math:`B`: the bench's own ``stream`` kernel, ``out = c x``, on arrays far larger than the
  caches; 16 bytes per element (read ``x``, write ``out``: the STREAM convention, write-allocate traffic not
  counted).
* **exp throughput** :math:`E`: the fast path's own exponential (:func:`numerics.fast.kernels.exp_neg_array`) on
  one thread, times the number of threads.

The step's necessary work per particle, whatever the implementation (isotropic components, ``K`` of them, in
``d`` dimensions): :math:`4Kd` flops (the products :math:`x\cdot\mu_k` and the recombination
:math:`\sum_k\pi_k\mu_k`, one multiply-add each per component and coordinate), :math:`8d(2 + [\text{DDPM}])` bytes
(read ``x`` and, for DDPM, ``z``; write ``out``) and ``K`` exponentials. At ``t`` ns per particle-step the fractions
are :math:`4Kd/(tP)`, :math:`8d(2+[\text{DDPM}])/(tB)` and :math:`K/(tE)` (times 1e9); the largest one names the
limit that bounds the configuration.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["FMA_LATENCY", "FMA_PIPES", "MachineLimits", "measure_limits", "step_work", "fractions_of_peak",
           "vector_lanes"]

#: Latency of a float64 FMA in cycles (4 on Skylake and later Intel cores and on AMD Zen 2-5).
FMA_LATENCY = 4
#: FMA pipes per core (2 on the x86 server cores of the last decade).
FMA_PIPES = 2


@dataclass(frozen=True)
class MachineLimits:
    """Measured limits (see the module docstring)."""
    clock_hz: float
    lanes: int
    threads: int
    fma_flops: float  #: flop/s over ``threads`` cores
    stream_bytes: float  #: bytes/s
    exp_per_s: float  #: exponentials/s over ``threads`` cores

    def describe(self) -> str:
        return (f"machine limits: FMA peak {self.fma_flops / 1e9:.0f} GFLOP/s ({self.threads} threads x "
                f"{FMA_PIPES} pipes x {self.lanes} lanes x 2 at {self.clock_hz / 1e9:.2f} GHz, the clock from a "
                f"dependent-FMA chain of latency {FMA_LATENCY}); stream copy {self.stream_bytes / 1e9:.1f} GB/s; "
                f"fast-path exp {self.exp_per_s / 1e9:.2f} G/s")


@njit(cache=True, fastmath={"contract"})
def _dependent_fma_chain(a, b, c, n):
    """``n`` dependent fused multiply-adds ``a = a b + c`` (latency-bound: one per :data:`FMA_LATENCY` cycles)."""
    for _ in range(n):
        a = a * b + c
    return a


def vector_lanes(flags: str | None = None) -> int:
    """float64 lanes of the widest FMA vector the CPU advertises in ``/proc/cpuinfo`` (``flags``: that line)."""
    if flags is None:
        flags = ""
        try:
            with open("/proc/cpuinfo") as fh:
                flags = next((ln for ln in fh if ln.startswith("flags")), "")
        except OSError:
            pass
    words = set(flags.split())
    if "avx512f" in words:
        return 8
    if "fma" in words and "avx2" in words:
        return 4
    return 2


def _best(fn, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_limits(threads: int, repeats: int = 5) -> MachineLimits:
    """The three limits of the module docstring for a step on ``threads`` threads (under a second). The clock's
    chain is short (about 2 ms) and repeated 4 x ``repeats`` times, so that one repeat runs without being
    descheduled on a busy machine."""
    from numerics.fast.kernels import exp_neg_array, stream_update

    n = 2_000_000
    t_chain = _best(lambda: _dependent_fma_chain(1.0, 0.999999, 1e-7, n), 4 * repeats)
    clock = FMA_LATENCY * n / t_chain
    lanes = vector_lanes()
    x = np.ones((1 << 21, 8))  # 128 MiB read + 128 MiB written: far beyond any cache
    out = np.empty_like(x)
    t_stream = _best(lambda: stream_update(x, x, False, 0.5, 0.0, out), repeats)
    y = np.linspace(-30.0, 0.0, 1 << 16)
    e = np.empty_like(y)
    t_exp = _best(lambda: exp_neg_array(y, e), repeats)
    return MachineLimits(clock_hz=clock, lanes=lanes, threads=threads,
                         fma_flops=threads * FMA_PIPES * lanes * 2.0 * clock,
                         stream_bytes=16.0 * x.size / t_stream, exp_per_s=threads * y.size / t_exp)


def step_work(K: int, d: int, step: str) -> dict[str, float]:
    """Necessary work of one guided step per particle: ``flops`` 4Kd, ``bytes`` 8d(2 + [DDPM]), ``exps`` K."""
    return {"flops": 4.0 * K * d, "bytes": 8.0 * d * (3 if step == "ddpm" else 2), "exps": float(K)}


def fractions_of_peak(ns: float, K: int, d: int, step: str, limits: MachineLimits) -> tuple[dict[str, float], str]:
    """``({"fma", "mem", "exp"}: fraction of the limit reached at ``ns`` per particle-step, bounding limit)``."""
    w = step_work(K, d, step)
    sec = ns * 1e-9
    frac = {"fma": w["flops"] / sec / limits.fma_flops, "mem": w["bytes"] / sec / limits.stream_bytes,
            "exp": w["exps"] / sec / limits.exp_per_s}
    return frac, max(frac, key=frac.get)

r"""Benchmark of one guided sampler step: Numba fast path vs NumPy broadcast, PyTorch eager, JAX jit, GEMM floor.

One *guided step* = the guided denoiser :math:`D_w = D + w(\sigma_t^2/\alpha_t)\nabla\log p_t(y\mid x)` of a
``K``-component labelled mixture (two classes, ``y = 0``, ``w = 3``) at every particle, then the DDIM update
:math:`x_s = c_x x + c_q D_w` or the DDPM update :math:`+ c_z z` (``z`` pre-drawn, the same array for every
backend, so random-number generation is not timed).  Target: isotropic components :math:`S_k = s_k^2 I`
(:math:`s_k^2 \in [0.05, 0.2]`), means :math:`N(0, I_d)`, particles drawn from :math:`p_t` at ``t = 0.5``,
step to ``s = 0.45``.  float64 throughout, 2 threads (Numba, BLAS via the machine's 2 cores, JAX/XLA, torch).

Reported per configuration: median ns per particle-step over the repeats after :data:`WARMUP` s of warm-up
calls (so other runtimes' idle threads have stopped spinning, see there), the spread
``(max - min) / median``, each backend's time relative to Numba in the same run, and the fractions of the machine's
FMA peak, memory bandwidth and exp throughput that the Numba step reaches, with the one that bounds it
(:mod:`numerics.bench.peaks`: the limits are measured by the bench at its start).  The GEMM floor is the
``(N x d) @ (d x K)`` product alone (``np.matmul`` with a preallocated output).  A second floor is printed
(not written to ``--json``): ``stream``, the update's own memory traffic ``out = c_x x [+ c_z z]``, which no
implementation of the step can avoid; for few components and large ``d`` it is as large as the GEMM floor.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from numerics.atomic import atomic_write_text
from numerics.schedule import alpha_t, sigma2_t

__all__ = ["run_bench", "make_target", "BACKENDS", "CONFIG_FULL", "CONFIG_QUICK", "CONFIG_TINY"]

BACKENDS = ("numba", "numpy", "torch", "jax", "gemm")
STEPS = ("ddim", "ddpm")
T_STEP, S_STEP, LABEL, GUIDANCE = 0.5, 0.45, 0, 3.0
THREADS = 2

CONFIG_FULL = dict(K=(8, 64), d=(2, 16, 256), N=(10_000, 100_000), repeats=7)
CONFIG_QUICK = dict(K=(8, 64), d=(2, 256), N=(10_000,), repeats=3)
CONFIG_TINY = dict(K=(4,), d=(2,), N=(256,), repeats=2)


# --------------------------------------------------------------------------- target and data


def make_target(K: int, d: int, seed: int = 0):
    """The bench mixture (isotropic components, labels ``k % 2``) as a GaussianMixture."""
    from numerics.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    var = rng.uniform(0.05, 0.2, size=K)
    covs = var[:, None, None] * np.eye(d)[None, :, :]
    return GaussianMixture(np.full(K, 1.0 / K), rng.standard_normal((K, d)), covs,
                           labels=np.arange(K) % 2)


def make_particles(gm, n: int, t: float, seed: int = 1):
    """``(x, z)``: ``n`` draws from :math:`p_t` and a standard normal array for DDPM."""
    rng = np.random.default_rng(seed)
    ks = rng.choice(gm.K, size=n, p=gm.weights)  # isotropic components (make_target): sd = sqrt(lambda_0)
    x0 = gm.means[ks] + np.sqrt(gm.evals[ks, -1])[:, None] * rng.standard_normal((n, gm.d))
    alpha, sigma2 = alpha_t(t), sigma2_t(t)
    x = alpha * x0 + np.sqrt(sigma2) * rng.standard_normal(x0.shape)
    return np.ascontiguousarray(x), rng.standard_normal(x0.shape)


# --------------------------------------------------------------------------- backends


def _gemm_form_constants(fm, t: float):
    """Per-time arrays of the GEMM form (shared by the torch and JAX backends): numpy float64."""
    from numerics.schedule import alpha_sigma2

    alpha, sigma2 = alpha_sigma2(t)
    co = fm._consts(alpha, sigma2, "denoiser")
    onehot = np.zeros((fm.R, fm.K))
    onehot[np.arange(fm.R), fm.owner] = 1.0
    mask = (fm.labels == LABEL).astype(np.float64)
    return dict(alpha=alpha, B=fm.B, BT=fm.BT, mu2=fm.mu2, muU=fm.muU, onehot=onehot, mask=mask, **co._asdict())


def _make_numba(gm, step):
    from numerics.fast import FastMixture, guided_ddim_step, guided_ddpm_step

    fm = FastMixture(gm)
    out = {}

    def run(x, z):
        o = out.setdefault(x.shape, np.empty_like(x))
        if step == "ddim":
            return guided_ddim_step(fm, x, T_STEP, S_STEP, LABEL, GUIDANCE, out=o)
        return guided_ddpm_step(fm, x, T_STEP, S_STEP, LABEL, GUIDANCE, z, out=o)
    return run, fm


def _make_numpy(gm, step):
    from numerics.bench.numpy_baseline import NumpyMixture

    nm = NumpyMixture(gm)
    if step == "ddim":
        return lambda x, z: nm.ddim_step(x, T_STEP, S_STEP, LABEL, GUIDANCE)
    return lambda x, z: nm.ddpm_step(x, T_STEP, S_STEP, LABEL, GUIDANCE, z)


def _step_coeffs(step):
    from numerics.generated.integrator_coeffs import ddim_coeffs, ddpm_coeffs

    if step == "ddim":
        cx, cq = ddim_coeffs(T_STEP, S_STEP)
        return cx, cq, 0.0
    return ddpm_coeffs(T_STEP, S_STEP)


def _make_jax(fm, step):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    c = _gemm_form_constants(fm, T_STEP)
    cx, cq, cz = _step_coeffs(step)
    K = fm.K
    arr = {k: jnp.asarray(v) for k, v in c.items() if isinstance(v, np.ndarray)}
    alpha = c["alpha"]

    @jax.jit
    def f(x, z, a):
        XB = x @ a["B"]
        x2 = jnp.sum(x * x, axis=1, keepdims=True)
        v2 = jnp.maximum(x2 - 2 * alpha * XB[:, :K] + alpha**2 * a["mu2"], 0.0)
        p = XB[:, K:] - alpha * a["muU"]
        quad = v2 / a["c0"] - (p * p * a["omega"]) @ a["onehot"]
        ell = a["const"] - 0.5 * quad
        m_in = a["mask"] > 0
        l_in = jnp.where(m_in, ell, -jnp.inf)
        l_out = jnp.where(m_in, -jnp.inf, ell)
        lz_in = jax.nn.logsumexp(l_in, axis=1, keepdims=True)
        lz_out = jax.nn.logsumexp(l_out, axis=1, keepdims=True)
        p_not = jax.nn.sigmoid(lz_out - lz_in)
        beta = jnp.where(m_in, (1 + (GUIDANCE - 1) * p_not) * jnp.exp(l_in - lz_in),
                         -(GUIDANCE - 1) * p_not * jnp.exp(l_out - lz_out))
        G = jnp.concatenate([beta * a["coef_mu"], (beta @ a["onehot"].T) * a["coef_spk"] * p], axis=1)
        D = jnp.sum(beta * a["coef_x"], axis=1, keepdims=True) * x + G @ a["BT"]
        return cx * x + cq * D + cz * z

    def run(x, z):
        return f(x, z, arr).block_until_ready()
    return run, lambda x: jnp.asarray(x)


def _make_torch(fm, step):  # pragma: no cover - torch is not installed on the development machine
    import torch

    torch.set_num_threads(THREADS)
    c = _gemm_form_constants(fm, T_STEP)
    cx, cq, cz = _step_coeffs(step)
    K = fm.K
    a = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in c.items() if isinstance(v, np.ndarray)}
    alpha = c["alpha"]
    m_in = a["mask"] > 0
    ninf = torch.tensor(-np.inf, dtype=torch.float64)

    def run(x, z):
        with torch.no_grad():
            XB = x @ a["B"]
            x2 = (x * x).sum(dim=1, keepdim=True)
            v2 = torch.clamp(x2 - 2 * alpha * XB[:, :K] + alpha**2 * a["mu2"], min=0.0)
            p = XB[:, K:] - alpha * a["muU"]
            quad = v2 / a["c0"] - (p * p * a["omega"]) @ a["onehot"]
            ell = a["const"] - 0.5 * quad
            l_in = torch.where(m_in, ell, ninf)
            l_out = torch.where(m_in, ninf, ell)
            lz_in = torch.logsumexp(l_in, dim=1, keepdim=True)
            lz_out = torch.logsumexp(l_out, dim=1, keepdim=True)
            p_not = torch.sigmoid(lz_out - lz_in)
            beta = torch.where(m_in, (1 + (GUIDANCE - 1) * p_not) * torch.exp(l_in - lz_in),
                               -(GUIDANCE - 1) * p_not * torch.exp(l_out - lz_out))
            G = torch.cat([beta * a["coef_mu"], (beta @ a["onehot"].T) * a["coef_spk"] * p], dim=1)
            D = (beta * a["coef_x"]).sum(dim=1, keepdim=True) * x + G @ a["BT"]
            return cx * x + cq * D + cz * z
    return run, lambda x: torch.from_numpy(x)


def _make_stream(gm, step):
    """The update's own memory traffic, ``out = c_x x [+ c_z z]`` (Numba, 2 threads): the floor for large ``d``
    and few components, where the products are cheap and reading ``x, z`` and writing ``out`` dominate."""
    from numerics.fast import stream_update

    cx, _, cz = _step_coeffs(step)
    out = {}

    def run(x, z):
        o = out.setdefault(x.shape, np.empty_like(x))
        stream_update(x, z, step == "ddpm", cx, cz, o)
        return o
    return run


def _make_gemm(fm):
    MuT = np.ascontiguousarray(fm.mu.T)
    out = {}

    def run(x, z):
        o = out.setdefault(x.shape[0], np.empty((x.shape[0], fm.K)))
        return np.matmul(x, MuT, out=o)
    return run


# --------------------------------------------------------------------------- timing


#: Warm-up time before a backend is timed: its calls are repeated until this much has passed.  Each runtime's
#: worker threads (OpenBLAS, the OpenMP of Numba and of torch, XLA's pool) busy-wait for a while after their
#: last task (OpenBLAS: 2^28 cycles); on two cores they steal the CPU from whichever backend runs next
#: (measured: a Numba step right after a 2-thread BLAS call was much slower than with
#: ``OPENBLAS_NUM_THREADS=1``, and backends timed in turn swung several-fold).  A sampler loop runs one runtime
#: only, so the previous backend's threads are left to go idle first.  (Sleeping instead made every backend
#: slower, thread wake-up included: the pool must be hot, as it is inside a sampler loop.)
WARMUP = 0.3


def _time(fn, x, z, repeats: int, budget: float) -> tuple[float, float, int]:
    """``(median seconds, spread, repeats)`` after :data:`WARMUP` s of warm-up calls (at least one); fewer
    repeats (>= 3) past ``budget`` s."""
    t_start = time.perf_counter()
    first = None
    while first is None or time.perf_counter() - t_start < WARMUP:
        t0 = time.perf_counter()
        fn(x, z)
        first = time.perf_counter() - t0
    if first * repeats > budget:
        repeats = max(3, min(repeats, int(budget / max(first, 1e-9))))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x, z)
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    return med, (max(ts) - min(ts)) / med, repeats


def _available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _set_threads():
    import numba

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))


def run_bench(config: dict, backends=BACKENDS, budget: float = 4.0, log=print) -> list[dict]:
    """Run the grid of ``config`` and return the records (also printed through ``log``). The Numba records carry
    the fractions of the machine's limits that the step reaches (:mod:`numerics.bench.peaks`)."""
    from numerics.bench.peaks import fractions_of_peak, measure_limits

    _set_threads()
    limits = measure_limits(THREADS) if "numba" in backends else None
    if limits is not None:
        log(limits.describe())
    have = {b: (b not in ("torch", "jax")) or _available(b) for b in backends}
    for b in backends:
        if not have[b]:
            log(f"  ({b}: not importable, skipped)")
    records = []
    for K in config["K"]:
        for d in config["d"]:
            gm = make_target(K, d)
            for N in config["N"]:
                x, z = make_particles(gm, N, T_STEP)
                floor = None
                if "gemm" in backends:
                    floor = _measure("gemm", gm, "ddim", x, z, config["repeats"], budget)
                for step in STEPS:
                    res = {}
                    for b in backends:
                        if not have[b] or b == "gemm":
                            continue
                        try:
                            res[b] = _measure(b, gm, step, x, z, config["repeats"], budget)
                        except Exception as exc:  # a backend failing must not stop the others
                            log(f"  {b}: error {type(exc).__name__}: {exc}")
                    if floor is not None:
                        res["gemm"] = floor
                    stream = _measure("stream", gm, step, x, z, config["repeats"], budget) if floor else None
                    peak = (fractions_of_peak(res["numba"][0], K, d, step, limits)
                            if limits is not None and "numba" in res else None)
                    _print_row(log, K, d, N, step, res, stream, peak)
                    for b, (ns, spread, reps) in res.items():
                        rec = dict(K=K, d=d, N=N, step=step, backend=b, ns_per_particle_step=ns, spread=spread,
                                   repeats=reps)
                        if b == "numba" and peak is not None:
                            rec.update(fraction_of_peak=peak[0], bound=peak[1])
                        records.append(rec)
    return records


def _measure(b, gm, step, x, z, repeats, budget):
    if b == "numba":
        fn, fm = _make_numba(gm, step)
        med, spread, reps = _time(fn, x, z, repeats, budget)
        info = fm.last_info
        _measure.fallback = int(info[:, 0].sum())
        return med / x.shape[0] * 1e9, spread, reps
    if b == "numpy":
        fn = _make_numpy(gm, step)
    elif b == "stream":
        fn = _make_stream(gm, step)
    elif b == "gemm":
        from numerics.fast import FastMixture

        fn = _make_gemm(FastMixture(gm))
    elif b == "jax":
        from numerics.fast import FastMixture

        fn, conv = _make_jax(FastMixture(gm), step)
        x, z = conv(x), conv(z)
    else:
        from numerics.fast import FastMixture

        fn, conv = _make_torch(FastMixture(gm), step)
        x, z = conv(x), conv(z)
    med, spread, reps = _time(fn, x, z, repeats, budget)
    return med / x.shape[0] * 1e9, spread, reps


_measure.fallback = 0


def _print_row(log, K, d, N, step, res, stream=None, peak=None):
    nb = res.get("numba", (float("nan"),))[0]
    parts = []
    for b, val in [(b, res.get(b)) for b in BACKENDS] + [("stream", stream)]:
        if val is not None:
            ns, spread, _ = val
            rel = f"{ns / nb:.2f}x" if nb == nb and b != "numba" else ""
            parts.append(f"{b} {ns:9.1f} ±{100 * spread:3.0f}% {rel:>7}")
    if peak is not None:
        frac, bound = peak
        parts.append("numba of peak: " + " ".join(f"{k} {100 * v:4.1f}%" for k, v in frac.items())
                     + f" (bound: {bound})")
    log(f"K={K:<3d} d={d:<4d} N={N:<7d} {step:4s} | " + " | ".join(parts)
        + f" | fallbacks {_measure.fallback}")


# --------------------------------------------------------------------------- compile and import times

_COMPILE_SCRIPT = r"""
import sys, time, numpy as np
from numerics.bench.timing import make_target, make_particles
from numerics.fast import FastMixture, guided_ddim_step, guided_ddpm_step
from numerics.mixture import GaussianMixture
if sys.argv[1] == "lanes":  # isotropic, d <= LANES_DIM: guided_step_lanes
    gm = make_target(8, 2)
else:  # full covariances: guided_step_rows
    A = np.random.default_rng(0).standard_normal((8, 16, 16)) / 4.0
    gm = GaussianMixture(np.full(8, 0.125), np.zeros((8, 16)), np.einsum("kij,klj->kil", A, A) + 0.05 * np.eye(16),
                         labels=np.arange(8) % 2)
x, z = np.random.default_rng(1).standard_normal((2, 64, gm.d))
fm = FastMixture(gm)
assert fm._lanes() == (sys.argv[1] == "lanes")
t2 = time.perf_counter()
guided_ddim_step(fm, x, 0.5, 0.45, 0, 3.0); guided_ddpm_step(fm, x, 0.5, 0.45, 0, 3.0, z)
print(time.perf_counter() - t2)  # one kernel per path: products, recombination form are runtime arguments
"""

_IMPORT_SCRIPT = ("import time; t0 = time.perf_counter(); import numerics; "
                  "print(time.perf_counter() - t0)")

#: The two step kernels, each timed in processes of its own: a run compiles (or loads) only the one it uses.
COMPILE_PATHS = ("lanes", "rows")


def _subprocess_seconds(script: str, env: dict, *args: str) -> float:
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                         timeout=600, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def compile_times(cold: bool = True) -> dict:
    """Per path (:data:`COMPILE_PATHS`: the lanes kernel on an isotropic ``d = 2`` mixture, the per-particle
    kernel on a full-covariance ``d = 16`` one), the first DDIM and DDPM steps of a fresh process with an empty
    ``NUMBA_CACHE_DIR`` (compile, ``compile_cold_s[path]``) and again from the cache it filled
    (``compile_cached_s[path]``); and the import time.

    With ``cold=False`` the cached load is timed against the current cache (filled first if needed) and
    ``compile_cold_s`` is ``None``: the cold compiles are too long for ``bench --quick``."""
    first, warm = ({} if cold else None), {}
    for path in COMPILE_PATHS:
        env = dict(os.environ)
        with tempfile.TemporaryDirectory(prefix="gv-numba-cache-") as cache:
            if cold:
                env["NUMBA_CACHE_DIR"] = cache
                first[path] = _subprocess_seconds(_COMPILE_SCRIPT, env, path)
            else:
                _subprocess_seconds(_COMPILE_SCRIPT, env, path)  # fills the cache if it was empty
            warm[path] = _subprocess_seconds(_COMPILE_SCRIPT, env, path)
    imp = statistics.median(_subprocess_seconds(_IMPORT_SCRIPT, dict(os.environ)) for _ in range(3))
    return {"compile_cold_s": first, "compile_cached_s": warm, "import_numerics_s": imp}


# --------------------------------------------------------------------------- entry point


def machine_header() -> str:
    """One line describing the machine: cores, CPU model, load, the numba / numpy / jax / torch versions, and
    ``OPENBLAS_CORETYPE`` when the environment pins OpenBLAS's kernels."""
    import importlib.metadata as md

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    vers = []
    for pkg in ("numba", "numpy", "jax", "torch"):
        try:
            vers.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            vers.append(f"{pkg} -")
    try:
        load = "load avg %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "load avg ?"
    # OpenBLAS picks its kernels by CPU unless told (a pinned core type changes the GEMM floor and the BLAS-bound
    # rows, e.g. Haswell = AVX2 kernels on an AVX-512 machine)
    core = os.environ.get("OPENBLAS_CORETYPE")
    blas = f"; OPENBLAS_CORETYPE={core}" if core else ""
    return f"machine: {os.cpu_count()} CPUs (nproc), {model}; {load}; " + ", ".join(vers) + blas


def suite_times(log=print) -> dict:
    """Wall time of ``guidance-verify run`` (quick profile) with an empty Numba cache, then with it filled."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="gv-suite-") as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba-cache"), MPLBACKEND="Agg")
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "numerics.cli", "run", "--out", os.path.join(tmp, label)],
                                 env=env, capture_output=True, text=True, timeout=3600)
            out[f"suite_{label}_s"] = time.perf_counter() - t0
            if res.returncode != 0:
                log(f"  guidance-verify run ({label}) exited {res.returncode}: "
                    f"{(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return out



def main_bench(quick: bool = False, tiny: bool = False, json_path: str | None = None,
               compile_timing: bool = True, suite_timing: bool = False, log=print) -> int:
    """The ``bench`` subcommand; returns the exit status."""
    config = CONFIG_TINY if tiny else CONFIG_QUICK if quick else CONFIG_FULL
    log(machine_header())
    log(f"guided step benchmark ({'tiny' if tiny else 'quick' if quick else 'full'}): float64, "
        f"{THREADS} threads, t={T_STEP} -> s={S_STEP}, w={GUIDANCE}; ns per particle-step "
        f"(median ± (max-min)/median), ratio = backend / numba")
    records = run_bench(config, budget=1.0 if tiny else 4.0, log=log)
    if compile_timing and not tiny:
        ct = compile_times(cold=not quick)

        def per_path(times):
            return ", ".join(f"{p} {times[p]:.2f} s" for p in COMPILE_PATHS)
        cold = ("not timed with --quick (the full run times it)" if ct["compile_cold_s"] is None
                else per_path(ct["compile_cold_s"]))
        log(f"numba fast-path compile, per path (a run compiles the one it uses): cold {cold}; from cache "
            f"{per_path(ct['compile_cached_s'])}; import numerics: {ct['import_numerics_s'] * 1e3:.0f} ms")
    if suite_timing:
        st = suite_times(log=log)
        log(f"guidance-verify run (quick profile): cold {st['suite_cold_s']:.0f} s (empty Numba cache), "
            f"warm {st['suite_warm_s']:.0f} s")
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(records, indent=1))
        log(f"wrote {len(records)} records to {json_path}")
    return 0

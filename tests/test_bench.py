"""Fast guided path (GEMM form), NumPy-broadcast reference and the ``bench`` command.

Bounds used below (u = 2^-53, gamma_n = n u / (1 - n u)):

* logits: |l_gemm - l_direct| <= E_gemm + E_direct, the first-order bounds of
  :func:`numerics.fast.mixture.logit_error_bounds` (GEMM form: gamma_{d+4} S^2 / (2 c0) with
  S = |x| + alpha |mu_k|; direct form: gamma_{d+4} (|v|^2 + 2|v| S) / (2 c0)), doubled for the
  first-order neglect.
* mixture averages: a logit error eps perturbs the weights relatively by <= 2 eps, hence the average
  Q = sum pi_k q_k by <= 2 eps max_k |q_k - Q|; plus the rounding of the sum, gamma_{n}(max_k |q_k|)
  with n = d + K + R + 8.  For two float64 implementations the bound is the sum of both:
  tol = 2 (2 eps_max spread + gamma_n scale), with eps_max the largest GEMM-form logit bound among
  components of non-negligible weight (the direct form's is smaller).
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from numerics import GaussianMixture
from numerics.fast import (GEMM_RATIO, FastMixture, agreement_bound, guided_ddim_step, guided_ddpm_step,
                           logit_error_bounds)
from numerics.bench.numpy_baseline import NumpyMixture

U = 2.0**-53


def gamma(n):
    return n * U / (1 - n * U)


def _mixture(rng, K=6, d=5, scale=2.0):
    """Full, low-rank, isotropic and atom components, two classes."""
    A = rng.standard_normal((K, d, 2))
    covs = np.einsum("kij,klj->kil", A, A) * 0.5
    covs[0] = 0.0                      # atom
    covs[1] = 0.3 * np.eye(d)          # isotropic
    covs[2] += 0.1 * np.eye(d)         # full rank, spiked
    w = rng.random(K) + 0.2
    return GaussianMixture(w / w.sum(), scale * rng.standard_normal((K, d)), covs, labels=np.arange(K) % 2)


def _iso_mixture(rng, K=6, d=5, scale=2.0):
    """Isotropic components (one an atom), two classes: no spikes, so small ``d`` takes the lanes path."""
    var = rng.uniform(0.05, 0.5, K)
    var[0] = 0.0
    w = rng.random(K) + 0.2
    return GaussianMixture(w / w.sum(), scale * rng.standard_normal((K, d)), var[:, None, None] * np.eye(d),
                           labels=np.arange(K) % 2)


MIXTURES = {"spiked": _mixture, "iso": _iso_mixture, "iso12": lambda rng: _iso_mixture(rng, d=12)}


def _tol(fm, gm, x, t, quantity):
    """The bound of the module docstring (:func:`numerics.fast.agreement_bound`) and the reference value."""
    return agreement_bound(fm, gm, x, t, quantity), getattr(gm, quantity)(x, t)


@pytest.mark.parametrize("kind", ["spiked", "iso", "iso12"])  # per particle; lanes with loops; lanes with BLAS
@pytest.mark.parametrize("t", [1e-3, 0.05, 0.5, 3.0])
@pytest.mark.parametrize("quantity", ["score", "denoiser"])
def test_fast_and_numpy_agree_with_mixture(rng, t, quantity, kind):
    gm = MIXTURES[kind](rng)
    x = 2.0 * rng.standard_normal((300, gm.d))
    x[:50] = np.exp(-t) * gm.means[rng.integers(0, gm.K, 50)] + 1e-3 * rng.standard_normal((50, gm.d))
    fm, nm = FastMixture(gm), NumpyMixture(gm)
    assert fm._lanes() == (kind != "spiked")
    tol, ref = _tol(fm, gm, x, t, quantity)
    for impl in (fm, nm):
        got = getattr(impl, quantity)(x, t)
        assert np.all(np.abs(got - ref) <= tol), (type(impl).__name__, np.max(np.abs(got - ref) / tol))


@pytest.mark.parametrize("kind", ["spiked", "iso", "iso12"])
@pytest.mark.parametrize("w", [0.0, 0.5, 3.0])  # w < 1 flips the sign of the other class's weights
@pytest.mark.parametrize("t", [0.05, 0.7])
def test_guided_quantities_and_steps(rng, t, w, kind):
    gm = MIXTURES[kind](rng)
    x = 1.5 * rng.standard_normal((200, gm.d))
    fm, nm = FastMixture(gm), NumpyMixture(gm)
    alpha, sigma2 = np.exp(-t), -np.expm1(-2 * t)
    y = 1
    g = gm.guidance_vector(x, t, y)
    D_ref = gm.denoiser(x, t) + w * (sigma2 / alpha) * g
    s_ref = gm.score(x, t) + w * g
    tol_D, _ = _tol(fm, gm, x, t, "denoiser")
    tol_s, _ = _tol(fm, gm, x, t, "score")
    # the guidance vector adds w (sigma2/alpha) |g| relative rounding (its own p_not and difference)
    tol_D = tol_D * (1 + w) + gamma(gm.d + 8) * w * (sigma2 / alpha) * np.abs(g).max(axis=1, keepdims=True)
    tol_s = tol_s * (1 + w) + gamma(gm.d + 8) * w * np.abs(g).max(axis=1, keepdims=True)
    for impl in (fm, nm):
        assert np.all(np.abs(impl.guided_denoiser(x, t, y, w) - D_ref) <= tol_D)
        assert np.all(np.abs(impl.guided_score(x, t, y, w) - s_ref) <= tol_s)
    from numerics.generated.integrator_coeffs import ddim_coeffs, ddpm_coeffs

    s = 0.8 * t
    z = rng.standard_normal(x.shape)
    cx, cq = ddim_coeffs(t, s)
    assert np.all(np.abs(guided_ddim_step(fm, x, t, s, y, w) - (cx * x + cq * D_ref)) <= abs(cq) * tol_D + 4 * U * np.abs(x))
    cx, cq, cz = ddpm_coeffs(t, s)
    want = cx * x + cq * D_ref + cz * z
    assert np.all(np.abs(guided_ddpm_step(fm, x, t, s, y, w, z) - want) <= abs(cq) * tol_D + 4 * U * (np.abs(x) + np.abs(z)))
    assert np.allclose(nm.ddpm_step(x, t, s, y, w, z), want, rtol=0, atol=float(np.max(abs(cq) * tol_D)) + 1e-15)


@pytest.mark.parametrize("dense_dim", [0, 10_000])
def test_kernel_and_blas_products_agree(rng, monkeypatch, dense_dim):
    """In-kernel products vs BLAS products, with dense and with sparse recombination, all within the bound."""
    import numerics.fast.mixture as kf

    gm = _mixture(rng)
    x = rng.standard_normal((300, gm.d))
    fm = FastMixture(gm)
    a = fm.guided_denoiser(x, 0.4, 0, 2.0)
    tol, _ = _tol(fm, gm, x, 0.4, "denoiser")
    monkeypatch.setattr(kf, "DENSE_DIM", dense_dim)
    w = 2.0
    for products in ("loops", "dgemm", "blas"):
        b = FastMixture(gm, products=products).guided_denoiser(x, 0.4, 0, w)
        assert np.all(np.abs(a - b) <= (1 + w) * tol)  # guided: (1 + w) x the two-implementation bound
    with pytest.raises(ValueError, match="products"):
        FastMixture(gm, products="gpu")


def test_exp_neg_accuracy():
    """The vectorisable exp of the fast path is within 2 ulp of math.exp on its whole domain."""
    import math

    from numerics.fast.kernels import EXP_LO, exp_neg_array

    rng = np.random.default_rng(5)
    y = np.concatenate([rng.uniform(EXP_LO, 0.0, 200_000), np.linspace(EXP_LO, 0.0, 100_001),
                        [0.0, -0.0, EXP_LO, -5e-324, -1e-300, -np.log(2) / 2, np.log(2) / 2 - 30 * np.log(2)]])
    y = y[(y >= EXP_LO) & (y <= 0.0)]
    got = np.empty_like(y)
    exp_neg_array(y, got)
    want = np.array([math.exp(v) for v in y])
    ulp = np.abs(got - want) / np.spacing(want)
    assert ulp.max() <= 2.0, ulp.max()
    assert got[y == 0.0].tolist() == [1.0] * int(np.sum(y == 0.0))


def test_tiled_products_bound_and_edges(rng):
    """The register-tiled products and |x|^2 are within gamma_d sum_l |x_l b_l| of the exact sums (reference:
    math.fsum of the rounded products, itself within 2u of it), and every entry is bit-identical however the
    particles are grouped (ragged tiles of 1-3 particles or columns repeat the last one)."""
    import math

    from numerics.fast.kernels import _chunk_products

    for d in (1, 3, 8, 17, 40):
        for C in (1, 2, 3, 5, 9):
            x = rng.standard_normal((11, d)) * 10.0 ** rng.integers(-3, 4, (11, 1))
            BT = rng.standard_normal((C, d))
            full, M = np.empty((11, C)), np.empty((11, 3))
            _chunk_products(x, 0, 11, BT, full, M)
            exact = np.array([[math.fsum(x[i] * BT[c]) for c in range(C)] for i in range(11)])
            bound = (gamma(d) + 2 * U) * (np.abs(x) @ np.abs(BT).T)
            assert np.all(np.abs(full - exact) <= bound), (d, C)
            x2 = np.array([math.fsum(x[i] * x[i]) for i in range(11)])
            assert np.all(np.abs(M[:, 2] - x2) <= (gamma(d) + 2 * U) * x2), (d, C)
            for lo, hi in ((0, 1), (3, 5), (4, 11), (10, 11)):
                part, Mp = np.empty((hi - lo, C)), np.empty((hi - lo, 3))
                _chunk_products(x, lo, hi, BT, part, Mp)
                assert np.array_equal(part, full[lo:hi]), (d, C, lo, hi)
                assert np.array_equal(Mp[:, 2], M[lo:hi, 2]), (d, C, lo, hi)
    # control: a dropped coordinate is far outside the bound
    x = rng.standard_normal((5, 17))
    BT = rng.standard_normal((3, 17))
    got = np.empty((5, 3))
    _chunk_products(x[:, :16].copy(), 0, 5, BT[:, :16].copy(), got, np.empty((5, 3)))
    assert not np.all(np.abs(got - x @ BT.T) <= (gamma(17) + 2 * U) * (np.abs(x) @ np.abs(BT).T))


def test_exp_nonpos_and_group_factors():
    """e^a for a <= 0 without a library call: within 10 ulp down to 2 EXP_LO (two factors of <= 2 ulp each,
    i.e. <= 4u relative, and one rounding), then held at e^(2 EXP_LO) < 2^-130.  The guidance factors built on it
    match the textbook p_not = 1 / (1 + (z_in / z_out) e^Delta) (mpmath, from the same float m_in, m_out) to
    first order: e is within eps_e = (9 + |Delta|) u relative (9u as above, |Delta| u from rounding
    Delta = m_in - m_out, as with any exp of it), p_not within eps_p = eps_e + 3u, g_out within eps_p + 2u, and
    g_in within ((eps_p + 2u) |(w-1) p| + 2u |1 + (w-1) p|) / z_in; beyond |Delta| = 2 |EXP_LO|, both are
    the correctly rounded ones (p_not = 1), or g_in is and |g_out| <= |w - 1| 2^-130 (p_not < 2^-120)."""
    import math

    import mpmath

    from numerics.fast.kernels import EXP_LO, _exp_nonpos, _group_factors

    rng = np.random.default_rng(11)
    a = np.concatenate([rng.uniform(2 * EXP_LO, 0.0, 3000), [0.0, EXP_LO, 2 * EXP_LO, EXP_LO * (1 + 2**-52)]])
    for v in a:
        got, want = _exp_nonpos(v), math.exp(v)
        assert abs(got - want) <= 10 * np.spacing(want), v
    for v in (2 * EXP_LO - 1e-9, -1e3, -np.inf, np.nan):
        assert _exp_nonpos(v) == _exp_nonpos(2 * EXP_LO) < 2.0**-130
    def within(g_in, g_out, z_in, z_out, m_in, m_out, w):
        with mpmath.workprec(113):
            p = 1 / (1 + mpmath.mpf(z_in) / z_out * mpmath.exp(mpmath.mpf(m_in) - m_out))
        want_in, want_out = (1 + (w - 1) * p) / z_in, -(w - 1) * p / z_out
        if abs(m_in - m_out) <= 2 * abs(EXP_LO):
            eps_p = (9 + abs(m_in - m_out)) * U + 3 * U
            bound_in = ((eps_p + 2 * U) * abs((w - 1) * p) + 2 * U * abs(1 + (w - 1) * p)) / z_in
            return abs(g_out - want_out) <= (eps_p + 2 * U) * abs(want_out) and abs(g_in - want_in) <= bound_in
        if m_in > m_out:  # p_not below 2^-120: g_in as if p_not were 0
            return abs(g_in - want_in) <= 2 * U * abs(want_in) and abs(g_out) <= abs(w - 1) * 2.0**-130
        # p_not rounds to 1
        return abs(g_in - want_in) <= 2 * U * abs(want_in) and abs(g_out - want_out) <= 2 * U * abs(want_out)

    for _ in range(3000):
        z_in, z_out = rng.uniform(1.0, 64.0, 2)
        dm = rng.uniform(-2.2, 2.2) * abs(EXP_LO) * rng.choice([1.0, 1e-3])
        m_out = rng.uniform(-50.0, 50.0)
        m_in = m_out + dm
        w = rng.choice([-1.0, 0.5, 3.0, 50.0])
        assert within(*_group_factors(z_in, z_out, m_in, m_out, w), z_in, z_out, m_in, m_out, w), (dm, w)
    assert _group_factors(2.0, 0.0, 0.0, -np.inf, 3.0) == (0.5, 0.0)  # the other class has no mass
    # control: the same check rejects the factors of Delta with its sign flipped
    assert not within(*_group_factors(2.0, 3.0, 0.0, -1.0, 3.0), 2.0, 3.0, -1.0, 0.0, 3.0)


@pytest.mark.parametrize("products", ["loops"])
@pytest.mark.parametrize("d", [5, 37])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunking_and_out_argument(rng, monkeypatch, chunk, d, products):
    """With the loop products, results do not depend on the chunk size (bit for bit; d = 37 for ragged
    register tiles over coordinates and columns); ``out`` is filled in place and must not overlap ``x``.
    (In-kernel BLAS blocks may round differently for other block sizes: ``test_products_do_not_depend_on_threads``.)"""
    import numerics.fast.mixture as kf

    gm = _mixture(rng, d=d)
    x = rng.standard_normal((101, gm.d))
    z = rng.standard_normal((101, gm.d))
    ref = guided_ddpm_step(FastMixture(gm, products=products), x, 0.4, 0.3, 1, 2.5, z)
    monkeypatch.setattr(kf, "CHUNK", chunk)
    fm = FastMixture(gm, products=products)
    out = np.empty_like(x)
    assert guided_ddpm_step(fm, x, 0.4, 0.3, 1, 2.5, z, out=out) is out
    assert np.array_equal(out, ref)
    with pytest.raises(ValueError, match="out"):
        guided_ddpm_step(fm, x, 0.4, 0.3, 1, 2.5, z, out=x)


def test_gemm_form_within_derived_bound_and_fallback(rng):
    """GEMM vs direct logits obey the derived bound; the bound is not vacuous; the fallback triggers."""
    d, K = 64, 4
    means = 30.0 * rng.standard_normal((K, d))   # large |mu|: strong cancellation near alpha mu
    gm = GaussianMixture(np.full(K, 0.25), means, np.zeros((K, d, d)), labels=[0, 1, 0, 1])
    fm = FastMixture(gm)
    t = 1e-4
    x = np.exp(-t) * means[rng.integers(0, K, 400)] + 1e-2 * rng.standard_normal((400, d))
    Lg, used_g = fm.logits(x, t, "gemm")
    Ld, used_d = fm.logits(x, t, "direct")
    assert not used_g.any() and used_d.all()
    Eg, Ed = logit_error_bounds(fm, x, t)
    err = np.abs(Lg - Ld)
    assert np.all(err <= 2 * (Eg + Ed))
    near = Ld > Ld.max(axis=1, keepdims=True) - 1.0   # the heaviest component of each particle
    assert np.max(err[near] / Eg[near]) > 1e-4     # the bound is attained to within 4 orders: not vacuous
    assert np.median(err[near]) > 10 * np.median(Ed[near])  # the cancellation is real: beyond the direct bound
    La, used = fm.logits(x, t, "auto")
    assert used[near].all()                        # the fallback recomputes exactly those entries
    S = np.linalg.norm(x, axis=1)[:, None] + np.exp(-t) * fm.mun[None]
    assert np.all(np.abs(La - Ld) <= 2 * (np.where(used, Ed, Eg) + Ed))
    # where the GEMM form is kept, its bound is within GEMM_RATIO of the direct form's (plus the floor)
    sigma2 = -np.expm1(-2 * t)
    keep = ~used
    gam = gamma(d + 4)
    assert np.all(0.5 * gam * S[keep] ** 2 / sigma2 <= GEMM_RATIO * (Ed[keep] + gam) + 1e-300)
    # and at moderate t nothing falls back
    x2 = np.exp(-0.5) * means[rng.integers(0, K, 100)] + np.sqrt(-np.expm1(-1.0)) * rng.standard_normal((100, d))
    assert not fm.logits(x2, 0.5, "auto")[1].any()


def test_bad_input(rng):
    gm = _mixture(rng)
    fm = FastMixture(gm)
    x = rng.standard_normal((5, gm.d))
    with pytest.raises(ValueError, match="x"):
        fm.denoiser(x[:, :2], 0.3)
    with pytest.raises(ValueError, match="s"):
        guided_ddim_step(fm, x, 0.3, 0.5, 0, 1.0)
    with pytest.raises(ValueError, match="z"):
        guided_ddpm_step(fm, x, 0.3, 0.2, 0, 1.0, np.zeros((4, gm.d)))
    # non-finite input is detected inside the kernel (no separate pass), then named
    for products in ("loops", "dgemm"):
        fm = FastMixture(gm, products=products)
        for bad, msg in ((np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (1e200, "overflows")):
            xb = x.copy()
            xb[3, 1] = bad
            with pytest.raises(ValueError, match=msg):
                fm.guided_denoiser(xb, 0.3, 0, 2.0)
        assert np.all(np.isfinite(fm.guided_denoiser(x, 0.3, 0, 2.0)))


def test_bench_cli_tiny_writes_records(tmp_path):
    from numerics.cli import main

    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--tiny", "--json", str(path)]) == 0
    recs = json.loads(path.read_text())
    assert recs, "no records"
    keys = {"K", "d", "N", "step", "backend", "ns_per_particle_step"}
    for r in recs:
        assert keys <= set(r)
        assert r["step"] in ("ddim", "ddpm")
        assert r["backend"] in ("numba", "numpy", "torch", "jax", "gemm")
        assert np.isfinite(r["ns_per_particle_step"]) and r["ns_per_particle_step"] > 0
    got = {(r["step"], r["backend"]) for r in recs}
    assert {("ddim", "numba"), ("ddpm", "numba"), ("ddim", "numpy"), ("ddim", "gemm")} <= got
    for r in recs:  # the Numba rows carry the fractions of the machine's limits and the bounding one
        if r["backend"] == "numba":
            assert set(r["fraction_of_peak"]) == {"fma", "mem", "exp"} and r["bound"] in r["fraction_of_peak"]
            assert all(0 < v < 10 for v in r["fraction_of_peak"].values())


def _limits(fma=1e11, mem=1e10, exp=1e9):
    from numerics.bench.peaks import MachineLimits

    return MachineLimits(clock_hz=3e9, lanes=4, threads=2, fma_flops=fma, stream_bytes=mem, exp_per_s=exp)


@pytest.mark.parametrize("K, d, step, ns, expect, bound", [
    # 4Kd flops, 8d(2 + [ddpm]) bytes, K exps per particle-step, at ns nanoseconds
    (8, 2, "ddim", 10.0, {"fma": 64 / 1e-8 / 1e11, "mem": 32 / 1e-8 / 1e10, "exp": 8 / 1e-8 / 1e9}, "exp"),
    (8, 256, "ddpm", 300.0, {"fma": 8192 / 3e-7 / 1e11, "mem": 6144 / 3e-7 / 1e10, "exp": 8 / 3e-7 / 1e9}, "mem"),
    (64, 256, "ddim", 800.0, {"fma": 65536 / 8e-7 / 1e11, "mem": 4096 / 8e-7 / 1e10, "exp": 64 / 8e-7 / 1e9}, "fma"),
    (2, 256, "ddpm", 100.0, {"fma": 2048 / 1e-7 / 1e11, "mem": 6144 / 1e-7 / 1e10, "exp": 2 / 1e-7 / 1e9}, "mem"),
])
def test_fractions_of_peak(K, d, step, ns, expect, bound):
    """The step's necessary work (a wrong flop, byte or exp count, or DDPM's z forgotten, changes a fraction)."""
    from numerics.bench.peaks import fractions_of_peak

    frac, got = fractions_of_peak(ns, K, d, step, _limits())
    assert frac == pytest.approx(expect, rel=1e-12) and got == bound


@pytest.mark.parametrize("flags, lanes", [("flags : fpu sse2 avx avx2 fma avx512f avx512dq", 8),
                                          ("flags : fpu sse2 avx avx2 fma", 4), ("flags : fpu sse2 avx", 2),
                                          ("flags : fpu sse2 avx2", 2)])
def test_vector_lanes(flags, lanes):
    from numerics.bench.peaks import vector_lanes

    assert vector_lanes(flags) == lanes


def test_measured_limits_are_plausible():
    """Order-of-magnitude sanity of the measured limits on any machine this runs on: a clock of 0.3-8 GHz (a
    wrong latency or a chain the compiler folded away leaves this range), and positive bandwidth and exp rates."""
    from numerics.bench.peaks import measure_limits

    lim = measure_limits(1, repeats=2)
    assert 0.3e9 < lim.clock_hz < 8e9
    assert lim.stream_bytes > 1e8 and lim.exp_per_s > 1e7
    assert lim.fma_flops == pytest.approx(2 * 2 * lim.lanes * lim.clock_hz)


def test_bench_cli_bad_json_dir(tmp_path, capsys):
    from numerics.cli import main

    assert main(["bench", "--tiny", "--json", str(tmp_path / "no" / "such" / "b.json")]) == 2


def test_import_compiles_nothing():
    code = r"""
import numba.core.registry, sys
import numerics, numerics.cli, numerics.bench.timing, numerics.bench.numpy_baseline, numerics.fast.mixture
from numba.core.dispatcher import Dispatcher
compiled = []
for name, mod in list(sys.modules.items()):
    if not name.startswith("numerics"):
        continue
    for attr, obj in vars(mod).items():
        if isinstance(obj, Dispatcher) and obj.signatures:
            compiled.append(f"{name}.{attr}")
print("COMPILED:" + ",".join(compiled))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("COMPILED:")][0]
    assert line == "COMPILED:", line


def test_a_step_compiles_only_its_path_once():
    """A lanes step compiles (or loads) the lanes kernel only, a per-particle step the per-particle kernel only,
    each with one signature whatever the options that are runtime arguments (products, dense or sparse
    recombination, DDIM or DDPM, score or denoiser, flagged particles redone).  Fails if the front calls both
    kernels, or hands a kernel or the lanes path's fallback an argument of another type (a second compile)."""
    code = r"""
import numpy as np
import numerics.fast.kernels as kk
from numerics import GaussianMixture
from numerics.fast import FastMixture, guided_ddim_step, guided_ddpm_step
rng = np.random.default_rng(0)
names = ("guided_step_lanes", "guided_step_rows", "_lanes_redo")
def counts():
    return tuple(len(getattr(kk, n).signatures) for n in names)
def steps(gm, products):
    fm = FastMixture(gm, products=products)
    x = rng.standard_normal((700, gm.d))
    x[::7] = np.exp(-1e-3) * gm.means[0]  # at t = 1e-3 these fail the GEMM-form test (redone on the lanes path)
    for t in (1e-3, 0.5):
        guided_ddim_step(fm, x, t, 0.8 * t, 1, 2.5)
        guided_ddpm_step(fm, x, t, 0.8 * t, 0, 0.5, rng.standard_normal(x.shape))
        fm.score(x, t), fm.denoiser(x[3], t)
    return fm
for d in (2, 12):
    covs = np.stack([0.01 * np.eye(d)] * 2)
    iso = GaussianMixture([0.5, 0.5], 3 * rng.standard_normal((2, d)), covs, labels=[0, 1])
    for products in ("auto", "loops", "dgemm"):
        assert steps(iso, products)._lanes()
print("LANES", counts())
for d in (3, 12):
    A = rng.standard_normal((3, d, d))
    covs = np.einsum("kij,klj->kil", A, A)
    full = GaussianMixture([0.2, 0.3, 0.5], rng.standard_normal((3, d)), covs, labels=[0, 1, 1])
    for products in ("auto", "dgemm", "blas"):
        assert not steps(full, products)._lanes()
print("BOTH", counts())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr
    got = dict(ln.split(" ", 1) for ln in out.stdout.splitlines() if ln.startswith(("LANES ", "BOTH ")))
    # the fallback is compiled with the lanes kernel, and only then: loaded from Numba's cache, the lanes kernel
    # carries its code and the fallback's own dispatcher stays empty
    assert got["LANES"] in ("(1, 0, 1)", "(1, 0, 0)"), got
    assert got["BOTH"] == got["LANES"].replace("1, 0,", "1, 1,"), got


@pytest.mark.parametrize("method, form", [("ddim", "cg"), ("ddpm", "cg"), ("ddpm", "cg_mean"), ("ddim", "cfg"),
                                          ("ei_ode", "cg"), ("dpm_solver_1", "cfg"), ("euler_maruyama", "cg")])
def test_sampler_default_is_the_fast_kernel_and_matches_the_reference(rng, method, form, monkeypatch):
    """``sample`` runs a GaussianMixture on the fast kernel by default (``fast=True``), for every quantity a
    method uses (denoiser, score, noise prediction; cg, cg_mean and cfg's class-conditional mixture), and ends
    where the reference kernel (``fast=False``) ends.

    Per step the two differ by rounding only (bounded in ``test_guided_quantities_and_steps``, ~1e-13 here);
    over 113 contracting steps the measured end-point difference is ~1e-14.  ``1e-9`` (relative to the sample
    scale) is a wiring check with a wide margin; the control (another label) moves points by O(1), and a
    subclass of GaussianMixture (which may override what the kernels compute) is not run on the fast kernel.
    """
    import numerics.fast.mixture as kf
    from numerics.samplers import sample

    gm = GaussianMixture([0.5, 0.3, 0.2], [[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0], [0.0, -2.0, 0.5]],
                         [np.eye(3) * 0.3, np.diag([0.5, 0.2, 0.1]), np.eye(3) * 0.2], labels=[0, 1, 1])
    calls = []
    orig = kf.FastMixture._run
    monkeypatch.setattr(kf.FastMixture, "_run", lambda self, *a: calls.append(1) or orig(self, *a))
    kw = dict(n=400, seed=3, guidance=2.0, guidance_form=form)
    ref = sample(gm, method, label=1, fast=False, **kw)
    assert not calls
    default = sample(gm, method, label=1, **kw)
    assert len(calls) > 0
    assert np.array_equal(default, sample(gm, method, label=1, fast=True, **kw))
    scale = np.max(np.abs(ref))
    assert np.max(np.abs(default - ref)) <= 1e-9 * scale
    other = sample(gm, method, label=0, **kw)
    assert np.max(np.abs(other - ref)) > 0.1 * scale

    class Sub(GaussianMixture):
        pass

    calls.clear()
    sub = Sub(gm.weights, gm.means, gm.covs, labels=gm.labels)
    assert np.array_equal(sample(sub, method, label=1, **kw), ref) and not calls
    with pytest.raises(ValueError, match="fast"):
        sample(gm, method, n=10, fast="yes")


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("step", ["ddim", "ddpm"])
def test_optional_backends_compute_the_same_step(backend, step):
    """The bench's torch and JAX steps (GEMM form, no fallback) equal the NumPy reference step.

    Tolerance: the GEMM-form logit error is at most ``E_gemm`` (``logit_error_bounds``), which perturbs each
    weight by a relative ``2 E_gemm``; the step moves by at most ``|c_q| 2 E_gemm (1 + 2(w-1)) max_k |m_k|``,
    plus rounding of the update (``8u(|x| + |z|)``).  Skipped where the backend is not installed.
    """
    pytest.importorskip(backend)
    from numerics.bench import timing as bench
    from numerics.generated.integrator_coeffs import ddim_coeffs, ddpm_coeffs

    gm = bench.make_target(6, 16)
    x, z = bench.make_particles(gm, 200, bench.T_STEP)
    fm = FastMixture(gm)
    run, conv = (bench._make_jax if backend == "jax" else bench._make_torch)(fm, step)
    got = np.asarray(run(conv(x), conv(z)))
    nm = NumpyMixture(gm)
    args = (x, bench.T_STEP, bench.S_STEP, bench.LABEL, bench.GUIDANCE)
    want = nm.ddim_step(*args) if step == "ddim" else nm.ddpm_step(*args, z)
    cq = (ddim_coeffs if step == "ddim" else ddpm_coeffs)(bench.T_STEP, bench.S_STEP)[1]
    e_gemm = float(np.max(logit_error_bounds(fm, x, bench.T_STEP)[0]))
    m_max = float(np.max(np.abs(gm.means))) + np.max(np.abs(x))
    tol = abs(cq) * 2 * e_gemm * (1 + 2 * (bench.GUIDANCE - 1)) * m_max + 8 * U * (np.abs(x) + np.abs(z))
    assert np.all(np.abs(got - want) <= tol)
    # control: the other label is a different step
    wrong = nm.ddim_step(x, bench.T_STEP, bench.S_STEP, 1, bench.GUIDANCE) if step == "ddim" else \
        nm.ddpm_step(x, bench.T_STEP, bench.S_STEP, 1, bench.GUIDANCE, z)
    assert not np.all(np.abs(got - wrong) <= tol)


@pytest.mark.parametrize("products", ["loops", "dgemm"])
def test_products_do_not_depend_on_threads(rng, products):
    """The step is bit-identical for 1 and 2 Numba threads (fixed chunks; BLAS blocks run on the calling thread)."""
    import numba

    gm = _mixture(rng, K=12, d=40)
    x = rng.standard_normal((517, gm.d))
    z = rng.standard_normal((517, gm.d))
    fm = FastMixture(gm, products=products)
    assert fm._products_mode()[0] == (1 if products == "loops" else 2)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = guided_ddpm_step(fm, x, 0.4, 0.3, 1, 2.5, z)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = guided_ddpm_step(fm, x, 0.4, 0.3, 1, 2.5, z)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("d", [2, 16])
def test_small_steps_run_on_the_calling_thread(rng, monkeypatch, d):
    """A step of at most SERIAL_PARTICLES particles runs its kernel with one Numba thread and restores the caller's
    count (also when the step raises); the result is the thread team's bit for bit (rows and lanes paths)."""
    import numba

    import numerics.fast.mixture as kf

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    calls = []
    real = numba.set_num_threads
    monkeypatch.setattr(numba, "set_num_threads", lambda k: (calls.append(k), real(k))[1])
    old = numba.get_num_threads()
    try:
        real(2)
        for gm in (_mixture(rng, d=d), GaussianMixture([0.5, 0.5], rng.standard_normal((2, d)),
                                                       np.stack([0.4 * np.eye(d)] * 2), labels=[0, 1])):
            x = rng.standard_normal((kf.SERIAL_PARTICLES, d))
            fm = FastMixture(gm)
            calls.clear()
            small = fm.guided_denoiser(x, 0.3, 1, 2.5)
            assert calls == [1, 2] and numba.get_num_threads() == 2
            calls.clear()
            monkeypatch.setattr(kf, "SERIAL_PARTICLES", 0)
            assert np.array_equal(fm.guided_denoiser(x, 0.3, 1, 2.5), small) and calls == []
            monkeypatch.setattr(kf, "SERIAL_PARTICLES", x.shape[0])
            x[3, 0] = 1e300  # |x|^2 overflows: the step raises after the kernel
            with pytest.raises(ValueError, match="x:"):
                fm.guided_denoiser(x, 0.3, 1, 2.5)
            assert numba.get_num_threads() == 2
    finally:
        real(old)


@pytest.mark.parametrize("d", [2, 16])
def test_lanes_path_matches_rows_and_hands_back_flagged_particles(rng, monkeypatch, d):
    """The lanes path (isotropic, small d; BLAS products from d = 8 on) agrees with the per-particle path within
    the bound; particles near alpha mu_k at small t fail the GEMM-form test and get the direct form in the lanes
    (``_lanes_direct``; counted, the same entries as the per-particle test; the per-particle path, which redid
    them before 2026-12-06, is the reference here); results do not depend on the thread count, nor (with loop
    products) on the chunk."""
    import numba

    import numerics.fast.mixture as kf

    gm = _iso_mixture(rng, K=9, d=d)
    t, w = 1e-3, 2.5
    x = 1.5 * rng.standard_normal((700, d))
    x[::7] = np.exp(-t) * gm.means[rng.integers(0, gm.K, 100)] + 1e-4 * rng.standard_normal((100, d))
    z = rng.standard_normal(x.shape)
    fm = FastMixture(gm)
    assert fm._layout()[:2] == (True, 2 if d >= kf.LANES_GEMM_DIM else 1)
    lanes = guided_ddpm_step(fm, x, t, 0.8 * t, 1, w, z)
    n_direct = fm.logits(x, t, "auto")[1].sum()     # entries the per-particle test sends to the direct form
    assert n_direct > 20 and fm.last_info[:, 0].sum() == n_direct  # all in the direct form, none missed
    monkeypatch.setattr(kf, "LANES_DIM", 0)
    rows_fm = FastMixture(gm)
    assert not rows_fm._lanes()
    rows = guided_ddpm_step(rows_fm, x, t, 0.8 * t, 1, w, z)
    tol, _ = _tol(fm, gm, x, t, "denoiser")
    from numerics.generated.integrator_coeffs import ddpm_coeffs

    # _tol bounds two float64 implementations of D; guidance with w multiplies it by (1 + w) (as in
    # test_guided_quantities_and_steps), the step by |c_q|; slack: each side rounds c_x x + c_z z and the final
    # sum (at most two roundings of each term, 4u per side)
    cq = abs(ddpm_coeffs(t, 0.8 * t)[1])
    slack = 8 * U * (np.abs(x) + np.abs(z))
    bound = (1 + w) * cq * tol + slack
    assert np.all(np.abs(lanes - rows) <= bound)
    monkeypatch.setattr(kf, "LANES_DIM", 16)
    # with loops (not BLAS, whose rounding may depend on the block shape) results do not depend on the chunk
    ref = guided_ddpm_step(FastMixture(gm, products="loops"), x, t, 0.8 * t, 1, w, z)
    assert np.all(np.abs(ref - rows) <= bound)
    for chunk in (1, 7, 64):
        monkeypatch.setattr(kf, "LANES_CHUNK", chunk)
        assert np.array_equal(guided_ddpm_step(FastMixture(gm, products="loops"), x, t, 0.8 * t, 1, w, z), ref)
    monkeypatch.setattr(kf, "LANES_CHUNK", 512)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = guided_ddpm_step(FastMixture(gm), x, t, 0.8 * t, 1, w, z)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(one, guided_ddpm_step(FastMixture(gm), x, t, 0.8 * t, 1, w, z))
    # control: the other class is a different step
    other = guided_ddpm_step(fm, x, t, 0.8 * t, 0, w, z)
    assert not np.all(np.abs(lanes - other) <= bound)


def test_lanes_path_bad_input(rng):
    """NaN, inf and overflowing points are named on the lanes path too."""
    gm = _iso_mixture(rng, K=4, d=3)
    fm = FastMixture(gm)
    assert fm._lanes()
    for bad, msg in [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (1e200, "overflows")]:
        x = rng.standard_normal((600, 3))
        x[517, 1] = bad
        with pytest.raises(ValueError, match=msg):
            fm.guided_denoiser(x, 0.3, 0, 2.0)


def test_stream_floor_kernel(rng):
    """The bench's ``stream`` floor computes the update it claims to time."""
    from numerics.fast import stream_update

    x, z = rng.standard_normal((37, 5)), rng.standard_normal((37, 5))
    out = np.empty_like(x)
    stream_update(x, z, True, 0.9, 0.3, out)
    assert np.array_equal(out, 0.9 * x + 0.3 * z)  # the same two products and one sum, no contraction
    stream_update(x, z, False, 0.9, 0.3, out)
    assert np.array_equal(out, 0.9 * x)

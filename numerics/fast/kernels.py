r"""Fast guided mixture steps: squared distances in GEMM form, Numba log-sum-exp, sparse recombination.

Model and time convention as in :class:`~numerics.mixture.GaussianMixture` (OU time), covariances in the
spiked form of :mod:`numerics.fast.spiked` (:math:`S_k = \lambda_{0k} I + U_k\mathrm{diag}(\delta_k)U_k^\top`,
:math:`c_0 = \alpha^2\lambda_0+\sigma^2`, :math:`c_j = c_0 + \alpha^2\delta_j`; the formulas in the direct
form are in :mod:`numerics.bench.numpy_baseline`).  With :math:`B = [\mu_1 \dots \mu_K \mid u_1 \dots u_R]`
(``d x (K+R)``, all spike vectors of all components), one product :math:`XB` gives every :math:`x\cdot\mu_k` and
:math:`x\cdot u_j` (formed inside the kernel, chunk by chunk: :func:`_chunk_products`), and

.. math::
    \|v_k\|^2 = \|x\|^2 - 2\alpha\, x\cdot\mu_k + \alpha^2\|\mu_k\|^2, \qquad p_j = x\cdot u_j - \alpha\,u_j\cdot\mu_k .

The guided denoiser (or score) is then :math:`a\,x + G B^\top` with per-particle coefficients
:math:`G` (``K+R`` per particle), built and applied inside the fused kernel (:func:`guided_step_rows` or
:func:`guided_step_lanes`).

Cancellation and the fallback (proofs: :func:`numerics.fast.mixture.logit_error_bounds`)
-------------------------------------------------------------------------------------
Let :math:`S = \|x\| + \alpha\|\mu_k\|` and :math:`\gamma_n = nu/(1-nu)`.  The GEMM form has
:math:`|\widehat{\|v\|^2} - \|v\|^2| \le \gamma_{d+4} S^2` (every summand of the three terms is bounded by
:math:`S^2` in absolute value, whatever the summation order of BLAS), so its logit error is about
:math:`\gamma_{d+4} S^2/(2c_0)`.  The direct form (:math:`v = x - \alpha\mu` rounded first) has
:math:`\gamma_{d+4}(\|v\|^2 + 2\|v\|S)/(2c_0)`.  The two agree when :math:`\|v\| \gtrsim S` and the GEMM form
loses :math:`S/\|v\|` digits when :math:`x \approx \alpha\mu_k` -- exactly for the *nearest*, heaviest components
at small ``t``.  Per (particle, component), the kernel keeps the GEMM value only if

.. math::  S^2 \le \rho\,\max\big(\|v\|^2 + 2\|v\|S,\; c_0\big), \qquad \rho = 2^6 = 64,

i.e. only if its error bound is at most :math:`\rho` times the direct form's own bound (or, when that is
below the rounding floor :math:`\gamma_{d+4}/2` of a logit of size one, :math:`\rho` times that floor);
otherwise it recomputes that entry in the direct form (``O(d r')`` work).  So the fast path's logits are never
more than 6 bits worse than the direct kernel's, and since a logit error :math:`\epsilon` perturbs the
posterior weights relatively by at most :math:`2\epsilon`, the same holds for the weights.  Typical sampling
states (``t`` not tiny) have :math:`S^2/\|v\|^2 = O(1)` and never fall back.

Far from the data (issue 20 item 4: a documented bound, not the reference kernels' treatment)
----------------------------------------------------------------------------------------------
The reference kernels (:mod:`numerics._kernels`) form logit *differences* without the common
:math:`\|x\|^2/\sigma^2` and meet :math:`10^{-13}` (class posterior) and :math:`10^{-12}` (denoiser, of its
scale) wherever the problem is well conditioned, in particular at ``t`` up to 50 and :math:`10^3\sigma_t` out.  This
path keeps absolute logits: both forms above carry :math:`\gamma_{d+4}\|x\|^2/(2c_0)` there (:math:`\approx 10^6\gamma_{d+4}`
at :math:`10^3\sigma_t`), so the weights are off relatively by up to twice that and the denoiser by up to
:math:`2\varepsilon\max_k\|m_k - D\|`: the bound :func:`numerics.fast.mixture.agreement_bound`, checked against
the 50-digit oracle at :math:`t \in \{10, 50\}`, :math:`10^3\sigma_t` out, isotropic, full and low-rank
components (``tests/test_mixture_far.py``; measured up to :math:`6\times10^{-11}` of the scale, 0.023 of the bound).
Sampling states lie within a few :math:`\sigma_t` of the data, where the bound is :math:`O(d\,u)`.  (The same device
would apply here: subtracting :math:`\|x\|^2/(2c_{\min})` leaves :math:`-\|x\|^2\alpha^2(\lambda_{0k} -
\lambda_{\min})/(2c_{0k}c_{\min})` and the :math:`x\cdot\mu_k` terms, none of which cancels.)

Truncation of negligible weights
--------------------------------
The guided combination is :math:`\sum_k \beta_k m_k` with :math:`\beta_k = (1+(w-1)p_\neg)\pi^\text{in}_k` or
:math:`-(w-1)p_\neg\pi^\text{out}_k`.  Terms with :math:`|\beta_k| < 2^{-64}\max_j|\beta_j|` get weight exactly 0
(no term in the recombination; below :data:`LOG_DROP` within their class group no ``exp`` is kept either).
Their total is below :math:`K\,2^{-64}\max_j|\beta_j|`, so for :math:`K \le 2^{10}` the result changes by less
than :math:`2^{-54}\max_j|\beta_j|\max_k\|m_k\|`, i.e. below one rounding of the largest term.  (Truncating
within each group only kept the whole other group alive when :math:`p_\neg` is negligible.)
The whole step runs in one fused parallel kernel (``prange`` over chunks of particles, dynamic schedule,
per-thread scratch allocated by the caller): products, logits (vectorised over components), one ``exp`` pass
over the chunk's logits with a branch-free polynomial ``exp`` (:func:`_exp_neg`, <= 2 ulp) so it vectorises,
guidance mixing, and the recombination -- a dense dot per coordinate for ``d <=``
:data:`~numerics.fast.mixture.DENSE_DIM`, and for larger ``d`` only the surviving rows of :math:`B^\top`, eight
per pass over the output row (:func:`_sparse_recombination`) -- fused with the DDIM/DDPM update.  Helpers are
inlined at Numba-IR level (``inline="always"``): a call boundary would otherwise cost an atomic NRT
incref/decref per array argument per particle (measured: a large share of the step for small ``K`` and
``d``), and cache-line ping-pong between the two threads.

One kernel per path, chosen in Python (:class:`~numerics.fast.mixture.FastMixture`, by ``Layout.lanes``):
:func:`guided_step_rows` (particle by particle, chunks of :data:`~numerics.fast.mixture.CHUNK`) and
:func:`guided_step_lanes` (across particles, below), each with its hot body inlined.  Each is compiled, or
loaded from Numba's cache, on its first call, with one signature (every option of a step -- products,
recombination form, DDIM or DDPM, score or denoiser -- is a runtime argument of fixed type; tested), so a
run compiles only the path it takes.  With both bodies in one ``prange`` loop, Numba's parfor passes worked
through both, whatever the run used: each path now compiles in 0.47-0.61x that time (measured side by side,
README, Performance).  A non-inlined chunk body (an earlier attempt) ran 1.04-1.22x slower, so only the lanes
path's redo of the particles it flags is a call (:func:`_lanes_redo`, once per chunk that has any; it makes a
redone particle 1.3-1.6x slower, see there; since 2026-12-06 only non-finite and massless particles are redone).

Products and threads: one multithreaded BLAS product before the kernel left OpenBLAS's worker threads spinning
after it returned, which slowed the Numba threads on two cores several-fold (``products='blas'`` keeps that
variant for tests).  So the products are formed inside the parallel kernel, per chunk, by a register-tiled loop
(:func:`_chunk_products`: four particles by four columns, sums reassociated into vector accumulators, in that
function only), which is faster than the BLAS product of all particles at once, the bench's floor (measured;
the README has the numbers).  Each entry is computed by the same instruction sequence wherever it falls, so the
result depends neither on the chunking nor on the number of threads.  (``products='dgemm'`` keeps the earlier
in-kernel BLAS blocks, sized so that OpenBLAS stays on the calling thread.)

Lanes path (isotropic components, ``d <=`` :data:`~numerics.fast.mixture.LANES_DIM`): the per-particle loops
above are short (``K`` and ``d`` small) and their set-up dominated, so :func:`_lanes_chunk` runs the same formulas
*across* the particles of a chunk of :data:`~numerics.fast.mixture.LANES_CHUNK` (every inner loop over
particles, so it vectorises), with BLAS products and recombination from ``d =``
:data:`~numerics.fast.mixture.LANES_GEMM_DIM` on.  Particles it cannot do the same way (an entry that fails the
non-finite :math:`\|x\|^2`, a class without mass) are flagged and redone by the per-particle path
(:func:`_lanes_redo`), so the error reports are shared.  The GEMM-form fallback is taken in the lanes themselves
(:func:`_lanes_direct`, for the particles with an entry past the cheap superset test only): the exact test of
:func:`_quad_row` and the direct form where it fails.  Until 2026-12-06 every particle with an entry past the superset
test was redone per particle; near atoms at small ``t`` that is nearly every particle, and a step took 10x the
lanes time (README, Performance).

All kernels: ``njit(cache=True)``; the only fastmath flag is ``contract`` (fused multiply-add: one rounding
instead of two, NaN/inf semantics unchanged; every bound here counts at most one rounding per operation, so
contraction keeps them), plus ``reassoc`` in :func:`_chunk_products` alone; all arrays allocated by the caller
outside ``prange``.

Layout of the package: every ``@njit`` function of the fast path is in this one file (Numba's on-disk cache
is invalidated per file, so a kernel must not depend on jitted code elsewhere); the Python front
(:class:`~numerics.fast.mixture.FastMixture`, the step functions, layout constants) is in
:mod:`numerics.fast.mixture`, so editing it does not force a recompile.  The kernels take their arrays and
scalars grouped in the named tuples :class:`Components`, :class:`Coefs`, :class:`StepScalars`,
:class:`Layout` and :class:`Workspace` (inside the kernels, attribute access compiles to a field extraction;
the step kernels, called from Python, take them as plain tuples, see :func:`guided_step_rows`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numba
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["Components", "Coefs", "StepScalars", "Layout", "Workspace", "guided_step_rows", "guided_step_lanes",
           "logits", "stream_update",
           "exp_neg_array", "LOG_DROP", "EXP_LO", "LANE_ROWS", "FORM_AUTO", "FORM_GEMM", "FORM_DIRECT"]

#: Components whose weight is below ``2**-64`` of their group's largest are dropped (exactly 0).
LOG_DROP = -64.0 * math.log(2.0)

#: ``form`` of :func:`logits` and :func:`_quad_row`: GEMM form with the fallback test, GEMM form, direct form.
FORM_AUTO, FORM_GEMM, FORM_DIRECT = 0, 1, 2


class Components(NamedTuple):
    """Component data of the GEMM form, in the order the kernels see them (for a guided step: the class ``y``
    first).  ``K`` components, ``R`` spikes (all components), ``d`` dimensions."""

    K_in: int  #: components ``0:K_in`` are the class ``y`` (``K`` when unguided)
    mu: np.ndarray  #: ``(K, d)`` means
    mu2: np.ndarray  #: ``(K,)`` :math:`\|\mu_k\|^2`
    mun: np.ndarray  #: ``(K,)`` :math:`\|\mu_k\|`
    spikeT: np.ndarray  #: ``(R, d)`` spike directions :math:`u_j` as rows
    muU: np.ndarray  #: ``(R,)`` :math:`u_j\cdot\mu_{k(j)}` (``k(j)`` the component owning spike ``j``)
    spk_start: np.ndarray  #: ``(K+1,)`` int64: the spikes of component ``k`` are ``spk_start[k]:spk_start[k+1]``
    B: np.ndarray  #: ``(d, K+R)`` :math:`[\mu_1 \dots \mu_K \mid u_1 \dots u_R]`
    BT: np.ndarray  #: ``(K+R, d)`` its transpose, C-contiguous


class Coefs(NamedTuple):
    """Per-time constants of the components (same order as :class:`Components`).  The step kernels take
    ``coef_mu`` and ``coef_x`` as ``(1, K)`` rows."""

    c0: np.ndarray  #: ``(K,)`` :math:`c_0 = \alpha^2\lambda_0 + \sigma^2`
    const: np.ndarray  #: ``(K,)`` :math:`\log w_k - \tfrac12(d\log 2\pi + \log\det C_k)`
    omega: np.ndarray  #: ``(R,)`` :math:`\alpha^2\delta_j/(c_0 c_j)`
    coef_mu: np.ndarray  #: per component: the quantity is ``coef_x x + coef_mu mu + sum_j coef_spk p_j u_j``
    coef_x: np.ndarray
    coef_spk: np.ndarray  #: ``(R,)``


class StepScalars(NamedTuple):
    r"""The scalars of one step: ``out = cx x + cq Q_w(x) [+ cz z]`` at :math:`\alpha`, guidance ``w``,
    fallback ratio :math:`\rho` and drop level (all float)."""

    alpha: float
    w: float
    ratio: float
    log_drop: float
    cx: float
    cq: float
    cz: float


class Layout(NamedTuple):
    """How a step kernel walks the particles (chosen by :meth:`numerics.fast.mixture.FastMixture._layout`)."""

    #: across the particles of a chunk (:func:`guided_step_lanes`) rather than one by one
    #: (:func:`guided_step_rows`): read by the caller, which picks the kernel by it
    lanes: bool
    products: int  #: 0: read from ``Workspace.XB``; 1: :func:`_chunk_products`; 2: in-kernel BLAS calls
    gemm_rows: int  #: particles per in-kernel BLAS call (``products`` 2, per-particle path)
    chunk: int  #: particles per ``prange`` work item
    dense: bool  #: dense recombination (small ``d``) rather than the surviving rows of ``BT``


class Workspace(NamedTuple):
    """Arrays the step kernels write (allocated by the caller; ``nt`` = ``numba.config.NUMBA_NUM_THREADS``,
    ``C = K + R``, ``rows`` = the chunk on the per-particle path, 1 on the lanes path, ``lc`` = the chunk on the
    lanes path, 1 otherwise)."""

    XB: np.ndarray  #: ``(n, C)`` products by one BLAS call before the kernel (``products`` 0), else ``(1, C)``
    XW: np.ndarray  #: ``(nt, rows, C)`` products of a chunk
    L: np.ndarray  #: ``(nt, rows, K)`` logits, then weights
    M: np.ndarray  #: ``(nt, rows, 3)`` group maxima and :math:`\|x\|^2`
    E: np.ndarray  #: ``(nt, C)`` coefficients of one particle
    P: np.ndarray  #: ``(nt, rows, max(R, 1))`` spike projections
    IDX: np.ndarray  #: ``(nt, C + 8)`` int64, surviving rows of ``BT``
    XT: np.ndarray  #: ``(nt, d or 1, lc)`` transposed particles (lanes path, loop products)
    W: np.ndarray  #: ``(nt, (K + d) lc)`` lanes path: logits and weights, then BLAS recombination
    V: np.ndarray  #: ``(nt, LANE_ROWS, lc)`` lanes path: per-particle values
    info: np.ndarray  #: ``(n_chunks, 4)`` int64 counts per chunk (see :func:`guided_step_rows`)


@njit(cache=True, parallel=True)
def logits(x, XB, comp, coefs, alpha, ratio, form, L, used, P):
    """``L[i, k]`` = log w_k + log N(x_i; alpha mu_k, C_k) in the requested form; ``used[i, k]`` = direct form used;
    ``P`` (``n x R``) receives the spike projections.  ``comp``: :class:`Components`, ``coefs``: :class:`Coefs`
    (``c0``, ``const``, ``omega`` used)."""
    n = x.shape[0]
    K = comp.mu.shape[0]
    const = coefs.const
    c0 = coefs.c0
    for i in prange(n):
        x2 = _dot_range(x, i, x, i, 0, x.shape[1])
        xn = math.sqrt(x2)
        for k in range(K):
            q, dr = _quad_row(x, i, k, x2, xn, XB, i, comp, c0[k], coefs.omega, alpha, ratio, form, P, i)
            L[i, k] = const[k] - 0.5 * q
            used[i, k] = dr


#: Lower clamp of the argument of :func:`_exp_neg` (one below :data:`LOG_DROP`; clamped lanes are discarded).
EXP_LO = LOG_DROP - 1.0
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm split of ln 2: n * _LN2_HI is exact for |n| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: (t + _SHIFT) - _SHIFT rounds t to the nearest integer
#: Bits of ``_SHIFT`` minus the exponent bias: ``bits(t + _SHIFT) - _SHIFT_BITS`` is ``n + 1023``, ``n = round(t)``.
_SHIFT_BITS = 0x4338000000000000 - 1023
#: Taylor coefficients 1/j! of e^r, j = 0..13 (|r| <= ln2/2: truncation error < 6e-18 relative).
_EC = tuple(1.0 / math.factorial(j) for j in range(14))


@intrinsic
def _f64_bits(typingctx, v):
    """The IEEE-754 bits of a float64 as an int64 (an LLVM ``bitcast``: free, and it vectorises)."""
    if not isinstance(v, types.Float) or v.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, b):
    """The float64 whose IEEE-754 bits are the int64 ``b`` (inverse of :func:`_f64_bits`)."""
    if not isinstance(b, types.Integer) or b.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _prefetch(typingctx, arr, i, l, write):
    """Ask the cache for the line holding ``arr[i, l]`` (``llvm.prefetch``; ``write``: a literal 0 or 1, 1 for a
    line about to be written).  A hint: it changes no value and cannot fault, whatever the index."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and isinstance(i, types.Integer)
            and isinstance(l, types.Integer) and isinstance(write, types.IntegerLiteral)):
        return None
    rw = int(write.literal_value)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 2)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(rw), i32(3), i32(1)])  # (address, rw, locality: keep, data cache)
        return context.get_dummy_value()

    return types.none(arr, i, l, write), codegen


@njit(cache=True, inline="always")
def _prefetch_step_rows(z, use_z, out, i):
    """Prefetch row ``i`` of ``out`` (to be written) and of ``z`` (read): one hint per 64-byte line.  Issued one
    particle ahead of the recombination, it overlaps their memory traffic with the current particle's work
    (measured faster for large ``d`` and few components, where that traffic dominates; prefetching ``z`` as
    well as ``out`` gained more than ``out`` alone)."""
    for l in range(0, out.shape[1], 8):
        _prefetch(out, i, l, 1)
        if use_z:
            _prefetch(z, i, l, 0)


@njit(cache=True, inline="always")
def _exp_neg(y):
    r""":math:`e^y` for :math:`y \in [` :data:`EXP_LO` :math:`, 0]`: branch-free, so loops over it vectorise.

    Cody-Waite reduction :math:`y = n\ln 2 + r`, :math:`|r| \le \ln 2/2 + 2^{-40}` (``n ln2_hi`` exact), degree-13
    Taylor polynomial in Horner form, exact scaling by :math:`2^n` (its bits, ``(n + 1023) << 52``, built from
    those of ``t + _SHIFT``; the result is a normal number).  Error at most 2 ulp (``tests/test_bench.py`` checks
    it against ``math.exp``): a relative weight error of at most :math:`2^{-51}`, the effect of a logit error of
    :math:`2^{-51}`, below the :math:`\gamma_{d+4}(|\ell|+1)` floor of :func:`logit_error_bounds`.  IEEE
    arithmetic; inlined, it takes the caller's ``contract`` flag (Horner steps as fused multiply-adds, as in
    :func:`exp_neg_array`, which the test uses).  Callers clamp the argument first.
    """
    t = y * _LOG2E + _SHIFT
    n = t - _SHIFT
    r = (y - n * _LN2_HI) - n * _LN2_LO
    p = _EC[13]
    p = p * r + _EC[12]
    p = p * r + _EC[11]
    p = p * r + _EC[10]
    p = p * r + _EC[9]
    p = p * r + _EC[8]
    p = p * r + _EC[7]
    p = p * r + _EC[6]
    p = p * r + _EC[5]
    p = p * r + _EC[4]
    p = p * r + _EC[3]
    p = p * r + _EC[2]
    p = p * r + _EC[1]
    p = p * r + _EC[0]
    return p * _bits_f64((_f64_bits(t) - _SHIFT_BITS) << 52)


@njit(cache=True, fastmath={"contract"})
def exp_neg_array(y, out):
    """``out[i] = e^{y[i]}`` by :func:`_exp_neg` (``y`` in ``[EXP_LO, 0]``; for testing)."""
    for i in range(y.shape[0]):
        out[i] = _exp_neg(y[i])


@njit(cache=True, inline="always")
def _max_range(v, row, lo, hi):
    """``max(v[row, lo:hi])`` (``-inf`` if empty) with 8 independent partial maxima."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = -np.inf
    k = lo
    while k + 8 <= hi:
        a0 = v[row, k]
        a1 = v[row, k + 1]
        a2 = v[row, k + 2]
        a3 = v[row, k + 3]
        a4 = v[row, k + 4]
        a5 = v[row, k + 5]
        a6 = v[row, k + 6]
        a7 = v[row, k + 7]
        m0 = a0 if a0 > m0 else m0
        m1 = a1 if a1 > m1 else m1
        m2 = a2 if a2 > m2 else m2
        m3 = a3 if a3 > m3 else m3
        m4 = a4 if a4 > m4 else m4
        m5 = a5 if a5 > m5 else m5
        m6 = a6 if a6 > m6 else m6
        m7 = a7 if a7 > m7 else m7
        k += 8
    while k < hi:
        a0 = v[row, k]
        m0 = a0 if a0 > m0 else m0
        k += 1
    m0 = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    return m0


@njit(cache=True, inline="always")
def _dot_range(u, urow, v, vrow, lo, hi):
    """``sum(u[urow, lo:hi] * v[vrow, lo:hi])`` with 8 partial sums (each sequential; error <= gamma_n sum|u v|)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    k = lo
    while k + 8 <= hi:
        s0 += u[urow, k] * v[vrow, k]
        s1 += u[urow, k + 1] * v[vrow, k + 1]
        s2 += u[urow, k + 2] * v[vrow, k + 2]
        s3 += u[urow, k + 3] * v[vrow, k + 3]
        s4 += u[urow, k + 4] * v[vrow, k + 4]
        s5 += u[urow, k + 5] * v[vrow, k + 5]
        s6 += u[urow, k + 6] * v[vrow, k + 6]
        s7 += u[urow, k + 7] * v[vrow, k + 7]
        k += 8
    while k < hi:
        s0 += u[urow, k] * v[vrow, k]
        k += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True, inline="always")
def _sum_range(v, row, lo, hi):
    """``sum(v[row, lo:hi])`` with 8 partial sums."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    k = lo
    while k + 8 <= hi:
        s0 += v[row, k]
        s1 += v[row, k + 1]
        s2 += v[row, k + 2]
        s3 += v[row, k + 3]
        s4 += v[row, k + 4]
        s5 += v[row, k + 5]
        s6 += v[row, k + 6]
        s7 += v[row, k + 7]
        k += 8
    while k < hi:
        s0 += v[row, k]
        k += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True, inline="always")
def _scaled_kept(Lc, r, lo, hi, g, thr, E, ch):
    """``E[ch, k] = g Lc[r, k]`` for ``lo <= k < hi``, exactly 0 where its magnitude is below ``thr``; the count kept."""
    nkeep = 0
    for k in range(lo, hi):
        b = Lc[r, k] * g
        keep = (b if b > 0.0 else -b) >= thr
        E[ch, k] = b if keep else 0.0
        nkeep += 1 if keep else 0
    return nkeep


@njit(cache=True, inline="always")
def _exp_shifted(y, r, n, log_drop):
    """``y[r, k] = exp(y[r, k])`` for ``k < n`` (``y <= 0``: logits minus their group maximum), exactly 0 below
    ``log_drop`` or NaN; branch-free, so the loop vectorises."""
    for k in range(n):
        v = y[r, k]
        keep = v >= log_drop
        vc = v if v > EXP_LO else EXP_LO
        e = _exp_neg(vc)
        y[r, k] = e if keep else 0.0


@njit(cache=True, inline="always")
def _logits_row(x, i, x2, xb, r, comp, coefs, alpha, ratio, L, P, ch):
    r"""``L[ch, k]`` = logit of particle ``i``, component ``k`` (products in ``xb[r]``, :math:`\|x_i\|^2` in ``x2``),
    GEMM form with the fallback (``comp``: :class:`Components`, ``coefs``: :class:`Coefs`).

    The common case (no spikes, no entry near the fallback threshold) is one vectorised loop; the test
    :math:`S^2 > \rho\max(\|v\|^2, c_0)` flags a superset of the entries the exact test of :func:`_quad_row`
    sends to the direct form, and only then is the per-component path taken.  Returns the direct-form count,
    or -1 when :math:`\|x_i\|^2` is not finite (a NaN or infinite coordinate, or overflow).
    """
    mu2, mun, spk_start = comp.mu2, comp.mun, comp.spk_start
    const, c0 = coefs.const, coefs.c0
    K = comp.mu.shape[0]
    R = comp.spikeT.shape[0]
    if not math.isfinite(x2):
        return -1
    xn = math.sqrt(x2)
    a2 = alpha * alpha
    nflag = 0
    for k in range(K):
        v2 = x2 - 2.0 * alpha * xb[r, k] + a2 * mu2[k]
        v2 = v2 if v2 > 0.0 else 0.0
        S = xn + alpha * mun[k]
        lim = v2 if v2 > c0[k] else c0[k]
        nflag += 1 if S * S > ratio * lim else 0
        L[ch, k] = const[k] - 0.5 * (v2 / c0[k])
    nfb = 0
    if nflag > 0 or R > 0:
        for k in range(K):
            if const[k] == -np.inf:
                for j in range(spk_start[k], spk_start[k + 1]):
                    P[ch, j] = 0.0
                continue
            q, dr = _quad_row(x, i, k, x2, xn, xb, r, comp, c0[k], coefs.omega, alpha, ratio, FORM_AUTO, P, ch)
            nfb += 1 if dr else 0
            L[ch, k] = const[k] - 0.5 * q
    return nfb


@njit(cache=True, fastmath={"contract", "reassoc"})
def _chunk_products(x, lo, hi, BT, xb, Mc):
    r"""``xb[i - lo, c]`` = :math:`x_i \cdot B_{:,c}` (``BT`` = :math:`B^\top`, ``C x d``) and ``Mc[i - lo, 2]`` =
    :math:`\|x_i\|^2` for ``lo <= i < hi``.

    Register tiles of four particles by four columns: sixteen dot products over the coordinates in one loop
    whose sums the compiler may reassociate (``reassoc``, in this function only), so each becomes a vector
    accumulator (AVX-512 on the development machine) and every loaded :math:`x_{il}` and :math:`B_{lc}` is used
    four times.  Ragged edges repeat the last particle or column (computed, not stored), so every entry is
    computed by the same instruction sequence wherever it falls: results do not depend on the chunking or the
    thread count (tested).  Any summation order keeps the bound
    :math:`|\widehat{x\cdot b} - x\cdot b| \le \gamma_d \sum_l |x_{l} b_{l}|` used throughout; ``reassoc``
    and ``contract`` leave NaN/inf semantics unchanged.  Measured faster (products alone, 2 threads) than one
    2-thread BLAS product of all particles.

    The sixteen accumulators and the four-way repetitions below are written out by hand on purpose (a
    deliberate duplicate, not to be folded into a loop or a helper): the register tile only exists if every
    accumulator is a separate scalar, which Numba cannot derive from a loop over a small array.
    """
    d = x.shape[1]
    C = BT.shape[0]
    for i in range(lo, hi, 4):
        i1 = min(i + 1, hi - 1)
        i2 = min(i + 2, hi - 1)
        i3 = min(i + 3, hi - 1)
        q0 = q1 = q2 = q3 = 0.0
        for l in range(d):
            q0 += x[i, l] * x[i, l]
            q1 += x[i1, l] * x[i1, l]
            q2 += x[i2, l] * x[i2, l]
            q3 += x[i3, l] * x[i3, l]
        Mc[i - lo, 2] = q0
        if i + 1 < hi:
            Mc[i + 1 - lo, 2] = q1
        if i + 2 < hi:
            Mc[i + 2 - lo, 2] = q2
        if i + 3 < hi:
            Mc[i + 3 - lo, 2] = q3
        for c in range(0, C, 4):
            c1 = min(c + 1, C - 1)
            c2 = min(c + 2, C - 1)
            c3 = min(c + 3, C - 1)
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = 0.0
            for l in range(d):  # unrolled 4 x 4 tile, written out on purpose (see the docstring)
                b0 = BT[c, l]
                b1 = BT[c1, l]
                b2 = BT[c2, l]
                b3 = BT[c3, l]
                x0 = x[i, l]
                s00 += x0 * b0
                s01 += x0 * b1
                s02 += x0 * b2
                s03 += x0 * b3
                x1 = x[i1, l]
                s10 += x1 * b0
                s11 += x1 * b1
                s12 += x1 * b2
                s13 += x1 * b3
                x2 = x[i2, l]
                s20 += x2 * b0
                s21 += x2 * b1
                s22 += x2 * b2
                s23 += x2 * b3
                x3 = x[i3, l]
                s30 += x3 * b0
                s31 += x3 * b1
                s32 += x3 * b2
                s33 += x3 * b3
            _store_tile_row(xb, i - lo, c, C, s00, s01, s02, s03)
            if i + 1 < hi:
                _store_tile_row(xb, i + 1 - lo, c, C, s10, s11, s12, s13)
            if i + 2 < hi:
                _store_tile_row(xb, i + 2 - lo, c, C, s20, s21, s22, s23)
            if i + 3 < hi:
                _store_tile_row(xb, i + 3 - lo, c, C, s30, s31, s32, s33)


@njit(cache=True, inline="always")
def _store_tile_row(xb, r, c, C, s0, s1, s2, s3):
    """``xb[r, c:c+4] = (s0, s1, s2, s3)``, the columns that exist (``< C``)."""
    xb[r, c] = s0
    if c + 1 < C:
        xb[r, c + 1] = s1
    if c + 2 < C:
        xb[r, c + 2] = s2
    if c + 3 < C:
        xb[r, c + 3] = s3


@njit(cache=True, parallel=True, fastmath={"contract"})
def guided_step_rows(x, z, use_z, comp_t, coefs_t, scal_t, layout_t, ws_t, out):
    r"""One fused pass of the per-particle path: ``out = cx x + cq Q_w(x) [+ cz z]``, :math:`Q_w = a\,x + G B^\top`.

    ``comp_t``: the fields of a :class:`Components`, ordered so that ``0:K_in`` is the class ``y`` (``in``) and
    ``K_in:K`` the rest; ``coefs_t``: of a :class:`Coefs` in the same order (``coef_mu``, ``coef_x`` as
    ``(1, K)`` rows); ``scal_t``: of a :class:`StepScalars`; ``layout_t``: of a :class:`Layout`; ``ws_t``: of a
    :class:`Workspace`.  They come as plain tuples (``tuple(nt)``) and are named again here: Numba's dispatcher
    types and unboxes a named-tuple argument more slowly than a plain tuple, per argument and call (measured; a
    visible share of a step of a few hundred particles), and rebuilding the named tuples in here costs nothing.
    :math:`Q_w = Q_\text{in} + (w-1)\,p(\neg y\mid x)(Q_\text{in} - Q_\text{out})`: component ``k`` gets weight
    :math:`\beta_k = (1 + (w-1)p_\neg)\pi^\text{in}_k` (in) or :math:`-(w-1)p_\neg\pi^\text{out}_k`, and its
    quantity is ``coef_x[k] x + coef_mu[k] mu_k + sum_j coef_spk[j] p_j u_j``.

    Particles are processed in chunks of ``layout.chunk`` (``prange`` over chunks, dynamic schedule set by the
    caller), particle by particle (:func:`_rows_range`, inlined); ``layout.lanes`` is not read (the caller picks
    this kernel or :func:`guided_step_lanes` by it).  The scratch arrays of ``ws`` are one per thread (indexed by
    ``numba.get_thread_id()``: reused, so they stay in cache, measured faster than scratch per chunk; a chunk
    writes all it reads, so results do not depend on which thread ran it); ``ws.info[ch]`` receives
    ``(direct-form entries, surviving components, particles whose class has no mass, non-finite particles)``.
    ``layout.products``: 1 -- the products :math:`x_iB` of a chunk are formed here by :func:`_chunk_products`;
    2 -- by single-threaded BLAS calls (``np.dot``) on blocks of ``layout.gemm_rows`` particles; 0 -- read from
    ``ws.XB`` (BLAS, computed by the caller).  With ``layout.dense`` the recombination is a dense dot per output
    coordinate (small ``d``); otherwise only the surviving rows of ``BT`` are added.
    """
    comp = Components(*comp_t)
    coefs = Coefs(*coefs_t)
    scal = StepScalars(*scal_t)
    layout = Layout(*layout_t)
    ws = Workspace(*ws_t)
    n = x.shape[0]
    chunk = layout.chunk
    products = layout.products
    gemm_rows = layout.gemm_rows
    n_chunks = (n + chunk - 1) // chunk
    drop_factor = math.exp(scal.log_drop)
    B, BT = comp.B, comp.BT
    XB, XW, L, M, E, P, IDX, info = ws.XB, ws.XW, ws.L, ws.M, ws.E, ws.P, ws.IDX, ws.info
    for ch in prange(n_chunks):
        lo = ch * chunk
        hi = min(n, lo + chunk)
        tid = numba.get_thread_id()  # scratch is per thread (it stays in cache); info is per chunk
        xb = XW[tid]
        if products == 1:
            _chunk_products(x, lo, hi, BT, xb, M[tid])
        elif products == 2:
            for a in range(lo, hi, gemm_rows):
                e = min(hi, a + gemm_rows)
                np.dot(x[a:e], B, xb[a - lo:e - lo])
        else:
            xb = XB[lo:hi]
        nfb, nsurv, nmassless, nbad = _rows_range(x, lo, hi, xb, products == 1, layout.dense, comp, coefs, scal,
                                                  drop_factor, z, use_z, L[tid], M[tid], E, P[tid], IDX, tid, out)
        info[ch, 0] = nfb
        info[ch, 1] = nsurv
        info[ch, 2] = nmassless
        info[ch, 3] = nbad


@njit(cache=True, parallel=True, fastmath={"contract"})
def guided_step_lanes(x, z, use_z, comp_t, coefs_t, scal_t, layout_t, ws_t, out):
    r"""One fused pass of the lanes path (isotropic components, small ``d``): the step of
    :func:`guided_step_rows` (same arguments and result, ``ws.info`` likewise), computed across the particles of
    each chunk of ``layout.chunk`` by :func:`_lanes_chunk` (inlined; BLAS products and recombination for
    ``layout.products`` 2, loops otherwise).  The particles it flags are compacted to the head of
    ``V[LANE_FLAG]`` and redone one by one by :func:`_lanes_redo`, a separate (not inlined) function called only
    for a chunk that has any: the per-particle path is compiled there once, outside this kernel's ``prange``
    body, and costs one call per such chunk.
    """
    comp = Components(*comp_t)
    coefs = Coefs(*coefs_t)
    scal = StepScalars(*scal_t)
    layout = Layout(*layout_t)
    ws = Workspace(*ws_t)
    n = x.shape[0]
    chunk = layout.chunk
    gemm = layout.products == 2
    n_chunks = (n + chunk - 1) // chunk
    drop_factor = math.exp(scal.log_drop)
    XT, W, V, info = ws.XT, ws.W, ws.V, ws.info
    for ch in prange(n_chunks):
        lo = ch * chunk
        hi = min(n, lo + chunk)
        tid = numba.get_thread_id()  # scratch is per thread (it stays in cache); info is per chunk
        nsurv, nfb_lanes = _lanes_chunk(x, lo, hi, comp, coefs, scal, drop_factor, z, use_z, gemm, XT[tid],
                                        W[tid], V[tid], out)
        n_flag = 0
        for r in range(hi - lo):  # compact the flagged lanes in place
            if V[tid, LANE_FLAG, r] != 0.0:
                V[tid, LANE_FLAG, n_flag] = r
                n_flag += 1
        nfb = nmassless = nbad = 0
        if n_flag > 0:
            # int64 arguments: inside the parfor's gufunc the chunk index is unsigned, and each integer type
            # would be another signature (another compile) of _lanes_redo
            nfb, ns, nmassless, nbad = _lanes_redo(x, np.int64(lo), np.int64(n_flag), np.int64(tid), layout.dense,
                                                   comp, coefs, scal, drop_factor, z, use_z, ws, out)
            nsurv += ns
        info[ch, 0] = nfb + nfb_lanes
        info[ch, 1] = nsurv
        info[ch, 2] = nmassless
        info[ch, 3] = nbad


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _lanes_redo(x, lo, n_flag, tid, dense, comp, coefs, scal, drop_factor, z, use_z, ws, out):
    """Redo the particles ``lo + V[tid, LANE_FLAG, g]``, ``g < n_flag``, that :func:`_lanes_chunk` flagged, one at
    a time on the per-particle path (:func:`_chunk_products`, then :func:`_rows_range` inlined, on thread
    ``tid``'s scratch of ``ws``); returns the summed counts of :func:`_rows_range`.

    Not inlined into :func:`guided_step_lanes` on purpose: inlined, it would put the per-particle path back into
    the lanes kernel's ``prange`` body, as in the fused kernel whose compile this split cuts (module docstring).
    Called once per chunk with flagged particles.  Compiled with the flags of a ``prange`` body (``contract``, and
    ``error_model="numpy"``, which Numba sets for parfor bodies: division by zero gives inf/NaN instead of
    raising), so it computes what the fused kernel computed, bit for bit (compared over 2304 layout, size and
    time cases).  The price: redoing a particle here took 1.3-1.6x as long as inlined in the ``prange`` body
    (502-550 against 333-408 ns, all particles of a K = 8, d = 2 step flagged; 2026-12-05, shared machine),
    which made a lanes step with many flagged particles (small ``t``) slower until the GEMM-form fallback moved into
    the lanes (:func:`_lanes_direct`, 2026-12-06: now only non-finite and massless particles come here).  Not explained;
    LLVM's ``noalias`` on the arguments (parfor bodies get it) recovered part of it in a trial.
    """
    BT = comp.BT
    xb = ws.XW[tid]
    Mc = ws.M[tid]
    nfb = nsurv = nmassless = nbad = 0
    for g in range(n_flag):
        i0 = lo + int(ws.V[tid, LANE_FLAG, g])
        _chunk_products(x, i0, i0 + 1, BT, xb, Mc)
        a, b, c, e = _rows_range(x, i0, i0 + 1, xb, True, dense, comp, coefs, scal, drop_factor, z, use_z,
                                 ws.L[tid], Mc, ws.E, ws.P[tid], ws.IDX, tid, out)
        nfb += a
        nsurv += b
        nmassless += c
        nbad += e
    return nfb, nsurv, nmassless, nbad


@njit(cache=True, inline="always")
def _rows_range(x, lo, hi, xb, have_x2, dense, comp, coefs, scal, drop_factor, z, use_z, Lc, Mc, E, Pc, IDX, ch,
               out):
    r"""Particles ``lo <= i < hi`` one at a time (products in ``xb[i - lo]``; with ``have_x2``, :math:`\|x_i\|^2` in
    ``Mc[i - lo, 2]``, from :func:`_chunk_products`): logits of all of them, one ``exp``
    pass, then mixing and recombination per particle (see :func:`guided_step_rows`; ``comp``, ``coefs`` and ``scal``
    are its argument groups, ``drop_factor`` = ``exp(scal.log_drop)``).  Returns the counts
    ``(direct-form entries, surviving components, massless particles, non-finite particles)``."""
    K_in, B, BT, spk_start = comp.K_in, comp.B, comp.BT, comp.spk_start
    coef_mu, coef_x, coef_spk = coefs.coef_mu, coefs.coef_x, coefs.coef_spk
    alpha, w, ratio, log_drop = scal.alpha, scal.w, scal.ratio, scal.log_drop
    cx, cq, cz = scal.cx, scal.cq, scal.cz
    d = x.shape[1]
    K = comp.mu.shape[0]
    C = B.shape[1]
    R = C - K
    nfb = 0
    nsurv = 0
    nmassless = 0
    nbad = 0
    # ---- logits of the whole range (products x.mu_k, x.u_j in xb[i - lo])
    for r in range(hi - lo):
        x2 = Mc[r, 2] if have_x2 else _dot_range(x, lo + r, x, lo + r, 0, d)
        fb = _logits_row(x, lo + r, x2, xb, r, comp, coefs, alpha, ratio, Lc, Pc, r)
        if fb < 0:  # |x_i|^2 is not finite: reported by the caller
            nbad += 1
            Mc[r, 0] = np.nan
            for k in range(K):
                Lc[r, k] = -np.inf
            continue
        nfb += fb
        # ---- log-sum-exp shifts: each class group's largest logit
        m_in = _max_range(Lc, r, 0, K_in)
        m_out = _max_range(Lc, r, K_in, K)
        Mc[r, 0] = m_in
        Mc[r, 1] = m_out
        for k in range(K_in):
            Lc[r, k] -= m_in  # NaN when m = -inf (no mass): dropped like -inf below
        for k in range(K_in, K):
            Lc[r, k] -= m_out
    # ---- exp of all (particle, component) pairs of the range, after all logits (the loop vectorises)
    for r in range(hi - lo):
        _exp_shifted(Lc, r, K, log_drop)
    for i in range(lo, hi):
        r = i - lo
        if i + 1 < hi:
            _prefetch_step_rows(z, use_z, out, i + 1)
        m_in = Mc[r, 0]
        if m_in != m_in:
            for l in range(d):
                out[i, l] = np.nan
            continue
        m_out = Mc[r, 1]
        z_in = _sum_range(Lc, r, 0, K_in)
        z_out = _sum_range(Lc, r, K_in, K)
        if z_in == 0.0:
            nmassless += 1
            for l in range(d):
                out[i, l] = 0.0
            continue
        # ---- guidance mixing: p(not y | x) = 1 / (1 + (z_in / z_out) e^(m_in - m_out))
        g_in, g_out = _group_factors(z_in, z_out, m_in, m_out, w)
        # beta_k; drop |beta_k| < 2^-64 max|beta| (each group's largest weight is exactly 1)
        thr = max(abs(g_in), abs(g_out)) * drop_factor  # signs differ with w < 1 or w > 1
        nsurv += _scaled_kept(Lc, r, 0, K_in, g_in, thr, E, ch) + _scaled_kept(Lc, r, K_in, K, g_out, thr, E, ch)
        for k in range(K if R > 0 else 0):
            beta = E[ch, k]
            for j in range(spk_start[k], spk_start[k + 1]):
                E[ch, K + j] = beta * coef_spk[j] * Pc[r, j] if beta != 0.0 else 0.0
        ai = _dot_range(E, ch, coef_x, 0, 0, K)  # coef_x, coef_mu are passed as (1, K) rows
        for k in range(K):
            E[ch, k] *= coef_mu[0, k]
        # ---- recombination and the step
        if dense:
            for l in range(d):
                y = _dot_range(E, ch, B, l, 0, C)
                v = cx * x[i, l] + cq * (ai * x[i, l] + y)
                if use_z:
                    v += cz * z[i, l]
                out[i, l] = v
        else:
            _sparse_recombination(x, i, z, use_z, cx + cq * ai, cq, cz, E, IDX, ch, BT, out)
    return nfb, nsurv, nmassless, nbad


@njit(cache=True, inline="always")
def _group_factors(z_in, z_out, m_in, m_out, w):
    r"""``(g_in, g_out)``: :math:`\beta_k = g\,e^{\ell_k - m}` per class group, with
    :math:`p_\neg = 1/(1 + (z_\text{in}/z_\text{out})e^{m_\text{in} - m_\text{out}})` (0 if ``z_out = 0``),
    :math:`g_\text{in} = (1 + (w-1)p_\neg)/z_\text{in}`, :math:`g_\text{out} = -(w-1)p_\neg/z_\text{out}`.

    :math:`p_\neg` is formed from :math:`e = e^{-|\Delta|}`, :math:`\Delta = m_\text{in} - m_\text{out}`, as
    :math:`z_\text{out}/(z_\text{out} + z_\text{in}e)` (:math:`\Delta \le 0`) or
    :math:`z_\text{out}e/(z_\text{out}e + z_\text{in})` (:math:`\Delta > 0`): no overflow, and no library
    call (:func:`_exp_nonpos`), so the lanes path's loop over particles vectorises (measured faster than with
    ``math.exp``).  For :math:`|\Delta| > 2|` :data:`EXP_LO` :math:`|`
    that ``e`` is :math:`e^{2\,\mathrm{EXP\_LO}} < 2^{-130}`, larger than the true value; the result is the same
    as with the true value as long as :math:`|w-1|K < 2^{65}`: with :math:`\Delta < 0`, :math:`p_\neg` rounds
    to 1 either way; with :math:`\Delta > 0`, :math:`(w-1)p_\neg` is below an ulp of 1 in :math:`g_\text{in}`
    and every out-group :math:`|\beta_k| \le |w-1|2^{-130}` is under the truncation threshold
    :math:`2^{-64}\max|\beta| \ge 2^{-65}/K`, either way.
    """
    dm = m_in - m_out
    e = _exp_nonpos(-abs(dm))
    if dm > 0.0:
        p_not = z_out * e / (z_out * e + z_in)
    else:
        p_not = z_out / (z_out + z_in * e)
    g_out = -(w - 1.0) * p_not / z_out if z_out > 0.0 else 0.0
    return (1.0 + (w - 1.0) * p_not) / z_in, g_out


@njit(cache=True, inline="always")
def _exp_nonpos(a):
    r""":math:`e^a` for :math:`a \le 0` as :math:`e^{a_1}e^{a_2}` by :func:`_exp_neg`, :math:`a_1 = \max(a,`
    :data:`EXP_LO` :math:`)`, :math:`a_2 = \max(a - a_1,` :data:`EXP_LO` :math:`)` (:math:`a - a_1` is exact):
    within 2 ulp for :math:`a \ge` ``EXP_LO`` (then :math:`e^{a_2} = 1` exactly), 10 ulp (``9u`` relative: two
    factors of at most ``4u``, one rounding) down to ``2 EXP_LO``, and
    :math:`e^{2\,\mathrm{EXP\_LO}} < 2^{-130}` below (``-inf`` and NaN included).  Branch-free."""
    a1 = a if a > EXP_LO else EXP_LO
    a2 = a - a1
    a2 = a2 if a2 > EXP_LO else EXP_LO
    return _exp_neg(a1) * _exp_neg(a2)


@njit(cache=True, inline="always")
def _sparse_recombination(x, i, z, use_z, ax, cq, cz, E, IDX, ch, BT, out):
    """``out[i] = ax x_i [+ cz z_i] + cq sum_c E[ch, c] BT[c]`` over the nonzero ``E[ch, c]``: surviving rows of
    ``BT``, padded to a multiple of eight with weight 0 (row 0 is then read, not used), eight per pass over
    ``out[i]`` (four in the first pass, which also adds ``ax x + cz z``)."""
    d = x.shape[1]
    C = BT.shape[0]
    cnt = 0
    for c in range(C):
        if E[ch, c] != 0.0:
            IDX[ch, cnt] = c
            cnt += 1
    cnt8 = max(4, (cnt + 4 + 7) // 8 * 8 - 4)
    for t in range(cnt, cnt8):
        IDX[ch, t] = 0
    c0_, c1_, c2_, c3_ = IDX[ch, 0], IDX[ch, 1], IDX[ch, 2], IDX[ch, 3]
    g0 = cq * E[ch, c0_] if cnt > 0 else 0.0
    g1 = cq * E[ch, c1_] if cnt > 1 else 0.0
    g2 = cq * E[ch, c2_] if cnt > 2 else 0.0
    g3 = cq * E[ch, c3_] if cnt > 3 else 0.0
    if use_z:
        for l in range(d):
            out[i, l] = (ax * x[i, l] + cz * z[i, l]) + ((g0 * BT[c0_, l] + g1 * BT[c1_, l])
                                                       + (g2 * BT[c2_, l] + g3 * BT[c3_, l]))
    else:
        for l in range(d):
            out[i, l] = ax * x[i, l] + ((g0 * BT[c0_, l] + g1 * BT[c1_, l]) + (g2 * BT[c2_, l] + g3 * BT[c3_, l]))
    for t in range(4, cnt8, 8):
        c0_, c1_, c2_, c3_ = IDX[ch, t], IDX[ch, t + 1], IDX[ch, t + 2], IDX[ch, t + 3]
        c4_, c5_, c6_, c7_ = IDX[ch, t + 4], IDX[ch, t + 5], IDX[ch, t + 6], IDX[ch, t + 7]
        g0 = cq * E[ch, c0_] if t < cnt else 0.0
        g1 = cq * E[ch, c1_] if t + 1 < cnt else 0.0
        g2 = cq * E[ch, c2_] if t + 2 < cnt else 0.0
        g3 = cq * E[ch, c3_] if t + 3 < cnt else 0.0
        g4 = cq * E[ch, c4_] if t + 4 < cnt else 0.0
        g5 = cq * E[ch, c5_] if t + 5 < cnt else 0.0
        g6 = cq * E[ch, c6_] if t + 6 < cnt else 0.0
        g7 = cq * E[ch, c7_] if t + 7 < cnt else 0.0
        for l in range(d):
            out[i, l] += (((g0 * BT[c0_, l] + g1 * BT[c1_, l]) + (g2 * BT[c2_, l] + g3 * BT[c3_, l]))
                          + ((g4 * BT[c4_, l] + g5 * BT[c5_, l]) + (g6 * BT[c6_, l] + g7 * BT[c7_, l])))


#: Rows of the per-lane scratch ``V`` of :func:`_lanes_chunk`.
LANE_X2, LANE_XN, LANE_FLAG, LANE_M_IN, LANE_M_OUT, LANE_G_IN, LANE_G_OUT, LANE_THR, LANE_AI, LANE_Y, LANE_NEAR = \
    range(11)
LANE_ROWS = 11


@njit(cache=True, inline="always")
def _lanes_combination(src, coef, col, dst, drow, n_r):
    """``dst[drow, r] = sum_j src[j, r] coef[j, col]`` for ``r < n_r``: sequential over ``j``, the loop over the
    lanes ``r`` innermost (it vectorises).  The lanes path's loop products and dense recombination."""
    for r in range(n_r):
        dst[drow, r] = 0.0
    for j in range(src.shape[0]):
        c = coef[j, col]
        for r in range(n_r):
            dst[drow, r] += src[j, r] * c


@njit(cache=True, inline="always")
def _lanes_chunk(x, lo, hi, comp, coefs, scal, drop_factor, z, use_z, gemm, XT, W, V, out):
    r"""The step for particles ``lo <= i < hi`` computed across them ("lanes"): every loop runs over the
    particles of the chunk, innermost, so it vectorises whatever ``K`` and ``d`` (isotropic components, ``R = 0``).

    The same formulas as :func:`_rows_range` -- GEMM-form logits with the fallback test of the module docstring,
    group maxima, :func:`_exp_neg`, :func:`_group_factors`, truncation below :math:`2^{-64}\max|\beta|`, and a dense
    recombination -- with logits and weights in ``LT`` (``K x n``, the head of the flat scratch ``W``) and
    per-particle values in the rows of ``V``.  With ``gemm`` the products :math:`B^\top x` and the recombination
    :math:`\beta^\top B^\top` are single-threaded BLAS calls (``K d n`` multiply-adds each, at most
    :data:`~numerics.fast.mixture.GEMM_BLOCK_WORK`); otherwise ``x`` is transposed into ``XT`` (``d x chunk``)
    and both are loops over the particles (sequential sums over coordinates, resp. components).
    A lane with an entry past the superset test :math:`S^2 > \rho\max(\|v\|^2, c_0)` gets the exact test and,
    where it fails, the direct form (:func:`_lanes_direct`; their count in ``V[LANE_NEAR]``).  A particle is
    flagged in ``V[LANE_FLAG]`` (and its output is to be recomputed by the caller) when :math:`\|x\|^2` is not
    finite or its class has no mass.  Returns ``(surviving (particle, component) pairs, direct-form entries)`` of
    the unflagged particles.  ``comp``, ``coefs``,
    ``scal`` and ``drop_factor`` as in :func:`_rows_range`.
    """
    K_in, mu2, mun, B, BT = comp.K_in, comp.mu2, comp.mun, comp.B, comp.BT
    const, c0, coef_mu, coef_x = coefs.const, coefs.c0, coefs.coef_mu, coefs.coef_x
    alpha, w, ratio, log_drop = scal.alpha, scal.w, scal.ratio, scal.log_drop
    cx, cq, cz = scal.cx, scal.cq, scal.cz
    n_r = hi - lo
    d = x.shape[1]
    K = mu2.shape[0]
    a2 = alpha * alpha
    LT = W[:K * n_r].reshape((K, n_r))
    if gemm:
        np.dot(BT, x[lo:hi].T, LT)
        for r in range(n_r):
            V[LANE_X2, r] = _dot_range(x, lo + r, x, lo + r, 0, d)
    else:
        for r in range(n_r):
            s = 0.0
            for l in range(d):
                v = x[lo + r, l]
                XT[l, r] = v
                s += v * v
            V[LANE_X2, r] = s
        for k in range(K):
            _lanes_combination(XT, B, k, LT, k, n_r)
    for r in range(n_r):
        s = V[LANE_X2, r]
        V[LANE_XN, r] = math.sqrt(s)
        V[LANE_FLAG, r] = 0.0 if s - s == 0.0 else 1.0  # inf or NaN
        V[LANE_M_IN, r] = -np.inf
        V[LANE_M_OUT, r] = -np.inf
        V[LANE_NEAR, r] = 0.0
    # ---- products, logits and the superset test S^2 > rho max(|v|^2, c0), component by component
    for k in range(K):
        ck, ak, mk, sk = c0[k], a2 * mu2[k], alpha * mun[k], const[k]
        g = LANE_M_IN if k < K_in else LANE_M_OUT
        for r in range(n_r):
            v2 = V[LANE_X2, r] - 2.0 * alpha * LT[k, r] + ak
            v2 = v2 if v2 > 0.0 else 0.0
            S = V[LANE_XN, r] + mk
            lim = v2 if v2 > ck else ck
            V[LANE_NEAR, r] += 1.0 if S * S > ratio * lim else 0.0
            lk = sk - 0.5 * (v2 / ck)
            LT[k, r] = lk
            V[g, r] = lk if lk > V[g, r] else V[g, r]
    # ---- entries near the test's threshold: the exact test, and the direct form where it fails (in place)
    for r in range(n_r):
        if V[LANE_NEAR, r] != 0.0 and V[LANE_FLAG, r] == 0.0:
            V[LANE_NEAR, r] = _lanes_direct(x, lo + r, r, comp, coefs, alpha, ratio, XT, gemm, LT, V)
        else:
            V[LANE_NEAR, r] = 0.0
    # ---- weights within each group, e^(l - m), and their sums
    for r in range(n_r):
        V[LANE_G_IN, r] = 0.0
        V[LANE_G_OUT, r] = 0.0
    for k in range(K):
        g = LANE_M_IN if k < K_in else LANE_M_OUT
        zrow = LANE_G_IN if k < K_in else LANE_G_OUT  # holds the group's sum until the mixing below
        for r in range(n_r):
            v = LT[k, r] - V[g, r]  # NaN when m = -inf (no mass): dropped
            keep = v >= log_drop
            vc = v if v > EXP_LO else EXP_LO
            e = _exp_neg(vc)
            e = e if keep else 0.0
            LT[k, r] = e
            V[zrow, r] += e
    # ---- guidance mixing and the truncation threshold
    for r in range(n_r):
        z_in = V[LANE_G_IN, r]
        if z_in == 0.0:
            V[LANE_FLAG, r] += 1.0
            z_in = 1.0
        g_in, g_out = _group_factors(z_in, V[LANE_G_OUT, r], V[LANE_M_IN, r], V[LANE_M_OUT, r], w)
        V[LANE_G_IN, r] = g_in
        V[LANE_G_OUT, r] = g_out
        V[LANE_THR, r] = max(abs(g_in), abs(g_out)) * drop_factor
        V[LANE_AI, r] = 0.0
    # ---- beta_k (0 below the threshold), a = sum beta_k coef_x[k], then beta_k coef_mu[k]
    nsurv = 0
    nfb = 0
    for r in range(n_r):
        nfb += int(V[LANE_NEAR, r]) if V[LANE_FLAG, r] == 0.0 else 0
    for k in range(K):
        g = LANE_G_IN if k < K_in else LANE_G_OUT
        cxk, cmk = coef_x[0, k], coef_mu[0, k]
        for r in range(n_r):
            b = LT[k, r] * V[g, r]
            keep = (b if b > 0.0 else -b) >= V[LANE_THR, r]
            b = b if keep else 0.0
            nsurv += 1 if keep and V[LANE_FLAG, r] == 0.0 else 0
            V[LANE_AI, r] += b * cxk
            LT[k, r] = b * cmk
    # ---- dense recombination and the step
    if gemm:
        Y = W[K * n_r:(K + d) * n_r].reshape((n_r, d))
        np.dot(LT.T, BT, Y)
        for r in range(n_r):
            ai = V[LANE_AI, r]
            i = lo + r
            if use_z:
                for l in range(d):
                    out[i, l] = (cx * x[i, l] + cq * (ai * x[i, l] + Y[r, l])) + cz * z[i, l]
            else:
                for l in range(d):
                    out[i, l] = cx * x[i, l] + cq * (ai * x[i, l] + Y[r, l])
        return nsurv, nfb
    for l in range(d):
        _lanes_combination(LT, BT, l, V, LANE_Y, n_r)
        for r in range(n_r):
            xv = XT[l, r]
            v = cx * xv + cq * (V[LANE_AI, r] * xv + V[LANE_Y, r])
            if use_z:
                v += cz * z[lo + r, l]
            out[lo + r, l] = v
    return nsurv, nfb


@njit(cache=True, inline="always")
def _lanes_direct(x, i, r, comp, coefs, alpha, ratio, XT, gemm, LT, V):
    r"""Lane ``r`` (particle ``i``) of :func:`_lanes_chunk`, some of whose entries passed the superset test
    :math:`S^2 > \rho\max(\|v\|^2, c_0)`: per component the exact test of :func:`_quad_row`,
    :math:`S^2 > \rho\max(\|v\|^2 + 2\|v\|S, c_0)`, on the GEMM-form :math:`\|v\|^2` (its product
    :math:`x\cdot\mu_k` summed again, over the coordinates in order as :func:`_lanes_combination` does; with
    ``gemm`` the BLAS call's sum may differ from it in the last bits), and where it fails the logit ``LT[k, r]``
    in the direct form, :math:`\ell_k = \mathrm{const}_k - \tfrac12\|x - \alpha\mu_k\|^2/c_0` (as
    :func:`_quad_row`, no spikes); then the lane's group maxima again.  Returns the number of direct-form
    entries.  Zero-weight components (``const = -inf``) keep their logit, as in :func:`_logits_row`."""
    K_in, mu, mu2, mun = comp.K_in, comp.mu, comp.mu2, comp.mun
    const, c0 = coefs.const, coefs.c0
    d = x.shape[1]
    K = mu.shape[0]
    x2, xn = V[LANE_X2, r], V[LANE_XN, r]
    nfb = 0
    for k in range(K):
        if const[k] == -np.inf:
            continue
        p = 0.0
        for l in range(d):
            p += (x[i, l] if gemm else XT[l, r]) * mu[k, l]
        v2 = x2 - 2.0 * alpha * p + alpha * alpha * mu2[k]
        v2 = v2 if v2 > 0.0 else 0.0
        S = xn + alpha * mun[k]
        if S * S > ratio * max(v2 + 2.0 * math.sqrt(v2) * S, c0[k]):
            v2 = 0.0
            for l in range(d):
                vl = x[i, l] - alpha * mu[k, l]
                v2 += vl * vl
            LT[k, r] = const[k] - 0.5 * (v2 / c0[k])
            nfb += 1
    m_in = m_out = -np.inf
    for k in range(K_in):
        m_in = LT[k, r] if LT[k, r] > m_in else m_in
    for k in range(K_in, K):
        m_out = LT[k, r] if LT[k, r] > m_out else m_out
    V[LANE_M_IN, r] = m_in
    V[LANE_M_OUT, r] = m_out
    return float(nfb)


@njit(cache=True, parallel=True)
def stream_update(x, z, use_z, cx, cz, out):
    """``out = cx x [+ cz z]``: the memory traffic of a step without its model (the bench's ``stream`` floor)."""
    n, d = x.shape
    for i in prange(n):
        if use_z:
            for l in range(d):
                out[i, l] = cx * x[i, l] + cz * z[i, l]
        else:
            for l in range(d):
                out[i, l] = cx * x[i, l]


@njit(cache=True, inline="always")
def _quad_row(x, i, k, x2, xn, xb, r, comp, c0k, omega, alpha, ratio, form, P, ch):
    r"""Quadratic form :math:`v^\top C_k^{-1} v` of particle ``i`` (products in ``xb[r]``), component ``k``
    (``comp``: :class:`Components`), in the GEMM form, the direct form, or (``form`` = :data:`FORM_AUTO`) the
    GEMM form with the fallback test of the module docstring; leaves :math:`p_j` in ``P[ch, j]``.  Returns
    ``(quad, used_direct)``.
    """
    mu, mu2, mun, spikeT, muU, spk_start = comp.mu, comp.mu2, comp.mun, comp.spikeT, comp.muU, comp.spk_start
    K = mu.shape[0]
    d = x.shape[1]
    S = xn + alpha * mun[k]
    v2 = x2 - 2.0 * alpha * xb[r, k] + alpha * alpha * mu2[k]
    if v2 < 0.0:
        v2 = 0.0
    direct = form == FORM_DIRECT
    if form == FORM_AUTO:
        direct = S * S > ratio * max(v2 + 2.0 * math.sqrt(v2) * S, c0k)
    if direct:
        v2 = 0.0
        for l in range(d):
            vl = x[i, l] - alpha * mu[k, l]
            v2 += vl * vl
        for j in range(spk_start[k], spk_start[k + 1]):
            pj = 0.0
            for l in range(d):
                pj += spikeT[j, l] * (x[i, l] - alpha * mu[k, l])
            P[ch, j] = pj
    else:
        for j in range(spk_start[k], spk_start[k + 1]):
            P[ch, j] = xb[r, K + j] - alpha * muU[j]
    quad = v2 / c0k
    for j in range(spk_start[k], spk_start[k + 1]):
        pj = P[ch, j]
        quad -= pj * pj * omega[j]
    if quad < 0.0:
        quad = 0.0
    return quad, direct


r"""The Python front of the fast path: :class:`FastMixture` (set-up, validation, work arrays) and the steps.

The jitted kernels are in :mod:`numerics.fast.kernels` (its module docstring has the method, the error
bounds and the design); this module holds no ``@njit`` code, so editing it does not invalidate Numba's cache
of the kernels.  The layout constants below are read when a step is called (tests patch them).
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from numerics.constants import LOG_2PI, UNIT_ROUNDOFF
from numerics.fast.kernels import (FORM_AUTO, FORM_DIRECT, FORM_GEMM, LANE_ROWS, LOG_DROP, Coefs, Components,
                                   Layout, StepScalars, Workspace, guided_step_lanes, guided_step_rows,
                                   logits)
from numerics.fast.spiked import spiked_factors
from numerics.fast.warmup import await_background_compile
from numerics.schedule import alpha_sigma2
from numerics.validate import check_points, check_time

__all__ = ["FastMixture", "agreement_bound", "guided_ddim_step", "guided_ddpm_step", "logit_error_bounds",
           "GEMM_RATIO", "DENSE_DIM", "LANES_DIM", "CHUNK"]

#: :math:`\rho`: the GEMM form is kept while its error bound is at most this multiple of the direct form's.
GEMM_RATIO = 64.0
#: Up to this dimension the recombination is a dense dot per output coordinate; above it only the surviving
#: rows of :math:`B^\top` are added, eight per (vectorised) pass over the output row.  Chosen by measuring the
#: whole step (2 threads, K = 64) at d = 2, 8, 16, 32: dense was faster up to d = 8, the rows from d = 16 on.
DENSE_DIM = 8
#: Largest ``rows x d x (K+R)`` of one in-kernel BLAS call: OpenBLAS runs a GEMM of at most 4 x 65536
#: multiply-adds on the calling thread (its ``GEMM_MULTITHREAD_THRESHOLD``), so the calls never start BLAS threads.
GEMM_BLOCK_WORK = 4 * 65536
#: Up to this dimension, mixtures of isotropic components are stepped across the particles of a chunk
#: (:func:`numerics.fast.kernels._lanes_chunk`) rather than particle by particle.
LANES_DIM = 16
#: From this dimension on, the lanes path forms its products and recombination by BLAS calls.
LANES_GEMM_DIM = 8
#: Particles per ``prange`` work item of the lanes path: each of its loops runs over this many particles, so
#: that their set-up cost is spread (measured: the cost per particle falls from chunks of 64 to 256 to 1024).
LANES_CHUNK = 512
#: Particles per ``prange`` work item of :func:`~numerics.fast.kernels.guided_step_rows` (scheduled dynamically).
CHUNK = 64
#: A step of at most this many particles runs its kernel on the calling thread only (``numba.set_num_threads(1)``
#: for the call; the result does not depend on the thread count): starting and joining the thread team costs more
#: than such a step's work.  Measured on the two-core machine shared with other jobs (load average 8-11,
#: 2026-12-06), best of 7 repeats of one denoiser call, 1 thread vs 2: 64 particles 84-125 vs 492-1023 us,
#: 256 particles 36-233 vs 300-1001 us (d = 2: the order claim's Gaussian, the samplers claims' two-class mixture
#: and an isotropic K = 8 mixture); from 1024 particles on two threads were faster for some of them.
SERIAL_PARTICLES = 256


class Ordered(NamedTuple):
    """The components for one label, class ``y`` first (:meth:`FastMixture._ordered`)."""

    perm: np.ndarray  #: ``(K,)`` int64: component ``perm[k]`` of the mixture is component ``k`` of ``comp``
    sperm: np.ndarray  #: ``(R,)`` int64: the same for the spikes
    comp: Components


class FastMixture:
    r"""Fast guided evaluation of a :class:`~numerics.mixture.GaussianMixture` (GEMM form with fallback).

    Results agree with ``gm.score`` / ``gm.denoiser`` / ``gm.guidance_vector`` to the bounds stated in
    ``tests/test_bench.py``.  Work arrays are cached per particle count (reused across steps).

    Parameters
    ----------
    gm : GaussianMixture
    ratio : float
        :math:`\rho` of the GEMM-form fallback test (module docstring of :mod:`numerics.fast.kernels`).
    products : {"auto", "dgemm", "loops", "blas"}
        How the products :math:`x_i \cdot \mu_k, x_i \cdot u_j` are formed: in-kernel BLAS blocks, in-kernel
        register-tiled loops, one multithreaded BLAS call before the kernel (slow on few cores; for tests), or
        ``auto`` (the loops, :meth:`_products_mode`).  On the lanes path (isotropic components,
        ``d <=`` :data:`LANES_DIM`): BLAS calls per chunk for ``dgemm``, and for ``auto`` from
        ``d =`` :data:`LANES_GEMM_DIM` on, loops otherwise (:meth:`_layout`).
    """

    def __init__(self, gm, ratio: float = GEMM_RATIO, products: str = "auto"):
        if products not in ("auto", "loops", "dgemm", "blas"):
            raise ValueError(f"products: must be 'auto', 'loops', 'dgemm' or 'blas', got {products!r}")
        self.products = products
        self.gm = gm
        self.d, self.K = gm.d, gm.K
        self.labels = gm.labels
        self.log_weights = np.ascontiguousarray(gm.log_weights)
        self.ratio = float(ratio)
        lam0, U, delta = spiked_factors(gm.evecs, gm.evals, gm.rank)
        self.lam0 = lam0
        cols, owner, dl, start = [], [], [], [0]
        for k in range(self.K):
            sel = delta[k] > 0.0
            cols.append(U[k][:, sel].T)
            dl.append(delta[k][sel])
            owner += [k] * int(sel.sum())
            start.append(start[-1] + int(sel.sum()))
        self.spikeT = np.ascontiguousarray(np.concatenate(cols, axis=0)) if cols else np.zeros((0, self.d))
        self.delta = np.concatenate(dl) if dl else np.zeros(0)
        self.owner = np.asarray(owner, dtype=np.int64)
        self.spk_start = np.asarray(start, dtype=np.int64)
        self.R = self.spikeT.shape[0]
        self.mu = np.ascontiguousarray(gm.means)
        self.mu2 = np.einsum("kd,kd->k", self.mu, self.mu)
        self.mun = np.sqrt(self.mu2)
        self.muU = np.einsum("jd,jd->j", self.spikeT, self.mu[self.owner]) if self.R else np.zeros(0)
        self.BT = np.ascontiguousarray(np.concatenate([self.mu, self.spikeT], axis=0))  # (K+R, d)
        self.B = np.ascontiguousarray(self.BT.T)  # (d, K+R)
        self.comp = Components(self.K, self.mu, self.mu2, self.mun, self.spikeT, self.muU, self.spk_start, self.B,
                               self.BT)  # mixture order (for logits)
        self._work: dict = {}
        self._orders: dict = {}
        self.last_info: np.ndarray | None = None

    # ------------------------------------------------------------------ pieces
    def _consts(self, alpha, sigma2, quantity) -> Coefs:
        """The per-time constants of all components (mixture order) for ``quantity`` (``score`` or ``denoiser``)."""
        a2 = alpha * alpha
        c0 = a2 * self.lam0 + sigma2
        c0o = c0[self.owner]
        cj = c0o + a2 * self.delta
        l1p = np.log1p(a2 * self.delta / c0o)
        logdet = self.d * np.log(c0) + np.bincount(self.owner, weights=l1p, minlength=self.K)
        const = self.log_weights - 0.5 * (self.d * LOG_2PI + logdet)
        omega = a2 * self.delta / (c0o * cj)
        if quantity == "score":
            coef_mu, coef_x, coef_spk = alpha / c0, -1.0 / c0, omega
        else:
            coef_mu, coef_x = sigma2 / c0, alpha * self.lam0 / c0
            coef_spk = alpha * sigma2 * self.delta / (c0o * cj)
        return Coefs(c0, const, omega, coef_mu, coef_x, coef_spk)

    def _ordered(self, y) -> Ordered:
        """Per-label data with the class-``y`` components first (all components for ``y = None``; cached)."""
        key = None if y is None else int(y)
        hit = self._orders.get(key)
        if hit is not None:
            return hit
        mask = np.ones(self.K, dtype=bool) if key is None else self.labels == key
        perm = np.concatenate([np.nonzero(mask)[0], np.nonzero(~mask)[0]]).astype(np.int64)
        sperm = np.concatenate([np.arange(self.spk_start[k], self.spk_start[k + 1]) for k in perm]
                               + [np.zeros(0)]).astype(np.int64)
        counts = np.diff(self.spk_start)[perm]
        spk_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        mu = np.ascontiguousarray(self.mu[perm])
        spikeT = np.ascontiguousarray(self.spikeT[sperm])
        BT = np.ascontiguousarray(np.concatenate([mu, spikeT], axis=0))
        comp = Components(int(mask.sum()), mu, self.mu2[perm].copy(), self.mun[perm].copy(), spikeT,
                          self.muU[sperm].copy(), spk_start, np.ascontiguousarray(BT.T), BT)
        hit = Ordered(perm, sperm, comp)
        self._orders[key] = hit
        return hit

    def _products_mode(self):
        """``(mode, gemm_rows)`` for :func:`~numerics.fast.kernels.guided_step_rows` (``Layout.products`` and
        ``Layout.gemm_rows``; see there).

        ``auto``: the register-tiled loops of :func:`~numerics.fast.kernels._chunk_products` (measured faster
        than the in-kernel BLAS blocks of ``dgemm`` for large ``d`` and ``K``, and within noise of them for
        spiked components of small ``d``).
        """
        C = self.K + self.R
        rows = max(1, min(CHUNK, GEMM_BLOCK_WORK // (self.d * C)))
        mode = {"blas": 0, "loops": 1, "dgemm": 2, "auto": 1}[self.products]
        return mode, rows

    def _lanes(self) -> bool:
        """Whether the step runs across particles (:func:`~numerics.fast.kernels.guided_step_lanes`) rather than
        particle by particle (:func:`~numerics.fast.kernels.guided_step_rows`): isotropic components and
        ``d <=`` :data:`LANES_DIM`."""
        return self.R == 0 and self.d <= LANES_DIM

    def _layout(self) -> Layout:
        """The :class:`~numerics.fast.kernels.Layout` of a step: ``(lanes, products, gemm_rows, chunk, dense)``.

        Per-particle path: :meth:`_products_mode` and chunks of :data:`CHUNK`.  Lanes path: BLAS (``products`` 2)
        for ``d >=`` :data:`LANES_GEMM_DIM` unless ``products='loops'``, in chunks of at most
        ``GEMM_BLOCK_WORK / (K d)`` particles (so each call stays on the calling thread) when that is at least
        64, otherwise loops in chunks of :data:`LANES_CHUNK`.  ``dense``: ``d <=`` :data:`DENSE_DIM`.
        """
        dense = self.d <= DENSE_DIM
        if not self._lanes():
            mode, rows = self._products_mode()
            return Layout(False, mode, rows, CHUNK, dense)
        cap = GEMM_BLOCK_WORK // (self.K * self.d) // 8 * 8
        want = self.products == "dgemm" or (self.products == "auto" and self.d >= LANES_GEMM_DIM)
        if want and cap >= 64:
            return Layout(True, 2, 0, min(LANES_CHUNK, cap), dense)
        return Layout(True, 1, 0, LANES_CHUNK, dense)

    def workspace(self, n: int, layout: Layout | None = None) -> Workspace:
        """The :class:`~numerics.fast.kernels.Workspace` of a step of ``n`` particles with ``layout`` (default
        :meth:`_layout`): ``XB`` (``n x (K+R)``, BLAS products, only with ``products='blas'``) and per-thread
        scratch, allocated once per ``(n, layout)``.  The lanes path uses ``XT, W, V`` and one row of the
        per-particle scratch (for the particles it hands back)."""
        if layout is None:
            layout = self._layout()
        blas = self.products == "blas"
        lanes, mode, chunk = layout.lanes, layout.products, layout.chunk
        key = (n, chunk, blas, lanes, mode)
        ws = self._work.get(key)
        if ws is None:
            C = self.K + self.R
            nc = (n + chunk - 1) // chunk
            nt = numba.config.NUMBA_NUM_THREADS  # numba.get_thread_id() < nt
            rows = 1 if lanes else chunk
            lc = chunk if lanes else 1
            ws = Workspace(XB=np.empty((n, C)) if blas and not lanes else np.empty((1, C)),
                           XW=np.empty((nt, rows, C)),
                           L=np.empty((nt, rows, self.K)),
                           M=np.empty((nt, rows, 3)),
                           E=np.empty((nt, C)),
                           P=np.empty((nt, rows, max(self.R, 1))),
                           IDX=np.empty((nt, C + 8), dtype=np.int64),
                           XT=np.empty((nt, self.d if mode == 1 else 1, lc)),
                           W=np.empty((nt, (self.K + self.d) * lc)),
                           V=np.empty((nt, LANE_ROWS, lc)),
                           info=np.zeros((nc, 4), dtype=np.int64))
            self._work = {key: ws}
        return ws

    def _run(self, x, t, quantity, y, w, cx, cq, cz, z, out):
        X, single = check_points(x, self.d, check_finite=False)  # finiteness: checked in the kernel
        alpha, sigma2 = alpha_sigma2(check_time(t))
        if y is None:
            w = 1.0
        perm, sperm, comp = self._ordered(y)
        co = self._consts(alpha, sigma2, quantity)
        coefs = Coefs(co.c0[perm], co.const[perm], co.omega[sperm], co.coef_mu[perm][None, :],
                      co.coef_x[perm][None, :], co.coef_spk[sperm])  # coef_mu, coef_x as (1, K) rows
        n = X.shape[0]
        layout = self._layout()
        ws = self.workspace(n, layout)
        if layout.products == 0:
            np.matmul(X, comp.B, out=ws.XB)
        if out is None:
            out = np.empty((n, self.d))
        elif out.shape != X.shape or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"out: expected a C-contiguous float64 array of shape {X.shape}")
        elif np.shares_memory(out, X) or (z is not None and np.shares_memory(out, z)):
            raise ValueError("out: must not overlap x or z")
        use_z = z is not None
        zz = np.ascontiguousarray(z, dtype=np.float64) if use_z else X
        if use_z and zz.shape != X.shape:
            raise ValueError(f"z: expected shape {X.shape}, got {zz.shape}")
        scal = StepScalars(alpha, float(w), self.ratio, LOG_DROP, float(cx), float(cq), float(cz))
        old = numba.set_parallel_chunksize(1)  # dynamic schedule over chunks: robust to a busy core
        threads = numba.get_num_threads()
        serial = n <= SERIAL_PARTICLES and threads > 1
        if serial:
            numba.set_num_threads(1)
        try:
            # one kernel per path, each compiled on first use (a run compiles only the path it takes); plain
            # tuples: the kernel names them again (see guided_step_rows: named ones dispatch slower)
            kernel = guided_step_lanes if layout.lanes else guided_step_rows
            if not kernel.overloads:  # first call: let a run's compiling process finish, then load its cache
                await_background_compile()
            kernel(X, zz, use_z, tuple(comp), tuple(coefs), tuple(scal), tuple(layout), tuple(ws), out)
        finally:
            numba.set_parallel_chunksize(old)
            if serial:
                numba.set_num_threads(threads)
        self.last_info = ws.info
        if ws.info[:, 3].any():
            check_points(X, self.d)  # names a NaN or infinite coordinate
            raise ValueError("x: |x|^2 overflows float64 (coordinates of order 1e154 or larger)")
        if ws.info[:, 2].any():
            raise ValueError("x: a point is so far from every component that its density underflows to 0")
        return out[0] if single else out

    # ------------------------------------------------------------------ public
    def score(self, x, t) -> np.ndarray:
        r""":math:`\nabla_x\log p_t(x)`; OU time ``t``."""
        return self._run(x, t, "score", None, 1.0, 0.0, 1.0, 0.0, None, None)

    def denoiser(self, x, t) -> np.ndarray:
        r""":math:`E[X_0\mid X_t = x]`; OU time ``t``."""
        return self._run(x, t, "denoiser", None, 1.0, 0.0, 1.0, 0.0, None, None)

    def guided_score(self, x, t, y: int, w: float) -> np.ndarray:
        r""":math:`\nabla\log p_t(x) + w\,\nabla\log p_t(y\mid x)`."""
        return self._run(x, t, "score", y, w, 0.0, 1.0, 0.0, None, None)

    def guided_denoiser(self, x, t, y: int, w: float) -> np.ndarray:
        r""":math:`D(x) + w(\sigma_t^2/\alpha_t)\nabla\log p_t(y\mid x)`."""
        return self._run(x, t, "denoiser", y, w, 0.0, 1.0, 0.0, None, None)

    def logits(self, x, t, form: str = "auto"):
        """``(L, used_direct)``: :math:`\\log w_k + \\log N(x;\\alpha\\mu_k, C_k)` per (particle, component)."""
        X, _ = check_points(x, self.d)
        X = np.ascontiguousarray(X)
        alpha, sigma2 = alpha_sigma2(check_time(t))
        co = self._consts(alpha, sigma2, "score")
        n = X.shape[0]
        XB = X @ self.B
        L = np.empty((n, self.K))
        used = np.empty((n, self.K), dtype=np.bool_)
        P = np.empty((n, max(self.R, 1)))
        code = {"auto": FORM_AUTO, "gemm": FORM_GEMM, "direct": FORM_DIRECT}[form]
        logits(X, XB, self.comp, co, alpha, self.ratio, code, L, used, P)
        return L, used


def guided_ddim_step(fm: FastMixture, x, t: float, s: float, y: int, w: float, out=None) -> np.ndarray:
    r"""One guided DDIM step :math:`x_s = c_x x_t + c_q D_w(x_t)` from OU time ``t`` to ``s < t``."""
    from numerics.generated.integrator_coeffs import ddim_coeffs

    if not 0.0 < s < t:
        raise ValueError(f"s: need 0 < s < t, got s={s!r}, t={t!r}")
    cx, cq = ddim_coeffs(float(t), float(s))
    return fm._run(x, t, "denoiser", y, w, cx, cq, 0.0, None, out)


def guided_ddpm_step(fm: FastMixture, x, t: float, s: float, y: int, w: float, z, out=None) -> np.ndarray:
    r"""One guided DDPM step :math:`x_s = c_x x_t + c_q D_w(x_t) + c_z z` (``z`` standard normal, ``(N, d)``)."""
    from numerics.generated.integrator_coeffs import ddpm_coeffs

    if not 0.0 < s < t:
        raise ValueError(f"s: need 0 < s < t, got s={s!r}, t={t!r}")
    cx, cq, cz = ddpm_coeffs(float(t), float(s))
    return fm._run(x, t, "denoiser", y, w, cx, cq, cz, z, out)


def logit_error_bounds(fm: FastMixture, x, t):
    r"""Per (particle, component) first-order bounds ``(E_gemm, E_direct)`` on the logit error.

    With :math:`S = \|x\| + \alpha\|\mu_k\|`, :math:`\gamma = \gamma_{d+4}`, :math:`e = \gamma S` (error of each
    GEMM-form projection :math:`p_j`, :math:`\|u_j\| = 1`) and :math:`\omega_j = \alpha^2\delta_j/(c_0 c_j) < 1/c_0`:

    .. math::
        E_\text{gemm} &= \tfrac12\Big(\gamma S^2/c_0 + \sum_j \omega_j (2|p_j| e + e^2)\Big) + \gamma\,(|\ell| + 1) \\
        E_\text{direct} &= \tfrac12\Big(\gamma(\|v\|^2 + 2\|v\| S)/c_0 + \sum_j \omega_j(2|p_j| e_v + e_v^2)\Big)
                         + \gamma\,(|\ell| + 1),\quad e_v = \gamma(\|v\| + S)

    The last term covers the rounding of the final sum and of the constants (shared by both forms).
    """
    X, _ = check_points(x, fm.d)
    alpha, sigma2 = alpha_sigma2(check_time(t))
    u = UNIT_ROUNDOFF
    n = fm.d + 4
    gam = n * u / (1 - n * u)
    co = fm._consts(alpha, sigma2, "score")
    c0, omega = co.c0, co.omega
    S = np.linalg.norm(X, axis=1)[:, None] + alpha * fm.mun[None, :]
    v = X[:, None, :] - alpha * fm.mu[None, :, :]
    vn = np.linalg.norm(v, axis=2)
    L_abs = np.abs(fm.logits(X, t, "direct")[0])
    e = gam * S
    ev = gam * (vn + S)
    spk_g = np.zeros_like(S)
    spk_d = np.zeros_like(S)
    for j in range(fm.R):
        k = fm.owner[j]
        pj = np.abs(v[:, k, :] @ fm.spikeT[j])
        spk_g[:, k] += omega[j] * (2 * pj * e[:, k] + e[:, k] ** 2)
        spk_d[:, k] += omega[j] * (2 * pj * ev[:, k] + ev[:, k] ** 2)
    floor = gam * (L_abs + 1.0)
    E_gemm = 0.5 * (gam * S**2 / c0 + spk_g) + floor
    E_direct = 0.5 * (gam * (vn**2 + 2 * vn * S) / c0 + spk_d) + floor
    return E_gemm, E_direct


def _component_quantities(gm, x, t, quantity):
    """Per-component score or denoiser ``(N, K, d)`` from the model's formulas (float64, direct solves)."""
    alpha, sigma2 = alpha_sigma2(t)
    covs = gm.covs
    C = alpha**2 * covs + sigma2 * np.eye(gm.d)
    v = x[:, None, :] - alpha * gm.means[None]
    Cv = np.linalg.solve(C[None], v[..., None])[..., 0]
    if quantity == "score":
        return -Cv
    return gm.means[None] + alpha * np.einsum("kij,nkj->nki", covs, Cv)


def agreement_bound(fm: FastMixture, gm, x, t, quantity: str) -> np.ndarray:
    r"""Per-point bound ``(N, 1)`` on ``|fast - reference|`` for the score or denoiser of ``gm`` at ``x``.

    A logit error :math:`\varepsilon` perturbs the posterior weights relatively by at most
    :math:`2\varepsilon`, hence the mixture average :math:`Q = \sum_k \pi_k q_k` by at most
    :math:`2\varepsilon \max_k |q_k - Q|`; the rounding of the sum adds :math:`\gamma_n \max_k |q_k|`,
    :math:`n = d + K + R + 8`. With :math:`\varepsilon` the largest GEMM-form logit bound
    (:func:`logit_error_bounds`) among components of non-negligible weight (the direct form's is smaller),
    two float64 implementations agree within the sum of both, doubled for the first-order neglect:

    .. math:: \mathrm{tol} = 2\,(2\,\varepsilon\,\mathrm{spread} + \gamma_n\,\mathrm{scale}).
    """
    X, _ = check_points(x, fm.d)
    t = check_time(t)
    u = UNIT_ROUNDOFF
    n = gm.d + gm.K + fm.R + 8
    gam = n * u / (1 - n * u)
    q = _component_quantities(gm, X, t, quantity)
    ref = getattr(gm, quantity)(X, t)
    Eg, _ = logit_error_bounds(fm, X, t)
    L, _ = fm.logits(X, t, "direct")
    heavy = L - L.max(axis=1, keepdims=True) > -40.0
    eps = np.where(heavy, Eg, 0.0).max(axis=1)
    spread = np.abs(q - ref[:, None, :]).max(axis=(1, 2))
    scale = np.abs(q).max(axis=(1, 2)) + np.abs(X).max(axis=1) / min(1.0, -np.expm1(-2 * t))
    return (2.0 * (2.0 * eps * spread + gam * scale))[:, None]

r"""Guided diffusion samplers on a decreasing grid of OU forward times.

Every method takes one step from forward time :math:`t` to :math:`s < t` as

.. math::  x_s = c_x\,x_t + c_q\,q(x_t, t) \;[+\,c_{q'}\,q(x_{t'}, t')]\;[+\,c_z\,z],\qquad z\sim N(0, I),

with the generated coefficients of :mod:`numerics.generated.integrator_coeffs` and ``q`` one of

* the guided denoiser :math:`D_w = (x + \sigma_t^2 s_w)/\alpha_t` (``ddim``, ``ddpm``, ``ddim_eta``,
  ``dpm_solver_2``), computed without cancellation as :math:`D + w\,(\sigma_t^2/\alpha_t)\,g_y`;
* the guided noise prediction :math:`\varepsilon_w = -\sigma_t s_w` (``dpm_solver_1``);
* the guided score :math:`s_w` (``ei_ode``, ``ei_sde``, ``ei_sde_code``, ``euler``, ``euler_maruyama``);

which one, the coefficient function, the order and the rest are the method's record in the table
:data:`numerics.methods.TABLE`.

Guidance forms: ``"cg"`` :math:`s_w = s + w\,g_y` (:math:`g_y = \nabla\log p_t(y\mid x)`);
``"cfg"`` :math:`s_w = w\,s_y + (1-w)\,s`; ``"cg_mean"`` (``ddpm`` only): the unguided posterior mean
plus :math:`w\,\mathrm{mean\_form}(t,s)\,g_y` (``ddpm_guidance_shifts``).

Randomness: a single ``np.random.default_rng(seed)`` draws ``x_init`` (if not given) and then one
``(n, d)`` block per step of a stochastic method, all in NumPy, so the output does not depend on the
number of Numba threads.  ``noise="blocks"`` (opt-in) replaces the step noise by a counter-based stream, each row
block of each step keyed on ``(seed, step, block)`` (:class:`_BlockNoise`), which threads may draw in any order
with the same values.  The per-step update is NumPy; the score kernels are Numba.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from numerics.grids import check_grid, default_grid
from numerics.methods import (DENOISER_METHODS, GUIDANCE_FORMS, METHODS, SCORE_METHODS, STOCHASTIC_METHODS, Method,
                              check_eta, check_form, get_method, grid_coefficients)
from numerics.mixture import GaussianMixture
from numerics.schedule import alpha_sigma2
from numerics.target import ScoreModel, Target
from numerics.validate import (check_array, check_bool, check_choice, check_int, check_label, check_nonneg_scalar,
                               check_seed)

__all__ = ["sample", "GuidedQuantities", "ScoreModel", "Target", "METHODS", "GUIDANCE_FORMS", "DENOISER_METHODS",
           "SCORE_METHODS", "STOCHASTIC_METHODS", "default_grid", "MAX_GUIDANCE", "MAX_X_INIT", "MAX_ELEMENTS"]

#: Largest guidance weight ``sample`` accepts.  Weights used in practice are O(1)-O(100); the guided
#: quantities are ``s + w g`` and ``D + w (sigma^2/alpha) g``, and one step moves a particle by about
#: ``w h |g|``: with ``w`` beyond 1e8 a step of an ordinary grid throws particles ~1e8 times further than the
#: data's scale, and a few such steps take them out of the range where the target's density is representable
#: (squared distances over sigma_t^2 beyond DBL_MAX), which surfaced as an error blaming the particles.  A
#: larger weight is refused up front, naming ``guidance``.
MAX_GUIDANCE = 1e8
#: Largest ``max |x_init|`` ``sample`` accepts: a density-based target forms ``|x - alpha mu|^2 / c`` with
#: ``c >= sigma_t^2``, finite only for ``|x| < sqrt(DBL_MAX) ~ 1.3e154`` (times sigma_t / sqrt(d)); 1e150 leaves
#: a factor 1e4 of headroom for d and sigma_t.
MAX_X_INIT = 1e150
#: Largest number of float64 values in one ``(n, d)`` array (or the ``(len(grid), n, d)`` trajectory) ``sample``
#: allocates: 2**31 values = 16 GiB.  A larger ``n`` is refused up front (naming ``n``) instead of a NumPy
#: MemoryError or "array is too big" error after the grid has been checked.
MAX_ELEMENTS = 2**31
#: Smallest ``(n, d)`` noise block that :class:`_Noise` draws on a helper thread, one step ahead (2**15 values take
#: about 0.3 ms to draw at 9.6 ns per normal; a thread hand-off costs tens of microseconds).  (1000, 64) blocks
#: and larger are drawn ahead.
AHEAD_ELEMENTS = 2**15
#: Values per block of the counter-based noise stream (``sample(..., noise="blocks")``, :class:`_BlockNoise`): a step's
#: ``(n, d)`` block is cut into row blocks of ``max(1, BLOCK_VALUES // d)`` rows, whatever the thread count.  2**15
#: values take about 0.25 ms to draw (SFC64, about 7.5 ns per normal) against about 20 us to seed the block's generator.
BLOCK_VALUES = 2**15
#: The noise streams :func:`sample` offers (``noise=``).
NOISE_STREAMS: tuple[str, ...] = ("sequential", "blocks")


class GuidedQuantities:
    """The guided score / denoiser / noise prediction of a target at fixed label, weight and form.

    With ``fast`` and a :class:`GaussianMixture` (the class itself: a subclass may override what the kernels
    compute) every mixture quantity is evaluated by :class:`numerics.fast.FastMixture` (one fused GEMM-form
    pass); otherwise by the target's own methods (for a mixture, the reference kernel)."""

    def __init__(self, target, label: int | None, w: float, form: str, fast: bool = True):
        self.target, self.label, self.w, self.form = target, label, w, form
        self.unguided = label is None
        self._fast = self._cond_fast = None
        self._cond = None  # the class-conditional mixture of cfg (its denoiser)
        if not self.unguided and form == "cfg" and isinstance(target, GaussianMixture):
            self._cond = target.conditional(label)
        if fast and type(target) is GaussianMixture:
            from numerics.fast import FastMixture

            self._fast = FastMixture(target)
            if self._cond is not None:
                self._cond_fast = FastMixture(self._cond)
        self._plain = target if self._fast is None else self._fast  # the unguided score and denoiser

    def score(self, x: np.ndarray, t: float) -> np.ndarray:
        r""":math:`s_w` (``cg``/``cg_mean``: :math:`s + w g_y`; ``cfg``: :math:`w s_y + (1-w) s`)."""
        tg, w = self.target, self.w
        if self.unguided:
            return self._plain.score(x, t)
        if self.form == "cfg":
            s_y = tg.conditional_score(x, t, self.label) if self._cond_fast is None else self._cond_fast.score(x, t)
            return w * s_y + (1.0 - w) * self._plain.score(x, t)
        if self._fast is not None:
            return self._fast.guided_score(x, t, self.label, w)
        return tg.score(x, t) + w * tg.guidance_vector(x, t, self.label)

    def denoiser(self, x: np.ndarray, t: float) -> np.ndarray:
        r""":math:`D_w = D + w(\sigma_t^2/\alpha_t) g_y` (``cg``) or :math:`w D_y + (1-w) D` (``cfg``)."""
        tg, w = self.target, self.w
        if self.unguided or self.form == "cg_mean":  # cg_mean guides the posterior mean instead
            return self._plain.denoiser(x, t)
        if self.form == "cfg":
            if self._cond is None:  # no class-conditional denoiser: from the guided score
                a, s2 = alpha_sigma2(t)
                return (x + s2 * self.score(x, t)) / a
            cond = self._cond if self._cond_fast is None else self._cond_fast
            return w * cond.denoiser(x, t) + (1.0 - w) * self._plain.denoiser(x, t)
        if self._fast is not None:  # GEMM-form kernel (numerics.fast.kernels), same quantity to its bound
            return self._fast.guided_denoiser(x, t, self.label, w)
        if isinstance(tg, GaussianMixture):  # one kernel pass instead of two
            return tg.guided_denoiser(x, t, self.label, w)
        a, s2 = alpha_sigma2(t)
        return tg.denoiser(x, t) + (w * s2 / a) * tg.guidance_vector(x, t, self.label)

    def eps(self, x: np.ndarray, t: float) -> np.ndarray:
        r""":math:`\varepsilon_w = -\sigma_t s_w`."""
        return -math.sqrt(-math.expm1(-2.0 * t)) * self.score(x, t)

    def q(self, kind: str, x: np.ndarray, t: float) -> np.ndarray:
        return getattr(self, kind)(x, t)


# ---------------------------------------------------------------------------------------- validation
def _check_label(label, target, w: float) -> int | None:
    """The class to guide towards; ``None`` (unguided) only with ``w == 1``."""
    if label is None:
        if w != 1.0:
            raise ValueError(f"label: guidance={w!r} != 1 needs a label (label=None means unguided)")
        return None
    return check_label(label, target.n_classes, "label")


def _check_target(target) -> Target:
    if not isinstance(target, Target):
        raise ValueError("target: must be a GaussianMixture, a ScoreModel or another numerics.target.Target "
                         f"(d, n_classes, score, denoiser, guidance_vector, conditional_score), got {type(target).__name__}")
    return target


def _initial(x_init, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    if x_init is None:
        return rng.standard_normal((n, d))
    x = check_array(x_init, "x_init", (n, d))
    big = float(np.max(np.abs(x)))
    if big > MAX_X_INIT:
        raise ValueError(f"x_init: max |x_init| = {big:.3g} exceeds {MAX_X_INIT:g} (squared distances to the "
                         "target's components would overflow float64)")
    return x


def _check_guidance(guidance) -> float:
    w = check_nonneg_scalar(guidance, "guidance")
    if w > MAX_GUIDANCE:
        raise ValueError(f"guidance: must be <= {MAX_GUIDANCE:g} (numerics.samplers.MAX_GUIDANCE), got {w!r}")
    return w


def _step_failure(k: int, t: float, s: float, guided: GuidedQuantities, x_init_given: bool,
                  detail: str) -> ValueError:
    """The error for a step whose result is not finite (or whose target evaluation failed): it names the step,
    its times and the likely cause, and starts with the argument most likely at fault."""
    if not guided.unguided and guided.w > 1.0:
        culprit, cause = "guidance", (f"the guidance weight w={guided.w!r} pushes the particles out of the range "
                                      "where the target is representable; use a smaller weight or finer steps")
    elif k == 0 and x_init_given:
        culprit, cause = "x_init", "the start points are too far from the target for its first evaluation"
    else:
        culprit, cause = "grid", ("the steps are too long for this method (an unstable step amplifies the "
                                  "particles until they overflow); use a finer grid")
    return ValueError(f"{culprit}: step {k} (t={t!r} -> s={s!r}) {detail}; likely cause: {cause}")


# ---------------------------------------------------------------------------------------- stepping
class _Noise:
    r"""The steps' standard-normal ``shape`` blocks, ``count`` of them, drawn from ``rng`` in order: the same
    stream as ``count`` calls of ``rng.standard_normal(shape)``, written into buffers kept for the run (a fresh
    block per step, drawn on the helper thread, made glibc return and re-fault its pages every step: at
    (1000, 256), 538k page faults in three DDPM runs against 4k).

    With ``ahead``, a helper thread draws block ``k + 1`` into the other buffer while the caller steps with block
    ``k`` (NumPy fills a block without the GIL, holding the generator's lock; only one draw is ever pending, the
    caller draws only when none is, and block ``k + 2`` is asked for only after block ``k`` was used, so the order
    and hence every value is the same).  :func:`sample` asks for it only for its own generator (an integer or
    SeedSequence seed: if a step fails, the one block drawn ahead is never seen), blocks of at least
    :data:`AHEAD_ELEMENTS` values and more than one Numba thread (the user's thread budget)."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], count: int, ahead: bool) -> None:
        self.rng, self.left = rng, count
        self._pool = ThreadPoolExecutor(1) if ahead and count > 1 else None
        self._bufs = [np.empty(shape) for _ in range(2 if self._pool is not None else min(count, 1))]
        self._next, self._k = None, 0

    def _fill(self, buf: np.ndarray) -> np.ndarray:
        self.rng.standard_normal(out=buf)
        return buf

    def draw(self) -> np.ndarray:
        """The next block (valid until the next ``draw``)."""
        self.left -= 1
        buf = self._bufs[self._k % len(self._bufs)]
        self._k += 1
        if self._pool is None:
            return self._fill(buf)
        z = self._fill(buf) if self._next is None else self._next.result()
        nxt = self._bufs[self._k % 2]
        self._next = self._pool.submit(self._fill, nxt) if self.left > 0 else None
        return z

    def close(self) -> None:
        """Wait for a pending draw and stop the helper thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class _BlockNoise:
    r"""The counter-based noise stream of ``sample(..., noise="blocks")``: the rows ``[b m, min((b + 1) m, n))`` of
    step ``k``'s standard-normal ``(n, d)`` block, :math:`m = \max(1, \lfloor` :data:`BLOCK_VALUES` :math:`/d\rfloor)`,
    are ``Generator(SFC64(SeedSequence(entropy, spawn_key=key + (k, b))))``'s ``standard_normal`` (``entropy``
    and ``key`` those of the run's seed sequence: block ``(k, b)`` is ``seq.spawn(k + 1)[k].spawn(b + 1)[b]``).
    Each block is a function of ``(seed, k, b)`` alone, so the values do not depend on who draws them, in what
    order, or on the thread count; ``k`` counts from ``first_step`` (a run continued from another's node).

    With ``threads > 1`` a pool of that many threads draws step ``k + 1``'s blocks into the other of two buffers
    kept for the run while the caller steps with block ``k`` (NumPy fills without the GIL); otherwise the caller
    draws each step's blocks in turn."""

    def __init__(self, seq: np.random.SeedSequence, shape: tuple[int, int], count: int, threads: int,
                 first_step: int = 0) -> None:
        self.seq, self.left, self._k, self.first = seq, count, 0, first_step
        rows = max(1, BLOCK_VALUES // shape[1])
        self.cuts = [(r0, min(r0 + rows, shape[0])) for r0 in range(0, shape[0], rows)]
        self._pool = ThreadPoolExecutor(threads) if threads > 1 and count > 1 else None
        self._bufs = [np.empty(shape) for _ in range(2 if self._pool is not None else min(count, 1))]
        self._pending: list = []

    def block_generator(self, k: int, b: int) -> np.random.Generator:
        """The generator of step ``k``'s row block ``b``."""
        seq = np.random.SeedSequence(self.seq.entropy, spawn_key=tuple(self.seq.spawn_key) + (k, b),
                                     pool_size=self.seq.pool_size)
        return np.random.Generator(np.random.SFC64(seq))

    def _fill(self, buf: np.ndarray, k: int, b: int) -> None:
        r0, r1 = self.cuts[b]
        self.block_generator(self.first + k, b).standard_normal(out=buf[r0:r1])

    def _submit(self, k: int) -> None:
        buf = self._bufs[k % 2]
        self._pending = [self._pool.submit(self._fill, buf, k, b) for b in range(len(self.cuts))]

    def draw(self) -> np.ndarray:
        """Step ``k``'s block (valid until the next ``draw``)."""
        k, buf = self._k, self._bufs[self._k % len(self._bufs)]
        self._k += 1
        self.left -= 1
        if self._pool is None:
            for b in range(len(self.cuts)):
                self._fill(buf, k, b)
            return buf
        if not self._pending:
            self._submit(k)
        for fut in self._pending:
            fut.result()
        self._pending = []
        if self.left > 0:
            self._submit(k + 1)
        return buf

    def close(self) -> None:
        """Wait for pending draws and stop the pool."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _noise_source(kind: str, seed, rng: np.random.Generator, shape: tuple[int, int], count: int, first_step: int = 0):
    """The run's noise: :class:`_Noise` (``"sequential"``, the generator's own stream, drawn ahead as its docstring
    says) or :class:`_BlockNoise` (``"blocks"``, which needs the run's own seed: not a Generator or BitGenerator)."""
    private = not isinstance(seed, (np.random.Generator, np.random.BitGenerator))
    big = shape[0] * shape[1] >= AHEAD_ELEMENTS and numba.get_num_threads() > 1
    if kind == "sequential":
        return _Noise(rng, shape, count, private and big)
    if not private:
        raise ValueError("seed: noise='blocks' keys every block on the seed, so it needs an integer, a sequence "
                         f"of them or a SeedSequence, not a {type(seed).__name__}")
    return _BlockNoise(rng.bit_generator.seed_seq, shape, count, numba.get_num_threads() if big else 1, first_step)


def _step(method: Method, guided: GuidedQuantities, x: np.ndarray, t: float, s: float, c: tuple, shift, t_prev,
          q_prev, noise) -> tuple[np.ndarray, np.ndarray]:
    r"""One step :math:`x_t\to x_s` with the coefficients ``c`` (and ``cg_mean`` shifts ``shift``) of
    :func:`numerics.methods.grid_coefficients`; returns ``(x_s, q(x_t))`` (``q`` is reused by multistep methods)."""
    q = guided.q(method.q, x, t)
    out = c[0] * x  # a new array: the terms below are added in place (the same floats as out = out + term)
    out += c[1] * q
    if method.multistep and t_prev is not None:
        out += c[2] * q_prev
    if guided.form == "cg_mean" and not guided.unguided:  # only methods with guidance_shifts (check_form)
        # q was the unguided denoiser: add the mean-form shift w * mean_form * g
        out += (guided.w * shift[1]) * guided.target.guidance_vector(x, t, guided.label)
    if method.stochastic:
        out += c[-1] * noise.draw()
    return out, q


def sample(target, method: str = "ddim", grid=None, n: int = 1000, seed=0, label: int | None = None,
           guidance: float = 1.0, x_init=None, guidance_form: str = "cg", eta: float | None = None,
           return_trajectory: bool = False, fast: bool = True, noise: str = "sequential", first_step: int = 0):
    r"""Run a guided sampler from ``grid[0]`` down to ``grid[-1]``.

    Parameters
    ----------
    target : GaussianMixture, ScoreModel or another :class:`numerics.target.Target`
    method : str
        One of :data:`METHODS` (the table :data:`numerics.methods.TABLE`).  A step :math:`t\to s` is
        :math:`x_s = c_x x_t + c_q q + [c_{q'} q_{\rm prev}] + [c_z z]` with the generated coefficients.
    grid : array_like, optional
        Strictly decreasing OU times (validated by :func:`numerics.grids.check_grid`); default
        :func:`default_grid`.  The method's coefficients are evaluated on every step up front
        (:func:`numerics.methods.grid_coefficients`): a step longer than the method's ``max_step`` or with a
        non-finite coefficient is refused naming ``grid``.
    n : int
        Number of samples (ignored shape-wise when ``x_init`` is given, which must be ``(n, d)``).
    seed : int, SeedSequence or Generator
        Seed of the single ``np.random.default_rng`` used for ``x_init`` and the step noise (a non-negative
        integer; validated by :func:`numerics.validate.check_seed`).
    label : int, optional
        Class ``y`` to guide towards; ``None`` with ``guidance == 1`` is unguided sampling.
    guidance : float
        :math:`0 \le w \le` :data:`MAX_GUIDANCE`.
    x_init : array_like, optional
        ``(n, d)`` real start points with ``max |x_init| <=`` :data:`MAX_X_INIT`; default :math:`N(0, I)` draws
        (the OU stationary law).
    guidance_form : {"cg", "cfg", "cg_mean"}
        ``cg``: :math:`s_w = s + w g_y`; ``cfg``: :math:`s_w = w s_y + (1-w)s`; ``cg_mean`` (ddpm):
        :math:`\mu_{\rm post}(x_t, D) + w\,\frac{\sigma_s^2\sigma_{t|s}^2}{\sigma_t^2}\,g_y`.
    eta : float, optional
        Only for ``ddim_eta``, in ``[0, 1]`` (0: DDIM, 1: DDPM).
    return_trajectory : bool
        Also return the ``(len(grid), n, d)`` trajectory (``[0]`` is ``x_init``).
    fast : bool
        For a :class:`GaussianMixture` target (default ``True``): evaluate every mixture quantity the method uses
        (score, denoiser, conditional ones for ``cfg``) with the fast GEMM-form kernel of
        :mod:`numerics.fast.kernels` (the one ``guidance-verify bench`` times), which uses the covariances'
        structure (isotropic part plus spikes); it equals the reference kernel up to its derived error bound
        (``tests/test_bench.py``).  ``False``: the reference kernel (:mod:`numerics._kernels`, checked against
        the 50-digit oracle), the independent implementation the fast one is tested against.  Other targets
        (and subclasses of :class:`GaussianMixture`) always use their own methods.
    noise : {"sequential", "blocks"}
        The stochastic methods' step noise.  ``"sequential"`` (default): one ``(n, d)`` block per step from the
        seed's generator, after ``x_init``.  ``"blocks"``: the counter-based stream of :class:`_BlockNoise`, each
        row block of each step from its own generator keyed on ``(seed, step, block)``, drawn on up to
        ``numba.get_num_threads()`` threads with the same values for any thread count (``seed`` must then be an
        integer, a sequence of them or a SeedSequence; ``x_init`` is still drawn from the seed's generator).
    first_step : int
        With ``noise="blocks"``: the step index the grid's first step has in the block stream (default 0), so
        that a run continued from node ``j`` of another run's grid with ``first_step=j`` and the same seed sees
        the same noise as that run (``numerics.papers.support.sweeps.branched_ends``); must be 0 otherwise.

    Returns
    -------
    numpy.ndarray
        ``(n, d)`` float64 samples at ``grid[-1]`` (and the trajectory if asked).

    Raises
    ------
    ValueError
        Naming the argument (see the module docstring for the rules), before any step; or, if a step produces
        a non-finite value anyway, naming the step, its times and the likely cause (the message starts with
        the argument most likely at fault: ``guidance``, ``x_init`` or ``grid``).
    """
    target = _check_target(target)
    rec = get_method(method)
    form = check_form(guidance_form, rec.name)
    eta = check_eta(eta, rec.name)
    grid = check_grid(grid)
    coefs, shifts = grid_coefficients(rec, grid, eta, form)
    n = check_int(n, "n", 1)
    w = _check_guidance(guidance)
    label = _check_label(label, target, w)
    return_trajectory = check_bool(return_trajectory, "return_trajectory")
    size = n * target.d * (grid.size if return_trajectory else 1)
    if size > MAX_ELEMENTS:
        what = f"the trajectory (len(grid)={grid.size}) x " if return_trajectory else ""
        raise ValueError(f"n: {what}n={n} x d={target.d} is {size} float64 values, more than {MAX_ELEMENTS} "
                         "(numerics.samplers.MAX_ELEMENTS, 16 GiB)")
    fast = check_bool(fast, "fast")
    noise_kind = check_choice(noise, "noise", NOISE_STREAMS)
    first_step = check_int(first_step, "first_step", 0)
    if first_step and noise_kind != "blocks":
        raise ValueError(f"first_step: only noise='blocks' has step indices, got first_step={first_step}")
    rng = check_seed(seed)
    x = _initial(x_init, n, target.d, rng)
    guided = GuidedQuantities(target, label, w, form, fast)
    traj = [x.copy()] if return_trajectory else None
    noise = _noise_source(noise_kind, seed, rng, x.shape, grid.size - 1 if rec.stochastic else 0, first_step)
    try:
        x = _run_steps(rec, guided, x, grid, coefs, shifts, noise, x_init is not None, traj)
    finally:
        noise.close()
    return (x, np.stack(traj)) if return_trajectory else x


def _run_steps(rec: Method, guided: GuidedQuantities, x: np.ndarray, grid: np.ndarray, coefs, shifts, noise,
               x_init_given: bool, traj: list | None) -> np.ndarray:
    """The step loop of :func:`sample` (appending to ``traj`` if given); returns the end points."""
    q_prev, t_prev = None, None
    for k in range(grid.size - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        try:
            x, q = _step(rec, guided, x, t, s, coefs[k], None if shifts is None else shifts[k], t_prev, q_prev, noise)
        except ValueError as exc:
            if not str(exc).startswith("x:"):  # the target's own argument errors (score: ..., t: ...) pass through
                raise
            raise _step_failure(k, t, s, guided, x_init_given, f"could not evaluate the target ({exc})") from None
        if not np.isfinite(x).all():
            raise _step_failure(k, t, s, guided, x_init_given, "produced non-finite values")
        q_prev, t_prev = q, t
        if traj is not None:
            traj.append(x.copy())
    return x

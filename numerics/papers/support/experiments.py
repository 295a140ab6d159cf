r"""The support paper's three experiments (Chandramoorthy, Cao, Wu, arXiv 2605.07220), with exact scores.

Definitions follow ``/work/shared/papers/support.md`` section 4 (read from the authors' code):

* ``three_disks`` (Fig. 3/4, "convex case"): disks centre (-1.5, 0.5) r 0.7, (0.2, 3.0) r 1.2,
  (2.5, -0.5) r 1.5, weights 1/3; target class eta = 1; five fixed starts
  (-3, 3), (-1, -3), (0, 0), (2, -4), (5, -2).
* ``two_crescents`` (Fig. 5/6, "non-convex case"): crescents (outer radius 1.5 minus an inner disk of
  radius 1.0 offset by 0.8 horizontally) at (2, 2) (bite to the right, class 0) and (-2, 3) (bite to the
  left, class 1), weights 1/2; target eta = 0; four fixed starts (-2, 2), (-1.5, -2), (1.5, 2), (2, -1.6).
* ``five_regions`` (Fig. 7, "density experiment"): the lens
  :math:`\{-3\le x\le-1,\ |y|\le 0.5(x+3)^2(x+1)^2\}` (class 0), a crescent at (2, 2) (class 1, bite to
  the right), a crescent at (2, -2) (class 2, bite to the left), disks of radius 0.8 at (-3, 3) (class 3)
  and (-1, -3) (class 4); weights 0.2 each; every eta in 0..4; 100 starts drawn from N(0, I_2).  The
  authors drew them with the JAX key 20260310; we cannot reproduce JAX's stream, so we draw them with
  ``np.random.default_rng(20260310)`` (same law, different points).

Differences from the authors' code (on purpose): exact OU scores (the lambda-correct posterior, class
weights as *mixture* weights, the planar slice quadrature of :mod:`numerics.papers.support.region_targets` instead of a
fixed 20 x 20 trapezoid rule).  Time convention: OU forward time, ``T = 5``, the authors' grid
``time_grid("geometric", T=5, delta, kappa)``.

Methods (:data:`METHODS`): ``ei_ode`` (the authors' "DDIM": score-frozen exponential integrator),
``ei_sde_code`` (the authors' "DDPM": score-frozen EI with noise sqrt(2(e^h - 1))), and the classical
``ddim`` (data prediction frozen) and ``ddpm`` (ancestral).  Guidance: classifier guidance of weight gamma,
equal to the authors' CFG form under exact scores (claim ``support.score_identity``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from numerics.grids import time_grid
from numerics.methods import check_method, select
from numerics.papers.support.region_targets import Crescent, Disk, Lens, RegionMixture
from numerics.samplers import sample
from numerics.schedule import alpha_sigma2
from numerics.target import ScoreModel
from numerics.validate import check_array, check_choice, check_label, check_positive

__all__ = ["EXPERIMENTS", "METHODS", "run_deltas", "draw_regions", "AUTHORS_ODE", "AUTHORS_SDE", "Experiment", "ExperimentRun",
           "experiment", "run_experiment", "sigma_delta", "five_regions_starts", "FIVE_REGIONS_SEED"]

#: The four schemes (names of the method table :data:`numerics.methods.TABLE`): the authors' ODE and SDE
#: schemes and the classical DDIM / DDPM.
METHODS: tuple[str, ...] = select("ei_ode", "ei_sde_code", "ddim", "ddpm")
AUTHORS_ODE, AUTHORS_SDE = "ei_ode", "ei_sde_code"
#: Seed of the N(0, I) starts of the five-region experiment (the authors' JAX key, used with NumPy).
FIVE_REGIONS_SEED = 20260310
T_MAX = 5.0


def sigma_delta(delta: float) -> float:
    r""":math:`\sigma_\delta = \sqrt{1 - e^{-2\delta}}` (OU)."""
    return math.sqrt(-math.expm1(-2.0 * delta))


@dataclass(frozen=True)
class Experiment:
    """One of the authors' experiments: the labelled region mixture, the plotted target class and starts.

    ``starts`` is ``(n, 2)``; ``etas`` the guided classes the authors computed; ``eta`` the one they plot
    (for ``five_regions`` every class is plotted, ``eta`` is the first).
    """

    name: str
    mixture: RegionMixture
    eta: int
    etas: tuple[int, ...]
    starts: np.ndarray
    figure: str
    description: str = ""
    gammas: tuple[float, ...] = (1.0, 1.5, 2.0, 5.0, 50.0)
    extra: dict = field(default_factory=dict)


def five_regions_starts(n: int = 100, seed: int = FIVE_REGIONS_SEED) -> np.ndarray:
    """``n`` N(0, I_2) starts of the five-region experiment (NumPy stream, see the module docstring)."""
    return np.random.default_rng(seed).standard_normal((n, 2))


def _three_disks() -> Experiment:
    rm = RegionMixture([Disk((-1.5, 0.5), 0.7), Disk((0.2, 3.0), 1.2), Disk((2.5, -0.5), 1.5)],
                       weights=[1 / 3, 1 / 3, 1 / 3])
    starts = np.array([[-3.0, 3.0], [-1.0, -3.0], [0.0, 0.0], [2.0, -4.0], [5.0, -2.0]])
    return Experiment("three_disks", rm, 1, (0, 1), starts, "Fig. 3 (ODE) / Fig. 4 (SDE)",
                      "convex case: three disks, target the disk at (0.2, 3), r = 1.2")


def _two_crescents() -> Experiment:
    rm = RegionMixture([Crescent((2.0, 2.0), 1.5, 1.0, 0.8), Crescent((-2.0, 3.0), 1.5, 1.0, -0.8)],
                       weights=[0.5, 0.5])
    starts = np.array([[-2.0, 2.0], [-1.5, -2.0], [1.5, 2.0], [2.0, -1.6]])
    return Experiment("two_crescents", rm, 0, (0,), starts, "Fig. 5 (ODE) / Fig. 6 (SDE)",
                      "non-convex case: two crescents, target the crescent at (2, 2)")


def _five_regions() -> Experiment:
    rm = RegionMixture([Lens(), Crescent((2.0, 2.0), 1.5, 1.0, 0.8), Crescent((2.0, -2.0), 1.5, 1.0, -0.8),
                        Disk((-3.0, 3.0), 0.8), Disk((-1.0, -3.0), 0.8)], weights=[0.2] * 5)
    return Experiment("five_regions", rm, 0, (0, 1, 2, 3, 4), five_regions_starts(), "Fig. 7(a) ODE / 7(b) SDE",
                      "density experiment: lens, two crescents, two disks; every class guided in turn",
                      gammas=(1.0, 1.5, 2.0, 5.0))


_BUILDERS = {"three_disks": _three_disks, "two_crescents": _two_crescents, "five_regions": _five_regions}
#: Experiment names.
EXPERIMENTS: tuple[str, ...] = tuple(_BUILDERS)


def experiment(name: str) -> Experiment:
    """The experiment ``name`` (one of :data:`EXPERIMENTS`), freshly built."""
    return _BUILDERS[check_choice(name, "name", EXPERIMENTS)]()


@dataclass
class ExperimentRun:
    """Result of :func:`run_experiment`.

    ``endpoints`` (n, 2); ``trajectory`` (len(grid), n, 2) or None; ``distances`` (n,) to the support of
    the *measured* class ``eta`` (``guide_eta`` is the class actually guided towards; they differ only in
    a negative control); ``sigma`` = sigma_delta.
    """

    name: str
    gamma: float
    method: str
    kappa: float
    delta: float
    eta: np.ndarray
    guide_eta: np.ndarray
    grid: np.ndarray
    starts: np.ndarray
    endpoints: np.ndarray
    distances: np.ndarray
    sigma: float
    trajectory: np.ndarray | None = None

    @property
    def max_over_sigma(self) -> float:
        return float(np.max(self.distances)) / self.sigma

    def summary(self) -> dict:
        d = self.distances
        return {"gamma": self.gamma, "method": self.method, "kappa": self.kappa, "delta": self.delta,
                "etas": sorted(set(np.asarray(self.eta).tolist())), "max": float(np.max(d)), "median": float(np.median(d)),
                "max_over_sigma": float(np.max(d)) / self.sigma, "median_over_sigma": float(np.median(d)) / self.sigma,
                "n": int(d.size)}


def _check_common(exp, gamma, method, kappa):
    if not isinstance(exp, Experiment):
        exp = experiment(exp)
    gamma = check_positive(gamma, "gamma")
    if gamma < 1:
        raise ValueError(f"gamma: must be >= 1, got {gamma!r}")
    method = check_method(method, allowed=METHODS)
    kappa = check_positive(kappa, "kappa")
    if kappa > 1:
        raise ValueError(f"kappa: must be in (0, 1], got {kappa!r}")
    return exp, gamma, method, kappa


def _check_delta(delta) -> float:
    delta = check_positive(delta, "delta")
    if delta >= 1:
        raise ValueError(f"delta: must be in (0, 1), got {delta!r}")
    return delta


def _check_etas(rm: RegionMixture, eta, n: int, name: str) -> np.ndarray:
    """One class of ``rm`` for all ``n`` starts, or one per start."""
    if np.ndim(eta) == 0:
        return np.full(n, check_label(eta, rm.n_classes, name), dtype=int)
    arr = np.asarray(eta)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: must be a class or {n} integer classes (one per start), got {eta!r}")
    for v in np.unique(arr):
        check_label(v, rm.n_classes, name)
    return arr.astype(int)


class _RowGuided(ScoreModel):
    """Exact scores of ``rm`` whose guidance vector for row i targets class ``etas[i]`` (the ``y`` passed by
    the sampler is ignored), so several guided classes run in one call.  ``bias``: added to the
    conditional denoiser of every row (negative control, note C9)."""

    def __init__(self, rm: RegionMixture, etas: np.ndarray, bias=None):
        self.rm, self.etas = rm, etas
        self.bias = None if bias is None else np.asarray(bias, float)
        super().__init__(rm.score, rm.d, guidance=self._guidance_rows, n_classes=rm.n_classes)

    def _guidance_rows(self, x, t, y):
        lam, s2 = alpha_sigma2(t)
        if x.shape[0] != self.etas.shape[0]:  # ScoreModel's shape probe
            return self.rm.guidance_vector(x, t, int(self.etas[0]))
        g = self.rm.guidance_vector_rows(x, t, self.etas)
        if self.bias is not None:
            g = g + (lam / s2) * self.bias
        return g

    def denoiser(self, x, t):
        return self.rm.denoiser(x, t)


def run_experiment(exp, gamma: float, method: str, kappa: float, delta: float, eta=None,
                   seed=0, x_init=None, guide_eta=None, bias=None,
                   return_trajectory: bool = True) -> ExperimentRun:
    r"""Run one of the authors' experiments with exact scores.

    Parameters
    ----------
    exp : str or Experiment
        ``"three_disks"``, ``"two_crescents"``, ``"five_regions"`` or an :class:`Experiment`.
    gamma : float
        Guidance weight, >= 1 (gamma = 1: the plain conditional score).
    method : {"ei_ode", "ei_sde_code", "ddim", "ddpm"}
        ``ei_ode`` / ``ei_sde_code`` are the authors' DDIM / DDPM schemes.
    kappa : float
        Step parameter of the geometric grid, in (0, 1].
    delta : float
        Early-stopping time, in (0, 1).
    eta : int or sequence of int, optional
        Guided class, one for all starts or one per start (default: the experiment's ``exp.eta``).
        Distances are measured to the support of each start's ``eta``.
    seed : int
        Seed of the injected noise (stochastic methods); deterministic methods ignore it.
    x_init : array_like, optional
        ``(n, 2)`` starts; default the experiment's starts.
    guide_eta : int or sequence of int, optional
        Class actually guided towards; default ``eta`` (a different value is the wrong-class control).
    bias : array_like (2,), optional
        Bias added to the guided class's conditional denoiser (the biased-score control of note C9).
    return_trajectory : bool
        Keep the ``(len(grid), n, 2)`` trajectory.

    Raises
    ------
    ValueError
        Naming the argument: unknown experiment or method, gamma < 1, kappa or delta out of range, a class
        outside the mixture, bad ``x_init``.
    """
    exp, gamma, method, kappa = _check_common(exp, gamma, method, kappa)
    delta = _check_delta(delta)
    x0, etas, geta, model = _setup(exp, eta, x_init, guide_eta, bias)
    grid = time_grid("geometric", T=T_MAX, delta=delta, kappa=kappa)
    res = sample(model, method, grid=grid, n=x0.shape[0], seed=seed, x_init=x0, label=0,
                 guidance=gamma, return_trajectory=return_trajectory)
    x, traj = res if return_trajectory else (res, None)
    return ExperimentRun(exp.name, gamma, method, kappa, delta, etas, geta, grid, x0.copy(), x,
                         _distances(exp.mixture, x, etas), sigma_delta(delta), traj)


def _setup(exp, eta, x_init, guide_eta, bias):
    rm = exp.mixture
    x0 = check_array(exp.starts if x_init is None else x_init, "x_init", (None, 2))
    etas = _check_etas(rm, exp.eta if eta is None else eta, x0.shape[0], "eta")
    geta = etas if guide_eta is None else _check_etas(rm, guide_eta, x0.shape[0], "guide_eta")
    if bias is not None:
        bias = check_array(bias, "bias", (2,))
    return x0, etas, geta, _RowGuided(rm, geta, bias)


def _distances(rm, x, etas):
    d = np.empty(x.shape[0])
    for c in np.unique(etas):
        sel = etas == c
        d[sel] = rm.distance(x[sel], int(c))
    return d


def run_deltas(exp, gamma: float, method: str, kappa: float, deltas, eta=None, seed=0, x_init=None,
               guide_eta=None, bias=None, return_trajectory: bool = False) -> list[ExperimentRun]:
    r""":func:`run_experiment` for several early-stopping times in one pass.

    The geometric grids for different ``delta`` share every step except the last, clipped one (the grid
    for a smaller delta continues the tail), so the run for the smallest delta is branched: at each
    larger delta one clipped step is taken from the shared state.  For deterministic methods the result
    equals :func:`run_experiment` bit for bit; for stochastic methods it has the same law (the noise of
    each branch is drawn from ``seed`` and the branch index).
    """
    exp, gamma, method, kappa = _check_common(exp, gamma, method, kappa)
    try:
        ds = sorted({_check_delta(d) for d in deltas}, reverse=True)
    except TypeError:
        raise ValueError(f"deltas: must be a sequence of numbers in (0, 1), got {deltas!r}") from None
    if not ds:
        raise ValueError("deltas: must not be empty")
    x0, etas, geta, model = _setup(exp, eta, x_init, guide_eta, bias)
    full = time_grid("geometric", T=T_MAX, delta=ds[-1], kappa=kappa)
    ss = np.random.SeedSequence(seed if not isinstance(seed, np.random.SeedSequence) else seed.entropy)
    seeds = ss.spawn(2 * len(ds))
    out, x, pos, traj_parts = [], x0, 0, [x0[None]]
    for j, delta in enumerate(ds):
        g = time_grid("geometric", T=T_MAX, delta=delta, kappa=kappa)
        stop = g.size - 2  # index of the last shared time
        if stop > pos:
            x, tr = sample(model, method, grid=full[pos:stop + 1], n=x.shape[0], seed=seeds[2 * j], x_init=x,
                           label=0, guidance=gamma, return_trajectory=True)
            traj_parts.append(tr[1:])
            pos = stop
        xe, tr_e = sample(model, method, grid=g[stop:], n=x.shape[0], seed=seeds[2 * j + 1], x_init=x, label=0,
                          guidance=gamma, return_trajectory=True)
        traj = np.concatenate(traj_parts + [tr_e[1:]]) if return_trajectory else None
        out.append(ExperimentRun(exp.name, gamma, method, kappa, delta, etas, geta, g, x0.copy(), xe,
                                 _distances(exp.mixture, xe, etas), sigma_delta(delta), traj))
    return out


def biased_mixture(rm: RegionMixture, eta: int, b) -> ScoreModel:
    r"""Exact unconditional score; the class-``eta`` guidance vector with the conditional denoiser biased by
    ``b`` (:math:`+\lambda b/\sigma^2`), so the guided denoiser is off by :math:`\gamma b` (note, C9)."""
    b = np.asarray(b, float)

    def guidance(x, t, y):
        lam, s2 = alpha_sigma2(t)
        g = rm.guidance_vector(x, t, y)
        return g + (lam / s2) * b if y == eta else g

    return ScoreModel(rm.score, 2, guidance=guidance, n_classes=rm.n_classes)


# ------------------------------------------------------------------------------------------ drawing
def draw_regions(ax, rm: RegionMixture, target: int | None, lim=None, n: int = 500, colors=None):
    """Fill the regions (target class red, others grey, or ``colors[label]``) on a ``n x n`` raster."""
    from matplotlib.colors import to_rgba
    if lim is None:
        lim = (-6.0, 6.0, -6.0, 6.0)
    xs = np.linspace(lim[0], lim[1], n)
    ys = np.linspace(lim[2], lim[3], n)
    X, Y = np.meshgrid(xs, ys)
    P = np.stack([X.ravel(), Y.ravel()], axis=1)
    img = np.zeros((n, n, 4))
    for reg, lab in zip(rm.regions, rm.labels):
        if colors is not None:
            col = colors[int(lab)]
        else:
            col = "red" if lab == target else "0.6"
        m = reg.contains(P).reshape(n, n)
        img[m] = to_rgba(col, 0.35 if (colors is not None or lab == target) else 0.3)
    ax.imshow(img, origin="lower", extent=lim, interpolation="nearest", zorder=0)
    ax.set_xlim(lim[0], lim[1])
    ax.set_ylim(lim[2], lim[3])
    ax.set_aspect("equal")

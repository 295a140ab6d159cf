r"""Symbolic targets: labelled Gaussian mixtures and their exact VP marginals.

A :class:`SymbolicMixture` holds :math:`X_0\sim\sum_k w_k N(\mu_k, S_k)` with SymPy entries (numbers or
symbols; :math:`S_k` may be singular: low rank or zero for atoms) and labels :math:`y(k)`.  At forward
time ``t`` of a :class:`~theory.forward.VPSchedule` its marginal is
:math:`p_t(x)=\sum_k w_k N(x;\alpha_t\mu_k, C_k)`, :math:`C_k=\alpha_t^2 S_k+\sigma_t^2 I`.
Every method returns a SymPy expression (or ``Matrix``) in the point symbols ``x1..xd`` and ``t``, so a
derivation session reads::

    >>> from theory.targets import SymbolicMixture
    >>> g = SymbolicMixture.gaussian_1d()          # N(mu, v) with symbols mu, v
    >>> sp.simplify(g.tweedie_denoiser()[0] - g.denoiser()[0])
    0

Two routes are offered for each moment, the *direct* one (posterior weights times component formulas)
and the *Tweedie* one (derivatives of :math:`\log p_t`); the tests prove they agree.
"""
from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from theory._validate import WEIGHT_SUM_TOL, as_matrix, as_scalar, check_int, check_schedule, is_negative, reject_text
from theory.forward import OU, VPSchedule, t

__all__ = ["SymbolicMixture", "gaussian_density"]


def gaussian_density(x: sp.Matrix, mean: sp.Matrix, cov: sp.Matrix) -> sp.Expr:
    r""":math:`N(x; m, C) = (2\pi)^{-d/2}\det(C)^{-1/2}\exp(-\tfrac12 (x-m)^\top C^{-1}(x-m))`."""
    d = x.shape[0]
    v = x - mean
    quad = (v.T * cov.inv() * v)[0, 0]
    return sp.exp(-quad / 2) / sp.sqrt((2 * sp.pi) ** d * cov.det())


def _sequence(value, name: str) -> list:
    reject_text(value, name)
    if not hasattr(value, "__iter__") or isinstance(value, (dict, set, frozenset)):
        raise TypeError(f"{name}: must be a sequence (list, tuple or array), got {type(value).__name__}")
    if getattr(value, "ndim", 1) == 0:
        raise TypeError(f"{name}: must be a sequence, got a 0-d array")
    return list(value)


def _check_weights(weights) -> list[sp.Expr]:
    """Numbers or expressions, none negative (when decidable), summing to 1 (when decidable)."""
    ws = [as_scalar(w, f"weights[{k}]") for k, w in enumerate(_sequence(weights, "weights"))]
    if not ws:
        raise ValueError("weights: need at least one component")
    for k, w in enumerate(ws):
        if is_negative(w):
            raise ValueError(f"weights[{k}]: must be non-negative, got {w}")
    total = sp.Add(*ws)
    if not total.free_symbols and total.is_number:
        if total.is_Rational:
            ok = total == 1
        else:
            ok = abs(complex(total.evalf()) - 1) <= WEIGHT_SUM_TOL
        if not ok:
            raise ValueError(f"weights: must sum to 1, got {total}")
    elif (total - 1).is_zero is False:
        raise ValueError(f"weights: must sum to 1, got {total}")
    return ws


def _check_real(m: sp.Matrix, name: str) -> None:
    for e in m:
        if e.is_extended_real is False:
            raise ValueError(f"{name}: entries must be real, got {e}")


def _check_means(means, K: int) -> list[sp.Matrix]:
    ms = [as_matrix(m, f"means[{k}]") for k, m in enumerate(_sequence(means, "means"))]
    if len(ms) != K:
        raise ValueError(f"means: need one per weight ({K}), got {len(ms)}")
    d = ms[0].shape[0]
    for k, m in enumerate(ms):
        if m.cols != 1 or m.rows < 1:
            raise ValueError(f"means[{k}]: must be a column (d entries), got shape {m.shape}")
        if m.rows != d:
            raise ValueError(f"means[{k}]: dimension {m.rows} differs from means[0] ({d})")
        _check_real(m, f"means[{k}]")
    return ms


def _check_covs(covs, K: int, d: int) -> list[sp.Matrix]:
    cs = [as_matrix(c, f"covs[{k}]") for k, c in enumerate(_sequence(covs, "covs"))]
    if len(cs) != K:
        raise ValueError(f"covs: need one per weight ({K}), got {len(cs)}")
    for k, c in enumerate(cs):
        name = f"covs[{k}]"
        if c.shape != (d, d):
            raise ValueError(f"{name}: must be {d} x {d} (square, the means' dimension), got shape {c.shape}")
        _check_real(c, name)
        numeric = not c.free_symbols
        asym = c - c.T
        if numeric:
            scale = max([1.0] + [abs(complex(e.evalf())) for e in c])
            if any(abs(complex(e.evalf())) > 1e-12 * scale for e in asym):
                raise ValueError(f"{name}: must be symmetric")
        elif asym.is_zero_matrix is False:
            raise ValueError(f"{name}: must be symmetric")
        for i in range(d):
            if is_negative(c[i, i]):
                raise ValueError(f"{name}: diagonal entries must be non-negative (positive semi-definite), got {c[i, i]}")
        if numeric and d > 1:
            import mpmath

            with mpmath.workdps(30):
                ev = mpmath.eigsy(mpmath.matrix([[mpmath.mpf(float(e)) for e in row] for row in c.tolist()]),
                                  eigvals_only=True)
                if min(ev) < -1e-12 * scale:
                    raise ValueError(f"{name}: must be positive semi-definite, smallest eigenvalue {float(min(ev)):.3g}")
    return cs


def _check_labels(labels, K: int) -> list[int]:
    ys = [check_int(y, f"labels[{k}]") for k, y in enumerate(_sequence(labels, "labels"))]
    if len(ys) != K:
        raise ValueError(f"labels: need one per weight ({K}), got {len(ys)}")
    return ys


class SymbolicMixture:
    r"""A labelled Gaussian mixture with symbolic parameters and its marginals under a VP schedule.

    Parameters
    ----------
    weights : sequence of K numbers or sympy expressions, non-negative, summing to 1
    means : sequence of column ``Matrix`` (d x 1), lists or arrays
    covs : sequence of ``Matrix`` (d x d), lists or arrays, symmetric positive semi-definite (zero for atoms)
    labels : sequence of int, optional (default: component k has class k)
    schedule : VPSchedule, default :data:`theory.forward.OU`

    Entries are real numbers (``int``, ``float``, ``Fraction``, NumPy numbers; a float becomes the ``Float`` of
    the same double) or SymPy expressions, never strings: SymPy would parse and evaluate text, so a string
    (or bytes) is refused with a ``TypeError`` naming the argument, like ``bool``, ``None`` and other types.
    Malformed values (negative or non-finite weights, weights not summing to 1, lengths or dimensions
    that disagree, a non-square, non-symmetric or indefinite covariance) raise a ``ValueError`` naming the
    argument.  Conditions SymPy cannot decide for symbolic entries are not enforced.
    """

    def __init__(self, weights: Sequence, means: Sequence, covs: Sequence, labels: Sequence[int] | None = None,
                 schedule: VPSchedule = OU):
        self.weights = _check_weights(weights)
        K = len(self.weights)
        self.means = _check_means(means, K)
        self.d = self.means[0].shape[0]
        self.covs = _check_covs(covs, K, self.d)
        self.labels = list(range(K)) if labels is None else _check_labels(labels, K)
        self.schedule = check_schedule(schedule)
        self.x = sp.Matrix(sp.symbols(f"x1:{self.d + 1}", real=True))
        self.alpha = schedule.alpha(t)
        self.sigma2 = schedule.sigma2(t)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def gaussian_1d(cls, mean=None, var=None, schedule: VPSchedule = OU) -> "SymbolicMixture":
        """One Gaussian :math:`N(\\mu, v)` in d = 1 with symbols ``mu``, ``v`` by default."""
        mean = sp.Symbol("mu", real=True) if mean is None else as_scalar(mean, "mean")
        var = sp.Symbol("v", positive=True) if var is None else as_scalar(var, "var")
        if is_negative(var):
            raise ValueError(f"var: must be >= 0, got {var}")
        return cls([1], [[mean]], [[[var]]], schedule=schedule)

    @classmethod
    def two_class_1d(cls, schedule: VPSchedule = OU) -> "SymbolicMixture":
        r""":math:`p_0 N(\mu_0, v_0) + (1-p_0) N(\mu_1, v_1)` in d = 1, classes 0 and 1, all symbolic."""
        w = sp.Symbol("p0", positive=True)
        m0, m1 = sp.symbols("mu0 mu1", real=True)
        v0, v1 = sp.symbols("v0 v1", positive=True)
        return cls([w, 1 - w], [[m0], [m1]], [[[v0]], [[v1]]], labels=[0, 1], schedule=schedule)

    # -- components ---------------------------------------------------------------------
    def marginal_cov(self, k: int) -> sp.Matrix:
        r""":math:`C_k = \alpha_t^2 S_k + \sigma_t^2 I`."""
        return self.alpha**2 * self.covs[k] + self.sigma2 * sp.eye(self.d)

    def component_density(self, k: int) -> sp.Expr:
        r""":math:`N(x;\alpha_t\mu_k, C_k)`."""
        return gaussian_density(self.x, self.alpha * self.means[k], self.marginal_cov(k))

    def component_score(self, k: int) -> sp.Matrix:
        r""":math:`-C_k^{-1}(x-\alpha_t\mu_k)`."""
        return -self.marginal_cov(k).inv() * (self.x - self.alpha * self.means[k])

    def component_denoiser(self, k: int) -> sp.Matrix:
        r""":math:`E[X_0\mid x,k] = \mu_k + \alpha_t S_k C_k^{-1}(x - \alpha_t\mu_k)`."""
        return self.means[k] + self.alpha * self.covs[k] * self.marginal_cov(k).inv() * (self.x - self.alpha * self.means[k])

    def component_posterior_cov(self, k: int) -> sp.Matrix:
        r""":math:`\mathrm{Cov}[X_0\mid x,k] = S_k - \alpha_t^2 S_k C_k^{-1} S_k`."""
        S = self.covs[k]
        return S - self.alpha**2 * S * self.marginal_cov(k).inv() * S

    # -- marginal -----------------------------------------------------------------------
    def _members(self, y: int | None) -> list[int]:
        return [k for k in range(len(self.weights)) if y is None or self.labels[k] == y]

    def density(self, y: int | None = None) -> sp.Expr:
        r""":math:`p_t(x) = \sum_k w_k N(x;\alpha_t\mu_k,C_k)`, or the joint :math:`p_t(x, y)` when ``y`` is given."""
        return sp.Add(*[self.weights[k] * self.component_density(k) for k in self._members(y)])

    def log_density(self, y: int | None = None) -> sp.Expr:
        r""":math:`\log p_t(x)` (or :math:`\log p_t(x\mid y)` with the class prior removed)."""
        if y is None:
            return sp.log(self.density())
        return sp.log(self.density(y)) - sp.log(self.class_prior(y))

    def class_prior(self, y: int) -> sp.Expr:
        r""":math:`P(Y=y) = \sum_{k:\,y(k)=y} w_k`."""
        return sp.Add(*[self.weights[k] for k in self._members(y)])

    def posterior_weights(self, y: int | None = None) -> list[sp.Expr]:
        r""":math:`\pi_k(x) = w_k N_k(x)/\sum_j w_j N_j(x)` over the members of class ``y`` (all if None)."""
        members = self._members(y)
        Z = self.density(y)
        return [self.weights[k] * self.component_density(k) / Z for k in members]

    def _grad(self, f: sp.Expr) -> sp.Matrix:
        return sp.Matrix([sp.diff(f, xi) for xi in self.x])

    def _hess(self, f: sp.Expr) -> sp.Matrix:
        return sp.hessian(f, list(self.x))

    def score(self, y: int | None = None) -> sp.Matrix:
        r""":math:`\nabla_x\log p_t(x)` (or of :math:`\log p_t(x\mid y)`), by differentiation."""
        return self._grad(self.log_density(y))

    def score_direct(self, y: int | None = None) -> sp.Matrix:
        r""":math:`\sum_k\pi_k(x)\,(-C_k^{-1}(x-\alpha_t\mu_k))`."""
        members = self._members(y)
        return sum((p * self.component_score(k) for p, k in zip(self.posterior_weights(y), members)), sp.zeros(self.d, 1))

    def denoiser(self, y: int | None = None) -> sp.Matrix:
        r"""Direct posterior mean :math:`E[X_0\mid X_t=x] = \sum_k \pi_k(x)\,E[X_0\mid x,k]`."""
        members = self._members(y)
        return sum((p * self.component_denoiser(k) for p, k in zip(self.posterior_weights(y), members)), sp.zeros(self.d, 1))

    def tweedie_denoiser(self, y: int | None = None) -> sp.Matrix:
        r"""Tweedie: :math:`E[X_0\mid X_t=x] = (x + \sigma_t^2\nabla\log p_t(x))/\alpha_t`."""
        return (self.x + self.sigma2 * self.score(y)) / self.alpha

    def posterior_cov(self, y: int | None = None) -> sp.Matrix:
        r"""Direct :math:`\mathrm{Cov}[X_0\mid x] = \sum_k\pi_k(P_k + m_k m_k^\top) - \bar m\bar m^\top`."""
        members = self._members(y)
        pis = self.posterior_weights(y)
        mbar = self.denoiser(y)
        second = sp.zeros(self.d, self.d)
        for p, k in zip(pis, members):
            mk = self.component_denoiser(k)
            second += p * (self.component_posterior_cov(k) + mk * mk.T)
        return second - mbar * mbar.T

    def tweedie_posterior_cov(self, y: int | None = None) -> sp.Matrix:
        r"""Second-order Tweedie: :math:`\mathrm{Cov}[X_0\mid x] = \frac{\sigma_t^2}{\alpha_t^2}\big(I + \sigma_t^2\nabla^2\log p_t(x)\big)`."""
        H = self._hess(self.log_density(y))
        return self.sigma2 / self.alpha**2 * (sp.eye(self.d) + self.sigma2 * H)

    # -- classes and guidance -----------------------------------------------------------
    def class_posterior(self, y: int) -> sp.Expr:
        r""":math:`p_t(y\mid x) = \sum_{k:\,y(k)=y} w_k N_k(x) / p_t(x)`."""
        return self.density(y) / self.density()

    def guidance_vector(self, y: int) -> sp.Matrix:
        r"""Guidance vector :math:`g_y(x) = \nabla_x\log p_t(y\mid x)`."""
        return self._grad(sp.log(self.class_posterior(y)))

    def guidance_hessian(self, y: int) -> sp.Matrix:
        r""":math:`\nabla_x^2\log p_t(y\mid x)`, by differentiation."""
        return self._hess(sp.log(self.class_posterior(y)))

    def guidance_hessian_identity(self, y: int) -> sp.Matrix:
        r"""Right-hand side of the Hessian identity,
        :math:`\frac{\alpha_t^2}{\sigma_t^4}\big(\mathrm{Cov}[X_0\mid x,y] - \mathrm{Cov}[X_0\mid x]\big)`."""
        return self.alpha**2 / self.sigma2**2 * (self.posterior_cov(y) - self.posterior_cov())

    def conditional(self, y: int) -> "SymbolicMixture":
        """The class-``y`` mixture with renormalised weights (a single class, label 0)."""
        members = self._members(y)
        Z = self.class_prior(y)
        return SymbolicMixture([self.weights[k] / Z for k in members], [self.means[k] for k in members],
                               [self.covs[k] for k in members], labels=[0] * len(members), schedule=self.schedule)

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

from theory.forward import OU, VPSchedule, t

__all__ = ["SymbolicMixture", "gaussian_density"]


def gaussian_density(x: sp.Matrix, mean: sp.Matrix, cov: sp.Matrix) -> sp.Expr:
    r""":math:`N(x; m, C) = (2\pi)^{-d/2}\det(C)^{-1/2}\exp(-\tfrac12 (x-m)^\top C^{-1}(x-m))`."""
    d = x.shape[0]
    v = x - mean
    quad = (v.T * cov.inv() * v)[0, 0]
    return sp.exp(-quad / 2) / sp.sqrt((2 * sp.pi) ** d * cov.det())


class SymbolicMixture:
    r"""A labelled Gaussian mixture with symbolic parameters and its marginals under a VP schedule.

    Parameters
    ----------
    weights : sequence of sympy expressions, length K
    means : sequence of column ``Matrix`` (d x 1) or lists
    covs : sequence of ``Matrix`` (d x d), positive semi-definite (zero for atoms)
    labels : sequence of int, optional (default: component k has class k)
    schedule : VPSchedule, default :data:`theory.forward.OU`
    """

    def __init__(self, weights: Sequence, means: Sequence, covs: Sequence, labels: Sequence[int] | None = None,
                 schedule: VPSchedule = OU):
        self.weights = [sp.sympify(w) for w in weights]
        self.means = [sp.Matrix(m) for m in means]
        self.covs = [sp.Matrix(c) for c in covs]
        K = len(self.weights)
        if not (len(self.means) == len(self.covs) == K):
            raise ValueError("means, covs: need one per weight")
        self.d = self.means[0].shape[0]
        self.labels = list(range(K)) if labels is None else [int(y) for y in labels]
        self.schedule = schedule
        self.x = sp.Matrix(sp.symbols(f"x1:{self.d + 1}", real=True))
        self.alpha = schedule.alpha(t)
        self.sigma2 = schedule.sigma2(t)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def gaussian_1d(cls, mean=None, var=None, schedule: VPSchedule = OU) -> "SymbolicMixture":
        """One Gaussian :math:`N(\\mu, v)` in d = 1 with symbols ``mu``, ``v`` by default."""
        mean = sp.Symbol("mu", real=True) if mean is None else mean
        var = sp.Symbol("v", positive=True) if var is None else var
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

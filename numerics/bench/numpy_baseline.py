r"""Plain NumPy (broadcast) mixture score and denoiser: a second implementation and the bench's NumPy backend.

Same model and time convention as :class:`~numerics.mixture.GaussianMixture` (OU forward time ``t``,
:math:`\alpha = e^{-t}`, :math:`\sigma^2 = -\mathrm{expm1}(-2t)`), evaluated in the *direct* form: the
offsets :math:`v_k = x - \alpha\mu_k` are formed explicitly as an ``(n, K, d)`` array (in particle chunks,
so memory stays bounded), and the posterior weights come from a log-sum-exp.

Eigen-factors in "spiked" form
------------------------------
Each covariance is written :math:`S_k = \lambda_{0k} I + U_k\,\mathrm{diag}(\delta_k)\,U_k^\top`
(:func:`numerics.fast.spiked.spiked_factors`, shared with the fast path: :math:`\lambda_{0k}` the smallest
eigenvalue, :math:`U_k` the eigenvectors above it, :math:`\delta_k > 0` their excess).  With
:math:`c_0 = \alpha^2\lambda_0 + \sigma^2`, :math:`c_j = c_0 + \alpha^2\delta_j`, :math:`p = U^\top v`:

.. math::
    \log N(x;\alpha\mu, C) &= -\tfrac12\Big(d\log 2\pi + d\log c_0 + \sum_j \log(1 + \alpha^2\delta_j/c_0)
        + \|v\|^2/c_0 - \sum_j p_j^2\,\tfrac{\alpha^2\delta_j}{c_0 c_j}\Big) \\
    s_k &= -v/c_0 + \sum_j u_j\,p_j\,\tfrac{\alpha^2\delta_j}{c_0 c_j}, \qquad
    m_k = \mu_k + \tfrac{\alpha\lambda_0}{c_0}\,v + \sum_j u_j\,p_j\,\tfrac{\alpha\sigma^2\delta_j}{c_0 c_j}.

Guided quantities: with a class mask (``in``) and guidance strength ``w`` (classifier guidance
:math:`s + w\nabla\log p_t(y\mid x)`),
:math:`Q_w = Q_\text{in} + (w - 1)\,p_t(\neg y\mid x)\,(Q_\text{in} - Q_\text{out})` for ``Q`` the score or the
denoiser (``w = 1``: the class-conditional quantity; ``w = 0``: the unconditional one).
"""
from __future__ import annotations

import numpy as np

from numerics.constants import LOG_2PI
from numerics.fast.spiked import spiked_factors
from numerics.validate import check_points, check_time
from numerics.schedule import alpha_sigma2

__all__ = ["NumpyMixture"]

#: Elements of the ``(n, K, d)`` offset array formed at once.
CHUNK_ELEMENTS = 1 << 21


class NumpyMixture:
    """NumPy-broadcast evaluation of a :class:`~numerics.mixture.GaussianMixture` (same results, direct form)."""

    def __init__(self, gm, chunk_elements: int = CHUNK_ELEMENTS):
        self.gm = gm
        self.d, self.K = gm.d, gm.K
        self.means = gm.means
        self.log_weights = gm.log_weights
        self.labels = gm.labels
        self.lam0, self.U, self.delta = spiked_factors(gm.evecs, gm.evals, gm.rank)
        self.chunk = max(1, chunk_elements // max(1, self.K * self.d))

    # ------------------------------------------------------------------ core
    def _consts(self, alpha, sigma2):
        a2 = alpha * alpha
        c0 = a2 * self.lam0 + sigma2
        c = c0[:, None] + a2 * self.delta
        logdet = self.d * np.log(c0) + np.sum(np.log1p(a2 * self.delta / c0[:, None]), axis=1)
        const = self.log_weights - 0.5 * (self.d * LOG_2PI + logdet)
        omega = a2 * self.delta / (c0[:, None] * c)  # quadratic-form correction along the spikes
        return c0, c, const, omega

    def _average(self, X, t, quantity: str, mask, w: float):
        alpha, sigma2 = alpha_sigma2(check_time(t))
        c0, c, const, omega = self._consts(alpha, sigma2)
        if quantity == "score":
            coef_v, coef_p = -1.0 / c0, omega
        else:
            coef_v, coef_p = alpha * self.lam0 / c0, alpha * sigma2 * self.delta / (c0[:, None] * c)
        has_out = bool(np.any(~mask))
        out = np.empty_like(X)
        for lo in range(0, X.shape[0], self.chunk):
            x = X[lo: lo + self.chunk]
            v = x[:, None, :] - alpha * self.means[None, :, :]  # (n, K, d)
            p = np.einsum("nkd,kdr->nkr", v, self.U)
            quad = np.einsum("nkd,nkd->nk", v, v) / c0 - np.einsum("nkr,kr->nk", p * p, omega)
            ell = const - 0.5 * quad
            q = coef_v[None, :, None] * v + np.einsum("kdr,nkr->nkd", self.U, p * coef_p)
            if quantity != "score":
                q += self.means[None, :, :]
            q_in, lz_in = _softmax_average(ell, q, mask)
            if not np.all(np.isfinite(lz_in)):
                raise ValueError("x: a point is so far from every component that its density underflows to 0")
            if has_out and w != 1.0:
                q_out, lz_out = _softmax_average(ell, q, ~mask)
                with np.errstate(over="ignore"):
                    p_not = 1.0 / (1.0 + np.exp(lz_in - lz_out))
                out[lo: lo + self.chunk] = q_in + ((w - 1.0) * p_not)[:, None] * (q_in - q_out)
            else:
                out[lo: lo + self.chunk] = q_in
        return out

    def _quantity(self, x, t, quantity, y=None, w=0.0):
        X, single = check_points(x, self.d)
        if y is None:
            mask, w = np.ones(self.K, dtype=bool), 1.0
        else:
            mask = self.labels == int(y)
        out = self._average(X, t, quantity, mask, float(w))
        return out[0] if single else out

    # ------------------------------------------------------------------ public
    def score(self, x, t) -> np.ndarray:
        r""":math:`\nabla_x\log p_t(x)`, ``(N, d)``."""
        return self._quantity(x, t, "score")

    def denoiser(self, x, t) -> np.ndarray:
        r""":math:`E[X_0\mid X_t = x]`, ``(N, d)``."""
        return self._quantity(x, t, "denoiser")

    def guided_score(self, x, t, y: int, w: float) -> np.ndarray:
        r""":math:`\nabla\log p_t(x) + w\,\nabla\log p_t(y\mid x)`."""
        return self._quantity(x, t, "score", y, w)

    def guided_denoiser(self, x, t, y: int, w: float) -> np.ndarray:
        r""":math:`D(x) + w\,(\sigma_t^2/\alpha_t)\nabla\log p_t(y\mid x)` (the denoiser matching the guided score)."""
        return self._quantity(x, t, "denoiser", y, w)

    def ddim_step(self, x, t, s, y: int, w: float) -> np.ndarray:
        """One guided DDIM step from OU time ``t`` to ``s < t`` (coefficients from the generated table)."""
        from numerics.generated.integrator_coeffs import ddim_coeffs

        cx, cq = ddim_coeffs(float(t), float(s))
        return cx * x + cq * self.guided_denoiser(x, t, y, w)

    def ddpm_step(self, x, t, s, y: int, w: float, z) -> np.ndarray:
        """One guided DDPM (ancestral) step with the given standard normal ``z`` (``(N, d)``)."""
        from numerics.generated.integrator_coeffs import ddpm_coeffs

        cx, cq, cz = ddpm_coeffs(float(t), float(s))
        return cx * x + cq * self.guided_denoiser(x, t, y, w) + cz * z


def _softmax_average(ell: np.ndarray, q: np.ndarray, mask: np.ndarray):
    """``(sum_k pi_k q_k, log sum_k e^{ell_k})`` over the components in ``mask`` (log-sum-exp)."""
    L = np.where(mask[None, :], ell, -np.inf)
    m = np.max(L, axis=1)
    with np.errstate(invalid="ignore"):
        e = np.exp(L - m[:, None])
    e = np.where(np.isfinite(m)[:, None], e, 0.0)
    z = np.sum(e, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = np.einsum("nk,nkd->nd", e, q) / z[:, None]
        lz = m + np.log(z)
    return avg, lz

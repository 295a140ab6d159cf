r"""Gaussian mixtures with class labels: exact scores, denoisers and guidance under the OU process.

Time convention: OU forward time ``t > 0``, :math:`\alpha_t = e^{-t}`, :math:`\sigma_t^2 = 1 - e^{-2t}`
(computed as ``-expm1(-2t)``, accurate down to the smallest positive ``t``).

Per-sample times: every method of points ``x`` (``(N, d)``) takes ``t`` either as one time for all points
or as an array of ``N`` times, one per point (row ``i`` is then the value at ``(x_i, t_i)``; it equals the
scalar-``t`` result of that row up to the rounding of ``exp``/``expm1`` of the time, exactly where NumPy's
``exp``/``expm1`` agree with the C library's, as they do on the usual platforms).
"""
from __future__ import annotations

import numpy as np

from numerics import _kernels as K_
from numerics.constants import LOG_2PI
from numerics.schedule import alpha_sigma2, alpha_t, sigma2_t
from numerics.validate import as_float_array, check_int, check_label, check_labels, check_points, check_real, \
    check_rng, check_times, check_weights

__all__ = ["GaussianMixture", "PSD_TOL_FACTOR", "spectral_decomposition", "GUIDANCE_T_MIN", "HESSIAN_T_MIN"]

#: Smallest ``t`` :meth:`GaussianMixture.guidance_vector` accepts: the smallest normal float64, DBL_MIN ~ 2.2e-308.
#: Derivation: :math:`g_y = p_{\neg y}\,(\alpha_t/\sigma_t^2)(D_y - D_{\neg y})` with
#: :math:`\sigma_t^2 = -\mathrm{expm1}(-2t) \approx 2t`; :math:`\alpha_t/\sigma_t^2 \approx 1/(2t)` is finite only
#: for :math:`2t \ge 1/\mathrm{DBL\_MAX} \approx 5.6\times10^{-309}` (at ``t = 1e-310`` it is ``inf`` and
#: :math:`g_y` came out ``-inf``); requiring :math:`t \ge` DBL_MIN keeps :math:`\sigma_t^2` normal and the factor
#: :math:`\le 2.3\times10^{307}`.
GUIDANCE_T_MIN = float(np.finfo(np.float64).tiny)
#: Smallest ``t`` :meth:`GaussianMixture.guidance_hessian` accepts: :math:`\sqrt{\mathrm{DBL\_MIN}} \approx 1.49\times10^{-154}`.
#: Derivation: the Hessian is :math:`(\alpha_t^2/\sigma_t^4)(\mathrm{Cov}_y - \mathrm{Cov})` with
#: :math:`\sigma_t^4 \approx 4t^2`; :math:`\sigma_t^4` must be a normal float (it underflows to 0, a division by
#: zero, at ``t = 1e-200``, and to a subnormal that makes the factor ``inf``, -inf results, at ``1e-160``):
#: :math:`4t^2 \ge` DBL_MIN holds for :math:`t \ge \sqrt{\mathrm{DBL\_MIN}}/2`; the bound
#: :math:`t \ge \sqrt{\mathrm{DBL\_MIN}}` keeps :math:`\alpha_t^2/\sigma_t^4 \le 1/(4\,\mathrm{DBL\_MIN}) \approx 1.1\times10^{307}`.
HESSIAN_T_MIN = float(np.sqrt(np.finfo(np.float64).tiny))


def _check_min_time(t, t_min: float, what: str) -> None:
    """Refuse times below ``t_min`` (scalar or per-point ``t``), naming ``t``; malformed ``t`` is left to
    :func:`numerics.validate.check_times`, which the caller runs next."""
    if isinstance(t, (str, bytes, bool, np.bool_)):
        return
    try:
        arr = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError):
        return
    ok = arr[np.isfinite(arr) & (arr > 0)]
    if ok.size and float(ok.min()) < t_min:
        raise ValueError(f"t: {what} needs t >= {t_min:.6g} (below it alpha_t and sigma_t^2 ~ 2t leave the "
                         f"normal float64 range and the result is not finite), got {float(ok.min())!r}")

#: Eigenvalues of a covariance below ``-PSD_TOL_FACTOR * d * eps * max(1, |S|_2)`` reject the matrix as
#: not positive semi-definite; those within ``+-`` that bound are set to exactly zero (rank deficiency).
#: The bound is a few times the backward error of a symmetric eigensolver, :math:`O(d\,u\,\|S\|_2)`.
PSD_TOL_FACTOR = 16.0
#: Relative tolerance on the asymmetry :math:`\max|S - S^\top| \le` ``SYM_TOL * max(1, max|S|)``.
SYM_TOL = 1e-10


def _check_score_finite(s: np.ndarray, what: str) -> None:
    """A score is :math:`-C_k^{-1}(x - \\alpha\\mu_k)`, up to :math:`|x - \\alpha\\mu_k|/\\sigma_t^2`: near an atom at
    ``t`` ~ 1e-310 it overflows although the density does not; refuse that, naming ``t``."""
    if not np.isfinite(s).all():
        raise ValueError(f"t: the {what} overflows float64 at this time (|x - alpha mu| / sigma_t^2 > DBL_MAX near a "
                         "singular component); use a larger t")


def spectral_decomposition(covs: np.ndarray, name: str = "covs") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decompose each covariance ``covs[k]`` (a float64 ``(K, d, d)`` array) once: ``(evecs (K,d,d), evals (K,d)
    descending, rank (K,))``.

    Raises a ValueError naming ``name`` if a covariance is not symmetric (within :data:`SYM_TOL`), not positive
    semi-definite (within :data:`PSD_TOL_FACTOR`) or too large for float64; eigenvalues within the tolerance of
    zero are set to zero."""
    K, d, _ = covs.shape
    evecs = np.zeros((K, d, d))
    evals = np.zeros((K, d))
    rank = np.zeros(K, dtype=np.int64)
    eps = np.finfo(np.float64).eps
    for k in range(K):
        S = covs[k]
        scale = max(1.0, float(np.max(np.abs(S))))
        if np.max(np.abs(S - S.T)) > SYM_TOL * scale:
            raise ValueError(f"{name}: component {k} is not symmetric (max |S - S^T| = {np.max(np.abs(S - S.T)):.3g})")
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                lam, U = np.linalg.eigh(0.5 * (S + S.T))
            except np.linalg.LinAlgError as exc:
                raise ValueError(f"{name}: component {k}: the eigen-decomposition failed ({exc})") from None
        if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(U))):
            raise ValueError(f"{name}: component {k}: the eigen-decomposition is not finite (entries too large for "
                             f"float64: max |S| = {np.max(np.abs(S)):.3g}; rescale the data)")
        lam, U = lam[::-1], U[:, ::-1]
        tol = PSD_TOL_FACTOR * d * eps * max(1.0, float(np.max(np.abs(lam))))
        if lam[-1] < -tol:
            raise ValueError(f"{name}: component {k} is not positive semi-definite (smallest eigenvalue {lam[-1]:.3g})")
        lam = np.where(lam <= tol, 0.0, lam)
        rank[k] = int(np.count_nonzero(lam))
        evecs[k], evals[k] = U, lam
    return np.ascontiguousarray(evecs), np.ascontiguousarray(evals), rank


def _logsumexp(v: np.ndarray) -> float:
    r""":math:`\log\sum_i e^{v_i}` (``-inf`` for an empty or all ``-inf`` ``v``)."""
    m = float(np.max(v)) if v.size else -np.inf
    return m + float(np.log(np.sum(np.exp(v - m)))) if np.isfinite(m) else m


#: Largest rounding error (in the log) :meth:`GaussianMixture.class_log_posterior` accepts in a logit gap near 0.
LOGIT_GAP_TOL = 1e-8


def _check_resolved(e: np.ndarray, ab: np.ndarray, sigma2: float, d: int) -> None:
    r"""Refuse, naming ``x``, a point where rounding decides the class log-posteriors: the gap
    :math:`e_k - e_*` to the largest logit has an error about :math:`(d + 4)\,u\,(b_k + b_*)/\sigma^2` (the
    :math:`b` carry a relative rounding error of a few ``u``, :meth:`GaussianMixture._split_logit`); it must stay
    below ``LOGIT_GAP_TOL + |gap| / 2`` (compared multiplied by :math:`\sigma^2`, which cannot overflow)."""
    best = int(np.argmax(e))
    u = np.finfo(np.float64).eps
    a, b = ab[:, 0], ab[:, 1]
    with np.errstate(invalid="ignore"):
        gap = e - e[best]
        err = (d + 4) * u * (b + b[best]) + u * sigma2 * (np.abs(a) + abs(a[best]))
        bad = np.isfinite(gap) & (err > sigma2 * (LOGIT_GAP_TOL + 0.5 * np.abs(gap)))
    bad[best] = False  # the reference itself: its gap is 0 exactly
    if bad.any():
        raise ValueError(f"x: the class log-posterior is not determined in float64 at this point: |x_perp|^2 / sigma_t^2 "
                         f"~ {b[best]:.3g} / {sigma2:.3g} loses the differences between components to rounding; use a "
                         "larger t or a point nearer the data")


class GaussianMixture:
    r"""A labelled Gaussian mixture :math:`X_0 \sim \sum_k w_k N(\mu_k, S_k)` and its OU marginals.

    Parameters
    ----------
    weights : array_like, shape (K,)
        Non-negative, summing to 1 within ``1e-9`` (they are renormalised exactly).
    means : array_like, shape (K, d)
    covs : array_like, shape (K, d, d)
        Symmetric positive semi-definite; singular ones (low rank: a Gaussian on an affine subspace;
        zero: an atom) are allowed and exact for every ``t > 0``.
    labels : array_like of int, shape (K,), optional
        Class of each component, integers covering ``0..C-1``.  Default: each component its own class.

    Notes
    -----
    Each covariance is eigen-decomposed once, :math:`S_k = U_k \mathrm{diag}(\lambda_k) U_k^\top`; then for
    every ``t`` :math:`C_k^{-1} = U_k \mathrm{diag}(1/(\alpha_t^2\lambda_k + \sigma_t^2)) U_k^\top`, so no
    factorisation is repeated per time.  Eigenvalues within the PSD tolerance of zero are set to zero:
    :attr:`covs` returns the covariances the mixture actually uses.
    """

    def __init__(self, weights, means, covs, labels=None):
        w = check_weights(weights, "weights")
        mu = as_float_array(means, "means", 2)
        S = as_float_array(covs, "covs", 3)
        K = w.shape[0]
        if mu.shape[0] != K:
            raise ValueError(f"means: expected {K} rows (one per weight), got shape {mu.shape}")
        d = mu.shape[1]
        if d == 0:
            raise ValueError("means: dimension d must be >= 1")
        if S.shape != (K, d, d):
            raise ValueError(f"covs: expected shape {(K, d, d)}, got {S.shape}")
        self.weights = w
        self.means = mu
        self.evecs, self.evals, self.rank = spectral_decomposition(S)
        self.evecs_t = np.ascontiguousarray(self.evecs.transpose(0, 2, 1))  # u_j as contiguous rows, for the kernels
        with np.errstate(divide="ignore"):
            self.log_weights = np.log(self.weights)
        self.labels, self.n_classes = (np.arange(K, dtype=np.int64), K) if labels is None else check_labels(labels, K)
        self.d, self.K = d, K
        for c in range(self.n_classes):
            if not np.any(self.weights[self.labels == c] > 0):
                raise ValueError(f"labels: class {c} has only zero-weight components")

    # ------------------------------------------------------------------ structure
    @property
    def covs(self) -> np.ndarray:
        """The covariances in use, :math:`U\\,\\mathrm{diag}(\\lambda)\\,U^\\top` (``(K, d, d)``)."""
        return np.einsum("kij,kj,klj->kil", self.evecs, self.evals, self.evecs)

    def key(self) -> tuple[bytes, ...]:
        """The exact arrays that define the mixture (weights, means, covariance eigen-decompositions, ranks,
        labels) as bytes: a memo key part (equal keys, equal mixtures)."""
        return tuple(np.ascontiguousarray(a).tobytes() for a in (self.weights, self.means, self.evecs, self.evals,
                                                                 self.rank, self.labels))

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.K}, d={self.d}, classes={self.n_classes}, ranks={self.rank.tolist()})"

    def conditional(self, y: int) -> "GaussianMixture":
        """The class-``y`` mixture (weights renormalised), a ``GaussianMixture`` with a single class."""
        y = self._check_label(y)
        sel = self.labels == y
        w = self.weights[sel]
        return GaussianMixture(w / w.sum(), self.means[sel], self.covs[sel], labels=np.zeros(sel.sum(), dtype=np.int64))

    def class_prior(self) -> np.ndarray:
        """:math:`P(Y = c) = \\sum_{k: y(k) = c} w_k`, shape ``(C,)``."""
        return np.bincount(self.labels, weights=self.weights, minlength=self.n_classes)

    def _check_label(self, y, name: str = "y") -> int:
        return check_label(y, self.n_classes, name)

    # ------------------------------------------------------------------ kernels
    @staticmethod
    def _alpha_sigma2(t, n: int) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`(\alpha_{t_i}, \sigma_{t_i}^2)` per point, shape ``(n,)`` each, for one time or ``n`` times."""
        t = check_times(t, n)
        if isinstance(t, float):  # the scalar route: math.exp / math.expm1, as everywhere else
            alpha, sigma2 = alpha_sigma2(t)
            return np.full(n, alpha), np.full(n, sigma2)
        return alpha_t(t), sigma2_t(t)

    def _points_args(self, x, t):
        """``(X (N, d), single, kernel arguments)`` for points ``x`` and one time or one per point."""
        X, single = check_points(x, self.d)
        alpha, sigma2 = self._alpha_sigma2(t, X.shape[0])
        return X, single, (alpha, sigma2, self.means, self.evecs_t, self.evals, self.rank, self.log_weights)

    def _average(self, x, t, quantity: int, mask=None):
        X, single, args = self._points_args(x, t)
        n = X.shape[0]
        mask = np.ones(self.K, dtype=np.bool_) if mask is None else mask
        avg_in, avg_out, logz = np.empty((n, self.d)), np.empty((n, self.d)), np.empty((n, 3))
        K_.mixture_average(X, *args, mask, quantity, avg_in, avg_out, logz, K_.workspace(n, self.K, self.d))
        if not np.all(np.isfinite(logz[:, 2] + np.where(mask.any(), logz[:, 0], 0.0))):
            raise ValueError("x: a point is so far from every component that its density underflows to 0")
        return avg_in, avg_out, logz, single, args[0], args[1]

    @staticmethod
    def _shape(arr, single):
        return arr[0] if single else arr

    def score(self, x, t) -> np.ndarray:
        r"""Score :math:`\nabla_x\log p_t(x) = -\sum_k \pi_k(x) C_k^{-1}(x - \alpha_t\mu_k)`; ``(N, d)``."""
        s, _, _, single, _, _ = self._average(x, t, K_.SCORE)
        _check_score_finite(s, "score")
        return self._shape(s, single)

    def denoiser(self, x, t) -> np.ndarray:
        r"""Tweedie denoiser :math:`E[X_0\mid X_t=x] = \sum_k \pi_k(x)\big(\mu_k + \alpha_t S_k C_k^{-1}(x-\alpha_t\mu_k)\big)`."""
        m, _, _, single, _, _ = self._average(x, t, K_.DENOISER)
        return self._shape(m, single)

    def log_density(self, x, t) -> np.ndarray:
        r""":math:`\log p_t(x) = \mathrm{logsumexp}_k\,(\log w_k + \log N(x;\alpha_t\mu_k, C_k))`; ``(N,)``."""
        X, single, args = self._points_args(x, t)
        out, ref = self._class_log_mass_raw(X, args, np.zeros(self.K, dtype=np.int64), 1)
        logp = ref + out[:, 0]
        if not np.all(np.isfinite(logp)):
            raise ValueError("x: a point is so far from every component that its density underflows to 0")
        return self._shape(logp, single)

    def _class_log_mass_raw(self, X, args, labels, C) -> tuple[np.ndarray, np.ndarray]:
        r"""``(out, ref)``: ``out[i, c]`` :math:`= \log\sum_{k:\,y(k)=c} e^{\ell_k - \ell_r}` relative to the
        reference logit ``ref[i]`` :math:`= \ell_r` (:func:`numerics._kernels.class_log_mass`; ``-inf`` where it
        underflows); the class log mass is ``ref[i] + out[i, c]``."""
        n = X.shape[0]
        out, sums, ref = np.empty((n, C)), np.empty((n, C)), np.empty(n)
        K_.class_log_mass(X, *args, labels, out, sums, ref, K_.workspace(n, self.K, self.d))
        return out, ref

    def _class_log_posterior(self, x, t, strict: bool) -> np.ndarray:
        r"""The class log-posteriors, by log-sum-exp of the class log masses relative to the reference logit (sums of
        the logit differences of :mod:`numerics._kernels`, so the common :math:`\|x\|^2/\sigma^2` never cancels).  A
        class log mass of ``-inf`` means every component of the class overflowed its quadratic form (every class has
        weight): rows where every class did (and, if ``strict``, rows where any did) are redone by
        :meth:`_rescaled_row`; without ``strict`` a ``-inf`` entry (posterior 0 in float64) stays."""
        X, single, args = self._points_args(x, t)
        L, _ = self._class_log_mass_raw(X, args, self.labels, self.n_classes)
        redo = ~np.all(np.isfinite(L), axis=1) if strict else ~np.isfinite(np.max(L, axis=1))
        with np.errstate(invalid="ignore"):  # rows of -inf only (all underflowed): NaN here, redone below
            m = np.max(L, axis=1, keepdims=True)
            lp = L - (m + np.log(np.sum(np.exp(L - m), axis=1, keepdims=True)))
        for i in np.flatnonzero(redo):
            lp[i] = self._rescaled_row(X[i], args[0][i], args[1][i], strict)
        return self._shape(lp, single)

    def class_log_posterior(self, x, t) -> np.ndarray:
        r""":math:`\log p_t(y\mid x)` for every class, by log-sum-exp; ``(N, C)``, finite (or a ValueError naming ``x``).

        A point far from rank-deficient components at a small ``t`` makes :math:`|x_\perp|^2/\sigma_t^2` overflow,
        so a class log mass underflows to ``-inf`` although the log-posterior, a difference of two such terms, is
        finite; those rows are recomputed with the common term :math:`\min_k |x_{\perp,k}|^2 / (2\sigma_t^2)`
        taken out (:meth:`_rescaled_row`).  A log-posterior below ``-DBL_MAX``, or one that rounding decides (the
        distances differ below the rounding of :math:`|x_\perp|^2`), raises a ValueError naming ``x``.
        """
        return self._class_log_posterior(x, t, strict=True)

    def _rescaled_row(self, xi: np.ndarray, alpha: float, sigma2: float, strict: bool) -> np.ndarray:
        r"""The class log-posteriors at one point from the logits :math:`\ell_k = a_k - b_k/\sigma^2`
        (:meth:`_split_logit`) shifted by :math:`\min_k b_k/\sigma^2`, which cancels in the log-sum-exp.  With
        ``strict``, a log-posterior below ``-DBL_MAX`` raises a ValueError naming ``x``."""
        with np.errstate(over="ignore", invalid="ignore"):  # a far point: non-finite (a_k, b_k), dropped below
            ab = np.array([self._split_logit(xi, k, alpha, sigma2) for k in range(self.K)])
        live = np.isfinite(ab).all(axis=1)
        if not live.any():
            raise ValueError("x: a point is so far from every component that its density underflows to 0")
        with np.errstate(over="ignore"):  # (b_k - b_min) / sigma2 beyond DBL_MAX: that component's term is 0
            e = np.where(live, ab[:, 0] - (ab[:, 1] - ab[live, 1].min()) / sigma2, -np.inf)
        _check_resolved(e, ab, sigma2, self.d)
        total = _logsumexp(e)
        out = np.array([_logsumexp(e[self.labels == c]) for c in range(self.n_classes)]) - total
        if strict and not np.all(np.isfinite(out)):
            raise ValueError(f"x: the point {xi.tolist()!r} is so far from the support of some class that its log-posterior "
                             f"is below -DBL_MAX at sigma_t^2 = {sigma2:.3g}; use a larger t")
        return out

    def _split_logit(self, xi: np.ndarray, k: int, alpha: float, sigma2: float) -> tuple[float, float]:
        r""":math:`(a_k, b_k)` with :math:`\ell_k = a_k - b_k/\sigma^2`: :math:`b_k = |v_\perp|^2/2` the part of
        :math:`v = x - \alpha\mu_k` outside the range of :math:`S_k` (as :func:`numerics._kernels.component_terms`, form A);
        ``(-inf, 0)`` for a zero-weight component."""
        if self.log_weights[k] == -np.inf:
            return -np.inf, 0.0
        r = int(self.rank[k])
        U, c = self.evecs[k][:, :r], alpha * alpha * self.evals[k, :r] + sigma2
        v = xi - alpha * self.means[k]
        p = U.T @ v
        perp = v - U @ p
        logdet = (self.d - r) * np.log(sigma2) + np.sum(np.log(c))
        a = self.log_weights[k] - 0.5 * (self.d * LOG_2PI + logdet + np.sum(p * p / c))
        return float(a), 0.5 * float(perp @ perp) if r < self.d else 0.0

    def class_posterior(self, x, t) -> np.ndarray:
        r""":math:`p_t(y\mid x) = \sum_{k:\,y(k)=y}\pi_k(x)`; ``(N, C)``, rows sum to 1 (a posterior below the
        float64 range is 0)."""
        return np.exp(self._class_log_posterior(x, t, strict=False))

    def guidance_vector(self, x, t, y) -> np.ndarray:
        r"""Guidance vector :math:`g_y(x) = \nabla_x\log p_t(y\mid x)`; ``(N, d)``.

        Computed without cancellation as

        .. math::  g_y = p_t(\neg y\mid x)\,\big(s_y - s_{\neg y}\big)
                       = p_t(\neg y\mid x)\,\frac{\alpha_t}{\sigma_t^2}\big(D_y(x) - D_{\neg y}(x)\big),

        where :math:`s_y, D_y` (:math:`s_{\neg y}, D_{\neg y}`) are the score and denoiser of the class-``y``
        mixture (of the other classes).  The second form follows from Tweedie's formula; it drops the common
        :math:`-x/\sigma_t^2` of the two scores, which would otherwise cancel catastrophically at large ``t``
        (``proofs_notes/foundations.md#class-posterior-and-guidance``).

        ``t`` must be at least :data:`GUIDANCE_T_MIN` (the derivation is there); a result that still overflows
        (a point between classes at such a ``t``) raises ``ValueError`` naming ``t``.
        """
        y = self._check_label(y)
        _check_min_time(t, GUIDANCE_T_MIN, "the guidance vector")
        mask = self.labels == y
        d_in, d_out, logz, single, alpha, sigma2 = self._average(x, t, K_.DENOISER, mask)
        return self._shape(self._guidance_from(mask, d_in, d_out, logz, alpha, sigma2), single)

    @staticmethod
    def _guidance_from(mask, d_in, d_out, logz, alpha, sigma2) -> np.ndarray:
        r""":math:`g_y = p_{\neg y}(\alpha_t/\sigma_t^2)(D_y - D_{\neg y})` from one class-split denoiser pass
        (:meth:`_average` with ``mask`` the class-``y`` components); ``(N, d)``."""
        if not np.any(~mask):
            return np.zeros_like(d_in)
        # p(not y | x) = 1 / (1 + exp(logz_in - logz_out)), stable for either sign
        with np.errstate(over="ignore"):
            p_not = 1.0 / (1.0 + np.exp(logz[:, 0] - logz[:, 1]))
        with np.errstate(over="ignore", invalid="ignore"):
            out = (p_not * (alpha / sigma2))[:, None] * (d_in - d_out)
        if not np.isfinite(out).all():
            raise ValueError("t: the guidance vector overflows float64 at this time (its scale alpha_t/sigma_t^2 "
                             f"is {float(np.max(alpha / sigma2)):.3g}); use a larger t")
        return out

    def posterior_pass(self, x, t, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r"""``(D, s, g_y, s_y)``: denoiser, score, guidance vector and class-``y`` score from ONE kernel pass.

        The pass is :meth:`guidance_vector`'s (class denoisers :math:`D_y, D_{\neg y}` and log-masses), so
        ``g_y`` equals :meth:`guidance_vector` bit for bit; :math:`D = p_y D_y + p_{\neg y} D_{\neg y}` and the
        scores by Tweedie's formula, :math:`s = (\alpha_t D - x)/\sigma_t^2`, :math:`s_y = (\alpha_t D_y - x)/\sigma_t^2`
        (equal to :meth:`denoiser`, :meth:`score` and :meth:`conditional_score` up to rounding.  For point masses,
        zero covariances, the scores are the same :math:`\alpha_t\mu_k - x` differences as the kernel's, formed
        after the average instead of per component; a component with covariance :math:`S_k` makes the Tweedie
        difference cancel, losing about :math:`\log_{10}(1 + \alpha_t^2\|S_k\|/\sigma_t^2)` digits at small ``t``:
        use :meth:`score` there).  For callers that need several of them at the same ``(x, t)`` (a score model's
        score and guidance): half the cost of separate calls.  ``t`` as in :meth:`guidance_vector`.
        """
        y = self._check_label(y)
        _check_min_time(t, GUIDANCE_T_MIN, "the guidance vector")
        mask = self.labels == y
        d_in, d_out, logz, single, alpha, sigma2 = self._average(x, t, K_.DENOISER, mask)
        g = self._guidance_from(mask, d_in, d_out, logz, alpha, sigma2)
        if np.any(~mask):
            with np.errstate(over="ignore"):
                p_not = 1.0 / (1.0 + np.exp(logz[:, 0] - logz[:, 1]))
                p_in = 1.0 / (1.0 + np.exp(logz[:, 1] - logz[:, 0]))
            den = p_in[:, None] * d_in + p_not[:, None] * d_out
        else:
            den = d_in
        X = check_points(x, self.d)[0]
        a, s2 = alpha[:, None], sigma2[:, None]
        s, s_y = (a * den - X) / s2, (a * d_in - X) / s2
        _check_score_finite(s, "score")
        _check_score_finite(s_y, "conditional score")
        return tuple(self._shape(v, single) for v in (den, s, g, s_y))

    def guided_denoiser(self, x, t, y, w: float) -> np.ndarray:
        r"""Classifier-guided denoiser :math:`D_w = D + w\,\frac{\sigma_t^2}{\alpha_t} g_y` in ONE kernel pass; ``(N, d)``.

        With the class denoisers :math:`D_y, D_{\neg y}` and posteriors :math:`p_y, p_{\neg y}` of one pass,
        :math:`D = p_y D_y + p_{\neg y} D_{\neg y}` and :math:`\frac{\sigma_t^2}{\alpha_t} g_y = p_{\neg y}(D_y - D_{\neg y})`
        (:meth:`guidance_vector`), so :math:`D_w = p_y D_y + p_{\neg y} D_{\neg y} + w\,p_{\neg y}(D_y - D_{\neg y})`.
        Equal to ``denoiser(x, t) + w * sigma2/alpha * guidance_vector(x, t, y)`` up to rounding, at half the cost.
        """
        y = self._check_label(y)
        w = check_real(w, "w")
        mask = self.labels == y
        d_in, d_out, logz, single, _, _ = self._average(x, t, K_.DENOISER, mask)
        if not np.any(~mask):
            return self._shape(d_in, single)
        with np.errstate(over="ignore"):
            p_not = 1.0 / (1.0 + np.exp(logz[:, 0] - logz[:, 1]))
            p_in = 1.0 / (1.0 + np.exp(logz[:, 1] - logz[:, 0]))
        with np.errstate(over="ignore", invalid="ignore"):
            out = p_in[:, None] * d_in + ((1.0 - w) * p_not)[:, None] * d_out + (w * p_not)[:, None] * d_in
        if not np.isfinite(out).all():
            raise ValueError(f"w: the guided denoiser overflows float64 with w={w!r}; use a smaller weight")
        return self._shape(out, single)

    def conditional_score(self, x, t, y) -> np.ndarray:
        r"""Class-conditional score :math:`\nabla_x\log p_t(x\mid y)`; ``(N, d)``."""
        y = self._check_label(y)
        s_in, _, _, single, _, _ = self._average(x, t, K_.SCORE, self.labels == y)
        _check_score_finite(s_in, "conditional score")
        return self._shape(s_in, single)

    def posterior_cov(self, x, t, y=None) -> np.ndarray:
        r"""Posterior covariance :math:`\mathrm{Cov}[X_0\mid X_t=x]` (or given class ``y``); ``(N, d, d)``.

        Law of total covariance over components, with :math:`\mathrm{Cov}[X_0\mid x,k] = \sigma_t^2 S_k C_k^{-1}`.
        """
        mask = np.ones(self.K, dtype=np.bool_) if y is None else (self.labels == self._check_label(y))
        X, single, args = self._points_args(x, t)
        n = X.shape[0]
        out = np.empty((n, self.d, self.d))
        K_.mixture_posterior_cov(X, *args, mask, out, K_.workspace(n, self.K, self.d))
        if not np.all(np.isfinite(out)):
            raise ValueError("x: a point is so far from every component that its density underflows to 0")
        return self._shape(out, single)

    def guidance_hessian(self, x, t, y) -> np.ndarray:
        r""":math:`\nabla_x^2\log p_t(y\mid x) = \frac{\alpha_t^2}{\sigma_t^4}\big(\mathrm{Cov}[X_0\mid x,y]-\mathrm{Cov}[X_0\mid x]\big)`.

        ``t`` must be at least :data:`HESSIAN_T_MIN` (the derivation is there); a result that still overflows
        raises ``ValueError`` naming ``t``.
        """
        X, single = check_points(x, self.d)
        _check_min_time(t, HESSIAN_T_MIN, "the guidance Hessian")
        alpha, sigma2 = self._alpha_sigma2(t, X.shape[0])
        c = alpha**2 / sigma2**2
        out = (c[0] if single else c[:, None, None]) * (self.posterior_cov(x, t, y) - self.posterior_cov(x, t))
        if not np.isfinite(out).all():
            raise ValueError("t: the guidance Hessian overflows float64 at this time (its scale alpha_t^2/sigma_t^4 "
                             f"is {float(np.max(c)):.3g}); use a larger t")
        return out

    def sample_data(self, n: int, rng: np.random.Generator, y: int | None = None) -> np.ndarray:
        """Draw ``n`` samples of :math:`X_0` (of class ``y`` if given) with the generator ``rng``
        (a ``np.random.Generator``; anything else raises ``ValueError`` naming ``rng``)."""
        n = check_int(n, "n", 1)
        if n * self.d > 2**31:  # 16 GiB of float64: refuse up front rather than a MemoryError
            raise ValueError(f"n: n={n} x d={self.d} is more than 2**31 float64 values (16 GiB)")
        rng = check_rng(rng)
        gm = self if y is None else self.conditional(y)
        ks = rng.choice(gm.K, size=n, p=gm.weights)
        z = rng.standard_normal((n, gm.d))
        out = gm.means[ks].copy()
        for k in range(gm.K):  # one (d, d) factor per component: memory O(n d), not O(n d^2)
            sel = ks == k
            if gm.rank[k] and np.any(sel):
                out[sel] += z[sel] @ (gm.evecs[k] * np.sqrt(gm.evals[k])[None, :]).T
        return out

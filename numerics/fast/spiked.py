r"""Covariances in "spiked" form: an isotropic part plus the eigen-directions above it.

Each covariance is written :math:`S_k = \lambda_{0k} I + U_k\,\mathrm{diag}(\delta_k)\,U_k^\top` with
:math:`\lambda_{0k}` its smallest eigenvalue (``0`` when singular) and :math:`U_k` (``d x r'_k``) the
eigenvectors whose eigenvalue exceeds it, :math:`\delta_{kj} = \lambda_{kj} - \lambda_{0k} > 0`.  Atoms and
subspace Gaussians have :math:`\lambda_0 = 0` (the rank-r form of :mod:`numerics._kernels`); an isotropic
:math:`s^2 I` has no spikes at all, so its cost is ``O(d)`` per component instead of ``O(d^2)``.  Used by the
fast path (:mod:`numerics.fast.mixture`) and by the bench's NumPy baseline
(:mod:`numerics.bench.numpy_baseline`).  Plain NumPy, no Numba.
"""
from __future__ import annotations

import numpy as np

__all__ = ["spiked_factors", "SPIKE_TOL_FACTOR"]

#: Eigenvalues within ``SPIKE_TOL_FACTOR * d * eps * max(1, lambda_max)`` of the smallest one are merged into
#: the isotropic part (the same bound as :data:`numerics.mixture.PSD_TOL_FACTOR`: the backward error of the
#: symmetric eigensolver, so the merge changes the covariance by no more than its computation already did).
SPIKE_TOL_FACTOR = 16.0


def spiked_factors(evecs: np.ndarray, evals: np.ndarray, rank: np.ndarray):
    """``(lam0 (K,), U (K, d, rmax), delta (K, rmax))`` from descending eigen-factors; zero-padded spikes.

    Padding has ``delta = 0`` and ``U = 0``, which contributes nothing to any formula of the spiked form.
    """
    K, d = evals.shape
    eps = np.finfo(np.float64).eps
    lam0 = np.where(np.asarray(rank) < d, 0.0, evals[:, d - 1])
    spikes = []
    for k in range(K):
        tol = SPIKE_TOL_FACTOR * d * eps * max(1.0, float(np.max(np.abs(evals[k]))))
        sel = np.nonzero(evals[k] - lam0[k] > tol)[0]
        spikes.append((evecs[k][:, sel], evals[k, sel] - lam0[k]))
    rmax = max((s[1].shape[0] for s in spikes), default=0)
    U = np.zeros((K, d, rmax))
    delta = np.zeros((K, rmax))
    for k, (u, dl) in enumerate(spikes):
        U[k, :, : dl.shape[0]] = u
        delta[k, : dl.shape[0]] = dl
    return np.ascontiguousarray(lam0, dtype=np.float64), U, delta

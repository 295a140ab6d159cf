"""Named test targets with exact scores, used by ``guidance-verify sample`` and the examples.

* ``two_class``: two Gaussian classes in the plane, one isotropic and one elongated.
* ``atoms``: three classes of point masses (a finite data set; the exact score is a softmax).
* ``subspace``: two classes of Gaussians supported on lines (rank-one covariances) in the plane.
"""
from __future__ import annotations

import numpy as np

from numerics.mixture import GaussianMixture

__all__ = ["BUILTIN_TARGETS", "two_class", "atoms", "subspace", "get_target"]


def two_class() -> GaussianMixture:
    """Class 0: N((-2, 0), 0.5 I); class 1: N((2, 1), [[1, 0.6], [0.6, 0.5]])."""
    covs = np.array([0.5 * np.eye(2), [[1.0, 0.6], [0.6, 0.5]]])
    return GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 1.0]], covs, labels=[0, 1])


def atoms() -> GaussianMixture:
    """Nine equally weighted atoms, three per class, on three rays from the origin."""
    angles = np.repeat(np.array([0.0, 2.0, 4.0]) * np.pi / 3.0, 3)
    radii = np.tile([1.0, 2.0, 3.0], 3)
    means = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return GaussianMixture(np.full(9, 1 / 9), means, np.zeros((9, 2, 2)), labels=np.repeat([0, 1, 2], 3))


def subspace() -> GaussianMixture:
    """Class 0: N on the line x2 = 1 (direction (1, 0)); class 1: N on the line x1 = x2 - 1 (direction (1, 1)/sqrt 2)."""
    e1 = np.array([1.0, 0.0])
    e2 = np.array([1.0, 1.0]) / np.sqrt(2.0)
    covs = np.array([2.0 * np.outer(e1, e1), 2.0 * np.outer(e2, e2)])
    return GaussianMixture([0.5, 0.5], [[0.0, 1.0], [0.0, 1.0]], covs, labels=[0, 1])


BUILTIN_TARGETS = {"two_class": two_class, "atoms": atoms, "subspace": subspace}


def get_target(name: str) -> GaussianMixture:
    """The named built-in target; ``ValueError`` for an unknown name."""
    if name not in BUILTIN_TARGETS:
        raise ValueError(f"target: unknown {name!r}; choose from {sorted(BUILTIN_TARGETS)}")
    return BUILTIN_TARGETS[name]()

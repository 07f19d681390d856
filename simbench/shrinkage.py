"""Eigenvalue shrinkage of normalised weight covariances (MATH.md: Shrinkage; GM eq. 3).

A shrinkage is a plugin (hookspec ``simbench_register_shrinkages``): called with the
eigenvalues ``λ`` of ``C = WᵀW / (n_out σ²_init)`` and ``γ = d_in / n_out``, it returns
the shrunk eigenvalues.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from simbench.plugin import Plugin


class Shrinkage(Plugin):
    """Base class: ``shrinkage(eigenvalues, gamma) -> shrunk eigenvalues``."""

    kind: ClassVar[str] = "shrinkage"

    def __call__(self, eigenvalues: np.ndarray, gamma: float) -> np.ndarray:
        lam = np.asarray(eigenvalues, dtype=np.float64)
        if gamma <= 0 or not np.isfinite(gamma):
            raise ValueError(f"gamma = d_in / n_out must be positive; got {gamma}")
        if not np.isfinite(lam).all():
            raise ValueError("eigenvalues contain NaN or inf")
        return self._shrink(lam, float(gamma))

    def _shrink(self, lam: np.ndarray, gamma: float) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} must define _shrink")


class NoShrinkage(Shrinkage):
    """Identity: keep the sample eigenvalues (negative round-off clipped to 0)."""

    name = "none"

    def _shrink(self, lam: np.ndarray, gamma: float) -> np.ndarray:
        return np.clip(lam, 0.0, None)


class GMShrinkage(Shrinkage):
    """Guth & Ménard eq. 3: invert the spiked Marchenko–Pastur bias; bulk set to 0.

    ``λ ↦ (λ−1−γ)/2 + sqrt(((λ+1−γ)/2)² − λ)`` for ``λ > (1+√γ)²`` (the bulk edge),
    else 0. This is the population spike ``ℓ`` (in units of the init variance, above
    the identity) whose sample eigenvalue is ``λ = (1+ℓ)(1+γ/ℓ)``.
    """

    name = "gm"

    def _shrink(self, lam: np.ndarray, gamma: float) -> np.ndarray:
        edge = (1.0 + np.sqrt(gamma)) ** 2
        out = np.zeros_like(lam)
        spike = lam > edge
        ls = lam[spike]
        disc = ((ls + 1.0 - gamma) / 2.0) ** 2 - ls
        out[spike] = (ls - 1.0 - gamma) / 2.0 + np.sqrt(np.clip(disc, 0.0, None))
        return out

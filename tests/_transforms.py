"""Feature-axis transforms used by the invariance tests (MATH.md: Invariances)."""

from __future__ import annotations

import numpy as np

from simbench.plugin import Invariance


def haar_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.normal(size=(d, d)))
    return Q * np.sign(np.diag(R))


def _on_features(X: np.ndarray, f) -> np.ndarray:
    """Apply ``f`` to ``X`` with axis 1 moved last (works for (n, d) and (B, C, H, W))."""
    Xm = np.moveaxis(X, 1, -1)
    return np.moveaxis(f(Xm), -1, 1)


def transform(X: np.ndarray, inv: Invariance, rng: np.random.Generator, size: float = 1.0):
    """A random transform of kind ``inv`` of the feature axis of ``X``."""
    d = X.shape[1]
    if inv is Invariance.PERMUTATION:
        perm = rng.permutation(d)
        return np.take(X, perm, axis=1)
    if inv is Invariance.ORTHOGONAL:
        Q = haar_orthogonal(rng, d)
        return _on_features(X, lambda A: A @ Q)
    if inv is Invariance.ISOTROPIC_SCALING:
        c = float(np.exp(rng.uniform(-2.0, 2.0) * size))
        return X * c
    if inv is Invariance.INVERTIBLE_LINEAR:
        # well-conditioned but far from orthogonal: singular values in [0.3, 3]
        s = np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=d))
        A = haar_orthogonal(rng, d) @ np.diag(s) @ haar_orthogonal(rng, d)
        return _on_features(X, lambda B: B @ A)
    if inv is Invariance.TRANSLATION:
        scale = float(np.abs(X).mean()) * 3.0 * size
        b = rng.normal(size=d) * scale
        return _on_features(X, lambda B: B + b)
    raise AssertionError(inv)

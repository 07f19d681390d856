"""Shared fixtures: seeded generators and small synthetic representations."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def correlated_pair(
    rng: np.random.Generator,
    n: int = 200,
    dx: int = 12,
    dy: int = 9,
    k: int = 5,
    noise: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Two representations sharing a k-dimensional latent, plus independent noise."""
    Z = rng.normal(size=(n, k))
    X = Z @ rng.normal(size=(k, dx)) + noise * rng.normal(size=(n, dx))
    Y = Z @ rng.normal(size=(k, dy)) + noise * rng.normal(size=(n, dy))
    return X, Y

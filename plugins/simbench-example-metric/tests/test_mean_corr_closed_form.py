"""Closed-form checks of ``mean_corr`` (run: pytest plugins/simbench-example-metric/tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # importable without pip install

from simbench_example_metric import MeanCorrelation


def orthonormal_centred(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``k`` centred, mutually orthogonal columns of unit norm."""
    A = rng.normal(size=(n, k))
    A -= A.mean(axis=0)
    return np.linalg.qr(A)[0]


def test_known_correlations_after_a_permutation() -> None:
    # X's columns and the noise columns Z are centred and orthonormal, so
    # y_i = cos θ_i x_π(i) + sin θ_i z_i has corr(x_j, y_i) = cos θ_i [j = π(i)] exactly:
    # the best matching is π and the score is mean(cos θ).
    rng = np.random.default_rng(0)
    n, d = 400, 6
    Q = orthonormal_centred(rng, n, 2 * d)
    X, Z = Q[:, :d], Q[:, d:]
    theta = np.array([0.1, 0.4, 0.7, 1.0, 1.2, 0.3])
    perm = np.array([3, 0, 5, 1, 2, 4])
    Y = np.cos(theta) * X[:, perm] + np.sin(theta) * Z
    Y = Y * np.array([1.0, 2.0, 0.5, 3.0, 7.0, 0.1]) + 5.0  # per-neuron scale and shift
    expected = np.cos(theta).mean()
    assert MeanCorrelation()(X, Y) == pytest.approx(expected, rel=1e-12)
    assert MeanCorrelation()(Y, X) == pytest.approx(expected, rel=1e-12)


def test_sign_flips_and_partial_matching() -> None:
    # Y has 3 neurons: -x_2, 0.5·x_0 + const noise-free, and a constant one.
    rng = np.random.default_rng(1)
    X = orthonormal_centred(rng, 300, 4)
    Y = np.column_stack([-X[:, 2], 0.5 * X[:, 0] + 1.0, np.full(300, 3.0)])
    # signed: best is y1↔x0 (+1); y0 = -x2 has correlation -1 with x2 and 0 with the
    # others, so it matches an unrelated x (0); the constant neuron contributes 0.
    assert MeanCorrelation()(X, Y) == pytest.approx(1.0 / 3.0, rel=1e-12)
    # absolute: |−1| counts, so two perfect matches out of k = min(4, 3) = 3
    assert MeanCorrelation(absolute=True)(X, Y) == pytest.approx(2.0 / 3.0, rel=1e-12)


def test_streaming_equals_full_batch() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 7)) + 3.0
    Y = X[:, ::-1] @ rng.normal(size=(7, 5)) + rng.normal(size=(500, 5))
    metric = MeanCorrelation()
    acc = metric.accumulator()
    for rows in np.array_split(np.arange(500), 7):
        acc.update(X[rows], Y[rows])
    # independent reference: np.corrcoef and brute force over all matchings of Y's 5 neurons
    from itertools import permutations

    R = np.corrcoef(X.T, Y.T)[:7, 7:]
    best = max(R[list(p), range(5)].sum() for p in permutations(range(7), 5)) / 5
    assert metric(acc) == pytest.approx(best, rel=1e-10)
    assert metric(X, Y) == pytest.approx(best, rel=1e-10)


def test_bad_parameter_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="absolute"):
        MeanCorrelation(absolute="sometimes")

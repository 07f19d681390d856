"""distance_correlation: brute force on full distance matrices, closed forms, blocks."""

from __future__ import annotations

import numpy as np
import pytest

import simbench
from simbench.metrics import dependence
from simbench.metrics.dependence import distance_covariances
from tests._transforms import haar_orthogonal


def related(seed: int, n: int = 97) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    X = Z @ rng.normal(size=(3, 6)) + 0.3 * rng.normal(size=(n, 6))
    Y = np.abs(Z[:, :2]) + 0.3 * rng.normal(size=(n, 2))  # dependent, not linearly
    return X, Y


def brute_dcor2(X: np.ndarray, Y: np.ndarray, bias_corrected: bool) -> float:
    """dCor² from the full n×n distance matrices (pairwise differences, no Gram trick)."""
    n = X.shape[0]

    def centred(Z: np.ndarray) -> np.ndarray:
        a = np.sqrt(((Z[:, None, :] - Z[None, :, :]) ** 2).sum(axis=-1))
        if not bias_corrected:  # Székely et al. 2007: double centring
            return a - a.mean(axis=0) - a.mean(axis=1)[:, None] + a.mean()
        # Székely & Rizzo 2014 Def. 1: U-centring with zero diagonal
        A = a - a.sum(axis=0) / (n - 2) - a.sum(axis=1)[:, None] / (n - 2)
        A += a.sum() / ((n - 1) * (n - 2))
        np.fill_diagonal(A, 0.0)
        return A

    A, B = centred(X), centred(Y)
    return float(np.sum(A * B) / np.sqrt(np.sum(A * A) * np.sum(B * B)))


@pytest.mark.parametrize("bias_corrected", [False, True])
def test_matches_full_matrix_brute_force(bias_corrected):
    X, Y = related(0)
    ref = brute_dcor2(X, Y, bias_corrected)
    sq = simbench.get_metric("distance_correlation", bias_corrected=bias_corrected, squared=True)
    assert abs(sq(X, Y) - ref) < 1e-12
    if not bias_corrected:
        plain = simbench.get_metric("distance_correlation")
        assert abs(plain(X, Y) - np.sqrt(ref)) < 1e-12
    else:  # squared is implied by bias_corrected
        implied = simbench.get_metric("distance_correlation", bias_corrected=True)
        assert implied(X, Y) == sq(X, Y)


@pytest.mark.parametrize("bias_corrected", [False, True])
@pytest.mark.parametrize("rows", [1, 7, 50, 96, 97, 500])
def test_blocks_equal_one_block(bias_corrected, rows):
    X, Y = related(1)
    full = distance_covariances(X, Y, bias_corrected=bias_corrected, rows=X.shape[0])
    got = distance_covariances(X, Y, bias_corrected=bias_corrected, rows=rows)
    np.testing.assert_allclose(got, full, rtol=1e-12, atol=0)


def test_distance_blocks_never_exceed_the_block_rows(monkeypatch):
    X, Y = related(2, n=120)
    seen = []
    real = dependence._distance_rows

    def spy(Z, sq, lo, hi):
        out = real(Z, sq, lo, hi)
        seen.append(out.shape)
        return out

    monkeypatch.setattr(dependence, "_distance_rows", spy)
    monkeypatch.setattr(dependence, "_BLOCK_ELEMENTS", 120 * 16)  # 16 rows per block
    value = simbench.get_metric("distance_correlation")(X, Y)
    assert seen and max(s[0] for s in seen) == 16 and all(s[1] == 120 for s in seen)
    assert len(seen) == 4 * 8  # two passes × two sides × ceil(120/16) blocks
    assert abs(value**2 - brute_dcor2(X, Y, False)) < 1e-12


@pytest.mark.parametrize("bias_corrected", [False, True])
def test_one_for_scaled_rotated_translated_copy(bias_corrected):
    X, _ = related(3)
    rng = np.random.default_rng(0)
    Y = -2.5 * X @ haar_orthogonal(rng, X.shape[1]) + rng.normal(size=X.shape[1])
    m = simbench.get_metric("distance_correlation", bias_corrected=bias_corrected)
    assert abs(m(X, Y) - 1.0) < 1e-12
    assert abs(m(X, X) - 1.0) < 1e-12


def test_independent_data_bias_corrected_is_zero_in_expectation_plain_is_not():
    u, v = [], []
    bc = simbench.get_metric("distance_correlation", bias_corrected=True)
    plain = simbench.get_metric("distance_correlation", squared=True)
    for seed in range(60):
        rng = np.random.default_rng(seed)
        X, Y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
        u.append(bc(X, Y))
        v.append(plain(X, Y))
    se = np.std(u, ddof=1) / np.sqrt(len(u))
    assert abs(np.mean(u)) < 3 * se
    assert min(u) < 0 < max(u), "the bias-corrected estimator is negative for some draws"
    assert np.mean(v) > 0.1 and min(v) > 0  # the V-statistic is biased upwards


def test_two_samples_and_constant_inputs():
    X, Y = np.array([[0.0, 1.0], [2.0, 5.0]]), np.array([[3.0], [-1.0]])
    assert simbench.get_metric("distance_correlation")(X, Y) == pytest.approx(1.0, abs=1e-15)
    Xr, Yr = related(4)
    const = np.ones_like(Xr)
    for params in ({}, {"bias_corrected": True}):
        assert simbench.get_metric("distance_correlation", **params)(const, Yr) == 0.0


def test_validation():
    with pytest.raises(ValueError, match="squared=True"):
        simbench.get_metric("distance_correlation", bias_corrected=True, squared=False)
    X, Y = related(5)
    with pytest.raises(ValueError, match="at least 4"):
        simbench.get_metric("distance_correlation", bias_corrected=True)(X[:3], Y[:3])
    with pytest.raises(ValueError, match="same samples"):
        simbench.get_metric("distance_correlation")(X, Y[:-1])

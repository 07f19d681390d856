"""Procrustes shape distance (Williams 2021): golden values and the α family."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

import simbench
from tests._transforms import haar_orthogonal
from tests.conftest import correlated_pair


def _normalised(X):
    Xc = X - X.mean(0)
    return Xc / np.linalg.norm(Xc)


def test_matches_orthogonal_procrustes(rng):
    X, Y = correlated_pair(rng, dx=9, dy=9)
    A, B = _normalised(X), _normalised(Y)
    R, _ = orthogonal_procrustes(A, B)
    expected = np.arccos(np.sum((A @ R) * B))
    assert simbench.get_metric("procrustes_distance")(X, Y) == pytest.approx(expected, rel=1e-10)


def test_zero_padding_for_unequal_widths(rng):
    X, Y = correlated_pair(rng, dx=9, dy=5)
    A, B = _normalised(X), np.pad(_normalised(Y), ((0, 0), (0, 4)))
    R, _ = orthogonal_procrustes(A, B)
    expected = np.arccos(np.sum((A @ R) * B))
    assert simbench.get_metric("procrustes_distance")(X, Y) == pytest.approx(expected, rel=1e-10)


def test_distance_zero_for_rotated_scaled_shifted_copy(rng):
    X, _ = correlated_pair(rng)
    Y = 2.5 * X @ haar_orthogonal(rng, X.shape[1]) + 1.0
    assert simbench.get_metric("procrustes_distance")(X, Y) < 1e-6


def test_alpha_zero_is_mean_canonical_correlation(rng):
    # full whitening: cos = Σρ / sqrt(d_x d_y), ρ the canonical correlations
    X, Y = correlated_pair(rng, dx=6, dy=4)
    Qx, _ = np.linalg.qr(X - X.mean(0))
    Qy, _ = np.linalg.qr(Y - Y.mean(0))
    rho = np.linalg.svd(Qx.T @ Qy, compute_uv=False)
    expected = np.arccos(rho.sum() / np.sqrt(6 * 4))
    assert simbench.get_metric("procrustes_distance", alpha=0.0)(X, Y) == pytest.approx(
        expected, rel=1e-10
    )


def test_partial_whitening_golden(rng):
    X, Y = correlated_pair(rng, dx=5, dy=5)
    a = 0.3

    def whiten(Z):
        Zc = Z - Z.mean(0)
        lam, V = np.linalg.eigh(Zc.T @ Zc / len(Z))
        return Zc @ (a * np.eye(Z.shape[1]) + (1 - a) * V @ np.diag(lam**-0.5) @ V.T)

    A, B = whiten(X), whiten(Y)
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)
    R, _ = orthogonal_procrustes(A, B)
    expected = np.arccos(np.sum((A @ R) * B))
    assert simbench.get_metric("procrustes_distance", alpha=a)(X, Y) == pytest.approx(
        expected, rel=1e-10
    )


def test_large_offsets_take_the_centring_path(rng):
    X, Y = correlated_pair(rng)
    m = simbench.get_metric("procrustes_distance")
    assert m(X + 1e7, Y - 1e7) == pytest.approx(m(X, Y), rel=1e-8)


def test_degenerate(rng):
    X, Y = correlated_pair(rng)
    m = simbench.get_metric("procrustes_distance")
    with pytest.raises(ValueError, match="constant"):
        m(np.full_like(X, 3.0), Y)
    Xr = X.copy()
    Xr[:, 1] = Xr[:, 0]  # rank-deficient: fine at α = 1, undefined whitening at α < 1
    assert np.isfinite(m(Xr, Y))
    with pytest.raises(ValueError, match="singular"):
        simbench.get_metric("procrustes_distance", alpha=0.5)(Xr, Y)
    with pytest.raises(ValueError):
        simbench.get_metric("procrustes_distance", alpha=1.5)


def test_n_below_d_matches_svd_to_1e10(rng):
    # rank-deficient XᵀY: rounding-level eigenvalues must not add sqrt(eps) terms
    X = rng.normal(size=(60, 90))
    Y = X[:, :40] @ rng.normal(size=(40, 90)) + rng.normal(size=(60, 90))
    A, B = _normalised(X), _normalised(Y)
    expected = np.arccos(np.linalg.svd(A.T @ B, compute_uv=False).sum())
    got = simbench.get_metric("procrustes_distance")(X, Y)
    assert got == pytest.approx(expected, rel=1e-10)

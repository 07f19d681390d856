"""Procrustes shape distance (Williams 2021): golden values and the α family."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

import simbench
from simbench.plugin import Invariance
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
        C = Zc.T @ Zc
        lam, V = np.linalg.eigh(C / (np.trace(C) / Z.shape[1]))  # mean variance 1
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


# -- convention="netrep" (MATH.md: netrep's LinearMetric for 0 < α < 1) --------------------
def _netrep_pair():
    """Centred columns orthogonal: scatters diag(4, 1) and diag(1, 9), derived by hand."""
    u1 = np.array([1.0, -1, 1, -1]) / 2
    u2 = np.array([1.0, 1, -1, -1]) / 2
    u3 = np.array([1.0, -1, -1, 1]) / 2
    X = np.column_stack([2 * u1, u2]) + 5.0  # offsets: centring is part of the metric
    Y = np.column_stack([u1, 3 * u3]) - 1.0
    return X, Y


def test_netrep_convention_golden_value():
    X, Y = _netrep_pair()
    # α = 1/2 on the unnormalised scatters: Mx = diag(1/2 + 1/4, 1/2 + 1/2), My = diag(1, 2/3)
    # Xw = [1.5 u1, u2], Yw = [u1, 2 u3]: cos = 1.5 / sqrt(3.25 · 5)
    expected = np.arccos(1.5 / np.sqrt(3.25 * 5.0))
    got = simbench.get_metric("procrustes_distance", alpha=0.5, convention="netrep")(X, Y)
    assert got == pytest.approx(expected, rel=1e-12)
    # simbench's default whitens with S / (tr S / d) = diag(8, 2)/5 and diag(2, 18)/10:
    # Mx = diag(1/2 + √5/(4√2), 1/2 + √5/(2√2)), My = diag(1/2 + √5/2, 1/2 + √5/6)
    mx1, mx2 = 0.5 + np.sqrt(5) / (4 * np.sqrt(2)), 0.5 + np.sqrt(5) / (2 * np.sqrt(2))
    my1, my2 = 0.5 + np.sqrt(5) / 2, 0.5 + np.sqrt(5) / 6
    cos = 2 * mx1 * my1 / np.sqrt((4 * mx1**2 + mx2**2) * (my1**2 + 9 * my2**2))
    default = simbench.get_metric("procrustes_distance", alpha=0.5)(X, Y)
    assert default == pytest.approx(np.arccos(cos), rel=1e-12)
    # the netrep value depends on the data's scale, simbench's does not
    m = simbench.get_metric("procrustes_distance", alpha=0.5, convention="netrep")
    assert abs(m(10 * X, Y) - got) > 1e-3
    assert simbench.get_metric("procrustes_distance", alpha=0.5)(10 * X, Y) == pytest.approx(
        default, rel=1e-12
    )
    assert Invariance.ISOTROPIC_SCALING not in m.claimed_invariances()


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.8])
def test_default_partial_whitening_is_scale_invariant(rng, alpha):
    X, Y = correlated_pair(rng, dx=7, dy=5)
    m = simbench.get_metric("procrustes_distance", alpha=alpha)
    assert Invariance.ISOTROPIC_SCALING in m.claimed_invariances()
    assert m(0.01 * X, 30 * Y) == pytest.approx(m(X, Y), rel=1e-10)


def test_netrep_convention_alpha_ends_equal_default(rng):
    X, Y = correlated_pair(rng, dx=9, dy=7)
    for a in (0.0, 1.0):
        ref = simbench.get_metric("procrustes_distance", alpha=a)(X, Y)
        got = simbench.get_metric("procrustes_distance", alpha=a, convention="netrep")(X, Y)
        assert got == pytest.approx(ref, rel=1e-9)


def test_netrep_convention_regularises_rank_deficient_input(rng):
    X = rng.normal(size=(30, 50))  # n < d: singular scatter, clipped at 1e-7 as netrep does
    Y = X[:, :20] @ rng.normal(size=(20, 40)) + 0.3 * rng.normal(size=(30, 40))
    got = simbench.get_metric("procrustes_distance", alpha=0.3, convention="netrep")(X, Y)
    assert 0.0 < got < np.pi / 2
    with pytest.raises(ValueError, match="singular"):
        simbench.get_metric("procrustes_distance", alpha=0.3)(X, Y)


@pytest.mark.parametrize(("n", "dx", "dy"), [(200, 10, 7), (30, 50, 40)])
@pytest.mark.parametrize("alpha", [0.3, 0.7])
def test_netrep_convention_matches_netrep(rng, n, dx, dy, alpha):
    netrep = pytest.importorskip("netrep.metrics", reason="netrep not importable")
    X, Y = correlated_pair(rng, n=n, dx=dx, dy=dy)
    X, Y = X + 1.0, Y - 2.0
    ref = netrep.LinearMetric(alpha=alpha).fit_score(X, Y)
    got = simbench.get_metric("procrustes_distance", alpha=alpha, convention="netrep")(X, Y)
    assert got == pytest.approx(ref, rel=1e-10, abs=1e-10)

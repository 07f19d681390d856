"""Riemannian distance between second moments XXᵀ/d (Shahbazi 2021): closed forms, metric axioms."""

from __future__ import annotations

import numpy as np
import pytest

import simbench
from tests._transforms import haar_orthogonal


def _pair(rng, n=12, dx=20, dy=15, k=6):
    Z = rng.normal(size=(n, k))
    X = Z @ rng.normal(size=(k, dx)) + 0.5 * rng.normal(size=(n, dx))
    Y = Z @ rng.normal(size=(k, dy)) + 0.5 * rng.normal(size=(n, dy))
    return X, Y


@pytest.fixture
def metric():
    return simbench.get_metric("riemannian_distance")


def test_golden_diagonal_second_moments(metric):
    # G_x = diag(4, 1)/2, G_y = diag(1, 9)/3: λ(G_x⁻¹G_y) = (1/6, 6), d = √2 · ln 6
    X = np.array([[2.0, 0.0], [0.0, 1.0]])
    Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert metric(X, Y) == pytest.approx(np.sqrt(2.0) * np.log(6.0), rel=1e-13)
    # same width: G_y = diag(1, 9)/2, λ = (1/4, 9): d = 2 sqrt(ln²2 + ln²3)
    Y2 = np.array([[1.0, 0.0], [0.0, 3.0]])
    expected = 2.0 * np.sqrt(np.log(2.0) ** 2 + np.log(3.0) ** 2)
    assert metric(X, Y2) == pytest.approx(expected, rel=1e-13)


def test_golden_matches_matrix_logarithm(rng, metric):
    # independent route: ||logm(G_x^{-1/2} G_y G_x^{-1/2})||_F with scipy's sqrtm / logm
    import scipy.linalg

    X, Y = _pair(rng, n=6, dx=9, dy=7)
    Gx, Gy = X @ X.T / 9, Y @ Y.T / 7
    R = np.linalg.inv(scipy.linalg.sqrtm(Gx).real)
    expected = np.linalg.norm(scipy.linalg.logm(R @ Gy @ R).real, "fro")
    assert metric(X, Y) == pytest.approx(expected, rel=1e-9)


def test_scaling_closed_form(rng, metric):
    # G_{cX} = c² G_X: every λ = c², d = 2 |ln c| √n
    X, _ = _pair(rng)
    for c in (0.1, 3.0):
        assert metric(c * X, X) == pytest.approx(2 * abs(np.log(c)) * np.sqrt(12), rel=1e-11)


def test_identity_and_orthogonal_invariance(rng, metric):
    X, Y = _pair(rng)
    assert metric(X, X) == pytest.approx(0.0, abs=1e-10)
    assert metric(X, X @ haar_orthogonal(rng, 20)) == pytest.approx(0.0, abs=1e-8)
    # embedding in more features with zero padding scales G by d/d': a pure scale shift
    Xp = np.hstack([X, np.zeros((12, 20))])
    assert metric(X, Xp) == pytest.approx(np.log(2.0) * np.sqrt(12), rel=1e-10)
    assert metric(X, Y) > 0.1


def test_symmetric_and_triangle_inequality(rng, metric):
    for _ in range(20):
        n = int(rng.integers(3, 10))
        A, B, C = (rng.normal(size=(n, n + int(rng.integers(0, 8)))) for _ in range(3))
        ab, bc, ac = metric(A, B), metric(B, C), metric(A, C)
        assert ab == pytest.approx(metric(B, A), rel=1e-10)
        assert ac <= ab + bc + 1e-10


def test_translation_and_scale_are_seen(rng, metric):
    X, _ = _pair(rng)
    assert metric(X, X + 1.0) > 1e-3
    assert metric(X, 2 * X) > 1e-3


def test_singular_second_moment_is_a_value_error(rng, metric):
    X, Y = _pair(rng, n=30, dx=20, dy=40)  # n > d_x: X Xᵀ has rank 20 < 30
    with pytest.raises(ValueError, match="features for 30 samples"):
        metric(X, Y)
    with pytest.raises(ValueError, match="features for 30 samples"):
        metric(Y, X)
    Xd, Yd = _pair(rng, n=8, dx=20, dy=20)
    Xd[1] = Xd[0]  # duplicate sample: singular although d ≥ n
    with pytest.raises(ValueError, match="singular"):
        metric(Xd, Yd)
    with pytest.raises(ValueError):
        simbench.get_metric("riemannian_distance", ridge=-1.0)


def test_ridge(rng):
    X, Y = _pair(rng, n=30, dx=20, dy=40)
    eps = 0.1
    got = simbench.get_metric("riemannian_distance", ridge=eps)(X, Y)

    def reg(Z):
        G = Z @ Z.T / Z.shape[1]
        return G + eps * np.trace(G) / len(G) * np.eye(len(G))

    lam = np.linalg.eigvals(np.linalg.solve(reg(X), reg(Y))).real
    assert got == pytest.approx(np.sqrt(np.sum(np.log(lam) ** 2)), rel=1e-9)


def test_matches_pyriemann(rng, metric):
    distance = pytest.importorskip("pyriemann.utils.distance", reason="pyriemann not installed")
    X, Y = _pair(rng, n=15, dx=30, dy=25)
    ref = distance.distance_riemann(X @ X.T / 30, Y @ Y.T / 25)
    assert metric(X, Y) == pytest.approx(ref, rel=1e-10)

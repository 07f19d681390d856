"""Identity, Procrustes and permutation alignments, and the base class's transform/pull_back."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group

import simbench
from simbench.alignments.basic import Identity, Permutation, Procrustes, polar
from simbench.errors import NotFittedError
from simbench.numerics.moments import Moments


def _orth(d: int, seed: int) -> np.ndarray:
    return ortho_group.rvs(d, random_state=seed)


def _noisy_pair(rng, n=300, dx=12, dy=12, noise=0.5, offset=True):
    X = rng.normal(size=(n, dx)) * np.linspace(1.0, 3.0, dx)
    A = rng.normal(size=(dx, dy))
    Y = X @ A + noise * rng.normal(size=(n, dy))
    if offset:
        X = X + rng.normal(size=dx) * 5
        Y = Y + rng.normal(size=dy) * 5
    return X, Y


# -- registry / metadata ------------------------------------------------------------------
def test_registered_with_family():
    assert isinstance(simbench.get_alignment("identity"), Identity)
    assert isinstance(simbench.get_alignment("procrustes", center=False), Procrustes)
    assert isinstance(simbench.get_alignment("permutation"), Permutation)
    assert Identity.family == "identity"
    assert Procrustes.family == "orthogonal"
    assert Permutation.family == "permutation"
    assert Procrustes.streaming and Permutation.streaming and Identity.streaming


# -- identity -------------------------------------------------------------------------------
def test_identity(rng):
    X, Y = _noisy_pair(rng, dx=6, dy=6)
    a = Identity().fit(X, Y)
    np.testing.assert_array_equal(a.T, np.eye(6))
    np.testing.assert_array_equal(Identity().fit(Moments.from_arrays(X, Y)).T, np.eye(6))
    np.testing.assert_array_equal(a.transform(X), X)


def test_identity_rejects_unequal_widths(rng):
    X, Y = _noisy_pair(rng, dx=6, dy=5)
    with pytest.raises(ValueError, match="equal widths"):
        Identity().fit(X, Y)
    with pytest.raises(ValueError, match="equal widths"):
        Identity().fit(Moments.from_arrays(X, Y))


# -- procrustes -----------------------------------------------------------------------------
@pytest.mark.parametrize("center", [True, False])
def test_procrustes_recovers_planted_rotation(rng, center):
    d = 15
    X = rng.normal(size=(200, d))
    Q = _orth(d, 1)
    Y = X @ Q
    if center:  # translations are ignored when centring
        X, Y = X + 3.0, Y - 7.0
    T = Procrustes(center=center).fit(X, Y).T
    np.testing.assert_allclose(T, Q, rtol=0, atol=1e-10)


def test_procrustes_matches_scipy(rng):
    X, Y = _noisy_pair(rng, noise=2.0)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    R, _ = orthogonal_procrustes(Xc, Yc)
    np.testing.assert_allclose(Procrustes().fit(X, Y).T, R, rtol=0, atol=1e-10)
    R0, _ = orthogonal_procrustes(X, Y)
    np.testing.assert_allclose(Procrustes(center=False).fit(X, Y).T, R0, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("dx", "dy"), [(12, 7), (7, 12)])
def test_procrustes_semi_orthogonal_matches_padded_scipy(rng, dx, dy):
    X, Y = _noisy_pair(rng, dx=dx, dy=dy, noise=1.0)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    T = Procrustes().fit(X, Y).T
    assert T.shape == (dx, dy)
    if dx > dy:
        np.testing.assert_allclose(T.T @ T, np.eye(dy), atol=1e-12)
        # zero-padding Y to width dx: the optimal square rotation's first dy columns
        R, _ = orthogonal_procrustes(Xc, np.hstack([Yc, np.zeros((len(Y), dx - dy))]))
        np.testing.assert_allclose(T, R[:, :dy], rtol=0, atol=1e-10)
    else:
        np.testing.assert_allclose(T @ T.T, np.eye(dx), atol=1e-12)
        R, _ = orthogonal_procrustes(np.hstack([Xc, np.zeros((len(X), dy - dx))]), Yc)
        np.testing.assert_allclose(T, R[:dx, :], rtol=0, atol=1e-10)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("cls", [Procrustes, Permutation])
def test_streaming_equals_full_batch(rng, cls, center):
    X, Y = _noisy_pair(rng, n=1000, dx=10, dy=8)
    full = cls(center=center).fit(X, Y).T
    m = Moments.from_arrays(X, Y, batch_size=137)
    streamed = cls(center=center).fit(m).T
    np.testing.assert_allclose(streamed, full, rtol=0, atol=1e-10)


def _nuclear(M: np.ndarray) -> float:
    return float(np.linalg.svd(M, compute_uv=False).sum())


@pytest.mark.parametrize("case", ["n_lt_d", "constant_column", "rank_deficient", "unequal_widths"])
def test_procrustes_optimal_on_degenerate_input(rng, case):
    """``tr(Tᵀ M) = ||M||_*`` (the maximum) whenever T is (semi-)orthogonal and optimal."""
    n, dx, dy = 100, 10, 10
    if case == "n_lt_d":
        n = 6
    if case == "unequal_widths":
        dy = 4
    X, Y = _noisy_pair(rng, n=n, dx=dx, dy=dy)
    if case == "constant_column":
        X[:, 3] = 2.5
        Y[:, 0] = -1.0
    if case == "rank_deficient":
        X = X[:, :3] @ rng.normal(size=(3, dx))
    T = Procrustes().fit(X, Y).T
    assert np.all(np.isfinite(T))
    M = (X - X.mean(0)).T @ (Y - Y.mean(0))
    small = min(dx, dy)
    G = T.T @ T if dx >= dy else T @ T.T
    np.testing.assert_allclose(G, np.eye(small), atol=1e-10)
    np.testing.assert_allclose(np.trace(T.T @ M), _nuclear(M), rtol=1e-10)


def test_procrustes_zero_cross_product_is_identity(rng):
    X = rng.normal(size=(50, 5))
    Y = np.ones((50, 3))  # constant: centred cross product is exactly 0
    np.testing.assert_array_equal(Procrustes().fit(X, Y).T, np.eye(5, 3))
    np.testing.assert_array_equal(polar(np.zeros((3, 4))), np.eye(3, 4))


def test_procrustes_large_offset_is_stable(rng):
    """Centring must not lose the signal under a mean 1e6 times the spread."""
    d = 8
    X = rng.normal(size=(500, d))
    Q = _orth(d, 7)
    Y = X @ Q
    T = Procrustes().fit(X + 1e6, Y - 1e6).T
    np.testing.assert_allclose(T, Q, atol=1e-7)


def test_nan_input_rejected(rng):
    X, Y = _noisy_pair(rng, dx=4, dy=4)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Procrustes().fit(X, Y)


# -- permutation ----------------------------------------------------------------------------
def test_permutation_recovers_planted_permutation(rng):
    d = 20
    X = rng.normal(size=(300, d))
    p = rng.permutation(d)
    Y = X[:, p] + 7.0  # Y[:, j] = X[:, p[j]]
    T = Permutation().fit(X, Y).T
    expected = np.zeros((d, d))
    expected[p, np.arange(d)] = 1.0
    np.testing.assert_array_equal(T, expected)
    np.testing.assert_allclose(X @ T + 7.0, Y, atol=1e-12)


def test_permutation_with_noise(rng):
    d = 16
    X = rng.normal(size=(400, d))
    p = rng.permutation(d)
    Y = X[:, p] + 0.5 * rng.normal(size=(400, d))
    T = Permutation().fit(X, Y).T
    np.testing.assert_array_equal(np.argmax(T, axis=0), p)


def test_permutation_partial_wide_x(rng):
    dx, dy = 12, 5
    X = rng.normal(size=(300, dx))
    p = rng.permutation(dx)[:dy]
    Y = X[:, p] + 0.1 * rng.normal(size=(300, dy))
    T = Permutation().fit(X, Y).T
    assert T.shape == (dx, dy)
    expected = np.zeros((dx, dy))
    expected[p, np.arange(dy)] = 1.0
    np.testing.assert_array_equal(T, expected)


def test_permutation_partial_wide_y(rng):
    dx, dy = 5, 12
    X = rng.normal(size=(300, dx))
    q = rng.permutation(dy)[:dx]  # X's feature i appears as Y's feature q[i]
    Y = rng.normal(size=(300, dy))
    Y[:, q] = X + 0.1 * rng.normal(size=(300, dx))
    T = Permutation().fit(X, Y).T
    assert T.shape == (dx, dy)
    expected = np.zeros((dx, dy))
    expected[np.arange(dx), q] = 1.0
    np.testing.assert_array_equal(T, expected)
    assert T.sum() == dx and T.sum(axis=0).max() == 1 and T.sum(axis=1).max() == 1


@pytest.mark.parametrize("center", [True, False])
def test_permutation_equals_brute_force(rng, center):
    d = 5
    X, Y = _noisy_pair(rng, n=40, dx=d, dy=d, noise=3.0)
    M = (X - X.mean(0)).T @ (Y - Y.mean(0)) if center else X.T @ Y
    best, best_val = None, -np.inf
    for perm in itertools.permutations(range(d)):
        val = sum(M[perm[j], j] for j in range(d))
        if val > best_val:
            best, best_val = perm, val
    expected = np.zeros((d, d))
    expected[list(best), np.arange(d)] = 1.0
    T = Permutation(center=center).fit(X, Y).T
    np.testing.assert_array_equal(T, expected)
    np.testing.assert_allclose(np.trace(T.T @ M), best_val, rtol=1e-12)


# -- base class: transform / pull_back ------------------------------------------------------
def test_transform_and_pull_back_dense(rng):
    X, Y = _noisy_pair(rng, dx=7, dy=5)
    a = Procrustes().fit(X, Y)
    np.testing.assert_allclose(a.transform(X), X @ a.T, rtol=1e-14)
    W = rng.normal(size=(9, 5))  # neurons acting on Y's 5 features
    np.testing.assert_allclose(a.pull_back(W), W @ a.T.T, rtol=1e-14)
    # the pulled-back neuron on X computes what the original computes on X T ≈ Y
    np.testing.assert_allclose(X @ a.pull_back(W).T, (X @ a.T) @ W.T, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="features"):
        a.transform(rng.normal(size=(3, 5)))
    with pytest.raises(ValueError, match="input channels"):
        a.pull_back(rng.normal(size=(9, 7)))


def test_pull_back_conv_matches_loop(rng):
    X, Y = _noisy_pair(rng, dx=4, dy=3)
    a = Permutation().fit(X, Y)
    a2 = Procrustes().fit(X, Y)
    W = rng.normal(size=(6, 3, 3, 3))  # (out, in=d_y, k, k)
    for al in (a, a2):
        T = al.T
        out = al.pull_back(W)
        assert out.shape == (6, 4, 3, 3)
        ref = np.zeros((6, 4, 3, 3))
        for o in range(6):
            for j in range(4):
                for u in range(3):
                    for v in range(3):
                        ref[o, j, u, v] = sum(W[o, i, u, v] * T[j, i] for i in range(3))
        np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="must be"):
        a.pull_back(rng.normal(size=(2, 3, 3)))


def test_not_fitted():
    with pytest.raises(NotFittedError):
        _ = Procrustes().T


def test_fit_needs_paired_samples(rng):
    with pytest.raises(ValueError, match="same samples"):
        Procrustes().fit(rng.normal(size=(10, 3)), rng.normal(size=(11, 3)))


def test_procrustes_rank_deficient_tie_break_is_closest_to_identity(rng):
    """Dead channels make XᵀY rank-deficient; identical inputs must still give T = I."""
    X = rng.normal(size=(200, 8))
    X[:, [2, 5]] = 0.0  # two dead ReLU channels
    T = simbench.get_alignment("procrustes").fit(X, X.copy()).T
    np.testing.assert_allclose(T, np.eye(8), atol=1e-10)
    # a permuted copy: the live channels follow the permutation, T stays orthogonal
    perm = rng.permutation(8)
    T = simbench.get_alignment("procrustes").fit(X, X[:, perm]).T
    np.testing.assert_allclose(T.T @ T, np.eye(8), atol=1e-10)
    live = [i for i in range(8) if i not in (2, 5)]
    np.testing.assert_allclose((X @ T)[:, :], X[:, perm], atol=1e-10)
    assert np.abs(T[live][:, [list(perm).index(i) for i in live]] - np.eye(6)).max() < 1e-10

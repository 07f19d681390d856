"""Deterministic SRM alignment and the SRM fit-quality metric."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.linalg import polar as scipy_polar
from scipy.stats import multivariate_normal, ortho_group

import simbench
from simbench.alignments.basic import Procrustes
from simbench.alignments.srm import SRM, CrossProduct, ProbabilisticSRM, solve_srm, solve_srm_prob
from simbench.errors import NotFittedError
from simbench.metrics.srm import (
    SRMFitQuality,
    irsm_wrsm_correlation,
    split_indices,
    srm_fit_quality,
)
from simbench.numerics.moments import Moments


def _stiefel(d: int, k: int, rng) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return Q


def _shared_data(rng, n=120, dims=(8, 10, 12), k=5, noise=0.0):
    S0 = rng.normal(size=(n, k)) * np.linspace(3.0, 1.0, k)
    Rs = [_stiefel(d, k, rng) for d in dims]
    Xs = [S0 @ R.T + noise * rng.normal(size=(n, R.shape[0])) for R in Rs]
    return S0, Rs, Xs


def _objective(Xs, W, center=True):
    Xs = [X - X.mean(0) for X in Xs] if center else Xs
    S = sum(X @ Wi for X, Wi in zip(Xs, W, strict=True)) / len(Xs)
    return sum(np.sum((X - S @ Wi.T) ** 2) for X, Wi in zip(Xs, W, strict=True))


# -- the alignment ----------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["pca", "random"])
def test_recovers_planted_shared_space(rng, init):
    _, _, Xs = _shared_data(rng)
    Xs = [X + rng.normal(size=X.shape[1]) * 4 for X in Xs]  # offsets: removed by centring
    srm = SRM(k=5, init=init, tol=0.0, max_iter=500).fit_many(Xs)
    Xc = [X - X.mean(0) for X in Xs]
    total = sum(np.sum(X**2) for X in Xc)
    assert srm.objective_[-1] <= 1e-12 * total
    for i in range(3):
        for j in range(3):
            err = np.abs(Xc[i] @ srm.map(i, j) - Xc[j]).max()
            assert err <= 1e-8 * np.abs(Xc[j]).max(), (i, j, err)
    for W in srm.W_:
        np.testing.assert_allclose(W.T @ W, np.eye(5), atol=1e-12)


def test_objective_non_increasing_and_matches_direct(rng):
    _, _, Xs = _shared_data(rng, noise=1.0)
    srm = SRM(k=4, init="random", seed=3, tol=0.0, max_iter=60).fit_many(Xs)
    obj = np.asarray(srm.objective_)
    total = sum(np.sum((X - X.mean(0)) ** 2) for X in Xs)
    assert len(obj) == srm.n_iter_ + 1 and srm.n_iter_ > 5
    assert np.all(np.diff(obj) <= 1e-12 * total)
    assert obj[-1] < obj[0]
    np.testing.assert_allclose(obj[-1], _objective(Xs, srm.W_), rtol=1e-10)
    # S_ is the optimal shared response for the final maps
    Xc = [X - X.mean(0) for X in Xs]
    S = sum(X @ W for X, W in zip(Xc, srm.W_, strict=True)) / 3
    np.testing.assert_allclose(srm.S_, S, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        sum(srm.transform_shared(X, i) for i, X in enumerate(Xs)) / 3, srm.S_, atol=1e-12
    )


def test_matches_direct_data_space_iteration(rng):
    """The moment-space iteration equals the textbook alternation on the data."""
    _, _, Xs = _shared_data(rng, noise=0.7)
    k, seed, iters = 4, 11, 6
    srm = SRM(k=k, init="random", seed=seed, tol=0.0, max_iter=iters).fit_many(Xs)
    assert srm.n_iter_ == iters
    Xc = [X - X.mean(0) for X in Xs]
    g = np.random.default_rng(seed)
    W = [scipy_polar(g.standard_normal((X.shape[1], k)))[0] for X in Xc]
    for _ in range(iters):
        S = sum(X @ Wi for X, Wi in zip(Xc, W, strict=True)) / len(Xc)
        W = [scipy_polar(X.T @ S)[0] for X in Xc]
    for Wi, Wref in zip(srm.W_, W, strict=True):
        np.testing.assert_allclose(Wi, Wref, rtol=0, atol=1e-10)


def test_two_networks_full_rank_is_procrustes(rng):
    d = 8
    X = rng.normal(size=(300, d)) * np.linspace(1, 2, d)
    Y = X @ ortho_group.rvs(d, random_state=2) + 0.8 * rng.normal(size=(300, d))
    srm = SRM(tol=0.0, max_iter=2000).fit(X, Y)
    T = srm.T
    np.testing.assert_allclose(T.T @ T, np.eye(d), atol=1e-12)
    R, _ = orthogonal_procrustes(X - X.mean(0), Y - Y.mean(0))
    np.testing.assert_allclose(T, R, atol=1e-7)
    np.testing.assert_allclose(T, Procrustes().fit(X, Y).T, atol=1e-7)


def test_streaming_equals_arrays(rng):
    X = rng.normal(size=(400, 7)) + 2.0
    Y = X[:, :5] @ rng.normal(size=(5, 6)) + rng.normal(size=(400, 6))
    for center in (True, False):
        # a fixed number of updates: running to the rounding floor stops where rounding
        # says, and the maps are then only defined to ~sqrt(eps) (the objective is flat)
        a = SRM(k=4, center=center, tol=0.0, max_iter=10).fit(X, Y)
        b = SRM(k=4, center=center, tol=0.0, max_iter=10)
        b.fit(Moments.from_arrays(X, Y, batch_size=64))
        assert a.n_iter_ == b.n_iter_ == 10
        np.testing.assert_allclose(b.T, a.T, atol=1e-10)
        np.testing.assert_allclose(b.objective_, a.objective_, rtol=1e-10)
        assert b.S_ is None and a.S_.shape == (400, 4)
        np.testing.assert_allclose(b.means_[1], Y.mean(0), rtol=1e-12)


def test_uncentred_recovery_and_offsets(rng):
    _, _, Xs = _shared_data(rng, dims=(6, 7), k=6)
    srm = SRM(center=False, tol=0.0, max_iter=200).fit_many(Xs)
    np.testing.assert_allclose(Xs[0] @ srm.map(0, 1), Xs[1], atol=1e-8)
    shifted = [Xs[0] + 5.0, Xs[1]]  # an offset is not an orthogonal image without centring
    srm2 = SRM(center=False, tol=0.0, max_iter=200).fit_many(shifted)
    assert srm2.objective_[-1] > 1e-3 * sum(np.sum(X**2) for X in shifted)
    np.testing.assert_allclose(srm2.transform_shared(shifted[0], 0), shifted[0] @ srm2.W_[0])


def test_partial_isometry_when_k_small(rng):
    _, _, Xs = _shared_data(rng, dims=(9, 7), k=3, noise=0.3)
    srm = simbench.get_alignment("srm", k=3).fit(Xs[0], Xs[1])
    T = srm.T
    assert T.shape == (9, 7) and np.linalg.matrix_rank(T) == 3
    np.testing.assert_allclose(T @ T.T @ T, T, atol=1e-12)


def test_equivariant_under_orthogonal_map_of_one_network(rng):
    _, _, Xs = _shared_data(rng, dims=(6, 6, 8), k=4, noise=1.0)
    Q = ortho_group.rvs(6, random_state=5)
    a = SRM(k=4, max_iter=7).fit_many(Xs)
    b = SRM(k=4, max_iter=7).fit_many([Xs[0] @ Q, Xs[1], Xs[2]])
    np.testing.assert_allclose(b.map(0, 2), Q.T @ a.map(0, 2), atol=1e-10)
    np.testing.assert_allclose(b.map(1, 2), a.map(1, 2), atol=1e-10)
    np.testing.assert_allclose(b.objective_, a.objective_, rtol=1e-10)


def test_validation(rng):
    X = rng.normal(size=(30, 5))
    with pytest.raises(ValueError, match="at least 2"):
        SRM().fit_many([X])
    with pytest.raises(ValueError, match="list"):
        SRM().fit_many(np.stack([X, X]))
    with pytest.raises(ValueError, match="same samples"):
        SRM().fit_many([X, rng.normal(size=(29, 5))])
    with pytest.raises(ValueError, match="k=6 exceeds"):
        SRM(k=6).fit_many([X, X, rng.normal(size=(30, 7))])
    with pytest.raises(ValueError, match="k=6 exceeds"):
        SRM(k=6).fit(Moments.from_arrays(X, X))
    with pytest.raises(ValueError):
        SRM(k=0)
    with pytest.raises(ValueError):
        SRM(init="svd")
    with pytest.raises(NotFittedError):
        SRM().map(0, 1)
    srm = SRM().fit_many([X, X])
    with pytest.raises(ValueError, match="out of range"):
        srm.map(0, 2)
    with pytest.raises(ValueError, match="features"):
        srm.transform_shared(rng.normal(size=(4, 3)), 1)
    with pytest.raises(ValueError, match="C has shape"):
        solve_srm(np.eye(4), [2, 3])


def test_degenerate_inputs_stay_orthonormal(rng):
    X = rng.normal(size=(6, 10))  # n < d
    Y = rng.normal(size=(6, 10))
    Y[:, 2] = 1.0  # a constant column
    srm = SRM(max_iter=20).fit(X, Y)
    for W in srm.W_:
        np.testing.assert_allclose(W.T @ W, np.eye(10), atol=1e-10)
    assert srm.objective_[-1] <= srm.objective_[0]
    # n < d with a planted rotation: recovered on the data
    Q = ortho_group.rvs(10, random_state=3)
    srm = SRM(tol=0.0, max_iter=100).fit(X, X @ Q)
    Xc = X - X.mean(0)
    np.testing.assert_allclose(Xc @ srm.T, Xc @ Q, atol=1e-8)


@pytest.mark.parametrize("k", [3, 7, 14])
def test_factored_cross_product_equals_dense(rng, k):
    """n < D keeps C = ZᵀZ factored; both SRM solvers give the dense result."""
    Xs = [rng.normal(size=(20, d)) @ rng.normal(size=(d, d)) for d in (14, 16)]
    C, _ = CrossProduct.of(Xs, center=True)
    assert C.Z is not None and C.C is None  # 20 samples < 30 features
    dense = CrossProduct(C.Z.T @ C.Z)
    W = rng.normal(size=(30, 4))
    np.testing.assert_allclose(C @ W, dense @ W, rtol=1e-12, atol=1e-10)
    assert C.block_trace(slice(3, 9)) == pytest.approx(dense.block_trace(slice(3, 9)), rel=1e-13)
    a = solve_srm(C, [14, 16], k, max_iter=15, tol=0.0)
    b = solve_srm(dense, [14, 16], k, max_iter=15, tol=0.0)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-9)
    # the maps agree up to a common rotation of the shared space: compare W_0 W_1ᵀ
    np.testing.assert_allclose(a.W[0] @ a.W[1].T, b.W[0] @ b.W[1].T, atol=1e-7)
    p = solve_srm_prob(C, [14, 16], 20, k, max_iter=10)
    q = solve_srm_prob(dense, [14, 16], 20, k, max_iter=10)
    np.testing.assert_allclose(p.loglik, q.loglik, rtol=1e-9)
    # with at least as many samples as features the product is formed at once
    Z = rng.normal(size=(40, 30))
    tall = CrossProduct(Z=Z)
    assert tall.Z is None
    np.testing.assert_allclose(tall.C, Z.T @ Z, rtol=1e-13)


# -- the metric -------------------------------------------------------------------------------
def test_split_rule():
    train, test = split_indices(10, 0.5, seed=0)
    perm = np.random.default_rng(0).permutation(10)
    np.testing.assert_array_equal(test, np.sort(perm[:5]))
    np.testing.assert_array_equal(train, np.sort(perm[5:]))
    assert len(split_indices(5, 0.01)[1]) == 3 and len(split_indices(5, 0.99)[0]) == 2
    with pytest.raises(ValueError, match="test_fraction"):
        split_indices(10, 1.0)
    with pytest.raises(ValueError, match="at least 5"):
        split_indices(4)


def test_metric_rotated_copies_score_one(rng):
    X = rng.normal(size=(200, 12)) * np.linspace(1, 4, 12)
    Q = ortho_group.rvs(12, random_state=9)
    s = simbench.get_metric("srm").evaluate(X, X[:, ::-1] @ Q + 3.0)
    assert abs(s.value - 1.0) < 1e-10
    assert abs(s.details["irsm_wrsm_corr"] - 1.0) < 1e-10
    assert s.details["irsm_wrsm_corr_native"] < 0.9  # misaligned before SRM
    assert s.details["n_train"] == 100 and s.details["n_test"] == 100


def test_metric_independent_noise_is_chance(rng):
    n, d = 2000, 10
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    # full rank: S is the mean of two unrelated rotations, half the variance
    s = SRMFitQuality().evaluate(X, Y)
    assert abs(s.value - 0.5) < 0.03
    assert abs(s.details["irsm_wrsm_corr"]) < 0.05
    # k = 2 of 10 isotropic dimensions: about k / (N d) = 0.1
    assert abs(SRMFitQuality(k=2)(X, Y) - 0.1) < 0.03


def test_metric_value_matches_direct_computation(rng):
    _, _, Xs = _shared_data(rng, n=90, dims=(7, 9), k=4, noise=0.8)
    X, Y = Xs
    s = SRMFitQuality(k=3, test_fraction=0.4, seed=5, max_iter=8).evaluate(X, Y)
    train, test = split_indices(90, 0.4, 5)
    srm = SRM(k=3, max_iter=8, tol=1e-10).fit(X[train], Y[train])
    Xt = [Z[test] - Z[test].mean(0) for Z in (X, Y)]
    S = sum(Z @ W for Z, W in zip(Xt, srm.W_, strict=True)) / 2
    resid = sum(np.sum((Z - S @ W.T) ** 2) for Z, W in zip(Xt, srm.W_, strict=True))
    expected = 1 - resid / sum(np.sum(Z**2) for Z in Xt)
    np.testing.assert_allclose(s.value, expected, rtol=1e-12)
    train_total = sum(np.sum((Z[train] - Z[train].mean(0)) ** 2) for Z in (X, Y))
    np.testing.assert_allclose(
        s.details["variance_explained_train"], 1 - srm.objective_[-1] / train_total, rtol=1e-10
    )
    assert s.details["n_iter"] == srm.n_iter_ and s.details["k"] == 3
    assert s.details["irsm_wrsm_corr_native"] is None  # widths differ


def _brute_corr(Xt, shared, kind):
    def rows(Z):
        if kind == "correlation":
            Z = Z - Z.mean(1, keepdims=True)
        nrm = np.linalg.norm(Z, axis=1, keepdims=True)
        return np.divide(Z, nrm, out=np.zeros_like(Z), where=nrm > 0)

    N, n = len(Xt), Xt[0].shape[0]
    U = [rows(Z) for Z in Xt]
    V = [rows(Z) for Z in shared]
    A = sum(u @ u.T for u in U) / N
    B = sum(V[i] @ V[j].T for i in range(N) for j in range(N) if i != j) / (N * (N - 1))
    iu = np.triu_indices(n, 1)
    return np.corrcoef(A[iu], B[iu])[0, 1]


@pytest.mark.parametrize("kind", ["cosine", "correlation"])
def test_irsm_wrsm_correlation_matches_brute_force(rng, kind):
    _, _, Xs = _shared_data(rng, n=80, dims=(6, 8, 7), k=4, noise=0.6)
    out = srm_fit_quality(Xs, k=4, seed=2, rsm=kind)
    train, test = split_indices(80, 0.5, 2)
    srm = SRM(k=4, max_iter=10).fit_many([X[train] for X in Xs])
    Xt = [X[test] - X[test].mean(0) for X in Xs]
    shared = [Z @ W for Z, W in zip(Xt, srm.W_, strict=True)]
    np.testing.assert_allclose(out["irsm_wrsm_corr"], _brute_corr(Xt, shared, kind), rtol=1e-10)


def test_irsm_wrsm_correlation_zero_rows_and_constant():
    rng = np.random.default_rng(0)
    U = [rng.normal(size=(30, 5)) for _ in range(2)]
    U = [u / np.linalg.norm(u, axis=1, keepdims=True) for u in U]
    U[0][4] = 0.0  # a pattern with zero norm: its similarities are 0
    V = [u[:, :3] / np.linalg.norm(u[:, :3], axis=1, keepdims=True).clip(1e-300) for u in U]
    A = (U[0] @ U[0].T + U[1] @ U[1].T) / 2
    B = (V[0] @ V[1].T + V[1] @ V[0].T) / 2
    iu = np.triu_indices(30, 1)
    np.testing.assert_allclose(
        irsm_wrsm_correlation(U, V), np.corrcoef(A[iu], B[iu])[0, 1], rtol=1e-10
    )
    ones = [np.ones((6, 2)) / np.sqrt(2)] * 2  # every pattern identical: constant RSMs
    assert irsm_wrsm_correlation(ones, ones) is None
    wide = [np.ones((3, 4)) / 2.0] * 2  # n = 3 < 8 features: the n×n form, same answer
    assert irsm_wrsm_correlation(wide, wide) is None


@pytest.mark.parametrize("d", [5, 40])  # n_test = 30 >= 2d (products) and < 2d (n×n RSMs)
def test_metric_details_match_brute_force_in_both_regimes(rng, d):
    X = rng.normal(size=(60, d))
    Y = X @ ortho_group.rvs(d, random_state=1) + 0.5 * rng.normal(size=(60, d))
    out = srm_fit_quality([X, Y], k=4, max_iter=5)
    train, test = split_indices(60)
    Xt = [Z[test] - Z[test].mean(0) for Z in (X, Y)]
    np.testing.assert_allclose(
        out["irsm_wrsm_corr_native"], _brute_corr(Xt, Xt, "cosine"), rtol=1e-10
    )
    srm = SRM(k=4, max_iter=5).fit_many([X[train], Y[train]])
    shared = [Z @ W for Z, W in zip(Xt, srm.W_, strict=True)]
    np.testing.assert_allclose(out["irsm_wrsm_corr"], _brute_corr(Xt, shared, "cosine"), rtol=1e-9)
    U = [rng.normal(size=(7, d)) for _ in range(3)]  # three networks, n = 7 < 3d
    U = [u / np.linalg.norm(u, axis=1, keepdims=True) for u in U]
    V = [u[:, :2] / np.linalg.norm(u[:, :2], axis=1, keepdims=True) for u in U]
    A = sum(u @ u.T for u in U) / 3
    B = sum(V[i] @ V[j].T for i in range(3) for j in range(3) if i != j) / 6
    iu = np.triu_indices(7, 1)
    np.testing.assert_allclose(
        irsm_wrsm_correlation(U, V), np.corrcoef(A[iu], B[iu])[0, 1], rtol=1e-10
    )


def test_metric_symmetric_and_invariances(rng):
    X = rng.normal(size=(150, 6)) * np.linspace(1, 3, 6)
    Y = X[:, :4] @ rng.normal(size=(4, 6)) + rng.normal(size=(150, 6))
    m = SRMFitQuality(k=3)
    v = m(X, Y)
    np.testing.assert_allclose(m(Y, X), v, rtol=1e-12)
    Q = ortho_group.rvs(6, random_state=4)
    np.testing.assert_allclose(m(X @ Q + 2.0, Y), v, rtol=1e-10)
    np.testing.assert_allclose(m(X, Y[:, ::-1] - 1.0), v, rtol=1e-10)
    # not claimed: scaling one network reweights it in the fit and in the variance shares
    assert abs(m(3.0 * X, Y) - v) > 1e-3
    assert SRMFitQuality.invariances == {
        simbench.Invariance.ORTHOGONAL,
        simbench.Invariance.PERMUTATION,
        simbench.Invariance.TRANSLATION,
    }


def test_metric_fewer_samples_than_features(rng):
    X = rng.normal(size=(30, 20))
    Y = X[:, :12] @ rng.normal(size=(12, 20)) + rng.normal(size=(30, 20))
    s = SRMFitQuality().evaluate(X, Y)
    assert s.details["k"] == 14  # n_train − 1: every W_i stays in its training row space
    Q = ortho_group.rvs(20, random_state=8)
    np.testing.assert_allclose(SRMFitQuality()(X @ Q + 1.0, Y), s.value, rtol=1e-10)
    with pytest.raises(ValueError, match="k=21 exceeds"):
        SRMFitQuality(k=21)(X, Y)


def test_fit_quality_many_networks(rng):
    _, _, Xs = _shared_data(rng, n=100, dims=(6, 6, 6, 6), k=6)
    out = srm_fit_quality(Xs)
    assert abs(out["variance_explained"] - 1.0) < 1e-10
    assert abs(out["irsm_wrsm_corr"] - 1.0) < 1e-10
    # the mean inter-network RSM of a 4-network group is the wRSM only after alignment
    assert out["irsm_wrsm_corr_native"] < 0.9


def test_metric_errors(rng):
    X = rng.normal(size=(40, 4))
    with pytest.raises(ValueError, match="k=5 exceeds"):
        SRMFitQuality(k=5)(X, X)
    with pytest.raises(ValueError, match="at least 5"):
        SRMFitQuality()(X[:4], X[:4])
    with pytest.raises(ValueError):
        SRMFitQuality(test_fraction=1.5)
    with pytest.raises(ValueError, match="constant"):
        SRMFitQuality()(np.ones((40, 3)), np.ones((40, 2)))
    with pytest.raises(ValueError, match="list"):
        srm_fit_quality(X)
    with pytest.raises(ValueError, match="rsm"):
        srm_fit_quality([X, X], rsm="spearman")
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        SRMFitQuality()(Xn, X)


# -- probabilistic SRM (srm_prob) ---------------------------------------------------------------
def _prob_data(rng, n, dims=(6, 8), rho2=(0.1, 0.3), sig=(4.0, 2.0, 1.0)):
    k = len(sig)
    S = rng.normal(size=(n, k)) * np.sqrt(sig)
    Rs = [_stiefel(d, k, rng) for d in dims]
    Xs = [
        S @ R.T + np.sqrt(r) * rng.normal(size=(n, R.shape[0])) + 2.0
        for R, r in zip(Rs, rho2, strict=True)
    ]
    return Rs, Xs


def test_prob_srm_registered():
    a = simbench.get_alignment("srm_prob", k=2)
    assert isinstance(a, ProbabilisticSRM) and a.family == "orthogonal" and a.streaming


def test_prob_srm_recovers_planted_model(rng):
    Rs, Xs = _prob_data(rng, 20000)
    m = ProbabilisticSRM(k=3).fit_many(Xs)
    assert m.converged_
    np.testing.assert_allclose(m.rho2_, [0.1, 0.3], rtol=0.05)
    np.testing.assert_allclose(np.linalg.eigvalsh(m.sigma_s_), [1.0, 2.0, 4.0], rtol=0.05)
    for W, R in zip(m.W_, Rs, strict=True):
        assert np.abs(W @ W.T - R @ R.T).max() < 0.02  # the planted subspaces


def test_prob_srm_loglik_is_exact_and_non_decreasing(rng):
    _, Xs = _prob_data(rng, 80, dims=(3, 4), rho2=(0.5, 1.0), sig=(3.0, 1.0))
    m = ProbabilisticSRM(k=2, max_iter=15, tol=0.0).fit_many(Xs)
    ll = np.asarray(m.loglik_)
    assert len(ll) == m.n_iter_ + 1 and np.all(np.diff(ll) >= -1e-9 * abs(ll[-1]))
    W = np.vstack(m.W_)
    psi = np.concatenate([np.full(d, r) for d, r in zip((3, 4), m.rho2_, strict=True)])
    Z = np.hstack([X - X.mean(0) for X in Xs])
    ref = multivariate_normal(np.zeros(7), W @ m.sigma_s_ @ W.T + np.diag(psi)).logpdf(Z).sum()
    np.testing.assert_allclose(ll[-1], ref, rtol=1e-10)


def test_prob_srm_matches_direct_em(rng):
    """Moment-space EM equals the textbook E/M steps on the data (documented initialisation)."""
    _, Xs = _prob_data(rng, 150, dims=(5, 6), rho2=(0.4, 0.8), sig=(2.0, 1.0))
    k, seed, iters = 2, 4, 7
    m = ProbabilisticSRM(k=k, init="random", seed=seed, tol=0.0, max_iter=iters).fit_many(Xs)
    Xc = [X - X.mean(0) for X in Xs]
    n, dims = 150, [5, 6]
    g = np.random.default_rng(seed)
    W = [scipy_polar(g.standard_normal((d, k)))[0] for d in dims]
    total = sum(np.sum(X**2) for X in Xc)
    sig = np.eye(k) * total / (n * 11)
    rho2 = [np.sum(X**2) / (n * d) for X, d in zip(Xc, dims, strict=True)]
    for _ in range(iters):
        post = np.linalg.inv(np.linalg.inv(sig) + sum(1 / r for r in rho2) * np.eye(k))
        S = sum(X @ Wi / r for X, Wi, r in zip(Xc, W, rho2, strict=True)) @ post
        sig = post + S.T @ S / n
        W = [scipy_polar(X.T @ S)[0] for X in Xc]
        rho2 = [
            (np.sum(X**2) - 2 * np.trace(Wi.T @ X.T @ S) + n * np.trace(sig)) / (n * d)
            for X, Wi, d in zip(Xc, W, dims, strict=True)
        ]
    for Wi, Wref in zip(m.W_, W, strict=True):
        np.testing.assert_allclose(Wi, Wref, atol=1e-10)
    np.testing.assert_allclose(m.rho2_, rho2, rtol=1e-10)
    np.testing.assert_allclose(m.sigma_s_, sig, rtol=1e-10)
    post = np.linalg.inv(np.linalg.inv(sig) + sum(1 / r for r in rho2) * np.eye(k))
    S = sum(X @ Wi / r for X, Wi, r in zip(Xc, W, rho2, strict=True)) @ post
    np.testing.assert_allclose(m.S_, S, rtol=1e-9, atol=1e-12)


def test_prob_srm_noise_free_and_streaming(rng):
    _, _, Xs = _shared_data(rng, n=200, dims=(5, 7), k=4)
    m = ProbabilisticSRM(k=4, max_iter=30).fit(Xs[0], Xs[1])
    Xc = [X - X.mean(0) for X in Xs]
    np.testing.assert_allclose(Xc[0] @ m.T, Xc[1], atol=1e-8)
    b = ProbabilisticSRM(k=4, max_iter=30).fit(Moments.from_arrays(Xs[0], Xs[1], batch_size=33))
    np.testing.assert_allclose(b.T, m.T, atol=1e-10)
    np.testing.assert_allclose(b.rho2_, m.rho2_, rtol=1e-6)


def test_prob_srm_rejects_constant_data():
    with pytest.raises(ValueError, match="constant"):
        ProbabilisticSRM().fit(np.ones((20, 3)), np.ones((20, 3)))


@pytest.mark.parametrize("init", ["pca", "random"])
def test_sample_space_iterations_equal_feature_space(init):
    # n < D: iterated on the n×n Grams (Mᵀ K_i M)^{-1/2}; same iterates as on C = ZᵀZ
    from simbench.alignments.srm import CrossProduct, solve_srm

    rng = np.random.default_rng(5)
    S = rng.normal(size=(40, 6))
    Xs = [S @ rng.normal(size=(6, d)) + 0.3 * rng.normal(size=(40, d)) for d in (90, 70, 80)]
    Z = np.hstack([X - X.mean(0) for X in Xs])
    dims = [90, 70, 80]
    fast = solve_srm(CrossProduct(Z=Z), dims, 6, max_iter=30, tol=1e-9, init=init, seed=1)
    slow = solve_srm(CrossProduct(Z.T @ Z), dims, 6, max_iter=30, tol=1e-9, init=init, seed=1)
    assert fast.n_iter == slow.n_iter > 1
    np.testing.assert_allclose(fast.objective, slow.objective, rtol=1e-10)
    # the eigenvectors' signs of the PCA start differ between the two routes: compare the
    # maps T_ij = W_i W_jᵀ, which a common rotation of the shared space leaves unchanged
    for i, j in ((0, 1), (1, 2), (0, 2)):
        np.testing.assert_allclose(fast.W[i] @ fast.W[j].T, slow.W[i] @ slow.W[j].T, atol=1e-9)

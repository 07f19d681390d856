"""Neighbourhood metrics: hand-computed cases, brute-force references, blocking, validation.

The brute-force references below build the full ``n×n`` distance matrix and sort it,
independently of ``simbench.numerics.knn`` (blocked partial selection).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import simbench
from simbench.numerics.knn import knn_indices, prepare_rows
from simbench.plugin import Invariance
from tests._transforms import haar_orthogonal, transform

NAMES = ["mutual_knn", "jaccard_knn", "rank_similarity", "second_order_cosine", "cknna"]


# -- independent brute-force references ----------------------------------------------------
def brute_distances(X: np.ndarray, distance: str) -> np.ndarray:
    if distance == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        D = 1.0 - Xn @ Xn.T
    elif distance == "euclidean":
        D = cdist(X, X)
    else:  # inner: larger inner product = nearer
        D = -(X @ X.T)
    return D


def brute_knn(X: np.ndarray, k: int, distance: str) -> np.ndarray:
    D = brute_distances(X, distance)
    np.fill_diagonal(D, np.inf)
    return np.argsort(D, axis=1, kind="stable")[:, :k]


def brute_mutual(NX, NY) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(NX, NY, strict=True)]))


def brute_jaccard(NX, NY) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(NX, NY, strict=True)])
    )


def brute_rank(NX, NY) -> float:
    scores = []
    for a, b in zip(NX, NY, strict=True):
        common = set(a) & set(b)
        if not common:
            scores.append(0.0)
            continue
        s = 0.0
        for j in common:
            ra, rb = list(a).index(j) + 1, list(b).index(j) + 1
            s += 2.0 / ((1 + abs(ra - rb)) * (ra + rb))
        scores.append(s / sum(1.0 / t for t in range(1, len(common) + 1)))
    return float(np.mean(scores))


def brute_second_order(X, Y, k, distance) -> float:
    NX, NY = brute_knn(X, k, distance), brute_knn(Y, k, distance)
    DX, DY = brute_distances(X, distance), brute_distances(Y, distance)
    vals = []
    for i in range(X.shape[0]):
        u = sorted(set(NX[i]) | set(NY[i]))
        a, b = DX[i, u], DY[i, u]
        vals.append(a @ b / np.sqrt((a @ a) * (b @ b)))
    return float(np.mean(vals))


def brute_cknna(X, Y, k, unbiased=True, eps=0.0, kernel="cosine") -> float:
    if kernel == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    K, L = X @ X.T, Y @ Y.T
    n = K.shape[0]

    def mask(G):
        Gh = G.copy()
        if unbiased:
            np.fill_diagonal(Gh, -np.inf)
        M = np.zeros_like(G)
        M[np.arange(n)[:, None], np.argsort(-Gh, axis=1, kind="stable")[:, :k]] = 1.0
        return M

    def hsic(A, B):
        if unbiased:  # Song et al. 2012, eq. 5
            A, B = A.copy(), B.copy()
            np.fill_diagonal(A, 0.0)
            np.fill_diagonal(B, 0.0)
            one = np.ones(n)
            return (
                np.trace(A @ B)
                + (one @ A @ one) * (one @ B @ one) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * (one @ A @ B @ one)
            ) / (n * (n - 3))
        H = np.eye(n) - 1.0 / n
        return np.trace(A @ H @ B @ H)

    MK, ML = mask(K), mask(L)
    M = MK * ML
    return hsic(M * K, M * L) / (np.sqrt(hsic(MK * K, MK * K) * hsic(ML * L, ML * L)) + eps)


def related(seed: int, n: int = 80, dx: int = 7, dy: int = 5):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    X = Z @ rng.normal(size=(3, dx)) + 0.6 * rng.normal(size=(n, dx))
    Y = np.tanh(Z @ rng.normal(size=(3, dy))) + 0.6 * rng.normal(size=(n, dy))
    return X, Y


# -- hand-computed 1-D example (euclidean, k = 2) ------------------------------------------
# X: points 0, 1, 3, 6, 10, 16 (column mean 6: centring is exact, so distance ties are
# exact). Sample 2 (at 3) is at distance 3 from both sample 0 and sample 3: the tie goes to
# the lower index, sample 0. kNN lists (nearest first):
#   X:                     [1,2] [0,2] [1,0] [2,4] [3,5] [4,3]
#   Y (0, 2, 3, 7, 8, 22): [1,2] [2,0] [1,0] [4,2] [3,2] [4,3]
HX = np.array([0.0, 1, 3, 6, 10, 16])[:, None]
HY = np.array([0.0, 2, 3, 7, 8, 22])[:, None]
HAND = {
    # overlaps 2,2,2,2,1,2 of k = 2
    "mutual_knn": 11 / 12,
    # |∩|/|∪| = 1,1,1,1,1/3,1
    "jaccard_knn": (5 + 1 / 3) / 6,
    # rows 1 and 3 swap ranks 1,2: (2/(2·3) + 2/(2·3)) / (1 + 1/2) = 4/9; the others 1
    "rank_similarity": (4 + 8 / 9) / 6,
    # cosines of distance vectors over the unions {1,2},{0,2},{0,1},{2,4},{2,3,5},{3,4}
    "second_order_cosine": np.mean(
        [
            11 / np.sqrt(130),
            4 / 5,
            11 / np.sqrt(130),
            16 / (5 * np.sqrt(17)),
            123 / np.sqrt(101 * 222),
            234 / np.sqrt(136 * 421),
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_computed_1d(name):
    got = simbench.get_metric(name, k=2, distance="euclidean")(HX, HY)
    assert got == pytest.approx(HAND[name], abs=1e-14)


def test_ties_go_to_the_lower_index():
    idx = knn_indices(prepare_rows(HX, "euclidean"), 2, distance="euclidean")
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2], [1, 0], [2, 4], [3, 5], [4, 3]])
    # all-equal distances: the k lowest other indices, in index order
    simplex = 4.0 * np.eye(4)  # every pair at the same distance; centred rows are integers
    for distance in ("cosine", "euclidean", "inner"):
        got = knn_indices(prepare_rows(simplex, distance), 2, distance=distance)
        want = [[j for j in range(4) if j != i][:2] for i in range(4)]
        np.testing.assert_array_equal(got, want)


# -- brute-force agreement -----------------------------------------------------------------
@pytest.mark.parametrize("distance", ["cosine", "euclidean", "inner"])
@pytest.mark.parametrize("k", [1, 4, 15])
def test_set_metrics_match_brute_force(distance, k):
    for seed in range(3):
        X, Y = related(seed)
        NX, NY = brute_knn(X, k, distance), brute_knn(Y, k, distance)
        np.testing.assert_array_equal(
            knn_indices(prepare_rows(X, distance), k, distance=distance, block_size=9), NX
        )
        kw = dict(k=k, distance=distance)
        assert simbench.get_metric("mutual_knn", **kw)(X, Y) == pytest.approx(
            brute_mutual(NX, NY), abs=1e-15
        )
        assert simbench.get_metric("jaccard_knn", **kw)(X, Y) == pytest.approx(
            brute_jaccard(NX, NY), abs=1e-15
        )
        assert simbench.get_metric("rank_similarity", **kw)(X, Y) == pytest.approx(
            brute_rank(NX, NY), abs=1e-14
        )
        if distance != "inner":
            assert simbench.get_metric("second_order_cosine", **kw)(X, Y) == pytest.approx(
                brute_second_order(X, Y, k, distance), abs=1e-13
            )


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"unbiased": False},
        {"kernel": "linear"},
        {"eps": 1e-6},
        {"k": 2},
        {"k": 30, "unbiased": False, "kernel": "linear"},
    ],
)
def test_cknna_matches_dense_definition(params):
    full = {"k": 10, **params}
    for seed in range(3):
        X, Y = related(seed)
        got = simbench.get_metric("cknna", **full)(X, Y)
        assert got == pytest.approx(brute_cknna(X, Y, **full), abs=1e-12)


def test_cknna_symmetry_follows_the_hsic_estimator():
    X, Y = related(4)
    unb = simbench.get_metric("cknna")
    assert unb.symmetric is False and abs(unb(X, Y) - unb(Y, X)) > 1e-5
    bia = simbench.get_metric("cknna", unbiased=False)
    assert bia.symmetric is True and bia(X, Y) == pytest.approx(bia(Y, X), abs=1e-13)


def test_cknna_eps_reproduces_platonic_rep_scale():
    X, _ = related(5)
    assert simbench.get_metric("cknna")(X, X) == pytest.approx(1.0, abs=1e-14)
    # platonic-rep's eps = 1e-6 lowers the self-similarity to s / (s + eps)
    with_eps = simbench.get_metric("cknna", eps=1e-6)(X, X)
    assert with_eps == pytest.approx(brute_cknna(X, X, 10, eps=1e-6), abs=1e-13)
    assert with_eps < 1.0 - 1e-7


# -- closed forms --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_identical_neighbourhoods_score_one(name):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(90, 6))
    # an isometry into more dimensions, rescaled: every neighbourhood and its order is kept
    Q = haar_orthogonal(rng, 9)[:, :6].T  # (6, 9), orthonormal rows
    Y = 2.5 * X @ Q
    assert simbench.get_metric(name, k=7)(X, Y) == pytest.approx(1.0, abs=1e-12)


def test_independent_data_mutual_knn_is_k_over_n_minus_1():
    n, k, seeds = 200, 10, 24
    vals = []
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        vals.append(
            simbench.get_metric("mutual_knn", k=k)(rng.normal(size=(n, 5)), rng.normal(size=(n, 5)))
        )
    # E = k/(n-1) = 0.0503 (each other sample is in N_Y(i) with probability k/(n-1));
    # the s.e. of the mean over 24 seeds is about 0.001
    assert np.mean(vals) == pytest.approx(k / (n - 1), abs=0.004)


# -- blocking ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_blocked_equals_unblocked_exactly(name):
    X, Y = related(3, n=70)
    ref = simbench.get_metric(name, k=6, block_size=70)(X, Y)
    for block in (1, 2, 7, 33, 1000):
        assert simbench.get_metric(name, k=6, block_size=block)(X, Y) == ref


def test_knn_memory_is_one_block_not_n_squared():
    n, block = 3000, 100
    Z = prepare_rows(np.random.default_rng(0).normal(size=(n, 16)), "cosine")
    tracemalloc.start()
    try:
        knn_indices(Z, 10, distance="cosine", block_size=block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a block is 100 × 3000 float64 = 2.4 MB; the full matrix would be 72 MB
    assert peak < 12e6, f"peak {peak / 1e6:.1f} MB"


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_k_is_validated(name):
    X, Y = related(0, n=12)
    with pytest.raises(ValueError, match="k"):
        simbench.get_metric(name, k=0)
    with pytest.raises(ValueError, match=r"1 <= k < n = 12"):
        simbench.get_metric(name, k=12)(X, Y)
    with pytest.raises(ValueError, match="block_size"):
        simbench.get_metric(name, block_size=0)


def test_cknna_needs_k_at_least_2():
    with pytest.raises(ValueError, match="k >= 2"):
        simbench.get_metric("cknna", k=1)


def test_zero_rows_are_a_value_error_for_cosine():
    X, Y = related(0, n=20)
    X[4] = 0.0
    with pytest.raises(ValueError, match="all zero"):
        simbench.get_metric("mutual_knn", k=3)(X, Y)
    # euclidean neighbourhoods are defined
    assert np.isfinite(simbench.get_metric("mutual_knn", k=3, distance="euclidean")(X, Y))


def test_second_order_zero_distance_vector_is_a_value_error():
    X, Y = related(0, n=20)
    X[:4] = X[0] * np.array([1.0, 2.0, 3.0, 4.0])[:, None]  # collinear: cosine distance 0
    Y[:4] = Y[0] * np.array([1.0, 2.0, 3.0, 4.0])[:, None]
    with pytest.raises(ValueError, match="distance 0"):
        simbench.get_metric("second_order_cosine", k=3)(X, Y)


# -- parameter-dependent invariance claims ---------------------------------------------------
@pytest.mark.parametrize(
    "name", ["mutual_knn", "jaccard_knn", "rank_similarity", "second_order_cosine"]
)
def test_euclidean_claims_translation_cosine_does_not(name):
    euc = simbench.get_metric(name, distance="euclidean")
    cos = simbench.get_metric(name)
    assert Invariance.TRANSLATION in euc.claimed_invariances()
    assert Invariance.TRANSLATION not in cos.claimed_invariances()
    X, Y = related(8, n=120)
    Xt = transform(X, Invariance.TRANSLATION, np.random.default_rng(1))
    assert euc(Xt, Y) == pytest.approx(euc(X, Y), abs=1e-12)
    assert abs(cos(Xt, Y) - cos(X, Y)) > 1e-5  # a change of neighbourhoods, not rounding
    for inv in (Invariance.ORTHOGONAL, Invariance.ISOTROPIC_SCALING):
        Xi = transform(X, inv, np.random.default_rng(2))
        assert euc(Xi, Y) == pytest.approx(euc(X, Y), abs=1e-12)
    Xl = transform(X, Invariance.INVERTIBLE_LINEAR, np.random.default_rng(3))
    assert abs(euc(Xl, Y) - euc(X, Y)) > 1e-3


def test_cknna_nonpositive_self_hsic_is_a_value_error():
    # found by search: with n = 5, k = 3 the masked kernel of Y is far from symmetric and
    # its unbiased self-HSIC is negative (platonic-rep returns NaN from the square root)
    rng = np.random.default_rng(1864)
    n = int(rng.integers(5, 12))
    k = int(rng.integers(2, n))
    X, Y = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    assert (n, k) == (5, 3)
    with pytest.raises(ValueError, match=r"HSIC of Y with itself is -"):
        simbench.get_metric("cknna", k=k)(X, Y)
    with np.errstate(invalid="ignore"):
        assert np.isnan(brute_cknna(X, Y, k))

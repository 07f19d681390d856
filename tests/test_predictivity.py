"""linear_regression (cross-validated ridge R²) and gulp: closed forms, brute force, streaming.

The brute-force references here work on the full arrays (explicit per-fold ridge fits by
``lstsq`` on the augmented system, explicit hat matrices), independently of the
moment-based formulas they check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simbench
from simbench.numerics.folded import FoldedMoments
from simbench.numerics.moments import Moments
from simbench.plugin import Invariance
from tests._transforms import haar_orthogonal, transform


def related(seed: int, n: int = 203, dx: int = 9, dy: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 4))
    X = Z @ rng.normal(size=(4, dx)) + 0.5 * rng.normal(size=(n, dx)) + 3.0
    Y = np.tanh(Z @ rng.normal(size=(4, dy))) + 0.5 * rng.normal(size=(n, dy)) - 2.0
    return X, Y


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


# -- linear_regression: brute-force reference ------------------------------------------
def ridge_fit(X: np.ndarray, Y: np.ndarray, alpha: float):
    """Ridge with intercept by least squares on the augmented system [Xc; √λ I] B = [Yc; 0]."""
    mx, my = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - mx, Y - my
    d = X.shape[1]
    lam = alpha * float(np.sum(Xc * Xc)) / d  # α times the mean eigenvalue of XcᵀXc
    A = np.vstack([Xc, np.sqrt(lam) * np.eye(d)])
    b = np.vstack([Yc, np.zeros((d, Y.shape[1]))])
    B = np.linalg.lstsq(A, b, rcond=None)[0]
    return lambda Xn: my + (Xn - mx) @ B


def brute_r2(X: np.ndarray, Y: np.ndarray, folds: int, alpha: float) -> float:
    n = X.shape[0]
    fold = np.arange(n) % folds
    res = tot = 0.0
    for k in range(folds):
        test = fold == k
        train = ~test if folds > 1 else test
        pred = ridge_fit(X[train], Y[train], alpha)(X[test])
        res += float(np.sum((Y[test] - pred) ** 2))
        tot += float(np.sum((Y[test] - Y[test].mean(axis=0)) ** 2))
    return 1.0 - res / tot


@pytest.mark.parametrize("folds", [1, 2, 5, 7])
@pytest.mark.parametrize("alpha", [0.0, 0.05, 2.0])
def test_linear_regression_matches_per_fold_ridge_on_full_arrays(folds, alpha):
    X, Y = related(folds)
    for direction, ref in (
        ("x_to_y", brute_r2(X, Y, folds, alpha)),
        ("y_to_x", brute_r2(Y, X, folds, alpha)),
        ("both", 0.5 * (brute_r2(X, Y, folds, alpha) + brute_r2(Y, X, folds, alpha))),
    ):
        m = simbench.get_metric("linear_regression", folds=folds, alpha=alpha, direction=direction)
        assert rel(m(X, Y), ref) < 1e-10, (direction, m(X, Y), ref)


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_linear_regression_more_features_than_training_samples(alpha):
    X, Y = related(4, n=40, dx=60, dy=50)  # 32 training samples per fold
    m = simbench.get_metric("linear_regression", alpha=alpha)
    ref = 0.5 * (brute_r2(X, Y, 5, alpha) + brute_r2(Y, X, 5, alpha))
    assert rel(m(X, Y), ref) < 1e-9, (m(X, Y), ref)


def test_linear_regression_details_and_asymmetry():
    X, Y = related(3)
    s = simbench.get_metric("linear_regression").evaluate(X, Y)
    assert s.details["x_to_y"] != pytest.approx(s.details["y_to_x"], abs=1e-3)
    assert s.value == pytest.approx(0.5 * (s.details["x_to_y"] + s.details["y_to_x"]), abs=1e-15)
    xy = simbench.get_metric("linear_regression", direction="x_to_y")
    yx = simbench.get_metric("linear_regression", direction="y_to_x")
    assert not xy.symmetric and not yx.symmetric
    assert simbench.get_metric("linear_regression").symmetric
    assert xy(X, Y) == pytest.approx(yx(Y, X), abs=1e-12)
    assert xy(X, Y) == pytest.approx(s.details["x_to_y"], abs=1e-15)


@pytest.mark.parametrize("folds", [1, 5])
def test_r2_is_one_for_an_invertible_linear_map(folds):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 7))
    A = haar_orthogonal(rng, 7) @ np.diag(np.exp(rng.uniform(-1, 1, 7))) @ haar_orthogonal(rng, 7)
    Y = X @ A + 5.0
    m = simbench.get_metric("linear_regression", folds=folds, alpha=0.0)
    s = m.evaluate(X, Y)
    assert abs(s.details["x_to_y"] - 1.0) < 1e-10 and abs(s.details["y_to_x"] - 1.0) < 1e-10
    # a ridge shrinks the fit: R² < 1, approaching 1 as alpha -> 0
    r = [simbench.get_metric("linear_regression", alpha=a)(X, Y) for a in (1e-1, 1e-3, 1e-6)]
    assert r[0] < r[1] < r[2] < 1.0 and 1.0 - r[2] < 1e-6


def test_r2_for_independent_data_matches_its_expectation():
    # OLS with intercept, p Gaussian predictors, n_T training and n_h held-out samples:
    # E SS_res / sample = σ² (1 + 1/n_T + p/(n_T − p − 2)), E SS_tot / sample = σ² (1 − 1/n_h)
    n, p, K = 500, 5, 5
    nt, nh = n - n // K, n // K
    expected = 1.0 - (1.0 + 1.0 / nt + p / (nt - p - 2)) / (1.0 - 1.0 / nh)
    m = simbench.get_metric("linear_regression", alpha=0.0, direction="x_to_y", folds=K)
    vals = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        vals.append(m(rng.normal(size=(n, p)), rng.normal(size=(n, 3))))
    mean, se = np.mean(vals), np.std(vals, ddof=1) / np.sqrt(len(vals))
    assert mean < 0, "held-out R² of independent data is negative in expectation"
    assert abs(mean - expected) < 4 * se, (mean, expected, se)


def test_in_sample_r2_is_resi_projection_formula():
    # ReSi linear_reg(R, Rp) = ‖Q_Rpᵀ Rc‖² / ‖Rc‖² (Q: orthonormal basis of the centred Rp)
    X, Y = related(5)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    Q = np.linalg.qr(Xc)[0]
    ref = np.sum((Q.T @ Yc) ** 2) / np.sum(Yc**2)
    m = simbench.get_metric("linear_regression", folds=1, alpha=0.0, direction="x_to_y")
    assert rel(m(X, Y), ref) < 1e-12


def test_zero_ridge_is_invariant_to_invertible_maps_of_the_predictor():
    X, Y = related(8)
    rng = np.random.default_rng(1)
    m = simbench.get_metric("linear_regression", alpha=0.0, direction="x_to_y")
    got = m(transform(X, Invariance.INVERTIBLE_LINEAR, rng), Y)
    assert rel(got, m(X, Y)) < 1e-10
    ridged = simbench.get_metric("linear_regression", alpha=0.5, direction="x_to_y")
    assert rel(ridged(transform(X, Invariance.INVERTIBLE_LINEAR, rng), Y), ridged(X, Y)) > 1e-4


def test_rank_deficient_predictor_without_ridge_uses_min_norm_least_squares():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(120, 3))
    X = np.hstack([Z, Z @ rng.normal(size=(3, 2))])  # rank 3 in 5 columns
    Y = Z @ rng.normal(size=(3, 4))
    s = simbench.get_metric("linear_regression", alpha=0.0).evaluate(X, Y)
    assert abs(s.details["x_to_y"] - 1.0) < 1e-9  # Y is in X's column space
    assert abs(s.details["y_to_x"] - 1.0) < 1e-9


# -- linear_regression: streaming -----------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 4, 5, 17, 64, 500])
def test_streamed_folds_equal_in_memory(batch):
    X, Y = related(11)
    m = simbench.get_metric("linear_regression", folds=5, alpha=0.01)
    acc = m.accumulator()
    assert isinstance(acc, FoldedMoments)
    for start in range(0, X.shape[0], batch):
        acc.update(X[start : start + batch], Y[start : start + batch])
    full = m.evaluate(X, Y)
    got = m.evaluate(acc)
    assert rel(got.value, full.value) < 1e-10
    for key in ("x_to_y", "y_to_x"):
        assert rel(got.details[key], full.details[key]) < 1e-10


def test_streamed_torch_batches_equal_in_memory():
    X, Y = related(12)
    m = simbench.get_metric("linear_regression", folds=3)
    acc = m.accumulator()
    for rows in np.array_split(np.arange(X.shape[0]), 7):
        acc.update(torch.from_numpy(X[rows]), torch.from_numpy(Y[rows]))
    assert rel(m(acc), m(X, Y)) < 1e-10


def test_folded_moments_assign_sample_i_to_fold_i_mod_k():
    X, Y = related(13, n=53)
    fm = FoldedMoments(4)
    for rows in (slice(0, 3), slice(3, 10), slice(10, 11), slice(11, 53)):
        fm.update(X[rows], Y[rows])
    assert fm.n == 53 and fm.counts == [14, 13, 13, 13]
    for k in range(4):
        ref = Moments.from_arrays(X[k::4], Y[k::4])
        part = fm.fold(k)
        assert np.allclose(part.mean_x, ref.mean_x, rtol=1e-13, atol=1e-13)
        assert np.allclose(part.sxy, ref.sxy, rtol=1e-12, atol=1e-12)
    train = fm.pooled(exclude=2)
    mask = np.arange(53) % 4 != 2
    assert np.allclose(train.sxx, Moments.from_arrays(X[mask], Y[mask]).sxx, rtol=1e-12)
    assert fm.pooled().n == 53


def test_folded_moments_reject_bad_batches():
    fm = FoldedMoments(3)
    fm.update(np.ones((4, 2)) * np.arange(4)[:, None], np.arange(4.0))
    with pytest.raises(ValueError, match="features"):
        fm.update(np.zeros((2, 3)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="same samples"):
        fm.update(np.zeros((2, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="non-finite"):
        fm.update(np.full((2, 2), np.nan), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="folds"):
        FoldedMoments(0)


# -- linear_regression: validation ---------------------------------------------------------
def test_linear_regression_validation():
    X, Y = related(14, n=40)
    for bad in ({"folds": 0}, {"alpha": -1.0}, {"direction": "sideways"}, {"folds": 2.5}):
        with pytest.raises(ValueError):
            simbench.get_metric("linear_regression", **bad)
    m = simbench.get_metric("linear_regression", folds=5)
    with pytest.raises(ValueError, match="at least 10"):
        m(X[:9], Y[:9])
    for c in (1.0, 1 / 3, 1e5):  # centring leaves rounding noise unless c is exact
        with pytest.raises(ValueError, match="Y is constant"):
            m(X, np.full((40, 2), c))
        with pytest.raises(ValueError, match="X is constant"):
            m(np.full((40, 3), c), Y)
    # X varies only in one held-out fold: constant on the other folds' training set
    Xs = np.zeros((40, 3))
    Xs[7] = 1.0
    with pytest.raises(ValueError, match=r"predictor\) is constant on the training folds"):
        m(Xs, Y)
    with pytest.raises(TypeError, match="FoldedMoments"):
        m(Moments.from_arrays(X, Y))
    other = simbench.get_metric("linear_regression", folds=3).accumulator().update(X, Y)
    with pytest.raises(ValueError, match="3 folds"):
        m(other)
    short = m.accumulator().update(X[:6], Y[:6])
    with pytest.raises(ValueError, match="at least 10"):
        m(short)


# -- gulp ------------------------------------------------------------------------------------
def normalised(X: np.ndarray) -> np.ndarray:
    """Centred, scaled to ‖X‖²_F = n (the GULP authors' normalisation)."""
    Xc = X - X.mean(axis=0)
    return Xc * np.sqrt(X.shape[0]) / np.linalg.norm(Xc)


def hat(X: np.ndarray, lam: float) -> np.ndarray:
    """Ridge prediction operator: column j = the fitted values of the ridge regression of
    target e_j on X (``min (1/n)‖e_j − Xβ‖² + λ‖β‖²``), by explicit per-target fits."""
    n, d = X.shape
    if lam > 0:
        A = np.vstack([X, np.sqrt(n * lam) * np.eye(d)])
        targets = np.vstack([np.eye(n), np.zeros((d, n))])
    else:
        A, targets = X, np.eye(n)
    beta = np.linalg.lstsq(A, targets, rcond=None)[0]  # every target at once
    return X @ beta


def brute_gulp2(X: np.ndarray, Y: np.ndarray, lam: float) -> float:
    Xn, Yn = normalised(X), normalised(Y)
    return float(np.sum((hat(Xn, lam) - hat(Yn, lam)) ** 2))


@pytest.mark.parametrize("lam", [0.0, 1e-3, 1e-2, 1.0])
def test_gulp_matches_distance_between_ridge_predictors(lam):
    X, Y = related(20, n=150)
    ref = brute_gulp2(X, Y, lam)
    sq = simbench.get_metric("gulp", lam=lam, squared=True)(X, Y)
    assert rel(sq, ref) < 1e-9, (sq, ref)
    assert rel(simbench.get_metric("gulp", lam=lam)(X, Y), np.sqrt(ref)) < 1e-9


@pytest.mark.parametrize("lam", [0.0, 1e-2, 1.0])
def test_gulp_with_more_features_than_samples(lam):
    X, Y = related(25, n=40, dx=60, dy=45)
    ref = brute_gulp2(X, Y, lam)
    assert rel(simbench.get_metric("gulp", lam=lam, squared=True)(X, Y), ref) < 1e-9


def test_gulp_without_ridge_is_ranks_minus_squared_canonical_correlations():
    X, Y = related(21)
    Qx = np.linalg.qr(X - X.mean(axis=0))[0]
    Qy = np.linalg.qr(Y - Y.mean(axis=0))[0]
    rho = np.linalg.svd(Qx.T @ Qy, compute_uv=False)
    ref = X.shape[1] + Y.shape[1] - 2 * np.sum(rho**2)
    assert rel(simbench.get_metric("gulp", lam=0.0, squared=True)(X, Y), ref) < 1e-10


def test_gulp_is_zero_for_an_orthogonal_copy():
    X, _ = related(22)
    rng = np.random.default_rng(0)
    Y = 3.0 * X @ haar_orthogonal(rng, X.shape[1]) + 7.0
    for lam in (0.0, 1e-2, 1.0):
        assert simbench.get_metric("gulp", lam=lam)(X, Y) < 1e-6
        assert simbench.get_metric("gulp", lam=lam, squared=True)(X, Y) < 1e-12


def test_gulp_triangle_inequality_and_invertible_maps_without_ridge():
    rng = np.random.default_rng(3)
    reps = [related(s, n=120, dx=6, dy=6)[0] for s in range(2)] + [rng.normal(size=(120, 5))]
    for lam in (0.0, 1e-2):
        d = simbench.get_metric("gulp", lam=lam)
        a, b, c = d(reps[0], reps[1]), d(reps[1], reps[2]), d(reps[0], reps[2])
        assert c <= a + b + 1e-12 and a <= b + c + 1e-12 and b <= a + c + 1e-12
    X, Y = related(23)
    M = transform(X, Invariance.INVERTIBLE_LINEAR, rng)
    free = simbench.get_metric("gulp", lam=0.0)
    assert Invariance.INVERTIBLE_LINEAR in free.claimed_invariances()
    assert rel(free(M, Y), free(X, Y)) < 1e-9
    ridged = simbench.get_metric("gulp")
    assert Invariance.INVERTIBLE_LINEAR not in ridged.claimed_invariances()
    assert rel(ridged(M, Y), ridged(X, Y)) > 1e-4


def test_gulp_streams_and_validates():
    X, Y = related(24)
    g = simbench.get_metric("gulp")
    acc = g.accumulator()
    for start in range(0, X.shape[0], 13):
        acc.update(X[start : start + 13], Y[start : start + 13])
    assert rel(g(acc), g(X, Y)) < 1e-10
    with pytest.raises(ValueError):
        simbench.get_metric("gulp", lam=-1.0)
    for c in (1.0, 1 / 3, 1e5):
        with pytest.raises(ValueError, match="X is constant"):
            g(np.full((30, 3), c), Y[:30])
        with pytest.raises(ValueError, match="Y is constant"):
            g(X[:30], np.full((30, 2), c))

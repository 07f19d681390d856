"""CCA family: mean CCA, SVCCA, PWCCA, DFT SVCCA and the cca/svcca alignments.

Golden values come from closed forms (data built so that the sample canonical
correlations are known exactly) and from slow, independent float64 implementations of
MATH.md's formulas (QR of the centred matrices, SVD of QxᵀQy; SVD of the data for the
SVCCA step; the flattened (B, C·H·W) activations for the DFT variant).
"""

from __future__ import annotations

import numpy as np
import pytest

import simbench
from simbench.numerics import cca as K
from simbench.numerics.moments import Moments
from tests.conftest import correlated_pair

TOL = 1e-10


# -- slow references ---------------------------------------------------------------------
def _centre(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0)


def slow_rho(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """MATH.md: singular values of QxᵀQy, Q from QR of the centred matrices."""
    Qx = np.linalg.qr(_centre(X))[0]
    Qy = np.linalg.qr(_centre(Y))[0]
    return np.linalg.svd(Qx.T @ Qy, compute_uv=False)


def slow_ridge_rho(X: np.ndarray, Y: np.ndarray, eps: float) -> np.ndarray:
    """Ridge CCA through symmetric inverse square roots (eigen-decompositions)."""

    def inv_sqrt(S):
        S = S + eps * np.trace(S) / S.shape[0] * np.eye(S.shape[0])
        w, V = np.linalg.eigh(S)
        return V @ np.diag(w**-0.5) @ V.T

    Xc, Yc = _centre(X), _centre(Y)
    M = inv_sqrt(Xc.T @ Xc) @ Xc.T @ Yc @ inv_sqrt(Yc.T @ Yc)
    return np.linalg.svd(M, compute_uv=False)


def slow_keep(s: np.ndarray, threshold: float) -> int:
    total, acc = s.sum(), 0.0
    for i, v in enumerate(s):
        acc += v
        if acc >= threshold * total * (1 - 1e-12):
            return i + 1
    return len(s)


def slow_svcca(X, Y, threshold=0.99, rule="sum", keep=(None, None), eps=0.0):
    """SVCCA appendix: SVD of each centred side, keep top m', CCA of the kept directions.

    ``keep`` overrides m' per side; ``eps`` is the ridge on the reduced covariances.
    """
    reduced = []
    for A, m in zip((X, Y), keep, strict=True):
        U, s, _ = np.linalg.svd(_centre(A), full_matrices=False)
        s = np.where(s > s[0] * 1e-10, s, 0.0)
        if m is None:
            m = slow_keep(s if rule == "sum" else s**2, threshold)
        reduced.append(U[:, :m] * s[:m])
    if eps:
        rho = slow_ridge_rho(*reduced, eps)
    else:
        rho = slow_rho(*reduced)
    mx, my = reduced[0].shape[1], reduced[1].shape[1]
    return rho.sum() / min(mx, my), mx, my


def slow_pwcca(X, Y):
    """Morcos et al.: canonical variates h_i of X from QR + SVD, α_i ∝ Σ_j |⟨h_i, x_j⟩|."""
    Xc = _centre(X)
    Qx = np.linalg.qr(Xc)[0]
    Qy = np.linalg.qr(_centre(Y))[0]
    U, rho, _ = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    H = Qx @ U  # unit-norm canonical variates, (n, k)
    alpha = np.abs(H.T @ Xc).sum(axis=1)
    alpha /= alpha.sum()
    return float(alpha @ rho)


def well_conditioned(rng, d):
    """Q₁ diag(s) Q₂ with s in [0.5, 2]: moment-based CCA loses ~ε·κ(X)² (Gram matrices)."""
    Q1, Q2 = (np.linalg.qr(rng.normal(size=(d, d)))[0] for _ in range(2))
    return (Q1 * rng.uniform(0.5, 2.0, size=d)) @ Q2


def exact_pair(rng, rho, extra_x=0, extra_y=0, n=60):
    """Centred orthonormal latents with sample canonical correlations exactly ``rho``.

    ``u_i``, ``w_i`` and the extra directions are orthonormal columns of a QR of centred
    noise; ``v_i = ρ_i u_i + √(1−ρ_i²) w_i``. X mixes ``[u, extra]`` by ``Ax`` and Y mixes
    ``[v, extra']`` by ``Ay`` (invertible), then both are translated.
    """
    k = len(rho)
    Q = np.linalg.qr(_centre(rng.normal(size=(n, 2 * k + extra_x + extra_y))))[0]
    U, Wn = Q[:, :k], Q[:, k : 2 * k]
    V = U * rho + Wn * np.sqrt(1 - np.asarray(rho) ** 2)
    Lx = np.hstack([U, Q[:, 2 * k : 2 * k + extra_x]])
    Ly = np.hstack([V, Q[:, 2 * k + extra_x :]])
    Ax, Ay = well_conditioned(rng, k + extra_x), well_conditioned(rng, k + extra_y)
    X = Lx @ Ax + rng.normal(size=k + extra_x)
    Y = Ly @ Ay + rng.normal(size=k + extra_y)
    return X, Y, Ax


def moments_in_batches(X, Y, parts=4):
    m = Moments()
    for rows in np.array_split(np.arange(X.shape[0]), parts):
        m.update(X[rows], Y[rows])
    return m


# -- mean CCA ----------------------------------------------------------------------------
@pytest.mark.parametrize(("dx", "dy"), [(12, 9), (9, 12), (7, 7)])
def test_cca_matches_slow_qr_reference(rng, dx, dy):
    X, Y = correlated_pair(rng, n=150, dx=dx, dy=dy)
    s = simbench.get_metric("cca").evaluate(X, Y)
    ref = slow_rho(X, Y)
    np.testing.assert_allclose(s.details["rho"], ref, rtol=0, atol=TOL)
    assert s.value == pytest.approx(ref.sum() / min(dx, dy), abs=TOL)


def test_invertible_map_gives_unit_correlations(rng):
    X = rng.normal(size=(80, 10)) + 3.0
    M = rng.normal(size=(10, 10)) + 3 * np.eye(10)
    s = simbench.get_metric("cca").evaluate(X, X @ M - 7.0)
    np.testing.assert_allclose(s.details["rho"], np.ones(10), rtol=0, atol=1e-10)


def test_known_canonical_correlations_are_recovered_exactly(rng):
    rho = np.array([0.95, 0.7, 0.4, 0.1, 0.0])
    X, Y, _ = exact_pair(rng, rho)
    got = simbench.get_metric("cca").evaluate(X, Y).details["rho"]
    np.testing.assert_allclose(got, rho, rtol=0, atol=1e-12)
    # wider X: its extra directions are uncorrelated with Y, so the k correlations stay
    X, Y, _ = exact_pair(rng, rho[:3], extra_x=4)
    got = K.canonical_correlations(Moments.from_arrays(X, Y))
    np.testing.assert_allclose(got, rho[:3], rtol=0, atol=1e-12)


def test_small_correlations_keep_full_accuracy(rng):
    # exact zeros would come out ~1e-8 from eigenvalues of the Gram matrix; the SVD
    # fallback keeps them at rounding level
    rho = np.array([0.9, 1e-7, 0.0])
    X, Y, _ = exact_pair(rng, rho)
    got = K.canonical_correlations(Moments.from_arrays(X, Y))
    np.testing.assert_allclose(got, rho, rtol=0, atol=1e-13)


def test_streaming_equals_full_batch(rng):
    X, Y = correlated_pair(rng, n=200, dx=11, dy=7)
    X += 50.0  # offsets exercise the moments' mean handling
    m = moments_in_batches(X, Y, parts=5)
    for name in ("cca", "svcca", "pwcca"):
        metric = simbench.get_metric(name)
        assert metric(m) == pytest.approx(metric(X, Y), abs=TOL), name


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda r: (r.normal(size=(10, 12)), r.normal(size=(10, 3))), "rank is at most"),
        (
            lambda r: (np.c_[r.normal(size=(40, 4)), np.full(40, 2.5)], r.normal(size=(40, 3))),
            "constant column",
        ),
        (
            lambda r: (
                np.c_[(a := r.normal(size=(40, 4))), a[:, :2] @ [1.0, -2.0]],
                r.normal(size=(40, 3)),
            ),
            "linear combination",
        ),
    ],
    ids=["n<=d", "constant", "collinear"],
)
def test_rank_deficient_needs_a_ridge(rng, make, what):
    X, Y = make(rng)
    for name in ("cca", "pwcca"):
        with pytest.raises(ValueError, match=what) as info:
            simbench.get_metric(name)(X, Y)
        assert "eps" in str(info.value) and "svcca" in str(info.value)
        with pytest.raises(ValueError, match=what):
            simbench.get_metric(name)(Y, X)
        assert np.isfinite(simbench.get_metric(name, eps=1e-3)(X, Y))
    with pytest.raises(ValueError, match=what):
        simbench.get_alignment("cca").fit(X, Y)


def test_ridge_matches_slow_reference_and_is_scale_free(rng):
    X = rng.normal(size=(10, 12))  # n <= d: singular without the ridge
    Y = X[:, :5] @ rng.normal(size=(5, 6)) + 0.3 * rng.normal(size=(10, 6))
    s = simbench.get_metric("cca", eps=0.1).evaluate(X, Y)
    ref = slow_ridge_rho(X, Y, 0.1)[:6]
    np.testing.assert_allclose(s.details["rho"], ref, rtol=0, atol=TOL)
    assert simbench.get_metric("cca", eps=0.1)(1e4 * X, 1e-3 * Y) == pytest.approx(s.value, TOL)


def test_bad_parameters_are_value_errors():
    for name, params in [
        ("cca", {"eps": -1.0}),
        ("svcca", {"threshold": 0.0}),
        ("svcca", {"threshold": 1.5}),
        ("svcca", {"rule": "median"}),
        ("pwcca", {"eps": -0.1}),
        ("svcca_dft", {"batch_size": -1}),
    ]:
        with pytest.raises(ValueError):
            simbench.get_metric(name, **params)


# -- SVCCA -------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["sum", "variance"])
def test_svcca_matches_slow_svd_reference(rng, rule):
    n, dx, dy = 200, 10, 8
    Z = rng.normal(size=(n, 10))
    X = (Z * 0.6 ** np.arange(10)) @ rng.normal(size=(10, dx)) + 0.01 * rng.normal(size=(n, dx))
    Y = (Z[:, :8] * 0.7 ** np.arange(8)) @ rng.normal(size=(8, dy))
    s = simbench.get_metric("svcca", rule=rule).evaluate(X, Y)
    ref, mx, my = slow_svcca(X, Y, 0.99, rule)
    assert (s.details["m_x"], s.details["m_y"]) == (mx, my)
    assert mx < dx and my < dy  # the reduction is exercised
    assert s.value == pytest.approx(ref, abs=TOL)
    assert s.details["rho"].shape == (min(mx, my),)
    ridged = simbench.get_metric("svcca", rule=rule, eps=0.05)(X, Y)
    assert ridged == pytest.approx(slow_svcca(X, Y, 0.99, rule, eps=0.05)[0], abs=TOL)
    assert ridged < s.value - 1e-3


def test_keep_count_on_a_constructed_spectrum():
    s = np.array([50.0, 30, 10, 5, 4, 0.5, 0.5])  # cumulative: 50 80 90 95 99 99.5 100
    assert K.keep_count(s**2, 0.99, "sum") == 5  # 99 >= 0.99 * 100 exactly: reached
    assert K.keep_count(s**2, 0.995, "sum") == 6
    assert K.keep_count(s**2, 0.9, "sum") == 3
    # variance rule on λ = s²: 2500 3400 3500 3525 of 3541.5; 0.99 of it is 3506.1
    assert K.keep_count(s**2, 0.99, "variance") == 4
    assert K.keep_count(np.r_[s**2, 0.0, 0.0], 1.0, "sum") == 7  # null directions never kept


def test_svcca_picks_m_prime_from_the_data_spectrum(rng):
    n = 100
    s = np.array([50.0, 30, 10, 5, 4, 0.5, 0.5])
    Q = np.linalg.qr(_centre(rng.normal(size=(n, 7))))[0]
    R = np.linalg.qr(rng.normal(size=(7, 7)))[0]
    X = (Q * s) @ R + 4.0  # singular values of the centred X are exactly s
    Y = rng.normal(size=(n, 9))
    for thr, rule, want in [(0.99, "sum", 5), (0.9, "sum", 3), (0.99, "variance", 4)]:
        d = simbench.get_metric("svcca", threshold=thr, rule=rule).evaluate(X, Y).details
        assert d["m_x"] == want, (thr, rule)


def test_svcca_handles_rank_deficient_inputs_without_a_ridge(rng):
    Z = rng.normal(size=(30, 4))
    X = np.c_[Z @ rng.normal(size=(4, 40)), np.ones(30)]  # n < d, rank 4, constant column
    Y = Z[:, :3] @ rng.normal(size=(3, 5)) + 0.1 * rng.normal(size=(30, 5))
    s = simbench.get_metric("svcca", threshold=1.0).evaluate(X, Y)
    ref, mx, my = slow_svcca(X, Y, 1.0)
    assert (s.details["m_x"], s.details["m_y"]) == (mx, my) == (4, 5)
    assert s.value == pytest.approx(ref, abs=TOL)


def test_svcca_with_threshold_one_is_cca_on_full_rank_data(rng):
    X, Y = correlated_pair(rng, n=120, dx=8, dy=6)
    assert simbench.get_metric("svcca", threshold=1.0)(X, Y) == pytest.approx(
        simbench.get_metric("cca")(X, Y), abs=TOL
    )


# -- PWCCA -------------------------------------------------------------------------------
@pytest.mark.parametrize(("extra_x", "extra_y"), [(0, 0), (3, 0), (0, 3)])
def test_pwcca_closed_form(rng, extra_x, extra_y):
    # X = [u, extra] Ax: canonical variates of X are u_i, and ⟨u_i, x_j⟩ = Ax[i, j]
    rho = np.array([0.9, 0.6, 0.3, 0.05])
    X, Y, Ax = exact_pair(rng, rho, extra_x, extra_y)
    alpha = np.abs(Ax[: len(rho)]).sum(axis=1)
    alpha /= alpha.sum()
    s = simbench.get_metric("pwcca").evaluate(X, Y)
    np.testing.assert_allclose(s.details["alpha"], alpha, rtol=1e-10)
    assert s.value == pytest.approx(alpha @ rho, abs=TOL)


@pytest.mark.parametrize(("dx", "dy"), [(12, 7), (7, 12)])
def test_pwcca_matches_slow_reference_both_orders(rng, dx, dy):
    X, Y = correlated_pair(rng, n=150, dx=dx, dy=dy)
    metric = simbench.get_metric("pwcca")
    assert metric(X, Y) == pytest.approx(slow_pwcca(X, Y), abs=TOL)
    assert metric(Y, X) == pytest.approx(slow_pwcca(Y, X), abs=TOL)
    assert abs(metric(X, Y) - metric(Y, X)) > 1e-4  # not symmetric


def test_pwcca_with_ridge_matches_unridged_limit(rng):
    X, Y = correlated_pair(rng, n=150, dx=9, dy=6)
    metric = simbench.get_metric("pwcca")
    assert simbench.get_metric("pwcca", eps=1e-13)(X, Y) == pytest.approx(metric(X, Y), abs=1e-9)


# -- DFT SVCCA -----------------------------------------------------------------------------
def circulant_pair(rng, n_base=8, cx=3, cy=2, H=4, W=5):
    """All circular translations of each base pair: an exactly translation-invariant set."""
    x0 = rng.normal(size=(n_base, cx, H, W)) * rng.uniform(0.2, 2.0, size=(1, cx, H, W))
    kernel = rng.normal(size=(3, 3))
    conv = sum(
        kernel[a, b] * np.roll(x0, (a - 1, b - 1), axis=(2, 3)) for a in range(3) for b in range(3)
    )
    y0 = np.einsum("bchw,cd->bdhw", conv, rng.normal(size=(cx, cy)))
    y0 += 0.5 * rng.normal(size=y0.shape)
    shifts = [(a, b) for a in range(H) for b in range(W)]
    X = np.concatenate([np.roll(x0, s, axis=(2, 3)) for s in shifts])
    Y = np.concatenate([np.roll(y0, s, axis=(2, 3)) for s in shifts])
    return X + 1.5, Y - 0.7


@pytest.mark.parametrize("W", [5, 4])
def test_dft_cca_equals_flattened_cca_on_circulant_data(rng, W):
    X, Y = circulant_pair(rng, W=W)
    B = X.shape[0]
    flat_x, flat_y = X.reshape(B, -1), Y.reshape(B, -1)
    s = simbench.get_metric("svcca_dft", threshold=None).evaluate(X, Y)
    ref = slow_rho(flat_x, flat_y)
    np.testing.assert_allclose(s.details["rho"], ref, rtol=0, atol=1e-9)
    assert s.value == pytest.approx(ref.mean(), abs=TOL)
    assert s.details["m_x"] == flat_x.shape[1]
    ridged = simbench.get_metric("svcca_dft", threshold=None, eps=0.2)(X, Y)
    assert ridged == pytest.approx(slow_ridge_rho(flat_x, flat_y, 0.2).mean(), abs=TOL)


def _splits_a_pair(A: np.ndarray, threshold: float) -> bool:
    """Whether SVCCA's m' on the flattened A cuts between two equal singular values."""
    s = np.linalg.svd(_centre(A), compute_uv=False)
    m = slow_keep(s, threshold)
    return m < len(s) and abs(s[m - 1] - s[m]) <= 1e-8 * s[0]


@pytest.mark.parametrize("W", [5, 4])
def test_dft_svcca_equals_flattened_svcca_on_circulant_data(rng, W):
    # conjugate frequencies give equal singular values in pairs; pick thresholds whose cut
    # falls between pairs (the flattened SVCCA is then unique) on both sides
    X, Y = circulant_pair(rng, W=W)
    B = X.shape[0]
    fx, fy = X.reshape(B, -1), Y.reshape(B, -1)
    grid = np.linspace(0.8, 0.99, 39)
    clean = [t for t in grid if not (_splits_a_pair(fx, t) or _splits_a_pair(fy, t))]
    assert len(clean) >= 3
    for thr in clean[:: max(1, len(clean) // 3)]:
        ref, mx, my = slow_svcca(fx, fy, thr)
        s = simbench.get_metric("svcca_dft", threshold=thr).evaluate(X, Y)
        assert (s.details["m_x"], s.details["m_y"]) == (mx, my)
        assert mx < fx.shape[1] and my < fy.shape[1]  # the reduction is exercised
        assert s.value == pytest.approx(ref, abs=TOL)
    ridged = simbench.get_metric("svcca_dft", threshold=thr, eps=0.1)(X, Y)
    assert ridged == pytest.approx(slow_svcca(fx, fy, thr, eps=0.1)[0], abs=TOL)
    # a cut inside a pair keeps the whole pair (m' + 1)
    thr = next(t for t in grid if _splits_a_pair(fx, t) and not _splits_a_pair(fy, t))
    _, mx, my = slow_svcca(fx, fy, thr)
    ref, _, _ = slow_svcca(fx, fy, keep=(mx + 1, my))
    s = simbench.get_metric("svcca_dft", threshold=thr).evaluate(X, Y)
    assert (s.details["m_x"], s.details["m_y"]) == (mx + 1, my)
    assert s.value == pytest.approx(ref, abs=TOL)


def test_dft_batches_and_torch_input_give_the_same_value(rng):
    torch = pytest.importorskip("torch")
    X, Y = circulant_pair(rng, n_base=3)
    X = X[rng.permutation(X.shape[0])]  # not translation invariant per batch
    ref = simbench.get_metric("svcca_dft")(X, Y)
    assert simbench.get_metric("svcca_dft", batch_size=7)(X, Y) == pytest.approx(ref, abs=TOL)
    assert simbench.get_metric("svcca_dft")(torch.from_numpy(X), Y) == pytest.approx(ref, abs=TOL)


def test_dft_on_matrices_is_svcca(rng):
    X, Y = simbench.get_metric("svcca").example_inputs(rng)
    assert simbench.get_metric("svcca_dft")(X, Y) == pytest.approx(
        simbench.get_metric("svcca")(X, Y), abs=TOL
    )


def test_dft_rejects_mismatched_spatial_sizes(rng):
    with pytest.raises(ValueError, match="spatial"):
        simbench.get_metric("svcca_dft")(
            rng.normal(size=(6, 2, 4, 4)), rng.normal(size=(6, 2, 3, 4))
        )
    with pytest.raises(ValueError, match="singular"):  # B <= C: every block is singular
        simbench.get_metric("svcca_dft", threshold=None)(
            rng.normal(size=(3, 4, 4, 4)), rng.normal(size=(3, 2, 4, 4))
        )
    # C < B <= C·H·W: the flattened covariance is singular but every block is regular, so
    # the block-diagonal DFT estimate is finite
    assert np.isfinite(
        simbench.get_metric("svcca_dft", threshold=None)(
            rng.normal(size=(6, 2, 4, 4)), rng.normal(size=(6, 2, 4, 4))
        )
    )


# -- alignments --------------------------------------------------------------------------------
def test_cca_alignment_recovers_an_invertible_map(rng):
    X = rng.normal(size=(100, 8)) + 2.0
    M = rng.normal(size=(8, 8)) + 2 * np.eye(8)
    a = simbench.get_alignment("cca").fit(X, X @ M + 5.0)
    assert a.T.shape == (8, 8)
    np.testing.assert_allclose(a.T, M, rtol=0, atol=1e-8)
    np.testing.assert_allclose(a.rho_, np.ones(8), atol=1e-10)


def test_cca_alignment_is_least_squares_when_y_is_narrower(rng):
    X, Y = correlated_pair(rng, n=150, dx=10, dy=6)
    T = simbench.get_alignment("cca").fit(moments_in_batches(X, Y)).T
    ref = np.linalg.lstsq(_centre(X), _centre(Y), rcond=None)[0]
    np.testing.assert_allclose(T, ref, rtol=0, atol=1e-10)


def test_cca_alignment_wider_y_matches_the_formula(rng):
    X, Y = correlated_pair(rng, n=150, dx=5, dy=9)
    T = simbench.get_alignment("cca").fit(X, Y).T
    # A from the slow route: canonical variates Qx U = Xc A_x (unit norm), same for Y
    Xc, Yc = _centre(X), _centre(Y)
    Qx, Rx = np.linalg.qr(Xc)
    Qy, Ry = np.linalg.qr(Yc)
    U, rho, Vt = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    Ax, Ay = np.linalg.solve(Rx, U), np.linalg.solve(Ry, Vt.T)
    np.testing.assert_allclose(T, Ax @ np.diag(rho) @ np.linalg.pinv(Ay), rtol=0, atol=1e-10)
    assert T.shape == (5, 9)


def test_svcca_alignment_on_rank_deficient_data(rng):
    Z = rng.normal(size=(60, 3))
    X = np.c_[Z @ rng.normal(size=(3, 7)), np.full(60, 2.0)]  # rank 3 in 8 columns
    Y = X @ rng.normal(size=(8, 5)) + 1.0  # rank 3 in 5 columns
    a = simbench.get_alignment("svcca", threshold=1.0).fit(X, Y)
    assert a.T.shape == (8, 5) and (a.m_x_, a.m_y_) == (3, 3)
    np.testing.assert_allclose(_centre(X) @ a.T, _centre(Y), rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="svcca"):
        simbench.get_alignment("cca").fit(X, Y)


def test_svcca_alignment_with_full_threshold_equals_cca(rng):
    X, Y = correlated_pair(rng, n=120, dx=9, dy=6)
    T_cca = simbench.get_alignment("cca").fit(X, Y).T
    T_sv = simbench.get_alignment("svcca", threshold=1.0).fit(moments_in_batches(X, Y)).T
    np.testing.assert_allclose(T_sv, T_cca, rtol=0, atol=1e-10)

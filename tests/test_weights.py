"""Weight-covariance similarity (MATH.md: Weight-covariance similarity; GM section 3.2).

Golden values are independent slow implementations (dense d×d covariances, scipy
``sqrtm``, explicit Haar rotations and explicit Gaussian resampling) or closed forms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as sla
import torch

import simbench
from simbench.numerics.covariance import (
    WeightCovariance,
    bures_cosine,
    bures_reference,
    effective_rank,
    eigenvector_similarity,
    init_variance,
    normalized_bures,
    pytorch_default_init_variance,
    spatial_eigenfilters,
)
from simbench.plugin import Invariance


# -- helpers ---------------------------------------------------------------------------
def frame(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(d, k)))[0]


def spiked_weights(
    rng: np.random.Generator,
    n: int,
    d: int,
    V: np.ndarray,
    spikes: np.ndarray,
    sigma2: float | None = None,
) -> np.ndarray:
    """n neurons ~ N(0, σ² (I + V diag(l) Vᵀ)), σ² the PyTorch default init variance."""
    sigma = math.sqrt(1.0 / (3 * d) if sigma2 is None else sigma2)
    G = rng.normal(size=(n, d))
    return sigma * (G + ((G @ V) * (np.sqrt(1.0 + spikes) - 1.0)) @ V.T)


def psd_sqrt(C: np.ndarray) -> np.ndarray:
    w, U = np.linalg.eigh(C)
    return (U * np.sqrt(np.clip(w, 0, None))) @ U.T


def slow_cos(C1: np.ndarray, C2: np.ndarray, root=sla.sqrtm) -> float:
    """GM eq. 5 on dense d×d matrices with full matrix square roots."""
    M = np.real(root(C1)) @ np.real(root(C2))
    return float(np.linalg.svd(M, compute_uv=False).sum() / np.sqrt(np.trace(C1) * np.trace(C2)))


def dense_gm(W: np.ndarray, sigma2: float) -> np.ndarray:
    """Slow reference: eq. 3 on the d×d eigendecomposition of C = WᵀW/(n σ²)."""
    n, d = W.shape
    w, U = np.linalg.eigh(W.T @ W / (n * sigma2))
    s = simbench.get_shrinkage("gm")(w, d / n)
    return (U * s) @ U.T


@pytest.fixture(scope="module")
def planted() -> dict:
    """Two independent samples of one spiked weight distribution, and a rotated one."""
    rng = np.random.default_rng(2024)
    n, d = 120, 80
    spikes = np.array([60.0, 30.0, 15.0, 8.0, 4.0])
    V = frame(rng, d, spikes.size)
    W1 = spiked_weights(rng, n, d, V, spikes)
    W2 = spiked_weights(rng, n, d, V, spikes)
    O = sla.qr(rng.normal(size=(d, d)))[0]
    return {"W1": W1, "W2": W2, "W3": W2 @ O.T, "V": V, "spikes": spikes}


# -- init variance ---------------------------------------------------------------------
@pytest.mark.parametrize("fan_in", [1, 3, 27, 576, 4608])
def test_pytorch_default_init_variance_formula(fan_in: int) -> None:
    # kaiming_uniform(a=√5): bound = √(2/(1+5)) √(3/fan_in) = 1/√fan_in, var = bound²/3
    assert pytorch_default_init_variance(fan_in) == pytest.approx(1 / (3 * fan_in), rel=1e-15)
    gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    bound = gain * math.sqrt(3.0 / fan_in)
    assert pytorch_default_init_variance(fan_in) == pytest.approx(bound**2 / 3, rel=1e-14)


@pytest.mark.parametrize("fan_in", [0, -3, 2.5, True])
def test_bad_fan_in_is_a_value_error(fan_in) -> None:
    with pytest.raises(ValueError, match="fan_in"):
        pytorch_default_init_variance(fan_in)


def test_init_variance_from_modules() -> None:
    assert init_variance(torch.nn.Linear(300, 7)) == pytest.approx(1 / 900, rel=1e-15)
    assert init_variance(torch.nn.Conv2d(64, 32, 3)) == pytest.approx(1 / (3 * 576), rel=1e-15)
    # grouped conv: fan_in counts the C_in/groups channels each filter sees
    grouped = torch.nn.Conv2d(64, 32, 5, groups=4)
    assert init_variance(grouped) == pytest.approx(1 / (3 * 16 * 25), rel=1e-15)
    assert init_variance(torch.nn.Conv1d(10, 4, 7)) == pytest.approx(1 / 210, rel=1e-15)
    with pytest.raises(ValueError, match="init_var"):
        init_variance(torch.nn.BatchNorm2d(4))


def test_init_variance_matches_a_freshly_initialised_conv() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 256, 3)  # 589,824 weights
    w = conv.weight.detach().double().numpy()
    target = init_variance(conv)
    # relative s.d. of the variance estimate of a uniform: √(4/5 / N) ≈ 1.2e-3
    assert np.var(w) == pytest.approx(target, rel=0.01)
    assert np.abs(w).max() == pytest.approx(math.sqrt(3 * target), rel=1e-3)  # U(-b, b)
    # in init-variance units a fresh layer is pure Marchenko–Pastur noise: nothing learned
    C = WeightCovariance.from_weight(conv.weight)
    gamma = C.gamma
    assert C.eigenvalues[0] == pytest.approx((1 + math.sqrt(gamma)) ** 2, rel=0.05)
    lin = torch.nn.Linear(256, 1024)
    C = WeightCovariance.from_weight(lin.weight, init_var=init_variance(lin))
    assert C.eigenvalues[0] == pytest.approx(2.25, rel=0.04)  # (1 + √(1/4))²
    assert C.eigenvalues[-1] == pytest.approx(0.25, rel=0.1)  # (1 - √(1/4))²


# -- WeightCovariance ------------------------------------------------------------------
@pytest.mark.parametrize(("n", "d"), [(40, 90), (150, 60)])
def test_from_weight_matches_the_dense_reference(n: int, d: int) -> None:
    rng = np.random.default_rng(n)
    spikes = np.array([50.0, 20.0, 9.0])
    W = spiked_weights(rng, n, d, frame(rng, d, 3), spikes)
    sigma2 = 1 / (3 * d)
    C = WeightCovariance.from_weight(W)
    assert (C.n_out, C.d_in, C.gamma, C.shrinkage) == (n, d, d / n, "gm")
    assert C.init_var == pytest.approx(sigma2, rel=1e-15)
    ref = dense_gm(W, sigma2)
    np.testing.assert_allclose(C.dense(), ref, atol=1e-10 * np.abs(ref).max())
    raw = np.linalg.eigvalsh(W.T @ W / (n * sigma2))[::-1][: min(n, d)]
    np.testing.assert_allclose(C.eigenvalues, raw, rtol=1e-10, atol=1e-10 * raw[0])
    np.testing.assert_allclose(C.V.T @ C.V, np.eye(C.rank), atol=1e-12)
    assert np.all(np.diff(C.s) <= 0) and C.rank == 3
    # without shrinkage: the whole nonzero spectrum of C
    Cn = WeightCovariance.from_weight(W, shrinkage="none")
    assert Cn.rank == min(n, d)
    direct = W.T @ W / (n * sigma2)
    np.testing.assert_allclose(Cn.dense(), direct, atol=1e-10 * np.abs(direct).max())


def test_from_weight_explicit_init_var_and_conv_flattening() -> None:
    rng = np.random.default_rng(3)
    W4 = rng.normal(size=(50, 8, 3, 3)) * 0.1
    W4[:, :, 1, 1] += 2.0 * rng.normal(size=(50, 1))  # a shared direction: learned part
    a = WeightCovariance.from_weight(W4)
    b = WeightCovariance.from_weight(W4.reshape(50, 72), init_var=1 / (3 * 72))
    np.testing.assert_allclose(a.dense(), b.dense(), rtol=0, atol=1e-12 * a.s[0])
    c = WeightCovariance.from_weight(torch.from_numpy(W4), init_var=0.01)
    ref = dense_gm(W4.reshape(50, 72), 0.01)
    np.testing.assert_allclose(c.dense(), ref, atol=1e-10 * np.abs(ref).max())


def test_from_matrix_equals_from_weight() -> None:
    rng = np.random.default_rng(4)
    W = spiked_weights(rng, 70, 40, frame(rng, 40, 2), np.array([30.0, 10.0]))
    C = W.T @ W / (70 / (3 * 40))
    a = WeightCovariance.from_matrix(C, n_out=70)
    b = WeightCovariance.from_weight(W)
    np.testing.assert_allclose(a.s, b.s, rtol=1e-10)
    np.testing.assert_allclose(a.dense(), b.dense(), atol=1e-10 * a.s[0])
    assert a.init_var is None and a.gamma == b.gamma


@pytest.mark.parametrize(
    ("W", "match"),
    [
        (np.zeros((5, 4)), "all zeros"),
        (np.ones(5), "weight matrix"),
        (np.ones((2, 2, 2, 2, 2, 2)), "weight matrix"),
        (np.ones((0, 3)), "empty"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "non-finite"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "non-finite"),
    ],
)
def test_bad_weights_are_a_value_error(W: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WeightCovariance.from_weight(W)


def test_bad_matrices_and_parameters_are_a_value_error() -> None:
    good = np.eye(3)
    for C, match in [
        (np.ones((2, 3)), "square"),
        (np.array([[1.0, 2.0], [0.0, 1.0]]), "symmetric"),
        (np.diag([1.0, -1.0]), "semi-definite"),
        (np.zeros((3, 3)), "all zeros"),
        (np.diag([1.0, np.nan]), "non-finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            WeightCovariance.from_matrix(C, 10)
    with pytest.raises(ValueError, match="n_out"):
        WeightCovariance.from_matrix(good, 0)
    with pytest.raises(ValueError, match="init_var"):
        WeightCovariance.from_weight(np.ones((3, 2)), init_var=-1.0)
    with pytest.raises(ValueError, match="Known shrinkages"):
        WeightCovariance.from_weight(np.ones((3, 2)), shrinkage="gmm")


def test_weight_covariance_is_immutable_and_validated() -> None:
    V = np.eye(4)[:, :2]
    C = WeightCovariance(
        np.array([3.0, 1.0]),
        V,
        n_out=10,
        d_in=4,
        shrinkage="none",
        eigenvalues=np.array([3.0, 1.0, 0.0, 0.0]),
    )
    with pytest.raises(ValueError, match="read-only"):
        C.s[0] = 5.0
    V[0, 0] = 7.0  # the caller's array is copied, not frozen or aliased
    assert C.V[0, 0] == 1.0 and C.trace == 4.0 and C.rank == 2
    for s, VV, match in [
        (np.array([1.0, 3.0]), np.eye(4)[:, :2], "descending"),
        (np.array([3.0, 0.0]), np.eye(4)[:, :2], "> 0"),
        (np.array([3.0, 1.0]), np.eye(4)[:, :3], "d_in"),
    ]:
        with pytest.raises(ValueError, match=match):
            WeightCovariance(s, VV, 10, 4, "none", np.zeros(4))


def test_pure_noise_has_no_learned_component() -> None:
    rng = np.random.default_rng(5)
    W = rng.normal(size=(200, 50)) * math.sqrt(1 / 150)  # exactly the init distribution
    C = WeightCovariance.from_weight(W)
    assert C.rank == 0 and C.eigenvalues[0] < (1 + math.sqrt(0.25)) ** 2
    with pytest.raises(ValueError, match="no eigenvalue left"):
        bures_cosine(C, C)
    with pytest.raises(ValueError, match="no learned component"):
        simbench.get_metric("effective_rank")(W, W)
    with pytest.raises(ValueError, match="no eigenvalue left"):
        simbench.get_metric("bures")(W, W)


# -- effective rank (eq. 4) ------------------------------------------------------------
@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], 2.5),  # (1+2+3+4)/4
        ([3.0, 0.0, 0.0], 1.0),
        ([1.0, 3.0], (3 + 2 * 1) / 4),  # sorted descending first: (3·1 + 1·2)/4
        ([2.0, 1.0, 0.0, 0.0, 0.0], 4 / 3),  # zeros do not count
        (np.full(7, 0.3), 4.0),  # (k+1)/2 for a flat spectrum of k
    ],
)
def test_effective_rank_closed_forms(s, expected: float) -> None:
    assert effective_rank(np.array(s)) == pytest.approx(expected, rel=1e-15)


def test_effective_rank_geometric_spectrum() -> None:
    q, k = 0.7, 40
    s = q ** np.arange(k)
    closed = sum((i + 1) * q**i for i in range(k)) / ((1 - q**k) / (1 - q))
    assert effective_rank(s[::-1]) == pytest.approx(closed, rel=1e-13)


@pytest.mark.parametrize("s", [[0.0, 0.0], [], [1.0, -0.5], [1.0, np.nan]])
def test_effective_rank_degenerate_is_a_value_error(s) -> None:
    with pytest.raises(ValueError):
        effective_rank(np.array(s, dtype=float))


# -- Bures cosine (eq. 5) --------------------------------------------------------------
def test_bures_cosine_of_a_covariance_with_itself_is_one(planted) -> None:
    for shrinkage in ("gm", "none"):
        C = WeightCovariance.from_weight(planted["W1"], shrinkage=shrinkage)
        assert bures_cosine(C, C) == pytest.approx(1.0, abs=1e-12)


def test_bures_cosine_diagonal_closed_form() -> None:
    a = np.array([5.0, 3.0, 2.0, 0.5, 0.0, 1.0])
    b = np.array([1.0, 0.0, 4.0, 2.0, 3.0, 0.25])
    A = WeightCovariance.from_matrix(np.diag(a), 10, shrinkage="none")
    B = WeightCovariance.from_matrix(np.diag(b), 10, shrinkage="none")
    expected = np.sqrt(a * b).sum() / np.sqrt(a.sum() * b.sum())
    assert bures_cosine(A, B) == pytest.approx(expected, rel=1e-13)
    assert bures_cosine(B, A) == pytest.approx(expected, rel=1e-13)


def test_bures_cosine_commuting_closed_form() -> None:
    rng = np.random.default_rng(6)
    Q = sla.qr(rng.normal(size=(9, 9)))[0]
    a, b = rng.uniform(0.1, 5, 9), rng.uniform(0.1, 5, 9)
    A = WeightCovariance.from_matrix((Q * a) @ Q.T, 30, shrinkage="none")
    B = WeightCovariance.from_matrix((Q * b) @ Q.T, 30, shrinkage="none")
    expected = np.sqrt(a * b).sum() / np.sqrt(a.sum() * b.sum())
    assert bures_cosine(A, B) == pytest.approx(expected, rel=1e-12)
    # disjoint supports: cos = 0
    e1 = WeightCovariance.from_matrix(np.diag([1.0, 0, 0]), 5, shrinkage="none")
    e2 = WeightCovariance.from_matrix(np.diag([0, 2.0, 3.0]), 5, shrinkage="none")
    assert bures_cosine(e1, e2) == pytest.approx(0.0, abs=1e-15)


def test_bures_cosine_low_rank_core_matches_sqrtm() -> None:
    rng = np.random.default_rng(7)
    n, d = 90, 40  # n > d: full-rank covariances, where sqrtm is well conditioned
    V = frame(rng, d, 3)
    W1 = spiked_weights(rng, n, d, V, np.array([30.0, 10.0, 5.0]))
    W2 = spiked_weights(rng, n, d, frame(rng, d, 3), np.array([20.0, 12.0, 3.0]))
    s2 = 1 / (3 * d)
    D1, D2 = W1.T @ W1 / (n * s2), W2.T @ W2 / (n * s2)
    C1 = WeightCovariance.from_weight(W1, shrinkage="none")
    C2 = WeightCovariance.from_weight(W2, shrinkage="none")
    assert bures_cosine(C1, C2) == pytest.approx(slow_cos(D1, D2), rel=1e-8)
    # gm: low rank, so the slow reference uses the PSD square root of the dense shrunk C
    G1, G2 = WeightCovariance.from_weight(W1), WeightCovariance.from_weight(W2)
    ref = slow_cos(dense_gm(W1, s2), dense_gm(W2, s2), root=psd_sqrt)
    assert bures_cosine(G1, G2) == pytest.approx(ref, rel=1e-8)
    assert bures_cosine(G1, G2) != pytest.approx(bures_cosine(C1, C2), rel=1e-3)


def test_bures_cosine_needs_a_common_input_space() -> None:
    A = WeightCovariance.from_matrix(np.eye(3), 5, shrinkage="none")
    B = WeightCovariance.from_matrix(np.eye(4), 5, shrinkage="none")
    with pytest.raises(ValueError, match="d_in 3 != 4"):
        bures_cosine(A, B)
    with pytest.raises(ValueError, match="WeightCovariance"):
        bures_cosine(A, np.eye(3))


# -- normalised Bures similarity (eq. 6) ----------------------------------------------------
def test_normalized_bures_one_for_same_distribution_zero_after_rotation(planted) -> None:
    C1, C2, C3 = (WeightCovariance.from_weight(planted[k]) for k in ("W1", "W2", "W3"))
    same = normalized_bures(C1, C2, draws=8)
    rotated = normalized_bures(C1, C3, draws=8)
    # two finite samples are slightly less alike than a sample and its resample: S ≲ 1
    assert 0.9 < same.value < 1.05
    assert abs(rotated.value) < 0.12
    assert same.details["symmetrized"] is True
    assert same.details["cos"] == pytest.approx(bures_cosine(C1, C2), rel=1e-15)
    z, u = same.details["z_x"], same.details["u_x"]
    assert 0 < z < u < 1
    # the rotated cosine sits at the zero point z (within its spread)
    assert rotated.details["cos"] == pytest.approx(z, abs=0.05)


def test_normalized_bures_matches_its_definition(planted) -> None:
    C1, C2 = (WeightCovariance.from_weight(planted[k]) for k in ("W1", "W2"))
    draws, seed = 6, 11
    r1, r2 = bures_reference(C1, draws, seed), bures_reference(C2, draws, seed)
    c = bures_cosine(C1, C2)

    def s_and_grad(ref):
        z, u = ref.z.mean(), ref.u.mean()
        return (c - z) / (u - z), (c - u) / (u - z) ** 2, -(c - z) / (u - z) ** 2

    S12, gz1, gu1 = s_and_grad(r1)
    S21, gz2, gu2 = s_and_grad(r2)
    one = normalized_bures(C1, C2, draws, seed, symmetric=False)
    assert one.value == pytest.approx(S12, rel=1e-13)
    # delta method from the per-draw covariance of (z_i, u_i)
    cov = np.cov(np.vstack([r1.z, r1.u]))
    g = np.array([gz1, gu1])
    assert one.stderr == pytest.approx(math.sqrt(g @ cov @ g / draws), rel=1e-10)
    assert one.details["z_stderr"] == pytest.approx(r1.z.std(ddof=1) / math.sqrt(draws))
    both = normalized_bures(C1, C2, draws, seed)
    assert both.value == pytest.approx((S12 + S21) / 2, rel=1e-13)
    assert both.details["S_yx"] == pytest.approx(S21, rel=1e-13)
    cov4 = np.cov(np.vstack([r1.z, r1.u, r2.z, r2.u]))
    g4 = np.array([gz1, gu1, gz2, gu2]) / 2
    assert both.stderr == pytest.approx(math.sqrt(g4 @ cov4 @ g4 / draws), rel=1e-10)


def test_normalized_bures_stderr_matches_the_spread_over_seeds(planted) -> None:
    rng = np.random.default_rng(8)
    n, d = 40, 60
    V = frame(rng, d, 3)
    C1 = WeightCovariance.from_weight(spiked_weights(rng, n, d, V, np.array([12.0, 6.0, 3.0])))
    C2 = WeightCovariance.from_weight(spiked_weights(rng, n, d, V, np.array([12.0, 6.0, 3.0])))
    scores = [normalized_bures(C1, C2, draws=8, seed=s, symmetric=False) for s in range(40)]
    spread = np.std([s.value for s in scores], ddof=1)
    mean_stderr = np.mean([s.stderr for s in scores])
    assert 0.6 < mean_stderr / spread < 1.6


def test_normalized_bures_is_deterministic_and_symmetric(planted) -> None:
    C1, C2 = (WeightCovariance.from_weight(planted[k]) for k in ("W1", "W2"))
    a = normalized_bures(C1, C2, draws=4, seed=3)
    b = normalized_bures(C1, C2, draws=4, seed=3)
    assert (a.value, a.stderr) == (b.value, b.stderr)
    assert normalized_bures(C2, C1, draws=4, seed=3).value == pytest.approx(a.value, abs=1e-13)
    assert normalized_bures(C1, C2, draws=4, seed=4).value != a.value
    # draw i does not depend on the number of draws
    r4, r8 = bures_reference(C1, 4, 9), bures_reference(C1, 8, 9)
    np.testing.assert_array_equal(r4.z, r8.z[:4])
    np.testing.assert_array_equal(r4.u, r8.u[:4])
    asym = normalized_bures(C1, C2, draws=4, seed=3, symmetric=False).value
    assert asym != pytest.approx(normalized_bures(C2, C1, 4, 3, symmetric=False).value, 1e-9)


def _slow_reference(C: WeightCovariance, draws: int, rng: np.random.Generator):
    """z and u draws with explicit d×d Haar rotations and d-dimensional Gaussian samples."""
    dense = C.dense()
    root = psd_sqrt(dense + np.eye(C.d_in))
    z, u = [], []
    for _ in range(draws):
        Q, R = np.linalg.qr(rng.normal(size=(C.d_in, C.d_in)))
        O = Q * np.sign(np.diag(R))
        rot = WeightCovariance.from_matrix(O @ dense @ O.T, C.n_out, shrinkage="none")
        z.append(bures_cosine(C, rot))
        X = rng.normal(size=(C.n_out, C.d_in)) @ root
        hat = WeightCovariance.from_weight(X, init_var=1.0, shrinkage=C.shrinkage)
        u.append(bures_cosine(C, hat) if hat.rank else 0.0)
    return np.array(z), np.array(u)


@pytest.mark.parametrize(
    ("n", "d", "shrinkage"), [(30, 50, "gm"), (80, 25, "gm"), (30, 12, "none")]
)
def test_fast_monte_carlo_has_the_law_of_the_explicit_one(n: int, d: int, shrinkage: str) -> None:
    rng = np.random.default_rng(n + d)
    spikes = np.array([15.0, 6.0, 2.5])
    C = WeightCovariance.from_weight(
        spiked_weights(rng, n, d, frame(rng, d, 3), spikes), shrinkage=shrinkage
    )
    draws = 150
    fast = bures_reference(C, draws, seed=1)
    zs, us = _slow_reference(C, draws, np.random.default_rng(2))
    for a, b in ((fast.z, zs), (fast.u, us)):
        se = math.sqrt(a.var(ddof=1) / draws + b.var(ddof=1) / draws)
        assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
        assert 0.6 < a.std() / b.std() < 1.6


def test_partial_eigensolve_equals_the_full_spectrum_path(planted) -> None:
    # built-in gm: only eigenpairs above the bulk edge are computed in the draws; a
    # subclass (unknown zero region) goes through the full spectrum: same numbers
    from simbench.shrinkage import GMShrinkage

    class OpaqueGM(GMShrinkage):
        name = ""

    for W in (planted["W1"], planted["W1"][:50]):  # n > d and n < d resampling paths
        fast = WeightCovariance.from_weight(W)
        slow = WeightCovariance.from_weight(W, shrinkage=OpaqueGM())
        a, b = bures_reference(fast, 3, 0), bures_reference(slow, 3, 0)
        np.testing.assert_allclose(a.z, b.z, rtol=1e-12)
        np.testing.assert_allclose(a.u, b.u, rtol=1e-10)


@pytest.mark.parametrize(("p", "dof"), [(6, 10), (6, 3)])
def test_wishart_factor_moments(p: int, dof: int) -> None:
    # W = F Fᵀ ~ Wishart_p(I, dof): E W = dof·I, Var W_ii = 2 dof, Var W_ij = dof (i ≠ j)
    from simbench.numerics.covariance import _wishart_factor

    rng = np.random.default_rng(10)
    draws = 6000
    Ws = np.array([(F := _wishart_factor(rng, p, dof)) @ F.T for _ in range(draws)])
    mean = Ws.mean(axis=0)
    se = np.sqrt(np.where(np.eye(p, dtype=bool), 2 * dof, dof) / draws)
    assert np.all(np.abs(mean - dof * np.eye(p)) < 4.5 * se)
    var_diag = Ws[:, np.arange(p), np.arange(p)].var(axis=0)
    np.testing.assert_allclose(var_diag, 2 * dof, rtol=0.15)
    np.testing.assert_allclose(Ws[:, 0, -1].var(), dof, rtol=0.15)


def test_full_rank_haar_core_is_a_rotation() -> None:
    # r = d: O C Oᵀ with the whole spectrum; z ≤ 1 and the core is orthogonal
    C = WeightCovariance.from_matrix(np.diag([4.0, 3.0, 2.0, 1.0]), 100, shrinkage="none")
    ref = bures_reference(C, 5, 0)
    assert np.all(ref.z <= 1 + 1e-12) and np.all(ref.z > 0.5)
    from simbench.numerics.covariance import _haar_core

    M = _haar_core(np.random.default_rng(0), 4, 4)
    np.testing.assert_allclose(M.T @ M, np.eye(4), atol=1e-12)


def test_normalized_bures_bad_draws_and_seed(planted) -> None:
    C = WeightCovariance.from_weight(planted["W1"])
    for draws in (0, 1, 2.5):
        with pytest.raises(ValueError, match="draws"):
            normalized_bures(C, C, draws=draws)
    with pytest.raises(ValueError, match="seed"):
        normalized_bures(C, C, seed=-1)


# -- eigenvectors and spatial eigenfilters ---------------------------------------------------
def test_eigenvector_similarity_closed_forms() -> None:
    d = 16
    a = WeightCovariance.from_matrix(np.diag([9.0, 4, 1] + [0] * 13), 50, shrinkage="none")
    b = WeightCovariance.from_matrix(np.diag([0, 9.0, 4, 1] + [0] * 12), 50, shrinkage="none")
    same = eigenvector_similarity(a, a)
    np.testing.assert_allclose(same.overlap, np.eye(3), atol=1e-15)
    assert (same.chance, same.significance) == (1 / 4, 5 / 4)
    shifted = eigenvector_similarity(a, b, k=3)
    expected = np.zeros((3, 3))
    expected[1, 0] = expected[2, 1] = 1.0  # a's e2 is b's first eigenvector, e3 its second
    np.testing.assert_allclose(shifted.overlap, expected, atol=1e-15)
    with pytest.raises(ValueError, match="k must be"):
        eigenvector_similarity(a, b, k=4)
    rng = np.random.default_rng(0)
    c = WeightCovariance.from_matrix(np.diag(rng.uniform(1, 2, d)), 50, shrinkage="none")
    assert eigenvector_similarity(a, c, 2).overlap.shape == (2, 2)


def test_spatial_eigenfilters_recover_planted_filters() -> None:
    rng = np.random.default_rng(9)
    k, co, ci = 3, 40, 30
    filters = frame(rng, k * k, 4)  # orthonormal planted filters f_j (columns)
    sig2 = np.array([5.0, 2.0, 1.0, 0.25])
    # coefficients with exactly orthogonal columns: FᵀF/N = f diag(σ²) fᵀ exactly
    N = co * ci
    A = frame(rng, N, 4) * np.sqrt(sig2 * N)
    W = (A @ filters.T).reshape(co, ci, k, k)
    lam, ef = spatial_eigenfilters(W)
    np.testing.assert_allclose(lam[:4], sig2, rtol=1e-12)
    np.testing.assert_allclose(lam[4:], 0.0, atol=1e-12)
    assert ef.shape == (9, 3, 3)
    for j in range(4):
        f = filters[:, j] * np.sign(filters[np.argmax(np.abs(filters[:, j])), j])
        np.testing.assert_allclose(ef[j].ravel(), f, atol=1e-10)
        assert ef[j].ravel()[np.argmax(np.abs(ef[j]))] > 0  # sign convention
    _, ef2 = spatial_eigenfilters(-W)  # sign convention does not follow the weights
    np.testing.assert_allclose(ef2, ef, atol=1e-10)
    with pytest.raises(ValueError, match="conv weight"):
        spatial_eigenfilters(W.reshape(co, -1))
    with pytest.raises(ValueError, match="all zeros"):
        spatial_eigenfilters(np.zeros((2, 2, 3, 3)))


def test_spatial_eigenfilters_tie_break_is_first_in_row_major_order() -> None:
    # a single antisymmetric filter [-1, 0, 1]: equal magnitudes, first entry made positive
    f = np.array([[0, 0, 0], [-1.0, 0, 1.0], [0, 0, 0]]) / math.sqrt(2)
    W = np.stack([np.stack([f, -f]), np.stack([-f, f])])  # (2, 2, 3, 3)
    lam, ef = spatial_eigenfilters(W)
    assert lam[0] == pytest.approx(1.0, rel=1e-14)
    np.testing.assert_allclose(ef[0], -f, atol=1e-14)


# -- the metrics -----------------------------------------------------------------------
def test_metric_metadata() -> None:
    for name in ("bures", "bures_cosine", "effective_rank", "eigenvector_overlap"):
        cls = type(simbench.get_metric(name))
        assert cls.consumes is simbench.Consumes.WEIGHTS
        assert cls.needs_alignment and cls.cost == "weights" and not cls.streaming
    inv = {
        n: simbench.get_metric(n).claimed_invariances()
        for n in ("bures", "bures_cosine", "effective_rank", "eigenvector_overlap")
    }
    assert inv == {
        "bures": frozenset(),
        "bures_cosine": frozenset(),
        "effective_rank": {Invariance.ORTHOGONAL, Invariance.PERMUTATION},
        "eigenvector_overlap": frozenset(),
    }
    assert simbench.get_metric("bures_cosine", shrinkage="none").claimed_invariances() == {
        Invariance.ISOTROPIC_SCALING
    }
    assert simbench.get_metric("bures", shrinkage="none").claimed_invariances() == frozenset()


def test_bures_metric_equals_the_function(planted) -> None:
    W1, W2 = planted["W1"], planted["W2"]
    m = simbench.get_metric("bures", draws=4, seed=5)
    sc = m.evaluate(W1, W2)
    C1, C2 = WeightCovariance.from_weight(W1), WeightCovariance.from_weight(W2)
    ref = normalized_bures(C1, C2, 4, 5)
    assert (sc.value, sc.stderr) == (ref.value, ref.stderr)
    assert sc.details["rank_x"] == C1.rank and sc.details["shrinkage"] == "gm"
    assert m.evaluate(C1, C2).value == sc.value  # WeightCovariance inputs
    assert m(W1, C2) == sc.value
    asym = simbench.get_metric("bures", draws=4, seed=5, symmetric=False)
    assert asym(W1, W2) == pytest.approx(normalized_bures(C1, C2, 4, 5, False).value, 1e-15)
    assert asym.symmetric is False


def test_metric_init_var_parameter(planted) -> None:
    W1, W2 = planted["W1"], planted["W2"]
    iv = 2.0 / (3 * W1.shape[1])
    got = simbench.get_metric("bures_cosine", init_var=iv)(W1, W2)
    ref = bures_cosine(
        WeightCovariance.from_weight(W1, init_var=iv), WeightCovariance.from_weight(W2, iv)
    )
    assert got == pytest.approx(ref, rel=1e-14)
    pair = simbench.get_metric("bures_cosine", init_var=(iv, 1.5 * iv))(W1, W2)
    ref = bures_cosine(
        WeightCovariance.from_weight(W1, init_var=iv), WeightCovariance.from_weight(W2, 1.5 * iv)
    )
    assert pair == pytest.approx(ref, rel=1e-14)
    for bad in (-1.0, 0.0, float("nan")):
        with pytest.raises(ValueError):
            simbench.get_metric("bures", init_var=bad)
    with pytest.raises(ValueError, match="Known shrinkages"):
        simbench.get_metric("bures", shrinkage="nope")
    with pytest.raises(ValueError, match="draws"):
        simbench.get_metric("bures", draws=1)


def test_metric_input_errors(planted) -> None:
    W1 = planted["W1"]
    m = simbench.get_metric("bures_cosine")
    with pytest.raises(ValueError, match="d_in 80 != 79"):
        m(W1, W1[:, :-1])
    with pytest.raises(ValueError, match="shrinkage='gm'"):
        m(WeightCovariance.from_weight(W1, shrinkage="none"), W1)
    with pytest.raises(ValueError, match=r"X: .*non-finite"):
        m(np.full_like(W1, np.nan), W1)
    with pytest.raises(ValueError, match=r"Y: .*all zeros"):
        m(W1, np.zeros_like(W1))
    with pytest.raises(TypeError):
        m(W1)


def test_effective_rank_metric_closed_form() -> None:
    a = WeightCovariance.from_matrix(np.diag([4.0, 0, 0, 0]), 20, shrinkage="none")
    b = WeightCovariance.from_matrix(np.diag([1.0, 1, 1, 1]), 20, shrinkage="none")
    sc = simbench.get_metric("effective_rank", shrinkage="none").evaluate(a, b)
    assert (sc.details["r_x"], sc.details["r_y"]) == (1.0, 2.5)
    assert sc.value == pytest.approx(1 / 2.5, rel=1e-15)


def test_eigenvector_overlap_metric(planted) -> None:
    W1, W3 = planted["W1"], planted["W3"]
    m = simbench.get_metric("eigenvector_overlap", k=3)
    assert m(W1, W1) == pytest.approx(1.0, abs=1e-12)
    sc = m.evaluate(W1, planted["W2"])
    assert sc.details["k"] == 3 and 0.8 < sc.value <= 1.0
    rotated = m.evaluate(W1, W3)
    # after a random rotation the overlaps are at chance level 1/√d, far below 5/√d
    assert rotated.value < rotated.details["significance"]


@pytest.mark.parametrize("name", ["bures_cosine", "effective_rank", "eigenvector_overlap"])
def test_scale_invariance_without_shrinkage_holds(planted, name: str) -> None:
    m = simbench.get_metric(name, shrinkage="none")
    W1, W2 = planted["W1"], planted["W2"]
    assert Invariance.ISOTROPIC_SCALING in m.claimed_invariances()
    for c in (0.05, 7.0):
        assert m(c * W1, W2) == pytest.approx(m(W1, W2), rel=1e-9)
    # with GM shrinkage the noise edge is fixed in init-variance units: scale matters
    g = simbench.get_metric(name, shrinkage="gm")
    assert Invariance.ISOTROPIC_SCALING not in g.claimed_invariances()


def test_bures_is_not_scale_invariant_even_without_shrinkage(planted) -> None:
    # u depends on the size of C relative to the identity added in the resampling
    m = simbench.get_metric("bures", shrinkage="none", draws=4)
    W1, W2 = planted["W1"], planted["W2"]
    assert abs(m(0.3 * W1, W2) - m(W1, W2)) > 1e-3
    g = simbench.get_metric("bures_cosine")
    assert abs(g(0.3 * W1, W2) - g(W1, W2)) > 1e-3


def test_orthogonal_input_map_changes_similarity_but_not_effective_rank(planted) -> None:
    W1, W2, W3 = planted["W1"], planted["W2"], planted["W3"]
    assert (
        simbench.get_metric("bures_cosine")(W1, W3)
        < simbench.get_metric("bures_cosine")(W1, W2) - 0.3
    )
    er = simbench.get_metric("effective_rank")
    assert er(W1, W3) == pytest.approx(er(W1, W2), rel=1e-10)


@pytest.mark.parametrize(("n1", "n2", "d"), [(300, 200, 40), (30, 25, 60), (300, 20, 40)])
def test_unshrunk_bures_cosine_factor_route_equals_eigen_route(n1, n2, d):
    # shrinkage="none" on arrays takes Cholesky/Wᵀ factors (no eigh): same value and ranks
    from simbench.numerics.covariance import WeightCovariance, bures_cosine

    rng = np.random.default_rng(n1 + d)
    mix = np.eye(d) + 0.3 * rng.normal(size=(d, d))
    A, B = rng.normal(size=(n1, d)) @ mix, rng.normal(size=(n2, d)) @ mix
    A_def = A.copy()
    A_def[:, 1] = A_def[:, 0]  # rank-deficient when n1 >= d: the eigen route is used
    for X in (A, A_def):
        got = simbench.get_metric("bures_cosine", shrinkage="none").evaluate(X, B)
        c1 = WeightCovariance.from_weight(X, shrinkage="none")
        c2 = WeightCovariance.from_weight(B, shrinkage="none")
        assert got.value == pytest.approx(bures_cosine(c1, c2), rel=1e-12)
        assert (got.details["rank_x"], got.details["rank_y"]) == (c1.rank, c2.rank)

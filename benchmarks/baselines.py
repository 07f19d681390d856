"""Straightforward reference implementations of every metric formula (MATH.md), for benchmarks.

Each function works on full arrays with the obvious numpy/scipy calls (QR, SVD,
``np.corrcoef``, ``scipy.linalg.sqrtm``...) and no cleverness: it is what a careful user
would write from the paper. The benchmarks time simbench next to these and next to the
GEMM floor, and assert that both agree to 1e-8 relative, so a benchmark run also checks
correctness. Parameters follow simbench's defaults; where simbench made a choice that
MATH.md leaves open (ridge scale, PWCCA's k paired variates, RSM kind, SRM init), the
same choice is restated here and cited.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.linalg
import scipy.stats
from scipy.optimize import linear_sum_assignment


# -- the floor ------------------------------------------------------------------------------
def gemm_floor(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``XᵀX``, ``YᵀY``, ``XᵀY``: the products every second-moment metric needs at least."""
    return X.T @ X, Y.T @ Y, X.T @ Y


def _centre(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0)


# -- CKA (Kornblith 2019) -------------------------------------------------------------------
def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """MATH.md: Linear CKA, ``||YᵀX||_F² / (||XᵀX||_F ||YᵀY||_F)`` on centred data."""
    Xc, Yc = _centre(X), _centre(Y)
    xy = np.linalg.norm(Yc.T @ Xc, "fro") ** 2
    return float(xy / (np.linalg.norm(Xc.T @ Xc, "fro") * np.linalg.norm(Yc.T @ Yc, "fro")))


def _rbf_gram(X: np.ndarray, ratio: float) -> np.ndarray:
    sq = np.sum(X * X, axis=1)
    D2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)
    np.fill_diagonal(D2, 0.0)
    sigma2 = ratio**2 * np.median(D2)  # full n×n matrix, diagonal included (Kornblith)
    return np.exp(-D2 / (2.0 * sigma2))


def rbf_cka(X: np.ndarray, Y: np.ndarray, ratio: float = 0.5) -> float:
    """MATH.md: RBF CKA, ``HSIC(K, L)/sqrt(HSIC(K, K) HSIC(L, L))`` with ``HSIC = tr(KHLH)``."""
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    K, L = _rbf_gram(_centre(X), ratio), _rbf_gram(_centre(Y), ratio)
    Kc, Lc = H @ K @ H, H @ L @ H
    return float(np.sum(Kc * Lc) / np.sqrt(np.sum(Kc * Kc) * np.sum(Lc * Lc)))


# -- CCA family -----------------------------------------------------------------------------
def _orthonormal_basis(Xc: np.ndarray, eps: float) -> np.ndarray:
    """``Q`` of the QR of the centred data; with a ridge ``ε > 0`` (simbench's choice,
    ``S + ε tr(S)/d I``) the QR of ``[Xc; sqrt(ε tr(S)/d) I]``, restricted to the data rows:
    then ``QᵀQ`` over those rows whitens with the ridged scatter."""
    if eps == 0:
        return np.linalg.qr(Xc)[0]
    d = Xc.shape[1]
    lam = eps * np.sum(Xc * Xc) / d
    Q = np.linalg.qr(np.vstack([Xc, math.sqrt(lam) * np.eye(d)]))[0]
    return Q[: Xc.shape[0]]


def canonical_correlations(X: np.ndarray, Y: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """MATH.md: CCA, singular values of ``QxᵀQy`` (``Q`` from QR of the centred matrices)."""
    Qx, Qy = _orthonormal_basis(_centre(X), eps), _orthonormal_basis(_centre(Y), eps)
    return np.linalg.svd(Qx.T @ Qy, compute_uv=False)


def mean_cca(X: np.ndarray, Y: np.ndarray, eps: float = 0.0) -> float:
    """MATH.md: Mean CCA ``Σρᵢ / min(d_x, d_y)``."""
    return float(canonical_correlations(X, Y, eps).sum() / min(X.shape[1], Y.shape[1]))


def _svd_reduce(X: np.ndarray, threshold: float) -> np.ndarray:
    """Top ``m'`` singular directions of centred ``X``: smallest ``m'`` with
    ``Σ_{i≤m'} sᵢ ≥ threshold Σ sᵢ`` (SVCCA paper, 0.99 of the singular-value sum)."""
    U, s, _ = np.linalg.svd(_centre(X), full_matrices=False)
    m = int(np.searchsorted(np.cumsum(s), threshold * s.sum())) + 1
    return U[:, :m] * s[:m]


def svcca(X: np.ndarray, Y: np.ndarray, threshold: float = 0.99) -> float:
    """MATH.md: SVCCA, CCA (via QR) of the reduced sides, ``Σρᵢ / min(m'_x, m'_y)``."""
    Xr, Yr = _svd_reduce(X, threshold), _svd_reduce(Y, threshold)
    return mean_cca(Xr, Yr)


def pwcca(X: np.ndarray, Y: np.ndarray, eps: float = 0.0) -> float:
    """MATH.md: PWCCA, ``Σ αᵢρᵢ`` with ``αᵢ ∝ Σⱼ |⟨hᵢ, xⱼ⟩|`` over the ``min(d_x, d_y)``
    paired canonical variates ``hᵢ = Qx uᵢ`` (simbench's choice of the k paired ones)."""
    Xc = _centre(X)
    Qx, Qy = _orthonormal_basis(Xc, eps), _orthonormal_basis(_centre(Y), eps)
    U, rho, _ = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    H = Qx @ U  # canonical variates of X (unit norm when eps = 0)
    alpha = np.abs(Xc.T @ H).sum(axis=0)
    alpha /= alpha.sum()
    return float(alpha @ rho)


# -- shape metrics (Williams 2021) ------------------------------------------------------------
def procrustes_distance(X: np.ndarray, Y: np.ndarray) -> float:
    """MATH.md: Procrustes shape distance, ``arccos(||XᵀY||_*)`` on centred, unit-norm X, Y."""
    Xc, Yc = _centre(X), _centre(Y)
    Xc /= np.linalg.norm(Xc)
    Yc /= np.linalg.norm(Yc)
    nuc = np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum()
    return float(np.arccos(min(nuc, 1.0)))


# -- RSA (Kriegeskorte 2008) ------------------------------------------------------------------
def rsa(X: np.ndarray, Y: np.ndarray, compare: str = "pearson") -> float:
    """MATH.md: RSA, correlation of the upper triangles of the two ``n×n`` RSMs.

    RSM = Pearson correlation between samples across features (``np.corrcoef`` of the
    rows; simbench's default ``rsm="correlation"``).
    """
    iu = np.triu_indices(X.shape[0], k=1)
    a, b = np.corrcoef(X)[iu], np.corrcoef(Y)[iu]
    if compare == "spearman":
        return float(scipy.stats.spearmanr(a, b)[0])
    return float(np.corrcoef(a, b)[0, 1])


# -- alignments ---------------------------------------------------------------------------------
def procrustes_alignment(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """MATH.md: procrustes, ``T = U Vᵀ`` with ``XcᵀYc = U Σ Vᵀ`` (centred, simbench's default)."""
    U, _, Vt = np.linalg.svd(_centre(X).T @ _centre(Y), full_matrices=False)
    return U @ Vt


def permutation_alignment(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """MATH.md: permutation maximising ``tr(Tᵀ XcᵀYc)`` (Hungarian)."""
    M = _centre(X).T @ _centre(Y)
    rows, cols = linear_sum_assignment(M, maximize=True)
    T = np.zeros(M.shape)
    T[rows, cols] = 1.0
    return T


def cca_alignment(X: np.ndarray, Y: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """MATH.md: cca, ``T = A_x diag(ρ) A_y⁺`` with unit-variance canonical weights."""
    Xc, Yc = _centre(X), _centre(Y)
    n = X.shape[0]
    if eps == 0:
        (Qx, Rx), (Qy, Ry) = np.linalg.qr(Xc), np.linalg.qr(Yc)
    else:
        Qx, Rx = _ridged_qr(Xc, eps)
        Qy, Ry = _ridged_qr(Yc, eps)
    U, rho, Vt = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    A_x = math.sqrt(n - 1) * np.linalg.solve(Rx, U)
    A_y = math.sqrt(n - 1) * np.linalg.solve(Ry, Vt.T)
    return (A_x * rho) @ np.linalg.pinv(A_y)


def _ridged_qr(Xc: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    d = Xc.shape[1]
    lam = eps * np.sum(Xc * Xc) / d
    Q, R = np.linalg.qr(np.vstack([Xc, math.sqrt(lam) * np.eye(d)]))
    return Q[: Xc.shape[0]], R


def svcca_alignment(X: np.ndarray, Y: np.ndarray, threshold: float = 0.99) -> np.ndarray:
    """MATH.md: svcca, the CCA map of the reduced sides, mapped back: ``A = V A'``."""
    Xc, Yc = _centre(X), _centre(Y)
    maps = []
    for Z in (Xc, Yc):
        _, s, Vt = np.linalg.svd(Z, full_matrices=False)
        m = int(np.searchsorted(np.cumsum(s), threshold * s.sum())) + 1
        maps.append(Vt[:m].T)
    Vx, Vy = maps
    n = X.shape[0]
    (Qx, Rx), (Qy, Ry) = np.linalg.qr(Xc @ Vx), np.linalg.qr(Yc @ Vy)
    U, rho, Wt = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    A_x = math.sqrt(n - 1) * Vx @ np.linalg.solve(Rx, U)
    A_y = math.sqrt(n - 1) * Vy @ np.linalg.solve(Ry, Wt.T)
    return (A_x * rho) @ np.linalg.pinv(A_y)


def _polar(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M, full_matrices=False)
    return U @ Vt


def srm_maps(
    Xs: list[np.ndarray], k: int | None = None, max_iter: int = 100, tol: float = 1e-10
) -> list[np.ndarray]:
    """MATH.md: srm, deterministic SRM by alternation on the (centred) arrays themselves.

    ``S = (1/N) Σ Xᵢ Wᵢ``, ``Wᵢ = polar(XᵢᵀS)`` until one update lowers
    ``Σ ||Xᵢ − S Wᵢᵀ||²`` by at most ``tol · Σ ||Xᵢ||²``. Initialisation as simbench's
    default (MATH.md is silent): ``Wᵢ = polar(Vᵢ)`` with ``V`` the top-``k`` principal axes
    of the concatenated data, taken here from an SVD of the data.
    """
    Xs = [_centre(X) for X in Xs]
    N = len(Xs)
    k = min(X.shape[1] for X in Xs) if k is None else k
    _, _, Vt = np.linalg.svd(np.hstack(Xs), full_matrices=False)
    V = Vt[:k].T
    edges = np.cumsum([0] + [X.shape[1] for X in Xs])
    W = [_polar(V[a:b]) for a, b in itertools.pairwise(edges)]
    total = sum(float(np.sum(X * X)) for X in Xs)

    def objective(W: list[np.ndarray]) -> float:
        S = sum(X @ Wi for X, Wi in zip(Xs, W, strict=True)) / N
        return sum(float(np.sum((X - S @ Wi.T) ** 2)) for X, Wi in zip(Xs, W, strict=True))

    f = objective(W)
    for _ in range(max_iter):
        S = sum(X @ Wi for X, Wi in zip(Xs, W, strict=True)) / N
        W_new = [_polar(X.T @ S) for X in Xs]
        f_new = objective(W_new)
        if f_new > f:
            break
        W, f, decrease = W_new, f_new, f - f_new
        if decrease <= tol * total:
            break
    return W


def srm_alignment(X: np.ndarray, Y: np.ndarray, **kw) -> np.ndarray:
    """MATH.md: srm, pairwise map ``T = W_X W_Yᵀ``."""
    Wx, Wy = srm_maps([X, Y], **kw)
    return Wx @ Wy.T


def srm_variance_explained(
    X: np.ndarray, Y: np.ndarray, test_fraction: float = 0.5, seed: int = 0, **srm_kw
) -> float:
    """MATH.md: SRM fit quality, held-out ``1 − Σᵢ||Xᵢ − S Wᵢᵀ||² / Σᵢ||Xᵢ||²``.

    Split as simbench's ``split_indices`` (its documented rule): the first
    ``round(test_fraction·n)`` entries of ``default_rng(seed).permutation(n)`` are held
    out. SRM is fitted on the rest; on the held-out part (centred by its own mean) the
    shared response is re-estimated, ``S = (1/N) Σ Xᵢ Wᵢ``.
    """
    n = X.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(round(test_fraction * n), 3), n - 2)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    W = srm_maps([X[train], Y[train]], **srm_kw)
    Xt = [_centre(X[test]), _centre(Y[test])]
    S = sum(Z @ Wi for Z, Wi in zip(Xt, W, strict=True)) / 2
    resid = sum(float(np.sum((Z - S @ Wi.T) ** 2)) for Z, Wi in zip(Xt, W, strict=True))
    return 1.0 - resid / sum(float(np.sum(Z * Z)) for Z in Xt)


# -- weight covariances (Guth & Ménard 2024) -------------------------------------------------------
def pytorch_init_variance(d_in: int) -> float:
    """``1/(3 d_in)``: PyTorch's default kaiming_uniform(a=√5) (MATH.md: Normalised covariance)."""
    return 1.0 / (3.0 * d_in)


def gm_shrink(lam: np.ndarray, gamma: float) -> np.ndarray:
    """GM eq. 3: ``(λ−1−γ)/2 + sqrt(((λ+1−γ)/2)² − λ)`` above ``(1+√γ)²``, else 0."""
    out = np.zeros_like(lam)
    big = lam > (1.0 + math.sqrt(gamma)) ** 2
    lb = lam[big]
    out[big] = (lb - 1 - gamma) / 2 + np.sqrt(np.maximum(((lb + 1 - gamma) / 2) ** 2 - lb, 0.0))
    return out


def shrunk_eig(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrunk eigenvalues (descending) and eigenvectors of ``C = WᵀW/(n_out σ²)``, dense eigh."""
    n_out, d_in = W.shape
    C = W.T @ W / (n_out * pytorch_init_variance(d_in))
    lam, V = np.linalg.eigh(C)
    return gm_shrink(lam[::-1], d_in / n_out), V[:, ::-1]


def dense_root(W: np.ndarray, method: str = "eigh") -> tuple[np.ndarray, float]:
    """The ``d×d`` square root of the shrunk covariance and its trace.

    ``method="sqrtm"`` forms the shrunk ``C`` and calls ``scipy.linalg.sqrtm`` (Schur
    method; the real part, as ``C`` is singular); ``"eigh"`` builds ``V diag(√s) Vᵀ``.
    """
    s, V = shrunk_eig(W)
    if method == "sqrtm":
        C = (V * s) @ V.T
        root = scipy.linalg.sqrtm(C)
        return np.real(root), float(s.sum())
    return (V * np.sqrt(s)) @ V.T, float(s.sum())


def bures_cosine(W1: np.ndarray, W2: np.ndarray, method: str = "eigh") -> float:
    """GM eq. 5 the direct way: ``||C1^½ C2^½||_* / sqrt(tr C1 tr C2)`` with d×d roots."""
    (R1, t1), (R2, t2) = dense_root(W1, method), dense_root(W2, method)
    return float(np.linalg.svd(R1 @ R2, compute_uv=False).sum() / math.sqrt(t1 * t2))


def effective_rank_ratio(W1: np.ndarray, W2: np.ndarray) -> float:
    """GM eq. 4 for each side, ``r = Σ k λ_k / Σ λ_k``; the metric is ``min(r)/max(r)``."""
    r = []
    for W in (W1, W2):
        s = shrunk_eig(W)[0]
        r.append(float(np.arange(1, s.size + 1) @ s / s.sum()))
    return min(r) / max(r)


def eigenvector_overlap(W1: np.ndarray, W2: np.ndarray) -> float:
    """GM Fig. 3: mean ``|v1ᵢᵀ v2ᵢ|`` over the leading ``min(r1, r2)`` kept eigenvectors."""
    (s1, V1), (s2, V2) = shrunk_eig(W1), shrunk_eig(W2)
    k = min(int(np.count_nonzero(s1)), int(np.count_nonzero(s2)))
    return float(np.mean(np.abs(np.sum(V1[:, :k] * V2[:, :k], axis=0))))


def normalized_bures(cos: float, z: tuple[float, float], u: tuple[float, float]) -> float:
    """GM eq. 6 symmetrised: ``(S(C1,C2) + S(C2,C1))/2`` with ``S = (cos − z̄)/(ū − z̄)``,
    given each reference's Monte-Carlo means ``z̄ = (z̄_1, z̄_2)``, ``ū = (ū_1, ū_2)``."""
    return float(np.mean([(cos - zi) / (ui - zi) for zi, ui in zip(z, u, strict=True)]))

"""Canonical correlation kernels shared by the CCA metrics and alignments (MATH.md: CCA, SVCCA).

Everything here works on second moments (a paired :class:`Moments`), so every CCA
variant streams: memory is ``O(d²)`` whatever the number of samples.

**Whitening.** With the centred scatter ``S = XcᵀXc = L Lᵀ`` (Cholesky), ``Xc L⁻ᵀ`` has
orthonormal columns spanning the same subspace as ``Q`` in ``Xc = Q R``, so the singular
values of ``K = Lx⁻¹ Sxy Ly⁻ᵀ`` are exactly MATH.md's singular values of ``QxᵀQy``.
After an SVCCA reduction the scatter is diagonal (its eigenvalues) and whitening is a
scaling.

**Singular values.** ``K``'s singular values are taken as the square roots of the
eigenvalues of the smaller Gram matrix ``K Kᵀ`` or ``Kᵀ K`` (half the cost of an SVD);
squaring loses absolute accuracy only for correlations near zero, so when any squared
correlation is below ``_TINY_RHO2`` (``ρ < 1e-6``) the SVD of ``K`` is used instead.

**Ridge** (MATH.md: "a ridge ε for rank-deficient inputs"). Choice made here, as MATH.md
does not fix the scale: ``ε`` is relative to the mean variance, ``S ↦ S + ε·(tr S / d)·I``,
so the result does not depend on the units of the data (isotropic scaling invariance is
kept; invariance to general invertible maps is lost for ``ε > 0``). With ``ε = 0`` a
rank-deficient side (``n ≤ d``, a constant column, a column that is a linear combination of
others) raises ``ValueError``.

**Accuracy.** Like every moment-based method, the relative error is about
``ε_machine·κ(Xc)²`` (Gram matrices square the condition number), against
``ε_machine·κ(Xc)`` for MATH.md's QR route on the full data.

**Normalisation.** Canonical weights ``A`` give canonical variates ``Xc A`` of unit sample
variance (``ddof = 1``: ``Aᵀ (Sxx / (n − 1)) A = I``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg

from simbench.numerics.moments import Moments

_EPS = float(np.finfo(np.float64).eps)
#: a side's covariance is numerically singular when a relative pivot or eigenvalue falls
#: below ``_RANK_FACTOR · d · machine-ε`` (the rounding floor of a Gram-based quantity)
_RANK_FACTOR = 100.0
#: below this squared correlation, singular values come from an SVD, not the Gram matrix
_TINY_RHO2 = 1e-12
#: cumulative sums within this fraction of the total count as reaching the threshold
_KEEP_RTOL = 1e-10

Rule = Literal["sum", "variance"]


# -- ridge and whitening ----------------------------------------------------------------


def check_eps(eps: float) -> None:
    """``ValueError`` unless the ridge ``eps`` (relative to the mean variance) is >= 0."""
    if not eps >= 0:
        raise ValueError(f"eps (ridge, relative to the mean variance) must be >= 0; got {eps}")


def check_threshold(threshold: float | None) -> None:
    """``ValueError`` unless the SVCCA ``threshold`` is ``None`` or in ``(0, 1]``."""
    if threshold is not None and not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")


def ridge(S: np.ndarray, eps: float) -> np.ndarray:
    """``S + ε·(tr S / d)·I`` (a new array), or ``S`` itself when ``ε = 0``.

    ``S`` is a symmetric (or Hermitian) ``d×d`` scatter, or a 1-D vector of the
    eigenvalues of a diagonal one.
    """
    if eps < 0:
        raise ValueError(f"the ridge eps must be >= 0; got {eps}")
    if eps == 0:
        return S
    if S.ndim == 1:
        return S + eps * float(S.mean())
    out = S.copy()
    out[np.diag_indices_from(out)] += eps * float(np.trace(S).real) / S.shape[0]
    return out


def _rank_tol(d: int) -> float:
    return _RANK_FACTOR * max(d, 1) * _EPS


def _singular_error(name: str, what: str) -> ValueError:
    return ValueError(
        f"{name}'s centred covariance is singular ({what}), so canonical correlations are "
        f"undefined without a ridge: pass eps > 0 (e.g. eps=1e-6, a ridge relative to the "
        f"mean variance), or use svcca, which first drops {name}'s null directions."
    )


def cholesky_factor(
    S: np.ndarray, eps: float, *, n: int, name: str = "X", mean: np.ndarray | None = None
) -> np.ndarray:
    """Lower Cholesky factor ``L`` of the (ridged) centred scatter ``S`` (``S + ridge = L Lᵀ``).

    With ``eps = 0`` raises ``ValueError`` when ``S`` is numerically singular: ``n ≤ d``
    (centred rank at most ``n − 1``), constant columns (variance at rounding level of the
    squared mean, given ``mean``), or a column whose relative Cholesky pivot (its squared
    sine to the span of the earlier columns) is at the rounding floor.
    """
    d = S.shape[0]
    tr = float(np.trace(S))
    if not tr > 0:
        raise ValueError(
            f"{name} has zero variance in every column (constant), so no correlation is defined."
        )
    diag = np.diag(S).copy()
    if eps == 0:
        if n - 1 < d:
            raise _singular_error(
                name,
                f"n={n} samples, d={d} features: after centring the rank is at most "
                f"n-1={n - 1} < d",
            )
        scale = n * (mean**2) if mean is not None else np.zeros(d)
        const = np.flatnonzero(diag <= 1e3 * _EPS * np.maximum(scale, 0.0))
        if const.size:
            cols = ", ".join(map(str, const[:5])) + (", ..." if const.size > 5 else "")
            raise _singular_error(name, f"{const.size} constant column(s): {cols}")
    Sr = ridge(S, eps)
    try:
        L = scipy.linalg.cholesky(Sr, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        if eps == 0:
            raise _singular_error(name, "it is not positive definite") from None
        raise ValueError(
            f"{name}'s ridged covariance is not positive definite; eps={eps} is too small "
            "to regularise it: increase eps."
        ) from None
    if eps == 0:
        rel = np.diag(L) ** 2 / np.diag(Sr)
        bad = np.flatnonzero(rel <= _rank_tol(d))
        if bad.size:
            raise _singular_error(
                name,
                f"column {bad[0]} is (numerically) a linear combination of columns "
                f"before it; relative pivot {rel[bad[0]]:.1e}",
            )
    return L


def _inv(L: np.ndarray, M: np.ndarray, trans: bool = False) -> np.ndarray:
    """``L⁻¹ M`` (or ``L⁻ᵀ M``) for a lower-triangular ``L`` or a diagonal given as 1-D."""
    if L.ndim == 1:
        return M / L[:, None]
    return scipy.linalg.solve_triangular(
        L, M, lower=True, trans="T" if trans else "N", check_finite=False
    )


def _whitened_cross(Lx: np.ndarray, Ly: np.ndarray, Sxy: np.ndarray) -> np.ndarray:
    """``K = Lx⁻¹ Sxy Ly⁻ᵀ``; its singular values are the canonical correlations."""
    if Lx.ndim == 2 and Ly.ndim == 2:  # two BLAS triangular solves, no transposed copies
        A = scipy.linalg.blas.dtrsm(1.0, Lx, Sxy, lower=1)
        return scipy.linalg.blas.dtrsm(1.0, Ly, A, side=1, lower=1, trans_a=1)
    return _inv(Ly, _inv(Lx, Sxy).T).T


# -- singular values / vectors ------------------------------------------------------------
def _svd(K: np.ndarray, compute_uv: bool):
    try:
        return np.linalg.svd(K, full_matrices=False, compute_uv=compute_uv)
    except np.linalg.LinAlgError:  # gesdd did not converge: the slower, robust gesvd
        return scipy.linalg.svd(
            K, full_matrices=False, compute_uv=compute_uv, lapack_driver="gesvd"
        )


def singular_values(K: np.ndarray) -> np.ndarray:
    """Singular values of ``K``, descending (via the smaller Gram matrix; see module doc)."""
    G = K @ K.T if K.shape[0] <= K.shape[1] else K.T @ K
    lam = scipy.linalg.eigvalsh(G, check_finite=False)[::-1]
    if lam.size == 0 or lam[-1] < _TINY_RHO2:
        return _svd(K, compute_uv=False)
    return np.sqrt(lam)


def left_singular(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (descending) and left singular vectors ``(d_x, k)`` of ``K``."""
    k = min(K.shape)
    if K.shape[0] <= K.shape[1]:
        lam, U = np.linalg.eigh(K @ K.T)
        lam, U = lam[::-1], U[:, ::-1]
        if lam[k - 1] >= _TINY_RHO2:
            return np.sqrt(lam[:k]), np.ascontiguousarray(U[:, :k])
    U, s, _ = _svd(K, compute_uv=True)
    return s, U


# -- CCA -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CCAResult:
    """Canonical correlations ``rho`` (descending, ``k = min(d_x, d_y)``) and weights.

    ``A_x`` ``(d_x, k)`` and ``A_y`` ``(d_y, k)``: canonical variates ``Xc A_x`` and
    ``Yc A_y`` have unit sample variance (``ddof = 1``) and ``corr = rho`` pairwise.
    Weights are ``None`` when not requested.
    """

    rho: np.ndarray
    A_x: np.ndarray | None = None
    A_y: np.ndarray | None = None


def _factors(m: Moments, eps: float) -> tuple[np.ndarray, np.ndarray]:
    if not m.paired:
        raise ValueError("CCA needs paired moments: accumulate (X, Y) batches")
    Lx = cholesky_factor(m.sxx, eps, n=m.n, name="X", mean=m.mean_x)
    Ly = cholesky_factor(m.syy, eps, n=m.n, name="Y", mean=m.mean_y)
    return Lx, Ly


def canonical_correlations(m: Moments, eps: float = 0.0) -> np.ndarray:
    """Canonical correlations (MATH.md: CCA) from paired moments, descending."""
    Lx, Ly = _factors(m, eps)
    return np.minimum(singular_values(_whitened_cross(Lx, Ly, m.sxy)), 1.0)


def _cca_weights(Lx, Ly, Sxy, n: int) -> CCAResult:
    K = _whitened_cross(Lx, Ly, Sxy)
    U, rho, Vt = _svd(K, compute_uv=True)
    c = np.sqrt(n - 1.0)
    return CCAResult(np.minimum(rho, 1.0), c * _inv(Lx, U, trans=True), c * _inv(Ly, Vt.T, True))


def cca(m: Moments, eps: float = 0.0) -> CCAResult:
    """Canonical correlations and weights of both sides (MATH.md: CCA)."""
    Lx, Ly = _factors(m, eps)
    return _cca_weights(Lx, Ly, m.sxy, m.n)


def transfer_map(r: CCAResult) -> np.ndarray:
    """``T = A_x diag(ρ) A_y⁺`` (MATH.md: Alignments, cca), shape ``(d_x, d_y)``.

    ``A_y`` has full column rank, so ``A_y⁺ = R⁻¹ Qᵀ`` from its thin QR. When
    ``d_y ≤ d_x`` (and ``ε = 0``) this is the least-squares regression ``Sxx⁻¹ Sxy``.
    """
    if r.A_x is None or r.A_y is None:
        raise ValueError("transfer_map needs the canonical weights of both sides")
    Q, R = np.linalg.qr(r.A_y)
    pinv = scipy.linalg.solve_triangular(R, Q.T, lower=False, check_finite=False)
    return (r.A_x * r.rho) @ pinv


def pwcca(m: Moments, eps: float = 0.0) -> tuple[float, np.ndarray, np.ndarray]:
    """PWCCA (MATH.md, Morcos et al. 2018): ``Σ αᵢ ρᵢ`` with ``αᵢ ∝ Σⱼ |⟨hᵢ, xⱼ⟩|``.

    ``hᵢ = Xc aᵢ`` is X's i-th canonical variate (unit norm) and ``xⱼ`` X's j-th centred
    column, so ``⟨hᵢ, xⱼ⟩ = (Sxx aᵢ)ⱼ``; with ``aᵢ = Lx⁻ᵀuᵢ`` (``uᵢ`` the left singular
    vectors of ``K``) this is ``(Lx U)ⱼᵢ`` when ``ε = 0``. Only the ``k = min(d_x, d_y)``
    paired variates carry a correlation, so the sum and the normalisation of ``α`` run
    over those ``k`` (choice: the extra ``d_x − k`` directions of a wider X have no
    canonical partner and are not unique). Returns ``(value, alpha, rho)``.
    """
    Lx, Ly = _factors(m, eps)
    K = _whitened_cross(Lx, Ly, m.sxy)
    rho, U = left_singular(K)
    rho = np.minimum(rho, 1.0)
    if eps == 0:
        proj = scipy.linalg.blas.dtrmm(1.0, Lx, U, lower=1)  # Lx U = Sxx A_x
    else:
        proj = m.sxx @ _inv(Lx, U, trans=True)
    w = np.abs(proj).sum(axis=0)
    alpha = w / w.sum()
    return float(alpha @ rho), alpha, rho


# -- SVCCA reduction -------------------------------------------------------------------------
def keep_count(eigenvalues: np.ndarray, threshold: float = 0.99, rule: Rule = "sum") -> int:
    """SVCCA's ``m'`` (MATH.md: SVCCA) from the scatter's eigenvalues, sorted descending.

    ``m'`` is the smallest count with ``Σ_{i≤m'} sᵢ ≥ threshold · Σ sᵢ`` where
    ``s = √λ`` (``rule="sum"``, singular values of the centred data) or ``s = λ``
    (``rule="variance"``). Sums within ``1e-10`` of the total count as reaching the
    threshold, so rounding in ``λ`` cannot move ``m'``.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    if rule not in ("sum", "variance"):
        raise ValueError(f"rule must be 'sum' or 'variance'; got {rule!r}")
    lam = np.maximum(np.asarray(eigenvalues, dtype=np.float64), 0.0)
    s = np.sqrt(lam) if rule == "sum" else lam
    total = float(s.sum())
    if not total > 0:
        raise ValueError("the representation has zero variance: SVCCA keeps no direction")
    c = np.cumsum(s)
    m = int(np.searchsorted(c, threshold * total - _KEEP_RTOL * total, side="left")) + 1
    m = min(m, int(np.count_nonzero(s)))
    return max(m, 1)


@dataclass(frozen=True)
class SVReduction:
    """SVCCA's step 1 on one side: the top ``m'`` singular directions of the centred data.

    ``basis`` ``(d, m')`` are orthonormal eigenvectors of the scatter (right singular
    vectors of ``Xc``), ``variances`` ``(m',)`` their eigenvalues (squared singular
    values), ``spectrum`` ``(d,)`` all eigenvalues, descending, null ones set to 0.
    """

    basis: np.ndarray
    variances: np.ndarray
    spectrum: np.ndarray

    @property
    def m(self) -> int:
        return int(self.variances.shape[0])


def sv_reduction(S: np.ndarray, threshold: float = 0.99, rule: Rule = "sum") -> SVReduction:
    """Top singular directions of a centred side from its scatter ``S`` (``eigh``).

    Eigenvalues below ``100·d·ε_machine·λ_max`` are rounding noise of a null direction
    (constant columns, ``n ≤ d``, collinear columns) and are set to 0, so they are never
    kept.
    """
    lam, V = scipy.linalg.eigh(S, check_finite=False, driver="evd")
    lam, V = lam[::-1].copy(), V[:, ::-1]
    if lam.size and lam[0] > 0:
        lam[lam <= _rank_tol(S.shape[0]) * lam[0]] = 0.0
    m = keep_count(lam, threshold, rule)
    return SVReduction(np.ascontiguousarray(V[:, :m]), lam[:m], lam)


@dataclass(frozen=True)
class SVCCAResult:
    """SVCCA: correlations of the reduced sides, ``m'`` per side, weights in the ORIGINAL bases.

    ``rho`` has ``min(m_x, m_y)`` entries; ``A_x`` ``(d_x, k)``, ``A_y`` ``(d_y, k)``
    (``None`` unless requested) give unit-variance canonical variates ``Xc A_x``.
    """

    rho: np.ndarray
    m_x: int
    m_y: int
    A_x: np.ndarray | None = None
    A_y: np.ndarray | None = None

    @property
    def value(self) -> float:
        """Mean SVCCA correlation ``Σρᵢ / min(m'_x, m'_y)``."""
        return float(self.rho.sum()) / min(self.m_x, self.m_y)


def svcca(
    m: Moments,
    threshold: float = 0.99,
    rule: Rule = "sum",
    eps: float = 0.0,
    weights: bool = False,
) -> SVCCAResult:
    """SVCCA (MATH.md: SVCCA) from paired moments.

    Each side is reduced to its top ``m'`` eigen-directions ``V`` (:func:`sv_reduction`);
    the reduced moments are ``Sxx' = diag(λ_kept)``, ``Sxy' = Vxᵀ Sxy Vy``, and CCA runs
    on them (with the ridge ``ε`` on the reduced covariances). Weights, when requested,
    are mapped back to the original bases: ``A_x = Vx A'_x``.
    """
    if not m.paired:
        raise ValueError("SVCCA needs paired moments: accumulate (X, Y) batches")
    rx = sv_reduction(m.sxx, threshold, rule)
    ry = sv_reduction(m.syy, threshold, rule)
    Sxy = rx.basis.T @ m.sxy @ ry.basis
    Lx = np.sqrt(ridge(rx.variances, eps))
    Ly = np.sqrt(ridge(ry.variances, eps))
    if not weights:
        K = _whitened_cross(Lx, Ly, Sxy)
        rho = np.minimum(singular_values(K), 1.0)
        return SVCCAResult(rho, rx.m, ry.m)
    r = _cca_weights(Lx, Ly, Sxy, m.n)
    return SVCCAResult(r.rho, rx.m, ry.m, rx.basis @ r.A_x, ry.basis @ r.A_y)


# -- DFT SVCCA for convolutional activations ------------------------------------------------
@dataclass(frozen=True)
class SpectralMoments:
    """Per-frequency centred scatter of 2-D-DFT'd conv activations (SVCCA section 3.1).

    Frequencies are those of ``numpy.fft.rfft2`` over ``(H, W)`` (``F = H·(W//2+1)``);
    ``mult`` is 2 for a frequency whose conjugate partner is not stored, else 1, so every
    sum over frequencies weighted by ``mult`` runs over all ``H·W`` of them. ``sxx``
    ``(F, Cx, Cx)``, ``syy``, ``sxy`` ``(F, Cx, Cy)`` are Hermitian ``ZᴴZ`` blocks of the
    orthonormal DFT coefficients, centred over the ``n`` samples.
    """

    n: int
    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray
    mult: np.ndarray
    shape: tuple[int, int]


def _rfft_mult(H: int, W: int) -> np.ndarray:
    v = np.arange(W // 2 + 1)
    self_conj = (v == 0) | (2 * v == W)
    return np.tile(np.where(self_conj, 1, 2), H)  # frequency index f = u * (W//2+1) + v


def spectral_moments(X: np.ndarray, Y: np.ndarray, batch_size: int = 0) -> SpectralMoments:
    """Accumulate :class:`SpectralMoments` of ``(B, C, H, W)`` arrays in batches of rows.

    Batches are merged with Chan et al.'s update (as :class:`Moments`), so memory is that
    of one batch's DFT plus ``F·(Cx² + Cy² + Cx·Cy)`` complex numbers.
    """
    B, Cx, H, W = X.shape
    Cy = Y.shape[1]
    F = H * (W // 2 + 1)
    if batch_size <= 0:  # ~32 MiB of complex coefficients per side per batch
        batch_size = max(1, (1 << 21) // max(1, max(Cx, Cy) * F))
    n = 0
    acc: list[np.ndarray] = []
    mean_x = mean_y = None
    for start in range(0, B, batch_size):
        Zx = _dft_rows(X[start : start + batch_size], F)  # (F, b, Cx)
        Zy = _dft_rows(Y[start : start + batch_size], F)
        nb = Zx.shape[1]
        mx, my = Zx.mean(axis=1), Zy.mean(axis=1)  # (F, C)
        Zx -= mx[:, None, :]
        Zy -= my[:, None, :]
        Zxh = Zx.conj().transpose(0, 2, 1)
        blocks = [Zxh @ Zx, Zy.conj().transpose(0, 2, 1) @ Zy, Zxh @ Zy]
        if n == 0:
            acc, mean_x, mean_y = blocks, mx, my
        else:
            tot = n + nb
            f = n * nb / tot
            dx, dy = mx - mean_x, my - mean_y
            acc[0] += blocks[0] + f * dx.conj()[:, :, None] * dx[:, None, :]
            acc[1] += blocks[1] + f * dy.conj()[:, :, None] * dy[:, None, :]
            acc[2] += blocks[2] + f * dx.conj()[:, :, None] * dy[:, None, :]
            mean_x = mean_x + dx * (nb / tot)
            mean_y = mean_y + dy * (nb / tot)
        n += nb
    return SpectralMoments(n, acc[0], acc[1], acc[2], _rfft_mult(H, W), (H, W))


def _dft_rows(A: np.ndarray, F: int) -> np.ndarray:
    """``(b, C, H, W)`` -> orthonormal rfft2 coefficients laid out ``(F, b, C)``."""
    b, C = A.shape[:2]
    Z = np.fft.rfft2(A, norm="ortho").reshape(b, C, F)
    return np.ascontiguousarray(Z.transpose(2, 0, 1))


@dataclass(frozen=True)
class DFTResult:
    """Per-frequency SVCCA (SVCCA section 3.1) pooled over all ``H·W`` frequencies.

    ``rho`` holds every frequency's correlations, each conjugate pair counted twice,
    sorted descending; ``m_x``, ``m_y`` are the pooled kept counts (``C·H·W`` without
    reduction); ``value = Σρ / min(m_x, m_y)``.
    """

    rho: np.ndarray
    m_x: int
    m_y: int

    @property
    def value(self) -> float:
        return float(self.rho.sum()) / min(self.m_x, self.m_y)


def _pooled_keep(lam: np.ndarray, mult: np.ndarray, threshold: float, rule: Rule) -> np.ndarray:
    """Mask ``(F, C)`` of the directions kept by SVCCA's rule over the pooled spectrum.

    The pooled spectrum lists every frequency's eigenvalues ``mult`` times (that of the
    flattened ``(B, C·H·W)`` data under translation invariance). A conjugate pair is kept
    or dropped whole: if ``m'`` falls between its two copies, both are kept.
    """
    flat = lam.ravel()
    w = np.repeat(mult, lam.shape[1]).astype(np.float64)
    order = np.argsort(-flat, kind="stable")
    s = np.sqrt(flat[order]) if rule == "sum" else flat[order]
    c = np.cumsum(s * w[order])
    total = float(c[-1]) if c.size else 0.0
    if not total > 0:
        raise ValueError("the representation has zero variance: SVCCA keeps no direction")
    last = int(np.searchsorted(c, threshold * total - _KEEP_RTOL * total, side="left"))
    last = min(last, int(np.count_nonzero(s)) - 1)
    keep = np.zeros(flat.size, dtype=bool)
    keep[order[: last + 1]] = True
    return keep.reshape(lam.shape)


def dft_svcca(
    sm: SpectralMoments,
    threshold: float | None = 0.99,
    rule: Rule = "sum",
    eps: float = 0.0,
) -> DFTResult:
    """SVCCA on DFT'd conv activations, one ``C×C`` Hermitian block per frequency.

    Under translation invariance the covariance of the DFT coefficients is
    block-diagonal by frequency (SVCCA Theorem 1) and the DFT is unitary, so the
    flattened ``(B, C·H·W)`` problem splits exactly: its eigenvalues are the union of the
    blocks' (the SVD step applies ``threshold`` to this pooled spectrum) and its canonical
    correlations are the union of the blocks' (each block whitened by its kept
    eigen-directions). ``threshold=None`` keeps every direction (plain mean CCA). The
    ridge ``ε`` is relative to the pooled mean variance, as for the flattened data.
    """
    mult = sm.mult
    Cx, Cy = sm.sxx.shape[1], sm.syy.shape[1]
    HW = int(mult.sum())
    tr_x = float((np.einsum("fii->f", sm.sxx).real * mult).sum())
    tr_y = float((np.einsum("fii->f", sm.syy).real * mult).sum())
    if not (tr_x > 0 and tr_y > 0):
        which = "X" if not tr_x > 0 else "Y"
        raise ValueError(f"{which} has zero variance (constant), so no correlation is defined.")
    lam_x, Vx = np.linalg.eigh(sm.sxx)
    lam_y, Vy = np.linalg.eigh(sm.syy)
    scales = []
    counts = []
    for lam, name, C in ((lam_x, "X", Cx), (lam_y, "Y", Cy)):
        floor = _rank_tol(C * HW) * float(lam.max())
        if threshold is None:
            if eps == 0 and float(lam.min()) <= floor:
                if sm.n - 1 < C:
                    what = f"n={sm.n} samples for C={C} channels per frequency block"
                else:
                    what = "a frequency block is singular"
                raise _singular_error(name, what)
            keep = np.ones(lam.shape, dtype=bool)
        else:
            lam = np.where(lam <= floor, 0.0, lam)
            keep = _pooled_keep(lam, mult, threshold, rule)
        kept_mean = float((lam * keep * mult[:, None]).sum()) / int((keep * mult[:, None]).sum())
        lam_r = lam + eps * kept_mean
        if np.any(lam_r[keep] <= 0):
            raise ValueError(f"{name}: eps={eps} is too small to regularise it; increase eps.")
        scale = np.where(keep, 1.0 / np.sqrt(np.where(keep, lam_r, 1.0)), 0.0)
        scales.append(scale)
        counts.append(int((keep * mult[:, None]).sum()))
    Wx = Vx * scales[0][:, None, :]
    Wy = Vy * scales[1][:, None, :]
    K = Wx.conj().transpose(0, 2, 1) @ sm.sxy @ Wy  # (F, Cx, Cy)
    rho = np.minimum(np.linalg.svd(K, compute_uv=False), 1.0)  # (F, min(Cx, Cy))
    rho = np.sort(np.repeat(rho.ravel(), np.repeat(mult, rho.shape[1])))[::-1]
    k = min(counts)
    return DFTResult(rho[:k], counts[0], counts[1])

"""Neighbourhood metrics: how far the k-nearest-neighbour sets of the samples agree.

Each sample ``i`` (a row of ``X`` and of ``Y``) has a kNN set ``N_X(i)`` of ``k`` other
samples in each representation (``simbench.numerics.knn``: exact, in row blocks of
``block_size`` rows, so memory is ``O(n·k + block_size·n)`` floats; ties by ascending
sample index, deterministic). The metrics compare ``N_X(i)`` with ``N_Y(i)``:

- ``mutual_knn`` — Huh et al. 2024 (platonic-rep ``AlignmentMetrics.mutual_knn``):
  ``mean_i |N_X(i) ∩ N_Y(i)| / k``.
- ``cknna`` — Huh et al. 2024 (platonic-rep ``AlignmentMetrics.cknna``): CKA whose
  kernels keep only the entries of mutual neighbours.
- ``jaccard_knn`` — ReSi (Klabunde et al. 2024, ``repsim.measures.nearest_neighbor``
  ``jaccard_similarity``): ``mean_i |N_X(i) ∩ N_Y(i)| / |N_X(i) ∪ N_Y(i)|``.
- ``rank_similarity`` — Wang et al. 2020 as in ReSi ``rank_similarity``.
- ``second_order_cosine`` — Hamilton et al. 2016 as in ReSi
  ``second_order_cosine_similarity``.

Conventions (sources: platonic-rep ``metrics.py``/``measure_alignment.py``, ReSi
``nearest_neighbor.py``): the sample itself is never its own neighbour; ``distance``
``"cosine"`` (default of both projects: platonic-rep L2-normalises the rows and ranks by
inner product, ReSi uses scikit-learn's cosine distance — the same ranking). Cosine
rankings are invariant to rotations and rescaling of the feature axis, not to
translation; ``"euclidean"`` rankings are also translation invariant. None is
invariant to a general invertible linear map. Not streaming: the kNN sets need all
samples.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import NonNegativeFloat, PositiveInt

from simbench.metrics.base import Metric
from simbench.numerics.knn import (
    check_k,
    knn_indices,
    matched_ranks,
    overlap_counts,
    prepare_rows,
    row_distances,
    row_inner,
    union_rows,
)
from simbench.plugin import Invariance

_COSINE_INV = frozenset(
    {Invariance.PERMUTATION, Invariance.ORTHOGONAL, Invariance.ISOTROPIC_SCALING}
)
_EUCLIDEAN_INV = _COSINE_INV | {Invariance.TRANSLATION}


class _KnnMetric(Metric):
    """Shared parameters and kNN search of the neighbourhood metrics (not registered)."""

    symmetric = True
    higher_is_better = True
    streaming = False
    cost = "gram"
    invariances = _COSINE_INV

    def __init__(
        self,
        k: PositiveInt = 10,
        distance: Literal["cosine", "euclidean", "inner"] = "cosine",
        block_size: PositiveInt | None = None,
    ):
        self.k = k
        self.distance = distance
        self.block_size = block_size

    def claimed_invariances(self) -> frozenset[Invariance]:
        # positive scaling only for "inner" (a negative factor reverses its ranking);
        # the registry tests scale by exp(u) > 0.
        return _EUCLIDEAN_INV if self.distance == "euclidean" else _COSINE_INV

    def _neighbours(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_k(self.k, X.shape[0])
        out = []
        for Z, name in ((X, "X"), (Y, "Y")):
            Zp = prepare_rows(Z, self.distance, name)
            out.append(knn_indices(Zp, self.k, distance=self.distance, block_size=self.block_size))
        return out[0], out[1]


class MutualKNN(_KnnMetric):
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024): mean |N_X(i) ∩ N_Y(i)| / k.

    platonic-rep's default is ``distance="cosine"`` (``compute_score`` L2-normalises the
    rows, then ``feats @ feats.T`` with the diagonal excluded), ``k = 10``;
    ``distance="inner"`` is its ``normalize=False``. Their pipeline also clips outliers
    (``remove_outliers``, q = 0.95) before the metric: a preprocessing step, not part
    of this metric. Independent representations give ``k / (n − 1)`` in expectation.
    Memory ``O(n·k + block_size·n)``.
    """

    name = "mutual_knn"

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        NX, NY = self._neighbours(X, Y)
        return float(np.mean(overlap_counts(NX, NY) / self.k))


class JaccardKNN(_KnnMetric):
    """Jaccard similarity of kNN sets (ReSi): mean |N_X(i) ∩ N_Y(i)| / |N_X(i) ∪ N_Y(i)|.

    ReSi ``jaccard_similarity(k=10, inner="cosine")``: scikit-learn ``NearestNeighbors``
    with ``k + 1`` neighbours, the first (the sample itself) dropped; ``distance``
    ``"cosine"`` or ``"euclidean"`` (ReSi's ``inner``). Here the sample is excluded by
    index, which differs from ReSi only when a sample has an exact duplicate.
    Memory ``O(n·k + block_size·n)``.
    """

    name = "jaccard_knn"

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        NX, NY = self._neighbours(X, Y)
        m = overlap_counts(NX, NY)
        return float(np.mean(m / (2 * self.k - m)))


class RankSimilarity(_KnnMetric):
    """Rank similarity of kNN lists (Wang et al. 2020), exactly as ReSi's ``rank_similarity``.

    For each sample, over the common neighbours ``j ∈ N_X(i) ∩ N_Y(i)`` with 1-based
    ranks ``r_X(j), r_Y(j)`` in each list (nearest = 1):
    ``s_i = Σ_j 2 / ((1 + |r_X(j) − r_Y(j)|)(r_X(j) + r_Y(j))) / Σ_{t=1}^{m_i} 1/t``
    with ``m_i = |N_X(i) ∩ N_Y(i)|`` (ReSi's normalisation), ``s_i = 0`` when
    ``m_i = 0``; the score is ``mean_i s_i``. ``distance`` as ReSi's ``inner``.
    Memory ``O(n·k + block_size·n)`` (plus ``O(chunk·k²)`` to match ranks).
    """

    name = "rank_similarity"

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        NX, NY = self._neighbours(X, Y)
        n, k = NX.shape
        i, a, b = matched_ranks(NX, NY)
        contrib = 2.0 / ((1.0 + np.abs(a - b)) * (a + b + 2.0))
        num = np.bincount(i, weights=contrib, minlength=n)
        m = np.bincount(i, minlength=n)
        harmonic = np.concatenate([[1.0], np.cumsum(1.0 / np.arange(1, k + 1))])
        return float(np.mean(np.where(m > 0, num / harmonic[m], 0.0)))


class SecondOrderCosine(_KnnMetric):
    """Second-order cosine similarity (Hamilton et al. 2016), as ReSi computes it.

    For each sample, ``U_i = N_X(i) ∪ N_Y(i)``; the vectors of distances
    ``(d_X(i, j))_{j∈U_i}`` and ``(d_Y(i, j))_{j∈U_i}`` are compared by cosine similarity,
    averaged over samples. ReSi uses cosine *distances* ``1 − cos`` (scikit-learn's
    ``pairwise_distances``), not Hamilton's similarities; so does the default here.
    ``distance="euclidean"`` uses euclidean neighbours and distances (an extension; ReSi
    fixes cosine). A sample whose distance vector is all zero (all its neighbours
    coincide with it) is a ``ValueError``. Memory ``O(n·k + block_size·n)``.
    """

    name = "second_order_cosine"

    def __init__(
        self,
        k: PositiveInt = 10,
        distance: Literal["cosine", "euclidean"] = "cosine",
        block_size: PositiveInt | None = None,
    ):
        super().__init__(k=k, distance=distance, block_size=block_size)

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        check_k(self.k, X.shape[0])
        Zx = prepare_rows(X, self.distance, "X")
        Zy = prepare_rows(Y, self.distance, "Y")
        NX = knn_indices(Zx, self.k, distance=self.distance, block_size=self.block_size)
        NY = knn_indices(Zy, self.k, distance=self.distance, block_size=self.block_size)
        U, valid = union_rows(NX, NY)
        DX = row_distances(Zx, U, self.distance) * valid
        DY = row_distances(Zy, U, self.distance) * valid
        den = np.sqrt(np.einsum("ij,ij->i", DX, DX) * np.einsum("ij,ij->i", DY, DY))
        bad = np.flatnonzero(den == 0.0)
        if bad.size:
            raise ValueError(
                f"{bad.size} sample(s) are at distance 0 from all their neighbours (first: "
                f"sample {int(bad[0])}); their second-order cosine similarity is undefined"
            )
        return float(np.mean(np.einsum("ij,ij->i", DX, DY) / den))


def _masked_kernel(n: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> sp.csr_array:
    return sp.csr_array((values, (rows, cols)), shape=(n, n))


def _hsic(A: sp.csr_array, B: sp.csr_array, unbiased: bool) -> float:
    """platonic-rep's ``hsic_unbiased`` (Song et al. 2012 eq. 5) or ``hsic_biased`` on sparse A, B.

    Unbiased (A, B with zero diagonal): ``[Σ A∘Bᵀ + ΣA ΣB / ((n−1)(n−2))
    − 2·1ᵀAB1 / (n−2)] / (n(n−3))``. Biased: ``tr(A H B H)`` (unnormalised), expanded as
    ``Σ A∘Bᵀ − (1ᵀBA1 + 1ᵀAB1)/n + ΣA ΣB / n²``. Valid for non-symmetric A, B.
    """
    n = A.shape[0]
    s_ab = float(A.multiply(B.T).sum())
    sa, sb = float(A.sum()), float(B.sum())
    ab = float(np.asarray(A.sum(axis=0)) @ np.asarray(B.sum(axis=1)))  # 1ᵀ A B 1
    if unbiased:
        return (s_ab + sa * sb / ((n - 1) * (n - 2)) - 2.0 * ab / (n - 2)) / (n * (n - 3))
    ba = float(np.asarray(B.sum(axis=0)) @ np.asarray(A.sum(axis=1)))  # 1ᵀ B A 1
    return s_ab - (ab + ba) / n + sa * sb / n**2


class CKNNA(_KnnMetric):
    """CKNNA, centred kernel nearest-neighbour alignment (Huh et al. 2024, platonic-rep).

    With ``K = X̂X̂ᵀ`` (rows L2-normalised, ``kernel="cosine"``, platonic-rep's default
    preprocessing; ``kernel="linear"`` uses the raw rows), ``M_K`` the 0/1 matrix of
    each row's ``k`` largest entries of ``K`` (diagonal excluded when ``unbiased``,
    included otherwise) and ``M = M_K ∘ M_L``:
    ``CKNNA = HSIC(M∘K, M∘L) / (sqrt(HSIC(M_K∘K, M_K∘K) · HSIC(M_L∘L, M_L∘L)) + eps)``,
    HSIC unbiased (Song et al. 2012, platonic-rep's default ``unbiased=True``) or biased
    ``tr(AHBH)``. The masks are not symmetric, so the unbiased form is not symmetric in
    (X, Y) (the biased one is). platonic-rep adds ``eps = 1e-6`` to the denominator
    (``eps=1e-6`` reproduces it; it lowers CKNNA(X, X) to ≈ 1 − 2·10⁻⁵ on unit rows);
    simbench's default ``eps = 0`` keeps the exact ratio. The masked kernels are
    sparse (``O(n·k)``); ``k ≥ 2`` (platonic-rep's check), ``n ≥ 4`` for the unbiased
    HSIC. A non-positive HSIC in the denominator is a ``ValueError``.
    """

    name = "cknna"
    symmetric = False  # with the default unbiased=True
    min_samples = 4

    def __init__(
        self,
        k: PositiveInt = 10,
        kernel: Literal["cosine", "linear"] = "cosine",
        unbiased: bool = True,
        eps: NonNegativeFloat = 0.0,
        block_size: PositiveInt | None = None,
    ):
        if k < 2:
            raise ValueError(f"cknna needs k >= 2 (platonic-rep's requirement); got {k}")
        self.k = k
        self.kernel = kernel
        self.unbiased = unbiased
        self.eps = eps
        self.block_size = block_size
        self.symmetric = not unbiased  # type: ignore[misc]

    def claimed_invariances(self) -> frozenset[Invariance]:
        # eps > 0 on the raw linear kernel makes the ratio depend on the scale of X
        if self.kernel == "linear" and self.eps > 0:
            return _COSINE_INV - {Invariance.ISOTROPIC_SCALING}
        return _COSINE_INV

    def _side(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = knn_indices(
            Z, self.k, distance="inner", include_self=not self.unbiased, block_size=self.block_size
        )
        return idx, row_inner(Z, idx)

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        n = X.shape[0]
        check_k(self.k, n)
        prep = "cosine" if self.kernel == "cosine" else "inner"
        NK, KV = self._side(prepare_rows(X, prep, "X"))
        NL, LV = self._side(prepare_rows(Y, prep, "Y"))
        rows = np.repeat(np.arange(n), self.k)
        kk = _hsic(*(2 * [_masked_kernel(n, rows, NK.ravel(), KV.ravel())]), self.unbiased)
        ll = _hsic(*(2 * [_masked_kernel(n, rows, NL.ravel(), LV.ravel())]), self.unbiased)
        i, a, b = matched_ranks(NK, NL)
        cols = NK[i, a]
        kl = _hsic(
            _masked_kernel(n, i, cols, KV[i, a]),
            _masked_kernel(n, i, cols, LV[i, b]),
            self.unbiased,
        )
        if kk <= 0.0 or ll <= 0.0:
            raise ValueError(
                f"the kNN-masked HSIC of {'X' if kk <= 0.0 else 'Y'} with itself is "
                f"{min(kk, ll):.3g} <= 0; CKNNA's normalisation is undefined (raise k or n)"
            )
        return kl / (float(np.sqrt(kk * ll)) + self.eps)

"""Per-representation precomputation shared by metrics (COORD.md §3, issue 11: many-model
scoring).

``Metric.prepare(X)`` computes once per (model, layer) what does not depend on the other
side; ``Metric.score_prepared(pa, pb)`` then does only the pairwise products. Two kinds:

- :class:`MomentsSide` (every moment-based metric, mixin :class:`PreparedMoments`): the
  validated data, its mean and centred scatter ``Sxx``. A pair forms only ``Sxy`` (one
  ``n·d_x·d_y`` product instead of three) and scores the assembled :class:`Moments`
  exactly as ``evaluate`` does (same arithmetic, :func:`~simbench.numerics.moments.cross_scatter`).
- :class:`GramSide` (kernel metrics: CKA, RSA): a unit vector ``w`` holding the strict
  upper triangle and the diagonal of an ``n×n`` centred kernel (off-diagonal entries
  weighted by √2), so that ``⟨K, L⟩_F / (‖K‖_F ‖L‖_F) = w_K · w_L``: a pair costs ``n²/2``
  multiply-adds whatever the widths. Memory: ``n(n+1)/2`` float64 per representation
  (16 MB at ``n = 2000``), bounded by :data:`GRAM_MAX_N`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from simbench.numerics import torch_ops
from simbench.numerics.arrays import is_torch
from simbench.numerics.moments import Moments, cross_scatter, side_scatter
from simbench.plugin import Score

#: largest number of samples for which a kernel metric stores its packed ``n×n`` Gram
#: (``n(n+1)/2`` float64: 64 MiB at 4096); above it linear CKA prepares moments instead
GRAM_MAX_N = 4096


def check_same_n(na: int, nb: int) -> None:
    """``ValueError`` unless both prepared sides hold the same number of samples."""
    if na != nb:
        raise ValueError(
            f"X and Y must hold the same samples in the same order: X has {na} rows, Y has {nb}."
        )


@dataclass(frozen=True, eq=False)
class MomentsSide:
    """One side's validated data ``X``, mean, centred scatter and rank-one flag.

    From a torch tensor, ``X`` is the centred tensor on its device and ``mean``, ``sxx``
    are float64 numpy: a pair forms only ``XcᵀYc`` on the device.
    """

    X: np.ndarray
    mean: np.ndarray
    sxx: np.ndarray
    rank_one: bool

    @classmethod
    def of(cls, X: np.ndarray) -> MomentsSide:
        if is_torch(X):
            mean = X.mean(dim=0)
            Xc = X - mean
            return cls(Xc, torch_ops.to_np(mean), torch_ops.to_np(Xc.T @ Xc), False)
        mean, sxx, rank_one = side_scatter(X)
        return cls(X, mean, sxx, rank_one)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def paired_moments(a: MomentsSide, b: MomentsSide) -> Moments:
    """The paired :class:`Moments` of two prepared sides (equal to ``Moments.from_arrays``)."""
    check_same_n(a.n, b.n)
    if is_torch(a.X) != is_torch(b.X):
        raise TypeError("prepare both sides from numpy arrays or both from torch tensors")
    if is_torch(a.X):
        sxy = torch_ops.to_np(a.X.T @ b.X)  # both centred, on the device
    else:
        sxy = cross_scatter(a.X, a.mean, a.rank_one, b.X, b.mean, b.rank_one)
    m = Moments(n=a.n, mean_x=a.mean, mean_y=b.mean, sxx=a.sxx, syy=b.sxx, sxy=sxy)
    m._check_finite()
    return m


class PreparedMoments:
    """Mixin for streaming metrics whose value is ``_from_moments`` of the pair's moments."""

    def prepare(self, X: Any) -> MomentsSide | None:
        if getattr(self, "streaming_fourth", False):
            return None  # the fourth-order cross sums need both sides' data together
        return MomentsSide.of(self._prepared_input(X))  # type: ignore[attr-defined]

    def score_prepared(self, pa: MomentsSide, pb: MomentsSide) -> Score:
        return self._checked(self.score_moments, paired_moments(pa, pb))  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=2)
def _upper_mask(n: int) -> np.ndarray:
    """Boolean mask of the strict upper triangle of an ``n×n`` matrix (row-major order)."""
    return np.triu(np.ones((n, n), dtype=bool), k=1)


def upper(K: np.ndarray) -> np.ndarray:
    """The strict upper triangle of a square ``K`` as a new vector (row-major order)."""
    if is_torch(K):
        return torch_ops.upper_t(K)
    return K[_upper_mask(K.shape[0])]


def packed(K: np.ndarray, off_weight: float = float(np.sqrt(2.0))) -> np.ndarray:
    """``[diag(K), off_weight · triu(K, 1)]`` of a symmetric ``K``: ``packed(K)·packed(L) =
    ⟨K, L⟩_F`` with the default weight √2."""
    if is_torch(K):
        return torch_ops.packed_t(K)
    off = upper(K)
    off *= off_weight
    return np.concatenate([np.diag(K), off])


@dataclass(frozen=True, eq=False)
class GramSide:
    """A kernel as the unit vector ``w`` (:func:`packed` divided by its norm), or — for the
    unbiased HSIC — the raw off-diagonal entries ``w``, column sums ``k1`` and ``HSIC(K,K)``.
    ``error``: why the kernel is degenerate (raised when it is scored)."""

    n: int
    w: np.ndarray
    k1: np.ndarray | None = None
    self_hsic: float = 0.0
    error: str | None = None

    def check(self) -> None:
        if self.error:
            raise ValueError(self.error)


def unit_gram(K: np.ndarray, n: int, degenerate: str) -> GramSide:
    """:class:`GramSide` of a centred kernel ``K`` normalised to unit Frobenius norm."""
    w = packed(K)
    norm = math.sqrt(float(w @ w))
    if not norm > 0.0:
        return GramSide(n, w, error=degenerate)
    w = w / norm
    return GramSide(n, w)


def cosine(a: GramSide, b: GramSide) -> float:
    """``w_a · w_b``: the normalised Frobenius product of the two kernels."""
    check_same_n(a.n, b.n)
    a.check()
    b.check()
    return float(a.w @ b.w)

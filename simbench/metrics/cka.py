"""Centred kernel alignment (Kornblith et al. 2019; MATH.md: Linear CKA, RBF CKA, debiased CKA).

``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``. The linear kernel uses the
feature-space form ``||Sxy||_F² / (||Sxx||_F ||Syy||_F)`` on centred
scatter matrices when that is cheaper than the Gram form (``n ≥ d_x + d_y``), streams
through :class:`Moments`, and the debiased variant (unbiased HSIC, Song et al. 2012)
streams through the fourth-order sums of ``Moments(fourth=True)``. The RBF kernel uses
``σ² = ratio² · median(D²)`` over the full ``n×n`` matrix of squared distances,
diagonal included (Kornblith's convention), one bandwidth per representation.
Minibatch accumulation (Nguyen et al. 2021) averages unbiased HSICs over minibatches.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import PositiveFloat, conint

from simbench.metrics.base import Metric
from simbench.metrics.prepared import (
    GRAM_MAX_N,
    GramSide,
    MomentsSide,
    check_same_n,
    cosine,
    paired_moments,
    unit_gram,
    upper,
)
from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired, is_torch
from simbench.numerics.moments import Moments
from simbench.numerics.torch_ops import linear_gram_t, rbf_gram_t
from simbench.plugin import Invariance, Score

_INV = frozenset(
    {
        Invariance.PERMUTATION,
        Invariance.ORTHOGONAL,
        Invariance.ISOTROPIC_SCALING,
        Invariance.TRANSLATION,
    }
)


def linear_gram(X: np.ndarray) -> np.ndarray:
    """Linear kernel of the column-centred ``X`` (already double-centred)."""
    Xc = X - X.mean(axis=0)
    return Xc @ Xc.T


def rbf_gram(X: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    """RBF kernel ``exp(−D² / (2 ratio² median(D²)))`` (MATH.md: RBF CKA)."""
    Xc = X - X.mean(axis=0)  # distances are translation-free; centring improves rounding
    sq = np.einsum("ij,ij->i", Xc, Xc)
    D2 = sq[:, None] + sq[None, :] - 2.0 * (Xc @ Xc.T)
    np.maximum(D2, 0.0, out=D2)
    np.fill_diagonal(D2, 0.0)
    med = float(np.median(D2))
    if med <= 0.0:
        raise ValueError(
            "the median squared distance is 0 (more than half of the sample pairs coincide); "
            "the RBF bandwidth is undefined"
        )
    D2 *= -1.0 / (2.0 * ratio**2 * med)
    return np.exp(D2, out=D2)


def hsic_biased(K: np.ndarray, L: np.ndarray) -> float:
    """``tr(K H L H)`` (unnormalised, the factor cancels in CKA)."""
    Kc = K - K.mean(axis=0) - K.mean(axis=1)[:, None] + K.mean()
    return float(np.sum(Kc * L))  # <HKH, L> = <HKH, HLH> since H is idempotent


def hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Unbiased HSIC estimator (Song et al. 2012), needs ``n ≥ 4``."""
    n = K.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 samples; got {n}")
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    k1, l1 = K.sum(axis=0), L.sum(axis=0)
    tr = float(np.sum(K * L))
    return (tr + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1 @ l1)) / (
        n * (n - 3)
    )


def _ratio(hxy: float, hxx: float, hyy: float) -> float:
    if hxx <= 0.0 or hyy <= 0.0:
        which = "X" if hxx <= 0.0 else "Y"
        raise ValueError(
            f"HSIC of {which} with itself is {min(hxx, hyy):.3g} <= 0: {which} has no variance "
            "(constant) or, for the debiased estimator, too few samples; CKA is undefined"
        )
    return hxy / np.sqrt(hxx * hyy)


def _hsic_prepared(a: GramSide, b: GramSide) -> float:
    """Unbiased HSIC from two prepared zero-diagonal kernels (``hsic_unbiased``'s terms:
    ``tr(K̃L̃) = 2·Σ_{i<j} K̃ᵢⱼL̃ᵢⱼ``)."""
    n = a.n
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 samples; got {n}")
    tr = 2.0 * float(a.w @ b.w)
    s = float(a.k1.sum()) * float(b.k1.sum())
    return (tr + s / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(a.k1 @ b.k1)) / (n * (n - 3))


class MinibatchHSIC:
    """Accumulator for minibatch CKA (Nguyen et al. 2021): one ``update`` per minibatch.

    CKA = mean HSIC₁(K_b, L_b) / sqrt(mean HSIC₁(K_b, K_b) · mean HSIC₁(L_b, L_b)).
    Memory is that of one minibatch's Gram matrices, whatever the number of batches.
    """

    def __init__(self, kernel: str, ratio: float):
        self.kernel, self.ratio = kernel, ratio
        self.sums = np.zeros(3)
        self.batches = 0

    def update(self, X: ArrayLike, Y: ArrayLike) -> MinibatchHSIC:
        Xa, Ya = as_matrix(X, "X", min_rows=4), as_matrix(Y, "Y", min_rows=4)
        check_paired(Xa, Ya)
        gram = linear_gram if self.kernel == "linear" else (lambda A: rbf_gram(A, self.ratio))
        K, L = gram(Xa), gram(Ya)
        self.sums += (hsic_unbiased(K, L), hsic_unbiased(K, K), hsic_unbiased(L, L))
        self.batches += 1
        return self

    def value(self) -> float:
        if self.batches == 0:
            raise ValueError("no minibatch was accumulated")
        return _ratio(*(self.sums / self.batches))


class CKA(Metric):
    """Centred kernel alignment (Kornblith 2019): linear or RBF kernel, optionally debiased."""

    name = "cka"
    symmetric = True
    higher_is_better = True
    invariances = _INV
    streaming = True
    cost = "moments"

    def __init__(
        self,
        kernel: Literal["linear", "rbf"] = "linear",
        debiased: bool = False,
        ratio: PositiveFloat = 0.5,
        minibatch_size: conint(ge=4) | None = None,  # type: ignore[valid-type]
    ):
        self.kernel = kernel
        self.debiased = debiased
        self.ratio = ratio
        self.minibatch_size = minibatch_size
        if minibatch_size is not None and not debiased:
            raise ValueError(
                "minibatch CKA (Nguyen et al. 2021) averages the unbiased HSIC: set debiased=True"
            )
        # only the linear kernel reduces to moments; RBF and minibatch need Gram matrices
        self.streaming = kernel == "linear" and minibatch_size is None  # type: ignore[misc]
        self.streaming_fourth = debiased  # type: ignore[misc]
        self.cost = "moments" if self.streaming else "gram"  # type: ignore[misc]
        self.min_samples = 4 if debiased else 2  # type: ignore[misc]

    def accumulator(self) -> Moments | MinibatchHSIC:  # type: ignore[override]
        """``Moments`` (linear) or a :class:`MinibatchHSIC` (minibatch mode) to stream into."""
        if self.minibatch_size is not None:
            return MinibatchHSIC(self.kernel, self.ratio)
        return super().accumulator()

    def evaluate(self, X: Any, Y: Any | None = None) -> Score:
        if isinstance(X, MinibatchHSIC):
            return Score(X.value(), details={"batches": X.batches})
        return super().evaluate(X, Y)

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        n = X.shape[0]
        if self.minibatch_size is not None:
            acc = MinibatchHSIC(self.kernel, self.ratio)
            b = self.minibatch_size
            # consecutive minibatches; a last one shorter than 4 samples is dropped
            for start in range(0, n - 3, b):
                acc.update(X[start : start + b], Y[start : start + b])
            return acc.value()
        if self.kernel == "linear" and n >= X.shape[1] + Y.shape[1]:
            # feature-space form: O(n d²), cheaper than the O(n² d) Gram form here
            return float(
                self._from_moments(Moments.from_arrays(X, Y, fourth=self.debiased, validated=True))
            )
        if self.kernel == "linear":
            K, L = linear_gram(X), linear_gram(Y)
        else:
            K, L = rbf_gram(X, self.ratio), rbf_gram(Y, self.ratio)
        hsic = hsic_unbiased if self.debiased else hsic_biased
        return _ratio(hsic(K, L), hsic(K, K), hsic(L, L))

    def prepare(self, X: Any) -> GramSide | MomentsSide | None:
        """The centred kernel of ``X`` (packed, :mod:`simbench.metrics.prepared`), or its
        moments for linear CKA with more than ``GRAM_MAX_N`` samples; ``None`` (use
        ``evaluate``) for minibatch CKA and for debiased linear CKA above ``GRAM_MAX_N``."""
        if self.minibatch_size is not None:
            return None
        Xa = self._prepared_input(X)
        n = Xa.shape[0]
        if self.kernel == "linear" and n > GRAM_MAX_N:
            return None if self.debiased else MomentsSide.of(Xa)
        if is_torch(Xa):  # on the tensor's device (numerics.torch_ops)
            K = linear_gram_t(Xa) if self.kernel == "linear" else rbf_gram_t(Xa, self.ratio)
        else:
            K = linear_gram(Xa) if self.kernel == "linear" else rbf_gram(Xa, self.ratio)
        degenerate = (
            "HSIC of a representation with itself is <= 0: it has no variance (constant) "
            "or, for the debiased estimator, too few samples; CKA is undefined"
        )
        if not self.debiased:
            Kc = K - K.mean(axis=0) - K.mean(axis=1)[:, None] + K.mean()  # as hsic_biased
            return unit_gram(Kc, n, degenerate)
        # unbiased HSIC (Song et al. 2012): zero-diagonal K̃, its column sums and HSIC(K, K)
        if is_torch(K):
            K.fill_diagonal_(0.0)
        else:
            np.fill_diagonal(K, 0.0)
        side = GramSide(n, upper(K), K.sum(axis=0))
        hkk = _hsic_prepared(side, side)
        if not hkk > 0.0:
            return GramSide(n, side.w, side.k1, hkk, degenerate)
        return GramSide(n, side.w, side.k1, hkk)

    def score_prepared(self, pa: GramSide | MomentsSide, pb: GramSide | MomentsSide) -> Score:
        check_same_n(pa.n, pb.n)
        if isinstance(pa, MomentsSide) and isinstance(pb, MomentsSide):
            return self._checked(self.score_moments, paired_moments(pa, pb))
        if not (isinstance(pa, GramSide) and isinstance(pb, GramSide)):
            raise TypeError("pa and pb must both come from this metric's prepare")
        if not self.debiased:
            return self._checked(cosine, pa, pb)
        pa.check()
        pb.check()
        return self._checked(_ratio, _hsic_prepared(pa, pb), pa.self_hsic, pb.self_hsic)

    def _from_moments(self, m: Moments) -> float:
        if self.debiased:
            return _ratio(m.hsic_unbiased("xy"), m.hsic_unbiased("xx"), m.hsic_unbiased("yy"))
        # ||Sxy||_F² / (||Sxx||_F ||Syy||_F)  (MATH.md: Linear CKA, feature form), on
        # Sxx/bx, Syy/by, Sxy/sqrt(bx by) with b the largest variance: the ratio is
        # unchanged and every entry lies in [-1, 1] (Cauchy–Schwarz), so the squares can
        # neither overflow nor underflow whatever the scale of the moments
        bx, by = float(np.max(np.diag(m.sxx))), float(np.max(np.diag(m.syy)))
        sxx, syy, sxy = m.sxx, m.syy, m.sxy
        if bx > 0.0 and by > 0.0:
            sxx, syy, sxy = sxx / bx, syy / by, sxy / (np.sqrt(bx) * np.sqrt(by))
        return _ratio(float(np.sum(sxy * sxy)), float(np.sum(sxx * sxx)), float(np.sum(syy * syy)))

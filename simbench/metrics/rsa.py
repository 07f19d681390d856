"""Representational similarity analysis (Kriegeskorte 2008; MATH.md: RSA; SRM paper §2).

The RSM of ``X (n, d)`` is the ``n×n`` matrix of similarities between the response
patterns (rows): Pearson correlation across features (``rsm="correlation"``, the SRM
paper's definition, default) or cosine (``rsm="cosine"``). RSA is the Pearson or
Spearman correlation between the strict upper triangles of the two RSMs.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy.stats import rankdata

from simbench.metrics.base import Metric
from simbench.metrics.prepared import GramSide, cosine, upper
from simbench.numerics.arrays import is_torch
from simbench.numerics.torch_ops import to_np
from simbench.plugin import Invariance, Score


def rsm(X: np.ndarray, kind: str = "correlation", name: str = "X") -> np.ndarray:
    """Representational similarity matrix of the rows of ``X``."""
    Z = X - X.mean(axis=1, keepdims=True) if kind == "correlation" else X.copy()
    norms = np.linalg.norm(Z, axis=1)
    bad = np.flatnonzero(norms <= np.finfo(float).tiny)
    if bad.size:
        what = "constant across features" if kind == "correlation" else "all zero"
        raise ValueError(
            f"{bad.size} row(s) of {name} are {what} (first: sample {int(bad[0])}); "
            f"their {kind} similarity is undefined"
        )
    Z /= norms[:, None]
    return Z @ Z.T


def rsm_t(X: Any, kind: str = "correlation") -> Any:
    """:func:`rsm` of a torch tensor, on its device."""
    Z = X - X.mean(dim=1, keepdim=True) if kind == "correlation" else X.clone()
    norms = Z.norm(dim=1)
    bad = (norms <= np.finfo(float).tiny).nonzero().flatten()
    if bad.numel():
        what = "constant across features" if kind == "correlation" else "all zero"
        raise ValueError(
            f"{bad.numel()} row(s) of X are {what} (first: sample {int(bad[0])}); "
            f"their {kind} similarity is undefined"
        )
    Z = Z / norms[:, None]
    return Z @ Z.T


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    if den == 0.0:
        raise ValueError("an RSM is constant off the diagonal: its correlation is undefined")
    return float((a @ b) / den)


class RSA(Metric):
    """Correlation between the two representational similarity matrices (Kriegeskorte 2008)."""

    name = "rsa"
    symmetric = True
    higher_is_better = True
    streaming = False
    cost = "gram"
    min_samples = 3

    invariances = frozenset({Invariance.PERMUTATION, Invariance.ISOTROPIC_SCALING})

    def __init__(
        self,
        rsm: Literal["correlation", "cosine"] = "correlation",
        compare: Literal["pearson", "spearman"] = "pearson",
    ):
        self.rsm = rsm
        self.compare = compare

    def claimed_invariances(self) -> frozenset[Invariance]:
        # Row-wise correlation subtracts each pattern's mean over features, which a
        # rotation of the feature axis does not preserve; cosine similarity does.
        if self.rsm == "cosine":
            return self.invariances | {Invariance.ORTHOGONAL}
        return self.invariances

    def prepare(self, X: Any) -> GramSide:
        """The RSM's upper triangle (ranked for Spearman), centred, as a unit vector."""
        Xa = self._prepared_input(X)
        a = upper(rsm_t(Xa, self.rsm) if is_torch(Xa) else rsm(Xa, self.rsm, "X"))
        if self.compare == "spearman":
            a = rankdata(to_np(a) if is_torch(a) else a)  # ranks: on the CPU
        a = a - a.mean()
        norm = math.sqrt(float(a @ a))
        if norm == 0.0:
            msg = "an RSM is constant off the diagonal: its correlation is undefined"
            return GramSide(Xa.shape[0], a, error=msg)
        return GramSide(Xa.shape[0], a / norm)

    def score_prepared(self, pa: GramSide, pb: GramSide) -> Score:
        return self._checked(cosine, pa, pb)

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        iu = np.triu_indices(X.shape[0], k=1)
        a, b = rsm(X, self.rsm, "X")[iu], rsm(Y, self.rsm, "Y")[iu]
        if self.compare == "spearman":
            a, b = rankdata(a), rankdata(b)
        return _pearson(a, b)

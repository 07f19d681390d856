"""Riemannian (affine-invariant) distance between second-moment matrices (Shahbazi et al. 2021).

Shahbazi, Shirali, Aghajan & Nili (2021), "Using distance on the Riemannian manifold
to compare representations in brain and in models", NeuroImage 239:118271; restated
in Klabunde et al.'s survey ("Riemannian distance"). Each representation ``X (n, d)``
gives the ``n × n`` second-moment matrix of its samples

    G_x = X Xᵀ / d_x

(the representational similarity matrix with the linear kernel; dividing by the
number of features ``d`` is Diedrichsen & Kriegeskorte's second-moment convention that
Shahbazi et al. follow, and makes two layers of different widths but the same
per-feature scale comparable). The distance is the geodesic distance between ``G_x``
and ``G_y`` on the manifold of symmetric positive-definite matrices with the
affine-invariant metric,

    d(X, Y) = sqrt(Σ_i log² λ_i),   λ_i the eigenvalues of G_x⁻¹ G_y,

computed as the generalized eigenvalues of ``G_y v = λ G_x v``
(``scipy.linalg.eigh(G_y, G_x)``, no inverse formed). It is a metric on SPD matrices
(symmetric, triangle inequality), ``0`` iff ``G_x = G_y``.

ReSi's code (mklabunde/resi) has no Riemannian measure; rsatoolbox's
``compare(method="riemannian")`` works on RDMs turned into second moments with a fitted
scale and noise term (Nelder–Mead), so it is not this quantity. Choices, where the paper
and the survey leave them open: ``X`` is **not** centred (centring
makes ``G_x`` singular, rank ``≤ n−1``), so the distance sees translations; it sees
the data's scale (``d(cX, X) = 2 |log c| √n``). ``G_x`` is positive definite only
when ``d_x ≥ n`` and ``X`` has full row rank: otherwise a ``ValueError`` (default) or,
with ``ridge = ε > 0``, the documented regularisation ``G + ε · tr(G)/n · I``
(``ε`` relative to the mean eigenvalue).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from pydantic import confloat

from simbench.metrics.base import Metric
from simbench.plugin import Invariance


def second_moment(X: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """``G = X Xᵀ / d``, plus ``ridge · tr(G)/n · I`` when ``ridge > 0``."""
    G = X @ X.T
    G /= X.shape[1]
    if ridge > 0.0:
        G.flat[:: G.shape[0] + 1] += ridge * np.trace(G) / G.shape[0]
    return G


def _check_width(n: int, d: int, name: str) -> None:
    if d < n:
        raise ValueError(
            f"riemannian_distance: {name} has {d} features for {n} samples, so its "
            f"second-moment matrix {name}{name}ᵀ/d (n×n, rank ≤ d) is singular; use at "
            "least as many features as samples (e.g. flattened conv activations), fewer "
            "samples, or ridge > 0"
        )


def _check_definite(G: np.ndarray, name: str) -> None:
    """``ValueError`` unless the Cholesky factorisation of ``G`` exists with every pivot
    clear of rounding (``L_ii² > n·eps·max G_ii``): cheaper than its eigenvalues."""
    n = G.shape[0]
    try:
        L = scipy.linalg.cholesky(G, lower=True, check_finite=False)
        pivot = float(np.min(np.diag(L))) ** 2
    except np.linalg.LinAlgError:
        pivot = 0.0
    if pivot <= n * np.finfo(float).eps * float(np.max(np.diag(G))):
        raise ValueError(
            f"riemannian_distance: the second-moment matrix of {name} is singular "
            "(numerically not positive definite): its samples are linearly dependent; "
            "remove duplicate samples or use ridge > 0"
        )


def spd_distance(A: np.ndarray, B: np.ndarray) -> float:
    """Affine-invariant distance ``sqrt(Σ log² λ(A⁻¹B))`` between SPD matrices."""
    lam = scipy.linalg.eigh(B, A, eigvals_only=True)
    if not lam[0] > 0.0:  # ascending; passed the pivot check, lost in the eigensolver
        raise ValueError(
            "riemannian_distance: a generalized eigenvalue came out non-positive "
            f"({lam[0]:.3g}): the second-moment matrices are too ill-conditioned for "
            "float64 (features on very different scales); use ridge > 0"
        )
    return float(np.sqrt(np.sum(np.log(lam) ** 2)))


class RiemannianDistance(Metric):
    """Riemannian distance between the sample second-moment matrices XXᵀ/d (Shahbazi 2021)."""

    name = "riemannian_distance"
    symmetric = True
    higher_is_better = False
    # G = XXᵀ/d is unchanged by any orthogonal map (and permutation) of the features
    invariances = frozenset({Invariance.PERMUTATION, Invariance.ORTHOGONAL})
    streaming = False
    cost = "gram"

    def __init__(self, ridge: confloat(ge=0.0) = 0.0):  # type: ignore[valid-type]
        self.ridge = ridge

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        if self.ridge == 0.0:
            _check_width(X.shape[0], X.shape[1], "X")
            _check_width(Y.shape[0], Y.shape[1], "Y")
        Gx, Gy = second_moment(X, self.ridge), second_moment(Y, self.ridge)
        if self.ridge == 0.0:
            _check_definite(Gx, "X")
            _check_definite(Gy, "Y")
        return spd_distance(Gx, Gy)

    @classmethod
    def example_inputs(cls, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """More features than samples, so that both ``n × n`` second moments are definite."""
        n, dx, dy, k = 24, 40, 32, 16
        Z = rng.normal(size=(n, k))
        X = Z @ rng.normal(size=(k, dx)) + 0.5 * rng.normal(size=(n, dx))
        Y = Z @ rng.normal(size=(k, dy)) + 0.5 * rng.normal(size=(n, dy))
        return X, Y

"""Stochastic shape metric between Gaussian representations (Duong, Zhou, Nassar, Berman,
Olieslagers & Williams 2023, "Representational dissimilarity metric spaces for stochastic
neural networks", ICLR; netrep ``GaussianStochasticMetric``).

A stochastic representation is, for each condition ``i = 1..m``, a Gaussian
``N(μ_i, Σ_i)`` over the features. The distance between two of them is

    d_α(X, Y)² = min_{T ∈ O(d)} (1/m) Σ_i [ α ‖μx_i − μy_i T‖² + (2−α) B²(Σx_i, TᵀΣy_i T) ]

with ``B²(A, C) = tr A + tr C − 2 ‖A^½ C^½‖_*`` the squared Bures distance, ``α ∈ [0, 2]``
(``α = 1``: the 2-Wasserstein distance; ``α = 2``: means only; ``α = 0``: covariances
only), rows transformed as in netrep (``μ ↦ μT``, ``Σ ↦ TᵀΣT``) and the narrower side
zero-padded to equal width. It is a metric (Duong et al. 2023, Prop. 1).

**How simbench's deterministic representations become Gaussians.** The rows of ``X``
are split, in order, into ``m = n / group_size`` contiguous conditions of
``group_size`` rows; condition ``i`` is the Gaussian with its rows' mean and (biased,
``1/group_size``) covariance. ``group_size = 1`` (default) is the paper's
deterministic limit (``Σ_i = 0``): ``d² = α/n · min_T ‖X − Y T‖_F²``, the Procrustes
size-and-shape distance of the *uncentred* rows (netrep centres nothing), in closed form.
``group_size = H·W`` on conv activations flattened per image, ``(B·H·W, C)`` (MATH.md
conventions), makes each image a Gaussian over its spatial positions; repeated noisy
presentations of one input stored contiguously work the same way. A single Gaussian
per layer (one condition) is deliberately not the default: it discards which input is
which, and its alignment problem has many local optima.

**Fit.** Alternating maximisation, as in netrep: start from the Procrustes alignment of
the means, then repeat ``R_i = polar(Sx_i Tᵀ Sy_i)`` (``S = Σ^½``) and
``T = polar(a·MYᵀMX + b·Σ_i Sy_i R_iᵀ Sx_i)`` until ``T`` moves by less than
``tol·√d`` (Frobenius) or ``max_iter`` is reached (``Score.details`` reports
``iterations`` and ``converged``); no step decreases the objective. The problem is not
convex: the fit finds the stationary point reached from the means' alignment, as netrep
does, so the value is an upper bound on the distance (exact when ``group_size = 1``).
For the same reason no translation invariance is claimed at ``α = 0``: the means still
choose the starting point.
simbench fits with the weights of the distance itself (``a = α, b = 2−α``).
netrep's ``_fit_gaussian_alignment`` stacks ``α·μ`` and ``(2−α)·S`` and so fits with
``a = α², b = (2−α)²``: the same ``T`` for ``α ∈ {0, 1, 2}``, a different (not optimal
for the reported objective, so never smaller) value otherwise. ``convention="netrep"``
reproduces netrep's fit weights.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import confloat, conint

from simbench.metrics.base import Metric
from simbench.plugin import Invariance, Score


def _polar(M: np.ndarray) -> np.ndarray:
    """Orthogonal polar factor ``U Vᵀ`` of ``M = U S Vᵀ`` (maximises ``tr(Tᵀ M)``)."""
    U, _, Vt = np.linalg.svd(M)
    return U @ Vt


def condition_gaussians(X: np.ndarray, group_size: int, width: int):
    """Means ``(m, width)``, covariances and their square roots ``(m, width, width)`` of
    the contiguous row groups of ``X``, zero-padded to ``width`` features."""
    n, d = X.shape
    G = X.reshape(n // group_size, group_size, d)
    means = np.zeros((G.shape[0], width))
    means[:, :d] = G.mean(axis=1)
    if group_size == 1:
        return means, None, None
    C = G - G.mean(axis=1, keepdims=True)
    covs = np.zeros((G.shape[0], width, width))
    covs[:, :d, :d] = np.einsum("mgi,mgj->mij", C, C) / group_size
    lam, V = np.linalg.eigh(covs)
    roots = np.einsum("mik,mk,mjk->mij", V, np.sqrt(np.maximum(lam, 0.0)), V)
    return means, covs, roots


class GaussianShape(Metric):
    """Stochastic shape distance between per-condition Gaussians (Duong et al. 2023, netrep)."""

    name = "gaussian_shape"
    symmetric = True
    higher_is_better = False
    invariances = frozenset({Invariance.PERMUTATION, Invariance.ORTHOGONAL})
    streaming = False
    cost = "moments"

    def __init__(
        self,
        alpha: confloat(ge=0.0, le=2.0) = 1.0,  # type: ignore[valid-type]
        group_size: conint(ge=1) = 1,  # type: ignore[valid-type]
        max_iter: conint(ge=1) = 10000,  # type: ignore[valid-type]
        tol: confloat(gt=0.0) = 1e-12,  # type: ignore[valid-type]
        convention: Literal["simbench", "netrep"] = "simbench",
    ):
        self.alpha = alpha
        self.group_size = group_size
        self.max_iter = max_iter
        self.tol = tol
        self.convention = convention

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> Score:
        n, g = X.shape[0], self.group_size
        if n % g:
            raise ValueError(
                f"gaussian_shape: {n} samples do not split into conditions of group_size={g} rows"
            )
        if g == 1 and self.alpha == 0.0:
            raise ValueError(
                "gaussian_shape: with group_size=1 every covariance is zero, so alpha=0 "
                "(covariances only) compares nothing; use group_size > 1 or alpha > 0"
            )
        width = max(X.shape[1], Y.shape[1])
        mx, cx, sx = condition_gaussians(X, g, width)
        my, cy, sy = condition_gaussians(Y, g, width)
        return self._fit_score(mx, cx, sx, my, cy, sy)

    def _fit_score(self, mx, cx, sx, my, cy, sy) -> Score:
        alpha = self.alpha
        if self.convention == "simbench":
            a, b = alpha, 2.0 - alpha
        else:  # netrep stacks α·μ and (2−α)·Σ^½, i.e. fits with squared weights
            a, b = alpha**2, (2.0 - alpha) ** 2
        cross = my.T @ mx  # MYᵀ MX
        T = _polar(cross)  # Procrustes alignment of the means (netrep's init="means")
        iterations, converged = 0, True
        if sx is not None and b > 0.0:
            converged = False
            sxT = np.swapaxes(sx, 1, 2)  # symmetric, but keeps the formula readable
            for it in range(1, self.max_iter + 1):
                U, _, Vt = np.linalg.svd(sx @ T.T @ sy)  # P_i = Sx_i Tᵀ Sy_i, batched
                R = U @ Vt  # R_i = polar(P_i)
                T_new = _polar(a * cross + b * np.sum(sy @ np.swapaxes(R, 1, 2) @ sxT, axis=0))
                step = float(np.linalg.norm(T_new - T))
                T, iterations = T_new, it
                # stop on the alignment itself: with netrep's weights the reported value is
                # not stationary in T, so the objective alone would stop too early
                if step <= self.tol * np.sqrt(T.shape[0]):
                    converged = True
                    break
        m = mx.shape[0]
        d2 = alpha * float(np.sum((mx - my @ T) ** 2)) / m
        if sx is not None:
            nuc = np.linalg.svd(sx @ T.T @ sy, compute_uv=False).sum()
            bures = np.trace(cx, axis1=1, axis2=2).sum() + np.trace(cy, axis1=1, axis2=2).sum()
            d2 += (2.0 - alpha) * float(bures - 2.0 * nuc) / m
        # rounding can leave a tiny negative d² for identical inputs
        return Score(
            float(np.sqrt(max(d2, 0.0))),
            details={"iterations": iterations, "converged": converged, "conditions": m},
        )

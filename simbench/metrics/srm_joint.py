"""SRM as a baseline over all models of a relation at once (Lu et al. 2018: one shared
response model for N networks; MATH.md: Alignments, srm; SRM fit quality).

:func:`srm_joint` fits one deterministic SRM (:func:`simbench.alignments.srm.solve_srm`,
PCA initialisation) to the responses ``X_m (n, d_m)`` of *all* N models to the same probe
images, on a training part of the images (:func:`simbench.metrics.srm.split_indices`),
each model's columns centred by their training mean; this gives one map ``W_m (d_m, k)``
(orthonormal columns) per model into a common ``k``-dimensional space. Everything is then
scored on the held-out images, each model centred by its own held-out mean (``Xc_m``),
with the held-out shared-space responses ``S_m = Xc_m W_m``:

- ``variance_explained``: the N-network score of the ``srm`` metric,
  ``||Σ_m S_m||² / (N Σ_m ||Xc_m||²)``;
- per pair ``(a, b)``, from the *joint* maps (MATH.md is silent on a pair score from an
  N-network fit; we take the two natural ones):

  * ``shared_correlation`` = ``⟨S_a, S_b⟩ / (||S_a|| ||S_b||)`` (Frobenius): 1 when the
    two models are orthogonal images of one representation within the shared space, ≈ 0
    (± 1/√(n_test·k)) for unrelated models (held out, so the fit cannot inflate it): the
    baseline similarity, with chance at 0;
  * ``variance_explained`` = ``||S_a + S_b||² / (2 (||Xc_a||² + ||Xc_b||²))``, the ``srm``
    metric's score of the pair with the joint maps (chance ``k/(2d)`` for isotropic noise:
    not chance-corrected, as that metric).

Differences from fitting pairs: every pair is compared in the same space, fitted with
the evidence of all N models (Lu et al.: the shared space of a group), so pair scores are
consistent with each other; a pair score depends on the other models of the relation.

Cost: with ``D = Σ d_m`` and ``n`` training images, one SRM fit costs ``O(n D k)`` per
iteration (``O(D² k)`` when ``n ≥ D``) plus N SVDs of ``(d_m, k)``; memory holds the
centred ``(n, D)`` concatenation (or its ``D × D`` cross-product), so flattened maps of
many models should be reduced first (pooled features or a PCA).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simbench.metrics.srm import fit_split_srm
from simbench.numerics.arrays import ArrayLike, as_matrix

__all__ = ["SRMJoint", "srm_joint"]


@dataclass
class SRMJoint:
    """Result of :func:`srm_joint` (module docstring).

    ``W[m]`` ``(d_m, k)`` and ``means[m]`` (training means) map a model's responses into
    the shared space: ``(X − means[m]) @ W[m]``. ``pairs[(a, b)]`` (``a`` before ``b`` in
    ``models``) holds ``shared_correlation`` and ``variance_explained``.
    """

    models: list[str]
    W: dict[str, np.ndarray]
    means: dict[str, np.ndarray]
    k: int
    variance_explained: float
    variance_explained_train: float
    pairs: dict[tuple[str, str], dict[str, float]]
    n_train: int
    n_test: int
    n_iter: int
    converged: bool
    details: dict[str, Any] = field(default_factory=dict)

    def similarity(self, a: str, b: str, score: str = "shared_correlation") -> float:
        """The pair score of models ``a`` and ``b`` (either order; 1.0 for ``a == b``)."""
        if a == b:
            if a not in self.W:
                raise KeyError(a)
            return 1.0
        key = (a, b) if (a, b) in self.pairs else (b, a)
        return self.pairs[key][score]

    def transform(self, model: str, X: ArrayLike) -> np.ndarray:
        """``model``'s responses ``X (n, d_m)`` in the shared space (training-mean centred)."""
        X = as_matrix(X, "X")
        W = self.W[model]
        if X.shape[1] != W.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features; {model!r} has {W.shape[0]}")
        return (X - self.means[model]) @ W

    def table(self) -> list[dict[str, Any]]:
        """One row per pair: ``model_a``, ``model_b`` and the pair scores."""
        return [{"model_a": a, "model_b": b, **s} for (a, b), s in self.pairs.items()]


def _sq(M: np.ndarray) -> float:
    return float(np.vdot(M, M))


def srm_joint(
    reps: Mapping[str, ArrayLike],
    k: int | None = None,
    test_fraction: float = 0.5,
    seed: int = 0,
    max_iter: int = 10,
    tol: float = 1e-10,
) -> SRMJoint:
    """One SRM over all N ≥ 2 models' responses ``{model: X (n, d_m)}`` to the same
    images (rows paired), scored per pair in the shared space (module docstring).

    ``k`` defaults to ``min(min_m d_m, n_train − 1)`` (as the ``srm`` metric);
    ``test_fraction`` and ``seed`` set the train/held-out split of the images;
    ``max_iter``/``tol`` the SRM iterations (BrainIAK's default of 10).
    """
    if not isinstance(reps, Mapping) or len(reps) < 2:
        raise ValueError("srm_joint needs a mapping {model: X} of N >= 2 representations")
    models = [str(m) for m in reps]
    if len(set(models)) != len(models):
        raise ValueError(f"model names must be distinct as strings; got {models}")
    fit = fit_split_srm(
        list(reps.values()), [f"reps[{m!r}]" for m in models], k, test_fraction, seed,
        max_iter, tol,
    )  # fmt: skip
    arrays, train, test, means, sol = fit.arrays, fit.train, fit.test, fit.means, fit.sol
    N, k, total_train = len(arrays), fit.k, fit.total_train

    Xt = [X[test] - X[test].mean(axis=0) for X in arrays]
    norms = [_sq(X) for X in Xt]
    if sum(norms) <= 0.0:
        raise ValueError("every representation is constant on the held-out images")
    shared = [X @ W for X, W in zip(Xt, sol.W, strict=True)]
    explained = _sq(sum(shared[1:], shared[0].copy())) / (N * sum(norms))
    sn = [np.sqrt(_sq(S)) for S in shared]

    pairs: dict[tuple[str, str], dict[str, float]] = {}
    for i, j in itertools.combinations(range(N), 2):
        inner = float(np.vdot(shared[i], shared[j]))
        denom = sn[i] * sn[j]
        corr = inner / denom if denom > 0 else float("nan")
        total = norms[i] + norms[j]
        ve = _sq(shared[i] + shared[j]) / (2.0 * total) if total > 0 else float("nan")
        pairs[models[i], models[j]] = {
            "shared_correlation": float(np.clip(corr, -1.0, 1.0)),
            "variance_explained": min(float(ve), 1.0),
        }
    return SRMJoint(
        models=models,
        W=dict(zip(models, sol.W, strict=True)),
        means=dict(zip(models, means, strict=True)),
        k=int(k),
        variance_explained=min(float(explained), 1.0),
        variance_explained_train=1.0 - sol.objective[-1] / total_train,
        pairs=pairs,
        n_train=int(train.size),
        n_test=int(test.size),
        n_iter=sol.n_iter,
        converged=sol.converged,
    )

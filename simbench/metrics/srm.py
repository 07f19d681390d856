"""SRM fit quality (MATH.md: SRM fit quality; SRM paper §3, Lu et al. 2018).

The samples are split into a training and a held-out part (:func:`split_indices`).
Deterministic SRM (:mod:`simbench.alignments.srm`, PCA initialisation) is fitted on the
training part, each network's columns centred by their training mean, for at most
``max_iter = 10`` iterations by default (BrainIAK's ``DetSRM`` default). Each costs
``N`` SVDs of ``(d_i, k)`` matrices, and on weakly related representations the
iterations converge slowly (hundreds) while the held-out score moves by only ~1e-3
beyond the tenth (the training objective is being over-fitted by then); pass a larger
``max_iter`` to run to ``tol``; ``details`` report ``n_iter`` and ``converged``.

On the held-out part, with each network's columns centred by their own (held-out)
mean, ``Xc_i``:

- **variance explained** (the score): the shared response is re-estimated from the
  held-out data, ``S = (1/N) Σ_i Xc_i W_i``, and
  ``1 − Σ_i ||Xc_i − S W_iᵀ||² / Σ_i ||Xc_i||² = ||Σ_i Xc_i W_i||² / (N Σ_i ||Xc_i||²)``.
  It is 1 when the networks are orthogonal images of one representation. With ``k = d``
  and unrelated networks it is about ``1/N`` (``k/(N d)`` for isotropic noise and
  smaller ``k``): the score is not chance-corrected.
- **iRSM-vs-wRSM correlation** (details ``irsm_wrsm_corr``): the SRM paper's RSM of
  ``A`` is ``AᵀA`` for column-normalised ``A`` (samples as columns there); here the RSM
  of a network is the ``n×n`` matrix of cosines between its held-out response patterns
  (rows of ``Xc_i``). With ``U_i`` the row-normalised ``Xc_i`` (native space) and
  ``V_i`` the row-normalised ``Xc_i W_i`` (shared space), the mean within-network RSM
  is ``wRSM = (1/N) Σ_i U_i U_iᵀ`` and the mean inter-network RSM in the shared space
  is ``iRSM = 1/(N(N−1)) Σ_{i≠j} V_i V_jᵀ`` (symmetric, as every ordered pair is
  included). The detail is the Pearson correlation of their strict upper triangles,
  computed from the ``n×n`` matrices when ``n < Σ d_i`` and otherwise from ``(d × d)``-sized
  products without forming any ``n×n`` matrix (:func:`irsm_wrsm_correlation`).
  ``irsm_wrsm_corr_native`` is the same with ``V_i = U_i`` (no alignment; only when all
  widths agree), the paper's "native space" baseline.

  MATH.md is silent on the similarity; the paper says "correlation", i.e. Pearson
  across features, which subtracts each pattern's mean over features and so is not
  invariant to rotations of a network's feature basis, whereas SRM is. The default
  ``rsm="cosine"`` (on column-centred data: the paper's ``AᵀA``) keeps the detail
  rotation-invariant; ``rsm="correlation"`` gives the paper's Pearson version. A
  pattern whose norm is 0 (after that centring) has all its similarities set to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt, confloat

from simbench.alignments.srm import CrossProduct, resolve_k, solve_srm
from simbench.metrics.base import Metric
from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired
from simbench.plugin import Invariance, Score

#: the fewest samples: 3 held out (so the RSMs have 3 off-diagonal pairs), 2 for training
MIN_SAMPLES = 5


def split_indices(
    n: int, test_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/held-out split of ``n`` samples: ``(train, test)``, each sorted.

    ``perm = numpy.random.default_rng(seed).permutation(n)``; the first
    ``n_test = round(test_fraction · n)`` entries of ``perm``, clipped to ``[3, n − 2]``,
    are held out and the rest train.
    """
    if n < MIN_SAMPLES:
        raise ValueError(f"SRM fit quality needs at least {MIN_SAMPLES} samples; got {n}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1; got {test_fraction}")
    n_test = min(max(round(test_fraction * n), 3), n - 2)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _rows_normalised(Z: np.ndarray, rsm: str) -> np.ndarray:
    if rsm == "correlation":
        Z = Z - Z.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(Z, axis=1)
    scale = np.zeros_like(norms)
    ok = norms > np.finfo(float).tiny
    scale[ok] = 1.0 / norms[ok]
    return Z * scale[:, None]


def _sq(M: np.ndarray) -> float:
    return float(np.vdot(M, M))


def irsm_wrsm_correlation(U: Sequence[np.ndarray], V: Sequence[np.ndarray]) -> float | None:
    """Pearson correlation of the strict upper triangles of ``wRSM`` and ``iRSM``.

    ``wRSM = (1/N) Σ_i U_i U_iᵀ`` and ``iRSM = 1/(N(N−1)) Σ_{i≠j} V_i V_jᵀ`` for
    row-normalised ``U_i (n, d_i)`` and ``V_i (n, k)``. With fewer patterns than features
    (``n < Σ d_i``) the two ``n×n`` matrices are formed (``O(n² Σ d_i)``); otherwise every
    sum over their entries is reduced to Frobenius norms of ``d×d``-sized products
    (``O(n (Σ d_i)²)``, memory independent of ``n``). Both are exact. ``None`` when either
    triangle is constant (the correlation is undefined).
    """
    return _rsm_corr(np.hstack(list(U)), np.hstack(list(V)), len(U))


def _rsm_corr(
    Ucat: np.ndarray, Vcat: np.ndarray, N: int, memo: dict[str, np.ndarray] | None = None
) -> float | None:
    """:func:`irsm_wrsm_correlation` of ``Ucat = [U_1 …]`` and ``Vcat = [V_1 …]``.

    ``memo`` keeps the products of ``Ucat`` alone between calls with the same ``Ucat``
    (the metric's shared-space and native-space details); ``Vcat is Ucat`` reuses them.
    """
    memo = {} if memo is None else memo
    same = Vcat is Ucat
    n, k = Ucat.shape[0], Vcat.shape[1] // N
    c = 1.0 / (N * (N - 1))
    Vs = [Vcat[:, j * k : (j + 1) * k] for j in range(N)]
    Vsum = sum(Vs[1:], Vs[0].copy())
    if n < Ucat.shape[1]:
        if "A" not in memo:
            memo["A"] = (Ucat @ Ucat.T) / N
        A = memo["A"]
        B = c * (Vsum @ Vsum.T - (N * A if same else Vcat @ Vcat.T))
        return _upper_triangle_corr(
            n,
            float(A.sum()),
            float(B.sum()),
            _sq(A),
            _sq(B),
            float(np.vdot(A, B)),
            np.diag(A),
            np.diag(B),
        )
    # wRSM
    diag_a = np.einsum("ij,ij->i", Ucat, Ucat) / N
    sum_a = _sq(Ucat.sum(axis=0)) / N
    if "Gu" not in memo:
        memo["Gu"] = Ucat.T @ Ucat
    Gu = memo["Gu"]
    norm_a = _sq(Gu) / N**2
    # iRSM; Gv's blocks are V_jᵀ V_l, ``rows[j]`` = V_jᵀ Vsum
    Gv = Gu if same else Vcat.T @ Vcat
    diag_b = c * (np.einsum("ij,ij->i", Vsum, Vsum) - np.einsum("ij,ij->i", Vcat, Vcat))
    sum_b = c * (_sq(Vsum.sum(axis=0)) - sum(_sq(Vj.sum(axis=0)) for Vj in Vs))
    rows = [Gv[j * k : (j + 1) * k].reshape(k, N, k).sum(axis=1) for j in range(N)]
    norm_b = c**2 * (_sq(sum(rows)) - 2.0 * sum(_sq(R) for R in rows) + _sq(Gv))
    # <wRSM, iRSM> = (c/N) (||Σ_j H_j||² − Σ_j ||H_j||²), H_j = Ucatᵀ V_j
    Hs = [Gu[:, j * k : (j + 1) * k] if same else Ucat.T @ Vj for j, Vj in enumerate(Vs)]
    inner = c / N * (_sq(sum(Hs[1:], Hs[0].copy())) - sum(_sq(Hj) for Hj in Hs))
    return _upper_triangle_corr(n, sum_a, sum_b, norm_a, norm_b, inner, diag_a, diag_b)


def _upper_triangle_corr(
    n: int,
    sum_a: float,
    sum_b: float,
    norm_a: float,
    norm_b: float,
    inner: float,
    diag_a: np.ndarray,
    diag_b: np.ndarray,
) -> float | None:
    """Pearson correlation of the strict upper triangles of symmetric ``A``, ``B`` (n×n)
    from the sums of all their entries, of their squares and of ``A∘B``, and their
    diagonals; ``None`` when either triangle is constant."""
    m = n * (n - 1) / 2.0  # both symmetric: the strict upper triangle is half the off-diagonal
    mean_a = 0.5 * (sum_a - diag_a.sum()) / m
    mean_b = 0.5 * (sum_b - diag_b.sum()) / m
    sq_a = 0.5 * (norm_a - _sq(diag_a)) / m  # mean squared entry
    sq_b = 0.5 * (norm_b - _sq(diag_b)) / m
    var_a, var_b = sq_a - mean_a**2, sq_b - mean_b**2
    cov = 0.5 * (inner - float(diag_a @ diag_b)) / m - mean_a * mean_b
    floor = 64 * np.finfo(float).eps
    if not (var_a > floor * sq_a and var_b > floor * sq_b):  # constant (or all-zero) triangle
        return None
    return float(np.clip(cov / np.sqrt(var_a * var_b), -1.0, 1.0))


@dataclass(frozen=True)
class SplitFit:
    """One SRM fitted on the training rows of N paired representations (:func:`fit_split_srm`)."""

    arrays: list[np.ndarray]
    dims: list[int]
    train: np.ndarray
    test: np.ndarray
    k: int
    means: Any  # the training means of each representation
    total_train: float
    sol: Any


def fit_split_srm(
    Xs: Sequence[ArrayLike],
    names: Sequence[str],
    k: int | None,
    test_fraction: float,
    seed: int,
    max_iter: int,
    tol: float,
) -> SplitFit:
    """Validate N paired representations, split their rows into train/held-out
    (:func:`split_indices`) and fit one SRM on the training rows (shared by the ``srm``
    metric's fit quality and :func:`simbench.metrics.srm_joint.srm_joint`).

    ``k`` defaults to at most the rank the centred training data can have, so that every
    W_i lies in its network's training row space (identified) when n_train <= d_i.
    """
    arrays = [as_matrix(X, name, min_rows=MIN_SAMPLES) for X, name in zip(Xs, names, strict=True)]
    for X, name in zip(arrays[1:], names[1:], strict=True):
        check_paired(arrays[0], X, (names[0], name))
    dims = [X.shape[1] for X in arrays]
    train, test = split_indices(arrays[0].shape[0], test_fraction, seed)
    k = resolve_k(k, dims) if k is not None else min(min(dims), train.size - 1)
    C, means = CrossProduct.of([X[train] for X in arrays], center=True)
    total_train = C.block_trace()
    if total_train <= 0.0:
        raise ValueError("every representation is constant on the training samples")
    sol = solve_srm(C, dims, k, max_iter=max_iter, tol=tol, init="pca")
    return SplitFit(arrays, dims, train, test, k, means, total_train, sol)


def srm_fit_quality(
    Xs: Sequence[ArrayLike],
    k: int | None = None,
    test_fraction: float = 0.5,
    seed: int = 0,
    max_iter: int = 10,
    tol: float = 1e-10,
    rsm: str = "cosine",
) -> dict[str, Any]:
    """SRM fit quality of ``N ≥ 2`` networks' responses to the same samples (module doc).

    ``k`` defaults to ``min(min_i d_i, n_train − 1)``, the most the centred training data
    can identify.

    Returns a dict: ``variance_explained`` (held out), ``irsm_wrsm_corr`` (held out,
    shared space; ``None`` if undefined), ``irsm_wrsm_corr_native`` (``None`` unless all
    widths agree), ``variance_explained_train`` (``1 − objective / Σ||X_i||²`` on the
    training part), ``k``, ``n_train``, ``n_test``, ``n_iter``, ``converged``.
    """
    if isinstance(Xs, np.ndarray) or not isinstance(Xs, Sequence) or len(Xs) < 2:
        raise ValueError("srm_fit_quality needs a list of N >= 2 representations [X_1, ...]")
    if rsm not in ("cosine", "correlation"):
        raise ValueError(f"rsm must be 'cosine' or 'correlation'; got {rsm!r}")
    fit = fit_split_srm(
        Xs, [f"Xs[{i}]" for i in range(len(Xs))], k, test_fraction, seed, max_iter, tol
    )
    arrays, dims, train, test, sol = fit.arrays, fit.dims, fit.train, fit.test, fit.sol
    N, k, total_train = len(arrays), fit.k, fit.total_train

    Xt = [X[test] - X[test].mean(axis=0) for X in arrays]
    total_test = sum(_sq(X) for X in Xt)
    if total_test <= 0.0:
        raise ValueError("every representation is constant on the held-out samples")
    shared = [X @ W for X, W in zip(Xt, sol.W, strict=True)]
    explained = _sq(sum(shared[1:], shared[0].copy())) / (N * total_test)

    Ucat = np.hstack([_rows_normalised(X, rsm) for X in Xt])
    Vcat = np.hstack([_rows_normalised(Z, rsm) for Z in shared])
    memo: dict[str, np.ndarray] = {}
    corr = _rsm_corr(Ucat, Vcat, N, memo)
    # native space (the paper's baseline): V_i = U_i
    native = _rsm_corr(Ucat, Ucat, N, memo) if len(set(dims)) == 1 else None
    return {
        "variance_explained": min(float(explained), 1.0),  # <= 1 but for rounding
        "irsm_wrsm_corr": corr,
        "irsm_wrsm_corr_native": native,
        "variance_explained_train": 1.0 - sol.objective[-1] / total_train,
        "k": k,
        "n_train": int(train.size),
        "n_test": int(test.size),
        "n_iter": sol.n_iter,
        "converged": sol.converged,
    }


class SRMFitQuality(Metric):
    """Held-out variance explained by a shared response model (Lu et al. 2018, §3).

    ``value`` is the fraction of held-out variance explained by the shared space;
    ``details`` hold the iRSM-vs-wRSM correlation and the fit diagnostics (module
    docstring, :func:`srm_fit_quality`). Parameters: ``k`` (shared dimension, default
    ``min(d_x, d_y, n_train − 1)``), ``test_fraction`` and ``seed`` (the split), ``max_iter`` and
    ``tol`` (SRM iterations), ``rsm`` (the pattern similarity of the detail).
    Invariant to orthogonal maps (hence permutations) of either network's features and
    to translations; not to isotropic scaling of one network, which reweights the two
    networks in both the fit and the variance shares. With fewer training samples than
    features, ``k`` defaults to ``n_train − 1``: a larger ``k`` leaves ``W_i``
    unidentified on directions without training variance, and the (deterministic)
    completion then makes the score depend on the feature basis.
    """

    name = "srm"
    symmetric = True
    higher_is_better = True
    streaming = False
    cost = "moments"
    min_samples = MIN_SAMPLES
    invariances = frozenset({Invariance.PERMUTATION, Invariance.ORTHOGONAL, Invariance.TRANSLATION})

    def __init__(
        self,
        k: PositiveInt | None = None,
        test_fraction: confloat(gt=0.0, lt=1.0) = 0.5,  # type: ignore[valid-type]
        seed: int = 0,
        max_iter: NonNegativeInt = 10,
        tol: NonNegativeFloat = 1e-10,
        rsm: Literal["cosine", "correlation"] = "cosine",
    ):
        self.k = k
        self.test_fraction = test_fraction
        self.seed = seed
        self.max_iter = max_iter
        self.tol = tol
        self.rsm = rsm

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> Score:
        out = srm_fit_quality(
            [X, Y],
            k=self.k,
            test_fraction=self.test_fraction,
            seed=self.seed,
            max_iter=self.max_iter,
            tol=self.tol,
            rsm=self.rsm,
        )
        value = out.pop("variance_explained")
        return Score(value, None, out)

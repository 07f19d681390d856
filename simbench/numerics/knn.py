"""Exact k-nearest neighbours of the rows of a representation, computed in row blocks.

The neighbourhood metrics (``simbench.metrics.neighbours``) compare the kNN sets of the
samples (rows) of two representations. Here ``X (n, d)`` is split into blocks of
``block_size`` rows; each block's ``block_size × n`` similarity rows are formed with one
matrix product, reduced to the ``k`` nearest indices, and dropped, so peak memory is
``O(n·k + block_size·n)`` floats: the ``n×k`` result plus about two float64 blocks and
a few boolean masks of one block (never the full ``n×n`` matrix unless
``block_size ≥ n``). The default ``block_size`` makes one block ``2²²`` floats (32 MiB).
The search is exact (no approximate index).

Distances (``distance``):

- ``"cosine"``: ``1 − cos(x_i, x_j)``; rows are L2-normalised once, and neighbours
  are ranked by the inner product of the normalised rows (platonic-rep's
  ``F.normalize`` + ``feats @ feats.T``; scikit-learn's ``metric="cosine"``).
- ``"inner"``: ranked by the raw inner product ``x_i·x_j`` (largest first).
- ``"euclidean"``: ``‖x_i − x_j‖``; ranked by ``‖x_j‖² − 2 x_i·x_j`` on the
  column-centred rows (the row's own ``‖x_i‖²`` does not change its ranking; centring
  is exact for distances and keeps the cancellation small).

Ties: candidates at equal ranking key are taken, and ordered, by ascending sample index,
so the result is deterministic (platonic-rep's ``argsort``/``topk`` and scikit-learn
leave tie order unspecified). The sample itself is excluded unless ``include_self``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Distance = Literal["cosine", "inner", "euclidean"]
DISTANCES: tuple[str, ...] = ("cosine", "inner", "euclidean")

#: floats in one block of the similarity matrix when ``block_size`` is not given (32 MiB)
BLOCK_FLOATS = 1 << 22


def default_block_size(n: int, width: int | None = None) -> int:
    """Rows per block so that one ``block × width`` float64 block holds ``BLOCK_FLOATS``."""
    return max(1, min(n, BLOCK_FLOATS // max(1, width if width is not None else n)))


def check_k(k: int, n: int, name: str = "k") -> None:
    """``ValueError`` unless ``1 ≤ k < n`` (a sample has ``n − 1`` other samples)."""
    if not 1 <= k < n:
        raise ValueError(f"{name} must satisfy 1 <= {name} < n = {n} (number of samples); got {k}")


def prepare_rows(X: np.ndarray, distance: str, name: str = "X") -> np.ndarray:
    """The rows the search works on: unit rows (cosine), centred (euclidean), or ``X``."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}; got {distance!r}")
    if distance == "cosine":
        norms = np.linalg.norm(X, axis=1)
        bad = np.flatnonzero(norms <= np.finfo(float).tiny)
        if bad.size:
            raise ValueError(
                f"{bad.size} row(s) of {name} are all zero (first: sample {int(bad[0])}); "
                "their cosine similarity is undefined"
            )
        return X / norms[:, None]
    if distance == "euclidean":
        return X - X.mean(axis=0)
    return X


def _ranking_key(Z: np.ndarray, rows: slice, distance: str, sq: np.ndarray | None) -> np.ndarray:
    """``(b, n)`` keys of the prepared rows ``Z[rows]`` against all rows; smaller = nearer."""
    S = Z[rows] @ Z.T
    if distance == "euclidean":
        S *= -2.0
        S += sq[None, :]
        return S
    np.negative(S, out=S)
    return S


def _select(key: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` smallest keys of each row, nearest first, ties by ascending index."""
    b = key.shape[0]
    kth = np.partition(key, k - 1, axis=1)[:, k - 1 : k]
    less = key < kth
    need = k - less.sum(axis=1, keepdims=True)
    eq = key == kth
    tied = np.flatnonzero(eq.sum(axis=1) > need[:, 0])  # more ties at the k-th key than places
    if tied.size:
        eq[tied] &= np.cumsum(eq[tied], axis=1) <= need[tied]
    take = less | eq
    cols = np.nonzero(take)[1].reshape(b, k)  # ascending index within each row
    order = np.argsort(np.take_along_axis(key, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def knn_indices(
    Z: np.ndarray,
    k: int,
    *,
    distance: str = "cosine",
    include_self: bool = False,
    block_size: int | None = None,
) -> np.ndarray:
    """``(n, k)`` indices of the ``k`` nearest rows of each row, nearest first.

    ``Z`` is already prepared by :func:`prepare_rows` for ``distance``. Memory is
    ``O(n·k + block_size·n)``; ties are broken by ascending index (module docstring).
    """
    n = Z.shape[0]
    if not 1 <= k <= (n if include_self else n - 1):
        raise ValueError(f"k must satisfy 1 <= k < n = {n} (number of samples); got {k}")
    block = default_block_size(n) if block_size is None else int(block_size)
    if block < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    sq = np.einsum("ij,ij->i", Z, Z) if distance == "euclidean" else None
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        key = _ranking_key(Z, slice(start, stop), distance, sq)
        if not include_self:
            r = np.arange(stop - start)
            key[r, start + r] = np.inf
        out[start:stop] = _select(key, k)
    return out


def row_inner(Z: np.ndarray, idx: np.ndarray, block_size: int | None = None) -> np.ndarray:
    """``(n, m)`` inner products ``z_i · z_{idx[i, j]}``, gathered in row blocks."""
    n, m = idx.shape
    block = default_block_size(n, m * Z.shape[1]) if block_size is None else block_size
    out = np.empty((n, m))
    for start in range(0, n, block):
        stop = min(n, start + block)
        out[start:stop] = np.einsum("id,ijd->ij", Z[start:stop], Z[idx[start:stop]])
    return out


def row_distances(Z: np.ndarray, idx: np.ndarray, distance: str) -> np.ndarray:
    """``(n, m)`` distances ``d(x_i, x_{idx[i, j]})`` on prepared rows ``Z``.

    Cosine: ``1 − ẑ_i·ẑ_j`` clipped to ``[0, 2]`` (scikit-learn's ``cosine_distances``);
    euclidean: ``‖z_i − z_j‖`` from the differences (no cancellation).
    """
    if distance == "cosine":
        return np.clip(1.0 - row_inner(Z, idx), 0.0, 2.0)
    if distance != "euclidean":
        raise ValueError(f"distance must be 'cosine' or 'euclidean' here; got {distance!r}")
    n, m = idx.shape
    block = default_block_size(n, m * Z.shape[1])
    out = np.empty((n, m))
    for start in range(0, n, block):
        stop = min(n, start + block)
        diff = Z[idx[start:stop]] - Z[start:stop, None, :]
        out[start:stop] = np.sqrt(np.einsum("ijd,ijd->ij", diff, diff))
    return out


def overlap_counts(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``|A_i ∩ B_i|`` per row for two ``(n, k)`` index arrays without repeats in a row."""
    s = np.sort(np.concatenate([A, B], axis=1), axis=1)
    return (s[:, 1:] == s[:, :-1]).sum(axis=1)


def union_rows(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise unions ``A_i ∪ B_i`` as a padded ``(n, 2k)`` index array and its mask."""
    s = np.sort(np.concatenate([A, B], axis=1), axis=1)
    valid = np.ones(s.shape, dtype=bool)
    valid[:, 1:] = s[:, 1:] != s[:, :-1]
    return s, valid


def matched_ranks(A: np.ndarray, B: np.ndarray, chunk: int | None = None):
    """Rows and 0-based positions ``(i, a, b)`` with ``A[i, a] == B[i, b]``.

    Works in row chunks of ``O(chunk·k²)`` booleans; rows ascending, then ``a``.
    """
    n, k = A.shape
    chunk = default_block_size(n, k * k) if chunk is None else chunk
    rows, pa, pb = [], [], []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        i, a, b = np.nonzero(A[start:stop, :, None] == B[start:stop, None, :])
        rows.append(i + start)
        pa.append(a)
        pb.append(b)
    return np.concatenate(rows), np.concatenate(pa), np.concatenate(pb)

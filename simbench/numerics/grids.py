"""Conv maps of different spatial sizes on one grid (for DFT-SVCCA between any two layers).

``svcca_dft`` needs equal ``(H, W)`` (SVCCA §3.1: one C×C block per frequency of a shared
grid); its error message says "pool or crop one layer to the other's (H, W) first". In a
layer × layer matrix simbench pools: every conv map is adaptive-average-pooled to the
*matrix grid* — the smallest ``H`` and smallest ``W`` among the selected conv layers of the
two models — so all cells are computed at one resolution (as the ``pooled`` rows use one
pooling throughout); a 2-D layer (a Linear's ``(B, D)``) is a ``1 × 1`` map, and its
partner is pooled to ``1 × 1`` (the global average: DFT-SVCCA is then plain SVCCA of the
pooled features). Average pooling is a linear map of each channel, so it keeps the
representation's channel structure; it discards the frequencies above the coarser grid's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["append_matrix_features", "common_grid", "pool_map", "to_common_grid"]


def common_grid(shapes: Iterable[tuple[int, ...]]) -> tuple[int, int] | None:
    """The elementwise-smallest ``(H, W)`` of the 4-D shapes (``None`` if there is none)."""
    hw = [tuple(s[-2:]) for s in shapes if len(s) == 4]
    if not hw:
        return None
    return min(h for h, _ in hw), min(w for _, w in hw)


def pool_map(x, grid: tuple[int, int] | None):
    """``(B, C, H, W)`` (numpy or torch) adaptive-average-pooled to ``grid`` (same type);
    2-D inputs and ``grid=None`` are returned unchanged."""
    import torch
    import torch.nn.functional as F

    if grid is None or x.ndim != 4 or tuple(x.shape[-2:]) == tuple(grid):
        return x
    if isinstance(x, np.ndarray):
        return F.adaptive_avg_pool2d(torch.from_numpy(x), grid).numpy()
    return F.adaptive_avg_pool2d(x, grid)


def to_common_grid(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X, Y`` as ``(B, C, H, W)`` on their common grid (2-D inputs become ``1 × 1`` maps)."""
    X = X[:, :, None, None] if X.ndim == 2 else X
    Y = Y[:, :, None, None] if Y.ndim == 2 else Y
    grid = common_grid([X.shape, Y.shape])
    return pool_map(X, grid), pool_map(Y, grid)


def append_matrix_features(
    out: dict[str, list[np.ndarray]],
    sides: Iterable[tuple[str, Any, Iterable[str]]],
    flat: bool,
    maps: bool,
    grid: tuple[int, int] | None,
) -> None:
    """One batch of layer-matrix features, appended to ``out`` as float64 host arrays.

    ``sides``: ``(side, {layer: activation}, layer names)``. Under ``side/layer``: the
    activation flattened to ``C·H·W`` (``flat``, Kornblith's convention) or averaged over
    positions; with ``maps``, under ``side/map/layer`` the map pooled to ``grid``
    (:func:`pool_map`, for DFT-SVCCA in the matrix).
    """
    for side, values, names in sides:
        for n in names:
            y = values[n]
            f = y.reshape(y.shape[0], -1) if flat or y.ndim != 4 else y.mean(dim=(2, 3))
            out.setdefault(f"{side}/{n}", []).append(f.double().cpu().numpy())
            if maps:
                out.setdefault(f"{side}/map/{n}", []).append(
                    pool_map(y, grid).double().cpu().numpy()
                )

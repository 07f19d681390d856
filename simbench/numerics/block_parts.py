"""Block moments split into one model's side and one pair's cross terms (many-model scoring).

A pair's :class:`~simbench.numerics.blocks.BlockMoments` hold, per probe block, the
sample count, both means, ``XᵀX``, ``YᵀY`` and ``XᵀY`` (and, for the unbiased HSIC, the
fourth-order sums), plus ``R`` derangement cross-moments. Of these only ``XᵀY``, the
nulls and the fourth-order *cross* sums depend on the pair: over ``N`` models the side
terms are the same ``N`` computations repeated ``N − 1`` times each. Here:

- :class:`SideBlocks` accumulates one model's side (per block: ``n``, mean, centred
  scatter, fourth-order side sums) once per (model, layer, site), and records for every
  accumulated piece (the rows of one batch in one block) whether its scatter was formed
  with the rank-one mean correction (:func:`~simbench.numerics.moments.side_scatter`);
- :class:`CrossBlocks` accumulates a pair's cross terms from the two sides' samples,
  forming each piece's ``XcᵀYc`` exactly as the paired accumulator does (same means, same
  rank-one choice, same Chan merge, same derangements);
- :func:`assemble` gives the :meth:`BlockMoments.to_arrays` arrays of the pair, equal
  (bit for bit: the same floating-point operations in the same order) to those of one
  paired :class:`BlockMoments` fed the same batches.

Cost per pair: the cross products alone (``(1 + R)·n·d_x·d_y``), against
``n·(d_x² + d_y²) + (1 + R)·n·d_x·d_y`` for the paired accumulation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired
from simbench.numerics.blocks import (
    BlockMoments,
    _CrossMoments,
    _scalar_or_array,
    batch_units,
    block_edges,
    block_slices,
    check_null_pairings,
    update_nulls,
)
from simbench.numerics.moments import Moments, cross_scatter, side_scatter

__all__ = ["CrossBlocks", "SideBlocks", "assemble", "paired_blocks"]

_SIDE_H = ("aa", "pxx")  # a side's fourth-order sums (as X; Y's are named bb, pyy)
_CROSS_H = ("ab", "pxy", "pyx")


class SideBlocks:
    """One representation's per-block moments (the side terms of every pair it is in).

    ``update(X, units=k)`` adds a batch of ``k`` images in probe order, as
    :meth:`BlockMoments.update` does for a pair.
    """

    def __init__(self, units: int, blocks: int = 20, fourth: bool = False):
        self.units = int(units)
        self.edges = block_edges(self.units, blocks)
        self.fourth = bool(fourth)
        self.blocks: list[Moments] = [Moments(fourth=self.fourth) for _ in range(int(blocks))]
        self.rank_one: list[bool] = []  # one flag per accumulated piece, in order
        self.per_unit: int | None = None
        self.shift: np.ndarray | None = None
        self._seen = 0
        self._batches = 0

    @property
    def complete(self) -> bool:
        return self._seen == self.units

    def update(self, X: ArrayLike, units: int | None = None) -> SideBlocks:
        Xa = as_matrix(X, "X", min_rows=1)
        u, per = batch_units(Xa.shape[0], units, self.per_unit)
        self.per_unit = per
        start, end = self._seen, self._seen + u
        if end > self.units:
            raise ValueError(f"more than the {self.units} declared probe images were added")
        if self.fourth and self.shift is None:
            self.shift = Xa.mean(axis=0)
            for m in self.blocks:
                m._shift_x = self.shift
        for b, sl in block_slices(self.edges, start, end, per):
            Xs, m = Xa[sl], self.blocks[b]
            mx, xx, rank_one = side_scatter(Xs)
            if self.fourth:
                m._update_fourth(Xs, None, mx, None)
            m._merge_stats(Xs.shape[0], mx, xx, None, None, None)
            m._check_finite()
            self.rank_one.append(rank_one)
        self._seen, self._batches = end, self._batches + 1
        return self

    def to_arrays(self) -> dict[str, np.ndarray]:
        if not self.complete:
            raise ValueError(f"only {self._seen} of the {self.units} probe images were added")
        out = {
            "edges": self.edges.astype(np.int64),
            "n": np.array([m.n for m in self.blocks], dtype=np.int64),
            "meta": np.array([self.per_unit or 1, int(self.fourth), self._batches], np.int64),
            "mean": np.stack([m.mean_x for m in self.blocks]),
            "s": np.stack([m.sxx for m in self.blocks]),
            "rank_one": np.array(self.rank_one, dtype=np.int8),
        }
        if self.fourth:
            out["shift"] = np.asarray(self.shift)
            for k in _SIDE_H:
                out[f"h_{k}"] = np.stack([np.asarray(m._h[k]) for m in self.blocks])
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> SideBlocks:
        edges = np.asarray(arrays["edges"])
        per, fourth, batches = (int(v) for v in arrays["meta"])
        side = cls(int(edges[-1]), len(edges) - 1, bool(fourth))
        side.per_unit, side._seen, side._batches = per, side.units, batches
        side.rank_one = [bool(v) for v in arrays["rank_one"]]
        if side.fourth:
            side.shift = np.array(arrays["shift"])
        for b, m in enumerate(side.blocks):
            m.n = int(arrays["n"][b])
            m.mean_x = np.array(arrays["mean"][b], dtype=np.float64)
            m.sxx = np.array(arrays["s"][b], dtype=np.float64)
            if side.fourth:
                m._shift_x = side.shift
                m._h = {k: _scalar_or_array(arrays[f"h_{k}"][b]) for k in _SIDE_H}
        return side


class CrossBlocks:
    """A pair's cross terms given both sides (:class:`SideBlocks` of the same batches):
    per-block ``XcᵀYc`` (and fourth-order cross sums) and ``null_pairings`` derangement
    cross-moments seeded by ``seed`` (:class:`BlockMoments`'s)."""

    def __init__(self, a: SideBlocks, b: SideBlocks, null_pairings: int = 4, seed: int = 0):
        if not (a.complete and b.complete):
            raise ValueError("both sides must be complete before their cross terms")
        if not np.array_equal(a.edges, b.edges) or a.per_unit != b.per_unit:
            raise ValueError("the two sides were accumulated over different probe blocks")
        if a.fourth != b.fourth or len(a.rank_one) != len(b.rank_one):
            raise ValueError("the two sides were accumulated differently (fourth, batches)")
        R = check_null_pairings(null_pairings)
        self.a, self.b = a, b
        self.seed = int(seed)
        self.fourth = a.fourth
        self.blocks = [_CrossMoments() for _ in a.blocks]
        self.nulls = [_CrossMoments() for _ in range(R)]
        self._piece = 0
        self._seen = 0
        self._batches = 0

    def update(self, X: ArrayLike, Y: ArrayLike, units: int | None = None) -> CrossBlocks:
        Xa, Ya = as_matrix(X, "X", min_rows=1), as_matrix(Y, "Y", min_rows=1)
        check_paired(Xa, Ya)
        u, per = batch_units(Xa.shape[0], units, self.a.per_unit)
        start, end = self._seen, self._seen + u
        if end > self.a.units:
            raise ValueError(f"more than the {self.a.units} declared probe images were added")
        for blk, sl in block_slices(self.a.edges, start, end, per):
            if self._piece >= len(self.a.rank_one):
                raise ValueError("more pieces than the sides were accumulated from")
            Xs, Ys = Xa[sl], Ya[sl]
            mx, my = Xs.mean(axis=0), Ys.mean(axis=0)
            r1x, r1y = self.a.rank_one[self._piece], self.b.rank_one[self._piece]
            acc = self.blocks[blk]
            acc.add(Xs.shape[0], mx, my, cross_scatter(Xs, mx, r1x, Ys, my, r1y))
            if not np.isfinite(acc.sxy).all():
                raise ValueError(
                    "the cross moments of X and Y overflow float64: the inputs are too large "
                    "(magnitude ~1e150 or more); divide them by a constant first"
                )
            if self.fourth:
                xs, ys = Xs - self.a.shift, Ys - self.b.shift
                p, q = np.einsum("ij,ij->i", xs, xs), np.einsum("ij,ij->i", ys, ys)
                for k, v in (("ab", p @ q), ("pxy", xs.T @ q), ("pyx", ys.T @ p)):
                    acc.h[k] = acc.h.get(k, 0.0) + v
            self._piece += 1
        if self.nulls:
            shifts = (self.a.shift, self.b.shift) if self.fourth else None
            update_nulls(self.nulls, Xa, Ya, u, per, self.seed, self._batches, shifts)
        self._seen, self._batches = end, self._batches + 1
        return self

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self._seen != self.a.units or self._piece != len(self.a.rank_one):
            raise ValueError(f"only {self._seen} of the {self.a.units} probe images were added")
        out = {
            "sxy": np.stack([acc.sxy for acc in self.blocks]),
            "meta": np.array([len(self.nulls), self.seed], dtype=np.int64),
        }
        if self.fourth:
            for k in _CROSS_H:
                out[f"h_{k}"] = np.stack([np.asarray(acc.h[k]) for acc in self.blocks])
        if self.nulls:
            out["null_sxy"] = np.stack([acc.sxy for acc in self.nulls])
            if self.fourth:
                for k in _CROSS_H:
                    out[f"null_h_{k}"] = np.stack([np.asarray(acc.h[k]) for acc in self.nulls])
        return out


def assemble(
    prefix: str,
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    cross: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The pair's :meth:`BlockMoments.to_arrays` ``<prefix>_blk_*``/``<prefix>_null_*``
    arrays from the arrays of its two sides (:meth:`SideBlocks.to_arrays`) and of its cross
    terms (:meth:`CrossBlocks.to_arrays`)."""
    if not np.array_equal(a["edges"], b["edges"]) or not np.array_equal(a["n"], b["n"]):
        raise ValueError("the two sides were accumulated over different probe blocks")
    per, fourth, _ = (int(v) for v in a["meta"])
    R, seed = (int(v) for v in cross["meta"])
    p = f"{prefix}_blk_"
    out: dict[str, np.ndarray] = {
        f"{p}edges": np.asarray(a["edges"], dtype=np.int64),
        f"{p}n": np.asarray(a["n"], dtype=np.int64),
        f"{p}meta": np.array([R, seed, per, fourth], dtype=np.int64),
        f"{p}mean_x": np.asarray(a["mean"]),
        f"{p}mean_y": np.asarray(b["mean"]),
        f"{p}sxx": np.asarray(a["s"]),
        f"{p}syy": np.asarray(b["s"]),
        f"{p}sxy": np.asarray(cross["sxy"]),
    }
    if fourth:
        out[f"{p}shift_x"], out[f"{p}shift_y"] = np.asarray(a["shift"]), np.asarray(b["shift"])
        names = {"aa": a["h_aa"], "pxx": a["h_pxx"], "bb": b["h_aa"], "pyy": b["h_pxx"]}
        for k, v in {**names, **{k: cross[f"h_{k}"] for k in _CROSS_H}}.items():
            out[f"{p}h_{k}"] = np.asarray(v)
    if R:
        out[f"{prefix}_null_sxy"] = np.asarray(cross["null_sxy"])
        if fourth:
            for k in _CROSS_H:
                out[f"{prefix}_null_h_{k}"] = np.asarray(cross[f"null_h_{k}"])
    return out


def paired_blocks(
    prefix: str,
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    cross: Mapping[str, np.ndarray],
) -> BlockMoments:
    """The pair's :class:`BlockMoments` from its parts (see :func:`assemble`)."""
    return BlockMoments.from_arrays(prefix, assemble(prefix, a, b, cross))

"""Per-block streaming moments and derangement-null cross-moments (MATH.md: Uncertainty
and chance of one score).

The probe images are split, in probe order, into ``B`` contiguous blocks (all rows of an
image — its sampled positions — fall in its block). :class:`BlockMoments` keeps one
paired :class:`~simbench.numerics.moments.Moments` per block, so memory is
``O(B·d²)`` whatever the number of images, and any second-moment score can be recomputed
with one block left out (Chan's merge solved backwards, see
:meth:`BlockMoments.leave_one_out`) or on a resample of blocks.

It also accumulates, in the same pass, the cross-moments of ``R`` seeded derangements:
B's rows of image ``k`` paired with A's rows of image ``π(k)`` (MATH.md: chance level).
``XᵀX`` and ``YᵀY`` do not change under the re-pairing, so only ``Σ (x_π(k)−x̄)(y_k−ȳ)ᵀ``
(and, for the unbiased HSIC, the three fourth-order cross sums) are kept per derangement.

Choice where MATH.md is silent: streaming cannot hold image ``π(k)`` until image ``k``
arrives, so ``π`` is drawn as a derangement *within each accumulated batch* (still a
derangement of the probe images), from the generator seeded by ``(seed, r, batch index)``.
A batch of a single image cannot be deranged: it keeps its own pairing (documented; the
runner's batches hold ``probe.batch_size`` images, so this can only happen to a last
batch of one image). :meth:`BlockMoments.from_data` with ``chunk=k`` splits arrays into
batches of ``k`` images and gives exactly the runner's statistics.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg.blas import dger

from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired
from simbench.numerics.moments import Moments

#: salt of the derangement generators (keeps them apart from every other use of ``seed``)
_NULL_SALT = 0x6E756C6C


def block_edges(units: int, blocks: int) -> np.ndarray:
    """Boundaries ``(B+1,)`` of ``B`` contiguous blocks of ``units`` images; sizes differ by
    at most one, the first ``units % B`` blocks holding one more (``numpy.array_split``)."""
    if isinstance(blocks, bool) or int(blocks) != blocks or blocks < 2:
        raise ValueError(f"blocks must be an integer >= 2 (for a jackknife); got {blocks!r}")
    if units < blocks:
        raise ValueError(f"{units} probe image(s) cannot fill {blocks} blocks; use fewer blocks")
    q, r = divmod(int(units), int(blocks))
    sizes = np.full(int(blocks), q, dtype=np.int64)
    sizes[:r] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` without fixed point (rejection; on
    average ``e`` draws). ``n = 1`` has none: ``[0]`` is returned (see module docstring)."""
    if n < 1:
        raise ValueError(f"a derangement needs at least one element; got {n}")
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    ar = np.arange(n)
    while True:
        p = rng.permutation(n)
        if not np.any(p == ar):
            return p


def batch_derangement(units: int, seed: int, r: int, batch_index: int) -> np.ndarray:
    """The ``r``-th null re-pairing of one batch of ``units`` images (seeded, deterministic)."""
    ss = np.random.SeedSequence([_NULL_SALT, int(seed), int(r), int(batch_index)])
    return derangement(int(units), np.random.default_rng(ss))


def null_permutation(units: int, seed: int, r: int, chunk: int | None = None) -> np.ndarray:
    """The whole probe set's ``r``-th derangement: :func:`batch_derangement` of each
    consecutive chunk of ``chunk`` images (``None``: one chunk), offsets added."""
    step = units if not chunk else int(chunk)
    parts = []
    for i, start in enumerate(range(0, units, step)):
        size = min(step, units - start)
        parts.append(start + batch_derangement(size, seed, r, i))
    return np.concatenate(parts)


def rows_of(perm: np.ndarray, per_unit: int) -> np.ndarray:
    """Row indices of images ``perm`` when each image owns ``per_unit`` consecutive rows."""
    if per_unit == 1:
        return perm
    return (perm[:, None] * per_unit + np.arange(per_unit)).ravel()


@dataclass
class _CrossMoments:
    """Cross-moments of one pairing of X's and Y's rows: a derangement's here, a block's
    own in :mod:`simbench.numerics.block_parts` (Chan's merge of the centred cross
    product, as :meth:`Moments._merge_stats` merges it)."""

    n: int = 0
    mean_x: np.ndarray | None = None
    mean_y: np.ndarray | None = None
    sxy: np.ndarray | None = None
    h: dict[str, Any] = field(default_factory=dict)

    def add(self, nb: int, mx: np.ndarray, my: np.ndarray, xy: np.ndarray) -> None:
        if self.n == 0:
            self.n, self.mean_x, self.mean_y, self.sxy = nb, mx, my, xy
            return
        n = self.n + nb
        dx, dy = mx - self.mean_x, my - self.mean_y
        self.sxy = self.sxy + xy + (self.n * nb / n) * np.outer(dx, dy)
        self.mean_x = self.mean_x + dx * (nb / n)
        self.mean_y = self.mean_y + dy * (nb / n)
        self.n = n


def check_null_pairings(null_pairings: Any) -> int:
    """``null_pairings`` as an ``int`` (``ValueError`` unless a non-negative integer)."""
    if isinstance(null_pairings, bool) or int(null_pairings) != null_pairings:
        raise ValueError(f"null_pairings must be an integer; got {null_pairings!r}")
    if null_pairings < 0:
        raise ValueError(f"null_pairings must be >= 0; got {null_pairings}")
    return int(null_pairings)


def batch_units(rows: int, units: int | None, per_unit: int | None) -> tuple[int, int]:
    """``(images, rows per image)`` of a batch of ``rows`` rows holding ``units`` images
    (default: one row each); ``per_unit``: the rows per image of earlier batches."""
    u = rows if units is None else int(units)
    if u < 1 or rows % u:
        raise ValueError(f"a batch of {rows} rows cannot hold {u} images of equal size")
    per = rows // u
    if per_unit is not None and per != per_unit:
        raise ValueError(f"{per} rows per image; earlier batches had {per_unit}")
    return u, per


def block_slices(edges: np.ndarray, start: int, end: int, per: int) -> Iterator[tuple[int, slice]]:
    """``(block, rows)`` of a batch holding images ``start .. end`` (``per`` rows each):
    the rows of the batch that fall in each block, in block order."""
    for b in range(len(edges) - 1):
        lo, hi = max(int(edges[b]), start), min(int(edges[b + 1]), end)
        if lo < hi:
            yield b, slice((lo - start) * per, (hi - start) * per)


def update_nulls(
    nulls: list[_CrossMoments],
    X: np.ndarray,
    Y: np.ndarray,
    u: int,
    per: int,
    seed: int,
    batch_index: int,
    shifts: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Add one batch of ``u`` images to the derangement cross-moments ``nulls``
    (``shifts``: the fourth-order sums' fixed points of X and Y, or ``None``)."""
    mx, my = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - mx, Y - my
    if shifts is not None:
        Xs, Ys = X - shifts[0], Y - shifts[1]
        a, b = np.einsum("ij,ij->i", Xs, Xs), np.einsum("ij,ij->i", Ys, Ys)
    for r, acc in enumerate(nulls):
        idx = rows_of(batch_derangement(u, seed, r, batch_index), per)
        acc.add(X.shape[0], mx, my, Xc[idx].T @ Yc)
        if shifts is not None:
            ap = a[idx]
            for k, v in (("ab", ap @ b), ("pxy", Xs[idx].T @ b), ("pyx", Ys.T @ ap)):
                acc.h[k] = acc.h.get(k, 0.0) + v


class BlockMoments:
    """Paired moments of ``B`` contiguous blocks of probe images plus ``R`` null pairings.

    ``update(X, Y, units=k)`` adds a batch of ``k`` images whose rows are image-major
    (``rows/k`` rows per image: conv positions); batches must arrive in probe order and
    cover exactly ``units`` images in all. Memory: ``B + R`` accumulators of ``O(d²)``.
    """

    def __init__(
        self,
        units: int,
        blocks: int = 20,
        null_pairings: int = 4,
        seed: int = 0,
        fourth: bool = False,
    ):
        self.null_pairings = check_null_pairings(null_pairings)
        self.units = int(units)
        self.edges = block_edges(self.units, blocks)
        self.seed = int(seed)
        self.fourth = bool(fourth)
        self.blocks: list[Moments] = [Moments(fourth=self.fourth) for _ in range(int(blocks))]
        self.nulls: list[_CrossMoments] = [_CrossMoments() for _ in range(self.null_pairings)]
        self.per_unit: int | None = None
        self._total: Moments | None = None
        self._seen = 0
        self._batches = 0

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def complete(self) -> bool:
        return self._seen == self.units

    # -- accumulation -------------------------------------------------------------
    def update(self, X: ArrayLike, Y: ArrayLike, units: int | None = None) -> BlockMoments:
        """Add one batch of ``units`` images (default: one row per image); returns ``self``."""
        Xa, Ya = as_matrix(X, "X", min_rows=1), as_matrix(Y, "Y", min_rows=1)
        check_paired(Xa, Ya)
        u, per = batch_units(Xa.shape[0], units, self.per_unit)
        self.per_unit = per
        start, end = self._seen, self._seen + u
        if end > self.units:
            raise ValueError(f"more than the {self.units} declared probe images were added")
        if self.fourth and self.blocks[0]._shift_x is None:
            sx, sy = Xa.mean(axis=0), Ya.mean(axis=0)
            for m in self.blocks:
                m._shift_x, m._shift_y = sx, sy
        for b, sl in block_slices(self.edges, start, end, per):
            self.blocks[b].update(Xa[sl], Ya[sl], validated=True)
        if self.nulls:
            shifts = (self.blocks[0]._shift_x, self.blocks[0]._shift_y) if self.fourth else None
            update_nulls(self.nulls, Xa, Ya, u, per, self.seed, self._batches, shifts)
        self._total = None
        self._seen = end
        self._batches += 1
        return self

    @classmethod
    def from_data(
        cls,
        X: ArrayLike,
        Y: ArrayLike,
        *,
        positions: int = 1,
        blocks: int = 20,
        null_pairings: int = 4,
        seed: int = 0,
        chunk: int | None = None,
        fourth: bool = False,
    ) -> BlockMoments:
        """Accumulate whole arrays whose rows are ``positions`` consecutive rows per image,
        ``chunk`` images per batch (``None``: one batch; the runner: ``probe.batch_size``)."""
        Xa, Ya = as_matrix(X, "X", min_rows=1), as_matrix(Y, "Y", min_rows=1)
        check_paired(Xa, Ya)
        units = _units(Xa.shape[0], positions)
        bm = cls(units, blocks, null_pairings, seed, fourth)
        step = units if not chunk else int(chunk)
        for start in range(0, units, step):
            k = min(step, units - start)
            sl = slice(start * positions, (start + k) * positions)
            bm.update(Xa[sl], Ya[sl], units=k)
        return bm

    # -- derived moments ----------------------------------------------------------
    def _check(self) -> None:
        if not self.complete:
            raise ValueError(
                f"only {self._seen} of the {self.units} declared probe images were accumulated"
            )

    def total(self) -> Moments:
        """All blocks merged (equals one accumulator over every batch, to rounding).

        Computed once and cached; treat it as read-only."""
        self._check()
        if self._total is None:
            self._total = _merge_all(self.blocks, self.fourth, self.blocks[0])
        return self._total

    def leave_one_out(self) -> Iterator[tuple[int, Moments]]:
        """``(b, moments without block b)`` for ``b = 0, …, B−1``.

        Chan's merge run backwards: ``S_(−b) = S − S_b − n_(−b) n_b / n · δδᵀ`` with
        ``δ = x̄_b − x̄_(−b)`` (fourth-order sums: raw sums about the common shift,
        subtracted). Choice where MATH.md is silent: subtraction rather than re-merging
        the other ``B−1`` blocks, ``O(d²)`` per block instead of ``O(B d²)``; it is
        numerically safe here because the part removed is one block, ``1/B`` of the data
        (cancellation inflates the rounding of ``S_(−b)`` by about ``B/(B−1)``; the
        streamed-equals-in-memory tests hold to 1e-10). An exact re-merge is
        :meth:`leave_out_merged`."""
        tot = self.total()
        for b, blk in enumerate(self.blocks):
            yield b, _unmerge(tot, blk)

    def leave_out_merged(self, b: int) -> Moments:
        """Moments without block ``b`` by merging the other blocks (exact, ``O(B d²)``)."""
        self._check()
        return _merge_all(
            [m for i, m in enumerate(self.blocks) if i != b], self.fourth, self.blocks[0]
        )

    def resample(self, idx: np.ndarray) -> Moments:
        """The blocks ``idx`` (with repetition) merged: one block-bootstrap sample."""
        self._check()
        return _merge_all([self.blocks[i] for i in idx], self.fourth, self.blocks[0])

    def null(self, r: int) -> Moments:
        """The total moments with the ``r``-th derangement's cross terms."""
        tot = self.total()
        acc = self.nulls[r]
        out = Moments(
            fourth=tot.fourth,
            n=tot.n,
            mean_x=tot.mean_x,
            mean_y=tot.mean_y,
            sxx=tot.sxx,
            syy=tot.syy,
            sxy=acc.sxy,
        )
        if self.fourth:
            out._shift_x, out._shift_y = tot._shift_x, tot._shift_y
            out._h = {**tot._h, **acc.h}
        return out

    # -- storage (runner) ----------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Stacked arrays ``<prefix>_blk_*`` and ``<prefix>_null_*`` (float64)."""
        self._check()
        out: dict[str, np.ndarray] = {
            f"{prefix}_blk_edges": self.edges.astype(np.int64),
            f"{prefix}_blk_n": np.array([m.n for m in self.blocks], dtype=np.int64),
            f"{prefix}_blk_meta": np.array(
                [self.null_pairings, self.seed, self.per_unit or 1, int(self.fourth)],
                dtype=np.int64,
            ),
        }
        for f in ("mean_x", "mean_y", "sxx", "syy", "sxy"):
            out[f"{prefix}_blk_{f}"] = np.stack([getattr(m, f) for m in self.blocks])
        if self.fourth:
            out[f"{prefix}_blk_shift_x"] = self.blocks[0]._shift_x
            out[f"{prefix}_blk_shift_y"] = self.blocks[0]._shift_y
            for k in self.blocks[0]._h:
                out[f"{prefix}_blk_h_{k}"] = np.stack([np.asarray(m._h[k]) for m in self.blocks])
        if self.nulls:
            out[f"{prefix}_null_sxy"] = np.stack([a.sxy for a in self.nulls])
            if self.fourth:
                for k in ("ab", "pxy", "pyx"):
                    out[f"{prefix}_null_h_{k}"] = np.stack([np.asarray(a.h[k]) for a in self.nulls])
        return out

    @classmethod
    def from_arrays(cls, prefix: str, arrays: Mapping[str, np.ndarray]) -> BlockMoments:
        """Inverse of :meth:`to_arrays`."""
        edges = np.asarray(arrays[f"{prefix}_blk_edges"])
        R, seed, per, fourth = (int(v) for v in arrays[f"{prefix}_blk_meta"])
        bm = cls(int(edges[-1]), len(edges) - 1, R, seed, bool(fourth))
        bm.per_unit, bm._seen = per, bm.units
        for b, m in enumerate(bm.blocks):
            m.n = int(arrays[f"{prefix}_blk_n"][b])
            for f in ("mean_x", "mean_y", "sxx", "syy", "sxy"):
                setattr(m, f, np.array(arrays[f"{prefix}_blk_{f}"][b], dtype=np.float64))
            if bm.fourth:
                m._shift_x = np.array(arrays[f"{prefix}_blk_shift_x"])
                m._shift_y = np.array(arrays[f"{prefix}_blk_shift_y"])
                m._h = {
                    k[len(f"{prefix}_blk_h_") :]: _scalar_or_array(v[b])
                    for k, v in arrays.items()
                    if k.startswith(f"{prefix}_blk_h_")
                }
        tot = bm.total()
        for r, acc in enumerate(bm.nulls):
            acc.n, acc.mean_x, acc.mean_y = tot.n, tot.mean_x, tot.mean_y
            acc.sxy = np.array(arrays[f"{prefix}_null_sxy"][r], dtype=np.float64)
            if bm.fourth:
                acc.h = {
                    k: _scalar_or_array(arrays[f"{prefix}_null_h_{k}"][r])
                    for k in ("ab", "pxy", "pyx")
                }
        return bm


def _units(rows: int, positions: int) -> int:
    if isinstance(positions, bool) or int(positions) != positions or positions < 1:
        raise ValueError(
            f"positions (rows per probe image) must be an integer >= 1; got {positions!r}"
        )
    if rows % positions:
        raise ValueError(f"{rows} rows are not a whole number of images of {positions} rows")
    return rows // int(positions)


def _scalar_or_array(v: Any) -> Any:
    v = np.asarray(v, dtype=np.float64)
    return float(v) if v.ndim == 0 else np.array(v)


def _rank_one_update(S: np.ndarray, alpha: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``S + α u vᵀ`` in place (BLAS ``dger`` on the transposed, Fortran-ordered view;
    ``np.outer`` allocates and is ~10× slower at d = 512). ``S`` must be C-contiguous."""
    if not S.flags.c_contiguous:
        return S + alpha * np.outer(u, v)
    return dger(alpha, v, u, a=S.T, overwrite_a=1).T


def _unmerge(tot: Moments, blk: Moments) -> Moments:
    """``tot`` without the samples of ``blk`` (Chan's pairwise update solved backwards)."""
    n = tot.n - blk.n
    out = _empty_like(blk)
    if n <= 0:
        return out
    fx = tot.mean_x * (tot.n / n) - blk.mean_x * (blk.n / n)
    fy = tot.mean_y * (tot.n / n) - blk.mean_y * (blk.n / n)
    dx, dy = blk.mean_x - fx, blk.mean_y - fy
    f = n * blk.n / tot.n
    out.n, out.mean_x, out.mean_y = n, fx, fy
    out.sxx = _rank_one_update(tot.sxx - blk.sxx, -f, dx, dx)
    out.syy = _rank_one_update(tot.syy - blk.syy, -f, dy, dy)
    out.sxy = _rank_one_update(tot.sxy - blk.sxy, -f, dx, dy)
    if tot.fourth:
        out._h = {k: v - blk._h[k] for k, v in tot._h.items()}
    return out


def _empty_like(m: Moments) -> Moments:
    out = Moments(fourth=m.fourth)
    if m.fourth:
        out._shift_x, out._shift_y = m._shift_x, m._shift_y
    return out


def _merge_all(parts: list[Moments], fourth: bool, like: Moments) -> Moments:
    out = _empty_like(like) if fourth else Moments()
    for m in parts:
        out.merge(m)
    return out

"""Streaming second moments kept per cross-validation fold (interleaved folds).

:class:`FoldedMoments` holds one paired :class:`~simbench.numerics.moments.Moments` per
fold, so a closed-form estimator fitted on second moments (ridge regression) can be
cross-validated without ever holding the samples: memory is ``O(K (d_x + d_y)²)``
whatever ``n``.

**Fold assignment.** Sample ``i`` (0-based, in the order the samples are streamed)
belongs to fold ``i mod K``: interleaved folds. Unlike contiguous folds they need no
knowledge of ``n`` in advance, and any split of the same sample sequence into batches
gives the same folds, so ``metric(X, Y)`` and a streamed accumulator agree to rounding.
Interleaving also spreads a sample order that is sorted (e.g. by class) evenly over the
folds, where contiguous folds would hold out whole classes.
"""

from __future__ import annotations

from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired
from simbench.numerics.moments import Moments


class FoldedMoments:
    """Per-fold paired moments; sample ``i`` of the stream goes to fold ``i mod folds``.

    ``update(X, Y)`` adds a batch (rows paired); ``fold(k)`` is fold ``k``'s
    :class:`Moments` and ``pooled(exclude=k)`` the moments of every other fold (the
    training set of fold ``k``), merged exactly (Chan et al.'s pairwise update).
    """

    def __init__(self, folds: int):
        if isinstance(folds, bool) or int(folds) != folds or folds < 1:
            raise ValueError(f"folds must be a positive integer; got {folds!r}")
        self.folds = int(folds)
        self.parts = [Moments() for _ in range(self.folds)]
        self.n = 0
        self._dims: tuple[int, int] | None = None

    def update(self, X: ArrayLike, Y: ArrayLike, *, validated: bool = False) -> FoldedMoments:
        """Add one batch of paired rows; returns ``self``.

        ``validated=True`` skips conversion for float64 arrays already checked by
        :func:`~simbench.numerics.arrays.as_matrix`.
        """
        if not validated:
            X = as_matrix(X, "X", min_rows=1)
            Y = as_matrix(Y, "Y", min_rows=1)
            check_paired(X, Y)
        dims = (X.shape[1], Y.shape[1])
        if self._dims is not None and dims != self._dims:
            raise ValueError(
                f"batch has (d_x, d_y) = {dims}; earlier batches had {self._dims} features"
            )
        self._dims = dims
        nb, K = X.shape[0], self.folds
        for k in range(K):
            start = (k - self.n) % K  # first row of this batch that falls in fold k
            if start < nb:
                self.parts[k].update(X[start::K], Y[start::K], validated=True)
        self.n += nb
        return self

    @classmethod
    def from_arrays(
        cls,
        X: ArrayLike,
        Y: ArrayLike,
        folds: int,
        *,
        batch_size: int | None = None,
        validated: bool = False,
    ) -> FoldedMoments:
        """Accumulate whole arrays, optionally ``batch_size`` rows at a time."""
        fm = cls(folds)
        n = X.shape[0]
        step = batch_size or max(n, 1)
        for start in range(0, n, step):
            fm.update(X[start : start + step], Y[start : start + step], validated=validated)
        return fm

    @property
    def counts(self) -> list[int]:
        """Number of samples in each fold."""
        return [p.n for p in self.parts]

    def fold(self, k: int) -> Moments:
        """Fold ``k``'s moments (not a copy)."""
        return self.parts[k]

    def pooled(self, exclude: int | None = None) -> Moments:
        """Moments of every fold except ``exclude`` (all folds when ``None``): a new object."""
        out = Moments()
        for k, part in enumerate(self.parts):
            if k != exclude:
                out.merge(part)
        return out

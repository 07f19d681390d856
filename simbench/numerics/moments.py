"""Streaming first and second moments of one or two paired representations.

MATH.md conventions: a metric that only needs second moments must never need all of
``X`` in memory. :class:`Moments` accumulates, batch by batch and in float64, the
sample count, the means and the centred scatter matrices ``Sxx = XcᵀXc``,
``Syy = YcᵀYc`` and ``Sxy = XcᵀYc`` (``Xc`` column-centred). Batches are merged with
Chan et al.'s pairwise update, so the result equals the full-batch computation to
rounding. Optionally (``fourth=True``) it also keeps the few fourth-order sums that
the unbiased linear HSIC needs (MATH.md: debiased CKA), making debiased linear CKA
exact in O(d²) memory as well.

Torch tensors are reduced on their own device (GPU when they live there); only the
``d×d`` results come back to the CPU as numpy float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired, is_torch

#: Products are formed on raw data with a rank-one mean correction when every
#: feature's squared mean is at most this multiple of its variance (relative error
#: of the scatter then stays below ~1e2 machine epsilons); otherwise the batch is
#: centred explicitly. This saves a full pass over the data in the common case.
_RANK_ONE_MAX_RATIO = 1e2


def side_scatter(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Mean, centred scatter ``XcᵀXc`` and the rank-one flag of one validated numpy batch.

    ``rank_one``: the scatter was formed on raw data with a rank-one mean correction
    (see ``_RANK_ONE_MAX_RATIO``); :func:`cross_scatter` uses the same flag so that a
    pair's moments formed from two sides equal :meth:`Moments.from_arrays` on the pair.
    """
    n = X.shape[0]
    mx = X.mean(axis=0)
    xx = X.T @ X  # numpy dispatches Xᵀ X to SYRK
    vx = np.diag(xx) / n - mx**2
    rank_one = bool(np.all(mx**2 <= _RANK_ONE_MAX_RATIO * np.maximum(vx, 0.0)))
    if rank_one:
        xx -= n * np.outer(mx, mx)
    else:
        Xc = X - mx
        xx = Xc.T @ Xc
    return mx, xx, rank_one


def cross_scatter(
    X: np.ndarray, mx: np.ndarray, rank_one_x: bool, Y: np.ndarray, my: np.ndarray, rank_one_y: bool
) -> np.ndarray:
    """Centred cross scatter ``XcᵀYc`` of paired batches, as :func:`_scatter_np` forms it."""
    if rank_one_x and rank_one_y:
        xy = X.T @ Y
        xy -= X.shape[0] * np.outer(mx, my)
        return xy
    return (X - mx).T @ (Y - my)


def _scatter_np(X: np.ndarray, Y: np.ndarray | None) -> tuple:
    """Mean(s) and centred scatter matrices of one numpy batch."""
    mx, xx, rank_one_x = side_scatter(X)
    if Y is None:
        return mx, xx, None, None, None
    my, yy, rank_one_y = side_scatter(Y)
    return mx, xx, my, yy, cross_scatter(X, mx, rank_one_x, Y, my, rank_one_y)


def _scatter_torch(X: Any, Y: Any | None) -> tuple:
    """Mean(s) and centred scatter matrices of one torch batch, on its device."""
    import torch

    def prep(t: Any, name: str) -> Any:
        t = t.detach()
        if t.ndim == 1:
            t = t[:, None]
        if t.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features); got {tuple(t.shape)}")
        t = t.to(torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains non-finite values (NaN or inf).")
        return t

    X = prep(X, "X")
    mx = X.mean(0)
    Xc = X - mx
    out_x = (mx.cpu().numpy(), (Xc.T @ Xc).cpu().numpy())
    if Y is None:
        return (*out_x, None, None, None)
    Y = prep(Y, "Y")
    my = Y.mean(0)
    Yc = Y - my
    return (
        *out_x,
        my.cpu().numpy(),
        (Yc.T @ Yc).cpu().numpy(),
        (Xc.T @ Yc).cpu().numpy(),
    )


@dataclass
class Moments:
    """Batch-accumulated statistics of ``X`` (and optionally a paired ``Y``).

    ``update(X, Y)`` adds a batch; ``merge(other)`` combines two accumulators (e.g.
    from parallel workers). Memory is ``O(d_x² + d_y² + d_x d_y)`` whatever ``n``.
    """

    fourth: bool = False
    n: int = 0
    mean_x: np.ndarray | None = None
    mean_y: np.ndarray | None = None
    sxx: np.ndarray | None = None
    syy: np.ndarray | None = None
    sxy: np.ndarray | None = None
    # fourth-order sums on data shifted by a fixed point (the first batch's mean)
    _shift_x: np.ndarray | None = field(default=None, repr=False)
    _shift_y: np.ndarray | None = field(default=None, repr=False)
    _h: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def paired(self) -> bool:
        return self.sxy is not None

    @property
    def d_x(self) -> int:
        return 0 if self.sxx is None else self.sxx.shape[0]

    @property
    def d_y(self) -> int:
        return 0 if self.syy is None else self.syy.shape[0]

    # -- accumulation -------------------------------------------------------------
    def update(
        self, X: ArrayLike, Y: ArrayLike | None = None, *, validated: bool = False
    ) -> Moments:
        """Add one batch (rows of ``X`` paired with rows of ``Y``); returns ``self``.

        ``validated=True`` skips the conversion and checks for float64 numpy arrays that
        already went through :func:`~simbench.numerics.arrays.as_matrix` (a metric's own
        validated inputs), saving a pass over the data.
        """
        if validated:
            Xn, Yn = X, Y
            nb = Xn.shape[0]
            stats = _scatter_np(Xn, Yn)
        elif is_torch(X):
            if Y is not None and X.shape[0] != Y.shape[0]:
                check_paired(np.empty((X.shape[0], 0)), np.empty((Y.shape[0], 0)))
            nb = int(X.shape[0])
            stats = _scatter_torch(X, Y)
            if self.fourth:
                Xn = as_matrix(X, "X", min_rows=1)
                Yn = None if Y is None else as_matrix(Y, "Y", min_rows=1)
        else:
            Xn = as_matrix(X, "X", min_rows=1)
            Yn = None if Y is None else as_matrix(Y, "Y", min_rows=1)
            if Yn is not None:
                check_paired(Xn, Yn)
            nb = Xn.shape[0]
            stats = _scatter_np(Xn, Yn)
        if nb == 0:
            return self
        if self.n and (Y is None) == self.paired:
            raise ValueError("every batch must be paired (X, Y) or every batch X alone")
        if self.n and stats[0].shape[0] != self.d_x:
            raise ValueError(f"X batch has {stats[0].shape[0]} features; earlier had {self.d_x}")
        if self.n and Y is not None and stats[2].shape[0] != self.d_y:
            raise ValueError(f"Y batch has {stats[2].shape[0]} features; earlier had {self.d_y}")
        if self.fourth:
            self._update_fourth(Xn, Yn, stats[0], stats[2])
        self._merge_stats(nb, *stats)
        self._check_finite()
        return self

    def _check_finite(self) -> None:
        """Raise ``ValueError`` naming the overflow when a sum left the float64 range
        (finite inputs of magnitude ~1e150 and above: their squares overflow)."""
        parts = {"X": self.sxx, "Y": self.syy, "X and Y": self.sxy}
        bad = [k for k, v in parts.items() if v is not None and not np.isfinite(v).all()]
        if not bad and all(np.isfinite(v).all() for v in self._h.values()):
            return
        which = bad[0] if bad else "X or Y"
        raise ValueError(
            f"the second (or fourth) moments of {which} overflow float64: the inputs are "
            "too large (magnitude ~1e150 or more); divide them by a constant first (metrics "
            "invariant to isotropic scaling do this themselves for in-memory inputs)"
        )

    def _merge_stats(self, nb: int, mx, xx, my, yy, xy) -> None:
        if self.n == 0:
            self.n, self.mean_x, self.sxx = nb, mx, xx
            self.mean_y, self.syy, self.sxy = my, yy, xy
            return
        n = self.n + nb
        dx = mx - self.mean_x
        f = self.n * nb / n
        self.sxx = self.sxx + xx + f * np.outer(dx, dx)
        self.mean_x = self.mean_x + dx * (nb / n)
        if self.paired:
            dy = my - self.mean_y
            self.syy = self.syy + yy + f * np.outer(dy, dy)
            self.sxy = self.sxy + xy + f * np.outer(dx, dy)
            self.mean_y = self.mean_y + dy * (nb / n)
        self.n = n

    def _update_fourth(self, X: np.ndarray, Y: np.ndarray | None, mx, my) -> None:
        if self._shift_x is None:
            self._shift_x = mx.copy()
            self._shift_y = None if my is None else my.copy()
        Xs = X - self._shift_x
        a = np.einsum("ij,ij->i", Xs, Xs)
        h = self._h
        add = {"aa": a @ a, "pxx": Xs.T @ a}
        if Y is not None:
            Ys = Y - self._shift_y
            b = np.einsum("ij,ij->i", Ys, Ys)
            add.update(
                {"bb": b @ b, "ab": a @ b, "pyy": Ys.T @ b, "pxy": Xs.T @ b, "pyx": Ys.T @ a}
            )
        for k, v in add.items():
            h[k] = h.get(k, 0.0) + v

    def merge(self, other: Moments) -> Moments:
        """Combine with another accumulator over disjoint samples; returns ``self``."""
        if other.n == 0:
            return self
        if self.fourth or other.fourth:
            # the fourth-order sums are raw sums about a fixed shift: they add when both
            # accumulators share it (e.g. the blocks of simbench.numerics.blocks)
            if not (self.fourth and other.fourth and self._same_shift(other)):
                raise ValueError(
                    "fourth-order accumulators merge only with a common shift "
                    "(Moments(fourth=True, _shift_x=..., _shift_y=...)); use one accumulator"
                )
            if self.n == 0 and self._shift_x is None:
                self._shift_x, self._shift_y = other._shift_x, other._shift_y
            for k, v in other._h.items():
                self._h[k] = self._h.get(k, 0.0) + v
        self._merge_stats(other.n, other.mean_x, other.sxx, other.mean_y, other.syy, other.sxy)
        return self

    def _same_shift(self, other: Moments) -> bool:
        if self.n == 0 and self._shift_x is None:
            return True  # an empty accumulator takes the other's shift
        return bool(
            np.array_equal(self._shift_x, other._shift_x)
            and (self._shift_y is None) == (other._shift_y is None)
            and (self._shift_y is None or np.array_equal(self._shift_y, other._shift_y))
        )

    @classmethod
    def from_arrays(
        cls,
        X: ArrayLike,
        Y: ArrayLike | None = None,
        *,
        batch_size: int | None = None,
        fourth: bool = False,
        validated: bool = False,
    ) -> Moments:
        """Accumulate whole arrays, optionally ``batch_size`` rows at a time
        (``validated``: see :meth:`update`)."""
        m = cls(fourth=fourth)
        n = X.shape[0]
        step = n if not batch_size else batch_size
        for start in range(0, n, step):
            sl = slice(start, start + step)
            m.update(X[sl], None if Y is None else Y[sl], validated=validated)
        if m.n == 0:
            raise ValueError("no samples were accumulated")
        return m

    # -- derived quantities -------------------------------------------------------
    def _need_pair(self) -> None:
        if not self.paired:
            raise ValueError("these moments hold X only; accumulate paired (X, Y) batches")

    def cov(self, which: str = "xx", ddof: int = 1) -> np.ndarray:
        """Covariance ``S / (n - ddof)`` for ``which`` in ``{'xx', 'yy', 'xy'}``."""
        if which != "xx":
            self._need_pair()
        return {"xx": self.sxx, "yy": self.syy, "xy": self.sxy}[which] / (self.n - ddof)

    def swapped(self) -> Moments:
        """The same moments with the roles of X and Y exchanged."""
        self._need_pair()
        out = Moments(
            n=self.n,
            mean_x=self.mean_y,
            mean_y=self.mean_x,
            sxx=self.syy,
            syy=self.sxx,
            sxy=self.sxy.T,
        )
        if self.fourth:
            h = self._h
            out.fourth = True
            out._shift_x, out._shift_y = self._shift_y, self._shift_x
            out._h = {
                "aa": h["bb"],
                "bb": h["aa"],
                "ab": h["ab"],
                "pxx": h["pyy"],
                "pyy": h["pxx"],
                "pxy": h["pyx"],
                "pyx": h["pxy"],
            }
        return out

    def hsic_unbiased(self, which: str = "xy") -> float:
        """Unbiased linear HSIC (Song et al. 2012) from the fourth-order sums.

        ``which`` is ``'xy'``, ``'xx'`` or ``'yy'``. With ``K = X̃X̃ᵀ`` and ``K̃`` its
        zero-diagonal version, HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2))
        − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)); every term reduces to the accumulated sums.
        """
        if not self.fourth:
            raise ValueError("accumulate with Moments(fourth=True) for the unbiased HSIC")
        n = self.n
        if n < 4:
            raise ValueError(f"the unbiased HSIC needs at least 4 samples; got {n}")
        h = self._h
        if which in ("xy", "yy"):
            self._need_pair()
        sx = n * (self.mean_x - self._shift_x)
        sa = np.trace(self.sxx) + n * float(sx @ sx) / n**2
        if which == "xx":
            cross = self.sxx + np.outer(sx, sx) / n
            return _hsic_terms(n, cross, sx, sx, sa, sa, h["aa"], h["pxx"], h["pxx"])
        sy = n * (self.mean_y - self._shift_y)
        sb = np.trace(self.syy) + float(sy @ sy) / n
        if which == "yy":
            cross = self.syy + np.outer(sy, sy) / n
            return _hsic_terms(n, cross, sy, sy, sb, sb, h["bb"], h["pyy"], h["pyy"])
        cross = self.sxy + np.outer(sx, sy) / n
        return _hsic_terms(n, cross, sx, sy, sa, sb, h["ab"], h["pxy"], h["pyx"])


def _hsic_terms(n, cross, sx, sy, sa, sb, sab, pxb, pya) -> float:
    """Unbiased HSIC from raw (shifted) cross product and sums; see ``hsic_unbiased``."""
    tr = float(np.sum(cross * cross)) - sab
    one_k_one = float(sx @ sx) - sa
    one_l_one = float(sy @ sy) - sb
    one_kl_one = float(sx @ cross @ sy) - float(sy @ pya) - float(sx @ pxb) + sab
    return (tr + one_k_one * one_l_one / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * one_kl_one) / (
        n * (n - 3)
    )

"""The alignment protocol (hookspec ``simbench_register_alignments``).

``fit(X, Y)`` learns ``T`` of shape ``(d_x, d_y)`` with ``Y ≈ X T`` (MATH.md:
Alignments), stores it as ``T_`` and returns ``self``. Subclasses implement
``_fit(X, Y) -> T`` on validated float64 arrays; alignments that need only second
moments set ``streaming = True`` and implement ``_fit_moments(m) -> T``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from simbench.errors import NotFittedError
from simbench.numerics.arrays import ArrayLike, as_matrix, check_paired, to_numpy
from simbench.numerics.moments import Moments
from simbench.plugin import Plugin


class Alignment(Plugin):
    """Base class of every alignment: ``fit(X, Y).T`` maps X's basis onto Y's."""

    kind: ClassVar[str] = "alignment"
    streaming: ClassVar[bool] = False
    #: "orthogonal", "permutation", "linear", "identity": what family T belongs to
    family: ClassVar[str] = "linear"

    T_: np.ndarray

    def fit(self, X: ArrayLike | Moments, Y: ArrayLike | None = None) -> Alignment:
        """Fit ``T`` on paired representations (or a paired :class:`Moments`)."""
        if isinstance(X, Moments):
            if not self.streaming:
                raise TypeError(f"alignment {self.name!r} needs the full matrices")
            if not X.paired:
                raise ValueError("the moments must be accumulated on paired (X, Y) batches")
            T = self._fit_moments(X)
        else:
            if Y is None:
                raise TypeError("fit needs X and Y")
            Xa, Ya = as_matrix(X, "X"), as_matrix(Y, "Y")
            check_paired(Xa, Ya)
            T = self._fit(Xa, Ya)
        self.T_ = np.asarray(T, dtype=np.float64)
        return self

    @property
    def T(self) -> np.ndarray:
        """The fitted map ``(d_x, d_y)``."""
        try:
            return self.T_
        except AttributeError:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(X, Y)") from None

    def transform(self, X: ArrayLike) -> np.ndarray:
        """``X @ T``: X expressed in Y's basis."""
        T = self.T
        Xa = to_numpy(X)
        if Xa.shape[-1] != T.shape[0]:
            raise ValueError(f"X has {Xa.shape[-1]} features; T expects {T.shape[0]}")
        return Xa @ T

    def pull_back(self, W: ArrayLike) -> np.ndarray:
        """Network B's weights in A's input basis: ``W_B Tᵀ`` (MATH.md: pulling weights back).

        ``W`` is ``(n_out, d_y)`` or a conv weight ``(n_out, d_y, k, k)``; ``T`` acts on
        the input-channel axis at every spatial tap.
        """
        T = self.T
        Wa = to_numpy(W)
        if Wa.shape[1] != T.shape[1]:
            raise ValueError(f"W has {Wa.shape[1]} input channels; T expects {T.shape[1]}")
        if Wa.ndim == 2:
            return Wa @ T.T
        if Wa.ndim == 4:
            return np.einsum("oikl,ji->ojkl", Wa, T)
        raise ValueError(f"W must be (n_out, d_in) or (n_out, c_in, k, k); got {Wa.shape}")

    # -- to implement ---------------------------------------------------------------
    def _fit(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        if self.streaming:
            return self._fit_moments(Moments.from_arrays(X, Y, validated=True))
        raise TypeError(f"{type(self).__name__} defines neither _fit nor streaming=True")

    def _fit_moments(self, m: Moments) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} sets streaming=True but lacks _fit_moments")

"""Basic alignments: identity, orthogonal Procrustes, permutation (MATH.md: Alignments).

Each fits ``T`` of shape ``(d_x, d_y)`` with ``Y ≈ X T``. Procrustes and permutation
need only the cross product ``XᵀY`` (centred by default), so they stream from a paired
:class:`~simbench.numerics.moments.Moments`; on full arrays they form that one product
directly (one GEMM, no Gram matrices).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.optimize import linear_sum_assignment

from simbench.alignments.base import Alignment
from simbench.numerics.moments import Moments


def polar(M: np.ndarray) -> np.ndarray:
    """Orthogonal polar factor ``U Vᵀ`` of the thin SVD ``M = U Σ Vᵀ``.

    ``U Vᵀ`` maximises ``tr(Tᵀ M)`` over matrices with orthonormal columns (or rows,
    when ``M`` is wide). When ``M`` is rank-deficient (e.g. dead ReLU channels) every
    completion on its null spaces is optimal; we return the one closest to the
    (rectangular) identity, ``T = U_r V_rᵀ + U_⊥ polar(U_⊥ᵀ I V_⊥) V_⊥ᵀ``, so that two
    identical representations align to ``T = I`` (MATH.md is silent; documented choice).
    For ``M = 0`` that is the identity itself.
    """
    if not np.any(M):
        return np.eye(*M.shape)
    try:
        U, s, Vt = np.linalg.svd(M, full_matrices=False)
    except np.linalg.LinAlgError:  # gesdd failed to converge: fall back to gesvd
        U, s, Vt = scipy.linalg.svd(M, full_matrices=False, lapack_driver="gesvd")
    r = int((s > s[0] * max(M.shape) * 16 * np.finfo(float).eps).sum())
    T = U[:, :r] @ Vt[:r]
    if r < s.size:
        Uo, Vo = U[:, r:], Vt[r:].T
        m = min(M.shape)
        N = Uo[:m].T @ Vo[:m]  # U_⊥ᵀ I V_⊥ with I the rectangular identity
        if np.any(N):
            Un, _, Vnt = np.linalg.svd(N)
            T += Uo @ (Un @ Vnt) @ Vo.T
        else:
            T += Uo @ Vo.T
    return T


def cross_product(X: np.ndarray, Y: np.ndarray, center: bool) -> np.ndarray:
    """``XᵀY``, or ``XcᵀYc`` with column-centred ``Xc, Yc`` when ``center``.

    Only the narrower side is centred: ``XcᵀYc = XᵀYc − mₓ (1ᵀYc)``, where the rank-one
    term (zero in exact arithmetic) removes the rounding left in ``Yc``'s column sums.
    """
    if not center:
        return X.T @ Y
    if X.shape[1] < Y.shape[1]:
        return cross_product(Y, X, center).T
    Yc = Y - Y.mean(axis=0)
    M = X.T @ Yc
    M -= np.outer(X.mean(axis=0), Yc.sum(axis=0))
    return M


def moments_cross_product(m: Moments, center: bool) -> np.ndarray:
    """The cross product of :func:`cross_product` from paired moments.

    Centred it is ``Sxy``; raw it is ``Sxy + n mₓ m_yᵀ``.
    """
    if center:
        return m.sxy
    return m.sxy + m.n * np.outer(m.mean_x, m.mean_y)


def assignment(M: np.ndarray) -> np.ndarray:
    """0/1 matrix of the (partial) assignment maximising ``Σ M[i, π(i)]`` (Hungarian).

    ``T`` has the shape of ``M`` and ``min(M.shape)`` ones, at most one per row and per
    column. Ties are broken by ``scipy.optimize.linear_sum_assignment``'s deterministic
    order (for ``M = 0``: the leading identity).
    """
    rows, cols = linear_sum_assignment(M, maximize=True)
    T = np.zeros(M.shape)
    T[rows, cols] = 1.0
    return T


class Identity(Alignment):
    """No alignment: ``T = I`` (needs ``d_x == d_y``)."""

    name = "identity"
    family = "identity"
    streaming = True

    def __init__(self) -> None:
        """No parameters."""

    @staticmethod
    def _eye(d_x: int, d_y: int) -> np.ndarray:
        if d_x != d_y:
            raise ValueError(
                f"the identity alignment needs equal widths; X has {d_x} features, Y has {d_y}"
            )
        return np.eye(d_x)

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return self._eye(X.shape[1], Y.shape[1])

    def _fit_moments(self, m: Moments) -> np.ndarray:
        return self._eye(m.d_x, m.d_y)


class Procrustes(Alignment):
    """Orthogonal Procrustes (GM eq. 1, Schönemann 1966): ``T = U Vᵀ``, ``XᵀY = U Σ Vᵀ``.

    ``T`` maximises ``tr(Tᵀ XᵀY)``, i.e. minimises ``||X T − Y||_F``, over matrices with
    orthonormal columns (``d_x ≥ d_y``: ``TᵀT = I``) or rows (``d_x < d_y``: ``TTᵀ = I``).
    ``center=True`` (default) centres both representations first, so the map ignores
    the means (translation); ``center=False`` uses the raw cross product.
    """

    name = "procrustes"
    family = "orthogonal"
    streaming = True

    def __init__(self, center: bool = True):
        self.center = center

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return polar(cross_product(X, Y, self.center))

    def _fit_moments(self, m: Moments) -> np.ndarray:
        return polar(moments_cross_product(m, self.center))


class Permutation(Alignment):
    """Permutation maximising ``tr(Tᵀ XᵀY)`` (Hungarian); partial matching if ``d_x ≠ d_y``.

    ``T`` is ``(d_x, d_y)`` with ``min(d_x, d_y)`` ones, at most one per row and column:
    each feature of the narrower side is matched to a distinct feature of the wider one.
    ``center=True`` (default) centres both representations first (the score is then the
    sum of matched covariances); ``center=False`` matches raw inner products.
    """

    name = "permutation"
    family = "permutation"
    streaming = True

    def __init__(self, center: bool = True):
        self.center = center

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return assignment(cross_product(X, Y, self.center))

    def _fit_moments(self, m: Moments) -> np.ndarray:
        return assignment(moments_cross_product(m, self.center))

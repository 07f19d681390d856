"""Procrustes shape distance (Williams et al. 2021; MATH.md: Procrustes shape distance).

With centred, Frobenius-normalised ``X, Y`` (zero-padded to equal width — padding
does not change the nuclear norm, so it is implicit), the angular distance is
``arccos(||XᵀY||_*)``. The partial-whitening family (Williams 2021 §2.3) first maps
``X ↦ Xc (α I + (1−α) C_x^{−1/2})`` with ``C_x = XcᵀXc / n``: ``α = 1`` (default) is
the rotation-invariant Procrustes distance, ``α = 0`` the fully whitened (CCA-like)
distance, invariant to any invertible linear map.
"""

from __future__ import annotations

import numpy as np
from pydantic import confloat

from simbench.metrics.base import Metric
from simbench.numerics.moments import Moments
from simbench.plugin import Invariance

_BASE_INV = frozenset(
    {
        Invariance.PERMUTATION,
        Invariance.ORTHOGONAL,
        Invariance.ISOTROPIC_SCALING,
        Invariance.TRANSLATION,
    }
)


def nuclear_norm(M: np.ndarray) -> float:
    """``||M||_*``: sum of the singular values of ``M`` (LAPACK ``gesdd``, no vectors).

    Singular values from an SVD carry an absolute error ``~eps·σ_max`` each; those from
    ``sqrt(eigvalsh(MᵀM))`` carry ``~eps·σ_max²/σ``, which for ill-conditioned ``M``
    (feature scales spanning 4 decades: ``σ`` spanning 8) biases the sum by 3e-3
    relative (issue 13). ``M`` is scaled by a power of two first (exact), so that no
    scale of the moments overflows or underflows inside LAPACK.
    """
    if M.size == 0:
        return 0.0
    _, e = np.frexp(np.max(np.abs(M)))
    return float(np.ldexp(np.linalg.svd(np.ldexp(M, -e), compute_uv=False).sum(), e))


def _inv_sqrt_psd(C: np.ndarray, name: str) -> np.ndarray:
    lam, V = np.linalg.eigh(C)
    tol = lam.max() * C.shape[0] * np.finfo(float).eps
    if lam.min() <= tol:
        raise ValueError(
            f"the covariance of {name} is singular (rank {int((lam > tol).sum())} < "
            f"{C.shape[0]}): whitening (alpha < 1) is undefined; use alpha=1 or reduce "
            f"{name} to its principal components first"
        )
    return (V / np.sqrt(lam)) @ V.T


def _arccos(c: float) -> float:
    # |<X, Y T>| <= 1 by Cauchy–Schwarz; clip rounding just above 1
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


class ProcrustesDistance(Metric):
    """Angular Procrustes shape distance (Williams 2021), with partial whitening α."""

    name = "procrustes_distance"
    symmetric = True
    higher_is_better = False
    invariances = _BASE_INV
    streaming = True
    cost = "moments"

    def __init__(self, alpha: confloat(ge=0.0, le=1.0) = 1.0):  # type: ignore[valid-type]
        self.alpha = alpha

    def claimed_invariances(self) -> frozenset[Invariance]:
        if self.alpha == 0.0:
            return _BASE_INV | {Invariance.INVERTIBLE_LINEAR}
        return _BASE_INV

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        if self.alpha != 1.0:
            return self._from_moments(Moments.from_arrays(X, Y, validated=True))
        # α = 1 needs only XcᵀYc and the two Frobenius norms: one GEMM, no Gram matrices.
        n = X.shape[0]
        mx, my = X.mean(axis=0), Y.mean(axis=0)
        ssx = np.einsum("ij,ij->j", X, X) - n * mx**2
        ssy = np.einsum("ij,ij->j", Y, Y) - n * my**2
        if np.all(mx**2 * n <= 1e2 * np.maximum(ssx, 0.0)) and np.all(
            my**2 * n <= 1e2 * np.maximum(ssy, 0.0)
        ):
            sxy = X.T @ Y
            sxy -= n * np.outer(mx, my)  # rank-one centring, see numerics.moments
        else:
            Xc, Yc = X - mx, Y - my
            sxy = Xc.T @ Yc
            ssx, ssy = np.einsum("ij,ij->j", Xc, Xc), np.einsum("ij,ij->j", Yc, Yc)
        return self._distance(sxy, float(ssx.sum()), float(ssy.sum()))

    def _from_moments(self, m: Moments) -> float:
        if self.alpha == 1.0:
            return self._distance(m.sxy, float(np.trace(m.sxx)), float(np.trace(m.syy)))
        n, a = m.n, self.alpha
        Mx = a * np.eye(m.d_x) + (1 - a) * _inv_sqrt_psd(m.sxx / n, "X")
        My = a * np.eye(m.d_y) + (1 - a) * _inv_sqrt_psd(m.syy / n, "Y")
        sxy = Mx @ m.sxy @ My
        return self._distance(
            sxy, float(np.sum(Mx * (m.sxx @ Mx))), float(np.sum(My * (m.syy @ My)))
        )

    @staticmethod
    def _distance(sxy: np.ndarray, nx2: float, ny2: float) -> float:
        if nx2 <= 0.0 or ny2 <= 0.0:
            which = "X" if nx2 <= 0.0 else "Y"
            raise ValueError(f"{which} is constant (zero variance): its shape is undefined")
        return _arccos(nuclear_norm(sxy) / np.sqrt(nx2 * ny2))

"""Procrustes shape distance (Williams et al. 2021; MATH.md: Procrustes shape distance).

With centred, Frobenius-normalised ``X, Y`` (zero-padded to equal width — padding
does not change the nuclear norm, so it is implicit), the angular distance is
``arccos(||XᵀY||_*)``. The partial-whitening family (Williams 2021 §2.3) first maps
``X ↦ Xc (α I + (1−α) C_x^{−1/2})`` with ``C_x = XcᵀXc / (tr(XcᵀXc) / d_x)``, the
covariance in units of its mean variance, so that every ``α`` is invariant to the
data's scale and to ``n`` (MATH.md asks the default to be scale-invariant; Williams
2021 leaves the scale of ``C_x`` open): ``α = 1`` (default) is
the rotation-invariant Procrustes distance, ``α = 0`` the fully whitened (CCA-like)
distance, invariant to any invertible linear map.

``convention="netrep"`` reproduces netrep's ``LinearMetric`` (ahwillia/netrep,
``netrep.utils.whiten``) for ``0 < α < 1`` (MATH.md: Procrustes shape distance): the
partial whitening ``α I + (1−α) S_x^{−1/2}`` is built on the *unnormalised* scatter
``S_x = XcᵀXc`` with its eigenvalues clipped below at ``1e-7`` (so the value depends on
``n`` and on the data's scale, and rank-deficient inputs are regularised instead of
refused), and ``α > 1 − 1e-7`` is treated as ``α = 1``. netrep's variance-preserving
rescaling is a scalar and its zero-padding adds zero rows/columns to ``XcᵀYc``; neither
changes the angular distance, so neither is needed here.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import confloat

from simbench.metrics.base import Metric
from simbench.metrics.prepared import MomentsSide, PreparedMoments
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


#: netrep ``whiten``'s ``eigval_tol``: scatter eigenvalues are clipped to at least this
_NETREP_EIGVAL_TOL = 1e-7


def _netrep_whitener(S: np.ndarray, alpha: float) -> np.ndarray:
    """``α I + (1−α) S^{−1/2}`` on the unnormalised scatter ``S``, eigenvalues clipped
    at ``1e-7`` (netrep ``whiten``, without its scalar variance-preserving factor)."""
    lam, V = np.linalg.eigh(S)
    lam = np.maximum(lam, _NETREP_EIGVAL_TOL)
    return (V * (alpha + (1.0 - alpha) / np.sqrt(lam))) @ V.T


def _arccos(c: float) -> float:
    # |<X, Y T>| <= 1 by Cauchy–Schwarz; clip rounding just above 1
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


class ProcrustesDistance(PreparedMoments, Metric):
    """Angular Procrustes shape distance (Williams 2021), with partial whitening α.

    ``convention="netrep"`` reproduces netrep's ``LinearMetric(alpha)`` values (module
    docstring); the default ``"simbench"`` whitens with the covariance in units of its
    mean variance, which makes every ``α`` scale-invariant, and refuses singular
    covariances for ``α < 1``.
    """

    name = "procrustes_distance"
    symmetric = True
    higher_is_better = False
    invariances = _BASE_INV
    streaming = True
    cost = "moments"

    def __init__(
        self,
        alpha: confloat(ge=0.0, le=1.0) = 1.0,  # type: ignore[valid-type]
        convention: Literal["simbench", "netrep"] = "simbench",
    ):
        self.alpha = alpha
        self.convention = convention

    def _alpha(self) -> float:
        # netrep's whiten returns early (no whitening) for alpha > 1 - eigval_tol
        if self.convention == "netrep" and self.alpha > 1.0 - _NETREP_EIGVAL_TOL:
            return 1.0
        return self.alpha

    def claimed_invariances(self) -> frozenset[Invariance]:
        if self.alpha == 0.0:
            return _BASE_INV | {Invariance.INVERTIBLE_LINEAR}
        if self.convention == "netrep" and self._alpha() != 1.0:
            # whitening on the unnormalised scatter: the value depends on the data's scale
            return _BASE_INV - {Invariance.ISOTROPIC_SCALING}
        return _BASE_INV

    def prepare(self, X: Any) -> MomentsSide | None:
        """The side's moments; ``None`` for netrep's partial whitening, which whitens the
        data themselves (see ``_compute``)."""
        if self._alpha() != 1.0 and self.convention == "netrep":
            return None
        return super().prepare(X)

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        if self._alpha() != 1.0 and self.convention == "netrep":
            # whiten the centred data themselves, as netrep does: with n < d the clipped
            # (1e-7) rounding-level eigenvalues of the scatter are amplified by up to
            # 1/sqrt(1e-7), and only the data's own null-space components (not the
            # scatter's rounding) then enter the value
            a = self._alpha()
            Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
            Xw, Yw = Xc @ _netrep_whitener(Xc.T @ Xc, a), Yc @ _netrep_whitener(Yc.T @ Yc, a)
            return self._distance(Xw.T @ Yw, float(np.sum(Xw * Xw)), float(np.sum(Yw * Yw)))
        if self._alpha() != 1.0:
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
        if self._alpha() == 1.0:
            return self._distance(m.sxy, float(np.trace(m.sxx)), float(np.trace(m.syy)))
        return self._whitened(m.sxx, m.syy, m.sxy, m.n)

    def _whitened(self, sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray, n: int) -> float:
        """Distance after partial whitening ``Mx``, ``My`` of the two centred scatters."""
        a = self._alpha()
        if self.convention == "netrep":
            Mx, My = _netrep_whitener(sxx, a), _netrep_whitener(syy, a)
        else:
            # covariance in units of its mean variance, C / (tr C / d): scale-invariant
            dx, dy = sxx.shape[0], syy.shape[0]
            Mx = a * np.eye(dx) + (1 - a) * _inv_sqrt_psd(sxx * (dx / np.trace(sxx)), "X")
            My = a * np.eye(dy) + (1 - a) * _inv_sqrt_psd(syy * (dy / np.trace(syy)), "Y")
        return self._distance(
            Mx @ sxy @ My, float(np.sum(Mx * (sxx @ Mx))), float(np.sum(My * (syy @ My)))
        )

    @staticmethod
    def _distance(sxy: np.ndarray, nx2: float, ny2: float) -> float:
        if nx2 <= 0.0 or ny2 <= 0.0:
            which = "X" if nx2 <= 0.0 else "Y"
            raise ValueError(f"{which} is constant (zero variance): its shape is undefined")
        return _arccos(nuclear_norm(sxy) / np.sqrt(nx2 * ny2))

"""CCA-family metrics: mean CCA, SVCCA, PWCCA and DFT SVCCA for conv layers (MATH.md).

All but the DFT variant stream: they need only the paired second moments (kernels in
:mod:`simbench.numerics.cca`). Invariances claimed (MATH.md: Ground-truth checks):

- ``cca``: translation, isotropic scaling, orthogonal, permutation and invertible linear
  maps of either side (the canonical correlations depend only on the column spaces of
  the centred data). A ridge ``eps > 0`` breaks invertible-linear invariance.
- ``svcca``/``svcca_dft``: all but invertible linear: the SVD step ranks directions by
  variance, which a non-orthogonal map changes.
- ``pwcca``: translation, isotropic scaling, permutation. Its weights ``α`` are ℓ₁ norms
  over X's neurons, so an orthogonal (or invertible) map of X changes them (maps of Y
  do not).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from simbench.metrics.base import Metric
from simbench.metrics.prepared import PreparedMoments
from simbench.numerics.arrays import ArrayLike, to_numpy
from simbench.numerics.cca import (
    canonical_correlations,
    check_eps,
    check_threshold,
    dft_svcca,
    pwcca,
    spectral_moments,
    svcca,
)
from simbench.numerics.moments import Moments
from simbench.plugin import ALL_INVARIANCES, Invariance, Score

_NOT_LINEAR = ALL_INVARIANCES - {Invariance.INVERTIBLE_LINEAR}


class MeanCCA(PreparedMoments, Metric):
    """Mean canonical correlation Σρᵢ / min(d_x, d_y) (MATH.md: CCA).

    ``eps`` is a ridge relative to the mean variance (``S + ε·tr(S)/d·I``); with the
    default ``eps=0`` a rank-deficient side (``n ≤ d``, constant or collinear columns)
    raises ``ValueError``. ``details``: ``rho``, the canonical correlations, descending.
    """

    name = "cca"
    symmetric = True
    higher_is_better = True
    invariances = ALL_INVARIANCES
    streaming = True
    cost = "moments"

    def __init__(self, eps: float = 0.0) -> None:
        check_eps(eps)
        self.eps = eps

    def claimed_invariances(self) -> frozenset[Invariance]:
        return self.invariances if self.eps == 0 else _NOT_LINEAR

    def _from_moments(self, m: Moments) -> Score:
        rho = canonical_correlations(m, self.eps)
        return Score(float(rho.mean()), details={"rho": rho})


class SVCCA(PreparedMoments, Metric):
    """SVCCA (Raghu et al. 2017): CCA on each side's top singular directions (MATH.md: SVCCA).

    Each centred side keeps its top ``m'`` singular directions, ``m'`` the smallest with
    ``Σ_{i≤m'} sᵢ ≥ threshold·Σ sᵢ`` (``rule="sum"``: singular values; ``"variance"``:
    their squares); the value is ``Σρᵢ / min(m'_x, m'_y)``. Computed from the scatter's
    eigen-decomposition, so it streams. ``details``: ``rho``, ``m_x``, ``m_y``.
    """

    name = "svcca"
    symmetric = True
    higher_is_better = True
    invariances = _NOT_LINEAR
    streaming = True
    cost = "moments"

    def __init__(
        self,
        threshold: float = 0.99,
        rule: Literal["sum", "variance"] = "sum",
        eps: float = 0.0,
    ) -> None:
        check_threshold(threshold)
        check_eps(eps)
        self.threshold = threshold
        self.rule = rule
        self.eps = eps

    def _from_moments(self, m: Moments) -> Score:
        r = svcca(m, self.threshold, self.rule, self.eps)
        return Score(r.value, details={"rho": r.rho, "m_x": r.m_x, "m_y": r.m_y})

    @classmethod
    def example_inputs(cls, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A related pair whose spectra decay geometrically, so the SVD step drops directions.

        (On the generic example every direction carries more than 1% of the singular-value
        sum, SVCCA keeps them all and reduces to plain CCA.)
        """
        n, dx, dy = 120, 8, 6
        Z = rng.normal(size=(n, dx))
        Qx = np.linalg.qr(rng.normal(size=(dx, dx)))[0]
        Qy = np.linalg.qr(rng.normal(size=(dy, dy)))[0]
        X = (Z * 0.5 ** np.arange(dx)) @ Qx
        Y = (Z[:, :dy] * 0.5 ** np.arange(dy) + 0.02 * rng.normal(size=(n, dy))) @ Qy
        return X, Y


class PWCCA(PreparedMoments, Metric):
    """Projection-weighted CCA (Morcos et al. 2018): Σ αᵢρᵢ, αᵢ ∝ Σⱼ|⟨hᵢ, xⱼ⟩| (MATH.md: PWCCA).

    ``hᵢ`` is X's i-th canonical variate and ``xⱼ`` X's j-th centred neuron, so the
    weights are X's (asymmetric). Only the ``min(d_x, d_y)`` paired variates are summed
    and normalised over. ``eps`` as for ``cca``. ``details``: ``alpha``, ``rho``.
    """

    name = "pwcca"
    symmetric = False
    higher_is_better = True
    invariances = frozenset(
        {Invariance.TRANSLATION, Invariance.ISOTROPIC_SCALING, Invariance.PERMUTATION}
    )
    streaming = True
    cost = "moments"

    def __init__(self, eps: float = 0.0) -> None:
        check_eps(eps)
        self.eps = eps

    def _from_moments(self, m: Moments) -> Score:
        value, alpha, rho = pwcca(m, self.eps)
        return Score(value, details={"alpha": alpha, "rho": rho})


def _as_conv(x: ArrayLike, name: str, min_rows: int) -> np.ndarray:
    """float64 ``(B, C, H, W)``; ``(n, d)`` is read as ``(n, d, 1, 1)``, ``(B, C, L)`` as L×1."""
    arr = to_numpy(x)
    if arr.ndim == 2:
        arr = arr[:, :, None, None]
    elif arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(
            f"{name} must be conv activations (B, C, H, W) (or (B, C, L), or (n, d)); "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} has {arr.shape[0]} sample(s); at least {min_rows} are needed.")
    if 0 in arr.shape[1:]:
        raise ValueError(f"{name} has an empty channel or spatial axis (shape {arr.shape}).")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf).")
    return arr


class DFTSVCCA(Metric):
    """SVCCA of conv layers via a 2-D DFT per channel, one C×C block per frequency (SVCCA §3.1).

    Inputs are ``(B, C, H, W)`` activations of both networks on the same ``B`` images,
    with equal ``H, W`` (else ``ValueError``: pool or crop first). After an orthonormal
    DFT over ``(H, W)`` the covariance is block-diagonal by frequency when the data are
    translation invariant (SVCCA Theorem 1), so the ``(C·H·W)²`` covariance is never
    formed. Combination: the SVD step applies ``threshold`` to the pooled spectrum of all
    frequencies, CCA runs per frequency on the kept directions, and the value is
    ``Σρ / min(m'_x, m'_y)`` over all frequencies' correlations: exactly ``svcca`` (or
    ``cca`` with ``threshold=None``) on the flattened ``(B, C·H·W)`` activations when the
    data are translation invariant (circularly), an approximation otherwise.
    ``batch_size`` bounds memory (0: automatic). ``details``: ``rho``, ``m_x``, ``m_y``.
    """

    name = "svcca_dft"
    symmetric = True
    higher_is_better = True
    invariances = _NOT_LINEAR
    streaming = False
    cost = "moments"
    input_ndim: ClassVar[int] = 4

    def __init__(
        self,
        threshold: float | None = 0.99,
        rule: Literal["sum", "variance"] = "sum",
        eps: float = 0.0,
        batch_size: int = 0,
    ) -> None:
        check_threshold(threshold)
        check_eps(eps)
        if batch_size < 0:
            raise ValueError(f"batch_size must be >= 0 (0: automatic); got {batch_size}")
        self.threshold = threshold
        self.rule = rule
        self.eps = eps
        self.batch_size = batch_size

    def claimed_invariances(self) -> frozenset[Invariance]:
        if self.threshold is None and self.eps == 0:
            return ALL_INVARIANCES  # plain per-frequency CCA: any invertible channel map
        return self.invariances

    def validate(self, X: ArrayLike, Y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """float64 ``(B, C, H, W)`` arrays with equal ``B`` and equal ``(H, W)``."""
        Xa = _as_conv(X, "X", self.min_samples)
        Ya = _as_conv(Y, "Y", self.min_samples)
        if Xa.shape[0] != Ya.shape[0]:
            raise ValueError(
                "X and Y must hold the same samples in the same order: "
                f"X has {Xa.shape[0]}, Y has {Ya.shape[0]}."
            )
        if Xa.shape[2:] != Ya.shape[2:]:
            raise ValueError(
                f"svcca_dft needs equal spatial sizes; got X {Xa.shape[2:]} and Y "
                f"{Ya.shape[2:]}. Pool or crop one layer to the other's (H, W) first, or "
                "compare flattened activations with svcca."
            )
        return Xa, Ya

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> Score:
        sm = spectral_moments(X, Y, self.batch_size)
        r = dft_svcca(sm, self.threshold, self.rule, self.eps)
        return Score(r.value, details={"rho": r.rho, "m_x": r.m_x, "m_y": r.m_y})

    @classmethod
    def example_inputs(cls, rng: np.random.Generator) -> tuple[Any, Any]:
        """Two related conv activations ``(48, C, 4, 4)`` sharing a 3-channel latent."""
        B, H, W, k = 48, 4, 4, 3
        Z = rng.normal(size=(B, k, H, W))
        X = np.einsum("bkhw,kc->bchw", Z, rng.normal(size=(k, 5)))
        Y = np.einsum("bkhw,kc->bchw", Z, rng.normal(size=(k, 4)))
        X += 0.5 * rng.normal(size=X.shape)
        Y += 0.5 * rng.normal(size=Y.shape)
        return X, Y

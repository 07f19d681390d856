"""Distance correlation (Székely, Rizzo & Bakirov 2007; Székely & Rizzo 2014).

With Euclidean distances ``a_ij = ‖x_i − x_j‖``, ``b_ij = ‖y_i − y_j‖``, row sums
``r_i = Σ_j a_ij`` (the matrix is symmetric, so they are also the column sums) and total
``S = Σ_ij a_ij``:

- **V-statistic** (2007, the default): double-centred ``A_ij = a_ij − r_i/n − r_j/n + S/n²``,
  ``dCov²_n(X, Y) = (1/n²) Σ_ij A_ij B_ij``, ``dCor²_n = dCov²_n(X, Y) /
  √(dCov²_n(X, X) dCov²_n(Y, Y))`` (0 when the denominator is 0, the paper's
  convention), and the metric is ``dCor_n = √dCor²_n ∈ [0, 1]`` (``squared=True``:
  ``dCor²_n``). This is ``dcor.distance_correlation`` and ReSi's ``distance_correlation``.
- **Bias-corrected** (``bias_corrected=True``; Székely & Rizzo 2014, "Partial distance
  correlation", Def. 1 and eq. 2.9): U-centred ``Ã_ij = a_ij − r_i/(n−2) − r_j/(n−2) +
  S/((n−1)(n−2))`` for ``i ≠ j``, ``Ã_ii = 0``, ``(Ã·B̃) = Σ_{i≠j} Ã_ij B̃_ij / (n(n−3))``
  (an unbiased estimator of the population ``dCov²``) and ``R*_n = (Ã·B̃) / √((Ã·Ã)
  (B̃·B̃))``, the bias-corrected estimator of ``dCor²`` — squared by nature and negative
  when X and Y are (close to) independent, so only ``squared=True`` (the default for
  it) is allowed. This is ``dcor.u_distance_correlation_sqr``. Needs ``n ≥ 4``.

**Computation.** Distances are formed ``rows`` rows at a time from the Gram form
``‖x_i‖² + ‖x_j‖² − 2 x_iᵀx_j`` on column-centred data (BLAS), so memory is
``O(n · rows)``, never ``n×n`` for large ``n``. A first pass computes the row sums (the
centring is then exact); a second pass recomputes each block of distances, centres it and
accumulates ``Σ A∘B``, ``Σ A∘A``, ``Σ B∘B``. When the whole matrix fits in one block the
distances are computed once. Cost ``O(n² (d_x + d_y))``.
"""

from __future__ import annotations

import numpy as np

from simbench.metrics.base import Metric
from simbench.plugin import Invariance

#: float64 elements of one block of a distance matrix (32 MiB): rows per block = this / n
_BLOCK_ELEMENTS = 1 << 22


def _distance_rows(Z: np.ndarray, sq: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of the Euclidean distance matrix of the (centred) rows of ``Z``."""
    D = Z[lo:hi] @ Z.T
    D *= -2.0
    D += sq[lo:hi, None]
    D += sq[None, :]
    np.maximum(D, 0.0, out=D)
    i = np.arange(hi - lo)
    D[i, lo + i] = 0.0  # exact zero self-distances
    return np.sqrt(D, out=D)


def distance_covariances(
    X: np.ndarray, Y: np.ndarray, *, bias_corrected: bool = False, rows: int | None = None
) -> tuple[float, float, float]:
    """``(dCov²(X,Y), dCov²(X,X), dCov²(Y,Y))``: V-statistics, or U-statistics
    (``bias_corrected``), in blocks of ``rows`` rows (module docstring)."""
    n = X.shape[0]
    if bias_corrected and n < 4:
        raise ValueError(f"the bias-corrected distance covariance needs n >= 4; got {n}")
    rows = rows or max(1, _BLOCK_ELEMENTS // n)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)  # distances are translation-free
    sqx, sqy = np.einsum("ij,ij->i", Xc, Xc), np.einsum("ij,ij->i", Yc, Yc)
    blocks = [(lo, min(lo + rows, n)) for lo in range(0, n, rows)]
    if len(blocks) == 1:
        cached = (_distance_rows(Xc, sqx, 0, n), _distance_rows(Yc, sqy, 0, n))
        ra, rb = cached[0].sum(axis=1), cached[1].sum(axis=1)
    else:
        cached = None
        ra = np.concatenate([_distance_rows(Xc, sqx, lo, hi).sum(axis=1) for lo, hi in blocks])
        rb = np.concatenate([_distance_rows(Yc, sqy, lo, hi).sum(axis=1) for lo, hi in blocks])
    if bias_corrected:
        ca, cb = ra / (n - 2), rb / (n - 2)
        ga, gb = ra.sum() / ((n - 1) * (n - 2)), rb.sum() / ((n - 1) * (n - 2))
        norm = n * (n - 3)
    else:
        ca, cb = ra / n, rb / n
        ga, gb = ra.sum() / n**2, rb.sum() / n**2
        norm = n * n
    sxy = sxx = syy = 0.0
    for lo, hi in blocks:
        if cached is not None:
            A, B = cached
        else:
            A, B = _distance_rows(Xc, sqx, lo, hi), _distance_rows(Yc, sqy, lo, hi)
        A -= ca[lo:hi, None]
        A -= ca[None, :]
        A += ga
        B -= cb[lo:hi, None]
        B -= cb[None, :]
        B += gb
        if bias_corrected:
            i = np.arange(hi - lo)
            A[i, lo + i] = 0.0
            B[i, lo + i] = 0.0
        sxy += float(np.vdot(A, B))
        sxx += float(np.vdot(A, A))
        syy += float(np.vdot(B, B))
    return sxy / norm, sxx / norm, syy / norm


class DistanceCorrelation(Metric):
    """Distance correlation dCor (Székely et al. 2007), or its bias-corrected square.

    Default: the V-statistic ``dCor_n ∈ [0, 1]`` (``squared=True``: ``dCor²_n``).
    ``bias_corrected=True``: Székely & Rizzo's (2014) ``R*_n``, an estimate of ``dCor²``
    that is about 0 (and may be negative) for independent data. 0 when either side is
    constant. Distances in row blocks: ``O(n·rows)`` memory.
    """

    name = "distance_correlation"
    symmetric = True
    higher_is_better = True
    invariances = frozenset(
        {
            Invariance.PERMUTATION,
            Invariance.ORTHOGONAL,
            Invariance.ISOTROPIC_SCALING,
            Invariance.TRANSLATION,
        }
    )
    streaming = False
    cost = "gram"

    def __init__(self, bias_corrected: bool = False, squared: bool | None = None) -> None:
        if bias_corrected and squared is False:
            raise ValueError(
                "the bias-corrected estimator estimates dCor² and is negative for "
                "near-independent data, so it has no square root: use squared=True (or None)"
            )
        self.bias_corrected = bias_corrected
        self.squared = squared
        self.min_samples = 4 if bias_corrected else 2  # type: ignore[misc]

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        vxy, vxx, vyy = distance_covariances(X, Y, bias_corrected=self.bias_corrected)
        den = vxx * vyy
        r2 = vxy / np.sqrt(den) if den > 0 else 0.0
        if self.bias_corrected or self.squared:
            return float(r2)
        return float(np.sqrt(max(r2, 0.0)))  # V-statistic dCov² >= 0; clip rounding

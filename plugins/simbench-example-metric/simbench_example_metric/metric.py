"""``mean_corr``: mean Pearson correlation of optimally matched neurons.

With centred scatter matrices ``Sxx``, ``Syy``, ``Sxy`` of the paired representations
``X (n, d_x)`` and ``Y (n, d_y)``, the neuron-by-neuron correlation matrix is

    R_ij = (Sxy)_ij / sqrt((Sxx)_ii (Syy)_jj)

and the score is the best one-to-one matching of X's neurons to Y's (Li et al. 2016,
"Convergent learning"; Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``):

    mean_corr(X, Y) = max over matchings π of  (1/k) Σ_{i matched} R_{i, π(i)},   k = min(d_x, d_y)

With ``absolute=True`` the matching maximises ``|R_ij|`` instead (a neuron and its
negative count as the same neuron). A constant neuron has no correlation; its row (or
column) of ``R`` is defined as 0, so it contributes 0 if matched.

Only second moments are needed, so the metric streams: memory is O(d²) whatever ``n``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

import simbench.hookspecs
from simbench import Consumes, Invariance, Metric, Moments

#: a neuron whose standard deviation is below this fraction of its |mean| is constant
#: (its centred scatter is then rounding noise, not signal)
_CONSTANT_RTOL = 1e-10


def _stds(scatter: np.ndarray, mean: np.ndarray, n: int) -> np.ndarray:
    """Per-neuron standard deviations, 0 for neurons that are constant to rounding."""
    std = np.sqrt(np.clip(np.diag(scatter), 0.0, None) / n)
    return np.where(std <= _CONSTANT_RTOL * np.abs(mean), 0.0, std)


def correlation_matrix(m: Moments) -> np.ndarray:
    """Pearson correlations ``R (d_x, d_y)`` from paired moments; constant neurons give 0."""
    sx = _stds(m.sxx, m.mean_x, m.n)
    sy = _stds(m.syy, m.mean_y, m.n)
    denom = np.outer(sx, sy) * m.n
    R = np.zeros_like(m.sxy)
    ok = denom > 0
    R[ok] = m.sxy[ok] / denom[ok]
    return np.clip(R, -1.0, 1.0)


class MeanCorrelation(Metric):
    """Mean Pearson correlation of optimally matched neurons (Hungarian matching)."""

    name = "mean_corr"
    consumes = Consumes.REPRESENTATIONS
    symmetric = True  # R(Y, X) = R(X, Y)ᵀ: the best matching has the same value
    higher_is_better = True
    # Correlations are unchanged by shifting or (positively) rescaling a neuron, and the
    # matching absorbs any reordering. Rotations mix neurons: NOT orthogonal-invariant.
    invariances = frozenset(
        {Invariance.PERMUTATION, Invariance.ISOTROPIC_SCALING, Invariance.TRANSLATION}
    )
    streaming = True
    cost = "moments"

    def __init__(self, absolute: bool = False) -> None:
        self.absolute = absolute

    def _from_moments(self, m: Moments) -> float:
        R = correlation_matrix(m)
        gain = np.abs(R) if self.absolute else R
        rows, cols = linear_sum_assignment(gain, maximize=True)
        return float(gain[rows, cols].sum() / min(R.shape))


@simbench.hookspecs.hookimpl
def simbench_register_metrics() -> list[type]:
    """The hook simbench calls: return this package's metric classes."""
    return [MeanCorrelation]

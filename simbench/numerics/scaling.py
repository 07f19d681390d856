"""Exact power-of-two rescaling, so that products of extreme-scale inputs neither
overflow nor underflow float64.

Multiplying by ``2^k`` only changes the exponent of every float: it is exact (unless a
value becomes subnormal), so a metric invariant to isotropic scaling gives on
``2^-k X`` the value it would give on ``X`` in exact arithmetic, and its products
(``XᵀX``, fourth-order sums) stay far from the float64 limits.
"""

from __future__ import annotations

import math

import numpy as np

#: inputs whose largest magnitude lies in ``[2^-LIMIT_EXP, 2^LIMIT_EXP]`` are left as they
#: are (no copy, unchanged rounding); with ``2^64`` the fourth powers summed over
#: ``n ≤ 2^100`` samples stay below ``2^356``, far from overflow (``2^1024``)
LIMIT_EXP = 64


def max_abs(A: np.ndarray) -> float:
    """Largest magnitude of ``A`` (0 for an empty array)."""
    return float(np.max(np.abs(A))) if A.size else 0.0


def rescale_pow2(A: np.ndarray, *, limit_exp: int = LIMIT_EXP) -> np.ndarray:
    """``A · 2^-e`` with ``max|A · 2^-e|`` in ``[1/2, 1)`` when ``max|A|`` lies outside
    ``[2^-limit_exp, 2^limit_exp]``; otherwise ``A`` itself. Exact (see module)."""
    m = max_abs(A)
    if m == 0.0 or 2.0**-limit_exp <= m <= 2.0**limit_exp:
        return A
    return np.ldexp(A, -math.frexp(m)[1])

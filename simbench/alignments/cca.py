"""CCA alignments (MATH.md: Alignments, cca / svcca): ``T = A_x diag(ρ) A_y⁺``.

Both stream from a paired :class:`~simbench.numerics.moments.Moments`. ``T`` maps the
centred ``X`` onto the centred ``Y`` (``Yc ≈ Xc T``) and is expressed in the original
feature bases, shape ``(d_x, d_y)``. For ``cca`` with ``d_y ≤ d_x`` and ``eps = 0``,
``T`` is the least-squares regression ``Sxx⁻¹ Sxy``; on ``Y = X M`` it recovers ``M``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from simbench.alignments.base import Alignment
from simbench.numerics.cca import (
    CCAResult,
    cca,
    check_eps,
    check_threshold,
    svcca,
    transfer_map,
)
from simbench.numerics.moments import Moments


class CCAAlignment(Alignment):
    """Canonical-correlation map ``T = A_x diag(ρ) A_y⁺`` (MATH.md: Alignments, cca).

    ``eps`` is the ridge of :mod:`simbench.numerics.cca` (relative to the mean variance);
    with ``eps=0`` rank-deficient inputs raise ``ValueError``. After ``fit``, ``rho_``
    holds the canonical correlations.
    """

    name = "cca"
    streaming = True
    family = "linear"

    def __init__(self, eps: float = 0.0) -> None:
        check_eps(eps)
        self.eps = eps

    def _fit_moments(self, m: Moments) -> np.ndarray:
        r = cca(m, self.eps)
        self.rho_ = r.rho
        return transfer_map(r)


class SVCCAAlignment(Alignment):
    """CCA map after SVCCA's reduction of each side (MATH.md: Alignments, svcca).

    Each side keeps its top ``m'`` singular directions (``threshold``, ``rule`` as the
    ``svcca`` metric); the canonical weights are mapped back, ``A_x = V_x A'_x``, so ``T``
    is ``(d_x, d_y)`` in the original bases. After ``fit``: ``rho_``, ``m_x_``, ``m_y_``.
    """

    name = "svcca"
    streaming = True
    family = "linear"

    def __init__(
        self,
        threshold: float = 0.99,
        rule: Literal["sum", "variance"] = "sum",
        eps: float = 0.0,
    ) -> None:
        check_eps(eps)
        check_threshold(threshold)
        self.threshold = threshold
        self.rule = rule
        self.eps = eps

    def _fit_moments(self, m: Moments) -> np.ndarray:
        r = svcca(m, self.threshold, self.rule, self.eps, weights=True)
        self.rho_, self.m_x_, self.m_y_ = r.rho, r.m_x, r.m_y
        return transfer_map(CCAResult(r.rho, r.A_x, r.A_y))

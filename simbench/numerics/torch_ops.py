"""Torch kernels of the per-representation precomputation, on the tensor's own device.

Used by :meth:`simbench.metrics.base.Metric.prepare` when it is given a torch tensor
(e.g. :func:`simbench.compare_many` with ``device="cuda"``): the ``O(n²d)`` and
``O(n d²)`` products run where the data live (the GPU), only ``d×d`` results or scalars
come back. Precision: float64 by default, identical to the numpy path up to rounding
(tests/test_prepared.py: 1e-10). :func:`compute_dtype` (``compare_many(dtype="float32")``)
computes in float32 instead: the products then carry a relative error of about
``√n · 6e-8`` (float32 ε with pairwise summation), measured ≤ 1e-5 on CKA, CCA and
Procrustes values of well-conditioned data (n = 500, d = 32); the CCA family squares the
condition number of the data, so its error grows as ``κ(X)² · 6e-8``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any

#: the torch dtype ``prepare`` computes in (None: float64)
_DTYPE: contextvars.ContextVar[Any] = contextvars.ContextVar("simbench_torch_dtype", default=None)


@contextlib.contextmanager
def compute_dtype(dtype: Any) -> Iterator[None]:
    """Within the block, ``prepare`` computes torch inputs in ``dtype`` (float32 or float64)."""
    import torch

    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype!r}")
    token = _DTYPE.set(dtype)
    try:
        yield
    finally:
        _DTYPE.reset(token)


def as_matrix_t(x: Any, name: str, min_rows: int) -> Any:
    """Validate a torch ``(n, d)`` tensor (1-D read as ``(n, 1)``) and cast it to the
    compute dtype on its own device; ``ValueError`` as ``numerics.arrays.as_matrix``."""
    import torch

    t = x.detach()
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_features); got shape {tuple(t.shape)}."
        )
    n, d = t.shape
    if n < min_rows:
        raise ValueError(f"{name} has {n} sample(s); at least {min_rows} are needed.")
    if d == 0:
        raise ValueError(f"{name} has no features (shape {tuple(t.shape)}).")
    t = t.to(_DTYPE.get() or torch.float64)
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf).")
    return t.contiguous()


def max_abs_t(t: Any) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


def rescale_pow2_t(t: Any, limit_exp: int) -> Any:
    """:func:`~simbench.numerics.scaling.rescale_pow2` of a tensor (exact ``2^-e``)."""
    m = max_abs_t(t)
    if m == 0.0 or 2.0**-limit_exp <= m <= 2.0**limit_exp:
        return t
    return t * 2.0 ** -math.frexp(m)[1]


def to_np(t: Any) -> Any:
    """A tensor as float64 numpy (on the CPU)."""
    import torch

    return t.detach().to(torch.float64).cpu().numpy()


def linear_gram_t(X: Any) -> Any:
    """``Xc Xcᵀ`` of the column-centred ``X`` (cka.linear_gram)."""
    Xc = X - X.mean(dim=0)
    return Xc @ Xc.T


def rbf_gram_t(X: Any, ratio: float) -> Any:
    """``exp(−D² / (2 ratio² median(D²)))`` (cka.rbf_gram; median of all n² entries,
    the mean of the two middle ones for an even count, as numpy's)."""
    Xc = X - X.mean(dim=0)
    sq = (Xc * Xc).sum(dim=1)
    D2 = sq[:, None] + sq[None, :] - 2.0 * (Xc @ Xc.T)
    D2.clamp_(min=0.0)
    D2.fill_diagonal_(0.0)
    flat = D2.flatten().sort().values
    k = flat.numel()
    med = float(flat[k // 2]) if k % 2 else 0.5 * (float(flat[k // 2 - 1]) + float(flat[k // 2]))
    if med <= 0.0:
        raise ValueError(
            "the median squared distance is 0 (more than half of the sample pairs coincide); "
            "the RBF bandwidth is undefined"
        )
    return (D2 * (-1.0 / (2.0 * ratio**2 * med))).exp_()


def upper_t(K: Any) -> Any:
    """Strict upper triangle of a square tensor, row-major (as ``prepared.upper``)."""
    import torch

    n = K.shape[0]
    mask = torch.ones(n, n, dtype=torch.bool, device=K.device).triu_(1)
    return K[mask]


def packed_t(K: Any) -> Any:
    """``[diag(K), √2 · triu(K, 1)]`` (``prepared.packed``)."""
    import torch

    return torch.cat([K.diagonal(), upper_t(K) * math.sqrt(2.0)])

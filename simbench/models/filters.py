"""Frozen spatial filter banks for the factorized VGG (GM appendix B.2).

A bank is named by a string ``"name"`` or ``"name:argument"`` and resolved through the
small registry :data:`FILTER_BANKS` (``name -> fn(kernel_size, n, argument) -> (n, k, k)``
float64 tensor of orthonormal filters, leading first). Built in:

- ``gaussian`` (default; ``gaussian:<ℓ>`` sets the length scale): the leading eigenvectors
  of the smooth covariance ``Cov[(i,j),(i',j')] = exp(−|p − p'|²/(2ℓ²))`` on the ``k × k``
  grid, ``ℓ = k/4`` by default (see :func:`gaussian_eigenfilters`).
- ``learned:<checkpoint>``: the spatial eigenvectors (MATH.md "Spatial eigenvectors") of
  the conv layers ``≥ 2`` of a trained ``vgg`` checkpoint (see :func:`learned_eigenfilters`).

:func:`register_filter_bank` adds a bank.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "FILTER_BANKS",
    "filter_bank",
    "gaussian_eigenfilters",
    "learned_eigenfilters",
    "load_weights_file",
    "register_filter_bank",
]

FilterBankFn = Callable[[int, int, "str | None"], "torch.Tensor"]

#: name -> fn(kernel_size, n, argument or None) -> (n, k, k) float64 tensor
FILTER_BANKS: dict[str, FilterBankFn] = {}


def register_filter_bank(name: str, fn: FilterBankFn) -> None:
    """Make ``fn(kernel_size, n, argument)`` available as bank ``name`` (``name:argument``)."""
    if not name or ":" in name:
        raise ValueError(f"a filter bank name must be non-empty without ':'; got {name!r}")
    if name in FILTER_BANKS:
        raise ValueError(f"filter bank {name!r} is already registered")
    FILTER_BANKS[name] = fn


def split_bank_name(spec: str) -> tuple[str, str | None]:
    """``"learned:/x.safetensors"`` -> ``("learned", "/x.safetensors")``; unknown: ValueError."""
    name, sep, argument = spec.partition(":")
    if name not in FILTER_BANKS:
        known = ", ".join(sorted(FILTER_BANKS))
        raise ValueError(
            f"unknown filter bank {name!r} (from {spec!r}); known banks: {known} "
            "(parametric ones as 'name:argument', e.g. 'learned:/path/to/vgg.safetensors')"
        )
    return name, (argument if sep else None)


def filter_bank(spec: str, kernel_size: int, n: int) -> torch.Tensor:
    """The first ``n`` filters ``(n, k, k)`` (float64, orthonormal) of the bank ``spec``."""
    if isinstance(n, bool) or int(n) != n or not 1 <= n <= kernel_size**2:
        raise ValueError(
            f"n_filters must be an integer in [1, k² = {kernel_size**2}] for a {kernel_size}×"
            f"{kernel_size} bank; got {n!r}"
        )
    name, argument = split_bank_name(spec)
    bank = FILTER_BANKS[name](int(kernel_size), int(n), argument)
    if tuple(bank.shape) != (n, kernel_size, kernel_size):
        raise ValueError(
            f"filter bank {name!r} returned shape {tuple(bank.shape)}; expected "
            f"{(n, kernel_size, kernel_size)}"
        )
    return bank


# -- gaussian: analytic eigenfilters ---------------------------------------------------------
def _sign_fix(f: np.ndarray) -> np.ndarray:
    """Largest-magnitude entry positive (ties within 1e-8 relative: first in row-major order),
    the convention of :func:`simbench.numerics.covariance.spatial_eigenfilters`."""
    flat = f.ravel()
    mag = np.abs(flat)
    first = int(np.argmax(mag >= (1 - 1e-8) * mag.max()))
    return (-f if flat[first] < 0 else f) + 0.0  # + 0.0: no negative zeros


def gaussian_eigenfilters(
    kernel_size: int, n: int, length_scale: float | None = None
) -> np.ndarray:
    """Leading ``n`` eigenvectors ``(n, k, k)`` of the Gaussian covariance on the ``k × k`` grid.

    ``Cov[(i,j),(i',j')] = exp(−((i−i')² + (j−j')²)/(2ℓ²))`` with ``ℓ = k/4`` by default:
    scaling ℓ with ``k`` gives the same eigenvalue ratios and the same ordering for
    k = 3, 5, 7 (GM: the canonical set does not depend on the filter size). The covariance
    is ``K₁ ⊗ K₁`` (``K₁`` the 1-D kernel, whose eigenvalues are distinct because the
    Gaussian kernel is totally positive), so its eigenvectors are the products
    ``u_b(y) u_a(x)`` of 1-D eigenvectors with eigenvalue ``μ_a μ_b``. Order: a blob
    ``(0,0)``; the first derivatives ``(1,0)`` (along x, i.e. varying across columns) then
    ``(0,1)``; the saddle ``(1,1)``; then the pair ``(2,0)/(0,2)`` and so on (for ℓ = k/4
    and k ∈ {3, 5, 7}). The pairs ``(a,b)/(b,a)`` are exactly degenerate; the basis inside
    a pair follows the square's symmetry: for odd ``a+b`` (a 2-D irreducible pair like the
    derivatives) the axis-aligned products, x-varying first; for even ``a+b`` the
    transpose-symmetric sum (e.g. a centre-surround, isotropic second derivative) first,
    then the antisymmetric difference. So the default 5 filters are: blob, ∂x, ∂y, ∂x∂y,
    ∂²x + ∂²y. Signs: largest-magnitude entry positive (the blob is then positive
    everywhere). Returns float64.
    """
    k = int(kernel_size)
    ell = k / 4.0 if length_scale is None else float(length_scale)
    if not (math.isfinite(ell) and ell > 0):
        raise ValueError(f"the gaussian length scale must be positive and finite; got {ell}")
    if not 1 <= n <= k * k:
        raise ValueError(f"n must be in [1, {k * k}]; got {n}")
    x = np.arange(k, dtype=np.float64)
    K1 = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * ell * ell))
    mu, U = np.linalg.eigh(K1)
    mu, U = mu[::-1].copy(), U[:, ::-1].copy()
    for a in range(k):  # exact parity (K₁ commutes with the flip): u_a(−x) = (−1)^a u_a(x)
        u = (U[:, a] + (-1) ** a * U[::-1, a]) / 2
        U[:, a] = u / np.linalg.norm(u)

    def prod(a: int, b: int) -> np.ndarray:  # F[i, j] = u_b[i] u_a[j]: order a along x
        return np.outer(U[:, b], U[:, a])

    groups = []  # (eigenvalue, a + b, min, filters in order)
    for a in range(k):
        for b in range(a + 1):
            if a == b:
                fs = [prod(a, a)]
            elif (a + b) % 2:
                fs = [prod(a, b), prod(b, a)]
            else:
                fs = [
                    (prod(a, b) + prod(b, a)) / math.sqrt(2),
                    (prod(a, b) - prod(b, a)) / math.sqrt(2),
                ]
            groups.append((mu[a] * mu[b], a + b, b, fs))
    groups.sort(key=lambda g: (-g[0], g[1], g[2]))
    out = [_sign_fix(f) for g in groups for f in g[3]]
    return np.stack(out[:n])


def _gaussian_bank(kernel_size: int, n: int, argument: str | None) -> torch.Tensor:
    import torch

    ell = None
    if argument is not None:
        try:
            ell = float(argument)
        except ValueError:
            raise ValueError(
                f"'gaussian:<length scale>' needs a number; got {argument!r}"
            ) from None
    return torch.from_numpy(gaussian_eigenfilters(kernel_size, n, ell))


# -- learned: spatial eigenvectors of a trained vgg ------------------------------------------
def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local ``.safetensors`` file, else ``torch.load(weights_only=True)``.

    A ``.pt``/``.pth`` holding ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped.
    Never downloads; a missing file is a ``ValueError``.
    """
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"weights file {str(p)!r} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p), device="cpu")
    obj = torch.load(str(p), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{str(p)!r} does not hold a state dict of tensors")
    return obj


_CONV_KEY = re.compile(r"(?:^|\.)conv(\d+)\.weight$")


def learned_eigenfilters(path: str | Path, kernel_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``(k²,)`` and eigenfilters ``(k², k, k)`` of a trained ``vgg`` checkpoint.

    MATH.md "Spatial eigenvectors" pooled over layers: the ``k² × k²`` matrix ``FᵀF/N`` with
    ``F`` the ``(N, k²)`` stack of *all* ``C_out·C_in`` filters of the conv layers ``≥ 2``
    (GM Fig. 1: layer 1 behaves differently), every filter weighing the same — the
    per-layer definition extended to several layers by pooling the filters, not by
    averaging per-layer covariances. Layers are the state-dict keys ``…conv<l>.weight``
    (the ``vgg`` plugin's names; ``l`` parsed as a number, so ``conv10`` follows
    ``conv9``). Sign convention and ordering of
    :func:`simbench.numerics.covariance.spatial_eigenfilters`.
    """
    from simbench.numerics.covariance import spatial_eigenfilters

    state = load_weights_file(path)
    convs = sorted(
        (int(m.group(1)), key)
        for key in state
        if (m := _CONV_KEY.search(key)) is not None and state[key].ndim == 4
    )
    if not convs:
        raise ValueError(
            f"{str(path)!r} holds no vgg conv weights ('…conv<l>.weight'); 'learned:' needs "
            "a checkpoint of the 'vgg' architecture"
        )
    k = int(kernel_size)
    chosen = [state[key] for layer, key in convs if layer >= 2]
    bad = sorted({tuple(w.shape[2:]) for w in chosen} - {(k, k)})
    if not chosen or bad:
        raise ValueError(
            f"'learned:' needs conv layers >= 2 with {k}×{k} kernels; {str(path)!r} has "
            f"{len(chosen)} such layer(s) with kernel shapes {bad or 'none'}"
        )
    F = np.concatenate([w.detach().double().reshape(-1, 1, k, k).numpy() for w in chosen])
    return spatial_eigenfilters(F)


def _learned_bank(kernel_size: int, n: int, argument: str | None) -> torch.Tensor:
    import torch

    if not argument:
        raise ValueError("the 'learned' filter bank needs a checkpoint: 'learned:<path>'")
    _, filters = learned_eigenfilters(argument, kernel_size)
    return torch.from_numpy(np.ascontiguousarray(filters[:n]))


register_filter_bank("gaussian", _gaussian_bank)
register_filter_bank("learned", _learned_bank)

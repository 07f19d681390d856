"""Input validation and conversion: numpy arrays or torch tensors -> float64 numpy.

Every public metric and alignment goes through :func:`as_matrix` so that bad input
fails early with a message naming the argument and what is wrong (DEVELOPERS.md:
"bad input gets a clear error, never a traceback or a silent NaN").
"""

from __future__ import annotations

from typing import Any

import numpy as np

ArrayLike = Any  # numpy.ndarray | torch.Tensor | nested sequences


def is_torch(x: Any) -> bool:
    """True for a ``torch.Tensor`` (without importing torch when it is not loaded)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy(x: ArrayLike, dtype: np.dtype | type | None = np.float64) -> np.ndarray:
    """Convert a numpy array, a torch tensor on any device, or a sequence to numpy.

    Torch tensors are detached and moved to the CPU; the result is cast to ``dtype``
    (float64 by default, MATH.md conventions). No copy is made when none is needed.
    """
    if is_torch(x):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        if x.dtype.is_complex or x.dtype.is_floating_point is False:
            x = x.to(dtype=__import__("torch").float64)
        x = x.numpy()
    arr = np.asarray(x)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def as_matrix(
    x: ArrayLike,
    name: str = "X",
    *,
    min_rows: int = 2,
    dtype: np.dtype | type = np.float64,
    allow_nan: bool = False,
) -> np.ndarray:
    """Validate and convert a representation ``(n, d)`` to a float64 C-contiguous array.

    A 1-D input is read as ``(n, 1)``. Raises ``ValueError`` naming ``name`` for a
    wrong number of dimensions, too few rows, an empty feature axis or non-finite
    values (NaN or inf are never silently propagated).
    """
    arr = to_numpy(x, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_features); got shape {arr.shape}. "
            "Flatten convolutional activations first (simbench.numerics.arrays.flatten_conv)."
        )
    n, d = arr.shape
    if n < min_rows:
        raise ValueError(f"{name} has {n} sample(s); at least {min_rows} are needed.")
    if d == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape}).")
    if not allow_nan and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf).")
    return np.ascontiguousarray(arr)


def check_paired(X: np.ndarray, Y: np.ndarray, names: tuple[str, str] = ("X", "Y")) -> None:
    """Raise ``ValueError`` unless ``X`` and ``Y`` have the same number of samples."""
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must hold the same samples in the same order: "
            f"{names[0]} has {X.shape[0]} rows, {names[1]} has {Y.shape[0]}."
        )


def flatten_conv(a: ArrayLike, mode: str = "channels") -> np.ndarray:
    """Reshape conv activations ``(B, C, H, W)`` to a representation matrix.

    ``mode="channels"`` gives ``(B*H*W, C)`` (every position a sample, MATH.md
    conventions); ``mode="full"`` gives ``(B, C*H*W)``.
    """
    arr = to_numpy(a)
    if arr.ndim != 4:
        raise ValueError(f"conv activations must be (B, C, H, W); got shape {arr.shape}")
    b, c, h, w = arr.shape
    if mode == "channels":
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1).reshape(b * h * w, c))
    if mode == "full":
        return arr.reshape(b, c * h * w)
    raise ValueError(f"mode must be 'channels' or 'full'; got {mode!r}")


def center(X: np.ndarray) -> np.ndarray:
    """Column-centred copy of ``X``."""
    return X - X.mean(axis=0, keepdims=True)

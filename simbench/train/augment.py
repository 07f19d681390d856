"""Vectorised, device-side data augmentation and normalisation for the trainer.

Everything works on a whole batch at once, on the device where the batch lives, with
random numbers drawn from an explicit ``torch.Generator`` (never the global RNG), so a
run is reproducible from its seed and no per-image Python runs in the training loop.

Augmentations (GM appendix B.3: "horizontal flips and random crops" for CIFAR):

- random crop: the image is zero-padded by ``padding`` pixels on every side and a
  window of the original size is cut out at a per-image offset drawn uniformly from
  ``{0, ..., 2 * padding}`` on each axis -- exactly torchvision's
  ``RandomCrop(size, padding=padding)`` with the default constant fill 0 (black);
- horizontal flip with probability 1/2 (torchvision's ``RandomHorizontalFlip``).

Both run on the uint8 images (4 times less memory traffic than float); normalisation
then converts to float. The padding is the same for every image size (no
random-resized-crop for large images; see :mod:`simbench.train.trainer`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "augment",
    "channel_stats",
    "crop",
    "crop_offsets",
    "flip",
    "flip_mask",
    "normalize",
]


def crop_offsets(
    n: int, padding: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(n, 2)`` int64 offsets (row, column), each uniform in ``{0, ..., 2 * padding}``."""
    return torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=device)


def crop(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Crop image ``i`` of ``x`` (``(N, C, H, W)``) zero-padded by ``padding`` at ``offsets[i]``.

    ``out[i, c, h, w] = pad(x)[i, c, offsets[i, 0] + h, offsets[i, 1] + w]``, where
    ``pad(x)`` has ``padding`` zeros on every side. One gather (advanced indexing) for
    the whole batch; the result has the shape and dtype of ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"crop expects a batch (N, C, H, W); got shape {tuple(x.shape)}")
    if padding == 0:
        return x
    n, c, h, w = x.shape
    if offsets.shape != (n, 2):
        raise ValueError(f"offsets must have shape ({n}, 2); got {tuple(offsets.shape)}")
    padded = x.new_zeros((n, c, h + 2 * padding, w + 2 * padding))
    padded[:, :, padding : padding + h, padding : padding + w] = x
    dev = x.device
    rows = offsets[:, 0, None] + torch.arange(h, device=dev)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=dev)  # (N, W)
    # gather over (N, H, W, C) so that each index tuple reads C contiguous-ish values
    # of the channels-last storage the trainer keeps its images in
    hwc = padded.permute(0, 2, 3, 1)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = hwc[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def flip_mask(
    n: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(n,)`` bool: which images to flip, each with probability 1/2."""
    return torch.rand(n, generator=generator, device=device) < 0.5


def flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Images of ``x`` (``(N, C, H, W)``) with ``mask[i]`` mirrored left-right (last axis)."""
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def augment(
    x: torch.Tensor, padding: int, generator: torch.Generator, *, do_flip: bool = True
) -> torch.Tensor:
    """Random crop (``padding``) then random horizontal flip of a batch, as torchvision's
    ``RandomCrop(H, padding)`` followed by ``RandomHorizontalFlip()``.

    Random numbers are drawn in a fixed order from ``generator`` (which must live on
    ``x.device``): the crop offsets, then the flip mask.
    """
    n = x.shape[0]
    if padding > 0:
        x = crop(x, padding, crop_offsets(n, padding, generator, x.device))
    if do_flip:
        x = flip(x, flip_mask(n, generator, x.device))
    return x


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of ``images / 255``.

    ``images`` is uint8 ``(N, H, W, C)``. Computed exactly from a per-channel histogram
    of the 256 pixel values (float64), so the result does not depend on summation order
    and needs no float copy of the data.
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"channel_stats expects uint8 (N, H, W, C); got {images.dtype}")
    channels = images.shape[-1]
    if images.size == 0:
        raise ValueError("channel_stats needs at least one image")
    flat = images.reshape(-1, channels)
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = np.empty(channels)
    std = np.empty(channels)
    for ch in range(channels):
        counts = np.bincount(flat[:, ch], minlength=256).astype(np.float64)
        p = counts / counts.sum()
        mean[ch] = p @ values
        std[ch] = np.sqrt(p @ (values - mean[ch]) ** 2)
    # a constant channel would divide by zero: leave it unscaled (std 1)
    std[std == 0] = 1.0
    return mean, std


def normalize(
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """float32 ``(x / 255 - mean) / std`` per channel, for uint8 ``x`` of shape ``(N, C, H, W)``.

    ``mean`` and ``std`` are ``(C,)`` float32 tensors on ``x.device``.
    """
    if x.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 images; got {x.dtype}")
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (mean / std).view(1, -1, 1, 1)
    out = x.to(dtype=torch.float32, memory_format=memory_format)
    return out.mul_(scale).sub_(shift)

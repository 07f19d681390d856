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
then converts to float. For large images (GM's ImageNet-224 protocol)
:func:`random_resized_crop` draws torchvision's ``RandomResizedCrop`` boxes for the
whole batch at once and resamples them (:func:`resample_boxes`); :func:`center_resize`
is its evaluation view.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "augment",
    "center_resize",
    "channel_stats",
    "crop",
    "crop_offsets",
    "flip",
    "flip_mask",
    "normalize",
    "random_resized_crop",
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


# -- random-resized crop (GM's ImageNet protocol, 224 px) ---------------------------------
#: torchvision's RandomResizedCrop draws up to 10 boxes before falling back to the centre
RRC_ATTEMPTS = 10


def rrc_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(n, 4)`` float boxes ``(x1, y1, x2, y2)`` (pixel edges) of torchvision's
    ``RandomResizedCrop.get_params``, vectorised: ``RRC_ATTEMPTS`` candidates per image,
    each of area ``U(scale)·H·W`` and aspect ratio ``exp(U(log ratio))``, rounded; the
    first that fits is placed uniformly; if none fits, the centred crop of the whole
    image clamped to ``ratio``."""
    k = RRC_ATTEMPTS
    area = float(height * width)
    u = torch.rand((n, k, 4), generator=generator, device=device, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1)  # first fitting attempt (0 when none fits)
    rows = torch.arange(n, device=device)
    w, h = w[rows, first], h[rows, first]
    top = torch.floor(u[rows, first, 2] * (height - h + 1))
    left = torch.floor(u[rows, first, 3] * (width - w + 1))
    # fallback: torchvision's centre crop with the ratio clamped to [ratio[0], ratio[1]]
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    none = ~fits.any(dim=1)
    w = torch.where(none, torch.full_like(w, fw), w)
    h = torch.where(none, torch.full_like(h, fh), h)
    top = torch.where(none, torch.full_like(top, (height - fh) // 2), top)
    left = torch.where(none, torch.full_like(left, (width - fw) // 2), left)
    return torch.stack([left, top, left + w, top + h], dim=1)


def resample_boxes(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box resampled to ``size×size``, uint8 ``(N, C, size, size)``.

    Bilinear with 2×2 supersampling per output pixel (``torchvision.ops.roi_align``,
    ``aligned=True``): close to, not bit-equal to, torchvision's antialiased resize.
    """
    from torchvision.ops import roi_align

    idx = torch.arange(x.shape[0], device=x.device, dtype=torch.float32)[:, None]
    rois = torch.cat([idx, boxes.to(device=x.device, dtype=torch.float32)], dim=1)
    out = roi_align(x.float(), rois, (size, size), 1.0, 2, aligned=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` on a uint8 batch, on its
    device: boxes from :func:`rrc_boxes`, resampled by :func:`resample_boxes`."""
    if x.ndim != 4:
        raise ValueError(f"random_resized_crop expects (N, C, H, W); got {tuple(x.shape)}")
    n, _, height, width = x.shape
    boxes = rrc_boxes(n, height, width, scale, ratio, generator, x.device)
    return resample_boxes(x, boxes, size)


def center_resize(x: torch.Tensor, size: int, crop_pct: float = 0.875) -> torch.Tensor:
    """Evaluation view of the random-resized-crop protocol: the centred square of side
    ``crop_pct·min(H, W)`` (224/256 = 0.875: "resize 256, centre-crop 224") resampled to
    ``size``, uint8 ``(N, C, size, size)``."""
    n, _, height, width = x.shape
    side = crop_pct * min(height, width)
    top, left = (height - side) / 2, (width - side) / 2
    box = torch.tensor([left, top, left + side, top + side], dtype=torch.float64)
    return resample_boxes(x, box.expand(n, 4), size)

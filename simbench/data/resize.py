"""Resizing probe images to the input a model's weights expect (timm/torchvision style).

``resize_center_crop(x, size, crop_pct)``: the shorter side is resized (bilinear, with
antialiasing when shrinking) to ``round(size / crop_pct)``, then the central ``size × size``
square is kept — timm's and torchvision's evaluation transform (``crop_pct = 224/256`` is
"resize 256, crop 224"). Applied to normalised float batches: normalisation is a
per-channel affine map and bilinear weights sum to one, so resizing after normalising
equals resizing the images first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["resize_center_crop"]


def resize_center_crop(x: torch.Tensor, size: int | None, crop_pct: float = 1.0) -> torch.Tensor:
    """``(B, C, H, W)`` float images resized and center-cropped to ``size`` (``None``: as is)."""
    import torch.nn.functional as F

    if size is None:
        return x
    if int(size) < 1 or not 0 < crop_pct <= 1:
        raise ValueError(f"need size >= 1 and 0 < crop_pct <= 1; got {size}, {crop_pct}")
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    short = max(int(size), round(int(size) / crop_pct))
    scale = short / min(h, w)
    nh, nw = max(short, round(h * scale)), max(short, round(w * scale))
    if (nh, nw) != (h, w):
        shrink = nh < h or nw < w
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=shrink)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size]

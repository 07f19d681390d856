"""``tiny10``: the 10-layer plain CNN of Kornblith et al. 2019 ("Similarity of Neural Network
Representations Revisited", ICML; supplementary material, the "Tiny-10" architecture
used for Table 2's layer identification on CIFAR-10).

Configuration (their appendix table, checked against an independent re-implementation
that cites it, ``kornblith19a-supp.pdf``), every conv followed by batch norm and ReLU:

====  ===============================  ===============
 l    layer                            map (32×32 in)
====  ===============================  ===============
 1    3×3 conv, 16                     32×32
 2    3×3 conv, 16                     32×32
 3    3×3 conv, 32, stride 2           16×16
 4    3×3 conv, 32                     16×16
 5    3×3 conv, 32                     16×16
 6    3×3 conv, 64, stride 2           8×8
 7    3×3 conv, 64, valid padding      6×6
 8    1×1 conv, 64                     6×6
 --   global average pool              1×1
 9    linear → logits
====  ===============================  ===============

(8 convs + the logits layer; the "10" counts the global-average-pool stage too.)

Module paths (stable; checkpoints and :class:`LayerSpec` use them), matching
:mod:`simbench.models.vgg`: ``features.conv<l>``, ``features.bn<l>``, ``features.relu<l>``
(conv → BN → ReLU, as in the paper), then ``classifier.pool`` (global average pool),
``classifier.flatten`` and ``classifier.fc``. Same-padding convs pad ``k // 2``; the
stride-2 convs of a 32×32 input give 16×16 and 8×8 maps.

Choices where the paper is silent: convs have no bias (each is followed by batch norm,
which has a learned shift), the logits layer has one; batch norm is affine (PyTorch's
default); every conv/linear keeps PyTorch's default initialisation
(kaiming_uniform(a=√5): variance 1/(3·fan_in), MATH.md: normalised covariance).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING

from simbench.models.base import Architecture, LayerSpec
from simbench.models.vgg import _init_variance, _make_net, scaled_channels

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TINY10_CONFIG", "Tiny10"]

#: (output channels, kernel size, stride, padding) of conv layers 1..8; padding "valid" = 0
TINY10_CONFIG: tuple[tuple[int, int, int, int], ...] = (
    (16, 3, 1, 1),
    (16, 3, 1, 1),
    (32, 3, 2, 1),
    (32, 3, 1, 1),
    (32, 3, 1, 1),
    (64, 3, 2, 1),
    (64, 3, 1, 0),
    (64, 1, 1, 0),
)

#: largest width multiplier accepted
MAX_WIDTH = 64.0


class Tiny10(Architecture):
    """Kornblith et al. 2019's Tiny-10 (module docstring): 8 convs (BN + ReLU after each),
    global average pool, linear logits.

    Parameters: ``width`` (channel multiplier, rounded half-up, at least 1; 1 = the
    paper's 16/32/64 channels), ``in_channels``, ``input_size`` (the image side the
    model is trained on: 32 for CIFAR; any side ≥ 9 works since the head pools globally).
    """

    name = "tiny10"

    def __init__(self, width: float = 1.0, in_channels: int = 3, input_size: int = 32) -> None:
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a positive finite multiplier; got {width}")
        if width > MAX_WIDTH:
            raise ValueError(f"width must be at most {MAX_WIDTH:g}; got {width:g}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1; got {in_channels}")
        if input_size < 9:  # two stride-2 convs then a valid 3×3 conv need a 9-px side
            raise ValueError(f"input_size must be >= 9 for tiny10; got {input_size}")
        self.width = width
        self.in_channels = in_channels
        self.input_size = input_size

    def channels(self) -> list[int]:
        """Output channels of conv layers 1..8 after the width multiplier."""
        return [scaled_channels(c, self.width) for c, *_ in TINY10_CONFIG]

    def map_sizes(self) -> list[int]:
        """Side of each conv layer's output map for ``input_size`` inputs."""
        sizes, s = [], self.input_size
        for _, k, stride, pad in TINY10_CONFIG:
            s = (s + 2 * pad - k) // stride + 1
            sizes.append(s)
        return sizes

    def _build(self, num_classes: int) -> nn.Module:
        from torch import nn

        layers: OrderedDict = OrderedDict()
        c_in = self.in_channels
        for l, (c_out, (_, k, stride, pad)) in enumerate(
            zip(self.channels(), TINY10_CONFIG, strict=True), start=1
        ):
            layers[f"conv{l}"] = nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False)
            layers[f"bn{l}"] = nn.BatchNorm2d(c_out)
            layers[f"relu{l}"] = nn.ReLU()
            c_in = c_out
        classifier = nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(c_in, num_classes),
            )
        )
        return _make_net(nn.Sequential(layers), classifier)

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        """``conv1..conv8`` (input = weight module = the conv) then ``fc`` (the logits)."""
        specs = []
        for l in range(1, len(TINY10_CONFIG) + 1):
            path = f"features.conv{l}"
            mod = model.get_submodule(path)
            specs.append(
                LayerSpec(f"conv{l}", path, path, _init_variance(mod), tuple(mod.weight.shape))
            )
        fc = model.get_submodule("classifier.fc")
        specs.append(
            LayerSpec(
                "fc",
                "classifier.fc",
                "classifier.fc",
                _init_variance(fc),
                tuple(fc.weight.shape),
                "linear",
            )
        )
        return specs

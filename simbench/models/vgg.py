"""VGG architectures of Guth & Ménard 2024 ("GM"): ``vgg`` (appendix B.1) and
``factorized_vgg`` (appendix B.2), plus :func:`permute_hidden_channels`.

Module paths (stable; checkpoints and :class:`LayerSpec` use them):

- ``vgg``: ``features.conv<l>``, ``features.relu<l>``, ``features.bn<l>``,
  ``features.pool<l>`` (after the block where VGG has a max-pool), then
  ``classifier.pool`` (adaptive average pool), ``classifier.flatten`` and
  ``classifier.fc`` (linear head) or ``classifier.fc1..fc3`` (MLP head).
- ``factorized_vgg``: ``features.dw<l>`` (frozen depthwise), ``features.relu<l>``,
  ``features.bn<l>``, ``features.pw<l>`` (trainable 1×1), ``features.pool<l>``, and the same
  classifier.

Max-pools: a pool is kept while the feature map is at least 2×2 (it never shrinks below
1×1). For both supported input sizes this keeps all five VGG pools: 32 → 16 → 8 → 4 → 2 → 1
(so in VGG-11 conv7/conv8 see 2×2 maps — GM Fig. 1: only the first 6 conv layers are
spatially relevant at 32×32) and 224 → … → 7.
"""

from __future__ import annotations

import copy
import functools
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Literal

from simbench.models.base import Architecture, LayerSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["VGG", "VGG_CONFIGS", "FactorizedVGG", "permute_hidden_channels", "scaled_channels"]

#: conv output channels per layer, "M" a 2×2 max-pool (Simonyan & Zisserman 2015, A/B/D/E)
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        (64, 64, "M", 128, 128, "M")
        + (256,) * 4
        + ("M",)
        + (512,) * 4
        + ("M",)
        + (512,) * 4
        + ("M",)
    ),
}
_MLP_HIDDEN = 4096


def scaled_channels(channels: int, width: float) -> int:
    """``max(1, round_half_up(channels · width))`` (half-up, not Python's banker's rounding)."""
    return max(1, math.floor(channels * width + 0.5))


def _init_variance(module: nn.Module) -> float:
    """The module's init variance from its real weight's fan-in: PyTorch's default
    kaiming_uniform(a=√5) gives 1/(3·fan_in) (MATH.md: normalised covariance)."""
    from simbench.numerics.covariance import init_variance

    return init_variance(module)


@functools.lru_cache(maxsize=1)
def _net_class() -> type:
    """The ``nn.Module`` class of the built models, created on first use (torch is imported
    lazily so that listing plugins stays cheap) and published as ``vgg.VGGNet`` so that
    pickling by reference works."""
    from torch import nn

    class VGGNet(nn.Module):
        """``classifier(features(x))``."""

        def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
            super().__init__()
            self.features = features
            self.classifier = classifier

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x))

    VGGNet.__qualname__ = "VGGNet"
    globals()["VGGNet"] = VGGNet
    return VGGNet


def __getattr__(name: str) -> type:
    """``vgg.VGGNet`` resolves (and creates) the model class, e.g. when unpickling a model."""
    if name == "VGGNet":
        return _net_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_net(features: nn.Sequential, classifier: nn.Sequential) -> nn.Module:
    return _net_class()(features, classifier)


#: largest width multiplier (a suite asking for more is refused at validation)
MAX_WIDTH = 8.0


class VGG(Architecture):
    """VGG-11/13/16/19 with GM appendix B.1 simplifications as options (defaults: GM's).

    Parameters: ``depth`` (11/13/16/19), ``width`` (channel multiplier, rounded half-up,
    at least 1), ``kernel_size`` (3/5/7, padding k//2), ``input_size`` (32 or 224: the
    image side, which sets the max-pools kept and the MLP head's input), ``in_channels``,
    ``bias`` (False: no biases in convs and linears, GM), ``batchnorm`` (False removes BN:
    GM's random-label Fig. 1b variant), ``bn_after_relu`` (True: conv → ReLU → BN, GM;
    False: conv → BN → ReLU), ``bn_affine`` (False: ``BatchNorm2d(affine=False)``, GM),
    ``linear_classifier`` (True: global average pool → one linear layer ``fc``, GM; at
    32×32 the last map is 1×1 so the pooling is a plain flatten. False: the classic MLP head
    ``fc1 → ReLU → Dropout(0.5) → fc2 → ReLU → Dropout(0.5) → fc3`` with ``4096·width``
    hidden units on the flattened 7×7 (224) or 1×1 (32) map, GM Fig. 1a/b).
    Every conv/linear keeps PyTorch's default init (GM B.3).
    """

    name = "vgg"
    factorized = False

    def __init__(
        self,
        depth: Literal[11, 13, 16, 19] = 11,
        width: float = 1.0,
        kernel_size: Literal[3, 5, 7] = 3,
        input_size: Literal[32, 224] = 32,
        in_channels: int = 3,
        bias: bool = False,
        batchnorm: bool = True,
        bn_after_relu: bool = True,
        bn_affine: bool = False,
        linear_classifier: bool = True,
    ) -> None:
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a positive finite multiplier; got {width}")
        if width > MAX_WIDTH:  # refused before any compute: building it would exhaust memory
            raise ValueError(
                f"width must be at most {MAX_WIDTH:g} (VGG-11 at width {MAX_WIDTH:g} has ~0.6 "
                f"billion weights); got {width:g}"
            )
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1; got {in_channels}")
        self.depth = depth
        self.width = width
        self.kernel_size = kernel_size
        self.input_size = input_size
        self.in_channels = in_channels
        self.bias = bias
        self.batchnorm = batchnorm
        self.bn_after_relu = bn_after_relu
        self.bn_affine = bn_affine
        self.linear_classifier = linear_classifier

    # -- structure ----------------------------------------------------------------------------
    def channels(self) -> list[int]:
        """Output channels of conv layers 1..L after the width multiplier."""
        return [scaled_channels(c, self.width) for c in VGG_CONFIGS[self.depth] if c != "M"]

    def pools_after(self) -> list[int]:
        """Conv layers (1-based) followed by a max-pool that is kept (see module doc)."""
        kept, layer, size = [], 0, self.input_size
        for c in VGG_CONFIGS[self.depth]:
            if c == "M":
                if size >= 2:
                    kept.append(layer)
                    size //= 2
            else:
                layer += 1
        return kept

    def final_map_size(self) -> int:
        """Side of the last feature map for ``input_size`` inputs."""
        return self.input_size // 2 ** len(self.pools_after())

    def _block(self, layers: OrderedDict, l: int, c: int) -> None:
        """Append ReLU and BN (in the configured order) of block ``l`` with ``c`` channels."""
        from torch import nn

        relu = nn.ReLU()
        bn = nn.BatchNorm2d(c, affine=self.bn_affine) if self.batchnorm else None
        if bn is not None and not self.bn_after_relu:
            layers[f"bn{l}"] = bn
        layers[f"relu{l}"] = relu
        if bn is not None and self.bn_after_relu:
            layers[f"bn{l}"] = bn

    def _conv_block(self, layers: OrderedDict, l: int, c_in: int, c_out: int) -> None:
        from torch import nn

        k = self.kernel_size
        layers[f"conv{l}"] = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=self.bias)
        self._block(layers, l, c_out)

    def _classifier(self, c_last: int, num_classes: int) -> nn.Sequential:
        from torch import nn

        if self.linear_classifier:
            return nn.Sequential(
                OrderedDict(
                    pool=nn.AdaptiveAvgPool2d(1),
                    flatten=nn.Flatten(),
                    fc=nn.Linear(c_last, num_classes, bias=self.bias),
                )
            )
        p = self.final_map_size()
        hidden = scaled_channels(_MLP_HIDDEN, self.width)
        return nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(p),
                flatten=nn.Flatten(),
                fc1=nn.Linear(c_last * p * p, hidden, bias=self.bias),
                relu1=nn.ReLU(),
                drop1=nn.Dropout(0.5),
                fc2=nn.Linear(hidden, hidden, bias=self.bias),
                relu2=nn.ReLU(),
                drop2=nn.Dropout(0.5),
                fc3=nn.Linear(hidden, num_classes, bias=self.bias),
            )
        )

    def _build(self, num_classes: int) -> nn.Module:
        from torch import nn

        layers: OrderedDict = OrderedDict()
        pools = set(self.pools_after())
        c_in = self.in_channels
        for l, c_out in enumerate(self.channels(), start=1):
            self._conv_block(layers, l, c_in, c_out)
            if l in pools:
                layers[f"pool{l}"] = nn.MaxPool2d(2, 2)
            c_in = c_out
        return _make_net(nn.Sequential(layers), self._classifier(c_in, num_classes))

    # -- comparable layers --------------------------------------------------------------------
    def _fc_names(self) -> list[str]:
        return ["fc"] if self.linear_classifier else ["fc1", "fc2", "fc3"]

    def _classifier_specs(self, model: nn.Module) -> list[LayerSpec]:
        specs = []
        for fc in self._fc_names():
            path = f"classifier.{fc}"
            mod = model.get_submodule(path)
            specs.append(
                LayerSpec(fc, path, path, _init_variance(mod), tuple(mod.weight.shape), "linear")
            )
        return specs

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        """``conv1..convL`` (input = weight module = the conv) then the classifier linear(s).

        ``init_variance`` is 1/(3·fan_in) from each module's real weight (PyTorch default).
        """
        specs = []
        for l in range(1, len(self.channels()) + 1):
            path = f"features.conv{l}"
            mod = model.get_submodule(path)
            specs.append(
                LayerSpec(f"conv{l}", path, path, _init_variance(mod), tuple(mod.weight.shape))
            )
        return specs + self._classifier_specs(model)


class FactorizedVGG(VGG):
    """GM appendix B.2: every VGG conv → frozen DepthwiseConv → ReLU → BN → 1×1 PointwiseConv.

    The depthwise conv is a grouped ``Conv2d(C_in, K·C_in, k, groups=C_in, bias=False)`` whose
    output channel ``c·K + j`` is filter ``j`` applied to input channel ``c``; its weights are
    the bank's first ``n_filters`` filters followed by their negatives (``K = 2·n_filters``;
    GM: 5 and K = 10), identical for every input channel, with ``requires_grad=False`` (they
    stay in ``state_dict``). The pointwise conv is a trainable ``C_out × K·C_in`` 1×1 conv
    (PyTorch default init). ``filters`` names the bank (:mod:`simbench.models.filters`:
    ``gaussian`` — analytic default, ``gaussian:<ℓ>``, ``learned:<vgg checkpoint>``). The
    pointwise output of block l feeds block l+1's depthwise conv directly (after the
    max-pool where VGG has one); the last one feeds the classifier. All other parameters as
    :class:`VGG` (``bn_*`` apply to the BN on the ``K·C_in`` depthwise channels, ``bias``
    to the pointwise convs and the classifier; the depthwise conv never has a bias).
    """

    name = "factorized_vgg"
    factorized = True

    def __init__(
        self,
        depth: Literal[11, 13, 16, 19] = 11,
        width: float = 1.0,
        kernel_size: Literal[3, 5, 7] = 3,
        input_size: Literal[32, 224] = 32,
        in_channels: int = 3,
        filters: str = "gaussian",
        n_filters: int = 5,
        bias: bool = False,
        batchnorm: bool = True,
        bn_after_relu: bool = True,
        bn_affine: bool = False,
        linear_classifier: bool = True,
    ) -> None:
        from pathlib import Path

        from simbench.models.filters import split_bank_name

        super().__init__(
            depth=depth,
            width=width,
            kernel_size=kernel_size,
            input_size=input_size,
            in_channels=in_channels,
            bias=bias,
            batchnorm=batchnorm,
            bn_after_relu=bn_after_relu,
            bn_affine=bn_affine,
            linear_classifier=linear_classifier,
        )
        if not 1 <= n_filters <= kernel_size**2:
            raise ValueError(
                f"n_filters must be in [1, k² = {kernel_size**2}] for kernel_size "
                f"{kernel_size}; got {n_filters}"
            )
        bank, argument = split_bank_name(filters)
        if bank == "learned" and not (argument and Path(argument).expanduser().is_file()):
            raise ValueError(f"'learned:<checkpoint>' needs an existing file; got {filters!r}")
        self.filters = filters
        self.n_filters = n_filters

    @property
    def K(self) -> int:
        """Frozen filters per input channel: the bank and its negatives."""
        return 2 * self.n_filters

    def filter_bank(self) -> torch.Tensor:
        """The ``(K, k, k)`` float64 frozen filters: ``[f_1..f_n, −f_1..−f_n]``."""
        import torch

        from simbench.models.filters import filter_bank

        f = filter_bank(self.filters, self.kernel_size, self.n_filters)
        return torch.cat([f, -f])

    def _build(self, num_classes: int) -> nn.Module:
        return self._build_with(num_classes, self.filter_bank())

    def _build_with(self, num_classes: int, bank: torch.Tensor) -> nn.Module:
        import torch
        from torch import nn

        k, K = self.kernel_size, self.K
        layers: OrderedDict = OrderedDict()
        pools = set(self.pools_after())
        c_in = self.in_channels
        for l, c_out in enumerate(self.channels(), start=1):
            # skip_init: the frozen conv consumes no random numbers, so the trainable weights
            # of a given seed do not depend on the bank or kernel size (same n_filters)
            dw = torch.nn.utils.skip_init(
                nn.Conv2d, c_in, K * c_in, k, padding=k // 2, groups=c_in, bias=False
            )
            with torch.no_grad():
                dw.weight.copy_(bank.to(dw.weight.dtype).unsqueeze(1).repeat(c_in, 1, 1, 1))
            dw.weight.requires_grad_(False)
            layers[f"dw{l}"] = dw
            self._block(layers, l, K * c_in)
            layers[f"pw{l}"] = nn.Conv2d(K * c_in, c_out, 1, bias=self.bias)
            if l in pools:
                layers[f"pool{l}"] = nn.MaxPool2d(2, 2)
            c_in = c_out
        return _make_net(nn.Sequential(layers), self._classifier(c_in, num_classes))

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        """``conv<l>``: input = ``features.dw<l>`` (its input is the ``C_in``-channel
        representation), weight = ``features.pw<l>`` viewed as ``(C_out, C_in, K, 1)``
        (pointwise input channel ``c·K + j`` is filter ``j`` of channel ``c``),
        ``init_variance`` from the pointwise fan-in ``K·C_in``; then the classifier.
        The frozen depthwise convs are not listed (nothing learned to compare).
        """
        specs = []
        K = self.K
        for l in range(1, len(self.channels()) + 1):
            pw = model.get_submodule(f"features.pw{l}")
            c_out, kc_in = pw.weight.shape[:2]
            specs.append(
                LayerSpec(
                    f"conv{l}",
                    f"features.dw{l}",
                    f"features.pw{l}",
                    _init_variance(pw),
                    (c_out, kc_in // K, K, 1),
                )
            )
        return specs + self._classifier_specs(model)


# -- exact symmetry: permuting hidden channels ------------------------------------------------
def _group_index(perm: torch.Tensor, group: int) -> torch.Tensor:
    """Channel ``i`` of a ``group``-blocked axis -> old index ``perm[i//group]·group + i%group``."""
    import torch

    return (perm[:, None] * group + torch.arange(group)).reshape(-1)


def _permute_bn(bn: nn.Module | None, idx: torch.Tensor) -> None:
    if bn is None:
        return
    for name in ("running_mean", "running_var", "weight", "bias"):
        t = getattr(bn, name, None)
        if t is not None:
            t.data = t.data[idx].clone()


def _permute_rows(mod: nn.Module, perm: torch.Tensor) -> None:
    mod.weight.data = mod.weight.data[perm].clone()
    if mod.bias is not None:
        mod.bias.data = mod.bias.data[perm].clone()


def _permute_inputs(mod: nn.Module, idx: torch.Tensor) -> None:
    mod.weight.data = mod.weight.data[:, idx].clone()


def _maybe(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def permute_hidden_channels(
    model: nn.Module, arch: VGG, layer_index: int, perm: torch.Tensor | list[int]
) -> nn.Module:
    """A copy of ``model`` whose hidden units after layer ``layer_index`` are permuted.

    ``layer_index`` is the position in ``arch.layers(model)`` (0 = ``conv1``) of the layer
    whose *output* channels are permuted; it may not be the last (the logits). New channel
    ``i`` is old channel ``perm[i]``: the layer's weight rows (and bias), the BN statistics
    on those channels, and the next layer's input channels (in blocks of ``K`` for a
    factorized VGG's depthwise/BN/pointwise, in blocks of ``p²`` for a linear layer reading
    a flattened ``p × p`` map) are permuted consistently, so the function is unchanged
    (exactly, up to float summation order). ``model`` itself is not modified.
    """
    import torch

    if not isinstance(arch, VGG):
        raise ValueError(f"permute_hidden_channels supports the vgg plugins; got {arch!r}")
    specs = arch.layers(model)
    if isinstance(layer_index, bool) or not 0 <= layer_index < len(specs) - 1:
        raise ValueError(
            f"layer_index must be in [0, {len(specs) - 2}] (a hidden layer of "
            f"{[s.name for s in specs]}; the last one outputs logits); got {layer_index!r}"
        )
    src, dst = specs[layer_index], specs[layer_index + 1]
    n = model.get_submodule(src.weight_module).weight.shape[0]
    p = torch.as_tensor(perm, dtype=torch.long).reshape(-1)
    if p.numel() != n or not torch.equal(torch.sort(p).values, torch.arange(n)):
        raise ValueError(f"perm must be a permutation of range({n}) for {src.name}; got {perm}")
    new = copy.deepcopy(model)
    _permute_rows(new.get_submodule(src.weight_module), p)
    if src.kind == "conv" and not arch.factorized:
        _permute_bn(_maybe(new, f"features.bn{layer_index + 1}"), p)
    if dst.kind == "conv" and arch.factorized:
        l_next = layer_index + 2
        idx = _group_index(p, arch.K)
        dw = new.get_submodule(f"features.dw{l_next}")
        dw.weight.data = dw.weight.data[idx].clone()
        _permute_bn(_maybe(new, f"features.bn{l_next}"), idx)
        _permute_inputs(new.get_submodule(dst.weight_module), idx)
    else:
        nxt = new.get_submodule(dst.weight_module)
        group = nxt.weight.shape[1] // n  # p² for the flattened map, 1 otherwise
        _permute_inputs(nxt, _group_index(p, group))
    return new

"""The architecture protocol (hookspec ``simbench_register_architectures``).

An architecture plugin holds its hyper-parameters (``__init__``), builds a seeded
``nn.Module`` for a number of classes, and names the model's *comparable layers*: for
every learned linear operator, where its input representation is read, where its
output representation is read, its weight seen with the input-channel axis at
position 1, and the variance of its initialisation (MATH.md: normalised covariance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from simbench.plugin import Plugin

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class LayerSpec:
    """One comparable layer of a model.

    - ``name``: stable, human-readable (``"conv3"``), unique within the model.
    - ``input_module``: dotted path (``model.get_submodule``) of the module whose
      *input* is the representation to align (channels on axis 1).
    - ``weight_module``: dotted path of the module holding the learned weight; its
      *output* is the layer's output representation.
    - ``weight_shape``: the weight reshaped so that axis 0 is the output neuron and
      axis 1 is the input channel of ``input_module``'s input (any trailing axes are
      taps, e.g. ``(C_out, C_in, k, k)`` for a conv, ``(C_out, C_in, K, 1)`` for the
      factorized VGG's pointwise conv over K frozen filters per input channel). Empty
      tuple: use the weight as it is.
    - ``init_variance``: variance of the weight's initialisation distribution.
    - ``frozen``: True for layers that are not trained (excluded from comparisons).
    """

    name: str
    input_module: str
    weight_module: str
    init_variance: float
    weight_shape: tuple[int, ...] = ()
    kind: str = "conv"  # "conv" | "linear"
    frozen: bool = False

    def weight(self, model: nn.Module) -> torch.Tensor:
        """The layer's weight in the ``weight_shape`` view (detached)."""
        w = model.get_submodule(self.weight_module).weight.detach()
        return w.reshape(self.weight_shape) if self.weight_shape else w


class Architecture(Plugin):
    """Base class: ``build(num_classes, seed) -> nn.Module`` and ``layers(model)``."""

    kind: ClassVar[str] = "architecture"

    #: input image side the architecture expects (None: any)
    input_size: int | None = None

    def build(self, num_classes: int, seed: int = 0) -> nn.Module:
        """A freshly initialised model; the same ``seed`` gives bit-identical weights."""
        import torch

        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._build(num_classes)

    def _build(self, num_classes: int) -> nn.Module:
        raise TypeError(f"{type(self).__name__} must define _build(num_classes)")

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        """The comparable layers of ``model`` (built by this architecture), input to output."""
        raise TypeError(f"{type(self).__name__} must define layers(model)")

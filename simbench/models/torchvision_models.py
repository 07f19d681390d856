"""Any torchvision classification model as an architecture plugin: ``torchvision:<name>``.

Models are always created with ``weights=None`` (random init from the seed) and, when a
``weights`` file is given, its state dict is loaded strictly — never a download.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simbench.models.base import Architecture
from simbench.models.timm_models import ModuleLayers
from simbench.registry import suggest

if TYPE_CHECKING:
    from torch import nn

__all__ = ["IMAGENET_PREPROCESSING", "TorchvisionArchitecture"]

#: torchvision's ImageNet classification preprocessing (resize 256, center crop 224)
IMAGENET_PREPROCESSING: dict[str, Any] = {
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "input_size": 224,
    "crop_pct": 224 / 256,
}


def _classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


class TorchvisionArchitecture(ModuleLayers, Architecture):
    """A torchvision classification model by name (``torchvision:resnet18``).

    Parameters: ``model_name`` (any name of ``torchvision.models.list_models(module=
    torchvision.models)``), ``weights`` (optional local ``.safetensors``/``.pt``/``.pth`` state
    dict, or a folder holding ``model.safetensors``; loaded strictly, a mismatch names the
    first missing/unexpected keys), ``model_kwargs`` (extra keyword arguments of the model
    builder). Layers and init variances as ``timm:`` (every ungrouped ``Conv2d`` and every
    ``Linear`` by dotted path; the init recognised on a fresh seed-0 copy, e.g. torchvision
    ResNet's ``kaiming_normal(fan_out)`` convs and PyTorch-default ``fc``).
    """

    name = "torchvision"
    name_argument = "model_name"
    library = "torchvision "

    def __init__(
        self,
        model_name: str,
        weights: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        known = _classification_models()
        if model_name not in known:
            close = suggest(model_name, known)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"unknown torchvision classification model {model_name!r}.{hint}")
        clash = {"weights", "num_classes", "pretrained"} & set(model_kwargs or {})
        if clash:
            raise ValueError(
                f"model_kwargs may not set {sorted(clash)}: weights is always None (use the "
                "'weights' parameter for a local file) and num_classes comes from the data"
            )
        self.model_name = model_name
        self.weights = weights
        self.model_kwargs = model_kwargs
        self._init_cache: dict[int, dict[str, tuple[str, float]]] = {}

    def preprocessing(self) -> dict[str, Any]:
        """Default input preprocessing: torchvision's ImageNet one."""
        return dict(IMAGENET_PREPROCESSING)

    def _create(self, num_classes: int) -> nn.Module:
        import torchvision

        return torchvision.models.get_model(
            self.model_name, weights=None, num_classes=num_classes, **(self.model_kwargs or {})
        )

    def _build(self, num_classes: int) -> nn.Module:
        model = self._create(num_classes)
        model.simbench_num_classes = num_classes  # type: ignore[assignment]
        if self.weights is not None:
            from simbench.models.weights_io import check_state_dict, load_state_dict

            state = load_state_dict(self.weights)
            check_state_dict(model, state, str(self.weights), f"torchvision:{self.model_name}")
            model.load_state_dict(state, strict=True)
        return model

    def _num_classes(self, model: nn.Module) -> int:
        n = getattr(model, "simbench_num_classes", None)
        if isinstance(n, int):
            return n
        from torch import nn as tnn

        last = [m for m in model.modules() if isinstance(m, tnn.Linear | tnn.Conv2d)]
        if not last:
            raise ValueError(f"cannot tell the number of classes of {type(model).__name__}")
        return int(last[-1].weight.shape[0])

"""Any timm model as an architecture plugin: ``timm:<model_name>`` (e.g. ``timm:resnet18``).

Models are always created with ``pretrained=False`` (and ``HF_HUB_OFFLINE=1`` set
defensively): random init from the seed, or a *local* weights file — never a hub download.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from typing import TYPE_CHECKING, Any

from simbench.models.base import Architecture, LayerSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["INIT_CANDIDATES", "TimmArchitecture", "detect_init_variance"]

#: known initialisations (label, variance from (fan_in, fan_out)) that
#: :func:`detect_init_variance` recognises, first preferred among equal values
INIT_CANDIDATES: tuple[tuple[str, Any], ...] = (
    ("pytorch_default", lambda fi, fo: 1.0 / (3.0 * fi)),  # kaiming_uniform(a=√5)
    ("kaiming_normal_fan_out", lambda fi, fo: 2.0 / fo),  # timm ResNet, EfficientNet convs
    ("kaiming_normal_fan_in", lambda fi, fo: 2.0 / fi),
    ("lecun_fan_in", lambda fi, fo: 1.0 / fi),
    ("lecun_fan_out", lambda fi, fo: 1.0 / fo),
    ("uniform_fan_out", lambda fi, fo: 1.0 / (3.0 * fo)),  # EfficientNet linear
    ("xavier", lambda fi, fo: 2.0 / (fi + fo)),
    ("normal_std0.02", lambda fi, fo: 0.02**2),  # ViT / ConvNeXt trunc_normal_(std=.02)
    ("normal_std0.01", lambda fi, fo: 0.01**2),
    ("normal_std0.001", lambda fi, fo: 0.001**2),
)


def detect_init_variance(weight: torch.Tensor) -> tuple[str, float]:
    """``(label, σ²)`` of the init a *freshly initialised* weight was drawn from.

    The empirical mean square ``v̂`` (init distributions are zero-mean) is matched to the
    nearest (in ``|log ratio|``) of :data:`INIT_CANDIDATES` computed from PyTorch's
    ``fan_in``/``fan_out`` of this weight, if within ``5·√(2/N) + 0.02`` (5 standard errors
    of ``v̂`` for N Gaussian entries, plus 2% for truncation); the candidate's exact value is
    returned. Otherwise ``("empirical", v̂)``. An all-zero weight (zero-initialised head) has
    no init variance; it is reported as ``("zero", 1/(3·fan_in))``, PyTorch's default, so
    that normalised covariances stay finite.
    """
    import torch

    w = weight.detach().to(torch.float64)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(w)
    v = float((w * w).mean())
    if v == 0.0:
        return "zero", 1.0 / (3.0 * fan_in)
    tol = 5.0 * math.sqrt(2.0 / w.numel()) + 0.02
    best, best_err = None, math.inf
    for label, fn in INIT_CANDIDATES:
        c = float(fn(fan_in, fan_out))
        err = abs(math.log(v / c))
        if err <= tol and err < best_err - 1e-12:
            best, best_err = (label, c), err
    return best if best is not None else ("empirical", v)


def _comparable(module: nn.Module) -> str | None:
    """``"conv"`` for an ungrouped Conv2d, ``"linear"`` for a Linear, else None."""
    from torch import nn

    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


class ModuleLayers:
    """Layers and init variances of a library model (``timm:``, ``torchvision:``): every
    ungrouped ``Conv2d`` and every ``Linear`` by dotted path, its init recognised on a fresh
    seed-0 copy built by the plugin's ``_create(num_classes)``. A plugin provides
    ``_create``, ``_num_classes(model)``, ``model_name`` and ``library`` (for messages)."""

    library: str = ""
    model_name: str
    _init_cache: dict[int, dict[str, tuple[str, float]]]

    def init_report(self, model: nn.Module) -> dict[str, tuple[str, float]]:
        """``{module path: (init label, variance)}`` for every comparable layer of ``model``.

        Computed once per number of classes on a fresh seed-0 model (the init of a trained
        or loaded model cannot be read off its weights).
        """
        import torch

        n = self._num_classes(model)  # type: ignore[attr-defined]
        if n not in self._init_cache:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                ref = self._create(n)  # type: ignore[attr-defined]
            self._init_cache[n] = {
                name: detect_init_variance(m.weight)
                for name, m in ref.named_modules()
                if _comparable(m) is not None
            }
        return self._init_cache[n]

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        """Every ungrouped ``Conv2d`` and ``Linear`` as a :class:`LayerSpec` named by its
        dotted path (input module = weight module = itself), in module order."""
        inits = self.init_report(model)
        specs = []
        for name, m in model.named_modules():
            kind = _comparable(m)
            if kind is None:
                continue
            if name not in inits:
                raise ValueError(
                    f"module {name!r} is not in a fresh {self.library}{self.model_name!r}; "
                    "layers() needs a model built by this plugin"
                )
            specs.append(
                LayerSpec(
                    name=name,
                    input_module=name,
                    weight_module=name,
                    init_variance=inits[name][1],
                    weight_shape=tuple(m.weight.shape),
                    kind=kind,
                    frozen=not m.weight.requires_grad,
                )
            )
        return specs


class TimmArchitecture(ModuleLayers, Architecture):
    """A timm model by name (``timm:resnet18``), random init or a local weights file.

    Parameters: ``model_name`` (any name of ``timm.list_models()``), ``weights`` (optional
    local ``.safetensors`` or ``.pt/.pth`` file loaded with ``torch.load(weights_only=True)``;
    classifier tensors whose shape differs from ``num_classes`` are skipped with a warning,
    every other tensor must match), ``in_channels``, ``model_kwargs`` (extra keyword
    arguments of ``timm.create_model``, e.g. ``{"img_size": 32}`` for a ViT).

    ``layers(model)`` lists every ungrouped ``nn.Conv2d`` and every ``nn.Linear`` (including
    subclasses) under its dotted module path, in module order. Grouped/depthwise convs are
    not listed: their weight has no dense input-channel axis to align. For a Linear the
    channel axis of its input is the *last* one (axis 1 only for ``(B, D)`` inputs; token
    models such as ViTs feed ``(B, N, D)``). ``init_variance`` is the variance of the
    model's actual init, recognised on a seed-0 fresh copy by :func:`detect_init_variance`
    (PyTorch's default ``1/(3·fan_in)``, timm ResNet's ``kaiming_normal(fan_out)``, ViT's
    ``trunc_normal(std=.02)``, …; an unrecognised init falls back to the fresh weights'
    empirical mean square).
    """

    name = "timm"
    name_argument = "model_name"
    library = ""

    def __init__(
        self,
        model_name: str,
        weights: str | None = None,
        in_channels: int = 3,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import timm

        if not timm.is_model(model_name):
            close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"unknown timm model {model_name!r}.{hint}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1; got {in_channels}")
        clash = {"pretrained", "num_classes", "in_chans"} & set(model_kwargs or {})
        if clash:
            raise ValueError(
                f"model_kwargs may not set {sorted(clash)}: pretrained is always False, "
                "num_classes comes from the dataset and in_chans from in_channels"
            )
        self.model_name = model_name
        self.weights = weights
        self.in_channels = in_channels
        self.model_kwargs = model_kwargs
        self._init_cache: dict[int, dict[str, tuple[str, float]]] = {}

    def preprocessing(self) -> dict[str, Any]:
        """Default input preprocessing from the model's ``pretrained_cfg`` (mean, std, input
        side, center-crop fraction; ImageNet statistics, 224 and 0.875 where it has none)."""
        cfg = dict(getattr(self._create(1), "pretrained_cfg", None) or {})
        size = cfg.get("input_size") or (3, 224, 224)
        return {
            "mean": tuple(cfg.get("mean") or (0.485, 0.456, 0.406)),
            "std": tuple(cfg.get("std") or (0.229, 0.224, 0.225)),
            "input_size": int(size[-1]),
            "crop_pct": float(cfg.get("crop_pct") or 0.875),
        }

    def _create(self, num_classes: int) -> nn.Module:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import timm

        return timm.create_model(
            self.model_name,
            pretrained=False,
            num_classes=num_classes,
            in_chans=self.in_channels,
            **(self.model_kwargs or {}),
        )

    def _build(self, num_classes: int) -> nn.Module:
        model = self._create(num_classes)
        if self.weights is not None:
            self._load_weights(model)
        return model

    def _load_weights(self, model: nn.Module) -> None:
        from simbench.models.filters import load_weights_file

        state = load_weights_file(self.weights)
        own = model.state_dict()
        head = set()
        if hasattr(model, "get_classifier"):
            clf = model.get_classifier()
            ids = {id(t) for t in list(clf.parameters()) + list(clf.buffers())}
            head = {k for k, t in model.state_dict(keep_vars=True).items() if id(t) in ids}
        skipped = [k for k in head if k in state and state[k].shape != own[k].shape]
        for k in skipped:
            del state[k]
        if skipped:
            warnings.warn(
                f"{self.weights}: classifier tensors {sorted(skipped)} have another shape "
                "(number of classes); they keep their random init",
                stacklevel=3,
            )
        missing = sorted(set(own) - set(state) - set(skipped))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
        if missing or unexpected or wrong:
            raise ValueError(
                f"{self.weights} does not fit timm model {self.model_name!r}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
            )
        model.load_state_dict(state, strict=False)

    def _num_classes(self, model: nn.Module) -> int:
        num_classes = getattr(model, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ValueError(
                f"cannot tell the number of classes of {type(model).__name__}; "
                "layers() needs a model built by this plugin"
            )
        return num_classes

"""Any ``nn.Module`` as a simbench model: layer selection by name or glob, forward-hook taps.

- :func:`select_layers` picks modules of a model by dotted name or ``fnmatch`` glob over
  ``named_modules()`` (``"layer*.conv2"``, ``"blocks.*.mlp.fc1"``) and describes each as a
  :class:`~simbench.models.base.LayerSpec`. Every ``nn.Linear`` and ungrouped ``nn.Conv2d``
  carries its weight and an init variance; any other module (a residual block, a
  ``Sequential``) is a representation-only layer (``kind="block"``, no weight).
- Init variance (MATH.md: normalised covariance needs ``σ²_init``), first that applies:
  the ``init_variance`` parameter (a number, or ``{name or glob: number}``; source
  ``"parameter"``); for a timm model, the init its ``timm:`` plugin recognises on a fresh
  copy (source ``"timm:<label>"``, e.g. ResNets' ``kaiming_normal_fan_out``); a module
  whose type is exactly ``nn.Linear``/``nn.Conv2d`` is taken as initialised by PyTorch's
  ``reset_parameters``, ``kaiming_uniform(a=√5)``, variance ``1/(3·fan_in)`` (source
  ``"pytorch_default"``; a model that re-initialises, e.g. torchvision's ResNets, needs the
  parameter). A custom subclass with none of these is refused with a ``ValueError``.
- :class:`ModuleTaps` records inputs or outputs with forward hooks, as ``(B, C)`` or
  ``(B, C, H, W)`` (token outputs ``(B, N, D)`` are channels-last: read as ``(B, D, N, 1)``,
  so every token is a sample, the MATH.md convention for positions).
- :class:`ModuleArchitecture` (plugin ``module``) serves an in-memory module to the runner
  (``simbench.run(suite, models={"mine": module})``): the module is kept in a
  process-local table under a content key, so such runs execute in the calling process.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from simbench.models.base import Architecture, LayerSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "ModuleArchitecture",
    "ModuleTaps",
    "init_variance_of",
    "module_key",
    "register_module",
    "select_layers",
]

Tap = Literal["output", "input"]
InitVariance = float | Mapping[str, float] | None

#: in-memory modules served by the ``module`` architecture (this process only)
_MODULES: dict[str, nn.Module] = {}


def _weight_kind(module: nn.Module) -> str | None:
    from simbench.models.timm_models import _comparable

    return _comparable(module)


def timm_inits(model: nn.Module) -> dict[str, tuple[str, float]]:
    """``{module path: (label, σ²)}`` of a timm model's comparable layers, recognised on a
    fresh seed-0 model of the same name (``pretrained_cfg["architecture"]``) by the
    ``timm`` plugin; ``{}`` when ``model`` is not a timm model or the fresh one differs."""
    cfg = getattr(model, "pretrained_cfg", None)
    n = getattr(model, "num_classes", None)
    if not isinstance(cfg, Mapping) or not isinstance(n, int) or not cfg.get("architecture"):
        return {}
    try:
        import timm

        from simbench.models.timm_models import TimmArchitecture

        if not timm.is_model(cfg["architecture"]):
            return {}
        inits = TimmArchitecture(cfg["architecture"]).init_report(model)
    except (ImportError, ValueError, TypeError, RuntimeError):
        return {}
    own = {k: tuple(m.weight.shape) for k, m in model.named_modules() if _weight_kind(m)}
    return {k: (f"timm:{label}", v) for k, (label, v) in inits.items() if k in own}


def init_variance_of(
    name: str,
    module: nn.Module,
    init_variance: InitVariance,
    known: Mapping[str, tuple[str, float]] | None = None,
) -> tuple[float, str]:
    """``(σ², source)`` of a Linear/Conv2d's init (module docstring); ``known``: inits
    recognised from the model's library (:func:`timm_inits`); ``ValueError`` when
    unknown."""
    from torch import nn

    if isinstance(init_variance, int | float) and not isinstance(init_variance, bool):
        if not (math.isfinite(init_variance) and init_variance > 0):
            raise ValueError(f"init_variance must be positive and finite; got {init_variance}")
        return float(init_variance), "parameter"
    if isinstance(init_variance, Mapping):
        for pattern, value in init_variance.items():
            if fnmatch.fnmatchcase(name, pattern):
                return init_variance_of(name, module, float(value))
    if known and name in known:
        label, value = known[name]
        return float(value), label
    if type(module) in (nn.Linear, nn.Conv2d):
        fan_in = module.weight[0].numel()
        return 1.0 / (3.0 * fan_in), "pytorch_default"
    raise ValueError(
        f"layer {name!r} is a {type(module).__name__}, not a plain nn.Linear/nn.Conv2d: its "
        "init variance is unknown; pass init_variance (a number or {name glob: number})"
    )


def select_layers(
    model: nn.Module,
    layers: str | Sequence[str] | None = None,
    *,
    init_variance: InitVariance = None,
    weights_only: bool = False,
) -> list[tuple[LayerSpec, str]]:
    """``[(spec, init source)]`` of the modules of ``model`` named by ``layers`` (names or
    globs, matched with ``fnmatch`` against ``named_modules()``; default: every Linear and
    ungrouped Conv2d), in module order. A pattern that matches nothing is a ``ValueError``
    listing some names. ``weights_only`` keeps Linear/Conv2d modules only. Block modules
    get ``init_variance=nan`` and source ``""``."""
    named = [(n, m) for n, m in model.named_modules() if n]
    if layers is None:
        chosen = [(n, m) for n, m in named if _weight_kind(m) is not None]
        if not chosen:
            raise ValueError(
                f"{type(model).__name__} has no nn.Linear/nn.Conv2d; name its layers "
                "(layers=[...], module names or globs)"
            )
    else:
        patterns = [layers] if isinstance(layers, str) else list(layers)
        if not patterns:
            raise ValueError("layers is empty; give module names or globs (or None: all)")
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n, _ in named)]
        if unmatched:
            some = [n for n, _ in named][:12]
            raise ValueError(
                f"layer pattern(s) {unmatched} match no module of {type(model).__name__}; "
                f"its modules include {some}"
            )
        chosen = [(n, m) for n, m in named if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    known = timm_inits(model)
    out = []
    for name, m in chosen:
        kind = _weight_kind(m)
        if kind is None:
            if weights_only:
                continue
            out.append((LayerSpec(name, name, name, float("nan"), (), "block"), ""))
            continue
        var, source = init_variance_of(name, m, init_variance, known)
        spec = LayerSpec(
            name=name,
            input_module=name,
            weight_module=name,
            init_variance=var,
            weight_shape=tuple(m.weight.shape),
            kind=kind,
            frozen=not m.weight.requires_grad,
        )
        out.append((spec, source))
    if not out:
        raise ValueError(f"no nn.Linear/nn.Conv2d among the selected layers {layers!r}")
    return out


def as_channels(act: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """An activation as ``(B, C)`` or ``(B, C, H, W)`` (see the module docstring)."""
    if act.ndim in (2, 4):
        return act
    if act.ndim == 3:
        return act.transpose(1, 2)[..., None] if channels_last else act[..., None]
    if act.ndim > 4:
        return act.reshape(*act.shape[:2], act.shape[2], -1)
    raise ValueError(f"cannot read an activation of shape {tuple(act.shape)} as (B, C, ...)")


class ModuleTaps(contextlib.AbstractContextManager):
    """Forward hooks recording, for each layer, its input (``tap="input"``) or output,
    detached, as :func:`as_channels` (the first tensor of a tuple)."""

    def __init__(self, model: nn.Module, layers: Sequence[LayerSpec], tap: Tap = "output"):
        if tap not in ("input", "output"):
            raise ValueError(f"tap must be 'input' or 'output'; got {tap!r}")
        self.model, self.layers, self.tap = model, list(layers), tap
        self.values: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> ModuleTaps:
        for spec in self.layers:
            module = self.model.get_submodule(spec.weight_module)
            last = spec.kind != "conv"  # Linear / block token outputs are channels-last
            if self.tap == "input":
                hook = module.register_forward_pre_hook(self._record(spec.name, last, 0))
            else:
                hook = module.register_forward_hook(self._record(spec.name, last, 2))
            self._handles.append(hook)
        return self

    def _record(self, name: str, channels_last: bool, pos: int):
        import torch

        def hook(*args):
            value = args[1][0] if pos == 0 else args[2]
            while isinstance(value, tuple | list):
                value = value[0]
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"layer {name!r}: its {self.tap} is not a tensor")
            self.values[name] = as_channels(value.detach(), channels_last)

        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def module_key(module: nn.Module) -> str:
    """A content key of a module: its class and every state tensor (names, shapes, bytes)."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype.is_floating_point or t.ndim else str(t).encode())
    return h.hexdigest()[:16]


def register_module(module: nn.Module) -> str:
    """Keep ``module`` (a CPU copy) for the ``module`` architecture; return its key."""
    key = module_key(module)
    if key not in _MODULES:
        _MODULES[key] = copy.deepcopy(module).cpu().eval()
    return key


class ModuleArchitecture(Architecture):
    """An in-memory nn.Module passed as simbench.run(suite, models={id: module}).

    Registered with :func:`register_module`; ``build`` returns a copy of it (``num_classes``
    and ``seed`` are ignored: the module is what it is). Layers: every Linear/ungrouped
    Conv2d, or those matching ``layers`` (names/globs); ``init_variance`` as
    :func:`init_variance_of`."""

    name = "module"

    def __init__(
        self,
        key: str,
        layers: list[str] | None = None,
        init_variance: float | dict[str, float] | None = None,
    ) -> None:
        self.key = key
        self.layers_ = layers
        self.init_variance = init_variance

    def get_params(self) -> dict[str, object]:
        return {"key": self.key, "layers": self.layers_, "init_variance": self.init_variance}

    def build(self, num_classes: int, seed: int = 0) -> nn.Module:
        if self.key not in _MODULES:
            raise ValueError(
                f"in-memory module {self.key!r} is not registered in this process: models "
                "passed as simbench.run(..., models=...) exist only in the calling process "
                "(run them with the default executor, which then works inline)"
            )
        return copy.deepcopy(_MODULES[self.key])

    def layers(self, model: nn.Module) -> list[LayerSpec]:
        specs = select_layers(
            model, self.layers_, init_variance=self.init_variance, weights_only=True
        )
        return [s for s, _ in specs]

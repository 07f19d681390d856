"""Foreign weights as simbench checkpoints, so that the runner treats them like any other.

A suite entry ``{architecture: timm:resnet18, weights: path}`` (or an in-memory module of
``simbench.run(..., models=...)``) is checked once — the state dict must fit the
architecture exactly, built for the weights' number of classes — and written as a
checkpoint (``model.safetensors`` + sidecar) under ``<cache>/foreign/<key>/``, ``key`` a
hash of the architecture, the weights file's SHA-256 and the preprocessing. The sidecar
records a ``ModelSpec`` (dataset ``weights`` with the file's SHA-256: never trained or
loaded as data) and the preprocessing the probe images get: ``normalization`` ``{mean,
std, input_size, crop_pct}``, defaults from the architecture's ``preprocessing()`` (timm's
``pretrained_cfg``, torchvision's ImageNet transform) or mean 0, std 1 at the probe's
own size for other architectures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simbench.io import sha256_file
from simbench.train.config import ModelSpec, PluginRef

__all__ = ["materialize", "preprocessing_of"]


def preprocessing_of(
    arch: Any, normalization: Mapping[str, Any] | None, input_size: int | None
) -> dict[str, Any]:
    """``{mean, std, input_size, crop_pct}``: the architecture's defaults overridden by the
    entry's ``normalization`` (mean/std) and ``input_size``."""
    defaults = arch.preprocessing() if hasattr(arch, "preprocessing") else {}
    out = {
        "mean": list(defaults.get("mean", (0.0, 0.0, 0.0))),
        "std": list(defaults.get("std", (1.0, 1.0, 1.0))),
        "input_size": defaults.get("input_size"),
        "crop_pct": float(defaults.get("crop_pct", 1.0)),
    }
    if normalization:
        out["mean"] = [float(v) for v in normalization["mean"]]
        out["std"] = [float(v) for v in normalization["std"]]
        if "crop_pct" in normalization:
            out["crop_pct"] = float(normalization["crop_pct"])
    if input_size is not None:
        out["input_size"] = int(input_size)
    if len(out["mean"]) != len(out["std"]) or min(out["std"]) <= 0:
        raise ValueError(f"normalization needs as many means as positive stds; got {out}")
    return out


def materialize(
    architecture: PluginRef,
    weights: str | Path,
    cache_dir: str | Path,
    normalization: Mapping[str, Any] | None = None,
    input_size: int | None = None,
) -> tuple[Path, ModelSpec]:
    """``(checkpoint path, spec)`` of foreign ``weights`` for ``architecture`` (see the
    module docstring). ``ValueError`` naming the first missing/unexpected keys when the
    state dict does not fit; reuses an earlier checkpoint of the same inputs."""
    from simbench.models.weights_io import build_with_weights, resolve_weights_path
    from simbench.train.checkpoint import create_plugin, is_complete, save_checkpoint

    file = resolve_weights_path(weights)
    params = {k: v for k, v in architecture.params.items() if k != "weights"}
    ref = PluginRef(name=architecture.name, params=params)
    arch = create_plugin("architecture", ref.name, ref.params)
    prep = preprocessing_of(arch, normalization, input_size)
    sha = sha256_file(file)
    blob = json.dumps([ref.model_dump(mode="json"), sha, prep], sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    spec = ModelSpec(architecture=ref, dataset=PluginRef(name="weights", params={"sha256": sha}))
    path = Path(cache_dir) / "foreign" / key / "model.safetensors"
    if is_complete(path):
        return path, spec
    model, info = build_with_weights(arch, file, f"{ref.name} {ref.params or ''}".strip())
    meta = {
        "spec": spec.model_dump(mode="json"),
        "key": key,
        "num_classes": info["num_classes"],
        "normalization": prep,
        "source": {"weights": str(file), "sha256": sha},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model.state_dict(), meta)
    return path, spec

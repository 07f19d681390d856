"""Checkpoints: safetensors weights + a JSON sidecar, written atomically; resumable state.

Layout of one training run (``train(spec, out_dir)``), all under ``out_dir/<spec.key()>/``::

    model.safetensors   model.json      final weights + sidecar
    epoch_<N>.safetensors epoch_<N>.json  extra checkpoints at ``train.save_epochs``
                                          (epoch 0 = the initial weights)
    resume.safetensors  resume.json     resumable state after the last completed epoch
                                          (removed once ``model.json`` exists)

A weights file holds the model's full ``state_dict`` (parameters, BatchNorm buffers,
frozen filters), each tensor contiguous on the CPU; its safetensors header records the
training run's key, the kind and the epoch (``simbench_key``...). Its sidecar ``<stem>.json`` holds
the full ``ModelSpec``, its key, the number of classes, the per-epoch history (lr,
train/test loss and accuracy, time), the epoch, library versions (simbench, torch,
numpy, python, safetensors) and the SHA-256 of the weights file. Both files are written
to a temporary file in the same directory then ``os.replace``-d; the sidecar is written
last, so *a checkpoint is complete iff its sidecar exists and the digest matches*.
Nothing is ever pickled: tensors go through safetensors, metadata through JSON.

The resume state (``resume.safetensors``) holds the model state under ``model/``, the
SGD momentum buffers under ``optimizer/momentum/<i>`` (``i`` indexes the optimizer's
parameter list) and the global RNG states under ``rng/torch`` and ``rng/cuda/<i>``.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simbench.io import atomic_path, sha256_file

if TYPE_CHECKING:
    import torch
    from torch import nn

    from simbench.models.base import Architecture

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
RESUME_FILE = "resume.safetensors"

__all__ = [
    "FORMAT_VERSION",
    "MODEL_FILE",
    "RESUME_FILE",
    "epoch_file",
    "is_complete",
    "library_versions",
    "load_checkpoint",
    "load_model",
    "load_training_state",
    "save_checkpoint",
    "save_training_state",
    "sidecar_path",
]


def epoch_file(epoch: int) -> str:
    """File name of the extra checkpoint after ``epoch`` epochs."""
    return f"epoch_{epoch}.safetensors"


def sidecar_path(weights: str | os.PathLike) -> Path:
    """The JSON sidecar of a weights file: same stem, ``.json``."""
    return Path(weights).with_suffix(".json")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a checkpoint depends on."""
    import numpy
    import safetensors
    import torch

    import simbench

    return {
        "simbench": simbench.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------- atomic io


def _jsonable(obj: Any) -> Any:
    """Replace non-finite floats by None (strict JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=False)
    with atomic_path(path, fsync=True) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def _header_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    """What the safetensors header itself records of its checkpoint (strings only): the
    training run's key, the kind and the epoch, so that the weights file alone names
    the model it holds."""
    out = {"format": "pt"}
    for k in ("key", "kind", "epoch"):
        if meta.get(k) is not None:
            out[f"simbench_{k}"] = str(meta[k])
    return out


def _write_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], header: Mapping[str, str] | None = None
) -> str:
    """Write ``tensors`` atomically; return the SHA-256 of the file."""
    from safetensors.torch import save_file

    # own, contiguous CPU copies: safetensors refuses shared or strided storage
    plain = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    with atomic_path(path, fsync=True) as tmp:
        save_file(plain, str(tmp), metadata=dict(header or {"format": "pt"}))
        digest = sha256_file(tmp)
    return digest


def _read_verified(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(
            f"{path}: no sidecar {side.name}: the checkpoint is missing or its write was "
            "interrupted (the sidecar is written last)"
        )
    meta = json.loads(side.read_text(encoding="utf-8"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file missing (sidecar {side.name} exists)")
    digest = meta.get("sha256")
    if digest is not None and digest != sha256_file(path):
        raise ValueError(
            f"{path}: contents do not match the SHA-256 recorded in {side.name} "
            "(overwritten or truncated after its sidecar was written)"
        )
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        header = f.metadata() or {}
    for k, v in _header_meta(meta).items():
        if k.startswith("simbench_") and k in header and header[k] != v:
            raise ValueError(
                f"{path}: its header records {k[9:]} {header[k]!r} but {side.name} says {v!r}"
            )
    return load_file(str(path)), meta


# ----------------------------------------------------------------------------- model files


def save_checkpoint(
    path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> Path:
    """Write ``state_dict`` to ``path`` (safetensors) and ``meta`` to its JSON sidecar.

    ``meta`` should hold at least ``spec`` (the ``ModelSpec`` as JSON), ``key`` and
    ``num_classes`` so that :func:`load_model` can rebuild the model; the sidecar adds
    ``format``, ``weights`` (file name), ``sha256`` and ``versions``. Weights first,
    sidecar last, each atomically.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors; got {path}")
    digest = _write_tensors(path, state_dict, _header_meta(meta))
    full = {
        **meta,
        "format": FORMAT_VERSION,
        "weights": path.name,
        "sha256": digest,
        "versions": library_versions(),
    }
    _write_json(sidecar_path(path), full)
    return path


def is_complete(path: str | os.PathLike) -> bool:
    """Whether the checkpoint at ``path`` and its sidecar both exist (cheap: no hashing)."""
    path = Path(path)
    return path.is_file() and sidecar_path(path).is_file()


def _resolve(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    elif path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of a checkpoint (``.safetensors`` file, its sidecar, or a run
    directory meaning its ``model.safetensors``); verifies the SHA-256 of the weights."""
    return _read_verified(_resolve(path))


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Architecture, dict[str, Any]]:
    """``(model, architecture, meta)``: the architecture rebuilt through the plugin
    registry from the ``ModelSpec`` in the sidecar, weights loaded strictly, eval mode."""
    from simbench.train.config import ModelSpec

    state, meta = load_checkpoint(path)
    if "spec" not in meta or "num_classes" not in meta:
        raise ValueError(f"{_resolve(path)}: sidecar lacks 'spec' or 'num_classes'")
    spec = ModelSpec.model_validate(meta["spec"])
    arch = create_plugin("architecture", spec.architecture.name, spec.architecture.params)
    model = arch.build(int(meta["num_classes"]), seed=spec.seed)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), arch, meta


def create_plugin(kind: str, name: str, params: Mapping[str, Any]) -> Any:
    """An instance of plugin ``kind``/``name`` from the current default registry.

    Invalid parameters raise ``ValueError`` naming the spec key (``<kind>.params.<param>``).
    """
    import pydantic

    from simbench import registry
    from simbench.errors import SimbenchError

    try:
        return registry.default_registry().create(kind, name, **dict(params))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{kind}.params.{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
            f" (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise ValueError(f"invalid {kind} {name!r}: {problems}") from None
    except SimbenchError:
        raise
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid {kind} {name!r} ({kind}.params): {exc}") from None


# ----------------------------------------------------------------------------- resume state


def save_training_state(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: Mapping[str, Any],
) -> Path:
    """Write the resumable state: model, SGD momentum buffers, global RNG states.

    Momentum buffers are keyed by the parameter's index in the optimizer's (single)
    parameter group; parameters that have not yet had a step have none.
    """
    import torch

    tensors: dict[str, torch.Tensor] = {f"model/{k}": v for k, v in model.state_dict().items()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"optimizer/momentum/{i}"] = buf
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    return save_checkpoint(path, tensors, {**meta, "kind": "resume"})


def load_training_state(
    path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote into ``model``, ``optimizer`` and the
    global RNGs; return the sidecar."""
    import torch

    tensors, meta = load_checkpoint(path)
    model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    model.load_state_dict(model_state, strict=True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():
        if key.startswith("optimizer/momentum/"):
            i = int(key.rsplit("/", 1)[1])
            if i >= len(params) or params[i].shape != value.shape:
                raise ValueError(f"{path}: {key} does not match the optimizer's parameters")
            p = params[i]
            buf = torch.empty_like(p, memory_format=torch.preserve_format)
            buf.copy_(value)
            optimizer.state[p]["momentum_buffer"] = buf
    torch.set_rng_state(tensors["rng/torch"])
    cuda_keys = sorted(
        (k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/")[-1])
    )
    cuda_states = [tensors[k] for k in cuda_keys]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return meta

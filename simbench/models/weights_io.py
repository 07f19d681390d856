"""Foreign weights on disk: read a state dict, check it fits a model, name what does not.

A weights source is a ``.safetensors`` file, a ``.pt``/``.pth``/``.bin`` state dict read with
``torch.load(weights_only=True)`` (``{"state_dict": ...}``/``{"model": ...}`` wrappers
unwrapped), or a Hugging Face style folder holding ``model.safetensors`` (or
``pytorch_model.bin``). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from simbench.models.base import Architecture

__all__ = [
    "check_state_dict",
    "infer_num_classes",
    "load_state_dict",
    "resolve_weights_path",
]

#: files looked for, in order, in a weights folder (Hugging Face conventions)
FOLDER_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
#: how many key names an error message lists per kind of problem
SHOW_KEYS = 5


def resolve_weights_path(path: str | os.PathLike) -> Path:
    """The weights file of ``path`` (a file, or a folder holding one of :data:`FOLDER_FILES`)."""
    p = Path(os.path.expandvars(os.path.expanduser(str(path))))
    if p.is_dir():
        for name in FOLDER_FILES:
            if (p / name).is_file():
                return p / name
        raise ValueError(f"weights folder {str(p)!r} holds none of {', '.join(FOLDER_FILES)}")
    if not p.is_file():
        raise ValueError(f"weights file {str(p)!r} does not exist")
    return p


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict (CPU tensors) of a weights file or folder; never downloads."""
    from simbench.models.filters import load_weights_file

    state = load_weights_file(resolve_weights_path(path))
    # torch.compile / DataParallel prefixes, common in training scripts' checkpoints
    for prefix in ("_orig_mod.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def check_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, target: str
) -> None:
    """``ValueError`` naming the first missing, unexpected and wrongly shaped keys (sorted)
    unless ``state`` fits ``model.state_dict()`` exactly (names and shapes)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(state) & set(own)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes (file vs model)", wrong),
        ):
            if keys:
                more = f" (+{len(keys) - SHOW_KEYS} more)" if len(keys) > SHOW_KEYS else ""
                parts.append(f"{label} {keys[:SHOW_KEYS]}{more}")
        raise ValueError(f"{source} does not fit {target}: " + "; ".join(parts))


def infer_num_classes(arch: Architecture, state: dict[str, torch.Tensor]) -> int:
    """The number of classes ``state`` was trained with: the tensors whose shape changes
    between a 1-class and a 2-class build of ``arch`` are the classifier's; their leading
    dimension in ``state`` is the answer (1000 if the architecture has no such tensor)."""
    import torch

    def shapes(n: int) -> dict[str, tuple[int, ...]]:
        with torch.device("meta"):  # shapes only: no memory, no random init
            return {k: tuple(v.shape) for k, v in arch.build(n, seed=0).state_dict().items()}

    one, two = shapes(1), shapes(2)
    head = [k for k in one if k in two and one[k] != two[k]]
    sizes = {int(state[k].shape[0]) for k in head if k in state and state[k].ndim >= 1}
    if len(sizes) > 1:
        raise ValueError(f"the classifier tensors {head} disagree on the number of classes")
    return sizes.pop() if sizes else 1000


def build_with_weights(
    arch: Architecture, path: str | os.PathLike, target: str
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, info)``: ``arch`` built for the weights' number of classes with the state
    dict of ``path`` loaded strictly (after :func:`check_state_dict`); ``info`` holds
    ``num_classes`` and the resolved ``file``."""
    file = resolve_weights_path(path)
    state = load_state_dict(file)
    n = infer_num_classes(arch, state)
    model = arch.build(n, seed=0)
    check_state_dict(model, state, str(file), target)
    model.load_state_dict(state, strict=True)
    return model.eval(), {"num_classes": n, "file": str(file)}

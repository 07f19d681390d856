"""Checks of a suite that must pass before any compute (issue 13): numbers, devices,
output and cache folders, dataset files, layer names.

Each check reports through ``problems.add(loc, message)`` (``simbench.suite._Problems``),
so every problem is a ``FILE:LINE: key.path: message`` line of the suite's
:class:`~simbench.suite.SuiteError`, raised by :func:`~simbench.suite.load_suite` and
hence reported by ``simbench run --dry-run`` as well. Checks that touch the file
system only create and remove one probe file in the nearest existing folder.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "INT64_MAX",
    "check_devices",
    "check_layers",
    "check_numbers",
    "check_writable",
    "device_problem",
    "layer_names",
]

INT64_MAX = 2**63 - 1
#: devices a suite may name: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")

Add = Callable[[Sequence[Any], str], None]


# ----------------------------------------------------------------------------- numbers


def check_numbers(data: Any, add: Add) -> None:
    """Every number of the suite is finite and every integer fits in 64 bits (a seed of
    2⁶³ crashed the results table; ``lr: .inf`` wrote a checkpoint that cannot be read
    back). Nodes shared through aliases are visited once."""
    seen: set[int] = set()

    def walk(value: Any, loc: tuple[Any, ...]) -> None:
        if isinstance(value, dict | list):
            if id(value) in seen:
                return
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                walk(v, (*loc, k))
        elif isinstance(value, float) and not math.isfinite(value):
            add(loc, f"must be a finite number; got {value}")
        elif isinstance(value, int) and not isinstance(value, bool):
            if not -INT64_MAX - 1 <= value <= INT64_MAX:
                add(loc, f"out of range: integers must lie in [-2^63, 2^63 - 1]; got {value}")

    walk(data, ())


# ----------------------------------------------------------------------------- devices


def device_problem(device: Any, *, gpu_expected_elsewhere: bool) -> str | None:
    """The problem with a training ``device`` value, or ``None``. ``cuda`` without a
    visible GPU is a problem unless the jobs run elsewhere (``slurm`` executor)."""
    if not isinstance(device, str):
        return None  # a type error, reported by the schema
    if not _DEVICE_RE.match(device):
        return f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
    if device.startswith("cuda") and not gpu_expected_elsewhere:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if count == 0:
            return (
                f"device {device!r} but no CUDA GPU is visible here; use auto (GPU when "
                "there is one, else CPU) or cpu"
            )
        if index >= count:
            return f"device {device!r} but only {count} CUDA GPU(s) are visible"
    return None


def check_devices(data: dict[str, Any], add: Add, *, gpu_expected_elsewhere: bool) -> None:
    """``training.device`` and every ``models[i].train.device``."""
    places: list[tuple[tuple[Any, ...], Any]] = []
    training = data.get("training")
    if isinstance(training, dict) and "device" in training:
        places.append((("training", "device"), training["device"]))
    models = data.get("models")
    for i, entry in enumerate(models if isinstance(models, list) else []):
        train = entry.get("train") if isinstance(entry, dict) else None
        if isinstance(train, dict) and "device" in train:
            places.append((("models", i, "train", "device"), train["device"]))
    for loc, device in places:
        problem = device_problem(device, gpu_expected_elsewhere=gpu_expected_elsewhere)
        if problem:
            add(loc, problem)


# ----------------------------------------------------------------------------- folders


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def writable_problem(path: Path) -> str | None:
    """Why the folder ``path`` (to be created if missing) cannot be written, or ``None``.

    Walks up to the nearest existing ancestor: it must be a folder, the missing names
    must fit the file system's name limit, and a probe file must be creatable (and is
    removed) there. A full disk is not detected (it is found when writing)."""
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} exists and is not a folder"
    limit = _name_max(existing)
    for part in path.relative_to(existing).parts:
        size = len(os.fsencode(part))
        if size > limit:
            return f"the name {part[:24]!r}... is {size} bytes, over the limit of {limit}"
    if len(os.fsencode(str(path))) >= 4096:
        return f"the path is {len(os.fsencode(str(path)))} bytes long, over the limit of 4095"
    try:
        fd, probe = tempfile.mkstemp(prefix=".simbench-probe-", dir=existing)
    except OSError as exc:
        return f"cannot create files in {str(existing)!r} ({exc.strerror}): not a writable folder"
    os.close(fd)
    os.unlink(probe)
    return None


def check_writable(folders: Sequence[tuple[tuple[Any, ...], Path]], add: Add) -> None:
    """Each ``(loc, folder)`` can be created and written (see :func:`writable_problem`)."""
    done: set[Path] = set()
    for loc, folder in folders:
        if folder in done:
            continue
        done.add(folder)
        problem = writable_problem(folder)
        if problem:
            add(loc, f"{str(folder)!r} cannot be written: {problem}")


# ----------------------------------------------------------------------------- layers


def layer_names(architecture: Any) -> list[str]:
    """Names of the trainable comparable layers of an architecture plugin instance, from
    a model built on PyTorch's ``meta`` device (no memory, no weights initialised); a CPU
    build if the architecture cannot be built there."""
    import torch

    try:
        with torch.device("meta"):
            model = architecture._build(10)
        specs = architecture.layers(model)
    except Exception:  # an architecture that needs real tensors to build
        model = architecture.build(10, seed=0)
        specs = architecture.layers(model)
    return [s.name for s in specs if not s.frozen]


def check_layers(
    patterns: list[str] | None,
    models: dict[str, list[str]],
    add: Add,
    match: Callable[[str, str], bool],
) -> None:
    """Every entry of ``layers`` matches a layer of some model, and every model keeps at
    least one layer (``models``: model id -> its layer names); problems at ``layers.i``
    (the pattern) or ``layers``."""
    if patterns is None or not models:
        return
    for i, pat in enumerate(patterns):
        if not any(match(n, pat) for names in models.values() for n in names):
            known = sorted({n for names in models.values() for n in names})
            add(
                ("layers", i),
                f"{pat!r} matches no layer of the suite's models (their layers: "
                f"{', '.join(known)})",
            )
    for mid, names in models.items():
        if names and not any(match(n, p) for n in names for p in patterns):
            add(("layers",), f"selects no layer of model {mid!r} (its layers: {', '.join(names)})")

"""Per-model data for the ground-truth tests: probe logits, labels, per-layer activations.

Isolated stand-in for permodel's ``ModelStore`` (COORD.md §2): the lead switches
:meth:`ModelData.open` to read the store at merge. The run's output folder holds
``model_data/index.json`` (model id -> file name) and one ``model_data/<file>.npz`` per
model with ``logits`` ``(n, K)``, ``labels`` ``(n,)`` and ``act:<layer>`` ``(n, C)``
(global-average-pooled layer outputs, float32) on the probe images, written by the
runner's per-model job (:mod:`simbench.runner.model_data_job`).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = "model_data"
INDEX = "index.json"
INFO = "models.json"


def file_name(model: str) -> str:
    """A file-system-safe name for a model id (``c10@0`` -> ``c10@0.npz``)."""
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", model) + ".npz"


class ModelData:
    """Read access to the per-model data of one run (``logits``, ``labels``, ``activations``)."""

    def __init__(self, folder: Path, index: dict[str, str]) -> None:
        self.folder = folder
        self.index = index
        self._load = lru_cache(maxsize=None)(self._read)
        try:
            info = json.loads((folder / INFO).read_text())
        except (OSError, ValueError):
            info = {}
        #: per model: arch, dataset, seed, fraction, images, test_acc, train_acc
        self.info: dict[str, dict[str, Any]] = info if isinstance(info, dict) else {}

    @classmethod
    def open(cls, output_dir: str | os.PathLike[str]) -> ModelData | None:
        """The run's per-model data, or None when the run has none."""
        folder = Path(output_dir) / FOLDER
        try:
            index = json.loads((folder / INDEX).read_text())
        except (OSError, ValueError):
            return None
        return cls(folder, {str(k): str(v) for k, v in index.items()}) if index else None

    def _read(self, model: str) -> dict[str, np.ndarray]:
        if model not in self.index:
            raise KeyError(f"no per-model data for model {model!r}")
        with np.load(self.folder / self.index[model], allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    @property
    def models(self) -> list[str]:
        return list(self.index)

    def logits(self, model: str) -> np.ndarray:
        return self._load(model)["logits"]

    def labels(self, model: str) -> np.ndarray:
        return self._load(model)["labels"]

    def activations(self, model: str, layer: str) -> np.ndarray:
        data = self._load(model)
        key = f"act:{layer}"
        if key not in data:
            raise KeyError(f"no activations of layer {layer!r} for model {model!r}")
        return data[key].astype(np.float64)


def write_model_data(
    output_dir: str | os.PathLike[str], model: str, arrays: dict[str, Any]
) -> Path:
    """Write one model's arrays (``logits``, ``labels``, ``act:<layer>``) and index it."""
    import io

    from simbench.runner.cache import atomic_write_bytes

    folder = Path(output_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    path = folder / file_name(model)
    atomic_write_bytes(path, buf.getvalue())
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        index = {}
    index[model] = path.name
    atomic_write_bytes(
        folder / INDEX, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()
    )
    return path


def write_info(output_dir: str | os.PathLike[str], info: dict[str, dict[str, Any]]) -> Path:
    """Write the per-model metadata (``models.json``) next to the arrays."""
    from simbench.runner.cache import atomic_write_bytes

    folder = Path(output_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(info, indent=1, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(folder / INFO, text.encode())
    return folder / INFO

"""The offline default dataset: 6,000 real CIFAR-10 images shipped inside the package.

``simbench/data/_embedded/cifar10_subset.npz`` (about 2 MB) holds a class-balanced,
deterministic subset of CIFAR-10 (Krizhevsky 2009): for each of the 10 classes the first
500 train and the first 100 test images in official order, as the original JPEG bytes
(quality ~75). Built by ``scripts/make_embedded_dataset.py``; the file records its
provenance (source, selection rule, official indices ``index_train``/``index_test``).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import numpy as np

from simbench.data.base import Dataset, ImageData
from simbench.data.cache import decode_jpeg_blob

EMBEDDED_FILE = "cifar10_subset.npz"


@functools.lru_cache(maxsize=1)
def _decoded() -> dict[str, Any]:
    """Decode the embedded archive once per process (arrays made read-only)."""
    ref = resources.files("simbench.data") / "_embedded" / EMBEDDED_FILE
    with resources.as_file(ref) as path:
        if not path.is_file():
            raise FileNotFoundError(
                f"the embedded dataset {path} is missing from this installation; rebuild it "
                "with scripts/make_embedded_dataset.py or reinstall simbench"
            )
        with np.load(path, allow_pickle=False) as z:
            header = z["header"].tobytes()
            out: dict[str, Any] = {
                "classes": tuple(z["class_names"].tolist()),
                "provenance": json.loads(str(z["provenance"])),
            }
            for split in ("train", "test"):
                out[f"x_{split}"] = decode_jpeg_blob(
                    z[f"body_{split}"], z[f"offsets_{split}"], header=header
                )
                out[f"y_{split}"] = z[f"y_{split}"].astype(np.int64)
                out[f"index_{split}"] = z[f"index_{split}"].astype(np.int64)
    for v in out.values():
        if isinstance(v, np.ndarray):
            v.flags.writeable = False
    return out


class EmbeddedCIFAR10(Dataset):
    """Offline default: 6,000 real CIFAR-10 images shipped inside simbench (no download).

    5,000 train + 1,000 test, 32×32, 10 classes, balanced (500 + 100 per class)."""

    name = "embedded"

    def __init__(self) -> None:
        """No parameters."""

    def load(self) -> ImageData:
        """Decoded once per process (~0.5 s); each call returns fresh, writable copies."""
        d = _decoded()
        return ImageData(
            x_train=d["x_train"].copy(),
            y_train=d["y_train"].copy(),
            x_test=d["x_test"].copy(),
            y_test=d["y_test"].copy(),
            classes=d["classes"],
            name=self.name,
            meta={"provenance": dict(d["provenance"])},
        )

    @staticmethod
    def source_indices() -> tuple[np.ndarray, np.ndarray]:
        """Official CIFAR-10 indices of the embedded train and test images."""
        d = _decoded()
        return d["index_train"].copy(), d["index_test"].copy()

#!/usr/bin/env python3
"""Build simbench's embedded offline dataset: a class-balanced subset of CIFAR-10.

    python scripts/make_embedded_dataset.py [SOURCE_NPZ] [OUT_NPZ]

SOURCE_NPZ (default ``../shared/data/cifar10_jpeg.npz``, see its README) holds all of
CIFAR-10 (Krizhevsky 2009) in the official order as JPEGs (quality ~75). OUT_NPZ defaults
to ``simbench/data/_embedded/cifar10_subset.npz``, which ships inside the package and is
read by the ``embedded`` dataset plugin.

Selection rule (deterministic, no randomness): for every class c = 0..9, the first
TRAIN_PER_CLASS images of label c in the official CIFAR-10 train order, and the first
TEST_PER_CLASS images of label c in the official test order; each split is then kept in
official order (classes interleaved as in CIFAR-10 itself). The chosen official indices
are stored as ``index_train`` / ``index_test``.

The JPEG bytes are copied unchanged (no re-encoding). All of them share one ~620-byte
header (quantisation and Huffman tables, frame and scan headers), which is stored once
as ``header``; image i of a split is ``header + body[offsets[i]:offsets[i+1]]``. This
brings 6,000 images to about 2 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "cifar10_jpeg.npz"
DEFAULT_OUT = REPO / "simbench" / "data" / "_embedded" / "cifar10_subset.npz"
SELECTION = (
    f"for each class c in 0..9: the first {TRAIN_PER_CLASS} indices i (ascending) of the "
    f"official CIFAR-10 train split with label c, and the first {TEST_PER_CLASS} indices of "
    "the official test split with label c; each split kept in ascending official index order"
)


def header_length(jpeg: bytes) -> int:
    """Bytes up to the end of the start-of-scan (SOS) segment header."""
    pos = jpeg.find(b"\xff\xda")
    if pos < 0:
        raise ValueError("no SOS marker: not a baseline JPEG")
    return pos + 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")


def select(y: np.ndarray, per_class: int, num_classes: int) -> np.ndarray:
    """The first ``per_class`` indices of each label, merged in ascending order."""
    chosen = []
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)[:per_class]
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} images")
        chosen.append(idx)
    return np.sort(np.concatenate(chosen))


def main(source: Path = DEFAULT_SOURCE, out: Path = DEFAULT_OUT) -> Path:
    z = np.load(source, allow_pickle=False)
    class_names = z["class_names"]
    arrays: dict[str, np.ndarray] = {"class_names": class_names}
    header: bytes | None = None
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        blob, off, y = z[f"jpeg_{split}"], z[f"offsets_{split}"], z[f"y_{split}"]
        index = select(y, per_class, len(class_names))
        bodies = []
        for i in index.tolist():
            jpeg = blob[off[i] : off[i + 1]].tobytes()
            h = header_length(jpeg)
            if header is None:
                header = jpeg[:h]
            if jpeg[:h] != header:
                raise ValueError(f"{split} image {i} has a different JPEG header; cannot factor")
            bodies.append(np.frombuffer(jpeg[h:], dtype=np.uint8))
        arrays[f"body_{split}"] = np.concatenate(bodies)
        arrays[f"offsets_{split}"] = np.concatenate([[0], np.cumsum([len(b) for b in bodies])])
        arrays[f"y_{split}"] = y[index].astype(np.int64)
        arrays[f"index_{split}"] = index.astype(np.int64)
    assert header is not None
    arrays["header"] = np.frombuffer(header, dtype=np.uint8)
    provenance = {
        "dataset": "CIFAR-10 (Krizhevsky, 2009), https://www.cs.toronto.edu/~kriz/cifar.html",
        "source_file": source.name,
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "source_description": "all of CIFAR-10 as JPEG (quality ~75), official order",
        "selection": SELECTION,
        "train_per_class": TRAIN_PER_CLASS,
        "test_per_class": TEST_PER_CLASS,
        "encoding": "image i = header + body[offsets[i]:offsets[i+1]] (JPEG bytes unchanged)",
        "script": "scripts/make_embedded_dataset.py",
    }
    arrays["provenance"] = np.array(json.dumps(provenance, sort_keys=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)  # JPEG data does not compress further
    os.replace(tmp, out)
    return out


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    if len(args) > 2:
        sys.exit(__doc__)
    path = main(*args)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")

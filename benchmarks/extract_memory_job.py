"""Subprocess job for test_extract_memory.py: stream two VGG-11s over N probe images.

Prints one JSON line: peak RSS before and after streaming (MB), images, seconds.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import torch

import simbench
from simbench.extract import image_batches, pair_layers, stream_moments_at


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(n_images: int, width: float) -> None:
    torch.set_grad_enabled(False)
    arch = simbench.get_plugin("architecture", "vgg", width=width)
    a, b = arch.build(10, seed=0), arch.build(10, seed=1)
    pairs = pair_layers(arch.layers(a), arch.layers(b))
    rng = np.random.default_rng(0)
    base = peak_mb()

    def images():  # probe images generated batch by batch, never all in memory
        for start in range(0, n_images, 250):
            size = min(250, n_images - start)
            yield rng.integers(0, 256, size=(size, 32, 32, 3), dtype=np.uint8)

    def batches():
        for chunk in images():
            yield from image_batches(chunk, [0.5] * 3, [0.25] * 3, 250)

    t = time.perf_counter()
    moments = stream_moments_at(a, b, pairs, batches(), positions=16)
    seconds = time.perf_counter() - t
    n = moments["output"]["conv1"].n
    print(
        json.dumps(
            {
                "baseline_mb": base,
                "peak_mb": peak_mb(),
                "images": n_images,
                "samples_conv1": n,
                "layers": len(pairs),
                "seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))

"""Speed of unshrunk ``bures_cosine`` and the ``srm`` alignment against their peers.

Run (needs ``pip install -e '.[references]'``)::

    python benchmarks/peer_gaps.py

- ``bures_cosine(shrinkage="none")`` against rsatoolbox's eigendecomposition route
  (``_bures_similarity_second_way`` on ``WᵀW/(n σ²)``), spiked weights.
- the ``srm`` alignment (``k = 64``, 20 iterations, ``tol = 0``) against brainiak's
  ``DetSRM(n_iter=20, features=64)`` at ``n < d``.

CPU time (``time.process_time``) with one BLAS thread, calls interleaved, median over
repeats; prints speed = reference time / simbench time (above 1: simbench is faster).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from references.existing import _rsatoolbox_bures  # noqa: E402

import simbench  # noqa: E402


def _interleaved(f, g, repeats):
    ts, tr = [], []
    for _ in range(repeats):
        t0 = time.process_time()
        a = f()
        ts.append(time.process_time() - t0)
        t0 = time.process_time()
        b = g()
        tr.append(time.process_time() - t0)
    return a, b, statistics.median(ts), statistics.median(tr)


def bures(rng):
    metric = simbench.get_metric("bures_cosine", shrinkage="none")
    for n, d in ((2000, 256), (10000, 512), (4000, 1024)):
        V = np.linalg.qr(rng.normal(size=(d, 16)))[0]
        root = np.eye(d) + (V * (np.sqrt(1.0 + np.linspace(40, 400, 16)) - 1.0)) @ V.T
        sigma = np.sqrt(1 / (3 * d))
        A = sigma * rng.normal(size=(n, d)) @ root
        B = sigma * rng.normal(size=(n, d)) @ root
        v1, v2, a, b = _interleaved(
            lambda A=A, B=B: metric(A, B), lambda A=A, B=B: _rsatoolbox_bures(A, B), 7
        )
        print(
            f"bures_cosine none  W {n}x{d}: simbench {a:.4f}s rsatoolbox {b:.4f}s "
            f"speed {b / a:.2f}x |Δ| {abs(v1 - v2):.1e}"
        )


def srm(rng, iters=20, k=64):
    from brainiak.funcalign.srm import DetSRM

    for n, d in ((500, 2048), (1000, 2048), (2000, 2048)):
        S = rng.normal(size=(n, 32))
        X = S @ rng.normal(size=(32, d)) + rng.normal(size=(n, d))
        Y = S @ rng.normal(size=(32, d)) + rng.normal(size=(n, d))
        align = simbench.get_alignment("srm", k=k, max_iter=iters, tol=0.0)

        def peer(X=X, Y=Y):
            data = [(X - X.mean(0)).T, (Y - Y.mean(0)).T]
            return DetSRM(n_iter=iters, features=k, rand_seed=0).fit(data)

        _, _, a, b = _interleaved(lambda X=X, Y=Y, al=align: al.fit(X, Y), peer, 3)
        print(
            f"srm k={k} {iters} it  {n}x{d}: simbench {a:.3f}s brainiak DetSRM {b:.3f}s "
            f"speed {b / a:.2f}x"
        )


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    bures(np.random.default_rng(1))
    srm(np.random.default_rng(0))

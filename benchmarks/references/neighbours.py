"""Reference implementations of the neighbourhood metrics, for benchmarks/reference_table.py.

Each entry names a simbench metric (with its parameters) and a callable computing the
same quantity with the authors' code, imported from a checkout on ``sys.path`` (the
harness adds the directories in ``SIMBENCH_REFERENCE_PATHS``); nothing is copied here.

- platonic-rep (https://github.com/minyoungg/platonic-rep, not on PyPI): the checkout
  root, whose ``metrics.py`` defines ``AlignmentMetrics`` (it imports ``torchaudio`` at
  the top). Their ``measure_alignment.compute_score`` L2-normalises each row
  (``F.normalize(x, p=2, dim=-1)``) before the metric; the callables do the same. Their
  0/1 neighbour masks use torch's default dtype, so the calls run with float64 as the
  default (float32 masks round ``mutual_knn`` at ~1e-8).
- ReSi (https://github.com/mklabunde/resi, not on PyPI): the checkout root holding the
  ``repsim`` package (needs ``einops`` and ``loguru``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np


def _platonic(
    name: str, normalize: bool = True, **kwargs
) -> Callable[[np.ndarray, np.ndarray], float]:
    def fn(X: np.ndarray, Y: np.ndarray) -> float:
        import torch
        import torch.nn.functional as F

        metrics = importlib.import_module("metrics")
        if not hasattr(metrics, "AlignmentMetrics"):
            raise ImportError("the module 'metrics' on sys.path is not platonic-rep's metrics.py")
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            A, B = torch.from_numpy(np.asarray(X, float)), torch.from_numpy(np.asarray(Y, float))
            if normalize:
                A, B = F.normalize(A, p=2, dim=-1), F.normalize(B, p=2, dim=-1)
            return float(getattr(metrics.AlignmentMetrics, name)(A, B, **kwargs))
        finally:
            torch.set_default_dtype(previous)

    return fn


def _resi(name: str, **kwargs) -> Callable[[np.ndarray, np.ndarray], float]:
    def fn(X: np.ndarray, Y: np.ndarray) -> float:
        module = importlib.import_module("repsim.measures.nearest_neighbor")
        return float(
            getattr(module, name)(np.asarray(X, float), np.asarray(Y, float), "nd", **kwargs)
        )

    return fn


_P = "platonic-rep metrics.AlignmentMetrics"
_R = "ReSi repsim.measures.nearest_neighbor"

REFERENCES: list[dict] = [
    {
        "metric": "mutual_knn",
        "params": {"k": 10},
        "source": f"{_P}.mutual_knn(topk=10) on L2-normalised rows",
        "fn": _platonic("mutual_knn", topk=10),
    },
    {
        "metric": "mutual_knn",
        "params": {"k": 10, "distance": "inner"},
        "source": f"{_P}.mutual_knn(topk=10), rows not normalised",
        "fn": _platonic("mutual_knn", normalize=False, topk=10),
    },
    {
        "metric": "cknna",
        "params": {"k": 10, "eps": 1e-6},
        "source": f"{_P}.cknna(topk=10) on L2-normalised rows (unbiased HSIC, eps 1e-6)",
        "fn": _platonic("cknna", topk=10),
    },
    {
        "metric": "cknna",
        "params": {"k": 10, "eps": 1e-6, "unbiased": False},
        "source": f"{_P}.cknna(topk=10, unbiased=False) on L2-normalised rows",
        "fn": _platonic("cknna", topk=10, unbiased=False),
    },
    {
        "metric": "jaccard_knn",
        "params": {"k": 10},
        "source": f"{_R}.jaccard_similarity(k=10, inner='cosine')",
        "fn": _resi("jaccard_similarity", k=10, inner="cosine", n_jobs=1),
    },
    {
        "metric": "jaccard_knn",
        "params": {"k": 10, "distance": "euclidean"},
        "source": f"{_R}.jaccard_similarity(k=10, inner='euclidean')",
        "fn": _resi("jaccard_similarity", k=10, inner="euclidean", n_jobs=1),
    },
    {
        "metric": "rank_similarity",
        "params": {"k": 10},
        "source": f"{_R}.rank_similarity(k=10, inner='cosine')",
        "fn": _resi("rank_similarity", k=10, inner="cosine", n_jobs=1),
    },
    {
        "metric": "rank_similarity",
        "params": {"k": 10, "distance": "euclidean"},
        "source": f"{_R}.rank_similarity(k=10, inner='euclidean')",
        "fn": _resi("rank_similarity", k=10, inner="euclidean", n_jobs=1),
    },
    {
        "metric": "second_order_cosine",
        "params": {"k": 10},
        "source": f"{_R}.second_order_cosine_similarity(k=10)",
        "fn": _resi("second_order_cosine_similarity", k=10, n_jobs=1, n_jobs_neighbors=1),
    },
]

"""The tests' per-model data, read from each model's probe store (no forward pass).

The ``represent`` stage (:mod:`simbench.runner.represent`) runs every model over the
probe images once and keeps its logits, the probe labels and each selected layer's
global-average-pooled output ``(n, C)``; here they are exported to the run's output
folder (:func:`simbench.runner.model_data.write_model_data`) with per-model metadata
(``info``: architecture, dataset, seed, label-noise ``fraction``, the images the model
was trained on, train/test accuracy from its checkpoint's sidecar), which is what
:class:`simbench.runner.model_data.ModelData` and the tests read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simbench.runner.cache import Cache
from simbench.runner.stages import ModelRef


@dataclass(frozen=True)
class ModelDataJob:
    """One model's probe logits, labels and pooled per-layer outputs, from its store."""

    cache_root: str
    store_key: str
    model: ModelRef
    layers: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


def model_info(node: Any) -> dict[str, Any]:
    """Architecture, dataset, seed, label-noise fraction and trained-on images of a model."""
    spec = node.spec
    if spec is None:
        return {"arch": node.arch, "dataset": node.dataset, "fraction": 0.0}
    ds = spec.dataset
    params = dict(getattr(ds, "params", {}) or {})
    if ds.name == "random_labels":  # same images as its base dataset, some labels replaced
        fraction = float(params.get("fraction", 1.0))
        base = params.get("base")
        name, bparams = (
            (base, {})
            if isinstance(base, str)
            else (dict(base or {}).get("name"), dict(base or {}).get("params") or {})
        )
    else:
        fraction, name, bparams = 0.0, ds.name, params
    images = json.dumps({"name": name, "params": bparams}, sort_keys=True, default=str)
    return {"arch": spec.architecture.name, "dataset": ds.name, "seed": spec.seed,
            "fraction": fraction, "images": images}  # fmt: skip


def jobs_of(plan: Any) -> list[ModelDataJob]:
    """One job per model of the plan (its ``represent`` store)."""
    return [
        ModelDataJob(
            str(plan.cache.root),
            node.represent_key,
            node.model_ref,
            tuple(node.layers),
            info=model_info(node),
        )
        for node in plan.models.values()
    ]


def run_model_data(job: ModelDataJob) -> dict[str, np.ndarray]:
    """The job's arrays, read from the model's store (SHA-256 verified by the cache)."""
    from simbench.runner.graph import _sidecar
    from simbench.runner.represent import ModelStore

    store = ModelStore.open(Cache(job.cache_root), job.store_key)
    arrays = {"logits": np.asarray(store.logits()), "labels": np.asarray(store.labels())}
    arrays.update({f"act:{n}": np.asarray(store.pooled(n)) for n in job.layers})
    hist = _sidecar(Path(job.model.path)).get("history") or []
    last = hist[-1] if isinstance(hist, list) and hist and isinstance(hist[-1], dict) else {}
    for k in ("test_accuracy", "train_accuracy"):
        if isinstance(last.get(k), int | float):
            arrays[k] = np.asarray(float(last[k]))
    return arrays


def export_model_data(
    plan: Any, out_dir: Path, say: Callable[[str], None] = lambda _l: None
) -> int:
    """Run (or read from the cache) every model's job; write them under ``out_dir``.

    Returns the number of models exported; a model that fails is reported and skipped
    (the tests that need its data then lack their inputs).
    """
    from simbench.runner.model_data import write_info, write_model_data

    done = 0
    info = {}
    for job in jobs_of(plan):
        try:
            arrays = run_model_data(job)
        except Exception as exc:  # the results are written; the tests lose this model only
            say(f"model data: {job.model.ref} failed: {type(exc).__name__}: {exc}")
            continue
        write_model_data(out_dir, job.model.ref, arrays)
        rec = dict(job.info)
        for k, short in (("test_accuracy", "test_acc"), ("train_accuracy", "train_acc")):
            if k in arrays:
                rec[short] = float(arrays[k])
        info[job.model.ref] = rec
        done += 1
    write_info(out_dir, info)
    return done

"""The per-model forward pass that supplies the tests' per-model data (isolated stand-in).

Until permodel's ``ModelStore`` (COORD.md §2) lands, each model of a suite runs over the
probe images once more, here: its logits and the probe labels, and for every selected
layer its global-average-pooled output ``(n, C)`` (float32), cached under a key of the
model, the probe and the layers, then exported to the run's output folder
(:func:`simbench.runner.model_data.write_model_data`) with per-model metadata (``info``:
architecture, dataset, seed, label-noise ``fraction``, the images the model was trained
on, train/test accuracy from its checkpoint). The lead replaces :func:`export_model_data`
by a reader of the ``ModelStore`` at merge; :class:`simbench.runner.model_data.ModelData`
is what the tests read either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simbench.runner.cache import Cache, make_key
from simbench.runner.stages import ModelRef, ProbeConfig, load_ref, probe_images

VERSION = "1"


@dataclass(frozen=True)
class ModelDataJob:
    """One model's probe logits, labels and pooled per-layer outputs."""

    cache_root: str
    key: str
    model: ModelRef
    probe: ProbeConfig
    layers: tuple[str, ...]
    device: str = "auto"
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
    """One job per model of the plan."""
    probe_dict = json.dumps(plan.probe.__dict__, sort_keys=True, default=str)
    out = []
    for node in plan.models.values():
        layers = tuple(node.layers)
        key = make_key("modeldata", node.key, probe_dict, layers, VERSION)
        out.append(ModelDataJob(str(plan.cache.root), key, node.model_ref, plan.probe, layers,
                                info=model_info(node)))  # fmt: skip
    return out


def probe_labels(probe: ProbeConfig) -> np.ndarray:
    """The probe images' labels (the order of :func:`simbench.runner.stages.probe_images`)."""
    from simbench.extract import probe_indices
    from simbench.train.checkpoint import create_plugin

    data = create_plugin("dataset", probe.dataset, probe.params).load()
    labels = data.y_test if probe.split == "test" else data.y_train
    return np.asarray(labels)[probe_indices(len(labels), probe.images, probe.seed)]


def run_model_data(job: ModelDataJob) -> dict[str, np.ndarray]:
    """The job's arrays, from the cache or computed (and cached)."""
    cache = Cache(job.cache_root)
    got = cache.get_arrays("modeldata", job.key)
    if got is not None:
        return dict(got[0])
    import torch

    from simbench.compare import paired_probe_batches
    from simbench.extract import LayerTaps
    from simbench.train.trainer import resolve_device

    device = resolve_device(job.device)
    net, arch, meta = load_ref(job.model, device)
    specs = [s for s in arch.layers(net) if s.name in set(job.layers)]
    images = probe_images(job.probe)
    norm = meta["normalization"]
    acts: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    logits = []
    with torch.no_grad(), LayerTaps(net, specs, "output") as taps:
        for xa, _ in paired_probe_batches(images, norm, norm, job.probe.batch_size, device):
            out = net(xa.double())
            logits.append(out.float().cpu().numpy())
            for name in acts:
                a = taps.values[name]
                a = a.mean(dim=(2, 3)) if a.ndim == 4 else a.reshape(a.shape[0], -1)
                acts[name].append(a.float().cpu().numpy())
    arrays = {"logits": np.concatenate(logits), "labels": probe_labels(job.probe)}
    arrays.update({f"act:{k}": np.concatenate(v) for k, v in acts.items()})
    hist = meta.get("history") or []
    last = hist[-1] if isinstance(hist, list) and hist and isinstance(hist[-1], dict) else {}
    for k in ("test_accuracy", "train_accuracy"):
        if isinstance(last.get(k), int | float):
            arrays[k] = np.asarray(float(last[k]))
    cache.put_arrays("modeldata", job.key, arrays)
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

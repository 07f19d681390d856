"""The work of each stage: train, extract, align, score, invariance checks.

Every job is a picklable dataclass; ``run_job(job)`` does the work and writes every
output into the shared cache itself (atomically), so that jobs can run in this process,
in a local process pool or on SLURM nodes sharing the cache folder; what a job returns
is only a small summary for the driver (counts, failures). Jobs never raise for a
failure of one cell: a failing alignment or metric stores its cell with the error text
(the value is NaN in the results); only a failure of the job's own inputs (a model that
cannot be loaded, a dataset that cannot be read) raises, and the driver then marks
every cell depending on it as failed for this run (not cached: the next run retries).

Stored formats (all float64):

- extract, one entry per (pair, layer), read through
  :func:`simbench.runner.pair_stats.read_extract` (the pair file holds the pair's cross
  terms, each model's side terms are ``side`` entries shared by its pairs): ``in_*`` and
  ``out_*`` :class:`Moments` fields of the layer's input (when a weight metric needs it)
  and output representations, their per-block moments ``in_blk_*``, ``out_blk_*`` and
  the output's derangement cross-moments ``out_null_*`` (:meth:`BlockMoments.to_arrays`),
  ``uncertainty`` ``[blocks, null pairings, seed, batch size]``, ``w_a``/``w_b`` the two
  weights in their ``LayerSpec.weight_shape`` view, ``init_var`` ``[σ²_a, σ²_b]``;
  optionally ``act_a``/``act_b`` (channel samples, for non-streaming metrics) and
  ``map_a``/``map_b`` (whole ``(B, C, H, W)`` maps, for 4-D metrics), read from the
  model stores; one more file per pair with the global-average-pooled outputs
  ``a/<layer>``, ``b/<layer>`` of every selected layer (``layer_matrix``);
- align: ``T`` (``.npz``) or a JSON error record;
- score: a JSON record ``{value, stderr, ci_low, ci_high, null_mean, null_sd, z, error,
  wall_time_s, details}`` (:mod:`simbench.uncertainty`: jackknife over the extract
  file's probe blocks, derangement null from its null cross-moments);
- eigvec: ``overlap`` ``|V_aᵀ V_b|`` of the two aligned weight covariances (GM Fig. 3).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from simbench.runner.cache import Cache

#: bump when the layout of an extract file changes (part of the extract keys);
#: 2: per-block moments ``<site>_blk_*`` and null cross-moments ``out_null_*``;
#: 3: a pair file holds the cross terms only, each model's side terms are side entries
EXTRACT_FORMAT = 3
#: stage names, in dependency order
STAGES = ("train", "extract", "align", "score")

_MOMENT_FIELDS = ("mean_x", "mean_y", "sxx", "syy", "sxy")
_FOURTH_KEYS = ("aa", "bb", "ab", "pxx", "pyy", "pxy", "pyx")


# ----------------------------------------------------------------------------- helpers


def moments_to_arrays(prefix: str, m: Any) -> dict[str, np.ndarray]:
    """The fields of a paired :class:`Moments` as arrays named ``<prefix>_<field>``."""
    out = {f"{prefix}_n": np.array(m.n, dtype=np.int64)}
    for f in _MOMENT_FIELDS:
        out[f"{prefix}_{f}"] = np.asarray(getattr(m, f), dtype=np.float64)
    if m.fourth:
        out[f"{prefix}_shift_x"] = np.asarray(m._shift_x, dtype=np.float64)
        out[f"{prefix}_shift_y"] = np.asarray(m._shift_y, dtype=np.float64)
        for k in _FOURTH_KEYS:
            out[f"{prefix}_h_{k}"] = np.asarray(m._h[k], dtype=np.float64)
    return out


def moments_from_arrays(prefix: str, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of :func:`moments_to_arrays`."""
    from simbench.numerics.moments import Moments

    fourth = f"{prefix}_shift_x" in arrays
    m = Moments(fourth=fourth)
    m.n = int(arrays[f"{prefix}_n"])
    for f in _MOMENT_FIELDS:
        setattr(m, f, np.array(arrays[f"{prefix}_{f}"], dtype=np.float64))
    if fourth:
        m._shift_x = np.array(arrays[f"{prefix}_shift_x"])
        m._shift_y = np.array(arrays[f"{prefix}_shift_y"])
        m._h = {
            k: (float(v) if v.ndim == 0 else np.array(v))
            for k in _FOURTH_KEYS
            for v in [arrays[f"{prefix}_h_{k}"]]
        }
    return m


#: longest error text stored in a cell (the start of a long message says what went wrong)
MAX_ERROR_CHARS = 2000


def error_text(exc: BaseException) -> str:
    """One line naming the exception and where it was raised (last frame)."""
    if isinstance(exc, JobFailed):
        return str(exc)
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" [{Path(tb[-1].filename).name}:{tb[-1].lineno}]" if tb else ""
    msg = " ".join(str(exc).split())
    if len(msg) > MAX_ERROR_CHARS:
        msg = msg[: MAX_ERROR_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {msg}{where}"


def _cacheable(exc: BaseException) -> bool:
    """Whether a cell's failure is a property of its inputs (cached) rather than of the
    machine (out of memory, I/O: retried at the next run)."""
    return not isinstance(exc, MemoryError | OSError)


def _scalar_details(details: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in details.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool | int | str) or v is None:
            out[str(k)] = v
        elif isinstance(v, float):
            out[str(k)] = v if math.isfinite(v) else None
    return out


def _finite(x: Any) -> float | None:
    """A JSON-safe float: ``None`` for missing or non-finite values."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(max(1, threads))


# ----------------------------------------------------------------------------- model refs


@dataclass(frozen=True)
class ModelRef:
    """A model as jobs see it: its reference, content key and weights file; for a model
    the suite trains, the training run's key and the epoch the file must hold (checked
    against its sidecar: a checkpoint copied from another model is refused)."""

    ref: str
    key: str
    path: str  # .safetensors (may not exist before the train stage)
    train_key: str | None = None
    epoch: int | None = None  # None: the final model

    def check(self, meta: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` if a checkpoint sidecar is not this model's."""
        if self.train_key is None:
            return
        want = (self.train_key, "model" if self.epoch is None else "epoch")
        got = (meta.get("key"), meta.get("kind"))
        if got != want or (self.epoch is not None and meta.get("epoch") != self.epoch):
            raise ValueError(
                f"{self.path} holds the weights of training run {got[0]} ({got[1]} "
                f"{meta.get('epoch')}), not of {self.ref} (run {self.train_key}); "
                "the checkpoint was copied or moved under the wrong name"
            )


def load_ref(model: ModelRef, device: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(model in float64 eval mode, architecture, sidecar)``."""
    from simbench.train.checkpoint import load_model

    net, arch, meta = load_model(model.path, device=device)
    model.check(meta)
    return net.double().eval(), arch, meta


def extract_inputs(a: ModelRef, b: ModelRef) -> list[str]:
    """The input keys recorded with (and checked against) an extract file: its models."""
    return [a.key, b.key]


def score_inputs(cell: Any) -> list[str]:
    """The input keys recorded with (and checked against) a score record."""
    return [cell.extract_key, *([cell.align_key] if cell.align_key else [])]


# ----------------------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainJob:
    """Train one ``ModelSpec`` (JSON) into ``models_dir/<spec.key()>``."""

    spec: dict[str, Any]
    models_dir: str
    force: bool = False
    threads: int | None = None
    progress: bool = False


def run_train(job: TrainJob) -> dict[str, Any]:
    from simbench.runner.locks import locked
    from simbench.train.checkpoint import MODEL_FILE, is_complete
    from simbench.train.config import ModelSpec
    from simbench.train.trainer import run_dir, train

    _set_threads(job.threads)
    spec = ModelSpec.model_validate(job.spec)
    rdir = run_dir(spec, job.models_dir)
    with locked([rdir]):  # another run training this model: wait, then use its model
        reused = not job.force and is_complete(rdir / MODEL_FILE)
        if job.force and rdir.exists():
            shutil.rmtree(rdir)
        t0 = time.perf_counter()
        path = train(spec, job.models_dir, progress=job.progress)
    return {"path": str(path), "seconds": time.perf_counter() - t0, "reused": int(reused)}


# ----------------------------------------------------------------------------- extract


@dataclass(frozen=True)
class ProbeConfig:
    """The probe set (suite ``probe``) with the dataset as ``name``/``params``."""

    dataset: str
    params: dict[str, Any]
    split: str
    images: int | None
    seed: int
    positions: int | None
    batch_size: int
    blocks: int = 20  # jackknife blocks (at most one per image)
    null_pairings: int = 4  # derangement nulls (0: none)
    dtype: str = "float32"  # forward pass (simbench.runner.represent)


@dataclass(frozen=True)
class ExtractOptions:
    """What an extract file holds beyond the moments (part of the extract keys)."""

    fourth: bool = False  # fourth-order sums of the output moments (debiased CKA)
    activations: bool = False  # channel-sample output activations (non-streaming metrics)
    maps: bool = False  # whole (B, C, H, W) output maps (4-D metrics)
    forward: str = "float32"  # dtype of the forward pass (float64 sums either way)
    inputs: bool = True  # the layers' input moments too (alignments of weight metrics)

    @property
    def sites(self) -> tuple[str, ...]:
        return ("input", "output") if self.inputs else ("output",)

    def key_dict(self) -> dict[str, Any]:
        # a float64 forward keeps the keys (and values) of the pair-wise extraction before
        # per-model stores; a float32 forward's values differ, so its keys do
        forward = {} if self.forward == "float64" else {"forward": self.forward}
        return {
            "format": EXTRACT_FORMAT,
            "sites": list(self.sites),
            "fourth": self.fourth,
            "activations": self.activations,
            "maps": self.maps,
            **forward,
        }


@dataclass(frozen=True)
class ExtractJob:
    """The pair statistics of two models from their stores ``store_a``, ``store_b``
    (:mod:`simbench.runner.represent`; no forward pass), writing the missing
    ``(layer, key)`` files and, if ``pooled_key``, the pooled-outputs file."""

    cache_root: str
    model_a: ModelRef
    model_b: ModelRef
    probe: ProbeConfig
    options: ExtractOptions
    layers: tuple[tuple[str, str], ...]  # (layer name, extract key) to write
    pooled_key: str | None = None
    pooled_layers: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # A's, B's
    device: str = "auto"
    threads: int | None = None
    flat: bool = False  # layer matrix on flattened (B, C·H·W) outputs instead of pooled
    store_a: str = ""  # represent keys of the two models
    store_b: str = ""


def probe_data(probe: ProbeConfig) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 NHWC probe images and their labels (deterministic in the probe config):
    ``images`` of the split drawn per class (:func:`simbench.data.sampling.
    balanced_indices` with the probe seed), in dataset order."""
    from simbench.data.sampling import balanced_indices
    from simbench.train.checkpoint import create_plugin

    data = create_plugin("dataset", probe.dataset, probe.params).load()
    images = data.x_test if probe.split == "test" else data.x_train
    labels = data.y_test if probe.split == "test" else data.strata
    if len(images) == 0:
        raise ValueError(f"probe dataset {probe.dataset!r} has no {probe.split} images")
    keep = balanced_indices(labels, probe.images, probe.seed)
    return images[keep], labels[keep]


def probe_images(probe: ProbeConfig) -> np.ndarray:
    """The uint8 NHWC probe images of :func:`probe_data`."""
    return probe_data(probe)[0]


def run_extract(job: ExtractJob) -> dict[str, Any]:
    """Stream the probe set through both models; write the requested files (those that
    no concurrent run wrote while this one waited for their locks)."""
    from simbench.runner.pair_stats import extract_complete

    cache = Cache(job.cache_root)
    keys = [k for _, k in job.layers] + ([job.pooled_key] if job.pooled_key else [])
    with cache.lock("extract", keys):  # concurrent runs: one computes, the other reads
        inputs = extract_inputs(job.model_a, job.model_b)
        done = {k for k in keys if extract_complete(cache, k, False, False, inputs)}
        todo = replace(
            job,
            layers=tuple((n, k) for n, k in job.layers if k not in done),
            pooled_key=job.pooled_key if job.pooled_key not in done else None,
        )
        out = _extract(todo) if len(done) < len(keys) else {"written": 0, "seconds": 0.0}
    return {**out, "reused": len(done)}


def _extract(job: ExtractJob) -> dict[str, Any]:
    """The pair's cross terms from the two models' stores (:mod:`simbench.runner.
    pair_stats`; each model's side terms are computed once, by the first pair needing
    them) and the layer-matrix features, every statistic accumulated in float64 over
    the forward pass's batches (:meth:`ModelStore.batches`)."""
    from simbench.extract import require_same_grid
    from simbench.runner.pair_stats import cross_arrays, side_entry
    from simbench.runner.represent import ModelStore

    _set_threads(job.threads)
    t0 = time.perf_counter()
    cache = Cache(job.cache_root)
    # the plan verified the SHA-256 of every store that existed before this run (and this
    # run wrote the others): here their key, inputs and size are checked, not re-hashed
    # by each of a model's N-1 pairs
    sa = ModelStore.open(cache, job.store_a, [job.model_a.key], verify=False)
    sb = ModelStore.open(cache, job.store_b, [job.model_b.key], verify=False)
    for store, model in ((sa, job.model_a), (sb, job.model_b)):
        missing = [n for n, _ in job.layers if n not in store.layers]
        if missing:
            raise ValueError(f"layer(s) {missing} are not in {model.ref}")
    if sa.images != sb.images or sa.batch_size != sb.batch_size:
        raise ValueError("the two model stores were made from different probe sets")
    n_images, opts, probe = sa.images, job.options, job.probe
    blocks = min(probe.blocks, n_images)
    # the uncertainty set-up the score stage reads: blocks, null pairings, seed, chunk
    unc = np.array([blocks, probe.null_pairings, probe.seed, probe.batch_size], dtype=np.int64)
    written = 0
    model_keys = extract_inputs(job.model_a, job.model_b)
    for n, key in job.layers:
        for w in opts.sites:
            require_same_grid(sa.shape(n, w)[1:], sb.shape(n, w)[1:], f"layer {n!r} at its {w}")
        ka, side_a = side_entry(cache, sa, job.store_a, n, blocks, opts.fourth, opts.sites)
        kb, side_b = side_entry(cache, sb, job.store_b, n, blocks, opts.fourth, opts.sites)
        # MATH.md: Uncertainty and chance (per-block moments, derangement nulls)
        arrays = cross_arrays(
            sa, sb, n, side_a, side_b, probe.null_pairings, probe.seed, opts.sites
        )
        arrays["uncertainty"] = unc
        meta = {
            "layer": n,
            "model_a": job.model_a.ref,
            "model_b": job.model_b.ref,
            "model_keys": model_keys,
            "stores": [job.store_a, job.store_b],
            "sides": [ka, kb],
            "activations": opts.activations,
            "maps": opts.maps,
        }
        cache.put_arrays("extract", key, arrays, meta, model_keys)
        written += 1
    if job.pooled_key:
        arrays = _matrix_features(job, sa, sb)
        arrays["uncertainty"] = unc
        cache.put_arrays("extract", job.pooled_key, arrays, {"pooled": True}, model_keys)
        written += 1
    return {"written": written, "seconds": time.perf_counter() - t0}


def _matrix_features(job: ExtractJob, sa: Any, sb: Any) -> dict[str, np.ndarray]:
    """The layer-matrix features of every selected layer of both models, float64: pooled
    (or flattened) outputs ``a/<layer>``, ``b/<layer>``; with maps, the output maps on the
    matrix grid ``a/map/<layer>`` (:mod:`simbench.numerics.grids`)."""
    from simbench.numerics.grids import common_grid, pool_map

    pool_a, pool_b = job.pooled_layers
    sides = (("a", sa, pool_a), ("b", sb, pool_b))
    out: dict[str, np.ndarray] = {}
    grid = None
    if job.options.maps:
        grid = common_grid((1, *store.shape(n)) for _, store, names in sides for n in names)
    for side, store, names in sides:
        for n in names:
            f = store.flat(n) if job.flat else store.pooled(n)
            out[f"{side}/{n}"] = np.asarray(f, dtype=np.float64)
            if job.options.maps:
                out[f"{side}/map/{n}"] = np.concatenate(
                    [
                        pool_map(np.asarray(store.maps(n)[a:b], dtype=np.float64), grid)
                        for a, b in _bounds(store)
                    ]
                )
    return out


def _bounds(store: Any) -> list[tuple[int, int]]:
    from simbench.runner.represent import batch_bounds

    return batch_bounds(store.images, store.batch_size)


# ----------------------------------------------------------------------------- align


@dataclass(frozen=True)
class AlignTask:
    key: str
    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class AlignJob:
    """Fit every listed alignment on one layer's input moments."""

    cache_root: str
    extract_key: str
    tasks: tuple[AlignTask, ...]
    threads: int | None = None


def read_align(cache: Cache, key: str) -> tuple[np.ndarray | None, str | None]:
    """``(T, None)``, ``(None, error)`` or ``(None, None)`` when missing/corrupt."""
    got = cache.get_arrays("align", key)
    if got is not None:
        return got[0]["T"], None
    rec = cache.get_json("align", key)
    if rec is not None:
        return None, str(rec.get("error") or "alignment failed")
    return None, None


def align_done(
    cache: Cache, key: str, verify: bool = True, inputs: list[str] | None = None
) -> bool:
    return cache.has_arrays("align", key, verify, inputs=inputs) or cache.has_json(
        "align", key, verify, inputs=inputs
    )


def run_align(job: AlignJob) -> dict[str, Any]:
    from simbench.runner.pair_stats import read_extract

    _set_threads(job.threads)
    cache = Cache(job.cache_root)
    got = read_extract(cache, job.extract_key)
    if got is None:
        raise FileNotFoundError(f"extract output {job.extract_key} is missing or corrupt")
    m_in = moments_from_arrays("in", got[0])
    failed = reused = 0
    for task in job.tasks:
        with cache.lock("align", [task.key]):
            if align_done(cache, task.key, False, [job.extract_key]):
                reused += 1  # a concurrent run fitted it while this one waited
                continue
            failed += _align_one(cache, task, m_in, job.extract_key)
    return {"written": len(job.tasks) - reused, "failed": failed, "reused": reused}


def _align_one(cache: Cache, task: AlignTask, m_in: Any, extract_key: str) -> int:
    """Fit one alignment and store ``T`` or the error; return 1 if it failed."""
    from simbench.registry import default_registry

    cache.discard("align", task.key)
    t0 = time.perf_counter()
    try:
        alignment = default_registry().create("alignment", task.name, **task.params)
        T = alignment.fit(m_in).T
        if not np.isfinite(T).all():
            raise ValueError("the fitted map T has non-finite entries")
    except Exception as exc:
        if not _cacheable(exc):
            raise
        rec = {"error": error_text(exc), "wall_time_s": time.perf_counter() - t0}
        cache.put_json("align", task.key, rec, [extract_key])
        return 1
    wall = {"wall_time_s": time.perf_counter() - t0}
    cache.put_arrays("align", task.key, {"T": T}, wall, [extract_key])
    return 0


# ----------------------------------------------------------------------------- score


@dataclass(frozen=True)
class ScoreCell:
    """One result cell: a metric (with its draw's params) on one layer pair.

    ``kind``: ``"rep"`` (output moments / activations of ``extract_key``), ``"weights"``
    (weights of ``extract_key`` aligned by ``align_key``) or ``"pooled"`` (pooled outputs
    ``layer_a`` of A and ``layer_b`` of B in the file ``extract_key``).
    """

    key: str
    kind: str
    metric: str
    params: dict[str, Any]
    extract_key: str
    align_key: str | None = None
    eig_key: str | None = None
    layer_a: str = ""
    layer_b: str = ""
    #: the alignment (name, params) of a weights cell, refitted per left-out block
    align: tuple[str, dict[str, Any]] | None = None
    #: a layer-matrix cell with its standard error and chance level (suite
    #: ``layer_matrix_uncertainty``); false: the value only
    uncertainty: bool = True


@dataclass(frozen=True)
class ScoreJob:
    cache_root: str
    cells: tuple[ScoreCell, ...]
    threads: int | None = None


class _Inputs:
    """Lazily loaded, shared inputs of the cells of one score job."""

    def __init__(self, cache: Cache):
        self.cache = cache
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._moments: dict[str, Any] = {}
        self._T: dict[str, tuple[np.ndarray | None, str | None]] = {}
        self._prepared: dict[tuple, Any] = {}  # (metric, params, file, side, layer) -> prepare
        self.covs: dict[tuple, Any] = {}  # (extract, align, shrinkage) -> covariances | error
        self.loo_inputs: dict[Any, Any] = {}  # (align, shrinkage, cov?, block) -> B's input

    def arrays(self, key: str) -> dict[str, np.ndarray]:
        from simbench.runner.pair_stats import read_extract

        if key not in self._arrays:
            got = read_extract(self.cache, key)
            if got is None:
                raise FileNotFoundError(f"extract output {key} is missing or corrupt")
            self._arrays[key] = got[0]
        return self._arrays[key]

    def moments(self, key: str) -> Any:
        if key not in self._moments:
            self._moments[key] = moments_from_arrays("out", self.arrays(key))
        return self._moments[key]

    def blocks(self, key: str, site: str = "out") -> Any:
        from simbench.numerics.blocks import BlockMoments

        memo = f"{site}/{key}"
        if memo not in self._moments:
            self._moments[memo] = BlockMoments.from_arrays(site, self.arrays(key))
        return self._moments[memo]

    def uncertainty(self, key: str, positions: int = 1) -> Any:
        """The :class:`~simbench.uncertainty.Uncertainty` the extract file was made for."""
        from simbench.uncertainty import Uncertainty

        blocks, nulls, seed, chunk = (int(v) for v in self.arrays(key)["uncertainty"])
        return Uncertainty(blocks, nulls, seed, positions=positions, chunk=chunk)

    def prepared(self, metric: Any, cell: ScoreCell, side: str, X: np.ndarray) -> Any:
        """``metric.prepare`` of one side's layer of a layer-matrix file, once per job
        (a ``ValueError`` of ``prepare`` is kept and raised for every cell using it)."""
        layer = cell.layer_a if side == "a" else cell.layer_b
        memo = (cell.metric, json.dumps(cell.params, sort_keys=True, default=repr))
        memo += (cell.extract_key, side, layer)
        if memo not in self._prepared:
            try:
                self._prepared[memo] = metric.prepare(X)
            except ValueError as exc:
                self._prepared[memo] = exc
        got = self._prepared[memo]
        if isinstance(got, ValueError):
            raise ValueError(str(got))
        return got

    def T(self, key: str) -> tuple[np.ndarray | None, str | None]:
        if key not in self._T:
            self._T[key] = read_align(self.cache, key)
        return self._T[key]


def _weight_inputs(
    metric: Any, inputs: _Inputs, cell: ScoreCell, T: np.ndarray, a: Any = None
) -> tuple:
    """A's weight and B's pulled back into A's input basis (MATH.md: pulling weights back),
    as :class:`WeightCovariance` with each layer's real init variance for the built-in
    weight metrics (as :func:`simbench.compare.weight_covariances`), raw otherwise. The
    covariances of one (layer, alignment, shrinkage) are computed once per job and shared
    by its metrics (so ``wall_time_s`` of the first such cell includes them). ``a``: A's
    input already built (the jackknife refits only B's side)."""
    from simbench.numerics.covariance import WeightCovariance

    arrays = inputs.arrays(cell.extract_key)
    WA, WB = arrays["w_a"], arrays["w_b"]
    if WB.shape[1] != T.shape[1] or WA.shape[1] != T.shape[0]:
        raise ValueError(
            f"T is {T.shape} but the weights have {WA.shape[1]} and {WB.shape[1]} input channels"
        )
    WB_A = np.einsum("oi...,ji->oj...", WB, T)
    shrinkage = getattr(metric, "shrinkage", None)
    if not (isinstance(shrinkage, str) and getattr(metric, "init_var", "unset") is None):
        return WA, WB_A
    if a is not None:
        ib = float(arrays["init_var"][1])
        return a, WeightCovariance.from_weight(WB_A, init_var=ib, shrinkage=shrinkage)
    memo = (cell.extract_key, cell.align_key, shrinkage)
    if memo not in inputs.covs:
        ia, ib = (float(v) for v in arrays["init_var"])
        try:
            inputs.covs[memo] = (
                WeightCovariance.from_weight(WA, init_var=ia, shrinkage=shrinkage),
                WeightCovariance.from_weight(WB_A, init_var=ib, shrinkage=shrinkage),
            )
        except ValueError as exc:
            inputs.covs[memo] = exc
    got = inputs.covs[memo]
    if isinstance(got, Exception):
        raise got
    return got


def _store_eigvec(cache: Cache, key: str, ca: Any, cb: Any, align_key: str) -> None:
    from simbench.numerics.covariance import WeightCovariance, eigenvector_similarity

    if not (isinstance(ca, WeightCovariance) and isinstance(cb, WeightCovariance)):
        return
    if cache.has_arrays("eigvec", key, verify=False):
        return
    try:
        ev = eigenvector_similarity(ca, cb)
    except ValueError:
        return  # nothing kept after shrinkage: no heatmap for this cell
    cache.put_arrays(
        "eigvec",
        key,
        {"overlap": ev.overlap},
        {"chance": ev.chance, "significance": ev.significance},
        [align_key],
    )


def _weights_uncertainty(
    metric: Any, inputs: _Inputs, cell: ScoreCell, a: Any, b: Any, full: Any
) -> Any:
    """Jackknife of a weight metric over probe blocks: the alignment is refitted on the
    input moments without each block (the weights themselves do not depend on the probe),
    combined with the metric's Monte-Carlo error; chance level: the metric's own zero
    point (:meth:`Metric.chance_level`)."""
    from simbench.registry import default_registry
    from simbench.uncertainty import summarize

    cfg = inputs.uncertainty(cell.extract_key)
    assert cell.align is not None
    name, params = cell.align
    T_full, _ = inputs.T(cell.align_key)  # type: ignore[arg-type]
    loo = np.empty(cfg.blocks)
    errors: list[str] = []
    for i, m in inputs.blocks(cell.extract_key, "in").leave_one_out():
        try:
            T = default_registry().create("alignment", name, **params).fit(m).T
            if T_full is not None and np.array_equal(T, T_full):
                loo[i] = full.value  # the map does not depend on the probe (identity)
                continue
            # A's side does not move; B's pulled-back input is shared by the cell's metrics
            as_cov = getattr(metric, "init_var", "unset") is None
            memo = (cell.align_key, getattr(metric, "shrinkage", None), as_cov, i)
            if inputs.loo_inputs.get("extract") != cell.extract_key:
                inputs.loo_inputs = {"extract": cell.extract_key}  # one layer's at a time
            if memo not in inputs.loo_inputs:
                inputs.loo_inputs[memo] = _weight_inputs(metric, inputs, cell, T, a)[1]
            loo[i] = float(metric.evaluate(a, inputs.loo_inputs[memo]).value)
        except ValueError as exc:
            errors.append(str(exc))
            loo[i] = float("nan")
    return summarize(
        full,
        cfg,
        loo=loo if np.isfinite(loo).all() else None,
        analytic=metric.analytic_stderr(a, b),
        chance=metric.chance_level(a, b, full),
        errors=errors,
    )


def pooled_score(metric: Any, cell: ScoreCell, inputs: _Inputs, X: Any, Y: Any) -> Any:
    """A layer-matrix cell: the value from ``score_prepared`` when the metric declares
    ``prepare`` (each (model, layer) prepared once per job, issue 11), the standard error
    and null from the arrays as for any metric (``evaluate_with_uncertainty``)."""
    from simbench.metrics.base import Metric
    from simbench.uncertainty import evaluate_with_uncertainty

    full = None
    if type(metric).prepare is not Metric.prepare:
        pa = inputs.prepared(metric, cell, "a", X)
        pb = inputs.prepared(metric, cell, "b", Y)
        if pa is not None and pb is not None:
            full = metric.score_prepared(pa, pb)
    if not cell.uncertainty:  # suite ``layer_matrix_uncertainty: false``: the value only
        return full if full is not None else metric.evaluate(X, Y)
    cfg = inputs.uncertainty(cell.extract_key)
    return evaluate_with_uncertainty(metric, X, Y, cfg, full=full)


def _score_cell(cell: ScoreCell, inputs: _Inputs) -> Any:
    from simbench.metrics.base import Consumes
    from simbench.registry import default_registry

    metric = default_registry().create("metric", cell.metric, **cell.params)
    if cell.kind == "pooled":
        arrays = inputs.arrays(cell.extract_key)
        if getattr(metric, "input_ndim", 2) == 4:  # conv maps, on their common grid
            from simbench.numerics.grids import to_common_grid

            X, Y = arrays[f"a/map/{cell.layer_a}"], arrays[f"b/map/{cell.layer_b}"]
            return metric.evaluate(
                *to_common_grid(X, Y), uncertainty=inputs.uncertainty(cell.extract_key)
            )
        X, Y = arrays[f"a/{cell.layer_a}"], arrays[f"b/{cell.layer_b}"]
        return pooled_score(metric, cell, inputs, X, Y)
    if cell.kind == "weights":
        assert cell.align_key is not None
        T, err = inputs.T(cell.align_key)
        if T is None:
            raise ValueError(f"the alignment failed: {err}")
        a, b = _weight_inputs(metric, inputs, cell, T)
        if cell.eig_key:
            _store_eigvec(inputs.cache, cell.eig_key, a, b, cell.align_key)
        full = metric.evaluate(a, b)
        if cell.align is None or not math.isfinite(full.value):
            return full
        return _weights_uncertainty(metric, inputs, cell, a, b, full)
    if metric.consumes is not Consumes.REPRESENTATIONS:
        raise ValueError(f"metric {cell.metric!r} consumes {metric.consumes.value}")
    arrays = inputs.arrays(cell.extract_key)
    key = cell.extract_key
    if getattr(metric, "input_ndim", 2) == 4:
        if "map_a" not in arrays:
            raise ValueError("4-D activation maps were not extracted")
        cfg = inputs.uncertainty(key)
        return metric.evaluate(arrays["map_a"], arrays["map_b"], uncertainty=cfg)
    if metric.streaming:
        return metric.evaluate(inputs.blocks(key), uncertainty=inputs.uncertainty(key))
    if "act_a" not in arrays:
        raise ValueError("activations were not extracted for this non-streaming metric")
    images = int(arrays["out_blk_edges"][-1])
    cfg = inputs.uncertainty(key, positions=arrays["act_a"].shape[0] // images)
    return metric.evaluate(arrays["act_a"], arrays["act_b"], uncertainty=cfg)


def run_score(job: ScoreJob) -> dict[str, Any]:
    """Score every cell and store one record per cell (errors included)."""
    _set_threads(job.threads)
    cache = Cache(job.cache_root)
    inputs = _Inputs(cache)
    failed = reused = 0
    from simbench.runner.supervise import cell_started

    for cell in job.cells:
        with cache.lock("score", [cell.key]):
            if cache.has_json("score", cell.key, inputs=score_inputs(cell)):
                reused += 1  # a concurrent run scored it while this one waited
                continue
            cell_started(cell.key)  # from now on run.cell_timeout_s applies
            failed += _score_one(cell, inputs)
            cell_started(None)
    return {"written": len(job.cells) - reused, "failed": failed, "reused": reused}


def _score_one(cell: ScoreCell, inputs: _Inputs) -> int:
    """Score one cell and store its record; return 1 if the metric failed."""
    from simbench.plugin import Score

    failed = 0
    t0 = time.perf_counter()
    try:
        score = _score_cell(cell, inputs)
        if not isinstance(score, Score):
            score = Score(float(score))
        value = float(score.value)
        stderr = None if score.stderr is None else float(score.stderr)
        ci = score.ci if score.ci is not None else (None, None)
        rec: dict[str, Any] = {
            "value": value,
            "stderr": _finite(stderr),
            "ci_low": _finite(ci[0]),
            "ci_high": _finite(ci[1]),
            "null_mean": _finite(score.null_mean),
            "null_sd": _finite(score.null_sd),
            "z": _finite(score.z),
            "error": "" if math.isfinite(value) else "the metric returned a non-finite value",
            "details": _scalar_details(score.details or {}),
        }
    except FileNotFoundError:
        raise  # an input of the job is missing: not the cell's fault
    except Exception as exc:
        if not _cacheable(exc):
            raise
        failed += 1
        rec = {"value": None, "stderr": None, "error": error_text(exc), "details": {}}
    rec["wall_time_s"] = time.perf_counter() - t0
    inputs.cache.put_json("score", cell.key, rec, score_inputs(cell))
    return failed


def timeout_record(limit_s: float) -> dict[str, Any]:
    """The record of a score cell stopped at ``run.cell_timeout_s`` (cached: the next run
    retries it only under a larger limit, see :meth:`simbench.runner.graph.Plan.schedule`)."""
    return {
        "value": None,
        "stderr": None,
        "error": f"TimeLimitExceeded: the cell ran longer than run.cell_timeout_s = "
        f"{limit_s:g} s and was stopped (raise the limit to retry it)",
        "details": {},
        "wall_time_s": limit_s,
        "timeout_s": limit_s,
    }


# ----------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class ChecksJob:
    """Invariance checks (:func:`simbench.invariance.check_invariances`) of every suite
    metric on one layer pair's own activations."""

    cache_root: str
    key: str
    model_a: ModelRef
    model_b: ModelRef
    probe: ProbeConfig
    layer: str
    metrics: tuple[tuple[str, str, dict[str, Any]], ...]  # (label, name, params)
    alignment: tuple[str, dict[str, Any]] | None
    seed: int
    images: int = 64
    maps: bool = False  # whole (B, C, H, W) output maps (a 4-D metric is checked)
    device: str = "auto"
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_checks(job: ChecksJob) -> dict[str, Any]:
    _set_threads(job.threads)
    cache = Cache(job.cache_root)
    with cache.lock("checks", [job.key]):
        if cache.has_json("checks", job.key):
            return {"written": 0, "reused": 1}
        return _checks(job, cache)


def _checks(job: ChecksJob, cache: Cache) -> dict[str, Any]:
    import torch

    from simbench.compare import paired_probe_batches
    from simbench.extract import LayerTaps, channel_samples
    from simbench.invariance import check_invariances
    from simbench.numerics.moments import Moments
    from simbench.registry import default_registry
    from simbench.train.trainer import resolve_device

    device = resolve_device(job.device)
    net_a, arch_a, meta_a = load_ref(job.model_a, device)
    net_b, arch_b, meta_b = load_ref(job.model_b, device)
    sa = {s.name: s for s in arch_a.layers(net_a)}[job.layer]
    sb = {s.name: s for s in arch_b.layers(net_b)}[job.layer]
    from simbench.data.sampling import balanced_indices

    images, labels = probe_data(job.probe)
    images = images[balanced_indices(labels, job.images, job.probe.seed)]
    outs: dict[str, list[np.ndarray]] = {"xa": [], "xb": [], "ia": [], "ib": []}
    with (
        torch.no_grad(),
        LayerTaps(net_a, [sa], "output") as oa,
        LayerTaps(net_b, [sb], "output") as ob,
        LayerTaps(net_a, [sa], "input") as ia,
        LayerTaps(net_b, [sb], "input") as ib,
    ):
        batches = paired_probe_batches(
            images, meta_a["normalization"], meta_b["normalization"], job.probe.batch_size, device
        )
        for i, (xa, xb) in enumerate(batches):
            net_a(xa.double())
            net_b(xb.double())
            for k, taps in (("xa", oa), ("xb", ob), ("ia", ia), ("ib", ib)):
                act = taps.values[job.layer]
                if not (job.maps and k in ("xa", "xb")):
                    act = channel_samples(act, job.probe.positions, job.probe.seed, i)
                outs[k].append(act.double().cpu().numpy())
    X, Y = np.concatenate(outs["xa"]), np.concatenate(outs["xb"])
    weights = None
    if job.alignment is not None:
        try:
            m = Moments.from_arrays(*(np.concatenate(outs[k]) for k in ("ia", "ib")))
            name, params = job.alignment
            T = default_registry().create("alignment", name, **params).fit(m).T
            WA = sa.weight(net_a).double().cpu().numpy()
            WB = sb.weight(net_b).double().cpu().numpy()
            weights = (WA, np.einsum("oi...,ji->oj...", WB, T))
        except Exception:
            weights = None
    specs = [{"name": n, "params": p, "label": label} for label, n, p in job.metrics]
    df = check_invariances(specs, X, Y, seed=job.seed, weights=weights)
    rows = [{k: _json_scalar(v) for k, v in r.items()} for r in df.to_dict("records")]
    record = {"rows": rows, "layer": job.layer, **job.extra}
    cache.put_json("checks", job.key, record, extract_inputs(job.model_a, job.model_b))
    return {"written": 1}


def _json_scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return None  # pandas.NA and anything else


# ----------------------------------------------------------------------------- dispatch


class JobFailed(RuntimeError):
    """A job's failure as one line of text (always picklable, whatever the original
    exception: it crosses process and machine boundaries)."""


_RUNNERS = {
    "TrainJob": "run_train",
    "ExtractJob": "run_extract",
    "RepresentJob": "run_represent",
    "AlignJob": "run_align",
    "ScoreJob": "run_score",
    "ChecksJob": "run_checks",
}


def run_job(job: Any) -> dict[str, Any]:
    """Run any job of this module (the function the executors call); a failure is raised
    as :class:`JobFailed` carrying :func:`error_text` of the original exception."""
    name = _RUNNERS.get(type(job).__name__)
    if name is None:
        raise TypeError(f"not a runner job: {job!r}")
    if name == "run_represent":
        from simbench.runner.represent import run_represent as fn
    else:
        fn = globals()[name]
    try:
        return fn(job)
    except Exception as exc:
        raise JobFailed(error_text(exc)) from None


def default_threads(workers: int) -> int:
    """Torch threads per worker process so that ``workers`` processes share the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


__all__ = [
    "EXTRACT_FORMAT",
    "STAGES",
    "AlignJob",
    "AlignTask",
    "ChecksJob",
    "ExtractJob",
    "ExtractOptions",
    "JobFailed",
    "ModelRef",
    "ProbeConfig",
    "ScoreCell",
    "ScoreJob",
    "TrainJob",
    "default_threads",
    "moments_from_arrays",
    "moments_to_arrays",
    "run_job",
]

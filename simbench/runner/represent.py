"""The per-model stage ``represent``: one forward pass of the probe set through one model.

A suite with N models costs N forward passes whatever its pairs: each model's store
(:class:`ModelStore`, one cache entry per model) holds what every pair stage reads, and
the pair stage (:func:`simbench.runner.stages.run_extract`) forms the paired moments,
per-block moments, null cross-moments and layer-matrix features from two stores.

A store (stage ``represent``, an uncompressed ``.npz`` read back memory-mapped) holds,
for every selected layer ``L`` of the model:

- ``in/L``, ``out/L``: the channel samples ``(n·P, C)`` at the layer's input and output
  (:func:`simbench.extract.channel_samples`: ``P = min(positions, H·W)`` positions per
  image drawn from ``(probe seed, batch index, H, W)`` with the probe's batch size, so
  the positions depend on the probe alone and two models whose layers have equal
  spatial sizes sample the same positions of the same images); ``shape_in/L``,
  ``shape_out/L``: the per-image activation shape (``(C, H, W)`` or ``(C,)``);
- ``pool/L`` (global-average-pooled outputs ``(n, C)``) or ``flat/L`` (``(n, C·H·W)``)
  when the suite has a layer matrix, ``map/L`` (whole ``(n, C, H, W)`` outputs) when a
  suite metric takes 4-D maps;
- ``w/L``: the weight (in the checkpoint's dtype, float32 or float64, read back as
  float64; in its ``LayerSpec.weight_shape`` view); ``init_var``:
  the layers' init variances (in :attr:`ModelStore.layers` order);
- ``logits`` ``(n, K)`` and ``labels`` ``(n,)``: the model's outputs on the probe images
  and their labels (for test plugins).

Representations are stored in the forward dtype (``probe.dtype``): float32 by default,
the forward pass running in float32 (TF32/bf16 are not used) while every statistic of
the pair stage is accumulated in float64 from the float32 values; ``float64`` runs the
forward pass in float64 and gives the values of the earlier pair-wise extraction
exactly (the same samples reach the same float64 accumulators in the same order).
Pooled features are averaged in the forward dtype (a float32 mean of ``H·W ≤ 1024``
values is within a few ulps of the float64 one; the layer-matrix scores move by less
than the float32 forward's own tolerance, README: Per-model extraction).

Without ``StoreOptions.inputs`` (a suite without weight metrics, whose alignments alone
read the layers' inputs) the store holds no ``in/L``, ``shape_in/L``: the input taps
are not even installed.

Memory bound: the job holds the model, what a plain forward pass of one batch holds
(each tapped input or output is sampled, pooled and written from its hook, then freed
by the pass as usual; at most one batch of one layer's ``C·H·W`` values on top) and at most
:data:`MEMORY_BUDGET` (256 MiB) of stored arrays; arrays beyond it are written batch by
batch into memory-mapped ``.npy`` parts (``numpy.lib.format.open_memmap``, pages the
kernel can drop) and streamed into the cache entry, so resident memory does not grow
with the number of probe images (the disk holds ``n·(P·ΣC + ...)`` values in the
forward dtype). Readers map the entry (:meth:`Cache.open_arrays`) and read the rows
they touch: the pair stage one forward batch of one layer at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simbench.runner.cache import Cache
from simbench.runner.read_memo import ReadMemo

__all__ = [
    "REPRESENT_FORMAT",
    "ModelStore",
    "RepresentJob",
    "StoreOptions",
    "batch_bounds",
    "run_represent",
]

#: bytes of a store held in memory while it is written; larger stores are written to
#: memory-mapped ``.npy`` parts (then copied into the cache entry) beyond it
MEMORY_BUDGET = 256 << 20
#: bump when the layout of a store changes (part of the represent keys); 2: pooled
#: features averaged in the forward dtype, weights in the checkpoint's dtype
REPRESENT_FORMAT = 2
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class StoreOptions:
    """What a store holds beyond the channel samples, weights and logits (part of its key)."""

    dtype: str = "float32"  # forward pass and stored representations
    pooled: bool = False  # pool/L: global-average-pooled outputs (layer matrix)
    flat: bool = False  # flat/L: flattened outputs (layer matrix, layer_features: flat)
    maps: bool = False  # map/L: whole output maps (4-D metrics)
    inputs: bool = True  # in/L: the layers' input samples (alignments of weight metrics)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"the forward dtype is one of {DTYPES}; got {self.dtype!r}")

    def key_dict(self) -> dict[str, Any]:
        return {
            "format": REPRESENT_FORMAT,
            "dtype": self.dtype,
            "pooled": self.pooled,
            "flat": self.flat,
            "maps": self.maps,
            **({} if self.inputs else {"inputs": False}),  # earlier stores keep their keys
        }


@dataclass(frozen=True)
class RepresentJob:
    """One forward pass of the probe set through one model, writing its store ``key``."""

    cache_root: str
    key: str
    model: Any  # simbench.runner.stages.ModelRef
    probe: Any  # simbench.runner.stages.ProbeConfig
    layers: tuple[str, ...]
    options: StoreOptions
    device: str = "auto"
    threads: int | None = None


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of the probe's forward batches (the batch index seeds the
    sampled positions, :func:`simbench.extract.channel_samples`)."""
    return [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def run_represent(job: RepresentJob) -> dict[str, Any]:
    """Write the store unless a concurrent run did while this one waited for its lock."""
    cache = Cache(job.cache_root)
    with cache.lock("represent", [job.key]):
        if cache.has_arrays("represent", job.key, False, False, [job.model.key]):
            return {"written": 0, "reused": 1, "seconds": 0.0}
        return _represent(job, cache)


class _Writer:
    """Arrays written batch by batch into ``.npy`` files next to the store, then streamed
    into the cache entry (:meth:`Cache.put_array_files`)."""

    def __init__(self, cache: Cache, key: str, n: int, budget: int = MEMORY_BUDGET):
        from simbench.io import temp_path

        self.n, self.folder = n, cache.path("represent", key, "npz").parent
        self.folder.mkdir(parents=True, exist_ok=True)
        self._temp = lambda: temp_path(self.folder / key)
        self.files: dict[str, Path] = {}
        self._maps: dict[str, np.ndarray] = {}
        self._rows: dict[str, int] = {}
        self._budget = budget  # bytes still to be held in memory

    def write(self, name: str, chunk: np.ndarray, images: int, start: int) -> None:
        """Rows of images ``start .. start+images`` (``chunk.shape[0]`` is a multiple of
        ``images``: the rows per image are the same in every batch)."""
        per = chunk.shape[0] // images
        if name not in self._maps:
            shape = (self.n * per, *chunk.shape[1:])
            size = int(np.prod(shape)) * chunk.dtype.itemsize
            if size <= self._budget:  # in memory (no file written twice)
                self._budget -= size
                self._maps[name] = np.empty(shape, chunk.dtype)
            else:
                path = self._temp()
                self.files[name] = path
                self._maps[name] = np.lib.format.open_memmap(path, "w+", chunk.dtype, shape)
            self._rows[name] = per
        if per != self._rows[name]:
            raise ValueError(f"{name}: {per} rows per image in one batch, not {self._rows[name]}")
        self._maps[name][start * per : (start + images) * per] = chunk

    def put(self, cache: Cache, key: str, arrays: Mapping[str, np.ndarray], **kw: Any) -> None:
        # memory-mapped parts are shared with the page cache: what they hold is what their
        # files read back (no msync: the cache entry's checksum guards against a lost write)
        parts = {k: self.files.get(k, v) for k, v in self._maps.items()}
        cache.put_array_files("represent", key, {**parts, **arrays}, **kw)
        self._maps.clear()

    def cleanup(self) -> None:
        self._maps.clear()
        for path in self.files.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _represent(job: RepresentJob, cache: Cache) -> dict[str, Any]:
    import torch

    from simbench.extract import LayerTaps, channel_samples
    from simbench.runner.stages import _set_threads, probe_data
    from simbench.train.checkpoint import load_model
    from simbench.train.trainer import resolve_device

    _set_threads(job.threads)
    t0 = time.perf_counter()
    opts, probe = job.options, job.probe
    dtype = torch.float32 if opts.dtype == "float32" else torch.float64
    device = resolve_device(job.device)
    net, arch, meta = load_model(job.model.path, device=device)
    job.model.check(meta)
    specs = {s.name: s for s in arch.layers(net)}
    missing = [n for n in job.layers if n not in specs]
    if missing:
        raise ValueError(f"layer(s) {missing} are not in {job.model.ref}")
    layers = [specs[n] for n in job.layers]
    # the weights as the checkpoint holds them (before the forward dtype's cast; float16
    # and bfloat16 widened to float32, exactly), read back as float64
    weights = {f"w/{s.name}": _native(s.weight(net)) for s in layers}
    net = net.to(dtype).eval()  # in place: the layer specs still name its modules
    images, labels = probe_data(probe)
    n = len(images)
    writer = _Writer(cache, job.key, n)
    shapes: dict[str, np.ndarray] = {}
    at = {"batch": 0, "start": 0, "images": 0}  # the batch the hooks are seeing

    def take(site: str) -> Any:
        """The hook's work on one layer's input or output, done at once (the tensor is
        then freed by the forward pass as a plain forward frees it)."""

        def on_value(name: str, y: Any) -> None:
            shapes[f"shape_{site}/{name}"] = np.array(y.shape[1:], dtype=np.int64)
            s = channel_samples(y, probe.positions, probe.seed, at["batch"])
            writer.write(f"{site}/{name}", _host(s), at["images"], at["start"])
            if site == "in":
                return
            if opts.flat:
                writer.write(f"flat/{name}", _host(y.reshape(len(y), -1)), len(y), at["start"])
            if opts.pooled:  # averaged in the forward dtype
                f = y.mean(dim=(2, 3)) if y.ndim == 4 else y
                writer.write(f"pool/{name}", _host(f), len(y), at["start"])
            if opts.maps:
                writer.write(f"map/{name}", _host(y), len(y), at["start"])

        return on_value

    try:
        with (
            torch.no_grad(),
            LayerTaps(net, layers if opts.inputs else [], "input", on_value=take("in")),
            LayerTaps(net, layers, "output", on_value=take("out")),
        ):
            batches = _batches(images, meta["normalization"], probe.batch_size, device)
            for i, ((start, stop), x) in enumerate(batches):
                at.update(batch=i, start=start, images=stop - start)
                logits = net(x.to(dtype))
                if isinstance(logits, torch.Tensor) and logits.ndim == 2:
                    writer.write("logits", _host(logits.float()), stop - start, start)
        small: dict[str, np.ndarray] = {
            **shapes,
            "labels": np.asarray(labels),
            "init_var": np.array([s.init_variance for s in layers], dtype=np.float64),
            **weights,
        }
        side = {
            "model": job.model.ref,
            "layers": list(job.layers),
            "images": n,
            "batch_size": probe.batch_size,
            **opts.key_dict(),
        }
        writer.put(cache, job.key, small, meta=side, inputs=[job.model.key])
    finally:
        writer.cleanup()
    return {"written": 1, "reused": 0, "seconds": time.perf_counter() - t0}


def _native(t: Any) -> np.ndarray:
    """A weight tensor as numpy in its own dtype (float32 or float64; others widened)."""
    import torch

    t = t.detach().cpu()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.numpy().copy()


def _host(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


def _batches(
    images: np.ndarray, norm: Mapping[str, Any], batch_size: int, device: Any
) -> Iterator[tuple[tuple[int, int], Any]]:
    """``((start, stop), batch)``: the probe images normalised (and, for foreign weights,
    resized) for the model (:func:`simbench.compare.paired_probe_batches`'s convention)."""
    from simbench.data.resize import resize_center_crop
    from simbench.extract import image_batches

    size, crop = norm.get("input_size"), float(norm.get("crop_pct", 1.0))
    xs = image_batches(images, norm["mean"], norm["std"], batch_size, device)
    for bounds, x in zip(batch_bounds(len(images), batch_size), xs, strict=True):
        yield bounds, resize_center_crop(x, size, crop)


#: stores kept open (memory-mapped) per process for a model's other pairs
_opened = ReadMemo(1 << 62, 64, lambda got: 0)


class ModelStore:
    """One model's representations of the probe set (see the module docstring), every
    array memory-mapped from its cache entry."""

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]):
        self._arrays = dict(arrays)
        self.meta = dict(meta)
        self.layers: list[str] = list(meta["layers"])
        self.images = int(meta["images"])
        self.batch_size = int(meta["batch_size"])
        self.dtype = str(meta["dtype"])

    @classmethod
    def open(
        cls, cache: Cache, key: str, inputs: list[str] | None = None, verify: bool = True
    ) -> ModelStore:
        """The store ``key`` of ``cache`` (SHA-256 verified unless ``verify=False``);
        ``FileNotFoundError`` if it is missing or corrupt."""
        got = _opened.get(
            cache,
            "represent",
            key,
            lambda: cache.open_arrays("represent", key, inputs=inputs, verify=verify),
            verified=verify,
            tag=repr(inputs),
        )
        if got is None:
            raise FileNotFoundError(f"model store {key} is missing or corrupt")
        return cls(*got)

    def _get(self, name: str, what: str) -> np.ndarray:
        try:
            return self._arrays[name]
        except KeyError:
            raise ValueError(f"the store of {self.meta.get('model')} holds no {what}") from None

    def _layer(self, layer: str) -> str:
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not in this store; its layers: {self.layers}")
        return layer

    def logits(self) -> np.ndarray:
        """The model's outputs on the probe images, ``(n, K)`` float32."""
        return self._get("logits", "logits")

    def labels(self) -> np.ndarray:
        """The probe images' labels ``(n,)``."""
        return self._get("labels", "labels")

    def samples(self, layer: str, site: str = "output") -> np.ndarray:
        """Channel samples ``(n·P, C)`` at the layer's ``"input"`` or ``"output"``."""
        if site not in ("input", "output"):
            raise ValueError(f"site is 'input' or 'output'; got {site!r}")
        prefix = "in" if site == "input" else "out"
        return self._get(f"{prefix}/{self._layer(layer)}", f"{site} samples of {layer}")

    def shape(self, layer: str, site: str = "output") -> tuple[int, ...]:
        """The per-image activation shape ``(C, H, W)`` or ``(C,)``."""
        prefix = "in" if site == "input" else "out"
        return tuple(int(v) for v in self._get(f"shape_{prefix}/{self._layer(layer)}", "shape"))

    def flat(self, layer: str) -> np.ndarray:
        """Flattened outputs ``(n, C·H·W)`` (stored for ``layer_features: flat``)."""
        return self._get(f"flat/{self._layer(layer)}", f"flattened outputs of {layer}")

    def pooled(self, layer: str) -> np.ndarray:
        """Global-average-pooled outputs ``(n, C)`` (stored for a layer matrix)."""
        return self._get(f"pool/{self._layer(layer)}", f"pooled outputs of {layer}")

    def maps(self, layer: str) -> np.ndarray:
        """Whole output maps ``(n, C, H, W)`` (stored when a metric takes 4-D maps)."""
        return self._get(f"map/{self._layer(layer)}", f"output maps of {layer}")

    def weight(self, layer: str) -> np.ndarray:
        """The layer's weight, float64, in its ``LayerSpec.weight_shape`` view (stored in
        the checkpoint's own dtype: the conversion is exact)."""
        return np.asarray(self._get(f"w/{self._layer(layer)}", "weights"), dtype=np.float64)

    def init_var(self, layer: str) -> float:
        """The layer's init variance σ² (MATH.md: weight covariance)."""
        return float(self._get("init_var", "init variances")[self.layers.index(layer)])

    def batches(self, layer: str, site: str = "output") -> Iterator[tuple[np.ndarray, int]]:
        """``(float64 samples, images)`` of each forward batch, in the order of the pass."""
        X = self.samples(layer, site)
        per = X.shape[0] // self.images
        for start, stop in batch_bounds(self.images, self.batch_size):
            yield np.asarray(X[start * per : stop * per], dtype=np.float64), stop - start

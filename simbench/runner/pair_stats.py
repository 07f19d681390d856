"""The extract stage's pair statistics, split into per-model sides and per-pair cross terms.

Over ``N`` models, a pair's statistics hold ``N − 1`` copies of each model's own terms. So
the cache keeps them apart (:mod:`simbench.numerics.block_parts`):

- a **side** entry (stage ``side``, one per (model store, layer), keyed by the store, the
  layer, the jackknife blocks and the fourth-order flag): per-block means and centred
  scatters of the layer's input and output channel samples (and the output's fourth-order
  side sums), the layer's weight ``w`` and init variance ``init_var``. The first pair job
  that needs it computes it under its lock; every other pair of the model reads it;
- a pair's **extract** file (one per (pair, layer)): only what depends on the pair,
  the per-block cross scatters ``XcᵀYc`` at the input and output, the output's
  derangement cross-moments and the fourth-order cross sums; ``uncertainty``.

:func:`read_extract` assembles the layout the align and score stages read (documented in
:mod:`simbench.runner.stages`) from a pair file and its two side entries: bit for bit the
arrays of one paired accumulation of the same batches (tested). Per pair the work is then
the cross products alone, ``(1 + R)·n·d_a·d_b`` at the output and ``n·d_a·d_b`` at the
input, and a pair file holds ``(B + R)·d_a·d_b`` values per site instead of
``B·(d_a² + d_b² + d_a·d_b) + R·d_a·d_b`` plus both weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from simbench.numerics.block_parts import CrossBlocks, SideBlocks, assemble
from simbench.runner.cache import Cache, make_key
from simbench.runner.read_memo import ReadMemo

__all__ = [
    "SIDE_FORMAT",
    "cross_arrays",
    "extract_complete",
    "read_extract",
    "side_entry",
    "side_key",
]

#: bump when the layout of a side entry changes (part of the side keys)
SIDE_FORMAT = 1
_PREFIX = {"input": "in", "output": "out"}
SITES = ("input", "output")


def side_key(
    store_key: str, layer: str, blocks: int, fourth: bool, sites: tuple[str, ...] = SITES
) -> str:
    """The key of one (model store, layer)'s side entry."""
    sites_key = [] if tuple(sites) == SITES else [list(sites)]
    return make_key("side", store_key, layer, int(blocks), bool(fourth), SIDE_FORMAT, *sites_key)


def compute_side(
    store: Any, layer: str, blocks: int, fourth: bool, sites: tuple[str, ...] = SITES
) -> dict[str, np.ndarray]:
    """One layer's side arrays at ``sites`` from a :class:`~simbench.runner.represent.
    ModelStore`, its samples read one forward batch at a time (the batches the cross
    terms use)."""
    out: dict[str, np.ndarray] = {}
    for site in sites:
        prefix = _PREFIX[site]
        side = SideBlocks(store.images, blocks, fourth and site == "output")
        for x, units in store.batches(layer, site):
            side.update(x, units)
        out.update({f"{prefix}_{k}": v for k, v in side.to_arrays().items()})
    out["w"] = store.weight(layer)
    out["init_var"] = np.array(store.init_var(layer), dtype=np.float64)
    return out


#: bytes of verified side entries kept in memory per process (least recently used out)
MEMO_BYTES = 256 << 20
_sides = ReadMemo(MEMO_BYTES, 4096, lambda a: sum(v.nbytes for v in a.values()))


def read_side(cache: Cache, key: str, store_key: str) -> dict[str, np.ndarray] | None:
    """A side entry's arrays (SHA-256 and key verified; ``None`` if missing or corrupt),
    kept in this process for the model's other pairs (:class:`~simbench.runner.
    read_memo.ReadMemo`: :data:`MEMO_BYTES`)."""

    def load() -> dict[str, np.ndarray] | None:
        got = cache.get_arrays("side", key, inputs=[store_key])
        return None if got is None else got[0]

    return _sides.get(cache, "side", key, load, tag=store_key)


def side_entry(
    cache: Cache,
    store: Any,
    store_key: str,
    layer: str,
    blocks: int,
    fourth: bool,
    sites: tuple[str, ...] = SITES,
) -> tuple[str, dict[str, np.ndarray]]:
    """``(key, arrays)`` of the side entry of ``store``'s ``layer``, computed and written
    (under its lock, so concurrent pair jobs compute it once) when missing or corrupt."""
    key = side_key(store_key, layer, blocks, fourth, sites)
    got = read_side(cache, key, store_key)
    if got is not None:
        return key, got
    with cache.lock("side", [key]):
        got = read_side(cache, key, store_key)
        if got is not None:
            return key, got
        arrays = compute_side(store, layer, blocks, fourth, sites)
        meta = {"layer": layer, "model": store.meta.get("model")}
        cache.put_arrays("side", key, arrays, meta, [store_key])
        _sides.remember(cache, "side", key, arrays, tag=store_key)
    return key, arrays


def _part(prefix: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    head = f"{prefix}_"
    return {k[len(head) :]: v for k, v in arrays.items() if k.startswith(head)}


def cross_arrays(
    store_a: Any,
    store_b: Any,
    layer: str,
    side_a: Mapping[str, np.ndarray],
    side_b: Mapping[str, np.ndarray],
    null_pairings: int,
    seed: int,
    sites: tuple[str, ...] = SITES,
) -> dict[str, np.ndarray]:
    """A pair's cross terms of one layer at ``sites`` (the nulls at the output only,
    where the representation metrics read)."""
    out: dict[str, np.ndarray] = {}
    for site in sites:
        prefix = _PREFIX[site]
        a = SideBlocks.from_arrays(_part(prefix, side_a))
        b = SideBlocks.from_arrays(_part(prefix, side_b))
        cross = CrossBlocks(a, b, null_pairings if site == "output" else 0, seed)
        batches = zip(store_a.batches(layer, site), store_b.batches(layer, site), strict=True)
        for (xa, units), (xb, _) in batches:
            cross.update(xa, xb, units)
        out.update({f"{prefix}_{k}": v for k, v in cross.to_arrays().items()})
    return out


def extract_complete(
    cache: Cache,
    key: str,
    verify: bool = True,
    repair: bool = True,
    inputs: list[str] | None = None,
    seen: dict[str, bool] | None = None,
) -> bool:
    """Whether the extract entry ``key`` can be read: its file and, for a pair file, its
    two side entries (and the model stores when it reads activations or maps from them).
    ``seen`` memoizes the side and store checks (each is shared by a model's pairs)."""
    meta = cache.array_meta("extract", key, verify, repair, inputs)
    if meta is None:
        return False
    seen = {} if seen is None else seen
    sides = zip(meta.get("sides", ()), meta.get("stores", ()), strict=True)
    checks: list[tuple[str, str, str | None]] = [("side", k, s) for k, s in sides]
    if meta.get("activations") or meta.get("maps"):
        owners = meta.get("model_keys") or [None, None]
        checks += [("represent", s, m) for s, m in zip(meta["stores"], owners, strict=True)]
    for stage, k, owner in checks:
        memo = f"{stage}/{k}"
        if memo not in seen:
            full = verify and stage == "side"  # a store is hashed by the plan when it runs
            seen[memo] = cache.has_arrays(stage, k, full, repair, [owner] if owner else None)
        if not seen[memo]:
            return False
    return True


def read_extract(
    cache: Cache, key: str, inputs: list[str] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """``(arrays, meta)`` of the extract entry ``key`` in the layout the align and score
    stages read (a pair file assembled with its side entries; a layer-matrix file as it
    is), every part verified against its key; ``None`` if a part is missing or corrupt."""
    from simbench.numerics.blocks import BlockMoments
    from simbench.runner.stages import moments_to_arrays

    got = cache.get_arrays("extract", key, inputs)
    if got is None:
        return None
    arrays, meta = got
    if "sides" not in meta:
        return arrays, meta
    a, b = (read_side(cache, k, s) for k, s in zip(meta["sides"], meta["stores"], strict=True))
    if a is None or b is None:
        return None
    out: dict[str, np.ndarray] = {"uncertainty": arrays["uncertainty"]}
    for prefix in (p for p in _PREFIX.values() if f"{p}_sxy" in arrays):
        blocks = assemble(prefix, _part(prefix, a), _part(prefix, b), _part(prefix, arrays))
        out.update(blocks)
        out.update(moments_to_arrays(prefix, BlockMoments.from_arrays(prefix, blocks).total()))
    out["w_a"], out["w_b"] = a["w"], b["w"]
    out["init_var"] = np.array([float(a["init_var"]), float(b["init_var"])])
    if meta.get("activations") or meta.get("maps"):
        from simbench.runner.represent import ModelStore

        owners = meta.get("model_keys") or [None, None]
        layer = meta["layer"]
        for side, store_key, owner in zip("ab", meta["stores"], owners, strict=True):
            try:
                store = ModelStore.open(cache, store_key, [owner] if owner else None)
            except FileNotFoundError:
                return None
            if meta.get("activations"):
                out[f"act_{side}"] = np.asarray(store.samples(layer), dtype=np.float64)
            if meta.get("maps"):
                out[f"map_{side}"] = np.asarray(store.maps(layer), dtype=np.float64)
    return out, meta

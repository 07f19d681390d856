"""Per-model extraction (issue #11): one forward pass per model into a memory-mapped store
(:mod:`simbench.runner.represent`), pair statistics from two stores.

The tiny runner suite's models (tests/test_runner.py) are run with a float32 forward (the
default) and a float64 one: the float64 store gives the pair-wise float64 extraction's
statistics to 1e-10, the float32 one moves the scores by less than :data:`FLOAT32_ATOL`.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from simbench.runner.cache import Cache, CacheCorruptionWarning
from simbench.runner.driver import run_suite
from simbench.runner.pair_stats import read_extract
from tests.test_runner import (
    TINY_MODELS,
    computed,
    copy_run,
    shared_models,
    without_timing,
    write_suite,
)

#: the float32 forward's largest change of a score against the float64 forward on these
#: models (measured: 4.5e-7 on cka, bures_cosine and procrustes_distance, pooled matrix
#: cells included; README: Per-model extraction)
FLOAT32_ATOL = 1e-5

SUITE = (
    """\
name: rep
output: out
seed: 0
"""
    + TINY_MODELS
    + """\
probe: {images: 64, batch_size: 24, DTYPE}
pairs:
  - {all: true}
alignments: [procrustes]
metrics: [cka, bures_cosine, procrustes_distance]
layer_matrix: true
executor: {name: local, params: {workers: 1}}
"""
)
N_MODELS, N_PAIRS = 3, 3


def _run(tmp_path_factory, dtype: str):
    folder = tmp_path_factory.mktemp(f"rep{dtype}")
    text = SUITE.replace("DTYPE", f"dtype: {dtype}")
    path = write_suite(folder, text, models=shared_models(tmp_path_factory))
    summary = run_suite(path, echo=None, report=False)
    assert summary.ok
    return types.SimpleNamespace(folder=folder, suite=path, summary=summary)


@pytest.fixture(scope="module")
def f32(tmp_path_factory):
    return _run(tmp_path_factory, "float32")


@pytest.fixture(scope="module")
def f64(tmp_path_factory):
    return _run(tmp_path_factory, "float64")


def _store(run, ref: str):
    from simbench.runner.represent import ModelStore

    plan = run.summary.plan
    m = plan.models[ref]
    return ModelStore.open(plan.cache, m.represent_key, [m.key]), m


# ----------------------------------------------------------------------------- stores


def test_one_store_per_model_and_pairs_without_a_forward_pass(f32):
    s = f32.summary
    assert s.represent.computed == N_MODELS and s.represent.jobs == N_MODELS
    assert len(s.schedule.extract) == N_PAIRS
    assert all(j.store_a and j.store_b for j in s.schedule.extract)
    stores = list((s.plan.cache.root / "represent").rglob("*.npz"))
    assert len(stores) == N_MODELS


def test_pair_jobs_load_no_model(f32, tmp_path, monkeypatch):
    """The pair stage reads stores only: with every store cached, re-extracting every pair
    loads no checkpoint."""
    import simbench.train.checkpoint as ckpt

    path = copy_run(f32.folder, tmp_path / "again")
    calls = []
    real = ckpt.load_model
    monkeypatch.setattr(ckpt, "load_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    cache = Cache(tmp_path / "again" / "out" / "cache")
    for pair in f32.summary.plan.pairs:
        for key in pair.extract.values():
            cache.discard("extract", key)
    for c in f32.summary.plan.cells:
        cache.discard("score", c.score.key)
    run = run_suite(path, echo=None, report=False)
    assert run.represent.computed == 0 and computed(run)["extract"] == 27
    assert calls == []


def test_store_contract_logits_labels_samples(f32):
    """COORD §2: logits (n, K) float32 equal to the model's own float32 forward, the probe
    labels, channel samples (n·P, C) at the positions of simbench.extract.channel_samples,
    memory-mapped float32 on disk."""
    from simbench.extract import LayerTaps, channel_samples, image_batches
    from simbench.runner.stages import probe_data
    from simbench.train.checkpoint import load_model

    plan = f32.summary.plan
    store, m = _store(f32, "vgg@0")
    images, labels = probe_data(plan.probe)
    assert store.layers == m.layers and store.images == 64 == len(images)
    np.testing.assert_array_equal(store.labels(), labels)
    net, arch, meta = load_model(m.path)
    spec = {s.name: s for s in arch.layers(net)}["conv3"]
    norm = meta["normalization"]
    logits, samples, samples_in = [], [], []
    with torch.no_grad(), LayerTaps(net, [spec], "output") as taps:
        with LayerTaps(net, [spec], "input") as taps_in:
            for i, x in enumerate(image_batches(images, norm["mean"], norm["std"], 24)):
                logits.append(net(x).numpy())
                samples.append(channel_samples(taps.values["conv3"], 16, 0, i).numpy())
                samples_in.append(channel_samples(taps_in.values["conv3"], 16, 0, i).numpy())
    assert store.logits().dtype == np.float32 and store.logits().shape == (64, 10)
    np.testing.assert_allclose(store.logits(), np.concatenate(logits), rtol=1e-5, atol=1e-6)
    got = store.samples("conv3")
    assert isinstance(got, np.memmap) and got.dtype == np.float32
    assert got.shape == (64 * 16, 16) and store.shape("conv3") == (16, 8, 8)
    np.testing.assert_allclose(got, np.concatenate(samples), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        store.samples("conv3", "input"), np.concatenate(samples_in), rtol=1e-5, atol=1e-6
    )
    assert store.pooled("conv3").shape == (64, 16)
    np.testing.assert_array_equal(store.weight("conv3"), spec.weight(net).double().numpy())
    assert store.init_var("conv3") == spec.init_variance
    with pytest.raises(ValueError, match="no flattened outputs"):
        store.flat("conv3")
    with pytest.raises(ValueError, match="not in this store"):
        store.samples("nope")


def test_paired_positions_are_shared_between_models(f32):
    """Two models whose layers have equal spatial sizes sample the same positions: the
    samples of one model's images at conv1's input (the images themselves) are equal."""
    a, _ = _store(f32, "vgg@0")
    b, _ = _store(f32, "rnd@0")
    # both models were trained on the embedded set: same normalisation, same pixels
    np.testing.assert_array_equal(a.samples("conv1", "input"), b.samples("conv1", "input"))


def test_each_models_side_terms_are_computed_once_and_pair_files_hold_cross_terms(f32):
    """Many-model scoring: a model's per-block side moments and weights are one side entry
    per (model, layer), read by each of its pairs; a pair file holds its cross terms."""
    plan = f32.summary.plan
    cache = plan.cache
    wanted = {(m.represent_key, n) for p in plan.pairs for n in p.layers for m in (p.a, p.b)}
    assert len(list((cache.root / "side").rglob("*.npz"))) == len(wanted) == N_MODELS * 9
    for pair in plan.pairs:
        for key in pair.extract.values():
            raw, meta = cache.get_arrays("extract", key)
            assert meta["stores"] == [pair.a.represent_key, pair.b.represent_key]
            assert sorted(raw) == sorted(
                [f"{p}_{k}" for p in ("in", "out") for k in ("sxy", "meta")]
                + ["out_null_sxy", "uncertainty"]
            )
            side_a = cache.get_arrays("side", meta["sides"][0], [pair.a.represent_key])[0]
            np.testing.assert_array_equal(side_a["w"], read_extract(cache, key)[0]["w_a"])


def test_a_lost_side_entry_is_recomputed_when_a_score_needs_it(f32, tmp_path):
    """A pair file whose side entry is gone is incomplete: a run needing it recomputes the
    side and that pair file; the pair's scores come back the same."""
    path = copy_run(f32.folder, tmp_path / "side")
    plan = f32.summary.plan
    cache = Cache(tmp_path / "side" / "out" / "cache")
    key = plan.pairs[0].extract["conv2"]
    side = cache.get_arrays("extract", key)[1]["sides"][0]
    cache.discard("side", side)
    assert read_extract(cache, key) is None
    cells = [c for c in plan.cells if c.score.extract_key == key]
    for c in cells:
        cache.discard("score", c.score.key)
    run = run_suite(path, echo=None, report=False)
    assert computed(run) == {"train": 0, "extract": 1, "align": 0, "score": len(cells)}
    assert cache.has_arrays("side", side)
    pd.testing.assert_frame_equal(without_timing(run.results), without_timing(f32.summary.results))


def test_input_moments_only_for_weight_metrics(f32):
    """The layers' input moments serve the alignments of weight metrics: a suite of
    representation metrics alone accumulates the outputs only."""
    from simbench.runner.graph import build_plan
    from simbench.suite import load_suite

    assert f32.summary.plan.options.sites == ("input", "output")
    text = f32.suite.read_text().replace("metrics: [cka, bures_cosine, procrustes_distance]",
                                         "metrics: [cka]")  # fmt: skip
    f32.suite.with_name("rep_only.yaml").write_text(text)
    plan = build_plan(load_suite(f32.suite.with_name("rep_only.yaml")))
    assert plan.options.sites == ("output",)
    assert plan.options.key_dict()["sites"] == ["output"]


# ----------------------------------------------------------------------------- values


def test_float64_forward_gives_the_pairwise_float64_statistics(f64):
    """probe.dtype: float64 reproduces the pair-wise float64 extraction (both models in one
    pass, simbench.extract.stream_moments_at) to 1e-10, and keeps its cache keys."""
    from simbench.compare import paired_probe_batches
    from simbench.extract import pair_layers, stream_moments_at
    from simbench.runner.stages import ExtractOptions, moments_from_arrays, probe_images
    from simbench.train.checkpoint import load_model

    assert "forward" not in ExtractOptions(forward="float64").key_dict()
    assert ExtractOptions().key_dict()["forward"] == "float32"
    plan = f64.summary.plan
    pair = plan.pairs[0]
    net_a, arch_a, meta_a = load_model(pair.a.path)
    net_b, arch_b, meta_b = load_model(pair.b.path)
    pairs = pair_layers(arch_a.layers(net_a), arch_b.layers(net_b))
    batches = paired_probe_batches(
        probe_images(plan.probe), meta_a["normalization"], meta_b["normalization"], 24
    )
    ref = stream_moments_at(
        net_a.double(),
        net_b.double(),
        pairs,
        ((a.double(), b.double()) for a, b in batches),
        positions=16,
        seed=0,
    )
    for layer, key in pair.extract.items():
        arrays, _ = read_extract(plan.cache, key)
        for site, prefix in (("input", "in"), ("output", "out")):
            got, want = moments_from_arrays(prefix, arrays), ref[site][layer]
            assert got.n == want.n
            for f in ("mean_x", "mean_y", "sxx", "syy", "sxy"):
                w = getattr(want, f)
                np.testing.assert_allclose(
                    getattr(got, f), w, rtol=0, atol=1e-10 * (1 + abs(w).max())
                )


def test_float32_forward_changes_scores_by_less_than_the_documented_tolerance(f32, f64):
    keys = ["model_a", "model_b", "layer_a", "layer_b", "features", "alignment", "metric"]
    keys = [k for k in keys if k in f32.summary.results.columns]
    a = f32.summary.results.set_index(keys).sort_index()
    b = f64.summary.results.set_index(keys).sort_index()
    assert a.index.equals(b.index) and len(a) > 500
    assert (a.value.isna() == b.value.isna()).all()
    diff = (a.value - b.value).abs().dropna()
    assert diff.max() < FLOAT32_ATOL
    assert diff.max() > 0  # the forward dtype is real: the values move
    # the scores' own uncertainty is four orders of magnitude larger
    assert (diff < 1e-3 * a.stderr.loc[diff.index].fillna(np.inf)).mean() > 0.99


# ----------------------------------------------------------------------------- resume


def test_an_interrupted_run_recomputes_only_the_missing_stores_and_pair_files(f32, tmp_path):
    """A run killed during extraction leaves some stores and pair files (each written
    atomically) and temporary parts; the next run computes exactly what is missing."""
    path = copy_run(f32.folder, tmp_path / "killed")
    plan = f32.summary.plan
    cache = Cache(tmp_path / "killed" / "out" / "cache")
    lost = plan.models["rnd@0"]
    cache.discard("represent", lost.represent_key)
    pair = plan.pairs[1]
    assert pair.b.ref == "rnd@0"
    gone = list(pair.extract.values())[:4]
    for key in gone:
        cache.discard("extract", key)
    cells = [c for c in plan.cells if c.score.extract_key in gone]
    for c in cells:
        cache.discard("score", c.score.key)
    # a part file of the interrupted store write (its writer's pid is dead)
    part = cache.path("represent", lost.represent_key, "npz").parent
    stale = part / f".{lost.represent_key}.00000000-999999.0123456789ab.tmp"
    stale.write_bytes(b"\x93NUMPY partial")
    run = run_suite(path, echo=None, report=False)
    assert run.represent.computed == 1 and run.represent.cached == N_MODELS - 1
    # (the alignments of the lost pair files are cached: their keys are the files' keys)
    assert computed(run) == {"train": 0, "extract": 4, "align": 0, "score": len(cells)}
    pd.testing.assert_frame_equal(without_timing(run.results), without_timing(f32.summary.results))


def test_a_corrupt_store_is_detected_and_recomputed(f32, tmp_path):
    path = copy_run(f32.folder, tmp_path / "corrupt")
    plan = f32.summary.plan
    cache = Cache(tmp_path / "corrupt" / "out" / "cache")
    m = plan.models["vgg@1"]
    p = cache.path("represent", m.represent_key, "npz")
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    key = plan.pairs[0].extract["conv2"]
    cache.discard("extract", key)
    for c in plan.cells:
        if c.score.extract_key == key:
            cache.discard("score", c.score.key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_suite(path, echo=None, report=False)
    assert any(str(p) in str(w.message) for w in caught if w.category is CacheCorruptionWarning)
    assert run.represent.computed == 1 and computed(run)["extract"] == 1
    pd.testing.assert_frame_equal(without_timing(run.results), without_timing(f32.summary.results))


# ----------------------------------------------------------------------------- threads


def test_threads_from_the_cli_or_the_suite(f32, tmp_path, capsys):
    from simbench.cli import main

    text = f32.suite.read_text().replace("executor:", "run: {threads: 2}\nexecutor:")
    path = write_suite(tmp_path / "threads", text)
    sched = run_suite(path, dry_run=True, echo=None).schedule
    jobs = [*sched.train, *sched.represent, *sched.extract, *sched.align, *sched.score]
    assert jobs and {j.threads for j in jobs} == {2}
    sched = run_suite(path, dry_run=True, echo=None, threads=1).schedule
    assert {j.threads for j in [*sched.train, *sched.represent, *sched.score]} == {1}
    assert main(["run", str(path), "--dry-run", "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- cache


def test_memory_mapped_arrays_equal_the_loaded_ones(tmp_path):
    cache = Cache(tmp_path)
    arrays = {
        "a/x": np.arange(12.0).reshape(3, 4),
        "s": np.array(2.5),
        "e": np.zeros((0, 3), np.float32),
        "f": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
    }
    cache.put_arrays("st", "k1", arrays, {"m": 1}, ["in"])
    got, meta = cache.open_arrays("st", "k1", ["in"])
    assert meta == {"m": 1} and isinstance(got["a/x"], np.memmap)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].dtype == v.dtype
    # streamed from .npy files: the same entry
    files = {}
    for k, v in arrays.items():
        files[k] = tmp_path / f"{k.replace('/', '_')}.npy"
        np.save(files[k], v)
    cache.put_array_files("st", "k2", files, {"m": 2}, ["in"])
    loaded, _ = cache.get_arrays("st", "k2", ["in"])
    for k, v in arrays.items():
        np.testing.assert_array_equal(loaded[k], v)
    # tampering is caught before mapping
    p = cache.path("st", "k2", "npz")
    data = bytearray(p.read_bytes())
    data[-200] ^= 1
    p.write_bytes(bytes(data))
    with pytest.warns(CacheCorruptionWarning):
        assert cache.open_arrays("st", "k2") is None
    assert not p.exists()


@pytest.mark.parametrize("budget", [0, 1 << 20])
def test_store_writer_in_memory_or_through_memory_mapped_parts(tmp_path, budget):
    """A store larger than the memory budget is written batch by batch into .npy parts
    (removed afterwards); either way the entry holds the same arrays."""
    from simbench.runner.represent import _Writer

    cache = Cache(tmp_path)
    g = np.random.default_rng(0)
    full = g.standard_normal((10 * 3, 4)).astype(np.float32)  # 10 images, 3 rows each
    w = _Writer(cache, "k" * 24, 10, budget=budget)
    for start, stop in ((0, 4), (4, 8), (8, 10)):
        w.write("out/x", full[start * 3 : stop * 3], stop - start, start)
    with pytest.raises(ValueError, match="rows per image"):
        w.write("out/x", full[:5], 1, 0)
    w.put(cache, "k" * 24, {"labels": np.arange(10)}, meta={"m": 1}, inputs=["in"])
    w.cleanup()
    got, meta = cache.open_arrays("represent", "k" * 24, ["in"])
    np.testing.assert_array_equal(got["out/x"], full)
    np.testing.assert_array_equal(got["labels"], np.arange(10))
    assert meta == {"m": 1}
    left = [p.name for p in cache.path("represent", "k" * 24, "npz").parent.iterdir()]
    assert sorted(left) == sorted(["k" * 24 + ".npz", "k" * 24 + ".npz.json"]), left

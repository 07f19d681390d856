"""The runner (issue #4): job graph, cache, results table, resume after SIGKILL, --force.

One tiny suite (VGG width 1/16, one epoch on 256 embedded images, two seeds and a
random-label model; 64 probe images; cka, bures_cosine, procrustes_distance; identity
and procrustes) is run cold once per module (training included); every other test
works on a copy of that run's folder, so only what a test changes is recomputed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simbench
from simbench.runner.cache import Cache, CacheCorruptionWarning, make_key
from simbench.runner.driver import run_suite
from simbench.runner.results import COLUMNS, KEY_COLUMNS
from simbench.suite import load_suite

#: the tiny suite's models (shared with the other runner-level test modules)
TINY_MODELS = """\
training: {epochs: 1, max_train_images: 256, batch_size: 64}
models:
  - id: vgg
    architecture: {name: vgg, params: {width: 0.0625}}
    dataset: embedded
    seeds: [0, 1]
  - id: rnd
    architecture: {name: vgg, params: {width: 0.0625}}
    dataset: {name: random_labels, params: {base: embedded, seed: 0}}
"""
TINY = (
    """\
name: tiny
output: out
seed: 0
"""
    + TINY_MODELS
    + """\
probe: {images: 64, batch_size: 32}
pairs:
  - {all: true}
alignments: [identity, procrustes]
metrics: [cka, bures_cosine, procrustes_distance]
executor: {name: local, params: {workers: 1}}
"""
)
PAIRS = [("vgg@0", "vgg@1"), ("vgg@0", "rnd@0"), ("vgg@1", "rnd@0")]
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8", "fc"]
#: output channels of each layer of the width-1/16 VGG-11
OUT_WIDTH = dict(zip(LAYERS, [4, 8, 16, 16, 32, 32, 32, 32, 10], strict=True))
N_CELLS = len(PAIRS) * len(LAYERS) * (2 + 2)  # cka, procrustes_distance; bures_cosine x 2
SHARED = "simbench-runner-models"
#: the float32 forward pass (probe.dtype, the default) against float64 forward passes
FLOAT32_RTOL = 1e-5


# ----------------------------------------------------------------------------- helpers


def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained models of the tiny suite (``cache/models`` layout), shared by the session's
    test modules: the cold run below publishes its own; otherwise they are trained here."""
    root = tmp_path_factory.getbasetemp() / SHARED
    if not (root / "DONE").exists():
        from simbench.suite import parse_suite
        from simbench.train.trainer import train

        suite = parse_suite(TINY, base_dir=root)
        for spec in suite.model_specs().values():
            train(spec, root / "models", progress=False)
        (root / "DONE").touch()
    return root / "models"


def write_suite(folder: Path, text: str = TINY, models: Path | None = None) -> Path:
    """``folder/suite.yaml``; with ``models``, a copy of trained models in its cache."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    if models is not None:
        shutil.copytree(models, folder / "out" / "cache" / "models")
    return path


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a whole run folder (suite file, results, cache); returns its suite path."""
    shutil.copytree(src, dst)
    return dst / "suite.yaml"


def computed(summary) -> dict[str, int]:
    return {stage: st.computed for stage, st in summary.stats.items()}


def without_timing(df: pd.DataFrame) -> pd.DataFrame:
    """The table less what describes the run rather than the results: wall times, and the
    git SHA (other commits may land in the repository between two runs of a test)."""
    return df.drop(columns=["wall_time_s", "git_sha"]).reset_index(drop=True)


def same_provenance(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["git_sha"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """The tiny suite run from nothing (training included)."""
    folder = tmp_path_factory.mktemp("cold")
    path = write_suite(folder)
    t0 = time.perf_counter()
    summary = run_suite(path, echo=None)
    seconds = time.perf_counter() - t0
    shared = tmp_path_factory.getbasetemp() / SHARED
    if not (shared / "DONE").exists():  # publish the trained models for other modules
        shutil.copytree(folder / "out" / "cache" / "models", shared / "models")
        (shared / "DONE").touch()
    return types.SimpleNamespace(folder=folder, suite=path, summary=summary, seconds=seconds)


# ----------------------------------------------------------------------------- cache unit


def test_cache_json_roundtrip_and_tamper_detection(tmp_path):
    cache = Cache(tmp_path)
    key = make_key("x", 1)
    rec = {"value": 0.25, "stderr": float("nan"), "error": "", "nested": {"a": [1, 2]}}
    cache.put_json("score", key, rec)
    assert cache.get_json("score", key) == {**rec, "stderr": None}  # strict JSON: NaN -> null
    path = cache.path("score", key, "json")
    outer = json.loads(path.read_text())
    outer["record"]["value"] = 0.5  # valid JSON, wrong content
    path.write_text(json.dumps(outer))
    with pytest.warns(CacheCorruptionWarning, match="corrupt"):
        assert cache.get_json("score", key) is None
    assert not path.exists()  # discarded: the next run recomputes it


def test_cache_arrays_roundtrip_truncation_and_missing_sidecar(tmp_path):
    cache = Cache(tmp_path)
    arrays = {"a": np.arange(12.0).reshape(3, 4), "n": np.array(7)}
    cache.put_arrays("extract", "k1", arrays, {"layer": "conv1"})
    got, meta = cache.get_arrays("extract", "k1")
    np.testing.assert_array_equal(got["a"], arrays["a"])
    assert int(got["n"]) == 7 and meta == {"layer": "conv1"}
    path = cache.path("extract", "k1", "npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # a size check alone (verify=False) already sees the truncation; nothing is repaired
    assert not cache.has_arrays("extract", "k1", verify=False, repair=False)
    assert path.exists()
    with pytest.warns(CacheCorruptionWarning, match="SHA-256"):
        assert cache.get_arrays("extract", "k1") is None
    assert not path.exists()
    # same size, one byte flipped: only the digest sees it
    cache.put_arrays("extract", "k2", arrays)
    p2 = cache.path("extract", "k2", "npz")
    data = bytearray(p2.read_bytes())
    data[-10] ^= 0xFF
    p2.write_bytes(bytes(data))
    assert cache.has_arrays("extract", "k2", verify=False)
    with pytest.warns(CacheCorruptionWarning):
        assert not cache.has_arrays("extract", "k2", verify=True)
    # data without its sidecar (writer killed between the two files): incomplete
    cache.put_arrays("extract", "k3", arrays)
    p3 = cache.path("extract", "k3", "npz")
    p3.with_name(p3.name + ".json").unlink()
    assert cache.get_arrays("extract", "k3") is None


def test_make_key_depends_on_content_not_key_order():
    assert make_key({"a": 1, "b": [1, 2]}) == make_key({"b": [1, 2], "a": 1})
    assert make_key({"a": 1}) != make_key({"a": 2})
    assert make_key("x", 1) != make_key("x", "1")
    assert re.fullmatch("[0-9a-f]{24}", make_key("anything"))


# ----------------------------------------------------------------------------- cold run


def test_cold_run_rows_columns_and_files(cold):
    s = cold.summary
    assert computed(s) == {"train": 3, "extract": 27, "align": 54, "score": N_CELLS + 1}
    assert all(st.cached == 0 and st.failed == 0 for st in s.stats.values())
    df = s.results
    assert list(df.columns) == list(COLUMNS)
    expected = set()
    for a, b in PAIRS:
        for layer in LAYERS:
            expected |= {
                (a, b, layer, layer, "positions", None, None, "cka", None, 0),
                (a, b, layer, layer, "positions", None, None, "procrustes_distance", None, 0),
                (a, b, layer, layer, None, "identity", None, "bures_cosine", None, 0),
                (a, b, layer, layer, None, "procrustes", None, "bures_cosine", None, 0),
            }
    keys = [
        tuple(None if v is None or v != v else v for v in r)  # NaN (a null string) -> None
        for r in df[list(KEY_COLUMNS)].itertuples(index=False)
    ]
    assert len(keys) == len(set(keys)) == N_CELLS
    assert set(keys) == expected
    # rows in plan order: pairs as listed, layers in depth order
    assert list(dict.fromkeys(zip(df.model_a, df.model_b, strict=True))) == PAIRS
    assert list(dict.fromkeys(df.layer_a)) == LAYERS
    rel = {(a, b): r for a, b, r in zip(df.model_a, df.model_b, df.relation, strict=True)}
    assert rel == {PAIRS[0]: "seed", PAIRS[1]: "labels", PAIRS[2]: "labels"}
    by_metric = df.groupby("metric")
    assert by_metric.higher_is_better.unique().to_dict() == {
        "bures_cosine": [True],
        "cka": [True],
        "procrustes_distance": [False],
    }
    assert set(df[df.metric == "bures_cosine"].consumes) == {"weights"}
    assert set(df[df.metric == "cka"].consumes) == {"representations"}
    assert (df.schema_version == 3).all() and (df.suite == "tiny").all()
    # depth: the index of the layer in the architecture's layer order
    assert (df.depth_a == df.layer_a.map(LAYERS.index)).all() and (df.depth_a == df.depth_b).all()
    assert (df.simbench_version == simbench.__version__).all()
    assert (df.epoch_a == 1).all() and (df.epoch_b == 1).all()
    assert set(zip(df.seed_a, df.seed_b, strict=True)) == {(0, 1), (0, 0), (1, 0)}
    assert set(df.dataset_a) == {"embedded"}
    assert set(df.dataset_b) == {"embedded", "random_labels"}
    assert (df.arch_a == "vgg").all()
    pv = {json.dumps(json.loads(v), sort_keys=True) for v in df.plugin_versions}
    assert all(json.loads(v)["simbench"] == simbench.__version__ for v in pv)
    # representation metrics never fail here; every failed cell says why
    ok = df[df.metric != "bures_cosine"]
    assert ok.error.isna().all() and np.isfinite(ok.value).all()
    # every score has its uncertainty, every representation score its chance level
    # (MATH.md: Uncertainty and chance of one score)
    good = df[df.error.isna()]
    for col in ("stderr", "ci_low", "ci_high"):
        assert np.isfinite(good[col]).all(), col
    assert ((good.ci_low <= good.value) & (good.value <= good.ci_high)).all()
    rep = good[good.consumes == "representations"]
    for col in ("null_mean", "null_sd", "z"):
        assert np.isfinite(rep[col]).all(), col
    np.testing.assert_allclose(
        rep.z, (rep.value - rep.null_mean) / np.hypot(rep.null_sd, rep.stderr), rtol=1e-9
    )
    bad = df[df.error.notna()]
    assert bad.value.isna().all()
    assert bad.error.str.contains("shrinkage").all()  # GM shrinkage left nothing (documented)
    assert df.config_hash.is_unique
    # the files
    out = cold.folder / "out"
    for name in ("results.parquet", "results.csv", "results.meta.json", "invariance_checks.csv"):
        assert (out / name).is_file(), name
    # the report of simbench.report, called at the end of the run
    assert s.report["report_html"] == out / "report.html"
    assert s.report["leaderboard_md"] == out / "leaderboard.md"
    for name in ("report.md", "report.html", "leaderboard.md"):
        assert (out / name).is_file(), name
    assert "cka" in (out / "leaderboard.md").read_text()
    pq = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(pq, df, check_dtype=False)
    csv = pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])
    assert len(csv) == N_CELLS
    np.testing.assert_allclose(csv.value.to_numpy(float), df.value.to_numpy(float), rtol=1e-15)
    meta = json.loads((out / "results.meta.json").read_text())
    assert meta["schema_version"] == 3 and meta["rows"] == N_CELLS
    assert "3" in meta["schema_changes"]
    assert meta["simbench_version"] == simbench.__version__
    assert meta["git_sha"] == "unknown" or re.fullmatch("[0-9a-f]{40}", meta["git_sha"])
    assert meta["config_hash"] == load_suite(cold.suite).config_hash()
    assert meta["plugin_versions"]["simbench"] == simbench.__version__
    assert meta["layers"] == {"vgg": LAYERS}
    datetime.fromisoformat(meta["timestamp"])
    checks = pd.read_csv(out / "invariance_checks.csv")
    assert set(checks.metric) == {"cka", "bures_cosine", "procrustes_distance"}
    assert len(checks) == 3 * len(simbench.Invariance)
    claimed = checks[(checks.metric == "cka") & checks.claimed]
    assert claimed.passed.all() and len(claimed) == 4  # linear CKA: all but invertible linear


def test_values_agree_with_compare_models_and_a_direct_formula(cold):
    """The runner's cells equal simbench.compare.compare_models (issue #3's path) on the
    same probe, and linear CKA equals ||YcᵀXc||²_F / (||XcᵀXc||_F ||YcᵀYc||_F) on
    activations collected independently (float64 forward passes there; the suite's float32
    forward moves the scores by less than FLOAT32_RTOL: tests/test_represent.py)."""
    from simbench.compare import compare_models, paired_probe_batches
    from simbench.extract import collect_activations, image_batches
    from simbench.runner.stages import ProbeConfig, probe_images
    from simbench.train.checkpoint import load_model

    df = cold.summary.results
    models = cold.folder / "out" / "cache" / "models"
    plan = cold.summary.plan
    net_a, arch_a, meta_a = load_model(plan.models["vgg@0"].path)
    net_b, arch_b, meta_b = load_model(plan.models["vgg@1"].path)
    assert plan.models["vgg@0"].path.is_relative_to(models)
    probe = ProbeConfig("embedded", {}, "test", 64, 0, 16, 32)
    images = probe_images(probe)
    seed_rows = df[(df.model_a == "vgg@0") & (df.model_b == "vgg@1")]
    for alignment in ("identity", "procrustes"):
        batches = paired_probe_batches(
            images, meta_a["normalization"], meta_b["normalization"], batch_size=32
        )
        table, _ = compare_models(
            net_a.double(),
            arch_a,
            net_b.double(),
            arch_b,
            ((a.double(), b.double()) for a, b in batches),
            alignment=alignment,
            metrics=("bures_cosine", "cka", "procrustes_distance"),
            positions=16,
            seed=0,
        )
        assert list(table.layer) == LAYERS
        got = seed_rows[seed_rows.alignment == alignment].set_index("layer_a").value
        np.testing.assert_allclose(
            got[LAYERS], table.bures_cosine, rtol=FLOAT32_RTOL, equal_nan=True
        )
        for metric in ("cka", "procrustes_distance"):
            rep = seed_rows[(seed_rows.metric == metric)].set_index("layer_a").value
            np.testing.assert_allclose(rep[LAYERS], table[metric], rtol=FLOAT32_RTOL)
    assert np.isfinite(seed_rows[seed_rows.metric == "bures_cosine"].value).sum() >= 2

    specs_a = arch_a.layers(net_a)
    specs_b = arch_b.layers(net_b)
    xa = collect_activations(
        net_a.double(),
        specs_a,
        (x.double() for x in image_batches(images, **_norm(meta_a), batch_size=32)),
        positions=16,
    )
    xb = collect_activations(
        net_b.double(),
        specs_b,
        (x.double() for x in image_batches(images, **_norm(meta_b), batch_size=32)),
        positions=16,
    )
    cka = seed_rows[seed_rows.metric == "cka"].set_index("layer_a").value
    for layer in LAYERS:
        X = xa[layer] - xa[layer].mean(0)
        Y = xb[layer] - xb[layer].mean(0)
        assert X.shape == (64 * min(16, X.shape[0] // 64), OUT_WIDTH[layer])
        direct = np.linalg.norm(Y.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))
        assert cka[layer] == pytest.approx(direct, rel=FLOAT32_RTOL)


def _norm(meta):
    return {"mean": meta["normalization"]["mean"], "std": meta["normalization"]["std"]}


def test_second_run_computes_nothing(cold):
    again = run_suite(cold.suite, echo=None, report=False)
    assert computed(again) == {"train": 0, "extract": 0, "align": 0, "score": 0}
    assert {k: st.cached for k, st in again.stats.items()} == {
        "train": 3,
        "extract": 27,
        "align": 54,
        "score": N_CELLS + 1,
    }
    # every cell read back from the cache: identical, wall times included
    pd.testing.assert_frame_equal(
        same_provenance(again.results), same_provenance(cold.summary.results)
    )


def test_run_prints_per_stage_counts(cold, capsys):
    from simbench.cli import main

    assert main(["run", str(cold.suite), "--no-report"]) == 0
    out = capsys.readouterr().out
    for stage, n in (("train", 3), ("extract", 27), ("align", 54), ("score", N_CELLS + 1)):
        assert f"{stage}: computed 0, cached {n}" in out


# ----------------------------------------------------------------------------- dry run


def test_dry_run_prints_the_plan_and_writes_nothing(cold, tmp_path, capsys):
    from simbench.cli import main

    path = write_suite(tmp_path / "fresh")
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "fresh" / "out").exists()  # no cache, no results
    rows = {m[0]: m[1:] for m in re.findall(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)}
    assert rows == {
        "train": ("3", "0", "3", "3"),
        "represent": ("3", "0", "3", "3"),  # one forward pass per model
        "extract": ("27", "0", "27", "3"),
        "align": ("54", "0", "54", "27"),
        "score": (str(N_CELLS + 1), "0", str(N_CELLS + 1), "28"),
    }
    assert "256x1 + 256x1 + 256x1" in out  # images to train x epochs
    assert "3 models x 64 images = 192" in out  # probe forward passes
    assert f"{N_CELLS + 1} cells" in out
    # on the finished run: everything cached, nothing touched
    before = sorted(p.stat().st_mtime_ns for p in (cold.folder / "out").rglob("*") if p.is_file())
    assert main(["run", str(cold.suite), "--dry-run", "--force", "align"]) == 0
    out = capsys.readouterr().out
    rows = {m[0]: m[1:] for m in re.findall(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)}
    assert rows["train"] == ("3", "3", "0", "0") and rows["extract"] == ("27", "27", "0", "0")
    assert rows["align"] == ("54", "0", "54", "27")
    assert rows["score"] == (str(N_CELLS + 1), str(N_CELLS + 1 - 54), "54", "27")
    after = sorted(p.stat().st_mtime_ns for p in (cold.folder / "out").rglob("*") if p.is_file())
    assert before == after


# ----------------------------------------------------------------------------- resume


def _score_files(cache: Path) -> list[Path]:
    root = cache / "score"
    if not root.is_dir():
        return []
    return [
        Path(d.path, f)
        for d in os.scandir(root)
        if d.is_dir()
        for f in os.listdir(d.path)
        if f.endswith(".json") and not f.startswith(".")
    ]


def test_sigkill_during_scoring_then_rerun_gives_the_identical_table(cold, tmp_path):
    path = write_suite(tmp_path / "kill", models=cold.folder / "out" / "cache" / "models")
    cache = tmp_path / "kill" / "out" / "cache"
    log = open(tmp_path / "kill.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "simbench.cli", "run", str(path), "--no-report"],
        cwd=tmp_path / "kill",
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    try:
        while len(_score_files(cache)) < 10:  # a few cells in: kill in the middle of scoring
            assert proc.poll() is None, (tmp_path / "kill.log").read_text()
            assert time.monotonic() < deadline, "no score file appeared"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    n_done = len(_score_files(cache))
    assert 0 < n_done < N_CELLS, n_done  # killed in the middle of scoring
    print(f"killed after {n_done} of {N_CELLS + 1} score outputs")
    assert not (tmp_path / "kill" / "out" / "results.parquet").exists()

    resumed = run_suite(path, echo=None, report=False)
    assert computed(resumed) == {
        "train": 0,
        "extract": 0,
        "align": 0,
        "score": N_CELLS + 1 - n_done,
    }
    assert resumed.stats["score"].cached == n_done
    pd.testing.assert_frame_equal(
        without_timing(resumed.results), without_timing(cold.summary.results)
    )


def test_corrupt_cache_files_are_detected_and_recomputed(cold, tmp_path):
    path = copy_run(cold.folder, tmp_path / "corrupt")
    plan = cold.summary.plan
    cache = Cache(tmp_path / "corrupt" / "out" / "cache")
    cells = {(c.pair.a.ref, c.pair.b.ref, c.layer_a, c.alignment, c.metric): c for c in plan.cells}
    truncated = cells[("vgg@0", "vgg@1", "conv3", None, "cka")].score
    p = cache.path("score", truncated.key, "json")
    p.write_bytes(p.read_bytes()[:20])
    # an extract file is only read when a cell needing it runs: damage one, drop a cell on it
    victim = cells[("vgg@1", "rnd@0", "conv5", "procrustes", "bures_cosine")].score
    e = cache.path("extract", victim.extract_key, "npz")
    e.write_bytes(e.read_bytes()[:-100])
    cache.path("score", victim.key, "json").unlink()
    # and the weights of one of its models (same size, flipped bytes), whose store is lost
    # (a pair file is made from the stores; the weights are read when a store is made):
    # trained again
    cache.discard("represent", plan.models["rnd@0"].represent_key)
    weights = tmp_path / "corrupt" / "out" / "cache" / "models"
    weights = weights / plan.models["rnd@0"].train_key / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(b ^ 0x55 for b in data[-64:])
    weights.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_suite(path, echo=None, report=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheCorruptionWarning)]
    assert any(str(p) in m for m in messages)
    assert any(str(e) in m for m in messages)
    assert any(str(weights) in m for m in messages)
    assert computed(again) == {"train": 1, "extract": 1, "align": 0, "score": 2}
    assert again.represent.computed == 1
    pd.testing.assert_frame_equal(
        without_timing(again.results), without_timing(cold.summary.results)
    )


def test_force_recomputes_the_stage_and_what_depends_on_it(cold, tmp_path):
    path = copy_run(cold.folder, tmp_path / "force")
    forced = run_suite(path, echo=None, report=False, force="score")
    assert computed(forced) == {"train": 0, "extract": 0, "align": 0, "score": N_CELLS + 1}
    pd.testing.assert_frame_equal(
        without_timing(forced.results), without_timing(cold.summary.results)
    )
    # alignments feed only the weight-metric cells (27 layer pairs x 2 alignments)
    forced = run_suite(path, echo=None, report=False, force="align")
    assert computed(forced) == {"train": 0, "extract": 0, "align": 54, "score": 54}
    forced = run_suite(path, echo=None, report=False, force="extract")
    assert computed(forced) == {"train": 0, "extract": 27, "align": 54, "score": N_CELLS + 1}
    assert forced.represent.computed == 3  # the model stores are part of the stage
    pd.testing.assert_frame_equal(
        without_timing(forced.results), without_timing(cold.summary.results)
    )


# ----------------------------------------------------------------------------- failures


class _Flaky(simbench.Metric):
    """Test metric: 0.5 on layers up to 8 channels wide, raises on wider ones."""

    name = "flaky"
    streaming = True

    def __init__(self) -> None:
        pass

    def _from_moments(self, m):
        if m.d_x > 8:
            raise RuntimeError(f"boom: {m.d_x} channels")
        return 0.5


def _flaky_registry():
    from simbench.hookspecs import hookimpl
    from simbench.registry import Registry

    mod = types.ModuleType("flaky_plugin")

    @hookimpl
    def simbench_register_metrics():
        return [_Flaky]

    mod.simbench_register_metrics = simbench_register_metrics
    return Registry(extra=[mod])


def test_a_raising_metric_fails_only_its_own_cells(cold, tmp_path, monkeypatch):
    path = copy_run(cold.folder, tmp_path / "flaky")
    text = path.read_text().replace(
        "metrics: [cka, bures_cosine, procrustes_distance]",
        "metrics: [cka, bures_cosine, procrustes_distance, flaky]",
    )
    path.write_text(text)
    reg = _flaky_registry()
    monkeypatch.setattr(simbench.registry, "default_registry", lambda: reg)
    suite = load_suite(path, registry=reg)
    run = run_suite(suite, echo=None, report=False)
    # only the new metric's cells (and the invariance checks, whose metric list changed)
    assert computed(run) == {"train": 0, "extract": 0, "align": 0, "score": 27 + 1}
    assert run.ok
    df = run.results
    flaky = df[df.metric == "flaky"]
    assert len(flaky) == 27
    for layer, rows in flaky.groupby("layer_a"):
        if OUT_WIDTH[layer] > 8:
            assert rows.value.isna().all()
            assert rows.error.str.startswith(
                f"RuntimeError: boom: {OUT_WIDTH[layer]} channels"
            ).all()
        else:
            assert (rows.value == 0.5).all() and rows.error.isna().all()
    others = df[df.metric != "flaky"]
    pd.testing.assert_frame_equal(same_provenance(others), same_provenance(cold.summary.results))
    checks = pd.read_csv(tmp_path / "flaky" / "out" / "invariance_checks.csv")
    assert set(checks.metric) == {"cka", "bures_cosine", "procrustes_distance", "flaky"}


class _FailingExtraction:
    """An executor (inline) whose extraction jobs die, as a node would."""

    def map(self, fn, items):
        from simbench.runner.stages import ExtractJob

        return [
            RuntimeError("node lost") if isinstance(job, ExtractJob) else fn(job) for job in items
        ]


def test_a_failed_job_fails_its_dependent_cells_for_this_run_only(cold, tmp_path):
    path = copy_run(cold.folder, tmp_path / "lost")
    plan = cold.summary.plan
    cache = Cache(tmp_path / "lost" / "out" / "cache")
    pair = plan.pairs[2]
    assert (pair.a.ref, pair.b.ref) == PAIRS[2]
    for key in pair.extract.values():
        cache.discard("extract", key)
    lost = [c for c in plan.cells if c.pair is pair]
    for c in lost:
        cache.discard("score", c.score.key)
    run = run_suite(path, echo=None, report=False, executor=_FailingExtraction())
    assert not run.ok
    assert run.stats["extract"].failed == 9 and run.stats["score"].failed == len(lost) == 36
    df = run.results
    mine = (df.model_a == pair.a.ref) & (df.model_b == pair.b.ref)
    assert df[mine].value.isna().all()
    assert df[mine].error.str.startswith("extraction failed: RuntimeError: node lost").all()
    pd.testing.assert_frame_equal(
        same_provenance(df[~mine]), same_provenance(cold.summary.results[~mine])
    )
    # nothing of the failure was cached: the next run computes exactly what is missing
    again = run_suite(path, echo=None, report=False)
    assert again.ok
    assert computed(again) == {"train": 0, "extract": 9, "align": 0, "score": 36}
    pd.testing.assert_frame_equal(
        without_timing(again.results), without_timing(cold.summary.results)
    )


def test_cli_bad_suite_exits_2_with_file_line_key(tmp_path, capsys):
    from simbench.cli import main

    path = write_suite(tmp_path, TINY.replace("metrics: [cka,", "metrics: [ckaa,"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(path))}:\d+: metrics\.0: .*'ckaa'", err)
    assert "cka" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

"""Cache guarantees (issue #13): a record is bound to its key and inputs.

Records, array files and checkpoints copied under another key are detected (a warning
naming both keys), discarded and recomputed, and the results equal the reference run.
The tiny suite of ``tests/test_runner.py`` is reused (its trained models are shared by
the session, so only extraction and scoring run here).
"""

from __future__ import annotations

import os
import shutil
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simbench
import simbench.registry
from simbench.runner.cache import Cache, CacheKeyMismatchWarning, make_key
from simbench.runner.driver import run_suite
from tests.test_runner import computed, copy_run, shared_models, without_timing, write_suite


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tiny suite run once with the session's trained models."""
    folder = tmp_path_factory.mktemp("guarantees")
    path = write_suite(folder, models=shared_models(tmp_path_factory))
    summary = run_suite(path, echo=None, report=False)
    return types.SimpleNamespace(folder=folder, suite=path, summary=summary)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)


def _mismatches(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CacheKeyMismatchWarning)]


# ----------------------------------------------------------------------------- unit


def test_json_record_under_another_key_or_inputs_is_refused(tmp_path):
    cache = Cache(tmp_path)
    k1, k2 = make_key("a"), make_key("b")
    cache.put_json("score", k1, {"value": 0.25}, inputs=["e1"])
    assert cache.get_json("score", k1, inputs=["e1"]) == {"value": 0.25}
    _copy(cache.path("score", k1, "json"), cache.path("score", k2, "json"))
    with pytest.warns(CacheKeyMismatchWarning, match=f"score/{k1}, not score/{k2}"):
        assert cache.get_json("score", k2) is None
    assert not cache.path("score", k2, "json").exists()
    # same key, other inputs (e.g. a record written by a buggy older planner)
    with pytest.warns(CacheKeyMismatchWarning, match=r"inputs \['e1'\], expected \['e2'\]"):
        assert cache.get_json("score", k1, inputs=["e2"]) is None
    # the stage is bound too
    cache.put_json("align", k1, {"error": "x"})
    _copy(cache.path("align", k1, "json"), cache.path("score", k1, "json"))
    with pytest.warns(CacheKeyMismatchWarning, match=f"align/{k1}, not score/{k1}"):
        assert cache.get_json("score", k1) is None


def test_array_file_under_another_key_is_refused(tmp_path):
    cache = Cache(tmp_path)
    k1, k2 = make_key("a"), make_key("b")
    x = np.arange(6.0).reshape(2, 3)
    cache.put_arrays("extract", k1, {"x": x}, {"m": 1}, inputs=["ma", "mb"])
    arrays, meta = cache.get_arrays("extract", k1, inputs=["ma", "mb"])
    assert list(arrays) == ["x"] and np.array_equal(arrays["x"], x) and meta == {"m": 1}
    # file and sidecar copied together: internally consistent, but not k2's
    for ext in ("npz", "npz.json"):
        _copy(cache.path("extract", k1, ext), cache.path("extract", k2, ext))
    with pytest.warns(CacheKeyMismatchWarning, match=f"extract/{k1}, not extract/{k2}"):
        assert not cache.has_arrays("extract", k2)
    assert not cache.path("extract", k2, "npz").exists()
    with pytest.warns(CacheKeyMismatchWarning, match="expected \\['ma', 'other'\\]"):
        assert cache.get_arrays("extract", k1, inputs=["ma", "other"]) is None
    with pytest.raises(ValueError, match="reserved"):
        cache.put_arrays("extract", k1, {"__key__": x})


def test_checkpoint_header_names_its_training_run(tmp_path):
    import torch
    from safetensors import safe_open

    from simbench.train.checkpoint import load_checkpoint, save_checkpoint

    path = save_checkpoint(
        tmp_path / "model.safetensors",
        {"w": torch.ones(2)},
        {"key": "abc", "kind": "model", "epoch": 3},
    )
    with safe_open(str(path), "pt") as f:
        header = f.metadata()
    assert header["simbench_key"] == "abc" and header["simbench_epoch"] == "3"
    _, meta = load_checkpoint(path)
    assert meta["key"] == "abc"


# ----------------------------------------------------------------------------- runner


def test_score_extract_and_checkpoint_copied_under_another_key(base, tmp_path):
    path = copy_run(base.folder, tmp_path / "swap")
    root = tmp_path / "swap" / "out" / "cache"
    cache = Cache(root)
    plan = base.summary.plan
    cells = {(c.pair.a.ref, c.pair.b.ref, c.layer_a, c.alignment, c.metric): c for c in plan.cells}
    # a score record copied over another cell's
    src = cells[("vgg@0", "vgg@1", "conv3", None, "cka")].score
    dst = cells[("vgg@0", "vgg@1", "conv4", None, "cka")].score
    _copy(cache.path("score", src.key, "json"), cache.path("score", dst.key, "json"))
    # an extract file (with its sidecar) copied over another layer's; a cell on it runs
    e_src = cells[("vgg@0", "rnd@0", "conv5", None, "cka")].score.extract_key
    victim = cells[("vgg@0", "rnd@0", "conv6", None, "cka")].score
    for ext in ("npz", "npz.json"):
        _copy(cache.path("extract", e_src, ext), cache.path("extract", victim.extract_key, ext))
    cache.discard("score", victim.key)
    # vgg@0's checkpoint (weights and sidecar) copied over vgg@1's, whose store is lost: the
    # store is made again (after training), then the pair's file
    cache.discard("represent", plan.models["vgg@1"].represent_key)
    models = root / "models"
    a, b = (models / plan.models[r].train_key for r in ("vgg@0", "vgg@1"))
    for name in ("model.safetensors", "model.json"):
        shutil.copy(a / name, b / name)
    needs_b = cells[("vgg@0", "vgg@1", "conv1", "procrustes", "bures_cosine")].score
    cache.discard("extract", needs_b.extract_key)
    cache.discard("score", needs_b.key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_suite(path, echo=None, report=False)
    found = _mismatches(caught)
    assert any(f"score/{src.key}, not score/{dst.key}" in m for m in found), found
    assert any(f"extract/{e_src}, not extract/{victim.extract_key}" in m for m in found), found
    assert any(str(b / "model.safetensors") in m and "vgg@1" in m for m in found), found
    assert computed(again) == {"train": 1, "extract": 2, "align": 0, "score": 3}
    pd.testing.assert_frame_equal(
        without_timing(again.results), without_timing(base.summary.results)
    )
    # the copies are gone: the next run computes nothing and warns about nothing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        third = run_suite(path, echo=None, report=False)
    assert not _mismatches(caught)
    assert computed(third) == {"train": 0, "extract": 0, "align": 0, "score": 0}
    assert Path(b / "model.json").read_text() != Path(a / "model.json").read_text()


# ----------------------------------------------------------------------------- temp files


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_abandoned_temp_files_are_removed(tmp_path):
    import os
    import time

    from simbench.io import _HOST, atomic_path, remove_stale_temps

    folder = tmp_path / "score" / "ab"
    folder.mkdir(parents=True)
    with atomic_path(folder / "x.json") as tmp:  # the name the writers use
        tmp.write_text("{}")
        assert tmp.name.startswith(f".x.json.{_HOST}-{os.getpid()}.")
        mine = tmp.name
    files = {
        "dead": f".a.json.{_HOST}-{_dead_pid()}.0123456789ab.tmp",
        "alive": mine,  # this process: a write in progress
        "other_host": ".b.npz.00000000-1.0123456789ab.tmp",  # another node, fresh
        "other_host_old": ".c.npz.00000000-1.0123456789ab.tmp",
        "old_format_old": ".d.json.12.0123456789ab.tmp",
        "not_a_temp": "e.json",
        "lock": ".f.json.lock",
    }
    for name in files.values():
        (folder / name).write_text("partial")
    old = time.time() - 2 * 3600
    for k in ("other_host_old", "old_format_old", "not_a_temp", "lock"):
        os.utime(folder / files[k], (old, old))
    assert remove_stale_temps(tmp_path) == 3
    left = {k for k, name in files.items() if (folder / name).exists()}
    assert left == {"alive", "other_host", "not_a_temp", "lock"}


def test_a_run_removes_the_temp_files_a_kill_left(base, tmp_path, capsys):
    path = copy_run(base.folder, tmp_path / "temps")
    from simbench.io import _HOST

    cache = tmp_path / "temps" / "out" / "cache"
    stale = [
        next((cache / "score").iterdir()) / f".k.json.{_HOST}-{_dead_pid()}.0123456789ab.tmp",
        cache / "models" / f".model.safetensors.{_HOST}-{_dead_pid()}.0123456789ab.tmp",
        tmp_path / "temps" / "out" / f".results.csv.{_HOST}-{_dead_pid()}.0123456789ab.tmp",
    ]
    for p in stale:
        p.write_bytes(b"half a file")
    run = run_suite(path, report=False)
    assert "removed 3 temporary files left by interrupted writes" in capsys.readouterr().out
    assert not any(p.exists() for p in stale)
    assert computed(run) == {"train": 0, "extract": 0, "align": 0, "score": 0}


# ----------------------------------------------------------------------------- locks


def _stage_counts(text: str) -> dict[str, tuple[int, int]]:
    import re

    return {
        m[1]: (int(m[2]), int(m[3]))
        for m in re.finditer(
            r"^(train|extract|align|score): computed (\d+), cached (\d+)", text, re.M
        )
    }


def test_two_concurrent_runs_compute_each_entry_once(base, tmp_path_factory, tmp_path):
    import subprocess
    import sys

    from tests.test_runner import N_CELLS, TINY

    shared = tmp_path / "shared-cache"
    shutil.copytree(shared_models(tmp_path_factory), shared / "models")
    rnd = base.summary.plan.models["rnd@0"].train_key
    shutil.rmtree(shared / "models" / rnd)  # one model to train, the rest to compute
    procs, logs = [], []
    for i in range(2):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        text = TINY.replace("output: out", f"output: out\ncache: {shared}")
        (folder / "suite.yaml").write_text(text)
        log = open(folder / "log.txt", "wb")
        logs.append(log)
        cmd = [sys.executable, "-m", "simbench.cli", "run", "suite.yaml", "--no-report"]
        procs.append(subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT))
    for proc, log in zip(procs, logs, strict=True):
        proc.wait(timeout=600)
        log.close()
    texts = [(tmp_path / f"run{i}" / "log.txt").read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], texts
    counts = [_stage_counts(t) for t in texts]
    print("computed/cached per run:", counts)
    totals = {"train": 1, "extract": 27, "align": 54, "score": N_CELLS + 1}
    for stage, total in totals.items():
        # each output computed by exactly one of the two runs; the other read it
        assert sum(c[stage][0] for c in counts) == total, (stage, texts)
    for i in range(2):
        df = pd.read_parquet(tmp_path / f"run{i}" / "out" / "results.parquet")
        pd.testing.assert_frame_equal(without_timing(df), without_timing(base.summary.results))
    locks = list((shared / "score").rglob(".*.lock"))
    assert len(locks) == N_CELLS  # one lock file per score entry, beside it


# ----------------------------------------------------------------------------- time limits


class _Sleeper(simbench.Metric):
    """Test metric: 0.5, but sleeps forever on 16-channel layers (conv3, conv4), or on
    every layer when ``$SIMBENCH_TEST_HANG`` is ``all``; touches ``$SIMBENCH_TEST_MARKER``
    (if set) when it starts sleeping. Module-level, so worker processes import it."""

    name = "sleeper"
    streaming = True

    def __init__(self) -> None:
        pass

    def _from_moments(self, m):
        import os
        import time

        if m.d_x == 16 or os.environ.get("SIMBENCH_TEST_HANG") == "all":
            marker = os.environ.get("SIMBENCH_TEST_MARKER")
            if marker:
                Path(marker).write_text(str(os.getpid()))
            while True:
                time.sleep(3600)
        return 0.5


def sleeper_registry():
    from simbench.hookspecs import hookimpl
    from simbench.registry import Registry

    mod = types.ModuleType("sleeper_plugin")

    @hookimpl
    def simbench_register_metrics():
        return [_Sleeper]

    mod.simbench_register_metrics = simbench_register_metrics
    return Registry(extra=[mod])


def _with_sleeper(path: Path, run: str) -> None:
    text = path.read_text().replace(
        "metrics: [cka, bures_cosine, procrustes_distance]",
        "metrics: [cka, bures_cosine, procrustes_distance, sleeper]",
    )
    path.write_text(text + run)


def test_a_hanging_cell_fails_at_its_time_limit_and_the_others_complete(
    base, tmp_path, monkeypatch
):
    from simbench.suite import load_suite
    from tests.test_runner import same_provenance

    path = copy_run(base.folder, tmp_path / "hang")
    _with_sleeper(path, "run: {cell_timeout_s: 1}\n")
    reg = sleeper_registry()
    monkeypatch.setattr(simbench.registry, "default_registry", lambda: reg)
    run = run_suite(load_suite(path, registry=reg), echo=None, report=False)
    assert computed(run) == {"train": 0, "extract": 0, "align": 0, "score": 27 + 1}
    df = run.results
    mine = df[df.metric == "sleeper"]
    hung = mine.layer_a.isin(["conv3", "conv4"])
    assert len(mine) == 27 and hung.sum() == 6
    assert mine[hung].value.isna().all()
    assert (
        mine[hung]
        .error.str.startswith(
            "TimeLimitExceeded: the cell ran longer than run.cell_timeout_s = 1 s"
        )
        .all()
    )
    assert (mine[~hung].value == 0.5).all() and mine[~hung].error.isna().all()
    others = df[df.metric != "sleeper"]
    pd.testing.assert_frame_equal(same_provenance(others), same_provenance(base.summary.results))
    # the stopped cells are recorded with their limit: not retried under the same limit ...
    again = run_suite(load_suite(path, registry=reg), echo=None, report=False)
    assert computed(again)["score"] == 0
    # ... retried under a larger one
    path.write_text(path.read_text().replace("cell_timeout_s: 1}", "cell_timeout_s: 1.5}"))
    larger = run_suite(load_suite(path, registry=reg), echo=None, report=False)
    assert computed(larger)["score"] == 6
    errors = larger.results[larger.results.metric == "sleeper"].error
    assert errors.str.contains("run.cell_timeout_s = 1.5 s").sum() == 6


def test_a_job_over_its_time_limit_fails_for_this_run_only(base, tmp_path, monkeypatch):
    from simbench.suite import load_suite

    path = copy_run(base.folder, tmp_path / "joblimit")
    _with_sleeper(path, "run: {cell_timeout_s: null, job_timeout_s: 1}\n")
    reg = sleeper_registry()
    monkeypatch.setattr(simbench.registry, "default_registry", lambda: reg)
    run = run_suite(load_suite(path, registry=reg), echo=None, report=False)
    # the 6 hung jobs (and possibly the invariance checks: loading two models can take
    # more than 1 s on a loaded machine)
    assert not run.ok and run.stats["score"].failed in (6, 7)
    mine = run.results[run.results.metric == "sleeper"]
    hung = mine.layer_a.isin(["conv3", "conv4"])
    assert (
        mine[hung]
        .error.str.startswith(
            "score job failed: TimeLimitExceeded: the job ran longer than run.job_timeout_s = 1 s"
        )
        .all()
    )
    assert (mine[~hung].value == 0.5).all()
    # nothing of the failure was cached: without the limit the cells run (and hang) again
    plan = run.plan.schedule()
    assert plan.outputs["score"] == run.stats["score"].failed


def run_cli_with_sleeper(argv: list[str]) -> int:
    """``simbench <argv>`` with the sleeper metric registered (for subprocess tests)."""
    from simbench.cli import main

    reg = sleeper_registry()
    # make it the default registry of this process (for every module holding the function)
    simbench.registry.default_registry.cache_clear()
    original, simbench.registry.Registry = simbench.registry.Registry, lambda: reg
    simbench.registry.default_registry()
    simbench.registry.Registry = original
    return main(argv)


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_a_run_stopped_during_a_hanging_cell_leaves_no_worker(base, tmp_path, how):
    """Ctrl-C (SIGINT to the process group): exit 130 within 2 s with the resume command.
    SIGKILL of the runner alone (no handler runs): its hung worker exits by itself."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = copy_run(base.folder, tmp_path / "stop")
    _with_sleeper(path, "")
    marker = tmp_path / "sleeping"
    env = {**os.environ, "SIMBENCH_TEST_HANG": "all", "SIMBENCH_TEST_MARKER": str(marker)}
    code = (
        "import sys, tests.test_cache_guarantees as t; "
        f"sys.exit(t.run_cli_with_sleeper(['run', {str(path)!r}, '--no-report']))"
    )
    log = open(tmp_path / "log.txt", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():  # a worker is inside the hanging metric
            assert proc.poll() is None, (tmp_path / "log.txt").read_text()
            assert time.monotonic() < deadline, "the metric never ran"
            time.sleep(0.05)
        time.sleep(0.5)
        t0 = time.monotonic()
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
        else:
            os.kill(proc.pid, signal.SIGKILL)  # the runner only, e.g. the OOM killer
        proc.wait(timeout=30)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    text = (tmp_path / "log.txt").read_text()
    if how == "ctrl-c":
        print(f"exited {seconds:.2f} s after SIGINT")
        assert proc.returncode == 130, text
        assert f"run `simbench run {path}` again to resume" in text
        assert seconds < 2.0, text
    # the hung worker is gone (killed by the runner, or on its own once the runner is
    # gone); so are the forkserver and the resource tracker
    worker = int(marker.read_text())
    deadline = time.monotonic() + 10
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _session(proc.pid), _session(proc.pid)
    assert (
        not Path(f"/proc/{worker}").exists()
        or "zombie" in Path(f"/proc/{worker}/status").read_text()
    )


def _session(sid: int) -> list[str]:
    """``ps`` lines of the live processes of a session."""
    import subprocess

    out = subprocess.run(["ps", "-o", "pid,stat,args", "-s", str(sid)], capture_output=True)
    lines = out.stdout.decode().splitlines()[1:]
    return [line for line in lines if " Z" not in line]


# ----------------------------------------------------------------------------- supervised pool


def nap(seconds: float) -> float:
    """A job that takes ``seconds`` (module level: workers import it)."""
    import time

    time.sleep(seconds)
    return seconds


def cells(seconds: list[float]) -> list[float]:
    """A job of cells, the way score jobs report them to the supervising pool."""
    import time

    from simbench.runner.supervise import cell_started

    for i, s in enumerate(seconds):
        cell_started(f"cell{i}")
        time.sleep(s)
        cell_started(None)
    return seconds


def test_local_executor_stops_jobs_and_cells_at_their_limits():
    from simbench.runner.executors import LocalExecutor
    from simbench.runner.supervise import Limits, TimeLimitExceeded, WorkerDied

    ex = LocalExecutor(workers=1)
    try:
        out = ex.map(nap, [0.0, 60.0, 0.1], limits=Limits(job_s=1.0))
        assert out[0] == 0.0 and out[2] == 0.1
        assert isinstance(out[1], TimeLimitExceeded) and out[1].what == "job"
        assert str(out[1]) == "the job ran longer than run.job_timeout_s = 1 s"
        # a cell over its limit names itself; the job's earlier cells do not count
        out = ex.map(cells, [[0.6, 0.6, 60.0], [0.1]], limits=Limits(cell_s=1.0))
        assert isinstance(out[0], TimeLimitExceeded)
        assert (out[0].what, out[0].label, out[0].limit_s) == ("cell", "cell2", 1.0)
        assert out[1] == [0.1]
        crashed = ex.map(os._exit, [3], limits=Limits(job_s=5.0))
        assert isinstance(crashed[0], WorkerDied) and "exit code 3" in str(crashed[0])
    finally:
        ex.close()
    assert ex._pools == {}


def test_records_of_the_older_format_are_recomputed_with_one_warning(tmp_path):
    import hashlib
    import json

    from simbench.runner.cache import CacheCorruptionWarning, canonical_json

    cache = Cache(tmp_path)
    keys = [make_key(i) for i in range(3)]
    for k in keys:  # the format before key binding: {"sha256", "record"}
        body = {"value": 0.5}
        digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()
        path = cache.path("score", k, "json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"sha256": digest, "record": body}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert all(cache.get_json("score", k) is None for k in keys)
    old = [w for w in caught if issubclass(w.category, CacheCorruptionWarning)]
    assert len(old) == 1 and "older simbench" in str(old[0].message)
    assert not any(cache.path("score", k, "json").exists() for k in keys)

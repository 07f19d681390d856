"""Executors (issue #4): ``local`` (inline / process pool) and ``slurm`` through submitit
(its in-process ``debug`` mode and its ``local`` backend, which runs a small suite)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from simbench.registry import default_registry
from simbench.runner.base import Executor
from simbench.runner.driver import run_suite
from simbench.runner.executors import LocalExecutor, run_chunk
from simbench.runner.slurm import SlurmExecutor
from tests.test_runner import TINY, shared_models, write_suite

# ----------------------------------------------------------------------------- job functions
# (module level: the process pool and submitit pickle them by reference)


def square_or_fail(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * x


def pid_and_threads(x: int) -> tuple[int, int, int]:
    import torch

    return x * x, os.getpid(), torch.get_num_threads()


def die(x: int) -> int:
    if x == 1:
        os._exit(3)  # a worker process dying (segfault, OOM kill...)
    return x


# ----------------------------------------------------------------------------- registry


def test_executors_are_registered_plugins_with_validated_params():
    reg = default_registry()
    assert {"local", "slurm"} <= set(reg.names("executor"))
    ex = reg.create("executor", "local", workers=3)
    assert isinstance(ex, Executor) and ex.n_workers == 3
    assert LocalExecutor().n_workers == (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="workers"):
        reg.create("executor", "local", workers=0)
    with pytest.raises(ValueError, match="cluster"):
        reg.create("executor", "slurm", cluster="pbs")
    s = reg.create("executor", "slurm", partition="gpu", gpus_per_node=1, cluster="local")
    s.bind("/shared/cache")
    assert s.folder == os.path.join("/shared/cache", "slurm")


# ----------------------------------------------------------------------------- local


def test_local_inline_keeps_order_and_returns_exceptions():
    done = []
    out = LocalExecutor(workers=1).map(square_or_fail, [3, -1, 2], progress=done.append)
    assert out[0] == 9 and out[2] == 4
    assert isinstance(out[1], ValueError) and str(out[1]) == "negative: -1"
    assert done == [1, 1, 1]
    assert LocalExecutor(workers=4).map(square_or_fail, []) == []
    assert run_chunk(square_or_fail, [2, -2])[0] == 4


def test_local_pool_runs_in_worker_processes_shares_cores_and_survives_a_crash():
    ex = LocalExecutor(workers=2)
    try:
        first = ex.map(pid_and_threads, list(range(6)))
        assert [r[0] for r in first] == [x * x for x in range(6)]
        pids = {r[1] for r in first}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
        assert {r[2] for r in first} == {max(1, (os.cpu_count() or 1) // 2)}
        again = ex.map(pid_and_threads, [7, 8])  # the next stage reuses the same workers
        assert {r[1] for r in again} <= pids
        errors = ex.map(square_or_fail, [1, -5, 2])
        assert errors[0] == 1 and errors[2] == 4 and isinstance(errors[1], ValueError)
        crashed = ex.map(die, [0, 1, 2])
        assert isinstance(crashed[1], Exception)  # WorkerDied, returned not raised
        assert ex.map(square_or_fail, [4, 5]) == [16, 25]  # a fresh pool after the crash
    finally:
        ex.close()
    assert ex._pools == {}


def test_local_training_without_gpu_runs_inline():
    out = LocalExecutor(workers=2).map_training(pid_and_threads, [2, 3])
    assert [r[0] for r in out] == [4, 9]
    assert {r[1] for r in out} == {os.getpid()}


def test_local_training_without_gpu_in_train_workers_processes(monkeypatch):
    """``train_workers: 2`` on a CPU-only machine: two training processes at once, each
    with cores // 2 torch threads (GPUs hidden, as on CI)."""
    import simbench.runner.executors as executors

    monkeypatch.setattr(executors, "_gpu_count", lambda: 0)
    out = LocalExecutor(workers=2, train_workers=2).map_training(visible_gpu_and_pid, [0, 1])
    assert [r[0] for r in out] == [0, 1]
    assert len({r[1] for r in out}) == 2 and os.getpid() not in {r[1] for r in out}
    assert {r[2] for r in out} == {max(1, (os.cpu_count() or 1) // 2)}


def visible_gpu_and_pid(x: int) -> tuple[int, int, int]:
    import time

    import torch

    time.sleep(0.5)  # long enough for both workers to take a job
    return x, os.getpid(), torch.get_num_threads()


# ----------------------------------------------------------------------------- slurm


def test_slurm_debug_mode_keeps_order_chunks_and_returns_exceptions(tmp_path):
    ex = SlurmExecutor(folder=str(tmp_path / "sub"), cluster="debug", max_tasks=2)
    done = []
    out = ex.map(square_or_fail, [1, 2, -3, 4, 5], progress=done.append)
    assert out[:2] == [1, 4] and out[3:] == [16, 25]
    assert isinstance(out[2], ValueError)
    assert sum(done) == 5 and len(done) == 2  # two array tasks of 3 and 2 jobs


SMALL = TINY.replace("name: tiny", "name: small").replace(
    "pairs:\n  - {all: true}", "pairs:\n  - [vgg@0, vgg@1]\nlayers: [conv1, conv2]"
)


def test_slurm_local_backend_runs_a_small_suite(tmp_path_factory):
    """The slurm executor through submitit's local backend (separate processes sharing the
    cache folder) gives the table of the inline local executor."""
    models = shared_models(tmp_path_factory)
    base = tmp_path_factory.mktemp("slurm")
    slurm_text = SMALL.replace(
        "executor: {name: local, params: {workers: 1}}",
        "executor: {name: slurm, params: {cluster: local, max_tasks: 1, time_min: 10, "
        "poll_s: 0.2, cpus_per_task: 1, mem_gb: 2}}",
    )
    path = write_suite(base / "slurm", slurm_text, models)
    ref_path = write_suite(base / "inline", SMALL, models)
    run = run_suite(path, echo=None, report=False)
    assert {k: s.computed for k, s in run.stats.items()} == {
        "train": 0,
        "extract": 2,
        "align": 4,
        "score": 2 * 4 + 1,
    }
    assert run.ok
    assert {k: s.jobs for k, s in run.stats.items()} == {
        "train": 0,
        "extract": 1,
        "align": 2,
        "score": 3,
    }
    logs = list((base / "slurm" / "out" / "cache" / "slurm").glob("*_log.out"))
    # one array task per stage (max_tasks: 1); the extract stage's per-model forward
    # passes (represent) are an array of their own
    assert len(logs) == 4
    ref = run_suite(ref_path, echo=None, report=False)
    cols = ["model_a", "model_b", "layer_a", "alignment", "metric", "value", "error"]
    got, want = run.results[cols], ref.results[cols]
    pd.testing.assert_frame_equal(got, want)
    assert np.isfinite(got[got.metric == "cka"].value).all()
    assert len(got) == 8
    shutil.rmtree(base)


def visible_gpu(x: int) -> tuple[int, str]:
    import time

    time.sleep(0.5)  # long enough for both workers to take a job
    return x, os.environ.get("CUDA_VISIBLE_DEVICES", "")


def test_local_training_one_job_per_gpu(monkeypatch):
    """With several GPUs, training jobs run in one process per GPU, each process seeing
    exactly one device (CUDA_VISIBLE_DEVICES); GPUs are simulated here."""
    import simbench.runner.executors as executors

    monkeypatch.setattr(executors, "_gpu_count", lambda: 2)
    out = LocalExecutor(workers=8).map_training(visible_gpu, [0, 1])
    assert [r[0] for r in out] == [0, 1]
    assert sorted(r[1] for r in out) == ["0", "1"]


def test_slurm_sbatch_script_for_a_real_cluster(tmp_path, monkeypatch):
    """What would be submitted to a real slurmctld (srun faked so submitit accepts this
    machine as a SLURM login node)."""
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda n, *a, **k: f"/usr/bin/{n}" if n in ("srun", "sbatch") else
        real_which(n, *a, **k)
    )  # fmt: skip
    ex = SlurmExecutor(
        folder=str(tmp_path),
        partition="gpu",
        time_min=240,
        cpus_per_task=8,
        gpus_per_node=1,
        mem_gb=32,
        array_parallelism=7,
        setup=["source /shared/venv/bin/activate"],
    )
    script = ex._executor()._executor._make_submission_file_text("python -m job", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=240",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=32GB",
        "#SBATCH --job-name=simbench-train",
        f"#SBATCH --output={tmp_path}/%j_0_log.out",
        "source /shared/venv/bin/activate",
    ):
        assert line in script.splitlines(), line

"""The ``slurm`` executor for production clusters (issue #13): sbatch options passed
through per stage, GPUs only where they are used, small jobs batched, training requeued
and resumed, Ctrl-C cancelling the submitted jobs, ``simbench status``; and the
end-to-end script against a real single-node slurmctld on localhost (marker ``slurm``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import simbench.runner.slurm as slurm_mod
from simbench.cli import main
from simbench.registry import default_registry
from simbench.runner.driver import run_suite
from simbench.runner.slurm import JOURNAL, SlurmExecutor, TrainChunk, _chunks, stage_of
from simbench.runner.slurm_status import read_journal
from simbench.runner.stages import AlignJob, ScoreJob, TrainJob, run_job
from simbench.runner.status_cli import status_lines
from simbench.suite import SuiteError, parse_suite
from tests.test_executors import SMALL, square_or_fail
from tests.test_runner import shared_models, write_suite

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("train", "extract", "align", "score")


@pytest.fixture
def fake_slurm_login(monkeypatch):
    """``srun``/``sbatch`` on the path as far as submitit can tell (a login node)."""
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda n, *a, **k: f"/usr/bin/{n}" if n in ("srun", "sbatch") else
        real_which(n, *a, **k)
    )  # fmt: skip


def sbatch_lines(ex: SlurmExecutor, stage: str) -> set[str]:
    script = ex._executor(stage)._executor._make_submission_file_text("python -m job", "uid")
    return {line for line in script.splitlines() if line.startswith("#SBATCH")}


# ----------------------------------------------------------------------------- options


def test_sbatch_options_pass_through_with_per_stage_resources(tmp_path, fake_slurm_login):
    ex = default_registry().create(
        "executor",
        "slurm",
        folder=str(tmp_path),
        partition="gpu",
        account="proj42",
        qos="normal",
        constraint="a100&ib",
        gpus_per_node=2,
        cpus_per_task=8,
        time_min=240,
        additional_parameters={"reservation": "simbench", "exclusive": True, "mail_type": "END"},
        stages={
            "extract": {"gpus_per_node": 1, "time_min": 30},
            "score": {
                "qos": "low",
                "partition": "cpu",
                "additional_parameters": {"nice": 10, "exclusive": False},
            },
        },
    )
    common = {"--account=proj42", "--constraint='a100&ib'", "--reservation=simbench"}
    common |= {"--mail-type=END"}
    common = {f"#SBATCH {x}" for x in common}
    train, extract = sbatch_lines(ex, "train"), sbatch_lines(ex, "extract")
    align, score = sbatch_lines(ex, "align"), sbatch_lines(ex, "score")
    for lines in (train, extract, align, score):
        assert common <= lines
        assert "#SBATCH --cpus-per-task=8" in lines
    assert {
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --qos=normal",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=240",
        "#SBATCH --requeue",  # training goes back to the queue when preempted
        "#SBATCH --exclusive",
        "#SBATCH --job-name=simbench-train",
    } <= train
    assert {"#SBATCH --gpus-per-node=1", "#SBATCH --time=30", "#SBATCH --exclusive"} <= extract
    assert "#SBATCH --requeue" not in extract
    # alignment and scoring are CPU jobs: no GPU request of any kind
    for lines in (align, score):
        assert not [x for x in lines if x.startswith(("#SBATCH --gpus", "#SBATCH --gres"))]
        assert "#SBATCH --requeue" not in lines
    assert {"#SBATCH --qos=normal", "#SBATCH --partition=gpu", "#SBATCH --time=240"} <= align
    assert {"#SBATCH --qos=low", "#SBATCH --partition=cpu", "#SBATCH --nice=10"} <= score
    assert "#SBATCH --exclusive" not in score  # `false` leaves a top-level option out
    assert "#SBATCH --qos=normal" not in score


BAD_OPTIONS = [
    ({"additional_parameters": {"array": "0-9"}}, "'array' is set by simbench"),
    ({"additional_parameters": {"mail_user": "a@b\n#SBATCH --x"}}, "one-line string"),
    ({"additional_parameters": {"bad key": 1}}, "pattern"),
    ({"account": ""}, "account"),
    ({"qos": "a\nb"}, "qos"),
    ({"stages": {"scoring": {}}}, "stages"),
    ({"stages": {"score": {"gpus": 1}}}, "gpus"),
    ({"stages": {"train": {"time_min": 0}}}, "time_min"),
    ({"small_jobs": "remote"}, "small_jobs"),
    ({"mem_gb": float("inf")}, "mem_gb"),
]


@pytest.mark.parametrize(("params", "match"), BAD_OPTIONS)
def test_bad_options_are_rejected(params, match):
    with pytest.raises(ValueError, match=match):
        default_registry().create("executor", "slurm", **params)


def test_bad_options_in_a_suite_name_the_line():
    text = SMALL.replace(
        "executor: {name: local, params: {workers: 1}}",
        "executor:\n  name: slurm\n  params:\n    account: proj\n"
        "    stages:\n      score: {gpu: 1}\n",
    )
    with pytest.raises(SuiteError) as err:
        parse_suite(text, file="s.yaml")
    lines = str(err.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("s.yaml:24: executor.params.stages.score.gpu:"), lines


def test_a_relative_folder_is_relative_to_the_suite_file(tmp_path):
    text = SMALL.replace(
        "executor: {name: local, params: {workers: 1}}",
        "executor: {name: slurm, params: {folder: logs/slurm, account: proj}}",
    )
    suite = parse_suite(text, base_dir=tmp_path)
    assert suite.executor_ref().params["folder"] == str(tmp_path / "logs" / "slurm")
    assert suite.executor_ref().params["account"] == "proj"


# ----------------------------------------------------------------------------- batching


def test_small_jobs_are_batched_large_ones_are_not():
    assert [len(c) for c in _chunks(list(range(100)), 32, None)] == [25, 25, 25, 25]
    assert [len(c) for c in _chunks(list(range(100)), 1, 3)] == [34, 34, 32]
    assert [len(c) for c in _chunks(list(range(5)), 32, None)] == [5]
    ex = SlurmExecutor(jobs_per_task=20, stages={"score": {"jobs_per_task": 50}})
    assert [ex.resources(s)["jobs_per_task"] for s in STAGES] == [1, 1, 20, 50]
    assert [ex.resources(s)["local"] for s in STAGES] == [False] * 4
    local = SlurmExecutor(small_jobs="local", stages={"extract": {"local": True}})
    assert [local.resources(s)["local"] for s in STAGES] == [False, True, True, True]
    assert stage_of([TrainJob({}, "m")]) == "train"
    assert stage_of([AlignJob("c", "k", ())]) == "align"
    assert stage_of([ScoreJob("c", ())]) == "score"
    assert stage_of([3]) is None


def test_batched_stage_runs_few_tasks_and_journals_them(tmp_path):
    folder = tmp_path / "sub"
    ex = SlurmExecutor(folder=str(folder), cluster="debug", jobs_per_task=30)
    said: list[str] = []
    ex.echo = said.append
    done: list[int] = []
    items = [*range(69), -1]
    out = ex.map(square_or_fail, items, progress=done.append, stage="score")
    assert out[:69] == [x * x for x in range(69)] and isinstance(out[69], ValueError)
    assert done == [24, 24, 22]  # three array tasks for 70 score jobs
    [array] = read_journal(folder, live=False)
    assert (array.stage, array.jobs, len(array.tasks)) == ("score", 70, 3)
    assert array.counts()["done"] == 3
    assert len(said) == 1 and said[0].startswith(f"score: submitted SLURM job {array.job} ")
    assert "(3 tasks for 70 jobs; 2 CPU, no GPU, 60 min); logs: " in said[0]
    assert said[0].endswith(f"{folder}/<job>_0_log.out")  # debug mode: no SLURM ids


def test_small_jobs_local_submit_nothing(tmp_path):
    ex = SlurmExecutor(folder=str(tmp_path), cluster="debug", small_jobs="local")
    ex.echo = pytest.fail  # nothing is submitted
    assert ex.map(square_or_fail, [1, 2, 3], stage="align") == [1, 4, 9]
    assert not (tmp_path / JOURNAL).exists()
    ex.close()


# ----------------------------------------------------------------------------- Ctrl-C


def sleep_and_record(path: str) -> int:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_ctrl_c_cancels_the_submitted_jobs(tmp_path, monkeypatch):
    """A KeyboardInterrupt while waiting cancels every unfinished task (submitit's local
    backend: the job processes end), journals it and says so; the interrupt propagates."""
    pid_files = [str(tmp_path / f"pid{i}") for i in range(2)]

    def interrupt(_seconds: float) -> None:
        deadline = time.time() + 60
        while not all(os.path.exists(p) for p in pid_files) and time.time() < deadline:
            time.sleep(0.1)
        raise KeyboardInterrupt

    monkeypatch.setattr(slurm_mod, "_sleep", interrupt)
    ex = SlurmExecutor(folder=str(tmp_path / "sub"), cluster="local", poll_s=0.2)
    said: list[str] = []
    ex.echo = said.append
    with pytest.raises(KeyboardInterrupt):
        ex.map(sleep_and_record, pid_files)
    pids = [int(Path(p).read_text()) for p in pid_files]
    deadline = time.time() + 20
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
    [array] = read_journal(tmp_path / "sub", live=False)
    assert array.counts()["cancelled"] == 2
    assert said[-1] == "cancelled SLURM jobs: " + " ".join(array.tasks)


# ----------------------------------------------------------------------------- requeue


def test_preempted_training_is_requeued_and_resumes_from_its_epoch(tmp_path):
    """A training task preempted after its first epoch (submitit's local backend, the
    signal SLURM sends) is checkpointed, requeued, resumes after epoch 1 and ends with the
    weights of an uninterrupted training."""
    from simbench.train.checkpoint import RESUME_FILE, load_checkpoint
    from simbench.train.trainer import run_dir, train

    suite = parse_suite(SMALL.replace("epochs: 1", "epochs: 3"), base_dir=tmp_path)
    spec = suite.model_specs()["vgg@0"]
    job = TrainJob(spec.model_dump(mode="json"), str(tmp_path / "models"), threads=1)
    ex = SlurmExecutor(folder=str(tmp_path / "sub"), cluster="local", time_min=30)
    sub = ex._executor("train").submit(TrainChunk(run_job), [job])
    resume = run_dir(spec, tmp_path / "models") / RESUME_FILE
    deadline = time.time() + 120
    while not resume.exists() and time.time() < deadline and not sub.done():
        time.sleep(0.05)
    assert resume.exists(), sub.stderr()
    # USR2 to the task (not submitit's local controller): what SLURM sends a job before its
    # time limit, and what submitit treats as preemption when the time limit is far
    ctrl = sub._process.pid
    [worker] = Path(f"/proc/{ctrl}/task/{ctrl}/children").read_text().split()
    os.kill(int(worker), signal.SIGUSR2)
    [got] = sub.result()
    assert not isinstance(got, BaseException), got
    log = sub.stderr() or ""
    assert "this job is preempted" in log, log
    assert "resuming after epoch" in log  # the trainer's resume message
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the task trained on one thread; weights depend on the count
    try:
        ref = train(spec, tmp_path / "ref", progress=False)
    finally:
        torch.set_num_threads(threads)
    a, _ = load_checkpoint(got["path"])
    b, _ = load_checkpoint(ref)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- status


def test_status_shows_cache_progress_and_jobs(tmp_path_factory, capsys):
    models = shared_models(tmp_path_factory)
    base = tmp_path_factory.mktemp("status")
    text = SMALL.replace(
        "executor: {name: local, params: {workers: 1}}",
        "executor: {name: slurm, params: {cluster: debug, jobs_per_task: 3}}",
    )
    path = write_suite(base, text, models)
    before = status_lines(path, live=False)
    assert before[1].split() == ["stage", "done", "to", "do", "total"]
    assert before[2].split() == ["train", "2", "0", "2"]  # the copied models
    assert before[3].split() == ["extract", "0", "2", "2"]
    assert before[-1].startswith("SLURM: no jobs submitted yet")
    said: list[str] = []
    run = run_suite(path, echo=said.append, report=False)
    assert run.ok
    submitted = [s for s in said if "submitted SLURM job" in s]
    # the extract stage submits the models' forward passes (represent), then the pairs'
    assert [s.split(":")[0] for s in submitted] == ["extract", "extract", "align", "score"], said
    assert main(["status", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln.split() for ln in lines[2:6]}
    assert rows["extract"] == ["extract", "2", "0", "2"]
    assert rows["score"][2] == "0"  # nothing left to do
    jobs = [
        ln.split() for ln in lines[lines.index(next(x for x in lines if "SLURM jobs" in x)) + 2 :]
    ]
    assert [j[0] for j in jobs] == ["extract", "extract", "align", "score"]
    for j, n_jobs in zip(jobs, (2, 1, 2, 3), strict=True):
        tasks = -(-n_jobs // 3)  # extract: one job per task; align, score: 3 per task
        if j[0] == "extract":
            tasks = n_jobs
        # stage, job, tasks, queued, running, done, failed, cancelled, unknown
        assert j[2:9] == [str(tasks), "0", "0", str(tasks), "0", "0", "0"], j
    assert main(["status", str(base / "out")]) == 0  # the output folder: jobs only
    only_jobs = capsys.readouterr().out.splitlines()
    assert only_jobs[0].startswith("SLURM jobs") and len(only_jobs) == 6


# ----------------------------------------------------------------------------- real SLURM


def _can_run_slurm() -> str | None:
    if os.geteuid() != 0:
        return "needs root (installs and starts slurmctld, slurmd, munged)"
    if shutil.which("slurmctld") or shutil.which("apt-get"):
        return None
    return "no slurmctld and no apt-get to install it"


@pytest.mark.slurm
@pytest.mark.slow
def test_localhost_slurm_script_end_to_end(tmp_path):
    """scripts/slurm_localhost.sh: a real single-node SLURM on localhost runs a tiny suite
    with the ``slurm`` executor, a training job requeued mid-run, and checks the results
    equal a local run's."""
    why = _can_run_slurm()
    if why:
        pytest.skip(why)
    if os.environ.get("SIMBENCH_SLURM_TEST") != "1":
        pytest.skip("set SIMBENCH_SLURM_TEST=1 to start SLURM daemons on this machine")
    env = {**os.environ, "SIMBENCH_SLURM_WORK": str(tmp_path), "SIMBENCH_PYTHON": sys.executable}
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "slurm_localhost.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the script's trap stops the daemons it started
        out, err = proc.communicate(timeout=60)
        pytest.fail("slurm_localhost.sh ran over 15 minutes:\n" + out[-4000:] + err[-4000:])
    assert proc.returncode == 0, out[-4000:] + err[-4000:]
    assert "results equal: slurm == local" in out
    assert "requeued training job" in out
    assert "no training job left in the queue" in out  # Ctrl-C cancelled them
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["equal"] is True and summary["requeued_equal"] is True


# ----------------------------------------------------------------------------- SLURM states


class FakeSlurmJob:
    """A submitted SLURM array task as the executor sees it (its files, its result)."""

    def __init__(self, job_id: str, folder: Path) -> None:
        self.job_id = job_id
        self.paths = SimpleNamespace(
            folder=folder,
            result_pickle=folder / f"{job_id}_0_result.pkl",
            stdout=folder / f"{job_id}_0_log.out",
        )

    def result(self) -> list[str]:
        return [f"trained {self.job_id}"]

    def done(self) -> bool:  # sacct: must not be needed while squeue answers
        raise AssertionError("sacct polled although squeue works")


def test_a_requeued_task_is_waited_for_a_vanished_one_fails(tmp_path, monkeypatch):
    """The runner's wait on a real cluster: a training task that is requeued (PENDING again
    for a while) is waited for until its result appears; a task that leaves the queue
    without a result fails after two polls (not hangs)."""
    requeued, lost = FakeSlurmJob("5_0", tmp_path), FakeSlurmJob("5_1", tmp_path)
    polls = [
        {"5_0": "RUNNING", "5_1": "RUNNING"},
        {"5_0": "REQUEUED", "5_1": "RUNNING"},
        {"5_0": "PENDING"},  # 5_1 gone, no result: first strike
        {"5_0": "PENDING"},  # second strike: failed
        {"5_0": "RUNNING"},
        {"5_0": "COMPLETED"},
    ]
    step = {"n": 0}

    def squeue(_ids):
        return polls[min(step["n"], len(polls) - 1)]

    def sleep(_s):
        step["n"] += 1
        if step["n"] == 5:
            requeued.paths.result_pickle.write_bytes(b"")  # the rerun finished
        assert step["n"] < 20, "still waiting"

    import simbench.runner.slurm_status as status_mod

    monkeypatch.setattr(status_mod, "squeue_states", squeue)
    monkeypatch.setattr(slurm_mod, "_sleep", sleep)
    monkeypatch.setattr(slurm_mod, "LOST_AFTER_S", 0.0)
    ex = SlurmExecutor(folder=str(tmp_path), cluster="slurm")
    ex._names = {}
    results: list = [None, None]
    done: list[int] = []
    ex._wait({0: requeued, 1: lost}, [["a"], ["b"]], [0, 1], results, done.append)
    assert results[0] == "trained 5_0"
    assert isinstance(results[1], RuntimeError)
    assert "SLURM job 5_1 left the queue without a result" in str(results[1])
    assert step["n"] == 5 and done == [1, 1]
    events = [json.loads(x) for x in (tmp_path / JOURNAL).read_text().splitlines()]
    assert [(e["event"], e["task"]) for e in events] == [("failed", "5_1"), ("done", "5_0")]


def test_status_of_live_tasks_from_squeue_sacct_and_result_files(tmp_path, monkeypatch):
    import simbench.runner.slurm_status as status_mod

    tasks = [f"77_{i}" for i in range(6)]
    records = [
        {"event": "submitted", "stage": "train", "job": "77", "tasks": tasks, "jobs": 6,
         "log": f"{tmp_path}/77_<task>_0_log.out", "cluster": "slurm", "time": 1.0},
        {"event": "done", "task": "77_0", "time": 2.0},
        "not json",
    ]  # fmt: skip
    (tmp_path / JOURNAL).write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"
    )
    (tmp_path / "77_4_0_result.pkl").write_bytes(b"never unpickled")
    monkeypatch.setattr(
        status_mod, "squeue_states", lambda ids: {"77_1": "PENDING", "77_2": "RUNNING"}
    )
    monkeypatch.setattr(status_mod, "sacct_states", lambda ids: {"77_3": "TIMEOUT"})
    [a] = read_journal(tmp_path)
    assert a.tasks == {
        "77_0": "done",  # collected by the runner
        "77_1": "queued",
        "77_2": "running",
        "77_3": "failed",  # sacct: TIMEOUT
        "77_4": "done",  # finished, result file present
        "77_5": "failed",  # not in the queue, no result
    }
    monkeypatch.setattr(status_mod, "squeue_states", lambda ids: None)  # no squeue here
    monkeypatch.setattr(status_mod, "sacct_states", lambda ids: None)
    [a] = read_journal(tmp_path)
    assert a.counts() == {"queued": 0, "running": 0, "done": 2, "failed": 0,
                          "cancelled": 0, "unknown": 4}  # fmt: skip
    lines = status_lines(tmp_path)
    assert lines[0] == f"SLURM jobs (journal {tmp_path}):"
    assert lines[2].split()[:9] == ["train", "77", "6", "0", "0", "2", "0", "0", "4"]


def test_submission_line_names_the_array_and_its_log_pattern(tmp_path):
    folder = tmp_path / "run3" / "slurm"  # the job id (3) also appears in the folder name
    jobs = [FakeSlurmJob(f"3_{i}", folder) for i in range(2)]
    ex = SlurmExecutor(folder=str(folder), cluster="slurm")
    said: list[str] = []
    ex.echo = said.append
    ex._names = slurm_mod._task_names(jobs, "slurm")
    ex._submitted("extract", jobs, [["a"], ["b", "c"]], ex.resources("extract"))
    assert said == [
        f"extract: submitted SLURM job 3 (2 tasks for 3 jobs; 2 CPU, no GPU, 60 min); "
        f"logs: {folder}/3_<task>_0_log.out"
    ]
    [array] = read_journal(folder, live=False)
    assert (array.job, list(array.tasks), array.jobs) == ("3", ["3_0", "3_1"], 3)


def torch_threads(_x: int) -> int:
    return torch.get_num_threads()


def test_array_tasks_use_their_allocated_cores(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
        assert slurm_mod.slurm_chunk(torch_threads, [0, 1]) == [3, 3]
        assert TrainChunk(torch_threads)([0]) == [3]
    finally:
        torch.set_num_threads(before)

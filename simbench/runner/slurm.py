"""The ``slurm`` executor: each stage's jobs as one SLURM job array through submitit.

Resources are per stage: the suite's ``executor.params`` are the defaults of every stage,
``gpus_per_node`` applies to the GPU stages only (``train``, ``extract``; alignment and
scoring are CPU jobs), and ``stages: {STAGE: {...}}`` overrides any resource for one
stage. Any sbatch option passes through: ``account``, ``qos``, ``constraint`` by name,
anything else in ``additional_parameters`` (``{reservation: x, exclusive: true}`` ->
``#SBATCH --reservation=x``, ``#SBATCH --exclusive``; ``false`` leaves an option out).

Small jobs (``align``, ``score``: often under a second each) are grouped,
``jobs_per_task`` per array task, or run on this machine (``small_jobs: local``). Training
tasks are submitit ``Checkpointable`` and submitted with ``--requeue``: a task that is
preempted or reaches its time limit is requeued (at most ``max_requeues`` times for time
limits) and resumes from the model's last completed epoch (the trainer's resume state in
the shared cache); the runner keeps waiting for it. Other stages are not requeued: their
jobs are short and a failed one is retried by the next run.

Every submission prints its job id, task count and log path, and is appended to the
journal ``<folder>/simbench_jobs.jsonl`` that ``simbench status`` reads. Ctrl-C (or any
error) while waiting cancels the submitted tasks that have not finished. A task is done
when its submitit result file exists; one that leaves the queue (``squeue``) without a
result fails after two polls and a minute (``sacct`` is used only where ``squeue`` is
missing).

Run ``simbench run suite.yaml`` on a login node. The cache folder and ``folder`` must be
on a file system every node mounts, and the nodes need the same simbench (and plugin
packages) as the login node: submitit pickles the job function by reference.
``scripts/slurm_localhost.sh`` runs all of this against a real single-node slurmctld.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
)
from submitit.helpers import Checkpointable

from simbench.runner.base import Executor
from simbench.runner.executors import LocalExecutor, Progress, run_chunk

__all__ = [
    "GPU_STAGES",
    "JOURNAL",
    "SlurmExecutor",
    "StageResources",
    "TrainChunk",
    "slurm_chunk",
    "stage_of",
]

GPU_STAGES = ("train", "extract")
SMALL_STAGES = ("align", "score")
JOURNAL = "simbench_jobs.jsonl"
#: a task out of the queue without a result file for two polls and this many seconds has
#: failed (the delay covers result files that shared file systems show late)
LOST_AFTER_S = 60.0

#: sbatch options simbench (submitit) sets itself; ``additional_parameters`` may not
_RESERVED = frozenset({"array", "output", "error", "open-mode", "signal", "job-name", "wrap"})


def _sbatch_key(key: str) -> str:
    if key.replace("_", "-") in _RESERVED:
        raise ValueError(f"sbatch option {key!r} is set by simbench; leave it out")
    return key


#: a single-line sbatch value (a newline would add lines to the generated script)
SafeStr = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$")]
SbatchKey = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$"), AfterValidator(_sbatch_key)
]


def _sbatch_value(value: Any) -> Any:
    ok = isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, str):
        ok = bool(value) and re.search(r"[\x00-\x1f\x7f]", value) is None
    if not ok:
        raise ValueError(
            f"an sbatch option value is a one-line string, a finite number or true; got {value!r}"
        )
    return value


SbatchValue = Annotated[Any, PlainValidator(_sbatch_value)]
Stage = Literal["train", "extract", "align", "score"]


class StageResources(BaseModel):
    """Overrides for one stage (``stages: {score: {cpus_per_task: 1}}``); unset fields
    keep the executor's values. ``local: true`` runs the stage on this machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: SafeStr | None = None
    time_min: Annotated[int, Field(ge=1)] | None = None
    cpus_per_task: Annotated[int, Field(ge=1)] | None = None
    gpus_per_node: Annotated[int, Field(ge=0)] | None = None
    mem_gb: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    account: SafeStr | None = None
    qos: SafeStr | None = None
    constraint: SafeStr | None = None
    additional_parameters: dict[SbatchKey, SbatchValue] | None = None
    jobs_per_task: Annotated[int, Field(ge=1)] | None = None
    max_tasks: Annotated[int, Field(ge=1)] | None = None
    local: bool | None = None


def stage_of(items: Sequence[Any]) -> str | None:
    """The runner stage of a list of jobs (by the class of its first item), else ``None``."""
    names = {
        "TrainJob": "train",
        "ExtractJob": "extract",
        "RepresentJob": "extract",  # the per-model forward passes of the extract stage
        "AlignJob": "align",
        "ScoreJob": "score",
        "ChecksJob": "score",
    }
    return names.get(type(items[0]).__name__) if items else None


def slurm_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """:func:`run_chunk` in an array task: torch uses the task's ``SLURM_CPUS_PER_TASK``
    cores (its default, every core of the node, oversubscribes shared nodes); a job's own
    ``threads`` still wins."""
    n = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if n.isdigit() and int(n) > 0:
        import torch

        torch.set_num_threads(int(n))
    return run_chunk(fn, items)


class TrainChunk(Checkpointable):
    """The callable of a training task: ``run_chunk(fn, items)``. A submitit
    ``Checkpointable``: on preemption or at the time limit its checkpoint resubmits the same
    jobs, and each training resumes from its last completed epoch in the cache (the
    trainer's resume state; at most one epoch of work is lost)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, items: Sequence[Any]) -> list[Any]:
        log = logging.getLogger("simbench.train")  # epochs and resumes into the task's log
        if not log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        return slurm_chunk(self.fn, items)


def _chunks(items: list[Any], per_task: int, max_tasks: int | None) -> list[list[Any]]:
    """``items`` in consecutive groups of about equal size: ``ceil(n / per_task)`` groups,
    at most ``max_tasks``."""
    n_tasks = -(-len(items) // per_task)
    if max_tasks is not None:
        n_tasks = min(n_tasks, max_tasks)
    size = -(-len(items) // n_tasks)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _task_names(jobs: list[Any], cluster: str) -> dict[int, str]:
    """Journal names of submitted tasks: SLURM's ``<array>_<task>`` ids; elsewhere (submitit's
    local and debug backends, whose ids are no array ids) ``<cluster>-<time>_<i>``."""
    ids = [str(j.job_id) for j in jobs]
    if cluster == "slurm" and len(set(ids)) == len(ids):
        return {id(j): i for j, i in zip(jobs, ids, strict=True)}
    prefix = f"{cluster}-{time.time_ns() // 1000 % 10**9}"
    return {id(j): f"{prefix}_{k}" for k, j in enumerate(jobs)}


def _sleep(seconds: float) -> None:  # a seam for tests (interrupt the wait)
    time.sleep(seconds)


class SlurmExecutor(Executor):
    """SLURM job arrays through submitit (``cluster="local"``/``"debug"``: submitit's local
    backend / in-process debug mode, for tests and laptops).

    ``folder``: submitit's log and pickle folder, on a file system the nodes share
    (default: ``<cache>/slurm``); ``partition``, ``time_min``, ``cpus_per_task``,
    ``gpus_per_node`` (train and extract only), ``mem_gb``, ``account``, ``qos``,
    ``constraint``: per-task resources; ``additional_parameters``: any other sbatch option;
    ``stages``: per-stage overrides of all these; ``small_jobs``: ``batch`` (align and
    score jobs grouped ``jobs_per_task`` per array task) or ``local`` (run here);
    ``array_parallelism``: tasks running at once; ``max_tasks``: at most this many array
    tasks per stage; ``max_requeues``: requeues of a training task at its time limit;
    ``setup``: shell lines run before each task (``module load cuda``, ``source
    venv/bin/activate``); ``poll_s``: seconds between status polls (default 15 on SLURM,
    0.5 otherwise).
    """

    name = "slurm"

    def __init__(
        self,
        folder: str | None = None,
        partition: SafeStr | None = None,
        time_min: Annotated[int, Field(ge=1)] = 60,
        cpus_per_task: Annotated[int, Field(ge=1)] = 2,
        gpus_per_node: Annotated[int, Field(ge=0)] = 0,
        mem_gb: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 8.0,
        account: SafeStr | None = None,
        qos: SafeStr | None = None,
        constraint: SafeStr | None = None,
        additional_parameters: dict[SbatchKey, SbatchValue] | None = None,
        stages: dict[Stage, StageResources] | None = None,
        small_jobs: Literal["batch", "local"] = "batch",
        jobs_per_task: Annotated[int, Field(ge=1)] = 32,
        array_parallelism: Annotated[int, Field(ge=1)] = 64,
        max_tasks: Annotated[int, Field(ge=1)] | None = None,
        max_requeues: Annotated[int, Field(ge=0)] = 3,
        setup: list[str] | None = None,
        poll_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None,
        cluster: Literal["slurm", "local", "debug"] = "slurm",
    ) -> None:
        self.folder = folder
        self.partition = partition
        self.time_min = time_min
        self.cpus_per_task = cpus_per_task
        self.gpus_per_node = gpus_per_node
        self.mem_gb = mem_gb
        self.account = account
        self.qos = qos
        self.constraint = constraint
        self.additional_parameters = additional_parameters
        self.stages = stages
        self.small_jobs = small_jobs
        self.jobs_per_task = jobs_per_task
        self.array_parallelism = array_parallelism
        self.max_tasks = max_tasks
        self.max_requeues = max_requeues
        self.setup = setup
        self.poll_s = poll_s
        self.cluster = cluster
        self.echo: Callable[[str], None] | None = None
        self._local: dict[int, LocalExecutor] = {}
        self._names: dict[int, str] = {}  # id(job) -> its task name in the journal

    def bind(self, cache_root: str | os.PathLike) -> None:
        """Default the submitit folder to ``<cache>/slurm`` (called by the runner)."""
        if self.folder is None:
            self.folder = str(Path(cache_root) / "slurm")

    # ------------------------------------------------------------------ resources

    def resources(self, stage: str | None) -> dict[str, Any]:
        """The effective resources of ``stage`` (``None``: a job of no runner stage, which
        gets the top-level values, GPUs included, one job per task)."""
        gpu = stage is None or stage in GPU_STAGES
        small = stage in SMALL_STAGES
        out: dict[str, Any] = {
            "partition": self.partition,
            "time_min": self.time_min,
            "cpus_per_task": self.cpus_per_task,
            "gpus_per_node": self.gpus_per_node if gpu else 0,
            "mem_gb": self.mem_gb,
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
            "additional_parameters": dict(self.additional_parameters or {}),
            "jobs_per_task": self.jobs_per_task if small else 1,
            "max_tasks": self.max_tasks,
            "local": small and self.small_jobs == "local",
        }
        over = (self.stages or {}).get(stage) if stage else None  # type: ignore[call-overload]
        if over is not None:
            for k, v in over.model_dump(exclude_unset=True).items():
                if k == "additional_parameters":
                    out[k].update(v or {})
                else:
                    out[k] = v
        return out

    def _executor(self, stage: str | None = "train") -> Any:
        import submitit

        res = self.resources(stage)
        folder = Path(self.folder or "simbench-slurm")
        kwargs = {"slurm_max_num_timeout": self.max_requeues} if self.cluster == "slurm" else {}
        ex = submitit.AutoExecutor(folder=folder, cluster=self.cluster, **kwargs)
        params: dict[str, Any] = {
            "name": f"simbench-{stage}" if stage else "simbench",
            "timeout_min": res["time_min"],
            "cpus_per_task": res["cpus_per_task"],
            "mem_gb": res["mem_gb"],
            "slurm_array_parallelism": self.array_parallelism,
        }
        if res["gpus_per_node"]:
            params["gpus_per_node"] = res["gpus_per_node"]
        for key in ("partition", "account", "qos", "constraint"):
            if res[key]:
                params[f"slurm_{key}"] = res[key]
        extra = dict(res["additional_parameters"])
        if stage == "train":
            extra.setdefault("requeue", True)  # preempted or failed nodes: back to the queue
        extra = {k: v for k, v in extra.items() if v is not False}  # false: option left out
        if extra:
            params["slurm_additional_parameters"] = extra
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        ex.update_parameters(**params)
        return ex

    # ------------------------------------------------------------------ map

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        progress: Progress = None,
        stage: str | None = None,
    ) -> list[Any]:
        """Submit the items as one job array (``stage``: the runner stage, else inferred
        from the items; its resources and batching); wait; results in order (exceptions
        for failed tasks, e.g. a node that died or a timeout). An interrupt or error while
        waiting cancels the unfinished tasks."""
        items = list(items)
        if not items:
            return []
        stage = stage or stage_of(items)
        res = self.resources(stage)
        if res["local"]:
            return self._local_executor(res["cpus_per_task"]).map(fn, items, progress)
        chunks = _chunks(items, res["jobs_per_task"], res["max_tasks"])
        ex = self._executor(stage)
        func = TrainChunk(fn) if stage == "train" else functools.partial(slurm_chunk, fn)
        jobs = ex.map_array(func, chunks)
        self._names = _task_names(jobs, self.cluster)
        results: list[Any] = [None] * len(items)
        offsets = [sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
        pending = dict(enumerate(jobs))
        try:
            self._submitted(stage, jobs, chunks, res)
            self._wait(pending, chunks, offsets, results, progress)
        except BaseException:
            self._cancel(list(pending.values()))
            raise
        return results

    map_training = map

    def _wait(
        self,
        pending: dict[int, Any],
        chunks: list[list[Any]],
        offsets: list[int],
        results: list[Any],
        progress: Progress,
    ) -> None:
        """Collect finished tasks until none is pending; a task that left the SLURM queue
        without a result (killed node, scancel from outside) fails after two polls and
        :data:`LOST_AFTER_S` seconds."""
        from simbench.runner import slurm_status

        poll = self.poll_s or (15.0 if self.cluster == "slurm" else 0.5)
        gone: dict[int, tuple[int, float]] = {}  # task -> (polls out of the queue, since)
        states: dict[str, str] | None = {}
        while pending:
            for i, job in list(pending.items()):
                if self._done(job, use_sacct=states is None):
                    try:
                        got = job.result()
                    except Exception as exc:  # the whole task failed (killed, timed out...)
                        got = [exc] * len(chunks[i])
                    self._finish(i, job, got, chunks, offsets, results, progress)
                    del pending[i]
            if pending and self.cluster == "slurm":
                states = slurm_status.squeue_states([j.job_id for j in pending.values()])
                for i, job in list(pending.items()):
                    if states is None or slurm_status.in_queue(states.get(job.job_id)):
                        gone.pop(i, None)
                        continue
                    n, since = gone.get(i, (0, time.monotonic()))
                    gone[i] = (n + 1, since)
                    late = n + 1 >= 2 and time.monotonic() - since >= LOST_AFTER_S
                    if late and not Path(job.paths.result_pickle).exists():
                        err = RuntimeError(
                            f"SLURM job {job.job_id} left the queue without a result "
                            f"(log: {job.paths.stdout})"
                        )
                        self._finish(i, job, [err] * len(chunks[i]), chunks, offsets, results,
                                     progress)  # fmt: skip
                        del pending[i]
            if pending:
                _sleep(poll)

    def _done(self, job: Any, use_sacct: bool) -> bool:
        """Whether a task has finished: on SLURM, its result file exists (``sacct`` only
        where ``squeue`` is unavailable: accounting is often disabled, and a task that
        leaves the queue without a result is caught by the ``squeue`` check)."""
        if self.cluster != "slurm" or use_sacct:
            return bool(job.done())
        folder = Path(job.paths.folder)
        with contextlib.suppress(OSError):  # refresh NFS attribute caches, as submitit does
            folder.chmod(folder.stat().st_mode)
        return Path(job.paths.result_pickle).exists()

    def _finish(
        self,
        i: int,
        job: Any,
        got: list[Any],
        chunks: list[list[Any]],
        offsets: list[int],
        results: list[Any],
        progress: Progress,
    ) -> None:
        bad = [r for r in got if isinstance(r, BaseException)]
        if bad and len(bad) == len(got):
            self._journal({"event": "failed", "task": self._name(job), "error": str(bad[0])})
        else:
            self._journal({"event": "done", "task": self._name(job), "failed_jobs": len(bad)})
        for j, r in enumerate(got):
            results[offsets[i] + j] = r
        if progress is not None:
            progress(len(chunks[i]))

    # ------------------------------------------------------------------ bookkeeping

    def _name(self, job: Any) -> str:
        return self._names.get(id(job), str(job.job_id))

    def _say(self, line: str) -> None:
        if self.echo is not None:
            self.echo(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def _journal(self, record: dict[str, Any]) -> None:
        """Append one event to ``<folder>/simbench_jobs.jsonl`` (one write per line)."""
        folder = Path(self.folder or "simbench-slurm")
        line = json.dumps({"time": time.time(), **record}, sort_keys=True) + "\n"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / JOURNAL, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:  # bookkeeping only: the run goes on
            self._say(f"warning: cannot write the job journal {folder / JOURNAL}: {exc}")

    def _submitted(
        self, stage: str | None, jobs: list[Any], chunks: list[list[Any]], res: dict[str, Any]
    ) -> None:
        tasks = [self._name(j) for j in jobs]
        array = tasks[0].split("_")[0]
        real = all(t == str(j.job_id) for t, j in zip(tasks, jobs, strict=True))
        pattern = f"{array}_<task>" if real else "<job>"
        out = Path(jobs[0].paths.stdout)
        log = str(out.parent / out.name.replace(str(jobs[0].job_id), pattern, 1))
        self._journal(
            {
                "event": "submitted",
                "stage": stage or "jobs",
                "job": array,
                "tasks": tasks,
                "jobs": sum(len(c) for c in chunks),
                "log": log,
                "cluster": self.cluster,
            }
        )
        gpus = f", {res['gpus_per_node']} GPU" if res["gpus_per_node"] else ", no GPU"
        self._say(
            f"{stage or 'jobs'}: submitted SLURM job {array} ({len(tasks)} tasks for "
            f"{sum(len(c) for c in chunks)} jobs; {res['cpus_per_task']} CPU{gpus}, "
            f"{res['time_min']} min); logs: {log}"
        )

    def _cancel(self, jobs: list[Any]) -> None:
        """Cancel the unfinished tasks (``scancel`` through submitit's ``job.cancel``)."""
        if not jobs:
            return
        ids = [self._name(j) for j in jobs]
        for job in jobs:
            try:
                job.cancel(check=False)
            except Exception as exc:  # the interrupt is what matters; report and go on
                self._say(f"warning: could not cancel SLURM job {job.job_id}: {exc}")
        for task in ids:
            self._journal({"event": "cancelled", "task": task})
        self._say(f"cancelled SLURM jobs: {' '.join(ids)}")

    def _local_executor(self, workers: int) -> LocalExecutor:
        workers = max(1, min(workers, os.cpu_count() or 1))
        if workers not in self._local:
            self._local[workers] = LocalExecutor(workers=workers)
        return self._local[workers]

    def close(self) -> None:
        """Shut down the local pools of ``small_jobs: local`` (the runner calls it)."""
        for ex in self._local.values():
            ex.close()
        self._local.clear()

    def __getstate__(self) -> dict[str, Any]:
        skip = ("_local", "echo", "_names")
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local, self.echo, self._names = {}, None, {}

"""What the SLURM jobs of a run are doing: the journal of the ``slurm`` executor
(``<folder>/simbench_jobs.jsonl``: submissions and the tasks the runner collected),
completed by ``squeue`` (queued, running) and ``sacct`` (finished) where those commands
exist, and by submitit's result files (a task that finished before the runner collected
it). Result files are only tested for existence, never unpickled.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simbench.runner.slurm import JOURNAL

__all__ = ["STATES", "ArrayStatus", "in_queue", "read_journal", "sacct_states", "squeue_states"]

#: task states shown by ``simbench status``, in column order
STATES = ("queued", "running", "done", "failed", "cancelled", "unknown")

_SLURM_STATE = {
    "PENDING": "queued",
    "CONFIGURING": "queued",
    "REQUEUED": "queued",
    "REQUEUE_HOLD": "queued",
    "REQUEUE_FED": "queued",
    "RESV_DEL_HOLD": "queued",
    "SUSPENDED": "queued",
    "PREEMPTED": "queued",  # submitit requeues preempted training tasks
    "RUNNING": "running",
    "COMPLETING": "running",
    "STAGE_OUT": "running",
    "SIGNALING": "running",
    "RESIZING": "running",
    "COMPLETED": "done",
    "CANCELLED": "cancelled",
    "FAILED": "failed",
    "TIMEOUT": "failed",
    "NODE_FAIL": "failed",
    "BOOT_FAIL": "failed",
    "OUT_OF_MEMORY": "failed",
    "DEADLINE": "failed",
}


def _run(cmd: list[str], unknown_ok: bool = False) -> str | None:
    """stdout of ``cmd``, or ``None`` when the command is missing or fails (``unknown_ok``:
    "Invalid job id", i.e. jobs the controller has forgotten, counts as no output)."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return "" if unknown_ok and "invalid job id" in done.stderr.lower() else None
    return done.stdout


def in_queue(state: str | None) -> bool:
    """Whether a SLURM state is a task waiting or running (requeued and preempted count)."""
    return state is not None and _SLURM_STATE.get(state.upper()) in ("queued", "running")


def _arrays(task_ids: Sequence[str]) -> list[str]:
    return sorted({str(t).split("_")[0] for t in task_ids})


def squeue_states(task_ids: Sequence[str]) -> dict[str, str] | None:
    """``{task id: SLURM state}`` of the tasks the controller knows (``squeue -r``: pending
    array tasks one per line; finished ones for ``MinJobAge``); ``None`` when ``squeue`` is
    unavailable or fails."""
    ids = [t for t in _arrays(task_ids) if t.isdigit()]
    if not ids:
        return None
    out = _run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T"], unknown_ok=True)
    if out is None:
        return None
    states = {}
    for line in out.splitlines():
        tid, _, state = line.strip().partition("|")
        if tid:
            states[tid] = state
    return states


def sacct_states(task_ids: Sequence[str]) -> dict[str, str] | None:
    """``{task id: SLURM state}`` from accounting (``sacct``); ``None`` without it (no
    ``sacct``, or accounting disabled on the cluster)."""
    ids = [t for t in _arrays(task_ids) if t.isdigit()]
    if not ids:
        return None
    out = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State"])
    if out is None:
        return None
    states = {}
    for line in out.splitlines():
        tid, _, state = line.strip().partition("|")
        if tid:
            states[tid] = state.split()[0] if state else ""
    return states


@dataclass
class ArrayStatus:
    """One submitted job array: its stage, id, log pattern and the state of each task."""

    stage: str
    job: str
    jobs: int
    log: str
    time: float
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> one of STATES
    cluster: str = "slurm"  # submitit's cluster: slurm, local, debug

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for state in self.tasks.values():
            out[state] += 1
        return out


def read_journal(folder: str | Path, *, live: bool = True) -> list[ArrayStatus]:
    """The job arrays recorded in ``folder/simbench_jobs.jsonl``, oldest first, each task
    with its state: the runner's record when it collected the task, else (SLURM tasks)
    ``squeue``, ``sacct``, the presence of submitit's result file (``live=False``: no
    ``squeue``/``sacct``). Unreadable journal lines are skipped."""
    path = Path(folder) / JOURNAL
    arrays: dict[str, ArrayStatus] = {}
    final: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
            event = rec["event"]
            if event == "submitted":
                a = ArrayStatus(
                    str(rec["stage"]), str(rec["job"]), int(rec["jobs"]), str(rec["log"]),
                    float(rec["time"]),
                )  # fmt: skip
                a.tasks = dict.fromkeys((str(t) for t in rec["tasks"]), "unknown")
                a.cluster = str(rec.get("cluster", "slurm"))
                arrays[a.job] = a
            elif event in ("done", "failed", "cancelled"):
                final[str(rec["task"])] = event
        except (ValueError, KeyError, TypeError):
            continue
    folder = Path(folder)
    open_tasks = []  # on a real SLURM cluster, not collected by the runner
    for a in arrays.values():
        for t in a.tasks:
            if t in final:
                a.tasks[t] = final[t]
            elif a.cluster == "slurm":
                open_tasks.append(t)
    queued = squeue_states(open_tasks) if open_tasks and live else None
    acct = (sacct_states(open_tasks) if open_tasks and live else None) or {}
    for t in open_tasks:
        a = arrays[t.split("_")[0]]
        slurm = (queued or {}).get(t) or acct.get(t)
        if slurm:
            a.tasks[t] = _SLURM_STATE.get(slurm.upper(), "unknown")
        elif (folder / f"{t}_0_result.pkl").exists():
            a.tasks[t] = "done"  # finished; the runner has not collected it (yet)
        elif queued is not None:
            a.tasks[t] = "failed"  # left the queue without a result
    return sorted(arrays.values(), key=lambda a: a.time)

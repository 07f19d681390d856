"""``simbench status RUN``: what a run has done and what its SLURM jobs are doing.

RUN is a suite file: one line per stage with the outputs done (in the cache) and still
to do, then the SLURM job arrays its ``slurm`` executor submitted (from the journal in
the executor's folder, ``squeue`` and ``sacct``): per array the stage, job id, tasks
queued, running, done, failed and cancelled, and the log files. RUN may also be a
folder holding the journal (the executor's ``folder``, or a cache or output folder
above it): then only the jobs are shown. Computes nothing, writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["register", "status_lines"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``status`` sub-command to ``simbench``'s sub-parsers."""
    p = subparsers.add_parser(
        "status",
        help="what a run has computed and what its SLURM jobs are doing",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="the suite YAML file (or a folder with the journal)")
    p.set_defaults(func=_cmd_status)
    return p


def _journal_folder(path: Path) -> Path | None:
    from simbench.runner.slurm import JOURNAL

    for cand in (path, path / "slurm", path / "cache" / "slurm"):
        if (cand / JOURNAL).is_file():
            return cand
    return None


def status_lines(run: str | Path, *, live: bool = True) -> list[str]:
    """The lines ``simbench status RUN`` prints (``live=False``: no squeue/sacct)."""
    from simbench.runner.slurm_status import STATES, read_journal

    run = Path(run)
    lines: list[str] = []
    folder: Path | None
    if run.is_dir():
        folder = _journal_folder(run)
        if folder is None:
            return [f"{run}: no SLURM journal here (nor in slurm/, cache/slurm/)"]
    else:
        from simbench.runner.graph import build_plan
        from simbench.runner.stages import STAGES
        from simbench.suite import load_suite

        suite = load_suite(run)
        plan = build_plan(suite, persist=False)
        sched = plan.schedule(None, verify=False)
        lines.append(f"suite {suite.name}: cache {plan.cache.root}")
        lines.append(f"{'stage':<8} {'done':>6} {'to do':>6} {'total':>6}")
        for stage in STAGES:
            total, todo = sched.totals.get(stage, 0), sched.outputs.get(stage, 0)
            lines.append(f"{stage:<8} {total - todo:>6} {todo:>6} {total:>6}")
        folder = _slurm_folder(suite, plan.cache.root)
        if folder is None:
            lines.append(f"executor {suite.executor_ref().name}: no SLURM jobs")
            return lines
    arrays = read_journal(folder, live=live)
    if not arrays:
        lines.append(f"SLURM: no jobs submitted yet (journal folder {folder})")
        return lines
    lines.append(f"SLURM jobs (journal {folder}):")
    head = f"{'stage':<8} {'job':>10} {'tasks':>5} " + " ".join(f"{s:>9}" for s in STATES)
    lines.append(head + "  submitted            logs")
    for a in arrays:
        c = a.counts()
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.time))
        lines.append(
            f"{a.stage:<8} {a.job:>10} {len(a.tasks):>5} "
            + " ".join(f"{c[s]:>9}" for s in STATES)
            + f"  {when}  {a.log}"
        )
    return lines


def _slurm_folder(suite: Any, cache_root: Path) -> Path | None:
    ref = suite.executor_ref()
    if ref.name != "slurm":
        return None
    folder = ref.params.get("folder")
    if folder is None:
        return Path(cache_root) / "slurm"
    folder = Path(folder)
    return folder if folder.is_absolute() else Path(suite.base_dir) / folder


def _cmd_status(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    from simbench.errors import SimbenchError
    from simbench.suite import SuiteError

    try:
        for line in status_lines(args.run):
            out(line)
    except SuiteError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except SimbenchError as exc:
        print(f"simbench status: error: {exc}", file=sys.stderr)
        return 2
    return 0

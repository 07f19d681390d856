"""``run_suite``: suite -> plan -> train, extract, align, score through an executor ->
results table -> report.

Each stage runs only the jobs :meth:`Plan.schedule` says are missing; jobs of a stage are
independent and go through the suite's executor (``Executor.map``; training through
``map_training`` where the executor has it). Jobs write into the cache themselves; the
driver only collects which ones failed. A job that fails (its process died, its model
could not be loaded...) fails every cell that depends on it *for this run*: those rows
carry the upstream error and are retried by the next run. After each stage the driver
prints ``<stage>: computed N, cached M`` (outputs: models, extract files, alignments,
score cells).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simbench.runner.graph import Plan, Schedule, build_plan
from simbench.runner.progress import stage_progress
from simbench.runner.stages import (
    AlignJob,
    ChecksJob,
    ExtractJob,
    ScoreJob,
    TrainJob,
    error_text,
    run_job,
)
from simbench.runner.supervise import Limits

__all__ = ["RunSummary", "StageStats", "make_executor", "run_suite"]


@dataclass
class StageStats:
    """Outputs of one stage in one run: computed now, found in the cache, failed."""

    computed: int = 0
    cached: int = 0
    failed: int = 0
    jobs: int = 0
    seconds: float = 0.0

    def line(self, stage: str) -> str:
        text = f"{stage}: computed {self.computed}, cached {self.cached}"
        if self.failed:
            text += f", failed {self.failed}"
        return text + f" ({self.jobs} jobs, {self.seconds:.1f} s)"


@dataclass
class RunSummary:
    """What :func:`run_suite` did: per-stage counts, the table, the files written."""

    plan: Plan
    schedule: Schedule
    stats: dict[str, StageStats] = field(default_factory=dict)
    results: Any = None  # pandas.DataFrame
    paths: dict[str, Path] = field(default_factory=dict)
    report: dict[str, Path] | None = None
    dry_run: bool = False
    failed_keys: dict[str, str] = field(default_factory=dict)  # key -> upstream error
    #: the per-model forward passes (the first half of the extract stage)
    represent: StageStats | None = None

    @property
    def ok(self) -> bool:
        """No job failed (cells whose metric raised do not count: they are results)."""
        stats = [*self.stats.values(), *([self.represent] if self.represent else [])]
        return all(s.failed == 0 for s in stats)


def make_executor(ref: Any) -> Any:
    """The executor plugin named by a suite's ``executor`` reference."""
    from simbench.registry import default_registry

    return default_registry().create("executor", ref.name, **dict(ref.params))


def _map(
    executor: Any,
    fn: Callable,
    jobs: list[Any],
    stage: str,
    training: bool,
    limits: Limits | None = None,
    say: Callable[[str], None] | None = None,
) -> list[Any]:
    if not jobs:
        return []
    method = getattr(executor, "map_training", None) if training else None
    method = method or executor.map
    # a bar on a terminal, heartbeat lines otherwise, nothing for a silent run
    bar = stage_progress(stage, len(jobs), None if say in (None, _silent) else say)
    try:
        try:
            params = inspect.signature(method).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        kwargs: dict[str, Any] = {"limits": limits} if limits and "limits" in params else {}
        if "progress" in params:
            results = method(fn, jobs, progress=bar.update, **kwargs)
        else:
            results = method(fn, jobs, **kwargs)
            bar.update(len(jobs))
    finally:
        bar.close()
    if len(results) != len(jobs):
        raise RuntimeError(
            f"executor {type(executor).__name__} returned {len(results)} results for "
            f"{len(jobs)} jobs"
        )
    return list(results)


def _silent(_line: str) -> None:
    """The ``echo`` of a run that prints nothing."""


def _failed(result: Any) -> str | None:
    if isinstance(result, BaseException):
        return error_text(result)
    return None


def run_suite(
    suite: Any,
    *,
    dry_run: bool = False,
    force: str | None = None,
    report: bool = True,
    executor: Any = None,
    echo: Callable[[str], None] | None = print,
    verbose: bool = False,
    threads: int | None = None,
) -> RunSummary:
    """Run (or with ``dry_run`` only plan) a suite: a path or a loaded ``Suite``.

    ``force``: a stage name whose outputs are recomputed (with everything depending on
    them); ``report``: write the report and leaderboard at the end; ``executor``: an
    executor instance overriding the suite's; ``echo``: where progress lines and the
    closing summary (:func:`simbench.runner.summary.format_summary`) go (None: silent);
    ``verbose``: also echo the full ``leaderboard.md``; ``threads``: torch threads per
    job, overriding the suite's ``run.threads`` (default: the executor divides the cores
    among the jobs it runs at once).
    """
    from simbench.suite import Suite, load_suite

    say = echo or _silent
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    plan = build_plan(suite, persist=not dry_run)
    for w in plan.warnings:
        say(f"warning: {w}")
    threads = threads or suite.run.threads
    if dry_run:
        sched = plan.schedule(force, verify=False, threads=threads)
        say(plan.describe(sched))
        if report:
            from simbench.runner.test_plan import describe_tests

            say(describe_tests(plan))
        return RunSummary(plan, sched, dry_run=True)

    stale = _remove_stale_temps(plan.cache.root, Path(suite.output_dir))
    if stale:
        say(f"removed {stale} temporary files left by interrupted writes")
    sched = plan.schedule(force, verify=True, threads=threads)
    executor = executor or make_executor(suite.executor_ref())
    if hasattr(executor, "bind"):
        executor.bind(plan.cache.root)
    if hasattr(executor, "echo"):  # the slurm executor prints job ids and log paths
        executor.echo = say
    summary = RunSummary(plan, sched)
    say(
        f"suite {suite.name}: {len(plan.models)} models, {len(plan.pairs)} pairs, "
        f"{len(plan.cells)} cells; cache {plan.cache.root}"
    )

    try:
        _run_stages(plan, sched, executor, summary, say)
    finally:
        close = getattr(executor, "close", None)
        if callable(close):
            close()

    # -- results --
    from simbench.runner.results import assemble, write_checks, write_results

    df, meta = assemble(plan, summary.failed_keys)
    meta["tests"] = suite.tests  # the leaderboard's ground-truth tests (None: default)
    out_dir = Path(suite.output_dir)
    summary.results = df
    summary.paths = write_results(df, meta, out_dir)
    if plan.checks is not None:
        rec = plan.cache.get_json("checks", plan.checks.key)
        if rec is not None:
            summary.paths["checks"] = write_checks(rec["rows"], out_dir)
    bad = int(df["error"].notna().sum())
    say(
        f"results: {len(df)} rows ({bad} with an error) -> {summary.paths['parquet']}, "
        f"{summary.paths['csv'].name}"
    )
    if report:
        # per-model data for the ground-truth tests (isolated: simbench.runner.model_data_job)
        from simbench.runner.model_data_job import export_model_data

        export_model_data(plan, out_dir, say)
        summary.report = _report(out_dir, plan.cache, say, verbose)
    if echo is not None:
        from simbench.runner.summary import format_summary

        say("")
        say(format_summary(summary))
    return summary


def _run_stages(
    plan: Plan, sched: Schedule, executor: Any, summary: RunSummary, say: Callable[[str], None]
) -> None:
    """Train, extract, align, score; fills ``summary.stats`` and ``summary.failed_keys``."""
    run = plan.suite.run
    jobs_limit = Limits(job_s=run.job_timeout_s)
    # -- train --
    t0 = time.perf_counter()
    failed_models: dict[str, str] = {}  # train key -> error
    results = _map(executor, run_job, list(sched.train), "train", True, jobs_limit, say)
    for job, res in zip(sched.train, results, strict=True):
        err = _failed(res)
        if err:
            failed_models[_spec_key(job)] = f"training failed: {err}"
    n_train = len(sched.train)
    _stats(summary, "train", sched, len(failed_models), t0, n_train, say, _reused(results))

    # -- extract: one forward pass per model (its store), then the pair statistics --
    t0 = time.perf_counter()
    failed_stores: dict[str, str] = {}  # represent key -> error
    runnable_r = []
    for job in sched.represent:
        err = _model_failure(plan, failed_models, job.model.ref)
        if err:
            failed_stores[job.key] = err
        else:
            runnable_r.append(job)
    # (with the extract stage's executor resources: a GPU on SLURM)
    results = _map(executor, run_job, runnable_r, "extract", False, jobs_limit)
    for job, res in zip(runnable_r, results, strict=True):
        err = _failed(res)
        if err:
            failed_stores[job.key] = f"extraction failed: {err}"
    todo, total = sched.outputs["represent"], sched.totals["represent"]
    reused = _reused(results)
    summary.represent = StageStats(
        todo - len(failed_stores) - reused,
        total - todo + reused,
        len(failed_stores),
        len(runnable_r),
        time.perf_counter() - t0,
    )
    say(summary.represent.line("represent"))

    t0 = time.perf_counter()
    failed_keys: dict[str, str] = {}  # extract/align/score key -> error
    runnable: list[ExtractJob] = []
    for job in sched.extract:
        err = _model_failure(plan, failed_models, job.model_a.ref, job.model_b.ref)
        err = err or failed_stores.get(job.store_a) or failed_stores.get(job.store_b)
        if err:
            _fail_extract(job, err, failed_keys)
        else:
            runnable.append(job)
    results = _map(executor, run_job, runnable, "extract", False, jobs_limit, say)
    for job, res in zip(runnable, results, strict=True):
        err = _failed(res)
        if err:
            _fail_extract(job, f"extraction failed: {err}", failed_keys)
    n_fail = sum(len(j.layers) + bool(j.pooled_key) for j in sched.extract) - sum(
        len(j.layers) + bool(j.pooled_key)
        for j, r in zip(runnable, results, strict=True)
        if not _failed(r)
    )
    _stats(summary, "extract", sched, n_fail, t0, len(runnable), say, _reused(results))

    # -- align --
    t0 = time.perf_counter()
    runnable_a: list[AlignJob] = []
    n_fail = 0
    for job in sched.align:
        if job.extract_key in failed_keys:
            for t in job.tasks:
                failed_keys[t.key] = failed_keys[job.extract_key]
            n_fail += len(job.tasks)
        else:
            runnable_a.append(job)
    results = _map(executor, run_job, runnable_a, "align", False, jobs_limit, say)
    for job, res in zip(runnable_a, results, strict=True):
        err = _failed(res)
        if err:
            for t in job.tasks:
                failed_keys[t.key] = f"alignment job failed: {err}"
            n_fail += len(job.tasks)
    _stats(summary, "align", sched, n_fail, t0, len(runnable_a), say, _reused(results))

    # -- score (+ invariance checks) --
    t0 = time.perf_counter()
    runnable_s: list[Any] = []
    n_fail = 0
    for job in sched.score:
        if isinstance(job, ChecksJob):
            if _model_failure(plan, failed_models, job.model_a.ref, job.model_b.ref):
                n_fail += 1
            else:
                runnable_s.append(job)
            continue
        keep = []
        for cell in job.cells:
            upstream = failed_keys.get(cell.extract_key) or (
                failed_keys.get(cell.align_key) if cell.align_key else None
            )
            if upstream:
                failed_keys[cell.key] = upstream
                n_fail += 1
            else:
                keep.append(cell)
        if keep:
            runnable_s.append(dataclasses.replace(job, cells=tuple(keep)))
    results, runnable_s = _score(
        plan, executor, runnable_s, Limits(run.job_timeout_s, run.cell_timeout_s), say
    )
    for job, res in zip(runnable_s, results, strict=True):
        err = _failed(res)
        if not err:
            continue
        if isinstance(job, ScoreJob):
            for cell in job.cells:
                failed_keys[cell.key] = f"score job failed: {err}"
            n_fail += len(job.cells)
        else:
            n_fail += 1
            say(f"warning: invariance checks failed: {err}")
    _stats(summary, "score", sched, n_fail, t0, len(runnable_s), say, _reused(results))
    summary.failed_keys = failed_keys


def _remove_stale_temps(cache: Path, out_dir: Path) -> int:
    """Temporary files of writes a kill interrupted, in the cache and the output folder
    (:func:`simbench.io.remove_stale_temps`: only abandoned ones)."""
    from simbench.io import remove_stale_temps

    roots = [out_dir] if cache.resolve().is_relative_to(out_dir.resolve()) else [cache, out_dir]
    return sum(remove_stale_temps(r) for r in roots if r.is_dir())


def _score(
    plan: Plan,
    executor: Any,
    jobs: list[Any],
    limits: Limits,
    say: Callable[[str], None] | None = None,
) -> tuple[list[Any], list[Any]]:
    """Run the score jobs; a cell stopped at ``run.cell_timeout_s`` is recorded (with the
    limit) and the rest of its job runs again, until no cell is left. Returns the jobs
    run and their results (the last attempt of each)."""
    from simbench.runner.stages import score_inputs, timeout_record
    from simbench.runner.supervise import TimeLimitExceeded

    done_jobs: list[Any] = []
    done_results: list[Any] = []
    while jobs:
        results = _map(executor, run_job, jobs, "score", False, limits, say)
        retry = []
        for job, res in zip(jobs, results, strict=True):
            stopped = isinstance(res, TimeLimitExceeded) and res.what == "cell"
            cells = {c.key: c for c in job.cells} if isinstance(job, ScoreJob) else {}
            if not (stopped and res.label in cells):
                done_jobs.append(job)
                done_results.append(res)
                continue
            hung = cells[res.label]
            plan.cache.put_json("score", hung.key, timeout_record(res.limit_s), score_inputs(hung))
            rest = tuple(
                c for c in job.cells if not plan.cache.has_json("score", c.key, verify=False)
            )
            if rest:
                retry.append(dataclasses.replace(job, cells=rest))
            else:
                done_jobs.append(job)
                done_results.append({"written": 0})
        jobs = retry
    return done_results, done_jobs


def _reused(results: list[Any]) -> int:
    """Outputs that jobs found written by a concurrent run (after waiting for their locks)."""
    return sum(int(r.get("reused", 0)) for r in results if isinstance(r, dict))


def _spec_key(job: TrainJob) -> str:
    from simbench.train.config import ModelSpec

    return ModelSpec.model_validate(job.spec).key()


def _model_failure(plan: Plan, failed_models: dict[str, str], *refs: str) -> str | None:
    for ref in refs:
        m = plan.models[ref]
        if m.train_key is not None and m.train_key in failed_models:
            return f"{ref}: {failed_models[m.train_key]}"
    return None


def _fail_extract(job: ExtractJob, err: str, failed_keys: dict[str, str]) -> None:
    for _, key in job.layers:
        failed_keys[key] = err
    if job.pooled_key:
        failed_keys[job.pooled_key] = err


def _stats(
    summary: RunSummary,
    stage: str,
    sched: Schedule,
    failed: int,
    t0: float,
    jobs: int,
    say: Callable[[str], None],
    reused: int = 0,
) -> None:
    todo, total = sched.outputs[stage], sched.totals[stage]
    st = StageStats(
        todo - failed - reused, total - todo + reused, failed, jobs, time.perf_counter() - t0
    )
    summary.stats[stage] = st
    say(st.line(stage))


def _report(
    out_dir: Path, cache: Any, say: Callable[[str], None], verbose: bool = False
) -> dict[str, Path] | None:
    """``simbench.report.write_report(out_dir)``, skipped when its inputs (the results and
    invariance-check files, simbench's version) are those of the report already there."""
    from simbench.io import sha256_file
    from simbench.runner.cache import make_key

    try:
        from simbench.report import write_report
    except ImportError as exc:
        say(f"report: skipped (simbench.report is not available: {exc})")
        return None
    import simbench

    digests = [
        sha256_file(p) if p.is_file() else None
        for p in (
            out_dir / "results.csv",
            out_dir / "invariance_checks.csv",
            out_dir / "model_data" / "index.json",
        )
    ]
    key = make_key("report", str(out_dir.resolve()), digests, simbench.__version__)
    rec = cache.get_json("report", key)
    if rec is not None and all(Path(p).exists() for p in rec["paths"].values()):
        paths = {k: Path(v) for k, v in rec["paths"].items()}
        state = "up to date"
    else:
        try:
            paths = write_report(out_dir)
        except Exception as exc:  # the results are written; a report failure is reported only
            say(f"report: failed: {error_text(exc)}")
            return None
        cache.put_json("report", key, {"paths": {k: str(v) for k, v in paths.items()}})
        state = "written"
    board = paths.get("leaderboard_md")
    if verbose and board is not None and Path(board).is_file():
        say("")
        say(Path(board).read_text(encoding="utf-8").rstrip())
        say("")
    say(f"report ({state}): {paths.get('report_html')}")
    return paths

"""``simbench run SUITE|--example NAME [-o KEY=VALUE]... [--dry-run] [--force STAGE]``.

Trains or loads every model of the suite, extracts, aligns and scores every cell,
writes ``results.parquet``/``results.csv``/``results.meta.json`` into the suite's output
folder and then the report (``simbench report``). Only what is missing from the cache
is computed; each stage prints ``computed N, cached M``. ``--dry-run`` prints the plan
(jobs per stage, what is cached, an estimate of the work) and computes nothing.
``--force STAGE`` recomputes that stage (train, extract, align, score) and everything
depending on it. ``-o key.path=value`` overrides a key of the suite (the value read as
YAML; repeatable), validated like the file. ``--example quickstart`` runs the suite shipped
in the package (outputs under the working directory). An invalid suite prints
``FILE:LINE: key: message`` lines (``-o KEY=VALUE: key: message`` for an override) and
exits 2. The run ends with a summary: the top of the leaderboard, the failed cells with
their first reasons, the output files (``--verbose``: the whole leaderboard too;
``--quiet``: nothing but warnings and errors). Without a terminal each stage prints a
heartbeat line every 30 s (``SIMBENCH_HEARTBEAT_S``).
Ctrl-C stops the run at once (worker processes are killed) and exits 130; running the
same command again resumes from what was cached.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from simbench.runner.stages import STAGES


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``run`` sub-command to ``simbench``'s sub-parsers."""
    p = subparsers.add_parser(
        "run",
        help="run a suite: train, extract, align, score; results table and report",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("suite", type=Path, nargs="?", help="the suite YAML file")
    p.add_argument(
        "--example", metavar="NAME", help="run a suite shipped with simbench (quickstart)"
    )
    p.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a key of the suite, e.g. -o probe.images=500 (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; compute nothing")
    p.add_argument(
        "--force", choices=STAGES, default=None, help="recompute this stage and what depends on it"
    )
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per job (default: the suite's run.threads, else the cores "
        "divided among the jobs running at once)",
    )
    p.set_defaults(func=_cmd_run)
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from simbench.errors import SimbenchError
    from simbench.runner.driver import run_suite
    from simbench.suite import SuiteError
    from simbench.suite_overrides import format_problems, load_with_overrides

    if (args.suite is None) == (args.example is None):
        print("simbench run: error: give a suite file or --example NAME", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print(f"simbench run: error: --threads must be >= 1; got {args.threads}", file=sys.stderr)
        return 2
    try:
        if args.example is not None:
            from simbench.examples import example_text

            text = example_text(args.example)
            name = f"<example {args.example}>"
            suite = load_with_overrides(name, args.override, text=text, base_dir=Path.cwd())
        else:
            suite = load_with_overrides(args.suite, args.override)
    except SuiteError as exc:
        print(format_problems(exc), file=sys.stderr)
        return 2
    except SimbenchError as exc:  # an unknown example
        print(f"simbench run: error: {exc}", file=sys.stderr)
        return 2
    verbosity = getattr(args, "verbosity", 0)
    try:
        summary = run_suite(
            suite,
            dry_run=args.dry_run,
            force=args.force,
            report=not args.no_report,
            echo=None if verbosity < 0 else print,
            verbose=verbosity > 0,
            threads=args.threads,
        )
    except SimbenchError as exc:  # plan errors, unknown plugins; other errors are bugs
        print(f"simbench run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the executor has killed its workers: nothing to wait for
        print(
            f"simbench run: interrupted; what finished is cached: run `simbench run "
            f"{_command(args)}` again to resume",
            file=sys.stderr,
        )
        _exit_now(130)
    return 0 if summary.ok else 1


def _command(args: argparse.Namespace) -> str:
    """The suite and overrides of this command, to repeat it."""
    import shlex

    what = [str(args.suite)] if args.suite is not None else ["--example", args.example]
    for o in args.override:
        what += ["-o", o]
    return shlex.join(what)


def _exit_now(code: int) -> None:
    """End the process now: every file was written atomically and the worker processes
    are dead, so there is nothing to clean up, while the interpreter's teardown (torch,
    BLAS pools, thousands of objects) takes seconds after Ctrl-C."""
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)

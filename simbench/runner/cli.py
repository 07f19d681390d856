"""``simbench run SUITE [--dry-run] [--force STAGE] [--no-report]``.

Trains or loads every model of the suite, extracts, aligns and scores every cell,
writes ``results.parquet``/``results.csv``/``results.meta.json`` into the suite's output
folder and then the report (``simbench report``). Only what is missing from the cache
is computed; each stage prints ``computed N, cached M``. ``--dry-run`` prints the plan
(jobs per stage, what is cached, an estimate of the work) and computes nothing.
``--force STAGE`` recomputes that stage (train, extract, align, score) and everything
depending on it. An invalid suite prints ``FILE:LINE: key: message`` lines and exits 2.
"""

from __future__ import annotations

import argparse
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
    p.add_argument("suite", type=Path, help="the suite YAML file")
    p.add_argument("--dry-run", action="store_true", help="print the plan; compute nothing")
    p.add_argument(
        "--force", choices=STAGES, default=None, help="recompute this stage and what depends on it"
    )
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.set_defaults(func=_cmd_run)
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from simbench.errors import SimbenchError
    from simbench.runner.driver import run_suite
    from simbench.suite import SuiteError, load_suite

    try:
        suite = load_suite(args.suite)
    except SuiteError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        summary = run_suite(
            suite, dry_run=args.dry_run, force=args.force, report=not args.no_report
        )
    except SimbenchError as exc:  # plan errors, unknown plugins; other errors are bugs
        print(f"simbench run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simbench run: interrupted; run it again to resume", file=sys.stderr)
        return 130
    return 0 if summary.ok else 1

"""The report and leaderboard of a suite run (issue #4, deliverable 5).

:func:`write_report` reads ``results.parquet`` (or ``results.csv``), ``results.meta.json``
and, when present, ``invariance_checks.csv`` from a run's output folder and writes
``report.md`` (figures as PNG files under ``figures/``), ``report.html`` (self-contained:
inline CSS, PNGs as base64 data URIs), ``leaderboard.md`` and ``leaderboard.csv``.
The ranking rule is documented in :mod:`simbench.report.leaderboard`.
``simbench report RESULTS_DIR`` runs it from the command line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simbench.errors import SimbenchError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ReportError", "load_results", "register", "write_report"]


class ReportError(SimbenchError, ValueError):
    """A results folder the report cannot be made from (missing or malformed table)."""


def write_report(output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the report and leaderboard of the run in ``output_dir``; return their paths.

    Keys: ``report_md``, ``report_html``, ``leaderboard_md``, ``leaderboard_csv`` and
    ``figures`` (the folder of the PNGs that ``report.md`` links). Raises
    :class:`ReportError` when the folder has no usable results table.
    """
    from simbench.report.writer import write_report as _write

    return _write(output_dir)


def load_results(output_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The results table and meta dict of a run (:func:`simbench.report.writer.load_results`)."""
    from simbench.report.writer import load_results as _load

    return _load(output_dir)


# -- command line -------------------------------------------------------------------------
def _cmd_report(args: argparse.Namespace) -> int:
    paths = write_report(args.results_dir)
    if not args.quiet:
        print(paths["leaderboard_md"].read_text())
        for key in ("report_md", "report_html", "leaderboard_md", "leaderboard_csv"):
            print(f"wrote {paths[key]}")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command to ``simbench``'s sub-parsers."""
    p = subparsers.add_parser(
        "report",
        help="write report.md, report.html and the leaderboard of a run's results folder",
        description="Reads RESULTS_DIR/results.parquet (or .csv), results.meta.json and "
        "invariance_checks.csv if present; writes report.md, report.html, leaderboard.md, "
        "leaderboard.csv and figures/ there. Exits 2 when the folder holds no results.",
    )
    p.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="a run's output folder")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the leaderboard")
    p.set_defaults(func=_cmd_report)
    return p

"""The runner: suite -> job graph -> cached stages -> results.

``run(suite)`` is the Python entry point of ``simbench run``: it returns the tidy results
table (:mod:`simbench.runner.results`); see :func:`simbench.runner.driver.run_suite` for
the options and the per-stage counts.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["run"]


def run(
    suite: str | os.PathLike | Any,
    *,
    force: str | None = None,
    report: bool = True,
    executor: Any = None,
    quiet: bool = False,
) -> Any:
    """Run a suite (a YAML path or a loaded :class:`~simbench.suite.Suite`); return the
    results ``DataFrame``. Only what the cache lacks is computed."""
    from simbench.runner.driver import run_suite

    summary = run_suite(
        suite, force=force, report=report, executor=executor, echo=None if quiet else print
    )
    return summary.results

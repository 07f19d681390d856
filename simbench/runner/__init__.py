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
    models: dict[str, Any] | None = None,
    force: str | None = None,
    report: bool = True,
    executor: Any = None,
    quiet: bool = False,
) -> Any:
    """Run a suite (a YAML path, a dict of the same keys, or a loaded
    :class:`~simbench.suite.Suite`); return the results ``DataFrame``. Only what the cache
    lacks is computed.

    ``models``: ``{id: nn.Module}`` (or ``{id: {"module": m, "normalization": {mean, std},
    "input_size": n, "layers": [globs], "init_variance": v}}``) added to the suite's
    ``models`` as foreign models (:mod:`simbench.runner.modules`); they live in this
    process, so the stages then run inline unless ``executor`` says otherwise."""
    from simbench.runner.driver import run_suite

    if models or isinstance(suite, dict):
        from simbench.runner.modules import suite_with_modules

        suite = suite_with_modules(suite, models or {})
        if models and executor is None:
            from simbench.runner.executors import LocalExecutor

            executor = LocalExecutor(workers=1)

    summary = run_suite(
        suite, force=force, report=report, executor=executor, echo=None if quiet else print
    )
    return summary.results

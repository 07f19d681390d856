"""The executor protocol (hookspec ``simbench_register_executors``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from simbench.plugin import Plugin


class Executor(Plugin):
    """Runs independent jobs and returns their results in order.

    ``map(fn, items)`` calls the picklable ``fn`` on every item (where is the executor's
    business: local processes, SLURM jobs...) and returns the results in the order of
    ``items``; an exception in one job is returned as that job's result (an ``Exception``
    instance), never raised, so one failing cell cannot stop a suite.
    """

    kind: ClassVar[str] = "executor"

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        raise TypeError(f"{type(self).__name__} must define map(fn, items)")

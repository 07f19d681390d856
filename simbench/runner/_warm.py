"""Imported by the ``forkserver`` of :class:`simbench.runner.executors.LocalExecutor`:
pays, once, for the imports and the plugin registry every worker needs (workers fork
from the server with them loaded)."""

from __future__ import annotations

import torch  # noqa: F401

import simbench.runner.stages  # noqa: F401
from simbench.registry import default_registry

default_registry()

"""The plugin contract: one pluggy hook per plugin kind.

A plugin package implements any of these hooks in a module named by an entry point
of the group ``simbench`` (see ``plugins/simbench-example-metric``). simbench's own
built-ins are registered through the same hooks (``simbench.builtin``). Every hook
takes no argument and returns a sequence of plugin *classes*; each class has a unique
``name`` within its kind and a docstring whose first line is its summary.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

PROJECT = "simbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def simbench_register_metrics() -> Sequence[type]:
    """Return metric classes (subclasses of :class:`simbench.Metric`).

    A metric scores two layers. It declares ``consumes`` (representations or weight
    covariances), ``symmetric``, ``higher_is_better``, ``invariances`` (a set of
    :class:`simbench.Invariance`), ``streaming`` (accepts batch-accumulated
    :class:`simbench.Moments`), and takes its parameters, with defaults, in ``__init__``.
    Calling it on ``(X, Y)`` returns a float; ``evaluate`` returns a :class:`simbench.Score`.
    """


@hookspec
def simbench_register_alignments() -> Sequence[type]:
    """Return alignment classes (subclasses of :class:`simbench.Alignment`).

    ``fit(X, Y)`` learns a linear map ``T`` of shape ``(d_x, d_y)`` with ``Y ≈ X T``
    (MATH.md: Alignments), stores it as ``T_`` and returns the fitted object; its
    ``transform(X)`` returns ``X @ T``.
    """


@hookspec
def simbench_register_shrinkages() -> Sequence[type]:
    """Return eigenvalue-shrinkage classes (subclasses of :class:`simbench.Shrinkage`).

    Called with the eigenvalues of a normalised weight covariance and the aspect ratio
    ``gamma = d_in / n_out``; returns the shrunk eigenvalues (MATH.md: Shrinkage).
    """


@hookspec
def simbench_register_architectures() -> Sequence[type]:
    """Return architecture classes: each builds an ``nn.Module`` and names its
    comparable layers (input representation, output representation, weight, init
    variance for every learned linear operator)."""


@hookspec
def simbench_register_datasets() -> Sequence[type]:
    """Return dataset classes: each yields uint8 images and integer labels with a
    train/test split, deterministically from its seeds."""


@hookspec
def simbench_register_executors() -> Sequence[type]:
    """Return executor classes: each runs a list of independent jobs (locally, on
    SLURM, ...) and returns their results in order."""


@hookspec
def simbench_register_tests() -> Sequence[type]:
    """Return ground-truth test classes (subclasses of ``GroundTruthTest``).

    A test scores every (metric, alignment) of a board in [0, 1] with a bootstrap interval
    over its resampling unit (MATH.md: Ground-truth tests). It declares the boards it
    applies to (``representations``, ``weights``), says which inputs a suite lacks
    (``missing(ctx)``) and computes per-row unit scores (``score(ctx, row)``).
    """


#: plugin kind -> name of the hook that registers it
KIND_HOOKS: dict[str, str] = {
    "architecture": "simbench_register_architectures",
    "dataset": "simbench_register_datasets",
    "alignment": "simbench_register_alignments",
    "metric": "simbench_register_metrics",
    "shrinkage": "simbench_register_shrinkages",
    "executor": "simbench_register_executors",
    "test": "simbench_register_tests",
}
KINDS: tuple[str, ...] = tuple(KIND_HOOKS)

ENTRY_POINT_GROUP = PROJECT

"""simbench's own plugins, registered through the same hooks as third-party packages.

This module is the target of simbench's own ``simbench`` entry point
(``builtin = "simbench.builtin"`` in pyproject.toml). Each hook imports the modules
of its kind and returns every concrete plugin class they define.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence

from simbench.hookspecs import hookimpl

METRIC_MODULES = (
    "simbench.metrics.cka",
    "simbench.metrics.cca",
    "simbench.metrics.shape",
    "simbench.metrics.rsa",
    "simbench.metrics.weights",
    "simbench.metrics.srm",
    "simbench.metrics.neighbours",
    "simbench.metrics.predictivity",
    "simbench.metrics.dependence",
    "simbench.metrics.riemannian",
    "simbench.metrics.gaussian_shape",
)
ALIGNMENT_MODULES = (
    "simbench.alignments.basic",
    "simbench.alignments.cca",
    "simbench.alignments.srm",
)
SHRINKAGE_MODULES = ("simbench.shrinkage",)
ARCHITECTURE_MODULES = (
    "simbench.models.vgg",
    "simbench.models.tiny10",
    "simbench.models.timm_models",
    "simbench.models.torchvision_models",
    "simbench.models.foreign",
)
EXECUTOR_MODULES = ("simbench.runner.executors", "simbench.runner.slurm")
TEST_MODULES = ("simbench.groundtruth.from_results", "simbench.groundtruth.from_models")
DATASET_MODULES = (
    "simbench.data.embedded",
    "simbench.data.torchvision_sets",
    "simbench.data.imagefolder",
    "simbench.data.npz",
    "simbench.data.variants",
)


def plugins_in(module_names: Sequence[str], base: type) -> list[type]:
    """Concrete subclasses of ``base`` with a ``name``, defined in the given modules."""
    found: list[type] = []
    for module_name in module_names:
        module = importlib.import_module(module_name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, base)
                and obj.__module__ == module.__name__
                and obj.__dict__.get("name")
            ):
                found.append(obj)
    return found


@hookimpl
def simbench_register_metrics() -> list[type]:
    from simbench.metrics.base import Metric

    return plugins_in(METRIC_MODULES, Metric)


@hookimpl
def simbench_register_alignments() -> list[type]:
    from simbench.alignments.base import Alignment

    return plugins_in(ALIGNMENT_MODULES, Alignment)


@hookimpl
def simbench_register_shrinkages() -> list[type]:
    from simbench.shrinkage import Shrinkage

    return plugins_in(SHRINKAGE_MODULES, Shrinkage)


@hookimpl
def simbench_register_architectures() -> list[type]:
    from simbench.models.base import Architecture

    return plugins_in(ARCHITECTURE_MODULES, Architecture)


@hookimpl
def simbench_register_datasets() -> list[type]:
    from simbench.data.base import Dataset

    return plugins_in(DATASET_MODULES, Dataset)


@hookimpl
def simbench_register_executors() -> list[type]:
    from simbench.runner.base import Executor

    return plugins_in(EXECUTOR_MODULES, Executor)


@hookimpl
def simbench_register_tests() -> list[type]:
    from simbench.groundtruth.base import GroundTruthTest

    return plugins_in(TEST_MODULES, GroundTruthTest)

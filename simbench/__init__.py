"""simbench: how similar are two trained networks, layer by layer, and which metric can be trusted.

Public API (DESIGN.md)::

    import simbench
    simbench.list_plugins(kind=None)            # DataFrame of every plugin
    m = simbench.get_metric("cka", kernel="linear")
    m(X, Y)                                      # float; X, Y numpy or torch, (n, d)
    a = simbench.get_alignment("procrustes").fit(X, Y)
    a.T                                          # (d_x, d_y) with Y ≈ X @ a.T
    a.transform(X)                               # X @ a.T
    simbench.run("suite.yaml")                   # results DataFrame (tidy, one row per score)
    simbench.compare(module_a, module_b, images) # any two nn.Modules (simbench.compare_any)
    simbench.compare_many(reps, metrics=["cka"])  # {model: {layer: (n, d)}}, all pairs
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from simbench.alignments.base import Alignment
from simbench.compare_many import compare_many
from simbench.errors import DuplicatePluginError, NotFittedError, UnknownPluginError
from simbench.metrics.base import Consumes, Metric
from simbench.numerics.blocks import BlockMoments
from simbench.numerics.moments import Moments
from simbench.plugin import Invariance, Plugin, Score
from simbench.registry import default_registry, reload
from simbench.runner import run
from simbench.shrinkage import Shrinkage
from simbench.uncertainty import Uncertainty

if TYPE_CHECKING:
    import pandas as pd

try:
    __version__ = version("simbench")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "Alignment",
    "BlockMoments",
    "Consumes",
    "DuplicatePluginError",
    "Invariance",
    "Metric",
    "Moments",
    "NotFittedError",
    "Plugin",
    "Score",
    "Shrinkage",
    "Uncertainty",
    "UnknownPluginError",
    "__version__",
    "compare",
    "compare_many",
    "get_alignment",
    "get_metric",
    "get_plugin",
    "get_shrinkage",
    "list_plugins",
    "reload",
    "run",
]


def list_plugins(kind: str | None = None) -> pd.DataFrame:
    """Every installed plugin, optionally of one ``kind``: kind, name, package, version, summary."""
    import pandas as pd

    rows = [r.as_dict() for r in default_registry().records(kind)]
    return pd.DataFrame(rows, columns=["kind", "name", "package", "version", "summary"])


def get_plugin(kind: str, name: str, **params: Any) -> Any:
    """An instance of plugin ``kind``/``name`` with ``params`` (validated)."""
    return default_registry().create(kind, name, **params)


def get_metric(name: str, **params: Any) -> Metric:
    """A metric instance, e.g. ``get_metric("cka", kernel="rbf")``."""
    return get_plugin("metric", name, **params)


def get_alignment(name: str, **params: Any) -> Alignment:
    """An unfitted alignment instance, e.g. ``get_alignment("procrustes").fit(X, Y)``."""
    return get_plugin("alignment", name, **params)


def get_shrinkage(name: str, **params: Any) -> Shrinkage:
    """An eigenvalue-shrinkage instance (``"gm"`` or ``"none"`` built in)."""
    return get_plugin("shrinkage", name, **params)


def __getattr__(name: str) -> Any:
    """``simbench.compare`` (imported on first use: it needs torch)."""
    if name == "compare":
        import simbench.compare

        return simbench.compare
    raise AttributeError(f"module 'simbench' has no attribute {name!r}")

"""``simbench.compare_many``: every pair of models × layer pairs from stored representations.

Each metric's :meth:`~simbench.metrics.base.Metric.prepare` runs once per (model, layer)
and :meth:`~simbench.metrics.base.Metric.score_prepared` once per cell, so the cost of N
models grows with N only through the pairwise products (issue 11). A metric without
``prepare`` (or whose ``prepare`` declines an input) is scored with ``evaluate``, the
same value either way (tests/test_prepared.py: equal to 1e-12).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from simbench.metrics.base import Consumes, Metric

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = [
    "model_a",
    "model_b",
    "layer_a",
    "layer_b",
    "metric",
    "metric_params",
    "value",
    "error",
]


def _metrics(metrics: Any) -> list[Metric]:
    from simbench import get_metric

    items = [metrics] if isinstance(metrics, str | Metric) else list(metrics)
    if not items:
        raise ValueError("no metric given")
    out = []
    for m in items:
        m = get_metric(m) if isinstance(m, str) else m
        if not isinstance(m, Metric):
            raise TypeError(f"metrics must be metric names or Metric instances; got {m!r}")
        if m.consumes is not Consumes.REPRESENTATIONS or getattr(m, "input_ndim", 2) != 2:
            raise ValueError(f"metric {m.name!r} does not score (n, d) representations")
        out.append(m)
    return out


def _params_json(m: Metric) -> str | None:
    """Parameters that differ from the defaults as canonical JSON (schema 3), else None."""
    defaults = type(m).param_defaults()
    diff = {k: v for k, v in m.get_params().items() if defaults.get(k) != v}
    return json.dumps(diff, sort_keys=True, default=repr) if diff else None


def compare_many(
    reps: Mapping[Hashable, Mapping[Hashable, Any]],
    metrics: str | Metric | Sequence[str | Metric] = "cka",
    layer_pairs: Literal["all", "same"] = "all",
    *,
    include_self: bool = False,
    device: str | None = None,
    dtype: Literal["float64", "float32"] = "float64",
) -> pd.DataFrame:
    """Score every pair of models on every layer pair, one row per score.

    ``reps[model][layer]`` is an ``(n, d)`` array (numpy or torch), the same ``n`` probe
    inputs in the same order for every model. ``layer_pairs="all"``: every layer of A
    with every layer of B; ``"same"``: layers of equal name. Model pairs are the
    unordered pairs (``include_self`` adds each model with itself); an asymmetric metric
    is scored both ways. Returns a long DataFrame with columns ``model_a, model_b,
    layer_a, layer_b, metric, metric_params, value, error``: a ``ValueError`` of one
    cell (a constant layer, a singular covariance) gives ``value`` NaN and its message.

    ``device`` (e.g. ``"cuda"``): ``prepare`` and the pairwise products run in torch on
    that device (:mod:`simbench.numerics.torch_ops`), in float64 or, with
    ``dtype="float32"``, in float32 (relative error ~1e-5, see that module); metrics
    without ``prepare`` are scored by ``evaluate`` as always.
    """
    import pandas as pd

    if not isinstance(reps, Mapping) or not reps:
        raise ValueError("reps must be a non-empty mapping {model: {layer: (n, d) array}}")
    for model, layers in reps.items():
        if not isinstance(layers, Mapping) or not layers:
            raise ValueError(f"reps[{model!r}] must be a non-empty mapping {{layer: array}}")
    if layer_pairs not in ("all", "same"):
        raise ValueError(f"layer_pairs must be 'all' or 'same'; got {layer_pairs!r}")
    models = list(reps)
    pairs = list(itertools.combinations(models, 2))
    if include_self:
        pairs += [(m, m) for m in models]
    if not pairs:
        raise ValueError("compare_many needs at least two models (or include_self=True)")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    if dtype == "float32" and device is None:
        raise ValueError("dtype='float32' applies to the torch path: pass a device too")
    rows: list[tuple] = []
    with _torch_context(device, dtype):
        for metric in _metrics(metrics):
            ordered = pairs if metric.symmetric else pairs + [(b, a) for a, b in pairs if a != b]
            _score_metric(metric, reps, ordered, layer_pairs, rows, device)
    return pd.DataFrame(rows, columns=COLUMNS)


def _torch_context(device: str | None, dtype: str) -> Any:
    if device is None:
        return contextlib.nullcontext()
    import torch

    from simbench.numerics.torch_ops import compute_dtype

    torch.empty(0, device=device)  # an unknown or absent device fails here, clearly
    return compute_dtype(getattr(torch, dtype))


def _score_metric(
    metric: Metric,
    reps: Mapping[Hashable, Mapping[Hashable, Any]],
    pairs: list[tuple[Hashable, Hashable]],
    layer_pairs: str,
    rows: list[tuple],
    device: str | None = None,
) -> None:
    """Append the rows of one metric; each (model, layer) is prepared at most once."""
    prepared: dict[tuple[Hashable, Hashable], Any] = {}

    def side(model: Hashable, layer: Hashable) -> Any:
        key = (model, layer)
        if key not in prepared:
            try:
                X = reps[model][layer]
                if device is not None:
                    import torch

                    X = torch.as_tensor(X).to(device)
                prepared[key] = metric.prepare(X)
            except ValueError as exc:  # bad or degenerate input: every cell says so
                prepared[key] = exc
        return prepared[key]

    label, params = metric.name, _params_json(metric)
    for a, b in pairs:
        for la, lb in _layer_pairs(reps[a], reps[b], layer_pairs):
            try:
                pa, pb = side(a, la), side(b, lb)
                for p in (pa, pb):
                    if isinstance(p, ValueError):
                        raise p
                if pa is None or pb is None:
                    value = metric.evaluate(reps[a][la], reps[b][lb]).value
                else:
                    value = metric.score_prepared(pa, pb).value
                rows.append((a, b, la, lb, label, params, float(value), None))
            except ValueError as exc:
                rows.append((a, b, la, lb, label, params, float("nan"), str(exc)))


def _layer_pairs(la: Mapping, lb: Mapping, how: str) -> list[tuple[Hashable, Hashable]]:
    if how == "same":
        return [(k, k) for k in la if k in lb]
    return [(x, y) for x in la for y in lb]

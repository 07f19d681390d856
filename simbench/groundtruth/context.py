"""What a ground-truth test reads: the schema-3 results, model metadata, per-model data.

COORD.md §4: the leaderboard stage gives every test a :class:`TestContext` with the
results table (schema 3: ``metric`` is the plugin name, ``metric_params`` JSON,
``alignment`` null for representation rows, ``features`` how each image was
represented), per-model metadata (:class:`ModelInfo`) and callables for per-model data
(probe logits and labels, per-layer activations), each ``None`` when the run has none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from simbench.groundtruth.base import Row

#: features of same-layer rows, most preferred first: the per-layer channel samples of
#: the runner ("positions"), then whole maps, then the diagonal of a layer matrix
SAME_LAYER_FEATURES = ("positions", "maps", "pooled", "flattened")
#: features of cross-layer rows, most preferred first (MATH.md: layer identification
#: uses each image's flattened representation)
CROSS_LAYER_FEATURES = ("flattened", "pooled", "maps", "positions")


def label(metric: str, params_json: Any) -> str:
    """Display label ``metric(k=v, ...)`` from a plugin name and its JSON parameters.

    Local fallback of ``simbench.runner.results.label`` (COORD.md §1, written by cli12);
    :func:`metric_label` prefers that one when it exists.
    """
    if params_json is None or (isinstance(params_json, float) and math.isnan(params_json)):
        return str(metric)
    params = json.loads(params_json) if isinstance(params_json, str) else dict(params_json)
    if not params:
        return str(metric)
    return f"{metric}({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def metric_label(metric: str, params_json: Any) -> str:
    try:
        from simbench.runner.results import label as _label  # type: ignore[attr-defined]
    except ImportError:
        _label = label
    return _label(metric, params_json)


@dataclass(frozen=True)
class ModelInfo:
    """What the tests know of one model (COORD.md §4)."""

    arch: str | None = None
    dataset: str | None = None
    seed: int | None = None
    relations: tuple[str, ...] = ()
    #: label-noise fraction (the ``fraction`` of a ``random_labels`` dataset; 0 if none,
    #: None when unknown)
    fraction: float | None = 0.0
    #: the images a model was trained on (models sharing it differ only in labels/seed)
    images: str | None = None
    test_acc: float | None = None
    train_acc: float | None = None


@dataclass
class TestContext:
    """The inputs of every test (module docstring)."""

    __test__ = False  # not a pytest class
    results: pd.DataFrame
    models: dict[str, ModelInfo] = field(default_factory=dict)
    layers: dict[str, list[str]] = field(default_factory=dict)  # architecture -> depth order
    checks: pd.DataFrame | None = None
    logits: Callable[[str], np.ndarray] | None = None
    labels: Callable[[str], np.ndarray] | None = None
    activations: Callable[[str, str], np.ndarray] | None = None  # (model, layer) -> (n, d)
    metric_factory: Callable[[str, dict[str, Any]], Any] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        df = self.results.copy()
        for col in ("metric_params", "alignment", "features", "error"):
            if col not in df.columns:
                df[col] = None
            # null in any spelling a reader may give it (NaN, None, "", "None", "nan")
            vals = [None if _blank(v) else v for v in df[col].astype(object)]
            df[col] = pd.Series(vals, index=df.index, dtype=object)
        df["value"] = pd.to_numeric(df["value"], errors="coerce")
        df["ok"] = df["error"].isna() & np.isfinite(df["value"].to_numpy(float))
        self.results = df

    # -- rows of a board row ------------------------------------------------------------
    def cells(self, row: Row) -> pd.DataFrame:
        """Every results row of ``row`` (failed ones included, ``ok`` False) with ``sim``,
        the value oriented so that higher = more similar."""
        df = self.results
        sel = (df["metric"] == row.metric) & _eq(df["metric_params"], row.metric_params)
        sel &= _eq(df["alignment"], row.alignment)
        out = df[sel].copy()
        out["sim"] = row.sign * out["value"]
        return out

    def same_layer(self, row: Row) -> tuple[pd.DataFrame, str | None]:
        """Same-layer cells of ``row`` with one feature convention (SAME_LAYER_FEATURES)."""
        c = self.cells(row)
        c = c[c["layer_a"] == c["layer_b"]]
        return _one_features(c, SAME_LAYER_FEATURES)

    def cross_layer(self, row: Row) -> tuple[pd.DataFrame, str | None]:
        """Layer-matrix cells of ``row`` (a feature convention that has cross-layer rows)."""
        c = self.cells(row)
        crossing = set(c.loc[c["layer_a"] != c["layer_b"], "features"].dropna())
        if not crossing and c["features"].isna().all() and (c["layer_a"] != c["layer_b"]).any():
            return c, None  # weight rows have no feature convention
        for f in CROSS_LAYER_FEATURES:
            if f in crossing:
                return c[c["features"] == f], f
        return c.iloc[0:0], None

    def layer_order(self, arch: str | None = None) -> list[str]:
        """Layers in depth order (``layers[arch]``, else all architectures', else results)."""
        if arch is not None and arch in self.layers:
            return list(self.layers[arch])
        order = [x for names in self.layers.values() for x in names]
        df = self.results
        if "depth_a" in df.columns and df["depth_a"].notna().any():
            d = df[["layer_a", "depth_a"]].dropna().drop_duplicates("layer_a")
            order += d.sort_values("depth_a", kind="stable")["layer_a"].astype(str).tolist()
        order += df["layer_a"].astype(str).tolist() + df["layer_b"].astype(str).tolist()
        return list(dict.fromkeys(order))

    def classifier(self, arch: str | None) -> str | None:
        """The classifier output of an architecture: its last layer in depth order."""
        order = self.layer_order(arch) if arch in self.layers else []
        return order[-1] if order else None

    def metric(self, row: Row) -> Any:
        """A metric instance of ``row`` (plugin + parameters) for tests that compute it."""
        params = json.loads(row.metric_params) if row.metric_params else {}
        if self.metric_factory is not None:
            return self.metric_factory(row.metric, params)
        from simbench.registry import default_registry

        return default_registry().create("metric", row.metric, **params)

    def relations(self) -> set[str]:
        return set(self.results["relation"].dropna().astype(str))


def _eq(col: pd.Series, value: Any) -> pd.Series:
    return col.isna() if value is None else (col == value)


def _one_features(c: pd.DataFrame, prefs: tuple[str, ...]) -> tuple[pd.DataFrame, str | None]:
    present = set(c["features"].dropna())
    for f in prefs:
        if f in present:
            return c[c["features"] == f], f
    return c[c["features"].isna()], None


def rows_of(results: pd.DataFrame) -> list[Row]:
    """The board rows of a schema-3 results table, in order of first appearance."""
    df = results
    out: list[Row] = []
    seen: set[tuple[Any, ...]] = set()
    params = df["metric_params"] if "metric_params" in df.columns else [None] * len(df)
    align = df["alignment"] if "alignment" in df.columns else [None] * len(df)
    for m, p, a, cons, hib in zip(
        df["metric"], params, align, df["consumes"], df["higher_is_better"], strict=True
    ):
        p = None if _missing(p) else str(p)
        a = None if _missing(a) else str(a)
        key = (m, p, a)
        if key in seen:
            continue
        seen.add(key)
        board = "weights" if str(cons) == "weights" else "representations"
        out.append(Row(board, str(m), p, a, metric_label(m, p), _truthy(hib)))
    return out


def _blank(x: Any) -> bool:
    return _missing(x) or (isinstance(x, str) and x.strip() in ("", "None", "nan", "NaN"))


def _missing(x: Any) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def _truthy(x: Any) -> bool:
    if isinstance(x, str):
        return x.strip().lower() in ("true", "1", "yes")
    return True if _missing(x) else bool(x)

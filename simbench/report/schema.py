"""Results tables of any schema version as the report reads them: schema 3 (COORD §1).

Schema 3 has ``metric`` (plugin name) and ``metric_params`` (canonical JSON or null),
``alignment`` null for representation rows and ``features`` saying how their
representation was formed (``positions``, ``pooled``, ``flattened``, ``maps``), ``error``
null on success and ``depth_a``/``depth_b``. Schema 1 and 2 tables (e.g. the committed
``leaderboard/gm_controls_cpu`` results) are converted here, in one place:
``bures(draws=8)`` -> ``bures`` + ``{"draws": 8}``; alignment ``none`` -> null with
features ``positions``, ``pooled`` -> ``pooled``, ``flat`` -> ``flattened``; ``""`` errors
-> null; depths from the layer order.

Two display columns are added for the report's grouping: ``label`` (the metric with its
parameters, :func:`label`) and ``method`` (the alignment, or for representation rows the
feature convention in brackets, e.g. ``[positions]``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd
import yaml

__all__ = ["LEGACY_FEATURES", "label", "method_of", "split_label", "to_schema3"]

#: schema ≤ 2 alignment values that named a representation's feature convention
LEGACY_FEATURES = {"none": "positions", "pooled": "pooled", "flat": "flattened"}
_LABEL = re.compile(r"^\s*([^()\s]+)\s*\((.*)\)\s*$")


def label(metric: str, params_json: str | None) -> str:
    """The display label ``name(k=v, ...)`` of a metric and its canonical JSON parameters.

    Same semantics as ``simbench.runner.results.label`` (COORD §1; a local fallback the
    lead deduplicates at merge) and :func:`simbench.runner.graph.label_of`.
    """
    params = _params(params_json)
    if not params:
        return str(metric)
    return f"{metric}({', '.join(f'{k}={v}' for k, v in params.items())})"


def _params(params_json: Any) -> dict[str, Any]:
    if params_json is None or params_json is pd.NA:
        return {}
    if isinstance(params_json, float) and params_json != params_json:
        return {}
    if isinstance(params_json, dict):
        return params_json
    try:
        got = json.loads(str(params_json))
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def split_label(text: str) -> tuple[str, str | None]:
    """``"bures(draws=8)"`` -> ``("bures", '{"draws":8}')``; a bare name -> ``(name, None)``.

    Values are read as YAML scalars (``8`` an int, ``rbf`` a string), as the suite file
    would; the JSON is canonical (sorted keys, no spaces).
    """
    m = _LABEL.match(str(text))
    if not m:
        return str(text).strip(), None
    params: dict[str, Any] = {}
    for part in _split_top(m.group(2)):
        key, sep, value = part.partition("=")
        if not sep:
            return str(text).strip(), None
        try:
            params[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError:
            params[key.strip()] = value.strip()
    return m.group(1), json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


def method_of(alignment: Any, features: Any) -> str:
    """The report's grouping key beside the metric: the alignment, else ``[features]``."""
    if isinstance(alignment, str) and alignment:
        return alignment
    if isinstance(features, str) and features:
        return f"[{features}]"
    return "-"


def _null(x: Any) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and x != x)


def _objects(values: Any, index: pd.Index) -> pd.Series:
    """A column of strings and ``None`` kept as such (not NaN, whatever pandas infers)."""
    return pd.Series(list(values), dtype=object, index=index)


def to_schema3(df: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """The table with schema-3 columns (converted from schema 1/2 when needed) plus the
    display columns ``label`` and ``method``; ``order`` (layers in depth order) fills
    missing ``depth_a``/``depth_b``."""
    df = df.copy()
    if "metric_params" not in df.columns:
        split = [split_label(m) for m in df["metric"].astype(str)]
        df["metric"] = [s[0] for s in split]
        df["metric_params"] = _objects([s[1] for s in split], df.index)
    if "alignment_params" not in df.columns:
        df["alignment_params"] = _objects([None] * len(df), df.index)
    consumes = df["consumes"].astype(str) if "consumes" in df.columns else None
    if "features" not in df.columns:
        al = df["alignment"].astype(object)
        rep = (
            consumes != "weights"
            if consumes is not None
            else al.isin(list(LEGACY_FEATURES)).to_numpy()
        )
        feats = [
            LEGACY_FEATURES.get(str(a), None) if r else None for a, r in zip(al, rep, strict=True)
        ]
        df["features"] = _objects(feats, df.index)
        df["alignment"] = _objects(
            [
                None if (r and str(a) in LEGACY_FEATURES) else a
                for a, r in zip(al, rep, strict=True)
            ],
            df.index,
        )
    df["alignment"] = _objects([None if _null(a) else str(a) for a in df["alignment"]], df.index)
    err = df["error"].astype(object) if "error" in df.columns else [None] * len(df)
    df["error"] = _objects(
        [None if _null(e) or not str(e).strip() else str(e) for e in err], df.index
    )
    if order is not None:
        depth = {name: i for i, name in enumerate(order)}
        for side in ("a", "b"):
            col = f"depth_{side}"
            if col not in df.columns:
                df[col] = pd.array([depth.get(str(x)) for x in df[f"layer_{side}"]], dtype="Int64")
    df["label"] = [label(m, p) for m, p in zip(df["metric"], df["metric_params"], strict=True)]
    df["method"] = [method_of(a, f) for a, f in zip(df["alignment"], df["features"], strict=True)]
    return df

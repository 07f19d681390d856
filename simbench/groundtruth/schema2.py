"""Adapter: a results table of schema 1 or 2 as schema 3 (COORD.md §1).

The one place that reads the old conventions, so it can be deleted once every table
read is schema 3: ``metric`` was a label ``name(k=v, ...)`` (now ``metric`` +
``metric_params`` JSON), representation rows had ``alignment`` ``none`` (per-layer
channel samples, now ``features = "positions"``), ``pooled`` or ``flat`` (layer-matrix
rows, now ``features`` ``pooled`` / ``flattened``) and ``alignment`` null; ``error`` was
``""`` on success (now null); ``depth_a``/``depth_b`` come from the meta's layer order.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd

_FEATURES = {"none": "positions", "pooled": "pooled", "flat": "flattened"}
_LABEL = re.compile(r"^\s*([^(\s]+)\s*(?:\((.*)\))?\s*$")


def _value(text: str) -> Any:
    t = text.strip()
    for conv in (json.loads, lambda s: json.loads(s.lower())):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def split_label(label: str) -> tuple[str, str | None]:
    """``"bures(draws=8)"`` -> ``("bures", '{"draws": 8}')``; no parameters -> None."""
    m = _LABEL.match(str(label))
    if not m:
        return str(label), None
    name, inner = m.group(1), m.group(2)
    if not inner or not inner.strip():
        return name, None
    params = {}
    for part in inner.split(","):
        k, _, v = part.partition("=")
        params[k.strip()] = _value(v)
    return name, json.dumps(params, sort_keys=True)


def to_schema3(df: pd.DataFrame, meta: dict[str, Any] | None = None) -> pd.DataFrame:
    """``df`` with schema-3 columns (unchanged when it already is schema 3)."""
    if "features" in df.columns and "metric_params" in df.columns:
        return df
    out = df.copy()
    names, params = (
        zip(*(split_label(x) for x in out["metric"]), strict=True) if len(out) else ((), ())
    )
    out["metric"] = list(names)
    out["metric_params"] = list(params)
    rep = out["consumes"].astype(str) != "weights"
    align = out["alignment"].astype(str)
    feats = [(_FEATURES.get(a, a) if r else None) for a, r in zip(align, rep, strict=True)]
    out["features"] = pd.Series(feats, index=out.index, dtype=object)
    aligns = [(None if r else a) for a, r in zip(align, rep, strict=True)]
    out["alignment"] = pd.Series(aligns, index=out.index, dtype=object)
    err = out["error"].astype(object) if "error" in out.columns else pd.Series([None] * len(out))
    errs = [None if (e is None or pd.isna(e) or str(e).strip() == "") else str(e) for e in err]
    out["error"] = pd.Series(errs, index=out.index, dtype=object)
    order: dict[str, int] = {}
    layers = (meta or {}).get("layers") or {}
    for names_ in layers.values() if isinstance(layers, dict) else [layers]:
        for i, name in enumerate(names_ or []):
            order.setdefault(str(name), i)
    out["depth_a"] = out["layer_a"].map(order)
    out["depth_b"] = out["layer_b"].map(order)
    out["schema_version"] = 3
    return out

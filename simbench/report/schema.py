"""Results tables of any schema version as the report reads them: schema 3.

Schema 3 has ``metric`` (plugin name) and ``metric_params`` (canonical JSON or null),
``alignment`` null for representation rows and ``features`` saying how their
representation was formed (``positions``, ``pooled``, ``flattened``, ``maps``), ``error``
null on success and ``depth_a``/``depth_b``. Schema 1 and 2 tables (e.g. the committed
``leaderboard/gm_controls_cpu`` results) are converted by the one adapter,
:func:`simbench.runner.results.upgrade`; depths missing there come from the layer order.

Two display columns are added for the report's grouping: ``label`` (the metric with its
parameters, :func:`label`) and ``method`` (the alignment, or for representation rows the
feature convention in brackets, e.g. ``[positions]``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from simbench.runner.results import label, split_label, upgrade

__all__ = ["label", "method_of", "split_label", "to_schema3"]


def method_of(alignment: Any, features: Any) -> str:
    """The report's grouping key beside the metric: the alignment, else ``[features]``."""
    if isinstance(alignment, str) and alignment:
        return alignment
    if isinstance(features, str) and features:
        return f"[{features}]"
    return "-"


def to_schema3(df: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """The table as schema 3 (:func:`simbench.runner.results.upgrade` converts schema 1/2)
    plus the display columns ``label`` and ``method``; ``order`` (layers in depth order)
    fills missing ``depth_a``/``depth_b``."""
    df = upgrade(df)
    df["alignment"] = pd.Series(
        [a if isinstance(a, str) and a else None for a in df["alignment"]],
        dtype=object, index=df.index,
    )  # fmt: skip
    if order is not None:
        depth = {name: i for i, name in enumerate(order)}
        for side in ("a", "b"):
            col = f"depth_{side}"
            if col not in df.columns or df[col].isna().all():
                df[col] = pd.array([depth.get(str(x)) for x in df[f"layer_{side}"]], dtype="Int64")
    df["label"] = [label(m, p) for m, p in zip(df["metric"], df["metric_params"], strict=True)]
    df["method"] = [method_of(a, f) for a, f in zip(df["alignment"], df["features"], strict=True)]
    return df

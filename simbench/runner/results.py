"""The tidy results table: one row per (pair, layer pair, alignment, metric, draw).

Columns (``SCHEMA_VERSION`` 3, DESIGN.md "Results"): :data:`COLUMNS`, then ``details``
(JSON: the metric's scalar details, and ``eigenvector_overlap``, the path relative to the
output folder of the ``|V_aᵀ V_b|`` array of the two aligned weight covariances, GM
Fig. 3, for weight metrics). Conventions:

- ``metric`` is the plugin name (``bures``), ``metric_params`` the suite's parameters as
  canonical JSON (sorted keys; ``None`` when none); a display label ``bures(draws=8)``
  is :func:`label` of the two;
- ``alignment``/``alignment_params``: the alignment plugin and its parameters for
  weight-metric rows (B's weights pulled back into A's basis); ``None`` for
  representation rows, which are not aligned;
- ``features``: how each image's representation was formed in representation rows:
  ``"positions"`` (sampled spatial positions as samples; the same-layer rows),
  ``"pooled"`` (global-average-pooled; the ``layer_matrix`` rows: layer ``layer_a`` of
  A against ``layer_b`` of B, every combination, the diagonal included), ``"flattened"``
  (``C·H·W`` per image; matrix rows with ``layer_features: flat``) or ``"maps"`` (whole
  conv maps: same-layer rows of metrics with 4-D inputs such as ``svcca_dft``; their
  matrix rows, on maps average-pooled to the pair's smallest grid, keep the matrix's
  ``"pooled"``/``"flattened"`` so that a matrix is one block); ``None`` for weight rows;
- ``depth_a``/``depth_b``: the 0-based index of the layer among its architecture's
  comparable layers (in depth order, whether selected by the suite or not);
- ``draw`` is 0 for deterministic metrics; stochastic ones (a ``seed`` parameter) get
  ``draws`` rows with ``seed = (their seed, default the suite's) + draw``;
- ``value`` is NaN and ``error`` holds the message when a cell failed; ``error`` is null
  (``None``) on success;
- ``stderr`` is the leave-one-probe-block-out jackknife standard error (``probe.blocks``
  blocks; weight metrics: with the alignment refitted per block) combined with the
  metric's Monte-Carlo error, ``ci_low``/``ci_high`` the 95 % interval ``value ± 1.96
  stderr``; ``null_mean``/``null_sd`` the chance level over ``probe.null_pairings``
  seeded derangements of the probe images (weight metrics: their own zero point, NaN
  where they have none) and ``z = (value − null_mean)/sqrt(null_sd² + stderr²)``
  (MATH.md: Uncertainty and chance of one score; :mod:`simbench.uncertainty`);
- ``config_hash`` is the cell's cache key: a hash of everything its value depends on
  (models, probe, layer, alignment and metric with their parameters and versions);
- ``epoch_*`` is the epoch of a ``:eN`` checkpoint, else the number of epochs trained
  (a checkpoint entry: the epoch its sidecar records).

Written atomically as ``results.parquet`` (pyarrow), ``results.csv`` and
``results.meta.json`` (schema version, simbench version, git SHA, plugin versions,
suite config hash, timestamp, layer order per architecture); rows in plan order (pairs
in suite order, layers in depth order, then alignments, metrics, draws as listed).
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from simbench.runner.cache import atomic_write_bytes

#: 3: see :data:`SCHEMA_CHANGES`
SCHEMA_VERSION = 3
#: one line per schema version: what changed from the previous one (``results.meta.json``)
SCHEMA_CHANGES = {
    "2": "ci_low, ci_high, null_mean, null_sd, z added after stderr; stderr filled for "
    "every metric (block jackknife combined with Monte-Carlo error)",
    "3": "metric is the plugin name with metric_params (JSON) beside it, likewise "
    "alignment/alignment_params (null for representation rows); features (positions, "
    "pooled, flattened, maps) replaces alignment none/pooled/flat; depth_a, depth_b "
    "added; error is null on success",
}
#: the uncertainty and chance-level columns (MATH.md: Uncertainty and chance of one score)
UNCERTAINTY_COLUMNS = ("ci_low", "ci_high", "null_mean", "null_sd", "z")
COLUMNS = (
    "schema_version", "suite", "model_a", "model_b", "relation", "layer_a", "layer_b",
    "depth_a", "depth_b", "features", "alignment", "alignment_params", "metric",
    "metric_params", "draw", "value", "stderr", *UNCERTAINTY_COLUMNS,
    "higher_is_better", "consumes",
    "wall_time_s", "config_hash", "error", "simbench_version", "git_sha", "plugin_versions",
    "arch_a", "arch_b", "dataset_a", "dataset_b", "seed_a", "seed_b", "epoch_a", "epoch_b",
    "details",
)  # fmt: skip
#: columns that identify a row
KEY_COLUMNS = (
    "model_a", "model_b", "layer_a", "layer_b", "features", "alignment", "alignment_params",
    "metric", "metric_params", "draw",
)  # fmt: skip

__all__ = [
    "COLUMNS",
    "KEY_COLUMNS",
    "SCHEMA_CHANGES",
    "SCHEMA_VERSION",
    "assemble",
    "git_sha",
    "label",
    "params_json",
    "upgrade",
    "write_results",
]


def params_json(params: dict[str, Any] | None) -> str | None:
    """A plugin's parameters as canonical JSON (sorted keys, no spaces); ``None`` when
    there are none (the ``metric_params``/``alignment_params`` columns)."""
    if not params:
        return None
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def label(name: Any, params_json: Any = None) -> str:
    """Display label of a plugin in a results row: ``name``, or ``name(k=v, ...)`` with
    the parameters of ``params_json`` (a :func:`params_json` string; ``None``/NaN/"" for
    none) in key order, values as Python prints them (the labels of schema 2).
    ``label("bures", '{"draws":8}') == "bures(draws=8)"``."""
    name = str(name)
    if params_json is None or (isinstance(params_json, float) and math.isnan(params_json)):
        return name
    params = json.loads(params_json) if isinstance(params_json, str) and params_json else {}
    if not params:
        return name
    return f"{name}({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def split_label(text: str) -> tuple[str, str | None]:
    """``"bures(draws=8)"`` -> ``("bures", '{"draws":8}')``: a schema-2 label split into
    name and canonical params (values read back as JSON, ``True``/``False``/``None``, or
    kept as strings)."""
    text = str(text).strip()
    if not text.endswith(")") or "(" not in text:
        return text, None
    name, inner = text[:-1].split("(", 1)
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in inner.split(", "))):
        key, _, raw = part.partition("=")
        literal = {"True": True, "False": False, "None": None}
        if raw in literal:
            params[key] = literal[raw]
            continue
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return name, params_json(params)


def upgrade(df: Any, meta: dict[str, Any] | None = None) -> Any:
    """A results table of any schema (1, 2, 3) as schema 3 (a copy; rows kept in order).

    Schema 1/2 labels are split into ``metric``/``metric_params`` and
    ``alignment``/``alignment_params``; their ``alignment`` ``"none"`` becomes ``features``
    ``"positions"`` (``"maps"`` for metrics with 4-D inputs), ``"pooled"``/``"flat"``
    become ``"pooled"``/``"flattened"`` (alignment ``None``); ``depth_*`` come from
    ``meta["layers"]`` (the layer order per architecture; else ``<NA>``); empty errors
    become ``None``. Missing uncertainty columns are NaN.
    """
    import pandas as pd

    df = df.copy()
    if "schema_version" in df.columns and len(df):
        version = int(df["schema_version"].iloc[0])
    else:  # a hand-made table: schema 3 if it has its columns
        version = 3 if "features" in df.columns else 2
    for col in ("stderr", *UNCERTAINTY_COLUMNS):
        if col not in df.columns:
            df[col] = float("nan")
    if "error" in df.columns:
        err = df["error"].astype(object)
        df["error"] = err.where(err.notna() & (err.astype(str).str.strip() != ""), None)
    if version >= 3 or "features" in df.columns:
        return df
    metric = [split_label(m) for m in df["metric"].astype(str)]

    def objects(values: list[Any]) -> Any:  # strings and None kept (not NaN)
        return pd.Series(values, dtype=object, index=df.index)

    df["metric"] = [m for m, _ in metric]
    df["metric_params"] = objects([p for _, p in metric])
    old = df["alignment"].astype(str)
    four_d = {m: _input_ndim(m) == 4 for m in set(df["metric"])}
    maps = df["metric"].map(four_d).astype(bool)
    feats = old.map({"none": "positions", "pooled": "pooled", "flat": "flattened"})
    feats = feats.where(~((old == "none") & maps), "maps")
    aligned = [None if f else split_label(a) for a, f in zip(old, feats.notna(), strict=True)]
    df["features"] = objects([f if isinstance(f, str) else None for f in feats])
    df["alignment"] = objects([a[0] if a else None for a in aligned])
    df["alignment_params"] = objects([a[1] if a else None for a in aligned])
    orders = (meta or {}).get("layers") or {}
    for side in ("a", "b"):
        arch = df[f"arch_{side}"] if f"arch_{side}" in df else pd.Series([None] * len(df))
        depth = [
            orders.get(str(ar), []).index(la) if la in orders.get(str(ar), []) else None
            for ar, la in zip(arch, df[f"layer_{side}"], strict=True)
        ]
        df[f"depth_{side}"] = pd.array(depth, dtype="Int64")
    df["schema_version"] = 3
    front = [c for c in COLUMNS if c in df.columns]
    return df[front + [c for c in df.columns if c not in front]]


def _input_ndim(metric: str) -> int:
    """A registered metric's ``input_ndim`` (2 when unknown)."""
    try:
        from simbench.registry import default_registry

        rec, _ = default_registry().resolve("metric", metric)
        return int(getattr(rec.obj, "input_ndim", 2))
    except Exception:  # not installed here: an ordinary 2-D metric
        return 2


def display_view(df: Any) -> Any:
    """A schema-3 table with the schema-2 display columns the report's tables group by:
    ``metric`` the :func:`label`, ``alignment`` the alignment's label, or ``"none"``,
    ``"pooled"``, ``"flat"`` (``"none"`` for ``"maps"``/``"positions"`` same-layer rows),
    and ``error`` ``""`` on success."""
    df = df.copy()
    df["metric"] = [label(m, p) for m, p in zip(df["metric"], df["metric_params"], strict=True)]
    old = {"positions": "none", "maps": "none", "pooled": "pooled", "flattened": "flat"}
    df["alignment"] = [
        old.get(str(f), "none") if a is None or (isinstance(a, float) and math.isnan(a))
        else label(a, p)
        for a, p, f in zip(df["alignment"], df["alignment_params"], df["features"], strict=True)
    ]  # fmt: skip
    df["error"] = df["error"].where(df["error"].notna(), "").astype(str)
    return df


def git_sha(path: str | os.PathLike | None = None) -> str:
    """The commit of the git work tree holding ``path`` (default: simbench's source), or
    ``"unknown"`` (not a git checkout, or git missing). Read-only (``git rev-parse``)."""
    if path is None:
        import simbench

        path = Path(simbench.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else "unknown"


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def assemble(plan: Any, failures: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """``(DataFrame, meta)`` from the plan and the cached score records.

    A cell without a record gets the upstream failure in ``failures`` (score key ->
    message) or ``"not computed"``; such rows are not cached and are retried next run.
    """
    import pandas as pd

    import simbench

    failures = failures or {}
    cache = plan.cache
    suite = plan.suite
    version = simbench.__version__
    sha = git_sha()
    out_dir = Path(suite.output_dir)
    rows = []
    arrays: dict[str, str] = {}
    chances: dict[str, float | None] = {}
    for c in plan.cells:
        rec = cache.get_json("score", c.score.key)
        if rec is None:
            rec = {"value": None, "stderr": None, "wall_time_s": None, "details": {}}
            rec["error"] = failures.get(c.score.key, "not computed")
        details = dict(rec.get("details") or {})
        if c.score.eig_key and not rec.get("error"):
            rel = arrays.get(c.score.eig_key)
            if rel is None:
                # has_arrays(verify=False), keeping the sidecar's meta (the chance level)
                ok, side = cache._array_status("eigvec", c.score.eig_key, False, True, None)
                if ok:
                    rel = f"eigenvectors/{c.score.eig_key}.npy"
                    arrays[c.score.eig_key] = rel
                    chances[c.score.eig_key] = (side or {}).get("chance")
            if rel is not None:
                details["eigenvector_overlap"] = rel
                if chances.get(c.score.eig_key) is not None:  # 1/√d: the report's colour scale
                    details["eigenvector_chance"] = chances[c.score.eig_key]
        a, b = c.pair.a, c.pair.b
        rows.append(
            {
                "schema_version": SCHEMA_VERSION,
                "suite": suite.name,
                "model_a": a.ref,
                "model_b": b.ref,
                "relation": c.pair.relation,
                "layer_a": c.layer_a,
                "layer_b": c.layer_b,
                "depth_a": c.depth_a,
                "depth_b": c.depth_b,
                "features": c.features,
                "alignment": c.alignment,
                "alignment_params": c.alignment_params,
                "metric": c.metric,
                "metric_params": c.metric_params,
                "draw": c.draw,
                "value": _num(rec.get("value")),
                "stderr": _num(rec.get("stderr")),
                **{k: _num(rec.get(k)) for k in UNCERTAINTY_COLUMNS},
                "higher_is_better": c.higher_is_better,
                "consumes": c.consumes,
                "wall_time_s": _num(rec.get("wall_time_s")),
                "config_hash": c.score.key,
                "error": str(rec["error"]) if rec.get("error") else None,
                "simbench_version": version,
                "git_sha": sha,
                "plugin_versions": json.dumps(c.packages, sort_keys=True),
                "arch_a": a.arch,
                "arch_b": b.arch,
                "dataset_a": a.dataset,
                "dataset_b": b.dataset,
                "seed_a": a.seed,
                "seed_b": b.seed,
                "epoch_a": a.epoch,
                "epoch_b": b.epoch,
                "details": json.dumps(details, sort_keys=True),
            }
        )
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("draw", "schema_version", "depth_a", "depth_b"):
        df[col] = df[col].astype("int64")
    for col in ("seed_a", "seed_b", "epoch_a", "epoch_b"):
        df[col] = df[col].astype("Int64")
    df["higher_is_better"] = df["higher_is_better"].astype(bool)
    for col in ("value", "stderr", *UNCERTAINTY_COLUMNS, "wall_time_s"):
        df[col] = df[col].astype("float64")
    # export the eigenvector-overlap arrays next to the table
    for key, rel in arrays.items():
        target = out_dir / rel
        if target.is_file():
            continue
        got = cache.get_arrays("eigvec", key)
        if got is not None:
            buf = io.BytesIO()
            np.save(buf, got[0]["overlap"], allow_pickle=False)
            atomic_write_bytes(target, buf.getvalue())

    packages: dict[str, str] = {}
    for c in plan.cells:
        packages.update(c.packages)
    layers: dict[str, list[str]] = {}
    for m in plan.models.values():
        if m.arch is not None:
            layers.setdefault(m.arch, list(m.layers))
    meta = {
        "schema_version": SCHEMA_VERSION,
        "suite": suite.name,
        "suite_file": str(suite.file),
        "simbench_version": version,
        "git_sha": sha,
        "plugin_versions": dict(sorted(packages.items())),
        "config_hash": suite.config_hash(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": len(df),
        "failed_rows": int(df["error"].notna().sum()),
        "layers": layers,
        "columns": list(COLUMNS),
        "schema_changes": dict(SCHEMA_CHANGES),
    }
    return df, meta


def write_results(df: Any, meta: dict[str, Any], output_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``results.parquet``, ``results.csv`` and ``results.meta.json`` atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "parquet": out / "results.parquet",
        "csv": out / "results.csv",
        "meta": out / "results.meta.json",
    }
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"simbench": json.dumps(meta).encode()}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(paths["parquet"], buf.getvalue())
    atomic_write_bytes(paths["csv"], df.to_csv(index=False).encode())
    text = json.dumps(meta, indent=2, sort_keys=True, default=_json_default)
    atomic_write_bytes(paths["meta"], (text + "\n").encode())
    return paths


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return str(obj)


def write_checks(rows: list[dict[str, Any]], output_dir: str | os.PathLike) -> Path:
    """``invariance_checks.csv`` (columns of :func:`simbench.invariance.check_invariances`)."""
    import pandas as pd

    from simbench.invariance import COLUMNS as CHECK_COLUMNS

    df = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    path = Path(output_dir) / "invariance_checks.csv"
    atomic_write_bytes(path, df.to_csv(index=False).encode())
    return path

"""The tidy results table: one row per (pair, layer pair, alignment, metric, draw).

Columns (``SCHEMA_VERSION`` 2, DESIGN.md "Results"): :data:`COLUMNS`, then ``details``
(JSON: the metric's scalar details, and ``eigenvector_overlap``, the path relative to the
output folder of the ``|V_aᵀ V_b|`` array of the two aligned weight covariances, GM
Fig. 3, for weight metrics). Conventions:

- ``alignment`` is ``"none"`` for representation metrics (scored once on the raw layer
  outputs), the alignment's label for weight metrics (B's weights pulled back into A's
  basis), and ``"pooled"`` for the ``layer_matrix`` rows: global-average-pooled outputs
  of layer ``layer_a`` of A against ``layer_b`` of B, every combination, the diagonal
  included (so that a layer × layer matrix is computed one way throughout); ``"flat"``
  instead with ``layer_features: flat`` (flattened ``(B, C·H·W)`` outputs);
- labels are ``name`` or ``name(k=v, ...)`` when the suite gives parameters;
- ``draw`` is 0 for deterministic metrics; stochastic ones (a ``seed`` parameter) get
  ``draws`` rows with ``seed = (their seed, default the suite's) + draw``;
- ``value`` is NaN and ``error`` holds the message when a cell failed;
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

#: 2: ``ci_low``, ``ci_high``, ``null_mean``, ``null_sd``, ``z`` added after ``stderr``,
#: and ``stderr`` is filled for every metric (block jackknife ⊕ Monte-Carlo error)
SCHEMA_VERSION = 2
#: the uncertainty and chance-level columns (MATH.md: Uncertainty and chance of one score)
UNCERTAINTY_COLUMNS = ("ci_low", "ci_high", "null_mean", "null_sd", "z")
COLUMNS = (
    "schema_version", "suite", "model_a", "model_b", "relation", "layer_a", "layer_b",
    "alignment", "metric", "draw", "value", "stderr", *UNCERTAINTY_COLUMNS,
    "higher_is_better", "consumes",
    "wall_time_s", "config_hash", "error", "simbench_version", "git_sha", "plugin_versions",
    "arch_a", "arch_b", "dataset_a", "dataset_b", "seed_a", "seed_b", "epoch_a", "epoch_b",
    "details",
)  # fmt: skip
#: columns that identify a row
KEY_COLUMNS = ("model_a", "model_b", "layer_a", "layer_b", "alignment", "metric", "draw")

__all__ = ["COLUMNS", "KEY_COLUMNS", "SCHEMA_VERSION", "assemble", "git_sha", "write_results"]


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
                "alignment": c.alignment,
                "metric": c.metric,
                "draw": c.draw,
                "value": _num(rec.get("value")),
                "stderr": _num(rec.get("stderr")),
                **{k: _num(rec.get(k)) for k in UNCERTAINTY_COLUMNS},
                "higher_is_better": c.higher_is_better,
                "consumes": c.consumes,
                "wall_time_s": _num(rec.get("wall_time_s")),
                "config_hash": c.score.key,
                "error": str(rec.get("error") or ""),
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
    for col in ("draw", "schema_version"):
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
        "failed_rows": int((df["error"] != "").sum()),
        "layers": layers,
        "columns": list(COLUMNS),
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

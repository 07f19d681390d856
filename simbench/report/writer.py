"""Loading a run's results and writing report.md, report.html and the leaderboard files."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from simbench.report import ReportError, plots
from simbench.report.board_tables import RULE, board_rows, control_rows, lacking_notes
from simbench.report.leaderboard import (
    build_leaderboard,
    layer_order,
    valid_rows,
)
from simbench.report.render import html_image, html_page, html_table, markdown_table
from simbench.runner.results import display_view, upgrade

#: the tidy results columns of the design (schema_version 2; version 1 lacks the five
#: uncertainty columns after ``stderr``, which then default to NaN)
RESULT_COLUMNS = (
    "schema_version", "suite", "model_a", "model_b", "relation", "layer_a", "layer_b",
    "alignment", "metric", "draw", "value", "stderr", "ci_low", "ci_high", "null_mean",
    "null_sd", "z", "higher_is_better", "consumes",
    "wall_time_s", "config_hash", "error", "simbench_version", "git_sha", "plugin_versions",
    "arch_a", "arch_b", "dataset_a", "dataset_b", "seed_a", "seed_b", "epoch_a", "epoch_b",
)  # fmt: skip
#: columns the report cannot do without; the others get defaults when absent
REQUIRED = ("model_a", "model_b", "relation", "layer_a", "layer_b", "alignment", "metric", "value")
DEFAULTS: dict[str, Any] = {
    "stderr": float("nan"),
    **dict.fromkeys(("ci_low", "ci_high", "null_mean", "null_sd", "z"), float("nan")),
    "error": None,
    "higher_is_better": True,
    "draw": 0,
    "consumes": "",
}
CHECKS_FILE = "invariance_checks.csv"


# -- loading ------------------------------------------------------------------------------
def load_results(output_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The results table (Parquet preferred, CSV otherwise) as schema 3
    (:func:`simbench.runner.results.upgrade`) and the meta dict of a run.

    Raises :class:`ReportError` when the folder or its table is missing, unreadable,
    empty, or lacks one of the required columns.
    """
    root = Path(output_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: no such results folder")
    pq, csv = root / "results.parquet", root / "results.csv"
    df: pd.DataFrame | None = None
    problems = []
    if pq.is_file():
        try:
            df = pd.read_parquet(pq)
        except Exception as exc:  # corrupt parquet: fall back on the CSV
            problems.append(f"{pq.name}: {exc}")
    if df is None and csv.is_file():
        try:
            df = pd.read_csv(csv, keep_default_na=True)
        except Exception as exc:
            problems.append(f"{csv.name}: {exc}")
    if df is None:
        why = "; ".join(problems) if problems else "neither results.parquet nor results.csv exists"
        raise ReportError(f"{root}: no results to report ({why}); run `simbench run SUITE` first")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ReportError(f"{root}: the results table lacks the column(s) {', '.join(missing)}")
    if df.empty:
        raise ReportError(f"{root}: the results table has no rows")
    meta: dict[str, Any] = {}
    mp = root / "results.meta.json"
    if mp.is_file():
        try:
            loaded = json.loads(mp.read_text())
            meta = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            meta = {}
    df = upgrade(df, meta)  # schema 3 whatever the file's schema (simbench.runner.results)
    for col, default in DEFAULTS.items():
        if col not in df.columns:
            df[col] = default
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    for col in ("stderr", "ci_low", "ci_high", "null_mean", "null_sd", "z"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in ("model_a", "model_b", "relation", "layer_a", "layer_b", "metric"):
        df[col] = df[col].astype(str)
    return df.reset_index(drop=True), meta


def _load_checks(root: Path) -> tuple[pd.DataFrame | None, str]:
    path = root / CHECKS_FILE
    if not path.is_file():
        return None, f"no `{CHECKS_FILE}` in the results folder: invariances n/a"
    try:
        checks = pd.read_csv(path, keep_default_na=True)
    except Exception as exc:
        return None, f"`{CHECKS_FILE}` unreadable ({exc}): invariances n/a"
    need = {"metric", "invariance", "claimed", "passed"}
    if not need <= set(checks.columns):
        return None, f"`{CHECKS_FILE}` lacks {sorted(need - set(checks.columns))}: invariances n/a"
    return checks, ""


# -- writing ------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes | str) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _checks_rows(checks: pd.DataFrame) -> tuple[list[list[Any]], list[str]]:
    invs = list(dict.fromkeys(checks["invariance"].astype(str)))
    headers = ["Metric", *invs]
    rows = []
    for metric, g in checks.groupby("metric", sort=False):
        cells = []
        by = {str(r["invariance"]): r for _, r in g.iterrows()}
        for inv in invs:
            r = by.get(inv)
            if r is None:
                cells.append("")
                continue
            claimed = str(r["claimed"]).strip().lower() in ("true", "1")
            passed = str(r["passed"]).strip().lower()
            change = r.get("max_rel_change", float("nan"))
            ch = f" ({float(change):.1e})" if plots.finite(change) else ""
            if passed not in ("true", "false", "1", "0"):
                cells.append(("claimed" if claimed else "not claimed") + ", not evaluated")
            elif claimed:
                ok = passed in ("true", "1")
                cells.append(("verified" if ok else "FAILED") + ch)
            else:
                ok = passed in ("true", "1")
                cells.append(("not claimed, changes" if ok else "not claimed, holds") + ch)
        rows.append([metric, *cells])
    return rows, headers


def _error_rows(df: pd.DataFrame) -> tuple[list[list[Any]], list[str]]:
    bad = df[df["error"].str.strip() != ""]
    rows = [
        [metric, alignment, len(g), g["error"].iloc[0][:200]]
        for (metric, alignment), g in bad.groupby(["metric", "alignment"], sort=False)
    ]
    return rows, ["Metric", "Alignment", "Failed cells", "First error"]


def write_report(output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the report and leaderboard of the run in ``output_dir``; return their paths.

    Keys: ``report_md``, ``report_html``, ``leaderboard_md``, ``leaderboard_csv`` and
    ``figures`` (the folder of the PNGs that ``report.md`` links). Raises
    :class:`ReportError` when the folder has no usable results table.
    """
    root = Path(output_dir)
    df, meta = load_results(root)
    checks, checks_note = _load_checks(root)
    boards = build_leaderboard(df, meta, checks, data=_model_data(root))
    df = display_view(df)  # the label columns the figures group by
    valid = valid_rows(df)
    order = layer_order(df, meta)

    # columns beyond the design's that may reference .npy arrays (e.g. ``details``)
    extra_cols = [
        c
        for c in df.columns
        if c not in RESULT_COLUMNS
        and (df[c].dtype == object or pd.api.types.is_string_dtype(df[c]))
    ]
    figures = list(plots.depth_curves(valid, order))
    figures += list(plots.layer_matrices(valid, order))
    eig, missing_arrays = plots.eigenvector_heatmaps(valid, order, root, extra_cols)
    figures += eig

    # distinct labels may share a slug (``cka(k=1)``/``cka[k=1]``): keep every file name unique
    seen: dict[str, int] = {}
    for i, f in enumerate(figures):
        seen[f.name] = seen.get(f.name, 0) + 1
        if seen[f.name] > 1:
            figures[i] = dataclasses.replace(f, name=f"{f.name}-{seen[f.name]}")
    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    for f in figures:
        _atomic_write(fig_dir / f"{f.name}.png", f.png)
    current = {f"{f.name}.png" for f in figures}
    for stale in fig_dir.glob("*.png"):  # figures of an earlier report of this folder
        if stale.name not in current and stale.name.startswith(("depth-", "layers-", "eigvec-")):
            stale.unlink(missing_ok=True)

    suite = str(meta.get("suite") or (df["suite"].iloc[0] if "suite" in df.columns else root.name))
    meta_rows = [
        ["suite", suite],
        ["rows", len(df)],
        ["failed cells", int((df["error"] != "").sum())],
    ]
    for key in ("schema_version", "simbench_version", "git_sha", "created", "executor"):
        val = meta.get(key, df[key].iloc[0] if key in df.columns else None)
        if val is not None and not isinstance(val, dict | list):
            meta_rows.append([key, val])
    meta_rows.append(["layers (depth order)", ", ".join(order)])
    relations = df["relation"].value_counts()
    meta_rows.append(["rows per relation", ", ".join(f"{k}: {v}" for k, v in relations.items())])

    notes = [n for n in (checks_note,) if n]
    notes += lacking_notes(boards)
    if missing_arrays:
        notes.append(f"{missing_arrays} referenced eigenvector array(s) could not be read")
    if not eig:
        notes.append(
            "no eigenvector-overlap arrays referenced by the results: no GM Fig. 3 heatmaps"
        )

    tables = []  # (board, rows, headers, failed-test notes)
    for name, wide in boards.wide.items():
        tables.append((name, *board_rows(wide, boards.tests[name], name)))
    c_rows, c_head = control_rows(boards)
    k_rows, k_head = _checks_rows(checks) if checks is not None else ([], [])
    e_rows, e_head = _error_rows(df)

    # leaderboard.csv / leaderboard.md
    paths = {
        "report_md": root / "report.md",
        "report_html": root / "report.html",
        "leaderboard_md": root / "leaderboard.md",
        "leaderboard_csv": root / "leaderboard.csv",
        "figures": fig_dir,
    }
    _atomic_write(paths["leaderboard_csv"], boards.long.to_csv(index=False))
    lb = [f"# Leaderboard: {suite}\n", RULE + "\n"]
    lb += _md_boards(tables)
    if notes:
        lb.append("\n".join(f"- {n}" for n in notes) + "\n")
    if c_rows:
        lb += ["## Control ordering per layer\n", markdown_table(c_rows, c_head)]
    if k_rows:
        lb += ["## Invariance checks\n", markdown_table(k_rows, k_head)]
    _atomic_write(paths["leaderboard_md"], "\n".join(lb))

    # report.md
    md = [f"# simbench report: {suite}\n", markdown_table(meta_rows, ["Key", "Value"])]
    md += ["## Leaderboard\n", RULE + "\n", *_md_boards(tables)]
    if notes:
        md.append("\n".join(f"- {n}" for n in notes) + "\n")
    sections = [("Depth curves (GM Fig. 4)", "depth-"), ("Layer × layer similarity", "layers-"),
                ("Eigenvector similarity (GM Fig. 3)", "eigvec-")]  # fmt: skip
    for title, prefix in sections:
        figs = [f for f in figures if f.name.startswith(prefix)]
        if figs:
            md.append(f"## {title}\n")
            md += [f"![{f.title}](figures/{f.name}.png)\n\n*{f.caption}*\n" for f in figs]
    if c_rows:
        md += ["## Control ordering per layer\n", markdown_table(c_rows, c_head)]
    if k_rows:
        md += ["## Invariance checks\n", markdown_table(k_rows, k_head)]
    if e_rows:
        md += ["## Failed cells\n", markdown_table(e_rows, e_head)]
    _atomic_write(paths["report_md"], "\n".join(md))

    # report.html
    body = [f"<h1>simbench report: {_esc(suite)}</h1>"]
    body.append(
        html_table(meta_rows, ["Key", "Value"], left=(0, 1)).replace(
            "<table>", '<table class="meta">'
        )
    )
    body += ["<h2>Leaderboard</h2>", f"<p>{_md_inline(RULE)}</p>"]
    for name, b_rows, b_head, b_notes in tables:
        body.append(f"<h3>{_esc(name.capitalize())} board</h3>")
        left = tuple(range(1, b_head.index("Layers") + 1))
        base = b_head.index("Baseline")
        body.append(
            html_table(
                b_rows,
                b_head,
                left=left,
                row_classes=["baseline" if r[base] else "" for r in b_rows],
            )
        )
        if b_notes:
            body.append("<ul>" + "".join(f"<li>{_md_inline(n)}</li>" for n in b_notes) + "</ul>")
    if notes:
        body.append("<ul>" + "".join(f"<li>{_md_inline(n)}</li>" for n in notes) + "</ul>")
    for title, prefix in sections:
        figs = [f for f in figures if f.name.startswith(prefix)]
        if figs:
            body.append(f"<h2>{_esc(title)}</h2>")
            body += [html_image(f.png, f.title, f.caption) for f in figs]
    if c_rows:
        body += ["<h2>Control ordering per layer</h2>", html_table(c_rows, c_head, left=(0, 1, 2))]
    if k_rows:
        body += ["<h2>Invariance checks</h2>", html_table(k_rows, k_head, left=(0,))]
    if e_rows:
        body += ["<h2>Failed cells</h2>", html_table(e_rows, e_head, left=(0, 1, 3))]
    _atomic_write(paths["report_html"], html_page(f"simbench report: {suite}", "".join(body)))
    return paths


def _md_boards(tables: list[tuple[str, list, list, list]]) -> list[str]:
    out = []
    for name, rows, headers, notes in tables:
        out += [f"### {name.capitalize()} board\n", markdown_table(rows, headers)]
        if notes:
            out.append("\n".join(f"- {n}" for n in notes) + "\n")
    return out


def _model_data(root: Path) -> Any:
    """Per-model data of the run (probe logits, labels, activations), or None."""
    from simbench.runner.model_data import ModelData

    return ModelData.open(root)


def _esc(text: str) -> str:
    return html.escape(str(text))


def _md_inline(text: str) -> str:
    """Escape, then render the ``**bold**`` and ```code``` spans used in RULE and notes."""
    out = _esc(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)

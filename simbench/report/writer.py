"""Loading a run's results and writing report.md, report.html and the leaderboard files.

The pages come from one Jinja2 template each (``templates/report.html.j2`` and
``templates/report.md.j2``) filled with the same sections: the leaderboard first, then
the figures (each drawn once), the long tables (collapsible in HTML) and the run's
metadata. Every file goes through :func:`simbench.io.atomic_path`, so it honours the umask.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import pandas as pd

from simbench.io import atomic_path
from simbench.report import ReportError, figures_gm, figures_srm, plots
from simbench.report.board_tables import RULE, board_rows, control_rows, lacking_notes
from simbench.report.leaderboard import (
    build_leaderboard,
    layer_order,
    valid_rows,
)
from simbench.report.render import fmt, markdown_table
from simbench.report.schema import to_schema3

#: the tidy results columns of the design (schema_version 3, COORD §1; version 1 lacks the
#: five uncertainty columns after ``stderr``, which then default to NaN; versions 1-2 are
#: converted by :func:`simbench.report.schema.to_schema3`)
RESULT_COLUMNS = (
    "schema_version", "suite", "model_a", "model_b", "relation", "layer_a", "layer_b",
    "depth_a", "depth_b", "features", "alignment", "alignment_params", "metric",
    "metric_params", "label", "method", "draw", "value", "stderr", "ci_low", "ci_high", "null_mean",
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
    """The results table (Parquet preferred, CSV otherwise) and the meta dict of a run.

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
    for col, default in DEFAULTS.items():
        if col not in df.columns:
            df[col] = default
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    for col in ("stderr", "ci_low", "ci_high", "null_mean", "null_sd", "z"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in ("model_a", "model_b", "relation", "layer_a", "layer_b", "metric"):
        df[col] = df[col].astype(str)
    meta: dict[str, Any] = {}
    mp = root / "results.meta.json"
    if mp.is_file():
        try:
            loaded = json.loads(mp.read_text())
            meta = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            meta = {}
    df = to_schema3(df.reset_index(drop=True), layer_order(df, meta))
    return df, meta


def display_view(df: pd.DataFrame) -> pd.DataFrame:
    """The schema-3 table as the leaderboard and the figures group it: ``metric`` = the
    display label (``bures(draws=8)``), ``alignment`` = the method (the alignment, or
    ``[positions]``/``[pooled]``/``[flattened]`` for representation rows), ``error`` =
    ``""`` on success."""
    err = df["error"].astype(object)
    return df.assign(
        metric=df["label"], alignment=df["method"], error=err.where(err.notna(), "").astype(str)
    )


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


#: a table longer than this is collapsed (``<details>``) in the HTML page
COLLAPSE_ROWS = 15
#: the figure sections, in page order: (section key, anchor, title)
FIGURE_SECTIONS = (
    ("depth", "depth-curves", "Depth curves (GM Fig. 4)"),
    ("layers", "layer-matrices", "Layer × layer similarity"),
    ("eigvec", "eigenvectors", "Eigenvector similarity (GM Fig. 3)"),
    ("srm", "srm", "Shared response model (Lu et al. Fig. 3)"),
    ("gm12", "gm-filters", "Spatial eigenfilters and projection rank (GM Fig. 1-2)"),
)
_TEMPLATES = Path(__file__).with_name("templates")


def write_file(path: Path, data: bytes | str) -> None:
    """Write ``data`` atomically with the umask's mode (:func:`simbench.io.atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def _table(
    rows: list[list[Any]],
    headers: list[str],
    *,
    title: str = "",
    anchor: str = "",
    left: tuple[int, ...] = (),
    wide: tuple[int, ...] = (),
    row_classes: list[str] | None = None,
    cls: str = "",
    collapse: bool | None = None,
) -> dict[str, Any]:
    """One table for both templates: formatted cells, its Markdown, and whether the HTML
    page folds it into ``<details>`` (longer than :data:`COLLAPSE_ROWS` by default)."""
    fold = len(rows) > COLLAPSE_ROWS if collapse is None else collapse
    return {
        "title": title,
        "id": anchor,
        "headers": headers,
        "rows": [[fmt(x) for x in r] for r in rows],
        "left": set(left),
        "wide": set(wide),
        "row_classes": row_classes,
        "cls": cls,
        "collapse": fold,
        "summary": f"Show the {len(rows)} rows" + (f" of {title.lower()}" if title else ""),
        "markdown": markdown_table(rows, headers),
    }


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24]) if png[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


def _environment(markdown: bool) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=not markdown,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=markdown,
        lstrip_blocks=markdown,
    )
    env.filters["inline"] = lambda text: jinja2.utils.markupsafe.Markup(_md_inline(str(text)))
    return env


def _unique_names(figures: list[plots.Figure]) -> list[plots.Figure]:
    """Distinct labels may share a slug (``cka(k=1)``/``cka[k=1]``): unique file names."""
    seen: dict[str, int] = {}
    out = []
    for f in figures:
        seen[f.name] = seen.get(f.name, 0) + 1
        out.append(
            f if seen[f.name] == 1 else dataclasses.replace(f, name=f"{f.name}-{seen[f.name]}")
        )
    return out


def _meta_rows(df: pd.DataFrame, meta: dict[str, Any], suite: str, order: list[str]) -> list:
    rows: list[list[Any]] = [
        ["suite", suite],
        ["rows", len(df)],
        ["failed cells", int(df["error"].notna().sum())],
    ]
    for key in ("schema_version", "simbench_version", "git_sha", "created", "timestamp",
                "executor"):  # fmt: skip
        val = meta.get(key, df[key].iloc[0] if key in df.columns else None)
        if val is not None and not isinstance(val, dict | list):
            rows.append([key, val])
    rows.append(["layers (depth order)", ", ".join(order)])
    relations = df["relation"].value_counts()
    rows.append(["rows per relation", ", ".join(f"{k}: {v}" for k, v in relations.items())])
    return rows


def write_report(output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the report and leaderboard of the run in ``output_dir``; return their paths.

    Keys: ``report_md``, ``report_html``, ``leaderboard_md``, ``leaderboard_csv`` and
    ``figures`` (the folder of the PNGs that ``report.md`` links). Raises
    :class:`ReportError` when the folder has no usable results table.
    """
    root = Path(output_dir)
    df, meta = load_results(root)
    view = display_view(df)
    checks, checks_note = _load_checks(root)
    boards = build_leaderboard(df, meta, checks, data=_model_data(root))
    valid = valid_rows(view)
    order = layer_order(view, meta)
    suite = str(meta.get("suite") or (df["suite"].iloc[0] if "suite" in df.columns else root.name))

    # columns beyond the design's that may reference .npy arrays (e.g. ``details``)
    extra_cols = [
        c
        for c in df.columns
        if c not in RESULT_COLUMNS
        and (df[c].dtype == object or pd.api.types.is_string_dtype(df[c]))
    ]
    figures = list(plots.depth_curves(valid, order))
    figures += list(plots.layer_matrices(valid, order))
    eig, missing_arrays = figures_gm.eigenvector_heatmaps(valid, order, root, extra_cols)
    figures += eig
    figures += list(figures_srm.srm_panels(valid, df["metric"], order))
    weight_figs, weight_notes = figures_gm.weight_figures(root)
    figures += weight_figs
    figures = _unique_names(figures)

    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    for f in figures:
        write_file(fig_dir / f"{f.name}.png", f.png)
    current = {f"{f.name}.png" for f in figures}
    for stale in fig_dir.glob("*.png"):  # figures of an earlier report of this folder
        prefixes = ("depth-", "layers-", "eigvec-", "srm-", "eigenfilters-", "projection-")
        if stale.name not in current and stale.name.startswith(prefixes):
            stale.unlink(missing_ok=True)

    notes = [n for n in (checks_note,) if n]
    notes += lacking_notes(boards)

    board_tables = []  # one per board, with the failed-test notes under it
    for name, wide in boards.wide.items():
        b_rows, b_head, b_notes = board_rows(wide, boards.tests[name], name)
        base = b_head.index("Baseline")
        left = tuple(range(1, b_head.index("Layers") + 1))
        t = _table(b_rows, b_head, title=f"{name.capitalize()} board", anchor=f"board-{name}",
                   left=left, collapse=False,
                   row_classes=["baseline" if r[base] else "" for r in b_rows])  # fmt: skip
        t["notes"] = b_notes
        board_tables.append(t)
    c_rows, c_head = control_rows(boards)
    k_rows, k_head = _checks_rows(checks) if checks is not None else ([], [])
    e_rows, e_head = _error_rows(view)
    control_table = _table(c_rows, c_head, title="Control ordering per layer",
                           anchor="control-ordering", left=(0, 1, 2))  # fmt: skip
    checks_table = _table(k_rows, k_head, title="Invariance checks", anchor="invariance-checks",
                          left=(0,))  # fmt: skip

    paths = {
        "report_md": root / "report.md",
        "report_html": root / "report.html",
        "leaderboard_md": root / "leaderboard.md",
        "leaderboard_csv": root / "leaderboard.csv",
        "figures": fig_dir,
    }
    write_file(paths["leaderboard_csv"], boards.long.to_csv(index=False))
    lb = [f"# Leaderboard: {suite}\n", RULE + "\n"]
    for t in board_tables:
        lb += [f"## {t['title']}\n", t["markdown"]]
        if t["notes"]:
            lb.append("\n".join(f"- {n}" for n in t["notes"]) + "\n")
    if notes:
        lb.append("\n".join(f"- {n}" for n in notes) + "\n")
    for t in (control_table, checks_table):
        if t["rows"]:
            lb += [f"## {t['title']}\n", t["markdown"]]
    write_file(paths["leaderboard_md"], "\n".join(lb))

    sections: list[dict[str, Any]] = [
        _section("leaderboard", "Leaderboard", paragraphs=[RULE], tables_before=board_tables,
                 notes=notes + [n for t in board_tables for n in t["notes"]],
                 tables=[t for t in (control_table, checks_table) if t["rows"]]),
    ]  # fmt: skip
    fig_notes = _figure_notes(df, eig, missing_arrays)
    fig_notes["gm12"] = weight_notes
    for key, anchor, title in FIGURE_SECTIONS:
        figs = [f for f in figures if f.section == key]
        if figs or fig_notes.get(key):
            sections.append(_section(anchor, title, figures=figs, notes=fig_notes.get(key, [])))
    if e_rows:
        sections.append(_section("failed-cells", "Failed cells", tables_before=[
            _table(e_rows, e_head, left=(0, 1), wide=(3,))]))  # fmt: skip
    meta_table = _table(_meta_rows(df, meta, suite, order), ["Key", "Value"], left=(0, 1),
                        wide=(1,), cls="meta", collapse=False)  # fmt: skip
    sections.append(_section("about", "About this run", tables_before=[meta_table]))

    title = f"simbench report: {suite}"
    md = _environment(markdown=True).get_template("report.md.j2")
    write_file(paths["report_md"], md.render(title=title, sections=sections))
    for s in sections:
        s["figures"] = [_html_figure(f) for f in s["figures"]]
    page = _environment(markdown=False).get_template("report.html.j2")
    write_file(paths["report_html"], page.render(title=title, sections=sections))
    return paths


def _section(anchor: str, title: str, **parts: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": anchor, "title": title, "paragraphs": [], "tables_before": [],
                           "notes": [], "figures": [], "tables": []}  # fmt: skip
    out.update(parts)
    return out


def _html_figure(f: plots.Figure) -> dict[str, Any]:
    w, h = _png_size(f.png)
    return {"name": f.name, "title": f.title, "caption": f.caption, "alt": f.alt or f.title,
            "b64": base64.b64encode(f.png).decode("ascii"), "width": w, "height": h}  # fmt: skip


def _figure_notes(df: pd.DataFrame, eig: list, missing_arrays: int) -> dict[str, list[str]]:
    """Why a figure the papers have is not in this report (per section key)."""
    notes: dict[str, list[str]] = {}
    weights = df["consumes"].astype(str) == "weights" if "consumes" in df.columns else None
    if missing_arrays:
        notes.setdefault("eigvec", []).append(
            f"{missing_arrays} referenced eigenvector array(s) could not be read"
        )
    if not eig:
        why = (
            "the suite scores no weight metric"
            if weights is not None and not weights.any()
            else "no eigenvector-overlap arrays are referenced by the results"
        )
        notes.setdefault("eigvec", []).append(f"no GM Fig. 3 heatmaps: {why}")
    if not (df["metric"] == "srm").any():
        notes.setdefault("srm", [])  # no section: SRM is not in the suite
    return notes


def _esc(text: str) -> str:
    return html.escape(str(text))


def _md_inline(text: str) -> str:
    """Escape, then render the ``**bold**`` and ```code``` spans used in RULE and notes."""
    out = _esc(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _model_data(root: Path) -> Any:
    """Per-model data of the run (probe logits, labels, activations), or None."""
    from simbench.runner.model_data import ModelData

    return ModelData.open(root)

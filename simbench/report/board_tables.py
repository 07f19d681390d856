"""The wide leaderboard tables (Markdown and HTML rows) of scored boards."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from simbench.groundtruth.board import OVERALL, Boards

RULE = (
    "Representation and weight metrics are ranked on separate boards; every row of a "
    "board is scored on the same ground-truth tests (MATH.md), each score in [0, 1] "
    "(1 = behaves as it should) with its 95 % bootstrap interval over the test's unit "
    "and its rank among the rows scored on that test (`#k`). **Overall** = mean of the "
    "board's test scores, interval from resampling all tests' units jointly. A test "
    "that cannot run for a row is shown `n/a` with its reason below the table and the "
    "row is **incomplete**: no overall score, no rank. Rows are ranked by overall score "
    "(equal scores share a rank); **tied** = the row's interval overlaps the leader's. "
    "**Features**: how each image was represented in the row's cells (`positions`: "
    "sampled spatial positions; `pooled`: global-average-pooled; `flattened`: C·H·W); "
    "**Layers**: same-layer and/or cross-layer (layer × layer) cells."
)


def _num(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(v) else f"{v:.3f}"


def cell(score: Any, lo: Any, hi: Any, rank: Any = None) -> str:
    """``0.833 [0.801, 0.866] #2`` (score, interval, rank) or ``n/a``."""
    s = _num(score)
    if s == "n/a":
        return s
    out = f"{s} [{_num(lo)}, {_num(hi)}]"
    return out + (f" #{int(rank)}" if rank is not None and not pd.isna(rank) else "")


def board_rows(
    wide: pd.DataFrame, tests: list[str], board: str
) -> tuple[list[list[Any]], list[str], list[str]]:
    """``(rows, headers, notes)`` of one board's wide table; notes list the failed tests."""
    headers = ["Rank", "Metric"]
    if board == "weights":
        headers.append("Alignment")
    headers += ["Baseline", "Features", "Layers", *tests, "Overall", "Tied"]
    rows, notes = [], []
    for r in wide.to_dict("records"):
        rank = "-" if r["rank"] is None or pd.isna(r["rank"]) else str(int(r["rank"]))
        line = [rank, r["metric"]]
        if board == "weights":
            line.append(r["alignment"])
        line += [r["baseline"], r["features"], r["layers"]]
        for t in tests:
            line.append(cell(r[t], r[f"{t}_ci_low"], r[f"{t}_ci_high"], r[f"{t}_rank"]))
            status = str(r[f"{t}_status"])
            if status != "ok":
                who = r["metric"] + (f" / {r['alignment']}" if r["alignment"] else "")
                notes.append(f"{who}: `{t}` {status}")
        overall = cell(r[OVERALL], r[f"{OVERALL}_ci_low"], r[f"{OVERALL}_ci_high"])
        line.append(overall if r["status"] == "ok" else str(r["status"]))
        line.append("tied" if r["tied"] else "")
        rows.append(line)
    return rows, headers, notes


def control_rows(boards: Boards) -> tuple[list[list[Any]], list[str]]:
    """Per metric and layer: mean similarity per relation (random labels shown, not scored)."""
    headers = ["Board", "Metric", "Alignment", "Layer", "seed", "dataset", "labels",
               "random labels a/b (not scored)", "Holds"]  # fmt: skip
    rows = []
    for (board, key, test), detail in boards.details.items():
        if test != "controls":
            continue
        metric, alignment = key.split("|", 1)
        for rec in detail.get("layers", []):
            rows.append([board, metric, alignment, rec["layer"],
                         *(_num(rec[k]) for k in ("seed", "dataset", "labels", "random_labels")),
                         "yes" if rec["holds"] else "no"])  # fmt: skip
    return rows, headers


def lacking_notes(boards: Boards) -> list[str]:
    """One line per registered test not scored, with the reason."""
    out = []
    if boards.lacking is not None:
        lack = boards.lacking[~boards.lacking["scored"]]
        out += [f"`{r.test}` not scored: {r.reason}" for r in lack.itertuples(index=False)]
    for board, tests in boards.off.items():
        out += [f"`{t}` not on the {board} board: no row could be scored ({why})"
                for t, why in tests]  # fmt: skip
    return out

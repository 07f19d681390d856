"""The compact summary that ends ``simbench run``: the top rows of each leaderboard board
(with their intervals where the board has them), the failed cells with their first
reasons, and the paths of the outputs. ``--verbose`` adds the full ``leaderboard.md``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = ["format_summary", "leaderboard_boards"]

#: interval columns a board may give for its score, first match wins
_CI_COLUMNS = (("overall_ci_low", "overall_ci_high"), ("ci_low", "ci_high"))


def leaderboard_boards(output_dir: str | os.PathLike) -> dict[str, Any]:
    """``{board name: wide DataFrame}`` of the run in ``output_dir`` (the
    ``representations`` and ``weights`` boards of
    :func:`simbench.report.leaderboard.build_leaderboard`), ranked as in ``leaderboard.md``."""
    import pandas as pd

    from simbench.report import load_results
    from simbench.report.leaderboard import build_leaderboard
    from simbench.report.writer import CHECKS_FILE

    df, meta = load_results(output_dir)
    path = Path(output_dir) / CHECKS_FILE
    checks = pd.read_csv(path) if path.is_file() else None
    from simbench.runner.model_data import ModelData

    # the same boards as leaderboard.md: with the run's per-model data (probe logits,
    # activations) that the model-level tests read
    boards = build_leaderboard(df, meta, checks, data=ModelData.open(output_dir))
    return {f"{name} board": wide for name, wide in boards.wide.items()}


def _num(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{v:.3f}" if math.isfinite(v) else "n/a"


def _board_lines(name: str, board: Any, top: int) -> list[str]:
    from simbench.runner.results import label

    if board is None or len(board) == 0:
        return [f"{name}: no rows"]
    ci = next(((lo, hi) for lo, hi in _CI_COLUMNS if {lo, hi} <= set(board.columns)), None)
    shown = board.head(top)
    lines = [f"{name} (top {len(shown)} of {len(board)}):"]
    for r in shown.to_dict("records"):
        metric = label(r.get("metric", "?"), r.get("metric_params"))
        align = r.get("alignment")
        where = f" · {align}" if isinstance(align, str) and align else ""
        rank = r.get("rank")
        rank = (
            "-" if rank is None or rank != rank else f"{int(rank)}" + ("=" if r.get("tied") else "")
        )
        score = _num(r.get("overall", r.get("score")))
        text = f"  {rank:>3}  {metric}{where}  score {score}"
        if ci is not None:
            text += f" [{_num(r.get(ci[0]))}, {_num(r.get(ci[1]))}]"
        lines.append(text)
    return lines


def _failure_lines(df: Any, reasons: int) -> list[str]:
    bad = df[df["error"].notna()] if "error" in df.columns else df.iloc[0:0]
    if len(bad) == 0:
        return ["failed cells: 0"]
    first = bad["error"].astype(str).map(lambda e: e.splitlines()[0][:160])
    counts = first.value_counts(sort=False)  # in order of first appearance
    lines = [f"failed cells: {len(bad)} of {len(df)}; first reasons:"]
    for why, n in list(counts.items())[:reasons]:
        rows = bad[first == why]
        where = f"{rows['metric'].iloc[0]} at {rows['layer_a'].iloc[0]}"
        lines.append(f"  {n} × {why} (e.g. {where})")
    if len(counts) > reasons:
        lines.append(f"  ... and {len(counts) - reasons} other reasons (results.csv, column error)")
    return lines


def format_summary(summary: Any, top: int = 3, reasons: int = 3) -> str:
    """The end-of-run summary of a :class:`simbench.runner.driver.RunSummary`: the top
    ``top`` rows of each board, the failed cells and up to ``reasons`` distinct reasons,
    the output files."""
    lines = []
    df = summary.results
    report = summary.report or {}
    out_dir = summary.paths["parquet"].parent if "parquet" in summary.paths else None
    if report and out_dir is not None:
        try:
            boards = leaderboard_boards(out_dir)
        except Exception as exc:  # the results are written; the summary only reports it
            lines.append(f"leaderboard: not available ({type(exc).__name__}: {exc})")
        else:
            for name, board in boards.items():
                lines += _board_lines(name, board, top)
    if df is not None:
        lines += _failure_lines(df, reasons)
    lines.append("outputs:")
    outputs = [
        ("results", summary.paths.get("parquet")),
        ("table (csv)", summary.paths.get("csv")),
        ("report", report.get("report_html")),
        ("report (md)", report.get("report_md")),
        ("leaderboard", report.get("leaderboard_md")),
    ]
    width = max(len(k) for k, _ in outputs)
    lines += [f"  {k:<{width}}  {v}" for k, v in outputs if v is not None]
    return "\n".join(lines)

"""Boards: every row of a board scored on the same tests, one overall scale, ties by CI.

MATH.md "Boards and ranking":

- Representation metrics and weight metrics are ranked on separate boards; a board's
  tests are the selected tests that apply to its metric kind (``test.boards``).
- Tests are selected by name (the suite's ``tests:``), or by default every registered
  test whose inputs the run has (``test.missing(ctx) is None``); :func:`plan_tests` says
  which will be scored and which lack inputs, and why. A default test that no row of a
  board can be scored on (e.g. ``chance`` for weight metrics without a chance level) is
  left off that board, with the reason (``Boards.off``); a named test never is.
- Each (row, test) gets its score, a 95 % percentile bootstrap interval over the test's
  units (``resamples`` ≥ 1000, seeded) and ``n_units``; a test that cannot score a row
  gives ``status = "failed: <reason>"``.
- ``overall`` = the mean of the board's test scores; its interval resamples all tests'
  units jointly (one draw per replicate for each distinct unit set, shared by the tests
  that resample the same units), the mean taken per replicate. A row with any failed test
  is ``incomplete``: it keeps its per-test scores, has no overall score and no rank.
- Complete rows are ranked by overall score (competition ranking; equal scores to 1e-9
  share a rank); a row whose interval overlaps the leader's is marked ``tied`` with it.
  Rows are ranked per test too (rows scored on that test).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from simbench.groundtruth.base import (
    BOARDS,
    RESAMPLES,
    GroundTruthTest,
    Row,
    TestUnavailable,
    UnitScores,
    bootstrap,
    draw_counts,
    percentile_ci,
)
from simbench.groundtruth.context import TestContext, rows_of

#: the long table's columns (issue #8, deliverable 4)
LONG_COLUMNS = [
    "board", "metric", "alignment", "test", "score", "ci_low", "ci_high", "n_units", "status",
]  # fmt: skip
OVERALL = "overall"
TIE_TOL = 1e-9


def registered_tests(names: list[str] | None = None) -> list[GroundTruthTest]:
    """Instances of the named tests (all registered ones when ``names`` is None)."""
    from simbench.registry import default_registry

    reg = default_registry()
    names = reg.names("test") if names is None else names
    return [reg.create("test", n) for n in names]


def plan_tests(ctx: TestContext, names: list[str] | None = None) -> pd.DataFrame:
    """Which tests will be scored and which lack inputs, and why (``--dry-run``).

    Columns: test, boards, unit, scored (bool), reason (empty when scored).
    """
    out = []
    for t in registered_tests(names):
        why = t.missing(ctx)
        scored = why is None or names is not None
        out.append({"test": t.name, "boards": ", ".join(b for b in BOARDS if b in t.boards),
                    "unit": t.unit, "scored": scored,
                    "reason": "" if why is None else why})  # fmt: skip
    return pd.DataFrame(out, columns=["test", "boards", "unit", "scored", "reason"])


@dataclass
class Boards:
    """The scored boards: the long table, the wide tables per board, and per-cell details."""

    long: pd.DataFrame
    wide: dict[str, pd.DataFrame]
    details: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    tests: dict[str, list[str]] = field(default_factory=dict)  # board -> test names
    lacking: pd.DataFrame | None = None  # tests not run and why
    #: board -> [(test, status of its first row)]: default tests no row of the board could
    #: be scored on, left off that board
    off: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _seed(base: int, *parts: str) -> int:
    return (base + zlib.crc32("|".join(parts).encode())) % 2**32


def score_boards(
    ctx: TestContext,
    names: list[str] | None = None,
    *,
    resamples: int = RESAMPLES,
    tests: list[GroundTruthTest] | None = None,
) -> Boards:
    """Score every row of every board on the board's tests (module docstring)."""
    if resamples < 1000:
        raise ValueError(f"MATH.md asks for at least 1000 resamples; got {resamples}")
    if tests is None:
        candidates = registered_tests(names)
        chosen = [t for t in candidates if names is not None or t.missing(ctx) is None]
        lacking = plan_tests(ctx, names)
    else:
        chosen, lacking = list(tests), None
    rows = rows_of(ctx.results)
    long: list[dict[str, Any]] = []
    details: dict[tuple[str, str, str], dict[str, Any]] = {}
    per_board: dict[str, list[str]] = {}
    off: dict[str, list[tuple[str, str]]] = {}
    for board in BOARDS:
        brows = [r for r in rows if r.board == board]
        if not brows:
            continue
        scored = {}  # test name -> [(row, record, unit scores)]
        for t in [t for t in chosen if board in t.boards]:
            scored[t.name] = [(row, *_score_one(ctx, t, row, resamples)) for row in brows]
            if names is None and all(us is None for _, _, us in scored[t.name]):
                # a default test no row of this board can be scored on stays off the board
                off.setdefault(board, []).append((t.name, scored.pop(t.name)[0][1]["status"]))
        btests = [t for t in chosen if t.name in scored]
        per_board[board] = [t.name for t in btests]
        for i, row in enumerate(brows):
            results: dict[str, UnitScores] = {}
            for t in btests:
                _, rec, us = scored[t.name][i]
                long.append(rec)
                if us is not None:
                    results[t.name] = us
                    details[(board, _key(row), t.name)] = us.detail
            long.append(_overall(ctx, row, btests, results, resamples))
    df = pd.DataFrame(long, columns=LONG_COLUMNS)
    df["n_units"] = df["n_units"].astype("int64")
    wide = {b: wide_table(df[df["board"] == b], per_board[b]) for b in per_board}
    return Boards(df, wide, details, per_board, lacking, off)


def _key(row: Row) -> str:
    return f"{row.label}|{row.alignment or ''}"


def _record(row: Row, test: str, score: float, ci: tuple[float, float], n: int, status: str):
    return {"board": row.board, "metric": row.label, "alignment": row.alignment or "",
            "test": test, "score": score, "ci_low": ci[0], "ci_high": ci[1],
            "n_units": n, "status": status}  # fmt: skip


def _score_one(
    ctx: TestContext, t: GroundTruthTest, row: Row, resamples: int
) -> tuple[dict[str, Any], UnitScores | None]:
    nan = (float("nan"), float("nan"))
    why = t.missing(ctx)
    if why is not None:
        return _record(row, t.name, float("nan"), nan, 0, f"failed: {why}"), None
    try:
        us = t.score(ctx, row)
        point = us.point()
    except TestUnavailable as exc:
        return _record(row, t.name, float("nan"), nan, 0, f"failed: {exc}"), None
    except Exception as exc:  # a broken test or metric fails only its own cell
        return _record(row, t.name, float("nan"), nan, 0,
                       f"failed: {type(exc).__name__}: {exc}"), None  # fmt: skip
    if not np.isfinite(point):
        return _record(row, t.name, float("nan"), nan, len(us.units),
                       "failed: no unit could be scored"), None  # fmt: skip
    ci = bootstrap(us, resamples, _seed(ctx.seed, t.name, _key(row)))
    return _record(row, t.name, point, ci, len(us.units), "ok"), us


def _overall(
    ctx: TestContext,
    row: Row,
    tests: list[GroundTruthTest],
    results: dict[str, UnitScores],
    resamples: int,
) -> dict[str, Any]:
    nan = (float("nan"), float("nan"))
    n_units = sum(len(u.units) for u in results.values())
    if not tests:
        return _record(row, OVERALL, float("nan"), nan, 0, "failed: no test applies")
    if len(results) < len(tests):
        return _record(row, OVERALL, float("nan"), nan, n_units, "incomplete")
    score, ci = joint_bootstrap([results[t.name] for t in tests], resamples,
                                _seed(ctx.seed, OVERALL, _key(row)))  # fmt: skip
    return _record(row, OVERALL, score, ci, n_units, "ok")


def joint_bootstrap(
    results: list[UnitScores], resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """Mean of the tests' scores and its interval, all tests' units resampled jointly."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0FE1]))
    draws: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
    reps = []
    for us in results:
        key = (us.unit, tuple(us.units))
        if key not in draws:
            draws[key] = draw_counts(rng, len(us.units), resamples)
        reps.append(us.fn(draws[key]))
    point = float(np.mean([us.point() for us in results]))
    return point, percentile_ci(np.mean(np.vstack(reps), axis=0))


def competition_ranks(scores: pd.Series) -> pd.Series:
    """1, 2, 2, 4 ranking of finite scores (highest first, equal to 1e-9 share); NaN: None."""
    s = scores.astype(float)
    out = pd.Series([None] * len(s), index=s.index, dtype=object)
    finite = s[np.isfinite(s)]
    for idx, v in finite.items():
        out[idx] = int(1 + (finite > v + TIE_TOL).sum())
    return out


def wide_table(long: pd.DataFrame, tests: list[str]) -> pd.DataFrame:
    """One row per (metric, alignment): per test score, CI, rank; overall; tie with leader.

    Columns: rank (overall, None when unranked), metric, alignment, then per test
    ``<test>``, ``<test>_ci_low``, ``<test>_ci_high``, ``<test>_rank``,
    ``<test>_status``, then overall, overall_ci_low, overall_ci_high, status, tied.
    """
    keys = ["metric", "alignment"]
    base = long[keys].drop_duplicates().reset_index(drop=True)
    wide = base.copy()
    for t in [*tests, OVERALL]:
        part = long[long["test"] == t].set_index(keys)
        idx = pd.MultiIndex.from_frame(base)
        got = part.reindex(idx)
        ok = got["status"] == "ok"
        score = got["score"].where(ok)
        wide[t] = score.to_numpy(float)
        wide[f"{t}_ci_low"] = got["ci_low"].to_numpy(float)
        wide[f"{t}_ci_high"] = got["ci_high"].to_numpy(float)
        wide[f"{t}_rank"] = competition_ranks(pd.Series(score.to_numpy(float))).to_numpy()
        wide[f"{t}_status"] = got["status"].fillna("failed: not scored").to_numpy()
    wide = wide.rename(columns={f"{OVERALL}_rank": "rank", f"{OVERALL}_status": "status"})
    wide["tied"] = False
    ranked = wide[wide["rank"].notna()]
    if len(ranked):
        lead = ranked.sort_values(OVERALL, ascending=False, kind="stable").iloc[0]
        lo, hi = lead[f"{OVERALL}_ci_low"], lead[f"{OVERALL}_ci_high"]
        overlap = (wide[f"{OVERALL}_ci_high"] >= lo) & (wide[f"{OVERALL}_ci_low"] <= hi)
        others = wide["rank"].notna() & overlap & (wide.index != lead.name)
        wide["tied"] = others.to_numpy(bool)
        wide.loc[lead.name, "tied"] = bool(others.any())
    order = wide.assign(_k=-wide[OVERALL].fillna(-np.inf)).sort_values(
        ["_k", "metric", "alignment"], kind="stable"
    )
    return order.drop(columns="_k").reset_index(drop=True)

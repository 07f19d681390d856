"""The leaderboard: every (metric, alignment) scored on ground-truth tests from a suite's results.

MATH.md "Ground-truth checks a metric is scored on", computed from the tidy results table
only (one row per pair, layer pair, alignment, metric, draw):

- **layer identification** (Kornblith 2019): over pairs of relation ``seed``, for each layer
  ``i`` of A, is the most similar layer of B (respecting ``higher_is_better``) layer ``i``?
  Needs rows with ``layer_a != layer_b`` (``layer_matrix: true``), else n/a.
- **control ordering** (GM Fig. 4): per layer, does ``seed > dataset > labels`` hold for the
  mean similarity (the relations present; with two of them, that pair)? Fraction of layers.
- **invariances**: fraction of the metric's claimed invariances verified on the suite's own
  activations (``invariance_checks.csv``, see :func:`simbench.invariance.check_invariances`).

**Ranking rule**: ``score`` = the unweighted mean of the criteria available for that row
(each in [0, 1]; n/a ones are left out, and ``criteria`` says how many were used). Rows
are ranked by ``score``, highest first; equal scores (to 1e-9) share a rank
("competition" ranking 1, 2, 2, 4) and are shown as ``2=``, listed with more criteria
first; rows with no criterion, or whose cells all failed, are unranked (``-``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: relations of the control ordering, most similar first (GM Fig. 4)
CONTROL_ORDER = ("seed", "dataset", "labels")
#: shown beside the ordering but not scored: MATH.md asks that two random-label
#: realisations "agree in early layers", and leaves "agree" and "early" undefined
CONTROL_CONTEXT = ("random_labels",)
#: scores this close count as a tie (both for "most similar layer" and for ranks)
TIE_TOL = 1e-9


def metric_base(label: str) -> str:
    """The plugin name in a metric label: ``cka(kernel=rbf)`` or ``cka[rbf]`` -> ``cka``."""
    return str(label).split("(")[0].split("[")[0].split("{")[0].strip()


def _params_text(label: str, params: Any) -> str:
    """Lower-case text of a metric's parameters (from its label and a params column)."""
    text = str(label)[len(metric_base(label)) :]
    if isinstance(params, str):
        text += " " + params
    elif isinstance(params, dict):
        text += " " + json.dumps(params)
    return text.lower()


@dataclass(frozen=True)
class Baseline:
    """A baseline of the leaderboard: a metric (with a parameter condition), any alignment."""

    title: str
    metric: str
    condition: Callable[[str], bool] = lambda params: True


#: DESIGN.md/issue #4: SVCCA, linear CKA and "SRM + Procrustes". The latter is read as the
#: two representation-level baselines from those papers: SRM fit quality (Lu et al. 2018,
#: the ``srm`` metric) and the Procrustes shape distance (Williams 2021,
#: ``procrustes_distance``). Procrustes as an *alignment* is not marked: it is GM's own
#: alignment for the weight metrics, the method being benchmarked, not a baseline.
BASELINES: tuple[Baseline, ...] = (
    Baseline("SVCCA", "svcca"),
    Baseline("linear CKA", "cka", lambda p: "rbf" not in p),
    Baseline("SRM", "srm"),
    Baseline("Procrustes", "procrustes_distance"),
)


def baseline_of(metric: str, params: Any = None) -> str:
    """The baseline title a metric label is, or ``""``."""
    base, text = metric_base(metric), _params_text(metric, params)
    for b in BASELINES:
        if b.metric == base and b.condition(text):
            return b.title
    return ""


# -- preparing the table ----------------------------------------------------------------
def valid_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without an error and with a finite value."""
    err = df["error"].fillna("").astype(str).str.strip()
    ok = (err == "") & np.isfinite(pd.to_numeric(df["value"], errors="coerce"))
    return df[ok]


def layer_order(df: pd.DataFrame, meta: dict[str, Any] | None = None) -> list[str]:
    """Layers in depth order.

    ``meta["layers"]`` (a list, or a dict of lists per model/architecture, merged in order)
    when the runner provides it; otherwise the order of first appearance in ``layer_a`` then
    ``layer_b`` (the runner writes layers in model order). Layers not in ``meta`` follow.
    """
    order: list[str] = []
    declared = (meta or {}).get("layers")
    if isinstance(declared, dict):
        declared = [name for names in declared.values() for name in (names or [])]
    if isinstance(declared, list):
        order.extend(str(x) for x in declared if isinstance(x, str))
    diag = df[df["layer_a"] == df["layer_b"]]
    for col in (diag["layer_a"], df["layer_a"], df["layer_b"]):
        order.extend(str(x) for x in col.tolist())
    present = set(df["layer_a"].astype(str)) | set(df["layer_b"].astype(str))
    return [x for x in dict.fromkeys(order) if x in present]


def _direction(rows: pd.DataFrame) -> float:
    """+1 when higher values mean more similar, -1 otherwise (first row's declaration)."""
    hib = rows["higher_is_better"].iloc[0] if len(rows) else True
    return 1.0 if _truthy(hib) else -1.0


def _truthy(x: Any) -> bool:
    if isinstance(x, str):
        return x.strip().lower() in ("true", "1", "yes")
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return True
    return bool(x)


def _group_keys() -> list[str]:
    return ["metric", "alignment"]


# -- (a) layer identification ------------------------------------------------------------
def layer_identification(df: pd.DataFrame) -> pd.DataFrame:
    """Kornblith 2019 layer identification per (metric, alignment) over ``seed`` pairs.

    For each seed pair and layer ``i`` of A scored against at least two layers of B
    (including ``i``), the most similar layer of B is found on the draw-averaged values.
    A tie between ``k`` layers that includes ``i`` counts ``1/k`` (the chance of picking
    ``i`` when breaking the tie at random), so a constant metric gets no free credit.
    Columns: metric, alignment, layer_identification (accuracy or NaN), layer_id_n (number
    of (pair, layer) decisions).
    """
    out = []
    seed = df[df["relation"] == "seed"]
    for (metric, alignment), rows in df.groupby(_group_keys(), sort=False):
        acc, n = float("nan"), 0
        srows = seed[(seed["metric"] == metric) & (seed["alignment"] == alignment)]
        if len(srows) and (srows["layer_a"] != srows["layer_b"]).any():
            sign = _direction(rows)
            means = srows.groupby(["model_a", "model_b", "layer_a", "layer_b"], sort=False)[
                "value"
            ].mean()
            credit = 0.0
            for (_, _, layer), cand in means.groupby(level=[0, 1, 2], sort=False):
                layers_b = cand.index.get_level_values("layer_b")
                if len(cand) < 2 or layer not in set(layers_b):
                    continue
                s = sign * cand.to_numpy(dtype=float)
                best = s.max()
                ties = layers_b[s >= best - TIE_TOL * max(1.0, abs(best))]
                credit += (1.0 / len(ties)) if layer in set(ties) else 0.0
                n += 1
            acc = credit / n if n else float("nan")
        out.append(
            {"metric": metric, "alignment": alignment, "layer_identification": acc, "layer_id_n": n}
        )
    return pd.DataFrame(out, columns=["metric", "alignment", "layer_identification", "layer_id_n"])


# -- (b) control ordering ------------------------------------------------------------------
def relation_means(df: pd.DataFrame) -> pd.DataFrame:
    """Per (metric, alignment, relation, layer) on same-layer rows: mean and uncertainty.

    Draws are averaged within a pair first, then pairs are averaged with equal weight.
    ``err`` combines the spread between pairs (standard error of their mean, when there
    are at least two) with the pairs' own uncertainty (``sqrt(mean stderr² / draws)`` from
    the metric's reported stderr, else the standard error over draws), in quadrature.
    Columns: metric, alignment, relation, layer, mean, err, pairs.
    """
    diag = df[df["layer_a"] == df["layer_b"]].copy()
    keys = ["metric", "alignment", "relation", "layer_a", "model_a", "model_b"]
    if diag.empty:
        return pd.DataFrame(columns=["metric", "alignment", "relation", "layer", "mean", "err"])
    diag["stderr"] = pd.to_numeric(diag["stderr"], errors="coerce")

    def pair_stats(g: pd.DataFrame) -> pd.Series:
        v, se = g["value"].to_numpy(float), g["stderr"].to_numpy(float)
        k = len(v)
        if np.isfinite(se).any():
            pse = math.sqrt(np.nanmean(se**2) / k)
        elif k >= 2:
            pse = float(np.std(v, ddof=1) / math.sqrt(k))
        else:
            pse = float("nan")
        return pd.Series({"pmean": float(v.mean()), "pse": pse})

    pairs = diag.groupby(keys, sort=False)[["value", "stderr"]].apply(pair_stats).reset_index()
    rows = []
    for key, g in pairs.groupby(keys[:4], sort=False):
        m, se = g["pmean"].to_numpy(float), g["pse"].to_numpy(float)
        p = len(m)
        between = float(np.std(m, ddof=1) / math.sqrt(p)) if p >= 2 else 0.0
        within = math.sqrt(np.nansum(se**2)) / p if np.isfinite(se).any() else float("nan")
        if p >= 2:
            err = math.sqrt(between**2 + (within if math.isfinite(within) else 0.0) ** 2)
        else:
            err = within
        rows.append((*key, float(m.mean()), err, p))
    return pd.DataFrame(
        rows, columns=["metric", "alignment", "relation", "layer", "mean", "err", "pairs"]
    )


def control_ordering(df: pd.DataFrame, order: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GM Fig. 4 control ordering per (metric, alignment): summary and per-layer detail.

    For each layer with at least two of the relations ``seed``, ``dataset``, ``labels``,
    the ordering holds when the relation means are strictly decreasing in that order
    (increasing for a distance, ``higher_is_better = False``). Summary columns:
    metric, alignment, control_ordering (fraction of such layers, NaN if none),
    control_held, control_layers. Detail: metric, alignment, layer, one column per
    relation (mean; also ``random_labels``, shown but not scored), holds.
    """
    means = relation_means(df[df["relation"].isin(CONTROL_ORDER + CONTROL_CONTEXT)])
    summary, detail = [], []
    for (metric, alignment), rows in df.groupby(_group_keys(), sort=False):
        sign = _direction(rows)
        m = means[(means["metric"] == metric) & (means["alignment"] == alignment)]
        held = total = 0
        if not m.empty:
            table = m.pivot_table(index="layer", columns="relation", values="mean")
            layers = [x for x in order if x in table.index]
            for layer in layers:
                vals = [(r, table.at[layer, r]) for r in CONTROL_ORDER if r in table.columns]
                vals = [(r, v) for r, v in vals if np.isfinite(v)]
                rec: dict[str, Any] = {"metric": metric, "alignment": alignment, "layer": layer}
                rec.update({r: v for r, v in vals})
                rec.update({r: table.at[layer, r] for r in CONTROL_CONTEXT if r in table.columns})
                if len(vals) >= 2:
                    s = [sign * v for _, v in vals]
                    ok = all(a > b for a, b in itertools.pairwise(s))
                    rec["holds"] = ok
                    held += ok
                    total += 1
                else:
                    rec["holds"] = pd.NA
                detail.append(rec)
        summary.append(
            {
                "metric": metric,
                "alignment": alignment,
                "control_ordering": held / total if total else float("nan"),
                "control_held": held,
                "control_layers": total,
            }
        )
    cols = ["metric", "alignment", "layer", *CONTROL_ORDER, *CONTROL_CONTEXT, "holds"]
    det = pd.DataFrame(detail)
    det = det.reindex(columns=cols) if not det.empty else pd.DataFrame(columns=cols)
    return pd.DataFrame(
        summary,
        columns=["metric", "alignment", "control_ordering", "control_held", "control_layers"],
    ), det


# -- (c) invariances -----------------------------------------------------------------------
def invariance_summary(checks: pd.DataFrame | None) -> pd.DataFrame:
    """Per metric: the fraction of claimed invariances verified (``passed``) in ``checks``.

    ``checks`` has the columns of :func:`simbench.invariance.check_invariances` (at least
    metric, invariance, claimed, passed). Claimed rows whose ``passed`` is missing (the
    metric could not be evaluated on the stored activations) are left out; a metric with
    no evaluable claimed invariance gets NaN. ``unclaimed_invariant`` lists unclaimed
    invariances that nevertheless held (a claim the metric could add, or a weak test).
    """
    cols = ["metric", "invariances", "inv_verified", "inv_claimed", "unclaimed_invariant"]
    if checks is None or checks.empty:
        return pd.DataFrame(columns=cols)
    c = checks.copy()
    c["claimed"] = c["claimed"].map(_truthy_strict)
    c["passed"] = c["passed"].map(_truthy_strict)
    rows = []
    for metric, g in c.groupby("metric", sort=False):
        claimed = g[(g["claimed"] == True) & g["passed"].notna()]  # noqa: E712
        verified = int((claimed["passed"] == True).sum())  # noqa: E712
        unclaimed_ok = g[(g["claimed"] == False) & (g["passed"] == False)]  # noqa: E712
        rows.append(
            {
                "metric": metric,
                "invariances": verified / len(claimed) if len(claimed) else float("nan"),
                "inv_verified": verified,
                "inv_claimed": len(claimed),
                "unclaimed_invariant": ", ".join(unclaimed_ok["invariance"].astype(str)),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _truthy_strict(x: Any) -> Any:
    """True/False from bools or their text; missing (None, NaN, "", NA) stays None."""
    if x is None or x is pd.NA:
        return None
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, str):
        t = x.strip().lower()
        if t in ("true", "1", "yes"):
            return True
        if t in ("false", "0", "no"):
            return False
        return None
    return bool(x)


# -- the leaderboard -----------------------------------------------------------------------
CRITERIA = ("layer_identification", "control_ordering", "invariances")


def build_leaderboard(
    df: pd.DataFrame,
    meta: dict[str, Any] | None = None,
    checks: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ranked leaderboard and the per-layer control-ordering detail.

    ``df`` is the full results table (failed cells included: they are counted in
    ``errors`` and otherwise ignored). Returns ``(board, control_detail)``; ``board`` has
    one row per (metric, alignment) with rank, baseline, the three criteria, ``criteria``
    (how many are available), ``score`` (their mean; module docstring) and bookkeeping.
    """
    keys = _group_keys()
    valid = valid_rows(df)
    order = layer_order(df, meta)
    lid = layer_identification(valid)
    ctrl, detail = control_ordering(valid, order)
    inv = invariance_summary(checks)

    base = []
    params_col = "metric_params" if "metric_params" in df.columns else None
    for (metric, alignment), rows in df.groupby(keys, sort=False):
        ok = valid_rows(rows)
        params = rows[params_col].iloc[0] if params_col else None
        base.append(
            {
                "metric": metric,
                "alignment": alignment,
                "baseline": baseline_of(metric, params),
                "higher_is_better": _truthy(rows["higher_is_better"].iloc[0]),
                "consumes": rows["consumes"].iloc[0] if "consumes" in rows else "",
                "rows": len(rows),
                "errors": len(rows) - len(ok),
                "mean_value": float(ok["value"].mean()) if len(ok) else float("nan"),
            }
        )
    board = pd.DataFrame(base)
    board = board.merge(lid, on=keys, how="left").merge(ctrl, on=keys, how="left")
    # invariances are per metric label; fall back to the plugin name when labels differ
    inv_cols = ["invariances", "inv_verified", "inv_claimed", "unclaimed_invariant"]
    none = {"invariances": float("nan"), "inv_verified": 0, "inv_claimed": 0,
            "unclaimed_invariant": ""}  # fmt: skip
    by_metric = {str(r["metric"]): r for r in inv.to_dict("records")}
    found = []
    for metric in board["metric"]:
        rec = by_metric.get(metric) or by_metric.get(metric_base(metric)) or none
        found.append({c: rec[c] for c in inv_cols})
    board = pd.concat([board, pd.DataFrame(found, columns=inv_cols)], axis=1)
    crit = board[list(CRITERIA)].astype(float)
    board["criteria"] = crit.notna().sum(axis=1).astype(int)
    # a row whose every cell failed has nothing of its own to rank (only its metric's
    # invariance checks): it is left unranked
    board["score"] = crit.mean(axis=1, skipna=True).where(board["rows"] > board["errors"])
    board = _rank(board)
    cols = [
        "rank",
        "metric",
        "alignment",
        "baseline",
        "layer_identification",
        "layer_id_n",
        "control_ordering",
        "control_held",
        "control_layers",
        "invariances",
        "inv_verified",
        "inv_claimed",
        "criteria",
        "score",
        "higher_is_better",
        "consumes",
        "mean_value",
        "rows",
        "errors",
        "unclaimed_invariant",
    ]
    for c in ("layer_id_n", "control_held", "control_layers", "inv_verified", "inv_claimed"):
        board[c] = board[c].fillna(0).astype(int)
    return board[cols].reset_index(drop=True), detail


def _rank(board: pd.DataFrame) -> pd.DataFrame:
    """Sort by score (NaN last), then criteria (more first), then names; competition ranks."""
    board = board.assign(_key=-board["score"].fillna(-np.inf)).sort_values(
        ["_key", "criteria", "metric", "alignment"],
        ascending=[True, False, True, True],
        kind="stable",
    )
    scores = board["score"].to_numpy(float)
    ranks: list[str] = []
    for i, s in enumerate(scores):
        if not np.isfinite(s):
            ranks.append("-")
            continue
        first = next(j for j in range(i + 1) if abs(scores[j] - s) <= TIE_TOL)
        tied = sum(1 for t in scores if np.isfinite(t) and abs(t - s) <= TIE_TOL) > 1
        ranks.append(f"{first + 1}=" if tied else str(first + 1))
    board["rank"] = ranks
    return board.drop(columns="_key")

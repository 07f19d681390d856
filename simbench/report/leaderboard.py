"""The leaderboard: representation and weight boards scored on the ground-truth tests.

MATH.md "Ground-truth tests a metric is scored on" and "Boards and ranking"; the tests are
plugins of kind ``test`` (:mod:`simbench.groundtruth`), scored by
:func:`simbench.groundtruth.board.score_boards`. The rules:

- one board per metric kind (``representations``, ``weights``); one row per metric
  (plugin + parameters) and alignment (weight metrics; representation rows are not
  aligned). The feature convention of the cells each test read (``positions``,
  ``pooled``, ``flattened``) and whether the row has same-layer and/or cross-layer cells
  are columns of their own;
- every row of a board is scored on the same tests (the selected tests that apply to the
  board); each score carries a 95 % bootstrap interval over the test's unit;
- a test that cannot run for a row is shown as failed with its reason and the row is
  ``incomplete``: no overall score, no rank (never averaged over fewer tests);
- overall = mean of the board's test scores, its interval from resampling all tests' units
  jointly; complete rows are ranked by it (equal scores to 1e-9 share a rank) and a row
  whose interval overlaps the leader's is marked tied with it.

``leaderboard.csv`` is the long table (:data:`simbench.groundtruth.board.LONG_COLUMNS`:
``board, metric, alignment, test, score, ci_low, ci_high, n_units, status``; ``test`` is
``overall`` for the overall score); ``leaderboard.md`` and the report's HTML show the wide
tables (per-test score, interval and rank; overall; tied).
"""

from __future__ import annotations

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


# -- the boards --------------------------------------------------------------------------
def models_from_results(df: pd.DataFrame, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """:class:`~simbench.groundtruth.context.ModelInfo` per model id.

    ``meta["models"]`` (per model: arch, dataset, seed, fraction, images, test_acc,
    train_acc; written by the runner) wins; otherwise architecture, dataset and seed come
    from the results columns, the relations from the pairs, and the label-noise fraction
    is 0 except for ``random_labels`` datasets, where it is unknown (None).
    """
    from simbench.groundtruth.context import ModelInfo

    declared = (meta or {}).get("models") or {}
    rel: dict[str, set[str]] = {}
    found: dict[str, dict[str, Any]] = {}
    for side in ("a", "b"):
        cols = [f"model_{side}", f"arch_{side}", f"dataset_{side}", f"seed_{side}"]
        have = [c for c in cols if c in df.columns]
        for rec in df[[*have, "relation"]].drop_duplicates().to_dict("records"):
            m = str(rec[f"model_{side}"])
            rel.setdefault(m, set()).add(str(rec["relation"]))
            found.setdefault(m, {
                "arch": rec.get(f"arch_{side}"), "dataset": rec.get(f"dataset_{side}"),
                "seed": rec.get(f"seed_{side}"),
            })  # fmt: skip
    out = {}
    for m, info in found.items():
        d = dict(declared.get(m) or {})
        dataset = d.get("dataset", info["dataset"])
        fraction = d.get("fraction", None if "random_labels" in str(dataset) else 0.0)
        seed = d.get("seed", info["seed"])
        out[m] = ModelInfo(
            arch=d.get("arch", info["arch"]),
            dataset=None if dataset is None else str(dataset),
            seed=None if seed is None or pd.isna(seed) else int(seed),
            relations=tuple(sorted(rel.get(m, ()))),
            fraction=None if fraction is None else float(fraction),
            images=d.get("images"),
            test_acc=d.get("test_acc"),
            train_acc=d.get("train_acc"),
        )
    return out


def test_context(
    df: pd.DataFrame,
    meta: dict[str, Any] | None = None,
    checks: pd.DataFrame | None = None,
    *,
    data: Any = None,
) -> Any:
    """The :class:`~simbench.groundtruth.context.TestContext` of a run's results.

    ``data`` supplies per-model data (an object with ``logits(model)``, ``labels(model)``
    and ``activations(model, layer)``, e.g. :class:`simbench.runner.model_data.ModelData`);
    without it the tests that need it lack their inputs.
    """
    from simbench.groundtruth.context import TestContext
    from simbench.runner.results import upgrade

    df3 = upgrade(df, meta)
    layers = (meta or {}).get("layers")
    meta = dict(meta or {})
    if not meta.get("models") and getattr(data, "info", None):
        meta["models"] = data.info
    return TestContext(
        df3,
        models=models_from_results(df3, meta),
        layers=dict(layers) if isinstance(layers, dict) else {},
        checks=checks,
        logits=getattr(data, "logits", None),
        labels=getattr(data, "labels", None),
        activations=getattr(data, "activations", None),
    )


test_context.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def build_leaderboard(
    df: pd.DataFrame,
    meta: dict[str, Any] | None = None,
    checks: pd.DataFrame | None = None,
    *,
    tests: list[str] | None = None,
    data: Any = None,
) -> Any:
    """The scored boards of a run (:class:`simbench.groundtruth.board.Boards`).

    ``tests``: the test names to score (default: the suite's ``tests:`` recorded in
    ``meta["tests"]``, else every test whose inputs the run has).
    Each wide table gains ``baseline``, ``features`` (the feature conventions of the
    row's cells) and ``layers`` (``same-layer``, ``cross-layer`` or both).
    """
    from simbench.groundtruth.board import score_boards

    ctx = test_context(df, meta, checks, data=data)
    if tests is None and isinstance((meta or {}).get("tests"), list):
        tests = list(meta["tests"])  # the suite's ``tests:``
    boards = score_boards(ctx, tests)
    res = ctx.results
    for wide in boards.wide.values():
        feats, spans, bases = [], [], []
        for metric, alignment in zip(wide["metric"], wide["alignment"], strict=True):
            rows = res[res["metric"].map(str) == metric_base(metric)]
            rows = rows[[_label_of(r) == metric for r in rows.itertuples(index=False)]]
            if alignment:
                rows = rows[rows["alignment"] == alignment]
            else:
                rows = rows[rows["alignment"].isna()]
            feats.append(", ".join(sorted(set(rows["features"].dropna().astype(str)))))
            same = (rows["layer_a"] == rows["layer_b"]).any()
            cross = (rows["layer_a"] != rows["layer_b"]).any()
            spans.append("same- and cross-layer" if same and cross
                         else "cross-layer" if cross else "same-layer")  # fmt: skip
            bases.append(baseline_of(metric))
        wide.insert(3, "baseline", bases)
        wide.insert(4, "features", feats)
        wide.insert(5, "layers", spans)
    return boards


def _label_of(r: Any) -> str:
    from simbench.groundtruth.context import metric_label

    return metric_label(r.metric, r.metric_params)

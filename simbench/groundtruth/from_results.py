"""Ground-truth tests computed from the results table alone (MATH.md: Ground-truth tests).

``layer_id`` (Kornblith 2019), ``controls`` (GM Fig. 4), ``label_randomization`` (ReSi),
``chance`` (real pairs against the shuffled-pairing null) and ``invariances`` (on the
suite's own activations, ``invariance_checks.csv``). "Similarity" is the metric's value
oriented so that higher = more similar. A cell is a (pair, layer pair) averaged over draws;
a cell with any failed draw counts as failed.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from simbench.groundtruth.base import GroundTruthTest, Row, TestUnavailable, UnitScores
from simbench.groundtruth.context import TestContext

#: relations of the control ordering, most similar first (GM Fig. 4)
CONTROL_ORDER = ("seed", "dataset", "labels")
#: similarities this close (relative) count as a tie when looking for the most similar layer
TIE_TOL = 1e-9
#: MATH.md "Chance": a cell is separated from the null when its z exceeds this
Z_THRESHOLD = 3.0


def cell_means(cells: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Mean similarity per cell over draws; NaN when any draw of the cell failed."""
    c = cells.assign(_s=cells["sim"].where(cells["ok"]))
    return c.groupby(keys, sort=False)["_s"].apply(
        lambda s: s.mean() if s.notna().all() else np.nan
    )


class LayerIdentification(GroundTruthTest):
    """Layer identification (Kornblith 2019 §6.1): is layer i of A most similar to layer i of B?"""

    name = "layer_id"
    unit = "seed pairs"
    boards = frozenset({"representations"})  # MATH.md: layer outputs (flattened)
    needs = "pairs of relation `seed` with layer × layer rows (`layer_matrix: true`)"

    def __init__(self, include_classifier: bool = False) -> None:
        """``include_classifier``: also identify the classifier output (the last layer)."""
        self.include_classifier = include_classifier

    def missing(self, ctx: TestContext) -> str | None:
        df = ctx.results
        if not (df["relation"] == "seed").any():
            return "no pair of relation `seed` (models differing only in seed)"
        seed = df[df["relation"] == "seed"]
        if not (seed["layer_a"] != seed["layer_b"]).any():
            return "no layer × layer rows for seed pairs (set `layer_matrix: true`)"
        return None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        cells, features = ctx.cross_layer(row)
        cells = cells[cells["relation"] == "seed"]
        if cells.empty or not (cells["layer_a"] != cells["layer_b"]).any():
            raise TestUnavailable("no layer × layer cells of seed pairs for this metric")
        mat = cell_means(cells, ["model_a", "model_b", "layer_a", "layer_b"])
        credit: dict[tuple[str, str], list[float]] = {}
        ordered = set(mat.index.droplevel([2, 3]))
        for (ma, mb), m in mat.groupby(level=[0, 1], sort=False):
            arch = (
                cells.loc[cells["model_a"] == ma, "arch_a"].iloc[0] if "arch_a" in cells else None
            )
            drop = None if self.include_classifier else ctx.classifier(arch)
            table = m.droplevel([0, 1]).unstack("layer_b")
            if drop is not None:
                table = table.drop(index=drop, columns=drop, errors="ignore")
            unit = tuple(sorted((str(ma), str(mb))))
            got = credit.setdefault(unit, [0.0, 0.0])
            directions = [table] if (mb, ma) in ordered else [table, table.T]
            for t in directions:
                for layer in t.index:
                    if layer not in t.columns:
                        continue
                    cand = t.loc[layer]
                    if cand.notna().sum() < 2:
                        continue
                    got[1] += 1
                    if not np.isfinite(cand[layer]):
                        continue  # the layer's own cell failed: not identified
                    s = cand.dropna()
                    best = s.max()
                    ties = s.index[s >= best - TIE_TOL * max(1.0, abs(best))]
                    got[0] += 1.0 / len(ties) if layer in ties else 0.0
        units = [u for u, (_, d) in credit.items() if d > 0]
        if not units:
            raise TestUnavailable("no layer has at least two candidate layers in a seed pair")
        return UnitScores.rate(
            self.unit,
            [f"{a}~{b}" for a, b in units],
            [credit[u][0] for u in units],
            [credit[u][1] for u in units],
            features=features,
            decisions=int(sum(credit[u][1] for u in units)),
        )


class Controls(GroundTruthTest):
    """Control ordering (GM Fig. 4): per layer, similarity of seed > dataset > labels pairs."""

    name = "controls"
    unit = "layers"
    needs = "pairs of relations `seed`, `dataset` and `labels`"

    def missing(self, ctx: TestContext) -> str | None:
        lacking = [r for r in CONTROL_ORDER if r not in ctx.relations()]
        return f"no pair of relation {', '.join(lacking)}" if lacking else None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        cells, features = ctx.same_layer(row)
        cells = cells[cells["relation"].isin((*CONTROL_ORDER, "random_labels"))]
        if cells.empty:
            raise TestUnavailable("no same-layer cells of seed/dataset/labels pairs")
        pair = cell_means(cells, ["layer_a", "relation", "model_a", "model_b"])
        # a relation's mean at a layer is NaN when any of its cells failed
        rel = pair.groupby(level=[0, 1], sort=False).apply(
            lambda s: s.mean() if s.notna().all() else np.nan
        )
        layers = [x for x in ctx.layer_order() if x in set(cells["layer_a"])]
        units, holds, table = [], [], []
        for layer in layers:
            vals = [rel.get((layer, r), np.nan) for r in CONTROL_ORDER]
            ok = bool(np.isfinite(vals).all() and all(a > b for a, b in itertools.pairwise(vals)))
            units.append(layer)
            holds.append(float(ok))
            rl = rel.get((layer, "random_labels"), np.nan)
            table.append({"layer": layer, **dict(zip(CONTROL_ORDER, vals, strict=True)),
                          "random_labels": rl, "holds": ok})  # fmt: skip
        if not units:
            raise TestUnavailable("no layer with same-layer cells")
        return UnitScores.mean(self.unit, units, holds, features=features, layers=table)


def pair_similarity(cells: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """``(model, model, layer) -> similarity`` in both orders (mean when both are listed)."""
    means = cell_means(cells, ["model_a", "model_b", "layer_a"])
    out: dict[tuple[str, str, str], list[float]] = {}
    for (a, b, layer), v in means.items():
        out.setdefault((a, b, layer), []).append(v)
        out.setdefault((b, a, layer), []).append(v)
    return {k: (float(np.mean(v)) if np.isfinite(v).all() else np.nan) for k, v in out.items()}


def conformity(hi: float, lo: float) -> float:
    """1 if ``hi > lo``, 0.5 on a tie, 0 otherwise or when either failed (NaN).

    MATH.md is silent on ties; a tie is credited 1/2, the chance of a coin flip breaking
    it (as layer identification credits 1/k), so a constant metric scores 0.5, the
    "no better than a coin" level of the conformity-rate tests.
    """
    if not (np.isfinite(hi) and np.isfinite(lo)):
        return 0.0
    if abs(hi - lo) <= TIE_TOL * max(1.0, abs(hi), abs(lo)):
        return 0.5
    return float(hi > lo)


class LabelRandomization(GroundTruthTest):
    """Label randomization (ReSi): a model is more similar to less label-randomized models."""

    name = "label_randomization"
    unit = "reference models"
    needs = "models on the same images with label-noise fractions (`random_labels` `fraction`)"

    def _groups(self, ctx: TestContext) -> list[tuple[str, list[str]]]:
        """``(reference, others)``: others share the reference's images and architecture,
        are paired with it, and have at least two distinct known fractions."""
        pairs = set(zip(ctx.results["model_a"], ctx.results["model_b"], strict=True))
        out = []
        for r, info in ctx.models.items():
            if info.fraction != 0:
                continue
            others = [
                m for m, o in ctx.models.items()
                if m != r and o.fraction is not None and o.arch == info.arch
                and o.images == info.images and ((r, m) in pairs or (m, r) in pairs)
            ]  # fmt: skip
            if len({ctx.models[m].fraction for m in others}) >= 2:
                out.append((r, others))
        return out

    def missing(self, ctx: TestContext) -> str | None:
        if not self._groups(ctx):
            return (
                "no reference model (fraction 0) paired with two models of different "
                "label-noise fractions on the same images"
            )
        return None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        cells, features = ctx.same_layer(row)
        sims = pair_similarity(cells)
        layers = [x for x in ctx.layer_order() if x in set(cells["layer_a"])]
        units, rates = [], []
        for ref, others in self._groups(ctx):
            per_layer = []
            for layer in layers:
                hit = n = 0
                for m1, m2 in itertools.permutations(others, 2):
                    if not ctx.models[m1].fraction < ctx.models[m2].fraction:  # type: ignore[operator]
                        continue
                    s1 = sims.get((ref, m1, layer), np.nan)
                    s2 = sims.get((ref, m2, layer), np.nan)
                    n += 1
                    hit += conformity(s1, s2)
                if n:
                    per_layer.append(hit / n)
            if per_layer:
                units.append(ref)
                rates.append(float(np.mean(per_layer)))
        if not units:
            raise TestUnavailable("no same-layer cells between reference and randomized models")
        return UnitScores.mean(self.unit, units, rates, features=features)


class Chance(GroundTruthTest):
    """Chance: same-layer cells of seed pairs with z > 3 against the shuffled-pairing null."""

    name = "chance"
    unit = "cells"
    needs = "same-layer cells of `seed` pairs with a chance level (`z`, probe.null_pairings > 0)"

    def missing(self, ctx: TestContext) -> str | None:
        df = ctx.results
        if not (df["relation"] == "seed").any():
            return "no pair of relation `seed`"
        if "z" not in df.columns or not np.isfinite(pd.to_numeric(df["z"], errors="coerce")).any():
            return "no chance level in the results (`z`; set probe.null_pairings > 0)"
        return None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        cells, features = ctx.same_layer(row)
        cells = cells[cells["relation"] == "seed"]
        if cells.empty:
            raise TestUnavailable("no same-layer cells of seed pairs")
        c = cells.assign(_z=row.sign * pd.to_numeric(cells.get("z"), errors="coerce"))
        c["_z"] = c["_z"].where(c["ok"])
        if not np.isfinite(c["_z"]).any():
            raise TestUnavailable("no chance level (z) for this metric")
        z = c.groupby(["model_a", "model_b", "layer_a"], sort=False)["_z"].apply(
            lambda s: s.mean() if s.notna().all() else np.nan
        )
        hits = [float(np.isfinite(v) and v > Z_THRESHOLD) for v in z]
        units = [f"{a}~{b}:{layer}" for a, b, layer in z.index]
        return UnitScores.mean(self.unit, units, hits, features=features)


class Invariances(GroundTruthTest):
    """Invariances: fraction of claimed invariances verified on the suite's activations."""

    name = "invariances"
    unit = "transforms"
    # MATH.md checks them "on the suite's own activations": representation metrics
    boards = frozenset({"representations"})
    needs = "the invariance checks of the run (`invariance_checks.csv`)"

    def missing(self, ctx: TestContext) -> str | None:
        if ctx.checks is None or ctx.checks.empty:
            return "no invariance checks in the run (`invariance_checks.csv`)"
        return None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        checks = ctx.checks
        if checks is None or checks.empty:
            raise TestUnavailable("no invariance checks")
        names = checks["metric"].astype(str)
        mine = checks[names == row.label]
        if mine.empty:
            mine = checks[names == row.metric]
        if mine.empty:
            raise TestUnavailable("the metric was not checked")
        claimed = mine[mine["claimed"].map(_flag) == True]  # noqa: E712
        claimed = claimed[claimed["passed"].map(_flag).notna()]
        if claimed.empty:
            raise TestUnavailable("claims no invariance that could be checked")
        passed = [float(_flag(p)) for p in claimed["passed"]]
        return UnitScores.mean(self.unit, claimed["invariance"].astype(str).tolist(), passed)


def _flag(x: Any) -> Any:
    """True/False from bools or their text; missing stays None."""
    if x is None or x is pd.NA or (isinstance(x, float) and np.isnan(x)):
        return None
    if isinstance(x, str):
        t = x.strip().lower()
        return True if t in ("true", "1") else False if t in ("false", "0") else None
    return bool(x)

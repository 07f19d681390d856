"""Ground-truth tests that read per-model data (MATH.md: Ground-truth tests).

``output_grounding`` (ReSi tests 1–2, Ding et al. 2021) reads each model's probe logits
and labels; ``layer_monotonicity`` (ReSi) and ``pc_deletion`` (Ding et al. 2021) compute
the metric themselves on each model's per-layer activations (``ctx.activations(model,
layer)``, ``(n, d)``: the runner supplies global-average-pooled layer outputs, the
cheapest per-image representation every metric accepts; MATH.md does not fix one).
A Spearman correlation with a constant side (a constant metric) is taken as 0: the metric
carries no information, so the score ``(ρ + 1)/2`` is 0.5.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from simbench.groundtruth.base import GroundTruthTest, Row, TestUnavailable, UnitScores
from simbench.groundtruth.context import TestContext
from simbench.groundtruth.from_results import conformity, pair_similarity


def average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (``scipy.stats.rankdata`` "average")."""
    sorter = np.argsort(a, kind="mergesort")
    inv = np.empty_like(sorter)
    inv[sorter] = np.arange(a.size)
    s = a[sorter]
    obs = np.r_[True, s[1:] != s[:-1]]
    dense = obs.cumsum()[inv]
    count = np.r_[np.nonzero(obs)[0], a.size]
    return 0.5 * (count[dense] + count[dense - 1] + 1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ (Pearson correlation of average ranks, as ``scipy.stats.spearmanr``,
    without its per-call overhead: the bootstrap calls it ~10⁴ times); 0 when either side
    is constant (no information), NaN under 3 points."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3:
        return float("nan")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float(np.clip((ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)), -1.0, 1.0))


def _models_in_results(ctx: TestContext) -> list[str]:
    df = ctx.results
    seen = list(dict.fromkeys([*df["model_a"].astype(str), *df["model_b"].astype(str)]))
    return [m for m in seen if not ctx.models or m in ctx.models]


class OutputGrounding(GroundTruthTest):
    """Output grounding (ReSi 1–2): dissimilarity tracks prediction disagreement, accuracy gaps."""

    name = "output_grounding"
    unit = "models"
    needs = "probe logits and labels of every model (per-model data), ≥ 3 models on one task"

    def _models(self, ctx: TestContext) -> list[str]:
        return _models_in_results(ctx)

    def missing(self, ctx: TestContext) -> str | None:
        if ctx.logits is None or ctx.labels is None:
            return "no probe logits of the models in this run (per-model data)"
        if len(self._models(ctx)) < 3:
            return "fewer than 3 models"
        return None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        if ctx.logits is None or ctx.labels is None:
            raise TestUnavailable("no probe logits")
        models = self._models(ctx)
        pred = {m: np.asarray(ctx.logits(m)).argmax(axis=1) for m in models}
        # correct predictions counted as integers so that equal accuracy gaps tie exactly
        hits = {m: int(np.sum(pred[m] == np.asarray(ctx.labels(m)))) for m in models}
        cells, features = ctx.same_layer(row)
        sims = pair_similarity(cells)
        layers = [x for x in ctx.layer_order() if x in set(cells["layer_a"])]
        # pairs on the same task: predictions over the same classes and probe images
        # pairs the run compared (a suite scores the pairs it names, not all of them)
        compared = {(a, b) for a, b, _ in sims} | {(b, a) for a, b, _ in sims}
        pairs = [
            (i, j) for i, j in itertools.combinations(range(len(models)), 2)
            if (models[i], models[j]) in compared
            and pred[models[i]].shape == pred[models[j]].shape
            and ctx.logits(models[i]).shape == ctx.logits(models[j]).shape
        ]  # fmt: skip
        rows = []  # (layer index, i, j, dis, disagreement, accuracy gap)
        for li, layer in enumerate(layers):
            for i, j in pairs:
                a, b = models[i], models[j]
                s = sims.get((a, b, layer), sims.get((b, a, layer), np.nan))
                n = len(pred[a])
                rows.append(
                    (li, i, j, -s, np.sum(pred[a] != pred[b]) / n, abs(hits[a] - hits[b]) / n)
                )
        if not rows:
            raise TestUnavailable("no same-layer cells between models on one task")
        t = np.array(rows, dtype=float)

        def fn(counts: np.ndarray) -> np.ndarray:
            out = np.empty(len(counts))
            for r, c in enumerate(np.asarray(counts)):
                w = (c[t[:, 1].astype(int)] * c[t[:, 2].astype(int)]).astype(int)
                per_layer = []
                for li in range(len(layers)):
                    sel = (t[:, 0] == li) & (w > 0)
                    rep = np.repeat(t[sel], w[sel], axis=0)
                    if rep.shape[0] < 3:
                        continue
                    if not np.isfinite(rep[:, 3]).all():
                        per_layer.append(0.0)  # a failed cell: the layer does not conform
                        continue
                    ra, rb = spearman(rep[:, 3], rep[:, 4]), spearman(rep[:, 3], rep[:, 5])
                    per_layer.append(((ra + 1) / 2 + (rb + 1) / 2) / 2)
                out[r] = np.mean(per_layer) if per_layer else np.nan
            return out

        return UnitScores(self.unit, models, fn, {"features": features, "pairs": len(pairs)})


class _PerModelTest(GroundTruthTest):
    """A test that computes the metric on each model's own activations (capped); it
    applies to representation metrics only."""

    boards = frozenset({"representations"})

    def __init__(self, max_models: int | None = 8) -> None:
        """``max_models``: the first models (suite order) whose layers are units; they
        compute the metric on every layer (pair) of every model, so the cost grows with
        models × layers (None: all models)."""
        self.max_models = max_models


class LayerMonotonicity(_PerModelTest):
    """Layer monotonicity (ReSi): within a network, nearer layers are more similar."""

    name = "layer_monotonicity"
    unit = "models"
    needs = "per-layer activations of every model (per-model data), ≥ 3 layers"

    def missing(self, ctx: TestContext) -> str | None:
        if ctx.activations is None:
            return "no per-layer activations of the models in this run (per-model data)"
        if len(ctx.layer_order()) < 3:
            return "fewer than 3 layers"
        return None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        if ctx.activations is None:
            raise TestUnavailable("no per-layer activations")
        metric = ctx.metric(row)
        units, num, den, errors = [], [], [], []
        for model in _models_in_results(ctx)[: self.max_models]:
            arch = ctx.models[model].arch if model in ctx.models else None
            layers = ctx.layer_order(arch)
            acts = [np.asarray(ctx.activations(model, layer), float) for layer in layers]
            n = len(layers)
            sim = np.full((n, n), np.nan)
            for i, j in itertools.combinations(range(n), 2):
                sim[i, j] = sim[j, i] = row.sign * _call(metric, acts[i], acts[j], errors)
            if not np.isfinite(sim[np.triu_indices(n, 1)]).any():
                continue  # nothing computed on this model: it is not a unit
            hit = tot = 0
            for i, j, k in itertools.combinations(range(n), 3):
                tot += 2
                hit += conformity(sim[i, j], sim[i, k]) + conformity(sim[k, j], sim[k, i])
            if tot:
                units.append(model)
                num.append(hit)
                den.append(tot)
        if not units:
            raise _all_failed(errors) if errors else TestUnavailable("no model with 3 layers")
        return UnitScores.rate(self.unit, units, num, den, features="pooled")


def _call(metric: Any, X: np.ndarray, Y: np.ndarray, errors: list[str] | None = None) -> float:
    """The metric's value, NaN when it fails or is not finite (the error kept in ``errors``)."""
    try:
        v = float(metric(X, Y))
    except Exception as exc:  # a metric that fails on a pair fails that comparison only
        if errors is not None:
            errors.append(f"{type(exc).__name__}: {exc}")
        return float("nan")
    return v if np.isfinite(v) else float("nan")


def _all_failed(errors: list[str]) -> TestUnavailable:
    first = errors[0] if errors else "non-finite values"
    return TestUnavailable(f"the metric failed on the per-model activations ({first[:200]})")


def log_grid(d: int) -> list[int]:
    """``k`` over a log grid up to ``d/2``: powers of two below ``d//2``, and ``d//2``."""
    top = d // 2
    ks = [2**i for i in range(top.bit_length()) if 2**i < top] + [top]
    return sorted({k for k in ks if k >= 1})


def probe_accuracy(X: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> float:
    """Accuracy of a ridge linear probe, one-hot targets, closed form from second moments.

    Fitted on a seeded random half of the probe images (not every other image: probe
    labels can be periodic), scored on the other half; the ridge is ``ridge · tr(XᵀX)/d``
    of the (centred) training half (scale-free; our choice).
    """
    X = np.asarray(X, float)
    y = np.asarray(y)
    order = np.random.default_rng(np.random.SeedSequence([len(y), 0x9A1F])).permutation(len(y))
    tr, te = np.sort(order[: len(y) // 2]), np.sort(order[len(y) // 2 :])
    classes, yi = np.unique(y, return_inverse=True)
    Y = np.eye(len(classes))[yi]
    mx, my = X[tr].mean(axis=0), Y[tr].mean(axis=0)
    Xc, Yc = X[tr] - mx, Y[tr] - my
    G = Xc.T @ Xc
    lam = ridge * max(np.trace(G) / max(G.shape[0], 1), 1e-300)
    W = np.linalg.solve(G + lam * np.eye(G.shape[0]), Xc.T @ Yc)
    pred = ((X[te] - mx) @ W + my).argmax(axis=1)
    return float(np.mean(pred == yi[te]))


class PCDeletion(_PerModelTest):
    """PC deletion (Ding et al. 2021): dissimilarity tracks probe accuracy lost deleting PCs."""

    name = "pc_deletion"
    unit = "layers × models"
    needs = "per-layer activations and probe labels of the models (per-model data)"

    def missing(self, ctx: TestContext) -> str | None:
        if ctx.activations is None or ctx.labels is None:
            return "no per-layer activations and probe labels in this run (per-model data)"
        return None

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        if ctx.activations is None or ctx.labels is None:
            raise TestUnavailable("no per-layer activations")
        metric = ctx.metric(row)
        units, scores, errors = [], [], []
        for model in _models_in_results(ctx)[: self.max_models]:
            arch = ctx.models[model].arch if model in ctx.models else None
            y = np.asarray(ctx.labels(model))
            for layer in ctx.layer_order(arch):
                X = np.asarray(ctx.activations(model, layer), float)
                if X.shape[1] < 2:
                    continue
                dis, dacc = deletion_curve(metric, row.sign, X, y, errors)
                if not np.isfinite(dis).all():
                    continue  # the metric failed on this layer: not a unit
                rho = spearman(dis, dacc)
                units.append(f"{model}:{layer}")
                scores.append((rho + 1) / 2)
        if not units:
            raise _all_failed(errors) if errors else TestUnavailable("no layer with 2 features")
        return UnitScores.mean(self.unit, units, scores, features="pooled")


def deletion_curve(
    metric: Any, sign: float, X: np.ndarray, y: np.ndarray, errors: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(dis(S), Δacc(S))`` over S = top-k and bottom-k principal components, k on
    :func:`log_grid` (MATH.md "PC deletion").

    ``X_{−S}`` is passed in the coordinates of its remaining principal components
    (``X_c V_keep``, n × (r − k)): an isometric embedding of ``X_c − X_c V_S V_Sᵀ`` (same
    Gram matrix, same probe accuracy), chosen because the projected matrix itself has
    exactly singular covariance, where CCA-type metrics are undefined (MATH.md is silent;
    metrics invariant to orthogonal maps and zero columns give the same value either way).
    """
    Xc = X - X.mean(axis=0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    base = probe_accuracy(Xc, y)
    dis, dacc = [], []
    r = Vt.shape[0]
    comps = np.arange(r)
    for k in log_grid(X.shape[1]):
        for S in (comps[: min(k, r)], comps[max(r - k, 0) :]):
            Xs = Xc @ Vt[np.setdiff1d(comps, S)].T
            dis.append(-sign * _call(metric, Xc, Xs, errors))
            dacc.append(base - probe_accuracy(Xs, y))
    return np.array(dis), np.array(dacc)

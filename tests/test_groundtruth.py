"""Ground-truth tests and boards (issue #8) on planted data with known answers.

Each test is scored for a *perfect* metric (its ordering is the truth: score 1), a
*constant* metric (no information: 0.5 for the rank-correlation and conformity tests,
whose ties are credited 1/2; 1/L for layer identification, the chance of a coin among L
tied layers; 0 for the strictly ordered controls and for chance) and a *noise* metric
(seeded uniform noise: the test's chance level, which its interval must cover).
"""

from __future__ import annotations

import itertools
import types
from typing import Any

import numpy as np
import pandas as pd
import pytest

from simbench.groundtruth import ModelInfo, TestContext, UnitScores, score_boards
from simbench.groundtruth.base import GroundTruthTest, Row, bootstrap
from simbench.groundtruth.board import LONG_COLUMNS, joint_bootstrap, plan_tests
from simbench.groundtruth.from_models import (
    LayerMonotonicity,
    OutputGrounding,
    PCDeletion,
    log_grid,
    probe_accuracy,
)
from simbench.groundtruth.from_results import (
    Chance,
    Controls,
    Invariances,
    LabelRandomization,
    LayerIdentification,
)
from simbench.hookspecs import hookimpl
from simbench.registry import Registry

LAYERS = [f"l{i}" for i in range(6)] + ["fc"]


def cell(**kw: Any) -> dict[str, Any]:
    base = {"model_a": "a", "model_b": "b", "relation": "seed", "layer_a": "l0",
            "layer_b": "l0", "alignment": None, "features": "positions", "metric": "m",
            "metric_params": None, "draw": 0, "value": 0.0, "z": np.nan, "error": None,
            "higher_is_better": True, "consumes": "representations", "arch_a": "net",
            "arch_b": "net"}  # fmt: skip
    base.update(kw)
    return base


def ctx_of(rows: list[dict[str, Any]], **kw: Any) -> TestContext:
    return TestContext(pd.DataFrame(rows), layers={"net": LAYERS}, **kw)


def row_of(metric: str, hib: bool = True, board: str = "representations") -> Row:
    return Row(board, metric, None, None, metric, hib)


def check(us: UnitScores, truth: float, tol: float = 1e-12) -> tuple[float, float, float]:
    """The point estimate, and that the bootstrap interval covers ``truth``."""
    lo, hi = bootstrap(us, 1000, seed=1)
    assert lo - tol <= truth <= hi + tol, (us.point(), lo, hi, truth)
    return us.point(), lo, hi


# -- layer identification ---------------------------------------------------------------
def layer_id_rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for a, b in itertools.combinations([f"s{i}" for i in range(6)], 2):
        for la, lb in itertools.product(LAYERS, LAYERS):
            for metric, v in (("perfect", 1.0 if la == lb else 0.5), ("constant", 0.7),
                              ("noise", rng.uniform()),
                              ("distance", 0.0 if la == lb else 1.0)):  # fmt: skip
                rows.append(cell(model_a=a, model_b=b, layer_a=la, layer_b=lb, metric=metric,
                                 value=v, features="flattened",
                                 higher_is_better=metric != "distance"))  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def lid_ctx() -> TestContext:
    return ctx_of(layer_id_rows())


def test_layer_id_perfect_constant_noise(lid_ctx: TestContext) -> None:
    t = LayerIdentification()
    assert check(t.score(lid_ctx, row_of("perfect")), 1.0) == (1.0, 1.0, 1.0)
    assert check(t.score(lid_ctx, row_of("distance", hib=False)), 1.0)[0] == 1.0
    # a constant metric ties all 6 layers (classifier excluded): credit 1/6 each
    assert check(t.score(lid_ctx, row_of("constant")), 1 / 6)[0] == pytest.approx(1 / 6)
    us = t.score(lid_ctx, row_of("noise"))
    assert len(us.units) == 15 and us.detail["decisions"] == 15 * 2 * 6
    assert abs(check(us, 1 / 6)[0] - 1 / 6) < 0.1


def test_layer_id_classifier_excluded_by_default(lid_ctx: TestContext) -> None:
    us = LayerIdentification(include_classifier=True).score(lid_ctx, row_of("constant"))
    assert us.point() == pytest.approx(1 / 7) and us.detail["decisions"] == 15 * 2 * 7


def test_layer_id_failed_own_cell_is_not_identified() -> None:
    rows = [r for r in layer_id_rows() if r["metric"] == "perfect"]
    for r in rows:
        if (r["model_a"], r["model_b"], r["layer_a"], r["layer_b"]) == ("s0", "s1", "l2", "l2"):
            r["value"], r["error"] = np.nan, "ValueError: boom"
    us = LayerIdentification().score(ctx_of(rows), row_of("perfect"))
    # both directions of l2 in one of 15 pairs are lost: 178/180
    assert us.point() == pytest.approx(1 - 2 / 180)


# -- controls ----------------------------------------------------------------------------
CONTROL_MODELS = {"seed": ("c0", "c1"), "dataset": ("c0", "d0"), "labels": ("c0", "r0"),
                  "random_labels": ("r0", "r1")}  # fmt: skip


def control_rows(drop: tuple[str, str, str] | None = None) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    truth = {"seed": 0.9, "dataset": 0.6, "labels": 0.3, "random_labels": 0.5}
    rows = []
    for layer in LAYERS:
        for rel, (a, b) in CONTROL_MODELS.items():
            for metric in ("perfect", "constant", "noise"):
                if drop == (metric, layer, rel):
                    continue
                v = {"perfect": truth[rel] + rng.normal(0, 0.01), "constant": 0.5,
                     "noise": rng.uniform()}[metric]  # fmt: skip
                rows.append(cell(model_a=a, model_b=b, relation=rel, layer_a=layer,
                                 layer_b=layer, metric=metric, value=v))  # fmt: skip
    return rows


def test_controls_perfect_constant_noise() -> None:
    ctx, t = ctx_of(control_rows()), Controls()
    assert t.missing(ctx) is None
    assert check(t.score(ctx, row_of("perfect")), 1.0)[0] == 1.0
    assert check(t.score(ctx, row_of("constant")), 0.0)[0] == 0.0  # strictly ordered
    p, _, _ = check(t.score(ctx, row_of("noise")), 1 / 6)  # one of 3! orders
    assert p < 0.6


def test_controls_failed_cell_or_missing_relation_fails_the_layer() -> None:
    rows = control_rows(drop=("perfect", "l3", "labels"))
    for r in rows:
        if (r["metric"], r["layer_a"], r["relation"]) == ("perfect", "l1", "dataset"):
            r["value"], r["error"] = np.nan, "RuntimeError: failed cell"
    us = Controls().score(ctx_of(rows), row_of("perfect"))
    assert us.point() == pytest.approx(5 / 7)
    held = {d["layer"]: d["holds"] for d in us.detail["layers"]}
    assert held["l1"] is False and held["l3"] is False and held["l0"] is True
    # the random-label realisations are shown beside the ordering, not scored
    assert us.detail["layers"][0]["random_labels"] == pytest.approx(0.5, abs=0.05)


def test_controls_lacking_relation_in_the_suite() -> None:
    rows = [r for r in control_rows() if r["relation"] != "labels"]
    assert Controls().missing(ctx_of(rows)) == "no pair of relation labels"


# -- label randomization ------------------------------------------------------------------
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def ladder() -> tuple[list[dict[str, Any]], dict[str, ModelInfo]]:
    rng = np.random.default_rng(2)
    models = {f"p{p:g}s{s}": ModelInfo(arch="net", fraction=p, images="cifar", seed=s)
              for p in FRACTIONS for s in range(2)}  # fmt: skip
    rows = []
    for r in [m for m, i in models.items() if i.fraction == 0]:
        for m in models:
            if m == r:
                continue
            p = models[m].fraction
            for layer in LAYERS[:4]:
                for metric in ("perfect", "constant", "noise"):
                    v = {"perfect": 1 - p + rng.normal(0, 0.01), "constant": 0.4,
                         "noise": rng.uniform()}[metric]  # fmt: skip
                    rows.append(cell(model_a=r, model_b=m, relation="ladder", layer_a=layer,
                                     layer_b=layer, metric=metric, value=v))  # fmt: skip
    return rows, models


def test_label_randomization_perfect_constant_noise() -> None:
    rows, models = ladder()
    ctx, t = ctx_of(rows, models=models), LabelRandomization()
    assert t.missing(ctx) is None
    assert check(t.score(ctx, row_of("perfect")), 1.0)[0] == 1.0
    assert check(t.score(ctx, row_of("constant")), 0.5)[0] == 0.5
    p, _, _ = check(t.score(ctx, row_of("noise")), 0.5)
    assert abs(p - 0.5) < 0.15
    assert LabelRandomization().missing(ctx_of(rows)) is not None  # no fractions known


# -- chance ------------------------------------------------------------------------------
def test_chance_perfect_constant_noise() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for a, b in itertools.combinations([f"s{i}" for i in range(5)], 2):
        for layer in LAYERS:
            for metric, z in (("perfect", 10.0), ("constant", 0.0), ("noise", rng.normal()),
                              ("distance", -10.0)):  # fmt: skip
                rows.append(
                    cell(
                        model_a=a,
                        model_b=b,
                        layer_a=layer,
                        layer_b=layer,
                        metric=metric,
                        z=z,
                        higher_is_better=metric != "distance",
                    )
                )
    ctx, t = ctx_of(rows), Chance()
    assert t.missing(ctx) is None
    assert check(t.score(ctx, row_of("perfect")), 1.0)[0] == 1.0
    assert check(t.score(ctx, row_of("distance", hib=False)), 1.0)[0] == 1.0
    assert check(t.score(ctx, row_of("constant")), 0.0)[0] == 0.0
    p, _, _ = check(t.score(ctx, row_of("noise")), 0.0)  # P(z > 3) = 0.00135
    assert p <= 0.03


# -- invariances -------------------------------------------------------------------------
def test_invariances_fraction_of_claims_verified() -> None:
    checks = pd.DataFrame(
        [("good", "orthogonal", True, True), ("good", "permutation", True, True),
         ("half", "orthogonal", True, True), ("half", "permutation", True, False),
         ("half", "translation", False, True), ("none", "orthogonal", False, True)],
        columns=["metric", "invariance", "claimed", "passed"],
    )  # fmt: skip
    ctx, t = ctx_of([cell()], checks=checks), Invariances()
    assert t.score(ctx, row_of("good")).point() == 1.0
    us = t.score(ctx, row_of("half"))
    assert us.point() == 0.5 and us.units == ["orthogonal", "permutation"]
    with pytest.raises(Exception, match="claims no invariance"):
        t.score(ctx, row_of("none"))
    assert t.missing(ctx_of([cell()])) == (
        "no invariance checks in the run (`invariance_checks.csv`)"
    )


# -- output grounding --------------------------------------------------------------------
def grounding() -> tuple[list[dict[str, Any]], dict[str, ModelInfo], Any]:
    """Model i is right on its first c_i probe images and predicts label+1 elsewhere, so
    both the disagreement and the accuracy gap of a pair are |c_i − c_j| / n."""
    n, K = 200, 10
    labels = np.arange(n) % K
    correct = {f"m{i}": 40 + 25 * i for i in range(6)}
    logits = {}
    for m, c in correct.items():
        pred = np.where(np.arange(n) < c, labels, (labels + 1) % K)
        logits[m] = np.eye(K)[pred]
    rng = np.random.default_rng(4)
    rows = []
    for a, b in itertools.combinations(correct, 2):
        for layer in LAYERS[:3]:
            for metric, v in (("perfect", -abs(correct[a] - correct[b])), ("constant", 1.0),
                              ("noise", rng.uniform())):  # fmt: skip
                rows.append(cell(model_a=a, model_b=b, relation="task", layer_a=layer,
                                 layer_b=layer, metric=metric, value=float(v)))  # fmt: skip
    data = types.SimpleNamespace(logits=lambda m: logits[m], labels=lambda m: labels)
    return rows, {m: ModelInfo(arch="net") for m in correct}, data


def test_output_grounding_perfect_constant_noise() -> None:
    rows, models, data = grounding()
    ctx = ctx_of(rows, models=models, logits=data.logits, labels=data.labels)
    t = OutputGrounding()
    assert t.missing(ctx) is None
    assert t.missing(ctx_of(rows)) == "no probe logits of the models in this run (per-model data)"
    assert check(t.score(ctx, row_of("perfect")), 1.0)[0] == pytest.approx(1.0)
    assert check(t.score(ctx, row_of("constant")), 0.5)[0] == 0.5
    p, _, _ = check(t.score(ctx, row_of("noise")), 0.5)
    assert abs(p - 0.5) < 0.25


def test_output_grounding_reads_only_the_compared_pairs() -> None:
    """A suite compares the pairs it names: pairs without cells are not failures (the
    reference run's ladder compares each p = 0 model with the others, not all pairs)."""
    rows, models, data = grounding()
    kept = [r for r in rows if "m0" in (r["model_a"], r["model_b"])]  # a star of 5 pairs
    ctx = ctx_of(kept, models=models, logits=data.logits, labels=data.labels)
    us = OutputGrounding().score(ctx, row_of("perfect"))
    assert us.detail["pairs"] == 5
    assert check(us, 1.0)[0] == pytest.approx(1.0)


# -- layer monotonicity and PC deletion: tests that compute the metric ---------------------
class Planted:
    """A fake metric: ``kind`` perfect / constant / noise (seeded)."""

    def __init__(self, kind: str, labels: np.ndarray | None = None) -> None:
        self.kind, self.labels = kind, labels
        self.rng = np.random.default_rng(5)

    def __call__(self, X: np.ndarray, Y: np.ndarray) -> float:
        if self.kind == "constant":
            return 0.3
        if self.kind == "noise":
            return float(self.rng.uniform())
        if self.labels is not None:  # PC deletion: similarity = the probe accuracy kept
            return probe_accuracy(Y, self.labels)
        return -abs(float(X[0, 0]) - float(Y[0, 0]))  # layers carry their index at [0, 0]


def activations(n: int = 120, d: int = 16) -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(6)
    y = np.arange(n) % 4
    base = rng.normal(size=(n, d)) * np.linspace(3, 0.2, d)
    base[np.arange(n), y] += 3.0  # class c lifts feature c (high-variance directions)
    base[np.arange(n), d - 1 - y] += 0.5  # and weakly feature d-1-c (low-variance ones)

    def act(model: str, layer: str) -> np.ndarray:
        X = base + 0.1 * LAYERS.index(layer)
        X = X.copy()
        X[0, 0] = LAYERS.index(layer)
        return X

    return act, y


@pytest.mark.parametrize(("kind", "truth"), [("perfect", 1.0), ("constant", 0.5), ("noise", 0.5)])
def test_layer_monotonicity(kind: str, truth: float) -> None:
    act, _ = activations()
    names = [f"m{i}" for i in range(8)]
    rows = [cell(model_a=a, model_b=b, metric=kind) for a, b in itertools.pairwise(names)]
    models = {m: ModelInfo(arch="net") for m in names}
    ctx = ctx_of(rows, models=models, activations=act,
                 metric_factory=lambda name, params: Planted(name))  # fmt: skip
    p, _, _ = check(LayerMonotonicity().score(ctx, row_of(kind)), truth)
    assert p == truth if kind != "noise" else abs(p - truth) < 0.2


@pytest.mark.parametrize(("kind", "truth"), [("perfect", 1.0), ("constant", 0.5), ("noise", 0.5)])
def test_pc_deletion(kind: str, truth: float) -> None:
    act, y = activations()
    rows = [cell(model_a="a", model_b="b", metric=kind)]
    ctx = ctx_of(rows, models={"a": ModelInfo(arch="net"), "b": ModelInfo(arch="net")},
                 activations=act, labels=lambda m: y,
                 metric_factory=lambda name, params: Planted(name, y))  # fmt: skip
    us = PCDeletion().score(ctx, row_of(kind))
    assert len(us.units) == 2 * len(LAYERS)
    p, _, _ = check(us, truth)
    assert p == truth if kind != "noise" else abs(p - truth) < 0.2


def test_pc_deletion_grid_and_probe() -> None:
    assert log_grid(16) == [1, 2, 4, 8] and log_grid(20) == [1, 2, 4, 8, 10] and log_grid(3) == [1]
    rng = np.random.default_rng(7)
    y = np.arange(400) % 3
    X = rng.normal(size=(400, 5))
    X[np.arange(400), y] += 5.0  # class c lifts feature c
    assert probe_accuracy(X, y) > 0.95
    assert probe_accuracy(X[:, 3:], y) < 0.5  # the class features deleted: chance


def test_pc_deletion_with_cka_on_real_features() -> None:
    """A registered metric runs end to end; the score is a valid rank correlation."""
    act, y = activations()
    rows = [cell(model_a="a", model_b="b", metric="cka")]
    ctx = ctx_of(rows, models={"a": ModelInfo(arch="net")}, activations=act,
                 labels=lambda m: y)  # fmt: skip
    us = PCDeletion().score(ctx, row_of("cka"))
    assert 0.0 <= us.point() <= 1.0 and len(us.units) == len(LAYERS)


# -- bootstrap and boards ----------------------------------------------------------------
def test_bootstrap_interval_of_a_rate() -> None:
    us = UnitScores.rate("u", list("abcd"), [1, 1, 0, 0], [1, 1, 1, 1])
    lo, hi = bootstrap(us, 2000, seed=0)
    assert us.point() == 0.5 and lo == 0.0 and hi == 1.0
    with pytest.raises(ValueError, match="1000"):
        bootstrap(us, 100)
    same = UnitScores.mean("u", list("abcd"), [0.25, 0.5, 0.75, 1.0])
    p, (lo, hi) = joint_bootstrap([same, same], 1000, seed=0)
    q, (lo1, hi1) = joint_bootstrap([same], 1000, seed=0)
    # the same units are drawn once per replicate for both tests: same interval
    assert p == q == pytest.approx(0.625) and (lo, hi) == (lo1, hi1)


def board_rows() -> list[dict[str, Any]]:
    rows = [r for r in control_rows() if r["metric"] in ("perfect", "noise")]
    rows += [r for r in layer_id_rows() if r["metric"] in ("perfect", "noise")]
    # a weight metric on the same control pairs, and a representation metric with no
    # layer × layer cells (it cannot be scored on layer_id)
    for r in control_rows():
        if r["metric"] == "perfect":
            rows.append({**r, "metric": "bures", "alignment": "procrustes", "features": None,
                         "consumes": "weights"})  # fmt: skip
            rows.append({**r, "metric": "same_only"})
    return rows


def test_boards_one_scale_incomplete_rows_and_ranks() -> None:
    ctx = ctx_of(board_rows())
    boards = score_boards(ctx, resamples=1000)
    long = boards.long
    assert list(long.columns) == LONG_COLUMNS
    assert set(long["status"]) <= {"ok", "incomplete"} | set(
        s for s in long["status"] if s.startswith("failed: ")
    )
    assert boards.tests == {"representations": ["controls", "layer_id"], "weights": ["controls"]}
    rep = boards.wide["representations"].set_index("metric")
    assert rep.at["perfect", "rank"] == 1 and rep.at["perfect", "overall"] == 1.0
    assert rep.at["noise", "rank"] == 2 and not rep.at["noise", "tied"]
    # scored on fewer tests: incomplete, reason shown, never ranked
    assert rep.at["same_only", "status"] == "incomplete" and rep.at["same_only", "rank"] is None
    assert rep.at["same_only", "layer_id_status"].startswith("failed: ")
    assert rep.at["same_only", "controls_rank"] == 1  # ranked per test among rows scored on it
    w = boards.wide["weights"].set_index("metric")
    assert w.at["bures", "alignment"] == "procrustes" and w.at["bures", "rank"] == 1
    ov = long[(long["metric"] == "noise") & (long["test"] == "overall")].iloc[0]
    parts = long[(long["metric"] == "noise") & (long["test"] != "overall")]
    assert ov["score"] == pytest.approx(parts["score"].mean())
    assert ov["ci_low"] <= ov["score"] <= ov["ci_high"]
    assert ov["n_units"] == parts["n_units"].sum()


def test_named_test_lacking_inputs_fails_every_row() -> None:
    ctx = ctx_of(board_rows())
    plan = plan_tests(ctx).set_index("test")
    assert plan.at["controls", "scored"] and not plan.at["chance", "scored"]
    assert "z" in plan.at["chance", "reason"]
    boards = score_boards(ctx, ["controls", "chance"])
    chance = boards.long[boards.long["test"] == "chance"]
    assert chance["status"].str.startswith("failed: no chance level").all()
    assert (boards.long[boards.long["test"] == "overall"]["status"] == "incomplete").all()


# -- plugins -----------------------------------------------------------------------------
class Always(GroundTruthTest):
    """A third-party test: every row scores 1 over one unit."""

    name = "always"
    unit = "rows"

    def score(self, ctx: TestContext, row: Row) -> UnitScores:
        return UnitScores.mean(self.unit, ["x"], [1.0])


def test_a_test_is_one_class_and_one_hook() -> None:
    module = types.ModuleType("third_party_tests")
    module.simbench_register_tests = hookimpl(lambda: [Always])  # type: ignore[attr-defined]
    reg = Registry(entry_points=False, extra=[module])
    assert set(reg.names("test")) >= {
        "layer_id", "controls", "label_randomization", "output_grounding",
        "layer_monotonicity", "pc_deletion", "chance", "invariances", "always",
    }  # fmt: skip
    assert reg.get("test", "always").summary.startswith("A third-party test")
    boards = score_boards(ctx_of([cell()]), tests=[reg.create("test", "always")])
    assert boards.long[boards.long["test"] == "overall"]["score"].tolist() == [1.0]


def test_cli_lists_tests(capsys: pytest.CaptureFixture[str]) -> None:
    from simbench.cli import main

    assert main(["list", "test"]) == 0
    out = capsys.readouterr().out
    for name in ("layer_id", "pc_deletion", "output_grounding", "chance"):
        assert name in out


def test_default_test_no_row_of_a_board_can_take_stays_off_it() -> None:
    """Representation rows have a chance level, the weight metric has none: ``chance`` is
    on the representation board only (named explicitly, it fails the weight row)."""
    rows = [r for r in control_rows() if r["metric"] == "perfect"]
    rows = [{**r, "z": 10.0} for r in rows]
    rows += [{**r, "metric": "bures", "alignment": "procrustes", "features": None,
              "consumes": "weights", "z": np.nan} for r in rows]  # fmt: skip
    boards = score_boards(ctx_of(rows))
    assert boards.tests == {"representations": ["chance", "controls"], "weights": ["controls"]}
    assert boards.off["weights"][0][0] == "chance"
    assert boards.wide["weights"].at[0, "rank"] == 1
    named = score_boards(ctx_of(rows), ["chance", "controls"])
    assert named.wide["weights"].at[0, "status"] == "incomplete"


def test_model_tests_cap_their_models() -> None:
    act, y = activations()
    names = [f"m{i}" for i in range(5)]
    rows = [cell(model_a=a, model_b=b, metric="perfect") for a, b in itertools.pairwise(names)]
    ctx = ctx_of(rows, models={m: ModelInfo(arch="net") for m in names}, activations=act,
                 labels=lambda m: y, metric_factory=lambda name, params: Planted(name))  # fmt: skip
    assert LayerMonotonicity(max_models=2).score(ctx, row_of("perfect")).units == ["m0", "m1"]
    assert len(LayerMonotonicity(max_models=None).score(ctx, row_of("perfect")).units) == 5
    assert len(PCDeletion(max_models=1).score(ctx, row_of("perfect")).units) == len(LAYERS)


def test_context_reads_nulls_in_any_spelling() -> None:
    """A table whose nulls were written as text (``""``, ``"None"``, ``"nan"``) by a CSV
    round trip or a reader's ``astype(str)`` scores the same."""
    rows = [r for r in control_rows() if r["metric"] == "perfect"]
    text = [{**r, "alignment": "None", "error": "", "metric_params": "nan"} for r in rows]
    a = Controls().score(ctx_of(rows), row_of("perfect")).point()
    assert Controls().score(ctx_of(text), row_of("perfect")).point() == a == 1.0


def test_spearman_matches_scipy_with_ties() -> None:
    from scipy import stats

    from simbench.groundtruth.from_models import spearman

    rng = np.random.default_rng(8)
    for _ in range(20):
        a = rng.integers(0, 5, size=30).astype(float)
        b = a + rng.integers(0, 3, size=30)
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert spearman(np.ones(5), np.arange(5.0)) == 0.0 and np.isnan(spearman([1, 2], [1, 2]))

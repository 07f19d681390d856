"""Report and leaderboard (issue #4, deliverable 5) on synthetic results with known answers.

The tables use the exact tidy columns of the design (schema_version 1); the expected
layer-identification accuracies, control-ordering fractions, ranks and invariance
verdicts are derived by hand in each test.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

import simbench
from simbench.cli import main
from simbench.groundtruth.from_results import Controls, LayerIdentification
from simbench.invariance import check_invariances, relative_change, transform
from simbench.metrics.base import Metric
from simbench.plugin import Invariance
from simbench.report import ReportError, load_results, write_report
from simbench.report.leaderboard import (
    baseline_of,
    build_leaderboard,
    relation_means,
    test_context,
)

COLUMNS = [
    "schema_version", "suite", "model_a", "model_b", "relation", "layer_a", "layer_b",
    "alignment", "metric", "draw", "value", "stderr", "higher_is_better", "consumes",
    "wall_time_s", "config_hash", "error", "simbench_version", "git_sha", "plugin_versions",
    "arch_a", "arch_b", "dataset_a", "dataset_b", "seed_a", "seed_b", "epoch_a", "epoch_b",
]  # fmt: skip
LAYERS = ["conv1", "conv2", "conv3", "conv4"]


def row(**kw: Any) -> dict[str, Any]:
    """One results row with every design column (defaults for those not given)."""
    base = {
        "schema_version": 1,
        "suite": "synthetic",
        "model_a": "m@0",
        "model_b": "m@1",
        "relation": "seed",
        "layer_a": "conv1",
        "layer_b": "conv1",
        "alignment": "none",
        "metric": "cka",
        "draw": 0,
        "value": 0.5,
        "stderr": float("nan"),
        "higher_is_better": True,
        "consumes": "representations",
        "wall_time_s": 0.01,
        "config_hash": "0" * 16,
        "error": "",
        "simbench_version": "0.1.0",
        "git_sha": "deadbeef",
        "plugin_versions": json.dumps({"simbench": "0.1.0"}),
        "arch_a": "vgg",
        "arch_b": "vgg",
        "dataset_a": "embedded",
        "dataset_b": "embedded",
        "seed_a": 0,
        "seed_b": 1,
        "epoch_a": None,
        "epoch_b": None,
    }
    unknown = set(kw) - set(base) - {"details"}
    assert not unknown, unknown
    base.update(kw)
    return base


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    return df


def save(out: Path, df: pd.DataFrame, *, parquet: bool = True, meta: dict | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if parquet:
        df.to_parquet(out / "results.parquet", engine="pyarrow")
    df.to_csv(out / "results.csv", index=False)
    m = {"suite": "synthetic", "schema_version": 1, "simbench_version": "0.1.0"}
    (out / "results.meta.json").write_text(json.dumps(meta if meta is not None else m))
    return out


# -- synthetic tables with known answers -----------------------------------------------------
def matrix_rows(metric: str, values: np.ndarray, pair: tuple[str, str], **kw: Any) -> list[dict]:
    """Layer × layer rows: values[i, j] for layer i of A vs layer j of B."""
    return [
        row(metric=metric, model_a=pair[0], model_b=pair[1], layer_a=la, layer_b=lb,
            value=float(values[i, j]), **kw)
        for i, la in enumerate(LAYERS)
        for j, lb in enumerate(LAYERS)
    ]  # fmt: skip


def banded(n: int = 4) -> np.ndarray:
    """1 − 0.2|i − j|: every layer is most similar to itself."""
    i, j = np.indices((n, n))
    return 1.0 - 0.2 * np.abs(i - j)


def identification_rows() -> list[dict]:
    """``good`` identifies every layer; ``bad`` gets 5.5 of 8 decisions; ``dist`` is a distance.

    bad, pair (m@0, m@1): layer 0 ok, layer 1 ties with layer 2 (credit 1/2), layer 2's best
    is layer 0 (0), layer 3 ok -> 2.5. Pair (m@0, m@2): all ok but layer 3 (best: 2) -> 3.
    Accuracy = 5.5 / 8 = 0.6875. A dataset pair whose matrix is anti-diagonal must be ignored.
    """
    p1, p2 = ("m@0", "m@1"), ("m@0", "m@2")
    bad1 = banded()
    bad1[1, 2] = bad1[1, 1]  # tie between layer 1 and layer 2
    bad1[2, 0] = 1.5  # layer 2 of A looks most like layer 0 of B
    bad2 = banded()
    bad2[3, 2] = 1.2
    rows = matrix_rows("good", banded(), p1) + matrix_rows("good", banded(), p2)
    rows += matrix_rows("bad", bad1, p1) + matrix_rows("bad", bad2, p2)
    # distance: 0.2|i-j| -> perfect when the direction is respected, 0 if ignored
    dist = 1.0 - banded()
    rows += matrix_rows("dist", dist, p1, higher_is_better=False)
    anti = banded()[:, ::-1]
    for metric in ("good", "bad"):
        rows += matrix_rows(metric, anti, ("m@0", "d@0"), relation="dataset")
    return rows


def _score(test, rows: list[dict], metric: str, hib: bool = True):
    from simbench.groundtruth.base import Row

    return test.score(test_context(frame(rows)), Row("representations", metric, None, None,
                                                     metric, hib))  # fmt: skip


def test_layer_identification_known_accuracies() -> None:
    """Both directions of each seed pair (B's layers against A's from the same matrix):
    bad gets 5 of 8 in pair 1 and 6 of 8 in pair 2 -> 11/16 = 0.6875; the anti-diagonal
    dataset pair is ignored."""
    t = LayerIdentification()
    good = _score(t, identification_rows(), "good")
    assert good.point() == 1.0 and good.detail["decisions"] == 16 and len(good.units) == 2
    assert _score(t, identification_rows(), "bad").point() == pytest.approx(11 / 16)
    dist = _score(t, identification_rows(), "dist", hib=False)
    assert dist.point() == 1.0 and dist.detail["decisions"] == 8


def test_layer_identification_needs_layer_matrix() -> None:
    rows = [row(metric="cka", layer_a=x, layer_b=x, value=0.9) for x in LAYERS]
    with pytest.raises(Exception, match="no layer × layer cells"):
        _score(LayerIdentification(), rows, "cka")


def test_constant_metric_gets_chance_credit_not_full() -> None:
    """All four layers tie: each decision is credited 1/4 (random tie-breaking)."""
    rows = matrix_rows("flat", np.full((4, 4), 0.3), ("m@0", "m@1"))
    assert _score(LayerIdentification(), rows, "flat").point() == pytest.approx(0.25)


def control_rows() -> list[dict]:
    """Means per layer (seed, dataset, labels).

    ``ctl``: conv1 (0.9, 0.7, 0.5) holds; conv2 (0.8, 0.6, 0.65) fails; conv3 (0.7, 0.6, 0.4)
    holds -> 2/3. The seed means average two pairs (and, for conv1, two draws each).
    ``dist`` is the distance 1 − value of the same data -> 2/3 too (0/3 if its direction
    were ignored).
    ``two`` has only seed and labels: conv1 0.6 > 0.5 holds, conv2 0.4 < 0.5 fails -> 1/2.
    """
    means = {"conv1": (0.9, 0.7, 0.5), "conv2": (0.8, 0.6, 0.65), "conv3": (0.7, 0.6, 0.4)}
    pairs = {"seed": [("m@0", "m@1"), ("m@0", "m@2")], "dataset": [("m@0", "d@0")],
             "labels": [("m@0", "r@0")]}  # fmt: skip
    rows = []
    for layer, (s, d, lab) in means.items():
        # seed: two pairs at s ± 0.05; conv1's first pair has two draws s-0.05 ± 0.02
        if layer == "conv1":
            rows += [
                row(metric="ctl", layer_a=layer, layer_b=layer, value=s - 0.05 + e, draw=k)
                for k, e in enumerate((-0.02, 0.02))
            ]
        else:
            rows.append(row(metric="ctl", layer_a=layer, layer_b=layer, value=s - 0.05))
        rows.append(row(metric="ctl", layer_a=layer, layer_b=layer, value=s + 0.05,
                        model_b="m@2"))  # fmt: skip
        for rel, v in (("dataset", d), ("labels", lab)):
            a, b = pairs[rel][0]
            rows.append(row(metric="ctl", relation=rel, model_a=a, model_b=b, layer_a=layer,
                            layer_b=layer, value=v))  # fmt: skip
            rows.append(row(metric="dist", relation=rel, model_a=a, model_b=b, layer_a=layer,
                            layer_b=layer, value=1 - v, higher_is_better=False))  # fmt: skip
        rows.append(row(metric="dist", layer_a=layer, layer_b=layer, value=1 - s,
                        higher_is_better=False))  # fmt: skip
    for layer, (s, lab) in {"conv1": (0.6, 0.5), "conv2": (0.4, 0.5)}.items():
        rows.append(row(metric="two", layer_a=layer, layer_b=layer, value=s))
        rows.append(row(metric="two", relation="labels", model_b="r@0", layer_a=layer,
                        layer_b=layer, value=lab))  # fmt: skip
    return rows


def test_control_ordering_fraction_and_detail() -> None:
    t = Controls()
    ctl = _score(t, control_rows(), "ctl")
    assert ctl.point() == pytest.approx(2 / 3, abs=1e-12) and ctl.units == LAYERS[:3]
    assert _score(t, control_rows(), "dist", hib=False).point() == pytest.approx(2 / 3)
    # ``two`` lacks the dataset relation: no layer holds (MATH.md: a missing relation fails)
    assert _score(t, control_rows(), "two").point() == 0.0
    d = pd.DataFrame(ctl.detail["layers"]).set_index("layer")
    assert d["seed"].to_dict() == pytest.approx({"conv1": 0.9, "conv2": 0.8, "conv3": 0.7})
    assert d["labels"].to_dict() == pytest.approx({"conv1": 0.5, "conv2": 0.65, "conv3": 0.4})
    assert d["holds"].tolist() == [True, False, True]


def test_control_ordering_shows_random_labels_without_scoring_them() -> None:
    """A random_labels pair (rla vs rlb) at 0.95 would break seed > … if it were scored."""
    rows = control_rows() + [
        row(metric="ctl", relation="random_labels", model_a="r@0", model_b="r@1",
            layer_a=layer, layer_b=layer, value=0.95)
        for layer in ("conv1", "conv2")
    ]  # fmt: skip
    ctl = _score(Controls(), rows, "ctl")
    assert ctl.point() == pytest.approx(2 / 3)
    d = pd.DataFrame(ctl.detail["layers"]).set_index("layer")
    assert d["random_labels"].iloc[:2].tolist() == pytest.approx([0.95, 0.95])
    assert np.isnan(d.at["conv3", "random_labels"])


def test_relation_means_error_bars() -> None:
    """Two pairs a, b without stderr: mean (a+b)/2, error |a−b|/2 (sd/√2 with ddof=1)."""
    rows = [row(value=0.6), row(value=0.9, model_b="m@2")]
    m = relation_means(frame(rows))
    assert m["mean"].iloc[0] == pytest.approx(0.75, abs=1e-12)
    assert m["err"].iloc[0] == pytest.approx(0.15, abs=1e-12)
    # one pair, two draws with stderr 0.03 and 0.04: sqrt(mean(se²)/2) = sqrt(0.00125/2)
    rows = [row(value=0.5, stderr=0.03), row(value=0.7, stderr=0.04, draw=1)]
    m = relation_means(frame(rows))
    assert m["mean"].iloc[0] == pytest.approx(0.6, abs=1e-12)
    assert m["err"].iloc[0] == pytest.approx(np.sqrt(0.00125 / 2), abs=1e-12)


def test_baseline_flags() -> None:
    assert baseline_of("svcca") == "SVCCA"
    assert baseline_of("cka") == "linear CKA"
    assert baseline_of("cka", {"kernel": "linear", "debiased": True}) == "linear CKA"
    assert baseline_of("cka(kernel=rbf)") == ""
    assert baseline_of("cka", '{"kernel": "rbf"}') == ""
    assert baseline_of("srm") == "SRM"
    assert baseline_of("procrustes_distance") == "Procrustes"
    assert baseline_of("bures") == ""
    assert baseline_of("pwcca") == ""


def test_leaderboard_rank_ties_and_score() -> None:
    """Only layer_id can run (no labels pairs): good and dist tie at 1, bad 11/16."""
    boards = build_leaderboard(frame(identification_rows()))
    assert boards.tests == {"representations": ["layer_id"]}
    b = boards.wide["representations"].set_index("metric")
    assert b.at["good", "rank"] == 1 and b.at["dist", "rank"] == 1 and b.at["bad", "rank"] == 3
    assert b.at["bad", "overall"] == pytest.approx(11 / 16)
    assert list(b.index) == ["dist", "good", "bad"]


def checks_table() -> pd.DataFrame:
    """cka: 4/4 claimed verified; svcca: 3 of 4 claimed verified; rsa: 2/2."""
    rows = []
    claims = {
        "cka": {"permutation", "orthogonal", "isotropic_scaling", "translation"},
        "svcca": {"permutation", "orthogonal", "isotropic_scaling", "translation"},
        "rsa": {"permutation", "isotropic_scaling"},
    }
    for metric, claimed in claims.items():
        for inv in Invariance:
            c = inv.value in claimed
            passed = not (metric == "svcca" and inv.value == "translation")
            change = 0.0 if c and passed else 0.1
            rows.append({"metric": metric, "invariance": inv.value, "claimed": c,
                         "invariant": change <= 1e-6, "passed": passed,
                         "max_rel_change": change, "value": 0.5, "error": ""})  # fmt: skip
    return pd.DataFrame(rows)


def report_rows() -> list[dict]:
    """cka: layer ID 1.0, controls 1/1; svcca: layer ID 0.75 (one miss of 4), controls 0/1;
    bures (weights, procrustes alignment): controls only; rsa: every cell failed."""
    rows = matrix_rows("cka", banded(), ("m@0", "m@1"))
    sv = banded()
    sv[0, 1] = 1.1
    rows += matrix_rows("svcca", sv, ("m@0", "m@1"))
    for metric, (s, d, lab) in {"cka": (0.9, 0.8, 0.2), "svcca": (0.9, 1.05, 0.3)}.items():
        del s
        rows.append(row(metric=metric, relation="dataset", model_b="d@0", value=d))
        rows.append(row(metric=metric, relation="labels", model_b="r@0", value=lab))
    for k, layer in enumerate(LAYERS):
        for rel, v in (("seed", 0.9), ("dataset", 0.7), ("labels", 0.4 + 0.35 * (k == 3))):
            rows.append(row(metric="bures", alignment="procrustes", consumes="weights",
                            relation=rel, model_b={"seed": "m@1", "dataset": "d@0",
                            "labels": "r@0"}[rel], layer_a=layer, layer_b=layer,
                            value=v - 0.05 * k, stderr=0.01))  # fmt: skip
    rows.append(row(metric="rsa", value=float("nan"), error="ValueError: constant RSM"))
    return rows


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = save(tmp_path_factory.mktemp("run"), frame(report_rows()))
    checks_table().to_csv(out / "invariance_checks.csv", index=False)
    write_report(out)
    return out


def test_leaderboard_from_report_files(report_dir: Path) -> None:
    """cka: layer_id 1, controls 1/4 (conv2-4 lack dataset/labels pairs), invariances 4/4
    -> 0.75; svcca: 0.75, 0/4, 3/4 -> 0.5; rsa: every cell failed, no layer × layer cells:
    incomplete; bures (weights board): controls 3/4."""
    long = pd.read_csv(report_dir / "leaderboard.csv", keep_default_na=False)
    assert list(long.columns) == ["board", "metric", "alignment", "test", "score", "ci_low",
                                  "ci_high", "n_units", "status"]  # fmt: skip
    s = long.set_index(["metric", "test"])["score"].replace("", np.nan).astype(float)
    assert s["cka", "layer_id"] == 1.0 and s["cka", "controls"] == 0.25
    assert s["cka", "invariances"] == 1.0 and s["cka", "overall"] == pytest.approx(0.75)
    assert s["svcca", "layer_id"] == 0.75 and s["svcca", "controls"] == 0.0
    assert s["svcca", "invariances"] == 0.75 and s["svcca", "overall"] == pytest.approx(0.5)
    assert s["bures", "controls"] == 0.75 and s["bures", "overall"] == 0.75
    st = long.set_index(["metric", "test"])["status"]
    assert st["rsa", "overall"] == "incomplete" and st["rsa", "layer_id"].startswith("failed: ")
    assert set(long.loc[long["metric"] == "bures", "board"]) == {"weights"}


def test_markdown_tables_in_ranking_order(report_dir: Path) -> None:
    md = (report_dir / "leaderboard.md").read_text()
    table = [ln for ln in md.splitlines() if re.match(r"\| (\d+|-) \|", ln)]
    names = [ln.split("|")[2].strip() for ln in table]
    assert names[:3] == ["cka", "svcca", "rsa"] and names[3] == "bures"
    assert "| 1 | cka | linear CKA | positions | same- and cross-layer | 0.250 [" in md
    assert "| - | rsa |" in md and "incomplete" in md
    report = (report_dir / "report.md").read_text()
    assert report.index("| 1 | cka") < report.index("| 2 | svcca")
    for png in re.findall(r"\]\((figures/[^)]+\.png)\)", report):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained(report_dir: Path) -> None:
    page = (report_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert not re.search(r"https?://", page)
    assert "<link" not in page and "<script" not in page
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # depth curves for cka, svcca, bures; layer × layer for cka, svcca
    assert len(imgs) == 5
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    # baselines highlighted, the failed cells listed
    assert page.count('<tr class="baseline">') == 2
    assert "ValueError: constant RSM" in page


def test_eigenvector_heatmaps_from_npy(tmp_path: Path) -> None:
    rows, arrays = [], tmp_path / "arrays"
    arrays.mkdir()
    for k, layer in enumerate(LAYERS):
        for rel, b in (("seed", "m@1"), ("dataset", "d@0")):
            name = f"arrays/{rel}-{layer}.npy"
            np.save(tmp_path / name, np.eye(6) * (0.9 - 0.1 * k))
            rows.append(row(metric="eigenvector_overlap", alignment="procrustes", relation=rel,
                            model_b=b, layer_a=layer, layer_b=layer, value=0.5,
                            details=json.dumps({"overlap": name, "k": 6})))  # fmt: skip
    rows.append(row(metric="eigenvector_overlap", alignment="srm", value=0.5,
                    details=json.dumps({"overlap": "arrays/missing.npy"})))  # fmt: skip
    save(tmp_path, frame(rows))
    paths = write_report(tmp_path)
    figs = sorted(p.name for p in paths["figures"].iterdir())
    assert "eigvec-procrustes.png" in figs  # one grid per alignment
    assert not any(f.startswith("eigvec-srm") for f in figs)
    assert "1 referenced eigenvector array(s) could not be read" in paths["report_md"].read_text()


def test_csv_only_and_layer_order_from_first_appearance(tmp_path: Path) -> None:
    """No parquet: the CSV is read (booleans as text); layers keep their depth order."""
    names = ["conv2", "conv10", "conv1"]  # depth order, not lexical
    rows = [row(layer_a=x, layer_b=x, value=0.9 - 0.1 * i) for i, x in enumerate(names)]
    save(tmp_path, frame(rows), parquet=False)
    df, meta = load_results(tmp_path)
    assert meta["suite"] == "synthetic" and len(df) == 3
    report = write_report(tmp_path)["report_md"].read_text()
    assert "conv2, conv10, conv1" in report


def test_missing_results_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no results to report" in err and "Traceback" not in err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such results folder" in capsys.readouterr().err
    pd.DataFrame(columns=COLUMNS).to_csv(tmp_path / "results.csv", index=False)
    assert main(["report", str(tmp_path)]) == 2
    assert "has no rows" in capsys.readouterr().err
    with pytest.raises(ReportError, match="lacks the column"):
        pd.DataFrame({"metric": ["cka"]}).to_csv(tmp_path / "results.csv", index=False)
        load_results(tmp_path)


def test_cli_report_prints_leaderboard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    save(tmp_path, frame(identification_rows()))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | dist |" in out and "| 3 | bad |" in out
    assert (tmp_path / "leaderboard.md").is_file() and (tmp_path / "report.html").is_file()


# -- invariance checks ----------------------------------------------------------------------
def related(rng: np.random.Generator, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    Z = rng.normal(size=(n, 4))
    X = Z @ rng.normal(size=(4, 10)) + 0.5 * rng.normal(size=(n, 10))
    Y = Z @ rng.normal(size=(4, 7)) + 0.5 * rng.normal(size=(n, 7))
    return X, Y


def test_check_invariances_cka_and_rsa() -> None:
    X, Y = related(np.random.default_rng(7))
    got = check_invariances(["cka", "rsa"], X, Y, seed=3).set_index(["metric", "invariance"])
    assert got.at[("cka", "translation"), "value"] == pytest.approx(
        simbench.get_metric("cka")(X, Y), rel=1e-12
    )
    for inv in ("permutation", "orthogonal", "isotropic_scaling", "translation"):
        r = got.loc[("cka", inv)]
        assert r["claimed"] and r["invariant"] and r["passed"], inv
        assert r["max_rel_change"] <= 1e-6
    r = got.loc[("rsa", "orthogonal")]
    assert not r["claimed"] and not r["invariant"] and r["passed"]
    assert r["max_rel_change"] > 1e-3
    assert got.loc[("rsa", "isotropic_scaling"), "passed"]
    assert got.loc[("cka", "invertible_linear"), "passed"]  # not claimed, and it changes


class _LyingMetric(Metric):
    """Claims orthogonal invariance but is the mean of the first column (test double)."""

    invariances: ClassVar[frozenset[Invariance]] = frozenset({Invariance.ORTHOGONAL})

    def _compute(self, X: np.ndarray, Y: np.ndarray) -> float:
        return float(X[:, 0].mean() + Y[:, 0].mean())


def test_check_invariances_detects_a_false_claim() -> None:
    X, Y = related(np.random.default_rng(8))
    X = X + 2.0  # a non-zero mean, so a rotation changes the first column's mean
    got = check_invariances([_LyingMetric()], X, Y, seed=0).set_index("invariance")
    assert got.at["orthogonal", "claimed"] and not got.at["orthogonal", "passed"]
    # the recorded change is the largest of the two trials, recomputed here
    m = _LyingMetric()
    ref = m(X, Y)
    import zlib

    changes = []
    for t in range(2):
        ss = np.random.SeedSequence([0, zlib.crc32(b""), 1, t])  # label "", ORTHOGONAL index 1
        rng = np.random.default_rng(ss)
        got_t = (
            m(transform(X, Invariance.ORTHOGONAL, rng), Y)
            if t == 0
            else m(X, transform(Y, Invariance.ORTHOGONAL, rng))
        )
        changes.append(relative_change(ref, got_t))
    assert got.at["orthogonal", "max_rel_change"] == pytest.approx(max(changes), rel=1e-12)


def test_check_invariances_weights_4d_and_errors() -> None:
    rng = np.random.default_rng(9)
    X, Y = related(rng)
    got = check_invariances(["bures", ("cka", {"kernel": "rbf"})], X, Y)
    b = got[got["metric"] == "bures"]
    assert b["passed"].isna().all() and b["error"].str.contains("weights").all()
    assert set(got["metric"]) == {"bures", "cka(kernel=rbf)"}
    # 4-D activations: flattened to (B·H·W, C) for a 2-D metric, values agree
    A = rng.normal(size=(6, 5, 3, 3))
    B = np.einsum("bchw,cd->bdhw", A, rng.normal(size=(5, 4))) + 0.3 * rng.normal(size=(6, 4, 3, 3))
    got4 = check_invariances(["cka"], A, B, max_samples=None).set_index("invariance")
    flat = simbench.get_metric("cka")(
        np.moveaxis(A, 1, -1).reshape(-1, 5), np.moveaxis(B, 1, -1).reshape(-1, 4)
    )
    assert got4.at["orthogonal", "value"] == pytest.approx(flat, rel=1e-12)
    assert got4.at["orthogonal", "passed"]
    with pytest.raises(ValueError, match="paired"):
        check_invariances(["cka"], X, Y[:-1])
    with pytest.raises(ValueError, match="finite"):
        check_invariances(["cka"], np.full_like(X, np.nan), Y)
    with pytest.raises(ValueError, match="trials"):
        check_invariances(["cka"], X, Y, trials=0)

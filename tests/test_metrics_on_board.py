"""Every registered representation metric runs through the runner and lands on the board.

Issue #14: a new metric is a plugin like the others and "appears on the leaderboard
boards" with no code of its own. One small suite (the runner tests' trained tiny VGGs,
two layers, 32 probe images at 2 positions) scores every representation metric of the
registry; each must give finite values with intervals and a leaderboard row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simbench.metrics.base import Consumes
from simbench.registry import default_registry
from simbench.report.leaderboard import build_leaderboard
from simbench.runner.driver import run_suite

from .test_runner import shared_models, write_suite

#: parameters a metric needs on this probe: 64 samples of 8..32 features (n > d), where the
#: Riemannian distance between n×n second moments needs its documented ridge
PARAMS = {"riemannian_distance": {"ridge": 0.1}, "cknna": {"k": 5}}


def _representation_metrics() -> list[str]:
    return sorted(
        r.name
        for r in default_registry().records("metric")
        if r.obj.consumes is Consumes.REPRESENTATIONS and r.obj.input_ndim == 2
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    names = _representation_metrics()
    metrics = "\n".join(
        f"  - {{name: {n}, params: {PARAMS[n]}}}" if n in PARAMS else f"  - {n}" for n in names
    )
    text = f"""\
name: board
output: out
seed: 0
training: {{epochs: 1, max_train_images: 256, batch_size: 64}}
models:
  - id: vgg
    architecture: {{name: vgg, params: {{width: 0.0625}}}}
    dataset: embedded
    seeds: [0, 1]
probe: {{images: 32, positions: 2, batch_size: 32}}
pairs:
  - [vgg@0, vgg@1]
layers: [conv3, conv5]
alignments: [identity]
metrics:
{metrics}
executor: {{name: local, params: {{workers: 1}}}}
"""
    folder = tmp_path_factory.mktemp("board")
    path = write_suite(folder, text, models=shared_models(tmp_path_factory))
    run_suite(path, echo=None)
    return names, pd.read_parquet(folder / "out" / "results.parquet"), folder / "out"


def test_every_representation_metric_scores_with_an_interval(run):
    names, df, _ = run
    assert len(names) >= 17  # 22 metrics: 4 weight metrics and svcca_dft (4-D input) aside
    assert set(df.metric.map(lambda m: m.split("(")[0])) >= set(names)
    ok = df[df.error.fillna("") == ""]
    failed = df[df.error.fillna("") != ""]
    assert failed.empty, failed[["metric", "layer_a", "error"]].to_string()
    assert len(ok) == len(names) * 2
    for col in ("value", "stderr", "ci_low", "ci_high", "null_mean", "z"):
        assert np.isfinite(ok[col].to_numpy(dtype=float)).all(), col
    assert (ok.ci_low <= ok.value).all() and (ok.value <= ok.ci_high).all()


def test_every_metric_has_a_leaderboard_row(run):
    names, df, out = run
    boards = build_leaderboard(df)
    on_board = set(boards.long.metric.map(lambda m: m.split("(")[0]))
    assert on_board >= set(names)
    text = (out / "leaderboard.md").read_text(encoding="utf-8")
    missing = [n for n in names if n not in text]
    assert not missing, missing

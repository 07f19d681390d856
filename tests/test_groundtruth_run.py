"""The tests' per-model data through the runner: a suite run exports each model's probe
logits, labels and pooled activations, the suite's ``tests:`` pick the scored tests, and
``--dry-run`` says which tests will be scored and why not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simbench.runner.driver import run_suite
from simbench.runner.model_data import ModelData
from simbench.suite import SuiteError, parse_suite

from .test_runner import TINY_MODELS, shared_models, write_suite

SUITE = (
    """\
name: gt
output: out
seed: 0
"""
    + TINY_MODELS
    + """\
probe: {images: 32, positions: 2, batch_size: 32}
pairs:
  - {all: true}
layers: [conv1, conv3, conv5]
alignments: [identity]
metrics: [cka]
tests: [output_grounding, layer_monotonicity, pc_deletion, label_randomization, layer_id]
executor: {name: local, params: {workers: 1}}
"""
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gt")
    path = write_suite(folder, SUITE, models=shared_models(tmp_path_factory))
    lines: list[str] = []
    run_suite(path, dry_run=True, echo=lines.append)
    run_suite(path, echo=None)
    return folder / "out", "\n".join(lines)


def test_dry_run_lists_the_tests(run) -> None:
    _, text = run
    assert "leaderboard tests (suite `tests:`)" in text
    assert "output_grounding" in text and "pc_deletion" in text
    # layer_id needs layer × layer rows: named, it is scored and fails every row
    assert "layer_id" in text and "set `layer_matrix: true`" in text


def test_model_data_exported(run) -> None:
    out, _ = run
    data = ModelData.open(out)
    assert data is not None and sorted(data.models) == ["rnd@0", "vgg@0", "vgg@1"]
    logits, labels = data.logits("vgg@0"), data.labels("vgg@0")
    assert logits.shape == (32, 10) and labels.shape == (32,) and np.isfinite(logits).all()
    assert data.activations("vgg@1", "conv3").shape == (32, 16)
    assert data.info["rnd@0"]["fraction"] == 1.0 and data.info["vgg@0"]["fraction"] == 0.0
    assert data.info["rnd@0"]["images"] == data.info["vgg@0"]["images"]


def test_named_tests_scored_from_model_data(run) -> None:
    out, _ = run
    long = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    st = long.set_index("test")["status"]
    for t in ("output_grounding", "layer_monotonicity", "pc_deletion", "label_randomization"):
        assert st[t] == "ok", (t, st[t])
    assert st["layer_id"].startswith("failed: no layer × layer rows")
    assert st["overall"] == "incomplete"
    s = long.set_index("test")["score"]
    assert 0.0 <= float(s["pc_deletion"]) <= 1.0
    assert int(long.set_index("test").at["output_grounding", "n_units"]) == 3


def test_unknown_test_name_is_a_suite_error() -> None:
    with pytest.raises(SuiteError, match=r"layer_idd.*Did you mean"):
        parse_suite(SUITE.replace("layer_id]", "layer_idd]"))

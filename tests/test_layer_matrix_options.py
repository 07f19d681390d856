"""Suite keys ``layer_matrix_models`` (which pairs get the layer × layer matrix) and
``layer_matrix_uncertainty`` (the matrix cells' stderr and chance level, or values only)."""

from __future__ import annotations

import numpy as np
import pytest

from simbench.runner.driver import run_suite
from simbench.suite import SuiteError, parse_suite
from tests.test_runner import TINY, shared_models, write_suite

MATRIX = TINY.replace(
    "metrics: [cka, bures_cosine, procrustes_distance]",
    "metrics: [cka]\nlayers: [conv1, conv2, fc]\nlayer_matrix: true\n"
    'layer_matrix_models: ["vgg@*"]\nlayer_matrix_uncertainty: false',
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix_opts")
    path = write_suite(folder, MATRIX, shared_models(tmp_path_factory))
    return run_suite(path, echo=None, report=False).results


def test_only_matching_pairs_get_the_matrix(run):
    cross = run[run.layer_a != run.layer_b]
    pairs = set(zip(cross.model_a, cross.model_b, strict=True))
    assert pairs == {("vgg@0", "vgg@1")}  # rnd@0 matches no glob: no matrix with it
    assert len(cross) == 3 * 3 - 3  # conv1, conv2, fc x the same, off the diagonal
    same = run[(run.layer_a == run.layer_b) & (run.features == "positions")]
    assert len(same) == 3 * 3  # every pair keeps its same-layer rows


def test_matrix_values_without_uncertainty_and_same_layer_rows_with_it(run):
    matrix = run[run.features == "pooled"]
    assert matrix.value.notna().all() and matrix.error.isna().all()
    assert matrix.stderr.isna().all() and matrix.z.isna().all()
    same = run[run.features == "positions"]
    assert np.isfinite(same.stderr.astype(float)).all() and np.isfinite(same.z.astype(float)).all()
    # the matrix diagonal is the pooled same-layer value: linear CKA of pooled outputs in [0, 1]
    diag = matrix[matrix.layer_a == matrix.layer_b]
    assert len(diag) == 3 and ((diag.value > 0) & (diag.value <= 1 + 1e-12)).all()


def test_layer_matrix_models_validated(tmp_path):
    bad = MATRIX.replace('layer_matrix_models: ["vgg@*"]', "layer_matrix_models: []")
    with pytest.raises(SuiteError, match="layer_matrix_models"):
        parse_suite(bad, base_dir=tmp_path)

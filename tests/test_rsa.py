"""RSA: golden values against scipy, definitions, degenerate rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

import simbench
from tests._transforms import haar_orthogonal
from tests.conftest import correlated_pair


@pytest.mark.parametrize("compare", ["pearson", "spearman"])
def test_matches_scipy(rng, compare):
    X, Y = correlated_pair(rng, n=40)
    iu = np.triu_indices(40, k=1)
    a, b = np.corrcoef(X)[iu], np.corrcoef(Y)[iu]
    ref = pearsonr(a, b)[0] if compare == "pearson" else spearmanr(a, b)[0]
    assert simbench.get_metric("rsa", compare=compare)(X, Y) == pytest.approx(ref, rel=1e-10)


def test_cosine_rsm_is_rotation_invariant_correlation_is_not(rng):
    X, Y = correlated_pair(rng, n=40)
    Q = haar_orthogonal(rng, X.shape[1])
    cos = simbench.get_metric("rsa", rsm="cosine")
    cor = simbench.get_metric("rsa")
    assert cos(X @ Q, Y) == pytest.approx(cos(X, Y), rel=1e-10)
    assert abs(cor(X @ Q, Y) - cor(X, Y)) > 1e-4


def test_self_and_row_offsets(rng):
    X, _ = correlated_pair(rng, n=30)
    # the correlation RSM ignores a per-sample offset and scale
    Y = X * rng.uniform(0.5, 2.0, size=(30, 1)) + rng.normal(size=(30, 1))
    assert simbench.get_metric("rsa")(X, Y) == pytest.approx(1.0, abs=1e-12)


def test_constant_row_is_a_value_error(rng):
    X, Y = correlated_pair(rng, n=30)
    X[4] = 2.0
    with pytest.raises(ValueError, match="sample 4"):
        simbench.get_metric("rsa")(X, Y)

"""Streaming moments: batch accumulation equals the full-batch computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simbench import Moments
from tests.conftest import correlated_pair


def _full(X, Y):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc


@pytest.mark.parametrize("batch", [1, 7, 64, None])
def test_batches_equal_full(rng, batch):
    X, Y = correlated_pair(rng, n=150)
    m = Moments.from_arrays(X, Y, batch_size=batch)
    sxx, syy, sxy = _full(X, Y)
    assert m.n == 150
    np.testing.assert_allclose(m.mean_x, X.mean(0), rtol=1e-12, atol=1e-14)
    for got, ref in [(m.sxx, sxx), (m.syy, syy), (m.sxy, sxy)]:
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_merge_of_disjoint_accumulators(rng):
    X, Y = correlated_pair(rng, n=100)
    a = Moments.from_arrays(X[:37], Y[:37])
    b = Moments.from_arrays(X[37:], Y[37:], batch_size=20)
    a.merge(b)
    np.testing.assert_allclose(a.sxy, _full(X, Y)[2], rtol=1e-10, atol=1e-10)


def test_large_offsets_keep_precision(rng):
    # mean 1e8, unit variance: raw sums would lose every digit; Chan's update does not
    X = rng.normal(size=(500, 3)) + 1e8
    m = Moments.from_arrays(X, batch_size=50)
    ref = (X - X.mean(0)).T @ (X - X.mean(0))
    np.testing.assert_allclose(m.sxx, ref, rtol=1e-6)
    assert np.diag(m.sxx) / 500 == pytest.approx([1, 1, 1], abs=0.15)


def test_torch_batches(rng):
    X, Y = correlated_pair(rng, n=90)
    m = Moments.from_arrays(torch.from_numpy(X), torch.from_numpy(Y), batch_size=25)
    np.testing.assert_allclose(m.sxy, _full(X, Y)[2], rtol=1e-10, atol=1e-10)


def test_bad_batches(rng):
    X, Y = correlated_pair(rng, n=20)
    m = Moments().update(X, Y)
    with pytest.raises(ValueError, match="features"):
        m.update(X[:, :3], Y)
    with pytest.raises(ValueError, match="paired"):
        m.update(X)
    with pytest.raises(ValueError, match="same samples"):
        Moments().update(X, Y[:-1])
    with pytest.raises(ValueError, match="non-finite"):
        Moments().update(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="fourth"):
        Moments().update(X, Y).hsic_unbiased()
    with pytest.raises(ValueError, match="X only"):
        Moments().update(X).cov("xy")

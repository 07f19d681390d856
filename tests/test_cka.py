"""CKA: closed forms, Gram vs feature forms, debiased (unbiased HSIC), RBF, minibatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simbench
from simbench.metrics.cka import hsic_unbiased, linear_gram
from tests._transforms import haar_orthogonal
from tests.conftest import correlated_pair


def orthogonal_centred_columns(rng, n, d):
    A = rng.normal(size=(n, d))
    A -= A.mean(axis=0)
    Q, _ = np.linalg.qr(A)  # columns stay centred: they span the centred space
    return Q


def test_linear_cka_closed_form(rng):
    # X = [p·e1, q·e2] with orthonormal centred columns, Y = e1: CKA = p² / (p·sqrt(p⁴+q⁴))
    Q = orthogonal_centred_columns(rng, 50, 2)
    p, q = 2.0, 3.0
    X = Q * np.array([p, q])
    Y = Q[:, :1]
    expected = p**2 / np.sqrt(p**4 + q**4)
    assert simbench.get_metric("cka")(X, Y) == pytest.approx(expected, rel=1e-12)


def test_linear_cka_rotation_and_self(rng):
    X, _ = correlated_pair(rng)
    Q = haar_orthogonal(rng, X.shape[1])
    assert simbench.get_metric("cka")(X, 3.0 * X @ Q + 5.0) == pytest.approx(1.0, abs=1e-12)


def test_gram_and_feature_forms_agree(rng):
    cka = simbench.get_metric("cka")
    X, Y = correlated_pair(rng, n=40, dx=30, dy=25)  # n < dx + dy: Gram form
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    feature = np.sum((Yc.T @ Xc) ** 2) / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    assert cka(X, Y) == pytest.approx(feature, rel=1e-10)
    assert cka(simbench.Moments.from_arrays(X, Y)) == pytest.approx(feature, rel=1e-10)


def test_unbiased_hsic_is_unbiased(rng):
    # E[HSIC₁] = ||Cov(x, y)||_F² for the linear kernel (Song et al. 2012): Monte-Carlo check
    A = np.array([[1.0, 0.5, 0.0], [0.0, -1.0, 2.0]])
    truth = np.sum(A**2)  # y = A x + noise, x ~ N(0, I): Cov(x, y) = Aᵀ
    vals = []
    for _ in range(3000):
        x = rng.normal(size=(8, 3))
        y = x @ A.T + rng.normal(size=(8, 2))
        vals.append(hsic_unbiased(x @ x.T, y @ y.T))
    vals = np.array(vals)
    se = vals.std() / np.sqrt(len(vals))
    assert abs(vals.mean() - truth) < 4 * se
    # ... whereas the biased estimator is biased at this n
    biased = [
        np.sum(linear_gram(x) * linear_gram(x @ A.T + rng.normal(size=(8, 2)))) / 64
        for x in rng.normal(size=(3000, 8, 3))
    ]
    assert abs(np.mean(biased) - truth) > 4 * se


def test_debiased_streaming_equals_gram_form(rng):
    X, Y = correlated_pair(rng, n=300, dx=10, dy=7)
    X += 50.0  # large offsets: the unbiased HSIC is translation-invariant
    K, L = X @ X.T, Y @ Y.T
    expected = hsic_unbiased(K, L) / np.sqrt(hsic_unbiased(K, K) * hsic_unbiased(L, L))
    m = simbench.get_metric("cka", debiased=True)
    assert m(X, Y) == pytest.approx(expected, rel=1e-9)
    acc = m.accumulator()
    for rows in np.array_split(np.arange(300), 7):
        acc.update(X[rows], Y[rows])
    assert m(acc) == pytest.approx(expected, rel=1e-9)
    # the Gram path (n < dx + dy) gives the same number
    assert m(X[:15], Y[:15]) == pytest.approx(
        hsic_unbiased(K[:15, :15], L[:15, :15])
        / np.sqrt(
            hsic_unbiased(K[:15, :15], K[:15, :15]) * hsic_unbiased(L[:15, :15], L[:15, :15])
        ),
        rel=1e-9,
    )


def _rbf_loop(X, ratio):
    n = len(X)
    D2 = np.array([[np.sum((X[i] - X[j]) ** 2) for j in range(n)] for i in range(n)])
    sigma2 = ratio**2 * np.median(D2)
    return np.exp(-D2 / (2 * sigma2))


def test_rbf_cka_golden(rng):
    X, Y = correlated_pair(rng, n=25, dx=4, dy=3)
    H = np.eye(25) - 1 / 25
    K, L = _rbf_loop(X, 0.5), _rbf_loop(Y, 0.5)
    hs = lambda A, B: np.trace(A @ H @ B @ H)  # noqa: E731
    expected = hs(K, L) / np.sqrt(hs(K, K) * hs(L, L))
    assert simbench.get_metric("cka", kernel="rbf")(X, Y) == pytest.approx(expected, rel=1e-10)


def test_rbf_wide_bandwidth_tends_to_linear(rng):
    X, Y = correlated_pair(rng, n=60)
    lin = simbench.get_metric("cka")(X, Y)
    assert simbench.get_metric("cka", kernel="rbf", ratio=300.0)(X, Y) == pytest.approx(lin, 1e-5)


@pytest.mark.parametrize(
    "kw", [{"kernel": "rbf"}, {"debiased": True}, {"kernel": "rbf", "debiased": True}]
)
def test_variants_are_rotation_translation_scale_invariant(rng, kw):
    X, Y = correlated_pair(rng, n=50)
    m = simbench.get_metric("cka", **kw)
    Q = haar_orthogonal(rng, X.shape[1])
    assert m(0.1 * X @ Q - 7.0, Y) == pytest.approx(m(X, Y), rel=1e-9)


def test_minibatch_cka(rng):
    X, Y = correlated_pair(rng, n=200)
    full = simbench.get_metric("cka", debiased=True)(X, Y)
    one = simbench.get_metric("cka", debiased=True, minibatch_size=200)
    assert one(X, Y) == pytest.approx(full, rel=1e-10)
    mb = simbench.get_metric("cka", debiased=True, minibatch_size=50)
    acc = mb.accumulator()
    for s in range(0, 200, 50):
        acc.update(torch.from_numpy(X[s : s + 50]), Y[s : s + 50])
    assert mb(acc) == pytest.approx(mb(X, Y), rel=1e-12)
    assert abs(mb(X, Y) - full) < 0.1  # an estimator of the same quantity
    with pytest.raises(ValueError, match="debiased=True"):
        simbench.get_metric("cka", minibatch_size=50)


def test_degenerate_inputs(rng):
    cka = simbench.get_metric("cka")
    X, Y = correlated_pair(rng, n=30)
    with pytest.raises(ValueError, match="no variance"):
        cka(np.ones_like(X), Y)
    # a constant column is harmless: it is removed by centring
    Xc = X.copy()
    Xc[:, 0] = 4.0
    assert cka(Xc, Y) == pytest.approx(cka(X[:, 1:], Y), rel=1e-12)
    with pytest.raises(ValueError, match="at least 4"):
        simbench.get_metric("cka", debiased=True)(X[:3], Y[:3])
    with pytest.raises(ValueError, match="kernel"):
        simbench.get_metric("cka", kernel="poly")
    with pytest.raises(ValueError, match="median"):
        simbench.get_metric("cka", kernel="rbf")(
            np.vstack([np.repeat(X[:1], 19, 0), X[1:2]]), Y[:20]
        )

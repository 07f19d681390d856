"""Every registered metric honours the metric contract (new plugins are tested automatically).

Parametrized over the registry, like timm's tests over its model registry: a metric
a third-party package registers is collected here with no test of its own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simbench
from simbench.metrics.base import Consumes
from simbench.plugin import Invariance, Score
from simbench.registry import default_registry

METRICS = [r.name for r in default_registry().records("metric")]


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


@pytest.fixture(params=METRICS)
def metric(request):
    return simbench.get_metric(request.param)


@pytest.fixture
def pair(metric):
    return type(metric).example_inputs(np.random.default_rng(7))


def test_metadata_is_declared(metric):
    cls = type(metric)
    info = cls.info()
    assert info["name"] == cls.name and cls.summary(), "a metric needs a name and a docstring"
    assert cls.consumes in set(Consumes)
    assert all(isinstance(i, Invariance) for i in metric.claimed_invariances())
    assert isinstance(cls.higher_is_better, bool) and isinstance(cls.symmetric, bool)
    # parameters round-trip: a metric rebuilt from get_params() is the same metric
    assert type(metric)(**metric.get_params()).get_params() == metric.get_params()


def test_value_is_finite_and_deterministic(metric, pair):
    a = metric.evaluate(*pair)
    b = metric.evaluate(*pair)
    assert isinstance(a, Score) and np.isfinite(a.value)
    assert a.value == b.value, "a metric (and its seeded draws) must be deterministic"
    assert metric(*pair) == a.value


def test_symmetry_claim(metric, pair):
    X, Y = pair
    xy, yx = metric(X, Y), metric(Y, X)
    if metric.symmetric:  # may depend on parameters (bures: symmetric=False)
        assert close(xy, yx), f"{metric.name} claims symmetry: {xy} != {yx}"
    else:
        assert not close(xy, yx, 1e-6), f"{metric.name} claims asymmetry but {xy} == {yx}"


def test_self_comparison_is_optimal(metric, pair):
    X, Y = pair
    self_score, cross = metric(X, X), metric(X, Y)
    if type(metric).higher_is_better:
        assert self_score >= cross - 1e-9
    else:
        assert self_score <= cross + 1e-9


def test_torch_input_equals_numpy(metric, pair):
    X, Y = pair
    ref = metric(X, Y)
    got = metric(torch.from_numpy(X), torch.from_numpy(Y).to(torch.float32).to(torch.float64))
    assert close(ref, got, 1e-7)


def test_streaming_equals_full_batch(metric, pair):
    if not metric.streaming:
        pytest.skip(f"{metric.name} does not stream (it needs whole matrices or weights)")
    X, Y = pair
    acc = metric.accumulator()
    for rows in np.array_split(np.arange(X.shape[0]), 3):
        acc.update(X[rows], Y[rows])
    assert close(metric(acc), metric(X, Y), 1e-9)


def test_nan_input_is_a_value_error(metric, pair):
    X, Y = pair
    Xn = X.copy()
    Xn.flat[3] = np.nan
    with pytest.raises(ValueError, match=r"(?i)nan|non-finite"):
        metric(Xn, Y)


def test_mismatched_inputs_are_a_value_error(metric, pair):
    X, Y = pair
    if type(metric).consumes is Consumes.WEIGHTS:
        Y = Y[:, :-1]  # different input dimension: the weights are not aligned
    else:
        Y = Y[:-1]  # different number of samples
    with pytest.raises(ValueError):
        metric(X, Y)

"""Claimed invariances hold (hypothesis property tests); unclaimed ones are shown absent.

MATH.md "Ground-truth checks": value unchanged (to 1e-6) under the transforms a metric
claims, and changed under those it does not. Parametrized over the registry.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simbench
from simbench.plugin import Invariance
from simbench.registry import default_registry
from tests._transforms import transform

CASES = [(r.name, inv) for r in default_registry().records("metric") for inv in Invariance]
TOL = 1e-6


def _changed(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(a))


@pytest.mark.parametrize(("name", "inv"), CASES, ids=[f"{n}-{i.value}" for n, i in CASES])
def test_invariance(name: str, inv: Invariance) -> None:
    metric = simbench.get_metric(name)
    example = type(metric).example_inputs

    if inv in metric.claimed_invariances():

        @settings(max_examples=12, deadline=None, derandomize=True)
        @given(seed=st.integers(0, 2**32 - 1), on_x=st.booleans())
        def holds(seed: int, on_x: bool) -> None:
            rng = np.random.default_rng(seed)
            X, Y = example(rng)
            ref = metric(X, Y)
            got = metric(transform(X, inv, rng), Y) if on_x else metric(X, transform(Y, inv, rng))
            assert _changed(ref, got) <= TOL, f"{name} claims {inv.value}: {ref} -> {got}"

        holds()
    else:
        # absent: some seeded input changes the value by far more than the tolerance
        changes = []
        for seed in range(4):
            rng = np.random.default_rng(1000 + seed)
            X, Y = example(rng)
            changes.append(_changed(metric(X, Y), metric(transform(X, inv, rng), Y)))
        assert max(changes) > 100 * TOL, (
            f"{name} does not claim {inv.value} invariance, yet it looks invariant "
            f"(max relative change {max(changes):.2e}); claim it or check the transform"
        )

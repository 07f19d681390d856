"""``simbench run --dry-run``: which ground-truth tests the leaderboard will score, and why not.

The tests' ``missing(ctx)`` predicates are asked about the *planned* run: a results frame
with one row per planned cell (values unknown), ``z`` present when the probe has null
pairings, the invariance checks when the plan has them, per-model data when the run
exports it (every run that writes a report does), and the models' label-noise fractions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def planned_context(plan: Any) -> Any:
    """A :class:`~simbench.groundtruth.context.TestContext` of the planned cells."""
    from simbench.report.leaderboard import test_context
    from simbench.runner.model_data_job import model_info

    nulls = getattr(plan.probe, "null_pairings", 0) or 0
    rows = [
        {"model_a": c.pair.a.ref, "model_b": c.pair.b.ref, "relation": c.pair.relation,
         "layer_a": c.layer_a, "layer_b": c.layer_b, "alignment": c.alignment,
         "metric": c.metric, "consumes": c.consumes, "higher_is_better": c.higher_is_better,
         "value": np.nan, "z": 0.0 if nulls else np.nan, "error": "",
         "arch_a": c.pair.a.arch, "arch_b": c.pair.b.arch}
        for c in plan.cells
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    layers: dict[str, list[str]] = {}
    for m in plan.models.values():
        if m.arch is not None:
            layers.setdefault(m.arch, list(m.layers))
    meta = {"layers": layers, "models": {m.ref: model_info(m) for m in plan.models.values()}}
    checks = pd.DataFrame({"metric": ["planned"]}) if plan.checks is not None else None
    empty = np.zeros((1, 1))
    data = type("Planned", (), {"logits": lambda self, m: empty, "labels": lambda self, m: empty,
                                "activations": lambda self, m, layer: empty})()  # fmt: skip
    return test_context(df, meta, checks, data=data)


def describe_tests(plan: Any) -> str:
    """Lines for the dry run: each test, the boards it applies to, scored or why not."""
    from simbench.groundtruth.board import plan_tests

    names = getattr(plan.suite, "tests", None)
    table = plan_tests(planned_context(plan), names)
    lines = [
        "leaderboard tests" + (" (suite `tests:`)" if names else " (default: those with inputs)")
    ]
    for r in table.itertuples(index=False):
        if r.scored and r.reason:
            state = f"scored, but every row will fail it: {r.reason}"
        else:
            state = "scored" if r.scored else f"not scored: {r.reason}"
        lines.append(f"  {r.test:<20} [{r.boards}; unit: {r.unit}] {state}")
    return "\n".join(lines)

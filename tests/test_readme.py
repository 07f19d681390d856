"""Every Python code block of README.md runs as written, in order, in one namespace (as a
reader pasting them into one session would); values the prose promises are checked."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


@pytest.fixture(scope="module")
def namespace():
    ns: dict = {"__name__": "__readme__"}
    for i, code in enumerate(BLOCKS):
        exec(compile(code, f"README.md (python block {i + 1})", "exec"), ns)
    return ns


def test_blocks_run_and_keep_their_promises(namespace):
    ns = namespace
    X, Y, cka, a = ns["X"], ns["Y"], ns["cka"], ns["a"]
    assert a.pull_back(ns["W_B"]).shape == (32, X.shape[1])
    assert cka(ns["m"]) == pytest.approx(cka(X, Y), abs=1e-12)  # "== cka(X, Y) to rounding"
    s = ns["s"]
    assert s.ci[0] <= s.value <= s.ci[1] and np.isfinite(s.z)
    streamed = cka.evaluate(ns["bm"], uncertainty={"chunk": 1000})
    direct = cka.evaluate(X, Y, uncertainty={"chunk": 1000})
    assert streamed.value == pytest.approx(direct.value, abs=1e-10)
    assert streamed.stderr == pytest.approx(direct.stderr, abs=1e-10)


def test_many_models_block(namespace):
    many = namespace["many"]
    # 3 model pairs x 4 layer pairs x 2 metrics, equal to pair-by-pair evaluate
    assert len(many) == 24 and many.error.isna().all()
    r = many.iloc[0]
    import simbench

    ref = simbench.get_metric(r.metric)(
        namespace["reps"][r.model_a][r.layer_a], namespace["reps"][r.model_b][r.layer_b]
    )
    assert r.value == pytest.approx(ref, abs=1e-12)

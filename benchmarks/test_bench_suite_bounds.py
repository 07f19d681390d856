"""The suite loader refuses hostile input at once (issue 13): an alias bomb, 10,000-deep
nesting, a recursive alias, a 100 MB file and ``/dev/zero`` are each refused in less time
than loading the quickstart takes (timed in the same session, in-process; the command
line adds the interpreter's start-up, ~1 s). Run with
``pytest benchmarks/test_bench_suite_bounds.py -p no:cacheprovider -s``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from simbench.suite import SuiteError, load_suite

REPO = Path(__file__).resolve().parents[1]


def _bomb() -> str:
    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join([*lines, "models: *a9", "metrics: [cka]"]) + "\n"


def _best(fn, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@pytest.fixture(scope="module")
def quickstart_seconds() -> float:
    load_suite(REPO / "examples" / "quickstart.yaml")  # warm: plugins registered
    return _best(lambda: load_suite(REPO / "examples" / "quickstart.yaml"))


@pytest.mark.parametrize("case", ["alias_bomb", "deep", "recursive", "big", "dev_zero"])
def test_hostile_input_is_refused_faster_than_a_real_suite_loads(
    tmp_path: Path, quickstart_seconds: float, case: str
) -> None:
    path = tmp_path / "suite.yaml"
    if case == "alias_bomb":
        path.write_text(_bomb())
    elif case == "deep":
        path.write_text("name: x\nmodels: " + "[" * 10_000 + "]" * 10_000 + "\n")
    elif case == "recursive":
        path.write_text("name: x\nmodels: &a [*a]\n")
    elif case == "big":
        with open(path, "wb") as fh:
            fh.write(b"name: big\n")
            fh.truncate(100 * 1024 * 1024)
    else:
        path = Path("/dev/zero")

    def refuse() -> None:
        with pytest.raises(SuiteError):
            load_suite(path)

    seconds = _best(refuse)
    print(
        f"{case}: refused in {seconds * 1e3:.1f} ms; quickstart loads in "
        f"{quickstart_seconds * 1e3:.1f} ms"
    )
    assert seconds < quickstart_seconds

"""The suite loader is bounded (issue 13): size, file kind, nesting depth, aliases.

Each hostile input exits 2 with a ``FILE:LINE:`` message through the real command line
(a subprocess, with a timeout that only guards against a hang; the wall times are in
the issue's closing note, not asserted here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simbench.suite import SuiteError, load_suite, parse_suite
from simbench.suite_yaml import MAX_DEPTH, MAX_EXPANDED_VALUES, MAX_SUITE_BYTES

REPO = Path(__file__).resolve().parents[1]


def _cli(path: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "simbench.cli", "run", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard, not a timing assertion
        env=env,
    )


def _alias_bomb(levels: int = 9) -> str:
    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines += [f"models: *a{levels}", "metrics: [cka]"]
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias_bomb": (_alias_bomb(), 7, "expands to more than"),
    "deep_flow": ("name: x\nmodels: " + "[" * 10_000 + "]" * 10_000 + "\n", 2, "nesting deeper"),
    "deep_block": (
        "name: x\nmodels:\n" + "".join("  " * i + "-\n" for i in range(1, 300)),
        MAX_DEPTH + 2,
        "nesting deeper",
    ),
    "deep_inline_block": ("name: x\nmodels:\n" + "- " * 10_000 + "x\n", 3, "nesting deeper"),
    "deep_flow_mapping": ("name: x\nm: " + "{a: " * 10_000 + "1" + "}" * 10_000, 2, "nesting"),
    "recursive_alias": ("name: x\nmodels: &a [*a]\nmetrics: [cka]\n", 2, "recursive alias"),
    "alias_chain": (
        "name: x\nc0: &c0 [1]\n"
        + "".join(f"c{i}: &c{i} [*c{i - 1}]\n" for i in range(1, 2000))
        + "models: *c1999\n",
        MAX_DEPTH,  # the alias that reaches level MAX_DEPTH + 1
        "through aliases",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_yaml_exits_2_with_file_line(tmp_path: Path, case: str) -> None:
    text, line, words = HOSTILE[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    proc = _cli(path)
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:{line}: " in proc.stderr and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_dev_zero_is_refused_without_reading() -> None:
    proc = _cli("/dev/zero")
    assert proc.returncode == 2
    assert "/dev/zero:1: the suite is not a regular file" in proc.stderr


def test_100_mb_suite_is_refused_from_stat(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:  # sparse: 100 MB of size, no 100 MB written
        fh.write(b"name: big\n")
        fh.truncate(100 * 1024 * 1024)
    proc = _cli(path)
    assert proc.returncode == 2
    assert f"{path}:1: the suite is 104,857,600 bytes, over the limit" in proc.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_folder_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "suite.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    with pytest.raises(SuiteError, match="not a regular file"):
        load_suite(fifo)
    with pytest.raises(SuiteError, match="is a folder"):
        load_suite(tmp_path)


def test_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "suite.yaml"
    link.symlink_to("/dev/zero")
    with pytest.raises(SuiteError, match="not a regular file"):
        load_suite(link)


def test_limits_leave_real_suites_alone() -> None:
    """The quickstart loads; aliases used sensibly (a shared architecture) still work."""
    load_suite(REPO / "examples" / "quickstart.yaml")
    text = (
        "name: s\narch: &vgg {name: vgg, params: {depth: 11, width: 0.25}}\n"
        "models:\n- {id: a, architecture: *vgg, dataset: embedded}\n"
        "- {id: b, architecture: *vgg, dataset: embedded, seed: 1}\n"
        "metrics: [cka]\n"
    )
    with pytest.raises(SuiteError) as exc:  # the anchor's key is an unknown top-level key
        parse_suite(text)
    assert [p.path for p in exc.value.problems] == ["arch"]


def test_duplicate_keys_inside_an_alias_are_reported_once() -> None:
    """The duplicate-key check visits an aliased node once (it used to re-walk every use)."""
    text = "name: s\nx: &d {k: 1, k: 2}\nmodels: [*d, *d, *d]\nmetrics: [cka]\n"
    with pytest.raises(SuiteError) as exc:
        parse_suite(text)
    dups = [p for p in exc.value.problems if "duplicate key" in p.message]
    assert [(p.line, p.path) for p in dups] == [(2, "x.k")]


def test_bounds_are_sane() -> None:
    assert MAX_SUITE_BYTES >= 64 * 1024 and MAX_DEPTH >= 20 and MAX_EXPANDED_VALUES >= 10_000
    with pytest.raises(SuiteError, match="over the limit"):
        parse_suite("#" * (MAX_SUITE_BYTES + 1))

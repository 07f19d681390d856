"""Malformed suites: mutate ``examples/quickstart.yaml`` and count how validation ends.

Each mutant applies 1-3 random edits to the quickstart's data (delete or misspell a key,
add an unknown one, change a value's type, push a number out of range or to inf/NaN,
point a path at /proc, at a file used as a folder, at a nonexistent dataset, or give it
a name too long for the file system, name a missing layer or device, duplicate a model,
nest a value), is written as YAML and loaded with :func:`simbench.suite.load_suite`.

Outcomes: ``valid`` (loads), ``error`` (a :class:`~simbench.suite.SuiteError` whose every
line is ``FILE:LINE: ...``: what ``simbench run`` prints before exiting 2), ``crash``
(any other exception: a bug), ``hang`` (no answer in ``--timeout`` seconds: a bug).
``--dry-run`` also builds the plan of every valid mutant (``simbench run --dry-run``,
nothing computed) and counts ``plan-error`` where that fails (a problem validation
missed). Deterministic for a ``--seed``::

    python scripts/suite_mutants.py --count 400 --seed 0 --dry-run

``tests/test_suite_mutants.py`` drives the same :func:`mutate` from hypothesis.
"""

from __future__ import annotations

import argparse
import collections
import copy
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart.yaml"

#: values of every kind, each of which some key of the suite must refuse
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    -1,
    0,
    2**63,
    -(2**63) - 1,
    2**64 + 5,
    10**30,
    1e308,
    -1e-300,
    float("inf"),
    float("-inf"),
    float("nan"),
    3.5,
    "",
    "x" * 300,
    "conv99",
    "tpu",
    "cuda",
    "cuda:7",
    "../no/such/dir",
    [],
    {},
    [1, 2],
    {"a": 1},
    [[[[]]]],
    "0x10",
    "1e400",
]
ODD_PATHS = [
    "/proc/simbench-out",
    "/etc/passwd/sub",
    "/sys/simbench",
    "a" * 300,
    "deep/" + "b" * 260 + "/c",
    "",
    "~nouser/x",
]
ODD_DATASETS: list[Any] = [
    {"name": "npz", "params": {"path": "/no/such/archive.npz"}},
    {"name": "imagefolder", "params": {"root": "/no/such/tree"}},
    {"name": "cifar10", "params": {"root": "/no/such/cifar"}},
    {"name": "class_subset", "params": {"base": {"name": "npz", "params": {"path": "/no.npz"}}}},
    {"name": "embedded", "params": {"root": "/x"}},
    "nosuchdataset",
]
ODD_LAYERS: list[Any] = [["conv1", "conv99"], "conv99", ["*"], ["fc", "Conv1"], "pool*", [""]]

Pick = Callable[[list[Any]], Any]


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path of ``node`` (mapping keys and list indices), parents first."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _parent(data: Any, path: tuple) -> Any:
    for el in path[:-1]:
        data = data[el]
    return data


def _typo(key: str, pick: Pick) -> str:
    i = pick(list(range(max(1, len(key)))))
    kind = pick(["drop", "double", "swap", "case", "suffix"])
    if kind == "drop" and len(key) > 1:
        return key[:i] + key[i + 1 :]
    if kind == "swap" and len(key) > 1:
        i = min(i, len(key) - 2)
        return key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    if kind == "case":
        return key.upper()
    if kind == "suffix":
        return key + "s"
    return key[:i] + key[i] + key[i:] if key else "x"


def mutate(data: dict[str, Any], pick: Pick) -> dict[str, Any]:
    """One random edit of a copy of the suite ``data``; ``pick(options)`` chooses."""
    data = copy.deepcopy(data)
    paths = list(_paths(data))
    models = data.get("models")
    entries = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
    op = pick(
        [
            "delete",
            "rename",
            "unknown_key",
            "odd_value",
            "odd_value",
            "number",
            "path",
            "dataset",
            "layers",
            "device",
            "duplicate",
            "nest",
            "seed",
        ]
    )
    if op in ("delete", "rename", "odd_value", "nest"):
        path = pick(paths)
        parent, key = _parent(data, path), path[-1]
        if op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(key, str):
            parent[_typo(key, pick)] = parent.pop(key)
        elif op == "odd_value":
            parent[key] = pick(ODD_VALUES)
        elif op == "nest":
            parent[key] = pick([[parent[key]], {"value": parent[key]}])
    elif op == "unknown_key":
        mappings = [()] + [p for p in paths if isinstance(_parent(data, p)[p[-1]], dict)]
        where = pick(mappings)
        target = data if not where else _parent(data, where)[where[-1]]
        target[pick(["extra", "model", "metric", "pair", "outputs", "draw"])] = pick(ODD_VALUES)
    elif op == "number":
        numeric = [p for p in paths if isinstance(_parent(data, p)[p[-1]], int | float)]
        if numeric:
            p = pick(numeric)
            v = _parent(data, p)[p[-1]]
            _parent(data, p)[p[-1]] = pick(
                [-v, -1, 0, v * 10**6, 2**63, float("inf"), float("nan"), float(v) + 0.5]
            )
    elif op == "path":
        data[pick(["output", "cache"])] = pick(ODD_PATHS)
    elif op == "dataset":
        where = pick(["probe", "model"])
        if where == "probe" or not entries:
            data["probe"] = {"dataset": pick(ODD_DATASETS)}
        else:
            pick(entries)["dataset"] = pick(ODD_DATASETS)
    elif op == "layers":
        data["layers"] = pick(ODD_LAYERS)
    elif op == "device":
        device = pick(["tpu", "cuda", "cuda:3", "gpu", "", 0, "cpu", "auto"])
        if entries and pick([True, False]):
            entry = pick(entries)
            train = entry.get("train")
            entry["train"] = {**(train if isinstance(train, dict) else {}), "device": device}
        else:
            training = data.get("training")
            data["training"] = {
                **(training if isinstance(training, dict) else {}),
                "device": device,
            }
    elif op == "duplicate":
        section = pick(["models", "metrics", "pairs", "alignments"])
        if isinstance(data.get(section), list) and data[section]:
            data[section].append(copy.deepcopy(pick(data[section])))
    elif op == "seed" and entries:
        pick(entries)["seeds"] = pick([[0, 2**63], [-1], [0, 0], [], [2**63 - 1], [1.5]])
    return data


def mutants(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """``count`` deterministic mutants of the quickstart, 1-3 edits each."""
    import random

    rng = random.Random(seed)
    base = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))

    def pick(options: list[Any]) -> Any:
        return options[rng.randrange(len(options))]

    for _ in range(count):
        data = base
        for _ in range(rng.randint(1, 3)):
            data = mutate(data, pick)
        yield data


class _Timeout(Exception):
    """A mutant whose validation or dry run outlasted its alarm: counted as a hang."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


LINE_RE = re.compile(r"^(?P<file>.+):(?P<line>[0-9]+): \S")


def classify(data: Any, folder: Path, *, timeout: float = 20.0, dry_run: bool = False) -> str:
    """Write ``data`` as ``folder/suite.yaml``, load it; the outcome (module docstring)."""
    from simbench.suite import SuiteError, load_suite

    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        suite = load_suite(path)
        if dry_run:
            from simbench.runner.graph import build_plan

            try:
                build_plan(suite, persist=False)
            except _Timeout:
                raise
            except Exception:
                return "plan-error"
        return "valid"
    except SuiteError as exc:
        lines = str(exc).splitlines()
        ok = lines and all(
            (m := LINE_RE.match(t)) and m["file"] == str(path) and int(m["line"]) >= 1
            for t in lines
        )
        return "error" if ok else "error-without-line"
    except _Timeout:
        return "hang"
    except Exception:
        return "crash"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per mutant")
    ap.add_argument("--dry-run", action="store_true", help="also plan every valid mutant")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each bad mutant")
    args = ap.parse_args(argv)
    counts: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="simbench-mutants-") as tmp:
        for i, data in enumerate(mutants(args.count, args.seed)):
            folder = Path(tmp) / f"m{i}"
            folder.mkdir()
            outcome = classify(data, folder, timeout=args.timeout, dry_run=args.dry_run)
            counts[outcome] += 1
            if args.verbose and outcome not in ("valid", "error"):
                print(f"mutant {i}: {outcome}\n{yaml.safe_dump(data, sort_keys=False)}")
    total = sum(counts.values())
    print(f"{total} mutants of {QUICKSTART.name} (seed {args.seed}):")
    for outcome in ("valid", "error", "error-without-line", "plan-error", "crash", "hang"):
        print(f"  {outcome:20s} {counts.get(outcome, 0)}")
    bad = sum(counts.get(k, 0) for k in ("error-without-line", "plan-error", "crash", "hang"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

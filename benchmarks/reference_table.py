"""simbench against its authors' reference implementations: value agreement and time ratio.

Run (from the repository root)::

    python benchmarks/reference_table.py [--out benchmarks/REFERENCE_TABLE.md] [--repeats 5]

Every module in ``benchmarks/references/`` defines ``REFERENCES: list[dict]``; each entry
has ``metric`` (simbench name), ``params`` (for :func:`simbench.get_metric`), ``source``
(what the reference is) and ``fn`` (``(X, Y) -> float``, raising ``ImportError`` when the
reference is not available), and optionally ``inputs`` (``rng -> [(label, X, Y), ...]``;
default: two related pairs with ``n > d`` and ``n < d``) and ``note``. References that
live only in a public repository are fetched by hand and named in the environment
variable ``SIMBENCH_REFERENCE_PATHS`` (``os.pathsep``-separated folders, put on
``sys.path`` before the reference modules are imported); nothing is vendored.

For each entry and input the simbench value and the reference value are computed;
``max |Δ|`` is the largest absolute difference over the inputs, and the entry *agrees*
when every ``|Δ| ≤ 1e-8 · max(1, |reference|)``. The time ratio is
``Σ median(simbench) / Σ median(reference)`` over the inputs (``repeats`` timed calls
each, BLAS/OpenMP pools limited to one thread), so below 1 means simbench is faster.
Unavailable references get a "not installed" row. Output: a Markdown table (stdout, and
``--out``) and a CSV beside it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads its BLAS

import argparse  # noqa: E402
import csv  # noqa: E402
import importlib  # noqa: E402
import pkgutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
TOL = 1e-8


def related_pair(rng: np.random.Generator, n: int, dx: int, dy: int) -> tuple:
    """Two representations sharing a latent of ``min(dx, dy)/2`` dimensions, plus noise and
    non-zero column means."""
    k = max(1, min(dx, dy) // 2)
    Z = rng.normal(size=(n, k))
    X = Z @ rng.normal(size=(k, dx)) + 0.5 * rng.normal(size=(n, dx)) + rng.normal(size=dx)
    Y = Z @ rng.normal(size=(k, dy)) + 0.5 * rng.normal(size=(n, dy)) + rng.normal(size=dy)
    return X, Y


def default_inputs(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """A pair with more samples than features and one with fewer."""
    return [
        ("600x48/40", *related_pair(rng, 600, 48, 40)),
        ("80x120/100", *related_pair(rng, 80, 120, 100)),
    ]


def load_references() -> list[dict[str, Any]]:
    """``REFERENCES`` of every module in ``benchmarks/references`` (after the extra paths)."""
    for path in reversed(os.environ.get("SIMBENCH_REFERENCE_PATHS", "").split(os.pathsep)):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import references

    entries: list[dict[str, Any]] = []
    for info in sorted(pkgutil.iter_modules(references.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"references.{info.name}")
        for entry in getattr(module, "REFERENCES", []):
            missing = {"metric", "params", "source", "fn"} - set(entry)
            if missing:
                raise ValueError(f"references/{info.name}.py: an entry lacks {sorted(missing)}")
            entries.append({**entry, "module": info.name})
    return entries


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return value, statistics.median(times)


def _single_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables above already apply
        return nullcontext()
    return threadpool_limits(limits=1)


def run_entry(entry: dict[str, Any], repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """One table row: values, max |Δ|, agreement and time ratio of one reference entry."""
    import simbench

    row = {
        "metric": entry["metric"],
        "params": entry["params"],
        "source": entry["source"],
        "note": entry.get("note", ""),
    }
    metric = simbench.get_metric(entry["metric"], **entry["params"])
    inputs = entry.get("inputs", default_inputs)(np.random.default_rng(seed))
    deltas, t_sb, t_ref, labels, ref_values, sb_values, ratios = [], 0.0, 0.0, [], [], [], []
    with _single_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # references' deprecation chatter
        for label, X, Y in inputs:
            try:
                ref, tr = _median_time(lambda X=X, Y=Y: float(entry["fn"](X, Y)), repeats)
            except ImportError as exc:
                return {**row, "status": f"not installed ({exc.name or exc})"}
            got, ts = _median_time(lambda X=X, Y=Y: float(metric(X, Y)), repeats)
            labels.append(label)
            sb_values.append(got)
            ref_values.append(ref)
            deltas.append((abs(got - ref), TOL * max(1.0, abs(ref))))
            t_sb += ts
            t_ref += tr
            ratios.append(ts / tr if tr > 0 else float("nan"))
    return {
        **row,
        "status": "ok",
        "inputs": ", ".join(labels),
        "simbench": sb_values,
        "reference": ref_values,
        "max_abs_delta": max(d for d, _ in deltas),
        "agree": all(d <= tol for d, tol in deltas),
        "time_simbench_s": t_sb,
        "time_reference_s": t_ref,
        "time_ratio": t_sb / t_ref if t_ref > 0 else float("nan"),
        "time_ratios": ratios,
    }


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "defaults"


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| metric | params | reference | inputs | max abs Δ | agree (1e-8) "
        "| time simbench/reference (all; per input) |\n"
        "| --- | --- | --- | --- | ---: | --- | --- |\n"
    )
    lines = []
    for r in rows:
        if r["status"] != "ok":
            lines.append(
                f"| `{r['metric']}` | {_params(r['params'])} | {r['source']} | "
                f"| | {r['status']} | |"
            )
            continue
        lines.append(
            f"| `{r['metric']}` | {_params(r['params'])} | {r['source']} | {r['inputs']} "
            f"| {r['max_abs_delta']:.1e} | {'yes' if r['agree'] else 'NO'} "
            f"| {r['time_ratio']:.2f} ({' / '.join(f'{x:.2f}' for x in r['time_ratios'])}) |"
        )
    return head + "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    cols = [
        "metric",
        "params",
        "source",
        "status",
        "inputs",
        "max_abs_delta",
        "agree",
        "time_simbench_s",
        "time_reference_s",
        "time_ratio",
        "time_ratios",
        "simbench",
        "reference",
        "note",
    ]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "params": _params(r["params"])})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="Markdown file to write (CSV beside it)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per input (median)")
    ap.add_argument("-k", dest="select", default="", help="only metrics containing this text")
    args = ap.parse_args(argv)
    rows = []
    for entry in load_references():
        if args.select and args.select not in entry["metric"]:
            continue
        rows.append(run_entry(entry, repeats=args.repeats))
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")
        write_csv(rows, args.out.with_suffix(".csv"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

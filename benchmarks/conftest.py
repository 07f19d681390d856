"""Benchmark harness: seeded data, a timing recorder and the ratio table printed at the end.

Run with ``pytest benchmarks --benchmark-only`` (pyproject's addopts disable timing by
default; without ``--benchmark-enable``/``--benchmark-only`` every benchmark still runs
once and checks simbench against its baseline, but no table is printed).

Each benchmarked case is timed in up to three roles, all in the same session:
``simbench``, ``baseline`` (the straightforward implementation in ``baselines.py``) and
``floor`` (``XᵀX + YᵀY + XᵀY`` on the same shape). The table reports the minimum over
rounds of each (one round for calls over a second, up to five for fast ones) and the
ratios simbench/baseline and simbench/floor.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

#: (n, d) of the representation benchmarks; Gram-form metrics use ``GRAM_N`` samples
SHAPES: list[tuple[int, int]] = [(10000, 512), (2000, 2048)]
GRAM_N = 2000
#: SIMBENCH_BENCH_QUICK=1: small shapes with the same structure (n > d and n < d), to
#: check the harness and the agreement with the baselines in seconds
QUICK = bool(os.environ.get("SIMBENCH_BENCH_QUICK"))
if QUICK:
    SHAPES = [(1000, 64), (200, 256)]
    GRAM_N = 200
    WEIGHT_SHAPES = [(1000, 64), (64, 256)]
#: each timing takes about this many seconds in total (1 to 5 rounds)
TARGET_SECONDS = 2.0
MAX_ROUNDS = 5

_RESULTS = pytest.StashKey[dict]()
_NOTES = pytest.StashKey[list]()
_PRINTED = pytest.StashKey[bool]()
_LOAD = pytest.StashKey[float]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_LOAD] = os.getloadavg()[0]


#: (n_out, d_in) of the weight-metric benchmarks: more neurons than inputs (d×d eigh) and
#: fewer (n_out×n_out Gram); the Bures d = 4096 comparison has its own file
WEIGHT_SHAPES: list[tuple[int, int]] = [(10000, 512), (512, 2048)]


def shape_id(n: int, d: int) -> str:
    return f"{n}x{d}"


# -- data --------------------------------------------------------------------------------
def correlated_pair(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two float64 representations ``(n, d)`` sharing a ``d/2``-dimensional latent, plus noise.

    Both have full column rank when ``n > d`` and mean 1 per column (so centring matters).
    """
    rng = np.random.default_rng([seed, n, d])
    k = d // 2
    Z = rng.standard_normal((n, k))
    X = Z @ rng.standard_normal((k, d)) / math.sqrt(k) + rng.standard_normal((n, d)) + 1.0
    Y = Z @ rng.standard_normal((k, d)) / math.sqrt(k) + rng.standard_normal((n, d)) + 1.0
    return X, Y


def spiked_weights(
    n_out: int, d_in: int, seed: int = 0, spikes: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Two weight matrices ``(n_out, d_in)`` drawn around a common spiked covariance.

    ``W = σ G (I + V diag(√(1+l) − 1) Vᵀ)`` with ``σ² = 1/(3 d_in)`` (PyTorch's default
    init), ``G`` standard normal and ``spikes`` shared directions ``V`` with strengths ``l``
    from 400 down to 40 (init-variance units): well above GM's noise bulk, so the shrunk
    covariances keep about ``spikes`` eigenpairs (MATH.md: weight-covariance similarity).
    """
    rng = np.random.default_rng([seed, n_out, d_in, 1])
    V = np.linalg.qr(rng.standard_normal((d_in, spikes)))[0]
    gain = np.sqrt(1.0 + np.geomspace(400.0, 40.0, spikes)) - 1.0
    sigma = math.sqrt(1.0 / (3 * d_in))
    out = []
    for _ in range(2):
        G = rng.standard_normal((n_out, d_in))
        out.append(sigma * (G + ((G @ V) * gain) @ V.T))
    return out[0], out[1]


class DataCache:
    """Session cache of the generated inputs (each shape is built once)."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}

    def pair(self, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        key = ("pair", n, d)
        if key not in self._cache:
            self._cache[key] = correlated_pair(n, d)
        return self._cache[key]

    def weights(self, n_out: int, d_in: int) -> tuple[np.ndarray, np.ndarray]:
        key = ("weights", n_out, d_in)
        if key not in self._cache:
            self._cache[key] = spiked_weights(n_out, d_in)
        return self._cache[key]


@pytest.fixture(scope="session")
def data() -> DataCache:
    return DataCache()


# -- timing ------------------------------------------------------------------------------
class Recorder:
    """Times a callable with pytest-benchmark and files the result under (case, shape, role)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.values: dict[tuple[str, str, str], tuple[Any, float]] = {}

    def evaluate(self, case: str, shape: str, role: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` once (cached per session): the value compared between roles; also a warm-up."""
        key = (case, shape, role)
        if key not in self.values:
            t0 = time.perf_counter()
            value = fn()
            self.values[key] = (value, time.perf_counter() - t0)
        return self.values[key][0]

    def time(
        self,
        benchmark: Any,
        case: str,
        shape: str,
        role: str,
        fn: Callable[[], Any],
        rounds: int | None = None,
    ) -> Any:
        """Time ``fn`` and record its minimum over rounds; returns its (cached) value.

        The first call is pytest-benchmark's single pedantic round and gives the value
        (so a slow function runs once). When it took less than ``TARGET_SECONDS / 2``,
        further rounds (up to ``MAX_ROUNDS`` in all, about ``TARGET_SECONDS``) are timed
        with the same timer (``--benchmark-timer``, default ``time.perf_counter``) and
        the table reports the minimum. ``rounds`` caps the total. Under
        ``--benchmark-disable`` ``fn`` runs once, untimed.
        """
        key = (case, shape, role)
        benchmark.group = f"{case} {shape}"
        benchmark.extra_info.update(case=case, shape=shape, role=role)
        t0 = time.perf_counter()
        value = benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)
        self.values.setdefault(key, (value, time.perf_counter() - t0))
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable
            return value
        best = float(stats.stats.min)
        cap = MAX_ROUNDS if rounds is None else rounds
        extra = 0 if best >= TARGET_SECONDS / 2 else min(cap - 1, int(TARGET_SECONDS / best))
        timer = getattr(benchmark, "_timer", time.perf_counter)  # --benchmark-timer
        for _ in range(extra):
            t0 = timer()
            fn()
            best = min(best, timer() - t0)
        benchmark.extra_info.update(min_seconds=best, rounds=1 + extra)
        self.add(case, shape, role, best, 1 + extra)
        return value

    def add(self, case: str, shape: str, role: str, seconds: float, rounds: int = 1) -> None:
        """File a timing measured some other way (e.g. inside a subprocess)."""
        results = self.config.stash.setdefault(_RESULTS, {})
        results[(case, shape, role)] = (seconds, rounds)


@pytest.fixture(scope="session")
def recorder(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.config)


@pytest.fixture(scope="session")
def note(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line to the notes printed under the ratio table."""
    notes = request.config.stash.setdefault(_NOTES, [])
    return notes.append


def relative_error(a: Any, b: Any) -> float:
    """``|a − b| / max(|b|, tiny)`` for scalars, relative Frobenius error for arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = max(float(np.linalg.norm(b)), np.finfo(float).tiny)
    return float(np.linalg.norm(a - b) / den)


# -- the table ---------------------------------------------------------------------------
@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results: dict = config.stash.get(_RESULTS, {})
    if not results or config.stash.get(_PRINTED, False):  # once, even if registered twice
        return
    config.stash[_PRINTED] = True
    floors = {shape: t for (case, shape, role), (t, _) in results.items() if role == "floor"}
    cases: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
    for (case, shape, role), v in results.items():
        if role != "floor":
            cases.setdefault((case, shape), {})[role] = v
    tw = terminalreporter
    tw.write_sep("=", "simbench vs baseline vs GEMM floor (min over rounds, seconds)")
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "all"
    load = config.stash.get(_LOAD, None)
    timer = config.getoption("benchmark_timer", None)
    tw.write_line(
        f"cores: {os.cpu_count()}, BLAS threads: {threads}, timer: "
        f"{getattr(timer, 'name', None) or timer or 'time.perf_counter'}, load average (1 min) "
        f"at start {load if load is None else f'{load:.2f}'}, at end {os.getloadavg()[0]:.2f}"
    )
    head = (
        f"{'case':<34} {'shape':<11} {'simbench':>9} {'rounds':>6} {'baseline':>9} "
        f"{'floor':>7} {'sb/base':>8} {'sb/floor':>9}  flags"
    )
    tw.write_line(head)
    tw.write_line("-" * len(head))
    for (case, shape), roles in cases.items():
        sb = roles.get("simbench")
        base = roles.get("baseline")
        floor = floors.get(shape)
        if sb is None:
            continue
        t, r = sb
        r_base = f"{t / base[0]:8.3f}" if base else f"{'-':>8}"
        r_floor = f"{t / floor:9.3f}" if floor else f"{'-':>9}"
        flags = []
        if base and t > base[0]:
            flags.append("SLOWER THAN BASELINE")
        if floor and t > 1.25 * floor:
            flags.append(">1.25x floor")
        tw.write_line(
            f"{case:<34} {shape:<11} {t:9.4f} {r:>6} "
            f"{(f'{base[0]:9.4f}' if base else f'{chr(45):>9}')} "
            f"{(f'{floor:7.4f}' if floor else f'{chr(45):>7}')} {r_base} {r_floor}  "
            + ", ".join(flags)
        )
    for line in config.stash.get(_NOTES, []):
        tw.write_line(line)

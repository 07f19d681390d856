"""Streaming: 10⁶ samples × 512 features through linear CKA and Procrustes in bounded memory.

The job (``stream_job.py``) runs in a fresh subprocess: batches generated on the fly
from a seeded generator, accumulated in one :class:`simbench.Moments`, then scored by
``cka``, ``procrustes_distance`` and the ``procrustes`` alignment. The bar: peak resident
memory grows by less than 200 MB while streaming (the data would take 8 GB). The table
row compares the accumulation time (``Moments.update`` only, generation excluded) with
the GEMM floor of one batch times the number of batches.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import baselines
import numpy as np
from conftest import QUICK, relative_error

import simbench

SAMPLES = 50_000 if QUICK else 1_000_000
FEATURES = 512
BATCH = 4096
MAX_GROWTH_MB = 200.0
JOB = Path(__file__).with_name("stream_job.py")


def test_streaming_equals_full_batch():
    """The batch-by-batch moments give the full-array values (so streaming loses nothing)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((20_000, FEATURES)) + 3.0
    Y = X[:, ::-1] @ np.diag(np.linspace(0.5, 2, FEATURES)) + rng.standard_normal(X.shape)
    cka, proc = simbench.get_metric("cka"), simbench.get_metric("procrustes_distance")
    acc = cka.accumulator()
    for start in range(0, X.shape[0], BATCH):
        acc.update(X[start : start + BATCH], Y[start : start + BATCH])
    assert relative_error(cka(acc), baselines.linear_cka(X, Y)) <= 1e-10
    assert relative_error(proc(acc), baselines.procrustes_distance(X, Y)) <= 1e-10
    T = simbench.get_alignment("procrustes").fit(acc).T
    assert relative_error(T, baselines.procrustes_alignment(X, Y)) <= 1e-8


def test_streaming_memory(benchmark, recorder, note):
    def job() -> dict:
        cmd = [sys.executable, str(JOB), f"--samples={SAMPLES}", f"--batch={BATCH}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    out = benchmark.pedantic(job, rounds=1, iterations=1)
    growth = out["peak_growth_mb"]
    shape = f"{SAMPLES}x{FEATURES}"
    note(
        f"streaming {shape} (batches of {BATCH}): peak RSS growth {growth:.1f} MB "
        f"[{out['method']}; bar {MAX_GROWTH_MB:.0f} MB; one batch pair = "
        f"{out['batch_arrays_mb']:.0f} MB], total {out['seconds_total']:.1f} s = "
        f"generate {out['seconds_generate']:.1f} s + Moments.update {out['seconds_update']:.1f} s "
        f"+ score {out['seconds_final']:.2f} s; cka {out['cka']:.5f} (population 0.8), "
        f"procrustes_distance {out['procrustes_distance']:.5f} "
        f"(population {out['expected_procrustes_distance']:.5f})"
    )
    if not getattr(benchmark, "disabled", False):
        # the floor of the accumulation: one batch's three products, times the batch count,
        # with the session's timer (CPU time under --benchmark-timer=time.process_time)
        timer = getattr(benchmark, "_timer", time.perf_counter)
        cpu = timer is time.process_time
        rng = np.random.default_rng(0)
        Xb, Yb = rng.standard_normal((BATCH, FEATURES)), rng.standard_normal((BATCH, FEATURES))
        baselines.gemm_floor(Xb, Yb)
        best = math.inf
        for _ in range(5):
            t0 = timer()
            baselines.gemm_floor(Xb, Yb)
            best = min(best, timer() - t0)
        batches = math.ceil(SAMPLES / BATCH)
        update = out["cpu_seconds_update" if cpu else "seconds_update"]
        recorder.add("streaming Moments.update", shape, "simbench", update)
        recorder.add("floor", shape, "floor", best * batches, 5)

    assert out["samples"] == SAMPLES
    assert growth < MAX_GROWTH_MB, f"peak RSS grew by {growth:.1f} MB while streaming"
    # the estimates converge to the population values (sampling error ~ d/n and 1/sqrt(n))
    tol = 0.01 if QUICK else 2e-3
    assert abs(out["cka"] - 0.8) < tol
    assert abs(out["procrustes_distance"] - out["expected_procrustes_distance"]) < tol
    assert out["procrustes_T_error"] < (0.1 if QUICK else 0.02)


BLOCK_FEATURES = 256
BLOCK_SAMPLES = (25_000, 100_000) if QUICK else (100_000, 400_000)


def test_streaming_memory_with_blocks_does_not_grow_with_n(note):
    """Per-block moments (20 blocks) and 4 null cross-moments: the state is
    ``O(B·d²)``, allocated up front; the peak RSS growth while streaming is the same
    (within 20 MB) for 4× more samples."""

    def job(n: int) -> dict:
        cmd = [
            sys.executable,
            str(JOB),
            f"--samples={n}",
            f"--features={BLOCK_FEATURES}",
            f"--batch={BATCH}",
            "--blocks=20",
            "--nulls=4",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    small, large = (job(n) for n in BLOCK_SAMPLES)
    g_small, g_large = small["peak_growth_mb"], large["peak_growth_mb"]
    state_mb = (20 * 3 + 4) * BLOCK_FEATURES**2 * 8 / 2**20
    note(
        f"streaming with 20 blocks + 4 nulls, d={BLOCK_FEATURES}: peak RSS growth "
        f"{g_small:.1f} MB at n={BLOCK_SAMPLES[0]}, {g_large:.1f} MB at n={BLOCK_SAMPLES[1]} "
        f"(block state {state_mb:.0f} MB); cka {large['cka']:.4f} ± {large['cka_stderr']:.4f}, "
        f"z {large['cka_z']:.0f}"
    )
    assert large["samples"] == BLOCK_SAMPLES[1]
    assert abs(g_large - g_small) < 20.0
    assert g_large < MAX_GROWTH_MB
    assert abs(large["cka"] - 0.8) < 0.01 and large["cka_z"] > 10

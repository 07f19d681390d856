"""Stream paired samples through linear CKA and Procrustes in bounded memory; report JSON.

Run as a script (``test_bench_streaming.py`` does so in a fresh subprocess, so that the
peak-RSS measurement belongs to this job alone)::

    python benchmarks/stream_job.py --samples 1000000 --features 512 --batch 4096

``--blocks 20 --nulls 4`` accumulates :class:`simbench.BlockMoments` instead (per-block
moments and derangement-null cross-moments, MATH.md: Uncertainty and chance of one
score) and also scores CKA with its jackknife standard error and ``z``.

Batches ``X ~ N(0, I)``, ``Y = X Q + 0.5 N(0, I)`` (``Q`` a fixed Haar rotation) are
generated on the fly from a seeded generator and dropped after each ``Moments.update``:
the data (8 GB in float64 for 10⁶ × 512 × 2) are never in memory. The peak resident set
(``VmHWM``) is reset just before streaming when the kernel allows it
(``/proc/self/clear_refs``), so its growth is that of the streaming loop alone.

Population values for this model: CKA = d/(√d · 1.25 √d) = 0.8, Procrustes cosine
= d / √(d · 1.25 d) = 1/√1.25 (distance arccos(1/√1.25) ≈ 0.4636), Procrustes map T = Q.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time

import numpy as np


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--blocks", type=int, default=0, help="accumulate BlockMoments with this many blocks"
    )
    parser.add_argument("--nulls", type=int, default=4, help="derangement nulls (with --blocks)")
    args = parser.parse_args(argv)

    import simbench

    n_total, d, b = args.samples, args.features, args.batch
    rng = np.random.default_rng(args.seed)
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    Q *= np.sign(np.diag(R))
    cka = simbench.get_metric("cka")
    procrustes = simbench.get_metric("procrustes_distance")
    align = simbench.get_alignment("procrustes")

    # warm up every code path on a small batch, so one-off allocations are not counted
    warm = cka.accumulator().update(rng.standard_normal((8, d)), rng.standard_normal((8, d)))
    cka(warm), procrustes(warm), align.fit(warm)

    rss_before = _status_kb("VmRSS")
    reset = _reset_peak()
    hwm_before = _status_kb("VmHWM")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    if args.blocks:
        from simbench.numerics.blocks import BlockMoments

        # one "image" per row; every block and null accumulator is allocated by now
        acc = BlockMoments(n_total, args.blocks, args.nulls, args.seed)
    else:
        acc = cka.accumulator()
    t0 = time.perf_counter()
    t_update = cpu_update = 0.0
    done = 0
    while done < n_total:
        m = min(b, n_total - done)
        X = rng.standard_normal((m, d))
        Y = X @ Q
        Y += 0.5 * rng.standard_normal((m, d))
        t1, c1 = time.perf_counter(), time.process_time()
        acc.update(X, Y)
        t_update += time.perf_counter() - t1
        cpu_update += time.process_time() - c1
        done += m
        del X, Y
    t_stream = time.perf_counter() - t0
    t1 = time.perf_counter()
    v_cka, v_proc = cka(acc), procrustes(acc)
    T = align.fit(acc.total() if args.blocks else acc).T
    extra = {}
    if args.blocks:
        s = cka.evaluate(acc, uncertainty={"blocks": args.blocks, "null_pairings": args.nulls})
        extra = {"cka_stderr": s.stderr, "cka_z": s.z, "blocks": args.blocks, "nulls": args.nulls}
    t_final = time.perf_counter() - t1

    hwm_after = _status_kb("VmHWM")
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if hwm_before is not None and hwm_after is not None:
        growth_kb, method = hwm_after - hwm_before, "VmHWM (reset before streaming)"
        if not reset:
            method = "VmHWM minus the pre-streaming peak"
    else:
        growth_kb, method = maxrss_after - maxrss_before, "ru_maxrss"
    return {
        **extra,
        "samples": acc.total().n if args.blocks else acc.n,
        "features": d,
        "batch": b,
        "cka": v_cka,
        "procrustes_distance": v_proc,
        "procrustes_T_error": float(np.linalg.norm(T - Q) / np.linalg.norm(Q)),
        "expected_cka": 0.8,
        "expected_procrustes_distance": math.acos(1 / math.sqrt(1.25)),
        "seconds_total": t_stream + t_final,
        "seconds_update": t_update,
        "cpu_seconds_update": cpu_update,
        "seconds_generate": t_stream - t_update,
        "seconds_final": t_final,
        "rss_before_mb": None if rss_before is None else rss_before / 1024,
        "peak_growth_mb": growth_kb / 1024,
        "peak_after_mb": None if hwm_after is None else hwm_after / 1024,
        "batch_arrays_mb": 2 * b * d * 8 / 2**20,
        "method": method,
    }


if __name__ == "__main__":
    print(json.dumps(main()))

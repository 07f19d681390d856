"""Many-model scoring (issue 11): all pairs × all layer pairs of linear CKA over N networks.

N = 16 random networks × 6 layers, each layer an ``(n, d) = (2000, 256)`` float64
representation of the same probe inputs (a shared latent per layer, so the values are
spread over (0, 1)). ``simbench``: one :func:`simbench.compare_many` call (each
(model, layer) prepared once: its packed centred Gram; one ``n²/2`` dot product per cell).
``baseline``: the same cells scored pair by pair, ``cka(X, Y)`` per cell (what the
Python API costs without precomputation). Bars: ≥ 5× faster, every value equal to 1e-12.

Run: ``pytest benchmarks/test_bench_many_models.py -s -p no:cacheprovider`` (about 2 min
on one core; ``SIMBENCH_BENCH_QUICK=1``: N = 4, n = 400, d = 64 in seconds). Memory: the
data (16·6·n·d float64 = 393 MB) plus the prepared Grams (16·6·n²/2 float64 = 1.5 GB).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from conftest import QUICK

import simbench

N_MODELS, LAYERS, N, D = (4, 6, 400, 64) if QUICK else (16, 6, 2000, 256)
MIN_SPEEDUP = 5.0
TOL = 1e-12


def networks(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """``{model: {layer: (N, D)}}``: per layer a shared 16-d latent, random readouts, noise."""
    rng = np.random.default_rng(seed)
    latents = [rng.standard_normal((N, 16)) for _ in range(LAYERS)]
    return {
        f"net{i}": {
            f"layer{j}": latents[j] @ rng.standard_normal((16, D))
            + rng.uniform(0.5, 3.0) * rng.standard_normal((N, D))
            + 1.0
            for j in range(LAYERS)
        }
        for i in range(N_MODELS)
    }


def pair_by_pair(reps: dict) -> dict[tuple, float]:
    cka = simbench.get_metric("cka")
    out = {}
    for a, b in itertools.combinations(reps, 2):
        for la, lb in itertools.product(reps[a], reps[b]):
            out[(a, b, la, lb)] = cka(reps[a][la], reps[b][lb])
    return out


def test_all_pairs_cka_many_models(recorder, note):
    reps = networks()
    shape = f"N={N_MODELS}x{LAYERS} layers, n={N}, d={D}"
    simbench.compare_many({"a": {"l": reps["net0"]["layer0"][:8, :3]}}, "cka", include_self=True)
    t0 = time.perf_counter()
    df = simbench.compare_many(reps, metrics="cka", layer_pairs="all")
    t_many = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = pair_by_pair(reps)
    t_pairs = time.perf_counter() - t0
    recorder.add("all-pairs linear CKA", shape, "simbench", t_many)
    recorder.add("all-pairs linear CKA", shape, "baseline", t_pairs)
    cells = N_MODELS * (N_MODELS - 1) // 2 * LAYERS**2
    assert len(df) == len(ref) == cells and df["error"].isna().all()
    got = {(r.model_a, r.model_b, r.layer_a, r.layer_b): r.value for r in df.itertuples()}
    worst = max(abs(got[k] - v) for k, v in ref.items())
    spread = (min(ref.values()), max(ref.values()))
    speedup = t_pairs / t_many
    msg = (
        f"all-pairs x all-layer-pairs linear CKA, {shape} ({cells} cells): compare_many "
        f"{t_many:.2f} s, pair by pair {t_pairs:.2f} s, speed-up {speedup:.1f}x "
        f"(bar {MIN_SPEEDUP:.0f}x); max |difference| {worst:.1e} (bar {TOL:.0e}); "
        f"values in [{spread[0]:.3f}, {spread[1]:.3f}]"
    )
    note(msg)
    print("\n" + msg)
    assert worst <= TOL
    assert spread[1] - spread[0] > 0.1, "the benchmark data must give spread-out values"
    if not QUICK:
        assert speedup >= MIN_SPEEDUP, f"compare_many only {speedup:.1f}x faster"

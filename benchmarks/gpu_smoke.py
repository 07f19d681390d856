"""GPU smoke check (issue 11, run by ``benchmarks/gpu_smoke.sh``): every GPU path once.

1. train a factorized VGG-11 (width 0.25) for one epoch on the device (the trainer's own
   ``prepare_data`` + ``train_one_epoch``: device-resident data, bf16 autocast,
   channels-last) and, a second time, streaming batches from pinned host memory;
2. extract and align on the device (``simbench.compare``: trained vs initial network,
   procrustes alignment, bures + cka) and on the CPU, and compare the values;
3. score every representation metric on pooled per-layer outputs with
   ``simbench.compare_many(device=...)`` (prepare on the device for the metrics that
   declare it, ``evaluate`` for the others) against the numpy path on the CPU.

Prints images/s of each stage and each agreement (max |GPU − CPU|). Without a CUDA GPU it
says so and exits 0; ``SIMBENCH_SMOKE_CPU=1`` runs the same steps on the CPU with a
small probe (a dry check of the script's logic; "device" is then the CPU's torch path).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

import simbench
from simbench.metrics.base import Consumes, Metric
from simbench.plugin import Invariance
from simbench.train.config import TrainConfig
from simbench.train.trainer import (
    memory_format_for,
    prepare_data,
    resolve_precision,
    train_one_epoch,
)

#: agreement bars: float64 metric paths; extraction compares a bf16/TF32-free float64
#: forward on both devices, so only reduction order differs
METRIC_TOL = 1e-10
EXTRACT_TOL = 1e-6


def main() -> int:
    dry = bool(os.environ.get("SIMBENCH_SMOKE_CPU"))
    if not torch.cuda.is_available() and not dry:
        print(
            "gpu_smoke: no CUDA GPU on this machine; nothing to check (SIMBENCH_SMOKE_CPU=1 "
            "runs the same steps on the CPU)"
        )
        return 0
    dev = torch.device("cpu" if dry else "cuda")
    print(f"gpu_smoke: device {dev} ({torch.cuda.get_device_name(0) if not dry else 'dry run'})")
    t_all = time.perf_counter()
    data = simbench.get_plugin("dataset", "embedded").load()
    n_train = 512 if dry else len(data.y_train)
    probe_n = 64 if dry else 1000
    ok = True

    # 1. training: device-resident, then streamed from pinned host memory
    cfg = TrainConfig(epochs=1, batch_size=128, device=str(dev), max_train_images=n_train)
    arch = simbench.get_plugin("architecture", "factorized_vgg", width=0.25)
    amp = resolve_precision(cfg.precision, dev)
    mfmt = memory_format_for(dev)
    init = arch.build(data.num_classes, seed=0)
    for placement in ("device", "host"):
        model = arch.build(data.num_classes, seed=0).to(dev, memory_format=mfmt)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        dd = prepare_data(data, dev, n_train, placement=placement)
        t0 = time.perf_counter()
        loss, acc = train_one_epoch(
            model, opt, dd, cfg, seed=0, epoch=0, autocast_dtype=amp, memory_format=mfmt
        )
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(
            f"train ({placement} data): {n_train / dt:,.0f} images/s, loss {loss:.3f}, "
            f"acc {acc:.3f}"
        )
    trained = model.eval()

    # 2. extraction + alignment on the device vs on the CPU (float64 forward on both)
    images = data.x_test[:probe_n]
    kw = {"metrics": ["cka", "bures"], "alignments": ["procrustes"], "batch_size": 64}
    t0 = time.perf_counter()
    on_dev = simbench.compare(trained.double(), init.to(dev).double(), images, **kw)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    on_cpu = simbench.compare(trained.cpu(), init.cpu(), images, **kw)
    diff = float(np.nanmax(np.abs(on_dev.value.to_numpy() - on_cpu.value.to_numpy())))
    ok &= diff <= EXTRACT_TOL
    print(
        f"extract+align+score ({len(on_dev)} rows): {2 * probe_n / dt:,.0f} images/s "
        f"(two networks); max |device - cpu| {diff:.1e} (bar {EXTRACT_TOL:.0e})"
    )

    # 3. every representation metric on pooled layer outputs: those with a device path
    # (Metric.prepare) on the device vs the numpy path; the others (CPU only) once
    reps = {
        name: pooled_outputs(m, images, dev)
        for name, m in (("trained", trained.float()), ("init", init.float()))
    }
    reps_np = {m: {k: v.cpu().numpy() for k, v in layers.items()} for m, layers in reps.items()}
    shifted = {m: {k: v - v.mean(0) for k, v in layers.items()} for m, layers in reps_np.items()}
    names = [
        r.name
        for r in simbench.default_registry().records("metric")
        if simbench.get_metric(r.name).consumes is Consumes.REPRESENTATIONS
        and simbench.get_metric(r.name).input_ndim == 2
    ]
    on_dev = [n for n in names if type(simbench.get_metric(n)).prepare is not Metric.prepare]
    cpu_only = [n for n in names if n not in on_dev]
    t0 = time.perf_counter()
    got = simbench.compare_many(reps, on_dev, layer_pairs="same", device=str(dev))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_dev = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = simbench.compare_many(reps_np, on_dev, layer_pairs="same")
    t_cpu = time.perf_counter() - t0
    # the numpy path's own rounding sensitivity: the same data centred beforehand (for
    # translation-invariant metrics); CCA-type metrics square the condition number
    sens = simbench.compare_many(shifted, on_dev, layer_pairs="same")
    f32 = simbench.compare_many(reps, on_dev, layer_pairs="same", device=str(dev), dtype="float32")
    rows = len(got) // len(on_dev)
    print(
        f"score {len(on_dev)} metrics with a device path x {rows} layer pairs: device "
        f"{t_dev:.2f} s, cpu {t_cpu:.2f} s"
    )
    for name in on_dev:
        sel = (got.metric == name).to_numpy()
        a, b = got.value.to_numpy()[sel], ref.value.to_numpy()[sel]
        c, e = f32.value.to_numpy()[sel], sens.value.to_numpy()[sel]
        both = np.isfinite(a) & np.isfinite(b)
        d64 = float(np.max(np.abs(a - b)[both])) if both.any() else float("nan")
        d32 = float(np.max(np.abs(c - b)[both])) if both.any() else float("nan")
        shift_free = Invariance.TRANSLATION in simbench.get_metric(name).claimed_invariances()
        noise = float(np.nanmax(np.abs(e - b)[both])) if both.any() and shift_free else 0.0
        bar = max(METRIC_TOL, 10.0 * noise)
        good = bool((np.isfinite(a) == np.isfinite(b)).all()) and not d64 > bar
        ok &= good
        print(
            f"  {name:22s} max |device - cpu| {d64:.1e} (bar {bar:.0e}: 1e-10 or 10x the "
            f"cpu path's own rounding {noise:.1e}); float32 {d32:.1e}"
            f"{'' if good else '  FAIL'}"
        )
    t0 = time.perf_counter()
    rest = simbench.compare_many(reps_np, cpu_only, layer_pairs="same")
    print(
        f"  {len(cpu_only)} metrics without a device path scored on the CPU in "
        f"{time.perf_counter() - t0:.1f} s ({int(rest.error.notna().sum())} cell errors): "
        + ", ".join(cpu_only)
    )
    print(f"gpu_smoke: {'ok' if ok else 'FAILED'} in {time.perf_counter() - t_all:.0f} s")
    return 0 if ok else 1


def pooled_outputs(model: torch.nn.Module, images: np.ndarray, dev: torch.device) -> dict:
    """Global-average-pooled outputs of every Conv2d/Linear of ``model`` (float32 forward
    on ``dev``), per layer a float64 ``(n, C)`` tensor on ``dev``."""
    model = model.to(dev)
    layers = {
        n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    }
    out: dict[str, list] = {n: [] for n in layers}

    def hook(name):
        def fn(_m, _i, y):
            out[name].append((y.mean(dim=(2, 3)) if y.ndim == 4 else y).double())

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    with torch.no_grad():
        for s in range(0, len(x), 256):
            model(x[s : s + 256].to(dev))
    for h in handles:
        h.remove()
    return {n: torch.cat(v) for n, v in out.items()}


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# GPU smoke check (issue 11): on a machine with a CUDA GPU, train a factorized VGG for
# one epoch (device-resident and host-streamed data), extract and align on the GPU,
# score every representation metric on the GPU, compare each with the CPU path, print
# images/s and every agreement; under 8 minutes (hard limit below). Without a GPU it
# says so and exits 0. SIMBENCH_SMOKE_CPU=1 runs the same steps on the CPU (dry check).
#
#   benchmarks/gpu_smoke.sh                      # PYTHON=... to choose the interpreter
#   SIMBENCH_SMOKE_CPU=1 benchmarks/gpu_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch, simbench" 2>/dev/null; then
    echo "gpu_smoke: $PY cannot import torch and simbench (set PYTHON=...)" >&2
    exit 2
fi
exec timeout 480 "$PY" benchmarks/gpu_smoke.py

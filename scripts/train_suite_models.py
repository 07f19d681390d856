"""Train a suite's models only (no extraction or scoring), one after the other, in one
process, into the suite's cache (``<cache>/models/<key>``, where ``simbench run`` finds
them), logging each model's wall time and accuracies.

    python scripts/train_suite_models.py benchmarks/suites/reference_cpu.yaml \
        [--only ID ...] [--threads 1] [--cache DIR]

Models already trained are reported and skipped; an interrupted model resumes after its
last completed epoch. ``simbench run`` trains the same models (same keys) in parallel.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite", type=Path)
    p.add_argument("--only", nargs="*", default=None, help="model ids (id or id@seed)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--cache", type=Path, default=None, help="cache folder (default: the suite's)")
    args = p.parse_args(argv)

    import torch

    from simbench.suite import load_suite
    from simbench.train.checkpoint import MODEL_FILE, is_complete, sidecar_path
    from simbench.train.trainer import run_dir, train

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log = logging.getLogger("train_suite_models")
    suite = load_suite(args.suite)
    models_dir = (args.cache or suite.cache_dir) / "models"
    specs = suite.model_specs()
    todo = [
        (mid, spec)
        for mid, spec in specs.items()
        if not isinstance(spec, Path)
        and (args.only is None or mid in args.only or mid.split("@")[0] in args.only)
    ]
    log.info("suite %s: %d models to train into %s", suite.name, len(todo), models_dir)
    for mid, spec in todo:
        rdir = run_dir(spec, models_dir)
        cached = is_complete(rdir / MODEL_FILE)
        t0 = time.perf_counter()
        path = train(spec, models_dir, progress=False)
        seconds = time.perf_counter() - t0
        meta = json.loads(sidecar_path(path).read_text())
        last = meta["history"][-1] if meta.get("history") else {}
        log.info(
            "MODEL %s key %s %s in %.0f s: train acc %.4f test acc %s (%d images x %d epochs)",
            mid,
            spec.key(),
            "cached" if cached else "trained",
            seconds,
            last.get("train_accuracy", float("nan")),
            meta.get("test_accuracy"),
            meta.get("train_images", 0),
            meta.get("epochs", 0),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

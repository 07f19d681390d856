"""``simbench compare CKPT_A CKPT_B``: per-layer aligned-weight and representation metrics."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="compare two checkpoints layer by layer (aligned weights and representations)",
        description=(
            "Align each layer's input representation on a probe set, pull B's weights back "
            "into A's basis and score every layer: weight metrics on the aligned covariances, "
            "streaming representation metrics on the layer outputs."
        ),
    )
    p.add_argument("ckpt_a", help="checkpoint of model A (.safetensors, sidecar or run dir)")
    p.add_argument("ckpt_b", help="checkpoint of model B")
    p.add_argument(
        "--alignment", default="procrustes", help="alignment plugin (default procrustes)"
    )
    p.add_argument(
        "--metrics",
        default="bures,bures_cosine,effective_rank,cka,svcca",
        help="comma-separated metric plugins",
    )
    p.add_argument("--layers", default=None, help="comma-separated layer names (default: all)")
    p.add_argument("--dataset", default=None, help="probe dataset (default: model A's dataset)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="probe split")
    p.add_argument(
        "--probe-images", type=int, default=1000, help="number of probe images (drawn per class)"
    )
    p.add_argument("--positions", type=int, default=16, help="spatial positions per image")
    p.add_argument("--shrinkage", default="gm", help="eigenvalue shrinkage plugin (gm, none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe draw and MC draws")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.set_defaults(func=_cmd_compare)
    return p


def _cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from simbench.compare import compare_models, paired_probe_batches
    from simbench.data.sampling import balanced_indices
    from simbench.train.checkpoint import create_plugin, load_model
    from simbench.train.trainer import resolve_device

    device = resolve_device(args.device)
    try:
        model_a, arch_a, meta_a = load_model(args.ckpt_a, device=device)
        model_b, arch_b, meta_b = load_model(args.ckpt_b, device=device)
        ref = meta_a["spec"]["dataset"]
        name, params = (args.dataset, {}) if args.dataset else (ref["name"], ref.get("params", {}))
        data = create_plugin("dataset", name, params).load()
        images = data.x_test if args.split == "test" else data.x_train
        labels = data.y_test if args.split == "test" else data.strata
        images = images[balanced_indices(labels, args.probe_images, args.seed)]
        batches = paired_probe_batches(
            images, meta_a["normalization"], meta_b["normalization"], device=device
        )
        table, _ = compare_models(
            model_a.double(),
            arch_a,
            model_b.double(),
            arch_b,
            ((a.double(), b.double()) for a, b in batches),
            alignment=args.alignment,
            metrics=[m for m in args.metrics.split(",") if m],
            layers=args.layers.split(",") if args.layers else None,
            shrinkage=args.shrinkage,
            positions=args.positions,
            seed=args.seed,
        )
    except (ValueError, LookupError, FileNotFoundError) as exc:
        print(f"simbench compare: error: {exc}", file=sys.stderr)
        return 2
    print(f"A: {args.ckpt_a}  (test accuracy {_acc(meta_a)})")
    print(f"B: {args.ckpt_b}  (test accuracy {_acc(meta_b)})")
    print(f"probe: {len(images)} {name} {args.split} images, alignment {args.alignment}\n")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="nan"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


def _acc(meta: dict) -> str:
    acc = meta.get("test_accuracy")
    return "?" if acc is None else f"{float(acc):.3f}"

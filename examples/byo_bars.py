"""Issue 10 bars: per-layer CKA of foreign models through the suite path (about 1 min, CPU).

1. ``timm:resnet18`` vs ``torchvision:resnet18`` loaded from one plain torchvision state
   dict (``torch.save(model.state_dict())``, no simbench metadata), same preprocessing:
   every layer's CKA must be 1 (to 1e-6).
2. A simbench-trained VGG (width 1/16, 2 epochs on the embedded images) vs user modules
   passed as ``simbench.run(suite, models=...)``: its own ``nn.Module`` (CKA 1 on the
   layer-matrix diagonal) and a small user CNN (the layer x layer CKA matrix).

Run: ``python examples/byo_bars.py [OUTPUT_FOLDER]`` (default: a temporary folder).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
import torchvision
from torch import nn

import simbench
from simbench.train.checkpoint import load_model
from simbench.train.config import ModelSpec, PluginRef, TrainConfig
from simbench.train.trainer import train

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "crop_pct": 0.875}


class Small(nn.Module):
    """A user's own network (no simbench plugin)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(self.conv1(x).relu()).relu().mean((2, 3)))


def bar_timm_vs_torchvision(out: Path) -> pd.DataFrame:
    torch.manual_seed(0)
    weights = out / "tv_resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), weights)
    entry = {"weights": str(weights), "input_size": 64, "normalization": IMAGENET}
    suite = {
        "name": "timm_vs_torchvision", "output": str(out / "bar1"),
        "models": [
            {"id": "timm", "architecture": "timm:resnet18", **entry},
            {"id": "torchvision", "architecture": "torchvision:resnet18", **entry},
        ],
        "probe": {"images": 64, "batch_size": 32}, "metrics": ["cka"],
    }  # fmt: skip
    return simbench.run(suite, report=False, quiet=True)


def bar_vgg_vs_user(out: Path) -> pd.DataFrame:
    spec = ModelSpec(
        architecture=PluginRef(name="vgg", params={"width": 0.0625}),
        dataset=PluginRef(name="embedded"),
        train=TrainConfig(epochs=2, max_train_images=1024, batch_size=64),
    )
    ckpt = train(spec, out / "models", progress=False)
    net, _, meta = load_model(ckpt)
    norm = {k: meta["normalization"][k] for k in ("mean", "std")}
    torch.manual_seed(0)
    suite = {
        "name": "vgg_vs_user", "output": str(out / "bar2"),
        "models": [{"id": "vgg", "checkpoint": str(ckpt)}],
        "pairs": [["vgg", "same_module"], ["vgg", "small"]],
        "probe": {"images": 64, "batch_size": 32}, "layer_matrix": True, "metrics": ["cka"],
    }  # fmt: skip
    models = {
        "same_module": {"module": net, "normalization": norm},
        "small": {"module": Small(), "normalization": norm},
    }
    return simbench.run(suite, models=models, report=False, quiet=True)


def main(out: Path) -> None:
    pd.set_option("display.width", 160)
    r1 = bar_timm_vs_torchvision(out)
    print("timm:resnet18 vs torchvision:resnet18, same state dict (per-layer CKA):")
    print(r1[["layer_a", "value", "error"]].to_string(index=False))
    print(f"max |1 - CKA| = {(1 - r1.value).abs().max():.3g}\n")
    r2 = bar_vgg_vs_user(out)
    pooled = r2[r2.alignment == "pooled"]
    same = pooled[pooled.model_b == "same_module"]
    diag = same[[b.split(".")[-1] == a for a, b in zip(same.layer_a, same.layer_b, strict=True)]]
    print("simbench-trained VGG vs its nn.Module passed as a user module (diagonal CKA):")
    print(diag[["layer_a", "layer_b", "value"]].to_string(index=False))
    print(f"max |1 - CKA| = {(1 - diag.value).abs().max():.3g}\n")
    small = pooled[pooled.model_b == "small"]
    print("simbench-trained VGG (rows) vs a user CNN (columns), pooled-output CKA:")
    print(
        small.pivot_table(index="layer_a", columns="layer_b", values="value", sort=False).round(3)
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))

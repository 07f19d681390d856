"""Training configuration (GM appendix B.3 defaults) and the model spec it belongs to."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt


class PluginRef(BaseModel):
    """A plugin by name with its parameters, e.g. ``{name: vgg, params: {depth: 11}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


#: TrainConfig fields that do not change the trained weights: not part of ModelSpec.key()
KEYLESS_TRAIN_FIELDS = ("eval_every", "data_placement")
#: fields added after models were trained: part of the key only with a crop other than
#: the default "pad", so the keys of earlier configurations do not change (COORD.md §5)
KEYED_UNLESS_DEFAULT = ("crop", "crop_size", "crop_scale", "crop_ratio", "crop_pct")

#: TrainConfig fields added after models were cached: left out of ModelSpec.key() while they
#: hold these defaults, so the keys of configurations that do not set them are unchanged
#: (COORD.md 5)
KEY_WHEN_SET_TRAIN_FIELDS: dict[str, Any] = {"lr_schedule": "step", "nesterov": False}

#: how ``max_train_images`` draws its subset: per class (:func:`simbench.data.sampling.
#: balanced_indices`). Part of the key of configurations that set ``max_train_images``
#: (earlier versions took a prefix, which gave other images: those keys change).
SUBSET_SAMPLING = "per_class_v1"


class TrainConfig(BaseModel):
    """Training hyper-parameters; defaults are Guth & Ménard appendix B.3.

    SGD, momentum 0.9, lr 0.005 divided by 10 every 30 epochs, 90 epochs, no weight
    decay; horizontal flips and random crops (padding 4 for 32×32 images).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: PositiveInt = 90
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 0.005
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 0.0
    lr_step: PositiveInt = 30
    lr_gamma: PositiveFloat = 0.1
    # "step": lr * lr_gamma ** (epoch // lr_step), set per epoch (GM). "onecycle": per batch,
    # cosine warm-up from lr/25 to lr over the first 30 % of steps, then cosine annealing to
    # lr/25e4 (Smith & Topor 2019; PyTorch OneCycleLR's defaults, momentum kept fixed);
    # lr_step and lr_gamma are then unused.
    lr_schedule: Literal["step", "onecycle"] = "step"
    nesterov: bool = False
    augment: bool = True
    crop_padding: int = Field(4, ge=0)
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU
    save_epochs: tuple[int, ...] = ()  # extra checkpoints (learning dynamics, Raghu Fig. 4)
    # a class-balanced subset of the train split (per class, seeded, the same for every
    # model seed: simbench.data.sampling.balanced_indices), for quick runs
    max_train_images: PositiveInt | None = None
    # evaluate on the test split every N epochs (always after the last epoch and at each
    # save_epochs checkpoint); on a CPU a full test pass can cost as much as an epoch of
    # training. Evaluation leaves the weights unchanged, so this is not part of the key.
    eval_every: PositiveInt = 1
    # where the images live during training: "device" (copied once), "host" (pinned host
    # memory, each batch copied without blocking: datasets larger than the GPU), "auto"
    # (the device when they take at most half its free memory). Same batches and weights
    # either way, so not part of the key.
    data_placement: Literal["auto", "device", "host"] = "auto"
    # GM's ImageNet protocol: "random_resized" crops (torchvision RandomResizedCrop with
    # crop_scale, crop_ratio) resampled to crop_size px, then flips; evaluation on the
    # centred crop_pct square resampled to crop_size. "pad": the padded crop above.
    crop: Literal["pad", "random_resized"] = "pad"
    crop_size: PositiveInt = 224
    crop_scale: tuple[PositiveFloat, PositiveFloat] = (0.08, 1.0)
    crop_ratio: tuple[PositiveFloat, PositiveFloat] = (3 / 4, 4 / 3)
    crop_pct: PositiveFloat = 0.875


class ModelSpec(BaseModel):
    """Everything that determines a trained model: architecture, dataset, seed, training."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    architecture: PluginRef
    dataset: PluginRef
    seed: int = 0
    train: TrainConfig = Field(default_factory=TrainConfig)

    def key(self) -> str:
        """Content address: a hash of every field that can change the weights (device and
        precision included, since bf16 on a GPU gives other weights than fp32 on a CPU;
        ``train.eval_every`` and ``data_placement`` left out; the ``crop_*`` settings only
        with a crop other than "pad"; fields of ``KEY_WHEN_SET_TRAIN_FIELDS`` only when not
        at their default; the subset sampling when ``max_train_images`` is set)."""
        defaults = TrainConfig()
        skip = set(KEYLESS_TRAIN_FIELDS)
        if self.train.crop == defaults.crop:  # the crop_* settings apply to other crops
            skip |= set(KEYED_UNLESS_DEFAULT)
        skip |= {k for k, v in KEY_WHEN_SET_TRAIN_FIELDS.items() if getattr(self.train, k) == v}
        data = self.model_dump(mode="json", exclude={"train": skip})
        if self.train.max_train_images is not None:
            data["train"]["subset_sampling"] = SUBSET_SAMPLING
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

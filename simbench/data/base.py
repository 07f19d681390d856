"""The dataset protocol (hookspec ``simbench_register_datasets``).

A dataset plugin returns an :class:`ImageData`: uint8 images ``(N, H, W, 3)`` and int64
labels for a train and a test split, deterministically from its parameters (seeds
included). Variants (class subsets, random labels) are plugins or parameters too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from simbench.plugin import Plugin


@dataclass(frozen=True)
class ImageData:
    """Images and labels of a train and a test split (numpy, uint8 NHWC / int64).

    ``y_train_original``: the train labels before a variant replaced some
    (``random_labels``), else ``None``; class-balanced train subsets are drawn by these,
    so every label-noise fraction trains on the same images."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    name: str = ""
    meta: dict = field(default_factory=dict)
    y_train_original: np.ndarray | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
                raise ValueError(f"x_{split} must be uint8 (N, H, W, C); got {x.dtype} {x.shape}")
            if y.shape != (x.shape[0],):
                raise ValueError(f"y_{split} must have shape ({x.shape[0]},); got {y.shape}")
        if self.y_train_original is not None and self.y_train_original.shape != self.y_train.shape:
            raise ValueError(
                f"y_train_original must have shape {self.y_train.shape}; "
                f"got {self.y_train_original.shape}"
            )

    @property
    def strata(self) -> np.ndarray:
        """The labels train subsets are balanced over: ``y_train_original`` if set, else
        ``y_train``."""
        return self.y_train if self.y_train_original is None else self.y_train_original

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])


class Dataset(Plugin):
    """Base class: ``load() -> ImageData``."""

    kind: ClassVar[str] = "dataset"

    def load(self) -> ImageData:
        """The data; deterministic for given parameters."""
        raise TypeError(f"{type(self).__name__} must define load()")

    def check(self) -> None:
        """Cheap checks before any compute (files and folders exist), ``ValueError`` with
        the message ``load()`` would give; run when a suite is validated. Default: none."""

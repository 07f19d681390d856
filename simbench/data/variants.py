"""Dataset variants: class subsets and random labels (Guth & Ménard 2024, section 3).

Each variant wraps a *base* dataset given as a reference ``{name: ..., params: {...}}``
(or just its name), resolved through ``simbench.get_plugin("dataset", ...)``, and is
deterministic from its parameters:

- ``class_subset``: the first N classes (GM's CIFAR5 = first 5 of CIFAR-10), or one of
  two disjoint random halves ``a``/``b`` of the classes (GM's ImageNet100a/b);
- ``random_labels``: a fraction of the train labels replaced by uniformly random ones
  drawn from a seed (GM's random-label tasks "a" and "b" are two seeds);
- ``cifar5``: the ``cifar10`` plugin restricted to its first 5 classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from simbench.data.base import Dataset, ImageData
from simbench.data.torchvision_sets import CIFAR10


def _base_ref(base: str | dict[str, Any]) -> dict[str, Any]:
    """Normalise a base reference to ``{"name": str, "params": dict}``; an unknown dataset
    name is an ``UnknownPluginError`` (suggesting close names) here, not at ``load()``."""
    from simbench.registry import default_registry
    from simbench.train.config import PluginRef

    ref = PluginRef(name=base) if isinstance(base, str) else PluginRef.model_validate(base)
    default_registry().resolve("dataset", ref.name)
    return {"name": ref.name, "params": dict(ref.params)}


def load_base(base: dict[str, Any]) -> ImageData:
    """Load the dataset a normalised reference points to."""
    import simbench

    return simbench.get_plugin("dataset", base["name"], **base["params"]).load()


def subset_classes(data: ImageData, keep: Sequence[int], label: str) -> ImageData:
    """Only the images of classes ``keep`` (original indices), relabelled ``0..len(keep)-1``
    in the order given by ``keep``; images stay in their original order."""
    keep = [int(k) for k in keep]
    if len(set(keep)) != len(keep) or not all(0 <= k < data.num_classes for k in keep):
        raise ValueError(f"class indices {keep} must be distinct, in 0..{data.num_classes - 1}")
    lut = np.full(data.num_classes, -1, dtype=np.int64)
    lut[keep] = np.arange(len(keep))
    out: dict[str, np.ndarray] = {}
    for s in ("train", "test"):
        y = lut[getattr(data, f"y_{s}")]
        mask = y >= 0
        out[f"x_{s}"] = getattr(data, f"x_{s}")[mask]
        out[f"y_{s}"] = y[mask]
    meta = {**data.meta, "class_subset": {"label": label, "original_classes": keep}}
    return ImageData(
        **out,
        classes=tuple(data.classes[k] for k in keep),
        name=f"{data.name}[{label}]",
        meta=meta,
    )


def random_halves(num_classes: int, count: int, seed: int) -> tuple[list[int], list[int]]:
    """Disjoint class sets ``a`` and ``b`` of ``count`` classes each: a permutation of the
    classes drawn with ``numpy.random.default_rng(seed)``; ``a`` = its first ``count``
    entries, ``b`` = the next ``count``; each returned in ascending class order."""
    if 2 * count > num_classes:
        raise ValueError(f"count={count}: two disjoint parts need 2*count <= {num_classes} classes")
    perm = np.random.default_rng(seed).permutation(num_classes)
    return sorted(perm[:count].tolist()), sorted(perm[count : 2 * count].tolist())


class ClassSubset(Dataset):
    """A subset of a base dataset's classes: the first N, or random disjoint parts a/b.

    The first ``first`` classes, or part ``a``/``b`` of two disjoint random
    ``count``-class sets drawn with ``seed`` (GM's ImageNet100a/b)."""

    name = "class_subset"

    def __init__(
        self,
        base: str | dict[str, Any],
        first: Annotated[int, Field(ge=1)] | None = None,
        count: Annotated[int, Field(ge=1)] | None = None,
        seed: int = 0,
        part: Literal["a", "b"] = "a",
    ) -> None:
        """Give exactly one of ``first`` (classes ``0..first-1``, labels unchanged) or
        ``count`` (with ``seed`` and ``part``; see :func:`random_halves`). Kept classes are
        relabelled ``0..k-1`` in ascending order of their original index, so class names
        keep their original relative order; images keep their original order."""
        if (first is None) == (count is None):
            raise ValueError("class_subset: give exactly one of first=N or count=N (+ seed, part)")
        self.base = _base_ref(base)
        self.first = first
        self.count = count
        self.seed = seed
        self.part = part

    def classes_of(self, num_classes: int) -> list[int]:
        """Original indices of the kept classes, ascending, for a base with ``num_classes``."""
        if self.first is not None:
            if self.first > num_classes:
                raise ValueError(f"first={self.first} but the base has {num_classes} classes")
            return list(range(self.first))
        assert self.count is not None
        a, b = random_halves(num_classes, self.count, self.seed)
        return a if self.part == "a" else b

    def load(self) -> ImageData:
        data = load_base(self.base)
        if self.first is not None:
            label = f"first={self.first}"
        else:
            label = f"count={self.count},seed={self.seed},part={self.part}"
        return subset_classes(data, self.classes_of(data.num_classes), label)


class RandomLabels(Dataset):
    """A base dataset with a fraction of its train labels replaced by seeded random ones.

    Zhang et al. 2021; GM's random-label tasks a and b are two seeds."""

    name = "random_labels"

    def __init__(
        self,
        base: str | dict[str, Any],
        seed: int,
        fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0,
    ) -> None:
        """With ``rng = numpy.random.default_rng(seed)`` and ``n`` train images:
        ``order = rng.permutation(n)`` then ``r = rng.integers(0, C, n)``; the images
        ``order[:round(fraction * n)]`` get label ``r[i]``, drawn uniformly from all ``C``
        classes (so it equals the true label with probability 1/C). A larger fraction with
        the same seed replaces a superset of images, with the same random labels. Test
        labels are left unchanged (test accuracy then measures the true task). The true labels
        are kept as ``y_train_original``: a ``max_train_images`` subset is balanced over
        them, so every fraction trains on the same images."""
        self.base = _base_ref(base)
        self.seed = seed
        self.fraction = fraction

    def load(self) -> ImageData:
        data = load_base(self.base)
        n, c = len(data.y_train), data.num_classes
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(n)
        random = rng.integers(0, c, size=n, dtype=np.int64)
        k = round(self.fraction * n)
        y = data.y_train.astype(np.int64, copy=True)
        idx = order[:k]
        y[idx] = random[idx]
        meta = {
            **data.meta,
            "random_labels": {"seed": self.seed, "fraction": self.fraction, "replaced": k},
        }
        return ImageData(
            x_train=data.x_train,
            y_train=y,
            x_test=data.x_test,
            y_test=data.y_test,
            classes=data.classes,
            name=f"{data.name}[random_labels:seed={self.seed},fraction={self.fraction:g}]",
            meta=meta,
            y_train_original=data.strata,
        )


class CIFAR5(CIFAR10):
    """CIFAR-10 restricted to its first 5 classes (GM's CIFAR5), labels 0..4 unchanged."""

    name = "cifar5"

    def __init__(self, root: str, download: bool = False) -> None:
        super().__init__(root=root, download=download)

    def load(self) -> ImageData:
        return dataclasses.replace(
            subset_classes(super().load(), range(5), "first=5"), name="cifar5"
        )

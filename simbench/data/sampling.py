"""Class-balanced (stratified) subsets: every subset simbench draws (``max_train_images``,
the probe ``images``) takes images per class, never a prefix that can drop classes.

A prefix of an ImageFolder split is sorted by class (5,000 images of Imagenette cover 6 of
its 10 classes), and a uniform random draw leaves the per-class counts to chance;
:func:`balanced_indices` gives each class ``⌊n/C⌋`` or ``⌈n/C⌉`` images (the classes
that get one more drawn with the seed), a class with fewer images than its share gives
all of them and the rest is shared by the others (water-filling), and the images within
each class are drawn uniformly without replacement with the same seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["balanced_indices", "class_quotas"]


def class_quotas(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """How many of ``n`` images to take from each class with ``counts[c]`` images:
    as equal as the counts allow (water-filling; ties of the remainder drawn with ``rng``).
    ``n`` must be at most ``counts.sum()``."""
    counts = np.asarray(counts, dtype=np.int64)
    if n > counts.sum():
        raise ValueError(f"cannot draw {n} images from {int(counts.sum())}")
    quota = np.zeros_like(counts)
    remaining = int(n)
    while remaining > 0:
        open_ = np.flatnonzero(quota < counts)
        share = remaining // len(open_)
        if share == 0:  # fewer images left than open classes: one more for `remaining` of them
            quota[rng.choice(open_, size=remaining, replace=False)] += 1
            break
        add = np.minimum(share, counts[open_] - quota[open_])
        quota[open_] += add
        remaining -= int(add.sum())
    return quota


def balanced_indices(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-balanced subset of ``n`` of the images labelled ``labels``.

    ``n`` of ``None`` or at least ``len(labels)``: every index (``arange``). Otherwise each
    class gets :func:`class_quotas` images (within ±1 of ``n / C`` whenever every class has
    that many), chosen uniformly without replacement; deterministic in ``(labels, n,
    seed)``. Sorted, so the subset keeps the dataset's order.
    """
    labels = np.asarray(labels).reshape(-1)
    total = len(labels)
    if n is None or n >= total:
        return np.arange(total)
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"a subset needs a positive whole number of images; got {n!r}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    quota = class_quotas(counts, int(n), rng)
    order = np.argsort(inverse, kind="stable")  # indices grouped by class, ascending within
    starts = np.concatenate([[0], np.cumsum(counts)])
    picks = [
        rng.choice(order[starts[c] : starts[c + 1]], size=int(quota[c]), replace=False)
        for c in range(len(classes))
    ]
    return np.sort(np.concatenate(picks))

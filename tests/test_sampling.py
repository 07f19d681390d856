"""Class-balanced subsets (issue #8 item 5): ``max_train_images`` and the probe draw per
class, never a prefix that can drop classes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simbench
from simbench.data.base import ImageData
from simbench.data.sampling import balanced_indices, class_quotas
from simbench.train.config import ModelSpec
from simbench.train.trainer import prepare_data


def shared_data() -> Path:
    env = os.environ.get("SIMBENCH_SHARED_DATA")
    if env:
        return Path(env)
    return Path(simbench.__file__).resolve().parents[1].parent / "shared" / "data"


def assert_balanced(labels: np.ndarray, classes: int, n: int) -> None:
    counts = np.bincount(labels, minlength=classes)
    assert counts.sum() == n
    assert (counts > 0).all(), f"classes dropped: {counts}"
    assert counts.max() - counts.min() <= 1, counts
    assert abs(counts - n / classes).max() < 1


# ---------------------------------------------------------------- the sampler


def test_sorted_labels_give_every_class_not_a_prefix():
    y = np.repeat(np.arange(10), 100)  # an ImageFolder: class after class
    idx = balanced_indices(y, 95, seed=0)
    assert len(idx) == len(set(idx.tolist())) == 95
    assert np.all(np.diff(idx) > 0)  # sorted: dataset order kept
    assert_balanced(y[idx], 10, 95)
    assert not np.array_equal(idx, np.arange(95))  # a prefix would hold 1 class only


def test_deterministic_in_seed_and_different_across_seeds():
    y = np.random.default_rng(0).integers(0, 7, 700)
    a, b, c = (balanced_indices(y, 70, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert_balanced(y[a], 7, 70)


def test_small_classes_give_all_and_the_rest_is_shared():
    y = np.concatenate([np.zeros(3, int), np.ones(50, int), np.full(50, 2)])
    idx = balanced_indices(y, 40, seed=1)
    counts = np.bincount(y[idx], minlength=3)
    # class 0 has 3 < 40/3: all of them; classes 1 and 2 share the other 37 (18/19)
    assert counts[0] == 3 and sorted(counts[1:].tolist()) == [18, 19]


def test_water_filling_quotas():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(class_quotas(np.array([2, 10, 10]), 14, rng), [2, 6, 6])
    q = class_quotas(np.array([5, 5, 5, 5]), 6, rng)
    assert sorted(q.tolist()) == [1, 1, 2, 2]
    np.testing.assert_array_equal(class_quotas(np.array([1, 1]), 2, rng), [1, 1])
    with pytest.raises(ValueError, match="cannot draw"):
        class_quotas(np.array([1, 1]), 3, rng)


def test_everything_or_bad_sizes():
    y = np.arange(5)
    np.testing.assert_array_equal(balanced_indices(y, None), np.arange(5))
    np.testing.assert_array_equal(balanced_indices(y, 9), np.arange(5))
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="positive whole number"):
            balanced_indices(y, bad)


# ---------------------------------------------------------------- the trainer's subset


def _data(y_train: np.ndarray, classes: int, **kw) -> ImageData:
    n = len(y_train)
    x = (np.arange(n) % 251).astype(np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2)
    return ImageData(
        x.repeat(3, 3),
        y_train,
        x[:2].repeat(3, 3),
        y_train[:2],
        tuple(str(c) for c in range(classes)),
        **kw,
    )


def test_max_train_images_is_balanced_and_independent_of_the_model_seed():
    y = np.repeat(np.arange(10), 600)
    d = prepare_data(_data(y, 10), torch.device("cpu"), 5000)
    assert_balanced(d.y_train.numpy(), 10, 5000)
    # images follow their labels (x encodes the index)
    idx = balanced_indices(y, 5000, 0)
    np.testing.assert_array_equal(d.x_train[:, 0, 0, 0].numpy(), idx % 251)


def test_random_labels_subsets_hold_the_same_images_for_every_fraction():
    base = {"name": "embedded"}
    ys, xs = [], []
    for fraction in (0.0, 0.5, 1.0):
        data = simbench.get_plugin(
            "dataset", "random_labels", base=base, seed=1, fraction=fraction
        ).load()
        np.testing.assert_array_equal(data.strata, data.y_train_original)
        d = prepare_data(data, torch.device("cpu"), 1000)
        xs.append(d.x_train)
        ys.append(d.y_train.numpy())
    assert all(torch.equal(xs[0], x) for x in xs[1:])
    assert_balanced(ys[0], 10, 1000)  # fraction 0: the true labels, balanced
    assert (ys[2] != ys[0]).mean() > 0.8  # fraction 1: labels redrawn (9/10 differ)


def test_imagefolder_prefix_would_drop_classes_subset_does_not(tmp_path):
    # an ImageFolder tree is read class after class: 10 classes x 520 train images
    rng = np.random.default_rng(0)
    root = tmp_path / "tree"
    tile = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    for c in range(10):
        folder = root / "train" / f"c{c}"
        folder.mkdir(parents=True)
        for i in range(520):
            Image.fromarray(tile).save(folder / f"{i:04d}.png")
        (root / "val" / f"c{c}").mkdir(parents=True)
        Image.fromarray(tile).save(root / "val" / f"c{c}" / "0.png")
    data = simbench.get_plugin(
        "dataset", "imagefolder", root=str(root), size=None, cache_dir=str(tmp_path / "cache")
    ).load()
    assert len(set(data.y_train[:5000].tolist())) == 10  # 5000 of 5200: prefix keeps 10
    assert np.bincount(data.y_train[:5000]).min() == 320  # ... but not balanced
    d = prepare_data(data, torch.device("cpu"), 5000)
    assert_balanced(d.y_train.numpy(), 10, 5000)
    d = prepare_data(data, torch.device("cpu"), 2600)  # prefix: 5 of 10 classes
    assert len(set(data.y_train[:2600].tolist())) == 5
    assert_balanced(d.y_train.numpy(), 10, 2600)


def test_npz_cifar10_5000_subset_has_every_class():
    src = shared_data() / "cifar10_jpeg.npz"
    if not src.is_file():
        pytest.skip(f"{src} absent")
    data = simbench.get_plugin("dataset", "npz", path=str(src)).load()
    d = prepare_data(data, torch.device("cpu"), 5000)
    assert_balanced(d.y_train.numpy(), 10, 5000)


def test_embedded_subset_has_every_class():
    data = simbench.get_plugin("dataset", "embedded").load()
    d = prepare_data(data, torch.device("cpu"), 1234)
    assert_balanced(d.y_train.numpy(), 10, 1234)


# ---------------------------------------------------------------- probe sets


def test_probe_images_are_balanced_per_class():
    from simbench.runner.stages import ProbeConfig, probe_data

    probe = ProbeConfig("embedded", {}, "test", 95, 0, None, 64)
    images, labels = probe_data(probe)
    assert images.shape == (95, 32, 32, 3)
    assert_balanced(labels, 10, 95)
    train = ProbeConfig("embedded", {}, "train", 1234, 5, None, 64)
    assert_balanced(probe_data(train)[1], 10, 1234)


# ---------------------------------------------------------------- cache keys


SPEC = {"architecture": {"name": "vgg"}, "dataset": {"name": "embedded"}, "seed": 3}


def test_keys_of_configs_without_a_subset_are_unchanged():
    # golden key computed by the code before class-balanced subsets and one-cycle existed
    spec = ModelSpec.model_validate({**SPEC, "train": {"epochs": 2}})
    assert spec.key() == "f3e9ab579b3120cb"


def test_keys_of_subset_configs_change_and_new_options_enter_when_set():
    old_prefix_key = "193e920c7b64bb9c"  # the same spec trained on a prefix (before)
    spec = ModelSpec.model_validate({**SPEC, "train": {"epochs": 2, "max_train_images": 500}})
    assert spec.key() != old_prefix_key
    keys = {
        ModelSpec.model_validate({**SPEC, "train": {"epochs": 2, **t}}).key()
        for t in ({}, {"lr_schedule": "onecycle"}, {"nesterov": True})
    }
    assert len(keys) == 3

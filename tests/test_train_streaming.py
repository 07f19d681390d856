"""Training from host memory (issue 11): batches streamed from (pinned) host memory give
the weights of the device-resident data path, and the key does not change."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import simbench.registry
from simbench.train.trainer import prepare_data
from tests import test_train as tt


@pytest.fixture(autouse=True)
def tiny_registry(monkeypatch: pytest.MonkeyPatch) -> simbench.registry.Registry:
    reg = simbench.registry.Registry(extra=[sys.modules[tt.__name__]])
    monkeypatch.setattr(simbench.registry, "default_registry", lambda: reg)
    return reg


def test_host_placement_gives_the_same_weights(tmp_path: Path) -> None:
    dev = tt.train(tt.tiny_spec(epochs=2, data_placement="device"), tmp_path / "d", progress=False)
    host = tt.train(tt.tiny_spec(epochs=2, data_placement="host"), tmp_path / "h", progress=False)
    tt.assert_identical(tt.weights(dev), tt.weights(host))
    # a field that does not change the weights is not part of the key (COORD.md §5)
    assert tt.tiny_spec(data_placement="host").key() == tt.tiny_spec().key()


def test_prepare_data_placement() -> None:
    data = simbench.registry.default_registry().create("dataset", "tiny_test_data").load()
    cpu = torch.device("cpu")
    host = prepare_data(data, cpu, placement="host")
    on_dev = prepare_data(data, cpu, placement="device")
    assert host.streamed and not on_dev.streamed
    assert prepare_data(data, cpu).streamed is False  # auto: the CPU is the host
    assert torch.equal(host.x_train, on_dev.x_train)
    np.testing.assert_array_equal(host.mean.numpy(), on_dev.mean.numpy())
    with pytest.raises(ValueError, match="placement"):
        prepare_data(data, cpu, placement="gpu")  # type: ignore[arg-type]


# -- random-resized crop (GM ImageNet-224 protocol) ---------------------------------------
def test_rrc_boxes_follow_torchvision_rules() -> None:
    from simbench.train.augment import rrc_boxes

    gen = torch.Generator().manual_seed(0)
    b = rrc_boxes(4000, 64, 48, (0.08, 1.0), (3 / 4, 4 / 3), gen).double()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= 48).all() and (b[:, 3] <= 64).all()
    assert torch.equal(w, w.round()) and torch.equal(h, h.round())  # whole pixels
    frac = w * h / (64 * 48)
    assert frac.min() >= 0.07 and frac.max() <= 1.0
    # the distribution of torchvision's own get_params (refusals of boxes that do not fit
    # make it smaller than E[U(0.08, 1)] = 0.54 on a non-square image)
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    img = torch.zeros(3, 64, 48)
    tv = [RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)]
    tv_frac = np.array([hh * ww / (64 * 48) for _, _, hh, ww in tv])
    assert abs(float(frac.mean()) - tv_frac.mean()) < 0.02
    assert abs(float(frac.std()) - tv_frac.std()) < 0.02
    r = w / h
    assert r.min() >= 0.7 and r.max() <= 1.4
    again = rrc_boxes(4000, 64, 48, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    assert torch.equal(again.double(), b)
    # nothing fits: torchvision's fallback, the centred crop with the ratio clamped
    f = rrc_boxes(5, 8, 8, (0.9, 1.0), (10.0, 11.0), gen)
    assert torch.equal(f, torch.tensor([[0.0, 3.0, 8.0, 4.0]], dtype=f.dtype).expand(5, 4))


def test_resample_keeps_constant_and_linear_images() -> None:
    from simbench.train.augment import center_resize, random_resized_crop

    x = torch.full((3, 3, 40, 40), 77, dtype=torch.uint8)
    out = random_resized_crop(x, 16, torch.Generator().manual_seed(1))
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.uint8 and (out == 77).all()
    ramp = (torch.arange(40, dtype=torch.float32) * 4).expand(1, 3, 40, 40).to(torch.uint8)
    # the centred 0.875 square of a 40 px ramp at its own size (35 px) spans pixel edges
    # 2.5..37.5: output k is centred at 3 + k, i.e. at pixel index 2.5 + k, value 4 (2.5 + k)
    mid = center_resize(ramp, 35, 0.875)[0, 0, 0].float().numpy()
    np.testing.assert_allclose(mid[1:-1], 4 * (np.arange(1, 34) + 2.5), atol=0.5)


def test_training_with_random_resized_crops(tmp_path: Path) -> None:
    spec = tt.tiny_spec(epochs=1, crop="random_resized", crop_size=12)
    assert spec.key() != tt.tiny_spec(epochs=1).key()
    assert tt.tiny_spec(epochs=1, crop_size=12).key() == tt.tiny_spec(epochs=1).key()
    path = tt.train(spec, tmp_path, progress=False)
    meta = __import__("json").loads(tt.sidecar_path(path).read_text())
    assert meta["image_size"] == 12 and meta["history"][-1]["test_accuracy"] is not None

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

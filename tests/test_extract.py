"""Extraction: streaming moments equal full-matrix extraction; deterministic positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simbench
from simbench.extract import (
    LayerPair,
    channel_samples,
    collect_activations,
    image_batches,
    pair_layers,
    probe_indices,
    stream_moments,
    stream_moments_at,
)
from simbench.numerics.moments import Moments


@pytest.fixture(scope="module")
def two_models():
    arch = simbench.get_plugin("architecture", "vgg", width=0.125)
    return arch, arch.build(10, seed=0).double(), arch.build(10, seed=1).double()


@pytest.fixture(scope="module")
def images():
    return simbench.get_plugin("dataset", "embedded").load().x_test[:96]


def _batches(images, bs=32):
    return [x.double() for x in image_batches(images, [0.5] * 3, [0.25] * 3, bs)]


@pytest.mark.parametrize("positions", [None, 5])
def test_streaming_equals_full_matrices(two_models, images, positions):
    arch, ma, mb = two_models
    pairs = pair_layers(arch.layers(ma), arch.layers(mb))
    batches = _batches(images)
    streamed = stream_moments(ma, mb, pairs, batches, where="output", positions=positions, seed=3)
    acts_a = collect_activations(ma, arch.layers(ma), batches, positions=positions, seed=3)
    acts_b = collect_activations(mb, arch.layers(mb), batches, positions=positions, seed=3)
    for p in pairs:
        full = Moments.from_arrays(acts_a[p.a.name], acts_b[p.b.name])
        got = streamed[p.name]
        assert got.n == full.n
        for attr in ("sxx", "syy", "sxy"):
            ref = getattr(full, attr)
            np.testing.assert_allclose(
                getattr(got, attr), ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max()
            )


def test_one_pass_at_two_sites_equals_two_passes(two_models, images):
    arch, ma, mb = two_models
    pairs = pair_layers(arch.layers(ma), arch.layers(mb), ["conv2", "fc"])
    both = stream_moments_at(ma, mb, pairs, _batches(images), positions=4)
    alone = stream_moments(ma, mb, pairs, _batches(images), where="input", positions=4)
    for name in ("conv2", "fc"):
        np.testing.assert_array_equal(both["input"][name].sxy, alone[name].sxy)
    # the input of conv2 is the output of block 1: a different site, different moments
    assert both["output"]["conv2"].d_x != both["input"]["conv2"].d_x


def test_input_site_is_the_layer_input(two_models, images):
    arch, ma, mb = two_models
    pairs = pair_layers(arch.layers(ma), arch.layers(mb), ["conv1"])
    m = stream_moments(ma, mb, pairs, _batches(images), where="input", positions=None)["conv1"]
    x = torch.cat(_batches(images))  # conv1 reads the images themselves in both models
    flat = x.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    ref = Moments.from_arrays(flat, flat)
    np.testing.assert_allclose(m.sxy, ref.sxy, rtol=1e-10)
    np.testing.assert_allclose(m.sxy, m.sxx, rtol=1e-12)


def test_channel_samples_positions_are_deterministic_and_shared():
    act = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    a = channel_samples(act, 5, seed=1, batch_index=0)
    b = channel_samples(act + 1000, 5, seed=1, batch_index=0)
    assert a.shape == (10, 3)
    np.testing.assert_array_equal(a + 1000, b)  # the same positions for another network
    c = channel_samples(act, 5, seed=2, batch_index=0)
    assert not torch.equal(a, c)
    # every sample is a real position: its channels are a column of the activation
    cols = act.permute(0, 2, 3, 1).reshape(2, 16, 3)
    for i, row in enumerate(a):
        assert any(torch.equal(row, col) for col in cols[i // 5])
    # positions >= H·W keeps every position in order
    assert torch.equal(channel_samples(act, 99, 0, 0), act.permute(0, 2, 3, 1).reshape(32, 3))


def test_pairing_and_probe_errors(two_models):
    arch, ma, mb = two_models
    with pytest.raises(ValueError, match="not in both"):
        pair_layers(arch.layers(ma), arch.layers(mb), ["conv99"])
    assert [p.name for p in pair_layers(arch.layers(ma), arch.layers(mb))][:2] == ["conv1", "conv2"]
    assert LayerPair(arch.layers(ma)[0], arch.layers(mb)[1]).name == "conv1~conv2"
    idx = probe_indices(100, 10, seed=4)
    assert len(set(idx)) == 10 and np.array_equal(idx, probe_indices(100, 10, seed=4))
    with pytest.raises(ValueError, match="at least one"):
        probe_indices(100, 0, 0)

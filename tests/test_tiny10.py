"""The ``tiny10`` architecture (Kornblith et al. 2019, Tiny-10): structure, layer specs,
init variances, width, seeds, errors. CPU only."""

from __future__ import annotations

import math

import pytest
import torch

import simbench

X32 = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))

# (kernel, stride, padding, out channels) written out from the paper's table
PAPER = [
    (3, 1, 1, 16),
    (3, 1, 1, 16),
    (3, 2, 1, 32),
    (3, 1, 1, 32),
    (3, 1, 1, 32),
    (3, 2, 1, 64),
    (3, 1, 0, 64),
    (1, 1, 0, 64),
]


def arch(**params):
    return simbench.get_plugin("architecture", "tiny10", **params)


def test_registered_and_listed():
    assert "tiny10" in set(simbench.list_plugins("architecture")["name"])


def test_structure_follows_the_paper_table():
    a = arch()
    model = a.build(10, seed=0)
    convs = [model.get_submodule(f"features.conv{l}") for l in range(1, 9)]
    got = [(c.kernel_size[0], c.stride[0], c.padding[0], c.out_channels) for c in convs]
    assert got == PAPER
    assert all(c.bias is None for c in convs)
    # conv -> BN -> ReLU after every conv, in that order
    names = [n for n, _ in model.features.named_children()]
    assert names == [f"{k}{l}" for l in range(1, 9) for k in ("conv", "bn", "relu")]
    assert all(
        isinstance(model.get_submodule(f"features.bn{l}"), torch.nn.BatchNorm2d)
        for l in range(1, 9)
    )
    # 32 -> 32 -> 32 -> 16 -> 16 -> 16 -> 8 -> 6 (valid) -> 6 (1x1); global average pool
    assert a.map_sizes() == [32, 32, 16, 16, 16, 8, 6, 6]
    sizes = []
    hooks = [c.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for c in convs]
    model.eval()
    with torch.no_grad():
        out = model(X32)
    for h in hooks:
        h.remove()
    assert sizes == a.map_sizes()
    assert out.shape == (3, 10)
    # parameters: convs (no bias) + BN (affine) + fc (with bias), counted independently
    cin = [3] + [c for *_, c in PAPER[:-1]]
    n = sum(k * k * i * o + 2 * o for (k, _, _, o), i in zip(PAPER, cin, strict=True))
    assert sum(p.numel() for p in model.parameters()) == n + 64 * 10 + 10


def test_layer_specs_names_shapes_and_init_variances():
    a = arch()
    model = a.build(7, seed=0)
    specs = a.layers(model)
    assert [s.name for s in specs] == [f"conv{l}" for l in range(1, 9)] + ["fc"]
    assert [s.kind for s in specs] == ["conv"] * 8 + ["linear"]
    cin = [3] + [c for *_, c in PAPER[:-1]]
    for s, (k, _, _, o), i in zip(specs[:8], PAPER, cin, strict=True):
        assert s.input_module == s.weight_module == f"features.{s.name}"
        assert s.weight_shape == (o, i, k, k)
        # PyTorch default kaiming_uniform(a=sqrt 5): Var = 1/(3 fan_in)
        assert s.init_variance == pytest.approx(1 / (3 * i * k * k))
        w = s.weight(model)
        assert w.shape == s.weight_shape
    assert specs[-1].weight_shape == (7, 64)
    assert specs[-1].init_variance == pytest.approx(1 / (3 * 64))
    # the empirical variance of the widest conv's init matches (8·9·64·64 ≈ 37k draws)
    w = specs[6].weight(model)
    assert w.var().item() == pytest.approx(specs[6].init_variance, rel=0.05)


@pytest.mark.parametrize(
    "width, expect",
    [
        (0.5, [8, 8, 16, 16, 16, 32, 32, 32]),
        (2.0, [32, 32, 64, 64, 64, 128, 128, 128]),
        (0.01, [1] * 8),
    ],
)
def test_width_multiplier(width, expect):
    a = arch(width=width)
    assert a.channels() == expect
    model = a.build(4, seed=1)
    model.eval()
    with torch.no_grad():
        assert model(X32).shape == (3, 4)
    assert a.layers(model)[-1].weight_shape == (4, expect[-1])


def test_seeds_are_bit_reproducible_and_distinct():
    a = arch()
    s0, s0b, s1 = (a.build(10, seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(s0[k], s0b[k]) for k in s0)
    assert not torch.equal(s0["features.conv1.weight"], s1["features.conv1.weight"])


def test_other_input_sizes_and_channels():
    a = arch(input_size=64, in_channels=1)
    assert a.map_sizes() == [64, 64, 32, 32, 32, 16, 14, 14]
    model = a.build(3, seed=0)
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"width": 0}, "positive finite"),
        ({"width": math.inf}, "positive finite"),
        ({"width": 100}, "at most"),
        ({"in_channels": 0}, "in_channels"),
        ({"input_size": 8}, "input_size"),
    ],
)
def test_bad_parameters_are_value_errors(params, match):
    with pytest.raises(ValueError, match=match):
        arch(**params)


def test_models_pickle_by_reference():
    import pickle

    model = arch().build(10, seed=0)
    clone = pickle.loads(pickle.dumps(model))
    model.eval()
    clone.eval()
    with torch.no_grad():
        assert torch.equal(model(X32), clone(X32))

"""Architecture plugins (issue #3): vgg, factorized_vgg, timm; filter banks; the hidden-channel
permutation symmetry. CPU only, small widths."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import simbench
from simbench.models.filters import filter_bank, gaussian_eigenfilters
from simbench.models.vgg import permute_hidden_channels

# VGG-11 conv channels (Simonyan & Zisserman config A), written out independently
VGG11 = [64, 128, 256, 256, 512, 512, 512, 512]
X32 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def arch(name: str, **params):
    return simbench.get_plugin("architecture", name, **params)


def out_shape(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    model.eval()
    with torch.no_grad():
        return tuple(model(x).shape)


# -- building and forward passes ------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params",
    [
        ("vgg", {"width": 1 / 16}),
        ("vgg", {"width": 1 / 16, "depth": 13, "kernel_size": 5}),
        ("vgg", {"width": 1 / 16, "depth": 16, "bias": True, "bn_after_relu": False}),
        ("vgg", {"width": 1 / 16, "depth": 19, "kernel_size": 7, "batchnorm": False}),
        ("vgg", {"width": 1 / 16, "linear_classifier": False, "bn_affine": True}),
        ("factorized_vgg", {"width": 1 / 16}),
        ("factorized_vgg", {"width": 1 / 16, "depth": 13, "kernel_size": 5, "n_filters": 3}),
        ("factorized_vgg", {"width": 1 / 16, "bias": True, "linear_classifier": False}),
        ("factorized_vgg", {"width": 1 / 16, "kernel_size": 7, "filters": "gaussian:2.0"}),
    ],
)
def test_vgg_family_builds_and_runs(name, params):
    a = arch(name, **params)
    model = a.build(7, seed=0)
    assert out_shape(model, X32) == (2, 7)
    depth = params.get("depth", 11)
    n_conv = {11: 8, 13: 10, 16: 13, 19: 16}[depth]
    heads = ["fc"] if params.get("linear_classifier", True) else ["fc1", "fc2", "fc3"]
    assert [s.name for s in a.layers(model)] == [f"conv{i}" for i in range(1, n_conv + 1)] + heads


def test_vgg224_mlp_head_reads_the_flattened_7x7_map():
    a = arch("vgg", width=1 / 16, input_size=224, linear_classifier=False)
    model = a.build(5, seed=0)
    fc1 = model.get_submodule("classifier.fc1")
    assert fc1.in_features == 32 * 7 * 7 and fc1.out_features == 256  # 4096/16 hidden units
    assert out_shape(model, torch.randn(1, 3, 224, 224)) == (1, 5)


def test_vgg_channels_pools_and_spatial_sizes():
    a = arch("vgg", width=0.25)
    assert a.channels() == [c // 4 for c in VGG11]
    assert arch("vgg", width=0.3).channels()[0] == 19  # 64·0.3 = 19.2 -> 19
    assert arch("vgg", width=0.0078125).channels() == [1, 1, 2, 2, 4, 4, 4, 4]  # half-up, >=1
    assert a.pools_after() == [1, 2, 4, 6, 8]
    assert arch("vgg", depth=16).pools_after() == [2, 4, 7, 10, 13]
    # at 32x32 conv1..conv8 see 32, 16, 8, 8, 4, 4, 2, 2 (GM: only 6 layers spatially relevant)
    model = a.build(10, seed=0).eval()
    sizes = {}
    for spec in a.layers(model)[:-1]:
        mod = model.get_submodule(spec.input_module)
        mod.register_forward_pre_hook(lambda m, i, n=spec.name: sizes.update({n: i[0].shape[-1]}))
    with torch.no_grad():
        model(X32)
    assert [sizes[f"conv{i}"] for i in range(1, 9)] == [32, 16, 8, 8, 4, 4, 2, 2]


def test_gm_defaults_no_bias_bn_after_relu_without_affine():
    a = arch("vgg", width=1 / 16)
    model = a.build(10)
    names = list(dict(model.features.named_children()))
    assert names[:4] == ["conv1", "relu1", "bn1", "pool1"]
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert model.classifier.fc.bias is None
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 8 and all(not bn.affine for bn in bns)
    classic = arch("vgg", width=1 / 16, bn_after_relu=False, batchnorm=True).build(10)
    assert list(dict(classic.features.named_children()))[:3] == ["conv1", "bn1", "relu1"]
    bare = arch("vgg", width=1 / 16, batchnorm=False).build(10)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bare.modules())


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("vgg", {"width": 0.0}, "width"),
        ("vgg", {"depth": 12}, "depth"),
        ("vgg", {"kernel_size": 4}, "kernel_size"),
        ("vgg", {"input_size": 64}, "input_size"),
        ("factorized_vgg", {"n_filters": 10}, "n_filters"),
        ("factorized_vgg", {"filters": "gabor"}, "unknown filter bank"),
        ("factorized_vgg", {"filters": "learned:/nonexistent.safetensors"}, "existing file"),
        ("factorized_vgg", {"filters": "gaussian:wide"}, "number"),
    ],
)
def test_bad_parameters_are_value_errors(name, params, match):
    with pytest.raises(ValueError, match=match):
        arch(name, **params).build(10)


def test_models_pickle_by_reference():
    import pickle

    import simbench.models.vgg as vgg_module

    model = arch("factorized_vgg", width=1 / 16).build(10, seed=0)
    assert type(model) is vgg_module.VGGNet
    copy = pickle.loads(pickle.dumps(model))
    assert all(torch.equal(v, copy.state_dict()[k]) for k, v in model.state_dict().items())


# -- seeds ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vgg", "factorized_vgg"])
def test_seeds_are_bit_reproducible_and_distinct(name):
    a = arch(name, width=1 / 8)
    s0, s0b, s1 = (a.build(10, seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(s0[k], s0b[k]) for k in s0)
    trained = [k for k in s0 if k.endswith("weight") and ".dw" not in k]
    assert all(not torch.equal(s0[k], s1[k]) for k in trained)


def test_factorized_trainable_init_does_not_depend_on_the_bank():
    # the frozen convs draw no random numbers: same seed and K -> same trainable weights
    a = arch("factorized_vgg", width=1 / 8).build(10, seed=3).state_dict()
    b = arch("factorized_vgg", width=1 / 8, kernel_size=5, filters="gaussian:0.7")
    b = b.build(10, seed=3).state_dict()
    trainable = [k for k in a if ".pw" in k or "fc" in k]
    assert len(trainable) == 9 and all(torch.equal(a[k], b[k]) for k in trainable)
    assert a["features.dw2.weight"].shape[-1] == 3 and b["features.dw2.weight"].shape[-1] == 5


# -- layer specs ---------------------------------------------------------------------------
def fan_in_default_var(fan_in: int) -> float:
    bound = math.sqrt(2 / (1 + 5)) * math.sqrt(3 / fan_in)  # kaiming_uniform(a=√5)
    return bound**2 / 3


def test_vgg_layer_specs():
    a = arch("vgg", width=0.5, kernel_size=5)
    model = a.build(10, seed=0)
    specs = a.layers(model)
    assert len({s.name for s in specs}) == len(specs)
    c_in = [3] + [c // 2 for c in VGG11[:-1]]
    for l, spec in enumerate(specs[:-1]):
        assert spec.input_module == spec.weight_module == f"features.conv{l + 1}"
        assert spec.kind == "conv" and not spec.frozen
        assert spec.weight_shape == (VGG11[l] // 2, c_in[l], 5, 5)
        assert spec.weight(model).shape == spec.weight_shape
        assert spec.init_variance == pytest.approx(1 / (3 * c_in[l] * 25), rel=1e-12)
        assert spec.init_variance == pytest.approx(fan_in_default_var(c_in[l] * 25), rel=1e-12)
    fc = specs[-1]
    assert (fc.name, fc.kind, fc.weight_shape) == ("fc", "linear", (10, 256))
    assert fc.init_variance == pytest.approx(1 / (3 * 256), rel=1e-12)
    # the empirical variance of a large fresh layer (256·256·25 = 1.6M weights) matches
    w = specs[7].weight(model).double()
    assert float(w.pow(2).mean()) == pytest.approx(specs[7].init_variance, rel=0.01)


def test_factorized_layer_specs_put_the_input_channel_on_axis_1():
    a = arch("factorized_vgg", width=0.5)
    model = a.build(10, seed=0)
    specs = a.layers(model)
    K = 10
    assert a.K == K and [s.name for s in specs] == [f"conv{i}" for i in range(1, 9)] + ["fc"]
    c_in = [3] + [c // 2 for c in VGG11[:-1]]
    for l, spec in enumerate(specs[:-1]):
        assert spec.input_module == f"features.dw{l + 1}"
        assert spec.weight_module == f"features.pw{l + 1}"
        assert spec.weight_shape == (VGG11[l] // 2, c_in[l], K, 1)
        assert spec.init_variance == pytest.approx(1 / (3 * K * c_in[l]), rel=1e-12)
        W = model.get_submodule(spec.weight_module).weight
        V = spec.weight(model)
        o, c, j = VGG11[l] // 2 - 1, c_in[l] - 1, 3
        assert V[o, c, j, 0] == W[o, c * K + j, 0, 0]
    w = specs[7].weight(model).double()  # 256 × 2560 weights
    assert float(w.pow(2).mean()) == pytest.approx(specs[7].init_variance, rel=0.01)


def test_grouped_conv_output_c_times_K_plus_j_is_filter_j_of_input_channel_c():
    a = arch("factorized_vgg", width=1 / 16)
    model = a.build(10, seed=0)
    dw = model.get_submodule("features.dw2")  # 4 input channels
    bank = a.filter_bank().float()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = dw(x)
    for c in range(4):
        for j in range(10):
            ref = F.conv2d(x[:, c : c + 1], bank[j][None, None], padding=1)
            torch.testing.assert_close(y[:, c * 10 + j : c * 10 + j + 1], ref)


# -- factorized VGG: parameter count, frozen filters ---------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_factorized_trainable_parameter_count_formula(bias):
    width, K, classes = 0.25, 10, 10
    c_out = [c // 4 for c in VGG11]
    c_in = [3, *c_out[:-1]]
    expected = sum(o * K * i for o, i in zip(c_out, c_in, strict=True)) + c_out[-1] * classes
    if bias:
        expected += sum(c_out) + classes
    model = arch("factorized_vgg", width=width, bias=bias).build(classes)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == sum(K * i * 9 for i in c_in)
    if not bias:
        assert expected == 641_760  # width-1/4 VGG-11, 10 classes (reported figure)


def test_frozen_filters_are_the_bank_and_stay_bit_identical_under_sgd():
    a = arch("factorized_vgg", width=1 / 16)
    model = a.build(10, seed=0)
    bank = a.filter_bank()
    assert torch.allclose(bank[5:], -bank[:5]) and bank.dtype == torch.float64
    for l, c in enumerate([3, 4, 8, 16, 16, 32, 32, 32], start=1):
        dw = model.get_submodule(f"features.dw{l}")
        assert not dw.weight.requires_grad and dw.bias is None and dw.groups == c
        assert torch.equal(dw.weight, bank.float().unsqueeze(1).repeat(c, 1, 1, 1))
        assert f"features.dw{l}.weight" in model.state_dict()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(3):
        x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    after = model.state_dict()
    for k in before:
        if ".dw" in k:
            assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["features.pw3.weight"], after["features.pw3.weight"])


# -- filter banks --------------------------------------------------------------------------
def gaussian_cov(k: int, ell: float) -> np.ndarray:
    """Cov[(i,j),(i',j')] = exp(-|p - p'|²/(2ℓ²)), written directly over the k² grid points."""
    p = np.array([(i, j) for i in range(k) for j in range(k)], dtype=float)
    d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * ell**2))


@pytest.mark.parametrize("k", [3, 5, 7])
def test_gaussian_bank_is_the_leading_orthonormal_eigenbasis(k):
    n = 9
    f = gaussian_eigenfilters(k, n)
    Fm = f.reshape(n, k * k)
    np.testing.assert_allclose(Fm @ Fm.T, np.eye(n), atol=1e-12)
    C = gaussian_cov(k, k / 4)
    lam = np.linalg.eigvalsh(C)[::-1][:n]
    rayleigh = np.einsum("ni,ij,nj->n", Fm, C, Fm)
    np.testing.assert_allclose(C @ Fm.T, Fm.T * rayleigh, atol=1e-12)  # eigenvectors
    np.testing.assert_allclose(rayleigh, lam, rtol=1e-12)  # the leading ones, in order
    blob, dx, dy, dxy, lap = f[:5]
    assert (blob > 0).all()
    np.testing.assert_allclose(blob, blob.T, atol=1e-14)
    np.testing.assert_allclose(blob, blob[::-1], atol=1e-14)
    np.testing.assert_allclose(dx, -dx[:, ::-1], atol=1e-14)  # odd in x, even in y
    np.testing.assert_allclose(dx, dx[::-1], atol=1e-14)
    np.testing.assert_allclose(dy, dx.T, atol=1e-14)
    assert dx[k // 2, 0] > 0  # sign: largest entry (first in row-major order) positive
    np.testing.assert_allclose(dxy, dxy.T, atol=1e-14)
    np.testing.assert_allclose(dxy, -dxy[:, ::-1], atol=1e-14)
    np.testing.assert_allclose(lap, lap.T, atol=1e-14)  # transpose-symmetric member first
    np.testing.assert_allclose(lap, lap[:, ::-1], atol=1e-14)


def test_gaussian_bank_length_scale_argument_and_default():
    np.testing.assert_array_equal(
        filter_bank("gaussian", 5, 5).numpy(), gaussian_eigenfilters(5, 5, 1.25)
    )
    f = filter_bank("gaussian:2.0", 5, 5).numpy().reshape(5, 25)
    C = gaussian_cov(5, 2.0)
    np.testing.assert_allclose(
        np.einsum("ni,ij,nj->n", f, C, f), np.linalg.eigvalsh(C)[::-1][:5], rtol=1e-12
    )


def save_structured_vgg(path, kernel_size: int = 3) -> dict[str, torch.Tensor]:
    """A tiny vgg whose conv filters have a distinct spatial spectrum; saved as safetensors."""
    from safetensors.torch import save_file

    k = kernel_size
    model = arch("vgg", width=1 / 16, kernel_size=k).build(10, seed=0)
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(k * k, k * k, generator=g) * torch.linspace(2, 0.1, k * k)[:, None]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                z = torch.randn(m.weight.shape[0] * m.weight.shape[1], k * k, generator=g)
                m.weight.copy_((z @ mix).reshape(m.weight.shape))
    state = {k_: v.contiguous() for k_, v in model.state_dict().items()}
    save_file(state, str(path))
    return state


def test_learned_bank_equals_directly_computed_spatial_eigenvectors(tmp_path):
    path = tmp_path / "vgg.safetensors"
    state = save_structured_vgg(path)
    # direct: pool the filters of conv2..conv8, k²×k² covariance, eigh
    filt = np.concatenate(
        [state[f"features.conv{l}.weight"].double().reshape(-1, 9).numpy() for l in range(2, 9)]
    )
    lam, U = np.linalg.eigh(filt.T @ filt / len(filt))
    U = U[:, ::-1]
    assert np.all(np.diff(lam[::-1][:6]) < -1e-3 * lam[-1])  # well separated: comparable
    bank = filter_bank(f"learned:{path}", 3, 5).numpy().reshape(5, 9)
    np.testing.assert_allclose(np.abs(bank @ U[:, :5]), np.eye(5), atol=1e-10)
    for f in bank:  # sign convention: largest-magnitude entry positive
        assert f[np.argmax(np.abs(f))] > 0
    # the factorized VGG built on that bank carries exactly [f, -f]
    fa = arch("factorized_vgg", width=1 / 16, filters=f"learned:{path}")
    dw = fa.build(10).get_submodule("features.dw1").weight
    expected = torch.cat([torch.from_numpy(bank), -torch.from_numpy(bank)]).reshape(10, 3, 3)
    assert torch.equal(dw[:10, 0], expected.float())


def test_learned_bank_rejects_wrong_kernel_and_non_vgg_checkpoints(tmp_path):
    path = tmp_path / "vgg5.safetensors"
    save_structured_vgg(path, kernel_size=5)
    with pytest.raises(ValueError, match="3×3"):
        filter_bank(f"learned:{path}", 3, 5)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"features.dw1.weight": torch.ones(30, 1, 3, 3)}, str(other))
    with pytest.raises(ValueError, match="no vgg conv weights"):
        filter_bank(f"learned:{other}", 3, 5)


# -- permutation symmetry ------------------------------------------------------------------
def randomised_bn_stats(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64))
            m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5)
            if m.affine:
                m.weight.data.normal_(generator=g)
                m.bias.data.normal_(generator=g)


@pytest.mark.parametrize(
    "name, params, size",
    [
        ("factorized_vgg", {"width": 1 / 16}, 32),
        ("factorized_vgg", {"width": 1 / 16, "bias": True, "linear_classifier": False}, 32),
        ("vgg", {"width": 1 / 16, "bias": True, "bn_affine": True}, 32),
        ("vgg", {"width": 1 / 16, "input_size": 224, "linear_classifier": False}, 224),
    ],
)
def test_permuting_hidden_channels_leaves_the_function_unchanged(name, params, size):
    a = arch(name, **params)
    model = a.build(10, seed=0).double().eval()
    if params.get("bias"):
        with torch.no_grad():
            for m in model.modules():
                if getattr(m, "bias", None) is not None and not isinstance(m, torch.nn.BatchNorm2d):
                    m.bias.normal_()
    randomised_bn_stats(model)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
    specs = a.layers(model)
    hidden = range(len(specs) - 1)  # at 224: conv1, conv8 (-> fc1 in blocks of 7·7), fc1, fc2
    for idx in hidden if size == 32 else [0, 7, 8, 9]:
        w = specs[idx].weight(model)
        perm = torch.randperm(w.shape[0], generator=torch.Generator().manual_seed(idx))
        new = permute_hidden_channels(model, a, idx, perm)
        new_w = a.layers(new)[idx].weight(new)
        assert torch.equal(new_w, w[perm]) and not torch.equal(new_w, w)
        with torch.no_grad():
            torch.testing.assert_close(new(x), ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(specs[0].weight(model), a.layers(model)[0].weight(model))  # untouched


def test_permuting_only_one_side_changes_the_function():
    a = arch("factorized_vgg", width=1 / 16)
    model = a.build(10, seed=0).double().eval()
    randomised_bn_stats(model)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    perm = torch.roll(torch.arange(8), 1)
    rows_only = permute_hidden_channels(model, a, 1, perm)  # conv2's outputs
    rows_only.features.pw3.weight.data.copy_(model.features.pw3.weight)
    stale_bn = permute_hidden_channels(model, a, 1, perm)
    stale_bn.features.bn3.running_mean.copy_(model.features.bn3.running_mean)
    with torch.no_grad():
        assert (rows_only(x) - model(x)).abs().max() > 1e-3
        assert (stale_bn(x) - model(x)).abs().max() > 1e-3


def test_permute_hidden_channels_rejects_bad_arguments():
    a = arch("factorized_vgg", width=1 / 16)
    model = a.build(10)
    with pytest.raises(ValueError, match="permutation"):
        permute_hidden_channels(model, a, 0, [0, 0, 1, 2])
    with pytest.raises(ValueError, match="layer_index"):
        permute_hidden_channels(model, a, 8, list(range(32)))


# -- timm ----------------------------------------------------------------------------------
def test_timm_resnet18_by_parametric_name(tmp_path):
    pytest.importorskip("timm")
    a = arch("timm:resnet18")
    assert a.model_name == "resnet18" and a.weights is None
    model = a.build(10, seed=0)
    assert out_shape(model, X32) == (2, 10)
    specs = a.layers(model)
    expected = [
        n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    assert [s.name for s in specs] == expected and len(expected) == 21  # 20 convs + fc
    for s in specs:
        assert s.input_module == s.weight_module == s.name
        w = model.get_submodule(s.name).weight
        assert s.weight(model).shape == w.shape == s.weight_shape
        if s.kind == "conv":  # timm ResNet: kaiming_normal_(mode="fan_out", relu)
            assert s.init_variance == pytest.approx(2 / (w.shape[0] * w[0, 0].numel()), 1e-12)
        else:  # the fc keeps PyTorch's default
            assert s.init_variance == pytest.approx(1 / (3 * 512), rel=1e-12)
    big = model.get_submodule("layer4.1.conv2").weight.detach().double()  # 2.4M fresh weights
    assert float(big.pow(2).mean()) == pytest.approx(specs[-2].init_variance, rel=0.01)
    s0, s1 = model.state_dict(), a.build(10, seed=1).state_dict()
    assert torch.equal(s0["conv1.weight"], a.build(10, seed=0).state_dict()["conv1.weight"])
    assert not torch.equal(s0["conv1.weight"], s1["conv1.weight"])

    # a local weights file: loaded exactly; another head size keeps its fresh init + warning
    from safetensors.torch import save_file

    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in s1.items()}, str(path))
    b = arch("timm:resnet18", weights=str(path))
    loaded = b.build(10, seed=0).state_dict()
    assert all(torch.equal(loaded[k], s1[k]) for k in s1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other = b.build(4, seed=0).state_dict()
    assert any("classifier" in str(w.message) for w in caught)
    assert torch.equal(other["layer1.0.conv1.weight"], s1["layer1.0.conv1.weight"])
    assert other["fc.weight"].shape == (4, 512)


def test_timm_errors():
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="resnet18"):
        arch("timm:resnet19")
    with pytest.raises(ValueError, match="pretrained"):
        arch("timm:resnet18", model_kwargs={"pretrained": True})
    with pytest.raises(ValueError, match="does not exist"):
        arch("timm:resnet18", weights="/nonexistent.safetensors").build(10)

"""Bring your own models (issue 10): any nn.Module, timm/torchvision weights on disk.

Tiny inputs (32×32, a few dozen images) keep every test to seconds on one core.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import simbench
from simbench.models.foreign import select_layers
from simbench.models.timm_models import TimmArchitecture
from simbench.suite import SuiteError

IMAGES = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
#: random-init weights are pure noise: GM shrinkage would leave nothing to compare
BURES = {"name": "bures_cosine", "params": {"shrinkage": "none"}}
BURES_LABEL = "bures_cosine"  # the plugin name; its params are in metric_params
README = Path(__file__).resolve().parents[1] / "README.md"


def _timm(seed: int) -> torch.nn.Module:
    return TimmArchitecture("resnet18").build(10, seed=seed).eval()


def _permute_hidden(model: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """A copy with the hidden channels of block layer1.0 (conv1 -> bn1 -> conv2) permuted."""
    import copy

    out = copy.deepcopy(model)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(64))
    blk = out.layer1[0]
    with torch.no_grad():
        blk.conv1.weight.copy_(blk.conv1.weight[perm])
        for name in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(blk.bn1, name)
            t.copy_(t[perm])
        blk.conv2.weight.copy_(blk.conv2.weight[:, perm])
    return out


def test_permuted_copy_is_identical_to_every_metric():
    a = _timm(0)
    b = _permute_hidden(a)
    assert not torch.equal(a.layer1[0].conv2.weight, b.layer1[0].conv2.weight)
    df = simbench.compare(
        a, b, IMAGES, layers=["layer1.0.*", "layer2.0.conv1"], metrics=["cka", BURES],
        alignments=["permutation", "identity"], normalization=NORM,
    )  # fmt: skip
    cka = df[df.metric == "cka"].set_index("layer_a").value
    assert set(cka.index) >= {"layer1.0.conv1", "layer1.0.conv2", "layer1.0.bn1"}
    np.testing.assert_allclose(cka.to_numpy(), 1.0, atol=1e-9)
    w = df[(df.metric == BURES_LABEL) & (df.layer_a == "layer1.0.conv2")]
    got = dict(zip(w.alignment, w.value, strict=True))
    assert got["permutation"] == pytest.approx(1.0, abs=1e-9)  # the maximum: T recovers perm
    assert got["identity"] < 0.99  # unaligned, the permuted input basis shows
    convs = df[(df.metric == BURES_LABEL) & df.layer_a.str.contains("conv")]
    # a timm model: its init as the timm plugin recognises it (timm ResNets: kaiming fan_out)
    assert (convs.init_source_a == "timm:kaiming_normal_fan_out").all()
    assert convs.error.isna().all()
    blocks = df[(df.metric == BURES_LABEL) & (df.layer_a == "layer1.0.bn1")]
    assert blocks.value.isna().all() and blocks.error.str.contains("no weight").all()


def test_different_seeds_lower_and_equal_to_the_suite_path(tmp_path):
    from safetensors.torch import save_file

    from simbench.runner.stages import ProbeConfig, probe_images

    a, b = _timm(0), _timm(1)
    for name, m in (("a", a), ("b", b)):
        save_file(
            {k: v.contiguous() for k, v in m.state_dict().items()}, tmp_path / f"{name}.safetensors"
        )
    layers = ["layer1.0.conv2", "layer2.0.conv2", "fc"]
    norm = {**NORM, "crop_pct": 1.0}
    suite = {
        "name": "seeds",
        "output": str(tmp_path / "out"),
        "models": [
            {"id": m, "architecture": "timm:resnet18", "input_size": 32,
             "weights": str(tmp_path / f"{m}.safetensors"), "normalization": norm}
            for m in ("a", "b")
        ],
        # a float64 forward: the suite path equals the float64 compare path to 1e-9; 64
        # images (1,024 positions for layer2's 128 channels): with 32 class-balanced images
        # the Procrustes fit's cross-covariance had near-degenerate singular values
        "probe": {"images": 64, "dtype": "float64", "batch_size": 16},
        "layers": layers,
        "alignments": ["procrustes"],
        "metrics": ["cka", BURES],
        "executor": {"name": "local", "params": {"workers": 1}},
    }  # fmt: skip
    res = simbench.run(suite, report=False, quiet=True)
    assert res.error.isna().all()
    images = probe_images(ProbeConfig("embedded", {}, "test", 64, 0, 16, 16))
    df = simbench.compare(
        a, b, images, layers=layers, metrics=["cka", BURES], alignments=["procrustes"],
        normalization=NORM, batch_size=16,
    )  # fmt: skip
    inits = TimmArchitecture("resnet18").init_report(a)
    assert df.init_source_a.tolist() == [f"timm:{inits[n][0]}" for n in df.layer_a]
    np.testing.assert_allclose(df.init_variance_b, [inits[n][1] for n in df.layer_b])
    key = ["layer_a", "metric"]
    mine = df.set_index(key).value.sort_index()
    theirs = res.set_index(key).value.sort_index()
    np.testing.assert_allclose(
        mine.to_numpy(), theirs.loc[mine.index].to_numpy(), rtol=0, atol=1e-9
    )
    assert (mine.xs("cka", level="metric") < 0.999).all()
    assert (mine.xs("bures_cosine", level="metric") < 0.999).all()


def test_torchvision_script_state_dict_loads_and_a_wrong_one_is_refused(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=7)
    torch.save(net.state_dict(), tmp_path / "plain.pth")  # as a training script would
    hf = tmp_path / "hf"
    hf.mkdir()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, hf / "model.safetensors")
    wrong = torchvision.models.squeezenet1_0(weights=None, num_classes=7)
    torch.save({"state_dict": wrong.state_dict()}, tmp_path / "wrong.pt")

    arch = simbench.get_plugin(
        "architecture", "torchvision:resnet18", weights=str(tmp_path / "plain.pth")
    )
    loaded = arch.build(7)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())

    base = {
        "name": "tv", "output": str(tmp_path / "out"), "probe": {"images": 16, "batch_size": 16},
        "layers": ["layer1.0.conv1", "fc"], "metrics": ["cka"],
        "executor": {"name": "local", "params": {"workers": 1}},
    }  # fmt: skip
    models = [
        {"id": "pt", "architecture": "torchvision:resnet18", "input_size": 32,
         "weights": str(tmp_path / "plain.pth")},
        {"id": "hf", "architecture": "torchvision:resnet18", "weights": str(hf), "input_size": 32},
    ]  # fmt: skip
    res = simbench.run({**base, "models": models}, report=False, quiet=True)
    assert len(res) == 2 and res.error.isna().all()
    np.testing.assert_allclose(res.value, 1.0, atol=1e-9)

    bad = [models[0], {**models[0], "id": "bad", "weights": str(tmp_path / "wrong.pt")}]
    with pytest.raises(SuiteError) as err:
        simbench.run({**base, "models": bad}, report=False, quiet=True)
    msg = str(err.value)
    assert "models.1.weights" in msg
    assert "missing keys ['bn1.bias', 'bn1.num_batches_tracked'" in msg
    assert "unexpected keys ['classifier.1.bias', 'classifier.1.weight'" in msg


def test_vgg_vs_resnet_layer_matrix_has_every_cell():
    vgg = simbench.get_plugin("architecture", "vgg", width=0.0625).build(10, seed=0)
    resnet = _timm(0)
    la = ["features.conv[123]", "classifier.fc"]
    lb = ["conv1", "layer1.0.conv2", "layer2.*.conv1", "fc"]
    df = simbench.compare(
        vgg, resnet, IMAGES[:24], layers=la, layers_b=lb, layer_matrix=True,
        metrics=["cka", "svcca_dft", "rsa"], normalization=NORM,
    )  # fmt: skip
    n_a = len(select_layers(vgg, la))
    n_b = len(select_layers(resnet, lb))
    assert (n_a, n_b) == (4, 5)
    for metric in ("cka", "svcca_dft", "rsa"):
        sub = df[df.metric == metric]
        assert len(sub) == n_a * n_b
        assert len(set(zip(sub.layer_a, sub.layer_b, strict=True))) == n_a * n_b
        assert sub.error.isna().all(), sub.error.tolist()
        assert np.isfinite(sub.value).all()
    with pytest.raises(ValueError, match="paired layers"):
        simbench.compare(vgg, resnet, IMAGES[:8], layer_matrix=True, metrics=["bures_cosine"])


def test_runner_layer_matrix_scores_dft_for_every_layer_pair(tmp_path):
    from safetensors.torch import save_file

    vgg = simbench.get_plugin("architecture", "vgg", width=0.0625).build(10, seed=0)
    save_file(
        {k: v.contiguous() for k, v in vgg.state_dict().items()}, tmp_path / "vgg.safetensors"
    )
    save_file(
        {k: v.contiguous() for k, v in _timm(0).state_dict().items()}, tmp_path / "r18.safetensors"
    )
    suite = {
        "name": "matrix", "output": str(tmp_path / "out"),
        "models": [
            {"id": "vgg", "architecture": {"name": "vgg", "params": {"width": 0.0625}},
             "weights": str(tmp_path / "vgg.safetensors"), "normalization": NORM},
            {"id": "r18", "architecture": "timm:resnet18",
             "weights": str(tmp_path / "r18.safetensors"),
             "normalization": {**NORM, "crop_pct": 1.0}, "input_size": 32},
        ],
        # a float64 forward: the suite path equals the float64 compare path to 1e-9
        "probe": {"images": 24, "dtype": "float64", "batch_size": 24},
        "layers": ["conv1", "conv2", "layer1.0.conv2", "fc"],
        "layer_matrix": True,
        "metrics": ["cka", "svcca_dft"],
        "executor": {"name": "local", "params": {"workers": 1}},
    }  # fmt: skip
    res = simbench.run(suite, report=False, quiet=True)
    pooled = res[res.features == "pooled"]
    for metric in ("cka", "svcca_dft"):
        sub = pooled[pooled.metric == metric]
        assert len(sub) == 3 * 3  # vgg: conv1, conv2, fc; resnet: conv1, layer1.0.conv2, fc
        assert sub.error.isna().all(), sub.error.tolist()
        assert np.isfinite(sub.value).all()
    # the shared names are compared on the diagonal too: conv1 is 32x32 in the VGG, 16x16
    # in the ResNet, so that (paired) extraction fails, and the matrix does not depend on it
    diag = res[res.features.isin(["positions", "maps"])]
    assert set(diag.layer_a) == {"conv1", "fc"}
    assert diag.error.str.contains("spatial sizes").all(), diag.error.tolist()

    # flattened features: the same cells, and the values simbench.compare gives
    flat = simbench.run(
        {**suite, "layer_features": "flat", "metrics": ["cka"]}, report=False, quiet=True
    )
    flat = flat[flat.features == "flattened"].set_index(["layer_a", "layer_b"]).value
    assert len(flat) == 9 and np.isfinite(flat).all()
    from simbench.runner.stages import ProbeConfig, probe_images

    images = probe_images(ProbeConfig("embedded", {}, "test", 24, 0, 16, 24))
    r18 = _timm(0)
    df = simbench.compare(
        vgg, r18, images, layers=["features.conv[12]", "classifier.fc"],
        layers_b=["conv1", "layer1.0.conv2", "fc"], layer_matrix=True, features="flat",
        normalization=NORM,
    )  # fmt: skip
    short = {"features.conv1": "conv1", "features.conv2": "conv2", "classifier.fc": "fc"}
    mine = df.assign(layer_a=df.layer_a.map(short)).set_index(["layer_a", "layer_b"]).value
    np.testing.assert_allclose(mine.loc[flat.index].to_numpy(), flat.to_numpy(), atol=1e-9)
    pooled_cka = pooled[pooled.metric == "cka"].set_index(["layer_a", "layer_b"]).value
    assert not np.allclose(pooled_cka.loc[flat.index].to_numpy(), flat.to_numpy(), atol=1e-3)


def test_run_with_in_memory_modules(tmp_path):
    vgg = simbench.get_plugin("architecture", "vgg", width=0.0625).build(10, seed=0)
    suite = {
        "name": "mods", "output": str(tmp_path / "out"), "pairs": [["mine", "copy"]],
        "probe": {"images": 16, "batch_size": 16}, "layers": "features.conv[12]",
        "alignments": ["identity"], "metrics": ["cka", BURES],
    }  # fmt: skip
    twin = simbench.get_plugin("architecture", "vgg", width=0.0625).build(10, seed=0)
    res = simbench.run(
        suite, models={"mine": vgg, "copy": {"module": twin}}, report=False, quiet=True
    )
    assert sorted(res.layer_a.unique()) == ["features.conv1", "features.conv2"]
    assert res.error.isna().all() and len(res) == 4
    np.testing.assert_allclose(res.value, 1.0, atol=1e-9)
    with pytest.raises(ValueError, match=r"must be a torch\.nn\.Module"):
        simbench.run(suite, models={"mine": "vgg", "copy": twin}, report=False, quiet=True)


def test_layer_selection_taps_and_init_variance():
    class Scaled(torch.nn.Linear):
        pass

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), Scaled(4 * 30 * 30, 5)
    )
    names = [s.name for s, _ in select_layers(net, ["0", "1"])]
    assert names == ["0", "1"]
    with pytest.raises(ValueError, match=r"\['9\*'\] match no module"):
        select_layers(net, ["9*"])
    with pytest.raises(ValueError, match="init variance is unknown"):
        select_layers(net)
    spec, source = select_layers(net, "3", init_variance={"3": 0.5})[0]
    assert (spec.init_variance, source) == (0.5, "parameter")
    spec, source = select_layers(net, "0", init_variance=None)[0]
    assert (spec.init_variance, source) == (pytest.approx(1 / (3 * 27)), "pytorch_default")
    # input tap of layer "3" = output of "2" (flatten): identical representations
    df_in = simbench.compare(net, net, IMAGES[:8], layers="3", tap="input", init_variance=0.5)
    df_out = simbench.compare(net, net, IMAGES[:8], layers="2", init_variance=0.5)
    assert df_in.value.iloc[0] == pytest.approx(1.0) and df_out.value.iloc[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="share no selected layer name"):
        other = torch.nn.Sequential(OrderedDict(lin=torch.nn.Linear(3, 3)))
        simbench.compare(net, other, IMAGES[:4], init_variance=0.5)


def test_probe_resize_center_crop():
    from simbench.data.resize import resize_center_crop

    x = torch.arange(2 * 3 * 40 * 60, dtype=torch.float64).reshape(2, 3, 40, 60)
    y = resize_center_crop(x, 32, 0.8)  # shorter side 40 -> 40: no resize, central 32x32
    assert y.shape == (2, 3, 32, 32)
    assert torch.equal(y, x[..., 4:36, 14:46])
    z = resize_center_crop(torch.ones(1, 3, 16, 16), 224, 224 / 256)
    assert z.shape == (1, 3, 224, 224) and torch.allclose(z, torch.ones_like(z))


def test_readme_compare_your_own_models_runs():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Compare your own models", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the section has no python block"
    exec(compile(code.group(1), "README.md", "exec"), {"__name__": "__readme__"})


def test_suite_foreign_entries_are_checked_with_their_lines(tmp_path):
    from safetensors.torch import save_file

    from simbench.suite import parse_suite
    from simbench.train.checkpoint import load_checkpoint

    vgg = simbench.get_plugin("architecture", "vgg", width=0.0625).build(10, seed=0)
    save_file({k: v.contiguous() for k, v in vgg.state_dict().items()}, tmp_path / "v.safetensors")
    text = f"""\
name: foreign
output: {tmp_path / "out"}
models:
  - {{id: a, architecture: {{name: vgg, params: {{width: 0.0625}}}}, weights: v.safetensors}}
  - id: b
    architecture: timm:resnet18
    weights: v.safetensors
  - {{id: c, architecture: vgg, dataset: embedded, input_size: 32}}
  - {{id: d, weights: nowhere.pt, architecture: vgg, dataset: embedded}}
metrics: [cka]
"""
    with pytest.raises(SuiteError) as err:
        parse_suite(text, base_dir=tmp_path)
    msg = str(err.value)
    assert "<string>:8: models.2.input_size: 'input_size' applies to foreign 'weights' only" in msg
    assert "<string>:9: models.3.dataset: a foreign-weights model takes no 'dataset'" in msg
    assert "models.3.weights: no weights file or folder" in msg
    lines = [*text.splitlines()[:7], "metrics: [cka]"]
    with pytest.raises(SuiteError, match=r"<string>:7: models\.1\.weights: .* does not fit timm"):
        parse_suite("\n".join(lines), base_dir=tmp_path)
    good = [
        *lines[:4],
        "  - {id: b, architecture: {name: vgg, params: {width: 0.0625}}, weights: v.safetensors,",
        "     normalization: {mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}}",
        "metrics: [cka]",
    ]
    ok = parse_suite("\n".join(good), base_dir=tmp_path)
    assert ok.relation("a", "b") == "other"  # how foreign weights were trained is unknown
    _, meta_a = load_checkpoint(ok.checkpoint_path("a"))
    _, meta_b = load_checkpoint(ok.checkpoint_path("b"))
    assert meta_a["normalization"] == {
        "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "input_size": None, "crop_pct": 1.0,
    }  # fmt: skip
    assert meta_b["normalization"]["std"] == [0.2, 0.2, 0.2]
    assert meta_a["num_classes"] == 10 and meta_a["source"]["weights"].endswith("v.safetensors")


def test_default_preprocessing_of_timm_and_torchvision():
    timm_prep = TimmArchitecture("resnet18").preprocessing()
    assert timm_prep["input_size"] == 224 and timm_prep["crop_pct"] == pytest.approx(0.95)
    assert timm_prep["mean"] == pytest.approx((0.485, 0.456, 0.406))
    tv = simbench.get_plugin("architecture", "torchvision:resnet18").preprocessing()
    assert tv["input_size"] == 224 and tv["crop_pct"] == pytest.approx(224 / 256)
    with pytest.raises(ValueError, match="Did you mean 'resnet18'"):
        simbench.get_plugin("architecture", "torchvision:resnet81")

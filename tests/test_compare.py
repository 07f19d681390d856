"""Weight comparison on a trained factorized VGG and its exact channel-permuted twin.

Issue #3's exact-symmetry test: permuting hidden channels consistently leaves the
function unchanged, so the permutation and Procrustes alignments must recover the
permutation and every weight metric must report identity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simbench
from simbench.cli import main
from simbench.compare import (
    compare_models,
    paired_probe_batches,
    rank_projection_accuracy,
    spatial_eigenvectors,
)
from simbench.models.vgg import permute_hidden_channels
from simbench.train.checkpoint import load_model
from simbench.train.config import ModelSpec
from simbench.train.trainer import train

HIDDEN = 2  # the permuted layer: its output channels, and the next layer's inputs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    spec = ModelSpec.model_validate(
        {
            "architecture": {"name": "factorized_vgg", "params": {"width": 0.125}},
            "dataset": {"name": "embedded"},
            "seed": 0,
            "train": {"epochs": 2, "lr": 0.05, "batch_size": 64, "max_train_images": 1024},
        }
    )
    path = train(spec, tmp_path_factory.mktemp("ckpt"), progress=False)
    model, arch, meta = load_model(path)
    return path, model.double(), arch, meta


@pytest.fixture(scope="module")
def probe():
    return simbench.get_plugin("dataset", "embedded").load().x_test[:160]


def _batches(probe, meta):
    return [
        (a.double(), b.double())
        for a, b in paired_probe_batches(probe, meta["normalization"], meta["normalization"], 80)
    ]


@pytest.fixture(scope="module")
def twin(trained):
    _, model, arch, _ = trained
    width = arch.layers(model)[HIDDEN].weight(model).shape[0]
    perm = np.random.default_rng(5).permutation(width)
    return permute_hidden_channels(model, arch, HIDDEN, perm), perm


def test_permuted_twin_computes_the_same_function(trained, twin, probe):
    _, model, _, meta = trained
    other, _ = twin
    for xa, _ in _batches(probe, meta):
        torch.testing.assert_close(model(xa), other(xa), rtol=0, atol=1e-10)


@pytest.mark.parametrize("alignment", ["permutation", "procrustes"])
def test_alignment_recovers_the_permutation_and_metrics_report_identity(
    trained, twin, probe, alignment
):
    _, model, arch, meta = trained
    other, perm = twin
    table, comps = compare_models(
        model,
        arch,
        other,
        arch,
        _batches(probe, meta),
        alignment=alignment,
        metrics=("bures_cosine", "bures", "cka", "effective_rank"),
        positions=None,
    )
    by_layer = {c.layer: c for c in comps}
    # the permuted layer's *output* is the next layer's input: T is the permutation there
    nxt = arch.layers(model)[HIDDEN + 1].name
    T = by_layer[nxt].T
    np.testing.assert_allclose(T, np.eye(len(perm))[:, perm], atol=1e-6)
    # A layer whose shrunk covariance kept no eigenvalue (no learned component after two
    # epochs; which layers depends on the thread count's rounding) has no Bures cosine or
    # effective rank: those cells are NaN for both twins alike, never a wrong number.
    learned = np.isfinite(table["r_eff_a"].to_numpy())
    assert learned.sum() >= len(table) - 1, table
    assert np.array_equal(learned, np.isfinite(table["bures_cosine"].to_numpy()))
    np.testing.assert_allclose(table["bures_cosine"][learned], 1.0, atol=1e-9)
    np.testing.assert_allclose(table["cka"], 1.0, atol=1e-9)
    np.testing.assert_allclose(table["effective_rank"][learned], 1.0, atol=1e-9)
    np.testing.assert_allclose(table["r_eff_a"], table["r_eff_b"], rtol=1e-9)
    # S(C, C) = (1 − z)/(u − z): identity scores at or above the upper bound u
    s = table["bures"].to_numpy()
    assert np.all(s[np.isfinite(s)] >= 0.95), s
    assert np.isfinite(s).sum() >= 3, "training must leave a learned component in some layers"


def test_compare_cli_prints_a_per_layer_table(trained, capsys):
    path = trained[0]
    code = main(
        ["compare", str(path), str(path), "--probe-images", "64", "--metrics", "bures_cosine,cka"]
    )
    assert code == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("conv", "fc"))]
    assert [r[0] for r in rows][:2] == ["conv1", "conv2"]
    header = next(line.split() for line in out.splitlines() if line.startswith("layer"))
    cos = [float(r[header.index("bures_cosine")]) for r in rows]
    assert all(c == pytest.approx(1.0, abs=1e-9) for c in cos if np.isfinite(c))


def test_compare_cli_bad_metric_exits_2(trained, capsys):
    assert main(["compare", str(trained[0]), str(trained[0]), "--metrics", "ckaa"]) == 2
    assert "did you mean 'cka'" in capsys.readouterr().err.lower()


def test_rank_projection_accuracy(trained):
    _, model, arch, meta = trained
    data = simbench.get_plugin("dataset", "embedded").load()
    x, y = data.x_test[:300], data.y_test[:300]
    before = [p.detach().clone() for p in model.parameters()]
    full = max(
        s.weight(model).reshape(s.weight(model).shape[0], -1).shape[1] for s in arch.layers(model)
    )
    curve = rank_projection_accuracy(model.float(), arch, x, y, meta["normalization"], [1, full])
    model.double()
    # at full rank the projection is the identity: the model's own accuracy
    logits = torch.cat([model(b[0]) for b in _batches(x, meta)])
    own = float((logits.argmax(1).numpy() == y).mean())
    assert curve["accuracy"].iloc[-1] == pytest.approx(own, abs=1e-9)
    assert curve["accuracy"].iloc[0] < own
    for p, q in zip(before, model.parameters(), strict=True):  # weights restored
        torch.testing.assert_close(p, q.detach(), rtol=0, atol=1e-6)


def test_spatial_eigenvectors_of_a_conv_model():
    arch = simbench.get_plugin("architecture", "vgg", width=0.125, kernel_size=5)
    model = arch.build(10, seed=0)
    eig = spatial_eigenvectors(model, arch)
    assert list(eig)[:2] == ["conv1", "conv2"] and "fc" not in eig
    lam, filters = eig["conv2"]
    assert filters.shape == (25, 5, 5) and np.all(np.diff(lam) <= 1e-12)
    # orthonormal eigenfilters
    F = filters.reshape(25, 25)
    np.testing.assert_allclose(F @ F.T, np.eye(25), atol=1e-10)
    assert (
        spatial_eigenvectors(
            simbench.get_plugin("architecture", "factorized_vgg", width=0.125).build(10),
            simbench.get_plugin("architecture", "factorized_vgg", width=0.125),
        )
        == {}
    )


def _shared_cifar10():
    import os
    from pathlib import Path

    root = Path(
        os.environ.get("SIMBENCH_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data")
    )
    path = root / "cifar10_jpeg.npz"
    if not path.exists():
        pytest.skip(f"real CIFAR-10 not available at {path}")
    return str(path)


@pytest.mark.slow
def test_seed_pair_beats_true_vs_random_labels_on_real_data(tmp_path):
    """GM control: two seeds agree more than a true-label and a random-label model."""
    npz = {"name": "npz", "params": {"path": _shared_cifar10()}}

    def spec(seed, dataset):
        return ModelSpec.model_validate(
            {
                "architecture": {"name": "vgg", "params": {"width": 0.125}},
                "dataset": dataset,
                "seed": seed,
                "train": {
                    "epochs": 4,
                    "lr": 0.05,
                    "lr_step": 3,
                    "max_train_images": 3000,
                },
            }
        )

    random = {"name": "random_labels", "params": {"base": npz, "seed": 1}}
    models = {
        k: load_model(train(s, tmp_path, progress=False))
        for k, s in {"s0": spec(0, npz), "s1": spec(1, npz), "rl": spec(2, random)}.items()
    }
    x = simbench.get_plugin("dataset", "npz", **npz["params"]).load().x_test[:400]

    def scores(a, b):
        (ma, arch, meta_a), (mb, _, meta_b) = models[a], models[b]
        batches = [
            (u.double(), v.double())
            for u, v in paired_probe_batches(x, meta_a["normalization"], meta_b["normalization"])
        ]
        table, _ = compare_models(
            ma.double(), arch, mb.double(), arch, batches, metrics=("cka", "bures")
        )
        return table

    seed, labels = scores("s0", "s1"), scores("s0", "rl")
    assert models["s0"][2]["test_accuracy"] > 0.25 > models["rl"][2]["test_accuracy"]
    assert seed["cka"].mean() > labels["cka"].mean() + 0.1
    both = seed["bures"].notna() & labels["bures"].notna()
    assert (seed["bures"][both] > labels["bures"][both]).mean() >= 0.6

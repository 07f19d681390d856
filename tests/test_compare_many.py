"""``simbench.compare_many``: all pairs × layer pairs equal pair-by-pair ``evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import simbench
from simbench.metrics.base import Metric


def _reps(rng, models=3, n=60):
    Z = rng.normal(size=(n, 4))
    return {
        f"m{i}": {
            "conv1": Z @ rng.normal(size=(4, 8)) + rng.normal(size=(n, 8)),
            "fc": Z @ rng.normal(size=(4, 5)) + 0.3 * rng.normal(size=(n, 5)),
        }
        for i in range(models)
    }


def test_all_pairs_equal_pairwise_evaluate():
    reps = _reps(np.random.default_rng(0))
    metrics = ["cka", simbench.get_metric("cka", kernel="rbf"), "pwcca", "rsa", "mutual_knn"]
    df = simbench.compare_many(reps, metrics=metrics)
    # 3 unordered model pairs × 4 layer pairs, pwcca (asymmetric) both ways
    per = 3 * 4
    assert len(df) == 4 * per + 2 * per
    assert df["error"].isna().all()
    assert set(df["metric"]) == {"cka", "pwcca", "rsa", "mutual_knn"}
    assert df.loc[df.metric_params.notna(), "metric_params"].unique().tolist() == [
        '{"kernel": "rbf"}'
    ]
    for r in df.itertuples():
        params = json.loads(r.metric_params) if isinstance(r.metric_params, str) else {}
        m = simbench.get_metric(r.metric, **params)
        ref = m(reps[r.model_a][r.layer_a], reps[r.model_b][r.layer_b])
        assert abs(r.value - ref) <= 1e-12, r
    pw = df[df.metric == "pwcca"]
    assert {("m0", "m1"), ("m1", "m0")} <= set(zip(pw.model_a, pw.model_b, strict=True))


def test_same_layers_and_self_pairs():
    reps = _reps(np.random.default_rng(1), models=2)
    df = simbench.compare_many(reps, "cka", layer_pairs="same", include_self=True)
    assert sorted(zip(df.model_a, df.model_b, df.layer_a, strict=True)) == sorted(
        (a, b, la) for a, b in (("m0", "m1"), ("m0", "m0"), ("m1", "m1")) for la in ("conv1", "fc")
    )
    assert (df.layer_a == df.layer_b).all()
    self_rows = df[df.model_a == df.model_b]
    assert np.allclose(self_rows.value, 1.0, atol=1e-12)


def test_prepare_runs_once_per_representation(monkeypatch):
    calls = []
    cka = simbench.get_metric("cka")
    orig = type(cka).prepare

    def counting(self, X):
        calls.append(id(X))
        return orig(self, X)

    monkeypatch.setattr(type(cka), "prepare", counting)
    reps = _reps(np.random.default_rng(2), models=4)
    df = simbench.compare_many(reps, cka)
    assert len(df) == 6 * 4
    assert len(calls) == 4 * 2  # one per (model, layer), not per cell


def test_degenerate_layer_is_a_row_error_and_bad_calls_raise():
    reps = _reps(np.random.default_rng(3))
    reps["m1"]["fc"] = np.ones((60, 5))
    df = simbench.compare_many(reps, "cka")
    bad = df[
        (df.model_a == "m1") & (df.layer_a == "fc") | (df.model_b == "m1") & (df.layer_b == "fc")
    ]
    assert len(bad) == 4 and bad.value.isna().all()
    assert bad.error.str.contains("no variance").all()
    assert df.drop(bad.index).error.isna().all()
    with pytest.raises(ValueError, match="layer_pairs"):
        simbench.compare_many(reps, "cka", layer_pairs="diag")
    with pytest.raises(ValueError, match="two models"):
        simbench.compare_many({"a": reps["m0"]}, "cka")
    with pytest.raises(ValueError, match="does not score"):
        simbench.compare_many(reps, "bures")


def test_metric_without_prepare_falls_back_to_evaluate():
    class MeanGap(Metric):
        """|mean X − mean Y| (a third-party metric without prepare)."""

        name = "mean_gap_test"

        def _compute(self, X, Y):
            return float(abs(X.mean() - Y.mean()))

    reps = _reps(np.random.default_rng(4), models=2)
    df = simbench.compare_many(reps, [MeanGap()], layer_pairs="same")
    want = [abs(reps["m0"][k].mean() - reps["m1"][k].mean()) for k in ("conv1", "fc")]
    assert np.allclose(df.value, want, rtol=0, atol=1e-15)


def test_torch_device_path_equals_numpy():
    """``device=`` runs prepare in torch (here on the CPU; on a GPU in gpu_smoke.sh)."""
    reps = _reps(np.random.default_rng(5))
    metrics = ["cka", "cca", "svcca", "pwcca", "procrustes_distance", "rsa", "gulp"]
    ref = simbench.compare_many(reps, metrics)
    got = simbench.compare_many(reps, metrics, device="cpu")
    assert (got.drop(columns="value").fillna(0) == ref.drop(columns="value").fillna(0)).all().all()
    np.testing.assert_allclose(got.value, ref.value, rtol=0, atol=1e-10)
    f32 = simbench.compare_many(reps, metrics, device="cpu", dtype="float32")
    np.testing.assert_allclose(f32.value, ref.value, rtol=0, atol=1e-4)
    assert not np.array_equal(f32.value, ref.value)
    with pytest.raises(ValueError, match="device"):
        simbench.compare_many(reps, "cka", dtype="float32")

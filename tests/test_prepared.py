"""Per-representation precomputation (COORD.md §3): ``score_prepared`` equals ``evaluate``.

Parametrized over the registry like tests/test_metric_contract.py: any metric that
overrides ``prepare`` (built-in or third-party) is checked here with no test of its own.
"""

from __future__ import annotations

import numpy as np
import pytest

import simbench
from simbench.metrics.base import Consumes, Metric
from simbench.metrics.prepared import GRAM_MAX_N, GramSide, MomentsSide
from simbench.plugin import Score
from simbench.registry import default_registry

METRICS = [r.name for r in default_registry().records("metric")]
TOL = 1e-12

#: parameter variants whose prepared path differs from the default's
VARIANTS = [
    ("cka", {"kernel": "rbf"}),
    ("cka", {"debiased": True}),
    ("cka", {"kernel": "rbf", "debiased": True}),
    ("rsa", {"compare": "spearman"}),
    ("rsa", {"rsm": "cosine"}),
    ("cca", {"eps": 1e-3}),
    ("svcca", {"rule": "variance", "threshold": 0.9}),
    ("procrustes_distance", {"alpha": 0.5}),
    ("gulp", {"lam": 0.0}),
]


def _declares(metric: Metric) -> bool:
    return type(metric).prepare is not Metric.prepare


def _check(metric: Metric, X: np.ndarray, Y: np.ndarray) -> None:
    pa, pb = metric.prepare(X), metric.prepare(Y)
    assert pa is not None and pb is not None, f"{metric.name} declares prepare"
    got = metric.score_prepared(pa, pb)
    ref = metric.evaluate(X, Y).value
    assert isinstance(got, Score)
    assert abs(got.value - ref) <= TOL * max(1.0, abs(ref)), (metric.name, got.value, ref)
    # a prepared side is reusable: scoring it again (and against itself) changes nothing
    assert metric.score_prepared(pa, pb).value == got.value
    self_ref = metric.evaluate(X, X).value
    assert abs(metric.score_prepared(pa, pa).value - self_ref) <= TOL * max(1.0, abs(self_ref))


@pytest.mark.parametrize("name", METRICS)
def test_prepared_equals_evaluate(name):
    metric = simbench.get_metric(name)
    if not _declares(metric):
        assert metric.prepare(np.ones((5, 2))) is None, "the default prepare means unsupported"
        pytest.skip(f"{name} has no per-representation precomputation")
    X, Y = type(metric).example_inputs(np.random.default_rng(3))
    if metric.prepare(X) is None:  # allowed: "does not pay on these inputs"
        pytest.skip(f"{name}.prepare declines its example inputs")
    _check(metric, X, Y)
    if metric.consumes is Consumes.REPRESENTATIONS and not metric.symmetric:
        _check(metric, Y, X)


@pytest.mark.parametrize(("name", "params"), VARIANTS)
def test_prepared_variants(name, params):
    metric = simbench.get_metric(name, **params)
    X, Y = type(metric).example_inputs(np.random.default_rng(4))
    _check(metric, X, Y)


def test_gram_and_feature_forms_of_linear_cka_both_match(monkeypatch):
    """n ≥ d_x + d_y: evaluate uses the feature form, prepare the Gram form; wider than n:
    both use Grams; above GRAM_MAX_N prepare switches to moments."""
    rng = np.random.default_rng(5)
    cka = simbench.get_metric("cka")
    for n, d in ((300, 10), (40, 90)):
        Z = rng.normal(size=(n, 6))
        X = Z @ rng.normal(size=(6, d)) + rng.normal(size=(n, d))
        Y = Z @ rng.normal(size=(6, d + 3)) + 3.0 + rng.normal(size=(n, d + 3))
        assert isinstance(cka.prepare(X), GramSide)
        _check(cka, X, Y)
    monkeypatch.setattr("simbench.metrics.cka.GRAM_MAX_N", 100)
    assert GRAM_MAX_N > 100
    X, Y = cka.example_inputs(rng)  # n = 120 > 100
    assert isinstance(cka.prepare(X), MomentsSide)
    _check(cka, X, Y)
    assert simbench.get_metric("cka", debiased=True).prepare(X) is None  # falls back


def test_scale_invariant_metrics_prepare_extreme_scales():
    X, Y = simbench.get_metric("cca").example_inputs(np.random.default_rng(6))
    for name in ("cka", "cca", "procrustes_distance", "rsa"):
        _check(simbench.get_metric(name), X * 1e200, Y * 1e-200)


def test_bad_inputs_are_value_errors():
    cka = simbench.get_metric("cka")
    X, Y = cka.example_inputs(np.random.default_rng(8))
    with pytest.raises(ValueError, match="same samples"):
        cka.score_prepared(cka.prepare(X), cka.prepare(Y[:-1]))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        cka.prepare(bad)
    const = cka.prepare(np.ones_like(X))  # degenerate: raised when scored, as evaluate does
    with pytest.raises(ValueError, match="no variance"):
        cka.score_prepared(const, cka.prepare(Y))
    with pytest.raises(ValueError):
        cka.evaluate(np.ones_like(X), Y)
    cca = simbench.get_metric("cca")
    with pytest.raises(ValueError, match="singular"):
        cca.score_prepared(cca.prepare(X[:, [0, 0, 1]]), cca.prepare(Y))


def test_third_party_metric_without_prepare():
    class Plain(Metric):
        """A metric with no precomputation."""

        name = "plain_test_metric"

        def _compute(self, X, Y):
            return float(np.abs(X.mean() - Y.mean()))

    m = Plain()
    assert m.prepare(np.ones((4, 2))) is None
    with pytest.raises(TypeError, match="no per-representation"):
        m.score_prepared(None, None)


def test_runner_layer_matrix_prepares_each_layer_once(tmp_path, monkeypatch):
    """The score stage's layer-matrix cells: value from ``score_prepared`` (each side's
    layer prepared once per job), standard error and null as ``evaluate`` gives them."""
    from simbench.runner.cache import Cache
    from simbench.runner.stages import ScoreCell, ScoreJob, run_score
    from simbench.uncertainty import Uncertainty

    rng = np.random.default_rng(9)
    n, layers = 48, ("l1", "l2", "l3")
    Z = rng.normal(size=(n, 3))
    arrays = {"uncertainty": np.array([6, 3, 0, n])}
    for side in "ab":
        for i, layer in enumerate(layers):
            d = 4 + i
            arrays[f"{side}/{layer}"] = Z @ rng.normal(size=(3, d)) + rng.normal(size=(n, d))
    cache = Cache(tmp_path)
    cache.put_arrays("extract", "pooled0", arrays)
    calls = []
    orig = type(simbench.get_metric("cka")).prepare

    def counting(self, X):
        calls.append(X.shape)
        return orig(self, X)

    monkeypatch.setattr(type(simbench.get_metric("cka")), "prepare", counting)
    cells = [
        ScoreCell(f"c-{m}-{la}-{lb}", "pooled", m, {}, "pooled0", layer_a=la, layer_b=lb)
        for m in ("cka", "mutual_knn")
        for la in layers
        for lb in layers
    ]
    out = run_score(ScoreJob(str(tmp_path), tuple(cells)))
    assert out["failed"] == 0 and out["written"] == len(cells)
    assert len(calls) == 2 * len(layers)  # not 2 per cell
    cfg = Uncertainty(6, 3, 0, chunk=n)
    for c in cells:
        rec = cache.get_json("score", c.key)
        m = simbench.get_metric(c.metric)
        ref = m.evaluate(arrays[f"a/{c.layer_a}"], arrays[f"b/{c.layer_b}"], uncertainty=cfg)
        assert abs(rec["value"] - ref.value) <= TOL
        assert rec["stderr"] == pytest.approx(ref.stderr, rel=1e-9)
        assert rec["null_mean"] == pytest.approx(ref.null_mean, rel=1e-9)


def _torch_check(metric: Metric, X: np.ndarray, Y: np.ndarray, dtype=None) -> float:
    """|score_prepared on torch tensors − evaluate on numpy|."""
    import torch

    from simbench.numerics.torch_ops import compute_dtype

    tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
    if dtype is None:
        got = metric.score_prepared(metric.prepare(tx), metric.prepare(ty)).value
    else:
        with compute_dtype(dtype):
            got = metric.score_prepared(metric.prepare(tx), metric.prepare(ty)).value
    return abs(got - metric.evaluate(X, Y).value)


@pytest.mark.parametrize("name", METRICS)
def test_torch_path_equals_numpy(name):
    """The torch path (CPU tensors here, the device's in benchmarks/gpu_smoke.sh) equals the
    numpy path to 1e-10 in float64, and to the documented float32 error in float32."""
    import torch

    metric = simbench.get_metric(name)
    if not _declares(metric):
        pytest.skip(f"{name} has no per-representation precomputation")
    X, Y = type(metric).example_inputs(np.random.default_rng(10))
    assert _torch_check(metric, X, Y) <= 1e-10
    assert _torch_check(metric, X, Y, torch.float32) <= 1e-4


@pytest.mark.parametrize(("name", "params"), VARIANTS)
def test_torch_path_variants(name, params):
    metric = simbench.get_metric(name, **params)
    X, Y = type(metric).example_inputs(np.random.default_rng(11))
    assert _torch_check(metric, X, Y) <= 1e-10


def test_torch_float32_error_is_as_documented():
    """numerics.torch_ops: float32 products, relative error ≤ 1e-5 on well-conditioned
    data (n = 500, d = 32) for CKA, CCA and Procrustes."""
    import torch

    rng = np.random.default_rng(12)
    Z = rng.normal(size=(500, 8))
    X = Z @ rng.normal(size=(8, 32)) + rng.normal(size=(500, 32)) + 2.0
    Y = Z @ rng.normal(size=(8, 32)) + rng.normal(size=(500, 32))
    for name in ("cka", "cca", "procrustes_distance"):
        m = simbench.get_metric(name)
        err = _torch_check(m, X, Y, torch.float32)
        assert err <= 1e-5 * abs(m(X, Y)), (name, err)
        assert err > 0.0  # it really computed in float32


def test_torch_path_bad_input():
    import torch

    cka = simbench.get_metric("cka")
    t = torch.ones(10, 3, dtype=torch.float64)
    t[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        cka.prepare(t)
    with pytest.raises(ValueError, match="2-D"):
        cka.prepare(torch.ones(4, 3, 2))
    cca = simbench.get_metric("cca")
    X, Y = cca.example_inputs(np.random.default_rng(1))
    with pytest.raises(TypeError, match="both"):
        cca.score_prepared(cca.prepare(torch.from_numpy(X)), cca.prepare(Y))

"""Standard errors, intervals and chance levels (MATH.md: Uncertainty and chance of one score).

Coverage is checked against closed-form population values of Gaussian representations
sharing a planted latent ``Z``: ``X = Z A_x + E_x``, ``Y = Z A_y + E_y`` (``Z``, ``E``
standard normal), so ``Σxx = A_xᵀA_x + I``, ``Σyy = A_yᵀA_y + I``, ``Σxy = A_xᵀA_y`` and

- linear CKA: ``||Σxy||_F² / (||Σxx||_F ||Σyy||_F)``;
- mean CCA: the mean singular value of ``Σxx^{-1/2} Σxy Σyy^{-1/2}``;
- Procrustes distance: ``arccos(||Σxy||_* / sqrt(tr Σxx tr Σyy))``.

The latent has full rank (``k = d``): a population canonical correlation of 0 is
estimated with an ``O(d/n)`` upward bias that no interval centred on the estimate covers.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg

import simbench
from simbench.numerics.blocks import (
    BlockMoments,
    block_edges,
    derangement,
    null_permutation,
)
from simbench.numerics.moments import Moments
from simbench.plugin import Score
from simbench.uncertainty import Uncertainty, jackknife_se

D, N, REPS = 5, 1000, 200


def _population():
    rng = np.random.default_rng(7)
    Ax, Ay = rng.normal(size=(D, D)), rng.normal(size=(D, D))
    Sxx, Syy, Sxy = Ax.T @ Ax + np.eye(D), Ay.T @ Ay + np.eye(D), Ax.T @ Ay
    isq = lambda S: np.linalg.inv(scipy.linalg.sqrtm(S).real)  # noqa: E731
    rho = np.linalg.svd(isq(Sxx) @ Sxy @ isq(Syy), compute_uv=False)
    truth = {
        "cka": np.sum(Sxy**2) / math.sqrt(np.sum(Sxx**2) * np.sum(Syy**2)),
        "cca": rho.mean(),
        "procrustes_distance": math.acos(
            np.linalg.svd(Sxy, compute_uv=False).sum() / math.sqrt(np.trace(Sxx) * np.trace(Syy))
        ),
    }
    return Ax, Ay, truth


def _draw(Ax, Ay, seed, n=N):
    g = np.random.default_rng(seed)
    Z = g.normal(size=(n, D))
    return Z @ Ax + g.normal(size=(n, D)), Z @ Ay + g.normal(size=(n, D))


@pytest.mark.parametrize("name", ["cka", "cca", "procrustes_distance"])
def test_interval_covers_the_population_value(name):
    Ax, Ay, truth = _population()
    metric = simbench.get_metric(name)
    hits = 0
    for r in range(REPS):
        s = metric.evaluate(*_draw(Ax, Ay, r), uncertainty={"null_pairings": 0})
        lo, hi = s.ci
        assert lo < s.value < hi and math.isclose(hi - lo, 2 * 1.959963984540054 * s.stderr)
        hits += lo <= truth[name] <= hi
    assert 0.90 <= hits / REPS <= 0.99, f"{name}: coverage {hits / REPS:.3f}"


def test_independent_representations_give_z_near_zero():
    """Under independence θ and the derangement values are exchangeable. ``z`` is
    centred; its spread is below 1 by construction of MATH.md's denominator (it adds
    ``null_sd²`` to ``se²``, both ≈ Var θ, and the jackknife over-estimates the variance
    of a degenerate statistic such as CKA at independence ~2×, Efron–Stein): with R = 4,
    ``sd(z) ≈ sqrt((1 + 1/R)/3) ≈ 0.65``."""
    metric = simbench.get_metric("cka")
    zs = []
    for r in range(REPS):
        g = np.random.default_rng(1000 + r)
        s = metric.evaluate(g.normal(size=(400, D)), g.normal(size=(400, D)), uncertainty=True)
        zs.append(s.z)
    zs = np.asarray(zs)
    assert abs(zs.mean()) < 0.3
    assert 0.6 <= zs.std() <= 1.4, zs.std()
    assert np.mean(np.abs(zs) > 3) < 0.02  # chance cells are not called different


def test_rotated_copy_is_far_from_chance():
    g = np.random.default_rng(3)
    X = g.normal(size=(2000, 10))
    R = np.linalg.qr(g.normal(size=(10, 10)))[0]
    for metric, n in ((simbench.get_metric("cka"), 2000), (simbench.get_metric("cca"), 2000),
                      (simbench.get_metric("rsa", rsm="cosine"), 600)):  # fmt: skip
        s = metric.evaluate(X[:n], (X @ R)[:n], uncertainty=True)
        assert s.z > 10, (metric, s.z)
        assert s.value == pytest.approx(1.0) and s.stderr < 1e-8
    s = simbench.get_metric("procrustes_distance").evaluate(X, X @ R, uncertainty=True)
    assert s.z < -10  # a distance: far *below* its chance level


# -- streamed blocks == in-memory -----------------------------------------------------


@pytest.mark.parametrize("fourth", [False, True])
def test_block_moments_equal_in_memory_statistics(fourth):
    g = np.random.default_rng(0)
    P, units = 3, 57  # 3 rows (positions) per image
    X = g.normal(size=(units * P, 4)) + 5.0
    Y = X[:, :3] @ g.normal(size=(3, 6)) + g.normal(size=(units * P, 6))
    bm = BlockMoments.from_data(X, Y, positions=P, blocks=7, chunk=10, fourth=fourth)
    metric = simbench.get_metric("cka", debiased=fourth)
    tot, ref = bm.total(), Moments.from_arrays(X, Y, fourth=fourth)
    for f in ("mean_x", "sxx", "syy", "sxy"):
        np.testing.assert_allclose(getattr(tot, f), getattr(ref, f), rtol=0, atol=1e-10)
    assert metric(bm) == pytest.approx(metric(X, Y), abs=1e-12)
    edges = bm.edges * P
    seen = set()
    for b, m in bm.leave_one_out():
        seen.add(b)
        keep = np.r_[0 : edges[b], edges[b + 1] : units * P]
        assert abs(metric(m) - metric(X[keep], Y[keep])) < 1e-10
        np.testing.assert_allclose(m.sxy, Moments.from_arrays(X[keep], Y[keep]).sxy, atol=1e-10)
    assert seen == set(range(7))
    # the null: B's image k paired with A's image π(k), positions kept, within chunks
    for r in range(bm.null_pairings):
        perm = null_permutation(units, 0, r, chunk=10)
        rows = (perm[:, None] * P + np.arange(P)).ravel()
        assert abs(metric(bm.null(r)) - metric(X[rows], Y)) < 1e-10


def test_streamed_batches_equal_from_data_and_api():
    g = np.random.default_rng(1)
    X, Y = g.normal(size=(120, 5)), g.normal(size=(120, 4))
    bm = BlockMoments(120, blocks=20, null_pairings=4, seed=3)
    for start in range(0, 120, 32):  # batches straddle blocks
        bm.update(X[start : start + 32], Y[start : start + 32])
    cfg = Uncertainty(seed=3, chunk=32)
    a = simbench.get_metric("cka").evaluate(bm, uncertainty=cfg)
    b = simbench.get_metric("cka").evaluate(X, Y, uncertainty=cfg)
    for f in ("value", "stderr", "null_mean", "null_sd", "z"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-10, abs=1e-14)
    arrays = bm.to_arrays("out")
    back = BlockMoments.from_arrays("out", arrays)
    c = simbench.get_metric("cka").evaluate(back, uncertainty=cfg)
    assert c.stderr == pytest.approx(a.stderr, rel=1e-12) and c.z == pytest.approx(a.z, rel=1e-12)


def test_non_streaming_metric_gets_the_same_machinery():
    """RSA (Gram based) is re-scored on the arrays without each block: the stderr equals
    the jackknife of explicit leave-one-out evaluations."""
    g = np.random.default_rng(2)
    X = g.normal(size=(80, 6))
    Y = X @ g.normal(size=(6, 5)) + g.normal(size=(80, 5))
    rsa = simbench.get_metric("rsa")
    s = rsa.evaluate(X, Y, uncertainty={"blocks": 8, "null_pairings": 3})
    edges = block_edges(80, 8)
    loo = [
        rsa(np.delete(X, np.s_[lo:hi], 0), np.delete(Y, np.s_[lo:hi], 0))
        for lo, hi in itertools.pairwise(edges)
    ]
    assert s.stderr == pytest.approx(jackknife_se(np.array(loo)), rel=1e-12)
    nulls = [rsa(X[null_permutation(80, 0, r)], Y) for r in range(3)]
    assert s.null_mean == pytest.approx(np.mean(nulls)) and s.null_sd == pytest.approx(
        np.std(nulls, ddof=1)
    )
    assert s.z == pytest.approx((s.value - s.null_mean) / math.hypot(s.null_sd, s.stderr))


def test_bootstrap_option_and_monte_carlo_combination():
    g = np.random.default_rng(4)
    X = g.normal(size=(300, 4))
    Y = X + g.normal(size=(300, 4))
    cka = simbench.get_metric("cka")
    jk = cka.evaluate(X, Y, uncertainty=True)
    bs = cka.evaluate(X, Y, uncertainty={"method": "bootstrap", "resamples": 1000})
    assert bs.details["uncertainty"] == "bootstrap"
    assert bs.ci[0] < bs.value < bs.ci[1]
    assert 0.5 < bs.stderr / jk.stderr < 2.0
    with pytest.raises(ValueError, match="1000"):
        cka.evaluate(X, Y, uncertainty={"method": "bootstrap", "resamples": 10})


def test_weight_metric_uses_monte_carlo_error_and_its_zero_point():
    W1, W2 = simbench.get_metric("bures").example_inputs(np.random.default_rng(0))
    bures = simbench.get_metric("bures")
    plain = bures.evaluate(W1, W2)
    s = bures.evaluate(W1, W2, uncertainty=True)
    assert s.value == plain.value and s.stderr == pytest.approx(plain.stderr)  # se_jack = 0
    assert s.null_mean == 0.0 and s.null_sd > 0 and math.isfinite(s.z)


def test_plugin_overriding_evaluate_still_gets_uncertainty():
    class Mine(simbench.Metric):
        name = "mine_test_only"

        def evaluate(self, X, Y=None):
            X, Y = self.validate(X, Y)
            return Score(float(np.corrcoef(X[:, 0], Y[:, 0])[0, 1]))

    g = np.random.default_rng(5)
    X = g.normal(size=(200, 2))
    s = Mine().evaluate(X, X + g.normal(size=(200, 2)), uncertainty=True)
    assert s.stderr > 0 and s.z > 3 and s.null_sd > 0


def test_bad_options_and_inputs():
    X = np.random.default_rng(0).normal(size=(30, 3))
    cka = simbench.get_metric("cka")
    with pytest.raises(ValueError, match="blocks"):
        cka.evaluate(X, X, uncertainty={"blocks": 1})
    with pytest.raises(ValueError, match="null_pairings"):
        cka.evaluate(X, X, uncertainty={"null_pairings": 1})
    with pytest.raises(ValueError, match="unknown"):
        cka.evaluate(X, X, uncertainty={"blockz": 4})
    with pytest.raises(ValueError, match="cannot fill"):
        cka.evaluate(X, X, uncertainty={"blocks": 40})
    with pytest.raises(ValueError, match="no blocks"):
        cka.evaluate(Moments.from_arrays(X, X), uncertainty=True)
    with pytest.raises(ValueError, match="whole number"):
        cka.evaluate(X, X, uncertainty={"positions": 4})
    bm = BlockMoments(30, blocks=3)
    bm.update(X[:10], X[:10])
    with pytest.raises(ValueError, match="accumulated"):
        bm.total()


def test_derangement_has_no_fixed_point():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 250):
        p = derangement(n, rng)
        assert sorted(p) == list(range(n)) and not np.any(p == np.arange(n))
    perm = null_permutation(23, seed=1, r=0, chunk=5)
    assert sorted(perm) == list(range(23))
    assert all(set(perm[i : i + 5]) == set(range(i, min(i + 5, 23))) for i in range(0, 20, 5))


def _registered_metrics() -> list[str]:
    from simbench.registry import default_registry

    return [r.name for r in default_registry().records("metric")]


@pytest.mark.parametrize("name", _registered_metrics())
def test_every_registered_metric_gets_an_interval_and_a_chance_level(name):
    """No metric code needed: each plugin's own example inputs give a finite standard
    error and interval; representation metrics a finite chance level and z."""
    metric = simbench.get_metric(name)
    X, Y = type(metric).example_inputs(np.random.default_rng(0))
    s = metric.evaluate(X, Y, uncertainty=True)
    assert s.value == pytest.approx(metric.evaluate(X, Y).value, rel=1e-12, abs=1e-12)
    assert math.isfinite(s.stderr) and s.stderr >= 0
    assert s.ci[0] <= s.value <= s.ci[1]
    if metric.consumes.value == "representations":
        assert s.stderr > 0 and "uncertainty_error" not in s.details
        assert all(math.isfinite(v) for v in (s.null_mean, s.null_sd, s.z))


def test_report_marks_scores_indistinguishable_from_chance():
    """Depth curves circle, layer matrices hatch, the cells with mean |z| < 3 (and say so);
    layer-matrix cells print ± their standard error."""
    import pandas as pd

    from simbench.report import plots
    from tests.test_report import LAYERS, row

    def rows(z_small: bool) -> pd.DataFrame:
        out = []
        for i, la in enumerate(LAYERS):
            for j, lb in enumerate(LAYERS):
                r = row(layer_a=la, layer_b=lb, alignment="pooled", value=0.9 - 0.1 * abs(i - j))
                r.update(stderr=0.01, z=1.0 if (z_small and i == j == 3) else 40.0)
                out.append(r)
        return pd.DataFrame(out)

    for z_small in (True, False):
        df = rows(z_small)
        depth = list(plots.depth_curves(df, LAYERS))
        mats = list(plots.layer_matrices(df, LAYERS))
        assert len(depth) == 1 and len(mats) == 1
        assert ("circled" in depth[0].caption) is z_small
        assert ("hatched" in mats[0].caption) is z_small
        assert "± its standard error" in mats[0].caption

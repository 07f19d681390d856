"""SRM over all N models of a relation at once (simbench.metrics.srm_joint): planted data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from simbench.metrics.srm import srm_fit_quality
from simbench.metrics.srm_joint import srm_joint


def _rotated_copies(rng, N=5, n=400, d=12, noise=0.0):
    latent = rng.normal(size=(n, d)) * np.linspace(3.0, 0.5, d)
    return {
        f"m{i}": latent @ ortho_group.rvs(d, random_state=10 + i)
        + noise * rng.normal(size=(n, d))
        + rng.normal(size=d) * 5  # offsets: removed by centring
        for i in range(N)
    }


def test_rotated_copies_of_one_latent_are_near_perfect(rng):
    reps = _rotated_copies(rng)
    out = srm_joint(reps)
    assert out.models == [f"m{i}" for i in range(5)]
    assert out.k == 12 and out.n_train + out.n_test == 400
    assert len(out.pairs) == 10
    for scores in out.pairs.values():
        assert scores["shared_correlation"] == pytest.approx(1.0, abs=1e-9)
        assert scores["variance_explained"] == pytest.approx(1.0, abs=1e-9)
    assert out.variance_explained == pytest.approx(1.0, abs=1e-9)
    assert out.variance_explained_train == pytest.approx(1.0, abs=1e-9)
    # every model lands on the same shared responses
    S = [out.transform(m, X) for m, X in reps.items()]
    for Si in S[1:]:
        np.testing.assert_allclose(Si, S[0], atol=1e-8 * np.abs(S[0]).max())
    for W in out.W.values():
        np.testing.assert_allclose(W.T @ W, np.eye(12), atol=1e-12)
    assert out.similarity("m3", "m1") == out.pairs["m1", "m3"]["shared_correlation"]
    assert out.similarity("m2", "m2") == 1.0


def test_independent_noise_is_near_chance(rng):
    n, d, N = 600, 10, 4
    reps = {i: rng.normal(size=(n, d)) for i in range(N)}
    out = srm_joint(reps)
    corr = np.array([s["shared_correlation"] for s in out.pairs.values()])
    # held out, unrelated: |corr| ~ 1/sqrt(n_test k) = 0.018; 6 pairs within 5 sd
    assert np.abs(corr).max() < 5 / np.sqrt(out.n_test * out.k)
    ve = np.array([s["variance_explained"] for s in out.pairs.values()])
    # pair variance explained at k = d is chance k/(2d) = 1/2
    assert np.abs(ve - 0.5).max() < 0.05
    assert out.variance_explained == pytest.approx(1 / N, abs=0.05)


def test_mixed_relation_orders_pairs(rng):
    """Two groups: m0..m2 are noisy rotations of latent A, m3 one of an unrelated B; pairs
    within the group score high, pairs across near zero."""
    n, d = 500, 8
    A = rng.normal(size=(n, d)) * np.linspace(2, 1, d)
    B = rng.normal(size=(n, d)) * np.linspace(2, 1, d)
    reps = {
        f"m{i}": A @ ortho_group.rvs(d, random_state=i) + 0.3 * rng.normal(size=(n, d))
        for i in range(3)
    }
    reps["m3"] = B @ ortho_group.rvs(d, random_state=9)
    out = srm_joint(reps, max_iter=50)
    within = [out.similarity(f"m{i}", f"m{j}") for i, j in ((0, 1), (0, 2), (1, 2))]
    across = [out.similarity(f"m{i}", "m3") for i in range(3)]
    assert min(within) > 0.9
    assert max(abs(a) for a in across) < 0.2


def test_two_models_match_the_srm_metric(rng):
    reps = _rotated_copies(rng, N=2, noise=0.8)
    joint = srm_joint(reps, k=6)
    metric = srm_fit_quality(list(reps.values()), k=6)
    assert joint.variance_explained == pytest.approx(metric["variance_explained"], rel=1e-12)
    assert joint.pairs["m0", "m1"]["variance_explained"] == pytest.approx(
        metric["variance_explained"], rel=1e-12
    )


def test_widths_may_differ_and_k_defaults(rng):
    n = 60
    latent = rng.normal(size=(n, 4))
    reps = {
        "a": latent @ rng.normal(size=(4, 6)),
        "b": latent @ rng.normal(size=(4, 9)),
        "c": latent @ rng.normal(size=(4, 5)),
    }
    out = srm_joint(reps)
    assert out.k == 5  # min width
    assert {m: W.shape for m, W in out.W.items()} == {"a": (6, 5), "b": (9, 5), "c": (5, 5)}
    # more features than training images: k is capped at n_train - 1
    wide = {m: np.hstack([X] * 10) for m, X in reps.items()}
    assert srm_joint(wide).k == min(50, srm_joint(wide).n_train - 1)


@pytest.mark.parametrize(
    "reps, match",
    [
        ({"a": np.ones((10, 3))}, "N >= 2"),
        ([np.ones((10, 3)), np.ones((10, 3))], "mapping"),
        ({"a": np.zeros((10, 3)), "b": np.zeros((11, 3))}, "same samples"),
        ({"a": np.zeros((3, 3)), "b": np.zeros((3, 3))}, "at least"),
        ({1: np.zeros((10, 3)), "1": np.zeros((10, 3))}, "distinct"),
    ],
)
def test_bad_input_is_a_value_error(reps, match):
    with pytest.raises(ValueError, match=match):
        srm_joint(reps)


def test_constant_representations_are_a_value_error():
    with pytest.raises(ValueError, match="constant"):
        srm_joint({"a": np.ones((20, 3)), "b": np.ones((20, 3))})


def test_k_too_large_is_a_value_error(rng):
    with pytest.raises(ValueError, match="exceeds"):
        srm_joint({"a": rng.normal(size=(20, 3)), "b": rng.normal(size=(20, 4))}, k=4)

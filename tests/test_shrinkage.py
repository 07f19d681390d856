"""Eigenvalue shrinkage plugins ``gm`` and ``none`` (MATH.md: Shrinkage; GM eq. 3)."""

from __future__ import annotations

import numpy as np
import pytest

import simbench
from simbench.shrinkage import GMShrinkage, NoShrinkage


def spiked_sample_eigenvalues(
    rng: np.random.Generator, n: int, d: int, spikes: np.ndarray
) -> np.ndarray:
    """Eigenvalues (descending) of XᵀX/n for n samples of N(0, I + Σ l_k v_k v_kᵀ)."""
    V = np.linalg.qr(rng.normal(size=(d, spikes.size)))[0]
    G = rng.normal(size=(n, d))
    X = G + ((G @ V) * (np.sqrt(1.0 + spikes) - 1.0)) @ V.T
    return np.linalg.eigvalsh(X.T @ X / n)[::-1]


def test_registry_lookup() -> None:
    assert isinstance(simbench.get_shrinkage("gm"), GMShrinkage)
    assert isinstance(simbench.get_shrinkage("none"), NoShrinkage)
    with pytest.raises(LookupError, match="gm"):
        simbench.get_shrinkage("gmm")


@pytest.mark.parametrize("gamma", [0.01, 0.25, 1.0, 3.7, 16.0])
def test_gm_inverts_the_spike_map_exactly(gamma: float) -> None:
    # population spike l (above the identity) has sample eigenvalue λ = (1+l)(1+γ/l);
    # above the BBP threshold l > √γ eq. 3 must return l exactly
    ell = np.sqrt(gamma) * np.geomspace(1.001, 1e4, 200)
    lam = (1 + ell) * (1 + gamma / ell)
    got = simbench.get_shrinkage("gm")(lam, gamma)
    np.testing.assert_allclose(got, ell, rtol=1e-9)
    # well-conditioned part: far from the edge the inversion is exact to rounding
    far = ell > 2 * np.sqrt(gamma)
    np.testing.assert_allclose(got[far], ell[far], rtol=1e-12)


def test_gm_hand_computed_value() -> None:
    # γ = 1: λ = 6 > (1+1)² = 4 -> (6-2)/2 + sqrt((6/2)² - 6) = 2 + √3
    got = GMShrinkage()(np.array([6.0]), 1.0)
    assert got[0] == pytest.approx(2 + np.sqrt(3), rel=1e-15)
    # and λ = (1+l)(1+1/l) at l = 2 + √3 is 6
    ell = 2 + np.sqrt(3)
    assert (1 + ell) * (1 + 1 / ell) == pytest.approx(6.0, rel=1e-14)


@pytest.mark.parametrize("gamma", [0.1, 1.0, 4.0])
def test_gm_zeroes_the_bulk_and_jumps_to_sqrt_gamma_at_the_edge(gamma: float) -> None:
    edge = (1 + np.sqrt(gamma)) ** 2
    lam = np.array([0.0, 0.5 * edge, edge, edge * (1 + 1e-12), 1.5 * edge])
    got = GMShrinkage()(lam, gamma)
    assert got[0] == got[1] == got[2] == 0.0
    # just above the edge the estimate is the BBP threshold l = √γ (eq. 3 at λ = edge)
    assert got[3] == pytest.approx(np.sqrt(gamma), rel=1e-5)
    assert got[4] > np.sqrt(gamma)
    assert np.all(np.diff(GMShrinkage()(np.linspace(edge * 1.0001, 50 * edge, 500), gamma)) > 0)


def test_gm_recovers_planted_spikes_from_a_large_sample() -> None:
    rng = np.random.default_rng(0)
    n, d = 8000, 400
    spikes = np.array([20.0, 10.0, 5.0, 2.0])
    lam = spiked_sample_eigenvalues(rng, n, d, spikes)
    got = GMShrinkage()(lam, d / n)
    np.testing.assert_allclose(got[:4], spikes, rtol=0.05)
    assert np.all(got[4:] == 0.0), "the Marchenko–Pastur bulk must be shrunk to 0"


def test_gm_removes_the_sampling_bias_at_high_gamma() -> None:
    # γ = 1: the sample spikes sit at (1+l)(1+1/l), well above 1+l (bias (1+l)/l² of l);
    # eq. 3 undoes that. Tolerances ≈ 3 Monte-Carlo standard deviations at n = 1200.
    rng = np.random.default_rng(1)
    n = d = 1200
    spikes = np.array([6.0, 4.0, 2.5])
    lam = spiked_sample_eigenvalues(rng, n, d, spikes)
    predicted = (1 + spikes) * (1 + 1 / spikes)
    np.testing.assert_allclose(lam[:3], predicted, rtol=0.08)
    raw_error = np.abs(lam[:3] - 1 - spikes) / spikes
    got = GMShrinkage()(lam, 1.0)
    shrunk_error = np.abs(got[:3] - spikes) / spikes
    assert np.all(raw_error > 0.1) and np.all(shrunk_error < 0.15)
    assert np.all(shrunk_error < raw_error)
    assert np.count_nonzero(got) == 3


def test_gm_preserves_shape_and_order() -> None:
    lam = np.array([[9.0, 1.0], [0.2, 30.0]])
    got = GMShrinkage()(lam, 0.5)
    assert got.shape == (2, 2)
    assert got[0, 1] == got[1, 0] == 0.0 and got[1, 1] > got[0, 0] > 0


def test_none_is_the_identity_with_round_off_clipped() -> None:
    lam = np.array([5.0, 1.0, 0.0, -1e-17])
    got = simbench.get_shrinkage("none")(lam, 2.0)
    np.testing.assert_array_equal(got, [5.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize("name", ["gm", "none"])
@pytest.mark.parametrize("gamma", [0.0, -1.0, np.nan, np.inf])
def test_bad_gamma_is_a_value_error(name: str, gamma: float) -> None:
    with pytest.raises(ValueError, match="gamma"):
        simbench.get_shrinkage(name)(np.array([3.0, 1.0]), gamma)


@pytest.mark.parametrize("name", ["gm", "none"])
def test_non_finite_eigenvalues_are_a_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="NaN"):
        simbench.get_shrinkage(name)(np.array([3.0, np.nan]), 0.5)

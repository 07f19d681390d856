"""Bures cosine and normalised Bures S (GM eqs. 5-6) at d = 4096, n_out = 512: low rank vs dense.

simbench keeps each shrunk covariance as ``V diag(s) Vᵀ`` and works on ``r × r`` cores
(MATH.md: "never form a d×d matrix square root"). The baselines form the ``d × d`` roots:

- ``dense eigh root``: ``C = WᵀW/(n_out σ²)``, ``eigh``, GM shrinkage, ``V diag(√s) Vᵀ``,
  then the nuclear norm of ``C1^½ C2^½`` by SVD. Timed with a single round.
- ``scipy sqrtm``: the same with ``scipy.linalg.sqrtm`` (Schur method) for the roots. One
  ``sqrtm`` at d = 4096 takes minutes on 2 cores (see README), so this one runs at
  d = 1024, n_out = 128 (the same aspect ratio γ = 8), single round.

Normalised S (``bures``, 8 draws) is timed for simbench only: a dense version needs a
d×d Haar rotation, a d×d root and a d×d SVD per draw and direction (32 of each), far
beyond this suite's time budget. Its formula is checked against the dense cosine and
simbench's own Monte-Carlo draws (which a direct implementation cannot reproduce
number for number).
"""

from __future__ import annotations

import baselines
import numpy as np
import pytest
from conftest import QUICK, relative_error, shape_id

import simbench

TOL = 1e-8
LARGE = (64, 512) if QUICK else (512, 4096)  # (n_out, d_in)
SQRTM = (16, 128) if QUICK else (128, 1024)

PARAMS = [
    pytest.param(shape, method, role, id=f"{method}-{shape_id(*shape)}-{role}")
    for shape, method in ((LARGE, "eigh"), (SQRTM, "sqrtm"))
    for role in ("simbench", "baseline")
]


@pytest.mark.parametrize(("shape", "method", "role"), PARAMS)
def test_bures_cosine_low_rank_vs_dense(benchmark, recorder, data, shape, method, role):
    W1, W2 = data.weights(*shape)
    case = f"bures_cosine vs {'dense eigh root' if method == 'eigh' else 'scipy sqrtm'}"
    sid = shape_id(*shape) + " W"
    metric = simbench.get_metric("bures_cosine")
    fns = {
        "simbench": lambda: metric(W1, W2),
        "baseline": lambda: baselines.bures_cosine(W1, W2, method=method),
    }
    recorder.time(benchmark, case, sid, role, fns[role])
    if role == "baseline":  # runs second: both values exist
        got = recorder.evaluate(case, sid, "simbench", fns["simbench"])
        want = recorder.evaluate(case, sid, "baseline", fns["baseline"])
        assert relative_error(got, want) <= TOL, f"low rank {got!r} vs {method} {want!r}"


def test_normalised_bures_low_rank(benchmark, recorder, data):
    W1, W2 = data.weights(*LARGE)
    sid = shape_id(*LARGE) + " W"
    metric = simbench.get_metric("bures")  # draws=8, seed=0, symmetrised
    score = recorder.time(
        benchmark, "bures (normalised S)", sid, "simbench", lambda: metric.evaluate(W1, W2)
    )
    # the formula, from the dense cosine and simbench's reported Monte-Carlo means
    cos = recorder.evaluate(
        "bures_cosine vs dense eigh root", sid, "baseline", lambda: baselines.bures_cosine(W1, W2)
    )
    d = score.details
    want = baselines.normalized_bures(cos, (d["z_x"], d["z_y"]), (d["u_x"], d["u_y"]))
    assert relative_error(score.value, want) <= TOL
    assert score.stderr is not None and 0 < score.stderr < 0.1 * abs(score.value)


@pytest.mark.parametrize("shape", [LARGE, SQRTM], ids=lambda s: f"floor-{shape_id(*s)}")
def test_weights_floor(benchmark, recorder, data, shape):
    """``W1ᵀW1 + W2ᵀW2 + W1ᵀW2``: what forming the d×d covariances alone costs."""
    W1, W2 = data.weights(*shape)
    sid = shape_id(*shape) + " W"
    G = recorder.time(benchmark, "floor", sid, "floor", lambda: baselines.gemm_floor(W1, W2))
    np.testing.assert_allclose(np.trace(G[0]), np.sum(W1 * W1), rtol=1e-12)

"""Per-model side terms and per-pair cross terms (simbench.numerics.block_parts): a pair's
block moments assembled from its two sides and its cross terms are, bit for bit, those of
one paired BlockMoments fed the same batches (MATH.md: Uncertainty and chance)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simbench.numerics.block_parts import CrossBlocks, SideBlocks, assemble, paired_blocks
from simbench.numerics.blocks import BlockMoments


def _batches(n: int, per: int, chunk: int):
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        yield slice(start * per, (start + k) * per), k


def _both(X, Y, n, per, chunk, blocks, nulls, seed, fourth):
    """(paired BlockMoments arrays, assembled arrays) of the same batches."""
    bm = BlockMoments(n, blocks, nulls, seed, fourth)
    sa, sb = SideBlocks(n, blocks, fourth), SideBlocks(n, blocks, fourth)
    for sl, k in _batches(n, per, chunk):
        bm.update(X[sl], Y[sl], units=k)
        sa.update(X[sl], units=k)
        sb.update(Y[sl], units=k)
    # the sides go through their stored form, as the runner's side entries do
    ra, rb = SideBlocks.from_arrays(sa.to_arrays()), SideBlocks.from_arrays(sb.to_arrays())
    cross = CrossBlocks(ra, rb, nulls, seed)
    for sl, k in _batches(n, per, chunk):
        cross.update(X[sl], Y[sl], units=k)
    return bm, assemble("out", sa.to_arrays(), sb.to_arrays(), cross.to_arrays())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(6, 40),
    per=st.integers(1, 4),
    chunk=st.integers(1, 17),
    dx=st.integers(1, 6),
    dy=st.integers(1, 6),
    nulls=st.integers(0, 3),
    fourth=st.booleans(),
    offset=st.sampled_from([0.0, 30.0]),  # a large mean: scatter formed on centred data
    seed=st.integers(0, 2**16),
)
def test_assembled_equals_the_paired_accumulation(
    n, per, chunk, dx, dy, nulls, fourth, offset, seed
):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n * per, dx)) + offset
    Y = rng.normal(size=(n * per, dy)) * 3.0
    bm, got = _both(X, Y, n, per, chunk, min(5, n), nulls, seed, fourth)
    want = bm.to_arrays("out")
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_paired_blocks_give_the_same_scores_and_nulls():
    rng = np.random.default_rng(1)
    n, per = 30, 2
    X = rng.normal(size=(n * per, 5))
    Y = X[:, :4] @ rng.normal(size=(4, 4)) + 0.5 * rng.normal(size=(n * per, 4))
    bm, got = _both(X, Y, n, per, 7, 6, 2, 3, True)
    split = BlockMoments.from_arrays("out", got)
    assert split.total().sxy.tolist() == bm.total().sxy.tolist()
    assert split.null(1).hsic_unbiased() == bm.null(1).hsic_unbiased()
    loo = [m.sxy for _, m in split.leave_one_out()]
    np.testing.assert_array_equal(loo, [m.sxy for _, m in bm.leave_one_out()])
    sa = SideBlocks(n, 6, True).update(X[: 7 * per], units=7)
    assert not sa.complete


def test_the_side_of_one_model_is_shared_by_all_its_pairs():
    """One side, two partners: each pair assembles its own exact moments."""
    rng = np.random.default_rng(2)
    n = 24
    A, B, C = (rng.normal(size=(n, d)) for d in (3, 4, 2))
    sides = {}
    for name, Z in (("a", A), ("b", B), ("c", C)):
        s = SideBlocks(n, 4)
        for sl, k in _batches(n, 1, 10):
            s.update(Z[sl], units=k)
        sides[name] = s
    for other, Z in (("b", B), ("c", C)):
        cross = CrossBlocks(sides["a"], sides[other], 1, 0)
        for sl, k in _batches(n, 1, 10):
            cross.update(A[sl], Z[sl], units=k)
        got = paired_blocks("out", sides["a"].to_arrays(), sides[other].to_arrays(),
                            cross.to_arrays()).total()  # fmt: skip
        want = BlockMoments.from_data(A, Z, blocks=4, null_pairings=1, chunk=10).total()
        np.testing.assert_array_equal(got.sxy, want.sxy)
        np.testing.assert_allclose(got.sxy, (A - A.mean(0)).T @ (Z - Z.mean(0)), atol=1e-12)


def test_mismatched_or_incomplete_parts_are_refused():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 3))
    a = SideBlocks(20, 4).update(X, units=20)
    with pytest.raises(ValueError, match="complete"):
        CrossBlocks(a, SideBlocks(20, 4), 1)
    with pytest.raises(ValueError, match="different probe blocks"):
        CrossBlocks(a, SideBlocks(20, 5).update(X, units=20), 1)
    with pytest.raises(ValueError, match="null_pairings"):
        CrossBlocks(a, a, -1)
    cross = CrossBlocks(a, a, 1)
    with pytest.raises(ValueError, match="only 0 of the 20"):
        cross.to_arrays()
    with pytest.raises(ValueError, match="same samples"):
        cross.update(X, X[:10], units=20)
    with pytest.raises(ValueError, match="more than the 10"):
        SideBlocks(10, 2).update(X, units=20)
    with pytest.raises(ValueError, match="cannot hold"):
        SideBlocks(20, 2).update(X, units=3)
    with pytest.raises(ValueError, match="overflow"), np.errstate(all="ignore"):
        big = SideBlocks(20, 4).update(X * 1e200, units=20)
        assert big.complete

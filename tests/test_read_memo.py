"""Cache entries kept per process while their files are unchanged (simbench.runner.
read_memo): a model's side entries and stores are read once for its N - 1 pairs, and a
rewritten or damaged entry is never served from memory."""

from __future__ import annotations

import os
import warnings

import numpy as np

from simbench.runner.cache import Cache
from simbench.runner.read_memo import ReadMemo


def _loader(cache: Cache, key: str, calls: list):
    def load():
        calls.append(key)
        got = cache.get_arrays("side", key)
        return None if got is None else got[0]

    return load


def test_an_unchanged_entry_is_read_once_and_a_rewritten_one_again(tmp_path):
    cache = Cache(tmp_path)
    cache.put_arrays("side", "k1", {"x": np.arange(3.0)})
    memo, calls = ReadMemo(1 << 20, 8, lambda a: sum(v.nbytes for v in a.values())), []
    for _ in range(3):
        got = memo.get(cache, "side", "k1", _loader(cache, "k1", calls))
        np.testing.assert_array_equal(got["x"], [0.0, 1.0, 2.0])
    assert calls == ["k1"]
    cache.put_arrays("side", "k1", {"x": np.arange(4.0)})  # recomputed: new file
    assert memo.get(cache, "side", "k1", _loader(cache, "k1", calls))["x"].shape == (4,)
    assert calls == ["k1", "k1"]


def test_a_damaged_entry_is_not_served_from_memory(tmp_path):
    cache = Cache(tmp_path)
    cache.put_arrays("side", "k1", {"x": np.arange(1000.0)})
    memo, calls = ReadMemo(1 << 20, 8, lambda a: 0), []
    memo.get(cache, "side", "k1", _loader(cache, "k1", calls))
    path = cache.path("side", "k1", "npz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # a modification time other than the one read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert memo.get(cache, "side", "k1", _loader(cache, "k1", calls)) is None
    assert calls == ["k1", "k1"]


def test_an_unverified_read_does_not_serve_a_verified_one_and_the_memo_is_bounded(tmp_path):
    cache = Cache(tmp_path)
    for k in ("a", "b", "c"):
        cache.put_arrays("side", k, {"x": np.zeros(100)})
    memo, calls = ReadMemo(1600, 8, lambda a: sum(v.nbytes for v in a.values())), []
    memo.get(cache, "side", "a", _loader(cache, "a", calls), verified=False)
    memo.get(cache, "side", "a", _loader(cache, "a", calls), verified=False)
    memo.get(cache, "side", "a", _loader(cache, "a", calls), verified=True)
    assert calls == ["a", "a"]
    memo.get(cache, "side", "b", _loader(cache, "b", calls))
    memo.get(cache, "side", "c", _loader(cache, "c", calls))  # 3 x 800 B > 1600 B: a out
    memo.get(cache, "side", "a", _loader(cache, "a", calls))
    assert calls == ["a", "a", "b", "c", "a"]

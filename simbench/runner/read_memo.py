"""Cache entries read once per process while their files are unchanged.

Over ``N`` models each model's store and side entries are read by its ``N − 1`` pairs;
when these run in one process (the local executor's jobs, a SLURM array task holding
several pairs) re-opening and re-hashing them is most of a pair job's input cost. An
entry is reused while its ``.npz`` and sidecar keep the inode, size and modification
time they had when it was read and checked; any rewrite (a recomputed entry, a repair)
changes them, and the next read goes to the cache again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from simbench.runner.cache import Cache

__all__ = ["ReadMemo"]


class ReadMemo:
    """Least-recently-used memo of read cache entries, bounded by ``max_bytes`` (as
    ``size(value)`` counts them) and ``max_items``."""

    def __init__(self, max_bytes: int, max_items: int, size: Callable[[Any], int]):
        self.max_bytes, self.max_items, self._size = max_bytes, max_items, size
        self._items: OrderedDict[tuple[str, ...], tuple[tuple, bool, Any]] = OrderedDict()

    @staticmethod
    def signature(cache: Cache, stage: str, key: str) -> tuple | None:
        try:
            st = [cache.path(stage, key, e).stat() for e in ("npz", "npz.json")]
        except FileNotFoundError:
            return None
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in st)

    def get(
        self,
        cache: Cache,
        stage: str,
        key: str,
        load: Callable[[], Any],
        verified: bool = True,
        tag: str = "",
    ) -> Any:
        """The entry ``load()`` reads (``None``: missing or corrupt, not kept); a kept one
        when its files are unchanged and it was read with at least this verification
        (``tag``: what else the read checked, e.g. the entry's inputs)."""
        memo = (str(cache.root), stage, key, tag)
        sig = self.signature(cache, stage, key)
        hit = self._items.get(memo)
        if hit is not None and sig is not None and hit[0] == sig and (hit[1] or not verified):
            self._items.move_to_end(memo)
            return hit[2]
        value = load()
        if value is None:
            self._items.pop(memo, None)
            return None
        if sig is not None and sig == self.signature(cache, stage, key):
            self._keep(memo, sig, verified, value)
        return value

    def remember(
        self, cache: Cache, stage: str, key: str, value: Any, verified: bool = True, tag: str = ""
    ) -> None:
        """Keep ``value``, just written as the entry ``(stage, key)`` by this process."""
        sig = self.signature(cache, stage, key)
        if sig is not None:
            self._keep((str(cache.root), stage, key, tag), sig, verified, value)

    def _keep(self, memo: tuple[str, ...], sig: tuple, verified: bool, value: Any) -> None:
        self._items[memo] = (sig, verified, value)
        while len(self._items) > 1 and (
            len(self._items) > self.max_items
            or sum(self._size(v[2]) for v in self._items.values()) > self.max_bytes
        ):
            self._items.popitem(last=False)

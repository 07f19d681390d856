"""One lock per cache entry, so that concurrent runs never compute the same entry twice.

A job takes the exclusive lock of each output it is about to compute (an empty file
``.<key>.lock`` beside the entry; ``models/.<run key>.lock`` for a training run), then
looks again: an output that another run wrote while this one waited is read, not
recomputed. Locks are ``flock(2)`` locks, held by the open file: the kernel releases them
when the holder exits or is killed (``SIGKILL``, a node lost), so a dead run never
blocks a live one. Lock files are left in place (removing them would race with a
waiting process); they are empty.

Shared file systems, as far as they allow:

- local disks: exact, between processes and threads;
- NFS (v3 with ``lockd``/NLM, v4): Linux emulates ``flock`` with byte-range locks that the
  server arbitrates, so locks hold across machines; ``nolock``/``local_lock`` mounts make
  them local to each machine;
- Lustre: across nodes only when mounted with ``-o flock``; with ``localflock`` only
  within a node; with ``noflock`` locking fails;
- where locking fails (``ENOLCK``, ``ENOSYS``, ``EOPNOTSUPP``...) simbench warns once and
  runs without locks: concurrent runs may then compute an entry twice, but every write
  stays atomic and verified, so results are never mixed up.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["CacheLockWarning", "lock_path", "locked"]

_warned: set[str] = set()


class CacheLockWarning(UserWarning):
    """File locks are unavailable on the cache's file system; runs go on without them."""


def lock_path(entry: str | os.PathLike) -> Path:
    """The lock file of a cache entry (``<stem>.json``, ``<stem>.npz`` or a run folder)."""
    entry = Path(entry)
    return entry.with_name(f".{entry.name.split('.', 1)[0]}.lock")


@contextlib.contextmanager
def locked(entries: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Hold the exclusive locks of ``entries`` (taken in sorted order, so that two jobs
    locking overlapping sets cannot deadlock); wait as long as another process holds one."""
    import fcntl

    with contextlib.ExitStack() as stack:
        for path in sorted({lock_path(e) for e in entries}):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                root = str(path.parent.parent)
                if root not in _warned:
                    _warned.add(root)
                    warnings.warn(
                        f"cannot lock {path} ({exc}); concurrent runs on this cache may "
                        "compute the same entry twice (see simbench.runner.locks)",
                        CacheLockWarning,
                        stacklevel=3,
                    )
        yield

"""Atomic file writes and file hashes shared by the checkpoints and the runner's cache.

DEVELOPERS.md "Nothing is lost": results and checkpoints are written to a unique
temporary file in the target's folder, then ``os.replace``-d into place, so a killed
process leaves the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success (optionally fsync and)
    ``os.replace`` it onto ``path``; on failure remove it.

    The name is unique per process and call, on the same file system (so the rename is
    atomic); not ``mkstemp``, whose 0600 mode would survive the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

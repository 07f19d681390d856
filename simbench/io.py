"""Atomic file writes and file hashes shared by the checkpoints and the runner's cache.

DEVELOPERS.md "Nothing is lost": results and checkpoints are written to a unique
temporary file in the target's folder, then ``os.replace``-d into place, so a killed
process leaves the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

#: 8 hex digits naming this machine in temporary file names (a hostname may hold dots)
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
#: ``.<name>.<host>-<pid>.<12 hex>.tmp`` (and the older ``.<name>.<pid>.<12 hex>.tmp``)
_TEMP_RE = re.compile(r"^\..+\.(?:(?P<host>[0-9a-f]{8})-)?(?P<pid>\d+)\.[0-9a-f]{12}\.tmp$")
#: a temporary file untouched for this long is abandoned whoever wrote it (seconds)
STALE_TEMP_AGE_S = 3600.0


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux exposes it
    (``/proc/self/status``); elsewhere set and restored at once under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def temp_path(path: str | os.PathLike) -> Path:
    """A unique temporary name next to ``path`` (``.<name>.<host>-<pid>.<12 hex>.tmp``),
    removed by :func:`remove_stale_temps` once its writer is gone."""
    path = Path(path)
    return path.parent / f".{path.name}.{_HOST}-{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success (optionally fsync and)
    ``os.replace`` it onto ``path``; on failure remove it.

    The name is unique per process and call, on the same file system (so the rename is
    atomic); not ``mkstemp``, whose 0600 mode would survive the rename. Before the rename
    the file gets mode ``0o666 & ~umask`` (0644 under the usual umask 022), whatever the
    writer created it with (safetensors writes 0600), so every output honours the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(root: str | os.PathLike, max_age_s: float = STALE_TEMP_AGE_S) -> int:
    """Delete the temporary files of interrupted :func:`atomic_path` writes under ``root``
    (recursively); return how many.

    Only abandoned ones: written on this machine by a process that no longer exists, or
    (any machine: the folder may be shared) not modified for ``max_age_s``. A write in
    progress, here or on another node, is never touched (a reused pid only delays the
    removal until the file is ``max_age_s`` old).
    """
    removed = 0
    now = time.time()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            m = _TEMP_RE.match(name)
            if m is None:
                continue
            path = os.path.join(folder, name)
            try:
                age = now - os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            dead = m["host"] == _HOST and not _alive(int(m["pid"]))
            if dead or age > max_age_s:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
    return removed

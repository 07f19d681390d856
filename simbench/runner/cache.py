"""Content-addressed cache: ``(stage, key) -> file``, written atomically, verified on read.

Layout under the cache root::

    <stage>/<key[:2]>/<key>.json        a JSON record (score cell, failed alignment, checks)
    <stage>/<key[:2]>/<key>.npz         arrays (extract, align, eigvec) ...
    <stage>/<key[:2]>/<key>.npz.json    ... and their sidecar: {"sha256", "size", "meta"}

A JSON record is ``{"sha256": H, "record": {...}}`` with ``H`` the SHA-256 of the
record's canonical JSON (sorted keys, no spaces), so a record checks itself. An array
file is complete iff its sidecar exists and the file's SHA-256 matches it (the sidecar
is written last). Every file is written to a unique temporary name in the same folder
and ``os.replace``-d into place, so readers (other jobs, other machines on a shared file
system) see either nothing or a whole file. A file that fails its checksum (truncated,
overwritten, half-copied, or lost in a power failure: files are not fsync-ed) is
reported with a :class:`CacheCorruptionWarning`, deleted and treated as missing, so
that the stage producing it runs again.

Keys are :func:`make_key` hashes of exactly the inputs and configuration of a stage
(see :mod:`simbench.runner.graph`).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from simbench.io import atomic_path, sha256_file

__all__ = ["Cache", "CacheCorruptionWarning", "atomic_write_bytes", "canonical_json", "make_key"]


class CacheCorruptionWarning(UserWarning):
    """A cache file failed its checksum (or could not be parsed); it will be recomputed."""


def _plain(obj: Any) -> Any:
    """JSON-able version of ``obj``: tuples -> lists, numpy scalars -> Python, non-finite
    floats -> ``None`` (strict JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _plain(obj.value)
    return obj


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of ``obj`` (sorted keys, no whitespace, NaN -> null)."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def make_key(*parts: Any) -> str:
    """A 24-hex-digit content address: SHA-256 of the canonical JSON of ``parts``."""
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:24]


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically: a unique temporary file in the same folder,
    then ``os.replace``. A killed process leaves the old file or the new one, never a
    mix. ``fsync`` also survives power loss; the cache does without it (a file that a
    crash left empty or short fails its checksum and is recomputed), because one fsync
    per score cell would dominate the cost of cheap cells."""
    path = Path(path)
    with atomic_path(path, fsync) as tmp:
        tmp.write_bytes(data)
    return path


class Cache:
    """The content-addressed store of one suite (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    # -- paths ------------------------------------------------------------------------
    def path(self, stage: str, key: str, ext: str) -> Path:
        """Where ``(stage, key)`` lives; ``ext`` is ``"json"`` or ``"npz"``."""
        if not key or "/" in key or "." in key:
            raise ValueError(f"bad cache key {key!r}")
        return self.root / stage / key[:2] / f"{key}.{ext}"

    def _warn(self, path: Path, why: str) -> None:
        warnings.warn(
            f"cache file {path} is corrupt ({why}); it is discarded and will be recomputed",
            CacheCorruptionWarning,
            stacklevel=3,
        )

    def _discard(self, *paths: Path) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    # -- JSON records -----------------------------------------------------------------
    def put_json(self, stage: str, key: str, record: Mapping[str, Any]) -> Path:
        """Store ``record`` (JSON-able; NaN/inf become null) under ``(stage, key)``."""
        body = _plain(record)
        text = canonical_json(body)
        digest = hashlib.sha256(text.encode()).hexdigest()
        data = json.dumps({"sha256": digest, "record": body}, sort_keys=True, allow_nan=False)
        return atomic_write_bytes(self.path(stage, key, "json"), (data + "\n").encode())

    def get_json(self, stage: str, key: str, repair: bool = True) -> dict[str, Any] | None:
        """The record of ``(stage, key)``, or ``None`` if missing or corrupt (then, with
        ``repair``, warned about and deleted)."""
        path = self.path(stage, key, "json")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            outer = json.loads(raw)
            record = outer["record"]
            ok = hashlib.sha256(canonical_json(record).encode()).hexdigest() == outer["sha256"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            ok, record = False, None
        if not ok:
            if repair:
                self._warn(path, "checksum mismatch or unreadable JSON")
                self._discard(path)
            return None
        return record

    def has_json(self, stage: str, key: str, verify: bool = True) -> bool:
        """Whether a valid record exists (``verify=False``: the file exists)."""
        if not verify:
            return self.path(stage, key, "json").is_file()
        return self.get_json(stage, key) is not None

    # -- arrays -----------------------------------------------------------------------
    def put_arrays(
        self,
        stage: str,
        key: str,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any] | None = None,
    ) -> Path:
        """Store ``arrays`` as an uncompressed ``.npz`` plus a sidecar with its SHA-256 and
        ``meta``; the sidecar is written last (it marks completeness)."""
        path = self.path(stage, key, "npz")
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        data = buf.getvalue()
        atomic_write_bytes(path, data)
        side = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "meta": meta or {}}
        sidecar = path.with_name(path.name + ".json")
        atomic_write_bytes(sidecar, (canonical_json(side) + "\n").encode())
        return path

    def _array_status(
        self, stage: str, key: str, verify: bool, repair: bool = True
    ) -> tuple[bool, dict | None]:
        path = self.path(stage, key, "npz")
        sidecar = path.with_name(path.name + ".json")
        bad: tuple[Path, ...] = ()
        why = ""
        meta: dict | None = None
        if not sidecar.is_file():
            # no sidecar: never written, or the writer died between the two files
            if repair and path.is_file():
                self._discard(path)
            return False, None
        try:
            side = json.loads(sidecar.read_bytes())
            expected, size, meta = side["sha256"], int(side["size"]), side.get("meta", {})
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            bad, why = (sidecar, path), f"unreadable sidecar {sidecar.name}"
        else:
            try:
                actual_size = path.stat().st_size
            except FileNotFoundError:
                bad, why = (sidecar,), "file missing while its sidecar exists"
            else:
                if actual_size != size or (verify and sha256_file(path) != expected):
                    bad, why = (sidecar, path), f"SHA-256 does not match {sidecar.name}"
        if bad:
            if repair:
                self._warn(path, why)
                self._discard(*bad)
            return False, None
        return True, meta

    def has_arrays(self, stage: str, key: str, verify: bool = True, repair: bool = True) -> bool:
        """Whether a complete array file exists. ``verify`` checks its SHA-256 (else only
        its sidecar and size); ``repair`` warns about and deletes a corrupt one."""
        return self._array_status(stage, key, verify, repair)[0]

    def get_arrays(self, stage: str, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        """``(arrays, meta)`` of ``(stage, key)`` (SHA-256 verified), or ``None``."""
        ok, meta = self._array_status(stage, key, verify=True)
        if not ok:
            return None
        path = self.path(stage, key, "npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}, meta or {}
        except (OSError, ValueError) as exc:  # verified but unreadable: a bug or a race
            self._warn(path, f"unreadable: {exc}")
            self.discard(stage, key)
            return None

    # -- maintenance --------------------------------------------------------------------
    def discard(self, stage: str, key: str) -> None:
        """Remove ``(stage, key)`` (all its files) if present."""
        for ext in ("json", "npz", "npz.json"):
            self._discard(self.path(stage, key, ext))

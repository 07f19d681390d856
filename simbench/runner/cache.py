"""Content-addressed cache: ``(stage, key) -> file``, written atomically, verified on read.

Layout under the cache root::

    <stage>/<key[:2]>/<key>.json        a JSON record (score cell, failed alignment, checks)
    <stage>/<key[:2]>/<key>.npz         arrays (extract, align, eigvec) ...
    <stage>/<key[:2]>/<key>.npz.json    ... and their sidecar: {"stage", "key", "sha256", ...}

A JSON record is ``{"stage", "key", "inputs", "sha256": H, "record": {...}}`` with
``H`` the SHA-256 of the canonical JSON (sorted keys, no spaces) of stage, key, inputs
and record, so a record checks itself *and the entry it was written for*. An array file
is complete iff its sidecar exists and the file's SHA-256 matches it (the sidecar is
written last); the sidecar names the stage, key and inputs, and the ``.npz`` holds its
own ``__key__`` (``"<stage>/<key>"``). ``inputs`` are the keys of the entries a record
was computed from (an extract file's two models, an alignment's extract file...).
A record found under another key or computed from other inputs than expected (a file
copied or moved by hand, a bug) is reported with a :class:`CacheKeyMismatchWarning`
naming both keys, deleted and recomputed.

Every file is written to a unique temporary name in the same folder and
``os.replace``-d into place, so readers (other jobs, other machines on a shared file
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
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simbench.io import atomic_path, sha256_file

__all__ = [
    "Cache",
    "CacheCorruptionWarning",
    "CacheKeyMismatchWarning",
    "atomic_write_bytes",
    "canonical_json",
    "make_key",
]

#: the array inside every ``.npz`` of the cache naming its entry (``"<stage>/<key>"``)
NPZ_KEY = "__key__"
_LEGACY_WARNED: set[str] = set()  # caches already warned about files of the older format


class CacheCorruptionWarning(UserWarning):
    """A cache file failed its checksum (or could not be parsed); it will be recomputed."""


class CacheKeyMismatchWarning(CacheCorruptionWarning):
    """A cache file is intact but belongs to another key (or other inputs): copied or
    moved under a name it was not written for. It is discarded and recomputed."""


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

    def _legacy(self, *paths: Path) -> None:
        """Discard files of the format before key binding, warning once per cache."""
        root = str(self.root)
        if root not in _LEGACY_WARNED:
            _LEGACY_WARNED.add(root)
            warnings.warn(
                f"cache {root} holds files written by an older simbench, not bound to their "
                "keys; they are recomputed as they are needed",
                CacheCorruptionWarning,
                stacklevel=4,
            )
        self._discard(*paths)

    def _warn_key(self, path: Path, stage: str, key: str, found: Any, inputs: Any) -> None:
        if found[:2] != [stage, key]:
            why = f"it holds the record of {found[0]}/{found[1]}, not {stage}/{key}"
        else:
            why = f"{stage}/{key} was computed from inputs {found[2]}, expected {list(inputs)}"
        warnings.warn(
            f"cache file {path}: {why}; it is discarded and will be recomputed",
            CacheKeyMismatchWarning,
            stacklevel=3,
        )

    def _discard(self, *paths: Path) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    # -- JSON records -----------------------------------------------------------------
    def put_json(
        self,
        stage: str,
        key: str,
        record: Mapping[str, Any],
        inputs: Sequence[str] = (),
    ) -> Path:
        """Store ``record`` (JSON-able; NaN/inf become null) under ``(stage, key)``, bound
        to that key and to the keys of its ``inputs``."""
        body = _plain(record)
        head = {"stage": stage, "key": key, "inputs": [str(i) for i in inputs]}
        digest = hashlib.sha256(canonical_json({**head, "record": body}).encode()).hexdigest()
        data = json.dumps(
            {**head, "sha256": digest, "record": body}, sort_keys=True, allow_nan=False
        )
        return atomic_write_bytes(self.path(stage, key, "json"), (data + "\n").encode())

    def get_json(
        self,
        stage: str,
        key: str,
        repair: bool = True,
        inputs: Sequence[str] | None = None,
    ) -> dict[str, Any] | None:
        """The record of ``(stage, key)``, or ``None`` if missing, corrupt, written for
        another key or (``inputs`` given) computed from other inputs; then, with
        ``repair``, warned about and deleted."""
        path = self.path(stage, key, "json")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            outer = json.loads(raw)
            record = outer["record"]
            if isinstance(outer, dict) and "key" not in outer and "sha256" in outer:
                if repair:  # an older simbench's record (no key binding): recompute
                    self._legacy(path)
                return None
            head = {k: outer[k] for k in ("stage", "key", "inputs")}
            text = canonical_json({**head, "record": record})
            ok = hashlib.sha256(text.encode()).hexdigest() == outer["sha256"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            ok, record, head = False, None, {}
        if not ok:
            if repair:
                self._warn(path, "checksum mismatch or unreadable JSON")
                self._discard(path)
            return None
        found = [head["stage"], head["key"], head["inputs"]]
        if found[:2] != [stage, key] or (inputs is not None and found[2] != list(inputs)):
            if repair:
                self._warn_key(path, stage, key, found, inputs or [])
                self._discard(path)
            return None
        return record

    def has_json(
        self, stage: str, key: str, verify: bool = True, inputs: Sequence[str] | None = None
    ) -> bool:
        """Whether a valid record exists (``verify=False``: the file exists)."""
        if not verify:
            return self.path(stage, key, "json").is_file()
        return self.get_json(stage, key, inputs=inputs) is not None

    # -- arrays -----------------------------------------------------------------------
    def put_arrays(
        self,
        stage: str,
        key: str,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any] | None = None,
        inputs: Sequence[str] = (),
    ) -> Path:
        """Store ``arrays`` as an uncompressed ``.npz`` (with its own :data:`NPZ_KEY`) plus
        a sidecar with its SHA-256, key, ``inputs`` and ``meta``; the sidecar is written
        last (it marks completeness)."""
        if NPZ_KEY in arrays:
            raise ValueError(f"{NPZ_KEY!r} is reserved in cache array files")
        path = self.path(stage, key, "npz")
        buf = io.BytesIO()
        named = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez(buf, **named, **{NPZ_KEY: np.array(f"{stage}/{key}")})
        data = buf.getvalue()
        atomic_write_bytes(path, data)
        side = {
            "stage": stage,
            "key": key,
            "inputs": [str(i) for i in inputs],
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "meta": meta or {},
        }
        sidecar = path.with_name(path.name + ".json")
        atomic_write_bytes(sidecar, (canonical_json(side) + "\n").encode())
        return path

    def _array_status(
        self,
        stage: str,
        key: str,
        verify: bool,
        repair: bool = True,
        inputs: Sequence[str] | None = None,
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
            found = [side.get("stage"), side.get("key"), side.get("inputs")]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            bad, why = (sidecar, path), f"unreadable sidecar {sidecar.name}"
        else:
            if "key" not in side:
                if repair:
                    self._legacy(sidecar, path)
                return False, None
            if found[:2] != [stage, key] or (inputs is not None and found[2] != list(inputs)):
                if repair:
                    self._warn_key(sidecar, stage, key, found, inputs or [])
                    self._discard(sidecar, path)
                return False, None
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

    def has_arrays(
        self,
        stage: str,
        key: str,
        verify: bool = True,
        repair: bool = True,
        inputs: Sequence[str] | None = None,
    ) -> bool:
        """Whether a complete array file of this key (and ``inputs``) exists. ``verify``
        checks its SHA-256 (else only its sidecar and size); ``repair`` warns about and
        deletes a corrupt or misplaced one."""
        return self._array_status(stage, key, verify, repair, inputs)[0]

    def array_meta(
        self,
        stage: str,
        key: str,
        verify: bool = True,
        repair: bool = True,
        inputs: Sequence[str] | None = None,
    ) -> dict | None:
        """The sidecar ``meta`` of a complete array file (as :meth:`has_arrays` checks
        it), or ``None``."""
        ok, meta = self._array_status(stage, key, verify, repair, inputs)
        return (meta or {}) if ok else None

    def get_arrays(
        self, stage: str, key: str, inputs: Sequence[str] | None = None
    ) -> tuple[dict[str, np.ndarray], dict] | None:
        """``(arrays, meta)`` of ``(stage, key)`` (SHA-256 and key verified), or ``None``."""
        ok, meta = self._array_status(stage, key, verify=True, inputs=inputs)
        if not ok:
            return None
        path = self.path(stage, key, "npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:  # verified but unreadable: a bug or a race
            self._warn(path, f"unreadable: {exc}")
            self.discard(stage, key)
            return None
        return self._owned(path, stage, key, arrays, meta)

    def put_array_files(
        self,
        stage: str,
        key: str,
        files: Mapping[str, str | os.PathLike | np.ndarray],
        meta: Mapping[str, Any] | None = None,
        inputs: Sequence[str] = (),
    ) -> Path:
        """:meth:`put_arrays` from ``.npy`` files (``{array name: path}``, streamed into the
        uncompressed ``.npz`` so that the arrays never need to fit in memory; the files are
        left to the caller) or arrays (written without a copy)."""
        if NPZ_KEY in files:
            raise ValueError(f"{NPZ_KEY!r} is reserved in cache array files")
        path = self.path(stage, key, "npz")
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, src in files.items():
                    if isinstance(src, np.ndarray):
                        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                            np.lib.format.write_array(f, src, allow_pickle=False)
                    else:
                        zf.write(src, f"{name}.npy")
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.array(f"{stage}/{key}"))
                zf.writestr(f"{NPZ_KEY}.npy", buf.getvalue())
            digest, size = sha256_file(tmp), tmp.stat().st_size
        side = {
            "stage": stage,
            "key": key,
            "inputs": [str(i) for i in inputs],
            "sha256": digest,
            "size": size,
            "meta": meta or {},
        }
        sidecar = path.with_name(path.name + ".json")
        atomic_write_bytes(sidecar, (canonical_json(side) + "\n").encode())
        return path

    def open_arrays(
        self, stage: str, key: str, inputs: Sequence[str] | None = None, verify: bool = True
    ) -> tuple[dict[str, np.ndarray], dict] | None:
        """As :meth:`get_arrays`, but every array is a read-only ``np.memmap`` into the
        ``.npz`` (uncompressed members are contiguous in the file), so only the rows a
        reader touches are read; ``verify`` checks the SHA-256 first (one sequential
        read of the file)."""
        ok, meta = self._array_status(stage, key, verify=verify, inputs=inputs)
        if not ok:
            return None
        path = self.path(stage, key, "npz")
        try:
            arrays = _memmap_npz(path)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            self._warn(path, f"unreadable: {exc}")
            self.discard(stage, key)
            return None
        return self._owned(path, stage, key, arrays, meta)

    def _owned(
        self, path: Path, stage: str, key: str, arrays: dict[str, Any], meta: Any
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(arrays, meta)`` when the file names the entry it was read for, else ``None``
        (with a warning; the file is discarded and will be recomputed)."""
        own = str(arrays.pop(NPZ_KEY, ""))
        if own != f"{stage}/{key}":
            warnings.warn(
                f"cache file {path}: it holds the arrays of {own or 'an unnamed entry'}, not "
                f"{stage}/{key}; it is discarded and will be recomputed",
                CacheKeyMismatchWarning,
                stacklevel=3,
            )
            self.discard(stage, key)
            return None
        return arrays, meta or {}

    def lock(self, stage: str, keys: Sequence[str]) -> contextlib.AbstractContextManager:
        """The exclusive locks of ``(stage, key)`` for every key (:mod:`simbench.runner.locks`):
        hold them while computing the entries, after checking they are still missing."""
        from simbench.runner.locks import locked

        return locked(self.path(stage, k, "json") for k in keys)

    # -- maintenance --------------------------------------------------------------------
    def discard(self, stage: str, key: str) -> None:
        """Remove ``(stage, key)`` (all its files) if present."""
        for ext in ("json", "npz", "npz.json"):
            self._discard(self.path(stage, key, ext))


def _memmap_npz(path: Path) -> dict[str, np.ndarray]:
    """The members of an uncompressed ``.npz`` as read-only memory maps (0-d and empty
    arrays, which cannot be mapped, are read)."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"member {info.filename} is compressed or not an array")
            f.seek(info.header_offset)
            local = f.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"bad local header of {info.filename}")
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            name = info.filename[: -len(".npy")]
            if dtype.hasobject:
                raise ValueError(f"member {info.filename} holds Python objects")
            if not shape or 0 in shape:
                f.seek(start)
                out[name] = np.lib.format.read_array(f, allow_pickle=False)
                continue
            order = "F" if fortran else "C"
            out[name] = np.memmap(
                path, dtype=dtype, mode="r", shape=shape, order=order, offset=f.tell()
            )
    return out

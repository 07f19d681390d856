"""Shared helpers of the dataset plugins: JPEG decoding, resizing and an on-disk cache.

Decoded datasets are cached under ``$SIMBENCH_CACHE/datasets`` (default
``~/.cache/simbench/datasets``) as one folder of plain ``.npy`` files per entry (read back
at memory speed; an ``.npz`` zip reads at only ~150 MB/s), named by a hash of everything
that determines the content. Writes are atomic: the folder is built under a temporary
name in the same directory and renamed into place, so an interrupted write never leaves
a truncated entry behind, and two concurrent writers both end with a complete one.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from simbench.data.base import ImageData
from simbench.io import current_umask

#: bump when the decoding or the cached layout changes, to invalidate old entries
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$SIMBENCH_CACHE`` if set, else ``~/.cache/simbench``."""
    env = os.environ.get("SIMBENCH_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/simbench").expanduser()


def expand_path(path: str) -> Path:
    """``path`` with ``~`` and ``$VARS`` expanded, made absolute (``$SIMBENCH_SHARED_DATA/x``)."""
    return Path(os.path.expandvars(os.path.expanduser(path))).absolute()


def cache_key(**parts: Any) -> str:
    """A 20-hex-digit hash of ``parts`` (JSON with sorted keys) and :data:`CACHE_FORMAT`."""
    blob = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def file_fingerprint(path: Path) -> dict[str, Any]:
    """What identifies a file's version cheaply: resolved path, size and mtime (ns)."""
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _to_rgb_array(im: Any, size: int | None) -> np.ndarray:
    from PIL import Image

    if im.mode != "RGB":
        im = im.convert("RGB")  # grayscale / CMYK / palette JPEGs and PNGs exist in ImageNet
    if size is not None and im.size != (size, size):
        # Pillow's BILINEAR resize widens its kernel by the scale factor when shrinking,
        # i.e. it is antialiased (the same as torchvision's ``antialias=True``).
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im)


def decode_images(
    sources: Sequence[Any],
    size: int | None = None,
    *,
    opener: Callable[[Any], Any] | None = None,
    what: str = "images",
) -> np.ndarray:
    """Decode image files/bytes into one uint8 ``(N, H, W, 3)`` array with PIL.

    ``sources`` are anything ``PIL.Image.open`` accepts after ``opener`` (default: bytes-like
    objects are wrapped in ``io.BytesIO``, paths are opened directly). ``size`` resizes every
    image to ``size x size`` (bilinear, antialiased when shrinking); without it all images
    must share one shape, else a ``ValueError`` asks for ``size``. Decoding runs on a few
    threads (Pillow releases the GIL while decoding).
    """
    from PIL import Image

    def open_one(src: Any) -> Any:
        if opener is not None:
            return opener(src)
        if isinstance(src, bytes | bytearray | memoryview):
            return Image.open(io.BytesIO(src))
        return Image.open(src)

    def decode(i: int) -> np.ndarray:
        try:
            with open_one(sources[i]) as im:
                return _to_rgb_array(im, size)
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for bad files
            src = sources[i] if isinstance(sources[i], str | os.PathLike) else "bytes"
            raise ValueError(f"{what}: cannot decode image {i} ({src}): {err}") from None

    n = len(sources)
    if n == 0:
        raise ValueError(f"no {what} to decode")
    first = decode(0)
    out = np.empty((n, *first.shape), dtype=np.uint8)
    out[0] = first

    def work(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            arr = decode(i)
            if arr.shape != first.shape:
                raise ValueError(
                    f"{what}: image {i} has shape {arr.shape} but image 0 has {first.shape}; "
                    "pass size=... to resize all images to one square size"
                )
            out[i] = arr

    workers = max(1, min(4, os.cpu_count() or 1, n // 2000))
    if workers == 1:
        work(1, n)
    else:
        bounds = np.linspace(1, n, workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(work, lo, hi) for lo, hi in itertools.pairwise(bounds)]:
                f.result()
    return out


def decode_jpeg_blob(
    blob: np.ndarray, offsets: np.ndarray, size: int | None = None, header: bytes = b""
) -> np.ndarray:
    """Decode the concatenated JPEGs ``blob[offsets[i]:offsets[i+1]]`` (``header`` prepended)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(blob):
        raise ValueError(
            f"offsets must run from 0 to the blob length {len(blob)}; got {len(offsets)} "
            f"offsets from {offsets[:1]} to {offsets[-1:]}"
        )
    if np.any(np.diff(offsets) <= 0):
        raise ValueError("offsets must be strictly increasing")
    mv = memoryview(np.ascontiguousarray(blob, dtype=np.uint8))
    bounds = offsets.tolist()
    if header:
        chunks: list[Any] = [header + mv[a:b].tobytes() for a, b in itertools.pairwise(bounds)]
    else:
        chunks = [mv[a:b] for a, b in itertools.pairwise(bounds)]
    return decode_images(chunks, size, what="JPEG blob")


_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _save_atomic(path: Path, data: ImageData) -> None:
    """Write ``data`` as the directory ``path`` (one ``.npy`` per array + ``info.json``):
    built under a temporary name in the same parent, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        for k in _ARRAYS:
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(getattr(data, k)))
        info = {"classes": list(data.classes), "name": data.name, "meta": data.meta}
        (tmp / "info.json").write_text(json.dumps(info, default=str))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would survive the rename
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "info.json").is_file():  # not a concurrent writer's finished copy
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read(path: Path) -> ImageData:
    info = json.loads((path / "info.json").read_text())
    arrays = {k: np.load(path / f"{k}.npy", allow_pickle=False) for k in _ARRAYS}
    return ImageData(**arrays, classes=tuple(info["classes"]), name=info["name"], meta=info["meta"])


def cached(
    build: Callable[[], ImageData],
    *,
    prefix: str,
    key: str,
    cache_dir: str | None,
    enabled: bool = True,
    info: dict[str, Any] | None = None,
) -> ImageData:
    """``build()``'s result, read from / written to ``<cache_dir>/datasets/<prefix>-<key>/``.

    ``cache_dir=None`` means :func:`default_cache_dir`. An unwritable cache directory is
    a warning, not an error (the data is still returned). If given, ``info`` receives
    ``path`` and ``status``: ``"hit"``, ``"miss"`` (built and written), ``"unwritable"`` or
    ``"off"`` (``enabled=False``).
    """
    info = {} if info is None else info
    if not enabled:
        info.update(path=None, status="off")
        return build()
    root = expand_path(cache_dir) if cache_dir else default_cache_dir()
    path = root / "datasets" / f"{prefix}-{key}"
    info["path"] = path
    if (path / "info.json").is_file():
        try:
            data = _read(path)
            info["status"] = "hit"
            return data
        except (OSError, ValueError, KeyError) as err:  # corrupt entry: rebuild it
            warnings.warn(f"ignoring unreadable dataset cache {path}: {err}", stacklevel=2)
    data = build()
    try:
        if path.exists():  # an unreadable entry: replace it
            shutil.rmtree(path, ignore_errors=True)
        _save_atomic(path, data)
        info["status"] = "miss"
    except OSError as err:
        warnings.warn(f"could not write dataset cache {path}: {err}", stacklevel=2)
        info["status"] = "unwritable"
    return data

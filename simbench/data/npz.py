"""Datasets stored as JPEG archives in one ``.npz`` (the format of ``../shared/data``).

Keys: ``jpeg_<split>`` (all JPEG files of a split concatenated, uint8), ``offsets_<split>``
(image ``i`` is ``jpeg[offsets[i]:offsets[i+1]]``), ``y_<split>`` and ``class_names``;
splits ``train`` and ``test`` (or ``val`` when there is no ``test``). Optional extras
(e.g. Tiny-ImageNet's ``wnids``) go to ``meta``. Decoded once, then cached on disk.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field

from simbench.data.base import Dataset, ImageData
from simbench.data.cache import cache_key, cached, decode_jpeg_blob, expand_path, file_fingerprint


class NpzJPEG(Dataset):
    """JPEG images in one .npz archive (the ../shared/data format), resized; cached.

    Keys ``jpeg_/offsets_/y_<split>`` and ``class_names``; decoded once, optionally resized
    to ``size``×``size``, then read from the on-disk cache."""

    name = "npz"

    def __init__(
        self,
        path: str,
        size: Annotated[int, Field(ge=1)] | None = None,
        cache_dir: str | None = None,
        cache: bool = True,
    ) -> None:
        """``path``: the archive (``~`` and ``$VARS`` expanded). ``size``: resize every image
        to size×size with Pillow's bilinear filter, antialiased when shrinking (``None``
        keeps the stored size; all images must then share it). ``cache_dir``: where decoded
        arrays are cached (default ``$SIMBENCH_CACHE`` or ``~/.cache/simbench``); the entry is
        keyed by (resolved path, file size, mtime, size), so an edited archive is re-decoded.
        ``cache=False`` decodes every time."""
        self.path = path
        self.size = size
        self.cache_dir = cache_dir
        self.cache = cache
        #: ``path`` and ``status`` (hit/miss/off/unwritable) of the last ``load()``
        self.cache_info: dict[str, Any] = {}

    def _file(self) -> Any:
        p = expand_path(self.path)
        if not p.is_file():
            raise ValueError(f"npz dataset: no file at path={self.path!r} (resolved to {p})")
        return p

    def check(self) -> None:
        """The archive exists (see ``load``)."""
        self._file()

    def load(self) -> ImageData:
        p = self._file()
        key = cache_key(kind="npz", file=file_fingerprint(p), size=self.size)
        self.cache_info = {}
        return cached(
            lambda: self._decode(p),
            prefix=f"npz-{p.stem}",
            key=key,
            cache_dir=self.cache_dir,
            enabled=self.cache,
            info=self.cache_info,
        )

    def _decode(self, p: Any) -> ImageData:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            test = "test" if "jpeg_test" in keys else "val"
            need = {"class_names"} | {
                f"{k}_{s}" for s in ("train", test) for k in ("jpeg", "offsets", "y")
            }
            missing = sorted(need - keys)
            if missing:
                raise ValueError(
                    f"npz dataset {p}: missing keys {missing}; expected jpeg_<split>, "
                    "offsets_<split>, y_<split> for splits train and test (or val), "
                    "and class_names"
                )
            classes = tuple(str(c) for c in z["class_names"].tolist())
            arrays: dict[str, np.ndarray] = {}
            for split, out in (("train", "train"), (test, "test")):
                y = z[f"y_{split}"].astype(np.int64)
                if y.size and (y.min() < 0 or y.max() >= len(classes)):
                    raise ValueError(
                        f"npz dataset {p}: y_{split} has labels outside 0..{len(classes) - 1}"
                    )
                x = decode_jpeg_blob(z[f"jpeg_{split}"], z[f"offsets_{split}"], self.size)
                if len(x) != len(y):
                    raise ValueError(f"npz dataset {p}: {len(x)} images but {len(y)} labels")
                arrays[f"x_{out}"], arrays[f"y_{out}"] = x, y
            meta: dict[str, Any] = {"path": str(p), "test_split": test, "size": self.size}
            if "wnids" in keys:
                meta["wnids"] = [str(w) for w in z["wnids"].tolist()]
        return ImageData(**arrays, classes=classes, name=f"npz:{p.stem}", meta=meta)

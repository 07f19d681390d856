"""Any ImageFolder tree ``root/<split>/<class>/<image>``, resized, decoded once and cached.

The layout is torchvision's ``ImageFolder``: classes are the sorted sub-folder names of
the train split (label = position in that list), images are the files with extension
.png/.jpg/.jpeg/.bmp/.webp (any case) in each class folder, taken in sorted name order,
class after class. Grayscale/CMYK/palette images are converted to RGB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from simbench.data.base import Dataset, ImageData
from simbench.data.cache import cache_key, cached, decode_images, expand_path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


def _scan(split_dir: Path) -> tuple[list[str], list[list[tuple[str, int, int]]]]:
    """Sorted class folders of ``split_dir`` and, per class, (file, bytes, mtime_ns) sorted."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    files = []
    for c in classes:
        entries = []
        for e in os.scandir(split_dir / c):
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                st = e.stat()
                entries.append((e.name, st.st_size, st.st_mtime_ns))
        files.append(sorted(entries))
    return classes, files


class ImageFolder(Dataset):
    """Any ImageFolder tree root/<split>/<class>/<image>, optionally resized; cached.

    E.g. ImageNet or Tiny-ImageNet; decoded once, then read from the on-disk cache."""

    name = "imagefolder"

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        test_split: str | None = None,
        size: Annotated[int, Field(ge=1)] | None = None,
        cache_dir: str | None = None,
        cache: bool = True,
    ) -> None:
        """``test_split``: the held-out folder; ``None`` picks ``test`` if it exists, else
        ``val``. ``size``: resize every image to size×size (Pillow bilinear, antialiased
        when shrinking; ``None`` requires all images to share one shape). ``cache_dir``: as
        for the ``npz`` dataset; the entry is keyed by the resolved root, the splits, ``size``
        and the listing (names, sizes, mtimes) of every image file."""
        self.root = root
        self.train_split = train_split
        self.test_split = test_split
        self.size = size
        self.cache_dir = cache_dir
        self.cache = cache
        #: ``path`` and ``status`` (hit/miss/off/unwritable) of the last ``load()``
        self.cache_info: dict[str, Any] = {}

    def _splits(self) -> tuple[Path, Path, Path]:
        root = expand_path(self.root)
        if not root.is_dir():
            raise ValueError(f"{self.name}: root={self.root!r} is not a directory ({root})")
        train = root / self.train_split
        if not train.is_dir():
            raise ValueError(f"{self.name}: no train split folder {train}")
        if self.test_split is None:
            found = [s for s in ("test", "val") if (root / s).is_dir()]
            if not found:
                raise ValueError(
                    f"{self.name}: neither {root / 'test'} nor {root / 'val'} exists; "
                    "pass test_split=... naming the held-out folder"
                )
            test = root / found[0]
        else:
            test = root / self.test_split
            if not test.is_dir():
                raise ValueError(f"{self.name}: no test split folder {test}")
        return root, train, test

    def check(self) -> None:
        """The root and its split folders exist (see ``load``)."""
        self._splits()

    def load(self) -> ImageData:
        root, train_dir, test_dir = self._splits()
        classes, train_files = _scan(train_dir)
        if not classes:
            raise ValueError(f"{self.name}: no class folders in {train_dir}")
        test_classes, test_files_raw = _scan(test_dir)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise ValueError(
                f"{self.name}: classes {unknown[:5]} of {test_dir} are not in {train_dir}"
            )
        test_files = [[] for _ in classes]
        for c, files in zip(test_classes, test_files_raw, strict=True):
            test_files[classes.index(c)] = files
        key = cache_key(
            kind="imagefolder",
            root=str(root.resolve()),
            splits=[train_dir.name, test_dir.name],
            size=self.size,
            listing=[classes, train_files, test_files],
        )
        self.cache_info = {}
        return cached(
            lambda: self._decode(root, classes, train_dir, train_files, test_dir, test_files),
            prefix=f"imagefolder-{root.name}",
            key=key,
            cache_dir=self.cache_dir,
            enabled=self.cache,
            info=self.cache_info,
        )

    def _decode(
        self,
        root: Path,
        classes: list[str],
        train_dir: Path,
        train_files: list[list[tuple[str, int, int]]],
        test_dir: Path,
        test_files: list[list[tuple[str, int, int]]],
    ) -> ImageData:
        arrays: dict[str, np.ndarray] = {}
        for out, d, files in (("train", train_dir, train_files), ("test", test_dir, test_files)):
            paths = [d / c / f[0] for c, fs in zip(classes, files, strict=True) for f in fs]
            if not paths:
                raise ValueError(f"{self.name}: no images under {d}")
            y = np.concatenate([np.full(len(fs), i, dtype=np.int64) for i, fs in enumerate(files)])
            arrays[f"x_{out}"] = decode_images(paths, self.size, what=str(d))
            arrays[f"y_{out}"] = y
        meta = {
            "root": str(root),
            "train_split": train_dir.name,
            "test_split": test_dir.name,
            "size": self.size,
        }
        return ImageData(
            **arrays, classes=tuple(classes), name=f"{self.name}:{root.name}", meta=meta
        )


class ImageNet(ImageFolder):
    """ImageNet (or any ImageFolder tree) resized to 32×32 by default, as GM's ImageNet-32."""

    name = "imagenet"

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        test_split: str | None = None,
        size: Annotated[int, Field(ge=1)] | None = 32,
        cache_dir: str | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(
            root=root,
            train_split=train_split,
            test_split=test_split,
            size=size,
            cache_dir=cache_dir,
            cache=cache,
        )

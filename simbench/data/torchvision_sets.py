"""CIFAR-10 and CIFAR-100 through ``torchvision.datasets`` (official train/test splits).

Nothing is downloaded unless ``download=True`` is passed explicitly: with the data
missing, ``load()`` raises a ``ValueError`` that names ``root`` and the ways to get it.
(torchvision verifies the archives' MD5 checksums before unpickling them.)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from simbench.data.base import Dataset, ImageData
from simbench.data.cache import expand_path


class _TorchvisionCIFAR(Dataset):
    """Shared loader of the two CIFAR plugins."""

    tv_class: ClassVar[str] = ""
    base_folder: ClassVar[str] = ""
    archive_mb: ClassVar[int] = 0

    def __init__(self, root: str, download: bool = False) -> None:
        self.root = root
        self.download = download

    def _missing(self, why: str) -> ValueError:
        root = expand_path(self.root)
        return ValueError(
            f"{self.name}: {why} under root={str(root)!r} (expected the folder "
            f"{root / self.base_folder}). Pass download=True to fetch it "
            f"(~{self.archive_mb} MB) into that root, or point root at a folder that already "
            f"contains {self.base_folder}/. For offline work use the 'embedded' dataset, or "
            "the 'npz' dataset on a JPEG archive."
        )

    def _split(self, train: bool) -> Any:
        root = expand_path(self.root)
        if not self.download and not (root / self.base_folder).is_dir():
            raise self._missing(f"no {self.tv_class} data")  # fast: no torchvision import
        import torchvision.datasets as tvd

        try:
            return getattr(tvd, self.tv_class)(str(root), train=train, download=self.download)
        except RuntimeError as err:
            if self.download:
                raise
            raise self._missing(f"incomplete or corrupted {self.tv_class} data ({err})") from None

    def check(self) -> None:
        """The data folder exists under ``root`` (or ``download=True``; see ``load``)."""
        if not self.download and not (expand_path(self.root) / self.base_folder).is_dir():
            raise self._missing(f"no {self.tv_class} data")

    def load(self) -> ImageData:
        """Official splits as uint8 NHWC images and int64 labels, in the official order."""
        train, test = self._split(True), self._split(False)
        return ImageData(
            x_train=np.ascontiguousarray(train.data, dtype=np.uint8),
            y_train=np.asarray(train.targets, dtype=np.int64),
            x_test=np.ascontiguousarray(test.data, dtype=np.uint8),
            y_test=np.asarray(test.targets, dtype=np.int64),
            classes=tuple(train.classes),
            name=self.name,
            meta={"root": str(expand_path(self.root)), "source": f"torchvision.{self.tv_class}"},
        )


class CIFAR10(_TorchvisionCIFAR):
    """CIFAR-10 (torchvision): 50,000 train / 10,000 test 32×32 images, 10 classes."""

    name = "cifar10"
    tv_class = "CIFAR10"
    base_folder = "cifar-10-batches-py"
    archive_mb = 170

    def __init__(self, root: str, download: bool = False) -> None:
        super().__init__(root=root, download=download)


class CIFAR100(_TorchvisionCIFAR):
    """CIFAR-100 (torchvision): 50,000 train / 10,000 test 32×32 images, 100 fine classes."""

    name = "cifar100"
    tv_class = "CIFAR100"
    base_folder = "cifar-100-python"
    archive_mb = 170

    def __init__(self, root: str, download: bool = False) -> None:
        super().__init__(root=root, download=download)

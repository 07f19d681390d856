"""Dataset plugins: the embedded default, npz / imagefolder / CIFAR loaders and variants."""

from __future__ import annotations

import io
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import simbench
from simbench.data.base import ImageData
from simbench.data.cache import decode_images
from simbench.data.embedded import EMBEDDED_FILE, EmbeddedCIFAR10
from simbench.data.variants import random_halves

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def shared_data() -> Path:
    env = os.environ.get("SIMBENCH_SHARED_DATA")
    if env:
        return Path(env)
    return Path(simbench.__file__).resolve().parents[1].parent / "shared" / "data"


def dataset(name: str, **params) -> simbench.Plugin:
    return simbench.get_plugin("dataset", name, **params)


@pytest.fixture(scope="module")
def embedded() -> ImageData:
    return dataset("embedded").load()


# ---------------------------------------------------------------- embedded default


def test_embedded_ships_inside_the_package_and_is_small():
    path = Path(simbench.__file__).parent / "data" / "_embedded" / EMBEDDED_FILE
    assert path.is_file()
    assert path.stat().st_size < 3_000_000
    with np.load(path, allow_pickle=False) as z:
        assert "provenance" in z.files and "index_train" in z.files


def test_embedded_shapes_classes_and_balance(embedded):
    d = embedded
    assert d.x_train.shape == (5000, 32, 32, 3) and d.x_train.dtype == np.uint8
    assert d.x_test.shape == (1000, 32, 32, 3) and d.x_test.dtype == np.uint8
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert d.classes == CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(d.y_train), np.full(10, 500))
    np.testing.assert_array_equal(np.bincount(d.y_test), np.full(10, 100))
    assert d.meta["provenance"]["source_file"] == "cifar10_jpeg.npz"


def test_embedded_images_are_natural_not_noise(embedded):
    x = embedded.x_train[:1000].astype(np.float64)
    # horizontally neighbouring pixels of natural images are strongly correlated (noise: 0)
    a, b = x[:, :, :-1, :].ravel(), x[:, :, 1:, :].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.8
    assert 60 < x.mean() < 200 and x.std() > 40
    # class-mean images differ: a nearest-class-mean classifier on raw pixels is far above
    # chance (0.10) on the held-out split (about 0.28 on CIFAR-10)
    x, y = embedded.x_train.astype(np.float64), embedded.y_train
    means = np.stack([x[y == c].mean(0).ravel() for c in range(10)])
    xt = embedded.x_test.astype(np.float64).reshape(1000, -1)
    dist = (xt**2).sum(1)[:, None] - 2 * xt @ means.T + (means**2).sum(1)[None]
    accuracy = (dist.argmin(1) == embedded.y_test).mean()
    assert accuracy > 0.2


def test_embedded_is_deterministic_and_returns_independent_copies(embedded):
    again = dataset("embedded").load()
    np.testing.assert_array_equal(again.x_train, embedded.x_train)
    np.testing.assert_array_equal(again.y_test, embedded.y_test)
    again.x_train[:] = 0  # must not corrupt the per-process cache
    third = EmbeddedCIFAR10().load()
    np.testing.assert_array_equal(third.x_train, embedded.x_train)


def test_embedded_matches_its_recorded_cifar10_source(embedded):
    src = shared_data() / "cifar10_jpeg.npz"
    if not src.is_file():
        pytest.skip(f"{src} absent")
    idx_train, idx_test = EmbeddedCIFAR10.source_indices()
    with np.load(src) as z:
        for split, idx, x, y in (
            ("train", idx_train, embedded.x_train, embedded.y_train),
            ("test", idx_test, embedded.x_test, embedded.y_test),
        ):
            blob, off = z[f"jpeg_{split}"], z[f"offsets_{split}"]
            np.testing.assert_array_equal(z[f"y_{split}"][idx], y)
            # the selection rule: the first k images of every class, in official order
            k = len(idx) // 10
            for c in range(10):
                np.testing.assert_array_equal(idx[y == c], np.flatnonzero(z[f"y_{split}"] == c)[:k])
            for j in (0, 1, len(idx) // 2, len(idx) - 1):
                i = idx[j]
                ref = np.asarray(Image.open(io.BytesIO(blob[off[i] : off[i + 1]].tobytes())))
                np.testing.assert_array_equal(x[j], ref)


# ---------------------------------------------------------------- class subsets


def test_random_halves_golden_and_disjoint():
    perm = np.random.default_rng(7).permutation(10)
    a, b = random_halves(10, 4, seed=7)
    assert a == sorted(perm[:4].tolist()) and b == sorted(perm[4:8].tolist())
    assert not set(a) & set(b)
    with pytest.raises(ValueError, match="2\\*count"):
        random_halves(10, 6, seed=0)


def test_class_subset_first_n_keeps_labels_and_order(embedded):
    d = dataset("class_subset", base={"name": "embedded"}, first=5).load()
    assert d.classes == CIFAR10_CLASSES[:5]
    keep = embedded.y_train < 5
    np.testing.assert_array_equal(d.x_train, embedded.x_train[keep])
    np.testing.assert_array_equal(d.y_train, embedded.y_train[keep])
    np.testing.assert_array_equal(d.y_test, embedded.y_test[embedded.y_test < 5])
    np.testing.assert_array_equal(np.bincount(d.y_train), np.full(5, 500))


def test_class_subset_parts_a_and_b_are_disjoint_covering_and_deterministic(embedded):
    ref = {"name": "embedded", "params": {}}
    a = dataset("class_subset", base=ref, count=5, seed=3, part="a").load()
    b = dataset("class_subset", base="embedded", count=5, seed=3, part="b").load()
    a2 = dataset("class_subset", base=ref, count=5, seed=3, part="a").load()
    np.testing.assert_array_equal(a.x_train, a2.x_train)
    np.testing.assert_array_equal(a.y_train, a2.y_train)
    assert set(a.classes).isdisjoint(b.classes)
    assert set(a.classes) | set(b.classes) == set(CIFAR10_CLASSES)
    assert len(a.x_train) + len(b.x_train) == len(embedded.x_train)
    # relabelled 0..4 in ascending order of the original class index
    orig = a.meta["class_subset"]["original_classes"]
    assert orig == sorted(orig) and a.classes == tuple(CIFAR10_CLASSES[k] for k in orig)
    perm = np.random.default_rng(3).permutation(10)
    assert orig == sorted(perm[:5].tolist())
    for new, old in enumerate(orig):
        np.testing.assert_array_equal(
            a.x_test[a.y_test == new], embedded.x_test[embedded.y_test == old]
        )
    other = dataset("class_subset", base=ref, count=5, seed=4, part="a").load()
    assert other.classes != a.classes  # seed 4 draws another half (checked: it does)


def test_class_subset_rejects_bad_requests():
    with pytest.raises(ValueError, match="exactly one"):
        dataset("class_subset", base="embedded", first=2, count=2)
    with pytest.raises(ValueError, match="exactly one"):
        dataset("class_subset", base="embedded")
    with pytest.raises(ValueError, match="2\\*count"):
        dataset("class_subset", base="embedded", count=6, part="b").load()
    with pytest.raises(ValueError, match="first=11"):
        dataset("class_subset", base="embedded", first=11).load()
    with pytest.raises(ValueError):
        dataset("class_subset", base="embedded", count=2, part="c")


# ---------------------------------------------------------------- random labels


def test_random_labels_fraction_zero_and_one(embedded):
    zero = dataset("random_labels", base="embedded", seed=0, fraction=0.0).load()
    np.testing.assert_array_equal(zero.y_train, embedded.y_train)
    one = dataset("random_labels", base="embedded", seed=0).load()
    agree = (one.y_train == embedded.y_train).mean()
    assert abs(agree - 0.1) < 0.03  # chance; binomial sd ~0.004
    counts = np.bincount(one.y_train, minlength=10)
    assert counts.min() > 400 and counts.max() < 600  # uniform over the 10 classes
    np.testing.assert_array_equal(one.y_test, embedded.y_test)  # test labels unchanged
    np.testing.assert_array_equal(one.x_train, embedded.x_train)
    assert one.meta["random_labels"] == {"seed": 0, "fraction": 1.0, "replaced": 5000}


def test_random_labels_golden_deterministic_and_nested(embedded):
    n = len(embedded.y_train)
    half = dataset("random_labels", base="embedded", seed=5, fraction=0.5).load()
    rng = np.random.default_rng(5)
    order, rand = rng.permutation(n), rng.integers(0, 10, size=n)
    expect = embedded.y_train.copy()
    expect[order[: n // 2]] = rand[order[: n // 2]]
    np.testing.assert_array_equal(half.y_train, expect)
    again = dataset("random_labels", base={"name": "embedded"}, seed=5, fraction=0.5).load()
    np.testing.assert_array_equal(again.y_train, half.y_train)
    assert abs((half.y_train == embedded.y_train).mean() - 0.55) < 0.03
    # a larger fraction with the same seed replaces a superset, with the same labels
    more = dataset("random_labels", base="embedded", seed=5, fraction=0.8).load()
    changed = half.y_train != embedded.y_train
    np.testing.assert_array_equal(more.y_train[changed], half.y_train[changed])
    # tasks "a" and "b" (two seeds) are independent draws
    a = dataset("random_labels", base="embedded", seed=1).load()
    b = dataset("random_labels", base="embedded", seed=2).load()
    assert abs((a.y_train == b.y_train).mean() - 0.1) < 0.03


def test_random_labels_on_a_class_subset_and_bad_fraction():
    ref = {"name": "class_subset", "params": {"base": "embedded", "first": 3}}
    d = dataset("random_labels", base=ref, seed=0).load()
    assert d.num_classes == 3 and set(np.unique(d.y_train)) == {0, 1, 2}
    with pytest.raises(ValueError):
        dataset("random_labels", base="embedded", seed=0, fraction=1.5)
    with pytest.raises(simbench.UnknownPluginError, match="Did you mean 'embedded'"):
        dataset("random_labels", base="embeded", seed=0)


# ---------------------------------------------------------------- npz archives


def _jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write_npz(path: Path, images: dict[str, list[np.ndarray]], labels: dict, names) -> None:
    arrays = {"class_names": np.array(names)}
    for split, imgs in images.items():
        blobs = [np.frombuffer(_jpeg(im), np.uint8) for im in imgs]
        arrays[f"jpeg_{split}"] = np.concatenate(blobs)
        arrays[f"offsets_{split}"] = np.cumsum([0] + [len(b) for b in blobs])
        arrays[f"y_{split}"] = np.asarray(labels[split], dtype=np.int64)
    np.savez(path, **arrays)


def test_npz_small_archive_val_split_grayscale_resize_and_cache(tmp_path, rng):
    imgs = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(5)]
    gray = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    path = tmp_path / "tiny.npz"
    _write_npz(
        path,
        {"train": [*imgs[:3], gray], "val": imgs[3:]},
        {"train": [0, 1, 2, 1], "val": [2, 0]},
        ["a", "b", "c"],
    )
    cache = tmp_path / "cache"
    p = dataset("npz", path=str(path), cache_dir=str(cache))
    d = p.load()
    assert p.cache_info["status"] == "miss"
    assert d.meta["test_split"] == "val" and d.classes == ("a", "b", "c")
    assert d.x_train.shape == (4, 12, 10, 3) and d.x_test.shape == (2, 12, 10, 3)
    np.testing.assert_array_equal(d.y_train, [0, 1, 2, 1])
    ref = np.asarray(Image.open(io.BytesIO(_jpeg(imgs[1]))))
    np.testing.assert_array_equal(d.x_train[1], ref)
    g = np.asarray(Image.open(io.BytesIO(_jpeg(gray))).convert("RGB"))
    np.testing.assert_array_equal(d.x_train[3], g)  # grayscale JPEG -> 3 equal channels
    assert (d.x_train[3, ..., 0] == d.x_train[3, ..., 2]).all()
    d2 = p.load()
    assert p.cache_info["status"] == "hit"
    np.testing.assert_array_equal(d2.x_train, d.x_train)
    assert d2.classes == d.classes and d2.meta == d.meta
    # resized: Pillow bilinear (antialiased) of the decoded image
    r = dataset("npz", path=str(path), size=4, cache_dir=str(cache))
    dr = r.load()
    assert r.cache_info["status"] == "miss" and dr.x_test.shape == (2, 4, 4, 3)
    ref = Image.open(io.BytesIO(_jpeg(imgs[4]))).resize((4, 4), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(dr.x_test[1], np.asarray(ref))
    # a changed file (new mtime) is a new cache entry
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    p.load()
    assert p.cache_info["status"] == "miss"
    assert len(list((cache / "datasets").iterdir())) == 3
    assert not [f for f in (cache / "datasets").iterdir() if f.name.startswith(".")]


def test_npz_errors(tmp_path):
    with pytest.raises(ValueError, match="no file"):
        dataset("npz", path=str(tmp_path / "missing.npz")).load()
    bad = tmp_path / "bad.npz"
    np.savez(bad, jpeg_train=np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="missing keys"):
        dataset("npz", path=str(bad), cache=False).load()
    with pytest.raises(ValueError, match="cannot decode image 1"):
        decode_images([_jpeg(np.zeros((4, 4, 3), np.uint8)), b"not an image"])
    with pytest.raises(ValueError, match="size"):
        decode_images([_jpeg(np.zeros((4, 4, 3), np.uint8)), _jpeg(np.zeros((5, 4, 3), np.uint8))])


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_cache")


def test_npz_tinyimagenet_resized_to_32_is_cached(tiny_cache):
    src = shared_data() / "tinyimagenet_jpeg.npz"
    if not src.is_file():
        pytest.skip(f"{src} absent")
    p = dataset("npz", path=str(src), size=32, cache_dir=str(tiny_cache))
    t0 = time.perf_counter()
    d = p.load()
    first = time.perf_counter() - t0
    assert p.cache_info["status"] == "miss"
    assert d.num_classes == 200 and d.meta["test_split"] == "val"
    assert d.x_train.shape == (10000, 32, 32, 3) and d.x_test.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(d.y_train), np.full(200, 50))
    with np.load(src) as z:
        blob, off = z["jpeg_val"], z["offsets_val"]
        raw = Image.open(io.BytesIO(blob[off[7] : off[8]].tobytes())).convert("RGB")
        assert raw.size == (64, 64)
        ref = np.asarray(raw.resize((32, 32), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(d.x_test[7], ref)
        np.testing.assert_array_equal(d.y_test, z["y_val"])
    t0 = time.perf_counter()
    d2 = p.load()
    second = time.perf_counter() - t0
    assert p.cache_info["status"] == "hit"
    assert second < first / 4
    np.testing.assert_array_equal(d2.x_train, d.x_train)
    np.testing.assert_array_equal(d2.x_test, d.x_test)
    np.testing.assert_array_equal(d2.y_train, d.y_train)
    assert d2.classes == d.classes


def test_tinyimagenet_halves_like_imagenet100(tiny_cache):
    src = shared_data() / "tinyimagenet_jpeg.npz"
    if not src.is_file():
        pytest.skip(f"{src} absent")
    params = {"path": str(src), "size": 32, "cache_dir": str(tiny_cache)}
    base = {"name": "npz", "params": params}
    a = dataset("class_subset", base=base, count=100, seed=0, part="a").load()
    b = dataset("class_subset", base=base, count=100, seed=0, part="b").load()
    assert a.num_classes == b.num_classes == 100
    assert set(a.classes).isdisjoint(b.classes)
    assert len(a.x_train) == len(b.x_train) == 5000


# ---------------------------------------------------------------- image folders


def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def test_imagefolder_tree(tmp_path, rng):
    root = tmp_path / "tree"
    imgs = {}
    for split, n in (("train", 3), ("val", 2)):
        for c in ("dog", "cat", "emu"):  # classes are the sorted folder names
            for i in range(n):
                img = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                imgs[split, c, i] = img
                _png(root / split / c / f"{i:02d}.png", img)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    gray = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    Image.fromarray(gray).save(root / "train" / "emu" / "zz.JPEG", quality=95)
    cache = tmp_path / "cache"
    p = dataset("imagefolder", root=str(root), size=None, cache_dir=str(cache))
    d = p.load()
    assert p.cache_info["status"] == "miss"
    assert d.classes == ("cat", "dog", "emu") and d.meta["test_split"] == "val"
    np.testing.assert_array_equal(d.y_train, [0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(d.y_test, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(d.x_train[4], imgs["train", "dog", 1])  # PNG: exact
    np.testing.assert_array_equal(d.x_test[5], imgs["val", "emu", 1])
    g = np.asarray(Image.open(root / "train" / "emu" / "zz.JPEG").convert("RGB"))
    np.testing.assert_array_equal(d.x_train[9], g)
    d2 = p.load()
    assert p.cache_info["status"] == "hit"
    np.testing.assert_array_equal(d2.x_train, d.x_train)
    # resized, and the "imagenet" alias (size 32 by default)
    small = dataset("imagefolder", root=str(root), size=3, cache_dir=str(cache)).load()
    ref = Image.fromarray(imgs["val", "cat", 0]).resize((3, 3), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(small.x_test[0], np.asarray(ref))
    big = dataset("imagenet", root=str(root), cache_dir=str(cache)).load()
    assert big.x_train.shape == (10, 32, 32, 3)
    # a new image changes the listing, hence the cache key
    _png(root / "train" / "dog" / "99.png", imgs["train", "dog", 0])
    d3 = p.load()
    assert p.cache_info["status"] == "miss" and len(d3.y_train) == 11


def test_imagefolder_errors(tmp_path, rng):
    root = tmp_path / "tree"
    img = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    _png(root / "train" / "a" / "0.png", img)
    with pytest.raises(ValueError, match="neither"):
        dataset("imagefolder", root=str(root), cache=False).load()
    _png(root / "test" / "zebra" / "0.png", img)
    with pytest.raises(ValueError, match="zebra"):
        dataset("imagefolder", root=str(root), cache=False).load()
    with pytest.raises(ValueError, match="not a directory"):
        dataset("imagefolder", root=str(tmp_path / "nope")).load()
    with pytest.raises(ValueError, match="no test split"):
        dataset("imagefolder", root=str(root), test_split="holdout").load()


# ---------------------------------------------------------------- torchvision CIFAR


@pytest.mark.parametrize(
    "name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")]
)
def test_cifar_without_data_is_a_helpful_error(tmp_path, name, folder):
    p = dataset(name, root=str(tmp_path))
    with pytest.raises(ValueError, match="download=True") as err:
        p.load()
    assert str(tmp_path) in str(err.value) and folder in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created


def test_cifar10_and_cifar5_convert_torchvision_batches(tmp_path, rng, monkeypatch):
    import torchvision.datasets.cifar as tvc

    monkeypatch.setattr(tvc, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tvc.CIFAR10, "_check_integrity", lambda self: True)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4"]:
        batches[name] = (rng.integers(0, 256, (0, 3072), dtype=np.uint8), [])
    batches["data_batch_5"] = (rng.integers(0, 256, (20, 3072), dtype=np.uint8), [0, 5] * 10)
    batches["test_batch"] = (rng.integers(0, 256, (4, 3072), dtype=np.uint8), [9, 4, 3, 1])
    for name, (data, labels) in batches.items():
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)
    d = dataset("cifar10", root=str(tmp_path)).load()
    assert d.classes == CIFAR10_CLASSES and d.x_train.shape == (20, 32, 32, 3)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    # CIFAR rows are channel-major 3x32x32
    flat = batches["test_batch"][0]
    np.testing.assert_array_equal(d.x_test[2], flat[2].reshape(3, 32, 32).transpose(1, 2, 0))
    np.testing.assert_array_equal(d.y_test, [9, 4, 3, 1])
    c5 = dataset("cifar5", root=str(tmp_path)).load()
    assert c5.name == "cifar5" and c5.classes == CIFAR10_CLASSES[:5]
    np.testing.assert_array_equal(c5.y_train, [0] * 10)
    np.testing.assert_array_equal(c5.y_test, [4, 3, 1])
    np.testing.assert_array_equal(c5.x_test, d.x_test[1:])

"""datasets.MNIST / FashionMNIST: IDX reading, folder search, every loader error, downloads.

The tests write small IDX files themselves and never touch the network: the
download tests point the mirrors at ``file://`` URLs of local files. The real
data sets are read from ``../shared/data`` (beside the repository; or from
``$TINYGRAD_ZH_DATA``) when present, and skipped with the reason otherwise.
"""
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import tinygrad_zh as tg
from tinygrad_zh.datasets import MNIST, FashionMNIST
from tinygrad_zh.datasets.mnist import download_file, read_idx, write_idx
from tinygrad_zh.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
HOW_TO = "To get the data: pass download=True, or set TINYGRAD_ZH_DATA"
DATA_ENV = os.environ.get("TINYGRAD_ZH_DATA")  # read before the fixture below clears it


def shared_data():
    """The real data sets' folder, or skip the test saying where it was looked for."""
    candidates = [ROOT.parent / "shared" / "data"]
    if DATA_ENV:
        candidates.append(Path(DATA_ENV))
    for folder in candidates:
        if (folder / "mnist-subset").is_dir():
            return folder
    pytest.skip(f"real MNIST data not found in {', '.join(map(str, candidates))}: "
                "the tests on written IDX files still run")


def write_split(folder, prefix="t10k", n=5, n_labels=None, gz=True, seed=0):
    """n random 28x28 images and their labels, as the two IDX files of one split."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n if n_labels is None else n_labels, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """Each test starts without TINYGRAD_ZH_DATA unless it sets it."""
    monkeypatch.delenv("TINYGRAD_ZH_DATA", raising=False)


# ------------------------------------------------------------------ reading
@pytest.mark.parametrize("gz", [True, False])
def test_reads_gzip_and_raw_idx(tmp_path, gz):
    images, labels = write_split(tmp_path, "train", n=6, gz=gz)
    ds = MNIST(tmp_path)
    assert len(ds) == 6 and ds.data.dtype == np.uint8
    np.testing.assert_array_equal(ds.data, images)
    image, label = ds[4]
    np.testing.assert_array_equal(image, images[4])
    assert label == labels[4] and isinstance(label, int)


def test_idx_header_bytes(tmp_path):
    write_idx(tmp_path / "x", np.zeros((2, 3, 4), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3])
    assert [int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12)] == [2, 3, 4]
    assert len(raw) == 16 + 24


def test_transforms_and_fast_path(tmp_path):
    images, labels = write_split(tmp_path, n=7)
    ds = MNIST(tmp_path, train=False, transform=lambda x: x.astype(np.float32) / 255,
               target_transform=lambda y: y + 100)
    x, y = next(iter(DataLoader(ds, batch_size=7)))  # batched: one transform call
    assert x.shape == (7, 28, 28) and x.dtype == tg.float32
    np.testing.assert_allclose(x.numpy(), images / 255, rtol=1e-6)
    assert y.tolist() == (labels.astype(int) + 100).tolist()
    assert ds[2][1] == labels[2] + 100


@pytest.mark.parametrize("folder", ["mnist", "MNIST/raw", "MNIST"])
def test_finds_the_common_folder_names_under_TINYGRAD_ZH_DATA(tmp_path, monkeypatch, folder):
    write_split(tmp_path / folder)
    monkeypatch.setenv("TINYGRAD_ZH_DATA", str(tmp_path))
    assert MNIST(train=False).root == tmp_path / folder


def test_fashion_mnist_folder_names(tmp_path):
    write_split(tmp_path / "fashion-mnist", "train")
    ds = FashionMNIST(tmp_path)
    assert ds.root == tmp_path / "fashion-mnist" and ds.classes[9] == "Ankle boot"


# ------------------------------------------------------------------ errors
def test_missing_folder_names_the_places_and_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGRAD_ZH_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError) as e:
        MNIST()
    message = str(e.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "data" / "mnist") in message
    assert HOW_TO in message
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        MNIST(tmp_path / "nowhere")


def test_bad_magic_number(tmp_path):
    write_split(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.zeros((3, 28, 28), np.uint8))  # an image file where labels belong
    with pytest.raises(ValueError, match=f"{path}: bad magic number 00 00 08 03; expected "
                                          f"00 00 08 01") as e:
        MNIST(tmp_path, train=False)
    assert HOW_TO in str(e.value)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_file(tmp_path, gz):
    write_split(tmp_path, gz=gz)
    path = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    cut = raw[:-100]
    path.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(ValueError, match=rf"{path}: truncated: the header announces shape "
                                         rf"\(5, 28, 28\), i.e. 3936 bytes") as e:
        MNIST(tmp_path, train=False)
    assert HOW_TO in str(e.value)


def test_cut_off_gzip_stream(tmp_path):
    write_split(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=f"{path}: cannot decompress"):
        MNIST(tmp_path, train=False)


def test_file_longer_than_its_header(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3]))
    with pytest.raises(ValueError, match="longer than its header says"):
        read_idx(path, ndim=1)


def test_image_and_label_counts_disagree(tmp_path):
    write_split(tmp_path, n=5, n_labels=4)
    with pytest.raises(ValueError, match=r"holds 5 images but .*t10k-labels-idx1-ubyte.gz "
                                         r"holds 4 labels") as e:
        MNIST(tmp_path, train=False)
    assert HOW_TO in str(e.value)


# ------------------------------------------------------------------ downloads
def gz_mirror(folder, seed=0):
    """A folder laid out like a mirror, and the md5 of each of its files."""
    write_split(folder, "train", seed=seed)
    write_split(folder, "t10k", seed=seed)
    return {p.name.removesuffix(".gz"): "md5:" + hashlib.md5(p.read_bytes()).hexdigest()
            for p in folder.iterdir()}


def test_download_tries_the_next_mirror_and_checks_checksums(tmp_path, monkeypatch):
    good = gz_mirror(tmp_path / "good")
    gz_mirror(tmp_path / "corrupt", seed=1)  # same names, other bytes: checksum mismatch
    monkeypatch.setattr(MNIST, "resources", good)
    monkeypatch.setattr(MNIST, "mirrors", ((tmp_path / "missing").as_uri() + "/",
                                           (tmp_path / "corrupt").as_uri() + "/",
                                           (tmp_path / "good").as_uri() + "/"))
    ds = MNIST(tmp_path / "cache", download=True)
    assert len(ds) == 5
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert files == sorted(f"{name}.gz" for name in good)  # no .part files left behind
    MNIST(tmp_path / "cache", train=False, download=True)  # present: nothing fetched


def test_download_failing_everywhere_lists_every_mirror(tmp_path):
    urls = [(tmp_path / name / "f.gz").as_uri() for name in ("a", "b")]
    with pytest.raises(RuntimeError, match="failed from every mirror") as e:
        download_file(urls, tmp_path / "out" / "f.gz", "md5:0")
    assert all(url in str(e.value) for url in urls)
    assert list((tmp_path / "out").iterdir()) == []


def test_download_into_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "resources", gz_mirror(tmp_path / "mirror"))
    monkeypatch.setattr(MNIST, "mirrors", ((tmp_path / "mirror").as_uri() + "/",))
    monkeypatch.setenv("TINYGRAD_ZH_DATA", str(tmp_path / "data"))
    assert MNIST(download=True).root == tmp_path / "data" / "mnist"


def test_sha256_checksums(tmp_path):
    source = tmp_path / "f"
    source.write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert download_file([source.as_uri()], tmp_path / "g", f"sha256:{digest}").read_bytes() \
        == b"hello"


# ------------------------------------------------------------------ the real data
def test_real_mnist_subset():
    folder = shared_data() / "mnist-subset"
    train, test = MNIST(folder), MNIST(folder, train=False)
    assert (len(train), len(test)) == (22699, 10000)
    assert test.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(test.targets).tolist() == [980, 1135, 1032, 1010, 982, 892, 958,
                                                  1028, 974, 1009]
    labels_gz = (folder / "t10k-labels-idx1-ubyte.gz").read_bytes()  # the official file
    assert "md5:" + hashlib.md5(labels_gz).hexdigest() == MNIST.resources["t10k-labels-idx1-ubyte"]
    assert abs(train.data.mean() / 255 - 0.1307) < 0.002  # the usual normalisation mean


def test_real_fashion_mnist():
    folder = shared_data() / "fashion-mnist"
    train, test = FashionMNIST(folder), FashionMNIST(folder, train=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert np.bincount(train.targets).tolist() == [6000] * 10

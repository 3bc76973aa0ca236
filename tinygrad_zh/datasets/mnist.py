"""MNIST and Fashion-MNIST: 28x28 grey images in the IDX format, found locally or downloaded.

An IDX file is a tiny header followed by raw bytes (big-endian, "network order"):

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 = unsigned byte
    byte  3     number of dimensions: 3 for images (count, rows, cols), 1 for labels
    then        one 4-byte size per dimension, then the elements, row by row

So a training-image file starts ``00 00 08 03 | 00 00 ea 60 | 00 00 00 1c | 00 00 00 1c``
(60000 images of 28 x 28). We trust the header's counts and check them against
the file's size, so a subset (the first N images, with N in the header) loads
unchanged, and a truncated download fails with a clear message.

Where the files are looked for, in order:

1. ``root``, if given (the files directly in it, or in ``root/<folder>``);
2. ``$TINYGRAD_ZH_DATA/<folder>``;
3. Debian's ``/usr/share/datasets/<folder>`` (package ``dataset-fashion-mnist``);

where ``<folder>`` is one of the usual names (``mnist``, ``MNIST/raw``, ...;
see ``folders``). Each file may be gzip-compressed (``.gz``) or raw.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())            # a 3-image stand-in for the test set
    >>> write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    >>> write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([7, 2, 1], np.uint8))
    >>> ds = MNIST(root=folder, train=False)
    >>> image, label = ds[0]
    >>> image.shape, image.dtype, label, len(ds)
    ((28, 28), dtype('uint8'), 7, 3)

Where we differ from torchvision: a sample's image is a uint8 NumPy array
(not a PIL image), and ``ds.data`` / ``ds.targets`` are NumPy arrays.
"""
import gzip
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from ..tensor import Tensor
from ..utils.data import Dataset

__all__ = ["MNIST", "FashionMNIST", "read_idx", "write_idx", "download_file"]


class MNIST(Dataset):
    """The handwritten digits 0-9: 60,000 training and 10,000 test images.

    ``transform`` is applied to each image (``ds[i]``) or to a whole batch of
    images at once (``(B, 28, 28)``, on the DataLoader's fast path); every
    transform in ``tinygrad_zh.transforms`` accepts both. ``target_transform``
    is applied to each label.
    """
    folders = ("mnist", "MNIST/raw", "MNIST", "mnist-subset")
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",         # PyTorch's copy
        "https://dataset.bj.bcebos.com/mnist/",                   # PaddlePaddle's, in Beijing
        "https://storage.googleapis.com/cvdf-datasets/mnist/",    # Google's
    )
    # (file name, "algorithm:hex digest") of the official gzip files.
    resources = {
        "train-images-idx3-ubyte": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    }
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root=None, train=True, transform=None, target_transform=None,
                 download=False):
        self.train, self.transform, self.target_transform = train, transform, target_transform
        prefix = "train" if train else "t10k"
        names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
        folder = self._find_folder(root, names)
        if folder is None and download:
            folder = self._download(root)
        if folder is None:
            raise FileNotFoundError(
                f"{type(self).__name__}: no {names[0]}[.gz] and {names[1]}[.gz] in "
                f"{', '.join(map(str, self._search_path(root)))}. {self._how_to_get()}")
        self.root = folder
        images_path, labels_path = (_data_file(folder, name) for name in names)
        self.data = read_idx(images_path, ndim=3, how_to=self._how_to_get())
        self.targets = read_idx(labels_path, ndim=1, how_to=self._how_to_get()).astype(np.int64)
        if len(self.data) != len(self.targets):
            raise ValueError(f"{type(self).__name__}: {images_path} holds {len(self.data)} "
                             f"images but {labels_path} holds {len(self.targets)} labels. "
                             f"{self._how_to_get()}")

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        image, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __getitems__(self, indices):
        """A whole batch ``(images, labels)`` with one fancy index (the DataLoader's fast path)."""
        images, targets = self.data[indices], self.targets[indices]
        if self.transform is not None:
            images = self.transform(images)
        if self.target_transform is not None:
            targets = np.array([self.target_transform(int(t)) for t in targets])
        return _as_tensor(images), _as_tensor(targets)

    def __repr__(self):
        split = "train" if self.train else "test"
        return f"{type(self).__name__}({split}, {len(self)} images, root={str(self.root)!r})"

    # ---------------------------------------------------------------- finding the files
    def _search_path(self, root):
        """Every folder the files may be in, in the order they are tried."""
        if root is not None:
            return [Path(root)] + [Path(root, f) for f in self.folders]
        bases = [Path(os.environ["TINYGRAD_ZH_DATA"])] if os.environ.get("TINYGRAD_ZH_DATA") \
            else []
        bases.append(Path("/usr/share/datasets"))
        return [Path(base, f) for base in bases for f in self.folders]

    def _find_folder(self, root, names):
        for folder in self._search_path(root):
            if all(_data_file(folder, name) is not None for name in names):
                return folder
        return None

    def _how_to_get(self):
        return (f"To get the data: pass download=True, or set TINYGRAD_ZH_DATA to a folder "
                f"holding {self.folders[0]}/, or pass root='a folder with the four IDX files'.")

    # ---------------------------------------------------------------- downloading
    def _download(self, root):
        """Fetch the four files into ``root`` (or the cache folder); returns that folder."""
        folder = Path(root) if root is not None else _cache_folder() / self.folders[0]
        for name, checksum in self.resources.items():
            path = folder / f"{name}.gz"
            if not path.exists() or not _checksum_matches(path, checksum):
                download_file([m + path.name for m in self.mirrors], path, checksum)
        return folder


class FashionMNIST(MNIST):
    """Zalando's clothing images, a harder drop-in replacement for MNIST (same sizes)."""
    folders = ("fashion-mnist", "FashionMNIST/raw", "FashionMNIST", "fashion_mnist")
    mirrors = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",        # Zalando's
        "https://dataset.bj.bcebos.com/fashion_mnist/",                        # Paddle's, Beijing
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    )
    resources = {
        "train-images-idx3-ubyte": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    }
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


# ------------------------------------------------------------------ IDX files
IDX_UBYTE = 0x08


def read_idx(path, ndim, how_to=""):
    """The uint8 array stored in an IDX file (gzip or raw), its header checked.

        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp(), "labels-idx1-ubyte")
        >>> write_idx(path, np.array([7, 2, 1], np.uint8))
        >>> path.read_bytes()[:8].hex(" ")          # magic 00 00 08 01, then the count 3
        '00 00 08 01 00 00 00 03'
        >>> read_idx(path, ndim=1)
        array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    try:
        raw = gzip.open(path).read() if is_gzip else path.read_bytes()
    except (OSError, EOFError) as e:  # a cut-off gzip stream
        raise ValueError(f"IDX file {path}: cannot decompress ({e}); the file is damaged or "
                         f"truncated. {how_to}") from e
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != IDX_UBYTE or raw[3] != ndim:
        raise ValueError(f"IDX file {path}: bad magic number {raw[:4].hex(' ')}; expected "
                         f"00 00 08 {ndim:02x} (unsigned bytes, {ndim} dims). Is it an MNIST "
                         f"{'image' if ndim == 3 else 'label'} file? {how_to}")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"IDX file {path}: truncated header ({len(raw)} bytes). {how_to}")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(f"IDX file {path}: {problem}: the header announces shape {shape}, "
                         f"i.e. {expected} bytes{' uncompressed' if is_gzip else ''}, but "
                         f"there are {len(raw)}. {how_to}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def write_idx(path, array):
    """Write a uint8 array as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _data_file(folder, name):
    """``folder/name.gz`` or ``folder/name``, whichever exists (else None)."""
    for candidate in (Path(folder, name + ".gz"), Path(folder, name)):
        if candidate.is_file():
            return candidate
    return None


# ------------------------------------------------------------------ downloads
def download_file(urls, path, checksum):
    """Fetch ``path`` from the first of ``urls`` that answers with the right checksum.

    The bytes go to a temporary file beside ``path`` that is renamed into place
    only once its checksum matches, so an interrupted download never leaves a
    half file under the real name. ``checksum`` is ``"md5:<hex>"`` or
    ``"sha256:<hex>"``.
    """
    from tqdm import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=path.name) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
            if not _checksum_matches(tmp, checksum):
                raise ValueError(f"checksum mismatch (expected {checksum})")
            os.replace(tmp, path)
            return path
        except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
            failures.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise RuntimeError(f"download of {path.name} failed from every mirror:\n  "
                       + "\n  ".join(failures)
                       + f"\nDownload it by hand into {path.parent}, or set TINYGRAD_ZH_DATA.")


def _checksum_matches(path, checksum):
    algorithm, expected = checksum.split(":")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() == expected


def _cache_folder():
    """Where downloads go: $TINYGRAD_ZH_DATA, else ~/.cache/tinygrad_zh."""
    if os.environ.get("TINYGRAD_ZH_DATA"):
        return Path(os.environ["TINYGRAD_ZH_DATA"])
    return Path.home() / ".cache" / "tinygrad_zh"


def _as_tensor(array):
    return array if isinstance(array, Tensor) else Tensor(array)

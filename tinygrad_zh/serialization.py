"""save / load: checkpoints that can never run code when they are opened.

``save(obj, path)`` stores nested dicts, lists and tuples of tensors, NumPy
arrays, numbers, strings, booleans and None: a model's ``state_dict()``, an
optimizer's, a config, a vocabulary. ``load(path)`` gives the same structure
back, with every array bit for bit (dtype and shape included).

    >>> import os, tempfile
    >>> import tinygrad_zh as tg
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> tg.save({"w": tg.tensor([1.0, 2.0]), "step": 3, "betas": (0.9, 0.999), 7: None}, path)
    >>> tg.load(path)
    {'w': tensor([1., 2.]), 'step': 3, 'betas': (0.9, 0.999), 7: None}

Why this format. ``torch.save`` pickles, and unpickling a file can run any
code its author chose: a downloaded checkpoint is a program. Here the file is
a zip archive, the layout of NumPy's ``.npz``:

- one ``arrays/N.npy`` member per tensor or array, written by NumPy's own
  ``.npy`` writer and read back with ``allow_pickle=False``, so an array of
  Python objects (the one thing ``.npy`` would pickle) is refused;
- one ``tinygrad_zh.json`` member describing the structure: which containers
  are tuples and which lists, which arrays were tensors, dict keys with their
  types (an optimizer state dict has int keys; JSON alone would turn them
  into strings).

NumPy and JSON are all it needs (no safetensors package), ``np.load`` opens
the file too, and a learner can unzip it and read the JSON.

The file is written atomically: into a temporary file in the same folder,
flushed and fsynced, then renamed over ``path``; a crash while saving leaves
the previous file intact.

Tensors come back as plain tensors on the device they were saved from (or on
``map_location``), with ``requires_grad=False``: a checkpoint holds values,
not a graph. Load them into a model with ``model.load_state_dict``.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from . import backend
from .tensor import Tensor

FORMAT = "tinygrad_zh"
VERSION = 1
STRUCTURE = "tinygrad_zh.json"   # the archive member that describes the structure

_SCALARS = (str, int, float, bool, type(None))


def save(obj, path):
    """Write ``obj`` (nested dict/list/tuple of tensors, arrays, numbers, strings,
    booleans, None) to ``path``, atomically; see the module docstring."""
    path = _as_path(path, "save")
    arrays = []
    structure = {"format": FORMAT, "version": VERSION, "root": _encode(obj, arrays, "obj")}
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: cannot write {path}: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        _give_default_permissions(tmp)
        with os.fdopen(fd, "wb") as f:
            _write_archive(f, structure, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_folder(folder)


def load(path, map_location=None):
    """Read what ``save`` wrote. ``map_location='cpu'`` (or ``'cuda:N'``) puts every
    tensor there; by default each goes back to the device it was saved from.

    Never unpickles: a pickle file, a PyTorch checkpoint, or anything that is
    not a tinygrad_zh checkpoint raises an error that names the path.
    """
    path = _as_path(path, "load")
    if map_location is not None:
        map_location = backend.parse_device(map_location)
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80":
        raise ValueError(f"load: {path} is a Python pickle file (a torch.save checkpoint?). "
                         "tinygrad_zh.load never unpickles: unpickling can run arbitrary code")
    if head != b"PK\x03\x04":
        raise ValueError(f"load: {path} is not a tinygrad_zh checkpoint: it is not a zip "
                         f"archive (it starts with {head!r})")
    try:
        with zipfile.ZipFile(path) as archive:
            structure = _read_structure(archive, path)
            return _decode(structure["root"], _ArrayReader(archive, path), map_location, path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"load: {path} is truncated or corrupt: {e}") from e


# ------------------------------------------------------------------ encoding
# A node of the JSON structure is a str, int, float, bool or null (itself), or
# an object with a "type": "list" / "tuple" {"items"}, "dict" {"keys", "values"},
# "tensor" / "ndarray" / "numpy_scalar" {"array": index, ...}.
def _encode(obj, arrays, where):
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, Tensor):
        arrays.append(backend.to_device(obj.data, "cpu"))
        return {"type": "tensor", "array": len(arrays) - 1, "device": obj.device}
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.hasobject:
            raise TypeError(f"save: {where} is a NumPy array of Python objects, which only "
                            "pickle could store; convert it to numbers or a list")
        arrays.append(np.asarray(obj))
        return {"type": "ndarray" if isinstance(obj, np.ndarray) else "numpy_scalar",
                "array": len(arrays) - 1}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"type": "tuple" if isinstance(obj, tuple) else "list", "items": items}
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, _SCALARS):
                raise TypeError(f"save: {where} has a key {key!r} of type "
                                f"{type(key).__name__}; keys must be str, int, float, bool "
                                "or None")
        return {"type": "dict", "keys": list(obj),
                "values": [_encode(v, arrays, f"{where}[{k!r}]") for k, v in obj.items()]}
    raise TypeError(f"save: {where} is a {type(obj).__name__}; only tensors, NumPy arrays, "
                    "numbers, strings, booleans, None and dicts/lists/tuples of them can be "
                    "saved")


def _write_archive(f, structure, arrays):
    text = json.dumps(structure, indent=1, allow_nan=True)
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(STRUCTURE, text)
        for i, array in enumerate(arrays):
            with archive.open(f"arrays/{i}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _give_default_permissions(tmp):
    """mkstemp makes the file private (0600); a saved checkpoint should get the
    permissions any new file gets (0666 minus the umask), like open() gives."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX); Windows cannot open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ decoding
def _read_structure(archive, path):
    names = archive.namelist()
    if STRUCTURE not in names:
        hint = " (it looks like a PyTorch checkpoint)" if any(
            n.endswith("data.pkl") for n in names) else ""
        raise ValueError(f"load: {path} is a zip archive but not a tinygrad_zh checkpoint: it "
                         f"has no {STRUCTURE}{hint}; members: {names[:5]}")
    try:
        structure = json.loads(archive.read(STRUCTURE).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load: {path} is corrupt: {STRUCTURE} is not valid JSON ({e})") from e
    if not isinstance(structure, dict) or structure.get("format") != FORMAT or "root" not in \
            structure:
        raise ValueError(f"load: {path} is corrupt: {STRUCTURE} does not describe a "
                         "tinygrad_zh checkpoint")
    if structure.get("version") != VERSION:
        raise ValueError(f"load: {path} has format version {structure.get('version')}; this "
                         f"tinygrad_zh reads version {VERSION}")
    return structure


class _ArrayReader:
    """Reads ``arrays/N.npy`` members on demand, never with pickle."""

    def __init__(self, archive, path):
        self.archive, self.path = archive, path

    def __call__(self, index):
        name = f"arrays/{index}.npy"
        try:
            with self.archive.open(name) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
        except KeyError as e:
            raise ValueError(f"load: {self.path} is corrupt: {name} is missing") from e
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise ValueError(f"load: {self.path}: {name} holds Python objects, which only "
                                 "unpickling could read; refused") from e
            raise ValueError(f"load: {self.path} is corrupt: {name}: {e}") from e
        except (OSError, EOFError) as e:
            raise ValueError(f"load: {self.path} is truncated or corrupt: {name}: {e}") from e


def _decode(node, read_array, map_location, path):
    if isinstance(node, _SCALARS):
        return node
    if not isinstance(node, dict) or "type" not in node:
        raise ValueError(f"load: {path} is corrupt: unexpected node {str(node)[:80]} in the "
                         "structure")
    kind = node["type"]
    if kind in ("list", "tuple"):
        items = [_decode(v, read_array, map_location, path) for v in node["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        values = [_decode(v, read_array, map_location, path) for v in node["values"]]
        return dict(zip(node["keys"], values))
    if kind == "tensor":
        device = map_location or node["device"]
        try:
            return Tensor._make(backend.to_device(read_array(node["array"]), device))
        except RuntimeError as e:  # no CuPy, or no such GPU
            raise RuntimeError(f"load: {path} holds a tensor saved on {node['device']}, which "
                               f"cannot be restored here ({e}); pass map_location='cpu'") from e
    if kind == "ndarray":
        return read_array(node["array"])
    if kind == "numpy_scalar":
        return read_array(node["array"])[()]
    raise ValueError(f"load: {path} is corrupt: unknown node type {kind!r}")


def _as_path(path, op):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{op}: expected a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    return os.fspath(path)

"""tinygrad_zh.save / load: exact round trips, atomic writes, and files it must refuse."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_zh as tg
from tinygrad_zh import serialization

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None)
DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_]


def same(a, b):
    """Equal in type, structure, dtype, shape and every bit."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, tg.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
        assert a.data.tobytes() == b.data.tobytes()
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b) and [type(k) for k in a] == [type(k) for k in b]
        for x, y in zip(a.values(), b.values()):
            same(x, y)
    elif isinstance(a, float):
        assert np.float64(a).tobytes() == np.float64(b).tobytes()  # -0.0 and NaN too
    else:
        assert a == b


def round_trip(obj, tmp_path, **kw):
    path = tmp_path / "obj.npz"
    tg.save(obj, path)
    return tg.load(path, **kw)


# ------------------------------------------------------------------ round trips
@given(array=hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=3,
                                                                    min_side=0, max_side=4)),
       as_tensor=st.booleans())
@SETTINGS
def test_arrays_and_tensors_round_trip_bit_for_bit(array, as_tensor, tmp_path_factory):
    obj = tg.from_numpy(array) if as_tensor else array
    same(round_trip(obj, tmp_path_factory.mktemp("rt")), obj)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5))
ARRAYS = hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
KEYS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
STRUCTURES = st.recursive(
    st.one_of(SCALARS, ARRAYS, ARRAYS.map(tg.from_numpy)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.lists(children, max_size=3).map(tuple),
                               st.dictionaries(KEYS, children, max_size=3)),
    max_leaves=12)


@given(obj=STRUCTURES)
@SETTINGS
def test_random_nested_structures_round_trip(obj, tmp_path_factory):
    same(round_trip(obj, tmp_path_factory.mktemp("rt")), obj)


def test_nan_payloads_and_signed_zeros_survive(tmp_path):
    bits = np.array([0x7FC00001, 0xFFC00000, 0x80000000, 0x7F800000], dtype=np.uint32)
    array = bits.view(np.float32)  # two NaNs with different payloads, -0.0, inf
    same(round_trip({"x": tg.from_numpy(array)}, tmp_path), {"x": tg.from_numpy(array)})


def test_nested_structures_and_python_values_round_trip(tmp_path):
    obj = {
        "model": {"linear.weight": tg.randn(3, 2), "linear.bias": tg.zeros(3, dtype=tg.float64)},
        "optimizer": {"state": {0: {"step": 4, "exp_avg": tg.ones(3)}, 1: {}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1],
                                        "amsgrad": False, "foreach": None}]},
        "vocab": {"a": 0, "b": 1, "中文": 2, "": 3},
        "keys": {1: "int", "1": "str", 2.5: "float", True: "bool", None: "none"},
        "numbers": [0, -1, 2**70, 1.5, float("inf"), float("nan"), -0.0],
        "nested": ([], (), {}, [[(1, [2])]]),
        "numpy": [np.float32(1.5), np.int64(-3), np.bool_(True), np.zeros((0, 3))],
        "0-d": tg.tensor(3.0),
    }
    same(round_trip(obj, tmp_path), obj)


def test_tensors_that_required_grad_come_back_as_plain_tensors(tmp_path):
    w = tg.randn(2, 2, requires_grad=True)
    back = round_trip(w, tmp_path)
    assert not back.requires_grad and back.is_leaf
    assert back.data.tobytes() == w.data.tobytes()


def test_loaded_arrays_are_writable_and_independent(tmp_path):
    t = tg.ones(3)
    back = round_trip(t, tmp_path)
    back.data[0] = 5
    assert t.tolist() == [1.0, 1.0, 1.0]


def test_map_location_cpu(tmp_path):
    back = round_trip({"w": tg.ones(2)}, tmp_path, map_location="cpu")
    assert back["w"].device == "cpu"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        tg.load(tmp_path / "obj.npz", map_location="gpu")


def test_a_tensor_saved_on_a_gpu_needs_map_location_without_one(tmp_path):
    path = tmp_path / "gpu.npz"
    tg.save({"w": tg.ones(2)}, path)
    _rewrite_structure(path, lambda s: s["root"]["values"][0].update(device="cuda:0"))
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed: the GPU tensor would load")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="saved on cuda:0.*map_location='cpu'"):
        tg.load(path)
    assert tg.load(path, map_location="cpu")["w"].device == "cpu"


def test_the_file_is_an_npz_that_numpy_reads_without_pickle(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": tg.arange(3), "b": np.ones(2)}, path)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["arrays/0", "arrays/1", serialization.STRUCTURE]
        assert npz["arrays/0"].tolist() == [0, 1, 2]


def test_state_dict_of_an_optimizer_round_trips_with_int_keys(tmp_path):
    w = tg.randn(3, requires_grad=True)
    opt = tg.optim.Adam([w], lr=0.01, amsgrad=True)
    w.grad = tg.randn(3)
    opt.step()
    sd = opt.state_dict()
    same(round_trip(sd, tmp_path), sd)


# ------------------------------------------------------------------ atomic writes
def test_a_crash_while_writing_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    tg.save({"version": 1, "w": tg.ones(4)}, path)
    before = path.read_bytes()
    calls = []

    def failing_write(member, array, **kw):
        calls.append(1)
        if len(calls) == 2:  # after the first array went out: a half-written archive
            raise OSError("disk full (simulated)")
        real_write(member, array, **kw)

    real_write = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        tg.save({"version": 2, "w": tg.zeros(4), "b": tg.zeros(4)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # the temporary file was removed
    assert tg.load(path)["version"] == 1


def test_an_unsupported_object_fails_before_touching_the_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"a": 1}, path)
    with pytest.raises(TypeError, match=r"save: obj\['cfg'\]\[1\] is a set"):
        tg.save({"a": 2, "cfg": [1, {2}]}, path)
    with pytest.raises(TypeError, match="has a key \\(1, 2\\) of type tuple"):
        tg.save({(1, 2): 3}, path)
    with pytest.raises(TypeError, match="array of Python objects"):
        tg.save(np.array([None, 1], dtype=object), path)
    assert tg.load(path) == {"a": 1} and os.listdir(tmp_path) == ["ckpt.npz"]


# ------------------------------------------------------------------ files it must refuse
class Boom:
    """Unpickling this would run os.system: load must never do it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_file_is_refused_and_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": Boom()}))
    monkeypatch.setattr(pickle, "loads", _never)
    monkeypatch.setattr(pickle, "load", _never)
    with pytest.raises(ValueError, match=f"load: {path} is a Python pickle file.*never unpickles"):
        tg.load(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_pickled_array_inside_the_archive_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.npz"
    tg.save({"w": np.zeros(2)}, path)
    evil = np.array([Boom()], dtype=object)
    with zipfile.ZipFile(path, "a") as archive, archive.open("arrays/1.npy", "w") as f:
        np.lib.format.write_array(f, evil, allow_pickle=True)
    _rewrite_structure(path, lambda s: s["root"]["values"][0].update(array=1))
    with pytest.raises(ValueError, match="arrays/1.npy holds Python objects.*refused"):
        tg.load(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_pytorch_checkpoint_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="not a tinygrad_zh checkpoint.*PyTorch checkpoint"):
        tg.load(path)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_a_truncated_file_is_reported(tmp_path, cut):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": tg.randn(100), "b": tg.randn(50)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ValueError, match=f"load: {path} is truncated or corrupt"):
        tg.load(path)


def test_corrupt_and_foreign_files_are_reported(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"hello world")
    with pytest.raises(ValueError, match=f"{path} is not a tinygrad_zh checkpoint: it is not a "
                                         "zip archive"):
        tg.load(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a zip archive"):
        tg.load(path)
    np.savez(path, a=np.ones(2))  # a plain .npz: a zip without our structure
    with pytest.raises(ValueError, match=f"{path} is a zip archive but not a tinygrad_zh "
                                         "checkpoint: it has no tinygrad_zh.json"):
        tg.load(path)

    tg.save({"w": tg.ones(2)}, path)
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY")  # flip bytes inside the array data: the CRC catches it
    data[start + 130] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupt.*CRC"):
        tg.load(path)

    tg.save({"w": tg.ones(2)}, path)
    _rewrite_structure(path, lambda s: s.update(format="something else"))
    with pytest.raises(ValueError, match="corrupt: tinygrad_zh.json does not describe"):
        tg.load(path)
    tg.save({"w": tg.ones(2)}, path)
    _rewrite_structure(path, lambda s: s["root"]["values"][0].update(array=7))
    with pytest.raises(ValueError, match="corrupt: arrays/7.npy is missing"):
        tg.load(path)


def test_paths_must_be_paths(tmp_path):
    with pytest.raises(TypeError, match="save: expected a file path"):
        tg.save({}, 3)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        tg.load(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match=f"the folder {tmp_path / 'no'} does not exist"):
        tg.save({}, tmp_path / "no" / "x.npz")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_saved_file_gets_the_permissions_open_would_give(tmp_path):
    tg.save({}, tmp_path / "saved.npz")
    with open(tmp_path / "opened.npz", "wb"):
        pass
    mode = lambda name: os.stat(tmp_path / name).st_mode & 0o777  # noqa: E731
    assert mode("saved.npz") == mode("opened.npz")


# ------------------------------------------------------------------ helpers
def _never(*args, **kwargs):
    raise AssertionError("pickle was called")


def _rewrite_structure(path, edit):
    """Rewrite the archive with its JSON structure changed by ``edit``."""
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    structure = json.loads(members[serialization.STRUCTURE])
    edit(structure)
    members[serialization.STRUCTURE] = json.dumps(structure).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)

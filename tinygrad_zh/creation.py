"""Ways to make a tensor: from data, filled with a value, random, or a range.

Random tensors come from one generator per device, reseeded by
``manual_seed`` so that a run can be repeated exactly.

    >>> import tinygrad_zh as tg
    >>> _ = tg.manual_seed(0)
    >>> a = tg.randn(2, 3)
    >>> _ = tg.manual_seed(0)
    >>> bool((tg.randn(2, 3) == a).all())
    True
"""
import numpy as np

from . import backend
from .ops.movement import as_shape
from .tensor import Tensor, as_dtype, float32, int64

_cpu_generator = np.random.default_rng()
_seed = None
_cuda_needs_seed = False  # manual_seed was called since CuPy's generator was last seeded


def manual_seed(seed):
    """Seed the random generators of every device.

    CuPy's generator is seeded when a GPU tensor next draws from it, so a seed
    set before CuPy is even imported (the usual first line of a script) counts.
    """
    global _cpu_generator, _seed, _cuda_needs_seed
    _seed = int(seed)
    _cpu_generator = np.random.default_rng(_seed)
    _cuda_needs_seed = True
    return _seed


def _generator(device):
    global _cuda_needs_seed
    if device == "cpu":
        return _cpu_generator
    cp = backend.cupy()
    if _cuda_needs_seed:
        cp.random.seed(_seed)
        _cuda_needs_seed = False
    return cp.random


def _finish(array, requires_grad):
    t = Tensor._make(array)
    if requires_grad:
        t.requires_grad_()
    return t


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (list, number, NumPy array, tensor)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array):
    """A tensor sharing memory with a NumPy array (no copy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    as_dtype(array.dtype)
    return Tensor._make(array)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = Tensor(fill_value).dtype
    device = backend.parse_device(device)
    array = backend.asarray(np.full(as_shape((size,)), fill_value, as_dtype(dtype)), None, device)
    return _finish(array, requires_grad)


def zeros(*size, dtype=float32, device=None, requires_grad=False):
    return full(as_shape(size), 0, dtype, device, requires_grad)


def ones(*size, dtype=float32, device=None, requires_grad=False):
    return full(as_shape(size), 1, dtype, device, requires_grad)


def empty(*size, dtype=float32, device=None, requires_grad=False):
    """Like PyTorch's: memory you must fill; here it is zeroed, which costs little."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def randn(*size, dtype=float32, device=None, requires_grad=False):
    """Standard normal samples, N(0, 1)."""
    device, dtype = backend.parse_device(device), as_dtype(dtype)
    array = _generator(device).standard_normal(as_shape(size), dtype=dtype)
    return _finish(array, requires_grad)


def rand(*size, dtype=float32, device=None, requires_grad=False):
    """Uniform samples in [0, 1)."""
    device, dtype = backend.parse_device(device), as_dtype(dtype)
    gen = _generator(device)
    array = gen.random(as_shape(size), dtype=dtype) if device == "cpu" else \
        gen.random_sample(as_shape(size), dtype=dtype)
    return _finish(array, requires_grad)


def randint(low, high, size, dtype=int64, device=None):
    """Uniform integers in [low, high)."""
    device = backend.parse_device(device)
    array = _generator(device).integers(low, high, as_shape((size,))) if device == "cpu" else \
        _generator(device).randint(low, high, as_shape((size,)))
    return _finish(array.astype(as_dtype(dtype)), False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """``arange(5)`` -> 0..4; integers give int64, floats give float32 (as in PyTorch)."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) \
            else float32
    array = backend.asarray(np.arange(start, end, step), as_dtype(dtype), device)
    return _finish(array, requires_grad)


def linspace(start, end, steps, dtype=float32, device=None, requires_grad=False):
    array = backend.asarray(np.linspace(start, end, steps), as_dtype(dtype), device)
    return _finish(array, requires_grad)


def eye(n, m=None, dtype=float32, device=None, requires_grad=False):
    return _finish(backend.asarray(np.eye(n, m), as_dtype(dtype), device), requires_grad)


def _like(maker, t, dtype, device, requires_grad, *args):
    return maker(*args, dtype=t.dtype if dtype is None else dtype,
                 device=t.device if device is None else device, requires_grad=requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return _like(zeros, t, dtype, device, requires_grad, t.shape)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return _like(ones, t, dtype, device, requires_grad, t.shape)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return _like(full, t, dtype, device, requires_grad, t.shape, fill_value)


def randn_like(t, dtype=None, device=None, requires_grad=False):
    return _like(randn, t, dtype, device, requires_grad, t.shape)


def rand_like(t, dtype=None, device=None, requires_grad=False):
    return _like(rand, t, dtype, device, requires_grad, t.shape)

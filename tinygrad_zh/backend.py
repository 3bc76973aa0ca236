"""Where arrays live: the one place that chooses between NumPy (CPU) and CuPy (GPU).

Every op is written once against an "array module" ``xp`` — ``numpy`` for CPU
arrays, ``cupy`` for GPU arrays — the idea DeZero calls ``get_array_module``.
CuPy is imported only when a GPU tensor is first asked for, so a CPU-only
install never needs it.

    >>> import numpy as np
    >>> array_module(np.zeros(3)) is np
    True
    >>> parse_device("cuda")
    'cuda:0'
"""
import numpy as np

_cupy = None  # the cupy module, once a GPU tensor has been asked for


def cupy():
    """Import CuPy on first use, with an error that says how to get it."""
    global _cupy
    if _cupy is None:
        try:
            import cupy as cp
        except ImportError as e:
            raise RuntimeError(
                "a 'cuda' tensor was requested but CuPy is not installed; "
                "install the GPU extra: pip install 'tinygrad_zh[gpu]'") from e
        _cupy = cp
    return _cupy


def array_module(array):
    """``numpy`` for a CPU array, ``cupy`` for a GPU array."""
    if type(array) is np.ndarray or _cupy is None:
        return np
    return _cupy if isinstance(array, _cupy.ndarray) else np


def ensure_array(result):
    """NumPy returns 0-d results as scalars (np.float32(3.0)); make them arrays again."""
    return np.asarray(result) if isinstance(result, np.generic) else result


def parse_device(device):
    """Normalise a device name: 'cpu', 'cuda' -> 'cuda:0', 'cuda:1' stays."""
    if device is None or device == "cpu":
        return "cpu"
    if isinstance(device, str):
        if device == "cuda":
            return "cuda:0"
        if device.startswith("cuda:") and device[5:].isdigit():
            return device
    raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")


def device_of(array):
    """The device name of an array: 'cpu' or 'cuda:N'.

    A CuPy array made before tinygrad_zh needed CuPy (``tg.tensor(cp.ones(3))``)
    is recognised by its CUDA array interface, which imports CuPy here.
    """
    if type(array) is np.ndarray:
        return "cpu"
    if _cupy is None:
        if not hasattr(array, "__cuda_array_interface__"):
            return "cpu"
        cupy()
    if not isinstance(array, _cupy.ndarray):
        return "cpu"
    return f"cuda:{array.device.id}"


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    device = parse_device(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    cp = cupy()
    with cp.cuda.Device(int(device[5:])):
        return cp.asarray(array)


def asarray(data, dtype, device):
    """An array of ``dtype`` on ``device`` from a list, scalar or array."""
    device = parse_device(device)
    if device == "cpu":
        if device_of(data) != "cpu":
            data = data.get()
        return np.asarray(data, dtype=dtype)
    cp = cupy()
    with cp.cuda.Device(int(device[5:])):
        return cp.asarray(data, dtype=dtype)


def max_keepdims(array, axis):
    """``array.max(axis, keepdims=True)``, and -inf where ``axis`` is empty.

    NumPy spells this ``max(..., initial=-inf)``; CuPy's ``max`` has no
    ``initial`` and refuses empty arrays, so an empty input is answered here
    (an empty axis reduced gives -inf; an empty axis kept, an empty result).
    The shift of softmax, log-softmax, logsumexp and cross-entropy.

        >>> max_keepdims(np.array([[1.0, 3.0]]), 1), max_keepdims(np.zeros((2, 0)), 1)
        (array([[3.]]), array([[-inf],
               [-inf]]))
    """
    if array.size:
        return array.max(axis=axis, keepdims=True)
    axes = range(array.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    shape = tuple(1 if a in axes else n for a, n in enumerate(array.shape))
    return array_module(array).full(shape, -np.inf, dtype=array.dtype)


# ---------------------------------------------------------------- special functions
# NumPy has no erf; GELU (exact form) needs it. On the CPU a Numba ufunc wraps the
# C library's erf (exact to the last bit, compiled once and cached); on the GPU
# CuPy ships its own.
_erf_cpu = None


def erf(array):
    """The error function, elementwise, on either device, in the input's dtype
    (float16 is computed in float32 and rounded back)."""
    global _erf_cpu
    if array_module(array) is not np:
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(array).astype(array.dtype, copy=False)
    if _erf_cpu is None:
        import math
        import numba

        @numba.vectorize(["float32(float32)", "float64(float64)"], cache=True)
        def _erf(x):
            return math.erf(x)
        _erf_cpu = _erf
    return _erf_cpu(array).astype(array.dtype, copy=False)

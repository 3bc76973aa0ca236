"""Movement ops: change the shape or order of elements, never their values.

Primitives: Reshape, Permute, Expand, Cat. Their backward moves the gradient
the opposite way (reshape back, inverse permutation, sum over the expanded
dims — done by the autograd walk —, slice the pieces apart). Everything else
here (transpose, squeeze, unsqueeze, flatten, stack, split, chunk) is built
from them and from slicing.
"""
import functools

import numpy as np

from .. import backend
from ..autograd import Function


# ------------------------------------------------------------------ dim arithmetic
def normalize_dim(dim, ndim, op="dim"):
    """A dim in [-ndim, ndim) -> [0, ndim). A 0-d tensor accepts 0 and -1, as in PyTorch."""
    n = max(ndim, 1)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    if not -n <= dim < n:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of "
                         f"[{-n}, {n - 1}], but got {dim})")
    return dim % n


def normalize_dims(dims, ndim, op="dim"):
    """None (all dims), an int or a sequence of ints -> None or a sorted tuple.

    An empty sequence means all dims too, as in PyTorch (``x.sum(dim=())``).
    """
    if dims is None:
        return None
    if isinstance(dims, (int, np.integer)):
        dims = (dims,)
    if len(dims) == 0:
        return None
    result = tuple(sorted({normalize_dim(d, ndim, op) for d in dims}))
    if len(result) != len(dims):
        raise ValueError(f"{op}: dim {tuple(dims)} names a dimension twice")
    return tuple(d for d in result if d < ndim)  # a 0-d tensor has nothing to reduce


def as_shape(args):
    """Accept both ``reshape(2, 3)`` and ``reshape((2, 3))``."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    return tuple(int(n) for n in args)


def normalize_permutation(dims, ndim):
    dims = tuple(normalize_dim(d, ndim, "permute") for d in dims)
    if sorted(dims) != list(range(ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {ndim} dims")
    return dims


def expanded_shape(shape, sizes):
    """expand's target: -1 keeps a dim; new dims may be added in front."""
    sizes = as_shape(sizes)
    lead = len(sizes) - len(shape)
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {shape} to fewer dims {sizes}")
    return tuple(shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(sizes))


# ------------------------------------------------------------------ primitives
class Reshape(Function):
    is_view = True

    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Permute(Function):
    is_view = True

    def forward(self, a, dims):
        self.inverse = tuple(np.argsort(dims))
        return a.transpose(dims)

    def backward(self, grad):
        return grad.permute(*self.inverse)


class Expand(Function):
    """Broadcast size-1 dims (and new leading dims) without copying."""
    is_view = True

    def forward(self, a, shape):
        return backend.array_module(a).broadcast_to(a, shape)

    def backward(self, grad):
        return grad  # the autograd walk sums it back to the input's shape


class Cat(Function):
    def forward(self, *arrays, dim):
        self.dim, self.sizes = dim, [a.shape[dim] for a in arrays]
        return backend.array_module(arrays[0]).concatenate(arrays, axis=dim)

    def backward(self, grad):
        return tuple(grad.split(self.sizes, self.dim))


# ------------------------------------------------------------------ composites
def transpose(x, dim0, dim1):
    dims = list(range(x.ndim))
    d0, d1 = normalize_dim(dim0, x.ndim, "transpose"), normalize_dim(dim1, x.ndim, "transpose")
    if x.ndim == 0:
        return x
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return x.permute(*dims)


def squeeze(x, dim=None):
    """Remove size-1 dims (all of them, or those in ``dim`` that have size 1)."""
    dims = range(x.ndim) if dim is None else normalize_dims(dim, x.ndim, "squeeze")
    drop = {d for d in dims if x.shape[d] == 1}
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if i not in drop))


def unsqueeze(x, dim):
    """Insert a size-1 dim at ``dim`` (which may be ``x.ndim``, or negative)."""
    dim = normalize_dim(dim, x.ndim + 1, "unsqueeze")
    return x.reshape(x.shape[:dim] + (1,) + x.shape[dim:])


def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return x.reshape(1)
    start = normalize_dim(start_dim, x.ndim, "flatten")
    end = normalize_dim(end_dim, x.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    merged = int(np.prod(x.shape[start:end + 1]))
    return x.reshape(x.shape[:start] + (merged,) + x.shape[end + 1:])


def _check_same_device(tensors, op):
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise RuntimeError(f"{op}: expected all tensors on one device, got {sorted(devices)}")


def cat(tensors, dim=0):
    """Join tensors along an existing dim."""
    tensors = list(tensors)
    _check_same_device(tensors, "cat")
    from .elementwise import result_dtype
    dtype = functools.reduce(result_dtype, [t.dtype for t in tensors])
    tensors = [t.to(dtype) for t in tensors]
    return Cat.apply(*tensors, dim=normalize_dim(dim, tensors[0].ndim, "cat"))


def stack(tensors, dim=0):
    """Join tensors along a new dim."""
    tensors = list(tensors)
    _check_same_device(tensors, "stack")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: expects tensors of one shape, got {sorted(shapes)}")
    dim = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(dim) for t in tensors], dim)


def split(x, split_size_or_sections, dim=0):
    """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or of the given sizes."""
    dim = normalize_dim(dim, x.ndim, "split")
    length = x.shape[dim]
    if isinstance(split_size_or_sections, (int, np.integer)):
        step = int(split_size_or_sections)
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, length - start) for start in range(0, length, step)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != length:
            raise ValueError(f"split: sizes {sizes} add up to {sum(sizes)}, but dim {dim} of "
                             f"shape {x.shape} has length {length}")
    pieces, start = [], 0
    for size in sizes:
        key = (slice(None),) * dim + (slice(start, start + size),)
        pieces.append(x[key])
        start += size
    return tuple(pieces)


def chunk(x, chunks, dim=0):
    """Split into ``chunks`` pieces of ceil(length / chunks) (fewer if it divides unevenly)."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    length = x.shape[normalize_dim(dim, x.ndim, "chunk")]
    if length == 0:  # PyTorch gives `chunks` empty pieces
        return split(x, [0] * chunks, dim)
    return split(x, -(-length // chunks), dim)

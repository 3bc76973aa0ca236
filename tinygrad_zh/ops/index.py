"""Indexing: ``x[key]`` with slices, integers, integer arrays and boolean masks; gather.

Two primitives, each the other's backward:

- ``GetItem``  picks elements: ``out = x[key]``.
- ``IndexAdd`` puts a gradient back where they came from: ``out = zeros; out[key] += g``.
  When ``key`` holds an integer array, one element may be picked several times
  (``x[[0, 0, 1]]``); its gradient must be the *sum* of those picks, which a
  plain assignment would lose, so then we scatter-add with ``add.at``.

``gather`` is a GetItem with a key built from the index tensor.
"""
import numpy as np

from .. import backend
from .. import tensor as _tensor
from ..autograd import Function
from .movement import normalize_dim


def getitem(x, key):
    """``x[key]``, with PyTorch's rules.

    Basic keys (ints, slices, None, ...) give a view that writes through, as in
    NumPy and PyTorch: ``x[0].add_(1)`` changes ``x``. Negative-step slices
    (``x[::-1]``) work as in NumPy, where PyTorch refuses them. An integer or bool
    tensor in the key is version-checked like a saved input: changing it in
    place before backward is an error, not a wrong gradient.

        >>> import tinygrad_zh as tg
        >>> x = tg.zeros(2, 3)
        >>> _ = x[0].add_(1)
        >>> x
        tensor([[1., 1., 1.],
                [0., 0., 0.]])
    """
    if key.__class__ is slice or key.__class__ is int:  # the commonest keys, fast
        return GetItem.apply(x, key=(key, Ellipsis), view=True)
    key, watched = normalize_index(key)
    if _is_basic(key):
        if not any(k is Ellipsis for k in key):
            key = key + (Ellipsis,)  # x[0] is then a 0-d view, not a copied NumPy scalar
        return GetItem.apply(x, key=key, view=True)
    if any(_is_int(k) for k in key):
        # PyTorch applies ints before the index arrays, so an int never counts as an
        # array index: x[0, :, [0, 1]] has shape (3, 2), where NumPy's rule gives (2, 3).
        ints_first, key = _split_ints(key)
        x = GetItem.apply(x, key=ints_first, view=True)
    return GetItem.apply(x, key=key, view=False, watched=watched)


def normalize_index(key):
    """A key in NumPy's form, and the tensors in it (to version-check).

    Tensors become their arrays, a 0-d integer tensor or NumPy integer an int,
    lists integer or bool arrays (``[]`` an empty integer array, as in PyTorch).
    """
    if not isinstance(key, tuple):
        key = (key,)
    result, watched = [], []
    for k in key:
        tensor = k if isinstance(k, _tensor.Tensor) else None
        if tensor is not None:
            k = k.data
        elif isinstance(k, list):
            k = np.asarray(k) if k else np.zeros(0, dtype=np.int64)
        if hasattr(k, "dtype") and k.ndim == 0 and k.dtype.kind in "iu":
            k = int(k)  # a 0-d integer tensor or NumPy integer is an int (a view, no copy)
        elif tensor is not None:
            watched.append(tensor)
        if hasattr(k, "dtype") and k.dtype.kind not in "iub":
            raise IndexError(f"getitem: index arrays must be integer or bool, got dtype {k.dtype}")
        result.append(k)
    return tuple(result), watched


def _is_int(k):
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


def _is_array(k):
    return hasattr(k, "dtype") or isinstance(k, (bool, np.bool_))


def _has_integer_array(key):
    return any(hasattr(k, "dtype") and k.ndim > 0 and k.dtype.kind in "iu" for k in key)


def _is_basic(key):
    """Only ints, slices, None and ...: NumPy returns a view, no element twice."""
    return not any(_is_array(k) for k in key)


def _split_ints(key):
    """``key`` as two keys applied one after the other: the ints (the array
    positions kept as full slices), then the arrays (the int dims gone)."""
    first, second = [], []
    for k in key:
        if _is_array(k):
            first.extend([slice(None)] * _dims_covered(k))
            second.append(k)
        elif _is_int(k):
            first.append(k)
        else:
            first.append(k)
            second.append(k if k is Ellipsis else slice(None))
    return tuple(first), tuple(second)


def _dims_covered(k):
    """How many dims of the indexed tensor an array index covers."""
    if isinstance(k, (bool, np.bool_)):
        return 0
    return k.ndim if k.dtype.kind == "b" else 1


class GetItem(Function):
    """``a[key]``; ``view``: the key is basic, so the result shares a's memory."""

    def forward(self, a, key, view, watched=()):
        self.shape, self.key, self.is_view = a.shape, key, view
        self.remember_versions(watched)
        return a[key]

    def backward(self, grad):
        self.check_versions()
        return IndexAdd.apply(grad, shape=self.shape, key=self.key)


class IndexAdd(Function):
    """zeros(shape) with ``grad`` added at ``key`` (repeated indices add up)."""

    def forward(self, grad, shape, key):
        self.key = key
        xp = backend.array_module(grad)
        out = xp.zeros(shape, dtype=grad.dtype)
        if _has_integer_array(key):
            xp.add.at(out, _masks_to_positions(key), grad)
        else:
            out[key] = grad
        return out

    def backward(self, grad):
        return GetItem.apply(grad, key=self.key, view=_is_basic(self.key))


def _masks_to_positions(key):
    """add.at wants integer positions; a bool mask becomes the positions it selects."""
    result = []
    for k in key:
        if hasattr(k, "dtype") and k.dtype.kind == "b" and k.ndim > 0:
            result.extend(k.nonzero())
        else:
            result.append(k)
    return tuple(result)


def gather(x, dim, index):
    """``out[i][j][k] = x[i][index[i][j][k]][k]`` for dim=1, as ``torch.gather``.

    Built as ``x[key]`` with ``index`` on axis ``dim`` and a broadcast range on
    every other axis, so the gradient is GetItem's scatter-add.
    """
    dim = normalize_dim(dim, x.ndim, "gather")
    if not isinstance(index, _tensor.Tensor) or index.dtype.kind not in "iu":
        raise TypeError("gather: index must be an integer tensor")
    if index.ndim != x.ndim:
        raise ValueError(f"gather: index has {index.ndim} dims but the input has {x.ndim} "
                         f"(shapes {index.shape} and {x.shape})")
    for d, (n_index, n_x) in enumerate(zip(index.shape, x.shape)):
        if d != dim and n_index > n_x:
            raise ValueError(f"gather: index shape {index.shape} is larger than input shape "
                             f"{x.shape} at dim {d}")
    size = x.shape[dim] if x.ndim else 1
    if index.numel() and not (0 <= int(index.data.min()) and int(index.data.max()) < size):
        bad = index.data[(index.data < 0) | (index.data >= size)].ravel()[0]
        raise IndexError(f"gather: index {bad} is out of bounds for dim {dim} with size {size} "
                         f"(input shape {x.shape})")
    xp = backend.array_module(x.data)
    key = tuple(index.data if d == dim else
                xp.arange(n).reshape((-1,) + (1,) * (index.ndim - d - 1))
                for d, n in enumerate(index.shape))
    return GetItem.apply(x, key=key, view=False, watched=(index,))

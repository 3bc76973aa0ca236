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


def normalize_index(key):
    """Tensors in a key become their arrays; lists become integer/bool arrays."""
    if not isinstance(key, tuple):
        key = (key,)
    result = []
    for k in key:
        if isinstance(k, _tensor.Tensor):
            k = k.data
        elif isinstance(k, list):
            k = np.asarray(k)
        if hasattr(k, "dtype") and k.dtype.kind not in "iub":
            raise IndexError(f"index arrays must be integer or bool, got dtype {k.dtype}")
        result.append(k)
    return tuple(result)


def _has_integer_array(key):
    return any(hasattr(k, "dtype") and k.ndim > 0 and k.dtype.kind in "iu" for k in key)


def _is_basic(key):
    """Only ints, slices, None and ...: NumPy returns a view, no element twice."""
    return not any(hasattr(k, "dtype") and (k.ndim > 0 or k.dtype.kind == "b") for k in key)


class GetItem(Function):
    def forward(self, a, key):
        self.shape, self.key = a.shape, key
        self.is_view = _is_basic(key)
        return a[key]

    def backward(self, grad):
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
        return GetItem.apply(grad, key=self.key)


def _masks_to_positions(key):
    """add.at wants integer positions; a bool mask becomes the positions it selects."""
    result = []
    for k in key:
        if hasattr(k, "dtype") and k.dtype.kind == "b" and k.ndim > 0:
            result.extend(k.nonzero())
        else:
            result.append(k)
    return tuple(result)


def getitem(x, key):
    return GetItem.apply(x, key=normalize_index(key))


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
    xp = backend.array_module(x.data)
    key = tuple(index.data if d == dim else
                xp.arange(n).reshape((-1,) + (1,) * (index.ndim - d - 1))
                for d, n in enumerate(index.shape))
    return GetItem.apply(x, key=key)

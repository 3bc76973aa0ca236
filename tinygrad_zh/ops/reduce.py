"""Reductions: sum and max are primitives; mean, var, logsumexp are built from them.

``dim`` arrives already normalised to a tuple of non-negative dims (or None for
"all dims") by ``movement.normalize_dims``.
"""
from collections import namedtuple

import numpy as np

from .. import backend
from ..autograd import Function
from . import movement
from .elementwise import constant

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])  # what max(dim) returns


def _kept_shape(shape, dim):
    """The output shape with keepdim=True: reduced dims become 1."""
    if dim is None:
        return (1,) * len(shape)
    return tuple(1 if i in dim else n for i, n in enumerate(shape))


class Sum(Function):
    def forward(self, a, dim, keepdim):
        self.shape, self.dim = a.shape, dim
        return a.sum(axis=dim, keepdims=keepdim)

    def backward(self, grad):
        # Every input element contributed once: copy the gradient back over the reduced dims.
        return grad.reshape(_kept_shape(self.shape, self.dim)).expand(self.shape)


class Max(Function):
    """amax: the gradient goes to the maximal elements, split evenly between ties."""
    save_inputs = True
    save_output = True

    def forward(self, a, dim, keepdim):
        self.dim = dim
        return a.max(axis=dim, keepdims=keepdim)

    def backward(self, grad):
        (a,) = self.saved_inputs
        kept = _kept_shape(a.shape, self.dim)
        is_max = (a == self.saved_output.reshape(kept)).data
        share = is_max / is_max.sum(axis=self.dim, keepdims=True)
        return grad.reshape(kept) * constant(share.astype(a.dtype))


def _reduced_shape(shape, dim):
    """The output shape with keepdim=False."""
    return () if dim is None else tuple(n for i, n in enumerate(shape) if i not in dim)


# ------------------------------------------------------------------ composites
def _count(x, dim):
    """How many elements each output of a reduction over ``dim`` combines."""
    dims = movement.normalize_dims(dim, x.ndim, "mean")
    return x.numel() if dims is None else int(np.prod([x.shape[d] for d in dims]))


def mean(x, dim=None, keepdim=False):
    return x.sum(dim, keepdim) / _count(x, dim)


def var(x, dim=None, correction=1, keepdim=False):
    """Variance with Bessel's correction by default (divide by n - 1), as in PyTorch."""
    centered = x - x.mean(dim, keepdim=True)
    return (centered * centered).sum(dim, keepdim) / max(_count(x, dim) - correction, 0)


def logsumexp(x, dim, keepdim=False):
    """log(Σ exp(x)) without overflow: subtract the max first, add it back after.

    The shift m is a constant (no gradient needed: the result does not depend
    on it); where m is ±inf it is replaced by 0 so that inf - inf never happens.
    """
    dims = movement.normalize_dims(dim, x.ndim, "logsumexp")
    xp = backend.array_module(x.data)
    m = x.data.max(axis=dims, keepdims=True, initial=-np.inf)
    m = constant(xp.where(xp.isfinite(m), m, 0).astype(x.dtype))
    out = (x - m).exp().sum(dims, keepdim=True).log() + m
    return out if keepdim else out.reshape(_reduced_shape(x.shape, dims))


def values_at(x, name, dim, keepdim):
    """max(dim) / min(dim): the values at argmax / argmin, and those indices.

    Picking the values with gather sends the whole gradient to the one returned
    index, as PyTorch does (amax, by contrast, splits it between ties).
    """
    indices = arg_reduce(x, name, dim, keepdim=True)
    values = x.gather(dim, indices)
    if not keepdim:
        values, indices = values.squeeze(dim), indices.squeeze(dim)
    return ValuesIndices(values, indices)


def arg_reduce(x, name, dim, keepdim):
    """argmax/argmin: int64 indices, no gradient."""
    if dim is None:
        result = getattr(x.data.ravel(), name)()
        result = result.reshape((1,) * x.ndim) if keepdim else result
    else:
        axis = movement.normalize_dim(dim, x.ndim, name)
        result = getattr(x.data, name)(axis=axis, keepdims=keepdim)
    return constant(backend.ensure_array(result).astype(np.int64))

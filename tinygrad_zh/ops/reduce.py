"""Reductions: sum, amax/amin, var, std and logsumexp are Functions; mean is a sum
divided by a count, and max(dim)/min(dim) gather the values at argmax/argmin.

var and logsumexp are fused (one Function each, with the derivative written
out, as PyTorch does); ``var_reference`` and ``logsumexp_reference`` are the
compositions they are tested against.

``dim`` arrives already normalised to a tuple of non-negative dims (or None for
"all dims") by ``movement.normalize_dims``.
"""
import math
from collections import namedtuple

import numpy as np

from .. import backend
from ..autograd import Function
from . import movement
from .elementwise import Where, constant, masked

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])  # what max(dim) returns


def _kept_shape(shape, dim):
    """The output shape with keepdim=True: reduced dims become 1."""
    if dim is None:
        return (1,) * len(shape)
    return tuple(1 if i in dim else n for i, n in enumerate(shape))


class Sum(Function):
    """Sum over ``dim``; integers and bools add up in int64, as in PyTorch."""

    def forward(self, a, dim, keepdim):
        self.shape, self.dim = a.shape, dim
        return a.sum(axis=dim, keepdims=keepdim, dtype=None if a.dtype.kind == "f" else np.int64)

    def backward(self, grad):
        # Every input element contributed once: copy the gradient back over the reduced dims.
        return grad.reshape(_kept_shape(self.shape, self.dim)).expand(self.shape)


class Max(Function):
    """amax: the gradient goes to the maximal elements, split evenly between ties.

    A NaN is the maximum (NaN propagates) and gets the gradient, as in PyTorch's
    ``max()``. Elements that are not the maximum get exactly 0, also when the
    upstream gradient is inf or NaN (PyTorch's ``amax`` multiplies by a 0/1 mask
    and gives NaN there). ``Min`` is the same with ``min``.
    """
    save_inputs = True
    save_output = True
    reducer = "max"

    def forward(self, a, dim, keepdim):
        self.dim = dim
        return getattr(a, self.reducer)(axis=dim, keepdims=keepdim)

    def backward(self, grad):
        (a,) = self.saved_inputs
        kept = _kept_shape(a.shape, self.dim)
        best = self.saved_output.data.reshape(kept)
        xp = backend.array_module(best)
        is_best = (a.data == best) | (xp.isnan(a.data) & xp.isnan(best))
        count = is_best.sum(axis=self.dim, keepdims=True).astype(a.dtype)
        return masked(grad.reshape(kept) / constant(count), is_best)


class Min(Max):
    reducer = "min"


class Var(Function):
    """Variance over ``dim``, dividing by n - correction.

    Fused, with PyTorch's backward 2(x - mean)·g / (n - correction): the
    composite ``var_reference`` would also send -(1/n)·Σ over the
    "mean" path, which is 0 in exact arithmetic but inf - inf = NaN as soon as
    one element is infinite.
    """
    save_inputs = True

    def forward(self, a, dim, correction, keepdim):
        self.dim = dim
        count = a.size if dim is None else math.prod(a.shape[d] for d in dim)
        self.divisor = max(count - correction, 0)
        centered = a - a.mean(axis=dim, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # inf or NaN, as in PyTorch
            squares = (centered * centered).sum(axis=dim, keepdims=keepdim)
            return backend.array_module(a).asarray(squares / a.dtype.type(self.divisor))

    def backward(self, grad):
        (x,) = self.saved_inputs
        scale = 2 / self.divisor if self.divisor else math.inf
        centered = x - x.mean(self.dim, keepdim=True)
        return grad.reshape(_kept_shape(x.shape, self.dim)) * centered * scale


class Std(Function):
    """sqrt of a variance, whose gradient is 0 where the variance is 0.

    d sqrt(v)/dv = 1 / (2 sqrt(v)) is inf at v = 0, and var's backward would
    multiply it by x - mean = 0: NaN. At constant data the std is at its
    minimum, where PyTorch picks the gradient 0; so do we.
    """
    save_output = True

    def forward(self, variance):
        return backend.array_module(variance).sqrt(variance)

    def backward(self, grad):
        out = self.saved_output
        nonzero = out.data != 0
        # the divisor is replaced where it is 0, so that a second derivative is not NaN either
        one = backend.array_module(out.data).ones((), dtype=out.dtype)
        safe = Where.apply(constant(nonzero), out, constant(one))
        return masked(grad * 0.5 / safe, nonzero)


class LogSumExp(Function):
    """log(sum(exp(x))) over ``dim``, without overflow; the gradient is softmax(x).

    Fused, like softmax: ``logsumexp_reference`` is the composite it is tested
    against. With the shift m (the max) and s = log Σ exp(x - m) from the
    forward, the backward is g·exp((x - m) - s): the shifted form keeps float32
    digits, and it gives 0 (not NaN) to the finite elements when one is +inf,
    as PyTorch does.
    """
    save_inputs = True
    save_output = True

    def forward(self, a, dim, keepdim):
        self.dim = dim
        xp = backend.array_module(a)
        # Shift by the max m so exp() cannot overflow; an infinite m is replaced
        # by 0 so that inf - inf never happens.
        m = backend.max_keepdims(a, dim)
        self.shift = xp.where(xp.isfinite(m), m, 0).astype(a.dtype)
        with np.errstate(divide="ignore"):  # log(0) = -inf for an empty or all -inf row
            self.log_total = xp.log(xp.exp(a - self.shift).sum(axis=dim, keepdims=True))
        out = self.log_total + self.shift
        return out if keepdim else out.reshape(_reduced_shape(a.shape, dim))

    def backward(self, grad):
        (x,) = self.saved_inputs
        kept = _kept_shape(x.shape, self.dim)
        out = self.saved_output.reshape(kept)
        # exp(x - out), computed as exp((x - m) - s) to keep float32 digits. The
        # term out - out.detach() is exactly 0 but carries out's dependence on x,
        # which a second derivative needs (0 outright where out is infinite).
        zero = masked(out - out.detach(), backend.array_module(out.data).isfinite(out.data))
        exponent = (x - constant(self.shift)) - constant(self.log_total) - zero
        return grad.reshape(kept) * exponent.exp()


def _reduced_shape(shape, dim):
    """The output shape with keepdim=False."""
    return () if dim is None else tuple(n for i, n in enumerate(shape) if i not in dim)


# ------------------------------------------------------------------ composites
def _count(x, dim):
    """How many elements each output of a reduction over ``dim`` combines."""
    dims = movement.normalize_dims(dim, x.ndim, "mean")
    return x.numel() if dims is None else int(np.prod([x.shape[d] for d in dims]))


def mean(x, dim=None, keepdim=False):
    """Mean over ``dim``. Of an integer tensor it is a float32 mean, where
    PyTorch raises: a deliberate leniency (``/`` turns integers into floats too)."""
    return x.sum(dim, keepdim) / _count(x, dim)


def var(x, dim=None, correction=1, keepdim=False):
    """Variance with Bessel's correction by default (divide by n - 1), as in PyTorch."""
    dim = movement.normalize_dims(dim, x.ndim, "var")
    return Var.apply(x._floating(), dim=dim, correction=correction, keepdim=keepdim)


def var_reference(x, dim=None, correction=1, keepdim=False):
    """var as the textbook composition, for testing the fused op."""
    centered = x - x.mean(dim, keepdim=True)
    return (centered * centered).sum(dim, keepdim) / max(_count(x, dim) - correction, 0)


def std(x, dim=None, correction=1, keepdim=False):
    """Standard deviation; its gradient is 0 (not NaN) for constant data.

        >>> import tinygrad_zh as tg
        >>> x = tg.tensor([1.0, 1.0, 1.0], requires_grad=True)
        >>> x.std().backward()
        >>> x.grad
        tensor([0., 0., 0.])
    """
    return Std.apply(var(x, dim, correction, keepdim))


def logsumexp(x, dim, keepdim=False):
    """log(Σ exp(x)) over ``dim``, computed without overflow (see LogSumExp)."""
    return LogSumExp.apply(x, dim=movement.normalize_dims(dim, x.ndim, "logsumexp"),
                           keepdim=keepdim)


def logsumexp_reference(x, dim, keepdim=False):
    """logsumexp as the textbook composition, for testing the fused op: subtract
    the max m (a constant: the result does not depend on it), add it back after."""
    dims = movement.normalize_dims(dim, x.ndim, "logsumexp")
    m = x.detach().amax(dims, keepdim=True)
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

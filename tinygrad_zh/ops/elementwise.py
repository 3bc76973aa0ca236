"""Elementwise ops: arithmetic, exp/log/sqrt/abs/erf, where, dtype/device conversion.

Each Function's backward is the textbook derivative, multiplied by the incoming
gradient (the chain rule), written with Tensor ops. Gradients may keep the
broadcast shape: the autograd walk sums them back (autograd.sum_to_shape).
The composites at the end (maximum, minimum, clamp) are built from these.
"""
import math

import numpy as np

from .. import backend
from .. import tensor as _tensor
from ..autograd import Function


def constant(array):
    """A tensor that never needs a gradient, e.g. a mask made in backward."""
    return _tensor.Tensor._make(array)


def result_dtype(a, b):
    """The dtype of an op on dtypes a and b, PyTorch's way.

    NumPy promotes int64 + float32 to float64; PyTorch (and we) keep float32:
    a float operand decides the result, an integer one follows it.
    """
    if (a.kind == "f") != (b.kind == "f"):
        return a if a.kind == "f" else b
    return np.promote_types(a, b)


def promote_pair(a, b):
    """Bring two tensors to one dtype (no-op, and no cost, when they match)."""
    if a.dtype == b.dtype:
        return a, b
    dtype = result_dtype(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad


class Mul(Function):
    save_inputs = True

    def forward(self, a, b):
        return a * b

    def backward(self, grad):
        a, b = self.saved_inputs
        return (grad * b if a.requires_grad else None,   # skip work for a constant
                grad * a if b.requires_grad else None)


class Div(Function):
    save_inputs = True

    def forward(self, a, b):
        return a / b

    def backward(self, grad):
        a, b = self.saved_inputs
        grad_a = grad / b
        return grad_a, -grad_a * a / b     # d(a/b)/db = -a / b²


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class Pow(Function):
    """a ** b, both tensors (a scalar exponent arrives as a 0-d tensor)."""
    save_inputs = True
    save_output = True

    def forward(self, a, b):
        return a ** b

    def backward(self, grad):
        a, b = self.saved_inputs
        grad_a = grad * b * a ** (b - 1)
        # d(a^b)/db = a^b · ln a; only computed when b needs it (ln a is NaN for a < 0).
        grad_b = grad * self.saved_output * a.log() if b.requires_grad else None
        return grad_a, grad_b


class Exp(Function):
    save_output = True

    def forward(self, a):
        return backend.array_module(a).exp(a)

    def backward(self, grad):
        return grad * self.saved_output          # (eˣ)' = eˣ


class Log(Function):
    save_inputs = True

    def forward(self, a):
        return backend.array_module(a).log(a)

    def backward(self, grad):
        (a,) = self.saved_inputs
        return grad / a


class Sqrt(Function):
    save_output = True

    def forward(self, a):
        return backend.array_module(a).sqrt(a)

    def backward(self, grad):
        return grad * 0.5 / self.saved_output    # (√x)' = 1 / (2√x)


class Abs(Function):
    def forward(self, a):
        self.sign = backend.array_module(a).sign(a)  # the derivative; 0 at 0, as in PyTorch
        return abs(a)

    def backward(self, grad):
        return grad * constant(self.sign)


class Erf(Function):
    save_inputs = True

    def forward(self, a):
        return backend.erf(a)

    def backward(self, grad):
        (a,) = self.saved_inputs
        return grad * (2 / math.sqrt(math.pi)) * (-a * a).exp()


class Where(Function):
    """where(condition, a, b): a where the condition holds, else b."""
    save_inputs = True

    def forward(self, condition, a, b):
        return backend.array_module(a).where(condition, a, b)

    def backward(self, grad):
        condition = self.saved_inputs[0]
        zero = 0.0
        return None, where(condition, grad, zero), where(condition, zero, grad)


class Clone(Function):
    def forward(self, a):
        return a.copy()

    def backward(self, grad):
        return grad


class Convert(Function):
    """Change dtype and/or device; the gradient goes back the same way."""

    def forward(self, a, dtype, device):
        self.dtype, self.device = a.dtype, backend.device_of(a)
        return backend.to_device(a, device).astype(dtype, copy=False)

    def backward(self, grad):
        return grad.to(self.dtype, self.device)


# ------------------------------------------------------------------ composites
def where(condition, a, b):
    """Elementwise ``a if condition else b``; ``a`` or ``b`` may be Python numbers."""
    like = a if isinstance(a, _tensor.Tensor) else b
    if not isinstance(condition, _tensor.Tensor):
        condition = like._lift(condition)
    a, b = promote_pair(like._lift(a), like._lift(b))
    if condition.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor, got dtype {condition.dtype}")
    return Where.apply(condition, a, b)


def maximum(a, b):
    """Elementwise max; at a tie each side gets half the gradient (as in PyTorch)."""
    return where(a == b, (a + b) * 0.5, where(a > b, a, b))


def minimum(a, b):
    return -maximum(-a, -b)


def clamp(x, min=None, max=None):
    """Limit x to [min, max]; the gradient passes where min <= x <= max."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if min is not None:
        x = where(x < min, min, x)
    if max is not None:
        x = where(x > max, max, x)
    return x

"""Elementwise ops: arithmetic, exp/log/sqrt/abs/erf, maximum/minimum/clamp, where,
dtype/device conversion, and the dtype promotion rule all of them share.

Each Function's backward is the textbook derivative, multiplied by the incoming
gradient (the chain rule), written with Tensor ops. Gradients may keep the
broadcast shape: the autograd walk sums them back (autograd.sum_to_shape).

Where a derivative is "0 here, something else there" (relu, abs, clamp,
maximum, pow at 0, where, amax), the backward *selects* with :func:`masked`
instead of multiplying by a 0/1 mask: an upstream gradient of inf (from sqrt
or log at 0) times 0 would be NaN, and the positions cut off must get exactly 0.
"""
import functools
import math

import numpy as np

from .. import backend
from .. import tensor as _tensor
from ..autograd import Function


def constant(array):
    """A tensor that never needs a gradient, e.g. a mask made in backward."""
    return _tensor.Tensor._make(array)


def masked(grad, keep):
    """``grad`` where the bool array ``keep`` holds, exactly 0 elsewhere.

    The one way a backward cuts gradient off: it selects, never multiplies by a
    0/1 mask (inf * 0 and NaN * 0 are NaN). Written with Where, so it is
    differentiable again (create_graph).
    """
    zero = constant(backend.array_module(grad.data).zeros((), dtype=grad.dtype))
    return Where.apply(constant(keep), grad, zero)


def result_dtype(a, b):
    """The dtype of an op on dtypes a and b, PyTorch's way.

    NumPy promotes int64 + float32 to float64; PyTorch (and we) keep float32:
    a float operand decides the result, an integer one follows it.
    """
    if (a.kind == "f") != (b.kind == "f"):
        return a if a.kind == "f" else b
    return np.promote_types(a, b)


_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}  # bool < integer < floating


def result_type(*tensors):
    """The dtype of an op on these tensors: PyTorch's rule, 0-d tensors included.

    Tensors with dims decide; a 0-d tensor takes part only if its category
    (bool < integer < float) is higher than theirs. So float32 + 0-d float64
    stays float32 and int32 + 0-d int64 stays int32, but int32 + 0-d float64
    is float64. (Python scalars are "weak" too: ``Tensor._lift`` gives them a
    dtype before they get here.)

        >>> import tinygrad_zh as tg
        >>> result_type(tg.ones(2), tg.tensor(1.0, dtype=tg.float64))
        dtype('float32')
    """
    dimensioned = [t.dtype for t in tensors if t.ndim > 0]
    zero_dim = [t.dtype for t in tensors if t.ndim == 0]
    if not dimensioned or not zero_dim:
        return functools.reduce(result_dtype, dimensioned or zero_dim)
    dtype = functools.reduce(result_dtype, dimensioned)
    zero_dtype = functools.reduce(result_dtype, zero_dim)
    if _CATEGORY[zero_dtype.kind] > _CATEGORY[dtype.kind]:
        return result_dtype(dtype, zero_dtype)
    return dtype


def promote(*tensors):
    """Bring tensors to their common dtype (no-op, and no cost, when they match)."""
    first = tensors[0].data.dtype
    if all(t.data.dtype is first for t in tensors):
        return tensors
    dtype = result_type(*tensors)
    return tuple(t.to(dtype) for t in tensors)


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
    save_output = True

    def forward(self, a, b):
        return a / b

    def backward(self, grad):
        a, b = self.saved_inputs
        # d(a/b)/db = -a / b² = -(a/b) / b: the output over b never squares b, which
        # would underflow (b = 1e-300) or overflow.
        return (grad / b if a.requires_grad else None,
                -grad * (self.saved_output / b) if b.requires_grad else None)


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
        # d(a^b)/da = b·a^(b-1), which is 0·inf at a = 0, b = 0: the derivative of
        # a^0 = 1 is 0 there. d(a^b)/db = a^b·ln a is 0·(-inf) at a = 0, b >= 0:
        # 0^b is constant (0, or 1 at b = 0) for b > 0, so 0. Both as in PyTorch.
        # The masked-out positions also get harmless operands (exponent 0, log of 1):
        # a second derivative flows through them too, and 0 * inf there is NaN.
        grad_a = grad_b = None
        if a.requires_grad:
            used = b.data != 0
            grad_a = masked(grad * b * a ** masked(b - 1, used), used)
        if b.requires_grad:
            used = (a.data != 0) | (b.data < 0)
            one = backend.array_module(a.data).ones((), dtype=a.dtype)
            safe_a = Where.apply(constant(used), a, constant(one))
            grad_b = masked(grad * self.saved_output * safe_a.log(), used)
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
    """|x|; the derivative is sign(x), 0 at 0 and at NaN (as PyTorch's sgn).

    The 0 is selected, not multiplied in: sqrt(abs(x)) at x = 0 gives 0, where
    PyTorch (which multiplies) gives NaN.
    """
    def forward(self, a):
        self.sign = (a > 0).astype(a.dtype) - (a < 0).astype(a.dtype)
        return abs(a)

    def backward(self, grad):
        return masked(grad * constant(self.sign), self.sign != 0)


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
        condition = self.saved_inputs[0].data
        return None, masked(grad, condition), masked(grad, ~condition)


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


class Maximum(Function):
    """maximum(a, b), exact for every dtype; NaN in either input gives NaN.

    The gradient goes to the larger input, half to each at a tie, as in PyTorch.
    ``Minimum`` is the same with the comparison flipped.
    """
    save_inputs = True
    pick = "maximum"

    @staticmethod
    def beats(x, y):
        return x > y

    def forward(self, a, b):
        return getattr(backend.array_module(a), self.pick)(a, b)

    def backward(self, grad):
        a, b = self.saved_inputs
        xp = backend.array_module(a.data)
        grad = grad * constant(xp.where(a.data == b.data, 0.5, 1.0).astype(grad.dtype))
        # NaN compares false both ways, so a NaN position sends grad to both inputs (PyTorch).
        return (masked(grad, ~self.beats(b.data, a.data)) if a.requires_grad else None,
                masked(grad, ~self.beats(a.data, b.data)) if b.requires_grad else None)


class Minimum(Maximum):
    pick = "minimum"

    @staticmethod
    def beats(x, y):
        return x < y


class Clamp(Function):
    """clamp(x, lo, hi) = min(max(x, lo), hi), as in PyTorch (hi wins if lo > hi).

    The gradient reaches x where lo <= x <= hi (not at NaN), a bound where it is
    the answer. Where lo == hi and x < lo, lo gets it; PyTorch gives it to
    neither bound there (its rule for lo wants lo < hi strictly).
    """
    save_inputs = True

    def forward(self, a, lo, hi):
        xp = backend.array_module(a)
        return xp.minimum(xp.maximum(a, lo), hi)

    def backward(self, grad):
        needs = [t.requires_grad for t in self.saved_inputs]
        x, lo, hi = (t.data for t in self.saved_inputs)
        # (every comparison with a NaN is False: a NaN anywhere sends no gradient)
        return (masked(grad, (x >= lo) & (x <= hi)) if needs[0] else None,
                masked(grad, (x < lo) & (lo <= hi)) if needs[1] else None,
                masked(grad, (x > hi) | (lo > hi)) if needs[2] else None)


# ------------------------------------------------------------------ entry points
def where(condition, a, b):
    """Elementwise ``a if condition else b``; ``a`` or ``b`` may be Python numbers.

        >>> import tinygrad_zh as tg
        >>> where(tg.tensor([True, False]), 1.0, 0.0)
        tensor([1., 0.])
    """
    Tensor = _tensor.Tensor
    like = a if isinstance(a, Tensor) else b
    if not isinstance(condition, Tensor):
        condition = Tensor(condition)
    if not isinstance(like, Tensor):  # two Python numbers: PyTorch's default dtypes
        like = Tensor(a, device=condition.device)
    a, b = promote(like._lift(a), like._lift(b))
    if condition.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor, got dtype {condition.dtype}")
    return Where.apply(condition, a, b)


def maximum(a, b):
    """Elementwise max; at a tie each side gets half the gradient (as in PyTorch)."""
    return Maximum.apply(*promote(a, a._lift(b)))


def minimum(a, b):
    return Minimum.apply(*promote(a, a._lift(b)))


def clamp(x, min=None, max=None):
    """Limit x to [min, max] (numbers or tensors); the gradient passes where min <= x <= max."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    lo, hi = (x._lift(_no_bound(x.dtype, side) if v is None else v)
              for v, side in ((min, -1), (max, 1)))
    return Clamp.apply(*promote(x, lo, hi))


def _no_bound(dtype, side):
    """The number that does not limit a tensor of ``dtype`` from this side."""
    if dtype.kind == "f":
        return side * math.inf
    if dtype.kind == "b":
        return side > 0
    info = np.iinfo(dtype)
    return info.max if side > 0 else info.min

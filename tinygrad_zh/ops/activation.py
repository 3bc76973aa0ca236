"""Activations: relu, sigmoid, tanh and gelu; softmax and log_softmax.

softmax and log_softmax are hot paths (every classifier and every attention
layer), so each is one fused Function with its own backward. The plain
compositions ``softmax_reference`` / ``log_softmax_reference`` are kept as the
readable definition the fused ones are tested against.
"""
import math

from .. import backend
from ..autograd import Function
from .elementwise import constant


class Relu(Function):
    save_output = True

    def forward(self, a):
        return backend.array_module(a).maximum(a, 0)

    def backward(self, grad):
        # 1 where x > 0, else 0 (also at 0); out > 0 exactly where x > 0
        return grad * constant(self.saved_output.data > 0)


class Sigmoid(Function):
    save_output = True

    def forward(self, a):
        # σ(x) = ½(1 + tanh(x/2)): the same function, but never overflows exp().
        xp = backend.array_module(a)
        return 0.5 * (1 + xp.tanh(0.5 * a))

    def backward(self, grad):
        s = self.saved_output
        return grad * s * (1 - s)                # σ' = σ(1 - σ)


class Tanh(Function):
    save_output = True

    def forward(self, a):
        return backend.array_module(a).tanh(a)

    def backward(self, grad):
        t = self.saved_output
        return grad * (1 - t * t)                # tanh' = 1 - tanh²


def gelu(x, approximate="none"):
    """GELU(x) = x·Φ(x), Φ the standard normal CDF; or its tanh approximation (GPT-2)."""
    if approximate == "none":
        return 0.5 * x * (1 + (x * (1 / math.sqrt(2))).erf())
    if approximate == "tanh":
        return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


class Softmax(Function):
    save_output = True

    def forward(self, a, dim):
        # Subtracting the row max changes nothing mathematically (it cancels in
        # the ratio) but keeps exp() from overflowing for large logits.
        self.dim = dim
        xp = backend.array_module(a)
        e = xp.exp(a - a.max(axis=dim, keepdims=True, initial=-xp.inf))
        e /= e.sum(axis=dim, keepdims=True)  # in place: one temporary array fewer
        return e

    def backward(self, grad):
        # y = softmax(x): ∂L/∂x = y ⊙ (g - Σ_j g_j y_j)
        y = self.saved_output
        return y * (grad - (grad * y).sum(self.dim, keepdim=True))


class LogSoftmax(Function):
    save_output = True

    def forward(self, a, dim):
        self.dim = dim
        xp = backend.array_module(a)
        shifted = a - a.max(axis=dim, keepdims=True, initial=-xp.inf)
        return shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))

    def backward(self, grad):
        # y = log_softmax(x): ∂L/∂x = g - softmax(x) · Σ_j g_j, and softmax(x) = exp(y)
        return grad - self.saved_output.exp() * grad.sum(self.dim, keepdim=True)


def softmax_reference(x, dim):
    """softmax as the textbook composition, for testing the fused op."""
    e = (x - x.amax(dim, keepdim=True).detach()).exp()
    return e / e.sum(dim, keepdim=True)


def log_softmax_reference(x, dim):
    return x - x.logsumexp(dim, keepdim=True)

"""Activations: relu, sigmoid, tanh, gelu, softplus and logsigmoid; softmax and log_softmax.

softmax and log_softmax are hot paths (every classifier and every attention
layer), so each is one fused Function with its own backward. The plain
compositions ``softmax_reference`` / ``log_softmax_reference`` are kept as the
readable definition the fused ones are tested against.
"""
import math

from .. import backend
from ..autograd import Function
from .elementwise import masked, where


class Relu(Function):
    save_output = True

    def forward(self, a):
        return backend.array_module(a).maximum(a, 0)

    def backward(self, grad):
        # 1 where x > 0, else 0 (also at 0), selected: an inf gradient from
        # sqrt(relu(x)) at x <= 0 becomes 0, not NaN. out <= 0 exactly where
        # x <= 0; a NaN input passes the gradient on, as in PyTorch.
        return masked(grad, ~(self.saved_output.data <= 0))


class Sigmoid(Function):
    save_output = True

    def forward(self, a):
        # σ(x) = 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0: the same
        # function, written so that e^(-|x|) <= 1 never overflows and neither
        # tail loses digits (σ(-20) = 2.06e-9 even in float32).
        xp = backend.array_module(a)
        e = xp.exp(-abs(a))
        return xp.where(a >= 0, 1, e) / (1 + e)

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


class Softplus(Function):
    """softplus(x) = log(1 + e^(βx)) / β, and x itself where βx > threshold.

    Computed as max(βx, 0) + log1p(e^(-|βx|)): no overflow for large x, no
    lost digits for very negative x. The derivative is σ(βx).
    """
    save_inputs = True

    def forward(self, a, beta, threshold):
        self.beta, self.threshold = beta, threshold
        xp = backend.array_module(a)
        z = a * beta
        smooth = (xp.maximum(z, 0) + xp.log1p(xp.exp(-abs(z)))) / beta
        return xp.where(z > threshold, a, smooth).astype(a.dtype, copy=False)

    def backward(self, grad):
        (x,) = self.saved_inputs
        z = x * self.beta
        return where(z > self.threshold, grad, grad * z.sigmoid())


class LogSigmoid(Function):
    """log σ(x) = min(x, 0) - log1p(e^(-|x|)), never through log(σ(x)), which
    is -inf as soon as σ(x) rounds to 0. The derivative is σ(-x)."""
    save_inputs = True

    def forward(self, a):
        xp = backend.array_module(a)
        return (xp.minimum(a, 0) - xp.log1p(xp.exp(-abs(a)))).astype(a.dtype, copy=False)

    def backward(self, grad):
        (x,) = self.saved_inputs
        return grad * (-x).sigmoid()


def softplus(x, beta=1.0, threshold=20.0):
    """``torch.nn.functional.softplus``: a smooth relu, log(1 + e^(βx)) / β.

        >>> import tinygrad_zh as tg
        >>> tg.softplus(tg.tensor([0.0, 100.0]))
        tensor([  0.6931, 100.    ])
    """
    return Softplus.apply(x._floating(), beta=beta, threshold=threshold)


def logsigmoid(x):
    """``torch.nn.functional.logsigmoid``: log σ(x), accurate on both tails.

        >>> import tinygrad_zh as tg
        >>> tg.logsigmoid(tg.tensor([-100.0, 0.0]))
        tensor([-100.    ,   -0.6931])
    """
    return LogSigmoid.apply(x._floating())


class Gelu(Function):
    """GELU(x) = x·Φ(x), Φ the standard normal CDF, or its tanh approximation (GPT-2).

    Fused, with the derivative written out (as PyTorch does), so that an inf
    upstream gradient at a tiny x stays inf: the composite ``gelu_reference``
    would multiply it by x·x, which underflows to 0, and make NaN.
    """
    save_inputs = True

    def forward(self, a, approximate):
        self.approximate = approximate
        xp = backend.array_module(a)
        if approximate == "tanh":
            inner = _SQRT_2_OVER_PI * (a + 0.044715 * a * a * a)
            return (0.5 * a * (1 + xp.tanh(inner))).astype(a.dtype, copy=False)
        return (0.5 * a * (1 + backend.erf(a * _SQRT_HALF))).astype(a.dtype, copy=False)

    def backward(self, grad):
        (x,) = self.saved_inputs
        if self.approximate == "tanh":
            # d/dx ½x(1 + t) = ½(1 + t) + ½x(1 - t²)·√(2/π)(1 + 3·0.044715x²)
            t = (_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()
            slope = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * slope)
        # d/dx xΦ(x) = Φ(x) + x·φ(x), φ(x) = e^(-x²/2) / √(2π)
        cdf = 0.5 * (1 + (x * _SQRT_HALF).erf())
        pdf = (-0.5 * x * x).exp() * (1 / math.sqrt(2 * math.pi))
        return grad * (cdf + x * pdf)


_SQRT_HALF = 1 / math.sqrt(2)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def gelu(x, approximate="none"):
    """``torch.nn.functional.gelu``: x·Φ(x), or the tanh approximation (GPT-2).

        >>> import tinygrad_zh as tg
        >>> tg.gelu(tg.tensor([-1.0, 0.0, 1.0]))
        tensor([-0.1587,  0.    ,  0.8413])
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(x._floating(), approximate=approximate)


def gelu_reference(x, approximate="none"):
    """gelu as the textbook composition, for testing the fused op."""
    if approximate == "none":
        return 0.5 * x * (1 + (x * _SQRT_HALF).erf())
    return 0.5 * x * (1 + (_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())


class Softmax(Function):
    save_output = True

    def forward(self, a, dim):
        # Subtracting the row max changes nothing mathematically (it cancels in
        # the ratio) but keeps exp() from overflowing for large logits.
        self.dim = dim
        xp = backend.array_module(a)
        e = xp.exp(a - backend.max_keepdims(a, dim))
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
        shifted = a - backend.max_keepdims(a, dim)
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

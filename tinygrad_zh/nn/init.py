"""Weight initialisation, in place, with PyTorch's names and formulas.

Every function fills an existing tensor under ``no_grad`` and returns it;
random ones draw from the generator that ``tg.manual_seed`` seeds. Why the
scales: a layer's output variance is fan_in · Var(w) · Var(x), so keeping
signals from exploding or vanishing through many layers needs
Var(w) ≈ gain² / fan (Xavier/Glorot: fan = (fan_in + fan_out)/2; Kaiming/He:
fan = fan_in or fan_out, gain √2 for ReLU).

    >>> import tinygrad_zh as tg
    >>> from tinygrad_zh import nn
    >>> w = tg.empty(256, 128)
    >>> _ = nn.init.kaiming_normal_(w, nonlinearity="relu")
    >>> round(float(w.std()) * (128 ** 0.5) / (2 ** 0.5), 1)   # std = √2 / √fan_in
    1.0
"""
import math
import warnings

import numpy as np

from .. import backend, creation
from ..autograd import no_grad

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_",
           "ones_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]


def calculate_gain(nonlinearity, param=None):
    """The factor that keeps the variance for a nonlinearity (PyTorch's table).

        >>> round(calculate_gain("relu"), 4), calculate_gain("tanh")
        (1.4142, 1.6666666666666667)
    """
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with samples of U(a, b)."""
    return _fill_random(tensor, lambda u: u * (b - a) + a, creation.rand)


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with samples of N(mean, std²)."""
    return _fill_random(tensor, lambda z: z * std + mean, creation.randn)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Fill with N(mean, std²) samples restricted to [a, b] (a, b absolute bounds,
    as PyTorch); out-of-range samples are redrawn until none is left."""
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    with no_grad():
        values = np.empty(tensor.shape, np.float64)
        todo = np.ones(tensor.shape, bool)
        for _ in range(1000):  # each round redraws ~P(outside): ends fast unless [a, b] is tiny
            count = int(todo.sum())
            if count == 0:
                break
            values[todo] = creation.randn(count, dtype=np.float64).data * std + mean
            todo = (values < a) | (values > b)
        else:
            raise ValueError(f"trunc_normal_: [a, b] = [{a}, {b}] holds too little of "
                             f"N({mean}, {std}^2) to sample from")
        return tensor.copy_(backend.asarray(values, tensor.dtype, tensor.device))


def constant_(tensor, val):
    with no_grad():
        return tensor.fill_(val)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """U(-a, a) with a = gain·√(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _fans(tensor, "xavier_uniform_")
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """N(0, std²) with std = gain·√(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor, "xavier_normal_")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-bound, bound) with bound = gain·√(3 / fan) (He et al., 2015).

    With PyTorch's layer default a=√5 this is U(-1/√fan_in, 1/√fan_in).
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode, "kaiming_uniform_"))
    bound = math.sqrt(3.0) * std  # U(-b, b) has std b/√3
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std²) with std = gain / √fan."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode, "kaiming_normal_"))
    return normal_(tensor, 0.0, std)


# ------------------------------------------------------------------ helpers
def _fill_random(tensor, transform, sampler):
    with no_grad():
        sample = sampler(*tensor.shape, dtype=np.float64, device=tensor.device).data
        return tensor.copy_(transform(sample).astype(tensor.dtype, copy=False))


def _fans(tensor, name):
    """fan_in, fan_out of a weight: (out, in, *kernel) -> in·k, out·k."""
    if tensor.ndim < 2:
        raise ValueError(f"{name}: fan in and fan out cannot be computed for a tensor with "
                         f"fewer than 2 dims (shape {tensor.shape})")
    receptive = int(np.prod(tensor.shape[2:]))
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode, name):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{name}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = _fans(tensor, name)[0 if mode == "fan_in" else 1]
    if fan == 0:
        warnings.warn(f"{name}: initializing a zero-element tensor is a no-op")
        return 1
    return fan

"""tinygrad_zh: a deep-learning engine written from scratch, for learners.

    >>> import tinygrad_zh as tg
    >>> x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x ** 2).sum().backward()
    >>> x.grad
    tensor([2., 4., 6.])

Where things live: ``tensor.py`` (the Tensor), ``autograd.py`` (the graph and
the backward walk), ``ops/`` (every op's forward and backward), ``backend.py``
(NumPy or CuPy), ``gradcheck.py`` (numerical gradient checks), ``viz.py``
(draw the graph).
"""
from . import autograd, backend, optim
from .autograd import detect_anomaly, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .creation import (arange, empty, eye, from_numpy, full, full_like, linspace, manual_seed,
                       ones, ones_like, rand, rand_like, randint, randn, randn_like, tensor, zeros,
                       zeros_like)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .ops.activation import gelu, logsigmoid, softplus
from .ops.elementwise import clamp, maximum, minimum, where
from .ops.index import gather
from .ops.movement import cat, chunk, split, stack
from .serialization import load, save
from .tensor import (Tensor, as_dtype, bool_, float16, float32, float64, int32, int64, uint8)
from . import nn  # noqa: E402 -- after Tensor and creation, which nn builds on

bool = bool_  # noqa: A001 -- `tinygrad_zh.bool`, as `torch.bool`

__version__ = "0.1.0"


# Function-style spellings of the Tensor methods, as in `torch.exp(x)`.
def _method(name):
    def call(x, *args, **kwargs):
        return getattr(x, name)(*args, **kwargs)
    call.__name__ = name
    call.__doc__ = f"``tinygrad_zh.{name}(x, ...)`` is ``x.{name}(...)``."
    return call


for _name in ("exp", "log", "sqrt", "abs", "erf", "relu", "sigmoid", "tanh", "softmax",
              "log_softmax", "sum", "mean", "var", "std", "amax", "amin", "max", "min", "argmax",
              "argmin", "logsumexp", "matmul", "reshape", "permute", "transpose", "squeeze",
              "unsqueeze", "flatten", "isfinite", "sign"):
    globals()[_name] = _method(_name)
del _name

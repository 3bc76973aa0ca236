"""Optimizers and learning-rate schedules, with PyTorch's names and defaults.

``Optimizer`` (optimizer.py) is the shared machinery: parameter groups, state,
``step``, ``zero_grad``, state dicts. Each optimizer file holds one update rule.

    >>> import tinygrad_zh as tg
    >>> w = tg.tensor([3.0], requires_grad=True)
    >>> opt = tg.optim.Adam([w], lr=0.1)
    >>> for _ in range(50):
    ...     opt.zero_grad()
    ...     (w * w).sum().backward()
    ...     opt.step()
    >>> abs(w.item()) < 0.5
    True
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]

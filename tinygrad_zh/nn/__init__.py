"""Neural-network building blocks, PyTorch-shaped.

- ``module.py``: Module (parameters, buffers, state_dict, train/eval) and Parameter
- layers by kind: ``linear.py`` (Linear, Identity, Flatten), ``conv.py``,
  ``pooling.py``, ``normalization.py``, ``embedding.py``, ``dropout.py``,
  ``activation.py``, ``container.py`` (Sequential, ModuleList, ModuleDict),
  ``loss.py`` (CrossEntropyLoss, ...)
- ``functional.py`` (F): the same operations as functions; the layers call them
- ``init.py``: weight initialisation; ``utils.py``: gradient clipping

    >>> import tinygrad_zh as tg
    >>> from tinygrad_zh import nn
    >>> model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3))
    >>> loss = nn.CrossEntropyLoss()(model(tg.randn(5, 2)), tg.tensor([0, 1, 2, 1, 0]))
    >>> loss.backward()
    >>> model[0].weight.grad.shape
    (4, 2)
"""
from . import functional, init, utils
from .activation import (GELU, LeakyReLU, LogSigmoid, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax,
                         Softplus, Tanh)
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .embedding import Embedding
from .linear import Flatten, Identity, Linear
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss, L1Loss, MSELoss,
                   MultiMarginLoss, NLLLoss, SmoothL1Loss)
from .module import Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .attention import MultiheadAttention

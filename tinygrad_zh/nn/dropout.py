"""Dropout: randomly zero activations while training (a regulariser)."""
from . import functional as F
from .module import Module


class Dropout(Module):
    """Zero each element with probability p in training mode, scaling the rest by
    1/(1-p); the identity in eval mode.

        >>> import tinygrad_zh as tg
        >>> drop = Dropout(0.5).eval()
        >>> drop(tg.ones(3)).tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: probability has to be between 0 and 1, got {p}")
        self.p = p

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"

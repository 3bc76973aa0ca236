"""Scatter-add to flat positions: the backward of every "pick elements" op here.

Max pooling picks one element per window, an embedding picks whole rows; both
send gradients back by adding ``grad[k]`` into a zero array at the flat
position ``positions[k]``. Where no position repeats (non-overlapping pooling
windows) a plain assignment does it. Where positions may repeat (overlapping
windows, a token that occurs twice) the gradients must add up: ``add.at``.
Positions are flat (one integer per element, not a row index plus a column):
NumPy's ``add.at`` has a fast path for one 1-D index (about 3 times faster
than adding rows of a 2-D array, in our measurement).

The scatter is linear; its own gradient is the gather at the same positions,
so the ops built on it can be differentiated twice.
"""
import numpy as np

from .. import backend
from ..autograd import Function
from .elementwise import constant


class ScatterAdd(Function):
    """zeros(shape) with grad[k] added at flat position positions[k]."""

    def forward(self, grad, positions, shape, repeats):
        self.positions = positions
        xp = backend.array_module(grad)
        out = xp.zeros(int(np.prod(shape)), dtype=grad.dtype)
        if repeats:
            xp.add.at(out, positions.ravel(), grad.ravel())
        else:
            out[positions.ravel()] = grad.ravel()
        return out.reshape(shape)

    def backward(self, grad):
        return grad.reshape(-1)[constant(self.positions)]   # gather them back

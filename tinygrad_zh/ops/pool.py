"""Max pooling, fused: find each window's maximum once, send its gradient back.

Forward reads every window through a strided view of the (padded) input
(``conv.windows``), takes the maximum over the kernel positions (a loop over
kh·kw, never over pixels) and remembers where each maximum came from as a flat
position in the input. Backward routes each
output gradient to that position: ``MaxPoolScatter``. When windows do not
overlap (stride >= kernel span) every input element wins at most one window,
so a plain assignment does it; overlapping windows may share a winner, whose
gradients must add up (``add.at``). The scatter's own gradient is a gather at
the same positions, so max pooling can be differentiated twice.
"""
import numpy as np

from .. import backend
from ..autograd import Function
from .conv import windows
from .index import GetItem


class MaxPool2d(Function):
    def forward(self, x, kernel, stride, padding, dilation, out_size):
        xp = backend.array_module(x)
        n, c, h, w = x.shape
        (kh, kw), (ph, pw) = kernel, padding
        padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-xp.inf) \
            if ph or pw else x
        view = windows(padded, kernel, stride, dilation, out_size)    # (N, C, kh, kw, OH, OW)
        # Loops over the kh·kw kernel positions (never over pixels), each step one
        # vectorised op over all windows: first the running maximum, then, going
        # backwards, the offset (in x) of the first position holding it. NumPy's
        # argmax along a middle axis would be several times slower. NaN
        # propagates, and wins, as in PyTorch.
        out = view[:, :, 0, 0].copy()
        for k in range(1, kh * kw):
            xp.maximum(out, view[:, :, k // kw, k % kw], out=out)
        has_nan = bool(xp.isnan(out).any())
        offset = xp.zeros(out.shape, dtype=np.int64)
        for k in reversed(range(kh * kw)):
            i, j = divmod(k, kw)
            candidate = view[:, :, i, j]
            wins = candidate == out
            if has_nan:
                wins |= xp.isnan(candidate)
            offset *= ~wins                                  # arithmetic beats masked writes
            offset += wins * (i * dilation[0] * w + j * dilation[1])
        # flat position of each window's top-left corner in x, plus the winner's offset
        rows = xp.arange(out_size[0]).reshape(-1, 1) * stride[0] - ph
        cols = xp.arange(out_size[1]) * stride[1] - pw
        self.positions = (xp.arange(n * c).reshape(n, c, 1, 1) * h + rows) * w + cols + offset
        self.shape = x.shape
        self.overlap = any(s < d * (k - 1) + 1 for s, d, k in zip(stride, dilation, kernel))
        return out

    def backward(self, grad):
        return MaxPoolScatter.apply(grad, positions=self.positions, shape=self.shape,
                                    overlap=self.overlap)


class MaxPoolScatter(Function):
    """zeros(shape) with grad[k] added at flat position positions[k]."""

    def forward(self, grad, positions, shape, overlap):
        self.positions = positions
        xp = backend.array_module(grad)
        out = xp.zeros(int(np.prod(shape)), dtype=grad.dtype)
        if overlap:
            xp.add.at(out, positions.ravel(), grad.ravel())
        else:
            out[positions.ravel()] = grad.ravel()
        return out.reshape(shape)

    def backward(self, grad):
        return GetItem.apply(grad.reshape(-1), key=(self.positions,), view=False)  # gather them back

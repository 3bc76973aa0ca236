"""Max pooling, fused: find each window's maximum once, send its gradient back.

Forward reads every window through a strided view of the (padded) input
(``conv.windows``), takes the maximum over the kernel positions (a loop over
kh·kw, never over pixels) and remembers where each maximum came from as a flat
position in the input. Backward routes each output gradient to that position
(``scatter.ScatterAdd``): when windows do not overlap (stride >= kernel span)
every input element wins at most one window; overlapping windows may share a
winner, whose gradients add up. Differentiable twice (the scatter's gradient
is a gather).
"""
import numpy as np

from .. import backend
from ..autograd import Function
from .conv import windows
from .scatter import ScatterAdd


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
        # backwards, the index k of the first position holding it. (NumPy's argmax
        # along a middle axis is several times slower; small uint8 arithmetic
        # beats masked writes.) NaN propagates, and wins, as in PyTorch.
        out = view[:, :, 0, 0].copy()
        for k in range(1, kh * kw):
            xp.maximum(out, view[:, :, k // kw, k % kw], out=out)
        has_nan = bool(xp.isnan(out).any())
        index_type = np.uint8 if kh * kw <= 256 else np.int64
        best = xp.zeros(out.shape, dtype=index_type)
        for k in reversed(range(kh * kw)):
            candidate = view[:, :, k // kw, k % kw]
            wins = candidate == out
            if has_nan:
                wins |= xp.isnan(candidate)
            wins = wins.astype(index_type)
            best *= 1 - wins
            best += wins * index_type(k)
        # the winner's flat position in x: its window's top-left corner + its offset
        i, j = xp.arange(kh).repeat(kw), xp.tile(xp.arange(kw), kh)
        offset = (i * dilation[0] * w + j * dilation[1])[best]
        rows = xp.arange(out_size[0]).reshape(-1, 1) * stride[0] - ph
        cols = xp.arange(out_size[1]) * stride[1] - pw
        self.positions = (xp.arange(n * c).reshape(n, c, 1, 1) * h + rows) * w + cols + offset
        self.shape = x.shape
        self.overlap = any(s < d * (k - 1) + 1 for s, d, k in zip(stride, dilation, kernel))
        return out

    def backward(self, grad):
        return ScatterAdd.apply(grad, positions=self.positions, shape=self.shape,
                                repeats=self.overlap)

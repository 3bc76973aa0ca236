"""Constant padding, as one Function: the gradient of a pad is a slice.

``widths`` is NumPy's form: one ``(before, after)`` pair per dim. Negative
widths (cropping) are not supported; F.pad checks that before calling.
"""
from .. import backend
from ..autograd import Function


class Pad(Function):
    def forward(self, a, widths, value):
        self.key = tuple(slice(before, before + n) for (before, _), n in zip(widths, a.shape))
        return backend.array_module(a).pad(a, widths, constant_values=value)

    def backward(self, grad):
        return grad[self.key]  # the padded border had no input: it gets no gradient

"""Embedding lookup, fused: rows of a table picked by integer ids.

Forward is one ``take`` of whole rows. Backward adds each output row's
gradient into the row it came from; a token id that occurs several times
collects all of its gradients. That is a scatter-add to the flat positions
id·D + (0 .. D-1) (``scatter.ScatterAdd``), several times faster than NumPy's
``add.at`` over rows of a 2-D table, which is what plain indexing
(``weight[ids]``) runs in its backward.
"""
from .. import backend
from ..autograd import Function
from .scatter import ScatterAdd


class Embedding(Function):
    def forward(self, weight, ids):
        self.ids, self.shape = ids, weight.shape
        return backend.array_module(weight).take(weight, ids, axis=0)

    def backward(self, grad):
        xp = backend.array_module(grad.data)
        dim = self.shape[1]
        positions = (self.ids * dim)[..., None] + xp.arange(dim)   # flat positions in the table
        return ScatterAdd.apply(grad, positions=positions, shape=self.shape, repeats=True), None

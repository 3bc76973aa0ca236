"""Layer normalisation, fused: one Function instead of about ten ops.

Over the last D dims (the "normalized shape"), with n elements each:

    μ = mean(x),  σ² = mean((x - μ)²)   (biased, as PyTorch),  r = 1/√(σ² + eps)
    x̂ = (x - μ)·r,   y = x̂ ⊙ w + b

Backward, with G = ∂L/∂y and ĝ = G ⊙ w (the gradient reaching x̂), the three
paths through μ, σ² and x itself collapse to

    ∂L/∂x = r · (ĝ - mean(ĝ) - x̂ · mean(ĝ ⊙ x̂))
    ∂L/∂w = Σ_rows G ⊙ x̂,   ∂L/∂b = Σ_rows G

(the row sums are done by the autograd walk, which sums broadcast gradients).
``layer_norm_reference`` is the composite it is tested against.
"""
from .. import autograd, backend
from ..autograd import Function
from .elementwise import constant


class LayerNorm(Function):
    save_inputs = True

    def forward(self, x, *affine, ndims, eps, has_weight, has_bias):
        xp = backend.array_module(x)
        self.axes = tuple(range(x.ndim - ndims, x.ndim))
        self.eps, self.has_weight = eps, has_weight
        centered = x - x.mean(axis=self.axes, keepdims=True)
        var = (centered * centered).mean(axis=self.axes, keepdims=True)
        self.rstd = 1 / xp.sqrt(var + eps)
        self.xhat = centered * self.rstd
        y = self.xhat * affine[0] if has_weight else self.xhat.copy()  # xhat is kept for backward
        if has_bias:
            y += affine[-1]   # in place on the fresh array; the bias is the last input
        return y

    def backward(self, grad):
        x = self.saved_inputs[0]
        weight = self.inputs[1] if self.has_weight else None
        if autograd.is_grad_enabled():   # create_graph: x̂ and r as functions of x
            xhat, rstd = _normalize(x, self.axes, self.eps)
        else:
            xhat, rstd = constant(self.xhat), constant(self.rstd)
        ghat = grad * weight if weight is not None else grad
        grad_x = rstd * (ghat - ghat.mean(self.axes, keepdim=True)
                         - xhat * (ghat * xhat).mean(self.axes, keepdim=True))
        grads = [grad_x]
        if weight is not None:
            grads.append(grad * xhat if weight.requires_grad else None)
        if len(self.inputs) > len(grads):  # bias
            grads.append(grad if self.inputs[-1].requires_grad else None)
        return tuple(grads)


def _normalize(x, axes, eps):
    centered = x - x.mean(axes, keepdim=True)
    rstd = 1 / ((centered * centered).mean(axes, keepdim=True) + eps).sqrt()
    return centered * rstd, rstd


def layer_norm_reference(x, ndims, weight=None, bias=None, eps=1e-5):
    """Layer norm as the textbook composite (mean, var, sqrt, divide)."""
    axes = tuple(range(x.ndim - ndims, x.ndim))
    y = (x - x.mean(axes, keepdim=True)) / (x.var(axes, correction=0, keepdim=True) + eps).sqrt()
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias

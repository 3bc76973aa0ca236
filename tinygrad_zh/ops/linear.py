"""The fully connected layer's op, fused: y = x Wᵀ + b in one Function.

Written as a composite it is three ops (transpose, matmul, add), each with its
own Python bookkeeping and, for the add, a fresh output array. Fused, the
forward is one GEMM whose output the bias is added to in place, and the
backward is written out (x: (..., in), W: (out, in), G = ∂L/∂y: (..., out)):

    ∂L/∂x = G W             (..., out)·(out, in)  = (..., in)
    ∂L/∂W = Gᵀ x            (out, N)·(N, in)      = (out, in)   (leading dims flattened to N)
    ∂L/∂b = Σ_rows G        (out,)

``linear_reference`` is the composite it is tested against.
"""
from ..autograd import Function


class Linear(Function):
    save_inputs = True

    def forward(self, x, weight, *bias):
        # Leading dims are flattened into rows: one (N, in)·(in, out) GEMM. Left
        # 3-D, NumPy's matmul would run one small GEMM per batch element, many
        # times slower (worst with BLAS threads).
        out = (x.reshape(-1, x.shape[-1]) @ weight.T).reshape(x.shape[:-1] + weight.shape[:1])
        if bias:
            out += bias[0]  # in place: no second output array
        return out

    def backward(self, grad):
        x, weight = self.saved_inputs[:2]
        rows = grad.reshape(-1, grad.shape[-1])                     # (N, out)
        grad_x = (rows @ weight).reshape(x.shape) if x.requires_grad else None
        grad_w = None
        if weight.requires_grad:
            grad_w = rows.mT @ x.reshape(-1, x.shape[-1])
        if len(self.inputs) == 2:
            return grad_x, grad_w
        grad_b = rows.sum(0) if self.inputs[2].requires_grad else None
        return grad_x, grad_w, grad_b


def linear_reference(x, weight, bias=None):
    """y = x Wᵀ + b as three plain ops, for testing the fused one."""
    y = x @ weight.mT
    return y if bias is None else y + bias

"""Matrix multiplication with NumPy's rules: 1-D operands and broadcast batch dims.

For C = A @ B (A: n×k, B: k×m) and the gradient G = ∂L/∂C (n×m):

    ∂L/∂A = G @ Bᵀ    (n×m · m×k = n×k, the shape of A)
    ∂L/∂B = Aᵀ @ G    (k×n · n×m = k×m, the shape of B)

Checking the shapes is the quickest way to get the order and transposes right.
Batch dims that were broadcast are summed back by the autograd walk.
"""
from ..autograd import Function
from .elementwise import promote


def matmul(a, b):
    """``a @ b``. Mixed dtypes are promoted first (float32 @ float64 is float64),
    where PyTorch raises: a deliberate leniency, since the promotion is the same
    one every other binary op uses."""
    if a.data.dtype is not b.data.dtype:
        a, b = promote(a, b)
    return Matmul.apply(a, b)


class Matmul(Function):
    save_inputs = True

    def forward(self, a, b):
        return a @ b

    def backward(self, grad):
        a, b = self.saved_inputs
        need_a, need_b = a.requires_grad, b.requires_grad
        # A 1-D operand is a row (a) or a column (b) vector whose extra dim
        # matmul dropped; put it back so the formulas above apply unchanged.
        a_vec, b_vec = a.ndim == 1, b.ndim == 1
        if b_vec:  # first: for vector @ vector the gradient is 0-d and needs this dim first
            b, grad = b.unsqueeze(-1), grad.unsqueeze(-1)
        if a_vec:
            a, grad = a.unsqueeze(0), grad.unsqueeze(-2)
        grad_a = grad @ b.mT if need_a else None
        grad_b = a.mT @ grad if need_b else None
        if a_vec and grad_a is not None:
            grad_a = grad_a.squeeze(-2)
        if b_vec and grad_b is not None:
            grad_b = grad_b.squeeze(-1)
        return grad_a, grad_b

"""练习 02 的参考答案。"""
import tinygrad_zh as tg


class Linear(tg.autograd.Function):
    """z = x W^T + b，一个运算完成（前向在 NumPy 数组上，反向在张量上）。"""
    save_inputs = True   # backward 要读 x、weight

    def forward(self, x, weight, bias):
        return x @ weight.T + bias

    def backward(self, grad):
        x, weight, bias = self.saved_inputs
        grad_x = grad @ weight          # (N, D_out)(D_out, D_in) = (N, D_in)
        grad_weight = grad.T @ x        # δ^T x: (D_out, N)(N, D_in) = (D_out, D_in)
        grad_bias = grad.sum(dim=0)     # bias 被广播到 N 行，每行都用了它一次
        return grad_x, grad_weight, grad_bias

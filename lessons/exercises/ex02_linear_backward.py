"""练习 02：Linear 的 backward（第 2 课），PyTorch 的布局

第 2 课第 7 节：PyTorch 的 nn.Linear 把 weight 存成 (out_features, in_features)，
前向算 z = x W^T + b。forward 已经写好，你来写 backward。

  x      : (N, D_in)       一行一个样本
  weight : (D_out, D_in)
  bias   : (D_out,)        广播到每一行
  grad   : (N, D_out)      上游传来的 dL/dz，也就是第 2 课的 δ

backward 返回三个梯度 (grad_x, grad_weight, grad_bias)，形状分别和 x、weight、bias 一样。
用张量运算写（@、.T、.sum(dim=...)），不要用 .numpy()：这样 create_graph=True 时还能再求导。

检查：python -m lessons.check 02
"""
import tinygrad_zh as tg


class Linear(tg.autograd.Function):
    """z = x W^T + b，一个运算完成（前向在 NumPy 数组上，反向在张量上）。"""
    save_inputs = True   # backward 要读 x、weight

    def forward(self, x, weight, bias):
        return x @ weight.T + bias

    def backward(self, grad):
        x, weight, bias = self.saved_inputs
        raise NotImplementedError(
            "练习 02 还没写。提示：照第 2 课第 2 节的三步推（对 z 的元素求和、找出非零的偏导、"
            "代回去），再对照第 7 节：grad_weight 和 weight 同形 (D_out, D_in)，"
            "grad_bias 要把 N 行加起来，grad_x 和 x 同形 (N, D_in)。")

"""练习 03：Sigmoid 和 Tanh 的 backward（第 3 课）

两个激活函数的 forward 已经写好，你来写 backward：收到 grad = dL/dy，
返回 dL/dx = grad ⊙ f'(x)。两个导数都能用输出 y = f(x) 表示（第 2 课）：

  sigmoid'(x) = y (1 - y)
  tanh'(x)    = 1 - y^2

save_output = True 让 self.saved_output 就是前向的输出 y（一个张量）。
用张量运算写，不要用 .numpy()：检查器还会用 gradgradcheck 检查二阶导数，
只有 backward 本身被记录成计算图，才能再求一次导（第 16 课）。

检查：python -m lessons.check 03
"""
import numpy as np

import tinygrad_zh as tg


class Sigmoid(tg.autograd.Function):
    """y = 1 / (1 + exp(-x))"""
    save_output = True

    def forward(self, x):
        return 1 / (1 + np.exp(-x))

    def backward(self, grad):
        y = self.saved_output
        raise NotImplementedError(
            "练习 03 还没写（Sigmoid）。提示：链式法则 dL/dx = dL/dy ⊙ dy/dx，"
            "dy/dx = y (1 - y)；别忘了乘上游的 grad。")


class Tanh(tg.autograd.Function):
    """y = tanh(x)"""
    save_output = True

    def forward(self, x):
        return np.tanh(x)

    def backward(self, grad):
        y = self.saved_output
        raise NotImplementedError(
            "练习 03 还没写（Tanh）。提示：dy/dx = 1 - y^2，再乘上游的 grad。")

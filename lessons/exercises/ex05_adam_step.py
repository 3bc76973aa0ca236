"""练习 05：用 NumPy 写一步 Adam（第 5 课）

Adam 为每个参数记两个滑动平均：梯度的（一阶矩 m）和梯度平方的（二阶矩 v）。
第 t 步（t 从 1 开始），对每个元素：

  m     = beta1 m + (1 - beta1) g
  v     = beta2 v + (1 - beta2) g^2
  m_hat = m / (1 - beta1^t)            偏差修正：m、v 从 0 开始，前几步偏小
  v_hat = v / (1 - beta2^t)
  param = param - lr m_hat / (sqrt(v_hat) + eps)

和 PyTorch 的 torch.optim.Adam（不带 weight_decay、amsgrad）相同。
adam_step 返回新的 (param, m, v) 三个数组。

检查：python -m lessons.check 05
"""
import numpy as np


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """第 step 步（从 1 开始）的 Adam 更新，返回 (新 param, 新 exp_avg, 新 exp_avg_sq)。"""
    beta1, beta2 = betas
    raise NotImplementedError(
        "练习 05 还没写。提示：照上面的五行公式，用 NumPy 的逐元素运算（*、**、np.sqrt）；"
        "偏差修正用的是第 step 步的 beta1 ** step。")

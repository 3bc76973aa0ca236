"""第 1 课：张量与计算图

在仓库根目录运行：

    python lessons/01_tensors_and_graphs.py           # 完整版，几秒钟
    python lessons/01_tensors_and_graphs.py --quick   # 精简版（冒烟测试用）

本课内容：
  1. 创建张量：数据、形状（shape）、数据类型（dtype，默认 float32）、设备（device）
  2. 广播：形状不同的张量怎样做逐元素运算
  3. autograd 记录下来的计算图：用 tinygrad_zh.viz 打印成文本树和 Mermaid 图
  4. 在一个小表达式上调用 backward()，和手算（链式法则）的导数对比；
     backward() 与 autograd.grad() 的区别
  5. 很深的图：十万级别的运算链，反向传播也不会栈溢出

二阶导数（对梯度再求导）放在第 16 课。

每一步都有真正的检查：结果不对时程序以非零状态退出。
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np

# 让 `python lessons/01_...py` 在未安装本包时也能从仓库根目录运行，
# 并且保证用的是这份源码，而不是别处安装的旧版本。
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh import viz  # noqa: E402
from common import check, section, show  # noqa: E402  (lessons/common.py)


def main():
    parser = argparse.ArgumentParser(description="第 1 课：张量与计算图")
    parser.add_argument("--quick", action="store_true", help="缩小计算量（冒烟测试用）")
    args = parser.parse_args()

    tg.manual_seed(0)
    creating_tensors()
    broadcasting()
    the_graph()
    backward_on_a_small_expression()
    a_very_deep_graph(length=2_000 if args.quick else 100_000)
    print("\n第 1 课全部检查通过。下一课：一层神经网络的前向与反向（lessons/02_forward_backward.py）。")
    print("对梯度再求导（二阶导数、create_graph=True）在第 16 课（lessons/16_higher_order_and_graphs.py）。")
    print("练习：lessons/exercises/ex01_topological_sort.py 让你自己写 backward() 用的拓扑排序"
          "（python -m lessons.check 01 检查）。")


# ------------------------------------------------------------------ 1. 张量
def creating_tensors():
    section("1. 创建张量：数据、形状、dtype、设备")
    a = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    show("a = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])", a)
    print(f"a.shape = {a.shape}   a.dtype = {a.dtype}   a.device = {a.device!r}")
    check(a.shape == (2, 3), "形状是 (2, 3)：2 行 3 列")
    check(a.dtype == tg.float32, "Python 小数默认变成 float32（和 PyTorch 一样）")

    # 三个常见的 dtype 来源：Python 整数、Python 小数、NumPy 数组。
    ints = tg.tensor([1, 2, 3])
    from_numpy = tg.tensor(np.array([0.5, 1.5]))
    print(f"\ntg.tensor([1, 2, 3]).dtype           = {ints.dtype}")
    print(f"tg.tensor(np.array([0.5, 1.5])).dtype = {from_numpy.dtype}")
    print("注意：NumPy 数组会保留自己的 dtype，而 np.array 的小数默认是 float64。")
    print(f"需要 float32 时用 .float() 转换：{from_numpy.float().dtype}")
    check(ints.dtype == tg.int64, "Python 整数 -> int64")
    check(from_numpy.dtype == tg.float64, "NumPy 的 float64 数组 -> float64")

    print("\n其他常用的创建函数：")
    show("tg.zeros(2, 3)", tg.zeros(2, 3))
    show("tg.arange(5)", tg.arange(5))
    show("tg.randn(2, 3)   # 标准正态分布；tg.manual_seed(0) 让结果可重复", tg.randn(2, 3))
    print("\n.data 是底层的 NumPy 数组（在 GPU 上则是 CuPy 数组）：")
    print(f"type(a.data) = {type(a.data).__name__}")


# ------------------------------------------------------------------ 2. 广播
def broadcasting():
    section("2. 广播：形状不同也能逐元素运算")
    column = tg.arange(3).float().reshape(3, 1)   # 形状 (3, 1)
    row = tg.tensor([10.0, 20.0, 30.0, 40.0])     # 形状 (4,)
    total = column + row
    print("规则：把两个形状右对齐，逐维比较；相等，或其中一个是 1，就能广播。")
    print(f"  column: {column.shape}   ->  (3, 1)")
    print(f"  row   : {row.shape}     ->  (1, 4)   （左边补 1）")
    print(f"  结果  : {total.shape}")
    show("column + row", total)
    check(total.shape == (3, 4), "(3, 1) 与 (4,) 广播成 (3, 4)")
    check(np.array_equal(total.numpy(), np.arange(3.0)[:, None] + np.array([10.0, 20, 30, 40])),
          "结果与 NumPy 的广播完全相同")

    # Python 数字是"弱类型"：它跟着张量走，不会把 float32 提升成 float64。
    doubled = row * 2.0
    print(f"\n(row * 2.0).dtype = {doubled.dtype}")
    check(doubled.dtype == tg.float32, "乘一个 Python 小数，float32 仍然是 float32")


# ------------------------------------------------------------------ 3. 计算图
def the_graph():
    section("3. autograd 记录下来的计算图")
    x = tg.tensor([1.0, 2.0, 3.0])                           # 数据：不需要梯度
    w = tg.tensor([0.5, -1.0, 2.0], requires_grad=True)      # 参数：需要梯度
    b = tg.tensor(0.1, requires_grad=True)                   # 标量参数，会被广播
    f = (x * w + b).tanh()
    loss = (f * f).sum()                                     # f 被用了两次
    names = {x: "x", w: "w", b: "b", f: "f", loss: "loss"}

    print("表达式：f = tanh(x * w + b)，loss = sum(f * f)")
    print("每个运算的结果都记住了产生它的运算（.grad_fn），运算又记住了它的输入：")
    print(f"  loss.grad_fn = {loss.grad_fn!s:15} loss.is_leaf = {loss.is_leaf}")
    print(f"  w.grad_fn    = {w.grad_fn!s:15} w.is_leaf    = {w.is_leaf}")
    print("\n沿着这些链接从 loss 往回走，就得到整张图（viz.graph_text）：\n")
    print(viz.graph_text(loss, names))
    print("\nf 被用了两次：第二次出现时只标记 (repeat: see above)，不再重复展开。")
    print("同一张图的 Mermaid 文本（viz.to_mermaid），可以贴进 Markdown 里渲染：\n")
    mermaid = viz.to_mermaid(loss, names)
    print(mermaid)
    tensors, edges = viz.graph_edges(loss)
    f_index = next(i for i, t in enumerate(tensors) if t is f)
    check(len(tensors) == 8, "图里有 8 个张量，每个只画一次")
    check(sum(src == f_index for src, _ in edges) == 2, "f 只有一个节点，但有两条边通向 f * f")


# ------------------------------------------------------------------ 4. backward
def backward_on_a_small_expression():
    section("4. backward()：让 autograd 求导，再和手算对比")
    # 全部用 float32（默认 dtype）：混用 float64 和 float32 会让引擎悄悄插入类型转换。
    x = tg.tensor([1.0, 2.0, 3.0])
    w = tg.tensor([0.5, -1.0, 0.3], requires_grad=True)
    b = tg.tensor(0.1, requires_grad=True)
    loss = ((x * w + b).tanh() ** 2).sum()
    loss.backward()

    print("""\
loss = sum(tanh(x * w + b)^2)。记 z = x * w + b，t = tanh(z)，loss = t[0]^2 + t[1]^2 + t[2]^2。
链式法则，一步一步（* 是逐元素相乘）：
  dloss/dt[i] = 2 t[i]
  dt[i]/dz[i] = 1 - t[i]^2            （tanh 的导数）
  dz[i]/dw[i] = x[i]，  dz[i]/db = 1
  所以 dloss/dw[i] = 2 t[i] (1 - t[i]^2) x[i]      形状和 w 一样：(3,)
       dloss/db    = sum_i 2 t[i] (1 - t[i]^2)     b 被广播到 3 个位置，每个位置都用了它，梯度要加起来""")
    x_np, w_np = x.numpy(), w.detach().numpy()
    t = np.tanh(x_np * w_np + np.float32(b.item()))
    grad_w = 2 * t * (1 - t ** 2) * x_np
    grad_b = np.sum(2 * t * (1 - t ** 2))
    print(f"\n  autograd  w.grad = {fixed(w.grad.numpy())}   b.grad = {b.grad.item():.6f}")
    print(f"  手算      dL/dw  = {fixed(grad_w)}   dL/db  = {grad_b:.6f}")
    check(w.grad.dtype == w.dtype == tg.float32, "全程 float32：梯度的 dtype 和参数一样")
    check(np.allclose(w.grad.numpy(), grad_w, rtol=1e-5), "w 的梯度与手算一致")
    check(np.isclose(b.grad.item(), grad_b, rtol=1e-5), "b 的梯度与手算一致")
    check(b.grad.shape == b.shape == (), "梯度的形状总是和参数一样：b 是标量，b.grad 也是标量")

    print("\nbackward() 之后，图里保存的中间结果已被释放（省内存）：")
    print(viz.graph_text(loss, max_depth=1))
    print("要对同一张图再 backward 一次，第一次调用时传 retain_graph=True。")
    grad_versus_backward(x, w, b, grad_w)


def grad_versus_backward(x, w, b, grad_w):
    print("""
求梯度有两种写法：
  loss.backward()                     把梯度累加（+=）到每个叶子的 .grad 里，训练时用它；
  tg.autograd.grad(loss, [w, b])      把梯度作为返回值交给你，不碰 .grad。""")
    w.grad = b.grad = None
    loss = ((x * w + b).tanh() ** 2).sum()
    grad_w_returned, _ = tg.autograd.grad(loss, [w, b], retain_graph=True)
    print(f"  grad() 返回 {fixed(grad_w_returned.numpy())}，之后 w.grad = {w.grad}")
    check(w.grad is None and np.allclose(grad_w_returned.numpy(), grad_w, rtol=1e-5),
          "autograd.grad 返回梯度，不写 .grad")
    loss.backward(retain_graph=True)
    loss.backward()
    print(f"  同一张图 backward() 两次，w.grad = {fixed(w.grad.numpy())}（是手算结果的 2 倍）")
    check(np.allclose(w.grad.numpy(), 2 * grad_w, rtol=1e-5),
          "backward() 是累加：不清零就调用两次，.grad 变成两倍")
    print("所以训练循环每一步都要先把 .grad 清零（w.grad = None，或以后的 optimizer.zero_grad()）。")


def fixed(array):
    """一维数组的定点小数表示（NumPy 默认会在数值跨度大时改用科学计数法）。"""
    return "[" + ", ".join(f"{v:.6f}" for v in array) + "]"


# ------------------------------------------------------------------ 5. 很深的图
def a_very_deep_graph(length):
    section(f"5. 很深的图：{length:,} 步的运算链")
    x = tg.tensor(1.0, dtype=tg.float64, requires_grad=True)
    factor = 1 + 1 / length
    y = x
    for _ in range(length):
        y = y * factor
    y.backward()
    # y = x * (1 + 1/n)^n，所以 dy/dx = (1 + 1/n)^n，n 很大时接近 e。
    exact = factor ** length
    print(f"y = x * (1 + 1/n) * (1 + 1/n) * ...，共 n = {length} 次乘法")
    print(f"  autograd dy/dx = {x.grad.item():.10f}")
    print(f"  解析式 (1 + 1/n)^n = {exact:.10f}   （n 越大越接近 e = {math.e:.10f}）")
    print("backward() 用显式的栈做拓扑排序，没有递归，所以不受 Python 递归深度"
          f"（sys.getrecursionlimit() = {sys.getrecursionlimit()}）的限制。")
    check(math.isclose(x.grad.item(), exact, rel_tol=1e-9), "深链的梯度正确，没有栈溢出")


if __name__ == "__main__":
    main()

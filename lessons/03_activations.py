"""第 3 课：激活函数和它们的导数 —— 以及深层网络里梯度为什么会消失

在仓库根目录运行：

    python lessons/03_activations.py                  # 完整版，并画图
    python lessons/03_activations.py --quick          # 精简版（冒烟测试用，不画图）
    python lessons/03_activations.py --out 我的文件夹  # 图片存到别处

没有激活函数，多层线性层叠起来仍然只是一个线性变换（W2 (W1 x) = (W2 W1) x）。
激活函数提供非线性。反向传播时，每经过一层激活函数，梯度都要乘上它的导数，
所以导数的大小决定了梯度能不能顺利传回前面的层。

本课：
  1. 五个常用激活函数 sigmoid、tanh、ReLU、GELU、SiLU，autograd 求出的导数
     与手推公式逐点对比；
  2. 把函数和导数画成图（PNG）；
  3. 一个 15 层的 sigmoid 网络：梯度一层层变小，前面的层几乎学不到东西；
     换成 ReLU + Kaiming 初始化后梯度保持在同一个量级。
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
import tinygrad_zh.nn.functional as F  # noqa: E402
from tinygrad_zh import nn  # noqa: E402
from common import check, section  # noqa: E402  (lessons/common.py)


def phi(x):
    """标准正态分布的密度函数 φ(x)。"""
    return np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def big_phi(x):
    """标准正态分布的累积分布函数 Φ(x) = (1 + erf(x/√2)) / 2。"""
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


# 名字 -> (引擎里的函数, 手推的导数公式, 公式的文字说明)
ACTIVATIONS = {
    "sigmoid": (F.sigmoid, lambda x: np_sigmoid(x) * (1 - np_sigmoid(x)), "s(x)(1 - s(x))"),
    "tanh": (F.tanh, lambda x: 1 - np.tanh(x) ** 2, "1 - tanh(x)^2"),
    "relu": (F.relu, lambda x: (x > 0).astype(float), "[x > 0]  (1 or 0)"),
    "gelu": (F.gelu, lambda x: big_phi(x) + x * phi(x), "Phi(x) + x phi(x)"),
    "silu": (F.silu, lambda x: np_sigmoid(x) * (1 + x * (1 - np_sigmoid(x))),
             "s(x)(1 + x(1 - s(x)))"),
}


def main():
    parser = argparse.ArgumentParser(description="第 3 课：激活函数和它们的导数")
    parser.add_argument("--quick", action="store_true", help="精简版（冒烟测试用，不画图）")
    parser.add_argument("--out", default="lesson_output/03", help="图片的输出文件夹")
    args = parser.parse_args()

    derivatives_by_autograd()
    if not args.quick:
        plot(Path(args.out))
    vanishing_gradients(depth=15)
    print("\n全部检查通过")
    if not args.quick:
        print(f"图片在：{Path(args.out).resolve()}")


# ------------------------------------------------------------------ 1. 导数
def derivatives_by_autograd():
    section("1. 五个激活函数：autograd 的导数 = 手推公式")
    points = np.array([-3.0, -1.0, -0.5, 0.5, 1.0, 3.0])   # 避开 ReLU 在 0 处的折点
    print("每个激活函数都是逐元素的：y_i 只依赖 x_i，所以 sum(y) 对 x 的梯度就是")
    print("逐点的导数 f'(x_i)。一次 backward() 就得到所有点的导数。\n")
    print(f"{'函数':8} {'导数公式':24}" + "".join(f"{x:>8.1f}" for x in points))
    for name, (fn, derivative, formula) in ACTIVATIONS.items():
        x = tg.tensor(points, requires_grad=True)      # float64，误差只剩舍入
        fn(x).sum().backward()
        got, want = x.grad.numpy(), derivative(points)
        print(f"{name:8} {'autograd':24}" + "".join(f"{v:8.4f}" for v in got))
        print(f"{'':8} {formula:24}" + "".join(f"{v:8.4f}" for v in want))
        check(np.allclose(got, want, rtol=1e-12, atol=1e-12),
              f"{name} 的导数：autograd 与公式 {formula} 一致")

    print("\n几个值得记住的数：")
    x = tg.tensor(0.0, dtype=tg.float64, requires_grad=True)
    F.sigmoid(x).backward()
    print(f"  sigmoid'(0) = {x.grad.item()}   —— sigmoid 导数的最大值，只有 1/4")
    check(x.grad.item() == 0.25, "sigmoid 的导数最大是 0.25（在 x = 0 处）")
    x = tg.tensor(10.0, dtype=tg.float64, requires_grad=True)
    F.tanh(x).backward()
    print(f"  tanh'(10)   = {x.grad.item():.3e} —— 饱和区：输入很大时导数几乎为 0")
    check(x.grad.item() < 1e-7, "tanh 在饱和区的导数小于 1e-7")
    x = tg.tensor(-1.0, dtype=tg.float64, requires_grad=True)
    F.gelu(x).backward()
    print(f"  gelu'(-1)   = {x.grad.item():.4f}  —— GELU 和 SiLU 在负半轴有一点负的斜率，"
          "不像 ReLU 那样完全截断")
    check(x.grad.item() < 0, "GELU 在 x = -1 处的导数是负的")
    x = tg.tensor(-2.0, dtype=tg.float64, requires_grad=True)
    F.silu(x).backward()
    print(f"  silu'(-2)   = {x.grad.item():.4f}")
    check(x.grad.item() < 0, "SiLU 在 x = -2 处的导数是负的")


# ------------------------------------------------------------------ 2. 画图
def plot(out):
    section("2. 画出函数和导数")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    xs = np.linspace(-4, 4, 401)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, (fn, _, _) in ACTIVATIONS.items():
        x = tg.tensor(xs, requires_grad=True)
        y = fn(x)
        y.sum().backward()
        axes[0].plot(xs, y.detach().numpy(), label=name)
        axes[1].plot(xs, x.grad.numpy(), label=name)
    axes[0].set_title("f(x)")
    axes[1].set_title("f'(x)  (autograd)")
    for ax in axes:
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvline(0, color="gray", lw=0.5)
        ax.legend()
    path = out / "activations.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"已保存：{path}")
    check(path.exists() and path.stat().st_size > 0, "函数与导数的图已保存")


# ------------------------------------------------------------------ 3. 梯度消失
def vanishing_gradients(depth):
    section(f"3. 梯度消失：{depth} 层的网络")
    print("反向传播经过第 k 层时，梯度乘上 W_k^T 和 f'(z_k)。sigmoid 的 f' <= 1/4，")
    print("PyTorch 默认初始化下 W 的尺度也不足以补回来，于是每一层梯度都缩小几倍，")
    print(f"{depth} 层之后前面的层几乎收不到梯度。ReLU 在正半轴导数为 1，配合 Kaiming")
    print("初始化（方差 2/fan_in，正好补上 ReLU 砍掉一半带来的损失）梯度能保持量级。\n")
    norms = {}
    for name in ("sigmoid", "relu"):
        tg.manual_seed(0)
        layers = [nn.Linear(64, 64) for _ in range(depth)]
        if name == "relu":
            for layer in layers:
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        h = tg.randn(32, 64)
        for layer in layers:
            h = ACTIVATIONS[name][0](layer(h))
        (h * h).mean().backward()
        norms[name] = [float(np.linalg.norm(layer.weight.grad.numpy())) for layer in layers]

    print(f"{'层':>4} {'sigmoid 网络的梯度范数':>24} {'ReLU 网络的梯度范数':>22}")
    for k in range(0, depth, 2):
        print(f"{k + 1:>4} {norms['sigmoid'][k]:>24.3e} {norms['relu'][k]:>22.3e}")
    sigmoid_ratio = norms["sigmoid"][0] / norms["sigmoid"][-1]
    relu_ratio = norms["relu"][0] / norms["relu"][-1]
    print(f"\n第 1 层与第 {depth} 层梯度范数之比：sigmoid {sigmoid_ratio:.2e}，"
          f"ReLU {relu_ratio:.2e}")
    per_layer = sigmoid_ratio ** (1 / (depth - 1))
    print(f"sigmoid 网络里梯度平均每往前一层乘上 {per_layer:.3f}；层数再多，float32 "
          "就会下溢成 0。")
    check(sigmoid_ratio < 1e-6, f"sigmoid 网络：第 1 层的梯度不到第 {depth} 层的百万分之一")
    check(per_layer < 0.25, "sigmoid 网络：梯度平均每层缩小到不足 1/4")
    check(0.01 < relu_ratio < 100, "ReLU + Kaiming 初始化：第 1 层和最后一层的梯度在同一量级附近")


if __name__ == "__main__":
    main()

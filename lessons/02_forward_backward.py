"""第 2 课：一层神经网络的前向与反向 —— 整个课程的核心公式

在仓库根目录运行：

    python lessons/02_forward_backward.py                        # 完整版，几秒钟
    python lessons/02_forward_backward.py --quick                # 精简版（冒烟测试用）
    python lessons/02_forward_backward.py --activation sigmoid   # 换一个激活函数

第 1 课里我们看到：autograd 把运算记录成计算图，backward() 沿着图往回走。
这一课我们亲手推导一层全连接层的反向公式，再用三种方法计算同一组梯度并核对：

  (a) 手推公式，纯 NumPy；
  (b) autograd：L.backward()；
  (c) 数值微分：中心差分，以及引擎自带的 tg.gradcheck。

符号（行向量约定，和 PyTorch 一样：一行是一个样本）：

  x : (N, D_in)       一批输入，N 个样本
  W : (D_in, D_out)   权重
  b : (D_out,)        偏置，广播到每一行
  z = x W + b         (N, D_out)
  h = f(z)            (N, D_out)，f 是 tanh 或 sigmoid
  L = Σ G ⊙ h         标量。G (N, D_out) 是固定的随机矩阵，于是 dL/dh = G：
                      它扮演"后面各层传回来的梯度"。不用 L = Σ h，因为全 1 的
                      梯度太特殊，会掩盖一些错误（比如行和列弄反）。
"""
import argparse
import sys
from pathlib import Path

import numpy as np

# 让 `python lessons/02_...py` 在未安装本包时也能从仓库根目录运行，
# 并且保证用的是这份源码，而不是别处安装的旧版本。
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh import viz  # noqa: E402
from common import check, indent, section  # noqa: E402  (lessons/common.py)

# 激活函数 f，以及用 h = f(z) 表示的导数 f'(z)：前向已经算出 h，反向直接复用。
ACTIVATIONS = {
    "tanh": (np.tanh, lambda h: 1 - h ** 2, "1 - h^2"),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda h: h * (1 - h), "h (1 - h)"),
}


def main():
    parser = argparse.ArgumentParser(description="第 2 课：一层神经网络的前向与反向")
    parser.add_argument("--quick", action="store_true", help="只算小例子（冒烟测试用）")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh")
    args = parser.parse_args()

    f_name = args.activation
    x, W, b, G = random_problem(n=4, d_in=3, d_out=2, seed=0)
    forward(x, W, b, G, f_name)
    derive_backward(f_name)
    why_shapes_matter(x, W, b, G, f_name)
    three_ways(x, W, b, G, f_name, verbose=True)
    gradcheck_catches_a_bug(x, W, b, f_name)
    if not args.quick:
        section("6. 再来一次，换成大一些的层：N=64, D_in=32, D_out=16")
        three_ways(*random_problem(n=64, d_in=32, d_out=16, seed=1), f_name, verbose=False)
    print("\n第 2 课全部检查通过。接下来（编写中）：把这一层包装成 nn.Linear，再用优化器训练它。")


def random_problem(n, d_in, d_out, seed):
    """一批输入 x、参数 W 和 b、固定的上游梯度 G，都是 float64。"""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d_in)), rng.standard_normal((d_in, d_out)),
            rng.standard_normal(d_out), rng.standard_normal((n, d_out)))


# ------------------------------------------------------------------ 1. 前向
def forward(x, W, b, G, f_name):
    section("1. 前向：h = f(x W + b)，L = Σ G ⊙ h")
    n, d_in = x.shape
    d_out = W.shape[1]
    print(f"N = {n} 个样本，D_in = {d_in}，D_out = {d_out}，f = {f_name}")
    print(f"  x : {x.shape}   W : {W.shape}   b : {b.shape}   G : {G.shape}")
    print(f"  z = x W + b : {(x @ W + b).shape}   （b 广播到 {n} 行，见第 1 课第 2 节）")

    # 同一个前向，用引擎再算一遍：它记录下的图正是我们要反向走的路。
    xt, Wt, bt = (tg.tensor(a, requires_grad=True) for a in (x, W, b))
    Gt = tg.tensor(G)
    L = loss_tensor(xt, Wt, bt, Gt, f_name)
    print("\n引擎记录下的计算图（第 1 课的 viz.graph_text）：\n")
    print(viz.graph_text(L, {xt: "x", Wt: "W", bt: "b", Gt: "G", L: "L"}))
    print(f"\nL（NumPy）= {loss_numpy(x, W, b, G, f_name):.12f}")
    print(f"L（引擎） = {L.item():.12f}")
    check(np.isclose(L.item(), loss_numpy(x, W, b, G, f_name), rtol=1e-12), "两种前向结果相同")


def loss_numpy(x, W, b, G, f_name):
    f = ACTIVATIONS[f_name][0]
    return float(np.sum(G * f(x @ W + b)))


def layer_tensor(x, W, b, f_name):
    """h = f(x W + b)，用引擎的张量运算（会记录计算图）。"""
    z = x @ W + b
    return z.tanh() if f_name == "tanh" else z.sigmoid()


def loss_tensor(x, W, b, G, f_name):
    return (G * layer_tensor(x, W, b, f_name)).sum()


# ------------------------------------------------------------------ 2. 手推反向
def derive_backward(f_name):
    section("2. 手推反向：链式法则，每一步都写出形状")
    print(f"""\
  dL/dh = G                                  (N, D_out)
  δ = dL/dz = dL/dh ⊙ f'(z)                  (N, D_out)   逐元素相乘
      其中 f = {f_name}，f'(z) = {ACTIVATIONS[f_name][2]}（用前向算好的 h 表示）

  z[n, j] = Σ_i x[n, i] W[i, j] + b[j]，对每个量求偏导再求和：

  dL/dW[i, j] = Σ_n x[n, i] δ[n, j]   ->  dL/dW = x^T δ      (D_in, N)(N, D_out) = (D_in, D_out)
  dL/db[j]    = Σ_n δ[n, j]           ->  dL/db = δ 的各行相加 (D_out,)
  dL/dx[n, i] = Σ_j δ[n, j] W[i, j]   ->  dL/dx = δ W^T      (N, D_out)(D_out, D_in) = (N, D_in)

每个梯度的形状都和对应的量一样：W、b、x。
  - dL/db 要把 δ 的 N 行加起来，因为 b 被广播到了 N 行：每一行都用了它一次。
  - dL/dx 正是上一层的 dL/dh：反向传播就这样一层一层往回传。""")


def hand_gradients(x, W, b, G, f_name):
    """(a) 手推公式，纯 NumPy。"""
    f, f_prime, _ = ACTIVATIONS[f_name]
    h = f(x @ W + b)
    delta = G * f_prime(h)              # (N, D_out)，逐元素
    return {"W": x.T @ delta,           # (D_in, N) @ (N, D_out)
            "b": delta.sum(axis=0),     # 把 N 行加起来
            "x": delta @ W.T}           # (N, D_out) @ (D_out, D_in)


# ------------------------------------------------------------------ 3. 形状
def why_shapes_matter(x, W, b, G, f_name):
    section("3. 为什么顺序和转置很重要")
    f, f_prime, _ = ACTIVATIONS[f_name]
    delta = G * f_prime(f(x @ W + b))
    print("有些教科书把权重的梯度写成 dL/dW = dL/dh · f' · x^T，也就是 δ x^T。")
    print(f"按我们的形状去算：δ {delta.shape} @ x^T {x.T.shape}")
    try:
        delta @ x.T
    except ValueError as e:
        print(f"  NumPy 报错：{e}")
    else:
        sys.exit("[失败] δ x^T 本应因为形状不匹配而报错")
    print(f"  中间的维度 {delta.shape[1]}（D_out）和 {x.T.shape[0]}（D_in）对不上。")
    print("""
这个公式来自"列向量"约定：单个样本 x 是 (D_in, 1) 的列，W 是 (D_out, D_in)，z = W x。
那时 δ 是 (D_out, 1)，δ x^T 是 (D_out, D_in)，正好和那个 W 同形 —— 在它自己的约定里没错。
我们（和 PyTorch）用行向量的批量 z = x W，W 是 (D_in, D_out)，所以要写成 x^T δ。""")
    check(hand_gradients(x, W, b, G, f_name)["W"].shape == W.shape, "x^T δ 的形状和 W 一样")

    # 更危险的情况：N = D_in = D_out 时，错误的公式也能算，只是结果错了。
    xs, Ws, bs, Gs = random_problem(n=3, d_in=3, d_out=3, seed=2)
    delta_s = Gs * f_prime(f(xs @ Ws + bs))
    wrong, right = delta_s @ xs.T, xs.T @ delta_s
    difference = np.abs(wrong - right).max()
    print("\n更危险的是形状碰巧对得上的时候：N = D_in = D_out = 3，")
    print(f"  δ x^T 能算出 {wrong.shape} 的结果，不报错，但 max|δ x^T - x^T δ| = {difference:.4f}")
    check(difference > 1e-3, "形状凑巧相同时，错误的公式不报错，却给出错误的数")
    print("\n结论：推反向公式时，先把每个量的形状写出来；梯度必须和它对应的量同形。")


# ------------------------------------------------------------------ 4. 三种方法
def three_ways(x, W, b, G, f_name, verbose):
    if verbose:
        section("4. 三种方法算同一组梯度：手推公式、autograd、数值微分")
    hand = hand_gradients(x, W, b, G, f_name)
    auto = autograd_gradients(x, W, b, G, f_name)
    numeric = numerical_gradients(x, W, b, G, f_name)
    if verbose:
        print("dL/dW，三种方法：")
        for label, grads in (("(a) 手推", hand), ("(b) autograd", auto), ("(c) 数值微分", numeric)):
            print(f"  {label}:")
            print(indent(np.array2string(grads["W"], precision=10)))
        print(f"dL/db：(a) {hand['b']}\n       (b) {auto['b']}\n       (c) {numeric['b']}")
        print()
    print("梯度    形状          max|(a)-(b)|    max|(a)-(c)|")
    for name in ("W", "b", "x"):
        ab = np.abs(hand[name] - auto[name]).max()
        ac = np.abs(hand[name] - numeric[name]).max()
        print(f"dL/d{name:<4}{str(hand[name].shape):<10}{ab:>16.2e}{ac:>16.2e}")
    if verbose:
        print("(a) 与 (b) 相差 0 或在机器精度以内：autograd 做的正是同样的矩阵运算。")
        print("(c) 相差约 1e-10：这是中心差分自身的截断误差和舍入误差。")
    for name in ("W", "b", "x"):
        # 先比形状：np.allclose 会广播，(2,) 和 (1, 2) 也能"相等"。
        # 手推与 autograd 做的是同样的浮点运算，只差舍入；数值微分有 O(eps^2) 的截断误差。
        same_shape = hand[name].shape == auto[name].shape == numeric[name].shape
        check(same_shape and np.allclose(hand[name], auto[name], rtol=1e-10, atol=1e-12)
              and np.allclose(hand[name], numeric[name], rtol=1e-6, atol=1e-7),
              f"dL/d{name}：形状相同，手推 = autograd = 数值微分")
    print("三种方法算出的梯度一致。")


def autograd_gradients(x, W, b, G, f_name):
    """(b) autograd：建图，backward()，读 .grad。float64，方便和数值微分比较。"""
    xt, Wt, bt = (tg.tensor(a, requires_grad=True) for a in (x, W, b))
    loss_tensor(xt, Wt, bt, tg.tensor(G), f_name).backward()
    return {"W": Wt.grad.numpy(), "b": bt.grad.numpy(), "x": xt.grad.numpy()}


def numerical_gradients(x, W, b, G, f_name):
    """(c) 中心差分：dL/da_i ≈ (L(a_i + eps) - L(a_i - eps)) / (2 eps)，逐个元素。"""
    x, W, b = x.copy(), W.copy(), b.copy()   # 下面会原地改动它们
    return {name: central_difference(lambda: loss_numpy(x, W, b, G, f_name), array)
            for name, array in (("W", W), ("b", b), ("x", x))}


def central_difference(loss, array, eps=1e-6):
    """把 array 的每个元素前后各挪 eps，看 loss 变化多少。误差约为 eps^2 量级。"""
    grad = np.zeros_like(array)
    for i in np.ndindex(array.shape):
        original = array[i]
        array[i] = original + eps
        up = loss()
        array[i] = original - eps
        down = loss()
        array[i] = original
        grad[i] = (up - down) / (2 * eps)
    return grad


# ------------------------------------------------------------------ 5. gradcheck
class ForgetfulActivation(tg.autograd.Function):
    """一个故意写错的激活函数：反向时忘了乘 f'(z)，把 δ 当成了 dL/dh。"""

    def forward(self, z, f):
        return f(z)

    def backward(self, grad):
        return grad          # 正确的写法是 grad * f'(z)


def gradcheck_catches_a_bug(x, W, b, f_name):
    section("5. tg.gradcheck：引擎自带的数值检查")
    print("tg.gradcheck(fn, inputs) 用中心差分检查 autograd 对 fn 的每个输入的梯度。")
    print("输入必须是 float64：float32 的舍入误差会淹没差分。")
    xt, Wt, bt = (tg.tensor(a, requires_grad=True) for a in (x, W, b))
    f = ACTIVATIONS[f_name][0]

    def layer(x, W, b):
        return layer_tensor(x, W, b, f_name)

    def buggy_layer(x, W, b):
        return ForgetfulActivation.apply(x @ W + b, f=f)

    passed = tg.gradcheck(layer, (xt, Wt, bt))
    print(f"  tg.gradcheck(layer, (x, W, b))       -> {passed}")
    try:
        caught = not tg.gradcheck(buggy_layer, (xt, Wt, bt))
    except tg.GradcheckError as e:
        caught = True
        print(f"  tg.gradcheck(buggy_layer, (x, W, b)) -> GradcheckError：\n{indent(str(e))}")
    check(passed, "gradcheck 认可正确的层")
    check(caught, "gradcheck 抓住了忘记乘 f'(z) 的错误")


if __name__ == "__main__":
    main()

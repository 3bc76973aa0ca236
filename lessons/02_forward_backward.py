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

符号（行向量约定：一行是一个样本，这一点和 PyTorch 相同）：

  x : (N, D_in)       一批输入，N 个样本
  W : (D_in, D_out)   权重。注意：PyTorch 的 nn.Linear 存的是 (D_out, D_in)，
                      计算 x W^T + b。两种布局第 7 节并排对比；本课前面用 (D_in, D_out)，
                      因为 z = x W 的推导少一个转置
  b : (D_out,)        偏置，广播到每一行
  z = x W + b         (N, D_out)
  h = f(z)            (N, D_out)，f 是 tanh 或 sigmoid
  L = Σ G ⊙ h         标量。G (N, D_out) 是固定的随机矩阵，于是 dL/dh = G：
                      它扮演"后面各层传回来的梯度"。不用 L = Σ h，因为全 1 的
                      梯度太特殊，会掩盖一些错误（比如行和列弄反）。

写法：A ⊙ B 是逐元素相乘（形状相同），A B（并排写）是矩阵乘法，A^T 是转置，
Σ 是求和。偏导数写成 dL/dW[i, j]（打印时用 d 代替 ∂）。
"""
import argparse
import inspect
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
    the_step_size(x, W, b, G, f_name)
    gradcheck_catches_a_bug(x, W, b, f_name)
    pytorch_layout(x, W, b, G, f_name)
    if not args.quick:
        section("8. 再来一次，换成大一些的层：N=64, D_in=32, D_out=16")
        three_ways(*random_problem(n=64, d_in=32, d_out=16, seed=1), f_name, verbose=False)
    print("""
第 2 课全部检查通过。
接下来：tinygrad_zh.nn.Linear(in_features, out_features) 把这一层包装起来，布局和 PyTorch
一样 —— weight 形状 (out_features, in_features)，y = x W^T + b，weight 的梯度是 δ^T x
（第 7 节）。有了它，再加上优化器，就能训练网络了。
练习：lessons/exercises/ex02_linear_backward.py 让你亲手写 PyTorch 布局的 Linear.backward
（python -m lessons.check 02 检查）。""")


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
  δ = dL/dz = dL/dh ⊙ f'(z)                  (N, D_out)   ⊙：逐元素相乘
      其中 f = {f_name}，f'(z) = {ACTIVATIONS[f_name][2]}（用前向算好的 h 表示）

dL/dW：W[i, j] 通过 z 的元素影响 L。链式法则要对 z 的每一个元素 z[n, k] 求和：

  dL/dW[i, j] = Σ_{{n,k}} δ[n, k] dz[n, k]/dW[i, j]

  z[n, k] = Σ_m x[n, m] W[m, k] + b[k]。W[i, j] 只出现在 k = j 的那一列里，系数是 x[n, i]：

  dz[n, k]/dW[i, j] = x[n, i]   当 k = j
                    = 0         当 k 不等于 j

  代回去，对 k 的求和只剩 k = j 这一项：

  dL/dW[i, j] = Σ_n δ[n, j] x[n, i] = Σ_n x^T[i, n] δ[n, j]   ->  dL/dW = x^T δ
                                        (D_in, N)(N, D_out) = (D_in, D_out)

同样的三步（对 z 的元素求和、找出非零的偏导、代回去）给出另外两个：

  dz[n, k]/db[j] = 1（k = j），否则 0    ->  dL/db[j] = Σ_n δ[n, j]，即 δ 的各行相加  (D_out,)
  dz[n, k]/dx[m, i] = W[i, k]（n = m），否则 0
                                         ->  dL/dx[m, i] = Σ_k δ[m, k] W[i, k]
                                         ->  dL/dx = δ W^T    (N, D_out)(D_out, D_in) = (N, D_in)

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
    print("有些教科书把权重的梯度写成 dL/dW = (dL/dh ⊙ f'(z)) x^T，也就是 δ x^T。")
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
本课用行向量的批量 z = x W（一行一个样本，和 PyTorch 一样），W 是 (D_in, D_out)，
所以要写成 x^T δ。（PyTorch 的 nn.Linear 把 W 存成 (D_out, D_in)，梯度是 δ^T x，见第 7 节。）""")
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
        worst = max(np.abs(hand[name] - numeric[name]).max() for name in hand)
        print("(a) 与 (b) 相差 0 或在机器精度以内：autograd 做的正是同样的矩阵运算。")
        print(f"(c) 最多相差 {worst:.0e}：这是中心差分自身的截断误差和舍入误差（第 5 节细看）。")
    for name in ("W", "b", "x"):
        # 先比形状：np.allclose 会广播，(2,) 和 (1, 2) 也能"相等"。
        # 手推与 autograd 做的是同样的浮点运算，只差舍入；数值微分的误差见第 5 节。
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
    """把 array 的每个元素前后各挪 eps，看 loss 变化多少。

    误差 = 截断误差 O(eps^2) + 舍入误差 O(ε_mach / eps)：eps 太大或太小都不好（第 5 节）。
    """
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


# ------------------------------------------------------------------ 5. 步长 eps
def the_step_size(x, W, b, G, f_name):
    section("5. 数值微分的步长 eps：不是越小越好")
    hand = hand_gradients(x, W, b, G, f_name)["W"]
    steps = [10.0 ** -k for k in range(2, 9)]
    errors = []
    for eps in steps:
        W_nudged = W.copy()   # central_difference 会原地挪动元素
        numeric = central_difference(lambda: loss_numpy(x, W_nudged, b, G, f_name), W_nudged, eps)
        errors.append(np.abs(numeric - hand).max())
    # 截断误差 ≈ C eps^2（泰勒展开的三阶项）：C 从最大的 eps 估计，那里舍入误差可以忽略。
    # 舍入误差 ≈ ε_mach |L| / eps：L(a + eps) 与 L(a - eps) 各有约 ε_mach |L| 的舍入，
    # 相减后再除以 2 eps。两项之和在 eps = (ε_mach |L| / (2C))^(1/3) 处最小。
    machine_eps = np.finfo(np.float64).eps
    size = abs(loss_numpy(x, W, b, G, f_name))
    c = errors[0] / steps[0] ** 2
    print(f"把 dL/dW 的中心差分和手推公式比较，看 max 误差怎样随 eps 变化（float64，ε_mach = {machine_eps:.1e}）：\n")
    print(f"{'eps':>8} {'max 误差':>11} {'截断 C eps^2':>14} {'舍入 ε|L|/eps':>15}   log10(误差)")
    for eps, error in zip(steps, errors):
        bar = "#" * max(1, round(14 + np.log10(error)))
        print(f"{eps:8.0e} {error:11.1e} {c * eps ** 2:14.1e} {machine_eps * size / eps:15.1e}   {bar}")
    best = steps[int(np.argmin(errors))]
    predicted = (machine_eps * size / (2 * c)) ** (1 / 3)
    at_1e6 = errors[steps.index(1e-6)]
    defaults = {name: p.default for name, p in inspect.signature(tg.gradcheck).parameters.items()}
    print(f"""
误差曲线是 U 形的：
  eps 大时，截断误差 O(eps^2) 占主导：eps 缩小 10 倍，误差缩小约 100 倍（{errors[0] / errors[1]:.0f} 倍）；
  eps 小时，舍入误差 O(ε_mach / eps) 占主导：L 的两个值几乎相等，相减把有效数字消掉了。
  实测最好的 eps = {best:.0e}；理论最佳 (ε_mach |L| / (2C))^(1/3) = {predicted:.1e}。
所以正确的说法是：误差 = O(eps^2) + O(ε_mach / eps)，而不是"误差是 eps^2 量级"。
eps = 1e-6 时误差是 {at_1e6:.1e}，远大于 C eps^2 = {c * 1e-12:.1e}：这里已经是舍入误差说了算。
tg.gradcheck 默认 eps = {defaults["eps"]:g}，离谷底不远；它允许的误差 atol = {defaults["atol"]:g} 远大于这里的误差。""")
    check(50 < errors[0] / errors[1] < 200, "eps 大时误差按 eps^2 缩小（缩小 10 倍 -> 约 100 倍）")
    check(errors[-1] > 10 * min(errors), "eps 太小时舍入误差让误差重新变大")
    check(steps[0] > best > steps[-1], "最好的 eps 在中间：误差曲线是 U 形")
    check(predicted / 10 < best < predicted * 10, "最好的 eps 与 (ε_mach |L| / (2C))^(1/3) 在同一个数量级")
    check(at_1e6 > 100 * c * 1e-12, "eps = 1e-6 时误差主要来自舍入，不是 eps^2")
    check(errors[steps.index(defaults["eps"])] < defaults["atol"] / 100,
          "gradcheck 默认的 eps 下，差分误差比它允许的 atol 小两个数量级以上")


# ------------------------------------------------------------------ 6. gradcheck
class ForgetfulActivation(tg.autograd.Function):
    """一个故意写错的激活函数：反向时忘了乘 f'(z)，把 δ 当成了 dL/dh。"""

    def forward(self, z, f):
        return f(z)

    def backward(self, grad):
        return grad          # 正确的写法是 grad * f'(z)


def gradcheck_catches_a_bug(x, W, b, f_name):
    section("6. tg.gradcheck：引擎自带的数值检查")
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


# ------------------------------------------------------------------ 7. PyTorch 的布局
def pytorch_layout(x, W, b, G, f_name):
    section("7. PyTorch 的布局：W 形状 (D_out, D_in)，z = x W^T + b")
    d_in, d_out = W.shape
    print(f"""\
和 PyTorch 相同的：一行一个样本（x 是 (N, D_in)），b 广播到每一行。
不同的：PyTorch 的 nn.Linear(in_features={d_in}, out_features={d_out}) 把 weight 存成
(out_features, in_features) = ({d_out}, {d_in})，前向算 z = x W^T + b。
这样存，weight 的第 j 行就是第 j 个输出的全部权重；它也正是第 3 节列向量写法 z = W x 里的 W。

梯度：把 W^T 当作本课前面的 W，就有 dL/d(W^T) = x^T δ；转置回来

  dL/dW = (x^T δ)^T = δ^T x     (D_out, N)(N, D_in) = (D_out, D_in)，和 weight 同形。

下面用同一组数，两种布局各建一次图、各 backward 一次：""")
    f, f_prime, _ = ACTIVATIONS[f_name]
    delta = G * f_prime(f(x @ W + b))
    xt, Gt = tg.tensor(x), tg.tensor(G)
    W_ours = tg.tensor(W, requires_grad=True)              # (D_in, D_out)
    W_torch = tg.tensor(W.T.copy(), requires_grad=True)    # (D_out, D_in)：同样的数，转置存放
    b_ours, b_torch = tg.tensor(b, requires_grad=True), tg.tensor(b, requires_grad=True)
    L_ours = loss_tensor(xt, W_ours, b_ours, Gt, f_name)
    L_torch = loss_tensor(xt, W_torch.T, b_torch, Gt, f_name)   # x @ W^T + b
    L_ours.backward()
    L_torch.backward()
    print(f"  本课布局     W {W_ours.shape}  z = x @ W + b     L = {L_ours.item():.12f}  W.grad {W_ours.grad.shape}")
    print(f"  PyTorch 布局 W {W_torch.shape}  z = x @ W.T + b   L = {L_torch.item():.12f}  W.grad {W_torch.grad.shape}")
    check(np.isclose(L_ours.item(), L_torch.item(), rtol=1e-12), "两种布局的前向结果相同")
    check(W_torch.grad.shape == (d_out, d_in) and np.allclose(W_torch.grad.numpy(), delta.T @ x),
          "PyTorch 布局下 weight 的梯度是 δ^T x，形状 (D_out, D_in)")
    check(np.allclose(W_torch.grad.numpy(), W_ours.grad.numpy().T, rtol=1e-12, atol=1e-15),
          "两种布局的权重梯度互为转置")
    check(np.array_equal(b_ours.grad.numpy(), b_torch.grad.numpy()), "偏置的梯度两种布局完全一样")


if __name__ == "__main__":
    main()

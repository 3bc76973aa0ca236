"""第 16 课：高阶导数与计算图

在仓库根目录运行：

    python lessons/16_higher_order_and_graphs.py           # 完整版，几秒钟
    python lessons/16_higher_order_and_graphs.py --quick   # 精简版（冒烟测试用）
    python lessons/16_higher_order_and_graphs.py --out 某个文件夹   # 图文件存到哪里

第 1 课看到：autograd 把运算记录成图，backward() 沿着图往回走。这一课看这张图
本身还能做什么：

  1. 二阶导数：backward 是用张量运算写的，所以"求导的过程"也能被记录成图，
     再求一次导（create_graph=True）
  2. Hessian 与向量的乘积（HVP）：不用造出整个 Hessian 矩阵，和数值微分对比
  3. 梯度惩罚：损失里含有梯度本身，训练它需要二阶导数
  4. 把图导出成 Mermaid 和 Graphviz DOT（viz.to_mermaid、viz.to_dot）
  5. 菱形的图与拓扑序：为什么反向传播必须按拓扑序走（DeZero 的一课）

每一步都有真正的检查：结果不对时程序以非零状态退出。
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

# 让 `python lessons/16_...py` 在未安装本包时也能从仓库根目录运行，
# 并且保证用的是这份源码，而不是别处安装的旧版本。
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh import viz  # noqa: E402
from common import backprop_in_order, check, section  # noqa: E402  (lessons/common.py)


def main():
    parser = argparse.ArgumentParser(description="第 16 课：高阶导数与计算图")
    parser.add_argument("--quick", action="store_true", help="缩小计算量（冒烟测试用）")
    parser.add_argument("--out", type=Path, default=Path("lesson_output/16"),
                        help="图文件（.mmd、.dot、.png）存放的文件夹")
    args = parser.parse_args()

    tg.manual_seed(0)
    second_derivatives()
    hessian_vector_product(n=4 if args.quick else 12)
    gradient_penalty(steps=5 if args.quick else 50)
    export_the_graph(args.out)
    diamond_and_topological_order()
    print(f"\n图文件在 {args.out.resolve()}")
    print("\n第 16 课全部检查通过。")


# ------------------------------------------------------------------ 1. 二阶导数
def second_derivatives():
    section("1. 二阶导数：对导数再求导")
    x = tg.tensor(3.0, dtype=tg.float64, requires_grad=True)
    y = x ** 3
    # create_graph=True：反向传播时照常记录计算图（backward 本身就是张量运算），
    # 于是返回的导数 dy 也有 grad_fn，可以再求导。
    (dy,) = tg.autograd.grad(y, x, create_graph=True)
    (d2y,) = tg.autograd.grad(dy, x, create_graph=True)
    (d3y,) = tg.autograd.grad(d2y, x)
    print("y = x^3，x = 3：")
    print("  (dy,)  = tg.autograd.grad(y, x, create_graph=True)    # dy 自己也带着计算图")
    print("  (d2y,) = tg.autograd.grad(dy, x, create_graph=True)")
    print("  (d3y,) = tg.autograd.grad(d2y, x)")
    print(f"  dy = {dy.item()}（3x^2 = 27）  d2y = {d2y.item()}（6x = 18）  d3y = {d3y.item()}（6）")
    print(f"  dy.grad_fn = {dy.grad_fn}：求导的过程被记录成了图")
    check((dy.item(), d2y.item(), d3y.item()) == (27.0, 18.0, 6.0), "x^3 在 x = 3 的一、二、三阶导数是 27、18、6")

    print("""
为什么是"免费"的：每个运算的 backward 都用张量运算写成（比如 Mul 的 backward
是 grad * b），所以 create_graph=True 时，反向传播用到的每一步都像前向一样被记录。
对 dy 再求导，就是对这张新图做一次普通的反向传播。不需要为二阶导数另写一行代码。""")

    xs = tg.linspace(-2.0, 2.0, 5, dtype=tg.float64, requires_grad=True)
    ys = xs.tanh()
    # 每个 ys[i] 只依赖 xs[i]，所以 sum(ys) 对 xs 的梯度就是逐元素的导数 tanh'(xs[i])。
    (dys,) = tg.autograd.grad(ys.sum(), xs, create_graph=True)
    print("\n逐元素的例子：y = tanh(x)，x 是 5 个点。一阶导数 dy 的计算图：\n")
    print(viz.graph_text(dys, {xs: "x"}))
    ones = dys._ctx.inputs[0]
    print(f"""
反向传播的起点是标量 sum(y) 对自己的梯度：形状 ()、值为 1 的张量。
Sum 的 backward 把它扩展成 {ones.shape} 的全 1 张量，这才是图里那个 requires_grad=False 的叶子；
随后 Tanh 的 backward 用它乘上 1 - tanh(x)^2。""")
    check(ones.shape == xs.shape and not ones.requires_grad and np.all(ones.numpy() == 1.0),
          "dy 图里的 (5,) 叶子是 Sum 的 backward 由标量 1 扩展出的全 1 张量")
    (d2ys,) = tg.autograd.grad(dys.sum(), xs)
    t = np.tanh(xs.detach().numpy())
    exact = -2 * t * (1 - t ** 2)       # tanh'' = -2 tanh (1 - tanh^2)
    print(f"\n{'x':>6} {'autograd 二阶导':>16} {'-2tanh(1-tanh^2)':>18}")
    for xi, got, want in zip(xs.detach().numpy(), d2ys.numpy(), exact):
        print(f"{xi:6.2f} {got:16.8f} {want:18.8f}")
    check(np.allclose(dys.detach().numpy(), 1 - t ** 2, rtol=1e-12, atol=1e-12), "一阶导数与 1 - tanh^2 一致")
    check(np.allclose(d2ys.numpy(), exact, rtol=1e-12, atol=1e-12), "二阶导数与解析式 -2tanh(1-tanh^2) 一致")


# ------------------------------------------------------------------ 2. HVP
def hessian_vector_product(n):
    section(f"2. Hessian 与向量的乘积（HVP），n = {n}")
    rng = np.random.default_rng(0)
    A = tg.tensor(rng.standard_normal((n, n)))
    v = tg.tensor(rng.standard_normal(n))
    x0 = rng.standard_normal(n)

    def f(x):
        """一个标量函数 f(x) = Σ tanh(x A)^2，x 是 (n,) 向量。"""
        return ((x @ A).tanh() ** 2).sum()

    def gradient(x_array, create_graph=False):
        x = tg.tensor(x_array, requires_grad=True)
        (g,) = tg.autograd.grad(f(x), x, create_graph=create_graph)
        return x, g

    # H v = d/dx (grad f(x) 与 v 的内积)：先求梯度（保留图），再对 (g * v).sum() 求一次导。
    x, g = gradient(x0, create_graph=True)
    (hvp,) = tg.autograd.grad((g * v).sum(), x)
    # 数值对照：H v ≈ (grad f(x + eps v) - grad f(x - eps v)) / (2 eps)
    eps = 1e-5
    numeric = (gradient(x0 + eps * v.numpy())[1].numpy()
               - gradient(x0 - eps * v.numpy())[1].numpy()) / (2 * eps)
    error = np.abs(hvp.numpy() - numeric).max() / np.abs(numeric).max()
    print(f"""\
f(x) = sum(tanh(x A)^2)，Hessian H 是 {n}x{n} 的二阶导数矩阵 H[i, j] = d2f / dx[i] dx[j]。
很多算法（牛顿法、共轭梯度、曲率分析）只需要 H v，不需要 H 本身：
  (g,)  = tg.autograd.grad(f(x), x, create_graph=True)
  (Hv,) = tg.autograd.grad((g * v).sum(), x)         # 再反向传播一次，不用造出 {n}x{n} 矩阵
和中心差分 (grad f(x + eps v) - grad f(x - eps v)) / (2 eps)，eps = {eps:g} 对比：
  HVP（autograd） = {np.array2string(hvp.numpy()[:4], precision=6)}{' ...' if n > 4 else ''}
  HVP（数值）     = {np.array2string(numeric[:4], precision=6)}{' ...' if n > 4 else ''}
  max 误差 / max|HVP| = {error:.1e}""")
    check(error < 1e-7, "HVP 与数值微分一致（相对误差小于 1e-7）")

    # 用 n 次 HVP（v 取单位向量）拼出整个 Hessian：它应当是对称的。
    x, g = gradient(x0, create_graph=True)
    rows = [tg.autograd.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(n)]
    H = np.stack(rows)
    asymmetry = np.abs(H - H.T).max()
    print(f"\n用 {n} 次 HVP（v 取单位向量）拼出整个 Hessian，max|H - H^T| = {asymmetry:.1e}")
    check(asymmetry < 1e-12, "Hessian 是对称的（二阶偏导与求导顺序无关）")
    check(np.allclose(H @ v.numpy(), hvp.numpy(), rtol=1e-10, atol=1e-12), "拼出的 H 乘 v 等于 HVP")


# ------------------------------------------------------------------ 3. 梯度惩罚
def gradient_penalty(steps):
    section("3. 梯度惩罚：损失里含有梯度")
    rng = np.random.default_rng(1)
    points = rng.standard_normal((6, 3))
    W1 = tg.tensor(rng.standard_normal((3, 5)) * 2, requires_grad=True)
    w2 = tg.tensor(rng.standard_normal(5) * 2, requires_grad=True)

    def penalty(W1, w2):
        """mean_n (|grad_x D(x_n)| - 1)^2，D(x) = tanh(x W1) w2（WGAN-GP 用的那种惩罚）。"""
        # gradcheck 在 no_grad 里做数值差分；这里要对 x 求导，所以明确打开求导模式。
        with tg.enable_grad():
            x = tg.tensor(points, requires_grad=True)
            D = (x @ W1).tanh() @ w2
            (grad_x,) = tg.autograd.grad(D.sum(), x, create_graph=True)
            norms = (grad_x ** 2).sum(dim=1).sqrt()
            return ((norms - 1) ** 2).mean()

    print("""\
判别器 D(x) = tanh(x W1) w2。惩罚项要求 D 对输入 x 的梯度的长度接近 1：
  (grad_x,) = tg.autograd.grad(D.sum(), x, create_graph=True)
  penalty   = mean((|grad_x| - 1)^2)
penalty 依赖 grad_x，grad_x 又依赖 W1、w2：对 W1 求导就是对梯度再求导（二阶导数）。""")
    ok = tg.gradcheck(penalty, (W1, w2))
    print(f"  tg.gradcheck(penalty, (W1, w2)) -> {ok}")
    check(ok, "梯度惩罚对参数的梯度（要经过二阶导数）通过 gradcheck")

    before = penalty(W1, w2).item()
    for _ in range(steps):
        W1.grad = w2.grad = None
        penalty(W1, w2).backward()
        with tg.no_grad():
            W1 -= 0.02 * W1.grad
            w2 -= 0.02 * w2.grad
    after = penalty(W1, w2).item()
    print(f"  用它做 {steps} 步梯度下降：penalty {before:.4f} -> {after:.4f}")
    check(after < before, "沿这个梯度下降，惩罚项变小")


# ------------------------------------------------------------------ 4. 导出
def export_the_graph(out):
    section("4. 把计算图导出成 Mermaid 和 Graphviz DOT")
    x = tg.ones(2, 3)
    W = tg.randn(4, 3, requires_grad=True)      # PyTorch 的布局：(out_features, in_features)
    b = tg.zeros(4, requires_grad=True)
    loss = (x @ W.T + b).tanh().sum()
    names = {x: "x", W: "W", b: "b", loss: "loss"}
    mermaid, dot = viz.to_mermaid(loss, names), viz.to_dot(loss, names)
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph.mmd").write_text(mermaid + "\n", encoding="utf-8")
    (out / "graph.dot").write_text(dot + "\n", encoding="utf-8")
    print("loss = sum(tanh(x W^T + b))。Mermaid（贴进 Markdown 的 ```mermaid 代码块，GitHub 会画出来）：\n")
    print(mermaid)
    print("\nGraphviz DOT（viz.to_dot）：\n")
    print(dot)
    tensors, edges = viz.graph_edges(loss)
    check(dot.count("->") == len(edges) == mermaid.count("-->"),
          f"DOT 与 Mermaid 画的是同一张图：{len(tensors)} 个张量、{len(edges)} 条边")

    dot_program = shutil.which("dot")
    if dot_program:
        png = out / "graph.png"
        subprocess.run([dot_program, "-Tpng", str(out / "graph.dot"), "-o", str(png)], check=True)
        print(f"\n找到了 dot 程序，已画成 {png}")
        check(png.stat().st_size > 0, "dot 画出了 PNG")
    else:
        print(f"\n这台机器上没有 dot 程序（Graphviz），所以只保存了文本：{out / 'graph.dot'}")
        print("装好 Graphviz（例如 apt install graphviz，或 https://graphviz.org 的安装包）后运行：")
        print(f"  dot -Tpng {out / 'graph.dot'} -o {out / 'graph.png'}")
        check((out / "graph.dot").read_text(encoding="utf-8") == dot + "\n", "DOT 文本已保存")


# ------------------------------------------------------------------ 5. 拓扑序
def diamond_and_topological_order():
    section("5. 菱形的图：为什么反向传播要按拓扑序")
    x = tg.tensor(0.5, dtype=tg.float64, requires_grad=True)
    a = x ** 2
    b = a.exp()
    c = a.tanh()
    y = b + c
    names = {x: "x", a: "a", b: "b", c: "c", y: "y"}
    print("y = exp(a) + tanh(a)，a = x^2：a 被两条路用到，两条路在 y 汇合，像一个菱形：\n")
    print(viz.graph_text(y, names))

    # 引擎的 backward() 用的顺序（autograd.py 内部的 _topological_order，它排的是运算节点）。
    by_node = {t._ctx: t for t in viz.graph_edges(y)[0] if t._ctx is not None}
    engine_order = [by_node[node] for node in tg.autograd._topological_order([y._ctx])]
    print("\n引擎的拓扑序（backward() 按这个顺序调用各运算的 backward）：")
    print("  " + " -> ".join(f"{names[t]}（{t.grad_fn}）" for t in engine_order))
    position = {id(t): i for i, t in enumerate(engine_order)}
    check(position[id(a)] > max(position[id(b)], position[id(c)]),
          "拓扑序里 a 排在用到它的 b 和 c 之后：处理 a 时，它的梯度已经收齐")

    # 手算：dy/dx = (exp(a) + 1 - tanh(a)^2) * 2x
    a_value = 0.25
    exact = (np.exp(a_value) + 1 - np.tanh(a_value) ** 2) * 2 * 0.5
    right = backprop_in_order(y, engine_order)[id(x)].item()
    wrong_order = first_seen_order(y)
    wrong = backprop_in_order(y, wrong_order)[id(x)].item()
    print(f"""
自己写一个最小的反向遍历（lessons/common.py 的 backprop_in_order，micrograd 的样子）：
按给定顺序，对每个张量调用它的 backward，把梯度加到输入上。换两种顺序试试：
  拓扑序：        {' -> '.join(names[t] for t in engine_order)}      dy/dx = {right:.10f}
  "先见先处理"：  {' -> '.join(names[t] for t in wrong_order if t in names)}   dy/dx = {wrong:.10f}
  手算 (exp(a) + 1 - tanh(a)^2) 2x = {exact:.10f}
"先见先处理"（深度优先，第一次遇到就处理）在只收到一条路的梯度时就处理了 a，
另一条路的梯度到得太晚，被丢掉了。拓扑序保证：一个张量被处理之前，所有用到它的运算都已处理完。""")
    check(np.isclose(right, exact, rtol=1e-12), "按拓扑序走，梯度与手算一致")
    check(not np.isclose(wrong, exact, rtol=1e-3), "顺序不对，梯度就错了（少了一条路）")
    print("练习：lessons/exercises/ex01_topological_sort.py 让你自己写这个排序"
          "（python -m lessons.check 01 检查）。")


def first_seen_order(output):
    """错误的顺序：深度优先，每个张量在第一次遇到时就排进去。"""
    order, seen, stack = [], set(), [output]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        order.append(t)
        if t._ctx is not None:
            stack.extend(t._ctx.inputs)
    return order


if __name__ == "__main__":
    main()

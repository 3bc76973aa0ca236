"""第 5 课：优化器 —— 有了梯度之后，参数该怎么走

在仓库根目录运行：

    python lessons/05_optimizers.py                 # 完整版，几秒钟
    python lessons/05_optimizers.py --quick         # 精简版（冒烟测试用，步数少一些）
    python lessons/05_optimizers.py --out 图片目录   # 图片存到别处（默认 lesson_output/05/）

前几课我们学会了算梯度 g = dL/dw。这一课回答下一个问题：知道了梯度，参数 w
每一步该走多远、往哪儿走？

  1. 五个优化器的更新公式：SGD、动量、RMSprop、Adam、AdamW；
  2. 用真实的数字手算 Adam 的第一步（包括偏差修正），再和 optim.Adam 核对；
  3. 权重衰减的两种做法：Adam 的 L2 与 AdamW 的"解耦"衰减；
  4. 五个优化器在 Rosenbrock 函数上走出的路径，画成图；
  5. 学习率调度：先预热（warmup）再余弦下降，画成图；
  6. 训练到一半保存（tg.save），读回来（tg.load）接着训练，结果一模一样。
"""
import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

# 让 `python lessons/05_...py` 在未安装本包时也能从仓库根目录运行，
# 并且保证用的是这份源码，而不是别处安装的旧版本。
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh import optim  # noqa: E402
from tinygrad_zh.optim import lr_scheduler  # noqa: E402
from common import check, section  # noqa: E402  (lessons/common.py)

# Rosenbrock 函数 f(x, y) = (1 - x)^2 + 100 (y - x^2)^2：最小值在 (1, 1)，f = 0。
# 它的谷底是一条弯弯的窄沟：沿沟底方向很平，横穿沟的方向很陡，
# 正是"各个方向陡峭程度差别很大"的典型难题。
START = (-1.5, 2.0)
MINIMUM = np.array([1.0, 1.0])
# 每个优化器都用各自合适的学习率（太大会发散，太小走不动）。
OPTIMIZERS = {
    "SGD": lambda ps: optim.SGD(ps, lr=1e-3),
    "SGD+动量": lambda ps: optim.SGD(ps, lr=1e-3, momentum=0.9),
    "RMSprop": lambda ps: optim.RMSprop(ps, lr=1e-2),
    "Adam": lambda ps: optim.Adam(ps, lr=0.05),
    "AdamW": lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=0.1),
}
LABELS = {"SGD+动量": "SGD+momentum"}  # 图例用英文，免得找不到中文字体


def main():
    parser = argparse.ArgumentParser(description="第 5 课：优化器")
    parser.add_argument("--quick", action="store_true", help="少走几步（冒烟测试用）")
    parser.add_argument("--out", default="lesson_output/05", help="图片保存到这个目录")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    update_formulas()
    first_adam_step()
    weight_decay_two_ways()
    paths = rosenbrock_paths(steps=1500 if args.quick else 3000)
    plot_paths(paths, out / "rosenbrock_paths.png")
    warmup_cosine_schedule(out / "warmup_cosine.png")
    save_and_resume()
    print(f"\n图片保存在 {out.resolve()}")
    print("""
第 5 课全部检查通过。
练习：lessons/exercises/ex05_adam_step.py 让你用 NumPy 亲手写一步 Adam（含偏差修正）
（python -m lessons.check 05 检查）。""")


# ------------------------------------------------------------------ 1. 公式
def update_formulas():
    section("1. 五个优化器的更新公式（g 是梯度，lr 是学习率，t 是步数，从 1 开始）")
    print("""\
  SGD        w = w - lr * g
             最朴素：沿负梯度走一小步。陡的方向步子大，平的方向步子小。

  动量 SGD    b = momentum * b + g           （第一步 b = g）
             w = w - lr * b
             b 是梯度的"滑动累积"：方向一致时越走越快，来回震荡时互相抵消。

  RMSprop    v = alpha * v + (1 - alpha) * g^2
             w = w - lr * g / (sqrt(v) + eps)
             每个坐标除以自己梯度的均方根：陡的方向步子变小，平的方向变大。

  Adam       m = beta1 * m + (1 - beta1) * g          一阶矩：梯度的滑动平均（动量）
             v = beta2 * v + (1 - beta2) * g^2        二阶矩：梯度平方的滑动平均
             m_hat = m / (1 - beta1^t)                偏差修正（见第 2 节）
             v_hat = v / (1 - beta2^t)
             w = w - lr * m_hat / (sqrt(v_hat) + eps)

  AdamW      w = w * (1 - lr * weight_decay)          先把权重按比例缩小（解耦的权重衰减）
             然后和 Adam 完全一样（梯度里不加 weight_decay * w）

默认超参数和 PyTorch 一样：Adam 的 lr=1e-3、betas=(0.9, 0.999)、eps=1e-8；
AdamW 的 weight_decay=0.01。""")


# ------------------------------------------------------------------ 2. Adam 第一步
def first_adam_step():
    section("2. 手算 Adam 的第一步：偏差修正到底修正了什么")
    lr, beta1, beta2, eps = 0.1, 0.9, 0.999, 1e-8
    w0 = np.array([1.0, -2.0])
    # 损失 L = w1^2 + 10 * w2^2，梯度 g = (2 w1, 20 w2)：两个方向陡峭程度差 10 倍。
    g = np.array([2 * w0[0], 20 * w0[1]])
    print(f"w = {w0.tolist()}，L = w1^2 + 10 w2^2，梯度 g = (2 w1, 20 w2) = {g.tolist()}")
    print(f"lr = {lr}，beta1 = {beta1}，beta2 = {beta2}，eps = {eps}；m 和 v 从 0 开始，t = 1\n")

    m = (1 - beta1) * g
    v = (1 - beta2) * g ** 2
    m_hat = m / (1 - beta1 ** 1)
    v_hat = v / (1 - beta2 ** 1)
    step = lr * m_hat / (np.sqrt(v_hat) + eps)
    w1 = w0 - step
    print(f"  m = (1 - {beta1}) * g         = {fmt(m)}")
    print(f"  v = (1 - {beta2}) * g^2       = {fmt(v)}")
    print(f"  m_hat = m / (1 - {beta1}^1)    = {fmt(m_hat)}   （正好等于 g）")
    print(f"  v_hat = v / (1 - {beta2}^1)  = {fmt(v_hat)}   （正好等于 g^2）")
    print(f"  步长 = lr * m_hat / (sqrt(v_hat) + eps) = {fmt(step)}")
    print(f"  新的 w = {fmt(w1)}")
    check(np.allclose(m_hat, g) and np.allclose(v_hat, g ** 2),
          "第一步修正后 m_hat = g、v_hat = g^2")
    check(np.allclose(np.abs(step), lr, rtol=1e-7),
          f"两个坐标都正好走了 lr = {lr}：梯度差 10 倍，步长却一样（Adam 按坐标自动缩放）")

    # 用引擎的 optim.Adam 走同一步，核对。
    w = tg.tensor(w0, dtype=tg.float64, requires_grad=True)
    opt = optim.Adam([w], lr=lr, betas=(beta1, beta2), eps=eps)
    (w[0] ** 2 + 10 * w[1] ** 2).backward()
    opt.step()
    print(f"\n  optim.Adam 走一步后 w = {fmt(w.detach().numpy())}")
    print(f"  它保存的状态：exp_avg (m) = {fmt(opt.state[w]['exp_avg'])}，"
          f"exp_avg_sq (v) = {fmt(opt.state[w]['exp_avg_sq'])}")
    state = opt.state[w]
    check(np.allclose(w.detach().numpy(), w1, rtol=1e-14, atol=0)
          and np.allclose(state["exp_avg"], m) and np.allclose(state["exp_avg_sq"], v),
          "手算的 w、m、v 与 optim.Adam 一致")

    # 不做偏差修正会怎样？m 和 v 都从 0 出发，第一步里它们都被"拉向 0"，
    # 但拉的程度不同：m 缩小成 (1 - beta1) g，sqrt(v) 只缩小成 sqrt(1 - beta2) |g|。
    raw = lr * m / (np.sqrt(v) + eps)
    ratio = raw[0] / step[0]
    print(f"\n  不修正：lr * m / (sqrt(v) + eps) = {fmt(raw)}，是修正后的 {ratio:.4f} 倍")
    print(f"  = (1 - beta1) / sqrt(1 - beta2) = {(1 - beta1) / math.sqrt(1 - beta2):.4f}")
    check(abs(ratio - (1 - beta1) / math.sqrt(1 - beta2)) < 1e-6,
          "不修正时第一步的大小差了 (1 - beta1) / sqrt(1 - beta2) 倍（这里约 3.16 倍）")


def fmt(a):
    return "[" + ", ".join(f"{x:.6g}" for x in np.asarray(a).ravel()) + "]"


# ------------------------------------------------------------------ 3. 权重衰减
def weight_decay_two_ways():
    section("3. 权重衰减的两种做法：Adam（L2）与 AdamW（解耦）")
    lr, wd = 0.1, 0.5
    w0, g = np.array([4.0, 0.1, 1.0]), np.array([0.0, 0.0, 10.0])
    print(f"""\
L2：把 weight_decay * w 加到梯度里，再交给 Adam。可是 Adam 会把梯度除以 sqrt(v_hat)，
    衰减也被一起"归一化"了：它的效果取决于梯度，而不取决于权重有多大。
AdamW：衰减不经过梯度，每一步直接 w = w * (1 - lr * weight_decay)，效果只和权重本身成正比。

三个权重 w = {fmt(w0)}，梯度 g = {fmt(g)}，lr = {lr}，weight_decay = {wd}。
各走一步，带衰减和不带衰减各一次；"衰减的效果" = 不带衰减的 w - 带衰减的 w：""")
    effects = {}
    for name in ("Adam", "AdamW"):
        ends = []
        for decay in (0.0, wd):
            w = tg.tensor(w0, dtype=tg.float64, requires_grad=True)
            opt = getattr(optim, name)([w], lr=lr, weight_decay=decay)
            w.grad = tg.tensor(g)
            opt.step()
            ends.append(w.detach().numpy())
        effects[name] = ends[0] - ends[1]
        print(f"  {name:6s} 衰减的效果 = {fmt(effects[name])}")
    check(np.allclose(effects["AdamW"], lr * wd * w0, rtol=1e-12),
          f"AdamW：衰减的效果正好是 lr * weight_decay * w = {fmt(lr * wd * w0)}，"
          "与梯度无关，大小权重按同一比例缩小")
    check(np.allclose(effects["Adam"][:2], lr, rtol=1e-6) and abs(effects["Adam"][2]) < 1e-6,
          f"Adam（L2）：梯度为 0 的两个权重不论大小（{w0[0]} 和 {w0[1]}）都被衰减掉一整步 "
          f"lr = {lr}；梯度大的那个权重，衰减几乎不起作用（{effects['Adam'][2]:.1e}）")


# ------------------------------------------------------------------ 4. Rosenbrock
def rosenbrock(p):
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock_paths(steps):
    section(f"4. 在 Rosenbrock 函数上比一比：从 {START} 出发，每个优化器走 {steps} 步")
    print("f(x, y) = (1 - x)^2 + 100 (y - x^2)^2，最小值在 (1, 1)。谷底是一条弯曲的窄沟。\n")
    paths = {}
    for name, make in OPTIMIZERS.items():
        p = tg.tensor(START, dtype=tg.float64, requires_grad=True)
        opt = make([p])
        path = [p.detach().numpy().copy()]
        for _ in range(steps):
            opt.zero_grad()
            rosenbrock(p).backward()
            opt.step()
            path.append(p.detach().numpy().copy())
        paths[name] = np.array(path)
        end = paths[name][-1]
        print(f"  {pad(name, 10)} 终点 ({end[0]: .5f}, {end[1]: .5f})   f = {float(rosenbrock(end)):.3e}"
              f"   离 (1, 1) 的距离 {distance(end):.2e}")
    check(distance(paths["SGD+动量"][-1]) < distance(paths["SGD"][-1]) / 10,
          "同样的学习率，加了动量的 SGD 离最小值近得多（沿沟底越走越快）")
    check(distance(paths["Adam"][-1]) < 0.01, "Adam 到达 (1, 1) 附近（距离 < 0.01）")
    adam, adamw = paths["Adam"][-1], paths["AdamW"][-1]
    check(np.linalg.norm(adamw) < np.linalg.norm(adam) and distance(adamw) > distance(adam),
          "AdamW 的权重衰减一直把参数拉向原点：它的终点比 Adam 的离原点更近，离 f 的最小值更远")
    return paths


def pad(text, width):
    """补空格到 width 个字符宽（汉字在终端里占两格）。"""
    return text + " " * (width - sum(2 if ord(c) > 127 else 1 for c in text))


def distance(p):
    return float(np.linalg.norm(np.asarray(p) - MINIMUM))


def plot_paths(paths, filename):
    """左图：各优化器在等高线上的路径（终点画一个大圆点）；右图：f 随步数的变化。"""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
    fs = (1 - xs) ** 2 + 100 * (ys - xs ** 2) ** 2
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(12, 5.2))
    ax.contour(xs, ys, np.log10(fs + 1e-3), levels=25, cmap="Greys", linewidths=0.5)
    for (name, path), style in zip(paths.items(), ["-", "--", "-.", ":", "-"]):
        label = LABELS.get(name, name)
        line, = ax.plot(path[:, 0], path[:, 1], style, lw=1.5, alpha=0.85, label=label)
        ax.plot(*path[-1], "o", ms=8, color=line.get_color(), mec="k")
        losses = (1 - path[:, 0]) ** 2 + 100 * (path[:, 1] - path[:, 0] ** 2) ** 2
        ax_loss.semilogy(losses, style, color=line.get_color(), label=label)
    ax.plot(*MINIMUM, "k*", ms=14, label="minimum (1, 1)")
    ax.plot(*START, "ks", ms=6, label="start")
    ax.set(xlim=(-2, 2), ylim=(-1, 3), xlabel="x", ylabel="y",
           title="paths on the Rosenbrock surface (dots: end points)")
    ax.legend(loc="lower right", fontsize=8)
    ax_loss.set(xlabel="step", ylabel="f(x, y)", title="loss per step (log scale)")
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(filename, dpi=100)
    plt.close(fig)
    print(f"\n  路径图：{filename}")


# ------------------------------------------------------------------ 5. 学习率调度
def warmup_cosine_schedule(filename):
    section("5. 学习率调度：先预热，再余弦下降")
    print("""\
训练刚开始时参数是随机的，梯度又大又乱；Adam 的 v 也还没估计准。先用很小的学习率
"预热"（warmup），线性升到设定值，再沿半个余弦慢慢降下来，是微调和训练 Transformer
最常用的调度。tg.optim.lr_scheduler.get_cosine_schedule_with_warmup 就是这个：

  step < warmup：  系数 = step / warmup
  之后：           p = (step - warmup) / (total - warmup)
                   系数 = r + (1 - r) * (1 + cos(pi * p)) / 2    （r = min_lr_ratio）
""")
    base_lr, warmup, total, ratio = 3e-4, 100, 1000, 0.1
    w = tg.zeros(1, requires_grad=True)
    opt = optim.AdamW([w], lr=base_lr)
    sched = lr_scheduler.get_cosine_schedule_with_warmup(opt, warmup, total, min_lr_ratio=ratio)
    lrs = []
    for _ in range(total + 1):
        lrs.append(sched.get_last_lr()[0])
        opt.step()        # 真实训练里这里是一个 batch 的 forward、backward、step
        sched.step()
    lrs = np.array(lrs)
    for step in (0, 50, warmup, 550, total):
        print(f"  第 {step:4d} 步  lr = {lrs[step]:.3e}")
    check(lrs[0] == 0 and abs(lrs[warmup] - base_lr) < 1e-15 and lrs.max() == lrs[warmup],
          f"lr 从 0 开始，第 {warmup} 步到达最大值 {base_lr}")
    check(np.all(np.diff(lrs[:warmup + 1]) > 0) and np.all(np.diff(lrs[warmup:]) <= 0),
          "预热期间单调上升，之后单调下降")
    check(abs(lrs[total] - ratio * base_lr) < 1e-15 and abs(lrs[550] - (1 + ratio) / 2 * base_lr)
          < 1e-15, f"第 550 步（余弦的一半）是 (1 + r) / 2 倍，最后一步是 r = {ratio} 倍")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(lrs)
    ax.axvline(warmup, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="step", ylabel="learning rate",
           title=f"linear warmup ({warmup} steps) + cosine decay to {ratio} x lr")
    fig.tight_layout()
    fig.savefig(filename, dpi=110)
    plt.close(fig)
    print(f"\n  学习率曲线：{filename}")


# ------------------------------------------------------------------ 6. 保存与恢复
def save_and_resume():
    section("6. 训练到一半保存，读回来接着训练：结果一模一样")
    print("""\
优化器也有状态（Adam 的 m、v 和步数 t）。只保存参数、不保存优化器状态，恢复后 Adam
会从 t = 1 重新做偏差修正，轨迹就变了。tg.save 把参数和 opt.state_dict() 一起存进一个
文件（zip 里是 .npy 数组和一段描述结构的 JSON，读的时候不会执行任何代码）。""")
    folder = tempfile.TemporaryDirectory()     # 演示用，运行结束就删掉
    path = Path(folder.name) / "checkpoint.npz"

    def train(p, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            rosenbrock(p).backward()
            opt.step()

    p = tg.tensor(START, dtype=tg.float64, requires_grad=True)
    opt = optim.Adam([p], lr=0.05)
    train(p, opt, 20)
    straight = p.detach().numpy().copy()

    p = tg.tensor(START, dtype=tg.float64, requires_grad=True)
    opt = optim.Adam([p], lr=0.05)
    train(p, opt, 10)
    tg.save({"p": p, "optimizer": opt.state_dict()}, path)
    ckpt = tg.load(path)
    p2 = tg.tensor(ckpt["p"], requires_grad=True)
    opt2 = optim.Adam([p2])               # 学习率等超参数也从 state_dict 里恢复
    opt2.load_state_dict(ckpt["optimizer"])
    print(f"  读回的状态：步数 t = {ckpt['optimizer']['state'][0]['step']}，"
          f"lr = {opt2.param_groups[0]['lr']}")
    train(p2, opt2, 10)
    resumed = p2.detach().numpy()

    p3 = tg.tensor(ckpt["p"], requires_grad=True)
    opt3 = optim.Adam([p3], lr=0.05)      # 只恢复参数，丢掉优化器状态
    train(p3, opt3, 10)
    print(f"  一口气训练 20 步：           {fmt(straight)}")
    print(f"  10 步 + 保存/读取 + 10 步：   {fmt(resumed)}")
    print(f"  只恢复参数、不恢复优化器：   {fmt(p3.detach().numpy())}")
    check(np.array_equal(straight, resumed), "保存并恢复优化器状态后，结果逐位相同")
    check(not np.allclose(straight, p3.detach().numpy(), rtol=1e-6),
          "丢掉优化器状态，轨迹就不一样了")
    folder.cleanup()


if __name__ == "__main__":
    main()

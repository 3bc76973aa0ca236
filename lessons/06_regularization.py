"""第 6 课：正则化 —— 欠拟合与过拟合、早停、L1/L2 与权重衰减、dropout

在仓库根目录运行：

    python lessons/06_regularization.py            # 完整版，并画图
    python lessons/06_regularization.py --quick    # 精简版（冒烟测试用，不画图）

模型在训练集上表现好还不够，要在没见过的数据（验证集）上也好。
本课用一个小问题把这件事看清楚：从 y = sin(pi x) 加噪声采 12 个训练点，
用多项式去拟合，验证集是 [-1, 1] 上 200 个没有噪声的点。

  1. 欠拟合与过拟合：多项式次数从 1 到 11，训练误差一路下降，验证误差先降后升；
  2. 早停：用梯度下降训练 12 次多项式，验证误差先降后升，在最低点停下；
  3. L2 惩罚与权重衰减：对 SGD 二者一模一样（逐步核对），对 Adam 则不同（AdamW 的由来）；
     L1 惩罚把一部分系数压到 0 附近；
  4. dropout：训练模式随机置零并放大，评估模式什么都不做。

训练循环都是手写的 SGD：with tg.no_grad(): w -= lr * w.grad。
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

DEGREE = 12        # 第 2、3 节的多项式次数：13 个系数，只有 12 个训练点
LR = 0.05


def main():
    parser = argparse.ArgumentParser(description="第 6 课：正则化")
    parser.add_argument("--quick", action="store_true", help="精简版（冒烟测试用，不画图）")
    parser.add_argument("--out", default="lesson_output/06", help="图片的输出文件夹")
    args = parser.parse_args()
    out = None if args.quick else Path(args.out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    data = make_data()
    under_and_overfitting(data, out)
    early_stopping(data, out, steps=3000 if args.quick else 8000)
    penalties_and_weight_decay(data)
    dropout()
    print("\n全部检查通过")
    if out is not None:
        print(f"图片在：{out.resolve()}")


def make_data():
    rng = np.random.default_rng(0)
    x_train = np.sort(rng.uniform(-1, 1, 12))
    y_train = np.sin(np.pi * x_train) + 0.25 * rng.standard_normal(12)
    x_val = np.linspace(-1, 1, 200)
    y_val = np.sin(np.pi * x_val)
    return x_train, y_train, x_val, y_val


def features(x, degree):
    """Legendre 多项式 P_0(x) ... P_degree(x) 作为特征（比 1, x, x^2... 数值上好得多）。"""
    return np.stack([np.polynomial.legendre.legval(x, np.eye(degree + 1)[k])
                     for k in range(degree + 1)], axis=1)


def mse(A, w, y):
    return float(((A @ w - y) ** 2).mean())


# ------------------------------------------------------------------ 1. 欠拟合与过拟合
def under_and_overfitting(data, out):
    section("1. 欠拟合与过拟合：多项式的次数")
    x_train, y_train, x_val, y_val = data
    print("每个次数都用最小二乘直接解出最优系数（让训练误差最小），再看验证误差：\n")
    print(f"{'次数':>4} {'训练 MSE':>12} {'验证 MSE':>12}")
    rows = []
    for degree in (1, 3, 5, 7, 9, 11):
        A, B = features(x_train, degree), features(x_val, degree)
        w = np.linalg.lstsq(A, y_train, rcond=None)[0]
        rows.append((degree, mse(A, w, y_train), mse(B, w, y_val)))
        print(f"{degree:>4} {rows[-1][1]:>12.3e} {rows[-1][2]:>12.3e}")
    by_degree = {d: (tr, va) for d, tr, va in rows}
    best = min(rows, key=lambda r: r[2])[0]
    print("\n次数 1：一条直线画不出正弦，训练、验证误差都大 —— 欠拟合。")
    print(f"次数 11：12 个系数穿过全部 {len(x_train)} 个点，训练误差约为 0，但在点与点之间剧烈摆动，")
    print(f"验证误差巨大 —— 过拟合：它记住了噪声。验证误差最小的是次数 {best}。")
    check(by_degree[1][0] > 0.1 and by_degree[1][1] > 0.1, "次数 1：训练和验证误差都大（欠拟合）")
    check(all(a[1] >= b[1] for a, b in zip(rows, rows[1:])), "次数越高，训练误差越小")
    check(by_degree[11][0] < 1e-12 and by_degree[11][1] > 100 * by_degree[best][1],
          "次数 11：训练误差约为 0，验证误差是最好次数的 100 倍以上（过拟合）")
    if out is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        floor = 1e-4   # degree 11's training error (about 1e-27) is drawn at the floor
        ax.semilogy([r[0] for r in rows], [max(r[1], floor) for r in rows], "o-", label="train")
        ax.semilogy([r[0] for r in rows], [r[2] for r in rows], "o-", label="validation")
        ax.set_ylim(bottom=floor / 2)
        ax.set_xlabel("polynomial degree")
        ax.set_ylabel("MSE")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "degree.png", dpi=100)
        plt.close(fig)
        print(f"已保存：{out / 'degree.png'}")


# ------------------------------------------------------------------ 2. 早停
def train(data, steps, penalty=None, lam=0.0, decay=0.0, record_every=0):
    """手写的梯度下降。penalty: None / 'l1' / 'l2'，加在损失上；decay: 权重衰减，
    直接写在更新里。返回系数和 (步数, 训练 MSE, 验证 MSE) 的记录。"""
    x_train, y_train, x_val, y_val = data
    A, B = tg.tensor(features(x_train, DEGREE)), tg.tensor(features(x_val, DEGREE))
    y, y_v = tg.tensor(y_train), tg.tensor(y_val)
    w = tg.zeros(DEGREE + 1, dtype=tg.float64, requires_grad=True)
    history = []
    for step in range(steps + 1):
        loss = F.mse_loss(A @ w, y)
        if record_every and step % record_every == 0:
            with tg.no_grad():
                history.append((step, loss.item(), F.mse_loss(B @ w, y_v).item()))
        if penalty == "l2":
            loss = loss + lam / 2 * (w * w).sum()      # 梯度 lam * w
        elif penalty == "l1":
            loss = loss + lam * w.abs().sum()          # 梯度 lam * sign(w)
        loss.backward()
        with tg.no_grad():
            if decay:
                w -= LR * decay * w                    # 权重衰减：w <- (1 - lr*decay) w
            w -= LR * w.grad
        w.grad = None
    return w.detach().numpy(), history


def early_stopping(data, out, steps):
    section(f"2. 早停：梯度下降训练 {DEGREE} 次多项式，{steps} 步")
    print("梯度下降先学会大而平滑的成分（正弦的形状），后学细碎的成分（噪声）。")
    print("所以验证误差先降后升：在最低点停下（早停）就得到一个没有记住噪声的模型。\n")
    _, history = train(data, steps, record_every=25)
    best_step, best_train, best_val = min(history, key=lambda h: h[2])
    final_step, final_train, final_val = history[-1]
    shown = history[::len(history) // 8]
    for step, tr, va in shown + ([history[-1]] if shown[-1] is not history[-1] else []):
        print(f"  第 {step:>5} 步：训练 MSE {tr:.4f}，验证 MSE {va:.4f}")
    print(f"\n验证误差最低在第 {best_step} 步（{best_val:.4f}）；训练到第 {final_step} 步时"
          f"训练误差继续降到 {final_train:.4f}，验证误差却升到 {final_val:.4f}。")
    check(final_train < best_train, "最低点之后训练误差仍在下降")
    check(0 < best_step < final_step and final_val > 1.2 * best_val,
          "验证误差先降后升：最终的验证误差比最低点高 20% 以上")
    if out is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([h[0] for h in history], [h[1] for h in history], label="train")
        ax.plot([h[0] for h in history], [h[2] for h in history], label="validation")
        ax.axvline(best_step, color="gray", ls="--", label=f"early stop (step {best_step})")
        ax.set_yscale("log")
        ax.set_xlabel("gradient descent step")
        ax.set_ylabel("MSE")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "early_stopping.png", dpi=100)
        plt.close(fig)
        print(f"已保存：{out / 'early_stopping.png'}")


# ------------------------------------------------------------------ 3. 惩罚与权重衰减
def penalties_and_weight_decay(data):
    section("3. L2 惩罚、权重衰减、L1 惩罚")
    print("L2 惩罚：损失加上 (lam/2)·sum(w^2)，梯度多出 lam·w，SGD 的更新变成")
    print("  w <- w - lr·(g + lam·w) = (1 - lr·lam)·w - lr·g")
    print("权重衰减：每步先把 w 乘上 (1 - lr·lam)，再做普通的更新。对 SGD 两者是同一个式子：\n")
    lam, steps = 0.02, 500
    w_l2, _ = train(data, steps, penalty="l2", lam=lam)
    w_decay, _ = train(data, steps, decay=lam)
    difference = np.abs(w_l2 - w_decay).max()
    print(f"  {steps} 步之后两组系数的最大差：{difference:.1e}（只剩舍入误差）")
    check(difference < 1e-12, "SGD：L2 惩罚与权重衰减得到相同的系数")

    print("\nAdam 不一样：它把梯度除以 sqrt(v)（梯度平方的滑动平均）。L2 惩罚的 lam·w")
    print("也被一起除掉了，梯度大的系数几乎不受惩罚；AdamW 把衰减移到除法之外（解耦）。")
    print("手写一步 Adam，从同一个 w、同一个 g 出发：")
    w = np.array([1.0, 1.0])
    g = np.array([10.0, 0.01])             # 一个梯度大、一个梯度小的系数
    lr, beta1, beta2, eps, lam = 0.1, 0.9, 0.999, 1e-8, 0.1

    def adam_step(grad):
        m, v = (1 - beta1) * grad, (1 - beta2) * grad * grad
        m_hat, v_hat = m / (1 - beta1), v / (1 - beta2)   # 偏差修正，第 1 步
        return lr * m_hat / (np.sqrt(v_hat) + eps)

    with_l2 = w - adam_step(g + lam * w)
    with_adamw = w - adam_step(g) - lr * lam * w
    without = w - adam_step(g)
    print(f"  不正则化      : {without}")
    print(f"  L2 惩罚 + Adam: {with_l2}")
    print(f"  AdamW         : {with_adamw}")
    shrink_l2 = without - with_l2
    shrink_adamw = without - with_adamw
    print(f"  正则化额外带来的缩小量：L2 {shrink_l2}，AdamW {shrink_adamw}")
    check(np.allclose(shrink_adamw, lr * lam * w) and not np.allclose(shrink_l2, shrink_adamw),
          "Adam：L2 惩罚与解耦的权重衰减结果不同；AdamW 对每个系数都缩小 lr·lam·w")

    print("\n对第 2 节的过拟合模型，正则化的效果（同样 3000 步）：")
    runs = {"不正则化": train(data, 3000, record_every=3000),
            "L2": train(data, 3000, penalty="l2", lam=0.03, record_every=3000),
            "L1": train(data, 3000, penalty="l1", lam=0.01, record_every=3000)}
    final = {name: history[-1] for name, (_, history) in runs.items()}
    for name, label in (("不正则化", "不正则化"), ("L2", "L2, lam=0.03"), ("L1", "L1, lam=0.01")):
        print(f"  {label:14} 训练 MSE {final[name][1]:.4f}，验证 MSE {final[name][2]:.4f}")
    check(final["L2"][2] < final["不正则化"][2] and final["L2"][1] > final["不正则化"][1],
          "L2：训练误差变大，验证误差变小 —— 用训练集上的一点误差换来泛化")
    counts = {name: int((np.abs(w) < 0.01).sum()) for name, (w, _) in runs.items()}
    print(f"\n|系数| < 0.01 的个数（共 {DEGREE + 1} 个）：{counts}")
    print("L1 的梯度 lam·sign(w) 不随 w 变小而变小，会一直把小系数推向 0；L2 的 lam·w")
    print("越推越轻，只让系数变小而不是变成 0。L1 因此常用来得到稀疏的模型。")
    check(counts["L1"] > max(counts["L2"], counts["不正则化"]),
          "L1 惩罚得到的接近 0 的系数比 L2 和不正则化都多")


# ------------------------------------------------------------------ 4. dropout
def dropout():
    section("4. dropout：训练时随机置零，评估时什么都不做")
    tg.manual_seed(0)
    layer = nn.Dropout(p=0.5)
    x = tg.ones(8)
    first, second = layer(x), layer(x)
    print(f"训练模式，同一个输入两次：\n  {first.tolist()}\n  {second.tolist()}")
    print("留下的元素乘上 1/(1-p) = 2（inverted dropout），于是输出的期望仍然等于输入，")
    print("评估时不必再做任何缩放。")
    check(set(first.tolist()) <= {0.0, 2.0} and first.tolist() != second.tolist(),
          "训练模式：每次随机置零，留下的乘 2")
    big = layer(tg.ones(100000))
    print(f"对 100000 个 1 做 dropout：被置零的比例 {float((big == 0).float().mean()):.4f}，"
          f"平均值 {float(big.mean()):.4f}")
    check(abs(float(big.mean()) - 1) < 0.01, "训练模式下输出的平均值仍约为 1（期望不变）")
    layer.eval()
    check(layer(x) is x, "评估模式（model.eval()）：dropout 原样返回输入")
    print("dropout 让网络不能依赖某一个神经元，相当于同时训练许多共享权重的小网络。")


if __name__ == "__main__":
    main()

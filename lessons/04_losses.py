"""第 4 课：损失函数 —— 均方误差、交叉熵、二元交叉熵、合页损失

在仓库根目录运行：

    python lessons/04_losses.py            # 完整版，并画图
    python lessons/04_losses.py --quick    # 精简版（冒烟测试用，不画图）

损失函数把"模型的输出离正确答案有多远"变成一个数，训练就是让这个数变小。
它的梯度是反向传播的起点，所以损失的公式和它的梯度同样重要。

本课：
  1. 均方误差 MSE：一个能手算的小例子；
  2. 交叉熵：一个完整手算的例子 —— 概率、损失、梯度 softmax - one_hot，
     每个数都由引擎算出并与手算核对；
  3. 为什么 log-softmax 必须用稳定的写法：朴素写法在 logits 约 100 时溢出；
  4. 二元交叉熵：概率版本与 logits 版本，为什么要用后者；
  5. 合页损失（hinge）：只惩罚"没赢够 margin"的类别；
  6. 几种损失对同一个错误的惩罚有多重（画图）。
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
import tinygrad_zh.nn.functional as F  # noqa: E402
from common import check, section  # noqa: E402  (lessons/common.py)


def main():
    parser = argparse.ArgumentParser(description="第 4 课：损失函数")
    parser.add_argument("--quick", action="store_true", help="精简版（冒烟测试用，不画图）")
    parser.add_argument("--out", default="lesson_output/04", help="图片的输出文件夹")
    args = parser.parse_args()

    mean_squared_error()
    cross_entropy_by_hand()
    stable_log_softmax()
    binary_cross_entropy()
    hinge()
    if not args.quick:
        plot(Path(args.out))
    print("\n全部检查通过")
    if not args.quick:
        print(f"图片在：{Path(args.out).resolve()}")


# ------------------------------------------------------------------ 1. MSE
def mean_squared_error():
    section("1. 均方误差 MSE = mean((y_hat - y)^2)")
    pred = tg.tensor([2.5, 0.0, 2.0], dtype=tg.float64, requires_grad=True)
    target = tg.tensor([3.0, -0.5, 2.0], dtype=tg.float64)
    loss = F.mse_loss(pred, target)
    loss.backward()
    diff = [2.5 - 3.0, 0.0 + 0.5, 2.0 - 2.0]
    by_hand = sum(d * d for d in diff) / 3
    grad_by_hand = [2 * d / 3 for d in diff]         # d/dy_hat mean(d^2) = 2d/N
    print(f"预测 {pred.detach().tolist()}，目标 {target.tolist()}，差 {diff}")
    print(f"手算：(0.25 + 0.25 + 0) / 3 = {by_hand:.6f}   引擎：{loss.item():.6f}")
    print(f"梯度 2(y_hat - y)/N：手算 {[round(g, 6) for g in grad_by_hand]}，"
          f"引擎 {[round(g, 6) for g in pred.grad.tolist()]}")
    check(math.isclose(loss.item(), by_hand, rel_tol=1e-15), "MSE 与手算一致")
    check(np.allclose(pred.grad.numpy(), grad_by_hand, rtol=1e-15), "MSE 的梯度 2(y_hat - y)/N 与手算一致")
    one = F.mse_loss(tg.tensor([1.0]), tg.tensor([0.0])).item()
    two = F.mse_loss(tg.tensor([2.0]), tg.tensor([0.0])).item()
    print(f"误差从 1 变成 2，MSE 从 {one} 变成 {two}：惩罚是平方增长的，所以 MSE 对离群点")
    print("很敏感（L1 / smooth L1 没那么敏感）。")
    check(two == 4 * one, "误差翻倍，MSE 变成 4 倍")


# ------------------------------------------------------------------ 2. 交叉熵
def cross_entropy_by_hand():
    section("2. 交叉熵：一个手算到底的例子")
    logits_list, label = [2.0, 1.0, 0.1], 0
    print(f"三个类别的 logits z = {logits_list}，正确答案是第 {label} 类。\n")

    # 手算，纯 Python：
    exps = [math.exp(z) for z in logits_list]
    total = sum(exps)
    probs = [e / total for e in exps]
    loss_by_hand = -math.log(probs[label])
    grad_by_hand = [p - (1.0 if c == label else 0.0) for c, p in enumerate(probs)]
    print("手算：")
    print(f"  e^z          = [{', '.join(f'{e:.6f}' for e in exps)}]，和 = {total:.6f}")
    print(f"  p = softmax  = [{', '.join(f'{p:.6f}' for p in probs)}]")
    print(f"  loss = -log p[{label}] = -log {probs[label]:.6f} = {loss_by_hand:.6f}")
    print(f"  dloss/dz = p - one_hot = [{', '.join(f'{g:+.6f}' for g in grad_by_hand)}]")

    # 引擎：
    logits = tg.tensor([logits_list], dtype=tg.float64, requires_grad=True)
    loss = F.cross_entropy(logits, tg.tensor([label]))
    loss.backward()
    engine_probs = F.softmax(logits, dim=1).detach().numpy()[0]
    print("\n引擎（F.softmax、F.cross_entropy 和 backward()）：")
    print(f"  p        = [{', '.join(f'{p:.6f}' for p in engine_probs)}]")
    print(f"  loss     = {loss.item():.6f}")
    print(f"  z.grad   = [{', '.join(f'{g:+.6f}' for g in logits.grad.numpy()[0])}]")
    check(np.allclose(engine_probs, probs, rtol=1e-14), "概率与手算一致")
    check(math.isclose(loss.item(), loss_by_hand, rel_tol=1e-14), "损失与手算一致")
    check(np.allclose(logits.grad.numpy()[0], grad_by_hand, rtol=1e-13, atol=1e-15),
          "梯度就是 softmax - one_hot，与手算一致")
    print("\n为什么梯度这么简单？loss = -z_y + log sum_c e^{z_c}，")
    print("对 z_k 求导：-[k = y] + e^{z_k} / sum_c e^{z_c} = p_k - one_hot_k。")
    print("梯度各分量之和为 0：正确类别被往上推多少，其余类别就一共被往下压多少。")
    check(abs(sum(logits.grad.numpy()[0])) < 1e-15, "交叉熵对 logits 的梯度各分量之和为 0")


# ------------------------------------------------------------------ 3. 数值稳定
def stable_log_softmax():
    section("3. 数值稳定：为什么不能直接写 log(softmax(z))")
    largest = float(np.finfo(np.float32).max)
    overflow_at = math.log(largest)
    print(f"float32 能表示的最大数约为 {largest:.2e}，e^x 在 x > ln({largest:.2e}) = "
          f"{overflow_at:.2f} 时就溢出成 inf。")
    print("logits 到 100 并不罕见（训练初期的大学习率、没有归一化的层）。\n")
    with np.errstate(over="ignore"):
        overflowed = tg.tensor([overflow_at + 0.5]).exp().item()
    check(math.isinf(overflowed),
          f"float32 里 e^{overflow_at + 0.5:.2f} 已经是 inf")
    z = tg.tensor([[100.0, 98.0, 90.0]])   # float32，和训练时一样
    with np.errstate(over="ignore", invalid="ignore"):
        exps = z.exp()
        naive_probs = exps / exps.sum(1, keepdim=True)
        naive = -(naive_probs.log())[0, 0]
    print(f"朴素写法：e^z = {exps.tolist()[0]}")
    print(f"          p = e^z / sum = {naive_probs.tolist()[0]}")
    print(f"          loss = -log p[0] = {naive.item()}")
    check(math.isnan(naive.item()), "朴素写法在 logits = 100 时得到 nan（inf / inf）")

    # 稳定写法：先减去最大值 m，log softmax(z)_k = (z_k - m) - log sum_c e^{z_c - m}
    m = 100.0
    by_hand = -((100.0 - m) - math.log(sum(math.exp(v - m) for v in (100.0, 98.0, 90.0))))
    stable = F.cross_entropy(z, tg.tensor([0]))
    print("\n稳定写法：log softmax(z)_k = (z_k - m) - log sum_c e^(z_c - m)，m = max(z)。")
    print("减去 m 之后最大的指数是 e^0 = 1，不会溢出；结果在数学上完全不变。")
    print(f"          loss = {stable.item():.6f}（手算 {by_hand:.6f}）")
    check(math.isclose(stable.item(), by_hand, rel_tol=1e-6), "稳定写法给出正确的损失")
    huge = F.cross_entropy(tg.tensor([[1e4, 0.0, -1e4]]), tg.tensor([2]))
    print(f"logits 为 1e4 时：loss = {huge.item()}（正确答案 2e4）")
    check(huge.item() == 2e4, "logits 为 1e4 时损失仍然有限且正确")


# ------------------------------------------------------------------ 4. BCE
def binary_cross_entropy():
    section("4. 二元交叉熵：-(y log p + (1 - y) log(1 - p))")
    p = tg.tensor([0.9, 0.2, 0.6], dtype=tg.float64)
    y = tg.tensor([1.0, 0.0, 0.0], dtype=tg.float64)
    by_hand = [-math.log(0.9), -math.log(0.8), -math.log(0.4)]
    loss = F.binary_cross_entropy(p, y, reduction="none")
    print(f"p = {p.tolist()}，y = {y.tolist()}")
    print(f"手算：[-log 0.9, -log 0.8, -log 0.4] = {[round(v, 6) for v in by_hand]}")
    print(f"引擎：{[round(v, 6) for v in loss.tolist()]}")
    check(np.allclose(loss.numpy(), by_hand, rtol=1e-14), "二元交叉熵与手算一致")

    print("\n模型输出的通常是 logit x，p = sigmoid(x)。先算 sigmoid 再取 log 有两个问题：")
    x = tg.tensor([40.0], requires_grad=True)
    target = tg.tensor([0.0])
    naive = F.binary_cross_entropy(x.sigmoid(), target)
    naive.backward()
    naive_grad = x.grad.item()
    x.grad = None
    fused = F.binary_cross_entropy_with_logits(x, target)
    fused.backward()
    print(f"  x = 40、y = 0 时 sigmoid(40) 在 float32 里舍入成 {x.sigmoid().item()}，"
          "log(1 - p) = log 0：")
    check(x.sigmoid().item() == 1.0, "float32 的 sigmoid(40) 正好是 1")
    print(f"  朴素写法：loss = {naive.item()}（被截断在 100），梯度 = {naive_grad}")
    print(f"  with_logits：loss = {fused.item()}（正确答案就是 40），梯度 = {x.grad.item()}")
    print("  with_logits 用 loss = (1 - y) x + log(1 + e^(-x))，并把 log(1 + e^(-x))")
    print("  写成 max(-x, 0) + log1p(e^(-|x|))：永远不会对 0 取 log。")
    check(naive.item() == 100 and fused.item() == 40.0,
          "朴素写法的损失被截断成 100，with_logits 给出正确的 40")
    check(naive_grad == 0 and x.grad.item() == 1.0,
          "朴素写法梯度消失为 0，with_logits 的梯度是正确的 sigmoid(x) - y = 1")


# ------------------------------------------------------------------ 5. hinge
def hinge():
    section("5. 合页损失（hinge，SVM 用的）：sum_{c != y} max(0, margin - z_y + z_c) / C")
    z = tg.tensor([[3.0, 2.5, -1.0]], dtype=tg.float64, requires_grad=True)
    loss = F.multi_margin_loss(z, tg.tensor([0]))
    loss.backward()
    terms = [max(0.0, 1 - 3.0 + 2.5), max(0.0, 1 - 3.0 - 1.0)]
    by_hand = sum(terms) / 3
    print(f"z = {z.detach().tolist()[0]}，正确类别 0，margin = 1")
    print(f"手算：[max(0, 1 - 3 + 2.5), max(0, 1 - 3 - 1)] = {terms}，"
          f"loss = {sum(terms)} / 3 = {by_hand:.6f}")
    print(f"引擎：loss = {loss.item():.6f}，梯度 = {z.grad.tolist()[0]}")
    check(math.isclose(loss.item(), by_hand, rel_tol=1e-15), "合页损失与手算一致")
    check(z.grad.tolist()[0] == [-1 / 3, 1 / 3, 0.0],
          "只有没赢够 margin 的类别 1 有梯度；类别 2 已经输够了，梯度为 0")
    print("和交叉熵不同：一旦正确类别领先 margin，损失和梯度就都是 0，不再继续推。")


# ------------------------------------------------------------------ 6. 画图
def plot(out):
    section("6. 画图：正确类别的 logit 优势 d 与损失")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    d = np.linspace(-5, 5, 501)
    # 两个类别：z = [d, 0]，正确的是第 0 类
    logits = tg.tensor(np.stack([d, np.zeros_like(d)], axis=1))
    labels = tg.tensor(np.zeros(len(d), dtype=np.int64))
    curves = {
        "cross-entropy": F.cross_entropy(logits, labels, reduction="none").numpy(),
        "hinge (x2 classes)": 2 * F.multi_margin_loss(logits, labels, reduction="none").numpy(),
        "MSE of softmax prob": (1 - F.softmax(logits, 1).numpy()[:, 0]) ** 2,
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(d, values, label=name)
    ax.set_xlabel("logit margin d = z_y - z_other")
    ax.set_ylabel("loss")
    ax.legend()
    path = out / "losses.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"已保存：{path}")
    print("交叉熵在错得很离谱时（d 很负）接近一条直线，梯度不会消失；")
    print("对 softmax 概率求 MSE 在那里变平，梯度趋于 0 —— 这就是分类不用 MSE 的原因。")
    # 斜率用 autograd 在 d = -5 处求：
    point = tg.tensor([[-5.0, 0.0]], dtype=tg.float64, requires_grad=True)
    F.cross_entropy(point, tg.tensor([0])).backward()
    ce_slope = point.grad.numpy()[0, 0]
    point.grad = None
    ((1 - F.softmax(point, 1)[0, 0]) ** 2).backward()
    mse_slope = point.grad.numpy()[0, 0]
    print(f"d = -5 处的斜率：交叉熵 {ce_slope:.4f}，概率的 MSE {mse_slope:.4f}")
    check(ce_slope < -0.99 and abs(mse_slope) < 0.02 * abs(ce_slope),
          "d = -5 处：交叉熵的斜率接近 -1，MSE 的斜率不到它的 2%")
    check(path.exists(), "损失曲线图已保存")


if __name__ == "__main__":
    main()

"""第 10 课：注意力 —— 从点积到多头，一步一步搭出 Transformer 的核心

在仓库根目录运行：

    python lessons/10_attention.py            # 完整版
    python lessons/10_attention.py --quick    # 精简版（冒烟测试用）

一句话：每个位置发出一个"问题" q，每个位置挂出一个"标签" k 和一份"内容" v；
q 和所有 k 做点积得到分数，softmax 把分数变成权重，输出是 v 的加权平均。

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + mask) V

本课依次讲：点积分数、为什么除以 sqrt(d)（不除，softmax 会饱和）、掩码（因果掩码
让位置 t 看不到未来）、多头、残差连接，画一张手工构造的注意力图，最后核对我们的
手写版本与融合的 F.scaled_dot_product_attention、
nn.MultiheadAttention 一致。
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh import nn  # noqa: E402
from tinygrad_zh.nn import functional as F  # noqa: E402
from common import check, section, show  # noqa: E402  (lessons/common.py)


def main():
    parser = argparse.ArgumentParser(description="第 10 课：注意力")
    parser.add_argument("--quick", action="store_true", help="缩小计算量（冒烟测试用）")
    parser.add_argument("--out", default="lesson_output/10", help="图片输出目录")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.set_printoptions(precision=3, suppress=True)

    dot_product_scores()
    why_scale(trials=200 if args.quick else 2000)
    causal_mask()
    multi_head()
    residual_connections(depth=20 if args.quick else 50)
    attention_map(out / "attention_map.png")
    agrees_with_the_library()
    print(f"\n图片保存在：{out.resolve()}")
    print("\n第 10 课全部检查通过。下一课：预训练一个小 GPT（lessons/11_gpt_pretraining.py）")


def attention(q, k, v, mask=None):
    """本课的手写注意力：softmax(q k^T / sqrt(d) + mask) v。mask 为 True 的位置可以看。"""
    scores = q @ k.mT * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = tg.where(mask, scores, float("-inf"))
    weights = scores.softmax(-1)
    return weights @ v, weights


def dot_product_scores():
    section("1. 点积分数：q 问，k 答，v 给内容")
    # 3 个位置，d = 2。第 0 个位置的问题 q0 = [1, 0]，它和 k1 = [2, 0] 最像。
    q = tg.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    k = tg.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    v = tg.tensor([[10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
    out, w = attention(q, k, v)
    show("q @ k.T  (分数：第 i 行是位置 i 对每个位置的打分)", (q @ k.mT).numpy())
    show("softmax(分数 / sqrt(2))  (权重，每行和为 1)", w.numpy())
    show("权重 @ v  (输出：v 的加权平均)", out.numpy())
    check(np.allclose(w.numpy().sum(-1), 1), "每一行权重之和都是 1")
    check(int(w.numpy()[0].argmax()) == 1, "位置 0 的问题 [1, 0] 最关注键 [2, 0]（位置 1）")
    check(np.allclose(out.numpy(), w.numpy() @ v.numpy()), "输出就是权重矩阵乘以 v")


def why_scale(trials):
    section("2. 为什么除以 sqrt(d)：不除的话 softmax 会饱和")
    print("q 和 k 的每个分量独立、方差为 1 时，点积 q.k 是 d 项之和，方差是 d。\n"
          "d = 256 时分数的标准差约 16：softmax 几乎把全部权重给最大的那一个（饱和），\n"
          "其余位置的梯度接近 0，模型学不动。除以 sqrt(d) 后分数的方差回到 1。")
    rng = np.random.default_rng(0)
    d, n = 256, 16
    q = rng.standard_normal((trials, 1, d))
    k = rng.standard_normal((trials, n, d))
    raw = (q @ k.transpose(0, 2, 1))[:, 0, :]
    stats = {}
    for name, scores in (("不缩放", raw), ("除以 sqrt(d)", raw / math.sqrt(d))):
        s = tg.tensor(scores, requires_grad=True)
        w = s.softmax(-1)
        # 梯度的大小：对权重加一个随机的上游梯度，看传回分数的梯度有多大
        (w * tg.tensor(rng.standard_normal(w.shape))).sum().backward()
        stats[name] = (scores.std(), w.detach().numpy().max(-1).mean(),
                       np.abs(s.grad.numpy()).mean())
        print(f"  {name:<10} 分数标准差 {stats[name][0]:6.2f}   最大权重的平均 "
              f"{stats[name][1]:.3f}   |分数的梯度| 平均 {stats[name][2]:.2e}")
    check(abs(stats["不缩放"][0] / math.sqrt(d) - 1) < 0.1, "不缩放时分数的标准差约为 sqrt(d) = 16")
    check(stats["不缩放"][1] > 0.9, "不缩放：平均最大权重超过 0.9，softmax 饱和了")
    check(stats["除以 sqrt(d)"][1] < 0.5, "缩放后：平均最大权重低于 0.5，权重分散开")
    check(stats["除以 sqrt(d)"][2] > 5 * stats["不缩放"][2], "缩放后传回分数的梯度大 5 倍以上")


def causal_mask():
    section("3. 掩码：因果掩码让位置 t 只能看 0..t")
    T = 5
    mask = tg.tensor(np.tril(np.ones((T, T), dtype=bool)))
    show("因果掩码（True = 可以看）", mask.numpy().astype(int))
    rng = np.random.default_rng(1)
    q, k, v = (tg.tensor(rng.standard_normal((T, 4))) for _ in range(3))
    out, w = attention(q, k, v, mask)
    show("权重（上三角是 -inf 经 softmax 后的 0）", w.numpy())
    check(np.all(np.triu(w.numpy(), 1) == 0), "未来位置的权重恰好为 0")
    v2 = v.numpy().copy()
    v2[3:] += 100.0  # 改动位置 3、4 的内容
    out2, _ = attention(q, k, tg.tensor(v2), mask)
    check(np.allclose(out.numpy()[:3], out2.numpy()[:3]), "改动未来位置（3、4）的 v，位置 0..2 的输出不变")
    check(not np.allclose(out.numpy()[3:], out2.numpy()[3:]), "位置 3、4 的输出确实变了")


def multi_head():
    section("4. 多头：把通道切成 H 份，每份各做一次注意力，再拼回去")
    print("一个头只能给出一种加权平均。多头让不同的头关注不同的东西（一个看前一个字，\n"
          "一个看句首……）。实现上只是 reshape：(B, T, C) -> (B, H, T, C/H)，批量矩阵乘法\n"
          "一次算完所有头。")
    rng = np.random.default_rng(2)
    B, T, C, H = 2, 6, 8, 2
    q, k, v = (tg.tensor(rng.standard_normal((B, T, C))) for _ in range(3))

    def heads(x):
        return x.reshape(B, T, H, C // H).transpose(1, 2)

    together, _ = attention(heads(q), heads(k), heads(v))
    together = together.transpose(1, 2).reshape(B, T, C)
    hs = C // H
    one_by_one = tg.cat([attention(q[:, :, h * hs:(h + 1) * hs], k[:, :, h * hs:(h + 1) * hs],
                                   v[:, :, h * hs:(h + 1) * hs])[0] for h in range(H)], dim=-1)
    show("together.shape", together.shape)
    check(np.allclose(together.numpy(), one_by_one.numpy()), "reshape 一次算所有头 == 逐个头算再拼接")


def residual_connections(depth):
    section("5. 残差连接：x + f(x) 让梯度有一条直通的路")
    print(f"把 {depth} 层小变换叠起来，比较输入处的梯度大小。没有残差时梯度是 {depth} 个\n"
          "雅可比矩阵连乘，很容易缩到几乎为 0；有残差时每层的雅可比是 I + f'，恒等的那一项\n"
          "保证梯度能原样流回去。")
    rng = np.random.default_rng(3)
    C = 16
    weights = [tg.tensor(rng.standard_normal((C, C)) * 0.5 / math.sqrt(C)) for _ in range(depth)]
    norms = {}
    for name, residual in (("没有残差", False), ("有残差", True)):
        x = tg.tensor(rng.standard_normal((4, C)), requires_grad=True)
        h = x
        for W in weights:
            f = (h @ W).tanh()
            h = h + f if residual else f
        h.sum().backward()
        norms[name] = float(np.linalg.norm(x.grad.numpy()))
        print(f"  {name}：输入处梯度的范数 {norms[name]:.3e}")
    check(norms["有残差"] > 1e3 * norms["没有残差"], f"{depth} 层后，有残差的梯度大 1000 倍以上")


def attention_map(path):
    section("6. 一张注意力图：手工构造一个\"看前一个字\"的头")
    print("位置 t 的查询向量指向位置 t-1 的键向量（用位置的独热编码构造），\n"
          "于是权重矩阵的大部分质量落在对角线下方一格：这正是训练好的 GPT 里常见的\n"
          "\"前一个 token\"头。")
    T = 8
    eye = np.eye(T)
    k = eye * 6.0                          # 位置 j 的键：第 j 个独热方向
    q = np.roll(eye, -1, axis=1) * 6.0     # 位置 t 的查询：第 t-1 个独热方向
    q[0] = eye[0] * 6.0                    # 位置 0 没有前一个字，只能看自己
    mask = np.tril(np.ones((T, T), dtype=bool))
    _, w = attention(tg.tensor(q), tg.tensor(k), tg.tensor(q), tg.tensor(mask))
    w = w.numpy()
    previous = np.array([w[t, t - 1] for t in range(1, T)])
    show("每个位置给前一个位置的权重", previous)
    check(previous.min() > 0.9, "每个位置都把 90% 以上的注意力给了前一个位置")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(w, cmap="viridis", vmin=0, vmax=1)
    ax.set_xlabel("key position (attended to)")
    ax.set_ylabel("query position")
    ax.set_title("a hand-built 'previous token' head")
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"注意力图：{path}")


def agrees_with_the_library():
    section("7. 与库里的实现核对")
    rng = np.random.default_rng(4)
    q, k, v = (tg.tensor(rng.standard_normal((2, 3, 5, 4)), requires_grad=True)
               for _ in range(3))
    mine, _ = attention(q, k, v, tg.tensor(np.tril(np.ones((5, 5), dtype=bool))))
    lib = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    check(np.allclose(mine.detach().numpy(), lib.detach().numpy()),
          "手写注意力 == F.scaled_dot_product_attention(is_causal=True)（融合的 Numba 内核）")
    g_mine = tg.autograd.grad(mine.sum(), [q, k, v])
    g_lib = tg.autograd.grad(lib.sum(), [q, k, v])
    check(all(np.allclose(a.numpy(), b.numpy()) for a, b in zip(g_mine, g_lib)),
          "对 q、k、v 的梯度也一致")
    _ = tg.manual_seed(0)
    mha = nn.MultiheadAttention(embed_dim=8, num_heads=2, batch_first=True)
    x = tg.randn(1, 5, 8)
    out, weights = mha(x, x, x)
    show("nn.MultiheadAttention 的输出形状与平均权重形状", (out.shape, weights.shape))
    check(np.allclose(weights.detach().numpy().sum(-1), 1, atol=1e-6),
          "nn.MultiheadAttention 返回的权重每行和为 1")


if __name__ == "__main__":
    main()

"""第 12 课：从 GPT 里采样 —— 贪心、温度、top-k、top-p，以及 KV 缓存

在仓库根目录运行：

    python lessons/12_generation.py            # 完整版（先训练一两分钟）
    python lessons/12_generation.py --quick    # 精简版（冒烟测试用）

模型每一步给出下一个 token 的 logits；怎样从中挑出一个 token，决定了文字的样子：

  贪心（temperature=0）：永远挑概率最大的，确定但容易原地打转；
  温度 T：logits / T 再 softmax。T < 1 更保守，T > 1 更随机；
  top-k：只在概率最大的 k 个里抽；
  top-p（nucleus）：只在"累计概率刚达到 p"的最小集合里抽。

然后测 KV 缓存的加速：已经算过的键和值存起来，每步只算新 token。
最后看为什么采样前必须检查概率是有限数。
"""
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh.datasets.text import TextBlocks, default_corpus  # noqa: E402
from tinygrad_zh.gpt import learning_rate  # noqa: E402
from tinygrad_zh.models.gpt import GPT, GPTConfig  # noqa: E402
from tinygrad_zh.tokenizers import CharTokenizer  # noqa: E402
from common import check, indent, section  # noqa: E402  (lessons/common.py)

PROMPT = "ROMEO:\n"


def main():
    parser = argparse.ArgumentParser(description="第 12 课：从 GPT 里采样")
    parser.add_argument("--quick", action="store_true", help="少训练几步（冒烟测试用）")
    args = parser.parse_args()
    length = 30 if args.quick else 60  # tokens per sample

    text = default_corpus()
    tokenizer = CharTokenizer(text)
    model = quick_pretrain(tokenizer, text, steps=40 if args.quick else 1500,
                           n_embd=32 if args.quick else 64)
    prompt = tg.tensor([tokenizer.encode(PROMPT)])
    greedy(model, tokenizer, prompt, length)
    temperature(model, tokenizer, prompt, length)
    top_k_and_top_p(model, tokenizer, prompt, length)
    # 上下文最多 block_size 个 token：提示加上新生成的正好填满它
    kv_cache(model, prompt, new_tokens=40 if args.quick else 64 - prompt.shape[1])
    finite_probabilities(model, prompt)
    print("\n第 12 课全部检查通过。命令行版本：python -m tinygrad_zh.gpt demo")


def quick_pretrain(tokenizer, text, steps, n_embd):
    section("0. 先训练一个小 GPT（和第 11 课一样的循环）")
    tg.manual_seed(0)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4,
                       n_embd=n_embd)
    model = GPT(config)
    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=5e-3)
    blocks = TextBlocks(np.array(tokenizer.encode(text)), config.block_size)
    rng = np.random.default_rng(0)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, 5e-3, 5e-4, 10, steps)
        _, loss = model(*blocks.sample(16, rng))
        loss.backward()
        tg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    print(f"{steps} 步之后的训练损失 {loss.item():.3f}（均匀猜测是 {math.log(config.vocab_size):.3f}）")
    return model


def greedy(model, tokenizer, prompt, length):
    section("1. 贪心：temperature=0，每步取 argmax")
    out = model.generate(prompt, length, temperature=0)
    print(indent(tokenizer.decode(out[0].tolist())))
    again = model.generate(prompt, length, temperature=0)
    check(out.tolist() == again.tolist(), "贪心解码是确定的：两次结果完全相同")
    steps = list(model.stream(prompt, 10, temperature=0))
    check(all(int(t.item()) == int(l.numpy().argmax()) for t, l in steps),
          "每一步选的都是 logits 最大的那个 token")


def temperature(model, tokenizer, prompt, length):
    section("2. 温度：logits / T 再 softmax")
    logits, _ = model(prompt)
    last = logits.detach().numpy()[0, -1].astype(np.float64)
    entropies = []
    for T in (0.5, 1.0, 1.5):
        p = np.exp((last - last.max()) / T)
        p /= p.sum()
        entropies.append(float(-(p * np.log(p + 1e-300)).sum()))
        sample = model.generate(prompt, length, temperature=T, generator=1)
        print(f"T = {T}：下一个字分布的熵 {entropies[-1]:.3f} nat，最大概率 {p.max():.3f}")
        print(indent(tokenizer.decode(sample[0].tolist())))
    check(entropies[0] < entropies[1] < entropies[2], "温度越高，分布越平（熵越大）")


def top_k_and_top_p(model, tokenizer, prompt, length):
    section("3. top-k 与 top-p：把不太可能的 token 直接排除")
    k, p = 5, 0.9
    ok_k, ok_p, kept = True, True, []
    for token, logits in model.stream(prompt, length, top_k=k, generator=2):
        ok_k &= int(token.item()) in np.argsort(logits.numpy()[0])[-k:]
    for token, logits in model.stream(prompt, length, top_p=p, generator=3):
        probs = np.exp(logits.numpy()[0] - logits.numpy()[0].max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        n_kept = int(np.searchsorted(np.cumsum(probs[order]), p) + 1)  # nucleus size
        kept.append(n_kept)
        ok_p &= int(token.item()) in order[:n_kept]
    print(f"top-k={k}：每步只在 5 个候选里抽。top-p={p}：每步的候选数平均 {np.mean(kept):.1f}，"
          f"最少 {min(kept)}，最多 {max(kept)} —— 模型有把握时候选少，没把握时候选多。")
    sample = model.generate(prompt, length, top_p=p, temperature=0.8, generator=4)
    print(indent(tokenizer.decode(sample[0].tolist())))
    check(ok_k, f"top-k={k} 抽到的每个 token 都在当步概率最大的 {k} 个之中")
    check(ok_p, f"top-p={p} 抽到的每个 token 都在当步的 nucleus 之中")


def kv_cache(model, prompt, new_tokens):
    section("4. KV 缓存：每步只算新 token")
    print("没有缓存时，第 t 步要把前面 t 个 token 全部重新过一遍模型；有缓存时，\n"
          "每层的键 K 和值 V 存起来，新 token 只需算自己的 q、k、v，再和缓存做注意力。\n"
          "（上下文超过 block_size 之后，学到的绝对位置整体要平移，缓存就用不上了：\n"
          "那时每步重算最后 block_size 个 token，和不用缓存完全一样。）")
    # 数一数模型一共处理了多少个位置：在 token 嵌入层上挂一个钩子，记下每次输入的长度
    positions = []
    hook = model.wte.register_forward_pre_hook(lambda module, args: positions.append(
        args[0].shape[1]))
    results = {}
    for use_cache in (False, True):
        positions.clear()
        best = math.inf
        for _ in range(3):  # 取三次中最快的一次：机器上可能还有别的程序在跑
            started = time.perf_counter()
            out = model.generate(prompt, new_tokens, generator=5, use_cache=use_cache)
            best = min(best, time.perf_counter() - started)
        results[use_cache] = (best, out, sum(positions) // 3)
    hook.remove()
    (t_plain, out_plain, n_plain), (t_cached, out_cached, n_cached) = results[False], results[True]
    print(f"生成 {new_tokens} 个 token：不用缓存，模型共处理 {n_plain} 个位置；用缓存，"
          f"只处理 {n_cached} 个（提示 {prompt.shape[1]} 个 + 每步 1 个），少了 "
          f"{n_plain / n_cached:.1f} 倍。")
    print(f"本机实测用时：不用缓存 {1000 * t_plain:.0f} 毫秒，用缓存 {1000 * t_cached:.0f} 毫秒，"
          f"加速 {t_plain / t_cached:.1f} 倍。小模型里每步的 Python 开销是固定的，\n"
          "所以用时的加速比计算量的减少要小；模型越大、上下文越长，缓存越划算。")
    check(out_plain.tolist() == out_cached.tolist(), "用不用缓存，生成的 token 完全相同")
    check(n_cached == prompt.shape[1] + new_tokens - 1 and n_plain > 5 * n_cached,
          "用缓存时每步只算一个新位置，总计算的位置数少了 5 倍以上")


def finite_probabilities(model, prompt):
    section("5. 为什么采样前要检查概率是有限数")
    logits = np.array([1.0, np.nan, 3.0])
    p = np.exp(logits - np.nanmax(logits))
    p /= p.sum()
    print(f"logits 里只要有一个 NaN，softmax 之后全是 NaN：{p}")
    print(f"np.argmax 遇到 NaN 返回 NaN 的位置 {int(np.argmax(p))}：一个毫无意义的 token，"
          "却不报任何错。")
    broken = GPT(model.config)
    broken.load_state_dict(model.state_dict())
    with tg.no_grad():
        broken.h[0].mlp.c_fc.weight.data[0, 0] = np.inf   # 模拟训练发散后的权重
    try:
        with np.errstate(invalid="ignore"):  # NumPy's own warnings about the inf * 0
            broken.generate(prompt, 5)
        message = None
    except FloatingPointError as e:
        message = str(e)
    print(f"我们的 generate 在抽样前检查，给出清楚的错误：\n{indent(str(message))}")
    check(np.isnan(p).all(), "一个 NaN logit 让整个分布变成 NaN")
    check(message is not None and "non-finite logits" in message,
          "generate 拒绝从非有限的 logits 中采样")


if __name__ == "__main__":
    main()

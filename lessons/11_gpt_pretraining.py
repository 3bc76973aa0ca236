"""第 11 课：预训练一个小 GPT —— 从文字到 token，从 token 到下一个 token 的概率

在仓库根目录运行：

    python lessons/11_gpt_pretraining.py            # 完整版（几分钟）
    python lessons/11_gpt_pretraining.py --quick    # 精简版（冒烟测试用，几秒钟）

语言模型只做一件事：给定前面的 token，预测下一个 token 的概率分布。"预训练"就是在
大量文本上最小化这个预测的交叉熵。本课用包里自带的莎士比亚语料（离线可用）：

  1. 分词：字符级 tokenizer，把文字变成整数序列；和 BPE 比一比序列长度；
  2. 批次：从序列里随机截取窗口，x 是前 block_size 个 token，y 是同一窗口右移一位；
  3. 模型：GPT 的参数个数，先手算，再和 num_parameters() 核对；
  4. 训练：AdamW + 预热 + 余弦衰减，画出损失曲线；
  5. 验证损失是什么意思：和"只看字频"的一元模型（unigram）的熵比较。
"""
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
from tinygrad_zh.datasets.text import TextBlocks, default_corpus, train_val_split  # noqa: E402
from tinygrad_zh.gpt import estimate_loss, learning_rate, plot_losses  # noqa: E402
from tinygrad_zh.models.gpt import GPT, GPTConfig  # noqa: E402
from tinygrad_zh.tokenizers import BPETokenizer, CharTokenizer  # noqa: E402
from common import check, section, show  # noqa: E402  (lessons/common.py)


def main():
    parser = argparse.ArgumentParser(description="第 11 课：预训练一个小 GPT")
    parser.add_argument("--quick", action="store_true", help="小模型、少步数（冒烟测试用）")
    parser.add_argument("--out", default="lesson_output/11", help="图片输出目录")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    text = default_corpus()
    tokenizer, ids = tokenize(text, quick=args.quick)
    train_ids, val_ids = train_val_split(ids, 0.1)
    if args.quick:
        config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=4,
                           n_embd=32)
        steps, batch_size, lr = 60, 16, 5e-3
    else:
        config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=4, n_head=4,
                           n_embd=128)
        steps, batch_size, lr = 1000, 12, 1e-3
    train_blocks = TextBlocks(train_ids, config.block_size)
    val_blocks = TextBlocks(val_ids, config.block_size)
    batches(train_blocks, tokenizer)
    model = count_parameters(config)
    history = pretrain(model, train_blocks, val_blocks, steps, batch_size, lr, out / "loss.png")
    what_val_loss_means(train_ids, history["val_loss"][-1], tokenizer.vocab_size)
    print(f"\n图片保存在：{out.resolve()}")
    print("\n第 11 课全部检查通过。下一课：从模型里采样文字（lessons/12_generation.py）")


def tokenize(text, quick):
    section("1. 分词：文字 -> 整数")
    tokenizer = CharTokenizer(text)
    ids = np.array(tokenizer.encode(text))
    print(f"语料共 {len(text):,} 个字符，其中不同的字符 {tokenizer.vocab_size} 个：")
    print(repr(tokenizer.chars))
    show('tokenizer.encode("First Citizen")', tokenizer.encode("First Citizen"))
    check(tokenizer.decode(ids) == text, "decode(encode(语料)) 与原文完全相同")
    # BPE：把常见的字符组合并成一个 token，序列变短，词表变大
    sample = text[:30_000] if quick else text[:200_000]
    bpe = BPETokenizer.train(sample, vocab_size=512)
    ratio = len(sample) / len(bpe.encode(sample))
    print(f"对比：在前 {len(sample):,} 个字符上训练 512 个 token 的 BPE，平均每个 token "
          f"{ratio:.2f} 个字符；前几个合并：{[bpe.decode([256 + i]) for i in range(5)]}")
    check(ratio > 1.5, "BPE 把序列缩短到原来的 2/3 以下（代价是词表从几十变成 512）")
    return tokenizer, ids


def batches(blocks, tokenizer):
    section("2. 一个批次：x 和右移一位的 y")
    x, y = blocks.sample(2, np.random.default_rng(0))
    print("窗口长 block_size + 1，x 取前 block_size 个，y 取后 block_size 个。"
          "于是 y[t] 就是 x[0..t] 之后的下一个字：一个窗口同时给出 block_size 道预测题。")
    show("x[0] 解码", repr(tokenizer.decode(x[0].tolist())))
    show("y[0] 解码", repr(tokenizer.decode(y[0].tolist())))
    check(np.array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1]), "y 就是 x 右移一位")


def count_parameters(config):
    section("3. 参数个数：手算，再核对")
    V, T, L, C = config.vocab_size, config.block_size, config.n_layer, config.n_embd
    per_block = 2 * C + 3 * C * C + C * C + 4 * C * C + 4 * C * C
    print(f"V={V}, block_size={T}, n_layer={L}, n_embd={C}，没有偏置（bias=False）：")
    print(f"  token 嵌入 wte        V*C       = {V * C:,}   （与输出层共享：权重绑定）")
    print(f"  位置嵌入 wpe          T*C       = {T * C:,}")
    print(f"  每个 Block：两个 LayerNorm 2C = {2 * C}，注意力 qkv 3C*C = {3 * C * C:,}，"
          f"输出投影 C*C = {C * C:,}，MLP 4C*C + 4C*C = {8 * C * C:,}")
    print(f"             合计 12C*C + 2C = {per_block:,}，共 {L} 个 = {L * per_block:,}")
    print(f"  最后的 LayerNorm       C         = {C}")
    by_hand = V * C + T * C + L * per_block + C
    tg.manual_seed(1337)
    model = GPT(config)
    print(f"  总计 {by_hand:,}；model.num_parameters() = {model.num_parameters():,}")
    check(by_hand == model.num_parameters(), "手算的参数个数与 num_parameters() 一致")
    return model


def pretrain(model, train_blocks, val_blocks, steps, batch_size, lr, path):
    section("4. 预训练：AdamW、预热 + 余弦衰减、梯度裁剪")
    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=lr, betas=(0.9, 0.99))
    rng = np.random.default_rng(0)
    history = {"step": [], "loss": [], "eval_step": [], "train_loss": [], "val_loss": []}
    eval_every, warmup = max(steps // 4, 1), max(steps // 20, 1)
    start_val = estimate_loss(model, val_blocks, batch_size, 10)
    print(f"训练前验证损失 {start_val:.3f}，均匀猜测的损失 ln(V) = "
          f"{math.log(model.config.vocab_size):.3f}")
    started = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, lr, lr / 10, warmup, steps)
        x, y = train_blocks.sample(batch_size, rng)
        _, loss = model(x, y)
        loss.backward()
        tg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        history["step"].append(step + 1)
        history["loss"].append(loss.item())
        if (step + 1) % eval_every == 0:
            history["eval_step"].append(step + 1)
            history["train_loss"].append(estimate_loss(model, train_blocks, batch_size, 5))
            history["val_loss"].append(estimate_loss(model, val_blocks, batch_size, 5))
            print(f"  第 {step + 1:4d} 步：训练损失 {history['train_loss'][-1]:.3f}，"
                  f"验证损失 {history['val_loss'][-1]:.3f}")
    seconds = time.perf_counter() - started
    print(f"{steps} 步用时 {seconds:.1f} 秒（每步 {1000 * seconds / steps:.0f} 毫秒）")
    plot_losses(history, path)
    print(f"损失曲线：{path}")
    check(history["val_loss"][-1] < start_val - 0.5, "训练让验证损失下降了 0.5 以上")
    return history


def what_val_loss_means(train_ids, val_loss, vocab_size):
    section("5. 验证损失是什么意思")
    counts = np.bincount(train_ids, minlength=vocab_size)
    p = counts[counts > 0] / counts.sum()
    unigram = float(-(p * np.log(p)).sum())
    print("损失是正确的下一个字的平均负对数概率（单位：nat）。exp(损失) 叫困惑度：\n"
          "模型平均在多少个字之间犹豫。三个参照：")
    print(f"  均匀猜测 ln(V)                    = {math.log(vocab_size):.3f}  "
          f"（困惑度 {vocab_size}）")
    print(f"  一元模型：只按字频猜，它的熵      = {unigram:.3f}  "
          f"（困惑度 {math.exp(unigram):.1f}）")
    print(f"  我们的 GPT 的验证损失             = {val_loss:.3f}  "
          f"（困惑度 {math.exp(val_loss):.1f}）")
    print("比一元模型低的部分，就是模型从上下文里学到的东西：字频之外的规律。")
    check(unigram < math.log(vocab_size), "一元模型的熵低于 ln(V)：字频本身就有信息")
    check(val_loss < unigram, "GPT 的验证损失低于一元模型的熵：它用上了上下文")


if __name__ == "__main__":
    main()

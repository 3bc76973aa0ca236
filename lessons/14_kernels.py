"""第 14 课：为什么框架需要 kernel —— 同一个计算的三种写法

在仓库根目录运行：

    python lessons/14_kernels.py                  # 完整版，几十秒（第一次要编译 Numba kernel）
    python lessons/14_kernels.py --quick          # 精简版（冒烟测试用）
    python lessons/14_kernels.py --out 输出目录    # 图片存到别处（默认 lesson_output/14/）

前面的课里，每个算子都是几行 NumPy：简单、正确，但不总是快。这一课回答三个问题：

  1. 慢在哪里？—— Python 的逐元素开销，以及 NumPy 一次只做一步带来的内存读写。
  2. kernel 是什么？—— 把一串运算"融合"成一次遍历，每个元素只读写一次内存。
  3. 怎么保证快的版本也是对的？—— 每个 kernel 都和朴素的 NumPy 参考实现对照测试。

tinygrad_zh.kernels 里每个计算都写了三遍：NumPy 参考（kernels/reference.py）、
Numba 编译的 CPU 版（kernels/numba_cpu/）、numba.cuda 写的 GPU 版
（kernels/cuda_gpu/，没有 GPU 时在 Numba 的 CUDA 模拟器里运行）。
kernels/dispatch.py 是唯一决定"用哪一个"的地方。
"""
import argparse
import math
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

# 没有 GPU 时让 numba.cuda 的 kernel 在模拟器里运行：必须在 Numba 被导入之前设置。
try:
    import cupy
    HAVE_GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # 没装 CuPy、没有驱动或没有显卡，都算"没有 GPU"
    HAVE_GPU = False
if not HAVE_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
import tinygrad_zh.kernels as K  # noqa: E402
from tinygrad_zh.kernels import reference  # noqa: E402
from tinygrad_zh.ops.attention import scaled_dot_product_attention, sdpa_reference  # noqa: E402
from common import check, section  # noqa: E402  (lessons/common.py)

ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=True,
            amsgrad=False, maximize=False)


def main():
    parser = argparse.ArgumentParser(description="第 14 课：为什么框架需要 kernel")
    parser.add_argument("--quick", action="store_true", help="缩小计算量（冒烟测试用）")
    parser.add_argument("--out", default="lesson_output/14", help="图片输出目录")
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    python_overhead(args.quick)
    memory_traffic(args.quick)
    adam_three_ways()
    online_softmax_by_hand()
    attention_memory(args.quick, out_dir)
    dispatch_switch()
    benchmark_table(args.quick)
    print(f"\n图片保存在 {out_dir}/")
    print("\n第 14 课全部检查通过。")


# ---------------------------------------------------------------- 1. Python 的开销
def python_overhead(quick):
    section("1. 慢在哪里（一）：Python 逐元素的开销")
    from numba import njit

    @njit(cache=True)
    def relu_loop(x, out):
        for i in range(x.shape[0]):
            out[i] = x[i] if x[i] > 0 else 0.0

    n = 20_000 if quick else 200_000
    x = np.random.default_rng(0).standard_normal(n)
    out = np.empty_like(x)
    relu_loop(x, out)  # 第一次调用会编译（或从缓存读取），不计时

    def python_relu():
        return [v if v > 0 else 0.0 for v in x.tolist()]

    times = {
        "纯 Python 循环": best_time(python_relu),
        "NumPy np.maximum": best_time(lambda: np.maximum(x, 0)),
        "Numba 编译的循环": best_time(lambda: relu_loop(x, out)),
    }
    print(f"对 {n} 个数做 relu，每个元素平均用时：")
    for name, t in times.items():
        print(f"  {name:<18} {t / n * 1e9:8.2f} 纳秒/元素")
    print("纯 Python 每个元素都要经过解释器：取对象、比较、新建对象。NumPy 和 Numba 都把")
    print("循环交给编译好的机器码，所以快上百倍。一个框架的每个算子都必须落在这样的代码上。")
    check(np.array_equal(out, np.maximum(x, 0)), "Numba 循环和 NumPy 的 relu 结果完全相同")


# ---------------------------------------------------------------- 2. 内存读写
def memory_traffic(quick):
    section("2. 慢在哪里（二）：内存读写")
    print("Adam 的一步，对每个参数 p（梯度 g，一阶矩 m，二阶矩 v）要做：")
    print("  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g*g;  p = p - lr * m_hat / (sqrt(v_hat) + eps)")
    print("NumPy 一次只做一个运算：每个 *=、+=、sqrt 都把整个数组从内存读一遍、写一遍。")
    # 数一数 kernels/reference.py 里的 adam_step 对整个数组做了几次"遍历"：
    # p*=, m*=, m+=, g*g, *=, v*=, v+=, sqrt, /=, +=, divide, *=, p-=, 再加 g*(1-b1)
    passes_reference = 14
    bytes_reference = passes_reference * 2 * 4   # 每次遍历大约读一次、写一次，float32 4 字节
    bytes_fused = 7 * 4                          # 读 p g m v，写 p m v
    print(f"参考实现：约 {passes_reference} 次遍历，每个参数约 {bytes_reference} 字节的内存读写；")
    print(f"融合 kernel：一次遍历，每个参数 {bytes_fused} 字节（读 p、g、m、v，写 p、m、v）。")
    print(f"内存读写少了约 {bytes_reference / bytes_fused:.1f} 倍。Adam 的计算量很小，")
    print("瓶颈是内存带宽，所以少读写几乎就等于快。")
    n = 200_000 if quick else 4_000_000
    t_ref, t_fused = time_adam(n)
    print(f"本次实测（{n} 个 float32 参数，一步）：参考 {t_ref * 1e3:.2f} 毫秒，"
          f"Numba 融合 {t_fused * 1e3:.2f} 毫秒，用时之比 {t_ref / t_fused:.1f}"
          "（机器被其他进程占用时数字会有波动）。")
    check(bytes_fused < bytes_reference, "融合 kernel 每个参数的内存读写字节数少于参考实现")


def time_adam(n):
    from tinygrad_zh.kernels.numba_cpu import adam as numba_adam
    rng = np.random.default_rng(1)
    p, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    times = []
    for step_fn in (reference.adam_step, numba_adam.adam_step):
        times.append(best_time(lambda f=step_fn: f([p], [g], [m], [v], None, step=3, **ADAM)))
    return times


# ---------------------------------------------------------------- 3. 同一个 Adam，三种写法
def adam_three_ways():
    section("3. 同一个 Adam 步，三种写法，结果相同")
    from tinygrad_zh.kernels.cuda_gpu import adam as cuda_adam
    from tinygrad_zh.kernels.numba_cpu import adam as numba_adam
    where = "GPU" if HAVE_GPU else "Numba 的 CUDA 模拟器（本机没有 GPU）"
    rng = np.random.default_rng(2)
    start = [rng.standard_normal(37).astype(np.float32) for _ in range(2)]
    results = {}
    for name, step_fn in [("NumPy 参考", reference.adam_step),
                          ("Numba CPU", numba_adam.adam_step),
                          (f"CUDA kernel，运行在 {where}", cuda_adam.adam_step)]:
        p, g = start[0].copy(), start[1].copy()
        m, v = np.zeros_like(p), np.zeros_like(p)
        if HAVE_GPU and name.startswith("CUDA"):
            p, g, m, v = (cupy.asarray(a) for a in (p, g, m, v))
        for step in (1, 2, 3):
            step_fn([p], [g], [m], [v], None, step=step, **ADAM)
        results[name] = cupy.asnumpy(p) if HAVE_GPU and name.startswith("CUDA") else p
        print(f"  {name:<36} p[:3] = {np.array2string(results[name][:3], precision=6)}")
    first = results["NumPy 参考"]
    diff = max(float(np.abs(r - first).max()) for r in results.values())
    print(f"三种写法之间最大的差别：{diff:.2e}（float32 的舍入误差量级）")
    check(diff < 1e-6, "三种写法的 Adam 三步之后结果一致（误差 < 1e-6）")


# ---------------------------------------------------------------- 4. online softmax
def online_softmax_by_hand():
    section("4. online softmax：不存整行，也能算出 softmax")
    scores = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 2.0])
    values = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    print(f"一行注意力分数 s = {scores.tolist()}，对应的值 v = {values.tolist()}")
    print("目标：out = sum_j softmax(s)_j v_j。普通做法要先拿到整行 s 才能求最大值和总和。")
    print("online softmax 每次只看一小块（这里每块 2 个），只记三个数：")
    print("  m = 目前见过的最大分数，l = sum exp(s_j - m)，acc = sum exp(s_j - m) v_j")
    print("来了新的一块、最大值从 m 变成 m' 时，之前的累加都乘上 exp(m - m') 修正。\n")
    m, l, acc = -math.inf, 0.0, 0.0
    for start in range(0, len(scores), 2):
        block, block_v = scores[start:start + 2], values[start:start + 2]
        new_m = max(m, block.max())
        rescale = math.exp(m - new_m)      # 第一块时 exp(-inf) = 0
        p = np.exp(block - new_m)
        l = l * rescale + p.sum()
        acc = acc * rescale + (p * block_v).sum()
        print(f"  块 {block.tolist()}: m {m:>4} -> {new_m}，修正系数 exp(m - m') = {rescale:.4f}，"
              f"l = {l:.4f}，acc = {acc:.4f}")
        m = new_m
    online = acc / l
    weights = np.exp(scores - scores.max())
    direct = (weights / weights.sum() * values).sum()
    print(f"\nonline 结果 acc / l = {online:.10f}")
    print(f"直接计算 softmax(s) . v = {direct:.10f}")
    print(f"另外保存 lse = m + log(l) = {m + math.log(l):.6f}：反向传播时用 p_j = exp(s_j - lse)")
    print("就能逐块重新算出概率，不需要把整个 L x S 的概率矩阵存下来。")
    check(abs(online - direct) < 1e-12, "逐块的 online softmax 与直接计算的结果一致")
    lse = m + math.log(l)
    check(np.allclose(np.exp(scores - lse), weights / weights.sum()),
          "用保存的 lse 能重新算出每个概率")


# ---------------------------------------------------------------- 5. 注意力的内存
def attention_memory(quick, out_dir):
    section("5. 融合注意力：内存随序列长度线性增长，而不是平方")
    lengths = [32, 64, 128] if quick else [64, 128, 256, 512]
    heads, dim = 8, 32
    peaks = {"组合版 sdpa_reference": [], "融合版 scaled_dot_product_attention": []}
    for t in lengths:
        rng = np.random.default_rng(t)
        q, k, v = (tg.tensor(rng.standard_normal((heads, t, dim), dtype=np.float32),
                             requires_grad=True) for _ in range(3))
        for name, fn in zip(peaks, (sdpa_reference, scaled_dot_product_attention)):
            fn(q, k, v, is_causal=True).sum().backward()  # 预热（编译），不计
            tracemalloc.start()
            fn(q, k, v, is_causal=True).sum().backward()
            peaks[name].append(tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
    print(f"{heads} 个头、head_dim={dim}，一次前向 + 反向期间 NumPy 分配内存的峰值（MB）：")
    print("  T      " + "  ".join(f"{t:>7}" for t in lengths))
    for name, values in peaks.items():
        print(f"  {name}: " + "  ".join(f"{x:7.2f}" for x in values))
    growth = {name: values[-1] / values[0] for name, values in peaks.items()}
    factor = lengths[-1] // lengths[0]
    print(f"T 增大 {factor} 倍：组合版的峰值增大 {growth['组合版 sdpa_reference']:.1f} 倍"
          f"（要存 T x T 的分数和概率矩阵），融合版增大 "
          f"{growth['融合版 scaled_dot_product_attention']:.1f} 倍（只存输出和每行一个 lse）。")
    check(growth["融合版 scaled_dot_product_attention"] < growth["组合版 sdpa_reference"],
          "序列变长时，融合注意力的内存峰值增长得比组合版慢")
    plot_memory(lengths, peaks, out_dir / "attention_memory.png")


def plot_memory(lengths, peaks, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in zip(("composite (sdpa_reference)", "fused (Numba kernel)"),
                             peaks.values()):
        ax.plot(lengths, values, marker="o", label=label)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("peak memory during fwd+bwd (MB)")
    ax.set_title("attention memory: T^2 vs T")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- 6. 调度开关
def dispatch_switch():
    section("6. 调度：kernels/dispatch.py 决定用哪个实现")
    print(f"  CPU 上的 Adam 用：        {K.chosen('adam_step', 'cpu')}")
    print(f"  CPU 上的注意力前向用：    {K.chosen('attention_forward', 'cpu')}")
    print(f"  GPU 上的注意力前向用：    {K.chosen('attention_forward', 'cuda:0')}")
    with K.use_reference():
        print(f"  在 use_reference() 里：   {K.chosen('attention_forward', 'cpu')}")
        forced = K.chosen("adam_step", "cpu")
    print("也可以在运行前设置环境变量 TINYGRAD_ZH_KERNELS=reference，效果相同。")
    print("如果某个 Numba kernel 在你的机器上编译失败，会给出一次警告，然后改用参考实现。")
    check(forced == "tinygrad_zh.kernels.reference", "use_reference() 里一律使用 NumPy 参考实现")
    rng = np.random.default_rng(3)
    q, k, v = (tg.tensor(rng.standard_normal((2, 7, 4))) for _ in range(3))
    fast = scaled_dot_product_attention(q, k, v, is_causal=True).numpy()
    with K.use_reference():
        slow = scaled_dot_product_attention(q, k, v, is_causal=True).numpy()
    check(np.allclose(fast, slow, atol=1e-6), "快的 kernel 和参考实现给出相同的注意力输出")


# ---------------------------------------------------------------- 7. 小基准
def benchmark_table(quick):
    section("7. 一张小小的基准表（本次运行实测）")
    t = 64 if quick else 256
    rng = np.random.default_rng(4)
    q, k, v = (tg.tensor(rng.standard_normal((4, t, 32), dtype=np.float32), requires_grad=True)
               for _ in range(3))

    def attention_step(fn):
        def step():
            q.grad = k.grad = v.grad = None
            fn(q, k, v, is_causal=True).sum().backward()
        return step

    rows = [("因果注意力 前向+反向，T=%d，4 个头" % t,
             best_time(attention_step(sdpa_reference)),
             best_time(attention_step(scaled_dot_product_attention)))]
    n = 200_000 if quick else 4_000_000
    rows.append((f"Adam 一步，{n} 个参数",) + tuple(time_adam(n)))
    print(f"  {'任务':<34}{'NumPy 参考(毫秒)':>16}{'融合 kernel(毫秒)':>18}{'用时之比':>8}")
    for name, slow, fast in rows:
        print(f"  {name:<34}{slow * 1e3:>16.2f}{fast * 1e3:>18.2f}{slow / fast:>7.1f}x")
    print("完整的对比（含 PyTorch 和 GPU 列）见 benchmarks/adam.py、attention.py、matmul.py。")
    check(all(slow > 0 and fast > 0 for _, slow, fast in rows), "基准表里的每个时间都已实测")


def best_time(fn, repeat=7, min_seconds=0.01):
    """fn() 每次调用的最短用时（秒）。

    每次计时连续调用多遍（至少 min_seconds），避免计时器精度的影响；机器上的其他
    进程只会让时间变长，所以取 repeat 次里的最小值，最接近 fn 本身的速度。
    """
    fn()
    start = time.perf_counter()
    fn()
    loops = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - start) / loops)
    return min(times)


if __name__ == "__main__":
    main()

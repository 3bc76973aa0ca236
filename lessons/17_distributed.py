"""第 17 课：数据并行 —— 多个进程一起训练同一个模型

在仓库根目录运行（两种方式都可以）：

    python lessons/17_distributed.py                        # 一个进程（world size 1）
    mpiexec -n 2 python lessons/17_distributed.py           # 两个进程，真正的数据并行
    mpiexec -n 2 python lessons/17_distributed.py --quick   # 精简版

mpiexec 来自 `pip install 'tinygrad_zh[dist]'`（mpi4py + MPICH）。没有它，本课
照样能以单进程运行：分布式的每个集合通信在"只有一个进程"时都是原样返回。

一个进程算不动了怎么办？最常用的办法是数据并行：每个进程（rank）都有一份完整的
模型，各自算一部分样本的梯度，然后把梯度"平均"一下，大家走同一步。本课回答：

  1. 为什么是平均梯度？（把一个批次拆成两半的数学，并用数字核对）
  2. allreduce 做了什么、代价多大？（环形 allreduce：每个进程发送 2(n-1)/n 倍数据）
  3. 桶（bucket）和重叠（overlap）：DistributedDataParallel 怎样少发消息、边算边发；
  4. 真正训练几步：各进程参数完全一致，并且等于单进程在整个批次上训练的结果；
  5. （两个以上进程时）实测带宽，估算通信在什么时候成为瓶颈。

每个进程都跑同样的代码、做同样的检查；只有 rank 0 打印。任何一个进程的检查
失败，所有进程一起退出（否则其它进程会在下一次通信里永远等下去）。
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tinygrad_zh as tg  # noqa: E402
import tinygrad_zh.distributed as dist  # noqa: E402
from tinygrad_zh import nn  # noqa: E402
import common  # noqa: E402  (lessons/common.py)


def main():
    parser = argparse.ArgumentParser(description="第 17 课：数据并行")
    parser.add_argument("--quick", action="store_true", help="小模型、少几步（冒烟测试用）")
    args = parser.parse_args()
    dist.init_process_group()
    say(f"本次运行：world size = {dist.get_world_size()}（后端：{dist.get_backend()}），"
        f"每个进程都在执行同一个脚本，这里是 rank 0 的输出。")

    why_average()
    ring_allreduce_lesson(quick=args.quick)
    buckets_and_overlap()
    train_data_parallel(steps=3 if args.quick else 10)
    if dist.get_world_size() > 1:
        measure_and_estimate(quick=args.quick)
    else:
        say("\n（单进程运行，跳过第 5 节的实测。用 mpiexec -n 2 运行本课即可看到。）")
    say("\n第 17 课全部检查通过。")


# ------------------------------------------------------------------ 只让 rank 0 说话
def say(*args):
    if dist.get_rank() == 0:
        print(*args, flush=True)


def section(title):
    if dist.get_rank() == 0:
        common.section(title)


def check(ok, claim):
    """所有进程一起判断：任何一个进程不成立，所有进程都以非零状态退出。"""
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, bool(ok))
    if dist.get_rank() == 0:
        common.check(all(everyone), claim)
    elif not all(everyone):
        sys.exit(1)


# ------------------------------------------------------------------ 一个两层的小网络
class MLP(nn.Module):
    """Linear(d_in, hidden) -> tanh -> Linear(hidden, d_out)，参数由 seed 决定。

    DistributedDataParallel 只用到模型的三样东西：named_parameters()、
    named_buffers() 和调用 model(x)；nn.Module 都有。
    """

    def __init__(self, seed, d_in=4, hidden=8, d_out=2):
        super().__init__()
        tg.manual_seed(seed)
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.fc2(self.fc1(x).tanh())


def mse(model, x, y):
    return ((model(tg.tensor(x)) - tg.tensor(y)) ** 2).mean()


def grads_of(model):
    return {n: p.grad.numpy().copy() for n, p in model.named_parameters()}


def max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def make_batch(seed, n, d_in=4, d_out=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in)).astype(np.float32)
    y = np.stack([np.sin(x[:, 0]) + x[:, 1], x[:, 2] * x[:, 3]], axis=1)[:, :d_out]
    return x, y.astype(np.float32)


# ------------------------------------------------------------------ 1. 为什么平均
def why_average():
    section("1. 把一个批次拆成两半：梯度为什么取平均")
    say("损失是一批 N 个样本的平均：L = (1/N) * (l_1 + ... + l_N)。\n"
        "把批次拆成两半 A、B（各 N/2 个）：L = (1/2) * (L_A + L_B)，其中 L_A、L_B 是两半各自的\n"
        "平均损失。求导是线性的，所以 dL/dw = (1/2) * (dL_A/dw + dL_B/dw)：\n"
        "两个进程各算半个批次的梯度，再取平均，就等于一个进程算整个批次的梯度。")
    x, y = make_batch(seed=0, n=8)
    full = MLP(seed=1)
    mse(full, x, y).backward()
    halves = []
    for part in (slice(0, 4), slice(4, 8)):
        m = MLP(seed=1)
        mse(m, x[part], y[part]).backward()
        halves.append(grads_of(m))
    averaged = {k: (halves[0][k] + halves[1][k]) / 2 for k in halves[0]}
    diff = max_diff(averaged, grads_of(full))
    say(f"整批 8 个样本的梯度 与 两半梯度的平均 最大相差 {diff:.2e}（float32 舍入误差）")
    check(diff < 1e-6, "两半梯度的平均 = 整批的梯度")

    say("\n如果两半不一样大（3 个和 5 个），简单平均就错了，要按样本数加权：")
    uneven = []
    for part in (slice(0, 3), slice(3, 8)):
        m = MLP(seed=1)
        mse(m, x[part], y[part]).backward()
        uneven.append(grads_of(m))
    plain = {k: (uneven[0][k] + uneven[1][k]) / 2 for k in uneven[0]}
    weighted = {k: (3 * uneven[0][k] + 5 * uneven[1][k]) / 8 for k in uneven[0]}
    say(f"  简单平均 与 整批梯度 相差 {max_diff(plain, grads_of(full)):.3f}；"
        f"按 3/8、5/8 加权 相差 {max_diff(weighted, grads_of(full)):.2e}")
    check(max_diff(plain, grads_of(full)) > 1e-3 > max_diff(weighted, grads_of(full)) * 1e3,
          "批次不等大时简单平均是错的，加权平均才对")
    say("所以 DistributedSampler 把数据补齐到每个进程一样多（重复开头的几个样本），\n"
        "每一步每个进程的批次一样大，简单平均就是对的。")


# ------------------------------------------------------------------ 2. 环形 allreduce
def ring_allreduce(arrays):
    """n 个"进程"排成一个环，只和右边的邻居说话。返回结果和每个进程发送的字节数。

    第一阶段 reduce-scatter：数组切成 n 块；n-1 步里，每个进程把一块传给右邻，
    右邻把它加到自己的那一块上。结束时进程 i 拥有第 (i+1) % n 块的总和。
    第二阶段 all-gather：再 n-1 步，把加好的块沿环传一圈，人人都有全部 n 块。
    """
    n = len(arrays)
    chunks = [np.array_split(a.astype(np.float64), n) for a in arrays]
    sent = [0] * n
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(n - 1):
            # 同一步里所有进程同时发送：先把要发的内容都复制出来，再一起收
            offset = -step if phase == "reduce-scatter" else 1 - step
            messages = [(i, (i + offset) % n, chunks[i][(i + offset) % n].copy())
                        for i in range(n)]
            for i, c, data in messages:
                right = (i + 1) % n
                if phase == "reduce-scatter":
                    chunks[right][c] = chunks[right][c] + data
                else:
                    chunks[right][c] = data
                sent[i] += data.nbytes
    return [np.concatenate(c) for c in chunks], sent


def ring_allreduce_lesson(quick):
    section("2. allreduce 做了什么：环形 allreduce 与它的代价")
    say("allreduce：每个进程拿出一个数组，结束时每个进程都得到所有数组的和。\n"
        "最笨的做法是都发给 rank 0、加好再发回来：rank 0 要收发 2(n-1) 份完整数据，n 越大越堵。\n"
        "环形 allreduce 让每个进程只发 2(n-1) 次、每次 1/n 份，每个进程发送的总量是\n"
        "    2(n-1)/n * size，\n"
        "n 再大也不超过 2 倍数据量：加进程时，每个进程的通信量几乎不变。")
    n_values = (2, 4) if quick else (2, 4, 8)
    fractions = []  # 模拟中每个进程发送量 / size
    for n in n_values:
        size = 8 * 1000 * n  # 字节数能被 n 整除：每块一样大
        arrays = [np.random.default_rng(r).standard_normal(size // 8) for r in range(n)]
        results, sent = ring_allreduce(arrays)
        total = np.sum(arrays, axis=0)
        exact = all(np.allclose(r, total, rtol=1e-12, atol=1e-12) for r in results)
        expected = 2 * (n - 1) / n * size
        say(f"  n = {n}：每个进程都得到总和 {exact}；每个进程发送 {sent[0]} 字节 = "
            f"{sent[0] / size:.3f} * size，公式 2(n-1)/n = {2 * (n - 1) / n:.3f}")
        check(exact and all(s == expected for s in sent),
              f"n = {n} 的模拟：结果是总和，每个进程发送 2(n-1)/n * size 字节")
        fractions.append(sent[0] / size)
    params = 124_000_000  # GPT-2 small 的参数个数
    size = params * 4
    say(f"\n举例：{params / 1e6:.0f}M 个 float32 参数（GPT-2 small），梯度 {size / 2**20:.0f} MiB。")
    say("  n      每个进程每步发送")
    for n in (2, 8, 64, 1024):
        say(f"  {n:<6} {2 * (n - 1) / n * size / 2**20:8.0f} MiB")
    check(all(a < b < 2 for a, b in zip(fractions, fractions[1:])),
          f"模拟中进程越多，每个进程发送得越多（{fractions}），但始终小于 2 * size")


# ------------------------------------------------------------------ 3. 桶与重叠
def buckets_and_overlap():
    section("3. 桶（bucket）与重叠（overlap）")
    model = MLP(seed=0)
    say(f"每次通信都有固定开销（延迟）；本课的小网络有 {len(list(model.parameters()))} 个参数张量，"
        "大模型有几百个：\n"
        "一个张量一次 allreduce 太浪费。DistributedDataParallel 把梯度装进几个扁平的\n"
        "缓冲区（桶，默认每个最多 25 MiB），一个桶一次 allreduce。\n"
        "桶按参数的逆序装：反向传播先算完最后一层，所以最后一层的桶最先装满。\n"
        "每个参数的梯度一旦最终确定（post-accumulate-grad 钩子），就复制进它的桶；\n"
        "桶一满就用非阻塞的 Iallreduce 发出去，同时反向传播继续算前面几层。")
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=40 / 2**20)  # 40 字节一个桶：演示用
    names = {id(p): n for n, p in model.named_parameters()}
    for i, bucket in enumerate(ddp._buckets):
        say(f"  桶 {i}：{[names[id(p)] for p in bucket.params]}，"
            f"{bucket.flat.numel() * 4} 字节")
    started = []
    def watch(module, args, z):
        # fc1 的输出 z 的梯度一算出来（就在 fc1 自己的反向开始之前），记下已经发出了几个桶
        z.register_hook(lambda grad: started.append(ddp._next_bucket))
    model.fc1.register_forward_hook(watch)
    x, y = make_batch(seed=dist.get_rank(), n=4)
    mse(ddp, x, y).backward()
    say(f"反向传播走到第一层（fc1）之前，已经发出了 {started[0]} 个桶的 allreduce；"
        f"backward() 返回时 {len(ddp._buckets)} 个桶全部完成，梯度已是各进程的平均。")
    check(started[0] >= 1, "第一层的反向还没开始，最后一层的桶已经在通信了")
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, grads_of(model))
    check(all(max_diff(g, everyone[0]) == 0 for g in everyone),
          "backward() 之后每个进程的梯度完全相同")


# ------------------------------------------------------------------ 4. 训练
def train_data_parallel(steps):
    section(f"4. 真正训练 {steps} 步：DistributedDataParallel + DistributedSampler")
    n, rank = dist.get_world_size(), dist.get_rank()
    say("每个进程用不同的随机种子初始化（故意的）；包装成 DDP 时 rank 0 的参数广播给所有人。")
    model = MLP(seed=100 + rank)
    ddp = dist.DistributedDataParallel(model)
    reference = MLP(seed=100)  # 对照：一个进程，在所有进程的样本合起来的批次上训练
    x_all, y_all = make_batch(seed=7, n=64)
    sampler = dist.DistributedSampler(range(len(x_all)), seed=0)
    per_rank = 8
    say(f"数据 64 个样本；每个进程每步 {per_rank} 个，{n} 个进程合起来的有效批次 = "
        f"{per_rank * n}。")
    optimizers = [tg.optim.SGD(m.parameters(), lr=0.1) for m in (model, reference)]
    losses = []
    for step in range(steps):
        sampler.set_epoch(step)                      # 每个 epoch 换一种打乱顺序
        mine = list(sampler)[:per_rank]              # 本进程这一步的样本
        every_rank = [_shard(64, n, r, step)[:per_rank] for r in range(n)]  # 对照用
        mse(ddp, x_all[mine], y_all[mine]).backward()
        union = [i for shard in every_rank for i in shard]
        loss = mse(reference, x_all[union], y_all[union])
        loss.backward()
        losses.append(loss.item())
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
    say(f"对照模型的损失：{losses[0]:.4f} -> {losses[-1]:.4f}")
    mine = {k: p.numpy().copy() for k, p in _detached(model)}
    everyone = [None] * n
    dist.all_gather_object(everyone, mine)
    identical = all(max_diff(other, mine) == 0 for other in everyone)
    diff = max_diff(mine, {k: p.numpy() for k, p in _detached(reference)})
    say(f"{steps} 步之后：各进程参数逐位相同 = {identical}；与单进程对照最大相差 {diff:.1e}")
    check(identical, "每个进程的参数完全相同")
    check(diff < 1e-5, "数据并行训练 = 单进程在合起来的批次上训练（float32 误差内）")
    check(losses[-1] < losses[0], "损失在下降")


def _shard(size, n, rank, epoch):
    sampler = dist.DistributedSampler(range(size), num_replicas=n, rank=rank, seed=0)
    sampler.set_epoch(epoch)
    return list(sampler)


def _detached(model):
    return [(k, p.detach()) for k, p in model.named_parameters()]


# ------------------------------------------------------------------ 5. 实测
def measure_and_estimate(quick):
    section("5. 实测：延迟、带宽，以及通信什么时候成为瓶颈")
    n = dist.get_world_size()
    repeats = 5 if quick else 20
    tiny = time_all_reduce(1, repeats * 10)
    big_numel = (1 << 20) if quick else (4 << 20)
    big = time_all_reduce(big_numel, repeats)
    nbytes = big_numel * 4
    # 每个进程收发 2(n-1)/n * size：用它除以时间，得到"算法带宽"
    bandwidth = 2 * (n - 1) / n * nbytes / big
    say(f"  一次很小的 allreduce（4 字节）：{tiny * 1e6:.1f} 微秒 —— 这是每条消息的固定开销")
    say(f"  一次 {nbytes / 2**20:.0f} MiB 的 allreduce：{big * 1e3:.2f} 毫秒，"
        f"带宽约 {bandwidth / 1e9:.2f} GB/s（同一台机器上的进程之间，走共享内存）")
    check(tiny > 0 and bandwidth > 0, "测到了正的延迟和带宽")
    count = len(list(MLP(seed=0).parameters()))
    say(f"  本课小网络的 {count} 个梯度张量各发一次 ≈ {count * tiny * 1e6:.0f} 微秒，"
        f"装进一个桶发一次 ≈ {tiny * 1e6:.0f} 微秒：这就是要分桶的原因。")
    say("\n估算（用上面实测的带宽，公式 t = 2(n-1)/n * 4 字节 * 参数个数 / 带宽）：")
    say(f"  参数个数       n={n} 时每步通信      换成 1 GB/s 的网络")
    for params in (1_000_000, 124_000_000, 1_500_000_000):
        t_here = 2 * (n - 1) / n * 4 * params / bandwidth
        t_slow = 2 * (n - 1) / n * 4 * params / 1e9
        say(f"  {params / 1e6:>8.0f}M      {t_here * 1e3:10.1f} 毫秒        {t_slow * 1e3:10.1f} 毫秒")
    say("一步的计算时间大致和参数个数乘以每个进程的批次大小成正比；通信时间只和参数个数成正比。\n"
        "所以每个进程的批次越小、网络越慢，通信越容易成为瓶颈；重叠能把通信藏在反向传播后面，\n"
        "但藏不住比反向传播还长的通信。详细的实测见 benchmarks/ddp_scaling.py。")


def time_all_reduce(numel, repeats):
    t = tg.zeros(numel)
    dist.all_reduce(t)  # 预热
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - start)
    # 各进程取最慢的那个，再取中位数
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, times)
    return float(np.median(np.max(np.array(everyone), axis=0)))


if __name__ == "__main__":
    main()

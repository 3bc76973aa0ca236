#!/usr/bin/env python3
"""Data-parallel scaling: step time on 1 and 2 ranks, communication alone, bandwidth.

Weak scaling: every rank trains on its own batch of ``--batch`` samples, so 2
ranks process twice the samples per step. Perfect scaling keeps the step time
constant; the efficiency is ``t(1 rank) / t(n ranks)`` (= samples/s on n ranks
divided by n times samples/s on 1 rank).

For each world size the script measures, under ``mpiexec -n N``:

    step        forward + backward (DDP: bucketed, overlapped allreduce) + SGD update
    local       the same step without DDP: the compute alone
    comm        the gradient buckets' allreduce alone, no compute (what overlap can hide)

and, with 2 ranks, allreduce time for message sizes from 4 bytes to 16 MiB,
giving the latency (tiny messages) and the bandwidth (large ones; each rank sends
2(n-1)/n * size bytes in a ring allreduce, so bandwidth = that / time). From the
measured compute speed and bandwidth it then estimates, for bigger models and
slower networks, below which per-rank batch size communication takes longer
than the compute it should hide behind.

Run it from the repository root (mpiexec from `pip install 'tinygrad_zh[dist]'`):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/ddp_scaling.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/ddp_scaling.py --quick
    ... benchmarks/ddp_scaling.py --plot ddp.png

Every measurement runs in a fresh ``mpiexec`` job with one BLAS thread per rank
(so 2 ranks use 2 cores, 1 rank uses 1: a fair comparison on a 2-core machine);
the rounds alternate between 1 and 2 ranks so that drift of the machine hits
both; each number is the best time within a round (the slowest rank's time of
each call), and the table shows the median over rounds. The model is an MLP
(nn.Linear 784-512-512-10, ReLU) trained with plain SGD, so that a step is
forward + backward + communication; the tiny GPT is not
measured yet. ZeRO-1: the Adam state bytes each rank holds, with and without
ZeroRedundancyOptimizer, and the step time of both.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parents[1]
WORLD_SIZES = (1, 2)
MLP_SIZES = (784, 512, 512, 10)
MESSAGE_SIZES = (4, 64 << 10, 1 << 20, 4 << 20, 16 << 20)  # bytes
SMALL_BUCKET_MB = 0.5
# The tiny GPT of the CPU recipe (models/gpt.py defaults), GPT_BATCH sequences of 64 tokens per rank.
GPT_CONFIG = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
GPT_BATCH = 8
MODEL_NAMES = {"mlp": f"MLP {'-'.join(map(str, MLP_SIZES))}",
               "gpt": f"tiny GPT ({', '.join(f'{k}={v}' for k, v in GPT_CONFIG.items())})"}
MODEL_UNITS = {"mlp": "samples", "gpt": "sequences"}
MODEL_BATCH = {"mlp": lambda batch: batch, "gpt": lambda batch: GPT_BATCH}
SLOW_NETWORKS = {"10 Gbit/s Ethernet": 1.25e9, "1 Gbit/s Ethernet": 0.125e9}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (seconds)")
    parser.add_argument("--batch", type=int, default=64, help="samples per rank per step")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--models", default="mlp,gpt", help="comma-separated: mlp, gpt")
    parser.add_argument("--plot", help="write a PNG chart here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps or (5 if args.quick else 20)
    models = args.models.split(",")
    if args.worker:
        return worker(args.batch, steps, args.quick, models)
    rounds = args.rounds or (2 if args.quick else 5)
    runs = {n: [] for n in WORLD_SIZES}
    for _ in range(rounds):
        for n in WORLD_SIZES:  # alternate: 1, 2, 1, 2 ...
            runs[n].append(launch(n, args.batch, steps, args.quick, models))
    report(runs, args.batch, models)
    if args.plot:
        plot(runs, args.plot, models)


# ------------------------------------------------------------------ the parent
def launch(n, batch, steps, quick, models):
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or \
        shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("mpiexec not found next to this Python or on PATH; "
                 "pip install 'tinygrad_zh[dist]'")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    cmd = [mpiexec, "-n", str(n), sys.executable, str(SCRIPT), "--worker",
           "--batch", str(batch), "--steps", str(steps), "--models", ",".join(models)] + \
        (["--quick"] if quick else [])
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        sys.exit(f"worker with {n} ranks failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def report(runs, batch, models):
    """One scaling table and one ZeRO-1 table per model, the allreduce table, the estimate."""
    per_model = {name: {n: [r["models"][name] for r in rs] for n, rs in runs.items()}
                 for name in models}
    for name, model_runs in per_model.items():
        scaling_table(name, model_runs, MODEL_BATCH[name](batch))
    n = max(WORLD_SIZES)
    print(f"allreduce on {n} ranks (median over rounds):")
    print(f"{'bytes':>10} {'time us':>10} {'GB/s':>8}")
    sizes = runs[n][0]["message_sizes"]
    times = [statistics.median(r["message_times"][i] for r in runs[n]) for i in range(len(sizes))]
    for size, t in zip(sizes, times):
        print(f"{size:>10} {t * 1e6:10.1f} {ring_bytes(size, n) / t / 1e9:8.2f}")
    # The best bandwidth over the large messages: the run least disturbed by other load.
    latency = times[0]
    bandwidth = max(ring_bytes(s, n) / t for s, t in zip(sizes, times) if s >= 1 << 20)
    first = models[0]
    estimate(first, per_model[first], latency, bandwidth, MODEL_BATCH[first](batch))


def scaling_table(name, runs, batch):
    one = runs[1][0]
    print(f"{MODEL_NAMES[name]}: {one['params']:,} parameters ({one['params'] * 4 / 2**20:.2f} "
          f"MiB of float32 gradients in {one['buckets']} bucket(s)); {batch} {MODEL_UNITS[name]} "
          f"per rank per step; medians of {len(runs[1])} rounds")
    small = f"{one['small_buckets']} buckets"
    print(f"{'ranks':>5} {'step ms':>9} {'local ms':>9} {'comm ms':>9} "
          f"{MODEL_UNITS[name][:7] + '/s':>10} "
          f"{'efficiency':>10} {'DDP share':>10} {small + ' ms':>13}")
    t1 = median(runs[1], "step")
    for n, rs in runs.items():
        step, local = median(rs, "step"), median(rs, "local")
        print(f"{n:>5} {step * 1e3:9.2f} {local * 1e3:9.2f} {median(rs, 'comm') * 1e3:9.3f} "
              f"{n * batch / step:10.0f} {t1 / step:10.2f} {(step - local) / step:10.1%} "
              f"{median(rs, 'small_step') * 1e3:13.2f}")
    print("efficiency = t(1 rank) / t(n ranks); DDP share = (step - local) / step, the part of "
          "the step that DDP adds\n(copies into buckets, communication not hidden by "
          f"backward); last column: the DDP step with bucket_cap_mb={SMALL_BUCKET_MB}, whose "
          "buckets\nstart during backward. A local step slower on n ranks than on 1 means the "
          "ranks compete for cores or\nmemory bandwidth: compute, not communication.")
    print(f"ZeRO-1 for the {name} (ZeroRedundancyOptimizer around Adam: two state arrays per "
          "parameter, sharded by whole tensors):")
    print(f"{'ranks':>5} {'state MiB/rank':>15} {'ZeRO-1 MiB/rank':>16} {'saving':>7} "
          f"{'Adam step ms':>13} {'ZeRO-1 step ms':>15}")
    for n, rs in runs.items():
        full, sharded = rs[0]["state_bytes_full"], rs[0]["state_bytes_zero"]
        print(f"{n:>5} {full / 2**20:15.2f} {sharded / 2**20:16.2f} {1 - sharded / full:7.0%} "
              f"{median(rs, 'adam_step') * 1e3:13.2f} {median(rs, 'zero_step') * 1e3:15.2f}")
    print()


def ring_bytes(size, n):
    """What each rank sends in a ring allreduce of ``size`` bytes over ``n`` ranks."""
    return 2 * (n - 1) / n * size


def estimate(name, runs, latency, bandwidth, batch):
    """Where communication dominates, from the measured compute speed and bandwidth.

    Compute per step grows with parameters x samples: t_compute = c * P * B, with
    c measured from the 1-rank local step. Communication grows with parameters
    only: t_comm = 2(n-1)/n * 4 P / bandwidth (+ latency per bucket). Without
    overlap a step costs t_compute + t_comm, so communication is the larger part
    when B < B* = 2(n-1)/n * 4 / (bandwidth * c).
    """
    params = runs[1][0]["params"]
    c = median(runs[1], "local") / (params * batch)   # seconds per parameter per sample
    unit = MODEL_UNITS[name][:-1]
    print(f"\nEstimate (from the numbers above, {name}): compute c = {c * 1e9:.3f} ns per "
          f"parameter per {unit}; allreduce latency {latency * 1e6:.1f} us, bandwidth "
          f"{bandwidth / 1e9:.2f} GB/s.")
    print(f"Communication per step takes longer than the compute below this per-rank batch B* "
          f"({MODEL_UNITS[name]}):")
    networks = {"measured (this machine)": bandwidth, **SLOW_NETWORKS}
    print(f"{'network':<26} {'GB/s':>6} " + " ".join(f"{f'n={n}':>8}" for n in (2, 8, 64)))
    for network, bw in networks.items():
        cells = [ring_bytes(4, n) / (bw * c) for n in (2, 8, 64)]
        print(f"{network:<26} {bw / 1e9:6.3f} " + " ".join(f"{b:8.1f}" for b in cells))
    for label, p in (("1M", 1e6), ("124M (GPT-2 small)", 124e6)):
        comm = ring_bytes(4 * p, 8) / SLOW_NETWORKS["10 Gbit/s Ethernet"]
        print(f"  e.g. {label} parameters on 8 ranks over 10 Gbit/s: {comm * 1e3:.0f} ms of "
              f"allreduce per step, vs {c * p * batch * 1e3:.0f} ms of compute at batch {batch} "
              f"({name} on this CPU)")
    print("B* does not depend on the model size (both sides grow with P), only on the "
          "compute speed per parameter and the bandwidth:\nk times faster compute (a GPU) or a "
          "k times slower network pushes B* up k times, which is why large-scale training\n"
          "needs fast interconnects, big per-rank batches, or gradient compression.")


def plot(runs, path, models):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), squeeze=False)
    keys = ("step", "local", "comm")
    width = 0.25
    for ax, name in zip(axes[0], models):
        for i, key in enumerate(keys):
            ax.bar([n + (i - 1) * width for n in WORLD_SIZES],
                   [median([r["models"][name] for r in runs[n]], key) * 1e3 for n in WORLD_SIZES],
                   width, label=key)
        ax.set_xticks(WORLD_SIZES)
        ax.set_xlabel("ranks")
        ax.set_ylabel("ms per step")
        ax.set_title(f"DDP weak scaling, {name}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nplot written to {path}")


# ------------------------------------------------------------------ the worker (under mpiexec)
def worker(batch, steps, quick, models):
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np

    import tinygrad_zh as tg
    import tinygrad_zh.distributed as dist

    dist.init_process_group()
    rank, n = dist.get_rank(), dist.get_world_size()
    rng = np.random.default_rng(rank)  # each rank its own batch
    x = tg.tensor(rng.standard_normal((batch, MLP_SIZES[0])), dtype=tg.float32)
    y = tg.tensor(rng.integers(0, MLP_SIZES[-1], batch))
    tokens = tg.tensor(rng.integers(0, GPT_CONFIG["vocab_size"], (GPT_BATCH, 65)))

    def mlp():
        tg.manual_seed(0)
        layers = []
        for d_in, d_out in zip(MLP_SIZES, MLP_SIZES[1:]):
            layers += [tg.nn.Linear(d_in, d_out), tg.nn.ReLU()]
        return tg.nn.Sequential(*layers[:-1])

    def gpt():
        from tinygrad_zh.models.gpt import GPT, GPTConfig
        tg.manual_seed(0)
        return GPT(GPTConfig(**GPT_CONFIG))

    def mlp_loss(model):
        return model(x).log_softmax(-1).gather(1, y.reshape(-1, 1)).mean() * -1

    def gpt_loss(model):
        return model(tokens[:, :-1], tokens[:, 1:])[1]  # next-token prediction

    result = {}
    if "mlp" in models:
        result["mlp"] = measure(tg, dist, mlp, mlp_loss, steps)
    if "gpt" in models:
        result["gpt"] = measure(tg, dist, gpt, gpt_loss, max(2, steps // 4))
    result = {"models": result}
    sizes = MESSAGE_SIZES[:-1] if quick else MESSAGE_SIZES
    result["message_sizes"] = list(sizes)
    result["message_times"] = [
        seconds_per_call(dist, [lambda t=tg.zeros(size // 4): dist.all_reduce(t)],
                         steps if size > 1 << 20 else 10 * steps)[0] for size in sizes]
    if rank == 0:
        print(json.dumps(result))


def measure(tg, dist, make_model, loss_of, steps):
    """Time one model's DDP step, local step, communication alone, small-bucket step,
    Adam step and ZeRO-1 Adam step (interleaved); count the Adam state bytes."""
    model = make_model()
    ddp = dist.DistributedDataParallel(model)
    flats = [b.flat for b in ddp._buckets]
    plain = tg.optim.SGD(model.parameters(), lr=1e-3)  # cheap: the step is forward + backward
    adam = tg.optim.Adam(model.parameters(), lr=1e-3)
    zero = dist.ZeroRedundancyOptimizer(model.parameters(), tg.optim.Adam, lr=1e-3)
    # The same model in small buckets: more messages, but they start during backward.
    small_model = make_model()
    small = dist.DistributedDataParallel(small_model, bucket_cap_mb=SMALL_BUCKET_MB)
    small_opt = tg.optim.SGD(small_model.parameters(), lr=1e-3)

    def timed_step(wrapper, optimizer):
        loss_of(wrapper).backward()
        optimizer.step()
        for p in wrapper.module.parameters():
            p.grad = None

    def local_step():
        with ddp.no_sync():  # the hooks stay quiet: the same step with no communication
            timed_step(ddp, plain)
    # Interleaved (step, local, comm, ..., step, ...): load on the machine hits them all.
    step, local, comm, small_step, adam_step, zero_step = seconds_per_call(
        dist, [lambda: timed_step(ddp, plain), local_step,
               lambda: [dist.all_reduce(f) for f in flats],
               lambda: timed_step(small, small_opt), lambda: timed_step(ddp, adam),
               lambda: timed_step(ddp, zero)], steps)
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, zero.state_bytes())
    return {"params": sum(p.numel() for p in model.parameters()), "buckets": len(flats),
            "small_buckets": len(small._buckets), "step": step, "local": local, "comm": comm,
            "small_step": small_step, "adam_step": adam_step, "zero_step": zero_step,
            "state_bytes_full": adam_state_bytes(adam), "state_bytes_zero": max(everyone)}


def adam_state_bytes(optimizer):
    return sum(getattr(value, "nbytes", 0) for state in optimizer.state.values()
               for value in state.values())


def seconds_per_call(dist, fns, repeats):
    """Best time of each ``fn()`` over repeats (after one warm-up), taking the slowest
    rank's time of each call; the functions take turns. The best, not the median: on a
    shared machine most calls are slowed by other processes, by varying amounts."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            dist.barrier()
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, times)
    return [min(max(per_rank) for per_rank in zip(*(r[i] for r in everyone)))
            for i in range(len(fns))]


if __name__ == "__main__":
    main()

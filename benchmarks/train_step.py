#!/usr/bin/env python3
"""Time of one training step (forward, backward, Adam update), tinygrad_zh next to PyTorch.

Two configurations (issue 8):

    mlp   784-512-512-10 MLP with ReLU, batch 128, Adam 1e-3
    cnn   conv(1->32, 3x3, pad 1)-ReLU-maxpool2-conv(32->64, 3x3, pad 1)-ReLU-maxpool2-
          Linear(3136->128)-ReLU-Linear(128->10), batch 64, Adam 1e-3

Each library runs in its own process (``--worker``), limited to ``--threads``
threads, so their thread pools never compete; the rounds alternate between the
libraries so that drift in the machine's load hits both alike. A worker times
every step after a few warm-up steps; the table shows the median step time of
each library over all rounds and the ratio. Goals: MLP <= 1.2x PyTorch's step,
CNN <= 1.5x.

By default a step's time is the CPU time the worker process spent on it
(``time.process_time``, all its threads): on a machine shared with other jobs,
or throttled by a CPU quota, the wall-clock time mostly measures the waiting
for a turn on the CPU. ``--clock wall`` times the wall clock instead (right on
an idle machine, and the only fair choice with more than one thread).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/train_step.py
    ... benchmarks/train_step.py --quick                  # fewer steps and rounds
    ... benchmarks/train_step.py --profile                # where tinygrad_zh's step spends its time
    ... benchmarks/train_step.py --plot step.png --json step.json

PyTorch is optional: without it only tinygrad_zh is timed.
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parents[1]
CONFIGS = {"mlp": 128, "cnn": 64}   # model -> batch size
GOALS = {"mlp": 1.2, "cnn": 1.5}
LIBS = ("tinygrad_zh", "torch")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per worker")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="time CPU time of the process (default) or wall-clock time")
    parser.add_argument("--quick", action="store_true", help="1 round of 5 steps")
    parser.add_argument("--profile", action="store_true", help="cProfile tinygrad_zh's step")
    parser.add_argument("--plot", help="save a bar chart here (PNG)")
    parser.add_argument("--json", help="save every timed step here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(time_steps(args.worker, args.model, args.steps, args.clock)))
        return
    if args.quick:
        args.rounds, args.steps = 1, 5
    models = args.models.split(",")
    if args.profile:
        for model in models:
            profile(model)
        return
    libs = [lib for lib in LIBS if importlib.util.find_spec(lib) is not None]
    if "torch" not in libs:
        print("PyTorch is not installed: timing tinygrad_zh only.")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.threads} thread(s) "
          f"per library; {args.rounds} rounds x {args.steps} steps; median {args.clock} time "
          f"per step\n")
    times = {(m, lib): [] for m in models for lib in libs}
    for _ in range(args.rounds):
        for model in models:
            for lib in libs:
                times[model, lib] += run_worker(lib, model, args.steps, args.threads, args.clock)
    print(f"{'model':6} {'batch':>5} " + "".join(f"{lib + ' ms':>16}" for lib in libs)
          + ("   ratio   goal" if len(libs) == 2 else ""))
    medians = {key: 1000 * statistics.median(v) for key, v in times.items()}
    for model in models:
        cells = "".join(f"{medians[model, lib]:>16.2f}" for lib in libs)
        ratio = ""
        if len(libs) == 2:
            r = medians[model, "tinygrad_zh"] / medians[model, "torch"]
            ratio = f"  {r:5.2f}x  <={GOALS[model]}x {'ok' if r <= GOALS[model] else 'not met'}"
        print(f"{model:6} {CONFIGS[model]:>5} {cells}{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{m}/{lib}": v for (m, lib), v in times.items()}))
    if args.plot:
        plot(medians, models, libs, args.plot)


def run_worker(lib, model, steps, threads, clock):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, str(SCRIPT), "--worker", lib, "--model", model,
                          "--steps", str(steps), "--clock", clock], env=env, capture_output=True,
                         text=True,
                         check=True, cwd=REPO_ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(lib, model):
    """(step function, library) for one configuration; the same network in both libraries."""
    if lib == "torch":
        import torch as m
        m.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        F = m.nn.functional
    else:
        sys.path.insert(0, str(REPO_ROOT))
        import tinygrad_zh as m
        F = m.nn.functional
    nn = m.nn
    m.manual_seed(0)
    if model == "mlp":
        net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                            nn.Linear(512, 10))
        x = m.randn(CONFIGS[model], 784)
    else:
        net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
        x = m.randn(CONFIGS[model], 1, 28, 28)
    y = m.randint(0, 10, (CONFIGS[model],))
    optimizer = m.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def time_steps(lib, model, steps, clock, warmup=3):
    step = build(lib, model)
    now = time.process_time if clock == "cpu" else time.perf_counter
    for _ in range(warmup):  # first calls compile kernels and allocate buffers
        step()
    times = []
    for _ in range(steps):
        start = now()
        step()
        times.append(now() - start)
    return times


def profile(model, steps=10):
    """Where tinygrad_zh's step spends its time: functions by their own time."""
    import cProfile
    import pstats
    step = build("tinygrad_zh", model)
    for _ in range(3):
        step()
    profiler = cProfile.Profile(time.process_time)  # CPU time: waits for the CPU do not count
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # own time of every function
    print(f"\n{model}: {1000 * total / steps:.1f} ms CPU per step under cProfile; "
          f"the functions with the most own time:")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]
    for (filename, line, name), (_, calls, own, _, _) in rows:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else filename
        print(f"  {100 * own / total:5.1f}%  {1000 * own / steps:7.2f} ms  {calls // steps:5d} "
              f"calls  {name}  ({where})")


def plot(medians, models, libs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(libs)
    for i, lib in enumerate(libs):
        ax.bar([j + i * width for j in range(len(models))],
               [medians[m, lib] for m in models], width, label=lib)
    ax.set_xticks([j + width * (len(libs) - 1) / 2 for j in range(len(models))], models)
    ax.set_ylabel("median training step (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"chart saved to {path}")


if __name__ == "__main__":
    main()

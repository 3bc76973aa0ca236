#!/usr/bin/env python3
"""Forward + backward time of the nn hot paths, tinygrad_zh next to PyTorch.

The sizes are those of the MNIST CNN and MLP (batch 64, float32): each case is
one statement that runs the layer and backpropagates through it, with every
gradient reset first (zero_grad(set_to_none=True)):

    linear            F.linear, 64x784 -> 128 (the fused op)
    linear_composite  x @ w.T + b, the same as three plain ops
    conv1             F.conv2d 64x1x28x28 -> 32 channels, 3x3, padding 1
    conv2             F.conv2d 64x32x14x14 -> 64 channels, 3x3, padding 1
    max_pool2d        64x32x28x28, kernel 2
    cross_entropy     64x10 logits
    layer_norm        2048x128 over the last dim
    cnn_step          the whole CNN: conv-relu-pool-conv-relu-pool-linear-CE

Run it from the repository root (see benchmarks/README.md for why the two
OPENBLAS variables are unset):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/nn_layers.py
    ... benchmarks/nn_layers.py --quick                 # a few seconds, noisier
    ... benchmarks/nn_layers.py --libs tinygrad_zh      # without PyTorch
    ... benchmarks/nn_layers.py --plot nn_layers.png

Each library is timed in its own subprocess (one thread: OMP/OpenBLAS/MKL
variables and torch.set_num_threads(1)), the rounds alternate between the
libraries, and the table shows each case's median over all rounds. PyTorch is
optional; without it only tinygrad_zh's column is printed.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parents[1]
LIBS = ("tinygrad_zh", "torch")

# name -> (setup statement, timed statement); F, m (the library), nn and the
# inputs are in the namespace. Both libraries run the very same statements.
CASES = {
    "linear": ("x = leaf(64, 784); w = leaf(128, 784); b = leaf(128)",
               "F.linear(x, w, b).sum().backward()"),
    "linear_composite": ("x = leaf(64, 784); w = leaf(128, 784); b = leaf(128)",
                         "(x @ w.T + b).sum().backward()"),
    "conv1": ("x = data(64, 1, 28, 28); w = leaf(32, 1, 3, 3); b = leaf(32)",
              "F.conv2d(x, w, b, padding=1).sum().backward()"),
    "conv2": ("x = leaf(64, 32, 14, 14); w = leaf(64, 32, 3, 3); b = leaf(64)",
              "F.conv2d(x, w, b, padding=1).sum().backward()"),
    "max_pool2d": ("x = leaf(64, 32, 28, 28)", "F.max_pool2d(x, 2).sum().backward()"),
    "cross_entropy": ("x = leaf(64, 10); t = labels(64, 10)",
                      "F.cross_entropy(x, t).backward()"),
    "layer_norm": ("x = leaf(2048, 128); w = leaf(128); b = leaf(128)",
                   "F.layer_norm(x, (128,), w, b).sum().backward()"),
    "cnn_step": ("model = cnn(); x = data(64, 1, 28, 28); t = labels(64, 10)",
                 "F.cross_entropy(model(x), t).backward()"),
}
RESET = "for _p in params(): _p.grad = None\n"


# ------------------------------------------------------------------ worker side
def namespace_for(lib):
    import numpy as np
    if lib == "torch":
        import torch as m
        m.set_num_threads(1)
        tensor = m.tensor
    else:
        sys.path.insert(0, str(REPO_ROOT))
        import tinygrad_zh as m
        tensor = m.tensor
    rng = np.random.default_rng(0)
    leaves = []

    def data(*shape):
        return tensor(rng.standard_normal(shape, dtype=np.float32))

    def leaf(*shape):
        t = tensor(rng.standard_normal(shape, dtype=np.float32) * 0.1, requires_grad=True)
        leaves.append(t)
        return t

    def labels(n, classes):
        return tensor(rng.integers(0, classes, n))

    def cnn():
        nn = m.nn
        model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(64 * 7 * 7, 10))
        leaves.extend(model.parameters())
        return model

    return {"m": m, "F": m.nn.functional, "data": data, "leaf": leaf, "labels": labels,
            "cnn": cnn, "params": lambda: leaves}


def run_worker(lib, repeat):
    results = {}
    for name, (setup, stmt) in CASES.items():
        ns = namespace_for(lib)
        exec(setup, ns)
        code = compile(RESET + stmt, name, "exec")
        exec(code, ns)  # warm-up (Numba/BLAS first calls, allocator)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            exec(code, ns)
            times.append((time.perf_counter() - start) * 1e3)
        results[name] = statistics.median(times)
    print(json.dumps(results))


# ------------------------------------------------------------------ driver side
def run_round(lib, repeat):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--worker", lib, "--repeat", str(repeat)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and repeats")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--libs", default=",".join(LIBS),
                        help="comma-separated libraries to time (default: both)")
    parser.add_argument("--plot", help="save a bar chart to this PNG")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.repeat)

    rounds = args.rounds or (1 if args.quick else 3)
    repeat = 3 if args.quick else 10
    wanted = args.libs.split(",")
    libs = [lib for lib in LIBS if lib in wanted
            and (lib != "torch" or importlib.util.find_spec("torch"))]
    if "torch" in wanted and "torch" not in libs:
        print("PyTorch is not installed: only tinygrad_zh is timed.")
    samples = {lib: {name: [] for name in CASES} for lib in libs}
    for _ in range(rounds):
        for lib in libs:  # alternate, so machine drift hits both alike
            for name, ms in run_round(lib, repeat).items():
                samples[lib][name].append(ms)
    medians = {lib: {name: statistics.median(v) for name, v in rows.items()}
               for lib, rows in samples.items()}

    header = f"{'case':18}" + "".join(f"{lib + ' ms':>16}" for lib in libs)
    if "torch" in libs:
        header += f"{'ratio':>10}"
    print(f"forward+backward, float32, one thread; median of {rounds} round(s) x {repeat}")
    print(header)
    for name in CASES:
        row = f"{name:18}" + "".join(f"{medians[lib][name]:>16.2f}" for lib in libs)
        if "torch" in libs:
            row += f"{medians['tinygrad_zh'][name] / medians['torch'][name]:>9.2f}x"
        print(row)
    if "torch" in libs:
        print("(ratio = tinygrad_zh / torch: above 1x means tinygrad_zh is slower)")
    if args.plot:
        plot(medians, libs, args.plot)


def plot(medians, libs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    names = list(CASES)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(libs)
    for i, lib in enumerate(libs):
        ax.bar(np.arange(len(names)) + i * width, [medians[lib][n] for n in names], width,
               label=lib)
    ax.set_xticks(np.arange(len(names)) + width * (len(libs) - 1) / 2)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("ms (forward + backward)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"saved {path}")


if __name__ == "__main__":
    main()

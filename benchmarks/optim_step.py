#!/usr/bin/env python3
"""Time of one ``optimizer.step()``: tinygrad_zh next to PyTorch.

Two parameter sets, gradients already in place, so only the update is timed:

    mlp     the six tensors of a 784-256-128-10 MLP (235k numbers): arithmetic-bound
    many    60 tensors of 16x16 (15k numbers): per-parameter Python overhead dominates

Optimizers: SGD with momentum, Adam, AdamW (PyTorch's defaults otherwise).
Libraries:

    tinygrad_zh      the default: Adam/AdamW through the Numba kernel
    tinygrad_zh-ref  the same with TINYGRAD_ZH_KERNELS=reference (NumPy reference kernel)
    torch            torch.optim with its defaults (foreach on CPU tensors)

Run it from the repository root:

    .venv/bin/python benchmarks/optim_step.py              # about a minute
    .venv/bin/python benchmarks/optim_step.py --quick      # a few seconds, noisier
    .venv/bin/python benchmarks/optim_step.py --threads 2 --plot optim.png

Each library runs in its own worker process (``--worker LIB``), all limited to
``--threads`` threads (OMP, OpenBLAS, Numba, torch), and the rounds alternate
between libraries so that the machine's drift hits each alike. The table shows
the median over rounds of each worker's best time, in microseconds per step.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parents[1]
LIBS = ("tinygrad_zh", "tinygrad_zh-ref", "torch")
PARAM_SETS = {
    "mlp": [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)],
    "many": [(16, 16)] * 60,
}
OPTIMIZERS = {
    "SGD(momentum=0.9)": ("SGD", dict(lr=0.01, momentum=0.9)),
    "Adam": ("Adam", dict(lr=1e-3)),
    "AdamW": ("AdamW", dict(lr=1e-3)),
}
FULL = dict(rounds=5, repeat=7, steps=20)
QUICK = dict(rounds=1, repeat=3, steps=5)


# ------------------------------------------------------------------ worker side
def arrays(shapes):
    import numpy as np
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(s, dtype=np.float32), rng.standard_normal(s, dtype=np.float32))
            for s in shapes]


def make_optimizer(lib, name, shapes):
    """An optimizer over float32 parameters whose .grad is set (same values everywhere)."""
    cls_name, kw = OPTIMIZERS[name]
    if lib == "torch":
        import torch
        params = []
        for p, g in arrays(shapes):
            t = torch.tensor(p, requires_grad=True)
            t.grad = torch.tensor(g)
            params.append(t)
        return getattr(torch.optim, cls_name)(params, **kw)
    sys.path.insert(0, str(REPO_ROOT))  # time this checkout
    import tinygrad_zh as tg
    params = []
    for p, g in arrays(shapes):
        t = tg.tensor(p, requires_grad=True)
        t.grad = tg.tensor(g)
        params.append(t)
    return getattr(tg.optim, cls_name)(params, **kw)


def run_worker(lib, settings, threads):
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
    results = {}
    for set_name, shapes in PARAM_SETS.items():
        for opt_name in OPTIMIZERS:
            opt = make_optimizer(lib, opt_name, shapes)
            for _ in range(3):  # warm up: state allocation, Numba compilation / cache load
                opt.step()
            best = float("inf")
            for _ in range(settings["repeat"]):
                start = time.perf_counter()
                for _ in range(settings["steps"]):
                    opt.step()
                best = min(best, (time.perf_counter() - start) / settings["steps"])
            results[f"{set_name}|{opt_name}"] = best * 1e6
    print(json.dumps(results))


# ------------------------------------------------------------------ driver side
def worker_env(lib, threads):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    if lib == "tinygrad_zh-ref":
        env["TINYGRAD_ZH_KERNELS"] = "reference"
    else:
        env.pop("TINYGRAD_ZH_KERNELS", None)
    return env


def available(lib):
    if lib != "torch":
        return True
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def run_rounds(libs, settings, threads, quick):
    samples = {lib: {} for lib in libs}
    for _ in range(settings["rounds"]):
        for lib in libs:
            cmd = [sys.executable, str(SCRIPT), "--worker", lib, "--threads", str(threads)]
            if quick:
                cmd.append("--quick")
            out = subprocess.run(cmd, env=worker_env(lib, threads), capture_output=True,
                                 text=True, check=True).stdout
            for key, us in json.loads(out.splitlines()[-1]).items():
                samples[lib].setdefault(key, []).append(us)
    return {lib: {k: statistics.median(v) for k, v in rows.items()}
            for lib, rows in samples.items()}


def print_table(medians, libs):
    keys = list(next(iter(medians.values())))
    header = f"{'params':6s} {'optimizer':18s}" + "".join(f"{lib:>16s}" for lib in libs)
    if "torch" in libs:
        header += f"{'ours/torch':>12s}"
    print(header)
    for key in keys:
        set_name, opt_name = key.split("|")
        row = f"{set_name:6s} {opt_name:18s}" + "".join(f"{medians[lib][key]:16.1f}"
                                                        for lib in libs)
        if "torch" in libs:
            row += f"{medians['tinygrad_zh'][key] / medians['torch'][key]:11.2f}x"
        print(row)
    print("(microseconds per optimizer.step(), median over rounds of each worker's best; "
          "lower is better)")


def plot(medians, libs, filename):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    keys = list(next(iter(medians.values())))
    x = np.arange(len(keys))
    width = 0.8 / len(libs)
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, lib in enumerate(libs):
        ax.bar(x + i * width, [medians[lib][k] for k in keys], width, label=lib)
    ax.set_xticks(x + width * (len(libs) - 1) / 2, [k.replace("|", "\n") for k in keys],
                  fontsize=8)
    ax.set(ylabel="us per step", yscale="log", title="optimizer.step() time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(filename, dpi=100)
    print(f"plot saved to {filename}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="threads per library (default 1)")
    parser.add_argument("--libs", default=",".join(LIBS), help=f"comma-separated, from {LIBS}")
    parser.add_argument("--plot", metavar="PNG", help="save a bar chart")
    parser.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.worker:
        run_worker(args.worker, settings, args.threads)
        return
    libs = [lib for lib in args.libs.split(",") if lib]
    unknown = set(libs) - set(LIBS)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; choose from {LIBS}")
    if not available("torch") and "torch" in libs:
        print("PyTorch is not installed: the torch column is skipped")
        libs.remove("torch")
    print(f"{settings['rounds']} round(s), {args.threads} thread(s) per library")
    medians = run_rounds(libs, settings, args.threads, args.quick)
    print_table(medians, libs)
    if args.plot:
        plot(medians, libs, args.plot)


if __name__ == "__main__":
    main()

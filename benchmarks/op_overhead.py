#!/usr/bin/env python3
"""Per-op overhead of tinygrad_zh, next to raw NumPy and PyTorch, on tiny tensors.

On a small model most of a training step is Python work around each op
(wrapping the result in a Tensor, recording the graph node, walking it
backward), not arithmetic. This benchmark times exactly that: ten common ops on
4x4 float32 tensors, each in three modes:

    fwd      forward; the inputs have requires_grad=True, so the graph is recorded
    no_grad  forward under no_grad(): no graph, the inference path
    fwd+bwd  x.grad = y.grad = None; op(x, y).sum().backward()
             (.sum() turns any output into a scalar, so the same statement
             runs in every library; resetting .grad is zero_grad(set_to_none=True))

NumPy is the raw array op: the floor that no wrapper can beat. It has no grad
mode, so both of its forward rows time the same op (their difference shows the
noise), and it has no backward ('-').

Run it from the repository root:

    .venv/bin/python benchmarks/op_overhead.py                  # full run, under a minute
    .venv/bin/python benchmarks/op_overhead.py --quick          # a few seconds, noisier
    .venv/bin/python benchmarks/op_overhead.py --libs numpy,tinygrad_zh
    .venv/bin/python benchmarks/op_overhead.py --plot bench.png --json bench.json

PyTorch is optional: without it the torch column is skipped, and the output says so.

Why each library runs in its own process: NumPy's BLAS and PyTorch each start a
thread pool, and inside one process the two slow each other down (idle threads
spin and fight for the cores, worst on a 2-core machine). So the script
re-invokes itself as ``--worker LIB``: a fresh process per library and round,
limited to one thread (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, and
torch.set_num_threads(1)), which prints its timings as JSON on stdout. The
rounds alternate between libraries (numpy, tinygrad_zh, torch, numpy, ...) so
that slow drift of the machine (other load, CPU clock) hits every library
alike, and the table keeps each op's best (minimum) time over the rounds: the
run least disturbed by the rest of the machine.
"""
import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
import timeit
from collections import namedtuple
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parents[1]
ALL_LIBS = ("numpy", "tinygrad_zh", "torch")
MODES = ("fwd", "no_grad", "fwd+bwd")
SIZE = 4  # 4x4: the arithmetic takes nanoseconds, so what is left is overhead

# Each op is one expression over the inputs x and y. tinygrad_zh and PyTorch
# share an API, so they run the very same statements.
TENSOR_OPS = {
    "add": "x + y",
    "mul": "x * y",
    "mul_scalar": "x * 2.0",
    "matmul": "x @ y",
    "sum": "x.sum()",
    "exp": "x.exp()",
    "relu": "x.relu()",
    "softmax": "x.softmax(dim=-1)",
    "reshape": f"x.reshape({SIZE * SIZE})",
    "getitem": "x[1:3]",
}
# The same ops spelled on raw NumPy arrays (NumPy has no softmax: a helper below).
NUMPY_OPS = {**TENSOR_OPS, "exp": "np.exp(x)", "relu": "np.maximum(x, 0)",
             "softmax": "softmax(x)"}
OPS = tuple(TENSOR_OPS)
BACKWARD = "x.grad = None; y.grad = None; ({expr}).sum().backward()"

# rounds: worker processes per library; repeat: timings per op in a worker;
# target_s: how long one timing loop runs. On a shared machine the noise comes
# in bursts of seconds, so many short timings spread over several rounds find
# an undisturbed moment more often than a few long ones.
Settings = namedtuple("Settings", "rounds repeat target_s")
FULL = Settings(rounds=5, repeat=10, target_s=0.005)
QUICK = Settings(rounds=2, repeat=3, target_s=0.002)

# What a worker needs to time one library.
Library = namedtuple("Library", "version namespace ops no_grad has_backward")


# ------------------------------------------------------------------ worker side
def make_inputs():
    """Two 4x4 float32 arrays, the same values in every library."""
    import numpy as np
    rng = np.random.default_rng(0)
    return [rng.standard_normal((SIZE, SIZE), dtype=np.float32) for _ in range(2)]


def setup_numpy():
    import numpy as np

    def softmax(a):
        e = np.exp(a - a.max(axis=-1, keepdims=True))  # shifted, so exp cannot overflow
        return e / e.sum(axis=-1, keepdims=True)

    x, y = make_inputs()
    namespace = {"np": np, "softmax": softmax, "x": x, "y": y}
    return Library(np.__version__, namespace, NUMPY_OPS, contextlib.nullcontext, False)


def setup_tinygrad_zh():
    sys.path.insert(0, str(REPO_ROOT))  # time this checkout, even if another copy is installed
    import tinygrad_zh as tg
    x, y = (tg.tensor(a, requires_grad=True) for a in make_inputs())
    return Library(tg.__version__, {"x": x, "y": y}, TENSOR_OPS, tg.no_grad, True)


def setup_torch():
    import torch
    torch.set_num_threads(1)  # what OMP_NUM_THREADS=1 does for NumPy's BLAS
    x, y = (torch.tensor(a, requires_grad=True) for a in make_inputs())
    return Library(torch.__version__, {"x": x, "y": y}, TENSOR_OPS, torch.no_grad, True)


SETUPS = {"numpy": setup_numpy, "tinygrad_zh": setup_tinygrad_zh, "torch": setup_torch}


def time_statement(stmt, namespace, settings):
    """The best time of one execution of ``stmt``, in microseconds."""
    timer = timeit.Timer(stmt, globals=namespace)  # compiled into timeit's loop: no call overhead
    # Grow the loop until one timing lasts about target_s; a short loop is
    # mostly clock resolution. These calibration runs also warm up caches.
    number = 1
    while (elapsed := timer.timeit(number)) < settings.target_s / 10:
        number *= 10
    number = max(1, round(number * settings.target_s / elapsed))
    return min(timer.repeat(settings.repeat, number)) / number * 1e6


def run_worker(lib, settings):
    """Time every op of one library; print {"library", "version", "us_per_op"} as JSON."""
    library = SETUPS[lib]()
    results = {}
    for op, expr in library.ops.items():
        row = {"fwd": time_statement(expr, library.namespace, settings)}
        with library.no_grad():  # entered once, so its own cost is not timed
            row["no_grad"] = time_statement(expr, library.namespace, settings)
        if library.has_backward:
            row["fwd+bwd"] = time_statement(BACKWARD.format(expr=expr), library.namespace,
                                            settings)
        results[op] = row
    json.dump({"library": lib, "version": library.version, "us_per_op": results}, sys.stdout)


# ------------------------------------------------------------------ parent side
def installed(libs):
    """The libraries that can run; torch is optional and skipped when missing."""
    kept = []
    for lib in libs:
        if lib == "torch" and importlib.util.find_spec("torch") is None:
            print("torch: not installed, skipped (pip install torch to compare against it)")
        else:
            kept.append(lib)
    return kept


def worker_env():
    env = dict(os.environ)
    # One BLAS/OpenMP thread: read by NumPy's BLAS and PyTorch when they load,
    # so it must be set before the worker starts, not inside it.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def spawn_worker(lib, quick):
    """Run ``--worker lib`` in a fresh interpreter and return its JSON result."""
    command = [sys.executable, str(SCRIPT), "--worker", lib] + (["--quick"] if quick else [])
    proc = subprocess.run(command, env=worker_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"op_overhead: the {lib} worker failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def run_rounds(libs, settings, quick):
    """{lib: [worker result per round]}, the libraries taking turns within each round."""
    results = {lib: [] for lib in libs}
    for round_number in range(1, settings.rounds + 1):
        for lib in libs:
            start = time.perf_counter()
            results[lib].append(spawn_worker(lib, quick))
            print(f"round {round_number}/{settings.rounds}: {lib:<12} "
                  f"{time.perf_counter() - start:5.1f} s", file=sys.stderr)
    return results


def best_of(results):
    """{lib: {op: {mode: us}}}: the minimum over rounds of every timing."""
    best = {}
    for lib, rounds in results.items():
        best[lib] = {op: {mode: min(r["us_per_op"][op][mode] for r in rounds)
                          for mode in rounds[0]["us_per_op"][op]}
                     for op in OPS}
    return best


def geomean(values):
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def ratio_columns(libs):
    """The (numerator, denominator) pairs whose ratio gets a column."""
    if "tinygrad_zh" not in libs:
        return []
    return [("tinygrad_zh", other) for other in ("torch", "numpy") if other in libs]


def table_rows(best, libs):
    """Cells of the table: one row per (op, mode), then a geometric mean per mode."""
    def cells(label, mode, times):
        us = [f"{times[lib]:.2f}" if times.get(lib) else "-" for lib in libs]
        ratios = [f"{times[a] / times[b]:.2f}x" if times.get(a) and times.get(b) else "-"
                  for a, b in ratio_columns(libs)]
        return [label, mode] + us + ratios

    rows = []
    for op in OPS:
        for mode in MODES:
            rows.append(cells(op, mode, {lib: best[lib][op].get(mode) for lib in libs}))
    rows.append(None)  # a separator line
    for mode in MODES:
        # The geometric mean of the times gives the geometric mean of the ratios.
        means = {lib: geomean(best[lib][op][mode] for op in OPS if mode in best[lib][op])
                 for lib in libs}
        rows.append(cells("geomean", mode, means))
    return rows


def format_table(best, libs):
    header = ["op", "mode"] + list(libs) + [f"{a}/{b}" for a, b in ratio_columns(libs)]
    rows = table_rows(best, libs)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows if r)) for i in range(len(header))]

    def line(cells):  # names left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule] + [line(r) if r else rule for r in rows])


def verdict(best):
    """One line: is tinygrad_zh's forward with requires_grad=True within 2x of PyTorch's?"""
    goal = "forward overhead within 2x of PyTorch's with requires_grad=True"
    if "torch" not in best or "tinygrad_zh" not in best:
        return f"Verdict ({goal}): not measured: it needs both tinygrad_zh and torch to run."
    ours, theirs = best["tinygrad_zh"]["add"]["fwd"], best["torch"]["add"]["fwd"]
    mean = geomean(best["tinygrad_zh"][op]["fwd"] / best["torch"][op]["fwd"] for op in OPS)
    met = ours / theirs <= 2 and mean <= 2
    return (f"Verdict ({goal}): {'MET' if met else 'NOT MET'}. add: tinygrad_zh {ours:.2f} us "
            f"vs torch {theirs:.2f} us = {ours / theirs:.2f}x; geometric mean over "
            f"{len(OPS)} ops: {mean:.2f}x.")


def describe_run(results, settings):
    versions = ", ".join(f"{lib} {rounds[0]['version']}" for lib, rounds in results.items())
    return (f"Per-op overhead on {SIZE}x{SIZE} float32 tensors, in us/op (lower is better): "
            f"best of {settings.rounds} rounds x {settings.repeat} timings of "
            f"~{settings.target_s * 1000:g} ms, one process and one thread per library.\n"
            f"Python {platform.python_version()}, {versions}; {os.cpu_count()} CPUs.")


MODE_LEGEND = ("fwd = forward, inputs require grad; no_grad = forward under no_grad(); "
               "fwd+bwd = op(x, y).sum().backward()\n"
               "ratios above 1x: tinygrad_zh is slower by that factor")


def save_json(path, results, best, settings):
    data = {"size": [SIZE, SIZE], "dtype": "float32", "settings": settings._asdict(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "versions": {lib: rounds[0]["version"] for lib, rounds in results.items()},
            "rounds_us_per_op": {lib: [r["us_per_op"] for r in rounds]
                                 for lib, rounds in results.items()},
            "best_us_per_op": best}
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def save_plot(path, best, libs):
    """A grouped bar chart: one panel per mode, one bar per library for each op."""
    import matplotlib
    matplotlib.use("Agg")  # draw to a file: no display needed (servers, CI)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODES), figsize=(16, 4.8), sharey=True)
    width = 0.8 / len(libs)
    for ax, mode in zip(axes, MODES):
        for i, lib in enumerate(libs):
            ops = [k for k, op in enumerate(OPS) if mode in best[lib][op]]  # numpy: no fwd+bwd
            ax.bar([k + i * width for k in ops], [best[lib][OPS[k]][mode] for k in ops],
                   width, label=lib, color=f"C{i}")  # fixed colors: the same lib in every panel
        ax.set_xticks([k + width * (len(libs) - 1) / 2 for k in range(len(OPS))], OPS,
                      rotation=45, ha="right")
        ax.set_yscale("log")  # NumPy and the autograd libraries differ by 10x and more
        ax.set_title(mode)
    axes[0].set_ylabel(f"us/op on {SIZE}x{SIZE} float32 (log scale)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short timings and 2 rounds: seconds instead of a minute, noisier")
    parser.add_argument("--libs", default=",".join(ALL_LIBS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--rounds", type=int,
                        help=f"worker processes per library (default {FULL.rounds})")
    parser.add_argument("--json", metavar="PATH", help="save the raw numbers as JSON")
    parser.add_argument("--plot", metavar="PATH.png", help="save a bar chart (needs matplotlib)")
    parser.add_argument("--worker", choices=ALL_LIBS, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    args.libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(args.libs) - set(ALL_LIBS)
    if unknown or not args.libs:
        parser.error(f"--libs: unknown {sorted(unknown)}; choose from {','.join(ALL_LIBS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = settings._replace(rounds=args.rounds)
    if args.worker:
        run_worker(args.worker, settings)
        return
    start = time.perf_counter()
    libs = installed(args.libs)
    results = run_rounds(libs, settings, args.quick)
    best = best_of(results)
    print(describe_run(results, settings))
    print()
    print(format_table(best, libs))
    print(MODE_LEGEND)
    print()
    print(verdict(best))
    if args.json:
        save_json(args.json, results, best, settings)
    if args.plot:
        save_plot(args.plot, best, libs)
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()

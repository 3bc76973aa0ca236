"""The shared machinery of the kernel benchmarks (adam.py, attention.py, matmul.py).

A benchmark script defines its columns ("libraries": NumPy reference, Numba,
GPU, PyTorch ...) as worker functions and calls :func:`main`. Each library is
timed in its own subprocess (PyTorch's and NumPy's thread pools slow each other
down inside one process), the rounds alternate between libraries so that the
drift of a shared machine hits all of them alike, and the table shows each
case's median over all timings, with ratios.

The first round of every Numba library runs with an empty Numba cache, so its
first call includes the compilation; the later rounds load the compiled code
from the cache. Both first-call times are printed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeat, min_time=0.05):
    """Seconds per call of ``fn()``: ``repeat`` timings, each long enough to be measurable."""
    fn()  # warm-up (caches, lazy imports, compiled code)
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    loops = max(1, int(min_time / max(once, 1e-9)))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - start) / loops)
    return times


def first_call(fn):
    """Seconds taken by the very first call (compilation or cache load included)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def gpu_available():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device
        return False


def main(description, libraries, cases, worker, report, default_rounds=3):
    """Run the benchmark: the parent collects, the ``--worker LIB`` children time.

    ``libraries``: column names, in order. ``worker(lib, quick)`` runs in the
    child and returns ``{"times": {case: [seconds, ...]}, ...extra}``, or
    ``{"unavailable": reason}``. ``report(results, quick, args)`` prints the
    verdict lines and returns the rows for the plot.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (seconds)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--libs", default=",".join(libraries),
                        help=f"comma-separated subset of {','.join(libraries)}")
    parser.add_argument("--plot", default=None, help="save a PNG chart here")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for every library (Numba, BLAS, PyTorch); default: all "
                             "cores. 1 gives steadier numbers on a machine shared with others")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, str(REPO_ROOT))  # time this checkout
        print(json.dumps(worker(args.worker, args.quick)))
        return None
    libs = [lib for lib in args.libs.split(",") if lib]
    rounds = args.rounds or (1 if args.quick else default_rounds)
    results = {lib: {"times": {}, "first_call": []} for lib in libs}
    with tempfile.TemporaryDirectory() as cold_cache:
        for round_ in range(rounds):
            order = libs if round_ % 2 == 0 else libs[::-1]
            for lib in order:
                _collect(results[lib], _run_worker(lib, args.quick, args.threads,
                                                   round_ == 0 and cold_cache))
    print(f"{description}\n(median over {rounds} round(s); {args.threads} thread(s) per library "
          f"on a {os.cpu_count()}-core machine, OMP_WAIT_POLICY=PASSIVE; numbers on a shared "
          f"machine are noisy)\n")
    return report(results, args.quick, args)


def threads():
    """The thread count a worker was given (call torch.set_num_threads with it)."""
    return int(os.environ["TINYGRAD_ZH_BENCH_THREADS"])


def _run_worker(lib, quick, n_threads, cold_cache):
    # Idle OpenMP threads sleep instead of spinning, in every library alike
    # (Numba's and PyTorch's): spinning threads on a shared machine make the
    # parallel runs 10-100x slower and the numbers meaningless.
    env = dict(os.environ, TINYGRAD_ZH_BENCH_THREADS=str(n_threads), OMP_WAIT_POLICY="PASSIVE")
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(n_threads)
    if cold_cache:  # the first round compiles: an empty Numba cache
        env["NUMBA_CACHE_DIR"] = cold_cache
    command = [sys.executable, sys.argv[0], "--worker", lib] + (["--quick"] if quick else [])
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"unavailable": f"worker failed: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _collect(into, result):
    if "unavailable" in result:
        into["unavailable"] = result["unavailable"]
        return
    for case, times in result.pop("times").items():
        into["times"].setdefault(case, []).extend(times)
    if "first_call" in result:
        into["first_call"].append(result.pop("first_call"))
    into.update(result)


def median(results, lib, case):
    """The median time of ``case`` for ``lib``, or None if it did not run."""
    times = results.get(lib, {}).get("times", {}).get(case)
    return statistics.median(times) if times else None


def print_table(header, rows):
    """A plain text table; ``rows`` are lists of strings."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).rjust(w) for cell, w in zip(row, widths)))
    print()


def cell(value, fmt="{:.2f}", missing="-"):
    return missing if value is None else fmt.format(value)


def print_first_calls(results):
    """First-call times of the libraries that compile (cold cache, then cached)."""
    for lib, r in results.items():
        if r.get("first_call"):
            cold, cached = r["first_call"][0], r["first_call"][1:]
            cached_text = (f", from the cache {statistics.median(cached):.2f} s" if cached
                           else " (one round only: no cached run)")
            print(f"first call of {lib}: {cold:.2f} s with an empty Numba cache (compiling)"
                  f"{cached_text}")


def unavailable_note(results):
    for lib, r in results.items():
        if "unavailable" in r:
            print(f"{lib}: n/a ({r['unavailable']})")


def plot(path, title, xlabel, ylabel, series, log_y=True):
    """A line chart: ``series`` is {label: (xs, ys)}; None values are skipped."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, (xs, ys) in series.items():
        points = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")

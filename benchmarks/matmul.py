#!/usr/bin/env python3
"""Matrix multiplication in GFLOP/s, n x n float32 for n in 128..2048.

    numpy_blas     a @ b: NumPy calls its BLAS (OpenBLAS), tuned per CPU in assembly
    numba_naive    the textbook triple loop, compiled (n <= 512: it is slow)
    numba_blocked  cache-blocked, 4 rows at a time, prange over blocks of rows
    gpu_tiled      the shared-memory tiled numba.cuda kernel (n/a without a GPU)
    gpu_cublas     cupy.matmul, i.e. cuBLAS (n/a without a GPU)
    torch          torch.matmul

A matmul of two n x n matrices is 2 n^3 floating-point operations.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/matmul.py [--quick] [--threads N] [--plot matmul.png]

Goal: numba_blocked reaches >= 25% of numpy_blas at n = 1024. (The engine
keeps calling BLAS for plain matmul: these kernels are for learning.)
"""
import harness

LIBRARIES = ["numpy_blas", "numba_naive", "numba_blocked", "gpu_tiled", "gpu_cublas", "torch"]
NAIVE_MAX = 512


def sizes(quick):
    return [128, 256] if quick else [128, 256, 512, 1024, 2048]


def worker(lib, quick):
    import numpy as np
    repeat = 3 if quick else 5
    rng = np.random.default_rng(0)
    data = {n: [rng.standard_normal((n, n), dtype=np.float32) for _ in range(2)]
            for n in sizes(quick) if lib != "numba_naive" or n <= NAIVE_MAX}
    if lib.startswith("gpu") and not harness.gpu_available():
        return {"unavailable": "no GPU"}
    if lib == "torch":
        import torch
        torch.set_num_threads(harness.threads())
        data = {n: [torch.tensor(a) for a in arrays] for n, arrays in data.items()}
        fn, result = torch.matmul, {"version": torch.__version__}
    elif lib == "numpy_blas":
        fn, result = np.matmul, {}
    elif lib.startswith("numba"):
        from tinygrad_zh.kernels.numba_cpu import matmul
        fn = matmul.matmul_naive if lib == "numba_naive" else matmul.matmul_blocked
        a = data[sizes(quick)[0]][0]
        result = {"first_call": harness.first_call(lambda: fn(a, a))}
    else:
        import cupy
        from tinygrad_zh.kernels.cuda_gpu import matmul
        kernel = matmul.matmul_tiled if lib == "gpu_tiled" else matmul.matmul_cublas

        def fn(a, b):
            kernel(a, b)
            cupy.cuda.Device().synchronize()
        data = {n: [cupy.asarray(a) for a in arrays] for n, arrays in data.items()}
        result = {}
    result["times"] = {str(n): harness.timed(lambda a=a, b=b: fn(a, b), repeat)
                       for n, (a, b) in data.items()}
    return result


def gflops(results, lib, n):
    t = harness.median(results, lib, str(n))
    return t and 2 * n**3 / t / 1e9


def report(results, quick, args):
    libs = list(results)
    header = ["n"] + [f"{lib}" for lib in libs] + ["blocked/blas"]
    rows = []
    for n in sizes(quick):
        values = {lib: gflops(results, lib, n) for lib in libs}
        blocked, blas = values.get("numba_blocked"), values.get("numpy_blas")
        rows.append([n] + [harness.cell(v, "{:.1f}", "n/a" if "unavailable" in results[lib]
                                        else "-") for lib, v in values.items()]
                    + [harness.cell(blocked and blas and blocked / blas, "{:.0%}")])
    print("matmul, n x n float32, GFLOP/s (higher is better)")
    harness.print_table(header, rows)
    harness.print_first_calls(results)
    harness.unavailable_note(results)
    n = 256 if quick else 1024
    blocked, blas = gflops(results, "numba_blocked", n), gflops(results, "numpy_blas", n)
    if blocked and blas:
        print(f"Goal numba_blocked >= 25% of numpy_blas at n={n}: {blocked / blas:.0%} -> "
              f"{'met' if blocked >= 0.25 * blas else 'NOT met'}")
    if args.plot:
        xs = sizes(quick)
        harness.plot(args.plot, "matmul n x n float32", "n", "GFLOP/s (log scale)",
                     {lib: (xs, [gflops(results, lib, x) for x in xs]) for lib in libs})


if __name__ == "__main__":
    harness.main(__doc__.splitlines()[0], LIBRARIES, None, worker, report)

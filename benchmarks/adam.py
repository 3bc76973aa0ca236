#!/usr/bin/env python3
"""One Adam step over 10 million float32 parameters, five ways.

    numpy_reference  tinygrad_zh.kernels.reference.adam_step: whole-array NumPy, ~10 passes
    numba_fused      tinygrad_zh.kernels.numba_cpu.adam: one pass per element, prange
    gpu_fused        tinygrad_zh.kernels.cuda_gpu.adam on CuPy arrays (n/a without a GPU)
    torch_foreach    torch.optim.Adam(foreach=True)
    torch_fused      torch.optim.Adam(fused=True)

The parameters are 10 tensors of 1M elements (--quick: 10 x 100k). Adam is
memory-bound: per element it reads p, g, m, v and writes p, m, v, 28 bytes in
float32, so the table also shows the achieved bandwidth (GB/s).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/adam.py [--quick] [--threads N] [--plot adam.png]

Goal: numba_fused <= 1.2x torch_fused, and >= 3x faster than numpy_reference.
"""
import harness

LIBRARIES = ["numpy_reference", "numba_fused", "gpu_fused", "torch_foreach", "torch_fused"]
BYTES_PER_ELEMENT = 7 * 4   # read p, g, m, v; write p, m, v (float32)
OPTIONS = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=True,
               amsgrad=False, maximize=False)


def sizes(quick):
    return [100_000 if quick else 1_000_000] * 10


def worker(lib, quick):
    import numpy as np
    repeat = 3 if quick else 7
    rng = np.random.default_rng(0)
    arrays = [[rng.standard_normal(n, dtype=np.float32) for n in sizes(quick)] for _ in range(2)]
    if lib.startswith("torch"):
        return _torch_worker(lib, arrays, repeat)
    state = [[np.zeros_like(p) for p in arrays[0]] for _ in range(2)]
    if lib == "numpy_reference":
        from tinygrad_zh.kernels.reference import adam_step
    elif lib == "numba_fused":
        from tinygrad_zh.kernels.numba_cpu.adam import adam_step
    else:
        if not harness.gpu_available():
            return {"unavailable": "no GPU"}
        import cupy
        from tinygrad_zh.kernels.cuda_gpu.adam import adam_step
        arrays = [[cupy.asarray(a) for a in group] for group in arrays]
        state = [[cupy.asarray(a) for a in group] for group in state]
    params, grads = arrays

    def step():
        adam_step(params, grads, *state, None, step=10, **OPTIONS)
        if lib == "gpu_fused":
            cupy.cuda.Device().synchronize()

    result = {"first_call": harness.first_call(step)} if lib != "numpy_reference" else {}
    result["times"] = {"step": harness.timed(step, repeat)}
    return result


def _torch_worker(lib, arrays, repeat):
    import torch
    torch.set_num_threads(harness.threads())
    params = [torch.tensor(a, requires_grad=True) for a in arrays[0]]
    for p, g in zip(params, arrays[1]):
        p.grad = torch.tensor(g)
    kind = {"foreach": True} if lib == "torch_foreach" else {"fused": True}
    opt = torch.optim.AdamW(params, lr=OPTIONS["lr"], weight_decay=OPTIONS["weight_decay"], **kind)
    return {"times": {"step": harness.timed(opt.step, repeat)}, "version": torch.__version__}


def report(results, quick, args):
    numel = sum(sizes(quick))
    header = ["library", "ms/step", "GB/s", "time / torch_fused", "time / numpy_reference"]
    rows = []
    base_torch = harness.median(results, "torch_fused", "step")
    base_numpy = harness.median(results, "numpy_reference", "step")
    for lib in results:
        t = harness.median(results, lib, "step")
        if t is None:
            rows.append([lib, "n/a (no GPU)" if lib == "gpu_fused" else "n/a", "-", "-", "-"])
            continue
        rows.append([lib, f"{t * 1e3:.2f}", f"{numel * BYTES_PER_ELEMENT / t / 1e9:.1f}",
                     harness.cell(base_torch and t / base_torch, "{:.2f}x"),
                     harness.cell(base_numpy and t / base_numpy, "{:.2f}x")])
    print(f"Adam step over {numel / 1e6:g}M float32 parameters ({len(sizes(quick))} tensors)")
    harness.print_table(header, rows)
    harness.print_first_calls(results)
    harness.unavailable_note(results)
    fused = harness.median(results, "numba_fused", "step")
    if fused and base_torch:
        print(f"Goal numba_fused <= 1.2x torch_fused: {fused / base_torch:.2f}x -> "
              f"{'met' if fused <= 1.2 * base_torch else 'NOT met'}")
    if fused and base_numpy:
        print(f"Goal numba_fused >= 3x faster than numpy_reference: {base_numpy / fused:.1f}x -> "
              f"{'met' if base_numpy >= 3 * fused else 'NOT met'}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        shown = [(lib, harness.median(results, lib, "step")) for lib in results]
        shown = [(lib, t * 1e3) for lib, t in shown if t is not None]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.barh([lib for lib, _ in shown], [t for _, t in shown])
        ax.set_xlabel("ms per Adam step (lower is better)")
        ax.set_title(f"Adam over {numel / 1e6:g}M float32 parameters")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    harness.main(__doc__.splitlines()[0], LIBRARIES, None, worker, report)

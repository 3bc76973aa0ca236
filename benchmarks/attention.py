#!/usr/bin/env python3
"""Causal attention, forward + backward, B=8 H=4 D=32, T in {64, 128, 256, 512}.

    composite    tinygrad_zh.ops.attention.sdpa_reference: softmax(QK^T/sqrt(d))V with
                 Tensor ops, builds the T x T matrix (and its gradient)
    numba_fused  tinygrad_zh scaled_dot_product_attention on the CPU: the fused Numba
                 kernels (online softmax, saved log-sum-exp, blockwise backward)
    gpu_fused    the same on CUDA tensors: the numba.cuda kernels (n/a without a GPU)
    torch_sdpa   torch.nn.functional.scaled_dot_product_attention

Times are for ``out = attention(q, k, v, is_causal=True); out.backward(g)`` in
float32. Peak memory is what Python's tracemalloc sees NumPy allocate during one
forward + backward (PyTorch's allocator is invisible to it: '-'); it grows like
T^2 for the composite and like T for the fused kernels.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/attention.py [--quick] [--threads N] [--plot attention.png]

Goal: numba_fused <= 1.5x torch_sdpa at T=256, and >= 2x faster than composite.
"""
import harness

LIBRARIES = ["composite", "numba_fused", "gpu_fused", "torch_sdpa"]
BATCH, HEADS, HEAD_DIM = 8, 4, 32


def lengths(quick):
    return [64, 128] if quick else [64, 128, 256, 512]


def worker(lib, quick):
    import numpy as np
    repeat = 3 if quick else 5
    rng = np.random.default_rng(0)
    data = {t: [rng.standard_normal((BATCH, HEADS, t, HEAD_DIM), dtype=np.float32)
                for _ in range(4)] for t in lengths(quick)}
    if lib == "torch_sdpa":
        return _torch_worker(data, repeat)
    if lib == "gpu_fused" and not harness.gpu_available():
        return {"unavailable": "no GPU"}
    import tinygrad_zh as tg
    from tinygrad_zh.ops.attention import scaled_dot_product_attention, sdpa_reference
    attention = sdpa_reference if lib == "composite" else scaled_dot_product_attention
    device = "cuda" if lib == "gpu_fused" else "cpu"
    result = {"times": {}, "peak_mb": {}}
    for t, arrays in data.items():
        q, k, v = (tg.tensor(a, device=device, requires_grad=True) for a in arrays[:3])
        grad = tg.tensor(arrays[3], device=device)

        def step():
            q.grad = k.grad = v.grad = None
            attention(q, k, v, is_causal=True).backward(grad)
            if device == "cuda":
                tg.backend.cupy().cuda.Device().synchronize()

        if t == lengths(quick)[0] and lib != "composite":
            result["first_call"] = harness.first_call(step)
        result["times"][str(t)] = harness.timed(step, repeat)
        if device == "cpu":
            result["peak_mb"][str(t)] = _peak_mb(step)
    return result


def _peak_mb(step):
    import tracemalloc
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def _torch_worker(data, repeat):
    import torch
    torch.set_num_threads(harness.threads())
    result = {"times": {}, "version": torch.__version__}
    for t, arrays in data.items():
        q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays[:3])
        grad = torch.tensor(arrays[3])

        def step():
            q.grad = k.grad = v.grad = None
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)

        result["times"][str(t)] = harness.timed(step, repeat)
    return result


def report(results, quick, args):
    libs = list(results)
    header = ["T"] + [f"{lib} ms" for lib in libs] + ["fused/torch", "composite/fused",
                                                      "composite MB", "fused MB"]
    rows = []
    for t in lengths(quick):
        times = {lib: harness.median(results, lib, str(t)) for lib in libs}
        fused, torch_t, composite = (times.get(n) for n in ("numba_fused", "torch_sdpa",
                                                            "composite"))
        peaks = [results.get(lib, {}).get("peak_mb", {}).get(str(t))
                 for lib in ("composite", "numba_fused")]
        rows.append([t] + [harness.cell(x and x * 1e3, missing="n/a") for x in times.values()]
                    + [harness.cell(fused and torch_t and fused / torch_t, "{:.2f}x"),
                       harness.cell(fused and composite and composite / fused, "{:.2f}x")]
                    + [harness.cell(p, "{:.1f}") for p in peaks])
    print(f"causal attention fwd+bwd, float32, B={BATCH} H={HEADS} D={HEAD_DIM} "
          f"(peak MB: tracemalloc, NumPy allocations during one fwd+bwd)")
    harness.print_table(header, rows)
    harness.print_first_calls(results)
    harness.unavailable_note(results)
    t = 128 if quick else 256
    fused, torch_t, composite = (harness.median(results, lib, str(t))
                                 for lib in ("numba_fused", "torch_sdpa", "composite"))
    if fused and torch_t:
        print(f"Goal numba_fused <= 1.5x torch_sdpa at T={t}: {fused / torch_t:.2f}x -> "
              f"{'met' if fused <= 1.5 * torch_t else 'NOT met'}")
    if fused and composite:
        print(f"Goal numba_fused >= 2x faster than composite at T={t}: {composite / fused:.2f}x "
              f"-> {'met' if composite >= 2 * fused else 'NOT met'}")
    if args.plot:
        xs = lengths(quick)
        harness.plot(args.plot, f"causal attention fwd+bwd (B={BATCH}, H={HEADS}, D={HEAD_DIM})",
                     "sequence length T", "ms (log scale)",
                     {lib: (xs, [harness.median(results, lib, str(x)) and
                                 harness.median(results, lib, str(x)) * 1e3 for x in xs])
                      for lib in libs})


if __name__ == "__main__":
    harness.main(__doc__.splitlines()[0], LIBRARIES, None, worker, report)

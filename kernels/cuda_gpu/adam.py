"""Adam / AdamW fused into one pass per element, as a numba.cuda kernel.

The same per-element formula as the Numba CPU kernel (``kernels/adam_element.py``), run on the GPU: thousands of
threads, each handling the elements ``i, i + stride, i + 2*stride, ...`` (a
"grid-stride loop", so a fixed-size grid covers an array of any length).
On a real GPU the arrays are CuPy arrays, which Numba accepts through the CUDA
array interface; in the test suite the kernel runs in Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) on NumPy arrays.
"""
from numba import cuda

from ..adam_element import kernel_arguments, update

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 1024  # enough to fill any current GPU; the stride loop does the rest

_update = cuda.jit(device=True)(update)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, **options):
    """Same signature and result as :func:`tinygrad_zh.kernels.reference.adam_step`.

    One kernel launch per parameter (arrays C-contiguous, on one GPU).
    """
    for p, g, m, v, vmax, hyper in kernel_arguments(params, grads, exp_avgs, exp_avg_sqs,
                                                    max_exp_avg_sqs, **options):
        if p.size == 0:
            continue
        blocks = min(MAX_BLOCKS, (p.size + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)
        _adam_kernel[blocks, THREADS_PER_BLOCK](p, g, m, v, vmax, hyper)


@cuda.jit(cache=True)
def _adam_kernel(p, g, m, v, vmax, hyper):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        _update(i, p, g, m, v, vmax, hyper)

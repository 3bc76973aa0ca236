"""Adam / AdamW fused into one pass per element, compiled by Numba for the CPU.

The NumPy reference makes about ten passes over memory per parameter (each
``m *= beta1``, ``v += ...`` reads and writes a whole array). This kernel reads
p, g, m, v once and writes p, m, v once: Adam is memory-bound, so fewer passes
is what makes it fast. The per-element formula is ``kernels/adam_element.py``,
shared with the GPU kernel.

Large tensors are split over the CPU cores with ``prange``; small ones run on
one thread, because waking the worker threads costs more (tens to hundreds of
microseconds) than updating a few thousand numbers.

    >>> import numpy as np
    >>> p, g = np.ones(5, np.float32), np.full(5, 0.5, np.float32)
    >>> m, v = np.zeros(5, np.float32), np.zeros(5, np.float32)
    >>> adam_step([p], [g], [m], [v], None, step=1, lr=0.1, beta1=0.9, beta2=0.999,
    ...           eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False)
    >>> p.round(5)
    array([0.9, 0.9, 0.9, 0.9, 0.9], dtype=float32)
"""
from numba import njit, prange

from ..adam_element import kernel_arguments, update

# Below this many elements one thread is faster than waking the others.
PARALLEL_MIN_SIZE = 1 << 16

_update = njit(inline="always")(update)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, **options):
    """Same signature and result as :func:`tinygrad_zh.kernels.reference.adam_step`.

    Arrays must be C-contiguous (the dispatcher sees to that). One compiled
    call per parameter tensor: a call costs about a microsecond.
    """
    for p, g, m, v, vmax, hyper in kernel_arguments(params, grads, exp_avgs, exp_avg_sqs,
                                                    max_exp_avg_sqs, **options):
        kernel = _parallel_kernel if p.size >= PARALLEL_MIN_SIZE else _serial_kernel
        kernel(p, g, m, v, vmax, hyper)


@njit(parallel=True, cache=True)
def _parallel_kernel(p, g, m, v, vmax, hyper):
    for i in prange(p.size):
        _update(i, p, g, m, v, vmax, hyper)


@njit(cache=True)
def _serial_kernel(p, g, m, v, vmax, hyper):
    for i in range(p.size):
        _update(i, p, g, m, v, vmax, hyper)

"""Adam / AdamW fused into one pass per element, compiled by Numba for the CPU.

The NumPy reference makes about ten passes over memory per parameter (each
``m *= beta1``, ``v += ...`` reads and writes a whole array). This kernel reads
p, g, m, v once and writes p, m, v once: Adam is memory-bound, so fewer passes
is what makes it fast. ``prange`` splits the elements over the CPU cores.

    >>> import numpy as np
    >>> p, g = np.ones(5, np.float32), np.full(5, 0.5, np.float32)
    >>> m, v = np.zeros(5, np.float32), np.zeros(5, np.float32)
    >>> adam_step([p], [g], [m], [v], None, step=1, lr=0.1, beta1=0.9, beta2=0.999,
    ...           eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False)
    >>> p.round(5)
    array([0.9, 0.9, 0.9, 0.9, 0.9], dtype=float32)
"""
import numpy as np
from numba import njit, prange

from ..reference import adam_bias_corrections


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, step, lr, beta1, beta2,
              eps, weight_decay, decoupled, amsgrad, maximize):
    """Same signature and result as :func:`tinygrad_zh.kernels.reference.adam_step`.

    Arrays must be C-contiguous (the dispatcher sees to that). One compiled
    call per parameter: a call costs about a microsecond, so a model with a
    hundred parameter tensors pays ~0.1 ms per step in calls.
    """
    step_size, bias_correction2_sqrt = adam_bias_corrections(step, lr, beta1, beta2)
    # Without amsgrad the kernel never touches vmax: an empty stand-in (not an
    # alias of v, which the CUDA simulator would copy back over v).
    vmaxs = max_exp_avg_sqs if amsgrad else [v[:0] for v in exp_avg_sqs]
    for p, g, m, v, vmax in zip(params, grads, exp_avgs, exp_avg_sqs, vmaxs):
        # Scalars in the parameter's dtype, so float32 arrays are updated in
        # float32 arithmetic (as PyTorch and the NumPy reference do).
        s = p.dtype.type
        _adam_kernel(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                     vmax.reshape(-1), s(step_size), s(bias_correction2_sqrt), s(beta1),
                     s(1 - beta1), s(beta2), s(1 - beta2), s(eps), s(weight_decay),
                     s(1 - lr * weight_decay), weight_decay != 0 and decoupled,
                     weight_decay != 0 and not decoupled, amsgrad, maximize)


@njit(parallel=True, cache=True)
def _adam_kernel(p, g, m, v, vmax, step_size, bias_correction2_sqrt, beta1, one_minus_beta1,
                 beta2, one_minus_beta2, eps, weight_decay, decay_factor, decoupled_decay,
                 l2_decay, amsgrad, maximize):
    for i in prange(p.size):
        grad = -g[i] if maximize else g[i]
        param = p[i]
        if decoupled_decay:
            param *= decay_factor          # AdamW: p * (1 - lr*wd)
        if l2_decay:
            grad += weight_decay * param   # Adam: the gradient of wd/2 |p|^2
        m_i = beta1 * m[i] + one_minus_beta1 * grad
        v_i = beta2 * v[i] + one_minus_beta2 * grad * grad
        m[i] = m_i
        v[i] = v_i
        if amsgrad:
            v_i = max(vmax[i], v_i)
            vmax[i] = v_i
        p[i] = param - step_size * m_i / (np.sqrt(v_i) / bias_correction2_sqrt + eps)

"""The Adam / AdamW update of one element: written once, compiled for both devices.

``numba_cpu/adam.py`` compiles :func:`update` with ``numba.njit`` and calls it
from a CPU loop; ``cuda_gpu/adam.py`` compiles the same function with
``numba.cuda.jit(device=True)`` and calls it from every GPU thread. Keeping the
formula in one place means the two kernels cannot drift apart.

:func:`kernel_arguments` turns ``adam_step``'s arguments into what the kernels
take, per parameter: the flat arrays and one tuple of scalars (``hyper``).

    >>> import numpy as np
    >>> p, g, m, v = np.ones(1), np.full(1, 0.5), np.zeros(1), np.zeros(1)
    >>> (args,) = kernel_arguments([p], [g], [m], [v], None, step=1, lr=0.1, beta1=0.9,
    ...                            beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
    ...                            amsgrad=False, maximize=False)
    >>> update(0, *args)
    >>> round(float(p[0]), 6), round(float(m[0]), 6)
    (0.9, 0.05)
"""
import math

from .reference import adam_bias_corrections


def update(i, p, g, m, v, vmax, hyper):
    """One element of PyTorch's Adam: p, m, v (and vmax with amsgrad) updated in place."""
    (step_size, bias_correction2_sqrt, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
     weight_decay, decay_factor, decoupled_decay, l2_decay, amsgrad, maximize) = hyper
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
    p[i] = param - step_size * m_i / (math.sqrt(v_i) / bias_correction2_sqrt + eps)


def kernel_arguments(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, step, lr, beta1,
                     beta2, eps, weight_decay, decoupled, amsgrad, maximize):
    """Per parameter: ``(p, g, m, v, vmax, hyper)`` with flat (C-contiguous) arrays."""
    step_size, bias_correction2_sqrt = adam_bias_corrections(step, lr, beta1, beta2)
    # Without amsgrad the kernel never touches vmax: an empty stand-in (not an
    # alias of v, which the CUDA simulator would copy back over v).
    vmaxs = max_exp_avg_sqs if amsgrad else [v[:0] for v in exp_avg_sqs]
    for p, g, m, v, vmax in zip(params, grads, exp_avgs, exp_avg_sqs, vmaxs):
        # Scalars in the parameter's dtype, so float32 arrays are updated in
        # float32 arithmetic (as PyTorch and the NumPy reference do).
        s = p.dtype.type
        hyper = (s(step_size), s(bias_correction2_sqrt), s(beta1), s(1 - beta1), s(beta2),
                 s(1 - beta2), s(eps), s(weight_decay), s(1 - lr * weight_decay),
                 weight_decay != 0 and decoupled, weight_decay != 0 and not decoupled,
                 amsgrad, maximize)
        yield p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), vmax.reshape(-1), hyper

"""The plain NumPy versions of every kernel: the truth the fast ones are tested against.

Each function here is written to be read: whole-array NumPy (or CuPy — the
``xp`` array module is taken from the inputs), no loops over elements, the
formula in the comments. The Numba (``numba_cpu/``) and CUDA (``cuda_gpu/``)
versions compute exactly the same thing with the same signature, faster.

    >>> import numpy as np
    >>> p, g = np.ones(3), np.full(3, 0.5)
    >>> m, v = np.zeros(3), np.zeros(3)
    >>> adam_step([p], [g], [m], [v], None, step=1, lr=0.1, beta1=0.9, beta2=0.999,
    ...           eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False)
    >>> p.round(6)  # the first Adam step moves every weight by about lr
    array([0.9, 0.9, 0.9])
"""
import math

from tinygrad_zh.backend import array_module


# ---------------------------------------------------------------------- Adam
def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, step, lr, beta1, beta2,
              eps, weight_decay, decoupled, amsgrad, maximize):
    """One Adam / AdamW step over lists of arrays, in place (PyTorch's formulas).

    ``params``, ``exp_avgs`` (m), ``exp_avg_sqs`` (v) and, with amsgrad,
    ``max_exp_avg_sqs`` are updated in place; ``grads`` are only read.
    ``step`` is the step count t, already incremented (1 at the first step)::

        g = -g                            if maximize
        p = p * (1 - lr*wd)               if decoupled (AdamW)
        g = g + wd * p                    otherwise (Adam's L2 penalty)
        m = beta1 m + (1 - beta1) g
        v = beta2 v + (1 - beta2) g^2
        v = vmax = max(vmax, v)           if amsgrad
        p = p - lr/(1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """
    step_size, bias_correction2_sqrt = adam_bias_corrections(step, lr, beta1, beta2)
    vmaxs = max_exp_avg_sqs if amsgrad else [None] * len(params)
    for p, g, m, v, vmax in zip(params, grads, exp_avgs, exp_avg_sqs, vmaxs):
        xp = array_module(p)
        if maximize:
            g = -g
        if weight_decay != 0 and decoupled:
            p *= 1 - lr * weight_decay
        elif weight_decay != 0:
            g = g + weight_decay * p
        # One scratch array does all the remaining work, so the step allocates
        # at most two temporaries per parameter (this one, and g above).
        scratch = xp.multiply(g, 1 - beta1)
        m *= beta1
        m += scratch
        xp.multiply(g, g, out=scratch)
        scratch *= 1 - beta2
        v *= beta2
        v += scratch
        if amsgrad:
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        xp.sqrt(v, out=scratch)             # scratch = sqrt(v) / sqrt(bc2) + eps
        scratch /= bias_correction2_sqrt
        scratch += eps
        xp.divide(m, scratch, out=scratch)  # scratch = m / denominator
        scratch *= step_size
        p -= scratch


def adam_bias_corrections(step, lr, beta1, beta2):
    """``(lr / (1 - beta1^t), sqrt(1 - beta2^t))``: the scalars every Adam kernel needs.

    Early on m and v are biased towards their zero start (after one step
    m = (1 - beta1) g, a tenth of g for beta1 = 0.9); dividing by 1 - beta^t
    undoes that, and the correction fades away as t grows.
    """
    if step < 1:
        raise ValueError(f"adam_step: step must be >= 1 (the count after incrementing), got {step}")
    return lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step)

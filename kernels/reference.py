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

import numpy as np

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


# ---------------------------------------------------------------------- attention
def attention_forward(q, k, v, mask, is_causal, scale):
    """Scaled dot-product attention on whole matrices: ``(out, lse)``.

    ``q`` (..., L, E), ``k`` (..., S, E), ``v`` (..., S, Ev) with one batch
    shape (...), C-contiguous, one dtype; ``mask`` is None or an additive float
    array (..., L, S) (0 to keep, -inf to drop); ``is_causal`` lets query i see
    keys j <= i (top-left aligned, as PyTorch). Returns ``out`` (..., L, Ev)
    and the log-sum-exp of each row of scores, ``lse`` (..., L), which the
    backward needs to rebuild the probabilities; the backward's gradients have
    the shapes of q, k and v, and are arrays of their own, not views. This
    version builds the full (..., L, S) score matrix — the memory the fused
    kernels avoid.
    """
    scores = _scores(q, k, mask, is_causal, scale)
    xp = array_module(q)
    row_max = scores.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):  # a fully masked row: -inf - (-inf) = NaN, as PyTorch
        p = xp.exp(scores - row_max)     # minus the row max: exp never overflows
    row_sum = p.sum(axis=-1, keepdims=True)
    lse = (row_max + xp.log(row_sum))[..., 0]
    return (p / row_sum) @ v, lse


def attention_backward(q, k, v, mask, is_causal, scale, out, lse, grad_out):
    """Gradients ``(dq, dk, dv)`` of attention, from the forward's ``out`` and ``lse``.

    With P = softmax(S), S = scale Q K^T + mask, O = P V and G = dL/dO::

        dV = P^T G
        dP = G V^T
        dS = P * (dP - D),   D_i = sum_j P_ij dP_ij = sum_e G_ie O_ie
        dQ = scale dS K,     dK = scale dS^T Q

    (D is the softmax backward's row sum, computed from O and G without P.)
    """
    xp = array_module(q)
    p = xp.exp(_scores(q, k, mask, is_causal, scale) - lse[..., None])
    grad_v = p.swapaxes(-1, -2) @ grad_out
    grad_p = grad_out @ v.swapaxes(-1, -2)
    d = (grad_out * out).sum(axis=-1, keepdims=True)
    grad_s = p * (grad_p - d) * scale
    return grad_s @ k, grad_s.swapaxes(-1, -2) @ q, grad_v


def _scores(q, k, mask, is_causal, scale):
    """scale Q K^T + mask, with -inf above the diagonal when causal: (..., L, S)."""
    xp = array_module(q)
    scores = (q @ k.swapaxes(-1, -2)) * scale
    if mask is not None:
        scores += mask
    if is_causal:
        length, source_length = scores.shape[-2:]
        future = xp.triu(xp.ones((length, source_length), dtype=bool), k=1)
        scores[..., future] = -xp.inf
    return scores


def as_heads(x):
    """(..., T, E) -> (N, T, E), N the product of the batch dims: a view of ``x``.

    The fused kernels are written for 3-D arrays, one (T, E) matrix per head.
    """
    return x.reshape((-1,) + x.shape[-2:])

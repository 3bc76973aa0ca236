"""Adam / AdamW fused into one pass per element, as a numba.cuda kernel.

The same arithmetic as the Numba CPU kernel, written for the GPU: thousands of
threads, each handling the elements ``i, i + stride, i + 2*stride, ...`` (a
"grid-stride loop", so a fixed-size grid covers an array of any length).
On a real GPU the arrays are CuPy arrays, which Numba accepts through the CUDA
array interface; in the test suite the kernel runs in Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) on NumPy arrays.
"""
import math

from numba import cuda

from ..reference import adam_bias_corrections

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 1024  # enough to fill any current GPU; the stride loop does the rest


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, step, lr, beta1, beta2,
              eps, weight_decay, decoupled, amsgrad, maximize):
    """Same signature and result as :func:`tinygrad_zh.kernels.reference.adam_step`.

    One kernel launch per parameter (arrays C-contiguous, on one GPU).
    """
    step_size, bias_correction2_sqrt = adam_bias_corrections(step, lr, beta1, beta2)
    # Without amsgrad the kernel never touches vmax: an empty stand-in (not an
    # alias of v, which the CUDA simulator would copy back over v).
    vmaxs = max_exp_avg_sqs if amsgrad else [v[:0] for v in exp_avg_sqs]
    for p, g, m, v, vmax in zip(params, grads, exp_avgs, exp_avg_sqs, vmaxs):
        if p.size == 0:
            continue
        s = p.dtype.type  # scalars in the parameter's dtype: float32 math for float32 arrays
        blocks = min(MAX_BLOCKS, (p.size + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)
        _adam_kernel[blocks, THREADS_PER_BLOCK](
            p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), vmax.reshape(-1),
            s(step_size), s(bias_correction2_sqrt), s(beta1), s(1 - beta1), s(beta2),
            s(1 - beta2), s(eps), s(weight_decay), s(1 - lr * weight_decay),
            weight_decay != 0 and decoupled, weight_decay != 0 and not decoupled, amsgrad,
            maximize)


@cuda.jit(cache=True)
def _adam_kernel(p, g, m, v, vmax, step_size, bias_correction2_sqrt, beta1, one_minus_beta1,
                 beta2, one_minus_beta2, eps, weight_decay, decay_factor, decoupled_decay,
                 l2_decay, amsgrad, maximize):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, p.size, stride):
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

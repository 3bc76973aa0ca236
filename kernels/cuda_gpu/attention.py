"""Fused attention on the GPU, as numba.cuda kernels (one block per tile of rows).

The forward launches one block of ``ROWS_PER_BLOCK`` threads per (batch*head,
tile of query rows); each thread owns one query row and walks over the keys
with the online softmax in its purest form, one key at a time::

    m' = max(m, s_j)
    l  = l * exp(m - m') + exp(s_j - m')
    acc = acc * exp(m - m') + exp(s_j - m') * v_j

so no thread ever holds more than its own row: memory grows linearly with the
sequence length. The backward rebuilds each probability from the saved
log-sum-exp, ``p_ij = exp(s_ij - lse_i)``, in two kernels: one thread per
query row sums dQ, one thread per key row sums dK and dV. Each thread writes
only its own row, so no two threads ever add into the same memory (no atomics).

A teaching kernel: production kernels (FlashAttention) also stage tiles of K
and V in shared memory and use tensor cores. Accumulators are float64 in
registers, so head dims up to ``MAX_HEAD_DIM``; larger ones run the reference
(on CuPy). In the test suite these kernels run in Numba's CUDA simulator.
"""
import math

import numba
from numba import cuda

from tinygrad_zh.backend import array_module

from .. import reference
from ..reference import as_heads

ROWS_PER_BLOCK = 32
MAX_HEAD_DIM = 128   # size of the per-thread accumulators (registers / local memory)


def attention_forward(q, k, v, mask, is_causal, scale):
    """Same contract as :func:`tinygrad_zh.kernels.reference.attention_forward`."""
    if max(q.shape[-1], v.shape[-1]) > MAX_HEAD_DIM:
        return reference.attention_forward(q, k, v, mask, is_causal, scale)
    xp = array_module(q)
    out = xp.empty(q.shape[:-1] + v.shape[-1:], q.dtype)
    lse = xp.empty(q.shape[:-1], q.dtype)
    if out.size:
        # The kernels see (N, T, E): all batch dims as one (views: they write into out, lse).
        q3 = as_heads(q)
        _forward_kernel[_grid(q3.shape[0], q3.shape[1]), ROWS_PER_BLOCK](
            q3, as_heads(k), as_heads(v), *_mask_arguments(mask, q), is_causal, scale, as_heads(out),
            lse.reshape(-1, lse.shape[-1]))
    return out, lse


def attention_backward(q, k, v, mask, is_causal, scale, out, lse, grad_out):
    """Same contract as :func:`tinygrad_zh.kernels.reference.attention_backward`."""
    if max(q.shape[-1], v.shape[-1]) > MAX_HEAD_DIM:
        return reference.attention_backward(q, k, v, mask, is_causal, scale, out, lse, grad_out)
    xp = array_module(q)
    d = (grad_out * out).sum(axis=-1)   # D_i = sum_e G_ie O_ie (CuPy does this one)
    grad_q, grad_k, grad_v = xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
    mask, has_mask = _mask_arguments(mask, q)
    q3, k3, v3, g3 = as_heads(q), as_heads(k), as_heads(v), as_heads(grad_out)
    lse2, d2 = lse.reshape(-1, lse.shape[-1]), d.reshape(-1, d.shape[-1])
    if grad_q.size:
        _grad_query_kernel[_grid(q3.shape[0], q3.shape[1]), ROWS_PER_BLOCK](
            q3, k3, v3, mask, has_mask, is_causal, scale, lse2, g3, d2, as_heads(grad_q))
    if grad_k.size:
        _grad_key_value_kernel[_grid(k3.shape[0], k3.shape[1]), ROWS_PER_BLOCK](
            q3, k3, v3, mask, has_mask, is_causal, scale, lse2, g3, d2, as_heads(grad_k),
            as_heads(grad_v))
    return grad_q, grad_k, grad_v


def _grid(n, rows):
    """One block per (batch*head, tile of ROWS_PER_BLOCK rows)."""
    return n, (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK


def _mask_arguments(mask, q):
    """(mask, has_mask); without a mask, a 1x1x1 stand-in the kernels never read."""
    if mask is None:
        return array_module(q).zeros((1, 1, 1), q.dtype), False
    return as_heads(mask), True


@cuda.jit(device=True, inline=True)
def _score(q, k, mask, has_mask, scale, n, i, j):
    s = 0.0
    for e in range(q.shape[2]):
        s += q[n, i, e] * k[n, j, e]
    s *= scale
    if has_mask:
        s += mask[n, i, j]
    return s


@cuda.jit(device=True, inline=True)
def _probability_and_grad_score(q, k, v, mask, has_mask, scale, lse, grad_out, d, n, i, j):
    """For query i and key j: (visible, p, dL/d(score)), what both backward kernels need.

    p is rebuilt from the saved row log-sum-exp, p = exp(s - lse); with
    dP = G Vᵀ and D = rowsum(G ⊙ O), dL/ds = p (dP - D) · scale. A masked pair
    is not visible: it took no part in the forward.
    """
    s = _score(q, k, mask, has_mask, scale, n, i, j)
    if s == -math.inf:
        return False, 0.0, 0.0
    p = math.exp(s - lse[n, i])
    grad_p = 0.0
    for e in range(v.shape[2]):
        grad_p += grad_out[n, i, e] * v[n, j, e]
    return True, p, p * (grad_p - d[n, i]) * scale


@cuda.jit(cache=True)
def _forward_kernel(q, k, v, mask, has_mask, is_causal, scale, out, lse):
    n = cuda.blockIdx.x
    i = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x   # this thread's query row
    if i >= q.shape[1]:
        return
    value_dim = v.shape[2]
    acc = cuda.local.array(MAX_HEAD_DIM, numba.float64)
    for e in range(value_dim):
        acc[e] = 0.0
    row_max = -math.inf
    row_sum = 0.0
    end = min(i + 1, k.shape[1]) if is_causal else k.shape[1]
    for j in range(end):
        s = _score(q, k, mask, has_mask, scale, n, i, j)
        if s == -math.inf:        # a masked key adds nothing
            continue
        new_max = max(row_max, s)
        rescale = math.exp(row_max - new_max)   # 0 at the first key (exp(-inf))
        p = math.exp(s - new_max)
        row_sum = row_sum * rescale + p
        for e in range(value_dim):
            acc[e] = acc[e] * rescale + p * v[n, j, e]
        row_max = new_max
    for e in range(value_dim):
        out[n, i, e] = math.nan if row_sum == 0 else acc[e] / row_sum  # all masked: NaN
    # (== 0, not <= 0: a NaN score made row_sum NaN, and NaN must reach lse too)
    lse[n, i] = -math.inf if row_sum == 0 else row_max + math.log(row_sum)


@cuda.jit(cache=True)
def _grad_query_kernel(q, k, v, mask, has_mask, is_causal, scale, lse, grad_out, d, grad_q):
    n = cuda.blockIdx.x
    i = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x   # this thread's query row
    if i >= q.shape[1]:
        return
    acc = cuda.local.array(MAX_HEAD_DIM, numba.float64)
    for e in range(q.shape[2]):
        acc[e] = 0.0
    end = min(i + 1, k.shape[1]) if is_causal else k.shape[1]
    for j in range(end):
        visible, p, grad_s = _probability_and_grad_score(q, k, v, mask, has_mask, scale, lse,
                                                         grad_out, d, n, i, j)
        if not visible:
            continue
        for e in range(q.shape[2]):
            acc[e] += grad_s * k[n, j, e]
    for e in range(q.shape[2]):
        grad_q[n, i, e] = acc[e]


@cuda.jit(cache=True)
def _grad_key_value_kernel(q, k, v, mask, has_mask, is_causal, scale, lse, grad_out, d, grad_k,
                           grad_v):
    n = cuda.blockIdx.x
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x   # this thread's key row
    if j >= k.shape[1]:
        return
    acc_k = cuda.local.array(MAX_HEAD_DIM, numba.float64)
    acc_v = cuda.local.array(MAX_HEAD_DIM, numba.float64)
    for e in range(MAX_HEAD_DIM):
        acc_k[e] = 0.0
        acc_v[e] = 0.0
    start = j if is_causal else 0   # causal: only queries i >= j see key j
    for i in range(start, q.shape[1]):
        visible, p, grad_s = _probability_and_grad_score(q, k, v, mask, has_mask, scale, lse,
                                                         grad_out, d, n, i, j)
        if not visible:
            continue
        for e in range(v.shape[2]):
            acc_v[e] += p * grad_out[n, i, e]
        for e in range(q.shape[2]):
            acc_k[e] += grad_s * q[n, i, e]
    for e in range(k.shape[2]):
        grad_k[n, j, e] = acc_k[e]
    for e in range(v.shape[2]):
        grad_v[n, j, e] = acc_v[e]

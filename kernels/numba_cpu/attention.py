"""Fused attention (FlashAttention style), compiled by Numba for the CPU.

The reference builds the whole (L, S) score matrix for every batch and head:
at T = 512 that is 512 x 512 floats per head, written to memory and read back
several times. Here each thread takes one batch*head at a time, its query rows
in blocks of BLOCK_Q, and walks the keys in blocks of BLOCK_K, keeping only a
BLOCK_Q x BLOCK_K tile of scores, which stays in the CPU cache.

The trick that makes one pass possible is the *online softmax*. For one row,
after the keys seen so far it keeps the running max ``m``, the running sum
``l = sum exp(s_j - m)`` and the running output ``acc = sum exp(s_j - m) v_j``.
A new block of scores with a larger max m' rescales what was summed so far by
``exp(m - m')``, and at the end ``out = acc / l``. The row's log-sum-exp
``m + log l`` is saved, so the backward can rebuild each probability as
``exp(s_ij - lse_i)`` block by block instead of storing them.

Where the time goes: about 85% in the products of two tiles (two per block
of keys in the forward, five in the backward), all through one small matmul,
``dot_add`` from ``tiles.py``. The rest is made cheap by doing it once, not
per score or per row: the scale 1/sqrt(d) is applied to Q up front, and the
exp, the row maxima and the row sums work on a whole tile per call.
(``benchmarks/attention.py``, causal, B=8, H=4, T=256, D=32, 2 cores: forward
+ backward took 13.7 ms before these changes and the per-head copies below,
9.6 ms after.)

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = (rng.standard_normal((2, 5, 3)) for _ in range(3))
    >>> from tinygrad_zh.kernels import reference
    >>> out, lse = attention_forward(q, k, v, None, True, 0.5)
    >>> expected = reference.attention_forward(q, k, v, None, True, 0.5)
    >>> bool(np.allclose(out, expected[0]) and np.allclose(lse, expected[1]))
    True
"""
import numpy as np
from numba import njit, prange
from numba.extending import overload

from ..reference import as_heads
from .tiles import dot_add

BLOCK_Q = 32   # query rows per block: a tile of BLOCK_Q x BLOCK_K scores fits in L1 cache
BLOCK_K = 64   # keys per step of the online softmax


def attention_forward(q, k, v, mask, is_causal, scale):
    """Same contract as :func:`tinygrad_zh.kernels.reference.attention_forward`."""
    out = np.empty(q.shape[:-1] + v.shape[-1:], q.dtype)
    lse = np.empty(q.shape[:-1], q.dtype)
    # The kernels see (N, T, E): all batch dims as one (views: they write into out, lse).
    _forward(as_heads(q), as_heads(k), as_heads(v), *_mask_arguments(mask, q), is_causal,
             q.dtype.type(scale), as_heads(out), lse.reshape(-1, lse.shape[-1]))
    return out, lse


def attention_backward(q, k, v, mask, is_causal, scale, out, lse, grad_out):
    """Same contract as :func:`tinygrad_zh.kernels.reference.attention_backward`."""
    grad_q, grad_k, grad_v = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    # D_i = sum_e G_ie O_ie: the softmax backward's row sum, without P.
    d = np.einsum("...le,...le->...l", grad_out, out)
    _backward(as_heads(q), as_heads(k), as_heads(v), *_mask_arguments(mask, q), is_causal,
              q.dtype.type(scale), lse.reshape(-1, lse.shape[-1]), as_heads(grad_out),
              d.reshape(-1, d.shape[-1]), as_heads(grad_q), as_heads(grad_k), as_heads(grad_v))
    return grad_q, grad_k, grad_v


def _mask_arguments(mask, q):
    """(mask, has_mask): without a mask, a 1x1x1 stand-in that the kernels never
    read, so that Numba compiles one version of each kernel with an array argument."""
    if mask is None:
        return np.zeros((1, 1, 1), q.dtype), False
    return as_heads(mask), True


# Both kernels give each thread whole heads (batch*head n): it alone writes that
# head's outputs, so no two threads ever add into the same memory. Per head, a
# thread first makes the small copies its tile products want (Q times the scale,
# and the transposes: see tiles.py), a few tens of KB that the allocator hands
# out again and again. (Made for all heads at once, outside, they were fresh
# megabytes at every call: the first touch of new memory costs page faults,
# about 0.8 ms per MB on our test machine. Doing without them, and without the
# copy autograd made of gradients that were views, took T=256 from 13.7 ms to
# 9.6 ms.)

@njit(parallel=True, cache=True)
def _forward(q, k, v, mask, has_mask, is_causal, scale, out, lse):
    n_batch, length, key_dim = q.shape
    source_length, value_dim = v.shape[1], v.shape[2]
    for n in prange(n_batch):
        q_n = q[n] * scale                      # S = (scale Q) K^T: one multiply per q, not per score
        v_t = np.ascontiguousarray(v[n].T)      # P V as dot products along keys
        mask_n = mask[n] if has_mask else mask[0]
        p = np.empty((BLOCK_Q, BLOCK_K), q.dtype)
        scratch = np.empty((BLOCK_Q, BLOCK_K), np.int32)   # for exp_shifted
        acc = np.empty((BLOCK_Q, value_dim), q.dtype)
        row_max, new_max = np.empty(BLOCK_Q, q.dtype), np.empty(BLOCK_Q, q.dtype)
        row_sum = np.empty(BLOCK_Q, q.dtype)
        for i0 in range(0, length, BLOCK_Q):
            rows = min(BLOCK_Q, length - i0)
            acc[:] = 0.0
            row_max[:] = -np.inf
            row_sum[:] = 0.0
            # Causal: no row of this block sees a key past its last row.
            end = min(source_length, i0 + rows) if is_causal else source_length
            for j0 in range(0, end, BLOCK_K):
                cols = min(BLOCK_K, end - j0)
                _scores(q_n, k[n], mask_n, has_mask, is_causal, i0, rows, j0, cols, p)
                # the online softmax: fold this block's scores into each row's max and sum
                for r in range(rows):
                    new_max[r] = max(row_max[r], _row_max(p[r, :cols]))
                exp_shifted(p, new_max, rows, cols, scratch)   # p = exp(s - m'); 0 where s = -inf
                for r in range(rows):
                    if new_max[r] == -np.inf:   # every key so far masked: nothing to add yet
                        continue
                    rescale = np.exp(row_max[r] - new_max[r])   # exp(-inf) = 0 at first
                    row_sum[r] = row_sum[r] * rescale + _row_sum(p[r, :cols])
                    row_max[r] = new_max[r]
                    acc_r = acc[r]
                    for e in range(value_dim):
                        acc_r[e] *= rescale
                # acc += P V for this block of keys
                dot_add(p, 0, 0, v_t, 0, j0, acc, 0, 0, rows, value_dim, cols)
            for r in range(rows):
                # A fully masked row has row_sum 0: 0/0 = NaN, as in PyTorch.
                out_i = out[n, i0 + r]
                for e in range(value_dim):
                    out_i[e] = acc[r, e] / row_sum[r]
                lse[n, i0 + r] = row_max[r] + np.log(row_sum[r])


@njit(parallel=True, cache=True)
def _backward(q, k, v, mask, has_mask, is_causal, scale, lse, grad_out, d, grad_q, grad_k,
              grad_v):
    n_batch, length, key_dim = q.shape
    source_length, value_dim = v.shape[1], v.shape[2]
    for n in prange(n_batch):
        q_n = q[n] * scale
        q_t = np.ascontiguousarray(q_n.T)
        k_t = np.ascontiguousarray(k[n].T)
        g_n = grad_out[n]
        g_t = np.ascontiguousarray(g_n.T)
        mask_n = mask[n] if has_mask else mask[0]
        p = np.empty((BLOCK_Q, BLOCK_K), q.dtype)          # probabilities, rebuilt from lse
        grad_s = np.empty((BLOCK_Q, BLOCK_K), q.dtype)     # dL/d(scores)
        p_t = np.empty((BLOCK_K, BLOCK_Q), q.dtype)        # the two, transposed
        grad_s_t = np.empty((BLOCK_K, BLOCK_Q), q.dtype)
        scratch = np.empty((BLOCK_Q, BLOCK_K), np.int32)   # for exp_shifted
        for i0 in range(0, length, BLOCK_Q):
            rows = min(BLOCK_Q, length - i0)
            end = min(source_length, i0 + rows) if is_causal else source_length
            for j0 in range(0, end, BLOCK_K):
                cols = min(BLOCK_K, end - j0)
                _scores(q_n, k[n], mask_n, has_mask, is_causal, i0, rows, j0, cols, p)
                exp_shifted(p, lse[n, i0:i0 + rows], rows, cols, scratch)   # P = exp(S - lse)
                # dP = G V^T for this tile, then dS = P (dP - D)
                grad_s[:rows, :cols] = 0.0
                dot_add(g_n, i0, 0, v[n], j0, 0, grad_s, 0, 0, rows, cols, value_dim)
                for r in range(rows):
                    d_i = d[n, i0 + r]
                    p_r, grad_s_r = p[r, :cols], grad_s[r, :cols]
                    for c in range(cols):
                        grad_s_r[c] = p_r[c] * (grad_s_r[c] - d_i)
                        p_t[c, r] = p_r[c]
                        grad_s_t[c, r] = grad_s_r[c]
                # dQ += dS K,  dV += P^T G,  dK += dS^T (scale Q)
                dot_add(grad_s, 0, 0, k_t, 0, j0, grad_q[n], i0, 0, rows, key_dim, cols)
                dot_add(p_t, 0, 0, g_t, 0, i0, grad_v[n], j0, 0, cols, value_dim, rows)
                dot_add(grad_s_t, 0, 0, q_t, 0, i0, grad_k[n], j0, 0, cols, key_dim, rows)
        grad_q[n] *= scale   # S = scale Q K^T, so dL/dQ = scale dS K


@njit(cache=True)
def _scores(q_n, k_n, mask_n, has_mask, is_causal, i0, rows, j0, cols, tile):
    """tile[r, c] = q_i . k_j + mask_ij (or -inf if j > i when causal), i = i0+r, j = j0+c."""
    tile[:rows, :cols] = 0.0
    dot_add(q_n, i0, 0, k_n, j0, 0, tile, 0, 0, rows, cols, q_n.shape[1])
    for r in range(rows):
        i = i0 + r
        row = tile[r, :cols]
        if has_mask:
            mask_i = mask_n[i, j0:j0 + cols]
            for c in range(cols):
                row[c] += mask_i[c]
        if is_causal:
            for c in range(max(i + 1 - j0, 0), cols):
                row[c] = -np.inf


# Sums in any order: the compiler may then add 16 lanes at a time. (The max
# needs no such licence to be exact, but the same one to be vectorised; a NaN
# it might skip still reaches the output, through exp_shifted.)
@njit(cache=True, fastmath={"reassoc", "nnan", "nsz"})
def _row_max(row):
    best = row[0]
    for c in range(1, row.shape[0]):
        best = row[c] if row[c] > best else best
    return best


@njit(cache=True, fastmath={"reassoc"})
def _row_sum(row):
    total = row.dtype.type(0)
    for c in range(row.shape[0]):
        total += row[c]
    return total


# ------------------------------------------------------------------ exp, vectorised
# exp is a quarter of the forward's time when each element calls the C
# library's expf (~2 ns). Written with plain arithmetic instead, the compiler
# turns the loop into SIMD code (~0.5 ns per element):
#     x = n ln2 + r, n = round(x / ln2) an integer, |r| <= ln2 / 2
#     e^x = 2^n e^r: e^r by a degree-6 Taylor polynomial (error < 2e-7, float32's
#     precision), 2^n by writing n + 127 into the exponent bits of a float32.
# r is computed as x - n*LN2_HI - n*LN2_LO with ln 2 split in two (Cody and
# Waite): n*LN2_HI is exact, so r keeps its precision even for large |x|.
# float64 keeps the C library's exp (the tests compare it to 1e-10).
# The kernels call it on a whole tile at once, one shift per row: a call per
# row cost more than the exps themselves.
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_ROUND = np.float32(1.5 * 2**23)   # t + 1.5*2^23 - 1.5*2^23 rounds t to an integer
_LOWEST = np.float32(-126.0)       # below 2^-126 a float32 is denormal: we return 0
_BIAS, _MANTISSA_BITS = np.int32(127), np.int32(23)
_C2, _C3, _C4 = np.float32(1 / 2), np.float32(1 / 6), np.float32(1 / 24)
_C5, _C6, _ONE, _ZERO = np.float32(1 / 120), np.float32(1 / 720), np.float32(1), np.float32(0)


def exp_shifted(tile, shifts, rows, cols, scratch):
    """``tile[r, c] = exp(tile[r, c] - shifts[r])`` in place for r < rows, c < cols.

    Inside Numba kernels only; ``scratch`` is int32 and at least the tile's
    shape. A masked score (-inf) gives 0 whatever its row's shift (even -inf,
    a row with no key yet); NaN stays NaN, so bad inputs show in the output.
    """
    raise NotImplementedError("exp_shifted runs inside Numba-compiled code only")


@overload(exp_shifted)
def _exp_shifted_for(tile, shifts, rows, cols, scratch):
    """Numba calls this at compile time with the argument *types*, to pick a version."""
    if tile.dtype.bitwidth != 32:
        def exp_with_libm(tile, shifts, rows, cols, scratch):
            for r in range(rows):
                for c in range(cols):
                    s = tile[r, c]
                    tile[r, c] = 0.0 if s == -np.inf else np.exp(s - shifts[r])
        return exp_with_libm

    def exp_float32(tile, shifts, rows, cols, scratch):
        two_to_the_n = scratch.view(np.float32)   # the same bits, read as float32
        for r in range(rows):
            row, bits, shift = tile[r], scratch[r], shifts[r]
            for c in range(cols):
                s = row[c]
                x = s - shift
                t = x * _LOG2E
                keep = t >= _LOWEST                  # false for tiny, -inf and NaN
                masked = s == -np.inf or t < _LOWEST
                x = x if keep else _ZERO
                n = (t + _ROUND) - _ROUND if keep else _LOWEST
                r_ = (x - n * _LN2_HI) - n * _LN2_LO
                poly = _ONE + r_ * (_ONE + r_ * (_C2 + r_ * (_C3 + r_ * (_C4 + r_ * (_C5
                                                                                 + r_ * _C6)))))
                row[c] = poly if keep else (_ZERO if masked else t)   # t: the NaN
                bits[c] = (np.int32(n) + _BIAS) << _MANTISSA_BITS   # the float32 2^n, as bits
            powers = two_to_the_n[r]
            for c in range(cols):
                row[c] *= powers[c]
    return exp_float32

"""Fused attention (FlashAttention style), compiled by Numba for the CPU.

The reference builds the whole (L, S) score matrix for every batch and head:
at T = 512 that is 512 x 512 floats per head, written to memory and read back
several times. Here each thread takes one (batch*head, block of BLOCK_Q query
rows) and walks the keys in blocks of BLOCK_K, keeping only a BLOCK_Q x BLOCK_K
tile of scores, which stays in the CPU cache.

The trick that makes one pass possible is the *online softmax*. For one row,
after the keys seen so far it keeps the running max ``m``, the running sum
``l = sum exp(s_j - m)`` and the running output ``acc = sum exp(s_j - m) v_j``.
A new block of scores with a larger max m' rescales what was summed so far by
``exp(m - m')``, and at the end ``out = acc / l``. The row's log-sum-exp
``m + log l`` is saved, so the backward can rebuild each probability as
``exp(s_ij - lse_i)`` block by block instead of storing them.

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

BLOCK_Q = 32   # query rows per task: a tile of BLOCK_Q x BLOCK_K scores fits in L1 cache
BLOCK_K = 64   # keys per step of the online softmax


def attention_forward(q, k, v, mask, is_causal, scale):
    """Same contract as :func:`tinygrad_zh.kernels.reference.attention_forward`."""
    n, length, _ = q.shape
    out = np.empty((n, length, v.shape[2]), q.dtype)
    lse = np.empty((n, length), q.dtype)
    # K transposed once per call, (N, E, S): the score loop then runs along
    # contiguous keys, which the compiler turns into SIMD instructions.
    k_t = np.ascontiguousarray(k.transpose(0, 2, 1))
    _forward(q, k_t, v, *_mask_arguments(mask, q), is_causal, q.dtype.type(scale), out, lse)
    return out, lse


def attention_backward(q, k, v, mask, is_causal, scale, out, lse, grad_out):
    """Same contract as :func:`tinygrad_zh.kernels.reference.attention_backward`."""
    grad_q, grad_k, grad_v = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    # D_i = sum_e G_ie O_ie: the softmax backward's row sum, without P.
    d = np.einsum("nle,nle->nl", grad_out, out)
    k_t = np.ascontiguousarray(k.transpose(0, 2, 1))
    v_t = np.ascontiguousarray(v.transpose(0, 2, 1))
    _backward(q, k, k_t, v, v_t, *_mask_arguments(mask, q), is_causal, q.dtype.type(scale), lse,
              grad_out, d, grad_q, grad_k, grad_v)
    return grad_q, grad_k, grad_v


def _mask_arguments(mask, q):
    """(mask, has_mask): without a mask, a 1x1x1 stand-in that the kernels never
    read, so that Numba compiles one version of each kernel with an array argument."""
    if mask is None:
        return np.zeros((1, 1, 1), q.dtype), False
    return mask, True


@njit(parallel=True, cache=True)
def _forward(q, k_t, v, mask, has_mask, is_causal, scale, out, lse):
    n_batch, length, key_dim = q.shape
    source_length, value_dim = v.shape[1], v.shape[2]
    blocks = (length + BLOCK_Q - 1) // BLOCK_Q
    for task in prange(n_batch * blocks):
        n, i0 = task // blocks, (task % blocks) * BLOCK_Q
        rows = min(BLOCK_Q, length - i0)
        q_n, k_t_n, v_n = q[n], k_t[n], v[n]
        mask_n = mask[n] if has_mask else mask[0]
        p = np.empty((BLOCK_Q, BLOCK_K), q.dtype)
        scratch = np.empty(BLOCK_K, np.int32)   # for exp_shifted
        acc = np.zeros((BLOCK_Q, value_dim), q.dtype)
        row_max = np.full(BLOCK_Q, -np.inf, q.dtype)
        row_sum = np.zeros(BLOCK_Q, q.dtype)
        # Causal: no row of this block sees a key past its last row.
        end = min(source_length, i0 + rows) if is_causal else source_length
        for j0 in range(0, end, BLOCK_K):
            cols = min(BLOCK_K, end - j0)
            _scores(q_n, k_t_n, mask_n, has_mask, is_causal, scale, i0, rows, j0, cols, p)
            for r in range(rows):
                # the online softmax: fold this block's scores into row r's max and sum
                p_r = p[r, :cols]
                new_max = max(row_max[r], p_r.max())
                if new_max == -np.inf:   # every key so far masked: nothing to add yet
                    continue
                rescale = np.exp(row_max[r] - new_max)   # exp(-inf) = 0 at the first block
                exp_shifted(p_r, new_max, scratch)       # p = exp(s - m')
                row_sum[r] = row_sum[r] * rescale + p_r.sum()
                row_max[r] = new_max
                acc_r = acc[r]
                for e in range(value_dim):
                    acc_r[e] *= rescale
            # acc += P V for this block of keys (fully masked rows hold no P: skip them)
            for r in range(rows):
                if row_max[r] == -np.inf:
                    p[r, :cols] = 0.0
            _matmul_add(p, 0, 0, v_n, j0, 0, acc, 0, 0, rows, cols, value_dim, False)
        for r in range(rows):
            # A fully masked row has row_sum 0: 0/0 = NaN, as in PyTorch.
            out_i = out[n, i0 + r]
            for e in range(value_dim):
                out_i[e] = acc[r, e] / row_sum[r]
            lse[n, i0 + r] = row_max[r] + np.log(row_sum[r])


@njit(parallel=True, cache=True)
def _backward(q, k, k_t, v, v_t, mask, has_mask, is_causal, scale, lse, grad_out, d, grad_q,
              grad_k, grad_v):
    # One thread per batch*head: it alone writes that head's dK and dV, so the
    # sums over query rows need no locks.
    n_batch, length, key_dim = q.shape
    source_length, value_dim = v.shape[1], v.shape[2]
    for n in prange(n_batch):
        q_n, k_n, k_t_n, v_t_n, g_n = q[n], k[n], k_t[n], v_t[n], grad_out[n]
        mask_n = mask[n] if has_mask else mask[0]
        p = np.empty((BLOCK_Q, BLOCK_K), q.dtype)          # probabilities, rebuilt from lse
        grad_s = np.empty((BLOCK_Q, BLOCK_K), q.dtype)     # dL/d(scores)
        scratch = np.empty(BLOCK_K, np.int32)              # for exp_shifted
        for i0 in range(0, length, BLOCK_Q):
            rows = min(BLOCK_Q, length - i0)
            end = min(source_length, i0 + rows) if is_causal else source_length
            for j0 in range(0, end, BLOCK_K):
                cols = min(BLOCK_K, end - j0)
                _scores(q_n, k_t_n, mask_n, has_mask, is_causal, scale, i0, rows, j0, cols, p)
                # dP = G V^T for this tile, then dS = P (dP - D) scale
                grad_s[:rows, :cols] = 0.0
                _matmul_add(g_n, i0, 0, v_t_n, 0, j0, grad_s, 0, 0, rows, value_dim, cols, False)
                for r in range(rows):
                    lse_i, d_i = lse[n, i0 + r], d[n, i0 + r]
                    p_r, grad_s_r = p[r, :cols], grad_s[r, :cols]
                    exp_shifted(p_r, lse_i, scratch)     # the probabilities, exp(s - lse)
                    for c in range(cols):
                        grad_s_r[c] = p_r[c] * (grad_s_r[c] - d_i) * scale
                # dQ += dS K,  dV += P^T G,  dK += dS^T Q
                _matmul_add(grad_s, 0, 0, k_n, j0, 0, grad_q[n], i0, 0, rows, cols, key_dim,
                            False)
                _matmul_add(p, 0, 0, g_n, i0, 0, grad_v[n], j0, 0, cols, rows, value_dim, True)
                _matmul_add(grad_s, 0, 0, q_n, i0, 0, grad_k[n], j0, 0, cols, rows, key_dim, True)


@njit(cache=True)
def _scores(q_n, k_t_n, mask_n, has_mask, is_causal, scale, i0, rows, j0, cols, tile):
    """tile[r, c] = scale q_i . k_j + mask_ij (or -inf if j > i when causal), i = i0+r, j = j0+c."""
    tile[:rows, :cols] = 0.0
    _matmul_add(q_n, i0, 0, k_t_n, 0, j0, tile, 0, 0, rows, q_n.shape[1], cols, False)
    for r in range(rows):
        i = i0 + r
        row = tile[r, :cols]
        for c in range(cols):
            row[c] *= scale
        if has_mask:
            mask_i = mask_n[i, j0:j0 + cols]
            for c in range(cols):
                row[c] += mask_i[c]
        if is_causal:
            for c in range(max(i + 1 - j0, 0), cols):
                row[c] = -np.inf


@njit(cache=True)
def _matmul_add(a, a_row, a_col, b, b_row, b_col, out, out_row, out_col, rows, inner, cols,
                transpose_a):
    """out[out_row:+rows, out_col:+cols] += A @ b[b_row:+inner, b_col:+cols].

    A is a[a_row:+rows, a_col:+inner], or with ``transpose_a`` the transpose of
    a[a_row:+inner, a_col:+rows] (read in place: dV = P^T G needs no copy of P).
    Every tile product of attention goes through this one small matmul. As in
    ``numba_cpu/matmul.py``: four rows of ``out`` at a time, so each row of
    ``b`` loaded is used four times, along contiguous 1-D row views (SIMD).
    """
    r = 0
    while r + 4 <= rows:
        o0 = out[out_row + r, out_col:out_col + cols]
        o1 = out[out_row + r + 1, out_col:out_col + cols]
        o2 = out[out_row + r + 2, out_col:out_col + cols]
        o3 = out[out_row + r + 3, out_col:out_col + cols]
        for p in range(inner):
            if transpose_a:
                x0, x1 = a[a_row + p, a_col + r], a[a_row + p, a_col + r + 1]
                x2, x3 = a[a_row + p, a_col + r + 2], a[a_row + p, a_col + r + 3]
            else:
                x0, x1 = a[a_row + r, a_col + p], a[a_row + r + 1, a_col + p]
                x2, x3 = a[a_row + r + 2, a_col + p], a[a_row + r + 3, a_col + p]
            b_p = b[b_row + p, b_col:b_col + cols]
            for c in range(cols):
                o0[c] += x0 * b_p[c]
                o1[c] += x1 * b_p[c]
                o2[c] += x2 * b_p[c]
                o3[c] += x3 * b_p[c]
        r += 4
    while r < rows:
        o = out[out_row + r, out_col:out_col + cols]
        for p in range(inner):
            x = a[a_row + p, a_col + r] if transpose_a else a[a_row + r, a_col + p]
            b_p = b[b_row + p, b_col:b_col + cols]
            for c in range(cols):
                o[c] += x * b_p[c]
        r += 1


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
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_ROUND = np.float32(1.5 * 2**23)   # t + 1.5*2^23 - 1.5*2^23 rounds t to an integer
_LOWEST = np.float32(-126.0)       # below 2^-126 a float32 is denormal: we return 0
_BIAS, _MANTISSA_BITS = np.int32(127), np.int32(23)
_C2, _C3, _C4 = np.float32(1 / 2), np.float32(1 / 6), np.float32(1 / 24)
_C5, _C6, _ONE, _ZERO = np.float32(1 / 120), np.float32(1 / 720), np.float32(1), np.float32(0)


def exp_shifted(row, shift, scratch):
    """``row[:] = exp(row - shift)`` in place, inside Numba kernels (int32 ``scratch`` >= row)."""
    raise NotImplementedError("exp_shifted runs inside Numba-compiled code only")


@overload(exp_shifted)
def _exp_shifted_for(row, shift, scratch):
    """Numba calls this at compile time with the argument *types*, to pick a version."""
    if row.dtype.bitwidth != 32:
        def exp_with_libm(row, shift, scratch):
            for c in range(row.shape[0]):
                row[c] = np.exp(row[c] - shift)
        return exp_with_libm

    def exp_float32(row, shift, scratch):
        bits = scratch[:row.shape[0]]
        for c in range(row.shape[0]):
            x = row[c] - shift
            t = x * _LOG2E
            keep = t >= _LOWEST                  # false for -inf (masked): the result is 0
            x = x if keep else _ZERO
            n = (t + _ROUND) - _ROUND if keep else _LOWEST
            r = (x - n * _LN2_HI) - n * _LN2_LO if keep else _ZERO
            poly = _ONE + r * (_ONE + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6)))))
            row[c] = poly if keep else _ZERO
            bits[c] = (np.int32(n) + _BIAS) << _MANTISSA_BITS   # the float32 2^n, as bits
        two_to_the_n = bits.view(np.float32)
        for c in range(row.shape[0]):
            row[c] *= two_to_the_n[c]
    return exp_float32

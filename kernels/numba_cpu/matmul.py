"""Matrix multiplication by hand, compiled by Numba: for learning, not for use.

The engine keeps calling ``@`` (BLAS) for plain matmul: decades of tuning
(register blocking, packing, assembly kernels per CPU) are hard to beat. These
two versions show where most of that speed comes from:

1. :func:`matmul_naive` — the textbook triple loop. The innermost loop walks
   down a column of B, one cache line per element: memory-bound and slow.
2. :func:`matmul_blocked` — the same sums, arranged for the hardware:

   * B is first copied transposed ("packed"), so that c_ij = a_i . b_j is a dot
     product of two contiguous rows;
   * a 4 x 2 block of C is computed at once: 8 running sums that live in
     registers, and each element loaded from A or B is used 2 or 4 times;
   * the dot products run over SIMD lanes: ``fastmath={"reassoc"}`` lets the
     compiler reorder each sum (the last bits of rounding change);
   * C is computed in blocks of BLOCK_I rows, one block per core (``prange``),
     and within a block BLOCK_J rows of B^T at a time, which stay in the cache.

    >>> import numpy as np
    >>> a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 4))
    >>> np.array_equal(matmul_naive(a, b), a @ b), np.array_equal(matmul_blocked(a, b), a @ b)
    (True, True)
"""
import numpy as np
from numba import njit, prange

BLOCK_I = 64    # rows of C per task
BLOCK_J = 64    # rows of B^T per step: 64 x k floats (256 KB at k = 1024) stay in the L2 cache


def matmul_naive(a, b):
    """C = A @ B with three nested loops (2-D arrays of one dtype)."""
    a, b = _check(a, b)
    c = np.zeros((a.shape[0], b.shape[1]), a.dtype)
    _naive(a, b, c)
    return c


def matmul_blocked(a, b):
    """C = A @ B: packed B^T, 4 x 2 register blocks, SIMD dot products, parallel over rows."""
    a, b = _check(a, b)
    c = np.zeros((a.shape[0], b.shape[1]), a.dtype)
    _blocked(a, np.ascontiguousarray(b.T), c)
    return c


def _check(a, b):
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        raise ValueError(f"matmul: expected (n, k) @ (k, m) of one dtype, got {a.shape} "
                         f"{a.dtype} @ {b.shape} {b.dtype}")
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


@njit(cache=True)
def _naive(a, b, c):
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            total = c[i, j]
            for p in range(a.shape[1]):
                total += a[i, p] * b[p, j]   # b[p, j]: a new cache line for every p
            c[i, j] = total


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _blocked(a, b_t, c):
    n, m = c.shape
    for block in prange((n + BLOCK_I - 1) // BLOCK_I):
        i0 = block * BLOCK_I
        i1 = min(i0 + BLOCK_I, n)
        for j0 in range(0, m, BLOCK_J):
            j1 = min(j0 + BLOCK_J, m)
            for i in range(i0, i1 - 3, 4):
                for j in range(j0, j1 - 1, 2):
                    _block_4x2(a, b_t, c, i, j)
            # the edges that do not fill a 4 x 2 block: one dot product per element
            rows_done = i0 + (i1 - i0) // 4 * 4
            cols_done = j0 + (j1 - j0) // 2 * 2
            for i in range(i0, i1):
                for j in range(cols_done if i < rows_done else j0, j1):
                    total = c[i, j]
                    a_i, b_j = a[i], b_t[j]
                    for p in range(a_i.shape[0]):
                        total += a_i[p] * b_j[p]
                    c[i, j] = total


@njit(cache=True, fastmath={"reassoc", "contract"})
def _block_4x2(a, b_t, c, i, j):
    """c[i:i+4, j:j+2] += a[i:i+4] @ b_t[j:j+2].T with 8 running sums (registers)."""
    a0, a1, a2, a3 = a[i], a[i + 1], a[i + 2], a[i + 3]
    b0, b1 = b_t[j], b_t[j + 1]
    s00, s01, s10, s11 = c[i, j], c[i, j + 1], c[i + 1, j], c[i + 1, j + 1]
    s20, s21, s30, s31 = c[i + 2, j], c[i + 2, j + 1], c[i + 3, j], c[i + 3, j + 1]
    for p in range(a0.shape[0]):
        x0, x1 = b0[p], b1[p]
        s00 += a0[p] * x0
        s01 += a0[p] * x1
        s10 += a1[p] * x0
        s11 += a1[p] * x1
        s20 += a2[p] * x0
        s21 += a2[p] * x1
        s30 += a3[p] * x0
        s31 += a3[p] * x1
    c[i, j], c[i, j + 1], c[i + 1, j], c[i + 1, j + 1] = s00, s01, s10, s11
    c[i + 2, j], c[i + 2, j + 1], c[i + 3, j], c[i + 3, j + 1] = s20, s21, s30, s31

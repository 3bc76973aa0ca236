"""Matrix multiplication by hand, compiled by Numba: for learning, not for use.

The engine keeps calling ``@`` (BLAS) for plain matmul: decades of tuning
(register blocking, packing, assembly kernels per CPU) are hard to beat. These
two versions show where most of that speed comes from:

1. :func:`matmul_naive` — the textbook triple loop. The innermost loop walks
   down a column of B, one cache line per element: memory-bound and slow.
2. :func:`matmul_blocked` — the same sums, arranged for the hardware:

   * B is first copied transposed ("packed"), so that c_ij = a_i . b_j is a dot
     product of two contiguous rows;
   * a 4 x 4 block of C is computed at once: 16 running sums that live in
     registers, and each element loaded from A or B is used 4 times;
   * the dot products run over SIMD lanes: ``fastmath={"reassoc"}`` lets the
     compiler reorder each sum (the last bits of rounding change);
     (these two are ``tiles.dot_add``, which the attention kernels use too)
   * C is computed in blocks of BLOCK_I rows, one block per core (``prange``),
     and within a block BLOCK_J rows of B^T at a time, which stay in the cache.

    >>> import numpy as np
    >>> a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 4))
    >>> np.array_equal(matmul_naive(a, b), a @ b), np.array_equal(matmul_blocked(a, b), a @ b)
    (True, True)
"""
import numpy as np
from numba import njit, prange

from .tiles import dot_add

BLOCK_I = 64    # rows of C per task
BLOCK_J = 64    # rows of B^T per step: 64 x k floats (256 KB at k = 1024) stay in the L2 cache


def matmul_naive(a, b):
    """C = A @ B with three nested loops (2-D arrays of one dtype)."""
    a, b = _check(a, b)
    c = np.zeros((a.shape[0], b.shape[1]), a.dtype)
    _naive(a, b, c)
    return c


def matmul_blocked(a, b):
    """C = A @ B: packed B^T, 4 x 4 register blocks, SIMD dot products, parallel over rows."""
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


@njit(parallel=True, cache=True)
def _blocked(a, b_t, c):
    n, m = c.shape
    for block in prange((n + BLOCK_I - 1) // BLOCK_I):
        i0 = block * BLOCK_I
        for j0 in range(0, m, BLOCK_J):
            # c[i0:+BLOCK_I, j0:+BLOCK_J] += a[i0:+BLOCK_I] @ b_t[j0:+BLOCK_J].T, by 4 x 4 blocks
            dot_add(a, i0, 0, b_t, j0, 0, c, i0, j0, min(BLOCK_I, n - i0), min(BLOCK_J, m - j0),
                    a.shape[1])

"""Matrix multiplication by hand, compiled by Numba: for learning, not for use.

The engine keeps calling ``@`` (BLAS) for plain matmul: decades of tuning
(register blocking, packing, assembly kernels per CPU) are hard to beat. These
two versions show where most of that speed comes from:

1. :func:`matmul_naive` — the textbook triple loop. The innermost loop walks
   down a column of B, one cache line per element: memory-bound and slow.
2. :func:`matmul_blocked` — the same sums in a cache-friendly order: C is
   computed in blocks of rows (one block per CPU core, ``prange``), and inside
   a block the loops run over (rows of A) x (rows of B), updating four rows
   of C at once with ``c_i += a_ip * b_p`` along contiguous memory — SIMD
   instructions, each loaded piece of B used four times — while a
   BLOCK_P x BLOCK_J block of B stays in the cache.

    >>> import numpy as np
    >>> a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 4))
    >>> np.array_equal(matmul_naive(a, b), a @ b), np.array_equal(matmul_blocked(a, b), a @ b)
    (True, True)
"""
import numpy as np
from numba import njit, prange

BLOCK_I = 64    # rows of C per task
BLOCK_P = 128   # BLOCK_P x BLOCK_J of B (128 KB in float32) stays in the L2 cache
BLOCK_J = 256   # a row segment of C (1 KB in float32) stays in the L1 cache


def matmul_naive(a, b):
    """C = A @ B with three nested loops (2-D arrays of one dtype)."""
    a, b = _check(a, b)
    c = np.zeros((a.shape[0], b.shape[1]), a.dtype)
    _naive(a, b, c)
    return c


def matmul_blocked(a, b):
    """C = A @ B, cache-blocked and parallel over blocks of rows."""
    a, b = _check(a, b)
    c = np.zeros((a.shape[0], b.shape[1]), a.dtype)
    _blocked(a, b, c)
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
def _blocked(a, b, c):
    n, k = a.shape
    m = b.shape[1]
    for block in prange((n + BLOCK_I - 1) // BLOCK_I):
        i0 = block * BLOCK_I
        i1 = min(i0 + BLOCK_I, n)
        for p0 in range(0, k, BLOCK_P):
            p1 = min(p0 + BLOCK_P, k)
            for j0 in range(0, m, BLOCK_J):
                j1 = min(j0 + BLOCK_J, m)
                i = i0
                while i + 4 <= i1:   # four rows of C at once: each b_pj loaded is used 4 times
                    _four_rows(a, b, c, i, p0, p1, j0, j1)
                    i += 4
                while i < i1:        # the last 0-3 rows, one at a time
                    c_i = c[i, j0:j1]     # 1-D row views: contiguous, so SIMD code
                    for p in range(p0, p1):
                        a_ip = a[i, p]
                        b_p = b[p, j0:j1]
                        for j in range(j1 - j0):
                            c_i[j] += a_ip * b_p[j]
                    i += 1


@njit(cache=True, inline="always")
def _four_rows(a, b, c, i, p0, p1, j0, j1):
    """c[i:i+4, j0:j1] += a[i:i+4, p0:p1] @ b[p0:p1, j0:j1], sharing each load of b."""
    c0, c1, c2, c3 = c[i, j0:j1], c[i + 1, j0:j1], c[i + 2, j0:j1], c[i + 3, j0:j1]
    for p in range(p0, p1):
        x0, x1, x2, x3 = a[i, p], a[i + 1, p], a[i + 2, p], a[i + 3, p]
        b_p = b[p, j0:j1]
        for j in range(j1 - j0):
            b_pj = b_p[j]
            c0[j] += x0 * b_pj
            c1[j] += x1 * b_pj
            c2[j] += x2 * b_pj
            c3[j] += x3 * b_pj

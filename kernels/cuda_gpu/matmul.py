"""Matrix multiplication on the GPU: a shared-memory tiled kernel, beside cuBLAS.

For learning: the engine calls cuBLAS (``cupy.matmul``) for plain matmul.
Each block of TILE x TILE threads computes one TILE x TILE tile of C. It walks
along the shared dimension one tile at a time: every thread loads ONE element
of A's tile and ONE of B's tile into shared memory (fast on-chip memory seen
by the whole block), the block waits (``syncthreads``), and then each thread
reads TILE elements of each from shared memory for its dot product. Every
element loaded from slow global memory is so used TILE times.

    >>> import numpy as np
    >>> a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
    >>> matmul_cublas(a, b)   # NumPy arrays in, NumPy's matmul; CuPy arrays: cuBLAS
    array([[ 3.,  3.],
           [12., 12.]])
"""
import numba
from numba import cuda

from tinygrad_zh.backend import array_module

TILE = 16


def matmul_tiled(a, b):
    """C = A @ B with the tiled kernel (2-D CuPy arrays, or NumPy in the simulator)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        raise ValueError(f"matmul_tiled: expected (n, k) @ (k, m) of one dtype, got {a.shape} "
                         f"{a.dtype} @ {b.shape} {b.dtype}")
    xp = array_module(a)
    a, b = xp.ascontiguousarray(a), xp.ascontiguousarray(b)
    c = xp.empty((a.shape[0], b.shape[1]), a.dtype)
    if c.size:
        # grid x runs over tiles of columns, y over tiles of rows (see the kernel)
        grid = ((c.shape[1] + TILE - 1) // TILE, (c.shape[0] + TILE - 1) // TILE)
        _tiled_kernel[grid, (TILE, TILE)](a, b, c)
    return c


def matmul_cublas(a, b):
    """C = A @ B by the vendor library: ``cupy.matmul`` calls cuBLAS."""
    return array_module(a).matmul(a, b)


@cuda.jit(cache=True)
def _tiled_kernel(a, b, c):
    # float64 tiles serve float32 and float64 inputs alike (a kernel per dtype
    # would be faster for float32; this one stays short).
    a_tile = cuda.shared.array((TILE, TILE), numba.float64)
    b_tile = cuda.shared.array((TILE, TILE), numba.float64)
    # threadIdx.x runs along a row (contiguous memory): neighbouring threads
    # then load neighbouring addresses, which the GPU merges into one access.
    row_in_tile, col_in_tile = cuda.threadIdx.y, cuda.threadIdx.x
    i = cuda.blockIdx.y * TILE + row_in_tile
    j = cuda.blockIdx.x * TILE + col_in_tile
    n, k = a.shape
    m = b.shape[1]
    total = 0.0
    for p0 in range(0, k, TILE):
        # Each thread loads one element of each tile (zero past the edges).
        p_a, p_b = p0 + col_in_tile, p0 + row_in_tile
        a_tile[row_in_tile, col_in_tile] = a[i, p_a] if i < n and p_a < k else 0.0
        b_tile[row_in_tile, col_in_tile] = b[p_b, j] if p_b < k and j < m else 0.0
        cuda.syncthreads()        # the tiles are complete
        for p in range(TILE):
            total += a_tile[row_in_tile, p] * b_tile[p, col_in_tile]
        cuda.syncthreads()        # everyone is done before the tiles are overwritten
    if i < n and j < m:
        c[i, j] = total

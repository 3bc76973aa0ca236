"""The small matmul the CPU kernels are built from: C += A B^T, by dot products.

``numba_cpu/matmul.py`` (a whole matrix) and ``numba_cpu/attention.py``
(tiles of scores, probabilities and gradients) both compute
``C[i, j] += a_i . b_j``, where a_i is a row of A and b_j a row of B: B is
given transposed ("packed"), so that both runs are contiguous in memory.
The speed comes from three things:

* a block of 4 x 4 entries of C at once: 16 running sums that live in
  registers, and each element loaded from A or B is used 4 times (a 4 x 2
  block, with half the reuse, was 5-15% slower in matmul and attention);
* ``fastmath={"reassoc"}`` lets the compiler reorder each sum, so that it runs
  over SIMD lanes (the last bits of rounding change);
* the runs are taken as 1-D views first and indexed from 0 by the loop
  counter, so the compiler knows that no index is negative. (Indexing
  ``a[i, col + t]`` with a column offset known only at run time costs a check
  for a negative index on every element, and the loop is not vectorised.)

    >>> import numpy as np
    >>> a, b = np.arange(15.0).reshape(5, 3), np.ones((3, 3))
    >>> c = np.zeros((5, 3))
    >>> dot_add(a, 0, 0, b, 0, 0, c, 0, 0, 5, 3, 3)
    >>> np.array_equal(c, a @ b.T)
    True
"""
from numba import njit

FAST = {"reassoc", "contract"}   # reorder sums into SIMD lanes; fuse a*b+c into one FMA


@njit(cache=True, fastmath=FAST)
def dot_add(a, a_row, a_col, b, b_row, b_col, out, out_row, out_col, rows, cols, inner):
    """out[out_row + r, out_col + c] += a[a_row + r, a_col:+inner] . b[b_row + c, b_col:+inner]

    for r < rows and c < cols (2-D C-contiguous arrays of one dtype).
    """
    full_rows, full_cols = rows - rows % 4, cols - cols % 4
    for r in range(0, full_rows, 4):
        for c in range(0, full_cols, 4):
            _block_4x4(a, a_row + r, a_col, b, b_row + c, b_col, out, out_row + r,
                       out_col + c, inner)
    # the edges that do not fill a 4 x 4 block: one dot product per entry
    for r in range(rows):
        for c in range(full_cols if r < full_rows else 0, cols):
            a_i = a[a_row + r, a_col:a_col + inner]
            b_j = b[b_row + c, b_col:b_col + inner]
            total = out.dtype.type(0)
            for t in range(inner):
                total += a_i[t] * b_j[t]
            out[out_row + r, out_col + c] += total


@njit(cache=True, fastmath=FAST)
def _block_4x4(a, i, a_col, b, j, b_col, out, o_row, o_col, inner):
    """out[o_row:+4, o_col:+4] += a[i:+4, a_col:+inner] . b[j:+4, b_col:+inner]: 16 running sums."""
    a0, a1 = a[i, a_col:a_col + inner], a[i + 1, a_col:a_col + inner]
    a2, a3 = a[i + 2, a_col:a_col + inner], a[i + 3, a_col:a_col + inner]
    b0, b1 = b[j, b_col:b_col + inner], b[j + 1, b_col:b_col + inner]
    b2, b3 = b[j + 2, b_col:b_col + inner], b[j + 3, b_col:b_col + inner]
    zero = out.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for t in range(inner):
        x0, x1, x2, x3 = b0[t], b1[t], b2[t], b3[t]
        y0, y1, y2, y3 = a0[t], a1[t], a2[t], a3[t]
        s00 += y0 * x0
        s01 += y0 * x1
        s02 += y0 * x2
        s03 += y0 * x3
        s10 += y1 * x0
        s11 += y1 * x1
        s12 += y1 * x2
        s13 += y1 * x3
        s20 += y2 * x0
        s21 += y2 * x1
        s22 += y2 * x2
        s23 += y2 * x3
        s30 += y3 * x0
        s31 += y3 * x1
        s32 += y3 * x2
        s33 += y3 * x3
    out[o_row, o_col] += s00
    out[o_row, o_col + 1] += s01
    out[o_row, o_col + 2] += s02
    out[o_row, o_col + 3] += s03
    out[o_row + 1, o_col] += s10
    out[o_row + 1, o_col + 1] += s11
    out[o_row + 1, o_col + 2] += s12
    out[o_row + 1, o_col + 3] += s13
    out[o_row + 2, o_col] += s20
    out[o_row + 2, o_col + 1] += s21
    out[o_row + 2, o_col + 2] += s22
    out[o_row + 2, o_col + 3] += s23
    out[o_row + 3, o_col] += s30
    out[o_row + 3, o_col + 1] += s31
    out[o_row + 3, o_col + 2] += s32
    out[o_row + 3, o_col + 3] += s33

"""The hand-written matmuls against NumPy's (BLAS), on sizes that are not multiples of a tile.

Numba naive and blocked (CPU) and the shared-memory tiled kernel (numba.cuda,
in the CUDA simulator here), float32 (rtol 1e-5 relative to the size of the
sums) and float64 (rtol 1e-12).
"""
import os

import numpy as np
import pytest

from conftest import requires_real_gpu
from tinygrad_zh.kernels.numba_cpu import matmul as cpu_matmul

# (n, k, m): 1s, primes, one size past the CPU kernel's row blocks (64) and
# k past its BLOCK_P (128); the GPU tile is 16.
SIZES = [(1, 1, 1), (5, 3, 7), (17, 33, 19), (4, 1, 9), (67, 131, 5), (0, 3, 2)]
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def implementations():
    impls = {"naive": cpu_matmul.matmul_naive, "blocked": cpu_matmul.matmul_blocked}
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        from tinygrad_zh.kernels.cuda_gpu import matmul as gpu_matmul
        impls["cuda_tiled_sim"] = gpu_matmul.matmul_tiled
    return impls


@pytest.mark.parametrize("impl", sorted(implementations()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy(impl, dtype):
    rng = np.random.default_rng(0)
    for n, k, m in SIZES:
        if impl == "cuda_tiled_sim" and n * m > 400:
            continue  # the simulator runs one Python thread per GPU thread: keep it small
        a = rng.standard_normal((n, k)).astype(dtype)
        b = rng.standard_normal((k, m)).astype(dtype)
        c = implementations()[impl](a, b)
        assert c.dtype == dtype and c.shape == (n, m)
        np.testing.assert_allclose(c, a @ b, **TOLERANCE[dtype], err_msg=f"{impl} {(n, k, m)}")


@pytest.mark.parametrize("impl", sorted(implementations()))
def test_non_contiguous_inputs(impl):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((9, 6)).T          # (6, 9), Fortran order
    b = rng.standard_normal((9, 14))[:, ::2]   # (9, 7), every other column
    np.testing.assert_allclose(implementations()[impl](a, b), a @ b, rtol=1e-12)


def test_shape_error_names_the_shapes():
    with pytest.raises(ValueError, match=r"matmul: expected \(n, k\) @ \(k, m\).*\(2, 3\) "
                                         r"float64 @ \(4, 5\) float64"):
        cpu_matmul.matmul_blocked(np.ones((2, 3)), np.ones((4, 5)))



@requires_real_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_tiled_and_cublas_on_cupy(dtype):
    import cupy
    from tinygrad_zh.kernels.cuda_gpu import matmul as gpu_matmul
    rng = np.random.default_rng(2)
    a = rng.standard_normal((130, 77)).astype(dtype)
    b = rng.standard_normal((77, 45)).astype(dtype)
    for fn in (gpu_matmul.matmul_tiled, gpu_matmul.matmul_cublas):
        c = fn(cupy.asarray(a), cupy.asarray(b))
        np.testing.assert_allclose(cupy.asnumpy(c), a @ b, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_shared_tile_product_on_random_offsets_and_odd_sizes(dtype):
    # tiles.dot_add is the inner loop of matmul_blocked and of every tile
    # product of the attention kernels: out[block] += A[block] @ B[block]^T.
    from tinygrad_zh.kernels.numba_cpu.tiles import dot_add
    rng = np.random.default_rng(3)
    for _ in range(40):
        rows, cols, inner = (int(x) for x in rng.integers(0, 11, 3))
        a_row, a_col, b_row, b_col, out_row, out_col = (int(x) for x in rng.integers(0, 4, 6))
        a = rng.standard_normal((a_row + rows + 2, a_col + inner + 1)).astype(dtype)
        b = rng.standard_normal((b_row + cols + 1, b_col + inner + 2)).astype(dtype)
        out = rng.standard_normal((out_row + rows + 1, out_col + cols + 3)).astype(dtype)
        expected = out.copy()
        expected[out_row:out_row + rows, out_col:out_col + cols] += (
            a[a_row:a_row + rows, a_col:a_col + inner] @ b[b_row:b_row + cols, b_col:b_col + inner].T)
        dot_add(a, a_row, a_col, b, b_row, b_col, out, out_row, out_col, rows, cols, inner)
        np.testing.assert_allclose(out, expected, **TOLERANCE[dtype])

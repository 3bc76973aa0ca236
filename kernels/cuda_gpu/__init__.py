"""Kernels written with numba.cuda for the GPU (run under NUMBA_ENABLE_CUDASIM=1 in tests)."""

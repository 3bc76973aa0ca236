"""Test-wide setup: run the numba.cuda kernels in Numba's CUDA simulator.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is first imported, so it is
set here, before any test module imports Numba. In the simulator every GPU
kernel runs on the CPU (one Python thread per GPU thread: slow, so the kernel
tests use tiny inputs) on NumPy arrays, and no GPU code ships unexecuted.

To run the kernels on a real GPU instead (with CuPy installed), start pytest
with ``TINYGRAD_ZH_REAL_GPU=1``; the tests marked ``gpu`` then run too.
"""
import os

import pytest

if os.environ.get("TINYGRAD_ZH_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def _real_gpu_skip_reason():
    """Why a real-GPU test cannot run here, or None when it can."""
    try:
        import cupy
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device: all mean "no GPU here"
        has_gpu = False
    if not has_gpu:
        return "needs CuPy and a CUDA GPU (there, run pytest with TINYGRAD_ZH_REAL_GPU=1)"
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "the CUDA simulator is on; run pytest with TINYGRAD_ZH_REAL_GPU=1 for the GPU"
    return None


def requires_real_gpu(test):
    """Mark a test that runs the kernels on a real GPU with CuPy arrays."""
    reason = _real_gpu_skip_reason()
    return pytest.mark.gpu(pytest.mark.skipif(reason is not None, reason=reason or "")(test))

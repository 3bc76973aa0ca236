"""Test-wide setup: run the numba.cuda kernels in Numba's CUDA simulator.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is first imported, so it is
set here, before any test module imports Numba. In the simulator every GPU
kernel runs on the CPU (one Python thread per GPU thread: slow, so the kernel
tests use tiny inputs) on NumPy arrays, and no GPU code ships unexecuted.

To run the kernels on a real GPU instead (with CuPy installed), start pytest
with ``TINYGRAD_ZH_REAL_GPU=1``; the tests marked ``gpu`` then run too.
"""
import os

if os.environ.get("TINYGRAD_ZH_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

"""Fused kernels for the hot paths, installed as ``tinygrad_zh.kernels``.

The top-level ``kernels/`` folder of the repository is mapped to this package
name by pyproject.toml, because a different package called ``kernels`` exists
on PyPI. Each kernel (Numba on the CPU, CuPy on the GPU) will sit beside the
plain NumPy reference it is tested against.
"""

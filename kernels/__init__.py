"""Fused kernels for the hot paths, installed as ``tinygrad_zh.kernels``.

Each computation is written three ways, side by side, and tested against each
other: a plain NumPy reference (``reference.py``, the truth), a Numba kernel
for the CPU (``numba_cpu/``) and a numba.cuda kernel for the GPU
(``cuda_gpu/``, run under Numba's CUDA simulator in the tests). ``dispatch.py``
is the one place that picks which runs; ``use_reference()`` or the environment
variable ``TINYGRAD_ZH_KERNELS=reference`` forces the NumPy reference.

(The top-level ``kernels/`` folder of the repository is mapped to this package
name by pyproject.toml, because a different package called ``kernels`` exists
on PyPI.)

    >>> import numpy as np
    >>> import tinygrad_zh.kernels as K
    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> K.adam_step([p], [g], [m], [v], None, step=1, lr=0.01, beta1=0.9, beta2=0.999,
    ...             eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False)
    >>> p
    array([0.99, 0.99, 0.99], dtype=float32)
"""
from .dispatch import (adam_step, attention_backward, attention_forward, chosen, reference_forced,
                       use_reference)

__all__ = ["adam_step", "attention_backward", "attention_forward", "chosen", "reference_forced",
           "use_reference"]

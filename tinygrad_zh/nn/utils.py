"""Gradient clipping and flattening parameters into one vector.

    >>> import tinygrad_zh as tg
    >>> w = tg.zeros(2, requires_grad=True)
    >>> w.grad = tg.tensor([3.0, 4.0])
    >>> clip_grad_norm_([w], max_norm=1.0).item()       # the norm before clipping
    5.0
    >>> [round(v, 4) for v in w.grad.tolist()]
    [0.6, 0.8]
"""
import math

import numpy as np

from ..autograd import no_grad
from ..ops.movement import cat
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale all gradients together so that their joint norm is at most ``max_norm``.

    The joint norm is the norm of the vector of all gradient entries (for
    norm_type=2: √(Σ_p ‖g_p‖²)); ``inf`` uses the largest |entry|. Returns
    that norm as computed *before* clipping (a tensor on the gradients'
    device). The scale is max_norm / (norm + 1e-6), applied only when it is
    below 1, as PyTorch.
    """
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return Tensor(0.0)
    norm_type = float(norm_type)
    with no_grad():
        if math.isinf(norm_type):
            total = max(float(abs(g.data).max()) if g.numel() else 0.0 for g in grads)
        else:  # summed in float64: a float32 sum of many squares loses digits
            total = sum(float((abs(g.data.astype(np.float64)) ** norm_type).sum())
                        for g in grads) ** (1 / norm_type)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the "
                               f"gradients is {total}, so they cannot be clipped; set "
                               "error_if_nonfinite=False to skip this check")
        coefficient = max_norm / (total + 1e-6)
        if coefficient < 1:
            for g in grads:
                g.mul_(coefficient)
    return Tensor(total, dtype=grads[0].dtype, device=grads[0].device)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient entry into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    with no_grad():
        for p in _as_list(parameters):
            if p.grad is not None:
                p.grad.copy_(p.grad.data.clip(-clip_value, clip_value))


def parameters_to_vector(parameters):
    """All parameters flattened and joined into one 1-D tensor (a copy)."""
    return cat([p.reshape(-1) for p in _as_list(parameters)])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of ``vec`` into the parameters, in place."""
    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise TypeError(f"vector_to_parameters: expected a 1-D tensor, got "
                        f"{getattr(vec, 'shape', type(vec).__name__)}")
    parameters = _as_list(parameters)
    total = sum(p.numel() for p in parameters)
    if vec.numel() != total:
        raise ValueError(f"vector_to_parameters: the vector has {vec.numel()} elements but the "
                         f"parameters hold {total}")
    start = 0
    with no_grad():
        for p in parameters:
            p.copy_(vec.data[start:start + p.numel()].reshape(p.shape))
            start += p.numel()


def _as_list(parameters):
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)

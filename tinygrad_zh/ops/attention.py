"""Scaled dot-product attention: softmax(Q K^T * scale + mask) V, fused and composite.

One public function, :func:`scaled_dot_product_attention` (PyTorch's name,
signature and semantics), with two paths:

- **fused** (the default): :class:`FusedAttention`, an autograd Function whose
  forward and backward call the dispatched kernel (``tinygrad_zh.kernels``:
  Numba on the CPU, numba.cuda on the GPU, or the NumPy reference when forced).
  The kernels never hold the whole L x S matrix of scores: they keep one block
  of it at a time (FlashAttention's online softmax) and save each row's
  log-sum-exp, from which the backward rebuilds the probabilities.
- **composite**: :func:`sdpa_reference`, the definition written with Tensor
  ops. It is what the fused path is tested against, and it runs what the
  kernels do not cover: dropout, and a float mask that itself needs a gradient.

Second derivatives work on both paths: when the backward is itself recorded
(``create_graph=True``), the fused Function writes its backward with Tensor
ops, so the gradient can be differentiated again.

Shapes: query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev);
the batch dims (...) broadcast. ``attn_mask``: bool (True = take part) or
float (added to the scores), broadcastable to (..., L, S). ``is_causal``: query
i sees keys j <= i (top-left aligned, as PyTorch's ``tril`` when L != S). A row
whose keys are all masked has no softmax: its output is NaN, as in PyTorch.

    >>> import tinygrad_zh as tg
    >>> _ = tg.manual_seed(0)
    >>> q, k, v = tg.randn(2, 5, 4), tg.randn(2, 7, 4), tg.randn(2, 7, 3)
    >>> out = scaled_dot_product_attention(q, k, v, is_causal=True)
    >>> out.shape
    (2, 5, 3)
    >>> bool(((out - sdpa_reference(q, k, v, is_causal=True)).abs() < 1e-5).all())
    True
"""
import math

import numpy as np

from .. import backend, kernels
from ..autograd import Function, is_grad_enabled
from ..tensor import Tensor
from .elementwise import constant


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(query key^T * scale + mask) value, as PyTorch's ``F.scaled_dot_product_attention``.

    ``scale`` defaults to 1/sqrt(E). ``dropout_p`` > 0 drops attention
    weights (always, as PyTorch's functional form does: pass 0.0 in eval
    mode), using tinygrad_zh's seeded generator.
    """
    _check_inputs(query, key, value, attn_mask, dropout_p, is_causal)
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    mask_needs_grad = attn_mask is not None and attn_mask.requires_grad
    if dropout_p > 0 or mask_needs_grad or key.shape[-2] == 0:
        return sdpa_reference(query, key, value, attn_mask, dropout_p, is_causal, scale)
    mask = None if attn_mask is None else _additive_mask(attn_mask.data, query.dtype)
    return FusedAttention.apply(query, key, value, mask=mask, is_causal=is_causal, scale=scale)


def sdpa_reference(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """The composite definition, with Tensor ops: builds the (..., L, S) matrix.

    A row with every key masked is softmax over -inf only, which is NaN, as
    in PyTorch (the fused kernels give NaN there too).
    """
    _check_inputs(query, key, value, attn_mask, dropout_p, is_causal)
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    scores = (query @ key.mT) * scale
    if attn_mask is not None and attn_mask.dtype.kind == "f":
        scores = scores + attn_mask                   # a float mask may carry a gradient
    elif attn_mask is not None or is_causal:
        mask = None if attn_mask is None else _additive_mask(attn_mask.data, query.dtype)
        scores = scores + constant(_bias(mask, is_causal, scores.shape[-2:], query.data))
    weights = scores.softmax(-1)
    if dropout_p > 0:
        weights = _dropout(weights, dropout_p)
    return weights @ value


class FusedAttention(Function):
    """Attention as one op: forward and backward by the dispatched kernel.

    The inputs are broadcast to one batch shape and made C-contiguous once,
    here at the boundary; the kernels see nothing else. The backward's
    gradients keep the broadcast batch shape, and the autograd walk sums them
    back to each input's shape.
    """
    save_inputs = True

    def forward(self, q, k, v, mask, is_causal, scale):
        length, source_length = q.shape[-2], k.shape[-2]
        mask_batch = () if mask is None else mask.shape[:-2]
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2], mask_batch)
        self.arrays = [_contiguous(a, batch + a.shape[-2:]) for a in (q, k, v)]
        self.mask = None if mask is None else _contiguous(mask, batch + (length, source_length))
        self.is_causal, self.scale = is_causal, scale
        self.out, self.lse = kernels.attention_forward(*self.arrays, self.mask, is_causal, scale)
        return self.out

    def backward(self, grad):
        q, k, v = self.saved_inputs
        if is_grad_enabled():  # create_graph=True: a backward that is itself differentiable
            return _backward_with_tensor_ops(self, q, k, v, grad)
        grads = kernels.attention_backward(*self.arrays, self.mask, self.is_causal, self.scale,
                                           self.out, self.lse, _contiguous(grad.data, grad.shape))
        # Arrays of their own (not views): autograd can keep them as .grad without a copy.
        return tuple(Tensor._make(g) for g in grads)


# ------------------------------------------------------------------ helpers
def _backward_with_tensor_ops(node, q, k, v, grad):
    """The attention backward written with Tensor ops, so it can be differentiated.

    With P = softmax(S), S = scale Q K^T + mask, and G = dL/dO::

        dV = P^T G,  dS = P * (G V^T - rowsum(P * G V^T)),  dQ = scale dS K,  dK = scale dS^T Q
    """
    length, source_length = q.shape[-2], k.shape[-2]
    scores = (q @ k.mT) * node.scale
    if node.mask is not None or node.is_causal:
        scores = scores + constant(_bias(node.mask, node.is_causal, (length, source_length),
                                         q.data))
    p = scores.softmax(-1)
    grad_p = grad @ v.mT
    grad_s = p * (grad_p - (grad_p * p).sum(-1, keepdim=True)) * node.scale
    return grad_s @ k, grad_s.mT @ q, p.mT @ grad


def _contiguous(array, shape):
    """``array`` broadcast to ``shape``, as one C-contiguous array (a copy only if needed)."""
    xp = backend.array_module(array)
    if array.shape != shape:
        # Materialise the broadcast: the kernels index every entry. (A
        # broadcast view would also be read-only, a type Numba compiles apart.)
        array = xp.broadcast_to(array, shape).copy()
    return xp.ascontiguousarray(array)


def _additive_mask(mask, dtype):
    """A bool mask (True = take part) as 0 / -inf in ``dtype``; a float mask as it is."""
    if mask.dtype.kind != "b":
        return mask
    xp = backend.array_module(mask)
    return xp.where(mask, 0.0, -xp.inf).astype(dtype)


def _bias(mask, is_causal, shape, like):
    """The additive mask (or the causal one: -inf above the diagonal) as an array."""
    if not is_causal:
        return mask
    xp = backend.array_module(like)
    future = xp.triu(xp.ones(shape, dtype=bool), k=1)   # key j > query i
    return xp.where(future, -xp.inf, 0.0).astype(like.dtype)


def _dropout(weights, p):
    from ..creation import rand  # (creation imports the ops: import here, when first needed)
    keep = rand(*weights.shape, dtype=weights.dtype, device=weights.device).data >= p
    return weights * constant((keep / (1 - p)).astype(weights.dtype))


def _check_inputs(query, key, value, attn_mask, dropout_p, is_causal):
    """Clear errors for shapes, dtypes and devices that attention cannot take."""
    name = "scaled_dot_product_attention"
    tensors = {"query": query, "key": key, "value": value}
    if attn_mask is not None:
        tensors["attn_mask"] = attn_mask
    for label, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {label} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{name}: {label} must have at least 2 dims (..., rows, features), "
                             f"got shape {t.shape}")
    described = ", ".join(f"{label} {t.shape} {t.dtype} on {t.device}"
                          for label, t in tensors.items())
    if len({t.device for t in tensors.values()}) > 1:
        raise RuntimeError(f"{name}: expected all inputs on one device, got {described}")
    if query.dtype.kind != "f" or not query.dtype == key.dtype == value.dtype:
        raise TypeError(f"{name}: query, key and value must share one floating dtype, "
                        f"got {described}")
    if key.shape[-1] != query.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{name}: expected query (..., L, E), key (..., S, E) and value "
                         f"(..., S, Ev), got {described}")
    try:
        batch = np.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except ValueError:
        raise ValueError(f"{name}: the batch dims of query, key and value do not broadcast: "
                         f"{described}") from None
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{name}: pass either attn_mask or is_causal=True, not both")
        if attn_mask.dtype.kind != "b" and attn_mask.dtype != query.dtype:
            raise TypeError(f"{name}: attn_mask must be bool or have the query's dtype "
                            f"({query.dtype}), got {attn_mask.dtype}")
        scores_shape = batch + (query.shape[-2], key.shape[-2])
        try:
            fits = np.broadcast_shapes(attn_mask.shape, scores_shape) == scores_shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"{name}: attn_mask of shape {attn_mask.shape} does not broadcast "
                             f"to the scores' shape {scores_shape} (..., L, S)")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{name}: dropout_p must be in [0, 1), got {dropout_p}")

"""nn.MultiheadAttention: PyTorch's layer, written out with plain tensor ops.

For each head h, with the inputs projected by learned matrices:

    Q_h = query W_q,h    K_h = key W_k,h    V_h = value W_v,h        (head_dim = E / H)
    head_h = softmax(Q_h K_hᵀ / sqrt(head_dim) + mask) V_h
    output = concat(head_1, ..., head_H) W_out + b_out

The attention weights are computed explicitly (not by the fused
``F.scaled_dot_product_attention``), because this layer returns them too
(``need_weights=True``, PyTorch's default).

    >>> import tinygrad_zh as tg
    >>> _ = tg.manual_seed(0)
    >>> mha = MultiheadAttention(embed_dim=8, num_heads=2, batch_first=True)
    >>> x = tg.randn(3, 5, 8)                      # (batch, sequence, embed)
    >>> out, weights = mha(x, x, x)
    >>> out.shape, weights.shape                   # weights averaged over the heads
    ((3, 5, 8), (3, 5, 5))
"""
import math

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import functional as F
from . import init
from .linear import Linear
from .module import Module, Parameter

__all__ = ["MultiheadAttention"]


class MultiheadAttention(Module):
    """Multi-head attention as ``torch.nn.MultiheadAttention``.

    Inputs are (L, N, E) — sequence first, PyTorch's default — or (N, L, E)
    with ``batch_first=True``, or unbatched (L, E). Masks follow PyTorch:
    a boolean ``attn_mask`` (L, S) or (N * num_heads, L, S) is True where
    attention is *not* allowed; a boolean ``key_padding_mask`` (N, S) is True
    at padding keys; float masks are added to the scores.

    Not supported (they raise): ``add_bias_kv``, ``add_zero_attn`` and
    ``kdim``/``vdim`` different from ``embed_dim``, rarely used options that
    would double the code.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn or kdim not in (None, embed_dim) or \
                vdim not in (None, embed_dim):
            raise NotImplementedError("MultiheadAttention: add_bias_kv, add_zero_attn and "
                                      "kdim/vdim != embed_dim are not supported")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        # PyTorch's layout: the three input projections stacked in one (3E, E) matrix.
        self.in_proj_weight = Parameter(np.empty((3 * embed_dim, embed_dim), np.float32))
        self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, np.float32)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        if is_causal and attn_mask is None:
            raise ValueError("MultiheadAttention: is_causal=True is only a hint that attn_mask "
                             "is causal (as in PyTorch); pass the causal attn_mask too")
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))  # (1, L, E)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:  # (L, N, E) -> (N, L, E): one layout below
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        if query.ndim != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiheadAttention: query must be (L, E), (L, N, E) or, with "
                             f"batch_first, (N, L, E) with E = {self.embed_dim}; got "
                             f"{tuple(query.shape)}")
        N, L, E = query.shape
        S = key.shape[1]
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        q = self._heads(F.linear(query, w_q, b_q))
        k = self._heads(F.linear(key, w_k, b_k))
        v = self._heads(F.linear(value, w_v, b_v))
        scores = (q @ k.mT) * (1.0 / math.sqrt(self.head_dim))      # (N, H, L, S)
        mask = self._additive_mask(attn_mask, key_padding_mask, N, L, S, scores.dtype)
        if mask is not None:
            scores = scores + mask
        weights = scores.softmax(-1)
        out = F.dropout(weights, self.dropout, self.training) @ v     # (N, H, L, hd)
        out = self.out_proj(out.transpose(1, 2).reshape(N, L, E))
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        return out, (weights.squeeze(0) if unbatched else weights)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")

    def _heads(self, x):
        """(N, T, E) -> (N, H, T, head_dim)."""
        N, T, _ = x.shape
        return x.reshape(N, T, self.num_heads, self.head_dim).transpose(1, 2)

    def _additive_mask(self, attn_mask, key_padding_mask, N, L, S, dtype):
        """Both masks as one array added to the (N, H, L, S) scores, -inf where banned."""
        total = None
        for mask, shape in ((attn_mask, None), (key_padding_mask, (N, 1, 1, S))):
            if mask is None:
                continue
            m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
            xp = backend.array_module(m)
            m = xp.where(m, -xp.inf, 0.0).astype(dtype) if m.dtype == bool else m.astype(dtype)
            if shape is None:  # attn_mask: (L, S) or (N * H, L, S)
                if m.shape not in ((L, S), (N * self.num_heads, L, S)):
                    raise ValueError(f"MultiheadAttention: attn_mask must have shape {(L, S)} "
                                     f"or {(N * self.num_heads, L, S)}, got {m.shape}")
                shape = (1, 1, L, S) if m.ndim == 2 else (N, self.num_heads, L, S)
            elif m.shape != (N, S):
                raise ValueError(f"MultiheadAttention: key_padding_mask must have shape "
                                 f"{(N, S)} (batch, source length), got {m.shape}")
            m = m.reshape(shape)
            total = m if total is None else total + m
        return None if total is None else Tensor._make(total)

"""A GPT in one file, in the shape of nanoGPT's model.py: read it top to bottom.

    GPTConfig              the sizes, a dataclass
    CausalSelfAttention    every position looks at itself and the positions before it
    MLP                    Linear -> GELU -> Linear, 4x wider in the middle
    Block                  x + attn(ln(x)), then x + mlp(ln(x))   (pre-LayerNorm)
    GPT                    token + position embeddings -> blocks -> LayerNorm -> logits
                           forward (with the loss), generate (with a KV cache),
                           num_parameters, configure_optimizers

Shapes: B batch, T time (tokens), C = n_embd channels, H heads of size C / H,
V the vocabulary.

    >>> import tinygrad_zh as tg
    >>> _ = tg.manual_seed(0)
    >>> model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8))
    >>> logits, loss = model(tg.tensor([[1, 2, 3]]), targets=tg.tensor([[2, 3, 4]]))
    >>> logits.shape, round(loss.item(), 1)   # about ln(10) = 2.3 before training
    ((1, 3, 10), 2.3)
    >>> model.generate(tg.tensor([[1, 2]]), max_new_tokens=3, generator=0).shape
    (1, 5)
"""
import math
from dataclasses import dataclass

import numpy as np

from .. import autograd, backend, nn, optim
from ..nn import functional as F
from ..ops.movement import cat
from ..tensor import Tensor

__all__ = ["GPTConfig", "GPT", "CausalSelfAttention", "MLP", "Block", "KVCache"]
# F.scaled_dot_product_attention is one fused op (Numba kernels, forward and
# backward) that never builds the full (T, T) matrix of scores; it lives in
# ops/attention.py beside the composite it is tested against.


@dataclass
class GPTConfig:
    """The sizes of a GPT. The defaults are the small character-level model of
    the well-known CPU recipe (about 0.8 M parameters), not GPT-2's 124 M."""
    vocab_size: int = 65
    block_size: int = 64      # the longest context the model ever sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False        # biases in Linear layers and LayerNorms (GPT-2 has them)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive int, "
                                 f"got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be divisible by n_head "
                             f"({self.n_head}): each head gets n_embd / n_head channels")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")


class KVCache:
    """The keys and values every layer has computed so far, for incremental decoding.

    Without it, generating token t+1 recomputes the keys and values of all t
    earlier tokens, although they have not changed; with it, each step runs
    the model on the one new token only.
    """

    def __init__(self, n_layer):
        self.keys = [None] * n_layer
        self.values = [None] * n_layer

    @property
    def length(self):
        """How many positions are cached."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def extend(self, layer, k, v):
        """Append this step's (B, H, T, hs) keys and values; return all of them."""
        if self.keys[layer] is not None:
            k = cat([self.keys[layer], k], dim=2)
            v = cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions 0..t only."""

    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        # One matrix makes queries, keys and values at once: one GEMM instead of three.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, cache=None, layer=0):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, hs): every head attends on its own slice of channels.
        q, k, v = (t.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in (q, k, v))
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        past = k.shape[2] - T  # how many cached positions come before these T
        # Without a cache (training) the plain causal mask; after cached tokens,
        # query t sits at position past + t and may also see all `past` of them.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=_causal_mask(T, past, x) if past else None, is_causal=not past,
            dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)  # the heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU -> C."""

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-LayerNorm Transformer block: normalise, transform, add back.

    The residual stream x is never normalised itself, only what each sub-layer
    reads from it, so the gradient has a clean path from the loss to the
    embeddings through all the additions: deep stacks train without warm-up tricks.
    """

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The decoder-only Transformer language model."""

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: expected a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)   # token embeddings
        self.wpe = nn.Embedding(config.block_size, config.n_embd)   # learned positions
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output layer scores token i by the dot product with
        # token i's own embedding. One (V, C) matrix instead of two, and every
        # output gradient also trains the input embedding.
        self.lm_head.weight = self.wte.weight
        self._init_weights()

    def _init_weights(self):
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the
        projections that write into the residual stream scaled down by
        1/sqrt(2 n_layer), because 2 n_layer of them are summed into it."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if p.ndim == 1:
                # LayerNorm weights stay 1; biases (of Linear and LayerNorm) become 0.
                if name.endswith("bias"):
                    nn.init.zeros_(p)
            else:
                nn.init.normal_(p, 0.0, residual_std if name.endswith("c_proj.weight") else 0.02)

    def forward(self, idx, targets=None, ignore_index=-100, cache=None):
        """Logits (B, T, V) for token ids ``idx`` (B, T), and the mean cross-entropy
        against ``targets`` (B, T) when given (else None). Targets equal to
        ``ignore_index`` (padding) count for nothing, as in ``F.cross_entropy``.
        With a ``cache``, ``idx`` continues the cached tokens."""
        B, T = _check_tokens(idx, self.config, "forward")
        past = 0 if cache is None else cache.length
        if past + T > self.config.block_size:
            raise ValueError(f"GPT.forward: {past + T} positions ({past} cached + {T} new) but "
                             f"block_size is {self.config.block_size}; crop the context")
        positions = Tensor._make(backend.array_module(idx.data).arange(past, past + T))
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for layer, block in enumerate(self.h):
            x = block(x, cache, layer)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        if tuple(targets.shape) != (B, T):
            raise ValueError(f"GPT.forward: targets have shape {tuple(targets.shape)} but the "
                             f"input ids have shape {(B, T)}; they must match")
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T),
                               ignore_index=ignore_index)
        return logits, loss

    def num_parameters(self, non_embedding=False):
        """How many numbers the model learns; a tied weight counts once.

        With ``non_embedding=True`` the position embeddings are left out (the
        token embeddings stay in: they are also the output layer's weights).
        """
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def configure_optimizers(self, weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.99),
                             eps=1e-8):
        """AdamW with weight decay on the matrices only.

        Every parameter with 2 or more dimensions decays: the Linear weights and
        the embeddings (token embeddings, tied to the output layer, and
        positions), as in nanoGPT. The 1-D ones do not: biases and LayerNorm
        weights set offsets and scales, and pulling those toward 0 only fights
        the normalisation.
        """
        params = list(self.parameters())
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        return optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 generator=None, use_cache=True):
        """``idx`` (B, T) followed by ``max_new_tokens`` sampled tokens: (B, T + new).

        ``temperature`` divides the logits (0 means greedy: always the most
        likely token); ``top_k`` keeps the k most likely tokens, ``top_p`` the
        smallest set whose probability reaches p (nucleus sampling).
        ``generator`` is a ``numpy.random.Generator`` or an int seed.
        """
        new = [token for token, _ in self.stream(idx, max_new_tokens, temperature, top_k,
                                                 top_p, generator, use_cache)]
        if not new:
            return idx
        return cat([idx] + new, dim=1)

    def stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
               generator=None, use_cache=True):
        """Yield ``(next_token (B, 1), logits (B, V))`` step by step; ``generate``
        collects them. The logits are those the token was sampled from, before
        temperature and filtering.

        With the cache, the prompt runs once and then each step feeds only the
        new token. When the context is full (block_size tokens) the positions
        of the cached keys would have to shift, which learned absolute
        positions cannot do; then each step reruns the last block_size tokens,
        exactly as without a cache.
        """
        _check_sampling(temperature, top_k, top_p)
        _check_tokens(idx, self.config, "generate")
        rng = generator if isinstance(generator, np.random.Generator) else \
            np.random.default_rng(generator)
        block = self.config.block_size
        was_training = self.training
        self.eval()
        try:
            with autograd.no_grad():
                context, cache, fresh = idx, None, idx
                for step in range(max_new_tokens):
                    if not use_cache or cache is None or context.shape[1] > block:
                        context = context[:, -block:]
                        cache = KVCache(self.config.n_layer) if use_cache else None
                        fresh = context
                    logits, _ = self(fresh, cache=cache)
                    logits = logits.data[:, -1, :]
                    # Sampling runs on the CPU with NumPy's generator (one small (B, V)
                    # copy per step): a seed draws the same numbers on every device.
                    token = _sample(backend.to_device(logits, "cpu"), temperature, top_k, top_p,
                                    rng, step)
                    token = Tensor._make(backend.to_device(token, idx.device))
                    yield token, Tensor._make(logits)
                    context = cat([context, token], dim=1)
                    fresh = token
        finally:
            self.train(was_training)


# ------------------------------------------------------------------ helpers
def _causal_mask(T, past, like):
    """(T, past + T) booleans on ``like``'s device, True where query t (at position
    past + t) may look: at every cached position and at itself and earlier among
    the new ones."""
    if T == 1:
        return None  # one new token may look at everything before it
    xp = backend.array_module(like.data)
    rows = xp.arange(past, past + T)[:, None]
    return Tensor._make(xp.arange(past + T)[None, :] <= rows)


def _check_tokens(idx, config, where):
    if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype.kind not in "iu":
        raise TypeError(f"GPT.{where}: expected token ids as an integer tensor of shape "
                        f"(batch, time), got "
                        f"{getattr(idx, 'shape', type(idx).__name__)} "
                        f"{getattr(idx, 'dtype', '')}".rstrip())
    if idx.numel() and (int(idx.data.min()) < 0 or int(idx.data.max()) >= config.vocab_size):
        raise ValueError(f"GPT.{where}: token ids must lie in [0, {config.vocab_size}) "
                         f"(vocab_size), got ids from {int(idx.data.min())} to "
                         f"{int(idx.data.max())}; was the text encoded with this model's "
                         "tokenizer?")
    return idx.shape


def _check_sampling(temperature, top_k, top_p):
    if temperature < 0:
        raise ValueError(f"generate: temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"generate: top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")


def _sample(logits, temperature, top_k, top_p, rng, step):
    """One token id per row of ``logits`` (B, V), a NumPy array, as a (B, 1) int64 array."""
    if not np.isfinite(logits).all():
        bad = logits[~np.isfinite(logits)].ravel()[0]
        raise FloatingPointError(
            f"generate: the model produced non-finite logits ({bad}) at step {step}; sampling "
            "from them would give a meaningless token. The weights have probably diverged "
            "(NaN in training): check the checkpoint and the learning rate")
    if temperature == 0:
        return logits.argmax(axis=-1)[:, None].astype(np.int64)
    logits = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1:
        # Keep the most likely tokens until their total reaches top_p (the one
        # that crosses the line included); zero the rest and renormalise.
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass ranked above each
        drop = np.zeros_like(probs, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p, axis=-1)
        probs = np.where(drop, 0.0, probs)
        probs /= probs.sum(axis=-1, keepdims=True)
    # Inverse-CDF sampling: the first token whose cumulative probability exceeds
    # u, drawn in [0, total): never a token of probability 0, even after rounding.
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random((probs.shape[0], 1)) * cdf[:, -1:]
    return (cdf <= u).sum(axis=-1, keepdims=True).astype(np.int64)

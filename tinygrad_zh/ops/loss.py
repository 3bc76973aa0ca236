"""Cross-entropy, fused: log-softmax and picking the target in one Function.

For logits z (M rows of C classes) and per-row target coefficients a_ic,

    loss_i = -Σ_c a_ic · log softmax(z_i)_c

Every form of ``F.cross_entropy`` is this formula with different a:

    class index y_i:     a_ic = w_c · ((1 - ε)·[c = y_i] + ε/C)   (0 for an ignored row)
    probabilities p_ic:  a_ic = w_c · ((1 - ε)·p_ic + ε/C)

(w the class weights, ε the label smoothing). Its gradient is written out:

    ∂loss_i/∂z_i = softmax(z_i) · Σ_c a_ic - a_i

which, with one-hot a (no weights, no smoothing), is the famous softmax − one_hot.
log-softmax is computed as (z - max) - log Σ exp(z - max), so logits of 1e4
stay finite. ``reduction='mean'`` divides by Σ_i w_{y_i} over the rows that are
not ignored (index targets; PyTorch's weighted mean) or by M (probabilities).

``cross_entropy_reference`` is the composite (log_softmax, gather) it is tested
against.
"""
from .. import autograd, backend
from ..autograd import Function
from .elementwise import constant


class CrossEntropy(Function):
    """Inputs: logits (M, C), target ((M,) integer or (M, C) probabilities),
    optional class weights (C,). Output: (M,) losses or their reduction."""
    save_inputs = True

    def forward(self, logits, target, *weight, index_target, ignore_index, label_smoothing,
                reduction):
        xp = backend.array_module(logits)
        m, c = logits.shape
        self.smoothing, self.reduction, self.index_target = label_smoothing, reduction, index_target
        shifted = logits - backend.max_keepdims(logits, 1)
        self.log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        if index_target:
            valid = target != ignore_index
            a = xp.full((m, c), label_smoothing / c, dtype=logits.dtype)
            a[xp.arange(m), xp.where(valid, target, 0)] += 1 - label_smoothing
            a *= valid[:, None]
        else:
            a = target * (1 - label_smoothing) + label_smoothing / c
        if weight:
            a = a * weight[0]
        self.a = a.astype(logits.dtype, copy=False)
        losses = -(self.a * self.log_probs).sum(axis=1)
        if reduction == "none":
            return losses
        self.scale = 1.0
        if reduction == "mean":
            if index_target:
                picked = weight[0][xp.where(valid, target, 0)] if weight else xp.ones(m)
                denominator = float((picked * valid).sum())
            else:
                denominator = m
            self.scale = 1.0 / denominator if denominator else float("nan")  # all ignored: NaN
        return xp.asarray(losses.sum() * self.scale, dtype=logits.dtype)

    def backward(self, grad):
        logits, target = self.saved_inputs[:2]
        per_row = grad.reshape(-1, 1) if self.reduction == "none" else grad * self.scale
        if autograd.is_grad_enabled():   # create_graph: softmax as a function of the logits
            probs, log_probs = logits.softmax(-1), logits.log_softmax(-1)
        else:
            probs = constant(backend.array_module(self.log_probs).exp(self.log_probs))
            log_probs = constant(self.log_probs)
        a = constant(self.a)
        if autograd.is_grad_enabled() and not self.index_target:  # a depends on the target
            a = target * (1 - self.smoothing) + self.smoothing / logits.shape[1]
            if len(self.inputs) == 3:
                a = a * self.inputs[2]
        grad_logits = per_row * (probs * a.sum(1, keepdim=True) - a)
        grad_target = None
        if not self.index_target and target.requires_grad:
            # ∂loss_i/∂p_ic = -(1 - ε) · w_c · log softmax(z_i)_c
            scale = -(1 - self.smoothing)
            if len(self.inputs) == 3:
                log_probs = log_probs * self.inputs[2]
            grad_target = per_row * log_probs * scale
        return (grad_logits, grad_target) + ((None,) if len(self.inputs) == 3 else ())


def nll_rows(log_probs, target, weight=None, ignore_index=-100):
    """Negative log-likelihood of each row's target class: ``-w[y_i]·log_probs[i, y_i]``.

    Rows (M, C) and class indices (M,). Returns the per-row losses (0 for
    ignored rows) and the weight each row counts with in a mean (w[y_i], or
    0 when ignored). The composite that ``F.nll_loss`` is made of.
    """
    xp = backend.array_module(target.data)
    valid = target.data != ignore_index
    safe = constant(xp.where(valid, target.data, 0))
    mask = constant(valid.astype(log_probs.dtype))
    row_weight = (weight[safe] if weight is not None else 1.0) * mask
    picked = log_probs.gather(1, safe.reshape(-1, 1)).reshape(-1)
    return -picked * row_weight, row_weight


def cross_entropy_reference(logits, target, weight=None, ignore_index=-100, label_smoothing=0.0,
                            reduction="mean"):
    """The same loss from plain ops, rows (M, C) only, for testing the fused one."""
    log_probs = logits.log_softmax(-1)
    m, c = logits.shape
    w = weight if weight is not None else \
        constant(backend.array_module(logits.data).ones(c, dtype=logits.dtype))
    smooth = -(log_probs * w).sum(-1) / c          # the uniform part of the target
    if target.dtype.kind == "f":
        nll = -(log_probs * target * w).sum(-1)
        total = m
    else:
        nll, row_weight = nll_rows(log_probs, target, weight, ignore_index)
        smooth = smooth * constant((target.data != ignore_index).astype(logits.dtype))
        total = row_weight.sum()
    losses = (1 - label_smoothing) * nll + label_smoothing * smooth
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / total

"""``nn.functional`` (imported as ``F``): every layer and loss as a plain function.

The layer classes in ``nn`` hold parameters and call these; nothing is
implemented twice. The hot paths are fused ops from ``tinygrad_zh/ops``
(linear, conv2d, layer_norm, cross_entropy); the rest are short compositions
of Tensor ops, so autograd differentiates them for free.

    >>> import tinygrad_zh as tg
    >>> import tinygrad_zh.nn.functional as F
    >>> logits = tg.tensor([[2.0, 0.0, -1.0]])
    >>> round(F.cross_entropy(logits, tg.tensor([0])).item(), 4)
    0.1698

Where this differs from PyTorch, and why:

- The elementwise losses (mse_loss, l1_loss, ...) raise on input/target shapes
  that differ instead of broadcasting them with a warning: a (N, 1) prediction
  against an (N,) target silently becomes an (N, N) loss, a classic bug.
- Input and parameters must share one floating dtype (PyTorch checks this too;
  NumPy alone would silently compute in float64).
- Not implemented: max_pool2d's ceil_mode/return_indices, avg_pool2d's
  count_include_pad=False, pad modes other than 'constant'. ``inplace=True``
  is accepted and ignored: autograd does not record in-place ops.
"""
import numpy as np

from .. import backend
from .. import creation
from ..autograd import no_grad
from ..ops import activation as _activation
from ..ops.attention import scaled_dot_product_attention  # fused; beside its composite there
from ..ops.conv import Conv2d as _Conv2d
from ..ops.conv import output_size as _output_size
from ..ops.elementwise import constant as _constant
from ..ops.elementwise import where as _where
from ..ops.embedding import Embedding as _Embedding
from ..ops.linear import Linear as _Linear
from ..ops.loss import CrossEntropy as _CrossEntropy
from ..ops.loss import nll_rows as _nll_rows
from ..ops.movement import cat as _cat
from ..ops.norm import LayerNorm as _LayerNorm
from ..ops.pad import Pad as _Pad
from ..ops.pool import MaxPool2d as _MaxPool2d
from ..tensor import Tensor

__all__ = [
    "linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm",
    "layer_norm", "embedding", "dropout", "relu", "gelu", "silu", "softplus", "logsigmoid",
    "leaky_relu", "sigmoid", "tanh",
    "softmax", "log_softmax", "pad", "one_hot", "cross_entropy", "nll_loss", "mse_loss", "l1_loss",
    "smooth_l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "multi_margin_loss", "kl_div", "scaled_dot_product_attention",
]


# ================================================================== layers
def linear(input, weight, bias=None):
    """y = x Wᵀ + b, with W of shape (out_features, in_features) as in PyTorch.

        >>> import tinygrad_zh as tg
        >>> linear(tg.ones(2, 3), tg.ones(4, 3), tg.zeros(4)).shape
        (2, 4)
    """
    if input.shape[-1:] != weight.shape[-1:] or weight.ndim != 2:
        raise ValueError(f"linear: input of shape {input.shape} needs a weight of shape "
                         f"(out_features, {input.shape[-1] if input.ndim else '?'}), "
                         f"got {weight.shape}")
    _check_dtypes("linear", input, weight, bias)
    if bias is None:
        return _Linear.apply(input, weight)
    if bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
    return _Linear.apply(input, weight, bias)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch), im2col + one GEMM.

    input (N, C, H, W) or (C, H, W); weight (out_channels, C / groups, kh, kw).

        >>> import tinygrad_zh as tg
        >>> conv2d(tg.ones(1, 1, 5, 5), tg.ones(2, 1, 3, 3), padding=1).shape
        (1, 2, 5, 5)
    """
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups)[0]
    stride, dilation = _pair(stride), _pair(dilation)
    if isinstance(padding, str):
        input, padding = _string_padding(input, weight, padding, stride, dilation)
    padding = _pair(padding)
    if input.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D input (N, C, H, W) and a 4-D weight, got "
                         f"shapes {input.shape} and {weight.shape}")
    out_channels, in_per_group = weight.shape[:2]
    if input.shape[1] != in_per_group * groups or out_channels % groups:
        raise ValueError(f"conv2d: input of shape {input.shape} has {input.shape[1]} channels, "
                         f"but the weight of shape {weight.shape} with groups={groups} expects "
                         f"{in_per_group * groups} (and out_channels divisible by groups)")
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"conv2d: bias has shape {bias.shape}, expected ({out_channels},)")
    sizes = [_output_size(n, k, s, p, d) for n, k, s, p, d in
             zip(input.shape[2:], weight.shape[2:], stride, padding, dilation)]
    if min(sizes) <= 0:
        raise ValueError(f"conv2d: the kernel {tuple(weight.shape[2:])} (dilation {dilation}) "
                         f"does not fit the padded input {tuple(input.shape[2:])} + 2*{padding}")
    _check_dtypes("conv2d", input, weight, bias)
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if bias is None:
        return _Conv2d.apply(input, weight, **params)
    return _Conv2d.apply(input, weight, bias, **params)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1):
    """Maximum over each window; the gradient goes to the element that was the max
    (one fused op, see ops/pool.py).

        >>> import tinygrad_zh as tg
        >>> max_pool2d(tg.arange(16.0).reshape(1, 1, 4, 4), 2)
        tensor([[[[ 5.,  7.],
                  [13., 15.]]]])
    """
    kernel, stride, padding, dilation, out = _pool_geometry(
        "max_pool2d", input, kernel_size, stride, padding, dilation)
    return _MaxPool2d.apply(input, kernel=kernel, stride=stride, padding=padding,
                            dilation=dilation, out_size=out)


def avg_pool2d(input, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Mean over each window: the sum of kh·kw shifted strided slices, divided.

    Zero padding counts in the mean (``count_include_pad=True``, PyTorch's default).

        >>> import tinygrad_zh as tg
        >>> avg_pool2d(tg.arange(16.0).reshape(1, 1, 4, 4), 2).tolist()
        [[[[2.5, 4.5], [10.5, 12.5]]]]
    """
    if not count_include_pad:
        raise NotImplementedError("avg_pool2d: count_include_pad=False is not supported")
    kernel, stride, padding, _, (oh, ow) = _pool_geometry(
        "avg_pool2d", input, kernel_size, stride, padding, 1)
    x = pad(input, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else input
    total = 0
    for i in range(kernel[0]):   # a loop over kernel positions, not over pixels
        for j in range(kernel[1]):
            total = total + x[:, :, i:i + stride[0] * (oh - 1) + 1:stride[0],
                              j:j + stride[1] * (ow - 1) + 1:stride[1]]
    return total / (kernel[0] * kernel[1])


def adaptive_avg_pool2d(input, output_size):
    """Average over a grid of ``output_size`` cells covering the input exactly.

    Cell i along a side of length n spans [floor(i·n/k), ceil((i+1)·n/k)).
    Cells are rectangles, so rows are averaged first, then columns.

        >>> import tinygrad_zh as tg
        >>> adaptive_avg_pool2d(tg.ones(2, 3, 5, 7), 1).shape
        (2, 3, 1, 1)
    """
    oh, ow = _pair(output_size)
    h, w = input.shape[-2:]
    oh, ow = h if oh is None else oh, w if ow is None else ow
    if (oh, ow) == (1, 1):
        return input.mean((-2, -1), keepdim=True)
    x = _cat([input[..., i * h // oh:-(-(i + 1) * h // oh), :].mean(-2, keepdim=True)
              for i in range(oh)], dim=input.ndim - 2)
    return _cat([x[..., j * w // ow:-(-(j + 1) * w // ow)].mean(-1, keepdim=True)
                 for j in range(ow)], dim=input.ndim - 1)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel (dim 1) over the batch and spatial dims.

    Training: use the batch's mean and biased variance, and update the running
    estimates in place, ``running = (1 - momentum)·running + momentum·batch``,
    with the *unbiased* batch variance (as PyTorch). Evaluation: use the
    running estimates.

        >>> import tinygrad_zh as tg
        >>> mean, var = tg.zeros(1), tg.ones(1)
        >>> y = batch_norm(tg.tensor([[1.0], [3.0]]), mean, var, training=True)
        >>> [round(v, 4) for v in y.reshape(-1).tolist()]   # (x - 2) / √(1 + eps)
        [-1.0, 1.0]
        >>> round(mean.item(), 4), round(var.item(), 4)   # 0.9·0 + 0.1·2, 0.9·1 + 0.1·2
        (0.2, 1.1)
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got {input.shape}")
    dims = (0,) + tuple(range(2, input.ndim))
    stat_shape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    if training:
        count = input.numel() // input.shape[1]
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input of shape {input.shape}")
        mean = input.mean(dims, keepdim=True)
        var = input.var(dims, correction=0, keepdim=True)
        if running_mean is not None:
            with no_grad():
                running_mean.mul_(1 - momentum).add_(mean.reshape(-1).data * momentum)
                running_var.mul_(1 - momentum).add_(
                    var.reshape(-1).data * (momentum * count / (count - 1)))
    else:
        if running_mean is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when "
                             "training=False")
        mean, var = running_mean.reshape(stat_shape), running_var.reshape(stat_shape)
    y = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        y = y * weight.reshape(stat_shape)
    return y if bias is None else y + bias.reshape(stat_shape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` dims; one fused op.

        >>> import tinygrad_zh as tg
        >>> y = layer_norm(tg.tensor([[1.0, 2.0, 3.0]]), (3,))
        >>> [round(v, 4) for v in y.tolist()[0]]
        [-1.2247, 0.0, 1.2247]
    """
    normalized_shape = _shape(normalized_shape)
    if tuple(input.shape[input.ndim - len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {input.shape} does not end with "
                         f"normalized_shape {normalized_shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != normalized_shape:
            raise ValueError(f"layer_norm: {name} has shape {t.shape}, expected "
                             f"{normalized_shape}")
    _check_dtypes("layer_norm", input, weight, bias)
    affine = [t for t in (weight, bias) if t is not None]
    return _LayerNorm.apply(input, *affine, ndims=len(normalized_shape), eps=eps,
                            has_weight=weight is not None, has_bias=bias is not None)


def embedding(input, weight, padding_idx=None):
    """Rows of ``weight`` picked by integer ``input``; row ``padding_idx`` gets no gradient.

        >>> import tinygrad_zh as tg
        >>> embedding(tg.tensor([[0, 2]]), tg.eye(3)).tolist()
        [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
    """
    if input.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be an integer tensor, got dtype {input.dtype}")
    if input.device != weight.device:   # CuPy would copy the ids over, then fail in backward
        raise RuntimeError(f"embedding: expected the indices and the weight on one device, but "
                           f"they are on {input.device} and {weight.device}; move the indices "
                           f"with .to({weight.device!r})")
    num = weight.shape[0]
    if input.numel() and (int(input.data.min()) < 0 or int(input.data.max()) >= num):
        bad = int(input.data.min()) if int(input.data.min()) < 0 else int(input.data.max())
        raise IndexError(f"embedding: index {bad} is out of range for an embedding of "
                         f"{num} rows (weight shape {weight.shape}, indices shape {input.shape})")
    rows = _Embedding.apply(weight, input)
    if padding_idx is None:
        return rows
    padding_idx = padding_idx % num
    # Same values, but the padding positions take a detached copy: no gradient flows there.
    is_padding = _constant((input.data == padding_idx)[..., None])
    return _where(is_padding, rows.detach(), rows)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p; scale the rest by 1/(1-p) ("inverted"
    dropout, so evaluation needs no rescaling). Off when ``training`` is False.
    The mask comes from the generator ``tg.manual_seed`` seeds.

        >>> import tinygrad_zh as tg
        >>> _ = tg.manual_seed(0)
        >>> sorted(set(dropout(tg.ones(10), 0.5).tolist()))   # dropped, or kept and doubled
        [0.0, 2.0]
    """
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: probability has to be between 0 and 1, got {p}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0
    keep = creation.rand(*input.shape, dtype=input.dtype, device=input.device).data >= p
    return input * _constant(keep.astype(input.dtype) * (1 / (1 - p)))


# ================================================================== activations
def relu(input, inplace=False):
    return input.relu()


def gelu(input, approximate="none"):
    """x·Φ(x); ``approximate='tanh'`` for GPT-2's tanh formula."""
    return _activation.gelu(input, approximate)


def silu(input, inplace=False):
    """x·σ(x) (also called swish)."""
    return input * input.sigmoid()


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + e^(βx)) / β, a smooth relu (x itself where βx > threshold)."""
    return _activation.softplus(input, beta, threshold)


def logsigmoid(input):
    """log σ(x), accurate on both tails."""
    return _activation.logsigmoid(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x for x > 0, else negative_slope·x."""
    return _where(input > 0, input, input * negative_slope)


def sigmoid(input):
    return input.sigmoid()


def tanh(input):
    return input.tanh()


def softmax(input, dim):
    return input.softmax(dim)


def log_softmax(input, dim):
    return input.log_softmax(dim)


# ================================================================== utilities
def pad(input, pad, mode="constant", value=0.0):
    """Pad the last dims: ``pad = (left, right, top, bottom, ...)`` from the last dim back.

        >>> import tinygrad_zh as tg
        >>> pad(tg.ones(1, 2), (1, 0)).tolist()
        [[0.0, 1.0, 1.0]]
    """
    if mode != "constant":
        raise NotImplementedError(f"pad: only mode='constant' is supported, got {mode!r}")
    pad = tuple(int(n) for n in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: needs pairs (before, after) for at most {input.ndim} dims, "
                         f"got {pad} for input of shape {input.shape}")
    if min(pad, default=0) < 0:
        raise ValueError(f"pad: negative padding (cropping) is not supported, got {pad}")
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)][::-1]
    widths = ((0, 0),) * (input.ndim - len(pairs)) + tuple(pairs)
    return _Pad.apply(input, widths=widths, value=value)


def one_hot(tensor, num_classes=-1):
    """int64 one-hot rows: ``one_hot(tg.tensor([1]), 3)`` is ``[[0, 1, 0]]``."""
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer tensor, got dtype {tensor.dtype}")
    data = tensor.data
    if num_classes == -1:
        num_classes = int(data.max()) + 1 if data.size else 0
    if data.size and (int(data.min()) < 0 or int(data.max()) >= num_classes):
        raise ValueError(f"one_hot: class values must be in [0, {num_classes}), got "
                         f"min {int(data.min())}, max {int(data.max())}")
    xp = backend.array_module(data)
    return _constant((data[..., None] == xp.arange(num_classes)).astype(np.int64))


# ================================================================== losses
def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy from raw logits; one fused op.

    input (N, C) or (N, C, d1, ...) (class dim 1) or (C,); target either class
    indices of shape (N, d1, ...) or probabilities of the input's shape.
    """
    _check_reduction("cross_entropy", reduction, ("none", "mean", "sum"))
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    rows, targets, lead, index = _class_rows("cross_entropy", input, target, ignore_index)
    _check_weight("cross_entropy", weight, rows.shape[1])
    extra = () if weight is None else (weight,)
    out = _CrossEntropy.apply(rows, targets, *extra, index_target=index,
                              ignore_index=ignore_index, label_smoothing=label_smoothing,
                              reduction=reduction)
    return out.reshape(lead) if reduction == "none" else out


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities: ``-w[y]·input[y]``;
    ``cross_entropy`` is ``nll_loss(log_softmax(x))``.

        >>> import tinygrad_zh as tg
        >>> nll_loss(tg.tensor([[-0.5, -2.0], [-1.0, -0.1]]), tg.tensor([0, 1])).item()
        0.30000001192092896
    """
    _check_reduction("nll_loss", reduction, ("none", "mean", "sum"))
    rows, targets, lead, index = _class_rows("nll_loss", input, target, ignore_index)
    if not index:
        raise TypeError(f"nll_loss: target must hold class indices (an integer tensor), got "
                        f"dtype {target.dtype}")
    _check_weight("nll_loss", weight, rows.shape[1])
    losses, row_weight = _nll_rows(rows, targets, weight, ignore_index)
    if reduction == "none":
        return losses.reshape(lead)
    return losses.sum() if reduction == "sum" else losses.sum() / row_weight.sum()


def mse_loss(input, target, reduction="mean"):
    """Mean squared error, (x - y)².

        >>> import tinygrad_zh as tg
        >>> mse_loss(tg.tensor([1.0, 2.0]), tg.tensor([0.0, 0.0])).item()
        2.5
    """
    diff = _pointwise("mse_loss", input, target, reduction) - target
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error, |x - y|.

        >>> import tinygrad_zh as tg
        >>> l1_loss(tg.tensor([1.0, -2.0]), tg.tensor([0.0, 0.0])).item()
        1.5
    """
    return _reduce((_pointwise("l1_loss", input, target, reduction) - target).abs(), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Huber-like: ½d²/β where |d| < β, else |d| - ½β (β = 0 gives L1).

        >>> import tinygrad_zh as tg
        >>> smooth_l1_loss(tg.tensor([0.5, 3.0]), tg.zeros(2), reduction="none").tolist()
        [0.125, 2.5]
    """
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    d = (_pointwise("smooth_l1_loss", input, target, reduction) - target).abs()
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce(_where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-[y·log x + (1-y)·log(1-x)] for probabilities x; each log clamped at -100
    (as PyTorch), so x = 0 or 1 gives a finite loss and gradient.

        >>> import tinygrad_zh as tg
        >>> binary_cross_entropy(tg.tensor([0.0, 0.5]), tg.tensor([1.0, 1.0]),
        ...                      reduction="none").tolist()
        [100.0, 0.6931471824645996]
    """
    _pointwise("binary_cross_entropy", input, target, reduction)
    data = input.data
    if data.size and (float(data.min()) < 0 or float(data.max()) > 1):
        raise ValueError(f"binary_cross_entropy: input values must be probabilities in [0, 1], "
                         f"got min {float(data.min())}, max {float(data.max())} (pass logits "
                         f"to binary_cross_entropy_with_logits instead)")
    tiny = np.finfo(input.dtype).smallest_subnormal  # log(tiny) < -100: no log(0)
    log_x = input.clamp(min=tiny).log().clamp(min=-100)
    log_1mx = (1 - input).clamp(min=tiny).log().clamp(min=-100)
    loss = -(target * log_x + (1 - target) * log_1mx)
    return _reduce(loss if weight is None else loss * weight, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable formula (never log(sigmoid(x))):

        loss = (1 - y)·x - (1 + (pw - 1)·y)·log σ(x)

    since -log(1 - σ(x)) = x - log σ(x); ``logsigmoid`` computes log σ(x) as
    min(x, 0) - log1p(e^(-|x|)), finite and accurate on both tails.

        >>> import tinygrad_zh as tg
        >>> binary_cross_entropy_with_logits(tg.tensor([100.0, 0.0]), tg.tensor([0.0, 1.0]),
        ...                                  reduction="none").tolist()
        [100.0, 0.6931471824645996]
    """
    _pointwise("binary_cross_entropy_with_logits", input, target, reduction)
    scale = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    loss = (1 - target) * input - scale * _activation.logsigmoid(input)
    return _reduce(loss if weight is None else loss * weight, reduction)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """Multi-class hinge loss: Σ_{c≠y} max(0, margin - x_y + x_c)^p / C per row.

        >>> import tinygrad_zh as tg
        >>> multi_margin_loss(tg.tensor([[3.0, 2.5, -1.0]]), tg.tensor([0])).item()
        0.1666666716337204
    """
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: p must be 1 or 2, got {p}")
    _check_reduction("multi_margin_loss", reduction, ("none", "mean", "sum"))
    rows, targets, lead, index = _class_rows("multi_margin_loss", input, target, None)
    if not index or input.ndim > 2:
        raise ValueError(f"multi_margin_loss: expects input (N, C) or (C,) and integer class "
                         f"targets, got shapes {input.shape} and {target.shape} "
                         f"(target dtype {target.dtype})")
    _check_weight("multi_margin_loss", weight, rows.shape[1])
    picked = rows.gather(1, targets.reshape(-1, 1))
    xp = backend.array_module(rows.data)
    others = _constant((xp.arange(rows.shape[1]) != targets.data[:, None]).astype(rows.dtype))
    hinge = (margin - picked + rows).relu()
    terms = hinge if p == 1 else hinge * hinge
    if weight is not None:
        terms = terms * weight[targets].reshape(-1, 1)
    return _reduce(((terms * others).sum(1) / rows.shape[1]).reshape(lead), reduction)


def kl_div(input, target, reduction="mean", log_target=False):
    """KL(target ‖ q) pointwise, with ``input`` = log q (as PyTorch):
    target·(log target - input), and 0 where target = 0.
    Use ``reduction='batchmean'`` for the true KL divergence per sample.

        >>> import tinygrad_zh as tg
        >>> p = tg.tensor([[0.5, 0.5]])
        >>> kl_div(p.log(), p, reduction="batchmean").item()   # KL(p || p) = 0
        0.0
    """
    _check_reduction("kl_div", reduction, ("none", "mean", "sum", "batchmean"))
    _pointwise("kl_div", input, target, "none")
    if log_target:
        loss = target.exp() * (target - input)
    else:
        positive = target > 0  # 0·log 0 = 0; the where keeps log(0) out of the graph
        loss = _where(positive, target * _where(positive, target, 1.0).log(), 0.0) - \
            target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


# ================================================================== helpers
def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _shape(value):
    return (int(value),) if isinstance(value, (int, np.integer)) else tuple(int(n) for n in value)


def _string_padding(input, weight, padding, stride, dilation):
    """padding='valid' (none) or 'same' (output size = input size, stride 1):
    a total of d·(k-1) per side pair, the odd one extra on the right/bottom as
    PyTorch does; uneven padding is applied to the input first."""
    if padding == "valid":
        return input, 0
    if padding != "same":
        raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same'; "
                         f"got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"conv2d: padding='same' needs stride 1, got stride {stride}")
    totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
    if all(t % 2 == 0 for t in totals):
        return input, tuple(t // 2 for t in totals)
    (th, tw) = totals
    return pad(input, (tw // 2, tw - tw // 2, th // 2, th - th // 2)), 0


def _pool_geometry(name, input, kernel_size, stride, padding, dilation):
    if input.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D input (N, C, H, W), got shape {input.shape}")
    kernel = _pair(kernel_size)
    stride = kernel if stride is None or stride == () else _pair(stride)
    padding, dilation = _pair(padding), _pair(dilation)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding {padding} should be at most half of the kernel "
                         f"size {kernel}")
    out = tuple(_output_size(n, k, s, p, d) for n, k, s, p, d in
                zip(input.shape[2:], kernel, stride, padding, dilation))
    if min(out) <= 0:
        raise ValueError(f"{name}: kernel {kernel} does not fit input of shape {input.shape} "
                         f"with padding {padding}")
    return kernel, stride, padding, dilation, out


def _check_dtypes(name, *tensors):
    """One floating dtype for input and parameters, as PyTorch demands: NumPy
    would silently compute float32 x float64 in float64 (slower, and a
    different model)."""
    present = [t for t in tensors if t is not None]
    dtypes = {t.dtype for t in present}
    if len(dtypes) > 1 or present[0].dtype.kind != "f":
        described = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in present)
        raise TypeError(f"{name}: expected floating-point tensors of one dtype, got [{described}]; "
                        f"convert with .float() / .double() (or model.to(dtype))")


def _check_reduction(name, reduction, allowed):
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {', '.join(allowed)}; "
                         f"got {reduction!r}")


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _pointwise(name, input, target, reduction):
    """Checks for the elementwise losses: tensors of one shape and a float dtype."""
    _check_reduction(name, reduction, ("none", "mean", "sum"))
    if not isinstance(target, Tensor):
        raise TypeError(f"{name}: target must be a Tensor, got {type(target).__name__}")
    if input.shape != target.shape:
        raise ValueError(f"{name}: input shape {input.shape} and target shape {target.shape} "
                         f"differ; the loss compares them element by element")
    if input.dtype.kind != "f" or target.dtype.kind != "f":
        raise TypeError(f"{name}: expected floating-point input and target, got dtypes "
                        f"{input.dtype} and {target.dtype}")
    return input


def _check_weight(name, weight, classes):
    if weight is not None and tuple(weight.shape) != (classes,):
        raise ValueError(f"{name}: weight has shape {weight.shape}, expected one weight per "
                         f"class ({classes},)")


def _class_rows(name, input, target, ignore_index):
    """Bring (N, C, d1, ...) logits to rows (M, C) and check the target.

    Returns the rows, the target as (M,) indices or (M, C) probabilities, the
    shape a 'none' reduction has, and whether the target holds indices.
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"{name}: target must be a Tensor, got {type(target).__name__}")
    if input.ndim == 0 or input.dtype.kind != "f":
        raise ValueError(f"{name}: expected float input of shape (N, C, ...) or (C,), got "
                         f"shape {input.shape} dtype {input.dtype}")
    batched = input if input.ndim > 1 else input.unsqueeze(0)
    classes = batched.shape[1]
    lead = batched.shape[:1] + batched.shape[2:] if input.ndim > 1 else ()   # one loss per row
    rows = batched   # (N, C, d1, ...) -> (N, d1, ..., C) -> (M, C)
    if batched.ndim > 2:
        rows = batched.permute(0, *range(2, batched.ndim), 1).reshape(-1, classes)
    if target.dtype.kind == "f":     # class probabilities: the input's shape
        if target.shape != input.shape:
            raise ValueError(f"{name}: probability target of shape {target.shape} must have "
                             f"the input's shape {input.shape}")
        t = target if input.ndim > 1 else target.unsqueeze(0)
        if t.ndim > 2:
            t = t.permute(0, *range(2, t.ndim), 1)
        return rows, t.reshape(-1, classes), lead, False
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold class indices (integer dtype) or class "
                        f"probabilities (float dtype), got dtype {target.dtype} (input shape "
                        f"{input.shape}, target shape {target.shape})")
    if tuple(target.shape) != lead:
        raise ValueError(f"{name}: input of shape {input.shape} needs a class-index target of "
                         f"shape {lead}, got {target.shape}")
    t = target.data.reshape(-1)
    counted = t if ignore_index is None else t[t != ignore_index]
    if counted.size and (int(counted.min()) < 0 or int(counted.max()) >= classes):
        bad = int(counted.min()) if int(counted.min()) < 0 else int(counted.max())
        hint = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise IndexError(f"{name}: target value {bad} is out of range for {classes} classes "
                         f"(input shape {input.shape}, target shape {target.shape}); expected "
                         f"values in [0, {classes - 1}]{hint}")
    return rows, _constant(t.astype(np.int64, copy=False)), lead, True


"""Normalisation layers: BatchNorm1d/2d and LayerNorm."""
from .. import creation
from . import functional as F
from . import init
from .module import Module, Parameter


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d; they differ only in the input dims.

    ``momentum=None`` keeps a cumulative average of all batches' statistics.
    """
    expected_dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        kw = dict(device=device, dtype=dtype or creation.float32)
        if affine:
            self.weight = Parameter(creation.ones(num_features, **kw))
            self.bias = Parameter(creation.zeros(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", creation.zeros(num_features, **kw))
            self.register_buffer("running_var", creation.ones(num_features, **kw))
            self.register_buffer("num_batches_tracked", creation.tensor(0))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            init.zeros_(self.num_batches_tracked)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input):
        if input.ndim not in self.expected_dims or input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input with "
                             f"{' or '.join(map(str, self.expected_dims))} dims and "
                             f"{self.num_features} channels at dim 1, got shape {input.shape}")
        use_batch_stats = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:   # a cumulative average: batch k gets weight 1/k
                momentum = 1.0 / self.num_batches_tracked.item()
        return F.batch_norm(input,
                            self.running_mean if self.track_running_stats else None,
                            self.running_var if self.track_running_stats else None,
                            self.weight, self.bias, use_batch_stats, momentum or 0.0, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs.

        >>> import tinygrad_zh as tg
        >>> bn = BatchNorm1d(3)
        >>> y = bn(tg.randn(8, 3))
        >>> bool(y.mean(0).abs().amax() < 1e-5)
        True
    """
    expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs, one mean/variance per channel."""
    expected_dims = (4,)


class LayerNorm(Module):
    """Normalise over the last dims given by ``normalized_shape`` (one fused op).

        >>> import tinygrad_zh as tg
        >>> LayerNorm(4)(tg.randn(2, 3, 4)).shape
        (2, 3, 4)
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = F._shape(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        kw = dict(device=device, dtype=dtype or creation.float32)
        self.register_parameter("weight", Parameter(creation.ones(*self.normalized_shape, **kw))
                                if elementwise_affine else None)
        self.register_parameter("bias", Parameter(creation.zeros(*self.normalized_shape, **kw))
                                if elementwise_affine and bias else None)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

"""Adam and AdamW: momentum plus a per-coordinate step size, with bias correction.

PyTorch's rule, which we follow exactly (g: the gradient, negated when
``maximize``; t: the step count, 1 at the first step)::

    Adam (L2):          g = g + weight_decay * p
    AdamW (decoupled):  p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * g          first moment: a running mean of g
    v = beta2 * v + (1 - beta2) * g^2        second moment: a running mean of g^2
    v_max = max(v_max, v)                    (amsgrad only; used instead of v below)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

m and v start at zero, so early on they are too small; dividing by
1 - beta^t (the *bias correction*) undoes that: at t = 1, m / (1 - beta1) = g
exactly. The arithmetic runs in one fused kernel, ``tinygrad_zh.kernels.adam_step``
(NumPy reference, Numba on the CPU, CUDA on the GPU), one call per parameter group.

    >>> import tinygrad_zh as tg
    >>> w = tg.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = tg.optim.Adam([w], lr=0.1)
    >>> w.grad = tg.tensor([0.5, 3.0])
    >>> opt.step()
    >>> w      # the first step moves every coordinate by about lr, against its gradient
    tensor([ 0.9, -2.1], requires_grad=True)
"""
from .. import backend
from ..kernels import adam_step
from .optimizer import Optimizer


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
    *, maximize=False, decoupled_weight_decay=False)``, PyTorch's defaults.

    ``decoupled_weight_decay=True`` is AdamW (as in PyTorch, where AdamW is
    Adam with that flag set).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check_hyperparameters(self, group):
        super()._check_hyperparameters(group)
        for i, beta in enumerate(group["betas"]):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{self._name}: invalid beta parameter at index {i}: {beta} "
                                 "(must be in [0, 1))")
        for name in ("eps", "weight_decay"):
            if group[name] < 0:
                raise ValueError(f"{self._name}: invalid {name} value {group[name]} "
                                 "(must be >= 0)")

    def _init_state(self, param, group):
        zeros = backend.array_module(param).zeros_like
        state = {"step": 0, "exp_avg": zeros(param), "exp_avg_sq": zeros(param)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros(param)
        return state

    def _update_group(self, group, params, grads, states):
        # One kernel call takes one step count and one device. Usually that is
        # the whole group; parameters that missed steps (grad None) or live on
        # another device get calls of their own.
        batches = {}
        for item in zip(params, grads, states):
            batches.setdefault((item[2]["step"], backend.device_of(item[0])), []).append(item)
        beta1, beta2 = group["betas"]
        for (step, _), items in batches.items():
            ps, gs, ss = zip(*items)
            adam_step(list(ps), list(gs), [s["exp_avg"] for s in ss],
                      [s["exp_avg_sq"] for s in ss],
                      [s["max_exp_avg_sq"] for s in ss] if group["amsgrad"] else None,
                      step=step, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                      weight_decay=group["weight_decay"],
                      decoupled=group["decoupled_weight_decay"], amsgrad=group["amsgrad"],
                      maximize=group["maximize"])


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
    amsgrad=False, *, maximize=False)``: Adam with decoupled weight decay.

    L2 decay (Adam) adds ``wd * p`` to the gradient, which the adaptive
    denominator then rescales: large-gradient weights are barely decayed.
    Decoupled decay shrinks every weight by the same factor ``1 - lr * wd``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

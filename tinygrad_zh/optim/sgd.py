"""SGD: stochastic gradient descent, with momentum and Nesterov momentum.

With g the gradient (negated when ``maximize``, plus ``weight_decay * p``),
PyTorch's rule, which we follow exactly::

    b = g                                  at the first step (no dampening!)
    b = momentum * b + (1 - dampening) * g  afterwards
    d = g + momentum * b   if nesterov else   b     (d = g when momentum == 0)
    p = p - lr * d

    >>> import tinygrad_zh as tg
    >>> w = tg.tensor([1.0], requires_grad=True)
    >>> opt = tg.optim.SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = tg.tensor([1.0])
    ...     opt.step()
    >>> w      # 1 - 0.1 * 1 - 0.1 * (0.9 * 1 + 1)
    tensor([0.71], requires_grad=True)
"""
from .optimizer import Optimizer, weight_decayed_grad


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
    *, maximize=False)``, PyTorch's defaults."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _check_hyperparameters(self, group):
        super()._check_hyperparameters(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum value {group['momentum']} (must be >= 0)")
        if group["weight_decay"] < 0:
            raise ValueError(f"SGD: invalid weight_decay value {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening "
                             f"(got momentum={group['momentum']}, "
                             f"dampening={group['dampening']})")

    def _update(self, param, grad, state, group):
        d = weight_decayed_grad(grad, param, group["weight_decay"], group["maximize"])
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= momentum
                buf += d if group["dampening"] == 0 else (1 - group["dampening"]) * d
            d = d + momentum * buf if group["nesterov"] else buf
        param -= group["lr"] * d

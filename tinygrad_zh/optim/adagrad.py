"""Adagrad: each coordinate's step shrinks with the sum of its squared gradients.

PyTorch's rule (g: the gradient, negated when ``maximize``, plus
``weight_decay * p``; t: the step count, 1 at the first step)::

    lr_t = lr / (1 + (t - 1) * lr_decay)
    s = s + g^2                       s starts at initial_accumulator_value
    p = p - lr_t * g / (sqrt(s) + eps)

    >>> import tinygrad_zh as tg
    >>> w = tg.tensor([1.0], requires_grad=True)
    >>> opt = tg.optim.Adagrad([w], lr=0.1)
    >>> w.grad = tg.tensor([3.0])
    >>> opt.step()
    >>> w      # 1 - 0.1 * 3 / sqrt(9)
    tensor([0.9], requires_grad=True)
"""
from .. import backend
from .optimizer import Optimizer, weight_decayed_grad


class Adagrad(Optimizer):
    """``Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
    eps=1e-10, *, maximize=False)``, PyTorch's defaults."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _check_hyperparameters(self, group):
        super()._check_hyperparameters(group)
        for name in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            if group[name] < 0:
                raise ValueError(f"Adagrad: invalid {name} value {group[name]} (must be >= 0)")

    def _init_state(self, param, group):
        xp = backend.array_module(param)
        return {"step": 0, "sum": xp.full_like(param, group["initial_accumulator_value"])}

    def _update(self, param, grad, state, group):
        xp = backend.array_module(param)
        g = weight_decayed_grad(grad, param, group["weight_decay"], group["maximize"])
        lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        s = xp.multiply(g, g)                 # the one scratch array
        state["sum"] += s
        xp.sqrt(state["sum"], out=s)
        s += group["eps"]
        xp.divide(g, s, out=s)
        s *= lr
        param -= s

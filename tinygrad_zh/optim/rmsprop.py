"""RMSprop: divide each step by a running root-mean-square of the gradient.

PyTorch's rule (g: the gradient, negated when ``maximize``, plus
``weight_decay * p``)::

    v = alpha * v + (1 - alpha) * g^2              running mean of g^2
    a = alpha * a + (1 - alpha) * g                 (centered only) running mean of g
    s = sqrt(v - a^2) + eps  if centered  else  sqrt(v) + eps
    b = momentum * b + g / s;  p = p - lr * b       if momentum > 0
    p = p - lr * g / s                              otherwise

Note that eps is added *outside* the square root (as in PyTorch; Keras adds
it inside).

    >>> import tinygrad_zh as tg
    >>> w = tg.tensor([1.0], requires_grad=True)
    >>> opt = tg.optim.RMSprop([w], lr=0.01)
    >>> w.grad = tg.tensor([2.0])
    >>> opt.step()
    >>> w      # 1 - 0.01 * 2 / sqrt(0.01 * 4)
    tensor([0.9], requires_grad=True)
"""
from .. import backend
from .optimizer import Optimizer, weight_decayed_grad


class RMSprop(Optimizer):
    """``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False, maximize=False)``, PyTorch's defaults."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _check_hyperparameters(self, group):
        super()._check_hyperparameters(group)
        for name in ("eps", "momentum", "weight_decay", "alpha"):
            if group[name] < 0:
                raise ValueError(f"RMSprop: invalid {name} value {group[name]} (must be >= 0)")

    def _init_state(self, param, group):
        zeros = backend.array_module(param).zeros_like
        state = {"step": 0, "square_avg": zeros(param)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros(param)
        if group["centered"]:
            state["grad_avg"] = zeros(param)
        return state

    def _update(self, param, grad, state, group):
        xp = backend.array_module(param)
        g = weight_decayed_grad(grad, param, group["weight_decay"], group["maximize"])
        alpha = group["alpha"]
        # One scratch array s does all the work (the updates are memory-bound:
        # every extra temporary is another pass over memory).
        s = xp.multiply(g, g)
        s *= 1 - alpha
        v = state["square_avg"]
        v *= alpha
        v += s
        if group["centered"]:
            a = state["grad_avg"]
            a *= alpha
            xp.multiply(g, 1 - alpha, out=s)
            a += s
            xp.multiply(a, a, out=s)
            xp.subtract(v, s, out=s)          # v - a^2: the variance of g
        else:
            s[...] = v
        xp.sqrt(s, out=s)
        s += group["eps"]
        xp.divide(g, s, out=s)                # the step direction g / (sqrt(.) + eps)
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += s
            s[...] = buf
        s *= group["lr"]
        param -= s

"""Numerical gradient checks: does backward agree with central differences?

For each input element x_i we nudge it by ±eps and measure how a scalar
L = Σ w ⊙ f(x) moves:  ∂L/∂x_i ≈ (L(x_i + eps) - L(x_i - eps)) / (2·eps).
The weights w are a fixed random tensor, not all ones: ``f(x).sum()`` would hide
bugs in softmax and normalisation, whose outputs always sum to a constant.

Use float64 inputs: in float32 the rounding error of the difference swamps it.

    >>> import tinygrad_zh as tg
    >>> x = tg.randn(3, 4, dtype=tg.float64, requires_grad=True)
    >>> tg.gradcheck(lambda t: t.softmax(-1), (x,))
    True
"""
import numpy as np

from . import autograd
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree; the message names the worst element."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Compare autograd's gradient of ``fn(*inputs)`` with central differences.

    Every element of every input that requires grad is checked. Returns True,
    or raises GradcheckError describing the element with the largest error.
    """
    inputs = tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs "
                            "(float32 rounding swamps a finite difference)")
    outputs = _as_tuple(fn(*inputs))
    weights = _random_weights(outputs, seed)
    analytic = _analytic(outputs, weights, [inputs[i] for i in checked])
    for i, grad in zip(checked, analytic):
        numeric = _numeric(fn, inputs, i, weights, eps)
        _compare(i, inputs[i].shape, grad, numeric, atol, rtol)
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check second derivatives: gradcheck the function x -> ∂(w·fn(x))/∂x.

    The weights w of the first derivative are an input too, as in PyTorch, so
    the check covers every path of the double backward.
    """
    inputs = tuple(inputs)
    outputs = _as_tuple(fn(*inputs))
    differentiable = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    rng = np.random.default_rng(seed + 1)
    grad_outputs = [Tensor(rng.standard_normal(o.shape), requires_grad=True) for o in outputs]

    def first_derivative(*args):
        xs, ws = args[:len(inputs)], args[len(inputs):]
        with autograd.enable_grad():  # the numerical pass runs under no_grad; we need a graph
            outs = _as_tuple(fn(*xs))
            total = sum((o * w).sum() for o, w in zip(outs, ws) if o.requires_grad)
            wanted = [x for x in xs if isinstance(x, Tensor) and x.requires_grad]
            if not isinstance(total, Tensor):  # fn ignores its inputs: zero gradients
                return tuple(x * 0 for x in wanted)
            grads = autograd.grad(total, wanted, create_graph=True, allow_unused=True)
        return tuple(g if g is not None else x * 0 for g, x in zip(grads, wanted))

    if not differentiable:
        raise ValueError("gradgradcheck: no input requires grad")
    return gradcheck(first_derivative, inputs + tuple(grad_outputs), eps, atol, rtol, seed)


# ------------------------------------------------------------------ helpers
def _as_tuple(outputs):
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _random_weights(outputs, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(o.shape) for o in outputs]


def _weighted_difference(ups, downs, weights):
    """Σ_k Σ w_k ⊙ (up_k - down_k), as a float64 number. The outputs are
    subtracted before summing: a large unrelated output (1e12) would otherwise
    swamp a small change in another."""
    return sum(float(((np.asarray(_cpu(u.data), np.float64) - np.asarray(_cpu(d.data), np.float64))
                      * w).sum())
               for u, d, w in zip(ups, downs, weights))


def _cpu(array):
    return array if isinstance(array, np.ndarray) else array.get()


def _analytic(outputs, weights, wanted):
    terms = [(o * Tensor(w, dtype=o.dtype, device=o.device)).sum()
             for o, w in zip(outputs, weights) if o.requires_grad]
    if not terms:  # the output does not depend on any input: every gradient is 0
        return [np.zeros(t.shape) for t in wanted]
    grads = autograd.grad(sum(terms[1:], terms[0]), wanted, retain_graph=True, allow_unused=True)
    return [np.zeros(t.shape) if g is None else _cpu(g.data) for g, t in zip(grads, wanted)]


def _numeric(fn, inputs, i, weights, eps):
    """Central differences for every element of input i (changed in place, then restored)."""
    x = inputs[i].data
    flat = x.reshape(-1)  # a view: writing into it nudges x
    grad = np.zeros(x.size)
    with autograd.no_grad():
        for j in range(x.size):
            original = flat[j].item()
            flat[j] = original + eps
            ups = [o.clone() for o in _as_tuple(fn(*inputs))]  # copies: outputs may be views of x
            flat[j] = original - eps
            downs = [o.clone() for o in _as_tuple(fn(*inputs))]
            flat[j] = original
            grad[j] = _weighted_difference(ups, downs, weights) / (2 * eps)
    return grad.reshape(x.shape)


def _compare(i, shape, analytic, numeric, atol, rtol):
    if analytic.shape != tuple(shape):
        raise GradcheckError(f"input {i}: gradient has shape {analytic.shape}, expected {shape}")
    if analytic.size == 0:
        return
    error = np.abs(analytic - numeric)
    allowed = atol + rtol * np.abs(numeric)
    bad = ~(error <= allowed)  # NaN anywhere counts as a failure
    if bad.any():
        worst = np.unravel_index(np.nanargmax(np.where(bad, error - allowed, -np.inf))
                                 if not np.isnan(error).any() else np.argmax(np.isnan(error)),
                                 shape)
        raise GradcheckError(
            f"gradcheck failed for input {i} (shape {tuple(shape)}): {int(bad.sum())} of "
            f"{analytic.size} elements disagree. Worst at index {tuple(int(k) for k in worst)}: "
            f"analytic {analytic[worst]:.8g}, numerical {numeric[worst]:.8g}, "
            f"|difference| {error[worst]:.3g} > allowed {allowed[worst]:.3g} "
            f"(atol={atol}, rtol={rtol})")

"""Learning-rate schedules: change each parameter group's ``lr`` as training goes on.

Call ``scheduler.step()`` once per epoch (or per batch, for OneCycleLR and the
warmup helpers), after ``optimizer.step()``. Creating a scheduler already sets
the learning rate of step 0, as in PyTorch::

    >>> import tinygrad_zh as tg
    >>> from tinygrad_zh.optim import lr_scheduler
    >>> opt = tg.optim.SGD([tg.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(sched.get_last_lr()[0])   # train one epoch with this lr, then:
    ...     sched.step()
    >>> lrs
    [1.0, 1.0, 0.5, 0.5, 0.25]

Every schedule here is a *closed form*: ``get_lr()`` computes the learning rate
of step ``last_epoch`` from the initial ones (``base_lrs``) alone. PyTorch
mostly updates the current lr recursively instead, which lets two schedulers
on one optimizer multiply their effects; here the last one to step wins, so
combine schedules with ``SequentialLR`` or one ``LambdaLR``. For a single
scheduler the numbers are the same (the tests compare them with PyTorch's).
"""
import math
from bisect import bisect_right

from .optimizer import Optimizer


class LRScheduler:
    """Base class. A subclass defines ``get_lr()``: the lr of every group at
    step ``self.last_epoch``, from ``self.base_lrs``."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"{type(self).__name__}: resuming at last_epoch={last_epoch} "
                               f"needs 'initial_lr' in param_groups[{i}]; load the optimizer's "
                               "state_dict first")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self):
        raise NotImplementedError

    def step(self):
        """Advance one step and write the new learning rates into the optimizer."""
        self.last_epoch += 1
        self._set_lrs(self.get_lr())

    def get_last_lr(self):
        """The learning rates (one per group) set by the last ``step()``."""
        return list(self._last_lr)

    def state_dict(self):
        """Every attribute except the optimizer (and functions, which are code, not state)."""
        return {k: v for k, v in self.__dict__.items() if k not in self._not_state}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)

    _not_state = ("optimizer",)

    def _set_lrs(self, lrs):
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self._last_lr})"


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** (number of milestones <= epoch)``."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones, self.gamma = sorted(milestones), gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        passed = bisect_right(self.milestones, self.last_epoch)
        return [base * self.gamma ** passed for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``.

    Half a cosine from base_lr down to eta_min over T_max steps; past T_max it
    rises again (the formula is periodic), as in PyTorch.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):  # noqa: N803 (PyTorch's name)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        cos = math.cos(math.pi * self.last_epoch / self.T_max)
        return [self.eta_min + (base - self.eta_min) * (1 + cos) / 2 for base in self.base_lrs]


class LambdaLR(LRScheduler):
    """``lr = base_lr * lr_lambda(epoch)``; one function, or one per parameter group.

    The functions are not part of ``state_dict()`` (they are code): recreate
    the scheduler with the same functions, then load its state.
    """

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        self.lr_lambdas = _per_group(optimizer, lr_lambda, "lr_lambda", type(self).__name__)
        super().__init__(optimizer, last_epoch)

    _not_state = ("optimizer", "lr_lambdas")

    def get_lr(self):
        return [base * f(self.last_epoch) for base, f in zip(self.base_lrs, self.lr_lambdas)]


class LinearLR(LRScheduler):
    """The lr factor goes linearly from ``start_factor`` to ``end_factor`` in
    ``total_iters`` steps, then stays: a linear warmup."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in "
                             f"[0, 1]; got {start_factor} and {end_factor}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        done = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * done
        return [base * factor for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` from its
    step 0, and so on: e.g. a LinearLR warmup, then CosineAnnealingLR."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        if not schedulers:
            raise ValueError("SequentialLR expects at least one scheduler")
        for i, s in enumerate(schedulers):
            if s.optimizer is not optimizer:
                raise ValueError(f"SequentialLR: scheduler {i} ({type(s).__name__}) belongs to "
                                 "another optimizer")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: expected {len(schedulers) - 1} milestone(s) for "
                             f"{len(schedulers)} schedulers, got {len(milestones)}")
        self._schedulers, self._milestones = list(schedulers), list(milestones)
        super().__init__(optimizer, last_epoch)

    _not_state = ("optimizer", "_schedulers")

    def step(self):
        self.last_epoch += 1
        i = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[i]
        scheduler.last_epoch = self.last_epoch - (self._milestones[i - 1] if i else 0) - 1
        scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def get_lr(self):
        i = bisect_right(self._milestones, self.last_epoch)
        return self._schedulers[i].get_lr()

    def state_dict(self):
        return {**super().state_dict(), "_schedulers": [s.state_dict() for s in self._schedulers]}

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        for s, saved in zip(self._schedulers, state_dict.pop("_schedulers")):
            s.load_state_dict(saved)
        super().load_state_dict(state_dict)


class OneCycleLR(LRScheduler):
    """The 1cycle policy: warm up from ``max_lr / div_factor`` to ``max_lr`` over the
    first ``pct_start`` of the steps, then anneal to ``initial_lr / final_div_factor``.

    Momentum (or Adam's beta1) cycles the other way, between ``max_momentum``
    and ``base_momentum``, when ``cycle_momentum``. ``three_phase`` comes back
    down to the initial lr symmetrically before the final anneal. Step it once
    per batch, ``total_steps`` times in all.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False,
                 last_epoch=-1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: define either total_steps or (epochs and "
                                 "steps_per_epoch)")
            total_steps = epochs * steps_per_epoch
        if not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"OneCycleLR: total_steps must be a positive int, got {total_steps}")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be in [0, 1], got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got "
                             f"{anneal_strategy!r}")
        self.total_steps, self.anneal_strategy = total_steps, anneal_strategy
        self.cycle_momentum = cycle_momentum
        self._phases = _one_cycle_phases(total_steps, pct_start, three_phase)
        name = type(self).__name__
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group, peak in zip(groups, _per_group(optimizer, max_lr, "max_lr", name)):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"OneCycleLR: {type(optimizer).__name__} has no momentum or "
                                 "beta1 to cycle; pass cycle_momentum=False")
            self.use_beta1 = "betas" in optimizer.defaults
            if last_epoch == -1:
                for group, high, low in zip(
                        groups, _per_group(optimizer, max_momentum, "max_momentum", name),
                        _per_group(optimizer, base_momentum, "base_momentum", name)):
                    group["max_momentum"], group["base_momentum"] = high, low
                    self._set_momentum(group, high)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [self._interpolate(group, "lr") for group in self.optimizer.param_groups]

    def step(self):
        super().step()
        if self.cycle_momentum:
            for group in self.optimizer.param_groups:
                self._set_momentum(group, self._interpolate(group, "momentum"))

    def _interpolate(self, group, quantity):
        """The value of ``quantity`` ('lr' or 'momentum') at step ``last_epoch``."""
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {step} times; total_steps is "
                             f"{self.total_steps}")
        start_step = 0.0
        for i, phase in enumerate(self._phases):
            if step <= phase["end_step"] or i == len(self._phases) - 1:
                pct = (step - start_step) / (phase["end_step"] - start_step)
                start, end = phase[f"start_{quantity}"], phase[f"end_{quantity}"]
                return _anneal(self.anneal_strategy, group[start], group[end], pct)
            start_step = phase["end_step"]

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value


# ------------------------------------------------------------------ warmup helpers
def get_cosine_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps,
                                    num_cycles=0.5, min_lr_ratio=0.0, last_epoch=-1):
    """Linear warmup from 0 to the lr, then a cosine down to ``min_lr_ratio * lr``.

    The schedule of most fine-tuning recipes (as in Hugging Face transformers),
    as a LambdaLR stepped once per batch. ``num_cycles=0.5`` is half a cosine::

        step < warmup:  factor = step / warmup
        otherwise:      p = (step - warmup) / (total - warmup)
                        factor = r + (1 - r) * (1 + cos(2 pi num_cycles p)) / 2,  r = min_lr_ratio

        >>> import tinygrad_zh as tg
        >>> opt = tg.optim.AdamW([tg.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = get_cosine_schedule_with_warmup(opt, 2, 6)
        >>> lrs = []
        >>> for _ in range(7):
        ...     lrs.append(round(sched.get_last_lr()[0], 3))
        ...     sched.step()
        >>> lrs
        [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    def factor(step):
        if step < num_warmup_steps:
            return step / max(1, num_warmup_steps)
        progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress))
        return max(0.0, min_lr_ratio + (1.0 - min_lr_ratio) * cosine)
    return LambdaLR(optimizer, factor, last_epoch)


def get_linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps,
                                    last_epoch=-1):
    """Linear warmup from 0 to the lr, then linear decay to 0 at ``num_training_steps``.

        >>> import tinygrad_zh as tg
        >>> opt = tg.optim.SGD([tg.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = get_linear_schedule_with_warmup(opt, 2, 6)
        >>> lrs = []
        >>> for _ in range(7):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     sched.step()
        >>> lrs
        [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    def factor(step):
        if step < num_warmup_steps:
            return step / max(1, num_warmup_steps)
        return max(0.0, (num_training_steps - step) / max(1, num_training_steps - num_warmup_steps))
    return LambdaLR(optimizer, factor, last_epoch)


# ------------------------------------------------------------------ helpers
def _per_group(optimizer, value, name, owner):
    """One value per parameter group: a list of them, or one value repeated."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{owner}: expected {n} values for {name} (one per parameter "
                             f"group), got {len(value)}")
        return list(value)
    return [value] * n


def _one_cycle_phases(total_steps, pct_start, three_phase):
    """Where each phase ends and which group keys it goes between."""
    def phase(end_step, lr, momentum):
        return {"end_step": end_step, "start_lr": lr[0], "end_lr": lr[1],
                "start_momentum": momentum[0], "end_momentum": momentum[1]}
    up = float(pct_start * total_steps) - 1
    last = total_steps - 1
    high_low, low_high = ("max_momentum", "base_momentum"), ("base_momentum", "max_momentum")
    if three_phase:
        return [phase(up, ("initial_lr", "max_lr"), high_low),
                phase(float(2 * pct_start * total_steps) - 2, ("max_lr", "initial_lr"), low_high),
                phase(last, ("initial_lr", "min_lr"), ("max_momentum", "max_momentum"))]
    return [phase(up, ("initial_lr", "max_lr"), high_low),
            phase(last, ("max_lr", "min_lr"), low_high)]


def _anneal(strategy, start, end, pct):
    """From ``start`` (pct = 0) to ``end`` (pct = 1): half a cosine, or a line."""
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start

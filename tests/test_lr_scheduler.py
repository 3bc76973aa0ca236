"""Learning-rate schedules: each lr sequence against its closed-form formula
(written out here) and against torch.optim.lr_scheduler, plus state dicts."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
from helpers import torch_api
from tinygrad_zh import optim
from tinygrad_zh.optim import lr_scheduler as S

LRS = [0.1, 0.02]   # two parameter groups with different base lrs
EPOCHS = 25


def make_optimizer(m, opt_name="SGD", **kw):
    """An optimizer with two groups (lr 0.1 and 0.02), for tinygrad_zh or torch."""
    groups = [{"params": [m.zeros(2, requires_grad=True)], "lr": lr} for lr in LRS]
    opt_cls = getattr(optim if m is tg else m.optim, opt_name)
    return opt_cls(groups, **kw)


def lr_sequence(scheduler, optimizer, steps=EPOCHS):
    """The lr of each group at steps 0..steps-1, read from the optimizer."""
    seq = []
    for _ in range(steps):
        seq.append([g["lr"] for g in optimizer.param_groups])
        assert seq[-1] == scheduler.get_last_lr()
        optimizer.step()
        scheduler.step()
    return np.array(seq)


def closed_form(factor):
    """base_lr * factor(epoch), for every epoch and group."""
    return np.array([[base * factor(e) for base in LRS] for e in range(EPOCHS)])


def cosine(e, T, eta_min, base):
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * e / T)) / 2


# name -> (tinygrad_zh/torch constructor from (lr_scheduler module, optimizer), closed form)
CASES = {
    "StepLR": (lambda s, o: s.StepLR(o, step_size=4, gamma=0.5),
               closed_form(lambda e: 0.5 ** (e // 4))),
    "MultiStepLR": (lambda s, o: s.MultiStepLR(o, milestones=[12, 3, 7], gamma=0.3),
                    closed_form(lambda e: 0.3 ** sum(e >= m for m in (3, 7, 12)))),
    "ExponentialLR": (lambda s, o: s.ExponentialLR(o, gamma=0.9),
                      closed_form(lambda e: 0.9 ** e)),
    "CosineAnnealingLR": (lambda s, o: s.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
                          np.array([[cosine(e, 10, 0.001, b) for b in LRS]
                                    for e in range(EPOCHS)])),
    "LambdaLR": (lambda s, o: s.LambdaLR(o, lambda e: 1 / (1 + e)),
                 closed_form(lambda e: 1 / (1 + e))),
    "LambdaLR-per-group": (lambda s, o: s.LambdaLR(o, [lambda e: 0.95 ** e, lambda e: e + 1]),
                           np.array([[LRS[0] * 0.95 ** e, LRS[1] * (e + 1)]
                                     for e in range(EPOCHS)])),
    "LinearLR": (lambda s, o: s.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=8),
                 closed_form(lambda e: 0.1 + 0.8 * min(e, 8) / 8)),
    "SequentialLR": (lambda s, o: s.SequentialLR(
        o, [s.LinearLR(o, start_factor=0.25, total_iters=4),
            s.CosineAnnealingLR(o, T_max=12), s.ExponentialLR(o, gamma=0.8)], milestones=[5, 17]),
        np.array([[b * (0.25 + 0.75 * min(e, 4) / 4) if e < 5 else
                   cosine(e - 5, 12, 0, b) if e < 17 else b * 0.8 ** (e - 17) for b in LRS]
                  for e in range(EPOCHS)])),
}


@pytest.mark.parametrize("name", CASES)
def test_lr_sequence_matches_the_closed_form(name):
    make, want = CASES[name]
    opt = make_optimizer(tg)
    np.testing.assert_allclose(lr_sequence(make(S, opt), opt), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", CASES)
def test_lr_sequence_matches_torch(name):
    torch = torch_api()
    make, _ = CASES[name]
    opt, topt = make_optimizer(tg), make_optimizer(torch)
    got = lr_sequence(make(S, opt), opt)
    want = lr_sequence(make(torch.optim.lr_scheduler, topt), topt)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-15)


# ------------------------------------------------------------------ OneCycleLR
ONE_CYCLE = [
    dict(max_lr=1.0, total_steps=20),
    dict(max_lr=[1.0, 0.5], total_steps=20, anneal_strategy="linear", pct_start=0.25),
    dict(max_lr=0.3, epochs=4, steps_per_epoch=6, three_phase=True, div_factor=10,
         final_div_factor=100),
    dict(max_lr=0.3, total_steps=17, three_phase=True, anneal_strategy="linear",
         base_momentum=0.8, max_momentum=0.9),
]


def one_cycle_formula(step, total, max_lr, pct_start=0.3, anneal_strategy="cos",
                      div_factor=25.0, final_div_factor=1e4, three_phase=False):
    """1cycle's lr at ``step``, written out from the paper's description."""
    initial, low = max_lr / div_factor, max_lr / div_factor / final_div_factor
    if anneal_strategy == "cos":
        def anneal(a, b, pct):
            return b + (a - b) * (1 + math.cos(math.pi * pct)) / 2
    else:
        def anneal(a, b, pct):
            return a + (b - a) * pct
    up = pct_start * total - 1
    if step <= up:
        return anneal(initial, max_lr, step / up)
    if three_phase:
        down = 2 * pct_start * total - 2
        if step <= down:
            return anneal(max_lr, initial, (step - up) / (down - up))
        return anneal(initial, low, (step - down) / (total - 1 - down))
    return anneal(max_lr, low, (step - up) / (total - 1 - up))


@pytest.mark.parametrize("kw", ONE_CYCLE)
def test_one_cycle_matches_the_formula_and_torch(kw):
    opt = make_optimizer(tg, momentum=0.9)
    sched = S.OneCycleLR(opt, **kw)
    total = kw.get("total_steps") or kw["epochs"] * kw["steps_per_epoch"]
    got = lr_sequence(sched, opt, steps=total)
    peaks = kw["max_lr"] if isinstance(kw["max_lr"], list) else [kw["max_lr"]] * 2
    options = {k: v for k, v in kw.items() if k in ("pct_start", "anneal_strategy", "div_factor",
                                                     "final_div_factor", "three_phase")}
    want = [[one_cycle_formula(t, total, peak, **options) for peak in peaks]
            for t in range(total)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert 0.9 * max(peaks) < got.max() <= max(peaks)  # the peak, reached at a whole step or not

    # and against torch, momentum included (it cycles opposite to the lr)
    torch = torch_api()
    opts = [make_optimizer(m, momentum=0.9) for m in (tg, torch)]
    scheds = [S.OneCycleLR(opts[0], **kw), torch.optim.lr_scheduler.OneCycleLR(opts[1], **kw)]
    seqs = [[], []]
    for t in range(total):
        for opt, sched, seq in zip(opts, scheds, seqs):
            seq.append([(g["lr"], g["momentum"]) for g in opt.param_groups])
            if t < total - 1:
                opt.step()
                sched.step()
    np.testing.assert_allclose(np.array(seqs[0]), np.array(seqs[1]), rtol=1e-10)


def test_one_cycle_cycles_adams_beta1_and_refuses_to_overstep():
    w = tg.zeros(1, requires_grad=True)
    opt = optim.Adam([w], betas=(0.9, 0.99))
    sched = S.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    assert opt.param_groups[0]["betas"] == (0.95, 0.99)   # starts at max_momentum
    for _ in range(2):  # the peak is at step 0.3 * 10 - 1 = 2
        sched.step()
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.85)  # base_momentum at the peak
    assert sched.get_last_lr() == [pytest.approx(0.1)]
    for _ in range(8):
        sched.step()
    with pytest.raises(ValueError, match="tried to step 11 times; total_steps is 10"):
        sched.step()
    with pytest.raises(ValueError, match="Adagrad has no momentum or beta1"):
        S.OneCycleLR(optim.Adagrad([w]), max_lr=0.1, total_steps=10)


# ------------------------------------------------------------------ warmup helpers
def test_cosine_schedule_with_warmup():
    warmup, total = 5, 25
    for cycles, ratio in [(0.5, 0.0), (0.5, 0.1), (1.0, 0.0), (2.5, 0.2)]:
        opt = make_optimizer(tg)
        sched = S.get_cosine_schedule_with_warmup(opt, warmup, total, num_cycles=cycles,
                                                  min_lr_ratio=ratio)

        def factor(e):
            if e < warmup:
                return e / warmup
            p = (e - warmup) / (total - warmup)
            return max(0.0, ratio + (1 - ratio) * (1 + math.cos(2 * math.pi * cycles * p)) / 2)
        np.testing.assert_allclose(lr_sequence(sched, opt), closed_form(factor), atol=1e-15)
    # warmup from 0, peak at the end of the warmup, min_lr_ratio at the end
    opt = make_optimizer(tg)
    seq = lr_sequence(S.get_cosine_schedule_with_warmup(opt, 5, 20, min_lr_ratio=0.1), opt, 21)
    assert seq[0, 0] == 0 and seq[5, 0] == pytest.approx(0.1) and seq.max() == seq[5, 0]
    assert seq[20, 0] == pytest.approx(0.01)


def test_linear_schedule_with_warmup():
    opt = make_optimizer(tg)
    seq = lr_sequence(S.get_linear_schedule_with_warmup(opt, 4, 20), opt)
    np.testing.assert_allclose(seq, closed_form(
        lambda e: e / 4 if e < 4 else max(0.0, (20 - e) / 16)), atol=1e-15)


# ------------------------------------------------------------------ state
@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "SequentialLR", "LambdaLR"])
def test_state_dict_round_trip_resumes_the_schedule(name, tmp_path):
    make, want = CASES[name]
    opt = make_optimizer(tg)
    sched = make(S, opt)
    for _ in range(9):
        opt.step()
        sched.step()
    tg.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "c.npz")

    ckpt = tg.load(tmp_path / "c.npz")
    opt2 = make_optimizer(tg)
    opt2.load_state_dict(ckpt["optimizer"])
    sched2 = make(S, opt2)
    sched2.load_state_dict(ckpt["scheduler"])
    opt2.load_state_dict(ckpt["optimizer"])  # the new scheduler's first step changed the lr
    assert sched2.last_epoch == 9
    np.testing.assert_allclose(lr_sequence(sched2, opt2, steps=EPOCHS - 9), want[9:],
                               rtol=1e-12, atol=1e-15)


def test_state_dict_leaves_out_the_optimizer_and_functions():
    opt = make_optimizer(tg)
    sd = S.LambdaLR(opt, lambda e: 1.0).state_dict()
    assert sd == {"base_lrs": LRS, "last_epoch": 0, "_last_lr": LRS}


def test_resuming_needs_initial_lr():
    with pytest.raises(KeyError, match="resuming at last_epoch=4 needs 'initial_lr' in "
                                       r"param_groups\[0\]"):
        S.StepLR(make_optimizer(tg), step_size=2, last_epoch=4)
    opt = make_optimizer(tg)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    sched = S.StepLR(opt, step_size=2, gamma=0.5, last_epoch=4)  # next step is epoch 5
    assert sched.get_last_lr() == [0.1 * 0.25, 0.02 * 0.25]


def test_bad_arguments():
    opt = make_optimizer(tg)
    with pytest.raises(TypeError, match="expected an Optimizer, got list"):
        S.StepLR([], step_size=1)
    with pytest.raises(ValueError, match="expected 2 values for lr_lambda"):
        S.LambdaLR(opt, [lambda e: 1.0])
    with pytest.raises(ValueError, match="expected 1 milestone"):
        S.SequentialLR(opt, [S.StepLR(opt, 1), S.StepLR(opt, 2)], milestones=[])
    with pytest.raises(ValueError, match="scheduler 0 .* belongs to another optimizer"):
        S.SequentialLR(opt, [S.StepLR(make_optimizer(tg), 1)], milestones=[])
    with pytest.raises(ValueError, match="total_steps or \\(epochs and steps_per_epoch\\)"):
        S.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="anneal_strategy must be 'cos' or 'linear'"):
        S.OneCycleLR(opt, max_lr=1.0, total_steps=5, anneal_strategy="exp")
    with pytest.raises(ValueError, match="start_factor must be in"):
        S.LinearLR(opt, start_factor=0)


# ------------------------------------------------------------------ randomized vs torch
SCHEDULES = st.one_of(
    st.builds(lambda n, g: ("StepLR", dict(step_size=n, gamma=g)),
              st.integers(1, 6), st.floats(0.1, 0.99)),
    st.builds(lambda ms, g: ("MultiStepLR", dict(milestones=ms, gamma=g)),
              st.lists(st.integers(1, 30), min_size=1, max_size=4, unique=True),
              st.floats(0.1, 0.99)),
    st.builds(lambda g: ("ExponentialLR", dict(gamma=g)), st.floats(0.5, 1.0)),
    st.builds(lambda t, e: ("CosineAnnealingLR", dict(T_max=t, eta_min=e)),
              st.integers(1, 15), st.sampled_from([0.0, 1e-4, 0.005])),
    st.builds(lambda a, b, n: ("LinearLR", dict(start_factor=a, end_factor=b, total_iters=n)),
              st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.integers(1, 10)),
    st.builds(lambda p, s, three, n: ("OneCycleLR", dict(
        max_lr=[0.5, 0.1], total_steps=n, pct_start=p, anneal_strategy=s, three_phase=three)),
        st.floats(0.1, 0.45), st.sampled_from(["cos", "linear"]), st.booleans(),
        st.integers(12, 30)),
)


@given(schedule=SCHEDULES)
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
def test_random_schedules_match_torch(schedule):
    torch = torch_api()
    name, kw = schedule
    steps = kw.get("total_steps", EPOCHS)
    opt, topt = make_optimizer(tg, momentum=0.9), make_optimizer(torch, momentum=0.9)
    got = lr_sequence(getattr(S, name)(opt, **kw), opt, steps)
    want = lr_sequence(getattr(torch.optim.lr_scheduler, name)(topt, **kw), topt, steps)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)

"""The exercise checker (python -m lessons.check): the reference solutions pass,
and a wrong answer is reported in Chinese, saying what is wrong."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tinygrad_zh as tg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # `lessons` is a folder of the repository, not an installed package
from lessons import check  # noqa: E402
from lessons.exercises.solutions import ex01_topological_sort as sorting  # noqa: E402


def run_checker(*args):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "lessons.check", *args], cwd=ROOT, env=env,
                          capture_output=True, encoding="utf-8", timeout=120)


def assert_wrong(number, module, *phrases):
    status, message = check.check_exercise(number, module)
    assert status == check.WRONG, message
    for phrase in phrases:
        assert phrase in message, message
    message.encode("gbk")   # learners on a Chinese Windows console read it in GBK


# ------------------------------------------------------------------ the command
def test_every_reference_solution_passes_the_checker():
    result = run_checker("--solutions")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(check.EXERCISES)} / {len(check.EXERCISES)} 个练习通过" in result.stdout
    assert result.stdout.count("[通过]") == len(check.EXERCISES)


def test_the_shipped_exercise_files_are_unsolved_with_a_chinese_hint():
    # If this fails after you solved the exercises yourself: that is the checker telling you so.
    for number in check.EXERCISES:
        status, message = check.check_exercise(number, check.load(number))
        assert status == check.UNFINISHED and "提示" in message, (number, message)


def test_a_wrong_answer_makes_the_command_fail_and_unknown_numbers_are_refused():
    result = run_checker("02")
    assert result.returncode == 1 and "[未完成] 练习 02" in result.stdout
    result = run_checker("04")
    assert result.returncode == 2 and "没有练习 04" in result.stderr


def test_lesson_16_is_an_alias_of_exercise_01(capsys):
    assert check.main(["16", "--solutions"]) == 0
    assert "[通过] 练习 01" in capsys.readouterr().out


def test_an_exception_in_the_answer_is_reported_not_raised():
    def broken(output):
        return 1 / 0
    assert_wrong("01", SimpleNamespace(topological_order=broken), "ZeroDivisionError")


# ------------------------------------------------------------------ 01 topological sort
def recursive_order(output):
    order, seen = [], set()

    def visit(t):
        if id(t) in seen:
            return
        seen.add(id(t))
        for x in (t._ctx.inputs if t._ctx else ()):
            visit(x)
        order.append(t)
    visit(output)
    return order[::-1]


def first_seen_order(output):
    order, seen, stack = [], set(), [output]
    while stack:
        t = stack.pop()
        if id(t) not in seen:
            seen.add(id(t))
            order.append(t)
            stack.extend(t._ctx.inputs if t._ctx else ())
    return order


def test_topological_sort_mistakes_are_named():
    assert_wrong("01", SimpleNamespace(topological_order=recursive_order), "递归太深", "显式的栈")
    assert_wrong("01", SimpleNamespace(topological_order=first_seen_order),
                 "排在了用到它的", "梯度还没收齐")
    without_leaves = SimpleNamespace(
        topological_order=lambda y: [t for t in sorting.topological_order(y) if t._ctx is not None])
    assert_wrong("01", without_leaves, "漏掉了", "叶子也要算")
    twice = SimpleNamespace(topological_order=lambda y: sorting.topological_order(y) + [y])
    assert_wrong("01", twice, "出现了两次")
    backwards = SimpleNamespace(topological_order=lambda y: sorting.topological_order(y)[::-1])
    assert_wrong("01", backwards, "第一个应当是输出张量本身")


# ------------------------------------------------------------------ 02 Linear
def linear_with(backward):
    class Linear(tg.autograd.Function):
        save_inputs = True

        def forward(self, x, weight, bias):
            return x @ weight.T + bias

        def backward(self, grad):
            return backward(grad, *self.saved_inputs)
    return SimpleNamespace(Linear=Linear)


@pytest.mark.parametrize("backward, phrases", [
    (lambda g, x, w, b: (g @ w, x.T @ g, g.sum(dim=0)), ["是 weight 的转置", "grad.T @ x"]),
    (lambda g, x, w, b: (g @ w, g.T @ x, g), ["grad_bias 的形状", "把 N 行的梯度加起来"]),
    (lambda g, x, w, b: (g @ w * 2, g.T @ x, g.sum(dim=0)), ["grad_x 的数值不对", "gradcheck"]),
    (lambda g, x, w, b: (g @ w, g.T @ x), ["返回了 2 个梯度", "共 3 个"]),
    (lambda g, x, w, b: (g @ w, (g.T @ x).numpy(), g.sum(dim=0)), ["返回了 ndarray", "应当返回 Tensor"]),
], ids=["transposed-weight", "bias-not-summed", "wrong-values", "two-grads", "numpy"])
def test_linear_backward_mistakes_are_named(backward, phrases):
    assert_wrong("02", linear_with(backward), *phrases)


# ------------------------------------------------------------------ 03 activations
def activations_with(sigmoid_backward):
    class Sigmoid(tg.autograd.Function):
        save_output = True

        def forward(self, x):
            return 1 / (1 + np.exp(-x))

        def backward(self, grad):
            return sigmoid_backward(grad, self.saved_output)
    return SimpleNamespace(Sigmoid=Sigmoid, Tanh=check.load("03", solutions=True).Tanh)


@pytest.mark.parametrize("backward, phrases", [
    (lambda g, y: y * (1 - y), ["Sigmoid", "忘了乘上游传来的 grad"]),
    (lambda g, y: g, ["忘了乘导数 f'(x)"]),
    (lambda g, y: g * y * (1 + y), ["grad_x 的数值不对"]),
    (lambda g, y: g * tg.tensor(y.detach().numpy() * (1 - y.detach().numpy())),
     ["二阶导数", "gradgradcheck"]),
], ids=["no-upstream", "no-derivative", "wrong-formula", "detached"])
def test_activation_backward_mistakes_are_named(backward, phrases):
    assert_wrong("03", activations_with(backward), *phrases)


# ------------------------------------------------------------------ 05 Adam
def adam_without_bias_correction(param, grad, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    m = betas[0] * m + (1 - betas[0]) * grad
    v = betas[1] * v + (1 - betas[1]) * grad ** 2
    return param - lr * m / (np.sqrt(v) + eps), m, v


def adam_ignoring_its_settings(param, grad, m, v, step, **settings):
    return check.load("05", solutions=True).adam_step(param, grad, m, v, step)


def adam_with_a_wrong_average(param, grad, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    solution = check.load("05", solutions=True).adam_step
    new_param, _, new_v = solution(param, grad, m, v, step, lr, betas, eps)
    return new_param, betas[0] * m + grad, new_v


@pytest.mark.parametrize("adam_step, phrases", [
    (adam_without_bias_correction, ["step=1", "param 不对", "偏差修正"]),
    (adam_ignoring_its_settings, ["lr=0.05", "betas=(0.8, 0.95)", "param 不对"]),
    (adam_with_a_wrong_average, ["exp_avg 不对", "滑动平均"]),
], ids=["no-bias-correction", "ignores-settings", "wrong-average"])
def test_adam_step_mistakes_are_named(adam_step, phrases):
    assert_wrong("05", SimpleNamespace(adam_step=adam_step), *phrases)

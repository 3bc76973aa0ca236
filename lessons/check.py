"""练习的检查器：在仓库根目录运行

    python -m lessons.check              # 检查全部练习（lessons/exercises/）
    python -m lessons.check 02 05        # 只检查练习 02 和 05（16 是 01 的别名）
    python -m lessons.check --solutions  # 检查参考答案（make test 也会做）

每个练习的结果是"通过"、"未完成"（还在抛 NotImplementedError）或"错误"，
错误时用中文说明哪里不对。有一个不通过，退出状态就不是 0。

检查用的是引擎自己的工具：反向传播的练习用 tg.gradcheck（和 gradgradcheck）
核对你的 backward，Adam 用逐元素写出来的公式核对。
"""
import argparse
import importlib
import math
import sys

import numpy as np

import tinygrad_zh as tg
from lessons.common import backprop_in_order
from tinygrad_zh import viz

PASSED, UNFINISHED, WRONG = "通过", "未完成", "错误"


class WrongAnswer(Exception):
    """答案不对；消息（中文）说明哪里不对。"""


def main(argv=None):
    parser = argparse.ArgumentParser(description="检查 lessons/exercises/ 里的练习")
    parser.add_argument("numbers", nargs="*", help="练习编号，如 01 02；不写就检查全部")
    parser.add_argument("--solutions", action="store_true", help="检查参考答案（solutions/）")
    args = parser.parse_args(argv)
    numbers = [ALIASES.get(n.zfill(2), n.zfill(2)) for n in args.numbers] or list(EXERCISES)
    unknown = [n for n in numbers if n not in EXERCISES]
    if unknown:
        parser.error(f"没有练习 {', '.join(unknown)}；现有的练习：{', '.join(EXERCISES)}")
    results = [(n, *check_exercise(n, load(n, args.solutions))) for n in numbers]
    for number, status, message in results:
        print(f"[{status}] 练习 {number}（{EXERCISES[number][0]}）：{message}")
    failed = sum(status != PASSED for _, status, _ in results)
    print(f"\n{len(results) - failed} / {len(results)} 个练习通过。")
    return 1 if failed else 0


def load(number, solutions=False):
    """练习 number 的模块：你写的（exercises/），或参考答案（exercises/solutions/）。"""
    package = "lessons.exercises.solutions" if solutions else "lessons.exercises"
    return importlib.import_module(f"{package}.{EXERCISES[number][0]}")


def check_exercise(number, module):
    """(状态, 说明)。module 可以是任何带着练习里那个函数或类的对象。"""
    try:
        message = EXERCISES[number][1](module)
    except NotImplementedError as e:
        return UNFINISHED, str(e)
    except WrongAnswer as e:
        return WRONG, str(e)
    except Exception as e:  # noqa: BLE001 -- 学生代码里的任何错误都要用中文报告出来，不能崩溃
        return WRONG, f"运行你的代码时出错：{type(e).__name__}: {e}"
    return PASSED, message


# ------------------------------------------------------------------ 01 拓扑排序
def check_topological_sort(module):
    for description, output in _graphs_for_sorting():
        try:
            order = list(module.topological_order(output))
        except RecursionError:
            raise WrongAnswer(f"{description}：递归太深，栈溢出了。用一个显式的栈（列表）"
                              "代替递归，很深的图也能排序") from None
        _check_order(description, output, order)
        leaves = [t for t in order if t.requires_grad and t._ctx is None]
        expected = tg.autograd.grad(output, leaves, retain_graph=True)
        got = backprop_in_order(output, order)
        for leaf, want in zip(leaves, expected):
            if not np.allclose(got[id(leaf)].numpy(), want.numpy(), rtol=1e-12):
                raise WrongAnswer(f"{description}：按你的顺序反向传播，叶子的梯度和引擎的不一样")
    return "每张图的每个张量都恰好出现一次、排在用到它的张量之后，按这个顺序反向传播的梯度正确"


def _graphs_for_sorting():
    x = tg.tensor(0.5, dtype=tg.float64, requires_grad=True)
    a = x ** 2
    diamond = a.exp() + a.tanh()
    y = x
    for _ in range(10):                     # 十个菱形叠在一起：朴素的遍历会重复 2^10 次
        y = y.sigmoid() + y.tanh()
    uneven = a + a.exp().tanh().sigmoid()   # a 一条路直达输出，另一条路要走三步：广度优先会排错
    chain = x
    for _ in range(3000):                   # 比 Python 默认的递归深度（1000）深
        chain = chain * 1.0001
    return [("菱形 exp(a) + tanh(a)", diamond), ("x * x（同一个输入用两次）", x * x),
            ("十个菱形叠在一起", y), ("长短不一的两条路", uneven), ("3000 步的链", chain)]


def _check_order(description, output, order):
    if not all(isinstance(t, tg.Tensor) for t in order):
        raise WrongAnswer(f"{description}：应当返回张量的列表")
    if not order or order[0] is not output:
        raise WrongAnswer(f"{description}：第一个应当是输出张量本身（反向传播从它开始）")
    tensors, edges = viz.graph_edges(output)
    position = {}
    for i, t in enumerate(order):
        if id(t) in position:
            raise WrongAnswer(f"{description}：同一个张量 {_describe(t)} 出现了两次")
        position[id(t)] = i
    missing = [t for t in tensors if id(t) not in position]
    if missing:
        raise WrongAnswer(f"{description}：漏掉了 {len(missing)} 个张量，例如 {_describe(missing[0])}"
                          "（叶子也要算）")
    if len(order) > len(tensors):
        raise WrongAnswer(f"{description}：返回了不在这张图里的张量")
    for src, dst in edges:
        if position[id(tensors[src])] < position[id(tensors[dst])]:
            raise WrongAnswer(f"{description}：{_describe(tensors[src])} 排在了用到它的 "
                              f"{_describe(tensors[dst])} 之前；处理它时，它的梯度还没收齐")


def _describe(t):
    return f"叶子（形状 {t.shape}）" if t._ctx is None else f"{t.grad_fn} 的输出（形状 {t.shape}）"


# ------------------------------------------------------------------ 02 Linear
def check_linear_backward(module):
    rng = np.random.default_rng(2)
    for n, d_in, d_out in [(5, 3, 4), (1, 2, 3), (7, 5, 2), (3, 1, 1)]:
        x, weight, bias = (tg.tensor(rng.standard_normal(shape), requires_grad=True)
                           for shape in ((n, d_in), (d_out, d_in), (d_out,)))
        where = f"x {x.shape}、weight {weight.shape}、bias {bias.shape}"
        grads = _call_backward(module.Linear, (x, weight, bias), rng, 3, where)
        names = ("grad_x", "grad_weight", "grad_bias")
        for name, g, t in zip(names, grads, (x, weight, bias)):
            if g.shape == t.shape:
                continue
            if name == "grad_weight" and g.shape == weight.shape[::-1]:
                raise WrongAnswer(f"{where}：grad_weight 的形状是 {g.shape}，是 weight 的转置。"
                                  "PyTorch 布局下应当是 δ^T x（grad.T @ x），不是 x^T δ")
            if name == "grad_bias" and g.shape == (n, d_out):
                raise WrongAnswer(f"{where}：grad_bias 的形状是 {g.shape}，应当是 {bias.shape}："
                                  "bias 被广播到 N 行，要把 N 行的梯度加起来（.sum(dim=0)）")
            raise WrongAnswer(f"{where}：{name} 的形状是 {g.shape}，应当和输入一样是 {t.shape}")
        _gradcheck_each(module.Linear.apply, (x, weight, bias), names, where)
    return "四组形状（含 N = 1）下三个梯度的形状都对，gradcheck 全部通过"


# ------------------------------------------------------------------ 03 激活函数
def check_activation_backward(module):
    derivatives = {"Sigmoid": lambda y: y * (1 - y), "Tanh": lambda y: 1 - y ** 2}
    rng = np.random.default_rng(3)
    for name, derivative in derivatives.items():
        function = getattr(module, name)
        for shape in [(1,), (3, 4), (2, 3, 5)]:
            x = tg.tensor(rng.standard_normal(shape), requires_grad=True)
            where = f"{name}，x 的形状 {shape}"
            upstream = rng.standard_normal(shape)
            (got,) = _call_backward(function, (x,), rng, 1, where, upstream=upstream)
            if got.shape != x.shape:
                raise WrongAnswer(f"{where}：梯度的形状是 {got.shape}，应当是 {x.shape}")
            slope = derivative(function.apply(x).detach().numpy())
            if np.allclose(got.numpy(), slope) and not np.allclose(slope, upstream * slope):
                raise WrongAnswer(f"{where}：返回的是 f'(x)，忘了乘上游传来的 grad")
            if np.allclose(got.numpy(), upstream):
                raise WrongAnswer(f"{where}：原样返回了 grad，忘了乘导数 f'(x)")
            _gradcheck_each(function.apply, (x,), ("grad_x",), where)
            try:
                tg.gradgradcheck(function.apply, (x,))
            except tg.GradcheckError as e:
                raise WrongAnswer(f"{where}：一阶导数对了，但二阶导数（gradgradcheck）不对。backward "
                                  "要全部用张量运算写（不要 .numpy()、.detach() 或 tg.tensor(...) "
                                  f"重新包装），它才会被记录成计算图，才能再求导。\n      {e}") from None
    return "Sigmoid 和 Tanh 在三种形状下通过 gradcheck 和 gradgradcheck"


# ------------------------------------------------------------------ 05 Adam
def check_adam_step(module):
    rng = np.random.default_rng(5)
    settings = [{}, {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3}]
    for kwargs in settings:
        lr = kwargs.get("lr", 1e-3)
        beta1, beta2 = kwargs.get("betas", (0.9, 0.999))
        eps = kwargs.get("eps", 1e-8)
        param = rng.standard_normal((3, 4))
        m, v = np.zeros_like(param), np.zeros_like(param)
        # 每个元素的 (param, m, v)，照公式一个元素一个元素地算
        state = {i: (float(param[i]), 0.0, 0.0) for i in np.ndindex(param.shape)}
        for step in range(1, 6):
            grad = rng.standard_normal(param.shape)
            state = {i: _adam_formula(*state[i], grad[i], step, lr, beta1, beta2, eps) for i in state}
            want = [np.array([state[i][k] for i in state]).reshape(param.shape) for k in range(3)]
            param, m, v = (np.asarray(a, dtype=np.float64) for a in
                           module.adam_step(param, grad, m, v, step, **kwargs))
            called = f"adam_step(..., step={step}{''.join(f', {k}={w}' for k, w in kwargs.items())})"
            for name, got, right in zip(("param", "exp_avg", "exp_avg_sq"), (param, m, v), want):
                if got.shape != right.shape:
                    raise WrongAnswer(f"{called}：返回的 {name} 形状是 {got.shape}，应当是 {right.shape}")
                if not np.allclose(got, right, rtol=1e-10, atol=1e-14):
                    raise WrongAnswer(f"{called}：{name} 不对。"
                                      + _adam_hint(name, got, right))
    return "默认参数和自定义的 lr、betas、eps 下，连续 5 步的 param、m、v 都与公式一致"


def _adam_formula(p, m, v, g, t, lr, beta1, beta2, eps):
    """一个元素的一步 Adam，照公式逐行写出（Python 浮点数，不用 NumPy）。"""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return p - lr * m_hat / (math.sqrt(v_hat) + eps), m, v


def _adam_hint(name, got, right):
    i = np.unravel_index(np.argmax(np.abs(got - right)), got.shape)
    hint = f"误差最大的元素 {tuple(int(k) for k in i)}：应为 {right[i]:.10g}，你的是 {got[i]:.10g}。"
    if name == "param":
        return hint + (" 检查偏差修正 m / (1 - beta1^t)、v / (1 - beta2^t)（t 从 1 开始），"
                       "以及 eps 加在 sqrt(v_hat) 外面")
    return hint + " 检查滑动平均：m = beta1 m + (1 - beta1) g，v = beta2 v + (1 - beta2) g^2"


# ------------------------------------------------------------------ 共用
def _call_backward(function, inputs, rng, how_many, where, upstream=None):
    """前向一次，再直接调用 backward（给一个随机的上游梯度），检查返回值的类型和个数。"""
    out = function.apply(*inputs)
    if upstream is None:
        upstream = rng.standard_normal(out.shape)
    with tg.no_grad():
        grads = out._ctx.backward(tg.tensor(upstream))
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != how_many:
        raise WrongAnswer(f"{where}：backward 返回了 {len(grads)} 个梯度，应当每个输入一个，共 {how_many} 个")
    for g in grads:
        if not isinstance(g, tg.Tensor):
            raise WrongAnswer(f"{where}：backward 返回了 {type(g).__name__}，应当返回 Tensor。"
                              "用张量运算写 backward（不要 .numpy()），create_graph=True 才能再求导")
    return grads


def _gradcheck_each(fn, inputs, names, where):
    """一次只让一个输入需要梯度，这样 gradcheck 失败时能说出是哪个梯度错了。"""
    for i, name in enumerate(names):
        alone = tuple(t.detach().requires_grad_(j == i) for j, t in enumerate(inputs))
        try:
            tg.gradcheck(fn, alone)
        except tg.GradcheckError as e:
            raise WrongAnswer(f"{where}：{name} 的数值不对（gradcheck 用中心差分核对）。\n      {e}") from None


# 编号 -> (练习文件名, 检查函数)
EXERCISES = {
    "01": ("ex01_topological_sort", check_topological_sort),
    "02": ("ex02_linear_backward", check_linear_backward),
    "03": ("ex03_activation_backward", check_activation_backward),
    "05": ("ex05_adam_step", check_adam_step),
}
ALIASES = {"16": "01"}   # 第 16 课讲拓扑序，它的练习就是练习 01

if __name__ == "__main__":
    sys.exit(main())

"""课程共用的小工具：分节标题、像解释器一样展示代码、带检查的断言，以及最小的反向遍历。

每一课在仓库根目录运行（python lessons/NN_名字.py），脚本所在的 lessons/
目录会自动进入 sys.path，所以课程里直接 `from common import check` 即可；
练习的检查器（python -m lessons.check）则用 `from lessons import common`。
"""
import sys

import tinygrad_zh as tg


def section(title):
    """打印一节的标题。"""
    print(f"\n{'=' * 70}\n{title}\n{'=' * 70}")


def show(code, value):
    """像交互式解释器那样，先打印代码，再打印结果。"""
    print(f">>> {code}")
    print(value)


def indent(text, prefix="      "):
    """给多行文字的每一行加缩进。"""
    return "\n".join(prefix + line for line in text.splitlines())


def check(ok, claim):
    """打印一条检查；不成立时以非零状态退出，让冒烟测试失败。"""
    if not ok:
        sys.exit(f"[失败] {claim}")
    print(f"[通过] {claim}")


def backprop_in_order(output, order):
    """最小的反向遍历（micrograd 的样子），按给定的顺序走，返回 {id(张量): 梯度}。

    order 是图里的张量，output 在最前。对每个张量，调用产生它的运算的 backward，
    把得到的梯度加到这个运算的每个输入上。一个张量被处理时，它的梯度必须已经收齐
    （所有用到它的运算都已处理过）——这正是拓扑序保证的；顺序错了，晚到的那部分
    梯度就丢了。引擎真正的遍历（autograd.py）还要做广播求和、释放中间结果、
    检查原地修改等，这里都省掉了：只用于没有广播的小例子。
    """
    grads = {id(output): tg.ones_like(output)}   # 起点：d output / d output = 1
    with tg.no_grad():
        for t in order:
            node = t._ctx
            if node is None or id(t) not in grads:   # 叶子，或者没有梯度流到这里
                continue
            input_grads = node.backward(grads[id(t)])
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for x, g in zip(node.inputs, input_grads):
                if g is not None:
                    grads[id(x)] = grads[id(x)] + g if id(x) in grads else g
    return grads

"""课程共用的小工具：分节标题、像解释器一样展示代码、带检查的断言。

每一课在仓库根目录运行（python lessons/NN_名字.py），脚本所在的 lessons/
目录会自动进入 sys.path，所以课程里直接 `from common import check` 即可。
"""
import sys


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

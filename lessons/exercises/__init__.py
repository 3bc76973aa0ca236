"""练习：亲手写出引擎的关键部件，再用检查器核对。

每个练习文件里有一个留给你的函数（或方法），现在只会抛出 NotImplementedError，
里面写着提示。写好以后，在仓库根目录运行检查器：

    python -m lessons.check 01      # 只检查练习 01
    python -m lessons.check         # 检查全部练习

检查器用引擎自己的 gradcheck（或写出来的公式）核对你的答案，并用中文说明哪里不对。
参考答案在 solutions/ 里，先自己做，做不出来再看。

    ex01_topological_sort.py     拓扑排序（第 1、16 课）
    ex02_linear_backward.py      Linear 的 backward，PyTorch 布局（第 2 课）
    ex03_activation_backward.py  Sigmoid 和 Tanh 的 backward（第 3 课）
    ex05_adam_step.py            用 NumPy 写一步 Adam（第 5 课）
"""

"""练习 01 的参考答案：显式栈的深度优先搜索（和 autograd.py 的做法相同）。"""


def topological_order(output):
    """output 所在计算图的全部张量，每个恰好一次，每个都排在用到它的张量之后。"""
    order, visited = [], set()
    # 栈里的每一项：(张量, 它的输入是否已经排好)。第二次弹出时输入都排好了，才把它放进 order。
    stack = [(output, False)]
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._ctx is not None:
            stack.extend((x, False) for x in t._ctx.inputs if id(x) not in visited)
    order.reverse()   # 现在每个张量都在它的输入之前，也就是在用到它的张量之后
    return order

"""Show the graph that autograd recorded behind a tensor: as a text tree, Mermaid or DOT.

Every tensor made by an op remembers that op in ``tensor._ctx`` (a Function
node, printed like ``<MulBackward>``), and the node remembers its inputs in
``node.inputs``. Following those links from a result back to the leaves is
exactly the walk ``backward()`` does; here we only print what we pass.

    >>> import tinygrad_zh as tg
    >>> x = tg.ones(2, 3)
    >>> W = tg.ones(3, 4, requires_grad=True)
    >>> b = tg.zeros(4, requires_grad=True)
    >>> h = (x @ W + b).tanh()
    >>> print(graph_text(h, names={x: "x", W: "W", b: "b"}))
    <TanhBackward> shape=(2, 4)
    └── <AddBackward> shape=(2, 4)
        ├── <MatmulBackward> shape=(2, 4)
        │   ├── x: leaf shape=(2, 3) requires_grad=False
        │   └── W: leaf shape=(3, 4) requires_grad=True
        └── b: leaf shape=(4,) requires_grad=True

All printers walk the graph with an explicit stack, never by recursion, so a
chain of 100,000 ops prints as easily as three. Each tensor is visited once: a
tensor used twice is one Mermaid (or DOT) node with two edges, and in the text tree its
second appearance is marked as a repeat instead of being expanded again.

After ``backward()`` (without ``retain_graph=True``) the nodes have dropped
their inputs to free memory; such a node is printed with "(freed by backward)".
"""

__all__ = ["graph_text", "to_mermaid", "to_dot", "graph_edges"]


def graph_text(tensor, names=None, max_depth=40):
    """The graph behind ``tensor`` as an indented tree, the result on top.

    ``names`` maps tensors to labels, e.g. ``{W: "W"}`` (tensors are dict keys
    by identity). A tensor reached more than once gets a tag such as ``[#1]``;
    its later appearances say "(repeat: see above)" and are not expanded again.
    Inputs deeper than ``max_depth`` levels are cut off with a note, because
    every level adds four characters of indentation (``None``: no limit).

        >>> import tinygrad_zh as tg
        >>> x = tg.tensor([1.0, 2.0], requires_grad=True)
        >>> y = x * x
        >>> print(graph_text(y * 2.0, names={x: "x"}))
        <MulBackward> shape=(2,)
        ├── <MulBackward> shape=(2,)
        │   ├── x: leaf shape=(2,) requires_grad=True [#1]
        │   └── x: leaf shape=(2,) requires_grad=True [#1] (repeat: see above)
        └── leaf shape=() requires_grad=False value=2.0
    """
    names = names or {}
    uses = _use_counts(tensor)
    tags = {}          # id(tensor) -> tag number, for tensors reached more than once
    expanded = set()   # id(tensor) of those already printed with their inputs
    lines = []
    # Each entry: (tensor, prefix of its own line, prefix of its inputs' lines, depth).
    stack = [(tensor, "", "", 0)]
    while stack:
        t, head, indent, depth = stack.pop()
        label = _label(t, names) + _tag(t, uses, tags)
        if id(t) in expanded:
            lines.append(f"{head}{label} (repeat: see above)")
            continue
        lines.append(head + label)
        inputs = _inputs(t)
        if inputs and max_depth is not None and depth >= max_depth:
            lines.append(f"{indent}└── … (inputs deeper than max_depth={max_depth} not shown)")
            continue  # not marked expanded: a shallower appearance may still expand it
        expanded.add(id(t))
        # Pushed in reverse so that they pop, and print, in input order.
        for i in reversed(range(len(inputs))):
            last = i == len(inputs) - 1
            stack.append((inputs[i], indent + ("└── " if last else "├── "),
                          indent + ("    " if last else "│   "), depth + 1))
    return "\n".join(lines)


def to_mermaid(tensor, names=None, direction="TD"):
    """The graph behind ``tensor`` as a Mermaid flowchart (paste it into Markdown).

    One Mermaid node per tensor: a rectangle for a tensor an op made, a rounded
    box for a leaf. Edges point the way data flows in the forward pass, from an
    input to the tensor computed from it; ``backward()`` walks them in reverse.
    A tensor used twice by one op (``x * x``) gets two edges.

        >>> import tinygrad_zh as tg
        >>> x = tg.tensor([1.0, 2.0], requires_grad=True)
        >>> print(to_mermaid(x * x, names={x: "x"}))
        flowchart TD
            t0["MulBackward shape=(2,)"]
            t1(["x: leaf shape=(2,) requires_grad=True"])
            t1 --> t0
            t1 --> t0
    """
    names = names or {}
    tensors, edges = graph_edges(tensor)
    lines = [f"flowchart {direction}"]
    for i, t in enumerate(tensors):
        # Mermaid would read <MulBackward> as an HTML tag and drop it: show MulBackward.
        text = _mermaid_escape(_label(t, names, op_brackets=False))
        lines.append(f'    t{i}["{text}"]' if t._ctx is not None else f'    t{i}(["{text}"])')
    lines += [f"    t{src} --> t{dst}" for src, dst in edges]
    return "\n".join(lines)


def to_dot(tensor, names=None, rankdir="TB"):
    """The graph behind ``tensor`` in Graphviz's DOT language.

    The same nodes and edges as :func:`to_mermaid`: a box for a tensor an op
    made, an ellipse for a leaf, edges in the forward direction. Save the text
    as ``graph.dot`` and render it with ``dot -Tpng graph.dot -o graph.png``
    (the ``dot`` program comes with Graphviz). ``rankdir`` is Graphviz's layout
    direction: ``"TB"`` (top to bottom), ``"LR"``, ``"BT"`` or ``"RL"``.

        >>> import tinygrad_zh as tg
        >>> x = tg.tensor([1.0, 2.0], requires_grad=True)
        >>> print(to_dot(x * x, names={x: "x"}))
        digraph autograd {
            rankdir=TB;
            t0 [shape=box, label="MulBackward shape=(2,)"];
            t1 [shape=ellipse, label="x: leaf shape=(2,) requires_grad=True"];
            t1 -> t0;
            t1 -> t0;
        }
    """
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"viz.to_dot: rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}")
    names = names or {}
    tensors, edges = graph_edges(tensor)
    lines = ["digraph autograd {", f"    rankdir={rankdir};"]
    for i, t in enumerate(tensors):
        shape = "box" if t._ctx is not None else "ellipse"
        text = _dot_escape(_label(t, names, op_brackets=False))
        lines.append(f'    t{i} [shape={shape}, label="{text}"];')
    lines += [f"    t{src} -> t{dst};" for src, dst in edges]
    lines.append("}")
    return "\n".join(lines)


def graph_edges(tensor):
    """Every tensor in the graph once, and the edges between them.

    Returns ``(tensors, edges)``: ``tensors[0]`` is ``tensor`` itself, and each
    edge ``(i, j)`` says that ``tensors[i]`` is an input of the op that made
    ``tensors[j]``. An input used twice by one op gives the edge twice.

        >>> import tinygrad_zh as tg
        >>> x = tg.tensor(3.0, requires_grad=True)
        >>> tensors, edges = graph_edges(x * x)
        >>> len(tensors), edges
        (2, [(1, 0), (1, 0)])
    """
    tensors, index = [tensor], {id(tensor): 0}
    edges = []
    stack = [tensor]
    while stack:
        out = stack.pop()
        for t in _inputs(out):
            if id(t) not in index:  # first visit: number it and walk on through it
                index[id(t)] = len(tensors)
                tensors.append(t)
                stack.append(t)
            edges.append((index[id(t)], index[id(out)]))
    return tensors, edges


# ------------------------------------------------------------------ helpers
def _inputs(tensor):
    """The tensors the op behind ``tensor`` read; none for a leaf or a freed node."""
    node = tensor._ctx
    if node is None or node.inputs is None:
        return ()
    return node.inputs


def _use_counts(tensor):
    """id(t) -> how many times t is an input of some op in the graph."""
    tensors, edges = graph_edges(tensor)
    counts = {}
    for src, _ in edges:
        key = id(tensors[src])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _tag(t, uses, tags):
    """`` [#k]`` for a tensor reached more than once (numbered as first printed)."""
    if uses.get(id(t), 0) < 2:
        return ""
    number = tags.setdefault(id(t), len(tags) + 1)
    return f" [#{number}]"


def _label(t, names, op_brackets=True):
    """``W: leaf shape=(3, 4) requires_grad=True`` or ``h: <TanhBackward> shape=(2, 4)``."""
    name = names.get(t)
    prefix = f"{name}: " if name is not None else ""
    shape = f"shape={tuple(t.shape)}"
    node = t._ctx
    if node is None:
        text = f"leaf {shape} requires_grad={t.requires_grad}"
        if t.numel() == 1 and not t.requires_grad:
            # Constants such as the 2.0 in `x * 2.0` are leaves too: show the number.
            text += f" value={t.item()!r}"
        return prefix + text
    op = repr(node) if op_brackets else repr(node).strip("<>")
    freed = " (freed by backward)" if node.inputs is None else ""
    return f"{prefix}{op} {shape}{freed}"


def _dot_escape(text):
    """A DOT quoted string ends at an unescaped quote; a backslash starts an escape."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _mermaid_escape(text):
    """Mermaid's entity codes for the characters that would end or break a label."""
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")

"""viz: the autograd graph as a text tree, a Mermaid flowchart and Graphviz DOT."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
from tinygrad_zh import viz


def small_layer():
    """h = tanh(x @ W + b), with the leaves named."""
    x = tg.ones(2, 3)
    W = tg.ones(3, 4, requires_grad=True)
    b = tg.zeros(4, requires_grad=True)
    return (x @ W + b).tanh(), {x: "x", W: "W", b: "b"}


def mermaid_nodes(text):
    return re.findall(r"^    (t\d+)[\[(]", text, flags=re.M)


def mermaid_edges(text):
    return re.findall(r"^    (t\d+) --> (t\d+)$", text, flags=re.M)


def chain(length):
    """A graph that is one long line of ops: x -> -x -> x -> ..."""
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(length):
        y = -y
    return x, y


# ------------------------------------------------------------------ text tree
def test_text_tree_of_a_small_layer():
    h, names = small_layer()
    assert viz.graph_text(h, names) == "\n".join([
        "<TanhBackward> shape=(2, 4)",
        "└── <AddBackward> shape=(2, 4)",
        "    ├── <MatmulBackward> shape=(2, 4)",
        "    │   ├── x: leaf shape=(2, 3) requires_grad=False",
        "    │   └── W: leaf shape=(3, 4) requires_grad=True",
        "    └── b: leaf shape=(4,) requires_grad=True",
    ])


def test_text_tree_without_names_and_with_a_constant():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    assert viz.graph_text(x * 3.0) == "\n".join([
        "<MulBackward> shape=(2,)",
        "├── leaf shape=(2,) requires_grad=True",
        "└── leaf shape=() requires_grad=False value=3.0",
    ])


def test_a_leaf_alone_is_one_line():
    W = tg.zeros(2, 2, requires_grad=True)
    assert viz.graph_text(W, {W: "W"}) == "W: leaf shape=(2, 2) requires_grad=True"


def test_intermediate_tensors_can_be_named():
    h, names = small_layer()
    z = h._ctx.inputs[0]
    assert viz.graph_text(h, {**names, z: "z"}).splitlines()[1] == \
        "└── z: <AddBackward> shape=(2, 4)"


def test_shared_subgraph_is_expanded_once_and_then_marked_as_a_repeat():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    a = x.exp()                  # used twice below
    y = a * a + a
    assert viz.graph_text(y, {x: "x", a: "a"}) == "\n".join([
        "<AddBackward> shape=(2,)",
        "├── <MulBackward> shape=(2,)",
        "│   ├── a: <ExpBackward> shape=(2,) [#1]",
        "│   │   └── x: leaf shape=(2,) requires_grad=True",
        "│   └── a: <ExpBackward> shape=(2,) [#1] (repeat: see above)",
        "└── a: <ExpBackward> shape=(2,) [#1] (repeat: see above)",
    ])


def test_diamond_expands_the_shared_node_only_once():
    # x feeds two branches that meet again: a diamond. Without the "visit once"
    # rule a stack of k diamonds would print 2**k copies of x.
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(20):
        y = y.sigmoid() + y.tanh()
    lines = viz.graph_text(y, {x: "x"}, max_depth=None).splitlines()
    assert len(lines) == 20 * 4 + 1   # per diamond: +, its two branches, one repeat; then x
    assert sum(line.endswith("x: leaf shape=() requires_grad=True [#20]") for line in lines) == 1
    assert sum(line.endswith("(repeat: see above)") for line in lines) == 20


def test_max_depth_cuts_off_with_a_note():
    x, y = chain(10)
    lines = viz.graph_text(y, {x: "x"}, max_depth=3).splitlines()
    assert len(lines) == 5  # the result, three levels, the note
    assert lines[-1].endswith("(inputs deeper than max_depth=3 not shown)")
    assert "x: leaf" in viz.graph_text(y, {x: "x"}, max_depth=None)


def test_a_graph_freed_by_backward_says_so():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert viz.graph_text(y) == "<SumBackward> shape=() (freed by backward)"


# ------------------------------------------------------------------ Mermaid
def test_mermaid_of_a_small_layer():
    h, names = small_layer()
    assert viz.to_mermaid(h, names) == "\n".join([
        "flowchart TD",
        '    t0["TanhBackward shape=(2, 4)"]',
        '    t1["AddBackward shape=(2, 4)"]',
        '    t2["MatmulBackward shape=(2, 4)"]',
        '    t3(["b: leaf shape=(4,) requires_grad=True"])',
        '    t4(["x: leaf shape=(2, 3) requires_grad=False"])',
        '    t5(["W: leaf shape=(3, 4) requires_grad=True"])',
        "    t1 --> t0",
        "    t2 --> t1",
        "    t3 --> t1",
        "    t4 --> t2",
        "    t5 --> t2",
    ])


def test_mermaid_draws_a_shared_tensor_once_with_one_edge_per_use():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    a = x.exp()
    y = a * a + a                # a: used three times, by two ops
    text = viz.to_mermaid(y, {a: "a"})
    nodes, edges = mermaid_nodes(text), mermaid_edges(text)
    assert len(nodes) == len(set(nodes)) == 4          # x, a, a*a, y
    assert len(edges) == 5                             # x->a, a->a*a twice, a->y, a*a->y
    a_id = next(n for n in nodes if re.search(rf'^    {n}\["a: ', text, flags=re.M))
    assert sum(src == a_id for src, _ in edges) == 3


def test_mermaid_escapes_quotes_and_angle_brackets_in_names():
    x = tg.tensor(1.0, requires_grad=True)
    text = viz.to_mermaid(x * x, {x: 'say "<hi>"'})
    assert 'say #quot;#lt;hi#gt;#quot;' in text
    assert "<" not in text


def test_mermaid_direction():
    x = tg.tensor(1.0, requires_grad=True)
    assert viz.to_mermaid(-x, direction="LR").startswith("flowchart LR\n")


# ------------------------------------------------------------------ deep graphs
def test_a_100000_op_chain_does_not_overflow_the_stack():
    x, y = chain(100_000)
    tensors, edges = viz.graph_edges(y)
    assert len(tensors) == 100_001 and len(edges) == 100_000
    text = viz.to_mermaid(y, {x: "x"})
    assert len(mermaid_nodes(text)) == 100_001
    assert len(mermaid_edges(text)) == 100_000
    lines = viz.graph_text(y, {x: "x"}).splitlines()   # default max_depth keeps it short
    assert len(lines) == 42
    assert lines[0] == "<NegBackward> shape=()"



# ------------------------------------------------------------------ DOT
def dot_nodes(text):
    return re.findall(r"^    (t\d+) \[shape=(box|ellipse), label=", text, flags=re.M)


def dot_edges(text):
    return re.findall(r"^    (t\d+) -> (t\d+);$", text, flags=re.M)


def test_dot_of_a_small_layer():
    h, names = small_layer()
    assert viz.to_dot(h, names) == "\n".join([
        "digraph autograd {",
        "    rankdir=TB;",
        '    t0 [shape=box, label="TanhBackward shape=(2, 4)"];',
        '    t1 [shape=box, label="AddBackward shape=(2, 4)"];',
        '    t2 [shape=box, label="MatmulBackward shape=(2, 4)"];',
        '    t3 [shape=ellipse, label="b: leaf shape=(4,) requires_grad=True"];',
        '    t4 [shape=ellipse, label="x: leaf shape=(2, 3) requires_grad=False"];',
        '    t5 [shape=ellipse, label="W: leaf shape=(3, 4) requires_grad=True"];',
        "    t1 -> t0;",
        "    t2 -> t1;",
        "    t3 -> t1;",
        "    t4 -> t2;",
        "    t5 -> t2;",
        "}",
    ])


def test_dot_and_mermaid_draw_the_same_graph():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    a = x.exp()
    y = a * a + a
    mermaid, dot = viz.to_mermaid(y, {a: "a"}), viz.to_dot(y, {a: "a"})
    assert [n for n, _ in dot_nodes(dot)] == mermaid_nodes(mermaid)
    assert dot_edges(dot) == mermaid_edges(mermaid)


def test_dot_escapes_quotes_and_backslashes_in_names():
    x = tg.tensor(1.0, requires_grad=True)
    text = viz.to_dot(x * x, {x: 'say "hi" \\ bye'})
    assert 'label="say \\"hi\\" \\\\ bye: leaf' in text


def test_dot_rankdir_and_its_error():
    x = tg.tensor(1.0, requires_grad=True)
    assert viz.to_dot(-x, rankdir="LR").splitlines()[1] == "    rankdir=LR;"
    with pytest.raises(ValueError, match=r"viz.to_dot: rankdir must be .* got 'TD'"):
        viz.to_dot(-x, rankdir="TD")


def test_dot_of_a_leaf_and_of_a_deep_chain():
    W = tg.zeros(2, requires_grad=True)
    assert viz.to_dot(W, {W: "W"}).splitlines()[2:] == [
        '    t0 [shape=ellipse, label="W: leaf shape=(2,) requires_grad=True"];', "}"]
    x, y = chain(20_000)
    text = viz.to_dot(y, {x: "x"})
    assert len(dot_nodes(text)) == 20_001 and len(dot_edges(text)) == 20_000


@settings(max_examples=40, derandomize=True, database=None, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "mul", "tanh", "exp"]),
                          st.integers(0, 100), st.integers(0, 100)), min_size=1, max_size=12))
def test_dot_draws_every_reachable_tensor_once_and_every_use_as_an_edge(steps):
    # Random graphs with shared subgraphs, against an independent walk over _ctx.inputs.
    pool = [tg.tensor(0.5, requires_grad=True), tg.tensor(2.0)]
    for op, i, j in steps:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        pool.append({"add": lambda: a + b, "mul": lambda: a * b,
                     "tanh": a.tanh, "exp": a.exp}[op]())
    out = pool[-1]
    reachable, uses, stack = {id(out)}, 0, [out]
    while stack:
        t = stack.pop()
        for x in (t._ctx.inputs if t._ctx is not None and t._ctx.inputs else ()):
            uses += 1
            if id(x) not in reachable:
                reachable.add(id(x))
                stack.append(x)
    text = viz.to_dot(out)
    assert len(dot_nodes(text)) == len(reachable)
    assert len(dot_edges(text)) == uses
    assert text.startswith("digraph autograd {\n") and text.endswith("\n}")

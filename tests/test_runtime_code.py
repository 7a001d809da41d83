"""plan.code is the module that runs: arrays and views made in bind()'s prelude, every value's line naming its
graph node and the file:line that built it."""
import re

import numpy as np
import pytest

import graphnet as gn


def test_plan_code_is_the_source_that_runs_and_names_its_nodes(rng):
    cell = gn.rnn.lstm_cell(3, 4).float64()
    plan = gn.compile(cell)
    plan.forward(rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4)))
    exe, code = plan._last[0], plan.code
    ns = {}
    exec(compile(code, exe.filename, "exec"), ns)          # nothing but builtins: every name is bind's own
    def functions(bind):
        return {c.co_name: (c.co_code, c.co_firstlineno) for c in bind.__code__.co_consts if hasattr(c, "co_code")}
    assert ns["bind"].__code__.co_code == exe._bind_fn.__code__.co_code
    assert functions(ns["bind"]) == functions(exe._bind_fn) and set(functions(ns["bind"])) == {"forward", "backward"}
    prelude = code.split("    def forward")[0]
    assert re.search(r"\n    (_F\d+) = _np_empty\(\d+, 'float64'\)\n", prelude), "the arena, made per binding"
    assert re.search(r"\n    _F\d+_\d+ = _F\d+\[\d+:\d+\]\.reshape\(\(2, \d+\)\)\n", prelude), "views of it"
    site = node = None
    for n in cell.order:
        if n.display_name() == "gates":
            node, site = n, n.site
    assert node is not None and f"  # gates ({site})" in code
    for lineno, v in exe.linemap.items():                  # each line computing a value names its node
        line = code.splitlines()[lineno - 1]
        assert line.endswith(f"  # {v.src.display_name()} ({v.src.site})"), line


def test_threads_and_batch_sizes_call_bind_again_on_the_same_code(rng):
    cell = gn.rnn.lstm_cell(3, 4).float64()
    plan = gn.compile(cell)
    for B in (2, 3, 6):
        plan.forward(rng.standard_normal((B, 3)), rng.standard_normal((B, 4)), rng.standard_normal((B, 4)))
    bound = plan._last[0]
    assert bound.stats["code_shared"] and not re.search(r"\b_n\d+\b", plan.code), "the size's numbers shown"
    bind = bound._bind_fn
    assert any(k.startswith("_n") for k in bound._bind_args), "and given to the shared code as arguments"
    fwd, _, _ = bind(**bound._bind_args)
    x = [rng.standard_normal((6, 3)), rng.standard_normal((6, 4)), rng.standard_normal((6, 4))]
    outs, _ = fwd(*x)
    want = gn.compile(cell).forward(*x)
    assert all(np.array_equal(a, b) for a, b in zip(outs, want))


def test_a_failure_in_shared_code_names_the_node_and_its_line():
    x = gn.Input((None,), name="idx")
    emb = gn.nn.LookupTable(10, 4)(x)
    plan = gn.compile(gn.gModule([x], [gn.nn.Tanh()(emb)]))
    for B in (4, 5, 6):
        plan.forward(np.arange(B))
    assert plan.stats()["code_shared"]
    try:
        plan.forward(np.array([1, 2, 3, 4, 5, 99]))
        raise AssertionError("an index out of range must fail")
    except gn.InputError as e:
        text = str(e)
    assert "index 99 is out of range" in text and "at node 'emb'" in text
    assert re.search(r"plan line: .*forward\(.*\)  # emb \(", text), text


def test_a_train_step_says_how_to_get_its_outputs_alone(rng):
    x, t = gn.Input((None, 3)), gn.Input((None, 2))
    step = gn.compile_train_step(gn.gModule([x, t], [gn.nn.MSECriterion()(gn.nn.Linear(3, 2)(x), t)]))
    with pytest.raises(gn.InputError, match=r"gn.compile\(model\).forward"):
        step.forward(rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))


def test_a_variable_names_one_value(rng):
    idx, h = gn.Input((None,), name="idx"), gn.Input((None, 4), name="h")
    y = gn.nn.Tanh()(gn.nn.CAddTable()([gn.nn.LookupTable(10, 4)(idx), gn.nn.Linear(4, 4)(h)]))
    plan = gn.compile(gn.gModule([idx, h], [gn.nn.Sigmoid()(gn.nn.Linear(4, 4)(y))]).float64())
    plan.forward(np.arange(3), rng.standard_normal((3, 4)))
    deleted = []
    for body in plan.code.split("\n    def ")[1:]:          # each function on its own
        assigned = re.findall(r"^\s+(t\d+) = ", body, re.M)
        assert len(assigned) == len(set(assigned)) > 1
        gone = [n for line in re.findall(r"^\s+del (.*)$", body, re.M) for n in line.split(", ")]
        assert set(gone) <= set(assigned)
        deleted += gone
    assert deleted


def test_bind_opens_with_a_branch_so_its_compile_grows_linearly(rng):
    """CPython makes the cells that the plan's functions close over (the arena's views) at the front of bind's
    first basic block, moving that block for each: the prelude must not be that block, or compiling grows as
    views x prelude lines."""
    import ast
    cell = gn.rnn.lstm_cell(3, 4).float64()
    plan = gn.compile(cell)
    plan.forward(rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4)))
    bind = ast.parse(plan.code).body[0]
    assert bind.name == "bind" and any(isinstance(s, ast.Assign) for s in bind.body), "a prelude of views"
    assert isinstance(bind.body[0], ast.If), ast.unparse(bind.body[0])

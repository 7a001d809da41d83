"""The optimizing compiler (level 2) agrees with the reference interpreter (level 0) on random graphs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphnet as gn
from graphnet import nn

F = 6  # every node in a random graph is (B, F), so any two can be combined


def random_graph(seed):
    """A random graph with fan-out, shared modules, nesting, multi-output nodes and Narrow/Join mixes."""
    r = np.random.default_rng(seed)
    gn.manual_seed(seed)
    n_in = int(r.integers(1, 4))
    inputs = [gn.Input((None, F)) for _ in range(n_in)]
    nodes = list(inputs)
    shared = nn.Linear(F, F)
    x_in, h_in = gn.Input(), gn.Input()
    a = nn.Tanh()(nn.Linear(F, F)(x_in))
    sub = gn.gModule([x_in, h_in], [a * h_in, a + nn.Sigmoid()(h_in)])   # nested, two outputs
    unary = [nn.Tanh, nn.Sigmoid, nn.Square, lambda: nn.MulConstant(-0.7), lambda: nn.AddConstant(0.3),
             nn.SoftPlus, lambda: nn.LeakyReLU(0.2), nn.LogSoftMax, nn.SoftMax]
    for _ in range(int(r.integers(2, 12))):
        pick = lambda: nodes[int(r.integers(len(nodes)))]
        kind = int(r.integers(8))
        if kind == 0:
            y = unary[int(r.integers(len(unary)))]()(pick())
        elif kind == 1:
            y = [nn.CAddTable, nn.CSubTable, nn.CMulTable, nn.CMaxTable][int(r.integers(4))]()(pick(), pick())
        elif kind == 2:
            y = shared(pick())
        elif kind == 3:
            y = nn.Linear(F, F)(pick())
        elif kind == 4:
            k = int(r.integers(1, F))
            x = pick()
            y = nn.JoinTable(1)(nn.Narrow(1, k, F - k)(x), nn.Narrow(1, 0, k)(x))
        elif kind == 5:
            c, h = sub(pick(), pick())
            nodes.append(c)
            y = h
        elif kind == 6:
            parts = nn.SplitTable(1)(nn.Reshape(2, F // 2)(pick())).split(2)
            y = nn.JoinTable(1)(parts[1], nn.Tanh()(parts[0]))
        else:
            x = pick()
            y = x[:, 0:F] * 0.5 + x
        nodes.append(y)
    used = {id(p) for n in nodes for p in n.inputs}
    sinks = [n for n in nodes if id(n) not in used and n.kind != "item" or n in inputs and id(n) not in used]
    total = sinks[0] if len(sinks) == 1 else nn.CAddTable()(sinks)
    outs = [total] + ([nodes[-1]] if nodes[-1] is not total and r.random() < 0.5 else [])
    return gn.gModule(inputs, outs), n_in


def run_plan(g, arrays, seeds, **how):
    """Outputs, input gradients, parameter gradients and the plan of ``gn.compile(g, **how)`` on these arrays."""
    plan = gn.compile(g, **how)
    outs = plan.forward(*arrays)
    outs = outs if isinstance(outs, list) else [outs]
    for p in g.parameters():
        p.grad[...] = 0
    gin = plan.backward(*seeds[:len(outs)])
    gin = gin if isinstance(gin, list) else [gin]
    return outs, gin, [p.grad.copy() for p in g.parameters()], plan


def _run(g, level, arrays, seeds):
    return run_plan(g, arrays, seeds, level=level)[:3]


def check_agreement(seed):
    g, n_in = random_graph(seed)
    g.float64()
    r = np.random.default_rng(seed + 1)
    B = int(r.integers(1, 4))
    arrays = [r.standard_normal((B, F)) for _ in range(n_in)]
    seeds = [r.standard_normal((B, F)) for _ in range(2)]
    ref = _run(g, 0, arrays, seeds)
    opt = _run(g, 2, arrays, seeds)
    for a, b in zip(sum(ref, []), sum(opt, [])):
        scale = max(np.abs(a).max(initial=0), 1e-30)
        assert np.abs(a - b).max(initial=0) / scale < 1e-9


@given(seed=st.integers(0, 2**31 - 1))
def test_level2_agrees_with_level0(seed):
    check_agreement(seed)


@pytest.mark.slow
@settings(max_examples=1000)
@given(seed=st.integers(0, 2**31 - 1))
def test_level2_agrees_with_level0_thousand_graphs(seed):
    check_agreement(seed)


def random_recurrence(seed, loss_only=False):
    """A cell unrolled T steps with a loss head at every step: what row batching and hoisting rewrite most."""
    r = np.random.default_rng(seed)
    gn.manual_seed(seed)
    kind = ["rnn", "lstm", "gru"][int(r.integers(3))]
    D, H, V, T, B = (int(r.integers(1, 5)), int(r.integers(1, 5)), int(r.integers(2, 5)), int(r.integers(1, 6)),
                     int(r.integers(1, 4)))
    cell = getattr(gn.rnn, f"{kind}_cell")(D, H)
    n_state = 2 if kind == "lstm" else 1
    head = nn.Linear(H, V)
    xs = [gn.Input() for _ in range(T)]
    states = [gn.Input() for _ in range(n_state)]
    ts = []
    s, losses = list(states), []
    for t in range(T):
        out = cell(xs[t], *s)
        s = list(out) if n_state > 1 else [out]
        if r.random() < 0.7:
            ts.append(gn.Input())
            losses.append(nn.ClassNLLCriterion()(nn.LogSoftMax()(head(s[-1])), ts[-1]))
        else:
            losses.append(nn.Mean(0)(nn.Sum(1)(nn.Square()(head(s[-1])))))
    loss = nn.CAddTable()(losses) if T > 1 else losses[0]
    model = gn.gModule(xs + ts + states, [loss] if loss_only else [loss, s[-1]])
    arrays = ([r.standard_normal((B, D)) for _ in range(T)] + [r.integers(0, V, B) for _ in ts]
              + [r.standard_normal((B, H)) for _ in range(n_state)])
    seeds = [np.asarray(r.standard_normal()), r.standard_normal((B, H))]
    return model.float64(), arrays, seeds


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1))
def test_level2_agrees_with_level0_on_unrolled_cells(seed):
    g, arrays, seeds = random_recurrence(seed)
    ref, opt = _run(g, 0, arrays, seeds), _run(g, 2, arrays, seeds)
    for a, b in zip(sum(ref, []), sum(opt, [])):
        if a is None:
            assert b is None
            continue
        scale = max(np.abs(a).max(initial=0), 1e-30)
        assert np.abs(a - b).max(initial=0) / scale < 1e-9


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1))
def test_train_step_agrees_with_level0_on_unrolled_cells(seed):
    # the fused step (one function, its own arrays) against the reference interpreter's gradients
    g, arrays, _ = random_recurrence(seed, loss_only=True)
    ref_loss, _, ref_grads = _run(g, 0, arrays, [np.asarray(1.0)])
    step = gn.compile_train_step(g)
    for _ in range(2):                       # twice: the second call runs in the arrays the first one used
        loss = step(*arrays)
        assert abs(loss - float(ref_loss[0])) <= 1e-12 * max(1.0, abs(loss))
        for p, r in zip(g.parameters(), ref_grads):
            np.testing.assert_allclose(p.grad, r, rtol=1e-9, atol=1e-12)

"""Each compiler pass alone: what it changes in the IR, and that the program still computes the same values."""
import numpy as np

import graphnet as gn
from graphnet import nn, ops
from graphnet.compile.interp import Interpreter
from graphnet.compile.lower import lower
from graphnet.compile.passes import (cse, dce, fold_constants, simplify, stack_shared_matmuls, sum_of_gemms)

F8 = np.dtype("f8")


def _prog(g, shapes):
    return lower(g.float64(), [(s, F8) for s in shapes])


def _run(prog, arrays, seed=0):
    r = np.random.default_rng(seed)
    it = Interpreter(prog)
    outs, env = it.forward(arrays)
    for p, _ in prog.params:
        p.grad[...] = 0
    gin = it.backward(env, [r.standard_normal(np.shape(o)) for o in outs])
    return [np.asarray(o) for o in outs] + [g for g in gin if g is not None] + \
        [p.grad.copy() for p, _ in prog.params]


def _same(before, after, arrays):
    for a, b in zip(_run(before, arrays), _run(after, arrays)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def _count(prog, cls):
    return sum(isinstance(v.op, cls) for v in prog.values)


def test_dce_drops_values_nothing_needs(rng):
    x = gn.Input()
    g = gn.gModule([x], [nn.Tanh()(x)])
    prog = _prog(g, [(2, 3)])
    b = prog.values[0]
    from graphnet.compile.ir import Value
    junk = Value(ops.Exp(), (b,), b.shape, b.dtype, None)
    prog.values.append(junk)
    out = dce(prog)
    assert junk not in out.values and junk in prog.values          # pure: the input is untouched
    _same(prog, out, [rng.standard_normal((2, 3))])


def test_fold_constants_computes_constant_subgraphs_once(rng):
    x = gn.Input()
    g = gn.gModule([x], [nn.Tanh()(x)])
    prog = _prog(g, [(2, 3)])
    from graphnet.compile.ir import Value
    c = Value(ops.Const(np.full((2, 3), 2.0)), (), (2, 3), F8, None)
    e = Value(ops.Exp(), (c,), (2, 3), F8, None)
    y = prog.outputs[0]
    z = Value(ops.Mul(), (y, e), (2, 3), F8, None)
    prog.values += [c, e, z]
    prog.outputs = [z]
    out = fold_constants(prog)
    assert _count(out, ops.Exp) == 0 and _count(prog, ops.Exp) == 1
    consts = [v for v in out.values if isinstance(v.op, ops.Const)]
    assert any(np.allclose(v.op.value, np.exp(2.0)) for v in consts)


def test_simplify_turns_gate_gradients_into_one_concat(rng):
    x = gn.Input()
    pre = nn.Linear(3, 8)(x)
    parts = [nn.Narrow(1, 2 * i, 2)(pre) for i in range(4)]
    y = nn.CAddTable()(nn.Sigmoid()(parts[0]) * parts[1], nn.Tanh()(parts[2]) * parts[3])
    prog = _prog(gn.gModule([x], [y]), [(4, 3)])
    assert _count(prog, ops.Unslice) == 4
    out = simplify(prog)
    assert _count(out, ops.Unslice) == 0 and _count(out, ops.Concat) == 1
    _same(prog, out, [rng.standard_normal((4, 3))])


def test_cse_merges_identical_work(rng):
    x = gn.Input()
    y = nn.CMulTable()(nn.Tanh()(x), nn.Tanh()(x))      # two modules, same computation
    prog = _prog(gn.gModule([x], [y]), [(2, 3)])
    assert _count(prog, ops.Tanh) == 2
    out = cse(prog)
    assert _count(out, ops.Tanh) == 1
    _same(prog, out, [rng.standard_normal((2, 3))])


def _graph(lin, T):
    xs = [gn.Input() for _ in range(T)]
    h0 = gn.Input()
    h = h0
    for x in xs:
        h = nn.Tanh()(lin(x) + h)
    return gn.gModule(xs + [h0], [h])


def test_stack_shared_matmuls_batches_independent_uses(rng):
    T = 4
    g = _graph(nn.Linear(3, 5), T)
    prog = _prog(g, [(2, 3)] * T + [(2, 5)])
    before = sum(isinstance(v.op, ops.MatMul) and v.op.tb for v in prog.values)
    out = stack_shared_matmuls(prog)
    after = sum(isinstance(v.op, ops.MatMul) and v.op.tb for v in out.values)
    assert before == T and after == 1                    # x_t W^T for every t: one GEMM over stacked rows
    _same(prog, out, [rng.standard_normal((2, 3)) for _ in range(T)] + [rng.standard_normal((2, 5))])


def test_stack_shared_matmuls_leaves_a_recurrence_alone(rng):
    lin = nn.Linear(4, 4)
    x = gn.Input()
    h = x
    for _ in range(3):
        h = nn.Tanh()(lin(h))                            # each use needs the previous result
    prog = _prog(gn.gModule([x], [h]), [(2, 4)])
    out = stack_shared_matmuls(prog)
    assert _count(out, ops.MatMul) == _count(prog, ops.MatMul)
    _same(prog, out, [rng.standard_normal((2, 4))])


def test_sum_of_gemms_makes_one_weight_gradient_gemm(rng):
    T = 5
    g = _graph(nn.Linear(3, 5), T)
    prog = _prog(g, [(2, 3)] * T + [(2, 5)])
    gemms = lambda p: sum(isinstance(v.op, ops.MatMul) and v.op.ta for v in p.values)
    sums = lambda p: _count(p, ops.Sum)
    assert gemms(prog) == T
    out = sum_of_gemms(simplify(prog))
    assert gemms(out) == 1 and sums(out) == 1            # weight and bias gradients: one call each
    _same(prog, out, [rng.standard_normal((2, 3)) for _ in range(T)] + [rng.standard_normal((2, 5))])

"""Each compiler pass alone: what it changes in the IR, and that the program still computes the same values."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn, ops
from graphnet.compile.interp import Interpreter
from graphnet.compile.lower import lower
from graphnet.compile.passes import (batch_rows, batch_rows_around_kernels, cse, dce, distribute_over_stacks, flatten_stacks, fold_constants,
                                     hoist_invariants, reassociate_products, shared_transposes, simplify,
                                     sum_of_gemms, sum_of_reductions)

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


def test_simplify_adds_the_smaller_terms_of_a_sum_first(rng):
    # x W + b + h U + c: the two biases are summed first, then added once to the full arrays (one pass over
    # them, not two); a term of the full shape is needed for that, and its gradient is unchanged
    x, h = gn.Input(), gn.Input()
    y = nn.Tanh()(nn.CAddTable()(nn.Linear(3, 5)(x), nn.Linear(4, 5)(h)))
    prog = _prog(gn.gModule([x, h], [y]), [(2, 3), (2, 4)])
    out = simplify(prog)
    biases = [v for v in out.forward_values() if isinstance(v.op, ops.AddN) and [a.ndim for a in v.args] == [1, 1]]
    assert len(biases) == 1 and not [v for v in prog.forward_values() if isinstance(v.op, ops.AddN)
                                     and [a.ndim for a in v.args] == [1, 1]]
    (root,) = [v for v in out.forward_values() if biases[0] in v.args]
    assert [a.ndim for a in root.args] == [2, 2, 1]
    _same(prog, out, [rng.standard_normal((2, 3)), rng.standard_normal((2, 4))])


@pytest.mark.parametrize("x_shape,to,dim,folds", [((), (4,), 0, True), ((1, 3), (2, 3), 0, True),
                                                   ((3,), (2, 3), 0, True), ((2, 1), (2, 3), 1, True),
                                                   ((2, 3), (2, 3), 0, False), ((2, 3), (2, 3), 1, False)])
def test_simplify_makes_a_stack_of_one_broadcast_one_broadcast(rng, x_shape, to, dim, folds):
    from graphnet.compile.ir import Value
    x = gn.Input()
    prog = _prog(gn.gModule([x], [nn.Tanh()(x)]), [x_shape])
    arg = prog.args[0]
    b = Value(ops.BroadcastTo(to), (arg,), to, F8, None)
    shape = tuple(n * 3 if d == dim else n for d, n in enumerate(to))
    c = Value(ops.Concat(dim), (b, b, b), shape, F8, None)
    y = Value(ops.Tanh(), (c,), shape, F8, None)
    prog.values += [b, c, y]
    prog.outputs = [y]
    out = simplify(prog)
    assert _count(out, ops.Concat) == (0 if folds else 1) and _count(prog, ops.Concat) == 1
    if folds:
        (bt,) = [v for v in out.values if isinstance(v.op, ops.BroadcastTo)]
        assert bt.shape == shape and bt.args[0] is out.args[0]
    arrays = [rng.standard_normal(x_shape)]
    np.testing.assert_array_equal(Interpreter(out).forward(arrays)[0][0], Interpreter(prog).forward(arrays)[0][0])


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


def test_batch_rows_stacks_independent_matmuls_on_one_weight(rng):
    T = 4
    g = _graph(nn.Linear(3, 5), T)
    prog = _prog(g, [(2, 3)] * T + [(2, 5)])
    before = sum(isinstance(v.op, ops.MatMul) and v.op.tb for v in prog.values)
    out = batch_rows(prog)
    after = sum(isinstance(v.op, ops.MatMul) and v.op.tb for v in out.values)
    assert before == T and after == 1                    # x_t W^T for every t: one GEMM over stacked rows
    _same(prog, out, [rng.standard_normal((2, 3)) for _ in range(T)] + [rng.standard_normal((2, 5))])


def test_batch_rows_leaves_a_recurrence_alone(rng):
    lin = nn.Linear(4, 4)
    x = gn.Input()
    h = x
    for _ in range(3):
        h = nn.Tanh()(lin(h))                            # each use needs the previous result
    prog = _prog(gn.gModule([x], [h]), [(2, 4)])
    out = batch_rows(prog)
    assert _count(out, ops.MatMul) == _count(prog, ops.MatMul)
    assert _count(out, ops.Tanh) == _count(prog, ops.Tanh)          # the forward chain: step by step
    _same(prog, out, [rng.standard_normal((2, 4))])


def test_batch_rows_tells_a_recurrence_from_independent_steps():
    """A group whose every member depends on its first (the steps of a recurrence) batches nothing; it is found
    with one bit per group, before the ancestry that takes one bit per member of the other groups."""
    from graphnet.compile.passes.batch_rows import _candidates, _is_chain
    T = 4
    prog = _prog(_graph(nn.Linear(3, 5), T), [(2, 3)] * T + [(2, 5)])
    fwd = {v.id for v in prog.forward_values()}
    groups = [g for g in _candidates(prog.forward_values(), fwd, {}) if len(g) == T]
    chain = {type(g[0].op): c for g, c in zip(groups, _is_chain(prog.forward_values(), groups))}
    assert chain[ops.Tanh] is True                       # tanh(x_t W^T + h_{t-1}): each step needs the last
    assert chain[ops.MatMul] is False                    # x_t W^T: no step needs another


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


def _head_graph(T, V=4, H=3):
    """A loss at every step of a recurrence: Linear + LogSoftMax + ClassNLL on each h_t, summed."""
    cell, head, logsoft, nll = nn.Linear(H, H), nn.Linear(H, V), nn.LogSoftMax(), nn.ClassNLLCriterion()
    xs, ts = [gn.Input() for _ in range(T)], [gn.Input() for _ in range(T)]
    h0 = gn.Input()
    h, losses = h0, []
    for x, t in zip(xs, ts):
        h = nn.Tanh()(cell(h) + x)
        losses.append(nll(logsoft(head(h)), t))
    return gn.gModule(xs + ts + [h0], [nn.CAddTable()(losses)])


def _head_arrays(rng, T, B=2, V=4, H=3):
    return ([rng.standard_normal((B, H)) for _ in range(T)] + [rng.integers(0, V, B) for _ in range(T)]
            + [rng.standard_normal((B, H))])


def _head_prog(T, B=2, H=3):
    return _prog(_head_graph(T), [(B, H)] * T + [((B,), np.dtype(np.int64))] * T + [(B, H)])


def _prog_mixed(g, sig):
    return lower(g.float64(), [(s[0], s[1]) if isinstance(s[0], tuple) else (s, F8) for s in sig])


def test_batch_rows_computes_a_head_at_every_step_once(rng):
    T = 5
    prog = _prog_mixed(_head_graph(T), [(2, 3)] * T + [((2,), np.dtype(np.int64))] * T + [(2, 3)])
    for cls in (ops.LogSoftmax, ops.Pick, ops.LogSoftmaxGrad, ops.PickGrad):
        assert _count(prog, cls) == T
    out = batch_rows(simplify(prog))
    for cls in (ops.LogSoftmax, ops.Pick, ops.LogSoftmaxGrad, ops.PickGrad):
        assert _count(out, cls) == 1, cls                # one call over the T stacked row blocks
    assert _count(out, ops.Tanh) == T                    # the recurrence itself stays step by step
    _same(prog, out, _head_arrays(rng, T))


def test_batch_rows_batches_the_derivatives_of_a_recurrence(rng):
    T = 4
    prog = _prog_mixed(_head_graph(T), [(2, 3)] * T + [((2,), np.dtype(np.int64))] * T + [(2, 3)])
    assert _count(prog, ops.Deriv) == T
    out = batch_rows(prog)
    assert _count(out, ops.Deriv) == 1                   # tanh' of every step: forward values only
    _same(prog, out, _head_arrays(rng, T))


def test_around_kernels_the_derivatives_stay_in_the_steps_and_the_head_is_batched(rng):
    # a backend that fuses computes tanh' inside each backward step's kernel at no call: batched, it would
    # cost a pass over memory and the stacks; the head's ops still run once for all steps
    T = 4
    prog = _prog_mixed(_head_graph(T), [(2, 3)] * T + [((2,), np.dtype(np.int64))] * T + [(2, 3)])
    out = batch_rows_around_kernels(prog)
    assert _count(out, ops.Deriv) == T
    assert _count(out, ops.LogSoftmax) == 1 == _count(batch_rows(prog), ops.LogSoftmax)
    _same(prog, out, _head_arrays(rng, T))


def test_sum_of_reductions_makes_one_mean_of_the_losses(rng):
    T = 4
    prog = _prog_mixed(_head_graph(T), [(2, 3)] * T + [((2,), np.dtype(np.int64))] * T + [(2, 3)])
    mid = batch_rows(simplify(prog))
    assert _count(mid, ops.Mean) == T
    out = sum_of_reductions(mid)
    assert _count(out, ops.Mean) == 1
    _same(prog, out, _head_arrays(rng, T))


def test_sum_of_reductions_needs_blocks_that_tile_the_array(rng):
    x = gn.Input()
    y = nn.CAddTable()(nn.Mean(0)(nn.Narrow(0, 0, 2)(x)), nn.Mean(0)(nn.Narrow(0, 2, 2)(x)))
    prog = _prog(gn.gModule([x], [y]), [(5, 3)])       # rows 4 of 5: no single mean can replace the two
    out = sum_of_reductions(prog)
    assert _count(out, ops.Mean) == _count(prog, ops.Mean)
    _same(prog, out, [rng.standard_normal((5, 3))])


def test_hoist_invariants_adds_the_biases_to_all_steps_at_once(rng):
    T = 4
    lin_x, lin_h = nn.Linear(3, 5), nn.Linear(5, 5)
    xs, h0 = [gn.Input() for _ in range(T)], gn.Input()
    h = h0
    for x in xs:
        h = nn.Tanh()(lin_x(x) + lin_h(h))               # (x W + b) + (h U + c) at every step
    prog = _prog(gn.gModule(xs + [h0], [h]), [(2, 3)] * T + [(2, 5)])
    first = batch_rows(prog)
    adds = lambda p: sum(isinstance(v.op, (ops.Add, ops.AddN)) and v in p.forward_values() for v in p.values)
    out = batch_rows(hoist_invariants(first))
    assert adds(out) == T + 2 < adds(first)              # one add per step; each bias added once, to all
    _same(prog, out, [rng.standard_normal((2, 3)) for _ in range(T)] + [rng.standard_normal((2, 5))])


def _lstm_steps(T):
    """The nngraph LSTM cell unrolled T steps, summed hidden states as the output."""
    cell = gn.rnn.lstm_cell(3, 4)
    xs, c0, h0 = [gn.Input() for _ in range(T)], gn.Input(), gn.Input()
    c, h, hs = c0, h0, []
    for x in xs:
        c, h = cell(x, c, h)
        hs.append(h)
    return _prog(gn.gModule(xs + [c0, h0], [nn.CAddTable()(hs)]), [(2, 3)] * T + [(2, 4)] * 2)


def _lstm_arrays(rng, T):
    return [rng.standard_normal((2, 3)) for _ in range(T)] + [rng.standard_normal((2, 4)) for _ in range(2)]


def _products_of_two_forward_values(prog):
    """Products computed by backward whose two factors no gradient flows into."""
    from graphnet.compile.passes.factors import phases as _context
    free, _ = _context(prog)
    forward = {v.id for v in prog.forward_values()}
    return sum(isinstance(v.op, ops.Mul) and v.id not in forward and all(a.id in free for a in v.args)
               for v in prog.values)


def test_distribute_over_stacks_moves_the_gate_derivative_into_each_gate(rng):
    T = 3
    prog = simplify(_lstm_steps(T))
    stacked = lambda p: sum(isinstance(v.op, ops.Mul) and any(isinstance(a.op, ops.Concat) for a in v.args)
                            for v in p.values)
    assert stacked(prog) == T                            # d[i f o] * sigmoid'(.) at every step
    out = distribute_over_stacks(prog)
    assert stacked(out) == 0
    _same(prog, out, _lstm_arrays(rng, T))


def test_reassociate_products_groups_forward_factors(rng):
    T = 3
    prog = distribute_over_stacks(simplify(_lstm_steps(T)))
    out = reassociate_products(prog)
    assert _products_of_two_forward_values(out) > _products_of_two_forward_values(prog)
    # and those products are independent of each other: row batching computes them all at once
    batched = batch_rows(out)
    assert _products_of_two_forward_values(batched) < _products_of_two_forward_values(out)
    _same(prog, batched, _lstm_arrays(rng, T))


def test_flatten_stacks_makes_one_concat_of_nested_ones(rng):
    x = gn.Input()
    a, b, c = nn.Tanh()(x), nn.Sigmoid()(x), nn.Exp()(x)
    y = nn.JoinTable(1)(nn.JoinTable(1)(a, b), c)
    prog = _prog(gn.gModule([x], [y]), [(2, 3)])
    fwd_concats = lambda p: sum(isinstance(v.op, ops.Concat) for v in p.forward_values())
    assert fwd_concats(prog) == 2
    out = flatten_stacks(prog)
    assert fwd_concats(out) == 1
    _same(prog, out, [rng.standard_normal((2, 3))])


def test_shared_transposes_transpose_a_weight_once(rng):
    T = 4
    lin = nn.Linear(3, 3)
    x = gn.Input()
    h = x
    for _ in range(T):
        h = nn.Tanh()(lin(h))                            # W.T read by every step's product
    prog = _prog(gn.gModule([x], [h]), [(2, 3)])
    out = shared_transposes(prog)
    transposed = [v for v in out.values if isinstance(v.op, ops.MatMul) and v.op.tb]
    assert len(transposed) == 0 and _count(out, ops.Transpose) == _count(prog, ops.Transpose) + 1
    _same(prog, out, [rng.standard_normal((2, 3))])


def test_stack_is_free_for_blocks_and_runs_of_existing_stacks_and_copies_few_pieces():
    from graphnet.compile.ir import Value
    from graphnet.compile.passes.stacking import Stacks, stack
    leaf = lambda: Value(ops.Arg(0, (2, 3), F8), (), (2, 3), F8, None)
    a, b, c, d = leaf(), leaf(), leaf(), leaf()
    base = Value(ops.Concat(0), (a, b, c), (6, 3), F8, None)
    blocks = [Value(ops.Slice(0, 2 * i, 2), (base,), (2, 3), F8, None) for i in range(3)]
    s, copied = stack(blocks, None)
    assert s is base and not copied                          # the blocks of one array, in order: that array
    s, copied = stack([b, c], None, Stacks([base]))
    assert not copied and isinstance(s.op, ops.Slice) and s.args[0] is base and s.op.start == 2
    s, copied = stack([b, c], None, Stacks([base]), partial=False)
    assert copied                                            # rows of a larger stack only where allowed
    s, copied = stack([blocks[0], blocks[1], d, blocks[2]], None)
    assert copied and isinstance(s.op, ops.Concat) and len(s.args) == 3   # one piece per free run
    assert isinstance(s.args[0].op, ops.Slice) and s.args[0].shape == (4, 3)


def _runs_checked_whole(vals, existing, partial):
    """The cutting into free runs, each run checked whole at every step (quadratic): what ``_runs`` must match."""
    from graphnet.compile.passes.stacking import _free_stack
    out, i = [], 0
    while i < len(vals):
        j, best = i + 1, vals[i]
        while j < len(vals) and _free_stack(vals[i:j + 1], None, existing, partial) is not None:
            best, j = _free_stack(vals[i:j + 1], None, existing, partial), j + 1
        out.append(best)
        i = j
    return out


@pytest.mark.parametrize("partial", [True, False])
def test_runs_grown_value_by_value_cut_as_whole_checks_do(partial):
    """Random mixes of row blocks, arguments of stacks made already, column slices of both, and constants."""
    from graphnet.compile.ir import Value
    from graphnet.compile.passes.stacking import Stacks, _runs
    leaf = lambda: Value(ops.Arg(0, (2, 4), F8), (), (2, 4), F8, None)       # noqa: E731
    xs = [leaf() for _ in range(6)]
    made = Value(ops.Concat(0), tuple(xs[:4]), (8, 4), F8, None)
    base = Value(ops.Arg(1, (8, 4), F8), (), (8, 4), F8, None)
    blocks = [Value(ops.Slice(0, 2 * i, 2), (base,), (2, 4), F8, None) for i in range(4)]
    cols = [Value(ops.Slice(1, 1, 2), (v,), (2, 2), F8, None) for v in blocks + xs]
    consts = [Value(ops.Const(np.full((2, 4), float(i))), (), (2, 4), F8, None) for i in range(3)]
    wide, narrow = blocks + xs + consts, cols + [Value(ops.Const(np.zeros((2, 2))), (), (2, 2), F8, None)]
    existing = Stacks([made])

    def sig(v, pool):
        return v.id if v in pool else (v.op.key() if not isinstance(v.op, ops.Const) else v.op.value.tobytes(),
                                       tuple(sig(a, pool) for a in v.args))
    r = np.random.default_rng(7)
    for trial in range(300):
        pool = wide if trial % 2 else narrow
        runs_of = [blocks, xs, cols[:4], cols[4:]]
        vals = []
        while len(vals) < 12:                 # favour runs in order, so that long free runs occur
            if r.random() < 0.6:
                seq = runs_of[r.integers(len(runs_of))]
                k = r.integers(len(seq))
                vals += seq[k:k + r.integers(1, 5)]
            else:
                vals.append(pool[r.integers(len(pool))])
        vals = [v for v in vals if v.shape == vals[0].shape][:12]
        got = _runs(vals, None, existing, partial)
        want = _runs_checked_whole(vals, existing, partial)
        assert [sig(v, vals) for v in got] == [sig(v, vals) for v in want], trial


def test_a_loss_summed_over_a_thousand_steps_compiles():
    """A per-step loss added up step by step is an addition tree as deep as the sequence: the passes that
    regroup sums walk it without recursion (1,200 deep passes Python's default limit of 1,000)."""
    import graphnet as gn
    from graphnet import nn
    x, t = gn.Input((None, 3)), gn.Input((None, 3))
    crit = nn.MSECriterion()
    loss = crit(x, t)
    for k in range(1, 1200):
        loss = loss + crit(nn.MulConstant(1.0 + k / 1200)(x), t)
    m = gn.gModule([x, t], [loss]).float64()
    xa, ta = np.linspace(-1, 1, 6).reshape(2, 3), np.zeros((2, 3))
    got = gn.compile_train_step(m)(xa, ta)
    want = sum(np.mean(((1.0 + k / 1200) * xa) ** 2) for k in range(1200))
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_plan_s_full_mean_is_np_mean_bit_for_bit(rng, dtype):
    # the plan's mean over everything skips np.mean's Python wrapper, not its arithmetic (a pairwise sum, then
    # one division)
    x, t = gn.Input(), gn.Input()
    g = gn.gModule([x, t], [nn.ClassNLLCriterion()(x, t)])       # the mean over the batch
    g.float32() if dtype == np.float32 else g.float64()
    xa, ta = rng.standard_normal((1000, 3)).astype(dtype) * 1e3, rng.integers(0, 3, 1000)
    plan = gn.compile(g)
    got = plan.forward(xa, ta)
    assert "np.add.reduce(" in plan.code
    assert np.asarray(got).dtype == dtype and np.asarray(got) == -np.mean(xa[np.arange(1000), ta])

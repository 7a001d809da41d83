"""The memory plan: preallocated arrays, reuse, in-place writes and copy-free stacks, safe for the caller."""
import re

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn


def _unrolled(T=4, D=3, H=5):
    cell = gn.rnn.lstm_cell(D, H)
    xs = [gn.Input() for _ in range(T)]
    c0, h0 = gn.Input(), gn.Input()
    c, h = c0, h0
    hs = []
    for x in xs:
        c, h = cell(x, c, h)
        hs.append(h)
    return gn.gModule(xs + [c0, h0], [nn.Tanh()(nn.JoinTable(1)(hs)), c]).float64()


def _arrays(rng, T=4, B=2, D=3, H=5):
    return [rng.standard_normal((B, D)) for _ in range(T)] + [rng.standard_normal((B, H)) for _ in range(2)]


def test_outputs_and_gradients_belong_to_the_caller(rng):
    g = _unrolled()
    plan = gn.compile(g, level=2)
    a1, a2 = _arrays(rng), _arrays(rng)
    out1 = plan.forward(*a1)
    kept = [o.copy() for o in out1]
    grads1 = plan.backward(*[np.ones_like(o) for o in out1])
    kept_grads = [x.copy() for x in grads1]
    plan.forward(*a2)                                     # runs in the same preallocated arrays
    plan.backward(*[np.ones_like(o) for o in out1])
    for o, k in zip(out1 + grads1, kept + kept_grads):
        np.testing.assert_array_equal(o, k)               # nothing handed out was written over


def test_the_plan_preallocates_reuses_and_writes_stacks_in_place(rng):
    g = _unrolled(T=6)
    plan = gn.compile(g, level=2)
    plan.forward(*_arrays(rng, T=6))
    stats, code = plan.stats(), plan.code
    assert stats["bytes_preallocated"]["forward"] > 0
    assert stats["bytes_peak_planned"] < stats["bytes_one_buffer_per_node"]
    fwd = code.split("    def forward")[1].split("    def backward")[0]
    assert "_np_dot(" in fwd and ", _F" in fwd            # values written into preallocated arrays
    # h_t is written straight into its columns of the joined array (a view named array_dim s slot) ...
    assert len(re.findall(r"_np_multiply\([^()]*, _F\d+_\d+_1s\d+\)", fwd)) == 6
    assert fwd.count("_np_concatenate(") == 1            # ... so only the stack of the inputs x_t copies


def test_a_second_forward_then_backward_gives_the_second_gradients(rng):
    g = _unrolled()
    ref = gn.compile(g, level=0)
    plan = gn.compile(g, level=2)
    a1, a2 = _arrays(rng), _arrays(rng)
    plan.forward(*a1)
    outs = plan.forward(*a2)
    seeds = [np.ones_like(o) for o in outs]
    got = plan.backward(*seeds)
    ref.forward(*a2)
    want = ref.backward(*seeds)
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_arena_segments_fit_best_merge_when_freed_and_grow_at_the_tail():
    from graphnet.compile.memory import _Arena
    a = _Arena("_T1", "<f8")
    x, y, z = a.take(16), a.take(40), a.take(16)          # lengths round up to 16-element multiples
    assert (x, y, z) == ((0, 16), (16, 48), (64, 16)) and a.size == 80
    a.give(*y)
    assert a.take(16) == (16, 16)                          # the freed 48 holds a 16 ...
    assert a.take(48) == (80, 48) and a.size == 128        # ... so a 48 no longer fits: the arena grows
    a.give(16, 16)                                          # merges with the free 32 after it
    assert a.free == [(16, 48)] and a.take(48) == (16, 48)
    a.give(0, 16)
    a.give(64, 16)
    a.give(16, 48)                                          # and with both neighbours at once
    assert a.free == [(0, 80)]
    a.give(80, 48)
    assert a.free == [(0, 128)] and a.size == 128
    assert a.take(160) == (0, 160) and a.size == 160      # nothing fits: the free tail grows in place


def test_the_planned_peak_is_the_plans_own_arenas_and_fresh_arrays(rng):
    """The statistics read the layout: the arenas live for the plan's life, the fresh arrays (outputs, input
    gradients, values no op writes into an array) on top of them."""
    cell = gn.rnn.lstm_cell(10, 20).float64()
    plan = gn.compile(cell)
    B = 5
    outs = plan.forward(rng.standard_normal((B, 10)), rng.standard_normal((B, 20)), rng.standard_normal((B, 20)))
    plan.backward(*[rng.standard_normal((B, 20)) for _ in range(2)])
    st = plan.stats()
    arenas = sum(st["bytes_preallocated"].values())
    fresh_peak = st["bytes_peak_planned"] - arenas
    assert arenas > 0 and fresh_peak >= sum(o.nbytes for o in outs), "forward's outputs are fresh, alive at its end"
    assert st["bytes_peak_planned"] <= arenas + st["bytes_one_buffer_per_node"]
    assert st["buffers"] > 0


def test_contiguous_of_a_contiguous_input_is_a_new_array():
    # nn.Contiguous of an array that is contiguous already is still a new array, never the caller's input
    x = gn.Input((None, 3))
    m = gn.gModule([x], [gn.nn.Contiguous()(x), gn.nn.Tanh()(gn.nn.Contiguous()(x))]).float64()
    a = np.linspace(-1, 1, 6).reshape(2, 3)
    for level in (0, 2):
        same, tanh = gn.compile(m, level=level).forward(a)
        assert not np.shares_memory(same, a) and not np.shares_memory(tanh, a)
        np.testing.assert_array_equal(same, a)
        np.testing.assert_allclose(tanh, np.tanh(a))


@pytest.mark.parametrize("shape", [(1030, 300), (700, 513), (5, 40000)])
def test_a_large_strided_copy_goes_over_in_tiles_exactly(rng, shape):
    # a weight's transpose (the shared_transposes copy) and a column block, edges of tiles included
    from graphnet.ops.shape import TILED_FROM, copy_in_tiles
    w = rng.standard_normal(shape)
    assert w.size >= TILED_FROM
    for x in (w.T, w[:, 1:-1], w.T.astype(np.float32)):
        out = np.empty(x.shape, x.dtype)
        copy_in_tiles(out, x)
        assert np.array_equal(out, x) and out.flags.c_contiguous


def test_an_op_is_written_over_only_the_inputs_it_allows():
    # a fused kernel reading an input from a column the call gives may not be written over that input: the
    # memory plan picks among the positions the op names (Op.over), not any dying input of the output's shape
    from graphnet.compile.ir import Value
    from graphnet.compile.memory import _in_place
    from graphnet.ops import Add

    class Picky(Add):
        over = (1,)
    f8 = np.dtype(np.float64)
    a, b = Value(gn.ops.Tanh(), (), (2, 3), f8, None), Value(gn.ops.Tanh(), (), (2, 3), f8, None)
    ids = {a.id: a.id, b.id: b.id}
    for op, written in ((Add(), a), (Picky(), b)):
        v = Value(op, (a, b), (2, 3), f8, None)
        assert _in_place(v, 7, ids, ids, {a.id: 7, b.id: 7}, set()) is written

"""Batch sizes bound from numbers alone: a size no larger than the signature's reference layout takes bind()'s
arguments from fitted numbers (no memory plan, no code); a larger one plans its memory once and becomes the
reference. Every result equals a fresh compile at that size."""
import threading

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.compile.binder import _Op, _Scalar, fit_argument, same
from graphnet.compile.generic import NotGeneric
from graphnet.compile.memory import LayoutMismatch

from test_runtime_batch import batch, char_rnn, run_step


def lstm_inputs(B, seed):
    r = np.random.default_rng(seed * 1000 + B)
    return [r.standard_normal((B, 3)), r.standard_normal((B, 5)), r.standard_normal((B, 5))], \
        [r.standard_normal((B, 5)) for _ in range(2)]


def fwd_bwd(plan, cell, xs, gs):
    cell.zero_grad()
    return plan.forward(*xs) + plan.backward(*gs) + [q.grad.copy() for q in cell.parameters()]


def test_train_step_sizes_below_the_probe_bind_numbers_and_larger_ones_grow_the_reference():
    model = char_rnn()
    step = gn.compile_train_step(model)
    # 12 and 7 compile (probe 19); then sizes that are no multiples of either, a last short batch, a size above
    # the probe (planned once, the new reference), sizes below it, and a size compiled again after dropping
    sizes = [12, 7, 5, 11, 3, 12, 2, 19, 13, 23, 17, 22, 4, 23]
    kinds = {}
    for B in sizes:
        got = run_step(step, model, batch(B))
        kinds[B] = step.stats()["numbers_only"]
        want = run_step(gn.compile_train_step(model), model, batch(B))
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), B
    st = step.stats()
    assert st["compiles"] == 3 and st["not_generic"] == [] and st["not_bound"] == []
    assert {B for B, k in kinds.items() if not k} == {12, 7, 23}, kinds


def test_forward_and_backward_bind_numbers_for_new_sizes(rng):
    cell = gn.rnn.lstm_cell(3, 5).float64()
    plan = gn.compile(cell)
    for B in (8, 3, 10, 4, 9, 2, 11, 6):
        xs, gs = lstm_inputs(B, 1)
        got = fwd_bwd(plan, cell, xs, gs)
        if B not in (8, 3):
            assert plan.stats()["numbers_only"], B
            assert f"({B}, 5)" in plan.code, "a bound size's code shows its own numbers"
        want = fwd_bwd(gn.compile(cell), cell, xs, gs)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), B
    assert plan.stats()["compiles"] == 3


def test_bound_sizes_keep_the_reference_layout_whatever_a_best_fit_would_choose(rng):
    """Parameters' gradients do not grow with B, activations do: a best fit at each size would place them
    differently. Bound sizes keep the reference's offsets, and their arrays are the reference's."""
    model = nn.Sequential(nn.Linear(7, 33), nn.Tanh(), nn.Linear(33, 9), nn.Sigmoid(), nn.Linear(9, 3)).float64()
    plan = gn.compile(model)
    for B in [40, 3] + list(range(2, 44)):
        x, g = rng.standard_normal((B, 7)), rng.standard_normal((B, 3))
        model.zero_grad()
        got = [plan.forward(x), plan.backward(g)] + [p.grad.copy() for p in model.parameters()]
        model.zero_grad()
        fresh = gn.compile(model)
        want = [fresh.forward(x), fresh.backward(g)] + [p.grad.copy() for p in model.parameters()]
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), B
    exe = plan._last[0]
    assert plan.stats()["numbers_only"] and plan.stats()["not_bound"] == []
    assert exe.arrays_bytes == plan._families[next(iter(plan._families))].binder.arrays_bytes


def test_threads_meeting_new_sizes_get_the_sequential_results():
    cell = gn.rnn.lstm_cell(3, 5).float64()
    plan = gn.compile(cell)
    for B in (9, 4):                              # the fit: every size below 13 binds numbers
        plan.forward(*lstm_inputs(B, 0)[0])
    sizes = [2, 3, 5, 6, 7, 8, 10, 11, 12, 5, 7, 12]
    want = {}
    for k, B in enumerate(sizes):
        xs, gs = lstm_inputs(B, k)
        want[k] = fwd_bwd(gn.compile(cell), cell, xs, gs)[:4]     # outputs and input gradients
    got, errors = {}, []

    def work(k):
        try:
            for _ in range(20):
                xs, gs = lstm_inputs(sizes[k], k)
                out = plan.forward(*xs) + plan.backward(*gs)
                assert all(np.array_equal(a, b) for a, b in zip(out, want[k])), sizes[k]
            got[k] = True
        except Exception as e:                    # reported below, with the size
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(sizes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(got) == len(sizes) and plan.stats()["compiles"] == 3


def test_arguments_fit_as_numbers_scales_filled_arrays_and_ops():
    assert fit_argument((4, 100, 120), (4, 100, 130), 2, 3).at(7) == (4, 100, 170)      # offsets stay, ends grow
    k = fit_argument(np.asarray(0.5, np.float32), np.asarray(1 / 3, np.float32), 2, 3)
    assert isinstance(k, _Scalar) and same(k.at(8), np.asarray(1 / 8, np.float32))

    class Reshape:
        def __init__(self, shape):
            self.shape = shape
    op = fit_argument(Reshape((2, 5)), Reshape((3, 5)), 2, 3)
    assert isinstance(op, _Op) and op.at(9).shape == (9, 5) and same(op.at(9), Reshape((9, 5)))
    assert not same(op.at(9), Reshape((8, 5)))
    with pytest.raises(NotGeneric):
        fit_argument(np.arange(2.0), np.arange(3.0) + 1, 2, 3)


def test_a_layout_taken_from_a_reference_refuses_a_value_longer_than_its_segment():
    from graphnet.compile.emit import Emitted
    from graphnet.compile.lower import lower
    from graphnet.compile.pipeline import build_executable
    mlp = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).float64()

    def emitted(B):
        return build_executable(lower(_graph(mlp), [((B, 4), np.dtype(np.float64))]), 2)
    small, large = emitted(3), emitted(9)
    ids = {u.id: v.id for u, v in zip(large.program.values, small.program.values)}
    ref = {fn: lay.rekeyed(ids) for fn, lay in large.lays.items()}
    got = Emitted(small.program, reference=ref, run=False)
    assert any(got.lays[fn].segments for fn in got.lays), "some values live in the arena"
    for fn, lay in got.lays.items():
        assert lay.arrays == large.lays[fn].arrays and all(seg == ref[fn].segments[k]
                                                           for k, seg in lay.segments.items())
    for r in ref.values():
        r.segments = {k: (a, off, 1) for k, (a, off, _) in r.segments.items()}
    with pytest.raises(LayoutMismatch):
        Emitted(small.program, reference=ref, run=False)


def _graph(module):
    x = gn.Input((None, 4))
    return gn.gModule([x], [module(x)])


def test_a_signature_without_numbers_plans_memory_per_size_and_says_why(monkeypatch):
    from graphnet.compile import binder

    class Refused(binder.Binder):
        def __init__(self, *args):
            raise NotGeneric("refused")
    monkeypatch.setattr(binder, "Binder", Refused)
    cell = gn.rnn.lstm_cell(3, 5).float64()
    plan = gn.compile(cell)
    for B in (6, 4, 7, 3, 12):
        xs, gs = lstm_inputs(B, 2)
        got = fwd_bwd(plan, cell, xs, gs)
        want = fwd_bwd(gn.compile(cell), cell, xs, gs)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), B
        assert not plan.stats()["numbers_only"]
    st = plan.stats()
    assert st["compiles"] == 3 and st["batch_sizes_bound"] == 3 and st["not_bound"] == ["NotGeneric: refused"]

"""Batch sizes: a signature compiles for two sizes (and a probe), every further size binds; results equal a fresh
compile at that size; what a plan keeps is bounded."""
import gc
import weakref

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.compile import generic
from graphnet.compile.generic import Generic, NotGeneric, fit
from graphnet.compile.lower import lower

V, H, T = 7, 6, 4


def char_rnn():
    """An unrolled LSTM with dropout and a mean loss per step: row blocks k·B, masks of B rows, 1/B scales."""
    cell, head, drop = gn.rnn.lstm_cell(V, H), nn.Linear(H, V), nn.Dropout(0.3)
    logsoft, nll = nn.LogSoftMax(), nn.ClassNLLCriterion()
    xs, ts = [gn.Input((None, V)) for _ in range(T)], [gn.Input((None,)) for _ in range(T)]
    c0, h0 = gn.Input((None, H)), gn.Input((None, H))
    c, h, losses = c0, h0, []
    for t in range(T):
        c, h = cell(xs[t], c, h)
        losses.append(nll(logsoft(head(drop(h))), ts[t]))
    return gn.gModule(xs + ts + [c0, h0], [nn.CAddTable()(losses), c, h]).float64()


def batch(B, seed=0):
    r = np.random.default_rng(seed + B)
    return ([r.standard_normal((B, V)) for _ in range(T)] + [r.integers(0, V, B) for _ in range(T)]
            + [r.standard_normal((B, H)) for _ in range(2)])


def run_step(step, model, arrays):
    gn.manual_seed(3)
    out = step(*arrays)
    return [np.asarray(o) for o in out] + [p.grad.copy() for p in model.parameters()]


def test_a_batch_size_sweep_compiles_once_per_signature_and_matches_fresh_compiles():
    model = char_rnn()
    step = gn.compile_train_step(model)
    sizes = [16, 16, 16, 5, 9, 16, 3, 1, 12, 2, 7]          # epochs with a last short batch, then serving sizes
    for B in sizes:
        got = run_step(step, model, batch(B))
        want = run_step(gn.compile_train_step(model), model, batch(B))
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), B
    st = step.stats()
    # 16 compiled; 5 compiled with a probe at 21 and the fit checked; size 1 compiles alone (it broadcasts)
    assert st["compiles"] == 4 and st["signatures_generic"] == 1 and st["not_generic"] == []
    assert st["batch_sizes_bound"] == len(set(sizes)) - 3
    assert st["code_shared"], "size 7 runs the code compiled for the signature, bound to its own arrays"


def test_forward_and_backward_bind_new_batch_sizes_too(rng):
    cell = gn.rnn.lstm_cell(3, 4).float64()
    plan = gn.compile(cell)
    for B in (6, 2, 11, 4, 6, 25):
        xs = [rng.standard_normal((B, 3)), rng.standard_normal((B, 4)), rng.standard_normal((B, 4))]
        gs = [rng.standard_normal((B, 4)) for _ in range(2)]
        fresh = gn.compile(cell)
        for p in (plan, fresh):
            cell.zero_grad()
            outs = p.forward(*xs) + p.backward(*gs) + [q.grad.copy() for q in cell.parameters()]
            if p is plan:
                got = outs
        assert all(np.array_equal(a, b) for a, b in zip(got, outs)), B
    assert plan.stats()["compiles"] == 3 and plan.stats()["batch_sizes_bound"] == 3


def test_a_signature_that_is_not_generic_keeps_compiling_per_size(monkeypatch, rng):
    def refuse(self, p3, B3):
        raise NotGeneric(f"refused at B={B3}")
    monkeypatch.setattr(Generic, "check", refuse)
    cell = gn.rnn.lstm_cell(3, 4).float64()
    plan = gn.compile(cell)
    for B in (2, 3, 4, 5):
        xs = [rng.standard_normal((B, 3)), rng.standard_normal((B, 4)), rng.standard_normal((B, 4))]
        np.testing.assert_array_equal(plan.forward(*xs)[1], gn.compile(cell).forward(*xs)[1])
    st = plan.stats()
    assert st["compiles"] == 5 and st["batch_sizes_bound"] == 0, "2, 3 and the probe 5; then 4 and 5 alone"
    assert st["not_generic"] == ["NotGeneric: refused at B=5"]


def test_the_fit_takes_affine_integers_and_mean_scales_and_refuses_the_rest():
    f = fit((3, 2, 8), (3, 5, 17), 2, 5)                   # (3, B, 2 + 3B)
    assert generic._at(f, 7) == (3, 7, 23)
    assert generic._at(fit(1.0 / 8, 1.0 / 20, 2, 5), 7) == 1.0 / 28          # 1 / 4B, computed as graphnet does
    assert generic._at(fit(3 * (1.0 / 8), 3 * (1.0 / 20), 2, 5), 7) == 3 * (1.0 / 28)
    with pytest.raises(NotGeneric, match="not a \\+ b·B"):
        fit(4, 9, 2, 4)                                     # slope 5/2
    with pytest.raises(NotGeneric, match="differ in their values"):
        fit(np.arange(2.0), np.arange(3.0), 2, 3)
    np.testing.assert_array_equal(generic._at(fit(np.zeros((2, 3)), np.zeros((5, 3)), 2, 5), 4), np.zeros((4, 3)))


def test_a_fit_that_a_third_size_contradicts_is_refused():
    lstm, gru = gn.rnn.lstm_cell(3, 4).float64(), gn.rnn.gru_cell(3, 4).float64()

    def sig(B, n):
        return [((B, 3), np.dtype(np.float64))] + [((B, 4), np.dtype(np.float64))] * n
    g = Generic(lower(lstm, sig(2, 2)), 2, lower(lstm, sig(3, 2)), 3)
    assert g.check(lower(lstm, sig(5, 2)), 5) is g
    with pytest.raises(NotGeneric):
        g.check(lower(gru, sig(5, 1)), 5)
    with pytest.raises(NotGeneric, match="values at B=2"):
        Generic(lower(lstm, sig(2, 2)), 2, lower(gru, sig(3, 1)), 3)


def test_what_a_plan_keeps_is_bounded_over_many_batch_sizes(rng):
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).float64()
    plan = gn.compile(model)
    alive = []
    for B in range(2, 102):
        plan.forward(rng.standard_normal((B, 5)))
        alive.append(weakref.ref(plan._last[0]))
    gc.collect()
    st = plan.stats()
    assert st["executables"] == plan.max_executables == st["executables_bound"]
    assert st["executables_dropped"] == 100 - plan.max_executables
    assert sum(r() is not None for r in alive) <= plan.max_executables
    assert st["compiles"] == 3 and st["batch_sizes_bound"] == 98


def test_the_bytes_a_plan_keeps_are_bounded_too(rng):
    model = nn.Sequential(nn.Linear(5, 64), nn.Tanh(), nn.Linear(64, 2)).float64()
    plan = gn.compile(model)
    plan.max_bytes = 400_000
    for B in range(2, 60):
        plan.forward(rng.standard_normal((B, 5)))
        st = plan.stats()
        assert st["bytes_kept"] <= plan.max_bytes or st["executables"] == 1, B
    assert 1 < st["executables"] < plan.max_executables

"""Containers (torch7 nn semantics, 0-based dims): nesting, parameters, modes, use as graph nodes, run directly,
gradient checks."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.nn.containers import Concat, ConcatTable, Parallel, ParallelTable, Sequential
from graphnet.nn.conv import SpatialConvolution, SpatialMaxPooling
from graphnet.nn.norm import BatchNormalization
from graphnet.testing import gradcheck

from conftest import require_torch

TOL = 1e-6


def _check(module, arrays):
    errs = gradcheck(module, arrays)
    assert errs and all(v < TOL for v in errs.values()), f"{module.label()}: {errs}"


def _mlp():
    return Sequential().add(nn.Linear(3, 4)).add(nn.Tanh()).add(nn.Linear(4, 2))


def test_sequential_runs_its_members_in_order(rng):
    seq = _mlp().float64()
    x = rng.standard_normal((5, 3))
    l1, l2 = seq[0], seq[2]
    want = np.tanh(x @ l1.weight.data.T + l1.bias.data) @ l2.weight.data.T + l2.bias.data
    np.testing.assert_allclose(seq.forward(x), want, rtol=1e-12)
    assert len(seq) == 3 and seq.get(1) is seq[1] and list(seq)[2] is l2
    assert seq.parameters() == [l1.weight, l1.bias, l2.weight, l2.bias]
    _check(seq, [x])


def test_sequential_constructor_add_chaining_and_empty():
    a, b = nn.Linear(2, 2), nn.ReLU()
    s1, s2 = Sequential(a, b), Sequential().add(a).add(b)
    assert list(s1) == list(s2) == [a, b]
    x = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(Sequential().forward(x), x)     # an empty Sequential passes its input on
    assert bool(Sequential()) and len(Sequential()) == 0


def test_nesting_parameters_modes_and_dtype(rng):
    inner = Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    shared = nn.Linear(3, 3)
    outer = Sequential(inner, Concat(1, shared, Sequential(shared, nn.Tanh())), nn.Linear(6, 2))
    params = outer.parameters()
    assert len(params) == 2 + 2 + 2                        # the shared Linear counted once
    assert len({id(p) for p in params}) == len(params)
    assert outer.modules()[:3] == [outer, inner, inner[0]]
    outer.evaluate()
    assert not inner[1].train and not shared.train
    outer.training()
    assert inner[1].train
    outer.float64()
    assert all(p.data.dtype == np.float64 for p in params)
    flat_w, flat_g = outer.get_parameters()
    assert flat_w.size == sum(p.data.size for p in params)
    outer.evaluate()
    _check(outer, [rng.standard_normal((4, 3))])


def test_containers_as_graph_nodes(rng):
    x = gn.Input((None, 3), name="x")
    h = _mlp()(x)
    assert h.shape == (None, 2)
    a, b = ConcatTable(nn.Linear(2, 2), nn.Sigmoid())(h)          # a multi-output node unpacks
    y = ParallelTable(nn.Tanh(), nn.MulConstant(2.0))(a, b)
    z = nn.CAddTable()(y)                                           # the two outputs as one table
    model = gn.gModule([x], [z]).float64()
    seq = [n.module for n in model.order if isinstance(n.module, Sequential)][0]
    assert set(map(id, seq.parameters())) <= set(map(id, model.parameters()))
    assert len(model.parameters()) == 6
    xa = rng.standard_normal((4, 3))
    l1, l2 = seq[0], seq[2]
    hh = np.tanh(xa @ l1.weight.data.T + l1.bias.data) @ l2.weight.data.T + l2.bias.data
    lin = [n.module for n in model.order if isinstance(n.module, ConcatTable)][0][0]
    want = np.tanh(hh @ lin.weight.data.T + lin.bias.data) + 2.0 / (1.0 + np.exp(-hh))
    np.testing.assert_allclose(model.forward(xa), want, rtol=1e-12)
    _check(model, [xa])


def test_concat_table_and_parallel_table_run_directly(rng):
    x = rng.standard_normal((2, 3))
    ct = ConcatTable(nn.Identity(), nn.Square(), nn.MulConstant(-1.0))
    outs = ct.forward(x.astype(np.float32))
    assert len(outs) == 3
    np.testing.assert_allclose(outs[1], (x ** 2).astype(np.float32), rtol=1e-6)
    _check(ct, [x])
    pt = ParallelTable(nn.Tanh(), nn.Sigmoid())
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4,))
    ya, yb = pt.float64().forward([a, b])
    np.testing.assert_allclose(ya, np.tanh(a))
    np.testing.assert_allclose(yb, 1.0 / (1.0 + np.exp(-b)))
    _check(pt, [a, b])
    # a table member inside a ConcatTable takes the same several inputs
    both = ConcatTable(nn.CAddTable(), nn.CMulTable())
    s, p = both.float64().forward([a, a.copy()])
    np.testing.assert_allclose(s, 2 * a)
    np.testing.assert_allclose(p, a * a)


def test_concat_joins_along_a_0_based_dim(rng):
    x = rng.standard_normal((2, 3, 4))
    c = Concat(1, nn.Identity(), nn.MulConstant(3.0)).float64()
    np.testing.assert_allclose(c.forward(x), np.concatenate([x, 3 * x], axis=1))
    assert c.forward(x).shape == (2, 6, 4)
    _check(Concat(2, nn.Linear(4, 2), nn.Tanh()), [x])


def test_parallel_selects_along_input_dim_and_joins_along_output_dim(rng):
    x = rng.standard_normal((2, 3, 4))
    par = Parallel(1, 1).add(nn.Identity()).add(nn.MulConstant(2.0)).add(nn.Square()).float64()
    y = par.forward(x)
    np.testing.assert_allclose(y, np.concatenate([x[:, 0], 2 * x[:, 1], x[:, 2] ** 2], axis=1))
    assert y.shape == (2, 12)
    _check(Parallel(0, 0, nn.Linear(4, 4), nn.Tanh()), [rng.standard_normal((2, 3, 4))])
    # torch7: members take the first slices; extra slices are ignored
    two = Parallel(2, 0, nn.Identity(), nn.Identity()).float64()
    np.testing.assert_allclose(two.forward(x), np.concatenate([x[:, :, 0], x[:, :, 1]], axis=0))


def test_convnet_in_a_sequential_matches_torch_sequential(rng):
    torch = require_torch()
    seq = Sequential(SpatialConvolution(2, 4, 3, 3, 1, 1, 1, 1), BatchNormalization(4), nn.ReLU(),
                     SpatialMaxPooling(2, 2), nn.View(-1, 4 * 3 * 3), nn.Linear(36, 5)).float64()
    tseq = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(36, 5)).double()
    with torch.no_grad():
        for p, tp in zip(seq.parameters(), tseq.parameters()):
            tp[...] = torch.tensor(p.data)
    x = rng.standard_normal((3, 2, 6, 6))
    g = rng.standard_normal((3, 5))
    seq.zero_grad_parameters()
    y = seq.forward(x)
    gx = seq.backward(x, g)
    tx = torch.tensor(x, requires_grad=True)
    ty = tseq(tx)
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for p, tp in zip(seq.parameters(), tseq.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-9, atol=1e-12)
    seq.evaluate()
    tseq.eval()
    np.testing.assert_allclose(seq.forward(x), tseq(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-12)


def test_errors():
    with pytest.raises(gn.GraphError, match="takes a module"):
        Sequential().add(3)
    with pytest.raises(gn.GraphError, match=r"ParallelTable\(2\) takes 2 input nodes, got 3"):
        ParallelTable(nn.Tanh(), nn.Tanh())(gn.Input(), gn.Input(), gn.Input())
    with pytest.raises(gn.GraphError, match="has no members"):
        ConcatTable()(gn.Input((2, 3)))
    with pytest.raises(gn.ShapeError, match="3 members need at least as many slices"):
        Parallel(1, 1, nn.Tanh(), nn.Tanh(), nn.Tanh())(gn.Input((4, 2)))
    with pytest.raises(gn.GraphError, match="gives 2 outputs"):
        Concat(1, ConcatTable(nn.Tanh(), nn.Tanh()))(gn.Input((4, 2)))
    with pytest.raises(gn.GraphError, match="takes 2 input"):
        Sequential(nn.Tanh(), nn.CSubTable())(gn.Input((4, 2)))


def test_repr_lists_members():
    s = Sequential(nn.Linear(2, 3), Sequential(nn.ReLU()))
    assert repr(s) == ("Sequential {\n  (0): Linear(2 -> 3)\n  (1): Sequential {\n    (0): ReLU\n  }\n}")
    assert s.label() == "Sequential(2)"
    assert Concat(1, nn.Tanh()).label() == "Concat(1; 1)"

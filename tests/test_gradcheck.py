"""Every module's backward against central finite differences in float64, over random shapes."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import graphnet as gn
from graphnet import nn, ops
from graphnet.module import Module
from graphnet.testing import gradcheck

TOL = 1e-6


def _check(module, arrays):
    errs = gradcheck(module, arrays)
    assert errs, "nothing was checked"
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, f"{module.label()}: gradient errors {bad}"


def _pos(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def _away_from_zero(rng, shape):
    x = rng.uniform(0.2, 1.5, shape)
    return x * rng.choice([-1.0, 1.0], shape)


# (factory, list of input makers (rng, batch) -> array)
UNARY = [
    (lambda: nn.Tanh(), None), (lambda: nn.Sigmoid(), None), (lambda: nn.ReLU(), _away_from_zero),
    (lambda: nn.LeakyReLU(0.1), _away_from_zero), (lambda: nn.ELU(0.7), _away_from_zero),
    (lambda: nn.SoftPlus(), None), (lambda: nn.SoftPlus(2.0, 1.0), _away_from_zero),
    (lambda: nn.Threshold(0.1, -2.0), _away_from_zero), (lambda: nn.HardTanh(-0.5, 0.5), None),
    (lambda: nn.Exp(), None), (lambda: nn.Log(), _pos), (lambda: nn.Square(), None), (lambda: nn.Sqrt(), _pos),
    (lambda: nn.Abs(), _away_from_zero), (lambda: nn.Power(3), None), (lambda: nn.Power(-1.5), _pos),
    (lambda: nn.MulConstant(-2.5), None), (lambda: nn.AddConstant(3.0), None), (lambda: nn.Identity(), None),
    (lambda: nn.SoftMax(), None), (lambda: nn.LogSoftMax(), None), (lambda: nn.SoftMax(0), None),
    (lambda: nn.Dropout(0.0), None), (lambda: nn.Mul(), None),
]


def _hardtanh_safe(rng, shape):
    x = rng.uniform(-1, 1, shape)
    return np.where(np.abs(np.abs(x) - 0.5) < 0.05, 0.2, x)


@pytest.mark.parametrize("factory,maker", UNARY, ids=lambda v: getattr(v, "__name__", "") if callable(v) else "")
@given(shape=st.sampled_from([(3,), (2, 3), (2, 3, 2)]))
def test_unary_modules(factory, maker, shape):
    rng = np.random.default_rng(0)
    m = factory()
    if isinstance(m, nn.HardTanh):
        maker = _hardtanh_safe
    if isinstance(m, nn.Threshold):
        maker = lambda r, s: np.where(np.abs(_away_from_zero(r, s) - 0.1) < 0.05, 1.0, _away_from_zero(r, s))
    x = (maker or (lambda r, s: r.standard_normal(s)))(rng, shape)
    _check(m, [x])


BROADCAST_PAIRS = [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((3,), (2, 3)), ((2, 3, 2), (3, 1)),
                   ((1,), (2, 2))]


@pytest.mark.parametrize("factory", [nn.CAddTable, nn.CSubTable, nn.CMulTable, nn.CDivTable, nn.CMaxTable,
                                     nn.CMinTable])
@given(shapes=st.sampled_from(BROADCAST_PAIRS))
def test_binary_tables_broadcast(factory, shapes):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shapes[0])
    b = _away_from_zero(rng, shapes[1]) if factory is nn.CDivTable else rng.standard_normal(shapes[1])
    _check(factory(), [a, b])


def test_three_way_tables():
    rng = np.random.default_rng(2)
    for f in (nn.CAddTable, nn.CMulTable, nn.CMaxTable):
        _check(f(), [rng.standard_normal((2, 3)) for _ in range(3)])


@given(n=st.integers(1, 4), i=st.integers(1, 4), o=st.integers(1, 4), bias=st.booleans())
def test_linear(n, i, o, bias):
    rng = np.random.default_rng(3)
    _check(nn.Linear(i, o, bias=bias), [rng.standard_normal((n, i))])


def test_linear_vector_and_3d():
    rng = np.random.default_rng(4)
    _check(nn.Linear(3, 2), [rng.standard_normal(3)])
    _check(nn.Linear(3, 2), [rng.standard_normal((2, 4, 3))])


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_mm(ta, tb):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 3) if ta else (3, 4))
    b = rng.standard_normal((2, 4) if tb else (4, 2))
    _check(nn.MM(ta, tb), [a, b])
    _check(nn.MM(ta, tb), [rng.standard_normal((2,) + a.shape), rng.standard_normal((2,) + b.shape)])


def test_mm_broadcast_batch():
    rng = np.random.default_rng(6)
    _check(nn.MM(), [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))])
    _check(nn.MM(False, True), [rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4))])
    _check(nn.MM(), [rng.standard_normal((3, 4)), rng.standard_normal((2, 4, 5))])


def test_add_bias():
    rng = np.random.default_rng(7)
    _check(nn.Add(3), [rng.standard_normal((2, 3))])
    _check(nn.Add(1, scalar=True), [rng.standard_normal((2, 3))])


@given(shape=st.sampled_from([(4, 5), (3, 6, 2)]), dim=st.integers(0, 1), data=st.data())
def test_narrow_select(shape, dim, data):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape)
    start = data.draw(st.integers(0, shape[dim] - 1))
    length = data.draw(st.integers(1, shape[dim] - start))
    _check(nn.Narrow(dim, start, length), [x])
    _check(nn.Narrow(dim, -1 - start, 1), [x])
    _check(nn.Narrow(dim, start, -1), [x])
    _check(nn.Select(dim, start), [x])


def test_shape_modules():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 4))
    for m in (nn.Reshape(4, 3), nn.Reshape(12), nn.View(-1, 6), nn.View(4, 6), nn.Transpose(0, 2),
              nn.Transpose(1, -1), nn.Sum(1), nn.Sum(2, True), nn.Mean(0), nn.Mean(-1), nn.Max(1), nn.Max(2, True),
              nn.Replicate(3, 1), nn.Replicate(2, 0), nn.Unsqueeze(1), nn.Padding(1, 2), nn.Padding(2, -1, 0.5)):
        _check(m, [x])
    _check(nn.Squeeze(), [rng.standard_normal((2, 1, 3))])
    _check(nn.Squeeze(1), [rng.standard_normal((2, 1, 3))])


def test_join_split_tables():
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    _check(nn.JoinTable(1), [a, b])
    _check(nn.JoinTable(0), [rng.standard_normal((1, 3)), rng.standard_normal((2, 3))])
    _check(nn.SplitTable(1), [rng.standard_normal((2, 3))])
    _check(nn.SelectTable(1), [a, b])
    _check(nn.NarrowTable(0, 2), [a, b, a.copy()])


def test_lookup_table():
    rng = np.random.default_rng(11)
    idx = np.array([[0, 2, 2], [4, 1, 0]])
    _check(nn.LookupTable(5, 3), [idx])


@pytest.mark.parametrize("crit,target", [
    (nn.MSECriterion, "float"), (nn.AbsCriterion, "float"), (nn.SmoothL1Criterion, "float"),
    (nn.BCECriterion, "prob"), (nn.ClassNLLCriterion, "class"), (nn.CrossEntropyCriterion, "class"),
])
@pytest.mark.parametrize("size_average", [True, False])
def test_criterions(crit, target, size_average):
    rng = np.random.default_rng(12)
    if target == "class":
        x = rng.standard_normal((4, 3))
        t = np.array([0, 2, 1, 2])
    elif target == "prob":
        x, t = rng.uniform(0.1, 0.9, (4, 3)), rng.uniform(0, 1, (4, 3))
    else:
        x, t = rng.standard_normal((4, 3)) * 2, rng.standard_normal((4, 3)) * 2
        x = np.where(np.abs(x - t) - 1 < 0.05, x + 0.3, x) if crit is nn.SmoothL1Criterion else x
    errs = gradcheck(crit(size_average=size_average), [x, t])
    assert all(v < TOL for v in errs.values()), errs
    if target != "class":
        assert "input 1" in errs       # a float target gets its true gradient


def test_graph_with_fanout_sharing_and_nesting():
    rng = np.random.default_rng(13)
    x = gn.Input()
    lin = nn.Linear(3, 3)
    h1 = nn.Tanh()(lin(x))
    h2 = lin(h1)                                     # shared weights: gradients add up
    y = h1 * h2 + nn.Sigmoid()(h1)                   # fan-out of h1
    inner = gn.gModule([x], [y])
    z = gn.Input()
    outer = gn.gModule([z], [inner(inner(z)), nn.Sum(1)(z)])
    _check(outer, [rng.standard_normal((2, 3))])


class _OffByAThousandth(ops.Tanh):
    def vjp(self, b, g, y, x):
        (gx,) = super().vjp(b, g, y, x)
        return (b(ops.Scale(1.001), gx),)


class _BadTanh(Module):
    def lower(self, b, x):
        return b(_OffByAThousandth(), x)


def test_checker_rejects_vjp_off_by_a_thousandth():
    rng = np.random.default_rng(14)
    errs = gradcheck(_BadTanh(), [rng.standard_normal((3, 4))])
    assert errs["input 0"] > 10 * TOL
    good = gradcheck(nn.Tanh(), [rng.standard_normal((3, 4))])
    assert good["input 0"] < TOL

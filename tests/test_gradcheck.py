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


def test_one_array_given_for_several_inputs():
    # the checker perturbs its own copy of each input: the same array object passed twice is two inputs
    rng = np.random.default_rng(16)
    a = rng.standard_normal((2, 3))
    errs = gradcheck(nn.CMulTable(), [a, a, a])
    assert set(errs) == {"input 0", "input 1", "input 2"} and all(v < TOL for v in errs.values()), errs


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
    _check(nn.FlattenTable(), [a, b])


def test_lookup_table():
    idx = np.array([[0, 2, 2], [4, 1, 0]])
    _check(nn.LookupTable(5, 3), [idx])


@pytest.mark.parametrize("crit,target", [
    (nn.MSECriterion, "float"), (nn.AbsCriterion, "float"), (nn.SmoothL1Criterion, "float"),
    (nn.BCECriterion, "prob"), (nn.ClassNLLCriterion, "class"), (nn.CrossEntropyCriterion, "class"),
])
@pytest.mark.parametrize("size_average", [True, False])
@given(n=st.integers(1, 4), k=st.integers(2, 4), seed=st.integers(0, 2 ** 16))
def test_criterions(crit, target, size_average, n, k, seed):
    rng = np.random.default_rng(seed)
    if target == "class":
        x = rng.standard_normal((n, k))
        t = rng.integers(0, k, n)
    elif target == "prob":
        x, t = rng.uniform(0.1, 0.9, (n, k)), rng.uniform(0, 1, (n, k))
    else:
        x, t = rng.standard_normal((n, k)) * 2, rng.standard_normal((n, k)) * 2
        x = np.where(np.abs(x - t) - 1 < 0.05, x + 0.3, x) if crit is nn.SmoothL1Criterion else x
    errs = gradcheck(crit(size_average=size_average), [x, t])
    assert all(v < TOL for v in errs.values()), errs
    if target != "class":
        assert "input 1" in errs       # a float target gets its true gradient


def _fan_out_graph():
    x = gn.Input()
    lin = nn.Linear(3, 3)
    h1 = nn.Tanh()(lin(x))
    h2 = lin(h1)                                     # shared weights: gradients add up
    y = h1 * h2 + nn.Sigmoid()(h1)                   # fan-out of h1
    inner = gn.gModule([x], [y])
    z = gn.Input()
    return gn.gModule([z], [inner(inner(z)), nn.Sum(1)(z)])


def test_graph_with_fanout_sharing_and_nesting():
    rng = np.random.default_rng(13)
    _check(_fan_out_graph(), [rng.standard_normal((2, 3))])


class _OffByAThousandth(ops.Tanh):
    def vjp(self, b, g, y, x):
        (gx,) = super().vjp(b, g, y, x)
        return (b(ops.Scale(1.001), gx),)


class _BadTanh(Module):
    def lower(self, b, x):
        return b(_OffByAThousandth(), x)


class _OffByAThousandthMul(ops.Mul):
    def vjp(self, b, g, y, x1, x2):
        ga, gb = super().vjp(b, g, y, x1, x2)
        return ga, b(ops.Scale(1.001), gb)


class _BadBroadcastMul(Module):
    arity = 2

    def lower(self, b, x1, x2):
        return b(_OffByAThousandthMul(), x1, x2)


def test_checker_rejects_a_broadcast_vjp_off_by_a_thousandth():
    # the error hides in the gradient of the broadcast operand, summed over the rows
    rng = np.random.default_rng(15)
    a, w = rng.standard_normal((4, 3)), rng.standard_normal(3)
    errs = gradcheck(_BadBroadcastMul(), [a, w])
    assert errs["input 0"] < TOL and errs["input 1"] > 10 * TOL


def test_checker_rejects_vjp_off_by_a_thousandth():
    rng = np.random.default_rng(14)
    errs = gradcheck(_BadTanh(), [rng.standard_normal((3, 4))])
    assert errs["input 0"] > 10 * TOL
    good = gradcheck(nn.Tanh(), [rng.standard_normal((3, 4))])
    assert good["input 0"] < TOL


# --- broadcasting and fan-out, over random shapes ---------------------------------------------------------------

@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast against each other: a common shape, each side with some leading dims dropped
    and some dims set to 1 (0-d scalars included)."""
    full = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))
    out = []
    for _ in range(2):
        lead = draw(st.integers(0, len(full)))
        ones = draw(st.lists(st.booleans(), min_size=len(full) - lead, max_size=len(full) - lead))
        out.append(tuple(1 if o else d for d, o in zip(full[lead:], ones)))
    return tuple(out)


@pytest.mark.parametrize("factory", [nn.CAddTable, nn.CSubTable, nn.CMulTable, nn.CDivTable, nn.CMaxTable,
                                     nn.CMinTable])
@given(shapes=broadcast_pair(), seed=st.integers(0, 2 ** 16))
def test_binary_tables_random_broadcast_shapes(factory, shapes, seed):
    rng = np.random.default_rng(seed)
    a = _away_from_zero(rng, shapes[0])
    b = _away_from_zero(rng, shapes[1])
    if factory in (nn.CMaxTable, nn.CMinTable):      # no near-ties: max/min are not differentiable there
        a = 0.2 * rng.integers(-5, 5, shapes[0]) + rng.uniform(0, 0.02, shapes[0])
        b = 0.2 * rng.integers(-5, 5, shapes[1]) + 0.1 + rng.uniform(0, 0.02, shapes[1])
    _check(factory(), [a, b])


@pytest.mark.parametrize("factory", [nn.CAddTable, nn.CSubTable, nn.CMulTable, nn.CDivTable])
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2 ** 16))
def test_fan_out_one_node_feeds_both_sides(factory, shape, seed):
    # x feeds the op twice, once directly and once through a broadcasting reduction: the gradients add up
    rng = np.random.default_rng(seed)
    x = gn.Input()
    s = nn.Sum(0, True)(x)
    y = factory()(x, nn.Exp()(x))
    z = factory()(s, x)
    g = gn.gModule([x], [y, z, factory()(x, x) if factory is not nn.CSubTable else nn.CMulTable()(x, x)])
    _check(g, [_away_from_zero(rng, shape)])


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2 ** 16))
def test_fan_out_through_many_consumers(shape, seed):
    rng = np.random.default_rng(seed)
    x = gn.Input()
    h = nn.Tanh()(x)
    parts = [nn.Square()(h), nn.Sigmoid()(h), h * h, nn.MulConstant(3.0)(h), nn.Abs()(nn.AddConstant(2.0)(h))]
    y = nn.CAddTable()(parts)
    _check(gn.gModule([x], [y, h]), [rng.standard_normal(shape)])


# --- the remaining modules: randomness, convolution, normalisation, containers ------------------------------

class _CastRoundTrip(Module):
    """y = x cast to the other float type and back (no module uses Cast on its own: checked here)."""

    def lower(self, b, x):
        wide = b(ops.Cast(np.longdouble), x)
        return b(ops.Mul(), b(ops.Cast(x.dtype), wide), x)


def _bn(train):
    m = nn.BatchNormalization(3)
    r = np.random.default_rng(20)
    m.weight.data[...] = r.uniform(0.5, 1.5, 3)
    m.bias.data[...] = r.uniform(-0.5, 0.5, 3)
    m.running_mean = r.standard_normal(3)
    m.running_var = r.uniform(0.5, 2.0, 3)
    return m if train else m.evaluate()


def _distinct(rng, shape):
    """Values with no near-ties (max pooling's gradient must not jump under finite differences)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) + rng.uniform(0.1, 0.4, shape)) / n


# (id, factory, input makers (rng) -> array, reseed): each checked by test_other_modules and lowered by
# test_every_primitive_op_is_gradient_checked
OTHERS = [
    ("dropout_eval", lambda: nn.Dropout(0.5).evaluate(), [lambda r: r.standard_normal((3, 4))], None),
    ("dropout_train_seeded", lambda: nn.Dropout(0.5).training(), [lambda r: r.standard_normal((3, 4))], 7),
    ("dropout_train_3d", lambda: nn.Dropout(0.2).training(), [lambda r: r.standard_normal((2, 3, 2))], 8),
    ("conv", lambda: nn.SpatialConvolution(2, 2, 2, 2, 1, 1, 1, 0), [lambda r: r.standard_normal((1, 2, 3, 3))],
     None),
    ("max_pool", lambda: nn.SpatialMaxPooling(2, 2, 1, 1), [lambda r: _distinct(r, (1, 2, 3, 3))], None),
    ("avg_pool_excl_pad", lambda: nn.SpatialAveragePooling(2, 2, 1, 1, 1, 1, count_include_pad=False),
     [lambda r: r.standard_normal((1, 1, 3, 3))], None),
    ("batchnorm_train", lambda: _bn(True), [lambda r: r.standard_normal((4, 3))], None),
    ("batchnorm_eval", lambda: _bn(False), [lambda r: r.standard_normal((4, 3))], None),
    ("layernorm", lambda: nn.LayerNorm(3), [lambda r: r.standard_normal((2, 3))], None),
    ("sequential", lambda: nn.Sequential(nn.Linear(3, 2), nn.Tanh()), [lambda r: r.standard_normal((2, 3))], None),
    ("concat_table", lambda: nn.ConcatTable(nn.Linear(3, 2), nn.Sigmoid()), [lambda r: r.standard_normal((2, 3))],
     None),
    ("parallel_table", lambda: nn.ParallelTable(nn.Tanh(), nn.Square()),
     [lambda r: r.standard_normal((2, 3)), lambda r: r.standard_normal((2, 2))], None),
    ("concat", lambda: nn.Concat(1, nn.Linear(3, 2), nn.Tanh()), [lambda r: r.standard_normal((2, 3))], None),
    ("parallel", lambda: nn.Parallel(1, 0, nn.Linear(2, 3), nn.Tanh()), [lambda r: r.standard_normal((2, 2))],
     None),
    ("split_table", lambda: nn.SplitTable(0), [lambda r: r.standard_normal((3, 2))], None),
    ("cast", lambda: _CastRoundTrip(), [lambda r: r.standard_normal((2, 3))], None),
    ("class_nll_one_sample", lambda: nn.ClassNLLCriterion(), [lambda r: r.standard_normal(4),
                                                               lambda r: np.array(2)], None),
]


@pytest.mark.parametrize("name,factory,makers,reseed", OTHERS, ids=[c[0] for c in OTHERS])
def test_other_modules(name, factory, makers, reseed):
    rng = np.random.default_rng(21)
    m = factory()
    errs = gradcheck(m, [mk(rng) for mk in makers], reseed=reseed)
    assert errs and all(v < TOL for v in errs.values()), f"{name}: {errs}"


def test_dropout_in_training_really_masks_and_the_seed_fixes_the_mask():
    # without this, the seeded gradient check above could pass on an identity
    x = np.ones((50, 40))
    m = nn.Dropout(0.5).float64().training()
    gn.manual_seed(3)
    a = m.forward(x)
    gn.manual_seed(3)
    b = m.forward(x)
    assert np.array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 2.0}
    assert 0.3 < (a == 0).mean() < 0.7
    assert np.array_equal(m.evaluate().forward(x), x)


def test_checker_rejects_an_unseeded_random_module():
    # the same Dropout without reseeding draws a new mask per run: finite differences see noise
    rng = np.random.default_rng(22)
    errs = gradcheck(nn.Dropout(0.5).training(), [rng.standard_normal((4, 5))])
    assert errs["input 0"] > 10 * TOL


# --- every primitive op is exercised ----------------------------------------------------------------------------

def _op_classes():
    """Every concrete op class defined in graphnet.ops (abstract bases excluded)."""
    import inspect
    import pkgutil
    import importlib
    from graphnet.ops import base, elementwise, leaf, reduce
    abstract = {base.Op, elementwise.Binary, elementwise.Unary, leaf.Leaf, reduce.Reduce}
    out = set()
    for info in pkgutil.iter_modules(ops.__path__):
        mod = importlib.import_module(f"graphnet.ops.{info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, base.Op) and cls.__module__ == mod.__name__ and cls not in abstract \
                    and not cls.__name__.startswith("_"):
                out.add(cls)
    return out


def _checked_cases(rng):
    """(module, arrays) for one representative of every gradient check in this file."""
    sh = (2, 3)
    for factory, maker in UNARY:
        yield factory(), [(maker or (lambda r, s: r.standard_normal(s)))(rng, sh)]
    for factory in (nn.CAddTable, nn.CSubTable, nn.CMulTable, nn.CDivTable, nn.CMaxTable, nn.CMinTable):
        yield factory(), [rng.standard_normal((2, 3)), rng.uniform(1, 2, (3,))]
    yield nn.CAddTable(), [rng.standard_normal(sh) for _ in range(3)]
    yield nn.Linear(3, 2), [rng.standard_normal(3)]
    yield nn.MM(True, True), [rng.standard_normal((2, 4, 3)), rng.standard_normal((5, 4))]
    yield nn.MM(), [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))]
    yield nn.Add(3), [rng.standard_normal(sh)]
    yield nn.Narrow(1, 0, 2), [rng.standard_normal(sh)]
    yield nn.Select(1, 1), [rng.standard_normal(sh)]
    for m in (nn.Reshape(4, 3), nn.View(-1, 6), nn.Transpose(0, 2), nn.Sum(1), nn.Mean(0), nn.Max(1),
              nn.Replicate(3, 1), nn.Unsqueeze(1), nn.Padding(1, 2), nn.Contiguous()):
        yield m, [rng.standard_normal((2, 3, 4))]
    yield nn.Squeeze(), [rng.standard_normal((2, 1, 3))]
    yield nn.JoinTable(1), [rng.standard_normal(sh), rng.standard_normal(sh)]
    yield nn.SelectTable(1), [rng.standard_normal(sh), rng.standard_normal(sh)]
    yield nn.NarrowTable(0, 2), [rng.standard_normal(sh) for _ in range(3)]
    yield nn.FlattenTable(), [rng.standard_normal(sh) for _ in range(3)]
    yield nn.LookupTable(5, 3), [np.array([[0, 2, 2], [4, 1, 0]])]
    for crit in (nn.MSECriterion, nn.AbsCriterion, nn.SmoothL1Criterion, nn.BCECriterion):
        yield crit(), [rng.uniform(0.1, 0.9, (4, 3)), rng.uniform(0.1, 0.9, (4, 3))]
    for crit in (nn.ClassNLLCriterion, nn.CrossEntropyCriterion):
        yield crit(), [rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])]
    for _, factory, makers, _ in OTHERS:
        yield factory(), [mk(rng) for mk in makers]
    yield _fan_out_graph(), [rng.standard_normal((2, 3))]
    yield _NumpyScaleAdd(3), [rng.standard_normal(sh), rng.standard_normal(sh)]


class _NumpyScaleAdd(gn.Module):
    """y = x * w + z, torch7-style in numpy: the opaque forward, input-gradient and parameter-gradient steps."""

    def __init__(self, n):
        super().__init__()
        self.weight = gn.Parameter(np.linspace(0.5, 1.5, n))

    def update_output(self, x, z):
        return x * self.weight.data + z

    def update_grad_input(self, x, z, grad_output):
        return [grad_output * self.weight.data, grad_output]

    def acc_grad_parameters(self, x, z, grad_output):
        self.weight.grad += (grad_output * x).sum(0)


def test_numpy_module_gradients():
    rng = np.random.default_rng(12)
    _check(_NumpyScaleAdd(3), [rng.standard_normal((2, 3)), rng.standard_normal((2, 3))])


def test_every_primitive_op_is_gradient_checked():
    rng = np.random.default_rng(23)
    seen = set()
    for module, arrays in _checked_cases(rng):
        module.float64()
        seen |= gn.testing.lowered_ops(module, [a.astype(np.float64) if a.dtype.kind == "f" else a
                                                for a in arrays])
    all_ops = _op_classes()
    assert len(all_ops) > 40                                # the enumeration itself found the ops
    missing = sorted(c.__name__ for c in all_ops - seen)
    assert not missing, f"primitive ops no gradient check reaches: {missing}"


def test_every_module_in_graphnet_nn_is_gradient_checked():
    rng = np.random.default_rng(24)
    seen = {type(m) for m, _ in _checked_cases(rng)}
    import inspect
    public = {c for _, c in inspect.getmembers(nn, inspect.isclass)
              if issubclass(c, Module) and c not in (Module, nn.Criterion, nn.Container, gn.gModule)}
    missing = sorted(c.__name__ for c in public - seen)
    assert not missing, f"modules without a gradient check here: {missing}"


def test_optimized_plans_differentiate_every_case_too():
    # the same checks through the level-2 pipeline (its passes rewrite forward and backward together)
    rng = np.random.default_rng(25)
    failures = {}
    for module, arrays in _checked_cases(rng):
        reseed = 7 if isinstance(module, nn.Dropout) else None
        errs = gradcheck(module, arrays, level=2, reseed=reseed)
        bad = {k: v for k, v in errs.items() if not v < TOL}
        if bad or not errs:
            failures[module.label()] = bad
    assert not failures, failures

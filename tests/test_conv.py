"""SpatialConvolution, SpatialMaxPooling, SpatialAveragePooling and the Im2Col/Col2Im ops under them:
finite-difference gradient checks in float64, forward and backward against torch.nn.functional, shapes, errors."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.compile.lower import lower
from graphnet.module import Module
from graphnet.nn.conv import SpatialAveragePooling, SpatialConvolution, SpatialMaxPooling
from graphnet.ops import MatMul
from graphnet.ops.conv import Col2Im, Im2Col
from graphnet.testing import gradcheck

from conftest import require_torch

TOL = 1e-6

# (c_in, c_out, kh, kw, sh, sw, ph, pw, H, W): square and odd kernels, strides, paddings, odd sizes
CONV_CASES = [
    (1, 1, 1, 1, 1, 1, 0, 0, 3, 3),
    (2, 3, 3, 3, 1, 1, 0, 0, 5, 5),
    (2, 3, 3, 2, 2, 1, 1, 0, 7, 6),
    (3, 2, 2, 3, 1, 2, 0, 1, 5, 7),
    (1, 2, 3, 3, 2, 2, 1, 1, 6, 5),
    (2, 2, 5, 3, 3, 2, 2, 1, 9, 4),
    (2, 1, 4, 4, 3, 3, 2, 2, 5, 5),
]

# (kh, kw, sh, sw, ph, pw, H, W) for pooling (padding at most half the kernel, as torch requires)
POOL_CASES = [
    (2, 2, None, None, 0, 0, 4, 6),
    (2, 2, None, None, 0, 0, 5, 7),
    (3, 3, 2, 2, 1, 1, 7, 6),
    (3, 2, 1, 1, 0, 1, 5, 4),
    (2, 3, 1, 2, 1, 1, 5, 8),
    (3, 3, 3, 3, 1, 0, 8, 7),
]


def _check(module, arrays):
    errs = gradcheck(module, arrays)
    assert errs and all(v < TOL for v in errs.values()), f"{module.label()}: {errs}"


def _distinct(rng, shape):
    """Random values with no near-ties (so max pooling's gradient is stable under finite differences)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) + rng.uniform(0.1, 0.4, shape)) / n


# --- gradient checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradcheck(case):
    ci, co, kh, kw, sh, sw, ph, pw, h, w = case
    rng = np.random.default_rng(0)
    _check(SpatialConvolution(ci, co, kh, kw, sh, sw, ph, pw), [rng.standard_normal((2, ci, h, w))])


def test_conv_gradcheck_without_bias_and_on_one_image():
    rng = np.random.default_rng(1)
    conv = SpatialConvolution(2, 3, 3, 2, 1, 2, 1, 1, bias=False)
    assert len(conv.parameters()) == 1
    _check(conv, [rng.standard_normal((1, 2, 4, 5))])
    _check(SpatialConvolution(2, 3, 3, 3, 2, 2, 1, 1), [rng.standard_normal((2, 5, 5))])     # CHW input


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("cls", [SpatialMaxPooling, SpatialAveragePooling])
def test_pooling_gradcheck(cls, case):
    kh, kw, sh, sw, ph, pw, h, w = case
    rng = np.random.default_rng(2)
    _check(cls(kh, kw, sh, sw, ph, pw), [_distinct(rng, (2, 3, h, w))])


def test_average_pooling_excluding_padding_gradcheck():
    rng = np.random.default_rng(3)
    _check(SpatialAveragePooling(3, 3, 2, 2, 1, 1, count_include_pad=False), [rng.standard_normal((2, 2, 5, 6))])


class _Col2ImModule(Module):
    """Col2Im alone, to check its own VJP (which is Im2Col)."""

    def lower(self, b, g):
        return b(Col2Im(3, 2, 2, 1, 1, 0, 2, 5, 4), g)


def test_col2im_gradcheck_and_adjointness():
    rng = np.random.default_rng(4)
    im2col = Im2Col(3, 2, 2, 1, 1, 0)
    x = rng.standard_normal((2, 2, 5, 4))
    cols = im2col.forward(x)
    assert cols.shape == (2 * 3 * 3, 2 * 3 * 2)
    g = rng.standard_normal(cols.shape)
    back = Col2Im(3, 2, 2, 1, 1, 0, 2, 5, 4).forward(g)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * g), np.sum(x * back), rtol=1e-12)   # <Ax, g> = <x, A^T g>
    _check(_Col2ImModule(), [g])


def test_im2col_rows_are_windows():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    cols = Im2Col(2, 3, 2, 1).forward(x)              # OH = 2, OW = 3
    # row (n=1, i=1, j=2) is x[1, :, 2:4, 2:5] flattened as (c, u, v)
    np.testing.assert_array_equal(cols[1 * 6 + 1 * 3 + 2], x[1, :, 2:4, 2:5].ravel())


# --- against torch -----------------------------------------------------------------------------------------

def _torch_grads(torch, fn, x, g, *params):
    tx = torch.tensor(x, requires_grad=True)
    tps = [torch.tensor(p, requires_grad=True) for p in params]
    ty = fn(tx, *tps)
    (ty * torch.tensor(g)).sum().backward()
    return ty.detach().numpy(), tx.grad.numpy(), [p.grad.numpy() for p in tps]


def _run(module, x, g, level):
    module.float64()
    module.zero_grad_parameters()
    plan = gn.compile(module, level=level)
    y = plan.forward(x)
    gx = plan.backward(g)
    return y, gx


@pytest.mark.parity
@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_torch(case, level):
    torch = require_torch()
    ci, co, kh, kw, sh, sw, ph, pw, h, w = case
    rng = np.random.default_rng(5)
    conv = SpatialConvolution(ci, co, kh, kw, sh, sw, ph, pw)
    x = rng.standard_normal((3, ci, h, w))
    y_shape = (3, co, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    g = rng.standard_normal(y_shape)
    y, gx = _run(conv, x, g, level)
    ty, tgx, (tgw, tgb) = _torch_grads(
        torch, lambda a, wt, bs: torch.nn.functional.conv2d(a, wt, bs, stride=(sh, sw), padding=(ph, pw)),
        x, g, conv.weight.data, conv.bias.data)
    assert y.shape == y_shape
    np.testing.assert_allclose(y, ty, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, tgx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, tgw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, tgb, rtol=1e-10, atol=1e-12)


def _pool_fn(torch, cls, kh, kw, sh, sw, ph, pw):
    stride = (kh if sh is None else sh, kw if sw is None else sw)
    if cls is SpatialMaxPooling:
        return lambda a: torch.nn.functional.max_pool2d(a, (kh, kw), stride, (ph, pw))
    return lambda a: torch.nn.functional.avg_pool2d(a, (kh, kw), stride, (ph, pw))   # count_include_pad=True


@pytest.mark.parity
@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("cls", [SpatialMaxPooling, SpatialAveragePooling])
def test_pooling_matches_torch(cls, case, level):
    torch = require_torch()
    kh, kw, sh, sw, ph, pw, h, w = case
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, h, w))
    fn = _pool_fn(torch, cls, kh, kw, sh, sw, ph, pw)
    ty = fn(torch.tensor(x)).numpy()
    g = rng.standard_normal(ty.shape)
    y, gx = _run(cls(kh, kw, sh, sw, ph, pw), x, g, level)
    _, tgx, _ = _torch_grads(torch, fn, x, g)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gx, tgx, rtol=1e-12, atol=1e-14)


@pytest.mark.parity
def test_max_pooling_ties_route_the_gradient_like_torch():
    torch = require_torch()
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((2, 2, 6, 5)), 0.0)        # many zeros: ties inside windows
    x[0, 0] = 1.0                                                 # a constant plane: every window tied
    for args in [(2, 2, None, None, 0, 0), (3, 3, 1, 1, 1, 1), (3, 2, 2, 1, 1, 0)]:
        fn = _pool_fn(torch, SpatialMaxPooling, *args)
        ty = fn(torch.tensor(x)).numpy()
        g = rng.standard_normal(ty.shape)
        y, gx = _run(SpatialMaxPooling(*args), x, g, 2)
        _, tgx, _ = _torch_grads(torch, fn, x, g)
        np.testing.assert_array_equal(y, ty)
        np.testing.assert_allclose(gx, tgx, rtol=1e-12, atol=1e-14)


@pytest.mark.parity
def test_average_pooling_excluding_padding_matches_torch():
    torch = require_torch()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 7, 6))
    fn = lambda a: torch.nn.functional.avg_pool2d(a, (3, 2), (2, 1), (1, 1), count_include_pad=False)  # noqa: E731
    ty = fn(torch.tensor(x)).numpy()
    g = rng.standard_normal(ty.shape)
    y, gx = _run(SpatialAveragePooling(3, 2, 2, 1, 1, 1, count_include_pad=False), x, g, 2)
    _, tgx, _ = _torch_grads(torch, fn, x, g)
    np.testing.assert_allclose(y, ty, rtol=1e-12)
    np.testing.assert_allclose(gx, tgx, rtol=1e-12)


def test_conv_init_range_is_torchs():
    gn.manual_seed(0)
    conv = SpatialConvolution(3, 8, 5, 4)
    bound = 1.0 / np.sqrt(3 * 5 * 4)
    assert conv.weight.shape == (8, 3, 5, 4) and conv.bias.shape == (8,)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > 0.8 * bound
    assert conv.weight.data.dtype == np.float32


# --- plans, shapes and errors ------------------------------------------------------------------------------

def test_conv_is_one_gemm_per_call():
    conv = SpatialConvolution(3, 4, 3, 3, 2, 2, 1, 1)
    prog = lower(conv, [((2, 3, 9, 9), np.dtype(np.float64))])
    gemms = [v for v in prog.forward_values() if isinstance(v.op, MatMul)]
    assert len(gemms) == 1
    assert gemms[0].shape == (2 * 5 * 5, 4)


def test_level2_agrees_with_level0_on_a_small_convnet():
    rng = np.random.default_rng(9)
    x = gn.Input((None, 2, 9, 8))
    h = SpatialMaxPooling(2, 2)(nn.ReLU()(SpatialConvolution(2, 4, 3, 3, 1, 1, 1, 1)(x)))
    h = SpatialAveragePooling(3, 3, 1, 1, 1, 1)(SpatialConvolution(4, 3, 2, 2, 2, 1)(h))
    model = gn.gModule([x], [h]).float64()
    xa = rng.standard_normal((3, 2, 9, 8))
    outs = []
    for level in (0, 2):
        model.zero_grad_parameters()
        plan = gn.compile(model, level=level)
        y = plan.forward(xa)
        gx = plan.backward(np.ones_like(y))
        outs.append((y, gx, [p.grad.copy() for p in model.parameters()]))
    (y0, g0, p0), (y2, g2, p2) = outs
    np.testing.assert_allclose(y2, y0, rtol=1e-12)
    np.testing.assert_allclose(g2, g0, rtol=1e-12, atol=1e-15)
    for a, b in zip(p2, p0):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_shapes_are_inferred_when_the_graph_is_built():
    x = gn.Input((None, 3, 32, 32))
    c = SpatialConvolution(3, 16, 7, 7)(x)
    assert c.shape == (None, 16, 26, 26)
    p = SpatialMaxPooling(2, 2)(c)
    assert p.shape == (None, 16, 13, 13)
    a = SpatialAveragePooling(3, 3, 2, 2, 1, 1)(p)
    assert a.shape == (None, 16, 7, 7)
    s = SpatialConvolution(16, 4, 3, 3, 2, 2, 1, 1)(a)
    assert s.shape == (None, 4, 4, 4)
    assert SpatialConvolution(3, 5, 3, 3)(gn.Input((3, 8, 8))).shape == (5, 6, 6)


def test_float32_stays_float32():
    rng = np.random.default_rng(10)
    conv = SpatialConvolution(2, 3, 3, 3)
    y = conv.forward(rng.standard_normal((2, 2, 5, 5)).astype(np.float32))
    assert y.dtype == np.float32 and y.shape == (2, 3, 3, 3)
    assert SpatialMaxPooling(2, 2, 1, 1, 1, 1).forward(y).dtype == np.float32


def test_errors_name_the_problem():
    x = gn.Input((None, 3, 8, 8))
    with pytest.raises(gn.ShapeError, match="expects 4 input channels"):
        SpatialConvolution(4, 2, 3, 3)(x)
    with pytest.raises(gn.ShapeError, match="does not fit a 8x8 input"):
        SpatialConvolution(3, 2, 9, 9)(x)
    with pytest.raises(gn.ShapeError, match="4-d"):
        SpatialMaxPooling(2, 2)(gn.Input((None, 8)))
    with pytest.raises(gn.GraphError, match="at most half the kernel"):
        SpatialMaxPooling(2, 2, 1, 1, 2, 0)
    with pytest.raises(gn.GraphError, match="kh must be >= 1"):
        SpatialConvolution(3, 2, 0, 3)
    conv = SpatialConvolution(3, 2, 3, 3)
    with pytest.raises(gn.ShapeError, match="expects 3 input channels"):
        conv.forward(np.zeros((1, 2, 8, 8), np.float32))


def test_labels():
    assert SpatialConvolution(3, 16, 7, 7).label() == "SpatialConvolution(3 -> 16, 7x7)"
    assert SpatialConvolution(3, 16, 3, 3, 2, 2, 1, 1).label() == \
        "SpatialConvolution(3 -> 16, 3x3, stride 2,2, pad 1,1)"
    assert SpatialMaxPooling(2, 2).label() == "SpatialMaxPooling(2x2)"
    assert SpatialAveragePooling(3, 3, 1, 1, 1, 1).label() == "SpatialAveragePooling(3x3, stride 1,1, pad 1,1)"

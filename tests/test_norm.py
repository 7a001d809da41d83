"""BatchNormalization and LayerNorm: gradient checks in float64, torch parity in training and evaluation (the
running statistics after several steps included), the side-effecting update surviving the compiler's passes."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.compile.lower import lower
from graphnet.nn.norm import BatchNormalization, LayerNorm
from graphnet.ops.norm import RunningStat, UpdateRunningStats
from graphnet.testing import gradcheck

from conftest import require_torch

TOL = 1e-6


def _check(module, arrays):
    errs = gradcheck(module, arrays)
    assert errs and all(v < TOL for v in errs.values()), f"{module.label()}: {errs}"


def _randomise(module, rng):
    for p in module.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape)


# --- gradient checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (3, 3, 5), (2, 3, 3, 4), (5, 3, 1, 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_training_gradcheck(shape, affine):
    rng = np.random.default_rng(0)
    bn = BatchNormalization(3, affine=affine)
    _randomise(bn, rng)
    _check(bn, [rng.standard_normal(shape) * 2 + 1])


@pytest.mark.parametrize("shape", [(4, 3), (1, 3), (2, 3, 3, 4)])
def test_batchnorm_evaluation_gradcheck(shape):
    rng = np.random.default_rng(1)
    bn = BatchNormalization(3)
    _randomise(bn, rng)
    bn.running_mean = rng.standard_normal(3)
    bn.running_var = rng.uniform(0.5, 2.0, 3)
    bn.evaluate()
    _check(bn, [rng.standard_normal(shape)])


@pytest.mark.parametrize("shape,normalized", [((4, 5), 5), ((2, 3, 4), (4,)), ((2, 3, 4), (3, 4)),
                                              ((2, 2, 3, 3), (2, 3, 3))])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_gradcheck(shape, normalized, affine):
    rng = np.random.default_rng(2)
    ln = LayerNorm(normalized, elementwise_affine=affine)
    _randomise(ln, rng)
    _check(ln, [rng.standard_normal(shape)])


# --- against torch -----------------------------------------------------------------------------------------

def _steps(torch, bn, tbn, shapes, level, rng):
    """Run graphnet's and torch's module on the same batches; compare outputs and all gradients each step."""
    plan = gn.compile(bn, level=level)
    for shape in shapes:
        x = rng.standard_normal(shape) * 3 + 2
        g = rng.standard_normal(shape)
        bn.zero_grad_parameters()
        y = plan.forward(x)
        gx = plan.backward(g)
        tx = torch.tensor(x, requires_grad=True)
        ty = tbn(tx)
        tbn.zero_grad()
        (ty * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
        if bn.affine:
            np.testing.assert_allclose(bn.weight.grad, tbn.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(bn.bias.grad, tbn.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-12)
    assert bn.num_batches_tracked == int(tbn.num_batches_tracked)


@pytest.mark.parity
@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize("kind", ["1d", "2d", "1d-seq"])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_matches_torch(kind, momentum, affine, level):
    torch = require_torch()
    rng = np.random.default_rng(3)
    C = 4
    shapes = {"1d": [(6, C), (5, C), (6, C)], "2d": [(3, C, 5, 4), (2, C, 3, 3), (3, C, 5, 4)],
              "1d-seq": [(3, C, 7), (2, C, 5), (3, C, 7)]}[kind]
    cls = torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d
    tbn = cls(C, eps=1e-3, momentum=momentum, affine=affine).double()
    bn = BatchNormalization(C, eps=1e-3, momentum=momentum, affine=affine).float64()
    if affine:
        w, b = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
        bn.weight.data[...], bn.bias.data[...] = w, b
        with torch.no_grad():
            tbn.weight[...], tbn.bias[...] = torch.tensor(w), torch.tensor(b)
    _steps(torch, bn, tbn, shapes, level, rng)            # training: batch statistics, running ones updated
    bn.evaluate()
    tbn.eval()
    _steps(torch, bn, tbn, shapes[:2], level, rng)        # evaluation: running statistics, left unchanged


@pytest.mark.parity
@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("shape,normalized", [((4, 5), 5), ((2, 3, 4), (3, 4))])
def test_layernorm_matches_torch(shape, normalized, level):
    torch = require_torch()
    rng = np.random.default_rng(4)
    ln = LayerNorm(normalized, eps=1e-4).float64()
    tln = torch.nn.LayerNorm(normalized, eps=1e-4).double()
    w, b = rng.uniform(0.5, 1.5, ln.weight.shape), rng.standard_normal(ln.bias.shape)
    ln.weight.data[...], ln.bias.data[...] = w, b
    with torch.no_grad():
        tln.weight[...], tln.bias[...] = torch.tensor(w), torch.tensor(b)
    x, g = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    plan = gn.compile(ln, level=level)
    y = plan.forward(x)
    gx = plan.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = tln(tx)
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ln.weight.grad, tln.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ln.bias.grad, tln.bias.grad.numpy(), rtol=1e-10)


@pytest.mark.parity
def test_batchnorm_float32_running_stats_follow_torch():
    torch = require_torch()
    rng = np.random.default_rng(5)
    bn, tbn = BatchNormalization(3), torch.nn.BatchNorm2d(3)
    for _ in range(3):
        x = (rng.standard_normal((4, 3, 2, 2)) * 2 + 1).astype(np.float32)
        y = bn.forward(x)
        ty = tbn(torch.tensor(x)).detach().numpy()
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-5)
    assert bn.running_mean.dtype == np.float32
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-5)


# --- the running statistics in the compiler ----------------------------------------------------------------

def test_running_stats_update_once_per_forward_and_survive_passes():
    rng = np.random.default_rng(6)
    x = gn.Input((None, 3))
    bn = BatchNormalization(3, momentum=0.5)
    model = gn.gModule([x], [nn.Linear(3, 2)(bn(x))]).float64()
    xa = rng.standard_normal((5, 3)) + 4.0
    for level in (0, 2):
        bn.reset_running_stats()
        plan = gn.compile(model, level=level)
        plan.forward(xa)
        plan.backward(np.ones((5, 2)))             # backward does not update again
        assert bn.num_batches_tracked == 1
        np.testing.assert_allclose(bn.running_mean, 0.5 * xa.mean(0), rtol=1e-12)
        np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * xa.var(0, ddof=1), rtol=1e-12)


def test_train_step_updates_running_stats_and_eval_reads_them_at_run_time():
    rng = np.random.default_rng(7)
    x, t = gn.Input((None, 2)), gn.Input((None,))
    bn = BatchNormalization(2)
    loss = nn.CrossEntropyCriterion()(nn.Linear(2, 3)(bn(x)), t)
    model = gn.gModule([x, t], [loss])
    step = gn.compile_train_step(model)
    xa, ta = rng.standard_normal((8, 2)).astype(np.float32) + 3.0, rng.integers(0, 3, 8)
    step(xa, ta)
    step(xa, ta)
    assert bn.num_batches_tracked == 2
    assert np.all(bn.running_mean > 0.5)
    model.evaluate()
    plan = gn.compile(model)
    first = plan.forward(xa, ta)
    bn.running_mean = bn.running_mean + 1.0           # the same compiled plan sees the new statistics
    assert plan.forward(xa, ta) != first


def test_evaluation_reads_the_buffers_through_leaf_ops():
    bn = BatchNormalization(3).evaluate()
    prog = lower(bn, [((2, 3), np.dtype(np.float32))])
    assert sum(isinstance(v.op, RunningStat) for v in prog.values) == 2
    assert not any(isinstance(v.op, UpdateRunningStats) for v in prog.values)
    bn.training()
    prog = lower(bn, [((2, 3), np.dtype(np.float32))])
    assert sum(isinstance(v.op, UpdateRunningStats) for v in prog.forward_values()) == 1
    assert not UpdateRunningStats(bn, 2).pure and not RunningStat(bn, "running_var", (3,), np.float32).pure


# --- shapes, errors, state -----------------------------------------------------------------------------------

def test_errors():
    with pytest.raises(gn.ShapeError, match=r"expects inputs \(batch, 3, ...\)"):
        BatchNormalization(3)(gn.Input((None, 4)))
    with pytest.raises(gn.ShapeError, match="more than one value per feature"):
        BatchNormalization(3).forward(np.zeros((1, 3), np.float32))
    assert BatchNormalization(3).evaluate().forward(np.zeros((1, 3), np.float32)).shape == (1, 3)
    with pytest.raises(gn.ShapeError, match="last dims are"):
        LayerNorm((3, 4))(gn.Input((None, 4, 3)))
    with pytest.raises(gn.GraphError, match="n_features must be >= 1"):
        BatchNormalization(0)


def test_parameters_buffers_and_labels():
    bn = BatchNormalization(5)
    assert [p.shape for p in bn.parameters()] == [(5,), (5,)]
    np.testing.assert_array_equal(bn.weight.data, 1.0)
    np.testing.assert_array_equal(bn.bias.data, 0.0)
    assert set(bn.buffers()) == {"running_mean", "running_var", "num_batches_tracked"}
    assert BatchNormalization(5, affine=False).parameters() == []
    assert LayerNorm(4, elementwise_affine=False).parameters() == []
    assert [p.shape for p in LayerNorm((2, 3)).parameters()] == [(2, 3), (2, 3)]
    assert bn.label() == "BatchNormalization(5)" and LayerNorm((2, 3)).label() == "LayerNorm(2, 3)"
    assert BatchNormalization(5)(gn.Input((None, 5, 4, 4))).shape == (None, 5, 4, 4)

"""compile_train_step: one fused forward+backward plan that zeroes and fills the gradients."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn


def _model():
    x, t = gn.Input((None, 4)), gn.Input((None,))
    h = nn.Tanh()(nn.Linear(4, 5)(x))
    loss = nn.CrossEntropyCriterion()(nn.Linear(5, 3)(h), t)
    return gn.gModule([x, t], [loss]).float64()


def test_train_step_matches_forward_backward(rng):
    model = _model()
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    model.zero_grad_parameters()
    loss = model.forward([x, t])
    model.backward([x, t], np.array(1.0))
    ref = [p.grad.copy() for p in model.parameters()]
    step = gn.compile_train_step(model)
    for p in model.parameters():
        p.grad[...] = 123.0                      # stale gradients are replaced, not added to
    got = step(x, t)
    assert isinstance(got, float) and got == pytest.approx(float(loss), rel=1e-12)
    for p, r in zip(model.parameters(), ref):
        np.testing.assert_allclose(p.grad, r, rtol=1e-12, atol=1e-15)
    assert "def step(" in step.code


def test_train_step_rejects_non_scalar_models():
    x = gn.Input()
    step = gn.compile_train_step(gn.gModule([x], [nn.Tanh()(x), nn.Sigmoid()(x)]))
    with pytest.raises(gn.InputError, match="first output must be a scalar loss"):
        step(np.ones((2, 3)))
    step = gn.compile_train_step(gn.gModule([x], [nn.Tanh()(x)]))
    with pytest.raises(gn.InputError, match="scalar loss"):
        step(np.ones((2, 3)))


def test_train_step_returns_further_outputs_without_differentiating_them(rng):
    x, t, h0 = gn.Input(), gn.Input(), gn.Input()
    lin, head = nn.Linear(3, 3), nn.Linear(3, 2)
    h = nn.Tanh()(lin(x) + h0)
    loss = nn.CrossEntropyCriterion()(head(h), t)
    with_state = gn.gModule([x, t, h0], [loss, h]).float64()       # the carried state comes out too
    loss_only = gn.gModule([x, t, h0], [loss]).float64()
    arrays = [rng.standard_normal((4, 3)), rng.integers(0, 2, 4), rng.standard_normal((4, 3))]
    value, state = gn.compile_train_step(with_state)(*arrays)
    grads = [p.grad.copy() for p in with_state.parameters()]
    ref = gn.compile_train_step(loss_only)(*arrays)
    assert value == pytest.approx(ref, rel=1e-12)
    for g, p in zip(grads, loss_only.parameters()):          # only the loss is differentiated
        np.testing.assert_allclose(g, p.grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(state, with_state.forward(arrays)[1], rtol=1e-12)

"""torch7 constructor flags: AddConstant/MulConstant(c, inplace), Dropout(p, v1, inplace, stochastic_inference)."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.testing import gradcheck


def test_inplace_flags_are_accepted_and_compute_the_same(rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(nn.AddConstant(1, False).float64().forward(x), x + 1)
    np.testing.assert_allclose(nn.MulConstant(-1, True).float64().forward(x), -x)
    np.testing.assert_allclose(nn.Dropout(0.5, None, False).float64().evaluate().forward(x), x)


def test_dropout_v1_scales_at_evaluation_not_training():
    x = np.ones((4, 2000))
    d = nn.Dropout(0.25, True).float64()
    gn.manual_seed(1)
    y = d.forward(x)
    assert set(np.unique(y)) == {0.0, 1.0} and abs(y.mean() - 0.75) < 0.02
    np.testing.assert_allclose(d.evaluate().forward(x), 0.75 * x)
    stochastic = nn.Dropout(0.25, False, False, True).float64().evaluate()
    assert set(np.unique(stochastic.forward(x))) == {0.0, 1.0 / 0.75}
    errs = gradcheck(nn.Dropout(0.3, True), [np.random.default_rng(0).standard_normal((3, 4))], reseed=5)
    assert max(errs.values()) < 1e-7


def test_flags_survive_save_and_load(tmp_path):
    d = nn.Dropout(0.2, True, True)
    gn.save([d, nn.AddConstant(2.5, True)], tmp_path / "m.gnet")
    d2, a2 = gn.load(tmp_path / "m.gnet")
    assert (d2.p, d2.v1, d2.inplace) == (0.2, True, True) and a2.constant_scalar == pytest.approx(2.5)

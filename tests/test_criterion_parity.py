"""Criterions with torch7's verbs and options: class weights, ignore_index, size_average set at any time —
ClassNLL and CrossEntropy exact against torch's nll_loss / cross_entropy in float64."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn

from conftest import require_torch

OPTIONS = [dict(), dict(weights=[0.0, 2.0, 0.5, 1.5]), dict(weights=[0.0, 2.0, 0.5, 1.5], ignore_index=1),
           dict(ignore_index=3), dict(ignore_index=-100, weights=[1.0, 2.0, 3.0, 4.0]),
           dict(weights=[0.3, 2.0, 0.5, 1.5], size_average=False), dict(ignore_index=0, size_average=False)]


@pytest.mark.parity
@pytest.mark.parametrize("cls", ["ClassNLLCriterion", "CrossEntropyCriterion"])
@pytest.mark.parametrize("kw", OPTIONS, ids=[",".join(sorted(o)) or "default" for o in OPTIONS])
def test_against_torch(cls, kw, rng):
    torch = require_torch()
    x, t = rng.standard_normal((7, 4)), np.array([0, 3, 1, 1, 2, 3, 0])
    crit = getattr(nn, cls)(**kw).float64()
    loss, grad = crit.forward(x, t), crit.backward(x, t)       # torch7's verbs
    xt = torch.tensor(x, requires_grad=True)
    fn = torch.nn.functional.nll_loss if cls == "ClassNLLCriterion" else torch.nn.functional.cross_entropy
    ref = fn(xt, torch.tensor(t), weight=None if "weights" not in kw else torch.tensor(kw["weights"], dtype=torch.float64),
             ignore_index=kw.get("ignore_index", -100), reduction="mean" if kw.get("size_average", True) else "sum")
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_size_average_settable_after_a_run_and_saved(tmp_path, rng):
    x, t = rng.standard_normal((5, 3)), np.array([0, 2, 1, 1, 0])
    crit = nn.CrossEntropyCriterion().float64()
    mean = float(crit.forward(x, t))
    crit.size_average = False
    assert float(crit.forward(x, t)) == pytest.approx(5 * mean, rel=1e-12)
    crit.sizeAverage = True                                   # torch7's spelling
    assert float(crit.forward(x, t)) == pytest.approx(mean, rel=1e-12)
    crit.size_average = False
    gn.save(crit, tmp_path / "c.gnet")
    assert gn.load(tmp_path / "c.gnet").size_average is False


def test_node_form_and_torch_verbs_agree(rng):
    x, t = rng.standard_normal((4, 3)), np.array([0, 2, 1, 1])
    crit = nn.ClassNLLCriterion(weights=np.array([1.0, 0.5, 2.0])).float64()
    p, y = gn.Input(), gn.Input()
    g = gn.gModule([p, y], [crit(p, y)]).float64()
    gx, gt = g.backward([x, t], np.ones(1))                  # a size-1 gradient for the scalar loss
    np.testing.assert_allclose(g.forward([x, t]), crit.forward(x, t), rtol=1e-14)
    np.testing.assert_allclose(gx, crit.backward(x, t), rtol=1e-14)
    assert gt is None
    gx2, _ = crit.backward([x, t], 1.0)                       # graphnet's form: one gradient per input
    np.testing.assert_allclose(gx2, gx, rtol=1e-14)


def test_bad_weights_are_refused():
    with pytest.raises(gn.GraphError, match=r"weights must be a 1-d array"):
        nn.ClassNLLCriterion(weights=[[1.0, 2.0]])
    crit = nn.ClassNLLCriterion(weights=[1.0, 2.0])
    with pytest.raises(gn.ShapeError, match=r"2 class weights for 3 classes"):
        crit(gn.Input((None, 3)), gn.Input((None,)))

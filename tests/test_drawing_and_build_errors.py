"""Drawing as nngraph does right after building: the backward graph with no shapes and no run, and nngraph's
annotate(graphAttributes={...}) spelling; every build-time error ends with the user's file:line."""
import re
import shutil

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn


def _graph():
    x, s = gn.Input(), gn.Input()
    c, h = s.split(2)
    y = nn.Linear(3, 2)(x).annotate(name="lin", graphAttributes={"color": "red", "style": "filled"})
    out = (y * c + h).annotate(name="out")
    return gn.gModule([x, s], [out]), y


def test_backward_drawn_before_any_shape_is_known(tmp_path):
    g, y = _graph()
    src = g.to_dot(which="backward").source
    assert "∂L/∂out" in src and "∂ lin" in src and "∂L/∂lin.weight" in src and "(?)" in src
    assert re.search(r"g\d+ -> g\d+", src)                  # gradients flow against the forward edges
    if shutil.which("dot"):
        path = gn.render(g, tmp_path / "bwd.svg", which="backward")
        assert "<svg" in open(path).read()
    g.forward([np.ones((2, 3)), [np.ones((2, 2)), np.ones((2, 2))]])
    after = g.to_dot(which="backward").source               # once it has run: the VJP ops, with sizes
    assert "(2, 3)" in after and "∂ lin" in after


def test_graph_attributes_style_like_keywords():
    g, y = _graph()
    assert y.attrs == {"color": "red", "style": "filled"}
    assert re.search(r'color=red', g.to_dot().source)
    with pytest.raises(gn.GraphError, match=r"graphAttributes=...\) takes a dict.*test_drawing_and_build_errors.py:\d+"):
        y.annotate(graphAttributes="red")


@pytest.mark.parametrize("make", [
    lambda: nn.Linear("3", 4), lambda: nn.Dropout(1.5), lambda: nn.Narrow(1, 0, 0), lambda: nn.Sequential().add(3),
    lambda: nn.Linear(3, 4).clone("gradWeights"), lambda: gn.clone_many_times(nn.Tanh(), -1),
    lambda: gn.Input().split(0), lambda: nn.SplitTable(0)(gn.Input((4, 2))).split(3),
    lambda: nn.Tanh()(gn.Input((3,))).split(2), lambda: nn.ClassNLLCriterion(weights=[[1.0]]),
], ids=["int_arg", "dropout_p", "narrow_0", "add_non_module", "clone_name", "clone_many", "split_0", "split_count",
        "split_single", "weights"])
def test_build_time_errors_carry_the_users_line(make):
    with pytest.raises(gn.GraphError, match=r"\(at .*test_drawing_and_build_errors.py:\d+\)"):
        make()

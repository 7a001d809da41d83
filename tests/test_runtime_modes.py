"""Modes and dtypes belong to modules: switching is free once each mode has run, and set-by-hand is honoured."""
import numpy as np

import graphnet as gn
from graphnet import nn


def two_branches():
    """Two outputs, each through its own Dropout inside its own gModule."""
    x = gn.Input((None, 6), name="x")
    branches = []
    for _ in range(2):
        xi = gn.Input((None, 6))
        branches.append(gn.gModule([xi], [nn.Dropout(0.5)(nn.Identity()(xi))]))
    return gn.gModule([x], [branches[0](x), branches[1](x)]).float64(), branches


def test_switching_modes_compiles_once_per_mode(rng):
    model, _ = two_branches()
    plan = gn.compile(model)
    x = rng.standard_normal((5, 6))
    for _ in range(20):
        model.training()
        train_out = plan.forward(x)
        model.evaluate()
        eval_out = plan.forward(x)
    assert plan.stats()["compiles"] == 2
    assert (train_out[0] == 0).any() and all(np.array_equal(o, x) for o in eval_out)
    # the module's own verbs too: forward and backward reuse the module's plan
    for _ in range(5):
        model.training()
        model.forward(x)
        model.backward(x, [np.ones_like(x)] * 2)
        model.evaluate()
        model.forward(x)
    assert model._plan().stats()["compiles"] == 2


def test_a_mode_set_on_a_module_affects_what_it_contains_only(rng):
    model, (a, b) = two_branches()
    plan = gn.compile(model)
    x = rng.standard_normal((50, 6))
    plan.forward(x)
    a.evaluate()
    out_a, out_b = plan.forward(x)
    assert np.array_equal(out_a, x), "a's Dropout is off"
    assert (out_b == 0).any(), "b's Dropout still drops"
    assert all(m.train for m in b.modules()) and not any(m.train for m in a.modules())


def test_train_set_by_hand_is_honoured_after_a_plan_exists(rng):
    model, (a, _) = two_branches()
    plan = gn.compile(model)
    x = rng.standard_normal((50, 6))
    assert (plan.forward(x)[0] == 0).any()
    dropout = next(m for m in a.modules() if isinstance(m, nn.Dropout))
    dropout.train = False                  # wojzaremba's g_disable_dropout
    assert np.array_equal(plan.forward(x)[0], x)
    dropout.train = True
    assert (plan.forward(x)[0] == 0).any()
    assert plan.stats()["compiles"] == 2


def test_unrelated_modules_plans_are_untouched_by_a_switch(rng):
    model, _ = two_branches()
    other = nn.Sequential(nn.Linear(6, 3), nn.Dropout(0.2)).float64()
    plan, other_plan = gn.compile(model), gn.compile(other)
    x = rng.standard_normal((4, 6))
    other_plan.forward(x)
    for _ in range(10):
        model.evaluate()
        plan.forward(x)
        model.training()
        plan.forward(x)
        other_plan.forward(x)
    assert other_plan.stats()["compiles"] == 1
    assert plan.stats()["compiles"] == 2


def test_dtype_switches_compile_once_per_dtype(rng):
    model = nn.Sequential(nn.Linear(6, 3), nn.Tanh())
    plan = gn.compile(model)
    x = rng.standard_normal((4, 6))
    for _ in range(5):
        assert plan.forward(x).dtype == np.float32
        model.float64()
        assert plan.forward(x).dtype == np.float64
        model.float32()
    assert plan.stats()["compiles"] == 2

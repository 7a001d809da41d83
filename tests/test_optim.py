"""Optimizers, clipping and schedules: trajectories against torch.optim in float64, state round trips, errors."""
import io
import json
import math
import os

import numpy as np
import pytest

from graphnet.errors import FormatError, GraphError
from graphnet.module import Parameter
from graphnet.optim import (SGD, Adagrad, Adam, AdamW, CosineAnnealingLR, ExponentialLR, Optimizer, RMSprop,
                            StepLR, clip_grad_norm, clip_grad_value)


def require_torch():
    """torch, or a skip; with GRAPHNET_REQUIRE_TORCH set, a missing torch is a failure instead."""
    if os.environ.get("GRAPHNET_REQUIRE_TORCH"):
        try:
            import torch
        except ImportError as e:
            pytest.fail(f"GRAPHNET_REQUIRE_TORCH is set but torch cannot be imported: {e}")
        return torch
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch():
    return require_torch()


SHAPES = [(3, 4), (4,), (2, 2, 3), ()]
STEPS = 20
OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad}

CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.2, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.2}),
    ("Adam", {}),
    ("Adam", {"lr": 0.1, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 0.1, "maximize": True}),
    ("Adam", {"lr": 0.1, "betas": (0.5, 0.9), "eps": 1e-3}),            # lerp weight 0.5: torch's other branch
    ("Adam", {"lr": 0.1, "betas": (0.3, 0.8), "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.1, "weight_decay": 0.5}),
    ("AdamW", {"lr": 0.1, "amsgrad": True, "maximize": True}),
    ("AdamW", {"lr": 0.1, "betas": (0.4, 0.95), "weight_decay": 0}),
    ("RMSprop", {}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True, "momentum": 0.9, "weight_decay": 0.1}),
    ("RMSprop", {"alpha": 0.3, "centered": True, "maximize": True}),    # lerp weight 0.7
    ("RMSprop", {"lr": 0.05, "alpha": 0.9, "eps": 1e-4, "weight_decay": 0.3}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-3}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.2, "maximize": True}),
]


class Problem:
    """Fixed starting weights; the gradient at step k is g = c ⊙ w + r_k (a diagonal quadratic plus noise)."""

    def __init__(self, seed=0, steps=STEPS):
        rng = np.random.default_rng(seed)
        self.init = [rng.standard_normal(s) for s in SHAPES]
        self.c = [rng.uniform(0.5, 2.0, s) for s in SHAPES]
        self.noise = [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]

    def params(self):
        return [Parameter(a.copy()) for a in self.init]

    def grads(self, k, weights):
        return [np.asarray(c * w + r) for c, w, r in zip(self.c, weights, self.noise[k])]

    def set_grads(self, k, params):
        for p, g in zip(params, self.grads(k, [p.data for p in params])):
            p.grad[...] = g


def run_graphnet(opt, params, problem, steps, start=0):
    trajectory = []
    for k in range(start, start + steps):
        problem.set_grads(k, params)
        opt.step()
        trajectory.append([p.data.copy() for p in params])
    return trajectory


def run_torch(torch, name, kwargs, problem, steps=STEPS):
    tp = [torch.tensor(a.copy(), requires_grad=True) for a in problem.init]
    opt = getattr(torch.optim, name)(tp, foreach=False, **kwargs)     # the single-tensor code path
    trajectory = []
    for k in range(steps):
        for t, g in zip(tp, problem.grads(k, [t.detach().numpy() for t in tp])):
            t.grad = torch.from_numpy(g)
        opt.step()
        trajectory.append([t.detach().numpy().copy() for t in tp])
    return trajectory


def assert_same_trajectory(ours, theirs, rtol=1e-10):
    for k, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-13, err_msg=f"step {k + 1}, parameter {i}")


@pytest.mark.parity
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_trajectory_matches_torch(torch, name, kwargs):
    problem = Problem()
    params = problem.params()
    ours = run_graphnet(OPTIMIZERS[name](params, **kwargs), params, problem, STEPS)
    assert_same_trajectory(ours, run_torch(torch, name, kwargs, problem))


@pytest.mark.parity
def test_defaults_match_torch(torch):
    import inspect
    for name, cls in OPTIMIZERS.items():
        ours = inspect.signature(cls).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        for arg, p in ours.items():
            assert arg in theirs, f"{name}: torch has no argument {arg!r}"
            if arg != "params":
                assert p.default == theirs[arg].default, f"{name}({arg}=...)"


def test_sgd_step_by_hand():
    p, q = Parameter(np.array([1.0, 2.0])), Parameter(np.array([[3.0]]))
    opt = SGD([p, q], lr=0.5)
    p.grad[...] = [1.0, -2.0]
    q.grad[...] = 4.0
    opt.step()
    np.testing.assert_array_equal(p.data, [0.5, 3.0])
    np.testing.assert_array_equal(q.data, [[1.0]])


def test_parameters_become_views_of_one_flat_vector():
    ps = Problem().params()
    Adam(ps)
    base = ps[0].data.base
    assert base is not None and base.ndim == 1 and base.size == sum(p.data.size for p in ps)
    assert all(p.data.base is base for p in ps)
    assert len({id(p.grad.base) for p in ps}) == 1


@pytest.mark.parametrize("name,kwargs", [("SGD", {"weight_decay": 0.1, "maximize": True, "momentum": 0.9}),
                                         ("Adam", {"weight_decay": 0.1, "maximize": True}),
                                         ("RMSprop", {"weight_decay": 0.1, "centered": True}),
                                         ("Adagrad", {"weight_decay": 0.1, "maximize": True})])
def test_step_leaves_grads_alone(name, kwargs):
    problem = Problem()
    params = problem.params()
    opt = OPTIMIZERS[name](params, **kwargs)
    problem.set_grads(0, params)
    before = [p.grad.copy() for p in params]
    opt.step()
    for p, g in zip(params, before):
        np.testing.assert_array_equal(p.grad, g)


def test_zero_grad_in_place_and_closure():
    params = Problem().params()
    opt = SGD(params, lr=0.1)
    grads = [p.grad for p in params]
    for p in params:
        p.grad[...] = 1.0
    opt.zero_grad()
    assert all(p.grad is g and not p.grad.any() for p, g in zip(params, grads))
    assert opt.step(lambda: 3.5) == 3.5


def test_rebound_arrays_are_reflattened():
    # model.float64() and the like give parameters new arrays: the optimizer must follow them
    p, q = Parameter(np.ones(3, np.float32)), Parameter(np.ones(2, np.float32))
    opt = SGD([p, q], lr=0.5, momentum=0.9)
    for x in (p, q):
        x.data, x.grad = x.data.astype(np.float64), np.full(x.data.shape, 2.0)
    opt.step()
    assert p.data.dtype == np.float64 and p.data.base is q.data.base
    np.testing.assert_array_equal(p.data, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(q.data, [0.0, 0.0])
    assert opt.state["momentum_buffer"].dtype == np.float64


@pytest.mark.parametrize("name,kwargs", [("SGD", {"momentum": 0.9, "weight_decay": 0.1}),
                                         ("Adam", {"amsgrad": True}), ("AdamW", {}),
                                         ("RMSprop", {"centered": True, "momentum": 0.9}),
                                         ("Adagrad", {"lr_decay": 0.1})])
def test_float32_stays_float32(name, kwargs):
    problem = Problem()
    p64 = problem.params()
    p32 = [Parameter(a.astype(np.float32)) for a in problem.init]
    opt64, opt32 = OPTIMIZERS[name](p64, lr=0.01, **kwargs), OPTIMIZERS[name](p32, lr=np.float64(0.01), **kwargs)
    a, b = run_graphnet(opt64, p64, problem, 5), run_graphnet(opt32, p32, problem, 5)
    assert all(p.data.dtype == np.float32 for p in p32)
    assert all(v.dtype == np.float32 for v in opt32.state.values())
    for x, y in zip(a[-1], b[-1]):
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)


def test_lr_attribute_is_used():
    p = Parameter(np.array([1.0]))
    opt = SGD([p], lr=1.0)
    opt.lr = 0.25
    p.grad[...] = 1.0
    opt.step()
    assert p.data[0] == 0.75


# --- state_dict ----------------------------------------------------------------------------------------------

STATEFUL = [("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
            ("Adam", {"lr": 0.1, "amsgrad": True, "weight_decay": 0.1}),
            ("AdamW", {"lr": 0.1}),
            ("RMSprop", {"centered": True, "momentum": 0.5}),
            ("Adagrad", {"lr": 0.1, "lr_decay": 0.1, "initial_accumulator_value": 0.2})]


def json_npz_round_trip(state):
    """Scalars through JSON, arrays through npz (allow_pickle=False): what a checkpoint file does."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    scalars = json.loads(json.dumps({k: v for k, v in state.items() if k not in arrays}))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        return {**scalars, **{k: f[k] for k in f.files}}


@pytest.mark.parametrize("name,kwargs", STATEFUL, ids=[n for n, _ in STATEFUL])
@pytest.mark.parametrize("whole_npz", [False, True], ids=["json+npz", "npz"])
def test_state_dict_round_trip_continues_identically(name, kwargs, whole_npz):
    problem = Problem()
    params = problem.params()
    opt = OPTIMIZERS[name](params, **kwargs)
    straight = run_graphnet(opt, params, problem, STEPS)

    params = problem.params()
    opt = OPTIMIZERS[name](params, **kwargs)
    run_graphnet(opt, params, problem, STEPS // 2)
    state = opt.state_dict()
    if whole_npz:                      # everything, scalars included, in one npz
        buf = io.BytesIO()
        np.savez(buf, **state)
        buf.seek(0)
        with np.load(buf, allow_pickle=False) as f:
            state = {k: f[k] for k in f.files}
    else:
        state = json_npz_round_trip(state)
    resumed = problem.params()
    for p, q in zip(resumed, params):
        p.data[...] = q.data
    opt2 = OPTIMIZERS[name](resumed)           # default hyperparameters: load_state_dict brings them back
    opt2.load_state_dict(state)
    rest = run_graphnet(opt2, resumed, problem, STEPS - STEPS // 2, start=STEPS // 2)
    for a, b in zip(rest, straight[STEPS // 2:]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_state_dict_is_plain():
    opt = Adam(Problem().params(), amsgrad=True)
    state = opt.state_dict()
    assert state["type"] == "Adam" and state["step"] == 0 and state["betas"] == [0.9, 0.999]
    for k, v in state.items():
        assert isinstance(v, (str, int, float, bool, list, np.ndarray)), k
    state["exp_avg"][...] = 7.0                # a copy: the optimizer's buffers are untouched
    assert not opt.state["exp_avg"].any()


def test_load_state_dict_errors_leave_optimizer_unchanged():
    params = Problem().params()
    opt = Adam(params, lr=0.1)
    good = opt.state_dict()
    with pytest.raises(FormatError, match="for 'SGD', not Adam"):
        opt.load_state_dict(SGD(Problem().params()).state_dict())
    with pytest.raises(FormatError, match="lacks betas"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "betas"})
    with pytest.raises(FormatError, match="'exp_avg' has 3 values, the parameters have 29"):
        opt.load_state_dict({**good, "lr": 0.5, "exp_avg": np.zeros(3)})
    with pytest.raises(FormatError, match="this configuration uses"):
        opt.load_state_dict({**good, "amsgrad": True})          # amsgrad needs max_exp_avg_sq
    with pytest.raises(FormatError, match="invalid lr"):
        opt.load_state_dict({**good, "lr": -1.0})
    assert opt.lr == 0.1 and opt.amsgrad is False


# --- argument checks -----------------------------------------------------------------------------------------

BAD_ARGS = [
    (SGD, {"lr": -0.1}, "invalid lr"),
    (SGD, {"lr": float("nan")}, "invalid lr"),
    (SGD, {"momentum": -0.5}, "invalid momentum"),
    (SGD, {"weight_decay": -1e-4}, "invalid weight_decay"),
    (SGD, {"nesterov": True}, "Nesterov momentum requires"),
    (SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "Nesterov momentum requires"),
    (SGD, {"lr": "0.1"}, "invalid lr"),
    (Adam, {"lr": -1e-3}, "invalid lr"),
    (Adam, {"eps": -1e-8}, "invalid eps"),
    (Adam, {"betas": (1.0, 0.999)}, "beta parameter at index 0"),
    (Adam, {"betas": (0.9, -0.1)}, "beta parameter at index 1"),
    (Adam, {"betas": (0.9,)}, "betas must be a pair"),
    (Adam, {"weight_decay": -0.1}, "invalid weight_decay"),
    (AdamW, {"weight_decay": -0.1}, "invalid weight_decay"),
    (RMSprop, {"alpha": -0.1}, "invalid alpha"),
    (RMSprop, {"momentum": -0.1}, "invalid momentum"),
    (RMSprop, {"eps": -1.0}, "invalid eps"),
    (Adagrad, {"lr_decay": -0.1}, "invalid lr_decay"),
    (Adagrad, {"initial_accumulator_value": -0.1}, "invalid initial_accumulator_value"),
    (Adagrad, {"eps": -1e-10}, "invalid eps"),
]


@pytest.mark.parametrize("cls,kwargs,match", BAD_ARGS, ids=[f"{c.__name__}-{k}" for c, k, _ in BAD_ARGS])
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises(GraphError, match=match):
        cls(Problem().params(), **kwargs)


@pytest.mark.parametrize("cls", list(OPTIMIZERS.values()))
def test_bad_params(cls):
    with pytest.raises(GraphError, match="empty parameter list"):
        cls([])
    with pytest.raises(GraphError, match="not a gn.Parameter"):
        cls([np.zeros(3)])
    p = Parameter(np.zeros(3))
    with pytest.raises(GraphError, match="more than once"):
        cls([p, p])
    assert isinstance(cls(p), Optimizer)          # a single Parameter is accepted, as in torch


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        SGD([], lr=0.1)


# --- clipping ------------------------------------------------------------------------------------------------

def clip_setup(torch, scale, seed=1):
    rng = np.random.default_rng(seed)
    grads = [scale * rng.standard_normal(s) for s in SHAPES]
    ps = [Parameter(np.zeros(s)) for s in SHAPES]
    tp = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, t, g in zip(ps, tp, grads):
        p.grad[...] = g
        t.grad = torch.from_numpy(np.asarray(g).copy())
    return ps, tp


@pytest.mark.parity
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(torch, norm_type, max_norm):
    ps, tp = clip_setup(torch, 3.0)
    Adam(ps)                                          # flattened parameters work the same
    total = clip_grad_norm(ps, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type, foreach=False)
    assert isinstance(total, float)
    assert total == pytest.approx(float(expected), rel=1e-12)
    for p, t in zip(ps, tp):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12, atol=0)


@pytest.mark.parity
def test_clip_grad_norm_nonfinite(torch):
    ps, tp = clip_setup(torch, 1.0)
    ps[1].grad[0] = np.inf
    tp[1].grad[0] = np.inf
    assert clip_grad_norm(ps, 1.0) == float(torch.nn.utils.clip_grad_norm_(tp, 1.0, foreach=False)) == math.inf
    for p, t in zip(ps, tp):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
    with pytest.raises(GraphError, match="non|inf"):
        clip_grad_norm(ps, 1.0, error_if_nonfinite=True)


def test_clip_grad_norm_by_hand():
    p = Parameter(np.array([3.0, 4.0]))
    p.grad[...] = [3.0, 4.0]
    assert clip_grad_norm([p], 1.0) == 5.0
    np.testing.assert_allclose(p.grad, np.array([0.6, 0.8]) * 5.0 / (5.0 + 1e-6), rtol=1e-15)
    assert clip_grad_norm([], 1.0) == 0.0


@pytest.mark.parity
def test_clip_grad_value_matches_torch(torch):
    ps, tp = clip_setup(torch, 2.0)
    clip_grad_value(ps, 0.7)
    torch.nn.utils.clip_grad_value_(tp, 0.7, foreach=False)
    for p, t in zip(ps, tp):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
        assert np.abs(p.grad).max(initial=0) <= 0.7


# --- schedules -----------------------------------------------------------------------------------------------

SCHEDULES = [("StepLR", {"step_size": 3, "gamma": 0.5}),
             ("StepLR", {"step_size": 1}),
             ("ExponentialLR", {"gamma": 0.9}),
             ("CosineAnnealingLR", {"T_max": 7}),
             ("CosineAnnealingLR", {"T_max": 5, "eta_min": 0.01}),
             ("CosineAnnealingLR", {"T_max": 1, "eta_min": 0.05})]
SCHEDULERS = {"StepLR": StepLR, "ExponentialLR": ExponentialLR, "CosineAnnealingLR": CosineAnnealingLR}


def lr_trajectory(make_opt, make_sched, epochs, poke=None):
    """lr after construction and after each epoch; ``poke(opt, epoch)`` may change the lr by hand."""
    opt = make_opt()
    sched = make_sched(opt)
    lrs = [sched.get_last_lr()[0]]
    for epoch in range(epochs):
        opt.step()
        sched.step()
        if poke:
            poke(opt, epoch)
        lrs.append(sched.get_last_lr()[0])
    return lrs


@pytest.mark.parity
@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=[f"{n}-{k}" for n, k in SCHEDULES])
@pytest.mark.parametrize("poked", [False, True], ids=["plain", "lr-set-by-hand"])
def test_schedule_matches_torch(torch, name, kwargs, poked):
    epochs = 3 * kwargs.get("T_max", 7)

    def poke_ours(opt, epoch):
        if poked and epoch == 4:
            opt.lr = 0.3

    def poke_torch(opt, epoch):
        if poked and epoch == 4:
            opt.param_groups[0]["lr"] = 0.3

    ours = lr_trajectory(lambda: SGD([Parameter(np.zeros(2))], lr=0.2),
                         lambda o: SCHEDULERS[name](o, **kwargs), epochs, poke_ours)
    theirs = lr_trajectory(lambda: torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.2),
                           lambda o: getattr(torch.optim.lr_scheduler, name)(o, **kwargs), epochs, poke_torch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_cosine_follows_closed_form():
    opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    sched = CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    for epoch in range(1, 31):
        sched.step()
        closed = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * epoch / 10)) / 2
        assert opt.lr == pytest.approx(closed, rel=1e-12, abs=1e-15)


def test_step_lr_by_hand():
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    seen = [opt.lr]
    for _ in range(5):
        sched.step()
        seen.append(opt.lr)
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize("name,kwargs", SCHEDULES[:1] + SCHEDULES[3:5])
def test_schedule_state_dict_round_trip(name, kwargs):
    opt = SGD([Parameter(np.zeros(1))], lr=0.2)
    sched = SCHEDULERS[name](opt, **kwargs)
    for _ in range(6):
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))
    expected = []
    for _ in range(6):
        sched.step()
        expected.append(opt.lr)

    opt2 = SGD([Parameter(np.zeros(1))], lr=state["last_lr"])
    sched2 = SCHEDULERS[name](opt2, **{k: 1 for k in kwargs if k in ("step_size", "T_max")})
    sched2.load_state_dict(state)
    got = []
    for _ in range(6):
        sched2.step()
        got.append(opt2.lr)
    assert got == expected
    with pytest.raises(FormatError, match="not"):
        sched2.load_state_dict({**state, "type": "Other"})


def test_schedule_errors():
    opt = SGD([Parameter(np.zeros(1))])
    with pytest.raises(GraphError, match="step_size must be a positive integer"):
        StepLR(opt, step_size=0)
    with pytest.raises(GraphError, match="T_max must be a positive integer"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(GraphError, match="needs a graphnet Optimizer"):
        ExponentialLR("adam", gamma=0.9)

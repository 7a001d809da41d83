"""gn.distributed.data_parallel: the same loss, gradients and carried states as compile_train_step on the whole
batch (even and uneven shards), the same weights after 20 SGD steps, a killed worker reported and replaced, and
no worker left after close. One Ray for the module (starting it costs seconds); small float64 models."""
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.nn.containers import Sequential
from graphnet.nn.norm import BatchNormalization
from graphnet.optim import SGD
from graphnet.shards import concat_outputs, shard_sizes, take_rows
from graphnet.train import Learner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    gn.distributed.init(num_cpus=4)
    yield
    gn.distributed.shutdown()


def _mlp(dropout=0.0):
    x, t = gn.Input((None, 4)), gn.Input((None,))
    h = nn.Dropout(dropout)(nn.Tanh()(nn.Linear(4, 6)(x)))
    loss = nn.CrossEntropyCriterion()(nn.Linear(6, 3)(h), t)
    return gn.gModule([x, t], [loss]).float64()


def _copy(model):
    buf = io.BytesIO()
    gn.save(model, buf)
    return gn.load(io.BytesIO(buf.getvalue()))


def _reference(model, arrays):
    """compile_train_step on a copy of ``model``: (loss or (loss, *outputs), gradients)."""
    twin = _copy(model)
    res = gn.compile_train_step(twin)(*arrays)
    return res, [p.grad.copy() for p in twin.parameters()]


def _batch(rng, n):
    return [rng.standard_normal((n, 4)), rng.integers(0, 3, n)]


def _assert_same_step(step, model, arrays):
    (ref, grads) = _reference(model, arrays)
    for p in model.parameters():
        p.grad[...] = 7.0                             # stale gradients are replaced
    got = step(*arrays)
    assert isinstance(got, float) and got == pytest.approx(ref, rel=1e-10, abs=1e-12)
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, **TOL)


@pytest.fixture(scope="module")
def mlp_step():
    model = _mlp(dropout=0.5)                             # saved in training mode...
    with gn.distributed.data_parallel(model, workers=2) as step:
        model.evaluate()                                  # ...and used in evaluation mode (the same every time)
        yield step, model


@pytest.mark.parametrize("rows", [8, 7, 1])       # even shards, uneven shards, fewer rows than workers
def test_equals_compile_train_step_on_the_whole_batch(mlp_step, rng, rows):
    step, model = mlp_step
    _assert_same_step(step, model, _batch(rng, rows))


def test_weights_travel_only_when_they_changed(mlp_step, rng):
    step, model = mlp_step
    arrays = _batch(rng, 6)
    step(*arrays)
    sent = step.profile()["weights_sent"]
    step(*arrays)
    assert step.profile()["weights_sent"] == sent        # unchanged weights are not sent again
    model.parameters()[0].data[0, 0] += 0.5
    _assert_same_step(step, model, arrays)               # ...changed ones are, and used
    assert step.profile()["weights_sent"] == sent + 1


def test_the_workers_follow_the_model_s_mode(mlp_step, rng):
    step, model = mlp_step
    arrays = _batch(rng, 8)
    model.training()
    try:
        dropped = step(*arrays)
    finally:
        model.evaluate()
    assert dropped != pytest.approx(_reference(model, arrays)[0], rel=1e-6)     # Dropout was on
    _assert_same_step(step, model, arrays)                                       # and is off again


def test_a_changed_dtype_is_refused(mlp_step, rng):
    step, model = mlp_step
    model.float32()
    try:
        with pytest.raises(gn.InputError, match="now has 51 parameters of float32, its workers' copies 51 of float64"):
            step(*_batch(rng, 4))
    finally:
        model.float64()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_unrolled_rnn_with_carried_states(rng, backend):
    gn.manual_seed(3)
    cell = gn.rnn.lstm_cell(3, 4)
    T, B = 3, 5
    xs, ys = [gn.Input() for _ in range(T)], [gn.Input() for _ in range(T)]
    c0, h0 = gn.Input(), gn.Input()
    c, h = c0, h0
    head, nll = nn.Linear(4, 3), []
    for x_t, y_t in zip(xs, ys):
        c, h = cell(x_t, c, h)
        nll.append(nn.ClassNLLCriterion()(nn.LogSoftMax()(head(h)), y_t))
    loss = nn.MulConstant(1.0 / T)(nn.CAddTable()(nll))
    model = gn.gModule(xs + ys + [c0, h0], [loss, c, h]).float64()
    state = [np.zeros((B, 4)), np.zeros((B, 4))]
    with gn.distributed.data_parallel(model, workers=2, backend=backend) as step:
        for _ in range(2):                                 # the second window starts from the carried states
            arrays = [rng.standard_normal((B, 3)) for _ in range(T)] + [rng.integers(0, 3, B) for _ in range(T)]
            (ref_loss, *ref_state), grads = _reference(model, arrays + state)
            got_loss, *state = step(*arrays, *state)
            assert got_loss == pytest.approx(ref_loss, rel=1e-10)
            for p, g in zip(model.parameters(), grads):
                np.testing.assert_allclose(p.grad, g, **TOL)
            for s, r in zip(state, ref_state):
                assert s.shape == (B, 4)
                np.testing.assert_allclose(s, r, **TOL)


def test_twenty_sgd_momentum_steps_give_the_same_weights(mlp_step, rng, monkeypatch):
    step, model = mlp_step
    monkeypatch.setattr(gn.distributed, "INLINE_BYTES", 0)     # the weights go through Ray's object store
    model.parameters()[0].data[0, 0] += 0.1              # new weights: each of the 20 steps sends them
    twin, start = _copy(model), model.parameters()[0].data.copy()
    local = gn.compile_train_step(twin)
    opt, opt_twin = SGD(model.parameters(), lr=0.1, momentum=0.9), SGD(twin.parameters(), lr=0.1, momentum=0.9)
    sent = step.profile()["weights_sent"]
    for i in range(20):
        arrays = _batch(rng, 9 + i % 3)
        assert step(*arrays) == pytest.approx(local(*arrays), rel=1e-8)
        opt.step()
        opt_twin.step()
    assert step.profile()["weights_sent"] == sent + 20
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-8, atol=1e-10)
    assert np.abs(model.parameters()[0].data - start).max() > 0.01          # it did train


def test_a_killed_worker_is_named_then_replaced(mlp_step, rng):
    step, model = mlp_step
    arrays = _batch(rng, 8)
    step(*arrays)
    pid = step.worker_pids[1]
    grads = [p.grad.copy() for p in model.parameters()]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(gn.distributed.WorkerError, match=rf"worker 1 \(pid {pid}\) of 2 died during the step"):
        step(*arrays)
    for p, g in zip(model.parameters(), grads):           # no half-written gradient
        np.testing.assert_array_equal(p.grad, g)
    _assert_same_step(step, model, arrays)                # the retry runs on a new worker
    assert step.worker_pids[1] not in (None, pid)


def test_a_worker_error_names_the_rows(mlp_step, rng):
    step, _ = mlp_step
    with pytest.raises(gn.GraphnetError, match=r"worker 0, on rows 0:3 of the batch"):
        step(rng.standard_normal((6, 5)), rng.integers(0, 3, 6))      # 5 features where the Linear takes 4


def test_inputs_must_share_their_rows(mlp_step, rng):
    step, _ = mlp_step
    with pytest.raises(gn.InputError, match=r"input 0 has shape \(6, 4\), input 1 has shape \(5,\)"):
        step(rng.standard_normal((6, 4)), rng.integers(0, 3, 5))
    with pytest.raises(gn.InputError, match="input 1 is a scalar"):
        step(rng.standard_normal((6, 4)), np.int64(1))


def test_rows_are_shared_out_and_joined_back_in_order():
    assert shard_sizes(8, 2) == [4, 4] and shard_sizes(7, 3) == [3, 2, 2] and shard_sizes(2, 3) == [1, 1]
    x, table = np.arange(10).reshape(5, 2), [np.arange(5), [np.arange(10.0).reshape(5, 2)]]
    parts = [take_rows([x, table], lo, hi) for lo, hi in ((0, 3), (3, 5))]
    assert parts[1][0].tolist() == [[6, 7], [8, 9]] and parts[1][1][0].tolist() == [3, 4]
    assert parts[0][1][1][0].shape == (3, 2)
    joined = concat_outputs([[p[0], p[1][1][0]] for p in parts])
    np.testing.assert_array_equal(joined[0], x)
    np.testing.assert_array_equal(joined[1], table[1][0])
    with pytest.raises(gn.InputError, match="output 1 is a scalar"):
        concat_outputs([[np.float64(1.0)], [np.float64(2.0)]])


def test_an_unknown_backend_is_refused_before_any_worker_starts():
    with pytest.raises(gn.InputError, match="data_parallel: backend must be one of"):
        gn.distributed.data_parallel(_mlp(), workers=2, backend="cuda")


def test_batch_statistics_are_refused():
    model = Sequential(nn.Linear(2, 4), BatchNormalization(4), nn.Linear(4, 2))
    x, t = gn.Input(), gn.Input()
    graph = gn.gModule([x, t], [nn.CrossEntropyCriterion()(model(x), t)])
    with pytest.raises(gn.InputError, match=r"BatchNormalization\(4\) is in training mode"):
        gn.distributed.data_parallel(graph, workers=2)


def test_more_cpus_than_ray_has_are_refused():
    with pytest.raises(gn.InputError, match=r"2 workers x 5 threads need 10 CPUs and Ray has \d+ free \(of 4\)"):
        gn.distributed.data_parallel(_mlp(), workers=2, threads=5)


def test_close_stops_every_worker(rng):
    model = _mlp()
    with gn.distributed.data_parallel(model, workers=2) as step:
        step(*_batch(rng, 4))
        pids = step.worker_pids
    for _ in range(600):                                  # Ray ends them asynchronously: wait up to a minute
        if not any(_alive(p) for p in pids):
            break
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    with pytest.raises(gn.InputError, match="closed"):
        step(*_batch(rng, 4))


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:                  # a zombie has ended too
        return f.read().split(") ")[-1][0] != "Z"


def test_learner_fit_with_two_workers_matches_one_process(rng):
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    t = rng.integers(0, 3, 60)
    x = centres[t] + rng.standard_normal((60, 2))
    histories = []
    for workers in (0, 2):
        gn.manual_seed(0)
        model = Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).float64()
        learner = Learner(model, nn.CrossEntropyCriterion().float64(), SGD(model.parameters(), lr=0.1,
                          momentum=0.9), batch_size=16, progress=False)
        histories.append(learner.fit((x, t), epochs=2, valid=(x[:20], t[:20]), workers=workers))
    for key in ("train_loss", "train_acc", "valid_loss"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-9)


def test_importing_graphnet_does_not_import_ray():
    code = "import sys, graphnet; graphnet.distributed.data_parallel; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.strip() == "False", out.stderr

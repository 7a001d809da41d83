"""One module, one plan, many threads: every result equals the sequential one."""
import sys
import threading

import numpy as np
import pytest

import graphnet as gn

N_THREADS, CALLS = 8, 200


@pytest.fixture
def often_switching():
    """Threads switch every microsecond: interleavings that a coarse switch interval would hide."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def cell():
    return gn.rnn.lstm_cell(3, 5).float64()


def inputs(rng, n):
    """n calls' inputs, batch sizes 2 and 3 mixed (two executables in turn)."""
    out = []
    for k in range(n):
        b = 2 + k % 2
        out.append([rng.standard_normal((b, 3)), rng.standard_normal((b, 5)), rng.standard_normal((b, 5))])
    return out


def in_threads(work, n_calls):
    """work(k) for k in range(n_calls), spread over N_THREADS threads started together; results by k."""
    results, errors = [None] * n_calls, []
    start = threading.Barrier(N_THREADS)

    def run(t):
        start.wait()
        try:
            for k in range(t, n_calls, N_THREADS):
                results[k] = work(k)
        except Exception as e:          # reported below, with the thread that failed
            errors.append((t, e))
    threads = [threading.Thread(target=run, args=(t,)) for t in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    return results


def backward_in_threads_adds_up(m, call, n_calls):
    """call(k) (a forward and a backward) in threads returns the sequential results, and m's parameter
    gradients hold the same sum, added in another order."""
    m.zero_grad()
    want = [call(k) for k in range(n_calls)]
    want_grads = [p.grad.copy() for p in m.parameters()]
    m.zero_grad()
    got = in_threads(call, n_calls)
    assert all(same(g, w) for g, w in zip(got, want))
    for p, w in zip(m.parameters(), want_grads):
        np.testing.assert_allclose(p.grad, w, rtol=1e-10, atol=1e-12)


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_forward_from_many_threads_equals_sequential(rng, often_switching):
    m = cell()
    plan = gn.compile(m)
    xs = inputs(rng, N_THREADS * CALLS)
    want = [plan.forward(*x) for x in xs]
    for run in (lambda k: plan.forward(*xs[k]), lambda k: m.forward(xs[k])):
        got = in_threads(run, len(xs))
        assert all(same(g, w) for g, w in zip(got, want))
    st = plan.stats()
    assert st["compiles"] == 3 and st["signatures_generic"] == 1, "sizes 2 and 3, and a probe at 5"
    assert st["bindings"] >= 2, "other threads ran in arrays of their own"


def test_forward_backward_from_many_threads_equals_sequential(rng, often_switching):
    m = cell()
    xs = inputs(rng, N_THREADS * CALLS // 2)
    gs = [[rng.standard_normal((len(x[0]), 5)) for _ in range(2)] for x in xs]

    def call(k):
        m.forward(xs[k])
        return m.backward(xs[k], gs[k])
    backward_in_threads_adds_up(m, call, len(xs))


def test_train_steps_from_many_threads_equal_sequential(rng, often_switching):
    x, t = gn.Input((None, 3)), gn.Input((None, 2))
    loss = gn.nn.MSECriterion()(gn.nn.Linear(3, 2)(x), t)
    step = gn.compile_train_step(gn.gModule([x, t], [loss]).float64())
    data = [(rng.standard_normal((4, 3)), rng.standard_normal((4, 2))) for _ in range(N_THREADS * 50)]
    want = [step(*d) for d in data]
    assert in_threads(lambda k: step(*data[k]), len(data)) == want


def test_threads_meeting_new_batch_sizes_at_once_get_the_sequential_results(rng, often_switching):
    m = cell()
    xs = [[rng.standard_normal((b, 3)), rng.standard_normal((b, 5)), rng.standard_normal((b, 5))]
          for b in list(range(2, 12)) * 8]
    sequential = gn.compile(m)
    want = [sequential.forward(*x) for x in xs]
    plan = gn.compile(m)
    got = in_threads(lambda k: plan.forward(*xs[k]), len(xs))
    assert all(same(g, w) for g, w in zip(got, want))
    st = plan.stats()
    assert st["compiles"] + st["batch_sizes_bound"] == 10 + 1, "each size made once (and one probe)"


class _ScaleAdd(gn.Module):
    """A torch7-style numpy module with a parameter: its acc_grad_parameters adds into .grad itself."""

    def __init__(self, n):
        super().__init__()
        self.weight = gn.Parameter(np.linspace(0.5, 1.5, n))

    def update_output(self, x):
        return x * self.weight.data

    def update_grad_input(self, x, grad_output):
        return grad_output * self.weight.data

    def acc_grad_parameters(self, x, grad_output):
        w = self.weight.grad
        for r in range(len(x)):           # row by row: a thread switch inside would lose another's rows
            w += grad_output[r] * x[r]


@pytest.mark.parametrize("level", [0, 2])
def test_parameter_gradients_from_many_threads_add_up(rng, often_switching, level):
    # a numpy module's acc_grad_parameters (it is lent .grad) and the level-0 interpreter's additions run
    # under the same lock as a plan's: no thread's contribution is lost or misplaced
    x = gn.Input((None, 4))
    m = gn.gModule([x], [gn.nn.Linear(4, 4)(_ScaleAdd(4)(x))]).float64()
    plan = gn.compile(m, level=level)
    xs = [rng.standard_normal((3, 4)) for _ in range(N_THREADS * 40)]
    gs = [rng.standard_normal((3, 4)) for _ in xs]

    def call(k):
        plan.forward(xs[k])
        return plan.backward(gs[k])
    backward_in_threads_adds_up(m, call, len(xs))

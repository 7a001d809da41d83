"""backward(inputs, grads) is the gradient of the function the matching forward computed (its dropout masks).

The loop is char-rnn's train.lua / wojzaremba's bp(): one clone of the cell per time step, all sharing the
weights; forward over time, then backward over time indexing x[t] again (a new view of the same memory).
"""
import threading

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.testing import rel_error

D, H, B, T = 3, 4, 2, 3


def cell(shared=None):
    """h = tanh(W_x dropout(x) + W_h dropout(prev_h)); ``shared``: the Linears whose parameters to share."""
    x, prev_h = gn.Input((None, D), name="x"), gn.Input((None, H), name="prev_h")
    i2h, h2h = nn.Linear(D, H), nn.Linear(H, H)
    if shared is not None:                  # torch7's clone('weight', 'bias', 'gradWeight', 'gradBias')
        for mine, theirs in zip((i2h, h2h), shared):
            mine.weight, mine.bias = theirs.weight, theirs.bias
    h = nn.Tanh()(nn.CAddTable()([i2h(nn.Dropout(0.4)(x)), h2h(nn.Dropout(0.3)(prev_h))]))
    return gn.gModule([x, prev_h], [h]).float64(), (i2h, h2h)


def clones(n):
    first, linears = cell()
    return [first] + [cell(linears)[0] for _ in range(n - 1)], first.parameters()


def loss_of_loop(cs, x, h0, gs, seed):
    """forward through time: L = sum_t <g_t, h_t>, every mask drawn after manual_seed(seed)."""
    gn.manual_seed(seed)
    h, hs = h0, []
    for t in range(T):
        h = cs[t].forward([x[t], h])
        hs.append(h)
    return sum(float(np.sum(g * h)) for g, h in zip(gs, hs)), hs


def backward_loop(cs, x, h0, gs, hs, view=lambda a: a):
    """backward through time, indexing x[t] again (``view`` may copy it)."""
    dh, dxs = np.zeros_like(h0), [None] * T
    for t in reversed(range(T)):
        dxs[t], dh = cs[t].backward([view(x[t]), hs[t - 1] if t else h0], gs[t] + dh)
    return dxs, dh


@pytest.mark.parametrize("view", [lambda a: a, lambda a: a.copy(), lambda a: a[...]],
                         ids=["new view", "equal copy", "view of a view"])
def test_clone_loop_with_dropout_matches_finite_differences_under_the_forwards_masks(rng, view):
    cs, params = clones(T)
    x, h0 = rng.standard_normal((T, B, D)), rng.standard_normal((B, H))
    gs = [rng.standard_normal((B, H)) for _ in range(T)]
    for p in params:
        p.grad[...] = 0
    _, hs = loss_of_loop(cs, x, h0, gs, seed=7)
    dxs, dh0 = backward_loop(cs, x, h0, gs, hs, view)

    def numeric(a):
        out, eps = np.zeros_like(a), 1e-6
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + eps
            up = loss_of_loop(cs, x, h0, gs, seed=7)[0]
            a[i] = keep - eps
            down = loss_of_loop(cs, x, h0, gs, seed=7)[0]
            a[i] = keep
            out[i] = (up - down) / (2 * eps)
        return out
    for p in params:
        assert rel_error(p.grad, numeric(p.data)) < 1e-7, p.name
    assert rel_error(np.stack(dxs), numeric(x)) < 1e-7
    assert rel_error(dh0, numeric(h0)) < 1e-7
    dropped = np.stack(dxs) == 0
    assert dropped.any() and not dropped.all(), "the masks did drop some inputs"


def test_backward_on_other_inputs_is_refused_while_masks_are_drawn_and_recomputed_otherwise(rng):
    m = cell()[0]
    x, h = rng.standard_normal((B, D)), rng.standard_normal((B, H))
    g = rng.standard_normal((B, H))
    m.forward([x, h])
    with pytest.raises(gn.InputError, match=r"other than the last forward's \(input 0 holds other values\).*"
                                            r"dropout masks"):
        m.backward([x + 1, h], g)
    with pytest.raises(gn.InputError, match=r"input 1 has shape \(3, 4\), not \(2, 4\)"):
        m.backward([x, np.zeros((3, H))], g)
    # evaluation mode: the function is deterministic, so backward runs forward on the inputs it is given
    m.evaluate()
    m.forward([x, h])
    m.zero_grad()
    got = m.backward([x + 1, h], g)
    ref = gn.compile(m)
    ref.forward(x + 1, h)
    m.zero_grad()
    want = ref.backward(g)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_a_threads_backward_pairs_with_that_threads_forward(rng):
    m = cell()[0].evaluate()
    xs = [(rng.standard_normal((B, D)), rng.standard_normal((B, H))) for _ in range(2)]
    g = rng.standard_normal((B, H))
    want = []
    for x, h in xs:
        plan = gn.compile(m)
        plan.forward(x, h)
        want.append(plan.backward(g)[0])
    both_forward = threading.Barrier(2)
    got = [None, None]

    def run(k):
        x, h = xs[k]
        m.forward([x, h])
        both_forward.wait()                # the other thread's forward ran since
        got[k] = m.backward([x, h], g)[0]
    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_backward_in_a_thread_that_ran_no_forward_says_so(rng):
    plan = gn.compile(cell()[0])
    plan.forward(rng.standard_normal((B, D)), rng.standard_normal((B, H)))
    err = []
    th = threading.Thread(target=lambda: err.append(pytest.raises(gn.InputError, plan.backward, np.ones((B, H)))))
    th.start()
    th.join()
    assert "needs a forward() first (in this thread)" in str(err[0].value)

"""nngraph's LSTM cell, spelled as the seed spells it, against torch.nn.LSTMCell in float64."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn

from conftest import require_torch

pytestmark = pytest.mark.parity


def build_lstm(input_size, H):
    """nngraph's LSTM cell, as graphnet.rnn spells it (Linear i2h/h2h, CAddTable, Narrow, Sigmoid, Tanh, CMulTable)."""
    return gn.rnn.lstm_cell(input_size, H)


def _linears(cell):
    return [n.module for n in cell.order if isinstance(n.module, nn.Linear)]


def _copy_weights(cell, tcell, H, torch):
    # graphnet's gate order along the 4H axis: i, f, o, g; torch's: i, f, g, o
    perm = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
    i2h, h2h = _linears(cell)
    with torch.no_grad():
        i2h.weight.data[...] = tcell.weight_ih.numpy()[perm]
        i2h.bias.data[...] = tcell.bias_ih.numpy()[perm]
        h2h.weight.data[...] = tcell.weight_hh.numpy()[perm]
        h2h.bias.data[...] = tcell.bias_hh.numpy()[perm]
    return perm, i2h, h2h


def _rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


@pytest.mark.parametrize("level", [0, 2])
def test_lstm_cell_matches_torch(level):
    torch = require_torch()
    B, D, H = 5, 3, 4
    cell = build_lstm(D, H).float64()
    tcell = torch.nn.LSTMCell(D, H).double()
    perm, i2h, h2h = _copy_weights(cell, tcell, H, torch)
    rng = np.random.default_rng(0)
    x, c, h = rng.standard_normal((B, D)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    gc, gh = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    plan = gn.compile(cell, level=level)
    nc, nh = plan.forward(x, c, h)
    gx, gcp, ghp = plan.backward(gc, gh)

    tx, tc, th = (torch.tensor(a, requires_grad=True) for a in (x, c, h))
    tnh, tnc = tcell(tx, (th, tc))
    (tnc * torch.tensor(gc) + tnh * torch.tensor(gh)).sum().backward()

    assert _rel(nc, tnc.detach().numpy()) < 1e-10
    assert _rel(nh, tnh.detach().numpy()) < 1e-10
    for mine, theirs in ((gx, tx), (gcp, tc), (ghp, th)):
        assert _rel(mine, theirs.grad.numpy()) < 1e-10
    assert _rel(i2h.weight.grad, tcell.weight_ih.grad.numpy()[perm]) < 1e-10
    assert _rel(i2h.bias.grad, tcell.bias_ih.grad.numpy()[perm]) < 1e-10
    assert _rel(h2h.weight.grad, tcell.weight_hh.grad.numpy()[perm]) < 1e-10
    assert _rel(h2h.bias.grad, tcell.bias_hh.grad.numpy()[perm]) < 1e-10


@pytest.mark.parametrize("level", [0, 2])
def test_three_step_unroll_by_calling_the_cell_matches_torch(level):
    torch = require_torch()
    B, D, H, T = 3, 4, 5, 3
    cell = build_lstm(D, H).float64()
    xs = [gn.Input() for _ in range(T)]
    c0, h0 = gn.Input(), gn.Input()
    c, h = c0, h0
    for t in range(T):
        c, h = cell(xs[t], c, h)                      # the same cell: shared weights
    unrolled = gn.gModule(xs + [c0, h0], [c, h]).float64()

    tcell = torch.nn.LSTMCell(D, H).double()
    perm, i2h, h2h = _copy_weights(cell, tcell, H, torch)
    assert len(unrolled.parameters()) == 4            # shared, not copied
    rng = np.random.default_rng(1)
    xa = [rng.standard_normal((B, D)) for _ in range(T)]
    ca, ha = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    gc, gh = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    plan = gn.compile(unrolled, level=level)
    nc, nh = plan.forward(*xa, ca, ha)
    grads = plan.backward(gc, gh)

    txs = [torch.tensor(a, requires_grad=True) for a in xa]
    tc, th = torch.tensor(ca, requires_grad=True), torch.tensor(ha, requires_grad=True)
    hh, cc = th, tc
    for t in range(T):
        hh, cc = tcell(txs[t], (hh, cc))
    (cc * torch.tensor(gc) + hh * torch.tensor(gh)).sum().backward()
    assert _rel(nc, cc.detach().numpy()) < 1e-10 and _rel(nh, hh.detach().numpy()) < 1e-10
    for mine, theirs in zip(grads, txs + [tc, th]):
        assert _rel(mine, theirs.grad.numpy()) < 1e-10
    assert _rel(i2h.weight.grad, tcell.weight_ih.grad.numpy()[perm]) < 1e-10
    assert _rel(i2h.bias.grad, tcell.bias_ih.grad.numpy()[perm]) < 1e-10
    assert _rel(h2h.weight.grad, tcell.weight_hh.grad.numpy()[perm]) < 1e-10
    assert _rel(h2h.bias.grad, tcell.bias_hh.grad.numpy()[perm]) < 1e-10


def test_char_rnn_two_layer_lstm_parameter_count():
    # char-rnn's LSTM.lua: 2 layers of 128, vocab 65, one-hot input, Linear decoder + LogSoftMax
    V, H, L = 65, 128, 2
    x = gn.Input()
    inputs, outputs = [x], []
    below = x
    for layer in range(L):
        prev_c, prev_h = gn.Input(), gn.Input()
        inputs += [prev_c, prev_h]
        size = V if layer == 0 else H
        i2h = nn.Linear(size, 4 * H)(below)
        h2h = nn.Linear(H, 4 * H)(prev_h)
        all_sums = i2h + h2h
        i, f, o, g = nn.SplitTable(1)(nn.Reshape(4, H)(all_sums)).split(4)
        i, f, o, g = nn.Sigmoid()(i), nn.Sigmoid()(f), nn.Sigmoid()(o), nn.Tanh()(g)
        next_c = f * prev_c + i * g
        next_h = o * nn.Tanh()(next_c)
        outputs += [next_c, next_h]
        below = next_h
    logsoft = nn.LogSoftMax()(nn.Linear(H, V)(below))
    model = gn.gModule(inputs, outputs + [logsoft])
    assert sum(p.data.size for p in model.parameters()) == 240321
    flat_w, flat_g = model.get_parameters()
    assert flat_w.size == flat_g.size == 240321
    outs = model.forward([np.eye(V, dtype=np.float32)[[1, 2]]] + [np.zeros((2, H), np.float32)] * 4)
    assert outs[-1].shape == (2, V)
    np.testing.assert_allclose(np.exp(outs[-1]).sum(1), 1.0, rtol=1e-5)

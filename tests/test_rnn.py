"""graphnet.rnn: the cells against torch.nn's in float64 (weights copied, gate order mapped), unroll, stacked,
and the errors for cells that do not fit."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.rnn import gru_cell, lstm_cell, rnn_cell, stacked, unroll

from conftest import require_torch

LEVELS = [0, 2]
BUILDERS = {"lstm": lstm_cell, "gru": gru_cell, "rnn": rnn_cell}
TORCH_CELLS = {"lstm": "LSTMCell", "gru": "GRUCell", "rnn": "RNNCell"}


def _rel(mine, theirs):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    return np.abs(np.asarray(mine) - theirs).max() / max(np.abs(theirs).max(), 1e-30)


def _perm(kind, H):
    """Rows of torch's stacked gate weights in graphnet's order: LSTM i, f, o, g (torch: i, f, g, o);
    GRU r, z, n and RNN are the same in both."""
    if kind == "lstm":
        return np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
    return np.arange({"gru": 3, "rnn": 1}[kind] * H)


def _linears(cell):
    return {n.name: n.module for n in cell.order if isinstance(n.module, nn.Linear)}


def _copy_cell(cell, tcell, kind, H):
    """Copy torch's weights into the cell; returns [(graphnet Parameter, torch tensor, row permutation)]."""
    lin, perm = _linears(cell), _perm(kind, H)
    pairs = [(lin["i2h"].weight, tcell.weight_ih), (lin["i2h"].bias, tcell.bias_ih),
             (lin["h2h"].weight, tcell.weight_hh), (lin["h2h"].bias, tcell.bias_hh)]
    for p, t in pairs:
        p.data[...] = t.detach().numpy()[perm]
    return [(p, t, perm) for p, t in pairs]


def _torch_step(kind, tcell, x, states):
    """One torch step with graphnet's state order: LSTM (c, h) -> (c, h); GRU/RNN (h,) -> (h,)."""
    if kind == "lstm":
        c, h = states
        h2, c2 = tcell(x, (h, c))
        return [c2, h2]
    return [tcell(x, states[0])]


def _check_weight_grads(pairs):
    for p, t, perm in pairs:
        assert _rel(p.grad, t.grad.numpy()[perm]) < 1e-10, p.name


def _setup(kind, D, H, seed):
    torch = require_torch()
    torch.manual_seed(seed)
    cell = BUILDERS[kind](D, H).float64()
    tcell = getattr(torch.nn, TORCH_CELLS[kind])(D, H).double()
    return torch, cell, tcell, _copy_cell(cell, tcell, kind, H)


# --- parity -------------------------------------------------------------------------------------------------------

@pytest.mark.parity
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_matches_torch(kind, level):
    B, D, H = 4, 3, 5
    torch, cell, tcell, pairs = _setup(kind, D, H, seed=0)
    rng = np.random.default_rng(0)
    n_state = len(cell.inputs) - 1
    arrays = [rng.standard_normal((B, D))] + [rng.standard_normal((B, H)) for _ in range(n_state)]
    grads = [rng.standard_normal((B, H)) for _ in range(n_state)]

    plan = gn.compile(cell, level=level)
    outs = plan.forward(*arrays)
    gin = plan.backward(*grads)
    outs = outs if isinstance(outs, list) else [outs]
    gin = gin if isinstance(gin, list) else [gin]

    tin = [torch.tensor(a, requires_grad=True) for a in arrays]
    touts = _torch_step(kind, tcell, tin[0], tin[1:])
    sum((o * torch.tensor(g)).sum() for o, g in zip(touts, grads)).backward()

    for mine, theirs in zip(outs, touts):
        assert _rel(mine, theirs) < 1e-10
    for mine, theirs in zip(gin, tin):
        assert _rel(mine, theirs.grad) < 1e-10
    _check_weight_grads(pairs)


@pytest.mark.parity
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_three_step_unroll_matches_torch(kind, level):
    B, D, H, T = 3, 4, 5, 3
    torch, cell, tcell, pairs = _setup(kind, D, H, seed=1)
    rolled = unroll(cell, T)
    n_state = len(cell.inputs) - 1
    assert len(rolled.inputs) == T + n_state and len(rolled.outputs) == n_state
    assert len(rolled.parameters()) == 4                     # shared, not cloned
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((B, D)) for _ in range(T)]
    s0 = [rng.standard_normal((B, H)) for _ in range(n_state)]
    grads = [rng.standard_normal((B, H)) for _ in range(n_state)]

    plan = gn.compile(rolled, level=level)
    outs = plan.forward(*xs, *s0)
    gin = plan.backward(*grads)
    outs = outs if isinstance(outs, list) else [outs]

    txs = [torch.tensor(a, requires_grad=True) for a in xs]
    ts0 = [torch.tensor(a, requires_grad=True) for a in s0]
    states = ts0
    for t in range(T):
        states = _torch_step(kind, tcell, txs[t], states)
    sum((o * torch.tensor(g)).sum() for o, g in zip(states, grads)).backward()

    for mine, theirs in zip(outs, states):
        assert _rel(mine, theirs) < 1e-10
    for mine, theirs in zip(gin, txs + ts0):
        assert _rel(mine, theirs.grad) < 1e-10
    _check_weight_grads(pairs)


@pytest.mark.parity
@pytest.mark.parametrize("level", LEVELS)
def test_unrolled_stacked_lstm_with_decoder_matches_torch(level):
    """2 layers + decoder, unrolled 3 steps: final states first, then one log-prob output per step."""
    torch = require_torch()
    torch.manual_seed(2)
    B, V, H, L, T = 3, 7, 5, 2, 3
    model = stacked("lstm", V, H, L, vocab=V).float64()
    rolled = unroll(model, T)
    assert len(rolled.inputs) == T + 2 * L and len(rolled.outputs) == 2 * L + T
    layers = [n.module for n in model.order if isinstance(n.module, gn.gModule)]
    decoder = next(n.module for n in model.order if isinstance(n.module, nn.Linear))
    tcells = [torch.nn.LSTMCell(V if i == 0 else H, H).double() for i in range(L)]
    tdec = torch.nn.Linear(H, V).double()
    pairs = [pair for cell, tcell in zip(layers, tcells) for pair in _copy_cell(cell, tcell, "lstm", H)]
    decoder.weight.data[...] = tdec.weight.detach().numpy()
    decoder.bias.data[...] = tdec.bias.detach().numpy()

    rng = np.random.default_rng(2)
    xs = [np.eye(V)[rng.integers(0, V, B)] for _ in range(T)]
    s0 = [rng.standard_normal((B, H)) for _ in range(2 * L)]
    grads = [rng.standard_normal((B, H)) for _ in range(2 * L)] + [rng.standard_normal((B, V)) for _ in range(T)]
    plan = gn.compile(rolled, level=level)
    outs = plan.forward(*xs, *s0)
    gin = plan.backward(*grads)

    ts0 = [torch.tensor(a, requires_grad=True) for a in s0]
    states, logps = list(ts0), []
    for t in range(T):
        below, new = torch.tensor(xs[t]), []
        for i, tcell in enumerate(tcells):
            c, h = _torch_step("lstm", tcell, below, states[2 * i:2 * i + 2])
            new += [c, h]
            below = h
        states = new
        logps.append(torch.log_softmax(tdec(below), dim=1))
    touts = states + logps
    sum((o * torch.tensor(g)).sum() for o, g in zip(touts, grads)).backward()

    for mine, theirs in zip(outs, touts):
        assert _rel(mine, theirs) < 1e-10
    for mine, theirs in zip(gin[T:], ts0):
        assert _rel(mine, theirs.grad) < 1e-10
    _check_weight_grads(pairs)
    assert _rel(decoder.weight.grad, tdec.weight.grad) < 1e-10
    assert _rel(decoder.bias.grad, tdec.bias.grad) < 1e-10


# --- structure ----------------------------------------------------------------------------------------------------

def test_char_rnn_two_layer_lstm_has_240321_parameters():
    # char-rnn's LSTM.lua: rnn_size 128, 2 layers, vocab 65, one-hot input, Linear decoder + LogSoftMax
    model = stacked("lstm", 65, 128, 2, vocab=65)
    assert sum(p.data.size for p in model.parameters()) == 240321
    assert [n.name for n in model.inputs] == ["x", "prev_c1", "prev_h1", "prev_c2", "prev_h2"]
    assert [n.name for n in model.outputs] == ["next_c1", "next_h1", "next_c2", "next_h2", "logprobs"]
    outs = model.forward([np.eye(65, dtype=np.float32)[[1, 2]]] + [np.zeros((2, 128), np.float32)] * 4)
    assert outs[-1].shape == (2, 65)
    np.testing.assert_allclose(np.exp(outs[-1]).sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind, gates", [("gru", 3), ("rnn", 1)])
def test_stacked_gru_and_rnn_carry_one_state_per_layer(kind, gates):
    D, H, L, V = 6, 4, 3, 6
    model = stacked(kind, D, H, L, vocab=V)
    assert [n.name for n in model.inputs] == ["x", "prev_h1", "prev_h2", "prev_h3"]
    assert len(model.outputs) == L + 1
    per_layer = lambda d: gates * H * (d + H + 2)                       # noqa: E731
    assert sum(p.data.size for p in model.parameters()) == per_layer(D) + (L - 1) * per_layer(H) + H * V + V
    outs = model.forward([np.ones((2, D), np.float32)] + [np.zeros((2, H), np.float32)] * L)
    assert [o.shape for o in outs] == [(2, H)] * L + [(2, V)]


def test_stacked_without_vocab_returns_states_only_and_takes_a_builder():
    calls = []

    def my_cell(d, h):
        calls.append((d, h))
        return rnn_cell(d, h)
    model = stacked(my_cell, 3, 4, layers=2)
    assert calls == [(3, 4), (4, 4)]
    assert len(model.outputs) == 2
    assert not any(isinstance(n.module, nn.LogSoftMax) for n in model.order)


def test_stacked_dropout_sits_between_layers_and_before_the_decoder():
    model = stacked("lstm", 5, 4, 3, vocab=5, dropout=0.25)
    drops = [n for n in model.order if isinstance(n.module, nn.Dropout)]
    assert [n.name for n in drops] == ["dropout2", "dropout3", "dropout_top"]
    model.evaluate()
    a = model.forward([np.ones((2, 5), np.float32)] + [np.zeros((2, 4), np.float32)] * 6)
    b = model.forward([np.ones((2, 5), np.float32)] + [np.zeros((2, 4), np.float32)] * 6)
    np.testing.assert_array_equal(a[-1], b[-1])


def test_unroll_calls_the_same_cell_each_step_and_names_the_nodes():
    cell = lstm_cell(3, 2)
    rolled = unroll(cell, 4)
    steps = [n for n in rolled.order if n.module is cell]
    assert len(steps) == 4                                     # one call per step, no copies
    assert [n.name for n in rolled.inputs] == ["x_1", "x_2", "x_3", "x_4", "prev_c_0", "prev_h_0"]
    assert [n.name for n in rolled.outputs] == ["next_c_4", "next_h_4"]
    assert rolled.parameters() == cell.parameters()


def test_unroll_orders_several_step_inputs_and_extra_outputs_by_step():
    # a cell with two per-step inputs (x, u), one state, and one extra output y = state + u
    x, u, h = gn.Input(name="x"), gn.Input(name="u"), gn.Input(name="h")
    nh = nn.Tanh()(nn.CAddTable()(nn.Linear(2, 2)(x), h)).annotate(name="nh")
    y = nn.CAddTable()(nh, u).annotate(name="y")
    cell = gn.gModule([x, u, h], [nh, y])
    rolled = unroll(cell, 2, n_state=1)
    assert [n.name for n in rolled.inputs] == ["x_1", "u_1", "x_2", "u_2", "h_0"]
    assert [n.name for n in rolled.outputs] == ["nh_2", "y_1", "y_2"]
    a = [np.full((1, 2), v, np.float32) for v in (0.1, 1.0, 0.2, 2.0, 0.3)]
    h2, y1, y2 = rolled.forward(a)
    h1, y1_ref = cell.forward([a[0], a[1], a[4]])
    h2_ref, y2_ref = cell.forward([a[2], a[3], h1])
    np.testing.assert_allclose(y1, y1_ref, rtol=1e-6)
    np.testing.assert_allclose(y2, y2_ref, rtol=1e-6)
    np.testing.assert_allclose(h2, h2_ref, rtol=1e-6)


# --- errors -------------------------------------------------------------------------------------------------------

def test_unroll_rejects_what_is_not_a_cell():
    with pytest.raises(gn.GraphError, match="takes a cell gModule, got Linear"):
        unroll(nn.Linear(2, 2), 3)
    with pytest.raises(gn.GraphError, match="steps must be an int >= 1, got 0"):
        unroll(rnn_cell(2, 2), 0)
    x = gn.Input()
    no_state = gn.gModule([x], [nn.Tanh()(x)])
    with pytest.raises(gn.GraphError, match="carries no state"):
        unroll(no_state, 2)
    with pytest.raises(gn.GraphError, match="cannot carry 3 states: it has 3 input.*2 output"):
        unroll(lstm_cell(2, 2), 2, n_state=3)


def test_unroll_rejects_an_output_that_cannot_feed_its_state():
    x, h = gn.Input((None, 3), name="x"), gn.Input((None, 4), name="h")
    out = nn.Linear(3, 5)(x)                                   # (?, 5) cannot feed h (?, 4)
    cell = gn.gModule([x, h], [nn.CAddTable()(out, nn.Linear(4, 5)(h)).annotate(name="wide")])
    with pytest.raises(gn.GraphError, match=r"output 0 'wide' \(\?, 5\) cannot feed its state input 'h' \(\?, 4\)"):
        unroll(cell, 2)


def test_stacked_errors():
    with pytest.raises(gn.GraphError, match="unknown cell kind 'lstmm'"):
        stacked("lstmm", 3, 4)
    with pytest.raises(gn.GraphError, match="layers must be an int >= 1, got 0"):
        stacked("lstm", 3, 4, layers=0)
    with pytest.raises(gn.GraphError, match=r"dropout must be in \[0, 1\)"):
        stacked("lstm", 3, 4, dropout=1.0)

    def two_outputs(d, h):
        x, s = gn.Input(), gn.Input()
        return gn.gModule([x, s], [nn.Linear(d, h)(x), s])
    with pytest.raises(gn.GraphError, match="must take \\(x, \\*states\\).*2 input\\(s\\) need 1 output"):
        stacked(two_outputs, 3, 4)


# --- examples/rnn_lstm/cells.py: the tutorial cells, spelled out ---------------------------------------------------

def _cells_example():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "rnn_lstm" / "cells.py"
    spec = importlib.util.spec_from_file_location("cells_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_spelled_out_cells_compute_what_graphnet_rnn_builds(tmp_path, capsys):
    import shutil
    res = _cells_example().main(["--out", str(tmp_path)])
    capsys.readouterr()
    # the spelled-out cells have the same nodes, in the same order, as graphnet.rnn's ready-made ones
    for mine, built in ((res["rnn"], rnn_cell(3, 4)), (res["lstm"], lstm_cell(3, 4))):
        assert [type(n.module).__name__ for n in mine.order] == [type(n.module).__name__ for n in built.order]
    # with the same weights, the same outputs
    ref = lstm_cell(3, 4).float64()
    for p, q in zip(ref.parameters(), res["lstm"].parameters()):
        p.data[...] = q.data
    rng = np.random.default_rng(5)
    x, c, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    for a, b in zip(ref.forward([x, c, h]), res["lstm"].forward([x, c, h])):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # the unrolled graph is the cell stepped three times
    gen = np.random.default_rng(0)          # cells.py (seed 0) draws one x, then the three steps' inputs
    gen.standard_normal((2, 3))
    xs = [gen.standard_normal((2, 3)) for _ in range(3)]
    c, h = np.zeros((2, 4)), np.zeros((2, 4))
    for xt in xs:
        c, h = [np.array(o) for o in res["lstm"].forward([xt, c, h])]
    np.testing.assert_allclose(res["c_T"], c, rtol=1e-12)
    np.testing.assert_allclose(res["h_T"], h, rtol=1e-12)
    if shutil.which("dot"):
        for name in ("rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "lstm_unrolled", "lstm_plan"):
            assert "<svg" in (tmp_path / f"{name}.svg").read_text(encoding="utf-8"), name

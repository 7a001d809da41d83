"""examples/rnn_lstm/char_rnn.py: the training loop against a PyTorch twin, and a smoke run of the script."""
import importlib.util
import pathlib
import re
import shutil
import struct
import sys

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn

from conftest import require_torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
CLIP = 0.1
TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. However little known the feelings or views of such a man may be "
        "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
        "surrounding families, that he is considered the rightful property of some one or other "
        "of their daughters.\n") * 6


@pytest.fixture(scope="module")
def char_rnn():
    spec = importlib.util.spec_from_file_location("char_rnn", ROOT / "examples" / "rnn_lstm" / "char_rnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _torch_twin(torch, model, kind):
    """torch cells and decoder holding copies of the graphnet model's weights (gate order mapped)."""
    H, L = model.hidden, model.layers
    perm = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H] if kind == "lstm" else np.arange(GATES[kind] * H)
    inv = np.argsort(perm)
    layers = [n.module for n in model.cell.order if isinstance(n.module, gn.gModule)]
    decoder = next(n.module for n in model.cell.order if isinstance(n.module, nn.Linear))
    Cell = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[kind]
    tcells = [Cell(model.vocab if i == 0 else H, H).double() for i in range(L)]
    tdec = torch.nn.Linear(H, model.vocab).double()
    with torch.no_grad():
        for cell, tcell in zip(layers, tcells):
            lin = {n.name: n.module for n in cell.order if isinstance(n.module, nn.Linear)}
            tcell.weight_ih.copy_(torch.tensor(lin["i2h"].weight.data[inv]))
            tcell.bias_ih.copy_(torch.tensor(lin["i2h"].bias.data[inv]))
            tcell.weight_hh.copy_(torch.tensor(lin["h2h"].weight.data[inv]))
            tcell.bias_hh.copy_(torch.tensor(lin["h2h"].bias.data[inv]))
        tdec.weight.copy_(torch.tensor(decoder.weight.data))
        tdec.bias.copy_(torch.tensor(decoder.bias.data))
    return tcells, tdec


def _torch_window(torch, kind, tcells, tdec, x, y, state, vocab):
    """Mean NLL over the window's steps, and the final states (graphnet's order: c1, h1, c2, h2 / h1, h2)."""
    T, per = x.shape[1], 2 if kind == "lstm" else 1
    eye = torch.eye(vocab, dtype=torch.float64)
    losses = []
    for t in range(T):
        below, new = eye[torch.tensor(x[:, t])], []
        for i, tcell in enumerate(tcells):
            if kind == "lstm":
                c, h = state[2 * i], state[2 * i + 1]
                h, c = tcell(below, (h, c))
                new += [c, h]
            else:
                h = tcell(below, state[i])
                new.append(h)
            below = h
        state = new
        logp = torch.log_softmax(tdec(below), dim=1)
        losses.append(torch.nn.functional.nll_loss(logp, torch.tensor(y[:, t])))
    assert len(state) == per * len(tcells)
    return sum(losses) / T, state


@pytest.mark.parity
@pytest.mark.parametrize("kind,optim", [("lstm", "adam"), ("lstm", "rmsprop"), ("gru", "rmsprop"), ("rnn", "adam")])
def test_training_matches_a_pytorch_twin_for_five_steps(char_rnn, kind, optim):
    """Same weights, same windows, same clipping and optimizer: the losses agree to 1e-8 for five steps."""
    torch = require_torch()
    gn.manual_seed(3)
    vocab = char_rnn.Vocab(TEXT)
    x, y = char_rnn.make_batches(vocab.encode(TEXT), batch=4, seq_len=6)
    model = char_rnn.CharRNN(kind, len(vocab), hidden=8, layers=2, seq_len=6, dtype="float64")
    tcells, tdec = _torch_twin(torch, model, kind)
    params = model.parameters()
    opt = char_rnn.make_optimizer(params, optim, lr=2e-2)
    tparams = [p for m in tcells + [tdec] for p in m.parameters()]
    assert sum(p.data.size for p in params) == sum(p.numel() for p in tparams)
    topt = (torch.optim.RMSprop(tparams, lr=2e-2, alpha=0.95) if optim == "rmsprop"
            else torch.optim.Adam(tparams, lr=2e-2))

    state = model.zero_state(4)
    tstate = [torch.zeros(4, 8, dtype=torch.float64) for _ in state]
    ours, theirs, norms = [], [], []
    for k in range(5):
        arrays = model.arrays(x[k], y[k], state)
        loss, state = model.train_step(arrays)
        norms.append(char_rnn.clip_grad_norm(params, CLIP))     # small enough to clip every step
        opt.step()
        ours.append(loss)

        topt.zero_grad()
        tloss, tstate = _torch_window(torch, kind, tcells, tdec, x[k], y[k], tstate, len(vocab))
        tloss.backward()
        tnorm = torch.nn.utils.clip_grad_norm_(tparams, CLIP)
        topt.step()
        tstate = [s.detach() for s in tstate]
        theirs.append(tloss.item())
        assert norms[-1] == pytest.approx(tnorm.item(), rel=1e-8)
        for mine, their in zip(state, tstate):      # the carried states agree too
            np.testing.assert_allclose(mine, their.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    assert min(norms) > CLIP                        # clipping was exercised
    loss_again, _ = model.forward(model.arrays(x[0], y[0], model.zero_state(4)))
    assert loss_again < ours[0]                     # forward() sees the updated weights: it learned


def test_script_runs_and_ends_with_the_final_line(char_rnn, tmp_path, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out"
    res = char_rnn.main(["--text", str(text), "--iters", "6", "--eval-every", "3", "--hidden", "16",
                         "--layers", "1", "--seq-len", "8", "--batch", "4", "--out", str(out),
                         "--sample-len", "20", "--quiet", "--cell", "gru", "--lr", "1e-2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"final: train_loss \d+\.\d{4} val_loss \d+\.\d{4} \(nats/char\)", lines[-1])
    assert any(re.search(r"unigram entropy \d+\.\d{4} nats/char", s) for s in lines)
    assert lines[-1] == f"final: train_loss {res['train_loss']:.4f} val_loss {res['val_loss']:.4f} (nats/char)"
    assert len(res["history"]) == 6 and [i for i, _ in res["val_history"]] == [3, 6]
    png = (out / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (640, 400)
    assert (out / "vocab.json").exists() and (out / "samples.txt").exists()
    cell = gn.load(str(out / "char_rnn.gnet"))                  # the checkpoint is the trained one-step cell
    assert [p.data.shape for p in cell.parameters()] == [p.data.shape for p in res["model"].parameters()]
    for saved, trained in zip(cell.parameters(), res["model"].parameters()):
        np.testing.assert_array_equal(saved.data, trained.data)
    if shutil.which("dot"):                                     # the diagrams, the compiled plan's included
        for name in ("cell_forward", "cell_backward", "cell_plan", "stacked_forward"):
            assert "<svg" in (out / f"{name}.svg").read_text(encoding="utf-8")


def test_loss_plot_has_labelled_axes_and_a_legend(char_rnn):
    fig = char_rnn.loss_figure({"train": ([1, 2, 3], [4.0, 3.5, 3.2]), "validation": ([3], [3.4])})
    ax, = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("iteration", "nats/char")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation"]
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[4.0, 3.5, 3.2], [3.4]]


def test_loss_plot_without_matplotlib_says_what_to_install(char_rnn, tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure"):                 # importing them now fails
        monkeypatch.setitem(sys.modules, name, None)
    why = char_rnn.plot_losses(str(tmp_path / "loss.png"), {"train": ([1], [4.0])})
    assert "pip install matplotlib" in why and "graphnet[plot]" in why
    assert not (tmp_path / "loss.png").exists()


def test_batches_are_contiguous_streams(char_rnn):
    ids = np.arange(101)
    x, y = char_rnn.make_batches(ids, batch=2, seq_len=5)
    assert x.shape == y.shape == (10, 2, 5)
    np.testing.assert_array_equal(x[0, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(x[1, 0], [5, 6, 7, 8, 9])      # window k+1 continues window k
    np.testing.assert_array_equal(x[0, 1], [50, 51, 52, 53, 54])
    np.testing.assert_array_equal(y, x + 1)
    assert char_rnn.unigram_entropy("abab") == pytest.approx(np.log(2))


def test_progress_is_tqdm_on_a_terminal_and_tenths_in_a_log(char_rnn):
    import io

    log = io.StringIO()
    p = char_rnn.Progress(20, log)
    for i in range(1, 21):
        p.update(i, 100, loss=1.25)
    p.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("20/20 loss 1.2500")     # a line per tenth, and the last

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    p = char_rnn.Progress(5, tty)
    for i in range(1, 6):
        p.update(i, 100, loss=1.25)
    p.close()
    assert p.bar is not None and "5/5" in tty.getvalue() and "loss 1.2500" in tty.getvalue()   # tqdm's bar

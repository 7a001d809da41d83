"""nngraph's two tutorial cells, written out node by node, run once, unrolled, and drawn.

    python examples/rnn_lstm/cells.py [--out DIR]

The vanilla RNN and the LSTM below are the seed's, spelled as the nngraph tutorial spells them (``nn.Identity()()``
becomes ``gn.Input()``, ``nn.Narrow(2, 1, n)`` becomes ``nn.Narrow(1, 0, n)``). ``graphnet.rnn`` builds the same
graphs (``rnn_cell``, ``lstm_cell``); this file shows every node, so that the drawings can be read against it.
README.md in this folder explains each node. Writes DIR/{rnn,lstm}_{forward,backward}.svg, DIR/lstm_unrolled.svg
and DIR/lstm_plan.svg (the compiled plan) when graphviz's ``dot`` is available.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import graphnet as gn
from graphnet import nn
from graphnet.rnn import unroll

GATE = {"style": "filled", "fillcolor": "#fde7c8"}          # the sigmoid gates, drawn orange
STATE = {"style": "filled", "fillcolor": "#d7ecd9"}         # the cell state, drawn green


def rnn(n_in: int, n_hid: int) -> gn.gModule:
    """next_h = tanh(i2h(x) + h2h(prev_h))"""
    x = gn.Input(name="x")
    prev_h = gn.Input(name="prev_h")
    i2h = nn.Linear(n_in, n_hid)(x)                     # input to hidden
    h2h = nn.Linear(n_hid, n_hid)(prev_h)               # hidden to hidden: the recurrence
    added = nn.CAddTable()(i2h, h2h)
    next_h = nn.Tanh()(added)
    return gn.gModule([x, prev_h], [next_h])            # nodes are named after these variables


def lstm(n_in: int, H: int) -> gn.gModule:
    """next_c = f * prev_c + i * g; next_h = o * tanh(next_c); gates i, f, o, g from one preactivation"""
    x = gn.Input(name="x")
    prev_c = gn.Input(name="prev_c")
    prev_h = gn.Input(name="prev_h")
    i2h = nn.Linear(n_in, 4 * H)(x)                     # all four gates' input parts in one matrix
    h2h = nn.Linear(H, 4 * H)(prev_h)                   # ... and their recurrent parts
    preact = nn.CAddTable()(i2h, h2h)
    gate_preact = nn.Narrow(1, 0, 3 * H)(preact)        # columns 0 .. 3H-1: the three gates
    gates = nn.Sigmoid()(gate_preact).annotate(**GATE)
    transform_preact = nn.Narrow(1, 3 * H, H)(preact)   # columns 3H .. 4H-1: the candidate
    in_transform = nn.Tanh()(transform_preact)
    in_gate = nn.Narrow(1, 0, H)(gates).annotate(**GATE)
    forget_gate = nn.Narrow(1, H, H)(gates).annotate(**GATE)
    out_gate = nn.Narrow(1, 2 * H, H)(gates).annotate(**GATE)
    kept = nn.CMulTable()(forget_gate, prev_c)          # what the cell keeps of its memory
    written = nn.CMulTable()(in_gate, in_transform)     # what it writes into it
    next_c = nn.CAddTable()(kept, written).annotate(**STATE)
    tanh_c = nn.Tanh()(next_c)
    next_h = nn.CMulTable()(out_gate, tanh_c)           # what it shows
    return gn.gModule([x, prev_c, prev_h], [next_c, next_h])


def _optional_render():
    try:
        from graphnet.render import render
        return render
    except ImportError:
        return None


def draw(render, module, path, log, **options) -> None:
    if render is None:
        return
    try:
        render(module, path, **options)
        log(f"wrote {path}")
    except Exception as e:           # most often: graphviz's `dot` is not installed (a gn.RenderError)
        log(f"note: could not draw {path}: {type(e).__name__}: {str(e).splitlines()[0]}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="nngraph's RNN and LSTM cells, node by node")
    p.add_argument("--out", default="out/cells")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    log = print
    os.makedirs(a.out, exist_ok=True)
    gn.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    B, D, H, T = 2, 3, 4, 3

    rnn_cell, lstm_cell = rnn(D, H).float64(), lstm(D, H).float64()
    x = rng.standard_normal((B, D))
    h = rnn_cell.forward([x, np.zeros((B, H))])
    c1, h1 = lstm_cell.forward([x, np.zeros((B, H)), np.zeros((B, H))])
    gx, gc, gh = lstm_cell.backward([x, np.zeros((B, H)), np.zeros((B, H))], [np.ones((B, H)), np.ones((B, H))])
    log(f"rnn:  next_h {h.shape}; lstm: next_c {c1.shape}, next_h {h1.shape}, d(sum)/dx {gx.shape}")
    summary = getattr(lstm_cell, "summary", None)
    try:
        log(summary())
    except Exception:                # the summary table lives in render.py
        pass

    # through time: the same cell called on new nodes each step (shared weights), then packed
    rolled = unroll(lstm_cell, T)
    xs = [rng.standard_normal((B, D)) for _ in range(T)]
    c_T, h_T = rolled.forward(xs + [np.zeros((B, H)), np.zeros((B, H))])
    log(f"unrolled {T} steps: inputs {[n.name for n in rolled.inputs]}, outputs "
        f"{[n.name for n in rolled.outputs]}, {len(rolled.parameters())} parameter arrays (shared)")

    render = _optional_render()
    if render is None:
        log("note: graphnet.render is not available; skipping the drawings")
    shapes = {"rnn": [np.zeros((1, D)), np.zeros((1, H))], "lstm": [np.zeros((1, D))] + [np.zeros((1, H))] * 2}
    for name, cell in (("rnn", rnn_cell), ("lstm", lstm_cell)):
        draw(render, cell, os.path.join(a.out, f"{name}_forward.svg"), log)
        draw(render, cell, os.path.join(a.out, f"{name}_backward.svg"), log, which="backward",
             inputs=shapes[name])
    draw(render, rolled, os.path.join(a.out, "lstm_unrolled.svg"), log)
    # what the compiler makes of the LSTM: its schedule, the buffers reused, the values kept for backward
    draw(render, gn.compile(lstm_cell), os.path.join(a.out, "lstm_plan.svg"), log, inputs=shapes["lstm"])
    return {"rnn": rnn_cell, "lstm": lstm_cell, "unrolled": rolled, "h_T": h_T, "c_T": c_T}


if __name__ == "__main__":
    main()

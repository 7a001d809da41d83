"""Recurrent cells as graphs, nngraph-style, and the two ways to grow them: stacking and unrolling.

Every builder returns a gModule made of graphnet's nn modules; nothing here runs numbers. The conventions
(char-rnn's): a cell takes its per-step input first, then its previous states; it returns its next states,
in the same order, then any per-step extra outputs.

    rnn_cell(D, H)   inputs (x, prev_h)          outputs (next_h,)          next_h = tanh(i2h(x) + h2h(prev_h))
    lstm_cell(D, H)  inputs (x, prev_c, prev_h)  outputs (next_c, next_h)   gates i, f, o, g along the 4H axis
    gru_cell(D, H)   inputs (x, prev_h)          outputs (next_h,)          torch.nn.GRUCell; gates r, z, n
    stacked(...)     inputs (x, states of layer 1, layer 2, ...)  outputs (next states..., [log-probs])
    unroll(cell, T)  the same cell called T times on new nodes: shared weights, no clones

x is a float (batch, input_size) array; for characters, a one-hot row per character.
"""
from __future__ import annotations

from typing import Callable

from . import nn
from .errors import GraphError, caller_site, fmt_shape
from .gmodule import gModule
from .node import Input

__all__ = ["rnn_cell", "lstm_cell", "gru_cell", "stacked", "unroll", "CELLS"]


# --- cells ----------------------------------------------------------------------------------------------------

def rnn_cell(input_size: int, hidden: int) -> gModule:
    """Elman RNN: next_h = tanh(W_ih x + b_ih + W_hh prev_h + b_hh) (torch.nn.RNNCell, nonlinearity tanh)."""
    x, prev_h = Input(name="x"), Input(name="prev_h")
    i2h = nn.Linear(input_size, hidden)(x)
    h2h = nn.Linear(hidden, hidden)(prev_h)
    next_h = nn.Tanh()(nn.CAddTable()(i2h, h2h))
    return _named(gModule([x, prev_h], [next_h]), "rnn_cell")


def lstm_cell(input_size: int, hidden: int) -> gModule:
    """The nngraph LSTM: preact = i2h(x) + h2h(prev_h) split into gates i, f, o (sigmoid) and g (tanh);
    next_c = f * prev_c + i * g; next_h = o * tanh(next_c)."""
    H = hidden
    x, prev_c, prev_h = Input(name="x"), Input(name="prev_c"), Input(name="prev_h")
    i2h = nn.Linear(input_size, 4 * H)(x)
    h2h = nn.Linear(H, 4 * H)(prev_h)
    preact = nn.CAddTable()(i2h, h2h)
    gates = nn.Sigmoid()(nn.Narrow(1, 0, 3 * H)(preact))          # the three sigmoid gates at once
    in_transform = nn.Tanh()(nn.Narrow(1, 3 * H, H)(preact))
    in_gate = nn.Narrow(1, 0, H)(gates)
    forget_gate = nn.Narrow(1, H, H)(gates)
    out_gate = nn.Narrow(1, 2 * H, H)(gates)
    next_c = nn.CAddTable()(nn.CMulTable()(forget_gate, prev_c), nn.CMulTable()(in_gate, in_transform))
    next_h = nn.CMulTable()(out_gate, nn.Tanh()(next_c))
    return _named(gModule([x, prev_c, prev_h], [next_c, next_h]), "lstm_cell")


def gru_cell(input_size: int, hidden: int) -> gModule:
    """torch.nn.GRUCell: r, z = sigmoid(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z});
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); next_h = (1 - z) * n + z * h. Gate order r, z, n."""
    H = hidden
    x, prev_h = Input(name="x"), Input(name="prev_h")
    i2h = nn.Linear(input_size, 3 * H)(x)
    h2h = nn.Linear(H, 3 * H)(prev_h)
    gates = nn.Sigmoid()(nn.Narrow(1, 0, 2 * H)(nn.CAddTable()(i2h, h2h)))
    reset_gate = nn.Narrow(1, 0, H)(gates)
    update_gate = nn.Narrow(1, H, H)(gates)
    # the reset gate scales h2h's candidate part, bias included (torch's form, not the 2014 paper's)
    candidate = nn.Tanh()(nn.CAddTable()(nn.Narrow(1, 2 * H, H)(i2h),
                                         nn.CMulTable()(reset_gate, nn.Narrow(1, 2 * H, H)(h2h))))
    keep = nn.AddConstant(1.0)(nn.MulConstant(-1.0)(update_gate))  # 1 - z
    next_h = nn.CAddTable()(nn.CMulTable()(keep, candidate), nn.CMulTable()(update_gate, prev_h))
    return _named(gModule([x, prev_h], [next_h]), "gru_cell")


CELLS: dict[str, Callable[[int, int], gModule]] = {"rnn": rnn_cell, "lstm": lstm_cell, "gru": gru_cell}


# --- stacking -------------------------------------------------------------------------------------------------

def stacked(kind: str | Callable[[int, int], gModule], input_size: int, hidden: int, layers: int = 1,
            vocab: int | None = None, dropout: float = 0.0) -> gModule:
    """``layers`` cells on top of each other, char-rnn's LSTM.lua layout.

    ``kind``: "lstm", "gru", "rnn", or a builder ``f(input_size, hidden) -> gModule`` whose cell takes
    (x, *states) and returns its next states, the last of them being the h passed up to the next layer.
    Inputs: x (batch, input_size), then each layer's states (LSTM: c1, h1, c2, h2, ...; GRU/RNN: h1, h2, ...).
    Outputs: each layer's next states in the same order, then, when ``vocab`` is given, the log-probabilities
    (batch, vocab) of a Linear(hidden, vocab) decoder + LogSoftMax on the top h. ``dropout`` > 0 puts
    Dropout(dropout) on the input of every layer above the first and before the decoder, as char-rnn does.
    Each layer is its own cell gModule, nested (drawn as a cluster; the compiler inlines it).
    """
    build = _cell_builder(kind)
    for what, v in (("input_size", input_size), ("hidden", hidden), ("layers", layers)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise GraphError(f"stacked: {what} must be an int >= 1, got {v!r} (at {caller_site()})")
    if vocab is not None and (isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1):
        raise GraphError(f"stacked: vocab must be None or an int >= 1, got {vocab!r} (at {caller_site()})")
    if not 0.0 <= float(dropout) < 1.0:
        raise GraphError(f"stacked: dropout must be in [0, 1), got {dropout!r} (at {caller_site()})")

    x = Input(name="x")
    inputs, outputs = [x], []
    below = x
    for layer in range(1, layers + 1):
        cell = build(input_size if layer == 1 else hidden, hidden)
        n_state = _states_of(cell, f"stacked: the layer-{layer} cell")
        states = [Input(name=f"{_input_name(cell, 1 + j)}{layer}") for j in range(n_state)]
        if layer > 1 and dropout > 0:
            below = nn.Dropout(dropout)(below).annotate(name=f"dropout{layer}")
        new = _as_tuple(cell(below, *states), n_state)
        for node, s in zip(new, states):
            node.annotate(name=s.name.replace("prev_", "next_", 1))
        inputs += states
        outputs += list(new)
        below = new[-1]
    if vocab is not None:
        if dropout > 0:
            below = nn.Dropout(dropout)(below).annotate(name="dropout_top")
        logprobs = nn.LogSoftMax()(nn.Linear(hidden, vocab)(below)).annotate(name="logprobs")
        outputs.append(logprobs)
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", "cell")
    return _named(gModule(inputs, outputs), f"stacked_{name}")


# --- unrolling ------------------------------------------------------------------------------------------------

def unroll(cell: gModule, steps: int, n_state: int | None = None) -> gModule:
    """The cell called ``steps`` times, each step's first ``n_state`` outputs fed to the next step's last
    ``n_state`` inputs. Every step calls the SAME cell gModule, so the weights are shared and their
    gradients add up over time (nngraph's way; nothing is cloned).

    ``n_state`` (default: all inputs but the first) is how many states the cell carries.
    With m = inputs - n_state per-step inputs and e = outputs - n_state per-step extra outputs, the result has
    inputs:  step 1's m inputs, step 2's m inputs, ..., step T's, then the n_state initial states;
    outputs: the n_state final states, then step 1's e extra outputs, ..., step T's.
    Names follow the cell's: input ``x`` becomes ``x_1 .. x_T``, state ``prev_c`` becomes ``prev_c_0``
    (the initial one), output ``logprobs`` of step t becomes ``logprobs_t``.
    """
    site = caller_site()
    if not isinstance(cell, gModule):
        raise GraphError(f"unroll takes a cell gModule, got {type(cell).__name__} (at {site})")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise GraphError(f"unroll: steps must be an int >= 1, got {steps!r} (at {site})")
    n_in, n_out = len(cell.inputs), len(cell.outputs)
    k = n_in - 1 if n_state is None else n_state
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GraphError(f"unroll: {cell.label()} has {n_in} input(s) and {n_out} output(s); it carries no "
                         f"state (n_state={k!r}). A recurrent cell's first outputs feed its last inputs "
                         f"(at {site})")
    if k > n_in or k > n_out:
        raise GraphError(f"unroll: {cell.label()} cannot carry {k} states: it has {n_in} input(s) and {n_out} "
                         f"output(s); its first {k} outputs must feed its last {k} inputs (at {site})")
    _check_state_shapes(cell, k, site)

    m = n_in - k
    step_inputs = [[Input(shape=cell.inputs[i].shape, name=f"{_input_name(cell, i)}_{t}") for i in range(m)]
                   for t in range(1, steps + 1)]
    init = [Input(shape=cell.inputs[m + j].shape, name=f"{_input_name(cell, m + j)}_0") for j in range(k)]
    states, extras = init, []
    for t in range(1, steps + 1):
        outs = _as_tuple(cell(*step_inputs[t - 1], *states), n_out)
        for i, node in enumerate(outs):
            node.annotate(name=f"{_output_name(cell, i)}_{t}")
        states, extras = list(outs[:k]), extras + list(outs[k:])
    inputs = [x for xs in step_inputs for x in xs] + init
    rolled = gModule(inputs, states + extras)
    if rolled.dtype != cell.dtype:      # a new gModule starts at the default dtype; keep the cell's
        rolled.type(cell.dtype)
    return _named(rolled, f"{cell.name or 'cell'}_x{steps}")


# --- helpers --------------------------------------------------------------------------------------------------

def _cell_builder(kind):
    if isinstance(kind, str):
        if kind not in CELLS:
            raise GraphError(f"stacked: unknown cell kind {kind!r}; use one of {sorted(CELLS)} or pass a builder "
                             f"f(input_size, hidden) -> gModule (at {caller_site()})")
        return CELLS[kind]
    if callable(kind):
        return kind
    raise GraphError(f"stacked: kind must be a cell name or a builder, got {type(kind).__name__} "
                     f"(at {caller_site()})")


def _states_of(cell, who):
    """How many states a stackable cell carries: inputs (x, *states) -> outputs (*next_states)."""
    if not isinstance(cell, gModule):
        raise GraphError(f"{who} builder returned {type(cell).__name__}, not a gModule (at {caller_site()})")
    n_in, n_out = len(cell.inputs), len(cell.outputs)
    if n_in < 2 or n_out != n_in - 1:
        raise GraphError(f"{who} ({cell.label()}) must take (x, *states) and return its next states: "
                         f"{n_in} input(s) need {n_in - 1} output(s), it has {n_out} (at {caller_site()})")
    return n_out


def _check_state_shapes(cell, k, site):
    """Each fed-back output must fit the state input it feeds, where both shapes are known."""
    m = len(cell.inputs) - k
    for j in range(k):
        out, inp = cell.outputs[j], cell.inputs[m + j]
        a = out.shape if isinstance(out.shape, tuple) else None
        b = inp.shape
        if a is None or b is None:
            continue
        if len(a) != len(b) or any(p is not None and q is not None and p != q for p, q in zip(a, b)):
            raise GraphError(f"unroll: {cell.label()}'s output {j} '{out.display_name()}' {fmt_shape(a)} cannot "
                             f"feed its state input '{inp.display_name()}' {fmt_shape(b)} (at {site})", out)


def _as_tuple(node, n):
    return tuple(node.split(n)) if n > 1 else (node,)


def _input_name(cell, i):
    return cell.inputs[i].name or f"in{i}"


def _output_name(cell, i):
    return cell.outputs[i].name or f"out{i}"


def _named(gm, name):
    gm.name = name
    return gm

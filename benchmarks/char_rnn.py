"""One char-rnn training iteration, side by side: graphnet vs PyTorch, at char-rnn's defaults.

    python benchmarks/char_rnn.py [--batch 50 --seq-len 50 --hidden 128 --layers 2 --vocab 65]
    python benchmarks/char_rnn.py --quick             # a few rounds only

An iteration is: forward over ``seq-len`` steps of a 2-layer LSTM (one-hot input, Linear decoder, LogSoftMax,
ClassNLL per step, mean), backward, gradient clipping (global norm 5) and an RMSprop step. Contenders:

- graphnet, compile_train_step: the unrolled model as one gModule, forward+backward as one fused plan
- graphnet, forward + backward: the same gModule through ``model.forward`` / ``model.backward``
- PyTorch eager, same primitives: the very same graph (Linear i2h/h2h, add, narrow, sigmoid, tanh, mul) in a
  Python loop over time steps, autograd: the twin of examples/rnn_lstm/char_rnn.py's model
- PyTorch nn.LSTM: torch's fused CPU LSTM layer (2 layers) + Linear + log_softmax + nll_loss

All start from graphnet's weights (gate rows reordered for nn.LSTM) and the same batch; before timing, one
iteration of each in float64 must give the same loss (relative error < 1e-10). Then they run alternately in one
process (the order rotated every round, the garbage collector paused) and the table gives the median and the
fastest round in ms. Nothing here asserts a speed: it is for reading.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _threads import threads_from_argv  # noqa: E402

THREADS = threads_from_argv(sys.argv)         # before numpy and torch are imported

import numpy as np  # noqa: E402

from _common import fmt_ms, gn, machine_line, markdown_table, median_ms, nn, time_alternating  # noqa: E402
from graphnet.compile.numba_backend import numba_available  # noqa: E402
from graphnet.optim import RMSprop, clip_grad_norm  # noqa: E402
from graphnet.rnn import stacked, unroll  # noqa: E402

LR, ALPHA, CLIP = 2e-3, 0.95, 5.0


def graphnet_model(V, H, L, T, dtype):
    """The unrolled stacked LSTM with its mean per-step NLL: inputs x_1..x_T, y_1..y_T, states; one scalar.
    Returns the model and the one-step cell (whose nested layer cells and decoder hold the weights)."""
    cell = stacked("lstm", V, H, L, vocab=V)
    rolled = unroll(cell, T)
    k = 2 * L
    xs, ys = [gn.Input() for _ in range(T)], [gn.Input() for _ in range(T)]
    s0 = [gn.Input() for _ in range(k)]
    outs = rolled(*xs, *s0).split(k + T)
    loss = nn.MulConstant(1.0 / T)(nn.CAddTable()([nn.ClassNLLCriterion()(outs[k + t], ys[t]) for t in range(T)]))
    return gn.gModule(xs + ys + s0, [loss]).type(dtype), cell


def graphnet_weights(cell):
    """[(i2h, h2h) per layer], decoder: graphnet's Linear modules, weights (out x in) as torch lays them out."""
    layers = [n.module for n in cell.order if isinstance(n.module, gn.gModule)]
    lin = [{n.name: n.module for n in c.order if isinstance(n.module, nn.Linear)} for c in layers]
    decoder = next(n.module for n in cell.order if isinstance(n.module, nn.Linear))
    return [(d["i2h"], d["h2h"]) for d in lin], decoder


def graphnet_contenders(args, x, y, dtype):
    V, H, L, T, B = args.vocab, args.hidden, args.layers, args.seq_len, args.batch
    gn.manual_seed(0)
    model, cell = graphnet_model(V, H, L, T, dtype)
    params = model.parameters()
    eye = np.eye(V, dtype=dtype)
    arrays = [eye[x[:, t]] for t in range(T)] + [np.ascontiguousarray(y[:, t]) for t in range(T)]
    arrays += [np.zeros((B, H), dtype) for _ in range(2 * L)]
    one = np.array(1.0, dtype)
    step = gn.compile_train_step(model)
    opt1, opt2 = RMSprop(params, lr=LR, alpha=ALPHA), RMSprop(params, lr=LR, alpha=ALPHA)
    # both contenders train the same weights (each with its own optimizer state): the work per call is alike

    def fused():
        loss = step(*arrays)
        clip_grad_norm(params, CLIP)
        opt1.step()
        return loss

    def fwd_bwd():
        model.zero_grad_parameters()
        loss = model.forward(arrays)
        model.backward(arrays, one)
        clip_grad_norm(params, CLIP)
        opt2.step()
        return float(loss)
    out = {"graphnet, compile_train_step": fused, "graphnet, forward + backward": fwd_bwd}
    if numba_available():
        kernels, opt3 = gn.compile_train_step(model, backend="numba"), RMSprop(params, lr=LR, alpha=ALPHA)

        def fused_numba():
            loss = kernels(*arrays)
            clip_grad_norm(params, CLIP)
            opt3.step()
            return loss
        out['graphnet, compile_train_step(backend="numba")'] = fused_numba
    return out, cell


def torch_contenders(args, x, y, dtype, cell):
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(THREADS)
    V, H, L, T, B = args.vocab, args.hidden, args.layers, args.seq_len, args.batch
    dt = getattr(torch, np.dtype(dtype).name)
    onehot = torch.eye(V, dtype=dt)[torch.tensor(x)]                       # (B, T, V)
    targets = torch.tensor(y)
    g_layers, g_dec = graphnet_weights(cell)
    t = lambda a: torch.tensor(np.array(a, dtype))                         # noqa: E731

    # the same graph as graphnet's cell, op for op, with graphnet's weights (same gate order i, f, o, g)
    i2h = [torch.nn.Linear(V if i == 0 else H, 4 * H).to(dt) for i in range(L)]
    h2h = [torch.nn.Linear(H, 4 * H).to(dt) for i in range(L)]
    dec = torch.nn.Linear(H, V).to(dt)
    with torch.no_grad():
        for (gi, gh), ti, th in zip(g_layers, i2h, h2h):
            ti.weight.copy_(t(gi.weight.data)), ti.bias.copy_(t(gi.bias.data))
            th.weight.copy_(t(gh.weight.data)), th.bias.copy_(t(gh.bias.data))
        dec.weight.copy_(t(g_dec.weight.data)), dec.bias.copy_(t(g_dec.bias.data))
    prims = [p for m in i2h + h2h + [dec] for p in m.parameters()]
    opt1 = torch.optim.RMSprop(prims, lr=LR, alpha=ALPHA)

    def eager():
        opt1.zero_grad()
        state = [torch.zeros(B, H, dtype=dt) for _ in range(2 * L)]
        total = 0.0
        for s in range(T):
            below, new = onehot[:, s], []
            for i in range(L):
                prev_c, prev_h = state[2 * i], state[2 * i + 1]
                preact = i2h[i](below) + h2h[i](prev_h)
                gates = torch.sigmoid(preact.narrow(1, 0, 3 * H))
                g = torch.tanh(preact.narrow(1, 3 * H, H))
                ig, fg, og = gates.narrow(1, 0, H), gates.narrow(1, H, H), gates.narrow(1, 2 * H, H)
                c = fg * prev_c + ig * g
                h = og * torch.tanh(c)
                new += [c, h]
                below = h
            state = new
            total = total + torch.nn.functional.nll_loss(torch.log_softmax(dec(below), 1), targets[:, s])
        loss = total / T
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prims, CLIP)
        opt1.step()
        return loss.item()

    # torch's gate order is i, f, g, o: swap graphnet's last two H-row blocks
    perm = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
    lstm = torch.nn.LSTM(V, H, L, batch_first=True).to(dt)
    dec2 = torch.nn.Linear(H, V).to(dt)
    with torch.no_grad():
        for i, (gi, gh) in enumerate(g_layers):
            getattr(lstm, f"weight_ih_l{i}").copy_(t(gi.weight.data[perm]))
            getattr(lstm, f"bias_ih_l{i}").copy_(t(gi.bias.data[perm]))
            getattr(lstm, f"weight_hh_l{i}").copy_(t(gh.weight.data[perm]))
            getattr(lstm, f"bias_hh_l{i}").copy_(t(gh.bias.data[perm]))
        dec2.weight.copy_(t(g_dec.weight.data)), dec2.bias.copy_(t(g_dec.bias.data))
    fused_params = list(lstm.parameters()) + list(dec2.parameters())
    opt2 = torch.optim.RMSprop(fused_params, lr=LR, alpha=ALPHA)

    def fused():
        opt2.zero_grad()
        hs, _ = lstm(onehot)
        logp = torch.log_softmax(dec2(hs), 2)
        loss = torch.nn.functional.nll_loss(logp.reshape(B * T, V), targets.reshape(B * T))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(fused_params, CLIP)
        opt2.step()
        return loss.item()
    return {"PyTorch eager, same primitives": eager, "PyTorch nn.LSTM": fused}


def contenders(args, dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(0, args.vocab, (args.batch, args.seq_len))
    y = rng.integers(0, args.vocab, (args.batch, args.seq_len))
    ours, cell = graphnet_contenders(args, x, y, dtype)
    return {**ours, **torch_contenders(args, x, y, dtype, cell)}


def check_agreement(args) -> str:
    """First-iteration losses in float64, every contender from the same weights: they must agree.
    (The graphnet contenders share one set of weights: each is checked on a fresh build.)"""
    names = list(contenders(args, np.float64))
    losses = {name: contenders(args, np.float64)[name]() for name in names}
    ref = next(iter(losses.values()))
    worst = max(abs(v - ref) / abs(ref) for v in losses.values())
    if worst > 1e-10:
        raise SystemExit("char_rnn benchmark: the contenders disagree in float64: " +
                         ", ".join(f"{k} {v:.12f}" for k, v in losses.items()))
    return f"float64 check: all {len(losses)} give loss {ref:.10f} on the first iteration (max rel. diff {worst:.1e})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--reps", type=int, default=30, help="at most this many timed rounds")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timing for the slowest contender")
    p.add_argument("--quick", action="store_true", help="3 rounds, a short budget")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/torch threads (read before import)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--no-check", action="store_true", help="skip the float64 agreement check")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.budget = 3, 0.5

    check = "" if args.no_check else check_agreement(args)
    runs = contenders(args, np.dtype(args.dtype).type)
    for fn in runs.values():          # compile and allocate first, so that the round count sees warm calls
        fn()
    times = time_alternating(runs, max_reps=args.reps, budget_s=args.budget, min_reps=min(5, args.reps))
    base = median_ms(next(iter(times.values())))
    rows = [[name, fmt_ms(median_ms(ts)), fmt_ms(1e3 * min(ts)), f"{median_ms(ts) / base:.2f}x"]
            for name, ts in times.items()]
    print(f"char-rnn iteration: batch {args.batch}, seq {args.seq_len}, {args.layers}x{args.hidden} LSTM, "
          f"vocab {args.vocab}, {args.dtype}, RMSprop + clipping; median of "
          f"{len(next(iter(times.values())))} alternating rounds")
    print(f"{machine_line()}, BLAS/OpenMP threads {THREADS}")
    if check:
        print(check)
    print()
    print(markdown_table(["implementation", "ms / iteration (median)", "fastest", "vs first row"], rows))
    return {name: statistics.median(ts) for name, ts in times.items()}


if __name__ == "__main__":
    main()

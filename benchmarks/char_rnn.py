"""One char-rnn training iteration, side by side: graphnet vs PyTorch, at char-rnn's defaults.

    python benchmarks/char_rnn.py [--reps 20] [--batch 50 --seq-len 50 --hidden 128 --layers 2 --vocab 65]

An iteration is: forward over ``seq-len`` steps of a 2-layer LSTM (one-hot input, Linear decoder, LogSoftMax,
ClassNLL per step, mean), backward, gradient clipping (global norm 5) and an RMSprop step. Contenders:

- graphnet, compile_train_step: the unrolled model as one gModule, forward+backward as one fused plan
- graphnet, forward + backward: the same gModule through ``model.forward`` / ``model.backward``
- PyTorch eager, same primitives: the very same graph (Linear i2h/h2h, add, narrow, sigmoid, tanh, mul) in a
  Python loop over time steps, autograd
- PyTorch nn.LSTM: torch's fused CPU LSTM layer (2 layers) + Linear + log_softmax + nll_loss

All run in this process, alternating one iteration each per round, on the same batch; the table gives the median
and the fastest round in ms. Nothing here asserts a speed: it is for reading.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import graphnet as gn
from graphnet import nn
from graphnet.optim import RMSprop, clip_grad_norm
from graphnet.rnn import stacked, unroll


def graphnet_model(V, H, L, T, dtype):
    """The unrolled stacked LSTM with its mean per-step NLL: inputs x_1..x_T, y_1..y_T, states; one scalar."""
    cell = stacked("lstm", V, H, L, vocab=V)
    rolled = unroll(cell, T)
    k = 2 * L
    xs, ys = [gn.Input() for _ in range(T)], [gn.Input() for _ in range(T)]
    s0 = [gn.Input() for _ in range(k)]
    outs = rolled(*xs, *s0).split(k + T)
    loss = nn.MulConstant(1.0 / T)(nn.CAddTable()([nn.ClassNLLCriterion()(outs[k + t], ys[t]) for t in range(T)]))
    return gn.gModule(xs + ys + s0, [loss]).type(dtype)


def graphnet_contenders(args, x, y):
    V, H, L, T, B = args.vocab, args.hidden, args.layers, args.seq_len, args.batch
    model = graphnet_model(V, H, L, T, args.dtype)
    params = model.parameters()
    opt = RMSprop(params, lr=2e-3, alpha=0.95)
    eye = np.eye(V, dtype=args.dtype)
    arrays = [eye[x[:, t]] for t in range(T)] + [np.ascontiguousarray(y[:, t]) for t in range(T)]
    arrays += [np.zeros((B, H), args.dtype) for _ in range(2 * L)]
    one = np.array(1.0, args.dtype)
    out = {}
    if hasattr(gn, "compile_train_step"):
        step = gn.compile_train_step(model)

        def fused():
            loss = step(*arrays)
            clip_grad_norm(params, 5.0)
            opt.step()
            return loss
        out["graphnet, compile_train_step"] = fused

    def fwd_bwd():
        opt.zero_grad()
        loss = model.forward(arrays)
        model.backward(arrays, one)
        clip_grad_norm(params, 5.0)
        opt.step()
        return float(loss)
    out["graphnet, forward + backward"] = fwd_bwd
    return out


def torch_contenders(args, x, y):
    try:
        import torch
    except ImportError:
        return {}
    V, H, L, T, B = args.vocab, args.hidden, args.layers, args.seq_len, args.batch
    dt = getattr(torch, args.dtype)
    torch.manual_seed(0)
    onehot = torch.eye(V, dtype=dt)[torch.tensor(x)]                       # (B, T, V)
    targets = torch.tensor(y)
    out = {}

    # the same graph as graphnet's cell, op for op
    i2h = [torch.nn.Linear(V if i == 0 else H, 4 * H).to(dt) for i in range(L)]
    h2h = [torch.nn.Linear(H, 4 * H).to(dt) for i in range(L)]
    dec = torch.nn.Linear(H, V).to(dt)
    prims = [p for m in i2h + h2h + [dec] for p in m.parameters()]
    opt1 = torch.optim.RMSprop(prims, lr=2e-3, alpha=0.95)

    def eager():
        opt1.zero_grad()
        state = [torch.zeros(B, H, dtype=dt) for _ in range(2 * L)]
        total = 0.0
        for t in range(T):
            below, new = onehot[:, t], []
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
            total = total + torch.nn.functional.nll_loss(torch.log_softmax(dec(below), 1), targets[:, t])
        loss = total / T
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prims, 5.0)
        opt1.step()
        return loss.item()
    out["PyTorch eager, same primitives"] = eager

    lstm = torch.nn.LSTM(V, H, L, batch_first=True).to(dt)
    dec2 = torch.nn.Linear(H, V).to(dt)
    fused_params = list(lstm.parameters()) + list(dec2.parameters())
    opt2 = torch.optim.RMSprop(fused_params, lr=2e-3, alpha=0.95)

    def fused():
        opt2.zero_grad()
        hs, _ = lstm(onehot)
        logp = torch.log_softmax(dec2(hs), 2)
        loss = torch.nn.functional.nll_loss(logp.reshape(B * T, V), targets.reshape(B * T))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(fused_params, 5.0)
        opt2.step()
        return loss.item()
    out["PyTorch nn.LSTM"] = fused
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = p.parse_args(argv)
    gn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, args.vocab, (args.batch, args.seq_len))
    y = rng.integers(0, args.vocab, (args.batch, args.seq_len))

    runs = {**graphnet_contenders(args, x, y), **torch_contenders(args, x, y)}
    t0 = time.perf_counter()
    for fn in runs.values():                      # compile / allocate outside the timings
        for _ in range(args.warmup):
            fn()
    warm = time.perf_counter() - t0
    times = {name: [] for name in runs}
    for _ in range(args.reps):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - t))

    try:
        import torch
        threads = f", torch threads {torch.get_num_threads()}"
    except ImportError:
        threads = ", PyTorch not installed"
    print(f"char-rnn iteration: batch {args.batch}, seq {args.seq_len}, {args.layers}x{args.hidden} LSTM, "
          f"vocab {args.vocab}, {args.dtype}; median of {args.reps} alternating rounds "
          f"(warm-up {warm:.1f} s{threads})\n")
    base = statistics.median(times[next(iter(times))])
    print("| implementation | ms / iteration (median) | fastest | vs first row |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.1f} | {min(ts):.1f} | {med / base:.2f}x |")
    return times


if __name__ == "__main__":
    main()

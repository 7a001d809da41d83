"""char-rnn in graphnet: a character-level language model trained with truncated backpropagation through time.

    python examples/rnn_lstm/char_rnn.py                   # CPython's pydoc topics (~465k chars), no download
    python examples/rnn_lstm/char_rnn.py --text input.txt --cell gru --layers 2 --hidden 256 --iters 5000
    python examples/rnn_lstm/char_rnn.py --workers 2       # each gradient on 2 Ray workers (graphnet[distributed])

The model is Karpathy's char-rnn (LSTM.lua): one-hot characters -> ``layers`` stacked cells -> Linear decoder ->
LogSoftMax. Training builds ONE gModule: the stacked cell unrolled over ``--seq-len`` steps (shared weights: the
same cell called on new nodes each step), a ClassNLLCriterion per step, and their mean as the one scalar output
(nats/char). The final states of each batch are the initial states of the next (each batch row is a contiguous
stream of the text), so the gradient is truncated at ``--seq-len`` steps but the memory is not.

``gn.compile_train_step`` runs that gModule forward and backward as one plan: it gives the loss, the final states
and the weight gradients; ``clip_grad_norm`` and Adam (or char-rnn's RMSprop) from graphnet.optim update them.

Writes to ``--out``: the first layer's cell drawn forward, backward and as the compiled plan, and the stacked cell
(SVG; needs graphviz's ``dot``), the loss curves (loss.png, drawn with matplotlib: ``pip install graphnet[plot]``;
without it the run says so and skips the plot), the checkpoint (``gn.save`` of the one-step cell, JSON + npz), the vocabulary (vocab.json)
and samples.txt. The last line printed is ``final: train_loss X val_loss Y (nats/char)``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter


def _threads_from_argv(argv) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


# BLAS reads its thread count when numpy loads, so --threads is read here, before the import. One thread by
# default (unless OPENBLAS_NUM_THREADS & co. are set): the matrices are small (50 x 128 by 128 x 512), a second
# thread gains ~20% on an idle machine, and on a machine shared with other jobs spinning BLAS threads made
# iterations 2-10x slower.
if __name__ == "__main__":
    _threads = _threads_from_argv(sys.argv)
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if _threads is not None:
            os.environ[_var] = _threads
        else:
            os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import graphnet as gn  # noqa: E402
from graphnet import nn  # noqa: E402
from graphnet.optim import Adam, CosineAnnealingLR, RMSprop, clip_grad_norm  # noqa: E402
from graphnet.rnn import CELLS, stacked, unroll  # noqa: E402
from graphnet.train import _tqdm  # noqa: E402  (tqdm when installed, else None)


# --- data -------------------------------------------------------------------------------------------------------

def load_text(path: str | None = None) -> str:
    """The corpus: a UTF-8 file, or (default) the text of CPython's pydoc topics, shipped with Python."""
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read()
    from pydoc_data.topics import topics
    return "".join(topics.values())


def unigram_entropy(text: str) -> float:
    """H = -sum p(c) log p(c) over characters, in nats: the loss of a model that ignores context."""
    counts = np.array(list(Counter(text).values()), np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


class Vocab:
    """Characters <-> ids, sorted by code point (deterministic)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text], np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def make_batches(ids: np.ndarray, batch: int, seq_len: int):
    """char-rnn's layout: ``batch`` contiguous streams cut into windows; window k+1 continues window k.

    Returns x, y of shape (n_windows, batch, seq_len); y is x shifted by one character.
    """
    n = (len(ids) - 1) // (batch * seq_len)
    if n < 1:
        raise SystemExit(f"char_rnn: {len(ids)} characters are too few for one batch of {batch} x {seq_len}; "
                         f"use a longer text or a smaller --batch / --seq-len")
    size = n * batch * seq_len
    x = ids[:size].reshape(batch, n, seq_len).transpose(1, 0, 2)
    y = ids[1:size + 1].reshape(batch, n, seq_len).transpose(1, 0, 2)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# --- the model ----------------------------------------------------------------------------------------------------

class CharRNN:
    """The one-step cell, and the unrolled gModule built from it (sharing the cell's weights).

    ``cell``   stacked(kind, vocab, hidden, layers, vocab=vocab): (x, *states) -> (*states, logprobs)
    ``model``  (x_1..x_T, y_1..y_T, *states) -> (loss, *final states), where loss is the mean over t of
               ClassNLL(logprobs_t, y_t): one forward gives the loss and the states the next window starts from,
               and backward, from the loss alone, gives d loss / d weights (one fused plan: train_step)
    """

    def __init__(self, kind: str, vocab: int, hidden: int, layers: int, seq_len: int, dropout: float = 0.0,
                 dtype: str = "float32"):
        self.vocab, self.hidden, self.layers, self.seq_len = vocab, hidden, layers, seq_len
        self.cell = stacked(kind, vocab, hidden, layers, vocab=vocab, dropout=dropout)
        self.n_state = len(self.cell.inputs) - 1
        T, k = seq_len, self.n_state
        rolled = unroll(self.cell, T)             # inputs x_1..x_T, *states; outputs *states, logprobs_1..T
        xs = [gn.Input(name=f"x{t}") for t in range(1, T + 1)]
        ys = [gn.Input(name=f"y{t}") for t in range(1, T + 1)]
        init = [gn.Input(name=f"{s.name}_0") for s in self.cell.inputs[1:]]
        outs = rolled(*xs, *init).split(k + T)
        nll = [nn.ClassNLLCriterion()(outs[k + t], ys[t]).annotate(name=f"nll{t + 1}") for t in range(T)]
        loss = nn.MulConstant(1.0 / T)(nn.CAddTable()(nll) if T > 1 else nll[0]).annotate(name="loss")
        self.model = gn.gModule(xs + ys + init, [loss] + list(outs[:k]))
        for m in (self.cell, self.model):
            m.type(dtype)
        self.dtype = np.dtype(dtype)
        self.eye = np.eye(vocab, dtype=self.dtype)
        self.dropout = dropout
        self.workers = 0             # main() sets --workers
        self.backend = "numpy"       # and --backend
        self._step = None

    def parameters(self):
        return self.cell.parameters()

    def zero_state(self, batch: int) -> list:
        return [np.zeros((batch, self.hidden), self.dtype) for _ in range(self.n_state)]

    def arrays(self, x: np.ndarray, y: np.ndarray, state: list) -> list:
        """The model's inputs for one window: one-hot x_t (batch, vocab), integer y_t (batch,), states."""
        return [self.eye[x[:, t]] for t in range(x.shape[1])] + [y[:, t] for t in range(y.shape[1])] + state

    def train_step(self, arrays: list):
        """(loss, final states) of one window; the parameters' .grad hold d loss / d w afterwards.

        ``gn.compile_train_step`` runs forward and backward as one plan: backward starts from the loss alone
        (the final states only feed the next window: truncated BPTT), and the states come back beside the loss.
        """
        if self._step is None:       # --workers N: the same step on N Ray workers, each on its rows of the batch
            self._step = gn.distributed.data_parallel(self.model, workers=self.workers, backend=self.backend) \
                if self.workers else gn.compile_train_step(self.model, backend=self.backend)
        loss, *state = self._step(*arrays)
        return loss, state

    def forward(self, arrays: list):
        """(loss, final states) for one window, no gradients."""
        out = self.model.forward(arrays)
        return float(out[0]), [np.array(s) for s in out[1:]]

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean loss over every window of (x, y), states carried from zeros, Dropout off."""
        self._mode(train=False)
        state, total = self.zero_state(x.shape[1]), 0.0
        for xb, yb in zip(x, y):
            loss, state = self.forward(self.arrays(xb, yb, state))
            total += loss
        self._mode(train=True)
        return total / len(x)

    def _mode(self, train: bool):
        if self.dropout > 0:    # switching modes recompiles the plans, so only when it changes something
            (self.cell.training if train else self.cell.evaluate)()

    def sample(self, vocab: Vocab, length: int, temperature: float = 1.0, prime: str = "\n",
               seed: int = 0) -> str:
        """Text drawn one character at a time from softmax(logprobs / temperature), after reading ``prime``."""
        rng = np.random.default_rng(seed)
        self._mode(train=False)
        state = self.zero_state(1)
        out, logp = [], None
        prime = [c for c in prime if c in vocab.index] or [vocab.chars[0]]
        for c in prime:
            res = self.cell.forward([self.eye[[vocab.index[c]]]] + state)
            state, logp = [np.array(s) for s in res[:-1]], res[-1]
        for _ in range(length):
            z = logp[0].astype(np.float64) / max(temperature, 1e-6)
            p = np.exp(z - z.max())
            i = int(rng.choice(len(p), p=p / p.sum()))
            out.append(i)
            res = self.cell.forward([self.eye[[i]]] + state)
            state, logp = [np.array(s) for s in res[:-1]], res[-1]
        self._mode(train=True)
        return "".join(prime) + vocab.decode(out)


def make_optimizer(params, name: str, lr: float):
    """char-rnn's RMSprop (decay 0.95) or Adam, from graphnet.optim (torch.optim's update rules)."""
    if name == "rmsprop":
        return RMSprop(params, lr=lr, alpha=0.95)
    return Adam(params, lr=lr)


# --- progress, plots ----------------------------------------------------------------------------------------------

class Progress:
    """Training progress on stderr: tqdm's bar on a terminal (loss, chars/s, ETA); in a log, a line per tenth."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream, self.shown, self.chars = total, stream or sys.stderr, -1, 0
        self.start = time.perf_counter()
        tty = getattr(self.stream, "isatty", lambda: False)()
        tqdm = _tqdm() if tty else None
        self.bar = tqdm(total=total, file=self.stream, unit="it", dynamic_ncols=True) if tqdm else None

    def update(self, done: int, chars: int, **fields):
        self.chars += chars
        text = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(done - self.bar.n)
            return
        if done * 10 // self.total == self.shown and done != self.total:
            return
        self.shown = done * 10 // self.total
        elapsed = time.perf_counter() - self.start
        rate = self.chars / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (self.total - done) if done else 0.0
        self.stream.write(f"{done}/{self.total} {text} {rate:,.0f} chars/s ETA {_clock(eta)}\n")
        self.stream.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()



def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def loss_figure(curves: dict):
    """A matplotlib Figure of loss against iteration: one line per curve {name: (iterations, losses)}, axes
    labelled (iteration, nats/char), a legend. Raises ImportError with what to install when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure     # a Figure alone, no pyplot: no GUI backend, no global state
    except ImportError:
        raise ImportError("the loss plot needs matplotlib: pip install matplotlib (or pip install "
                          "'graphnet[plot]')") from None
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot()
    for name, (its, vals) in curves.items():
        ax.plot(its, vals, label=name, marker="o" if len(its) < 30 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("nats/char")
    ax.set_title("char-rnn loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_losses(path: str, curves: dict) -> str | None:
    """Write ``loss_figure(curves)`` to ``path``; without matplotlib, no file and the reason why, else None."""
    try:
        fig = loss_figure(curves)
    except ImportError as e:
        return str(e)
    fig.savefig(path)
    return None


# --- diagrams, checkpoint -----------------------------------------------------------------------------------------

def draw_cells(model: CharRNN, out: str, log) -> list:
    """The first layer's cell: its graph, its backward graph, and the plan the compiler makes of it."""
    layer1 = next(n.module for n in model.cell.order if isinstance(n.module, gn.gModule))
    # the backward drawing and the plan need concrete shapes: one row of the first layer's inputs
    sample = [np.zeros((1, model.vocab), model.dtype)] + \
        [np.zeros((1, model.hidden), model.dtype)] * (len(layer1.inputs) - 1)
    written = []
    for name, graph, options in (("cell_forward.svg", layer1, {}),
                                 ("cell_backward.svg", layer1, {"which": "backward", "inputs": sample}),
                                 ("cell_plan.svg", gn.compile(layer1), {"inputs": sample}),
                                 ("stacked_forward.svg", model.cell, {})):
        path = os.path.join(out, name)
        try:
            gn.render(graph, path, **options)
            written.append(path)
        except gn.RenderError as e:    # most often: graphviz's `dot` is not installed
            log(f"note: could not draw {name}: {str(e).splitlines()[0]}")
    return written


def save_checkpoint(model: CharRNN, vocab: Vocab, path: str) -> None:
    """The one-step cell (gn.save: JSON graph + npz weights) and, beside it, the vocabulary (vocab.json)."""
    with open(os.path.join(os.path.dirname(path) or ".", "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({"chars": vocab.chars}, f, ensure_ascii=False)
    gn.save(model.cell, path)


# --- main -----------------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--text", help="a UTF-8 text file (default: CPython's pydoc topics)")
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=50, help="steps of backpropagation through time")
    p.add_argument("--batch", type=int, default=50, help="parallel streams of text")
    p.add_argument("--iters", type=int, default=1500)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="cosine: the lr falls to lr/10 over --iters (CosineAnnealingLR)")
    p.add_argument("--optim", choices=["rmsprop", "adam"], default="adam")
    p.add_argument("--clip", type=float, default=5.0, help="max global gradient norm")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--val-frac", type=float, default=0.05, help="the last part of the text, for validation")
    p.add_argument("--eval-every", type=int, default=250, help="iterations between validation losses")
    p.add_argument("--sample-len", type=int, default=400)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--backend", choices=["numpy", "numba", "auto"], default="numpy",
                   help="the train step's code: numpy calls, or numba-compiled kernels (pip install graphnet[fast])")
    p.add_argument("--out", default="out/char_rnn", help="folder for diagrams, the loss plot, the checkpoint")
    p.add_argument("--checkpoint", default=None, help="checkpoint path (default: OUT/char_rnn.gnet; '' skips it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, default=0,
                   help="compute each gradient on N Ray workers (gn.distributed; needs graphnet[distributed])")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (read before numpy loads; default 1, or OPENBLAS_NUM_THREADS if set)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    t_start = time.perf_counter()
    log = lambda *s: print(*s, flush=True)                                              # noqa: E731
    os.makedirs(a.out, exist_ok=True)
    gn.manual_seed(a.seed)

    text = load_text(a.text)
    vocab = Vocab(text)
    ids = vocab.encode(text)
    entropy = unigram_entropy(text)
    n_val = max(int(len(ids) * a.val_frac), a.seq_len + 1)
    train_ids, val_ids = ids[:-n_val], ids[-n_val:]
    x_tr, y_tr = make_batches(train_ids, a.batch, a.seq_len)
    val_batch = max(1, min(a.batch, (len(val_ids) - 1) // a.seq_len))
    x_va, y_va = make_batches(val_ids, val_batch, a.seq_len)
    log(f"corpus: {len(text):,} chars ({'pydoc topics' if not a.text else a.text}), vocab {len(vocab)}, "
        f"unigram entropy {entropy:.4f} nats/char")
    log(f"split: train {len(train_ids):,} chars ({len(x_tr)} windows of {a.batch}x{a.seq_len}), "
        f"val {len(val_ids):,} chars ({len(x_va)} windows of {val_batch}x{a.seq_len})")

    model = CharRNN(a.cell, len(vocab), a.hidden, a.layers, a.seq_len, a.dropout, a.dtype)
    params = model.parameters()
    log(f"model: {a.layers}x{a.hidden} {a.cell}, {sum(p.data.size for p in params):,} parameters, "
        f"unrolled {a.seq_len} steps, {a.optim} lr {a.lr:g} ({a.schedule}), clip {a.clip:g}, {a.dtype}")
    model.workers, model.backend = a.workers, a.backend
    opt = make_optimizer(params, a.optim, a.lr)
    sched = CosineAnnealingLR(opt, T_max=a.iters, eta_min=a.lr / 10) if a.schedule == "cosine" else None

    hist_it, hist_loss, val_it, val_loss = [], [], [], []
    bar = None if a.quiet else Progress(a.iters)
    state = model.zero_state(a.batch)
    t_train = time.perf_counter()
    for it in range(1, a.iters + 1):
        k = (it - 1) % len(x_tr)
        if k == 0:
            state = model.zero_state(a.batch)          # a new pass over the text: the streams restart
        arrays = model.arrays(x_tr[k], y_tr[k], state)
        loss, state = model.train_step(arrays)
        clip_grad_norm(params, a.clip)
        opt.step()
        if sched:
            sched.step()
        hist_it.append(it)
        hist_loss.append(loss)
        if it % a.eval_every == 0 or it == a.iters:
            val_it.append(it)
            val_loss.append(model.evaluate(x_va, y_va))
        if bar:
            fields = {"loss": loss}
            if val_loss:
                fields["val"] = val_loss[-1]
            bar.update(it, a.batch * a.seq_len, **fields)
    if bar:
        bar.close()
    train_seconds = time.perf_counter() - t_train
    if a.workers:
        model._step.close()          # stops the workers (and the Ray this run started)
    recent = hist_loss[-max(1, min(a.eval_every, len(hist_loss))):]
    train_loss = float(np.mean(recent))

    for it_, v in zip(val_it, val_loss):
        log(f"iter {it_:5d}  train {np.mean(hist_loss[max(0, it_ - a.eval_every):it_]):.4f}  val {v:.4f}")
    sample = model.sample(vocab, a.sample_len, a.temperature, prime="The ", seed=a.seed)
    log(f"--- sample (temperature {a.temperature:g}) ---\n{sample}\n---")
    with open(os.path.join(a.out, "samples.txt"), "w", encoding="utf-8") as f:
        f.write(sample + "\n")

    smooth = np.convolve(hist_loss, np.ones(min(20, len(hist_loss))) / min(20, len(hist_loss)), mode="valid")
    loss_png = os.path.join(a.out, "loss.png")
    missing = plot_losses(loss_png, {"train (mean of 20)": (hist_it[len(hist_it) - len(smooth):], smooth),
                                     "validation": (val_it, val_loss)})
    if missing:
        log(f"loss.png not written: {missing}")
    drawn = draw_cells(model, a.out, log)
    ckpt = os.path.join(a.out, "char_rnn.gnet") if a.checkpoint is None else a.checkpoint
    if ckpt:
        save_checkpoint(model, vocab, ckpt)
    total = time.perf_counter() - t_start
    log(f"wrote {', '.join(([] if missing else [loss_png]) + drawn + ([ckpt] if ckpt else []))}")
    log(f"time: {total:.1f} s total, {train_seconds:.1f} s training "
        f"({1000 * train_seconds / a.iters:.0f} ms/iteration, "
        f"{a.iters * a.batch * a.seq_len / train_seconds:,.0f} chars/s); "
        f"val/unigram = {val_loss[-1] / entropy:.3f}")
    print(f"final: train_loss {train_loss:.4f} val_loss {val_loss[-1]:.4f} (nats/char)", flush=True)
    return {"train_loss": train_loss, "val_loss": val_loss[-1], "entropy": entropy, "seconds": total,
            "train_seconds": train_seconds, "history": hist_loss, "val_history": list(zip(val_it, val_loss)),
            "sample": sample, "model": model.cell}


if __name__ == "__main__":
    main()

"""Learner: a training loop around a model, a criterion and an optimizer (fit, evaluate, predict, history, plot).

The model (a module taking one batch array) and the criterion are packed into one graph with two outputs, the
loss and the model's prediction, so one compiled plan gives both; training calls ``forward``, ``backward`` and
``optimizer.step()`` per batch. Accuracy is recorded when the targets are classes: 0-based integer labels
(batch,), or one-hot rows (batch, classes).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .errors import InputError, RenderError
from .gmodule import gModule
from .module import Module, rng
from .node import Input


class Learner:
    """``Learner(model, loss, optimizer).fit(train, epochs, valid=None)``.

    ``progress``: one line per epoch with the train and validation loss and accuracy, written to ``file``
    (default stdout), and while an epoch runs, tqdm's bar when ``file`` is a terminal and tqdm is installed
    (``pip install graphnet[progress]``); a log file gets the epoch lines alone.

    ``train`` / ``valid``: an iterable of (inputs, targets) batches that can be walked once per epoch (a
    ``graphnet.data.DataLoader``), or a tuple of two arrays (inputs, targets), batched here by ``batch_size``
    (training batches shuffled each epoch with graphnet's generator: ``gn.manual_seed`` makes it reproducible).
    """

    def __init__(self, model: Module, loss: Module, optimizer, batch_size: int = 32, progress: bool = True,
                 file=None):
        if not isinstance(model, Module) or not isinstance(loss, Module):
            raise InputError(f"Learner takes a model and a loss that are graphnet modules, got "
                             f"{type(model).__name__} and {type(loss).__name__}")
        if not hasattr(optimizer, "step"):
            raise InputError(f"Learner: the optimizer must have a step() method, got {type(optimizer).__name__}")
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self.file = file
        x, target = Input(name="x"), Input(name="target")
        prediction = model(x)
        loss_value = loss(prediction, target)
        self.graph = gModule([x, target], [loss_value, prediction])
        self.history: dict = {}
        self._parallel = None         # the data-parallel step while fit(workers=N) runs

    # --- the loop ------------------------------------------------------------------------------------------
    def fit(self, train, epochs: int, valid=None, workers: int = 0) -> dict:
        """Train for ``epochs`` passes over ``train``; after each, record the mean train loss (and accuracy) and,
        when ``valid`` is given, the validation loss (and accuracy) in evaluation mode. Returns ``history``.

        ``workers=N`` computes each batch's gradient on N Ray workers, each on its share of the rows
        (``gn.distributed.data_parallel``); the optimizer steps here as usual, and the workers stop at the end."""
        if workers:
            from .distributed import data_parallel
            self._parallel = data_parallel(self.graph, workers=workers)
        try:
            return self._fit(train, epochs, valid)
        finally:
            if self._parallel is not None:
                self._parallel.close()
                self._parallel = None

    def _fit(self, train, epochs, valid):
        for epoch in range(1, int(epochs) + 1):
            t0 = time.perf_counter()
            self._set_mode(True)
            batches = self._batches(train, shuffle=True)
            total = _length(batches)
            meter = _Meter()
            bar = self._bar(batches, total, f"epoch {epoch}/{epochs}")
            for xb, tb in batches if bar is None else bar:
                meter.add(*self._train_step(xb, tb), tb)
                if bar is not None:
                    bar.set_postfix(loss=f"{meter.result()['loss']:.4f}", refresh=False)
            if bar is not None:
                bar.close()
            self._record("train", meter)
            if valid is not None:
                self._record("valid", self._evaluate(valid))
            self.history.setdefault("seconds", []).append(time.perf_counter() - t0)
            self._epoch_line(epoch, epochs)
        self._set_mode(True)
        return self.history

    def _train_step(self, xb, tb):
        if self._parallel is not None:           # the workers leave the gradient in .grad
            loss, pred = self._parallel(xb, tb)
            self.optimizer.step()
            return loss, pred
        zero = getattr(self.optimizer, "zero_grad", None)
        zero() if zero is not None else self.model.zero_grad_parameters()
        loss, pred = self.graph.forward([xb, tb])
        self.graph.backward([xb, tb], [np.ones_like(loss), np.zeros_like(pred)])
        self.optimizer.step()
        return float(loss), pred

    def evaluate(self, data) -> dict:
        """{'loss': mean loss, 'acc': accuracy (class targets only)} over ``data``, in evaluation mode."""
        meter = self._evaluate(data)
        self._set_mode(True)
        return meter.result()

    def _evaluate(self, data):
        self._set_mode(False)
        meter = _Meter()
        for xb, tb in self._batches(data, shuffle=False):
            loss, pred = self.graph.forward([xb, tb])
            meter.add(float(loss), pred, tb)
        return meter

    def predict(self, x) -> np.ndarray:
        """The model's outputs for inputs ``x`` (an array), in evaluation mode, batch by batch."""
        self._set_mode(False)
        try:
            x = np.asarray(x)
            outs = [self.model.forward(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        finally:
            self._set_mode(True)
        return np.concatenate(outs) if outs else np.zeros((0,))

    def _set_mode(self, train: bool):
        # only switch when a module is in the other mode: a switch makes compiled plans for the new mode
        if any(m.train != train for m in self.model.modules()):
            self.model.training() if train else self.model.evaluate()

    def _batches(self, data, shuffle):
        if isinstance(data, tuple) and len(data) == 2 and all(isinstance(a, np.ndarray) for a in data):
            x, t = data
            if len(x) != len(t):
                raise InputError(f"Learner: inputs and targets must have as many rows, got {len(x)} and {len(t)}")
            order = rng().permutation(len(x)) if shuffle else np.arange(len(x))
            return [(x[order[i:i + self.batch_size]], t[order[i:i + self.batch_size]])
                    for i in range(0, len(x), self.batch_size)]
        if not hasattr(data, "__iter__"):
            raise InputError(f"Learner: data must be (inputs, targets) arrays or an iterable of batches such as "
                             f"graphnet.data.DataLoader, got {type(data).__name__}")
        return data

    # --- history and display -------------------------------------------------------------------------------
    def _record(self, split, meter):
        for k, v in meter.result().items():
            self.history.setdefault(f"{split}_{k}", []).append(v)

    def _out(self):
        return self.file if self.file is not None else sys.stdout

    def _bar(self, batches, total, desc):
        """tqdm's bar over ``batches`` (gone when closed), or None: progress off, output not a terminal (a log
        gets the epoch lines alone) or tqdm not installed."""
        out = self._out()
        tqdm = _tqdm() if self.progress and getattr(out, "isatty", lambda: False)() else None
        if tqdm is None:
            return None
        return tqdm(batches, total=total, desc=desc, file=out, leave=False, unit="batch", dynamic_ncols=True)

    def _epoch_line(self, epoch, epochs):
        if not self.progress:
            return
        h = self.history
        parts = [f"epoch {epoch:>{len(str(epochs))}}/{epochs}"]
        for key in ("train_loss", "train_acc", "valid_loss", "valid_acc"):
            if key in h:
                parts.append(f"{key} {h[key][-1]:.4f}")
        parts.append(f"({h['seconds'][-1]:.2f}s)")
        out = self._out()
        out.write("  ".join(parts) + "\n")
        out.flush()

    def plot_history(self, path) -> None:
        """Draw the loss (and accuracy) curves into ``path`` (png, svg, pdf ...); needs matplotlib."""
        if not self.history:
            raise InputError("Learner.plot_history: nothing to plot yet; call fit() first")
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise RenderError("Learner.plot_history needs matplotlib, which is not installed: "
                              "pip install matplotlib (or: pip install graphnet[plot])") from None
        kinds = [k for k in ("loss", "acc") if f"train_{k}" in self.history]
        fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.5), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            for split in ("train", "valid"):
                values = self.history.get(f"{split}_{kind}")
                if values:
                    ax.plot(range(1, len(values) + 1), values, label=split)
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy" if kind == "acc" else "loss")
            ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


class _Meter:
    """Running sums of loss (weighted by batch size) and correct predictions."""

    def __init__(self):
        self.n = 0
        self.loss = 0.0
        self.correct = 0
        self.classes = True

    def add(self, loss, pred, target):
        n = len(pred) if np.ndim(pred) else 1
        self.n += n
        self.loss += loss * n
        hit = _correct(pred, np.asarray(target))
        if hit is None:
            self.classes = False
        else:
            self.correct += hit

    def result(self) -> dict:
        out = {"loss": self.loss / max(self.n, 1)}
        if self.classes and self.n:
            out["acc"] = self.correct / self.n
        return out


def _correct(pred, target):
    """How many rows of ``pred`` (batch, classes) pick the target class; None when targets are not classes."""
    if np.ndim(pred) != 2:
        return None
    if target.ndim == 1 and target.dtype.kind in "iu":
        labels = target
    elif target.ndim == 2 and target.shape == pred.shape and target.dtype.kind == "f" and \
            np.all((target == 0) | (target == 1)) and np.all(target.sum(1) == 1):
        labels = target.argmax(1)
    else:
        return None
    return int(np.sum(pred.argmax(1) == labels))


def _tqdm():
    """tqdm's progress bar class, or None when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _length(batches):
    try:
        return len(batches)
    except TypeError:
        return None

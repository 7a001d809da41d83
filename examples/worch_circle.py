"""worch: the circle problem (a "mini deep-learning framework" classic), in graphnet and, beside it, PyTorch.

1000 training and 1000 validation points uniform in [0, 1]^2, labelled 1 inside the disc of radius 1/sqrt(2 pi)
centred at (0.5, 0.5) (area 1/2: balanced classes). An MLP 2-25-25-25-2 with ReLUs, trained with MSE on one-hot
targets by SGD (lr 0.1, batches of 32) for 100 epochs. Run: python examples/worch_circle.py
"""
from __future__ import annotations

import math
import time

import numpy as np

import graphnet as gn
from graphnet import nn


def make_data(n: int, rng: np.random.Generator):
    """Points in [0, 1]^2 and their one-hot labels (1: inside the circle)."""
    x = rng.uniform(0.0, 1.0, (n, 2)).astype(np.float32)
    inside = ((x - 0.5) ** 2).sum(1) < 1.0 / (2.0 * math.pi)
    return x, np.eye(2, dtype=np.float32)[inside.astype(int)]


def build_model(hidden: int = 25) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                      nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def train_graphnet(train, valid, epochs, lr, batch_size, progress):
    model = build_model()
    learner = gn.Learner(model, nn.MSECriterion(), gn.optim.SGD(model.parameters(), lr=lr),
                         batch_size=batch_size, progress=progress)
    history = learner.fit(train, epochs, valid=valid)
    return history["valid_acc"][-1], max(history["valid_acc"])


def train_torch(train, valid, epochs, lr, batch_size, seed):
    """The same model and loop in PyTorch, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)             # a tiny model: threads only add overhead
    try:
        return _torch_loop(torch, train, valid, epochs, lr, batch_size)
    finally:
        torch.set_num_threads(threads)


def _torch_loop(torch, train, valid, epochs, lr, batch_size):
    tnn = torch.nn
    model = tnn.Sequential(tnn.Linear(2, 25), tnn.ReLU(), tnn.Linear(25, 25), tnn.ReLU(), tnn.Linear(25, 25),
                           tnn.ReLU(), tnn.Linear(25, 2))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, t = (torch.from_numpy(a) for a in train)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            tnn.functional.mse_loss(model(x[idx]), t[idx]).backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(valid[0])).argmax(1).numpy()
    return float(np.mean(pred == valid[1].argmax(1)))


def main(n: int = 1000, epochs: int = 100, lr: float = 0.1, batch_size: int = 32, seed: int = 0,
         compare_torch: bool = True, progress: bool = False) -> dict:
    gn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train, valid = make_data(n, rng), make_data(n, rng)
    mean, std = train[0].mean(0), train[0].std(0)          # standardise with the training statistics
    train, valid = (((x - mean) / std, t) for x, t in (train, valid))
    t0 = time.perf_counter()
    acc, best = train_graphnet(train, valid, epochs, lr, batch_size, progress)
    result = {"graphnet_acc": acc, "graphnet_best_acc": best, "graphnet_seconds": time.perf_counter() - t0}
    print(f"graphnet: validation accuracy {acc:.3f} (best epoch {best:.3f}; {result['graphnet_seconds']:.1f}s)")
    if compare_torch:
        t0 = time.perf_counter()
        tacc = train_torch(train, valid, epochs, lr, batch_size, seed)
        if tacc is None:
            print("PyTorch:  not installed (pip install torch) - no side-by-side run")
        else:
            result.update(torch_acc=tacc, torch_seconds=time.perf_counter() - t0)
            print(f"PyTorch:  validation accuracy {tacc:.3f} ({result['torch_seconds']:.1f}s)")
    return result


if __name__ == "__main__":
    main(progress=True)

"""Regression from scratch: a 3-32-1 MLP fitted to noisy linear data with a hand-written training loop.

No optimizer, no Learner: forward, backward, and a plain gradient step on the flat parameter vector that
``get_parameters()`` returns (every parameter is a view into it), as in the torch7 days.
Run: python examples/regression_from_scratch.py
"""
from __future__ import annotations

import time

import numpy as np

import graphnet as gn
from graphnet import nn


def make_data(n: int, rng: np.random.Generator, noise: float = 0.1):
    """y = x . w + b + noise, for x ~ N(0, 1)^3."""
    w, b = np.array([2.0, -3.0, 0.5]), 1.0
    x = rng.standard_normal((n, 3))
    y = x @ w + b + noise * rng.standard_normal(n)
    return x.astype(np.float32), y[:, None].astype(np.float32)


def build(hidden: int = 32):
    x, target = gn.Input((None, 3), name="x"), gn.Input((None, 1), name="target")
    prediction = nn.Linear(hidden, 1)(nn.Tanh()(nn.Linear(3, hidden)(x)))
    loss = nn.MSECriterion()(prediction, target)
    return gn.gModule([x, target], [loss, prediction])


def main(n: int = 512, epochs: int = 200, batch_size: int = 64, lr: float = 0.05, seed: int = 0) -> dict:
    gn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = make_data(n, rng)
    x_test, y_test = make_data(256, rng)
    model = build()
    flat_w, flat_g = model.get_parameters()
    one = np.ones((), np.float32)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            flat_g[...] = 0                                   # zero every gradient at once
            loss, pred = model.forward([x[idx], y[idx]])
            model.backward([x[idx], y[idx]], [one, np.zeros_like(pred)])
            flat_w -= lr * flat_g                             # SGD on the flat vector
            total += float(loss) * len(idx)
        if epoch % 50 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:>3}  train mse {total / n:.4f}")
    test_mse = float(model.forward([x_test, y_test])[0])
    seconds = time.perf_counter() - t0
    print(f"test mse {test_mse:.4f} (noise variance 0.0100) in {seconds:.1f}s")
    return {"test_mse": test_mse, "seconds": seconds}


if __name__ == "__main__":
    main()

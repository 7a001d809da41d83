"""scorch: a small convnet (conv 7x7 -> ReLU -> max-pool -> Linear -> Linear) fits one random batch.

The graph is built node by node, nngraph style, on an 8x3x32x32 batch of noise with random class labels; a few
Adam steps drive the cross-entropy loss towards zero (the network memorises the batch), which shows the
convolution and pooling gradients at work. Run: python examples/scorch_convnet.py
"""
from __future__ import annotations

import time

import numpy as np

import graphnet as gn
from graphnet import nn


def build(channels: int = 3, size: int = 32, filters: int = 16, hidden: int = 64, classes: int = 10):
    image = gn.Input((None, channels, size, size), name="image")
    label = gn.Input((None,), name="label")
    features = nn.SpatialMaxPooling(2, 2)(nn.ReLU()(nn.SpatialConvolution(channels, filters, 7, 7)(image)))
    side = (size - 6) // 2
    flat = nn.View(-1, filters * side * side)(features)
    scores = nn.Linear(hidden, classes)(nn.ReLU()(nn.Linear(filters * side * side, hidden)(flat)))
    loss = nn.CrossEntropyCriterion()(scores, label)
    return gn.gModule([image, label], [loss])


def main(batch: int = 8, size: int = 32, steps: int = 30, lr: float = 1e-3, seed: int = 0) -> dict:
    gn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = build(size=size)
    step = gn.compile_train_step(model)
    opt = gn.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    losses = []
    for i in range(steps):
        losses.append(step(x, y))          # zeroes the gradients, forward + backward in one plan
        opt.step()
        if i % 5 == 0 or i == steps - 1:
            print(f"step {i:>3}  loss {losses[-1]:.4f}")
    seconds = time.perf_counter() - t0
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.4f} in {steps} steps ({seconds:.2f}s)")
    return {"first_loss": losses[0], "last_loss": losses[-1], "seconds": seconds}


if __name__ == "__main__":
    main()

"""A convnet on scikit-learn's bundled 8x8 digits (1797 images, 10 classes), trained with the Learner.

conv 3x3 (pad 1) -> BatchNorm -> ReLU -> max-pool 2x2 -> conv 3x3 (pad 1) -> ReLU -> Linear, cross-entropy, Adam.
scikit-learn only supplies the data (it ships it: nothing is downloaded); without it the example says so and
exits cleanly. Run: python examples/digits_convnet.py
"""
from __future__ import annotations

import time

import numpy as np

import graphnet as gn
from graphnet import nn


def load_digits():
    """(images (N, 1, 8, 8) float32 in [0, 1], labels (N,) int64), or None when scikit-learn is missing."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        return None
    digits = sk_load_digits()
    x = np.asarray(digits.images, np.float32)[:, None] / 16.0
    return x, np.asarray(digits.target, np.int64)


def build_model(filters: int = 16) -> nn.Sequential:
    return nn.Sequential(
        nn.SpatialConvolution(1, filters, 3, 3, ph=1, pw=1), nn.BatchNormalization(filters), nn.ReLU(),
        nn.SpatialMaxPooling(2, 2),                                             # (filters, 4, 4)
        nn.SpatialConvolution(filters, filters, 3, 3, ph=1, pw=1), nn.ReLU(),
        nn.View(-1, filters * 16), nn.Linear(filters * 16, 10))


def main(epochs: int = 10, batch_size: int = 32, lr: float = 3e-3, seed: int = 0, limit: int | None = None,
         progress: bool = False):
    data = load_digits()
    if data is None:
        print("digits_convnet: this example needs scikit-learn for its bundled digits data set "
              "(pip install scikit-learn); skipping.")
        return None
    gn.manual_seed(seed)
    x, y = data
    order = np.random.default_rng(seed).permutation(len(x))[:limit]
    x, y = x[order], y[order]
    cut = int(0.8 * len(x))
    model = build_model()
    learner = gn.Learner(model, nn.CrossEntropyCriterion(), gn.optim.Adam(model.parameters(), lr=lr),
                         batch_size=batch_size, progress=progress)
    t0 = time.perf_counter()
    history = learner.fit((x[:cut], y[:cut]), epochs, valid=(x[cut:], y[cut:]))
    seconds = time.perf_counter() - t0
    print(f"digits: validation accuracy {history['valid_acc'][-1]:.3f} after {epochs} epochs ({seconds:.1f}s)")
    return {"valid_acc": history["valid_acc"][-1], "seconds": seconds, "history": history}


if __name__ == "__main__":
    main(progress=True)

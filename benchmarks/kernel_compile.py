"""What the numba backend adds to the char-rnn model's first training step: kernel compilation, uncached and
cached (numba's on-disk cache, filled by the first run).

    python benchmarks/kernel_compile.py            # a fresh cache folder, then a second process reusing it
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _threads import threads_from_argv  # noqa: E402

threads_from_argv(sys.argv)


def first_step(backend: str) -> float:
    """Seconds of the char-rnn model's first step() (lowering, passes, emit, kernels, one run)."""
    import numpy as np
    from char_rnn import graphnet_model
    import graphnet as gn
    V, H, L, T, B = 65, 128, 2, 50, 50
    gn.manual_seed(0)
    model, _ = graphnet_model(V, H, L, T, np.float32)
    r = np.random.default_rng(0)
    eye = np.eye(V, dtype=np.float32)
    arrays = [eye[r.integers(0, V, B)] for _ in range(T)] + [r.integers(0, V, B) for _ in range(T)]
    arrays += [np.zeros((B, H), np.float32) for _ in range(2 * L)]
    step = gn.compile_train_step(model, backend=backend)
    t0 = time.perf_counter()
    step(*arrays)
    return time.perf_counter() - t0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(f"{first_step(sys.argv[2]):.3f}")
        return 0
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        env["GRAPHNET_CACHE"] = cache

        def run(backend):
            out = subprocess.run([sys.executable, __file__, "--one", backend], env=env, capture_output=True,
                                 text=True, check=True)
            return float(out.stdout.strip().splitlines()[-1])
        numpy_s = run("numpy")
        uncached = run("numba")
        cached = run("numba")
    print(f"char-rnn (2x128 LSTM, T=50, B=50) first step(): numpy backend {numpy_s:.2f} s; numba backend "
          f"{uncached:.2f} s uncached (+{uncached - numpy_s:.2f} s), {cached:.2f} s cached "
          f"(+{cached - numpy_s:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

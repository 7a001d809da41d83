"""What the numba backend adds to the char-rnn model's first training step: kernel compilation, uncached (a
fresh cache folder: the first model on a machine), with only the shared helpers (exp, tanh: kernel_math)
cached (a new model), and cached (numba's on-disk cache, filled by the first run).

    python benchmarks/kernel_compile.py            # each in a process of its own
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
    """CPU seconds of the char-rnn model's first step() (lowering, passes, emit, kernels, one run): CPU time, not
    wall time, so that other work on a shared machine does not count (numba compiles in this process)."""
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
    t0 = time.process_time()
    step(*arrays)
    return time.process_time() - t0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(f"{first_step(sys.argv[2]):.3f}")
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--helpers":
        compile_helpers()
        return 0

    def run(cache, *args):
        out = subprocess.run([sys.executable, __file__, *args], env=dict(os.environ, GRAPHNET_CACHE=cache),
                             capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else None
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as other:
        numpy_s = run(first, "--one", "numpy")
        uncached = run(first, "--one", "numba")
        cached = run(first, "--one", "numba")
        run(other, "--helpers")
        new_model = run(other, "--one", "numba")
    print(f"char-rnn (2x128 LSTM, T=50, B=50) first step(), CPU seconds: numpy backend {numpy_s:.2f} s; numba backend "
          f"{uncached:.2f} s uncached (+{uncached - numpy_s:.2f} s), {new_model:.2f} s with the helpers cached "
          f"(+{new_model - numpy_s:.2f} s), {cached:.2f} s cached (+{cached - numpy_s:.2f} s)")
    return 0


def compile_helpers():
    """Compile kernel_math's float32 helpers into the cache folder, as the first model's kernels do."""
    import numpy as np
    import _common  # noqa: F401  (graphnet on the path, as for the model)
    from graphnet.compile.kernel_math import SOURCES, module_name
    from graphnet.compile.numba_backend import load
    dt = np.dtype(np.float32)
    for name, arg in (("_exp", np.float32(0)), ("_tanh", np.float32(0)), ("_key", np.float32(0)),
                      ("_unkey", np.int32(0))):
        load(module_name(dt), SOURCES[dt], attr=name)(arg)


if __name__ == "__main__":
    sys.exit(main())

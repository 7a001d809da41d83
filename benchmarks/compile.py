"""What compiling costs, and how it grows with the graph: the char-rnn train step unrolled over T steps.

    python benchmarks/compile.py                       # T = 25, 50, 100, 200, 400, 1000
    python benchmarks/compile.py --seq-lens 50 400 --no-memory
    python benchmarks/compile.py --profile 200         # cProfile of one compile, top functions by own time
    python benchmarks/compile.py --repeat 3            # the fastest of 3 compiles per T (a busy machine)

The model is char-rnn's (benchmarks/char_rnn.py): a 2-layer LSTM (batch 50, 2 x 128, vocab 65) unrolled T steps,
a ClassNLL per step, their mean; compiled with ``gn.compile_train_step`` at level 2, one thread. Per T: the
lowered nodes (forward + backward IR) and the nodes after the passes, the seconds of graph build, lowering,
every pass (as the pipeline reports them) and memory plan + emission, the total, and the peak Python memory
of a second compile under tracemalloc (which slows it, so it is not timed). Seconds are CPU seconds of this
process (``time.process_time``), which a busy machine inflates less than wall time. A cost linear in the graph
keeps the last column (seconds per 1000 lowered nodes) flat. Nothing here asserts a speed: it is for reading.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _threads import threads_from_argv  # noqa: E402

THREADS = threads_from_argv(sys.argv)

import numpy as np  # noqa: E402

from _common import gn, markdown_table  # noqa: E402
from char_rnn import graphnet_model  # noqa: E402
from graphnet.compile.lower import lower  # noqa: E402
from graphnet.compile.pipeline import build_executable  # noqa: E402

V, H, L, B = 65, 128, 2, 50


def compile_once(T):
    """(nodes lowered, nodes after passes, {phase: seconds}) of one level-2 train-step compile."""
    gn.manual_seed(0)
    t0 = time.process_time()
    model, _ = graphnet_model(V, H, L, T, np.float32)
    t1 = time.process_time()
    signature = [((B, V), np.dtype(np.float32))] * T + [((B,), np.dtype(np.int64))] * T
    signature += [((B, H), np.dtype(np.float32))] * (2 * L)
    prog = lower(model, signature, wrt_inputs=[False] * len(signature), seeded=[True])
    t2 = time.process_time()
    exe = build_executable(prog, 2, train=True)
    t3 = time.process_time()
    phases = {"build": t1 - t0, "lower": t2 - t1}
    for name, _, sec in exe.stats["pass_seconds"]:
        phases[name] = phases.get(name, 0.0) + sec
    phases["plan+emit"] = exe.stats["emit_seconds"]
    phases["total"] = t3 - t0
    return len(prog.values), exe.stats["nodes"], phases


def peak_mib(T):
    tracemalloc.start()
    compile_once(T)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[25, 50, 100, 200, 400, 1000])
    ap.add_argument("--no-memory", action="store_true", help="skip the tracemalloc compile")
    ap.add_argument("--profile", type=int, metavar="T", help="cProfile one compile at T instead")
    ap.add_argument("--repeat", type=int, default=1, help="compiles per T; the fastest (by total) is shown")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.profile:
        import cProfile
        import pstats
        cProfile.runctx("compile_once(args.profile)", globals(), {"args": args}, "/tmp/compile.prof")
        pstats.Stats("/tmp/compile.prof").sort_stats("tottime").print_stats(25)
        return
    rows, per_pass = [], {}
    for T in args.seq_lens:
        n_in, n_out, ph = min((compile_once(T) for _ in range(args.repeat)), key=lambda r: r[2]["total"])
        mem = "" if args.no_memory else f"{peak_mib(T):.0f}"
        rows.append([T, f"{n_in} -> {n_out}", f"{ph['build']:.2f}", f"{ph['lower']:.2f}",
                     f"{sum(v for k, v in ph.items() if k not in ('build', 'lower', 'plan+emit', 'total')):.2f}",
                     f"{ph['plan+emit']:.2f}", f"{ph['total']:.2f}", mem, f"{1000 * ph['total'] / n_in:.3f}"])
        for k, v in ph.items():
            per_pass.setdefault(k, {})[T] = v
        print(f"T={T}: {ph['total']:.2f} s", file=sys.stderr, flush=True)
    print(f"char-rnn train step (2-layer LSTM, batch {B}, {L} x {H}, vocab {V}), level 2, {THREADS} thread(s), "
          f"CPU seconds, fastest of {args.repeat}\n")
    print(markdown_table(["T", "nodes lowered -> after passes", "build s", "lower s", "passes s", "plan+emit s",
                          "total s", "peak MiB", "s per 1000 nodes"], rows))
    print("\nSeconds per phase (passes that run several times summed):\n")
    Ts = args.seq_lens
    print(markdown_table(["phase"] + [f"T={T}" for T in Ts],
                         [[k] + [f"{v.get(T, 0):.3f}" for T in Ts] for k, v in per_pass.items() if k != "total"]))


if __name__ == "__main__":
    main()

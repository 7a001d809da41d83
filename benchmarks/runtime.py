"""What the run-time rules cost: mode switches, new batch sizes, memory over many sizes, threads.

    python benchmarks/runtime.py                  # char-rnn sizes: 2-layer LSTM, H 128, vocabulary 65, T 25, B 50
    python benchmarks/runtime.py --quick          # smaller and fewer rounds (a smoke test)
    python benchmarks/runtime.py --write-readme   # also rewrite README's bench:runtime block

Reported (medians; contenders alternate in one process):
- forward of a cell with Dropout, alone and preceded by a mode switch (``training()`` before every forward, as
  char-rnn's clone loop does, and training/evaluate alternating);
- a new batch size of the unrolled train step: the time to bind it against the time the first size took to
  compile (lowering, passes, code);
- the process's resident memory before and after 100 batch sizes, and the executables the plan keeps;
- forward calls per second from 1 thread and from 8 threads on one module.
"""
from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _threads import threads_from_argv  # noqa: E402

THREADS = threads_from_argv(sys.argv)

import argparse  # noqa: E402

import numpy as np  # noqa: E402

from _common import fmt_ms, gn, machine_line, markdown_table, median_ms, nn, time_alternating  # noqa: E402
from _common import write_readme_block  # noqa: E402


def rss_mb() -> float:
    """Resident memory now (Linux), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


def stacked_cell(V, H):
    """char-rnn's cell: two LSTM layers, Dropout between them and before the head."""
    x, c1, h1, c2, h2 = (gn.Input() for _ in range(5))
    l1, l2 = gn.rnn.lstm_cell(V, H), gn.rnn.lstm_cell(H, H)
    n1, m1 = l1(x, c1, h1)
    n2, m2 = l2(nn.Dropout(0.5)(m1), c2, h2)
    y = nn.LogSoftMax()(nn.Linear(H, V)(nn.Dropout(0.5)(m2)))
    return gn.gModule([x, c1, h1, c2, h2], [n1, m1, n2, m2, y])


def unrolled(V, H, T):
    """The train step's model: T steps of the stacked cell, ClassNLL per step, losses summed."""
    cell, nll = stacked_cell(V, H), nn.ClassNLLCriterion()
    xs, ts = [gn.Input() for _ in range(T)], [gn.Input() for _ in range(T)]
    state = [gn.Input() for _ in range(4)]
    s, losses = list(state), []
    for t in range(T):
        *s, y = cell(xs[t], *s)
        losses.append(nll(y, ts[t]))
    return gn.gModule(xs + ts + state, [nn.CAddTable()(losses)] + s)


def step_args(B, V, H, T, rng):
    return ([np.eye(V, dtype=np.float32)[rng.integers(0, V, B)] for _ in range(T)]
            + [rng.integers(0, V, B) for _ in range(T)] + [np.zeros((B, H), np.float32) for _ in range(4)])


def mode_switches(V, H, B, budget, reps):
    cell = stacked_cell(V, H)
    rng = np.random.default_rng(0)
    xs = [np.eye(V, dtype=np.float32)[rng.integers(0, V, B)]] + [np.zeros((B, H), np.float32)] * 4
    flip = [0]

    def alternate():
        flip[0] ^= 1
        (cell.training if flip[0] else cell.evaluate)()
        cell.forward(xs)
    contenders = {"forward": lambda: cell.forward(xs),
                  "training() + forward": lambda: (cell.training(), cell.forward(xs)),
                  "training/evaluate alternating + forward": alternate}
    alternate(), alternate()
    ts = time_alternating(contenders, max_reps=reps, budget_s=budget)
    base = median_ms(ts["forward"])
    rows = [[k, fmt_ms(median_ms(v)), f"{median_ms(v) / base:.2f}"] for k, v in ts.items()]
    return rows, cell._plan().stats()["compiles"]


def batch_sizes(V, H, T, B, n_sizes):
    """A new batch size's bind time against a compile at that size (fresh plans, every 10th size: the two
    alternate in one process), and the resident memory as sizes come and go."""
    model = unrolled(V, H, T)
    step = gn.compile_train_step(model)
    rng = np.random.default_rng(1)
    before = rss_mb()
    sizes = [B - k for k in range(min(n_sizes, B - 2))] + [B + 1 + k for k in range(max(0, n_sizes - B + 2))]
    binds, compiles, rss = [], [], {}
    for k, b in enumerate(sizes):
        args = step_args(b, V, H, T, rng)
        step(*args)
        st = step.stats()
        if "bind_seconds" in st:
            binds.append(st["bind_seconds"])
        if k % 10 == 5:
            fresh = gn.compile_train_step(model)
            fresh(*args)
            compiles.append(fresh.stats()["compile_seconds"])
            del fresh
        if k + 1 in (10, len(sizes)):
            rss[k + 1] = rss_mb()
    st = step.stats()
    return {"compile_s": statistics.median(compiles), "bind_s": statistics.median(binds), "binds": len(binds),
            "rss_before": before, "rss": rss, "sizes": len(sizes), "compiles": st["compiles"],
            "executables": st["executables"], "bytes_kept": st["bytes_kept"]}


def threaded(V, H, B, calls):
    cell = stacked_cell(V, H).evaluate()
    rng = np.random.default_rng(2)
    xs = [np.eye(V, dtype=np.float32)[rng.integers(0, V, B)]] + [rng.standard_normal((B, H)).astype(np.float32)
                                                                  for _ in range(4)]
    cell.forward(xs)
    out = {}
    for n in (1, 8):
        start = threading.Barrier(n + 1)

        def work():
            start.wait()
            for _ in range(calls // n):
                cell.forward(xs)
        threads = [threading.Thread(target=work) for _ in range(n)]
        for th in threads:
            th.start()
        start.wait()
        t0 = time.perf_counter()
        for th in threads:
            th.join()
        out[n] = (calls // n) * n / (time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (read before import)")
    ap.add_argument("--write-readme", action="store_true", help="rewrite README's bench:runtime block")
    a = ap.parse_args(argv)
    V, H, T, B = (65, 32, 5, 16) if a.quick else (65, 128, 25, 50)
    n_sizes = 10 if a.quick else 100
    t_all = time.perf_counter()
    rows, compiles = mode_switches(V, H, B, budget=0.5 if a.quick else 3.0, reps=30 if a.quick else 400)
    for r in rows:
        print(f"[modes] {r[0]}: {r[1]} ms ({r[2]}x)")
    bs = batch_sizes(V, H, T, B, n_sizes)
    print(f"[batch] a compile takes {bs['compile_s'] * 1e3:.0f} ms (median of fresh plans); a new size binds in "
          f"{bs['bind_s'] * 1e3:.1f} ms (median of {bs['binds']}) = {bs['bind_s'] / bs['compile_s']:.1%} of it")
    r10, rn = bs["rss"].get(10), bs["rss"][bs["sizes"]]
    print(f"[memory] RSS {bs['rss_before']:.0f} MB -> {r10:.0f} MB after 10 sizes -> {rn:.0f} MB after "
          f"{bs['sizes']}; {bs['executables']} executables kept ({bs['bytes_kept'] / 2 ** 20:.0f} MB of arrays), "
          f"{bs['compiles']} compiles")
    tp = threaded(V, H, B, calls=200 if a.quick else 2000)
    print(f"[threads] forward calls/s: 1 thread {tp[1]:.0f}, 8 threads {tp[8]:.0f} ({tp[8] / tp[1]:.2f}x)")
    table = markdown_table(
        ["measure", "value"],
        [[f"forward of char-rnn's cell (B {B}, H {H})", f"{rows[0][1]} ms"],
         ["`training()` before every forward", f"{rows[1][2]}x a forward"],
         ["training/evaluate alternating", f"{rows[2][2]}x a forward ({compiles} compiles in all)"],
         [f"new batch size of the T={T} train step", f"{bs['bind_s'] * 1e3:.0f} ms = "
                                                     f"{bs['bind_s'] / bs['compile_s']:.1%} of a compile "
                                                     f"({bs['compile_s'] * 1e3:.0f} ms)"],
         [f"RSS over {bs['sizes']} batch sizes", f"{bs['rss_before']:.0f} MB → {r10:.0f} MB (10 sizes) → "
                                                 f"{rn:.0f} MB; {bs['executables']} executables kept"],
         ["forward calls/s, 8 threads vs 1", f"{tp[8]:.0f} vs {tp[1]:.0f} ({tp[8] / tp[1]:.2f}x)"]])
    text = (f"{table}\n\n{machine_line()}, BLAS threads {THREADS}. `python benchmarks/runtime.py` "
            f"({time.perf_counter() - t_all:.0f} s).")
    print("\n" + text)
    if a.write_readme and not write_readme_block("runtime", text):
        print("README.md has no bench:runtime block; nothing written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

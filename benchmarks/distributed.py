"""Data-parallel training on Ray: one process against 1 and 2 Ray workers, and where a step's time goes.

    python benchmarks/distributed.py                 # the MLP and char-rnn, 1 and 2 workers
    python benchmarks/distributed.py --quick         # a few rounds only
    python benchmarks/distributed.py --workers 1 2 4 --write-readme

Two training iterations (forward + backward + the optimizer's step), each in three forms that start from the
same weights: ``gn.compile_train_step`` in this process, and ``gn.distributed.data_parallel`` with 1 and with N
workers. Every process (this one and each worker) runs one BLAS thread, so the speed-up measures the splitting
of the batch, not threads. The workloads:

- MLP: 256 -> 3 hidden layers of 512 (ReLU) -> 10, cross-entropy, batch 8192, float32, SGD with momentum:
  compute-heavy, ~2.6 MB of weights and of gradient per step;
- char-rnn: 2x128 LSTM unrolled 50 steps, batch 50, vocab 65, float32, RMSprop + clipping (benchmarks/char_rnn.py's
  model): ~1 MB of weights, 104 small inputs, little compute per step;
- a 4-8-3 MLP on 16 rows: next to no compute, so its time is Ray's and graphnet's fixed cost per step.

The contenders run alternately in one process (the order rotated every round); the table gives medians. For the
Ray contenders, ``step.profile()`` splits the median iteration into: putting the weights in Ray's object store,
sending the calls (with the rows), waiting (of which the slowest worker's own step is given apart: the rest is
Ray's transport both ways), adding the gradients, and the optimizer on this process. Nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _threads import threads_from_argv  # noqa: E402

THREADS = threads_from_argv(sys.argv)         # before numpy is imported

import numpy as np  # noqa: E402

from _common import fmt_ms, gn, machine_line, markdown_table, median_ms, nn, time_alternating  # noqa: E402
from _common import write_readme_block  # noqa: E402
from char_rnn import graphnet_model  # noqa: E402
from graphnet.optim import SGD, RMSprop, clip_grad_norm  # noqa: E402

PHASES = ("put_s", "submit_s", "wait_s", "worker_s", "reduce_s")


def mlp_workload(batch: int, sizes=(256, 512, 512, 512, 10)):
    """(model builder, arrays, optimizer step): an MLP (ReLU between layers) and one batch."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((batch, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], batch)]

    def build():
        gn.manual_seed(0)
        x, t = gn.Input((None, sizes[0])), gn.Input((None,))
        h = x
        for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
            h = nn.ReLU()(nn.Linear(n_in, n_out)(h))
        return gn.gModule([x, t], [nn.CrossEntropyCriterion()(nn.Linear(sizes[-2], sizes[-1])(h), t)])

    def optimizer(params):
        opt = SGD(params, lr=0.01, momentum=0.9)
        return opt.step
    return build, arrays, optimizer


def char_rnn_workload(batch: int, seq_len: int = 50, hidden: int = 128, layers: int = 2, vocab: int = 65):
    rng = np.random.default_rng(0)
    eye = np.eye(vocab, dtype=np.float32)
    x, y = rng.integers(0, vocab, (batch, seq_len)), rng.integers(0, vocab, (batch, seq_len))
    arrays = [eye[x[:, t]] for t in range(seq_len)] + [np.ascontiguousarray(y[:, t]) for t in range(seq_len)]
    arrays += [np.zeros((batch, hidden), np.float32) for _ in range(2 * layers)]

    def build():
        gn.manual_seed(0)
        return graphnet_model(vocab, hidden, layers, seq_len, np.float32)[0]

    def optimizer(params):
        opt = RMSprop(params, lr=2e-3, alpha=0.95)

        def step():
            clip_grad_norm(params, 5.0)
            opt.step()
        return step
    return build, arrays, optimizer


def contenders(workload, worker_counts):
    """{name: one iteration}, and {name: the data-parallel step} for the Ray contenders."""
    build, arrays, optimizer = workload
    runs, steps = {}, {}

    def iteration(step, opt_step):
        def run():
            loss = step(*arrays)
            t0 = time.perf_counter()
            opt_step()
            optimizer_s[step] = optimizer_s.get(step, 0.0) + time.perf_counter() - t0
            return loss
        return run
    optimizer_s = {}
    model = build()
    runs["one process"] = iteration(gn.compile_train_step(model), optimizer(model.parameters()))
    for n in worker_counts:
        model = build()
        steps[n] = gn.distributed.data_parallel(model, workers=n, threads=THREADS)
        runs[f"Ray, {n} worker{'s' * (n > 1)}"] = iteration(steps[n], optimizer(model.parameters()))
    return runs, steps, optimizer_s


def plain_ceiling(workload, n: int, iters: int) -> float:
    """Throughput of n plain processes (forked, no Ray) each running the iteration, over one process running it:
    the most that n workers could gain on this machine now (n on an idle machine with n free cores)."""
    build, arrays, optimizer = workload
    model = build()
    step, opt_step = gn.compile_train_step(model), optimizer(model.parameters())

    def run(k):
        for _ in range(k):
            step(*arrays)
            opt_step()
    run(1)                                   # compiled before the fork: the children inherit the plan
    t0 = time.perf_counter()
    run(iters)
    one = time.perf_counter() - t0
    procs = [mp.get_context("fork").Process(target=run, args=(iters,)) for _ in range(n)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return n * one / (time.perf_counter() - t0)


def measure(title, workload, args, ceiling):
    runs, steps, optimizer_s = contenders(workload, args.workers)
    try:
        first = {name: fn() for name, fn in runs.items()}         # compiles everywhere; the same first loss
        ref = first["one process"]
        worst = max(abs(v - ref) / abs(ref) for v in first.values())
        if worst > 1e-4:
            raise SystemExit(f"{title}: the contenders disagree on the first loss: {first}")
        before = {n: {**s.profile(), "optimizer_s": optimizer_s[s]} for n, s in steps.items()}
        times = time_alternating(runs, max_reps=args.reps, budget_s=args.budget, min_reps=min(3, args.reps))
        after = {n: {**s.profile(), "optimizer_s": optimizer_s[s]} for n, s in steps.items()}
    finally:
        for s in steps.values():
            s.close()
    base = median_ms(times["one process"])
    rows = [[name, fmt_ms(median_ms(ts)), f"{base / median_ms(ts):.2f}x"] for name, ts in times.items()]
    table = markdown_table(["contender", "ms / iteration (median)", "speed-up"], rows)
    split = []
    for n, name in zip(steps, list(times)[1:]):
        k = after[n]["steps"] - before[n]["steps"]
        per = {p: 1e3 * (after[n][p] - before[n][p]) / k for p in PHASES + ("optimizer_s",)}
        sent = (after[n]["bytes_sent"] - before[n]["bytes_sent"]) / k
        got = (after[n]["bytes_received"] - before[n]["bytes_received"]) / k
        split.append([name, fmt_ms(per["put_s"]), fmt_ms(per["submit_s"]), fmt_ms(per["worker_s"]),
                      fmt_ms(per["wait_s"] - per["worker_s"]), fmt_ms(per["reduce_s"]), fmt_ms(per["optimizer_s"]),
                      f"{sent / 1e6:.2f} / {got / 1e6:.2f}"])
    table += "\n\n" + markdown_table(["contender", "put weights", "send calls", "slowest worker", "transport",
                                      "add grads", "optimizer", "MB sent / received"], split)
    n = max(args.workers)
    return (f"**{title}** ({len(times['one process'])} alternating rounds; mean ms per phase). The machine's "
            f"ceiling meanwhile: {n} plain processes (no Ray) run {ceiling:.2f}x the iterations of one.\n\n{table}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mlp-batch", type=int, default=8192)
    p.add_argument("--rnn-batch", type=int, default=50)
    p.add_argument("--reps", type=int, default=15, help="at most this many timed rounds")
    p.add_argument("--budget", type=float, default=20.0, help="seconds of timing for the slowest contender")
    p.add_argument("--quick", action="store_true", help="3 rounds, a short budget")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads of this process and of each worker")
    p.add_argument("--write-readme", action="store_true", help="put the tables in README.md's distributed block")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.budget = 3, 1.0
    load = os.getloadavg()[0]
    workloads = {f"MLP 256-512-512-512-10, batch {args.mlp_batch}": (mlp_workload(args.mlp_batch), 4),
                 f"char-rnn 2x128 LSTM, 50 steps, batch {args.rnn_batch}": (char_rnn_workload(args.rnn_batch), 20),
                 "the fixed cost: MLP 4-8-3, batch 16": (mlp_workload(16, (4, 8, 3)), 2000)}
    # before Ray starts (its threads do not survive a fork)
    ceilings = {title: plain_ceiling(w, max(args.workers), iters) for title, (w, iters) in workloads.items()}
    gn.distributed.init(num_cpus=max(os.cpu_count() or 1, sum(args.workers) * THREADS))   # all at once
    try:
        parts = [measure(title, w, args, ceilings[title]) for title, (w, _) in workloads.items()]
    finally:
        gn.distributed.shutdown()
    text = (f"{machine_line()}, {THREADS} BLAS thread per process; load average {load:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after\n\n" + "\n\n".join(parts))
    print(text)
    if args.write_readme and not write_readme_block("distributed", text):
        print("README.md has no distributed block: nothing written", file=sys.stderr)
    return text


if __name__ == "__main__":
    main()

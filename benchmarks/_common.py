"""Shared pieces of the benchmarks: the seed's LSTM cell, alternating timing, markdown, the README block.

Timing follows one rule: contenders run alternately in one process (round-robin, the order rotated every
round) so that a noisy, shared machine slows them all alike; each gets a warm-up, and we report medians.
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:                  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import graphnet as gn                          # noqa: E402
from graphnet import nn                        # noqa: E402


def build_lstm(input_size: int, H: int):
    """nngraph's LSTM cell (the seed's spelling, in graphnet.rnn): gates i, f, o, g."""
    return gn.rnn.lstm_cell(input_size, H)


def linears(graph) -> list:
    """The Linear modules of a gModule, in graph order."""
    return [n.module for n in graph.order if isinstance(n.module, nn.Linear)]


def rel_err(a, b) -> float:
    """max |a - b| / max |b|"""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# --- timing --------------------------------------------------------------------------------------------------
def time_alternating(contenders: dict[str, Callable[[], object]], *, max_reps: int, budget_s: float,
                     min_reps: int = 5, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each contender, sampled round-robin.

    After ``warmup`` untimed calls each (fewer when one call already takes a quarter of the budget; the first,
    which may compile, is never the estimate), the number
    of rounds is chosen so that the slowest contender spends about ``budget_s`` seconds (at least ``min_reps``,
    at most ``max_reps`` rounds). The garbage collector is paused while timing, as timeit does.
    """
    names = list(contenders)
    est = {}
    for name in names:
        fn = contenders[name]
        fn()                    # the first call compiles (JAX's jit, numba's kernels): never an estimate
        ts = []
        while len(ts) < max(warmup - 1, 1) and sum(ts) < budget_s / 4:
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        est[name] = min(ts)
    slowest = max(est.values())
    reps = int(min(max_reps, max(min(min_reps, max_reps), budget_s / max(slowest, 1e-9))))
    times = {n: [] for n in names}
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for r in range(reps):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                fn = contenders[name]
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    finally:
        if was:
            gc.enable()
    return times


def median_ms(ts: list[float]) -> float:
    return 1e3 * statistics.median(ts)


# --- output --------------------------------------------------------------------------------------------------
def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"   # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells])


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def machine_line() -> str:
    """One line naming the software and the machine the numbers come from."""
    try:
        import torch
        tv = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        tv = "no torch"
    return (f"Python {platform.python_version()}, numpy {np.__version__}, {tv}, "
            f"{os.cpu_count()} CPUs, {platform.machine()}")


def write_readme_block(tag: str, text: str, readme: Path = ROOT / "README.md") -> bool:
    """Replace what lies between ``<!-- bench:TAG:start -->`` and ``<!-- bench:TAG:end -->`` in the README.

    Returns False, changing nothing, when the README or either marker is missing.
    """
    start, end = f"<!-- bench:{tag}:start -->", f"<!-- bench:{tag}:end -->"
    if not readme.exists():
        return False
    src = readme.read_text()
    i, j = src.find(start), src.find(end)
    if i < 0 or j < i:
        return False
    readme.write_text(src[:i + len(start)] + "\n" + text.rstrip() + "\n" + src[j:])
    return True

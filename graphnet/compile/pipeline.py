"""The compiler's pipeline for one signature: passes for the level, memory plan, emit."""
from __future__ import annotations

import time

from .emit import Emitted
from .passes import PASSES


def build_executable(prog, level: int, train: bool = False):
    stats = {"nodes_lowered": len(prog.values), "passes": []}
    t0 = time.perf_counter()
    for p in PASSES[level]:
        prog = p(prog)
        stats["passes"].append((p.__name__, len(prog.values)))
    stats["nodes"] = len(prog.values)
    exe = Emitted(prog, stats, train=train)
    exe.stats["passes_emit_seconds"] = time.perf_counter() - t0
    return exe

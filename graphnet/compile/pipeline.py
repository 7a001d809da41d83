"""The compiler's pipeline for one signature: passes for the level, memory plan, emit."""
from __future__ import annotations

import time

from .emit import Emitted
from .passes import PASSES, fuse


def build_executable(prog, level: int, train: bool = False, backend: str = "numpy"):
    stats = {"nodes_lowered": len(prog.values), "passes": []}
    t0 = time.perf_counter()
    for p in PASSES[level] + ([fuse] if backend == "numba" and level > 0 else []):
        prog = p(prog)
        stats["passes"].append((p.__name__, len(prog.values)))
    stats["nodes"] = len(prog.values)
    exe = Emitted(prog, stats, train=train)
    exe.stats["passes_emit_seconds"] = time.perf_counter() - t0
    if backend == "numba":
        from .kernels import describe_kernels
        exe.code, exe.stats["kernels"] = describe_kernels(exe.code, prog)
    exe.stats["backend"] = backend
    exe.stats["fused_groups"] = prog.meta.get("fused_groups", 0)
    exe.stats["fused_ops"] = prog.meta.get("fused_ops", 0)
    return exe

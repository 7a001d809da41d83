"""The compiler's pipeline for one signature: the passes of the level, then the memory plan and emission.

Statistics are kept here, the same for every pass: its name, the nodes after it and its CPU seconds
(``stats["pass_seconds"]``; ``stats["passes"]`` keeps (name, nodes)): CPU time, not wall time, so that a busy
machine does not inflate them. Under ``gn.debug()``, or with ``CHECK_IR`` set (the test suite sets it), every
pass's output is checked by ``ir.lint``. ``backend`` picks the passes meant for one code generator too.
"""
from __future__ import annotations

import time

from ..debug import active as _debug_active
from .emit import Emitted
from .ir import collector_paused, lint
from .passes import passes_for

CHECK_IR = False        # lint the IR after every pass even outside gn.debug()


def run_passes(prog, level: int, backend: str = "numpy", check: bool = False):
    """The program after the level's passes (for ``backend``), and [(name, nodes after, seconds)]."""
    if check:
        lint(prog, after="lowering")
    done = []
    for p in passes_for(level, backend):
        t0 = time.process_time()
        prog = p(prog)
        done.append((p.__name__, len(prog.values), time.process_time() - t0))
        if check:
            lint(prog, after=p.__name__)
    return prog, done


def build_executable(prog, level: int, train: bool = False, backend: str = "numpy"):
    """The executable plan of ``prog`` at ``level``: the passes, then the memory plan and the emitted code."""
    with collector_paused():
        return _build(prog, level, train, backend)


def _build(prog, level, train, backend):
    stats = {"nodes_lowered": len(prog.values)}
    t0 = time.process_time()
    prog, done = run_passes(prog, level, backend, check=CHECK_IR or _debug_active())
    stats["passes"] = [(name, n) for name, n, _ in done]
    stats["pass_seconds"] = done
    stats["nodes"] = len(prog.values)
    t1 = time.process_time()
    exe = Emitted(prog, stats, train=train)
    t2 = time.process_time()
    exe.stats["emit_seconds"] = t2 - t1
    exe.stats["passes_emit_seconds"] = t2 - t0
    if backend == "numba":
        from .kernels import describe_kernels
        exe.code, exe.stats["kernels"] = describe_kernels(exe.code, prog)
    exe.stats["backend"] = backend
    exe.stats["fused_groups"] = prog.meta.get("fused_groups", 0)
    exe.stats["fused_ops"] = prog.meta.get("fused_ops", 0)
    return exe

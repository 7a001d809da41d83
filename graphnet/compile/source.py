"""The generated module as it runs: one ``bind`` function that makes a set of arrays and the plan's functions.

    def bind(*, P0, c0, _np_matmul, ...):            # what the code reads from outside: parameters, constants,
        _S1 = _np_empty(4096, 'float32')             # numpy functions; then the arena and its views (prelude)
        _S1_0 = _S1[0:512].reshape((16, 32))
        def step(a0, a1):
            _np_matmul(a0, P0.data, _S1_0)           # i2h (model.py:12)
            ...
        return None, None, step

Calling ``bind`` once per thread (and per batch size) gives functions that close over arrays of their own; the
compiled code is shared. ``plan.code`` is this text, exactly; each line that computes a value names the graph
node it belongs to and the file:line that built it.
"""
from __future__ import annotations

import re

import numpy as np

_NAME = re.compile(r"\b[A-Za-z_]\w*\b")
_NP_CALL = re.compile(r"\bnp\.([A-Za-z_]\w*)\(")
FUNCTIONS = ("forward", "backward", "step")
# bind's first statement when it has a prelude: a branch, which ends the function's first basic block at once.
# CPython (3.11) makes a function's cells (here: the arrays and views the plan's functions close over) with one
# instruction each, inserted at the front of its first basic block, which it moves each time: were the prelude
# that block, compiling would grow as views x prelude lines (5.5 of 6 s of the generated code's compile for
# char-rnn at T = 400); after a branch the first block is one line long and compiling grows linearly.
FIRST_BLOCK_END = "if _np_empty is None: raise ImportError('numpy')  # ends the first block: linear compile"


def assemble(prelude, functions, env, extra=()):
    """(source, line -> value map, names of ``bind``'s parameters).

    ``prelude``: lines run once per binding; ``functions``: (header, [(line, value or None)]); ``env``: what
    names outside the code stand for (numpy functions are added as ``_np_f``, one lookup instead of two per
    call); ``extra``: further parameters of ``bind``."""
    if prelude:
        env.setdefault("_np_empty", np.empty)
        prelude = [FIRST_BLOCK_END] + list(prelude)
    body = [(_direct(line, env), None) for line in prelude]
    for header, lines in functions:
        body.append((header, None))
        body.extend(("    " + _direct(line, env) + _comment(v), v) for line, v in lines)
    made = set(extra)
    for line, _ in body:
        m = re.match(r"\s*(\w+) = ", line)
        if m and not line.startswith(" "):
            made.add(m.group(1))
    used = set()
    for line, _ in body:
        used.update(_NAME.findall(line.split("#", 1)[0]))
    params = list(extra) + sorted(n for n in used if n in env and n not in made)
    defined = {h.split("(")[0][4:] for h, _ in functions}
    ret = ", ".join(f if f in defined else "None" for f in FUNCTIONS)
    src = _header(params) + ["    " + line for line, _ in body] + [f"    return {ret}"]
    first = len(src) - len(body) - 1
    linemap = {first + k + 1: v for k, (_, v) in enumerate(body) if v is not None}
    return "\n".join(src) + "\n", linemap, params


def _header(params):
    """``def bind(*, a, b, ...):``, eight names a line (a count, not a width: the same lines at every batch size,
    where a constant's name may change length)."""
    if not params:
        return ["def bind():"]
    rows = [", ".join(params[k:k + 8]) for k in range(0, len(params), 8)]
    lines = ["def bind(*, " + rows[0]] + ["         " + r for r in rows[1:]]
    return [line + "," for line in lines[:-1]] + [lines[-1] + "):"]


def _direct(line, env):
    def bind(m):
        env.setdefault(f"_np_{m.group(1)}", getattr(np, m.group(1)))
        return f"_np_{m.group(1)}("
    return _NP_CALL.sub(bind, line)


def _comment(v):
    """``  # node (file:line)`` for a line computing a value of a graph node."""
    node = getattr(v, "src", None)
    if node is None:
        return ""
    return f"  # {node.display_name()} ({node.site})"

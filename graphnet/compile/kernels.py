"""Fused kernels: a group of elementwise ops becomes one loop nest over rows, compiled by numba.

A kernel writes its group's results into one array ``out`` of shape (*rows, W): each result the fusion pass
keeps (read after the kernel, or read by the group at other columns) owns a block of W's columns. A result
that a row stack holds (a value of every time step) gets an output array of its own instead (``KernelResult``):
the memory plan puts that array in the stack's rows, so the stack is never copied and stays contiguous for the
GEMMs that read it. Every array and every size but the column widths is an argument, read at run time: the same
kernel serves every batch size and any thread. Per row, the group's ops run in loops over 1-D row slices (numba
vectorizes those; 3-D indexing it does not); ops of one width that read only each other's column j share one
loop and pass scalars.

The scalar formula of each op lives in ``kernel_rules`` (numba compiles scalar code; the numpy forms in ops/ are
calls on whole arrays); ``exp`` and ``tanh`` are ``kernel_math``'s vectorizable formulas. Kernels may reassociate
sums (``fastmath={"reassoc"}``), which lets a row's reductions run as SIMD code; nothing else is relaxed.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

from ..ops import Op
from .kernel_math import NAMES, SOURCES, module_name
from .kernel_rules import convert, is_literal, literal, row_rule, scalar_rule
from .picks import TARGET_CHECK

_HEADER = '''import math
import numpy as np
from numba import njit

_F = np.{dtype}
'''


class Kernel:
    """The source of one kernel, named after its hash: ``name(out, a0, a1, ...)``."""

    def __init__(self, body: str, dtype):
        self.dtype = np.dtype(dtype)
        head = _HEADER.format(dtype=self.dtype.name) + f"\n# _exp, _tanh: from the module {module_name(self.dtype)}\n"
        digest = hashlib.sha256((head + body).encode()).hexdigest()[:16]
        self.name = f"_k{digest}"
        self.template = body
        self.body = body.replace("KERNEL", self.name)
        self.module_source = head + "\n\n" + self.body
        self._over = {}                          # k -> written_over(k), made once

    def written_over(self, k: int) -> "Kernel":
        """This kernel for calls whose ``out`` is its input ``a{k}``'s array (written in place): the rows of
        ``a{k}`` are read through ``out``'s. Given two arrays, LLVM checks at run time whether they overlap,
        finds that they do, and runs the scalar loop; reading and writing through one array at one index, it
        sees that column j is read before it is written and vectorizes the loop."""
        if k not in self._over:
            body, n = re.subn(rf"^(\s*)r{k} = a{k}\b.*$", rf"\1r{k} = o", self.template, flags=re.M)
            if n != 1:
                raise AssertionError(f"kernel {self.name} reads a{k} {n} times by row")
            self._over[k] = Kernel(body, self.dtype)
        return self._over[k]

    # one kernel per source: the same source at another batch size is the same kernel (plans generic in B)
    def __eq__(self, other):
        return isinstance(other, Kernel) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def function(self):
        from .numba_backend import load
        from .picks import readable_errors, target_checks
        helpers = {f: load(module_name(self.dtype), SOURCES[self.dtype], attr=f) for f in NAMES}
        fn = load(self.name, self.module_source, helpers)
        classes = target_checks(self.body)
        return readable_errors(fn, classes) if classes else fn


def plan_kernel(members, slices, ext, outside, where=None, first=(), parts=(), shifts=None):
    """The kernel computing ``members`` (values of one rank, leading shape and dtype, in schedule order).

    ``slices``: id(slice value) -> (member it slices, start column); ``ext``: the arrays it reads, in order;
    ``outside``: ids of members (or slices) read after the kernel; ``where``: id(input) -> (array of ``ext``,
    column offset) for inputs that are column slices of an array, read in place (a row of a column slice is
    not known to be contiguous: numba would not vectorize it); ``first``: members to lay out first, side by side
    in this order (the pieces of a column stack, which then is a block of out); ``parts``: members written into
    arrays of their own, the kernel's arguments after ``ext`` (``KernelResult``); ``shifts``: ext position ->
    a column offset that is an argument of the call (its last ones, ``c{k}``), not part of the source: a row
    of that input is read from that column on (reads at ``where``'s offsets less it). Returns (Kernel, {id(member):
    column offset in out} for the members kept in out, the width of out, whether out may be one of its inputs'
    arrays). Each part is a list of members laid side by side in one array (a column stack's pieces)."""
    mem = {id(v) for v in members}
    where, shifts = where or {}, shifts or {}
    level, cross = {}, set()
    for v in members:
        lv = 0
        row = row_rule(v.op, v.ndim) is not None         # reads its inputs' whole rows: after they are done
        for a in v.args:
            if id(a) in mem:
                same = a.shape[-1] == v.shape[-1] and not row
                lv = max(lv, level[id(a)] if same else level[id(a)] + 1)
            elif id(a) in slices:
                src = slices[id(a)][0]
                cross.add(id(src))
                lv = max(lv, level[id(src)] + 1)
        level[id(v)] = lv
    part = {}                                   # id(member) -> (its array's number, its column offset there)
    for q, vs in enumerate(parts):
        at = 0
        for v in vs:
            part[id(v)] = (q, at)
            at += v.shape[-1]
    held = {id(slices[s][0]) if s in slices else s for s in outside} | {id(f) for f in first} | set(part)
    again = _recomputed(members, mem, slices, held)
    cross -= again                              # (a column slice of one is computed again too, at its offset)
    for v in members:                           # read in a later loop: kept in out (or computed again there)
        for a in v.args:
            if id(a) in mem and level[id(a)] != level[id(v)] and id(a) not in again:
                cross.add(id(a))
    cross |= held - set(part)
    offsets, width = {}, 0
    for v in list(first) + [m for m in members if all(m is not f for f in first)]:
        if id(v) in cross and id(v) not in part:
            offsets[id(v)] = width
            width += v.shape[-1]
    n = len(members[0].shape)
    dtype = members[0].dtype
    c = literal(dtype)
    ext_pos = {id(a): k for k, a in enumerate(ext)}
    ext_info = [(a.ndim, {da for da in range(a.ndim - 1) if a.shape[da] == 1}) for a in ext]

    def read(a, w, shift=0):
        """The expression reading value ``a`` at column shift + j of a loop of width w."""
        if id(a) in slices and id(slices[id(a)][0]) in again:
            a, shift = slices[id(a)][0], shift + slices[id(a)][1]
            return f"({scalar_rule(a.op)(a.op, [read(x, w, shift) for x in a.args], c)})"
        if id(a) in again and level_of_reader[0] != level[id(a)]:
            return f"({scalar_rule(a.op)(a.op, [read(x, w, shift) for x in a.args], c)})"
        if id(a) in mem and id(a) not in offsets and id(a) not in part:
            return f"v{members.index(a)}"
        if id(a) in mem and level_of_reader[0] == level[id(a)] and a.shape[-1] == w:
            return f"v{members.index(a)}"
        if id(a) in mem or id(a) in slices:
            src, start = (a, 0) if id(a) in mem else slices[id(a)]
            if id(src) in part:
                row, off = f"p{part[id(src)][0]}", part[id(src)][1] + start
            else:
                row, off = "o", offsets[id(src)] + start
            return f"{row}[{off}]" if a.shape[-1] == 1 and w > 1 else f"{row}[{_plus(off)}j]"
        if is_literal(a):
            return c(a.op.value)
        base, off = where.get(id(a), (a, 0))
        k = ext_pos[id(base)]
        off -= shifts.get(k, 0)
        if a.ndim == 0:
            return f"s{k}"
        return f"r{k}[{off}]" if a.shape[-1] == 1 and w > 1 else f"r{k}[{_plus(off + shift)}j]"

    loops = {}
    for v in members:
        loops.setdefault((level[id(v)], v.shape[-1]), []).append(v)
    level_of_reader = [0]
    body = []
    for (lv, w), vs in sorted(loops.items(), key=lambda kv: (kv[0][0], members.index(kv[1][0]))):
        level_of_reader[0] = lv
        formulas = {}
        for v in vs:
            i = members.index(v)
            row = row_rule(v.op, v.ndim)
            if row is None:
                formulas[i] = scalar_rule(v.op)(v.op, [read(a, w) for a in v.args], c)
                continue
            reductions, after, formulas[i] = row(v.op, [read(a, w) for a in v.args], f"u{i}", convert(dtype))
            for init, step in reductions:
                body += [init, f"for j in range({w}):", f"    {step}"]
            body += after
        assigns, stores = [], []    # stores after every read of the loop: out may be an input's array (in place)
        for v in vs:
            i = members.index(v)
            assigns.append(f"    v{i} = {formulas[i]}")
            if id(v) in offsets:
                stores.append(f"    o[{_plus(offsets[id(v)])}j] = v{i}")
            elif id(v) in part:
                stores.append(f"    p{part[id(v)][0]}[{_plus(part[id(v)][1])}j] = v{i}")
        if stores or any(re.search(rf"\bv{members.index(v)}\b", line.split(" = ", 1)[1]) for v in vs
                         for line in assigns):
            body += [f"for j in range({w}):"] + assigns + stores      # (a loop of values computed again: none)
    args = "".join(f", a{k}" for k in range(len(ext))) + "".join(f", q{q}" for q in range(len(parts))) \
        + "".join(f", c{k}" for k in sorted(shifts))
    lines = ['@njit(error_model="numpy", fastmath={"reassoc"}, nogil=True, cache=True)', f"def KERNEL(out{args}):"]
    ind = "    "
    lines += [f"{ind}s{k} = a{k}[()]" for k, (rank, _) in enumerate(ext_info) if rank == 0]
    for d in range(n - 1):
        lines.append(f"{ind}for i{d} in range(out.shape[{d}]):")
        ind += "    "
    rows = ', '.join(f'i{d}' for d in range(n - 1))
    lines.append(f"{ind}o = out[{rows}]" if n > 1 else f"{ind}o = out")
    lines += [f"{ind}p{q} = q{q}[{rows}]" if n > 1 else f"{ind}p{q} = q{q}" for q in range(len(parts))]
    for k, (rank, ones) in enumerate(ext_info):
        if rank == 0:
            continue
        idx = [f"min(i{n - rank + da}, a{k}.shape[{da}] - 1)" if da in ones else f"i{n - rank + da}"
               for da in range(rank - 1)]
        row = f"a{k}[{', '.join(idx)}]" if idx else f"a{k}"
        lines.append(f"{ind}r{k} = {row}[c{k}:]" if k in shifts else f"{ind}r{k} = {row}")
    lines += [ind + line for line in body]
    if any(line.endswith(TARGET_CHECK) for line in body):
        lines.append("    return 0")                # (a bad target is returned where it is found)
    single_loop = len(loops) == 1
    return Kernel("\n".join(lines) + "\n", dtype), offsets, width, single_loop


def _recomputed(members, mem, slices, held):
    """ids of the members that later loops compute again where they read them (or a column slice of them, at
    its offset), rather than read them from out: cheap formulas (no exp, tanh, log) of the kernel's inputs
    alone, read directly only at their own width, and not needed after the kernel. A bias add before a softmax's three loops, say: an add again costs less than a
    column block of out written and read back, and out stays narrow (a GEMM reading a block of it reads rows
    as far apart as out is wide)."""
    readers = {}
    for u in members:
        for a in u.args:
            readers.setdefault(id(a), []).append(u)
    again = set()
    for v in members:
        rule = scalar_rule(v.op)
        if (id(v) in held or rule is None or row_rule(v.op, v.ndim) is not None
                or any(id(a) in mem or id(a) in slices for a in v.args)
                or any(u.shape[-1] != v.shape[-1] for u in readers.get(id(v), ()))):
            continue
        formula = rule(v.op, ["x"] * len(v.args), repr)
        if not any(f in formula for f in ("_exp(", "_tanh(", "math.")):
            again.add(id(v))
    return again


def _plus(off):
    return f"{off} + " if off else ""


class FusedKernel(Op):
    """One call computing a group of elementwise ops row by row (see ``graphnet.compile.passes.fuse``)."""
    arity = None
    family = "fused"

    def __init__(self, kernel: Kernel, width: int, ops: int, over=(), scalars=(), parts=0, shifts=()):
        self.kernel, self.width, self.ops = kernel, int(width), int(ops)
        self.shifts = tuple(int(c) for c in shifts)   # column offsets passed after the arrays (``plan_kernel``)
        self.parts = int(parts)              # results in arrays of their own: its last arguments (KernelResult)
        self.scalars = frozenset(scalars)    # positions of 0-d inputs: the plan may hold them as numpy scalars
        # the inputs it may be written over (of its shape and dtype), where that is safe at all; never as an
        # elementwise op into a slice of a stack, whose rows numba could not know to be contiguous
        self.over = tuple(over)
        self.inplace = bool(self.over)

    def attrs(self):
        return (("kernel", self.kernel.name), ("ops", self.ops)) + ((("shifts", self.shifts),) if self.shifts else ())

    def shape(self, *shapes):
        n = max(len(s) for s in shapes)
        lead = [1] * (n - 1)
        for s in shapes:
            for da, size in enumerate(s[:-1]):
                d = n - len(s) + da
                lead[d] = size if size != 1 else lead[d]
        return tuple(lead) + (self.width,)

    def dtype(self, *dtypes):
        return self.kernel.dtype

    def plan_globals(self, line: str) -> dict:
        """The kernels the plan's statement ``line`` (made by ``expr_out``) calls, by name: loaded (their source
        written to the cache folder) only when called."""
        kernels = [self.kernel] + [self.kernel.written_over(k) for k in self.over]
        return {kernel.name: kernel.function() for kernel in kernels if kernel.name + "(" in line}

    def expr_out(self, out, k, *args):
        """The call writing ``out``; ``args``: its inputs' arrays, then its results' own (``parts``)."""
        name = self.kernel.name
        inputs = args[:len(args) - self.parts]
        if out in inputs and self.over:               # the memory plan wrote it over an input
            name = self.kernel.written_over(inputs.index(out)).name
        args = [f"np.asarray({a})" if i in self.scalars else a for i, a in enumerate(args)]
        return f"{name}({out}{''.join(', ' + a for a in args + [str(c) for c in self.shifts])})"

    def forward(self, *xs):
        """``xs``: the inputs, then the arrays of the results kept apart (``parts``), which the call fills."""
        inputs = xs[:len(xs) - self.parts]
        out = np.empty(self.shape(*[x.shape for x in inputs]), self.kernel.dtype)
        self.kernel.function()(out, *[np.asarray(x) for x in xs], *self.shifts)
        return out

    def __repr__(self):
        return f"Fused[{self.ops} ops]"


class KernelResult(Op):
    """A result that a kernel writes into an array of its own (its argument after the inputs), not into a block
    of its ``out``: one that a row stack holds. The memory plan places the array (in the stack's rows) when the
    kernel runs and passes it to the kernel's call; this value has no line of its own."""
    arity = 1
    family = "fused"
    written_by_arg = True

    def __init__(self, index: int, width: int):
        self.index, self.width = int(index), int(width)

    def attrs(self):
        return (("index", self.index), ("width", self.width))

    def shape(self, k):
        return tuple(k[:-1]) + (self.width,)

    def dtype(self, d):
        return d

    def expr_out(self, out, k, x):
        return ""                                     # the kernel's call wrote it

    def forward(self, x):
        raise NotImplementedError("a kernel's result kept apart is written by the kernel's call (the memory plan)")

    def __repr__(self):
        return f"KernelResult[{self.index}]"


def describe_kernels(code: str, prog) -> tuple[str, int]:
    """The plan's code followed by the source of each kernel it calls (once each), and their number."""
    seen = {}
    for v in prog.values:
        if isinstance(v.op, FusedKernel):
            seen.setdefault(v.op.kernel.name, v.op.kernel)
            for kernel in [v.op.kernel.written_over(k) for k in v.op.over]:
                if kernel.name + "(" in code:                # the memory plan wrote it over an input
                    seen.setdefault(kernel.name, kernel)
    if not seen:
        return code, 0
    parts = [code, "# --- fused kernels (numba) ---"] + [k.body for k in seen.values()]
    return "\n".join(parts), len(seen)

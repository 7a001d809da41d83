"""A row stack of one column slice of several arrays is that column slice of their row stack."""
import copy

from ...ops import Concat, Slice
from ..ir import Value, clone, finish
from ..kernels import FusedKernel


def stack_of_slices(prog):
    """concat_rows(x_1[:, a:b], ..., x_k[:, a:b]) -> concat_rows(x_1, ..., x_k)[:, a:b].

    Each x_i holds several results side by side (a fused kernel writes all of a time step's results into one
    array); the stack of one of them, over the steps, would copy. Stacked whole, the x_i are written straight
    into the rows of one array (``memory`` places the pieces of a row stack), and the column slice is a view of
    it that a GEMM or a kernel reads in place. Stacks of the same x_i, at other columns, share that array."""
    p = clone(prog)
    sub, new, made = {}, [], []
    whole = {tuple(a.id for a in v.args): v for v in p.values if _row_stack(v)}    # the program's own stacks
    for v in p.values:
        cols = _sliced_the_same(v)
        if cols is None:
            continue
        xs = tuple(sub.get(a.args[0].id, a.args[0]) for a in v.args)
        key = tuple(x.id for x in xs)
        if key not in whole:
            xs = _widened(xs, sub, new)
            rows = sum(x.shape[0] for x in xs)
            whole[key] = Value(Concat(0), xs, (rows,) + tuple(xs[0].shape[1:]), xs[0].dtype, v.src)
            whole[tuple(x.id for x in xs)] = whole[key]       # as later stacks will name them
            made.append(whole[key])
        s = Value(Slice(v.ndim - 1, *cols), (whole[key],), v.shape, v.dtype, v.src)
        new.append(s)
        sub[v.id] = s
    _nest(made)
    return finish(p, made + new, sub) if sub else p


def _row_stack(v):
    return isinstance(v.op, Concat) and v.shape is not None and v.ndim >= 1 and v.op.dim % v.ndim == 0


def _nest(stacks):
    """A stack whose pieces run through a smaller stack's pieces reads that stack there instead (the stack of
    both layers' steps holds the stack of one layer's): a piece lives in one stack only, so that the smaller
    stack, nested, is written in place too."""
    inner_of, largest_first = set(), sorted(stacks, key=lambda s: -len(s.args))
    for big in largest_first:
        for small in largest_first:
            n = len(small.args)
            if n >= len(big.args) or small.id in inner_of:
                continue
            ids, want = [a.id for a in big.args], [a.id for a in small.args]
            at = next((i for i in range(len(ids) - n + 1) if ids[i:i + n] == want), None)
            if at is not None:
                big.args = big.args[:at] + (small,) + big.args[at + n:]
                inner_of.add(small.id)


def _widened(xs, sub, new):
    """The arrays, as wide as the widest: a fused kernel's output (its width a layout choice; the last time
    step may keep fewer results) is made wider, its columns where they were."""
    width = max(x.shape[-1] for x in xs)
    out = []
    for x in xs:
        if x.shape[-1] < width:
            op = copy.copy(x.op)
            op.width = width
            wide = Value(op, x.args, tuple(x.shape[:-1]) + (width,), x.dtype, x.src)
            new.append(wide)
            sub[x.id] = wide
            x = wide
        out.append(x)
    return tuple(out)


def _sliced_the_same(v):
    """(start, length) when v stacks by rows the same column slice of distinct arrays of one shape (fused
    kernels' outputs: of one shape but their widths), else None."""
    if not isinstance(v.op, Concat) or len(v.args) < 2 or v.shape is None or v.ndim < 2 or v.op.dim % v.ndim:
        return None
    spans, bases = set(), set()
    for a in v.args:
        if not isinstance(a.op, Slice) or a.op.dim % a.ndim != a.ndim - 1 or a.args[0].shape is None:
            return None
        x = a.args[0]
        widens = isinstance(x.op, FusedKernel) and not x.op.inplace
        spans.add((a.op.span(x.shape[-1]), x.shape[1:-1] + (None if widens else x.shape[-1],), x.dtype.str))
        bases.add(x.id)
    if len(spans) != 1 or len(bases) != len(v.args):
        return None
    (span, _, _), = spans
    return span

"""Optimization passes: each a pure function Program -> Program (it rewrites a clone, never its input), one per
file, named as the pass; helpers they share: ``stacking`` (values stacked by rows), ``factors`` (gradient x
forward products), ``addition_trees``, ``fusion_groups`` (which values may fuse, and the groups they form).

``PIPELINE`` is the order they run in, one entry per run: the pass, the lowest level that runs it, the backends it
runs for (None: every backend) and why it sits there. A pass for one backend only (a fusion of elementwise chains
for a JIT backend, say) is one more entry naming that backend; ``passes_for(level, backend)`` picks the entries.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from .batch_rows import batch_rows, batch_rows_around_kernels
from .cse import cse
from .dce import dce
from .distribute_over_stacks import distribute_over_stacks
from .flatten_stacks import flatten_stacks
from .fold_constants import fold_constants
from .fuse import fuse
from .hoist_invariants import hoist_invariants
from .reassociate_products import reassociate_products
from .shared_transposes import shared_transposes
from .simplify import simplify
from .sum_of_gemms import sum_of_gemms
from .sum_of_reductions import sum_of_reductions


class Step(NamedTuple):
    run: Callable               # Program -> Program
    level: int                  # the lowest optimization level that runs it
    why: str                    # why it sits here in the order
    backends: tuple | None = None   # the backends it runs for; None: all

    @property
    def name(self):
        return self.run.__name__


PIPELINE = [
    Step(dce, 1, "lowering and autodiff leave gradients nobody asked for: drop them before anyone looks"),
    Step(fold_constants, 1, "a pure op on constants alone is computed once, before simplify and cse compare values"),
    Step(simplify, 1, "no-op Scales/Reshapes/Transposes go, summed Unslices become Concats: fewer, plainer values"),
    Step(cse, 1, "after simplify, equal values look equal: merge them"),
    Step(distribute_over_stacks, 2, "splits products of stacks into per-piece gradient x forward products..."),
    Step(reassociate_products, 2, "...which this regroups as g * (a * b): the forward part leaves the recurrence"),
    Step(flatten_stacks, 2, "stacks of stacks (from simplify and distribute) become one stack before batching"),
    Step(batch_rows, 2, "the row-wise ops of all time steps become one call each (input projections, head, "
                        "gate derivatives)", ("numpy",)),
    Step(batch_rows_around_kernels, 2, "the same, but elementwise ops that only feed a recurrence's steps stay "
                                       "in them: the steps' kernels compute them at no call", ("numba",)),
    Step(hoist_invariants, 2, "needs the row blocks batch_rows made: a bias added to a block moves next to it..."),
    Step(batch_rows, 2, "...so a second round batches the block + bias sums that hoist_invariants made",
         ("numpy",)),
    Step(batch_rows_around_kernels, 2, "(the second round, on a fusing backend)", ("numba",)),
    Step(sum_of_reductions, 2, "the per-step losses are means of row blocks only after batching: one mean"),
    Step(sum_of_gemms, 2, "weight-gradient GEMMs read the stacks batching made: one GEMM per weight"),
    Step(shared_transposes, 2, "after the GEMMs are final, one transposed view per weight is shared (a contiguous "
                               "copy when many products read it)"),
    Step(simplify, 2, "again: batching stacks copies of one broadcast seed (a loss summed over steps): one view"),
    Step(fold_constants, 2, "again: the rewrites may leave a pure op on constants (a slice of a stacked Const)"),
    Step(cse, 2, "again: the batching passes may make one slice or one stack twice"),
    Step(dce, 1, "last: drop what the rewrites left unused (level 1: what cse merged away)"),
    Step(fuse, 1, "on the final program: each maximal group of elementwise ops becomes one compiled kernel",
         ("numba",)),
]


def passes_for(level: int, backend: str = "numpy") -> list:
    """The passes that run at ``level`` for ``backend``, in order."""
    return [s.run for s in PIPELINE if s.level <= level and (s.backends is None or backend in s.backends)]


PASSES = {level: passes_for(level) for level in (0, 1, 2)}     # the numpy backend's, by level

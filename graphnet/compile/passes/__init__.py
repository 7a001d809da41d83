"""Optimization passes: each a pure function Program -> Program (it works on a clone), tested alone."""
from .batch import sum_of_gemms
from .cse import cse
from .dce import dce
from .fold import fold_constants
from .fuse import fuse
from .products import distribute_over_stacks, reassociate_products
from .rows import batch_rows, hoist_invariants, sum_of_reductions
from .simplify import flatten_stacks, shared_transposes, simplify

PASSES = {
    0: [],
    1: [dce, fold_constants, simplify, cse, dce],
    2: [dce, fold_constants, simplify, cse, distribute_over_stacks, reassociate_products, flatten_stacks, batch_rows,
        hoist_invariants, batch_rows, sum_of_reductions, sum_of_gemms, shared_transposes, fold_constants, cse, dce],
}

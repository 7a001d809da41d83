"""Optimization passes: each a pure function Program -> Program (it works on a clone), tested alone."""
from .batch import stack_shared_matmuls, sum_of_gemms
from .cse import cse
from .dce import dce
from .fold import fold_constants
from .simplify import simplify

PASSES = {
    0: [],
    1: [dce, fold_constants, simplify, cse, dce],
    2: [dce, fold_constants, simplify, cse, sum_of_gemms, stack_shared_matmuls, cse, dce],
}

"""The rows of a batch, split among data-parallel workers and joined back: every input (each array of a table
input too) is cut along dim 0, the first ``n % k`` workers taking one row more; the outputs after the loss come
back joined along dim 0, in the order of the rows."""
from __future__ import annotations

import numpy as np

from .errors import InputError


def is_table(x) -> bool:
    """A table input: a non-empty list of arrays (or of tables); a list of numbers is one array."""
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(v, (np.ndarray, list, tuple)) for v in x)


def leaves(x):
    """The arrays of an input, a table's in order."""
    if is_table(x):
        for v in x:
            yield from leaves(v)
    else:
        yield x


def row_count(arrays) -> int:
    """The batch size: every input (each array of a table input too) has it as its first dim."""
    if not arrays:
        raise InputError("data_parallel: the step takes the model's inputs as arrays, got none")
    first = None
    for k, a in enumerate(arrays):
        for leaf in leaves(a):
            shape = np.shape(leaf)
            if not shape:
                raise InputError(f"data_parallel shards every input along dim 0: input {k} is a scalar; give it "
                                 f"a first dim of one row per example")
            if first is None:
                first = (k, shape)
            elif shape[0] != first[1][0]:
                raise InputError(f"data_parallel shards every input along dim 0, so they must have as many rows: "
                                 f"input {first[0]} has shape {first[1]}, input {k} has shape {shape}")
    if first[1][0] == 0:
        raise InputError(f"data_parallel: the batch is empty (input {first[0]} has shape {first[1]})")
    return first[1][0]


def shard_sizes(n: int, k: int) -> list:
    """Rows per worker: as even as can be, the first ``n % k`` one more; none for a worker without a row."""
    base, extra = divmod(n, k)
    return [base + 1] * extra + [base] * (k - extra) if base else [1] * n


def take_rows(arrays, lo: int, hi: int) -> list:
    """Rows lo:hi of every input, table inputs entry by entry (views: Ray copies them once, when it sends)."""
    return [[take_rows([v], lo, hi)[0] for v in a] if is_table(a) else np.asarray(a)[lo:hi] for a in arrays]


def concat_outputs(per_worker: list) -> list:
    """The further outputs of every worker joined along dim 0, in the order of the rows."""
    outs = []
    for k, parts in enumerate(zip(*per_worker)):
        if any(np.ndim(p) == 0 for p in parts):
            raise InputError(f"data_parallel: the model's output {k + 1} is a scalar; outputs after the loss are "
                             f"joined along dim 0 (the batch), so each needs the batch as its first dim")
        outs.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
    return outs

"""Datasets and batching: TensorDataset, DataLoader, and the Kaggle Fashion-MNIST CSV loader."""
from __future__ import annotations

import csv
import gzip
import io
import math
import numbers
import os
import warnings

import numpy as np

from .errors import FormatError, InputError
from .module import rng

__all__ = ["TensorDataset", "DataLoader", "load_fashion_mnist_csv"]


class TensorDataset:
    """Sample i is (a[i] for a in arrays); every array has the same first dimension."""

    def __init__(self, *arrays):
        if not arrays:
            raise InputError("TensorDataset needs at least one array")
        arrays = tuple(np.asarray(a) for a in arrays)
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise InputError(f"TensorDataset: array {i} is a scalar; each array needs a first (sample) dimension")
        sizes = [a.shape[0] for a in arrays]
        if len(set(sizes)) != 1:
            raise InputError(f"TensorDataset: the arrays must have the same first dimension (one row per sample), "
                             f"got shapes {', '.join(str(a.shape) for a in arrays)}")
        self.arrays = arrays

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        """One sample for an integer, a batch for an index array: a tuple with one entry per array."""
        return tuple(a[index] for a in self.arrays)


class DataLoader:
    """Batches of ``dataset[indices]`` (tuples of arrays for a TensorDataset), like torch.utils.data.DataLoader.

    ``dataset``: anything with ``len()`` that can be indexed by an integer array (a TensorDataset, an array).
    ``shuffle``: a new permutation every epoch, from a generator seeded once by ``seed``, or, when ``seed`` is
    None, seeded each epoch from ``graphnet.module.rng()`` (so ``gn.manual_seed`` makes it reproducible).
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InputError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise InputError(f"DataLoader: the dataset must support len() and indexing, got "
                             f"{type(dataset).__name__}; wrap arrays in TensorDataset(x, y)")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self._gen = np.random.default_rng(seed) if seed is not None else None

    def __len__(self) -> int:
        """Batches per epoch: ⌈N / batch_size⌉, or ⌊N / batch_size⌋ with drop_last."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            # like torch's RandomSampler without a generator: one seed drawn from the global stream per epoch
            gen = self._gen if self._gen is not None else np.random.default_rng(rng().integers(2 ** 63))
            order = gen.permutation(n)
        else:
            order = np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self.dataset[order[start:start + self.batch_size]]


# --- Fashion-MNIST (Kaggle CSV: header "label,pixel1,...,pixel784", one image a line, label first) ----------

N_PIXELS = 784


def load_fashion_mnist_csv(path, mean=None):
    """(x, y, mean): x = pixels/255 − mean as float32 (N, 784), y int64 (N,) labels 0..9.

    ``mean`` None: the per-pixel mean of this file's pixels/255 (784,); else the given mean (the training
    set's, for a test set; a scalar works too). The file may be gzipped (told by its magic bytes).
    """
    path = os.fspath(path)
    if mean is not None:
        mean = np.asarray(mean, np.float32)
        if mean.shape not in ((), (N_PIXELS,)):
            raise InputError(f"load_fashion_mnist_csv: mean must be a scalar or have shape ({N_PIXELS},), "
                             f"got shape {mean.shape}")
    try:
        table = _read_table(path)
    except FormatError:
        raise
    except (ValueError, OverflowError):      # np.loadtxt's parse errors: _diagnose names the line
        table = None
    except FileNotFoundError:
        raise
    except (OSError, EOFError) as e:         # a damaged gzip stream
        raise FormatError(f"{path}: cannot be read: {e}") from None
    if table is None or not _valid(table):
        raise _diagnose(path)
    y = table[:, 0].astype(np.int64)
    x = table[:, 1:].astype(np.float32)
    x /= 255
    if mean is None:
        mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    x -= mean
    return x, y, mean


def _read_table(path):
    """The rows after the header as one uint8 table (numpy's C parser: fast, and 47 MB for the 60,000 lines)."""
    with _open_text(path) as f:
        _check_header(path, f.readline())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # "input contained no data": reported by _diagnose instead
            return np.loadtxt(f, delimiter=",", dtype=np.uint8, ndmin=2)


def _open_text(path):
    """A text stream over the file, through gzip when it starts with gzip's magic bytes 1f 8b."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def _check_header(path, line: str) -> None:
    fields = line.strip().split(",")
    if not line.strip():
        raise FormatError(f"{path}: line 1: the file is empty; expected the header 'label,pixel1,...,pixel784'")
    if fields[0].strip() != "label" or len(fields) != 1 + N_PIXELS:
        raise FormatError(f"{path}: line 1: expected the header 'label,pixel1,...,pixel784' "
                          f"({1 + N_PIXELS} columns), got {line.strip()[:60]!r} ({len(fields)} columns)")


def _valid(table) -> bool:
    """Rows present, 785 columns, labels 0..9 (uint8 parsing already rejected pixels outside 0..255)."""
    return table.shape[0] > 0 and table.shape[1] == 1 + N_PIXELS and int(table[:, 0].max()) <= 9


def _diagnose(path) -> FormatError:
    """The fast parse failed: read the file again line by line to name the first bad line."""
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            next(reader, None)                   # the header, already checked
            rows = 0
            for row in reader:
                if not row or not "".join(row).strip():
                    continue                     # blank lines are skipped, as np.loadtxt does
                rows += 1
                problem = _row_problem(row)
                if problem:
                    return FormatError(f"{path}: line {reader.line_num}: {problem}")
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        return FormatError(f"{path}: cannot be read: {e}")
    if rows == 0:
        return FormatError(f"{path}: no images after the header line")
    return FormatError(f"{path}: not a Fashion-MNIST CSV file (label,pixel1,...,pixel784)")


def _row_problem(row) -> str | None:
    if len(row) != 1 + N_PIXELS:
        return f"expected {1 + N_PIXELS} values (label + {N_PIXELS} pixels), got {len(row)}"
    for col, text in enumerate(row, start=1):
        try:
            v = int(text)
        except ValueError:
            return f"column {col}: {text.strip()[:20]!r} is not an integer"
        if col == 1 and not 0 <= v <= 9:
            return f"label {v} is not a class 0..9"
        if col > 1 and not 0 <= v <= 255:
            return f"column {col}: pixel value {v} is outside 0..255"
    return None

"""The ONNX graph under construction: tensor names, initializers, nodes, and shapes that follow the batch size.

Each IR value has a name in the ONNX graph and a shape whose entries are ints or ``Batch(k)``: k times the batch
size, which the exported model takes from its first input at run time. Shape tensors built from these (for
Reshape, Expand) therefore never hold the batch size the graph was exported at.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """A dimension of ``k`` times the batch size."""
    k: int

    def __str__(self):
        return "batch" if self.k == 1 else f"{self.k}*batch"


class OnnxGraph:
    """Nodes and initializers of one ONNX graph, with a unique name for each tensor."""

    def __init__(self, onnx, batch_source: str):
        self.onnx = onnx                  # the onnx package (imported by the caller, lazily)
        self.nodes, self.initializers = [], []
        self.names: dict = {}             # IR value id -> tensor name
        self.dims: dict = {}              # IR value id -> shape with Batch entries
        self._taken: set = set()
        self._batch_source = batch_source # a graph input whose first dim is the batch size
        self._cache: dict = {}

    # --- names -----------------------------------------------------------------------------------------------
    def unique(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._taken:
            i += 1
            name = f"{hint}_{i}"
        self._taken.add(name)
        return name

    def name(self, v) -> str:
        return self.names[id(v)]

    def shape(self, v) -> tuple:
        return self.dims[id(v)]

    # --- making tensors ------------------------------------------------------------------------------------------
    def initializer(self, array, hint: str) -> str:
        name = self.unique(hint)
        # np.asarray, not np.ascontiguousarray: a 0-d constant stays 0-d
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array, order="C"), name))
        return name

    def const(self, value, dtype) -> str:
        """A constant tensor (one per value and dtype: scalars and index lists recur)."""
        arr = np.asarray(value, dtype=dtype)
        key = ("const", arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._cache:
            self._cache[key] = self.initializer(arr, "const")
        return self._cache[key]

    def ints(self, values) -> str:
        return self.const(list(values), np.int64)

    def add(self, op_type: str, inputs, hint: str, n_out: int = 1, **attrs):
        """Append a node; its output name (or names when ``n_out`` > 1)."""
        outs = [self.unique(f"{hint}/{op_type}" if n_out == 1 else f"{hint}/{op_type}:{i}") for i in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, name=self.unique(f"{hint}#node"),
                                                     **attrs))
        return outs[0] if n_out == 1 else outs

    # --- shapes that follow the batch size -------------------------------------------------------------------
    def batch_size(self) -> str:
        """The batch size as a 1-element int64 tensor, read from the first input's shape at run time."""
        if "batch" not in self._cache:
            self._cache["batch"] = self.add("Shape", [self._batch_source], "batch", start=0, end=1)
        return self._cache["batch"]

    def shape_tensor(self, dims, hint: str) -> str:
        """A 1-d int64 tensor holding ``dims``; entries Batch(k) are computed from the run-time batch size."""
        if not any(isinstance(d, Batch) for d in dims):
            return self.ints(dims)
        key = ("shape", tuple(dims))
        if key not in self._cache:
            parts, run = [], []
            for d in dims:
                if isinstance(d, Batch):
                    if run:
                        parts.append(self.ints(run))
                        run = []
                    b = self.batch_size()
                    parts.append(b if d.k == 1 else self.add("Mul", [b, self.ints([d.k])], hint))
                else:
                    run.append(d)
            if run:
                parts.append(self.ints(run))
            self._cache[key] = parts[0] if len(parts) == 1 else self.add("Concat", parts, hint, axis=0)
        return self._cache[key]

    def reshape_spec(self, dims, hint: str) -> str:
        """The shape input of a Reshape to ``dims``: -1 where the one batch-sized dim is, else a shape tensor."""
        batch = [i for i, d in enumerate(dims) if isinstance(d, Batch)]
        if len(batch) == 1:
            return self.ints([-1 if isinstance(d, Batch) else d for d in dims])
        return self.shape_tensor(dims, hint)

    # --- the finished graph ------------------------------------------------------------------------------------
    def used_by(self, outputs) -> tuple:
        """The nodes and initializers the outputs need, in order (a translation may leave nodes no output reads)."""
        need = set(outputs)
        keep = []
        for node in reversed(self.nodes):
            if any(o in need for o in node.output):
                keep.append(node)
                need.update(i for i in node.input if i)
        return keep[::-1], [t for t in self.initializers if t.name in need]

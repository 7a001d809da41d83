"""``gn.export_onnx``: a module's forward graph (evaluation mode) as an ONNX model with a dynamic batch dimension.

The module is lowered to primitive IR, as the compiler does, and each primitive becomes ONNX nodes (onnx_ops.py).
Which dimensions follow the batch size is found by lowering at two batch sizes and comparing the shapes value by
value: a dimension of k*B at batch B and k*B' at B' is ``Batch(k)``; shape constants built from it read the batch
size at run time. Graph inputs and outputs are named after the graph's nodes.
"""
from __future__ import annotations

import os

import numpy as np

from .. import ops
from ..errors import GraphError, InputError, ShapeError, node_error
from ..module import Module
from .onnx_graph import Batch, OnnxGraph
from .onnx_ops import translate

OPSET = 18                 # onnxruntime >= 1.14 runs it; ReduceMean/ReduceMax take their axes as an input
IR_VERSION = 8             # the IR version of opset 18


def _lower(graph, signature):
    """The forward IR of ``graph`` (a gModule) for ``signature``: the compiler's one entry point used here."""
    from ..compile.lower import lower
    n_out = len(graph.outputs)
    prog = lower(graph, signature, wrt_inputs=[False] * len(signature), seeded=[False] * n_out)
    return prog.args, prog.forward_values(), prog.outputs


def export_onnx(module: Module, path, inputs):
    """Write ``module``'s forward graph in evaluation mode to ``path`` as an ONNX model; returns the ModelProto.

    ``inputs``: one example array per graph input (or one array); their shapes and dtypes fix the model's, except
    the first dimension of every input, the batch, which the model leaves free ("batch"). The module's modes are
    restored afterwards. Needs the ``onnx`` package (``pip install graphnet[onnx]``).
    """
    try:
        import onnx
    except ImportError:
        raise InputError("gn.export_onnx needs the onnx package: pip install 'graphnet[onnx]' (or pip install onnx)"
                         ) from None
    if not isinstance(module, Module):
        raise InputError(f"gn.export_onnx takes a module (a gModule or an nn module), got {type(module).__name__}")
    graph = _as_graph(module, inputs)
    arrays = _check_inputs(graph, inputs, module.dtype)
    modes = {id(m): (m, m.train) for m in module.modules()}
    module.evaluate()
    try:
        batch = arrays[0].shape[0]
        sig = [(a.shape, a.dtype) for a in arrays]
        args, values, outputs = _lower(graph, sig)
        other = _lower_at(graph, [((batch + 1,) + a.shape[1:], a.dtype) for a in arrays], batch + 1)
        dims = _batch_dims(values, other[1], batch, batch + 1)
        model = _build(onnx, graph, args, values, outputs, dims)
    finally:
        # the modes as they were; evaluate() moved the mode version, so no plan built before runs stale
        for m, train in modes.values():
            object.__setattr__(m, "train", train)
    onnx.save(model, os.fspath(path))
    return model


def _as_graph(module, inputs):
    """A gModule to export: the module itself, or a one-node graph around a plain module."""
    from ..gmodule import gModule, one_node_graph
    from ..node import Input
    if isinstance(module, gModule):
        return module
    n = len(inputs) if isinstance(inputs, (list, tuple)) else 1
    graph = one_node_graph(module, [Input(name="input" if n == 1 else f"input{i}") for i in range(n)])
    for i, o in enumerate(graph.outputs):
        o.name = "output" if len(graph.outputs) == 1 else f"output{i}"
    graph.name = type(module).__name__
    return graph


def _check_inputs(graph, inputs, dtype):
    arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    names = [n.display_name() for n in graph.inputs]
    if len(arrays) != len(names):
        raise InputError(f"gn.export_onnx: {graph.label()} takes {len(names)} input array(s) ({', '.join(names)}), "
                         f"got {len(arrays)}")
    out = []
    for a, name in zip(arrays, names):
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu":
            raise InputError(f"gn.export_onnx: input '{name}' must be a float or integer numpy array, got "
                             f"{type(a).__name__}{'' if not hasattr(a, 'dtype') else ' of dtype ' + str(a.dtype)}")
        if a.ndim == 0:
            raise InputError(f"gn.export_onnx: input '{name}' is 0-d; every input's first dimension is the batch")
        out.append(a.astype(dtype) if a.dtype.kind == "f" else a)
    sizes = {a.shape[0] for a in out}
    if len(sizes) > 1:
        shown = ", ".join(f"'{n}' {a.shape}" for n, a in zip(names, out))
        raise InputError(f"gn.export_onnx: every input's first dimension is the batch, and they differ: {shown}")
    return out


def _lower_at(graph, signature, batch):
    try:
        return _lower(graph, signature)
    except ShapeError as e:
        raise GraphError(f"gn.export_onnx: the graph does not take a batch of {batch} (its shapes depend on the batch "
                         f"size in a way a dynamic batch dimension cannot express):\n{e}", e.node) from None


def _batch_dims(values, other, b0, b1):
    """Each value's shape with Batch(k) where a dimension is k times the batch size (the lowerings agree)."""
    if len(values) != len(other) or any(type(v.op) is not type(w.op) for v, w in zip(values, other)):
        raise GraphError(f"gn.export_onnx: the graph lowers to different programs at batch sizes {b0} and {b1}; "
                         f"a dynamic batch dimension needs one program for every batch size")
    dims = {}
    for v, w in zip(values, other):
        shape = []
        for a, b in zip(v.shape, w.shape):
            if a == b:
                shape.append(a)
            elif a % b0 == 0 and b % b1 == 0 and a // b0 == b // b1:
                shape.append(Batch(a // b0))
            else:
                raise node_error(GraphError, f"gn.export_onnx: {v.op!r} has a dimension of {a} at batch size {b0} and "
                                             f"{b} at {b1}, not a multiple of the batch size", v.src)
        if v.op != w.op and type(v.op) not in _SHAPE_ATTRS:
            raise node_error(GraphError, f"gn.export_onnx: {v.op!r} depends on the batch size ({w.op!r} at batch "
                                         f"size {b1}); ONNX export needs it not to", v.src)
        dims[id(v)] = tuple(shape)
    return dims


_SHAPE_ATTRS = {ops.Reshape, ops.BroadcastTo, ops.Const}   # their attributes are the output's shape (g.shape())


def _build(onnx, graph, args, values, outputs, dims):
    helper = onnx.helper
    in_names = [n.display_name() for n in graph.inputs]
    g = OnnxGraph(onnx, batch_source=in_names[0])
    g.dims = dims
    inputs = []
    for a, name in zip(args, in_names):
        g.names[id(a)] = g.unique(name)
        inputs.append(_value_info(helper, g.names[id(a)], a.dtype, ("batch",) + tuple(a.shape[1:])))
    for v in values:
        if id(v) in g.names:
            continue
        out = translate(g, v)
        if out is None:
            raise node_error(GraphError, f"gn.export_onnx: {v.op!r} has no ONNX form (shapes "
                                         f"{', '.join(str(a.shape) for a in v.args) or 'none'}); write this part "
                                         f"with graphnet's modules, or leave it out of the exported graph", v.src)
        g.names[id(v)] = out
    out_infos, out_names = [], []
    for o, node in zip(outputs, graph.outputs):
        name = g.unique(node.display_name())
        # an output is its own tensor: an input passed through, or a value twice an output, is copied
        g.nodes.append(helper.make_node("Identity", [g.name(o)], [name], name=g.unique(f"{name}#node")))
        out_names.append(name)
        shape = tuple("batch" if d == Batch(1) else None if isinstance(d, Batch) else d for d in g.shape(o))
        out_infos.append(_value_info(helper, name, o.dtype, shape))
    nodes, inits = g.used_by(out_names)
    model = helper.make_model(helper.make_graph(nodes, graph.name or "graphnet", inputs, out_infos, inits),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="graphnet")
    model.ir_version = IR_VERSION
    return model


def _value_info(helper, name, dtype, shape):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape))

"""Hostile inputs: bad graphs, bad arrays, bad files.

Each case must raise the right graphnet error (GraphError, ShapeError, InputError or FormatError, all
ValueErrors) with a message a user can act on, must never run code found in a file, and must leave the process
usable: after every bad call, ``still_works`` builds, runs and loads a good model and checks its results.
"""
import io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

import graphnet as gn
from graphnet import debug as _debug
from graphnet import module as _module
from graphnet import nn


# --- a good model, and the proof that the process still works ---------------------------------------------------

def _cell():
    x = gn.Input((None, 3), name="x")
    h = gn.Input(name="h")
    lin = nn.Linear(3, 2)
    y = nn.Tanh()(lin(x)) + h
    return gn.gModule([x, h], [y, nn.Sigmoid()(y)])


class Good:
    """A model, its file and its reference results; ``check()`` proves that graphnet still builds, runs, loads."""

    def __init__(self, path):
        gn.manual_seed(0)
        self.model = _cell()
        self.path = path
        gn.save(self.model, path)
        self.bytes = path.read_bytes()
        rng = np.random.default_rng(0)
        self.inputs = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)]
        self.ref = self.model.forward(self.inputs)
        self.gref = self.model.backward(self.inputs, [np.ones((4, 2), np.float32)] * 2)

    def same(self, model):
        out = model.forward(self.inputs)
        return all(np.array_equal(a, b) for a, b in zip(out, self.ref))

    def check(self):
        assert not _debug.active()
        assert isinstance(_module.rng(), np.random.Generator)
        assert self.same(self.model)
        g = self.model.backward(self.inputs, [np.ones((4, 2), np.float32)] * 2)
        assert all(np.array_equal(a, b) for a, b in zip(g, self.gref))
        assert self.same(gn.load(self.path))
        x = gn.Input()
        assert nn.Tanh()(x) is not None


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return Good(tmp_path_factory.mktemp("good") / "cell.gnet")


@pytest.fixture
def still_works(good):
    generator = _module.rng()
    yield
    assert _module.rng() is generator, "the user's random generator was replaced"
    good.check()


def _graph_x():
    return gn.Input((None, 3), name="x")


# --- building: bad graphs ----------------------------------------------------------------------------------------

_NOT_NODES = [None, 3, 2.5, "x", b"x", {"a": 1}, {1, 2}, np.zeros(3), object(), True, nn.Tanh, range(3)]


def _ids(values):
    return [type(v).__name__ if not isinstance(v, type) else "class" for v in values]


@pytest.mark.parametrize("arg", _NOT_NODES, ids=_ids(_NOT_NODES))
def test_a_module_called_on_what_is_not_a_node(arg, still_works):
    x = _graph_x()
    with pytest.raises(gn.GraphError, match=r"argument 1 of CAddTable is a \w+, not a Node|nested list"):
        nn.CAddTable()(x, arg)


@pytest.mark.parametrize("arg", _NOT_NODES, ids=_ids(_NOT_NODES))
def test_gmodule_given_what_is_not_a_node(arg, still_works):
    x = _graph_x()
    y = nn.Tanh()(x)
    with pytest.raises(gn.GraphError, match=r"gModule outputs\[1\] is a \w+, not a Node"):
        gn.gModule([x], [y, arg])
    with pytest.raises(gn.GraphError, match=r"gModule inputs\[1\] is a \w+, not a Node"):
        gn.gModule([x, arg], [y])


@pytest.mark.parametrize("arg", [None, "x", b"x", [], np.zeros((2, 3))], ids=["None", "str", "bytes", "list", "array"])
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "@"])
def test_node_sugar_with_what_is_not_a_node_or_number(op, arg, still_works):
    x = _graph_x()
    fns = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
           "@": lambda a, b: a @ b}
    with pytest.raises(gn.GraphError, match=rf"node 'x' \{op} \w+: a node combines with other nodes"):
        fns[op](x, arg)
    with pytest.raises(gn.GraphError, match=r"node 'x' . \w+: a node combines"):
        fns[op](arg, x)


_MODULES_AS_NODES = [
    ("linear_on_module", lambda x: nn.Linear(3, 4)(nn.Tanh()), gn.GraphError,
     r"argument 0 of Linear\(3 -> 4\) is a Module \(Tanh\), not a Node — did you forget to call it: Tanh\(...\)\(x\)"),
    ("table_on_module", lambda x: nn.CAddTable()(x, nn.Linear(3, 3)), gn.GraphError,
     r"argument 1 of CAddTable is a Module \(Linear\(3 -> 3\)\).*did you forget to call it"),
    ("list_with_module", lambda x: nn.JoinTable(1)([x, nn.Sigmoid()]), gn.GraphError,
     r"argument 1 of JoinTable\(1\) is a Module \(Sigmoid\)"),
    ("output_is_module", lambda x: gn.gModule([x], [nn.Tanh()]), gn.GraphError,
     r"gModule outputs\[0\] is a Module \(Tanh\).*did you forget to call it"),
    ("input_is_module", lambda x: gn.gModule([nn.Identity()], [x]), gn.GraphError,
     r"gModule inputs\[0\] is a Module \(Identity\)"),
    ("gmodule_on_module", lambda x: gn.gModule([x], [nn.Tanh()(x)])(nn.Tanh()), gn.GraphError,
     r"is a Module \(Tanh\), not a Node"),
    ("sugar_with_module", lambda x: x + nn.Tanh(), gn.GraphError, r"node 'x' \+ Tanh: a node combines"),
]

_ARITY = [
    ("tanh_two", lambda x: nn.Tanh()(x, x), gn.GraphError, r"Tanh takes 1 input node, got 2 \(at .*test_hostile.py:\d+\)"),
    ("linear_none", lambda x: nn.Linear(3, 4)(), gn.GraphError, r"Linear\(3 -> 4\) was called with no input nodes"),
    ("csub_one", lambda x: nn.CSubTable()(x), gn.GraphError, r"CSubTable takes 2 input nodes, got 1"),
    ("csub_three", lambda x: nn.CSubTable()(x, x, x), gn.GraphError, r"CSubTable takes 2 input nodes, got 3"),
    ("cdiv_one", lambda x: nn.CDivTable()([x]), gn.GraphError, r"CDivTable takes 2 input nodes, got 1"),
    ("mm_one", lambda x: nn.MM()(x), gn.GraphError, r"MM takes 2 input nodes, got 1"),
    ("mse_one", lambda x: nn.MSECriterion()(x), gn.GraphError, r"MSECriterion takes 2 input nodes, got 1"),
    ("nll_three", lambda x: nn.ClassNLLCriterion()(x, x, x), gn.GraphError, r"ClassNLLCriterion takes 2 input nodes"),
    ("gmodule_arity", lambda x: gn.gModule([x], [nn.Tanh()(x)])(x, x), gn.GraphError,
     r"gModule\(1 -> 1\) takes 1 input node, got 2"),
    ("keyword_input", lambda x: nn.Tanh()(input=x), gn.GraphError, r"Tanh takes its input nodes as positional"),
    ("empty_list", lambda x: nn.CAddTable()([]), gn.GraphError, r"CAddTable was called with no input nodes"),
    ("nested_list", lambda x: nn.CAddTable()([[x, x]]), gn.GraphError, r"nested list; pass nodes, or one list"),
]

_PACKING = [
    ("unused_input", lambda x: gn.gModule([x, gn.Input(name="extra")], [nn.Tanh()(x)]), gn.GraphError,
     r"gModule input 'extra' \(built at .*test_hostile.py:\d+\) is not used by any output; remove it"),
    ("duplicated_input", lambda x: gn.gModule([x, x], [nn.Tanh()(x)]), gn.GraphError,
     r"gModule input 'x' is listed twice \(at .*test_hostile.py:\d+\)"),
    ("duplicated_output", lambda x: gn.gModule([x], [nn.Tanh()(x)] * 2), gn.GraphError,
     r"gModule output 'Tanh_\d+' is listed twice"),
    ("undeclared_input", lambda x: gn.gModule([x], [nn.Tanh()(x) + gn.Input(name="stray")]), gn.GraphError,
     r"depends on input node 'stray' \(built at .*\), which is not in gModule's inputs; add it"),
    ("unreachable_output", lambda x: gn.gModule([x], [nn.Tanh()(gn.Input(name="other"))]), gn.GraphError,
     r"output 'Tanh_\d+' depends on input node 'other'"),
    ("output_of_other_graph", lambda x: gn.gModule([x], [nn.Tanh()(x), nn.ReLU()(gn.Input(name="z"))]),
     gn.GraphError, r"depends on input node 'z'"),
    ("no_inputs", lambda x: gn.gModule([], [x]), gn.GraphError, r"gModule needs at least one input node"),
    ("no_outputs", lambda x: gn.gModule([x], []), gn.GraphError, r"gModule needs at least one output node"),
    ("input_not_an_input", lambda x: gn.gModule([nn.Tanh()(x)], [x]), gn.GraphError,
     r"gModule's inputs must be gn.Input\(\) nodes; 'Tanh_\d+' is made by Tanh \(built at .*test_hostile.py:\d+\)"),
    ("inputs_none", lambda x: gn.gModule(None, [x]), gn.GraphError, r"gModule inputs\[0\] is a NoneType"),
    ("inputs_dict", lambda x: gn.gModule({"x": x}, [x]), gn.GraphError, r"gModule inputs\[0\] is a dict"),
    ("inputs_str", lambda x: gn.gModule("x", [x]), gn.GraphError, r"gModule inputs\[0\] is a str"),
    ("inputs_nested", lambda x: gn.gModule([[x]], [x]), gn.GraphError, r"gModule inputs\[0\] is a list"),
    ("unknown_output_count", lambda x: gn.gModule([x], [nn.SplitTable(1)(gn.Input(name="u"))]), gn.GraphError,
     r"unknown number of outputs; unpack it with .split\(k\)"),
]

_NODES = [
    ("unpack_single", lambda x: [n for n in nn.Tanh()(x)], gn.GraphError,
     r"node 'Tanh_\d+' \(Tanh\) has a single output and cannot be unpacked"),
    ("split_single", lambda x: x.split(2), gn.GraphError, r"has a single output; split\(2\) needs a node with 2"),
    ("split_wrong_count", lambda x: nn.SplitTable(1)(x).split(3)[0].inputs[0].split(4), gn.GraphError,
     r"split\(4\) on node .* which has 3 outputs"),
    ("unpack_wrong_count", lambda x: _unpack2(gn.gModule([x], [x * 2, x * 3, x * 4])(x)), ValueError,
     r"too many values to unpack"),
    ("item_out_of_range", lambda x: gn.gModule([x], [x * 2, x * 3])(x)[5], gn.GraphError,
     r"output 5 is out of range: node .* has 2 outputs"),
    ("index_single", lambda x: nn.Tanh()(x).item(0), gn.GraphError, r"has a single output; only a node with several"),
    ("truth_value", lambda x: bool(x), gn.GraphError, r"node 'x' is symbolic: it has no truth value"),
    ("if_node", lambda x: 1 if nn.Tanh()(x) else 0, gn.GraphError, r"no truth value until the graph runs"),
    ("compare", lambda x: x < 0, gn.GraphError, r"cannot be compared until the graph runs"),
    ("float_of_node", lambda x: float(x), gn.GraphError, r"it has no value until the graph runs"),
    ("divide_by_zero", lambda x: x / 0, gn.GraphError, r"node 'x' / 0: division by zero"),
    ("index_ellipsis", lambda x: x[..., 0], gn.GraphError, r"does not support '...'"),
    ("index_step", lambda x: x[:, ::2], gn.GraphError, r"takes no step \(got 2\) in dim 1"),
    ("index_none", lambda x: x[None], gn.GraphError, r"indexed by ints and slices, not NoneType"),
    ("index_float", lambda x: x[:, 1.5], gn.GraphError, r"indexed by ints and slices, not float"),
    ("index_str", lambda x: x["a"], gn.GraphError, r"indexed by ints and slices, not str"),
    ("index_empty_slice", lambda x: x[:, 2:1], gn.GraphError, r"slice 2:1 in dim 1 selects nothing"),
    ("annotate_empty", lambda x: x.annotate(name=""), gn.GraphError, r"annotate\(name=...\) takes a non-empty"),
    ("annotate_int", lambda x: x.annotate(name=3), gn.GraphError, r"annotate\(name=...\) takes a non-empty"),
    ("input_float_shape", lambda x: gn.Input((2.5, 3)), gn.GraphError, r"takes a tuple of ints and None"),
    ("input_bool_shape", lambda x: gn.Input((True,)), gn.GraphError, r"takes a tuple of ints and None"),
    ("input_str_shape", lambda x: gn.Input("ab"), gn.GraphError, r"takes a tuple of ints and None"),
    ("input_dict_shape", lambda x: gn.Input({2: 3}), gn.GraphError, r"takes a tuple of ints and None"),
    ("input_negative", lambda x: gn.Input((None, -3)), gn.GraphError, r"has a negative size"),
    ("input_name_int", lambda x: gn.Input(name=3), gn.GraphError, r"name=...\) takes a non-empty string"),
]


def _unpack2(node):
    a, b = node
    return a, b


_CONSTRUCTORS = [
    ("linear_str", lambda x: nn.Linear("3", 4), gn.GraphError, r"Linear: in_features must be an int, got '3'"),
    ("linear_float", lambda x: nn.Linear(3.5, 4), gn.GraphError, r"in_features must be an int, got 3.5"),
    ("linear_none", lambda x: nn.Linear(3, None), gn.GraphError, r"out_features must be an int, got None"),
    ("linear_zero", lambda x: nn.Linear(0, 4), gn.GraphError, r"in_features must be >= 1, got 0"),
    ("linear_bool", lambda x: nn.Linear(True, 4), gn.GraphError, r"in_features must be an int, got True"),
    ("narrow_zero", lambda x: nn.Narrow(1, 0, 0), gn.GraphError, r"length must not be 0"),
    ("narrow_str", lambda x: nn.Narrow("a", 0), gn.GraphError, r"Narrow: dim must be an int"),
    ("dropout_neg", lambda x: nn.Dropout(-0.1), gn.GraphError, r"p must be in \[0, 1\)"),
    ("dropout_one", lambda x: nn.Dropout(1.0), gn.GraphError, r"p must be in \[0, 1\)"),
    ("dropout_nan", lambda x: nn.Dropout(float("nan")), gn.GraphError, r"p must be in \[0, 1\)"),
    ("dropout_str", lambda x: nn.Dropout("x"), gn.GraphError, r"Dropout: p must be a number"),
    ("reshape_empty", lambda x: nn.Reshape(), gn.GraphError, r"Reshape needs a shape"),
    ("reshape_neg", lambda x: nn.Reshape(-2), gn.GraphError, r"size must be >= -1, got -2"),
    ("view_float", lambda x: nn.View(2.5), gn.GraphError, r"View: size must be an int"),
    ("view_empty", lambda x: nn.View(), gn.GraphError, r"View needs a shape"),
    ("lookup_zero", lambda x: nn.LookupTable(0, 3), gn.GraphError, r"n_index must be >= 1"),
    ("replicate_zero", lambda x: nn.Replicate(0), gn.GraphError, r"n_features must be >= 1"),
    ("join_str", lambda x: nn.JoinTable("1"), gn.GraphError, r"JoinTable: dim must be an int"),
    ("softmax_none", lambda x: nn.SoftMax(None), gn.GraphError, r"SoftMax: dim must be an int"),
    ("power_str", lambda x: nn.Power("2"), gn.GraphError, r"Power: pow must be a number"),
    ("threshold_none", lambda x: nn.Threshold(None), gn.GraphError, r"Threshold: th must be a number"),
    ("mulconstant_str", lambda x: nn.MulConstant("a"), gn.GraphError, r"constant_scalar must be a number"),
    ("padding_value_str", lambda x: nn.Padding(0, 1, "x"), gn.GraphError, r"Padding: value must be a number"),
    ("padding_value_none", lambda x: nn.Padding(0, 1, None), gn.GraphError, r"Padding: value must be a number"),
    ("leaky_too_many", lambda x: nn.LeakyReLU(1, 2, 3), gn.GraphError, r"LeakyReLU takes at most 1 arguments"),
    ("elu_unknown_kw", lambda x: nn.ELU(beta=2), gn.GraphError, r"ELU got an unexpected argument 'beta'"),
    ("hardtanh_order", lambda x: nn.HardTanh(1, -1), gn.GraphError, r"min_value <= max_value"),
    ("add_negative", lambda x: nn.Add(-3), gn.GraphError, r"Add: size must be >= 1, got -3"),
    ("add_str", lambda x: nn.Add("a"), gn.GraphError, r"Add: size must be an int"),
    ("add_zero", lambda x: nn.Add(0), gn.GraphError, r"Add: size must be >= 1, got 0"),
    ("add_empty", lambda x: nn.Add(()), gn.GraphError, r"Add needs the bias shape"),
    ("conv_zero", lambda x: nn.SpatialConvolution(0, 1, 3, 3), gn.GraphError, r"c_in must be >= 1"),
    ("conv_stride_zero", lambda x: nn.SpatialConvolution(1, 1, 3, 3, 0, 0), gn.GraphError, r"sh must be >= 1"),
    ("pool_zero", lambda x: nn.SpatialMaxPooling(0, 0), gn.GraphError, r"kh must be >= 1"),
    ("bn_zero", lambda x: nn.BatchNormalization(0), gn.GraphError, r"n_features must be >= 1"),
    ("sequential_int", lambda x: nn.Sequential(3), gn.GraphError, r"Sequential.add takes a module, got int"),
]

_BUILD_SHAPES = [
    ("linear_features", lambda x: nn.Linear(4, 2)(x), gn.ShapeError,
     r"Linear\(4 -> 2\) expects 4 features in the last dim, got input shape \(\?, 3\)\n  at node 'Linear_\d+' "
     r"\(Linear\(4 -> 2\), output shape \(\?\)\) built at .*test_hostile.py:\d+"),
    ("linear_scalar", lambda x: nn.Linear(3, 2)(gn.Input(())), gn.ShapeError,
     r"Linear\(3 -> 2\) takes an input of shape \(..., 3\), got a 0-d scalar\n  at node .* built at "),
    ("reshape_scalar", lambda x: nn.Reshape(1)(gn.Input(())), gn.ShapeError, r"keeps the batch dim .* 0-d scalar"),
    ("add_no_broadcast", lambda x: x + gn.Input((2, 4)), gn.ShapeError,
     r"Add\(\): shapes \(\?, 3\) and \(2, 4\) do not broadcast .*\n  at node .*CAddTable"),
    ("mul_no_broadcast", lambda x: gn.Input((5,)) * x, gn.ShapeError, r"do not broadcast"),
    ("narrow_outside", lambda x: nn.Narrow(1, 2, 2)(x), gn.ShapeError,
     r"narrow\(dim=1, start=2, length=2\) selects \[2:4\], outside dim 1 of size 3"),
    ("narrow_dim", lambda x: nn.Narrow(2, 0, 1)(x), gn.ShapeError, r"dim 2 is out of range for a 2-d input"),
    ("select_index", lambda x: nn.Select(1, 3)(x), gn.ShapeError, r"index 3 is out of range for dim 1 of size 3"),
    ("slice_sugar", lambda x: x[:, 5], gn.ShapeError, r"index 5 is out of range for dim 1 of size 3"),
    ("join_mismatch", lambda x: nn.JoinTable(1)(x, gn.Input((None, 3, 1))), gn.ShapeError,
     r"all inputs must match except in dim 1"),
    ("mm_inner", lambda x: x @ gn.Input((4, 2)), gn.ShapeError, r"inner sizes differ: 3 \(columns of a\) vs 4"),
    ("mm_vector", lambda x: gn.Input((3,)) @ x, gn.ShapeError, r"matmul needs inputs of 2 or more dims; a is 1-d"),
    ("view_size", lambda x: nn.View(4, 4)(gn.Input((2, 3))), gn.ShapeError,
     r"cannot reshape 6 elements into \(4, 4\)"),
    ("transpose_dims", lambda x: nn.Transpose(0, 2)(x), gn.ShapeError, r"Transpose\(0, 2\): dims out of range"),
    ("sum_dim", lambda x: nn.Sum(2)(x), gn.ShapeError, r"axis 2 is out of range for a 2-d input"),
    ("max_dim", lambda x: nn.Max(-3)(x), gn.ShapeError, r"axis -3 is out of range"),
    ("softmax_dim", lambda x: nn.SoftMax(2)(x), gn.ShapeError, r"dim 2 is out of range"),
    ("squeeze_dim", lambda x: nn.Squeeze(3)(x), gn.ShapeError, r"Squeeze\(3\): dim out of range"),
    ("unsqueeze_dim", lambda x: nn.Unsqueeze(4)(x), gn.ShapeError, r"Unsqueeze\(4\): dim out of range"),
    ("replicate_dim", lambda x: nn.Replicate(2, 5)(x), gn.ShapeError, r"Replicate\(2, 5\): dim out of range"),
    ("padding_dim", lambda x: nn.Padding(4, 1)(x), gn.ShapeError, r"dim 4 is out of range for a 2-d input"),
    ("split_dim", lambda x: nn.SplitTable(3)(x), gn.ShapeError, r"SplitTable\(3\): dim 3 is out of range"),
    ("select_table", lambda x: nn.SelectTable(4)(x, x), gn.GraphError, r"SelectTable\(4\): the table has 2"),
    ("narrow_table", lambda x: nn.NarrowTable(1, 3)(x, x), gn.GraphError, r"NarrowTable\(1, 3\): the table has only 2"),
    ("mse_shapes", lambda x: nn.MSECriterion()(x, gn.Input((None, 4))), gn.ShapeError,
     r"MSECriterion: prediction \(\?, 3\) and target \(\?, 4\) must have the same shape"),
    ("bce_ranks", lambda x: nn.BCECriterion()(x, gn.Input((3,))), gn.ShapeError, r"must have the same shape"),
    ("nll_ranks", lambda x: nn.ClassNLLCriterion()(gn.Input((2, 3, 4)), gn.Input((2,))), gn.ShapeError,
     r"ClassNLLCriterion takes log-probabilities \(batch, classes\)"),
    ("nll_batch", lambda x: nn.ClassNLLCriterion()(gn.Input((2, 3)), gn.Input((5,))), gn.ShapeError,
     r"batch sizes differ: 2 scores vs 5 targets"),
    ("conv_rank", lambda x: nn.SpatialConvolution(3, 2, 2, 2)(x), gn.ShapeError, r"takes a 4-d .* or 3-d"),
    ("conv_channels", lambda x: nn.SpatialConvolution(3, 2, 2, 2)(gn.Input((1, 2, 5, 5))), gn.ShapeError,
     r"expects 3 input channels"),
    ("conv_too_small", lambda x: nn.SpatialConvolution(3, 2, 3, 3)(gn.Input((1, 3, 2, 2))), gn.ShapeError,
     r"a 3x3 window with padding \(0, 0\) does not fit a 2x2 input"),
    ("bn_features", lambda x: nn.BatchNormalization(4)(x), gn.ShapeError, r"expects inputs \(batch, 4, ...\)"),
    ("layernorm_shape", lambda x: nn.LayerNorm(4)(x), gn.ShapeError, r"last dims are \(4,\)"),
    ("nested_graph_shape", lambda x: _nested()(gn.Input((2, 5))), gn.ShapeError,
     r"expects 3 features .*\n  at node .*\n  inside node .*gModule"),
]


def _nested():
    a = gn.Input()
    return gn.gModule([a], [nn.Linear(3, 2)(a)])


_BUILD = _MODULES_AS_NODES + _ARITY + _PACKING + _NODES + _CONSTRUCTORS + _BUILD_SHAPES


@pytest.mark.parametrize("name,make,err,match", _BUILD, ids=[c[0] for c in _BUILD])
def test_bad_graphs(name, make, err, match, still_works):
    x = _graph_x()
    with pytest.raises(err, match=match) as e:
        make(x)
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    if (name, make, err, match) in _BUILD_SHAPES:        # the node at fault, its module, and the user's line
        assert "\n  at node '" in msg and re.search(r"built at .*test_hostile.py:\d+", msg), msg
    if (name, make, err, match) in _ARITY + _PACKING[:9]:
        assert re.search(r"test_hostile.py:\d+", msg), msg


def test_build_errors_name_the_users_line():
    x = _graph_x()
    line = test_build_errors_name_the_users_line.__code__.co_firstlineno + 4
    with pytest.raises(gn.ShapeError) as e:
        nn.Linear(5, 2)(x)
    assert f"test_hostile.py:{line}" in str(e.value)
    assert e.value.node is not None and e.value.node.site.endswith(f"test_hostile.py:{line}")


# --- running: bad arrays -----------------------------------------------------------------------------------------

def _two_inputs():
    x = gn.Input((None, 3), name="x")
    h = gn.Input(name="h")
    return gn.gModule([x, h], [nn.Linear(3, 4)(x) + h])


X, H = np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)

_BAD_CALLS = [
    ("none", None, r"takes 2 input arrays \(x, h\), got 1"),
    ("no_arrays", [], r"takes 2 input arrays \(x, h\), got 0"),
    ("one_array", [X], r"takes 2 input arrays \(x, h\), got 1"),
    ("three_arrays", [X, H, H], r"takes 2 input arrays \(x, h\), got 3"),
    ("bare_array", X, r"takes 2 input arrays \(x, h\), got 1"),
    ("dict_bad_name", {"x": X, "hidden": H},     # forward takes inputs by name; a plan takes arrays
     r"unknown name 'hidden'; missing 'h' \(its inputs are 'x', 'h'\)|takes 2 input arrays \(x, h\), got 1"),
    ("string", "xh", r"takes 2 input arrays \(x, h\), got 1"),
    ("input_none", [None, H], r"input 0 \('x'\) is None, not a numpy array"),
    ("input_list", [[[1.0, 2.0, 3.0]], H], r"input 0 \('x'\) is list, not a numpy array \(use np.asarray"),
    ("input_tuple", [X, (1.0, 2.0)], r"input 1 \('h'\) is tuple, not a numpy array \(use np.asarray"),
    ("input_dict", [{"a": 1}, H], r"input 0 \('x'\) is dict, not a numpy array"),
    ("input_str", ["abc", H], r"input 0 \('x'\) is str, not a numpy array"),
    ("input_bytes", [b"abc", H], r"input 0 \('x'\) is bytes, not a numpy array"),
    ("input_set", [X, {1.0}], r"input 1 \('h'\) is set, not a numpy array"),
    ("input_object", [object(), H], r"input 0 \('x'\) is object, not a numpy array"),
    ("input_module", [nn.Tanh(), H], r"input 0 \('x'\) is Tanh, not a numpy array"),
    ("input_node", [gn.Input(), H], r"input 0 \('x'\) is Node, not a numpy array"),
    ("input_bool", [True, H], r"input 0 \('x'\) is bool, not a numpy array"),
    ("dtype_complex", [X.astype(complex), H], r"input 0 \('x'\) has dtype complex128; graphnet takes float or int"),
    ("dtype_bool", [X.astype(bool), H], r"has dtype bool; graphnet takes float or integer arrays"),
    ("dtype_object", [X.astype(object), H], r"has dtype object; graphnet takes float or integer arrays"),
    ("dtype_str", [np.array([["a", "b", "c"]]), H], r"has dtype <U1"),
    ("dtype_bytes", [np.array([[b"a", b"b", b"c"]]), H], r"has dtype \|S1"),
    ("dtype_datetime", [np.zeros((2, 3), "datetime64[s]"), H], r"has dtype datetime64\[s\]"),
    ("dtype_timedelta", [np.zeros((2, 3), "timedelta64[s]"), H], r"has dtype timedelta64\[s\]"),
    ("dtype_structured", [np.zeros((2, 3), [("a", "f4")]), H], r"has dtype \[\('a', '<f4'\)\]"),
    ("dtype_void", [np.zeros((2, 3), "V4"), H], r"has dtype \|V4"),
    ("shape_features", [np.ones((2, 4)), H], r"input 'x' must have shape \(\?, 3\), got an array of shape \(2, 4\) "
                                             r"\(declared at .*test_hostile.py:\d+\)"),
    ("shape_rank1", [np.ones(3), H], r"input 'x' must have shape \(\?, 3\), got an array of shape \(3,\)"),
    ("shape_rank3", [np.ones((1, 2, 3)), H], r"input 'x' must have shape \(\?, 3\), got an array of shape \(1, 2, 3\)"),
    ("shape_scalar", [np.float32(1.0), H], r"input 'x' must have shape \(\?, 3\), got an array of shape \(\)"),
    ("shape_python_float", [1.0, H], r"input 'x' must have shape \(\?, 3\), got an array of shape \(\)"),
    ("shape_empty", [np.ones((2, 0)), H], r"input 'x' must have shape \(\?, 3\), got an array of shape \(2, 0\)"),
    ("batch_mismatch", [np.ones((5, 3)), H], r"Add\(\): shapes \(5, 4\) and \(2, 4\) do not broadcast"),
    ("h_features", [X, np.ones((2, 5))], r"shapes \(2, 4\) and \(2, 5\) do not broadcast .*\n  at node .*CAddTable"),
    ("h_rank3", [X, np.ones((3, 2, 5))], r"do not broadcast"),
]


@pytest.mark.parametrize("name,inputs,match", _BAD_CALLS, ids=[c[0] for c in _BAD_CALLS])
def test_bad_run_time_inputs(name, inputs, match, still_works):
    g = _two_inputs()
    with pytest.raises(gn.InputError, match=match):
        g.forward(inputs)
    with pytest.raises(gn.InputError, match=match):
        gn.compile(g, level=0).forward(*(inputs if isinstance(inputs, list) else [inputs]))
    assert g.forward([X, H]).shape == (2, 4)                   # the same graph still runs


def test_run_time_shape_errors_are_both_input_and_shape_errors():
    g = _two_inputs()
    with pytest.raises(gn.ShapeError) as e:
        g.forward([np.ones((5, 3)), H])
    assert isinstance(e.value, gn.InputError)
    msg = str(e.value)
    assert "node 'CAddTable_" in msg or "at node" in msg
    assert "test_hostile.py:" in msg and "with inputs of shapes (5, 3) float32, (2, 4) float32" in msg


_BAD_GRADS = [
    ("no_grad", [], r"backward takes one gradient per output \(1\), got 0"),
    ("two_grads", [H, H], r"backward takes one gradient per output \(1\), got 2"),
    ("grad_none", [None], r"gradient of output 0 is None, not a numpy array"),
    ("grad_list", [[[1.0] * 4] * 2], r"gradient of output 0 is list, not a numpy array"),
    ("grad_str", ["g"], r"gradient of output 0 is str, not a numpy array"),
    ("grad_shape", [np.ones((2, 5))], r"gradient of output 0 must have the output's shape \(2, 4\), got \(2, 5\)"),
    ("grad_rank", [np.ones(4)], r"gradient of output 0 must have the output's shape \(2, 4\), got \(4,\)"),
    ("grad_complex", [H.astype(complex)], r"gradient of output 0 has dtype complex128"),
    ("grad_object", [H.astype(object)], r"gradient of output 0 has dtype object"),
]


@pytest.mark.parametrize("name,grads,match", _BAD_GRADS, ids=[c[0] for c in _BAD_GRADS])
def test_bad_output_gradients(name, grads, match, still_works):
    g = _two_inputs()
    plan = gn.compile(g)
    plan.forward(X, H)
    with pytest.raises(gn.InputError, match=match):
        plan.backward(*grads)
    gx, gh = plan.backward(H)                                  # the plan still differentiates
    assert gx.shape == (2, 3) and np.array_equal(gh, H)


def test_backward_before_forward(still_works):
    with pytest.raises(gn.InputError, match=r"backward\(\) needs a forward\(\) first"):
        gn.compile(_two_inputs()).backward(H)


def test_bad_compile_arguments(still_works):
    with pytest.raises(gn.InputError, match=r"gn.compile takes a module .* got str"):
        gn.compile("model")
    with pytest.raises(gn.InputError, match=r"level must be one of \(0, 1, 2\), got 7"):
        gn.compile(_two_inputs(), level=7)
    with pytest.raises(gn.InputError, match=r"plan.code is known once the plan has run"):
        gn.compile(_two_inputs()).code


_INDEX_INPUTS = [
    ("lookup_float", nn.LookupTable(5, 3), [np.array([0.0, 1.0])], r"the index input must hold integer indices, "
                                                                  r"got dtype float32"),
    ("lookup_high", nn.LookupTable(5, 3), [np.array([0, 7])], r"index 7 is out of range for a table of 5 entries"),
    ("lookup_negative", nn.LookupTable(5, 3), [np.array([[-1]])], r"index -1 is out of range for a table of 5"),
    ("nll_float_target", nn.ClassNLLCriterion(), [np.ones((2, 3)), np.array([0.0, 1.0])],
     r"the target must hold integer indices"),
    ("nll_high_target", nn.ClassNLLCriterion(), [np.ones((2, 3)), np.array([0, 3])],
     r"target class 3 is out of range for 3 classes \(targets are 0-based\)"),
    ("nll_negative_target", nn.CrossEntropyCriterion(), [np.ones((2, 3)), np.array([-1, 0])],
     r"target class -1 is out of range"),
    ("nll_target_batch", nn.ClassNLLCriterion(), [np.ones((2, 3)), np.array([0, 1, 2])],
     r"batch sizes differ: 2 scores vs 3 targets"),
    ("nll_target_2d", nn.ClassNLLCriterion(), [np.ones((2, 3)), np.zeros((2, 1), int)],
     r"takes log-probabilities \(batch, classes\) and integer targets \(batch,\)"),
]


@pytest.mark.parametrize("name,module,inputs,match", _INDEX_INPUTS, ids=[c[0] for c in _INDEX_INPUTS])
def test_bad_indices_and_targets(name, module, inputs, match, still_works):
    with pytest.raises(gn.InputError, match=match) as e:
        module.forward(inputs if len(inputs) > 1 else inputs[0])
    assert "at node" in str(e.value) and "test_hostile.py" in str(e.value)


_MODULE_SHAPES = [
    (lambda: nn.Linear(3, 4), [np.ones((2, 5))], r"Linear\(3 -> 4\) expects 3 features in the last dim, got input "
                                                 r"shape \(2, 5\)"),
    (lambda: nn.Linear(3, 4), [np.float32(1.0)], r"takes an input of shape \(..., 3\), got a 0-d scalar"),
    (lambda: nn.Reshape(3), [np.float32(1.0)], r"keeps the batch dim"),
    (lambda: nn.Reshape(5), [np.ones((2, 3))], r"cannot reshape 6 elements into \(2, 5\)"),
    (lambda: nn.View(5, 5), [np.ones((2, 3))], r"cannot reshape 6 elements into \(5, 5\)"),
    (lambda: nn.Narrow(1, 2, 5), [np.ones((2, 3))], r"selects \[2:7\], outside dim 1 of size 3"),
    (lambda: nn.Select(1, 7), [np.ones((2, 3))], r"index 7 is out of range for dim 1 of size 3"),
    (lambda: nn.Transpose(0, 4), [np.ones((2, 3))], r"dims out of range for a 2-d input"),
    (lambda: nn.Sum(4), [np.ones((2, 3))], r"axis 4 is out of range for a 2-d input"),
    (lambda: nn.SoftMax(3), [np.ones(3)], r"dim 3 is out of range for a 1-d input"),
    (lambda: nn.SplitTable(4), [np.ones((2, 3))], r"SplitTable\(4\): dim 4 is out of range for a 2-d input"),
    (lambda: nn.MM(), [np.ones((2, 3)), np.ones((4, 5))], r"inner sizes differ: 3 \(columns of a\) vs 4"),
    (lambda: nn.MM(), [np.ones(3), np.ones(3)], r"matmul needs inputs of 2 or more dims"),
    (lambda: nn.CAddTable(), [np.ones((2, 3)), np.ones((2, 4))], r"shapes \(2, 3\) and \(2, 4\) do not broadcast"),
    (lambda: nn.CMaxTable(), [np.ones((2, 3)), np.ones((3, 2))], r"do not broadcast"),
    (lambda: nn.JoinTable(1), [np.ones((2, 3)), np.ones((3, 3))], r"all inputs must match except in dim 1"),
    (lambda: nn.MSECriterion(), [np.ones((2, 3)), np.ones((2, 4))], r"must have the same shape"),
    (lambda: nn.SpatialConvolution(3, 4, 3, 3), [np.ones((1, 2, 5, 5))], r"expects 3 input channels"),
    (lambda: nn.SpatialMaxPooling(3, 3, 1, 1), [np.ones((1, 3, 2, 2))], r"does not fit a 2x2 input"),
    (lambda: nn.BatchNormalization(3), [np.ones((2, 4))], r"expects inputs \(batch, 3, ...\)"),
    (lambda: nn.BatchNormalization(3), [np.ones((1, 3))], r"training needs more than one value per feature"),
    (lambda: nn.LayerNorm(3), [np.ones((2, 4))], r"last dims are \(3,\)"),
]


@pytest.mark.parametrize("make,inputs,match", _MODULE_SHAPES, ids=[f"shape{i}" for i in range(len(_MODULE_SHAPES))])
def test_bad_shapes_for_a_plain_module(make, inputs, match, still_works):
    m = make()
    with pytest.raises(gn.ShapeError, match=match) as e:
        m.forward(inputs if len(inputs) > 1 else inputs[0])
    assert isinstance(e.value, gn.InputError)
    assert "at node" in str(e.value) and "with inputs of shapes" in str(e.value)


_EMPTY = [
    ("mean", lambda: nn.Mean(0), [np.ones((0, 3))]),
    ("mse", lambda: nn.MSECriterion(), [np.ones((0, 3)), np.ones((0, 3))]),
    ("abs", lambda: nn.AbsCriterion(), [np.ones((0,)), np.ones((0,))]),
    ("smooth_l1", lambda: nn.SmoothL1Criterion(), [np.ones((0, 2)), np.ones((0, 2))]),
    ("bce", lambda: nn.BCECriterion(), [np.full((0, 2), 0.5), np.ones((0, 2))]),
    ("nll", lambda: nn.ClassNLLCriterion(), [np.ones((0, 3)), np.zeros(0, int)]),
    ("cross_entropy", lambda: nn.CrossEntropyCriterion(), [np.ones((0, 3)), np.zeros(0, int)]),
    ("linear", lambda: nn.Linear(3, 2), [np.ones((0, 3))]),
]


@pytest.mark.parametrize("name,make,inputs", _EMPTY, ids=[c[0] for c in _EMPTY])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_empty_batch_runs_forward_and_backward(name, make, inputs, still_works):
    # the mean of nothing is NaN, as in numpy and torch; its gradient is empty, not a ZeroDivisionError
    m = make()
    out = m.forward(inputs if len(inputs) > 1 else inputs[0])
    grads = m.backward(inputs if len(inputs) > 1 else inputs[0], np.ones(np.shape(out), np.float32))
    grads = grads if isinstance(grads, list) else [grads]
    assert grads[0].shape == inputs[0].shape and grads[0].size == 0


# --- NaN and Inf under gn.debug(check_finite=True) ---------------------------------------------------------------

def _finite_case(kind):
    x = gn.Input(name="x")
    if kind == "log":
        return gn.gModule([x], [nn.Log()(x).annotate(name="logx")]), [-np.ones(3)], "Log", "logx"
    if kind == "sqrt":
        return gn.gModule([x], [nn.Sqrt()(x).annotate(name="root")]), [-np.ones(3)], "Sqrt", "root"
    if kind == "div":
        y = gn.Input(name="y")
        return gn.gModule([x, y], [(x / y).annotate(name="ratio")]), [np.ones(3), np.zeros(3)], "Div", "ratio"
    if kind == "exp":
        return gn.gModule([x], [nn.Exp()(x).annotate(name="big")]), [np.full(3, 1e4)], "Exp", "big"
    if kind == "nan_input":
        return (gn.gModule([x], [nn.Linear(3, 2)(x).annotate(name="lin")]), [np.array([[1.0, np.nan, 0.0]])],
                "MatMul", "lin")
    if kind == "inf_input":
        return gn.gModule([x], [nn.Tanh()((x * 0).annotate(name="zero"))]), [np.full(3, np.inf)], "Scale", "zero"
    if kind == "nan_weight":
        lin = nn.Linear(3, 2)
        lin.weight.data[0, 0] = np.nan
        return gn.gModule([x], [lin(x).annotate(name="lin")]), [np.ones((1, 3))], "MatMul", "lin"
    if kind == "pow":
        return gn.gModule([x], [nn.Power(0.5)(x).annotate(name="half")]), [-np.ones(2)], "Pow", "half"
    raise AssertionError(kind)


_FINITE = ["log", "sqrt", "div", "exp", "nan_input", "inf_input", "nan_weight", "pow"]


@pytest.mark.parametrize("kind", _FINITE)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_values_stop_at_the_node_that_made_them(kind, tmp_path, still_works):
    g, arrays, op, node = _finite_case(kind)
    with gn.debug(check_finite=True, directory=tmp_path):
        with pytest.raises(gn.InputError, match=rf"{op}.* produced (NaN|Inf) \(gn.debug\(check_finite=True\)\)\n"
                                                rf"  at node '{node}' .* built at .*test_hostile.py:\d+") as e:
            g.forward(arrays if len(arrays) > 1 else arrays[0])
    assert e.value.drawing and os.path.exists(e.value.drawing)
    out = g.forward(arrays if len(arrays) > 1 else arrays[0])    # without debug: no check, no error
    assert not np.all(np.isfinite(out))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_gradient_is_caught_in_backward(tmp_path, still_works):
    x = gn.Input(name="x")
    g = gn.gModule([x], [nn.Tanh()(x).annotate(name="t")])
    with gn.debug(check_finite=True, directory=tmp_path):
        g.forward(np.ones(3))
        with pytest.raises(gn.InputError, match=r"produced NaN \(gn.debug\(check_finite=True\)\)\n  at node 't'"):
            g.backward(np.ones(3), np.array([np.nan, 0.0, 0.0]))


# --- graphs whose compilation fails -----------------------------------------------------------------------------

def test_an_input_that_reaches_no_output_through_selecttable(still_works):
    a, b = gn.Input(name="a"), gn.Input(name="b")
    g = gn.gModule([a, b], [nn.SelectTable(0)(a, b)])
    out = g.forward([X, H])
    assert np.array_equal(out, X)
    ga, gb = g.backward([X, H], X)
    assert np.array_equal(ga, X) and not gb.any()


def test_a_masked_array_input(still_works):
    g = _two_inputs()
    with pytest.raises(gn.InputError, match=r"input 0 \('x'\).*masked"):
        g.forward([np.ma.ones((2, 3)), H])


# --- files given to gn.load ----------------------------------------------------------------------------------------

def _members(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i.filename) for i in z.infolist()}


def _zip(members, method=zipfile.ZIP_DEFLATED) -> bytes:
    import warnings
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", method) as z:
        warnings.simplefilter("ignore")                   # a member written twice, on purpose
        for name, data in (members.items() if isinstance(members, dict) else members):
            z.writestr(name, data)
    return buf.getvalue()


def _npy(a=None, header=None, data=None, version=(1, 0)) -> bytes:
    """A .npy member: an array, or a hand-written header and data."""
    f = io.BytesIO()
    if a is not None:
        np.lib.format.write_array(f, a, version=version, allow_pickle=False)
        return f.getvalue()
    (np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0)(f, header)
    return f.getvalue() + data


def _sha(a):
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _model(good, doc=None, npz=None, graph_text=None) -> bytes:
    """The good file with graph.json's document (or raw text) and/or params.npz's members replaced."""
    m = _members(good.bytes)
    if graph_text is not None:
        m["graph.json"] = graph_text
    elif doc is not None:
        m["graph.json"] = json.dumps(doc).encode()
    if npz is not None:
        m["params.npz"] = _zip(npz, zipfile.ZIP_STORED)
    return _zip(m)


def _doc(good):
    return json.loads(_members(good.bytes)["graph.json"])


def _text(good) -> bytes:
    """graph.json as compact JSON text, for edits that JSON objects cannot express."""
    text = json.dumps(_doc(good)).encode()
    assert b'"args": [3, 2]' in text and b'"root": 0' in text
    return text


def _npz(good):
    return _members(_members(good.bytes)["params.npz"])


def _load_bytes(data, tmp_path, name="bad.gnet", **kw):
    p = tmp_path / name
    p.write_bytes(data)
    return gn.load(p, **kw)


_RAW = [
    ("empty", lambda g: b"", r"is not a graphnet zip file"),
    ("one_byte", lambda g: b"P", r"is not a graphnet zip file"),
    ("text", lambda g: b"hello, model\n", r"is not a graphnet zip file"),
    ("json_alone", lambda g: _members(g.bytes)["graph.json"], r"is not a graphnet zip file"),
    ("zip_magic_only", lambda g: b"PK\x03\x04" + b"\0" * 26, r"is not a graphnet zip file"),
    ("empty_zip", lambda g: _zip({}), r"lacks members 'graph.json', 'params.npz'"),
    ("npz_file", lambda g: _zip({"w.npy": _npy(np.zeros(3))}), r"lacks members .* holds unexpected|lacks members"),
    ("only_graph", lambda g: _zip({"graph.json": _members(g.bytes)["graph.json"]}), r"lacks member 'params.npz'"),
    ("extra_member", lambda g: _zip({**_members(g.bytes), "run.py": b"import os"}),
     r"holds unexpected member 'run.py'"),
    ("member_twice", lambda g: _zip(list(_members(g.bytes).items()) + [("graph.json", b"{}")]),
     r"names a member twice"),
    ("path_member", lambda g: _zip({**_members(g.bytes), "../../evil.py": b"x"}), r"unexpected member '../../evil.py'"),
    ("state_file", lambda g: _zip({"state.json": b"{}", "arrays.npz": _zip({})}),
     r"holds state.json and arrays.npz: it is a saved state \(read it with gn.load_state\)"),
    ("bzip2", lambda g: _zip(_members(g.bytes), zipfile.ZIP_BZIP2), r"uses compression method 12; only stored"),
    ("lzma", lambda g: _zip(_members(g.bytes), zipfile.ZIP_LZMA), r"uses compression method 14"),
    ("graph_not_json", lambda g: _model(g, graph_text=b"model = Linear(3, 2)"), r"graph.json is not valid JSON"),
    ("graph_truncated_json", lambda g: _model(g, graph_text=_members(g.bytes)["graph.json"][:-40]),
     r"graph.json is not valid JSON"),
    ("graph_not_utf8", lambda g: _model(g, graph_text=b'{"format": "\xff\xfe"}'), r"graph.json is not UTF-8 text"),
    ("graph_list", lambda g: _model(g, graph_text=b"[1, 2]"), r"graph.json: expected an object, got a list"),
    ("graph_nan", lambda g: _model(g, graph_text=_text(g).replace(b'"args": [3, 2]', b'"args": [NaN, 2]')),
     r"NaN is not JSON"),
    ("graph_overflow", lambda g: _model(g, graph_text=_text(g).replace(
        b'"args": [3, 2]', b'"args": [1e999, 2]')), r"number 1e999 overflows"),
    ("graph_duplicate_key", lambda g: _model(g, graph_text=_text(g).replace(
        b'"root": 0', b'"root": 0, "root": 1')), r"key 'root' appears twice in one object"),
    ("graph_deep_nesting", lambda g: _model(g, graph_text=b"[" * 200000 + b"]" * 200000),
     r"graph.json cannot be read: RecursionError|graph.json: expected an object"),
    ("npz_not_zip", lambda g: _zip({"graph.json": _members(g.bytes)["graph.json"], "params.npz": b"not a zip"}),
     r"params.npz is not an npz archive"),
]
_RAW += [(f"random_{n}_{seed}", lambda g, n=n, seed=seed: np.random.default_rng(seed).bytes(n),
          r"is not a graphnet zip file") for n, seed in [(1, 0), (22, 1), (100, 2), (1000, 3), (5000, 4)]]
_RAW += [(f"random_zip_tail_{seed}", lambda g, seed=seed: np.random.default_rng(seed).bytes(200) + g.bytes[-22:],
          r"is not a graphnet zip file") for seed in range(3)]


@pytest.mark.parametrize("name,make,match", _RAW, ids=[c[0] for c in _RAW])
def test_load_refuses_what_is_not_a_model_file(name, make, match, good, tmp_path, still_works):
    with pytest.raises(gn.FormatError, match=r"cannot load '.*bad.gnet': .*" + match):
        _load_bytes(make(good), tmp_path)


@pytest.mark.parametrize("frac", [0.01, 0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.95, 0.98, 0.999])
def test_load_refuses_a_truncated_file(frac, good, tmp_path, still_works):
    n = int(len(good.bytes) * frac)
    with pytest.raises(gn.FormatError, match=r"cannot load '.*': .*(zip|corrupt|truncated|member|declares)"):
        _load_bytes(good.bytes[:n], tmp_path)


@pytest.mark.parametrize("k", range(40))
def test_one_flipped_byte_is_refused_or_harmless(k, good, tmp_path, still_works):
    # positions spread over the whole file (headers, compressed JSON, stored arrays, the central directory);
    # a flip in a field the zip format does not check (a timestamp) may load: then the model must be the same
    pos = (k * len(good.bytes)) // 40 + k % 7
    data = bytearray(good.bytes)
    data[pos] ^= 0xFF
    try:
        m = _load_bytes(bytes(data), tmp_path)
    except gn.FormatError as e:
        assert str(e).startswith(f"cannot load '{tmp_path / 'bad.gnet'}': ")
    else:
        assert good.same(m), f"byte {pos} flipped: a different model loaded without an error"


def test_flipping_a_byte_inside_the_arrays_is_caught(good, tmp_path, still_works):
    npz = _npz(good)
    raw = bytearray(npz["m1.weight.npy"])
    raw[-3] ^= 0x01                                   # the data, past the header: the sha256 must catch it
    with pytest.raises(gn.FormatError, match=r"'m1.weight.npy': the data does not match its sha256"):
        _load_bytes(_model(good, npz={**npz, "m1.weight.npy": bytes(raw)}), tmp_path)


def _edit(path, value):
    """A document edit: set the JSON value at ``path`` (a list of keys and indices); ``_DEL`` deletes it."""
    def f(doc):
        d = doc
        for k in path[:-1]:
            d = d[k]
        if value is _DEL:
            del d[path[-1]]
        else:
            d[path[-1]] = value() if callable(value) else value
        return doc
    return f


_DEL = object()
_LIN = ["modules", 1]            # the Linear(3, 2) module of the good model
_X = ["nodes", 0]                # its input node 'x'

_DOC_EDITS = [
    ("format_other", _edit(["format"], "pytorch"), r"format is a string \(\"pytorch\"\), expected 'graphnet.model'"),
    ("format_state", _edit(["format"], "graphnet.state"), r"this file is a saved state \(read it with gn.load_state\)"),
    ("version_newer", _edit(["version"], 2), r"version an int \(2\) is not supported; .* a newer graphnet wrote it"),
    ("version_str", _edit(["version"], "1"), r"version a string \(\"1\"\) is not supported"),
    ("missing_nodes", _edit(["nodes"], _DEL), r"graph.json: missing key 'nodes'"),
    ("extra_key", _edit(["exec"], "import os"), r"graph.json: unknown key 'exec'"),
    ("root_out_of_range", _edit(["root"], 9), r"root: index 9 is out of range: modules has 5 entries"),
    ("root_str", _edit(["root"], "0"), r"root: expected an index into modules, got a string"),
    ("modules_empty", _edit(["modules"], []), r"modules: the list is empty"),
    ("modules_dict", _edit(["modules"], {}), r"modules: expected a list, got an object"),
    ("arrays_none", _edit(["arrays"], None), r"arrays: expected a list, got null"),
    # module kinds: only graphnet's own classes, never a name to import or evaluate
    *[(f"kind_{i}", _edit(_LIN + ["kind"], k), r"modules\[1\].kind: unknown module kind .*; a file may name only "
                                               r"graphnet's own module classes")
      for i, k in enumerate(["os.system", "__import__", "eval", "builtins.exec", "subprocess.Popen",
                             "graphnet.nn.Linear", "Linear()", "", "linear", "Module", "Criterion", "Container",
                             "Node", "Parameter",
                             "__class__", "gn.load", "numpy.load", "Linear; import os"])],
    ("kind_int", _edit(_LIN + ["kind"], 3), r"modules\[1\].kind: expected a string, got an int"),
    ("kind_long", _edit(_LIN + ["kind"], "L" * 5000), r"a string of 5000 characters, more than the limit 100"),
    # arguments: data only; what a constructor refuses is the file's fault
    ("args_expression", _edit(_LIN + ["args"], ["__import__('os').system('touch pwned')", 2]),
     r"modules\[1\] \(Linear\): refused: GraphError: Linear: in_features must be an int"),
    ("args_tag_eval", _edit(_LIN + ["args"], [{"eval": "3"}, 2]),
     r"args\[0\]: unknown tag 'eval' \(a file holds data, never code or names to look up\)"),
    ("args_tag_reduce", _edit(_LIN + ["args"], [{"__reduce__": ["os.system", ["ls"]]}, 2]),
     r"unknown tag '__reduce__'"),
    ("args_tag_array", _edit(_LIN + ["args"], [{"array": 0}, 2]), r"args\[0\]: unknown tag 'array'"),
    ("args_tag_two_keys", _edit(_LIN + ["args"], [{"tuple": [], "x": 1}, 2]), r"expected a JSON scalar, a list or a "
                                                                               r"tagged object"),
    ("args_module_ref", _edit(_LIN + ["args"], [{"module": 99}, 2]), r"index 99 is out of range: modules has 5"),
    ("args_float_tag", _edit(_LIN + ["args"], [{"float": "1e3"}, 2]), r"expected \"nan\", \"inf\" or \"-inf\""),
    ("args_too_many", _edit(_LIN + ["args"], [3, 2, True, 4]), r"refused: TypeError: .*positional argument"),
    ("args_not_list", _edit(_LIN + ["args"], "3, 2"), r"args: expected a list, got a string"),
    ("args_huge_int", _edit(_LIN + ["args"], [2 ** 60, 2]), r"args\[0\]: 1152921504606846976 is out of range"),
    ("args_huge_linear", _edit(_LIN + ["args"], [10 ** 9, 10 ** 9]),
     r"its arguments make 1000000000000000000 initial values, more than its arrays in the file hold"),
    ("args_deep", _edit(_LIN + ["args"], lambda: [_deep(40), 2]), r"nested more than 32 deep"),
    ("args_long_string", _edit(_LIN + ["args"], ["x" * 10000, 2]), r"a string of 10000 characters"),
    ("kwargs_dunder", _edit(_LIN + ["kwargs"], {"__class__": "os"}), r"refused: TypeError: .*unexpected keyword"),
    ("kwargs_not_name", _edit(_LIN + ["kwargs"], {"a b": 1}), r"kwargs: 'a b' is not an argument name"),
    ("kwargs_list", _edit(_LIN + ["kwargs"], [1]), r"kwargs: expected an object, got a list"),
    ("members_not_container", _edit(_LIN + ["members"], [2]), r"members: Linear is not a container"),
    ("graph_on_linear", _edit(_LIN + ["graph"], {"inputs": [], "outputs": [], "name": None, "site": ""}),
     r"only a gModule has a graph; expected null for Linear"),
    ("params_missing", _edit(_LIN + ["params"], {"weight": 0}),
     r"arrays\[1\] \('m1.bias'\) is not used by any module"),
    ("params_not_name", _edit(_LIN + ["params"], {"weight": 0, "bias;rm": 1}), r"'bias;rm' is not an attribute name"),
    ("params_swapped", _edit(_LIN + ["params"], {"weight": 1, "bias": 0}),
     r"params.weight: array 'm1.bias' has shape \(2,\), Linear built from its arguments expects \(2, 3\)"),
    ("train_str", _edit(_LIN + ["train"], "yes"), r"train: expected true or false"),
    ("dtype_object", _edit(_LIN + ["dtype"], "object"), r"dtype: dtype a string \(\"object\"\) is not one of float16"),
    # nodes
    ("node_kind", _edit(_X + ["kind"], "lambda"), r"nodes\[0\].kind: expected one of input, apply, item"),
    ("node_self_loop", _edit(["nodes", 2, "inputs"], [2]), r"the references form a cycle"),
    ("node_cycle", _edit(["nodes", 2, "inputs"], [3]), r"the references form a cycle"),
    ("node_input_range", _edit(["nodes", 2, "inputs"], [77]), r"inputs\[0\]: index 77 is out of range: nodes has"),
    ("node_module_range", _edit(["nodes", 2, "module"], -1), r"module: index -1 is out of range"),
    ("node_name_empty", _edit(_X + ["name"], ""), r"nodes\[0\].name: an empty name"),
    ("node_site_int", _edit(_X + ["site"], 12), r"nodes\[0\].site: expected a string, got an int"),
    ("node_attrs", _edit(_X + ["attrs"], {f"a{i}": "x" for i in range(100)}), r"at most 64 graphviz attributes"),
    *[(f"node_attr_{k}", _edit(_X + ["attrs"], {k: v}), m) for k, v, m in [
        ("URL", "javascript:alert(1)", r"attrs.URL: a saved drawing attribute may not be a link or a file"),
        ("href", "http://example.com", r"attrs.href: .* may not be a link"),
        ("labelURL", "file:///etc/passwd", r"attrs.labelURL: .* may not be a link"),
        ("image", "/etc/passwd", r"attrs.image: .* may not be a link or a file"),
        ("shapefile", "/etc/passwd", r"attrs.shapefile: .* may not be a link or a file"),
        ("label", "<<IMG SRC='/etc/passwd'/>>", r"attrs.label: an HTML-like graphviz value .* is refused"),
        ("label] [URL", "x", r"'label\] \[URL' is not a graphviz attribute name"),
        ("color", 3, r"attrs.color: expected a string, got an int")]],
    ("node_shape_negative", _edit(_X + ["shape"], [None, -3]), r"shape\[1\]: -3 is out of range"),
    ("node_shape_rank", _edit(_X + ["shape"], [1] * 40), r"shape: 40 entries, more than the limit 32"),
    ("node_shape_float", _edit(_X + ["shape"], [None, 3.0]), r"shape\[1\]: expected an int, got a number"),
    ("node_shape_wrong", _edit(_X + ["shape"], [None, 10 ** 15]), r"refused: ShapeError: Linear\(3 -> 2\) expects 3"),
    ("node_input_has_module", _edit(_X + ["module"], 1), r"a node of kind 'input' has no module; expected null"),
    ("graph_input_not_input", _edit(["modules", 0, "graph", "inputs"], [2, 1]),
     r"graph.inputs\[0\]: nodes\[2\] is a 'apply' node; a gModule's inputs are input nodes"),
    ("graph_output_twice", _edit(["modules", 0, "graph", "outputs"], [4, 4]), r"graph.outputs: a node is listed twice"),
    ("graph_unused_input", _edit(["modules", 0, "graph", "outputs"], [4]),
     r"graph.json: modules\[4\] is not part of the root module \(modules\[0\]\)"),
    # the arrays table
    ("array_dtype_object", _edit(["arrays", 0, "dtype"], "object"), r"arrays\[0\].dtype: dtype a string "
                                                                    r"\(\"object\"\) is not one of"),
    ("array_dtype_complex", _edit(["arrays", 0, "dtype"], "complex128"), r"is not one of"),
    ("array_dtype_byteorder", _edit(["arrays", 0, "dtype"], ">f4"), r"is not one of"),
    ("array_shape_negative", _edit(["arrays", 0, "shape"], [-2, 3]), r"arrays\[0\].shape\[0\]: -2 is out of range"),
    ("array_shape_huge", _edit(["arrays", 0, "shape"], [2 ** 40, 2 ** 40]),
     r"the arrays declare more than 2147483648 bytes in all .*; pass a larger max_bytes"),
    ("array_shape_many_huge", _edit(["arrays", 1, "shape"], [2 ** 20] * 4), r"declare more than \d+ bytes"),
    ("array_shape_rank", _edit(["arrays", 0, "shape"], [1] * 33), r"shape: 33 entries, more than the limit 32"),
    ("array_key_path", _edit(["arrays", 0, "key"], "../../etc/passwd"), r"must be a new, non-empty name of letters"),
    ("array_key_twice", _edit(["arrays", 1, "key"], "m1.weight"), r"must be a new, non-empty name"),
    ("array_sha_short", _edit(["arrays", 0, "sha256"], "abc"), r"sha256: expected 64 lowercase hex digits"),
    ("array_sha_wrong", _edit(["arrays", 0, "sha256"], "0" * 64), r"params.npz: 'm1.weight.npy': the data does not "
                                                                  r"match its sha256 in graph.json"),
    ("array_shape_mismatch", _edit(["arrays", 0, "shape"], [3, 2]),
     r"'m1.weight.npy': the header says shape \(2, 3\) dtype float32, graph.json declares shape \(3, 2\)"),
    ("array_unused", _edit(["arrays"], lambda: _doc_arrays_plus_one()), r"arrays\[2\] \('extra'\) is not used"),
]


def _deep(n):
    v = 1
    for _ in range(n):
        v = [v]
    return v


_GOOD_FOR_EDITS = {}


def _doc_arrays_plus_one():
    arrays = list(_GOOD_FOR_EDITS["doc"]["arrays"])
    return arrays + [{"key": "extra", "shape": [1], "dtype": "float32", "sha256": "0" * 64}]


@pytest.mark.parametrize("name,edit,match", _DOC_EDITS, ids=[c[0] for c in _DOC_EDITS])
def test_load_refuses_a_bad_graph_document(name, edit, match, good, tmp_path, still_works):
    doc = _doc(good)
    _GOOD_FOR_EDITS["doc"] = _doc(good)
    cwd = os.getcwd()
    os.chdir(tmp_path)                  # a payload that writes files would write them here: there must be none
    try:
        with pytest.raises(gn.FormatError, match=r"cannot load '.*bad.gnet': .*" + match):
            _load_bytes(_model(good, doc=edit(doc)), tmp_path)
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gnet"]


def test_save_refuses_the_drawing_attributes_load_refuses(tmp_path, still_works):
    x = gn.Input(name="x")
    g = gn.gModule([x], [nn.Tanh()(x).annotate(name="t", URL="javascript:alert(1)")])
    with pytest.raises(gn.FormatError, match=r"cannot save node 't' .*attrs.URL: a saved drawing attribute may not "
                                             r"be a link or a file .*; gn.load would refuse it"):
        gn.save(g, tmp_path / "m.gnet")


def test_the_unedited_document_loads(good, tmp_path):
    # the edits above are refused for what they change, not for how the file is rewritten
    assert good.same(_load_bytes(_model(good, doc=_doc(good), npz=_npz(good)), tmp_path))


_NPZ_EDITS = [
    ("missing_member", lambda n: {"m1.weight.npy": n["m1.weight.npy"]}, r"lacks member 'm1.bias.npy'"),
    ("extra_member", lambda n: {**n, "x.npy": n["m1.bias.npy"]}, r"holds unexpected member 'x.npy'"),
    ("bad_magic", lambda n: {**n, "m1.bias.npy": b"NOTNUMPY" + n["m1.bias.npy"][8:]}, r"not a valid .npy header"),
    ("version_3", lambda n: {**n, "m1.bias.npy": n["m1.bias.npy"][:6] + b"\x03\x00" + n["m1.bias.npy"][8:]},
     r"not a valid .npy header .*format version \(3, 0\)"),
    ("header_shape", lambda n: {**n, "m1.bias.npy": _npy(np.zeros(3, np.float32))},
     r"'m1.bias.npy': the header says shape \(3,\) dtype float32, graph.json declares shape \(2,\)"),
    ("header_dtype", lambda n: {**n, "m1.bias.npy": _npy(np.zeros(2, np.float64))}, r"the header says .* float64"),
    ("header_int", lambda n: {**n, "m1.bias.npy": _npy(np.zeros(2, np.int32))}, r"the header says .* int32"),
    ("truncated_data", lambda n: {**n, "m1.bias.npy": n["m1.bias.npy"][:-3]}, r"5 data bytes, expected 8"),
    ("extra_data", lambda n: {**n, "m1.bias.npy": n["m1.bias.npy"] + b"\0" * 8}, r"16 data bytes, expected 8"),
    ("object_array", lambda n: {**n, "m1.bias.npy": _npy(header={"descr": "|O", "fortran_order": False,
                                                                 "shape": (2,)}, data=_PAYLOAD_HARMLESS)},
     r"dtype object is refused: graphnet reads plain numeric arrays only \(an object array would need pickle"),
    ("structured_array", lambda n: {**n, "m1.bias.npy": _npy(np.zeros(2, [("a", "<f4")]))}, r"is refused"),
    ("subarray", lambda n: {**n, "m1.bias.npy": _npy(np.zeros(1, ("<f4", (2,))))}, r"is refused|header says"),
    ("huge_header", lambda n: {**n, "m1.bias.npy": _npy(header={"descr": "<f4", "fortran_order": False,
                                                                "shape": (2,), "x": "y" * 70000}, data=b"",
                                                        version=(2, 0))},
     r"member 'm1.bias.npy' declares \d+ bytes, more than the limit"),
    ("huge_declared_shape", lambda n: {**n, "m1.bias.npy": _npy(header={"descr": "<f4", "fortran_order": False,
                                                                        "shape": (2 ** 40,)}, data=b"")},
     r"the header says shape \(1099511627776,\)"),
]

_PAYLOAD_HARMLESS = pickle.dumps([1.0, 2.0])


@pytest.mark.parametrize("name,edit,match", _NPZ_EDITS, ids=[c[0] for c in _NPZ_EDITS])
def test_load_refuses_bad_arrays(name, edit, match, good, tmp_path, still_works):
    with pytest.raises(gn.FormatError, match=r"cannot load '.*bad.gnet': params.npz.*" + match):
        _load_bytes(_model(good, npz=edit(_npz(good))), tmp_path)


def test_max_bytes_bounds_what_load_accepts(good, tmp_path, still_works):
    with pytest.raises(gn.FormatError, match=r"the arrays declare more than 16 bytes in all .* pass a larger "
                                             r"max_bytes= to load a model this big"):
        _load_bytes(good.bytes, tmp_path, max_bytes=16)
    assert good.same(_load_bytes(good.bytes, tmp_path, max_bytes=32))


# --- pickle: never read, never run ---------------------------------------------------------------------------------

def _payload(marker) -> bytes:
    """A pickle that, when unpickled, creates the file ``marker``: builtins.open(marker, 'w')."""
    return b"cbuiltins\nopen\n(" + pickle.dumps(str(marker), protocol=0)[:-1] + b"S'w'\ntR."


def test_the_payload_is_live(tmp_path):
    # proof that the payload below really runs code when unpickled
    marker = tmp_path / "control"
    f = pickle.loads(_payload(marker))
    f.close()
    assert marker.exists()


@pytest.mark.parametrize("where", ["raw", "as_graph_json", "as_params_npz", "as_npy_object_array", "zip_member",
                                   "state_raw", "state_npy_object_array"])
def test_a_pickle_payload_never_runs(where, good, tmp_path, still_works):
    marker = tmp_path / "pwned"
    payload = _payload(marker)
    npz = _npz(good)
    header = {"descr": "|O", "fortran_order": False, "shape": (2,)}
    data = {
        "raw": payload,
        "as_graph_json": _model(good, graph_text=payload),
        "as_params_npz": _zip({"graph.json": _members(good.bytes)["graph.json"], "params.npz": payload}),
        "as_npy_object_array": _model(good, npz={**npz, "m1.bias.npy": _npy(header=header, data=payload)}),
        "zip_member": _zip({**_members(good.bytes), "data.pkl": payload}),
        "state_raw": payload,
        "state_npy_object_array": _state_with_npy(_npy(header=header, data=payload)),
    }[where]
    path = tmp_path / "bad.gnet"
    path.write_bytes(data)
    loader = gn.load_state if where.startswith("state") else gn.load
    with pytest.raises(gn.FormatError, match=r"cannot load .*(not a graphnet zip file|not valid JSON|not UTF-8|not "
                                             r"an npz archive|is refused|unexpected member)"):
        loader(path)
    assert not marker.exists()


def _state_with_npy(npy: bytes) -> bytes:
    doc = {"format": "graphnet.state", "version": 1, "state": {"dict": [["w", {"array": 0}]]},
           "arrays": [{"key": "a0", "shape": [2], "dtype": "float64", "sha256": "0" * 64}]}
    return _zip({"state.json": json.dumps(doc).encode(), "arrays.npz": _zip({"a0.npy": npy}, zipfile.ZIP_STORED)})


def test_no_pickle_in_the_package_but_the_refusal():
    # every mention of pickle in graphnet/ says that it is not used
    import pathlib
    root = pathlib.Path(gn.__file__).parent
    for f in root.rglob("*.py"):
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if "pickle" in line.lower():
                assert ("allow_pickle=False" in line or "never" in line or "refused" in line
                        or "need pickle" in line), f"{f}:{i}: {line.strip()}"


# --- what gn.load is given --------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", [None, 123, 1.5, ["model.gnet"], {"path": "m"}, io.StringIO("text"), object()],
                         ids=["None", "int", "float", "list", "dict", "text_file", "object"])
def test_load_takes_a_path_or_a_binary_file(source, still_works):
    with pytest.raises(gn.FormatError, match=r"gn.load takes a path or a binary file object"):
        gn.load(source)


def test_load_from_a_binary_file_object_with_hostile_bytes(good, still_works):
    with pytest.raises(gn.FormatError, match=r"cannot load file: the file is not a graphnet zip file"):
        gn.load(io.BytesIO(b"\0" * 64))
    assert good.same(gn.load(io.BytesIO(good.bytes)))


def test_load_state_refuses_hostile_files(good, tmp_path, still_works):
    for data, match in [(b"", r"not a graphnet zip file"), (good.bytes, r"it is a model \(read it with gn.load\)"),
                        (np.random.default_rng(5).bytes(300), r"not a graphnet zip file"),
                        (_state_with_npy(_npy(np.zeros(2))), r"the data does not match its sha256")]:
        p = tmp_path / "s.gnet"
        p.write_bytes(data)
        with pytest.raises(gn.FormatError, match=r"cannot load '.*s.gnet': .*" + match):
            gn.load_state(p)

"""The numba backend: fused kernels agree with the reference interpreter, and fusion forms groups."""
import re

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import graphnet as gn
from graphnet import nn
from graphnet.compile.kernels import FusedKernel
from graphnet.compile.lower import lower
from graphnet.compile.numba_backend import numba_available
from graphnet.compile.passes import passes_for
from graphnet.compile.picks import TARGET_CHECK
from graphnet.compile.pipeline import run_passes
from graphnet.ops import Concat, Contiguous, MatMul, Slice, Transpose

from test_compile_agreement import random_graph, random_recurrence, run_plan as _run

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba is not installed")


def _agree(ref, got, tol, per_array=True):
    """Relative error below tol, relative to each array (float64), or to the largest of them all (float32: a
    gradient entry that cancels to near zero carries the rounding of the terms it summed). An array that cancels
    to (near) zero is measured against a thousandth of the largest, for the same reason (every backend)."""
    pairs = [(a, b) for a, b in zip(sum(ref[:3], []), sum(got[:3], []))]
    top = max((np.abs(a).max(initial=0) for a, _ in pairs if a is not None), default=0.0)
    for a, b in pairs:
        if a is None:
            assert b is None
            continue
        scale = max(np.abs(a).max(initial=0) if per_array else top, 1e-3 * top, 1e-30)
        assert np.abs(np.asarray(a, np.float64) - b).max(initial=0) / scale < tol


def _graph_case(seed, dtype):
    g, n_in = random_graph(seed)
    g.float64() if dtype == np.float64 else g.float32()
    r = np.random.default_rng(seed + 1)
    B = int(r.integers(1, 4))
    arrays = [r.standard_normal((B, 6)).astype(dtype) for _ in range(n_in)]
    seeds = [r.standard_normal((B, 6)).astype(dtype) for _ in range(2)]
    return g, arrays, seeds


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
@example(seed=36183)        # a kernel written over its input, with a result kept apart computed after its out's
def test_random_graphs_agree_with_level0_float64(backend, seed):
    g, arrays, seeds = _graph_case(seed, np.float64)
    _agree(_run(g, arrays, seeds, level=0), _run(g, arrays, seeds, level=2, backend=backend), 1e-12)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_graphs_agree_with_level0_float32(seed):
    g, arrays, seeds = _graph_case(seed, np.float32)
    _agree(_run(g, arrays, seeds, level=0), _run(g, arrays, seeds, level=2, backend="numba"), 1e-5, False)


# 150 graphs, not the numpy backend's 1,000: each new kernel costs numba ~0.5 s to compile on a machine whose
# kernel cache is cold (a new CI machine); 1,000 graphs would be ~30 minutes there. Run it with more examples by
# hand (hypothesis's max_examples) after changing the fusion pass.
@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
@example(seed=790444289)    # a group a path enters at a late member and leaves at an early one (no cycle made)
def test_random_graphs_agree_with_level0_many_graphs(seed):
    g, arrays, seeds = _graph_case(seed, np.float64)
    _agree(_run(g, arrays, seeds, level=0), _run(g, arrays, seeds, level=2, backend="numba"), 1e-12)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([np.float64, np.float32]))
def test_unrolled_cells_agree_with_level0(seed, dtype):
    g, arrays, seeds = random_recurrence(seed)
    if dtype == np.float32:
        g.float32()
        arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
        seeds = [s.astype(dtype) for s in seeds]
    ref, got = _run(g, arrays, seeds, level=0), _run(g, arrays, seeds, level=2, backend="numba")
    _agree(ref, got, 1e-12 if dtype == np.float64 else 1e-5, dtype == np.float64)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_train_step_agrees_with_level0(seed):
    g, arrays, _ = random_recurrence(seed, loss_only=True)
    ref_loss, _, ref_grads, _ = _run(g, arrays, [np.asarray(1.0)], level=0)
    step = gn.compile_train_step(g, backend="numba")
    for _ in range(2):                       # the second call runs in the arrays the first one used
        loss = step(*arrays)
        assert abs(loss - float(ref_loss[0])) <= 1e-12 * max(1.0, abs(loss))
        for p, r in zip(g.parameters(), ref_grads):
            np.testing.assert_allclose(p.grad, r, rtol=1e-12, atol=1e-14)


def _same_train_step_on_both_backends(model, arrays):
    """The numba and numpy train steps of a float64 model: equal loss and gradients (1e-12)."""
    numba_step, numpy_step = gn.compile_train_step(model, backend="numba"), gn.compile_train_step(model)
    loss_numba = numba_step(*arrays)
    grads = [p.grad.copy() for p in model.parameters()]
    assert abs(numpy_step(*arrays) - loss_numba) < 1e-12
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(g, p.grad, rtol=1e-12, atol=1e-14)
    return numba_step, numpy_step


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_fusion_forms_groups_in_every_cell(kind):
    # the same pass, nothing cell-specific: each cell's gate math becomes kernels, forward and backward
    T, B, D, H = 3, 2, 3, 4
    cell = getattr(gn.rnn, f"{kind}_cell")(D, H)
    xs = [gn.Input() for _ in range(T)]
    states = [gn.Input() for _ in range(2 if kind == "lstm" else 1)]
    s = list(states)
    for x in xs:
        out = cell(x, *s)
        s = list(out) if len(states) > 1 else [out]
    loss = nn.Mean(0)(nn.Sum(1)(nn.Square()(s[-1])))
    model = gn.gModule(xs + states, [loss]).float64()
    r = np.random.default_rng(0)
    arrays = [r.standard_normal((B, D)) for _ in xs] + [r.standard_normal((B, H)) for _ in states]
    numba_step, numpy_step = _same_train_step_on_both_backends(model, arrays)
    st_ = numba_step.stats()
    assert st_["backend"] == "numba" and st_["fused_groups"] >= 2 and st_["fused_ops"] >= 2 * st_["fused_groups"]
    assert numpy_step.stats()["fused_groups"] == 0
    code = numba_step.code
    assert "# --- fused kernels (numba) ---" in code and code.count("@njit") == st_["kernels"]
    assert sum(ln.strip().startswith("_k") for ln in code.split("# --- fused")[0].splitlines()) >= T


def test_mlp_and_convnet_fuse_too():
    x = gn.Input()
    h = nn.Tanh()(nn.Linear(5, 8)(x))
    y = nn.Sigmoid()(nn.Linear(8, 3)(h)) * 2.0 + 1.0
    mlp = gn.gModule([x], [y]).float64()
    xa = np.random.default_rng(1).standard_normal((4, 5))
    ref = gn.compile(mlp, level=0).forward(xa)
    plan = gn.compile(mlp, backend="numba")
    np.testing.assert_allclose(plan.forward(xa), ref, rtol=1e-12)
    assert plan.stats()["fused_groups"] >= 1
    img = gn.Input()
    c = nn.ReLU()(nn.SpatialConvolution(2, 3, 3, 3, 1, 1, 1, 1)(img)) * 0.5
    conv = gn.gModule([img], [nn.Sum(1)(nn.Reshape(3 * 5 * 5)(c))]).float64()
    ia = np.random.default_rng(2).standard_normal((2, 2, 5, 5))
    ref, refg = _run(conv, [ia], [np.ones((2,))], level=0)[:2]
    got = _run(conv, [ia], [np.ones((2,))], level=2, backend="numba")
    _agree((ref, refg, []), got, 1e-12)
    assert got[3].stats()["fused_groups"] >= 1


def test_a_batch_size_of_one_then_more_uses_the_same_kernels():
    # kernels read every size at run time: a row vector of the graph and a batch of one look alike
    x = gn.Input()
    b = nn.Add(4)
    y = nn.Tanh()(b(x)) * nn.Sigmoid()(x)
    g = gn.gModule([x], [y]).float64()
    plan = gn.compile(g, backend="numba")
    for B in (1, 5):
        xa = np.random.default_rng(B).standard_normal((B, 4))
        np.testing.assert_allclose(plan.forward(xa), gn.compile(g, level=0).forward(xa), rtol=1e-12)


def test_backend_names_are_checked():
    x = gn.Input()
    g = gn.gModule([x], [nn.Tanh()(x)])
    with pytest.raises(gn.InputError, match="backend must be one of"):
        gn.compile(g, backend="cuda")
    assert gn.compile(g, backend="auto").backend == "numba"
    assert gn.compile_train_step(g, backend="numpy").backend == "numpy"


def test_a_scalar_computed_in_the_plan_feeds_a_kernel():
    # a full sum is a numpy scalar in the plan, not a 0-d array: the kernel takes either
    x = gn.Input()
    y = nn.Tanh()(x * nn.Sum(0)(nn.Sum(0)(x)))
    g = gn.gModule([x], [nn.Sigmoid()(y) + 1.0]).float64()
    xa = np.random.default_rng(0).standard_normal((3, 4))
    seed = np.random.default_rng(1).standard_normal((3, 4))
    ref, got = _run(g, [xa], [seed], level=0), _run(g, [xa], [seed], level=2, backend="numba")
    _agree(ref, got, 1e-12)
    assert got[3].stats()["fused_groups"] >= 2


def test_kernels_are_written_to_the_cache_folder(tmp_path, monkeypatch):
    # numba's on-disk cache keys on a real source file: each kernel's source lands in $GRAPHNET_CACHE/kernels
    monkeypatch.setenv("GRAPHNET_CACHE", str(tmp_path))
    c = float(np.random.default_rng().uniform(1, 2))          # a kernel no earlier test compiled
    x = gn.Input()
    g = gn.gModule([x], [nn.Tanh()(nn.MulConstant(c)(x)) * x]).float64()
    plan = gn.compile(g, backend="numba")
    xa = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_allclose(plan.forward(xa), np.tanh(c * xa) * xa, rtol=1e-12)
    files = list((tmp_path / "kernels").glob("_k*.py"))
    assert files and any(repr(c) in f.read_text() for f in files)
    assert all(f.stem in plan.code for f in files if repr(c) in f.read_text())


def test_numba_backend_without_numba_is_refused(monkeypatch):
    from graphnet.compile import numba_backend
    monkeypatch.setattr(numba_backend, "numba_available", lambda: False)
    x = gn.Input()
    g = gn.gModule([x], [nn.Tanh()(x)])
    with pytest.raises(gn.InputError, match=r"backend='numba' needs numba.*graphnet\[fast\]"):
        gn.compile(g, backend="numba")
    assert gn.compile(g, backend="auto").backend == "numpy"


def test_numba_plans_are_generic_in_the_batch_size():
    """Kernels take every size at run time: a sweep of batch sizes compiles the signature's two sizes and probe
    only, and every size agrees with the reference interpreter."""
    gn.manual_seed(3)
    x, t = gn.Input((None, 8)), gn.Input((None,))
    h = nn.Dropout(0.2)(nn.Tanh()(nn.Linear(8, 16)(x)))
    m = gn.gModule([x, t], [nn.CrossEntropyCriterion()(nn.Linear(16, 5)(h), t)]).float64().evaluate()
    step, ref = gn.compile_train_step(m, backend="numba"), gn.compile_train_step(m, level=0)
    for B in [16, 16, 5, 9, 33, 3, 12, 2, 7, 40]:
        rs = np.random.RandomState(B)
        xs, ts = rs.randn(B, 8), rs.randint(0, 5, B)
        loss = step(xs, ts)
        grads = [p.grad.copy() for p in m.parameters()]
        assert loss == pytest.approx(ref(xs, ts), rel=1e-12)
        for g, p in zip(grads, m.parameters()):
            np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-12)
    stats = step.stats()
    assert stats["fused_groups"] > 0 and stats["compiles"] == 3 and stats["batch_sizes_bound"] == 7


def _lstm_with_head(T, B, V, H):
    cell, head = gn.rnn.lstm_cell(V, H), nn.Linear(H, V)
    xs, ys, s = [gn.Input() for _ in range(T)], [gn.Input() for _ in range(T)], [gn.Input(), gn.Input()]
    state, losses = list(s), []
    for x, y in zip(xs, ys):
        state = list(cell(x, *state))
        losses.append(nn.ClassNLLCriterion()(nn.LogSoftMax()(head(state[-1])), y))
    model = gn.gModule(xs + ys + s, [nn.CAddTable()(losses)]).float64()
    f8, i8 = np.dtype("f8"), np.dtype("i8")
    return model, [((B, V), f8)] * T + [((B,), i8)] * T + [((B, H), f8)] * 2


def _lstm_with_head_case(T, B, V, H):
    """The LSTM with a head: the model, its lowered train step, that step after the numba pipeline, and arrays
    to run it on."""
    model, sig = _lstm_with_head(T, B, V, H)
    lowered = lower(model, sig, wrt_inputs=[False] * len(sig), seeded=[True])
    prog, _ = run_passes(lowered, 2, "numba", check=True)
    r = np.random.default_rng(0)
    arrays = [r.standard_normal((B, V)) for _ in range(T)] + [r.integers(0, V, B) for _ in range(T)]
    arrays += [r.standard_normal((B, H)) for _ in range(2)]
    return model, lowered, prog, arrays


def _column_block_of_kernels(v):
    """A column block of a row stack of kernel outputs: rows as far apart as a kernel's whole output."""
    while isinstance(v.op, (Transpose, Contiguous)) or (isinstance(v.op, Slice) and v.op.dim % v.ndim == 0):
        if isinstance(v.op, Contiguous):
            return False
        v = v.args[0]
    if not (isinstance(v.op, Slice) and v.op.dim % v.ndim == v.ndim - 1):
        return False
    stack = v.args[0]
    return (isinstance(stack.op, Concat) and stack.op.dim % stack.ndim == 0
            and any(isinstance(a.op, FusedKernel) for a in stack.args) and v.shape[-1] < stack.shape[-1])


def test_gemms_read_stacks_of_kernel_results_as_contiguous_arrays():
    # the GEMMs of the head (h of every step) and of the weight gradients (the gates' gradients of every step)
    # read stacks of kernel results: a column block of the kernels' outputs stacked whole would spare a copy,
    # but a GEMM over rows that far apart ran 1.2-1.6x slower than over a copy (the step 10-18% slower)
    T, B, V, H = 4, 3, 5, 6
    model, _, prog, arrays = _lstm_with_head_case(T, B, V, H)
    gemms = [v for v in prog.values if isinstance(v.op, MatMul)]
    assert gemms and not [v for v in gemms if any(_column_block_of_kernels(a) for a in v.args)]
    assert [v for v in prog.values if isinstance(v.op, FusedKernel)]
    _same_train_step_on_both_backends(model, arrays)


def test_row_stacks_of_kernel_results_are_written_in_place_by_the_kernels():
    # h of every step (for the head) and the gates' gradients of every step (for the weight gradients) are
    # results a row stack holds: each step's kernel writes them into an array of their own, which the memory
    # plan puts in the stack's rows, so no stack of kernel results is copied
    from graphnet.compile.kernels import KernelResult
    T, B, V, H = 4, 3, 5, 6
    model, _, prog, arrays = _lstm_with_head_case(T, B, V, H)
    parts = [v for v in prog.values if isinstance(v.op, KernelResult)]
    stacked = [c for c in prog.values if isinstance(c.op, Concat) and c.op.dim == 0
               and all(isinstance(a.op, KernelResult) for a in c.args)]
    widths = sorted({c.shape[-1] for c in stacked})
    assert len(parts) >= 2 * T and widths == [H, 4 * H], widths          # h of each step, the gates' gradients
    copied = [c for c in prog.values if isinstance(c.op, Concat) and any(
        isinstance(a.op, Slice) and isinstance(a.args[0].op, FusedKernel) for a in c.args)]
    assert not copied                           # (a stack of column blocks of kernel outputs: a copy)
    _same_train_step_on_both_backends(model, arrays)


def test_every_step_of_a_recurrence_runs_one_kernel():
    # the first step reads the initial cell state from an input at column 0, the others from the previous
    # step's output at the state's column, and the last step's state is read by no later step: kept alike, with
    # the column offset an argument of the call, the steps' forward share one kernel (one compile, not three).
    # Backward, the step into the initial state computes no gradient for it: given that member, it shares the
    # kernel of the steps before it (the last step, with no later step's gradient to add, has its own)
    T, B, V, H = 5, 3, 4, 6
    model, _, prog, arrays = _lstm_with_head_case(T, B, V, H)
    kernels = [v.op for v in prog.values if isinstance(v.op, FusedKernel)]
    cells = [op for op in kernels if op.kernel.body.count("_tanh(") == 3]
    assert len(cells) == T and len({op.kernel.name for op in cells}) == 1
    assert len({op.shifts for op in cells}) == 2 and all(len(op.shifts) == 1 for op in cells)
    assert re.search(r"r(\d+) = a\1\[i0\]\[c\1:\]", cells[0].kernel.body)     # a row read from that column on
    backward = [op for op in kernels if op.parts and "_tanh(" not in op.kernel.body and "_exp(" not in
                op.kernel.body]                          # each step's gate gradients, written into their stack
    assert len(backward) == T and len({op.kernel.name for op in backward}) == 2
    _same_train_step_on_both_backends(model, arrays)


def test_class_picking_joins_the_log_softmax_kernels():
    # ClassNLL's pick reads the log-softmax's row at the target, its gradient puts g at the target: both are
    # computed in the head's kernels (targets read as a column, once per row), not as numpy ops
    from graphnet.ops import Pick, PickGrad
    model, lowered, prog, arrays = _lstm_with_head_case(3, 4, 5, 6)
    assert any(isinstance(v.op, (Pick, PickGrad)) for v in lowered.values)
    assert not [v for v in prog.values if isinstance(v.op, (Pick, PickGrad))]
    sources = {v.op.kernel.body for v in prog.values if isinstance(v.op, FusedKernel)}
    assert any("_exp(" in k and TARGET_CHECK in k for k in sources)          # log-softmax + pick
    assert any("if j == " in k and "_exp(" in k for k in sources)                 # their gradients
    _same_train_step_on_both_backends(model, arrays)


def _kernels_agreeing_with_level0(g, a):
    """The kernel values of g's numba program, once its plan's forward has agreed with level 0 on a."""
    np.testing.assert_allclose(gn.compile(g, backend="numba").forward(a), gn.compile(g, level=0).forward(a),
                               rtol=1e-12)
    prog, _ = run_passes(lower(g, [(a.shape, a.dtype)]), 2, "numba", check=True)
    return [v for v in prog.values if isinstance(v.op, FusedKernel)]


def test_a_cheap_value_of_the_inputs_is_computed_again_not_kept_in_out():
    # the bias add before a log-softmax is read by its max, sum and final loops: added again in each, it needs no
    # column block of out (out stays as narrow as the log-softmax, so a GEMM reading it reads contiguous rows)
    x = gn.Input()
    g = gn.gModule([x], [nn.LogSoftMax()(nn.Linear(6, 5)(x))]).float64()
    a = np.random.default_rng(0).standard_normal((4, 6))
    (k,) = [v for v in _kernels_agreeing_with_level0(g, a) if "_key(" in v.op.kernel.body]       # forward
    assert k.op.width == 5 and k.op.kernel.body.count("r0[j] + r1[j]") == 3
    # and at a column slice's offset: a cell's pre-activation, read as gates, is never stored
    lin = nn.Linear(6, 8)(x)
    y = nn.Sigmoid()(nn.Narrow(1, 0, 4)(lin)) * nn.Tanh()(nn.Narrow(1, 4, 4)(lin))
    g = gn.gModule([x], [y]).float64()
    (k,) = [v for v in _kernels_agreeing_with_level0(g, a) if v.op.kernel.body.count("_tanh(") == 2]
    assert k.op.width == 12 and "(r0[4 + j] + r1[4 + j])" in k.op.kernel.body   # y, its factors: not lin's 8


@pytest.mark.parametrize("bad", [3, -1])
def test_a_target_out_of_range_is_refused_inside_a_kernel(bad):
    x, t = gn.Input(), gn.Input()
    nll = gn.gModule([x, t], [nn.ClassNLLCriterion()(nn.LogSoftMax()(nn.Tanh()(x)), t)]).float64()
    plan = gn.compile(nll, backend="numba")
    np.testing.assert_allclose(plan.forward(np.ones((2, 3)), np.array([0, 2])),
                               gn.compile(nll, level=0).forward(np.ones((2, 3)), np.array([0, 2])), rtol=1e-12)
    assert TARGET_CHECK in plan.code
    with pytest.raises(gn.InputError, match=f"target class {bad} is out of range for 3 classes") as e:
        plan.forward(np.ones((2, 3)), np.array([0, bad]))
    assert "test_fusion.py" in str(e.value)                      # the user's line that made the criterion


def test_a_kernel_written_over_its_input_reads_it_through_its_output():
    # out and the input it is written over are one array: read through out, the loop vectorizes (two arrays
    # that overlap send LLVM to its scalar loop) and the results are the same
    x = gn.Input()
    y = nn.Linear(8, 3)(nn.Tanh()(nn.Linear(6, 8)(x)) * 2.0)
    g = gn.gModule([x], [y]).float64()
    xa = np.random.default_rng(0).standard_normal((5, 6))
    plan = gn.compile(g, backend="numba")
    np.testing.assert_allclose(plan.forward(xa), gn.compile(g, level=0).forward(xa), rtol=1e-12)
    calls = [line.split("#")[0].strip() for line in plan.code.splitlines() if line.strip().startswith("_k")]
    over = [c for c in calls if c.split("(")[1].split(",")[0] in [a.strip(" )") for a in c.split(",")[1:]]]
    assert over, calls
    name, args = over[0].split("(")[0], [a.strip(" )") for a in over[0].split("(")[1].split(",")]
    k = args[1:].index(args[0])
    source = plan.code.split(f"def {name}(")[1].split("\n\n")[0]
    assert f"r{k} = o\n" in source and f"r{k} = a{k}" not in source


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", [nn.LogSoftMax, nn.SoftMax])
def test_softmax_rows_with_nan_and_infinities_match_level0(layer, dtype):
    # the kernel's row max skips NaN (a NaN test keeps the loop scalar); the NaN still reaches its whole row
    x = gn.Input()
    g = gn.gModule([x], [layer()(x * 1.0 + 0.5)])
    g.float32() if dtype == np.float32 else g.float64()
    xa = np.random.default_rng(0).standard_normal((5, 7)).astype(dtype)
    xa[1, 3], xa[2, 0], xa[3, :] = np.nan, np.inf, -np.inf
    xa[4, 2] = -np.inf
    plan = gn.compile(g, backend="numba")
    with np.errstate(invalid="ignore"):
        ref, got = gn.compile(g, level=0).forward(xa), plan.forward(xa)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert plan.stats()["fused_groups"] >= 1

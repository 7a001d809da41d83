"""The kernels' own exp and tanh (vectorizable formulas) against numpy's, over their whole range; the ordered
integer keys their row max is taken over."""
import numpy as np
import pytest

from graphnet.compile.kernel_math import NAMES, SOURCES, module_name
from graphnet.compile.numba_backend import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba is not installed")


def _vectorized(dtype, name, out_dtype=None):
    from numba import njit

    from graphnet.compile.numba_backend import load
    fn = load(module_name(dtype), SOURCES[np.dtype(dtype)], attr=name)

    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])
    return lambda x: (apply(x, out := np.empty(x.shape, out_dtype or x.dtype)), out)[1]


def _points(dtype, lo, hi):
    r = np.random.default_rng(0)
    x = np.concatenate([np.linspace(lo, hi, 200_001), r.uniform(lo, hi, 100_000), r.standard_normal(100_000),
                        [0.0, -0.0, 1e-30, -1e-30, 1e-8, lo, hi]])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype,ulps", [(np.float32, 2), (np.float64, 2)])
def test_exp_is_within_a_few_ulps_of_numpy(dtype, ulps):
    lim = np.log(np.finfo(dtype).max)                     # where exp overflows
    tiny = np.log(np.finfo(dtype).tiny)                   # below: subnormal results, measured absolutely
    x = _points(dtype, tiny, lim * 0.9999)
    got, ref = _vectorized(dtype, "_exp")(x), np.exp(x)
    assert np.all(np.abs(got - ref) <= ulps * np.spacing(ref))
    edge = np.array([-np.inf, np.inf, np.nan, lim * 1.01, 2 * tiny, -1e4, 1e4], dtype)
    with np.errstate(over="ignore", under="ignore"):
        np.testing.assert_array_equal(_vectorized(dtype, "_exp")(edge), np.exp(edge))


@pytest.mark.parametrize("dtype,ulps", [(np.float32, 6), (np.float64, 2)])
def test_tanh_is_within_a_few_ulps_of_numpy(dtype, ulps):
    x = _points(dtype, -30, 30)
    got, ref = _vectorized(dtype, "_tanh")(x), np.tanh(x)
    assert np.all(np.abs(got - ref) <= ulps * np.spacing(np.abs(ref)) + np.finfo(dtype).tiny)
    edge = np.array([-np.inf, np.inf, np.nan, -0.0], dtype)
    np.testing.assert_array_equal(_vectorized(dtype, "_tanh")(edge), np.tanh(edge))


def test_every_helper_is_defined_for_every_dtype():
    for dtype, src in SOURCES.items():
        for name in NAMES:
            assert f"def {name}(" in src, (dtype, name)


@pytest.mark.parametrize("dtype,itype", [(np.float32, np.int32), (np.float64, np.int64)])
def test_keys_order_as_the_floats_do_and_give_them_back_bit_for_bit(dtype, itype):
    x = np.concatenate([_points(dtype, -1e30, 1e30), _points(dtype, -3, 3),
                        np.array([np.inf, -np.inf, np.finfo(dtype).tiny, -np.finfo(dtype).tiny], dtype)])
    keys = _vectorized(dtype, "_key", itype)(x)
    nonzero = np.sort(x[x != 0])                                   # (-0.0 keys just below +0.0)
    k = _vectorized(dtype, "_key", itype)(nonzero)
    assert np.array_equal(np.sign(np.diff(k)), np.sign(np.diff(nonzero)))   # keys order as the floats do
    assert _vectorized(dtype, "_key", itype)(np.array([-0.0, 0.0], dtype)).tolist() == [-1, 0]
    back = _vectorized(dtype, "_unkey", dtype)(keys)
    assert np.array_equal(back.view(itype), x.view(itype))        # -0.0 stays -0.0
    nan = np.array([np.nan, np.inf], dtype)
    assert _vectorized(dtype, "_key", itype)(nan)[0] > _vectorized(dtype, "_key", itype)(nan)[1]   # NaN > +inf


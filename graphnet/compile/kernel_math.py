"""``_exp`` and ``_tanh`` for fused kernels: branch-free formulas LLVM can vectorize.

numba compiles ``math.exp`` and ``math.tanh`` to calls into the C library, one element at a time (30-45 ns an
element here, slower than numpy's SIMD loops). These formulas use only arithmetic, comparisons and selects, so a
loop over a row becomes SIMD code:

- ``_exp(x)`` = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in two parts (|r| <= ln 2 / 2); exp(r) by a
  polynomial (float32: Cephes' expf, ~1 ulp) or its Taylor series to r^13 (float64, within 1e-16); 2^n as two
  factors made from their exponent bits (an LLVM bitcast), so that neither overflows before the result does.
- ``_tanh(x)``: float32 a rational function accurate to a few ulps (clamped where tanh rounds to +-1); float64
  Cephes' rational form for |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1).

- ``_key(x)`` / ``_unkey(k)``: x's bits as a signed integer that orders as the floats do (negative floats
  have their magnitude bits flipped), and back. A row's max taken over keys is an integer max, which LLVM
  vectorizes; over floats it is a compare-and-select it must keep scalar (it may not assume no NaN). A NaN with
  its sign bit clear keys above +inf and is the max, as np.max's; with it set, below -inf.

NaN propagates; exp overflows to inf and underflows to 0 where numpy's does (within an ulp of the bound). One
module per dtype, compiled once and cached on disk. A kernel calls them as numba functions, not inlined by numba
(``inline="always"`` types each call's copy again: 0.1-0.2 s more compile a kernel); LLVM inlines them in the
kernel's machine code all the same, and vectorizes the loop around them. They are compiled as written
(``fastmath=False`` given): a numba function called from another inherits the caller's fastmath flags unless
it sets its own, and is compiled once per type, so their rounding would depend on which kernel compiled first
(a kernel's ``reassoc`` took exp to 3 ulps).
"""
from __future__ import annotations

import hashlib

import numpy as np

_BITS = '''

@intrinsic
def _from_bits(typingctx, bits):
    # the float whose IEEE bits are the integer ``bits`` (an LLVM bitcast: no instruction)
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], {ir_type})
    return {float_type}({int_type}), codegen


@intrinsic
def _to_bits(typingctx, x):
    # the IEEE bits of the float ``x`` as a signed integer (a bitcast)
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType({bits}))
    return {int_type}({float_type}), codegen


@njit(error_model="numpy", fastmath=False, nogil=True, cache=True)
def _key(x):
    i = _to_bits(x)
    return i ^ ((i >> _I({bits_1})) & _I({mask}))


@njit(error_model="numpy", fastmath=False, nogil=True, cache=True)
def _unkey(k):
    return _from_bits(k ^ ((k >> _I({bits_1})) & _I({mask})))
'''
_HEAD = '''import math
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_F = np.{float_type}
_I = np.{int_type}
'''

FLOAT32 = _HEAD.format(float_type="float32", int_type="int32") + _BITS.format(
    ir_type="ir.FloatType()", float_type="types.float32", int_type="types.int32", bits=32, bits_1=31,
    mask="0x7fffffff") + '''


@njit(error_model="numpy", fastmath=False, nogil=True, cache=True)
def _exp(x):
    y = min(max(x, _F(-104.0)), _F(89.0))
    n = _I(math.floor(y * _F(1.44269504088896341) + _F(0.5)))
    r = (y - _F(n) * _F(0.693359375)) + _F(n) * _F(2.12194440e-4)
    p = _F(1.9875691500e-4)
    p = p * r + _F(1.3981999507e-3)
    p = p * r + _F(8.3334519073e-3)
    p = p * r + _F(4.1665795894e-2)
    p = p * r + _F(1.6666665459e-1)
    p = p * r + _F(5.0000001201e-1)
    e = p * r * r + r + _F(1.0)
    # times 2^n as two factors 2^h, 2^(n-h), each a normal float32 (|h| <= 76), made from its exponent bits
    h = n >> _I(1)
    e = e * _from_bits((h + _I(127)) << _I(23)) * _from_bits((n - h + _I(127)) << _I(23))
    return e if x == x else x


@njit(error_model="numpy", fastmath=False, nogil=True, cache=True)
def _tanh(x):
    x = min(max(x, _F(-7.90531110763549805)), _F(7.90531110763549805))
    x2 = x * x
    p = x2 * _F(-2.76076847742355e-16) + _F(2.00018790482477e-13)
    p = x2 * p + _F(-8.60467152213735e-11)
    p = x2 * p + _F(5.12229709037114e-08)
    p = x2 * p + _F(1.48572235717979e-05)
    p = x2 * p + _F(6.37261928875436e-04)
    p = x2 * p + _F(4.89352455891786e-03)
    q = x2 * _F(1.19825839466702e-06) + _F(1.18534705686654e-04)
    q = x2 * q + _F(2.26843463243900e-03)
    q = x2 * q + _F(4.89352518554385e-03)
    return x * p / q
'''

FLOAT64 = _HEAD.format(float_type="float64", int_type="int64") + _BITS.format(
    ir_type="ir.DoubleType()", float_type="types.float64", int_type="types.int64", bits=64, bits_1=63,
    mask="0x7fffffffffffffff") + '''

@njit(error_model="numpy", fastmath=False, nogil=True, cache=True)
def _exp(x):
    y = min(max(x, -746.0), 710.0)
    n = _I(math.floor(y * 1.4426950408889634 + 0.5))
    r = (y - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6
    e = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720 + r * (
        1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (
            1.0 / 479001600 + r / 6227020800.0))))))))))))
    # times 2^n as two factors 2^h, 2^(n-h), each a normal float64 (|h| <= 538), made from its exponent bits
    h = n >> _I(1)
    e = e * _from_bits((h + _I(1023)) << _I(52)) * _from_bits((n - h + _I(1023)) << _I(52))
    return e if x == x else x


@njit(error_model="numpy", fastmath=False, nogil=True, cache=True)
def _tanh(x):
    a = abs(x)
    # |x| < 0.625: Cephes' rational x + x z P(z) / Q(z), z = x^2
    z = x * x
    p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3
    q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3
    small = x + x * z * p / q
    # else 1 - 2 / (exp(2|x|) + 1) (1 in double beyond 2|x| = 44)
    big = 1.0 - 2.0 / (_exp(2.0 * min(a, 22.0)) + 1.0)
    big = big if x >= 0 else -big
    return small if a < 0.625 else (big if a == a else x)
'''

NAMES = ("_exp", "_tanh", "_key", "_unkey")     # what a kernel may call
SOURCES = {np.dtype(np.float32): FLOAT32, np.dtype(np.float64): FLOAT64}


def module_name(dtype) -> str:
    """The helper module's name for ``dtype``: named by its source's hash, so a changed formula is a new file."""
    src = SOURCES[np.dtype(dtype)]
    return f"_graphnet_math_{np.dtype(dtype).name}_" + hashlib.sha256(src.encode()).hexdigest()[:12]

"""Primitive ops: each is a shape rule, a dtype rule, a forward and a VJP, side by side (see base.Op)."""
from .base import Op, broadcast_shapes, unbroadcast
from .elementwise import (ELU, Deriv, Abs, Add, AddN, AddScalar, Cast, Compare, Div, Exp, HardTanh, Huber, LeakyReLU,
                          Log, Maximum, Minimum, Mul, Pow, ReLU, Scale, Sigmoid, SoftPlus, Sqrt, Square, Sub, Tanh,
                          Threshold, Unary)
from .leaf import Arg, Const, DropoutMask, Leaf, Param, Seed
from .linalg import MatMul
from .nnet import LogSoftmax, LogSoftmaxGrad, Pick, PickGrad, Softmax, SoftmaxGrad, Take, TakeGrad
from .reduce import BroadcastTo, Max, MaxGrad, Mean, Sum
from .shape import Concat, Contiguous, Index, Pad, Reshape, Slice, Transpose, Unslice

"""The modules users call on nodes (nngraph's ``nn``), each a composition of primitive ops."""
from .basic import (ELU, Abs, Add, AddConstant, Dropout, Exp, HardTanh, Identity, LeakyReLU, Linear, Log,
                    LogSoftMax, LookupTable, MM, Mul, MulConstant, Power, ReLU, Sigmoid, SoftMax, SoftPlus, Sqrt,
                    Square, Tanh, Threshold)
from .criterion import (AbsCriterion, BCECriterion, ClassNLLCriterion, Criterion, CrossEntropyCriterion,
                        MSECriterion, SmoothL1Criterion)
from .shape import Contiguous, Max, Mean, Narrow, Padding, Replicate, Reshape, Select, Squeeze, Sum, Transpose, Unsqueeze, View
from .table import (CAddTable, CDivTable, CMaxTable, CMinTable, CMulTable, CSubTable, FlattenTable, JoinTable,
                    NarrowTable, SelectTable, SplitTable)
from .containers import Concat, ConcatTable, Container, Parallel, ParallelTable, Sequential
from .conv import SpatialAveragePooling, SpatialConvolution, SpatialMaxPooling
from .norm import BatchNormalization, LayerNorm
from ..module import Module
from ..gmodule import gModule

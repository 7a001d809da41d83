"""graphnet: nngraph for Python — networks as graphs of modules, compiled to fused numpy plans, drawn with graphviz."""
from . import nn, ops
from .compile import Plan, compile, compile_train_step
from .errors import FormatError, GraphError, GraphnetError, InputError, RenderError, ShapeError
from .gmodule import gModule
from .module import Module, Parameter, manual_seed
from .node import Input, Node

__version__ = "0.1.0"

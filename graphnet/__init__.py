"""graphnet: nngraph for Python — networks as graphs of modules, compiled to fused numpy plans, drawn with graphviz."""
from . import data, distributed, nn, ops, optim, rnn
from .compile import Plan, compile, compile_train_step
from .debug import debug
from .export import export_onnx
from .optim import clip_grad_norm, clip_grad_value
from .render import render
from .errors import FormatError, GraphError, GraphnetError, InputError, RenderError, ShapeError
from .clone import clone_many_times
from .gmodule import gModule
from .module import Module, Parameter, manual_seed
from .node import Input, Node
from .rnn import unroll
from .serialize import load, load_state, register_module, save, save_state
from .train import Learner

__version__ = "0.1.0"

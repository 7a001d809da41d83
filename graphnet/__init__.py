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

from . import hooks as _hooks
from .compile import DEFAULT_LEVEL as _DEFAULT_LEVEL
from .compile.ir import Builder as _Builder
from .debug import active as _debug_active, on_error as _debug_on_error
from .render import repr_svg as _repr_svg, summary as _summary, to_dot as _to_dot, to_networkx as _to_networkx

# The layers above node/module/gmodule offer them what they call upwards (see graphnet/hooks.py): shape inference
# on the compiler's IR builder, the plan behind forward/backward, the nn modules of node sugar, drawings, gn.debug.
_hooks.provide(builder=_Builder, compile=compile, default_level=_DEFAULT_LEVEL, nn=nn, to_dot=_to_dot,
               repr_svg=_repr_svg, summary=_summary, to_networkx=_to_networkx, debug_active=_debug_active,
               debug_on_error=_debug_on_error)

__version__ = "0.1.0"

"""Saving and loading: a model (or an optimizer's state) is one zip file of JSON and npz, validated on load.

A model file holds ``graph.json`` (the modules, each as its class name in graphnet's own registry with its
JSON-typed constructor arguments; the nodes, each with its module and input edges; one table of arrays) and
``params.npz`` (the parameters and buffers, one .npy member per array). Shared modules and parameters are
written once and referred to by index, so sharing survives the round trip. Loading never unpickles anything
(pickle files are refused, not read), never imports or looks up a name found in the file outside the registry,
and checks everything it can before building: the zip, every JSON field's type, the references, the .npy
headers against the declared shapes and dtypes, and sizes, before any array is read.
"""
from .archive import VERSION
from .model import load, save
from .registry import register_module, registry
from .state import load_state, save_state

__all__ = ["save", "load", "save_state", "load_state", "registry", "register_module", "VERSION"]

"""The import layers of README's "How it works": each file imports only the layers below it, functions included.

Upward calls (shape inference on the compiler's builder, forward's plan, node sugar's nn modules, drawings,
gn.debug) go through graphnet.hooks, where graphnet/__init__ registers the upper layers.
"""
import ast
import pathlib
import re
import subprocess
import sys

import pytest

import graphnet as gn
from graphnet import hooks
from graphnet.node import shapes_agree

ROOT = pathlib.Path(gn.__file__).parent

# file (or package) -> the graphnet modules it may import, anywhere in the file; a package may import itself
ALLOWED = {
    "errors": set(),
    "hooks": {"errors"},
    "ops": {"errors", "ops"},
    "node": {"errors", "hooks"},
    "tables": {"errors", "node"},
    # clone.py holds Module.clone's copying; it sits beside module (it reads no compiler, renderer or nn module)
    "clone": {"errors"},
    "module": {"errors", "hooks", "ops", "node", "clone"},
    "gmodule": {"errors", "hooks", "ops", "node", "tables", "module"},
    "nn": {"errors", "hooks", "ops", "node", "tables", "module", "gmodule", "nn"},
}
ABOVE_BUILDING = ("graphnet.compile", "graphnet.render", "graphnet.debug", "graphnet.export", "graphnet.serialize",
                  "graphnet.train", "graphnet.distributed", "graphnet.nn", "graphnet.rnn")


def _unit(path: pathlib.Path) -> str:
    """The layer unit of a file: its package under graphnet/ (ops, nn, ...) or its module name."""
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: pathlib.Path, source=None):
    """(line, unit) for every graphnet module this file (or ``source`` as if it were this file) imports, at the
    top or inside functions."""
    package = ["graphnet", *path.relative_to(ROOT).parent.parts]
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target[:1] != ["graphnet"]:
                continue
            if len(target) == 1:            # from . import nn, hooks: each name is a module of graphnet
                for alias in node.names:
                    yield node.lineno, alias.name
            else:
                yield node.lineno, target[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "graphnet":
                    yield node.lineno, parts[1] if len(parts) > 1 else "graphnet"


def _files(unit):
    return sorted((ROOT / unit).glob("*.py")) if (ROOT / unit).is_dir() else [ROOT / f"{unit}.py"]


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_imports_point_down(unit):
    wrong = [f"{path.relative_to(ROOT.parent)}:{line} imports graphnet.{target}"
             for path in _files(unit) for line, target in _imports(path) if target not in ALLOWED[unit]]
    assert not wrong, "imports above the layer:\n" + "\n".join(wrong)


def test_the_static_check_sees_function_level_imports():
    src = "import numpy\ndef f():\n    from ..render import to_dot\n    from .. import nn\n    import graphnet.debug\n"
    found = sorted(_imports(ROOT / "compile" / "probe.py", src))
    assert found == [(3, "render"), (4, "nn"), (5, "debug")]


_FRESH = """
import sys, types
pkg = types.ModuleType("graphnet")          # the package without its __init__, which loads every layer
pkg.__path__ = [{root!r}]
sys.modules["graphnet"] = pkg
import graphnet.ops, graphnet.node, graphnet.module, graphnet.gmodule
print(" ".join(sorted(m for m in sys.modules if m.startswith("graphnet."))))
from graphnet import ops
from graphnet.errors import GraphError
from graphnet.module import Module
from graphnet.node import Input

class Double(Module):
    def lower(self, b, x):
        return b(ops.Scale(2.0), x)

try:
    Double()(Input((2, 3)))
except GraphError as e:
    print("ERROR", e)
"""


def test_the_lower_layers_load_without_the_upper_ones():
    out = subprocess.run([sys.executable, "-c", _FRESH.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    loaded = out[0].split()
    assert "graphnet.module" in loaded and "graphnet.gmodule" in loaded
    assert not [m for m in loaded if m.startswith(ABOVE_BUILDING)], loaded
    # building needs the compiler's builder: without it registered, a clear error says what is missing
    assert out[1].startswith("ERROR graphnet's 'builder' is not registered"), out[1:]


def test_every_hook_the_lower_layers_need_is_registered():
    needed = set()
    for path in ROOT.rglob("*.py"):
        needed |= set(re.findall(r"""hooks\.need\(["'](\w+)["']\)""", path.read_text()))
    assert {"builder", "compile", "nn", "to_dot"} <= needed       # the scan finds the calls
    missing = [name for name in sorted(needed) if name not in hooks._provided]
    assert not missing
    for name in needed:
        assert hooks.need(name) is not None


def test_shapes_agree_where_known():
    assert shapes_agree((None, 3), (2, 3)) and shapes_agree((2, 3), (2, None)) and shapes_agree((), ())
    assert not shapes_agree((2, 3), (2, 4))
    assert not shapes_agree((None, 3), (3,))          # the rank always counts

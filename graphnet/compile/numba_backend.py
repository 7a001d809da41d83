"""The numba backend: which backend a plan uses, and kernels loaded from source files in a cache folder.

Each kernel's module source is written once to ``<cache>/kernels/<name>.py`` (the name is the source's hash)
and imported from there, so numba's own on-disk cache (``cache=True``) finds the compiled machine code in
later processes. The folder is ``$GRAPHNET_CACHE``, else ``$XDG_CACHE_HOME/graphnet``, else
``~/.cache/graphnet``; where none is writable, a folder under the system's temporary directory.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import InputError

BACKENDS = ("numpy", "numba", "auto")
_lock = threading.Lock()
_loaded: dict = {}


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, who: str = "gn.compile") -> str:
    """"numpy" or "numba" for a requested backend; "auto" is numba when numba imports."""
    if backend not in BACKENDS:
        raise InputError(f"{who}: backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "auto":
        return "numba" if numba_available() else "numpy"
    if backend == "numba" and not numba_available():
        raise InputError(f"{who}: backend='numba' needs numba, which is not installed "
                         f"(pip install 'graphnet[fast]'), or use backend='numpy' or 'auto'")
    return backend


def cache_dir() -> Path:
    """The folder kernels' sources (and numba's compiled code beside them) are kept in."""
    env = os.environ.get("GRAPHNET_CACHE")
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "graphnet" if xdg else Path.home() / ".cache" / "graphnet"
    for d in (base / "kernels", Path(tempfile.gettempdir()) / f"graphnet-{os.getuid()}" / "kernels"):
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    raise InputError(f"the numba backend needs a writable cache folder; set GRAPHNET_CACHE (tried {base})")


def load(name: str, source: str, given: dict | None = None, attr: str | None = None):
    """The numba-compiled function ``attr`` (default ``name``) defined by ``source``, run as module ``name`` with
    the globals ``given`` (compiled on its first call per type)."""
    module = _loaded.get(name)
    if module is None:
        with _lock:
            module = _loaded.get(name)
            if module is None:
                module = _loaded[name] = _import(name, source, given)
    return getattr(module, attr or name)


def _import(name: str, source: str, given: dict | None):
    path = cache_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        # written whole, then renamed: another process never imports half a file, and the file (its time
        # stamp, which keys numba's cache) is not touched again once it exists
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    module_name = f"graphnet_kernels.{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    module.__dict__.update(given or {})
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module

"""Data-parallel training on Ray: ``step = gn.distributed.data_parallel(model, workers=N)``, a drop-in for
``gn.compile_train_step(model)`` whose forward+backward runs on N Ray workers, each on its share of the batch.

Why this shape: the user's loop and optimizer stay as they are, on one process with one copy of the weights;
only the gradient computation is spread. Each worker holds a copy of the model, shipped once as graphnet's own
save format (JSON + npz bytes: a module is never pickled), and its own compiled train step. A step sends each
worker its rows of every input (one object per worker) and, only when they changed since the last step, the
weights (one ``ray.put`` of the flat vector, read by every worker; a small vector rides inside the calls); each
worker returns its loss, its flat gradient already weighted by its share of the rows, and its further outputs.
The driver adds the gradients into the model's ``.grad`` and concatenates the outputs along dim 0. Ray is
imported on first use only.
"""
from __future__ import annotations

import atexit
import hashlib
import io
import logging
import os
import sys
import time
import weakref

import numpy as np

from .compile.numba_backend import resolve_backend
from .errors import GraphnetError, InputError
from .module import Module, rng
from .shards import concat_outputs, leaves, row_count, shard_sizes, take_rows

__all__ = ["data_parallel", "DataParallelStep", "WorkerError", "init", "shutdown"]

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMBA_NUM_THREADS")
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OPEN: "weakref.WeakSet[DataParallelStep]" = weakref.WeakSet()
INLINE_BYTES = 64 << 10              # below Ray's limit for values sent inside a call (100 KiB)
START_TIMEOUT_S = 600                # a worker imports numpy and graphnet and compiles: slow on a busy machine
# who started (or joined) the Ray this process runs: None (not graphnet), "init" (it stays up until shutdown()),
# "step" (a step did, and the last step to close stops it)
_OWNED = {"ray": None}


class WorkerError(GraphnetError):
    """A Ray worker died or could not start; the message names it. The next step starts a new one."""


# ----------------------------------------------------------------------------------------------- Ray itself

def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("gn.distributed needs Ray, which is not installed: pip install 'graphnet[distributed]' "
                         "(or: pip install ray)") from None
    return ray


def init(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray (``address=None``) or join a cluster (``"auto"``, ``"ray://host:port"``), quietly, for
    the steps to come: it stays up until ``shutdown()`` or the end of the process (a step that has to start Ray
    itself stops it when it closes).

    Nothing happens when this process already runs Ray. A local Ray listens on 127.0.0.1 only, reports no usage
    statistics and starts no dashboard; its workers run at normal priority (Ray's default niceness, 15, makes
    them lose to every other process on a shared machine).
    """
    if _start(address, num_cpus):
        _OWNED["ray"] = "init"


def _start(address, num_cpus) -> bool:
    """Start or join Ray unless this process runs it already; True when it did."""
    if address is None and "ray" not in sys.modules:
        # Ray picks the address its processes listen on when it is imported: loopback only, for a local Ray
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")      # Ray would report usage over the network
    ray = _ray()
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    if address is None:
        # "local": a new Ray of our own, never one that `ray start` left running on this machine
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=0,
                 _node_ip_address="127.0.0.1", _system_config={"worker_niceness": 0}, **quiet)
    else:
        ray.init(address=address, **quiet)
    return True


def shutdown() -> None:
    """Close every open data-parallel step, then stop (or leave) the Ray that ``init`` started or joined."""
    for step in list(_OPEN):
        step.close()
    if _OWNED["ray"]:
        _OWNED["ray"] = None
        import ray
        ray.shutdown()


atexit.register(shutdown)


# ----------------------------------------------------------------------------------------------- the worker

class _Worker:
    """One Ray actor: the model rebuilt from its saved bytes, a compiled train step, the flat weight vector."""

    def __init__(self, saved: bytes, level: int, seed: int, backend: str = "numpy"):
        import graphnet as gn
        self.model = gn.load(io.BytesIO(saved))
        self.modules = self.model.modules()
        self.model.get_parameters()                  # parameters become views of one flat vector, then compile
        self.train_step = gn.compile_train_step(self.model, level=level, backend=backend)
        gn.manual_seed(seed)                           # Dropout masks: reproducible, and different per worker

    def pid(self) -> int:
        return os.getpid()

    def step(self, weights, modes, weight: float, arrays: list):
        """(loss, weight * gradient, further outputs, seconds): ``weight`` is this worker's share of the rows."""
        t0 = time.perf_counter()
        if weights is not None:
            self.model.get_parameters()[0][...] = weights
        if modes is not None:
            _apply_modes(self.modules, modes)
        res = self.train_step(*arrays)
        loss, outs = (res[0], list(res[1:])) if isinstance(res, tuple) else (res, [])
        grad = self.model.get_parameters()[1]
        grad *= weight                               # the driver only adds: the weighting runs in parallel
        return float(loss) * weight, grad, outs, time.perf_counter() - t0


def _apply_modes(modules, modes):
    """Each module's training flag as given, through training()/evaluate() (which compiled plans notice): the
    first module that differs (with what it contains) at a time; in pre-order a parent comes before its parts."""
    for _ in range(len(modules)):
        wrong = next(((m, t) for m, t in zip(modules, modes) if m.train != t), None)
        if wrong is None:
            return
        m, train = wrong
        m.training() if train else m.evaluate()


# ------------------------------------------------------------------------------------------------ the step

class DataParallelStep:
    """``step(*arrays)``: the batch-weighted mean loss of the model over the rows of ``arrays`` (and its further
    outputs, concatenated along dim 0), with the batch-weighted mean gradient left in the model's ``.grad``.

    The loss is taken to be a mean over the batch (graphnet's criterions by default), so that the weighted mean
    of the shards' losses and gradients is the full batch's. ``close()`` (or ``with``, or the end of the
    process) stops the workers, and Ray itself when this step started it.
    """

    def __init__(self, model: Module, workers: int, address: str | None, threads: int | None, level: int,
                 backend: str = "numpy"):
        if not isinstance(model, Module):
            raise InputError(f"data_parallel takes a graphnet module whose first output is a scalar loss, got "
                             f"{type(model).__name__}")
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise InputError(f"data_parallel: workers must be a positive int, got {workers!r}")
        _refuse_batch_statistics(model)
        self.model, self.workers, self.level = model, int(workers), int(level)
        self.backend = resolve_backend(backend, "data_parallel")     # checked here: numba must import here too
        local = address is None
        self.threads = int(threads) if threads else max(1, (os.cpu_count() or 1) // self.workers) if local else 1
        buf = io.BytesIO()
        from graphnet import save
        save(model, buf)                             # the model travels as graphnet's JSON + npz, never pickled
        self._saved = buf.getvalue()
        w = model.get_parameters()[0]
        self._layout = (w.shape, w.dtype)            # what the workers' copies hold
        self._seed = _seed_from(rng())
        self._closed = False
        self._actors: list = [None] * self.workers
        self._pids: list = [None] * self.workers
        self._has_weights = [False] * self.workers   # has worker i the weights last put?
        self._has_modes = [False] * self.workers
        self._weights_ref = None
        self._sent_weights = None
        self._modes = None
        self._profile = dict.fromkeys(("steps", "weights_sent", "bytes_sent", "bytes_received"), 0)
        self._profile.update(dict.fromkeys(("put_s", "submit_s", "wait_s", "reduce_s", "worker_s"), 0.0))
        if _start(address, max(os.cpu_count() or 1, self.workers * self.threads)):
            _OWNED["ray"] = "step"
        ray = _ray()
        self._runtime_env = _runtime_env(self.threads, local)
        _OPEN.add(self)
        try:
            self._start_missing(ray)
        except BaseException:
            self.close()
            raise

    # --- workers ---------------------------------------------------------------------------------------------
    def _start_missing(self, ray):
        """Start the workers not running (all at first, a dead one's replacement later) and wait until each has
        loaded the model; refuse at once when Ray lacks the CPUs, rather than wait for them forever."""
        cls = ray.remote(_Worker)
        new = [i for i, a in enumerate(self._actors) if a is None]
        need = len(new) * self.threads
        total = ray.cluster_resources().get("CPU", 0)
        for _ in range(100 if total >= need else 1):  # a dead worker's CPUs come back a moment after it died
            free = ray.available_resources().get("CPU", 0)
            if free >= need:
                break
            time.sleep(0.1)
        else:
            raise InputError(f"data_parallel: {len(new)} workers x {self.threads} threads need {need} CPUs and "
                             f"Ray has {free:g} free (of {total:g}); close other steps, ask for fewer workers "
                             f"or threads=, or start Ray with more CPUs")
        for i in new:
            self._actors[i] = cls.options(num_cpus=self.threads, runtime_env=self._runtime_env,
                                          max_restarts=0).remote(self._saved, self.level, self._seed + i,
                                                                         self.backend)
            self._has_weights[i] = self._has_modes[i] = False
        for i in new:
            try:
                self._pids[i] = ray.get(self._actors[i].pid.remote(), timeout=START_TIMEOUT_S)
            except ray.exceptions.RayError as e:
                for j in new:
                    if self._actors[j] is not None:
                        ray.kill(self._actors[j], no_restart=True)
                        self._actors[j] = None
                raise WorkerError(f"data_parallel: worker {i} of {self.workers} could not start: "
                                  f"{_first_line(e)}") from None

    @property
    def worker_pids(self) -> list:
        """The process id of each worker (None for one not started yet)."""
        return list(self._pids)

    # --- one step ---------------------------------------------------------------------------------------------
    def __call__(self, *arrays):
        if self._closed:
            raise InputError("data_parallel: this step is closed; make a new one with gn.distributed.data_parallel")
        ray = _ray()
        _refuse_batch_statistics(self.model)
        n = row_count(arrays)
        sizes = shard_sizes(n, self.workers)
        if any(a is None for a in self._actors):
            self._start_missing(ray)
        prof = self._profile
        t0 = time.perf_counter()
        weights = self._weights_to_send(ray)
        modes = self._modes_to_send()
        t1 = time.perf_counter()
        refs, lo = [], 0
        for i, size in enumerate(sizes):
            shard = take_rows(arrays, lo, lo + size)
            prof["bytes_sent"] += sum(a.nbytes for a in leaves(shard))
            w = weights if not self._has_weights[i] else None
            m = modes if not self._has_modes[i] else None
            refs.append(self._actors[i].step.remote(w, m, size / n, shard))
            lo += size
        t2 = time.perf_counter()
        results = self._gather(ray, refs, sizes)
        t3 = time.perf_counter()
        for i in range(len(sizes)):
            self._has_weights[i] = self._has_modes[i] = True
        loss, outs = self._reduce(results)
        t4 = time.perf_counter()
        prof["steps"] += 1
        prof["put_s"] += t1 - t0
        prof["submit_s"] += t2 - t1
        prof["wait_s"] += t3 - t2
        prof["reduce_s"] += t4 - t3
        prof["worker_s"] += max(r[3] for r in results)
        return (loss, *outs) if outs else loss

    def _weights_to_send(self, ray):
        """The flat weights to send (an object reference when large), new only when the weights changed."""
        w = self.model.get_parameters()[0]
        if (w.shape, w.dtype) != self._layout:
            raise InputError(f"data_parallel: the model now has {w.size} parameters of {w.dtype}, its workers' "
                             f"copies {self._layout[0][0]} of {self._layout[1]} (its dtype or parameters changed "
                             f"since the step was made); make a new step")
        if self._sent_weights is None or not np.array_equal(self._sent_weights, w):
            if w.nbytes <= INLINE_BYTES:             # small: inside each call (a put costs more than the bytes)
                self._sent_weights = self._weights_ref = w.copy()
            else:                                    # large: one copy in the object store, read by every worker
                self._weights_ref = ray.put(w)
                self._sent_weights = ray.get(self._weights_ref)     # a view of that copy: compared next time
            self._has_weights = [False] * self.workers
            self._profile["weights_sent"] += 1
            self._profile["bytes_sent"] += w.nbytes
        return self._weights_ref

    def _modes_to_send(self):
        modes = tuple(bool(m.train) for m in self.model.modules())
        if modes != self._modes:
            self._modes = modes
            self._has_modes = [False] * self.workers
        return modes

    def _gather(self, ray, refs, sizes):
        """Every worker's result; a dead worker raises WorkerError (after all are collected), naming it."""
        results, dead, failure = [], [], None
        for i, ref in enumerate(refs):
            try:
                results.append(ray.get(ref))
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError) as e:
                dead.append((i, e))
                self._actors[i] = None
            except ray.exceptions.RayTaskError as e:
                failure = failure or (i, e)
        if dead:
            e = dead[0][1]
            names = ", ".join(f"worker {j} (pid {self._pids[j]})" for j, _ in dead)
            raise WorkerError(f"data_parallel: {names} of {self.workers} died during the step "
                              f"({_first_line(e)}); the step has no result and the model's .grad is unchanged. "
                              f"The next call starts a new worker in its place: call the step again") from None
        if failure is not None:
            i, e = failure
            lo = sum(sizes[:i])
            cause = e.cause
            note = f" (in data-parallel worker {i}, on rows {lo}:{lo + sizes[i]} of the batch)"
            if isinstance(cause, GraphnetError):           # the model's own error, as itself, with where it ran
                try:
                    again = type(cause)(str(cause) + note, getattr(cause, "node", None))
                except TypeError:
                    again = None
                if again is not None:
                    raise again from None
            raise WorkerError(f"data_parallel: worker {i} failed{note}: {type(cause).__name__}: {cause}") from None
        return results

    def _reduce(self, results):
        """Add the workers' weighted losses and gradients (into the model's .grad); concatenate the outputs."""
        g = self.model.get_parameters()[1]
        np.copyto(g, results[0][1])
        for r in results[1:]:
            np.add(g, r[1], out=g)
        self._profile["bytes_received"] += sum(r[1].nbytes + sum(o.nbytes for o in r[2]) for r in results)
        loss = float(sum(r[0] for r in results))
        return loss, concat_outputs([r[2] for r in results])

    def profile(self) -> dict:
        """Totals since the step was made: steps; weights_sent (times the weights went out); bytes_sent (inputs and
        weights) and bytes_received (gradients and outputs); seconds in put_s (the weights: compare, put),
        submit_s (sending the calls), wait_s (until every result is in), reduce_s (adding gradients, joining
        outputs) and worker_s (the slowest worker's own step, a part of wait_s)."""
        return dict(self._profile)

    # --- lifetime ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers (and Ray, when this step started it and no other step is open)."""
        if self._closed:
            return
        self._closed = True
        _OPEN.discard(self)
        try:
            import ray
            if ray.is_initialized():
                for a in self._actors:
                    if a is not None:
                        ray.kill(a, no_restart=True)
        finally:
            self._actors = [None] * self.workers
            self._weights_ref = None
            if _OWNED["ray"] == "step" and not _OPEN:
                shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"{self.workers} workers x {self.threads} threads"
        return f"DataParallelStep({self.model.label()}, {state})"


def data_parallel(model: Module, workers: int = 2, address: str | None = None, *, threads: int | None = None,
                  level: int = 2, backend: str = "numpy") -> DataParallelStep:
    """``gn.compile_train_step(model)`` on ``workers`` Ray workers: ``step(*arrays)`` splits every input along
    dim 0 (uneven shards allowed), returns the batch-weighted mean loss (and further outputs, concatenated) and
    leaves the batch-weighted mean gradient in the model's ``.grad``.

    ``address``: None starts a local Ray unless this process runs one; ``"auto"`` or ``"ray://host:port"``
    joins a cluster (graphnet travels to it with the workers). ``threads``: BLAS threads per worker (default:
    this machine's cores shared out, locally; 1 on a cluster). ``backend``: the workers' plans, as for
    ``gn.compile_train_step`` (``"numba"``: each worker compiles the kernels, or finds them in its cache)."""
    return DataParallelStep(model, workers, address, threads, level, backend)


# ----------------------------------------------------------------------------------------------- helpers

def _runtime_env(threads: int, local: bool) -> dict:
    """Each worker's BLAS threads (read when numpy loads, so set in its environment) and how it finds graphnet:
    on this machine, this checkout (or installation) on PYTHONPATH; on a cluster, a copy uploaded by Ray."""
    env = {var: str(threads) for var in _THREAD_VARS}
    if local:
        paths = [_PKG_PARENT] + [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return {"env_vars": env}
    return {"env_vars": env, "py_modules": [os.path.join(_PKG_PARENT, "graphnet")]}


def _seed_from(generator) -> int:
    """A seed for the workers' Dropout masks that follows gn.manual_seed without drawing from its generator
    (a draw here would change every later shuffle and mask of the user's own run)."""
    state = repr(generator.bit_generator.state).encode()
    return int.from_bytes(hashlib.sha256(state).digest()[:4], "little") >> 2


def _refuse_batch_statistics(model):
    """Modules that keep statistics of the batch (BatchNormalization in training mode) would normalise by each
    shard's rows and update running statistics on the workers only: a different model, silently. Refused."""
    for m in model.modules():
        bufs = getattr(m, "buffers", None)
        if m.train and callable(bufs) and bufs():
            raise InputError(f"data_parallel: {m.label()} is in training mode: each worker would normalise by "
                             f"the statistics of its own rows and update running statistics this model never "
                             f"sees; call .evaluate() on it, or train on one process with gn.compile_train_step")


def _first_line(e) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__

"""One LSTM training step, graphnet against a hand-tuned numpy step, PyTorch eager and torch.nn.LSTM.

The step: T steps of nngraph's LSTM cell (gates i, f, o, g), at every step a head Linear(H, V) + LogSoftMax +
ClassNLL (mean over the batch), the T losses summed, then backward to every weight gradient.

    python benchmarks/lstm.py                       # every size, float32 and float64
    python benchmarks/lstm.py --sizes tiny,small --dtypes float32 --reps 50
    python benchmarks/lstm.py --quick               # smoke test: few repetitions
    python benchmarks/lstm.py --write-readme        # also rewrite README's bench:lstm block
    python benchmarks/lstm.py --sizes tiny --analyze   # numpy calls per time step in graphnet's plan

All four first get the same weights and inputs and must agree in float64 (loss and every weight gradient,
relative error < 1e-8); then they are timed alternately in one process and the medians reported.
"""
from __future__ import annotations

import argparse
import ast
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _threads import threads_from_argv  # noqa: E402

THREADS = threads_from_argv(sys.argv)         # before numpy and torch are imported

import numpy as np  # noqa: E402

from _common import (build_lstm, fmt_ms, gn, linears, machine_line, markdown_table, median_ms, nn,  # noqa: E402
                     rel_err, time_alternating, write_readme_block)

SIZES = {                     # B, D, H, V, T
    "tiny": (1, 16, 32, 16, 25),
    "small": (16, 64, 128, 64, 25),
    "medium": (32, 128, 256, 128, 50),
    "large": (64, 512, 1024, 512, 25),
}
DTYPES = {"float32": np.float32, "float64": np.float64}
TOL = 1e-8
# gate blocks along the 4H axis: graphnet i, f, o, g; torch i, f, g, o. Swapping the last two blocks maps
# either order onto the other (the permutation is its own inverse).
def _perm(H): return np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]


# --- the problem -------------------------------------------------------------------------------------------
class Problem:
    """Weights (graphnet's layout, float64) and one batch of data, shared by all contenders."""

    def __init__(self, B, D, H, V, T, seed=0):
        self.B, self.D, self.H, self.V, self.T = B, D, H, V, T
        rng = np.random.default_rng(seed)
        u = lambda n, *shape: rng.uniform(-1 / np.sqrt(n), 1 / np.sqrt(n), shape)   # noqa: E731
        self.w = {"W_ih": u(H, 4 * H, D), "b_ih": u(H, 4 * H), "W_hh": u(H, 4 * H, H), "b_hh": u(H, 4 * H),
                  "W_o": u(H, V, H), "b_o": u(H, V)}
        self.X = np.eye(D)[rng.integers(0, D, (T, B))]               # (T, B, D) one-hot
        self.Y = rng.integers(0, V, (T, B)).astype(np.int64)          # (T, B) 0-based classes
        self.c0 = 0.5 * rng.standard_normal((B, H))
        self.h0 = 0.5 * rng.standard_normal((B, H))


# --- (g) graphnet ------------------------------------------------------------------------------------------
class Graphnet:
    label = "graphnet"
    backend = "numpy"

    def __init__(self, p: Problem, dtype):
        D, H, V, T = p.D, p.H, p.V, p.T
        t0 = time.perf_counter()
        cell = build_lstm(D, H)
        head, logsoft, nll = nn.Linear(H, V), nn.LogSoftMax(), nn.ClassNLLCriterion()
        xs = [gn.Input(name=f"x_{t + 1}") for t in range(T)]
        ts = [gn.Input(name=f"t_{t + 1}") for t in range(T)]
        c0, h0 = gn.Input(name="c0"), gn.Input(name="h0")
        c, h, losses = c0, h0, []
        for t in range(T):
            c, h = cell(xs[t], c, h)                          # the same cell: shared weights
            losses.append(nll(logsoft(head(h)), ts[t]))
        loss = nn.CAddTable()(losses)
        model = gn.gModule(xs + ts + [c0, h0], [loss])
        model.float64() if dtype == np.float64 else model.float32()
        i2h, h2h = linears(cell)
        self.params = {"W_ih": i2h.weight, "b_ih": i2h.bias, "W_hh": h2h.weight, "b_hh": h2h.bias,
                       "W_o": head.weight, "b_o": head.bias}
        for k, prm in self.params.items():
            prm.data[...] = p.w[k]
        self.build_s = time.perf_counter() - t0
        self.step = gn.compile_train_step(model, backend=self.backend)
        self.args = ([np.ascontiguousarray(p.X[t], dtype) for t in range(T)] + [p.Y[t].copy() for t in range(T)]
                     + [p.c0.astype(dtype), p.h0.astype(dtype)])
        t0 = time.perf_counter()
        self.step(*self.args)                                 # compiles the plan for this signature
        self.first_call_s = time.perf_counter() - t0

    def run(self) -> float:
        return self.step(*self.args)

    def grads(self) -> dict:
        return {k: prm.grad for k, prm in self.params.items()}

    def stats(self) -> dict:
        try:
            return dict(self.step.stats())
        except Exception:                                     # an older or newer plan without stats
            return {}


class GraphnetNumba(Graphnet):
    """The same plan with the numba backend: each group of elementwise ops is one fused kernel."""
    label = "graphnet[numba]"
    backend = "numba"


# --- (a) hand-tuned numpy ----------------------------------------------------------------------------------
class Numpy:
    """The yardstick: the same step written by hand over preallocated buffers.

    Layout (K = D + H + 1):
      W   (K, 4H)      [W_ih^T; W_hh^T; b_ih + b_hh], gate columns i, f, o, g   (the parameters)
      Wo  (H+1, V)     [W_o^T; b_o]                                             (the parameters)
      XH  (T+1, B, K)  row t = [x_t, h_{t-1}, 1]: one GEMM per step gives all 4H pre-activations with bias;
                       h_t is written straight into row t+1, so XH[1:, :, D:] = [h_t, 1] stacked over time feeds
                       the head as one GEMM (bias included), and XH[:T] gives dW as one GEMM.
      G   (T+1, B, 5H) row t = [i, f, o, g | c_{t-1}]: i*g and f*c_{t-1} are one multiply of two adjacent
                       2H blocks; c_t is written as row t+1's c_{t-1}.
      R   (T+1, B, V+5H) row k = [dL_{k-1} | dz_k | carry_k]: dh_t = [dL_t, dz_{t+1}] @ [W_o; W_hh] is one GEMM
                       per step (head and recurrence together); dz over all rows gives dW as one GEMM.
    Sigmoid via tanh: the i, f, o columns of the forward copy of W are halved, so one tanh over all 4H gives
    tanh(z/2) for i, f, o and tanh(z) for g; sigmoid = 0.5 tanh(z/2) + 0.5 costs two in-place calls.
    Per time step: forward 8 numpy calls (1 GEMM), backward 7 (1 GEMM); everything that does not depend on the
    recurrence (gate derivatives, the head, weight gradients) is done once over all T*B rows.
    """
    label = "numpy"

    def __init__(self, p: Problem, dtype):
        B, D, H, V, T = p.B, p.D, p.H, p.V, p.T
        self.dims = (B, D, H, V, T)
        K, dt = D + H + 1, np.dtype(dtype)
        f = lambda *shape: np.zeros(shape, dt)      # noqa: E731
        self.W, self.Wo = f(K, 4 * H), f(H + 1, V)
        self.W[:D], self.W[D:D + H], self.W[D + H] = p.w["W_ih"].T, p.w["W_hh"].T, p.w["b_ih"] + p.w["b_hh"]
        self.Wo[:H], self.Wo[H] = p.w["W_o"].T, p.w["b_o"]
        self.dW, self.dWo = f(K, 4 * H), f(H + 1, V)
        self.Ws, self.Wb = f(K, 4 * H), f(V + 4 * H, H)             # forward copy; [W_o; W_hh] for backward
        self.XH, self.G, self.R = f(T + 1, B, K), f(T + 1, B, 5 * H), f(T + 1, B, V + 5 * H)
        self.XH[:, :, D + H] = 1.0
        self.TC, self.OTC, self.DV = f(T, B, H), f(T, B, H), f(T, B, 4 * H)
        self.LG, self.mx, self.s = f(T * B, V), f(T * B), f(T, B)
        self.pick, self.pidx = f(T * B), np.zeros(T * B, np.intp)
        self.pbase = np.arange(T * B) * V
        self.tI, self.bI = np.arange(T)[:, None], np.arange(B)[None, :]
        self.P2, self.dh, self.dc = f(B, 2 * H), f(B, H), f(B, H)
        XH, G, R = self.XH, self.G, self.R
        # every view the loops touch, made once
        self.fwd = [(XH[t], G[t, :, :4 * H], G[t, :, :3 * H], G[t, :, :2 * H], G[t, :, 3 * H:], G[t + 1, :, 4 * H:],
                     self.TC[t], G[t, :, 2 * H:3 * H], XH[t + 1, :, D:D + H]) for t in range(T)]
        dc3 = self.dc[:, None, :]
        self.bwd = [(R[t + 1, :, :V + 4 * H], self.OTC[t], R[t + 1, :, V + 4 * H:],
                     G[t, :, 3 * H:].reshape(B, 2, H), R[t, :, V:V + 2 * H].reshape(B, 2, H),
                     G[t, :, :2 * H].reshape(B, 2, H), R[t, :, V + 3 * H:].reshape(B, 2, H),
                     self.TC[t], R[t, :, V + 2 * H:V + 3 * H], R[t, :, V:V + 4 * H], self.DV[t])
                    for t in reversed(range(T))]
        self.dc3 = dc3
        self.hs1 = XH[1:, :, D:].reshape(T * B, H + 1)               # [h_t, 1] over all steps: a view
        self.xh = XH[:T].reshape(T * B, K)
        self.dz = R[:T, :, V:V + 4 * H].reshape(T * B, 4 * H)
        self.EX = R[1:, :, :V]                                       # exp(logits), then dL, in place
        self.dL = self.EX.reshape(T * B, V)
        for v, buf in ((self.hs1, XH), (self.xh, XH), (self.dz, R), (self.dL, R),
                       *((b[k], G if k in (3, 5) else R) for b in self.bwd for k in (3, 4, 5, 6))):
            assert np.shares_memory(v, buf), "a reshape copied instead of giving a view"
        self.args = (p.X.astype(dt), p.Y.copy(), p.c0.astype(dt), p.h0.astype(dt))

    def run(self) -> float:
        return self.step(*self.args)

    def step(self, X, Y, c0, h0) -> float:
        B, D, H, V, T = self.dims
        W, Wo, Ws, Wb, XH, G = self.W, self.Wo, self.Ws, self.Wb, self.XH, self.G
        mm, tanh, mul, add, sub = np.matmul, np.tanh, np.multiply, np.add, np.subtract
        # weights for this step: halved i, f, o columns; [W_o; W_hh] for the backward GEMM
        mul(W[:, :3 * H], 0.5, out=Ws[:, :3 * H])
        np.copyto(Ws[:, 3 * H:], W[:, 3 * H:])
        np.copyto(Wb[:V], Wo[:H].T)
        np.copyto(Wb[V:], W[D:D + H].T)
        np.copyto(XH[:T, :, :D], X)
        np.copyto(XH[0, :, D:D + H], h0)
        np.copyto(G[0, :, 4 * H:], c0)
        P2, P2a, P2b = self.P2, self.P2[:, :H], self.P2[:, H:]
        for xh, z, ifo, if_, gc, c_next, tc, o, h_next in self.fwd:
            mm(xh, Ws, out=z)
            tanh(z, out=z)
            mul(ifo, 0.5, out=ifo)
            add(ifo, 0.5, out=ifo)
            mul(if_, gc, out=P2)                                     # [i*g, f*c_prev]
            add(P2a, P2b, out=c_next)
            tanh(c_next, out=tc)
            mul(o, tc, out=h_next)
        # head over all T*B rows: logits, log-sum-exp, picked entries
        LG, mx, s, EX = self.LG, self.mx, self.s, self.EX
        mm(self.hs1, Wo, out=LG)
        np.maximum.reduce(LG, axis=1, out=mx)
        sub(LG, mx[:, None], out=LG)
        add(self.pbase, Y.reshape(-1), out=self.pidx)
        np.take(LG.reshape(-1), self.pidx, out=self.pick)
        np.exp(LG.reshape(T, B, V), out=EX)
        add.reduce(EX, axis=2, out=s)
        loss = (float(np.log(s).sum()) - float(self.pick.sum())) / B
        # dL = (softmax - onehot) / B, written where the backward GEMMs read it
        np.divide(1.0 / B, s, out=s)
        mul(EX, s[:, :, None], out=EX)
        EX[self.tI, self.bI, Y] -= 1.0 / B
        # gate derivatives, all steps at once: [i(1-i), f(1-f), o(1-o), 1-g^2] and o (1 - tanh(c)^2)
        S, DV, Gg, TC, OTC = G[:T, :, :3 * H], self.DV, G[:T, :, 3 * H:4 * H], self.TC, self.OTC
        sub(1.0, S, out=DV[:, :, :3 * H])
        mul(DV[:, :, :3 * H], S, out=DV[:, :, :3 * H])
        mul(Gg, Gg, out=DV[:, :, 3 * H:])
        sub(1.0, DV[:, :, 3 * H:], out=DV[:, :, 3 * H:])
        mul(TC, TC, out=OTC)
        sub(1.0, OTC, out=OTC)
        mul(OTC, G[:T, :, 2 * H:3 * H], out=OTC)
        dh, dc, dc3 = self.dh, self.dc, self.dc3
        for r_in, otc, carry_in, gc, dz_if, if_, dz_gc, tc, dz_o, dz, dv in self.bwd:
            mm(r_in, Wb, out=dh)                                     # dL_t W_o + dz_{t+1} W_hh
            mul(dh, otc, out=dc)
            add(dc, carry_in, out=dc)                                # dc_t
            mul(dc3, gc, out=dz_if)                                  # [dc*g, dc*c_prev] -> di, df
            mul(dc3, if_, out=dz_gc)                                 # [dc*i, dc*f] -> dg, carry
            mul(dh, tc, out=dz_o)                                    # do
            mul(dz, dv, out=dz)                                      # through the nonlinearities
        mm(self.xh.T, self.dz, out=self.dW)
        mm(self.hs1.T, self.dL, out=self.dWo)
        return loss

    def grads(self) -> dict:
        D, H = self.dims[1], self.dims[2]
        dW, dWo = self.dW, self.dWo
        return {"W_ih": dW[:D].T, "b_ih": dW[D + H], "W_hh": dW[D:D + H].T, "b_hh": dW[D + H],
                "W_o": dWo[:H].T, "b_o": dWo[H]}


class GemmOnly(Numpy):
    """The hand-tuned step with every elementwise op removed: its GEMMs alone, the physical limit of this step
    on this BLAS (the numbers it computes are not a gradient)."""
    label = "GEMM-only"

    def step(self, X, Y, c0, h0) -> float:
        mm = np.matmul
        for xh, z, *_ in self.fwd:
            mm(xh, self.Ws, out=z)
        mm(self.hs1, self.Wo, out=self.LG)
        for r_in, *_ in self.bwd:
            mm(r_in, self.Wb, out=self.dh)
        mm(self.xh.T, self.dz, out=self.dW)
        mm(self.hs1.T, self.dL, out=self.dWo)
        return 0.0


# --- (b) PyTorch eager, the same primitives; (c) torch.nn.LSTM ---------------------------------------------
def _torch():
    import torch
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)
    return torch


class TorchEager:
    label = "torch eager"

    def __init__(self, p: Problem, dtype):
        torch = _torch()
        self.torch, self.F = torch, torch.nn.functional
        td = torch.float64 if dtype == np.float64 else torch.float32
        self.dims = (p.B, p.D, p.H, p.V, p.T)
        self.params = {k: torch.tensor(v, dtype=td, requires_grad=True) for k, v in p.w.items()}
        self.args = ([torch.tensor(p.X[t], dtype=td) for t in range(p.T)], [torch.from_numpy(p.Y[t].copy())
                     for t in range(p.T)], torch.tensor(p.c0, dtype=td), torch.tensor(p.h0, dtype=td))

    def run(self) -> float:
        torch, F = self.torch, self.F
        B, D, H, V, T = self.dims
        P = self.params
        for prm in P.values():
            prm.grad = None
        W_ih, b_ih, W_hh, b_hh, W_o, b_o = (P[k] for k in ("W_ih", "b_ih", "W_hh", "b_hh", "W_o", "b_o"))
        xs, ys, c, h = self.args
        loss = None
        for t in range(T):
            preact = torch.addmm(b_ih, xs[t], W_ih.t()) + torch.addmm(b_hh, h, W_hh.t())
            gates = torch.sigmoid(preact[:, :3 * H])
            g = torch.tanh(preact[:, 3 * H:])
            c = gates[:, H:2 * H] * c + gates[:, :H] * g
            h = gates[:, 2 * H:] * torch.tanh(c)
            lt = F.nll_loss(torch.log_softmax(torch.addmm(b_o, h, W_o.t()), dim=1), ys[t])
            loss = lt if loss is None else loss + lt
        loss.backward()
        return loss.item()

    def grads(self) -> dict:
        return {k: v.grad.numpy() for k, v in self.params.items()}


class TorchLSTM:
    label = "torch nn.LSTM"

    def __init__(self, p: Problem, dtype):
        torch = _torch()
        self.torch, self.F = torch, torch.nn.functional
        td = torch.float64 if dtype == np.float64 else torch.float32
        self.dims = (p.B, p.D, p.H, p.V, p.T)
        self.perm = perm = _perm(p.H)
        self.lstm = torch.nn.LSTM(p.D, p.H).to(td)
        with torch.no_grad():
            for name, k in (("weight_ih_l0", "W_ih"), ("bias_ih_l0", "b_ih"), ("weight_hh_l0", "W_hh"),
                            ("bias_hh_l0", "b_hh")):
                getattr(self.lstm, name).copy_(torch.from_numpy(p.w[k][perm]))
        self.W_o = torch.tensor(p.w["W_o"], dtype=td, requires_grad=True)
        self.b_o = torch.tensor(p.w["b_o"], dtype=td, requires_grad=True)
        self.params = [*self.lstm.parameters(), self.W_o, self.b_o]
        self.args = (torch.tensor(p.X, dtype=td), torch.from_numpy(p.Y.reshape(-1).copy()),
                     torch.tensor(p.c0, dtype=td)[None], torch.tensor(p.h0, dtype=td)[None])

    def run(self) -> float:
        torch, F = self.torch, self.F
        B, D, H, V, T = self.dims
        for prm in self.params:
            prm.grad = None
        X, Y, c0, h0 = self.args
        out, _ = self.lstm(X, (h0, c0))
        logp = torch.log_softmax(torch.addmm(self.b_o, out.reshape(T * B, H), self.W_o.t()), dim=1)
        loss = F.nll_loss(logp, Y, reduction="sum") / B              # = sum over steps of the batch means
        loss.backward()
        return loss.item()

    def grads(self) -> dict:
        L, perm = self.lstm, self.perm
        return {"W_ih": L.weight_ih_l0.grad.numpy()[perm], "b_ih": L.bias_ih_l0.grad.numpy()[perm],
                "W_hh": L.weight_hh_l0.grad.numpy()[perm], "b_hh": L.bias_hh_l0.grad.numpy()[perm],
                "W_o": self.W_o.grad.numpy(), "b_o": self.b_o.grad.numpy()}


class JaxScan:
    """JAX: jit(value_and_grad) of the loss over lax.scan of the cell (run only where jax is installed)."""
    label = "JAX jit(scan)"

    def __init__(self, p: Problem, dtype):
        import jax
        import jax.numpy as jnp
        if dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        H = p.H

        def loss_fn(w, X, Y, c0, h0):
            def cell(carry, xy):
                c, h = carry
                x, y = xy
                z = x @ w["W_ih"].T + w["b_ih"] + h @ w["W_hh"].T + w["b_hh"]
                i, f, o = (jax.nn.sigmoid(z[:, k * H:(k + 1) * H]) for k in range(3))
                c = f * c + i * jnp.tanh(z[:, 3 * H:])
                h = o * jnp.tanh(c)
                logp = jax.nn.log_softmax(h @ w["W_o"].T + w["b_o"])
                return (c, h), -jnp.take_along_axis(logp, y[:, None], axis=1).mean()
            _, losses = jax.lax.scan(cell, (c0, h0), (X, Y))
            return losses.sum()

        self.f = jax.jit(jax.value_and_grad(loss_fn))
        self.w = {k: jnp.asarray(v, dtype) for k, v in p.w.items()}
        self.args = (jnp.asarray(p.X, dtype), jnp.asarray(p.Y), jnp.asarray(p.c0, dtype), jnp.asarray(p.h0, dtype))
        self.g = None

    def run(self) -> float:
        loss, self.g = self.f(self.w, *self.args)
        return float(loss)                          # waits for the result

    def grads(self) -> dict:
        return {k: np.asarray(v) for k, v in self.g.items()}


def _importable(name) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


CONTENDERS = tuple([Numpy, GemmOnly, Graphnet] + ([GraphnetNumba] if _importable("numba") else [])
                   + [TorchEager, TorchLSTM] + ([JaxScan] if _importable("jax") else []))


# --- checking and timing -----------------------------------------------------------------------------------
def check(p: Problem) -> tuple[float, float]:
    """All four in float64 agree with the hand-tuned step: (max loss rel err, max gradient rel err)."""
    runs = {}
    for C in CONTENDERS:
        if C is GemmOnly:
            continue
        c = C(p, np.float64)
        runs[C.label] = (c.run(), {k: np.array(v) for k, v in c.grads().items()})
    ref_loss, ref_g = runs[Numpy.label]
    worst_loss = worst_grad = 0.0
    for label, (loss, g) in runs.items():
        el = rel_err(loss, ref_loss)
        eg = max(rel_err(g[k], ref_g[k]) for k in ref_g)
        if el > TOL or eg > TOL:
            raise SystemExit(f"MISMATCH {label} vs numpy at {p.B, p.D, p.H, p.V, p.T}: loss rel err {el:.2e}, "
                             f"grad rel err {eg:.2e} " + str({k: f"{rel_err(g[k], ref_g[k]):.1e}" for k in ref_g}))
        worst_loss, worst_grad = max(worst_loss, el), max(worst_grad, eg)
    return worst_loss, worst_grad


def bench(p: Problem, dtype, max_reps: int, budget_s: float, warmup: int) -> dict:
    cs = {C.label: C(p, dtype) for C in CONTENDERS}
    times = time_alternating({k: c.run for k, c in cs.items()}, max_reps=max_reps, budget_s=budget_s,
                             warmup=warmup)
    g = cs[Graphnet.label]
    return {"ms": {k: median_ms(v) for k, v in times.items()}, "reps": len(times[Numpy.label]),
            "min_ms": {k: 1e3 * min(v) for k, v in times.items()},
            "first_call_ms": 1e3 * g.first_call_s, "build_ms": 1e3 * g.build_s, "stats": g.stats(),
            "graphnet": g}


# --- what graphnet's plan does per time step ---------------------------------------------------------------
# numpy calls made inside the ops that have no inline code (read from graphnet/ops/nnet.py, leaf.py)
OPAQUE_CALLS = {"LogSoftmax": 6, "LogSoftmaxGrad": 4, "Pick": 5, "PickGrad": 3, "Const": 0}
NUMPY_CALLS = {"forward per time step": 8, "backward per time step": 7, "GEMMs per time step": 2,
               "per training step": 31}


def _category(stmt, env) -> tuple[str, int]:
    """What one line of the generated step does, and how many numpy calls it makes."""
    if isinstance(stmt, ast.AugAssign) or (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Subscript)):
        return "gradient copy-out", 1
    calls, kinds = 0, set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.BinOp):
            calls += 1
            kinds.add("GEMM" if isinstance(node.op, ast.MatMult) else "elementwise")
        elif isinstance(node, ast.UnaryOp) and not isinstance(node.operand, ast.Constant):
            calls += 1
            kinds.add("elementwise")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f, owner = node.func.attr, node.func.value
            if f == "forward" and isinstance(owner, ast.Name):
                name = type(env.get(owner.id)).__name__
                calls += OPAQUE_CALLS.get(name, 1)
                kinds.add(f"op {name}")
            elif isinstance(owner, ast.Name) and owner.id == "np":
                calls += 1
                kinds.add("concatenate" if f == "concatenate" else "elementwise")
            else:
                calls += 1
                kinds.add(f"reduction .{f}")
    if not kinds:
        value = stmt.value if isinstance(stmt, ast.Assign) else None
        kinds.add("slice (view)" if isinstance(value, ast.Subscript) else "parameter read" if
                  isinstance(value, ast.Attribute) else "other")
    order = ("GEMM", "concatenate")
    kind = next((k for k in order if k in kinds), None) or next((k for k in sorted(kinds) if k.startswith("op ")),
                                                               None) or sorted(kinds)[0]
    return kind, calls


def profile_plan(g: Graphnet, T: int, rounds: int = 30) -> str:
    """Time every line of graphnet's generated step() (instrumented copy, timer cost subtracted), by kind."""
    try:
        exe = g.step._last[0]                   # the executable for this signature (graphnet internals)
        env, code = exe._step.__globals__, exe.code
    except Exception as e:                      # the plan's internals changed: nothing to profile
        return f"(no profile: {type(e).__name__}: {e})"
    tree = ast.parse(code)
    fn = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "step")
    body = fn.body
    fn.body = []
    for i, stmt in enumerate(body):
        fn.body += ast.parse("_t0 = _pc()").body + [stmt] + ast.parse(f"_acc[{i}] += _pc() - _t0").body
    tree.body = [fn]
    acc = [0.0] * len(body)
    ns = dict(env, _pc=time.perf_counter, _acc=acc)
    exec(compile(ast.fix_missing_locations(tree), "<graphnet step, instrumented>", "exec"), ns)
    empty = [0.0]
    exec("def _empty(_acc):\n    _t0 = _pc()\n    _acc[0] += _pc() - _t0\n", ns)
    for _ in range(3):
        ns["step"](*g.args)
    samples = np.empty((rounds, len(body)))
    for r in range(rounds):                     # per line: the median over rounds, robust to a noisy machine
        acc[:] = [0.0] * len(body)
        ns["step"](*g.args)
        samples[r] = acc
    for _ in range(1000):
        ns["_empty"](empty)
    overhead = empty[0] / 1000
    per = collections.defaultdict(lambda: [0, 0, 0.0])
    for stmt, t in zip(body, np.median(samples, axis=0)):
        kind, calls = _category(stmt, env)
        row = per[kind]
        row[0] += 1
        row[1] += calls
        row[2] += max(t - overhead, 0.0)
    total = sum(r[2] for r in per.values())
    outer, inner = [], []                       # what step() adds around the plan: input checks, signature lookup
    for _ in range(max(rounds, 20)):
        t0 = time.perf_counter()
        g.step(*g.args)
        t1 = time.perf_counter()
        exe._step(*g.args)
        outer.append(t1 - t0)
        inner.append(time.perf_counter() - t1)
    outer_s = min(outer) - min(inner)
    rows = [[k, f"{r[0] / T:.1f}", f"{r[1] / T:.1f}", f"{1e6 * r[2] / T:.1f}", f"{100 * r[2] / total:.0f}%"]
            for k, r in sorted(per.items(), key=lambda kv: -kv[1][2])]
    n_lines, n_calls = sum(r[0] for r in per.values()), sum(r[1] for r in per.values())
    rows.append(["total", f"{n_lines / T:.1f}", f"{n_calls / T:.1f}", f"{1e6 * total / T:.1f}", "100%"])
    hand = (NUMPY_CALLS["forward per time step"] + NUMPY_CALLS["backward per time step"]
            + NUMPY_CALLS["per training step"] / T)
    return (markdown_table(["graphnet step(): kind of line", "lines / time step", "numpy calls / time step",
                            "us / time step", "share"], rows)
            + f"\n\n{n_calls} numpy calls in all ({n_calls / T:.1f} per time step; {1e6 * total / max(n_calls, 1):.2f}"
            f" us each on average). Hand-tuned numpy: {NUMPY_CALLS['forward per time step']} forward + "
            f"{NUMPY_CALLS['backward per time step']} backward calls per time step "
            f"({NUMPY_CALLS['GEMMs per time step']} of them GEMMs) + {NUMPY_CALLS['per training step']} per training"
            f" step = {hand:.1f} per time step, no temporaries. Timer cost {1e9 * overhead:.0f} ns/line subtracted."
            f"\n\nstep() around the plan (input checks of {len(g.args)} arrays, signature lookup): "
            f"{1e6 * outer_s:.0f} us per call (best of {len(outer)}); the plan itself, uninstrumented: "
            f"{1e3 * min(inner):.3f} ms (best).")


# --- main --------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"comma list of {', '.join(SIZES)}")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--reps", type=int, default=200, help="at most this many timed rounds (adaptive: see --budget)")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing for the slowest contender")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 rounds, a short budget")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/torch threads (read before import)")
    ap.add_argument("--no-check", action="store_true", help="skip the float64 agreement check")
    ap.add_argument("--analyze", action="store_true",
                    help="profile graphnet's plan line by line: numpy calls and time per time step, by kind")
    ap.add_argument("--write-readme", action="store_true", help="rewrite README's bench:lstm block")
    a = ap.parse_args(argv)
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    dtypes = [d.strip() for d in a.dtypes.split(",") if d.strip()]
    for s in sizes:
        if s not in SIZES:
            ap.error(f"unknown size {s!r}; choose from {', '.join(SIZES)}")
    for d in dtypes:
        if d not in DTYPES:
            ap.error(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    max_reps, budget, warmup = (3, 0.2, 1) if a.quick else (a.reps, a.budget, 2)

    t_all = time.perf_counter()
    rows, crows, checks, notes = [], [], [], []
    for s in sizes:
        B, D, H, V, T = SIZES[s]
        p = Problem(B, D, H, V, T)
        if not a.no_check:
            el, eg = check(p)
            checks.append(f"{s}: loss {el:.1e}, gradients {eg:.1e}")
            print(f"[check] {s} float64: all four agree (max rel err: loss {el:.1e}, weight grads {eg:.1e})",
                  flush=True)
        for d in dtypes:
            r = bench(p, DTYPES[d], max_reps, budget, warmup)
            ms = r["ms"]
            g = ms[Graphnet.label]
            gnb = ms.get(GraphnetNumba.label)
            best = gnb if gnb is not None else g
            opt = lambda k: fmt_ms(ms[k]) if k in ms else "-"                                 # noqa: E731
            ratio = lambda k: f"{best / ms[k]:.2f}" if k in ms else "-"                         # noqa: E731
            rows.append([s, f"{B},{D},{H},{V},{T}", d, fmt_ms(ms[Numpy.label]), fmt_ms(ms[GemmOnly.label]),
                         fmt_ms(g), opt(GraphnetNumba.label), fmt_ms(ms[TorchEager.label]),
                         fmt_ms(ms[TorchLSTM.label]), opt(JaxScan.label), ratio(GemmOnly.label),
                         ratio(Numpy.label), ratio(TorchLSTM.label), ratio(JaxScan.label), r["reps"]])
            st = r["stats"]
            nodes = (f"{st['nodes_lowered']} -> {st['nodes']}" if "nodes_lowered" in st and "nodes" in st
                     else str(st.get("nodes", "?")))
            cs = st.get("compile_seconds")
            crows.append([s, d, f"{r['build_ms']:.0f}", f"{r['first_call_ms']:.0f}",
                          f"{1e3 * cs:.0f}" if cs is not None else "?", nodes])
            print(f"[time] {s} {d}: " + ", ".join(f"{k} {fmt_ms(v)} ms" for k, v in ms.items())
                  + f" ({r['reps']} rounds)", flush=True)
            if a.analyze:
                notes.append(f"#### {s} {d}\n\n" + profile_plan(r["graphnet"], T))
            del r
    table = markdown_table(["size", "B,D,H,V,T", "dtype", "numpy ms", "GEMM-only ms", "graphnet ms",
                            "graphnet[numba] ms", "torch eager ms", "nn.LSTM ms", "JAX ms", "[numba]/GEMM-only",
                            "[numba]/numpy", "[numba]/nn.LSTM", "[numba]/JAX", "rounds"], rows)
    ctable = markdown_table(["size", "dtype", "graph build ms", "first step() ms (lower+passes+emit+run)",
                             "compile_seconds ms (stats)", "nodes lowered -> after passes"], crows)
    text = ("One LSTM training step (T steps of the nngraph cell, Linear+LogSoftMax+ClassNLL at every step, "
            "losses summed, backward to every weight), median ms per step; contenders alternate in one process. "
            "numpy = hand-tuned numpy (one GEMM per time step, preallocated buffers); torch eager = the same "
            "primitives in PyTorch with autograd; nn.LSTM = torch.nn.LSTM + the same head batched over time; "
            "GEMM-only = the hand-tuned step's GEMMs alone (the limit of this step on this BLAS); graphnet[numba] = "
            "`backend=\"numba\"` (fused elementwise kernels); JAX = jit(value_and_grad) over lax.scan, where jax is "
            "installed (else -). Ratios divide graphnet[numba]'s median by the other's: below 1, graphnet[numba] is "
            f"faster. Medians of alternating rounds on a shared machine: expect noise of several percent.\n\n"
            f"{table}\n\n"
            f"graphnet's plan (`gn.compile_train_step`):\n\n{ctable}\n\n")
    if checks:
        text += f"float64 agreement with the hand-tuned step (max relative error): {'; '.join(checks)}.\n\n"
    _torch()
    text += (f"Machine: {machine_line()}, BLAS/OpenMP threads {THREADS}, the process pinned to {THREADS} "
             f"core(s) (XLA sizes its thread pool to the cores it may use). `python benchmarks/lstm.py` "
             f"({time.perf_counter() - t_all:.0f} s).\n")
    print()
    print(text)
    if notes:
        print("\n\n".join(notes))
    if a.write_readme:
        if write_readme_block("lstm", text):
            print("README.md: bench:lstm block rewritten")
        else:
            print("README.md has no <!-- bench:lstm:start --> / <!-- bench:lstm:end --> markers; nothing written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

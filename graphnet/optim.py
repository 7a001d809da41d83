"""Optimizers, gradient clipping and learning-rate schedules with torch.optim's update rules and defaults.

Every optimizer flattens its parameters once (``flatten_parameters``): each ``Parameter.data``/``.grad`` is a
view into one flat weight vector and one flat gradient vector, so a step is a few in-place numpy calls on
whole vectors, and every state buffer is flat too. ``state_dict()`` is a plain dict of Python scalars and flat
numpy arrays (JSON for the scalars, npz for the arrays; never pickle).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import FormatError, GraphError
from .module import Parameter, flatten_parameters

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm", "clip_grad_value",
           "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR"]


def _param_list(params, who: str) -> list:
    """The parameters as a list (one Parameter allowed, as in torch), each checked to be a Parameter."""
    params = [params] if isinstance(params, Parameter) else list(params)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise GraphError(f"{who}: item {i} of params is a {type(p).__name__}, not a gn.Parameter; "
                             f"pass model.parameters()")
    return params


def _lerp_(a, b, weight: float, tmp) -> None:
    """a <- a + weight·(b − a), in torch's two-sided form (from the nearer end) so results match bit for bit."""
    np.subtract(b, a, out=tmp)
    if abs(weight) < 0.5:
        tmp *= weight
        a += tmp
    else:
        tmp *= 1 - weight
        np.subtract(b, tmp, out=a)


class Optimizer:
    """Base class: the flat buffers, ``zero_grad``, ``state_dict``; subclasses define ``_update``.

    ``lr`` (like every hyperparameter) is a plain attribute: set it to change the rate (schedulers do).
    """
    _hyper: tuple = ("lr",)       # hyperparameters saved by state_dict (subclasses extend)

    def __init__(self, params, **hyper):
        name = type(self).__name__
        params = _param_list(params, name)
        if not params:
            raise GraphError(f"{name} got an empty parameter list")
        if len({id(p) for p in params}) != len(params):
            # torch only warns; here one parameter would own two stretches of the flat vector
            raise GraphError(f"{name}: a parameter appears more than once in params")
        self.params = params
        for k, v in hyper.items():
            setattr(self, k, v)
        self._check()
        self.step_count = 0
        self._w, self._g = flatten_parameters(params)
        self._d, self._t = np.empty_like(self._w), np.empty_like(self._w)   # scratch: direction, temporary
        self.state = {k: self._new_buffer(k) for k in self._state_names()}

    # --- what subclasses define ----------------------------------------------------------------------------
    def _check(self) -> None:
        """Raise GraphError on a hyperparameter torch would reject."""

    def _state_names(self) -> list:
        """Names of the flat state buffers this configuration uses."""
        return []

    def _new_buffer(self, name: str):
        return np.zeros_like(self._w)

    def _update(self) -> None:
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------------------------
    def _nonneg(self, **values) -> None:
        for k, v in values.items():
            if not isinstance(v, numbers.Real) or not 0 <= v:    # `not 0 <= v` also rejects NaN
                raise GraphError(f"{type(self).__name__}: invalid {k} {v!r}; it must be a number >= 0")

    def _sync(self) -> None:
        """Re-flatten if a parameter no longer views the flat buffers (e.g. model.float64() made new arrays)."""
        w, g = self._w, self._g
        if all(p.data.base is w and p.grad.base is g for p in self.params):
            return
        self._w, self._g = flatten_parameters(self.params)
        self._d, self._t = np.empty_like(self._w), np.empty_like(self._w)
        self.state = {k: v.astype(self._w.dtype, copy=False) for k, v in self.state.items()}

    def _direction(self, weight_decay: float, maximize: bool):
        """d = ±g + weight_decay·w, in scratch so that the parameters' .grad stay untouched (as in torch)."""
        if weight_decay == 0 and not maximize:
            return self._g
        d = self._d
        if weight_decay == 0:
            return np.negative(self._g, out=d)
        np.multiply(self._w, weight_decay, out=d)
        if maximize:
            d -= self._g
        else:
            d += self._g
        return d

    def zero_grad(self) -> None:
        """g = 0 (in place: the parameters' .grad arrays stay the same objects)."""
        self._sync()
        self._g[...] = 0

    def step(self, closure=None):
        """One update of every parameter; ``closure`` (optional) recomputes and returns the loss first."""
        loss = closure() if closure is not None else None
        self._sync()
        self._update()
        self.step_count += 1
        return loss

    def state_dict(self) -> dict:
        """{'type', 'step', hyperparameters (Python scalars / lists), state buffers (flat numpy arrays)}."""
        out = {"type": type(self).__name__, "step": self.step_count}
        for k in self._hyper:
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else v
        out.update({k: v.copy() for k, v in self.state.items()})
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore hyperparameters, step count and state buffers saved by ``state_dict`` (same parameters).

        Scalars may come back as 0-d arrays and lists as 1-d arrays (a dict saved whole with np.savez).
        """
        name = type(self).__name__
        state = {k: v.tolist() if isinstance(v, np.ndarray) and (v.ndim == 0 or k in self._hyper) else v
                 for k, v in state.items()}
        if state.get("type") != name:
            raise FormatError(f"{name}.load_state_dict: the state is for {state.get('type')!r}, not {name}")
        missing = [k for k in ("step", *self._hyper) if k not in state]
        if missing:
            raise FormatError(f"{name}.load_state_dict: the state lacks {', '.join(missing)}")
        saved = {k: getattr(self, k) for k in self._hyper}
        try:
            for k in self._hyper:
                setattr(self, k, tuple(state[k]) if isinstance(saved[k], tuple) else state[k])
            self._check()
            names = self._state_names()
            self._check_arrays(state, names)
        except GraphError as e:
            for k, v in saved.items():
                setattr(self, k, v)
            raise FormatError(f"{name}.load_state_dict: {e}") from None
        self._sync()
        self.state = {k: np.array(state[k], dtype=self._w.dtype).reshape(-1) for k in names}
        self.step_count = int(state["step"])

    def _check_arrays(self, state: dict, names: list) -> None:
        arrays = {k for k, v in state.items() if isinstance(v, np.ndarray)}
        if arrays != set(names):
            raise GraphError(f"the state has buffers {sorted(arrays)}, this configuration uses {sorted(names)}")
        n = self._w.size
        for k in names:
            if state[k].size != n:
                raise GraphError(f"buffer {k!r} has {state[k].size} values, the parameters have {n}")


class SGD(Optimizer):
    """b = μ·b + (1−τ)·d (b = d at first); d = b, or d + μ·b with nesterov; w -= lr·d, d = ±g + λ·w."""
    _hyper = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize)

    def _check(self):
        self._nonneg(lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise GraphError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening")

    def _state_names(self):
        return ["momentum_buffer"] if self.momentum != 0 else []

    def _update(self):
        d, t = self._direction(self.weight_decay, self.maximize), self._t
        if self.momentum != 0:
            buf = self.state["momentum_buffer"]
            if self.step_count == 0:
                np.copyto(buf, d)
            else:
                buf *= self.momentum
                np.multiply(d, 1 - self.dampening, out=t)
                buf += t
            if self.nesterov:
                np.multiply(buf, self.momentum, out=t)
                d = np.add(d, t, out=t)
            else:
                d = buf
        np.multiply(d, -self.lr, out=t)
        self._w += t


class Adam(Optimizer):
    """m = β1·m + (1−β1)·d; v = β2·v + (1−β2)·d²; w -= lr/(1−β1ᵗ) · m / (√v̂/√(1−β2ᵗ) + ε), d = ±g + λ·w."""
    _hyper = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")
    _decoupled = False        # AdamW: decay the weights directly, w *= 1 − lr·λ, instead of adding λ·w to g

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)

    def _check(self):
        self._nonneg(lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)
        if len(self.betas) != 2:
            raise GraphError(f"{type(self).__name__}: betas must be a pair (beta1, beta2), got {self.betas!r}")
        for i, b in enumerate(self.betas):
            if not isinstance(b, numbers.Real) or not 0.0 <= b < 1.0:
                raise GraphError(f"{type(self).__name__}: invalid beta parameter at index {i}: {b!r}; "
                                 f"it must be in [0, 1)")

    def _state_names(self):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if self.amsgrad else [])

    def _update(self):
        (b1, b2), lr, wd, t = self.betas, self.lr, self.weight_decay, self._t
        d = self._direction(0 if self._decoupled else wd, self.maximize)
        if self._decoupled and wd != 0:
            self._w *= 1 - lr * wd
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        _lerp_(m, d, 1 - b1, t)
        v *= b2
        np.multiply(d, d, out=t)
        t *= 1 - b2
        v += t
        step = self.step_count + 1
        step_size = lr / (1 - b1 ** step)
        if self.amsgrad:
            v = np.maximum(self.state["max_exp_avg_sq"], v, out=self.state["max_exp_avg_sq"])
        np.sqrt(v, out=t)
        t /= (1 - b2 ** step) ** 0.5
        t += self.eps
        np.divide(m, t, out=t)
        t *= -step_size
        self._w += t


class AdamW(Adam):
    """Adam with decoupled weight decay: w *= 1 − lr·λ before the Adam step on g alone."""
    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


class RMSprop(Optimizer):
    """v = α·v + (1−α)·d²; a = √(v − ḡ²) (centered, ḡ = mean of d) or √v; b = μ·b + d/(a+ε); w -= lr·b."""
    _hyper = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                         centered=centered, maximize=maximize)

    def _check(self):
        self._nonneg(lr=self.lr, eps=self.eps, momentum=self.momentum, weight_decay=self.weight_decay,
                     alpha=self.alpha)

    def _state_names(self):
        return (["square_avg"] + (["momentum_buffer"] if self.momentum > 0 else [])
                + (["grad_avg"] if self.centered else []))

    def _update(self):
        d, t, alpha = self._direction(self.weight_decay, self.maximize), self._t, self.alpha
        sq = self.state["square_avg"]
        sq *= alpha
        np.multiply(d, d, out=t)
        t *= 1 - alpha
        sq += t
        if self.centered:
            ga = self.state["grad_avg"]
            _lerp_(ga, d, 1 - alpha, t)
            np.multiply(ga, ga, out=t)
            np.subtract(sq, t, out=t)
            np.sqrt(t, out=t)
        else:
            np.sqrt(sq, out=t)
        t += self.eps
        np.divide(d, t, out=t)
        if self.momentum > 0:
            buf = self.state["momentum_buffer"]
            buf *= self.momentum
            buf += t
            np.multiply(buf, -self.lr, out=t)
        else:
            t *= -self.lr
        self._w += t


class Adagrad(Optimizer):
    """s += d²; w -= lr/(1 + (t−1)·decay) · d / (√s + ε), d = ±g + λ·w."""
    _hyper = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize")

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *, maximize: bool = False):
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)

    def _check(self):
        self._nonneg(lr=self.lr, lr_decay=self.lr_decay, weight_decay=self.weight_decay,
                     initial_accumulator_value=self.initial_accumulator_value, eps=self.eps)

    def _state_names(self):
        return ["sum"]

    def _new_buffer(self, name):
        return np.full_like(self._w, self.initial_accumulator_value)

    def _update(self):
        d, t = self._direction(self.weight_decay, self.maximize), self._t
        clr = self.lr / (1 + self.step_count * self.lr_decay)      # step_count = t − 1 before this step
        s = self.state["sum"]
        np.multiply(d, d, out=t)
        s += t
        np.sqrt(s, out=t)
        t += self.eps
        np.divide(d, t, out=t)
        t *= -clr
        self._w += t


# --- gradient clipping -------------------------------------------------------------------------------------

def clip_grad_norm(params, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """g *= min(1, max_norm / (‖(‖g_1‖, …, ‖g_n‖)‖ + 1e-6)), in place; returns the total norm (torch semantics)."""
    grads = [p.grad for p in _param_list(params, "clip_grad_norm") if p.grad.size]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return 0.0
    # the norm of the per-parameter norms, as torch computes it (equal to the norm of all values at once)
    norms = np.array([np.linalg.norm(g.ravel(), norm_type) for g in grads])
    total = float(np.linalg.norm(norms, norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise GraphError(f"clip_grad_norm: the total norm of order {norm_type} of the gradients is {total}, "
                         f"so it cannot be clipped; pass error_if_nonfinite=False to scale by it anyway")
    coef = float(np.minimum(max_norm / (total + 1e-6), 1.0))   # np.minimum keeps a NaN, like torch.clamp
    with np.errstate(invalid="ignore"):     # inf·0 = NaN for a non-finite norm, as in torch
        for g in grads:
            g *= coef      # always, like torch: no data-dependent branch
    return total


def clip_grad_value(params, clip_value: float) -> None:
    """g = clip(g, −c, c), in place."""
    c = float(clip_value)
    for p in _param_list(params, "clip_grad_value"):
        np.clip(p.grad, -c, c, out=p.grad)


# --- learning-rate schedules -------------------------------------------------------------------------------

class LRScheduler:
    """Sets ``optimizer.lr`` once per ``step()`` (call it after ``optimizer.step()``), as torch's schedulers do.

    Like torch, the rules are recursive (each new lr is computed from the optimizer's current lr), so an lr
    changed by hand carries on; construction counts as epoch 0 and leaves the lr as it is.
    """
    _hyper: tuple = ()

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise GraphError(f"{type(self).__name__} needs a graphnet Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if getattr(optimizer, "initial_lr", None) is None:     # torch's group.setdefault("initial_lr", lr)
            optimizer.initial_lr = optimizer.lr
        self.base_lr = optimizer.initial_lr
        self.last_epoch = -1
        self.step()

    def _lr(self, lr: float) -> float:
        """The next lr from the current one, at epoch ``last_epoch`` (already advanced)."""
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        if self.last_epoch > 0:
            self.optimizer.lr = self._lr(self.optimizer.lr)
        self._last_lr = self.optimizer.lr

    def get_last_lr(self) -> list:
        """[the lr set by the last step] (a list, one entry per parameter group, as in torch)."""
        return [self._last_lr]

    def state_dict(self) -> dict:
        out = {"type": type(self).__name__, "last_epoch": self.last_epoch, "base_lr": self.base_lr,
               "last_lr": self._last_lr}
        out.update({k: getattr(self, k) for k in self._hyper})
        return out

    def load_state_dict(self, state: dict) -> None:
        name = type(self).__name__
        if state.get("type") != name:
            raise FormatError(f"{name}.load_state_dict: the state is for {state.get('type')!r}, not {name}")
        missing = [k for k in ("last_epoch", "base_lr", "last_lr", *self._hyper) if k not in state]
        if missing:
            raise FormatError(f"{name}.load_state_dict: the state lacks {', '.join(missing)}")
        for k in self._hyper:
            setattr(self, k, state[k])
        self.last_epoch, self.base_lr, self._last_lr = int(state["last_epoch"]), state["base_lr"], state["last_lr"]


def _positive_int(who: str, name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise GraphError(f"{who}: {name} must be a positive integer, got {v!r}")
    return int(v)


class StepLR(LRScheduler):
    """lr = base_lr · γ^⌊epoch / step_size⌋."""
    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = _positive_int("StepLR", "step_size", step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def _lr(self, lr):
        return lr * self.gamma if self.last_epoch % self.step_size == 0 else lr


class ExponentialLR(LRScheduler):
    """lr = base_lr · γ^epoch."""
    _hyper = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float):
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def _lr(self, lr):
        return lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """lr = η_min + (base_lr − η_min)·(1 + cos(π·epoch/T_max))/2, continuing periodically past T_max."""
    _hyper = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = _positive_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer)

    def _lr(self, lr):
        # torch's recursive form, branch for branch, so the trajectory is the same to the last bit
        e, T, lo = self.last_epoch, self.T_max, self.eta_min
        if (e - 1 - T) % (2 * T) == 0:      # leaving a minimum, where the ratio below would be 0/0
            return lr + (self.base_lr - lo) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - lo) + lo

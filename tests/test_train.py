"""The Learner (fit, history, evaluation mode, progress, plot_history) and the examples' main() on reduced sizes."""
import importlib.util
import io
import os
import sys
import types

import numpy as np
import pytest

import graphnet as gn
from graphnet import nn
from graphnet.data import DataLoader, TensorDataset
from graphnet.nn.containers import Sequential
from graphnet.nn.norm import BatchNormalization
from graphnet.optim import SGD, Adam
from graphnet.train import Learner

from conftest import require_torch

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _blobs(rng, n=120):
    """Three well separated Gaussian blobs in 2-d, integer labels."""
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    t = rng.integers(0, 3, n)
    return (centres[t] + rng.standard_normal((n, 2))).astype(np.float32), t


def _learner(lr=0.1, bn=False, **kw):
    gn.manual_seed(0)
    layers = [nn.Linear(2, 16)] + ([BatchNormalization(16)] if bn else []) + [nn.ReLU(), nn.Linear(16, 3)]
    model = Sequential(*layers)
    return Learner(model, nn.CrossEntropyCriterion(), SGD(model.parameters(), lr=lr, momentum=0.9), **kw)


def test_fit_lowers_the_loss_and_fills_the_history(rng):
    x, t = _blobs(rng)
    learner = _learner(batch_size=16, progress=False)
    history = learner.fit((x, t), epochs=5, valid=(x[:40], t[:40]))
    assert history is learner.history
    assert set(history) == {"train_loss", "train_acc", "valid_loss", "valid_acc", "seconds"}
    assert all(len(v) == 5 for v in history.values())
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["valid_acc"][-1] > 0.9
    res = learner.evaluate((x, t))
    assert set(res) == {"loss", "acc"} and res["acc"] > 0.9
    pred = learner.predict(x)
    assert pred.shape == (len(x), 3)
    assert np.mean(pred.argmax(1) == t) == pytest.approx(res["acc"])


def test_fit_with_a_dataloader_and_batchnorm_restores_training_mode(rng):
    x, t = _blobs(rng)
    learner = _learner(bn=True, progress=False)
    train = DataLoader(TensorDataset(x, t), batch_size=32, shuffle=True)
    valid = DataLoader(TensorDataset(x[:50], t[:50]), batch_size=25)
    bn = learner.model[1]
    history = learner.fit(train, epochs=3, valid=valid)
    assert len(history["valid_acc"]) == 3
    assert bn.num_batches_tracked == 3 * len(train)        # validation batches do not update the statistics
    assert all(m.train for m in learner.model.modules())
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_regression_targets_record_no_accuracy_and_one_hot_targets_do(rng):
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    gn.manual_seed(1)
    model = nn.Linear(3, 1)
    history = Learner(model, nn.MSECriterion(), SGD(model.parameters(), lr=0.1), progress=False).fit((x, y), 20)
    assert set(history) == {"train_loss", "seconds"}
    assert history["train_loss"][-1] < 0.01 * history["train_loss"][0]
    xb, tb = _blobs(rng)
    one_hot = np.eye(3, dtype=np.float32)[tb]
    gn.manual_seed(2)
    model = Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3))
    history = Learner(model, nn.MSECriterion(), Adam(model.parameters(), lr=0.05),
                      progress=False).fit((xb, one_hot), 10)
    assert history["train_acc"][-1] > 0.9


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_epoch_lines_without_tqdm(rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)          # as if tqdm were not installed: no bar, the lines
    x, t = _blobs(rng, 40)
    out = _Tty()
    _learner(batch_size=10, file=out).fit((x, t), 2, valid=(x, t))
    text = out.getvalue()
    assert "\r" not in text and text.count("\n") == 2
    assert text.startswith("epoch 1/2  train_loss") and "epoch 2/2  train_loss" in text and "valid_acc" in text
    quiet = io.StringIO()
    _learner(batch_size=10, file=quiet, progress=False).fit((x, t), 1)
    assert quiet.getvalue() == ""


class _FakeTqdm:
    """Records how the Learner drives tqdm: the iterable, its options, the postfix, close()."""
    made = []

    def __init__(self, iterable, **options):
        self.iterable, self.options, self.postfix, self.closed = iterable, options, [], False
        _FakeTqdm.made.append(self)

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **fields):
        self.postfix.append(fields)

    def close(self):
        self.closed = True


def test_tqdm_draws_the_bar_when_installed(rng, monkeypatch):
    _FakeTqdm.made = []
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeTqdm))
    x, t = _blobs(rng, 40)
    out = _Tty()
    history = _learner(batch_size=10, file=out).fit((x, t), 2, valid=(x, t))
    assert len(_FakeTqdm.made) == 2 and all(bar.closed for bar in _FakeTqdm.made)
    first = _FakeTqdm.made[0]
    assert first.options["total"] == 4 and first.options["desc"] == "epoch 1/2" and first.options["file"] is out
    assert len(first.postfix) == 4 and float(first.postfix[-1]["loss"]) == pytest.approx(history["train_loss"][0],
                                                                                          abs=1e-4)
    assert "epoch 2/2  train_loss" in out.getvalue()
    _FakeTqdm.made = []
    log = io.StringIO()                                        # not a terminal: the epoch lines only, no bar
    _learner(batch_size=10, file=log).fit((x, t), 2)
    assert _FakeTqdm.made == [] and "\r" not in log.getvalue() and log.getvalue().count("\n") == 2
    _learner(batch_size=10, file=io.StringIO(), progress=False).fit((x, t), 1)
    assert _FakeTqdm.made == []                                # progress=False: no bar at all


def test_plot_history_needs_matplotlib(rng, monkeypatch, tmp_path):
    x, t = _blobs(rng, 40)
    learner = _learner(progress=False)
    learner.fit((x, t), 1)
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # as if it were not installed
    with pytest.raises(gn.RenderError, match="pip install matplotlib"):
        learner.plot_history(tmp_path / "h.png")


def test_plot_history_draws_when_matplotlib_is_there(rng, tmp_path):
    pytest.importorskip("matplotlib")
    x, t = _blobs(rng, 40)
    learner = _learner(progress=False)
    learner.fit((x, t), 2, valid=(x, t))
    learner.plot_history(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0


def test_learner_errors(rng):
    model = nn.Linear(2, 3)
    with pytest.raises(gn.InputError, match="graphnet modules"):
        Learner(model, lambda y, t: 0, SGD(model.parameters()))
    learner = Learner(model, nn.CrossEntropyCriterion(), SGD(model.parameters()), progress=False)
    with pytest.raises(gn.InputError, match="as many rows"):
        learner.fit((np.zeros((4, 2), np.float32), np.zeros(3, np.int64)), 1)
    with pytest.raises(gn.InputError, match="iterable of batches"):
        learner.fit(5, 1)
    with pytest.raises(gn.InputError, match="call fit"):
        learner.plot_history("x.png")


# --- the examples ------------------------------------------------------------------------------------------

def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worch_circle_reaches_095_validation_accuracy(capsys):
    res = _example("worch_circle").main(compare_torch=False)     # the full problem: 1000 points, 100 epochs
    assert res["graphnet_acc"] >= 0.95
    assert "graphnet: validation accuracy" in capsys.readouterr().out


def test_worch_circle_side_by_side_with_torch(capsys):
    require_torch()
    res = _example("worch_circle").main(n=300, epochs=5)
    assert 0.0 <= res["torch_acc"] <= 1.0 and 0.0 <= res["graphnet_acc"] <= 1.0
    assert "PyTorch:  validation accuracy" in capsys.readouterr().out


def test_scorch_convnet_fits_its_batch():
    res = _example("scorch_convnet").main(steps=20)
    assert res["last_loss"] < 0.1 * res["first_loss"]


def test_regression_from_scratch():
    res = _example("regression_from_scratch").main(n=256, epochs=60)
    assert res["test_mse"] < 0.1


def test_digits_convnet_without_scikit_learn_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert _example("digits_convnet").main(epochs=1) is None
    assert "needs scikit-learn" in capsys.readouterr().out


def test_digits_convnet_trains_on_digit_like_data(monkeypatch):
    # a stand-in for sklearn.datasets.load_digits: 10 noisy 8x8 prototypes, values in [0, 16]
    rng = np.random.default_rng(0)
    protos = rng.uniform(0, 16, (10, 8, 8))
    target = rng.integers(0, 10, 400)
    images = np.clip(protos[target] + rng.normal(0, 3, (400, 8, 8)), 0, 16)
    datasets = types.ModuleType("sklearn.datasets")
    datasets.load_digits = lambda: types.SimpleNamespace(images=images, target=target)
    sklearn = types.ModuleType("sklearn")
    sklearn.datasets = datasets
    monkeypatch.setitem(sys.modules, "sklearn", sklearn)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", datasets)
    res = _example("digits_convnet").main(epochs=2)
    assert res["valid_acc"] > 0.8

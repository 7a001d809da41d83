"""examples/tour.ipynb runs from top to bottom in a fresh kernel (nbclient), so it cannot rot: its diagrams draw,
char-rnn learns something in a few hundred iterations, and the exported cell agrees with onnxruntime."""
import os
import pathlib
import re
import shutil

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("onnxruntime")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _text(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _kinds(cell):
    return {k for o in cell.outputs for k in o.get("data", {})}


def test_tour_notebook_runs(tmp_path, monkeypatch):
    nb = nbformat.read(ROOT / "examples" / "tour.ipynb", as_version=4)
    # the kernel runs in a scratch folder (what the notebook writes stays there) and imports this checkout
    path = [str(ROOT), str(ROOT / "examples" / "rnn_lstm"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    if shutil.which("dot"):                    # the graph, the backward graph and the plan draw inline
        drawn = [c for c in code if "image/svg+xml" in _kinds(c)]
        assert len(drawn) == 3
    assert "image/png" in _kinds(next(c for c in code if "train_step" in c.source))   # the live loss plot
    trained = re.search(r"validation loss (\d+\.\d+) nats/char \(unigram entropy (\d+\.\d+)\)",
                        "".join(_text(c) for c in code))
    assert trained and float(trained.group(1)) < float(trained.group(2)) - 0.2   # it learned beyond unigrams
    exported = re.search(r"largest difference: (\S+)", _text(code[-1]))
    assert exported and float(exported.group(1)) < 1e-4
    assert (tmp_path / "char_rnn_cell.onnx").exists()

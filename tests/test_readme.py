"""The README's Python examples run as written (in order, in one namespace, in a scratch folder)."""
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)
    assert os.path.getsize(tmp_path / "lstm.svg") > 0 and os.path.getsize(tmp_path / "lstm_bwd.svg") > 0

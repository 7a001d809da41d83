"""Regenerate the README's diagrams: the RNN, LSTM and GRU cells (forward graph, backward graph, compiled plan)
as PNG files in docs/images/.

    .venv/bin/python scripts/render_docs.py [--out docs/images] [--format png]

Small cells (input 3, hidden 2) keep the drawings readable; needs graphviz's ``dot``.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import graphnet as gn                         # noqa: E402
from graphnet.rnn import CELLS                # noqa: E402

INPUT, HIDDEN, BATCH = 3, 2, 1
# rankdir per drawing, chosen by looking at the results: the forward graphs read top to bottom, the backward
# graphs and plans are deeper than they are wide
RANKDIR = {"forward": "TB", "backward": "TB", "plan": "TB"}


def cell_inputs(kind: str, cell) -> list:
    """Zero arrays for the cell's inputs: x is (batch, INPUT), every state (batch, HIDDEN)."""
    return [np.zeros((BATCH, INPUT if i == 0 else HIDDEN)) for i in range(len(cell.inputs))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "images"))
    ap.add_argument("--format", default="png", choices=["png", "svg", "pdf", "dot"])
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    gn.manual_seed(0)
    for kind in ("rnn", "lstm", "gru"):
        cell = CELLS[kind](INPUT, HIDDEN).float64()
        xs = cell_inputs(kind, cell)
        plan = gn.compile(cell)
        name = f"{kind}_cell({INPUT}, {HIDDEN})"
        drawings = {"forward": (cell, {"which": "forward"}, f"{name}: the graph"),
                    "backward": (cell, {"which": "backward"}, f"{name}: the backward graph"),
                    "plan": (plan, {}, f"{name}: the compiled plan, level {plan.level}")}
        for what, (obj, opts, title) in drawings.items():
            path = os.path.join(args.out, f"{kind}_{what}.{args.format}")
            gn.render(obj, path, rankdir=RANKDIR[what], inputs=xs, title=title, **opts)
            print(os.path.relpath(path, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generated code shared by the batch sizes of one signature: the source with the literals that vary as names.

The code made for two batch sizes of one generic program differs only where a number depends on B (a row
block ``x[50:100]``, a reshape target) and in the names of constants named after their value (a mean's 1/B
scale). The template keeps the text between those literals, and the literals that vary become names
(``_n0``, ``_k0``), bound per batch size as the function's keyword defaults, like its arrays: one compiled code
object for every size. A new size's code must match the template everywhere else, or it is compiled as usual.
"""
from __future__ import annotations

import re

# a number not inside an identifier or a longer number, or the name of a constant made by Emitted._out_of
_LITERAL = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|k_\w+)(?![\w.])")


class CodeTemplate:
    """The text of two programs' code with the literals that differ between them as names."""

    def __init__(self, code1: str, code2: str):
        p1, p2 = _LITERAL.split(code1), _LITERAL.split(code2)
        self.ok = len(p1) == len(p2) and p1[0::2] == p2[0::2]
        self.text, self.literals, self.slots = p1[0::2], p1[1::2], {}    # slots: literal index -> (name, kind)
        if not self.ok:
            return
        for j, (a, b) in enumerate(zip(p1[1::2], p2[1::2])):
            if a == b:
                continue
            if a.isdigit() and b.isdigit():
                self.slots[j] = (f"_n{len(self.slots)}", int)
            elif a.startswith("k_") and b.startswith("k_"):
                self.slots[j] = (f"_k{len(self.slots)}", None)
            else:                                     # a float literal that depends on B: not shared
                self.ok = False
                return
        out = [self.text[0]]
        for j, lit in enumerate(self.literals):
            out += [self.slots[j][0] if j in self.slots else lit, self.text[j + 1]]
        self.source = "".join(out)
        self.functions = None         # compiled once, with the first size's names (see Emitted)
        self.filename = None

    def values(self, code: str, env: dict):
        """The names' values for this code (its literals; a constant's array from ``env``), or None when the
        code differs from the template elsewhere."""
        if not self.ok:
            return None
        p = _LITERAL.split(code)
        if len(p) != 2 * len(self.literals) + 1 or p[0::2] != self.text:
            return None
        lits = p[1::2]
        out = {}
        for j, lit in enumerate(lits):
            slot = self.slots.get(j)
            if slot is None:
                if lit != self.literals[j]:
                    return None
            elif slot[1] is int:
                if not lit.isdigit():
                    return None
                out[slot[0]] = int(lit)
            elif lit in env:
                out[slot[0]] = env[lit]
            else:
                return None
        return out

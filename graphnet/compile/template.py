"""Generated code shared by the batch sizes of one signature: the source with the literals that vary as names.

The code made for two batch sizes of one generic program differs only where a number depends on B (a row
block ``x[50:100]``, an arena's size, a view's offset) and in the names of constants named after their value (a
mean's 1/B scale). The template keeps the text between those literals, and the literals that vary become
parameters of ``bind`` (``_n0``, ``_k0``), given per batch size like its constants: one compiled code object for
every size. A new size's code must match the template everywhere else, or it is compiled as usual.
"""
from __future__ import annotations

import re

# a number not inside an identifier or a longer number, or the name of a constant made by Emitted._out_of
_LITERAL = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|k_\w+)(?![\w.])")
# a line's comment (its graph node and file:line): not part of what runs, and the node's name may differ between
# the graphs two sizes were compiled from
_COMMENT = re.compile(r"  # .*$", re.M)


class CodeTemplate:
    """The text of two programs' code with the literals that differ between them as names."""

    def __init__(self, code1: str, code2: str):
        code1, code2 = _COMMENT.sub("", code1), _COMMENT.sub("", code2)
        p1, p2 = _LITERAL.split(code1), _LITERAL.split(code2)
        self.ok = len(p1) == len(p2) and p1[0::2] == p2[0::2]
        self.text, self.literals, self.slots = p1[0::2], p1[1::2], {}    # slots: literal index -> (name, kind)
        if not self.ok:
            return
        named = {}                                    # (constant's name at B1, at B2) -> its slot's name
        self.n_prelude = 0
        # the prelude's numbers (arena sizes, offsets) come from a best fit of aligned segments, piecewise in B:
        # each is a slot even where the two sizes agree
        prelude_end = code1.find("\n    def ")
        at = 0
        for j, (a, b) in enumerate(zip(p1[1::2], p2[1::2])):
            at += len(p1[2 * j]) + len(a)
            if a == b and not (at < prelude_end and a.isdigit()):
                continue
            if a.isdigit() and b.isdigit():
                kind = int
            elif a.startswith("k_") and b.startswith("k_"):
                kind = None
            else:                                     # a float literal that depends on B: not shared
                self.ok = False
                return
            # the prelude's numbers: items of one tuple ``_n`` (thousands of keyword arguments would make a call
            # slow); the functions' own: names (no indexing on the hot path); a constant occurs in bind's header
            # and where it is used: one name for each pair
            if kind is None:
                name = named.setdefault((a, b), f"_k{len(named)}")
            elif at < prelude_end:
                name, kind = f"_n[{self.n_prelude}]", "prelude"
                self.n_prelude += 1
            else:
                name = f"_n{j}"
            self.slots[j] = (name, kind)
        out = [self.text[0]]
        for j, lit in enumerate(self.literals):
            out += [self.slots[j][0] if j in self.slots else lit, self.text[j + 1]]
        ints = sorted({name for name, kind in self.slots.values() if kind is int})
        ints += ["_n"] if self.n_prelude else []
        source = "".join(out)
        if ints:                                      # the numbers' names join bind's parameters
            names = ", ".join(ints)
            source = (source.replace("def bind():", f"def bind(*, {names}):", 1) if source.startswith("def bind():")
                      else source.replace("def bind(*, ", f"def bind(*, {names}, ", 1))
        self.source = source
        self.bind = None              # compiled once, by the first size that uses it (see Emitted)
        self.filename = None

    def compiled(self, filename):
        """The template's ``bind``, compiled once (under the file name of the first code that uses it)."""
        if self.bind is None:
            ns = {}
            exec(compile(self.source, filename, "exec"), ns)
            self.bind, self.filename = ns["bind"], filename
        return self.bind

    def arguments(self, code: str, args: dict):
        """``bind``'s arguments for this code, from its own (``args``) and its literals, or None when the code
        differs from the template elsewhere (or one name would stand for two values)."""
        if not self.ok:
            return None
        p = _LITERAL.split(_COMMENT.sub("", code))
        if len(p) != 2 * len(self.literals) + 1 or p[0::2] != self.text:
            return None
        out, replaced, numbers = {}, set(), []
        for j, lit in enumerate(p[1::2]):
            slot = self.slots.get(j)
            if slot is None:
                if lit != self.literals[j]:
                    return None
                continue
            name, kind = slot
            if kind == "prelude":
                if not lit.isdigit():
                    return None
                numbers.append(int(lit))
                continue
            if kind is int:
                if not lit.isdigit():
                    return None
                value = int(lit)
            elif lit in args:
                value = args[lit]
                replaced.add(lit)
            else:
                return None
            if out.setdefault(name, value) is not value and out[name] != value:
                return None
        if numbers:
            out["_n"] = tuple(numbers)
        return {**{k: v for k, v in args.items() if k not in replaced}, **out}

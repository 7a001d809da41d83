"""Groups that can share one kernel: one compile for every step of a recurrence, not one per kind of step.

The fusion pass plans one kernel per group; groups that compute the same ops on inputs of the same shapes
(``shape_key``) get the same source, hence one kernel, once they keep the same results and read their inputs
at the same columns. A recurrence's steps differ from each other in just these ways at its ends:

- the last step's cell state is read by no later step, so its group does not keep it;
- the first step reads the initial state from an input at column 0, the others from the previous step's output
  at the state's column;
- the backward step into the initial state computes no gradient for it (none is asked for): its group is the
  others' less a member or two.

``shared_layouts`` makes groups of one key keep the union of what they keep and read an input whose column
differs between them at an offset the call passes; ``complete_groups`` first gives the groups of a key that is
a more common key less some members those members (computed, not read: a column of the kernel's output that
no one reads).
"""
from __future__ import annotations

import hashlib

from ...ops import Slice
from ..ir import Value
from ..kernel_rules import is_literal


def shape_key(members, slices):
    """What a group computes, up to which arrays it reads: its ops in order, each argument a member (by
    position), a literal or an outside array of some shape. Groups of one key can share one kernel."""
    index = {id(m): i for i, m in enumerate(members)}
    return tuple(_entry(m, index, slices) for m in members)


def _entry(m, index, slices):
    if id(m) in slices:
        src, start = slices[id(m)]
        return ("slice", index[id(src)], start, m.shape)
    args = tuple(("member", index[id(a)]) if id(a) in index else ("literal", a.op.key()) if is_literal(a)
                 else ("input", a.shape, a.dtype.str) for a in m.args)
    return (m.op.key(), m.shape, m.dtype.str, args)


def canonical(members, slices):
    """The members in an order that depends on what they compute, not on the order they joined the group in
    (the first step's group forms in another order than the others'): by depth in the group, then by a digest
    of their ops back to the group's inputs (the same in a group less some members); members computed alike
    keep their order."""
    what = _digests(members)
    return sorted(members, key=lambda m: what[id(m)])


def _digests(members):
    """id(member) -> (its depth in the group, a digest of the ops computing it from the group's inputs)."""
    mem = {id(m) for m in members}
    out = {}

    def visit(m):
        if id(m) not in out:
            srcs = [a for a in m.args if id(a) in mem]
            for a in srcs:
                visit(a)
            what = [out[id(a)][1] if id(a) in mem else repr(a.op.key()) if is_literal(a)
                    else repr((a.shape, a.dtype.str)) for a in m.args]
            out[id(m)] = (1 + max((out[id(a)][0] for a in srcs), default=-1),
                          hashlib.sha1(repr((m.op.key(), m.shape, m.dtype.str, what)).encode()).hexdigest())
    for m in members:
        visit(m)
    return out


def shared_layouts(groups, facts):
    """Per group, (positions of members its kernel keeps besides its own results, ext positions whose column
    offset is an argument of the call), from each group's (key, positions of the members it keeps, its inputs'
    first columns): groups of one key keep alike and read alike."""
    alike = {}
    for i, (key, _, _) in enumerate(facts):
        alike.setdefault(key, []).append(i)
    shared = [((), ())] * len(groups)
    for mates in alike.values():
        if len(mates) < 2:
            continue
        kept = set().union(*[facts[i][1] for i in mates])
        bases = [facts[i][2] for i in mates]
        shifted = ()
        if len({len(b) for b in bases}) == 1:
            shifted = tuple(k for k in range(len(bases[0])) if len({b[k] for b in bases}) > 1)
        for i in mates:
            shared[i] = (tuple(sorted(kept - facts[i][1])), shifted)
    return shared


def complete_groups(groups, slices):
    """The groups, each in its ``canonical`` order; those of a key that is another key less some members are
    given those members (new values on their own members and inputs; ``slices`` gets the new column slices)
    where the other key's groups are more in number: the few steps at a recurrence's end join the many. The
    shortest such key wins; a group that would need an input it does not read stays as it is."""
    groups = [canonical(g, slices) for g in groups]
    keys = [shape_key(g, slices) for g in groups]
    count = {}
    for k in keys:
        count[k] = count.get(k, 0) + 1
    example = {k: groups[keys.index(k)] for k in count}
    into = {}                                    # key -> (the longer key its groups take, the embedding)
    for k in count:
        for big in sorted((b for b in count if len(b) > len(k) and count[b] > count[k]), key=len):
            to_big = _embedding(example[k], example[big], slices)
            if to_big is not None:
                into[k] = (big, to_big)
                break
    out = []
    for g, k in zip(groups, keys):
        if k in into:
            big, to_big = into[k]
            g = _completed(g, example[big], to_big, slices) or g
        out.append(g)
    return out


def _embedding(small, big, slices, budget=10_000):
    """{position in small: position in big}: each member of group ``small`` matched to a member of ``big``
    computed alike (``_digests``) whose entry is its own, member arguments matched, or None. A search, since
    members computed alike (the derivatives of two tanh) are told apart only by what reads them; given up
    after ``budget`` tries."""
    mine, theirs = _digests(small), _digests(big)
    small_key, big_key = shape_key(small, slices), shape_key(big, slices)
    options = [[j for j, b in enumerate(big) if theirs[id(b)] == mine[id(m)]] for m in small]
    to_big, used, tries = {}, set(), [0]

    def search(i):                               # (small's members come after those they read: canonical)
        if i == len(small):
            return True
        for j in options[i]:
            tries[0] += 1
            if j in used or tries[0] > budget or big_key[j] != _renumbered(small_key[i], to_big):
                continue
            to_big[i] = j
            used.add(j)
            if search(i + 1):
                return True
            del to_big[i]
            used.discard(j)
        return False
    return to_big if len(small) < 500 and search(0) else None


def _renumbered(entry, to_big):
    if entry[0] == "slice":
        return ("slice", to_big[entry[1]], *entry[2:])
    op, shape, dtype, args = entry
    return (op, shape, dtype, tuple(("member", to_big[a[1]]) if a[0] == "member" else a for a in args))


def _completed(members, big, to_big, slices):
    """``members`` with the members of ``big`` it lacks, made on its own members and inputs (big's in order),
    or None where one would read an input no matched member of big reads (nor a column slice of one)."""
    mine = {j: members[i] for i, j in to_big.items()}         # big position -> my member
    index = {id(m): j for j, m in enumerate(big)}
    inputs = {}                                              # id(big's input) -> mine at the same argument
    for j, m in mine.items():
        for a, b in zip(m.args, big[j].args):
            if id(b) not in index:
                inputs.setdefault(id(b), a)
    out = []
    for j, b in enumerate(big):
        if j not in mine:
            args = []
            for a in b.args:
                if id(a) in index:
                    args.append(mine[index[id(a)]])
                elif is_literal(a):
                    args.append(a)
                elif id(a) in inputs:
                    args.append(inputs[id(a)])
                elif _column_slice(a) and id(a.args[0]) in inputs:     # (a gate of a block another reads)
                    args.append(Value(a.op, (inputs[id(a.args[0])],), a.shape, a.dtype, a.src))
                else:
                    return None
            mine[j] = Value(b.op, tuple(args), b.shape, b.dtype, members[-1].src)
            if id(b) in slices:
                base, start = slices[id(b)]
                slices[id(mine[j])] = (mine[index[id(base)]], start)
        out.append(mine[j])
    return out


def _column_slice(a):
    return isinstance(a.op, Slice) and a.args and a.ndim and a.op.dim % a.ndim == a.ndim - 1

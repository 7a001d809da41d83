"""Common subexpressions: two pure values with the same op and the same arguments become one."""
from ...ops import Arg, Param, Seed
from ..ir import clone, substitute


def cse(prog):
    p = clone(prog)
    seen, sub = {}, {}
    for v in p.values:
        if not v.op.pure or isinstance(v.op, (Arg, Seed)):
            continue
        v.args = tuple(sub.get(a.id, a) for a in v.args)
        try:
            key = (v.op.key() if not isinstance(v.op, Param) else ("param", id(v.op.param)),
                   tuple(a.id for a in v.args))
            hash(key)
        except TypeError:          # an op whose attributes cannot be compared: leave it alone
            continue
        first = seen.setdefault(key, v)
        if first is not v:
            sub[v.id] = first
    return substitute(p, sub)

"""Dead code: drop values that no output and no wanted gradient needs."""
from ..ir import clone, prune


def dce(prog):
    return prune(clone(prog))

"""``evalkit gate``: candidate vs baseline, exit 0 (no regression), 1 (regression) or 2 (bad input).

    from evalkit.gate import Thresholds, gate, resolve_side
"""

from evalkit.gate.checks import gate
from evalkit.gate.sides import resolve_side
from evalkit.gate.thresholds import Thresholds

__all__ = ["Thresholds", "gate", "resolve_side"]

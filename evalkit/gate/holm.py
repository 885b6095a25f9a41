"""Holm's step-down correction.

Written out (a few lines) because statsmodels, whose ``multipletests(method="holm")`` does the same,
is not an evalkit dependency and scipy has no Holm; tests compare it with the textbook definition.
"""

from __future__ import annotations


def holm(p_values: list[float]) -> list[float]:
    """Adjusted p-values: sort ascending, p_(i) * (m - i), running maximum, capped at 1; original order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, p_values[i] * (m - rank)))
        adjusted[i] = running
    return adjusted

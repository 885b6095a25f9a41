"""Accuracy per subject, per category, micro and macro averages, each with its standard error."""

from __future__ import annotations

import math
from typing import Iterable


def mean_stderr(values: list[float]) -> float | None:
    """Standard error of a mean (sample stdev / sqrt(n)), as lm-evaluation-harness reports it."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def _group(correct: list[bool]) -> dict:
    values = [1.0 if c else 0.0 for c in correct]
    n = len(values)
    return {"n": n, "correct": int(sum(values)), "acc": sum(values) / n if n else None, "acc_stderr": mean_stderr(values)}


def macro(groups: Iterable[dict]) -> dict:
    """Mean of group accuracies; its stderr treats the groups as independent estimates."""
    groups = list(groups)
    accs = [g["acc"] for g in groups]
    errs = [g["acc_stderr"] for g in groups]
    k = len(groups)
    stderr = math.sqrt(sum(e * e for e in errs)) / k if k and all(e is not None for e in errs) else None
    return {"groups": k, "acc": sum(accs) / k if k else None, "acc_stderr": stderr}


def summarize(correct_by_subject: dict[str, list[bool]], categories_of: dict[str, tuple[str, ...]],
              category_order: Iterable[str] = ()) -> dict:
    subjects = {s: _group(c) for s, c in correct_by_subject.items()}
    by_category: dict[str, list[bool]] = {}
    for subject, correct in correct_by_subject.items():
        for category in categories_of.get(subject, ()):
            by_category.setdefault(category, []).extend(correct)
    order = [c for c in category_order if c in by_category] + sorted(set(by_category) - set(category_order))
    everything = [c for cs in correct_by_subject.values() for c in cs]
    return {
        "subjects": subjects,
        "categories": {c: _group(by_category[c]) for c in order},
        "micro": _group(everything),  # every question weighs the same
        "macro": macro(subjects.values()),  # every subject weighs the same
    }

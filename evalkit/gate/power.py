"""The smallest drop a gate check could have detected at its n, and whether a run covers its whole task.

A pass on 40 questions says little: McNemar's test on 40 paired questions cannot see a 10-point
drop. So each task's overall check states the drop it would detect with power 0.8 at the level its
test is judged at (``alpha / m`` for the first step of Holm's correction over m tasks):

* McNemar's exact test (multiple choice), its power computed exactly: with a share ``psi`` of
  discordant questions (exactly one of the two runs right) and a true drop ``d``, the discordant
  count is D ~ Binomial(n, psi) and, given D, the candidate-only count c ~ Binomial(D, (psi - d) / (2 psi));
  the test rejects when c <= k_D or c >= D - k_D, k_D the largest k with 2 P(Binomial(D, 1/2) <= k) < alpha. So
  ``power(d) = sum_D Bin(D; n, psi) [F(k_D; D, q) + S(D - k_D - 1; D, q)]``, q = (psi - d) / (2 psi),
  and the detectable drop is the smallest d with power(d) >= 0.8 (bisection: power rises with d).
  ``psi`` is the pair's observed share; when the two runs never disagree (the same model twice) it is
  ``2 p (1 - p)``, the share two runs with the base's accuracy p would disagree on if their errors were
  independent. A drop of d moves at least d of the questions, so ``psi >= d``.
* Paired bootstrap (BLEU/ROUGE), by the paired z-test it approximates: ``d = (z_{1-a/2} + z_{power}) s / sqrt(n)``
  with s the standard deviation of the per-sample differences (``sqrt(2)`` times the base's own when
  the runs never differ: uncorrelated samples).
"""

from __future__ import annotations

import math

from evalkit.errors import EvalkitError

POWER = 0.8


def mcnemar_power(n: int, psi: float, drop: float, alpha: float) -> float:
    """Exact power of McNemar's exact test (two-sided, p < alpha) against an accuracy drop ``drop`` (fraction)."""
    import numpy as np
    from scipy.stats import binom

    psi = max(psi, drop)
    counts = np.arange(n + 1)
    weights = binom.pmf(counts, n, psi)
    critical = binom.ppf(alpha / 2, counts, 0.5) - 1  # largest k with 2 P(X <= k) < alpha; -1: none
    critical[binom.cdf(critical + 1, counts, 0.5) * 2 < alpha] += 1  # ppf's edge when a tail equals alpha / 2 exactly
    q = (psi - drop) / (2 * psi) if psi > 0 else 0.5
    reject = np.where(critical >= 0, binom.cdf(critical, counts, q) + binom.sf(counts - critical - 1, counts, q), 0.0)
    return float(np.sum(weights * reject))


def mcnemar_detectable_drop(n: int, discordant: int, base_accuracy: float, alpha: float, power: float = POWER) -> float | None:
    """Smallest accuracy drop (points) detected with ``power``, or None when not even a 100-point drop is."""
    if n <= 0:
        return None
    observed = discordant / n if discordant else 2 * base_accuracy * (1 - base_accuracy)
    if mcnemar_power(n, observed, 1.0, alpha) < power:
        return None
    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (low, middle) if mcnemar_power(n, observed, middle, alpha) >= power else (middle, high)
    return high * 100


def mean_detectable_drop(n: int, sd_difference: float, sd_base: float, alpha: float, power: float = POWER) -> float | None:
    """Smallest detectable drop of a per-sample mean (same units as the scores), or None."""
    from scipy.stats import norm

    spread = sd_difference if sd_difference > 0 else math.sqrt(2) * sd_base
    if n <= 1 or spread <= 0:
        return None
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * spread / math.sqrt(n))


def detectable_drop(row: dict, base, candidate, alpha: float) -> float | None:
    """The overall paired row's detectable drop (points), from its test's counts or the paired samples."""
    import numpy as np

    from evalkit.report.samples import pair_rows, read_samples

    detail = row.get("detail") or {}
    if "base_only" in detail:
        return mcnemar_detectable_drop(row["n"] or 0, detail["base_only"] + detail["candidate_only"],
                                       (row["base"] or 0) / 100, alpha)
    metric = base.metric
    pairs = [(x[metric], y[metric]) for x, y in pair_rows(read_samples(base.samples_file) or [],
                                                          read_samples(candidate.samples_file) or [])
             if metric in x and metric in y]
    if len(pairs) < 2:
        return None
    values = np.asarray(pairs, dtype=float)
    return mean_detectable_drop(len(pairs), float(np.std(values[:, 1] - values[:, 0], ddof=1)),
                                float(np.std(values[:, 0], ddof=1)), alpha)


def partial_text(run, result) -> str:
    """"limit 10, 4 of 67 subjects" when the run left part of the task out (a --limit or a subject
    subset of the task spec), else ""."""
    from evalkit.tasks.registry import resolve_tasks

    notes = []
    limit = ((run.config or {}) if run is not None else {}).get("limit")
    if limit is not None:
        notes.append(f"limit {limit}")
    subjects = (result.result or {}).get("subjects") or {}
    if subjects:
        try:
            total = len(getattr(resolve_tasks(str((result.result or {}).get("spec") or ""))[0].spec, "subjects", {}))
        except (EvalkitError, OSError, IndexError):
            total = 0  # spec moved: a subset cannot be told from the whole, only a --limit
        if len(subjects) < total:
            notes.append(f"{len(subjects)} of {total} subjects")
    return ", ".join(notes)

"""Paired significance tests for comparing two models on the same questions.

* Multiple choice: McNemar's exact test. Only discordant questions matter (b: base right and
  candidate wrong, c: the reverse); under "no difference" c ~ Binomial(b + c, 1/2), so the
  two-sided p-value is scipy's exact binomial test of c successes in b + c trials.
* Generation (BLEU/ROUGE): paired bootstrap (Koehn 2004) over per-sample scores with a fixed seed.

One model's accuracy gets a Wilson score interval: unlike the normal (Wald) interval it stays inside
0..1 and does not shrink to nothing at 0% or 100% (2 of 2 right: 34%..100%, not 100%..100%).
"""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 1234


@dataclass(frozen=True)
class TestResult:
    test: str
    n: int  # paired items
    delta: float  # candidate - base (same units as the scores)
    p_value: float | None
    detail: dict

    @property
    def verdict(self) -> str:
        return verdict(self.delta, self.p_value)


def verdict(delta: float, p_value: float | None, alpha: float = ALPHA) -> str:
    """The candidate against the base, in words: "better, p=0.003" / "worse, p=0.01" / "no detectable difference"."""
    if p_value is None:
        return "not tested (no paired samples)"
    if p_value < alpha and delta > 0:
        return f"better, p={format_p(p_value)}"
    if p_value < alpha and delta < 0:
        return f"worse, p={format_p(p_value)}"
    return f"no detectable difference (p={format_p(p_value)})"


def format_p(p_value: float) -> str:
    return "<0.0001" if p_value < 1e-4 else f"{p_value:.3g}" if p_value < 0.001 else f"{p_value:.3f}"


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (scipy's), as fractions; None without questions."""
    from scipy.stats import binomtest

    if not n:
        return None
    interval = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def mcnemar_exact(base_correct: list[bool], candidate_correct: list[bool]) -> TestResult:
    """McNemar's exact test on paired per-question correctness."""
    from scipy.stats import binomtest

    if len(base_correct) != len(candidate_correct):
        raise ValueError("paired lists differ in length")
    n = len(base_correct)
    b = sum(1 for x, y in zip(base_correct, candidate_correct) if x and not y)
    c = sum(1 for x, y in zip(base_correct, candidate_correct) if y and not x)
    delta = (c - b) / n if n else 0.0
    p_value = binomtest(c, b + c, 0.5).pvalue if b + c else (1.0 if n else None)
    return TestResult("McNemar exact", n, delta, p_value, {"base_only": b, "candidate_only": c,
                                                            "both": sum(1 for x, y in zip(base_correct, candidate_correct) if x and y)})


def paired_bootstrap(base: list[float], candidate: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> TestResult:
    """Paired bootstrap of the mean difference.

    Hand-written because scipy.stats.bootstrap gives intervals, not a test: resample the paired
    items ``resamples`` times (fixed seed) and take the two-sided p-value as twice the share of
    resampled mean differences on the other side of zero (capped at 1).
    """
    import numpy as np

    if len(base) != len(candidate):
        raise ValueError("paired lists differ in length")
    n = len(base)
    if n == 0:
        return TestResult("paired bootstrap", 0, 0.0, None, {})
    diff = np.asarray(candidate, dtype=float) - np.asarray(base, dtype=float)
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    if np.all(diff == 0):
        p_value = 1.0
    else:
        other_side = min(int(np.sum(means <= 0)), int(np.sum(means >= 0)))
        p_value = min(1.0, 2 * (other_side + 1) / (resamples + 1))
    low, high = np.percentile(means, [2.5, 97.5])
    return TestResult("paired bootstrap", n, observed, p_value,
                      {"resamples": resamples, "seed": seed, "ci95": [float(low), float(high)]})


def newcombe_paired_interval(both: int, base_only: int, candidate_only: int, neither: int,
                             confidence: float = 0.95) -> tuple[float, float] | None:
    """Interval of (candidate accuracy - base accuracy) on paired questions, as fractions.

    Newcombe (1998), "Improved confidence intervals for the difference between binomial proportions
    based on paired data", method 10: the Wilson intervals (l1, u1) of the candidate's accuracy p1
    and (l2, u2) of the base's p2 are combined with the continuity-corrected correlation phi of the
    2x2 table, so the interval stays inside -1..1 and is not empty with few discordant questions:
    lower = d - sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2), upper = d + sqrt((u1-p1)^2 - 2 phi (u1-p1)(p2-l2) + (p2-l2)^2).
    """
    import math

    n = both + base_only + candidate_only + neither
    if not n:
        return None
    p1, p2 = (both + candidate_only) / n, (both + base_only) / n
    l1, u1 = wilson_interval(both + candidate_only, n, confidence)
    l2, u2 = wilson_interval(both + base_only, n, confidence)
    # e = both right, f = candidate only, g = base only, h = neither (Newcombe's table, p1 = (e + f) / n)
    product = (both + candidate_only) * (base_only + neither) * (both + base_only) * (candidate_only + neither)
    cross = both * neither - candidate_only * base_only
    corrected = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = corrected / math.sqrt(product) if product else 0.0
    d = p1 - p2
    lower = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, lower), min(1.0, upper)


def significant(p_value: float | None, alpha: float = ALPHA) -> bool:
    return p_value is not None and p_value < alpha

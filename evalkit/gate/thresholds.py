"""What counts as a regression: significance level, minimum effect, absolute floors, profiler tolerances.

The same block is ``gate:`` in a nightly suite file and ``--alpha/--min-effect/--floor`` on the command line.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProfileTolerance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tolerance: float = Field(0.25, gt=0)  # relative: 0.25 = 25% worse than the baseline
    fail: bool = False  # time figures are noisy on shared machines: warn unless the suite says fail


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1)  # family-wise, Holm-corrected across the tasks checked
    min_effect: float = Field(1.0, ge=0)  # points (accuracy %, BLEU/ROUGE x100) a drop must exceed
    min_group_n: int = Field(30, ge=1)  # categories/subjects with fewer paired items are shown, not tested
    floors: dict[str, float] = {}  # task -> lowest acceptable score in points, judged by a one-sided lower bound
    profile: dict[str, ProfileTolerance] = Field(default_factory=lambda: {
        "peak_rss_mb": ProfileTolerance(), "prefill_tokens_per_s": ProfileTolerance(),
        "decode_tokens_per_s": ProfileTolerance()})

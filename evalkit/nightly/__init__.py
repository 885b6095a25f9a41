"""``evalkit nightly SUITE.yaml``: evaluate, record, gate against the baseline, rebuild the leaderboard, accept.

    from evalkit.nightly import load_suite, run_nightly
"""

from evalkit.nightly.job import run_nightly
from evalkit.nightly.suite import load_suite

__all__ = ["load_suite", "run_nightly"]

"""HTML run reports (base vs candidate, paired significance) and leaderboards from the results store.

    from evalkit.report import build_report, build_leaderboard
"""

from evalkit.report.html import build_report
from evalkit.report.leaderboard import build_leaderboard

__all__ = ["build_leaderboard", "build_report"]

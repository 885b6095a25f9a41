"""``evalkit board``: the web UI (issue 27). So far: the rankings from blind A/B votes (ranking.py)."""

"""Per-sample rows of a stored task result, paired between two models.

Multiple choice pairs by (subject, question index); generation by sample index. Only items
present on both sides are paired, so runs with different ``--limit`` still compare on their overlap.
"""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.errors import EvalkitError


def read_samples(path: str | None) -> list[dict] | None:
    """The rows of a samples JSONL, or None when the file is gone (moved results directory)."""
    if not path or not Path(path).is_file():
        return None
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise EvalkitError(f"{path}: row {number} is not valid JSON; re-run the evaluation or "
                                       "restore the file") from None
    return rows


def sample_key(row: dict) -> tuple:
    return (row.get("subject", ""), row.get("index"))


def pair_rows(base: list[dict], candidate: list[dict]) -> list[tuple[dict, dict]]:
    """(base row, candidate row) for every item both sides answered, in the base file's order."""
    by_key = {sample_key(row): row for row in candidate}
    return [(row, by_key[sample_key(row)]) for row in base if sample_key(row) in by_key]

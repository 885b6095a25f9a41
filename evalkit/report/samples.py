"""Per-sample rows of a stored task result, paired between two models.

Multiple choice pairs by (subject, question index); generation by sample index. Only items
present on both sides are paired, so runs with different ``--limit`` still compare on their overlap.

The samples are the evidence and a results file's summary only its digest: ``verify_summary``
refuses a multiple-choice result whose summary the samples do not reproduce (a hand-edited or
half-written file), so no gate, report or import can be fooled by a summary alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.errors import EvalkitError

MAX_ROW_DEPTH = 32  # evalkit's sample rows nest 2-3 levels
TOLERANCE = 1e-6  # summaries hold exact fractions; anything beyond float noise is a disagreement


def _parse_row(path: str, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        raise EvalkitError(f"{path}: row {number} is not valid JSON; re-run the evaluation or restore the file") from None
    if not isinstance(row, dict):
        raise EvalkitError(f"{path}: row {number} is a JSON {type(row).__name__}, not an object; "
                           "a samples file holds one JSON object per line: re-run the evaluation or restore the file")
    return row


def read_samples(path: str | None) -> list[dict] | None:
    """The rows of a samples JSONL, or None when the file is gone (moved results directory)."""
    if not path or not Path(path).is_file():
        return None
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    rows.append(_parse_row(path, number, line))
    except UnicodeDecodeError as exc:
        raise EvalkitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           "re-run the evaluation or restore the file") from None
    except OSError as exc:
        raise EvalkitError(f"{path}: cannot read the samples file ({exc.strerror})") from None
    if not rows:
        raise EvalkitError(f"{path}: the samples file is empty; re-run the evaluation or restore the file")
    return rows


def right_or_wrong(result) -> bool:
    """Whether a task result is scored right/wrong per item (``correct`` in every sample row): multiple-choice
    accuracy and generation exact match, both paired with McNemar's exact test."""
    return result.task_type == "multiple_choice" or (result.task_type == "generation" and result.metric == "exact_match")


def verify_summary(task: str, result, rows: list[dict] | None = None) -> None:
    """Refuse (one line, exit 2) a right/wrong result (accuracy, exact match) whose score and n its samples do not give."""
    if not right_or_wrong(result) or result.score is None:  # None: a run scored without gold answers
        return
    rows = read_samples(result.samples_file) if rows is None else rows
    if rows is None:
        return  # no evidence to check against; callers that need samples say so themselves
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("correct"), bool):
            raise EvalkitError(f"{result.samples_file}: row {number} has no true/false 'correct'; "
                               "re-run the evaluation or restore the file")
    groups: dict[str, list[bool]] = {}
    for row in rows:
        groups.setdefault(str(row.get("subject", "")), []).append(row["correct"])
    checks = [("overall", result.score, result.n, [r["correct"] for r in rows])]
    checks += [(f"subject {s.group}", s.value, s.n, groups.get(s.group, [])) for s in result.scores if s.level == "subject"]
    for where, acc, n, outcomes in checks:
        k = sum(outcomes)
        actual = k / len(outcomes) if outcomes else None
        if n != len(outcomes) or acc is None or actual is None or abs(acc - actual) > TOLERANCE:
            shown = "none" if acc is None else f"{acc:.4f}"
            raise EvalkitError(f"{task}: the results file says {where} {result.metric} {shown} (n={n}) but its samples "
                               f"{result.samples_file} give {k}/{len(outcomes)}; the files disagree (edited or half-written): "
                               "re-run the evaluation or restore both files")


def sample_key(row: dict) -> tuple:
    return (str(row.get("subject", "")), str(row.get("index")))


def pair_rows(base: list[dict], candidate: list[dict]) -> list[tuple[dict, dict]]:
    """(base row, candidate row) for every item both sides answered, in the base file's order."""
    by_key = {sample_key(row): row for row in candidate}
    return [(row, by_key[sample_key(row)]) for row in base if sample_key(row) in by_key]


def instructions(result: dict, rows: list[dict]) -> dict[str, str]:
    """{sample index: its input text} for generation rows, read back from the task's data (samples keep
    only its hash): shown only where the text still hashes to the row's ``input_sha256``."""
    from evalkit.cache import sha256_text
    from evalkit.tasks.generation_data import load_samples
    from evalkit.tasks.registry import resolve_tasks

    wanted = {str(r.get("index")): r.get("input_sha256") for r in rows if r.get("input_sha256")}
    if not wanted or not result.get("spec"):
        return {}
    try:
        spec = resolve_tasks(str(result["spec"]))[0].spec
        samples = load_samples(spec).samples
    except (EvalkitError, OSError, IndexError, AttributeError, AssertionError, ValueError):
        return {}  # spec or data moved: the page says the instruction is unavailable
    return {str(s.index): s.input for s in samples
            if str(s.index) in wanted and sha256_text(s.input) == wanted[str(s.index)]}

"""The leaderboard's cells: one stored task result per column with how it was made (n, few-shot, --limit,
subjects), its 95% interval, the setting a partial run belongs to, and the profiler figures of one run."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from evalkit.errors import EvalkitError
from evalkit.report.definition import Column
from evalkit.report.figures import hardware_text, run_figures
from evalkit.report.significance import wilson_interval


def column_value(result, column: Column) -> float | None:
    """A stored task result's value for ``column``: the overall (micro) score of its metric."""
    for score in result.scores:
        if score.level == "overall" and score.metric == column.metric and score.group in ("micro", "all"):
            return None if score.value is None else score.value * column.scale
    if result.metric == column.metric and result.score is not None:
        return result.score * column.scale
    return None


@lru_cache(maxsize=64)
def _spec_subjects(spec_path: str) -> int | None:
    """How many subjects the task spec has (to tell a subject subset from the whole benchmark)."""
    from evalkit.tasks.registry import resolve_tasks

    try:
        return len(getattr(resolve_tasks(spec_path)[0].spec, "subjects", {})) or None
    except (EvalkitError, OSError, IndexError):
        return None  # spec moved: subsets cannot be told apart, only --limit


def interval(result, column: Column, value: float) -> dict | None:
    """95% interval of a cell, in the column's scale: Wilson's for accuracy (from the questions answered
    right), Student's t from the per-sample standard error for means such as BLEU/ROUGE; None otherwise."""
    block, n = result.result or {}, result.n
    if not n:
        return None
    if column.metric in ("acc", "exact_match"):  # proportions of right answers: Wilson's interval
        correct = (block.get("micro") or block).get("correct")
        correct = round(value / column.scale * n) if correct is None else correct
        bounds = wilson_interval(int(correct), int(n))
        return None if bounds is None else {"low": bounds[0] * column.scale, "high": bounds[1] * column.scale,
                                            "method": "Wilson score 95% interval"}
    stderr = block.get(f"{column.metric}_stderr")
    if stderr is None or n < 2:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * float(stderr) * column.scale
    # BLEU, ROUGE and perplexity are never negative: a t interval of a few samples is cut at 0
    return {"low": max(value - half, 0.0), "high": value + half, "method": "95% interval of the mean (Student's t, per-sample scores)"}


def coverage(run, result) -> dict:
    """How a task result was produced: n, few-shot, --limit, subjects; partial when a --limit or a
    subject subset left part of the benchmark out."""
    config = run.config or {}
    limit = config.get("limit")
    subjects = (result.result or {}).get("subjects") or {}
    total = _spec_subjects(str((result.result or {}).get("spec") or "")) if subjects else None
    subset = bool(total) and len(subjects) < total
    notes = ([f"limit {limit}"] if limit is not None else []) + ([f"{len(subjects)} of {total} subjects"] if subset else [])
    # the task's own record first: a generation spec's default k (gsm8k: 8) is not in the run's config
    fewshot = (result.result or {}).get("num_fewshot", config.get("num_fewshot"))
    return {"n": result.n, "fewshot": fewshot,
            "limit": limit, "subjects": f"{len(subjects)}/{total}" if subset else None,
            "partial": bool(notes), "partial_text": ", ".join(notes), "run": run.id}


def run_cells(run, columns: tuple[Column, ...]) -> dict[str, dict]:
    """{column key: cell} for one run: the value with its coverage and interval."""
    cells = {}
    for result in run.tasks:
        for column in columns:
            if result.task == column.task:
                value = column_value(result, column)
                if value is not None:
                    cells[column.key] = {"value": value, "task": column.task, **coverage(run, result),
                                         "interval": interval(result, column, value)}
    return cells


def setting_of(run) -> tuple:
    """(--limit, few-shot) of a run: with the tasks it cut to a subject subset, the setting of its partial cells."""
    config = run.config or {}
    shots = {(t.result or {}).get("num_fewshot", config.get("num_fewshot")) for t in run.tasks}
    return config.get("limit"), shots.pop() if len(shots) == 1 else config.get("num_fewshot")


def setting_text(limit, fewshot, cuts) -> str:
    parts = ([f"limit {limit}"] if limit is not None else ["no limit"]) \
        + ([f"{fewshot}-shot"] if fewshot is not None else []) + [f"{task} {subjects} subjects" for task, subjects in cuts]
    return " · ".join(parts)


def row_figures(cells: dict[str, dict], runs_by_id: dict, fallback) -> tuple[dict, object]:
    """Profiler figures of ONE run: the newest run that gave the row a score (else ``fallback``), so memory and
    tokens/s always describe the run whose scores stand beside them (never an API-client run's prefill next
    to in-process scores, nor an older run's figure filling a gap)."""
    source = runs_by_id.get(max((c["run"] for c in cells.values()), default=None)) or fallback
    if source is None:
        return {"hardware": ""}, None
    figures = run_figures(source.profile)
    for result in source.tasks:
        if result.task_type == "perplexity" and result.result:
            figures.update({k: result.result[k] for k in ("perplexity", "perplexity_llamafactory")
                            if result.result.get(k) is not None})
    figures["hardware"] = hardware_text(source.profile)
    return figures, source


def compact_time(created_at: str | None) -> str:
    """``2026-12-03T17:33:59.41+00:00`` -> ``2026-12-03 17:33`` (UTC; the full stamp goes in a tooltip)."""
    if not created_at:
        return ""
    try:
        return datetime.fromisoformat(str(created_at).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(created_at)[:16].replace("T", " ")

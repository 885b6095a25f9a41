"""The results store as pandas DataFrames, for notebooks::

    from evalkit.store import runs_frame, scores_frame, samples_frame

    runs = runs_frame(model="smollm2-135m-instruct", since="2026-12-01")
    scores = scores_frame(task="cmmlu", level="subject")        # one row per run, task, group
    wrong = samples_frame(run_ids=runs.id[:2]).query("not correct")

Every frame comes from the same rows ``evalkit runs`` lists (filters: model, task, kind, tag, date), so
a notebook's numbers are the CLI's. Accuracies are fractions, as in the results files.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from evalkit.store.query import list_runs
from evalkit.store.schema import Run

RUN_COLUMNS = ["id", "created_at", "kind", "model", "model_label", "model_key", "base_model_key", "evalkit_version",
               "peak_rss_mb", "results_file", "tags"]
SCORE_COLUMNS = ["run_id", "created_at", "model_label", "model_key", "task", "task_type", "level", "group", "metric",
                 "value", "stderr", "n", "spec_sha256", "prompt_sha256"]


def _runs(store: str | None, model: str | None, task: str | None, kind: str | None, tag: str | None,
          since: str | None, until: str | None, run_ids: Iterable[int] | None) -> list[Run]:
    runs = list_runs(store, model=model, task=task, kind=kind)
    if run_ids is not None:
        wanted = {int(i) for i in run_ids}
        runs = [r for r in runs if r.id in wanted]
    if since:
        runs = [r for r in runs if r.created_at >= since]  # ISO-8601 strings order as times
    if until:
        runs = [r for r in runs if r.created_at[:len(until)] <= until]
    if tag:
        tagged = _tags(store)
        runs = [r for r in runs if tag in tagged.get(r.id, ())]
    return runs


def _tags(store: str | None) -> dict[int, list[str]]:
    from sqlalchemy import select

    from evalkit.store.engine import open_store
    from evalkit.store.schema import RunTag

    factory, _ = open_store(store)
    tags: dict[int, list[str]] = {}
    with factory() as session:
        for tag in session.scalars(select(RunTag)):
            tags.setdefault(tag.run_id, []).append(tag.tag)
    return tags


def runs_frame(store: str | None = None, *, model: str | None = None, task: str | None = None,
               kind: str | None = None, tag: str | None = None, since: str | None = None, until: str | None = None,
               run_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """One row per run, newest first."""
    tags = _tags(store)
    rows = []
    for run in _runs(store, model, task, kind, tag, since, until, run_ids):
        memory = ((run.profile or {}).get("memory") or {}).get("peak_rss_mb")
        rows.append([run.id, run.created_at, run.kind, run.model_name, run.model_label, run.model_key, run.base_model_key,
                     run.evalkit_version, memory if isinstance(memory, (int, float)) else None, run.results_file,
                     ",".join(sorted(tags.get(run.id, [])))])
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def scores_frame(store: str | None = None, *, model: str | None = None, task: str | None = None,
                 kind: str | None = None, tag: str | None = None, since: str | None = None, until: str | None = None,
                 run_ids: Iterable[int] | None = None, level: str | None = None) -> pd.DataFrame:
    """One row per recorded figure: ``level`` overall (groups micro / macro), subject or category."""
    rows = []
    for run in _runs(store, model, None, kind, tag, since, until, run_ids):
        for result in run.tasks:
            if task and result.task != task:
                continue
            for score in result.scores:
                if level and score.level != level:
                    continue
                rows.append([run.id, run.created_at, run.model_label, run.model_key, result.task, result.task_type,
                             score.level, score.group, score.metric, score.value, score.stderr, score.n,
                             result.spec_sha256, result.prompt_sha256])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def samples_frame(store: str | None = None, *, model: str | None = None, task: str | None = None,
                  kind: str | None = None, tag: str | None = None, since: str | None = None, until: str | None = None,
                  run_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """One row per sample (question or generation) of the matching runs, read from their samples files
    (a file that moved away is skipped); run_id, model_label and task lead, the row's own fields follow."""
    from evalkit.report.samples import read_samples

    frames = []
    for run in _runs(store, model, None, kind, tag, since, until, run_ids):
        for result in run.tasks:
            if task and result.task != task:
                continue
            rows = read_samples(result.samples_file)
            if rows:
                frame = pd.DataFrame(rows).drop(columns=["task"], errors="ignore")
                frame.insert(0, "task", result.task)
                frame.insert(0, "model_label", run.model_label)
                frame.insert(0, "run_id", run.id)
                frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "model_label", "task"])


def runs_with_scores(store: str | None = None, **filters) -> pd.DataFrame:
    """``evalkit runs --format csv|json|parquet``: one row per run and task with its headline score."""
    runs = runs_frame(store, **filters).set_index("id", drop=False)
    rows = []
    for run in _runs(store, filters.get("model"), filters.get("task"), filters.get("kind"), filters.get("tag"),
                     filters.get("since"), filters.get("until"), filters.get("run_ids")):
        results = [t for t in run.tasks if not filters.get("task") or t.task == filters["task"]] or [None]
        for result in results:
            headline = (None, None, None, None) if result is None else (result.task, result.metric, result.score, result.n)
            rows.append([*runs.loc[run.id, ["id", "created_at", "kind", "model_label", "model_key"]], *headline,
                         *runs.loc[run.id, ["peak_rss_mb", "evalkit_version", "tags", "model", "results_file"]]])
    return pd.DataFrame(rows, columns=["id", "created_at", "kind", "model_label", "model_key", "task", "metric", "score",
                                       "n", "peak_rss_mb", "evalkit_version", "tags", "model", "results_file"])

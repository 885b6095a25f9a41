"""``build_leaderboard``: a static site from the results store. ``index.html`` has one row per
model/checkpoint (latest result per task), averages and profiler figures, sortable and filterable
in the page; ``models/<model key>.html`` has each model's history across runs."""

from __future__ import annotations

import math
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.report.charts import history_lines
from evalkit.report.definition import Column, Leaderboard, load_definition
from evalkit.report.figures import PROFILE_LABELS, model_figures
from evalkit.report.render import render, write_new
from evalkit.store.query import list_runs, matches_model

MARKER = ".evalkit-leaderboard"  # a directory holding it was written by us and may be rewritten


def column_value(result, column: Column) -> float | None:
    """A stored task result's value for ``column``: the overall (micro) score of its metric."""
    for score in result.scores:
        if score.level == "overall" and score.metric == column.metric and score.group in ("micro", "all"):
            return None if score.value is None else score.value * column.scale
    if result.metric == column.metric and result.score is not None:
        return result.score * column.scale
    return None


def _run_scores(run, columns: tuple[Column, ...]) -> dict[str, float]:
    scores = {}
    for result in run.tasks:
        for column in columns:
            if result.task == column.task:
                value = column_value(result, column)
                if value is not None:
                    scores[column.key] = value
    return scores


def collect(definition: Leaderboard, store: str) -> tuple[list[dict], list[Column], list[dict]]:
    """(rows, shown columns, shown averages) for the definition over the store's evaluation runs."""
    import pandas as pd

    runs = [r for r in list_runs(store) if r.kind in ("evaluation", "profile")]
    if definition.models:
        runs = [r for r in runs if any(matches_model(r, ref) for ref in definition.models)]
    by_model: dict[str, list] = {}
    for run in sorted(runs, key=lambda r: r.id):
        by_model.setdefault(run.model_key, []).append(run)
    rows = []
    for key, model_runs in by_model.items():
        latest: dict[str, float] = {}
        perplexity_result = None
        history = []
        for run in model_runs:  # oldest first: later runs replace earlier values
            scores = _run_scores(run, definition.columns)
            latest.update(scores)
            perplexity_result = next((t for t in run.tasks if t.task_type == "perplexity"), perplexity_result)
            if run.kind == "evaluation":
                history.append({"run": run.id, "created_at": run.created_at, "scores": scores,
                                "tasks": ", ".join(t.task for t in run.tasks), "evalkit_version": run.evalkit_version,
                                "n": {t.task: t.n for t in run.tasks}, "config": run.config or {},
                                "figures": model_figures([run])})
        profile_runs = [r for r in model_runs if r.kind == "profile"]
        figures = model_figures(model_runs, profile_runs[-1] if profile_runs else None, perplexity_result)
        newest = model_runs[-1]
        rows.append({"model_key": key, "label": newest.model_label, "name": newest.model_name,
                     "kind": (newest.model_identity or {}).get("kind", ""), "runs": len(model_runs),
                     "last_run": newest.created_at, "scores": latest, "figures": figures, "history": history})
    labels = [r["label"] for r in rows]
    for row in rows:  # two checkpoints with one name: tell them apart by key
        if labels.count(row["label"]) > 1:
            row["label"] = f"{row['label']} [{row['model_key'][:8]}]"

    frame = pd.DataFrame([r["scores"] for r in rows], columns=[c.key for c in definition.columns], dtype=float)
    shown = [c for c in definition.columns if not definition.hide_empty_columns or frame[c.key].notna().any()]
    shown_keys = {c.key for c in shown}
    averages = []
    for average in definition.averages:
        keys = [k for k in average.columns if k in shown_keys]
        if not keys:
            continue
        means = frame[keys].mean(axis=1, skipna=False)  # a model missing one column gets no average
        for row, value in zip(rows, means):
            row["scores"][f"avg:{average.label}"] = None if math.isnan(value) else float(value)
        averages.append({"key": f"avg:{average.label}", "label": average.label, "columns": keys})
    first = averages[-1]["key"] if averages else (shown[0].key if shown else None)
    rows.sort(key=lambda r: -(r["scores"].get(first) if first and r["scores"].get(first) is not None else -math.inf))
    return rows, shown, averages


def prepare_output(directory: Path, force: bool) -> None:
    if directory.exists() and any(directory.iterdir()) and not (directory / MARKER).is_file() and not force:
        raise EvalkitError(f"{directory} is not empty and was not written by `evalkit leaderboard`; "
                           "choose another --output or pass --force")
    try:
        (directory / "models").mkdir(parents=True, exist_ok=True)
        (directory / MARKER).write_text("written by evalkit leaderboard; the files here are regenerated\n")
    except OSError as exc:
        raise EvalkitError(f"{directory}: cannot write ({exc.strerror}); choose another --output") from None


def build_leaderboard(definition_path: str | Path | None, output: str | Path, store: str | None = None,
                      force: bool = False) -> tuple[Path, list[dict]]:
    from evalkit.store import normalise_url

    definition = load_definition(definition_path)
    url = normalise_url(store)
    rows, columns, averages = collect(definition, url)
    if not rows:
        raise EvalkitError(f"the results store {url} has no evaluation runs{' of the listed models' if definition.models else ''}; "
                           "run `evalkit run` (or `evalkit import DIR`) first")
    directory = Path(output)
    prepare_output(directory, force)
    profile = [{"key": k, "label": PROFILE_LABELS[k]} for k in definition.profile if any(k in r["figures"] for r in rows)]
    columns_ctx = [{"key": c.key, "label": c.label, "task": c.task, "metric": c.metric} for c in columns]
    common = {"title": definition.title, "store": url, "definition": str(definition.path)}
    from evalkit.report.charts import plotly_js

    # one copy of plotly.js for every page of the site (the single-file report inlines it instead)
    write_new(directory / "plotly.min.js", str(plotly_js()), force=True)
    for row in rows:
        chart = history_lines(row["history"], columns_ctx)
        page = render("model.html.j2", row=row, columns=columns_ctx, profile=profile, chart=chart,
                      charts=chart is not None, plotly_src="../plotly.min.js", **common)
        write_new(directory / "models" / f"{row['model_key']}.html", page, force=True)
    index = render("leaderboard.html.j2", rows=rows, columns=columns_ctx, averages=averages, profile=profile, **common)
    return write_new(directory / "index.html", index, force=True), rows

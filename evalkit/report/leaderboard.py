"""``build_leaderboard``: a static site from the results store. ``index.html`` has one row per
model/checkpoint (latest full result per task; every cell with its n, few-shot and --limit), averages
of like metrics and profiler figures, sortable and filterable in the page; partial runs have rows of
their own, hidden and unranked until shown; ``models/<model key>.html`` has each model's history."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.report.charts import history_lines
from evalkit.report.definition import Column, Leaderboard, load_definition
from evalkit.report.figures import PROFILE_LABELS, model_figures
from evalkit.report.render import render, write_new
from evalkit.store.identity import describe, model_label
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


@lru_cache(maxsize=64)
def _spec_subjects(spec_path: str) -> int | None:
    """How many subjects the task spec has (to tell a subject subset from the whole benchmark)."""
    from evalkit.tasks.registry import resolve_tasks

    try:
        return len(getattr(resolve_tasks(spec_path)[0].spec, "subjects", {})) or None
    except (EvalkitError, OSError, IndexError):
        return None  # spec moved: subsets cannot be told apart, only --limit


def coverage(run, result) -> dict:
    """How a task result was produced: n, few-shot, --limit, subjects; partial when a --limit or a
    subject subset left part of the benchmark out."""
    config = run.config or {}
    limit = config.get("limit")
    subjects = (result.result or {}).get("subjects") or {}
    total = _spec_subjects(str((result.result or {}).get("spec") or "")) if subjects else None
    subset = bool(total) and len(subjects) < total
    notes = ([f"limit {limit}"] if limit is not None else []) + ([f"{len(subjects)} of {total} subjects"] if subset else [])
    return {"n": result.n, "fewshot": config.get("num_fewshot", (result.result or {}).get("num_fewshot")),
            "limit": limit, "subjects": f"{len(subjects)}/{total}" if subset else None,
            "partial": bool(notes), "partial_text": ", ".join(notes), "run": run.id}


def _cells(run, columns: tuple[Column, ...]) -> dict[str, dict]:
    """{column key: cell} for one run: the value with its coverage."""
    cells = {}
    for result in run.tasks:
        for column in columns:
            if result.task == column.task:
                value = column_value(result, column)
                if value is not None:
                    cells[column.key] = {"value": value, **coverage(run, result)}
    return cells


def _training(runs) -> dict | None:
    """The checkpoint's training run (newest), shown in its row: method, steps, final loss."""
    trained = [r for r in runs if r.kind == "training"]
    if not trained:
        return None
    manifest = trained[-1].config or {}
    return {"run": trained[-1].id, "method": manifest.get("method"), "steps": manifest.get("global_step"),
            "final_loss": manifest.get("final_loss")}


def _model_row(key: str, model_runs: list, definition: Leaderboard) -> tuple[dict, list[dict]]:
    """The model's row (latest full result per column) and one row per partial setting (latest wins)."""
    evaluations = [r for r in model_runs if r.kind in ("evaluation", "profile")]
    named = (evaluations or model_runs)[-1]  # the label and identity its newest evaluation gives
    identity = named.model_identity or {}
    full: dict[str, dict] = {}
    partial: dict[tuple, dict[str, dict]] = {}
    perplexity_result, history = None, []
    for run in evaluations:  # oldest first: later runs replace earlier values
        cells = _cells(run, definition.columns)
        # one partial row per setting: the --limit and which tasks were cut to a subject subset
        cut = sorted({(k.split(":")[0], c["subjects"]) for k, c in cells.items() if c["subjects"]})
        setting = (run.config or {}).get("limit"), tuple(cut)
        for column_key, cell in cells.items():
            (partial.setdefault(setting, {}) if cell["partial"] else full)[column_key] = cell
        perplexity_result = next((t for t in run.tasks if t.task_type == "perplexity"), perplexity_result)
        if run.kind == "evaluation":
            history.append({"run": run.id, "created_at": run.created_at, "scores": {k: c["value"] for k, c in cells.items()},
                            "tasks": ", ".join(t.task for t in run.tasks), "evalkit_version": run.evalkit_version,
                            "n": {t.task: t.n for t in run.tasks}, "config": run.config or {},
                            "figures": model_figures([run])})
    profile_runs = [r for r in evaluations if r.kind == "profile"]
    base = {"model_key": key, "label": model_label(named.model_name, identity), "name": named.model_name,
            "identity": describe(identity), "kind": identity.get("kind", ""), "runs": len(model_runs),
            "last_run": model_runs[-1].created_at, "trained": _training(model_runs), "history": history,
            "figures": model_figures(evaluations, profile_runs[-1] if profile_runs else None, perplexity_result)}
    row = {**base, "cells": full, "partial": False, "partial_text": ""}
    partial_rows = [{**base, "cells": cells, "partial": True,
                     "partial_text": "; ".join(([f"limit {limit}"] if limit is not None else [])
                                               + [f"{task} {subjects} subjects" for task, subjects in cut])}
                    for (limit, cut), cells in partial.items()]
    return row, partial_rows


def collect(definition: Leaderboard, store: str) -> tuple[list[dict], list[Column], list[dict]]:
    """(rows, shown columns, shown averages) for the definition over the store's runs. Full rows come
    first, ranked; partial rows (a --limit or a subject subset) follow, unranked."""
    runs = [r for r in list_runs(store) if r.kind in ("evaluation", "profile", "training")]
    if definition.models:
        runs = [r for r in runs if any(matches_model(r, ref) for ref in definition.models)]
    by_model: dict[str, list] = {}
    for run in sorted(runs, key=lambda r: r.id):
        by_model.setdefault(run.model_key, []).append(run)
    rows, partial_rows = [], []
    for key, model_runs in by_model.items():
        if not any(r.kind in ("evaluation", "profile") for r in model_runs):
            continue  # trained, never evaluated: nothing to rank yet
        row, partials = _model_row(key, model_runs, definition)
        if row["cells"] or not partials:
            rows.append(row)
        partial_rows.extend(partials)
    keys_by_label: dict[str, set] = {}
    for row in rows + partial_rows:
        keys_by_label.setdefault(row["label"], set()).add(row["model_key"])
    for row in rows + partial_rows:  # two checkpoints with one name: tell them apart by key
        if len(keys_by_label[row["label"]]) > 1:
            row["label"] = f"{row['label']} [{row['model_key'][:8]}]"

    present = {k for r in rows + partial_rows for k in r["cells"]}
    shown = [c for c in definition.columns if not definition.hide_empty_columns or c.key in present]
    labels_by_key = {c.key: c.label for c in definition.columns}
    averages = []
    for average in definition.averages:
        keys = [k for k in average.columns if k in present]
        if not keys:
            continue
        absent = [labels_by_key[k] for k in average.columns if k not in present]
        averages.append({"key": f"avg:{average.label}", "label": average.label, "columns": [labels_by_key[k] for k in keys],
                         "absent": absent})
        for row in rows + partial_rows:
            missing = [labels_by_key[k] for k in keys if k not in row["cells"]]
            values = [row["cells"][k]["value"] for k in keys if k in row["cells"]]
            row.setdefault("averages", {})[f"avg:{average.label}"] = (
                {"value": sum(values) / len(values), "missing": []} if not missing else {"value": None, "missing": missing})
    for row in rows + partial_rows:
        row.setdefault("averages", {})
        row["scores"] = {**{k: c["value"] for k, c in row["cells"].items()},
                         **{k: a["value"] for k, a in row["averages"].items()}}
    # rank by the first average some full row has (an average nobody has yet cannot order anything)
    first = next((a["key"] for a in averages if any(r["scores"].get(a["key"]) is not None for r in rows)),
                 shown[0].key if shown else None)

    def ranking(row):
        value = row["scores"].get(first) if first else None
        return -(value if value is not None else -math.inf)

    rows.sort(key=ranking)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    partial_rows.sort(key=lambda r: (r["label"], r["partial_text"]))
    for row in partial_rows:
        row["rank"] = None
    return rows + partial_rows, shown, averages


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
    pages = {}
    for row in rows:  # one page per model: its full row, or its first partial one
        pages.setdefault(row["model_key"], row)
    for row in pages.values():
        chart = history_lines(row["history"], columns_ctx)
        page = render("model.html.j2", row=row, columns=columns_ctx, profile=profile, chart=chart,
                      charts=chart is not None, plotly_src="../plotly.min.js", **common)
        write_new(directory / "models" / f"{row['model_key']}.html", page, force=True)
    index = render("leaderboard.html.j2", rows=rows, columns=columns_ctx, averages=averages, profile=profile,
                   partial_count=sum(1 for r in rows if r["partial"]), **common)
    return write_new(directory / "index.html", index, force=True), rows

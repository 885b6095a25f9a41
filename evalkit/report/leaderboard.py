"""``build_leaderboard``: a static site from the results store. ``index.html`` ranks one row per
model/checkpoint by its latest full result per task; partial runs (--limit, subject subsets) follow in a
section of their own, one table per setting and one row per model and setting, unranked. Every score shows
its n and 95% interval; profiler figures come from one run per row. ``models/<model key>.html`` has each
model's history."""

from __future__ import annotations

import math
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.report.charts import history_lines
from evalkit.report.definition import Leaderboard, load_definition
from evalkit.report.figures import PROFILE_LABELS, model_figures
from evalkit.report.leaderboard_cells import column_value, compact_time, coverage, row_figures, run_cells, setting_of, \
    setting_text
from evalkit.report.render import render, write_new
from evalkit.store.identity import describe, model_label
from evalkit.store.query import list_runs, matches_model

MARKER = ".evalkit-leaderboard"  # a directory holding it was written by us and may be rewritten
# short profiler headers keep the table within a 1,280 px window; the full label is the header's tooltip
SHORT_LABELS = {"peak_rss_mb": "RSS MB", "cuda_max_allocated_mb": "CUDA MB", "model_load_s": "load s",
                "prefill_tokens_per_s": "prefill tok/s", "decode_tokens_per_s": "decode tok/s",
                "perplexity": "ppl", "perplexity_llamafactory": "ppl (LF)"}
__all__ = ["build_leaderboard", "collect", "column_value", "coverage", "prepare_output"]


def _training(runs) -> dict | None:
    """The checkpoint's training run (newest), shown in its row: method, steps, final loss."""
    trained = [r for r in runs if r.kind == "training"]
    if not trained:
        return None
    manifest = trained[-1].config or {}
    return {"run": trained[-1].id, "method": manifest.get("method"), "steps": manifest.get("global_step"),
            "final_loss": manifest.get("final_loss")}


def _with_figures(row: dict, runs_by_id: dict, fallback=None) -> dict:
    row["figures"], source = row_figures(row["cells"], runs_by_id, fallback)
    row["figures_run"] = None if source is None else {"id": source.id, "created_at": source.created_at}
    return row


def _model_rows(key: str, model_runs: list, definition: Leaderboard) -> tuple[dict, list[dict]]:
    """The model's full row (latest full result per column) and one row per partial setting (latest per column)."""
    evaluations = [r for r in model_runs if r.kind in ("evaluation", "profile")]
    named = (evaluations or model_runs)[-1]  # the label and identity its newest evaluation gives
    identity = named.model_identity or {}
    runs_by_id = {r.id: r for r in evaluations}
    full: dict[str, dict] = {}
    partial: dict[tuple, dict] = {}  # (limit, few-shot, subject cuts) -> {"cells": ..., "runs": {id: run}}
    history = []
    for run in evaluations:  # oldest first: later runs replace earlier values
        cells = run_cells(run, definition.columns)
        # the run's setting: its --limit, few-shot and which tasks it cut to a subject subset
        setting = (*setting_of(run), tuple(sorted({(c["task"], c["subjects"]) for c in cells.values() if c["subjects"]})))
        for column_key, cell in cells.items():
            if cell["partial"]:
                bucket = partial.setdefault(setting, {"cells": {}, "runs": {}})
                bucket["cells"][column_key] = cell
                bucket["runs"][run.id] = run
            else:
                full[column_key] = cell
        if run.kind == "evaluation":
            history.append({"run": run.id, "created_at": run.created_at, "scores": {k: c["value"] for k, c in cells.items()},
                            "tasks": ", ".join(t.task for t in run.tasks), "evalkit_version": run.evalkit_version,
                            "n": {t.task: t.n for t in run.tasks}, "config": run.config or {},
                            "figures": model_figures([run])})
    base = {"model_key": key, "label": model_label(named.model_name, identity), "name": named.model_name,
            "identity": describe(identity), "kind": identity.get("kind", ""), "model_runs": len(model_runs),
            "trained": _training(model_runs), "history": history}
    last = model_runs[-1]
    row = _with_figures({**base, "cells": full, "partial": False, "partial_text": "", "setting": None,
                         "runs": len(model_runs), "run_list": [{"id": r.id, "created_at": r.created_at} for r in model_runs],
                         "last_run": last.created_at}, runs_by_id, None if full else (evaluations or [None])[-1])
    partial_rows = []
    for (limit, fewshot, cuts), bucket in partial.items():
        runs = sorted(bucket["runs"].values(), key=lambda r: r.id)
        partial_rows.append(_with_figures({
            **base, "cells": bucket["cells"], "partial": True, "setting": (limit, fewshot, cuts),
            "partial_text": "; ".join(([f"limit {limit}"] if limit is not None else [])
                                      + [f"{task} {subjects} subjects" for task, subjects in cuts]),
            "setting_text": setting_text(limit, fewshot, cuts), "runs": len(runs),
            "run_list": [{"id": r.id, "created_at": r.created_at} for r in runs], "last_run": runs[-1].created_at},
            runs_by_id))
    return row, partial_rows


def _table(rows: list[dict], definition: Leaderboard, ranked: bool) -> dict:
    """Columns, averages and profile figures some row of ``rows`` has; rows ordered by the first average (or
    column) they have, numbered when ``ranked``. An average of a single present column is not a column of its
    own (it would repeat that column): the column itself orders the rows then."""
    present = {k for r in rows for k in r["cells"]}
    columns = [c for c in definition.columns if not definition.hide_empty_columns or c.key in present]
    labels_by_key = {c.key: c.label for c in definition.columns}
    averages, order_keys = [], []
    for average in definition.averages:
        keys = [k for k in average.columns if k in present]
        if len(keys) == 1:
            order_keys.append(keys[0])
        if len(keys) < 2:
            continue
        key = f"avg:{average.label}"
        order_keys.append(key)
        averages.append({"key": key, "label": average.label, "columns": [labels_by_key[k] for k in keys],
                         "absent": [labels_by_key[k] for k in average.columns if k not in present]})
        for row in rows:
            missing = [labels_by_key[k] for k in keys if k not in row["cells"]]
            values = [row["cells"][k]["value"] for k in keys if k in row["cells"]]
            row.setdefault("averages", {})[key] = (
                {"value": sum(values) / len(values), "missing": []} if not missing else {"value": None, "missing": missing})
    for row in rows:
        row.setdefault("averages", {})
        row["scores"] = {**{k: c["value"] for k, c in row["cells"].items()},
                         **{k: a["value"] for k, a in row["averages"].items()}}
    first = next((k for k in order_keys if any(r["scores"].get(k) is not None for r in rows)),
                 columns[0].key if columns else None)

    def order(row):
        value = row["scores"].get(first) if first else None
        return -(value if value is not None else -math.inf), row["label"]

    rows.sort(key=order)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if ranked else None
        row["last_run_text"] = compact_time(row["last_run"])
    profile = [{"key": k, "label": PROFILE_LABELS[k], "short": SHORT_LABELS.get(k, PROFILE_LABELS[k]),
                "digits": 3 if k.startswith("perplexity") else 0 if k.endswith(("_mb", "_per_s")) else 1}
               for k in definition.profile if any(k in r["figures"] for r in rows)]
    return {"rows": rows, "columns": [{"key": c.key, "label": c.label, "task": c.task, "metric": c.metric} for c in columns],
            "averages": averages, "profile": profile, "ordered_by": first}


def _setting_order(setting: tuple) -> tuple:
    limit, fewshot, cuts = setting
    return limit is None, limit or 0, fewshot or 0, cuts


def collect(definition: Leaderboard, store: str) -> dict:
    """{"ranked": table of full rows, "partial": [{"setting", "text", "table"}], "models": count} over the store."""
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
        row, partials = _model_rows(key, model_runs, definition)
        if row["cells"] or not partials:
            rows.append(row)
        partial_rows.extend(partials)
    keys_by_label: dict[str, set] = {}
    for row in rows + partial_rows:
        keys_by_label.setdefault(row["label"], set()).add(row["model_key"])
    for row in rows + partial_rows:  # two checkpoints with one name: tell them apart by key
        if len(keys_by_label[row["label"]]) > 1:
            row["label"] = f"{row['label']} [{row['model_key'][:8]}]"
    groups: dict[tuple, list] = {}
    for row in partial_rows:
        groups.setdefault(row["setting"], []).append(row)
    partial = [{"setting": setting, "text": setting_text(*setting), "id": f"partial-{i}",
                "table": _table(group, definition, ranked=False)}
               for i, (setting, group) in enumerate(sorted(groups.items(), key=lambda g: _setting_order(g[0])), 1)]
    return {"ranked": _table(rows, definition, ranked=True), "partial": partial,
            "models": len({r["model_key"] for r in rows + partial_rows})}


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
    """Write the site; returns index.html's path and every row: the ranked ones, then the partial ones."""
    from evalkit.store import normalise_url

    definition = load_definition(definition_path)
    url = normalise_url(store)
    board = collect(definition, url)
    rows = board["ranked"]["rows"] + [r for group in board["partial"] for r in group["table"]["rows"]]
    if not rows:
        raise EvalkitError(f"the results store {url} has no evaluation runs{' of the listed models' if definition.models else ''}; "
                           "run `evalkit run` (or `evalkit import DIR`) first")
    directory = Path(output)
    prepare_output(directory, force)
    common = {"title": definition.title, "store": url, "definition": str(definition.path)}
    from evalkit.report.charts import plotly_js

    # one copy of plotly.js for every page of the site (the single-file report inlines it instead)
    write_new(directory / "plotly.min.js", str(plotly_js()), force=True)
    every = [board["ranked"]] + [g["table"] for g in board["partial"]]
    columns = [c for c in definition.columns if any(c.key in r["cells"] for r in rows) or not definition.hide_empty_columns]
    columns_ctx = [{"key": c.key, "label": c.label, "task": c.task, "metric": c.metric} for c in columns]
    profile = [{"key": k, "label": PROFILE_LABELS[k]} for k in definition.profile
               if any(p["key"] == k for t in every for p in t["profile"])]
    pages = {}
    for row in rows:  # one page per model: its full row, or its first partial one
        pages.setdefault(row["model_key"], row)
    for row in pages.values():
        chart = history_lines(row["history"], columns_ctx)
        page = render("model.html.j2", row={**row, "runs": row["model_runs"]}, columns=columns_ctx, profile=profile,
                      chart=chart, charts=chart is not None, plotly_src="../plotly.min.js", **common)
        write_new(directory / "models" / f"{row['model_key']}.html", page, force=True)
    index = render("leaderboard.html.j2", ranked=board["ranked"], partial=board["partial"], models=board["models"],
                   partial_count=sum(len(g["table"]["rows"]) for g in board["partial"]), **common)
    return write_new(directory / "index.html", index, force=True), rows

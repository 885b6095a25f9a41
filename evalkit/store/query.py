"""Read runs back: listings, and "model name or run id" -> the task results to compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from evalkit.errors import EvalkitError
from evalkit.store.engine import open_store
from evalkit.store.schema import Run, TaskResult


def list_runs(store: str | None = None, *, model: str | None = None, task: str | None = None,
              kind: str | None = None, limit: int | None = None) -> list[Run]:
    factory, _ = open_store(store)
    query = select(Run).options(selectinload(Run.tasks).selectinload(TaskResult.scores)).order_by(Run.id.desc())
    if kind:
        query = query.where(Run.kind == kind)
    if task:
        query = query.where(Run.tasks.any(TaskResult.task == task))
    with factory() as session:
        runs = list(session.scalars(query))
    if model:
        runs = [r for r in runs if matches_model(r, model)]
    return runs[:limit] if limit else runs


def matches_model(run: Run, ref: str) -> bool:
    names = {run.model_name, run.model_label, run.model_key, (run.model_identity or {}).get("alias")}
    source = (run.model_identity or {}).get("source")
    if source:
        names.add(source)
    if ref in names:
        return True
    path = Path(ref).expanduser()
    return bool(source) and path.exists() and str(path.resolve()) == source


@dataclass
class Side:
    """One side of a comparison: a model's latest stored result per task, and the runs they came from."""

    label: str
    model_key: str
    results: dict[str, TaskResult]
    runs: dict[str, Run]  # task -> the run holding its result
    profile_run: Run | None  # latest `evalkit profile` run of the model, if any


def resolve_model(ref: str, store: str | None = None, tasks: list[str] | None = None) -> Side:
    """``ref`` is a run id (its tasks) or a model name/label/path/key (its latest result per task)."""
    runs = [r for r in list_runs(store) if r.kind in ("evaluation", "profile")]
    if ref.isdigit():
        chosen = [r for r in runs if r.id == int(ref)]
        if not chosen:
            raise EvalkitError(f"no evaluation run {ref} in the store; list them with `evalkit runs`")
    else:
        chosen = [r for r in runs if matches_model(r, ref)]
        if not chosen:
            raise EvalkitError(f"no evaluation run of model {ref!r} in the store; list them with `evalkit runs` "
                               "(use a model name as given to --model, its label, or a run id)")
        keys = {r.model_key for r in chosen}
        if len(keys) > 1:  # same name, different weights (e.g. a retrained checkpoint): newest wins
            newest = max(chosen, key=lambda r: r.id).model_key
            chosen = [r for r in chosen if r.model_key == newest]
    results: dict[str, TaskResult] = {}
    sources: dict[str, Run] = {}
    for run in sorted(chosen, key=lambda r: r.id):  # later runs replace earlier ones
        for result in run.tasks:
            if tasks is None or result.task in tasks:
                results[result.task] = result
                sources[result.task] = run
    if not results:
        raise EvalkitError(f"{ref!r} has no results for tasks {', '.join(tasks or [])} in the store; run them first")
    profiles = [r for r in chosen if r.kind == "profile"]
    latest = max(chosen, key=lambda r: r.id)
    return Side(latest.model_label, latest.model_key, results, sources, max(profiles, key=lambda r: r.id) if profiles else None)


def resolve_side(ref: str, store: str | None = None, tasks: list[str] | None = None) -> tuple[str, dict[str, TaskResult]]:
    """(model label, {task: TaskResult}) of ``resolve_model``."""
    side = resolve_model(ref, store, tasks)
    return side.label, side.results
